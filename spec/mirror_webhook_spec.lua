-- Webhooks keep a mirror current: every verified delivery re-reads exactly its object (or marks it gone),
-- so deliveries that come late, twice, or in any order leave the mirror equal to the sandbox without a
-- sync; a re-read that commits after a newer one never takes the row back.
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local M = require "support.mirror"
local mirror = require "freshbooks.mirror"
local webhook = require "freshbooks.webhook"
local core = require "freshbooks.core"

describe("freshbooks.mirror fed by webhooks", function()
  local sb, fb, dir, m, verifiers
  local A = "aBcD1"

  local function inbox() return sb:admin("GET", "/_sandbox/inbox").inbox end
  local function wait(n, seconds)
    local deadline = core.clock.now() + (seconds or 10)
    while #inbox() < n and core.clock.now() < deadline do core.clock.sleep(0.02) end
    return inbox()
  end

  setup(function()
    sb = sandbox.start{ invoices = 150, seed = 4 }
    fb = H.session(sb)
    dir = H.tmpdir()
    verifiers = {}
    local callbacks = fb:account(A).callbacks
    for _, event in ipairs { "invoice", "client", "payment", "item", "expense", "tax", "estimate" } do
      sb:admin("DELETE", "/_sandbox/inbox")
      local cb = assert(callbacks:create{ event = event, uri = sb.url .. "/_sandbox/inbox" })
      local v = wait(1)[1].body:match("verifier=(%w+)")
      assert(callbacks:verify(cb.callbackid, v))
      verifiers[#verifiers + 1] = v
    end
    sb:admin("DELETE", "/_sandbox/inbox")
    m = assert(mirror.open{ path = dir .. "/hooks.db" })
    assert(m:sync(fb, { budget = false, businesses = { A } }))
  end)
  teardown(function()
    if m then m:close() end
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  -- Verified deliveries, in the order they arrived, applied to the mirror; -> how many were refused.
  local function feed(list)
    local refused = 0
    for _, d in ipairs(list) do
      local sig = d.headers["x-freshbooks-hmac-sha256"]
      local ok = false
      for _, v in ipairs(verifiers) do ok = ok or webhook.verify(v, d.body, sig) end
      if ok then
        assert(m:apply(fb, webhook.parse(d.body)))
      else
        refused = refused + 1
      end
    end
    return refused
  end

  local function changes(rnd)
    local acct = fb:account(A)
    local n = 0
    local function did(x) if x then n = n + 1 end end
    for _ = 1, 4 do
      did(acct.invoices:update(rnd(1, 150), { notes = "hook " .. rnd(1, 1e6) }))
      did(acct.clients:update(10000 + rnd(1, 50), { organization = "Hooked " .. rnd(1, 1e6) }))
    end
    did(acct.invoices:delete(rnd(1, 150)))
    did(acct.items:archive(rnd(1, 7)))
    did(acct.invoices:create{ customerid = 10001, create_date = "2025-06-01", lines = { { name = "Hook", qty = 1,
      unit_cost = { amount = "9.00", code = "USD" } } } })
    local inv = acct.invoices:get(rnd(1, 100))
    if inv and inv.vis_state == 0 then
      did(acct.payments:create{ invoiceid = inv.id, amount = { amount = "2.00", code = inv.amount.code },
        date = "2025-06-02" })
    end
    local tax = acct.taxes:create{ name = "Hooked", amount = "1" }
    did(tax and acct.taxes:delete(tax.id)) -- created and gone: its create event arrives for nothing
    did(sb:admin("POST", "/_sandbox/hard_delete", { account_id = A, resource = "expenses", id = rnd(1, 12) }))
    did(sb:admin("POST", "/_sandbox/change", { account_id = A, resource = "estimates", id = rnd(1, 5),
      set = { notes = "hooked" } }))
    return n
  end

  it("equals the sandbox after deliveries held and released out of order, each sent twice", function()
    local rnd = M.prng(M.seed)
    print(("\n# mirror_webhook_spec: FB_SEED=%d"):format(M.seed))
    for _, order in ipairs { "reverse", "shuffle" } do
      sb:admin("DELETE", "/_sandbox/inbox")
      sb:admin("POST", "/_sandbox/webhooks", { hold = true, twice = true })
      assert.is_true(changes(rnd) >= 10)
      local held = sb:admin("GET", "/_sandbox/webhooks").held
      assert.is_true(held >= 20, held)
      sb:admin("POST", "/_sandbox/webhooks", { release = order })
      local got = wait(held)
      assert.equals(held, #got)
      assert.equals(0, feed(got))
      M.assert_equal(m, fb, { M.businesses[1] }, "after deliveries released " .. order)
    end
    sb:admin("POST", "/_sandbox/webhooks", {})
  end)

  it("equals the sandbox after late deliveries, whatever changed in between; forged ones are refused", function()
    local rnd = M.prng(M.seed + 1)
    finally(function() sb:admin("POST", "/_sandbox/webhooks", {}) end)
    sb:admin("DELETE", "/_sandbox/inbox")
    -- held, not timed: on a loaded machine a timer's delay may pass before the second changes are made
    sb:admin("POST", "/_sandbox/webhooks", { hold = true })
    local before = #inbox()
    assert.is_true(changes(rnd) >= 10)
    -- the same records change again before the first deliveries arrive
    changes(M.prng(M.seed + 1))
    assert.equals(before, #inbox()) -- nothing yet: they are late
    local held = sb:admin("GET", "/_sandbox/webhooks").held
    assert.is_true(held >= 20, held)
    sb:admin("POST", "/_sandbox/webhooks", { release = "sent" })
    local got = wait(held)
    assert.equals(held, #got)
    local forged = { path = "/", headers = { ["x-freshbooks-hmac-sha256"] = "AAAA" },
      body = "name=invoice.delete&object_id=1&account_id=" .. A }
    got[#got + 1] = forged
    assert.equals(1, feed(got))
    M.assert_equal(m, fb, { M.businesses[1] }, "after late deliveries")
  end)

  -- FreshBooks' stamps have one-second granularity: a record changed twice within a second, read between
  -- the changes, keeps its stamp while its content moves on.
  it("writes a change made within the second of the version it read (equal stamps, other content)", function()
    -- (later than any change the other cases made: an earlier stamp would be an older version)
    local T = os.time() + 600
    local function notes(id)
      return assert(m:query("SELECT json_extract(record, '$.notes') FROM invoices WHERE business_id = 1000001"
        .. " AND id = ?", { id })).rows[1][1]
    end
    local function change(id, text)
      local res = sb:admin("POST", "/_sandbox/change", { account_id = A, resource = "invoices", id = id, at = T,
        set = { notes = text } })
      assert.equals(T, res.updated_t)
    end
    -- through webhook events
    change(11, "first of the second")
    assert(m:apply(fb, { name = "invoice.update", object_id = "11", account_id = A }))
    assert.equals("first of the second", notes(11))
    change(11, "second of the second")
    local out = assert(m:apply(fb, { name = "invoice.update", object_id = "11", account_id = A }))
    assert.equals(1, out.written)
    assert.equals("second of the second", notes(11))
    -- the same record again: nothing to write
    assert.equals(0, assert(m:apply(fb, { name = "invoice.update", object_id = "11", account_id = A })).written)
    -- through incremental syncs (their boundary day is read again)
    change(12, "first of the second")
    assert(m:sync(fb, { budget = false, businesses = { A }, resources = { "invoices" }, reconcile = false }))
    assert.equals("first of the second", notes(12))
    change(12, "second of the second")
    local s = assert(m:sync(fb, { budget = false, businesses = { A }, resources = { "invoices" }, reconcile = false }))
    assert.equals(1, s.resources[1].written)
    assert.equals("second of the second", notes(12))
    M.assert_equal(m, fb, { M.businesses[1] }, "after changes within one second")
  end)

  it("never lets an older version replace a newer row (a re-read that commits late)", function()
    local schema = require "freshbooks.mirror.schema"
    local r = require("freshbooks.mirror.resources").by_name.invoices
    local acct = fb:account(A)
    local old = assert(acct.invoices:get(7))
    assert(acct.invoices:update(7, { notes = "newer" }))
    sb:admin("POST", "/_sandbox/clock", { advance = 3600 })
    assert(acct.invoices:update(7, { notes = "newest" }))
    assert(m:apply(fb, { name = "invoice.update", object_id = "7", account_id = A }))
    -- the read from before both changes arrives now
    local p, n = schema.params(r, 1000001, old, 0, nil, "2030-01-01T00:00:00Z")
    assert.equals(0, assert(m.backend:run(schema.upsert_sql(r, m.backend.dialect), (table.unpack or unpack)(p, 1, n))))
    assert.same({ "newest" }, assert(m:query("SELECT json_extract(record, '$.notes') FROM invoices WHERE"
      .. " business_id = 1000001 AND id = 7")).rows[1])
    sb:admin("POST", "/_sandbox/clock", { offset = 0 })
  end)
end)
