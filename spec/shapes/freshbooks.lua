-- What FreshBooks answers, endpoint by endpoint: envelopes, field names, value types and formats, in
-- this project's words. Written from the references in ../shared/reference/ (the answers the official
-- Node SDK's tests serve: "node:<file>"), FreshBooks' API pages ("docs:<page>", freshbooks.com/api/...)
-- and its public Postman collection ("postman:<item>"). Where they disagree, `note` says which one this
-- follows and why. Types: spec/shapes/check.lua ("?x" = x or null).
--   shapes.records[name]  = the record (an object shape) and its reference
--   shapes.envelopes      = how a family wraps one record, a list, an error
--   shapes.endpoints      = { key = "METHOD /path/{template}", status, body = shape, ref, note }
local shapes = { records = {}, endpoints = {} }

local function rec(name, ref, fields, optional, note)
  shapes.records[name] = { fields = fields, optional = optional, ref = ref, note = note }
  return shapes.records[name]
end

-- Record shapes ------------------------------------------------------------------------------------

rec("client", "node:Client.test.ts (GET, list, POST, PUT); python:get/list/create_client_response; "
  .. "java:get/create_client_response; docs:clients", {
  accounting_systemid = "string", allow_email_include_pdf = "bool", allow_late_fees = "bool",
  allow_late_notifications = "bool", bus_phone = "string",
  company_industry = "?string", company_size = "?string", currency_code = "currency", direct_link_token = "?string",
  email = "string", fax = "string", fname = "string", has_retainer = "?bool", home_phone = "?string", id = "int",
  language = "string", last_activity = "?string", last_login = "?string", level = "int", lname = "string",
  mob_phone = "string", note = "?string", notified = "bool", num_logins = "int", organization = "string",
  p_city = "string", p_code = "string", p_country = "string", p_province = "string", p_street = "string",
  p_street2 = "string", pref_email = "bool", pref_gmail = "bool", retainer_id = "?int", role = "string",
  s_city = "string", s_code = "string", s_country = "string", s_province = "string", s_street = "string",
  s_street2 = "string", signup_date = "utc", statement_token = "?string", subdomain = "?string",
  updated = "eastern", userid = "int", username = "string", vat_name = "?string", vat_number = "?string",
  vis_state = "int",
}, { uuid = "uuid" }, "node's bodies carry id and userid as strings (\"218192\"): README says ids are numbers, and "
  .. "docs:clients, python and java show numbers; numbers followed. allow_email_include_pdf: every python and java "
  .. "client carries it, node's 2019 bodies predate it. uuid: python's GET and create carry it, its list, node's "
  .. "and java's do not: optional (the sandbox answers it for one client, not in lists).")

-- Invoice lines: node's fields plus what the Java and PHP SDKs' recorded lines add (basecampid,
-- modern_project_id, modern_time_entries; date null unless the line came from time).
local invoice_line = { fields = {
  amount = "money", basecampid = "int", compounded_tax = "bool", date = "?eastern", description = "string",
  expenseid = "int", invoiceid = "int", lineid = "int", modern_project_id = "?int",
  modern_time_entries = { array = "any" }, name = "string", qty = "decimal", retainer_id = "?int",
  retainer_period_id = "?int", taskno = "int", taxAmount1 = "decimal", taxAmount2 = "decimal", taxName1 = "?string",
  taxName2 = "?string", taxNumber1 = "?string", taxNumber2 = "?string", type = "int", unit_cost = "money",
  updated = "eastern" } }
shapes.invoice_line = invoice_line

local document = {
  accounting_systemid = "string", address = "string", amount = "money", city = "string", code = "string",
  country = "string", create_date = "date", created_at = "eastern", currency_code = "currency",
  current_organization = "string", customerid = "int", description = "string", discount_description = "?string",
  discount_total = "money", discount_value = "decimal", display_status = "string", dispute_status = "?string",
  email = "string", ext_archive = "int", fname = "string", id = "int", language = "string",
  last_order_status = "?string", lname = "string", notes = "string", organization = "string", ownerid = "int",
  po_number = "?string", province = "string", sentid = "int", status = "int", street = "string", street2 = "string",
  template = "string", terms = "?string", updated = "eastern", vat_name = "?string", vat_number = "?string",
  vis_state = "int",
}
local function with(base, more)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(more) do if v == false then t[k] = nil else t[k] = v end end
  return t
end

rec("invoice", "node:Invoice.test.ts (GET, list with lines, POST, PUT); java:get/list_invoices_response; "
  .. "php:InvoiceTest; docs:invoices", with(document, {
  accountid = "string", auto_bill = "bool", autobill_status = "?string", basecampid = "int", date_paid = "?date",
  deposit_amount = "?money", deposit_percentage = "?decimal", deposit_status = "string", due_date = "date",
  due_offset_days = "int", estimateid = "int", fulfillment_date = "?date", generation_date = "?date", gmail = "bool",
  invoice_number = "string", invoiceid = "int", outstanding = "money", paid = "money", parent = "int",
  net_paid_amount = { fields = { amount = "decimal", code = "currency" } }, payment_details = "string",
  payment_status = "string", return_uri = "?string", show_attachments = "bool", uuid = "uuid", v3_status = "string",
  version = "string" }), { lines = { array = invoice_line } },
  "basecampid, net_paid_amount, uuid, version: the Java and PHP SDKs' recorded invoices (2021) and postman carry "
  .. "them, node's 2019 bodies predate them: followed. lines only with include[]=lines (node's GET, POST and PUT "
  .. "answers have none).")

local estimate_line = { fields = {
  amount = "money", compounded_tax = "bool", description = "string", estimateid = "int", name = "string",
  qty = "decimal", taskno = "int", taxAmount1 = "decimal", taxAmount2 = "decimal", taxName1 = "?string",
  taxName2 = "?string", taxNumber1 = "?string", taxNumber2 = "?string", type = "int", unit_cost = "money" } }
rec("estimate", "zerospam/freshbooks-sdk's recorded estimates (GET, GET with lines, POST, PUT); docs:estimates "
  .. "(statuses, ui_status, includes, filters); postman:Estimates/Single Estimate; the node SDK has no estimate "
  .. "tests", with(document, { discount_description = false, dispute_status = false, email = false,
  last_order_status = false, accepted = "bool", estimate_number = "string", estimateid = "int", invoiced = "bool",
  reply_status = "?string", require_client_signature = "bool", rich_proposal = "bool", ui_status = "string" }),
  { lines = { array = estimate_line } }, "an estimate has no discount_description, dispute_status, email or "
  .. "last_order_status and its lines no lineid, dates or retainer fields (the recorded estimates), unlike an "
  .. "invoice; lines only with include[]=lines (docs:estimates lists lines as an include).")

