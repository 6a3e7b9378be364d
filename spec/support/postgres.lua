-- Debian's PostgreSQL for specs: a cluster made by initdb in a temp dir, run by an unprivileged user
-- (`nobody` through runuser when the specs run as root, as CI does: postgres refuses root), listening
-- on a free 127.0.0.1 port with SCRAM-SHA-256 passwords (the method a real deployment has), stopped
-- by the spec (and by spec/run if a crashed spec left it: its pid is registered in $FB_TEST_PIDS_DIR).
--   local PG = require "support.postgres"
--   local pg = PG.start()            -- once per spec file: initdb costs about a second
--   pg.port, pg.url ("postgresql://mirror:PASSWORD@127.0.0.1:PORT/mirror"), pg.conninfo (the same as
--   key=value), pg.superuser (a conninfo for the superuser), pg:psql(sql) -> output (as the superuser),
--   pg:restart() (same port and data, fast shutdown), pg:kill() (SIGKILL of the postmaster),
--   pg:start_again(), pg:stop()
-- The mirror's role `mirror` owns database `mirror` and is neither a superuser nor BYPASSRLS.
local PG = {}

local BIN = "/usr/lib/postgresql/15/bin/"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function run(cmd)
  local p = assert(io.popen("( " .. cmd .. " ) 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return out:gsub("__rc=%d+%s*$", ""), rc == 0
end

local function sleep(s) run("sleep " .. s) end

local function register(pid, on)
  local dir = os.getenv("FB_TEST_PIDS_DIR")
  if not dir or dir == "" or not pid then return end
  if on then
    local f = io.open(dir .. "/" .. pid, "w")
    if f then f:write(pid, "\n") f:close() end
  else
    os.remove(dir .. "/" .. pid)
  end
end

local root = run("id -u"):match("^0%s") ~= nil
-- as the cluster's owner: nobody when we are root
local function as_owner(cmd)
  -- from / : the checkout may sit in a directory nobody cannot enter (CI's is mode 0700)
  if root then return "runuser -u nobody -- sh -c " .. q("cd / && " .. cmd) end
  return cmd
end

local seeded = false
local function random_port()
  if not seeded then
    math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0) % 1000003)
    seeded = true
  end
  return math.random(39001, 45000) -- away from testserver's and support.redis's ranges
end

local Server = {}
Server.__index = Server

function PG.available()
  return io.open(BIN .. "postgres", "rb") ~= nil
end

local function pid_of(dir)
  local f = io.open(dir .. "/data/postmaster.pid", "r")
  if not f then return nil end
  local pid = tonumber((f:read("*l")))
  f:close()
  return pid
end

-- pg_ctl start on self.port; true, or false and the log's tail.
function Server:launch()
  local out, ok = run(as_owner(("%spg_ctl -D %s -l %s -w -t 30 -o %s start"):format(BIN, q(self.dir .. "/data"),
    q(self.dir .. "/postgres.log"), q("-p " .. self.port .. " -k " .. self.dir .. " -h 127.0.0.1"))))
  if not ok then
    local log = run("tail -n 20 " .. q(self.dir .. "/postgres.log"))
    return false, out .. log
  end
  self.pid = pid_of(self.dir)
  register(self.pid, true)
  return true
end

-- A CA and a server certificate for localhost (TLS cases: srv.ca_file).
local function make_certs(dir)
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local d = q(dir)
  for _, cmd in ipairs {
    "openssl req -x509 " .. ec .. " -days 2 -subj /CN=fb-pg-ca -addext basicConstraints=critical,CA:TRUE"
      .. " -addext keyUsage=critical,keyCertSign,cRLSign -keyout " .. d .. "/ca.key -out " .. d .. "/ca.crt",
    "openssl req " .. ec .. " -subj /CN=localhost -keyout " .. d .. "/server.key -out " .. d .. "/server.csr",
    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > " .. d .. "/server.ext",
    "openssl x509 -req -days 2 -in " .. d .. "/server.csr -CA " .. d .. "/ca.crt -CAkey " .. d .. "/ca.key"
      .. " -CAcreateserial -extfile " .. d .. "/server.ext -out " .. d .. "/server.crt",
  } do
    local out, ok = run(cmd)
    if not ok then error("openssl failed: " .. cmd .. "\n" .. out, 3) end
  end
end

-- opts: tls (the server also speaks TLS with a certificate for localhost: srv.ca_file). Starts a new
-- cluster with database and role `mirror`.
function PG.start(opts)
  opts = opts or {}
  local dir = run("mktemp -d /tmp/fb-pg.XXXXXX"):match("[^\n]+")
  run("chmod 755 " .. q(dir))
  if root then run("chown nobody " .. q(dir)) end
  local password = run("head -c 18 /dev/urandom | base64 | tr '+/' 'ab'"):match("[%w]+")
  local pw = dir .. "/pw"
  run(as_owner("umask 077 && echo " .. q(password) .. " > " .. q(pw)))
  local out, ok = run(as_owner(("%sinitdb -D %s -U postgres --auth-local=trust --auth-host=scram-sha-256"
    .. " --pwfile=%s -E UTF8 --locale=C.UTF-8 --no-sync"):format(BIN, q(dir .. "/data"), q(pw))))
  if not ok then
    run("rm -rf " .. q(dir))
    error("initdb failed: " .. out, 2)
  end
  -- quick to start and stop; durable enough for what the specs kill (fsync stays on: a restart after
  -- SIGKILL must find every commit)
  run(as_owner("cat >> " .. q(dir .. "/data/postgresql.conf") .. " <<'EOF'\nshared_buffers = 32MB\n"
    .. "max_connections = 60\nlog_min_messages = warning\nlisten_addresses = '127.0.0.1'\n"
    .. "synchronous_commit = on\nfull_page_writes = on\nEOF"))
  if opts.tls then
    make_certs(dir)
    run("cp " .. q(dir .. "/server.crt") .. " " .. q(dir .. "/server.key") .. " " .. q(dir .. "/data/"))
    run((root and "chown nobody " or "true ") .. q(dir .. "/data/server.crt") .. " " .. q(dir .. "/data/server.key")
      .. " && chmod 600 " .. q(dir .. "/data/server.key"))
    run(as_owner("printf \"ssl = on\\nssl_cert_file = 'server.crt'\\nssl_key_file = 'server.key'\\n\" >> "
      .. q(dir .. "/data/postgresql.conf")))
  end
  local srv = setmetatable({ dir = dir, password = password, ca_file = opts.tls and dir .. "/ca.crt" or nil }, Server)
  local why
  for _ = 1, 10 do
    srv.port = random_port()
    ok, why = srv:launch()
    if ok then break end
  end
  if not ok then
    run("rm -rf " .. q(dir))
    error("postgres did not start: " .. tostring(why), 2)
  end
  srv:psql(("CREATE ROLE mirror LOGIN PASSWORD '%s'"):format(password))
  srv:psql("CREATE DATABASE mirror OWNER mirror")
  srv.conninfo = ("host=127.0.0.1 port=%d dbname=mirror user=mirror password=%s"):format(srv.port, password)
  srv.url = ("postgresql://mirror:%s@127.0.0.1:%d/mirror"):format(password, srv.port)
  -- the bootstrap superuser has the same password (initdb --pwfile)
  srv.superuser = ("host=127.0.0.1 port=%d dbname=mirror user=postgres password=%s"):format(srv.port, password)
  return srv
end

-- psql as the superuser over the Unix socket (trust), on database `db` (default mirror).
function Server:psql(sql, db)
  local out, ok = run(as_owner(("%spsql -X -q -A -t -v ON_ERROR_STOP=1 -h %s -p %d -U postgres -d %s -c %s")
    :format(BIN:gsub("lib/postgresql/15/bin/", "bin/"), q(self.dir), self.port, db or (self.conninfo and "mirror"
      or "postgres"), q(sql))))
  if not ok then error("psql: " .. out, 2) end
  return (out:gsub("\n$", ""))
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("*a") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- SIGKILL of the postmaster and every backend (a crash: the next start recovers from the WAL).
function Server:kill()
  if not self.pid then return end
  run("pkill -KILL -P " .. self.pid .. "; kill -KILL " .. self.pid)
  for _ = 1, 250 do
    if not alive(self.pid) then break end
    sleep(0.02)
  end
  register(self.pid, false)
  self.pid = nil
  -- the children hold the shared memory and the port until they are gone
  for _ = 1, 250 do
    local out = run("ss -ltn 'sport = :" .. self.port .. "'")
    if not out:find("127.0.0.1:" .. self.port, 1, true) then break end
    sleep(0.02)
  end
end

function Server:start_again()
  local ok, why
  for _ = 1, 50 do
    ok, why = self:launch()
    if ok then return end
    sleep(0.1)
  end
  error("postgres did not start again: " .. tostring(why), 2)
end

-- A restart as an operator does it (fast shutdown: connections are cut, commits kept).
function Server:restart()
  run(as_owner(("%spg_ctl -D %s -m fast -w -t 30 stop"):format(BIN, q(self.dir .. "/data"))))
  register(self.pid, false)
  self.pid = nil
  self:start_again()
end

function Server:stop()
  if self.pid then
    run(as_owner(("%spg_ctl -D %s -m immediate -w -t 30 stop"):format(BIN, q(self.dir .. "/data"))))
    if alive(self.pid) then run("kill -KILL " .. self.pid) end
    register(self.pid, false)
    self.pid = nil
  end
  if self.dir and self.dir:match("^/tmp/fb%-pg%.") then run("rm -rf " .. q(self.dir)) end
  self.dir = nil
end

return PG
