-- The resource catalogue and the deterministic seeded data. Records are plain tables of stored fields
-- (money as integer cents); invoices are compact arrays behind a metatable so 100,000 of them stay small.
local util = require "sandbox.util"
local NULL = require("sandbox.json").null

local data = {}

-- Accounting resources: one row each. verbs: l(ist) g(et) c(reate) u(pdate) d(elete, hard).
-- errors: "legacy" (response.errors[]), "legacy200" (same body, HTTP 200), "rpc" (google.rpc details).
-- money: fields held as cents. lines: the record has lines (returned only with include[]=lines).
-- sends: a PUT may carry action_email / action_mark_as_sent. shown: stored fields rendered, not writable.
data.accounting = {
  { name = "clients", path = "users/clients", plural = "clients", single = "client", scope = "clients",
    verbs = "lgcu", errors = "legacy", id_alias = "userid", object = "client",
    required_any = { "fname", "lname", "organization", "email" },
    fields = { "fname", "lname", "organization", "email", "currency_code", "home_phone", "mob_phone", "note",
               "p_street", "p_city", "p_province", "p_country", "p_code", "language", "vat_number", "vis_state" } },
  { name = "invoices", path = "invoices/invoices", plural = "invoices", single = "invoice", scope = "invoices",
    verbs = "lgcu", errors = "legacy", id_alias = "invoiceid", object = "invoice", lines = true, sends = true,
    required = { "customerid", "create_date" }, refs = { customerid = "clients" },
    money = { amount = true, outstanding = true, paid = true, discount_total = true },
    aliases = { date = "create_date" },
    fields = { "customerid", "create_date", "due_offset_days", "invoice_number", "currency_code", "notes", "terms",
               "po_number", "discount_value", "language", "status", "vis_state", "lines" } },
  { name = "estimates", path = "estimates/estimates", plural = "estimates", single = "estimate", scope = "estimates",
    verbs = "lgcu", errors = "legacy", id_alias = "estimateid", object = "estimate", lines = true, sends = true,
    required = { "customerid", "create_date" }, refs = { customerid = "clients" }, money = { amount = true },
    shown = { "ui_status" },
    aliases = { date = "create_date" },
    fields = { "customerid", "create_date", "estimate_number", "currency_code", "notes", "terms", "po_number",
               "status", "vis_state", "lines" } },
  { name = "expenses", path = "expenses/expenses", plural = "expenses", single = "expense", scope = "expenses",
    verbs = "lgcu", errors = "legacy", id_alias = "expenseid", object = "expense",
    required = { "categoryid", "staffid", "date", "amount" }, refs = { categoryid = "categories" },
    money = { amount = true, taxAmount1 = true },
    fields = { "categoryid", "staffid", "date", "amount", "vendor", "notes", "clientid", "projectid", "status",
               "taxName1", "taxAmount1", "vis_state" } },
  { name = "categories", path = "expenses/categories", plural = "categories", single = "category",
    scope = "expenses", verbs = "lg", errors = "legacy", id_alias = "categoryid", object = "category",
    fields = { "category", "is_cogs", "is_editable", "parentid", "vis_state" } },
  { name = "items", path = "items/items", plural = "items", single = "item", scope = "billable_items",
    verbs = "lgcu", errors = "legacy", id_alias = "itemid", object = "item", required = { "name" },
    money = { unit_cost = true },
    fields = { "name", "description", "qty", "unit_cost", "inventory", "sku", "tax1", "tax2", "vis_state" } },
  { name = "payments", path = "payments/payments", plural = "payments", single = "payment", scope = "payments",
    verbs = "lgcu", errors = "legacy", id_alias = "paymentid", object = "payment",
    required = { "invoiceid", "amount", "date" }, refs = { invoiceid = "invoices" }, money = { amount = true },
    fields = { "invoiceid", "amount", "date", "type", "note", "vis_state" } },
  -- Taxes answer their errors with HTTP 200 and an error body, as some FreshBooks endpoints do.
  { name = "taxes", path = "taxes/taxes", plural = "taxes", single = "tax", scope = "taxes",
    verbs = "lgcud", errors = "legacy200", id_alias = "taxid", object = "tax", required = { "name" },
    fields = { "name", "amount", "number", "compound" } },
  { name = "credit_notes", path = "credit_notes/credit_notes", plural = "credit_notes", single = "credit_note",
    scope = "credit_notes", verbs = "lgcu", errors = "legacy", id_alias = "creditid", object = "credit_note",
    lines = true, required = { "clientid", "create_date" }, refs = { clientid = "clients" }, money = { amount = true },
    fields = { "clientid", "create_date", "credit_number", "currency_code", "notes", "status", "vis_state", "lines" } },
  { name = "other_incomes", path = "other_incomes/other_incomes", plural = "other_income", single = "other_income",
    scope = "other_income", verbs = "lgcu", errors = "legacy", id_alias = "incomeid", object = "other_income",
    required = { "amount", "date" }, money = { amount = true },
    fields = { "amount", "category_name", "date", "note", "source", "payment_type", "vis_state" } },
  -- The newer endpoints answer errors in google.rpc shape and want money amounts as strings.
  { name = "bills", path = "bills/bills", plural = "bills", single = "bill", scope = "bills", verbs = "lgcu",
    errors = "rpc", object = "bill", lines = true, required = { "vendorid", "issue_date" },
    refs = { vendorid = "bill_vendors" }, money = { amount = true, outstanding = true, paid = true },
    fields = { "vendorid", "issue_date", "due_offset_days", "bill_number", "currency_code", "language", "status",
               "vis_state", "lines" } },
  { name = "bill_payments", path = "bill_payments/bill_payments", plural = "bill_payments", single = "bill_payment",
    scope = "bill_payments", verbs = "lgcu", errors = "rpc", object = "bill_payment",
    required = { "billid", "amount", "paid_date" }, refs = { billid = "bills" }, money = { amount = true },
    fields = { "billid", "amount", "paid_date", "payment_type", "note", "vis_state" } },
  { name = "bill_vendors", path = "bill_vendors/bill_vendors", plural = "bill_vendors", single = "bill_vendor",
    scope = "bill_vendors", verbs = "lgcu", errors = "rpc", id_alias = "vendorid", object = "bill_vendor",
    required = { "vendor_name" },
    fields = { "vendor_name", "contact_first_name", "contact_last_name", "primary_contact_email", "currency_code",
               "language", "country", "vis_state" } },
  { name = "invoice_profiles", path = "invoice_profiles/invoice_profiles", plural = "invoice_profiles",
    single = "invoice_profile", scope = "invoices", verbs = "lgcu", errors = "legacy", id_alias = "profileid",
    object = "invoice_profile", required = { "customerid", "frequency" }, refs = { customerid = "clients" },
    fields = { "customerid", "frequency", "numberRecurring", "create_date", "currency_code", "vis_state" } },
  { name = "tasks", path = "projects/tasks", plural = "tasks", single = "task", scope = "projects", verbs = "lgcu",
    errors = "legacy", id_alias = "taskid", object = "task", required = { "name" }, money = { rate = true },
    fields = { "name", "description", "billable", "rate", "tname", "tdesc", "vis_state" } },
  { name = "staffs", path = "users/staffs", plural = "staffs", single = "staff", scope = "teams", verbs = "lg",
    errors = "legacy", id_alias = "userid", object = "staff",
    fields = { "fname", "lname", "email", "username", "rate", "vis_state" } },
  { name = "gateways", path = "systems/gateways", plural = "gateways", single = "gateway",
    scope = "online_payments", verbs = "l", errors = "legacy", object = "gateway",
    fields = { "gateway_name", "connection_id", "sgid", "single_gateway_fee" } },
  { name = "journal_entries", path = "journal_entries/journal_entries", plural = "journal_entries",
    single = "journal_entry", scope = "journal_entries", verbs = "lc", errors = "rpc", object = "journal_entry",
    required = { "name", "date", "details" },
    fields = { "name", "date", "description", "currency_code", "details" } },
  { name = "journal_entry_details", path = "journal_entries/journal_entry_details",
    plural = "journal_entry_details", single = "journal_entry_detail", scope = "journal_entries", verbs = "l",
    errors = "rpc", object = "journal_entry_detail", money = { credit = true, debit = true, balance = true },
    fields = { "entryid", "detail_type", "name", "description", "credit", "debit", "balance", "date" } },
  { name = "journal_entry_accounts", path = "journal_entry_accounts/journal_entry_accounts",
    plural = "journal_entry_accounts", single = "journal_entry_account", scope = "journal_entries", verbs = "l",
    errors = "rpc", object = "journal_entry_account",
    fields = { "account_name", "account_number", "account_type", "balance", "currency_code", "sub_accounts" } },
}

