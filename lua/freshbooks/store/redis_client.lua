-- Talking to Redis for store/redis.lua: one command on either Debian client, the deadline of a store
-- operation, and the connection settings a store may be given instead of a factory:
--   redis = { host =, port = 6379, tls = { server_name =, ca_file = }, username =, password =,
--             database =, sentinel = { addresses = { "host:port", ... }, name =, username =, password = } }
-- Inside nginx (a phase that may yield) the client is resty.redis (OpenResty) or nginx.redis (Debian's
-- lua-nginx-redis) on a cosocket: TLS is the cosocket's sslhandshake right after connect, verified
-- against nginx's lua_ssl_trusted_certificate and the server name, and AUTH runs once per new
-- connection; each distinct setting has a pool of its own, so a pooled connection is never reused
-- with another address, TLS name, user, password or database. Elsewhere the client is lua-redis on a
-- LuaSocket, wrapped in LuaSec for TLS (the chain checked against tls.ca_file, the name checked here:
-- LuaSec checks none).
-- Deadlines: every step of a store operation (connect, handshake, AUTH, each command and its retry) ends
-- by one deadline. In nginx the operation runs in a light thread that is killed at the deadline (a
-- cosocket's timeout restarts on every byte received, so a server trickling its answer would outlast
-- any per-read timeout); elsewhere each socket call gets the time left as a total timeout.
local core = require "freshbooks.core"
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local redact = require "freshbooks.redact"

local M = {}

local unpack = table.unpack or unpack

-- What Redis or a client says, cut to 200 bytes; marked, so the store can mask a token the cut went through.
local function cut(s) return #s > 200 and s:sub(1, 200) .. "..." or s end
M.cut = cut

function M.unavailable(what, cause)
  local detail = type(cause) == "string" and cause or (cause ~= nil and tostring(cause)) or nil
  return errors.new{ code = "store_unavailable",
    message = what .. (detail and (": " .. cut(detail)) or "") }
end

-- An error reply -> its error. Refused credentials and commands an ACL user may not run are
-- `store_auth` (a configuration to fix, not an outage), a key of another type `store_corrupt`.
function M.reply_error(msg)
  local word = msg:match("^(%u+)") or "ERR"
  local code = (word == "WRONGPASS" or word == "NOAUTH" or word == "NOPERM") and "store_auth"
    or word == "WRONGTYPE" and "store_corrupt" or "store_unavailable"
  return errors.new{ code = code, message = "Redis answered " .. cut(msg), redis_error = word }
end

-- One command on a client of either kind -> reply | nil, kind ("reply", "timeout", "connection"), text.
-- lua-redis raises ("...: redis error: MSG" for an error reply); resty.redis returns nil, err for a
-- network failure and false, MSG for an error reply, and ngx.null for a nil reply. A command the
-- client has no method for is defined on it (lua-redis: define_command; resty.redis makes any).
local function invoke(client, method, ...)
  if client[method] == nil and client.define_command then client:define_command(method) end
  return client[method](client, ...)
end
function M.call(client, method, ...)
  local ok, v, e = pcall(invoke, client, method, ...)
  if not ok then
    local msg = tostring(v)
    local reply = msg:match("redis error: (.*)$")
    if reply then return nil, "reply", reply end
    return nil, msg:find("timeout", 1, true) and "timeout" or "connection", msg
  end
  if v == nil and e ~= nil then return nil, tostring(e) == "timeout" and "timeout" or "connection", tostring(e) end
  if v == false then return nil, "reply", tostring(e) end
  local ngx = rawget(_G, "ngx")
  if ngx and v == ngx.null then return nil end
  return v
end
local call = M.call

-- Deadlines -------------------------------------------------------------------------------------

local function timed_out(seconds)
  return errors.new{ code = "store_unavailable", timeout = true,
    message = ("no answer from Redis within %g s"):format(seconds) }
end

