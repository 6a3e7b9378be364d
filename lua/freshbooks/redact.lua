-- Masking secrets in text: by exact value where the caller knows them (a session knows its client
-- secret and every token it held: fb:redact), and, as a second net, whatever looks like a token.
--   redact.mask(s, values) -> s with every occurrence of each value (or of its first 12+ bytes) as "***"
--   redact.scrub(s)        -> s with long runs of letters and digits (32+, both kinds) replaced
--   redact.uncut(s, values) -> s cut short ("..." at its end) without the head of a value the cut went
--                             through, which no exact match finds (run it before mask)
local redact = {}

-- A value's first 12 bytes count as the value: a server or store that cut it short (Redis echoes
-- at most 128 characters of an argument) must not show what it kept of it.
local HEAD = 12
function redact.mask(s, values)
  for _, secret in ipairs(values) do
    if type(secret) == "string" and secret ~= "" then
      local head, i = secret:sub(1, HEAD), 1
      while true do
        local a, b = s:find(head, i, true)
        if not a then break end
        while b - a + 1 < #secret and s:byte(b + 1) == secret:byte(b - a + 2) do b = b + 1 end
        s = s:sub(1, a - 1) .. "***" .. s:sub(b + 1)
        i = a + 3
      end
    end
  end
  return s
end

function redact.uncut(s, values)
  if s:sub(-3) ~= "..." then return s end
  local head = s:sub(1, -4)
  for _, secret in ipairs(values) do
    if type(secret) == "string" then
      for n = math.min(#secret, #head), 1, -1 do
        if head:sub(-n) == secret:sub(1, n) then head = head:sub(1, -n - 1) break end
      end
    end
  end
  return head .. "..."
end

-- Runs stop at "/" and "." so file paths and URLs stay readable.
function redact.scrub(s)
  s = tostring(s or "")
  return (s:gsub("[%w%-_~+=]+", function(run)
    if #run >= 32 and run:find("%d") and run:find("%a") then return "***" end
  end))
end

return redact
