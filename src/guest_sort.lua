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
local find, _, version, raw = ... -- find: plain find in C; raw: the library's functions, as the VM has them
local type, error, pcall, select, rawget, rawset = raw.type, raw.error, raw.pcall, raw.select, raw.rawget, raw.rawset
local sub, floor, tointeger = raw.sub, raw.floor, raw.tointeger
local V51 = version < 502

local RAISED = {} -- our own errors, raised at the caller of table.sort (as C's luaL_error places them)
local function fail(msg) error({ [RAISED] = msg }, 0) end
local function rethrow(ok, ...)
  if ok then return end
  local e = ...
  if type(e) == "table" and rawget(e, RAISED) then error(rawget(e, RAISED), 2) end
  error(e, 0)
end

-- The table, the comparator and the bounds travel as arguments: a comparator may yield, and another
-- coroutine sort in the meantime. Without a comparator, two values `<` cannot compare raise here: the
-- message loses this chunk's position ("freshbooks.sort:N: ", or "?:-1: " from its stripped
-- bytecode), as C's comparison error has none.
local function less(a, b) return a < b end
local function unplaced(e)
  if type(e) ~= "string" then return e end
  local _, at = find(e, ": ", 1, true)
  local where = at and sub(e, 1, at - 2)
  if where == "?:-1" or (where and sub(where, 1, 16) == "freshbooks.sort:") then return sub(e, at + 1) end
  return e
end
local function lt(comp, a, b)
  if comp then return comp(a, b) end
  local ta = type(a)
  if ta == type(b) and (ta == "number" or ta == "string") then return a < b end
  local ok, r = pcall(less, a, b) -- other values: a __lt of theirs, or an error
  if not ok then error(unplaced(r), 0) end
  return r
end

local get, set
if V51 then
  get, set = rawget, rawset
else
  get = function(t, i) return t[i] end
  set = function(t, i, v) t[i] = v end
end

local half = V51 and function(n) return (n - n % 2) / 2 end or function(n) return floor(n / 2) end -- integers

-- The arguments, checked as the library checks them (errors at the caller of table.sort).
local function check_table(n, t)
  if type(t) ~= "table" then
    error(("bad argument #1 to 'sort' (table expected, got %s)"):format(n == 0 and "no value" or type(t)), 3)
  end
end
local function check_comp(comp)
  if comp ~= nil and type(comp) ~= "function" then
    error(("bad argument #2 to 'sort' (function expected, got %s)"):format(type(comp)), 3)
  end
end

-- Puts a[lo] <= a[p] <= a[up] (a[lo] <= a[up] already), as both libraries do before partitioning.
local function median(t, comp, lo, p, up)
  local a, b = get(t, p), get(t, lo)
  if lt(comp, a, b) then
    set(t, p, b) set(t, lo, a)
  else
    b = get(t, up)
    if lt(comp, b, a) then set(t, p, b) set(t, up, a) end
  end
end

-- Lua 5.3/5.4's partition: a[up - 1] is the pivot p; -> where p belongs. Lua 5.1's (LuaJIT's) is the
-- same but for the checks of an inconsistent order function.
local function partition(t, comp, lo, up, p)
  local i, j = lo, up - 1
  while true do
    i = i + 1
    local ai = get(t, i)
    while lt(comp, ai, p) do
      if (V51 and i >= up) or (not V51 and i == up - 1) then fail("invalid order function for sorting") end
      i = i + 1
      ai = get(t, i)
    end
    j = j - 1
    local aj = get(t, j)
    while lt(comp, p, aj) do
      if (V51 and j <= lo) or (not V51 and j < i) then fail("invalid order function for sorting") end
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

-- Lua 5.3/5.4's auxsort: the pivot in the middle, or at a random place of the middle half once a
-- partition was badly unbalanced (Lua 5.1's: always the middle); the shorter side first.
local RANLIMIT = 100
local seed = 0
local function randomize()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed
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
    median(t, comp, lo, p, up)
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
    if not V51 and up - lo > 128 * n + 127 then rnd = randomize() end
  end
end

-- table.sort(t [, comp]). Lua 5.3+ read the length through __len and check the comparator only when
-- there is something to sort; Lua 5.1 always checks it.
local function sort(...)
  local t, comp = ...
  check_table(select("#", ...), t)
  local n = #t
  if V51 then
    check_comp(comp)
  else
    n = tointeger(n)
    if not n then error("object length is not an integer", 2) end
    if n < 2 then return end
    if n >= 2147483647 then error("bad argument #1 to 'sort' (array too big)", 2) end
    check_comp(comp)
  end
  return rethrow(pcall(auxsort, t, comp, 1, n, 0))
end

return sort
