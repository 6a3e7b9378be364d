-- The `freshbooks` command, measured as a user runs it (a subprocess against a local sandbox):
--   1. start-up (`freshbooks --help`), one Tab of shell completion (`freshbooks __complete`), and a whole
--      `freshbooks login` through the loopback with the scripted browser (start address, authorize,
--      redirect, exchange, identity), median of 5;
--   2. `export invoices -o FILE` of 1,000 and 20,000 invoices, JSONL and CSV, 1 and 4 pages at once:
--      wall clock, records per second and peak RSS (GNU time's %M, when /usr/bin/time is there). Memory
--      stays flat as the export grows 20 times: each() holds one window of pages, nothing more.
--   usage: LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/lua5.4/?.so;;' lua5.4 bench/cli.lua
-- (The sandbox is one nginx worker on the same cores: wall-clock figures are server-bound.)
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local C = require "support.cli"

local q = sandbox.shell_quote
local function say(fmt, ...) io.write(string.format(fmt, ...), "\n") io.flush() end

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

local function timed(f)
  local t0 = core.now()
  local a, b, c = f()
  return core.now() - t0, a, b, c
end

local ran = os.execute("/usr/bin/time -f %M true >/dev/null 2>&1")
local gnu_time = ran == true or ran == 0 -- Lua 5.4 / LuaJIT

local port = C.free_port()
local sb = sandbox.start{ invoices = 1000, redirect_uris = { ("http://127.0.0.1:%d/callback"):format(port) } }
local ok, err = pcall(function()
  local w = C.world(sb, port)
  local jit = rawget(_G, "jit")
  say("freshbooks command benchmark (%s)", jit and jit.version or _VERSION)

  local times = {}
  for i = 1, 5 do times[i] = timed(function() return w:run("--help") end) end
  say("start-up (--help):          %6.1f ms", median(times) * 1000)
  for i = 1, 5 do
    times[i] = timed(function() return w:run("__complete bash -- export inv", { no_flags = true }) end)
  end
  say("completion (one Tab):       %6.1f ms", median(times) * 1000)
  for i = 1, 5 do
    local t, code, _, e = timed(function()
      return w:run("login --force", { vars = { BROWSER = C.root .. "/sandbox/browser" } })
    end)
    assert(code == 0, e)
    times[i] = t
  end
  say("login (loopback, scripted): %6.1f ms", median(times) * 1000)

  for _, n in ipairs{ 1000, 20000 } do
    sb:admin("POST", "/_sandbox/reset", { invoices = n })
    assert(w:run("login --force", { vars = { BROWSER = C.root .. "/sandbox/browser" } }) == 0)
    for _, format in ipairs{ "jsonl", "csv" } do
      for _, parallel in ipairs{ 1, 4 } do
        local file = w.dir .. "/export." .. format
        local args = ("export invoices --business aBcD1 --format %s --parallel %d -o %s"):format(format, parallel,
          q(file))
        local rss = w.dir .. "/rss"
        local t, code, _, e = timed(function()
          return w:run(args, { timeout = 300, prefix = gnu_time and ("/usr/bin/time -f %M -o " .. q(rss)) or nil })
        end)
        assert(code == 0, e)
        local lines = select(2, C.read(file):gsub("\n", ""))
        assert(lines == (format == "csv" and n + 1 or n), "wrong number of lines")
        local peak = gnu_time and ((C.read(rss):match("(%d+)%s*$") or "?") .. " KB") or "n/a"
        say("export %6d invoices %-5s parallel %d: %6.2f s  %7.0f records/s  peak RSS %s", n, format, parallel, t,
          n / t, peak)
      end
    end
  end
  w:cleanup()
end)
sb:stop()
if not ok then io.stderr:write("bench failed: ", tostring(err), "\n") os.exit(1) end
