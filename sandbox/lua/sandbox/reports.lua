-- Accounting reports: GET /accounting/account/{account_id}/reports/accounting/{kind}. One row per
-- report: its result key, the common fields it answers, and the function that fills in the rest. A new
-- report is a row and its builder; the request parsing, the period splitting and the envelope are shared.
local json = require "sandbox.json"
local util = require "sandbox.util"
local data = require "sandbox.data"

local reports = {}
local NULL = json.null

-- The request's common parameters: start_date, end_date (YYYY-MM-DD, inclusive), currency_code,
-- resolution ("m", "3m", "y": periods), cash_based. Returns the parameters or nil, field, value.
local function params(req, acct)
  local a = req.args
  local function one(v) if type(v) == "table" then return v[#v] end return v end
  local p = { currency = one(a.currency_code) or acct.currency_code, cash = one(a.cash_based) == "true",
              resolution = one(a.resolution) }
  for _, k in ipairs { "start_date", "end_date" } do
    local v = one(a[k])
    if v ~= nil then
      local d = util.parse_date(v)
      if not d then return nil, k, v end
      p[k] = d
    end
  end
  p.start_date = p.start_date or (data.TODAY - 364)
  p.end_date = p.end_date or data.TODAY
  if type(p.currency) ~= "string" or not p.currency:match("^%u%u%u$") then return nil, "currency_code", p.currency end
  local res = p.resolution
  if res ~= nil and not (type(res) == "string" and res:match("^%d*[my]$")) then return nil, "resolution", res end
  return p
end

-- Periods of `resolution` from the start date: {start, stop} day numbers (inclusive).
local function periods(p)
  if not p.resolution then return {} end
  local n, unit = p.resolution:match("^(%d*)([my])$")
  local months = (tonumber(n) or 1) * (unit == "y" and 12 or 1)
  local out = {}
  local y, m = util.civil(p.start_date)
  local start = p.start_date
  while start <= p.end_date and #out < 240 do
    m = m + months
    while m > 12 do m, y = m - 12, y + 1 end
    local next_start = util.days_from_civil(y, m, 1)
    out[#out + 1] = { start, math.min(next_start - 1, p.end_date) }
    start = next_start
  end
  return out
end

-- A token for the CSV download FreshBooks offers beside the JSON (opaque; JWT-shaped like FreshBooks').
local function download_token(kind, p, acct)
  return "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9." .. ngx.encode_base64(json.encode {
    accountid = acct.account_id, objectid = kind, start_date = util.date(p.start_date),
    end_date = util.date(p.end_date) }):gsub("[=+/]", { ["="] = "", ["+"] = "-", ["/"] = "_" }) .. ".sandbox"
end

-- A report line as FreshBooks builds them: a description, debit/credit/none, the amount per period
-- (`data`, empty without a resolution), the total, and the lines below it.
local function entry(description, entry_type, per_period, total, code, children)
  local d = json.array()
  for i, c in ipairs(per_period) do d[i] = util.money(c, code) end
  return { description = description, entry_type = entry_type, data = d, total = util.money(total, code),
           children = json.array(children or {}) }
end

local function zeros(n) local t = {} for i = 1, n do t[i] = 0 end return t end

-- Add `cents` dated `day` to the per-period table and the total.
local function spread(acc, pers, day, cents)
  acc.total = acc.total + cents
  for i, per in ipairs(pers) do
    if day >= per[1] and day <= per[2] then acc.per[i] = acc.per[i] + cents end
  end
end

local function in_range(p, day) return day and day >= p.start_date and day <= p.end_date end

-- Profit and loss: income from sent invoices (or, cash based, from payments) and other income; expenses
-- by category; totals, gross margin (a percentage) and net profit, per period and in all.
local function profit_loss(p, acct, out)
  local cols, code = acct.cols, p.currency
  local pers = periods(p)
  local n = #pers
  local function acc() return { per = zeros(n), total = 0 } end
  local sales, other, cogs = acc(), acc(), acc()
  if p.cash then
    for _, pay in ipairs(cols.payments.list) do
      local day = util.parse_date(pay.date)
      local inv = cols.invoices.by_id[pay.invoiceid]
      if pay.vis_state ~= 1 and not pay.removed and in_range(p, day) and inv and inv.currency_code == code then
        spread(sales, pers, day, pay.amount or 0)
      end
    end
  else
    for _, inv in ipairs(cols.invoices.list) do
      local day = inv[3]
      if inv.vis_state ~= 1 and inv.status ~= 1 and in_range(p, day) and inv.currency_code == code then
        spread(sales, pers, day, inv.amount)
      end
    end
  end
  for _, oi in ipairs(cols.other_incomes.list) do
    local day = util.parse_date(oi.date)
    local c = oi.currency_code or acct.currency_code
    if oi.vis_state ~= 1 and not oi.removed and in_range(p, day) and c == code then
      spread(other, pers, day, oi.amount or 0)
    end
  end
  local by_cat, cat_order = {}, {}
  for _, e in ipairs(cols.expenses.list) do
    local day = util.parse_date(e.date)
    if e.vis_state ~= 1 and not e.removed and in_range(p, day) and (e.currency_code or acct.currency_code) == code then
      local c = by_cat[e.categoryid]
      if not c then c = acc(); by_cat[e.categoryid] = c; cat_order[#cat_order + 1] = e.categoryid end
      spread(c, pers, day, e.amount or 0)
    end
  end
  table.sort(cat_order)
  local income_per, expense_per = zeros(n), zeros(n)
  for i = 1, n do income_per[i] = sales.per[i] + other.per[i] end
  local income_total = sales.total + other.total
  local expenses, expense_total = json.array(), 0
  for _, cid in ipairs(cat_order) do
    local c = by_cat[cid]
    local cat = cols.categories.by_id[cid]
    local name = cat and cat.category or "Uncategorized"
    expenses[#expenses + 1] = entry(name, "debit", c.per, c.total, code,
      { entry("Expenses", "debit", c.per, c.total, code) })
    expense_total = expense_total + c.total
    for i = 1, n do expense_per[i] = expense_per[i] + c.per[i] end
  end
  out.income = json.array {
    entry("Sales", "credit", income_per, income_total, code, {
      entry("Invoices", "credit", sales.per, sales.total, code), entry("Other Income", "credit", other.per,
        other.total, code) }),
    entry("Cost of Goods Sold", "credit", cogs.per, cogs.total, code),
  }
  out.expenses = expenses
  out.total_income = entry("Gross Profit", "credit", income_per, income_total, code)
  out.total_expenses = entry("Total Expenses", "debit", expense_per, expense_total, code)
  local net_per = zeros(n)
  for i = 1, n do net_per[i] = income_per[i] - expense_per[i] end
  out.net_profit = entry("Net Profit (" .. code .. ")", "credit", net_per, income_total - expense_total, code)
  local function pct(income) return income > 0 and 10000 or 0 end -- no cost of goods: 100 % of income
  local margin = json.array()
  for i = 1, n do margin[i] = util.money(pct(income_per[i]), "%") end
  out.gross_margin = { description = "Gross Margin", entry_type = "none", data = margin,
                       total = util.money(pct(income_total), "%"), children = json.array() }
  out.cash_based = p.cash
  out.resolution = p.resolution or NULL
  out.dates, out.labels = json.array(), json.array()
  for i, per in ipairs(pers) do
    out.dates[i] = { start_date = util.date(per[1]), end_date = util.date(per[2]) }
    out.labels[i] = util.date(per[1])
  end
end

-- Tax summary: per tax, what was charged on invoices and paid on expenses; the total invoiced.
local function tax_summary(p, acct, out)
  local cols, code = acct.cols, p.currency
  local collected, taxable_in, paid, taxable_out = {}, {}, {}, {}
  local invoiced = 0
  for _, inv in ipairs(cols.invoices.list) do
    local day = inv[3]
    if inv.vis_state ~= 1 and inv.status ~= 1 and in_range(p, day) and inv.currency_code == code then
      invoiced = invoiced + inv.amount
      local lines = rawget(inv, "lines")
      for _, l in ipairs(lines or {}) do
        for k = 1, 2 do
          local name = l["taxName" .. k]
          if type(name) == "string" and name ~= "" then
            taxable_in[name] = (taxable_in[name] or 0) + (util.cents(l.amount) or 0)
            collected[name] = (collected[name] or 0) + (util.cents(l["taxAmount" .. k]) or 0)
          end
        end
      end
    end
  end
  for _, e in ipairs(cols.expenses.list) do
    local day = util.parse_date(e.date)
    if e.vis_state ~= 1 and not e.removed and in_range(p, day) and type(e.taxName1) == "string" then
      taxable_out[e.taxName1] = (taxable_out[e.taxName1] or 0) + (e.amount or 0)
      paid[e.taxName1] = (paid[e.taxName1] or 0) + (type(e.taxAmount1) == "number" and e.taxAmount1 or 0)
    end
  end
  local taxes = json.array()
  for _, t in ipairs(cols.taxes.list) do
    if not t.removed then
      local n = t.name
      local c, ti, pd, to = collected[n] or 0, taxable_in[n] or 0, paid[n] or 0, taxable_out[n] or 0
      taxes[#taxes + 1] = { tax_name = n, tax_collected = util.money(c, code),
        taxable_amount_collected = util.money(ti, code), tax_paid = util.money(pd, code),
        taxable_amount_paid = util.money(to, code), net_tax = util.money(c - pd, code),
        net_taxable_amount = util.money(ti - to, code) }
    end
  end
  out.taxes = taxes
  out.total_invoiced = util.money(invoiced, code)
  out.cash_based = p.cash
end

-- Payments collected: every payment in the range (all currencies unless currency_code or clientids
-- narrow it), the methods and currencies seen, a total per currency.
local function payments_collected(p, acct, out, req)
  local cols = acct.cols
  local want_clients = req.args["clientids[]"] or req.args.clientids
  if type(want_clients) ~= "table" then want_clients = want_clients and { want_clients } or {} end
  local client_set = {}
  for _, c in ipairs(want_clients) do client_set[tostring(c)] = true end
  local only_currency = req.args.currency_code
  local payments, totals, methods, currencies, clientids = json.array(), {}, {}, {}, json.array()
  for _, pay in ipairs(cols.payments.list) do
    local day = util.parse_date(pay.date)
    local inv = cols.invoices.by_id[tonumber(pay.invoiceid)]
    local code = (inv and inv.currency_code) or acct.currency_code
    local cid = pay.clientid or (inv and inv.customerid)
    if pay.vis_state ~= 1 and not pay.removed and in_range(p, day) and (not only_currency or only_currency == code)
        and (not next(client_set) or client_set[tostring(cid)]) then
      local client = cols.clients.by_id[cid]
      payments[#payments + 1] = { paymentid = nil, amount = util.money(pay.amount, code),
        client = client and client.organization or "", clientid = cid, credit_number = NULL, creditid = NULL,
        date = pay.date, description = pay.note or "", from_credit = false,
        invoice_number = inv and inv.invoice_number or NULL, invoiceid = inv and inv.id or NULL, method = pay.type }
      totals[code] = (totals[code] or 0) + pay.amount
      methods[pay.type] = true
      currencies[code] = true
    end
  end
  for c in pairs(client_set) do clientids[#clientids + 1] = tonumber(c) or c end
  local function sorted(set)
    local t = json.array()
    for k in pairs(set) do t[#t + 1] = k end
    table.sort(t)
    return t
  end
  out.payments = payments
  out.payment_methods = sorted(methods)
  out.currency_codes = sorted(currencies)
  out.totals = json.array()
  for _, code in ipairs(out.currency_codes) do out.totals[#out.totals + 1] = util.money(totals[code], code) end
  out.clientids = clientids
  out.summary_only = false
  out.currency_code = nil
end

-- kind, result key, company_name answered, builder.
reports.rows = {
  { kind = "profitloss_entity", key = "profitloss", company = true, build = profit_loss },
  -- the same report under its older path, which FreshBooks still answers
  { kind = "profitloss", key = "profitloss", company = true, build = profit_loss },
  { kind = "taxsummary", key = "taxsummary", build = tax_summary },
  { kind = "payments_collected", key = "payments_collected", build = payments_collected },
}
reports.kinds, reports.by_kind = {}, {}
for i, r in ipairs(reports.rows) do reports.kinds[i], reports.by_kind[r.kind] = r.kind, r end

-- The answer for `kind` to an authorised request (ctx.account): status, body.
function reports.answer(kind, req, ctx)
  local row = reports.by_kind[kind]
  local acct = ctx.account
  local p, field, value = params(req, acct)
  if not p then
    return require("sandbox.resources").fail({ object = "report", errors = "legacy" }, 400, 1004, field,
      "Invalid value for " .. field .. ".", value)
  end
  local out = { start_date = util.date(p.start_date), end_date = util.date(p.end_date), currency_code = p.currency,
                download_token = download_token(kind, p, acct) }
  if row.company then out.company_name = acct.business.name end
  row.build(p, acct, out, req)
  return 200, { response = { result = { [row.key] = out } } }
end

reports.periods = periods
return reports
