-- A token store in Redis, for many processes and machines sharing FreshBooks connections: one
-- connection's tokens under one key (a JSON token record with `version` and `saved_at`), the same
-- load/save/lock contract as store/file.lua.
--   * lock: SET lock_key owner NX PX ttl with a random owner; released and extended by scripts that
--     compare the owner first, so a holder whose lock expired never releases its successor's. The wait
--     is bounded (lock_timeout) with backoff, sleeping on nginx's event loop inside OpenResty.
--   * save is fenced: a script writes the new pair only while the stored refresh token is still the
--     one it was refreshed from (`previous`). A holder whose lock expired while FreshBooks was slow
--     gets `conflict` instead of overwriting newer tokens (the session adopts those and hands the late
--     pair back on the error). A new authorization (no previous) is written whatever is stored.
--   * Redis failures are coded errors (`store_unavailable`, `store_corrupt`, `lock_timeout`, ...),
--     never raises. Every script is safe to repeat, so a command that failed on a connection found
--     closed (a pooled one after a Redis restart) is repeated once on a fresh connection.
-- Clients: anything answering `script("LOAD", text)`, `evalsha` and `eval` the way Debian's lua-redis
-- (plain Lua over LuaSocket: raises on errors) or lua-nginx-redis / OpenResty's resty.redis (nginx
-- cosockets: returns nil, err and ngx.null) do. The store takes a client factory and gives each
-- client back after one command (docs/deployment.md).
--
--   local store = freshbooks.store.redis{ redis = function() return client end, key = "fb:tokens:42" }
--   store.load() / store.save(new, previous) / store.lock() -> handle with :unlock(), :extend(s)
--   store.delete(), store.put_state(state, ttl), store.take_state(state)
--   local stores = freshbooks.store.redis.keyspace{ redis = ..., prefix = "freshbooks:" }
--   stores(connection_id) -> that connection's store;  stores.list() -> ids
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local redact = require "freshbooks.redact"
local record = require "freshbooks.store.record"

local MAX_RECORD = 65536 -- as the file store: a token record is small; anything bigger is not one

-- Each script touches one key (KEYS[1]), so they also run on a Redis Cluster.
local SCRIPTS = {
  -- -> the record | its length when over ARGV[1] bytes | nil (WRONGTYPE for another kind of value)
  load = [[
local n = redis.call('STRLEN', KEYS[1])
if n > tonumber(ARGV[1]) then return n end
return redis.call('GET', KEYS[1])]],
  -- ARGV: previous refresh token ('' for a new authorization), the new refresh token, the new record
  -- (JSON), the size limit. -> {1, version} written (or already written: repeating it is harmless),
  -- {0, version} refused because the stored refresh token is another one, {2, version} refused because
  -- the record with its version and saved_at is over the limit (load would refuse it). What is not a
  -- token record (garbage, oversized) holds no token to protect and is replaced.
  save = [[
local version, cur = 0, nil
if redis.call('STRLEN', KEYS[1]) <= tonumber(ARGV[4]) then cur = redis.call('GET', KEYS[1]) end
if cur then
  local ok, t = pcall(cjson.decode, cur)
  if ok and type(t) == 'table' and type(t.refresh_token) == 'string' then
    version = tonumber(t.version) or 0
    if t.refresh_token == ARGV[2] then return {1, version} end
    if ARGV[1] ~= '' and t.refresh_token ~= ARGV[1] then return {0, version} end
  end
end
local rec = cjson.decode(ARGV[3])
rec.version = version + 1
rec.saved_at = tonumber(redis.call('TIME')[1])
local text = cjson.encode(rec)
if #text > tonumber(ARGV[4]) then return {2, version} end
redis.call('SET', KEYS[1], text)
return {1, version + 1}]],
  -- SET NX PX, or already ours (a repeated attempt whose first answer was lost). -> 1 | 0
  lock = [[
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0]],
  -- Compare-and-delete / compare-and-pexpire. -> 1 | 0 (not ours any more)
  unlock = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0]],
  extend = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0]],
  put = "return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])",
  del = "return redis.call('DEL', KEYS[1])",
  -- One SCAN step (no key: list() is for one Redis, not a Cluster). -> {cursor, {keys}}
  scan = "return redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])",
}
local shas = {} -- script name -> SHA-1, learned once from SCRIPT LOAD (the same on every server)

local core = require "freshbooks.core"

-- cjson under Lua 5.4 decodes 2 as 2.0: versions and times are whole numbers.
local function whole(v)
  v = tonumber(v)
  return v and (math.tointeger and math.tointeger(v) or math.floor(v)) or nil
end

-- What Redis or a client says, cut to 200 bytes; marked, so hide can mask a token the cut went through.
local function cut(s) return #s > 200 and s:sub(1, 200) .. "..." or s end

