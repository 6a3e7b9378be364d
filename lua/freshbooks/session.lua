-- The session: configuration, tokens, automatic refresh, and fb:request / fb:batch.
--
-- Refresh tokens are single use and only the newest is alive, so every rule here protects the newest:
--   * every token response goes to save(new, previous) before its access token is used (rotation);
--   * one refresh at a time per session (coroutines join the running one), and across processes the
--     refresh runs inside lock(), after reloading the store: tokens another process already rotated are
--     adopted instead of refreshed;
--   * invalid_grant reloads once; a failure that may have reached the server is never retried with the
--     same refresh token; stored credentials are never wiped.
local cjson = require "cjson.safe"
local core = require "freshbooks.core"
local errors = require "freshbooks.errors"
local redaction = require "freshbooks.redact"
local oauth = require "freshbooks.oauth"
local query = require "freshbooks.query"
local transport = require "freshbooks.transport"

local session = {}
local Session = {}
Session.__index = Session
local protected_log, safe_clock, log_token_call, salvaged, reload -- defined below, used before

-- Secrets and mutable state live here, keyed by session, so that no table dump of a session object
-- can show a client secret or a token.
local private = setmetatable({}, { __mode = "k" })

local TOKEN_FIELDS = {
  "access_token", "refresh_token", "token_type", "expires_in", "scope", "created_at", "expires_at",
}

local OPTIONS = {
  client_id = true, client_secret = true, redirect_uri = true, redirect_uris = true, tokens = true,
  load = true, save = true, lock = true, store = true, auth_url = true, api_url = true, timeout = true,
  leeway = true, transport = true, scopes = true, log = true, clock = true, retry = true, sleep = true,
  connect_timeout = true, cainfo = true, capath = true, proxy = true, insecure_no_verify_tls = true,
  user_agent = true, max_body = true, pool_size = true, keepalive = true,
}

local function copy_tokens(t)
  if not t then return nil end
  local c = {}
  for _, k in ipairs(TOKEN_FIELDS) do c[k] = t[k] end
  return c
end

local function is_callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

-- Plain http only to this machine (the sandbox, a local proxy): elsewhere the bearer token and the
-- client secret would cross the network in clear (and go to any http_proxy libcurl finds set).
local function loopback(authority)
  local host = authority:match("^%[([^%]]+)%]") or authority:match("^([^:]+)")
  if not host or authority:find("@", 1, true) then return false end
  host = host:lower()
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end
local function check_base_url(u, name)
  if type(u) ~= "string" or not u:match("^https?://[^/]+") then
    error("freshbooks.new: " .. name .. " must be an http(s) URL", 3)
  end
  local authority = u:match("^http://([^/?#]+)")
  if authority and not loopback(authority) then
    error("freshbooks.new: " .. name .. " must be https (plain http only to a loopback host)", 3)
  end
  return (u:gsub("/+$", ""))
end

-- Normalise a token table (user-supplied or loaded): expires_at from created_at + expires_in when
-- missing. nil when it holds no usable token.
local function normalise(t, clock)
  if type(t) ~= "table" then return nil end
  local c = copy_tokens(t)
  if type(c.access_token) ~= "string" or c.access_token == "" then c.access_token = nil end
  if type(c.refresh_token) ~= "string" or c.refresh_token == "" then c.refresh_token = nil end
  if not c.access_token and not c.refresh_token then return nil end
  c.expires_in, c.created_at = tonumber(c.expires_in), tonumber(c.created_at)
  c.expires_at = oauth.expires_at(c.expires_at, c.expires_in, c.created_at, clock())
  return c
end

-- FreshBooks' JSON goes through core.json_decode: object nulls left out, whole numbers as integers on
-- Lua 5.3+, in one C pass (src/decode.c).
local function decode(body) return core.json_decode(body) end

local function decode_body(res)
  local body = res.body
  if type(body) ~= "string" or body == "" then return nil end
  local ct = res.headers and res.headers["content-type"]
  if type(ct) == "table" then ct = ct[1] end
  if (ct and ct:find("[Jj][Ss][Oo][Nn]")) or body:find("^%s*[{%[]") then
    return (decode(body))
  end
  return nil
end

---------------------------------------------------------------------------------------------------
-- Secrets, the clock and the log hook