-- A LuaSocket (or LuaSec) socket whose every call ends by `deadline` (core.clock.now() seconds).
local Bounded = {}
Bounded.__index = Bounded
local function arm(b)
  local left = b.deadline - core.clock.now()
  if left <= 0 then return false end
  b.sock:settimeout(b.cap and math.min(b.cap, left) or left, "t")
  return true
end
function Bounded:send(...) if not arm(self) then return nil, "timeout" end return self.sock:send(...) end
function Bounded:receive(...) if not arm(self) then return nil, "timeout" end return self.sock:receive(...) end
function Bounded.settimeout() return 1 end -- the deadline decides
function Bounded:setoption(...) return self.sock:setoption(...) end
function Bounded:shutdown(...) return self.sock:shutdown(...) end
function Bounded:close() return self.sock:close() end

-- `cap`: the longest one call may take (the timeout a factory gave its socket), if any.
local function bounded(sock, deadline, cap)
  return setmetatable({ sock = sock, deadline = deadline, cap = cap }, Bounded)
end

-- A lua-redis client's socket (a factory's, or ours) is bounded from now on by `deadline`; the
-- timeout its factory set still bounds each call.
function M.arm(client, deadline)
  local net = type(client) == "table" and rawget(client, "network")
  local sock = type(net) == "table" and rawget(net, "socket")
  if type(sock) ~= "table" and type(sock) ~= "userdata" then return end
  if getmetatable(sock) == Bounded then sock.deadline = deadline return end
  if not sock.settimeout then return end
  local cap
  if sock.gettimeout then
    for _, t in ipairs{ sock:gettimeout() } do
      if type(t) == "number" and t >= 0 and (not cap or t < cap) then cap = t end
    end
  end
  net.socket = bounded(sock, deadline, cap)
end

-- M.within(seconds, op, ...) -> op(ctx, deadline, ...)'s results, or nil, a store_unavailable timeout.
-- `ctx.client` is the client op holds, closed when op is stopped at the deadline.
function M.within(seconds, op, ...)
  local deadline = core.clock.now() + seconds
  local ngx = env.yielding()
  local ctx = {}
  if not (ngx and ngx.thread) then return op(ctx, deadline, ...) end
  local args, n = { ... }, select("#", ...)
  local worker = ngx.thread.spawn(function()
    ctx.result = { n = 0 }
    local r = { pcall(op, ctx, deadline, unpack(args, 1, n)) }
    ctx.result = r
    return ctx
  end)
  local clock = ngx.thread.spawn(function() ngx.sleep(seconds) end)
  local _, done = ngx.thread.wait(worker, clock)
  if done == ctx then
    ngx.thread.kill(clock)
    local r = ctx.result
    if not r[1] then return nil, M.unavailable("the Redis store failed", r[2]) end
    return unpack(r, 2, table.maxn(r))
  end
  ngx.thread.kill(worker)
  if ctx.client then pcall(function() ctx.client:close() end) end
  return nil, timed_out(seconds)
end

-- Connection settings --------------------------------------------------------------------------

local function need(module, package, hint)
  local ok, m = pcall(require, module)
  if ok then return m end
  return nil, errors.new{ code = "store_unavailable", missing = module, message = "the Lua module '"
    .. module .. "' is not installed: " .. hint .. " (Debian package " .. package .. ")" }
end

local WHO = "freshbooks.store.redis: redis"
local function bad(name, level) error(WHO .. ": " .. name, level) end

-- Strings also hold no control characters (they go into Redis commands and pool names).
local function check_string(v, name, level)
  if v ~= nil and v:find("[%z\1-\31\127]") then bad(name .. " must hold no control characters", level + 1) end
end

local function check_port(v, name, level)
  local p = tonumber(v)
  if not p or p ~= math.floor(p) or p < 1 or p > 65535 then bad(name .. " must be a port number", level + 1) end
  return math.floor(p) -- an integer: LuaSocket refuses 6379.0 (a JSON number under Lua 5.3+)
