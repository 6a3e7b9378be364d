-- The transport over nginx cosockets (OpenResty): the same contract as the C core's (transport/init.lua),
-- so a request never blocks the nginx worker. The request policy, the limits and the rule of what may
-- be sent twice are the C core's (core.http.render, core.http.limits); the HTTP/1.1 answer is read here.
-- Connections are kept alive in nginx's per-worker pool, keyed by everything that makes one differ
-- (scheme, host, port, TLS name, verification); TLS is verified against `lua_ssl_trusted_certificate`.
--   local t = require("freshbooks.transport").cosocket{ timeout = 30, pool_size = 16, keepalive = 60 }
local core = require "freshbooks.core"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"

local LIMITS = core.http.limits
local READ_SIZE = 65536

-- Options of core.http.client that have no meaning on cosockets: refused, never silently ignored.
local UNSUPPORTED = {
  cainfo = "TLS trust comes from nginx's lua_ssl_trusted_certificate",
  capath = "TLS trust comes from nginx's lua_ssl_trusted_certificate",
  proxy = "cosockets connect directly",
  share = "nginx pools the worker's connections",
}
local OPTIONS = options.spec{
  connect_timeout = { "number", min = 0.001, default = LIMITS.connect_timeout },
  timeout = { "number", min = 0.001, default = LIMITS.timeout },
  max_body = { "number", min = 1, default = LIMITS.max_body },
  user_agent = { "string" },
  insecure_no_verify_tls = { "boolean" },
  pool_size = { "number", min = 1, default = 16 },
  keepalive = { "number", min = 0, default = 60 },
}

local WHO = "freshbooks.transport.cosocket"
local HEADER_KIB = math.floor(LIMITS.max_header_bytes / 1024)

-- The checked options, as the transport uses them. `level`: error()'s, from the caller of check.
local function check(opts, level)
  for k, v in pairs(type(opts) == "table" and opts or {}) do
    if UNSUPPORTED[k] and v ~= nil then
      error(("%s: option '%s' is not supported under OpenResty (%s)"):format(WHO, k, UNSUPPORTED[k]), level + 1)
    end
  end
  local o = options.check(WHO, OPTIONS, opts, level + 1)
  return {
    connect_ms = o.connect_timeout * 1000,
    timeout = o.timeout,
    max_body = math.floor(o.max_body),
    verify = not o.insecure_no_verify_tls,
    user_agent = o.user_agent or ("lua-freshbooks/" .. core.version),
    keepalive_ms = o.keepalive * 1000,
    pool_size = math.floor(o.pool_size),
  }
end

local function fail(code, message, status, partial_body)
  return nil, errors.new{ code = code, message = message, status = status,
    partial_body = partial_body ~= "" and partial_body or nil }
end

-- ngx's socket error strings -> our codes.
local function socket_code(err, phase)
  err = tostring(err)
  if err == "timeout" then return "timeout" end
  if phase == "connect" then
    if err:find("resolve", 1, true) or err:find("resolver", 1, true) then return "resolve" end
    return "connect"
  end
  return phase == "send" and "send" or "recv"
end

