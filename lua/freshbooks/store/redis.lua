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
local core = require "freshbooks.core"
local errors = require "freshbooks.errors"
local redact = require "freshbooks.redact"
local record = require "freshbooks.store.record"
local rc = require "freshbooks.store.redis_client"
local transport = require "freshbooks.transport"

local MAX_RECORD = 65536 -- as the file store: a token record is small; anything bigger is not one

-- Each script touches one key (KEYS[1]), so they also run on a Redis Cluster.
local SCRIPTS = {
  -- -> the record | its length when over ARGV[1] bytes | nil (WRONGTYPE for another kind of value)
  load = [[
local n = redis.call('STRLEN', KEYS[1])
if n > tonumber(ARGV[1]) then return n end
return redis.call('GET', KEYS[1])]],
  -- ARGV: previous refresh token ('' for a new authorization), the new refresh token, the new record
  -- (JSON), the size limit, the version the caller knows `previous` had. -> {1, version, absent}
  -- written (or already written: repeating it is harmless; absent = 1 when nothing was stored),
  -- {0, version} refused because the stored refresh token is another one, {2, version} refused because
  -- the record with its version and saved_at is over the limit (load would refuse it). What is not a
  -- token record (garbage, oversized) holds no token to protect and is replaced. Versions go on from
  -- the caller's when nothing is stored (a wiped Redis), so a newer pair always has the higher one.
  save = [[
local version, cur, absent = tonumber(ARGV[5]) or 0, nil, 1
if redis.call('STRLEN', KEYS[1]) <= tonumber(ARGV[4]) then cur = redis.call('GET', KEYS[1]) end
if cur then
  local ok, t = pcall(cjson.decode, cur)
  if ok and type(t) == 'table' and type(t.refresh_token) == 'string' then
    version, absent = tonumber(t.version) or 0, 0
    if t.refresh_token == ARGV[2] then return {1, version, 0} end
    if ARGV[1] ~= '' and t.refresh_token ~= ARGV[1] then return {0, version} end
  end
end
local rec = cjson.decode(ARGV[3])
rec.version = version + 1
rec.saved_at = tonumber(redis.call('TIME')[1])
local text = cjson.encode(rec)
if #text > tonumber(ARGV[4]) then return {2, version} end
redis.call('SET', KEYS[1], text)
return {1, version + 1, absent}]],
  -- A pair this process holds, written back after Redis lost it (ARGV: the record, its version, 'nx'
  -- to write only where no token record is). Never over a token record of the same or a higher version.
  -- -> 1 written | 0 refused
  restore = [[
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, t = pcall(cjson.decode, cur)
  if ok and type(t) == 'table' and type(t.refresh_token) == 'string'
    and (ARGV[3] == 'nx' or (tonumber(t.version) or 0) >= tonumber(ARGV[2])) then return 0 end
end
local rec = cjson.decode(ARGV[1])
rec.version = tonumber(ARGV[2])
rec.saved_at = tonumber(redis.call('TIME')[1])
redis.call('SET', KEYS[1], cjson.encode(rec))
return 1]],
  -- The store's generation: a random value set once; a Redis that lost its data has another (or none).
  generation = [[
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return ARGV[1] end
return redis.call('GET', KEYS[1])]],
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
-- script name -> SHA-1 SCRIPT LOAD answered (the same on every server). Only a 40-hex-digit answer is
-- kept, and a SHA the server does not know (NOSCRIPT) is forgotten, so it is loaded again next time.
local shas = {}

-- cjson under Lua 5.4 decodes 2 as 2.0: versions and times are whole numbers.
local function whole(v)
  v = tonumber(v)
  return v and (math.tointeger and math.tointeger(v) or math.floor(v)) or nil
end

local function is_callable(f) return require("freshbooks.session").is_callable(f) end

local unavailable, reply_error, call = rc.unavailable, rc.reply_error, rc.call

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

-- Connections: from the user's factory (or the settings' opener), back through the user's release,
-- else resty.redis's pool (set_keepalive) or, for plain clients, one idle connection kept per factory.
local idle = setmetatable({}, { __mode = "k" })

