-- Request parsing and response sending, including the faults that change what goes on the wire.
local json = require "sandbox.json"

local http = {}

-- An application/x-www-form-urlencoded body -> name -> its first value. nginx's own parser reads it
-- (as a real server's framework would), not the client's codec: the two must not share a bug.
local function form_fields(s)
  local out = {}
  for k, v in pairs(ngx.decode_args(s or "", 0)) do
    if type(v) == "table" then v = v[1] end
    out[k] = v == true and "" or v
  end
  return out
end
http.form_fields = form_fields

local function multipart_decode(body, ctype)
  local boundary = ctype:match('boundary="([^"]+)"') or ctype:match("boundary=([^;%s]+)")
  if not boundary then return nil end
  local map, files = {}, {}
  local delim = "--" .. boundary
  local pos = body:find(delim, 1, true)
  while pos do
    local start = pos + #delim
    if body:sub(start, start + 1) == "--" then break end
    local next_pos = body:find("\r\n" .. delim, start, true)
    if not next_pos then break end
    local part = body:sub(start + 2, next_pos - 1)
    local head, content = part:match("^(.-)\r\n\r\n(.*)$")
    if head then
      local name = head:match('[Nn]ame="([^"]*)"')
      local filename = head:match('filename="([^"]*)"')
      local pctype = head:match("[Cc]ontent%-[Tt]ype:%s*([^\r\n]+)")
      if name then
        if filename then files[name] = { filename = filename, content = content, content_type = pctype } end
        map[name] = content
      end
    end
    pos = next_pos + 2
  end
  return map, files
end

-- The request as the handlers see it.
function http.request()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      if f then body = f:read("*a"); f:close() end
    end
  end
  local headers = ngx.req.get_headers(200)
  local args = ngx.req.get_uri_args(500)
  return {
    method = ngx.req.get_method(),
    path = ngx.var.uri,
    args = args,
    query = ngx.var.args or "",
    headers = headers,
    body = body or "",
    ctype = (type(headers["content-type"]) == "table" and headers["content-type"][1] or headers["content-type"]
             or ""):lower(),
  }
end

-- The body's fields whatever its encoding (JSON, form, multipart): map name -> value, or nil, reason.
function http.fields(req)
  local ctype = req.ctype
  if ctype:find("multipart/form-data", 1, true) then
    local map, files = multipart_decode(req.body, ctype)
    if not map then return nil, "malformed multipart body" end
    req.files = files
    return map
  elseif ctype:find("application/x-www-form-urlencoded", 1, true) then
    return form_fields(req.body)
  end
  -- JSON is the default (FreshBooks' own examples send it, sometimes without a content type).
  if req.body == "" then return {} end
  local v = json.decode(req.body)
  if type(v) ~= "table" then return nil, "malformed JSON body" end
  return v
end

function http.json_body(req)
  if req.body == "" then return nil, "empty body" end
  local v = json.decode(req.body)
  if type(v) ~= "table" then return nil, "malformed JSON body" end
  return v
end

local html_error = [[<!DOCTYPE html>
<html><head><title>%d %s</title></head>
<body><h1>%s</h1><p>The server encountered a temporary error. Please try again later.</p></body></html>
]]

local reasons = { [429] = "Too Many Requests", [500] = "Internal Server Error", [502] = "Bad Gateway",
                  [503] = "Service Unavailable", [504] = "Gateway Timeout" }

-- Faults that replace the answer. Returns true when the request is finished.
function http.apply_fault_before(_, fault)
  local kind = fault.fault
  if kind == "delay" then
    ngx.sleep((tonumber(fault.ms) or 1000) / 1000)
    return false
  elseif kind == "reset" then
    ngx.exit(444)
    return true
  elseif kind == "429" then
    ngx.status = 429
    ngx.header["Content-Type"] = "application/json"
    if fault.retry_after ~= false then ngx.header["Retry-After"] = tostring(fault.retry_after or 1) end
    ngx.print(json.encode({ message = "Too Many Requests" }))
    ngx.exit(ngx.OK)
    return true
  elseif kind == "html" or kind == "500" or kind == "502" or kind == "503" or kind == "504" then
    local code = tonumber(fault.status) or tonumber(kind) or 503
    ngx.status = code
    local reason = reasons[code] or "Error"
    if kind == "html" or code == 502 or code == 504 then
      ngx.header["Content-Type"] = "text/html"
      ngx.print(html_error:format(code, reason, reason))
    else
      ngx.header["Content-Type"] = "application/json"
      ngx.print(json.encode({ message = reason }))
    end
    ngx.exit(ngx.OK)
    return true
  end
  return false -- truncate, malformed, reset_after, delay_after: act on the real answer
end

-- Send status + body (table -> JSON, string as is). A fault may mangle the bytes on the wire.
function http.send(req, status, body, headers, fault)
  local data, ctype
  if type(body) == "table" then
    data, ctype = json.encode(body), "application/json"
  elseif body ~= nil then
    data, ctype = tostring(body), "text/plain"
  else
    data = ""
  end
  headers = headers or {}
  local kind = fault and fault.fault
  -- The request was handled (a token call has rotated); its answer is late: a slow network or server.
  if kind == "delay_after" then ngx.sleep((tonumber(fault.ms) or 1000) / 1000) end
  if req.log then -- when the answer leaves: [time, done] shows specs how many requests were in flight
    ngx.update_time()
    req.log.status, req.log.done = status, ngx.now()
  end
  -- Where truncate/malformed cut the body: half way, or just before `cut_before` (a plain string).
  local cut = math.max(1, math.floor(#data / 2))
  local at = fault and type(fault.cut_before) == "string" and data:find(fault.cut_before, 1, true)
  if at then cut = at - 1 end
  if kind == "malformed" then
    data = data:sub(1, cut) .. '",}{not json'
  elseif kind == "truncate" or kind == "reset_after" then
    -- Write the response ourselves on the raw socket, promise more bytes than we send, then close.
    local sock = ngx.req.socket(true)
    if sock then
      if kind == "reset_after" then cut = 0 end
      local lines = { string.format("HTTP/1.1 %d %s", status, "OK"),
                      "Content-Type: " .. (headers["Content-Type"] or ctype or "application/json"),
                      "Content-Length: " .. #data, "Connection: keep-alive", "", "" }
      if kind == "truncate" then sock:send(table.concat(lines, "\r\n") .. data:sub(1, cut)) end
      return ngx.exit(444)
    end
  end
  ngx.status = status
  -- Date says the sandbox's time (its clock may be moved): clients learn FreshBooks' "now" from it.
  ngx.header["Date"] = ngx.http_time(math.floor(require("sandbox.state").now()))
  if ctype and not headers["Content-Type"] then ngx.header["Content-Type"] = ctype end
  for k, v in pairs(headers) do ngx.header[k] = v end
  if status ~= 204 and status ~= 304 then ngx.header["Content-Length"] = #data end
  if req.method ~= "HEAD" and data ~= "" then ngx.print(data) end
  return ngx.exit(ngx.OK)
end

return http
