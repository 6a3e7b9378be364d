-- One participant of the Redis specs: forced refreshes of one FreshBooks connection through
-- freshbooks.store.redis, as a plain Lua process (Debian's lua-redis) or inside nginx (lua-nginx-redis,
-- from a timer in every worker). It waits for the spec's "go" file, so all start together, and writes
-- one JSON result: outcome and error counts, and for each call that returned tokens on its error
-- (conflict, save_failed) the hash of the refresh token it carried.
--   lua5.4 spec/support/redis_worker.lua CONFIG_FILE OUT_FILE
--   nginx: init_worker_by_lua_block { require("support.redis_worker").nginx(CONFIG_FILE, OUT_PREFIX) }
-- From a spec: local W = require "support.redis_worker"; local ws = W.workers(sb, srv, dir)
--   ws.config(key, extra) -> config; ws.start(config, out) -> pid; ws.result(out) -> the worker's result;
--   W.wait_for(what, f, seconds); W.lock_left(srv, lock_key) -> seconds to the lock's deadline
-- CONFIG_FILE (JSON, 0600): api_url, client_id, client_secret, redirect_uri, redis_port, key, n, go,
-- mode ("lock" | "nolock" | "hold": the token request never leaves, so the lock stays held until
-- the process is killed | "noextend": a lock whose handle cannot be extended, so it may expire while
-- FreshBooks answers | "unfenced": that, and a save that ignores `previous`), lock_ttl, lock_timeout,
-- timeout (the session's, 30), pending_dir (the store's pending place), after (a file: once the n
-- refreshes are done, wait for it, then after_delay seconds, then one fb:me(true); its outcome is
-- `after`).
local cjson = require "cjson"
local freshbooks = require "freshbooks"
local core = require "freshbooks.core"

local W = {}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path .. ".part", "wb"))
  f:write(s, "\n")
  f:close()
  assert(os.rename(path .. ".part", path))
end

-- The client factory for where we run: nginx cosockets, or lua-redis over LuaSocket.
local function factory(port)
  if rawget(_G, "ngx") then
    local redis = require "nginx.redis"
    return function()
      local r = redis:new()
      r:set_timeout(2000)
      local ok, err = r:connect("127.0.0.1", port)
      if not ok then return nil, err end
      return r
    end
  end
  local redis = require("support.redis").client_module()
  return function() return redis.connect{ host = "127.0.0.1", port = port, timeout = 2 } end
end

