-- The one path of a request through a session, written once in `run`: tokens, headers, send, log; on
-- a 401 a refresh and one more send; then the answer decoded and judged (errors.from_response), and
-- whatever leaves masked. fb:request runs it directly. fb:batch and fb:stream run one `run` per
-- request on a coroutine whose `send` yields: the driver gathers what the requests send and hands it
-- to the transport together (a batch, a stream), then resumes each with its answer — as lua-resty-http
-- composes request_uri from connect, request and read_body.
--   prepare(p, req, where, level) -> the transport request (bad arguments raise, in the caller's frame)
--   run(p, treq, headers, send)   -> res | nil, err
-- `p` is a session's private state (session.lua).
local cjson = require "cjson.safe"
local catalogue = require "freshbooks.catalogue"
local core = require "freshbooks.core"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local query = require "freshbooks.query"
local secrets = require "freshbooks.session.secrets"
local tokens = require "freshbooks.session.tokens"
local transport = require "freshbooks.transport"

local pipeline = {}

-- fb:batch's and fb:stream's options (the transports take the same).
local OPTIONS = options.spec{
  concurrency = { "number", integer = true, min = 1, max = core.http.limits.max_concurrency },
}

local redact = secrets.redact
local function send_of(p) return p.send or p.app.send end

---------------------------------------------------------------------------------------------------
-- Before: the caller's table -> the transport's

local METHODS = { GET = "GET", POST = "POST", PUT = "PUT", DELETE = "DELETE", PATCH = "PATCH", HEAD = "HEAD" }

local function bad(where, msg, level) error("freshbooks: " .. where .. ": " .. msg, level + 1) end

-- pipeline.prepare(p, req, where, level) -> the transport request without its Authorization, whatever
-- the tokens: the URL with its query, the JSON body encoded once. `level`: error()'s, from the caller.
function pipeline.prepare(p, req, where, level)
  level = level + 1
  if type(req) ~= "table" then bad(where, "expected a request table", level) end
  local path, method, q, body, timeout = req.path, req.method, req.query, req.body, req.timeout
  if type(path) ~= "string" or path == "" then bad(where, "path must be a string", level) end
  if method ~= nil and type(method) ~= "string" then bad(where, "method must be a string", level) end
  if q ~= nil and type(q) ~= "string" and type(q) ~= "table" then
    bad(where, "query must be a string or a table", level)
  end
  if body ~= nil and type(body) ~= "string" then bad(where, "body must be a string", level) end
  if req.json ~= nil then
    if body ~= nil then bad(where, "give json or body, not both", level) end
    local err
    body, err = cjson.encode(req.json)
    if not body then bad(where, "json cannot be encoded: " .. tostring(err), level) end
  end
  if req.headers ~= nil and type(req.headers) ~= "table" then bad(where, "headers must be a table", level) end
  if timeout ~= nil and type(timeout) ~= "number" then bad(where, "timeout must be a number", level) end
  local url = p.app.api_url .. (path:byte(1) == 47 and "" or "/") .. path -- 47: "/"
  -- One query path: a table is rendered in the vocabulary of the family the path belongs to.
  if type(q) == "table" then q = query.render(catalogue.dialect_of(path), q) end
  if q and q ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. q end
  return { method = method and (METHODS[method] or method:upper()) or "GET", url = url, body = body,
    timeout = timeout or p.app.timeout, idempotent = req.idempotent }
end

-- The session's headers for a pair (the transports only read them): with our own curl transport the
-- Authorization value travels as an opaque C secret. They are kept from the pair's second request on:
-- a session that sends one request (a connection's status, a webhook's lookup) keeps none.
-- Content-Type only with a body: FreshBooks' project pages say to leave it out of GET calls.
local PLAIN, WITH_BODY = setmetatable({}, { __mode = "k" }), setmetatable({}, { __mode = "k" })
local function bearer(p, t)
  local h = PLAIN[t]
  if not h then
    local value = "Bearer " .. t.access_token
    if p.app.secret_headers then value = core.secret.new(value) end
    h = { Authorization = value, ["Api-Version"] = "alpha" }
    if p.used == t then PLAIN[t] = h else p.used = t end
  end
  return h
end

local function headers(p, t, body, extra)
  local plain = bearer(p, t)
  if extra == nil then
    if body == nil then return plain end
    local h = WITH_BODY[t]
    if not h then
      h = { Authorization = plain.Authorization, ["Api-Version"] = "alpha", ["Content-Type"] = "application/json" }
      WITH_BODY[t] = h
    end
    return h
  end
  local h = { Authorization = plain.Authorization, ["Api-Version"] = "alpha",
    ["Content-Type"] = body ~= nil and "application/json" or nil }
  for k, v in pairs(extra) do
    -- The caller's headers win, compared case-insensitively (e.g. a multipart Content-Type).
    for have in pairs(h) do
      if have:lower() == tostring(k):lower() then h[have] = nil end
    end
    h[k] = v
  end
  return h
end

---------------------------------------------------------------------------------------------------
-- The request's life

-- The log hook sees method, URL and outcome only: never headers or bodies (tokens live there).
local function log_request(p, treq, res, err)
  if not p.log then return end
  local outcome = res and res.status or (err and err.code) or "?"
  secrets.log(p, { type = "request", method = treq.method, url = treq.url, status = res and res.status,
    error = err and err.code, line = treq.method .. " " .. treq.url .. " -> " .. outcome })
end

-- One attempt with the pair `t`: -> res | nil, err (an errors object, whatever the transport gave).
local function attempt(p, treq, t, extra, send)
  treq.headers = headers(p, t, treq.body, extra)
  local res, err = send(treq)
  if not res and not errors.is(err) then err = errors.from_core(err) end
  if p.log then log_request(p, treq, res, err) end
  return res, err
end

-- The answer's JSON, through the core's decoder (object nulls left out, whole numbers as integers).
local function decode(res)
  local body = res.body
  if type(body) ~= "string" or body == "" then return nil end
  local ct = res.headers and res.headers["content-type"]
  if type(ct) == "table" then ct = ct[1] end
  if (ct and (ct:find("json", 1, true) or ct:lower():find("json", 1, true))) or body:find("^%s*[{%[]") then
    return (core.json.decode(body))
  end
  return nil
end

-- pipeline.run(p, treq, extra, send) -> res (with res.data) | nil, err: the life of one prepared
-- request. `extra`: the caller's headers; `send(treq) -> res | nil, err`: the driver's.
function pipeline.run(p, treq, extra, send)
  local t, err = tokens.ensure(p)
  if not t then return nil, redact(p, err) end
  local res
  res, err = attempt(p, treq, t, extra, send)
  if res and res.status == 401 then
    -- The token died early (revoked, the server's clock): refresh once, send once more.
    t, err = tokens.refresh(p, t.access_token)
    if not t then return nil, redact(p, err) end
    res, err = attempt(p, treq, t, extra, send)
  end
  if not res then return nil, redact(p, err) end
  res.data = decode(res)
  err = errors.from_response(res)
  if err then return nil, redact(p, err) end
  return res
end
local run = pipeline.run

-- pipeline.request(p, req, level) -> res | nil, err (fb:request).
function pipeline.request(p, req, level)
  return run(p, pipeline.prepare(p, req, "request", level + 1), req.headers, send_of(p))
end

---------------------------------------------------------------------------------------------------
-- Drivers: many lives at once

local SEND = {} -- what a life yields to have a request sent
local unpack = table.unpack or rawget(_G, "unpack")
local function yield_send(treq) return coroutine.yield(SEND, treq) end

local function pack(...) return { n = select("#", ...), ... } end
-- Whether this driver runs where it may yield (Lua 5.1 cannot tell: inside a coroutine, it tries).
local yieldable = coroutine.isyieldable or function() return coroutine.running() ~= nil end

-- Resume a life until it asks to send (-> treq) or ends (-> nil, {res =, err =}). A yield that is not
-- ours (a hook, or a wait for another coroutine's refresh, on the caller's scheduler) is passed up and
-- its answer passed back down; where the caller cannot yield, a wait fails as it would have there.
local function step(co, ...)
  local r = pack(coroutine.resume(co, ...))
  while true do
    if not r[1] then error(r[2], 0) end -- a life raised: as fb:request would have
    if coroutine.status(co) == "dead" then return nil, { res = r[2], err = r[3] } end
    if r[2] == SEND then return r[3] end
    if yieldable() then
      r = pack(coroutine.resume(co, coroutine.yield(unpack(r, 2, r.n))))
    else
      r = pack(coroutine.resume(co, tokens.CANNOT_WAIT))
    end
  end
end

local function life(p, treq, extra)
  local co = coroutine.create(run)
  local want, done = step(co, p, treq, extra, yield_send)
  return co, want, done
end

-- pipeline.batch(p, reqs, opts, level) -> { {res =, err =}, ... } in order: every request checked
-- first, one ensure for all; then rounds, each one transport batch of what the lives want to send
-- (the second round holds the ones a 401 sent again, after one refresh for them all).
function pipeline.batch(p, reqs, opts, level)
  if type(reqs) ~= "table" then error("freshbooks: batch: expected an array of request tables", level + 1) end
  opts = options.check("freshbooks: batch", OPTIONS, opts, level + 1)
  local treqs = {}
  for i, req in ipairs(reqs) do treqs[i] = pipeline.prepare(p, req, "batch[" .. i .. "]", level + 1) end
  local out = {}
  local _, err = tokens.ensure(p)
  if err then
    err = redact(p, err)
    for i = 1, #treqs do out[i] = { err = err } end
    return out
  end
  local lives, waiting = {}, {}
  for i, treq in ipairs(treqs) do
    local co, want, done = life(p, treq, reqs[i].headers)
    if want then lives[#lives + 1], waiting[#waiting + 1] = { i = i, co = co }, want else out[i] = done end
  end
  local send = send_of(p)
  while #waiting > 0 do
    local results = transport.batch(send, waiting, opts)
    local next_lives, next_waiting = {}, {}
    for j, l in ipairs(lives) do
      local r = results[j] or { err = errors.new{ code = "internal", message = "batch lost a request" } }
      local want, done = step(l.co, r.res, r.err)
      if want then next_lives[#next_lives + 1], next_waiting[#next_waiting + 1] = l, want else out[l.i] = done end
    end
    lives, waiting = next_lives, next_waiting
  end
  return out
end

-- A stream of a session: requests carry the current tokens, a 401 refreshes once and sends that
-- request again, retries come from the transport's stream; results are judged as fb:request's.
local Stream = {}
Stream.__index = Stream
local state = setmetatable({}, { __mode = "k" }) -- stream -> its state (it holds the session's)

-- Hand a life's wish to the inner stream, or file its end.
local function follow(s, id, co, want, done)
  if want then
    s.of[s.inner:add(want)] = { id = id, co = co }
  else
    s.done[#s.done + 1] = { id, done }
  end
end

-- stream:add(req) -> id (checked now: a bad request raises).
function Stream:add(req)
  local s = state[self]
  if s.closed then error("freshbooks: stream:add: the stream is closed", 2) end
  local treq = pipeline.prepare(s.p, req, "stream:add", 2)
  s.ids = s.ids + 1
  follow(s, s.ids, life(s.p, treq, req.headers))
  return s.ids
end

-- stream:next() -> id, res | id, nil, err as each completes; nil once nothing is left.
function Stream:next()
  local s = state[self]
  while true do
    local d = table.remove(s.done, 1)
    if d then return d[1], d[2].res, d[2].err end
    if s.closed then return nil end
    local iid, res, err = s.inner:next()
    if not iid then return nil end
    local l = s.of[iid]
    s.of[iid] = nil
    follow(s, l.id, l.co, step(l.co, res, err))
  end
end

-- stream:close(): idempotent; requests still in flight are abandoned.
function Stream:close()
  local s = state[self]
  if s.closed then return end
  s.closed = true
  s.inner:close()
end

function Stream.__tostring() return "freshbooks.stream" end

-- pipeline.stream(p, opts, level) -> stream | nil, err
function pipeline.stream(p, opts, level)
  opts = options.check("freshbooks: stream", OPTIONS, opts, level + 1)
  local inner, err = transport.stream(send_of(p), opts)
  if not inner then return nil, redact(p, err) end
  local s = setmetatable({}, Stream)
  state[s] = { p = p, inner = inner, ids = 0, of = {}, done = {} }
  return s
end

return pipeline