local function connector(o)
  local factory, release, open, forget = o.redis, o.release, o.open, o.forget
  local keepalive_ms, pool_size = o.keepalive * 1000, o.pool_size
  local c = { forget = forget or function() end }
  function c.take(deadline)
    local kept = not release and idle[factory]
    if kept then
      idle[factory] = nil
      return kept
    end
    if open then return open(deadline) end
    local ok, client, err = pcall(factory)
    if not ok then return nil, unavailable("could not connect to Redis", client) end
    if client == nil or client == false then
      if errors.is(err) then return nil, err end
      return nil, unavailable("could not connect to Redis", err)
    end
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

-- runner(conn, o) -> script(name, key, args, wait) -> reply | nil, err. One script call is one store
-- operation: everything it does (connect, TLS, AUTH, SCRIPT LOAD, EVALSHA or EVAL, a repeat on a
-- connection found closed, WAIT) ends within o.timeout seconds. `wait`: after a write, WAIT for
-- o.replicas replicas on the same connection.
local function runner(conn, o)
  local function run(ctx, deadline, method, args, wait)
    for attempt = 1, 2 do
      local client, err = conn.take(deadline)
      if not client then return nil, err end
      ctx.client = client
      rc.arm(client, deadline)
      local reply, kind, msg = call(client, method, (table.unpack or unpack)(args, 1, args.n))
      if wait and not kind then
        local acked, wkind, wmsg = call(client, "wait", o.replicas, math.max(1, math.floor(o.replica_timeout * 1000)))
        if wkind then kind, msg = wkind, wmsg
        elseif (tonumber(acked) or 0) < o.replicas then
          conn.give(client, true)
          return nil, errors.new{ code = "store_unavailable", replicas = tonumber(acked) or 0,
            message = ("the write reached %s of the %d replicas asked for within %g s")
              :format(tostring(acked), o.replicas, o.replica_timeout) }
        end
      end
      -- A primary demoted by a failover answers READONLY: ask again where the primary is now.
      local readonly = kind == "reply" and msg:find("^READONLY")
      conn.give(client, not readonly and (kind == nil or kind == "reply"))
      ctx.client = nil
      if not kind then return reply end
      if readonly then conn.forget() end
      if kind == "reply" and not (readonly and attempt == 1) then return nil, reply_error(msg) end
      if kind == "timeout" then return nil, unavailable("no answer from Redis", msg) end
      if attempt == 2 then return nil, unavailable("no answer from Redis", msg) end
    end
  end
  local function op(ctx, deadline, name, key, args, wait)
    local function eval(method, body)
      local a = { body, key and 1 or 0, key, n = key and 3 or 2 }
      for i = 1, args.n do a[a.n + i] = args[i] end
      a.n = a.n + args.n
      return run(ctx, deadline, method, a, wait)
    end
    local sha = shas[name]
    if not sha then
      local loaded, err = run(ctx, deadline, "script", { "LOAD", SCRIPTS[name], n = 2 })
      if err then return nil, err end
      if type(loaded) == "string" and loaded:match("^%x+$") and #loaded == 40 then
        sha = loaded
        shas[name] = sha
      else -- a garbage answer is never remembered: this call sends the script itself
        return eval("eval", SCRIPTS[name])
      end
    end
    local reply, err = eval("evalsha", sha)
    if err and err.redis_error == "NOSCRIPT" then -- a restarted Redis: EVAL loads it again, LOAD next time
      if shas[name] == sha then shas[name] = nil end
      reply, err = eval("eval", SCRIPTS[name])
    end
    return reply, err
  end
  return function(name, key, args, wait)
    args = args or { n = 0 }
    args.n = args.n or #args
    return rc.within(o.timeout, op, name, key, args, wait and o.replicas > 0)
  end
end

-- `level` below is the error level that points at the user's call, as seen from the function given it.
local function number_opt(opts, k, default, min, level)
  local v = opts[k]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < min then
    error(("freshbooks.store.redis: %s must be a number >= %s"):format(k, min), level)
  end
  return v
