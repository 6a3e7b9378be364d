-- Guest scripts: run untrusted Lua (a host application's user scripts) against a session without
-- giving it any way to reach a secret. The guest gets plain functions and plain data only:
--   * the session, its transport and its tokens live in upvalues of these functions, which a guest
--     cannot read without the debug library (not given);
--   * no require/package/io/os.execute/load/getmetatable/string.dump/debug: nothing that loads code
--     or escapes into the host;
--   * results are deep copies of decoded JSON; errors are rebuilt from their public fields only
--     (a save_failed error carries tokens for the host, never for a guest).
--   local guest = require "freshbooks.guest"
--   local ok, err = guest.run(fb, source, "=user.lua", { print = host_print, write = false })
local errors = require "freshbooks.errors"
local catalogue = require "freshbooks.catalogue"

local guest = {}

local function copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local c = {}
  seen[v] = c
  for k, x in pairs(v) do c[copy(k, seen)] = copy(x, seen) end
  return c
end

local function public_error(err)
  if type(err) ~= "table" then return errors.new{ code = "error", message = tostring(err) } end
  return errors.new{ code = tostring(err.code), message = err.message, status = err.status,
    errno = err.errno, errors = copy(err.errors) }
end

-- Call a library function; hand the guest copies, or nil and a public error.
local function call(f, ...)
  local ok, res, err = pcall(f, ...)
  if not ok then return nil, public_error{ code = "bad_argument", message = errors.scrub(res) } end
  if res == nil then return nil, public_error(err) end
  return copy(res), err and copy(err) or nil
end

local READ = { "list", "get", "each", "all" }
local WRITE = { "create", "update", "delete", "archive" }

local function resource_api(r, write)
  local api = {}
  local function add(name)
    if not (r.entry and r.entry.verbs[name]) and name ~= "each" and name ~= "all" then return end
    if name == "each" then
      api.each = function(q)
        local ok, it = pcall(r.each, r, q)
        if not ok then error(errors.scrub(it), 2) end
        return function()
          local v, err = it()  -- like each(): false, err when a page fails
          if v == false then return false, public_error(err) end
          return copy(v)
        end
      end
    else
      api[name] = function(...) return call(r[name], r, ...) end
    end
  end
  for _, v in ipairs(READ) do add(v) end
  if write then for _, v in ipairs(WRITE) do add(v) end end
  return api
end

local function owner_api(obj, write)
  local api = {}
  for _, e in ipairs(catalogue.entries) do
    -- resources are made on first use; this owner may not carry the entry (another family)
    local ok, r = pcall(function() return e.group and obj[e.group][e.name] or obj[e.name] end)
    if ok and r and r.entry and (r.entry.verbs.list or r.entry.verbs.get) then api[e.name] = resource_api(r, write) end
  end
  return api
end

-- guest.api(fb, opts) -> the `freshbooks` table a guest sees. opts.write = true allows create/update/
-- delete/archive; reads only by default.
function guest.api(fb, opts)
  if type(fb) ~= "table" or type(fb.request) ~= "function" then
    error("freshbooks.guest.api: a session is required", 2)
  end
  local write = opts and opts.write or false
  return {
    me = function() return call(fb.me, fb) end,
    businesses = function()
      local list = {}
      local ok, err = pcall(function() for m in fb:businesses() do list[#list + 1] = copy(m) end end)
      if not ok then return nil, public_error(err) end
      return list
    end,
    account = function(id) return owner_api(fb:account(id), write) end,
    business = function(id) return owner_api(fb:business(id), write) end,
  }
end

local function safe_copy(lib, drop)
  local c = {}
  for k, v in pairs(lib) do if not (drop and drop[k]) then c[k] = v end end
  return c
end

-- guest.env(fb, opts) -> a fresh environment for one guest script.
function guest.env(fb, opts)
  opts = opts or {}
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    select = select, tonumber = tonumber, tostring = tostring, type = type, xpcall = xpcall,
    unpack = table.unpack or rawget(_G, "unpack"), rawequal = rawequal, rawlen = rawget(_G, "rawlen"),
    setmetatable = setmetatable,
    print = opts.print or print,
    string = safe_copy(string, { dump = true }),
    table = safe_copy(table), math = safe_copy(math),
    os = { time = os.time, date = os.date, clock = os.clock, difftime = os.difftime },
    coroutine = safe_copy(coroutine),
    freshbooks = guest.api(fb, opts),
  }
  env._G = env
  return env
end

-- guest.run(fb, source, chunkname, opts) -> true, results... | nil, message. Text only: precompiled
-- bytecode could break out of any environment.
function guest.run(fb, source, chunkname, opts)
  if type(source) ~= "string" then error("freshbooks.guest.run: source must be a string", 2) end
  local env = guest.env(fb, opts)
  local chunk, err = load(source, chunkname or "=guest", "t", env)
  if not chunk then return nil, errors.scrub(err) end
  local function pack(ok, ...)
    if not ok then return nil, errors.scrub(tostring((...))) end
    return true, ...
  end
  return pack(pcall(chunk))
end

return guest