function W.run(c, sleep)
  local outcomes, errs, carried, messages = {}, {}, {}, {}
  local function count(t, k, err)
    t[k] = (t[k] or 0) + 1
    if err and not messages[k] then messages[k] = tostring(err) end -- (errors carry no secret)
  end
  local store = freshbooks.store.redis{ redis = factory(math.floor(c.redis_port)), key = c.key, lock_ttl = c.lock_ttl,
    lock_timeout = c.lock_timeout, pending = c.pending_dir and { dir = c.pending_dir } or nil }
  local real = store
  if c.mode == "nolock" then store = { load = real.load, save = real.save } end
  -- A lock without extend: it expires after lock_ttl whatever the token call does.
  local function short_lock()
    local h, err = real.lock()
    if not h then return nil, err end
    return { unlock = function() return h:unlock() end }
  end
  if c.mode == "noextend" then store = { load = real.load, lock = short_lock, save = real.save } end
  if c.mode == "unfenced" then -- and a save that ignores `previous`: what the fence prevents
    store = { load = real.load, lock = short_lock, save = function(new) return real.save(new, nil) end }
  end
  local opts = {
    client_id = c.client_id, client_secret = c.client_secret, redirect_uri = c.redirect_uri,
    api_url = c.api_url, store = store, retry = false, timeout = c.timeout or 30,
    log = function(e) if e.type == "refresh" then count(outcomes, e.outcome) end end,
  }
  if c.mode == "hold" then -- a holder that will die with the lock: its token request never leaves
    local http = freshbooks.transport.default{ timeout = 30 }
    opts.transport = function(req)
      if req.url:find("/auth/oauth/token", 1, true) then
        local f = io.open(c.go .. ".holding", "w")
        if f then f:close() end
        sleep(3600)
      end
      return http(req)
    end
  end
  local fb = freshbooks.new(opts)
  for _ = 1, 6000 do -- up to 30 s for the go signal
    local f = io.open(c.go, "r")
    if f then f:close(); break end
    sleep(0.005)
  end
  local started = core.clock.now()
  for i = 1, c.n do
    local done, err = fb:refresh()
    if not done then
      count(errs, err.code, err)
      if err.tokens then carried[#carried + 1] = { code = err.code, refresh_token = err.tokens.refresh_token } end
    end
    if i % 10 == 0 then -- and the tokens work
      local me, merr = fb:me(true)
      if not me then count(errs, "me:" .. merr.code, merr) end
    end
  end
  local seconds = core.clock.now() - started
  local after
  if c.after then
    for _ = 1, 6000 do
      local f = io.open(c.after, "r")
      if f then f:close(); break end
      sleep(0.005)
    end
    sleep(c.after_delay or 0)
    local me, merr = fb:me(true)
    after = me and "ok" or merr.code
  end
  local final = fb:tokens()
  return { outcomes = outcomes, errors = errs, messages = messages, carried = carried, seconds = seconds,
    me_ok = fb:me(true) ~= nil, final = final and final.refresh_token, after = after }
end

-- The carried tokens leave as hashes only (the spec compares them with the sandbox's log); inside
-- nginx (no sha256sum to run) only their codes.
local function result(ok, r, hash)
  if not ok then return cjson.encode{ ok = false, failure = tostring(r) } end
  r.ok = true
  for _, t in ipairs(r.carried) do t.hash, t.refresh_token = hash and hash(t.refresh_token), nil end
  r.final = hash and r.final and hash(r.final) or nil
  return cjson.encode(r)
end

-- Inside nginx: every worker runs once, from a timer, and writes OUT_PREFIX.<pid>.
function W.nginx(config_file, out_prefix)
  local c = cjson.decode(read(config_file))
  ngx.timer.at(0, function(premature)
    if premature then return end
    local ok, r = xpcall(W.run, debug.traceback, c, ngx.sleep)
    write(out_prefix .. "." .. ngx.worker.pid(), result(ok, r))
  end)
end

-- Spec side --------------------------------------------------------------------------------------

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function W.wait_for(what, f, seconds)
  local t0 = core.clock.now()
  while core.clock.now() - t0 < seconds do
    local v = f()
    if v then return v end
    core.clock.sleep(0.02)
  end
  error("timed out waiting for " .. what, 2)
end

-- Seconds until a lock's deadline, on Redis's clock (the key itself lingers after it); -1 when free.
function W.lock_left(srv, lock_key)
  local deadline = tonumber(srv:cli("GET", lock_key):match(" (%d+)$"))
  if not deadline then return -1 end
  local sec, usec = srv:cli("TIME"):match("(%d+)%s+(%d+)")
  return (deadline - (tonumber(sec) * 1000 + math.floor(tonumber(usec) / 1000))) / 1000
end

-- Workers of one spec: the sandbox `sb`, the Redis `srv`, files in `dir`.
function W.workers(sb, srv, dir)
  local R = require "support.redis"
  local H = require "support.fbtest"
  local pids, ws = {}, {}
  function ws.config(k, extra)
    local c = { api_url = sb.url, client_id = sb.app.client_id, client_secret = sb.app.client_secret,
      redirect_uri = sb.app.redirect_uri, redis_port = srv.port, key = k, n = 1, mode = "lock",
      go = dir .. "/go-" .. k:gsub("%W", "_"),
      file = dir .. "/config-" .. k:gsub("%W", "_") .. "-" .. tostring(extra.mode) }
    for kk, v in pairs(extra) do c[kk] = v end
    return c
  end
  function ws.start(c, out)
    local f = assert(io.open(c.file, "wb"))
    f:write(cjson.encode(c))
    f:close()
    os.execute("chmod 600 " .. q(c.file))
    local p = io.popen(H.lua .. " spec/support/redis_worker.lua " .. q(c.file) .. " " .. q(out) .. " >"
      .. q(out .. ".log") .. " 2>&1 & echo $!")
    local pid = tonumber(p:read("*a"):match("%d+"))
    p:close()
    R.register(pid, true) -- a holder sleeps for an hour: spec/run ends it if the spec does not
    pids[out] = pid
    return pid
  end
  function ws.result(out)
    local r = cjson.decode(W.wait_for("the worker's result (" .. out .. ")", function()
      local f = io.open(out, "rb")
      if not f then return nil end
      local s = f:read("*a")
      f:close()
      return s
    end, 30))
    R.register(pids[out], false)
    return r
  end
  function ws.forget(pid) R.register(pid, false) end
  return ws
end

if arg and arg[0] and arg[0]:find("redis_worker.lua$") then
  local c = cjson.decode(read(arg[1]))
  local ok, r = xpcall(function() return W.run(c, core.clock.sleep) end, debug.traceback) -- Lua 5.1: no arguments
  write(arg[2], result(ok, r, require("support.fbtest").hash))
  os.exit(ok and 0 or 1)
end

return W
