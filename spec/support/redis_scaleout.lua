-- The processes of spec/redis_scaleout_spec.lua, each until the spec's stop file appears:
--   LUA spec/support/redis_scaleout.lua plain  CONFIG OUT TRACE   a participant: many connections of one app
--       through freshbooks.connections and a Redis keyspace whose pending place is the node's directory,
--       calls and forced refreshes at random; its token calls traced to TRACE (support.redis_app.traced)
--   LUA spec/support/redis_scaleout.lua driver CONFIG OUT         the same calls sent to both nginx (/call),
--       `concurrency` at a time
--   LUA spec/support/redis_scaleout.lua prober CONFIG OUT         GET /health of both nginx every 20 ms: how
--       long each answer took, in tenths of a millisecond (counts.health)
-- OUT gets the process's counts (JSON, rewritten every second, so a killed process leaves its last
-- ones), and OUT.events one line per reauth_required: "<call began> <answer came> <connection id> <its
-- message>" (epoch seconds).
-- CONFIG (JSON): the app (api_url, client_id, client_secret, redirect_uri), redis_port, prefix, ids,
-- node (the plain processes' pending directory), timeout, lock_ttl, lock_timeout, store_timeout,
-- refresh_rate, nginx (base URLs), concurrency, stop (a file), seed.
package.path = "sandbox/lua/?.lua;" .. package.path -- (sandbox.util hashes tokens where FFI is)
local cjson = require "cjson"
local core = require "freshbooks.core"

local mode, config_file, out, trace = arg[1], arg[2], arg[3], arg[4]
local c
do
  local f = assert(io.open(config_file, "rb"))
  c = cjson.decode(f:read("*a"))
  f:close()
end

-- Epoch seconds with a fraction (the sandbox logs on that clock): one reading of `date`, then the
-- monotonic clock.
local wall
do
  local p = io.popen("date +%s.%N")
  local base = tonumber(p:read("*l"))
  p:close()
  local mono = core.clock.now()
  wall = function() return base + core.clock.now() - mono end
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local counts = { requests = 0, errors = {}, started = wall() }
local last_write = 0
local function flush_counts(final)
  local now = core.clock.now()
  if not final and now - last_write < 1 then return end
  last_write = now
  counts.final = final or nil
  local f = assert(io.open(out .. ".part", "wb"))
  f:write(cjson.encode(counts))
  f:close()
  os.rename(out .. ".part", out)
end

local events = assert(io.open(out .. ".events", "a"))
local function outcome(id, ok, code, why, began)
  if ok then
    counts.requests = counts.requests + 1
  else
    counts.errors[code] = (counts.errors[code] or 0) + 1
    if code == "reauth_required" then
      events:write(("%.3f %.3f %s %s\n"):format(began, wall(), id, (tostring(why):gsub("%s+", "_"):sub(1, 120))))
      events:flush()
    end
  end
end

math.randomseed(c.seed + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0) % 100003)
local function pick()
  return c.ids[math.random(#c.ids)], math.random() < c.refresh_rate and "refresh" or "me"
end

if mode == "plain" then
  local freshbooks = require "freshbooks"
  local redis = require("support.redis").client_module()
  local stores = freshbooks.store.redis.keyspace{ prefix = c.prefix, lock_ttl = c.lock_ttl,
    lock_timeout = c.lock_timeout, timeout = c.store_timeout, pending = { dir = c.node },
    redis = function() -- (a whole port: cjson gives Lua 5.4 a float, which luasocket refuses)
      return redis.connect{ host = "127.0.0.1", port = math.floor(c.redis_port), timeout = c.store_timeout }
    end }
  local send = require("support.redis_app").traced(freshbooks.transport.default{ timeout = c.timeout }, trace, wall)
  local conns = freshbooks.connections{ store = stores, app = { client_id = c.client_id,
    client_secret = c.client_secret, redirect_uri = c.redirect_uri, api_url = c.api_url, timeout = c.timeout,
    retry = false, transport = send, log = require("support.redis_app").logger(trace, wall) } }
  stores.flush() -- what a process of this node left pending when it died goes back first
  while not exists(c.stop) do
    local id, op = pick()
    local began = wall()
    local ok, err = require("support.redis_app").run(conns:session(id), op)
    outcome(id, ok, err and err.code,
      err and (err.message .. " [" .. tostring(err.cause and err.cause.code) .. "] " .. trace:match("[^/]+$")), began)
    flush_counts(false)
    core.clock.sleep(0.01)
  end
elseif mode == "driver" then
  local client = core.http.client{ timeout = 30 }
  local stream = client:stream{ concurrency = c.concurrency }
  local of = {}
  local function add()
    local id, op = pick()
    local base = c.nginx[math.random(#c.nginx)]
    of[stream:add{ url = base .. "/call?c=" .. id .. "&op=" .. op }] = { id = id, began = wall() }
  end
  for _ = 1, c.concurrency do add() end
  while true do
    local sid, status, _, body = stream:next()
    if not sid then break end
    local id, began = of[sid].id, of[sid].began
    of[sid] = nil
    local r = status == 200 and cjson.decode(body) or nil
    if r then
      outcome(id, r.ok, r.code, r.message and (r.message .. " [" .. tostring(r.cause) .. "] pid " .. r.pid), began)
    else
      outcome(id, false, "http_" .. tostring(status or "failed"), began)
    end
    flush_counts(false)
    if not exists(c.stop) then add() end
  end
  stream:close()
elseif mode == "prober" then
  local client = core.http.client{ timeout = 10 }
  local buckets = {} -- tenths of a millisecond -> how many answers took that long
  counts.health = buckets
  while not exists(c.stop) do
    for _, base in ipairs(c.nginx) do
      local t0 = core.clock.now()
      local status = client:request{ url = base .. "/health" }
      if status == 200 then
        local b = tostring(math.floor((core.clock.now() - t0) * 1e4 + 0.5))
        buckets[b] = (buckets[b] or 0) + 1
      else
        counts.errors.health = (counts.errors.health or 0) + 1
      end
    end
    flush_counts(false)
    core.clock.sleep(0.02)
  end
end
flush_counts(true)
events:close()
