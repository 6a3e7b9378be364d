-- A token store in Redis, for many processes and machines sharing FreshBooks connections: one
-- connection's tokens under one key (a JSON token record with `version` and `saved_at`), the same
-- load/save/lock contract as store/file.lua.
--   * lock: the lock key holds a random owner and its deadline (Redis's clock), set when free or past
--     its deadline; released and extended by scripts that compare the owner first, so a holder whose
--     lock expired never releases its successor's. The key lingers after its deadline, so the next
--     holder learns that the last one never released it (`contested`: its pair may still be on its
--     way). The wait is bounded (lock_timeout) with backoff, sleeping on nginx's event loop inside
--     OpenResty.
--   * save is fenced: a script writes the new pair only while the stored refresh token is still the
--     one it was refreshed from (`previous`). A holder whose lock expired while FreshBooks was slow
--     gets `conflict` instead of overwriting newer tokens (the session adopts those and hands the late
--     pair back on the error). A new authorization (no previous) is written whatever is stored.
--   * a pair save could not write waits in the node's pending place (store/pending.lua, option
--     `pending`) as well as in this process's memory: load and every later operation of any process
--     of the node write it back (fenced on the pair it came from, else never over a newer version).
--   * Redis failures are coded errors (`store_unavailable`, `store_corrupt`, `lock_timeout`, ...),
--     never raises. Every script is safe to repeat, so a command that failed on a connection found
--     closed (a pooled one after a Redis restart) is repeated once on a fresh connection.
-- Clients: anything answering `script("LOAD", text)`, `evalsha` and `eval` the way Debian's lua-redis
-- (plain Lua over LuaSocket: raises on errors) or lua-nginx-redis / OpenResty's resty.redis (nginx
-- cosockets: returns nil, err and ngx.null) do. The store takes a client factory and gives each
-- client back after one command (docs/deployment.md).
--
--   local store = freshbooks.store.redis{ redis = function() return client end, key = "fb:tokens:42" }
--   store.load() / store.save(new, previous) / store.lock() -> handle with :unlock(), :extend(s), :contested()
--   store.delete(), store.put_state(state, ttl), store.take_state(state)
--   local stores = freshbooks.store.redis.keyspace{ redis = ..., prefix = "freshbooks:" }
--   stores(connection_id) -> that connection's store;  stores.list() -> ids;  stores.flush() -> n
local cjson = require "cjson.safe"
local core = require "freshbooks.core"
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local pending = require "freshbooks.store.pending"
local redact = require "freshbooks.redact"
local record = require "freshbooks.store.record"
local rc = require "freshbooks.store.redis_client"

