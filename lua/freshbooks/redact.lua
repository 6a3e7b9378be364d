-- Masking secrets in text: by exact value where the caller knows them (a session knows its client
-- secret and every token it held: fb:redact), and, as a second net, whatever looks like a token.
--   redact.mask(s, values) -> s with every occurrence of each value replaced by "***"
--   redact.scrub(s)        -> s with long runs of letters and digits (32+, both kinds) replaced
local redact = {}

function redact.mask(s, values)
  for _, secret in ipairs(values) do
    if type(secret) == "string" and secret ~= "" then
      local i = 1
      while true do
        local a, b = s:find(secret, i, true)
        if not a then break end
        s = s:sub(1, a - 1) .. "***" .. s:sub(b + 1)
        i = a + 3
      end
    end
  end
  return s
end

-- Runs stop at "/" and "." so file paths and URLs stay readable.
function redact.scrub(s)
  s = tostring(s or "")
  return (s:gsub("[%w%-_~+=]+", function(run)
    if #run >= 32 and run:find("%d") and run:find("%a") then return "***" end
  end))
end

return redact
