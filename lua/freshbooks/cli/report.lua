-- `freshbooks report [KIND]`: the reports, as rows. A kind is one row: its name, a summary (in `report
-- --help` and the completion), the formats it writes (the first is the default), the options of
-- `report` it takes, and run(ctx, fb, out, args). On a terminal the output goes through the pager.
-- FreshBooks' twelve reports are kinds named as the catalogue names them, each with the layout of its
-- rows (the columns of FreshBooks' CSV download, docs/sandbox.md "Reports").
local catalogue = require "freshbooks.catalogue"
local cli = require "freshbooks.cli"
local text = require "freshbooks.cli.text"

local report = {}
local exit = cli.exit

-- The billing report (freshbooks.report): every business (or --business), outstanding invoices by
-- client and currency, aged. One progress bar per business; each business's failure is said once.
local function billing(ctx, fb, out, a)
  local lib = require "freshbooks.report"
  if a.as_of and not require("freshbooks.date").exact(a.as_of) then exit(2, "--as-of must be a date YYYY-MM-DD") end
  local now = require("freshbooks.core").clock.now
  -- each() reports first after a business's first page, so a bar starts from the end of the previous one
  local bar, since, failures = nil, now(), 0
  local ok, err = lib.run(fb, { as_of = a.as_of, business = a.business, format = a.format, parallel = a.parallel,
    width = out.terminal and out.columns or nil,
    progress = function(i, n, biz, done, pages, invoices)
      if done == 1 then bar = ctx:progress(out, ("[%d/%d] %s"):format(i, n, biz.name or "?"), since) end
      if bar then bar.update(done, pages, invoices) end
      if done == pages then
        if bar then bar.finish() end
        bar, since = nil, now()
      end
    end }, out, function(line)
      bar = nil
      failures = failures + 1
      ctx:note("%s", (line:gsub(": freshbooks: ", ": ", 1)))
    end)
  if bar then bar.abort() end
  if not ok then
    if failures > 0 and err.code ~= "rate_limited" and not err.fatal then
      out:commit() -- what could be reported stands; the failures were said above, once each
      exit(1, "the report is incomplete: %d business%s could not be read (above)", failures,
        failures == 1 and "" or "es")
    end
    cli.fail(err)
  end
end

-- The mirror's kinds (freshbooks.cli.mirror) read the mirror only: `mirror = true`.
local function from_mirror(name)
  return function(...) return require("freshbooks.cli.mirror")[name](...) end
end

-- FreshBooks' reports -------------------------------------------------------------------------------

local function amount(m) return type(m) == "table" and m.amount or nil end
local function list(t) return type(t) == "table" and t or {} end

-- One row per entry of `balances` ({balance, date}) after the cells given.
local function dated(row, balances, n)
  local b = list(balances)
  for i = 1, n do row[#row + 1] = amount(type(b[i]) == "table" and b[i].balance or nil) or "" end
  return row
end

-- Each layout(result) -> columns, rows (values: strings, money as FreshBooks' decimal strings).
local LAYOUT = {}

function LAYOUT.profit_and_loss(r)
  local labels = list(r.labels)
  local cols = { "Description", "Type" }
  for _, l in ipairs(labels) do cols[#cols + 1] = tostring(l) end
  cols[#cols + 1] = "Total"
  local rows = {}
  local function walk(e, depth)
    if type(e) ~= "table" then return end
    local row, data = { ("  "):rep(depth) .. tostring(e.description or ""), e.entry_type }, list(e.data)
    for i = 1, #labels do row[2 + i] = amount(data[i]) end
    row[#cols] = amount(e.total)
    rows[#rows + 1] = row
    for _, c in ipairs(list(e.children)) do walk(c, depth + 1) end
  end
  for _, e in ipairs(list(r.income)) do walk(e, 0) end
  walk(r.total_income, 0)
  for _, e in ipairs(list(r.expenses)) do walk(e, 0) end
  walk(r.total_expenses, 0)
  walk(r.net_profit, 0)
  return cols, rows
end

function LAYOUT.tax_summary(r)
  local rows = {}
  for _, t in ipairs(list(r.taxes)) do
    rows[#rows + 1] = { t.tax_name, amount(t.taxable_amount_collected), amount(t.tax_collected),
      amount(t.taxable_amount_paid), amount(t.tax_paid), amount(t.net_taxable_amount), amount(t.net_tax) }
  end
  return { "Tax", "Taxable Amount Collected", "Tax Collected", "Taxable Amount Paid", "Tax Paid",
    "Net Taxable Amount", "Net Tax" }, rows
end

function LAYOUT.payments_collected(r)
  local rows = {}
  for _, p in ipairs(list(r.payments)) do
    rows[#rows + 1] = { p.date, p.client, p.invoice_number, p.method, p.description, amount(p.amount),
      type(p.amount) == "table" and p.amount.code or nil }
  end
  return { "Date", "Client", "Invoice", "Method", "Description", "Amount", "Currency" }, rows
end

local BUCKETS = { "0-30", "31-60", "61-90", "91+", "total" }
function LAYOUT.accounts_aging(r)
  local rows = {}
  local function line(name, email, t)
    local row = { name, email }
    for i, b in ipairs(BUCKETS) do row[2 + i] = amount(t[b]) end
    rows[#rows + 1] = row
  end
  for _, a in ipairs(list(r.accounts)) do line(a.organization, a.email, a) end
  line("Total", nil, list(r.totals))
  return { "Client", "Email", "0-30", "31-60", "61-90", "91+", "Total" }, rows
end

function LAYOUT.balance_sheet(r)
  local dates = list(r.dates)
  local cols = { "Type", "Account", "Number" }
  for _, d in ipairs(dates) do cols[#cols + 1] = tostring(d) end
  local rows = {}
  local function line(kind, name, number, balances)
    rows[#rows + 1] = dated({ kind, name, number }, balances, #dates)
  end
  for _, g in ipairs(list(r.data)) do
    for _, a in ipairs(list(g.accounts)) do
      line(g.account_type, a.account_name, a.account_number, a.balances)
      for _, sub in ipairs(list(a.sub_accounts)) do
        line(g.account_type, "  " .. tostring(sub.sub_account_name), sub.sub_account_number, sub.balances)
      end
    end
    line(g.account_type, "Total " .. tostring(g.category), "", g.balances)
  end
  line("", "Total Assets", "", r.assets_total)
  line("", "Total Liabilities and Equity", "", r.liabilities_and_equity_total)
  return cols, rows
end

function LAYOUT.trial_balance(r)
  local rows = {}
  for _, l in ipairs(list(r.data)) do
    rows[#rows + 1] = { l.account_name, l.account_number, l.account_sub_name, l.account_sub_number, amount(l.debit),
      amount(l.credit) }
  end
  return { "Account", "Number", "Sub-account", "Sub-account Number", "Debit", "Credit" }, rows
end

function LAYOUT.general_ledger(r)
  local rows = {}
  for _, a in ipairs(list(r.data)) do
    for _, sub in ipairs(list(a.sub_accounts)) do
      for _, t in ipairs(list(sub.transactions)) do
        rows[#rows + 1] = { a.account_name, a.account_number, sub.sub_account_name, t.date, t.entity_type, t.reference,
          t.description, t.client_name, amount(t.debit), amount(t.credit) }
      end
    end
  end
  return { "Account", "Number", "Sub-account", "Date", "Type", "Reference", "Description", "Client", "Debit",
    "Credit" }, rows
end

local SUMMARY = { "starting_balance", "gross_cash_inflow", "gross_cash_outflow", "net_cash_change", "ending_balance" }
function LAYOUT.cash_flow(r)
  local rows = {}
  for _, act in ipairs(list(r.activities)) do
    for _, d in ipairs(list(act.details)) do
      for _, g in ipairs(list(d.accounts)) do
        for _, sub in ipairs(list(g.sub_accounts)) do
          rows[#rows + 1] = { act.category, d.name, g.name, sub.name, amount(sub.total) }
        end
      end
    end
    rows[#rows + 1] = { act.category, "Total", "", "", amount(act.total) }
  end
  local summary = list(r.summary)
  for _, k in ipairs(SUMMARY) do rows[#rows + 1] = { "summary", k, "", "", amount(summary[k]) } end
  return { "Activity", "Detail", "Account", "Sub-account", "Total" }, rows
end

-- The chart of accounts is the list itself; balances are FreshBooks' 3-decimal strings ("925.000").
function LAYOUT.chart_of_accounts(r)
  local rows = {}
  local function line(a, indent)
    rows[#rows + 1] = { indent .. tostring(a.account_name), a.account_number, a.account_type, a.account_sub_type,
      a.state, a.balance }
  end
  for _, a in ipairs(list(r)) do
    line(a, "")
    for _, sub in ipairs(list(a.sub_accounts)) do line(sub, "  ") end
  end
  return { "Account", "Number", "Type", "Sub-type", "State", "Balance" }, rows
end

function LAYOUT.expense_details(r)
  local rows, clients = {}, list(r.clients)
  for _, g in ipairs(list(r.data)) do
    for _, e in ipairs(list(g.expenses)) do
      local c = clients[tostring(e.clientid)]
      rows[#rows + 1] = { g.name, e.date, e.category, e.vendor, type(c) == "table" and c.organization or nil, e.notes,
        amount(e.amount) }
    end
  end
  return { "Group", "Date", "Category", "Vendor", "Client", "Notes", "Amount" }, rows
end

function LAYOUT.invoice_details(r)
  local rows = {}
  for _, c in ipairs(list(r.clients)) do
    for _, i in ipairs(list(c.invoices)) do
      rows[#rows + 1] = { c.organization, i.invoice_number, i.create_date, i.due_date, i.v3_status, amount(i.total),
        amount(i.paid), amount(i.outstanding), i.date_paid }
    end
  end
  return { "Client", "Invoice", "Date", "Due Date", "Status", "Total", "Paid", "Outstanding", "Date Paid" }, rows
end

function LAYOUT.manual_journal_entry(r)
  local rows = {}
  for _, e in ipairs(list(r.entries)) do
    for _, d in ipairs(list(e.details)) do
      rows[#rows + 1] = { e.entryid, e.user_entered_date, e.name, e.description, d.account_name, d.account_number,
        amount(d.debit), amount(d.credit) }
    end
  end
  return { "Entry", "Date", "Name", "Description", "Account", "Number", "Debit", "Credit" }, rows
end

-- What the command's options set: --from, --to, --as-of (the parameter each report ages or dates by),
-- --currency; --param name=value any other, read by the parameter's kind (catalogue.report_params).
local FLAG = { start_date = "--from", end_date = "--to", dates = "--as-of", currency_code = "--currency" }
local LISTED = { dates = true, currencies = true, ids = true, texts = true }
local BOOL = { ["true"] = true, ["1"] = true, yes = true, ["false"] = false, ["0"] = false, no = false }

local function param_value(name, kind, v)
  if kind == "boolean" then
    if BOOL[v] == nil then exit(2, "--param %s must be true or false", name) end
    return BOOL[v]
  end
  local function one(x)
    if kind == "id" or kind == "ids" then
      if not x:match("^%d+$") then exit(2, "--param %s must be whole numbers", name) end
      return tonumber(x)
    end
    return x
  end
  if LISTED[kind] then
    local out = {}
    for x in v:gmatch("[^,]+") do out[#out + 1] = one(x) end
    return out
  end
  return one(v)
end

local function query_of(kind, entry, a)
  local takes, q = {}, {}
  for _, p in ipairs(entry.params) do takes[p] = true end
  local function set(param, v, flag)
    if v == nil then return end
    if not takes[param] then exit(2, "the %s report takes no %s", kind.name, flag) end
    q[param] = v
  end
  for _, o in ipairs { { a.from, "--from" }, { a.to, "--to" }, { a.as_of, "--as-of" } } do
    if o[1] and not require("freshbooks.date").exact(o[1]) then exit(2, "%s must be a date YYYY-MM-DD", o[2]) end
  end
  set("start_date", a.from, "--from")
  set("end_date", a.to, "--to")
  if a.as_of then set(kind.as_of or "end_date", kind.as_of == "dates" and { a.as_of } or a.as_of, "--as-of") end
  set("currency_code", a.currency and a.currency:upper(), "--currency")
  for _, kv in ipairs(a.param or {}) do
    local name, v = kv:match("^([%w_]+)=(.*)$")
    if not name then exit(2, "--param expects name=value, got '%s'", text.clean(kv)) end
    if not takes[name] then
      exit(2, "the %s report takes no parameter '%s' (it takes %s)", kind.name, text.clean(name),
        table.concat(entry.params, ", "))
    end
    q[name] = param_value(name, catalogue.report_params[name], v)
  end
  -- The library's own check, its parameter names said as the options that set them.
  local ok, err = pcall(require("freshbooks.resource").check_report, entry, q, "", 1)
  if not ok then
    local msg = tostring(err):gsub("^[^:]*: ", ""):gsub("[%a_]+", function(w)
      if FLAG[w] and (w ~= "end_date" or kind.as_of ~= "end_date") then return FLAG[w] end
      if w == "end_date" then return "--as-of" end
    end)
    exit(2, "%s", msg)
  end
  return q
end

-- The title over a table: which report, for when, in what, whose (cut to a terminal's width).
local function title(kind, biz, r, width)
  local when = ""
  if type(r.dates) == "table" and kind.as_of == "dates" then when = " on " .. table.concat(r.dates, ", ")
  elseif kind.as_of == "end_date" and r.end_date then when = " as of " .. tostring(r.end_date)
  elseif r.start_date or r.end_date then
    when = " " .. tostring(r.start_date or "...") .. " to " .. tostring(r.end_date or "...")
  end
  local s = text.clean(("%s%s%s: %s, account %s"):format(kind.name:gsub("_", " "), when,
    type(r.currency_code) == "string" and (" (" .. r.currency_code .. ")") or "", r.company_name or biz.name or "?",
    tostring(biz.account_id)))
  return width and text.fit(s, width - 1) or s
end

-- One of FreshBooks' reports for one business (--business, else the profile's): its rows as a table,
-- CSV or JSON, or with --download FreshBooks' own CSV.
local function api_report(kind)
  return function(ctx, fb, out, a)
    local entry = catalogue.by_name[kind.name]
    if a.download and a.format ~= "csv" then exit(2, "--download writes FreshBooks' CSV: it takes no --format %s",
      a.format) end
    local q = query_of(kind, entry, a)
    local biz = ctx:business(fb, a.business)
    local owner = catalogue.owner_of(entry)
    local id = biz[catalogue.owners[owner]]
    if id == nil then exit(1, "the business %s has no %s", text.clean(tostring(biz.name)), catalogue.owners[owner]) end
    local rep = fb[owner](fb, id).reports[entry.name]
    local r, err = rep:get(q)
    if not r then cli.fail(err, kind.name) end
    if a.download then
      if type(r.download_token) ~= "string" then exit(1, "FreshBooks answered the %s report without a download_token",
        kind.name) end
      local csv, derr = rep:download(r.download_token)
      if not csv then cli.fail(derr, kind.name .. " download") end
      out:write(csv)
      return
    end
    local columns, rows = LAYOUT[kind.name](r)
    if a.format == "table" then out:write(title(kind, biz, r, out.terminal and out.columns), "\n") end
    text.rows(out, a.format, columns, rows)
  end
end

local function api(name, summary, as_of)
  local e = assert(catalogue.by_name[name], name)
  local takes = {}
  for _, p in ipairs(e.params) do takes[p] = true end
  local options = { "business", "currency", "param" }
  if takes.start_date then options[#options + 1] = "from" end
  if takes.end_date and as_of ~= "end_date" then options[#options + 1] = "to" end
  if as_of then options[#options + 1] = "as_of" end
  if e.verbs.download then options[#options + 1] = "download" end
  local kind = { name = name, summary = summary, formats = { "table", "csv", "json" }, options = options,
    as_of = as_of }
  kind.run = api_report(kind)
  return kind
end

report.KINDS = {
  { name = "billing", summary = "Outstanding invoices by client and currency, aged (current ... 90+ days).",
    formats = { "table", "csv", "json" }, options = { "as_of", "business", "parallel", "offline", "mirror" },
    run = billing },
  api("accounts_aging", "Receivables by client, aged 0-30 ... 91+ days past due (--as-of).", "end_date"),
  api("balance_sheet", "Assets, liabilities and equity by account on a day (--as-of).", "dates"),
  api("cash_flow", "Cash in and out by activity, from the starting to the ending balance."),
  api("chart_of_accounts", "Every ledger account with its balance over the period."),
  api("expense_details", "Expenses by category (--param group_by=vendor, clients or author)."),
  api("general_ledger", "Every transaction by account and sub-account, debits and credits."),
  api("invoice_details", "Invoices by client: total, paid, outstanding, status."),
  api("manual_journal_entry", "Manual journal entries, line by line."),
  api("payments_collected", "Payments received, in every currency unless --currency."),
  api("profit_and_loss", "Income, expenses and net profit (--param resolution=3m: by quarter)."),
  api("tax_summary", "Tax collected on invoices and paid on expenses, per tax."),
  api("trial_balance", "Debit and credit balance of every account; debits equal credits."),
  { name = "revenue", summary = "From the mirror: revenue by client by month (--basis invoiced|collected).",
    formats = { "table", "csv", "json" }, options = { "business", "from", "to", "basis", "offline", "mirror" },
    mirror = true, run = from_mirror("revenue") },
  { name = "unbilled", summary = "From the mirror: billable time not yet billed, by client and project.",
    formats = { "table", "csv", "json" }, options = { "business", "offline", "mirror" }, mirror = true,
    run = from_mirror("unbilled") },
  { name = "dso", summary = "From the mirror: days sales outstanding per currency (--days, default 90).",
    formats = { "table", "csv", "json" }, options = { "as_of", "business", "days", "offline", "mirror" },
    mirror = true, run = from_mirror("dso") },
}
report.by_name = {}
for _, k in ipairs(report.KINDS) do report.by_name[k.name] = k end

-- Options of `report` and the kinds that take them (for the message when a kind does not).
local OPTIONS = { as_of = "--as-of", business = "--business", parallel = "--parallel", offline = "--offline",
  mirror = "--mirror", from = "--from", to = "--to", basis = "--basis", days = "--days", currency = "--currency",
  param = "--param", download = "--download" }

function report.report(ctx)
  local a = ctx.args
  local name = a.kind or report.KINDS[1].name
  local kind = report.by_name[name]
  if not kind then
    local names = {}
    for _, k in ipairs(report.KINDS) do names[#names + 1] = k.name end
    exit(2, "%s", text.unknown("no report", name, names, "reports"))
  end
  local takes = {}
  for _, o in ipairs(kind.options) do takes[o] = true end
  for key, flag in pairs(OPTIONS) do
    local default, v = key == "parallel" and 4 or nil, a[key]
    if v ~= nil and v ~= default and v ~= false and not (type(v) == "table" and v[1] == nil) and not takes[key] then
      exit(2, "the %s report takes no %s", kind.name, flag)
    end
  end
  a.format = a.format or (a.download and "csv") or kind.formats[1]
  local fine = false
  for _, f in ipairs(kind.formats) do fine = fine or f == a.format end
  if not fine then exit(2, "the %s report is written as %s, not %s", kind.name, table.concat(kind.formats, ", "),
    a.format) end
  local offline = a.offline or kind.mirror
  local fb = not offline and ctx:connected() or nil
  -- A table on a terminal goes through the pager, held until it is complete: progress bars draw meanwhile.
  local out = ctx:output(nil, { pager = a.format == "table" and "hold" or nil, utf8 = true })
  if offline and kind.name == "billing" then require("freshbooks.cli.mirror").billing(ctx, out, a)
  else kind.run(ctx, fb, out, a) end
  out:commit()
end

return report