end

local function check_key(v, name, level)
  if type(v) ~= "string" or v == "" or #v > 1024 or v:find("[%z\1-\31\127]") then
    error("freshbooks.store.redis: " .. name .. " must be a non-empty string without control characters", level)
  end
end

-- Options shared by a single store and a keyspace: the client (a factory, or connection settings),
-- release, timings, sleep, replication, the wipe check.
local function common(opts, level)
  if type(opts) ~= "table" then error("freshbooks.store.redis: expected a table of options", level) end
  local o = { redis = opts.redis, release = opts.release, sleep = opts.sleep }
  if type(opts.redis) == "table" and not is_callable(opts.redis) then
    o.settings = rc.settings(opts.redis, level + 1)
    o.open, o.forget = rc.opener(o.settings)
  elseif not is_callable(opts.redis) then
    error("freshbooks.store.redis: redis must be a function returning a connected client, or a table of "
      .. "connection settings ({host =, port =, tls =, username =, password =, sentinel =})", level)
  end
  for _, k in ipairs{ "release", "sleep" } do
    if opts[k] ~= nil and not is_callable(opts[k]) then
      error("freshbooks.store.redis: " .. k .. " must be a function", level)
    end
  end
  o.lock_ttl = number_opt(opts, "lock_ttl", 30, 0.001, level + 1)
  -- A waiter outlives a dead holder's lock by default: it proceeds once the TTL passes.
  o.lock_timeout = number_opt(opts, "lock_timeout", o.lock_ttl + 5, 0, level + 1)
  o.keepalive = number_opt(opts, "keepalive", 60, 0, level + 1)
  o.pool_size = math.floor(number_opt(opts, "pool_size", 100, 1, level + 1))
  o.timeout = number_opt(opts, "timeout", 5, 0.001, level + 1)
  o.replicas = math.floor(number_opt(opts, "replicas", 0, 0, level + 1))
  o.replica_timeout = number_opt(opts, "replica_timeout", 1, 0.001, level + 1)
  if opts.wipe_check == false then o.wipe_check = false
  else o.wipe_check = number_opt(opts, "wipe_check", 1, 0, level + 1) end
  return o
end

local OPTIONS = { redis = true, release = true, sleep = true, lock_ttl = true, lock_timeout = true,
  keepalive = true, pool_size = true, timeout = true, replicas = true, replica_timeout = true, wipe_check = true }

local function check_names(opts, extra, level)
  for k in pairs(opts) do
    if not OPTIONS[k] and not extra[k] then
      error("freshbooks.store.redis: unknown option '" .. tostring(k) .. "'", level)
    end
  end
end

-- Sleeping while the lock is taken: the caller's, else nginx's event loop where it can yield, else
-- the thread (plain Lua clients block anyway).
local function sleeper(o)
  if o.sleep then return function(s) pcall(o.sleep, s) end end
  return function(s)
    local ngx = transport.openresty()
    if ngx then ngx.sleep(s) else core.sleep(s) end
  end
end

-- A Redis that lost its data (restarted without persistence, flushed, failed over to an empty
-- replica) has lost every pair written to it. Each process remembers the last pair it loaded or
-- handed to save for each connection it holds (ks.held: store -> memory, weak: gone with the store),
-- and the store's generation (a random value kept in Redis with no TTL). When the generation is gone
-- or another, the process writes back every pair it holds (never over a newer version), then goes
-- on. The check runs at most every o.wipe_check seconds, and at once when a connection this process
-- holds is found missing.
local function wipes(o, script, generation_key)
  local ks = { held = setmetatable({}, { __mode = "k" }), restored = 0 }
  -- -> nil | an error when Redis did not answer (the operation that asked need not try)
  function ks.check(force)
    if o.wipe_check == false then return end
    local now = core.now()
    if not force and ks.checked and now - ks.checked < o.wipe_check then return end
    ks.checked = now
    local mine = core.hex(core.random_bytes(16))
    local g, err = script("generation", generation_key, { mine, n = 1 })
    if err and err.code ~= "store_corrupt" then return err end -- (the operation would fail the same way)
    if type(g) ~= "string" then return end
    local before = ks.seen
    ks.seen = g
    -- Another generation than the one seen, or none at all (ours was just set): Redis lost its data,
    -- or is new (then nothing is held).
    if before == g or (not before and g ~= mine) then return end
    local newest = {} -- several live store objects may name one key: its newest pair
    for store, mem in pairs(ks.held) do
      local best = newest[store.key]
      if not best or mem.version > best.version then newest[store.key] = mem end
    end
    for key, mem in pairs(newest) do
      local r = script("restore", key, { mem.text, mem.version, "", n = 3 }, true)
      if r == 1 then ks.restored = ks.restored + 1 end
    end
  end
  return ks