rec("expense", "node:Expense.test.ts (GET, list, include[]=category, POST, PUT); java:get/list_expenses_response; "
  .. "php:ExpenseTest", {
  account_name = "string", accountid = "?int", accounting_systemid = "string", amount = "money", attachment = "?any",
  background_jobid = "?int", bank_name = "string", bill_matches = { array = "any" }, billable = "bool",
  categoryid = "int", clientid = "int", compounded_tax = "bool", converse_projectid = "?int", date = "date",
  expenseid = "int", ext_accountid = "?int", ext_invoiceid = "int", ext_systemid = "int", from_bulk_import = "bool",
  has_receipt = "bool", id = "int", include_receipt = "bool", invoiceid = "?int", is_cogs = "bool",
  isduplicate = "bool", markup_percent = "decimal", modern_projectid = "?int", notes = "string",
  potential_bill_payment = "bool", profileid = "?int", projectid = "int", staffid = "int",
  status = "int", taxAmount1 = "?money", taxAmount2 = "?money", taxName1 = "?string", taxName2 = "?string",
  taxPercent1 = "?number", taxPercent2 = "?number", transactionid = "?int", updated = "eastern",
  vendor = "?string", vis_state = "int",
}, { category = "any" }, "node's expenseid and id are strings (\"43221133\") while categoryid is a number: "
  .. "an edited body; numbers followed (README, java, php). attachment, background_jobid, bill_matches, billable, "
  .. "converse_projectid, ext_accountid, modern_projectid, potential_bill_payment: the Java and PHP SDKs' recorded "
  .. "expenses (2021) carry them, node's 2019 bodies predate them: followed. taxPercent: node shows 0 where no tax "
  .. "is set, java null: null accepted.")

rec("category", "node:ExpenseCategory.test.ts", {
  category = "string", categoryid = "int", created_at = "eastern", id = "int", is_cogs = "bool",
  is_editable = "bool", parentid = "?int", transaction_posted = "bool", updated_at = "eastern", vis_state = "int",
})
shapes.records.expense.optional.category = shapes.records.category

rec("item", "node:Item.test.ts; java:list_items_response; php:ItemTest", {
  accounting_systemid = "string", description = "string", id = "int", inventory = "?string", itemid = "int",
  name = "string", qty = "decimal", sku = "?string", tax1 = "int", tax2 = "int", unit_cost = "money",
  updated = "eastern", vis_state = "int",
}, nil, "itemid: the Java and PHP SDKs' recorded items (2021, 2022) carry it, node's 2016 body predates it.")

rec("payment", "node:Payment.test.ts; java:list_payments_response; php:PaymentTest", {
  accounting_systemid = "string", amount = "money", bulk_paymentid = "?int", clientid = "int", creditid = "?int",
  date = "date", from_credit = "bool", gateway = "?string", id = "int", invoiceid = "int", logid = "int",
  note = "string", orderid = "?int", overpaymentid = "?int", send_client_notification = "?bool",
  transactionid = "?int", type = "string", updated = "eastern", vis_state = "int",
}, nil, "bulk_paymentid, send_client_notification: the Java and PHP SDKs' recorded payments (2021) carry them.")

rec("tax", "java:list_taxes_response; php:TaxTest; zerospam's recorded taxes; docs:taxes (no node tests)", {
  accounting_systemid = "string", amount = "decimal", compound = "bool", id = "int", name = "string",
  number = "?string", taxid = "int", updated = "eastern",
})

local credit_line = { fields = {
  amount = "money", compounded_tax = "bool", creditid = "int", description = "string", name = "string",
  qty = "decimal", taskno = "int", taxAmount1 = "?decimal", taxAmount2 = "?decimal", taxName1 = "?string",
  taxName2 = "?string", unit_cost = "money" } }
rec("credit_note", "node:CreditNote.test.ts (GET, list with lines)", {
  accounting_systemid = "string", amount = "money", city = "string", clientid = "int", code = "string",
  country = "string", create_date = "date", credit_number = "string", credit_type = "string", creditid = "int",
  currency_code = "currency", current_organization = "string", description = "string", display_status = "string",
  dispute_status = "?string", ext_archive = "int", fname = "string", id = "int", language = "string",
  last_order_status = "?string", lname = "string", notes = "string", organization = "string", paid = "money",
  payment_status = "string", payment_type = "?string", province = "string", sentid = "int", status = "string",
  street = "string", street2 = "string", template = "string", terms = "?string", vat_name = "?string",
  vat_number = "?string", vis_state = "int",
}, { lines = { array = credit_line } }, "one credit note is answered under `credit_notes` (the plural), as node's "
  .. "recorded answers show and the Node SDK's reader expects; requests say `credit_note` (postman, docs:credits). "
  .. "node's POST/PUT bodies are the request echoed and its ids strings: the GET's fields and numeric ids "
  .. "(README, postman's list) followed. status/display_status of a new note: created (node, postman).")

rec("other_income", "node:OtherIncome.test.ts; java:get/list_other_incomes_response", {
  amount = "money", category_name = "string", created_at = "eastern", date = "date", incomeid = "int",
  note = "string", payment_type = "?string", source = "string", sourceid = "?int", taxes = { array = { fields = {
    amount = "decimal", name = "string" } } }, updated_at = "eastern", userid = "?int", vis_state = "int",
}, nil, "no `id`: other income answers only incomeid (node: GET, list, POST, PUT alike; java). sourceid, userid: "
  .. "java's recorded other income carries them, node's does not: followed.")

rec("bill_vendor", "node:BillVendors.test.ts", {
  account_number = "?string", city = "?string", country = "?string", created_at = "utc", currency_code = "currency",
  is_1099 = "bool", language = "string", note = "?string", outstanding_balance = { array = "money" },
  overdue_balance = { array = "money" }, phone = "?string", postal_code = "?string",
  primary_contact_email = "?string", primary_contact_first_name = "?string", primary_contact_last_name = "?string",
  province = "?string", street = "?string", street2 = "?string", tax_defaults = { array = "any" },
  updated_at = "utc", vendor_name = "string", vendorid = "int", vis_state = "int", website = "?string",
}, nil, "no `id`: vendors answer vendorid. created_at/updated_at are UTC (README).")

