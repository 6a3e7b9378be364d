-- The login's loopback listener (lua-socket): it listens on exactly the redirect URI's address, on
-- loopback only, for the one callback request, and then closes. Everything else that reaches the port
-- gets a short answer and a note, never a hang: connections are read side by side (a browser's idle
-- pre-connection or a silent client cannot hold up the real callback), each with a deadline and a size
-- limit.
--   local lb = loopback.parse("http://localhost:8976/callback")    -- nil unless a loopback http URI
--   local listener, err = loopback.listen(lb)                      -- err.code "in_use" | "listen"
--   local req = listener:wait(deadline, note)                      -- the callback, or nil, "timeout"
--   listener:answer(req, 200, "Connected", "You can close this window.")
--   listener:close()                                               -- a late second request gets 409
local socket = require "socket"

local loopback = {}

local MAX_HEAD = 8192       -- bytes of request line + headers
local CONN_LIFE = 10        -- seconds a connection may take to send its request
local MAX_CONNS = 16
local SLICE = 0.25          -- longest wait in C, so Ctrl-C is seen promptly

-- http://localhost[:PORT][/path] or http://127.0.0.1[:PORT][/path] -> {host, port, path, addresses}
function loopback.parse(uri)
  local authority, path = tostring(uri):match("^[Hh][Tt][Tt][Pp]://([^/?#]+)([^?#]*)$")
  if not authority then return nil end
  local host, port = authority:match("^([^:]+):?(%d*)$")
  host = host and host:lower()
  if host ~= "localhost" and host ~= "127.0.0.1" then return nil end
  port = tonumber(port ~= "" and port or "80")
  if not port or port < 1 or port > 65535 then return nil end
  -- A browser may try either address for "localhost": hold both, so nothing else can take the code.
  return { host = host, port = port, path = path ~= "" and path or "/",
           addresses = host == "localhost" and { "127.0.0.1", "::1" } or { "127.0.0.1" } }
end

-- The same redirect URI on another port (`login --port N`).
function loopback.with_port(uri, port)
  local lb = loopback.parse(uri)
  if not lb then return nil end
  return ("http://%s:%d%s"):format(lb.host, port, lb.path)
end

local Listener = {}
Listener.__index = Listener

function loopback.listen(lb)
  local servers = {}
  local function fail(code, message)
    for _, s in ipairs(servers) do s:close() end
    return nil, { code = code, message = message }
  end
  for _, addr in ipairs(lb.addresses) do
    local v6 = addr:find(":", 1, true) ~= nil
    local s, err = (v6 and socket.tcp6 or socket.tcp4)()
    local ok = s ~= nil
    if s then
      s:setoption("reuseaddr", true) -- a previous login's closed connections (TIME_WAIT) do not block the port
      if v6 then s:setoption("ipv6-v6only", true) end
      ok, err = s:bind(addr, lb.port)
      if ok then ok, err = s:listen(MAX_CONNS) end
    end
    if not ok then
      if s then s:close() end
      if err == "address already in use" then
        return fail("in_use", ("%s port %d is already in use (another program, or another freshbooks login,"
          .. " listens there)"):format(v6 and "[::1]" or addr, lb.port))
      end
      -- No IPv6 on this machine: then no browser can reach ::1 either.
      if not (v6 and #servers > 0) then
        return fail("listen", ("cannot listen on %s port %d: %s"):format(addr, lb.port, tostring(err)))
      end
    else
      s:settimeout(0)
      servers[#servers + 1] = s
    end
  end
  local hosts = {}
  for _, h in ipairs{ "localhost", "127.0.0.1", "[::1]" } do
    hosts[h .. ":" .. lb.port] = true
    if lb.port == 80 then hosts[h] = true end
  end
  return setmetatable({ lb = lb, servers = servers, conns = {}, hosts = hosts }, Listener)
end

local function escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                                          ["'"] = "&#39;" }))
end

local REASONS = { [200] = "OK", [400] = "Bad Request", [404] = "Not Found", [405] = "Method Not Allowed",
                  [408] = "Request Timeout", [409] = "Conflict", [431] = "Request Header Fields Too Large" }

