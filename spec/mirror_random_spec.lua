-- A seeded random sequence of what users do in FreshBooks (creates, updates, archives, deletes soft and
-- hard, payments, renames copied onto other records, time entries, projects, services), days apart and
-- across the end of daylight time (2025-11-02, the hour that repeats), with incremental syncs in
-- between: after every sync the mirror equals the sandbox in every field of every record.
-- FB_SEED=n replays a run; FB_SLOW=1 runs many more rounds.
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local M = require "support.mirror"
local mirror = require "freshbooks.mirror"

describe("freshbooks.mirror under a random sequence of changes", function()
  local sb, fb, dir

  setup(function()
    sb = sandbox.start{ invoices = 120, seed = M.seed % 997 + 1 }
    fb = H.session(sb)
    dir = H.tmpdir()
  end)
  teardown(function()
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  it("equals the sandbox after every incremental sync (seed printed on failure)", function()
    print(("\n# mirror_random_spec: FB_SEED=%d%s"):format(M.seed, M.slow and " FB_SLOW=1" or ""))
    local rnd = M.prng(M.seed)
    local A, B = "aBcD1", 1000001
    local acct, biz = fb:account(A), fb:business(B)
    -- the sandbox's time: 2025-10-31 in the afternoon, a day and a half before daylight time ends
    local now = M.utc(2025, 10, 31, 18, 0)
    M.clock(sb, now)
    local m = assert(mirror.open{ path = dir .. "/random.db" })
    assert(m:sync(fb, { budget = false, businesses = { A } }))
    M.assert_equal(m, fb, { M.businesses[1] }, "first sync")

    local function ids(tbl, where)
      local res = assert(m:query(("SELECT id FROM %s WHERE business_id = %d AND gone_at IS NULL %s"):format(tbl, B,
        where or "")))
      local out = {}
      for i, r in ipairs(res.rows) do out[i] = r[1] end
      return out
    end
    local function any(tbl, where)
      local list = ids(tbl, where)
      if #list == 0 then return nil end
      return list[rnd(1, #list)]
    end
    local function today() return require("freshbooks.date").eastern_day(now) end
    local n = 0
    local function name() n = n + 1 return ("R%d-%d"):format(M.seed, n) end

    local ops = {
      function() -- a new invoice
        local c = any("clients", "AND vis_state = 0")
        return c and acct.invoices:create{ customerid = c, create_date = today(), lines = { { name = name(), qty = 2,
          unit_cost = { amount = ("%d.%02d"):format(rnd(1, 900), rnd(0, 99)), code = "USD" } } } }
      end,
      function()
        local i = any("invoices", "AND vis_state <> 1")
        return i and acct.invoices:update(i, { notes = name() })
      end,
      function() local i = any("invoices", "AND vis_state <> 1") return i and acct.invoices:delete(i) end,
      function() local i = any("invoices", "AND vis_state = 0") return i and acct.invoices:archive(i) end,
      function()
        local i = any("invoices", "AND vis_state = 1")
        return i and acct.invoices:update(i, { vis_state = 0 })
      end,
      function() -- a payment changes its invoice
        local i = any("invoices", "AND vis_state = 0 AND outstanding_cents > 100")
        return i and acct.payments:create{ invoiceid = i, amount = { amount = "1.00", code = "USD" }, date = today() }
      end,
      function() local p = any("payments", "AND vis_state = 0") return p and acct.payments:delete(p) end,
      function() -- a rename every invoice of the client shows
        local c = any("clients", "AND vis_state <> 1")
        return c and acct.clients:update(c, { organization = name() })
      end,
      function() return acct.clients:create{ organization = name(), email = name() .. "@example.com" } end,
      function() local c = any("clients", "AND vis_state = 0") return c and acct.clients:archive(c) end,
      function() local c = any("clients", "AND vis_state <> 1") return c and acct.clients:delete(c) end,
      function()
        return acct.expenses:create{ categoryid = 2001 + rnd(0, 3), staffid = 1, date = today(),
          amount = { amount = "12.50", code = "USD" } }
      end,
      function() local e = any("expenses", "AND vis_state <> 1") return e and acct.expenses:delete(e) end,
      function()
        local i = any("items", "AND vis_state <> 1")
        return i and acct.items:update(i, { description = name() })
      end,
      function() return acct.taxes:create{ name = name(), amount = "3" } end,
      function() local t = any("taxes") return t and acct.taxes:delete(t) end,
      function() -- gone without a trace
        local kinds = { "clients", "invoices", "items", "payments", "expenses" }
        local k = kinds[rnd(1, #kinds)]
        local id = any(k)
        return id and sb:admin("POST", "/_sandbox/hard_delete", { account_id = A, resource = k, id = id })
      end,
      function()
        local e = any("estimates", "AND vis_state <> 1")
        return e and sb:admin("POST", "/_sandbox/change", { account_id = A, resource = "estimates", id = e,
          set = { notes = name() } })
      end,
      function()
        local v = any("bill_vendors", "AND vis_state <> 1")
        return v and sb:admin("POST", "/_sandbox/change", { account_id = A, resource = "bill_vendors", id = v,
          set = { vendor_name = name() } })
      end,
      function()
        local b = any("bills", "AND vis_state = 0 AND outstanding_cents > 100")
        return b and acct.bill_payments:create{ billid = b, amount = { amount = "1.00", code = "USD" },
          paid_date = today() }
      end,
      function() return biz.projects:create{ title = name(), client_id = any("clients", "AND vis_state = 0") } end,
      function() local p = any("projects") return p and biz.projects:update(p, { description = name() }) end,
      function() local p = any("projects") return p and biz.projects:delete(p) end,
      function()
        return biz.time_entries:create{ duration = rnd(1, 20) * 900, is_logged = true,
          started_at = require("freshbooks.date").iso(now - 7200), project_id = any("projects") }
      end,
      function()
        local t = any("time_entries", "AND vis_state = 0")
        return t and biz.time_entries:update(t, { note = name() })
      end,
      function() local t = any("time_entries", "AND vis_state = 0") return t and biz.time_entries:delete(t) end,
      function() -- a service every project lists
        local s = any("services", "AND vis_state = 0")
        return s and sb:admin("POST", "/_sandbox/change", { business_id = B, resource = "services", id = s,
          set = { name = name() } })
      end,
      function() return biz.services:create{ name = name() } end,
    }

    local rounds = M.slow and 40 or 4
    local done, failed = 0, 0
    for round = 1, rounds do
      for _ = 1, rnd(4, 10) do
        now = now + rnd(1, 40) * 60
        M.clock(sb, now)
        local op = rnd(1, #ops)
        local ok, res = pcall(ops[op])
        if ok and res then done = done + 1 else failed = failed + 1 end
      end
      -- hours to a day later, now and then right into the hour that repeats on 2025-11-02
      now = now + rnd(1, 24) * 3600
      if round == 3 then now = math.max(now, M.utc(2025, 11, 2, 5, 10)) end
      M.clock(sb, now)
      assert(m:sync(fb, { budget = false, businesses = { A }, reconcile = true }))
      M.assert_equal(m, fb, { M.businesses[1] }, ("round %d of %d (%s UTC)"):format(round, rounds,
        require("freshbooks.date").iso(now)))
    end
    print(("# %d rounds, %d operations done, %d refused by the sandbox or without a target"):format(rounds, done,
      failed))
    assert.is_true(done > rounds * 2, done .. " operations done, " .. failed .. " refused")
    m:close()
    M.clock(sb, os.time())
  end)
end)
