-- Many FreshBooks connections in one program: one app (client id/secret, redirect URI), one store per
-- connection (freshbooks.store.redis.keyspace), and a bounded LRU of live sessions per process or
-- nginx worker. A connection id is the program's own name for it (a signed-in user, a customer).
--
--   local conns = freshbooks.connections{
--     app = { client_id =, client_secret =, redirect_uri =, ... },   -- any freshbooks.new option but the token hooks
--     store = freshbooks.store.redis.keyspace{ redis = factory },     -- function(connection_id) -> store
--     max_sessions = 1000, state_ttl = 600,
--   }
--   conns:session(id) -> fb; conns:connect_url(id, {scopes}) -> url, state; conns:callback(id, query, state)
--   conns:status(id) -> {connected, reauth_required, last_refresh, scopes, businesses, ...}; conns:list() -> ids
--   conns:disconnect(id) -> true (revoked at FreshBooks, deleted from the store)
local errors = require "freshbooks.errors"
local oauth = require "freshbooks.oauth"
local options = require "freshbooks.options"
local session = require "freshbooks.session"

local connections = {}
local Connections = {}
Connections.__index = Connections

-- The token hooks belong to each connection's store.
local PER_CONNECTION = { store = true, load = true, save = true, lock = true, tokens = true }

local is_callable = options.callable
local OPTIONS = options.spec{
  app = { "table", say = "a table of freshbooks.new options" },
  store = { "function", say = "a function(connection_id) -> store" },
  max_sessions = { "number", integer = true, min = 1, default = 1000 },
  state_ttl = { "number", integer = true, min = 1, default = 600 },
}
local STATUS = options.spec{ refresh = { "boolean" } }

local function check_id(id)
  if type(id) ~= "string" or id == "" then
    error("freshbooks.connections: a connection id must be a non-empty string", 3)
  end
end

function connections.new(opts)
  if type(opts) ~= "table" then error("freshbooks.connections: expected a table of options", 2) end
  opts = options.check("freshbooks.connections", OPTIONS, opts, 2)
  if opts.app == nil then error("freshbooks.connections: app must be a table of freshbooks.new options", 2) end
  if opts.store == nil then error("freshbooks.connections: store must be a function(connection_id) -> store", 2) end
  local app = {}
  for k, v in pairs(opts.app) do
    if PER_CONNECTION[k] then error("freshbooks.connections: app." .. k .. " belongs to each connection's store", 2) end
    app[k] = v
  end
  -- A bad app configuration raises here, not on a user's first request.
  session.new(app, "freshbooks.connections: app", 3)
  local self = setmetatable({
    app = app, stores = opts.store, max_sessions = opts.max_sessions, state_ttl = opts.state_ttl,
    live = {}, size = 0, unsaved = {},
  }, Connections)
  -- The LRU: a ring with a sentinel; self.ring.newer is the most recently used entry.
  self.ring = {}
  self.ring.newer, self.ring.older = self.ring, self.ring
  return self
end

local function unlink(e) e.newer.older, e.older.newer = e.older, e.newer end
local function push(ring, e)
  e.older, e.newer = ring, ring.newer
  ring.newer.older = e
  ring.newer = e
end

-- A session's store, wrapped only to know whether its last save failed: such a session holds the
-- newest tokens unsaved (pending) and is never evicted, so they get their next chance to be saved.
local function watched(self, id, store)
  local unsaved = self.unsaved
  return {
    load = store.load, lock = store.lock,
    save = function(new, previous)
      unsaved[id] = true
      local ok, err = store.save(new, previous)
      local settled = ok == true or (ok == nil and err == nil) or (errors.is(err) and err.code == "conflict")
      if settled then unsaved[id] = nil end
      return ok, err
    end,
  }
end

local function evict(self)
  local e = self.ring.older
  local budget = self.size
  while self.size > self.max_sessions and e ~= self.ring and budget > 0 do
    local older = e.older
    if not self.unsaved[e.id] then
      unlink(e)
      self.live[e.id] = nil
      self.size = self.size - 1
    end
    e, budget = older, budget - 1
  end
end

local function entry(self, id)
  local e = self.live[id]
  if e then
    unlink(e)
    push(self.ring, e)
    return e
  end
  local store = self.stores(id)
  if type(store) ~= "table" or not is_callable(store.load) or not is_callable(store.save) then
    error("freshbooks.connections: store(" .. string.format("%q", id) .. ") did not return a store", 3)
  end
  local o = {}
  for k, v in pairs(self.app) do o[k] = v end
  o.store = watched(self, id, store)
  local user_log = self.app.log
  if user_log then o.log = function(event) event.connection = id; return user_log(event) end end
  e = { id = id, store = store, fb = session.new(o) }
  self.live[id] = e
  push(self.ring, e)
  self.size = self.size + 1
  evict(self)
  return e
end

-- conns:session(id) -> the connection's session (live in this process, or made from its store).
function Connections:session(id)
  check_id(id)
  return entry(self, id).fb
end