rec("bill_payment", "node:BillPayments.test.ts; php:BillPaymentTest", {
  amount = "money", billid = "int", id = "int", matched_with_expense = "bool", note = "?string", paid_date = "date",
  payment_type = "string", vis_state = "int",
}, nil, "matched_with_expense: the PHP SDK's recorded bill payment (2021) carries it, node's does not: followed.")

rec("bill", "node:Bills.test.ts (GET, list, POST, PUT)", {
  amount = "money", attachment = "any", bill_number = "?string",
  bill_payments = { array = shapes.records.bill_payment }, created_at = "utc", currency_code = "currency",
  due_date = "date", due_offset_days = "int", id = "int", issue_date = "date", language = "string",
  lines = { array = { fields = {
    amount = "money", category = "string", categoryid = "int", description = "string", list_index = "int",
    quantity = "number", tax_amount1 = "?money", tax_amount2 = "?money", tax_authorityid1 = "?int",
    tax_authorityid2 = "?int", tax_name1 = "?string", tax_name2 = "?string", tax_percent1 = "?decimal",
    tax_percent2 = "?decimal", total_amount = "money", unit_cost = "money" } } },
  outstanding = "money", overall_category = "?string", overall_description = "?string", paid = "money",
  status = "string", tax_amount = "money", total_amount = "money", updated_at = "utc",
  vendor = shapes.records.bill_vendor, vendorid = "int", vis_state = "int",
})

rec("invoice_profile", "zerospam/freshbooks-sdk's recorded invoice profiles (GET with lines, list); "
  .. "docs:invoice_profiles (the node SDK has no profile tests)", with(document, {
  current_organization = false, discount_description = false, dispute_status = false, email = false,
  last_order_status = false, sentid = false, template = false, created_at = false, display_status = false,
  status = false, ext_archive = "?int", auto_bill = "bool", bill_gateway = "?string", disable = "bool",
  due_offset_days = "int", frequency = "string", include_unbilled_time = "bool", numberRecurring = "int",
  occurrences_to_date = "int", payment_details = "string", profileid = "int", require_auto_bill = "bool",
  retainer_id = "?int", send_email = "bool", send_gmail = "bool", total_accrued_revenue = "?any" }),
  { lines = { array = { fields = {
    amount = "money", compounded_tax = "bool", description = "string", lineid = "int", name = "string",
    profileid = "int", qty = "decimal", taskno = "int", taxAmount1 = "decimal", taxAmount2 = "decimal",
    taxName1 = "?string", taxName2 = "?string", type = "int", unit_cost = "money" } } } },
  "a profile has the client address and payment_details but no current_organization, discount_description or "
  .. "sent/status fields; its lines have no dates, expense or retainer fields (the recorded profiles).")

rec("task", "docs:tasks (fields and example); java:get/list_tasks_response; php:TaskTest; node:Tasks.test.ts", {
  billable = "bool", description = "string", id = "int", name = "string", rate = "money", taskid = "int",
  tax1 = "int", tax2 = "int", tdesc = "string", tname = "string", updated = "eastern", vis_state = "int",
}, nil, "node's bodies write visState (camel case) and no taxes; FreshBooks' task page (fields and example), the "
  .. "Java and PHP SDKs' recorded tasks write vis_state and carry tax1, tax2: followed (the sandbox still takes "
  .. "the visState node sends).")

rec("staff", "docs:staff (field list); postman:Get a Single Staff (the node SDK has no staff tests)", {
  accounting_systemid = "string", api_token = "?string", bus_phone = "string", currency_code = "?currency",
  display_name = "string", email = "string", fax = "string", fname = "string",
  home_phone = "?string", id = "int", language = "string", last_login = "?string", level = "int", lname = "string",
  mob_phone = "string", note = "?string", num_logins = "int", organization = "string", p_city = "string",
  p_code = "string", p_country = "string", p_province = "string", p_street = "string", p_street2 = "string",
  rate = "?decimal", signup_date = "eastern", updated = "eastern", userid = "int", username = "string",
  vis_state = "int",
}, nil, "postman's staff answers currency_code and home_phone null where none is set.")

rec("gateway", "docs:gateways (field list and list example)", {
  connectionid = "string", gateway_name = "string", id = "int", sgid = "int",
}, nil, "connectionid is a hex string unique across FreshBooks; id repeats sgid (docs).")

rec("system", "postman:Get System; docs:systems (field list); facts file", {
  id = "int", systemid = "int", accountid = "string", business_uuid = "?uuid", name = "string",
  currency_code = "currency", active = "bool", auto_bill = "int", modern_system = "bool", billing_status = "string",
  bus_phone = "string", business_type = "?string", country = "string", province = "string", city = "string",
  street = "string", street2 = "?string", code = "string", email = "string", info_email = "string", fax = "string",
  mob_phone = "string", date = "eastern", discountid = "?string", duration = "int", gst_amount = "money",
  payment_amount = "money", payment_frequency = "int", heard_about_us_via = "?string", ip = "string",
  landing_url = "?string", masterlock_billing = "bool", migrated_to_smux_at = "?string", num_clients = "?int",
  num_staff = "?int", referralid = "?string", referring_url = "?string", salutation = "?string",
  size_limit = "?int", split_token = "?string", timezone = "string", timezoneid = "int", dst = "bool",
  test_system = "bool", vat_name = "?string", vat_number = "?string",
}, nil, "postman's answer is cut after vat_ in the copy read: vat_name and vat_number assumed, as on clients.")

local je_detail = { fields = {
  categoryid = "?int", credit = "?decimal", currency_code = "currency", debit = "?decimal", description = "string",
  detailid = "int", id = "int", name = "string", sub_accountid = "int", user_entered_date = "date" },
  optional = { entryid = "int" } }
rec("journal_entry", "node:JournalEntry.test.ts (request with user_entered_date; answer)", {
  currency_code = "currency", description = "string", details = { array = je_detail }, entryid = "int", id = "int",
  name = "string", user_entered_date = "date",
})

