-- Text for people. Everything the command prints that came from the network (FreshBooks' values and
-- messages, request paths on the login port) passes through here: valid UTF-8, no control characters a
-- terminal would act on, measured in terminal columns rather than bytes.
--   text.utf8(s)          valid UTF-8: every byte of an invalid sequence becomes U+FFFD
--   text.clean(s, lines)  utf8, and controls made visible (\x1b, \u009b); `lines` keeps \n and \t
--   text.width(s)         columns on a terminal (CJK and emoji 2, combining marks 0)
--   text.fit(s, w)        at most w columns, "…" where it was cut;  text.pad(s, w, right)
--   text.grid(rows, cols, width)   a table fitted to `width` columns (nil when it cannot fit)
--   text.pretty_json(s)   JSON text indented by 2 (order, numbers and escapes as they were) | nil
--   text.suggest(word, candidates)   the candidate a typo most likely meant | nil; text.unknown(...) says so
--   text.json(v)          JSON text of the command's own documents (keys sorted, valid UTF-8, "/" as is);
--                         text.array(t) marks a table that is a list even when empty
local text = {}

local byte, concat = string.byte, table.concat
local REPLACEMENT = "\239\191\189" -- U+FFFD

-- The length of a valid UTF-8 sequence starting at i (strict: no overlong forms, no surrogates,
-- nothing above U+10FFFF), or nil.
local function sequence(s, i)
  local a, b, c, d = byte(s, i, i + 3)
  if a < 0x80 then return 1 end
  local function cont(x) return x and x >= 0x80 and x <= 0xBF end
  if a >= 0xC2 and a <= 0xDF then return cont(b) and 2 or nil end
  if a >= 0xE0 and a <= 0xEF then
    local lo, hi = 0x80, 0xBF
    if a == 0xE0 then lo = 0xA0 elseif a == 0xED then hi = 0x9F end
    return b and b >= lo and b <= hi and cont(c) and 3 or nil
  end
  if a >= 0xF0 and a <= 0xF4 then
    local lo, hi = 0x80, 0xBF
    if a == 0xF0 then lo = 0x90 elseif a == 0xF4 then hi = 0x8F end
    return b and b >= lo and b <= hi and cont(c) and cont(d) and 4 or nil
  end
end

local strict_len = rawget(_G, "utf8") and _VERSION == "Lua 5.4" and utf8.len -- strict in 5.4 only

