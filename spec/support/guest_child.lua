-- Runs guest scripts in this (child) process, for spec/guest_bounds_spec.lua: a run that never ends or
-- crashes the process fails the spec instead of hanging or killing it.
--   guest_child.lua CASES  CASES: a Lua file returning { {name, source, budget overrides}, ... }
-- Each run's calls to the host are answered with an empty table. One line per run, as it ends:
--   <name>\t<code or "done">\t<seconds>\t<instructions>\t<prints>\t<calls>\t<message>
local vm = require "freshbooks.vm"
local core = require "freshbooks.core"
local guest = require "freshbooks.guest"

local cases = dofile(arg[1])
io.stdout:setvbuf("line")
for _, c in ipairs(cases) do
  local budget = {}
  for k, v in pairs(guest.budget) do budget[k] = v end
  budget.calls = nil
  for k, v in pairs(c[3] or {}) do budget[k] = v end
  local t0 = core.clock.now()
  local g, err = vm.new(c[2], "=" .. c[1], budget)
  local kind, p, prints, calls = "error", err, 0, 0
  if g then
    -- plain Lua 5.1 answers through serve, at once; the other VMs yield every crossing to this loop
    local function serve(k)
      if k == "call" then calls = calls + 1 return { n = 2, "ok", {} } end
      prints = prints + 1
    end
    kind, p = g:resume(nil, serve)
    while kind == "call" or kind == "print" do
      if kind == "print" then prints = prints + 1 else calls = calls + 1 end
      kind, p = g:resume(kind == "call" and { n = 2, "ok", {} } or nil, serve)
    end
  end
  local usage = g and g:usage() or { instructions = 0 }
  if g then g:close() end
  local code = kind == "done" and "done" or p.code
  local message = kind == "done" and "" or tostring(p.message):gsub("[\t\n]", " "):sub(1, 200)
  print(table.concat({ c[1], code, ("%.3f"):format(core.clock.now() - t0), ("%d"):format(usage.instructions),
    prints, calls, message }, "\t"))
end
print("end")
