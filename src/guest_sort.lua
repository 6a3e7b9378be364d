-- table.sort written in Lua, for guest scripts: src/guest.c loads it into a guest state the first time
-- the script sorts. The library's sort is one C call that the count hook never interrupts: sorting many
-- references to one long string compares megabytes per step for as long as it takes, and a comparator
-- that is itself a C function (table.sort) recurses in C until the host's C stack ends. Here every
-- comparison is an instruction of the script (under its budgets), recursion is Lua's (no C stack), and
-- a comparator may call the API (it may yield).
-- The algorithm and its errors are this VM's own library's: Lua 5.3/5.4's (elements and length through
-- metamethods, the pivot in the middle, randomised only when a partition is badly unbalanced), or Lua
-- 5.1's, which LuaJIT keeps (raw elements and length). For a consistent order function the result is
-- the library's, element for element; where 5.4 would randomise, equal elements may come out in
-- another order (as they may from run to run there).
local _, _, version = ...
local type, error, pcall, select, rawget, rawset = type, error, pcall, select, rawget, rawset
local sub, find = string.sub, string.find
local tointeger = math.tointeger
local V51 = version < 502

local RAISED = {} -- our own errors, raised at the caller of table.sort (as C's luaL_error places them)
local function fail(msg) error({ [RAISED] = msg }, 0) end
local WHERE = "freshbooks.sort:" -- a comparison of two values that cannot be compared raised here
local function rethrow(ok, ...)
  if ok then return end
  local e = ...
  if type(e) == "table" and rawget(e, RAISED) then error(rawget(e, RAISED), 2) end
  if type(e) == "string" and sub(e, 1, #WHERE) == WHERE then -- C's compare error has no position
    local _, at = find(e, ": ", #WHERE + 1, true)
    if at then e = sub(e, at + 1) end
  end
  error(e, 0)
end

-- The table, the comparator and the bounds travel as arguments: a comparator may yield, and another
-- coroutine sort in the meantime.
local function lt(comp, a, b)
  if comp then return comp(a, b) end
  return a < b
end

local get, set
if V51 then
  get, set = rawget, rawset
else
  get = function(t, i) return t[i] end
  set = function(t, i, v) t[i] = v end
end

local floor = math.floor
local half = V51 and function(n) return (n - n % 2) / 2 end or function(n) return floor(n / 2) end -- integers

local sort

if V51 then
  -- Lua 5.1's auxsort (with LuaJIT's bounds checks).
  local function auxsort(t, comp, l, u)
    while l < u do
      local a, b = get(t, l), get(t, u)
      if lt(comp, b, a) then set(t, l, b) set(t, u, a) end
      if u - l == 1 then break end
      local i = half(l + u)
      a, b = get(t, i), get(t, l)
      if lt(comp, a, b) then
        set(t, i, b) set(t, l, a)
      else
        b = get(t, u)
        if lt(comp, b, a) then set(t, i, b) set(t, u, a) end
      end
      if u - l == 2 then break end
      local p = get(t, i)
      set(t, i, get(t, u - 1)) set(t, u - 1, p)
      local j
      i, j = l, u - 1
      while true do
        i = i + 1
        local ai = get(t, i)
        while lt(comp, ai, p) do
          if i >= u then fail("invalid order function for sorting") end
          i = i + 1
          ai = get(t, i)
        end
        j = j - 1
        local aj = get(t, j)
        while lt(comp, p, aj) do
          if j <= l then fail("invalid order function for sorting") end
          j = j - 1
          aj = get(t, j)
        end
        if j < i then break end
        set(t, i, aj) set(t, j, ai)
      end
      local pv, ai = get(t, u - 1), get(t, i)
      set(t, u - 1, ai) set(t, i, pv)
      if i - l < u - i then
        j, i, l = l, i - 1, i + 1
      else
        j, i, u = i + 1, u, i - 1
      end
      auxsort(t, comp, j, i)
    end
  end

  sort = function(...)
    local t, comp = ...
    if type(t) ~= "table" then
      error(("bad argument #1 to 'sort' (table expected, got %s)"):format(select("#", ...) == 0 and "no value"
        or type(t)), 2)
    end
    if comp ~= nil and type(comp) ~= "function" then
      error(("bad argument #2 to 'sort' (function expected, got %s)"):format(type(comp)), 2)
    end
    return rethrow(pcall(auxsort, t, comp, 1, #t))
  end
else
  -- Lua 5.3/5.4's auxsort and partition.
  local RANLIMIT = 100
  local seed = 0
  local function randomize()
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed
  end

  -- a[up - 1] is the pivot p; -> its final place.
  local function partition(t, comp, lo, up, p)
    local i, j = lo, up - 1
    while true do
      i = i + 1
      local ai = get(t, i)
      while lt(comp, ai, p) do
        if i == up - 1 then fail("invalid order function for sorting") end
        i = i + 1
        ai = get(t, i)
      end
      j = j - 1
      local aj = get(t, j)
      while lt(comp, p, aj) do
        if j < i then fail("invalid order function for sorting") end
        j = j - 1
        aj = get(t, j)
      end
      if j < i then
        set(t, up - 1, ai) set(t, i, p)
        return i
      end
      set(t, i, aj) set(t, j, ai)
    end
  end

  local function auxsort(t, comp, lo, up, rnd)
    while lo < up do
      local a, b = get(t, lo), get(t, up)
      if lt(comp, b, a) then set(t, lo, b) set(t, up, a) end
      if up - lo == 1 then break end
      local p
      if up - lo < RANLIMIT or rnd == 0 then
        p = half(lo + up)
      else
        local r4 = half(half(up - lo))
        p = rnd % (r4 * 2) + (lo + r4)
      end
      a, b = get(t, p), get(t, lo)
      if lt(comp, a, b) then
        set(t, p, b) set(t, lo, a)
      else
        b = get(t, up)
        if lt(comp, b, a) then set(t, p, b) set(t, up, a) end
      end
      if up - lo == 2 then break end
      a, b = get(t, p), get(t, up - 1)
      set(t, p, b) set(t, up - 1, a)
      p = partition(t, comp, lo, up, a)
      local n
      if p - lo < up - p then
        auxsort(t, comp, lo, p - 1, rnd)
        n = p - lo
        lo = p + 1
      else
        auxsort(t, comp, p + 1, up, rnd)
        n = up - p
        up = p - 1
      end
      if up - lo > 128 * n + 127 then rnd = randomize() end
    end
  end

  sort = function(...)
    local t, comp = ...
    if type(t) ~= "table" then
      error(("bad argument #1 to 'sort' (table expected, got %s)"):format(select("#", ...) == 0 and "no value"
        or type(t)), 2)
    end
    local n = tointeger(#t)
    if not n then error("object length is not an integer", 2) end
    if n > 1 then
      if n >= 2147483647 then error("bad argument #1 to 'sort' (array too big)", 2) end
      if comp ~= nil and type(comp) ~= "function" then
        error(("bad argument #2 to 'sort' (function expected, got %s)"):format(type(comp)), 2)
      end
      return rethrow(pcall(auxsort, t, comp, 1, n, 0))
    end
  end
end

return sort
