-- OAuth 2.0 as FreshBooks runs it: the authorize page, the token endpoint (authorization_code and
-- refresh_token grants), revoke, and the Bearer check every API route goes through.
local json = require "sandbox.json"
local state = require "sandbox.state"
local http = require "sandbox.http"
local util = require "sandbox.util"

local auth = {}

-- Handlers return status, body, headers; main sends them (so faults can still mangle the answer).
local function reply(_, status, body, headers) return status, body, headers end
local function pack(status, body, headers) return { status, body, headers } end

local CODE_LIFE = 300        -- authorization codes: about 5 minutes
local ACCESS_LIFE = 43200    -- access tokens: 12 hours of sandbox time

local function scope_set(s)
  local set = {}
  for word in tostring(s or ""):gmatch("%S+") do set[word] = true end
  return set
end

local known_scope = {}
for _, s in ipairs(state.scopes) do known_scope[s] = true end

-- RFC 6749 §5.2 error body.
local function oauth_error(req, status, code, description, headers)
  headers = headers or {}
  headers["Cache-Control"], headers["Pragma"] = "no-store", "no-cache"
  return reply(req, status, { error = code, error_description = description }, headers)
end

local function escape_html(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                                          ["'"] = "&#39;" }))
end

local function html(req, status, body)
  return reply(req, status, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>FreshBooks sandbox"
    .. "</title></head><body>" .. body .. "</body></html>\n", { ["Content-Type"] = "text/html; charset=utf-8" })
end

