-- The one error type. Every runtime failure in lua-freshbooks is returned as `nil, err` where `err`
-- is one of these: a stable `code` string, a human `message`, and `status` when HTTP gave one.
local errors = {}

local Error = {}
Error.__index = Error

-- Nothing secret may ever reach a message: callers build messages from codes, statuses and
-- server-supplied descriptions only, and every message goes through redact.scrub as a last net.
local scrub = require("freshbooks.redact").scrub

-- "failed: " .. err reads like tostring(err).
function Error.__concat(a, b)
  return (errors.is(a) and Error.__tostring(a) or tostring(a)) .. (errors.is(b) and Error.__tostring(b) or tostring(b))
end

function Error.__tostring(e)
  local s = "freshbooks: " .. e.code
  if e.message and e.message ~= "" then s = s .. ": " .. e.message end
  if e.status then s = s .. " (HTTP " .. e.status .. ")" end
  return s
end

-- A message is for a person and a log line: a server that sends a novel gets its first kilobyte
-- (cut on a UTF-8 character boundary).
local MAX_MESSAGE = 1024
errors.MAX_MESSAGE = MAX_MESSAGE
local function cap(s)
  if #s <= MAX_MESSAGE then return s end
  local n = MAX_MESSAGE
  while n > 0 and s:byte(n + 1) and s:byte(n + 1) >= 0x80 and s:byte(n + 1) < 0xC0 do n = n - 1 end
  return s:sub(1, n) .. "..."
end

-- errors.new{code =, message =, status =, errno =, errors =, ...}; extra fields are kept.
function errors.new(t)
  if type(t) ~= "table" or type(t.code) ~= "string" then
    error("freshbooks.errors.new: a table with a string `code` is required", 2)
  end
  t.message = cap(scrub(type(t.message) == "string" and t.message or t.code))
  -- A server's own OAuth error name is text from the wire too: the message's rules.
  if t.oauth_error ~= nil then t.oauth_error = type(t.oauth_error) == "string" and cap(scrub(t.oauth_error)) or nil end
  return setmetatable(t, Error)
end

function errors.is(x)
  return getmetatable(x) == Error
end

-- Transport failures that prove a request never reached the server (so resending cannot repeat it):
-- the connection was never made. A TLS failure happens before any request byte too.
errors.NOT_SENT = { connect = true, resolve = true, tls = true }

-- The C core returns plain tables {code =, message =, curl_code =}; give them the type.
function errors.from_core(t)
  if errors.is(t) then return t end
  return errors.new{ code = t and t.code or "transport", message = t and t.message, curl_code = t and t.curl_code,
    status = t and t.status, partial_body = t and t.partial_body }
end

-- Reading FreshBooks' error bodies ------------------------------------------------------------------

-- The C core's decoder, loaded when a body has to be decoded here: the command loads this module
-- before it checks that the core is built, to say so clearly.
local json_decode
local function decode(body)
  json_decode = json_decode or require("freshbooks.core").json_decode
  local v = json_decode(body)
  if type(v) == "table" then return v end
end

