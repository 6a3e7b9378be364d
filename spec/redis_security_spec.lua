-- freshbooks.store.redis attacked from outside, with plain Lua clients (lua-redis; LuaSec for TLS) against
-- real redis-server processes started here: TLS with certificate and host-name checks and an ACL user,
-- a Redis trickling its answers, keyspaces whose prefixes nest, a lying SCRIPT LOAD, a Redis that
-- restarts empty, and keys of the layout before this one. (The same through resty.redis inside nginx:
-- spec/redis_openresty_spec.lua; Sentinel: spec/redis_sentinel_spec.lua.)
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local R = require "support.redis"
local H = require "support.fbtest"
local cjson = require "cjson"

local pair = { access_token = "a1", refresh_token = "r1", token_type = "Bearer", expires_in = 43200 }

local function accepted(sb, refresh_token)
  local res = sb:http{ method = "POST", path = "/auth/oauth/token", json = { grant_type = "refresh_token",
    client_id = sb.app.client_id, client_secret = sb.app.client_secret, redirect_uri = sb.app.redirect_uri,
    refresh_token = refresh_token } }
  return res.status == 200
end

describe("store.redis over TLS with an ACL user (lua-redis + LuaSec)", function()
  local srv
  local PASSWORD = "acl-pw-7f3a9c1e"
  setup(function()
    R.client_module() -- lua-redis on this interpreter's path
    srv = R.start{ tls = true, users = { "fbapp on >" .. PASSWORD .. " ~fbacl:* +@all -@dangerous" } }
  end)
  teardown(function() if srv then srv:stop() end end)

  local function settings(extra)
    local s = { host = "127.0.0.1", port = srv.tls_port, tls = { server_name = "localhost", ca_file = srv.ca_file },
      username = "fbapp", password = PASSWORD }
    for k, v in pairs(extra or {}) do s[k] = v end
    return s
  end
  local function stores(s, prefix)
    return freshbooks.store.redis.keyspace{ redis = s, prefix = prefix or "fbacl:", timeout = 3 }
  end

  it("keeps tokens through a verified TLS connection as the ACL user", function()
    local ks = stores(settings())
    assert.is_true(ks("acme").save(pair, nil))
    assert.equal("r1", assert(ks("acme").load()).refresh_token)
    assert.same({ "acme" }, ks.list())
    local h = assert(ks("acme").lock())
    assert.is_true(h:unlock())
    -- It really went over TLS, as that user.
    local clients = srv:cli("ACL", "LOG")
    assert.is_nil(clients:find("fbapp", 1, true)) -- nothing refused so far
    assert.truthy(srv:cli("GET", "fbacl:{acme}:tokens"):find('"r1"', 1, true))
    -- settings read from JSON: its numbers are floats under Lua 5.3+ (LuaSocket refuses port 6379.0)
    local decoded = cjson.decode(cjson.encode(settings()))
    assert.equal("r1", assert(stores(decoded)("acme").load()).refresh_token)
  end)

  it("refuses a server the CA did not sign, a certificate for another name, and plain text", function()
    local cases = {
      { settings{ tls = { server_name = "localhost", ca_file = srv.other_ca_file } }, "store_tls" },
      { settings{ tls = { server_name = "wrong.example", ca_file = srv.ca_file } }, "store_tls" },
      { settings{ host = "127.0.0.1", tls = { ca_file = srv.ca_file }, port = srv.tls_port }, nil }, -- IP SAN: good
      { settings{ port = srv.port }, "store_unavailable" }, -- the plain port never answers a TLS hello
    }
    for i, c in ipairs(cases) do
      local t0 = core.clock.now()
      local ok, err = stores(c[1])("acme").load()
      if c[2] then
        assert.is_nil(ok, "case " .. i)
        assert.equal(c[2], err and err.code, "case " .. i .. ": " .. tostring(err))
        assert.is_true(core.clock.now() - t0 < 3.5, "case " .. i)
      else
        assert.is_nil(err, "case " .. i .. ": " .. tostring(err))
      end
    end
  end)

  it("refuses a wrong password, an unknown user and keys outside the user's ACL: store_auth", function()
    for i, s in ipairs{ settings{ password = "wrong-password" }, settings{ username = "nobody" },
      settings{ username = false, password = "x" } } do
      if s.username == false then s.username = nil end
      local ok, err = stores(s)("acme").load()
      assert.is_nil(ok)
      assert.equal("store_auth", err.code, "case " .. i .. ": " .. tostring(err))
      assert.is_false(H.leaks(tostring(err), { PASSWORD, "wrong-password" }))
    end
    local ok, err = stores(settings(), "elsewhere:")("acme").save(pair, nil)
    assert.is_nil(ok)
    assert.equal("store_auth", err.code)
    assert.equal("NOPERM", err.redis_error)
  end)

  it("raises on bad connection settings", function()
    for _, bad in ipairs{ { port = 1 }, { host = "h", port = 0 }, { host = "h", tls = true },
      { host = "h", tls = { verify = false } }, { host = "h", username = "u" }, { host = "h", typo = 1 },
      { host = "h", sentinel = { name = "m", addresses = { "h:1" } } }, { sentinel = { name = "m", addresses = {} } },
      { host = "a\nb" } } do
      assert.has_error(function() freshbooks.store.redis.keyspace{ redis = bad } end)
    end
  end)
end)

