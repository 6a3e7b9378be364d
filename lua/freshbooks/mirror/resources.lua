-- What the mirror keeps of each resource: the catalogue's listable resources (read through the small
-- adapter at the bottom, the one place that knows the catalogue's row layout), and for each what
-- FreshBooks' answers say about syncing it.
--   id          the record's own id field ("id", or incomeid, vendorid, uuid, service_id) and its SQL type
--   stamp       the field saying when the record last changed, and the zone it is written in:
--               "eastern" (accounting wall time), "utc" (same format, UTC), "iso" (ISO 8601 UTC)
--   sync        "updated_min": accounting lists by day (search[updated_min], the day in the stamp's zone);
--               "updated_since": the project family, a true date-time;
--               "whole": no usable change filter: every sync reads the whole list (small lists)
--   vis         the record's vis_state field (tasks write visState); its deleted records are listed
--               with search[vis_state]=1
--   deleted     "include_deleted": time entries, whose deleted records only that flag lists
--   search_key  the accounting id filter (search[<key>s][]), for reading given records (webhook events,
--               checks) in one request and in their list shape (a single GET answers more: a client's uuid)
--   fetch       "list": given records are read in the whole list (a single project answers another shape)
--   include     what lists must include for records equal to single GETs (lines)
--   events      webhook object names (`invoice` in invoice.update)
--   related     a webhook about this record also re-reads the record it changes (a payment, its invoice)
--   dependents  records that copy fields of this one without their own stamp changing (an invoice shows
--               its client's name and address, a bill its vendor and payments): when this one changes
--               (in `fields`, when given), they are read again: {resource, filter key, from = the field
--               of this record holding the value (default its id)}; no key: the whole list
--   indexes     lists of columns an index covers (what a report reads, so it reads no record JSON)
--   columns     typed columns: {column, field path(s), type}; types: int, text, bool (0/1), date
--               (YYYY-MM-DD, empty -> NULL), money ({amount, code} -> column TEXT exact + column_cents
--               INTEGER), decimal (a decimal string -> the same pair), eastern / utc / iso (a stamp ->
--               UTC ISO 8601 text)
local catalogue = require "freshbooks.catalogue"

local resources = {}

local LINES = { "lines" }
local KNOW = {
  clients = { stamp = { "updated", "eastern" }, sync = "updated_min", vis = "vis_state", search_key = "userid",
    events = { "client" }, dependents = { fields = { "organization", "fname", "lname", "email", "p_street",
      "p_street2", "p_city", "p_province", "p_country", "p_code" }, { "invoices", "customerid" },
      { "estimates", "customerid" }, { "invoice_profiles", "customerid" }, { "credit_notes", "clientid" } },
    columns = {
      { "organization", "organization", "text" }, { "fname", "fname", "text" }, { "lname", "lname", "text" },
      { "email", "email", "text" }, { "currency_code", "currency_code", "text" },
      { "signup_date", "signup_date", "utc" } } },
  invoices = { stamp = { "updated", "eastern" }, sync = "updated_min", vis = "vis_state", search_key = "invoiceid",
    include = LINES, events = { "invoice" },
    -- the billing report and days sales outstanding: what is owed, by client, aged
    indexes = { { "vis_state", "outstanding_cents", "customerid", "currency_code", "due_date", "create_date",
      "due_offset_days", "v3_status", "status", "amount_cents", "organization", "fname", "lname", "id" } },
    columns = {
      { "customerid", "customerid", "int" }, { "invoice_number", "invoice_number", "text" },
      { "status", "status", "int" }, { "v3_status", "v3_status", "text" },
      { "payment_status", "payment_status", "text" }, { "display_status", "display_status", "text" },
      { "create_date", "create_date", "date" }, { "due_date", "due_date", "date" },
      { "due_offset_days", "due_offset_days", "int" }, { "date_paid", "date_paid", "date" },
      { "currency_code", { "currency_code", "amount.code" }, "text" },
      { "amount", "amount", "money" }, { "outstanding", "outstanding", "money" }, { "paid", "paid", "money" },
      { "organization", "organization", "text" }, { "fname", "fname", "text" }, { "lname", "lname", "text" },
      { "created_at", "created_at", "eastern" } } },
  estimates = { stamp = { "updated", "eastern" }, sync = "updated_min", vis = "vis_state",
    search_key = "estimateid", include = LINES, events = { "estimate" }, columns = {
      { "customerid", "customerid", "int" }, { "estimate_number", "estimate_number", "text" },
      { "status", "status", "int" }, { "ui_status", "ui_status", "text" },
      { "create_date", "create_date", "date" }, { "currency_code", { "currency_code", "amount.code" }, "text" },
      { "amount", "amount", "money" }, { "created_at", "created_at", "eastern" } } },
  expenses = { stamp = { "updated", "eastern" }, sync = "updated_min", vis = "vis_state", search_key = "expenseid",
    events = { "expense" }, columns = {
      { "categoryid", "categoryid", "int" }, { "clientid", "clientid", "int" }, { "projectid", "projectid", "int" },
      { "staffid", "staffid", "int" }, { "invoiceid", "invoiceid", "int" }, { "date", "date", "date" },
      { "vendor", "vendor", "text" }, { "status", "status", "int" },
      { "currency_code", { "currency_code", "amount.code" }, "text" }, { "amount", "amount", "money" } } },
  expense_categories = { stamp = { "updated_at", "eastern" }, sync = "updated_min", vis = "vis_state",
    search_key = "categoryid", events = { "category" }, columns = {
      { "category", "category", "text" }, { "parentid", "parentid", "int" }, { "is_cogs", "is_cogs", "bool" } } },
  items = { stamp = { "updated", "eastern" }, sync = "updated_min", vis = "vis_state", search_key = "itemid",
    events = { "item" }, columns = {
      { "name", "name", "text" }, { "sku", "sku", "text" }, { "qty", "qty", "text" },
      { "unit_cost", "unit_cost", "money" } } },
  payments = { stamp = { "updated", "eastern" }, sync = "updated_min", vis = "vis_state", search_key = "paymentid",
    events = { "payment" }, related = { invoices = "invoiceid" }, columns = {
      { "invoiceid", "invoiceid", "int" }, { "clientid", "clientid", "int" }, { "creditid", "creditid", "int" },
      { "date", "date", "date" }, { "type", "type", "text" },
      { "currency_code", { "amount.code", "currency_code" }, "text" }, { "amount", "amount", "money" } } },
  taxes = { stamp = { "updated", "eastern" }, sync = "updated_min", search_key = "taxid", events = { "tax" },
    columns = { { "name", "name", "text" }, { "amount", "amount", "text" }, { "number", "number", "text" },
      { "compound", "compound", "bool" } } },
  credit_notes = { sync = "whole", vis = "vis_state", search_key = "creditid", include = LINES,
    events = { "credit_note" }, columns = {
      { "clientid", "clientid", "int" }, { "credit_number", "credit_number", "text" },
      { "create_date", "create_date", "date" }, { "status", "status", "text" },
      { "currency_code", { "currency_code", "amount.code" }, "text" },
      { "amount", "amount", "money" }, { "paid", "paid", "money" } } },
  other_incomes = { id = "incomeid", stamp = { "updated_at", "eastern" }, sync = "updated_min", vis = "vis_state",
    search_key = "incomeid", events = { "other_income" }, columns = {
      { "date", "date", "date" }, { "category_name", "category_name", "text" }, { "source", "source", "text" },
      { "payment_type", "payment_type", "text" }, { "currency_code", { "amount.code" }, "text" },
      { "amount", "amount", "money" }, { "created_at", "created_at", "eastern" } } },
  bills = { stamp = { "updated_at", "utc" }, sync = "updated_min", vis = "vis_state", search_key = "billid",
    include = LINES, events = { "bill" }, columns = {
      { "vendorid", "vendorid", "int" }, { "bill_number", "bill_number", "text" },
      { "issue_date", "issue_date", "date" }, { "due_date", "due_date", "date" }, { "status", "status", "text" },
      { "currency_code", { "currency_code", "amount.code" }, "text" }, { "amount", "amount", "money" },
      { "outstanding", "outstanding", "money" }, { "paid", "paid", "money" },
      { "total_amount", "total_amount", "money" }, { "tax_amount", "tax_amount", "money" },
      { "created_at", "created_at", "utc" } } },
  bill_payments = { sync = "whole", vis = "vis_state", search_key = "billpaymentid", events = { "bill_payment" },
    related = { bills = "billid" }, dependents = { { "bills", "billid", from = "billid" } }, columns = {
      { "billid", "billid", "int" }, { "paid_date", "paid_date", "date" },
      { "payment_type", "payment_type", "text" }, { "currency_code", { "amount.code" }, "text" },
      { "amount", "amount", "money" } } },
  bill_vendors = { id = "vendorid", stamp = { "updated_at", "utc" }, sync = "updated_min", vis = "vis_state",
    search_key = "vendorid", events = { "bill_vendor" }, dependents = { { "bills", "vendorid" } }, columns = {
      { "vendor_name", "vendor_name", "text" }, { "currency_code", "currency_code", "text" },
      { "created_at", "created_at", "utc" } } },
  staff = { stamp = { "updated", "eastern" }, sync = "updated_min", vis = "vis_state", search_key = "userid",
    events = { "staff" }, columns = {
      { "fname", "fname", "text" }, { "lname", "lname", "text" }, { "email", "email", "text" },
      { "username", "username", "text" } } },
  gateways = { sync = "whole", search_key = "gatewayid", events = { "gateway" }, columns = {
      { "gateway_name", "gateway_name", "text" } } },
  invoice_profiles = { stamp = { "updated", "eastern" }, sync = "updated_min", vis = "vis_state",
    search_key = "profileid", include = LINES, events = { "invoice_profile", "recurring" }, columns = {
      { "customerid", "customerid", "int" }, { "frequency", "frequency", "text" },
      { "create_date", "create_date", "date" }, { "currency_code", { "currency_code", "amount.code" }, "text" },
      { "amount", "amount", "money" } } },
  tasks = { stamp = { "updated", "eastern" }, sync = "updated_min", vis = "vis_state", search_key = "taskid",
    events = { "task" }, columns = {
      { "name", "name", "text" }, { "billable", "billable", "bool" }, { "rate", "rate", "money" } } },
  journal_entries = { sync = "whole", search_key = "entryid", events = { "journal_entry" }, columns = {
      { "name", "name", "text" }, { "user_entered_date", "user_entered_date", "date" },
      { "currency_code", "currency_code", "text" } } },
  journal_entry_details = { sync = "whole", search_key = "detailid", columns = {
      { "entryid", { "entryid", "entry.id" }, "int" }, { "detail_type", "detail_type", "text" },
      { "user_entered_date", "user_entered_date", "date" }, { "debit", "debit", "money" },
      { "credit", "credit", "money" } } },
  journal_entry_accounts = { sync = "whole", search_key = "accountid", columns = {
      { "account_name", "account_name", "text" }, { "account_number", "account_number", "text" },
      { "account_type", "account_type", "text" }, { "currency_code", "currency_code", "text" } } },
  ledger_accounts = { id = "uuid", id_type = "text", sync = "whole", columns = {
      { "name", "name", "text" }, { "number", "number", "text" }, { "type", "type", "text" },
      { "sub_type", "sub_type", "text" }, { "parent_account", "parent_account", "text" },
      { "state", "state", "text" }, { "updated_at", "updated_at", "iso" } } },
  projects = { stamp = { "updated_at", "iso" }, sync = "updated_since", fetch = "list", events = { "project" },
    columns = {
      { "title", "title", "text" }, { "client_id", "client_id", "int" }, { "active", "active", "bool" },
      { "complete", "complete", "bool" }, { "billing_method", "billing_method", "text" },
      { "project_type", "project_type", "text" }, { "rate", "rate", "decimal" }, { "budget", "budget", "text" },
      { "fixed_price", "fixed_price", "decimal" }, { "billed_status", "billed_status", "text" },
      { "due_date", "due_date", "date" }, { "created_at", "created_at", "iso" } } },
  time_entries = { sync = "updated_since", deleted = "include_deleted", events = { "time_entry" }, columns = {
      { "project_id", "project_id", "int" }, { "client_id", "client_id", "int" },
      { "service_id", "service_id", "int" }, { "task_id", "task_id", "int" },
      { "identity_id", "identity_id", "int" }, { "started_at", "started_at", "iso" },
      { "duration", "duration", "int" }, { "billable", "billable", "bool" }, { "billed", "billed", "bool" },
      { "is_logged", "is_logged", "bool" }, { "active", "active", "bool" }, { "note", "note", "text" },
      { "created_at", "created_at", "iso" } } },
  services = { sync = "whole", vis = "vis_state", events = { "service" }, dependents = { { "projects" } },
    columns = {
      { "name", "name", "text" }, { "billable", "billable", "bool" } } },
  service_rates = { id = "service_id", sync = "whole", columns = { { "rate", "rate", "decimal" } } },
}

-- Listable but not the business's books: webhook registrations are the app's own (and need a scope
-- most grants lack); reports, uploads and payment options are not lists.
local SKIP = { callbacks = true }

-- The adapter: every catalogue field the mirror reads, in one place (name, family, owner kind, list
-- verb, the wrappers, the path).
local function from_catalogue(e)
  return { name = e.name, family = e.family, owner = catalogue.owner_of(e), single = e.single, plural = e.plural,
           listable = e.verbs.list and e.plural ~= nil and e.group == nil, get = e.verbs.get == true,
           paged = e.paged ~= false }
end

resources.list = {}
resources.by_name = {}
resources.by_event = {}
for _, e in ipairs(catalogue.entries) do
  local c = from_catalogue(e)
  local k = KNOW[c.name]
  if c.listable and not SKIP[c.name] and (c.family == "accounting" or c.family == "project"
      or c.family == "accounting_business") then
    if not k then
      error("freshbooks.mirror: the catalogue lists " .. c.name .. ", which the mirror does not know", 0)
    end
    local r = { name = c.name, table = c.name, family = c.family, owner = c.owner, single = c.single,
      plural = c.plural, get = c.get, paged = c.paged, id = k.id or "id", id_type = k.id_type or "integer",
      stamp = k.stamp and k.stamp[1], zone = k.stamp and k.stamp[2], sync = k.sync, vis = k.vis,
      deleted = k.deleted, search_key = k.search_key, fetch = k.fetch, include = k.include, events = k.events or {},
      related = k.related, dependents = k.dependents, indexes = k.indexes or {}, columns = k.columns }
    resources.list[#resources.list + 1] = r
    resources.by_name[r.name] = r
    for _, ev in ipairs(r.events) do resources.by_event[ev] = r end
  end
end

-- The resource object of `r` for the business `biz` (a row of the businesses table or a membership):
-- fb:account(account_id).invoices, fb:business(business_id).projects, ...
function resources.handle(fb, r, biz)
  return fb[r.owner](fb, biz[catalogue.owners[r.owner]])[r.name]
end

return resources
