-- The transport over the C core's libcurl client (src/client.c): one connection cache per transport,
-- the multi interface for batches and streams. The contract is transport/init.lua's.
--   local t = require("freshbooks.transport").curl{ timeout = 30, cainfo = "ca.pem" }  -- core.http.client's options
local core = require "freshbooks.core"
local errors = require "freshbooks.errors"

local from_core = errors.from_core

-- A stream of the C core's (`client:stream`) with the contract's results: res tables, errors objects.
local Stream = {}
Stream.__index = Stream

function Stream:add(req) return self[1]:add(req) end

function Stream:next()
  local id, status, headers, body = self[1]:next()
  if not id then return nil end
  if not status then return id, nil, from_core(headers) end
  return id, { status = status, headers = headers, body = body }
end

function Stream:close() self[1]:close() end

local Curl = {}
Curl.__index = Curl

function Curl:__call(req)
  local status, headers, body = self[1]:request(req)
  if not status then return nil, from_core(headers) end
  return { status = status, headers = headers, body = body }
end

function Curl:batch(reqs, opts)
  local out = self[1]:batch(reqs, opts or {})
  for i, r in ipairs(out) do
    if r.err then out[i] = { err = from_core(r.err) } else out[i] = { res = r } end
  end
  return out
end

-- Requests added as places free up, results as they complete: the C core keeps `concurrency`
-- transfers in flight on handles (and connections) reused for the whole stream.
function Curl:stream(opts)
  return setmetatable({ self[1]:stream(opts or {}) }, Stream)
end

-- Idempotent, as the client's own close. A shared transport is never closed by one of its users.
function Curl:close()
  if not self.shared then self[1]:close() end
end

function Curl.__tostring() return "freshbooks.transport.curl" end

local curl = {}

-- curl.new(opts) -> a transport over one new C-core client (opts: core.http.client's, checked there).
function curl.new(opts)
  return setmetatable({ core.http.client(opts or {}) }, Curl)
end

-- curl.shared(opts) -> the one transport of these options, shared by every session using them while
-- one does: calls into it never interleave (a call returns before the next begins), so a session
-- costs no client of its own. It closes when the last user lets it go (the collector).
local shared = setmetatable({}, { __mode = "v" }) -- options -> transport
function curl.shared(opts)
  local keys = {}
  for k in pairs(opts) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = k .. "=" .. tostring(opts[k]) end
  local key = table.concat(parts, "\0")
  local t = shared[key]
  if not t then
    t = curl.new(opts)
    t.shared = true
    shared[key] = t
  end
  return t
end

return curl
