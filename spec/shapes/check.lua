-- Checks a decoded JSON answer against a shape of spec/shapes/freshbooks.lua and lists every difference:
-- a missing field, an extra field, a wrong type, a wrong format. Pure Lua (any interpreter).
--   check.value(shape, value) -> { "path: what differs", ... } (empty when it conforms)
-- Shapes: a type name (below), "?name" (that or null), or a table:
--   { fields = { name = shape, ... }, optional = { name = shape, ... }, open = true? }  an object
--   { array = shape }                      an array whose every element has that shape
--   { map = shape }                        an object whose every value has that shape (any keys)
--   { one_of = { shape, ... } }            the first that fits
--   { const = value }                      exactly that value
local check = {}

-- JSON as it was written: check.decode keeps [] apart from {} (arrays carry ARRAY) and null as NULL.
local ARRAY = {}
local NULL = setmetatable({}, { __tostring = function() return "null" end })
check.NULL = NULL

local function is_null(v) return v == nil or v == NULL end
local function is_array(v) return type(v) == "table" and getmetatable(v) == ARRAY end
local function is_object(v) return type(v) == "table" and v ~= NULL and getmetatable(v) ~= ARRAY end

-- A strict little JSON reader (RFC 8259; numbers as Lua numbers, integers where whole on 5.3+).
function check.decode(text)
  local pos = 1
  local function fail(what) error(("JSON: %s at byte %d"):format(what, pos), 0) end
  local function ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local value
  local escapes = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
  local function utf8(cp)
    if cp < 0x80 then return string.char(cp) end
    if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
    if cp < 0x10000 then
      return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
    end
    return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
      0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local a, b = text:find('["\\]', pos)
      if not a then fail("unterminated string") end
      out[#out + 1] = text:sub(pos, a - 1)
      if text:sub(a, a) == '"' then pos = a + 1 break end
      local e = text:sub(a + 1, a + 1)
      if e == "u" then
        local cp = tonumber(text:sub(a + 2, a + 5), 16) or fail("bad \\u escape")
        pos = a + 6
        if cp >= 0xD800 and cp <= 0xDBFF and text:sub(pos, pos + 1) == "\\u" then
          local lo = tonumber(text:sub(pos + 2, pos + 5), 16)
          if lo and lo >= 0xDC00 and lo <= 0xDFFF then
            cp, pos = 0x10000 + (cp - 0xD800) * 1024 + lo - 0xDC00, pos + 6
          end
        end
        out[#out + 1] = utf8(cp)
      else
        out[#out + 1] = escapes[e] or fail("bad escape")
        pos = a + 2
      end
      local _ = b
    end
    return table.concat(out)
  end
  function value()
    ws()
    local c = text:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if text:sub(pos, pos) == "}" then pos = pos + 1 return t end
      while true do
        ws()
        if text:sub(pos, pos) ~= '"' then fail("key expected") end
        local k = str()
        ws()
        if text:sub(pos, pos) ~= ":" then fail("':' expected") end
        pos = pos + 1
        t[k] = value()
        ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
        if d ~= "," then fail("',' or '}' expected") end
      end
    elseif c == "[" then
      local t = setmetatable({}, ARRAY)
      pos = pos + 1
      ws()
      if text:sub(pos, pos) == "]" then pos = pos + 1 return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
        if d ~= "," then fail("',' or ']' expected") end
      end
    elseif c == '"' then
      return str()
    elseif text:sub(pos, pos + 3) == "true" then pos = pos + 4 return true
    elseif text:sub(pos, pos + 4) == "false" then pos = pos + 5 return false
    elseif text:sub(pos, pos + 3) == "null" then pos = pos + 4 return NULL
    end
    local num = text:match("^%-?%d+%.?%d*[eE]?[%+%-]?%d*", pos)
    if not num or num == "" then fail("value expected") end
    pos = pos + #num
    local n = tonumber(num)
    if math.tointeger and not num:find("[%.eE]") then n = math.tointeger(n) or n end
    return n
  end
  local ok, v = pcall(value)
  if not ok then return nil, v end
  ws()
  if pos <= #text then return nil, ("JSON: trailing data at byte %d"):format(pos) end
  return v
end

local function whole(v) return type(v) == "number" and v == math.floor(v) end

-- The formats: each a predicate over the value.
local DAY = "^%d%d%d%d%-%d%d%-%d%d$"
check.types = {
  any = function() return true end,
  int = whole,
  number = function(v) return type(v) == "number" end,
  string = function(v) return type(v) == "string" end,
  bool = function(v) return type(v) == "boolean" end,
  null = is_null,
  -- "12.50", "-3", "0": a decimal amount written as a string (never a float)
  decimal = function(v) return type(v) == "string" and v:match("^%-?%d+%.?%d*$") ~= nil end,
  date = function(v) return type(v) == "string" and v:match(DAY) ~= nil end,
  -- accounting stamps: "YYYY-MM-DD HH:MM:SS", US/Eastern (or UTC where the shape says so): no zone written
  eastern = function(v) return type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$") ~= nil end,
  utc = function(v) return type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$") ~= nil end,
  -- ISO 8601 without a zone (project stamps, a time entry's local start)
  iso = function(v) return type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.?%d*$") ~= nil end,
  -- ISO 8601 UTC with the Z (fractions of a second allowed)
  iso_z = function(v) return type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.?%d*Z$") ~= nil end,
  uuid = function(v) return type(v) == "string" and v:match("^%x+%-%x+%-%x+%-%x+%-%x+$") ~= nil end,
  currency = function(v) return type(v) == "string" and v:match("^%u%u%u$") ~= nil end,
  money = function(v)
    return is_object(v) and type(v.amount) == "string" and v.amount:match("^%-?%d+%.%d%d$") ~= nil
      and type(v.code) == "string" and (v.code:match("^%u%u%u$") ~= nil or v.code == "%")
  end,
}

local function type_name(v)
  if is_null(v) then return "null" end
  if type(v) == "table" then return is_array(v) and "array" or "object" end
  if whole(v) then return "int" end
  return type(v)
end

local function describe(v)
  local t = type_name(v)
  if t == "string" then return ("string %q"):format(#v > 40 and v:sub(1, 40) .. "..." or v) end
  if t == "number" or t == "int" then return t .. " " .. tostring(v) end
  return t
end

local walk

local function object(shape, v, path, out)
  if not is_object(v) then
    out[#out + 1] = ("%s: object expected, got %s"):format(path, describe(v))
    return
  end
  local fields, optional = shape.fields or {}, shape.optional or {}
  for k, s in pairs(fields) do
    if v[k] == nil then out[#out + 1] = ("%s.%s: missing"):format(path, k)
    else walk(s, v[k], path .. "." .. k, out) end
  end
  for k, s in pairs(optional) do
    if v[k] ~= nil then walk(s, v[k], path .. "." .. k, out) end
  end
  if not shape.open then
    local extra = {}
    for k in pairs(v) do
      if fields[k] == nil and optional[k] == nil then extra[#extra + 1] = tostring(k) end
    end
    table.sort(extra)
    for _, k in ipairs(extra) do out[#out + 1] = ("%s.%s: extra field"):format(path, k) end
  end
end

function walk(shape, v, path, out)
  if type(shape) == "string" then
    local nullable = shape:sub(1, 1) == "?"
    local name = nullable and shape:sub(2) or shape
    local pred = check.types[name]
    if not pred then error("spec/shapes: unknown type " .. name .. " at " .. path) end
    if nullable and is_null(v) then return end
    if not pred(v) then
      out[#out + 1] = ("%s: %s expected, got %s"):format(path, shape, describe(v))
    end
  elseif shape.array then
    if not is_array(v) then
      out[#out + 1] = ("%s: array expected, got %s"):format(path, describe(v))
      return
    end
    for i, x in ipairs(v) do walk(shape.array, x, path .. "[" .. i .. "]", out) end
  elseif shape.map then
    if not is_object(v) then
      out[#out + 1] = ("%s: object expected, got %s"):format(path, describe(v))
      return
    end
    for k, x in pairs(v) do walk(shape.map, x, path .. "." .. tostring(k), out) end
  elseif shape.one_of then
    local best
    for _, s in ipairs(shape.one_of) do
      local o = {}
      walk(s, v, path, o)
      if #o == 0 then return end
      if not best or #o < #best then best = o end
    end
    for _, d in ipairs(best) do out[#out + 1] = d end
  elseif shape.const ~= nil then
    if v ~= shape.const then
      out[#out + 1] = ("%s: %s expected, got %s"):format(path, tostring(shape.const), describe(v))
    end
  else
    object(shape, v, path, out)
  end
end

function check.value(shape, v, path)
  local out = {}
  walk(shape, v, path or "$", out)
  return out
end

check.is_null = is_null
return check
