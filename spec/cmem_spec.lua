-- The C core against hostile input that needs no server: every case here is a defect that was found
-- by running the core under ASan/UBSan (`make asan`) and is checked here in a way that fails without
-- sanitizers too. spec/run also runs this file under valgrind.
local core = require "freshbooks.core"

local BUDGET = { memory = 16 * 1024 * 1024, instructions = 1e8, time = 30, patterns = 1e6, output = 1e6 }

-- Runs a guest script to its end, answering every call with `reply` -> kind, payload.
local function run_guest(src, reply)
  local g = assert(core.guest(src, "=cmem", BUDGET))
  local kind, p = g:resume()
  for _ = 1, 100 do
    if kind ~= "call" and kind ~= "print" then break end
    kind, p = g:resume(kind == "call" and (reply or { n = 2, "ok", {} }) or nil)
  end
  g:close()
  return kind, p
end

describe("guest bridge buffers", function()
  -- A call whose arguments are not plain data fails half-written; the script may catch that and go on.
  local HALF = [[
    local fb = ...
    local ok = pcall(fb.find_business, fb, { a = ("x"):rep(100), f = print })
    assert(not ok)
  ]]

  it("a call refused half-way leaves nothing behind for the script's results", function()
    local kind, p = run_guest(HALF .. "return 'done', 42")
    assert.equal("done", kind)
    assert.same({ n = 2, "done", 42 }, p)
  end)

  it("a call refused half-way leaves nothing behind in the script's error message", function()
    local kind, p = run_guest(HALF .. "error('boom', 0)")
    assert.equal("error", kind)
    assert.equal("script_error", p.code)
    assert.equal("boom", p.message)
  end)
end)
