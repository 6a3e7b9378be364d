-- The one error type. Every runtime failure in lua-freshbooks is returned as `nil, err` where `err`
-- is one of these: a stable `code` string, a human `message`, and `status` when HTTP gave one.
local errors = {}

local Error = {}
Error.__index = Error

-- Nothing secret may ever reach a message: callers build messages from codes, statuses and
-- server-supplied descriptions only. As a last line of defence, long hex/base64-ish runs that look
-- like tokens are masked.
local function scrub(s)
  s = tostring(s or "")
  return (s:gsub("[%w%-_%.~+/=]+", function(run)
    if #run >= 32 and run:find("%d") and run:find("%a") then return "***" end
  end))
end
errors.scrub = scrub

function Error.__tostring(e)
  local s = "freshbooks: " .. e.code
  if e.message and e.message ~= "" then s = s .. ": " .. e.message end
  if e.status then s = s .. " (HTTP " .. e.status .. ")" end
  return s
end

-- errors.new{code =, message =, status =, errno =, errors =, ...}; extra fields are kept.
function errors.new(t)
  if type(t) ~= "table" or type(t.code) ~= "string" then
    error("freshbooks.errors.new: a table with a string `code` is required", 2)
  end
  t.message = scrub(t.message or t.code)
  return setmetatable(t, Error)
end

function errors.is(x)
  return getmetatable(x) == Error
end

-- The C core returns plain tables {code =, message =, curl_code =}; give them the type.
function errors.from_core(t)
  if errors.is(t) then return t end
  return errors.new{ code = t and t.code or "transport", message = t and t.message, curl_code = t and t.curl_code }
end

-- Turn an HTTP response that FreshBooks meant as an error into an error object, or return nil when the
-- response is a success. (The API-surface work completes this for every FreshBooks error shape.)
function errors.from_response(res)
  if res.status >= 200 and res.status < 300 then return nil end
  local code = ({ [400] = "bad_request", [401] = "unauthorized", [403] = "forbidden", [404] = "not_found",
    [422] = "validation", [429] = "rate_limited" })[res.status] or (res.status >= 500 and "server_error" or "http")
  return errors.new{ code = code, status = res.status, message = "HTTP " .. res.status }
end

errors.Error = Error
return errors
