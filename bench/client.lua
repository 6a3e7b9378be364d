-- One contender of bench/run.lua: lua-freshbooks under the interpreter running this file.
--   <lua> bench/client.lua get URL N         N GETs of one client record  -> "rps cpu_us"
--   <lua> bench/client.lua export URL P       every invoice, P pages at once -> "seconds records"
--   <lua> bench/client.lua mem URL N          N more live sessions, one GET each
--                                             -> "rss_kb_per_session heap_kb_per_session"
-- The access token comes in FB_TOKEN (never on a command line); FB_CA is the CA file for https.
local freshbooks = require "freshbooks"
local core = require "freshbooks.core"

local mode, url, n = arg[1], arg[2], tonumber(arg[3])
local function session()
  return freshbooks.new{ client_id = "sandbox-client-id", client_secret = "unused", api_url = url,
    redirect_uri = "http://localhost:8976/callback", cainfo = os.getenv("FB_CA"),
    tokens = { access_token = os.getenv("FB_TOKEN"), refresh_token = "unused", expires_in = 43200 } }
end
local function rss_kb()
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4
end

if mode == "get" then
  local clients = session():account("aBcD1").clients
  assert(clients:get(10001)) -- warm: the connection, and LuaJIT's traces
  local c0, t0 = os.clock(), core.clock.now()
  for _ = 1, n do assert(clients:get(10001)) end
  local took, cpu = core.clock.now() - t0, os.clock() - c0
  print(("%.1f %.2f"):format(n / took, cpu / n * 1e6))
elseif mode == "export" then
  local invoices = session():account("aBcD1").invoices
  local t0 = core.clock.now()
  local all = assert(invoices:all({ per_page = 100 }, { parallel = n }))
  print(("%.3f %d"):format(core.clock.now() - t0, #all))
elseif mode == "mem" then
  local keep = { session() }
  assert(keep[1]:account("aBcD1").clients:get(10001))
  collectgarbage()
  collectgarbage()
  local before, heap = rss_kb(), collectgarbage("count")
  for i = 2, n + 1 do
    keep[i] = session()
    assert(keep[i]:account("aBcD1").clients:get(10001))
  end
  collectgarbage()
  collectgarbage()
  -- RSS also holds what the collector has not given back (the heap grows to about twice the live data
  -- between cycles); the heap after a full collection is what the sessions themselves hold.
  print(("%.2f %.2f"):format((rss_kb() - before) / n, (collectgarbage("count") - heap) / n))
else
  error("usage: client.lua get|export|mem URL N")
end
