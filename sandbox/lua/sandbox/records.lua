-- What FreshBooks answers for each accounting record: every field it fills, with the value a new record
-- gets, and the type a request's value is turned into (FreshBooks answers numbers for ids whatever type
-- the request sent). Sources per resource: docs/sandbox.md ("Records"); spec/shapes/ checks the answers.
--   defaults[field] = a value, NULL, ARRAY (a fresh []), or function(rec, acct) -> value (derived)
--   money[field]    = true: held as integer cents, answered as {"amount": "12.50", "code": ...}
--   types[field]    = "int" | "number" | "bool" | "string" for fields whose default is null
--   stamps[field]   = "eastern" | "utc" | "iso": a time kept as epoch seconds in rec[field .. "_t"]
--   unlisted[field] = true: answered for one record (get, create, update), not in lists
local json = require "sandbox.json"
local util = require "sandbox.util"

local records = {}
local NULL = json.null
local ARRAY = setmetatable({}, { __tostring = function() return "ARRAY" end })
records.ARRAY, records.NULL = ARRAY, NULL

local function aid(_, acct) return acct.account_id end
local function cur(rec, acct)
  local c = rawget(rec, "currency_code") or rec.currency_code
  return type(c) == "string" and c ~= "" and c or acct.currency_code
end
records.currency = cur

