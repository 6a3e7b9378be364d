-- A throwaway nginx (Debian's, with lua-nginx-module) for the C-core specs: plain HTTP and HTTPS on
-- random free 127.0.0.1 ports, a fresh CA and server certificate, and a few test endpoints:
--   /echo            JSON {method, uri, headers, body, connection, connection_requests, scheme}
--   /delay?ms=N      answers after N ms (X-Started / X-Finished: the server's clock around the wait)
--   /bytes?n=N       streams N bytes (chunked; &length=1 sends Content-Length instead)
--   /status?code=N   answers with status N (3xx carry Location: /echo)
--   /headers         repeated Set-Cookie and X-Dup headers
--   /h/<case>        with `hostile = true`: spec/support/hostile.lua's misbehaving answers, plus TLS
--                    listeners on ts.wrong_name_port (CA-signed, for wrong.example) and
--                    ts.self_signed_port (self-signed, for localhost)
--   local ts = require("support.testserver").start()
--   ts.url, ts.tls_url, ts.ca_file, ts.stop()
-- The nginx pid is also registered as a file named <pid> in $FB_TEST_PIDS_DIR (when set), so the
-- test runner can stop leftovers of a crashed run.
local testserver = {}

local NGINX_MODULES = "/usr/lib/nginx/modules/"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a shell command; returns its output and whether it exited 0 (same on Lua 5.4 and LuaJIT).
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return out:gsub("__rc=%d+%s*$", ""), rc == 0
end

local function sleep(s)
  local ok, system = pcall(require, "system")
  if ok and system.sleep then system.sleep(s) else os.execute("sleep " .. s) end
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function make_certs(dir)
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local ext = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
  write(dir .. "/server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n" .. ext)
  write(dir .. "/wrong.ext", "subjectAltName=DNS:wrong.example\n" .. ext)
  local steps = {
    "openssl req -x509 " .. ec .. " -days 2 -subj /CN=lua-freshbooks-test-ca" ..
      " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign" ..
      " -keyout " .. q(dir .. "/ca.key") .. " -out " .. q(dir .. "/ca.crt"),
    "openssl req " .. ec .. " -subj /CN=127.0.0.1 -keyout " .. q(dir .. "/server.key") ..
      " -out " .. q(dir .. "/server.csr"),
    "openssl x509 -req -days 2 -in " .. q(dir .. "/server.csr") .. " -CA " .. q(dir .. "/ca.crt") ..
      " -CAkey " .. q(dir .. "/ca.key") .. " -CAcreateserial -extfile " .. q(dir .. "/server.ext") ..
      " -out " .. q(dir .. "/server.crt"),
    -- For the TLS cases: a certificate from the trusted CA for another name, and one nobody signed.
    "openssl req " .. ec .. " -subj /CN=wrong.example -keyout " .. q(dir .. "/wrong.key") ..
      " -out " .. q(dir .. "/wrong.csr"),
    "openssl x509 -req -days 2 -in " .. q(dir .. "/wrong.csr") .. " -CA " .. q(dir .. "/ca.crt") ..
      " -CAkey " .. q(dir .. "/ca.key") .. " -CAcreateserial -extfile " .. q(dir .. "/wrong.ext") ..
      " -out " .. q(dir .. "/wrong.crt"),
    "openssl req -x509 " .. ec .. " -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost" ..
      " -keyout " .. q(dir .. "/self.key") .. " -out " .. q(dir .. "/self.crt"),
  }
  for _, cmd in ipairs(steps) do
    local out, ok = run(cmd)
    if not ok then error("testserver: openssl failed: " .. cmd .. "\n" .. out, 3) end
  end
end

local HANDLERS = [[
    location = /echo {
      content_by_lua_block {
        local cjson = require "cjson"
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        local file = ngx.req.get_body_file()
        if not body and file then
          local f = io.open(file, "rb"); body = f:read("*a"); f:close()
        end
        ngx.header["Content-Type"] = "application/json"
        ngx.say(cjson.encode{
          method = ngx.req.get_method(), uri = ngx.var.request_uri, scheme = ngx.var.scheme,
          headers = ngx.req.get_headers(200), body = body or "",
          connection = tonumber(ngx.var.connection),
          connection_requests = tonumber(ngx.var.connection_requests),
        })
      }
    }
    location = /delay {
      content_by_lua_block {
        local ms = tonumber(ngx.var.arg_ms) or 0
        ngx.update_time()
        ngx.header["X-Started"] = string.format("%.3f", ngx.now())
        ngx.sleep(ms / 1000)
        ngx.update_time()
        ngx.header["X-Finished"] = string.format("%.3f", ngx.now())
        ngx.say("slept ", ms)
      }
    }
    location = /bytes {
      content_by_lua_block {
        local n = tonumber(ngx.var.arg_n) or 0
        if ngx.var.arg_length then ngx.header["Content-Length"] = n end
        local chunk = string.rep("x", 65536)
        while n > 0 do
          local k = math.min(n, #chunk)
          ngx.print(k == #chunk and chunk or chunk:sub(1, k))
          if not ngx.flush(true) then return end -- the client went away
          n = n - k
        end
      }
    }
    location = /status {
      content_by_lua_block {
        local code = tonumber(ngx.var.arg_code) or 200
        ngx.status = code
        if code >= 300 and code < 400 then ngx.header["Location"] = "/echo" end
        if code ~= 204 and code ~= 304 then ngx.say("status ", code) end
        ngx.exit(ngx.OK)
      }
    }
    location = /headers {
      content_by_lua_block {
        ngx.header["Set-Cookie"] = { "a=1; Path=/", "b=2; Path=/" }
        ngx.header["X-Dup"] = { "one", "two", "three" }
        ngx.header["X-Single"] = "solo"
        ngx.say("ok")
      }
    }
]]

-- As sandbox/run does: a root master runs its worker as the invoking user, not `nobody`, so a checkout
-- under a private (0700) directory such as /root stays readable (and its temp files writable).
local function user_line()
  local id = (run("id -u")):match("%d+")
  if id ~= "0" then return "" end
  return "user " .. (run("id -un")):match("%S+") .. " " .. (run("id -gn")):match("%S+") .. ";"
end

-- The hostile cases (spec/support/hostile.lua) at /h/<case>, and two more TLS listeners: a
-- certificate from the trusted CA for wrong.example, and a self-signed one for localhost.
local function hostile_config(dir, ports)
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/support"
  if here:sub(1, 1) ~= "/" then
    local p = io.popen("pwd")
    here = p:read("*l") .. "/" .. here
    p:close()
  end
  return table.concat({
    "  lua_package_path '" .. here .. "/?.lua;;';",
    "  lua_shared_dict hostile 1m;",
    "  server {",
    "    listen 127.0.0.1:" .. ports.wrong .. " ssl;",
    "    ssl_certificate " .. dir .. "/wrong.crt;",
    "    ssl_certificate_key " .. dir .. "/wrong.key;",
    "    location / { return 200 'wrong name'; }",
    "  }",
    "  server {",
    "    listen 127.0.0.1:" .. ports.self .. " ssl;",
    "    ssl_certificate " .. dir .. "/self.crt;",
    "    ssl_certificate_key " .. dir .. "/self.key;",
    "    location / { return 200 'self-signed'; }",
    "  }",
  }, "\n")
end

local function config(dir, port, tls_port, opts, ports)
  return table.concat({
    "load_module " .. NGINX_MODULES .. "ndk_http_module.so;",
    "load_module " .. NGINX_MODULES .. "ngx_http_lua_module.so;",
    user_line(),
    "worker_processes " .. (opts.workers or 1) .. ";",
    "error_log " .. dir .. "/error.log warn;",
    "events { worker_connections 256; }",
    "http {",
    "  access_log off;",
    "  keepalive_timeout 60s;",
    "  keepalive_requests 10000;",
    "  client_max_body_size 32m;",
    "  client_body_buffer_size 1m;",
    "  client_body_temp_path " .. dir .. "/tmp/body;",
    "  proxy_temp_path " .. dir .. "/tmp/proxy;",
    "  fastcgi_temp_path " .. dir .. "/tmp/fastcgi;",
    "  uwsgi_temp_path " .. dir .. "/tmp/uwsgi;",
    "  scgi_temp_path " .. dir .. "/tmp/scgi;",
    "  lua_socket_log_errors off;",
    opts.http or "",
    opts.hostile and hostile_config(dir, ports) or "",
    "  server {",
    "    listen 127.0.0.1:" .. port .. ";",
    "    listen 127.0.0.1:" .. tls_port .. " ssl;",
    "    ssl_certificate " .. dir .. "/server.crt;",
    "    ssl_certificate_key " .. dir .. "/server.key;",
    HANDLERS,
    opts.hostile and "    location /h/ { content_by_lua_block { require('hostile').serve() } }" or "",
    opts.locations or "",
    "  }",
    "}",
  }, "\n")
end

local seeded = false
local function random_port()
  if not seeded then
    local addr = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
    math.randomseed(os.time() + addr % 1000003)
    seeded = true
  end
  return math.random(20000, 32000) -- below Linux's ephemeral range
end

local function register(pid)
  local dir = os.getenv("FB_TEST_PIDS_DIR")
  if dir and dir ~= "" then
    local f = io.open(dir .. "/" .. pid, "w")
    if f then f:write(pid, "\n"); f:close() end
  end
end

local function unregister(pid)
  local dir = os.getenv("FB_TEST_PIDS_DIR")
  if dir and dir ~= "" then os.remove(dir .. "/" .. pid) end
end

local function alive(pid)
  local _, ok = run("kill -0 " .. pid)
  return ok
end

-- http-block directives that put this checkout's Lua layer (and `dirs`, relative to the checkout) and
-- the LuaJIT build of the core on nginx's paths, for specs that run lua-freshbooks inside nginx.
function testserver.lua_paths(dirs)
  local p = io.popen("pwd")
  local root = p:read("*l")
  p:close()
  local path = { root .. "/lua/?.lua", root .. "/lua/?/init.lua" }
  for _, d in ipairs(dirs or {}) do path[#path + 1] = root .. "/" .. d .. "/?.lua" end
  -- The vendored resty.redis: without it nginx answers a bare 500/503 later; say it now.
  for _, d in ipairs(dirs or {}) do
    if d == "build/deps/lua" and not read(root .. "/build/deps/lua/nginx/redis.lua") then
      error("resty.redis (Debian's lua-nginx-redis) is missing from build/deps/lua/nginx/redis.lua:"
        .. " run `make build/deps/lua/nginx/redis.lua` (or `make deps`)", 2)
    end
  end
  return ("lua_package_path '%s;;';\n  lua_package_cpath '%s/build/luajit/?.so;;';")
    :format(table.concat(path, ";"), root)
end

-- opts.http: extra directives for the http block; opts.locations: extra location blocks (used by
-- the OpenResty specs to run lua-freshbooks inside this nginx).
function testserver.start(opts)
  opts = opts or {}
  local dir = (run("mktemp -d /tmp/fb-testserver.XXXXXX")):match("[^\n]+")
  assert(dir and dir:match("^/tmp/fb%-testserver%."), "testserver: mktemp failed")
  run("mkdir -p " .. q(dir .. "/tmp"))
  make_certs(dir)
  local pidfile = dir .. "/nginx.pid"
  local port, tls_port, out, ok
  local ports
  for _ = 1, 20 do
    port, tls_port = random_port(), random_port()
    ports = { wrong = random_port(), self = random_port() }
    local all = { [port] = 1, [tls_port] = 1, [ports.wrong] = 1, [ports.self] = 1 }
    local distinct = 0
    for _ in pairs(all) do distinct = distinct + 1 end
    if distinct == 4 then
      write(dir .. "/nginx.conf", config(dir, port, tls_port, opts, ports))
      out, ok = run("nginx -p " .. q(dir) .. " -c " .. q(dir .. "/nginx.conf") .. " -e " .. q(dir .. "/error.log") ..
        " -g " .. q("daemon on; pid " .. pidfile .. ";"))
      if ok or not out:find("Address already in use", 1, true) then break end
    end
  end
  if not ok then
    run("rm -rf " .. q(dir))
    error("testserver: nginx did not start:\n" .. tostring(out), 2)
  end
  local pid
  for _ = 1, 100 do
    pid = tonumber((read(pidfile) or ""):match("%d+"))
    if pid then break end
    sleep(0.02)
  end
  assert(pid, "testserver: nginx wrote no pid file")
  register(pid)

  local ts = {
    url = "http://127.0.0.1:" .. port,
    tls_url = "https://127.0.0.1:" .. tls_port,
    port = port, tls_port = tls_port,
    ca_file = dir .. "/ca.crt", dir = dir, pid = pid,
  }
  if opts.hostile then
    ts.wrong_name_port, ts.self_signed_port = ports.wrong, ports.self
  end
  local stopped = false
  function ts.stop()
    if stopped then return end
    stopped = true
    run("kill -TERM " .. pid)
    for _ = 1, 150 do
      if not alive(pid) then break end
      sleep(0.02)
    end
    if alive(pid) then run("kill -KILL " .. pid) end
    unregister(pid)
    run("rm -rf " .. q(dir))
  end
  -- The error log, for assertion messages.
  function ts.log() return read(dir .. "/error.log") or "" end
  return ts
end

return testserver
