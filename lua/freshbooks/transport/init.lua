-- The transport seam. A transport is `function(req) -> res | nil, err` with
--   req = { method, url, headers = { Name = value }, body = string?, timeout = seconds?,
--           idempotent = bool?, keep_partial = bool?, finish = bool? }
--   res = { status = n, headers = { lowercase = value }, body = string }
-- plus optional `batch(reqs, opts) -> { {res =, err =}, ... }` (input order) and `stream(opts)` ->
-- `{add(req) -> id, next() -> id, res, err | nil when nothing is left, close()}` (results as they
-- complete, `opts.concurrency` in flight). Tests and OpenResty users may pass their own.
--
-- Both built-in transports keep one contract, proven by spec/transport_conformance_spec.lua:
--   * the request policy is the C core's (src/request.c): methods, URLs, header names and values are
--     checked the same way, the framing headers belong to the transport, the caller's User-Agent wins;
--     a bad request raises before a byte is sent;
--   * one deadline per request (`timeout`, default 60 s) covers connect, send, headers and body;
--   * responses are read by HTTP/1.1's framing rules, `max_body` applies in every framing, and a
--     connection goes back to the pool only when its answer was read exactly and completely;
--   * failures are `nil, err` with the same codes for the same bytes: timeout, connect, resolve, tls,
--     send, recv, protocol, too_large (with `status` once one arrived, and with `keep_partial` a
--     cut-off body as `err.partial_body`).
local errors = require "freshbooks.errors"

local transport = {}
local shared_curl -- below: the default transport's process-wide clients

local core = require "freshbooks.core"

-- transport.curl(opts) -> a transport over one C-core client (one connection cache).
-- opts are passed to core.client (timeouts, cainfo, proxy, max_body, insecure_no_verify_tls, ...).
function transport.curl(opts)
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
  -- A stream: requests added as places free up, results as they complete (the C core keeps
  -- `concurrency` transfers in flight on handles and connections reused for the whole stream).
  function t.stream(sopts)
    local st = client:stream(sopts or {})
    return {
      add = function(req) return st:add(req) end,
      next = function()
        local id, status, headers, body = st:next()
        if not id then return nil end
        if not status then return id, nil, errors.from_core(headers) end
        return id, { status = status, headers = headers, body = body }
      end,
      close = function() st:close() end,
    }
  end
  function t.close() client:close() end
  return setmetatable(t, { __call = call })
end

---------------------------------------------------------------------------------------------------
-- OpenResty: the same contract over nginx cosockets, so a request never blocks the nginx worker.
-- Connections are kept alive in nginx's per-worker pool, keyed by everything that makes one differ
-- (scheme, host, port, TLS name, verification); TLS is verified against `lua_ssl_trusted_certificate`.

local DEFAULT_MAX_BODY = 64 * 1024 * 1024
local MAX_HEADER_BYTES = 256 * 1024 -- the C core's FB_MAX_HEADER_BYTES
local MAX_1XX = 16 -- the C core's FB_MAX_1XX: informational answers skipped before the final one
local READ_SIZE = 65536

-- Options of core.client that have no meaning on cosockets: refused, never silently ignored.
local UNSUPPORTED = {
  cainfo = "TLS trust comes from nginx's lua_ssl_trusted_certificate",
  capath = "TLS trust comes from nginx's lua_ssl_trusted_certificate",
  proxy = "cosockets connect directly",
  share = "nginx pools the worker's connections",
}
local COSOCKET_OPTIONS = { connect_timeout = true, timeout = true, max_body = true, user_agent = true,
  insecure_no_verify_tls = true, pool_size = true, keepalive = true }

