-- Small helpers: crypto through libcrypto (FFI; nginx already links it), time formats, encodings.
local ffi = require "ffi"

ffi.cdef [[
  typedef struct evp_md_st EVP_MD;
  const EVP_MD *EVP_sha256(void);
  unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d,
                      size_t n, unsigned char *md, unsigned int *md_len);
  unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
  int RAND_bytes(unsigned char *buf, int num);
]]

local crypto
do
  local ok = pcall(function() return ffi.C.HMAC end)
  crypto = ok and ffi.C or ffi.load("crypto")
end

local util = {}

function util.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function util.hmac_sha256(key, msg)
  local md = ffi.new("unsigned char[32]")
  local len = ffi.new("unsigned int[1]")
  crypto.HMAC(crypto.EVP_sha256(), key, #key, msg, #msg, md, len)
  return ffi.string(md, len[0])
end

function util.sha256(s)
  local md = ffi.new("unsigned char[32]")
  crypto.SHA256(s, #s, md)
  return ffi.string(md, 32)
end

-- A short, non-reversible name for a token in the request log: first 12 hex of its SHA-256.
function util.token_hash(token)
  if not token then return nil end
  return util.hex(util.sha256(token)):sub(1, 12)
end

-- n random bytes as 2n hex characters (tokens, codes, verifiers).
function util.random_hex(n)
  local buf = ffi.new("unsigned char[?]", n)
  assert(crypto.RAND_bytes(buf, n) == 1, "RAND_bytes failed")
  return util.hex(ffi.string(buf, n))
end

-- What FreshBooks signs: Python's json.dumps of the form fields in order. The sandbox signs with the
-- client's own serializer (lua/freshbooks/webhook.lua), which spec/webhook_spec.lua checks against
-- vectors made by Python itself: one implementation, proven against the real thing.
-- pairs: array of {name, value} in the order sent.
function util.python_json(pairs_)
  return require("freshbooks.webhook").message(pairs_)
end

function util.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- pairs in order -> application/x-www-form-urlencoded
function util.form(pairs_)
  local out = {}
  for i, p in ipairs(pairs_) do out[i] = util.urlencode(p[1]) .. "=" .. util.urlencode(p[2]) end
  return table.concat(out, "&")
end

-- Dates: the library's day numbers (lua/freshbooks/date.lua: days since 1970-01-01).
local date = require "freshbooks.date"
local floor = math.floor
util.civil, util.days_from_civil, util.date, util.parse_date = date.civil, date.days, date.format, date.parse

-- epoch seconds from "YYYY-MM-DD[ T]HH:MM:SS[Z]" read as UTC (nil if not a timestamp).
function util.parse_time(s)
  local days = util.parse_date(s)
  if not days then return nil end
  local h, mi, se = tostring(s):match("^.........[%d][ T](%d%d):(%d%d):(%d%d)")
  return days * 86400 + (tonumber(h) or 0) * 3600 + (tonumber(mi) or 0) * 60 + (tonumber(se) or 0)
end

local function hms(t)
  local days = floor(t / 86400)
  local s = t - days * 86400
  return days, floor(s / 3600), floor(s % 3600 / 60), floor(s % 60)
end

-- ISO 8601 UTC without the Z, as the project family writes it.
function util.iso(t)
  local days, h, m, s = hms(floor(t))
  return string.format("%sT%02d:%02d:%02d", util.date(days), h, m, s)
end

-- US/Eastern wall time, as the accounting family writes "updated" (DST: 2nd Sunday of March 2:00
-- to 1st Sunday of November 2:00 local).
local function nth_sunday(y, m, n)
  local first = util.days_from_civil(y, m, 1)
  local dow = (first + 4) % 7 -- 1970-01-01 was a Thursday; 0 = Sunday
  return first + (7 - dow) % 7 + (n - 1) * 7
end

function util.eastern(t)
  t = floor(t)
  local y = util.civil(floor(t / 86400))
  local start = nth_sunday(y, 3, 2) * 86400 + 7 * 3600   -- 2:00 EST = 07:00 UTC
  local stop = nth_sunday(y, 11, 1) * 86400 + 6 * 3600   -- 2:00 EDT = 06:00 UTC
  local offset = (t >= start and t < stop) and -4 or -5
  local days, h, m, s = hms(t + offset * 3600)
  return string.format("%s %02d:%02d:%02d", util.date(days), h, m, s)
end

-- Money: cents (integer) -> {amount = "123.45", code = "USD"}.
function util.money(cents, code)
  local neg = cents < 0
  if neg then cents = -cents end
  return { amount = string.format("%s%d.%02d", neg and "-" or "", floor(cents / 100), cents % 100),
           code = code or "USD" }
end

-- "123.45" / 123.45 -> cents, nil if not a decimal amount.
function util.cents(v)
  if type(v) == "table" then v = v.amount end
  if type(v) == "number" then return floor(v * 100 + 0.5) end
  if type(v) ~= "string" then return nil end
  local sign, int, frac = v:match("^%s*(%-?)(%d*)%.?(%d*)%s*$")
  if not int or (int == "" and frac == "") then return nil end
  frac = (frac .. "00"):sub(1, 2)
  local c = (tonumber(int) or 0) * 100 + tonumber(frac)
  return sign == "-" and -c or c
end

-- A deterministic PRNG (Park-Miller; exact in doubles, same on every Lua).
function util.prng(seed)
  local x = (seed % 2147483646) + 1
  return function(lo, hi)
    x = x * 48271 % 2147483647
    if not lo then return x / 2147483647 end
    return lo + x % (hi - lo + 1)
  end
end

return util
