-- The Lua pattern matcher of guest states (src/guest_patterns.lua, loaded by src/guest.c): it must
-- answer exactly as this VM's own string library does (Lua 5.4's, or LuaJIT's 5.1 semantics), errors
-- included. Curated cases and a seeded fuzz run in a real guest state and in the host, and every
-- result is compared.
local vm = require "freshbooks.vm"
local guest = require "freshbooks.guest"

-- Runs src in a guest state of its own (no session needed: no API calls) -> kind, payload.
local function in_guest(src, budget)
  local b = {}
  for k, v in pairs(guest.budget) do b[k] = v end
  for k, v in pairs(budget or {}) do b[k] = v end
  local g = assert(vm.new(src, "=patterns", b))
  local kind, p = g:resume()
  g:close()
  return kind, p
end

local function lit(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do t[#t + 1] = "[" .. lit(k) .. "]=" .. lit(x) end
    return "{" .. table.concat(t, ",") .. "}"
  end
  return tostring(v)
end

-- Every function of a case, with results (or the error) as one comparable string each.
local RUN = [[
local cases = ...
local function show(ok, ...)
  local t = { tostring(ok) }
  for i = 1, select("#", ...) do t[#t + 1] = type((select(i, ...))) .. ":" .. tostring((select(i, ...))) end
  return table.concat(t, "|")
end
local fnrep = function(a) if a == "b" then return false end return "[" .. tostring(a) .. "]" end
local tbrep = { a = "A", b = true, c = false, [1] = "one" }
local out = {}
for i, c in ipairs(cases) do
  local s, p, init, repl, max = c[1], c[2], c[3], c[4], c[5]
  local r = {}
  r[1] = show(pcall(string.find, s, p, init))
  r[2] = show(pcall(string.find, s, p, init, true))
  r[3] = show(pcall(string.match, s, p, init))
  local ok, it = pcall(string.gmatch, s, p)
  local g = {}
  if ok then
    local ok2, e = pcall(function()
      for a, b in it do g[#g + 1] = tostring(a) .. "," .. tostring(b); if #g > 50 then break end end
    end)
    if not ok2 then g[#g + 1] = "ERR:" .. tostring(e) end
  else
    g[1] = "ERR:" .. tostring(it)
  end
  r[4] = table.concat(g, ";")
  r[5] = show(pcall(string.gsub, s, p, repl, max))
  r[6] = show(pcall(string.gsub, s, p, fnrep, max))
  r[7] = show(pcall(string.gsub, s, p, tbrep, max))
  out[i] = r
end
return out
]]
local NAMES = { "find", "find plain", "match", "gmatch", "gsub", "gsub function", "gsub table" }

-- -> number of mismatches (the first ones printed)
local function compare(cases)
  local parts = {}
  for i, c in ipairs(cases) do
    parts[i] = "{" .. lit(c[1]) .. "," .. lit(c[2]) .. "," .. lit(c[3]) .. "," .. lit(c[4]) .. "," .. lit(c[5]) .. "}"
  end
  local src = "local cases = {" .. table.concat(parts, ",\n") .. "}\nreturn (function(...)\n" .. RUN
    .. "\nend)(cases)"
  local host = assert((loadstring or load)(src, "=patterns"))()
  local kind, p = in_guest(src, { instructions = 1e10, patterns = 1e12, time = 300 })
  assert.are.equal("done", kind, p and p.message)
  local bad = 0
  for i, c in ipairs(cases) do
    for j = 1, 7 do
      local a, b = host[i][j], p[1][i][j]
      -- Bad-argument messages name the function as it was called: compare the rest only.
      if a ~= b and not (a:find("bad argument", 1, true) and b:find("bad argument", 1, true)) then
        bad = bad + 1
        if bad <= 10 then
          print(("mismatch in %s: s=%q p=%q init=%s repl=%s max=%s\n  host:  %s\n  guest: %s"):format(NAMES[j],
            c[1], c[2], tostring(c[3]), lit(c[4]), tostring(c[5]), a, b))
        end
      end
    end
  end
  return bad
end

local REPLS = { "%0", "<%1>", "%%", "x", "%2", "", "%", "%x", 7 }
local function with_args(cases, seed)
  math.randomseed(seed)
  for i, c in ipairs(cases) do
    c[3] = c[3] or ((i % 5 == 0) and math.random(-4, 15) or nil) -- init
    c[4] = c[4] or REPLS[(i % #REPLS) + 1]                        -- gsub replacement
    c[5] = c[5] or ((i % 7 == 0) and math.random(0, 3) or nil)    -- gsub max
  end
  return cases
end

-- On plain Lua 5.1 the matcher answers as LuaJIT does (its 5.1 flavour), which differs from PUC 5.1's
-- own library in corners (%g, a NUL in a pattern, positions in error messages): no reference to compare.
local it_vm = (_VERSION == "Lua 5.1" and not rawget(_G, "jit"))
  and function(name) pending(name .. " (plain Lua 5.1: the matcher has LuaJIT's flavour)") end or it

describe("guest patterns", function()
  it_vm("answer as this VM's string library does: curated cases", function()
    local cases = with_args({
      { "hello world", "o" }, { "hello world", "(o)(r)" }, { "hello", "l+" }, { "hello", "l*" }, { "hello", "l-" },
      { "hello", "l?" }, { "  trim me  ", "^%s*(.-)%s*$" }, { "key=value", "(%w+)=(%w+)" }, { "a,b,,c", "([^,]*)" },
      { "THE (quick) fox", "%((%a+)%)" }, { "f(a(b)c)d", "%b()" }, { "THE (quick) fox", "%f[%a]%a+" },
      { "hello", "()ll()" }, { "abcabc", "(abc)%1" }, { "", "" }, { "abc", "" }, { "abc", "^" }, { "abc", "$" },
      { "abc", "^$" }, { "a.b", "%." }, { "a]b", "]" }, { "a]b", "[]]" }, { "a-b", "[a-]" }, { "a^b", "[%^]" },
      { "a^b", "[^^]" }, { "x%y", "%%" }, { "abc", "[a-c]+" }, { "ABC", "%u+" }, { "abc123", "%d+$" },
      { "abc", "%" }, { "abc", "[a" }, { "abc", "(a" }, { "abc", "a)" }, { "abc", "%1" }, { "abc", "%b" },
      { "abc", "%f" }, { "abc", "%fa" }, { "aaa", "a-b" }, { "aaab", "a-b" }, { "x", "[%a-z]" },
      { "2024-01-31", "(%d+)-(%d+)-(%d+)" }, { "a\0b", "%z" }, { "a\0b", "\0" }, { "a\0b", "[\0]" }, { "ab", "%g" },
      { "\t x", "%s+" }, { "abc", "%w%w%w%w" }, { "aaaaaaaaaa", ("a?"):rep(5) .. ("a"):rep(5) },
      { "hello world from lua", "%a+" }, { "one two", "(%a+) (%a+)" }, { "x = 1, y = 22", "(%w+)%s*=%s*(%d+)" },
      { "<a><b></b></a>", "<(%w+)>" }, { "path/to/file.txt", "([^/]+)%.(%w+)$" }, { "CamelCaseWords", "%u%l+" },
      { "  a  b  ", "%s*" }, { "aaa", "a*" }, { "aaa", "a-" }, { "abc", ".-" }, { "abc", "()" },
      { ("x"):rep(40), ("x?"):rep(20) .. ("x"):rep(20) }, { "[[x]]", "%[%[(.-)%]%]" }, { "%d", "%%d" },
      { "a+b", "a+b" }, { "a+b", "a%+b" }, { "tab\tsep", "[\t]" }, { "\255\128", "[\128-\255]+" },
      { "hello", "h", -10 }, { "hello", "o", -1 }, { "hello", "l", 0 }, { "hello", "", 10 }, { "hello", "()", 6 },
      { "hello", "x*", 3 }, { "a.b.c", ".", 2 }, { "abc", "b", 2.0 }, { "abc", "b", "2" }, { "abc", 2 }, { 123, "2" },
      { "abc", "%w", nil, "%0%0" }, { "abc", "(%w)", nil, "%1-" }, { "abc", "()%w", nil, "%1" },
      { "abc", "%w", nil, "%9" }, { "hello world", "o", nil, "0", 1 }, { "hello", "l", nil, { l = "L" } },
      { "hello", "", nil, "-" }, { "abc", "%w*", nil, "-" }, { "a b", "%s*", nil, "_" }, { "abc", "b*", nil, "X" },
    }, 1)
    assert.are.equal(0, compare(cases))
  end)

  it_vm("answer as this VM's string library does: a seeded fuzz", function()
    local ALPHA = { "a", "b", "c", "(", ")", "%", ".", "[", "]", "^", "$", "*", "+", "-", "?", "1", "2", "d", "w",
                    "s", "f", "b", " ", "x", "0", "A", "\0" }
    local SUBJ = { "a", "b", "c", " ", "(", ")", "1", "2", "x", "A", ".", "%", "-", "\0", "[", "]" }
    local function rnd(set, max)
      local t = {}
      for i = 1, math.random(0, max) do t[i] = set[math.random(#set)] end
      return table.concat(t)
    end
    math.randomseed(20240611)
    local cases = {}
    for i = 1, 1500 do cases[i] = { rnd(SUBJ, 12), rnd(ALPHA, 6) } end
    for _ = 1, 100 do cases[#cases + 1] = { rnd(SUBJ, 300), rnd(ALPHA, 8) } end
    assert.are.equal(0, compare(with_args(cases, 7)))
  end)

  it("keep literal searches linear, and ordinary patterns fast enough", function()
    -- Lua's own plain find is quadratic on this one; in a guest it is memmem.
    local kind, p = in_guest([[
      local s = ("a"):rep(4e6)
      local t0 = os.clock()
      local i = s:find(("a"):rep(2e6) .. "b", 1, true)
      local plain = os.clock() - t0
      local text = ("lorem ipsum dolor sit amet, 12345 consectetur  adipiscing\n"):rep(200)
      t0 = os.clock()
      local words = 0
      for _ in text:gmatch("%a+") do words = words + 1 end
      local squeezed = text:gsub("%s+", " ")
      local digits = select(2, text:gsub("%d", "%0"))
      return i, plain, words, #squeezed, digits, os.clock() - t0, #text
    ]])
    assert.are.equal("done", kind, p and p.message)
    local n = 0
    local text = ("lorem ipsum dolor sit amet, 12345 consectetur  adipiscing\n"):rep(200)
    for _ in text:gmatch("%a+") do n = n + 1 end
    assert.is_nil(p[1])
    assert.are.same({ n, #text:gsub("%s+", " "), select(2, text:gsub("%d", "%0")) }, { p[3], p[4], p[5] })
    print(("\nguest patterns (%s): plain find of 2 MB in 4 MB: %.3f s; gmatch + 2 gsub over %d bytes: %.3f s")
      :format(_VERSION, p[2], p[7], p[6]))
    assert.is_true(p[2] < 5)
  end)
end)

-- table.sort, rebuilt in Lua (src/guest_sort.lua): the same order as the VM's own sort, element for
-- element (the same algorithm: equal keys land in the same places), and the same errors.
describe("the guest's table.sort", function()
  local SORTS = [[
    local inputs = ...
    local out = {}
    local function run(f, ...)
      local ok, e = pcall(f, ...)
      if ok then return "ok" end
      if type(e) == "table" then return "ERR:a table, code " .. tostring(e.code) end
      return "ERR:" .. tostring(e):gsub("^[^:]*:%d+: ", "")
    end
    for i, t in ipairs(inputs) do
      local a, b, c = {}, {}, {}
      for j, v in ipairs(t) do a[j], b[j], c[j] = v, { v % 7, j }, tostring(v) end
      local r = { run(table.sort, a) }
      r[2] = run(table.sort, b, function(x, y) return x[1] < y[1] end) -- equal keys: the ids say where
      r[3] = run(table.sort, c, function(x, y) return x > y end)
      local ids = {}
      for j, v in ipairs(b) do ids[j] = v[2] end
      out[i] = table.concat(r, " ") .. " | " .. table.concat(a, ",") .. " | " .. table.concat(ids, ",") .. " | "
        .. table.concat(c, ",")
    end
    local errs = {}
    for _, f in ipairs{
      function() table.sort() end, function() table.sort(5) end, function() table.sort({ 2, 1 }, 3) end,
      function() table.sort({ 3, 1, "x" }) end, function() table.sort({ {}, {} }) end,
      function() table.sort({ 1, nil, 3 }) end,
      function() local t = {} for i = 1, 50 do t[i] = i % 5 end table.sort(t, function() return true end) end,
      function() table.sort({ 1, 2, 3 }, function(x) error({ code = x }) end) end,
    } do errs[#errs + 1] = run(f) end
    out[#out + 1] = table.concat(errs, "\n")
    return table.concat(out, "\n")
  ]]
  it("sorts as the VM's own sort, errors included", function()
    local seed, inputs = 20240101, {}
    local function rand(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n end
    for size = 0, 40 do
      local t = {}
      for i = 1, size do t[i] = rand(size + 3) end
      inputs[#inputs + 1] = t
    end
    for _ = 1, 10 do
      local t = {}
      for i = 1, 120 do t[i] = rand(1000) end
      inputs[#inputs + 1] = t
    end
    local sorted = {}
    for i = 1, 120 do sorted[i] = i end
    inputs[#inputs + 1] = sorted
    local host = assert((loadstring or load)(SORTS))(inputs)
    local hl = {}
    for l in host:gmatch("[^\n]+") do hl[#hl + 1] = l end
    for run = 1, 2 do -- the sort chunk compiled from its text, then loaded from its (stripped) bytecode
      local kind, p = in_guest("local inputs = " .. lit(inputs) .. "\n" .. SORTS:gsub("local inputs = %.%.%.", ""))
      assert.are.equal("done", kind, p and p.message)
      local gl = {}
      for l in p[1]:gmatch("[^\n]+") do gl[#gl + 1] = l end
      for i = 1, math.max(#hl, #gl) do assert.are.equal(hl[i], gl[i], "run " .. run .. ", line " .. i) end
    end
  end)
end)