local function unavailable(what, cause)
  local detail = type(cause) == "string" and cause or (cause ~= nil and tostring(cause)) or nil
  return errors.new{ code = "store_unavailable",
    message = what .. (detail and (": " .. cut(detail)) or "") }
end

-- One command on a client of either kind -> reply | nil, kind ("reply", "timeout", "connection"), text.
-- lua-redis raises ("...: redis error: MSG" for an error reply); resty.redis returns nil, err for a
-- network failure and false, MSG for an error reply, and ngx.null for a nil reply.
local function invoke(client, method, ...) return client[method](client, ...) end
local function call(client, method, ...)
  local ok, v, e = pcall(invoke, client, method, ...)
  if not ok then
    local msg = tostring(v)
    local reply = msg:match("redis error: (.*)$")
    if reply then return nil, "reply", reply end
    return nil, msg:find("timeout", 1, true) and "timeout" or "connection", msg
  end
  if v == nil and e ~= nil then return nil, tostring(e) == "timeout" and "timeout" or "connection", tostring(e) end
  if v == false then return nil, "reply", tostring(e) end
  local ngx = rawget(_G, "ngx")
  if ngx and v == ngx.null then return nil end
  return v
end

-- A store used directly (not through a session, which masks its tokens in every error) masks the
-- tokens handed to save in what Redis or a client answers, by exact value.
local function hide(err, tokens, previous)
  local values = {}
  for _, t in ipairs{ tokens, type(previous) == "table" and previous or {} } do
    for _, k in ipairs{ "refresh_token", "access_token" } do
      if type(t[k]) == "string" then values[#values + 1] = t[k] end
    end
  end
  err.message = redact.mask(redact.uncut(err.message, values), values)
  return err
end

local function reply_error(msg)
  local word = msg:match("^(%u+)") or "ERR"
  return errors.new{ code = word == "WRONGTYPE" and "store_corrupt" or "store_unavailable",
    message = "Redis answered " .. cut(msg), redis_error = word }
end

-- Connections: from the user's factory, back through the user's release, else resty.redis's pool
-- (set_keepalive) or, for plain clients, one idle connection kept per factory.
local idle = setmetatable({}, { __mode = "k" })

local function connector(o)
  local factory, release = o.redis, o.release
  local keepalive_ms, pool_size = o.keepalive * 1000, o.pool_size
  local c = {}
  function c.take()
    local kept = not release and idle[factory]
    if kept then
      idle[factory] = nil
      return kept
    end
    local ok, client, err = pcall(factory)
    if not ok then return nil, unavailable("could not connect to Redis", client) end
    if client == nil or client == false then return nil, unavailable("could not connect to Redis", err) end
    local t = type(client)
    if t ~= "table" and t ~= "userdata" then
      return nil, unavailable("the redis factory returned a " .. t .. ", not a client")
    end
    return client
  end
  -- `healthy`: the last answer was read whole, so the connection may serve another command.
  function c.give(client, healthy)
    if release then
      pcall(release, client, healthy)
      return
    end
    pcall(function()
      if client.set_keepalive then -- resty.redis / nginx.redis: nginx's per-worker pool
        if healthy then client:set_keepalive(keepalive_ms, pool_size) else client:close() end
      elseif healthy and not idle[factory] then
        idle[factory] = client
      else -- lua-redis has no close of its own: its LuaSocket
        local sock = client.network and client.network.socket
        if sock then sock:close() elseif client.quit then client:quit() end
      end
    end)
  end
  return c
end

-- script(name, key, ...) -> reply | nil, err
local function runner(conn)
  local function run(method, ...)
    for attempt = 1, 2 do
      local client, err = conn.take()
      if not client then return nil, err end
      local reply, kind, msg = call(client, method, ...)
      conn.give(client, kind == nil or kind == "reply")
      if not kind then return reply end
      if kind == "reply" then return nil, reply_error(msg) end
      if kind == "timeout" or attempt == 2 then return nil, unavailable("no answer from Redis", msg) end
    end
  end
  return function(name, key, ...)
    local sha = shas[name]
    if not sha then
      local loaded, err = run("script", "LOAD", SCRIPTS[name])
      if type(loaded) ~= "string" then return nil, err or unavailable("SCRIPT LOAD answered no SHA-1") end
      sha = loaded
      shas[name] = sha
    end
    local function eval(method, body, ...)
      if key then return run(method, body, 1, key, ...) end
      return run(method, body, 0, ...)
    end
    local reply, err = eval("evalsha", sha, ...)
    if err and err.redis_error == "NOSCRIPT" then -- a restarted Redis: EVAL loads it again
      reply, err = eval("eval", SCRIPTS[name], ...)
    end
    return reply, err
  end
end

-- `level` below is the error level that points at the user's call, as seen from the function given it.
local function check_key(v, name, level)
  if type(v) ~= "string" or v == "" or #v > 1024 or v:find("[%z\1-\31\127]") then
    error("freshbooks.store.redis: " .. name .. " must be a non-empty string without control characters", level)
  end
end

-- Options of a single store and of a keyspace: the factory, release, timings, sleep, and their keys.
local COMMON = {
  redis = { "function", say = "a function returning a connected client" },
  release = { "function" }, sleep = { "function" },
  lock_ttl = { "number", min = 0.001, default = 30 },
  lock_timeout = { "number", min = 0 }, -- default: lock_ttl + 5
  keepalive = { "number", min = 0, default = 60 },
  pool_size = { "number", min = 1, default = 100 },
}
local function spec(extra)
  local rules = {}
  for k, v in pairs(COMMON) do rules[k] = v end
  for k, v in pairs(extra) do rules[k] = v end
  return options.spec(rules)
end
local STORE = spec{ key = { "string" }, lock_key = { "string" }, state_prefix = { "string" } }
local KEYSPACE = spec{ prefix = { "string" } }

local function common(opts, rules, level)
  if type(opts) ~= "table" then error("freshbooks.store.redis: expected a table of options", level) end
  local o = options.check("freshbooks.store.redis", rules, opts, level)
  if o.redis == nil then
    error("freshbooks.store.redis: redis must be a function returning a connected client", level)
  end
  -- A waiter outlives a dead holder's lock by default: it proceeds once the TTL passes.
  o.lock_timeout = o.lock_timeout or o.lock_ttl + 5
  o.pool_size = math.floor(o.pool_size)
  return o
end

-- Sleeping while the lock is taken: the caller's, else nginx's event loop where it can yield, else
-- the thread (plain Lua clients block anyway).
local function sleeper(o)
  if o.sleep then return function(s) pcall(o.sleep, s) end end
  return env.sleep
end

local function build(o, key, lock_key, state_prefix, script)
  local where = "Redis key " .. key
  local sleep = sleeper(o)
  local ttl_ms = math.max(1, math.floor(o.lock_ttl * 1000 + 0.5))
  local store = { key = key }

  function store.load()
    local v, err = script("load", key, MAX_RECORD)
    if err then return nil, err end
    if v == nil then return nil end
    if type(v) ~= "string" then
      return nil, errors.new{ code = "store_corrupt", message = where .. " holds more than a token record" }
    end
    local tokens, t = record.decode(v, where)
    if not tokens then return nil, t end
    tokens.version, tokens.saved_at = whole(t.version), whole(t.saved_at)
    return tokens
  end

  local function oversized()
    return nil, errors.new{ code = "save_failed", message = "the token record is over " .. MAX_RECORD .. " bytes" }
  end
  function store.save(tokens, previous)
    if type(tokens) ~= "table" or type(tokens.refresh_token) ~= "string" then
      error("freshbooks.store.redis: save needs a token table with a refresh_token", 2)
    end
    local text = record.encode(tokens)
    if #text > MAX_RECORD then return oversized() end
    local fence = type(previous) == "table" and type(previous.refresh_token) == "string"
      and previous.refresh_token or ""
    local r, err = script("save", key, fence, tokens.refresh_token, text, MAX_RECORD)
    if err then return nil, hide(err, tokens, previous) end
    if type(r) ~= "table" or (r[1] ~= 1 and r[1] ~= 0 and r[1] ~= 2) then
      return nil, unavailable("the save script answered garbage")
    end
    if r[1] == 2 then return oversized() end
    if r[1] == 0 then
      return nil, errors.new{ code = "conflict", version = r[2], message = where .. " holds newer tokens (version "
        .. tostring(r[2]) .. ") than the ones this pair was refreshed from: it was not written" }
    end
    return true
  end

  -- -> handle with :unlock() and :extend(seconds) | nil, err (lock_timeout, store_unavailable, ...)
  function store.lock()
    local owner = core.codec.hex(core.crypto.random_bytes(16))
    local now = core.clock.now
    local deadline, delay = now() + o.lock_timeout, 0.002
    while true do
      local got, err = script("lock", lock_key, owner, ttl_ms)
      if err then return nil, err end
      if got == 1 then break end
      local left = deadline - now()
      if left <= 0 then
        return nil, errors.new{ code = "lock_timeout", message = "the token lock " .. lock_key .. " stayed taken for "
          .. o.lock_timeout .. " s" }
      end
      sleep(math.min(left, delay * (0.5 + math.random())))
      delay = math.min(delay * 2, 0.1)
    end
    local released = false
    local function ours(name, ...)
      local r, err = script(name, lock_key, owner, ...)
      if err then return nil, err end
      if r ~= 1 then
        return nil, errors.new{ code = "lock_lost", message = "the token lock expired and may be someone else's now" }
      end
      return true
    end
    return {
      unlock = function()
        if released then return true end
        local ok, err = ours("unlock")
        if ok or err.code == "lock_lost" then released = true end
        return ok, err
      end,
      extend = function(_, seconds)
        if type(seconds) ~= "number" or seconds <= 0 then
          error("freshbooks.store.redis: extend needs seconds > 0", 2)
        end
        if released then return nil, errors.new{ code = "lock_lost", message = "the token lock was released" } end
        return ours("extend", math.max(1, math.floor(seconds * 1000 + 0.5)))
      end,
    }
  end

  -- Forget the tokens (a disconnected connection). -> true | nil, err
  function store.delete()
    local _, err = script("del", key)
    if err then return nil, err end
    return true
  end

  -- OAuth states, kept server-side for a few minutes and usable once. A state is a secret for that
  -- time: the key holds its hash, never the state itself.
  local function state_key(state)
    if type(state) ~= "string" or state == "" then
      error("freshbooks.store.redis: state must be a non-empty string", 3)
    end
    return state_prefix .. core.codec.hex(core.crypto.hmac_sha256(state, "freshbooks oauth state"))
  end
  function store.put_state(state, ttl)
    local k = state_key(state)
    if type(ttl) ~= "number" or ttl < 1 then error("freshbooks.store.redis: put_state needs ttl >= 1 second", 2) end
    local _, err = script("put", k, "1", math.floor(ttl))
    if err then return nil, err end
    return true
  end
  -- -> true (it was pending: now used up) | false (unknown, expired or used) | nil, err
  function store.take_state(state)
    local n, err = script("del", state_key(state))
    if err then return nil, err end
    return n == 1
  end

  return setmetatable(store, { __tostring = function() return "freshbooks.store.redis(" .. key .. ")" end })
end

local redis_store = {}

-- freshbooks.store.redis{ redis = factory, key = "...", lock_key?, lock_ttl?, lock_timeout?, ... }
local function new(opts, level)
  local o = common(opts, STORE, level + 1)
  check_key(opts.key, "key", level + 1)
  local lock_key = opts.lock_key or (opts.key .. ":lock")
  local state_prefix = opts.state_prefix or (opts.key .. ":state:")
  check_key(lock_key, "lock_key", level + 1)
  check_key(state_prefix, "state_prefix", level + 1)
  if lock_key == opts.key then error("freshbooks.store.redis: lock_key must differ from key", level) end
  return build(o, opts.key, lock_key, state_prefix, runner(connector(o)))
end

-- Redis's glob characters, escaped for SCAN MATCH.
local function glob_escape(s) return (s:gsub("[%*%?%[%]\\]", "\\%0")) end

-- freshbooks.store.redis.keyspace{ redis = factory, prefix = "freshbooks:", ... } -> stores:
-- stores(id) is connection `id`'s store (<prefix>tokens:<id>, <prefix>lock:<id>,
-- <prefix>state:<id>:<hash>); stores.list() -> every id with stored tokens (SCAN, one Redis).
function redis_store.keyspace(opts)
  local o = common(opts, KEYSPACE, 3)
  local prefix = opts.prefix or "freshbooks:"
  if prefix ~= "" then check_key(prefix, "prefix", 3) end
  local script = runner(connector(o))
  local stores = {}
  function stores.list()
    local ids, cursor, seen = {}, "0", {}
    local pattern, skip = glob_escape(prefix .. "tokens:") .. "*", #prefix + #"tokens:"
    repeat
      local r, err = script("scan", nil, cursor, pattern, 1000)
      if err then return nil, err end
      if type(r) ~= "table" or type(r[2]) ~= "table" then return nil, unavailable("SCAN answered garbage") end
      cursor = tostring(r[1])
      for _, k in ipairs(r[2]) do
        local id = type(k) == "string" and k:sub(skip + 1)
        if id and id ~= "" and not seen[id] then seen[id] = true; ids[#ids + 1] = id end
      end
    until cursor == "0"
    table.sort(ids)
    return ids
  end
  return setmetatable(stores, {
    __call = function(_, id)
      check_key(id, "connection id", 3)
      return build(o, prefix .. "tokens:" .. id, prefix .. "lock:" .. id, prefix .. "state:" .. id .. ":", script)
    end,
    __tostring = function() return "freshbooks.store.redis.keyspace(" .. prefix .. ")" end,
  })
end

redis_store.SCRIPTS = SCRIPTS -- for the deployment docs and specs that inspect what runs in Redis

return setmetatable(redis_store, { __call = function(_, opts) return new(opts, 2) end }) -- (a tail call)
