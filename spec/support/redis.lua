-- Debian's redis-server for specs: started on a free 127.0.0.1 port in a temp dir, stopped by the spec
-- (and by spec/run if a crashed spec left it: its pid is registered in $FB_TEST_PIDS_DIR).
--   local R = require "support.redis"
--   local srv = R.start{ aof = true }      -- aof: appendonly with appendfsync always (restart cases)
--   srv.port, srv:cli("GET", key) -> reply text, srv:kill() (SIGKILL), srv:restart() (same port and data),
--   srv:pause() / srv:resume() (SIGSTOP/SIGCONT: a Redis that accepts connections and never answers), srv:stop()
--   R.client_module() -> Debian's lua-redis (on Lua 5.4 too), R.factory(srv, timeout) -> a client factory,
--   R.register(pid, true | false): a background process spec/run stops if the spec does not
local R = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function run(cmd)
  local p = assert(io.popen("( " .. cmd .. " ) 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

-- A killed server is a zombie until whoever adopted it reaps it (in a container, PID 1 may take a
-- second): gone is gone, zombie or not.
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("*a") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

local function sleep(s) run("sleep " .. s) end

-- Debian installs lua-redis for Lua 5.1-5.3 only; the same file runs on 5.4 unchanged.
function R.client_module()
  local ok, m = pcall(require, "redis")
  if ok then return m end
  package.path = package.path .. ";/usr/share/lua/5.3/?.lua"
  return require "redis"
end
R.LUA54_PATH = "/usr/share/lua/5.3/?.lua"

-- A lua-redis client factory for `srv` (timeout: seconds per socket operation).
function R.factory(srv, timeout)
  local redis = R.client_module()
  return function() return redis.connect{ host = "127.0.0.1", port = srv.port, timeout = timeout or 2 } end
end

-- spec/run stops whatever is registered in $FB_TEST_PIDS_DIR when it exits (R.register for workers).
local function register(pid, on)
  local dir = os.getenv("FB_TEST_PIDS_DIR")
  if not dir or dir == "" then return end
  if on then
    local f = io.open(dir .. "/" .. pid, "w")
    if f then f:write(pid, "\n"); f:close() end
  else
    os.remove(dir .. "/" .. pid)
  end
end

R.register = register

local Server = {}
Server.__index = Server

local seeded = false
local function random_port()
  if not seeded then
    math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0) % 1000003)
    seeded = true
  end
  return math.random(33000, 39000) -- below Linux's ephemeral range, away from testserver's 20000-32000
end

-- A CA, a server certificate for localhost/127.0.0.1 and, for the wrong-CA cases, a second CA.
local function make_certs(dir)
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local d = q(dir)
  local steps = {
    "cd " .. d .. " && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=critical,CA:FALSE\\n"
      .. "extendedKeyUsage=serverAuth\\n' > server.ext",
    "cd " .. d .. " && openssl req -x509 " .. ec .. " -days 2 -subj /CN=fb-redis-ca"
      .. " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
      .. " -keyout ca.key -out ca.crt",
    "cd " .. d .. " && openssl req -x509 " .. ec .. " -days 2 -subj /CN=fb-other-ca"
      .. " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -keyout other.key"
      .. " -out other.crt",
    "cd " .. d .. " && openssl req " .. ec .. " -subj /CN=localhost -keyout server.key -out server.csr",
    "cd " .. d .. " && openssl x509 -req -days 2 -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial"
      .. " -extfile server.ext -out server.crt",
  }
  for _, cmd in ipairs(steps) do
    local out = run(cmd .. " && echo __ok")
    if not out:find("__ok", 1, true) then error("openssl failed: " .. cmd .. "\n" .. out, 3) end
  end
  return dir .. "/ca.crt", dir .. "/other.crt"
end