rec("journal_entry_account", "node:JournalEntryAccount.test.ts", {
  account_name = "string", account_number = "string", account_type = "string", accountid = "int",
  balance = "decimal", created_at = "eastern", currency_code = "currency", id = "int",
  sub_accounts = { array = { fields = {
    account_sub_name = "string", account_sub_number = "string", account_type = "string", balance = "decimal",
    created_at = "eastern", currency_code = "currency", custom = "bool", id = "int", parentid = "int",
    sub_accountid = "int", transaction_posted = "bool" } } },
})

rec("journal_entry_detail", "node:JournalEntryDetail.test.ts", {
  account = "?any", accounting_systemid = "string", balance = "money", credit = "?money", debit = "?money",
  description = "string", detail_type = "string", detailid = "int", entry = "?any", id = "int", name = "string",
  sub_account = "?any", user_entered_date = "date",
})

rec("callback", "docs:webhooks; node:Callback.test.ts", {
  callbackid = "int", event = "string", updated_at = "iso_z", uri = "string", verified = "bool",
}, nil, "node's body writes updated_at \"2021-10-17 05:48:42\"; docs:webhooks writes ISO 8601 with a Z, as every "
  .. "events answer does: the documentation followed (README: prefer it where a body looks edited).")

rec("service", "node:Service.test.ts", {
  billable = "bool", business_id = "int", id = "int", name = "string", vis_state = "int",
})

rec("project", "python:list_projects_response, get/create_project_response; java:list/get/create_project_response; "
  .. "node:Project.test.ts; docs:project (filters, sort fields, group)", {
  active = "bool", billed_amount = "decimal", billed_status = "string", billing_method = "?string",
  budget = "?decimal", client_id = "?int", complete = "bool", created_at = "iso", description = "?string",
  due_date = "?date", expense_markup = "int", fixed_price = "?decimal", group_id = "int", id = "int",
  internal = "bool", logged_duration = "?int", project_manager_id = "?int", project_type = "string",
  rate = "?decimal", retainer_id = "?int", sample = "bool", services = { array = shapes.records.service },
  title = "string", updated_at = "iso",
}, nil, "a list's project carries group_id (python, java); node's list repeats the single project's group and "
  .. "writes groupId: the recorded lists followed. Stamps without the Z (postman, python, java; node's edited "
  .. "bodies add it). expense_markup: a number (node, python; java and php write \"0\").")

-- One project (get, create, update) carries its group (unless skip_group=true) and no group_id; a GET
-- answers the caller's abilities beside the project (python, java: {"project": {...}, "abilities": [...]}).
do
  local p = shapes.records.project
  shapes.records.project_one = { fields = with(p.fields, { group_id = false }), optional = {
    group = { fields = { id = "int", members = { array = { fields = {
      active = "bool", company = "string", email = "string", first_name = "string", id = "int",
      identity_id = "int", last_name = "string", role = "string" } } }, pending_invitations = { array = "any" } } } },
    ref = p.ref, note = p.note }
  shapes.records.abilities = { array = { fields = { name = "string", value = "bool" } } }
end

rec("time_entry", "java:get/list_time_entries_response; python:get/list_time_entries_response; "
  .. "node:TimeEntry.test.ts; postman:Time Entry Details", {
  active = "bool", billable = "bool", billed = "bool", client_id = "?int", created_at = "iso_z", duration = "int",
  id = "int", identity_id = "int", internal = "bool", is_logged = "bool", local_started_at = "iso",
  local_timezone = "string", note = "?string", pending_client = "?any", pending_project = "?any",
  pending_task = "?any", project_id = "?int", retainer_id = "?int", service_id = "?int", started_at = "iso_z",
  task_id = "?int", timer = "?any",
}, nil, "local_started_at, local_timezone: java's recorded entries (2023) carry them; node's and python's older "
  .. "bodies do not: followed.")

rec("service_rate", "node:ServiceRate.test.ts", { business_id = "int", rate = "decimal", service_id = "int" })

rec("payment_options", "node:PaymentOptions.test.ts", {
  allow_partial_payments = "bool", entity_id = "?string", entity_type = "string", gateway_name = "string",
  has_ach_transfer = "bool", has_bacs_debit = "bool", has_credit_card = "bool", has_paypal_smart_checkout = "bool",
  has_sepa_debit = "bool",
}, { has_acss_debit = "bool", stripe_acss_payment_options = "any", gateway_info = "any" },
  "entity_id: node's account defaults answer carries an invoice's id (\"6463\"), as its invoice answers do: a "
  .. "copied body; the defaults belong to no entity, so null is allowed there.")

rec("share_link", "node:ShareLink.test.ts", {
  clientid = "int", resource_type = "string", resourceid = "int", share_link = "string", share_method = "string",
})

rec("ledger_account", "the Python SDK's accounting-business tests (facts file)", {
  uuid = "uuid", name = "string", number = "?string", description = "string", type = "string", sub_type = "string",
  system_account_name = "?string", parent_account = "?uuid", sub_accounts = { array = "uuid" },
  auto_created = "bool", state = "string", updated_at = "iso_z",
})

local membership_business = { fields = {
  account_id = "string", address = { fields = { city = "?string", country = "?string", id = "int",
    postal_code = "?string", province = "?string", street = "?string" } }, business_clients = { array = "any" },
  business_uuid = "uuid", date_format = "string", id = "int", name = "string",
  phone_number = { one_of = { "null", { fields = { id = "int", phone_number = "string" } } } } },
  optional = { timezone = "string" } }
rec("identity", "node:User.test.ts (GET /users/me)", {
  addresses = { array = "any" }, business_memberships = { array = { fields = { business = membership_business,
    fasttrack_token = "?string", id = "int", role = "string", unacknowledged_change = "bool" } } },
  created_at = "iso_z", email = "string", first_name = "string", groups = { array = { fields = { active = "bool",
    business_id = "int", group_id = "int", id = "int", identity_id = "int", role = "string" },
    optional = { identity_uuid = "string" } } }, id = "int", identity_origin = "?string",
  integrations = { map = "any" }, language = "string", last_name = "string",
  links = { fields = { me = "string", roles = "string" } }, permissions = { map = { map = "any" } },
  phone_numbers = { array = { fields = { phone_number = "?string", title = "string" } } },
  profession = { one_of = { "null", { fields = { business_id = "int", company = "string", designation = "?string",
    id = "int", title = "string" } } } }, roles = { array = { fields = { accountid = "string", created_at = "iso_z",
    id = "int", links = { fields = { destroy = "string" } }, role = "string", systemid = "int", userid = "int" } } },
  subscription_statuses = { map = "string" },
}, { identity_id = "int", identity_uuid = "string", confirmed_at = "iso_z", setup_complete = "bool",
  unconfirmed_email = "?string", profile = { fields = { setup_complete = "bool", first_name = "string",
  last_name = "string", phone_number = "?any", address = "?any", professions = { array = "any" },
  has_password = "bool" } } },
  "identity_id, identity_uuid, confirmed_at, setup_complete, unconfirmed_email, profile: the Python, Java and PHP "
  .. "SDKs' recorded identities carry them, node's trimmed body does not: optional (the sandbox answers them). "
  .. "business.timezone: node's only.")

