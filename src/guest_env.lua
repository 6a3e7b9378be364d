-- The guest's own side of freshbooks.guest: src/guest.c runs this chunk in every guest state, before
-- the script. Nothing here is trusted by the host (only the plain data that C copies out is), so it
-- needs no secrets and guards nothing: it gives scripts the library's shape (fb:me(), fb:businesses(),
-- fb:account(id).invoices:list{...}, :each{...}, ...), a print that goes to the host, coroutines that
-- can call the API, and string patterns written in Lua (guest_patterns.lua) so the budgets cover them.
-- Arguments: the marker a call to the host yields, and the bridge (C functions; `raw`: library functions
-- as the VM has them, which src/guest.c wraps for scripts to charge their loops, for our own chunks).
local MARK, bridge = ...
local call, print_host, find, library, stopped, tick, spawn, raw = bridge.call, bridge.print, bridge.find,
  bridge.library, bridge.stopped, bridge.tick, bridge.spawn, bridge.raw
local type, tostring, select, error, pcall, pairs, setmetatable, rawequal, ipairs =
  type, tostring, select, error, pcall, pairs, setmetatable, rawequal, ipairs
local concat = table.concat
local co_resume, co_yield, co_close, co_running = coroutine.resume, coroutine.yield, bridge.close,
  coroutine.running
-- (our chunks load on first use, after the script may have changed the globals: they take these)
for k, v in pairs{ tostring = tostring, type = type, error = error, pcall = pcall, select = select, rawget = rawget,
    rawset = rawset, sub = string.sub, char = string.char, floor = math.floor, ceil = math.ceil,
    tointeger = math.tointeger } do
  raw[k] = v
end

-- Coroutines: a call to the host made inside a coroutine of the script yields MARK; each resume passes
-- it up (to the host) and hands the answer back down, so the script's coroutines never see it. Every
-- resume goes through tick (src/guest.c), before and after: the budgets are the run's, so a stop inside
-- a coroutine stops its resumers too, and nested resumes are bounded by the C stack they take.
local pass
local function resume(co, ...)
  if not tick(co) then return false, "C stack overflow" end
  return pass(co, co_resume(co, ...))
end
function pass(co, ok, ...)
  tick()
  if ok and rawequal((...), MARK) then return resume(co, co_yield(MARK)) end
  return ok, ...
end

function coroutine.resume(co, ...)
  if type(co) ~= "thread" then return co_resume(co, ...) end -- its own error
  return resume(co, ...)
end

-- The script's body runs in a coroutine too, but, as in a main chunk, cannot yield from it. A new
-- coroutine is charged the instructions it may run before its first hook (spawn).
local ours = setmetatable({}, { __mode = "k" })
local function create(f)
  local co = spawn(f)
  ours[co] = true
  return co
end
coroutine.create = create

function coroutine.yield(...)
  if not ours[co_running()] then error("attempt to yield from outside a coroutine", 2) end
  return co_yield(...)
end

-- And it answers as a main chunk does (Lua 5.4: the thread, true; LuaJIT: nil).
local LUA51, co_isyieldable = rawget(_G, "_VERSION") == "Lua 5.1", coroutine.isyieldable
function coroutine.running()
  local co, main = co_running()
  if ours[co] then return co, main end
  if LUA51 then return nil end
  return co, true
end

if co_isyieldable then
  function coroutine.isyieldable(...)
    if select("#", ...) == 0 and not ours[co_running()] then return false end
    return co_isyieldable(...)
  end
end

-- Closing a coroutine runs its pending __close handlers (Lua 5.4). One that died from a budget's stop
-- would run them with hooks off (the VM unwound from inside the count hook): once the run is stopped,
-- closing is refused.
if co_close then
  function coroutine.close(co)
    if stopped() then error("freshbooks.guest: the run is stopped", 2) end
    return co_close(co)
  end
end

local function unwrap(co, ok, ...)
  if ok then return ... end
  if co_close then coroutine.close(co) end -- as Lua 5.4's wrap does: the dead coroutine's <close>s run
  error((...), 2)
end

function coroutine.wrap(f)
  local co = create(f)
  return function(...) return unwrap(co, resume(co, ...)) end
end

-- xpcall on pcall: the handler runs once pcall has returned, under the budgets (Lua's own xpcall calls
-- it from inside the error, with hooks off when the error came from the count hook).
local function handled(handler, ok, ...)
  if ok then return true, ... end
  local hok, v = pcall(handler, (...))
  if hok then return false, v end
  return false, "error in error handling"
end

function xpcall(f, handler, ...)
  if type(handler) ~= "function" then
    error(("bad argument #2 to 'xpcall' (function expected, got %s)"):format(type(handler)), 2)
  end
  return handled(handler, pcall(f, ...))
end

function print(...)
  local n, t = select("#", ...), { ... }
  for i = 1, n do t[i] = tostring(t[i]) end
  print_host(concat(t, "\t", 1, n))
end

