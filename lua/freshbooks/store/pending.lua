-- The node's pending place: token pairs FreshBooks issued that the Redis store could not take yet
-- (Redis away, a save whose answer was lost), kept where every process of this machine sees them and
-- where they outlive the process that got them, until a store accepts that pair or a newer one:
--   * inside nginx, an nginx shared dictionary the app declares (`lua_shared_dict NAME 1m;`): every
--     worker sees it, and it survives a worker's death and a reload (HUP); not a restart of nginx;
--   * elsewhere (or inside nginx without a dictionary), a directory the app's user owns: one file,
--     pending.json, mode 0600, replaced atomically (fsync, rename, fsync of the directory), changed
--     under an flock on pending.lock beside it; it survives every process and a reboot.
-- Each entry is one connection's newest pending pair: {text = the token record (JSON), version =, fence
-- = the refresh token it was refreshed from ('' for a new authorization), scope = the store's Redis
-- namespace}. Entries hold live refresh tokens: the dictionary must be the library's alone, the
-- directory readable by the app's user only.
--   local place = pending.new{ shared_dict = "freshbooks_pending", dir = "/var/lib/app/freshbooks" }
--   place.get(key) -> entry | nil;  place.all() -> {key = entry};  place.put(key, entry) -> true | nil, err
--   place.settle(key, test): the entry removed when test(entry) says it is settled
--   place.note(name, value), place.noted(name) -> value | nil: a short string the node remembers
--   beside the entries (store.redis: the Redis generation it saw last, so a process started after a
--   wipe knows of it); never counted as a pending pair
local cjson = require "cjson.safe"
local core = require "freshbooks.core"
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"

local pending = {}

local MAX_FILE = 16 * 1024 * 1024
local ENTRY, MUTEX, NOTE = "p:", "m:", "n:" -- dictionary key prefixes: an entry, its key's short mutex, a note

local function unavailable(place, why)
  return nil, errors.new{ code = "pending_failed", message = "could not keep the pair in " .. place .. ": " .. why }
end

-- A wait between tries: on nginx's event loop where the phase may yield, else the thread sleeps.
local function pause() env.sleep(0.002) end