rec("token", "node:APIClient.test.ts (token); docs:authentication", {
  access_token = "string", created_at = "int", expires_in = "int", refresh_token = "string", scope = "string",
  token_type = "string", id_token = "string",
}, nil, "id_token: the issue's recorded token answers carry it; node's test body does not.")

-- Reports ------------------------------------------------------------------------------------------
local report_entry = { fields = { description = "string", entry_type = "string", data = { array = "money" },
  total = "money" } }
report_entry.fields.children = { array = report_entry }
rec("profitloss", "node:ProfitLossReport.test.ts; postman:Reports/Profit-Loss Report", {
  cash_based = "bool", company_name = "string", currency_code = "currency",
  dates = { array = { fields = { start_date = "date", end_date = "date" } } }, download_token = "string",
  end_date = "date", expenses = { array = report_entry }, gross_margin = report_entry,
  income = { array = report_entry }, labels = { array = "date" }, net_profit = report_entry, resolution = "?string",
  start_date = "date", total_expenses = report_entry, total_income = report_entry,
}, nil, "postman's example (no resolution) has empty data/dates/labels; node's (resolution m) fills them.")
rec("taxsummary", "node:TaxSummaryReport.test.ts", {
  cash_based = "bool", currency_code = "currency", download_token = "string", end_date = "date", start_date = "date",
  taxes = { array = { fields = { net_tax = "money", net_taxable_amount = "money", tax_collected = "money",
    tax_name = "string", tax_paid = "money", taxable_amount_collected = "money", taxable_amount_paid = "money" } } },
  total_invoiced = "money",
})
rec("payments_collected", "node:PaymentsCollectedReport.test.ts", {
  clientids = { array = "int" }, currency_codes = { array = "currency" }, download_token = "string",
  end_date = "date", payment_methods = { array = "string" }, payments = { array = { fields = {
    amount = "money", client = "string", clientid = "int", credit_number = "?string", creditid = "?int",
    date = "date", description = "string", from_credit = "bool", invoice_number = "?string", invoiceid = "?int",
    method = "string" } } }, start_date = "date", summary_only = "bool", totals = { array = "money" },
})

local dated = { fields = { balance = "money", date = "date" } }
local buckets = { ["0-30"] = "money", ["31-60"] = "money", ["61-90"] = "money", ["91+"] = "money", total = "money" }
rec("accounts_aging", "docs:reports (Account Aging Report: fields); postman:Reports/Accounts Aging (example)", {
  accounts = { array = { fields = with(buckets, { email = "string", fname = "string", lname = "string",
    organization = "string", userid = "int" }) } }, company_name = "string", currency_code = "currency",
  download_token = "string", end_date = "date", totals = { fields = buckets },
}, nil, "start_date is a filter, not answered (postman's example answers end_date only).")
rec("balance_sheet", "postman:Reports/Balance Sheet (dates[], currency_code)", {
  assets_total = { array = dated }, company_name = "string", currency_code = "currency",
  data = { array = { fields = { account_type = "string", category = "string", balances = { array = dated },
    accounts = { array = { fields = { account_name = "string", account_number = "string", balances = { array = dated },
      sub_accounts = { array = { fields = { sub_account_name = "string", sub_account_number = "string",
        balances = { array = dated } } } } } } } } } },
  dates = { array = "date" }, download_token = "string", liabilities_and_equity_total = { array = dated },
})
rec("trial_balance", "postman:Reports/Trial Balance", {
  company_name = "string", currency_code = "currency", data = { array = { fields = { account_name = "string",
    account_number = "string", account_sub_name = "string", account_sub_number = "string", credit = "money",
    debit = "money", sub_accountid = "int" } } },
}, { download_token = "string", start_date = "date", end_date = "date" },
  "postman's example answers company_name, currency_code and data; the download token and the dates are "
  .. "the sandbox's (every other report answers them): optional.")
local ledger_move = { debit = "money", credit = "money", net_movement_debit = "money", net_movement_credit = "money" }
rec("general_ledger", "docs:general-ledger-report", {
  company_name = "string", download_token = "string", start_date = "date", end_date = "date",
  currency_code = "currency", locale = "string", summary_only = "bool",
  summary = { fields = { total_credit = "money" }, optional = { total_debit = "money" } },
  data = { array = { fields = with(ledger_move, { accountid = "uuid", account_name = "string",
    account_number = "string", sub_accounts = { array = { fields = with(ledger_move, { sub_accountid = "uuid",
      sub_account_name = "string", sub_account_number = "string", transactions = { array = {
        fields = { entity_type = "string", reference = "string", description = "string", date = "date",
          client_name = "?string", debit = "money", credit = "money", expenseid = "?int", invoiceid = "?int",
          paymentid = "?int", incomeid = "?int" },
        optional = { billid = "?int", bill_paymentid = "?int", entryid = "?int" } } } }) } } }) } },
}, nil, "the docs' example is cut after incomeid: billid, bill_paymentid and entryid are the sandbox's.")
rec("cash_flow", "docs:cash-flow-report", {
  company_name = "string", download_token = "string", start_date = "date", end_date = "date",
  currency_code = "currency", activities = { array = { fields = { category = "string", total = "money",
    details = { array = { fields = { name = "string", total = "money", accounts = { array = { fields = {
      name = "string", total = "money", sub_accounts = { array = { fields = { name = "string", categoryid = "?int",
        sub_accountid = "?int", total = "money" } } } } } } } } } } } },
  summary = { fields = { ending_balance = "money", gross_cash_inflow = "money", gross_cash_outflow = "money",
    net_cash_change = "money", starting_balance = "money" } },
})
local coa = { account_name = "string", account_number = "string", account_type = "string", balance = "decimal",
  currency_code = "?currency", account_uuid = "uuid", account_sub_type = "string", system_account_name = "?string",
  auto_created = "bool", state = "string" }
