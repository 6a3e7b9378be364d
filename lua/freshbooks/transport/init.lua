-- The transport seam: one HTTP contract, two implementations (transport/curl.lua over the C core,
-- transport/cosocket.lua over nginx cosockets) and the chooser between them. A transport is a callable
-- object `t(req) -> res | nil, err` with
--   req = { method, url, headers = { Name = value }, body = string?, timeout = seconds?,
--           idempotent = bool?, keep_partial = bool?, finish = bool? }
--   res = { status = n, headers = { lowercase = value }, body = string }
-- and, optionally, the methods `t:batch(reqs, opts) -> { {res =, err =}, ... }` (input order),
-- `t:stream(opts) -> stream` (`stream:add(req) -> id`, `stream:next() -> id, res, err | nil` as
-- each completes, `stream:close()`; `opts.concurrency` in flight) and `t:close()`. Tests and
-- OpenResty users may pass their own; transport.batch and transport.stream below run any of them.
--
-- Both built-in transports keep one contract, proven by spec/transport_conformance_spec.lua:
--   * the request policy is the C core's (src/request.c): methods, URLs, header names and values are
--     checked the same way, the framing headers belong to the transport, the caller's User-Agent wins;
--     a bad request raises before a byte is sent; what may be sent twice is the core's rule too;
--   * one deadline per request (`timeout`, default core.http.limits.timeout) covers connect, send, headers
--     and body;
--   * responses are read by HTTP/1.1's framing rules, `max_body` applies in every framing, and a
--     connection goes back to the pool only when its answer was read exactly and completely;
--   * failures are `nil, err` with the same codes for the same bytes: timeout, connect, resolve, tls,
--     send, recv, protocol, too_large (with `status` once one arrived, and with `keep_partial` a
--     cut-off body as `err.partial_body`).
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local cosocket = require "freshbooks.transport.cosocket"
local curl = require "freshbooks.transport.curl"

local transport = { curl = curl.new, cosocket = cosocket.new }

---------------------------------------------------------------------------------------------------
-- Any transport

-- A stream on a transport without one: requests one at a time, as next() asks for them.
local Serial = {}
Serial.__index = Serial
function Serial:add(req)
  self.ids = self.ids + 1
  self.queue[#self.queue + 1] = { self.ids, req }
  return self.ids
end
function Serial:next()
  local q = table.remove(self.queue, 1)
  if not q then return nil end
  return q[1], self.t(q[2])
end
function Serial:close() self.queue = {} end

-- transport.stream(t, opts) -> t's own stream, else one request at a time.
function transport.stream(t, opts)
  if type(t) == "table" and t.stream then return t:stream(opts) end
  return setmetatable({ t = t, queue = {}, ids = 0 }, Serial)
end

-- transport.batch(t, reqs, opts) -> t's own batch, else one request after another.
function transport.batch(t, reqs, opts)
  if type(t) == "table" and t.batch then return t:batch(reqs, opts) end
  local out = {}
  for i, req in ipairs(reqs) do
    local res, err = t(req)
    out[i] = { res = res, err = err }
  end
  return out
end

---------------------------------------------------------------------------------------------------
-- The default: chosen per request

-- Inside nginx: cosockets in a phase that can yield, a coded error in one that cannot (libcurl would
-- block the worker), and libcurl should the same session run outside nginx later.
local Chooser = {}
Chooser.__index = Chooser

local function pick(self)
  local ngx = env.nginx()
  if not ngx then
    self.curl = self.curl or curl.new(self.curl_opts)
    return self.curl
  end
  if not env.yielding() then
    return nil, errors.new{ code = "blocking_phase", message = "no HTTP request in nginx's " .. ngx.get_phase() ..
      " phase: cosockets cannot run there and libcurl would block the worker (use ngx.timer.at or a handler)" }
  end
  self.cos = self.cos or cosocket.new(self.cos_opts)
  return self.cos
end

function Chooser:__call(req)
  local chosen, err = pick(self)
  if not chosen then return nil, err end
  return chosen(req)
end

function Chooser:batch(reqs, opts)
  local chosen, err = pick(self)
  if not chosen then
    local out = {}
    for i = 1, #reqs do out[i] = { err = err } end
    return out
  end
  return chosen:batch(reqs, opts)
end

function Chooser:stream(opts)
  local chosen, err = pick(self)
  if not chosen then return nil, err end
  return chosen:stream(opts)
end

function Chooser:close() if self.curl then self.curl:close() end end

-- transport.default(opts) -> the transport a session gets when none is given. Outside nginx it is
-- the C core, with no chooser in between (no request will ever run inside nginx); inside, the choice
-- is made per request: a session built in init_by_lua (one per worker, as OpenResty apps do) must
-- use cosockets in the request handlers later. The options are core.http.client's, plus the cosockets'
-- pool_size and keepalive.
function transport.default(opts)
  opts = opts or {}
  local cos_opts, curl_opts = {}, {}
  for k, v in pairs(opts) do
    if k == "pool_size" or k == "keepalive" then cos_opts[k] = v else curl_opts[k] = v; cos_opts[k] = v end
  end
  if not env.nginx() then return curl.shared(curl_opts) end
  cosocket.check(cos_opts, 2)
  return setmetatable({ curl_opts = curl_opts, cos_opts = cos_opts }, Chooser)
end

return transport
