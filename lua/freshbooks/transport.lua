-- The transport seam. A transport is `function(req) -> res | nil, err` with
--   req = { method, url, headers = { Name = value }, body = string?, timeout = seconds? }
--   res = { status = n, headers = { lowercase = value }, body = string }
-- plus an optional `batch(reqs, opts) -> { {res =, err =}, ... }` (input order). The default is the C
-- core over libcurl; OpenResty users and tests may pass their own.
local errors = require "freshbooks.errors"

local transport = {}

-- transport.curl(opts) -> a transport over one C-core client (one connection cache).
-- opts are passed to core.client (timeouts, cainfo, proxy, max_body, insecure_no_verify_tls, ...).
function transport.curl(opts)
  local core = require "freshbooks.core"
  local client = core.client(opts or {})
  local t = {}
  local function call(_, req)
    local status, headers, body = client:request(req)
    if not status then return nil, errors.from_core(headers) end
    return { status = status, headers = headers, body = body }
  end
  function t.batch(reqs, bopts)
    local out = client:batch(reqs, bopts or {})
    for i, r in ipairs(out) do
      if r.err then
        out[i] = { err = errors.from_core(r.err) }
      else
        out[i] = { res = r }
      end
    end
    return out
  end
  function t.close() client:close() end
  return setmetatable(t, { __call = call })
end

-- OpenResty: the same contract over nginx cosockets, so a request never blocks the nginx worker.
-- Connections are kept alive in nginx's per-worker pool; TLS is verified against
-- `lua_ssl_trusted_certificate` (set it in nginx.conf) unless insecure_no_verify_tls is given.
-- opts: connect_timeout, timeout (seconds), max_body (bytes), user_agent, pool_size, keepalive (s),
-- insecure_no_verify_tls.
local DEFAULT_MAX_BODY = 64 * 1024 * 1024

local function cosocket_error(code, message)
  return errors.new{ code = code, message = message }
end

-- ngx's socket error strings to our stable codes.
local function classify(err, phase)
  err = tostring(err)
  if err:find("timeout", 1, true) then return "timeout" end
  if phase == "connect" then
    if err:find("resolve", 1, true) or err:find("resolver", 1, true) then return "resolve" end
    return "connect"
  end
  if phase == "tls" then return "tls" end
  if phase == "send" then return "send" end
  return "recv"
end

local function parse_url(url)
  local scheme, host, port, path = url:match("^(https?)://([^/:?#]+):?(%d*)([^#]*)$")
  if not scheme then return nil end
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  return scheme, host, tonumber(port) or (scheme == "https" and 443 or 80), path
end

local function header_value(v)
  if type(v) == "userdata" then return require("freshbooks.core").reveal(v) end
  return tostring(v)
end

