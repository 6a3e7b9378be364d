-- Masking secrets in text: by value where the caller knows them (a session knows its client secret and
-- every token it held: fb:redact), and, as a second net, whatever looks like a token.
--   redact.mask(s, values)  -> s with every run of 16 or more of a value's letters and digits, in order,
--                              as "***" (case and any characters between them do not count: a value
--                              quoted whole, cut short, split in groups or spaced is found; a value with
--                              fewer letters and digits is found whole). C: core.secret.masker, src/secret.c.
--   redact.scrub(s)         -> s with long runs of letters and digits (32+, both kinds) replaced
--   redact.uncut(s, values) -> s cut short ("..." at its end), masked, without its last 15 letters and
--                              digits: what a cut left of a value is shorter than a run (run it before
--                              mask, which then finds nothing more)
-- Nothing a caller sees depends on what the values hold beyond the stretches replaced: no shorter piece
-- of a value is ever matched (an oracle would answer a guess of a few characters), what uncut removes
-- depends on the text alone, and core.secret.masker's time does not depend on the values' bytes.
local redact = {}

local RUN = 16 -- letters and digits of a value that count as the value (src/secret.c)

-- A masker per list of values, made again when the list changed (a session adds the tokens it gets).
local maskers = setmetatable({}, { __mode = "k" })
local function masker_for(values)
  local m = maskers[values]
  if m then
    local same = m.n == #values
    for i = 1, #values do
      if not same then break end
      same = rawequal(m[i], values[i])
    end
    if same then return m.masker end
    m.masker:close()
  end
  m = { n = #values, masker = require("freshbooks.core").secret.masker(values) }
  for i = 1, #values do m[i] = values[i] end
  maskers[values] = m
  return m.masker
end

function redact.mask(s, values)
  if #values == 0 or s == "" then return s end
  return masker_for(values):mask(s)
end

-- A cut through a value left its head before the "...": 16 or more of its letters and digits are
-- masked, and the last 15 letters and digits go, whatever they are.
function redact.uncut(s, values)
  if s:sub(-3) ~= "..." or #values == 0 then return s end
  s = redact.mask(s, values)
  local i, seen = #s - 3, 0
  while i >= 1 and seen < RUN - 1 do
    local c = s:byte(i)
    if (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) then seen = seen + 1 end
    i = i - 1
  end
  return s:sub(1, i) .. "..."
end

-- Runs stop at "/" and "." so file paths and URLs stay readable.
function redact.scrub(s)
  s = tostring(s or "")
  return (s:gsub("[%w%-_~+=]+", function(run)
    if #run >= 32 and run:find("%d") and run:find("%a") then return "***" end
  end))
end

return redact
