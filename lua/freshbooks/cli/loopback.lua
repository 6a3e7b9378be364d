-- The login's loopback listener (lua-socket): it listens on exactly the redirect URI's address, on
-- loopback only, until the one genuine callback, and then closes.
--
-- A callback is genuine only when it comes from the browser this login started: the browser first
-- opens the listener's own start address (its one-time secret reaches the browser through a private
-- file, never a command line), which sets a cookie and sends it on to FreshBooks; FreshBooks' redirect
-- back must carry that cookie and the login's state. Anything else (a forged <img>, an old tab, another
-- user's program that read the process table) is answered with a page and ignored: the login goes on.
-- Connections are read side by side, each with a deadline and a size limit; when the slots are full the
-- oldest connection makes room (a newcomer is the browser more often than an idler is), and on Linux a
-- connection from another user's program is refused at once (/proc/net/tcp names its owner).
--   local lb = loopback.parse("http://localhost:8976/callback")   -- nil unless a loopback http URI
--   local listener, err = loopback.listen(lb)                     -- err.code "in_use" | "listen"
--   local start = listener:expect(authorize_url, state, lifetime) -- the address to give the browser
--   local req = listener:wait(deadline, note)                     -- the callback, or nil, "timeout"
--   listener:answer(req, 200, "Connected", "You can close this window.")
--   listener:close(note)                                          -- a late request gets 409
local socket = require "socket"
local core = require "freshbooks.core"
local text = require "freshbooks.cli.text"

local loopback = {}

local MAX_HEAD = 8192       -- bytes of request line + headers
local CONN_LIFE = 10        -- seconds a connection may take to send its request
local MAX_CONNS = 32        -- connections read at once; more and the oldest is closed
local BACKLOG = 128
local MAX_ACCEPT = 256      -- connections taken from the queue per round, so the loop stays responsive
local MAX_NOTES = 20        -- notes on stderr about strays; then they are answered silently
local SLICE = 0.25          -- longest wait in C, so Ctrl-C is seen promptly
local EVICT_WAIT = 0.02     -- before a full house makes room: a browser just let in may still be sending
local START = "/freshbooks-login/"

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

-- Who owns a connection's other end (Linux) ----------------------------------------------------------

local function own_uid()
  local f = io.open("/proc/self/status", "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("\nUid:%s+%d+%s+(%d+)")) -- the effective uid: the one sockets are owned by
end

-- The forms an address:port takes in /proc/net/tcp{,6} (the words of the address in host order: both
-- byte orders are tried, the table is read on little- and big-endian machines alike).
local function proc_forms(ip, port)
  local p = ("%04X"):format(port)
  local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then
    return { ("%02X%02X%02X%02X:%s"):format(d, c, b, a, p), ("%02X%02X%02X%02X:%s"):format(a, b, c, d, p) }
  end
  if ip == "::1" then
    return { ("0"):rep(24) .. "01000000:" .. p, ("0"):rep(24) .. "00000001:" .. p }
  end
  return {}
end

-- uid of the program at the other end of `conn`, or nil when the kernel does not say.
local function peer_uid(conn, tables)
  local ip, port = conn:getpeername()
  local lip, lport = conn:getsockname()
  if not ip or not lip then return nil end
  local v6 = ip:find(":", 1, true) ~= nil
  local name = v6 and "tcp6" or "tcp"
  if tables[name] == nil then
    local f = io.open("/proc/net/" .. name, "rb")
    tables[name] = f and f:read("*a") or false
    if f then f:close() end
  end
  local t = tables[name]
  if not t then return nil end
  for _, here in ipairs(proc_forms(ip, tonumber(port))) do
    for _, there in ipairs(proc_forms(lip, tonumber(lport))) do
      local uid = t:match("%s" .. here .. "%s+" .. there .. "%s+%x+%s+%x+:%x+%s+%x+:%x+%s+%x+%s+(%d+)")
      if uid then return tonumber(uid) end
    end
  end
end

---------------------------------------------------------------------------------------------------

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
      if ok then ok, err = s:listen(BACKLOG) end
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
  return setmetatable({ lb = lb, servers = servers, conns = {}, hosts = hosts, uid = own_uid(), notes = 0,
    said = {}, serial = 0 }, Listener)
end

-- The login's secrets: the authorize address (given only to the browser that opens the start
-- address), its state, and how long the cookie lives. -> the start address (for that browser only:
-- never on a command line).
function Listener:expect(authorize_url, state, lifetime)
  self.authorize_url, self.state, self.lifetime = authorize_url, state, lifetime
  self.token = core.codec.hex(core.crypto.random_bytes(16))
  self.cookie = core.codec.hex(core.crypto.random_bytes(16))
  self.cookie_name = "freshbooks_login_" .. self.lb.port
  self.started = false
  local host = self.lb.host .. (self.lb.port ~= 80 and (":" .. self.lb.port) or "")
  return "http://" .. host .. START .. self.token
end

local function escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                                          ["'"] = "&#39;" }))
end

local REASONS = { [200] = "OK", [302] = "Found", [400] = "Bad Request", [403] = "Forbidden", [404] = "Not Found",
                  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
                  [431] = "Request Header Fields Too Large" }