describe("store.redis against a hostile Redis", function()
  local srv, sb
  setup(function()
    srv = R.start{}
    sb = sandbox.start{ invoices = 5 }
  end)
  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)

  it("ends every operation by its deadline when Redis trickles its answer", function()
    local port = math.random(33000, 39000)
    local p = io.popen(H.lua .. " spec/support/redis_trickle.lua " .. port .. " 0.2 60 2>&1 & echo $!")
    local pid = tonumber(p:read("*l"))
    assert.truthy(p:read("*l"):find("ready", 1, true))
    R.register(pid, true)
    local redis = R.client_module()
    local ok, outcome = pcall(function()
      local out = {}
      -- The client's own timeout (0.5 s a read) never fires: each line arrives after 0.2 s.
      local factory = function() return redis.connect{ host = "127.0.0.1", port = port, timeout = 0.5 } end
      local s = freshbooks.store.redis{ redis = factory, key = "fb:trickle", timeout = 1, lock_timeout = 1 }
      local ks = freshbooks.store.redis.keyspace{ redis = { host = "127.0.0.1", port = port }, timeout = 1 }
      for name, op in pairs{ load = s.load, save = function() return s.save(pair, nil) end, lock = s.lock,
        settings = function() return ks("x").load() end } do
        local t0 = core.clock.now()
        local v, err = op()
        out[name] = { v = v, err = err, took = core.clock.now() - t0 }
      end
      return out
    end)
    p:close()
    os.execute("kill " .. pid)
    R.register(pid, false)
    assert.is_true(ok, tostring(outcome))
    for name, r in pairs(outcome) do
      assert.is_nil(r.v, name)
      assert.equal("store_unavailable", r.err.code, name)
      assert.is_true(r.took < 1 + 0.6, ("%s took %.2f s for a 1 s deadline"):format(name, r.took))
    end
  end)

  it("keeps keyspaces whose prefixes nest apart, and lists only connections", function()
    local f = R.factory(srv)
    local outer = freshbooks.store.redis.keyspace{ redis = f, prefix = "app:", legacy = false }
    local inner = freshbooks.store.redis.keyspace{ redis = f, prefix = "app:tokens:b:", legacy = false }
    local inner2 = freshbooks.store.redis.keyspace{ redis = f, prefix = "app:{b}:", legacy = false }
    assert.is_true(inner("7").save({ access_token = "a", refresh_token = "inner-7" }, nil))
    assert.is_true(inner2("x").save({ access_token = "a", refresh_token = "inner2-x" }, nil))
    -- Ids shaped like the other keyspaces' keys reach nothing of theirs.
    for _, id in ipairs{ "b:tokens:7", "b}:tokens", "{b}:x", "b", "b%7D:tokens" } do
      assert.is_nil(outer(id).load(), id)
    end
    assert.is_true(outer("b:tokens:7").save({ access_token = "a", refresh_token = "outer" }, nil))
    assert.equal("inner-7", inner("7").load().refresh_token)
    local held = assert(inner("7").lock())
    assert.is_true(inner2("x").put_state("st", 60))
    assert.same({ "b:tokens:7" }, outer.list())
    assert.same({ "7" }, inner.list())
    assert.same({ "x" }, inner2.list())
    held:unlock()
    -- Every (prefix, id) names its own keys.
    local seen, ids = {}, { "a", "a:", ":a", "{a}", "%7Ba%7D", "a%", "tokens", "{}", "a:tokens:b" }
    for _, prefix in ipairs{ "p:", "p:{a}:", "p:tokens:", "p:{a%7D:", "" } do
      local ks = freshbooks.store.redis.keyspace{ redis = f, prefix = prefix, legacy = false }
      for _, id in ipairs(ids) do
        local s = ks(id)
        assert.is_nil(seen[s.key], prefix .. " / " .. id .. " names " .. tostring(seen[s.key]) .. "'s key")
        seen[s.key] = prefix .. " / " .. id
      end
    end
  end)

  it("never remembers a SHA-1 SCRIPT LOAD did not give, and loads again after NOSCRIPT", function()
    package.loaded["freshbooks.store.redis"] = nil -- a fresh script cache, as in a new worker
    local fresh = require "freshbooks.store.redis"
    package.loaded["freshbooks.store.redis"] = freshbooks.store.redis
    local counts, lies = { script = 0, evalsha = 0, eval = 0 }, { "garbage", string.rep("ab", 20) }
    local real_factory = R.factory(srv)
    local function factory()
      local real = real_factory()
      local proxy = { network = real.network }
      function proxy.script(_, ...)
        counts.script = counts.script + 1
        local lie = table.remove(lies, 1)
        if lie then return lie end
        return real:script(...)
      end
      function proxy.evalsha(_, ...) counts.evalsha = counts.evalsha + 1 return real:evalsha(...) end
      function proxy.eval(_, ...) counts.eval = counts.eval + 1 return real:eval(...) end
      return proxy
    end
    local s = fresh{ redis = factory, key = "fb:shas", wipe_check = false }
    assert.is_true(s.save(pair, nil))
    for _ = 1, 20 do assert.equal("r1", s.load().refresh_token) end
    -- save: LOAD (garbage) then EVAL; load: LOAD (a wrong SHA), EVALSHA -> NOSCRIPT, EVAL; then LOAD, EVALSHA x20.
    assert.same({ script = 3, eval = 2, evalsha = 20 }, counts)
    srv:cli("SCRIPT", "FLUSH")
    for _ = 1, 5 do assert.equal("r1", s.load().refresh_token) end
    assert.same({ script = 4, eval = 3, evalsha = 25 }, counts)
  end)

  it("writes back every pair a process holds when Redis comes back empty", function()
    local users = { "alice", "bob", "carol" }
    local function node()
      local ks = freshbooks.store.redis.keyspace{ redis = R.factory(srv), prefix = "fb:wipe:", wipe_check = 0.2 }
      return freshbooks.connections{ app = H.opts(sb, { retry = false }), store = ks }, ks
    end
    local a, aks = node()
    for _, u in ipairs(users) do assert(aks(u).save(sb:token{ user = u }, nil)) end
    for _, u in ipairs(users) do assert.is_true(a:session(u):refresh()) end
    local held = {}
    for _, u in ipairs(users) do held[u] = a:session(u):tokens().refresh_token end
    srv:cli("FLUSHALL") -- a restart without persistence, as far as the data goes
    -- Another node finds nothing yet; node a's next use of Redis (any connection) writes everything back.
    local b, bks = node()
    assert.is_false(b:status("alice").connected)
    core.clock.sleep(0.25)
    assert.is_true(a:session("alice"):refresh())
    assert.equal(#users, aks.restored())
    held.alice = a:session("alice"):tokens().refresh_token
    for _, u in ipairs(users) do
      local stored = assert(bks(u).load(), u)
      assert.equal(H.hash(held[u]), H.hash(stored.refresh_token), u)
      assert.is_true(stored.version >= 2, u) -- versions go on: an older pair never overwrites a newer one
    end
    -- And the pairs are live: node b refreshes every one.
    for _, u in ipairs(users) do assert.is_true(b:session(u):refresh(), u) end
    for _, u in ipairs(users) do assert.is_true(accepted(sb, bks(u).load().refresh_token), u) end
  end)

  -- One connection's store in two processes of the app (each its own keyspace: its own held pairs).
  local function two(prefix)
    local function node() return freshbooks.store.redis.keyspace{ redis = R.factory(srv), prefix = prefix } end
    return node()("alice"), node()("alice")
  end

  it("never writes a held pair back over a new authorization saved after a delete", function()
    local a, b = two("fb:redo:")
    local first = sb:token{ user = "alice" }
    assert(a.save(first, nil))
    local second = sb:token{ user = "alice" }
    assert(a.save(second, a.load()))
    assert.equal(H.hash(second.refresh_token), H.hash(a.load().refresh_token)) -- a holds the refreshed pair
    assert.is_true(b.delete()) -- disconnected elsewhere, then authorized again
    local again = sb:token{ user = "alice" }
    assert(b.save(again, nil))
    local seen = assert(a.load())
    assert.equal(H.hash(again.refresh_token), H.hash(seen.refresh_token)) -- a's old pair came back before
    assert.equal(H.hash(again.refresh_token), H.hash(b.load().refresh_token))
    -- and a refresh a made from its old pair is refused, not written over the new grant
    local ok, err = a.save(sb:token{ user = "alice" }, second)
    assert.is_nil(ok)
    assert.equal("conflict", err.code)
    assert.equal(H.hash(again.refresh_token), H.hash(b.load().refresh_token))
  end)

  it("never writes a held pair back over a new authorization made after Redis lost everything", function()
    local a, b = two("fb:regrant:")
    assert(a.save(sb:token{ user = "alice" }, nil))
    assert(a.save(sb:token{ user = "alice" }, a.load()))
    srv:cli("FLUSHALL")
    local again = sb:token{ user = "alice" } -- the user authorized again before a touched Redis
    assert(b.save(again, nil))
    assert.equal(H.hash(again.refresh_token), H.hash(assert(a.load()).refresh_token))
    assert.equal(H.hash(again.refresh_token), H.hash(b.load().refresh_token))
  end)

  it("writes a held pair back over an older pair of the same grant (Redis restarted from an older state)", function()
    local a, b = two("fb:older:")
    assert(a.save(sb:token{ user = "alice" }, nil))
    local k = "fb:older:{alice}:tokens"
    local old = srv:cli("GET", k)
    local newer = sb:token{ user = "alice" }
    assert(a.save(newer, a.load()))
    srv:cli("SET", k, old) -- what an older snapshot holds
    assert.equal(H.hash(newer.refresh_token), H.hash(assert(a.load()).refresh_token))
    assert.equal(H.hash(newer.refresh_token), H.hash(b.load().refresh_token))
    assert.is_true(accepted(sb, b.load().refresh_token))
  end)

  it("saves a pair again after a failed save with the version it came from, so older pairs never come back", function()
    local oauth = require "freshbooks.oauth" -- a session hands save token fields only (oauth.copy)
    local function node(check)
      return freshbooks.store.redis.keyspace{ redis = R.factory(srv), prefix = "fb:again:", wipe_check = check }
    end
    local a, b = node(60)("alice"), node(0)("alice")
    local first = sb:token{ user = "alice" }
    assert(a.save(first, nil))
    local second = sb:token{ user = "alice" }
    assert(a.save(second, oauth.copy(first)))
    assert.equal(H.hash(second.refresh_token), H.hash(b.load().refresh_token)) -- b holds the second pair
    srv:kill()
    local third = sb:token{ user = "alice" }
    assert.is_nil(a.save(third, oauth.copy(second))) -- Redis away: a keeps the third pair
    srv:restart{ wipe = true } -- back, empty; a has not checked for a wipe yet
    assert.is_true(a.save(third, oauth.copy(second))) -- the session offers its kept pair again
    b.load() -- b finds the wipe and writes back the older pair it holds: refused
    assert.equal(H.hash(third.refresh_token), H.hash(node(false)("alice").load().refresh_token))
    assert.is_true(accepted(sb, node(false)("alice").load().refresh_token))
  end)

  it("reads and moves keys of the previous layout, and never through an id shaped like one", function()
    local record = require("freshbooks.store.record")
    for i = 1, 5 do
      srv:cli("SET", "fb:old:tokens:u" .. i, record.encode{ access_token = "a", refresh_token = "old-" .. i })
    end
    srv:cli("SET", "fb:old:tokens:b:tokens:7", record.encode{ access_token = "a", refresh_token = "nested" })
    local ks = freshbooks.store.redis.keyspace{ redis = R.factory(srv), prefix = "fb:old:" }
    assert.equal("old-1", ks("u1").load().refresh_token) -- read once, moved
    assert.equal("", srv:cli("GET", "fb:old:tokens:u1"))
    assert.is_nil(ks("b:tokens:7").load())
    local moved = assert(ks.migrate())
    assert.same({ moved = 5, kept = 0 }, moved) -- u2..u5 and the nested key as "b:tokens:7"
    assert.same({ "b:tokens:7", "u1", "u2", "u3", "u4", "u5" }, ks.list())
    assert.equal("", srv:cli("KEYS", "fb:old:tokens:*"))
    assert.equal("old-3", ks("u3").load().refresh_token)
  end)

  it("says which module is missing and how to get it", function()
    local loaded = package.loaded.redis
    package.loaded.redis, package.preload.redis = nil, function() error("module 'redis' not found") end
    local ok, v, err = pcall(function()
      return freshbooks.store.redis.keyspace{ redis = { host = "127.0.0.1", port = srv.port } }("x").load()
    end)
    package.preload.redis, package.loaded.redis = nil, loaded
    assert.is_true(ok, tostring(v))
    assert.is_nil(v)
    assert.equal("store_unavailable", err.code)
    assert.equal("redis", err.missing)
    assert.truthy(err.message:find("apt-get install lua-redis", 1, true), err.message)
  end)
end)
