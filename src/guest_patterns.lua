-- Lua patterns written in Lua, for guest scripts: src/guest.c loads this into a guest state the first
-- time the script uses a pattern with special characters. Lua's own matcher runs a whole backtracking
-- search inside one C call, where no count hook fires: ("a"):rep(30):find(("a?"):rep(30) ..
-- ("a"):rep(30) .. "b") would run for hours. Here every step is Lua code under the run's instruction
-- budget, deadline and memory cap, and is charged to its pattern budget. Literal searches stay in C
-- (`find`: memmem, linear time).
-- The semantics are this VM's string library's: Lua 5.4's, or Lua 5.1's where LuaJIT differs (a start
-- past the end, empty matches in gmatch and gsub, '%' in replacements, some messages).
local find, charge, version, raw = ... -- raw: the library's own functions (the script's are charged)
local byte, sub, char, format = raw.byte, raw.sub, raw.char, raw.format
local concat, unpack = raw.concat, raw.unpack
local type, tostring, tonumber, error, pcall, rawget = raw.type, raw.tostring, raw.tonumber, raw.error, raw.pcall,
  raw.rawget
local floor, ceil, tointeger = raw.floor, raw.ceil, raw.tointeger
local V51 = version < 502

local MAXCCALLS, MAXCAPTURES = 200, 32
local UNFINISHED, POSITION = -1, -2
local ESC, LPAREN, RPAREN, DOLLAR, DOT, LBRACKET, RBRACKET, CARET = 37, 40, 41, 36, 46, 91, 93, 94
local STAR, PLUS, MINUS, QUESTION = 42, 43, 45, 63
local CHARGE_EVERY = 256

local steps = 0 -- not yet charged
local function tick()
  steps = steps + 1
  if steps >= CHARGE_EVERY then charge(steps); steps = 0 end
end

