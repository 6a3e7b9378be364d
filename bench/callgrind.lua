-- `make bench-callgrind`: instructions per GET, counted by valgrind's callgrind (repeatable, unlike
-- wall-clock or CPU time on a shared machine). A client-record GET through a session
-- (`acct.clients:get`, bench/client.lua) under each interpreter, and the raw libcurl loop
-- (bench/raw_get.c), each run for 600 and for 100 requests against one sandbox: the difference over
-- 500 is the cost of one GET without start-up.
--   usage: lua5.4 bench/callgrind.lua build/bench/raw_get [lua5.4 luajit ...]
local sandbox = require "launch" -- sandbox/launch.lua
local q = sandbox.shell_quote

local RAW = arg[1] or "build/bench/raw_get"
local LUAS = { table.unpack(arg, 2) }
if #LUAS == 0 then LUAS = { "lua5.4" } end
local LONG, SHORT = 600, 100

local function instructions(cmd, env)
  local log = os.tmpname()
  local p = assert(io.popen(("%s valgrind --tool=callgrind --callgrind-out-file=/dev/null %s >/dev/null 2>%s")
    :format(env, cmd, q(log))))
  p:read("*a")
  p:close()
  local f = assert(io.open(log))
  local text = f:read("*a")
  f:close()
  os.remove(log)
  local n = text:match("Collected : (%d+)")
  if not n then error("callgrind counted nothing for " .. cmd .. ":\n" .. text) end
  return tonumber(n)
end

local function per_get(cmd_for, env)
  local long, short = instructions(cmd_for(LONG), env), instructions(cmd_for(SHORT), env)
  return (long - short) / (LONG - SHORT)
end

local function run(sb)
  local token = sb:token{ user = "alice" }.access_token
  local env = "FB_TOKEN=" .. q(token)
  local rows = {}
  for _, lua in ipairs(LUAS) do
    local paths = ("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/%s/?.so;;'"):format(lua)
    rows[#rows + 1] = { "lua-freshbooks, " .. lua, per_get(function(n)
      return ("%s bench/client.lua get %s %d"):format(lua, q(sb.url), n)
    end, env .. " " .. paths) }
  end
  local raw = per_get(function(n)
    return ("%s %s %d"):format(q(RAW), q(sb.url .. "/accounting/account/aBcD1/users/clients/10001"), n)
  end, "FB_BENCH_TOKEN=" .. q(token))
  print(("instructions per GET (callgrind: (%d-request run - %d-request run) / %d)"):format(LONG, SHORT, LONG - SHORT))
  for _, r in ipairs(rows) do
    print(("  %-28s %8.1fK   raw + %.1fK (%.2fx)"):format(r[1], r[2] / 1000, (r[2] - raw) / 1000, r[2] / raw))
  end
  print(("  %-28s %8.1fK"):format("raw libcurl loop (C)", raw / 1000))
end

local sb = sandbox.start{ invoices = 10 }
local ok, err = pcall(run, sb)
sb:stop()
if not ok then io.stderr:write("bench-callgrind failed: ", tostring(err), "\n") os.exit(1) end
