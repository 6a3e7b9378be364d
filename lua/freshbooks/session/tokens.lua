-- A session's token state machine. Refresh tokens are single use and only the newest is alive, so
-- every rule here protects the newest:
--   * rotation: every token answer goes to save(new, previous) before its access token is used, and
--     before any other user code (a log hook, a user clock) runs; a pair save did not take waits as
--     the pending pair (never used unsaved, never dropped) and goes back to the caller on the error;
--   * one refresh at a time per session: coroutines join the running one (single flight); across
--     processes the refresh runs inside lock(), after reloading the store, and tokens another process
--     already rotated are adopted instead of refreshed;
--   * the lock outlives the token call: a handle with `extend` is extended over the whole call before
--     it (else a second holder could spend the same refresh token while FreshBooks still answers the
--     first), and checked again once the answer is in;
--   * invalid_grant reloads once, and while the lock says a holder that lost it may still store a
--     newer pair (`contested`), keeps reading the store until then: reauth_required only when the grant
--     is gone; a refresh token refused so is never sent again. A failure that may have reached the
--     server is never retried with the same refresh token; stored credentials are never wiped;
--   * an access token that cannot travel in an HTTP header (a control character) is never sent: its
--     pair is saved like any other, then counts as due, and the call that got it says bad_token_response;
--   * a fencing store (store.redis) that answers `conflict` holds newer tokens: they are adopted, and
--     the refused pair goes back on the error (not kept pending, where it would only be refused again).
-- `p` is a session's private state (session.lua): app, tokens, pending, flight, load/save/lock, log.
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local oauth = require "freshbooks.oauth"
local secrets = require "freshbooks.session.secrets"

local core -- the C core's clock, loaded with the first refresh
local tokens = {}

local copy = oauth.copy
local function log(p, event) if p.log then secrets.log(p, event) end end

-- A token table given or loaded -> the pair the session keeps: expires_at from created_at +
-- expires_in when missing. nil when it holds no usable token.
function tokens.normalise(t, clock)
  if type(t) ~= "table" then return nil end
  local c = copy(t)
  if type(c.access_token) ~= "string" or c.access_token == "" then c.access_token = nil end
  if type(c.refresh_token) ~= "string" or c.refresh_token == "" then c.refresh_token = nil end
  if not c.access_token and not c.refresh_token then return nil end
  c.expires_in, c.created_at = tonumber(c.expires_in), tonumber(c.created_at)
  c.expires_at = oauth.expires_at(c.expires_at, c.expires_in, c.created_at, clock())
  return c
end

-- The current pair is replaced: the one leaving stays masked in what the session shows.
local function set(p, t)
  if p.tokens and p.tokens ~= t then secrets.remember(p, p.tokens) end
  p.tokens = t
end

---------------------------------------------------------------------------------------------------
-- The pending pair: issued by FreshBooks, not yet accepted by save. Its one home, so that where it
-- is kept can change (a pair that must survive its worker) without touching the rules above.

local pending = {}
function pending.get(p) return p.pending end
function pending.put(p, t) secrets.remember(p, t) p.pending = t end
function pending.clear(p) p.pending = nil end
tokens.pending = pending

---------------------------------------------------------------------------------------------------
-- User hooks

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
  -- the cause's code only where it says something the error's own does not (each thing said once)
  local detail = errors.is(cause) and (cause.code == code and cause.message or cause.code .. ": " .. cause.message)
    or nil
  if not detail and type(cause) == "string" then detail = cause end
  return errors.new{ code = code, message = what .. (detail and (": " .. detail) or ""), cause = cause }
end

local function reauth(message, cause)
  return errors.new{ code = "reauth_required", message = message, status = cause and cause.status, cause = cause }
end
tokens.reauth = reauth

-- Run f(handle, ...) -> value, err inside the user's lock (when there is one), released whatever
-- happens.
local function with_lock(p, f, ...)
  local handle
  if p.lock then
    local ok, h, err = call_hook(p.lock)
    if not ok or not h then return nil, hook_error("lock_failed", "could not take the token lock", err) end
    handle = h
  end
  local ok, v, err = pcall(f, handle, ...)
  if handle then -- whatever the handle is, releasing it cannot cost what f returned
    -- (true: a pair waits unsaved; the next holder must not take a refused token for a lost grant)
    local unsaved = pending.get(p) ~= nil
    pcall(function()
      if type(handle) == "function" then handle() else handle:unlock(unsaved) end
    end)
  end
  if not ok then error(v, 0) end
  return v, err
end