-- The matcher's own errors are raised as {[RAISED] = message} and re-raised at the caller of
-- string.find & co (as C's luaL_error places them); the script's errors pass through untouched.
local RAISED = {}
local function fail(msg, ...) error({ [RAISED] = format(msg, ...) }, 0) end
local function rethrow(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "table" and rawget(e, RAISED) then error(rawget(e, RAISED), 2) end
  error(e, 0)
end

-- Arguments (errors at level 3: this function, string.*, the script).
local function str(v, i, name)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  error(format("bad argument #%d to '%s' (string expected, got %s)", i, name, t), 3)
end

local function int(v, i, name, default)
  if v == nil then return default end
  local n = tonumber(v)
  if n == nil then error(format("bad argument #%d to '%s' (number expected, got %s)", i, name, type(v)), 3) end
  if V51 then return n >= 0 and floor(n) or ceil(n) end
  local k = tointeger(n)
  if k == nil then
    error(format("bad argument #%d to '%s' (number has no integer representation)", i, name), 3)
  end
  return k
end

-- The first position to try (1-based), or nil when the start is past the end (Lua 5.4).
local function start_at(init, len)
  if V51 then
    if init < 0 then init = len + init + 1 end
    if init < 1 then return 1 end
    return init > len + 1 and len + 1 or init
  end
  if init == 0 or init < -len then init = 1 elseif init < 0 then init = len + init + 1 end
  if init > len + 1 then return nil end
  return init
end

-- Character classes, as in the C locale.
local function match_class(c, cl)
  local lower = (cl >= 65 and cl <= 90) and cl + 32 or cl
  local res
  if lower == 97 then res = (c >= 65 and c <= 90) or (c >= 97 and c <= 122)                 -- %a
  elseif lower == 99 then res = c < 32 or c == 127                                            -- %c
  elseif lower == 100 then res = c >= 48 and c <= 57                                          -- %d
  elseif lower == 103 then res = c > 32 and c < 127                                           -- %g
  elseif lower == 108 then res = c >= 97 and c <= 122                                         -- %l
  elseif lower == 112 then                                                                    -- %p
    res = (c > 32 and c < 48) or (c >= 58 and c <= 64) or (c >= 91 and c <= 96) or (c >= 123 and c <= 126)
  elseif lower == 115 then res = c == 32 or (c >= 9 and c <= 13)                              -- %s
  elseif lower == 117 then res = c >= 65 and c <= 90                                          -- %u
  elseif lower == 119 then res = (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) -- %w
  elseif lower == 120 then res = (c >= 48 and c <= 57) or (c >= 65 and c <= 70) or (c >= 97 and c <= 102) -- %x
  elseif lower == 122 then res = c == 0                                                       -- %z
  else return cl == c end
  if cl ~= lower then return not res end
  return res
end

-- [set] at p in the pattern's bytes pb, its closing ']' at ec.
local function match_bracket(pb, c, p, ec)
  local sig = true
  if pb[p + 1] == CARET then
    sig = false
    p = p + 1
  end
  p = p + 1
  while p < ec do
    local pc = pb[p]
    if pc == ESC then
      if match_class(c, pb[p + 1]) then return sig end
      p = p + 2
    elseif pb[p + 1] == MINUS and p + 2 < ec then
      if pc <= c and c <= pb[p + 2] then return sig end
      p = p + 3
    else
      if pc == c then return sig end
      p = p + 1
    end
  end
  return not sig
end

-- The position after the single-character class at p.
local function class_end(pb, plen, p)
  local c = pb[p]
  p = p + 1
  if c == ESC then
    if p > plen then fail("malformed pattern (ends with '%%')") end
    return p + 1
  elseif c == LBRACKET then
    if pb[p] == CARET then p = p + 1 end
    repeat -- the first character of a set is never its end ("[]]" is a set of ']')
      if p > plen then fail("malformed pattern (missing ']')") end
      local cc = pb[p]
      p = p + 1
      if cc == ESC and p <= plen then p = p + 1 end
    until pb[p] == RBRACKET
    return p + 1
  end
  return p
end

-- Each single-character class becomes a set of bytes (a table indexed by byte), made once per pattern
-- and run, so that testing a character is one table index. The last 64 patterns are kept.
local function byte_set(test)
  local set = {}
  for x = 0, 255 do
    if test(x) then set[x] = true end
  end
  return set
end
local ANY = byte_set(function() return true end)
local CLASS = {}

-- -> class end and byte set of the class at p.
local function item(ms, p)
  local ep = ms.ends[p]
  if ep then return ep, ms.sets[p] end
  local pb = ms.pb
  ep = class_end(pb, ms.plen, p)
  local c = pb[p]
  local set
  if c == DOT then
    set = ANY
  elseif c == ESC then
    local cl = pb[p + 1]
    set = CLASS[cl] or byte_set(function(x) return match_class(x, cl) end)
    CLASS[cl] = set
  elseif c == LBRACKET then
    set = byte_set(function(x) return match_bracket(pb, x, p, ep - 1) end)
  else
    set = { [c] = true }
  end
  ms.ends[p], ms.sets[p] = ep, set
  return ep, set
end

local do_match

local function max_expand(ms, s, set, ep)
  local src, i = ms.src, s
  while set[byte(src, i)] do i = i + 1 end -- past the end, byte() gives nothing and set[nil] is nil
  steps = steps + (i - s)
  while i >= s do
    local res = do_match(ms, i, ep + 1)
    if res then return res end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, set, ep)
  local src = ms.src
  while true do
    local res = do_match(ms, s, ep + 1)
    if res then return res end
    if not set[byte(src, s)] then return nil end
    s = s + 1
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level + 1
  if level > MAXCAPTURES then fail("too many captures") end
  ms.init[level], ms.clen[level], ms.level = s, what, level
  local res = do_match(ms, s, p)
  if not res then ms.level = ms.level - 1 end
  return res
end

local function end_capture(ms, s, p)
  local l = ms.level
  while l >= 1 and ms.clen[l] ~= UNFINISHED do l = l - 1 end
  if l < 1 then fail("invalid pattern capture") end
  ms.clen[l] = s - ms.init[l]
  local res = do_match(ms, s, p)
  if not res then ms.clen[l] = UNFINISHED end
  return res
end

