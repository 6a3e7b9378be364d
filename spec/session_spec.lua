-- The session: configuration, requests, rotation through save, automatic refresh, failure handling.
local cjson = require "cjson"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"
local H = require "support.fbtest"

local ME = "/auth/api/v1/users/me"

-- Nothing public hands out a session's private state: walk everything reachable from the library's
-- modules and a session (tables, fields, metatables) and find no client secret and no token.
describe("session privacy", function()
  it("no public table, field or metatable leads to the client secret or a token", function()
    local secret, access, refresh = "client-secret-Zq9", "access-Tk-4711", "refresh-Tk-4712"
    local fb = freshbooks.new{ client_id = "c", client_secret = secret, redirect_uri = "https://e.com/cb",
      tokens = { access_token = access, refresh_token = refresh, expires_in = 3600 } }
    local acct = fb:account("aBcD1")
    local roots = { fb, acct, acct.invoices, fb:business(1).projects, freshbooks, require("freshbooks.session"),
      require("freshbooks.identity"), require("freshbooks.resource"), require("freshbooks.transport") }
    local seen, found = {}, {}
    local function walk(v, path, depth)
      if depth > 12 then return end
      if type(v) == "string" then
        if v == secret or v == access or v == refresh then found[#found + 1] = path end
        return
      end
      if type(v) ~= "table" or seen[v] then return end
      seen[v] = true
      for k, x in pairs(v) do
        walk(k, path .. "[key]", depth + 1)
        walk(x, path .. "." .. tostring(k), depth + 1)
      end
      local mt = getmetatable(v)
      if mt ~= nil then walk(mt, path .. ".<mt>", depth + 1) end
    end
    for i, r in ipairs(roots) do walk(r, "root" .. i, 0) end
    assert.same({}, found)
    assert.is_nil(require("freshbooks.session").private)
    assert.is_true(seen[fb] and seen[acct.invoices] and true) -- the walk did reach them
  end)
end)

describe("freshbooks.new", function()
  local base = { client_id = "cid", client_secret = "csecret-0123456789", redirect_uri = "https://example.com/cb" }
  local function opts(extra)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  local function raises(extra, msg)
    local ok, err = pcall(freshbooks.new, opts(extra))
    assert.is_false(ok)
    assert.truthy(tostring(err):find(msg, 1, true), tostring(err))
  end

  it("raises clearly on missing or malformed configuration", function()
    assert.has_error(function() freshbooks.new() end, "freshbooks.new: expected a table of options")
    assert.has_error(function() freshbooks.new("x") end, "freshbooks.new: expected a table of options")
    raises({ client_id = 42 }, "client_id must be a non-empty string")
    raises({ client_id = "" }, "client_id must be a non-empty string")
    raises({ client_secret = false }, "client_secret must be a non-empty string")
    raises({ cliend_id = "typo" }, "unknown option 'cliend_id'")
    raises({ api_url = "api.freshbooks.com" }, "api_url must be an http(s) URL")
    raises({ auth_url = 7 }, "auth_url must be an http(s) URL")
    -- plain http only to this machine: elsewhere the token would cross the network in clear
    for _, u in ipairs{ "http://api.freshbooks.com", "http://localhost.evil.example", "http://127.0.0.1.evil.example",
        "http://127.0.0.1@evil.example", "http://[::1]@evil.example/", "http://10.0.0.5:8080" } do
      raises({ api_url = u }, "api_url must be https (plain http only to a loopback host)")
      raises({ auth_url = u }, "auth_url must be https")
    end
    for _, u in ipairs{ "http://127.0.0.1:8080", "http://LOCALHOST", "http://[::1]:9/", "http://127.1.2.3",
        "https://api.freshbooks.com" } do
      assert.equal(u:gsub("/+$", ""), freshbooks.new(opts{ api_url = u }).api_url)
    end
    raises({ timeout = "10" }, "timeout must be a number")
    raises({ leeway = -1 }, "leeway must be a number >= 0")
    raises({ save = "file" }, "save must be a function")
    raises({ load = {} }, "load must be a function")
    raises({ transport = 1 }, "transport must be a function")
    raises({ store = "tokens.json" }, "store must be a table")
    raises({ store = { load = 1 } }, "store.load must be a function")
    raises({ tokens = { access_token = 1 } }, "tokens must be a table with an access_token")
    raises({ tokens = "abc" }, "tokens must be a table")
    raises({ scopes = 5 }, "scopes must be")
    raises({ retry = "yes" }, "retry must be a table")
  end)

  it("never shows secrets in tostring or in a dump of the object", function()
    local fb = freshbooks.new(opts{ tokens = { access_token = "ACCESS-abc", refresh_token = "REFRESH-xyz",
      expires_at = 2000000000 } })
    local s = tostring(fb)
    assert.truthy(s:find("freshbooks.session(client_id=cid", 1, true))
    assert.is_false(H.leaks(s, { "ACCESS-abc", "REFRESH-xyz", base.client_secret }))
    for _, v in pairs(fb) do
      assert.is_false(H.leaks(v, { "ACCESS-abc", "REFRESH-xyz", base.client_secret }))
    end
  end)

  it("reports reauth_required when there are no tokens at all", function()
    local fb = freshbooks.new(opts{ transport = function() error("must not be called") end })
    local res, err = fb:request{ path = ME }
    assert.is_nil(res)
    assert.equal("reauth_required", err.code)
    assert.has_error(function() fb:request() end)
    assert.has_error(function() fb:request{ path = 1 } end)
    assert.has_error(function() fb:request{ path = "/x", json = {}, body = "" } end)
    assert.has_error(function() fb:request{ path = "/x", query = 5 } end)
    assert.has_error(function() fb:batch("x") end)
  end)
end)

-- A token endpoint that issues an access token HTTP cannot carry (CR/LF) once, then clean ones; an API
-- that records what it was sent.
local TOKEN_SERVER = [[
location = /auth/oauth/token {
  content_by_lua_block {
    local n = ngx.shared.tk:incr("n", 1, 0)
    ngx.req.read_body()
    ngx.shared.tk:set("body" .. n, ngx.req.get_body_data() or "")
    ngx.header["Content-Type"] = "application/json"
    ngx.say(require("cjson").encode{ token_type = "Bearer", expires_in = 43200,
      access_token = n == 1 and "evil\r\nX-Injected: yes" or "clean-access-" .. n,
      refresh_token = "refresh-" .. n .. "\r\nX-Injected: yes" })
  }
}
location = /auth/api/v1/users/me {
  content_by_lua_block {
    local h = ngx.req.get_headers()
    ngx.shared.tk:set("auth", tostring(h["authorization"]))
    if h["x-injected"] then ngx.shared.tk:set("injected", tostring(h["x-injected"])) end
    ngx.header["Content-Type"] = "application/json"
    ngx.say('{"response":{"id":1}}')
  }
}
location = /state {
  content_by_lua_block {
    local d = ngx.shared.tk
    ngx.say(require("cjson").encode{ n = d:get("n"), auth = d:get("auth"), injected = d:get("injected"),
      body2 = d:get("body2") })
  }
}]]

describe("session against the sandbox", function()
  local sb, dir, ts
  setup(function()
    sb = sandbox.start{ invoices = 5 }
    -- its /echo shows what the session sends; TOKEN_SERVER's token endpoint at /auth/oauth/token
    ts = testserver.start{ http = "  lua_shared_dict tk 1m;", locations = TOKEN_SERVER }
    dir = H.tmpdir()
  end)
  teardown(function()
    if sb then sb:stop() end
    if ts then ts.stop() end
    H.rmdir(dir)
  end)
  before_each(function()
    sb:admin("DELETE", "/_sandbox/faults")
    sb:admin("POST", "/_sandbox/clock", { offset = 0 })
  end)

  describe("requests", function()
    it("send Bearer, Api-Version and Content-Type, render queries and decode JSON", function()
      local fb = H.session(sb, { api_url = ts.url }) -- tokens from the sandbox, requests to the echo
      local t = fb:tokens()
      local res = assert(fb:request{ method = "POST", path = "/echo", query = { search = { ids = { 1, 2 } } },
        json = { invoice = { notes = "hi" } }, headers = { ["X-Extra"] = "1" } })
      local h = res.data.headers
      assert.is_true(h.authorization == "Bearer " .. t.access_token) -- compared, never printed
      assert.equal("alpha", h["api-version"])
      assert.equal("application/json", h["content-type"])
      assert.equal("1", h["x-extra"])
      assert.equal("POST", res.data.method)
      assert.equal("/echo?search[ids][]=1&search[ids][]=2", res.data.uri)
      assert.same({ invoice = { notes = "hi" } }, cjson.decode(res.data.body))
      res = assert(fb:request{ path = "echo", query = "a=1", headers = { ["content-type"] = "text/plain" } })
      assert.equal("text/plain", res.data.headers["content-type"])
      assert.equal("/echo?a=1", res.data.uri)
      -- No Content-Type without a body (FreshBooks' project pages say to leave it out of GETs).
      for _, method in ipairs{ "GET", "DELETE" } do
        res = assert(fb:request{ method = method, path = "/echo" })
        assert.is_nil(res.data.headers["content-type"], method)
        assert.equal("alpha", res.data.headers["api-version"], method)
      end
    end)

    it("decode whole numbers as integers", function()
      local fb = H.session(sb)
      local me = assert(fb:me())
      local m = me.business_memberships[1]
      assert.equal("1000001", tostring(m.business.id))
      if math.type then assert.equal("integer", math.type(m.business.id)) end
    end)

    it("turn error responses into coded errors", function()
      local fb = H.session(sb)
      local res, err = fb:request{ path = "/no/such/route" }
      assert.is_nil(res)
      assert.equal("not_found", err.code)
      assert.equal(404, err.status)
    end)
  end)

  describe("rotation", function()
    it("hands every new pair to save(new, previous); the newest stays alive", function()
      local saves = {}
      local fb = H.session(sb, { save = function(new, prev) saves[#saves + 1] = { new = new, prev = prev } end })
      local first = fb:tokens()
      for _ = 1, 5 do assert.is_true(fb:refresh()) end
      assert.equal(5, #saves)
      assert.is_true(saves[1].prev.refresh_token == first.refresh_token)
      for i = 2, 5 do
        assert.is_true(saves[i].prev.refresh_token == saves[i - 1].new.refresh_token)
        assert.is_false(saves[i].new.refresh_token == saves[i - 1].new.refresh_token)
      end
      local newest = saves[5].new
      assert.is_true(fb:tokens().refresh_token == newest.refresh_token)
      -- The sandbox accepts the newest pair and refuses an older refresh token.
      local fb2 = H.session(sb, { tokens = newest })
      assert.equal("alice@example.com", assert(fb2:me()).email)
      local fb3 = H.session(sb, { tokens = saves[4].new })
      local ok, err = fb3:refresh()
      assert.is_nil(ok)
      assert.equal("reauth_required", err.code)
      assert.is_true(fb2:refresh())
    end)

    it("saves before the new access token is used (the sandbox's request log proves the order)", function()
      local marker = "/_saved_marker"
      local fb
      fb = H.session(sb, { save = function(new)
        -- Announce the saved token to the sandbox: its log records the request with the token's hash.
        sb:http{ path = marker, headers = { Authorization = "Bearer " .. new.access_token } }
        return true
      end })
      local since = H.last_seq(sb)
      -- Make the token due so the next call refreshes by itself, then use it.
      sb:admin("POST", "/_sandbox/clock", { advance = 43200 })
      assert(fb:request{ path = ME })
      local log = H.log(sb, since)
      local issued_at, saved_at, used_at, issued
      for i, e in ipairs(log) do
        if H.is_token_post(e) and e.status == 200 then issued_at, issued = i, e.issued_access_token end
        if issued and e.access_token == issued then
          if e.path == marker then saved_at = saved_at or i elseif not used_at then used_at = i end
        end
      end
      assert.is_number(issued_at)
      assert.is_number(saved_at)
      assert.is_number(used_at)
      assert.is_true(issued_at < saved_at and saved_at < used_at)
    end)

    -- A save that calls the session while its tokens are due joins the refresh that called it: it
    -- must be told at once, not wait (yield or sleep) for a refresh that cannot end before it returns.
    for _, where in ipairs{ "a coroutine", "the main thread with a sleep option" } do
      it("answers a save that calls back into the session with refresh_in_progress (" .. where .. ")", function()
        local offset, fb, inner, sleeps = 0, nil, nil, 0
        local opts = { clock = function() return os.time() + offset end, save = function()
          local res, err = fb:request{ path = ME }
          inner = res and "ok" or err.code
          return true
        end }
        if where ~= "a coroutine" then
          opts.sleep = function()
            sleeps = sleeps + 1
            if sleeps > 50 then error("waited on its own refresh") end
          end
        end
        fb = H.session(sb, opts)
        local before = fb:tokens().refresh_token
        offset = 43200
        local res, err
        local co = coroutine.create(function() res, err = fb:request{ path = ME } end)
        local resumes = 0
        repeat
          resumes = resumes + 1
          assert(coroutine.resume(co))
        until coroutine.status(co) == "dead" or resumes > 50
        assert.equal("dead", coroutine.status(co))
        assert.equal(1, resumes)
        assert.equal(0, sleeps)
        assert.equal("refresh_in_progress", inner)
        assert.is_nil(err)
        assert.equal(200, res.status)
        assert.is_false(fb:tokens().refresh_token == before)
      end)
    end

    for _, how in ipairs{ "raises", "returns nil, err" } do
      it("returns save_failed with the tokens when save " .. how .. ", and never uses them unsaved", function()
        local failing = true
        local saved
        local fb = H.session(sb, { save = function(new)
          if failing then
            if how == "raises" then error("disk full") end
            return nil, "disk full"
          end
          saved = new
          return true
        end })
        local since = H.last_seq(sb)
        local ok, err = fb:refresh()
        assert.is_nil(ok)
        assert.equal("save_failed", err.code)
        assert.is_string(err.tokens.refresh_token)
        assert.is_string(err.tokens.access_token)
        assert.truthy(tostring(err):find("disk full", 1, true))
        assert.is_false(H.leaks(tostring(err), { err.tokens.access_token, err.tokens.refresh_token }))
        local pending = err.tokens
        -- Still failing: the call fails again before anything is sent with the unsaved token.
        local res, err2 = fb:request{ path = ME }
        assert.is_nil(res)
        assert.equal("save_failed", err2.code)
        assert.is_true(err2.tokens.refresh_token == pending.refresh_token)
        -- save works again: the pending pair is saved first, then used (no new refresh needed).
        failing = false
        assert(fb:request{ path = ME })
        assert.is_true(saved.refresh_token == pending.refresh_token)
        local log = H.log(sb, since)
        assert.equal(1, H.count(log, H.is_token_post))
        assert.equal(1, H.count(log, function(e) return e.path == ME end))
      end)
    end
  end)

  describe("expiry", function()
    it("refreshes before the call when expires_at - leeway has passed (clock advanced 12 h)", function()
      local offset = 0
      local fb = H.session(sb, { clock = function() return os.time() + offset end })
      assert(fb:me())
      sb:admin("POST", "/_sandbox/clock", { advance = 43200 - 30 })
      offset = 43200 - 30 -- inside the 60 s leeway
      local since = H.last_seq(sb)
      assert(fb:me(true))
      local log = H.log(sb, since)
      assert.equal(2, #log)
      assert.is_true(H.is_token_post(log[1]))
      assert.equal(200, log[2].status)
      assert.equal(log[1].issued_access_token, log[2].access_token)
    end)

    it("refreshes once after a 401 and retries once (sandbox clock moved, local clock not)", function()
      local fb = H.session(sb)
      assert(fb:me())
      sb:admin("POST", "/_sandbox/clock", { advance = 43200 })
      local since = H.last_seq(sb)
      assert(fb:me(true))
      local log = H.log(sb, since)
      assert.equal(3, #log)
      assert.equal(401, log[1].status)
      assert.is_true(H.is_token_post(log[2]))
      assert.equal(200, log[3].status)
      assert.equal(log[2].issued_access_token, log[3].access_token)
    end)

    it("refreshes once after a 401 mid-session (revoked access token)", function()
      local fb = H.session(sb)
      local t = fb:tokens()
      sb:http{ method = "POST", path = "/auth/oauth/revoke", json = { client_id = sb.app.client_id,
        client_secret = sb.app.client_secret, token = t.access_token } }
      local since = H.last_seq(sb)
      assert(fb:request{ path = ME })
      local log = H.log(sb, since)
      assert.same({ 401, 200, 200 }, { log[1].status, log[2].status, log[3].status })
      assert.is_true(H.is_token_post(log[2]))
    end)

    it("does not loop when the retried request is refused again", function()
      local real = require("freshbooks.transport").curl{ timeout = 10 }
      local calls = 0
      local function t(req)
        if req.url:find(ME, 1, true) then calls = calls + 1 return { status = 401, headers = {}, body = "" } end
        return real(req)
      end
      local fb = H.session(sb, { transport = t })
      local since = H.last_seq(sb)
      local res, err = fb:request{ path = ME }
      assert.is_nil(res)
      assert.equal(401, err.status)
      assert.equal(2, calls)
      assert.equal(1, H.count(H.log(sb, since), H.is_token_post))
    end)
  end)

  describe("failures", function()
    it("invalid_grant with a changed store: reloads, adopts and succeeds", function()
      local path = dir .. "/ig1.json"
      local store = freshbooks.store.file(path)
      local stale = sb:token{}
      assert(store.save(stale))
      local other = H.session(sb, { store = store }) -- another worker rotates the stored pair
      assert.is_true(other:refresh())
      -- This worker holds the stale pair; its first load (inside the refresh) still sees the stale
      -- pair (the other worker's write lands just after it), the second sees the file.
      local loads = 0
      local fb = H.session(sb, { tokens = stale, load = function()
        loads = loads + 1
        if loads == 1 then return stale end
        return store.load()
      end, save = store.save })
      local since = H.last_seq(sb)
      assert.is_true(fb:refresh())
      assert.equal(2, loads)
      assert.is_true(fb:tokens().refresh_token == store.load().refresh_token)
      assert.equal(1, H.count(H.log(sb, since), H.is_token_post))
      assert(fb:me())
    end)

    it("invalid_grant when the store cannot be read again: the store's code, never reauth_required", function()
      local path = dir .. "/ig3.json"
      local store = freshbooks.store.file(path)
      local stale = sb:token{}
      assert(store.save(stale))
      assert.is_true(H.session(sb, { store = store }):refresh()) -- another worker rotated it
      local loads = 0
      local fb = H.session(sb, { tokens = stale, save = store.save, load = function()
        loads = loads + 1
        if loads == 1 then return stale end -- (read before the other worker's write landed)
        return nil, freshbooks.errors.new{ code = "store_unavailable", message = "Redis is away" }
      end })
      local ok, err = fb:refresh()
      assert.is_nil(ok)
      assert.equal("store_unavailable", err.code)
      assert.truthy(err.message:find("invalid_grant", 1, true), err.message)
      -- once the store answers again, the newer pair is adopted: the grant was alive all along
      fb = H.session(sb, { tokens = stale, store = store })
      assert.is_true(fb:refresh())
      assert(fb:me())
    end)

    it("invalid_grant with nothing newer stored: reauth_required, the store untouched", function()
      local path = dir .. "/ig2.json"
      local store = freshbooks.store.file(path)
      local t = sb:token{}
      assert(store.save(t))
      sb:token{} -- a newer pair exists somewhere else: the stored one is dead
      local before = H.read(path)
      local fb = H.session(sb, { store = store })
      local ok, err = fb:refresh()
      assert.is_nil(ok)
      assert.equal("reauth_required", err.code)
      assert.equal(before, H.read(path))
      assert.is_true(fb:authorized())
    end)

    for _, fault in ipairs{ "reset_after", "malformed", "503" } do
      it("an ambiguous failure (" .. fault .. ") is not retried blindly: refresh_uncertain", function()
        local path = dir .. "/amb-" .. fault .. ".json"
        local store = freshbooks.store.file(path)
        assert(store.save(sb:token{}))
        local before = H.read(path)
        local fb = H.session(sb, { store = store })
        sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = fault, times = 1,
          cut_before = '"refresh_token"' }) -- nothing to salvage in what arrives
        local since = H.last_seq(sb)
        local ok, err = fb:refresh()
        assert.is_nil(ok)
        assert.equal("refresh_uncertain", err.code)
        assert.is_nil(err.tokens)
        if fault == "reset_after" then assert.equal("recv", err.cause.code) end
        assert.equal(1, H.count(H.log(sb, since), H.is_token_post)) -- libcurl did not re-send it either
        assert.equal(before, H.read(path))
      end)
    end

    it("an ambiguous failure adopts newer stored tokens", function()
      local path = dir .. "/amb-newer.json"
      local store = freshbooks.store.file(path)
      local stale = sb:token{}
      assert(store.save(stale))
      -- Our refresh reaches the server (which rotates) but the answer is lost; by the time we reload,
      -- another worker has stored a newer pair (simulated inside the second load).
      local loads = 0
      local fb = H.session(sb, { tokens = stale, load = function()
        loads = loads + 1
        if loads == 2 then assert(store.save(sb:token{})) end
        return store.load()
      end, save = store.save })
      sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = "reset_after", times = 1 })
      local since = H.last_seq(sb)
      assert.is_true(fb:refresh())
      assert.equal(2, loads)
      assert.equal(1, H.count(H.log(sb, since), H.is_token_post))
      assert.is_true(fb:tokens().refresh_token == store.load().refresh_token)
      assert(fb:me())
    end)

    it("a timeout during the refresh is ambiguous too", function()
      local fb = H.session(sb, { timeout = 0.3 })
      sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = "delay", ms = 1000, times = 1 })
      local ok, err = fb:refresh()
      assert.is_nil(ok)
      assert.equal("refresh_uncertain", err.code)
      assert.equal("timeout", err.cause.code)
    end)

    it("a refused connection is not ambiguous", function()
      local fb = H.session(sb, { api_url = "http://127.0.0.1:1", retry = false })
      local ok, err = fb:refresh()
      assert.is_nil(ok)
      assert.equal("connect", err.code)
    end)

    it("reports lock failures with a code", function()
      local fb = H.session(sb, { lock = function() return nil, "busy" end })
      local ok, err = fb:refresh()
      assert.is_nil(ok)
      assert.equal("lock_failed", err.code)
      fb = H.session(sb, { lock = function() error("boom") end })
      ok, err = fb:refresh()
      assert.is_nil(ok)
      assert.equal("lock_failed", err.code)
      assert.truthy(tostring(err):find("boom", 1, true))
    end)

    -- Runtime data never turns into a raise: an access token HTTP cannot carry (CR/LF) is saved with
    -- its pair like any other, then never sent; the call says so with a code (issue #24).
    it("a token endpoint's access token with CR/LF: the pair saved, never sent, a coded error, then healed", function()
      local server = ts
      local saved = {}
      local fb = freshbooks.new{ client_id = "c", client_secret = "s", redirect_uri = "https://example.com/cb",
        api_url = server.url, retry = false,
        tokens = { access_token = "old", refresh_token = "refresh-0", expires_at = os.time() - 10 },
        save = function(new) saved[#saved + 1] = new return true end }
      local ran, res, err = pcall(fb.request, fb, { path = ME })
      assert.is_true(ran, tostring(res)) -- no raise
      assert.is_nil(res)
      assert.equal("bad_token_response", err.code)
      assert.equal(1, #saved) -- handed to save as issued: its refresh token is the only live one
      assert.equal("refresh-1\r\nX-Injected: yes", saved[1].refresh_token)
      assert.is_false(H.leaks(tostring(err), { "evil", "refresh-1" }))
      -- The next call refreshes with that refresh token (JSON carries it escaped) and works.
      res, err = fb:request{ path = ME }
      assert.is_truthy(res, tostring(err))
      assert.equal(2, #saved)
      local status, _, body = require("freshbooks.core").http.client{}:request{ url = server.url .. "/state" }
      assert.equal(200, status)
      local st = cjson.decode(body)
      assert.equal(2, st.n)
      assert.equal("Bearer clean-access-2", st.auth)
      assert.is_nil(st.injected) -- no request ever carried the injected header
      assert.equal("refresh-1\r\nX-Injected: yes", cjson.decode(st.body2).refresh_token)
    end)

    it("a stored access token with CR/LF: never sent; its pair's refresh token gets a clean pair", function()
      local path = dir .. "/crlf.json"
      local store = freshbooks.store.file(path)
      local t = sb:token{}
      t.access_token, t.expires_at = "planted\r\nX-Injected: yes", os.time() + 3600
      assert(store.save(t))
      local fb = H.session(sb, { store = store })
      local since = H.last_seq(sb)
      local ran, res, err = pcall(fb.request, fb, { path = ME })
      assert.is_true(ran, tostring(res))
      assert.is_truthy(res, tostring(err))
      assert.is_nil(store.load().access_token:find("[\r\n]"))
      assert.equal(1, H.count(H.log(sb, since), H.is_token_post))
    end)

    it("unlocks after every refresh, including failed ones", function()
      local held = 0
      local fb = H.session(sb, { lock = function()
        held = held + 1
        return function() held = held - 1 end
      end })
      assert.is_true(fb:refresh())
      assert.equal(0, held)
      sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = "reset_after", times = 1 })
      assert.is_nil(fb:refresh())
      assert.equal(0, held)
    end)
  end)

  describe("store", function()
    it("loads stored tokens lazily, and saves rotations to the file", function()
      local path = dir .. "/lazy.json"
      local store = freshbooks.store.file(path)
      local t = sb:token{}
      assert(store.save(t))
      local fb = H.session(sb, { store = store })
      assert.is_true(fb:authorized()) -- the store holds tokens
      assert.is_false(H.session(sb, { store = freshbooks.store.file(dir .. "/none.json") }):authorized())
      assert(fb:me())
      assert.is_true(fb:authorized())
      assert.is_true(fb:refresh())
      assert.is_true(store.load().refresh_token == fb:tokens().refresh_token)
      assert.is_false(store.load().refresh_token == t.refresh_token)
    end)
    it("reports an unreadable store instead of pretending nothing is stored", function()
      local path = dir .. "/corrupt.json"
      local f = assert(io.open(path, "wb"))
      f:write("{\"refresh_token\": 42")
      f:close()
      local fb = H.session(sb, { store = freshbooks.store.file(path) })
      local res, err = fb:request{ path = ME }
      assert.is_nil(res)
      assert.equal("store_corrupt", err.code)
      -- the cause's code is the error's own: said once ("store_corrupt: could not load ...: token file ...")
      local _, codes = tostring(err):gsub("store_corrupt", "")
      assert.equal(1, codes, tostring(err))
      assert.truthy(err.message:find("could not load the stored tokens: ", 1, true), err.message)
      fb = H.session(sb, { load = function() error("no disk") end })
      res, err = fb:request{ path = ME }
      assert.is_nil(res)
      assert.equal("load_failed", err.code)
      assert.truthy(tostring(err):find("no disk", 1, true))
    end)
  end)

  describe("batch", function()
    it("refreshes first when due, and once for all the 401s, keeping order", function()
      local fb = H.session(sb)
      local reqs = {}
      local CLIENT = "/accounting/account/aBcD1/users/clients/"
      for i = 1, 4 do reqs[i] = { path = CLIENT .. (10000 + i) } end
      reqs[5] = { path = ME }
      reqs[6] = { path = "/no/such/route" }
      sb:admin("POST", "/_sandbox/clock", { advance = 43200 }) -- every access token now dead at the server
      local since = H.last_seq(sb)
      local out = fb:batch(reqs, { concurrency = 3 })
      assert.equal(6, #out)
      for i = 1, 4 do assert.equal(10000 + i, out[i].res.data.response.result.client.id) end
      assert.equal("alice@example.com", out[5].res.data.response.email)
      assert.equal("not_found", out[6].err.code)
      local log = H.log(sb, since)
      assert.equal(1, H.count(log, H.is_token_post))
      -- 401 first, then the retried one, for each of them
      assert.equal(2, H.count(log, function(e) return e.path == ME end))
      assert.equal(8, H.count(log, function(e) return e.path:find(CLIENT, 1, true) == 1 end))
    end)
  end)

  describe("sessions of the same options", function()
    it("share their settings but never their tokens, hooks or secret", function()
      local saved = {}
      local a = H.session(sb, { save = function(new) saved[#saved + 1] = new.refresh_token return true end })
      local b = H.session(sb, nil, "bob") -- (a user's newer pair would make alice's refresh token stale)
      assert.is_true(a:refresh())
      assert.equal(1, #saved)
      assert.are_not.equal(a:tokens().refresh_token, b:tokens().refresh_token)
      assert.equal(200, assert(b:request{ path = ME }).status) -- b's own pair still works
      -- the same options but the secret: that session's token calls carry its own (wrong) secret
      local wrong = H.session(sb, { client_secret = "not-the-secret" }, "carol")
      local ok, err = wrong:refresh()
      assert.is_nil(ok)
      assert.equal("invalid_client", err.code)
      assert.is_true(H.session(sb, nil, "carol"):refresh())
      assert.equal(1, #saved) -- b and the others never called a's save
    end)
  end)

  describe("stream", function()
    it("is an object with colon methods: results in completion order, one refresh for all the 401s, an"
      .. " idempotent close", function()
      local fb = H.session(sb)
      local CLIENT = "/accounting/account/aBcD1/users/clients/"
      sb:admin("POST", "/_sandbox/clock", { advance = 43200 }) -- every access token now dead at the server
      local since = H.last_seq(sb)
      local s = assert(fb:stream{ concurrency = 2 })
      assert.equal("freshbooks.stream", tostring(s))
      local ids = {}
      for i = 1, 4 do ids[s:add{ path = CLIENT .. (10000 + i) }] = 10000 + i end
      local bad = s:add{ path = "/no/such/route" }
      assert.has_error(function() s:add{ path = 7 } end, "freshbooks: stream:add: path must be a string")
      local seen, n = {}, 0
      for _ = 1, 10 do
        local id, res, err = s:next()
        if not id then break end
        n = n + 1
        if id == bad then
          assert.equal("not_found", err.code)
        else
          assert.is_nil(err)
          seen[id] = res.data.response.result.client.id
        end
      end
      assert.equal(5, n)
      for id, want in pairs(ids) do assert.equal(want, seen[id]) end
      assert.is_nil(s:next())
      assert.equal(1, H.count(H.log(sb, since), H.is_token_post))
      s:close()
      s:close()
      assert.is_nil(s:next())
      assert.has_error(function() s:add{ path = CLIENT .. 10001 } end, "freshbooks: stream:add: the stream is closed")
    end)
  end)

  describe("log hook", function()
    it("receives redacted lines and cannot break calls", function()
      local events = {}
      local fb = H.session(sb, { log = function(e) events[#events + 1] = e end })
      local t = fb:tokens()
      assert(fb:me())
      assert.is_true(fb:refresh())
      local t2 = fb:tokens()
      local text = {}
      for _, e in ipairs(events) do
        text[#text + 1] = e.line
        for _, v in pairs(e) do text[#text + 1] = tostring(v) end
      end
      text = table.concat(text, "\n")
      assert.truthy(text:find("GET " .. sb.url .. ME .. " -> 200", 1, true))
      assert.truthy(text:find("refreshed tokens", 1, true))
      assert.is_false(H.leaks(text, { t.access_token, t.refresh_token, t2.access_token, t2.refresh_token,
        sb.app.client_secret }))
      local fb2 = H.session(sb, { log = function() error("broken hook") end })
      assert(fb2:me())
    end)
  end)
end)