-- Every secret value this session has held: the client secret and the tokens (current, previous,
-- pending, stored). They are masked by exact value wherever text leaves the library (errors, field
-- errors, log lines); redaction.scrub's look-alike masking stays as the second net.
local MAX_REMEMBERED = 32
local function remember(p, t)
  if type(t) ~= "table" then return end
  for _, k in ipairs{ "access_token", "refresh_token" } do
    local v = t[k]
    if type(v) == "string" and v ~= "" and not p.known[v] then
      if #p.secrets > MAX_REMEMBERED then p.known[table.remove(p.secrets, 2)] = nil end -- [1] is the client secret
      p.secrets[#p.secrets + 1], p.known[v] = v, true
    end
  end
end

local function redact_string(p, s)
  return redaction.scrub(redaction.mask(s, p.secrets))
end

-- errors.new cuts a long message at 1 KiB before a session masks its secrets by value: a secret the
-- cut went through leaves its head before the "...", which no exact match finds: that head is cut too.
local function uncut(p, s)
  if #s < errors.MAX_MESSAGE then return s end
  return redaction.uncut(s, p.secrets)
end

-- Strings, and the text fields of an error (its message, field errors and cause), masked.
local function redact(p, v, depth)
  if type(v) == "string" then return redact_string(p, v) end
  if not errors.is(v) or (depth or 0) > 3 then return v end
  v.message = redact_string(p, uncut(p, v.message or ""))
  if type(v.oauth_error) == "string" then v.oauth_error = redact_string(p, v.oauth_error) end
  for _, fe in ipairs(type(v.errors) == "table" and v.errors or {}) do
    if type(fe) == "table" then
      for _, k in ipairs{ "field", "message", "value", "object" } do
        if type(fe[k]) == "string" then fe[k] = redact_string(p, fe[k]) end
      end
    end
  end
  if v.cause ~= nil then v.cause = redact(p, v.cause, (depth or 0) + 1) end
  if type(v.cause) == "table" and not errors.is(v.cause) then v.cause = nil end -- a hook's own value
  return v
end

-- The log hook runs on a coroutine of its own: an error, or a yield that would suspend the caller's
-- refresh forever, ends there. It sees string fields with the session's secrets masked.
function protected_log(p, hook, event)
  local clean = {}
  for k, v in pairs(event) do clean[k] = type(v) == "string" and redact_string(p, v) or v end
  coroutine.resume(coroutine.create(hook), clean)
end

-- A user clock that raises, yields or answers something other than a number must not cost a token:
-- the token answer is parsed with it, before save. It runs on a coroutine of its own; os.time()
-- stands in for a bad answer.
function safe_clock(f)
  if f == nil then return os.time end
  return function()
    local ok, v = coroutine.resume(coroutine.create(f))
    if ok and type(v) == "number" and v == v then return v end
    return os.time()
  end
end

-- The retry decorator with default options around a transport, one per transport while sessions use
-- it. Weak both ways: the decorator holds its transport, and LuaJIT's weak keys are no ephemerons.
local retried = setmetatable({}, { __mode = "kv" })
local function default_retry(t)
  local r = retried[t]
  if not r then
    r = require("freshbooks.retry").wrap(t, {})
    retried[t] = r
  end
  return r
end

---------------------------------------------------------------------------------------------------
-- Construction

function session.new(opts)
  if type(opts) ~= "table" then error("freshbooks.new: expected a table of options", 2) end
  for k in pairs(opts) do
    if not OPTIONS[k] then error("freshbooks.new: unknown option '" .. tostring(k) .. "'", 2) end
  end
  if type(opts.client_id) ~= "string" or opts.client_id == "" then
    error("freshbooks.new: client_id must be a non-empty string", 2)
  end
  if type(opts.client_secret) ~= "string" or opts.client_secret == "" then
    error("freshbooks.new: client_secret must be a non-empty string", 2)
  end

  -- Exactly one redirect URI is used, and it must be one of those configured.
  local redirect_uri = opts.redirect_uri
  if opts.redirect_uris ~= nil then
    local list = opts.redirect_uris
    if type(list) ~= "table" or #list == 0 then
      error("freshbooks.new: redirect_uris must be a non-empty array of strings", 2)
    end
    local found = 0
    for i, u in ipairs(list) do
      oauth.check_redirect_uri(u, "redirect_uris[" .. i .. "]")
      if u == redirect_uri then found = found + 1 end
    end
    if redirect_uri == nil then
      if #list > 1 then
        error("freshbooks.new: several redirect_uris: choose the one to use with redirect_uri", 2)
      end
      redirect_uri, found = list[1], 1
    end
    if type(redirect_uri) ~= "string" then error("freshbooks.new: redirect_uri must be a string", 2) end
    if found ~= 1 then
      error("freshbooks.new: redirect_uri must match exactly one of redirect_uris, character for character", 2)
    end
  end
  if redirect_uri == nil then error("freshbooks.new: redirect_uri is required", 2) end
  oauth.check_redirect_uri(redirect_uri)

  local store = opts.store
  if store ~= nil then
    if type(store) ~= "table" then error("freshbooks.new: store must be a table with load/save/lock", 2) end
    for _, k in ipairs{ "load", "save", "lock" } do
      if store[k] ~= nil and not is_callable(store[k]) then
        error("freshbooks.new: store." .. k .. " must be a function", 2)
      end
    end
  else
    store = {}
  end
  for _, k in ipairs{ "load", "save", "lock", "transport", "log", "clock", "sleep" } do
    if opts[k] ~= nil and not is_callable(opts[k]) then error("freshbooks.new: " .. k .. " must be a function", 2) end
  end
  local function number_opt(k, default, min)
    local v = opts[k]
    if v == nil then return default end
    if type(v) ~= "number" or v < min then error("freshbooks.new: " .. k .. " must be a number >= " .. min, 3) end
    return v
  end
  local timeout = number_opt("timeout", 60, 0)
  local leeway = number_opt("leeway", 60, 0)
  local scopes = opts.scopes
  if scopes ~= nil and type(scopes) ~= "table" and type(scopes) ~= "string" then
    error("freshbooks.new: scopes must be an array of strings or a space-separated string", 2)
  end
  if opts.retry ~= nil and opts.retry ~= false and type(opts.retry) ~= "table" then
    error("freshbooks.new: retry must be a table of options or false", 2)
  end
  local clock = safe_clock(opts.clock)
  local tokens = nil
  if opts.tokens ~= nil then
    tokens = normalise(opts.tokens, clock)
    if not tokens then
      error("freshbooks.new: tokens must be a table with an access_token and/or a refresh_token string", 2)
    end
  end

  -- The transport: the caller's, or the default (cosockets inside OpenResty, else the C core); then
  -- the retry decorator around it.
  local t = opts.transport
  local own_transport = t == nil
  if own_transport then
    t = transport.default{
      timeout = timeout, connect_timeout = opts.connect_timeout, cainfo = opts.cainfo, capath = opts.capath,
      proxy = opts.proxy, insecure_no_verify_tls = opts.insecure_no_verify_tls, user_agent = opts.user_agent,
      max_body = opts.max_body, pool_size = opts.pool_size, keepalive = opts.keepalive,
    }
  end
  -- Every log event of this session, its retries and token calls goes through one protected path.
  local p = { secrets = { opts.client_secret }, known = { [opts.client_secret] = true } }
  local user_log = opts.log
  p.log = user_log and function(event) protected_log(p, user_log, event) end
  local send = t
  if opts.retry ~= false then
    if opts.retry == nil and not user_log then
      send = default_retry(t) -- shared by the sessions of a shared transport: sessions stay small
    else
      local ropts = {}
      for k, v in pairs(opts.retry or {}) do ropts[k] = v end
      if ropts.log == nil then ropts.log = p.log end
      send = require("freshbooks.retry").wrap(t, ropts)
    end
  end

  local self = setmetatable({
    client_id = opts.client_id,
    redirect_uri = redirect_uri,
    api_url = check_base_url(opts.api_url or "https://api.freshbooks.com", "api_url"),
    auth_url = check_base_url(opts.auth_url or "https://auth.freshbooks.com", "auth_url"),
    leeway = leeway,
    timeout = timeout,
  }, Session)
  p.cfg = {
    client_id = opts.client_id, client_secret = opts.client_secret, redirect_uri = redirect_uri,
    api_url = self.api_url, auth_url = self.auth_url, scopes = scopes, timeout = timeout,
    clock = clock, send = send,
  }
  p.transport, p.send, p.secret_headers = t, send, own_transport
  -- Owner objects are held weakly: each holds its session (its resources do too, in resource.lua's
  -- weak-keyed table), and on LuaJIT and Lua 5.1, whose weak-keyed tables are no ephemerons, a strong
  -- cache here kept every session that ever made one alive for good.
  p.tokens, p.owners = tokens, setmetatable({}, { __mode = "v" })
  p.load, p.save, p.lock = opts.load or store.load, opts.save or store.save, opts.lock or store.lock
  -- Inside OpenResty, waiting must be ngx.sleep: an ngx request thread must never coroutine.yield.
  p.clock, p.sleep = clock, opts.sleep or (rawget(_G, "ngx") and ngx.sleep)
  remember(p, tokens)
  private[self] = p
  return self
end

function Session:__tostring()
  local p = private[self]
  local t = p and p.tokens
  return string.format("freshbooks.session(client_id=%s, authorized=%s%s)", self.client_id, tostring(t ~= nil),
    t and t.expires_at and (", expires_at=" .. string.format("%.0f", t.expires_at)) or "")
end

local function log(p, event)
  if p.log then p.log(event) end
end

---------------------------------------------------------------------------------------------------
-- Tokens: adopt, save, reload

local function due(self, p, t)
  if not t.access_token then return true end
  return t.expires_at ~= nil and p.clock() >= t.expires_at - self.leeway
end

-- Call a user hook (lock/load/save) that may raise or return nil, err; -> ok, value, err
local function call_hook(f, ...)
  local ok, v, err = pcall(f, ...)
  if not ok then return false, nil, v end
  if v == false or (v == nil and err ~= nil) then return false, nil, err end
  return true, v
end

-- save(new, previous) succeeds with true (or by returning nothing); any other answer is a failure,
-- so a store that says something unexpected never counts as having kept the only live token.
local function call_save(f, new, previous)
  local ok, v, err = call_hook(f, new, previous)
  if ok and v ~= nil and v ~= true then
    return false, nil, "save returned " .. type(v) .. ", not true"
  end
  return ok, v, err
end

local function hook_error(code, what, cause)
  local detail = errors.is(cause) and (cause.code .. ": " .. cause.message) or nil
  if not detail and type(cause) == "string" then detail = cause end
  return errors.new{ code = code, message = what .. (detail and (": " .. detail) or ""), cause = cause }
end

-- Hand new tokens to save before anything uses them. On failure they wait in `pending` (never used
-- unsaved, never dropped) and go back to the caller on the error. A fencing store (store.redis)
-- answers `conflict` when it holds newer tokens than those `new` was refreshed from (this holder's
-- lock expired while FreshBooks was slow): those are adopted, and `new` goes back on the error
-- instead of to `pending`, where it would only be refused again.
local function commit(p, new, previous)
  remember(p, new)
  if p.save then
    local ok, _, err = call_save(p.save, copy_tokens(new), copy_tokens(previous))
    if not ok then
      local e
      if errors.is(err) and err.code == "conflict" then
        p.pending = nil
        reload(p, true)
        e = hook_error("conflict", "the store holds newer tokens, now in use; this late pair was not saved"
          .. " (it is attached to this error)", err)
      else
        p.pending = new
        e = hook_error("save_failed", "could not save the new tokens (they are attached to this error)", err)
      end
      e.tokens = copy_tokens(new)
      return nil, e
    end
  end
  p.tokens, p.pending = new, nil
  return new
end

local function flush_pending(p)
  if not p.pending then return true end
  local ok, err = commit(p, p.pending, p.tokens)
  if not ok then return nil, err end
  log(p, { type = "refresh", outcome = "saved_pending", line = "saved pending tokens" })
  return true
end

-- Reload the store; adopt what it holds when it is another token pair at least as new as ours, or
-- (`any`) another pair whatever its expiry: once ours is refused or fenced out, expires_at says nothing
-- of which pair is newer (the token server's clock, or the lifetime it grants, may go back).
-- -> true when the in-memory tokens changed (false, err when load failed).
function reload(p, any)
  if not p.load then return false end
  local ok, stored, err = call_hook(p.load)
  if ok then -- a table that raises when read (a strict row object) is a failed load, never a raise here
    ok, stored = pcall(normalise, stored, p.clock)
    if not ok then stored, err = nil, "load returned a table that cannot be read" end
  end
  if not ok then
    local code = errors.is(err) and err.code or "error"
    log(p, { type = "load_failed", error = code, line = "token store load failed: " .. code })
    return false, hook_error(errors.is(err) and err.code ~= "load_failed" and err.code or "load_failed",
      "could not load the stored tokens", err)
  end
  if not stored or not stored.refresh_token then return false end
  remember(p, stored)
  local cur = p.tokens
  if cur and stored.refresh_token == cur.refresh_token then return false end
  if not any and cur and cur.expires_at and stored.expires_at and stored.expires_at < cur.expires_at then
    return false
  end
  p.tokens = stored
  return true
end

local function reauth(message, cause)
  return errors.new{ code = "reauth_required", message = message, status = cause and cause.status, cause = cause }
end

-- The token endpoint's request line, logged once its answer is saved (never before: a log hook must
-- not stand between FreshBooks' answer and save).
function log_token_call(p, what, err)
  if not p.log then return end
  local url = p.cfg.api_url .. "/auth/oauth/token"
  local outcome = err and (err.status or err.code) or "ok"
  log(p, { type = "request", method = "POST", url = url, status = err and err.status, error = err and err.code,
    grant = what, line = "POST " .. url .. " (" .. what .. ") -> " .. tostring(outcome) })
end

-- A token answer cut short that still held the new refresh token: save it like any rotation, and say
-- the refresh is uncertain, with the tokens attached.
function salvaged(p, rerr, previous, what)
  local tokens = rerr.salvaged
  rerr.salvaged = nil
  local saved, serr = commit(p, tokens, previous)
  log_token_call(p, what, rerr)
  log(p, { type = "refresh", outcome = saved and "salvaged" or "save_failed",
    line = "a cut-off token answer held the new refresh token" .. (saved and ": saved" or ": save failed") })
  if not saved then return nil, serr end
  return nil, errors.new{ code = "refresh_uncertain", status = rerr.status, cause = rerr, tokens = copy_tokens(tokens),
    message = "the token answer was cut short (" .. rerr.code .. "); the new refresh token it held was saved" }
end

-- The refresh itself, inside the lock. `seen` is the access token the caller judged stale.
local function refresh_locked(self, p, seen)
  local ok, err = flush_pending(p)
  if not ok then return nil, err end
  local adopted = reload(p)
  for attempt = 1, 2 do
    local cur = p.tokens
    if not cur or not cur.refresh_token then
      return nil, reauth("no refresh token: the user must authorize the application")
    end
    -- Someone (a coroutine, another process) already rotated past what the caller saw.
    if cur.access_token ~= seen and not due(self, p, cur) then
      if adopted then log(p, { type = "refresh", outcome = "adopted", line = "adopted tokens rotated elsewhere" }) end
      return cur
    end
    local new, rerr = oauth.refresh(p.cfg, cur.refresh_token)
    if new then
      local saved, serr = commit(p, new, cur) -- before any log hook: the answer is in save's hands
      log_token_call(p, "refresh", nil)
      local conflict = not saved and serr.code == "conflict"
      log(p, { type = "refresh", outcome = saved and "refreshed" or (conflict and "conflict" or "save_failed"),
        line = saved and "refreshed tokens" or (conflict and "refreshed tokens, the store held newer ones"
          or "refreshed tokens, save failed") })
      return saved, serr
    end
    if rerr.salvaged then return salvaged(p, rerr, cur, "refresh") end
    log_token_call(p, "refresh", rerr)
    local stale = rerr.code == "invalid_grant"
    if not stale and not rerr.ambiguous then return nil, rerr end
    -- Never spend the same refresh token twice: go round again only with a different stored one
    -- (after invalid_grant, any: ours is dead).
    adopted = attempt == 1 and reload(p, stale)
    if not adopted then
      log(p, { type = "refresh", outcome = stale and "reauth_required" or "refresh_uncertain",
        line = "refresh failed: " .. rerr.code })
      if stale then
        return nil, reauth("the refresh token was refused (invalid_grant): the user must authorize again", rerr)
      end
      return nil, errors.new{ code = "refresh_uncertain", status = rerr.status, cause = rerr,
        message = "the refresh may have reached FreshBooks (" .. rerr.code .. ") and no newer tokens are stored;"
          .. " the stored refresh token was kept" }
    end
  end
  return p.tokens
end

-- Run f(...) -> value, err inside the user's lock (when there is one), released whatever happens.
local function with_lock(p, f, ...)
  local handle
  if p.lock then
    local ok, h, err = call_hook(p.lock)
    if not ok or not h then return nil, hook_error("lock_failed", "could not take the token lock", err) end
    handle = h
  end
  local ok, v, err = pcall(f, ...)
  if handle then -- whatever the handle is, releasing it cannot cost what f returned
    pcall(function()
      if type(handle) == "function" then handle() else handle:unlock() end
    end)
  end
  if not ok then error(v, 0) end
  return v, err
end

local function refresh_with_lock(self, p, seen)
  return with_lock(p, refresh_locked, self, p, seen)
end

-- Single flight: callers arriving while a refresh runs wait for it and share its outcome.
local function wait(p)
  if p.sleep then return (pcall(p.sleep, 0.005)) end
  if coroutine.isyieldable and coroutine.isyieldable() then coroutine.yield() return true end
  return false
end

-- The flight's coroutine is held weakly: one that is dropped mid-refresh (an nginx request aborted
-- while its token call was on the wire, a killed thread) is collected, with the lock it held.
local WEAK = { __mode = "v" }
local function refresh(self, seen)
  local p = private[self]
  local f = p.flight
  local me = coroutine.running() or "main" -- (Lua 5.1's main thread is nil)
  if f then
    -- The refresh's own coroutine (a save, load or lock hook calling the session): waiting for the
    -- refresh it is part of would never end.
    if f.co[1] == me then
      return nil, errors.new{ code = "refresh_in_progress",
        message = "the session was called from a hook of its own refresh (save, load, lock, transport)" }
    end
    -- A flight whose coroutine is gone, or that outlived the longest a refresh takes, never ends:
    -- this caller takes over with a flight of its own, as a later call does after refresh_uncertain.
    local started = core.now()
    local give_up = started + 2 * self.timeout + 60
    while not f.done do
      -- find a dropped one now, not at the collector's leisure: once per flight, however many wait
      if not f.collected and core.now() > started + 1 then
        f.collected = true
        collectgarbage()
      end
      if f.co[1] == nil or core.now() > give_up then
        if p.flight == f then p.flight = nil end
        log(p, { type = "refresh", outcome = "abandoned", line = "took over a refresh that never ended" })
        return refresh(self, seen)
      end
      if not wait(p) then
        return nil, errors.new{ code = "refresh_in_progress",
          message = "a refresh is running in another coroutine and this caller cannot yield to wait for it" }
      end
    end
    if not f.tokens then return nil, f.err end
    return f.tokens
  end
  f = { co = setmetatable({ me }, WEAK) }
  p.flight = f
  local ok, t, err = pcall(refresh_with_lock, self, p, seen)
  if p.flight == f then p.flight = nil end -- (one taken over is no longer ours to clear)
  f.done = true
  if not ok then
    f.err = errors.new{ code = "internal", message = "refresh raised an error" }
    error(t, 0)
  end
  f.tokens, f.err = t, err
  return t, err
end

-- Tokens ready to use: pending saved, loaded when absent, refreshed when due.
local function ensure(self)
  local p = private[self]
  -- Unsaved tokens are saved through the refresh path, inside the lock, before anything uses them.
  if p.pending then return refresh(self, p.tokens and p.tokens.access_token) end
  local _, lerr
  if not p.tokens then _, lerr = reload(p) end
  local t = p.tokens
  if not t then return nil, lerr or reauth("not authorized yet: no tokens (run the authorization flow first)") end
  if due(self, p, t) then return refresh(self, t.access_token) end
  return t
end

---------------------------------------------------------------------------------------------------
-- Public token API

-- Force a refresh (unless the tokens already changed since the call began). -> true | nil, err
function Session:refresh()
  local p = private[self]
  if not p.tokens then reload(p) end
  local t, err = refresh(self, p.tokens and p.tokens.access_token)
  if not t then return nil, redact(p, err) end
  return true
end

-- A copy of the current tokens (for callers that persist them their own way), or nil.
function Session:tokens()
  return copy_tokens(private[self].tokens)
end

-- Whether the session holds tokens, or its store does.
function Session:authorized()
  local p = private[self]
  if not p.tokens then reload(p) end
  return p.tokens ~= nil
end

-- fb:redact(s [, exact]) -> s with this session's secrets (client secret, every token it has held)
-- masked, and anything else that looks like a token: for host applications' own logs and for guest
-- scripts. With `exact`, the secrets only: for data, where the look of a token is a UUID's too.
function Session:redact(s, exact)
  if type(s) ~= "string" then error("freshbooks: redact: string expected, got " .. type(s), 2) end
  if exact then return redaction.mask(s, private[self].secrets) end
  return redact_string(private[self], s)
end

-- local url, state = fb:authorize_url{ scopes = {...}, state = optional }
function Session:authorize_url(opts)
  return oauth.authorize_url(private[self].cfg, opts)
end

-- Exchange an authorization code; the tokens go through save like every rotation. -> true | nil, err
function Session:exchange(code)
  if type(code) ~= "string" or code == "" then error("freshbooks: exchange: code must be a non-empty string", 2) end
  local p = private[self]
  local saved, err = with_lock(p, function()
    -- A new grant replaces whatever is stored: it has no previous pair to fence against.
    local new, xerr = oauth.exchange(p.cfg, code)
    if not new then
      if xerr.salvaged then return salvaged(p, xerr, nil, "authorization_code") end
      log_token_call(p, "authorization_code", xerr)
      return nil, xerr
    end
    local ok, serr = commit(p, new, nil)
    log_token_call(p, "authorization_code", nil)
    return ok, serr
  end)
  if not saved then return nil, redact(p, err) end
  p.me = nil
  log(p, { type = "exchange", line = "exchanged an authorization code" })
  return true
end

-- fb:authorize_callback(query_string_or_table, expected_state) -> true | nil, err
function Session:authorize_callback(callback, expected_state)
  local code, err = oauth.check_callback(oauth.parse_callback(callback), expected_state)
  if not code then return nil, redact(private[self], err) end
  return self:exchange(code)
end

-- Revoke the grant (the refresh token, else the access token). The store is left as is.
function Session:revoke()
  local p = private[self]
  if not p.tokens then reload(p) end
  -- A pair waiting unsaved is the newest: it holds the only live refresh token, the one to revoke
  -- (revoking the spent one left the grant alive, and the pair was saved and used afterwards).
  local t = p.pending or p.tokens
  if not t then return nil, reauth("no tokens to revoke") end
  local ok, err = oauth.revoke(p.cfg, t.refresh_token or t.access_token)
  if not ok then return nil, redact(p, err) end
  p.tokens, p.pending, p.me = nil, nil, nil
  return true
end

---------------------------------------------------------------------------------------------------
-- Requests

local function check_request(req, where)
  local function bad(msg) error("freshbooks: " .. where .. ": " .. msg, 4) end
  if type(req) ~= "table" then bad("expected a request table") end
  if type(req.path) ~= "string" or req.path == "" then bad("path must be a string") end
  if req.method ~= nil and type(req.method) ~= "string" then bad("method must be a string") end
  if req.query ~= nil and type(req.query) ~= "string" and type(req.query) ~= "table" then
    bad("query must be a string or a table")
  end
  if req.body ~= nil and type(req.body) ~= "string" then bad("body must be a string") end
  if req.json ~= nil and req.body ~= nil then bad("give json or body, not both") end
  if req.headers ~= nil and type(req.headers) ~= "table" then bad("headers must be a table") end
  if req.timeout ~= nil and type(req.timeout) ~= "number" then bad("timeout must be a number") end
end

local function bearer(p, t)
  if p.bearer_for ~= t.access_token then
    local value = "Bearer " .. t.access_token
    -- With our own curl transport the header travels as an opaque C secret.
    if p.secret_headers then
      value = core.secret(value)
    end
    p.bearer, p.bearer_for = value, t.access_token
  end
  return p.bearer
end

-- A user request -> the transport's request, plus a redacted line for the log hook.
local function build(self, p, req, t)
  local url = self.api_url .. (req.path:byte(1) == 47 and "" or "/") .. req.path -- 47: "/"
  local q = req.query
  -- One query path: a table is rendered in FreshBooks' vocabulary as resources render it.
  if type(q) == "table" then q = query.render(query.family_of(req.path), q) end
  if q and q ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. q end
  local body = req.body
  if req.json ~= nil then
    local err
    body, err = cjson.encode(req.json)
    if not body then error("freshbooks: request: json cannot be encoded: " .. tostring(err), 4) end
  end
  -- Content-Type only with a body: FreshBooks' project pages say to leave it out of GET calls.
  -- Without caller headers the two sets are built once per access token (transports only read them).
  local auth = bearer(p, t)
  local headers
  if req.headers == nil then
    if p.headers_for ~= auth then p.headers_for, p.plain_headers, p.body_headers = auth, nil, nil end
    if body == nil then
      headers = p.plain_headers or { Authorization = auth, ["Api-Version"] = "alpha" }
      p.plain_headers = headers
    else
      headers = p.body_headers
        or { Authorization = auth, ["Api-Version"] = "alpha", ["Content-Type"] = "application/json" }
      p.body_headers = headers
    end
  else
    headers = { Authorization = auth, ["Api-Version"] = "alpha",
      ["Content-Type"] = body ~= nil and "application/json" or nil }
    for k, v in pairs(req.headers) do
      -- Caller's headers win, compared case-insensitively (e.g. a multipart Content-Type).
      for have in pairs(headers) do
        if have:lower() == tostring(k):lower() then headers[have] = nil end
      end
      headers[k] = v
    end
  end
  local method = req.method
  return { method = method and method:upper() or "GET", url = url, headers = headers, body = body,
    timeout = req.timeout or self.timeout, idempotent = req.idempotent }
end

-- Decode and judge one response: res (with .data) or nil, err.
local function finish(res)
  res.data = decode_body(res)
  local err = errors.from_response(res)
  if err then return nil, err end
  return res
end

-- The log hook sees method, URL and outcome only: never headers or bodies (tokens live there).
local function log_request(p, treq, res, err)
  if not p.log then return end
  local outcome = res and res.status or (err and err.code) or "?"
  log(p, { type = "request", method = treq.method, url = treq.url, status = res and res.status,
    error = err and err.code, line = treq.method .. " " .. treq.url .. " -> " .. outcome })
end

local function send(p, treq)
  local res, err = p.send(treq)
  if not res and not errors.is(err) then err = errors.from_core(err) end
  log_request(p, treq, res, err)
  return res, err
end

-- fb:request{method, path, query, json, body, headers, timeout} -> res | nil, err
local function request(self, p, req)
  local t, err = ensure(self)
  if not t then return nil, err end
  local res
  res, err = send(p, build(self, p, req, t))
  if res and res.status == 401 then
    -- The token died early (revoked, server clock): refresh once, retry once.
    t, err = refresh(self, t.access_token)
    if not t then return nil, err end
    res, err = send(p, build(self, p, req, t))
  end
  if not res then return nil, err end
  return finish(res)
end

function Session:request(req)
  check_request(req, "request")
  local p = private[self]
  local res, err = request(self, p, req)
  if not res then return nil, redact(p, err) end
  return res
end

local function batch_transport(p)
  local s = p.send
  if type(s) == "table" and s.batch then return s end
  return p.transport
end

-- fb:batch(reqs, opts) -> { {res =, err =}, ... } in order (opts.concurrency for the transport).
function Session:batch(reqs, opts)
  if type(reqs) ~= "table" then error("freshbooks: batch: expected an array of request tables", 2) end
  for i, req in ipairs(reqs) do check_request(req, "batch[" .. i .. "]") end
  local p = private[self]
  local out = {}
  local t, err = ensure(self)
  if not t then
    err = redact(p, err)
    for i = 1, #reqs do out[i] = { err = err } end
    return out
  end
  local function run(idx, tokens)
    local treqs = {}
    for j, i in ipairs(idx) do treqs[j] = build(self, p, reqs[i], tokens) end
    local results = transport.batch(batch_transport(p), treqs, opts)
    for j, i in ipairs(idx) do
      local r = results[j] or {}
      if r.err and not errors.is(r.err) then r.err = errors.from_core(r.err) end
      log_request(p, treqs[j], r.res, r.err)
      out[i] = r
    end
  end
  local all = {}
  for i = 1, #reqs do all[i] = i end
  run(all, t)
  local again = {}
  for i = 1, #reqs do
    if out[i].res and out[i].res.status == 401 then again[#again + 1] = i end
  end
  if #again > 0 then
    local t2, rerr = refresh(self, t.access_token)
    if t2 then
      run(again, t2)
    else
      for _, i in ipairs(again) do out[i] = { err = rerr } end
    end
  end
  for i = 1, #reqs do
    local r = out[i]
    if r.res then
      local res, ferr = finish(r.res)
      out[i] = { res = res, err = ferr }
    end
    if out[i].err then out[i].err = redact(p, out[i].err) end
  end
  return out
end

-- fb:stream{concurrency = n} -> stream | nil, err: s.add(req) -> id (checked now: a bad request
-- raises), s.next() -> id, res, err as each completes (nil once nothing is left), s.close().
-- Requests carry the current tokens; a 401 refreshes once and sends that request again; retries
-- come from the retry layer's stream. Results are judged like fb:request's.
function Session:stream(opts)
  local p = private[self]
  local inner, serr = transport.stream(p.send, opts)
  if not inner then return nil, redact(p, serr) end
  local reqs, seen, built, outer_of, failed, again = {}, {}, {}, {}, {}, {}
  local ids = 0
  local s = {}
  local function forget(id) reqs[id], seen[id], again[id] = nil, nil, nil end
  local function submit(id, t)
    local treq = build(self, p, reqs[id], t)
    local iid = inner.add(treq)
    outer_of[iid], built[iid], seen[id] = id, treq, t.access_token
  end
  function s.add(req)
    check_request(req, "stream:add")
    ids = ids + 1
    reqs[ids] = req
    local t, err = ensure(self)
    if t then submit(ids, t) else failed[#failed + 1] = { ids, err } end
    return ids
  end
  function s.next()
    local f = table.remove(failed, 1)
    if f then forget(f[1]) return f[1], nil, redact(p, f[2]) end
    while true do
      local iid, res, err = inner.next()
      if not iid then return nil end
      local id, treq = outer_of[iid], built[iid]
      outer_of[iid], built[iid] = nil, nil
      if not res and not errors.is(err) then err = errors.from_core(err) end
      log_request(p, treq, res, err)
      if res and res.status == 401 and not again[id] then
        -- the token died early: refresh once (one refresh for all of them), send this one again
        again[id] = true
        local t, rerr = refresh(self, seen[id])
        if not t then forget(id) return id, nil, redact(p, rerr) end
        submit(id, t)
      else
        forget(id)
        if not res then return id, nil, redact(p, err) end
        local ok, ferr = finish(res)
        if not ok then return id, nil, redact(p, ferr) end
        return id, ok
      end
    end
  end
  s.close = inner.close
  return s
end

---------------------------------------------------------------------------------------------------
-- Resources (resource.lua) and identity (identity.lua)

-- One object per owner (account, business, accounting business) and session: building one makes an
-- object per catalogue entry.
local function owner(self, kind, id)
  local p = private[self]
  local key = kind .. ":" .. tostring(id)
  local o = p.owners[key]
  if not o then
    o = require("freshbooks.resource")[kind](self, id)
    p.owners[key] = o
  end
  return o
end
function Session:account(id) return owner(self, "account", id) end
function Session:business(id) return owner(self, "business", id) end
function Session:accounting_business(uuid) return owner(self, "accounting_business", uuid) end

-- identity.lua keeps its cache in the session's private state, reached through this function only
-- (nothing public hands out the private table: it holds the client secret and the tokens).
require("freshbooks.identity").install(Session, function(self) return private[self] end)

session.Session = Session
session.is_callable = is_callable -- the one test of "a function or a callable table" (stores, connections)
return session
