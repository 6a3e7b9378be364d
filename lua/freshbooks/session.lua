-- The session object (freshbooks.new): its options, the app they describe, and the public methods.
-- The rules live elsewhere: the token state machine in session/tokens.lua, the masking of what leaves
-- in session/secrets.lua, a request's path in pipeline.lua, identity in identity.lua, the owner
-- objects in resource.lua.
--
-- A session is small: an empty public table whose private state holds its tokens and hooks, and a
-- reference to its app (client id and secret, URLs, timeouts, transport, retries), which sessions
-- made with the same options share. What a session does not use yet (owner objects, the identity,
-- the list of spent tokens, a retry decorator of its own) is made when first used.
local env = require "freshbooks.env"
local identity = require "freshbooks.identity"
local oauth = require "freshbooks.oauth"
local options = require "freshbooks.options"
local pipeline = require "freshbooks.pipeline"
local secrets = require "freshbooks.session.secrets"
local tokens = require "freshbooks.session.tokens"
local transport = require "freshbooks.transport"

local session = {}

-- A session's private state, keyed by the session, so that no table dump of a session can show a
-- client secret or a token: {app, tokens, pending, flight, load, save, lock, log, send, used,
-- remembered}.
local private = setmetatable({}, { __mode = "k" })

local URL = "an http(s) URL"
local OPTIONS = options.spec{
  client_id = { "string", nonempty = true }, client_secret = { "string", nonempty = true },
  redirect_uri = { "string", nonempty = true }, redirect_uris = { "table" },
  tokens = { "table" }, store = { "table" }, load = { "function" }, save = { "function" }, lock = { "function" },
  api_url = { "string", say = URL, default = "https://api.freshbooks.com" },
  auth_url = { "string", say = URL, default = "https://auth.freshbooks.com" },
  timeout = { "number", min = 0, default = 60 }, leeway = { "number", min = 0, default = 60 },
  scopes = { "table|string", say = "an array of strings or a space-separated string" },
  transport = { "function" }, retry = { "table|false" }, log = { "function" }, clock = { "function" },
  sleep = { "function" },
  -- the default transport's (core.http.client's, and the cosockets' pool_size and keepalive)
  connect_timeout = { "number" }, cainfo = { "string" }, capath = { "string" }, proxy = { "string" },
  insecure_no_verify_tls = { "boolean" }, user_agent = { "string" }, max_body = { "number" },
  pool_size = { "number" }, keepalive = { "number" },
}
local PER_SESSION = { tokens = true, store = true, load = true, save = true, lock = true, log = true }
local TRANSPORT = { "timeout", "connect_timeout", "cainfo", "capath", "proxy", "insecure_no_verify_tls", "user_agent",
  "max_body", "pool_size", "keepalive" }

---------------------------------------------------------------------------------------------------
-- The app: what sessions made with the same options share

-- Plain http only to this machine (the sandbox, a local proxy): elsewhere the bearer token and the
-- client secret would cross the network in clear (and go to any http_proxy libcurl finds set). Every
-- loopback address counts here; redirect URIs follow FreshBooks' narrower rule (oauth.lua).
local function loopback(authority)
  local host = authority:match("^%[([^%]]+)%]") or authority:match("^([^:]+)")
  if not host or authority:find("@", 1, true) then return false end
  host = host:lower()
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

local function base_url(u, name, who, level)
  if not u:match("^https?://[^/]+") then error(who .. ": " .. name .. " must be an http(s) URL", level + 1) end
  local authority = u:match("^http://([^/?#]+)")
  if authority and not loopback(authority) then
    error(who .. ": " .. name .. " must be https (plain http only to a loopback host)", level + 1)
  end
  return (u:gsub("/+$", ""))
end

-- Exactly one redirect URI is used, and it must be one of those configured.
local function redirect_uri(o, who, level)
  local uri, list = o.redirect_uri, o.redirect_uris
  if list ~= nil then
    if #list == 0 then error(who .. ": redirect_uris must be a non-empty array of strings", level + 1) end
    local found = 0
    for i, u in ipairs(list) do
      oauth.check_redirect_uri(u, "redirect_uris[" .. i .. "]", who, level + 1)
      if u == uri then found = found + 1 end
    end
    if uri == nil then
      if #list > 1 then
        error(who .. ": several redirect_uris: choose the one to use with redirect_uri", level + 1)
      end
      uri, found = list[1], 1
    end
    if found ~= 1 then
      error(who .. ": redirect_uri must match exactly one of redirect_uris, character for character", level + 1)
    end
  end
  if uri == nil then error(who .. ": redirect_uri is required", level + 1) end
  uri = oauth.check_redirect_uri(uri, "redirect_uri", who, level + 1) -- (no tail call: it would shift `level`)
  return uri
end

-- A user clock that raises, yields or answers something other than a number must not cost a token:
-- the token answer is parsed with it, before save. It runs on a coroutine of its own; os.time()
-- stands in for a bad answer.
local function safe_clock(f)
  if f == nil then return os.time end
  return function()
    local ok, v = coroutine.resume(coroutine.create(f))
    if ok and type(v) == "number" and v == v then return v end
    return os.time()
  end