-- %1..%9 in a pattern: the same text as that capture, again.
local function match_capture(ms, s, digit)
  local l = digit - 48
  if l < 1 or l > ms.level or ms.clen[l] == UNFINISHED then
    fail(V51 and "invalid capture index" or "invalid capture index %%%d", l)
  end
  local len = ms.clen[l]
  if len >= 0 and ms.len - s + 1 >= len
      and sub(ms.src, ms.init[l], ms.init[l] + len - 1) == sub(ms.src, s, s + len - 1) then
    return s + len
  end
  return nil
end

-- %bxy at p.
local function match_balance(ms, s, p)
  if p >= ms.plen then fail(V51 and "unbalanced pattern" or "malformed pattern (missing arguments to '%%b')") end
  local src, len = ms.src, ms.len
  local b, e = ms.pb[p], ms.pb[p + 1]
  if s > len or byte(src, s) ~= b then return nil end
  local cont = 1
  for i = s + 1, len do
    local c = byte(src, i)
    if c == e then
      cont = cont - 1
      if cont == 0 then
        steps = steps + (i - s)
        return i + 1
      end
    elseif c == b then
      cont = cont + 1
    end
  end
  steps = steps + (len - s)
  return nil
end

-- -> the position after the match of the pattern from p at src[s..], or nil.
do_match = function(ms, s, p)
  local depth = ms.depth
  if depth == 0 then fail("pattern too complex") end
  ms.depth = depth - 1
  local pb, plen, src = ms.pb, ms.plen, ms.src
  local res
  while true do
    steps = steps + 1
    if steps >= CHARGE_EVERY then charge(steps); steps = 0 end
    if p > plen then res = s break end
    local c = pb[p]
    local n = c == ESC and pb[p + 1]
    if c == LPAREN then
      if pb[p + 1] == RPAREN then res = start_capture(ms, s, p + 2, POSITION)
      else res = start_capture(ms, s, p + 1, UNFINISHED) end
      break
    elseif c == RPAREN then
      res = end_capture(ms, s, p + 1)
      break
    elseif c == DOLLAR and p == plen then
      if s == ms.len + 1 then res = s end
      break
    elseif n == 98 then -- %b
      s = match_balance(ms, s, p + 2)
      if not s then break end
      p = p + 4
    elseif n == 102 then -- %f[set]
      p = p + 2
      if pb[p] ~= LBRACKET then fail("missing '[' after '%%f' in pattern") end
      local ep = class_end(pb, plen, p)
      local prev = s == 1 and 0 or byte(src, s - 1)
      local cur = s <= ms.len and byte(src, s) or 0
      if match_bracket(pb, prev, p, ep - 1) or not match_bracket(pb, cur, p, ep - 1) then break end
      p = ep
    elseif n and n >= 48 and n <= 57 then -- %0-%9
      s = match_capture(ms, s, n)
      if not s then break end
      p = p + 2
    else
      local ep, set = item(ms, p)
      local suffix = pb[ep]
      if not set[byte(src, s)] then
        if suffix ~= STAR and suffix ~= QUESTION and suffix ~= MINUS then break end
        p = ep + 1 -- accept empty
      elseif suffix == QUESTION then
        local r = do_match(ms, s + 1, ep + 1)
        if r then res = r break end
        p = ep + 1
      elseif suffix == PLUS then
        res = max_expand(ms, s + 1, set, ep)
        break
      elseif suffix == STAR then
        res = max_expand(ms, s, set, ep)
        break
      elseif suffix == MINUS then
        res = min_expand(ms, s, set, ep)
        break
      else
        s, p = s + 1, ep
      end
    end
  end
  ms.depth = depth
  return res
end

local compiled, ncompiled = {}, 0
local function state(src, pat)
  local c = compiled[pat]
  if not c then
    if ncompiled >= 64 then compiled, ncompiled = {}, 0 end
    local pb = {}
    for i = 1, #pat do pb[i] = byte(pat, i) end
    c = { pb = pb, ends = {}, sets = {} }
    compiled[pat], ncompiled = c, ncompiled + 1
  end
  local plen = #pat
  if V51 then plen = (find(pat, "\0", 1, true) or plen + 1) - 1 end -- LuaJIT: the pattern ends at a NUL
  return { src = src, len = #src, plen = plen, pb = c.pb, ends = c.ends, sets = c.sets, level = 0,
           depth = MAXCCALLS, init = {}, clen = {} }