local function check_cosocket_options(opts, level)
  for k, v in pairs(opts) do
    if UNSUPPORTED[k] and v ~= nil then
      error(("freshbooks.transport: option '%s' is not supported under OpenResty (%s)"):format(k, UNSUPPORTED[k]),
        level + 1)
    end
    if not COSOCKET_OPTIONS[k] then error("freshbooks.transport: unknown option '" .. tostring(k) .. "'", level + 1) end
  end
  local function number(k, default, min)
    local v = opts[k]
    if v == nil then return default end
    if type(v) ~= "number" or v ~= v or v < min then
      error(("freshbooks.transport: %s must be a number >= %s"):format(k, min), level + 2)
    end
    return v
  end
  if opts.insecure_no_verify_tls ~= nil and type(opts.insecure_no_verify_tls) ~= "boolean" then
    error("freshbooks.transport: insecure_no_verify_tls must be a boolean", level + 1)
  end
  if opts.user_agent ~= nil and type(opts.user_agent) ~= "string" then
    error("freshbooks.transport: user_agent must be a string", level + 1)
  end
  return {
    connect_ms = number("connect_timeout", 10, 0.001) * 1000,
    timeout = number("timeout", 60, 0.001),
    max_body = math.floor(number("max_body", DEFAULT_MAX_BODY, 1)),
    verify = not opts.insecure_no_verify_tls,
    user_agent = opts.user_agent,
    keepalive_ms = number("keepalive", 60, 0) * 1000,
    pool_size = math.floor(number("pool_size", 16, 1)),
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
      if err == "too_large" then return nil, "too_large", "response headers larger than 256 KiB" end
      return nil, socket_code(err), "the connection closed before the response headers ended (" .. err .. ")"
    end
    budget.left = budget.left - #line - 2
    if budget.left < 0 then return nil, "too_large", "response headers larger than 256 KiB" end
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
  local budget = { left = MAX_HEADER_BYTES }
  for _ = 1, MAX_1XX + 1 do
    local line, err = r.line(budget.left)
    if not line then
      if err == "too_large" then return nil, "too_large", "response headers larger than 256 KiB" end
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

function transport.cosocket(opts)
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.socket and ngx.socket.tcp) then error("freshbooks.transport.cosocket needs OpenResty", 2) end
  local cfg = check_cosocket_options(opts or {}, 2)
  local user_agent = cfg.user_agent or ("lua-freshbooks/" .. core.version)

  -- A connected (and, for https, verified) socket: from the pool unless `fresh`. A fresh connection
  -- is looked up under a name no pool has, and is closed after its one request.
  local fresh_names = 0
  local function open(p, deadline, fresh)
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
    if fresh then fresh_names = fresh_names + 1; pool = pool .. ":fresh:" .. fresh_names end
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

  -- One exchange for a request the C core's policy already checked and rendered (`p`). A request
  -- that must not be sent twice never goes on a pooled connection, which the server may have closed
  -- already: its failure would be ambiguous. An idempotent one without a body is sent once more, on a
  -- fresh connection, when a pooled connection turns out dead before a byte of the answer (as
  -- libcurl does).
  local function exchange(p, req, deadline, fresh)
    local sock, err = open(p, deadline, fresh)
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
        return exchange(p, req, deadline, true)
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

  local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }
  local function send(p, req)
    local method = req.method or "GET"
    local once = req.idempotent == false or (req.idempotent == nil and not IDEMPOTENT[method])
    return exchange(p, req, ngx.now() * 1000 + (req.timeout or cfg.timeout) * 1000, once)
  end

  local t = {}
  -- Light threads, at most `concurrency` at once, results in input order. Every request is checked
  -- before the first one goes out, as the C core's batch does.
  function t.batch(reqs, bopts)
    local prepared = {}
    for i, req in ipairs(reqs) do prepared[i] = core.http_request(req, user_agent) end
    local out, next_i = {}, 1
    local function worker()
      while next_i <= #reqs do
        local i = next_i
        next_i = next_i + 1
        local res, err = send(prepared[i], reqs[i])
        out[i] = { res = res, err = err }
      end
    end
    local threads = {}
    for k = 1, math.min((bopts and bopts.concurrency) or 8, #reqs) do threads[k] = ngx.thread.spawn(worker) end
    for _, th in ipairs(threads) do ngx.thread.wait(th) end
    return out
  end
  -- A stream on light threads: one per request in flight, at most `concurrency`; next() waits for
  -- whichever finishes first.
  function t.stream(sopts)
    local limit = (sopts and sopts.concurrency) or 8
    local running, by_id, queue, ids = {}, {}, {}, 0
    local function start(id, p, req)
      local th = ngx.thread.spawn(function()
        local done, res, err = pcall(send, p, req)
        if not done then return id, nil, errors.new{ code = "internal", message = tostring(res) } end
        return id, res, err
      end)
      running[#running + 1], by_id[id] = th, th
    end
    return {
      add = function(req)
        local p = core.http_request(req, user_agent)
        ids = ids + 1
        if #running < limit then start(ids, p, req) else queue[#queue + 1] = { ids, p, req } end
        return ids
      end,
      next = function()
        if #running == 0 then return nil end
        local _, id, res, err = ngx.thread.wait((table.unpack or unpack)(running)) -- (the thread never raises)
        local th = by_id[id]
        by_id[id] = nil
        for i = #running, 1, -1 do if running[i] == th then table.remove(running, i) break end end
        local q = table.remove(queue, 1)
        if q then start(q[1], q[2], q[3]) end
        return id, res, err
      end,
      close = function()
        for _, th in ipairs(running) do ngx.thread.kill(th) end
        running, queue = {}, {}
      end,
    }
  end
  return setmetatable(t, { __call = function(_, req) return send(core.http_request(req, user_agent), req) end })
end

---------------------------------------------------------------------------------------------------
-- Choosing per request

local shared = setmetatable({}, { __mode = "v" }) -- options -> transport, while sessions use it
function shared_curl(opts)
  local keys = {}
  for k in pairs(opts) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = k .. "=" .. tostring(opts[k]) end
  local key = table.concat(parts, "\0")
  local t = shared[key]
  if not t then
    t = transport.curl(opts)
    t.close = nil -- others may be using it; it closes when the last session lets it go
    shared[key] = t
  end
  return t
end

-- ngx when running in an OpenResty phase where cosockets and ngx.sleep work (so nothing may block);
-- nil elsewhere (plain Lua, or nginx phases where blocking is allowed). Every yielding phase must be
-- here: one left out gets core.sleep and libcurl's blocking calls (server_rewrite: lua-nginx-module
-- 0.10.22, Debian 12's is 0.10.23; ssl_client_hello: 0.10.21).
local YIELDING_PHASES = { rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true }
function transport.openresty()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.get_phase and YIELDING_PHASES[ngx.get_phase()] then return ngx end
  return nil
end

-- ngx when running inside nginx (any phase), else nil.
function transport.in_nginx()
  local ngx = rawget(_G, "ngx")
  return ngx and ngx.get_phase and ngx.socket and ngx.socket.tcp and ngx or nil
end
local in_nginx = transport.in_nginx

-- The transport a session gets when none is given. It decides per request, not once: a session
-- built in init_by_lua (one per worker, as OpenResty apps do) must use cosockets in the request
-- handlers later. Inside nginx, a phase that cannot yield gets a coded error instead of a blocking
-- libcurl call; outside nginx it is the C core.
function transport.default(opts)
  opts = opts or {}
  local cos_opts, curl_opts = {}, {}
  for k, v in pairs(opts) do
    if k == "pool_size" or k == "keepalive" then cos_opts[k] = v else curl_opts[k] = v; cos_opts[k] = v end
  end
  -- Outside nginx no request will ever run inside it: the C core, without a chooser in between, and
  -- one client (one easy handle) shared by every session with the same options: calls into it never
  -- interleave (a call returns before the next begins), and a session stays a few KB.
  if not in_nginx() then return shared_curl(curl_opts) end
  check_cosocket_options(cos_opts, 2)
  local curl_t, cos_t
  local function pick()
    local ngx = in_nginx()
    if not ngx then
      curl_t = curl_t or transport.curl(curl_opts)
      return curl_t
    end
    if not YIELDING_PHASES[ngx.get_phase()] then
      return nil, errors.new{ code = "blocking_phase", message = "no HTTP request in nginx's " .. ngx.get_phase() ..
        " phase: cosockets cannot run there and libcurl would block the worker (use ngx.timer.at or a handler)" }
    end
    cos_t = cos_t or transport.cosocket(cos_opts)
    return cos_t
  end
  local t = {}
  function t.batch(reqs, bopts)
    local chosen, err = pick()
    if not chosen then
      local out = {}
      for i = 1, #reqs do out[i] = { err = err } end
      return out
    end
    return chosen.batch(reqs, bopts)
  end
  function t.stream(sopts)
    local chosen, err = pick()
    if not chosen then return nil, err end
    return chosen.stream(sopts)
  end
  function t.close() if curl_t then curl_t.close() end end
  return setmetatable(t, { __call = function(_, req)
    local chosen, err = pick()
    if not chosen then return nil, err end
    return chosen(req)
  end })
end

-- A stream on any transport: its own when it has one, else requests one at a time as next() asks.
function transport.stream(t, opts)
  if type(t) == "table" and t.stream then return t.stream(opts) end
  local pending, ids = {}, 0
  return {
    add = function(req) ids = ids + 1; pending[#pending + 1] = { ids, req }; return ids end,
    next = function()
      local q = table.remove(pending, 1)
      if not q then return nil end
      return q[1], t(q[2])
    end,
    close = function() pending = {} end,
  }
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
