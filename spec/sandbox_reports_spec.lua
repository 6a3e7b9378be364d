-- Every report the sandbox serves, checked against the sandbox's own records: the spec reads the
-- records through the API (the library's raw fb:request), keeps its own books from them and computes
-- each report's figures itself, then compares them with what the report answers through the library's
-- catalogue objects (acct.reports.X:get) and through the command (`freshbooks report KIND`), figure by
-- figure, in both currencies of a multi-currency business and on the edges of date ranges. Then each
-- report's parameter checks, the CSV download (and the command's CSV against it, report by report),
-- team members, estimate acceptance and the invoice PDF.
-- The books (docs/sandbox.md, "Reports"): a sent invoice debits Accounts Receivable and credits Sales
-- on its date; a payment debits Cash and credits Receivable; an expense debits the expense account and
-- credits Cash; other income debits Cash and credits Sales; a bill debits the expense account and
-- credits Accounts Payable; a bill payment debits Payable and credits Cash; a manual journal entry posts
-- each line on the account its sub_accountid names. Each currency keeps its own books.
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local C = require "support.cli"
local cjson = require "cjson"
local catalogue = require "freshbooks.catalogue"
local date = require "freshbooks.date"

local TODAY = date.days(2025, 6, 30)
local UUID = { aBcD1 = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001", xYz92 = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0002" }

-- Whole cents from "12.50", "-3", "925.000" or {amount = ...}; anything else fails the spec.
local function cents(v)
  if type(v) == "table" then v = v.amount end
  local sign, int, frac = tostring(v):match("^(%-?)(%d+)%.?(%d*)$")
  assert(int, "not an amount: " .. tostring(v))
  assert(not frac:sub(3):find("[1-9]"), "an amount finer than a cent: " .. v)
  local c = tonumber(int) * 100 + tonumber((frac .. "00"):sub(1, 2))
  return sign == "-" and -c or c
end
local function day(s) return assert(date.exact(s), "not a date: " .. tostring(s)) end
local fmt = date.format