end

-- Capture i (1-based) of a match src[s..e-1]; with no captures, capture 1 is the whole match.
local function capture(ms, i, s, e)
  if i > ms.level then
    if i ~= 1 then fail(V51 and "invalid capture index" or "invalid capture index %%%d", i) end
    return sub(ms.src, s, e - 1)
  end
  local l = ms.clen[i]
  if l == UNFINISHED then fail("unfinished capture") end
  if l == POSITION then return ms.init[i] end
  return sub(ms.src, ms.init[i], ms.init[i] + l - 1)
end

-- All captures (s == nil: only explicit ones, for find).
local function captures(ms, s, e)
  local n = (ms.level == 0 and s) and 1 or ms.level
  local t = {}
  for i = 1, n do t[i] = capture(ms, i, s, e) end
  return unpack(t, 1, n)
end

-- The bytes a match starting at pattern position p must begin with, when the pattern says (its first
-- item is a class that matches once or more): start positions can skip the others in a tight loop.
local function first_set(ms, p)
  local pb, plen = ms.pb, ms.plen
  while p <= plen and pb[p] == LPAREN do p = p + (pb[p + 1] == RPAREN and 2 or 1) end
  local c = pb[p]
  if p > plen or c == RPAREN or (c == DOLLAR and p == plen) then return nil end
  if c == ESC then
    local n = pb[p + 1]
    if n == 98 or n == 102 or (n and n >= 48 and n <= 57) then return nil end
  end
  local ep, set = item(ms, p)
  local suffix = pb[ep]
  if suffix == STAR or suffix == QUESTION or suffix == MINUS then return nil end
  return set
end

-- The next position from s where a match may start (len + 1 when none can).
local function skip(ms, set, s)
  if not set then return s end
  local src, len, i = ms.src, ms.len, s
  while i <= len and not set[byte(src, i)] do i = i + 1 end
  steps = steps + (i - s)
  return i <= len and i or len + 1
end

-- A pattern match/gmatch/gsub may search for as plain text: no special characters (the C find says
-- so: it asks for the matcher otherwise), no ')' (an error for the matcher), and for LuaJIT no NUL
-- (its matcher ends a pattern there).
local function literal(p)
  return p ~= "" and find("", p) ~= true and not find(p, ")", 1, true) and not (V51 and find(p, "\0", 1, true))
end

