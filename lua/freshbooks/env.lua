-- Where the library runs, asked at the moment it matters (a session made in init_by_lua serves request
-- handlers later): plain Lua, or inside nginx (OpenResty), and whether this nginx phase may yield.
-- Inside nginx nothing may block the worker: waits go through ngx.sleep and HTTP through cosockets,
-- and a phase that cannot yield gets a coded error instead of a blocking call.
local core -- loaded on first wait: `require "freshbooks"` works before the C core is built
local env = {}

-- Every phase where cosockets and ngx.sleep work. One left out would get core.clock.sleep and libcurl's
-- blocking calls (server_rewrite: lua-nginx-module 0.10.22, Debian 12's is 0.10.23; ssl_client_hello:
-- 0.10.21).
local YIELDING = { rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true }

-- env.nginx() -> ngx inside nginx (any phase), else nil.
function env.nginx()
  local ngx = rawget(_G, "ngx")
  return ngx and ngx.get_phase and ngx.socket and ngx.socket.tcp and ngx or nil
end

-- env.yielding() -> ngx in a phase that may yield (cosockets, ngx.sleep), else nil.
function env.yielding()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.get_phase and YIELDING[ngx.get_phase()] then return ngx end
  return nil
end

-- env.sleep(seconds): on nginx's event loop where the phase may yield, else the thread sleeps.
function env.sleep(s)
  local ngx = env.yielding()
  if ngx then return ngx.sleep(s) end
  core = core or require "freshbooks.core"
  return core.clock.sleep(s)
end

-- env.now() -> seconds for intervals: nginx's cached clock (updated first) where the phase may yield,
-- else the core's monotonic clock.
function env.now()
  local ngx = env.yielding()
  if ngx then ngx.update_time() return ngx.now() end
  core = core or require "freshbooks.core"
  return core.clock.now()
end

return env