local MAX_RECORD = 65536 -- as the file store: a token record is small; anything bigger is not one
-- A lock key outlives its deadline by this long, so that the next holder sees it was never released.
local LINGER_MS = 300000
-- How long a pair another node keeps pending may take to reach Redis once Redis answers again (that
-- node's next store operation, or its flush timer).
local SETTLE = 5
-- Pending pairs are written back after an operation that Redis answered, at most this often.
local FLUSH_EVERY = 0.25

local SCRIPTS = require "freshbooks.store.redis_scripts" -- what runs inside Redis
-- script name -> SHA-1 SCRIPT LOAD answered (the same on every server). Only a 40-hex-digit answer is
-- kept, and a SHA the server does not know (NOSCRIPT) is forgotten, so it is loaded again next time.
local shas = {}

-- cjson under Lua 5.4 decodes 2 as 2.0: versions and times are whole numbers.
local function whole(v)
  v = tonumber(v)
  return v and (math.tointeger and math.tointeger(v) or math.floor(v)) or nil
end

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
local function check_key(v, name, level)
  if type(v) ~= "string" or v == "" or #v > 1024 or v:find("[%z\1-\31\127]") then
    error("freshbooks.store.redis: " .. name .. " must be a non-empty string without control characters", level)
  end
end

-- Options of a single store and of a keyspace: the client (a factory, or connection settings),
-- release, timings, sleep, replication, the wipe check, and their keys.
local REDIS = "a function returning a connected client, or a table of connection settings"
  .. " ({host =, port =, tls =, username =, password =, sentinel =})"
local COMMON = {
  redis = { "function|table", say = REDIS },
  release = { "function" }, sleep = { "function" },
  lock_ttl = { "number", min = 0.001, default = 30 },
  lock_timeout = { "number", min = 0 }, -- default: lock_ttl + 5
  keepalive = { "number", min = 0, default = 60 },
  pool_size = { "number", min = 1, default = 100 },
  timeout = { "number", min = 0.001, default = 5 },
  replicas = { "number", min = 0, default = 0 },
  replica_timeout = { "number", min = 0.001, default = 1 },
  wipe_check = { "number|false", min = 0, default = 1, say = "a number >= 0, or false" },
  pending = { "table", say = "a table {shared_dict =, dir =}" },
}
local PENDING = options.spec{ shared_dict = { "string", nonempty = true }, dir = { "string", nonempty = true } }
local function spec(extra)
  local rules = {}
  for k, v in pairs(COMMON) do rules[k] = v end
  for k, v in pairs(extra) do rules[k] = v end
  return options.spec(rules)
end
local STORE = spec{ key = { "string" }, lock_key = { "string" }, state_prefix = { "string" } }
local KEYSPACE = spec{ prefix = { "string" }, legacy = { "boolean", default = true } }

-- The node's pending place (store/pending.lua) from the `pending` option.
local function pending_place(p, level)
  p = options.check("freshbooks.store.redis: pending", PENDING, p, level + 1)
  if p.dir and (p.dir:sub(1, 1) ~= "/" or p.dir:find("%z")) then
    error("freshbooks.store.redis: pending.dir must be an absolute directory path", level)
  end
  if p.shared_dict and not p.shared_dict:match("^[%w_]+$") then
    error("freshbooks.store.redis: pending.shared_dict must name a lua_shared_dict", level)
  end
  local ngx = env.nginx()
  if ngx and p.shared_dict and not ngx.shared[p.shared_dict] then
    error("freshbooks.store.redis: pending.shared_dict: nginx has no `lua_shared_dict " .. p.shared_dict
      .. "` (declare it in the http block)", level)
  end
  if not p.dir and not p.shared_dict then
    error("freshbooks.store.redis: pending needs shared_dict (nginx) and/or dir", level)
  end
  return pending.new(p)
end

local function common(opts, rules, level)
  if type(opts) ~= "table" then error("freshbooks.store.redis: expected a table of options", level) end
  local o = options.check("freshbooks.store.redis", rules, opts, level)
  if o.redis == nil then error("freshbooks.store.redis: redis must be " .. REDIS, level) end
  if not options.callable(o.redis) then
    o.settings = rc.settings(o.redis, level + 1)
    o.open, o.forget = rc.opener(o.settings)
  end
  -- A waiter outlives a dead holder's lock by default: it proceeds once the TTL passes.
  o.lock_timeout = o.lock_timeout or o.lock_ttl + 5
  if o.pending then o.place = pending_place(o.pending, level + 1) end
  o.pool_size = math.floor(o.pool_size)
  o.replicas = math.floor(o.replicas)
  return o
end

-- Sleeping while the lock is taken: the caller's, else nginx's event loop where it can yield, else
-- the thread (plain Lua clients block anyway).
local function sleeper(o)
  if o.sleep then return function(s) pcall(o.sleep, s) end end
  return env.sleep
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
    local now = core.clock.now()
    if not force and ks.checked and now - ks.checked < o.wipe_check then return end
    ks.checked = now
    local mine = core.codec.hex(core.crypto.random_bytes(16))
    local gen, err = script("generation", generation_key, { mine, "", n = 2 })
    if err and err.code ~= "store_corrupt" then return err end -- (the operation would fail the same way)
    local g, since = type(gen) == "table" and gen[1], type(gen) == "table" and tonumber(gen[2])
    if type(g) ~= "string" or not since then return end
    -- Marked wiped by a process that found it so (this one may hold nothing, or be new).
    if since >= 0 then ks.wiped_at = math.max(ks.wiped_at or 0, now - since / 1000) end
    -- The node remembers the generation too: a worker started after a reload or a crash knows it. It
    -- learns a new one only once Redis holds the wipe's mark, so a process that reads the node's
    -- generation also finds the mark.
    local place = o.place
    local before = ks.seen or (place and place.noted(generation_key))
    local function seen()
      ks.seen = g
      if place and before ~= g then place.note(generation_key, g) end
    end
    -- Another generation than the one seen, or none at all (ours was just set): Redis lost its data,
    -- or is new (then nothing is held).
    if before == g or (not before and g ~= mine) or (not before and not next(ks.held)) then return seen() end
    ks.wiped_at = now
    local _, merr = script("generation", generation_key, { mine, "wiped", n = 2 })
    if merr then return end -- (not seen yet: the next check finds the wipe again)
    seen()
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

-- The node's pending pairs (o.place, store/pending.lua): a pair save could not write is kept there
-- for every process of the node, under its key and this store's namespace (`scope`: two stores or
-- keyspaces may share one place). It goes back to Redis fenced on the pair it was refreshed from
-- (Redis still holds that one), else as a restore (Redis lost that one: never over the same or a
-- higher version), and leaves the place once Redis holds it or a newer pair.
local function refresh_token_of(e)
  local t = type(e) == "table" and type(e.text) == "string" and cjson.decode(e.text)
  return type(t) == "table" and t.refresh_token or nil
