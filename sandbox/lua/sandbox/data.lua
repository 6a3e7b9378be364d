-- The resource catalogue and the deterministic seeded data. Records are plain tables of stored fields
-- (money as integer cents); invoices are compact arrays behind a metatable so 100,000 of them stay small.
local util = require "sandbox.util"
local json = require "sandbox.json"
local NULL = json.null

local data = {}

-- Accounting resources: one row each; what their records hold is in sandbox/records.lua.
-- verbs: l(ist) g(et) c(reate) u(pdate) d(HTTP DELETE: FreshBooks accepts it for these).
-- errors: "legacy" (response.errors[]), "legacy200" (same body, HTTP 200), "rpc" (google.rpc details).
-- id_key: the record's own id field (filters `search[<id_key>]`, `search[<id_key>s][]`, error fields).
-- answer: the key one record is answered under when it is not `single`.
-- lines: "invoice" or "bill" lines (answered by single GETs and with include[]=lines).
-- sends: a PUT may carry action_email / action_mark_as_sent.
data.accounting = {
  { name = "clients", path = "users/clients", plural = "clients", single = "client", scope = "clients",
    verbs = "lgcu", errors = "legacy", id_key = "userid", object = "client",
    required_any = { "fname", "lname", "organization", "email" } },
  { name = "invoices", path = "invoices/invoices", plural = "invoices", single = "invoice", scope = "invoices",
    verbs = "lgcud", errors = "legacy", id_key = "invoiceid", object = "invoice", lines = "invoice", sends = true,
    required = { "customerid", "create_date" }, refs = { customerid = "clients" },
    aliases = { date = "create_date", customerids = "customerid", clientid = "customerid" } },
  { name = "estimates", path = "estimates/estimates", plural = "estimates", single = "estimate", scope = "estimates",
    verbs = "lgcud", errors = "legacy", id_key = "estimateid", object = "estimate", lines = "invoice", sends = true,
    required = { "customerid", "create_date" }, refs = { customerid = "clients" },
    aliases = { date = "create_date", customerids = "customerid", statusid = "status", statusids = "status" } },
  { name = "expenses", path = "expenses/expenses", plural = "expenses", single = "expense", scope = "expenses",
    verbs = "lgcu", errors = "legacy", id_key = "expenseid", object = "expense",
    required = { "categoryid", "staffid", "date", "amount" }, refs = { categoryid = "categories" } },
  { name = "categories", path = "expenses/categories", plural = "categories", single = "category",
    scope = "expenses", verbs = "lg", errors = "legacy", id_key = "categoryid", object = "category" },
  { name = "items", path = "items/items", plural = "items", single = "item", scope = "billable_items",
    verbs = "lgcu", errors = "legacy", id_key = "itemid", object = "item", required = { "name" } },
  { name = "payments", path = "payments/payments", plural = "payments", single = "payment", scope = "payments",
    verbs = "lgcu", errors = "legacy", id_key = "paymentid", object = "payment",
    required = { "invoiceid", "amount", "date" }, refs = { invoiceid = "invoices" } },
  -- Taxes answer their errors with HTTP 200 and an error body, as some FreshBooks endpoints do.
  { name = "taxes", path = "taxes/taxes", plural = "taxes", single = "tax", scope = "taxes",
    verbs = "lgcud", errors = "legacy200", id_key = "taxid", object = "tax", required = { "name" } },
  { name = "credit_notes", path = "credit_notes/credit_notes", plural = "credit_notes", single = "credit_note",
    scope = "credit_notes", verbs = "lgcu", errors = "legacy", id_key = "creditid", object = "credit_note",
    -- one credit note answers under `credit_notes` (the Node SDK's recorded answers and its reader); requests
    -- take `credit_note` (postman, docs) or the `credit_notes` the Node SDK sends
    answer = "credit_notes", wrapper_aliases = { "credit_notes" },
    lines = "invoice", required = { "clientid", "create_date" }, refs = { clientid = "clients" } },
  { name = "other_incomes", path = "other_incomes/other_incomes", plural = "other_income", single = "other_income",
    scope = "other_income", verbs = "lgcud", errors = "legacy", id_key = "incomeid", object = "other_income",
    required = { "amount", "date" } },
  -- The newer endpoints answer errors in google.rpc shape and want money amounts as strings.
  { name = "bills", path = "bills/bills", plural = "bills", single = "bill", scope = "bills", verbs = "lgcu",
    errors = "rpc", id_key = "billid", object = "bill", lines = "bill", required = { "vendorid", "issue_date" },
    refs = { vendorid = "bill_vendors" } },
  { name = "bill_payments", path = "bill_payments/bill_payments", plural = "bill_payments", single = "bill_payment",
    scope = "bill_payments", verbs = "lgcu", errors = "rpc", id_key = "billpaymentid", object = "bill_payment",
    required = { "billid", "amount", "paid_date" }, refs = { billid = "bills" } },
  { name = "bill_vendors", path = "bill_vendors/bill_vendors", plural = "bill_vendors", single = "bill_vendor",
    scope = "bill_vendors", verbs = "lgcu", errors = "rpc", id_key = "vendorid", object = "bill_vendor",
    required = { "vendor_name" } },
  { name = "invoice_profiles", path = "invoice_profiles/invoice_profiles", plural = "invoice_profiles",
    single = "invoice_profile", scope = "invoices", verbs = "lgcu", errors = "legacy", id_key = "profileid",
    object = "invoice_profile", lines = "invoice", required = { "customerid", "frequency" },
    refs = { customerid = "clients" }, aliases = { clientid = "customerid", clientids = "customerid" } },
  -- Tasks answer vis_state (docs:tasks, the Java and PHP SDKs' recorded tasks) and take the camel-case visState
  -- the Node SDK sends as well; their scope is billable items (docs:tasks).
  { name = "tasks", path = "projects/tasks", plural = "tasks", single = "task", scope = "billable_items",
    verbs = "lgcu", errors = "legacy", id_key = "taskid", object = "task", required = { "name" },
    aliases = { visState = "vis_state" }, request_aliases = { visState = "vis_state" } },
  { name = "staffs", path = "users/staffs", plural = "staffs", single = "staff", scope = "teams", verbs = "lgu",
    errors = "legacy", id_key = "userid", object = "staff" },
  { name = "gateways", path = "systems/gateways", plural = "gateways", single = "gateway",
    scope = "online_payments", verbs = "ld", errors = "legacy", id_key = "gatewayid", object = "gateway" },
  { name = "journal_entries", path = "journal_entries/journal_entries", plural = "journal_entries",
    single = "journal_entry", scope = "journal_entries", verbs = "lc", errors = "rpc", id_key = "entryid",
    object = "journal_entry", required = { "name", "user_entered_date", "details" } },
  { name = "journal_entry_details", path = "journal_entries/journal_entry_details",
    plural = "journal_entry_details", single = "journal_entry_detail", scope = "journal_entries", verbs = "l",
    errors = "rpc", id_key = "detailid", object = "journal_entry_detail" },
  { name = "journal_entry_accounts", path = "journal_entry_accounts/journal_entry_accounts",
    plural = "journal_entry_accounts", single = "journal_entry_account", scope = "journal_entries", verbs = "l",
    errors = "rpc", id_key = "accountid", object = "journal_entry_account" },
}

local records = require "sandbox.records"
for _, r in ipairs(data.accounting) do r.T = records.templates[r.name] end

data.by_name = {}
for _, r in ipairs(data.accounting) do data.by_name[r.name] = r end

-- Seed data are dated relative to a fixed day so they never depend on when the sandbox starts.
data.TODAY = util.days_from_civil(2025, 6, 30)
local T0 = data.TODAY * 86400 + 15 * 3600
-- US/Eastern changed to daylight time on 2025-03-09 at 07:00 UTC: seeded changes land on both sides.
data.DST_2025 = util.days_from_civil(2025, 3, 9) * 86400 + 7 * 3600

local first_names = { "Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Dennis", "Frances", "Ken", "Radia",
                      "Edsger", "Hedy", "Donald", "Katherine", "John", "Lynn" }
local last_names = { "Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Ritchie", "Allen",
                     "Thompson", "Perlman", "Dijkstra", "Lamarr", "Knuth", "Johnson", "Backus", "Conway" }
local companies = { "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Wonka",
                    "Tyrell", "Cyberdyne", "Soylent", "Gringotts", "Monsters", "Oscorp", "Pied Piper" }
local suffixes = { "Inc.", "LLC", "Ltd.", "& Co.", "Group", "Studio" }
local item_names = { "Consulting", "Design", "Development", "Support", "Training", "Hosting", "Audit", "Workshop" }
local cities = { { "Springfield", "Illinois", "United States" }, { "Toronto", "Ontario", "Canada" },
                 { "Portland", "Oregon", "United States" }, { "Halifax", "Nova Scotia", "Canada" } }
-- Clients billed in another currency than their business's (every ninth one): multi-currency books.
local FOREIGN = { USD = "USD", CAD = "USD" }

-- One document line as FreshBooks answers it; each kind of document has its own line fields:
-- invoices (node:Invoice.test.ts, the Java SDK's recorded invoices), estimates (zerospam's recorded
-- estimate), invoice profiles (zerospam's recorded profile), credit notes (node:CreditNote.test.ts).
function data.line(kind, doc_id, i, name, qty, unit, code, t)
  local l = { amount = util.money(qty * unit, code), compounded_tax = false, description = name .. " services",
              name = name, qty = tostring(qty), taskno = i, taxAmount1 = "0", taxAmount2 = "0",
              unit_cost = util.money(unit, code) }
  if kind == "credit_notes" then
    l.creditid, l.taxName1, l.taxName2 = doc_id, NULL, NULL
  elseif kind == "estimates" then
    l.estimateid, l.type, l.taxName1, l.taxName2, l.taxNumber1, l.taxNumber2 = doc_id, 0, "", "", NULL, NULL
  elseif kind == "invoice_profiles" then
    l.profileid, l.lineid, l.type, l.taxName1, l.taxName2 = doc_id, i, 0, NULL, NULL
  else
    l.invoiceid, l.lineid, l.type, l.expenseid, l.basecampid = doc_id, i, 0, 0, 0
    l.retainer_id, l.retainer_period_id, l.modern_project_id = NULL, NULL, NULL
    l.modern_time_entries = json.array()
    l.taxName1, l.taxName2, l.taxNumber1, l.taxNumber2 = "", "", NULL, NULL
    l.date, l.updated = NULL, util.eastern(t)
  end
  return l
end

-- A document's seeded lines (deterministic from seed and id). With want_lines false only the total.
function data.seed_lines(seed, id, currency, want_lines, kind, t)
  local rnd = util.prng(seed * 1000003 + id * 7919)
  local n = rnd(1, 3)
  local total = 0
  local lines = want_lines and {} or nil
  for i = 1, n do
    local qty = rnd(1, 10)
    local unit = rnd(20, 400) * 25 -- cents, multiples of 0.25
    total = total + qty * unit
    local name = item_names[rnd(1, #item_names)]
    if lines then lines[i] = data.line(kind or "invoices", id, i, name, qty, unit, currency, t or T0) end
  end
  return total, lines
end

-- A bill line: category, quantity (a number), unit cost, totals; no taxes.
function data.bill_line(i, category, categoryid, description, qty, unit, code)
  local amount = util.money(qty * unit, code)
  return { amount = amount, category = category, categoryid = categoryid, description = description,
           list_index = i, quantity = qty, tax_amount1 = NULL, tax_amount2 = NULL, tax_authorityid1 = NULL,
           tax_authorityid2 = NULL, tax_name1 = NULL, tax_name2 = NULL, tax_percent1 = NULL, tax_percent2 = NULL,
           total_amount = amount, unit_cost = util.money(unit, code) }
end

-- Compact invoice: slots 1 id, 2 customerid, 3 create day, 4 terms days, 5 amount cents, 6 paid cents,
-- 7 status, 8 vis_state, 9 updated (epoch). Other fields live in the hash part only when set.
local SLOT = { id = 1, customerid = 2, due_offset_days = 4, amount = 5, paid = 6, status = 7, vis_state = 8,
               updated_t = 9 }
data.INVOICE_SLOT = SLOT

local STATUS = { [0] = "disputed", [1] = "draft", [2] = "sent", [3] = "viewed", [4] = "paid", [5] = "autopaid",
                 [6] = "retry", [7] = "failed", [8] = "partial" }
data.INVOICE_STATUS = STATUS

-- Fields an invoice computes from its slots: never stored.
local COMPUTED = { outstanding = true, due_date = true, v3_status = true, payment_status = true,
                   display_status = true, date_paid = true, created_at_t = true }

-- The invoice metatable for one account: derived fields are computed on read.
local function invoice_mt(account)
  local derived = {
    create_date = function(r) return util.date(r[3]) end,
    due_date = function(r) return util.date(r[3] + r[4]) end,
    outstanding = function(r) return r[5] - r[6] end,
    invoice_number = function(r) return string.format("%07d", r[1]) end,
    currency_code = function(r)
      local c = account.clients.by_id[r[2]]
      return c and c.currency_code or account.currency_code
    end,
    v3_status = function(r) return STATUS[r[7]] or "draft" end,
    payment_status = function(r)
      if r[6] <= 0 then return "unpaid" elseif r[6] >= r[5] then return "paid" end
      return "partial"
    end,
    display_status = function(r)
      local paid = r[6] >= r[5] and r[5] > 0
      if not paid and r[7] ~= 1 and r[3] + r[4] < data.TODAY then return "overdue" end
      return STATUS[r[7]] or "draft"
    end,
    date_paid = function(r) if r[5] > 0 and r[6] >= r[5] then return util.date(r[3] + 12) end return NULL end,
    created_at_t = function(r) return r[3] * 86400 + 14 * 3600 + r[1] % 3600 end,
    updated_t = function(r) return r[9] end,
  }
  return {
    __index = function(r, k)
      local slot = SLOT[k]
      if slot then return rawget(r, slot) end
      local f = derived[k]
      if f then return f(r) end
      if k == "lines" then
        local _, lines = data.seed_lines(account.seed, r[1], r.currency_code, true, "invoices", r[9])
        return lines
      end
      return nil
    end,
    __newindex = function(r, k, v)
      local slot = SLOT[k]
      if slot then rawset(r, slot, v)
      elseif COMPUTED[k] then return -- derived from the slots; never stored
      elseif k == "create_date" then rawset(r, 3, util.parse_date(v) or r[3])
      else rawset(r, k, v) end
    end,
  }
end

local function collection() return { list = {}, by_id = {}, next_id = 1 } end

local function add(col, rec, id)
  id = id or col.next_id
  rec.id = id
  col.list[#col.list + 1] = rec
  col.by_id[id] = rec
  if id >= col.next_id then col.next_id = id + 1 end
  return rec
end
data.add = add

-- A change history: created at t, then changed on a few later days (never after today).
local function changed(rnd, t)
  local days = rnd(0, 3) * rnd(0, 20)
  local u = t + days * 86400 + rnd(0, 36) * 300
  return math.min(u, T0 + 3 * 3600)
end

-- Build one account's accounting data; sizes scale with `invoices`.
local function seed_account(b, seed, n_invoices, n_clients)
  local rnd = util.prng(seed * 31 + b.id)
  local home = b.currency_code
  local acct = { account_id = b.account_id, business = b, currency_code = home, seed = seed, cols = {},
                 payment_options = {} } -- invoice id -> the options set for it (sandbox/lua/sandbox/payments.lua)
  for _, r in ipairs(data.accounting) do acct.cols[r.name] = collection() end
  local cols = acct.cols
  acct.clients = cols.clients
  for i = 1, n_clients do
    local fn, ln = first_names[rnd(1, #first_names)], last_names[rnd(1, #last_names)]
    local org = companies[(i - 1) % #companies + 1] .. (i > #companies and (" " .. math.ceil(i / #companies)) or "")
      .. " " .. suffixes[rnd(1, #suffixes)]
    local city = cities[rnd(1, #cities)]
    local signup = T0 - 86400 * 700 + i * 86400 * 3 + rnd(0, 86399)
    add(cols.clients, { fname = fn, lname = ln, organization = org,
      currency_code = (i % 9 == 0 and FOREIGN[home]) or home,
      email = string.lower(fn .. "." .. ln .. i .. "@example.com"), home_phone = NULL, mob_phone = "", note = NULL,
      p_street = i .. " Main St", p_city = city[1], p_province = city[2], p_country = city[3],
      p_code = string.format("%05d", 10000 + i), bus_phone = string.format("555-01%02d", i % 100),
      username = string.lower(fn .. ln .. i), uuid = data.uuid(seed, b.id * 7 + 1, i),
      -- every 17th client archived, the 23rd deleted
      vis_state = (i % 23 == 0) and 1 or (i % 17 == 0) and 2 or 0,
      signup_date_t = signup, updated_t = changed(rnd, signup) }, 10000 + i)
  end
  for i = 1, 4 do
    local t = T0 - 86400 * 900 + i * 3600
    add(cols.categories, { category = ({ "Advertising", "Office Supplies", "Travel", "Software" })[i],
      is_cogs = false, is_editable = i > 1, parentid = i > 1 and 2001 or NULL, transaction_posted = i < 3,
      vis_state = 0, created_at_t = t, updated_at_t = changed(rnd, t) }, 2000 + i)
  end
  add(cols.staffs, { fname = "Alice", lname = "Sandbox", email = "alice@example.com", username = "alice",
    organization = b.name, vis_state = 0, signup_date_t = T0 - 86400 * 800, updated_t = T0 - 86400 * 30 }, 1)
  add(cols.taxes, { name = "GST", amount = "5", number = "RT0001", compound = false, updated_t = T0 - 86400 * 500 }, 1)
  add(cols.taxes, { name = "HST", amount = "13", number = "RT0002", compound = false, updated_t = T0 - 86400 * 400 })
  for i = 1, #item_names do
    add(cols.items, { name = item_names[i], description = item_names[i] .. " services", qty = tostring(i * 3),
      unit_cost = (i * 2500), inventory = NULL, sku = "SKU-" .. i, tax1 = i % 2, tax2 = 0,
      vis_state = i == #item_names and 2 or 0, updated_t = T0 - 86400 * (60 + i * 11) })
  end
  for i, t in ipairs { { "General", 10000 }, { "Design", 12500 }, { "Travel", 5000 } } do
    add(cols.tasks, { name = t[1], description = t[1] .. " work", billable = i ~= 3, rate = t[2], tdesc = "",
      vis_state = i == 3 and 2 or 0, updated_t = T0 - 86400 * (200 - i * 30) })
  end
  add(cols.gateways, { gateway_name = "stripe", connectionid = string.format("%08x%024x", b.id, seed) })
  for i = 1, 3 do
    local t = T0 - 86400 * (300 - i * 40)
    add(cols.bill_vendors, { vendor_name = companies[i + 8] .. " Supplies", primary_contact_first_name = first_names[i],
      primary_contact_last_name = last_names[i], primary_contact_email = "ap" .. i .. "@vendor.example.com",
      currency_code = home, city = cities[i][1], province = cities[i][2], country = cities[i][3],
      street = i .. " Supply Rd", vis_state = i == 3 and 2 or 0, created_at_t = t, updated_at_t = changed(rnd, t) },
      300 + i)
  end
  for i, t in ipairs { { "Cash", "asset", "1000" }, { "Accounts Receivable", "asset", "1200" },
                       { "Sales", "income", "4000" }, { "Operating Expenses", "expense", "6000" } } do
    add(cols.journal_entry_accounts, { account_name = t[1], account_type = t[2], account_number = t[3],
      balance = "0", currency_code = home, created_at_t = T0 - 86400 * 900, sub_accounts = {} }, 400 + i)
  end
  cols.journal_entry_accounts.by_id[404].sub_accounts = { { account_sub_name = "Advertising", account_sub_number = "1",
    account_type = "expense", balance = "0", created_at = util.eastern(T0 - 86400 * 900), currency_code = home,
    custom = false, id = 4041, parentid = 404, sub_accountid = 4041, transaction_posted = false } }
  -- Invoices: compact records; about half paid, some partial, a few drafts. Every 97th is archived; one
  -- in a hundred more, after them, is deleted (lists leave it out unless search[vis_state] asks).
  local mt = invoice_mt(acct)
  local inv = cols.invoices
  local client_ids = {}
  for _, c in ipairs(cols.clients.list) do
    if c.vis_state ~= 1 then client_ids[#client_ids + 1] = c.id end
  end
  local n_deleted = math.floor(n_invoices / 100)
  for i = 1, n_invoices + n_deleted do
    local id = i
    local amount = data.seed_lines(seed, id, home, false)
    local roll = rnd(1, 20)
    local status, paid
    if roll <= 2 then status, paid = 1, 0
    elseif roll <= 11 then status, paid = 4, amount
    elseif roll <= 13 then status, paid = 8, math.floor(amount / 2)
    elseif roll <= 16 then status, paid = 3, 0
    else status, paid = 2, 0 end
    local k = i > n_invoices and (i - n_invoices) * 97 % math.max(n_invoices, 1) + 1 or i
    local day = data.TODAY - 730 + math.floor((k - 1) * 730 / math.max(n_invoices, 1))
    local vis = i > n_invoices and 1 or (i % 97 == 0) and 2 or 0
    local rec = setmetatable({ id, client_ids[rnd(1, #client_ids)], day, 30, amount, paid, status, vis,
                               changed(rnd, day * 86400 + 16 * 3600) }, mt)
    inv.list[i] = rec
    inv.by_id[id] = rec
  end
  inv.next_id = n_invoices + n_deleted + 1
  inv.mt = mt
  -- Payments for the first paid invoices (bounded so huge seeds stay small).
  for i = 1, math.min(n_invoices, 400) do
    local r = inv.list[i]
    if r[6] > 0 then
      local d = math.min(r[3] + rnd(1, 30), data.TODAY)
      add(cols.payments, { invoiceid = r[1], amount = r[6], date = util.date(d),
        type = ({ "Check", "Credit", "Cash", "VISA", "Bank Transfer" })[rnd(1, 5)], note = "", vis_state = 0,
        clientid = r[2], currency_code = r.currency_code, updated_t = changed(rnd, d * 86400 + 18 * 3600) })
    end
  end
  for i = 1, 14 do
    local cents = rnd(5, 500) * 100 + rnd(0, 99)
    local d = data.TODAY - i * 20
    add(cols.expenses, { categoryid = 2000 + rnd(1, 4), staffid = 1, date = util.date(d), amount = cents,
      vendor = companies[rnd(1, #companies)], notes = "", currency_code = home,
      vis_state = (i == 13) and 1 or (i == 14) and 2 or 0, updated_t = changed(rnd, d * 86400 + 20 * 3600) })
  end
  for i = 1, 6 do
    local cid = client_ids[rnd(1, #client_ids)]
    local d = data.TODAY - i * 9
    local t = d * 86400 + 13 * 3600
    local c = cols.clients.by_id[cid]
    local total, lines = data.seed_lines(seed + 1, i, c.currency_code, true, "estimates", t)
    add(cols.estimates, { customerid = cid, create_date = util.date(d), estimate_number = string.format("%07d", i),
      currency_code = c.currency_code, status = 1, vis_state = (i == 6) and 1 or 0, amount = total, lines = lines,
      ui_status = "draft", display_status = "draft", created_at_t = t, updated_t = changed(rnd, t) })
  end
  for i = 1, 2 do
    local d = data.TODAY - i * 40
    local c = cols.clients.by_id[client_ids[i]]
    local total, lines = data.seed_lines(seed + 2, i, c.currency_code, true, "credit_notes", d * 86400)
    add(cols.credit_notes, { clientid = client_ids[i], create_date = util.date(d),
      credit_number = string.format("CN%05d", i), currency_code = c.currency_code, status = "sent",
      display_status = "sent", vis_state = 0, amount = total, paid = 0, lines = lines })
  end
  for i = 1, 4 do
    local d = data.TODAY - i * 15
    local t = d * 86400 + 17 * 3600
    add(cols.other_incomes, { amount = rnd(100, 900) * 100, category_name = "online_sales", date = util.date(d),
      note = "", source = "Etsy", payment_type = "Cash", currency_code = home, vis_state = i == 4 and 1 or 0,
      taxes = { { amount = "5", name = "GST" } }, created_at_t = t, updated_at_t = changed(rnd, t) })
  end
  for i = 1, 4 do
    local vendor = cols.bill_vendors.by_id[300 + (i - 1) % 3 + 1]
    local cat = cols.categories.list[(i - 1) % 4 + 1]
    local qty, unit = rnd(1, 10), rnd(10, 200) * 100
    local total = qty * unit
    local paid = (i % 2 == 0) and total or 0
    local d = data.TODAY - i * 25
    local t = d * 86400 + 19 * 3600
    add(cols.bills, { vendorid = vendor.id, issue_date = util.date(d), due_offset_days = 30,
      due_date = util.date(d + 30), bill_number = "B-" .. i, currency_code = home,
      status = paid > 0 and "paid" or "unpaid",
      vis_state = 0, amount = total, total_amount = total, tax_amount = 0, paid = paid, outstanding = total - paid,
      overall_category = cat.category, overall_description = "Supplies",
      lines = { data.bill_line(1, cat.category, cat.id, "Supplies", qty, unit, home) },
      created_at_t = t, updated_at_t = changed(rnd, t) })
    if paid > 0 then
      add(cols.bill_payments, { billid = i, amount = paid, paid_date = util.date(d + 10), currency_code = home,
        payment_type = "Check", note = NULL, vis_state = 0 })
    end
  end
  for i = 1, 2 do
    local cid = client_ids[i + 2]
    local total, lines = data.seed_lines(seed + 4, i, home, true, "invoice_profiles", T0)
    add(cols.invoice_profiles, { customerid = cid, create_date = util.date(data.TODAY - 90 * i), frequency = "m",
      numberRecurring = 0, occurrences_to_date = i, amount = total, lines = lines, vis_state = 0,
      updated_t = T0 - 86400 * 20 * i })
  end
  return acct
end

-- Ledger accounts (the accounting-business family): a type each, and the sub types it allows.
data.LEDGER_SUB_TYPES = {
  asset = { "Cash & Bank", "Current Asset", "Fixed Asset", "Other Asset" },
  liability = { "Current Liability", "Long Term Liability", "Credit Card" },
  equity = { "Owner's Equity", "Retained Earnings" },
  income = { "Income", "Other Income" },
  expense = { "Cost of Goods Sold", "Operating Expense", "Other Expense" },
}

-- A uuid (ledger accounts, clients), the same for the same seed, namespace and sequence number.
function data.uuid(seed, business_id, n)
  local rnd = util.prng(seed * 41 + business_id * 13 + n * 7)
  local function hex(digits) -- at most 6 hex digits per draw: exact on every Lua
    local out = {}
    for _ = 1, digits, 6 do out[#out + 1] = string.format("%06x", rnd(0, 0xffffff)) end
    return table.concat(out):sub(1, digits)
  end
  return ("%s-%s-4%s-%x%s-%s"):format(hex(8), hex(4), hex(3), 8 + rnd(0, 3), hex(3), hex(12))
end
data.ledger_uuid = data.uuid

-- The seeded chart of accounts: name, number, type, sub type, system account name, parent (index).
local CHART = {
  { "Cash", "1000", "asset", "Cash & Bank", "Cash" },
  { "Petty Cash", "1000-1", "asset", "Cash & Bank", "Petty Cash", 1 },
  { "Accounts Receivable", "1200", "asset", "Current Asset", "Accounts Receivable" },
  { "Accounts Payable", "2000", "liability", "Current Liability", "Accounts Payable" },
  { "Sales Tax Payable", "2200", "liability", "Current Liability", "Sales Tax Payable" },
  { "Owner's Equity", "3000", "equity", "Owner's Equity", "Owner's Equity" },
  { "Retained Earnings", "3100", "equity", "Retained Earnings", "Retained Earnings" },
  { "Sales", "4000", "income", "Income", "Sales" },
  { "Cost of Goods Sold", "5000", "expense", "Cost of Goods Sold", "Cost of Goods Sold" },
  { "Office Expenses", "6000", "expense", "Operating Expense" },
}

local function seed_ledger(b, seed)
  local ledger = { list = {}, by_uuid = {}, seq = 0 }
  for i, row in ipairs(CHART) do
    local parent = row[6] and ledger.list[row[6]]
    local rec = { uuid = data.ledger_uuid(seed, b.id, i), name = row[1], number = row[2], type = row[3],
      sub_type = row[4], system_account_name = row[5], parent_account = parent and parent.uuid,
      sub_accounts = {}, auto_created = row[5] ~= nil and parent == nil, state = "active", description = "",
      updated_t = T0 - 86400 * 400 + i * 60 }
    if parent then parent.sub_accounts[#parent.sub_accounts + 1] = rec.uuid end
    ledger.list[i], ledger.by_uuid[rec.uuid], ledger.seq = rec, rec, i
  end
  return ledger
end

-- Data per business: the project family and the ledger accounts.
local function seed_business(b, seed, n_projects, accounts)
  local rnd = util.prng(seed * 37 + b.id)
  local acct = accounts[b.account_id]
  local clients = acct.cols.clients.list
  local p = { projects = collection(), time_entries = collection(), services = collection(), rates = {},
              ledger = seed_ledger(b, seed) }
  for i = 1, 4 do
    add(p.services, { business_id = b.id, name = item_names[i], billable = true, vis_state = 0 }, 700 + i)
    p.rates[700 + i] = string.format("%d.00", 50 + i * 25)
  end
  for i = 1, n_projects do
    local created = T0 - (n_projects - i + 1) * 86400 * 7 - rnd(0, 7200)
    local client = clients[rnd(1, #clients)]
    local kind = ({ "Website", "Audit", "Launch", "Migration" })[rnd(1, 4)]
    add(p.projects, { title = companies[rnd(1, #companies)] .. " " .. kind,
      description = "", due_date = util.date(math.floor(created / 86400) + 60), client_id = client.id,
      internal = false, budget = string.format("%d.00", rnd(10, 100) * 100), fixed_price = NULL, rate = "100.00",
      billing_method = "business_rate", project_type = "hourly_rate", active = i % 5 ~= 0,
      complete = i % 5 == 0, sample = false, created_t = created, updated_t = changed(rnd, created),
      logged = 0, billed_amount = "0.00", billed_status = "unbilled", retainer_id = NULL,
      project_manager_id = NULL, expense_markup = 0, group_id = 9000 + i,
      service_ids = { 701, 700 + rnd(2, 4) } }, 500 + i)
  end
  local entries = n_projects * 5
  for i = 1, entries do
    local proj = p.projects.list[rnd(1, #p.projects.list)]
    local started = T0 - (entries - i + 1) * 3600 * 6
    local dur = rnd(1, 16) * 900
    proj.logged = proj.logged + dur
    add(p.time_entries, { identity_id = 1001, is_logged = true, started_at_t = started, created_t = started + dur,
      updated_t = changed(rnd, started + dur), client_id = proj.client_id, project_id = proj.id,
      pending_client = NULL, pending_project = NULL, pending_task = NULL, task_id = NULL,
      service_id = 700 + rnd(1, 4), note = "Work", active = false, billable = true, billed = rnd(1, 4) == 1,
      internal = false, retainer_id = NULL, duration = dur, timer = NULL, deleted = i == entries or nil }, 8000 + i)
  end
  return p
end

function data.seed(state)
  local seed, n = state.opts.seed, state.opts.invoices
  local d = { accounts = {}, businesses = {}, callbacks = {}, uploads = {} }
  local sizes = { { n, 50, 12 }, { 30, 12, 4 }, { 8, 5, 2 } }
  for i, b in ipairs(state.businesses) do
    local s = sizes[i] or sizes[3]
    d.accounts[b.account_id] = seed_account(b, seed, s[1], s[2])
    d.businesses[b.id] = seed_business(b, seed, s[3], d.accounts)
  end
  return d
end

return data
