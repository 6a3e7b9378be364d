-- freshbooks.mirror against a sandbox and real SQLite files: the first sync equals FreshBooks exactly,
-- typed columns are exact (money, dates, UTC stamps across DST), an incremental sync costs what
-- changed, deletes of every kind arrive, the schema is versioned and migrated forward, webhook events
-- re-read exactly their object, budgets and 429s are honoured, one sync at a time.
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local M = require "support.mirror"
local mirror = require "freshbooks.mirror"
local core = require "freshbooks.core"

describe("freshbooks.mirror", function()
  local sb, fb, dir, m
  local A = "aBcD1"

  setup(function()
    sb = sandbox.start{ invoices = 250, seed = 3 }
    fb = H.session(sb)
    dir = H.tmpdir()
    m = assert(mirror.open{ path = dir .. "/mirror.db" })
    assert(m:sync(fb, { budget = false }))
  end)
  teardown(function()
    if m then m:close() end
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  local function one(sql, ...)
    local res = assert(m:query(sql, { ... }))
    return res.rows[1]
  end

  it("holds after the first sync exactly what FreshBooks holds: every field of every record", function()
    M.assert_equal(m, fb, M.businesses, "first sync")
    -- and the comparison itself sees one changed field, one extra and one missing row
    local other = assert(mirror.open{ path = dir .. "/copy.db" })
    assert(other:sync(fb, { budget = false, businesses = { A }, resources = { "clients", "items" } }))
    local b = other.backend
    assert(b:run("UPDATE clients SET record = json_set(record, '$.organization', 'X') WHERE id = 10002"))
    assert(b:run("DELETE FROM clients WHERE id = 10003"))
    assert(b:run("INSERT INTO items (business_id, id, synced_at, record) VALUES (1000001, 999, 'x', '{\"id\":999}')"))
    local truth = M.truth(fb, { M.businesses[1] })
    local diffs = table.concat(M.diff(other, truth), "\n")
    assert.truthy(diffs:find("clients/10002.organization: X vs", 1, true), diffs)
    assert.truthy(diffs:find("clients/10003: missing", 1, true), diffs)
    assert.truthy(diffs:find("items/999: in the mirror, not in FreshBooks", 1, true), diffs)
    other:close()
  end)

  it("keeps typed columns exact: ids, money in cents, dates, UTC stamps across the DST change", function()
    -- 23:30 New York time on 2025-03-09 (after the change: EDT) and on 2025-03-07 (EST)
    sb:admin("POST", "/_sandbox/change", { account_id = A, resource = "invoices", id = 11,
      at = M.utc(2025, 3, 10, 3, 30), set = { notes = "after" } })
    sb:admin("POST", "/_sandbox/change", { account_id = A, resource = "invoices", id = 12,
      at = M.utc(2025, 3, 8, 4, 30), set = { notes = "before" } })
    M.clock(sb, M.utc(2025, 3, 11, 12))
    finally(function() M.clock(sb, os.time()) end)
    assert(m:sync(fb, { budget = false, resources = { "invoices" }, reconcile = "full" }))
    local r = one("SELECT updated, json_extract(record, '$.updated'), outstanding, outstanding_cents, amount_cents,"
      .. " create_date, due_date, customerid, typeof(customerid) FROM invoices WHERE business_id = 1000001 AND id = 11")
    assert.same({ "2025-03-10T03:30:00Z", "2025-03-09 23:30:00" }, { r[1], r[2] })
    local inv = assert(fb:account(A).invoices:get(11))
    assert.equals(inv.outstanding.amount, r[3])
    local want = M.cents(inv.outstanding.amount)
    assert.equals(want, r[4])
    assert.equals(M.cents(inv.amount.amount), r[5])
    assert.same({ inv.create_date, inv.due_date, inv.customerid, "integer" }, { r[6], r[7], r[8], r[9] })
    r = one("SELECT updated, json_extract(record, '$.updated') FROM invoices WHERE business_id = 1000001 AND id = 12")
    assert.same({ "2025-03-08T04:30:00Z", "2025-03-07 23:30:00" }, r)
    -- bills answer UTC, projects ISO 8601 with Z: the same column, the same form
    r = one("SELECT updated, json_extract(record, '$.updated_at') FROM bills WHERE business_id = 1000001 LIMIT 1")
    assert.equals(r[2]:gsub(" ", "T") .. "Z", r[1])
    r = one("SELECT updated, json_extract(record, '$.updated_at') FROM projects WHERE business_id = 1000001 LIMIT 1")
    assert.equals(r[2]:gsub("Z$", "") .. "Z", r[1])
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", r[1])
    -- money sums are exact integers, never floats
    r = one("SELECT sum(outstanding_cents), typeof(sum(outstanding_cents)) FROM invoices WHERE vis_state <> 1")
    assert.equals("integer", r[2])
  end)

  it("syncs incrementally: only what changed is fetched and written, a day re-read, deletes included", function()
    assert(m:sync(fb, { budget = false })) -- settle
    local since = H.last_seq(sb)
    local acct = fb:account(A)
    assert(acct.invoices:update(21, { notes = "changed" }))
    assert(acct.invoices:delete(22))
    assert(acct.clients:archive(10004))
    assert(acct.items:create{ name = "New thing", unit_cost = { amount = "5.00", code = "USD" } })
    local before = H.last_seq(sb)
    local summary = assert(m:sync(fb, { budget = false, businesses = { A } }))
    local n, by = M.requests(sb, before)
    -- invoices: the live list and the deleted list of the boundary day, one page each
    assert.equals(2, by["/accounting/account/{account_id}/invoices/invoices"], require("cjson").encode(by))
    local written = {}
    for _, s in ipairs(summary.resources) do written[s.resource] = s.written end
    assert.same({ 2, 1, 1 }, { written.invoices, written.clients, written.items })
    -- cost: the identity, two lists per resource with soft deletes, one per other list
    assert.is_true(n <= 60, n)
    assert.equals(n, summary.requests)
    assert.same({ 1 }, one("SELECT vis_state FROM invoices WHERE business_id = 1000001 AND id = 22"))
    assert.same({ 2 }, one("SELECT vis_state FROM clients WHERE business_id = 1000001 AND id = 10004"))
    assert.same({ "changed" }, one("SELECT json_extract(record, '$.notes') FROM invoices WHERE business_id = 1000001"
      .. " AND id = 21"))
    M.assert_equal(m, fb, M.businesses, "after the incremental sync")
    assert.is_true(since < before)
  end)

  it("finds records gone without a trace (hard deletes) by reconciliation, and deleted time entries", function()
    sb:admin("POST", "/_sandbox/hard_delete", { account_id = A, resource = "invoices", id = 30 })
    sb:admin("POST", "/_sandbox/hard_delete", { account_id = A, resource = "clients", id = 10020 })
    local tax = assert(fb:account(A).taxes:create{ name = "PST", amount = "7" })
    assert(m:sync(fb, { budget = false, businesses = { A } }))
    assert(fb:account(A).taxes:delete(tax.id)) -- HTTP DELETE: gone from every list
    assert(fb:business(1000001).projects:delete(502))
    assert(fb:business(1000001).time_entries:delete(8003))
    -- without reconciliation the incremental pass cannot see what left no trace
    assert(m:sync(fb, { budget = false, businesses = { A }, reconcile = false }))
    assert.same({ 0 }, one("SELECT count(*) FROM invoices WHERE id = 30 AND gone_at IS NOT NULL"))
    assert.same({ 1 }, one("SELECT vis_state FROM time_entries WHERE business_id = 1000001 AND id = 8003"))
    local s = assert(m:sync(fb, { budget = false, businesses = { A }, reconcile = true }))
    assert.same({ 1, 1 }, one("SELECT vis_state, gone_at IS NOT NULL FROM invoices WHERE business_id = 1000001"
      .. " AND id = 30"))
    assert.same({ 1, 1 }, one("SELECT vis_state, gone_at IS NOT NULL FROM clients WHERE id = 10020"))
    assert.same({ 1, 1 }, one("SELECT vis_state, gone_at IS NOT NULL FROM taxes WHERE id = ?", tax.id))
    assert.same({ 1, 1 }, one("SELECT vis_state, gone_at IS NOT NULL FROM projects WHERE id = 502"))
    local gone = 0
    for _, r in ipairs(s.resources) do gone = gone + r.gone end
    assert.equals(4, gone)
    M.assert_equal(m, fb, M.businesses, "after hard deletes")
  end)

  it("re-reads exactly the object of a webhook event, or marks it gone; a payment's invoice too", function()
    assert(m:sync(fb, { budget = false }))
    local acct = fb:account(A)
    local inv = assert(acct.invoices:get(40))
    local pay = assert(acct.payments:create{ invoiceid = 40, amount = { amount = "1.00", code = inv.amount.code },
      date = "2025-06-01" })
    local since = H.last_seq(sb)
    local out = assert(m:apply(fb, { name = "payment.create", object_id = tostring(pay.id), account_id = A,
      business_id = "1000001" }))
    local n, by = M.requests(sb, since)
    assert.equals(2, n) -- the payment, then its invoice, each by its id filter (their list shape)
    assert.equals(1, by["/accounting/account/{account_id}/payments/payments"])
    assert.equals(1, by["/accounting/account/{account_id}/invoices/invoices"])
    assert.equals("payments", out.resource)
    local paid = assert(acct.invoices:get(40)).paid.amount
    assert.same({ paid }, one("SELECT paid FROM invoices WHERE business_id = 1000001 AND id = 40"))
    -- the event's form fields as webhook.parse gives them work as well
    assert(acct.clients:update(10008, { organization = "Renamed Ltd." }))
    assert(m:apply(fb, { { "name", "client.update" }, { "object_id", "10008" }, { "account_id", A },
      { "business_id", "1000001" }, { "identity_id", "1001" }, { "user_id", "1" } }))
    assert.same({ "Renamed Ltd." }, one("SELECT organization FROM clients WHERE business_id = 1000001 AND id = 10008"))
    sb:admin("POST", "/_sandbox/hard_delete", { account_id = A, resource = "items", id = 3 })
    assert.equals(1, assert(m:apply(fb, { name = "item.delete", object_id = "3", account_id = A })).gone)
    assert.same({ 1, 1 }, one("SELECT vis_state, gone_at IS NOT NULL FROM items WHERE business_id = 1000001"
      .. " AND id = 3"))
    -- what the mirror does not keep, or a business it does not hold, is ignored without a request
    since = H.last_seq(sb)
    assert.truthy(assert(m:apply(fb, { name = "callback.verify", object_id = "1", account_id = A })).ignored)
    assert.truthy(assert(m:apply(fb, { name = "invoice.update", object_id = "1", account_id = "nope" })).ignored)
    assert.truthy(assert(m:apply(fb, { name = "invoice.update", object_id = "x", account_id = A })).ignored)
    assert.equals(0, (M.requests(sb, since)))
    M.assert_equal(m, fb, M.businesses, "after events")
  end)

  it("is versioned and migrated forward: a column a newer version adds comes back filled from the JSON", function()
    local path = dir .. "/old.db"
    local old = assert(mirror.open{ path = path })
    assert(old:sync(fb, { budget = false, businesses = { A }, resources = { "invoices" } }))
    local want = assert(old:query("SELECT id, outstanding_cents, due_date FROM invoices ORDER BY id")).rows
    -- what an older mirror looks like: a version behind, without two typed columns and the index over them
    assert(old.backend:exec("DROP INDEX invoices_1; ALTER TABLE invoices DROP COLUMN outstanding_cents;"
      .. " ALTER TABLE invoices DROP COLUMN"
      .. " due_date; UPDATE mirror_meta SET value = '0' WHERE key = 'schema_version'"))
    -- version 1 stored records in lua-cjson's order, which differs between Lua states (here: spaced out)
    assert(old.backend:exec("UPDATE invoices SET record = ' ' || replace(record, ',\"', ', \"')"))
    old:close()
    local ro = assert(mirror.open{ path = path, readonly = true }) -- a reader migrates it too
    assert.same(want, assert(ro:query("SELECT id, outstanding_cents, due_date FROM invoices ORDER BY id")).rows)
    -- version 2: canonical JSON, so an equal record is equal text and a sync writes nothing
    local texts = assert(ro:query("SELECT record FROM invoices")).rows
    assert.is_true(#texts > 200)
    for _, row in ipairs(texts) do assert.equals(core.json.encode(core.json.decode(row[1])), row[1]) end
    assert.equals(1, #assert(ro:query("SELECT name FROM sqlite_master WHERE name = 'invoices_1'")).rows)
    assert.same({ tostring(mirror.schema_version) },
      assert(ro:query("SELECT value FROM mirror_meta WHERE key = 'schema_version'")).rows[1])
    ro:close()
    local w = assert(mirror.open{ path = path })
    local again = assert(w:sync(fb, { budget = false, businesses = { A }, resources = { "invoices" },
      reconcile = "full" }))
    assert.equals(0, again.resources[1].written)
    -- a newer mirror is refused, never half-understood
    assert(w.backend:exec("UPDATE mirror_meta SET value = '99' WHERE key = 'schema_version'"))
    w:close()
    for _, readonly in ipairs { false, true } do
      local none, err = mirror.open{ path = path, readonly = readonly }
      assert.is_nil(none)
      assert.equals("mirror_too_new", err.code)
    end
    local none, err = mirror.open{ path = dir .. "/nothing.db", readonly = true }
    assert.is_nil(none)
    assert.equals("sqlite_cantopen", err.code)
  end)

  it("answers read-only SQL only, bounded by a deadline and a row limit", function()
    local res = assert(m:query("SELECT count(*) FROM invoices WHERE business_id = ? AND vis_state <> 1", { 1000001 }))
    assert.same({ "count(*)" }, res.columns)
    assert.is_true(res.rows[1][1] > 200)
    for _, sql in ipairs { "DELETE FROM invoices", "UPDATE clients SET fname = 'x'", "DROP TABLE invoices",
      "ATTACH DATABASE '" .. dir .. "/x.db' AS x", "PRAGMA journal_mode=DELETE", "CREATE TABLE t(x)",
      "BEGIN", "VACUUM INTO '" .. dir .. "/y.db'", "PRAGMA writable_schema=ON" } do
      local none, err = m:query(sql)
      assert.is_nil(none, sql)
      assert.equals("read_only", err.code, sql)
    end
    assert.is_nil(io.open(dir .. "/x.db")) -- nothing was created
    assert.is_nil(io.open(dir .. "/y.db"))
    assert(m:query("PRAGMA table_info(invoices)"))
    local none, err = m:query("SELECT 1; DELETE FROM invoices")
    assert.is_nil(none)
    assert.equals("sqlite_multiple", err.code)
    none, err = m:query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
      nil, { deadline = 0.2 })
    assert.is_nil(none)
    assert.equals("sqlite_deadline", err.code)
    none, err = m:query("SELECT id FROM invoices", nil, { max_rows = 10 })
    assert.is_nil(none)
    assert.equals("too_many_rows", err.code)
    assert.has_error(function() m:query(42) end)
    assert.has_error(function() m:query("SELECT 1", nil, { nope = 1 }) end)
  end)

  it("lets one sync at a time write a mirror; bad options raise", function()
    local lock = assert(core.fs.lock(dir .. "/mirror.db-sync.lock", 0))
    local none, err = m:sync(fb, { budget = false })
    assert.is_nil(none)
    assert.equals("sync_in_progress", err.code)
    lock:unlock()
    assert.has_error(function() m:sync(fb, { nope = true }) end)
    assert.has_error(function() m:sync(fb, { resources = { "invoice" } }) end)
    assert.has_error(function() m:sync(fb, { reconcile = "sometimes" }) end)
    assert.has_error(function() m:sync(fb, { budget = { rate = 0 } }) end)
    assert.has_error(function() m:sync({}, {}) end)
    assert.has_error(function() mirror.open{} end)
    assert.has_error(function() mirror.open{ path = "x", backend = {} } end)
    none, err = m:sync(fb, { budget = false, businesses = { "no such business" } })
    assert.is_nil(none)
    assert.equals("unknown_business", err.code)
  end)

  it("spends no more than its request budget, at its rate; honours 429 and Retry-After", function()
    local none, err, summary = m:sync(fb, { budget = { max = 5 }, businesses = { A } })
    assert.is_nil(none)
    assert.equals("budget_exhausted", err.code)
    assert.equals(5, summary.requests)
    -- n requests at 10 per second with a burst of 1 take at least (n - 1) / 10 s (a slower machine only adds)
    local waits = 0
    local t = core.clock.now()
    local s = assert(m:sync(fb, { budget = { rate = 10, burst = 1 }, businesses = { A },
      resources = { "clients", "items", "taxes", "staff", "tasks", "bills", "bill_vendors", "gateways", "services",
        "expenses" },
      progress = function(ev) if ev.type == "wait" then waits = waits + 1 end end }))
    assert.is_true(s.requests >= 10, s.requests)
    assert.is_true(core.clock.now() - t >= (s.requests - 1) / 10 - 0.05)
    assert.is_true(waits > 0)
    -- FreshBooks says 429 with Retry-After: the session waits as told, the sync completes, the wait is shown
    local retries = {}
    local logged = H.session(sb, { log = function(ev) if ev.type == "retry" then retries[#retries + 1] = ev end end })
    sb:admin("POST", "/_sandbox/faults", { route = "/invoices/invoices$", fault = "429", retry_after = 1, times = 1 })
    assert(m:sync(logged, { budget = false, businesses = { A }, resources = { "invoices" } }))
    assert.is_true(#retries >= 1)
    assert.equals("rate_limited", retries[1].reason)
    assert.is_true(retries[1].delay >= 1)
  end)
end)
