-- FreshBooks' OAuth 2.0 authorization-code flow: the authorize URL, the callback check, the token
-- endpoint (exchange, refresh, revoke), and what a token pair is. These functions hold no state
-- (session/tokens.lua owns the tokens). `cfg` is the session's app: client_id, client_secret,
-- redirect_uri, auth_url, api_url, clock, timeout, scopes; `send` the session's transport (wrapped for
-- retries).
local cjson = require "cjson.safe"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"

local oauth = {}

-- The fields of a token pair the library keeps (in memory, in stores, in what save receives).
oauth.FIELDS = { "access_token", "refresh_token", "token_type", "expires_in", "scope", "created_at", "expires_at" }

-- oauth.copy(pair) -> a new table of the pair's fields (nil for nil).
function oauth.copy(t)
  if not t then return nil end
  local c = {}
  for _, k in ipairs(oauth.FIELDS) do c[k] = t[k] end
  return c
end

local core = require "freshbooks.core"

-- FreshBooks' rules for a redirect URI: https, plain http only to the two names FreshBooks accepts
-- for a development machine (localhost and 127.0.0.1, not every loopback address), no query string
-- (state carries data instead), no fragment (RFC 6749 §3.1.2). Raises: a bad URI is a configuration
-- error. `who` names the caller ("freshbooks.new"); `level` is error()'s, from the caller of this.
local DEVELOPMENT_HOSTS = { localhost = true, ["127.0.0.1"] = true }
function oauth.check_redirect_uri(uri, where, who, level)
  local function bad(msg) error(who .. ": " .. where .. " " .. msg, level + 2) end
  if type(uri) ~= "string" or uri == "" then bad("must be a non-empty string") end
  local scheme, host = uri:match("^(%a[%w+.-]*)://([^/?#]*)")
  if not scheme then bad("must be an absolute URL") end
  scheme = scheme:lower()
  host = host:gsub("^.*@", ""):gsub(":%d*$", ""):lower()
  if host == "" then bad("has no host") end
  if scheme == "http" then
    if not DEVELOPMENT_HOSTS[host] then bad("must use https (plain http is allowed for localhost only)") end
  elseif scheme ~= "https" then
    bad("must use https")
  end
  if uri:find("?", 1, true) then bad("cannot contain a query string (use state to carry data)") end
  if uri:find("#", 1, true) then bad("cannot contain a fragment") end
  return uri
end

-- A fresh state: 16 CSPRNG bytes as hex, unguessable and URL-safe.
function oauth.new_state()
  return core.codec.hex(core.crypto.random_bytes(16))
end

-- A redirect_uri here would be silently the session's: unknown options raise.
local AUTHORIZE = options.spec{ scopes = { "table|string" }, state = { "string" } }