-- A uuid of the record's own, the same for the same account and id (a small LCG: no state).
local function uuid_of(rec, acct)
  local x = tonumber(rec.id) or 0
  for i = 1, #acct.account_id do x = (x * 31 + acct.account_id:byte(i)) % 2147483647 end
  local function draw(n)
    local out = {}
    for _ = 1, n do
      x = (x * 48271) % 2147483647
      out[#out + 1] = string.format("%x", x % 16)
    end
    return table.concat(out)
  end
  return ("%s-%s-4%s-%x%s-%s"):format(draw(8), draw(4), draw(3), 8 + x % 4, draw(3), draw(12))
end

-- The client a record belongs to, for the copies FreshBooks puts on invoices, estimates and credits.
local function client_of(key)
  return function(field)
    return function(rec, acct)
      local c = acct.cols.clients.by_id[tonumber(rec[key])]
      local v = c and c[field]
      if v == nil then return "" end
      return v
    end
  end
end
local of_customer, of_client = client_of("customerid"), client_of("clientid")

-- Fields an invoice and an estimate share: the client's address copied onto the document.
local function document(t, from)
  for k, v in pairs { accounting_systemid = aid, address = "", city = from("p_city"), code = from("p_code"),
    country = from("p_country"), province = from("p_province"), street = from("p_street"),
    street2 = from("p_street2"), current_organization = from("organization"), organization = from("organization"),
    fname = from("fname"), lname = from("lname"), email = from("email"), vat_name = NULL, vat_number = "",
    currency_code = cur, language = "en", notes = "", terms = NULL, po_number = NULL, description = "",
    template = "clean-grouped", ext_archive = 0, sentid = 1, last_order_status = NULL, dispute_status = NULL,
    discount_value = "0", discount_description = NULL, ownerid = 1, vis_state = 0 } do
    if t[k] == nil then t[k] = v end
  end
  return t
end

local vendor_defaults = {
  account_number = NULL, city = NULL, country = "United States", currency_code = cur, is_1099 = false,
  language = "en", note = NULL, outstanding_balance = ARRAY, overdue_balance = ARRAY, phone = NULL,
  postal_code = NULL, primary_contact_email = NULL, primary_contact_first_name = NULL,
  primary_contact_last_name = NULL, province = NULL, street = NULL, street2 = NULL, tax_defaults = ARRAY,
  vendor_name = "", vendorid = function(rec) return rec.id end, vis_state = 0, website = NULL,
}

records.templates = {
  clients = {
    defaults = { accounting_systemid = aid, allow_email_include_pdf = false, allow_late_fees = true,
      allow_late_notifications = true,
      bus_phone = "", company_industry = NULL, company_size = NULL, currency_code = cur, direct_link_token = NULL,
      email = "", fax = "", fname = "", has_retainer = NULL, home_phone = NULL, id = function(r) return r.id end,
      language = "en", last_activity = NULL, last_login = NULL, level = 0, lname = "", mob_phone = "", note = NULL,
      notified = false, num_logins = 0, organization = "", p_city = "", p_code = "", p_country = "",
      p_province = "", p_street = "", p_street2 = "", pref_email = true, pref_gmail = false, retainer_id = NULL,
      role = "client", s_city = "", s_code = "", s_country = "", s_province = "", s_street = "", s_street2 = "",
      statement_token = NULL, subdomain = NULL, userid = function(r) return r.id end,
      username = function(r) return r.username or ("client" .. r.id) end,
      uuid = function(r) return r.uuid end, vat_name = NULL, vat_number = NULL, vis_state = 0 },
    stamps = { updated = "eastern", signup_date = "utc" },
    -- python's GET and create answer a client's uuid, its list and node's lists do not
    unlisted = { uuid = true },
    types = { company_industry = "string", company_size = "string", home_phone = "string", note = "string",
              has_retainer = "bool", retainer_id = "int", vat_name = "string", vat_number = "string" },
  },
  invoices = {
    defaults = document({ accountid = aid, auto_bill = false, autobill_status = NULL, basecampid = 0, customerid = 0,
      create_date = "", date_paid = NULL, deposit_amount = NULL, deposit_percentage = NULL, deposit_status = "none",
      display_status = "draft", due_date = "", due_offset_days = 0, estimateid = 0, fulfillment_date = NULL,
      generation_date = NULL, gmail = false, id = function(r) return r.id end, invoice_number = "",
      invoiceid = function(r) return r.id end, parent = 0, payment_details = "", payment_status = "unpaid",
      return_uri = NULL, show_attachments = false, status = 1, v3_status = "draft", uuid = uuid_of,
      net_paid_amount = function(r, acct) return util.money(tonumber(r.paid) or 0, cur(r, acct)) end,
      version = function(r) return r.updated_t and util.eastern(r.updated_t) .. ".000000" or NULL end },
      of_customer),
    money = { amount = 0, outstanding = 0, paid = 0, discount_total = 0 },
    stamps = { updated = "eastern", created_at = "eastern" },
    types = { deposit_amount = "string", deposit_percentage = "string", po_number = "string", terms = "string",
              discount_description = "string", vat_name = "string" },
  },
  estimates = {
    defaults = document({ accepted = false, customerid = 0, create_date = "", display_status = "draft",
      estimate_number = "", estimateid = function(r) return r.id end, id = function(r) return r.id end,
      invoiced = false, reply_status = NULL, require_client_signature = false, rich_proposal = false, status = 1,
      ui_status = "draft" }, of_customer),
    money = { amount = 0, discount_total = 0 },
    stamps = { updated = "eastern", created_at = "eastern" },
    types = { po_number = "string", terms = "string", reply_status = "string", vat_name = "string" },
    drop = { discount_description = true, dispute_status = true, email = true, last_order_status = true },
  },
  expenses = {
    defaults = { account_name = "", accountid = NULL, accounting_systemid = aid, attachment = NULL,
      background_jobid = NULL, bank_name = "", bill_matches = ARRAY, billable = false, categoryid = 0, clientid = 0,
      compounded_tax = false, converse_projectid = NULL, date = "", expenseid = function(r) return r.id end,
      ext_accountid = NULL, ext_invoiceid = 0, ext_systemid = 0, from_bulk_import = false, has_receipt = false,
      id = function(r) return r.id end, include_receipt = false, invoiceid = NULL, is_cogs = false,
      isduplicate = false, markup_percent = "0", modern_projectid = NULL, notes = "", potential_bill_payment = false,
      profileid = NULL, projectid = 0, staffid = 1, status = 0, taxName1 = NULL, taxName2 = NULL,
      taxPercent1 = NULL, taxPercent2 = NULL, transactionid = NULL, vendor = NULL, vis_state = 0 },
    money = { amount = 0, taxAmount1 = NULL, taxAmount2 = NULL },
    stamps = { updated = "eastern" },
    types = { accountid = "int", invoiceid = "int", profileid = "int", transactionid = "int", taxName1 = "string",
              background_jobid = "int", converse_projectid = "int", ext_accountid = "int", modern_projectid = "int",
              taxName2 = "string", taxPercent1 = "number", taxPercent2 = "number", vendor = "string" },
  },
  categories = {
    defaults = { category = "", categoryid = function(r) return r.id end, id = function(r) return r.id end,
      is_cogs = false, is_editable = true, parentid = NULL, transaction_posted = false, vis_state = 0 },
    stamps = { created_at = "eastern", updated_at = "eastern" },
    types = { parentid = "int" },
  },
  items = {
    defaults = { accounting_systemid = aid, description = "", id = function(r) return r.id end, inventory = NULL,
      itemid = function(r) return r.id end, name = "", qty = "0", sku = "", tax1 = 0, tax2 = 0, vis_state = 0 },
    money = { unit_cost = 0 },
    stamps = { updated = "eastern" },
    types = { inventory = "string" },
  },
  payments = {
    defaults = { accounting_systemid = aid, bulk_paymentid = NULL, clientid = 0, creditid = NULL, date = "",
      from_credit = false, gateway = NULL, id = function(r) return r.id end, invoiceid = 0,
      logid = function(r) return r.id end, note = "", orderid = NULL, overpaymentid = NULL,
      send_client_notification = NULL, transactionid = NULL, type = "Check", vis_state = 0 },
    money = { amount = 0 },
    stamps = { updated = "eastern" },
    types = { creditid = "int", gateway = "string", orderid = "int", overpaymentid = "int", transactionid = "int",
              bulk_paymentid = "int", send_client_notification = "bool" },
  },
  taxes = {
    defaults = { accounting_systemid = aid, amount = "0", compound = false, id = function(r) return r.id end,
      name = "", number = NULL, taxid = function(r) return r.id end },
    stamps = { updated = "eastern" },
    types = { number = "string", amount = "string" },
  },
  credit_notes = {
    defaults = document({ clientid = 0, create_date = "", credit_number = "", credit_type = "goodwill",
      creditid = function(r) return r.id end, display_status = "created", id = function(r) return r.id end,
      payment_status = "unpaid", payment_type = NULL, status = "created" }, of_client),
    money = { amount = 0, paid = 0 },
    types = { payment_type = "string", terms = "string", vat_name = "string" },
    drop = { address = true, discount_value = true, discount_description = true, email = true, ownerid = true,
             po_number = true },
  },
  other_incomes = {
    defaults = { category_name = "other", date = "", incomeid = function(r) return r.id end, note = "",
      payment_type = NULL, source = "", sourceid = NULL, taxes = ARRAY, userid = NULL, vis_state = 0 },
    money = { amount = 0 },
    stamps = { created_at = "eastern", updated_at = "eastern" },
    types = { payment_type = "string", sourceid = "int", userid = "int" },
  },
  bills = {
    defaults = { attachment = NULL, bill_number = NULL, bill_payments = ARRAY, currency_code = cur, due_date = "",
      due_offset_days = 0, id = function(r) return r.id end, issue_date = "", language = "en", lines = ARRAY,
      overall_category = NULL, overall_description = NULL, status = "unpaid", vendor = NULL, vendorid = 0,
      vis_state = 0 },
    money = { amount = 0, outstanding = 0, paid = 0, tax_amount = 0, total_amount = 0 },
    stamps = { created_at = "utc", updated_at = "utc" },
    types = { bill_number = "string", overall_category = "string", overall_description = "string" },
  },
  bill_payments = {
    defaults = { billid = 0, id = function(r) return r.id end, matched_with_expense = false, note = NULL,
      paid_date = "", payment_type = "Check", vis_state = 0 },
    money = { amount = 0 },
    types = { note = "string" },
  },
  bill_vendors = {
    defaults = vendor_defaults,
    stamps = { created_at = "utc", updated_at = "utc" },
    types = { account_number = "string", city = "string", note = "string", phone = "string",
              postal_code = "string", primary_contact_email = "string", primary_contact_first_name = "string",
              primary_contact_last_name = "string", province = "string", street = "string", street2 = "string",
              website = "string" },
  },
  invoice_profiles = {
    defaults = document({ auto_bill = false, bill_gateway = NULL, create_date = "", customerid = 0, disable = false,
      due_offset_days = 0, ext_archive = NULL, frequency = "m", id = function(r) return r.id end,
      include_unbilled_time = false, numberRecurring = 0, occurrences_to_date = 0, payment_details = "",
      profileid = function(r) return r.id end, require_auto_bill = false, retainer_id = NULL, send_email = true,
      send_gmail = false, total_accrued_revenue = NULL }, of_customer),
    money = { amount = 0, discount_total = 0 },
    stamps = { updated = "eastern" },
    types = { po_number = "string", terms = "string", vat_name = "string", bill_gateway = "string", ext_archive = "int",
              retainer_id = "int", total_accrued_revenue = "string" },
    drop = { current_organization = true, discount_description = true, dispute_status = true, email = true,
             last_order_status = true, sentid = true, template = true },
  },
  tasks = {
    defaults = { billable = true, description = "", id = function(r) return r.id end, name = "",
      taskid = function(r) return r.id end, tax1 = 0, tax2 = 0, tdesc = "", tname = function(r) return r.name or "" end,
      vis_state = 0 },
    money = { rate = 0 },
    stamps = { updated = "eastern" },
  },
  staffs = {
    defaults = { accounting_systemid = aid, api_token = NULL, bus_phone = "", currency_code = cur,
      display_name = function(r) return ((r.fname or "") .. " " .. (r.lname or "")):gsub("^ +", "") end,
      email = "", fax = "", fname = "", home_phone = NULL, id = function(r) return r.id end, language = "en",
      last_login = NULL, level = 0, lname = "", mob_phone = "", note = NULL, num_logins = 0, organization = "",
      p_city = "", p_code = "", p_country = "", p_province = "", p_street = "", p_street2 = "", rate = NULL,
      userid = function(r) return r.id end, username = "", vis_state = 0 },
    stamps = { signup_date = "eastern", updated = "eastern" },
    types = { home_phone = "string", note = "string", rate = "string" },
  },
  -- docs:gateways (fields and the list example): sgid, connectionid (a hex string), gateway_name, id = sgid
  gateways = {
    defaults = { connectionid = "", gateway_name = "", id = function(r) return r.id end,
      sgid = function(r) return r.id end },
  },
  journal_entries = {
    defaults = { currency_code = cur, description = "", details = ARRAY, entryid = function(r) return r.id end,
      id = function(r) return r.id end, name = "", user_entered_date = "" },
  },
  journal_entry_details = {
    defaults = { account = NULL, accounting_systemid = aid, description = "", detail_type = "",
      detailid = function(r) return r.id end, entry = NULL, id = function(r) return r.id end, name = "",
      sub_account = NULL, user_entered_date = "" },
    money = { balance = 0, credit = NULL, debit = NULL },
  },
  journal_entry_accounts = {
    defaults = { account_name = "", account_number = "", account_type = "", accountid = function(r) return r.id end,
      balance = "0", currency_code = cur, id = function(r) return r.id end, sub_accounts = ARRAY },
    stamps = { created_at = "eastern" },
  },
}

-- Which type a request's value is turned into: the type of the field's default, or types[field].
local function kind(T, field)
  local d = T.defaults[field]
  local t = type(d)
  if T.types and T.types[field] then return T.types[field] end
  if t == "number" then return math.floor(d) == d and "int" or "number" end
  if t == "boolean" then return "bool" end
  if t == "string" then return "string" end
  return nil
end
records.kind = kind

-- A request's value as FreshBooks keeps it, or nil, reason. JSON null sets a nullable field to null.
function records.coerce(T, field, v)
  if v == NULL then return NULL end
  local k = kind(T, field)
  if k == "int" then
    local n = tonumber(v)
    if type(v) == "boolean" or not n or n ~= math.floor(n) then return nil, "a whole number" end
    return n
  elseif k == "number" then
    local n = tonumber(v)
    if not n then return nil, "a number" end
    return n
  elseif k == "bool" then
    if v == true or v == "true" or v == 1 or v == "1" then return true end
    if v == false or v == "false" or v == 0 or v == "0" then return false end
    return nil, "true or false"
  elseif k == "string" then
    if type(v) == "table" then return nil, "a string" end
    if type(v) == "number" then return (string.format("%.14g", v)) end
    return tostring(v)
  end
  return v
end

local function stamp(kind_, t)
  if not t then return NULL end
  if kind_ == "eastern" then return util.eastern(t) end
  if kind_ == "utc" then return (util.iso(t):gsub("T", " ")) end
  return util.iso(t) .. "Z"
end
records.stamp = stamp

-- The record as FreshBooks answers it (without lines: the caller adds them when asked for).
function records.render(T, rec, acct)
  local out = {}
  local code = cur(rec, acct)
  for f, d in pairs(T.defaults) do
    if not (T.drop and T.drop[f]) then
      local v = rec[f]
      if type(d) == "function" then v = d(rec, acct) if v == nil then v = NULL end
      elseif v == nil then v = d end
      if v == ARRAY then v = json.array()
      elseif d == ARRAY and type(v) == "table" then v = json.array(v) end -- [] even when empty, never {}
      out[f] = v
    end
  end
  for f, d in pairs(T.money or {}) do
    local v = rec[f]
    if v == nil then v = d end
    out[f] = type(v) == "number" and util.money(v, code) or NULL
  end
  for f, k in pairs(T.stamps or {}) do out[f] = stamp(k, rec[f .. "_t"]) end
  return out
end

return records