data.by_name = {}
for _, r in ipairs(data.accounting) do data.by_name[r.name] = r end

-- Seed data are dated relative to a fixed day so they never depend on when the sandbox starts.
data.TODAY = util.days_from_civil(2025, 6, 30)
local T0 = data.TODAY * 86400 + 15 * 3600

local first_names = { "Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Dennis", "Frances", "Ken", "Radia",
                      "Edsger", "Hedy", "Donald", "Katherine", "John", "Lynn" }
local last_names = { "Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Ritchie", "Allen",
                     "Thompson", "Perlman", "Dijkstra", "Lamarr", "Knuth", "Johnson", "Backus", "Conway" }
local companies = { "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Wonka",
                    "Tyrell", "Cyberdyne", "Soylent", "Gringotts", "Monsters", "Oscorp", "Pied Piper" }
local suffixes = { "Inc.", "LLC", "Ltd.", "& Co.", "Group", "Studio" }
local item_names = { "Consulting", "Design", "Development", "Support", "Training", "Hosting", "Audit", "Workshop" }

-- An invoice's seeded lines (deterministic from seed and id). With want_lines false only the total.
function data.seed_lines(seed, id, currency, want_lines)
  local rnd = util.prng(seed * 1000003 + id * 7919)
  local n = rnd(1, 3)
  local total = 0
  local lines = want_lines and {} or nil
  for i = 1, n do
    local qty = rnd(1, 10)
    local unit = rnd(20, 400) * 25 -- cents, multiples of 0.25
    total = total + qty * unit
    if lines then
      local name = item_names[rnd(1, #item_names)]
      lines[i] = { lineid = i, name = name, description = name .. " services", qty = tostring(qty),
                   unit_cost = util.money(unit, currency), amount = util.money(qty * unit, currency),
                   type = 0, taxName1 = "", taxAmount1 = "0", taxName2 = "", taxAmount2 = "0" }
    else
      rnd(1, #item_names)
    end
  end
  return total, lines
end

-- Compact invoice: slots 1 id, 2 customerid, 3 create day, 4 terms days, 5 amount cents, 6 paid cents,
-- 7 status, 8 vis_state, 9 updated (epoch). Other fields live in the hash part only when set.
local SLOT = { id = 1, invoiceid = 1, customerid = 2, due_offset_days = 4, amount = 5, paid = 6, status = 7,
               vis_state = 8, updated_t = 9 }
data.INVOICE_SLOT = SLOT

local STATUS = { [1] = "draft", [2] = "sent", [3] = "viewed", [4] = "paid", [5] = "auto-paid", [6] = "retry",
                 [7] = "failed", [8] = "partial" }
data.INVOICE_STATUS = STATUS

local COMPUTED = { outstanding = true, due_date = true, v3_status = true, payment_status = true,
                   display_status = true, organization = true, fname = true, lname = true, accountid = true,
                   created_at = true, discount_total = true, ownerid = true }

-- The invoice metatable for one account: derived fields are computed on read.
local function invoice_mt(account)
  local derived = {
    create_date = function(r) return util.date(r[3]) end,
    due_date = function(r) return util.date(r[3] + r[4]) end,
    outstanding = function(r) return r[5] - r[6] end,
    invoice_number = function(r) return string.format("%07d", r[1]) end,
    currency_code = function() return account.currency_code end,
    accountid = function() return account.account_id end,
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
    updated = function(r) return util.eastern(r[9]) end,
    created_at = function(r) return util.eastern(r[3] * 86400 + 14 * 3600) end,
    organization = function(r) local c = account.clients.by_id[r[2]]; return c and c.organization or "" end,
    fname = function(r) local c = account.clients.by_id[r[2]]; return c and c.fname or "" end,
    lname = function(r) local c = account.clients.by_id[r[2]]; return c and c.lname or "" end,
    notes = function() return "" end, terms = function() return "" end, po_number = function() return "" end,
    discount_value = function() return "0" end, language = function() return "en" end,
    discount_total = function() return 0 end, ownerid = function() return 1 end,
  }
  return {
    __index = function(r, k)
      local slot = SLOT[k]
      if slot then return rawget(r, slot) end
      local f = derived[k]
      if f then return f(r) end
      if k == "lines" then
        local _, lines = data.seed_lines(account.seed, r[1], account.currency_code, true)
        return lines
      end
      return nil
    end,
    __newindex = function(r, k, v)
      local slot = SLOT[k]
      if slot then rawset(r, slot, v)
      elseif COMPUTED[k] then return -- derived from the slots; never stored
      elseif k == "create_date" then rawset(r, 3, util.parse_date(v) or r[3])
      elseif k == "updated" then rawset(r, 9, v)
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

-- Build one account's accounting data; sizes scale with `invoices`.
local function seed_account(b, seed, n_invoices, n_clients)
  local rnd = util.prng(seed * 31 + b.id)
  local cur = b.currency_code
  local acct = { account_id = b.account_id, business = b, currency_code = cur, seed = seed, cols = {},
                 payment_options = {} } -- invoice id -> the options set for it (sandbox/lua/sandbox/payments.lua)
  for _, r in ipairs(data.accounting) do acct.cols[r.name] = collection() end
  local cols = acct.cols
  acct.clients = cols.clients
  local t_upd = T0 - 86400 * 30
  for i = 1, n_clients do
    local fn, ln = first_names[rnd(1, #first_names)], last_names[rnd(1, #last_names)]
    local org = companies[(i - 1) % #companies + 1] .. (i > #companies and (" " .. math.ceil(i / #companies)) or "")
      .. " " .. suffixes[rnd(1, #suffixes)]
    add(cols.clients, { fname = fn, lname = ln, organization = org, currency_code = cur, language = "en",
      email = string.lower(fn .. "." .. ln .. i .. "@example.com"), home_phone = "", mob_phone = "", note = "",
      p_street = i .. " Main St", p_city = "Springfield", p_province = "", p_country = "United States",
      p_code = string.format("%05d", 10000 + i), vat_number = "", vis_state = (i % 17 == 0) and 2 or 0,
      signup_date = util.eastern(t_upd - i * 3600), updated_t = t_upd + i * 60 }, 10000 + i)
  end
  for i = 1, 4 do
    add(cols.categories, { category = ({ "Advertising", "Office Supplies", "Travel", "Software" })[i],
      is_cogs = false, is_editable = i > 1, parentid = i > 1 and 2000 or 0, vis_state = 0 }, 2000 + i)
  end
  add(cols.staffs, { fname = "Alice", lname = "Sandbox", email = "alice@example.com", username = "alice",
    rate = "0", vis_state = 0 }, 1)
  add(cols.taxes, { name = "GST", amount = "5", number = "RT0001", compound = false }, 1)
  add(cols.taxes, { name = "HST", amount = "13", number = "RT0002", compound = false })
  for i = 1, #item_names do
    add(cols.items, { name = item_names[i], description = item_names[i] .. " services", qty = "1",
      unit_cost = (i * 2500), inventory = NULL, sku = "SKU-" .. i, tax1 = 0, tax2 = 0, vis_state = 0 })
  end
  add(cols.tasks, { name = "General", description = "General work", billable = true, rate = 10000, tname = "General",
    tdesc = "", vis_state = 0 })
  add(cols.gateways, { gateway_name = "stripe", connection_id = 1, sgid = 1, single_gateway_fee = NULL })
  for i = 1, 3 do
    add(cols.bill_vendors, { vendor_name = companies[i + 8] .. " Supplies", contact_first_name = first_names[i],
      contact_last_name = last_names[i], primary_contact_email = "ap" .. i .. "@vendor.example.com",
      currency_code = cur, language = "en", country = "United States", vis_state = 0 }, 300 + i)
  end
  for i, t in ipairs { { "Cash", "asset", "1000" }, { "Accounts Receivable", "asset", "1200" },
                       { "Sales", "income", "4000" }, { "Expenses", "expense", "5000" } } do
    add(cols.journal_entry_accounts, { account_name = t[1], account_type = t[2], account_number = t[3],
      balance = "0.00", currency_code = cur, sub_accounts = {} }, 400 + i)
  end
  -- Invoices: compact records; about half paid, some partial, a few drafts.
  local mt = invoice_mt(acct)
  local inv = cols.invoices
  local client_ids = {}
  for i, c in ipairs(cols.clients.list) do client_ids[i] = c.id end
  for i = 1, n_invoices do
    local id = i
    local amount = data.seed_lines(seed, id, cur, false)
    local roll = rnd(1, 20)
    local status, paid
    if roll <= 2 then status, paid = 1, 0
    elseif roll <= 11 then status, paid = 4, amount
    elseif roll <= 13 then status, paid = 8, math.floor(amount / 2)
    elseif roll <= 16 then status, paid = 3, 0
    else status, paid = 2, 0 end
    local day = data.TODAY - 730 + math.floor((i - 1) * 730 / math.max(n_invoices, 1))
    local rec = setmetatable({ id, client_ids[rnd(1, #client_ids)], day, 30, amount, paid, status,
                               (i % 97 == 0) and 2 or 0, day * 86400 + 16 * 3600 }, mt)
    inv.list[i] = rec
    inv.by_id[id] = rec
  end
  inv.next_id = n_invoices + 1
  inv.mt = mt
  -- Payments for the first paid invoices (bounded so huge seeds stay small).
  for i = 1, math.min(n_invoices, 400) do
    local r = inv.list[i]
    if r[6] > 0 then
      add(cols.payments, { invoiceid = r[1], amount = r[6], date = util.date(r[3] + rnd(1, 30)),
        type = ({ "Check", "Credit", "Cash", "VISA", "Bank Transfer" })[rnd(1, 5)], note = "", vis_state = 0,
        clientid = r[2], updated_t = (r[3] + 31) * 86400 })
    end
  end
  for i = 1, 12 do
    local cents = rnd(5, 500) * 100 + rnd(0, 99)
    add(cols.expenses, { categoryid = 2000 + rnd(1, 4), staffid = 1, date = util.date(data.TODAY - i * 20),
      amount = cents, vendor = companies[rnd(1, #companies)], notes = "", clientid = 0, projectid = 0, status = 0,
      taxName1 = "", taxAmount1 = 0, vis_state = 0, updated_t = (data.TODAY - i * 20) * 86400 })
  end
  for i = 1, 5 do
    local cid = client_ids[rnd(1, #client_ids)]
    local total, lines = data.seed_lines(seed + 1, i, cur, true)
    add(cols.estimates, { customerid = cid, create_date = util.date(data.TODAY - i * 9),
      estimate_number = string.format("%07d", i),
      currency_code = cur, notes = "", terms = "", po_number = "", status = 1, vis_state = 0, amount = total,
      lines = lines, ui_status = "draft", updated_t = (data.TODAY - i * 9) * 86400 })
  end
  for i = 1, 2 do
    local total, lines = data.seed_lines(seed + 2, i, cur, true)
    add(cols.credit_notes, { clientid = client_ids[i], create_date = util.date(data.TODAY - i * 40),
      credit_number = string.format("CN%05d", i), currency_code = cur, notes = "", status = "sent",
      vis_state = 0, amount = total, lines = lines })
  end
  for i = 1, 3 do
    add(cols.other_incomes, { amount = rnd(100, 900) * 100, category_name = "online_sales",
      date = util.date(data.TODAY - i * 15), note = "", source = "Etsy", payment_type = "Cash", vis_state = 0 })
  end
  for i = 1, 4 do
    local total, lines = data.seed_lines(seed + 3, i, cur, true)
    local paid = (i % 2 == 0) and total or 0
    add(cols.bills, { vendorid = 300 + (i - 1) % 3 + 1, issue_date = util.date(data.TODAY - i * 25),
      due_offset_days = 30, bill_number = "B-" .. i, currency_code = cur, language = "en",
      status = paid > 0 and "paid" or "unpaid", vis_state = 0, amount = total, paid = paid,
      outstanding = total - paid, lines = lines })
    if paid > 0 then
      add(cols.bill_payments, { billid = i, amount = paid, paid_date = util.date(data.TODAY - i * 25 + 10),
        payment_type = "Check", note = "", vis_state = 0 })
    end
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

-- A ledger account uuid, the same for the same business, seed and sequence number.
function data.ledger_uuid(seed, business_id, n)
  local rnd = util.prng(seed * 41 + business_id * 13 + n * 7)
  local function hex(digits) -- at most 6 hex digits per draw: exact on every Lua
    local out = {}
    for _ = 1, digits, 6 do out[#out + 1] = string.format("%06x", rnd(0, 0xffffff)) end
    return table.concat(out):sub(1, digits)
  end
  return ("%s-%s-4%s-%x%s-%s"):format(hex(8), hex(4), hex(3), 8 + rnd(0, 3), hex(3), hex(12))
end

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
    local created = T0 - (n_projects - i + 1) * 86400 * 7
    local client = clients[rnd(1, #clients)]
    local kind = ({ "Website", "Audit", "Launch", "Migration" })[rnd(1, 4)]
    add(p.projects, { title = companies[rnd(1, #companies)] .. " " .. kind,
      description = "", due_date = util.date(math.floor(created / 86400) + 60), client_id = client.id,
      internal = false, budget = rnd(10, 100) * 1000, fixed_price = NULL, rate = "100.00",
      billing_method = "business_rate", project_type = "hourly_rate", active = i % 5 ~= 0,
      complete = i % 5 == 0, sample = false, created_t = created, updated_t = created + 3600,
      logged_duration = 0, billed_amount = "0.00", billed_status = "unbilled", retainer_id = NULL,
      expense_markup = 0, group_id = 9000 + i }, 500 + i)
  end
  local entries = n_projects * 5
  for i = 1, entries do
    local proj = p.projects.list[rnd(1, #p.projects.list)]
    local started = T0 - (entries - i + 1) * 3600 * 6
    local dur = rnd(1, 16) * 900
    proj.logged_duration = proj.logged_duration + dur
    add(p.time_entries, { identity_id = 1001, is_logged = true, started_at_t = started, created_t = started + dur,
      client_id = proj.client_id, project_id = proj.id, pending_client = NULL, pending_project = NULL,
      pending_task = NULL, task_id = NULL, service_id = 700 + rnd(1, 4), note = "Work",
      active = true, billable = true, billed = rnd(1, 4) == 1, internal = false, retainer_id = NULL,
      duration = dur, timer = NULL }, 8000 + i)
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