end

local function pendings(o, script, scope, ks)
  local place = o.place
  -- -> true (Redis holds it, or a newer pair) | nil, err
  local function write_back(key, e)
    local rt = refresh_token_of(e)
    if type(rt) ~= "string" or type(e.fence) ~= "string" or type(e.version) ~= "number" then
      return true -- not an entry of ours: nothing to keep
    end
    local r, err = script("save", key, { e.fence, rt, e.text, MAX_RECORD, e.version - 1, n = 5 }, true)
    if err then return nil, err end
    if type(r) ~= "table" or (r[1] ~= 0 and r[1] ~= 1) then
      return nil, unavailable("the save script answered garbage")
    end
    if r[1] == 0 then
      local _, rerr = script("restore", key, { e.text, e.version, "", n = 3 }, true)
      if rerr then return nil, rerr end
    end
    return true
  end
  local function same(e)
    local rt = refresh_token_of(e)
    return function(cur) return refresh_token_of(cur) == rt end
  end
  -- ks.keep(key, text, version, fence) -> true | nil, err: kept on the node (newer pairs stay)
  function ks.keep(key, text, version, fence)
    if not place then return nil end
    local entry = { text = text, version = version, fence = fence, scope = scope }
    local rt = refresh_token_of(entry)
    return place.put(key, entry, function(cur)
      return cur.scope == scope and (refresh_token_of(cur) == rt or (tonumber(cur.version) or 0) > version)
    end)
  end
  -- ks.settled(key, refresh_token, fence): Redis took this pair: a pending entry for it, or for the
  -- pair it was refreshed from, or any before a new authorization, is done.
  function ks.settled(key, rt, fence)
    if not place then return end
    place.settle(key, function(cur)
      local crt = refresh_token_of(cur)
      return cur.scope == scope and (fence == "" or crt == rt or crt == fence)
    end)
  end
  -- ks.pending(key) -> this node's pending entry for key after an attempt to write it back (nil when
  -- none is left), and the error that kept it.
  function ks.pending(key)
    local e = place and place.get(key)
    if not e or e.scope ~= scope then return nil end
    local ok, err = write_back(key, e)
    if not ok then return e, err end
    place.settle(key, same(e))
    return nil
  end
  -- ks.flush(force) -> how many pending pairs went back | nil, err. After an operation Redis answered
  -- (at most every FLUSH_EVERY seconds), and when the program asks (stores.flush: a timer, start-up).
  function ks.flush(force)
    if not place then return 0 end
    local now = core.clock.now()
    if not force and ks.flushed and now - ks.flushed < FLUSH_EVERY then return 0 end
    ks.flushed = now
    local n = 0
    for key, e in pairs(place.all()) do
      if type(e) == "table" and e.scope == scope then
        local ok, err = write_back(key, e)
        if ok then
          place.settle(key, same(e))
          n = n + 1
        elseif err.code ~= "store_corrupt" then -- (a key of another type holds this one back only)
          return nil, err
        end
      end
    end
    return n
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

  -- Every operation first gives the wipe check its turn; once Redis answered, the node's pending
  -- pairs theirs.
  local function run(name, k, args, wait)
    local err = ks.check(false)
    if err then return nil, err end
    local r, serr = script(name, k, args, wait)
    if not serr then ks.flush(false) end
    return r, serr
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
    -- A pair this node keeps pending for the key goes back first: it is newer than what Redis holds.
    local kept, kerr = ks.pending(key)
    local v, err
    if kerr then err = kerr else v, err = run("load", key, { MAX_RECORD, n = 1 }) end
    if err and kept and err.code == "store_unavailable" then -- Redis away: the node's pair is the newest
      local tokens = record.decode(kept.text, "the pending pair of " .. key)
      if tokens then
        tokens.version = kept.version
        hold(kept.text, kept.version, tokens.refresh_token)
        return tokens
      end
    end
    if err then return nil, err end
    -- None: never stored, deleted, or lost by Redis? After a wipe, holders write their pairs back on
    -- their next use of Redis (or their node's flush timer): read again until then.
    if v == nil then
      ks.check(true)
      local until_ = ks.wiped_at and ks.wiped_at + SETTLE or 0
      local first = true
      while v == nil and (first and ks.held[store] or core.clock.now() < until_) do
        if not first then sleep(0.1) end
        first = false
        v, err = script("load", key, { MAX_RECORD, n = 1 })
        if err then return nil, err end
      end
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
    -- An older pair than the one this process holds: Redis lost data and got an older pair back from
    -- another process. Ours goes back (never over a newer one), and is what Redis holds now.
    local mem = ks.held[store]
    if mem and mem.version > (tokens.version or 0) and mem.refresh_token ~= tokens.refresh_token then
      local r = script("restore", key, { mem.text, mem.version, "", n = 3 }, true)
      local ours = r == 1 and record.decode(mem.text, where)
      if ours then
        ours.version = mem.version
        return ours
      end
    end
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
    -- The version `previous` has: from what this process holds (the session's copy of `previous`
    -- carries token fields only). Held already, this pair is being saved again (its first save
    -- failed): it came from the version before its own.
    local mem = ks.held[store]
    local known = mem and mem.refresh_token == fence and mem.version
      or mem and fence ~= "" and mem.refresh_token == tokens.refresh_token and mem.version - 1
      or (type(previous) == "table" and whole(previous.version)) or 0
    -- A new authorization outranks every pair before it (the save script's rule), on the node too.
    if fence == "" then known = math.max(known, mem and mem.version or 0, math.floor(core.clock.time() * 1000)) end
    -- Not written, or not known to be: this process holds the pair, and the node keeps it pending,
    -- until a save or a write-back goes through.
    local function keep(err)
      hold(text, known + 1, tokens.refresh_token)
      local ok, kerr = ks.keep(key, text, known + 1, fence)
      if ok then
        err.message = err.message .. " (kept pending on this node)"
      elseif kerr then
        err.message = err.message .. " (and not kept on this node: " .. kerr.message .. ")"
      end
      return nil, err
    end
    local r, err = run("save", key, { fence, tokens.refresh_token, text, MAX_RECORD, known, n = 5 }, true)
    if err then return keep(hide(err, tokens, previous)) end
    if type(r) ~= "table" or (r[1] ~= 1 and r[1] ~= 0 and r[1] ~= 2) then
      return keep(unavailable("the save script answered garbage"))
    end
    if r[1] == 2 then return oversized() end
    if r[1] == 0 then
      return nil, errors.new{ code = "conflict", version = r[2], message = where .. " holds newer tokens (version "
        .. tostring(r[2]) .. ") than the ones this pair was refreshed from: it was not written" }
    end
    hold(text, whole(r[2]) or known + 1, tokens.refresh_token)
    ks.settled(key, tokens.refresh_token, fence)
    -- Written where nothing was, over a pair we refreshed from: deleted elsewhere, or a Redis that lost its data.
    if r[3] == 1 and fence ~= "" then ks.check(true) end
    return true
  end

  -- -> handle with :unlock(), :extend(seconds) and :contested() | nil, err (lock_timeout,
  -- store_unavailable, ...)
  function store.lock()
    local owner = core.codec.hex(core.crypto.random_bytes(16))
    local now = core.clock.now
    local deadline, delay = now() + o.lock_timeout, 0.002
    local found
    while true do
      local got, err = run("lock", lock_key, { owner, ttl_ms, LINGER_MS, n = 3 })
      if err then return nil, err end
      if type(got) == "table" and got[1] == 1 then found = got[2] break end
      local left = deadline - now()
      if left <= 0 then
        return nil, errors.new{ code = "lock_timeout", message = "the token lock " .. lock_key .. " stayed taken for "
          .. o.lock_timeout .. " s" }
      end
      sleep(math.min(left, delay * (0.5 + math.random())))
      delay = math.min(delay * 2, 0.1)
    end
    local released = false
    local function ours(name, arg)
      local r, err = script(name, lock_key, { owner, arg or "", LINGER_MS, n = 3 })
      if err then return nil, err end
      if r ~= 1 then
        return nil, errors.new{ code = "lock_lost", message = "the token lock expired and may be someone else's now" }
      end
      return true
    end
    return {
      -- unlock(true): this holder got a pair it could not store (it waits in this process and on this
      -- node): the next holder is told (contested).
      unlock = function(_, pending_pair)
        if released then return true end
        local ok, err = ours("unlock", pending_pair == true and "pending" or nil)
        if ok or err.code == "lock_lost" then released = true end
        return ok, err
      end,
      extend = function(_, seconds)
        if type(seconds) ~= "number" or seconds <= 0 then
          error("freshbooks.store.redis: extend needs seconds > 0", 2)
        end
        if released then return nil, errors.new{ code = "lock_lost", message = "the token lock was released" } end
        ks.span = math.max(ks.span or 0, seconds)
        return ours("extend", math.max(1, math.floor(seconds * 1000 + 0.5)))
      end,
      -- Seconds during which a pair from a holder that lost this lock may still reach Redis: the last
      -- holder never released it (its pair may wait on its node), or Redis was found wiped lately (a
      -- holder's token call may still be on the wire; checked now: this process may not have looked
      -- since). 0 when neither.
      contested = function()
        ks.check(true)
        local s = found == "expired" and SETTLE or 0
        if ks.wiped_at then
          local span = math.max(ks.span or 0, o.lock_ttl)
          s = math.max(s, span + SETTLE - (core.clock.now() - ks.wiped_at))
        end
        return math.max(0, s)
      end,
    }
  end

  -- Forget the tokens (a disconnected connection). -> true | nil, err
  function store.delete()
    -- first: a pair of it kept on this node would be written back (also by the flush after the DEL)
    ks.settled(key, nil, "")
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
    return keys.state .. core.codec.hex(core.crypto.hmac_sha256(state, "freshbooks oauth state"))
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
  local o = common(opts, STORE, level + 1)
  check_key(opts.key, "key", level + 1)
  local lock_key = opts.lock_key or (opts.key .. ":lock")
  local state_prefix = opts.state_prefix or (opts.key .. ":state:")
  check_key(lock_key, "lock_key", level + 1)
  check_key(state_prefix, "state_prefix", level + 1)
  if lock_key == opts.key then error("freshbooks.store.redis: lock_key must differ from key", level) end
  local script = runner(connector(o), o)
  local ks = pendings(o, script, opts.key, wipes(o, script, opts.key .. ":generation"))
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
  local o = common(opts, KEYSPACE, 3)
  local prefix = o.prefix or "freshbooks:"
  if prefix ~= "" then check_key(prefix, "prefix", 3) end
  local legacy = o.legacy
  local script = runner(connector(o), o)
  local ks = pendings(o, script, prefix .. "{}", wipes(o, script, prefix .. "{}:generation"))
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
  -- Writes back every pair this node keeps pending for this keyspace (option `pending`) -> how many
  -- went back | nil, err (Redis still away). For a timer (an idle node writes them back too) and at
  -- start-up (a process that died left them).
  function stores.flush()
    local err = ks.check(false) -- an idle node writes back what it holds after a wipe too
    if err then return nil, err end
    return ks.flush(true)
  end
  return setmetatable(stores, {
    __call = function(_, id)
      check_key(id, "connection id", 3)
      return build(o, keys(id), script, ks)
    end,
    __tostring = function() return "freshbooks.store.redis.keyspace(" .. prefix .. ")" end,
  })
end

redis_store.SCRIPTS = SCRIPTS -- for the deployment docs and specs that inspect what runs in Redis

return setmetatable(redis_store, { __call = function(_, opts) return new(opts, 2) end }) -- (a tail call)