end

-- Key names. A keyspace's key is prefix .. "{" .. id .. "}:" .. kind, with `%`, `{`, `}` and `:` in
-- the id percent-encoded: the part after the prefix holds one `{` and one `:` outside the braces, so
-- it is never the tail of another such part, and no two (prefix, id) pairs, nested prefixes
-- included, name one key. The braces are also the id's Redis Cluster hash tag.
local function encode_id(id) return (id:gsub("[%%{}:]", function(c) return ("%%%02X"):format(c:byte()) end)) end
local function decode_id(e) return (e:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end

local function build(o, keys, script, ks)
  local key, lock_key = keys.tokens, keys.lock
  local where = "Redis key " .. key
  local sleep = sleeper(o)
  local ttl_ms = math.max(1, math.floor(o.lock_ttl * 1000 + 0.5))
  local store = { key = key }

  -- Every operation first gives the wipe check its turn.
  local function run(name, k, args, wait)
    local err = ks.check(false)
    if err then return nil, err end
    return script(name, k, args, wait)
  end

  local function hold(text, version, refresh_token)
    ks.held[store] = { text = text, version = version, refresh_token = refresh_token }
  end

  local function decode(v, at)
    if type(v) ~= "string" then
      return nil, errors.new{ code = "store_corrupt", message = at .. " holds more than a token record" }
    end
    local tokens, t = record.decode(v, at)
    if not tokens then return nil, t end
    tokens.version, tokens.saved_at = whole(t.version), whole(t.saved_at)
    return tokens
  end

  -- A pair under the key layout before prefix{id}: read once, moved to the new key (unless one is
  -- there already), deleted.
  local function legacy()
    local v, err = script("load", keys.legacy, { MAX_RECORD, n = 1 })
    if err or v == nil then return nil, err end
    local tokens, derr = decode(v, "Redis key " .. keys.legacy)
    if not tokens then return nil, derr end
    local _, werr = script("restore", key, { record.encode(tokens), tokens.version or 1, "nx", n = 3 })
    if werr then return nil, werr end
    script("del", keys.legacy, { n = 0 })
    return true
  end

  function store.load()
    local v, err = run("load", key, { MAX_RECORD, n = 1 })
    if err then return nil, err end
    if v == nil and ks.held[store] then -- ours: deleted elsewhere, or lost by Redis?
      ks.check(true)
      v, err = script("load", key, { MAX_RECORD, n = 1 })
      if err then return nil, err end
    end
    if v == nil and keys.legacy then
      local moved, lerr = legacy()
      if lerr then return nil, lerr end
      if moved then
        v, err = script("load", key, { MAX_RECORD, n = 1 })
        if err then return nil, err end
      end
    end
    if v == nil then return nil end
    local tokens, derr = decode(v, where)
    if not tokens then return nil, derr end
    hold(record.encode(tokens), tokens.version or 0, tokens.refresh_token)
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
    local mem = ks.held[store]
    local known = mem and mem.refresh_token == fence and mem.version
      or (type(previous) == "table" and whole(previous.version)) or 0
    local r, err = run("save", key, { fence, tokens.refresh_token, text, MAX_RECORD, known, n = 5 }, true)
    if err then
      -- Not written, or not known to be: this process holds the pair until a save goes through.
      hold(text, known + 1, tokens.refresh_token)
      return nil, hide(err, tokens, previous)
    end
    if type(r) ~= "table" or (r[1] ~= 1 and r[1] ~= 0 and r[1] ~= 2) then
      hold(text, known + 1, tokens.refresh_token)
      return nil, unavailable("the save script answered garbage")
    end
    if r[1] == 2 then return oversized() end
    if r[1] == 0 then
      return nil, errors.new{ code = "conflict", version = r[2], message = where .. " holds newer tokens (version "
        .. tostring(r[2]) .. ") than the ones this pair was refreshed from: it was not written" }
    end
    hold(text, whole(r[2]) or known + 1, tokens.refresh_token)
    -- Written where nothing was, over a pair we refreshed from: deleted elsewhere, or a Redis that lost its data.
    if r[3] == 1 and fence ~= "" then ks.check(true) end
    return true
  end

  -- -> handle with :unlock() and :extend(seconds) | nil, err (lock_timeout, store_unavailable, ...)
  function store.lock()
    local owner = core.hex(core.random_bytes(16))
    local now = core.now
    local deadline, delay = now() + o.lock_timeout, 0.002
    while true do
      local got, err = run("lock", lock_key, { owner, ttl_ms, n = 2 })
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
    local function ours(name, extra)
      local r, err = script(name, lock_key, { owner, extra, n = extra and 2 or 1 })
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
    local _, err = run("del", key, { n = 0 })
    if err then return nil, err end
    ks.held[store] = nil
    return true
  end

  -- OAuth states, kept server-side for a few minutes and usable once. A state is a secret for that
  -- time: the key holds its hash, never the state itself.
  local function state_key(state)
    if type(state) ~= "string" or state == "" then
      error("freshbooks.store.redis: state must be a non-empty string", 3)
    end
    return keys.state .. core.hex(core.hmac_sha256(state, "freshbooks oauth state"))
  end
  function store.put_state(state, ttl)
    local k = state_key(state)
    if type(ttl) ~= "number" or ttl < 1 then error("freshbooks.store.redis: put_state needs ttl >= 1 second", 2) end
    local _, err = run("put", k, { "1", math.floor(ttl), n = 2 })
    if err then return nil, err end
    return true
  end
  -- -> true (it was pending: now used up) | false (unknown, expired or used) | nil, err
  function store.take_state(state)
    local n, err = run("del", state_key(state), { n = 0 })
    if err then return nil, err end
    return n == 1
  end

  return setmetatable(store, { __tostring = function() return "freshbooks.store.redis(" .. key .. ")" end })
end

local redis_store = {}

-- freshbooks.store.redis{ redis = factory | settings, key = "...", lock_key?, lock_ttl?, lock_timeout?, ... }
local function new(opts, level)
  local o = common(opts, level + 1)
  check_names(opts, { key = true, lock_key = true, state_prefix = true }, level + 1)
  check_key(opts.key, "key", level + 1)
  local lock_key = opts.lock_key or (opts.key .. ":lock")
  local state_prefix = opts.state_prefix or (opts.key .. ":state:")
  check_key(lock_key, "lock_key", level + 1)
  check_key(state_prefix, "state_prefix", level + 1)
  if lock_key == opts.key then error("freshbooks.store.redis: lock_key must differ from key", level) end
  local script = runner(connector(o), o)
  local ks = wipes(o, script, opts.key .. ":generation")
  return build(o, { tokens = opts.key, lock = lock_key, state = state_prefix }, script, ks)
end

-- Redis's glob characters, escaped for SCAN MATCH.
local function glob_escape(s) return (s:gsub("[%*%?%[%]\\]", "\\%0")) end

-- Every key SCAN finds for `pattern` -> array | nil, err
local function scan(script, pattern)
  local out, cursor, seen = {}, "0", {}
  repeat
    local r, err = script("scan", nil, { cursor, pattern, 1000, n = 3 })
    if err then return nil, err end
    if type(r) ~= "table" or type(r[2]) ~= "table" then return nil, unavailable("SCAN answered garbage") end
    cursor = tostring(r[1])
    for _, k in ipairs(r[2]) do
      if type(k) == "string" and not seen[k] then seen[k] = true; out[#out + 1] = k end
    end
  until cursor == "0"
  return out
end

-- freshbooks.store.redis.keyspace{ redis = factory | settings, prefix = "freshbooks:", legacy = true, ... }
-- -> stores: stores(id) is connection `id`'s store (<prefix>{<id>}:tokens, <prefix>{<id>}:lock,
-- <prefix>{<id>}:state.<hash>; the generation at <prefix>{}:generation); stores.list() -> every id
-- with stored tokens (SCAN, one Redis); stores.migrate() moves the layout before this one
-- (<prefix>tokens:<id>); `legacy` reads a connection's old key when it has no new one.
function redis_store.keyspace(opts)
  local o = common(opts, 3)
  check_names(opts, { prefix = true, legacy = true }, 3)
  local prefix = opts.prefix or "freshbooks:"
  if prefix ~= "" then check_key(prefix, "prefix", 3) end
  if opts.legacy ~= nil and type(opts.legacy) ~= "boolean" then
    error("freshbooks.store.redis: legacy must be a boolean", 3)
  end
  local legacy = opts.legacy ~= false
  local script = runner(connector(o), o)
  local ks = wipes(o, script, prefix .. "{}:generation")
  local stores = {}
  local function keys(id)
    local e = prefix .. "{" .. encode_id(id) .. "}:"
    -- The old layout named another keyspace's keys for ids holding "tokens:" (prefixes nested):
    -- those are never read from it.
    local old = legacy and not id:find("tokens:", 1, true) and prefix .. "tokens:" .. id or nil
    return { tokens = e .. "tokens", lock = e .. "lock", state = e .. "state.", legacy = old }
  end
  function stores.list()
    local found, err = scan(script, glob_escape(prefix) .. "{*}:tokens")
    if not found then return nil, err end
    local ids = {}
    for _, k in ipairs(found) do
      local e = k:sub(#prefix + 1):match("^{([^{}:]+)}:tokens$")
      if k:sub(1, #prefix) == prefix and e then ids[#ids + 1] = decode_id(e) end
    end
    table.sort(ids)
    return ids
  end
  -- Moves every <prefix>tokens:<id> token record to <prefix>{<id>}:tokens (where none is yet), then
  -- deletes it. Keyspaces whose prefixes nest: migrate the longest prefix first. -> {moved =, kept =} | nil, err
  function stores.migrate()
    local found, err = scan(script, glob_escape(prefix .. "tokens:") .. "*")
    if not found then return nil, err end
    local moved, kept = 0, 0
    for _, k in ipairs(found) do
      local id = k:sub(#prefix + #"tokens:" + 1)
      local v, lerr = script("load", k, { MAX_RECORD, n = 1 })
      if lerr then return nil, lerr end
      local tokens = type(v) == "string" and id ~= "" and not id:find("[%z\1-\31\127]") and record.decode(v, k)
      if tokens then
        local t = select(2, record.decode(v, k))
        local r, werr = script("restore", keys(id).tokens,
          { record.encode(tokens), whole(t.version) or 1, "nx", n = 3 })
        if werr then return nil, werr end
        if r == 1 then moved = moved + 1 else kept = kept + 1 end
        local _, derr = script("del", k, { n = 0 })
        if derr then return nil, derr end
      end
    end
    return { moved = moved, kept = kept }
  end
  -- The pairs this process wrote back after finding the store wiped (for metrics and specs).
  function stores.restored() return ks.restored end
  return setmetatable(stores, {
    __call = function(_, id)
      check_key(id, "connection id", 3)
      return build(o, keys(id), script, ks)
    end,
    __tostring = function() return "freshbooks.store.redis.keyspace(" .. prefix .. ")" end,
  })
end

redis_store.SCRIPTS = SCRIPTS -- for the deployment docs and specs that inspect what runs in Redis

return setmetatable(redis_store, { __call = function(_, opts) return new(opts, 3) end })
