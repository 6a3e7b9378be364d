-- OAuth in the sandbox: authorize, token exchange in three encodings, refresh rotation, expiry,
-- revoke, scopes, identity.
local sandbox = require "support.sandbox"

local function authorize_url(sb, params)
  local q = {}
  for _, p in ipairs(params) do
    local v = tostring(p[2]):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)
    q[#q + 1] = p[1] .. "=" .. v
  end
  return sb.url .. "/oauth/authorize/?" .. table.concat(q, "&")
end

local function query_of(location)
  local out = {}
  local q = location:match("%?(.*)$") or ""
  for k, v in q:gmatch("([^&=]+)=([^&]*)") do
    out[k] = v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return out
end

local function get_code(sb, extra)
  local params = { { "response_type", "code" }, { "client_id", sb.app.client_id },
                   { "redirect_uri", sb.app.redirect_uri }, { "state", "st 1/é" } }
  for _, p in ipairs(extra or {}) do params[#params + 1] = p end
  local r = sb:http{ url = authorize_url(sb, params) }
  assert.equals(302, r.status)
  return query_of(r.headers.location), r.headers.location
end

local function exchange(sb, code, how, overrides)
  local f = { grant_type = "authorization_code", client_id = sb.app.client_id, client_secret = sb.app.client_secret,
              code = code, redirect_uri = sb.app.redirect_uri }
  for k, v in pairs(overrides or {}) do f[k] = v end
  if how == "form" or how == "multipart" then
    local list = {}
    for k, v in pairs(f) do if v ~= false then list[#list + 1] = { k, v } end end
    if how == "form" then return sb:http{ method = "POST", path = "/auth/oauth/token", form = list } end
    return sb:http{ method = "POST", path = "/auth/oauth/token", multipart = list }
  end
  for k, v in pairs(f) do if v == false then f[k] = nil end end
  return sb:http{ method = "POST", path = "/auth/oauth/token", json = f }
end

local function refresh(sb, rt)
  return sb:http{ method = "POST", path = "/auth/oauth/token", json = { grant_type = "refresh_token",
    client_id = sb.app.client_id, client_secret = sb.app.client_secret, refresh_token = rt,
    redirect_uri = sb.app.redirect_uri } }
end

local function me(sb, token)
  return sb:http{ path = "/auth/api/v1/users/me", headers = { Authorization = "Bearer " .. token } }
end

describe("sandbox auth", function()
  local sb
  setup(function() sb = sandbox.start{ invoices = 5 } end)
  teardown(function() sb:stop() end)
  before_each(function() sb:admin("POST", "/_sandbox/reset") end)

  it("runs the whole authorization code flow and echoes state", function()
    local q, location = get_code(sb)
    assert.equals(1, location:find(sb.app.redirect_uri .. "?", 1, true))
    assert.equals("st 1/é", q.state)
    assert.matches("^%x+$", q.code)
    local r = exchange(sb, q.code)
    assert.equals(200, r.status)
    local t = r.json
    assert.equals("Bearer", t.token_type)
    assert.equals(43200, t.expires_in)
    assert.is_string(t.refresh_token)
    assert.matches("user:profile:read", t.scope)
    assert.is_true(math.abs(t.created_at - os.time()) < 5)
    assert.equals("no-store", r.headers["cache-control"])
    local m = me(sb, t.access_token)
    assert.equals(200, m.status)
    assert.equals(1001, m.json.response.identity_id)
  end)

  it("accepts form and multipart token requests", function()
    assert.equals(200, exchange(sb, get_code(sb).code, "form").status)
    assert.equals(200, exchange(sb, get_code(sb).code, "multipart").status)
  end)

  it("uses a code once, and only with its redirect_uri and within 5 minutes", function()
    local code = get_code(sb).code
    local bad = exchange(sb, code, "json", { redirect_uri = "https://localhost/callback" })
    assert.equals(400, bad.status)
    assert.equals("invalid_grant", bad.json.error)
    local code2 = get_code(sb).code
    assert.equals(200, exchange(sb, code2).status)
    local again = exchange(sb, code2)
    assert.equals(400, again.status)
    assert.equals("invalid_grant", again.json.error)
    local code3 = get_code(sb).code
    sb:admin("POST", "/_sandbox/clock", { advance = 301 })
    assert.equals("invalid_grant", exchange(sb, code3).json.error)
  end)

  it("answers RFC 6749 errors from the token endpoint", function()
    local code = get_code(sb).code
    local r = exchange(sb, code, "json", { client_secret = "wrong" })
    assert.equals(401, r.status)
    assert.equals("invalid_client", r.json.error)
    r = exchange(sb, code, "json", { grant_type = "password" })
    assert.equals(400, r.status)
    assert.equals("unsupported_grant_type", r.json.error)
    r = exchange(sb, code, "json", { grant_type = false })
    assert.equals("invalid_request", r.json.error)
    r = exchange(sb, false, "json")
    assert.equals("invalid_request", r.json.error)
    r = sb:http{ method = "POST", path = "/auth/oauth/token", body = "{not json",
                 headers = { ["Content-Type"] = "application/json" } }
    assert.equals(400, r.status)
    assert.equals("invalid_request", r.json.error)
    -- a code issued to one app is no good to another
    r = exchange(sb, code, "json", { client_id = "other-client-id",
                                     client_secret = "other-client-secret-fedcba9876543210" })
    assert.equals("invalid_grant", r.json.error)
  end)

  it("validates authorize requests: no redirect to unknown clients or URIs", function()
    local base = { { "response_type", "code" }, { "client_id", sb.app.client_id } }
    local function with(extra)
      local p = { base[1], base[2] }
      for _, e in ipairs(extra) do p[#p + 1] = e end
      return sb:http{ url = authorize_url(sb, p) }
    end
    local r = with{ { "redirect_uri", sb.app.redirect_uri .. "/" } }
    assert.equals(400, r.status)
    assert.matches("text/html", r.headers["content-type"])
    r = with{ { "redirect_uri", sb.app.redirect_uri .. "?x=1" } }
    assert.equals(400, r.status)
    r = sb:http{ url = authorize_url(sb, { { "response_type", "code" }, { "client_id", "nobody" },
      { "redirect_uri", sb.app.redirect_uri } }) }
    assert.equals(400, r.status)
    r = with{ { "redirect_uri", "https://localhost/callback" }, { "scope", "user:profile:read nope:x" },
              { "state", "s" } }
    assert.equals(302, r.status)
    local q = query_of(r.headers.location)
    assert.equals("invalid_scope", q.error)
    assert.equals("s", q.state)
    r = sb:http{ url = authorize_url(sb, { { "response_type", "token" }, { "client_id", sb.app.client_id },
      { "redirect_uri", sb.app.redirect_uri } }) }
    assert.equals("unsupported_response_type", query_of(r.headers.location).error)
  end)

  it("rotates refresh tokens: single use, only the newest alive, access tokens overlap", function()
    local t1 = exchange(sb, get_code(sb).code).json
    local r2 = refresh(sb, t1.refresh_token)
    assert.equals(200, r2.status)
    local t2 = r2.json
    assert.is_true(t2.refresh_token ~= t1.refresh_token)
    -- the old refresh token is dead
    local old = refresh(sb, t1.refresh_token)
    assert.equals(400, old.status)
    assert.equals("invalid_grant", old.json.error)
    -- several access tokens are alive at once
    assert.equals(200, me(sb, t1.access_token).status)
    assert.equals(200, me(sb, t2.access_token).status)
    -- a second authorization makes t2's refresh token stale too (one per user + app)
    local t3 = exchange(sb, get_code(sb).code).json
    assert.equals("invalid_grant", refresh(sb, t2.refresh_token).json.error)
    assert.equals(200, refresh(sb, t3.refresh_token).status)
  end)

  it("expires access tokens after 12 hours of sandbox time", function()
    local t = exchange(sb, get_code(sb).code).json
    sb:admin("POST", "/_sandbox/clock", { advance = 43199 })
    assert.equals(200, me(sb, t.access_token).status)
    sb:admin("POST", "/_sandbox/clock", { advance = 2 })
    local r = me(sb, t.access_token)
    assert.equals(401, r.status)
    assert.equals("unauthenticated", r.json.error)
    assert.matches("expired", r.json.error_description)
    -- the refresh token does not expire
    assert.equals(200, refresh(sb, t.refresh_token).status)
  end)

  it("revokes access and refresh tokens", function()
    local t = exchange(sb, get_code(sb).code).json
    local function revoke(token, secret)
      return sb:http{ method = "POST", path = "/auth/oauth/revoke", json = { client_id = sb.app.client_id,
        client_secret = secret or sb.app.client_secret, token = token } }
    end
    assert.equals(401, revoke(t.access_token, "nope").status)
    assert.equals(200, revoke(t.access_token).status)
    assert.equals(401, me(sb, t.access_token).status)
    assert.equals(200, revoke(t.refresh_token).status)
    assert.equals("invalid_grant", refresh(sb, t.refresh_token).json.error)
  end)

  it("answers 401 without a token and 403 for a missing scope, per family", function()
    local r = sb:http{ path = "/auth/api/v1/users/me" }
    assert.equals(401, r.status)
    assert.equals("unauthenticated", r.json.error)
    r = sb:http{ path = "/projects/business/1000001/projects" }
    assert.equals(401, r.status)
    assert.is_string(r.json.message)
    local t = exchange(sb, get_code(sb, { { "scope", "user:profile:read user:clients:read" } }).code).json
    assert.equals("user:profile:read user:clients:read", t.scope)
    local auth = { Authorization = "Bearer " .. t.access_token }
    assert.equals(200, sb:http{ path = "/accounting/account/aBcD1/users/clients", headers = auth }.status)
    r = sb:http{ path = "/accounting/account/aBcD1/invoices/invoices", headers = auth }
    assert.equals(403, r.status)
    assert.equals(1003, r.json.response.errors[1].errno)
    r = sb:http{ path = "/projects/business/1000001/projects", headers = auth }
    assert.equals(403, r.status)
    assert.matches("user:projects:read", r.json.error)
    r = sb:http{ method = "POST", path = "/accounting/account/aBcD1/users/clients", headers = auth,
                 json = { client = { fname = "X" } } }
    assert.equals(403, r.status)
  end)

  it("describes users with zero, one and two businesses", function()
    local alice = me(sb, sb:token{ user = "alice" }.access_token).json.response
    assert.equals(2, #alice.business_memberships)
    local b1, b2 = alice.business_memberships[1].business, alice.business_memberships[2].business
    assert.is_true(b1.id ~= b2.id and b1.account_id ~= b2.account_id)
    assert.is_true(alice.business_memberships[1].id ~= b1.id)
    assert.equals("aBcD1", b1.account_id)
    assert.is_string(b1.business_uuid)
    assert.equals(0, #me(sb, sb:token{ user = "bob" }.access_token).json.response.business_memberships)
    local carol = me(sb, sb:token{ user = "carol" }.access_token).json.response
    assert.equals(1, #carol.business_memberships)
    -- auto-consent logs in as the `user` parameter
    local q = get_code(sb, { { "user", "carol" } })
    local t = exchange(sb, q.code).json
    assert.equals(1003, me(sb, t.access_token).json.response.id)
    -- alice cannot read carol's account
    local r = sb:http{ path = "/accounting/account/QmP57/users/clients",
                       headers = { Authorization = "Bearer " .. sb:token{ user = "alice" }.access_token } }
    assert.equals(403, r.status)
  end)

  it("shows a consent page when auto-consent is off", function()
    local people = sandbox.start{ auto_consent = false, invoices = 1 }
    local r = people:http{ url = authorize_url(people, { { "response_type", "code" },
      { "client_id", people.app.client_id }, { "redirect_uri", people.app.redirect_uri }, { "state", "abc" } }) }
    assert.equals(200, r.status)
    assert.matches("<form", r.body)
    r = people:http{ method = "POST", path = "/oauth/authorize/", form = { { "response_type", "code" },
      { "client_id", people.app.client_id }, { "redirect_uri", people.app.redirect_uri }, { "state", "abc" },
      { "user", "alice" }, { "decision", "deny" } } }
    assert.equals(302, r.status)
    assert.equals("access_denied", query_of(r.headers.location).error)
    r = people:http{ method = "POST", path = "/oauth/authorize/", form = { { "response_type", "code" },
      { "client_id", people.app.client_id }, { "redirect_uri", people.app.redirect_uri }, { "state", "abc" },
      { "user", "alice" }, { "decision", "allow" } } }
    local q = query_of(r.headers.location)
    assert.equals("abc", q.state)
    assert.equals(200, exchange(people, q.code).status)
    people:stop()
  end)
end)