rec("chart_of_accounts", "docs:chart-of-accounts-report; docs:chart-of-accounts", with(coa, {
  sub_accounts = { array = { fields = with(coa, { parent_account_uuid = "uuid" }) } } }),
  nil, "the answer is the list under journal_entry_accounts, without company_name or a download token (docs).")
rec("expense_details", "docs:expense-details-report (field list)", {
  company_name = "string", currency_code = "currency", download_token = "string", start_date = "date",
  end_date = "date", group_by = "string", exclude_personal = "bool",
  clients = { map = { fields = { id = "int", userid = "int", fname = "string", lname = "string",
    organization = "string", email = "string", language = "string" } } },
  vendors = { map = "string" },
  authors = { map = { fields = { userid = "int", fname = "string", lname = "string", email = "string",
    organization = "string" } } },
  data = { array = { fields = { groupid = "string", total = "money" }, optional = { name = "string",
    expenses = { array = { fields = { expenseid = "int", date = "date", categoryid = "?int", category = "string",
      vendor = "string", clientid = "int", projectid = "int", staffid = "int", notes = "string",
      amount = "money" } } } } } },
}, { total = "money", include_project = "bool" },
  "docs list the fields without an example: data's name and expenses, total and include_project are the "
  .. "sandbox's (optional).")
rec("invoice_details", "docs:reports (Invoice Details Report: filters, fields); postman:Reports/Invoice Details", {
  clientids = { array = "int" }, company_name = "string", currency_code = "currency", date_type = "string",
  download_token = "string", end_date = "date", start_date = "date", statusids = { array = "string" },
  summary = { fields = { outstanding = "money", paid = "money", total = "money" } }, summary_only = "bool",
  clients = { array = { fields = { userid = "int", fname = "string", lname = "string", organization = "string",
    email = "string", summary = { fields = { outstanding = "money", paid = "money", total = "money" } },
    invoices = { array = { fields = { invoiceid = "int", invoice_number = "string", create_date = "date",
      due_offset_days = "int", date_paid = "?date", v3_status = "string", po_number = "?string",
      outstanding = "money", paid = "money", tax = "money", discount_total = "money", total = "money",
      currency_code = "currency" }, optional = { due_date = "date", lines = "any" } } } } } },
}, nil, "postman's example has an empty clients list: each client's fields follow the docs' field list.")
rec("manual_journal_entry", "docs:reports lists the report; no example could be read: the sandbox's", {
  company_name = "string", currency_code = "currency", download_token = "string", start_date = "date",
  end_date = "date", totals = { fields = { debit = "money", credit = "money" } },
  entries = { array = { fields = { entryid = "int", name = "string", description = "string",
    user_entered_date = "date", currency_code = "currency", total_debit = "money", total_credit = "money",
    details = { array = { fields = { detailid = "?int", sub_accountid = "?int", account_name = "string",
      account_number = "string", debit = "money", credit = "money" } } } } } },
})

rec("team_member", "docs:team-members; postman:My Team/List Team Members", {
  uuid = "uuid", first_name = "string", middle_name = "?string", last_name = "string", email = "string",
  job_title = "?string", street_1 = "?string", street_2 = "?string", city = "?string", province = "?string",
  country = "?string", postal_code = "?string", phone_number = "?string", business_id = "int",
  business_role_name = "string", active = "bool", identity_id = "?int", invitation_date_accepted = "?iso_z",
  created_at = "iso_z", updated_at = "iso_z",
})

-- Envelopes ---------------------------------------------------------------------------------------
local function object(fields) return { fields = fields } end
shapes.envelopes = {
  -- {"response":{"result":{"<single>":{...}}}}
  one = function(single, record) return object { response = object { result = object { [single] = record } } } end,
  list = function(plural, record)
    return object { response = object { result = object { [plural] = { array = record }, page = "int", pages = "int",
      per_page = "int", total = "int" } } }
  end,
  project_one = function(single, record) return object { [single] = record } end,
  project_list = function(plural, record, meta)
    local m = { page = "int", pages = "int", per_page = "int", total = "int" }
    for k, v in pairs(meta or {}) do m[k] = v end
    return object { [plural] = { array = record }, meta = { fields = m, optional = { sort = { array = "any" } } } }
  end,
  -- errors
  legacy = object { response = object { errors = { array = { fields = { errno = "int", message = "string" },
    optional = { field = "?string", object = "?string", value = "?string" } } } } },
  rpc = object { code = "int", message = "string", details = { array = { fields = { ["@type"] = "string" },
    optional = { reason = "string", domain = "string", metadata = { map = "any" } } } } },
  events = { fields = { errno = "int", message = "string" }, optional = { details = { array = "string" } } },
  project_error = { fields = {}, optional = { errno = "int", error = { one_of = { "string", { map = "string" } } },
    message = "string" } },
  business = object { errors = object { message = "string", status = "int", details = { array = { fields = {
    reason = "string" }, optional = { metadata = { map = "any" } } } } } },
  oauth = object { error = "string", error_description = "string" },
  payments_error = { fields = { error_type = "string", message = "string" }, optional = { errors = { array = {
    fields = { error_type = "string", message = "string" }, optional = { field = "string" } } } } },
}
local E = shapes.envelopes