end

-- The app's retry options, with the session's log hook when it has one.
local function retried(app, t, log)
  if app.retry == false then return t end
  local ropts = {}
  for k, v in pairs(app.retry or {}) do ropts[k] = v end
  if ropts.log == nil then ropts.log = log end
  return require("freshbooks.retry").wrap(t, ropts)
end

local function new_app(o, who, level)
  if o.client_id == nil then error(who .. ": client_id must be a non-empty string", level + 1) end
  if o.client_secret == nil then error(who .. ": client_secret must be a non-empty string", level + 1) end
  local app = {
    client_id = o.client_id, client_secret = o.client_secret, redirect_uri = redirect_uri(o, who, level + 1),
    api_url = base_url(o.api_url, "api_url", who, level + 1),
    auth_url = base_url(o.auth_url, "auth_url", who, level + 1),
    timeout = o.timeout, leeway = o.leeway, scopes = o.scopes, retry = o.retry,
    clock = safe_clock(o.clock),
    -- Inside OpenResty, waiting must be ngx.sleep: an ngx request thread must never coroutine.yield.
    sleep = o.sleep or (env.nginx() and ngx.sleep),
  }
  -- The transport: the caller's, or the default (cosockets inside OpenResty, else the C core, where
  -- the Authorization header then travels as an opaque C secret); then the retry decorator.
  local t = o.transport
  if t == nil then
    local topts = {}
    for _, k in ipairs(TRANSPORT) do topts[k] = o[k] end
    t = transport.default(topts)
    app.secret_headers = true
  end
  app.transport, app.send = t, retried(app, t, nil)
  return app
end