-- A short page, and the connection closed. The callback URL carries the code: no referrer, no cache.
local function respond(conn, status, title, text)
  local body = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>freshbooks login</title></head>'
    .. '<body style="font-family: sans-serif"><h1>%s</h1><p>%s</p></body></html>\n'):format(escape(title),
      escape(text))
  conn:settimeout(2)
  conn:send(table.concat({
    ("HTTP/1.1 %d %s"):format(status, REASONS[status] or "Error"),
    "Content-Type: text/html; charset=utf-8", "Content-Length: " .. #body, "Connection: close",
    "Cache-Control: no-store", "Referrer-Policy: no-referrer", "X-Content-Type-Options: nosniff",
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'", "", body }, "\r\n"))
  conn:shutdown("send")
  conn:close()
end

-- A complete request head in `buf` -> {method, target, path, query, host} | nil (incomplete) | false, why
local function parse_head(buf)
  local head = buf:match("^(.-)\r?\n\r?\n")
  if not head then
    if #buf > MAX_HEAD then return false, "too_large" end
    return nil
  end
  local method, target = head:match("^(%u+) (%S+) HTTP/1%.[01]\r?\n?")
  if not method then return false, "malformed" end
  local host = head:match("\n[Hh][Oo][Ss][Tt]:[ \t]*([^\r\n]-)[ \t]*\r?\n") or
    head:match("\n[Hh][Oo][Ss][Tt]:[ \t]*([^\r\n]-)[ \t]*$")
  local path, query = target:match("^([^?]*)%??(.*)$")
  return { method = method, target = target, path = path, query = query, host = host and host:lower() }
end

-- What to tell a request that is not the callback; nil when it is the callback.
function Listener:judge(req)
  if req.method ~= "GET" then return 405, "Not the login callback", "Only the browser's GET comes here." end
  if not (req.host and self.hosts[req.host]) then
    return 400, "Not the login callback", "This request was not addressed to this computer's login listener."
  end
  if req.path ~= self.lb.path then
    return 404, "Not the login callback", "freshbooks login waits for FreshBooks' answer at " .. self.lb.path .. "."
  end
end

local DESCRIBE = {
  too_large = { 431, "request too large" }, malformed = { 400, "a request that is not HTTP" },
  idle = { 408, "a connection that sent no request in time" },
}

-- Take what a connection has sent; a complete request goes to on_request(conn, req) (which answers it).
-- -> true when on_request says to stop.
function Listener:feed(c, st, on_request, note)
  local data, err, partial = c:receive(4096)
  st.buf = st.buf .. (data or partial or "")
  local req, why = parse_head(st.buf)
  if req then
    self.conns[c] = nil
    return on_request(c, req) == true
  elseif req == false then
    self.conns[c] = nil
    note("answered " .. DESCRIBE[why][2] .. " on the callback port")
    respond(c, DESCRIBE[why][1], "Not the login callback", "This was not a request freshbooks login expected.")
  elseif err == "closed" then
    self.conns[c] = nil
    c:close()
  end
  return false
end

-- Accept new connections and read the open ones for up to `timeout` seconds; expire idle ones.
-- -> true when on_request said to stop.
function Listener:poll(timeout, on_request, note)
  local set = {}
  for _, s in ipairs(self.servers) do set[#set + 1] = s end
  for c in pairs(self.conns) do set[#set + 1] = c end
  local readable = socket.select(set, nil, timeout)
  local now = socket.gettime()
  for _, s in ipairs(readable or {}) do
    local st = self.conns[s]
    if st then
      if self:feed(s, st, on_request, note) then return true end
    else
      local c = s:accept()
      local n = 0
      for _ in pairs(self.conns) do n = n + 1 end
      if c and n >= MAX_CONNS then c:close()
      elseif c then
        c:settimeout(0)
        st = { buf = "", expires = now + CONN_LIFE }
        self.conns[c] = st
        if self:feed(c, st, on_request, note) then return true end -- the request is often there already
      end
    end
  end
  for c, st in pairs(self.conns) do
    if now >= st.expires then
      self.conns[c] = nil
      if st.buf ~= "" then note("answered " .. DESCRIBE.idle[2] .. " on the callback port") end
      respond(c, 408, "Not the login callback", "No request arrived in time.")
    end
  end
  return false
end

-- Wait until `deadline` (socket.gettime() seconds) for the callback. -> request (answer it with
-- :answer) | nil, "timeout". Other requests are answered here and reported through note(line).
function Listener:wait(deadline, note)
  local found
  local function on_request(conn, req)
    local status, title, text = self:judge(req)
    if not status then
      req.conn, found = conn, req
      return true
    end
    note(("answered %s %s on the callback port with %d (%s)"):format(req.method, req.path:sub(1, 60), status,
      status == 404 and ("the callback is " .. self.lb.path) or title:lower()))
    respond(conn, status, title, text)
  end
  local core = require "freshbooks.core"
  while true do
    if core.signal.interrupted() then error("interrupted!", 0) end -- Ctrl-C, trapped by the command
    local left = deadline - socket.gettime()
    if left <= 0 then return nil, "timeout" end
    if self:poll(math.min(left, SLICE), on_request, note) then return found end
  end
end

function Listener.answer(_, req, status, title, text)
  if req.conn then respond(req.conn, status, title, text) end
  req.conn = nil
end

-- Close: a request still arriving (started, or pending in the queue) within `grace` seconds is told the
-- login is over; then nothing listens any more.
function Listener:close(note, grace)
  local deadline = socket.gettime() + (grace or 1)
  local function late(conn, req)
    note(("answered a second request (%s %s): this login had already finished"):format(req.method,
      req.path:sub(1, 60)))
    respond(conn, 409, "This login has finished", "Return to the terminal; run freshbooks login again if needed.")
  end
  self:poll(0, late, note)
  while socket.gettime() < deadline do
    local waiting = false
    for _, st in pairs(self.conns) do if st.buf ~= "" then waiting = true end end
    if not waiting then break end
    self:poll(math.min(SLICE, deadline - socket.gettime()), late, note)
  end
  for c in pairs(self.conns) do c:close() end
  self.conns = {}
  for _, s in ipairs(self.servers) do s:close() end
  self.servers = {}
end

return loopback