local function str(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return require("freshbooks.query").number(v) end
  if t == "boolean" then return tostring(v) end
end

local function header(res, name)
  local v = res.headers and res.headers[name]
  if type(v) == "table" then v = v[#v] end
  return v
end

local STATUS_CODES = {
  [400] = "bad_request", [401] = "unauthorized", [402] = "payment_required", [403] = "forbidden",
  [404] = "not_found", [405] = "method_not_allowed", [409] = "conflict", [410] = "not_found",
  [413] = "too_large", [415] = "bad_request", [422] = "validation", [429] = "rate_limited",
}

-- FreshBooks' errno values that say more than the HTTP status.
local ERRNO_CODES = {
  [1001] = "validation", [1003] = "forbidden", [1004] = "validation", [1012] = "not_found",
  [1013] = "bad_request", [1014] = "bad_request", [2001] = "validation",
}

-- google.rpc status codes, for the newer accounting shape when HTTP says 200.
local RPC_CODES = {
  [3] = "validation", [5] = "not_found", [6] = "conflict", [7] = "forbidden", [8] = "rate_limited",
  [9] = "bad_request", [10] = "conflict", [11] = "bad_request", [13] = "server_error", [14] = "server_error",
  [16] = "unauthorized",
}

-- RFC 6749 §5.2 error names keep their own code (the session acts on invalid_grant).
local OAUTH_CODES = {
  invalid_request = true, invalid_client = true, invalid_grant = true, unauthorized_client = true,
  unsupported_grant_type = true, invalid_scope = true, access_denied = true, invalid_token = true,
}

local function field_error(t, errno)
  if type(t) ~= "table" then
    local m = str(t)
    return m and { message = m, errno = errno }
  end
  return { field = str(t.field), message = str(t.message) or str(t.error), errno = tonumber(t.errno) or errno,
           object = str(t.object), value = str(t.value) }
end

-- Each reader returns a table {errno, message, errors, code?} when the body has its shape.
local readers = {}

-- Accounting, legacy: {"response":{"errors":[{errno, field, message, object, value}]}}
function readers.legacy(d)
  local r = type(d.response) == "table" and d.response or d
  local list = r.errors
  if type(list) ~= "table" or list[1] == nil then return nil end
  local out = {}
  for _, e in ipairs(list) do out[#out + 1] = field_error(e) end
  local first = out[1] or {}
  return { errno = first.errno, message = first.message, errors = out }
end

-- Accounting, newer: {"code":5,"message":"...","details":[{"@type":"...ErrorInfo","reason":"1012",
-- "metadata":{field, message, object, value}}]}
function readers.rpc(d)
  if type(d.code) ~= "number" or d.code == 0 or type(d.message) ~= "string" then return nil end
  local out, errno, said = {}, nil, nil
  for _, det in ipairs(type(d.details) == "table" and d.details or {}) do
    if type(det) == "table" then
      local md = type(det.metadata) == "table" and det.metadata or {}
      local e = field_error(md, tonumber(det.reason))
      for k, v in pairs(e) do if v == "" then e[k] = nil end end -- FreshBooks writes "" for none
      said = said or e.message
      e.message = e.message or str(det.reason)
      out[#out + 1] = e
      errno = errno or e.errno
    end
  end
  -- the top message only names the status ("Request failed with status_code: 404"): the detail says what
  return { errno = errno, message = said or d.message, errors = out, code = RPC_CODES[d.code], rpc_code = d.code }
end

-- Auth (RFC 6749): {"error":"invalid_grant","error_description":"..."}
function readers.oauth(d)
  if type(d.error) ~= "string" or (d.error_description == nil and not OAUTH_CODES[d.error]
      and d.error ~= "unauthenticated") then
    return nil
  end
  local name = d.error:lower()
  return { message = str(d.error_description) or d.error, oauth_error = d.error,
           code = OAUTH_CODES[name] and name or nil, errors = {} }
end

-- Project family {"errno":2001,"error":{"field":"message"}} / {"error":"..."} / {"message":"..."};
-- events {"errno":404,"message":"...","details":[...]}.
function readers.project(d)
  local errno = tonumber(d.errno)
  local out = {}
  local message = str(d.message)
  if type(d.error) == "table" then
    local fields = {}
    for k in pairs(d.error) do fields[#fields + 1] = tostring(k) end
    table.sort(fields)
    for _, k in ipairs(fields) do
      local m = d.error[k]
      if type(m) == "table" then m = m[1] or m.message end
      out[#out + 1] = { field = k, message = str(m), errno = errno }
    end
    message = message or (out[1] and out[1].field and (out[1].field .. ": " .. (out[1].message or "invalid")))
  elseif type(d.error) == "string" then
    message = message or d.error
  end
  for _, det in ipairs(type(d.details) == "table" and d.details or {}) do
    out[#out + 1] = field_error(det, errno)
  end
  if not errno and not message then return nil end
  return { errno = errno, message = message, errors = out }
end

-- The accounting-business family (ledger accounts): {"errors":{"message":...,"status":400,
-- "details":[{"reason":...,"metadata":{field, message, ...}}]}}; the reason is the most specific text.
-- Its field errors come with HTTP 400: a validation failure, as the other families' 422 are; and the
-- body's own status says what the error is when HTTP does not (an error sent with 200).
function readers.business(d)
  local e = d.errors
  if type(e) ~= "table" or e[1] ~= nil or (e.message == nil and e.details == nil) then return nil end
  local out, reason, fields = {}, nil, false
  for _, det in ipairs(type(e.details) == "table" and e.details or {}) do
    if type(det) == "table" then
      local md = type(det.metadata) == "table" and det.metadata or {}
      local fe = field_error(md)
      fe.message = fe.message or str(det.reason)
      out[#out + 1] = fe
      reason = reason or str(det.reason)
      fields = fields or fe.field ~= nil
    end
  end
  return { message = reason or str(e.message), errors = out,
           code = fields and "validation" or STATUS_CODES[tonumber(e.status)] }
end

-- Online payments: {"error_type":"validation","message":"A validation error occurred.",
-- "errors":[{"error_type":..., "message":..., "field":...}]} and {"error_type":"not_found","message":...}.
local PAYMENT_CODES = { validation = "validation", not_found = "not_found", forbidden = "forbidden" }
function readers.payments(d)
  if type(d.error_type) ~= "string" then return nil end
  local out = {}
  for _, fe in ipairs(type(d.errors) == "table" and d.errors or {}) do out[#out + 1] = field_error(fe) end
  return { message = (out[1] and out[1].message) or str(d.message) or d.error_type, errors = out,
           code = PAYMENT_CODES[d.error_type] }
end

local function read_shape(d)
  return readers.payments(d) or readers.legacy(d) or readers.business(d) or readers.rpc(d) or readers.oauth(d)
    or readers.project(d)
end

-- A 2xx body that is an error all the same (FreshBooks answers some failures with 200).
local function success_body_is_error(d)
  local r = type(d.response) == "table" and d.response
  if r then return type(r.errors) == "table" and r.errors[1] ~= nil end
  if type(d.errors) == "table" and d.data == nil and (d.errors.message ~= nil or d.errors[1] ~= nil) then
    return true
  end
  if type(d.code) == "number" and d.code ~= 0 and type(d.message) == "string" and d.details ~= nil then return true end
  if tonumber(d.errno) and (d.message ~= nil or d.error ~= nil) then return true end
  if type(d.error) == "string" and (d.error_description ~= nil or OAUTH_CODES[d.error]) then return true end
  if type(d.error_type) == "string" and d.message ~= nil then return true end
  return false
end

local function is_json(res)
  local ct = header(res, "content-type")
  return type(ct) == "string" and ct:lower():find("json", 1, true) ~= nil
end

-- Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or nil.
function errors.retry_after(value, now)
  if type(value) == "table" then value = value[#value] end
  if type(value) ~= "string" then return nil end
  local secs = value:match("^%s*(%d+)%s*$")
  if secs then return tonumber(secs) end
  local at = require("freshbooks.date").http(value)
  if not at then return nil end
  local wait = at - (now or os.time())
  return wait > 0 and wait or 0
end

-- errors.from_response(res) -> nil when `res` is a success, else the error FreshBooks meant.
-- `res` = {status, headers, body, data = decoded JSON or nil}. Every shape in the facts file is read:
-- legacy accounting errors[], google.rpc details, project/events errno, RFC 6749 auth errors, and
-- errors sent with a 2xx status. Codes come from the status, refined by errno where it says more.
function errors.from_response(res)
  local status = tonumber(res.status) or 0
  local data = res.data
  if data == nil and type(res.body) == "string" and res.body:match("^%s*[{%[]") then data = decode(res.body) end
  if type(data) ~= "table" then data = nil end
  local ok = status >= 200 and status < 300

  if ok then
    if data and success_body_is_error(data) then
      local shape = read_shape(data) or {}
      return errors.new{
        code = shape.code or ERRNO_CODES[shape.errno] or "api_error", status = status, errno = shape.errno,
        message = shape.message or "FreshBooks reported an error", errors = shape.errors or {},
        oauth_error = shape.oauth_error, rpc_code = shape.rpc_code,
      }
    end
    -- JSON promised but unreadable (a truncated or mangled body): not a success to build on.
    if not data and is_json(res) and type(res.body) == "string" and res.body:match("%S") then
      return errors.new{ code = "bad_response", status = status, message = "the response body is not valid JSON" }
    end
    if not data and type(res.body) == "string" and res.body:match("^%s*<") then
      local ct = header(res, "content-type")
      if type(ct) == "string" and ct:lower():find("html", 1, true) then
        return errors.new{ code = "bad_response", status = status, message = "an HTML page instead of an API response" }
      end
    end
    return nil
  end

  local shape = data and read_shape(data) or nil
  local code = STATUS_CODES[status] or (status >= 500 and "server_error") or "http_error"
  if shape then
    if shape.code and (OAUTH_CODES[shape.code] or status == 400 or status == 422) then
      code = shape.code
    elseif (status == 400 or status == 404 or status == 422) and ERRNO_CODES[shape.errno] then
      code = ERRNO_CODES[shape.errno]
    end
  end
  local message = shape and shape.message
  if not message then
    local title = type(res.body) == "string" and res.body:match("<[Tt][Ii][Tt][Ll][Ee]>%s*([^<]-)%s*</")
    message = title and title ~= "" and title or ("HTTP " .. status)
  end
  local e = errors.new{
    code = code, status = status, message = message, errno = shape and shape.errno,
    errors = shape and shape.errors or {}, oauth_error = shape and shape.oauth_error,
    rpc_code = shape and shape.rpc_code,
  }
  if status == 429 then e.retry_after = errors.retry_after(header(res, "retry-after")) end
  return e
end

errors.Error = Error
return errors