function text.utf8(s)
  if not s:find("[\128-\255]") or (strict_len and strict_len(s)) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local j = s:find("[\128-\255]", i)
    if not j then out[#out + 1] = s:sub(i) break end
    if j > i then out[#out + 1] = s:sub(i, j - 1) end
    local len = sequence(s, j)
    if len then out[#out + 1] = s:sub(j, j + len - 1) i = j + len
    else out[#out + 1] = REPLACEMENT i = j + 1 end
  end
  return concat(out)
end

-- C1 controls (U+0080-U+009F: U+009B is a CSI to some terminals), bidirectional overrides and
-- isolates, and the Unicode line separators: shown as \uXXXX.
local UNICODE_CONTROLS = { "\194[\128-\159]", "\226\128[\142\143\168-\174]", "\226\129[\166-\169]", "\216\156" }

-- The code point of one valid UTF-8 sequence.
local function decode(seq)
  local a, b, c, d = byte(seq, 1, 4)
  if #seq == 1 then return a end
  if #seq == 2 then return (a - 0xC0) * 64 + (b - 0x80) end
  if #seq == 3 then return ((a - 0xE0) * 64 + (b - 0x80)) * 64 + (c - 0x80) end
  return (((a - 0xF0) * 64 + (b - 0x80)) * 64 + (c - 0x80)) * 64 + (d - 0x80)
end

function text.clean(s, lines)
  s = text.utf8(tostring(s))
  s = s:gsub(lines and "[%z\1-\8\11-\31\127]" or "[%z\1-\31\127]", function(ch)
    return ("\\x%02x"):format(byte(ch))
  end)
  if s:find("[\194\216\226]") then
    for _, p in ipairs(UNICODE_CONTROLS) do
      s = s:gsub(p, function(seq) return ("\\u%04x"):format(decode(seq)) end)
    end
  end
  return s
end

-- Display width ---------------------------------------------------------------------------------

-- Code points that take two columns (East Asian Wide and Fullwidth, emoji presentation), and those
-- that take none (combining marks, joiners, variation selectors), as sorted ranges.
local WIDE = {
  0x1100, 0x115F, 0x231A, 0x231B, 0x2329, 0x232A, 0x23E9, 0x23EC, 0x23F0, 0x23F0, 0x23F3, 0x23F3,
  0x25FD, 0x25FE, 0x2614, 0x2615, 0x2648, 0x2653, 0x267F, 0x267F, 0x2693, 0x2693, 0x26A1, 0x26A1,
  0x26AA, 0x26AB, 0x26BD, 0x26BE, 0x26C4, 0x26C5, 0x26CE, 0x26CE, 0x26D4, 0x26D4, 0x26EA, 0x26EA,
  0x26F2, 0x26F3, 0x26F5, 0x26F5, 0x26FA, 0x26FA, 0x26FD, 0x26FD, 0x2705, 0x2705, 0x270A, 0x270B,
  0x2728, 0x2728, 0x274C, 0x274C, 0x274E, 0x274E, 0x2753, 0x2755, 0x2757, 0x2757, 0x2795, 0x2797,
  0x27B0, 0x27B0, 0x27BF, 0x27BF, 0x2B1B, 0x2B1C, 0x2B50, 0x2B50, 0x2B55, 0x2B55, 0x2E80, 0x303E,
  0x3041, 0x3247, 0x3250, 0x4DBF, 0x4E00, 0xA4CF, 0xA960, 0xA97F, 0xAC00, 0xD7A3, 0xF900, 0xFAFF,
  0xFE10, 0xFE19, 0xFE30, 0xFE6F, 0xFF00, 0xFF60, 0xFFE0, 0xFFE6, 0x16FE0, 0x16FE4, 0x17000, 0x18CFF,
  0x1B000, 0x1B2FF, 0x1F004, 0x1F004, 0x1F0CF, 0x1F0CF, 0x1F18E, 0x1F18E, 0x1F191, 0x1F19A,
  0x1F200, 0x1F265, 0x1F300, 0x1F320, 0x1F32D, 0x1F335, 0x1F337, 0x1F37C, 0x1F37E, 0x1F393,
  0x1F3A0, 0x1F3CA, 0x1F3CF, 0x1F3D3, 0x1F3E0, 0x1F3F0, 0x1F3F4, 0x1F3F4, 0x1F3F8, 0x1F43E,
  0x1F440, 0x1F440, 0x1F442, 0x1F4FC, 0x1F4FF, 0x1F53D, 0x1F54B, 0x1F54E, 0x1F550, 0x1F567,
  0x1F57A, 0x1F57A, 0x1F595, 0x1F596, 0x1F5A4, 0x1F5A4, 0x1F5FB, 0x1F64F, 0x1F680, 0x1F6C5,
  0x1F6CC, 0x1F6CC, 0x1F6D0, 0x1F6D2, 0x1F6D5, 0x1F6D7, 0x1F6DC, 0x1F6DF, 0x1F6EB, 0x1F6EC,
  0x1F6F4, 0x1F6FC, 0x1F7E0, 0x1F7EB, 0x1F7F0, 0x1F7F0, 0x1F90C, 0x1F93A, 0x1F93C, 0x1F945,
  0x1F947, 0x1F9FF, 0x1FA70, 0x1FAFF, 0x20000, 0x2FFFD, 0x30000, 0x3FFFD,
}
local ZERO = {
  0x0300, 0x036F, 0x0483, 0x0489, 0x0591, 0x05BD, 0x05BF, 0x05BF, 0x05C1, 0x05C2, 0x05C4, 0x05C5,
  0x05C7, 0x05C7, 0x0610, 0x061A, 0x064B, 0x065F, 0x0670, 0x0670, 0x06D6, 0x06DC, 0x06DF, 0x06E4,
  0x06E7, 0x06E8, 0x06EA, 0x06ED, 0x0711, 0x0711, 0x0730, 0x074A, 0x07A6, 0x07B0, 0x07EB, 0x07F3,
  0x0816, 0x082D, 0x0859, 0x085B, 0x0898, 0x089F, 0x08CA, 0x08E1, 0x08E3, 0x0902, 0x093A, 0x093A,
  0x093C, 0x093C, 0x0941, 0x0948, 0x094D, 0x094D, 0x0951, 0x0957, 0x0962, 0x0963, 0x0981, 0x0981,
  0x09BC, 0x09BC, 0x09C1, 0x09C4, 0x09CD, 0x09CD, 0x09E2, 0x09E3, 0x0A01, 0x0A02, 0x0A3C, 0x0A51,
  0x0A70, 0x0A71, 0x0A75, 0x0A75, 0x0A81, 0x0A82, 0x0ABC, 0x0ABC, 0x0AC1, 0x0AC8, 0x0ACD, 0x0ACD,
  0x0B01, 0x0B01, 0x0B3C, 0x0B3C, 0x0B41, 0x0B44, 0x0B4D, 0x0B4D, 0x0BC0, 0x0BC0, 0x0BCD, 0x0BCD,
  0x0C3E, 0x0C40, 0x0C46, 0x0C56, 0x0CBC, 0x0CBC, 0x0CCC, 0x0CCD, 0x0D41, 0x0D44, 0x0D4D, 0x0D4D,
  0x0E31, 0x0E31, 0x0E34, 0x0E3A, 0x0E47, 0x0E4E, 0x0EB1, 0x0EB1, 0x0EB4, 0x0EBC, 0x0EC8, 0x0ECE,
  0x0F18, 0x0F19, 0x0F35, 0x0F35, 0x0F37, 0x0F37, 0x0F39, 0x0F39, 0x0F71, 0x0F7E, 0x0F80, 0x0F84,
  0x102D, 0x1030, 0x1032, 0x1037, 0x1039, 0x103A, 0x1160, 0x11FF, 0x135D, 0x135F, 0x1712, 0x1714,
  0x17B4, 0x17B5, 0x17B7, 0x17BD, 0x17C6, 0x17C6, 0x17C9, 0x17D3, 0x180B, 0x180F, 0x1AB0, 0x1AFF,
  0x1DC0, 0x1DFF, 0x200B, 0x200F, 0x202A, 0x202E, 0x2060, 0x2064, 0x20D0, 0x20F0, 0x302A, 0x302D,
  0x3099, 0x309A, 0xFE00, 0xFE0F, 0xFE20, 0xFE2F, 0xFEFF, 0xFEFF, 0x1F3FB, 0x1F3FF, 0xE0001, 0xE007F,
  0xE0100, 0xE01EF,
}

local function in_ranges(t, cp)
  local lo, hi = 1, #t / 2
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if cp < t[2 * mid - 1] then hi = mid - 1
    elseif cp > t[2 * mid] then lo = mid + 1
    else return true end
  end
  return false
end

local function cell_width(seq)
  if #seq == 1 then return 1 end
  local cp = decode(seq)
  if cp < 0x0300 then return 1 end
  if in_ranges(ZERO, cp) then return 0 end
  if cp >= 0x1100 and in_ranges(WIDE, cp) then return 2 end
  return 1
end

local CHAR = "[%z\1-\127\194-\244][\128-\191]*"

-- Columns of a cleaned string (valid UTF-8, no controls).
function text.width(s)
  if not s:find("[\128-\255]") then return #s end
  local w = 0
  for seq in s:gmatch(CHAR) do w = w + cell_width(seq) end
  return w
end

function text.fit(s, w)
  if text.width(s) <= w then return s end
  if w <= 0 then return "" end
  local out, used = {}, 0
  for seq in s:gmatch(CHAR) do
    local cw = cell_width(seq)
    if used + cw > w - 1 then break end
    out[#out + 1], used = seq, used + cw
  end
  return concat(out) .. "…"
end

function text.pad(s, w, right)
  local gap = w - text.width(s)
  if gap <= 0 then return s end
  return right and ((" "):rep(gap) .. s) or (s .. (" "):rep(gap))
end

-- Tables -------------------------------------------------------------------------------------------

-- rows: arrays of cells (cleaned by the caller); cols: { {right = bool, min = n (may shrink to n)} }.
-- -> the widths of the columns (natural, or shrunk so the lines fit in `width` with `indent` and one
-- space between columns, the widest first), or nil when even the smallest layout does not fit.
function text.grid(rows, cols, width, indent)
  local widths, total = {}, indent or 0
  for i = 1, #cols do
    local w = 0
    for _, r in ipairs(rows) do w = math.max(w, text.width(r[i] or "")) end
    widths[i] = w
    total = total + w + (i > 1 and 1 or 0)
  end
  if not width or total <= width then return widths end
  -- The widest column that may shrink gives up one character at a time: long columns level down
  -- together and short ones keep their text.
  while total > width do
    local widest
    for i, c in ipairs(cols) do
      if c.min and widths[i] > c.min and (not widest or widths[i] > widths[widest]) then widest = i end
    end
    if not widest then return nil end
    widths[widest], total = widths[widest] - 1, total - 1
  end
  return widths
end

-- A row of cells laid out in `widths` (one space between columns).
function text.row(cells, cols, widths)
  local parts = {}
  for i, w in ipairs(widths) do parts[i] = text.pad(text.fit(cells[i] or "", w), w, cols[i].right) end
  return (concat(parts, " "):gsub("%s+$", ""))
end

-- One cell of text.rows: nothing for nil and null, numbers as FreshBooks writes them.
local function cell(v)
  if v == nil or v == require("cjson").null then return "" end
  if type(v) == "number" then return require("freshbooks.query").number(v) end
  return tostring(v)
end

-- text.rows(out, format, columns, rows): rows (arrays of values under `columns`) as a table for people
-- (numbers and decimal amounts right-aligned, fitted to out.columns on a terminal; a block per row when
-- it is too narrow), CSV (RFC 4180) or JSON (an array of objects, null as null). `freshbooks sql`, the
-- mirror's reports and the API's reports write through it.
function text.rows(out, format, columns, list)
  if format == "json" then
    local objects = {}
    for i, row in ipairs(list) do
      local obj = {}
      for j, name in ipairs(columns) do obj[name] = row[j] end
      objects[i] = obj
    end
    out:write(text.json(text.array(objects)), "\n") -- text.json writes cjson.null as null
  elseif format == "csv" then
    local csv_field = require("freshbooks.report").csv_field
    local line = {}
    for j, name in ipairs(columns) do line[j] = csv_field(name) end
    out:write(concat(line, ","), "\n")
    for _, row in ipairs(list) do
      for j = 1, #columns do line[j] = csv_field(cell(row[j])) end
      out:write(concat(line, ","), "\n")
    end
  else
    -- Numbers and amounts are right-aligned; they and dates are never cut to fit, other text may be.
    local rows, layout, dates = { columns }, {}, {}
    for j in ipairs(columns) do layout[j], dates[j] = { min = 4 }, true end
    for i, row in ipairs(list) do
      local r = {}
      for j = 1, #columns do
        local v = row[j]
        r[j] = text.clean(cell(v))
        if type(v) == "number" or type(v) == "string" and v:match("^%-?%d+%.%d+$") then layout[j].right = true end
        if r[j] ~= "" and not r[j]:match("^%d%d%d%d%-%d%d%-%d%d$") then dates[j] = false end
      end
      rows[i + 1] = r
    end
    for j, c in ipairs(layout) do if c.right or dates[j] and #list > 0 then c.min = nil end end
    local widths = text.grid(rows, layout, out.terminal and out.columns or nil, 0)
    if widths then
      for _, r in ipairs(rows) do out:write(text.row(r, layout, widths), "\n") end
    else -- too narrow: a block per row
      for i = 2, #rows do
        for j, name in ipairs(columns) do out:write(text.clean(name), ": ", rows[i][j], "\n") end
        out:write("\n")
      end
    end
    if out.terminal then out:write(("(%d row%s)\n"):format(#list, #list == 1 and "" or "s")) end
  end
end

-- JSON ---------------------------------------------------------------------------------------------

-- Re-indented JSON text (the document is not decoded: member order, numbers and escapes stay as they
-- are). nil when `s` is not one JSON document.
function text.pretty_json(s)
  local core = require "freshbooks.core"
  local value = core.json.decode(s)
  if value == nil then return nil end
  if type(value) ~= "table" then return (s:gsub("^%s+", ""):gsub("%s+$", "")) end
  local out, depth, i, n = {}, 0, 1, #s
  local function newline() out[#out + 1] = "\n" .. ("  "):rep(depth) end
  while i <= n do
    local j = s:find('[{}%[%],:"]', i)
    if not j then break end
    local c = s:sub(j, j)
    if c == '"' then
      local k = j + 1
      while true do -- the closing quote: the first one not escaped
        local q = s:find('["\\]', k)
        if s:sub(q, q) == "\\" then k = q + 2 else k = q break end
      end
      out[#out + 1] = s:sub(j, k)
      i = k + 1
    else
      local between = s:sub(i, j - 1):gsub("%s+", "") -- numbers, true, false, null
      if between ~= "" then out[#out + 1] = between end
      if c == "{" or c == "[" then
        local close = s:match("^%s*([%]}])", j + 1)
        if close then
          out[#out + 1] = c .. close
          j = s:find(close, j + 1, true)
        else
          out[#out + 1] = c
          depth = depth + 1
          newline()
        end
      elseif c == "}" or c == "]" then
        depth = depth - 1
        newline()
        out[#out + 1] = c
      elseif c == "," then
        out[#out + 1] = ","
        newline()
      else
        out[#out + 1] = ": "
      end
      i = j + 1
    end
  end
  return concat(out)
end

-- The command's own JSON documents (status --json, profiles --json, the report): lua-cjson 2.1 writes
-- an empty list as {} and "/" as "\/", and passes invalid UTF-8 through.
local arrays = setmetatable({}, { __mode = "k" })
function text.array(t) arrays[t] = true return t end

function text.json(v)
  local cjson = require "cjson"
  local number = require("freshbooks.query").number
  local function enc(x)
    local t = type(x)
    if t == "string" then return (cjson.encode(x):gsub("\\/", "/")) end
    if t == "number" then return number(x) end
    if t == "boolean" then return tostring(x) end
    if t ~= "table" then return "null" end
    local parts = {}
    if arrays[x] or x[1] ~= nil then
      for i = 1, #x do parts[i] = enc(x[i]) end
      return "[" .. concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(x) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for i, k in ipairs(keys) do parts[i] = enc(k) .. ":" .. enc(x[k]) end
    return "{" .. concat(parts, ",") .. "}"
  end
  return text.utf8(enc(v))
end

-- Typos ----------------------------------------------------------------------------------------------

-- Optimal string alignment distance (a swap of neighbours counts once).
local function distance(a, b)
  local prev2, prev = {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = byte(a, i) == byte(b, j) and 0 or 1
      local v = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and byte(a, i) == byte(b, j - 1) and byte(a, i - 1) == byte(b, j) then
        v = math.min(v, prev2[j - 2] + 1)
      end
      cur[j] = v
    end
    prev2, prev = prev, cur
  end
  return prev[#b]
end

function text.suggest(word, candidates)
  local best, best_d
  local w = tostring(word):lower()
  for _, c in ipairs(candidates) do
    local d = distance(w, c:lower())
    if c:lower():sub(1, #w) == w and #w >= 3 then d = math.min(d, 1) end -- a prefix: "inv" -> invoices
    if not best_d or d < best_d then best, best_d = c, d end
  end
  if best and best_d <= math.max(1, math.floor(#w / 3)) then return best end
end

-- "unknown resource 'invoicez': did you mean invoices? the resources: clients, invoices, ..."
function text.unknown(what, word, candidates, plural)
  local guess = text.suggest(word, candidates)
  return ("%s '%s': %sthe %s: %s"):format(what, text.clean(word), guess and ("did you mean " .. guess .. "? ") or "",
    plural, concat(candidates, ", "))
end

return text