end

local function address(s, level)
  local host, port = tostring(s):match("^%[?([^%[%]]-)%]?:(%d+)$")
  if type(s) ~= "string" or not host or host == "" then
    bad("sentinel.addresses must be \"host:port\" strings", level + 1)
  end
  return { host = host, port = check_port(port, "sentinel.addresses' port", level + 1) }
end

local NAME = { "string", nonempty = true }
local SETTINGS = options.spec{ host = NAME, port = { "number|string" }, username = NAME, password = NAME,
  database = { "number", integer = true, min = 0 }, sentinel = { "table" },
  tls = { "table", say = "a table ({} verifies against the system's CAs)" } }
local TLS = options.spec{ server_name = NAME, ca_file = NAME }
local SENTINEL = options.spec{ addresses = { "table" }, name = NAME, username = NAME, password = NAME }

-- Checked settings (bad ones raise at `level`).
function M.settings(s, level)
  s = options.check(WHO, SETTINGS, s, level)
  for _, k in ipairs{ "host", "username", "password" } do check_string(s[k], k, level + 1) end
  local o = { username = s.username, password = s.password, database = s.database }
  if s.username and not s.password then bad("username needs a password", level + 1) end
  if s.sentinel ~= nil then
    local st = options.check(WHO .. ".sentinel", SENTINEL, s.sentinel, level)
    if s.host ~= nil or s.port ~= nil then bad("host/port come from the sentinel: give one or the other", level + 1) end
    if st.name == nil then bad("sentinel.name must be a non-empty string", level + 1) end
    for _, k in ipairs{ "name", "username", "password" } do check_string(st[k], "sentinel." .. k, level + 1) end
    local list = st.addresses
    if list == nil or not list[1] then bad("sentinel.addresses must list \"host:port\" strings", level + 1) end
    o.sentinel = { name = st.name, username = st.username, password = st.password, addresses = {} }
    for i, a in ipairs(list) do o.sentinel.addresses[i] = address(a, level + 1) end
  else
    if s.host == nil then bad("host must be a non-empty string", level + 1) end
    o.host, o.port = s.host, check_port(s.port or 6379, "port", level + 1)
  end
  if s.tls ~= nil then
    local t = options.check(WHO .. ".tls", TLS, s.tls, level)
    check_string(t.server_name, "tls.server_name", level + 1)
    check_string(t.ca_file, "tls.ca_file", level + 1)
    o.tls = { server_name = t.server_name, ca_file = t.ca_file or "/etc/ssl/certs/ca-certificates.crt" }
  end
  return o
end

-- RFC 6125 for a certificate LuaSec read: the subjectAltName's DNS names (one wildcard, the whole
-- left-most label) or, for an IP literal, its IP addresses. The subject's CN is not consulted.
local function name_matches(cert, host)
  local ok, ext = pcall(function() return cert:extensions() end)
  local san = ok and type(ext) == "table" and ext["2.5.29.17"] or {}
  if host:match("^[%d.]+$") or host:find(":", 1, true) then
    for _, ip in ipairs(san.iPAddress or {}) do if ip == host then return true end end
    return false
  end
  host = host:lower()
  local rest = host:match("^[^.]+(%..+%..+)$")
  for _, name in ipairs(san.dNSName or {}) do
    name = name:lower()
    if name == host or (rest and name:match("^%*(%..+)$") == rest) then return true end
  end
  return false
end

local function tls_error(what, server_name, detail)
  return errors.new{ code = "store_tls", message = ("TLS to Redis (%s) refused: %s%s"):format(server_name, what,
    detail and (": " .. cut(tostring(detail))) or "") }
end

