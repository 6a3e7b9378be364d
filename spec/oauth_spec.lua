-- OAuth: authorize URL, redirect-URI rules, callback + state check, exchange, token responses, revoke.
local cjson = require "cjson"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"

local BASE = {
  client_id = "cid", client_secret = "the-client-secret-0123456789",
  redirect_uri = "https://example.com/freshbooks/callback", retry = false,
}
local NONE = {} -- marks an option to leave out
local function with(extra)
  local o = {}
  for k, v in pairs(BASE) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  for k, v in pairs(o) do if v == NONE then o[k] = nil end end
  return o
end

-- A transport that answers every request with one canned response (no network).
local function canned(status, body, ctype)
  local calls = {}
  return setmetatable({ calls = calls }, { __call = function(_, req)
    calls[#calls + 1] = req
    return { status = status, headers = { ["content-type"] = ctype or "application/json" }, body = body }
  end })
end

local function query_of(url)
  local out = {}
  local urldecode = require("freshbooks.core").codec.urldecode
  for k, v in url:match("%?(.*)$"):gmatch("([^&=]+)=([^&]*)") do out[k] = urldecode(v) end
  return out
end

describe("authorize_url", function()
  local fb = freshbooks.new(with{ auth_url = "https://auth.example.test/" })

  it("builds FreshBooks' authorize URL with a CSPRNG state", function()
    local url, state = fb:authorize_url{ scopes = { "user:profile:read", "user:invoices:read" } }
    assert.equal("https://auth.example.test/oauth/authorize/?", url:match("^[^?]+%?"))
    local q = query_of(url)
    assert.same({ client_id = "cid", response_type = "code", redirect_uri = BASE.redirect_uri,
      scope = "user:profile:read user:invoices:read", state = state }, q)
    assert.truthy(url:find("scope=user%3Aprofile%3Aread%20user%3Ainvoices%3Aread", 1, true))
    assert.truthy(url:find("redirect_uri=https%3A%2F%2Fexample.com%2Ffreshbooks%2Fcallback", 1, true))
    assert.truthy(state:match("^%x+$") and #state == 32)
    local _, state2 = fb:authorize_url{}
    assert.are_not.equal(state, state2)
  end)

  it("keeps a caller's state and encodes it", function()
    local url, state = fb:authorize_url{ state = "a b&c", scopes = "user:profile:read" }
    assert.equal("a b&c", state)
    assert.truthy(url:find("state=a%20b%26c", 1, true))
    assert.falsy(url:find("&scope=&", 1, true))
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() fb:authorize_url("x") end)
    assert.has_error(function() fb:authorize_url{ scopes = { 1 } } end)
    assert.has_error(function() fb:authorize_url{ scopes = { "a b" } } end)
    assert.has_error(function() fb:authorize_url{ state = "" } end)
    assert.has_error(function() fb:authorize_url{ redirect_uri = "https://evil.example/cb" } end,
      "freshbooks: authorize_url: unknown option 'redirect_uri'")
    assert.has_error(function() fb:authorize_url{ scopes = "user:profile:read\r\nX: y" } end)
  end)
end)

describe("redirect URIs", function()
  local function fails(extra, msg)
    local ok, err = pcall(freshbooks.new, with(extra))
    assert.is_false(ok)
    assert.truthy(tostring(err):find(msg, 1, true), tostring(err))
  end

  it("accepts https anywhere and http on localhost / 127.0.0.1", function()
    for _, u in ipairs{ "https://example.com/cb", "http://localhost:8976/callback", "http://127.0.0.1/cb",
      "https://example.com:8443/a/b/" } do
      assert.equal(u, freshbooks.new(with{ redirect_uri = u }).redirect_uri)
    end
  end)

  it("refuses plain http elsewhere, other schemes, query strings and fragments", function()
    fails({ redirect_uri = "http://example.com/cb" }, "must use https")
    fails({ redirect_uri = "http://localhost.example.com/cb" }, "must use https")
    fails({ redirect_uri = "ftp://example.com/cb" }, "must use https")
    fails({ redirect_uri = "https://example.com/cb?x=1" }, "cannot contain a query string")
    fails({ redirect_uri = "https://example.com/cb#f" }, "fragment")
    fails({ redirect_uri = "/cb" }, "absolute URL")
    fails({ redirect_uri = 42 }, "redirect_uri must be a non-empty string")
    fails({ redirect_uri = false }, "redirect_uri must be a non-empty string")
  end)

  it("uses exactly one of several configured URIs", function()
    local list = { "https://a.example.com/cb", "https://b.example.com/cb" }
    local fb = freshbooks.new(with{ redirect_uri = list[2], redirect_uris = list })
    assert.equal(list[2], fb.redirect_uri)
    assert.equal("https://a.example.com/cb",
      freshbooks.new(with{ redirect_uri = NONE, redirect_uris = { "https://a.example.com/cb" } }).redirect_uri)
    fails({ redirect_uri = NONE, redirect_uris = list }, "choose the one to use")
    fails({ redirect_uri = "https://a.example.com/cb/", redirect_uris = list }, "exactly one of redirect_uris")
    fails({ redirect_uri = list[1], redirect_uris = { list[1], list[1] } }, "exactly one of redirect_uris")
    fails({ redirect_uris = { "https://a.example.com/cb", "http://evil.example.com/" } }, "redirect_uris[2]")
    fails({ redirect_uri = NONE }, "redirect_uri is required")
    fails({ redirect_uris = {} }, "non-empty array")
  end)
end)

describe("token responses (no network)", function()
  it("takes expires_at from the local clock when created_at is absent", function()
    local t = canned(200, cjson.encode{ access_token = "A", refresh_token = "R", expires_in = 3600 })
    local fb = freshbooks.new(with{ transport = t, clock = function() return 1000 end })
    assert.is_true(fb:exchange("code"))
    assert.equal(4600, fb:tokens().expires_at)
    local sent = cjson.decode(t.calls[1].body)
    assert.same({ grant_type = "authorization_code", client_id = "cid", client_secret = BASE.client_secret,
      redirect_uri = BASE.redirect_uri, code = "code" }, sent)
    assert.equal("application/json", t.calls[1].headers["Content-Type"])
    assert.equal("POST", t.calls[1].method)
    assert.equal("https://api.freshbooks.com/auth/oauth/token", t.calls[1].url)
  end)

  it("believes no absurd token lifetime from server or store: negative, huge, inf, far-off created_at", function()
    local now, DAY = 1e9, 86400
    local cases = { -- expires_in / created_at / expires_at as sent -> expires_at believed
      { { expires_in = 43200 }, now + 43200 },
      { { expires_in = 43200, created_at = now - 600 }, now - 600 + 43200 },
      { { expires_in = -5 }, now },
      { { expires_in = 1e300 }, now + 30 * DAY },
      { { expires_in = "1e999" }, nil },                        -- a string that reads as inf
      { { expires_in = "nan" }, nil },
      { { expires_in = 3600, created_at = 1e300 }, now + 3600 },  -- created_at a day off: our clock
      { { expires_in = 3600, created_at = -1e300 }, now + 3600 },
      { { expires_in = { 1 } }, nil },
    }
    for i, case in ipairs(cases) do
      local body = { access_token = "A", refresh_token = "R" }
      for k, v in pairs(case[1]) do body[k] = v end
      local fb = freshbooks.new(with{ transport = canned(200, cjson.encode(body)), clock = function() return now end })
      assert(fb:exchange("code"), i)
      assert.equal(case[2], fb:tokens().expires_at, "case " .. i)
      -- the same values handed in as stored tokens
      local stored = freshbooks.new(with{ tokens = body, clock = function() return now end })
      assert.equal(case[2], stored:tokens().expires_at, "stored case " .. i)
    end
    for _, case in ipairs{ { 1e300, now + 30 * DAY }, { -1e300, -1e300 }, { 1 / 0 }, { "1e999" }, { 0 / 0 } } do
      local fb = freshbooks.new(with{ tokens = { access_token = "A", expires_at = case[1] },
        clock = function() return now end })
      assert.equal(case[2], fb:tokens().expires_at, tostring(case[1]))
    end
  end)

  it("turns HTML, garbage and token-less answers into coded errors", function()
    for _, case in ipairs{
      { 200, "<html><body>Oops</body></html>", "text/html" },
      { 200, "{not json", "application/json" },
      { 200, cjson.encode{ access_token = "A" }, "application/json" },
      { 200, "", "application/json" },
      { 502, "<html>Bad Gateway</html>", "text/html" },
    } do
      local fb = freshbooks.new(with{ transport = canned(case[1], case[2], case[3]) })
      local ok, err = fb:exchange("code")
      assert.is_nil(ok)
      assert.equal("bad_token_response", err.code)
      assert.equal(case[1], err.status)
      assert.is_false(fb:authorized())
    end
  end)

  it("keeps RFC 6749 error codes and descriptions", function()
    local fb = freshbooks.new(with{ transport = canned(400, cjson.encode{ error = "invalid_grant",
      error_description = "The provided authorization grant is invalid" }) })
    local ok, err = fb:exchange("code")
    assert.is_nil(ok)
    assert.equal("invalid_grant", err.code)
    assert.equal(400, err.status)
    assert.truthy(tostring(err):find("authorization grant is invalid", 1, true))
  end)

  it("takes only RFC 6749 error names as codes: a server's own name, or a token echoed in it, is not a code", function()
    local refresh = "rt-0123456789"
    local fb = freshbooks.new(with{ tokens = { access_token = "A", refresh_token = refresh },
      save = function() return true end,
      transport = canned(400, cjson.encode{ error = "Bad_" .. refresh .. ("x"):rep(2000) }) })
    local ok, err = fb:refresh()
    assert.is_nil(ok)
    assert.equal("oauth_error", err.code)
    assert.is_true(#tostring(err) < 1100, #tostring(err))
    for _, s in ipairs{ tostring(err), err.code, err.oauth_error } do
      assert.is_nil(s:lower():find(refresh, 1, true), s:sub(1, 40))
    end
    fb = freshbooks.new(with{ transport = canned(400, cjson.encode{ error = "invalid_scope" }) })
    ok, err = fb:exchange("code")
    assert.is_nil(ok)
    assert.equal("invalid_scope", err.code)
    -- the redirect's error parameter, the same way
    local _, state = fb:authorize_url{}
    ok, err = fb:authorize_callback("error=Denied_" .. ("y"):rep(2000) .. "&state=" .. state, state)
    assert.is_nil(ok)
    assert.equal("authorization_failed", err.code)
    _, state = fb:authorize_url{}
    _, err = fb:authorize_callback("error=access_denied&state=" .. state, state)
    assert.equal("access_denied", err.code)
  end)

  it("refuses a bad code argument", function()
    local fb = freshbooks.new(with{ transport = canned(200, "{}") })
    assert.has_error(function() fb:exchange() end)
    assert.has_error(function() fb:exchange("") end)
    assert.has_error(function() fb:authorize_callback("code=x", nil) end)
    assert.has_error(function() fb:authorize_callback(42, "state") end)
  end)
end)

describe("OAuth against the sandbox", function()
  local sb
  setup(function() sb = sandbox.start{ invoices = 5 } end)
  teardown(function() if sb then sb:stop() end end)

  it("runs the whole flow: authorize URL -> consent -> callback -> exchange -> me -> businesses", function()
    local lines = {}
    local fb = freshbooks.new(H.opts(sb, { log = function(e) lines[#lines + 1] = e.line end }))
    local url, state = fb:authorize_url{ scopes = { "user:profile:read" } }
    local location = H.consent(sb, url)
    assert.truthy(location:find("^" .. sb.app.redirect_uri:gsub("%p", "%%%0") .. "%?"))
    local ok, err = fb:authorize_callback(location, state)
    assert.is_nil(err)
    assert.is_true(ok)
    local me = assert(fb:me())
    assert.equal("alice@example.com", me.email)
    local names = {}
    for m in fb:businesses() do names[#names + 1] = m.name end
    assert.equal(2, #names)

    -- The exchange sent FreshBooks' JSON body (the sandbox keeps it with secrets hashed).
    local counters = sb:admin("GET", "/_sandbox/counters")
    local body = cjson.decode(counters.posts["/auth/oauth/token"][1])
    assert.equal("authorization_code", body.grant_type)
    assert.equal(sb.app.client_id, body.client_id)
    assert.equal(sb.app.redirect_uri, body.redirect_uri)
    assert.truthy(body.client_secret:find("^sha256:"))
    assert.truthy(body.code:find("^sha256:"))

    -- expires_at = created_at + expires_in, in the sandbox's clock.
    local t = fb:tokens()
    assert.equal(t.created_at + 43200, t.expires_at)
    assert.equal(43200, t.expires_in)

    -- No secret anywhere the user can see.
    local secrets = { sb.app.client_secret, t.access_token, t.refresh_token, state }
    assert.is_false(H.leaks(tostring(fb), secrets))
    assert.is_false(H.leaks(table.concat(lines, "\n"), secrets))
  end)

  it("sends redirect_uri on refresh too", function()
    local fb = H.session(sb)
    sb:admin("DELETE", "/_sandbox/counters")
    assert.is_true(fb:refresh())
    local body = cjson.decode(sb:admin("GET", "/_sandbox/counters").posts["/auth/oauth/token"][1])
    assert.equal("refresh_token", body.grant_type)
    assert.equal(sb.app.redirect_uri, body.redirect_uri)
    assert.truthy(body.refresh_token:find("^sha256:"))
  end)

  it("refuses a tampered state without spending the code", function()
    local fb = freshbooks.new(H.opts(sb))
    local url, state = fb:authorize_url{}
    local location = H.consent(sb, url)
    local before = H.last_seq(sb)
    local tampered = state:sub(1, -2) .. (state:sub(-1) == "0" and "1" or "0")
    local ok, err = fb:authorize_callback(location, tampered)
    assert.is_nil(ok)
    assert.equal("state_mismatch", err.code)
    assert.is_false(H.leaks(tostring(err), { state, tampered }))
    ok, err = fb:authorize_callback(location:gsub("state=%x+", "state=" .. tampered), state)
    assert.is_nil(ok)
    assert.equal("state_mismatch", err and err.code)
    ok, err = fb:authorize_callback(location:gsub("&?state=%x+", ""), state)
    assert.is_nil(ok)
    assert.equal("state_mismatch", err and err.code)
    assert.equal(0, H.count(H.log(sb, before), H.is_token_post))
    -- The untouched callback still works: the code was never sent.
    assert.is_true(fb:authorize_callback(location, state))
  end)

  it("refuses a callback that repeats code, state or error, without spending the code", function()
    local fb = freshbooks.new(H.opts(sb))
    local url, state = fb:authorize_url{}
    local location = H.consent(sb, url)
    local before = H.last_seq(sb)
    for _, bad in ipairs{
      location .. "&code=injected", location:gsub("code=", "code=injected&code=", 1),
      location .. "&state=" .. state, location .. "&state=other", location .. "&error=access_denied&error=x",
    } do
      local ok, err = fb:authorize_callback(bad, state)
      assert.is_nil(ok, bad)
      assert.truthy(err.code == "invalid_callback" or err.code == "state_mismatch", bad .. " -> " .. err.code)
    end
    -- the same as a table (ngx.req.get_uri_args gives an array for a repeated name)
    for _, bad in ipairs{ { state = state, code = { "a", "b" } },
      { state = state, error = { "access_denied", "x" } } } do
      local ok, err = fb:authorize_callback(bad, state)
      assert.is_nil(ok)
      assert.equal("invalid_callback", err.code)
    end
    assert.equal(0, H.count(H.log(sb, before), H.is_token_post))
    assert.is_true(fb:authorize_callback(location, state))
  end)

  it("reports a refused consent and a replayed code with codes", function()
    local fb = freshbooks.new(H.opts(sb))
    local url, state = fb:authorize_url{}
    local ok, err = fb:authorize_callback(H.consent(sb, url .. "&user=nobody"), state)
    assert.is_nil(ok)
    assert.equal("access_denied", err.code)

    url, state = fb:authorize_url{}
    local location = H.consent(sb, url)
    assert.is_true(fb:authorize_callback(location, state))
    local fb2 = freshbooks.new(H.opts(sb))
    ok, err = fb2:authorize_callback(location, state)
    assert.is_nil(ok)
    assert.equal("invalid_grant", err.code)
    assert.equal(400, err.status)
  end)

  it("answers a wrong client secret with invalid_client and never shows the secret", function()
    local wrong = "wrong-secret-0123456789abcdef0123"
    local fb = freshbooks.new(H.opts(sb, { client_secret = wrong }))
    local url, state = fb:authorize_url{}
    local ok, err = fb:authorize_callback(H.consent(sb, url), state)
    assert.is_nil(ok)
    assert.equal("invalid_client", err.code)
    assert.equal(401, err.status)
    assert.is_false(H.leaks(tostring(err), { wrong }))
  end)

  it("gives coded errors for HTML and malformed token responses from the server", function()
    local fb = freshbooks.new(H.opts(sb))
    for _, fault in ipairs{ "html", "malformed" } do
      -- (cut before the refresh token: nothing in the answer can be salvaged)
      sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = fault, times = 1,
        cut_before = '"refresh_token"' })
      local url, state = fb:authorize_url{}
      local ok, err = fb:authorize_callback(H.consent(sb, url), state)
      assert.is_nil(ok)
      assert.equal("bad_token_response", err.code)
      assert.is_number(err.status)
    end
    sb:admin("DELETE", "/_sandbox/faults")
  end)

  it("reads a 429 from the token endpoint as rate_limited with retry_after, the token untouched", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local store = freshbooks.store.file(dir .. "/t.json")
    assert(store.save(sb:token{}))
    local before = store.load().refresh_token
    local fb = freshbooks.new(H.opts(sb, { store = store, retry = false }))
    sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = "429", retry_after = 7, times = 1 })
    local ok, err = fb:refresh()
    assert.is_nil(ok)
    assert.equal("rate_limited", err.code)
    assert.equal(429, err.status)
    assert.equal(7, err.retry_after)
    assert.equal(before, store.load().refresh_token)
    assert.is_true(fb:refresh()) -- nothing was spent: the next try works
  end)

  it("salvages a new refresh token from a cut-off answer: saved, attached, refresh_uncertain", function()
    for _, fault in ipairs{ "malformed", "truncate" } do
      local saved = {}
      local fb = freshbooks.new(H.opts(sb, { save = function(new) saved[#saved + 1] = new return true end }))
      local since = H.last_seq(sb)
      sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = fault, times = 1,
        cut_before = '"scope"' })  -- the refresh token is whole, what follows it is lost
      local url, state = fb:authorize_url{}
      local ok, err = fb:authorize_callback(H.consent(sb, url), state)
      assert.is_nil(ok, fault)
      assert.equal("refresh_uncertain", err.code, fault)
      assert.equal(1, #saved, fault)
      assert.equal(saved[1].refresh_token, err.tokens.refresh_token)
      assert.is_nil(tostring(err):find(saved[1].refresh_token, 1, true))
      -- It is the one FreshBooks issued, and it works: the session goes on with it.
      assert.equal(H.newest_issued(sb, since), H.hash(saved[1].refresh_token))
      assert(fb:me())
    end
    sb:admin("DELETE", "/_sandbox/faults")
  end)

  it("salvages from the parsed answer when it reads but lacks the access token (escapes, no raw match)", function()
    local saved = {}
    local fb = freshbooks.new(with{ tokens = { access_token = "A", refresh_token = "rt-old" },
      save = function(new) saved[#saved + 1] = new return true end,
      transport = canned(200, '{"refresh_token":"rt\\/n\\u0065w","token_type":"Bearer","expires_in":43200}') })
    local ok, err = fb:refresh()
    assert.is_nil(ok)
    assert.equal("refresh_uncertain", err.code)
    assert.equal(1, #saved)
    assert.equal("rt/new", saved[1].refresh_token)
    assert.equal("rt/new", err.tokens.refresh_token)
  end)

  it("returns the exchanged tokens on save_failed and saves them before first use", function()
    local failing, saved = true, nil
    local fb = freshbooks.new(H.opts(sb, { save = function(new)
      if failing then return nil, "read-only file system" end
      saved = new
      return true
    end }))
    local url, state = fb:authorize_url{}
    local ok, err = fb:authorize_callback(H.consent(sb, url), state)
    assert.is_nil(ok)
    assert.equal("save_failed", err.code)
    assert.is_string(err.tokens.refresh_token)
    assert.is_false(H.leaks(tostring(err), { err.tokens.access_token, err.tokens.refresh_token }))
    failing = false
    assert.equal("alice@example.com", assert(fb:me()).email)
    assert.is_true(saved.refresh_token == err.tokens.refresh_token)
  end)

  it("revokes the newest grant: a pair that waits unsaved is the one revoked, never used afterwards", function()
    local failing = true
    local fb = H.session(sb, { save = function() if failing then return nil, "disk full" end return true end })
    local _, err = fb:refresh()
    assert.equal("save_failed", err.code)
    local pending = err.tokens
    assert.is_true(fb:revoke())
    failing = false
    local res, rerr = fb:request{ path = "/auth/api/v1/users/me" }
    assert.is_nil(res)
    assert.equal("reauth_required", rerr.code)
    -- The pair FreshBooks issued last is dead at the server.
    local ok, err2 = H.session(sb, { tokens = pending }):refresh()
    assert.is_nil(ok)
    assert.equal("reauth_required", err2.code)
  end)

  it("revokes the grant", function()
    local fb = H.session(sb)
    local old = fb:tokens()
    assert.is_true(fb:revoke())
    assert.is_false(fb:authorized())
    local ok, err = fb:request{ path = "/auth/api/v1/users/me" }
    assert.is_nil(ok)
    assert.equal("reauth_required", err.code)
    -- The revoked refresh token is dead at the server.
    local fb2 = H.session(sb, { tokens = old })
    ok, err = fb2:refresh()
    assert.is_nil(ok)
    assert.equal("reauth_required", err.code)
  end)
end)
