-- Reports from the mirror: the billing report computed by SQL equals the billing report computed over the
-- API on the same data (every as_of, every format); revenue by client by month, unbilled time and days
-- sales outstanding equal what FreshBooks' own lists add up to; none of them makes a request.
local cjson = require "cjson"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local M = require "support.mirror"
local mirror = require "freshbooks.mirror"
local reports = require "freshbooks.mirror.reports"
local report = require "freshbooks.report"
local date = require "freshbooks.date"

describe("reports from a mirror", function()
  local sb, fb, dir, m

  setup(function()
    sb = sandbox.start{ invoices = 400, seed = 5 }
    fb = H.session(sb)
    dir = H.tmpdir()
    local acct = fb:account("aBcD1")
    -- books with every case: deleted, archived, drafts, partly paid, renamed clients, another currency
    for i = 1, 12 do
      assert(acct.invoices:delete(i * 7))
      assert(acct.payments:create{ invoiceid = 200 + i, amount = { amount = "3.33", code = "USD" },
        date = "2025-05-01" })
    end
    assert(acct.invoices:archive(5))
    assert(acct.clients:update(10002, { organization = "" }))
    assert(acct.clients:update(10003, { organization = "", fname = "", lname = "" }))
    local owed = assert(acct.invoices:create{ customerid = 10003, create_date = "2025-04-01", lines = { { name = "Owed",
      qty = 1, unit_cost = { amount = "20.00", code = "USD" } } } })
    assert(acct.invoices:mark_as_sent(owed.id))
    assert(acct.invoices:create{ customerid = 10004, create_date = "2025-06-01", lines = { { name = "Draft",
      qty = 1, unit_cost = { amount = "10.00", code = "USD" } } } })
    m = assert(mirror.open{ path = dir .. "/reports.db" })
    assert(m:sync(fb, { budget = false }))
  end)
  teardown(function()
    if m then m:close() end
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  local function capture(fn)
    local parts = {}
    local out = { write = function(self, ...) for _, s in ipairs { ... } do parts[#parts + 1] = s end return self end }
    fn(out)
    return table.concat(parts)
  end
  local function offline(as_of, format)
    return capture(function(out)
      local list = assert(reports.billing(m, { as_of = as_of }))
      local w = report.writer(out, format, as_of)
      for _, b in ipairs(list) do w.business(b.business, b.acc) end
      w.finish()
    end)
  end
  local function online(as_of, format)
    return capture(function(out) assert(report.run(fb, { as_of = as_of, format = format }, out)) end)
  end
  local function lines(s)
    local t = {}
    for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
    table.sort(t)
    return t
  end

  it("computes the billing report by SQL equal to the report over the API (every as_of, every format)", function()
    for _, as_of in ipairs { "2025-06-30", "2024-02-29", "2025-03-09", "2023-01-01", "2030-12-31" } do
      local api, sql = online(as_of, "csv"), offline(as_of, "csv")
      assert.same(lines(api), lines(sql))
      assert.equals(online(as_of, "table"), offline(as_of, "table"))
      local a, s = cjson.decode(online(as_of, "json")), cjson.decode(offline(as_of, "json"))
      assert.same(a, s)
    end
    -- and the report is about something: many clients, every bucket, two currencies, the unnamed clients
    local csv = offline("2025-06-30", "csv")
    local rows = lines(csv)
    assert.is_true(#rows > 40, #rows)
    assert.truthy(csv:find(",CAD,", 1, true))
    assert.truthy(csv:find(",10003,Client 10003,USD,", 1, true), csv)
    local json = cjson.decode(offline("2025-06-30", "json"))
    local t = json.businesses[1].totals[1]
    for _, k in ipairs { "current", "days_1_30", "days_31_60", "days_61_90", "days_90_plus" } do
      assert.is_true(tonumber(t[k]) > 0, k)
    end
  end)

  it("adds up revenue, unbilled time and DSO as FreshBooks' own lists do, without a request", function()
    -- the reports ask FreshBooks nothing
    local before = H.last_seq(sb)
    local revenue = assert(reports.revenue(m))
    local collected = assert(reports.revenue(m, { basis = "collected" }))
    local unbilled = assert(reports.unbilled_time(m))
    local dso = assert(reports.dso(m, { as_of = "2025-06-30" }))
    assert(reports.billing(m))
    assert.equals(0, (M.requests(sb, before)))
    local truth = M.truth(fb, M.businesses)
    local function sent(w) return w.vis ~= 1 and w.record.v3_status ~= "draft" and w.record.status ~= 1 end
    -- revenue invoiced: by business, client, currency and month
    local want = {}
    for bid, per in pairs(truth) do
      for _, w in pairs(per.invoices) do
        if sent(w) then
          local r = w.record
          local key = table.concat({ bid, r.customerid, r.currency_code, r.create_date:sub(1, 7) }, "/")
          want[key] = (want[key] or 0) + M.cents(r.amount.amount)
        end
      end
    end
    local got = {}
    for _, row in ipairs(revenue.rows) do
      got[table.concat({ row[1], row[2], row[4], row[5] }, "/")] = M.cents(row[7])
    end
    assert.same(want, got)
    -- revenue collected: payments by month
    want, got = {}, {}
    for bid, per in pairs(truth) do
      for _, w in pairs(per.payments) do
        if w.vis ~= 1 then
          local key = bid .. "/" .. w.record.date:sub(1, 7)
          want[key] = (want[key] or 0) + M.cents(w.record.amount.amount)
        end
      end
    end
    for _, row in ipairs(collected.rows) do
      local key = row[1] .. "/" .. row[5]
      got[key] = (got[key] or 0) + M.cents(row[7])
    end
    assert.same(want, got)
    -- unbilled time: what the time entries list says is unbilled
    local seconds = {}
    for _, row in ipairs(unbilled.rows) do
      seconds[row[1]] = (seconds[row[1]] or 0) + row[7]
    end
    for _, b in ipairs(M.businesses) do
      local res2 = assert(fb:request{ method = "GET", path = "/timetracking/business/" .. b.business_id
        .. "/time_entries", query = { per_page = 1 } })
      assert.equals(res2.data.meta.total_unbilled, seconds[b.business_id])
    end
    -- DSO over the 90 days up to 2025-06-30
    local as_of = "2025-06-30"
    local from = date.format(date.exact(as_of) - 89)
    local owed, sales = {}, {}
    for bid, per in pairs(truth) do
      for _, w in pairs(per.invoices) do
        if sent(w) then
          local key = bid .. "/" .. w.record.currency_code
          local o = M.cents(w.record.outstanding.amount)
          owed[key] = (owed[key] or 0) + (o > 0 and o or 0)
          if w.record.create_date >= from and w.record.create_date <= as_of then
            sales[key] = (sales[key] or 0) + M.cents(w.record.amount.amount)
          end
        end
      end
    end
    assert.is_true(#dso.rows >= 2)
    for _, row in ipairs(dso.rows) do
      local key = row[1] .. "/" .. row[2]
      assert.equals(owed[key] or 0, M.cents(row[3]))
      assert.equals(sales[key] or 0, M.cents(row[4]))
      if (sales[key] or 0) > 0 then
        local exact = owed[key] * 90 / sales[key]
        assert.is_true(math.abs(tonumber(row[6]) - exact) <= 0.05 + 1e-9, row[6] .. " vs " .. exact)
      else
        assert.is_nil(row[6])
      end
    end
    assert.has_error(function() reports.dso(m, { as_of = "2025-02-30" }) end)
    assert.has_error(function() reports.revenue(m, { basis = "hoped" }) end)
    local none, err = reports.billing(m, { business = "nope" })
    assert.is_nil(none)
    assert.equals("unknown_business", err.code)
  end)
end)
