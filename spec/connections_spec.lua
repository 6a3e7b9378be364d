-- freshbooks.connections on a Redis keyspace (Debian's redis-server, started here) against the sandbox:
-- connect and callback with server-side state, status, list, disconnect, the LRU of live sessions,
-- hostile callbacks, and many tenants (10,000 connections stored, 1,000 live in this process: memory
-- measured and printed).
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local R = require "support.redis"
local H = require "support.fbtest"

local ME = "/auth/api/v1/users/me"

local function accepted(sb, refresh_token)
  local res = sb:http{ method = "POST", path = "/auth/oauth/token", json = { grant_type = "refresh_token",
    client_id = sb.app.client_id, client_secret = sb.app.client_secret, redirect_uri = sb.app.redirect_uri,
    refresh_token = refresh_token } }
  return res.status == 200
end

describe("freshbooks.connections", function()
  local sb, srv, stores, n = nil, nil, nil, 0
  local function prefix() n = n + 1; return "fb:conns" .. n .. ":" end
  setup(function()
    sb = sandbox.start{ invoices = 5 }
    srv = R.start{}
  end)
  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)
  local function conns(extra)
    stores = freshbooks.store.redis.keyspace{ redis = R.factory(srv), prefix = prefix() }
    local o = { app = H.opts(sb, { retry = false }), store = stores }
    for k, v in pairs(extra or {}) do o[k] = v end
    return freshbooks.connections(o)
  end
  -- The browser at FreshBooks for `user`: the callback's query.
  local function consent(url, user)
    return H.consent(sb, url .. (user and ("&user=" .. user) or "")):match("%?(.*)$")
  end

  describe("connecting", function()
    it("connects with a state kept server-side for that connection, short-lived and single use", function()
      local c = conns{ state_ttl = 120 }
      local url, state = assert(c:connect_url("acme", { scopes = { "user:profile:read" } }))
      local keys = srv:cli("KEYS", "*{acme}:state.*")
      assert.truthy(keys:match("%S"))
      assert.is_nil(keys:find(state, 1, true)) -- the key holds a hash, not the state
      local ttl = tonumber(srv:cli("TTL", keys))
      assert.is_true(ttl > 0 and ttl <= 120)
      local query = consent(url)
      -- Another connection's callback with acme's state: refused, and acme's state survives it.
      local ok, err = c:callback("globex", query)
      assert.is_nil(ok)
      assert.equal("state_mismatch", err.code)
      -- A browser whose cookie says another state: refused, uses nothing up.
      ok, err = c:callback("acme", query, "cookie-of-someone-else")
      assert.is_nil(ok)
      assert.equal("state_mismatch", err.code)
      assert.is_true(c:callback("acme", query, state))
      -- Replayed: the state is spent (and so is the code).
      ok, err = c:callback("acme", query, state)
      assert.is_nil(ok)
      assert.equal("state_mismatch", err.code)
      assert.equal("", srv:cli("KEYS", "*{acme}:state.*"))
      local st = assert(c:status("acme"))
      assert.is_true(st.connected)
      assert.is_false(st.reauth_required)
      assert.same({ "user:profile:read" }, st.scopes)
      assert.equal(2, #st.businesses)
      assert.is_true(math.abs(st.version - os.time() * 1000) < 5000, st.version) -- a new authorization: Redis's ms
      assert.is_true(math.abs(st.last_refresh - os.time()) < 5)
    end)

    it("refuses callbacks without a state or with one never issued", function()
      local c = conns()
      local url = assert(c:connect_url("acme"))
      local query = consent(url)
      for _, bad in ipairs{ query:gsub("state=[^&]*", ""), query:gsub("state=[^&]*", "state=forged"), "code=abc" } do
        local ok, err = c:callback("acme", bad)
        assert.is_nil(ok)
        assert.equal("state_mismatch", err.code)
      end
      assert.is_true(c:callback("acme", query)) -- the genuine one still works (no cookie: server-side state only)
    end)

    it("a denied consent uses the state up and says access_denied", function()
      local c = conns()
      local url, state = assert(c:connect_url("acme"))
      local query = "error=access_denied&state=" .. state
      local _, err = c:callback("acme", query, state)
      assert.equal("access_denied", err.code)
      _, err = c:callback("acme", consent(url), state)
      assert.equal("state_mismatch", err.code)
      assert.is_false(assert(c:status("acme")).connected)
    end)

    it("keeps secrets out of every error and status", function()
      local c = conns()
      local url, state = assert(c:connect_url("acme"))
      local query = consent(url)
      local code = query:match("code=([^&]+)")
      local seen = {}
      local _, e1 = c:callback("globex", query)
      seen[#seen + 1] = tostring(e1)
      assert.is_true(c:callback("acme", query, state))
      local _, e2 = c:callback("acme", query, state)
      seen[#seen + 1] = tostring(e2)
      local tokens = stores("acme").load()
      local st = c:status("acme")
      assert.is_true(st.connected)
      local text = table.concat(seen, "\n") .. require("cjson").encode(st)
      assert.is_false(H.leaks(text, { sb.app.client_secret, state, code, tokens.access_token, tokens.refresh_token }))
    end)
  end)

  describe("status, list, disconnect", function()
    it("says not connected, connected, reauth_required as FreshBooks sees it", function()
      local c = conns()
      assert.same({ id = "nobody", connected = false, reauth_required = false }, assert(c:status("nobody")))
      assert(stores("carol").save(sb:token{ user = "carol" }, nil))
      local st = assert(c:status("carol"))
      assert.is_true(st.connected)
      assert.equal("QmP57", st.businesses[1].account_id)
      -- The grant is revoked elsewhere (the user removed the app at FreshBooks).
      local t = stores("carol").load()
      for _, tok in ipairs{ t.access_token, t.refresh_token } do
        sb:http{ method = "POST", path = "/auth/oauth/revoke", json = { client_id = sb.app.client_id,
          client_secret = sb.app.client_secret, token = tok } }
      end
      st = assert(c:status("carol", { refresh = true }))
      assert.is_false(st.connected)
      assert.is_true(st.reauth_required)
    end)

    it("lists the stored connections and disconnects one: revoked at FreshBooks, gone from Redis", function()
      local c = conns()
      for _, u in ipairs{ "alice", "bob" } do assert(stores(u).save(sb:token{ user = u }, nil)) end
      assert.same({ "alice", "bob" }, c:list())
      local before = stores("alice").load()
      assert(c:session("alice"):me())
      assert.is_true(c:disconnect("alice"))
      assert.same({ "bob" }, c:list())
      assert.is_nil(stores("alice").load())
      assert.is_false(accepted(sb, before.refresh_token))
      assert.is_false(assert(c:status("alice")).connected)
      assert.is_true(c:disconnect("alice")) -- nothing left to disconnect: still fine
    end)
  end)

  describe("the LRU of live sessions", function()
    it("keeps at most max_sessions, the most recently used", function()
      local c = conns{ max_sessions = 2 }
      local a, b = c:session("a"), c:session("b")
      assert.equal(a, c:session("a")) -- a is now the most recent
      c:session("c")
      assert.equal(2, c:live_sessions())
      assert.equal(a, c:session("a"))
      assert.are_not.equal(b, c:session("b")) -- b was evicted, made again
    end)

    it("never evicts a session whose newest tokens are not saved yet", function()
      local failing = true
      local real = freshbooks.store.redis.keyspace{ redis = R.factory(srv), prefix = prefix() }
      local flaky = setmetatable({ list = real.list }, { __call = function(_, id)
        local s = real(id)
        return { load = s.load, lock = s.lock, save = function(...)
          if failing and id == "alice" then return nil, "the store is down" end
          return s.save(...)
        end }
      end })
      local c = freshbooks.connections{ app = H.opts(sb, { retry = false }), store = flaky, max_sessions = 1 }
      assert(real("alice").save(sb:token{}, nil))
      local fb = c:session("alice")
      local ok, err = fb:refresh()
      assert.is_nil(ok)
      assert.equal("save_failed", err.code)
      for _, id in ipairs{ "x", "y", "z" } do c:session(id) end
      assert.equal(fb, c:session("alice")) -- still live, with the pending pair
      failing = false
      assert(fb:me(true)) -- the pending pair is saved before anything uses it
      assert.equal(H.hash(err.tokens.refresh_token), H.hash(real("alice").load().refresh_token))
      assert.is_true(accepted(sb, real("alice").load().refresh_token))
    end)
  end)

  it("raises on bad arguments", function()
    local ks = freshbooks.store.redis.keyspace{ redis = R.factory(srv) }
    local app = H.opts(sb)
    for _, bad in ipairs{
      { app = app }, { store = ks }, { app = app, store = 42 }, { app = app, store = ks, typo = 1 },
      { app = app, store = ks, max_sessions = 0 }, { app = { client_id = "x" }, store = ks },
      { app = H.opts(sb, { store = ks("x") }), store = ks },
    } do
      assert.has_error(function() freshbooks.connections(bad) end)
    end
    local c = freshbooks.connections{ app = app, store = ks }
    assert.has_error(function() c:session("") end)
    assert.has_error(function() c:session(42) end)
    assert.has_error(function() c:callback("a", "state=x", 42) end)
    local files = freshbooks.connections{ app = app, store = function(id)
      return freshbooks.store.file(os.tmpname() .. id)
    end }
    assert.has_error(function() files:connect_url("a") end) -- no server-side state in a file store
    assert.has_error(function() files:list() end)
  end)

  -- 10,000 connections in Redis; 1,000 of them used from this process. The sandbox has three users and
  -- keeps one live refresh token per user, so the live ones hold freshly minted access tokens (no
  -- refresh needed); the other 9,000 are stored records.
  it("many tenants: 10,000 stored, 1,000 live in one process (memory measured)", function()
    local live, stored = 1000, 10000
    local pre = prefix()
    local ks = freshbooks.store.redis.keyspace{ redis = R.factory(srv), prefix = pre }
    local minter = core.http.client{ timeout = 10 }
    for i = 1, live do
      local status, _, body = minter:request{ method = "POST", url = sb.url .. "/_sandbox/tokens", body = "{}",
        headers = { ["Content-Type"] = "application/json" } }
      assert.equal(200, status)
      assert(ks("t" .. i).save(require("cjson").decode(body), nil))
    end
    minter:close()
    local record = require("freshbooks.store.record").encode{ access_token = "stale", refresh_token = "stale",
      expires_at = 0 }
    srv:cli("EVAL", "for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do redis.call('SET', ARGV[1] .. i .. '}:tokens',"
      .. " ARGV[4]) end", "0", pre .. "{t", tostring(live + 1), tostring(stored), record)
    local c = freshbooks.connections{ app = H.opts(sb, { retry = false }), store = ks, max_sessions = live }
    local t0 = core.clock.now()
    local ids = assert(c:list())
    local list_s = core.clock.now() - t0
    assert.equal(stored, #ids)

    local function heap() collectgarbage("collect"); collectgarbage("collect"); return collectgarbage("count") end
    local function rss()
      local f = io.open("/proc/self/status")
      local kb = tonumber(f:read("*a"):match("VmRSS:%s*(%d+)"))
      f:close()
      return kb
    end
    -- What connections adds to a session: 1,000 made through it vs 1,000 made directly on the same stores.
    local base = heap()
    local plain = {}
    for i = 1, live do
      plain[i] = freshbooks.new(H.opts(sb, { retry = false, store = ks("t" .. i) }))
      assert(plain[i]:request{ path = ME })
    end
    local per_plain = (heap() - base) / live
    plain = nil -- luacheck: ignore
    base = heap()
    local rss0 = rss()
    t0 = core.clock.now()
    for i = 1, live do
      local res, err = c:session("t" .. i):request{ path = ME }
      assert(res, err and tostring(err))
    end
    local calls_s = core.clock.now() - t0
    local per_live = (heap() - base) / live
    local rss_per = (rss() - rss0) / live
    assert.equal(live, c:live_sessions())
    c:session("t" .. (live + 1)) -- one more: the least recently used goes
    assert.equal(live, c:live_sessions())
    -- Generous bounds: a live connection must stay far below what thousands per worker would forbid.
    assert.is_true(per_live < 96, ("%.1f KB per live connection"):format(per_live))
    io.stderr:write(("\n    many tenants: %d connections in Redis listed in %.2f s; %d live in this process (one call "
      .. "each, %.2f s): Lua heap %.1f KB per live connection (a bare session with its store: %.1f KB, so connections "
      .. "adds %.1f KB), RSS %+.1f KB per connection\n"):format(stored, list_s, live, calls_s, per_live, per_plain,
      per_live - per_plain, rss_per))
  end)
end)