describe("reports against the sandbox's own records", function()
  local sb, fb

  local function request(path, query)
    local res, err = fb:request{ path = path, query = query }
    assert(res, err and tostring(err))
    return res
  end
  local function get(path, query) return request(path, query).data end
  -- A report as sent by hand (what FreshBooks answers whatever the library checks)
  local function raw_report(aid, kind, query)
    local key = kind == "profitloss_entity" and "profitloss" or kind
    return get("/accounting/account/" .. aid .. "/reports/accounting/" .. kind, query).response.result[key]
  end
  -- ... and through the library's catalogue objects: acct.reports.X, or by business uuid.
  local NAME = { profitloss_entity = "profit_and_loss", taxsummary = "tax_summary" }
  local function reporter(aid, name)
    local owner = catalogue.owner_of(catalogue.by_name[name]) == "account" and fb:account(aid)
      or fb:accounting_business(UUID[aid])
    return owner.reports[name]
  end
  local function report(aid, kind, query)
    local r, err = reporter(aid, NAME[kind] or kind):get(query)
    assert(r, err and tostring(err))
    return r
  end
  local function refused(path, query)
    local res, err = fb:request{ path = path, query = query }
    assert.is_nil(res, path)
    return err
  end
  -- Every record of a list, page by page (bounded).
  local function all(aid, path, plural, extra)
    local out, page = {}, 1
    for _ = 1, 50 do
      local q = { page = page, per_page = 100 }
      for k, v in pairs(extra or {}) do q[k] = v end
      local r = get("/accounting/account/" .. aid .. "/" .. path, q).response.result
      for _, x in ipairs(r[plural]) do out[#out + 1] = x end
      if page >= r.pages then break end
      page = page + 1
    end
    return out
  end

  -- The spec's own books of an account: entries {day, code, kind, id, legs = {{account, dr, cr}}}.
  local function books(aid)
    local B = { invoices = all(aid, "invoices/invoices", "invoices"),
      payments = all(aid, "payments/payments", "payments"),
      expenses = all(aid, "expenses/expenses", "expenses"), incomes = all(aid, "other_incomes/other_incomes",
      "other_income"), bills = all(aid, "bills/bills", "bills", { include = { "lines" } }),
      bill_payments = all(aid, "bill_payments/bill_payments", "bill_payments"),
      entries = all(aid, "journal_entries/journal_entries", "journal_entries"),
      categories = all(aid, "expenses/categories", "categories"),
      clients = all(aid, "users/clients", "clients"), staff = all(aid, "users/staffs", "staffs"),
      je_accounts = all(aid, "journal_entry_accounts/journal_entry_accounts", "journal_entry_accounts"),
      chart = get("/accounting/businesses/" .. UUID[aid] .. "/ledger_accounts/accounts").data }
    local by_uuid, roles = {}, {}
    for _, a in ipairs(B.chart) do
      by_uuid[a.uuid] = a
      if a.system_account_name and not a.parent_account then roles[a.system_account_name] = a end
      if a.type == "expense" and not a.system_account_name and not a.parent_account and not roles.expense then
        roles.expense = a
      end
    end
    B.by_uuid, B.roles = by_uuid, roles
    local cash, ar, ap, sales, exp = roles.Cash, roles["Accounts Receivable"], roles["Accounts Payable"],
      roles.Sales, roles.expense
    B.client = {}
    for _, c in ipairs(B.clients) do B.client[c.id] = c end
    B.category = {}
    for _, c in ipairs(B.categories) do B.category[c.id] = c end
    local E = {}
    B.list = E
    local posted, collected = {}, {}
    B.posted = posted
    for _, inv in ipairs(B.invoices) do
      if inv.status ~= 1 then
        posted[inv.id] = inv
        local a = cents(inv.amount)
        E[#E + 1] = { day = day(inv.create_date), code = inv.currency_code, kind = "invoice", id = inv.id,
                      legs = { { ar, a, 0 }, { sales, 0, a } } }
      end
    end
    for _, p in ipairs(B.payments) do
      local inv = posted[p.invoiceid]
      if inv then
        local a = cents(p.amount)
        collected[inv.id] = (collected[inv.id] or 0) + a
        E[#E + 1] = { day = day(p.date), code = inv.currency_code, kind = "payment", id = p.id, invoiceid = inv.id,
                      legs = { { cash, a, 0 }, { ar, 0, a } } }
      end
    end
    -- This seed is small enough that every paid cent has its payment record.
    for id, inv in pairs(posted) do assert.equal(cents(inv.paid), collected[id] or 0, "invoice " .. id) end
    for _, e in ipairs(B.expenses) do
      local a = cents(e.amount)
      E[#E + 1] = { day = day(e.date), code = e.amount.code, kind = "expense", id = e.id, categoryid = e.categoryid,
                    legs = { { exp, a, 0 }, { cash, 0, a } } }
    end
    for _, o in ipairs(B.incomes) do
      local a = cents(o.amount)
      E[#E + 1] = { day = day(o.date), code = o.amount.code, kind = "income", id = o.incomeid,
                    legs = { { cash, a, 0 }, { sales, 0, a } } }
    end
    local bill_by = {}
    for _, b in ipairs(B.bills) do
      bill_by[b.id] = b
      local a = cents(b.amount)
      E[#E + 1] = { day = day(b.issue_date), code = b.currency_code, kind = "bill", id = b.id,
                    categoryid = b.lines[1] and b.lines[1].categoryid, legs = { { exp, a, 0 }, { ap, 0, a } } }
    end
    for _, p in ipairs(B.bill_payments) do
      local b = bill_by[p.billid]
      if b then
        local a = cents(p.amount)
        E[#E + 1] = { day = day(p.paid_date), code = b.currency_code, kind = "bill_payment", id = p.id,
                      categoryid = b.lines[1] and b.lines[1].categoryid, legs = { { ap, a, 0 }, { cash, 0, a } } }
      end
    end
    local function je_target(id)
      for _, a in ipairs(B.je_accounts) do
        local hit = a.id == id
        for _, s in ipairs(a.sub_accounts or {}) do hit = hit or s.sub_accountid == id end
        if hit then
          for _, l in ipairs(B.chart) do if l.number == a.account_number and not l.parent_account then return l end end
        end
      end
      return exp
    end
    for _, j in ipairs(B.entries) do
      local legs = {}
      for _, d in ipairs(j.details) do
        legs[#legs + 1] = { je_target(d.sub_accountid), d.debit and cents(d.debit) or 0,
                            d.credit and cents(d.credit) or 0 }
      end
      E[#E + 1] = { day = day(j.user_entered_date), code = j.currency_code, kind = "adjustment", id = j.entryid,
                    name = j.name, legs = legs }
    end
    -- debit and credit on account `a` (its sub-accounts too when `with_subs`) in `code` over [from, to]
    function B.move(a, code, from, to, with_subs)
      local dr, cr = 0, 0
      for _, x in ipairs(E) do
        if x.code == code and (not from or x.day >= from) and (not to or x.day <= to) then
          for _, l in ipairs(x.legs) do
            if l[1] == a or (with_subs and l[1].parent_account == a.uuid) then dr, cr = dr + l[2], cr + l[3] end
          end
        end
      end
      return dr, cr
    end
    function B.balance(a, code, from, to, with_subs)
      local dr, cr = B.move(a, code, from, to, with_subs)
      return (a.type == "asset" or a.type == "expense") and dr - cr or cr - dr
    end
    function B.earnings(code, from, to)
      local n = 0
      for _, a in ipairs(B.chart) do
        if a.type == "income" then n = n + B.balance(a, code, from, to) end
        if a.type == "expense" then n = n - B.balance(a, code, from, to) end
      end
      return n
    end
    return B
  end

  local A, X -- the books of aBcD1 (USD) and xYz92 (CAD, with USD clients)

  setup(function()
    sb = sandbox.start{ invoices = 120, seed = 3 }
    fb = H.session(sb)
    local base = "/accounting/account/aBcD1/"
    -- manual journal entries: Advertising paid in cash, and one on another day and in another currency
    for _, j in ipairs {
      { name = "Ads paid in cash", user_entered_date = "2025-05-15", currency_code = "USD", description = "spec",
        details = { { debit = "120.00", sub_accountid = 4041 }, { credit = "120.00", sub_accountid = 401 } } },
      { name = "Receivable written off", user_entered_date = "2024-03-01", currency_code = "USD", description = "old",
        details = { { debit = "10.00", sub_accountid = 404 }, { credit = "10.00", sub_accountid = 402 } } },
      { name = "CAD entry", user_entered_date = "2025-05-20", currency_code = "CAD", description = "other currency",
        details = { { debit = "7.00", sub_accountid = 401 }, { credit = "7.00", sub_accountid = 403 } } } } do
      local made, err = fb:request{ method = "POST", path = base .. "journal_entries/journal_entries",
        json = { journal_entry = j } }
      assert(made, err and tostring(err))
    end
    -- a taxed invoice, sent, and paid in part
    local inv = assert(fb:request{ method = "POST", path = base .. "invoices/invoices", json = { invoice = {
      customerid = 10002, create_date = "2025-06-02", lines = {
        { name = "Taxed work", qty = 2, unit_cost = { amount = "100.00", code = "USD" }, taxName1 = "GST",
          taxAmount1 = "5.00" } } } } }).data.response.result.invoice
    assert(fb:request{ method = "PUT", path = base .. "invoices/invoices/" .. inv.id,
      json = { invoice = { action_mark_as_sent = true } } })
    assert(fb:request{ method = "POST", path = base .. "payments/payments", json = { payment = {
      invoiceid = inv.id, amount = { amount = "50.00", code = "USD" }, date = "2025-06-20", type = "Cash" } } })
    A, X = books("aBcD1"), books("xYz92")
  end)
  teardown(function() if sb then sb:stop() end end)

  -- Accounts aging: per client and bucket, the spec's owed amounts as of the day.
  local function aging(B, code, asof, from)
    local owed = {}
    for _, inv in pairs(B.posted) do
      local created = day(inv.create_date)
      if inv.currency_code == code and created <= asof and (not from or created >= from) then
        local o = cents(inv.amount)
        for _, x in ipairs(B.list) do
          if x.kind == "payment" and x.invoiceid == inv.id and x.day <= asof then o = o - x.legs[1][2] end
        end
        if o ~= 0 then
          local late = asof - (created + inv.due_offset_days)
          local b = late <= 30 and "0-30" or late <= 60 and "31-60" or late <= 90 and "61-90" or "91+"
          owed[inv.customerid] = owed[inv.customerid] or { ["0-30"] = 0, ["31-60"] = 0, ["61-90"] = 0, ["91+"] = 0 }
          owed[inv.customerid][b] = owed[inv.customerid][b] + o
        end
      end
    end
    return owed
  end

  local function check_aging(aid, B, code, asof, from)
    local r = report(aid, "accounts_aging", { currency_code = code, end_date = fmt(asof),
      start_date = from and fmt(from) or nil })
    local want = aging(B, code, asof, from)
    local seen, sum = {}, 0
    for _, a in ipairs(r.accounts) do
      seen[a.userid] = true
      local total = 0
      for _, k in ipairs { "0-30", "31-60", "61-90", "91+" } do
        assert.equal(want[a.userid] and want[a.userid][k] or 0, cents(a[k]), aid .. " client " .. a.userid .. " " .. k)
        assert.equal(code, a[k].code)
        total = total + cents(a[k])
      end
      assert.equal(total, cents(a.total))
      sum = sum + total
      assert.equal(B.client[a.userid].organization, a.organization)
    end
    for cid in pairs(want) do assert.is_true(seen[cid], "client " .. cid .. " missing") end
    assert.equal(sum, cents(r.totals.total))
    assert.equal(fmt(asof), r.end_date)
    return sum, r
  end

  it("accounts aging: each client's buckets are the spec's, sum to the total, and equal receivables", function()
    for _, case in ipairs { { "aBcD1", A, "USD" }, { "xYz92", X, "CAD" }, { "xYz92", X, "USD" } } do
      local aid, B, code = case[1], case[2], case[3]
      local total = check_aging(aid, B, code, TODAY)
      assert.is_true(total > 0, aid .. " " .. code .. " has receivables")
      -- Receivable on the books is the aging total, but for journal entries on it (they age nothing)
      local ar, journal = B.roles["Accounts Receivable"], 0
      for _, x in ipairs(B.list) do
        if x.kind == "adjustment" and x.code == code then
          for _, l in ipairs(x.legs) do if l[1] == ar then journal = journal + l[2] - l[3] end end
        end
      end
      assert.equal(B.balance(ar, code, nil, TODAY) - journal, total)
    end
    -- as of the day a payment lands, and the day before: the day counts (inclusive)
    local pay
    for _, x in ipairs(A.list) do if x.kind == "payment" and x.day < TODAY - 40 then pay = x end end
    assert(pay, "a payment before the last weeks")
    local on = check_aging("aBcD1", A, "USD", pay.day)
    local before = check_aging("aBcD1", A, "USD", pay.day - 1)
    local created = 0
    local paid_that_day = 0
    for _, x in ipairs(A.list) do
      if x.day == pay.day and x.kind == "invoice" then created = created + x.legs[1][2] end
      if x.day == pay.day and x.kind == "payment" then paid_that_day = paid_that_day + x.legs[1][2] end
    end
    assert.equal(before + created - paid_that_day, on)
    -- the bucket edges: 30 days past due is still 0-30, 31 is 31-60 (and 60/61, 90/91)
    local edge
    for _, inv in pairs(A.posted) do
      local due = day(inv.create_date) + inv.due_offset_days
      if cents(inv.outstanding) > 0 and due + 91 <= TODAY and (not edge or inv.id < edge.id) then edge = inv end
    end
    assert(edge, "an invoice unpaid for 91 days")
    local due = day(edge.create_date) + edge.due_offset_days
    for _, late in ipairs { 30, 31, 60, 61, 90, 91 } do
      local _, r = check_aging("aBcD1", A, "USD", due + late)
      local bucket = late <= 30 and "0-30" or late <= 60 and "31-60" or late <= 90 and "61-90" or "91+"
      for _, a in ipairs(r.accounts) do
        if a.userid == edge.customerid then
          assert.is_true(cents(a[bucket]) >= cents(edge.amount) - cents(edge.paid))
        end
      end
    end
    -- start_date narrows to invoices created on or after it
    check_aging("aBcD1", A, "USD", TODAY, TODAY - 60)
    -- a currency without records: nothing owed
    local r = report("aBcD1", "accounts_aging", { currency_code = "EUR" })
    assert.same({}, r.accounts)
    assert.equal(0, cents(r.totals.total))
  end)

  it("balance sheet: every account on every date is the spec's, and assets equal liabilities and equity", function()
    local dates = { TODAY - 200, TODAY - 31, TODAY }
    for _, case in ipairs { { "aBcD1", A, "USD" }, { "xYz92", X, "CAD" }, { "xYz92", X, "USD" } } do
      local aid, B, code = case[1], case[2], case[3]
      local r = report(aid, "balance_sheet", { currency_code = code, dates = { fmt(dates[1]), fmt(dates[2]),
        fmt(dates[3]) } })
      assert.same({ fmt(dates[1]), fmt(dates[2]), fmt(dates[3]) }, r.dates)
      for i, d in ipairs(dates) do
        local groups = {}
        for _, g in ipairs(r.data) do
          local gsum = 0
          for _, a in ipairs(g.accounts) do
            local acc = assert(B.roles[a.account_name] or (function()
              for _, l in ipairs(B.chart) do if l.name == a.account_name then return l end end end)())
            local want = B.balance(acc, code, nil, d, true)
            if acc == B.roles["Retained Earnings"] then want = want + B.earnings(code, nil, d) end
            assert.equal(want, cents(a.balances[i].balance), ("%s %s %s %s"):format(aid, code, a.account_name, fmt(d)))
            if a.sub_accounts[1] then
              local subs = 0
              for _, s in ipairs(a.sub_accounts) do subs = subs + cents(s.balances[i].balance) end
              assert.equal(want, subs, a.account_name .. ": sub-accounts add up")
            end
            gsum = gsum + want
          end
          assert.equal(gsum, cents(g.balances[i].balance))
          groups[g.account_type] = gsum
        end
        assert.equal(groups.asset, cents(r.assets_total[i].balance))
        assert.equal(groups.liability + groups.equity, cents(r.liabilities_and_equity_total[i].balance))
        assert.equal(cents(r.assets_total[i].balance), cents(r.liabilities_and_equity_total[i].balance),
          aid .. " " .. code .. " balances on " .. fmt(d))
      end
    end
  end)

  it("trial balance: each line is the spec's, debits equal credits, over a range and at its edges", function()
    for _, case in ipairs { { "aBcD1", A, "USD", TODAY - 364, TODAY }, { "aBcD1", A, "USD", TODAY - 45, TODAY - 45 },
                            { "xYz92", X, "CAD", TODAY - 364, TODAY }, { "xYz92", X, "USD", TODAY - 500, TODAY } } do
      local aid, B, code, from, to = case[1], case[2], case[3], case[4], case[5]
      local r = report(aid, "trial_balance", { currency_code = code, start_date = fmt(from), end_date = fmt(to) })
      local dr, cr, lines = 0, 0, {}
      for _, l in ipairs(r.data) do
        dr, cr = dr + cents(l.debit), cr + cents(l.credit)
        lines[l.account_sub_name] = cents(l.debit) - cents(l.credit)
      end
      assert.equal(dr, cr, aid .. " " .. code .. " debits = credits")
      for _, a in ipairs(B.chart) do
        local mdr, mcr
        if a.type == "income" or a.type == "expense" then mdr, mcr = B.move(a, code, from, to)
        else mdr, mcr = B.move(a, code, nil, to) end
        local net = mdr - mcr
        if a == B.roles["Retained Earnings"] then net = net - B.earnings(code, nil, from - 1) end
        assert.equal(net, lines[a.name] or 0, aid .. " " .. code .. " " .. a.name)
      end
    end
  end)

  it("general ledger: every transaction of the range, per account, with movements and totals", function()
    for _, case in ipairs { { "aBcD1", A, "USD" }, { "xYz92", X, "USD" } } do
      local aid, B, code = case[1], case[2], case[3]
      local from, to = TODAY - 120, TODAY - 10
      local path = "/accounting/businesses/" .. UUID[aid] .. "/reports/general_ledger"
      local r = get(path, { currency_code = code, start_date = fmt(from), end_date = fmt(to) }).response.result
        .general_ledger
      local same = raw_report(aid, "general_ledger", { currency_code = code, start_date = fmt(from),
        end_date = fmt(to) })
      assert.same(r.data, same.data)
      local tdr, tcr = 0, 0
      for _, a in ipairs(r.data) do
        local acc = B.by_uuid[a.accountid]
        local wdr, wcr = B.move(acc, code, from, to, true)
        assert.equal(wdr, cents(a.debit), a.account_name)
        assert.equal(wcr, cents(a.credit), a.account_name)
        assert.equal(math.max(wdr - wcr, 0), cents(a.net_movement_debit))
        assert.equal(math.max(wcr - wdr, 0), cents(a.net_movement_credit))
        local sdr, scr = 0, 0
        for _, s in ipairs(a.sub_accounts) do
          local xdr, xcr = 0, 0
          local last = from
          for _, t in ipairs(s.transactions) do
            local d = day(t.date)
            assert.is_true(d >= from and d <= to, t.date)
            assert.is_true(d >= last, "transactions in date order")
            last = d
            xdr, xcr = xdr + cents(t.debit), xcr + cents(t.credit)
          end
          assert.equal(xdr, cents(s.debit))
          assert.equal(xcr, cents(s.credit))
          sdr, scr = sdr + xdr, scr + xcr
        end
        assert.equal(wdr, sdr)
        assert.equal(wcr, scr)
        tdr, tcr = tdr + wdr, tcr + wcr
      end
      assert.equal(tdr, cents(r.summary.total_debit))
      assert.equal(tcr, cents(r.summary.total_credit))
      assert.equal(tdr, tcr)
      -- every invoice of the range is in Receivable, once
      local ar
      for _, a in ipairs(r.data) do if a.accountid == B.roles["Accounts Receivable"].uuid then ar = a end end
      local invoices, want = 0, 0
      for _, s in ipairs(ar and ar.sub_accounts or {}) do
        for _, t in ipairs(s.transactions) do if t.entity_type == "invoice" then invoices = invoices + 1 end end
      end
      for _, x in ipairs(B.list) do
        if x.kind == "invoice" and x.code == code and x.day >= from and x.day <= to then want = want + 1 end
      end
      assert.equal(want, invoices)
    end
    -- one account only, and a manual journal entry's lines on the accounts their sub_accountids name
    local only = report("aBcD1", "general_ledger", { accountid = A.roles.Cash.uuid, start_date = "2025-05-15",
      end_date = "2025-05-15" })
    assert.equal(1, #only.data)
    local found
    for _, s in ipairs(only.data[1].sub_accounts) do
      for _, t in ipairs(s.transactions) do
        if t.entity_type == "adjustment" then found = t end
      end
    end
    assert.equal(12000, cents(found.credit))
    assert.equal("Ads paid in cash", found.reference)
  end)

  it("cash flow: starting balance plus the activities is the ending balance, each the spec's", function()
    for _, case in ipairs { { "aBcD1", A, "USD" }, { "xYz92", X, "CAD" }, { "xYz92", X, "USD" } } do
      local aid, B, code = case[1], case[2], case[3]
      local from, to = TODAY - 180, TODAY
      local r = report(aid, "cash_flow", { currency_code = code, start_date = fmt(from), end_date = fmt(to) })
      local cash = B.roles.Cash
      assert.equal(B.balance(cash, code, nil, from - 1, true), cents(r.summary.starting_balance))
      assert.equal(B.balance(cash, code, nil, to, true), cents(r.summary.ending_balance))
      local inflow, outflow = 0, 0
      for _, x in ipairs(B.list) do
        if x.code == code and x.day >= from and x.day <= to then
          local delta = 0
          for _, l in ipairs(x.legs) do
            if l[1] == cash or l[1].parent_account == cash.uuid then delta = delta + l[2] - l[3] end
          end
          if delta > 0 then inflow = inflow + delta else outflow = outflow + delta end
        end
      end
      assert.equal(inflow, cents(r.summary.gross_cash_inflow))
      assert.equal(outflow, cents(r.summary.gross_cash_outflow))
      local net = 0
      for _, act in ipairs(r.activities) do
        local at = 0
        for _, d in ipairs(act.details) do
          local dt = 0
          for _, g in ipairs(d.accounts) do
            local gt = 0
            for _, s in ipairs(g.sub_accounts) do gt = gt + cents(s.total) end
            assert.equal(gt, cents(g.total))
            dt = dt + gt
          end
          assert.equal(dt, cents(d.total))
          at = at + dt
        end
        assert.equal(at, cents(act.total))
        net = net + at
      end
      assert.equal(net, cents(r.summary.net_cash_change))
      assert.equal(inflow + outflow, net)
      assert.equal(cents(r.summary.starting_balance) + net, cents(r.summary.ending_balance))
    end
  end)

  it("chart of accounts: balances over the range, parents as their sub-accounts, filters and sort", function()
    local from, to = TODAY - 90, TODAY
    local list = report("aBcD1", "chart_of_accounts", { start_date = fmt(from), end_date = fmt(to),
      currency_code = "USD" })
    local tops = 0
    for _, a in ipairs(A.chart) do if not a.parent_account then tops = tops + 1 end end
    assert.equal(tops, #list)
    for _, x in ipairs(list) do
      local a = A.by_uuid[x.account_uuid]
      assert.equal(A.balance(a, "USD", from, to, true), cents(x.balance), x.account_name)
      assert.equal("USD", x.currency_code)
      if x.sub_accounts[1] then
        local sum = 0
        for _, s in ipairs(x.sub_accounts) do sum = sum + cents(s.balance) end
        assert.equal(cents(x.balance), sum)
        assert.equal(a.name .. " (general)", x.sub_accounts[1].account_name)
      end
    end
    local assets = report("aBcD1", "chart_of_accounts", { account_type = "asset", sort = "-account_number" })
    assert.is_true(#assets >= 2)
    for i, x in ipairs(assets) do
      assert.equal("asset", x.account_type)
      assert.is_nil(x.currency_code) -- not asked: null
      if i > 1 then assert.is_true(assets[i - 1].account_number > x.account_number) end
    end
  end)

  it("expense details: groups of the spec's expenses, by category, client, vendor and author", function()
    local from, to = TODAY - 200, TODAY
    local want, total = {}, 0
    for _, e in ipairs(A.expenses) do
      local d = day(e.date)
      if d >= from and d <= to then want[e.id] = cents(e.amount); total = total + cents(e.amount) end
    end
    for _, g in ipairs { "parent_category", "clients", "vendor", "author" } do
      local r = report("aBcD1", "expense_details", { start_date = fmt(from), end_date = fmt(to), group_by = g })
      assert.equal(g, r.group_by)
      local seen, sum = {}, 0
      for _, grp in ipairs(r.data) do
        local gsum = 0
        for _, e in ipairs(grp.expenses) do
          assert.equal(want[e.expenseid], cents(e.amount))
          seen[e.expenseid] = true
          gsum = gsum + cents(e.amount)
          if g == "vendor" then assert.equal(e.vendor, grp.groupid) end
          if g == "author" then assert.truthy(r.authors[grp.groupid]) end
        end
        assert.equal(gsum, cents(grp.total))
        sum = sum + gsum
      end
      assert.equal(total, sum)
      assert.equal(total, cents(r.total))
      for id in pairs(want) do assert.is_true(seen[id], "expense " .. id) end
    end
  end)

  it("invoice details: every invoice of the range by client, summaries, and its filters", function()
    local from, to = TODAY - 150, TODAY
    local function expect(filter)
      local sum = { total = 0, paid = 0, outstanding = 0, n = 0 }
      for _, inv in ipairs(A.invoices) do
        local by = day(inv.create_date)
        if filter.paid then by = inv.date_paid and day(inv.date_paid) end
        if inv.currency_code == "USD" and by and by >= from and by <= to and (not filter.client
            or inv.customerid == filter.client) and (not filter.status or inv.v3_status == filter.status) then
          sum.total, sum.paid = sum.total + cents(inv.amount), sum.paid + cents(inv.paid)
          sum.outstanding, sum.n = sum.outstanding + cents(inv.outstanding), sum.n + 1
        end
      end
      return sum
    end
    local some_client
    for _, inv in ipairs(A.invoices) do
      if day(inv.create_date) >= from and inv.currency_code == "USD" then some_client = inv.customerid end
    end
    for _, case in ipairs {
      { {}, {} }, { { date_type = "paid" }, { paid = true } },
      { { clientids = { some_client } }, { client = some_client } },
      { { statusids = { "paid" } }, { status = "paid" } }, { { statusids = { "draft" } }, { status = "draft" } } } do
      local q = { start_date = fmt(from), end_date = fmt(to) }
      for k, v in pairs(case[1]) do q[k] = v end
      local r = report("aBcD1", "invoice_details", q)
      local want = expect(case[2])
      assert.is_true(want.n > 0)
      local n, sum = 0, 0
      for _, c in ipairs(r.clients) do
        local csum = 0
        for _, i in ipairs(c.invoices) do n, csum = n + 1, csum + cents(i.total) end
        assert.equal(csum, cents(c.summary.total))
        sum = sum + csum
      end
      local label = next(case[1]) or "no filter"
      assert.equal(want.n, n, label)
      assert.equal(want.total, sum, label)
      assert.equal(want.total, cents(r.summary.total))
      assert.equal(want.paid, cents(r.summary.paid))
      assert.equal(want.outstanding, cents(r.summary.outstanding))
    end
    local only = report("aBcD1", "invoice_details", { start_date = fmt(from), end_date = fmt(to), summary_only = true })
    assert.same({}, only.clients)
    assert.equal(expect({}).total, cents(only.summary.total))
    assert.is_true(only.summary_only)
  end)

  it("manual journal entries: the entries of the range and currency, their lines and totals", function()
    local r = report("aBcD1", "manual_journal_entry", { start_date = "2025-01-01", end_date = "2025-06-30" })
    assert.equal(1, #r.entries)
    local e = r.entries[1]
    assert.equal("Ads paid in cash", e.name)
    assert.equal("2025-05-15", e.user_entered_date)
    assert.equal(2, #e.details)
    assert.equal("Office Expenses", e.details[1].account_name) -- 4041 Advertising is under 6000
    assert.equal("Cash", e.details[2].account_name)
    assert.equal(12000, cents(r.totals.debit))
    assert.equal(12000, cents(r.totals.credit))
    local older = report("aBcD1", "manual_journal_entry", { start_date = "2024-03-01", end_date = "2024-03-01" })
    assert.equal(1, #older.entries)
    assert.equal("Receivable written off", older.entries[1].name)
    local cad = report("aBcD1", "manual_journal_entry", { currency_code = "CAD" })
    assert.equal(1, #cad.entries)
    assert.equal(700, cents(cad.totals.credit))
    -- a CAD entry in a USD business: its own books balance
    local bs = report("aBcD1", "balance_sheet", { currency_code = "CAD" })
    assert.equal(cents(bs.assets_total[1].balance), cents(bs.liabilities_and_equity_total[1].balance))
    assert.equal(700, cents(bs.assets_total[1].balance))
  end)

  it("payments collected: every payment of the range in every currency, with its filters", function()
    local from, to = TODAY - 365, TODAY
    local r = report("xYz92", "payments_collected", { start_date = fmt(from), end_date = fmt(to) })
    local want, totals = {}, {}
    for _, x in ipairs(X.list) do
      if x.kind == "payment" and x.day >= from and x.day <= to then
        want[#want + 1] = x
        totals[x.code] = (totals[x.code] or 0) + x.legs[1][2]
      end
    end
    assert.equal(#want, #r.payments)
    local got = {}
    for _, t in ipairs(r.totals) do got[t.code] = cents(t) end
    assert.same(totals, got)
    assert.is_truthy(got.USD and got.CAD, "both currencies")
    local usd = report("xYz92", "payments_collected", { start_date = fmt(from), end_date = fmt(to),
      currency_codes = { "USD" } })
    for _, p in ipairs(usd.payments) do assert.equal("USD", p.amount.code) end
    assert.same({ "USD" }, usd.currency_codes)
    local client = r.payments[1].clientid
    local one = report("xYz92", "payments_collected", { start_date = fmt(from), end_date = fmt(to),
      clientids = { client } })
    assert.same({ client }, one.clientids)
    for _, p in ipairs(one.payments) do assert.equal(client, p.clientid) end
    assert.is_true(#one.payments >= 1)
  end)

  it("profit and loss: income and expenses are the spec's, periods sum to the totals, net = the ledger's", function()
    local from, to = TODAY - 364, TODAY
    for _, cash_based in ipairs { false, true } do
      local r = report("aBcD1", "profitloss_entity", { start_date = fmt(from), end_date = fmt(to), resolution = "3m",
        cash_based = cash_based })
      local income, other, spent, by_cat = 0, 0, 0, {}
      for _, x in ipairs(A.list) do
        if x.code == "USD" and x.day >= from and x.day <= to then
          local k = x.kind
          if (k == "invoice" and not cash_based) or (k == "payment" and cash_based) then income = income + x.legs[1][2]
          elseif k == "income" then other = other + x.legs[1][2]
          elseif k == "expense" or (k == "bill" and not cash_based) or (k == "bill_payment" and cash_based) then
            local name = A.category[x.categoryid].category
            by_cat[name] = (by_cat[name] or 0) + x.legs[1][2]
            spent = spent + x.legs[1][2]
          elseif k == "adjustment" then
            for _, l in ipairs(x.legs) do
              if l[1].type == "expense" then spent = spent + l[2] - l[3] end
              if l[1].type == "income" then other = other + l[3] - l[2] end
            end
          end
        end
      end
      local sales = r.income[1]
      assert.equal(income, cents(sales.children[1].total))
      assert.equal(income + other, cents(sales.total))
      assert.equal(spent, cents(r.total_expenses.total))
      for _, e in ipairs(r.expenses) do
        if by_cat[e.description] then assert.equal(by_cat[e.description], cents(e.total), e.description) end
      end
      assert.equal(income + other - spent, cents(r.net_profit.total))
      for _, entry in ipairs { r.net_profit, r.total_income, r.total_expenses, sales } do
        local sum = 0
        for _, d in ipairs(entry.data) do sum = sum + cents(d) end
        assert.equal(cents(entry.total), sum, entry.description .. ": periods sum to the total")
      end
      assert.equal(4, #r.dates) -- 2024-07-01 .. 2025-06-30 in quarters from the start
      if not cash_based then
        assert.equal(A.earnings("USD", from, to), cents(r.net_profit.total))
      end
    end
  end)

  it("tax summary: tax charged on sent invoices and the total invoiced, per currency", function()
    local r = report("aBcD1", "taxsummary", { start_date = "2025-06-01", end_date = "2025-06-30" })
    local gst
    for _, t in ipairs(r.taxes) do if t.tax_name == "GST" then gst = t end end
    assert.equal(500, cents(gst.tax_collected))
    assert.equal(20000, cents(gst.taxable_amount_collected))
    assert.equal(500, cents(gst.net_tax))
    local invoiced = 0
    for _, x in ipairs(A.list) do
      if x.kind == "invoice" and x.code == "USD" and x.day >= day("2025-06-01") then
        invoiced = invoiced + x.legs[1][2]
      end
    end
    assert.equal(invoiced, cents(r.total_invoiced))
    local cad = report("xYz92", "taxsummary", { currency_code = "USD" })
    assert.equal("USD", cad.total_invoiced.code)
  end)

  it("refuses bad parameters as FreshBooks does (400 errno 1004 naming the field), ignores unknown ones", function()
    local P = "/accounting/account/aBcD1/reports/accounting/"
    for _, case in ipairs {
      { "profitloss_entity", { start_date = "2025-02-30" }, "start_date" },
      { "balance_sheet", { dates = { "2025-01-01", "yesterday" } }, "dates" },
      { "trial_balance", { currency_code = "XYZ" }, "currency_code" },
      { "accounts_aging", { currency_code = "usd" }, "currency_code" },
      { "taxsummary", { cash_based = "maybe" }, "cash_based" },
      { "invoice_details", { date_type = "due" }, "date_type" },
      { "invoice_details", { statusids = { "lost" } }, "statusids" },
      { "payments_collected", { clientids = { "ten" } }, "clientids" },
      { "expense_details", { group_by = "weekday" }, "group_by" },
      { "profitloss_entity", { resolution = "2w" }, "resolution" },
      { "general_ledger", { accountid = "00000000-0000-4000-8000-000000000000" }, "accountid" },
      { "cash_flow", { start_date = "2025-06-01", end_date = "2025-05-01" }, "end_date" },
    } do
      local err = refused(P .. case[1], case[2])
      assert.equal(400, err.status, case[1])
      assert.equal("validation", err.code)
      assert.equal(1004, err.errno)
      assert.equal(case[3], err.errors[1].field, case[1])
    end
    local chart = "/accounting/businesses/" .. UUID.aBcD1 .. "/reports/chart_of_accounts"
    assert.equal("account_type", refused(chart, { account_type = "cash" }).errors[1].field)
    -- unknown parameters change nothing
    local plain = raw_report("aBcD1", "trial_balance")
    local extra = raw_report("aBcD1", "trial_balance", { colour = "blue", ["search[amount_min]"] = "5" })
    assert.same(plain.data, extra.data)
    -- no reports scope; a business the user is not in (by id and by uuid)
    local narrow = H.session(sb, { tokens = sb:token{ scope = "user:profile:read" } })
    local _, err = narrow:request{ path = P .. "balance_sheet" }
    assert.equal(403, err.status)
    _, err = fb:request{ path = "/accounting/account/QmP57/reports/accounting/balance_sheet" }
    assert.equal(403, err.status)
    _, err = fb:request{ path = "/accounting/businesses/4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0003/reports/cash_flow" }
    assert.equal(403, err.status)
  end)

  -- A CSV document -> rows of fields (RFC 4180: quotes, doubled quotes, CRLF; the command's LF too).
  local function parse_csv(text)
    local rows, row, field, i, quoted = {}, {}, {}, 1, false
    while i <= #text do
      local ch = text:sub(i, i)
      if quoted then
        if ch == '"' and text:sub(i + 1, i + 1) == '"' then field[#field + 1] = '"'; i = i + 1
        elseif ch == '"' then quoted = false
        else field[#field + 1] = ch end
      elseif ch == '"' then quoted = true
      elseif ch == "," then row[#row + 1] = table.concat(field); field = {}
      elseif ch == "\r" and text:sub(i + 1, i + 1) == "\n" or ch == "\n" then
        row[#row + 1] = table.concat(field); rows[#rows + 1] = row; row, field = {}, {}
        if ch == "\r" then i = i + 1 end
      else field[#field + 1] = ch end
      i = i + 1
    end
    return rows
  end

  it("downloads each report with a download token as CSV, the same figures; refuses forged, foreign and old tokens",
    function()
    local P = "/accounting/account/aBcD1/"
    local aged = report("aBcD1", "accounts_aging", { currency_code = "USD" })
    local res = request(P .. "links/reports/" .. aged.download_token .. "/accounts_aging.csv")
    assert.matches("^text/csv", res.headers["content-type"])
    local rows = parse_csv(res.body)
    assert.same({ "Client", "Email", "0-30", "31-60", "61-90", "91+", "Total" }, rows[1])
    assert.equal(#aged.accounts + 2, #rows)
    for i, a in ipairs(aged.accounts) do
      assert.equal(a.organization, rows[i + 1][1])
      assert.equal(a.total.amount, rows[i + 1][7])
    end
    assert.same({ "Total", "", aged.totals["0-30"].amount, aged.totals["31-60"].amount, aged.totals["61-90"].amount,
      aged.totals["91+"].amount, aged.totals.total.amount }, rows[#rows])
    -- every report that answers a token downloads, with the parameters it was asked with
    local tb = report("aBcD1", "trial_balance", { start_date = "2025-01-01", end_date = "2025-03-31" })
    rows = parse_csv(request(P .. "links/reports/" .. tb.download_token .. "/trial_balance.csv").body)
    assert.equal(#tb.data + 1, #rows)
    local dr = 0
    for i = 2, #rows do dr = dr + cents(rows[i][5]) end
    local want = 0
    for _, l in ipairs(tb.data) do want = want + cents(l.debit) end
    assert.equal(want, dr)
    for _, kind in ipairs { "profitloss_entity", "taxsummary", "payments_collected", "balance_sheet",
                            "invoice_details", "expense_details", "general_ledger", "cash_flow",
                            "manual_journal_entry" } do
      local r = report("aBcD1", kind)
      local key = kind == "profitloss_entity" and "profitloss" or kind
      local csv = request(P .. "links/reports/" .. r.download_token .. "/" .. key .. ".csv").body
      assert.is_true(#parse_csv(csv) >= 1, kind)
    end
    -- forged (one signature character changed), another report's name, another account
    local t = aged.download_token
    local forged = t:sub(1, -2) .. (t:sub(-1) == "A" and "B" or "A")
    for _, path in ipairs { P .. "links/reports/" .. forged .. "/accounts_aging.csv",
                            P .. "links/reports/" .. t .. "/trial_balance.csv",
                            "/accounting/account/xYz92/links/reports/" .. t .. "/accounts_aging.csv" } do
      local _, err = fb:request{ path = path }
      assert.equal(404, err.status, path)
    end
    -- thirty days later the token has expired
    sb:admin("POST", "/_sandbox/clock", { advance = 31 * 86400 })
    local _, err = fb:request{ path = P .. "links/reports/" .. t .. "/accounts_aging.csv" }
    sb:admin("POST", "/_sandbox/clock", { offset = 0 })
    assert.equal(404, err.status)
  end)

  it("the command: each report's rows are FreshBooks' own CSV of it, and its figures are the spec's", function()
    local w, t = C.world(sb), nil
    finally(function() if t then t:close() end w:cleanup() end)
    os.execute("mkdir -p -m 700 " .. sandbox.shell_quote(w.config_home .. "/freshbooks"))
    assert(require("freshbooks.store.file")(w.tokens).save(sb:token{ user = "alice" }))
    local function run(args)
      local code, out, err = w:run(args)
      assert.equal(0, code, args .. ": " .. err)
      return out
    end
    -- Every report with a download: the command's CSV (the library's values laid out by the command)
    -- is the download of the same report (the sandbox's own layout), row for row; options and --param
    -- become the report's parameters.
    for _, c in ipairs {
      { "aBcD1", "accounts_aging", "--as-of 2025-05-31 --currency usd",
        { end_date = "2025-05-31", currency_code = "USD" } },
      { "aBcD1", "balance_sheet", "--as-of 2025-03-31", { dates = { "2025-03-31" } } },
      { "xYz92", "cash_flow", "--from 2025-01-01 --to 2025-06-30 --currency USD",
        { start_date = "2025-01-01", end_date = "2025-06-30", currency_code = "USD" } },
      { "aBcD1", "expense_details", "--param group_by=vendor", { group_by = "vendor" } },
      { "aBcD1", "general_ledger", "--from 2025-05-01", { start_date = "2025-05-01" } },
      { "aBcD1", "invoice_details", "--param statusids=paid,sent", { statusids = { "paid", "sent" } } },
      { "aBcD1", "manual_journal_entry", "--from 2024-01-01", { start_date = "2024-01-01" } },
      { "xYz92", "payments_collected", "", {} },
      { "aBcD1", "profit_and_loss", "--param resolution=3m --param cash_based=true", { resolution = "3m",
        cash_based = true } },
      { "aBcD1", "tax_summary", "--from 2025-06-01", { start_date = "2025-06-01" } },
      { "xYz92", "trial_balance", "--to 2025-04-30 --currency CAD",
        { end_date = "2025-04-30", currency_code = "CAD" } },
    } do
      local aid, name = c[1], c[2]
      local mine = parse_csv(run(("report %s --business %s --format csv %s"):format(name, aid, c[3])))
      local rep = reporter(aid, name)
      local theirs = parse_csv(assert(rep:download(assert(rep:get(c[4])).download_token)))
      assert.is_true(#theirs >= 2, name .. " has rows")
      assert.same(theirs, mine, name)
    end
    -- --download writes FreshBooks' CSV itself, byte for byte
    local rep = reporter("aBcD1", "trial_balance")
    assert.equal(assert(rep:download(rep:get{ start_date = "2025-01-01" }.download_token)),
      run("report trial_balance --business aBcD1 --from 2025-01-01 --download"))

    -- Aging through the command, in the foreign currency of the multi-currency business (both are proven
    -- through the library above): each client's buckets and the total are the spec's own.
    for _, code in ipairs { "USD" } do
      local rows = cjson.decode(run("report accounts_aging --business xYz92 --format json --as-of 2025-06-30"
        .. " --currency " .. code))
      local want, sum = aging(X, code, TODAY), 0
      for _, row in ipairs(rows) do
        if row.Client ~= "Total" then
          local id
          for cid, c in pairs(X.client) do if c.organization == row.Client then id = cid end end
          for _, b in ipairs { "0-30", "31-60", "61-90", "91+" } do
            assert.equal(want[id] and want[id][b] or 0, cents(row[b]), code .. " " .. row.Client .. " " .. b)
            sum = sum + cents(row[b])
          end
        end
      end
      assert.is_true(sum > 0, code)
      assert.equal(sum, cents(rows[#rows].Total), code .. ": the Total row")
    end
    -- The balance sheet on a day in CAD: assets are the spec's, and equal liabilities and equity.
    local on = TODAY - 31
    local rows = cjson.decode(run("report balance_sheet --business xYz92 --format json --currency CAD --as-of "
      .. fmt(on)))
    local assets = 0
    for _, a in ipairs(X.chart) do
      if a.type == "asset" and not a.parent_account then assets = assets + X.balance(a, "CAD", nil, on, true) end
    end
    local totals = {}
    for _, row in ipairs(rows) do if row.Type == "" then totals[row.Account] = cents(row[fmt(on)]) end end
    assert.equal(assets, totals["Total Assets"])
    assert.equal(assets, totals["Total Liabilities and Equity"])
    -- The chart of accounts (no download): each account's balance over the range is the spec's.
    rows = cjson.decode(run("report chart_of_accounts --business aBcD1 --format json --currency USD --from "
      .. fmt(TODAY - 90) .. " --to " .. fmt(TODAY)))
    local tops = 0
    for _, row in ipairs(rows) do
      if not row.Account:find("^ ") then
        tops = tops + 1
        local a
        for _, l in ipairs(A.chart) do if l.number == row.Number and not l.parent_account then a = l end end
        assert.matches("^%-?%d+%.%d%d%d$", row.Balance)
        assert.equal(A.balance(a, "USD", TODAY - 90, TODAY, true), cents(row.Balance), row.Account)
      end
    end
    assert.equal(#report("aBcD1", "chart_of_accounts"), tops)

    -- On a terminal: a table fitted to its width (80 columns for the general ledger's ten).
    t = w:tmux("report general_ledger --business aBcD1 --from 2025-06-01 --no-pager", { width = 80 })
    assert.equal(0, t:wait(), t:screen())
    local screen = t:screen()
    assert.truthy(screen:find("general ledger 2025-06-01 to 2025-06-30 (USD): Sandbox Widgets Inc.", 1, true), screen)
    -- dates and amounts whole
    assert.truthy(screen:find("\nCash +1000 .- 2025%-06%-%d%d .- %d+%.%d%d +%d+%.%d%d\n"), screen)
    assert.truthy(screen:find("\nAccou%S* +Number +Sub%S* +Date +Type .- +Debit +Credit\n"), screen)
    local lines = 0
    for l in screen:gmatch("[^\n]+") do
      assert.truthy(require("freshbooks.cli.text").width(l) <= 80, l)
      if l:find("^Cash ") then lines = lines + 1 end
    end
    assert.is_true(lines >= 2, screen)
  end)

  it("team members: a business's team, paged, filtered by active; one by uuid; members only", function()
    local T = "/auth/api/v1/businesses/1000001/team_members"
    local r = get(T)
    assert.equal(3, r.meta.total)
    assert.equal("alice@example.com", r.response[1].email)
    assert.equal(1001, r.response[1].identity_id)
    local active = get(T, { active = "true" })
    for _, m in ipairs(active.response) do assert.is_true(m.active) end
    assert.equal(2, active.meta.total)
    local p2 = get(T, { per_page = 1, page = 2 })
    assert.equal(1, #p2.response)
    assert.equal(r.response[2].uuid, p2.response[1].uuid)
    local one = get(T .. "/" .. r.response[3].uuid)
    assert.same(r.response[3], one.response)
    local _, err = fb:request{ path = T .. "/not-a-member" }
    assert.equal(404, err.status)
    _, err = fb:request{ path = T, query = { active = "yes" } }
    assert.equal(400, err.status)
    _, err = fb:request{ path = "/auth/api/v1/businesses/1000003/team_members" }
    assert.equal(403, err.status)
    local narrow = H.session(sb, { tokens = sb:token{ scope = "user:profile:read" } })
    _, err = narrow:request{ path = T }
    assert.equal(403, err.status)
  end)

  it("accepts an estimate; answers an invoice as a PDF", function()
    local P = "/accounting/account/aBcD1/"
    local est = assert(fb:request{ method = "PUT", path = P .. "estimates/estimates/1",
      json = { estimate = { action_accept = true } } }).data.response.result.estimate
    assert.equal(5, est.status)
    assert.equal("accepted", est.ui_status)
    assert.is_true(est.accepted)
    local _, err = fb:request{ method = "PUT", path = P .. "estimates/estimates/2",
      json = { estimate = { action_accept = "yes" } } }
    assert.equal(422, err.status)
    local pdf = request(P .. "invoices/invoices/3/pdf")
    assert.equal("application/pdf", pdf.headers["content-type"])
    assert.equal("%PDF-1.4", pdf.body:sub(1, 8))
    assert.truthy(pdf.body:find("Invoice 0000003", 1, true))
    assert.truthy(pdf.body:find("%%EOF", 1, true))
    _, err = fb:request{ path = P .. "invoices/invoices/999999/pdf" }
    assert.equal(404, err.status)
  end)

  -- Last: it replaces the data. Past 400 invoices the seed records no payments: a paid amount without a
  -- payment record is collected on the invoice's date_paid (and a partial one by the same day rule).
  it("collects paid amounts that have no payment record on the invoice's date_paid; the books still balance",
    function()
    sb:admin("POST", "/_sandbox/reset", { invoices = 450, seed = 3 })
    fb = H.session(sb)
    local invoices = all("aBcD1", "invoices/invoices", "invoices", { search = { invoiceids = { 420, 421, 422, 423,
      424, 425, 426, 427, 428, 429, 430, 431, 432, 433, 434, 435, 436, 437, 438, 439, 440 } } })
    local paid
    for _, inv in ipairs(invoices) do
      if inv.date_paid and inv.status ~= 1 and day(inv.date_paid) < TODAY then paid = inv end
    end
    assert(paid, "a paid invoice past the 400th")
    local records = get("/accounting/account/aBcD1/payments/payments", { search = { invoiceid = paid.id } })
    assert.equal(0, records.response.result.total)
    local function owes(asof)
      local r = report("aBcD1", "accounts_aging", { end_date = fmt(asof) })
      for _, a in ipairs(r.accounts) do
        if a.userid == paid.customerid then return cents(a.total), r end
      end
      return 0, r
    end
    local before = owes(day(paid.date_paid) - 1)
    local on = owes(day(paid.date_paid))
    assert.equal(cents(paid.amount), before - on)
    local bs = report("aBcD1", "balance_sheet")
    assert.equal(cents(bs.assets_total[1].balance), cents(bs.liabilities_and_equity_total[1].balance))
    local ar
    for _, a in ipairs(bs.data[1].accounts) do if a.account_name == "Accounts Receivable" then ar = a end end
    local r = report("aBcD1", "accounts_aging")
    assert.equal(cents(ar.balances[1].balance), cents(r.totals.total))
    local outstanding = 0
    for _, inv in ipairs(all("aBcD1", "invoices/invoices", "invoices")) do
      if inv.status ~= 1 then outstanding = outstanding + cents(inv.outstanding) end
    end
    assert.equal(outstanding, cents(r.totals.total))
  end)
end)
