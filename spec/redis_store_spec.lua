-- freshbooks.store.redis against Debian's redis-server (started here on a free port, stopped here) and
-- the sandbox: the load/save/lock contract, the fenced save, hostile keys and clients, a fault at every
-- Redis command of a refresh, and the scale-out cases: a holder killed with the lock, a lock that
-- expires while FreshBooks is slow, Redis restarting mid-run. Each of the last three prints its figures.
local cjson = require "cjson"
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local R = require "support.redis"
local H = require "support.fbtest"
local W = require "support.redis_worker"

local ME = "/auth/api/v1/users/me"

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Does the sandbox still take this refresh token? (It rotates it when it does.)
local function accepted(sb, refresh_token)
  local res = sb:http{ method = "POST", path = "/auth/oauth/token", json = { grant_type = "refresh_token",
    client_id = sb.app.client_id, client_secret = sb.app.client_secret, redirect_uri = sb.app.redirect_uri,
    refresh_token = refresh_token } }
  return res.status == 200, res.status
end

describe("store.redis", function()
  local sb, srv, dir
  local n = 0
  local function key() n = n + 1; return "fb:spec:" .. n end
  setup(function()
    sb = sandbox.start{ invoices = 5 }
    srv = R.start{ aof = true }
    dir = H.tmpdir()
  end)
  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  local function store(extra)
    local o = { redis = R.factory(srv, 1), key = key() }
    for k, v in pairs(extra or {}) do o[k] = v end
    return freshbooks.store.redis(o), o.key
  end

  local pair = { access_token = "a1", refresh_token = "r1", token_type = "Bearer", expires_in = 43200,
    scope = "user:profile:read", created_at = 1700000000, expires_at = 1700043200, extra = "not kept" }

  describe("contract", function()
    it("loads nothing before the first save, then the token fields with a version and saved_at", function()
      local s, k = store()
      local t, err = s.load()
      assert.is_nil(t)
      assert.is_nil(err)
      assert.is_true(s.save(pair, nil))
      t = assert(s.load())
      -- a new authorization's version: Redis's clock in ms (later grants outrank earlier ones)
      assert.is_true(math.abs(t.version - os.time() * 1000) < 5000, t.version)
      assert.is_true(math.abs(t.saved_at - os.time()) < 5)
      t.version, t.saved_at = nil, nil
      assert.same({ access_token = "a1", refresh_token = "r1", token_type = "Bearer", expires_in = 43200,
        scope = "user:profile:read", created_at = 1700000000, expires_at = 1700043200 }, t)
      assert.is_nil(srv:cli("GET", k):find("not kept", 1, true))
    end)

    it("fences the save: written only while the stored refresh token is the previous one", function()
      local s, k = store()
      assert.is_true(s.save(pair, nil))
      local v1 = s.load().version
      assert.is_true(s.save({ access_token = "a2", refresh_token = "r2" }, pair))
      -- A late pair refreshed from r1: refused, r2 stays.
      local ok, err = s.save({ access_token = "a3", refresh_token = "r3" }, pair)
      assert.is_nil(ok)
      assert.equal("conflict", err.code)
      assert.equal(v1 + 1, err.version)
      assert.equal("r2", s.load().refresh_token)
      -- The same save again (its first answer lost) is harmless; a new authorization always wins.
      assert.is_true(s.save({ access_token = "a2", refresh_token = "r2" }, pair))
      assert.equal(v1 + 1, s.load().version)
      assert.is_true(s.save({ access_token = "a9", refresh_token = "r9" }, nil))
      assert.is_true(s.load().version > v1 + 1)
      assert.equal("r9", cjson.decode(srv:cli("GET", k)).refresh_token)
    end)

    it("writes over what is not a token record, and loads it as store_corrupt", function()
      for _, junk in ipairs{ "garbage", "{}", '{"refresh_token": 42}', string.rep("x", 70000) } do
        local s, k = store()
        srv:cli("SET", k, junk)
        local t, err = s.load()
        assert.is_nil(t)
        assert.equal("store_corrupt", err.code)
        assert.is_true(s.save({ access_token = "a", refresh_token = "r" }, pair))
        assert.equal("r", s.load().refresh_token)
      end
    end)

    it("what save accepts, load gives back: a record near the size limit is refused whole or kept whole", function()
      -- Redis adds version and saved_at to the record: a pair that fits alone may not fit with them.
      local base = #require("freshbooks.store.record").encode{ access_token = "a", refresh_token = "" }
      for _, margin in ipairs{ 0, 1, 10, 30, 40, 60, 100 } do
        local s = store()
        local big = { access_token = "a", refresh_token = string.rep("r", 65536 - base - margin) }
        local ok, err = s.save(big, nil)
        if ok then
          local t, lerr = s.load()
          assert.is_not_nil(t, "margin " .. margin .. ": saved, then load said " .. tostring(lerr and lerr.code))
          assert.equal(big.refresh_token, t.refresh_token)
        else
          assert.equal("save_failed", err.code)
        end
      end
    end)

    it("never touches a key holding another kind of value (store_corrupt)", function()
      local s, k = store()
      srv:cli("HSET", k, "field", "value")
      assert.equal("store_corrupt", select(2, s.load()).code)
      assert.equal("store_corrupt", select(2, s.save(pair, nil)).code)
      assert.equal("value", srv:cli("HGET", k, "field"))
      srv:cli("HSET", k .. ":lock", "field", "value")
      assert.equal("store_corrupt", select(2, s.lock()).code)
    end)

    it("locks with an owner: a waiter times out, an expired holder cannot release its successor's lock", function()
      local s, k = store{ lock_ttl = 0.3, lock_timeout = 0.2 }
      local first = assert(s.lock())
      local t0 = core.clock.now()
      local none, err = s.lock()
      assert.is_nil(none)
      assert.equal("lock_timeout", err.code)
      assert.is_true(core.clock.now() - t0 < 0.2 + 2)
      -- first's TTL passes; a successor takes the lock; first's unlock must leave it alone. (The successor
      -- holds it for 10 s: the checks below outlast 0.3 s on a loaded machine.)
      core.clock.sleep(0.35)
      local second = assert(freshbooks.store.redis{ redis = R.factory(srv, 1), key = k, lock_ttl = 10 }.lock())
      local ok, lerr = first:unlock()
      assert.is_nil(ok)
      assert.equal("lock_lost", lerr.code)
      assert.is_nil(first:extend(10))
      assert.equal("1", srv:cli("EXISTS", k .. ":lock"))
      assert.is_true(second:extend(5))
      assert.is_true(tonumber(srv:cli("PTTL", k .. ":lock")) > 1000)
      assert.is_true(second:unlock())
      assert.is_true(second:unlock()) -- idempotent
      assert.equal("0", srv:cli("EXISTS", k .. ":lock"))
    end)

    it("keeps OAuth states hashed, short-lived and single use", function()
      local s, k = store()
      local state = core.codec.hex(core.crypto.random_bytes(16))
      assert.is_true(s.put_state(state, 60))
      local keys = srv:cli("KEYS", k .. ":state:*")
      assert.equal(1, select(2, keys:gsub("\n", "")) + 1)
      assert.is_nil(keys:find(state, 1, true))
      local ttl = tonumber(srv:cli("TTL", keys))
      assert.is_true(ttl > 0 and ttl <= 60)
      assert.is_true(s.take_state(state))
      assert.is_false(s.take_state(state))
      assert.is_false(s.take_state("never-issued"))
    end)

    it("lists a keyspace's connections, whatever characters the prefix holds", function()
      local stores = freshbooks.store.redis.keyspace{ redis = R.factory(srv), prefix = "odd*[pre]?:" }
      for _, id in ipairs{ "b", "a:1", "c d" } do assert.is_true(stores(id).save(pair, nil)) end
      srv:cli("SET", "oddX[pre]?:{intruder}:tokens", "{}") -- the glob characters are matched literally
      assert.same({ "a:1", "b", "c d" }, stores.list())
      assert.is_true(stores("b").delete())
      assert.same({ "a:1", "c d" }, stores.list())
    end)

    it("raises on bad arguments", function()
      local f = R.factory(srv)
      for _, bad in ipairs{
        {}, { redis = f }, { redis = 42, key = "k" }, { redis = f, key = "" }, { redis = f, key = "a\nb" },
        { redis = f, key = "k", lock_ttl = 0 }, { redis = f, key = "k", lock_timeout = -1 },
        { redis = f, key = "k", lock_key = "k" }, { redis = f, key = "k", typo = 1 },
        { redis = f, key = "k", release = 1 },
      } do
        assert.has_error(function() freshbooks.store.redis(bad) end)
      end
      assert.has_error(function() freshbooks.store.redis.keyspace{ redis = f }("") end)
      assert.has_error(function() store().save("not a table") end)
      assert.has_error(function() store().put_state("s", 0) end)
    end)
  end)

  describe("hostile clients and a hostile Redis", function()
    local function clients(c)
      return freshbooks.store.redis{ redis = c, key = key(), lock_timeout = 0.2 }
    end

    it("a factory that raises, says no, or returns garbage: store_unavailable, never a raise", function()
      for _, f in ipairs{
        function() error("no Redis for you") end, function() return nil, "refused" end, function() return 42 end,
        function() return {} end, function() return setmetatable({}, { __index = function() error("boom") end }) end,
      } do
        local s = clients(f)
        for _, op in ipairs{ function() return s.load() end, function() return s.save(pair, nil) end,
          function() return s.lock() end, function() return s.take_state("x") end } do
          local ok, v, err = pcall(op)
          assert.is_true(ok, tostring(v))
          assert.is_nil(v)
          assert.equal("store_unavailable", err.code)
        end
      end
    end)

    it("a connection found closed (a restarted Redis) is replaced once, silently", function()
      local s = store()
      assert.is_true(s.save(pair, nil)) -- the idle connection now open
      srv:restart()
      assert.equal("r1", assert(s.load()).refresh_token) -- AOF brought it back; the dead connection retried
      srv:cli("SCRIPT", "FLUSH") -- a fresh script cache: EVALSHA says NOSCRIPT, EVAL loads it again
      assert.equal("r1", assert(s.load()).refresh_token)
    end)

    it("a Redis that accepts and never answers costs the client's timeout, not a hang", function()
      local s = freshbooks.store.redis{ redis = R.factory(srv, 0.3), key = key(), lock_timeout = 10 }
      assert.is_true(s.save(pair, nil))
      srv:pause()
      local t0 = core.clock.now()
      local results = { { s.load() }, { s.lock() }, { s.save(pair, nil) } }
      local took = core.clock.now() - t0
      srv:resume()
      for _, r in ipairs(results) do assert.equal("store_unavailable", r[2].code) end
      assert.is_true(took < 3 * (0.3 + 0.1) + 2, "took " .. took .. " s")
    end)

    it("a Redis error cut through a token shows no head of it", function()
      -- A Redis (or a proxy) without scripting echoes the command's arguments; the store keeps 200 bytes.
      local secret = "zzSECRETzzTOKENzzvaluezz"
      for pad = 118, 146, 2 do -- the token across the 200th byte
        local s = freshbooks.store.redis{ key = key(), redis = function()
          return { script = function() return "x" end, evalsha = function(_, _, _, _, _, new)
            error("redis error: ERR unknown command 'evalsha', with args beginning with: " .. string.rep("x", pad)
              .. "'" .. new .. "'") end, network = {} }
        end }
        local _, err = s.save({ access_token = "access-token-value", refresh_token = secret }, nil)
        assert.equal("store_unavailable", err.code)
        assert.is_nil(tostring(err):find(secret:sub(1, 6), 1, true), tostring(err))
      end
    end)

    it("Redis errors and connection errors never carry a token into the message", function()
      local secret = "short-secret-token" -- nothing redact.scrub would mask by its look
      local s = freshbooks.store.redis{ redis = function()
        return { script = function() return "x" end, evalsha = function(_, _, _, _, ...)
          error("redis error: ERR echoing " .. table.concat({ ... }, " ")) end, network = {} }
      end, key = key() }
      local _, err = s.save({ access_token = "a", refresh_token = secret }, nil)
      assert.equal("store_unavailable", err.code)
      assert.is_false(H.leaks(tostring(err), { secret }))
    end)
  end)

  -- A fault at every Redis command of one refresh (a stored pair whose access token expired, then a
  -- call): the wipe check's generation, load, lock, reload, extend (the lock over the token call),
  -- save, unlock, each failing the way each client fails. After each, the newest refresh token
  -- FreshBooks issued is in Redis or on the error, and FreshBooks still takes it.
  describe("a fault at every Redis command of a refresh", function()
    local COMMANDS = { "generation", "load", "lock", "reload", "extend", "save", "unlock" }
    local KINDS = { "raise", "closed", "timeout", "error_reply", "garbage", "redis_dies" }
    local matrix = {}
    teardown(function()
      local lines = { "\n    redis store faults (outcome of the call; the newest refresh token was kept in every cell):"
      }
      lines[#lines + 1] = ("    %-12s" .. string.rep("%-21s", #KINDS)):format("", (table.unpack or unpack)(KINDS))
      for _, c in ipairs(COMMANDS) do
        local row = { ("    %-12s"):format(c) }
        for _, kind in ipairs(KINDS) do row[#row + 1] = ("%-21s"):format(matrix[c .. "/" .. kind] or "-") end
        lines[#lines + 1] = table.concat(row)
      end
      io.stderr:write(table.concat(lines, "\n"), "\n")
    end)

    -- A lua-redis client whose at-th EVALSHA fails as `kind` says (the way lua-redis raises, or the way
    -- resty.redis returns nil/false, err), or runs and then loses Redis before the answer.
    local function faulty(plan)
      local real_factory = R.factory(srv, 1)
      return function()
        local real = real_factory()
        local proxy = { network = real.network }
        function proxy.script(_, ...) return real:script(...) end
        function proxy.eval(_, ...) return real:eval(...) end
        function proxy.evalsha(_, ...)
          plan.calls = plan.calls + 1
          if plan.calls ~= plan.at then return real:evalsha(...) end
          local kind = plan.kind
          if kind == "raise" then error("connection error: closed") end
          if kind == "closed" then return nil, "closed" end
          if kind == "timeout" then return nil, "timeout" end
          if kind == "error_reply" then return false, "OOM command not allowed when used memory > 'maxmemory'" end
          if kind == "garbage" then return { "garbage" } end
          real:evalsha(...) -- it ran; the answer never comes back
          srv:restart()
          error("connection error: closed")
        end
        return proxy
      end
    end

    for at, command in ipairs(COMMANDS) do
      for _, kind in ipairs(KINDS) do
        it(command .. ": " .. kind, function()
          local plan = { calls = 0, at = at, kind = kind }
          local k = key()
          local s = freshbooks.store.redis{ redis = faulty(plan), key = k, lock_ttl = 5, lock_timeout = 1 }
          local minted = sb:token{}
          minted.expires_at = os.time() - 60
          assert(freshbooks.store.redis{ redis = R.factory(srv), key = k }.save(minted, nil))
          plan.calls = 0
          local since = H.last_seq(sb)
          local fb = H.session(sb, { store = s, retry = false })
          local res, err = fb:request{ path = ME }
          local newest = H.newest_issued(sb, since) or H.hash(minted.refresh_token)
          local stored = freshbooks.store.redis{ redis = R.factory(srv), key = k }.load()
          local in_store = stored and H.hash(stored.refresh_token) == newest
          local in_error = err and err.tokens and H.hash(err.tokens.refresh_token) == newest
          assert.is_true(in_store or in_error or false, command .. "/" .. kind
            .. ": the newest refresh token was lost (" .. tostring(err and err.code) .. ")")
          assert.is_true(accepted(sb, in_store and stored.refresh_token or err.tokens.refresh_token))
          local pttl = tonumber(srv:cli("PTTL", k .. ":lock"))
          assert.is_true(pttl == -2 or pttl > 0, "a lock left behind without a TTL") -- -2: no lock
          matrix[command .. "/" .. kind] = (res and "ok" or tostring(err.code)) .. (in_store and "" or " (in err)")
        end)
      end
    end
  end)

  -- Two processes share a connection; the token server's clock steps back an hour (NTP, or another
  -- instance behind its load balancer) between their refreshes: the pair the other process stores
  -- expires earlier than the spent one this process holds. The refresh with the spent token answers
  -- invalid_grant, and the store holds another pair: it must be adopted (docs/session.md), not turned
  -- into reauth_required.
  describe("a newer stored pair that expires earlier", function()
    after_each(function() sb:admin("POST", "/_sandbox/clock", { offset = 0 }) end)

    it("is adopted after invalid_grant instead of answering reauth_required", function()
      local k = key()
      assert(freshbooks.store.redis{ redis = R.factory(srv), key = k }.save(sb:token{}, nil))
      local here = H.session(sb, { store = freshbooks.store.redis{ redis = R.factory(srv), key = k }, retry = false })
      assert.is_true(here:authorized()) -- loaded: this process holds the stored pair
      sb:admin("POST", "/_sandbox/clock", { offset = -3600 })
      local there = H.session(sb, { store = freshbooks.store.redis{ redis = R.factory(srv), key = k }, retry = false })
      assert.is_true(there:refresh())
      sb:admin("POST", "/_sandbox/clock", { offset = 0 })
      local stored = freshbooks.store.redis{ redis = R.factory(srv), key = k }.load()
      assert.is_true(stored.expires_at < here:tokens().expires_at) -- the case at hand
      local ok, err = here:refresh()
      assert.is_true(ok, tostring(err and err.code))
      assert.equal(H.hash(stored.refresh_token), H.hash(here:tokens().refresh_token))
      assert.is_truthy(here:request{ path = ME })
    end)
  end)

  describe("scale-out", function()
    local ws, wait_for = nil, W.wait_for
    setup(function() ws = W.workers(sb, srv, dir) end)
    local function worker(c, out) return ws.start(c, out) end
    local function config(k, extra) return ws.config(k, extra) end
    local function result(out) return ws.result(out) end
    local function lock_left(k) return W.lock_left(srv, k .. ":lock") end

    -- The holder's lock covers its token call (session timeout 1 s: the deadline moves 3 s on).
    it("a holder killed with the lock: the others proceed once its deadline passes, nothing stored is lost", function()
      local ttl = 2
      local k = key()
      local minted = sb:token{}
      local s = freshbooks.store.redis{ redis = R.factory(srv), key = k, lock_ttl = ttl, lock_timeout = 10 }
      assert(s.save(minted, nil))
      local c = config(k, { mode = "hold", lock_ttl = ttl, timeout = 1 })
      write(c.go, "")
      local pid = worker(c, dir .. "/holder")
      wait_for("the holder to hold the lock", function() return H.read(c.go .. ".holding") end, 10)
      -- The lock's deadline is `left` seconds after Redis answered, so no earlier than that after `asked`:
      -- the waits below count from here (the kill and the redis-cli run take their time on a loaded machine).
      local asked = core.clock.now()
      local left = lock_left(k)
      assert.is_true(left > ttl, "the lock was not extended over the token call")
      os.execute("kill -KILL " .. pid)
      ws.forget(pid)
      -- Another process and this one force refreshes of the connection.
      local other = config(k, { mode = "lock", n = 3, lock_ttl = ttl, lock_timeout = 10 })
      other.go = c.go
      worker(other, dir .. "/other")
      local since = H.last_seq(sb)
      local fb = H.session(sb, { store = s, retry = false })
      assert.is_true(fb:refresh())
      local waited = core.clock.now() - asked
      local r = result(dir .. "/other")
      assert.is_true(r.ok, r.failure)
      assert.same({}, r.errors)
      assert.is_true(r.me_ok)
      -- Nobody got in before the dead holder's TTL ran out, and nobody waited much past it.
      assert.is_true(waited >= left - 0.05, ("proceeded after %.2f s with %.2f s of TTL left"):format(waited, left))
      assert.is_true(waited <= left + 2, ("waited %.2f s for %.2f s of TTL"):format(waited, left))
      -- The first token call after the kill presented the stored token, and the stored pair is the newest.
      local first
      for _, e in ipairs(H.log(sb, since)) do if H.is_token_post(e) then first = first or e end end
      assert.equal(H.hash(minted.refresh_token), first.refresh_token)
      local stored = s.load()
      assert.equal(H.newest_issued(sb, since), H.hash(stored.refresh_token))
      assert.is_true(accepted(sb, stored.refresh_token))
      io.stderr:write(("\n    holder killed (SIGKILL) with %.2f s left of its lock (TTL %d s, extended over its token"
        .. " call): the others refreshed %.2f s later; 0 errors, the stored pair is the newest and accepted\n")
        :format(left, ttl, waited))
    end)

    -- A holder whose lock cannot be extended (TTL 1 s) refreshes; FreshBooks rotates at once but answers
    -- 2.5 s later. Meanwhile the lock expires, the user authorizes again and the connection refreshes:
    -- newer tokens. The late pair must not overwrite them.
    local function slow_holder(mode)
      local k = key()
      local minted = sb:token{}
      local s = freshbooks.store.redis{ redis = R.factory(srv), key = k }
      assert(s.save(minted, nil))
      sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = "delay_after", ms = 2500, times = 1 })
      local since = H.last_seq(sb)
      local c = config(k, { mode = mode, lock_ttl = 1, lock_timeout = 5 })
      write(c.go, "")
      local out = dir .. "/slow-" .. mode
      worker(c, out)
      local late = wait_for("the holder's token call to rotate", function()
        for _, e in ipairs(H.log(sb, since)) do
          if H.is_token_post(e) and e.issued_refresh_token then return e.issued_refresh_token end
        end
      end, 10)
      wait_for("the holder's lock to expire", function() return lock_left(k) <= 0 end, 5)
      local fb = H.session(sb, { store = s, retry = false })
      assert(H.authorize(sb, fb, { "user:profile:read" }))
      assert.is_true(fb:refresh())
      local newer = s.load()
      local r = result(out)
      sb:admin("DELETE", "/_sandbox/faults")
      assert.is_true(r.ok, r.failure)
      return { r = r, late = late, newer = newer, stored = s.load(), since = since }
    end

    it("a lock without extend expires under a slow FreshBooks: the late pair is refused, reported, never dropped",
      function()
      local t = slow_holder("noextend")
      -- The newer tokens stay, untouched, and they are what FreshBooks takes.
      assert.equal(t.newer.version, t.stored.version)
      assert.equal(H.hash(t.newer.refresh_token), H.hash(t.stored.refresh_token))
      assert.equal(H.newest_issued(sb, t.since), H.hash(t.stored.refresh_token))
      -- The holder got conflict with its late pair attached, and went on with the stored tokens.
      assert.same({ conflict = 1 }, t.r.errors)
      assert.equal(1, #t.r.carried)
      assert.equal("conflict", t.r.carried[1].code)
      assert.equal(t.late, t.r.carried[1].hash)
      assert.equal(H.hash(t.stored.refresh_token), t.r.final)
      assert.is_true(t.r.me_ok)
      assert.is_true(accepted(sb, t.stored.refresh_token))
      io.stderr:write(("    lock TTL 1 s, FreshBooks answered after 2.5 s: 1 stale write refused (conflict), stored "
        .. "version %d kept and accepted, the late pair returned on the error; the holder adopted the stored pair\n")
        :format(t.stored.version))
    end)

    it("the same without the fence loses the connection (so the spec above can fail)", function()
      local t = slow_holder("unfenced")
      assert.equal(t.late, H.hash(t.stored.refresh_token)) -- the late pair overwrote the newer one
      local ok, status = accepted(sb, t.stored.refresh_token)
      assert.is_false(ok)
      io.stderr:write(("    without the fence: the late pair overwrote version %d; FreshBooks refuses it (HTTP %d)\n")
        :format(t.newer.version, status))
    end)

    -- FreshBooks answering late never turns a live connection into reauth_required (issue #24).
    local function token_posts(since)
      local out = {}
      for _, e in ipairs(H.log(sb, since)) do if H.is_token_post(e) then out[#out + 1] = e end end
      return out
    end
    local function slow_token_call(ms)
      sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = "delay_after", ms = ms, times = 1 })
    end
    local function rotated(since) -- FreshBooks has rotated (its log entry is made before the delay)
      return wait_for("the holder's token call to rotate", function()
        for _, e in ipairs(token_posts(since)) do if e.issued_refresh_token then return e end end
      end, 10)
    end

    it("FreshBooks answering after the lock TTL: the lock covers the call, the next caller waits and adopts", function()
      local k = key()
      local s = freshbooks.store.redis{ redis = R.factory(srv), key = k, lock_ttl = 1, lock_timeout = 10 }
      assert(s.save(sb:token{}, nil))
      slow_token_call(2500)
      local since = H.last_seq(sb)
      local c = config(k, { mode = "lock", lock_ttl = 1, lock_timeout = 10, timeout = 60 }) -- the default timeout
      write(c.go, "")
      local out = dir .. "/late-covered"
      worker(c, out)
      rotated(since)
      local left = lock_left(k)
      -- The 1 s TTL moved over the library's default 60 s request timeout before the call left.
      assert.is_true(left > 60, ("the lock has %.2f s left while FreshBooks answers"):format(left))
      local fb = H.session(sb, { store = s, retry = false })
      local ok, err = fb:refresh()
      local r = result(out)
      sb:admin("DELETE", "/_sandbox/faults")
      assert.is_true(ok, tostring(err))
      assert.same({}, r.errors)
      -- One token call in all: the second caller adopted the holder's pair, it spent no refresh token.
      local posts = token_posts(since)
      assert.equal(1, #posts)
      assert.equal(200, posts[1].status)
      assert.equal(posts[1].issued_refresh_token, H.hash(s.load().refresh_token))
      io.stderr:write(("    lock TTL 1 s, FreshBooks answered after 2.5 s: the lock covered the call (%.1f s left),"
        .. " the next caller waited and adopted; 1 token call, 0 reauth_required\n"):format(left))
    end)

    it("a lock that lapsed unreleased: a refused refresh token waits for the late pair, not reauth_required", function()
      local k = key()
      local s = freshbooks.store.redis{ redis = R.factory(srv), key = k, lock_ttl = 1, lock_timeout = 10 }
      assert(s.save(sb:token{}, nil))
      slow_token_call(2000)
      local since = H.last_seq(sb)
      -- The holder's lock cannot be extended: it lapses at 0.5 s while FreshBooks answers at 2 s.
      local c = config(k, { mode = "noextend", lock_ttl = 0.5, lock_timeout = 10 })
      write(c.go, "")
      local out = dir .. "/late-lapsed"
      worker(c, out)
      rotated(since)
      wait_for("the holder's lock to lapse", function() return lock_left(k) <= 0 end, 5)
      local events = {}
      local function log(e) events[#events + 1] = e.outcome end
      local fb = H.session(sb, { store = s, retry = false, log = log })
      local t0 = core.clock.now()
      local ok, err = fb:refresh()
      local waited = core.clock.now() - t0
      local r = result(out)
      sb:admin("DELETE", "/_sandbox/faults")
      assert.is_true(ok, tostring(err))
      assert.same({}, r.errors) -- the holder's late pair was saved: nobody had stored a newer one
      local posts = token_posts(since)
      assert.equal(2, #posts)
      assert.equal(400, posts[2].status) -- the old token, spent by the holder: invalid_grant ...
      assert.is_truthy(table.concat(events, " "):find("awaiting", 1, true)) -- ... then the wait
      assert.equal(posts[1].issued_refresh_token, H.hash(s.load().refresh_token))
      assert.equal(H.hash(s.load().refresh_token), H.hash(fb:tokens().refresh_token))
      io.stderr:write(("    a lock that lapsed unreleased: invalid_grant, then the holder's late pair adopted after"
        .. " %.2f s; 0 reauth_required\n"):format(waited))
    end)

    it("Redis stopped past the holder's deadline while FreshBooks answers: the next holder waits for its pair",
      function()
      local k = key()
      local s = freshbooks.store.redis{ redis = R.factory(srv), key = k, lock_ttl = 1, lock_timeout = 10 }
      assert(s.save(sb:token{}, nil))
      slow_token_call(1000)
      local since = H.last_seq(sb)
      local c = config(k, { mode = "lock", lock_ttl = 1, lock_timeout = 10, timeout = 2, after = dir .. "/after-" .. k,
        after_delay = 1 })
      write(c.go, "")
      local out = dir .. "/late-stopped"
      worker(c, out)
      rotated(since)
      srv:pause() -- the holder's save and unlock fail; its lock (4 s: timeout + 2) lapses meanwhile
      core.clock.sleep(4.5)
      srv:resume()
      write(c.after, "") -- a second later the holder calls again, and offers its pending pair first
      local fb = H.session(sb, { store = s, retry = false })
      local ok, err = fb:refresh()
      local r = result(out)
      sb:admin("DELETE", "/_sandbox/faults")
      assert.is_true(ok, tostring(err))
      assert.equal("ok", r.after)
      local posts = token_posts(since)
      assert.equal(400, posts[2].status) -- the next holder met the spent token ...
      assert.equal(posts[1].issued_refresh_token, H.hash(fb:tokens().refresh_token)) -- ... and adopted the late pair
      assert.is_true(accepted(sb, s.load().refresh_token))
    end)

    it("codes: a revoked grant is reauth_required at once, a lock held elsewhere lock_failed (lock_timeout)", function()
      local k = key()
      local s = freshbooks.store.redis{ redis = R.factory(srv), key = k, lock_timeout = 0.3 }
      local minted = sb:token{}
      assert(s.save(minted, nil))
      local held = assert(freshbooks.store.redis{ redis = R.factory(srv), key = k }.lock())
      local fb = H.session(sb, { store = s, retry = false })
      local ok, err = fb:refresh()
      assert.is_nil(ok)
      assert.equal("lock_failed", err.code)
      assert.equal("lock_timeout", err.cause.code)
      assert.is_true(held:unlock())
      sb:http{ method = "POST", path = "/auth/oauth/revoke", json = { client_id = sb.app.client_id,
        client_secret = sb.app.client_secret, token = minted.refresh_token } }
      local t0 = core.clock.now()
      ok, err = fb:refresh()
      assert.is_nil(ok)
      assert.equal("reauth_required", err.code)
      assert.is_true(core.clock.now() - t0 < 1, "a lock released cleanly is not contested: no wait")
    end)

    it("Redis restarting mid-run: coded errors while it is away, no hang, every connection refreshes after", function()
      local timeout = 0.5
      -- A lock request sent to the hung Redis may still run once it wakes up: its TTL frees it.
      local stores = freshbooks.store.redis.keyspace{ redis = R.factory(srv, timeout), prefix = "fb:restart:",
        lock_ttl = 1, lock_timeout = 3 }
      local conns = freshbooks.connections{ app = H.opts(sb, { retry = false }), store = stores }
      local users = { "alice", "bob", "carol" }
      local first = {}
      for _, u in ipairs(users) do
        assert(stores(u).save(sb:token{ user = u }, nil))
        first[u] = stores(u).load().version
      end
      for _, u in ipairs(users) do assert.is_true(conns:session(u):refresh()) end
      local function round(label)
        local codes, slowest = {}, 0
        for _, u in ipairs(users) do
          local t0 = core.clock.now()
          local ok, err = conns:session(u):refresh()
          slowest = math.max(slowest, core.clock.now() - t0)
          assert.is_nil(ok, label)
          local code = err.code == "lock_failed" and err.cause and err.cause.code or err.code
          codes[code] = (codes[code] or 0) + 1
          local st, serr = freshbooks.connections{ app = H.opts(sb), store = stores }:status(u)
          assert.is_nil(st)
          assert.equal("store_unavailable", serr.code)
        end
        assert.same({ store_unavailable = #users }, codes)
        return slowest
      end
      srv:kill()
      local down = round("down")
      srv:restart()
      srv:pause()
      local hung = round("hung")
      srv:resume()
      assert.is_true(down < timeout + 2, "a refresh took " .. down .. " s while Redis was down")
      assert.is_true(hung < 2 * timeout + 2, "a refresh took " .. hung .. " s while Redis hung")
      srv:restart()
      local since = H.last_seq(sb)
      for _, u in ipairs(users) do assert.is_true(conns:session(u):refresh()) end
      assert.equal(#users, H.count(H.log(sb, since), function(e) return H.is_token_post(e) and e.status == 200 end))
      local versions = {}
      for _, u in ipairs(users) do
        local stored = stores(u).load()
        versions[#versions + 1] = stored.version - first[u]
        assert.equal(first[u] + 2, stored.version) -- one refresh before, one after the first save: AOF kept them
        assert.is_true(accepted(sb, stored.refresh_token))
      end
      io.stderr:write(("    Redis killed: %d refreshes -> store_unavailable, slowest %.3f s; Redis hung (SIGSTOP,"
        .. " client "
        .. "timeout %.1f s): slowest %.2f s; after the restart %d/%d connections refreshed, versions +%s kept (AOF)\n")
        :format(#users, down, timeout, hung, #users, #users, table.concat(versions, ",")))
    end)
  end)
end)
