-- The benchmarks' figures: the median of rounds, "median (min-max)", a timed call, a line printed now.
local core = require "freshbooks.core"

local stats = {}

function stats.median(t)
  local s = {}
  for i, x in ipairs(t) do s[i] = x end
  table.sort(s)
  if #s % 2 == 1 then return s[(#s + 1) / 2] end
  return (s[#s / 2] + s[#s / 2 + 1]) / 2
end

-- "median (min-max)", each in format f
function stats.fmt(t, f)
  local lo, hi = math.huge, -math.huge
  for _, x in ipairs(t) do lo, hi = math.min(lo, x), math.max(hi, x) end
  return (f .. " (" .. f .. "-" .. f .. ")"):format(stats.median(t), lo, hi)
end

-- seconds, then f's results
function stats.timed(f)
  local t0 = core.clock.now()
  local a, b, c = f()
  return core.clock.now() - t0, a, b, c
end

function stats.say(fmt, ...) io.write(string.format(fmt, ...), "\n") io.flush() end

return stats