-- Patterns: literal ones in C (linear time), the rest through the Lua matcher, loaded on first use.
local M
local function matcher()
  M = M or library("patterns", raw)
  return M
end

local function found(s, p, init, i, ...)
  if i ~= true then return i, ... end
  return matcher().find(s, p, init)
end

function string.find(s, p, init, plain) return found(s, p, init, find(s, p, init, plain)) end
function string.match(s, p, init) return matcher().match(s, p, init) end
function string.gmatch(s, p, init) return matcher().gmatch(s, p, init) end
function string.gsub(s, p, repl, n) return matcher().gsub(s, p, repl, n) end
if string.gfind then -- Lua 5.1's old name for gmatch: its C matcher, unless replaced
  function string.gfind(s, p) return matcher().gmatch(s, p) end
end

-- table.move in Lua: Lua's own is a C loop over a range the script chooses, where no hook fires.
function table.move(a1, f, e, t, a2)
  local n = { f, e, t }
  for i = 1, 3 do
    if type(n[i]) ~= "number" then
      error(("bad argument #%d to 'move' (number expected, got %s)"):format(i + 1, type(n[i])), 2)
    end
  end
  if a2 == nil then a2 = a1 end
  if e >= f then
    if t > e or t <= f or a1 ~= a2 then
      for i = 0, e - f do a2[t + i] = a1[f + i] end
    else
      for i = e - f, 0, -1 do a2[t + i] = a1[f + i] end
    end
  end
  return a2
end