-- AUTH (ACL user or the default user's password) and SELECT on a new connection -> true | nil, err.
local function login(client, user, password, database)
  if password then
    local r, kind, msg
    if user then r, kind, msg = call(client, "auth", user, password)
    else r, kind, msg = call(client, "auth", password) end
    if kind == "reply" then
      return nil, errors.new{ code = "store_auth", redis_error = (msg:match("^(%u+)") or "ERR"),
        message = "Redis refused the credentials" .. (user and (" of user " .. user) or "") .. ": "
          .. cut(redact.mask(msg, { password })) }
    end
    if kind then return nil, M.unavailable("AUTH got no answer", msg) end
    if r == nil then return nil, M.unavailable("AUTH got no answer") end
  end
  if database and database ~= 0 then
    local _, kind, msg = call(client, "select", database)
    if kind == "reply" then return nil, M.reply_error(msg) end
    if kind then return nil, M.unavailable("SELECT got no answer", msg) end
  end
  return true
end

-- Plain Lua: lua-redis over LuaSocket (LuaSec for TLS). -> client | nil, err
local function open_plain(s, host, port, deadline, user, password, database)
  local socket, merr = need("socket", "lua-socket", "apt-get install lua-socket")
  if not socket then return nil, merr end
  local redis, rerr = need("redis", "lua-redis", "apt-get install lua-redis; under Lua 5.4 also add "
    .. "/usr/share/lua/5.3/?.lua to package.path (Debian installs it for 5.1-5.3; the file runs on 5.4)")
  if not redis then return nil, rerr end
  local ssl
  if s.tls then
    ssl, merr = need("ssl", "lua-sec", "apt-get install lua-sec")
    if not ssl then return nil, merr end
  end
  local sock = socket.tcp()
  local left = deadline - core.clock.now()
  if left <= 0 then return nil, timed_out(0) end
  sock:settimeout(left, "t")
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, M.unavailable(("could not connect to Redis at %s:%d"):format(host, port), err)
  end
  sock:setoption("tcp-nodelay", true)
  if ssl then
    local name = s.tls.server_name or host
    local conn, werr = ssl.wrap(sock, { mode = "client", protocol = "any", verify = { "peer", "fail_if_no_peer_cert" },
      cafile = s.tls.ca_file, options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" } })
    if not conn then
      sock:close()
      return nil, tls_error("cannot set up TLS", name, werr)
    end
    if not name:match("^[%d.:]+$") then conn:sni(name) end
    conn:settimeout(math.max(0.001, deadline - core.clock.now()), "t")
    local shaken, herr = conn:dohandshake()
    if not shaken then
      conn:close()
      if herr == "wantread" or herr == "wantwrite" or herr == "timeout" then return nil, timed_out(left) end
      return nil, tls_error("the certificate chain does not verify", name, herr)
    end
    if not name_matches(conn:getpeercertificate(), name) then
      conn:close()
      return nil, tls_error("the certificate is not for " .. name, name)
    end
    sock = conn
  end
  local made, client = pcall(redis.connect, { socket = bounded(sock, deadline) })
  if not made then
    sock:close()
    return nil, M.unavailable("lua-redis could not take the connection", client)
  end
  local logged, lerr = login(client, user, password, database)
  if not logged then
    sock:close()
    return nil, lerr
  end
  return client
end

-- nginx: resty.redis / nginx.redis on a cosocket from a pool of these very settings.
local function open_nginx(s, host, port, deadline, user, password, database)
  local redis, merr = need("resty.redis", "lua-nginx-redis",
    "OpenResty ships it; on Debian's nginx put lua-nginx-redis's nginx/redis.lua on lua_package_path "
      .. "(`make deps` puts it in build/deps/lua)")
  if not redis then
    redis = package.loaded["nginx.redis"] or select(2, pcall(require, "nginx.redis"))
    if type(redis) ~= "table" then return nil, merr end
  end
  local r, nerr = redis:new()
  if not r then return nil, M.unavailable("resty.redis could not make a client", nerr) end
  local left = deadline - core.clock.now()
  if left <= 0 then return nil, timed_out(0) end
  r:set_timeout(math.max(1, math.floor(left * 1000)))
  local name = s.tls and (s.tls.server_name or host)
  -- (nginx verifies against lua_ssl_trusted_certificate; tls.ca_file, which should name that file,
  -- keeps connections checked under other trust apart)
  local secret = password and core.codec.hex(core.crypto.hmac_sha256(password, "redis pool")):sub(1, 16) or ""
  local pool = table.concat({ "freshbooks", host, port, name and (name .. "@" .. s.tls.ca_file) or "plain",
    user or "", secret, database or 0 }, ":")
  local ok, err = r:connect(host, port, { pool = pool })
  if not ok then return nil, M.unavailable(("could not connect to Redis at %s:%d"):format(host, port), err) end
  if r:get_reused_times() == 0 then
    if name then
      local sock = rawget(r, "_sock")
      -- (lua-resty-core 0.1.25 asserts instead of answering when a verification fails after a wait)
      local done, shaken, herr = pcall(sock.sslhandshake, sock, nil, name, true)
      if not done then shaken, herr = nil, "handshake refused" end
      if not shaken then
        r:close()
        if herr == "timeout" then return nil, timed_out(left) end
        return nil, tls_error("the certificate does not verify for " .. name, name, herr)
      end
    end
    local logged, lerr = login(r, user, password, database)
    if not logged then
      r:close()
      return nil, lerr
    end
  end
  return r
end

local function open_at(s, host, port, deadline, user, password, database)
  local ngx = env.yielding()
  if ngx then return open_nginx(s, host, port, deadline, user, password, database) end
  return open_plain(s, host, port, deadline, user, password, database)
end

local function close(client)
  pcall(function()
    if client.set_keepalive then client:close() return end
    local sock = client.network and client.network.socket
    if sock then sock:close() end
  end)
end
M.close = close

-- The primary a sentinel names, checked with ROLE (a demoted primary is still named for a moment).
local primaries = setmetatable({}, { __mode = "k" }) -- settings -> { host, port, at }

local function ask_sentinels(s, deadline)
  local last
  for _, a in ipairs(s.sentinel.addresses) do
    local c, err = open_at(s, a.host, a.port, deadline, s.sentinel.username, s.sentinel.password)
    if c then
      local addr, kind, msg = call(c, "sentinel", "get-master-addr-by-name", s.sentinel.name)
      if c.set_keepalive and not kind then c:set_keepalive(10000, 10) else close(c) end
      if kind == "reply" then return nil, M.reply_error(msg) end
      if type(addr) == "table" and addr[1] and tonumber(addr[2]) then return addr[1], tonumber(addr[2]) end
      err = M.unavailable("sentinel " .. a.host .. ":" .. a.port .. " knows no primary " .. s.sentinel.name, msg)
    end
    last = err
  end
  return nil, last
end

-- M.opener(settings) -> open(deadline) -> client | nil, err; and forget(client) after a failure
-- that may mean the primary moved.
function M.opener(s)
  local function open(deadline)
    if not s.sentinel then return open_at(s, s.host, s.port, deadline, s.username, s.password, s.database) end
    local p = primaries[s]
    if not p or core.clock.now() - p.at > 1 then
      local host, port = ask_sentinels(s, deadline)
      if not host then return nil, port end
      p = { host = host, port = port, at = core.clock.now() }
      primaries[s] = p
    end
    local c, err = open_at(s, p.host, p.port, deadline, s.username, s.password, s.database)
    if not c then
      primaries[s] = nil
      return nil, err
    end
    if c.get_reused_times and (c:get_reused_times() or 0) > 0 then return c end -- checked when it was new
    local role, kind = call(c, "role")
    if kind or type(role) ~= "table" or role[1] ~= "master" then
      close(c)
      primaries[s] = nil
      return nil, M.unavailable(("Redis at %s:%d is not the primary (yet)"):format(p.host, p.port))
    end
    return c
  end
  local function forget() primaries[s] = nil end
  return open, forget
end

return M