-- conns:connect_url(id, {scopes =}) -> url, state | nil, err. The state is kept in the connection's
-- store for state_ttl seconds and is good for one callback of this connection only.
function Connections:connect_url(id, opts)
  check_id(id)
  local e = entry(self, id)
  if not is_callable(e.store.put_state) then
    error("freshbooks.connections: this store keeps no OAuth state (freshbooks.store.redis does)", 2)
  end
  local url, state = e.fb:authorize_url(opts)
  local ok, err = e.store.put_state(state, self.state_ttl)
  if not ok then return nil, err end
  return url, state
end

-- conns:callback(id, query, state?) -> true | nil, err. `query` is the callback's query string (or
-- table). `state`, when the program has one (a cookie binding the browser), must match too; either
-- way the callback's state must be one connect_url issued for this very connection, unused and
-- unexpired. It is used up before the code is exchanged.
function Connections:callback(id, query, state)
  check_id(id)
  if state ~= nil and (type(state) ~= "string" or state == "") then
    error("freshbooks.connections: callback: state must be a non-empty string or nil", 2)
  end
  local fields = oauth.parse_callback(query)
  local given = type(fields.state) == "string" and fields.state ~= "" and fields.state or nil
  local mismatch = errors.new{ code = "state_mismatch",
    message = "the callback's state is not one issued for this connection (unknown, expired or already used)" }
  if not given then return nil, mismatch end
  local e = entry(self, id)
  if not is_callable(e.store.take_state) then
    error("freshbooks.connections: this store keeps no OAuth state (freshbooks.store.redis does)", 2)
  end
  local code, err = oauth.check_callback(fields, state or given)
  if not code and err.code == "state_mismatch" then return nil, err end -- a forged callback uses up nothing
  local taken, terr = e.store.take_state(given)
  if taken == nil then return nil, terr end
  if not taken then return nil, mismatch end
  if not code then return nil, err end -- access_denied and the like, for a genuine state
  local ok, xerr = e.fb:exchange(code)
  if not ok then return nil, xerr end
  self.unsaved[id] = nil
  return true
end

local function words(s)
  local out = {}
  for w in tostring(s or ""):gmatch("%S+") do out[#out + 1] = w end
  return out
end

-- conns:status(id, {refresh = true}) -> {id, connected, reauth_required, last_refresh, version,
-- expires_at, scopes, businesses, error} | nil, err (the store could not be read). Identity comes from
-- the live session's cache unless refresh asks FreshBooks again.
function Connections:status(id, opts)
  check_id(id)
  opts = options.check("freshbooks.connections: status", STATUS, opts, 2)
  local e = entry(self, id)
  local st = { id = id, connected = false, reauth_required = false }
  local stored, err = e.store.load()
  if err then return nil, err end
  if not stored then return st end
  local list, merr = e.fb:memberships(opts.refresh)
  if list then
    st.connected = true
    st.businesses = {}
    for i, m in ipairs(list) do
      st.businesses[i] = { account_id = m.account_id, business_id = m.business_id, name = m.name, role = m.role }
    end
  elseif merr.code == "reauth_required" then
    st.reauth_required = true
  else
    st.connected, st.error = true, merr.code -- tokens are stored; FreshBooks could not say more just now
  end
  stored = e.store.load() or stored -- a refresh may have run meanwhile
  st.last_refresh, st.version, st.expires_at = stored.saved_at, stored.version, stored.expires_at
  st.scopes = words(stored.scope)
  return st
end

-- conns:list() -> every connection id with stored tokens | nil, err (the store factory must list:
-- freshbooks.store.redis.keyspace does).
function Connections:list()
  local stores = self.stores
  local lister = type(stores) == "table" and stores.list
  if not is_callable(lister) then error("freshbooks.connections: this store factory cannot list (no .list)", 2) end
  return lister()
end

-- conns:disconnect(id) -> true | nil, err. Inside the connection's lock (a refresh running elsewhere
-- finishes first, so the pair it saved is the one revoked): revoke the stored grant at FreshBooks,
-- then delete it. A revoke FreshBooks refuses as already invalid still deletes; a failure that leaves
-- the grant alive (network, 5xx) keeps it stored so the disconnect can be repeated.
function Connections:disconnect(id)
  check_id(id)
  local e = entry(self, id)
  local store = e.store
  local handle, lerr
  if is_callable(store.lock) then
    handle, lerr = store.lock()
    if not handle then return nil, lerr end
  end
  local function finish(ok, err)
    if handle then pcall(function() handle:unlock() end) end
    return ok, err
  end
  local stored, err = store.load()
  if err then return finish(nil, err) end
  if stored then
    local o = {}
    for k, v in pairs(self.app) do o[k] = v end
    o.tokens = stored
    local ok, rerr = session.new(o):revoke()
    if not ok and not (rerr.status == 400 or rerr.status == 401) then return finish(nil, rerr) end
  end
  if not is_callable(store.delete) then
    return finish(nil, errors.new{ code = "unsupported", message = "this store cannot delete tokens" })
  end
  local ok, derr = store.delete()
  if not ok then return finish(nil, derr) end
  unlink(e)
  self.live[id], self.unsaved[id] = nil, nil
  self.size = self.size - 1
  return finish(true)
end

-- How many sessions are live in this process (for the program's own metrics).
function Connections:live_sessions() return self.size end

return connections