-- Buffered reads over receiveany, so the deadline is checked between every arrival: a server that
-- drips one byte at a time cannot stretch a request past its deadline (a plain receive's timeout is
-- per read, and restarts with each byte).
local function reader(ngx, sock, deadline)
  local buf, pos, received = "", 1, 0
  local r = {}
  local function fill()
    local left = deadline - ngx.now() * 1000
    if left <= 0 then return nil, "timeout" end
    left = math.max(1, math.floor(left))
    sock:settimeouts(left, left, left)
    local data, err = sock:receiveany(READ_SIZE)
    if not data then return nil, err end
    received = received + #data
    if pos > 1 then buf, pos = buf:sub(pos), 1 end
    buf = buf .. data
    return true
  end
  -- A line without its CRLF (a bare LF is tolerated, as libcurl does); nil, "too_large" past `limit`.
  function r.line(limit)
    while true do
      local e = buf:find("\n", pos, true)
      if e then
        if e - pos > limit then return nil, "too_large" end
        local line = buf:sub(pos, e - 1)
        pos = e + 1
        if line:sub(-1) == "\r" then line = line:sub(1, -2) end
        return line
      end
      if #buf - pos + 1 > limit then return nil, "too_large" end
      local ok, err = fill()
      if not ok then return nil, err end
    end
  end
  -- Exactly n bytes.
  function r.bytes(n)
    local parts, have = {}, 0
    while true do
      local avail = #buf - pos + 1
      if avail > 0 then
        local take = math.min(avail, n - have)
        parts[#parts + 1] = buf:sub(pos, pos + take - 1)
        pos, have = pos + take, have + take
      end
      if have >= n then return table.concat(parts) end
      local ok, err = fill()
      if not ok then return nil, err, table.concat(parts) end
    end
  end
  -- Everything until the peer closes, at most `limit` bytes.
  function r.rest(limit)
    local parts = { buf:sub(pos) }
    local have = #parts[1]
    buf, pos = "", 1
    while true do
      if have > limit then return nil, "too_large" end
      local ok, err = fill()
      if not ok then
        if err == "closed" then return table.concat(parts) end
        return nil, err
      end
      parts[#parts + 1], have, buf = buf, have + #buf, ""
    end
  end
  function r.leftover() return #buf - pos + 1 end
  function r.received() return received end
  return r
end

local function add_header(headers, name, value)
  local prev = headers[name]
  if prev == nil then headers[name] = value
  elseif type(prev) == "table" then prev[#prev + 1] = value
  else headers[name] = { prev, value } end
end

-- One header block (after a status line) -> headers, or nil, code, message.
local function read_headers(r, budget)
  local headers = {}
  while true do
    local line, err = r.line(budget.left)
    if not line then
      if err == "too_large" then return nil, "too_large", "response headers larger than " .. HEADER_KIB .. " KiB" end
      return nil, socket_code(err), "the connection closed before the response headers ended (" .. err .. ")"
    end
    budget.left = budget.left - #line - 2
    if budget.left < 0 then return nil, "too_large", "response headers larger than " .. HEADER_KIB .. " KiB" end
    if line == "" then return headers end
    local name, value = line:match("^([!#$%%&'*+%-.^_`|~%w]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, "protocol", "a malformed response header line" end
    add_header(headers, name:lower(), value)
  end
end

local function list(v) return type(v) == "table" and v or { v } end

local function too_large(max_body)
  return nil, "too_large", ("response body larger than max_body (%d bytes)"):format(max_body)
end

-- The status line and headers of the final answer (1xx skipped) -> status, headers, version, and
-- what is left of the header budget (the trailers' too, as in the C core).
local function read_head(r)
  local budget = { left = LIMITS.max_header_bytes }
  for _ = 1, LIMITS.max_1xx + 1 do
    local line, err = r.line(budget.left)
    if not line then
      if err == "too_large" then return nil, "too_large", "response headers larger than " .. HEADER_KIB .. " KiB" end
      return nil, socket_code(err), err == "closed" and "empty reply from server" or ("receive: " .. err)
    end
    budget.left = budget.left - #line - 2
    local minor, code, rest = line:match("^HTTP/1%.([01]) (%d%d%d)(.*)$")
    if not code or not (rest == "" or rest:sub(1, 1) == " ") then
      return nil, "protocol", "not an HTTP/1.x status line"
    end
    code = tonumber(code)
    if code < 100 then return nil, "protocol", "unsupported response code in HTTP response" end
    local headers, herr, hmsg = read_headers(r, budget)
    if not headers then return nil, herr, hmsg end
    if code == 101 then return nil, "protocol", "the server switched protocols (HTTP 101), which was not asked for" end
    if code >= 200 then return code, headers, minor, budget end
  end
  return nil, "protocol", "too many 1xx responses"
end

-- A body without framing runs until the server closes: never reusable.
local function until_close(r, max_body)
  local body, err = r.rest(max_body)
  if not body then
    if err == "too_large" then return too_large(max_body) end
    return nil, socket_code(err), "receive: " .. err
  end
  return body, false
end

-- Content-Length as the C core reads it, whatever the framing: digits only, every copy the same
-- string -> its number, nil when absent, or false, code, message.
local function content_length(headers)
  local cl = headers["content-length"]
  if not cl then return nil end
  local values = list(cl)
  for _, v in ipairs(values) do
    if not v:match("^%d+$") then return false, "protocol", "invalid Content-Length value" end
    if v ~= values[1] then return false, "protocol", "conflicting Content-Length headers in the response" end
  end
  return tonumber(values[1]) -- inexact past 2^53 only, and max_body is below that
end

-- The body by HTTP/1.1's rules -> body, reusable (the connection may serve another request), or
-- nil, code, message.
local function read_body(r, method, status, headers, max_body, budget)
  local len, lcode, lmessage = content_length(headers)
  if len == false then return nil, lcode, lmessage end
  if method == "HEAD" or status == 204 or status == 304 then return "", true end
  local te = headers["transfer-encoding"]
  if te then
    local codings = table.concat(list(te), ","):lower()
    if not codings:match("chunked%s*$") then return until_close(r, max_body) end -- not chunked last
    local parts, total = {}, 0
    while true do
      local line, err = r.line(4096)
      if not line then
        if err == "too_large" then return nil, "protocol", "malformed chunk size line" end
        return nil, socket_code(err), "receive: " .. err
      end
      local hex = line:match("^(%x+)[ \t]*$") or line:match("^(%x+)[ \t]*;")
      if not hex then return nil, "protocol", "illegal or missing hexadecimal chunk size" end
      if #hex > 15 then return nil, "protocol", "too long hexadecimal chunk size" end
      local size = tonumber(hex, 16)
      if size == 0 then
        local trailers, terr, tmsg = read_headers(r, budget)
        if not trailers then return nil, terr, tmsg end
        -- A Content-Length beside chunked framing is ignored, and such a connection is not reused.
        return table.concat(parts), headers["content-length"] == nil
      end
      total = total + size
      if total > max_body then return too_large(max_body) end
      local data
      data, err = r.bytes(size)
      if not data then return nil, socket_code(err), "receive: " .. err end
      parts[#parts + 1] = data
      local crlf
      crlf, err = r.bytes(2)
      if not crlf then return nil, socket_code(err), "receive: " .. err end
      if crlf ~= "\r\n" then return nil, "protocol", "malformed chunked encoding (no CRLF after a chunk)" end
    end
  end
  if len then
    if len > max_body then return too_large(max_body) end
    local body, err, partial = r.bytes(len)
    if not body then return nil, socket_code(err), "receive: " .. err, partial end
    return body, true
  end
  return until_close(r, max_body)
end

local function keeps_alive(headers, minor)
  local conn = headers["connection"]
  conn = conn and table.concat(list(conn), ","):lower() or ""
  if minor == "0" then return conn:find("keep-alive", 1, true) ~= nil end
  return conn:find("close", 1, true) == nil
end

local function is_ip(host) return host:match("^%d+%.%d+%.%d+%.%d+$") or host:sub(1, 1) == "[" end

-- A connected (and, for https, verified) socket: from the pool unless `fresh`. A fresh connection is
-- looked up under a name no pool has, and is closed after its one request.
local function open(cfg, p, deadline, fresh)
  local ngx = cfg.ngx
  local host = p.host:gsub("^%[(.*)%]$", "%1")
  local https = p.scheme == "https"
  -- nginx checks a peer's name against its DNS names only: an IP address cannot be verified.
  local name = https and not is_ip(p.host) and p.host or nil
  if https and cfg.verify and not name then
    return fail("tls", "cannot verify TLS for an IP address under OpenResty: use the server's host name")
  end
  local sock = ngx.socket.tcp()
  local left = math.max(1, math.floor(deadline - ngx.now() * 1000))
  sock:settimeouts(math.min(cfg.connect_ms, left), left, left)
  local pool = table.concat({ p.scheme, p.host, p.port, name or "", cfg.verify and "verify" or "noverify" }, ":")
  if fresh then cfg.fresh_names = cfg.fresh_names + 1; pool = pool .. ":fresh:" .. cfg.fresh_names end
  -- nginx's resolver may not know "localhost" (it reads no /etc/hosts): its address is fixed.
  local ok, err = sock:connect(host == "localhost" and "127.0.0.1" or host, p.port,
    { pool = pool, pool_size = cfg.pool_size })
  if not ok then return fail(socket_code(err, "connect"), "connect to " .. p.host .. ": " .. err) end
  if https and sock:getreusedtimes() == 0 then
    -- Ask for the session object (first argument nil, never false): when a handshake completes at
    -- once, lua-resty-core reports a failed verification only through that lookup, and it raises
    -- (an assertion) instead of returning the error; with `false` it would return true and the
    -- unverified connection would be used. Success may come without a session (nil, no error).
    local done, session, herr = pcall(sock.sslhandshake, sock, nil, name, cfg.verify)
    if not done or (session == nil and herr ~= nil) then
      sock:close()
      return fail("tls", "TLS: " .. (done and tostring(herr) or "the handshake failed (certificate verification)"))
    end
  end
  return sock
end

-- One exchange for a request the C core's policy already checked and rendered (`p`). A request that
-- must not be sent twice (`p.once`, the core's rule) never goes on a pooled connection, which the
-- server may have closed already: its failure would be ambiguous. An idempotent one without a body
-- is sent once more, on a fresh connection, when a pooled connection turns out dead before a byte of
-- the answer (as libcurl does).
local function exchange(cfg, p, req, deadline, fresh)
  local ngx = cfg.ngx
  local sock, err = open(cfg, p, deadline, fresh)
  if not sock then return nil, err end
  local reused = sock:getreusedtimes() > 0
  local left = math.max(1, math.floor(deadline - ngx.now() * 1000))
  sock:settimeouts(left, left, left)
  local r = reader(ngx, sock, deadline)
  local _, serr = sock:send(p.body and { p.head, p.body } or p.head)
  local status, headers, minor, budget
  if serr then
    status, headers, minor = nil, socket_code(serr, "send"), "send: " .. serr
  else
    status, headers, minor, budget = read_head(r)
  end
  if not status then -- (nil, code, message)
    sock:close()
    if reused and not p.body and r.received() == 0 and headers ~= "timeout" then
      return exchange(cfg, p, req, deadline, true)
    end
    return fail(headers, minor)
  end
  local body, reusable, message, partial = read_body(r, req.method or "GET", status, headers, cfg.max_body, budget)
  if not body then -- (nil, code, message, partial body)
    sock:close()
    return fail(reusable, message, status, req.keep_partial and partial or nil)
  end
  -- Reuse only a connection whose answer was read to its last byte and nothing more.
  if not fresh and reusable and r.leftover() == 0 and keeps_alive(headers, minor) then
    sock:setkeepalive(cfg.keepalive_ms, cfg.pool_size)
  else
    sock:close()
  end
  return { status = status, headers = headers, body = body }
end

local function send(cfg, p, req)
  return exchange(cfg, p, req, cfg.ngx.now() * 1000 + (req.timeout or cfg.timeout) * 1000, p.once)
end

-- A stream on light threads: one per request in flight, at most `concurrency`; next() waits for
-- whichever finishes first.
local Stream = {}
Stream.__index = Stream

local function start(s, id, p, req)
  local cfg = s.cfg
  local th = cfg.ngx.thread.spawn(function()
    local done, res, err = pcall(send, cfg, p, req)
    if not done then return id, nil, errors.new{ code = "internal", message = tostring(res) } end
    return id, res, err
  end)
  s.running[#s.running + 1], s.by_id[id] = th, th
end

function Stream:add(req)
  local p = core.http.render(req, self.cfg.user_agent)
  self.ids = self.ids + 1
  if #self.running < self.limit then start(self, self.ids, p, req)
  else self.queue[#self.queue + 1] = { self.ids, p, req } end
  return self.ids
end

function Stream:next()
  local running = self.running
  if #running == 0 then return nil end
  local _, id, res, err = self.cfg.ngx.thread.wait((table.unpack or unpack)(running)) -- (the thread never raises)
  local th = self.by_id[id]
  self.by_id[id] = nil
  for i = #running, 1, -1 do if running[i] == th then table.remove(running, i) break end end
  local q = table.remove(self.queue, 1)
  if q then start(self, q[1], q[2], q[3]) end
  return id, res, err
end

function Stream:close()
  for _, th in ipairs(self.running) do self.cfg.ngx.thread.kill(th) end
  self.running, self.queue = {}, {}
end

local Cosocket = {}
Cosocket.__index = Cosocket

function Cosocket:__call(req)
  return send(self.cfg, core.http.render(req, self.cfg.user_agent), req)
end

-- Light threads, at most `concurrency` at once, results in input order. Every request is checked
-- before the first one goes out, as the C core's batch does.
function Cosocket:batch(reqs, opts)
  local cfg = self.cfg
  local prepared = {}
  for i, req in ipairs(reqs) do prepared[i] = core.http.render(req, cfg.user_agent) end
  local out, next_i = {}, 1
  local function worker()
    while next_i <= #reqs do
      local i = next_i
      next_i = next_i + 1
      local res, err = send(cfg, prepared[i], reqs[i])
      out[i] = { res = res, err = err }
    end
  end
  local threads = {}
  for k = 1, math.min((opts and opts.concurrency) or LIMITS.concurrency, #reqs) do
    threads[k] = cfg.ngx.thread.spawn(worker)
  end
  for _, th in ipairs(threads) do cfg.ngx.thread.wait(th) end
  return out
end

function Cosocket:stream(opts)
  return setmetatable({ cfg = self.cfg, limit = (opts and opts.concurrency) or LIMITS.concurrency,
    running = {}, by_id = {}, queue = {}, ids = 0 }, Stream)
end

-- Nothing to release: the connections are nginx's pool.
function Cosocket.close() end

function Cosocket.__tostring() return "freshbooks.transport.cosocket" end

local cosocket = {}

-- cosocket.check(opts, level): raises on options a cosocket transport refuses (the chooser checks at
-- construction, before any request runs in nginx).
function cosocket.check(opts, level) check(opts, level + 1) end

-- cosocket.new(opts) -> a transport (inside OpenResty only).
function cosocket.new(opts)
  local cfg = check(opts, 2)
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.socket and ngx.socket.tcp) then error(WHO .. " needs OpenResty", 2) end
  cfg.ngx, cfg.fresh_names = ngx, 0
  return setmetatable({ cfg = cfg }, Cosocket)
end

return cosocket
