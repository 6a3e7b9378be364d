-- Guest scripts (freshbooks.guest): what a run costs, and how long each bomb takes to end at the
-- default budgets (guest.budget), against one local sandbox. Prints numbers only.
--   LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/lua5.4/?.so;;' lua5.4 bench/guest.lua
--   (and the same with luajit and build/luajit)
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local guest = require "freshbooks.guest"
local sandbox = require "support.sandbox"

local function say(fmt, ...) io.write(string.format(fmt, ...), "\n") io.flush() end

local BOMBS = {
  { "infinite loop", "while true do end" },
  { "pattern bomb (the issue's)", "local s = ('a'):rep(30) return s:find(('a?'):rep(30) .. ('a'):rep(30) .. 'b')" },
  { "memory: ('x'):rep(1.5e9)", "return #('x'):rep(1.5e9)" },
  { "memory: a growing table", "local t = {} while true do t[#t + 1] = {} end" },
  { "deep recursion", "local function f(n) return 1 + f(n + 1) end return f(1)" },
  { "10,000 API calls", "local fb = ... local a = fb:account('aBcD1') "
    .. "local id = a.invoices:list{ per_page = 1 }[1].id for _ = 1, 10000 do a.invoices:get(id) end" },
  { "print forever", "while true do print(('x'):rep(1000)) end" },
  { "deadline (time = 1 s)", "while true do end", { time = 1, instructions = 1e15 } },
}

local function bench(sb)
  local fb = freshbooks.new{ client_id = sb.app.client_id, client_secret = sb.app.client_secret,
    redirect_uri = sb.app.redirect_uri, api_url = sb.url, auth_url = sb.auth_url or sb.url,
    tokens = sb:token{ user = "alice" } }
  local N = 2000
  local t0 = core.clock.now()
  for _ = 1, N do assert(guest.run(fb, "return 1")) end
  say("%s: a run of 'return 1': %.1f us", _VERSION, (core.clock.now() - t0) / N * 1e6)
  local usage = {}
  t0 = core.clock.now()
  assert(guest.run(fb, "for _ = 1, 10000 do print('') end", nil, { usage = usage, print = function() end }))
  say("%s: a crossing of the bridge to the host and back (print): %.2f us", _VERSION,
    (core.clock.now() - t0) / 10000 * 1e6)
  local b = guest.budget
  say("default budgets: memory %d MiB, instructions %.0e, time %g s, patterns %.0e, calls %d, output %d KiB",
    b.memory / 1048576, b.instructions, b.time, b.patterns, b.calls, b.output / 1024)
  for _, bomb in ipairs(BOMBS) do
    t0 = core.clock.now()
    local ok, err = guest.run(fb, bomb[2], "=bomb", { budget = bomb[3], usage = usage, print = function() end })
    local secs = core.clock.now() - t0
    assert(not ok, bomb[1] .. " did not end with an error")
    say("  %-28s %-16s %7.3f s %7.1f MiB %12d instructions %8d steps %5d calls", bomb[1], err.code, secs,
      usage.memory / 1048576, usage.instructions, usage.patterns, usage.calls)
    assert(fb:me(true), "the host's session works after the bomb")
  end
end

local sb = sandbox.start{ invoices = 20 }
local ok, err = pcall(bench, sb)
sb:stop()
if not ok then error(err, 0) end