-- authorize_url(cfg, {scopes =, state =}) -> url, state. `level`: error()'s, from the caller of this.
function oauth.authorize_url(cfg, opts, level)
  opts = options.check("freshbooks: authorize_url", AUTHORIZE, opts, level + 1)
  local scopes = opts.scopes or cfg.scopes
  if type(scopes) == "table" then
    for i, s in ipairs(scopes) do
      if type(s) ~= "string" or s == "" or s:find("%s") then
        error("freshbooks: authorize_url: scopes[" .. i .. "] must be a scope name", level + 1)
      end
    end
    scopes = table.concat(scopes, " ")
  elseif scopes ~= nil and (type(scopes) ~= "string" or scopes:find("[%c]")) then
    error("freshbooks: authorize_url: scopes must be an array of strings or a space-separated string", level + 1)
  end
  local state = opts.state
  if state == nil then
    state = oauth.new_state()
  elseif state == "" then
    error("freshbooks: authorize_url: state must be a non-empty string", level + 1)
  end
  local c = core.codec
  local q = {
    "client_id=" .. c.urlencode(cfg.client_id),
    "response_type=code",
    "redirect_uri=" .. c.urlencode(cfg.redirect_uri),
  }
  if scopes and scopes ~= "" then q[#q + 1] = "scope=" .. c.urlencode(scopes) end
  q[#q + 1] = "state=" .. c.urlencode(state)
  -- auth_url is the host (https://auth.freshbooks.com) or, as some configs give it, the page itself.
  local page = cfg.auth_url:find("/oauth/authorize$") and cfg.auth_url .. "/" or cfg.auth_url .. "/oauth/authorize/"
  return page .. "?" .. table.concat(q, "&"), state
end

-- The callback's query (string, with or without the leading "?" or a whole URL, or a table) -> fields.
-- A repeated name gives the array of its values, as ngx.req.get_uri_args does: check_callback then
-- refuses it, never picking one of two codes or states.
function oauth.parse_callback(query)
  if type(query) == "table" then return query end
  if type(query) ~= "string" then
    error("freshbooks: authorize_callback: query must be a string or a table", 3)
  end
  query = query:gsub("#.*$", "")
  if query:find("?", 1, true) then query = query:match("%?(.*)$") end
  local fields = {}
  for _, pair in ipairs(core.codec.form_decode(query)) do
    local k, v, had = pair[1], pair[2], fields[pair[1]]
    if had == nil then fields[k] = v
    elseif type(had) == "table" then had[#had + 1] = v
    else fields[k] = { had, v } end
  end
  return fields
end

-- The RFC's error names that become an error's code (errors.OAUTH); any other is the server's own.
local function oauth_code(name, otherwise)
  name = name:lower()
  return errors.OAUTH[name] ~= nil and name or otherwise
end

-- Check the callback fields against the state the caller kept; return the code or nil, err.
function oauth.check_callback(fields, expected_state)
  if type(expected_state) ~= "string" or expected_state == "" then
    error("freshbooks: authorize_callback: the expected state (from authorize_url) is required", 3)
  end
  local got = fields.state
  if type(got) ~= "string" or not core.crypto.equals(got, expected_state) then
    return nil, errors.new{ code = "state_mismatch", message = "the callback's state does not match the one issued" }
  end
  if fields.error ~= nil and type(fields.error) ~= "string" then
    return nil, errors.new{ code = "invalid_callback", message = "the callback carries several errors" }
  end
  if fields.error then
    return nil, errors.new{ code = oauth_code(fields.error, "authorization_failed"),
      message = type(fields.error_description) == "string" and fields.error_description
        or "the user did not authorize the application" }
  end
  if type(fields.code) ~= "string" or fields.code == "" then
    return nil, errors.new{ code = "invalid_callback", message = "the callback carries no authorization code" }
  end
  return fields.code
end

-- When an access token stops working, from what a server or a stored file says: an explicit
-- expires_at, else created_at + expires_in. FreshBooks issues 12-hour tokens; a lifetime beyond 30 days,
-- a negative one, a created_at a day away from our clock, inf or nan is not believed (the token is
-- then used until the API refuses it, or until 30 days from now). nil when nothing is known.
local MAX_LIFETIME, MAX_SKEW = 30 * 86400, 86400
local function finite(v)
  v = tonumber(v)
  if v and v == v and v > -math.huge and v < math.huge then return v end
end
function oauth.expires_at(expires_at, expires_in, created_at, now)
  local at = finite(expires_at)
  if not at then
    local life = finite(expires_in)
    if not life then return nil end
    local from = finite(created_at)
    if not from or math.abs(from - now) > MAX_SKEW then from = now end
    at = from + math.max(0, life)
  end
  return math.min(at, now + MAX_LIFETIME)
end

local function token_fields(data, clock)
  local t = {
    access_token = type(data.access_token) == "string" and data.access_token ~= "" and data.access_token or nil,
    refresh_token = data.refresh_token,
    token_type = type(data.token_type) == "string" and data.token_type or "Bearer",
    expires_in = finite(data.expires_in),
    scope = type(data.scope) == "string" and data.scope or nil,
    created_at = finite(data.created_at),
  }
  t.expires_at = oauth.expires_at(nil, t.expires_in, t.created_at, clock())
  return t
end

-- A cut-off or mangled token answer may still hold the new refresh token whole: the server has
-- already rotated, so it is the only live one. Taken only when unambiguous: one complete
-- "refresh_token":"..." (no escapes), plus the access token and expiry if they are whole too.
local function salvage(body, clock)
  if type(body) ~= "string" then return nil end
  local found = {}
  for v in body:gmatch('"refresh_token"%s*:%s*"([%w%-%._~+/=]+)"') do found[#found + 1] = v end
  if #found ~= 1 then return nil end
  local access = {}
  for v in body:gmatch('"access_token"%s*:%s*"([%w%-%._~+/=]+)"') do access[#access + 1] = v end
  return token_fields({ refresh_token = found[1], access_token = #access == 1 and access[1] or nil,
    expires_in = body:match('"expires_in"%s*:%s*(%d+)%s*[,}]'),
    created_at = body:match('"created_at"%s*:%s*(%d+)%s*[,}]') }, clock)
end
oauth.salvage = salvage

-- A token response -> tokens, or nil, err. Error codes are RFC 6749's (`invalid_grant`, ...) when the
-- server says so, `rate_limited` for a 429 (nothing was issued), else `bad_token_response`;
-- `err.ambiguous` marks a failure after which the server may have issued (and so rotated) tokens that
-- we did not read; `err.salvaged` holds the tokens read from a cut-off answer.
function oauth.parse_token_response(res, clock)
  local data = core.json.decode(res.body or "")
  if type(data) ~= "table" then data = nil end
  local ok = res.status >= 200 and res.status < 300
  if ok and data and type(data.access_token) == "string" and data.access_token ~= ""
    and type(data.refresh_token) == "string" and data.refresh_token ~= "" then
    return token_fields(data, clock)
  end
  if res.status == 429 then
    return nil, errors.from_response(res)
  end
  if data and type(data.error) == "string" then
    return nil, errors.new{
      code = oauth_code(data.error, "oauth_error"), oauth_error = data.error, status = res.status,
      message = type(data.error_description) == "string" and data.error_description or data.error,
      -- 5xx with an error body: the server failed, but we cannot know at which step.
      ambiguous = res.status >= 500 or nil,
    }
  end
  return nil, errors.new{
    code = "bad_token_response", status = res.status,
    message = "the token endpoint's answer holds no token response",
    -- A 2xx/5xx we cannot read may still have rotated the refresh token server-side; 4xx did not.
    ambiguous = (ok or res.status >= 500) or nil,
    -- (a body that reads whole gives its refresh token as decoded, escapes and all; the raw scan is
    -- for one cut short)
    salvaged = ok and (data and type(data.refresh_token) == "string" and data.refresh_token ~= ""
      and token_fields(data, clock) or salvage(res.body, clock)) or nil,
  }
end

-- Transport failures that prove the request never reached the server.
local NOT_SENT = errors.NOT_SENT

-- The token endpoint. Nothing here calls a user hook other than the transport (and the clock, made
-- safe by the session): the answer must reach save() before any log hook or other code runs.
local function token_call(cfg, send, fields, path)
  local done, res, err = pcall(send, {
    method = "POST",
    url = cfg.api_url .. path,
    headers = { ["Content-Type"] = "application/json", Accept = "application/json" },
    body = assert(cjson.encode(fields)),
    timeout = cfg.timeout,
    keep_partial = true,
    finish = true, -- a Ctrl-C must not cut off the answer that holds the new (only live) refresh token
  })
  if not done then -- a transport that raised: we cannot know whether the request left
    return nil, errors.new{ code = "transport", message = "the transport raised an error", ambiguous = true }
  end
  if not res then
    if not errors.is(err) then err = errors.from_core(err) end
    if not NOT_SENT[err.code] then
      err.ambiguous = true
      if err.partial_body then err.salvaged = salvage(err.partial_body, cfg.clock) end
    end
    err.partial_body = nil
    return nil, err
  end
  if type(res) ~= "table" or type(res.status) ~= "number" then
    return nil, errors.new{ code = "bad_response", message = "the transport returned no HTTP status", ambiguous = true }
  end
  return res
end

local function grant(cfg, send, fields)
  local res, err = token_call(cfg, send, fields, "/auth/oauth/token")
  if not res then return nil, err end
  return oauth.parse_token_response(res, cfg.clock)
end

-- Exchange an authorization code for tokens.
function oauth.exchange(cfg, send, code)
  return grant(cfg, send, {
    grant_type = "authorization_code", client_id = cfg.client_id, client_secret = cfg.client_secret,
    redirect_uri = cfg.redirect_uri, code = code,
  })
end

-- Spend a refresh token (single use) for a new token pair. FreshBooks wants redirect_uri here too.
function oauth.refresh(cfg, send, refresh_token)
  return grant(cfg, send, {
    grant_type = "refresh_token", client_id = cfg.client_id, client_secret = cfg.client_secret,
    redirect_uri = cfg.redirect_uri, refresh_token = refresh_token,
  })
end

-- Revoke a token (access or refresh). true or nil, err.
function oauth.revoke(cfg, send, token)
  local res, err = token_call(cfg, send,
    { client_id = cfg.client_id, client_secret = cfg.client_secret, token = token }, "/auth/oauth/revoke")
  if not res then return nil, err end
  if res.status >= 200 and res.status < 300 then return true end
  local _, perr = oauth.parse_token_response(res, cfg.clock)
  perr.ambiguous = nil
  return nil, perr
end

return oauth