-- Apps by options, while a session uses one. Only options that cannot change behind our back are
-- shared (strings, numbers, booleans, functions, a transport object); a table (redirect_uris,
-- scopes, retry) the caller may still fill makes an app of its own. The client secret is left out of
-- the key (it would sit in this table as a string) and compared on a hit instead.
local apps = setmetatable({}, { __mode = "v" })
local function share_key(o)
  local names = {}
  for k, v in pairs(o) do
    if not PER_SESSION[k] and k ~= "client_secret" then
      if type(v) == "table" and k ~= "transport" then return nil end
      names[#names + 1] = k
    end
  end
  table.sort(names)
  for i, k in ipairs(names) do
    local v = tostring(o[k])
    names[i] = k .. "=" .. #v .. ":" .. v
  end
  return table.concat(names, "\n")
end

local function app_of(o, who, level)
  local key = share_key(o)
  local app = key and apps[key]
  if app and app.client_secret == o.client_secret then return app end
  app = new_app(o, who, level + 1)
  if key then apps[key] = app end -- (the newest app of these options is the one shared)
  return app
end

---------------------------------------------------------------------------------------------------
-- Construction

local Session = {}
local methods = {}
local PUBLIC = { client_id = true, redirect_uri = true, api_url = true, auth_url = true, timeout = true,
  leeway = true }

-- fb.api_url and the other public settings read the app; methods come first.
function Session.__index(self, k)
  local m = methods[k]
  if m ~= nil then return m end
  if PUBLIC[k] then return private[self].app[k] end
  return nil
end

-- session.new(opts [, who, level]) -> a session. `who` names the caller in error messages
-- ("freshbooks.new", "freshbooks.connections: app"); `level` is error()'s from this frame.
function session.new(opts, who, level)
  who, level = who or "freshbooks.new", level or 2
  if type(opts) ~= "table" then error(who .. ": expected a table of options", level) end
  local o = options.check(who, OPTIONS, opts, level)
  if o.retry then require("freshbooks.retry").check(o.retry, who .. ": retry", level) end
  local store = o.store
  if store ~= nil then
    for _, k in ipairs{ "load", "save", "lock" } do
      if store[k] ~= nil and not options.callable(store[k]) then
        error(who .. ": store." .. k .. " must be a function", level)
      end
    end
  else
    store = {}
  end
  local app = app_of(o, who, level)
  local p = { app = app, load = o.load or store.load, save = o.save or store.save, lock = o.lock or store.lock }
  if o.tokens ~= nil then
    p.tokens = tokens.normalise(o.tokens, app.clock)
    if not p.tokens then
      error(who .. ": tokens must be a table with an access_token and/or a refresh_token string", level)
    end
  end
  -- Every log event of this session, its retries and token calls included, goes through one path.
  if o.log then
    p.log = o.log
    p.send = retried(app, app.transport, function(event) secrets.log(p, event) end)
  end
  local self = setmetatable({}, Session)
  private[self] = p
  return self
end

function Session.__tostring(self)
  local t = private[self].tokens
  return string.format("freshbooks.session(client_id=%s, authorized=%s%s)", private[self].app.client_id,
    tostring(t ~= nil), t and t.expires_at and (", expires_at=" .. string.format("%.0f", t.expires_at)) or "")
end

---------------------------------------------------------------------------------------------------
-- Tokens

-- fb:refresh() -> true | nil, err: a refresh now (unless the tokens changed since the call began).
function methods:refresh()
  local p = private[self]
  if not p.tokens then tokens.reload(p) end
  local t, err = tokens.refresh(p, p.tokens and p.tokens.access_token)
  if not t then return nil, secrets.redact(p, err) end
  return true
end

-- fb:tokens() -> a copy of the current tokens (for callers that persist them their own way), or nil.
function methods:tokens()
  return oauth.copy(private[self].tokens)
end

-- fb:authorized() -> whether the session holds tokens, or its store does.
function methods:authorized()
  local p = private[self]
  if not p.tokens then tokens.reload(p) end
  return p.tokens ~= nil
end

-- fb:redact(s [, exact]) -> s with this session's secrets (client secret, every token it has held)
-- masked, and anything else that looks like a token: for host applications' own logs and for guest
-- scripts. With `exact`, the secrets only: for data, where the look of a token is a UUID's too.
function methods:redact(s, exact)
  if type(s) ~= "string" then error("freshbooks: redact: string expected, got " .. type(s), 2) end
  return secrets.mask(private[self], s, exact)
end

-- local url, state = fb:authorize_url{ scopes = {...}, state = optional }
function methods:authorize_url(opts)
  local url, state = oauth.authorize_url(private[self].app, opts, 2)
  return url, state
end

-- fb:exchange(code) -> true | nil, err: the authorization code's tokens, through save like every rotation.
function methods:exchange(code)
  if type(code) ~= "string" or code == "" then error("freshbooks: exchange: code must be a non-empty string", 2) end
  local p = private[self]
  local saved, err = tokens.exchange(p, code)
  if not saved then return nil, secrets.redact(p, err) end
  identity.forget(self)
  if p.log then secrets.log(p, { type = "exchange", line = "exchanged an authorization code" }) end
  return true
end

-- fb:authorize_callback(query_string_or_table, expected_state) -> true | nil, err
function methods:authorize_callback(callback, expected_state)
  local code, err = oauth.check_callback(oauth.parse_callback(callback), expected_state)
  if not code then return nil, secrets.redact(private[self], err) end
  return self:exchange(code)
end

-- fb:revoke() -> true | nil, err: the grant revoked (the refresh token, else the access token); the
-- store is left as is.
function methods:revoke()
  local p = private[self]
  if not p.tokens then tokens.reload(p) end
  -- A pair waiting unsaved is the newest: it holds the only live refresh token, the one to revoke
  -- (revoking the spent one would leave the grant alive, the pending pair saved and used afterwards).
  local t = p.pending or p.tokens
  if not t then return nil, tokens.reauth("no tokens to revoke") end
  local ok, err = oauth.revoke(p.app, p.send or p.app.send, t.refresh_token or t.access_token)
  if not ok then return nil, secrets.redact(p, err) end
  tokens.forget(p)
  identity.forget(self)
  return true
end

---------------------------------------------------------------------------------------------------
-- Requests (pipeline.lua)

-- fb:request{method, path, query, json, body, headers, timeout, idempotent} -> res | nil, err
function methods:request(req)
  local res, err = pipeline.request(private[self], req, 2)
  return res, err
end

-- fb:batch(reqs, {concurrency}) -> { {res =, err =}, ... } in order.
function methods:batch(reqs, opts)
  local out = pipeline.batch(private[self], reqs, opts, 2)
  return out
end

-- fb:stream{concurrency = n} -> stream | nil, err (stream:add, stream:next, stream:close).
function methods:stream(opts)
  local s, err = pipeline.stream(private[self], opts, 2)
  return s, err
end

---------------------------------------------------------------------------------------------------
-- Identity (identity.lua) and owners (resource.lua)

function methods:me(refresh) return identity.me(self, refresh) end
function methods:memberships(refresh) return identity.memberships(self, refresh) end
function methods:businesses(refresh) return identity.businesses(self, refresh) end
function methods:find_business(key)
  local m, err = identity.find_business(self, key, 2)
  return m, err
end

-- One object per owner (account, business, accounting business) and session, held weakly: each holds
-- its session, and on LuaJIT and Lua 5.1, whose weak-keyed tables are no ephemerons, a strong cache
-- would keep every session that ever made one alive for good. One cache for every session, keyed by the
-- session's private table and the owner: a session whose owners are gone holds nothing for them (a
-- private table's address is not reused while an owner of it lives: the owner holds the session).
local owners = setmetatable({}, { __mode = "v" })
local function owner(self, kind, id)
  local p = private[self]
  local key = tostring(p) .. "/" .. kind .. "/" .. tostring(id)
  local o = owners[key]
  if not o then
    o = require("freshbooks.resource").owner(self, kind, id, 3)
    owners[key] = o
  end
  return o
end
function methods:account(id) return owner(self, "account", id) end
function methods:business(id) return owner(self, "business", id) end
function methods:accounting_business(uuid) return owner(self, "accounting_business", uuid) end

session.methods = methods
return session