-- A short page (or a redirect), and the connection closed. The addresses carry codes and secrets: no
-- referrer, no cache.
local function respond(conn, status, title, body_text, headers)
  local body = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>freshbooks login</title></head>'
    .. '<body style="font-family: sans-serif"><h1>%s</h1><p>%s</p></body></html>\n'):format(escape(title),
      escape(body_text))
  local head = { ("HTTP/1.1 %d %s"):format(status, REASONS[status] or "Error"),
    "Content-Type: text/html; charset=utf-8", "Content-Length: " .. #body, "Connection: close",
    "Cache-Control: no-store", "Referrer-Policy: no-referrer", "X-Content-Type-Options: nosniff",
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'" }
  for _, h in ipairs(headers or {}) do head[#head + 1] = h end
  head[#head + 1] = ""
  head[#head + 1] = body
  conn:settimeout(2)
  conn:send(table.concat(head, "\r\n"))
  conn:shutdown("send")
  conn:close()
end

-- A complete request head in `buf` -> {method, target, path, query, host, cookies} | nil (incomplete)
-- | false, why
local function parse_head(buf)
  local head = buf:match("^(.-)\r?\n\r?\n")
  if not head then
    if #buf > MAX_HEAD then return false, "too_large" end
    return nil
  end
  local method, target = head:match("^(%u+) (%S+) HTTP/1%.[01]\r?\n?")
  if not method then return false, "malformed" end
  local fields = {}
  for name, value in head:gmatch("\n([%w%-]+):[ \t]*([^\r\n]*)") do
    name = name:lower()
    fields[name] = fields[name] and (fields[name] .. (name == "cookie" and "; " or ", ") .. value) or value
  end
  local host = fields.host and fields.host:gsub("[ \t]+$", ""):lower()
  local cookies = {}
  for pair in (fields.cookie or ""):gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k then cookies[k] = v end
  end
  local path, query = target:match("^([^?]*)%??(.*)$")
  return { method = method, target = target, path = path, query = query, host = host, cookies = cookies }
end

-- A note about the port, at most MAX_NOTES in all and each text once: a flood cannot fill the terminal.
function Listener:say(note, line)
  if self.said[line] then return end
  self.said[line] = true
  self.notes = self.notes + 1
  if self.notes < MAX_NOTES then note(line)
  elseif self.notes == MAX_NOTES then note("more requests reached the callback port; they are answered without a note")
  end
end

-- The query's one state, or nil.
local function state_of(query)
  local state
  for _, pair in ipairs(core.codec.form_decode(query or "")) do
    if pair[1] == "state" then
      if state then return nil end
      state = pair[2]
    end
  end
  return state
end

local function shown(req) return text.clean(req.method .. " " .. req.path:sub(1, 60)) end

-- What to do with a request: the callback -> true; anything else is answered here.
function Listener:judge(conn, req, note)
  if not (req.host and self.hosts[req.host]) then
    self:say(note, "answered " .. shown(req) .. " on the callback port with 400 (not addressed to this computer)")
    return respond(conn, 400, "Not the login callback",
      "This request was not addressed to this computer's login listener.")
  end
  local start = self.token and req.path:sub(1, #START) == START
    and core.crypto.equals(req.path:sub(#START + 1), self.token)
  if req.method ~= "GET" then
    self:say(note, "answered " .. shown(req) .. " on the callback port with 405 (not the login callback)")
    return respond(conn, 405, "Not the login callback", "Only the browser's GET comes here.")
  end
  local cookie = req.cookies[self.cookie_name or ""]
  local from_browser = self.cookie and cookie and core.crypto.equals(cookie, self.cookie)
  if start then
    if self.started and not from_browser then
      self:say(note, "refused a second use of this login's start address (another browser, or a copy of it)")
      return respond(conn, 403, "This login was started elsewhere",
        "This login's address was opened already, in another browser. Run freshbooks login again.")
    end
    self.started = true
    return respond(conn, 302, "Continue at FreshBooks", "Continue at FreshBooks.", {
      "Location: " .. self.authorize_url,
      ("Set-Cookie: %s=%s; Path=%s; Max-Age=%d; HttpOnly; SameSite=Lax"):format(self.cookie_name, self.cookie,
        self.lb.path, math.max(60, math.floor(self.lifetime or 300))) })
  end
  if req.path ~= self.lb.path then
    self:say(note, "answered " .. shown(req) .. " on the callback port with 404 (the callback is "
      .. self.lb.path .. ")")
    return respond(conn, 404, "Not the login callback",
      "freshbooks login waits for FreshBooks' answer at " .. self.lb.path .. ".")
  end
  if self.cookie and not from_browser then
    self:say(note, "ignored a callback that did not come from the browser this login started (no login cookie);"
      .. " still waiting")
    return respond(conn, 403, "Not this login's browser",
      "This answer did not come from the browser the login was started in, and was ignored.")
  end
  local state = state_of(req.query)
  if not (state and self.state and core.crypto.equals(state, self.state)) then
    self:say(note, "ignored a callback whose state does not match this login (an old tab, or a request that did"
      .. " not come from FreshBooks' page); still waiting")
    return respond(conn, 400, "Not this login",
      "This answer belongs to another login (an old browser tab?) and was ignored. Return to the terminal.")
  end
  return true
end

local DESCRIBE = {
  too_large = { 431, "a request too large" }, malformed = { 400, "a request that is not HTTP" },
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
    self:say(note, "answered " .. DESCRIBE[why][2] .. " on the callback port")
    respond(c, DESCRIBE[why][1], "Not the login callback", "This was not a request freshbooks login expected.")
  elseif err == "closed" then
    self.conns[c] = nil
    c:close()
  end
  return false
end

-- A new connection: another user's program is refused. When every slot is taken, what the open
-- connections send within EVICT_WAIT is read first (a browser's request on its way is served, not
-- evicted: on a loaded machine its bytes may trail its connection), then the oldest silent one makes
-- room (a newcomer is the browser more often than an idler is). The wait also paces a flood of
-- reconnecting idlers, so a browser let in lives through many of them.
-- -> its state, or nil; true as second value when on_request said to stop.
function Listener:admit(c, now, tables, on_request, note)
  local uid = self.uid and peer_uid(c, tables)
  if uid and uid ~= self.uid then
    self:say(note, ("refused connections from another user's programs (uid %d) on the callback port: the browser"
      .. " must run as the user running freshbooks login"):format(uid))
    respond(c, 403, "Not the login callback", "This login listens to its own user's browser only.")
    return nil
  end
  local open, stop = {}, false
  for conn in pairs(self.conns) do open[#open + 1] = conn end
  if #open >= MAX_CONNS then
    for _, conn in ipairs(socket.select(open, nil, EVICT_WAIT) or {}) do
      local st = self.conns[conn]
      if st and not stop then stop = self:feed(conn, st, on_request, note) end
    end
    local victim, vst, n = nil, nil, 0
    for conn, st in pairs(self.conns) do
      n = n + 1
      local silent, vsilent = st.buf == "", vst and vst.buf == ""
      if not vst or (silent and not vsilent) or (silent == vsilent and st.serial < vst.serial) then
        victim, vst = conn, st
      end
    end
    if n >= MAX_CONNS and not stop then
      self.conns[victim] = nil
      victim:close()
      self:say(note, "closed the oldest of " .. MAX_CONNS .. " open connections on the callback port to make room")
    end
  end
  c:settimeout(0)
  self.serial = self.serial + 1
  local st = { buf = "", expires = now + CONN_LIFE, serial = self.serial }
  self.conns[c] = st
  return st, stop
end

-- Accept new connections and read the open ones for up to `timeout` seconds; expire idle ones.
-- -> true when on_request said to stop.
function Listener:poll(timeout, on_request, note)
  local set = {}
  for _, s in ipairs(self.servers) do set[#set + 1] = s end
  for c in pairs(self.conns) do set[#set + 1] = c end
  local readable = socket.select(set, nil, timeout)
  local now, tables = socket.gettime(), {}
  for _, s in ipairs(readable or {}) do
    local st = self.conns[s]
    if st then
      if self:feed(s, st, on_request, note) then return true end
    elseif not self.conns[s] then
      for _ = 1, MAX_ACCEPT do -- the whole queue: a flood cannot keep the browser waiting in it
        if socket.gettime() - now > SLICE then break end -- (the rest next round: Ctrl-C is seen)
        local c = s:accept()
        if not c then break end
        local cst, stop = self:admit(c, now, tables, on_request, note)
        if stop then return true end -- (cst waits in the slots: close() answers it)
        if cst and self:feed(c, cst, on_request, note) then return true end -- the request is often there already
      end
    end
  end
  for c, st in pairs(self.conns) do
    if now >= st.expires then
      self.conns[c] = nil
      if st.buf ~= "" then self:say(note, "answered " .. DESCRIBE.idle[2] .. " on the callback port") end
      respond(c, 408, "Not the login callback", "No request arrived in time.")
    end
  end
  return false
end

-- Wait until `deadline` (socket.gettime() seconds) for the genuine callback. -> request (answer it with
-- :answer) | nil, "timeout". Everything else is answered here and reported through note(line).
function Listener:wait(deadline, note)
  local found
  local function on_request(conn, req)
    if self:judge(conn, req, note) == true then
      req.conn, found = conn, req
      return true
    end
  end
  while true do
    if core.signal.interrupted() then error("interrupted!", 0) end -- Ctrl-C, trapped by the command
    local left = deadline - socket.gettime()
    if left <= 0 then return nil, "timeout" end
    if self:poll(math.min(left, SLICE), on_request, note) then return found end
  end
end

function Listener.answer(_, req, status, title, body_text)
  if req.conn then respond(req.conn, status, title, body_text) end
  req.conn = nil
end

-- Close: a request still arriving (started, or pending in the queue) within `grace` seconds is told the
-- login is over; then nothing listens any more.
function Listener:close(note, grace)
  local deadline = socket.gettime() + (grace or 1)
  local function late(conn, req)
    self:say(note, ("answered a second request (%s): this login had already finished"):format(shown(req)))
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
