-- Reports from a mirror, computed by SQL in milliseconds and offline:
--   billing(m, opts)        the billing report (lua/freshbooks/report.lua's: outstanding invoices by client
--                           and currency, aged), per business, as report.accumulator's shape, so the same
--                           writers print it and a spec holds it equal to the report over the API
--   revenue(m, opts)        by client, currency and month: invoiced (sent invoices by date) or collected
--                           (payments by date)
--   unbilled_time(m, opts)  billable time not yet billed, by client and project, with its value at the
--                           project's rate
--   dso(m, opts)            days sales outstanding per currency: receivables / sales of the last `days`
--                           days x `days`
-- The tabular ones answer {columns = {...}, rows = {{...}, ...}}: money as exact decimal strings.
local date = require "freshbooks.date"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local report = require "freshbooks.report"

local reports = {}

local DAY = { "string", say = "a date YYYY-MM-DD" }
local BUSINESS = { "string|number", say = "a business_id, account_id, business uuid or name" }
local OPTS = {
  billing = options.spec{ as_of = DAY, business = BUSINESS },
  revenue = options.spec{ from = DAY, to = DAY, basis = { "string", say = "invoiced or collected" },
    business = BUSINESS },
  unbilled_time = options.spec{ business = BUSINESS },
  dso = options.spec{ as_of = DAY, days = { "number", integer = true, min = 1 }, business = BUSINESS },
}
local function check(name, m, opts)
  if type(m) ~= "table" or type(m.query) ~= "function" or not m.backend then
    error("freshbooks.mirror.reports: " .. name .. ": a mirror (freshbooks.mirror.open) is required", 3)
  end
  return options.check("freshbooks.mirror.reports: " .. name, OPTS[name], opts, 3)
end

local function money(cents)
  if cents == nil then return nil end
  return { units = cents, scale = 2 }
end

local function text(cents)
  if cents == nil then return nil end
  return report.format_money(money(cents))
end

local function day_of(s, where)
  if s == nil then return date.format(math.floor(os.time() / 86400)) end
  if not date.exact(s) then error("freshbooks.mirror.reports: " .. where .. " must be a date YYYY-MM-DD", 3) end
  return s
end