function Server:launch()
  local lines = {
    "bind 127.0.0.1", "port " .. self.port, "dir " .. self.dir, "logfile " .. self.dir .. "/redis.log",
    "daemonize no", "save \"\"", "protected-mode no", "maxmemory-policy noeviction",
    self.aof and "appendonly yes" or "appendonly no", "appendfsync always",
  }
  if self.tls_port then
    for _, l in ipairs{ "tls-port " .. self.tls_port, "tls-cert-file " .. self.dir .. "/server.crt",
      "tls-key-file " .. self.dir .. "/server.key", "tls-ca-cert-file " .. self.dir .. "/ca.crt",
      "tls-auth-clients no" } do lines[#lines + 1] = l end
  end
  for _, u in ipairs(self.users or {}) do lines[#lines + 1] = "user " .. u end
  if self.replica_of then lines[#lines + 1] = "replicaof 127.0.0.1 " .. self.replica_of end
  local conf = table.concat(lines, "\n")
  local f = assert(io.open(self.dir .. "/redis.conf", "w"))
  f:write(conf, "\n")
  f:close()
  return self:spawn("redis.conf", "redis.log")
end

-- redis-server on `conf` (in the server's directory), until it answers PING (or `log` says why not).
function Server:spawn(conf, log)
  local started = run("redis-server " .. q(self.dir .. "/" .. conf) .. (self.sentinel and " --sentinel" or "")
    .. " >/dev/null 2>&1 & echo $!")
  local pid = tonumber(started:match("%d+"))
  for _ = 1, 250 do
    if run("redis-cli -p " .. self.port .. " ping"):find("PONG", 1, true) then
      self.pid = pid
      register(pid, true)
      return true
    end
    if not alive(pid) then return false, run("cat " .. q(self.dir .. "/" .. log)) end
    sleep(0.02)
  end
  run("kill -9 " .. pid)
  return false, "redis-server did not answer"
end

-- opts: aof; tls (a tls-port beside the plain one: srv.tls_port, srv.ca_file, srv.other_ca_file);
-- users (ACL lines after "user ", e.g. "app on >pw ~app:* +@all"); replica_of (a Server);
-- sentinel = {primary = Server, name =} (a sentinel watching it, failing over fast).
function R.start(opts)
  opts = opts or {}
  local dir = run("mktemp -d /tmp/fb-redis.XXXXXX"):match("[^\n]+")
  local ca, other
  if opts.tls then ca, other = make_certs(dir) end
  local why
  for _ = 1, 10 do
    local srv = setmetatable({ dir = dir, port = random_port(), aof = opts.aof, users = opts.users,
      tls_port = opts.tls and random_port() or nil, ca_file = ca, other_ca_file = other,
      replica_of = opts.replica_of and opts.replica_of.port }, Server)
    if opts.sentinel then
      srv.sentinel = opts.sentinel
      srv.launch = Server.launch_sentinel
    end
    local ok, err = srv:launch()
    if ok then return srv end
    why = err
  end
  run("rm -rf " .. q(dir))
  error("redis-server did not start: " .. tostring(why), 2)
end

-- A sentinel (redis-server --sentinel) for one primary, quick to fail over.
function Server:launch_sentinel()
  local name, primary = self.sentinel.name, self.sentinel.primary
  local f = assert(io.open(self.dir .. "/sentinel.conf", "w"))
  f:write(table.concat({ "bind 127.0.0.1", "port " .. self.port, "dir " .. self.dir, "daemonize no",
    "logfile " .. self.dir .. "/sentinel.log", "protected-mode no",
    ("sentinel monitor %s 127.0.0.1 %d 1"):format(name, primary.port),
    ("sentinel down-after-milliseconds %s 400"):format(name),
    ("sentinel failover-timeout %s 3000"):format(name), ("sentinel parallel-syncs %s 1"):format(name) }, "\n"), "\n")
  f:close()
  return self:spawn("sentinel.conf", "sentinel.log")
end

-- redis-cli's answer (raw), for inspecting and planting keys.
function Server:cli(...)
  local args = { "redis-cli", "-p", tostring(self.port), "--raw" }
  for _, a in ipairs{ ... } do args[#args + 1] = q(a) end
  return (run(table.concat(args, " ")):gsub("\n$", ""))
end

local function wait_dead(pid)
  for _ = 1, 250 do
    if not alive(pid) then return true end
    sleep(0.02)
  end
  return false
end

function Server:kill()
  if not self.pid then return end
  run("kill -CONT " .. self.pid .. "; kill -KILL " .. self.pid)
  wait_dead(self.pid)
  register(self.pid, false)
  self.pid = nil
end

-- Same port, same directory: with aof, everything written before the kill comes back.
function Server:restart()
  self:kill()
  local ok, err
  for _ = 1, 50 do -- the port may linger a moment after the kill
    ok, err = self:launch()
    if ok then return end
    sleep(0.1)
  end
  error("redis-server did not restart: " .. tostring(err), 2)
end

function Server:pause() run("kill -STOP " .. self.pid) end
function Server:resume() run("kill -CONT " .. self.pid) end

function Server:stop()
  if self.pid then
    run("kill -CONT " .. self.pid .. "; kill -TERM " .. self.pid)
    if not wait_dead(self.pid) then run("kill -KILL " .. self.pid) end
    register(self.pid, false)
    self.pid = nil
  end
  if self.dir and self.dir:match("^/tmp/fb%-redis%.") then run("rm -rf " .. q(self.dir)) end
  self.dir = nil
end

return R
