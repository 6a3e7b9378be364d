-- Every guest run ends within its budgets, whatever it does, and never harms the host's process. The
-- attacks an outside tester makes on the budgets' accounting: work spread over coroutines (budgets are
-- the run's, not a thread's, and a stop ends every thread), the host's C stack (no budget setting may
-- crash it), library functions whose C loops no hook sees, and output that costs nothing. The runs are
-- in child processes (spec/support/guest_child.lua, under `timeout`): a regression that runs forever
-- or crashes fails here instead of hanging or killing busted. Figures (seconds past the deadline, per
-- attack) are printed; docs/guest.md quotes them.
local H = require "support.fbtest"


describe("guest runs end within their bounds", function()
  local dir, figures
  setup(function()
    dir = H.tmpdir()
    figures = {}
  end)
  teardown(function()
    print(("\nguest bounds under %s (seconds: whole run; past: beyond the time budget):"):format(H.lua))
    for _, f in ipairs(figures) do print("  " .. f) end
    H.rmdir(dir)
  end)

  -- Runs the cases ({name, source, budget}) in a child (its C stack `stack` KiB when given) -> name -> {code,
  -- seconds, instructions, prints, calls, message}, and the child's whole output.
  local function children(cases, stack, limit)
    local file = dir .. "/cases.lua"
    local f = assert(io.open(file, "w"))
    f:write("return {\n")
    for _, c in ipairs(cases) do
      local b = {}
      for k, v in pairs(c[3] or {}) do b[#b + 1] = ("%s = %.17g"):format(k, v) end
      f:write(("{ %q, %q, { %s } },\n"):format(c[1], c[2], table.concat(b, ", ")))
    end
    f:write("}\n")
    f:close()
    local cmd = ("%stimeout %d %s spec/support/guest_child.lua %s 2>&1; echo \"exit=$?\""):format(
      stack and ("ulimit -s %d; "):format(stack) or "", limit or 60, H.lua, file)
    local p = io.popen("sh -c '" .. cmd:gsub("'", "'\\''") .. "'")
    local out = p:read("*a")
    p:close()
    local runs = {}
    for line in out:gmatch("[^\n]+") do
      local name, code, secs, instr, prints, calls, msg = line:match("^(.-)\t(.-)\t(.-)\t(.-)\t(.-)\t(.-)\t(.*)$")
      if name then
        runs[name] = { code = code, seconds = tonumber(secs), instructions = tonumber(instr), prints = tonumber(prints),
          calls = tonumber(calls), message = msg }
      end
    end
    assert.truthy(out:find("\nend\nexit=0\n", 1, true) or out:find("^end\nexit=0\n"),
      "the child did not finish every run (hung, or crashed):\n" .. out)
    for _, c in ipairs(cases) do assert.truthy(runs[c[1]], c[1] .. " did not report:\n" .. out) end
    return runs, out
  end

  local function record(name, r, budget_time)
    figures[#figures + 1] = ("%-44s %-16s %7.3f s  past %6.3f  instructions %d"):format(name, r.code, r.seconds,
      r.seconds - (budget_time or 0), r.instructions)
  end

  describe("a stopped run stays stopped, across its coroutines", function()
    -- Six levels of coroutines, each resuming fresh ones that run fewer instructions than the hook's
    -- period: counted per thread, none of them ever reached it, and a stop ended only the innermost.
    local NEST = [[
      local function nest(d)
        if d == 0 then local x = 0 for i = 1, 900 do x = x + 1 end return end
        while true do coroutine.resume(coroutine.create(function() nest(d - 1) end)) end
      end
      nest(6)
    ]]

    it("ends work spread over fresh coroutines at the run's budgets", function()
      local runs = children({
        { "nested fresh coroutines (instructions)", NEST, { instructions = 1e6, time = 30 } },
        { "nested fresh coroutines (time)", NEST, { instructions = 1e15, time = 0.5 } },
        { "a pool resumed in turn", [[
          local pool = {}
          for i = 1, 500 do pool[i] = coroutine.create(function()
            while true do for _ = 1, 900 do end coroutine.yield() end end) end
          while true do for _, co in ipairs(pool) do coroutine.resume(co) end end
        ]], { instructions = 1e6, time = 30 } },
        { "wrapped coroutines in pcall, nested", [[
          local function f(d)
            if d == 0 then while true do end end
            local w = coroutine.wrap(function() while true do pcall(f, d - 1) end end)
            while true do pcall(w) end
          end
          f(5)
        ]], { instructions = 1e6, time = 30 } },
      }, nil, 20)
      local r = runs["nested fresh coroutines (instructions)"]
      assert.are.equal("budget_cpu", r.code, r.message)
      assert.is_true(r.instructions <= 1e6 + 2000, "instructions " .. r.instructions)
      assert.is_true(r.seconds < 3, r.seconds)
      record("nested fresh coroutines (instructions)", r)
      r = runs["nested fresh coroutines (time)"]
      assert.are.equal("budget_time", r.code, r.message)
      assert.is_true(r.seconds < 0.5 + 0.5, r.seconds)
      record("nested fresh coroutines (time)", r, 0.5)
      for _, name in ipairs{ "a pool resumed in turn", "wrapped coroutines in pcall, nested" } do
        r = runs[name]
        assert.are.equal("budget_cpu", r.code, name .. ": " .. r.message)
        assert.is_true(r.seconds < 3, name .. ": " .. r.seconds)
        record(name, r)
      end
    end)

    it("a budget spent inside a coroutine ends every resumer, whatever they catch", function()
      local runs = children({
        { "memory, inside nested coroutines, retried", [[
          local keep = {}
          local function grow() while true do keep[#keep + 1] = ("x"):rep(1e4) .. #keep end end
          while true do
            pcall(coroutine.resume, coroutine.create(function()
              while true do coroutine.resume(coroutine.create(grow)) end end))
          end
        ]], { memory = 8e6 } },
        { "output, inside a coroutine, retried", [[
          while true do pcall(coroutine.resume, coroutine.create(function()
            while true do print(("x"):rep(100)) end end)) end
        ]], { output = 1e5 } },
        { "patterns, inside a coroutine, retried", [[
          local s = ("a"):rep(25)
          while true do coroutine.resume(coroutine.create(function()
            while true do pcall(string.match, s, ("a?"):rep(25) .. ("a"):rep(25) .. "b") end end)) end
        ]], { patterns = 2e5 } },
        { "API calls after a stop in a coroutine", [[
          local fb = ...
          coroutine.resume(coroutine.create(function() while true do end end))
          while true do fb:me() end
        ]], { instructions = 1e6 } },
      }, nil, 20)
      for name, code in pairs{ ["memory, inside nested coroutines, retried"] = "budget_memory",
          ["output, inside a coroutine, retried"] = "budget_output",
          ["patterns, inside a coroutine, retried"] = "budget_patterns",
          ["API calls after a stop in a coroutine"] = "budget_cpu" } do
        local r = runs[name]
        assert.are.equal(code, r.code, name .. ": " .. r.message)
        assert.is_true(r.seconds < 3, name .. ": " .. r.seconds)
        record(name, r)
      end
      assert.are.equal(0, runs["API calls after a stop in a coroutine"].calls)
    end)
  end)

  describe("no budget setting can crash the host's C stack", function()
    -- Under a 1 MiB C stack, with a 1 GiB memory budget: C recursion through coroutines, through sort
    -- comparators, through metamethods called from C, and LuaJIT's tail-call loops.
    local BIG = { memory = 1024 * 1024 * 1024, instructions = 1e9, time = 20 }
    it("ends deep C recursion with an error, never a crash", function()
      local cases = {
        { "nested resumes", [[
          local depth = 0
          local function dive() depth = depth + 1 coroutine.resume(coroutine.create(dive)) end
          dive()
          return depth
        ]], BIG },
        { "resumes inside sort comparators", [[
          local function dive(n)
            if n > 0 then table.sort({ 1, 2 }, function(a, b) dive(n - 1) return a < b end) return end
            coroutine.resume(coroutine.create(function() dive(3000) end))
          end
          dive(3000)
        ]], BIG },
        { "table.sort as its own comparator", [[
          local t = {} t[1] = table.sort t[2] = t
          table.sort(t, table.sort)
        ]], BIG },
        { "os.time as its own __index", [[
          return os.time(setmetatable({}, { __index = os.time }))
        ]], BIG },
        { "string.format of a __tostring that formats", [[
          local t = setmetatable({}, { __tostring = function(s) return string.format("%s", s) end })
          return string.format("%s", t)
        ]], BIG },
        { "coroutine.wrap inside coroutine.wrap", [[
          local function f() return coroutine.wrap(f)() end
          return f()
        ]], BIG },
        { "tostring as its own __tostring", [[
          return tostring(setmetatable({}, { __tostring = tostring }))
        ]], { memory = 1024 * 1024 * 1024, instructions = 1e8, time = 5 } },
        { "a table called through tostring", [[
          local mt = {}
          local t = setmetatable({}, mt)
          mt.__tostring, mt.__call = t, tostring
          return tostring(t)
        ]], { memory = 1024 * 1024 * 1024, instructions = 1e8, time = 5 } },
      }
      local runs = children(cases, 1024, 60)
      for _, c in ipairs(cases) do
        local r = runs[c[1]]
        assert.truthy(r.code == "script_error" or r.code == "done" or r.code:match("^budget_"), c[1] .. ": " .. r.code)
        assert.is_true(r.seconds < 10, c[1] .. ": " .. r.seconds)
        record(c[1] .. " (1 MiB stack)", r)
      end
    end)
  end)

  describe("library functions whose C loops the hook cannot see", function()
    local LOOPS = {
      { "sort of 1e5 references to a 6 MB string",
        'local s = ("x"):rep(6e6) local t = {} for i = 1, 1e5 do t[i] = s end table.sort(t)' },
      { "compare two 8 MB strings", 'local s = ("x"):rep(8e6) local t = s:sub(1, -2) .. "y" while s < t do end' },
      { "s < s over 12 MB", 'local s = ("x"):rep(12e6) while not (s < s) do end' },
      { "next over 1e6 empty slots", 'local t = {} for i = 1, 1e6 do t[i] = true end '
        .. 'for i = 1, 1e6 - 1 do t[i] = nil end while next(t) do end' },
      { "unpack of 6e3", 'local t = {} local u = table.unpack or unpack '
        .. 'while true do local _ = select("#", u(t, 1, 6e3)) end' },
      { "concat of 1e6 empty strings", 'local t = {} for i = 1, 1e6 do t[i] = "" end '
        .. 'while true do local _ = table.concat(t) end' },
      { "insert at 1 of 1e6", 'local t = {} for i = 1, 1e6 do t[i] = i end while true do table.insert(t, 1, 0) '
        .. 'table.remove(t, 1) end' },
      { "string.byte of 6e3", 'local s = ("x"):rep(6e3) while true do local _ = select("#", s:byte(1, 6e3)) end' },
      { "tonumber of 8 MB of spaces", 'local s = (" "):rep(8e6) while true do local _ = tonumber(s) end' },
      { "rawequal of two 8 MB strings", 'local s = ("x"):rep(8e6) local u = s:sub(1, -2) .. "x" '
        .. 'while rawequal(s, u) do end' },
      { "plain find in 8 MB", 'local s = ("x"):rep(8e6) while true do local _ = s:find("y", 1, true) end' },
      { "upper of 8 MB", 'local s = ("x"):rep(8e6) while true do local _ = s:upper() end' },
      { "rep of 8 MB", 'while true do local _ = ("xy"):rep(4e6) end' },
      { "format %s of 8 MB", 'local s = ("x"):rep(8e6) while true do local _ = ("%s"):format(s) end' },
      { "concatenation of 4 MB strings", 'local s = ("x"):rep(4e6) while true do local _ = s .. s end' },
    }
    if utf8 then
      LOOPS[#LOOPS + 1] = { "utf8.len of 8 MB", 'local s = ("x"):rep(8e6) while true do local _ = utf8.len(s) end' }
    end

    it("end at the deadline, soon after it", function()
      local cases = {}
      for _, l in ipairs(LOOPS) do cases[#cases + 1] = { l[1], l[2], { instructions = 1e15, time = 0.3 } } end
      local runs = children(cases, nil, 120)
      for _, l in ipairs(LOOPS) do
        local r = runs[l[1]]
        -- (or the memory budget first: Lua 5.3's buffers double)
        assert.truthy(r.code == "budget_time" or r.code == "budget_memory", l[1] .. ": " .. r.code .. " " .. r.message)
        assert.is_true(r.seconds < 0.3 + 0.5, l[1] .. ": " .. r.seconds .. " s")
        record(l[1], r, 0.3)
      end
    end)

    it("are charged to the instruction budget", function()
      -- (sort's comparisons are instructions of the VM, each as long as its strings: the deadline, above)
      local charged = { "unpack of 6e3", "concat of 1e6 empty strings",
        "insert at 1 of 1e6", "string.byte of 6e3", "tonumber of 8 MB of spaces", "rawequal of two 8 MB strings",
        "plain find in 8 MB", utf8 and "utf8.len of 8 MB" or nil }
      local cases = {}
      for _, l in ipairs(LOOPS) do
        for _, name in ipairs(charged) do
          if l[1] == name then cases[#cases + 1] = { l[1], l[2], { instructions = 2e7, time = 60 } } end
        end
      end
      local runs = children(cases, nil, 60)
      for _, name in ipairs(charged) do
        local r = runs[name]
        assert.are.equal("budget_cpu", r.code, name .. ": " .. r.message)
        assert.is_true(r.seconds < 10, name .. ": " .. r.seconds .. " s")
      end
    end)
  end)

  describe("every output costs", function()
    it("an empty print costs its line: the output budget bounds the host's lines", function()
      local runs = children({
        { "print()", "for _ = 1, 1e7 do print() end", { output = 1000 } },
        { "print('')", "for _ = 1, 1e7 do print('') end", { output = 1000 } },
        { "print(nil)", "for _ = 1, 1e7 do print(nil) end", { output = 1000 } },
        { "pcall(print)", "for _ = 1, 1e7 do pcall(print) end", { output = 1000 } },
      }, nil, 30)
      for name, n in pairs{ ["print()"] = 1000, ["print('')"] = 1000, ["print(nil)"] = 250, ["pcall(print)"] = 1000 } do
        local r = runs[name]
        assert.are.equal("budget_output", r.code, name)
        assert.are.equal(n, r.prints, name)
      end
    end)
  end)
end)
