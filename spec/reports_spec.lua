-- The library's side of every report, team members and the last extras, against one sandbox: report
-- parameters checked before anything is sent, CSV downloads (by account and by business uuid), team
-- members paged to their total, estimate acceptance, the invoice PDF, what guest scripts may call, and
-- the command's list of report kinds. The reports' figures are proven in spec/sandbox_reports_spec.lua.
local cjson = require "cjson"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local C = require "support.cli"
local catalogue = require "freshbooks.catalogue"

local ALICE_1 = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001"

describe("reports, team members and extras", function()
  local sb, fb, acct

  setup(function()
    sb = sandbox.start{ invoices = 40, seed = 5 }
    fb = H.session(sb)
    acct = fb:account("aBcD1")
  end)
  teardown(function() if sb then sb:stop() end end)

  -- The requests the sandbox saw since `seq`, as "METHOD path".
  local function seen(seq)
    local out = {}
    for _, e in ipairs(H.log(sb, seq)) do out[#out + 1] = e.method .. " " .. e.path end
    return out
  end

  it("holds every ISO 4217 code Debian's iso-codes knows", function()
    local f = assert(io.open("/usr/share/iso-codes/json/iso_4217.json", "rb"))
    local doc = cjson.decode(f:read("*a"))
    f:close()
    local ours = {}
    for c in catalogue.currencies:gmatch("%S+") do
      assert.matches("^%u%u%u$", c)
      ours[c] = true
    end
    assert.is_true(#doc["4217"] > 150)
    for _, c in ipairs(doc["4217"]) do assert.is_true(ours[c.alpha_3], c.alpha_3) end
  end)

  it("checks a report's parameters before anything is sent: each bad one raises, naming it", function()
    local bs, tb = acct.reports.balance_sheet, acct.reports.trial_balance
    local chart = fb:accounting_business(ALICE_1).reports.chart_of_accounts
    local pl, pc = acct.reports.profit_and_loss, acct.reports.payments_collected
    local ed, gl = acct.reports.expense_details, fb:accounting_business(ALICE_1).reports.general_ledger
    local seq = H.last_seq(sb)
    for _, case in ipairs {
      { tb, { colour = "blue" }, "unknown parameter 'colour' (this report takes currency_code, end_date, start_date)" },
      { tb, { [1] = "2025-01-01" }, "unknown parameter '1'" },
      { tb, { start_date = "2025-02-30" }, "start_date must be a date YYYY-MM-DD" },
      { tb, { end_date = 20250630 }, "end_date must be a date YYYY-MM-DD" },
      { tb, { start_date = "2025-06-02", end_date = "2025-06-01" }, "start_date must not be after end_date" },
      { tb, { currency_code = "usd" }, "currency_code must be an ISO 4217 currency code such as USD" },
      { tb, { currency_code = "XYZ" }, "currency_code must be an ISO 4217" },
      { bs, { dates = {} }, "dates must be a date YYYY-MM-DD, or a non-empty list of them" },
      { bs, { dates = { "2025-01-01", "yesterday" } }, "dates must be a date YYYY-MM-DD, or a non-empty list" },
      { bs, { dates = { a = "2025-01-01" } }, "dates must be a date" },
      { bs, { start_date = "2025-01-01" }, "unknown parameter 'start_date' (this report takes currency_code, dates)" },
      { pl, { resolution = "2w" }, "resolution must be a period such as m, 3m or y" },
      { pl, { resolution = "0m" }, "resolution must be a period" },
      { pl, { cash_based = "true" }, "cash_based must be a boolean" },
      { pc, { clientids = { 1, "2" } }, "clientids must be a whole number >= 1, or a non-empty list of them" },
      { pc, { clientids = { 1.5 } }, "clientids must be a whole number >= 1" },
      { pc, { currency_codes = { "USD", "usd" } }, "currency_codes must be an ISO 4217 currency code" },
      { pc, { payment_method = "" }, "payment_method must be a non-empty string" },
      { ed, { group_by = "weekday" }, "group_by must be one of parent_category, clients, vendor, author" },
      { ed, { client_id = 0 }, "client_id must be a whole number >= 1" },
      { gl, { accountid = "cash" }, "accountid must be a UUID" },
      { chart, { sort = "colour_desc" }, "sort must be a sort field (f, -f, f_asc or f_desc) of account_name" },
      { chart, { account_type = "cash" }, "account_type must be one of asset, liability, equity, income, expense" },
      { tb, 42, "query must be a table or a string" },
    } do
      local ok, msg = pcall(case[1].get, case[1], case[2])
      assert.is_false(ok, case[3])
      assert.truthy(tostring(msg):find("freshbooks: " .. case[1].name .. ":get: " .. case[3], 1, true), msg)
    end
    -- raised at the caller's line
    local ok, msg = pcall(function()
      local r = tb:get{ colour = 1 } -- not a tail call: this line is the caller's
      return r
    end)
    assert.is_false(ok)
    assert.matches("^spec/reports_spec%.lua:%d+: ", msg)
    assert.same({}, seen(seq), "nothing was sent")
    -- good values of every kind go out in FreshBooks' forms; a string query goes as it is
    local urls = {}
    local logged = H.session(sb, { log = function(e) if e.type == "request" then urls[#urls + 1] = e.url end end })
    local la, lb = logged:account("aBcD1"), logged:accounting_business(ALICE_1)
    assert(la.reports.balance_sheet:get{ dates = "2025-03-31", currency_code = "CAD" })
    assert(la.reports.payments_collected:get{ clientids = { 10001, 10002 }, currency_codes = { "USD" },
      payment_methods = { "Cash", "Check" } })
    assert(lb.reports.chart_of_accounts:get{ sort = "-balance", account_type = "asset", state = "active",
      use_ledger_entries = true })
    local _, err = la.reports.trial_balance:get("start_date=2025-02-30")
    assert.equal("validation", err.code)
    assert.equal("start_date", err.errors[1].field)
    assert.matches("/reports/accounting/balance_sheet%?currency_code=CAD&dates%[%]=2025%-03%-31$", urls[1])
    assert.truthy(urls[2]:find("clientids[]=10001&clientids[]=10002", 1, true), urls[2])
    assert.truthy(urls[3]:find("sort=balance_desc", 1, true), urls[3])
    assert.truthy(urls[3]:find("use_ledger_entries=true", 1, true), urls[3])
    assert.matches("trial_balance%?start_date=2025%-02%-30$", urls[4])
  end)

  it("downloads a report's CSV by its token, by account and by business uuid", function()
    local aged = acct.reports.accounts_aging
    local r = assert(aged:get{ end_date = "2025-06-30" })
    local csv = assert(aged:download(r.download_token))
    assert.equal("Client,Email,0-30,31-60,61-90,91+,Total\r\n", csv:sub(1, 41))
    assert.truthy(csv:find("\r\nTotal,," .. r.totals["0-30"].amount .. ",", 1, true), csv)
    -- by business uuid: the account is the membership's (the identity is read once per session)
    local fresh = H.session(sb)
    local cf = fresh:accounting_business(ALICE_1).reports.cash_flow
    local seq = H.last_seq(sb)
    local flow = assert(cf:get{ currency_code = "USD" })
    assert.truthy(assert(cf:download(flow.download_token)):find("^Activity,Detail,Account,Sub%-account,Total\r\n"))
    assert.truthy(assert(cf:download(flow.download_token)))
    local sent = seen(seq)
    assert.equal(4, #sent, table.concat(sent, "\n"))
    assert.equal("GET /auth/api/v1/users/me", sent[2])
    assert.matches("^GET /accounting/account/aBcD1/links/reports/[%w_%-%.]+/cash_flow%.csv$", sent[3])
    -- failures are coded: a token that is not FreshBooks', another report's, a business of no membership
    local _, err = aged:download(r.download_token:sub(1, -3) .. "xx")
    assert.equal("not_found", err.code)
    assert.equal(404, err.status)
    _, err = acct.reports.trial_balance:download(r.download_token)
    assert.equal("not_found", err.code)
    seq = H.last_seq(sb)
    _, err = fresh:accounting_business("4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0099").reports.general_ledger:download(
      r.download_token)
    assert.equal("not_found", err.code)
    assert.truthy(err.message:find("business_uuid", 1, true), err.message)
    assert.same({}, seen(seq))
    -- bad arguments raise: no token, a path in the token, a report without a download
    for _, bad in ipairs { 42, "", "..", "a/b", "a%2Fb", "a b" } do
      assert.has_error(function() aged:download(bad) end,
        "freshbooks: accounts_aging:download: token must be the download_token of a report")
    end
    assert.has_error(function()
      fb:accounting_business(ALICE_1).reports.chart_of_accounts:download(r.download_token)
    end, "freshbooks: chart_of_accounts:download: FreshBooks has no download for this report")
    -- an answer that is no CSV (an HTML error page under 200) is bad_response, not the CSV
    sb:admin("POST", "/_sandbox/faults", { route = "/links/reports/", fault = "html", status = 200, times = 1 })
    _, err = aged:download(r.download_token)
    assert.equal("bad_response", err.code)
  end)

  it("lists team members to their total (FreshBooks says no pages), gets one by uuid, filters active", function()
    local team = fb:business(1000001).team_members
    local page, meta = assert(team:list{ per_page = 2 })
    assert.equal(2, #page)
    assert.same({ page = 1, pages = 2, per_page = 2, total = 3 }, meta)
    -- the walk stops on the total: per_page 1 is three requests, not a fourth for an empty page
    local seq = H.last_seq(sb)
    local all = assert(team:all{ per_page = 1 })
    assert.equal(3, #all)
    assert.equal(3, #seen(seq))
    local n = 0
    for m, err in team:each({ per_page = 1 }, { parallel = 3 }) do
      assert(m, err and tostring(err))
      n = n + 1
    end
    assert.equal(3, n)
    assert.same(all[3], assert(team:get(all[3].uuid)))
    for _, m in ipairs(assert(team:all{ active = true })) do assert.is_true(m.active) end
    -- identity-style errors, coded
    local _, err = team:get("4e1c1a52-0000-4000-8000-000000000000")
    assert.equal("not_found", err.code)
    _, err = team:list{ active = "yes" }
    assert.equal(400, err.status)
    assert.equal("invalid_request", err.code)
    _, err = fb:business(1000003).team_members:list()
    assert.equal(403, err.status)
    -- the verbs FreshBooks has, no others
    assert.has_error(function() team:create{ email = "x@example.com" } end,
      "freshbooks: team_members: FreshBooks has no create for this resource")
  end)

  it("accepts an estimate; reads an invoice as a PDF, and says bad_response for anything else", function()
    local est = assert(acct.estimates:accept(1))
    assert.equal(5, est.status)
    assert.equal("accepted", est.ui_status)
    local pdf, ct = assert(acct.invoices:pdf(3))
    assert.equal("application/pdf", ct)
    assert.equal("%PDF-", pdf:sub(1, 5))
    local _, err = acct.invoices:pdf(999999)
    assert.equal("not_found", err.code)
    sb:admin("POST", "/_sandbox/faults", { route = "/pdf$", fault = "html", status = 200, times = 1 })
    _, err = acct.invoices:pdf(3)
    assert.equal("bad_response", err.code)
    assert.has_error(function() acct.invoices:accept(1) end,
      "freshbooks: invoices: FreshBooks has no accept for this resource")
    assert.has_error(function() acct.estimates:pdf(1) end,
      "freshbooks: estimates: FreshBooks has no pdf for this resource")
  end)

  it("lets guest scripts read every report, download its CSV and list the team, as reads", function()
    local guest = require "freshbooks.guest"
    local ok, a, b, c, d = guest.run(fb, [[
      local fb = ...
      local acct, books = fb:account("aBcD1"), fb:accounting_business("]] .. ALICE_1 .. [[")
      local r = assert(acct.reports.trial_balance:get{ start_date = "2025-01-01" })
      local csv = assert(acct.reports.trial_balance:download(r.download_token))
      local chart = assert(books.reports.chart_of_accounts:get{})
      local team = assert(fb:business(1000001).team_members:all())
      local raised = not pcall(acct.reports.trial_balance.get, acct.reports.trial_balance, { colour = 1 })
      return csv:match("^[^\r\n]*"), #chart > 0, #team, raised
    ]], "=reports.lua", { businesses = { "aBcD1" } })
    assert(ok, a)
    assert.equal("Account,Number,Sub-account,Sub-account Number,Debit,Credit", a)
    assert.is_true(b)
    assert.equal(3, c)
    assert.is_true(d)
    -- the extras are not among a guest's verbs
    ok, a = guest.run(fb, [[ return fb:account("aBcD1").estimates:accept(1) ]], "=w.lua", { write = true })
    assert.is_nil(ok)
    assert.truthy(tostring(a.message):find("method 'accept'", 1, true), tostring(a.message))
  end)

  it("the command lists twelve reports, the billing report and the mirror's, one line each", function()
    local w = C.world(sb)
    finally(function() w:cleanup() end)
    local code, out = w:run("report --help")
    assert.equal(0, code)
    local kinds = require("freshbooks.cli.report").KINDS
    local names = {}
    for _, k in ipairs(kinds) do
      names[k.name] = true
      local line = out:match("\n   " .. k.name:gsub("_", "%%_") .. " +([^\n]+)\n")
      assert.equal(k.summary, line, k.name)
    end
    local reports = 0
    for _, e in ipairs(catalogue.entries) do
      if e.verbs.report then
        reports = reports + 1
        assert.is_true(names[e.name], e.name .. " is a kind")
      end
    end
    assert.equal(12, reports)
    assert.equal(16, #kinds) -- and billing, revenue, unbilled, dso
    -- completion offers the same rows
    code, out = w:run("__complete bash -- report ''", { no_flags = true })
    assert.equal(0, code)
    for _, k in ipairs(kinds) do assert.truthy(out:find("\n" .. k.name .. "\n", 1, true) or out:find("^" .. k.name
      .. "\n"), k.name .. " in:\n" .. out) end
  end)
end)
