-- Civil dates as day numbers (days since 1970-01-01, proleptic Gregorian, integer arithmetic only:
-- Howard Hinnant's algorithms), for the billing report's aging, Retry-After's HTTP dates, and the
-- sandbox's data. Pure Lua: the sandbox loads it too.
local date = {}

local floor = math.floor

-- date.days(y, m, d) -> day number
function date.days(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end

-- date.civil(days) -> y, m, d
function date.civil(days)
  local z = days + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- date.parse("YYYY-MM-DD...") -> day number, or nil when it is not such a date.
function date.parse(s)
  local y, m, d = tostring(s or ""):match("^(%d%d%d%d)%-(%d%d)%-(%d%d)")
  if not y then return nil end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m < 1 or m > 12 or d < 1 or d > 31 then return nil end
  return date.days(y, m, d)
end

-- date.format(days) -> "YYYY-MM-DD"
function date.format(days)
  return string.format("%04d-%02d-%02d", date.civil(days))
end

-- date.exact("YYYY-MM-DD") -> day number, or nil unless the string is exactly one real calendar day
-- (what a person types: parse's prefix rule would age "2025-02-30" against March 2).
function date.exact(s)
  local days = type(s) == "string" and #s == 10 and date.parse(s)
  if days and date.format(days) == s then return days end
  return nil
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10,
                 Nov = 11, Dec = 12 }

-- date.http("Sun, 06 Nov 1994 08:49:37 GMT") -> epoch seconds, or nil (IMF-fixdate, and RFC 850's
-- dashes; two-digit years as RFC 7231 reads them).
function date.http(value)
  local d, mon, y, hh, mm, ss = tostring(value or ""):match(
    "^%s*%a+,%s*(%d+)[%s%-](%a+)[%s%-](%d+)%s+(%d+):(%d+):(%d+)%s*GMT")
  if not d or not MONTHS[mon] then return nil end
  y = tonumber(y)
  if y < 100 then y = y + (y < 70 and 2000 or 1900) end
  return date.days(y, MONTHS[mon], tonumber(d)) * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

return date