-- table.sort in Lua (guest_sort.lua, loaded on first use): the library's is one C loop no hook stops,
-- whose comparisons may each take the length of a long string, and whose C comparator may be
-- table.sort itself (C recursion until the host's C stack ends).
local S
function table.sort(...)
  S = S or library("sort", raw)
  return S(...)
end

-- Lua 5.3+'s insert, remove and concat read a table through __len, __index and __newindex from one C
-- loop: a __len of 2^53, or C functions as metamethods, would keep it going where no hook fires. A
-- table with a metatable reaches them behind a stand-in whose every access is Lua code (hooked), with
-- the same reads and writes in the same order. (Without a metatable, src/guest.c charges the range.)
if not LUA51 then
  local getmetatable = getmetatable
  local function hooked(t)
    if type(t) ~= "table" or getmetatable(t) == nil then return t end
    return setmetatable({}, { __len = function() return #t end, __index = function(_, k) return t[k] end,
      __newindex = function(_, k, v) t[k] = v end })
  end
  for _, name in ipairs{ "insert", "remove", "concat" } do
    local f = table[name]
    table[name] = function(t, ...) return f(hooked(t), ...) end
  end
end

-- tostring and os.time in Lua. LuaJIT's tostring calls a __tostring as a tail call: with tostring as
-- its own __tostring (or a table's __call), that is a loop of no instruction at all. And LuaJIT's
-- os.time reads a table's fields from C: an __index that is os.time again recurses in C until the
-- host's C stack ends. Here each round is Lua (seen by the hook), and os.time gets a plain copy (whose
-- fields go back to the table, as Lua 5.3+ normalises them).
do
  -- Its errors ("value expected", "'__tostring' must return a string") carry no position from inside
  -- pcall: placed at the caller, as the library's are.
  local tostring = tostring -- luacheck: ignore 421
  local function placed(ok, s)
    if ok then return s end
    error(s, 3)
  end
  function _G.tostring(...)
    if select("#", ...) == 0 then error("bad argument #1 to 'tostring' (value expected)", 2) end
    return placed(pcall(tostring, (...)))
  end
  local time, FIELDS = os.time, { "year", "month", "day", "hour", "min", "sec", "isdst" }
  local SET = not LUA51 and { "year", "month", "day", "hour", "min", "sec", "yday", "wday", "isdst" }
  function os.time(...)
    local t = ...
    if t == nil then return (time()) end
    if type(t) ~= "table" then error(("bad argument #1 to 'time' (table expected, got %s)"):format(type(t)), 2) end
    local plain = {}
    for _, k in ipairs(FIELDS) do plain[k] = t[k] end
    local ok, r = pcall(time, plain) -- its errors carry no position (called from C): placed at our caller
    if not ok then error(r, 2) end
    if SET then
      for _, k in ipairs(SET) do t[k] = plain[k] end
    end
    return r
  end
end

-- LuaJIT's and Lua 5.1's table.insert shifts from #t + 1 down to its position in one C loop: at -2^31
-- (where 1e300 and nan convert to, on x86) that is 2^31 steps no hook sees. Positions outside
-- [1, 2^31) are refused, as Lua 5.2+ refuses those below 1 and past the end.
if LUA51 then
  local insert = table.insert
  function table.insert(t, ...)
    local pos = select("#", ...) == 2 and tonumber((...))
    if pos and not (pos >= 1 and pos < 2 ^ 31) then
      error("bad argument #2 to 'insert' (position out of bounds)", 2)
    end
    return insert(t, ...)
  end
end

-- Errors from the API: plain tables {code, message, status, errno, errors}, printed as the library
-- prints its errors (errors.lua's __tostring).
local Error = { __metatable = "freshbooks.error" }
function Error.__tostring(e)
  local s = "freshbooks: " .. tostring(e.code)
  if e.message and e.message ~= "" then s = s .. ": " .. tostring(e.message) end
  if e.status then s = s .. " (HTTP " .. tostring(e.status) .. ")" end
  return s
end

-- The host's answer: "ok", values... | "fail", nil or false, err | "raise", message (a bad argument,
-- raised at `level` above the caller, as the library raises it).
local function answer(level, how, a, ...)
  if how == "ok" then return a, ... end
  if how == "fail" then
    local err = ...
    if type(err) == "table" then setmetatable(err, Error) end
    return a, err
  end
  error(a, level + 1)
end

local function resource(kind, owner_id, e)
  local r = {}
  local function check(self, verb)
    if not rawequal(self, r) then
      error(("freshbooks: %s:%s: call it with a colon: %s:%s(...)"):format(e.name, verb, e.name, verb), 3)
    end
  end
  for verb, allowed in pairs(e.verbs) do
    if not allowed then
      r[verb] = function()
        error(("freshbooks: %s:%s: this script may only read (the host allows no writes)"):format(e.name, verb), 2)
      end
    elseif verb == "each" then
      r.each = function(self, q, opts)
        check(self, "each")
        local how, h = call("each", kind, owner_id, e.name, q, opts)
        if how ~= "ok" then return answer(1, how, h) end
        return function() return answer(1, call("next", h)) end
      end
    else
      r[verb] = function(self, ...)
        check(self, verb)
        return answer(1, call("verb", kind, owner_id, e.name, verb, ...))
      end
    end
  end
  local text = ("freshbooks.resource(%s, %s %s)"):format(e.name, kind, tostring(owner_id))
  return setmetatable(r, { __tostring = function() return text end })
end

-- What the host allows on a resource, asked the first time a script names it (most scripts use a few):
-- {verbs = {verb = allowed}}, {group = true} for a group of resources (reports), or nil.
local known = {}
local function about(kind, name, group)
  local key = (group or "") .. "." .. tostring(name)
  known[kind] = known[kind] or {}
  local info = known[kind][key]
  if info == nil then
    local how, a = call("resource", kind, name, group)
    if how ~= "ok" then error(a, 3) end
    info = a or false
    known[kind][key] = info
  end
  return info
end

-- fb:account(id) / fb:business(id) / fb:accounting_business(uuid): the host checks the id as the library
-- does (it raises on a bad one) and names the owner's id field.
-- Its fields are built on first use; an unknown one raises, as in the library.
local owners = {}
local function owner(kind, id)
  local key = kind .. ":" .. tostring(id)
  if owners[key] then return owners[key] end
  local how, field = call("owner", kind, id)
  if how ~= "ok" then error(field, 2) end -- fb:account tail-calls this: level 2 is its caller
  local o = setmetatable({ [field] = id }, { __index = function(o, k)
    local info = about(kind, k)
    if not info then error(("freshbooks: %s %s has no resource %q"):format(kind, tostring(id), tostring(k)), 2) end
    local v
    if info.group then
      v = setmetatable({}, { __index = function(g, name)
        local e = about(kind, name, k)
        if not e then return nil end
        local r = resource(kind, id, { name = name, verbs = e.verbs })
        rawset(g, name, r)
        return r
      end })
    else
      v = resource(kind, id, { name = k, verbs = info.verbs })
    end
    rawset(o, k, v)
    return v
  end })
  owners[key] = o
  return o
end

local fb = {}
function fb.me(_, refresh) return answer(1, call("me", refresh)) end
function fb.memberships(_, refresh) return answer(1, call("memberships", refresh)) end
function fb.find_business(_, key) return answer(1, call("find_business", key)) end
function fb.account(_, id) return owner("account", id) end
function fb.business(_, id) return owner("business", id) end
function fb.accounting_business(_, uuid) return owner("accounting_business", uuid) end
-- As in the library, a failure to read the identity is raised (a for loop has no other way to say it).
function fb.businesses(_, refresh)
  local list, err = answer(2, call("memberships", refresh))
  if not list then error(err, 2) end
  local i = 0
  return function()
    i = i + 1
    return list[i]
  end
end
setmetatable(fb, { __tostring = function() return "freshbooks.session(guest)" end })

-- mirror:query(sql, params) -> {columns, rows} | nil, err: read-only SQL on the host's mirror (when the
-- host gives the run one), one call of the budget.
local mirror = {}
function mirror.query(a, b, c)
  if a == mirror then a, b = b, c end -- mirror:query(...) and mirror.query(...)
  return answer(1, call("query", a, b))
end
setmetatable(mirror, { __tostring = function() return "freshbooks.mirror(guest)" end })
_G.mirror = mirror

_G.fb = fb
return fb