-- The mirrored businesses, all or the one `key` names (business_id, account_id, uuid or name).
local function businesses(m, key)
  local st, err = m:status()
  if not st then return nil, err end
  local out = {}
  for _, b in ipairs(st.businesses) do
    if key == nil or tostring(b.business_id) == tostring(key) or b.account_id == tostring(key)
      or b.business_uuid == key or b.name == key then
      out[#out + 1] = b
    end
  end
  if key ~= nil and #out == 0 then
    return nil, errors.new{ code = "unknown_business", message = "the mirror holds no business " .. tostring(key) }
  end
  return out
end

-- An invoice's client as the billing report names it: organization, else first and last name, else
-- "Client <id>" (`t` prefixes the columns).
local function client(d, t)
  local name = d.trim(("COALESCE(%sfname, '') || ' ' || COALESCE(%slname, '')"):format(t, t))
  return ("CASE WHEN COALESCE(%sorganization, '') <> '' THEN %sorganization WHEN %s <> '' THEN %s"
    .. " ELSE 'Client ' || COALESCE(CAST(%scustomerid AS TEXT), '?') END"):format(t, t, name, name, t)
end

-- Owed: sent (not a draft), not deleted, something outstanding; aged from the due date (or the create
-- date plus the terms) to as_of.
local function billing_sql(d)
  local owed = ("SELECT id, customerid, COALESCE(currency_code, '?') AS cur, outstanding_cents AS o, COALESCE(due_date,"
    .. " CASE WHEN create_date IS NOT NULL THEN %s END) AS due FROM invoices WHERE business_id = ?1 AND vis_state <> 1"
    .. " AND COALESCE(v3_status, '') <> 'draft' AND COALESCE(status, 0) <> 1 AND outstanding_cents > 0")
    :format(d.add_days("create_date", "COALESCE(due_offset_days, 0)"))
  local function part(lo, hi)
    return ("sum(CASE WHEN %s THEN o END)"):format(lo == nil and "age IS NULL OR age <= 0"
      or ("age > %d%s"):format(lo, hi and (" AND age <= " .. hi) or ""))
  end
  -- per client and currency, named as their first invoice (in list order) names the client
  local groups = ("SELECT customerid, cur, count(*) AS n, sum(o) AS total, %s AS b0, %s AS b1, %s AS b2, %s AS b3,"
    .. " %s AS b4, min(id) AS first FROM (SELECT owed.*, %s AS age FROM (%s) owed) aged GROUP BY customerid, cur")
    :format(part(), part(0, 30), part(30, 60), part(60, 90), part(90), d.days("?2", "due"), owed)
  return ("SELECT g.customerid, g.cur, %s, g.n, g.total, g.b0, g.b1, g.b2, g.b3, g.b4 FROM (%s) g JOIN invoices i ON"
    .. " i.business_id = ?1 AND i.id = g.first"):format(client(d, "i."), groups)
end

local BUCKETS = { "current", "1-30", "31-60", "61-90", "90+" }

-- The billing report of one business through report.accumulator: records the SQL cannot add in cents
-- (an amount with more than two decimals) make it fold the records themselves, exactly as the API
-- report does.
local function billing_one(m, biz, as_of)
  local acc = report.accumulator(date.exact(as_of))
  local b = m.backend
  -- (cents missing: a record without an outstanding amount, which neither report counts, or with more
  -- than two decimals, which only the records themselves add exactly)
  local odd, err = b:first("SELECT count(*) FROM invoices WHERE business_id = ? AND vis_state <> 1 AND"
    .. " outstanding_cents IS NULL", biz.business_id)
  if odd and odd[1] > 0 then
    odd, err = b:first("SELECT count(*) FROM invoices WHERE business_id = ? AND vis_state <> 1 AND"
      .. " outstanding_cents IS NULL AND outstanding IS NOT NULL", biz.business_id)
  end
  if not odd then return nil, err end
  if odd[1] > 0 then
    local rows, rerr = b:rows("SELECT record FROM invoices WHERE business_id = ? AND vis_state <> 1 ORDER BY id",
      biz.business_id)
    if not rows then return nil, rerr end
    local decode = require("freshbooks.core").json.decode
    for _, r in ipairs(rows) do acc.add(decode(r[1])) end
    return acc
  end
  local rows, qerr = b:rows(billing_sql(b.dialect), biz.business_id, as_of)
  if not rows then return nil, qerr end
  for _, r in ipairs(rows) do
    local code = r[2]
    local row = { client_id = r[1], client = r[3], currency = code, invoices = r[4], outstanding = money(r[5]) }
    local t = acc.totals[code] or { currency = code, invoices = 0 }
    acc.totals[code] = t
    t.invoices = t.invoices + r[4]
    t.outstanding = report.add_money(t.outstanding, row.outstanding)
    for i, bucket in ipairs(BUCKETS) do
      row[bucket] = money(r[5 + i])
      if row[bucket] then t[bucket] = report.add_money(t[bucket], row[bucket]) end
    end
    acc.clients[tostring(r[1]) .. "\0" .. code] = row
    acc.count = acc.count + r[4]
  end
  return acc
end

-- reports.billing(m, {as_of = "YYYY-MM-DD", business = key}) -> {{business = {...}, acc = acc}, ...} | nil, err
function reports.billing(m, opts)
  opts = check("billing", m, opts)
  local as_of = day_of(opts.as_of, "billing: as_of")
  local list, err = businesses(m, opts.business)
  if not list then return nil, err end
  local out = {}
  for _, biz in ipairs(list) do
    local acc, aerr = billing_one(m, biz, as_of)
    if not acc then return nil, aerr end
    out[#out + 1] = { business = biz, acc = acc }
  end
  return out, as_of
end

local function tabular(m, sql, params, columns, money_columns)
  local res, err = m:query(sql, params)
  if not res then return nil, err end
  for _, row in ipairs(res.rows) do
    for _, i in ipairs(money_columns) do row[i] = text(row[i]) end
  end
  return { columns = columns, rows = res.rows }
end

-- (min: one client per group, and PostgreSQL wants every column grouped or aggregated)
local function client_name(d)
  return ("min(CASE WHEN COALESCE(c.organization, '') <> '' THEN c.organization ELSE %s END)")
    :format(d.trim("COALESCE(c.fname, '') || ' ' || COALESCE(c.lname, '')"))
end

local function where_business(key, params)
  if key == nil then return "" end
  params[#params + 1] = tostring(key)
  return (" AND x.business_id IN (SELECT business_id FROM businesses WHERE CAST(business_id AS TEXT) = ?%d OR"
    .. " account_id = ?%d OR business_uuid = ?%d OR name = ?%d)"):format(#params, #params, #params, #params)
end

-- reports.revenue(m, {from, to, basis = "invoiced" | "collected", business}) -> {columns, rows}
-- invoiced: sent invoices (not drafts, not deleted) by their date; collected: payments by theirs.
function reports.revenue(m, opts)
  opts = check("revenue", m, opts)
  local from = opts.from and day_of(opts.from, "revenue: from") or "0000-01-01"
  local to = opts.to and day_of(opts.to, "revenue: to") or "9999-12-31"
  local basis = opts.basis or "invoiced"
  if basis ~= "invoiced" and basis ~= "collected" then
    error("freshbooks.mirror.reports: revenue: basis must be invoiced or collected", 2)
  end
  local params = { from, to }
  local sql
  if basis == "invoiced" then
    sql = ("SELECT x.business_id, x.customerid, %s, x.currency_code, substr(x.create_date, 1, 7) AS month, count(*),"
      .. " sum(x.amount_cents) FROM invoices x LEFT JOIN clients c ON c.business_id = x.business_id AND c.id ="
      .. " x.customerid WHERE x.vis_state <> 1 AND COALESCE(x.v3_status, '') <> 'draft' AND COALESCE(x.status, 0)"
      .. " <> 1 AND x.create_date >= ?1 AND x.create_date <= ?2%s GROUP BY x.business_id, x.customerid,"
      .. " x.currency_code, month ORDER BY x.business_id, month, x.currency_code, x.customerid"):format(
      client_name(m.backend.dialect),
      where_business(opts.business, params))
  else
    sql = ("SELECT x.business_id, x.clientid, %s, x.currency_code, substr(x.date, 1, 7) AS month, count(*),"
      .. " sum(x.amount_cents) FROM payments x LEFT JOIN clients c ON c.business_id = x.business_id AND c.id ="
      .. " x.clientid WHERE x.vis_state <> 1 AND x.date >= ?1 AND x.date <= ?2%s GROUP BY x.business_id, x.clientid,"
      .. " x.currency_code, month ORDER BY x.business_id, month, x.currency_code, x.clientid"):format(
      client_name(m.backend.dialect),
      where_business(opts.business, params))
  end
  return tabular(m, sql, params, { "business_id", "client_id", "client", "currency", "month",
    basis == "invoiced" and "invoices" or "payments", "amount" }, { 7 })
end

-- reports.unbilled_time(m, {business}) -> {columns, rows}: logged, billable, not billed, not deleted;
-- the value at the project's rate (hours x rate, to the cent) when the project has one.
function reports.unbilled_time(m, opts)
  opts = check("unbilled_time", m, opts)
  local params = {}
  local d = m.backend.dialect
  local sql = ("SELECT x.business_id, x.client_id, %s, x.project_id, min(p.title), count(*), sum(x.duration),"
    .. " sum(x.duration), CASE WHEN min(p.rate_cents) IS NULL THEN NULL ELSE"
    .. " %s END FROM time_entries x LEFT JOIN clients c ON"
    .. " c.business_id = x.business_id AND c.id = x.client_id LEFT JOIN projects p ON p.business_id = x.business_id"
    .. " AND p.id = x.project_id WHERE x.vis_state <> 1 AND x.gone_at IS NULL AND COALESCE(x.billable, 1) = 1 AND"
    .. " COALESCE(x.billed, 0) = 0 AND COALESCE(x.is_logged, 1) = 1%s GROUP BY x.business_id, x.client_id,"
    .. " x.project_id ORDER BY x.business_id, 3, 5, x.project_id"):format(client_name(d),
    d.div("min(p.rate_cents) * sum(x.duration) + 1800", "3600"),
    where_business(opts.business, params))
  local res, err = tabular(m, sql, params, { "business_id", "client_id", "client", "project_id", "project",
    "entries", "seconds", "hours", "value" }, { 9 })
  if not res then return nil, err end
  for _, row in ipairs(res.rows) do row[8] = ("%.2f"):format((row[8] or 0) / 3600) end
  return res
end

-- reports.dso(m, {as_of, days = 90, business}) -> {columns, rows}: per business and currency, what is
-- owed now (the billing report's outstanding), the sales of the `days` days up to as_of (sent invoices
-- by date), and DSO = owed / sales x days (one decimal; none without sales).
function reports.dso(m, opts)
  opts = check("dso", m, opts)
  local as_of = day_of(opts.as_of, "dso: as_of")
  local days = opts.days or 90
  local from = date.format(date.exact(as_of) - days + 1)
  local params = { from, as_of }
  local sent = "x.vis_state <> 1 AND COALESCE(x.v3_status, '') <> 'draft' AND COALESCE(x.status, 0) <> 1"
  local sql = ("SELECT x.business_id, COALESCE(x.currency_code, '?') AS cur, sum(CASE WHEN x.outstanding_cents > 0"
    .. " THEN x.outstanding_cents ELSE 0 END), sum(CASE WHEN x.create_date >= ?1 AND x.create_date <= ?2 THEN"
    .. " x.amount_cents ELSE 0 END) FROM invoices x WHERE %s%s GROUP BY x.business_id, cur ORDER BY x.business_id,"
    .. " cur"):format(sent, where_business(opts.business, params))
  local res, err = m:query(sql, params)
  if not res then return nil, err end
  local rows = {}
  for _, r in ipairs(res.rows) do
    local owed, sales = r[3] or 0, r[4] or 0
    local dso = nil
    if sales > 0 then
      local tenths = (owed * days * 10 + math.floor(sales / 2)) / sales -- rounded half up, exact in integers
      tenths = math.floor(tenths)
      dso = ("%d.%d"):format(math.floor(tenths / 10), tenths % 10)
    end
    rows[#rows + 1] = { r[1], r[2], text(owed), text(sales), days, dso }
  end
  return { columns = { "business_id", "currency", "receivable", "sales", "days", "dso" }, rows = rows, as_of = as_of }
end

return reports