local function find_aux(s, p, init, is_find)
  local s1 = start_at(init, #s)
  if not s1 then return nil end
  local anchor = byte(p, 1) == CARET
  local ms = state(s, p)
  local first = anchor and 2 or 1
  local set = not anchor and first_set(ms, first)
  repeat
    s1 = skip(ms, set, s1)
    ms.level, ms.depth = 0, MAXCCALLS
    local e = do_match(ms, s1, first)
    if e then
      if is_find then return s1, e - 1, captures(ms, nil, 0) end
      return captures(ms, s1, e)
    end
    s1 = s1 + 1
  until anchor or s1 > ms.len + 1
  return nil
end

local M = {}

function M.find(s, p, init)
  s, p = str(s, 1, "find"), str(p, 2, "find")
  return rethrow(pcall(find_aux, s, p, int(init, 3, "find", 1), true))
end

function M.match(s, p, init)
  s, p = str(s, 1, "match"), str(p, 2, "match")
  init = int(init, 3, "match", 1)
  if literal(p) then
    local i, j = find(s, p, init, true)
    if i then return sub(s, i, j) end
    return nil
  end
  return rethrow(pcall(find_aux, s, p, init, false))
end

function M.gmatch(s, p, init)
  s, p = str(s, 1, "gmatch"), str(p, 2, "gmatch")
  local len = #s
  local src = V51 and 1 or (start_at(int(init, 3, "gmatch", 1), len) or len + 2)
  local ms, lastmatch = state(s, p), nil
  local lit = literal(p)
  local set -- the pattern is read on the first step (errors belong there, as in Lua)
  local function step()
    if lit then
      local i, j = find(s, p, src, true)
      if not i then src = len + 2 return nil end
      src = j + 1
      tick()
      return sub(s, i, j)
    end
    if set == nil then set = first_set(ms, 1) or false end
    while src <= len + 1 do
      src = skip(ms, set, src)
      ms.level, ms.depth = 0, MAXCCALLS
      local e = do_match(ms, src, 1)
      if e and (V51 or e ~= lastmatch) then
        local start = src
        src, lastmatch = e, e
        if V51 and e == start then src = e + 1 end
        return captures(ms, start, e)
      end
      src = src + 1
    end
    return nil
  end
  return function() return rethrow(pcall(step)) end
end

-- The text that replaces the match src[s..e-1].
local function add_s(ms, s, e, repl)
  if not find(repl, "%", 1, true) then return repl end
  local out, i, l = {}, 1, #repl
  while i <= l do
    local j = find(repl, "%", i, true)
    if not j then
      out[#out + 1] = sub(repl, i)
      break
    end
    out[#out + 1] = sub(repl, i, j - 1)
    local c = byte(repl, j + 1)
    if c == ESC then
      out[#out + 1] = "%"
    elseif c and c >= 48 and c <= 57 then
      out[#out + 1] = c == 48 and sub(ms.src, s, e - 1) or tostring(capture(ms, c - 48, s, e))
    elseif V51 then
      out[#out + 1] = c and char(c) or "\0"
    else
      fail("invalid use of '%%' in replacement string")
    end
    i = j + 2
  end
  return concat(out)
end

local function replacement(ms, s, e, repl, tr)
  local v
  if tr == "string" then return add_s(ms, s, e, repl) end
  if tr == "function" then v = repl(captures(ms, s, e)) else v = repl[capture(ms, 1, s, e)] end
  if not v then return sub(ms.src, s, e - 1) end
  local tv = type(v)
  if tv ~= "string" and tv ~= "number" then fail("invalid replacement value (a %s)", tv) end
  return tostring(v)
end

local function gsub_aux(s, p, repl, tr, max_n)
  local len = #s
  local anchor = byte(p, 1) == CARET
  local ms = state(s, p)
  local first = anchor and 2 or 1
  local out, src, copied, n, lastmatch = {}, 1, 1, 0, nil
  local lit = not anchor and literal(p)
  local set = anchor or lit or nil -- read on the first match (errors only if one is tried, as in Lua)
  while n < max_n do
    if set == nil then set = first_set(ms, first) or false end
    local e
    if lit then
      local i, j = find(s, p, src, true)
      if not i then break end
      src, e = i, j + 1
      tick()
    else
      src = skip(ms, set ~= true and set, src)
      ms.level, ms.depth = 0, MAXCCALLS
      e = do_match(ms, src, first)
    end
    if e and (V51 or e ~= lastmatch) then
      n = n + 1
      if copied < src then out[#out + 1] = sub(s, copied, src - 1) end
      out[#out + 1] = replacement(ms, src, e, repl, tr)
      copied, lastmatch = e, e
      if e > src then src = e elseif src <= len then src = src + 1 else break end
    elseif src <= len then
      src = src + 1
    else
      break
    end
    if anchor then break end
  end
  if copied <= len then out[#out + 1] = sub(s, copied, len) end
  return concat(out), n
end

function M.gsub(s, p, repl, max_n)
  s, p = str(s, 1, "gsub"), str(p, 2, "gsub")
  local tr = type(repl)
  if tr ~= "string" and tr ~= "number" and tr ~= "table" and tr ~= "function" then
    error(format("bad argument #3 to 'gsub' (string/function/table expected%s)", V51 and "" or (", got " .. tr)), 2)
  end
  if tr == "number" then repl, tr = tostring(repl), "string" end
  return rethrow(pcall(gsub_aux, s, p, repl, tr, int(max_n, 4, "gsub", #s + 1)))
end

return M
