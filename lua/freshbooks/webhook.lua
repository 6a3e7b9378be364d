-- Webhook deliveries: ordered form parsing and FreshBooks' signature check.
--
-- FreshBooks signs a delivery with
--   base64(HMAC-SHA256(key = verifier, msg = json.dumps(form_fields)))
-- where json.dumps is Python's default: the fields as one object in the order received, values as
-- strings, ", " between items and ": " after keys, and everything outside printable ASCII escaped as
-- \uXXXX (lower-case hex; characters beyond the BMP as a UTF-16 surrogate pair).
local webhook = {}

-- The C core only where a signature or a form is computed: the sandbox serializes deliveries with
-- webhook.message and runs without it.
local core
local function C()
  core = core or require "freshbooks.core"
  return core
end

-- Python's json escapes: \" \\ \n \r \t \b \f, and \u00XX for every other byte outside 0x20..0x7e.
local SHORT = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                ["\b"] = "\\b", ["\f"] = "\\f" }

local function u(cp) return string.format("\\u%04x", cp) end

local function codepoint_escape(cp)
  if cp < 0x10000 then return u(cp) end
  cp = cp - 0x10000
  return u(0xD800 + math.floor(cp / 0x400)) .. u(0xDC00 + cp % 0x400)
end

-- The bytes each lead byte may be followed by (Unicode's table of well-formed UTF-8): the first
-- continuation's range, then how many more (80..BF).
local LEADS = {}
for b = 0xC2, 0xDF do LEADS[b] = { 0x80, 0xBF, 0 } end
LEADS[0xE0] = { 0xA0, 0xBF, 1 }
for b = 0xE1, 0xEF do LEADS[b] = { 0x80, 0xBF, 1 } end
LEADS[0xED] = { 0x80, 0x9F, 1 }
LEADS[0xF0] = { 0x90, 0xBF, 2 }
for b = 0xF1, 0xF3 do LEADS[b] = { 0x80, 0xBF, 2 } end
LEADS[0xF4] = { 0x80, 0x8F, 2 }

-- UTF-8 at i -> its escape and the next position. A malformed sequence becomes one U+FFFD for its
-- longest well-formed start (at least one byte), as Python's decoder with errors="replace" does.
local function escape_non_ascii(s, i)
  local lead = LEADS[s:byte(i)]
  if not lead then return u(0xFFFD), i + 1 end
  local c = s:byte(i + 1)
  if not c or c < lead[1] or c > lead[2] then return u(0xFFFD), i + 1 end
  local cp = s:byte(i) % (lead[3] == 0 and 32 or lead[3] == 1 and 16 or 8) * 64 + c % 64
  for k = 2, lead[3] + 1 do
    c = s:byte(i + k)
    if not c or c < 0x80 or c > 0xBF then return u(0xFFFD), i + k end
    cp = cp * 64 + c % 64
  end
  return codepoint_escape(cp), i + lead[3] + 2
end

local function json_string(s)
  local out, i, n = { '"' }, 1, #s
  while i <= n do
    local j = s:find('[%z\1-\31"\\\127-\255]', i)
    if not j then out[#out + 1] = s:sub(i); break end
    if j > i then out[#out + 1] = s:sub(i, j - 1) end
    local c = s:sub(j, j)
    local b = c:byte()
    if SHORT[c] then
      out[#out + 1] = SHORT[c]; i = j + 1
    elseif b < 0x80 then
      out[#out + 1] = u(b); i = j + 1
    else
      local esc
      esc, i = escape_non_ascii(s, j)
      out[#out + 1] = esc
    end
  end
  out[#out + 1] = '"'
  return table.concat(out)
end

local function check_fields(fields)
  if type(fields) == "string" then return webhook.parse(fields) end
  if type(fields) ~= "table" then
    error("freshbooks.webhook: fields must be the raw form body or an array of {name, value} pairs", 3)
  end
  for k, pair in pairs(fields) do
    if type(k) ~= "number" or type(pair) ~= "table" then
      error("freshbooks.webhook: fields must be an array of {name, value} pairs in received order"
        .. " (use webhook.parse(raw_body)); a name -> value map has lost the order FreshBooks signed", 3)
    end
  end
  return fields
end

-- The exact message FreshBooks signs. Repeated names keep their first position and last value, as a
-- Python dict built from the pairs would.
function webhook.message(fields)
  fields = check_fields(fields)
  local order, value = {}, {}
  for _, pair in ipairs(fields) do
    local name, v = tostring(pair[1] or pair.name), pair[2] or pair.value
    if v == nil then v = "" end
    if value[name] == nil then order[#order + 1] = name end
    value[name] = tostring(v)
  end
  local items = {}
  for i, name in ipairs(order) do items[i] = json_string(name) .. ": " .. json_string(value[name]) end
  return "{" .. table.concat(items, ", ") .. "}"
end

-- webhook.parse(raw_body) -> array of {name, value} in received order (also .name / .value).
function webhook.parse(body)
  if type(body) ~= "string" then error("freshbooks.webhook.parse: the raw body string expected", 2) end
  local out = C().form_decode(body)
  for _, pair in ipairs(out) do pair.name, pair.value = pair[1], pair[2] end
  return out
end

-- The base64 signature FreshBooks would send for these fields.
function webhook.sign(verifier, fields)
  if type(verifier) ~= "string" and type(verifier) ~= "userdata" then
    error("freshbooks.webhook: verifier must be a string (or a core.secret)", 2)
  end
  return C().base64(C().hmac_sha256(verifier, webhook.message(fields)))
end

local MAX_SIGNATURE = 256

-- Surrounding whitespace off, in one pass each way (a pattern like "^%s*(.-)%s*$" backtracks:
-- quadratic in a run of spaces).
local function trim(s)
  local i, j = s:find("%S"), #s
  if not i then return "" end
  while s:find("^%s", j) do j = j - 1 end
  return s:sub(i, j)
end

-- webhook.verify(verifier, fields_or_raw_body, signature) -> true, or false and a reason code.
-- Constant-time comparison; a missing signature is a plain false, never an error.
function webhook.verify(verifier, fields, signature)
  fields = check_fields(fields)
  local expected = webhook.sign(verifier, fields)
  if type(signature) == "table" then -- a repeated header: which one is FreshBooks'? None is believed.
    if #signature > 1 then return false, "duplicate_signature" end
    signature = signature[1]
  end
  if type(signature) ~= "string" or signature == "" then return false, "missing_signature" end
  -- A signature is 44 characters of base64; a header far longer is not one, and is never scanned.
  if #signature > MAX_SIGNATURE then return false, "bad_signature" end
  signature = trim(signature)
  if not C().equals(expected, signature) then return false, "bad_signature" end
  -- FreshBooks signs a dict: a repeated name is never its own. The message holds a repeated name's
  -- last value, webhook.field its first, so a forged first value would pass on the genuine signature.
  local seen = {}
  for _, pair in ipairs(fields) do
    local name = tostring(pair[1] or pair.name)
    if seen[name] then return false, "duplicate_field" end
    seen[name] = true
  end
  return true
end

-- For a delivery: the verification POST carries `verifier`; later ones are events.
function webhook.field(fields, name)
  for _, pair in ipairs(fields) do
    if (pair[1] or pair.name) == name then return pair[2] or pair.value end
  end
end

return webhook
