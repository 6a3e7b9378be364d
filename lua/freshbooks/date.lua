-- Civil dates as day numbers (days since 1970-01-01, proleptic Gregorian, integer arithmetic only:
-- Howard Hinnant's algorithms), for the billing report's aging, Retry-After's HTTP dates, the mirror's
-- UTC timestamps (FreshBooks' accounting stamps are US/Eastern wall time), and the sandbox's data.
-- Pure Lua: the sandbox loads it too.
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

-- US/Eastern ----------------------------------------------------------------------------------

-- The n-th Sunday of a month (n = -1: the last one), as a day number.
local function sunday(y, m, n)
  if n < 0 then
    local last = date.days(m == 12 and y + 1 or y, m == 12 and 1 or m + 1, 1) - 1
    return last - (last + 4) % 7 -- 1970-01-01 was a Thursday; (d + 4) % 7 == 0 is a Sunday
  end
  local first = date.days(y, m, 1)
  return first + (7 - (first + 4) % 7) % 7 + (n - 1) * 7
end

-- The daylight-time interval of year y in UTC seconds: from 2:00 standard time to 2:00 daylight
-- time, on the US rule of that year (2007 on: 2nd Sunday of March to 1st Sunday of November;
-- 1987-2006: 1st Sunday of April to the last Sunday of October).
local DAYLIGHT = {} -- year -> {from, to}: the mirror converts every record's stamps
local function daylight(y)
  local d = DAYLIGHT[y]
  if d then return d[1], d[2] end
  local from, to
  if y >= 2007 then from, to = sunday(y, 3, 2), sunday(y, 11, 1)
  else from, to = sunday(y, 4, 1), sunday(y, 10, -1) end
  d = { from * 86400 + 7 * 3600, to * 86400 + 6 * 3600 }
  DAYLIGHT[y] = d
  return d[1], d[2]
end

-- date.eastern_offset(t) -> seconds to add to UTC epoch seconds t for US/Eastern wall time (-4 h or -5 h).
function date.eastern_offset(t)
  local from, to = daylight((date.civil(floor(t / 86400))))
  return (t >= from and t < to) and -4 * 3600 or -5 * 3600
end

-- "YYYY-MM-DD HH:MM:SS" (a `T` too; seconds and a fraction optional) -> epoch seconds of that wall
-- time read as UTC, or nil.
local function wall(s)
  local days = date.parse(s)
  if not days then return nil end
  local h, mi, se = tostring(s):match("^%d%d%d%d%-%d%d%-%d%d[ T](%d%d):(%d%d):?(%d*)")
  if not h then return nil end
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + (tonumber(se) or 0)
end

-- date.from_eastern("2025-03-09 23:30:00") -> epoch seconds (UTC). The hour that repeats when daylight
-- time ends is read as its first (daylight) occurrence; a wall time in the hour skipped when it begins
-- as standard time.
function date.from_eastern(s)
  local w = wall(s)
  if not w then return nil end
  local daylight_t = w + 4 * 3600
  if date.eastern_offset(daylight_t) == -4 * 3600 then return daylight_t end
  return w + 5 * 3600
end

-- date.from_utc("2025-06-20T12:00:00Z" | "2025-06-20 12:00:00" | "...+00:00") -> epoch seconds, or nil.
-- A fraction is dropped; an offset other than UTC is applied.
function date.from_utc(s)
  local w = wall(s)
  if not w then return nil end
  local sign, oh, om = tostring(s):match("([+-])(%d%d):?(%d%d)$")
  if sign and tostring(s):find("[ T]%d%d:%d%d") then
    local off = tonumber(oh) * 3600 + tonumber(om) * 60
    w = sign == "+" and w - off or w + off
  end
  return w
end

-- date.iso(t) -> "YYYY-MM-DDTHH:MM:SSZ" (UTC), the mirror's timestamps.
function date.iso(t)
  t = floor(t)
  local days = floor(t / 86400)
  local s = t - days * 86400
  return string.format("%sT%02d:%02d:%02dZ", date.format(days), floor(s / 3600), floor(s % 3600 / 60), s % 60)
end

-- date.eastern_day(t) -> "YYYY-MM-DD": the US/Eastern day of epoch seconds t (accounting filters count
-- days there).
function date.eastern_day(t)
  return date.format(floor((floor(t) + date.eastern_offset(t)) / 86400))
end

return date
