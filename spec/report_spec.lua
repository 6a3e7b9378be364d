-- The billing report (freshbooks.report): exact money, aging buckets, and whole runs against the
-- sandbox. `freshbooks report`, the command around it, is driven in spec/cli_spec.lua.
local report = require "freshbooks.report"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"

describe("billing report arithmetic", function()
  local function sum(list)
    local acc
    for _, s in ipairs(list) do acc = report.add_money(acc, assert(report.parse_money(s))) end
    return report.format_money(acc)
  end

  it("adds decimal strings exactly", function()
    assert.equal("0.30", sum{ "0.1", "0.2" })
    assert.equal("3.75", sum{ "1.5", "2.25" })
    assert.equal("0.00", sum{ "10.01", "-10.01" })
    assert.equal("-0.50", sum{ "1.00", "-1.50" })
    assert.equal("1.005", sum{ "1", "0.005" })
    assert.equal("0.10", sum{ "0.01", "0.01", "0.01", "0.01", "0.01", "0.01", "0.01", "0.01", "0.01", "0.01" })
    assert.equal("9007199254740.91", sum{ "9007199254740.90", "0.01" }) -- 15 digits: exact in doubles too
    assert.equal("12", report.format_money(report.parse_money("12"), 0))
  end)

  it("refuses what is not a decimal string", function()
    assert.is_nil(report.parse_money("1,000.00"))
    assert.is_nil(report.parse_money("abc"))
    assert.is_nil(report.parse_money(""))
    assert.has_error(function() report.parse_money(1.5) end)
  end)

  it("buckets days past due", function()
    local want = { [-5] = "current", [0] = "current", [1] = "1-30", [30] = "1-30", [31] = "31-60", [60] = "31-60",
                   [61] = "61-90", [90] = "61-90", [91] = "90+", [1000] = "90+" }
    for days, b in pairs(want) do assert.equal(b, report.bucket(days), tostring(days)) end
  end)

  it("counts days on the civil calendar", function()
    assert.equal(0, require("freshbooks.date").parse("1970-01-01"))
    assert.equal(20269, require("freshbooks.date").parse("2025-06-30"))
    local date = require "freshbooks.date"
    assert.equal(60, date.parse("2024-03-01") - date.parse("2024-01-01")) -- leap year
    for _, d in ipairs{ 0, 20269, -719468, 2932896 } do assert.equal(d, date.parse(date.format(d))) end
    assert.is_nil(require("freshbooks.date").parse("30/06/2025"))
  end)

  it("folds only owed invoices, by client and currency", function()
    local acc = report.accumulator(require("freshbooks.date").parse("2025-06-30"))
    local function inv(t)
      t.vis_state = t.vis_state or 0
      t.v3_status = t.v3_status or "sent"
      return t
    end
    assert.is_true(acc.add(inv{ customerid = 1, organization = "A", due_date = "2025-06-30",
      outstanding = { amount = "10.10", code = "USD" } }))
    assert.is_true(acc.add(inv{ customerid = 1, organization = "A", due_date = "2025-05-01",
      outstanding = { amount = "0.20", code = "USD" } }))
    assert.is_true(acc.add(inv{ customerid = 1, organization = "A", due_date = "2025-01-01",
      outstanding = { amount = "5", code = "EUR" } }))
    assert.is_true(acc.add(inv{ customerid = 2, fname = "Bo", lname = "B", create_date = "2025-06-01",
      due_offset_days = 0,
      outstanding = { amount = "1.00", code = "USD" } }))
    assert.is_false(acc.add(inv{ customerid = 3, due_date = "2025-01-01", outstanding = { amount = "0.00",
      code = "USD" } }))
    assert.is_false(acc.add(inv{ customerid = 3, due_date = "2025-01-01", v3_status = "draft", status = 1,
      outstanding = { amount = "9.00", code = "USD" } }))
    assert.is_false(acc.add(inv{ customerid = 3, due_date = "2025-01-01", vis_state = 1,
      outstanding = { amount = "9.00", code = "USD" } }))
    local rows = acc.rows()
    assert.equal(3, #rows)
    assert.same({ "A", "EUR", 1, "5.00", "5.00" }, { rows[1].client, rows[1].currency, rows[1].invoices,
      report.format_money(rows[1].outstanding), report.format_money(rows[1]["90+"]) })
    assert.same({ "A", "USD", 2, "10.30", "10.10", "0.20" }, { rows[2].client, rows[2].currency, rows[2].invoices,
      report.format_money(rows[2].outstanding), report.format_money(rows[2].current),
        report.format_money(rows[2]["31-60"]) })
    assert.same({ "Bo B", "1.00", "1-30" }, { rows[3].client, report.format_money(rows[3].outstanding), "1-30" })
    assert.equal("1.00", report.format_money(rows[3]["1-30"]))
    local totals = acc.currency_totals()
    assert.same({ "EUR", "5.00", "USD", "11.30", 3 }, { totals[1].currency, report.format_money(totals[1].outstanding),
      totals[2].currency, report.format_money(totals[2].outstanding), totals[2].invoices })
  end)
end)

describe("billing report with a hostile identity (no network)", function()
  -- users/me memberships whose account_id is missing or no id at all: that business is logged and
  -- failed, the others are reported, and nothing raises.
  it("logs a membership without a usable account_id and reports the rest", function()
    local cjson = require "cjson"
    local freshbooks = require "freshbooks"
    for _, bad in ipairs{ cjson.null, 1e300, -1e300, 1.5, true, {}, "a/b", "..", "" } do
      local me = { response = { id = 1, business_memberships = {
        { id = 5, role = "owner", business = { id = 7, account_id = bad, name = "Bad" } },
        { id = 6, role = "owner", business = { id = 8, account_id = "good1", name = "Good" } } } } }
      local fb = freshbooks.new{ client_id = "app", client_secret = "the-secret",
        redirect_uri = "https://example.com/cb", api_url = "https://fb.test", retry = false,
        tokens = { access_token = "tok", refresh_token = "rt" },
        transport = function(req)
          local body = req.url:find("users/me", 1, true) and cjson.encode(me)
            or '{"response":{"result":{"invoices":[],"page":1,"pages":1,"per_page":100,"total":0}}}'
          return { status = 200, headers = { ["content-type"] = "application/json" }, body = body }
        end }
      local written, logged = {}, {}
      local ok, res, err = pcall(report.run, fb, { format = "csv", as_of = "2025-06-30" },
        { write = function(_, ...) for _, s in ipairs{ ... } do written[#written + 1] = s end end },
        function(line) logged[#logged + 1] = line end)
      assert.is_true(ok, tostring(bad) .. ": " .. tostring(res))
      assert.is_nil(res, tostring(bad))
      assert.equal("bad_response", err.code, tostring(bad))
      assert.matches("^Bad: ", logged[1] or "", 1, false, tostring(bad))
      assert.equal(1, #logged, tostring(bad)) -- Good's invoices were read
    end
  end)
end)

describe("billing report against the sandbox", function()
  local sb
  local split_csv = H.split_csv

  setup(function() sb = sandbox.start{ invoices = 250 } end)
  teardown(function() if sb then sb:stop() end end)

  local function cents(s)
    local sign, int, frac = s:match("^(%-?)(%d+)%.(%d%d)$")
    assert(int, "not a 2-decimal amount: " .. tostring(s))
    local c = tonumber(int) * 100 + tonumber(frac)
    return sign == "-" and -c or c
  end

  local function sink(out)
    return { write = function(self, ...) for _, s in ipairs{ ... } do out[#out + 1] = s end return self end }
  end

  local function run(opts, user)
    local out, log = {}, {}
    local ok, err = report.run(H.session(sb, nil, user), opts, sink(out), function(line) log[#log + 1] = line end)
    return ok, err, table.concat(out), log
  end

  it("matches totals computed independently from the invoices, for every business", function()
    local pages = {}
    local ok, err, csv = run{ as_of = "2025-06-30", format = "csv", parallel = 3,
      progress = function(i, n, biz, done, total, invoices)
        assert.equal(2, n)
        pages[#pages + 1] = ("%d %s %d/%d %d"):format(i, biz.account_id, done, total, invoices)
      end }
    assert.is_true(ok, tostring(err))
    local lines = {}
    for line in csv:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(report.CSV_HEADER, lines[1])
    local by_account, rows = {}, 0
    for i = 2, #lines do
      local f = split_csv(lines[i])
      assert.equal(13, #f, lines[i])
      local t = by_account[f[2]] or { invoices = 0, outstanding = 0 }
      by_account[f[2]] = t
      t.invoices = t.invoices + tonumber(f[7])
      t.outstanding = t.outstanding + cents(f[8])
      local buckets = 0
      for k = 9, 13 do buckets = buckets + cents(f[k]) end
      assert.equal(cents(f[8]), buckets, "buckets add up to the outstanding amount")
      rows = rows + 1
    end
    assert.is_true(rows > 10)
    local fb = H.session(sb)
    for _, aid in ipairs{ "aBcD1", "xYz92" } do
      local want = { invoices = 0, outstanding = 0 }
      for inv, ierr in fb:account(aid).invoices:each() do
        assert(inv, tostring(ierr))
        local c = cents(inv.outstanding.amount)
        if c > 0 and inv.v3_status ~= "draft" and inv.vis_state ~= 1 then
          want.invoices, want.outstanding = want.invoices + 1, want.outstanding + c
        end
      end
      assert.same(want, by_account[aid], aid)
    end
    assert.is_nil(by_account.QmP57) -- alice is not in carol's business
    -- 250 invoices in pages of 100, reported page by page; then the 30 of xYz92.
    assert.same({ "1 aBcD1 1/3 100", "1 aBcD1 2/3 200", "1 aBcD1 3/3 250", "2 xYz92 1/1 30" }, pages)
  end)

  it("prints a table with per-currency totals", function()
    local ok, err, text = run{ as_of = "2025-06-30" }
    assert.is_true(ok, tostring(err))
    assert.truthy(text:find("Sandbox Widgets Inc. (account aBcD1", 1, true))
    assert.truthy(text:find("Total%s+USD"))
    assert.truthy(text:find("Total%s+CAD"))
  end)

  it("writes one JSON document whose totals agree with the CSV", function()
    local ok, err, text = run{ as_of = "2025-06-30", format = "json" }
    assert.is_true(ok, tostring(err))
    local doc = sandbox.decode(text)
    assert.equal("2025-06-30", doc.as_of)
    assert.equal(2, #doc.businesses)
    local _, _, csv = run{ as_of = "2025-06-30", format = "csv", business = "xYz92" }
    local want = {}
    for line in csv:gmatch("[^\n]+") do
      local f = split_csv(line)
      if f[2] == "xYz92" then want[#want + 1] = f[8] end
    end
    local got = {}
    for _, c in ipairs(doc.businesses[2].clients) do got[#got + 1] = c.outstanding end
    assert.equal("xYz92", doc.businesses[2].account_id)
    assert.is_true(#got > 0)
    assert.same(want, got)
    assert.equal("CAD", doc.businesses[2].totals[1].currency)
  end)

  it("picks one business through fb:find_business, and says when none matches", function()
    local ok, err, csv = run{ as_of = "2025-06-30", format = "csv", business = "sandbox consulting ltd." }
    assert.is_true(ok, tostring(err))
    assert.truthy(csv:find("\nSandbox Consulting Ltd.,xYz92,1000002,", 1, true))
    assert.is_nil(csv:find("aBcD1", 1, true))
    ok, err = run{ business = "Nope Inc." }
    assert.is_nil(ok)
    assert.equal("not_found", err.code)
  end)

  it("reports a user without businesses", function()
    local ok, err, text, log = run({ format = "json" }, "bob")
    assert.is_true(ok, tostring(err))
    assert.same({ as_of = os.date("%Y-%m-%d"), businesses = {} }, sandbox.decode(text))
    assert.truthy(text:find('"businesses":[]', 1, true))
    assert.truthy(log[1]:find("no business", 1, true))
  end)

  it("stops with the error when the grant is gone", function()
    local fb = H.session(sb, { tokens = { access_token = "dead", refresh_token = "dead-too", expires_at = 1 } })
    local ok, err = report.run(fb, {}, sink{}, function() end)
    assert.is_nil(ok)
    assert.equal("reauth_required", err.code)
  end)
end)
