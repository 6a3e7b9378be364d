-- JSON for the sandbox. Decoding is cjson's; encoding is ours because Debian's cjson cannot mark an
-- empty table as an array, and FreshBooks answers `"invoices": []`, never `{}`.
local cjson = require "cjson.safe"

local json = {}

json.null = cjson.null
local array_mt = { __jsontype = "array" }
local raw_mt = {}

-- json.raw(text): JSON already encoded, written as it is (a cached rendering of a record).
function json.raw(text) return setmetatable({ text }, raw_mt) end

-- json.array(t) marks t (default a new table) so it always encodes as a JSON array.
function json.array(t) return setmetatable(t or {}, array_mt) end

function json.decode(s)
  if type(s) ~= "string" or s == "" then return nil, "empty body" end
  return cjson.decode(s)
end

local cjson_encode = cjson.encode
-- cjson writes "/" as "\/"; FreshBooks does not.
local function encode_string(s) return (cjson_encode(s):gsub("\\/", "/")) end
local concat, sort, type, pairs, tostring = table.concat, table.sort, type, pairs, tostring
local floor, huge = math.floor, math.huge

local function is_array(t)
  if getmetatable(t) == array_mt then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local encode_value

local function encode_number(v)
  if v ~= v or v == huge or v == -huge then return "null" end
  if floor(v) == v and v > -1e15 and v < 1e15 then return string.format("%d", v) end
  return string.format("%.14g", v)
end

-- Object keys are sorted so every answer is byte-for-byte deterministic.
function encode_value(v, buf)
  local t = type(v)
  if t == "string" then
    buf[#buf + 1] = encode_string(v)
  elseif t == "number" then
    buf[#buf + 1] = encode_number(v)
  elseif t == "boolean" then
    buf[#buf + 1] = v and "true" or "false"
  elseif t == "table" then
    if getmetatable(v) == raw_mt then
      buf[#buf + 1] = v[1]
    elseif is_array(v) then
      buf[#buf + 1] = "["
      for i = 1, #v do
        if i > 1 then buf[#buf + 1] = "," end
        encode_value(v[i], buf)
      end
      buf[#buf + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      sort(keys)
      buf[#buf + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then buf[#buf + 1] = "," end
        buf[#buf + 1] = encode_string(k)
        buf[#buf + 1] = ":"
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        encode_value(val, buf)
      end
      buf[#buf + 1] = "}"
    end
  else
    buf[#buf + 1] = "null" -- nil, cjson.null, functions
  end
end

function json.encode(v)
  local buf = {}
  encode_value(v, buf)
  return concat(buf)
end

return json
