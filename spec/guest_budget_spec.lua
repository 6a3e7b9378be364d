-- Guest budgets (freshbooks.guest, src/guest.c): each bomb ends within its budget, with its own code,
-- and the host then works as before. The figures (seconds, peak memory, instructions, pattern steps,
-- API calls) are printed for each bomb; timing is asserted only loosely (it ended, well within 10x).
-- Budgets here are smaller than the defaults so that the spec also runs under valgrind.
local freshbooks = require "freshbooks"
local core = require "freshbooks.core"
local errors = require "freshbooks.errors"
local guest = require "freshbooks.guest"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"

local BUDGET = { memory = 32 * 1024 * 1024, instructions = 2e7, time = 20, patterns = 2e5, calls = 1000,
                 output = 1024 * 1024 }

describe("guest budgets", function()
  local sb, fb, figures
  setup(function()
    sb = sandbox.start{ invoices = 20 }
    fb = freshbooks.new(H.opts(sb, { tokens = sb:token{ user = "alice" } }))
    figures = {}
  end)
  teardown(function()
    print(("\nguest budgets under %s (memory %d MiB, instructions %.0e, time %g s, patterns %.0e, calls %d):")
      :format(H.lua, BUDGET.memory / 1048576, BUDGET.instructions, BUDGET.time, BUDGET.patterns, BUDGET.calls))
    print(("  %-34s %-16s %8s %10s %12s %9s %6s"):format("bomb", "code", "seconds", "peak MiB", "instructions",
      "steps", "calls"))
    for _, f in ipairs(figures) do print("  " .. f) end
    if sb then sb:stop() end
  end)

  -- Runs a bomb with BUDGET (and `over`), records its figures, and returns the error.
  local function bomb(name, src, over)
    local budget = {}
    for k, v in pairs(BUDGET) do budget[k] = v end
    for k, v in pairs(over or {}) do budget[k] = v end
    local usage = {}
    local t0 = core.clock.now()
    local ok, err = guest.run(fb, src, "=" .. name, { budget = budget, usage = usage, print = function() end })
    local secs = core.clock.now() - t0
    figures[#figures + 1] = ("%-34s %-16s %8.3f %10.1f %12d %9d %6d"):format(name, tostring(err and err.code),
      secs, usage.memory / 1048576, usage.instructions, usage.patterns, usage.calls)
    assert.is_nil(ok, name .. " ended without an error")
    assert.is_true(errors.is(err))
    assert.is_true(secs < 10 * budget.time, name .. " took " .. secs .. " s")
    assert.is_true(usage.memory <= budget.memory)
    return err, secs, usage
  end

  -- After every bomb: the host's session, errors, strings and a normal guest run are as before.
  local function host_unharmed()
    local me = assert(fb:me(true))
    assert.are.equal("alice@example.com", me.email)
    local probe = errors.new{ code = "probe", message = "x", status = 500 }
    assert.are.equal("freshbooks: probe: x (HTTP 500)", tostring(probe))
    assert.are.equal("a+b+c", (("a-b-c"):gsub("%-", "+")))
    local ok, n = guest.run(fb, "local fb = ... return #assert(fb:account('aBcD1').invoices:list{ per_page = 4 })")
    assert.is_true(ok, tostring(n))
    assert.are.equal(4, n)
  end

  it("an infinite loop ends with budget_cpu, however it hides", function()
    local cases = {
      ["while true do end"] = "while true do end",
      ["loop in pcall, in a loop"] = "while true do pcall(function() while true do end end) end",
      ["loop in coroutines"] = [[
        while true do coroutine.resume(coroutine.create(function() while true do end end)) end]],
      ["loop in an xpcall handler"] = "xpcall(error, function() while true do end end)",
      ["loop in a gsub callback"] = "('x'):gsub('x', function() while true do end end)",
      ["loop in a sort comparator"] = "local t = {} for i = 1, 100 do t[i] = i end "
        .. "table.sort(t, function(a, b) while true do end end)",
      ["table.move over 2^40"] = "table.move({}, 1, 2^40, 1, {})",
      ["(''):rep(2^50)"] = "for _ = 1, 1e9 do local _ = (''):rep(2^50) end",
    }
    -- Lua 5.3+'s table library reads lengths through __len and elements through __index/__newindex,
    -- inside one C call: a script's __len, or C functions as metamethods, chose how long it loops.
    -- These ranges would end in seconds; 2^53 would not end at all.
    local meta_aware = table.concat(setmetatable({}, { __len = function() return 2 end,
      __index = function() return "a" end })) == "aa"
    if meta_aware then
      cases["table.remove over a __len of 2^26"] = "table.remove(setmetatable({}, { __len = function() "
        .. "return 2^26 end }), 1)"
      cases["table.insert over a __len of 2^26"] = "table.insert(setmetatable({}, { __len = function() "
        .. "return 2^26 end }), 1, true)"
      cases["table.concat through a C __index"] = "getmetatable('').__index = string.sub "
        .. "table.concat(setmetatable({}, { __len = function() return 2^24 end, __index = '' }))"
      cases["table.sort through C metamethods"] = "table.sort(setmetatable({}, { __len = function() "
        .. "return 2^20 end, __index = rawlen, __newindex = rawequal }))"
    end
    for name, src in pairs(cases) do
      local err = bomb(name, src)
      assert.are.equal("budget_cpu", err.code, name .. ": " .. tostring(err))
    end
    -- Raising costs C time that no instruction count sees (LuaJIT unwinds like C++): the deadline
    -- is the backstop there.
    local err = bomb("catch and retry forever", "local n = 0 while true do n = n + 1 pcall(error, n) end",
      { time = 3 })
    assert.truthy(err.code == "budget_cpu" or err.code == "budget_time", tostring(err))
    host_unharmed()
  end)

  it("a wall-clock deadline ends a run, in the script and in API calls", function()
    local err, secs = bomb("deadline: while true do end", "while true do end", { time = 0.5, instructions = 1e15 })
    assert.are.equal("budget_time", err.code)
    assert.is_true(secs < 5)
    -- An API call that would take 3 s gets no more time than the run has left.
    sb:admin("POST", "/_sandbox/faults", { route = "invoices", fault = "delay", ms = 3000, times = 1 })
    err, secs = bomb("deadline: a 3 s API call", [[
      local fb = ...
      local page, e = fb:account("aBcD1").invoices:list{}
      while true do end
    ]], { time = 0.5, instructions = 1e15 })
    sb:admin("DELETE", "/_sandbox/faults")
    assert.are.equal("budget_time", err.code)
    assert.is_true(secs < 2.5, "the 3 s call was cut short: " .. secs)
    host_unharmed()
  end)

  it("table.insert refuses positions below 1 and past int32, on every VM", function()
    -- LuaJIT and Lua 5.1 shift from #t + 1 down to the position in one C loop (2^31 steps for -2^31,
    -- and for 1e300, which converts to it), past every budget; Lua 5.2+ refuses such positions.
    for _, pos in ipairs{ "-2^31", "1e300", "0/0", "0" } do
      local t0 = core.clock.now()
      local ok, inserted, e = guest.run(fb, "local t = { 'a' } local ok, e = pcall(table.insert, t, " .. pos
        .. ", 'x') return ok, e", "=insert", { budget = { time = 1 } })
      assert.is_true(ok, tostring(inserted))
      assert.is_false(inserted, pos)
      assert.truthy(tostring(e):find("position out of bounds", 1, true)
        or tostring(e):find("no integer representation", 1, true), tostring(e))
      assert.is_true(core.clock.now() - t0 < 1, pos .. " took " .. (core.clock.now() - t0) .. " s")
    end
    local ok, a, b = guest.run(fb, "local t = { 'a' } table.insert(t, 1, 'x') table.insert(t, 3, 'y') "
      .. "table.insert(t, 'z') return table.concat(t, ','), #t")
    assert.is_true(ok, tostring(a))
    assert.are.same({ "x,a,y,z", 4 }, { a, b })
  end)

  it("a pattern bomb ends with budget_patterns", function()
    local err = bomb("pattern bomb (issue's)", [[
      local s = ("a"):rep(30)
      return s:find(("a?"):rep(30) .. ("a"):rep(30) .. "b")
    ]])
    assert.are.equal("budget_patterns", err.code)
    err = bomb("pattern bomb in pcall, retried", [[
      local s = ("a"):rep(25)
      while true do pcall(string.match, s, ("a?"):rep(25) .. ("a"):rep(25) .. "b") end
    ]])
    assert.are.equal("budget_patterns", err.code)
    err = bomb("%b over 100 KB of '('", "return (('('):rep(100000)):find('%b()')")
    assert.are.equal("budget_patterns", err.code)
    if string.gfind then -- Lua 5.1's old name for gmatch (seconds here in C; hours at 30)
      err = bomb("pattern bomb through gfind", [[
        local s = ("a"):rep(22)
        for _ in s:gfind(("a?"):rep(22) .. ("a"):rep(22) .. "b") do end
      ]])
      assert.are.equal("budget_patterns", err.code)
    end
    -- Literal searches stay in C and linear (Lua's own plain find is quadratic here).
    local ok, i = guest.run(fb, "local s = ('a'):rep(4e6) return s:find(('a'):rep(2e6) .. 'b', 1, true)",
      "=plain", { budget = BUDGET })
    assert.is_true(ok, tostring(i))
    assert.is_nil(i)
    host_unharmed()
  end)

  it("a memory bomb ends with budget_memory", function()
    local err = bomb("('x'):rep(1.5e9)", "local s = ('x'):rep(1.5e9) return #s")
    assert.are.equal("budget_memory", err.code)
    err = bomb("a growing table", "local t = {} while true do t[#t + 1] = {} end")
    assert.are.equal("budget_memory", err.code)
    err = bomb("growing strings, caught", [[
      local t = {}
      while true do pcall(function() t[#t + 1] = ("x"):rep(1e5) .. #t end) end
    ]])
    assert.are.equal("budget_memory", err.code)
    err = bomb("table.concat of a huge separator", [[
      local t = {} for i = 1, 1000 do t[i] = "" end
      return #table.concat(t, ("x"):rep(1e6))
    ]])
    assert.are.equal("budget_memory", err.code)
    host_unharmed()
  end)

  it("deep recursion ends with budget_memory, or the VM's stack overflow", function()
    -- Lua 5.4's stack lives in the capped heap; LuaJIT's stops at 65,500 slots first.
    local err = bomb("deep recursion", "local function f(n) return 1 + f(n + 1) end return f(1)")
    assert.truthy(err.code == "budget_memory" or (err.code == "script_error" and err.message:find("stack overflow")),
      tostring(err))
    err = bomb("recursion, each level caught", [[
      local function f(n) pcall(f, n + 1) pcall(f, n + 1) end f(1)
    ]], { time = 3 })
    assert.truthy(err.code:match("^budget_"), tostring(err))
    err = bomb("recursion through __index", "local t = setmetatable({}, { __index = function(t, k) "
      .. "return t[k + 1] end }) return t[1]")
    assert.truthy(err.code == "script_error" or err.code:match("^budget_"), tostring(err))
    err = bomb("C recursion through __tostring", [[
      local t = setmetatable({}, { __index = function(t, k) return tostring(setmetatable({}, {
        __tostring = function() return t[k] end })) end })
      return t.x
    ]])
    assert.truthy(err.code == "script_error" or err.code:match("^budget_"), tostring(err))
    host_unharmed()
  end)

  it("10,000 API calls end with budget_calls, after exactly the budget", function()
    local seq = H.last_seq(sb)
    local err = bomb("10,000 API calls", [[
      local fb = ...
      local acct = fb:account("aBcD1")
      local id = acct.invoices:list{ per_page = 1 }[1].id
      for _ = 1, 10000 do acct.invoices:get(id) end
    ]])
    assert.are.equal("budget_calls", err.code)
    local sent = 0
    for _, e in ipairs(H.log(sb, seq)) do
      if e.path:match("^/accounting/") then sent = sent + 1 end
    end
    assert.are.equal(BUDGET.calls, sent)
    err = bomb("each() pages count too", [[
      local fb = ...
      while true do for _ in fb:account("aBcD1").invoices:each{ per_page = 1 } do end end
    ]], { calls = 50 })
    assert.are.equal("budget_calls", err.code)
    host_unharmed()
  end)

  it("printing too much ends with budget_output", function()
    local err = bomb("print forever", "while true do print(('x'):rep(1000)) end")
    assert.are.equal("budget_output", err.code)
    err = bomb("print, caught", "while true do pcall(print, ('x'):rep(1000)) end")
    assert.are.equal("budget_output", err.code)
    host_unharmed()
  end)
end)
