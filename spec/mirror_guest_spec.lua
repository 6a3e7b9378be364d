-- Guest scripts query the host's mirror read-only: `mirror:query(sql, params)`, each query one call of the
-- run's budget, stopped by the run's time, bounded in what it may answer; no write, no ATTACH; without
-- a mirror from the host there is nothing to query.
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local mirror = require "freshbooks.mirror"
local guest = require "freshbooks.guest"
local core = require "freshbooks.core"

describe("guest scripts over a mirror", function()
  local sb, fb, dir, m

  setup(function()
    sb = sandbox.start{ invoices = 120, seed = 2 }
    fb = H.session(sb)
    dir = H.tmpdir()
    local w = assert(mirror.open{ path = dir .. "/guest.db" })
    assert(w:sync(fb, { budget = false, businesses = { "aBcD1" } }))
    w:close()
    m = assert(mirror.open{ path = dir .. "/guest.db", readonly = true })
  end)
  teardown(function()
    if m then m:close() end
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  it("answers read-only SQL with parameters, as plain data", function()
    local want = assert(m:query("SELECT count(*), sum(outstanding_cents) FROM invoices WHERE business_id = 1000001"
      .. " AND vis_state <> 1")).rows[1]
    local ok, n, cents, cols = guest.run(fb, [[
      local res, err = mirror:query("SELECT count(*) AS n, sum(outstanding_cents) FROM invoices"
        .. " WHERE business_id = ? AND vis_state <> ?", { 1000001, 1 })
      assert(res, err and err.code)
      return res.rows[1][1], res.rows[1][2], table.concat(res.columns, ",")
    ]], "=report.lua", { mirror = m })
    assert.is_true(ok, tostring(n))
    assert.same({ want[1], want[2], "n,sum(outstanding_cents)" }, { n, cents, cols })
  end)

  it("refuses writes and ATTACH, and reports SQL errors to the script", function()
    local ok, a, b, c = guest.run(fb, [[
      local _, e1 = mirror.query("DELETE FROM invoices")
      local _, e2 = mirror:query("ATTACH DATABASE 'x.db' AS x")
      local _, e3 = mirror:query("SELEC 1")
      return e1.code, e2.code, e3.code
    ]], "=evil.lua", { mirror = m })
    assert.is_true(ok, tostring(a))
    assert.same({ "read_only", "read_only", "sqlite" }, { a, b, c })
    assert.same({ 120 }, assert(m:query("SELECT count(*) FROM invoices WHERE vis_state <> 1")).rows[1])
  end)

  it("stops a query at the run's time budget, counts queries as calls, bounds the answer", function()
    local t = core.clock.now()
    local ok, code = guest.run(fb, [[
      local _, err = mirror:query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
        .. " SELECT count(*) FROM c")
      return err and err.code
    ]], "=slow.lua", { mirror = m, budget = { time = 1 } })
    assert.is_true(core.clock.now() - t < 10)
    assert.is_true(ok == nil and code.code == "budget_time" or code == "sqlite_deadline", tostring(code))
    local none, err = guest.run(fb, "for i = 1, 10 do mirror:query('SELECT 1') end return 'all'", "=many.lua",
      { mirror = m, budget = { calls = 3 } })
    assert.is_nil(none)
    assert.equals("budget_calls", err.code)
    local ok2, c2 = guest.run(fb, [[
      local _, e = mirror:query("SELECT record FROM invoices")
      return e and e.code
    ]], "=big.lua", { mirror = m, budget = { memory = 200000 } })
    assert.is_true(ok2, tostring(c2))
    assert.equals("too_large", c2)
  end)

  it("has nothing to query when the host gives no mirror", function()
    local none, err = guest.run(fb, "return mirror:query('SELECT 1')", "=nomirror.lua")
    assert.is_nil(none)
    assert.equals("script_error", err.code)
    assert.truthy(err.message:find("no mirror", 1, true), err.message)
    assert.has_error(function() guest.run(fb, "return 1", "=x", { mirror = {} }) end)
  end)
end)