local function read_body(sock, headers, max_body)
  local te = headers["transfer-encoding"]
  if type(te) == "string" and te:lower():find("chunked", 1, true) then
    local parts, total = {}, 0
    while true do
      local line, err = sock:receive("*l")
      if not line then return nil, err end
      local size = tonumber(line:match("^%s*(%x+)"), 16)
      if not size then return nil, "bad chunk size" end
      if size == 0 then
        repeat -- trailers, up to the empty line
          line, err = sock:receive("*l")
          if not line then return nil, err end
        until line == ""
        return table.concat(parts)
      end
      total = total + size
      if total > max_body then return nil, "too_large" end
      local data
      data, err = sock:receive(size)
      if not data then return nil, err end
      parts[#parts + 1] = data
      sock:receive(2) -- the CRLF after each chunk
    end
  end
  local len = tonumber(headers["content-length"])
  if len then
    if len > max_body then return nil, "too_large" end
    if len == 0 then return "" end
    return sock:receive(len)
  end
  local data, err, partial = sock:receive("*a") -- delimited by close
  data = data or partial
  if data and #data > max_body then return nil, "too_large" end
  return data, data == nil and err or nil
end

function transport.cosocket(opts)
  opts = opts or {}
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.socket and ngx.socket.tcp) then error("freshbooks.transport.cosocket needs OpenResty", 2) end
  local connect_ms = (opts.connect_timeout or 10) * 1000
  local max_body = opts.max_body or DEFAULT_MAX_BODY
  local verify = not opts.insecure_no_verify_tls
  local user_agent = opts.user_agent or ("lua-freshbooks/" .. (require("freshbooks")._VERSION))
  local keepalive_ms, pool_size = (opts.keepalive or 60) * 1000, opts.pool_size or 16

  local function request(_, req)
    local scheme, host, port, path = parse_url(req.url or "")
    if not scheme then error("freshbooks transport: bad url", 2) end
    local total_ms = (req.timeout or opts.timeout or 60) * 1000
    local deadline = ngx.now() * 1000 + total_ms
    local sock = ngx.socket.tcp()
    sock:settimeouts(connect_ms, total_ms, total_ms)
    local ok, err = sock:connect(host, port, { pool = scheme .. ":" .. host .. ":" .. port })
    if not ok then return nil, cosocket_error(classify(err, "connect"), "connect to " .. host .. ": " .. err) end
    if scheme == "https" and sock:getreusedtimes() == 0 then
      -- nginx checks the name against DNS entries only; for an IP literal (the local sandbox) it can
      -- only verify the chain, and SNI must not carry an IP anyway (RFC 6066).
      local name = not host:match("^[%d%.]+$") and not host:find(":", 1, true) and host or nil
      ok, err = sock:sslhandshake(nil, name, verify)
      if not ok then sock:close(); return nil, cosocket_error(classify(err, "tls"), "TLS: " .. tostring(err)) end
    end
    local body = req.body
    if type(body) == "table" then
      local parts = {}
      for i, p in ipairs(body) do parts[i] = header_value(p) end
      body = table.concat(parts)
    end
    local lines = { (req.method or "GET") .. " " .. path .. " HTTP/1.1", "Host: " .. host ..
      ((port == 80 or port == 443) and "" or ":" .. port), "User-Agent: " .. user_agent }
    local has_length = false
    for k, v in pairs(req.headers or {}) do
      if type(k) == "number" then
        lines[#lines + 1] = header_value(v)
      else
        if k:lower() == "content-length" then has_length = true end
        lines[#lines + 1] = k .. ": " .. header_value(v)
      end
    end
    if body and not has_length then lines[#lines + 1] = "Content-Length: " .. #body end
    local _, serr = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or ""))
    if serr then sock:close(); return nil, cosocket_error(classify(serr, "send"), "send: " .. serr) end

    -- The read timeout shrinks so the whole exchange stays within `timeout`.
    sock:settimeouts(connect_ms, total_ms, math.max(1, deadline - ngx.now() * 1000))
    local status_line, rerr = sock:receive("*l")
    if not status_line then sock:close(); return nil, cosocket_error(classify(rerr, "recv"), "receive: " .. rerr) end
    local status = tonumber(status_line:match("^HTTP/%d%.%d (%d%d%d)"))
    if not status then sock:close(); return nil, cosocket_error("protocol", "not an HTTP response") end
    local headers = {}
    while true do
      local line
      line, rerr = sock:receive("*l")
      if not line then sock:close(); return nil, cosocket_error(classify(rerr, "recv"), "receive: " .. rerr) end
      if line == "" then break end
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then
        name = name:lower()
        local prev = headers[name]
        if prev == nil then headers[name] = value
        elseif type(prev) == "table" then prev[#prev + 1] = value
        else headers[name] = { prev, value } end
      end
    end
    local data = ""
    if req.method ~= "HEAD" and status ~= 204 and status ~= 304 and not (status >= 100 and status < 200) then
      data, rerr = read_body(sock, headers, max_body)
      if not data then
        sock:close()
        if rerr == "too_large" then return nil, cosocket_error("too_large", "response larger than max_body") end
        return nil, cosocket_error(classify(rerr, "recv"), "receive: " .. tostring(rerr))
      end
    end
    local conn = headers["connection"]
    if type(conn) == "string" and conn:lower() == "close" or not headers["content-length"]
        and not headers["transfer-encoding"] and data ~= "" then
      sock:close()
    else
      sock:setkeepalive(keepalive_ms, pool_size)
    end
    return { status = status, headers = headers, body = data }
  end

  local t = {}
  -- Light threads, at most `concurrency` at once, results in input order.
  function t.batch(reqs, bopts)
    local out, next_i = {}, 1
    local function worker()
      while next_i <= #reqs do
        local i = next_i
        next_i = next_i + 1
        local res, err = request(nil, reqs[i])
        out[i] = { res = res, err = err }
      end
    end
    local threads = {}
    for k = 1, math.min((bopts and bopts.concurrency) or 8, #reqs) do threads[k] = ngx.thread.spawn(worker) end
    for _, th in ipairs(threads) do ngx.thread.wait(th) end
    return out
  end
  return setmetatable(t, { __call = request })
end

-- ngx when running in an OpenResty phase where cosockets and ngx.sleep work (so nothing may block);
-- nil elsewhere (plain Lua, or init phases where blocking is allowed).
local YIELDING_PHASES = { rewrite = true, access = true, content = true, timer = true, ssl_cert = true,
  ssl_session_fetch = true }
function transport.openresty()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.get_phase and YIELDING_PHASES[ngx.get_phase()] then return ngx end
  return nil
end

-- The transport a session gets when none is given: cosockets inside OpenResty's request phases
-- (where blocking libcurl would stall the worker), the C core everywhere else.
function transport.default(opts)
  if transport.openresty() then return transport.cosocket(opts) end
  return transport.curl(opts)
end

-- Run a batch on any transport: its own batch when it has one, else one request after another.
function transport.batch(t, reqs, opts)
  if type(t) == "table" and t.batch then return t.batch(reqs, opts) end
  local out = {}
  for i, req in ipairs(reqs) do
    local res, err = t(req)
    out[i] = { res = res, err = err }
  end
  return out
end

return transport