-- An nginx shared dictionary. Changes to one key run under a per-key mutex (`add` with a 1 s expiry,
-- so a worker killed while holding it cannot wedge the others): a test-and-remove must not remove a
-- newer pair another worker put meanwhile.
local function dictionary(dict, name)
  local where = "lua_shared_dict " .. name
  local function locked(key, f)
    for _ = 1, 500 do
      if dict:safe_add(MUTEX .. key, true, 1) then -- (add may evict: another connection's pair)
        local ok, a, b = pcall(f)
        dict:delete(MUTEX .. key)
        if not ok then return unavailable(where, tostring(a)) end
        return a, b
      end
      pause()
    end
    return unavailable(where, "its entry stayed busy")
  end
  local place = { where = where }
  function place.get(key)
    local v = dict:get(ENTRY .. key)
    return v and cjson.decode(v) or nil
  end
  function place.all()
    local out = {}
    for _, k in ipairs(dict:get_keys(0)) do
      if k:sub(1, #ENTRY) == ENTRY then out[k:sub(#ENTRY + 1)] = place.get(k:sub(#ENTRY + 1)) end
    end
    return out
  end
  function place.put(key, entry, keep)
    return locked(key, function()
      local cur = place.get(key)
      if cur and keep(cur) then return true end
      -- safe_set: never evicts another connection's pending pair to make room
      local ok, err = dict:safe_set(ENTRY .. key, cjson.encode(entry))
      if not ok then return unavailable(where, tostring(err)) end
      return true
    end)
  end
  function place.note(what, value) dict:safe_set(NOTE .. what, value) end -- (never evicts a pending pair)
  function place.noted(what) return dict:get(NOTE .. what) end
  function place.settle(key, test)
    if not dict:get(ENTRY .. key) then return true end
    return locked(key, function()
      local cur = place.get(key)
      if cur and test(cur) then dict:delete(ENTRY .. key) end
      return true
    end)
  end
  return place
end

-- A directory of the app's: all entries in one small file, changed under an flock.
local function directory(dir)
  local file, lock_path, notes = dir .. "/pending.json", dir .. "/pending.lock", dir .. "/notes.json"
  local where = "the pending file " .. file
  local function read()
    local text, err = core.fs.read(file, MAX_FILE)
    if not text then return nil, err end
    local t = cjson.decode(text)
    return type(t) == "table" and t or {}
  end
  local function locked(f)
    local yielding = env.yielding()
    local lock, err
    -- inside nginx never a blocking flock: try, then sleep on the event loop (or, where nothing may
    -- yield, give up at once)
    local wait = (yielding or env.nginx()) and 0 or 1
    for _ = 1, yielding and 500 or 1 do
      lock, err = core.fs.lock(lock_path, wait)
      if lock or err.code ~= "lock_timeout" then break end
      pause()
    end
    if not lock then return unavailable(where, err.message) end
    local ok, a, b = pcall(f)
    lock:unlock()
    if not ok then return unavailable(where, tostring(a)) end
    return a, b
  end
  local function write(all)
    if next(all) == nil then
      os.remove(file)
      return true
    end
    local ok, err = core.fs.write_atomic(file, cjson.encode(all), 384) -- 0600
    if not ok then return unavailable(where, err.message) end
    return true
  end
  local place = { where = where }
  function place.noted(what)
    local text = core.fs.read(notes, MAX_FILE)
    local t = text and cjson.decode(text)
    return type(t) == "table" and type(t[what]) == "string" and t[what] or nil
  end
  function place.note(what, value)
    return locked(function()
      local text = core.fs.read(notes, MAX_FILE)
      local t = text and cjson.decode(text)
      if type(t) ~= "table" then t = {} end
      t[what] = value
      local ok, err = core.fs.write_atomic(notes, cjson.encode(t), 384) -- 0600
      if not ok then return unavailable(where, err.message) end
      return true
    end)
  end
  function place.get(key)
    local all = read()
    return all and all[key] or nil
  end
  function place.all() return read() or {} end
  function place.put(key, entry, keep)
    return locked(function()
      local all, err = read()
      if not all and err then return unavailable(where, err.message) end
      all = all or {}
      if all[key] and keep(all[key]) then return true end
      all[key] = entry
      return write(all)
    end)
  end
  function place.settle(key, test)
    if not place.get(key) then return true end
    return locked(function()
      local all = read()
      if not (all and all[key] and test(all[key])) then return true end
      all[key] = nil
      return write(all)
    end)
  end
  return place
end

-- pending.new{shared_dict =, dir =} -> a place, chosen per call: the dictionary inside nginx, the
-- directory elsewhere (or inside nginx without a dictionary); a place that is none of these holds
-- nothing (get -> nil, put -> an error saying so).
function pending.new(o)
  local dir, name = o.dir, o.shared_dict
  local files, shared = dir and directory(dir), nil
  local function choose()
    local ngx = name and env.nginx()
    local dict = ngx and ngx.shared[name]
    if not dict then return files end
    shared = shared or dictionary(dict, name)
    return shared
  end
  return {
    get = function(key) local p = choose(); return p and p.get(key) end,
    all = function() local p = choose(); return p and p.all() or {} end,
    put = function(key, entry, keep)
      local p = choose()
      if not p then return unavailable("no pending place", "this process has no lua_shared_dict and no dir") end
      return p.put(key, entry, keep)
    end,
    settle = function(key, test) local p = choose(); return p and p.settle(key, test) or true end,
    note = function(what, value) local p = choose(); if p then p.note(what, value) end end,
    noted = function(what) local p = choose(); return p and p.noted(what) or nil end,
  }
end

return pending