local function redirect(req, uri, params)
  local list = {}
  for _, p in ipairs(params) do if p[2] ~= nil then list[#list + 1] = p end end
  return reply(req, 302, nil, { Location = uri .. "?" .. util.form(list) })
end

-- Validate an authorize request. Returns app, scope string, or renders the RFC 6749 §4.1.2.1 error.
local function check_authorize(req, a)
  local app = a.client_id and state.apps[a.client_id]
  if type(a.client_id) ~= "string" or not app then
    return nil, pack(html(req, 400, "<h1>Invalid request</h1><p>Unknown client_id.</p>"))
  end
  local registered = false
  for _, uri in ipairs(app.redirect_uris) do if uri == a.redirect_uri then registered = true end end
  if not registered then
    -- Never redirect to an unregistered URI (exact match: scheme, host, port, path, trailing slash).
    return nil, pack(html(req, 400, "<h1>Invalid request</h1><p>The redirect_uri does not match a redirect URI "
      .. "registered for this application.</p>"))
  end
  local state_param = type(a.state) == "string" and a.state or nil
  if a.response_type ~= "code" then
    return nil, pack(redirect(req, a.redirect_uri, { { "error", a.response_type and "unsupported_response_type"
      or "invalid_request" }, { "error_description", "response_type must be code" }, { "state", state_param } }))
  end
  local scope = type(a.scope) == "string" and a.scope or ""
  for word in scope:gmatch("%S+") do
    if not known_scope[word] then
      return nil, pack(redirect(req, a.redirect_uri, { { "error", "invalid_scope" },
        { "error_description", "unknown scope " .. word }, { "state", state_param } }))
    end
  end
  if not scope:find("%S") then scope = table.concat(state.scopes, " ") end
  return app, scope, state_param
end

local function new_code(app, user, scope, redirect_uri)
  local code = util.random_hex(32)
  state.codes[code] = { client_id = app.client_id, user_id = user.id, scope = scope, redirect_uri = redirect_uri,
                        expires = state.now() + CODE_LIFE, tokens = {} }
  return code
end

local function first_arg(v) if type(v) == "table" then return v[1] end return v end

function auth.authorize(req)
  local a = {}
  for _, k in ipairs { "client_id", "redirect_uri", "response_type", "scope", "state", "user" } do
    a[k] = first_arg(req.args[k])
  end
  local app, scope, state_param = check_authorize(req, a)
  if not app then return scope[1], scope[2], scope[3] end
  if state.opts.auto_consent then
    local user = state.user(a.user or "alice")
    if not user then
      return redirect(req, a.redirect_uri, { { "error", "access_denied" },
        { "error_description", "unknown sandbox user" }, { "state", state_param } })
    end
    return redirect(req, a.redirect_uri, { { "code", new_code(app, user, scope, a.redirect_uri) },
      { "state", state_param } })
  end
  local hidden = {}
  for _, k in ipairs { "client_id", "redirect_uri", "response_type", "state" } do
    if a[k] then
      hidden[#hidden + 1] = string.format('<input type="hidden" name="%s" value="%s">', k, escape_html(a[k]))
    end
  end
  hidden[#hidden + 1] = string.format('<input type="hidden" name="scope" value="%s">', escape_html(scope))
  local users = {}
  for _, u in ipairs(state.users) do
    users[#users + 1] = string.format('<option value="%s">%s %s &lt;%s&gt; (%d businesses)</option>', u.login,
      escape_html(u.first_name), escape_html(u.last_name), escape_html(u.email), #u.memberships)
  end
  local scopes = {}
  for word in scope:gmatch("%S+") do scopes[#scopes + 1] = "<li>" .. escape_html(word) .. "</li>" end
  return html(req, 200, string.format([[
<h1>Authorize %s</h1>
<p><strong>%s</strong> wants to access your FreshBooks account (sandbox).</p>
<ul>%s</ul>
<form method="post" action="/oauth/authorize/">
%s
<label>Sign in as <select name="user">%s</select></label>
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>]], escape_html(app.name), escape_html(app.name), table.concat(scopes), table.concat(hidden, "\n"),
    table.concat(users)))
end

-- The consent form's POST.
function auth.consent(req)
  local a = http.form_fields(req.body)
  local app, scope, state_param = check_authorize(req, a)
  if not app then return scope[1], scope[2], scope[3] end
  local user = state.user(a.user or "alice")
  if a.decision ~= "allow" or not user then
    return redirect(req, a.redirect_uri, { { "error", "access_denied" },
      { "error_description", "The user denied the request." }, { "state", state_param } })
  end
  return redirect(req, a.redirect_uri, { { "code", new_code(app, user, scope, a.redirect_uri) },
    { "state", state_param } })
end

-- Issue an access token and the user's one live refresh token (older ones die right here).
local function issue(req, client_id, user_id, scope)
  local now = state.now()
  local access, refresh = util.random_hex(32), util.random_hex(32)
  state.access[access] = { client_id = client_id, user_id = user_id, scope = scope, expires = now + ACCESS_LIFE }
  -- An OpenID Connect id token (a JWT: header, claims, signature) comes with every token answer.
  local claims = ngx.encode_base64(('{"aud":"%s","iat":%d,"iss":"https://auth.freshbooks.com","sub":"%d"}')
    :format(client_id, math.floor(now), user_id)):gsub("[=+/]", { ["="] = "", ["+"] = "-", ["/"] = "_" })
  local id_token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." .. claims .. "." .. util.random_hex(16)
  local key = client_id .. "|" .. user_id
  local old = state.newest[key]
  if old then state.refresh[old] = nil end
  state.refresh[refresh] = { client_id = client_id, user_id = user_id, scope = scope }
  state.newest[key] = refresh
  if req and req.log then
    req.log.issued_access_token = util.token_hash(access)
    req.log.issued_refresh_token = util.token_hash(refresh)
  end
  return { access_token = access, token_type = "Bearer", expires_in = ACCESS_LIFE, refresh_token = refresh,
           scope = scope, created_at = math.floor(now), id_token = id_token }, access, refresh
end

-- Client credentials from the body or HTTP Basic.
local function client_of(req, f)
  local id, secret = f.client_id, f.client_secret
  local basic = type(req.headers.authorization) == "string" and req.headers.authorization:match("^Basic%s+(%S+)")
  if basic then
    local decoded = ngx.decode_base64(basic) or ""
    id, secret = decoded:match("^([^:]*):(.*)$")
    id, secret = id and ngx.unescape_uri(id), secret and ngx.unescape_uri(secret)
  end
  local app = type(id) == "string" and state.apps[id]
  if not app or type(secret) ~= "string" or secret ~= app.client_secret then return nil end
  return app
end

function auth.token(req)
  local f, why = http.fields(req)
  if not f then return oauth_error(req, 400, "invalid_request", why) end
  local grant = f.grant_type
  if req.log then
    req.log.refresh_token = type(f.refresh_token) == "string" and util.token_hash(f.refresh_token) or nil
    req.log.grant_type = type(grant) == "string" and grant or nil
  end
  if type(grant) ~= "string" or grant == "" then
    return oauth_error(req, 400, "invalid_request", "The request is missing a required parameter: grant_type.")
  end
  if grant ~= "authorization_code" and grant ~= "refresh_token" then
    return oauth_error(req, 400, "unsupported_grant_type", "The authorization grant type is not supported.")
  end
  local app = client_of(req, f)
  if not app then
    return oauth_error(req, 401, "invalid_client", "Client authentication failed due to unknown client, "
      .. "no client authentication included, or unsupported authentication method.")
  end
  if grant == "authorization_code" then
    local code = f.code
    if type(code) ~= "string" or code == "" then
      return oauth_error(req, 400, "invalid_request", "The request is missing a required parameter: code.")
    end
    local c = state.codes[code]
    local invalid = "The provided authorization grant is invalid, expired, revoked, does not match the "
      .. "redirection URI used in the authorization request, or was issued to another client."
    if not c or c.client_id ~= app.client_id then return oauth_error(req, 400, "invalid_grant", invalid) end
    if c.used then
      -- A replayed code: revoke what it produced (RFC 6749 §4.1.2).
      for _, t in ipairs(c.tokens) do state.access[t] = nil end
      return oauth_error(req, 400, "invalid_grant", invalid)
    end
    if state.now() > c.expires or f.redirect_uri ~= c.redirect_uri then
      return oauth_error(req, 400, "invalid_grant", invalid)
    end
    c.used = true
    local body, access = issue(req, app.client_id, c.user_id, c.scope)
    c.tokens[#c.tokens + 1] = access
    return reply(req, 200, body, { ["Cache-Control"] = "no-store", Pragma = "no-cache" })
  end
  local rt = f.refresh_token
  if type(rt) ~= "string" or rt == "" then
    return oauth_error(req, 400, "invalid_request", "The request is missing a required parameter: refresh_token.")
  end
  local r = state.refresh[rt]
  if not r or r.client_id ~= app.client_id or state.newest[r.client_id .. "|" .. r.user_id] ~= rt then
    return oauth_error(req, 400, "invalid_grant", "The provided authorization grant is invalid, expired, "
      .. "revoked, does not match the redirection URI used in the authorization request, or was issued to "
      .. "another client.")
  end
  if f.redirect_uri ~= nil then
    local ok = false
    for _, uri in ipairs(app.redirect_uris) do if uri == f.redirect_uri then ok = true end end
    if not ok then return oauth_error(req, 400, "invalid_grant", "The redirect_uri does not match.") end
  end
  local body = issue(req, app.client_id, r.user_id, r.scope)
  return reply(req, 200, body, { ["Cache-Control"] = "no-store", Pragma = "no-cache" })
end

function auth.revoke(req)
  local f, why = http.fields(req)
  if not f then return oauth_error(req, 400, "invalid_request", why) end
  local app = client_of(req, f)
  if not app then return oauth_error(req, 401, "invalid_client", "Client authentication failed.") end
  local token = f.token
  if type(token) ~= "string" or token == "" then
    return oauth_error(req, 400, "invalid_request", "The request is missing a required parameter: token.")
  end
  -- FreshBooks: bearer tokens "only expire when you manually POST to the token/revoke endpoint or when
  -- their time runs out". An access token revokes itself; a refresh token revokes the grant: itself and
  -- every access token the user holds from this app.
  local a = state.access[token]
  if a and a.client_id == app.client_id then a.revoked = true end
  local r = state.refresh[token]
  if r and r.client_id == app.client_id then
    state.refresh[token] = nil
    local key = r.client_id .. "|" .. r.user_id
    if state.newest[key] == token then state.newest[key] = nil end
    for _, t in pairs(state.access) do
      if t.client_id == r.client_id and t.user_id == r.user_id then t.revoked = true end
    end
  end
  return reply(req, 200, {})
end

-- Mint a pair without the browser (admin only): {user =, scope =, client_id =}.
function auth.mint(t)
  local user = state.user(t.user or "alice")
  if not user then return nil, "unknown user" end
  local app = state.apps[t.client_id or state.default_client_id]
  if not app then return nil, "unknown client_id" end
  local scope = t.scope or table.concat(state.scopes, " ")
  return (issue(nil, app.client_id, user.id, scope))
end

-- Error bodies per family for 401 (no/expired/revoked token) and 403 (missing scope / not a member).
-- Accounting answers its legacy errno 1003 (google.rpc code 16 under X-API-VERSION), events their
-- errno/message pair, identity the OAuth pair.
local ACCOUNTING_401 = "The server could not verify that you are authorized to access the URL requested."
-- google.rpc: the status in the message, the text in the metadata, whose values are strings ("" where
-- there is none), as the Java SDK's recorded 401 shows.
local RPC_STATUS = { [16] = 401, [7] = 403 }
local function rpc(code, message, reason)
  return { code = code, message = "Request failed with status_code: " .. RPC_STATUS[code], details = json.array { {
    ["@type"] = "type.googleapis.com/google.rpc.ErrorInfo", reason = reason,
    domain = "accounting.api.freshbooks.com",
    metadata = { field = "", message = message, object = "", value = "" } } } }
end
local unauth = {
  project = function(msg) return { message = msg } end,
  accounting = function()
    if state.rpc_errors then return rpc(16, ACCOUNTING_401, "1003") end
    return { response = { errors = json.array { { errno = 1003, message = ACCOUNTING_401 } } } }
  end,
  events = function(msg) return { errno = 401, message = "invalid_token: " .. msg } end,
  default = function(msg) return { error = "unauthenticated", error_description = msg } end,
}

function auth.forbidden(family, scope, message)
  if family == "accounting" and state.rpc_errors then
    return rpc(7, message, "1003")
  elseif family == "accounting" then
    return { response = { errors = json.array { { errno = 1003, field = json.null, message = message,
      object = json.null, value = scope or json.null } } } }
  elseif family == "project" then
    return { error = message } -- errno comes only with a field map: {"errno":2001,"error":{"field":"msg"}}
  elseif family == "events" then
    return { errno = 403, message = message }
  elseif family == "accounting_business" then
    return { errors = { message = "Request failed with status code 403", status = 403,
      details = json.array { { reason = message, metadata = { message = message } } } } }
  elseif family == "payments" then
    return { error_type = "forbidden", message = message }
  end
  return { error = "insufficient_scope", error_description = message }
end

-- Check the Bearer token. Returns ctx {user, token, scope} or nil, status, body, headers.
function auth.bearer(req, family, needed)
  local h = req.headers.authorization
  if type(h) == "table" then h = h[1] end
  local token = type(h) == "string" and h:match("^[Bb]earer%s+(%S+)%s*$")
  local shape = unauth[family] or unauth.default
  local www = { ["WWW-Authenticate"] = 'Bearer realm="FreshBooks", error="invalid_token"' }
  if not token then
    return nil, 401, shape("This action requires authentication to continue."),
      { ["WWW-Authenticate"] = 'Bearer realm="FreshBooks"' }
  end
  local a = state.access[token]
  if not a or a.revoked then return nil, 401, shape("The access token is invalid or was revoked."), www end
  if state.now() >= a.expires then return nil, 401, shape("The access token expired."), www end
  local granted = a.scope_set
  if not granted then granted = scope_set(a.scope); a.scope_set = granted end
  if needed and not granted[needed] then
    return nil, 403, auth.forbidden(family, needed, "Insufficient scope: this request needs " .. needed .. "."),
      { ["WWW-Authenticate"] = 'Bearer realm="FreshBooks", error="insufficient_scope", scope="' .. needed .. '"' }
  end
  return { user = state.user(a.user_id), token = token, scope = granted }
end

-- Auth bodies carry secrets: the counters keep their shape but only hashes of the values.
local function redact_fields(body)
  local out = body
  for _, k in ipairs { "client_secret", "code", "refresh_token", "token" } do
    local function hashed(p, v) return p .. "sha256:" .. util.token_hash(v) end
    out = out:gsub('("' .. k .. '"%s*:%s*")([^"]*)"', function(p, v) return hashed(p, v) .. '"' end)
    out = out:gsub("(%f[%w_]" .. k .. "=)([^&]*)", hashed)
    out = out:gsub('(name="' .. k .. '"\r\n\r\n)([^\r]*)', hashed)
  end
  return out
end

auth.routes = {
  { method = "GET", path = "/oauth/authorize/?", name = "/oauth/authorize/", handler = auth.authorize },
  { method = "POST", path = "/oauth/authorize/?", name = "/oauth/authorize/", handler = auth.consent,
    redact = redact_fields },
  { method = "POST", path = "/auth/oauth/token", name = "/auth/oauth/token", handler = auth.token,
    redact = redact_fields },
  { method = "POST", path = "/auth/oauth/revoke", name = "/auth/oauth/revoke", handler = auth.revoke,
    redact = redact_fields },
  { method = "GET", path = "/auth/api/v1/users/me", name = "/auth/api/v1/users/me",
    handler = function(req) return require("sandbox.identity").me(req) end },
}

return auth