-- Endpoints --------------------------------------------------------------------------------------
local function ep(key, status, body, ref, note)
  shapes.endpoints[#shapes.endpoints + 1] = { key = key, status = status, body = body, ref = ref, note = note }
  shapes.endpoints[key .. " " .. status] = shapes.endpoints[#shapes.endpoints]
end

-- Accounting resources: {path, single, plural, record, verbs}. l list, g get, c create, u update, d DELETE.
shapes.accounting = {
  { "users/clients", "client", "clients", "client", "lgcu" },
  { "invoices/invoices", "invoice", "invoices", "invoice", "lgcud" },
  { "estimates/estimates", "estimate", "estimates", "estimate", "lgcud" },
  { "expenses/expenses", "expense", "expenses", "expense", "lgcu" },
  { "expenses/categories", "category", "categories", "category", "lg" },
  { "items/items", "item", "items", "item", "lgcu" },
  { "payments/payments", "payment", "payments", "payment", "lgcu" },
  { "taxes/taxes", "tax", "taxes", "tax", "lgcud" },
  { "credit_notes/credit_notes", "credit_notes", "credit_notes", "credit_note", "lgcu" },
  { "other_incomes/other_incomes", "other_income", "other_income", "other_income", "lgcud" },
  { "bills/bills", "bill", "bills", "bill", "lgcu" },
  { "bill_payments/bill_payments", "bill_payment", "bill_payments", "bill_payment", "lgcu" },
  { "bill_vendors/bill_vendors", "bill_vendor", "bill_vendors", "bill_vendor", "lgcu" },
  { "invoice_profiles/invoice_profiles", "invoice_profile", "invoice_profiles", "invoice_profile", "lgcu" },
  { "projects/tasks", "task", "tasks", "task", "lgcu" },
  { "users/staffs", "staff", "staffs", "staff", "lgu" },
  { "systems/gateways", "gateway", "gateways", "gateway", "l" },
  { "journal_entries/journal_entries", "journal_entry", "journal_entries", "journal_entry", "lc" },
  { "journal_entries/journal_entry_details", "journal_entry_detail", "journal_entry_details", "journal_entry_detail",
    "l" },
  { "journal_entry_accounts/journal_entry_accounts", "journal_entry_account", "journal_entry_accounts",
    "journal_entry_account", "l" },
}
local ACC = "/accounting/account/{account_id}/"
-- What an HTTP DELETE answers: {"response": {}}, but other income {} (node's recorded answer).
local function deleted(path)
  if path:find("^other_incomes/") then return { fields = {} } end
  return { fields = { response = { fields = {} } } }
end
for _, r in ipairs(shapes.accounting) do
  local path, single, plural, R, verbs = r[1], r[2], r[3], shapes.records[r[4]], r[5]
  local ref = R.ref
  if verbs:find("l") then ep("GET " .. ACC .. path, 200, E.list(plural, R), ref) end
  if verbs:find("g") then ep("GET " .. ACC .. path .. "/{id}", 200, E.one(single, R), ref) end
  if verbs:find("c") then ep("POST " .. ACC .. path, 200, E.one(single, R), ref) end
  if verbs:find("u") then ep("PUT " .. ACC .. path .. "/{id}", 200, E.one(single, R), ref) end
  if verbs:find("d") then
    ep("DELETE " .. ACC .. path .. "/{id}", 200, deleted(path), "node:OtherIncome.test.ts (DELETE answers {}); "
      .. "python:test_delete__tax_via_delete and zerospam's tax and estimate deletes ({\"response\": {}}); the "
      .. "Python, Node and PHP SDKs delete invoices, estimates and other income by HTTP DELETE")
  end
end
ep("GET " .. ACC .. "systems/systems/{id}", 200, E.one("system", shapes.records.system), shapes.records.system.ref)
ep("GET " .. ACC .. "invoices/invoices/{id}/share_link", 200, E.one("share_link", shapes.records.share_link),
  shapes.records.share_link.ref)
-- Reports: {path kind, result key, record, where}: account = ACC reports/accounting/{kind}, business =
-- /accounting/businesses/{business_uuid}/reports/{kind} (docs' newer pages).
shapes.reports = {
  { "profitloss_entity", "profitloss", "profitloss", "a" }, { "profitloss", "profitloss", "profitloss", "a" },
  { "taxsummary", "taxsummary", "taxsummary", "a" }, { "payments_collected", "payments_collected",
    "payments_collected", "a" }, { "accounts_aging", "accounts_aging", "accounts_aging", "a" },
  { "balance_sheet", "balance_sheet", "balance_sheet", "a" },
  { "trial_balance", "trial_balance", "trial_balance", "a" },
  { "invoice_details", "invoice_details", "invoice_details", "a" },
  { "expense_details", "expense_details", "expense_details", "ab" },
  { "general_ledger", "general_ledger", "general_ledger", "ab" }, { "cash_flow", "cash_flow", "cash_flow", "ab" },
  { "chart_of_accounts", "journal_entry_accounts", "chart_of_accounts", "b" },
  { "manual_journal_entry", "manual_journal_entry", "manual_journal_entry", "a" },
}
for _, k in ipairs(shapes.reports) do
  local R = shapes.records[k[3]]
  local body = E.one(k[2], k[3] == "chart_of_accounts" and { array = R } or R)
  if k[4]:find("a") then ep("GET " .. ACC .. "reports/accounting/" .. k[1], 200, body, R.ref) end
  if k[4]:find("b") then
    ep("GET /accounting/businesses/{business_uuid}/reports/" .. k[1], 200, body, R.ref
      .. (k[4] == "ab" and "; the account path: postman, and answered there (a third party's live probe)" or ""))
  end
end

local TM = "/auth/api/v1/businesses/{business_id}/team_members"
ep("GET " .. TM, 200, { fields = { response = { array = shapes.records.team_member },
  meta = { fields = { page = "int", per_page = "int", total = "int" } } } }, shapes.records.team_member.ref)
ep("GET " .. TM .. "/{uuid}", 200, { fields = { response = shapes.records.team_member } },
  shapes.records.team_member.ref .. "; postman:My Team/Get Team Member")

local EV = "/events/account/{account_id}/events/callbacks"
ep("GET " .. EV, 200, E.list("callbacks", shapes.records.callback), shapes.records.callback.ref)
for _, m in ipairs { "GET " .. EV .. "/{id}", "PUT " .. EV .. "/{id}", "POST " .. EV } do
  ep(m, 200, E.one("callback", shapes.records.callback), shapes.records.callback.ref)
end
ep("DELETE " .. EV .. "/{id}", 200, "any", "docs:webhooks")

local P, T, C = "/projects/business/{business_id}/", "/timetracking/business/{business_id}/time_entries",
  "/comments/business/{business_id}/"
local project, entry, service = shapes.records.project, shapes.records.time_entry, shapes.records.service
ep("GET " .. P .. "projects", 200, E.project_list("projects", project), project.ref)
ep("GET " .. P .. "project/{id}", 200, { fields = { project = shapes.records.project_one,
  abilities = shapes.records.abilities } }, project.ref)
for _, m in ipairs { "POST " .. P .. "project", "PUT " .. P .. "project/{id}" } do
  ep(m, 200, E.project_one("project", shapes.records.project_one), project.ref)
end
ep("GET " .. T, 200, E.project_list("time_entries", entry, { total_logged = "int", total_unbilled = "int",
  total_logged_per_team_member = { array = "any" }, total_logged_per_client = { array = "any" } }),
  entry.ref .. "; java:list_time_entries_response (meta total_logged, total_unbilled and the per team member and "
  .. "per client breakdowns)")
for _, m in ipairs { "GET " .. T .. "/{id}", "POST " .. T, "PUT " .. T .. "/{id}" } do
  ep(m, 200, E.project_one("time_entry", entry), entry.ref)
end
ep("GET " .. C .. "services", 200, E.project_list("services", service), service.ref)
for _, m in ipairs { "GET " .. C .. "service/{id}", "POST " .. C .. "service", "PUT " .. C .. "service/{id}" } do
  ep(m, 200, E.project_one("service", service), service.ref)
end
for _, m in ipairs { "GET", "POST", "PUT" } do
  ep(m .. " " .. C .. "service/{id}/rate", 200, E.project_one("service_rate", shapes.records.service_rate),
    shapes.records.service_rate.ref)
end
ep("GET " .. C .. "service_rates", 200, { fields = { service_rates = { array = shapes.records.service_rate } } },
  "facts file (service rates)")
for _, k in ipairs { "DELETE " .. P .. "project/{id}", "DELETE " .. T .. "/{id}", "DELETE " .. C .. "service/{id}" } do
  ep(k, 204, "any", "node:Project.test.ts, TimeEntry.test.ts (DELETE answers 204, no body)")
end

ep("DELETE " .. ACC .. "systems/gateways/{id}", 200, deleted("systems/gateways"),
  "the catalogue (gateways: list, delete); answered as taxes' DELETE is")

-- Uploads: the record under attachment or image, and a link to fetch it (facts file; the Python SDK's tests).
local upload = { fields = { jwt = "string", public_id = "string", media_type = "string", filename = "string",
  uuid = "string" } }
ep("POST /uploads/account/{account_id}/attachments", 200, { fields = { attachment = upload } },
  "python:upload_attachment_response (no link)")
ep("POST /uploads/account/{account_id}/images", 200, { fields = { image = upload, link = "string" } },
  "python:upload_image_response (link .../service/uploads/images/<jwt>)")

local PO = "/payments/account/{account_id}/"
local po = { fields = { payment_options = shapes.records.payment_options } }
ep("GET " .. PO .. "invoice/{id}/payment_options", 200, po, shapes.records.payment_options.ref)
ep("POST " .. PO .. "invoice/{id}/payment_options", 200, po, shapes.records.payment_options.ref)
ep("GET " .. PO .. "payment_options", 200, po, shapes.records.payment_options.ref)

local LA = "/accounting/businesses/{business_uuid}/ledger_accounts/accounts"
ep("GET " .. LA, 200, { fields = { data = { array = shapes.records.ledger_account } } }, "facts file")
ep("GET " .. LA .. "/{uuid}", 200, { fields = { data = shapes.records.ledger_account } }, "facts file")
ep("POST " .. LA, 201, { fields = { data = shapes.records.ledger_account } }, "facts file")
ep("PUT " .. LA .. "/{uuid}", 200, { fields = { data = shapes.records.ledger_account } }, "facts file")

ep("GET /auth/api/v1/users/me", 200, { fields = { response = shapes.records.identity } }, shapes.records.identity.ref)
ep("POST /auth/oauth/token", 200, shapes.records.token, shapes.records.token.ref)
ep("POST /auth/oauth/revoke", 200, "any", "docs:authentication (revoke)")

-- Errors: each family's envelope, per status.
ep("ERROR accounting 401", 401, E.legacy, "node:APIClient.test.ts (freshbooks API errors: errno 1003, no field)")
ep("ERROR accounting 403", 403, E.legacy, "facts file (errno 1003)")
ep("ERROR accounting 404", 404, E.legacy, "node:APIClient.test.ts (not found: errno 1012 with field, object, value)")
ep("ERROR accounting 422", 422, E.legacy, "facts file (errno 1001 required, 1004 invalid, 1012 unknown)")
ep("ERROR accounting 400", 400, E.legacy, "docs:parameters (a page that is not a number: errno 1013/1014)")
ep("ERROR taxes 200", 200, E.legacy, "facts file (some endpoints answer errors with HTTP 200)")
ep("ERROR rpc 401", 401, E.rpc, "facts file (google.rpc under X-API-VERSION; UNAUTHENTICATED is code 16)")
ep("ERROR rpc 404", 404, E.rpc, "facts file (google.rpc NOT_FOUND is code 5)")
ep("ERROR rpc 422", 422, E.rpc, "facts file (bills, bill payments, vendors, journal entries: INVALID_ARGUMENT 3)")
ep("ERROR identity 401", 401, E.oauth, "node:APIClient.test.ts (unauthorized request)")
ep("ERROR identity 404", 404, E.oauth, "no reference: an unknown team member answers the identity family's pair")
ep("ERROR token 400", 400, E.oauth, "facts file (RFC 6749 5.2)")
ep("ERROR token 401", 401, E.oauth, "facts file (RFC 6749 5.2: invalid_client)")
ep("ERROR events 401", 401, E.events,
  "the issue's recorded answers ({\"errno\":401,\"message\":\"invalid_token: ...\"})")
ep("ERROR events 404", 404, E.events, "facts file (events errors)")
ep("ERROR events 422", 422, E.events, "facts file; details are strings (the issue's recorded answers)")
ep("ERROR project 404", 404, E.project_error, "facts file (project errors)")
ep("ERROR project 422", 422, E.project_error, "facts file ({\"errno\":2001,\"error\":{field: message}})")
ep("ERROR project 401", 401, E.project_error, "facts file ({\"message\": ...} on 401)")
ep("ERROR business 400", 400, E.business, "facts file (accounting-business errors)")
ep("ERROR business 404", 404, E.business, "facts file (accounting-business errors)")
ep("ERROR payments 400", 400, E.payments_error, "node:PaymentOptions.test.ts (error_type, message)")
ep("ERROR payments 404", 404, E.payments_error, "node:PaymentOptions.test.ts (error_type, message)")

return shapes
