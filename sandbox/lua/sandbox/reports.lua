-- Accounting reports: every report FreshBooks documents, one row each (its path, result key, the
-- parameters it reads, the fields it answers and the function that builds it). Request parsing, period
-- splitting, the envelope, the download token and the CSV download are shared. The sums come from the
-- records as they are (sandbox/books.lua for the ledger reports), computed on request.
-- References per report: docs/sandbox.md ("Reports").
local json = require "sandbox.json"
local state = require "sandbox.state"
local util = require "sandbox.util"
local data = require "sandbox.data"
local books = require "sandbox.books"
local date = require "freshbooks.date"

local reports = {}
local NULL = json.null
local money = util.money

local function one(v) if type(v) == "table" then return v[#v] end return v end

-- ISO 4217 codes, from Debian's iso-codes (read on first use: start-up stays fast).
local iso4217
local function currency_known(code)
  if not iso4217 then
    iso4217 = {}
    local f = io.open("/usr/share/iso-codes/json/iso_4217.json", "rb")
    local doc = f and json.decode(f:read("*a"))
    if f then f:close() end
    for _, c in ipairs(type(doc) == "table" and doc["4217"] or {}) do iso4217[c.alpha_3] = true end
    if not next(iso4217) then
      ngx.log(ngx.WARN, "iso-codes missing: currency codes are checked by their form only")
      iso4217 = false
    end
  end
  if iso4217 == false then return true end
  return iso4217[code] == true
end

-- A parameter's values: `name` and `name[]`, repeated or comma-separated.
local function list_arg(args, name)
  local out = {}
  for _, k in ipairs { name, name .. "[]" } do
    local v = args[k]
    if v ~= nil then
      for _, x in ipairs(type(v) == "table" and v or { v }) do
        if x == true then x = "" end
        for item in tostring(x):gmatch("[^,]+") do
          item = item:match("^%s*(.-)%s*$")
          if item ~= "" then out[#out + 1] = item end
        end
      end
    end
  end
  return out
end

local BOOLS = { ["true"] = true, ["1"] = true, ["false"] = false, ["0"] = false }

-- The request's parameters as the row declares them (kinds below); a parameter the report does not
-- read is ignored, as FreshBooks ignores it. Returns p or nil, field, value (a 400 errno 1004).
--   date, currency, bool, resolution, string, int, uuid: one value; dates, ids, codes, strings: lists;
--   a table: one of its values.
local function params(row, args, acct)
  local p = { currency = acct.currency_code, given = {} }
  for name, kind in pairs(row.params) do
    local raw = one(args[name])
    if raw == true then raw = "" end
    if type(kind) == "table" then
      if raw ~= nil then
        local ok = false
        for _, v in ipairs(kind) do if v == raw then ok = true end end
        if not ok then return nil, name, raw end
        p[name], p.given[name] = raw, true
      end
    elseif kind == "date" then
      if raw ~= nil then
        local d = date.exact(raw)
        if not d then return nil, name, raw end
        p[name], p.given[name] = d, true
      end
    elseif kind == "currency" then
      if raw ~= nil then
        if not (raw:match("^%u%u%u$") and currency_known(raw)) then return nil, name, raw end
        p.currency, p.given[name] = raw, true
      end
    elseif kind == "bool" then
      if raw ~= nil then
        if BOOLS[raw] == nil then return nil, name, raw end
        p[name], p.given[name] = BOOLS[raw], true
      end
    elseif kind == "resolution" then
      if raw ~= nil then
        if not raw:match("^%d*[my]$") or raw:match("^0+[my]$") then return nil, name, raw end
        p[name], p.given[name] = raw, true
      end
    elseif kind == "string" or kind == "uuid" then
      if raw ~= nil then p[name], p.given[name] = raw, true end
    elseif kind == "int" then
      if raw ~= nil then
        if not raw:match("^%d+$") then return nil, name, raw end
        p[name], p.given[name] = tonumber(raw), true
      end
    else -- lists
      local items = list_arg(args, name)
      for i, x in ipairs(items) do
        if kind == "dates" then
          local d = date.exact(x)
          if not d then return nil, name, x end
          items[i] = d
        elseif kind == "ids" then
          if not x:match("^%d+$") then return nil, name, x end
          items[i] = tonumber(x)
        elseif kind == "codes" then
          if not (x:match("^%u%u%u$") and currency_known(x)) then return nil, name, x end
        end
      end
      if #items > 100 then return nil, name, tostring(#items) .. " values" end
      p[name], p.given[name] = items, #items > 0
    end
  end
  if row.params.start_date and not p.start_date and row.start_default ~= false then p.start_date = data.TODAY - 364 end
  if row.params.end_date and not p.end_date then p.end_date = data.TODAY end
  if p.start_date and p.end_date and p.start_date > p.end_date then return nil, "end_date", util.date(p.end_date) end
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

-- Download tokens: JWTs (HS256) signed with a secret of this sandbox's data (a reset ends them), good
-- for 30 days, naming the account, the report and the parameters it was asked with.
local secrets = setmetatable({}, { __mode = "k" })
local function secret()
  local s = secrets[state.data]
  if not s then s = util.random_hex(32); secrets[state.data] = s end
  return s
end
local function b64url(s) return (ngx.encode_base64(s):gsub("[=+/]", { ["="] = "", ["+"] = "-", ["/"] = "_" })) end
local function unb64url(s)
  s = s:gsub("[-_]", { ["-"] = "+", ["_"] = "/" })
  return ngx.decode_base64(s .. string.rep("=", (4 - #s % 4) % 4))
end
local TOKEN_LIFE = 30 * 86400

local function download_token(row, args, acct, user)
  local kept = {}
  for name in pairs(row.params) do
    for _, k in ipairs { name, name .. "[]" } do
      local v = args[k]
      if v ~= nil and v ~= true then kept[k] = type(v) == "table" and json.array(v) or v end
    end
  end
  local now = math.floor(state.now())
  local body = b64url('{"typ":"JWT","alg":"HS256"}') .. "." .. b64url(json.encode {
    accountid = acct.account_id, userid = user and user.id or NULL, type = "report", objectid = row.key,
    params = kept, iat = now, exp = now + TOKEN_LIFE })
  return body .. "." .. b64url(util.hmac_sha256(secret(), body))
end

-- The claims of a token this sandbox signed and that has not expired, or nil.
local function token_claims(token)
  local h, p, s = token:match("^([%w_-]+)%.([%w_-]+)%.([%w_-]+)$")
  if not h then return nil end
  if b64url(util.hmac_sha256(secret(), h .. "." .. p)) ~= s then return nil end
  local claims = json.decode(unb64url(p) or "")
  if type(claims) ~= "table" or type(claims.exp) ~= "number" or claims.exp <= state.now() then return nil end
  return claims
end

-- A report line as FreshBooks builds profit and loss: a description, debit/credit/none, the amount per
-- period (`data`, empty without a resolution), the total, and the lines below it.
local function entry(description, entry_type, per_period, total, code, children)
  local d = json.array()
  for i, c in ipairs(per_period) do d[i] = money(c, code) end
  return { description = description, entry_type = entry_type, data = d, total = money(total, code),
           children = json.array(children or {}) }
end

local function zeros(n) local t = {} for i = 1, n do t[i] = 0 end return t end

-- Add `cents` dated `day` to an accumulator's periods and total.
local function spread(acc, pers, day, cents)
  acc.total = acc.total + cents
  for i, per in ipairs(pers) do
    if day >= per[1] and day <= per[2] then acc.per[i] = acc.per[i] + cents end
  end
end

local function in_range(p, day) return day and day >= p.start_date and day <= p.end_date end

-- Rows of one fixed set of keys, encoded as they are built: the large reports (a ledger's every
-- transaction, every invoice) answer thousands of them, and the encoder would sort each one's keys.
local function flat(keys)
  table.sort(keys)
  local quoted = {}
  for i, k in ipairs(keys) do quoted[i] = json.encode(k) .. ":" end
  return function(t)
    local parts = {}
    for i, k in ipairs(keys) do
      local v = t[k]
      if type(v) == "table" and v.amount and v.code then -- money: two plain strings
        parts[i] = quoted[i] .. '{"amount":"' .. v.amount .. '","code":' .. json.encode(v.code) .. "}"
      else
        parts[i] = quoted[i] .. json.encode(v)
      end
    end
    local raw = json.raw("{" .. table.concat(parts, ",") .. "}")
    raw.src = t -- what the CSV reads
    return raw
  end
end

local function sorted_keys(set, cmp)
  local t = {}
  for k in pairs(set) do t[#t + 1] = k end
  table.sort(t, cmp)
  return t
end

-- Profit and loss: income (sent invoices, or cash based the payments on them; other income) and
-- expenses (expenses and bills by category, cash based the bill payments), with manual journal entries
-- on income and expense accounts; totals, gross margin (a percentage) and net profit, per period and in
-- all. The same transactions as the ledger reports, so net profit is what the trial balance shows.
local function profit_loss(p, acct, out)
  local bk = books.of(acct)
  local code = p.currency
  local pers = periods(p)
  local n = #pers
  local function acc() return { per = zeros(n), total = 0 } end
  local invoices, other, journal, cogs = acc(), acc(), acc(), acc()
  local by_cat, by_account = {}, {}
  local function expense_acc(key, name, source, day, cents)
    local c = by_cat[key]
    if not c then c = { name = name, sources = {}, all = acc() }; by_cat[key] = c end
    local s = c.sources[source]
    if not s then s = acc(); c.sources[source] = s end
    spread(s, pers, day, cents)
    spread(c.all, pers, day, cents)
  end
  local cash = p.cash_based
  for _, x in ipairs(bk.list) do
    if x.code == code and in_range(p, x.day) then
      local k = x.kind
      local amount = x.legs[1][2]
      if (k == "invoice" and not cash) or (k == "payment" and cash) then
        spread(invoices, pers, x.day, amount)
      elseif k == "income" then
        spread(other, pers, x.day, amount)
      elseif k == "expense" or (k == "bill" and not cash) or (k == "bill_payment" and cash) then
        local source = k == "expense" and "Expenses" or "Bills"
        expense_acc(x.categoryid or 0, x.category or "Uncategorized", source, x.day, amount)
      elseif k == "adjustment" then
        for _, leg in ipairs(x.legs) do
          local a = books.top(bk.ledger, leg[1])
          if a.type == "income" then
            spread(journal, pers, x.day, leg[3] - leg[2])
          elseif a.type == "expense" then
            local c = by_account[a.uuid]
            if not c then c = { name = a.name, all = acc() }; by_account[a.uuid] = c end
            spread(c.all, pers, x.day, leg[2] - leg[3])
          end
        end
      end
    end
  end
  local income_per = zeros(n)
  for i = 1, n do income_per[i] = invoices.per[i] + other.per[i] + journal.per[i] end
  local income_total = invoices.total + other.total + journal.total
  local sales_children = { entry("Invoices", "credit", invoices.per, invoices.total, code),
    entry("Other Income", "credit", other.per, other.total, code) }
  if journal.total ~= 0 then
    sales_children[3] = entry("Journal Entries", "credit", journal.per, journal.total, code)
  end
  local expenses, expense_total, expense_per = json.array(), 0, zeros(n)
  local function add_expense(name, all, children)
    expenses[#expenses + 1] = entry(name, "debit", all.per, all.total, code, children)
    expense_total = expense_total + all.total
    for i = 1, n do expense_per[i] = expense_per[i] + all.per[i] end
  end
  for _, key in ipairs(sorted_keys(by_cat)) do
    local c = by_cat[key]
    local children = {}
    for _, source in ipairs { "Expenses", "Bills" } do
      local s = c.sources[source]
      if s then children[#children + 1] = entry(source, "debit", s.per, s.total, code) end
    end
    add_expense(c.name, c.all, children)
  end
  for _, uuid in ipairs(sorted_keys(by_account)) do
    local c = by_account[uuid]
    add_expense(c.name, c.all, { entry("Journal Entries", "debit", c.all.per, c.all.total, code) })
  end
  out.income = json.array {
    entry("Sales", "credit", income_per, income_total, code, sales_children),
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
  for i = 1, n do margin[i] = money(pct(income_per[i]), "%") end
  out.gross_margin = { description = "Gross Margin", entry_type = "none", data = margin,
                       total = money(pct(income_total), "%"), children = json.array() }
  out.cash_based = cash == true
  out.resolution = p.resolution or NULL
  out.dates, out.labels = json.array(), json.array()
  for i, per in ipairs(pers) do
    out.dates[i] = { start_date = util.date(per[1]), end_date = util.date(per[2]) }
    out.labels[i] = util.date(per[1])
  end
end

-- Tax summary: per tax, what was charged on sent invoices and paid on expenses in the currency; the
-- total invoiced.
local function tax_summary(p, acct, out)
  local cols, code = acct.cols, p.currency
  local collected, taxable_in, paid, taxable_out = {}, {}, {}, {}
  local invoiced = 0
  for _, inv in ipairs(cols.invoices.list) do
    local day = inv[3]
    if not inv.removed and inv.vis_state ~= 1 and inv.status ~= 1 and in_range(p, day)
        and inv.currency_code == code then
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
    if e.vis_state ~= 1 and not e.removed and in_range(p, day) and type(e.taxName1) == "string"
        and (e.currency_code or acct.currency_code) == code then
      taxable_out[e.taxName1] = (taxable_out[e.taxName1] or 0) + (e.amount or 0)
      paid[e.taxName1] = (paid[e.taxName1] or 0) + (type(e.taxAmount1) == "number" and e.taxAmount1 or 0)
    end
  end
  local taxes = json.array()
  for _, t in ipairs(cols.taxes.list) do
    if not t.removed then
      local n = t.name
      local c, ti, pd, to = collected[n] or 0, taxable_in[n] or 0, paid[n] or 0, taxable_out[n] or 0
      taxes[#taxes + 1] = { tax_name = n, tax_collected = money(c, code), taxable_amount_collected = money(ti, code),
        tax_paid = money(pd, code), taxable_amount_paid = money(to, code), net_tax = money(c - pd, code),
        net_taxable_amount = money(ti - to, code) }
    end
  end
  out.taxes = taxes
  out.total_invoiced = money(invoiced, code)
  out.cash_based = p.cash_based == true
end

-- Payments collected: every payment in the range (all currencies unless currency_code or
-- currency_codes narrow it), by client and method when asked; the methods and currencies seen, a total
-- per currency.
local function payments_collected(p, acct, out)
  local cols = acct.cols
  local clients, methods_wanted, codes_wanted = {}, {}, {}
  for _, c in ipairs(p.clientids or {}) do clients[c] = true end
  for _, m in ipairs(p.payment_methods or {}) do methods_wanted[m:lower()] = true end
  if p.payment_method then methods_wanted[p.payment_method:lower()] = true end
  for _, c in ipairs(p.currency_codes or {}) do codes_wanted[c] = true end
  if p.given.currency_code then codes_wanted[p.currency] = true end
  local payments, totals, methods, currencies = json.array(), {}, {}, {}
  for _, pay in ipairs(cols.payments.list) do
    local day = util.parse_date(pay.date)
    local inv = cols.invoices.by_id[tonumber(pay.invoiceid)]
    local code = (inv and inv.currency_code) or acct.currency_code
    local cid = tonumber(pay.clientid) or (inv and inv.customerid)
    if pay.vis_state ~= 1 and not pay.removed and in_range(p, day) and (not next(codes_wanted) or codes_wanted[code])
        and (not next(clients) or clients[cid])
        and (not next(methods_wanted) or methods_wanted[tostring(pay.type):lower()]) then
      local client = cols.clients.by_id[cid]
      payments[#payments + 1] = { amount = money(pay.amount, code), client = client and client.organization or "",
        clientid = cid, credit_number = NULL, creditid = NULL, date = pay.date, description = pay.note or "",
        from_credit = false, invoice_number = inv and inv.invoice_number or NULL, invoiceid = inv and inv.id or NULL,
        method = pay.type }
      totals[code] = (totals[code] or 0) + pay.amount
      methods[pay.type] = true
      currencies[code] = true
    end
  end
  out.payments = payments
  out.payment_methods = json.array(sorted_keys(methods))
  out.currency_codes = json.array(sorted_keys(currencies))
  out.totals = json.array()
  for _, code in ipairs(out.currency_codes) do out.totals[#out.totals + 1] = money(totals[code], code) end
  out.clientids = json.array(p.clientids or {})
  out.summary_only = false
  out.currency_code = nil
end

-- Accounts aging as of end_date: each client's sent invoices (created on or after start_date when it is
-- given) less what was paid on them by that day, by days past due: 0-30 (not yet due included),
-- 31-60, 61-90, 91+. The total is the Accounts Receivable balance of the balance sheet that day.
local BUCKETS = { "0-30", "31-60", "61-90", "91+" }
local function accounts_aging(p, acct, out)
  local bk = books.of(acct)
  local code, asof = p.currency, p.end_date
  local cols = acct.cols
  local owed = {}
  for _, x in ipairs(bk.list) do
    if x.code == code and x.day <= asof and (x.kind == "invoice" or x.kind == "payment") then
      local inv = cols.invoices.by_id[x.invoiceid]
      if inv and (not p.start_date or inv[3] >= p.start_date) then
        owed[inv] = (owed[inv] or 0) + (x.kind == "invoice" and x.legs[1][2] or -x.legs[1][2])
      end
    end
  end
  local per_client = {}
  local totals = { 0, 0, 0, 0 }
  for inv, cents in pairs(owed) do
    if cents ~= 0 then
      local late = asof - (inv[3] + inv[4])
      local b = late <= 30 and 1 or late <= 60 and 2 or late <= 90 and 3 or 4
      local c = per_client[inv.customerid]
      if not c then c = { 0, 0, 0, 0 }; per_client[inv.customerid] = c end
      c[b], totals[b] = c[b] + cents, totals[b] + cents
    end
  end
  local accounts = json.array()
  for _, cid in ipairs(sorted_keys(per_client)) do
    local c, client = per_client[cid], cols.clients.by_id[cid] or {}
    local a = { userid = cid, fname = client.fname or "", lname = client.lname or "",
                organization = client.organization or "", email = client.email or "" }
    local sum = 0
    for i, name in ipairs(BUCKETS) do a[name] = money(c[i], code); sum = sum + c[i] end
    a.total = money(sum, code)
    accounts[#accounts + 1] = a
  end
  local t, sum = {}, 0
  for i, name in ipairs(BUCKETS) do t[name] = money(totals[i], code); sum = sum + totals[i] end
  t.total = money(sum, code)
  out.accounts, out.totals = accounts, t
end

-- The chart as reports list it: top-level accounts in the chart's order, each with its sub-accounts.
local function chart(ledger)
  local out = {}
  for _, a in ipairs(ledger.list) do
    if not a.parent_account then
      local subs = {}
      for _, u in ipairs(a.sub_accounts) do subs[#subs + 1] = ledger.by_uuid[u] end
      out[#out + 1] = { account = a, subs = subs }
    end
  end
  return out
end

-- An account's balance in its normal sign from a totals map (its own postings only).
local function own(t, a)
  local s = t[a]
  if not s then return 0 end
  return books.sign(a) * (s.dr - s.cr)
end

-- Net income (income less expenses) in a totals map.
local function earnings(t)
  local n = 0
  for a, s in pairs(t) do
    if a.type == "income" then n = n + s.cr - s.dr elseif a.type == "expense" then n = n - (s.dr - s.cr) end
  end
  return n
end

-- Balance sheet on each of `dates` (each day included): assets, liabilities and equity per account and
-- sub-account, equity with the earnings to date in Retained Earnings; assets_total equals
-- liabilities_and_equity_total on every date.
local GROUPS = { { "asset", "Assets" }, { "liability", "Liabilities" }, { "equity", "Equity" } }
local function balance_sheet(p, acct, out)
  local bk = books.of(acct)
  local code = p.currency
  local days = (p.dates and #p.dates > 0) and p.dates or { data.TODAY }
  local maps = {}
  for i, d in ipairs(days) do maps[i] = books.totals(bk, code, nil, d) end
  local re = bk.roles["Retained Earnings"]
  local function balances(fn)
    local out_ = json.array()
    for i, d in ipairs(days) do out_[i] = { balance = money(fn(i), code), date = util.date(d) } end
    return out_
  end
  local function value(i, a)
    local v = own(maps[i], a)
    if a == re then v = v + earnings(maps[i]) end
    return v
  end
  local group_sum = {}
  out.data = json.array()
  for g, grp in ipairs(GROUPS) do
    group_sum[g] = zeros(#days)
    local accounts = json.array()
    for _, row in ipairs(chart(bk.ledger)) do
      local a = row.account
      if a.type == grp[1] then
        local function total(i)
          local v = value(i, a)
          for _, s in ipairs(row.subs) do v = v + value(i, s) end
          return v
        end
        local subs = json.array()
        if row.subs[1] then
          subs[1] = { sub_account_name = a.name .. " (general)", sub_account_number = a.number or "",
                      balances = balances(function(i) return value(i, a) end) }
          for _, s in ipairs(row.subs) do
            subs[#subs + 1] = { sub_account_name = s.name, sub_account_number = s.number or "",
                                balances = balances(function(i) return value(i, s) end) }
          end
        end
        accounts[#accounts + 1] = { account_name = a.name, account_number = a.number or "",
                                    balances = balances(total), sub_accounts = subs }
        for i = 1, #days do group_sum[g][i] = group_sum[g][i] + total(i) end
      end
    end
    out.data[g] = { account_type = grp[1], category = grp[2], accounts = accounts,
                    balances = balances(function(i) return group_sum[g][i] end) }
  end
  out.assets_total = balances(function(i) return group_sum[1][i] end)
  out.liabilities_and_equity_total = balances(function(i) return group_sum[2][i] + group_sum[3][i] end)
  out.dates = json.array()
  for i, d in ipairs(days) do out.dates[i] = util.date(d) end
end

-- Trial balance from start_date to end_date: balance sheet accounts as of end_date, income and expense
-- accounts over the range, the earlier earnings in Retained Earnings; one line per (sub-)account whose
-- balance is not zero, debits equal to credits.
local function trial_balance(p, acct, out)
  local bk = books.of(acct)
  local code = p.currency
  local upto = books.totals(bk, code, nil, p.end_date)
  local before = books.totals(bk, code, nil, p.start_date - 1)
  local re = bk.roles["Retained Earnings"]
  local lines = json.array()
  local function line(top, a)
    local s, b = upto[a] or { dr = 0, cr = 0 }, before[a] or { dr = 0, cr = 0 }
    local net = s.dr - s.cr
    if a.type == "income" or a.type == "expense" then net = net - (b.dr - b.cr) end
    if a == re then net = net - earnings(before) end
    if net ~= 0 then
      lines[#lines + 1] = { account_name = top.name, account_number = top.number or "", account_sub_name = a.name,
        account_sub_number = a.number or "", sub_accountid = books.ledger_id(bk.ledger, a),
        debit = money(net > 0 and net or 0, code), credit = money(net < 0 and -net or 0, code) }
    end
  end
  for _, row in ipairs(chart(bk.ledger)) do
    line(row.account, row.account)
    for _, s in ipairs(row.subs) do line(row.account, s) end
  end
  out.data = lines
end

-- A cents amount as the chart of accounts writes balances: three decimals.
local function decimal3(c)
  local neg = c < 0
  if neg then c = -c end
  return ("%s%d.%02d0"):format(neg and "-" or "", math.floor(c / 100), c % 100)
end

-- Chart of accounts with each account's balance over the range (no start_date: from the first entry),
-- parents including their sub-accounts, a parent's own entries as "<name> (general)".
local ACCOUNT_TYPES = { "asset", "liability", "equity", "income", "expense" }
local function chart_of_accounts(p, acct, out)
  local bk = books.of(acct)
  local t = books.totals(bk, p.currency, p.start_date, p.end_date)
  local code = p.given.currency_code and p.currency or NULL
  local function item(a, balance, parent)
    local x = { account_name = a.name, account_number = a.number or "", account_type = a.type,
      balance = decimal3(balance), currency_code = code, account_uuid = a.uuid, account_sub_type = a.sub_type,
      system_account_name = a.system_account_name or NULL, auto_created = a.auto_created == true, state = a.state }
    if parent then x.parent_account_uuid = parent.uuid end
    return x
  end
  local rows = {}
  for _, row in ipairs(chart(bk.ledger)) do
    local a = row.account
    if (not p.account_type or a.type == p.account_type) and (not p.state or a.state == p.state) then
      local subs, total = json.array(), own(t, a)
      if row.subs[1] then
        subs[1] = item(a, own(t, a), a)
        subs[1].account_name = a.name .. " (general)"
        for _, s in ipairs(row.subs) do
          total = total + own(t, s)
          if not p.state or s.state == p.state then subs[#subs + 1] = item(s, own(t, s), a) end
        end
      end
      local x = item(a, total)
      x.sub_accounts = subs
      rows[#rows + 1] = { x = x, balance = total }
    end
  end
  local field, dir = tostring(p.sort or ""):match("^(.-)_(%a+)$")
  local keys = { account_name = true, account_number = true, account_type = true, balance = true }
  if keys[field] and (dir == "asc" or dir == "desc") then
    table.sort(rows, function(x, y)
      local a, b = x.x[field], y.x[field]
      if field == "balance" then a, b = x.balance, y.balance end
      if a == b then return x.x.account_uuid < y.x.account_uuid end
      if dir == "desc" then return a > b end
      return a < b
    end)
  end
  local list = json.array()
  for i, r in ipairs(rows) do list[i] = r.x end
  out.journal_entry_accounts = list
end

-- General ledger: from start_date to end_date, per account and sub-account (an account's own entries
-- under "<name> (general)"), every transaction with its debit and credit, the movements and totals.
local transaction_json = flat { "entity_type", "reference", "description", "date", "client_name", "debit", "credit",
  "invoiceid", "paymentid", "expenseid", "incomeid", "billid", "bill_paymentid", "entryid" }
local function general_ledger(p, acct, out)
  local bk = books.of(acct)
  local code = p.currency
  local only = p.accountid and bk.ledger.by_uuid[p.accountid]
  if p.accountid and not only then return "accountid", p.accountid end
  local per = {} -- account -> {dr, cr, txns}
  for _, x in ipairs(bk.list) do
    if x.code == code and in_range(p, x.day) then
      for _, leg in ipairs(x.legs) do
        local a = leg[1]
        if not only or a == only or books.top(bk.ledger, a) == only then
          local s = per[a]
          if not s then s = { dr = 0, cr = 0, txns = json.array() }; per[a] = s end
          s.dr, s.cr = s.dr + leg[2], s.cr + leg[3]
          if not p.summary_only then
            s.txns[#s.txns + 1] = transaction_json { entity_type = x.kind, reference = x.reference or "",
              description = x.description or "", date = util.date(x.day), client_name = x.client,
              debit = money(leg[2], code), credit = money(leg[3], code), invoiceid = x.invoiceid,
              paymentid = x.paymentid, expenseid = x.expenseid, incomeid = x.incomeid, billid = x.billid,
              bill_paymentid = x.bill_paymentid, entryid = x.entryid }
          end
        end
      end
    end
  end
  local function movement(t, dr, cr)
    t.debit, t.credit = money(dr, code), money(cr, code)
    t.net_movement_debit = money(dr > cr and dr - cr or 0, code)
    t.net_movement_credit = money(cr > dr and cr - dr or 0, code)
    return t
  end
  local list, total_dr, total_cr = json.array(), 0, 0
  for _, row in ipairs(chart(bk.ledger)) do
    local a = row.account
    local subs, dr, cr = json.array(), 0, 0
    local function sub(s, name)
      local v = per[s]
      if not v then return end
      dr, cr = dr + v.dr, cr + v.cr
      subs[#subs + 1] = movement({ sub_accountid = s.uuid, sub_account_name = name, sub_account_number = s.number or "",
                                   transactions = v.txns }, v.dr, v.cr)
    end
    sub(a, a.name .. " (general)")
    for _, s in ipairs(row.subs) do sub(s, s.name) end
    if subs[1] then
      list[#list + 1] = movement({ accountid = a.uuid, account_name = a.name, account_number = a.number or "",
                                   sub_accounts = subs }, dr, cr)
      total_dr, total_cr = total_dr + dr, total_cr + cr
    end
  end
  out.data = list
  out.summary = { total_debit = money(total_dr, code), total_credit = money(total_cr, code) }
  out.locale = p.locale or "en"
  out.summary_only = p.summary_only == true
end

-- Cash flow from start_date to end_date: every change of the cash accounts (Cash & Bank), by what was
-- on the other side: operating (customers, expenses, payables, income), investing (fixed and other
-- assets), financing (equity, long term liabilities); starting balance + net change = ending balance.
local ACTIVITIES = { "operating", "investing", "financing" }
local function cash_flow(p, acct, out)
  local bk = books.of(acct)
  local code = p.currency
  local function is_cash(a) return a.type == "asset" and a.sub_type == "Cash & Bank" end
  local function activity(a)
    if a.type == "asset" and (a.sub_type == "Fixed Asset" or a.sub_type == "Other Asset") then return "investing" end
    if a.type == "equity" or (a.type == "liability" and a.sub_type == "Long Term Liability") then return "financing" end
    return "operating"
  end
  local DETAIL = { invoice = "Sales", payment = "Sales", income = "Sales", expense = "Expenses", bill = "Expenses",
                   bill_payment = "Expenses", adjustment = "Journal Entries" }
  local starting, inflow, outflow = 0, 0, 0
  local tree = {} -- activity -> detail -> account group -> sub name -> {categoryid, total}
  for _, x in ipairs(bk.list) do
    if x.code == code and x.day <= p.end_date then
      local delta = 0
      for _, leg in ipairs(x.legs) do
        if is_cash(leg[1]) then delta = delta + leg[2] - leg[3] end
      end
      if x.day < p.start_date then
        starting = starting + delta
      elseif delta ~= 0 then
        if delta > 0 then inflow = inflow + delta else outflow = outflow + delta end
        for _, leg in ipairs(x.legs) do
          local a = leg[1]
          local c = leg[3] - leg[2]
          if not is_cash(a) and c ~= 0 then
            local act = activity(a)
            local d1 = tree[act] or {}; tree[act] = d1
            local d2 = d1[DETAIL[x.kind]] or {}; d1[DETAIL[x.kind]] = d2
            local d3 = d2[a.sub_type] or {}; d2[a.sub_type] = d3
            local name = (a.type == "expense" and x.category) or a.name
            local s = d3[name] or { categoryid = a.type == "expense" and x.categoryid or NULL, total = 0 }
            d3[name] = s
            s.total = s.total + c
          end
        end
      end
    end
  end
  local activities = json.array()
  local net = 0
  for _, act in ipairs(ACTIVITIES) do
    local details, act_total = json.array(), 0
    for _, dname in ipairs(sorted_keys(tree[act] or {})) do
      local accounts, d_total = json.array(), 0
      for _, gname in ipairs(sorted_keys(tree[act][dname])) do
        local subs, g_total = json.array(), 0
        for _, sname in ipairs(sorted_keys(tree[act][dname][gname])) do
          local s = tree[act][dname][gname][sname]
          subs[#subs + 1] = { name = sname, categoryid = s.categoryid, sub_accountid = NULL,
                              total = money(s.total, code) }
          g_total = g_total + s.total
        end
        accounts[#accounts + 1] = { name = gname, sub_accounts = subs, total = money(g_total, code) }
        d_total = d_total + g_total
      end
      details[#details + 1] = { name = dname, accounts = accounts, total = money(d_total, code) }
      act_total = act_total + d_total
    end
    activities[#activities + 1] = { category = act, details = details, total = money(act_total, code) }
    net = net + act_total
  end
  out.activities = activities
  out.summary = { starting_balance = money(starting, code), gross_cash_inflow = money(inflow, code),
                  gross_cash_outflow = money(outflow, code), net_cash_change = money(net, code),
                  ending_balance = money(starting + net, code) }
end

-- Expense details from start_date to end_date in the currency, grouped by parent category (default),
-- client, vendor or author, with the clients, vendors and authors they name.
local function expense_details(p, acct, out)
  local cols, code = acct.cols, p.currency
  local group_by = p.group_by or "parent_category"
  local groups, clients, vendors, authors = {}, {}, {}, {}
  local total = 0
  for _, e in ipairs(cols.expenses.list) do
    local day = util.parse_date(e.date)
    local projectid = tonumber(e.projectid) or 0
    local clientid = tonumber(e.clientid) or 0
    if not e.removed and e.vis_state ~= 1 and in_range(p, day) and (e.currency_code or acct.currency_code) == code
        and (not p.client_id or clientid == p.client_id) and (not p.project_id or projectid == p.project_id)
        and (p.include_project ~= false or projectid == 0) then
      local cat = cols.categories.by_id[tonumber(e.categoryid)]
      local parent = cat and cols.categories.by_id[tonumber(cat.parentid)] or cat
      local vendor = type(e.vendor) == "string" and e.vendor or ""
      local staff = cols.staffs.by_id[tonumber(e.staffid)]
      local id, name
      if group_by == "clients" then
        local c = cols.clients.by_id[clientid]
        id, name = tostring(clientid), c and c.organization or ""
      elseif group_by == "vendor" then
        id, name = vendor, vendor
      elseif group_by == "author" then
        id = tostring(tonumber(e.staffid) or 0)
        name = staff and ((staff.fname or "") .. " " .. (staff.lname or "")) or ""
      else
        id, name = tostring(parent and parent.id or 0), parent and parent.category or "Uncategorized"
      end
      local g = groups[id]
      if not g then g = { groupid = id, name = name, total = 0, expenses = json.array() }; groups[id] = g end
      g.total, total = g.total + e.amount, total + e.amount
      g.expenses[#g.expenses + 1] = { expenseid = e.id, date = e.date, categoryid = cat and cat.id or NULL,
        category = cat and cat.category or "", vendor = vendor, clientid = clientid, projectid = projectid,
        staffid = tonumber(e.staffid) or 0, notes = type(e.notes) == "string" and e.notes or "",
        amount = money(e.amount, code) }
      local c = cols.clients.by_id[clientid]
      if c then
        clients[tostring(clientid)] = { id = c.id, userid = c.id, fname = c.fname or "", lname = c.lname or "",
          organization = c.organization or "", email = c.email or "", language = c.language or "en" }
      end
      if vendor ~= "" then vendors[vendor] = vendor end
      if staff then
        authors[tostring(staff.id)] = { userid = staff.id, fname = staff.fname or "", lname = staff.lname or "",
          email = staff.email or "", organization = staff.organization or "" }
      end
    end
  end
  local list = json.array()
  for _, id in ipairs(sorted_keys(groups)) do
    local g = groups[id]
    g.total = money(g.total, code)
    list[#list + 1] = g
  end
  out.data, out.total = list, money(total, code)
  out.clients, out.vendors, out.authors = clients, vendors, authors
  out.group_by, out.exclude_personal = group_by, p.exclude_personal == true
  out.include_project = p.include_project ~= false
end

-- Invoice details: the invoices of the range (by issue date, or by the day they were paid) in the
-- currency, by client, with what each owes and paid; filters by client and status.
local STATUS_NAMES = {}
for _, s in pairs(data.INVOICE_STATUS) do STATUS_NAMES[s] = true end
STATUS_NAMES.overdue = true
local invoice_json = flat { "invoiceid", "invoice_number", "create_date", "due_offset_days", "due_date", "date_paid",
  "v3_status", "po_number", "currency_code", "total", "paid", "outstanding", "tax", "discount_total" }
local function invoice_details(p, acct, out)
  local cols, code = acct.cols, p.currency
  for _, s in ipairs(p.statusids or {}) do
    if not STATUS_NAMES[s] then return "statusids", s end
  end
  local want_status, want_client = {}, {}
  for _, s in ipairs(p.statusids or {}) do want_status[s] = true end
  for _, c in ipairs(p.clientids or {}) do want_client[c] = true end
  local by_client, total, paid, outstanding = {}, 0, 0, 0
  local date_type = p.date_type or "issue"
  for _, inv in ipairs(cols.invoices.list) do
    if not inv.removed and inv.vis_state ~= 1 and inv.currency_code == code
        and (not next(want_client) or want_client[inv.customerid]) then
      local day = inv[3]
      if date_type == "paid" then
        local dp = inv.date_paid
        day = dp ~= NULL and util.parse_date(dp) or nil
      end
      local status = inv.v3_status
      if in_range(p, day) and (not next(want_status) or want_status[status]
          or (want_status.overdue and inv.display_status == "overdue")) then
        local c = by_client[inv.customerid]
        if not c then
          c = { invoices = json.array(), total = 0, paid = 0, outstanding = 0 }
          by_client[inv.customerid] = c
        end
        local tax = 0
        for _, l in ipairs(rawget(inv, "lines") or {}) do
          tax = tax + (util.cents(l.taxAmount1) or 0) + (util.cents(l.taxAmount2) or 0)
        end
        c.invoices[#c.invoices + 1] = invoice_json { invoiceid = inv.id, invoice_number = inv.invoice_number,
          create_date = inv.create_date, due_offset_days = inv[4], due_date = inv.due_date, date_paid = inv.date_paid,
          v3_status = status, po_number = inv.po_number, currency_code = code, total = money(inv.amount, code),
          paid = money(inv.paid, code), outstanding = money(inv.outstanding, code), tax = money(tax, code),
          discount_total = money(tonumber(rawget(inv, "discount_total")) or 0, code) }
        c.total, c.paid, c.outstanding = c.total + inv.amount, c.paid + inv.paid, c.outstanding + inv.outstanding
        total, paid, outstanding = total + inv.amount, paid + inv.paid, outstanding + inv.outstanding
      end
    end
  end
  local clients = json.array()
  if not p.summary_only then
    for _, cid in ipairs(sorted_keys(by_client)) do
      local c, client = by_client[cid], cols.clients.by_id[cid] or {}
      clients[#clients + 1] = { userid = cid, fname = client.fname or "", lname = client.lname or "",
        organization = client.organization or "", email = client.email or "", invoices = c.invoices,
        summary = { total = money(c.total, code), paid = money(c.paid, code),
                    outstanding = money(c.outstanding, code) } }
    end
  end
  out.clients = clients
  out.summary = { total = money(total, code), paid = money(paid, code), outstanding = money(outstanding, code) }
  out.clientids = json.array(p.clientids or {})
  out.statusids = json.array(p.statusids or {})
  out.date_type = date_type
  out.summary_only = p.summary_only == true
end

-- Manual journal entries from start_date to end_date in the currency, each with its lines on the
-- chart's accounts; the debits and credits in all.
local function manual_journal_entry(p, acct, out)
  local bk = books.of(acct)
  local code = p.currency
  local entries, total_dr, total_cr = json.array(), 0, 0
  for _, x in ipairs(bk.list) do
    if x.kind == "adjustment" and x.code == code and in_range(p, x.day) then
      local details, dr, cr = json.array(), 0, 0
      for _, leg in ipairs(x.legs) do
        local a = leg[1]
        details[#details + 1] = { detailid = leg.detailid or NULL, sub_accountid = tonumber(leg.sub_accountid) or NULL,
          account_name = a.name, account_number = a.number or "", debit = money(leg[2], code),
          credit = money(leg[3], code) }
        dr, cr = dr + leg[2], cr + leg[3]
      end
      entries[#entries + 1] = { entryid = x.entryid, name = x.name or "", description = x.description or "",
        user_entered_date = util.date(x.day), currency_code = code, details = details,
        total_debit = money(dr, code), total_credit = money(cr, code) }
      total_dr, total_cr = total_dr + dr, total_cr + cr
    end
  end
  out.entries = entries
  out.totals = { debit = money(total_dr, code), credit = money(total_cr, code) }
end

-- CSV: one table per report, amounts as plain decimals.
local function amt(m) return m and m.amount or "" end
local csv = {}
function csv.profitloss(out)
  local head = { "Description", "Type" }
  for _, l in ipairs(out.labels) do head[#head + 1] = l end
  head[#head + 1] = "Total"
  local rows = { head }
  local function walk(e, depth)
    local r = { string.rep("  ", depth) .. e.description, e.entry_type }
    for _, d in ipairs(e.data) do r[#r + 1] = amt(d) end
    r[#r + 1] = amt(e.total)
    rows[#rows + 1] = r
    for _, c in ipairs(e.children) do walk(c, depth + 1) end
  end
  for _, e in ipairs(out.income) do walk(e, 0) end
  walk(out.total_income, 0)
  for _, e in ipairs(out.expenses) do walk(e, 0) end
  walk(out.total_expenses, 0)
  walk(out.net_profit, 0)
  return rows
end
function csv.taxsummary(out)
  local rows = { { "Tax", "Taxable Amount Collected", "Tax Collected", "Taxable Amount Paid", "Tax Paid",
                   "Net Taxable Amount", "Net Tax" } }
  for _, t in ipairs(out.taxes) do
    rows[#rows + 1] = { t.tax_name, amt(t.taxable_amount_collected), amt(t.tax_collected), amt(t.taxable_amount_paid),
      amt(t.tax_paid), amt(t.net_taxable_amount), amt(t.net_tax) }
  end
  return rows
end
function csv.payments_collected(out)
  local rows = { { "Date", "Client", "Invoice", "Method", "Description", "Amount", "Currency" } }
  for _, x in ipairs(out.payments) do
    rows[#rows + 1] = { x.date, x.client, x.invoice_number ~= NULL and x.invoice_number or "", x.method,
      x.description, amt(x.amount), x.amount.code }
  end
  return rows
end
function csv.accounts_aging(out)
  local rows = { { "Client", "Email", "0-30", "31-60", "61-90", "91+", "Total" } }
  for _, a in ipairs(out.accounts) do
    rows[#rows + 1] = { a.organization, a.email, amt(a["0-30"]), amt(a["31-60"]), amt(a["61-90"]), amt(a["91+"]),
      amt(a.total) }
  end
  local t = out.totals
  rows[#rows + 1] = { "Total", "", amt(t["0-30"]), amt(t["31-60"]), amt(t["61-90"]), amt(t["91+"]), amt(t.total) }
  return rows
end
function csv.balance_sheet(out)
  local head = { "Type", "Account", "Number" }
  for _, d in ipairs(out.dates) do head[#head + 1] = d end
  local rows = { head }
  local function row(kind, name, number, balances)
    local r = { kind, name, number }
    for _, b in ipairs(balances) do r[#r + 1] = amt(b.balance) end
    rows[#rows + 1] = r
  end
  for _, g in ipairs(out.data) do
    for _, a in ipairs(g.accounts) do
      row(g.account_type, a.account_name, a.account_number, a.balances)
      for _, s in ipairs(a.sub_accounts) do row(g.account_type, "  " .. s.sub_account_name, s.sub_account_number,
        s.balances) end
    end
    row(g.account_type, "Total " .. g.category, "", g.balances)
  end
  row("", "Total Assets", "", out.assets_total)
  row("", "Total Liabilities and Equity", "", out.liabilities_and_equity_total)
  return rows
end
function csv.trial_balance(out)
  local rows = { { "Account", "Number", "Sub-account", "Sub-account Number", "Debit", "Credit" } }
  for _, l in ipairs(out.data) do
    rows[#rows + 1] = { l.account_name, l.account_number, l.account_sub_name, l.account_sub_number, amt(l.debit),
      amt(l.credit) }
  end
  return rows
end
function csv.general_ledger(out)
  local rows = { { "Account", "Number", "Sub-account", "Date", "Type", "Reference", "Description", "Client",
                   "Debit", "Credit" } }
  for _, a in ipairs(out.data) do
    for _, s in ipairs(a.sub_accounts) do
      for _, raw in ipairs(s.transactions) do
        local t = raw.src
        rows[#rows + 1] = { a.account_name, a.account_number, s.sub_account_name, t.date, t.entity_type, t.reference,
          t.description, t.client_name or "", amt(t.debit), amt(t.credit) }
      end
    end
  end
  return rows
end
function csv.cash_flow(out)
  local rows = { { "Activity", "Detail", "Account", "Sub-account", "Total" } }
  for _, a in ipairs(out.activities) do
    for _, d in ipairs(a.details) do
      for _, g in ipairs(d.accounts) do
        for _, s in ipairs(g.sub_accounts) do rows[#rows + 1] = { a.category, d.name, g.name, s.name, amt(s.total) } end
      end
    end
    rows[#rows + 1] = { a.category, "Total", "", "", amt(a.total) }
  end
  for _, k in ipairs { "starting_balance", "gross_cash_inflow", "gross_cash_outflow", "net_cash_change",
                       "ending_balance" } do
    rows[#rows + 1] = { "summary", k, "", "", amt(out.summary[k]) }
  end
  return rows
end
function csv.expense_details(out)
  local rows = { { "Group", "Date", "Category", "Vendor", "Client", "Notes", "Amount" } }
  for _, g in ipairs(out.data) do
    for _, e in ipairs(g.expenses) do
      local c = out.clients[tostring(e.clientid)]
      rows[#rows + 1] = { g.name, e.date, e.category, e.vendor, c and c.organization or "", e.notes, amt(e.amount) }
    end
  end
  return rows
end
function csv.invoice_details(out)
  local rows = { { "Client", "Invoice", "Date", "Due Date", "Status", "Total", "Paid", "Outstanding", "Date Paid" } }
  for _, c in ipairs(out.clients) do
    for _, raw in ipairs(c.invoices) do
      local i = raw.src
      rows[#rows + 1] = { c.organization, i.invoice_number, i.create_date, i.due_date, i.v3_status, amt(i.total),
        amt(i.paid), amt(i.outstanding), i.date_paid ~= NULL and i.date_paid or "" }
    end
  end
  return rows
end
function csv.manual_journal_entry(out)
  local rows = { { "Entry", "Date", "Name", "Description", "Account", "Number", "Debit", "Credit" } }
  for _, e in ipairs(out.entries) do
    for _, d in ipairs(e.details) do
      rows[#rows + 1] = { tostring(e.entryid), e.user_entered_date, e.name, e.description, d.account_name,
        d.account_number, amt(d.debit), amt(d.credit) }
    end
  end
  return rows
end

local function csv_field(v)
  v = tostring(v)
  if v:find('[",\r\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end
local function csv_text(rows)
  local lines = {}
  for i, r in ipairs(rows) do
    local f = {}
    for j, v in ipairs(r) do f[j] = csv_field(v) end
    lines[i] = table.concat(f, ",")
  end
  return table.concat(lines, "\r\n") .. "\r\n"
end

local DATES = { start_date = "date", end_date = "date", currency_code = "currency" }
local function with(t)
  local out = {}
  for k, v in pairs(DATES) do out[k] = v end
  for k, v in pairs(t) do if v == false then out[k] = nil else out[k] = v end end
  return out
end

-- One row per report: kind (the path's last segment), key (the result's key), where FreshBooks serves
-- it (account: /accounting/account/{account_id}/reports/accounting/{kind}; business:
-- /accounting/businesses/{business_uuid}/reports/{kind}), the parameters it reads, whether it answers
-- company_name and a download_token, and its builder.
reports.rows = {
  { kind = "profitloss_entity", key = "profitloss", at = { "account" }, company = true, token = true,
    params = with { resolution = "resolution", cash_based = "bool" }, build = profit_loss },
  -- the same report under its older path, which FreshBooks still answers
  { kind = "profitloss", key = "profitloss", at = { "account" }, company = true, token = true,
    params = with { resolution = "resolution", cash_based = "bool" }, build = profit_loss },
  { kind = "taxsummary", key = "taxsummary", at = { "account" }, token = true,
    params = with { cash_based = "bool" }, build = tax_summary },
  { kind = "payments_collected", key = "payments_collected", at = { "account" }, token = true,
    params = with { clientids = "ids", currency_codes = "codes", payment_methods = "strings",
                    payment_method = "string" }, build = payments_collected },
  { kind = "accounts_aging", key = "accounts_aging", at = { "account" }, company = true, token = true,
    start_default = false, no_start = true, params = with {}, build = accounts_aging },
  { kind = "balance_sheet", key = "balance_sheet", at = { "account" }, company = true, token = true,
    params = { dates = "dates", currency_code = "currency" }, build = balance_sheet },
  { kind = "trial_balance", key = "trial_balance", at = { "account" }, company = true, token = true,
    params = with {}, build = trial_balance },
  { kind = "invoice_details", key = "invoice_details", at = { "account" }, company = true, token = true,
    params = with { clientids = "ids", statusids = "strings", date_type = { "issue", "paid" },
                    summary_only = "bool" }, build = invoice_details },
  { kind = "expense_details", key = "expense_details", at = { "account", "business" }, company = true, token = true,
    params = with { group_by = { "parent_category", "clients", "vendor", "author" }, exclude_personal = "bool",
                    include_project = "bool", client_id = "int", project_id = "int", locale = "string" },
    build = expense_details },
  { kind = "general_ledger", key = "general_ledger", at = { "business", "account" }, company = true, token = true,
    params = with { accountid = "uuid", locale = "string", summary_only = "bool" }, build = general_ledger },
  { kind = "cash_flow", key = "cash_flow", at = { "business", "account" }, company = true, token = true,
    params = with {}, build = cash_flow },
  { kind = "chart_of_accounts", key = "journal_entry_accounts", at = { "business" }, start_default = false,
    params = with { account_type = ACCOUNT_TYPES, state = { "active", "inactive" }, sort = "string",
                    use_ledger_entries = "bool" }, build = chart_of_accounts, bare = true },
  { kind = "manual_journal_entry", key = "manual_journal_entry", at = { "account" }, company = true, token = true,
    params = with {}, build = manual_journal_entry },
}
reports.kinds, reports.by_kind, reports.by_key = {}, {}, {}
for i, r in ipairs(reports.rows) do
  reports.kinds[i], reports.by_kind[r.kind] = r.kind, r
  reports.by_key[r.key] = reports.by_key[r.key] or r
end

local REPORT = { object = "report", errors = "legacy" }
local function bad(field, value)
  return require("sandbox.resources").fail(REPORT, 400, 1004, field, "Invalid value for " .. field .. ".",
    type(value) == "table" and NULL or value)
end

-- The report `row` for the account, from request arguments: status, body (the result) or an error.
local function run(row, args, acct, user)
  local p, field, value = params(row, args, acct)
  if not p then return bad(field, value) end
  if row.bare then
    local out = {}
    local f, v = row.build(p, acct, out)
    if f then return bad(f, v) end
    return 200, out
  end
  local out = { currency_code = p.currency }
  if row.params.end_date then out.end_date = util.date(p.end_date) end
  if row.params.start_date and p.start_date and not row.no_start then out.start_date = util.date(p.start_date) end
  if row.company then out.company_name = acct.business.name end
  if row.token then out.download_token = download_token(row, args, acct, user) end
  local f, v = row.build(p, acct, out)
  if f then return bad(f, v) end
  return 200, out
end

-- The answer for `kind` to an authorised request (ctx.account): status, body.
function reports.answer(kind, req, ctx)
  local row = reports.by_kind[kind]
  local status, out = run(row, req.args, ctx.account, ctx.user)
  if status ~= 200 then return status, out end
  if row.bare then return 200, { response = { result = out } } end
  return 200, { response = { result = { [row.key] = out } } }
end

-- GET /accounting/account/{account_id}/links/reports/{download_token}/{key}.csv: the report the token
-- names, as it is now, as CSV. The token is the credential (a link FreshBooks hands out); one that this
-- sandbox did not sign, that expired, or that names another account or report is 404.
local function download(_, aid, token, name)
  local claims = token_claims(token)
  local row = claims and reports.by_key[claims.objectid]
  local acct = state.data.accounts[aid]
  if not (row and acct and claims.accountid == aid and name == row.key and csv[row.key]) then
    return require("sandbox.resources").fail(REPORT, 404, 1012, "download_token", "Report not found.", NULL)
  end
  local status, out = run(row, type(claims.params) == "table" and claims.params or {}, acct)
  if status ~= 200 then return status, out end
  return 200, csv_text(csv[row.key](out)), { ["Content-Type"] = "text/csv; charset=utf-8",
    ["Content-Disposition"] = 'attachment; filename="' .. row.key .. '.csv"' }
end

-- Routes: each report where FreshBooks serves it, and the CSV download.
local routes = {}
local ACC, BIZ = "/accounting/account/([^/]+)/", "/accounting/businesses/([^/]+)/"
for _, row in ipairs(reports.rows) do
  for _, at in ipairs(row.at) do
    if at == "account" then
      routes[#routes + 1] = { method = "GET", path = ACC .. "reports/accounting/" .. row.kind,
        name = "/accounting/account/{account_id}/reports/accounting/" .. row.kind,
        handler = function(req, aid)
          local resources = require "sandbox.resources"
          local ctx, s, b, h = resources.account_ctx(req, aid, "user:reports:read")
          if not ctx then return s, b, h end
          return reports.answer(row.kind, req, ctx)
        end }
    else
      routes[#routes + 1] = { method = "GET", path = BIZ .. "reports/" .. row.kind,
        name = "/accounting/businesses/{business_uuid}/reports/" .. row.kind,
        handler = function(req, uuid)
          local resources = require "sandbox.resources"
          local b = state.business_by_uuid(uuid)
          local ctx, s, body, h = resources.member_ctx(req, "accounting_business", "user:reports:read", b, "business")
          if not ctx then return s, body, h end
          ctx.account = state.data.accounts[b.account_id]
          return reports.answer(row.kind, req, ctx)
        end }
    end
  end
end
routes[#routes + 1] = { method = "GET", path = ACC .. "links/reports/([%w_%-%.]+)/([%w_]+)%.csv",
  name = "/accounting/account/{account_id}/links/reports/{download_token}/{report}.csv", handler = download,
  redact = function() return "" end }
reports.routes = routes

reports.periods = periods
return reports