-- A method of the lock handle when it has one (a handle may also be a bare unlock function, or the
-- file store's userdata) -> its answer | nil, err; `absent` when the handle has no such method.
local function handle_call(handle, name, ...)
  local found, f = pcall(function() return handle[name] end)
  if not found or f == nil then return "absent" end
  local ok, v, err = pcall(f, handle, ...)
  if not ok then return nil, v end
  if v == nil or v == false then return nil, err end
  return v
end

-- The longest a token call may take: the session's timeout, or the retry decorator's deadline when it
-- is longer (a 429 is waited out and sent again), and a margin.
local function call_span(p)
  local send = p.send or p.app.send
  local cfg = type(send) == "table" and rawget(send, "cfg")
  local deadline = type(cfg) == "table" and tonumber(cfg.deadline) or 0
  return math.max(p.app.timeout, deadline, 1) + 2
end

-- Before a token call: the lock covers it whole. -> true | nil, lock_failed
local function cover(p, handle)
  if not handle then return true end
  local ok, err = handle_call(handle, "extend", call_span(p))
  if ok then return true end
  return nil, hook_error("lock_failed", "could not extend the token lock over the token call", err)
end

---------------------------------------------------------------------------------------------------
-- Adopt, save, reload

-- What HTTP cannot carry in a header (the C core and the cosockets refuse it): never sent.
local function sendable(token) return not token:find("[%z\1-\31\127]") end

local function due(p, t)
  if not t.access_token or not sendable(t.access_token) then return true end
  return t.expires_at ~= nil and p.app.clock() >= t.expires_at - p.app.leeway
end

-- Reload the store; adopt what it holds when it is another token pair at least as new as ours, or
-- (`any`) another pair whatever its expiry: once ours is refused or fenced out, expires_at says nothing
-- of which pair is newer (the token server's clock, or the lifetime it grants, may go back).
-- -> true when the in-memory tokens changed (false, err when load failed).
local function reload(p, any)
  if not p.load then return false end
  local ok, stored, err = call_hook(p.load)
  if ok then -- a table that raises when read (a strict row object) is a failed load, never a raise here
    ok, stored = pcall(tokens.normalise, stored, p.app.clock)
    if not ok then stored, err = nil, "load returned a table that cannot be read" end
  end
  if not ok then
    local code = errors.is(err) and err.code or "error"
    log(p, { type = "load_failed", error = code, line = "token store load failed: " .. code })
    return false, hook_error(errors.is(err) and err.code ~= "load_failed" and err.code or "load_failed",
      "could not load the stored tokens", err)
  end
  if not stored or not stored.refresh_token then return false end
  secrets.remember(p, stored)
  local cur = p.tokens
  if cur and stored.refresh_token == cur.refresh_token then return false end
  if not any and cur and cur.expires_at and stored.expires_at and stored.expires_at < cur.expires_at then
    return false
  end
  set(p, stored)
  return true
end
tokens.reload = reload

-- Hand new tokens to save before anything uses them. -> new | nil, err (save_failed: kept pending;
-- conflict: the store's newer pair adopted). Either way err.tokens is the pair.
local function commit(p, new, previous)
  secrets.remember(p, new)
  if p.save then
    local ok, _, err = call_save(p.save, copy(new), copy(previous))
    if not ok then
      local e
      if errors.is(err) and err.code == "conflict" then
        pending.clear(p)
        reload(p, true)
        e = hook_error("conflict", "the store holds newer tokens, now in use; this late pair was not saved"
          .. " (it is attached to this error)", err)
      else
        pending.put(p, new)
        e = hook_error("save_failed", "could not save the new tokens (they are attached to this error)", err)
      end
      e.tokens = copy(new)
      return nil, e
    end
  end
  set(p, new)
  pending.clear(p)
  return new
end

-- The pending pair, offered to save again. A store that answers conflict holds a newer pair (another
-- process wrote this one back from the node's pending place and rotated it since): that one is adopted
-- and the call goes on with it.
local function flush_pending(p)
  local t = pending.get(p)
  if not t then return true end
  local ok, err = commit(p, t, p.tokens)
  if not ok and err.code ~= "conflict" then return nil, err end
  log(p, { type = "refresh", outcome = ok and "saved_pending" or "pending_superseded",
    line = ok and "saved pending tokens" or "pending tokens superseded by newer stored ones" })
  return true
end

-- The token endpoint's request line, logged once its answer is saved (never before: a log hook must
-- not stand between FreshBooks' answer and save).
local function log_token_call(p, what, err)
  if not p.log then return end
  local url = p.app.api_url .. "/auth/oauth/token"
  local outcome = err and (err.status or err.code) or "ok"
  log(p, { type = "request", method = "POST", url = url, status = err and err.status, error = err and err.code,
    grant = what, line = "POST " .. url .. " (" .. what .. ") -> " .. tostring(outcome) })
end

-- A token answer cut short that still held the new refresh token: save it like any rotation, and say
-- the refresh is uncertain, with the tokens attached.
local function salvaged(p, rerr, previous, what)
  local t = rerr.salvaged
  rerr.salvaged = nil
  local saved, serr = commit(p, t, previous)
  log_token_call(p, what, rerr)
  log(p, { type = "refresh", outcome = saved and "salvaged" or "save_failed",
    line = "a cut-off token answer held the new refresh token" .. (saved and ": saved" or ": save failed") })
  if not saved then return nil, serr end
  return nil, errors.new{ code = "refresh_uncertain", status = rerr.status, cause = rerr, tokens = copy(t),
    message = "the token answer was cut short (" .. rerr.code .. "); the new refresh token it held was saved" }
end

---------------------------------------------------------------------------------------------------
-- Refresh

-- After invalid_grant with no newer pair stored: while the lock says a holder that lost it may still
-- store the pair it got (`contested`: its lock lapsed unreleased, or Redis was found wiped), read the
-- store again, keeping the lock. -> true once a newer pair was adopted.
local function await_late_pair(p, handle)
  if not handle then return false end
  local adopted, lerr
  local window = handle_call(handle, "contested")
  if type(window) ~= "number" or window <= 0 then return false end
  core = core or require "freshbooks.core"
  local now, sleep = core.clock.now, p.app.sleep or env.sleep
  local deadline = now() + math.min(window, call_span(p) + 10)
  log(p, { type = "refresh", outcome = "awaiting", line = ("refresh token refused while the lock was contested:"
    .. " reading the store for %.1f s"):format(deadline - now()) })
  while now() < deadline do
    -- renewed a little at a time: an extension is also what a lock says a token call may take
    -- (store.redis's contested window after a wipe grows with it)
    handle_call(handle, "extend", 2)
    pcall(sleep, 0.1)
    adopted, lerr = reload(p, true)
    if adopted then return true end
  end
  return false, lerr
end

-- A pair whose access token cannot be sent was saved; the call that got it fails with a code.
local function unsendable()
  return errors.new{ code = "bad_token_response", message = "the token endpoint issued an access token that"
    .. " cannot be sent in an HTTP header (it holds a control character); the pair was saved" }
end

-- The refresh itself, inside the lock. `seen` is the access token the caller judged stale.
local function refresh_locked(handle, p, seen)
  local ok, err = flush_pending(p)
  if not ok then return nil, err end
  local adopted = reload(p)
  for attempt = 1, 2 do
    local cur = p.tokens
    if not cur or not cur.refresh_token then
      return nil, reauth("no refresh token: the user must authorize the application")
    end
    -- Someone (a coroutine, another process) already rotated past what the caller saw.
    if cur.access_token ~= seen and not due(p, cur) then
      if adopted then log(p, { type = "refresh", outcome = "adopted", line = "adopted tokens rotated elsewhere" }) end
      return cur
    end
    local covered, cerr = cover(p, handle)
    if not covered then return nil, cerr end
    local new, rerr = oauth.refresh(p.app, p.send or p.app.send, cur.refresh_token)
    if new then
      local saved, serr = commit(p, new, cur) -- before any log hook: the answer is in save's hands
      log_token_call(p, "refresh", nil)
      local conflict = not saved and serr.code == "conflict"
      log(p, { type = "refresh", outcome = saved and "refreshed" or (conflict and "conflict" or "save_failed"),
        line = saved and "refreshed tokens" or (conflict and "refreshed tokens, the store held newer ones"
          or "refreshed tokens, save failed") })
      if saved and not sendable(saved.access_token) then return nil, unsendable() end
      return saved, serr
    end
    if rerr.salvaged then return salvaged(p, rerr, cur, "refresh") end
    log_token_call(p, "refresh", rerr)
    local stale = rerr.code == "invalid_grant"
    if not stale and not rerr.ambiguous then return nil, rerr end
    -- Never spend the same refresh token twice: go round again only with a different stored one
    -- (after invalid_grant, any: ours is dead).
    local lerr
    adopted = false
    if attempt == 1 then
      adopted, lerr = reload(p, stale)
      if not adopted and stale and not lerr then adopted, lerr = await_late_pair(p, handle) end
    end
    -- A store that could not be read cannot say whether a newer pair is there: no verdict on the grant.
    if not adopted and stale and lerr then
      log(p, { type = "refresh", outcome = "load_failed", line = "refresh failed: invalid_grant, and the store"
        .. " could not be read" })
      return nil, errors.new{ code = lerr.code, cause = lerr, status = lerr.status, message = "the refresh token"
        .. " was refused (invalid_grant), and the store, which may hold newer tokens, could not be read ("
        .. lerr.message .. ")" }
    end
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

-- What a driver of many requests (pipeline.lua) resumes a waiting request with when its own caller
-- cannot yield: the wait fails as it would have there.
tokens.CANNOT_WAIT = setmetatable({}, { __tostring = function() return "freshbooks: cannot wait here" end })

-- Waiting for a refresh another coroutine runs: nginx's sleep or the session's, else a yield to the
-- caller's scheduler; false when this caller can do neither.
local function wait(p)
  local sleep = p.app.sleep
  if sleep then return (pcall(sleep, 0.005)) end
  if coroutine.isyieldable and coroutine.isyieldable() then return coroutine.yield() ~= tokens.CANNOT_WAIT end
  return false
end

-- tokens.refresh(p, seen) -> tokens | nil, err: a refresh unless the tokens changed since the caller
-- saw `seen` (its access token). Single flight: callers arriving while a refresh runs wait for it and
-- share its outcome. The flight's coroutine is held weakly: one dropped mid-refresh (an nginx request
-- aborted while its token call was on the wire, a killed thread) is collected, with the lock it held.
local WEAK = { __mode = "v" }
function tokens.refresh(p, seen)
  local cur = p.tokens
  -- Rotated already (by the first of several requests that met a 401): nothing to wait for.
  if cur and seen and cur.access_token ~= seen and not p.pending and not p.flight and not due(p, cur) then
    return cur
  end
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
    core = core or require "freshbooks.core"
    local started = core.clock.now()
    local give_up = started + 2 * p.app.timeout + 60
    while not f.done do
      -- find a dropped one now, not at the collector's leisure: once per flight, however many wait
      if not f.collected and core.clock.now() > started + 1 then
        f.collected = true
        collectgarbage()
      end
      if f.co[1] == nil or core.clock.now() > give_up then
        if p.flight == f then p.flight = nil end
        log(p, { type = "refresh", outcome = "abandoned", line = "took over a refresh that never ended" })
        return tokens.refresh(p, seen)
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
  -- The pending pair is offered before the lock too (the save is fenced): another process may hold
  -- the lock waiting for exactly this pair (the refresh token it spent was this pair's previous).
  local ok, t, err = pcall(flush_pending, p)
  if ok then ok, t, err = pcall(with_lock, p, refresh_locked, p, seen) end
  if p.flight == f then p.flight = nil end -- (one taken over is no longer ours to clear)
  f.done = true
  if not ok then
    f.err = errors.new{ code = "internal", message = "refresh raised an error" }
    error(t, 0)
  end
  f.tokens, f.err = t, err
  return t, err
end

-- tokens.ensure(p) -> tokens ready to use | nil, err: pending saved, loaded when absent, refreshed
-- when due.
function tokens.ensure(p)
  -- Unsaved tokens are saved through the refresh path, inside the lock, before anything uses them.
  if p.pending then return tokens.refresh(p, p.tokens and p.tokens.access_token) end
  local _, lerr
  if not p.tokens then _, lerr = reload(p) end
  local t = p.tokens
  if not t then return nil, lerr or reauth("not authorized yet: no tokens (run the authorization flow first)") end
  if due(p, t) then return tokens.refresh(p, t.access_token) end
  return t
end

-- tokens.exchange(p, code) -> true | nil, err: a new grant replaces whatever is stored (it has no
-- previous pair to fence against); its tokens go through save like every rotation.
function tokens.exchange(p, code)
  return with_lock(p, function(handle)
    local covered, cerr = cover(p, handle)
    if not covered then return nil, cerr end
    local new, xerr = oauth.exchange(p.app, p.send or p.app.send, code)
    if not new then
      if xerr.salvaged then return salvaged(p, xerr, nil, "authorization_code") end
      log_token_call(p, "authorization_code", xerr)
      return nil, xerr
    end
    local ok, serr = commit(p, new, nil)
    log_token_call(p, "authorization_code", nil)
    return ok, serr
  end)
end

-- tokens.forget(p): after a revoke, nothing is held in memory (the store is left as is).
function tokens.forget(p)
  set(p, nil)
  if p.pending then secrets.remember(p, p.pending) end
  pending.clear(p)
end

return tokens
