-- The FreshBooks API as data: the owners, the families and the resources. resource.lua builds every
-- object from it, query.lua renders a family's dialect, guest.lua and the command read it.
--
-- An owner is an object of the session (fb:account(id), ...) and the membership field holding its id.
-- A family is one URL shape: its owner, its URL templates ({owner}, and the row's {base}, {path},
-- {item}), the envelope its answers come in, and the dialect its queries speak. A resource is one
-- row, named fields only:
--   name     field on the owner object (`acct.invoices`, `biz.time_entries`)
--   family   one of the families below
--   base, path, item   the row's parts of the family's templates (item defaults to path); for
--            payments, path is the entity whose payment options these are
--   single / plural   the body wrapper and list keys
--   verbs    what FreshBooks allows: list get create update delete archive, report, upload, defaults
--   delete   "vis_state" (PUT {single = {vis_state = 1}}) or "http" (DELETE)
--   answer   the key one record is answered under when it is not `single` (credit notes: credit_notes)
--   extras   extra verbs resource.lua implements (invoice share link, send by email, ...)
--   group    a sub-table of the owner object (acct.reports)
--   paged    false for lists FreshBooks answers whole, without paging (service rates, ledger accounts)
--   params   a report's parameters (their kinds: catalogue.report_params); `single` is its result key
--            and the name of its CSV download (verb `download`)
local catalogue = {}

catalogue.owners = { account = "account_id", business = "business_id", accounting_business = "business_uuid" }

-- envelope "response": answers are {"response": {"result": ...}}; "identity": {"response": <the record or
-- the list>, "meta": {page, per_page, total}} (no `pages`); otherwise the body is the payload.
-- dialect: "accounting" (search[k]=v, sort=f_asc) or "project" (k=v, sort=-f): see query.lua.
-- create "item": the family creates at the item URL (`project`, `service`), the others at the list.
catalogue.families = {
  accounting = { owner = "account", list = "/accounting/account/{owner}/{path}", envelope = "response",
    dialect = "accounting" },
  events = { owner = "account", list = "/events/account/{owner}/{path}", envelope = "response",
    dialect = "accounting" },
  uploads = { owner = "account", list = "/uploads/account/{owner}/{path}", item = "/uploads/{item}",
    dialect = "accounting" },
  -- the account's defaults, and the entity's own (+ /{id}/payment_options)
  payments = { owner = "account", list = "/payments/account/{owner}/payment_options",
    item = "/payments/account/{owner}/{path}", dialect = "accounting" },
  accounting_business = { owner = "accounting_business", list = "/accounting/businesses/{owner}/{path}",
    dialect = "accounting" },
  -- the reports FreshBooks serves by business uuid answer in the accounting envelope, not in {"data"}
  business_reports = { owner = "accounting_business", list = "/accounting/businesses/{owner}/{path}",
    envelope = "response", dialect = "accounting" },
  identity = { owner = "business", list = "/auth/api/v1/businesses/{owner}/{path}", envelope = "identity",
    dialect = "project" },
  project = { owner = "business", list = "/{base}/business/{owner}/{path}", item = "/{base}/business/{owner}/{item}",
    dialect = "project", create = "item" },
}

local CRUD = "list get create update delete archive"
local rows = {
  -- Accounting: /accounting/account/{account_id}/{path}[/{id}]
  { name = "clients", family = "accounting", path = "users/clients", single = "client", plural = "clients",
    verbs = CRUD, delete = "vis_state" },
  { name = "invoices", family = "accounting", path = "invoices/invoices", single = "invoice", plural = "invoices",
    verbs = CRUD, delete = "vis_state", extras = { "share_link", "send_by_email", "mark_as_sent", "pdf" } },
  { name = "estimates", family = "accounting", path = "estimates/estimates", single = "estimate",
    plural = "estimates", verbs = CRUD, delete = "vis_state", extras = { "send_by_email", "mark_as_sent", "accept" } },
  { name = "expenses", family = "accounting", path = "expenses/expenses", single = "expense", plural = "expenses",
    verbs = CRUD, delete = "vis_state" },
  { name = "expense_categories", family = "accounting", path = "expenses/categories", single = "category",
    plural = "categories", verbs = "list get" },
  { name = "items", family = "accounting", path = "items/items", single = "item", plural = "items",
    verbs = CRUD, delete = "vis_state" },
  { name = "payments", family = "accounting", path = "payments/payments", single = "payment", plural = "payments",
    verbs = "list get create update delete", delete = "vis_state" },
  { name = "taxes", family = "accounting", path = "taxes/taxes", single = "tax", plural = "taxes",
    verbs = "list get create update delete", delete = "http" },
  { name = "credit_notes", family = "accounting", path = "credit_notes/credit_notes", single = "credit_note",
    plural = "credit_notes", verbs = CRUD, delete = "vis_state", answer = "credit_notes" },
  { name = "other_incomes", family = "accounting", path = "other_incomes/other_incomes", single = "other_income",
    plural = "other_income", verbs = "list get create update delete", delete = "vis_state" },
  { name = "bills", family = "accounting", path = "bills/bills", single = "bill", plural = "bills",
    verbs = CRUD, delete = "vis_state" },
  { name = "bill_payments", family = "accounting", path = "bill_payments/bill_payments", single = "bill_payment",
    plural = "bill_payments", verbs = "list get create update delete", delete = "vis_state" },
  { name = "bill_vendors", family = "accounting", path = "bill_vendors/bill_vendors", single = "bill_vendor",
    plural = "bill_vendors", verbs = CRUD, delete = "vis_state" },
  { name = "staff", family = "accounting", path = "users/staffs", single = "staff", plural = "staffs",
    verbs = "list get update delete", delete = "vis_state" },
  { name = "gateways", family = "accounting", path = "systems/gateways", single = "gateway", plural = "gateways",
    verbs = "list delete", delete = "http" },
  { name = "invoice_profiles", family = "accounting", path = "invoice_profiles/invoice_profiles",
    single = "invoice_profile", plural = "invoice_profiles", verbs = CRUD, delete = "vis_state" },
  { name = "systems", family = "accounting", path = "systems/systems", single = "system", verbs = "get" },
  { name = "tasks", family = "accounting", path = "projects/tasks", single = "task", plural = "tasks",
    verbs = CRUD, delete = "vis_state" },
  { name = "journal_entries", family = "accounting", path = "journal_entries/journal_entries",
    single = "journal_entry", plural = "journal_entries", verbs = "list create" },
  { name = "journal_entry_details", family = "accounting", path = "journal_entries/journal_entry_details",
    single = "journal_entry_detail", plural = "journal_entry_details", verbs = "list" },
  { name = "journal_entry_accounts", family = "accounting", path = "journal_entry_accounts/journal_entry_accounts",
    single = "journal_entry_account", plural = "journal_entry_accounts", verbs = "list" },
  -- Reports: GET with the parameters their row names; the result is unwrapped from its one key, and
  -- those that answer a download_token download as CSV.
  { name = "profit_and_loss", family = "accounting", path = "reports/accounting/profitloss_entity",
    single = "profitloss", verbs = "report download", group = "reports",
    params = "start_date end_date currency_code resolution cash_based" },
  { name = "tax_summary", family = "accounting", path = "reports/accounting/taxsummary", single = "taxsummary",
    verbs = "report download", group = "reports", params = "start_date end_date currency_code cash_based" },
  { name = "payments_collected", family = "accounting", path = "reports/accounting/payments_collected",
    single = "payments_collected", verbs = "report download", group = "reports",
    params = "start_date end_date currency_code currency_codes clientids payment_methods payment_method" },
  -- end_date is the day the invoices are aged on; start_date keeps those created on or after it
  { name = "accounts_aging", family = "accounting", path = "reports/accounting/accounts_aging",
    single = "accounts_aging", verbs = "report download", group = "reports",
    params = "start_date end_date currency_code" },
  { name = "balance_sheet", family = "accounting", path = "reports/accounting/balance_sheet",
    single = "balance_sheet", verbs = "report download", group = "reports", params = "dates currency_code" },
  { name = "trial_balance", family = "accounting", path = "reports/accounting/trial_balance",
    single = "trial_balance", verbs = "report download", group = "reports",
    params = "start_date end_date currency_code" },
  { name = "invoice_details", family = "accounting", path = "reports/accounting/invoice_details",
    single = "invoice_details", verbs = "report download", group = "reports",
    params = "start_date end_date currency_code clientids statusids date_type summary_only" },
  { name = "expense_details", family = "accounting", path = "reports/accounting/expense_details",
    single = "expense_details", verbs = "report download", group = "reports",
    params = "start_date end_date currency_code group_by exclude_personal include_project client_id project_id"
      .. " locale" },
  { name = "manual_journal_entry", family = "accounting", path = "reports/accounting/manual_journal_entry",
    single = "manual_journal_entry", verbs = "report download", group = "reports",
    params = "start_date end_date currency_code" },

  -- Webhook callbacks: /events/account/{account_id}/events/callbacks[/{id}]
  { name = "callbacks", family = "events", path = "events/callbacks", single = "callback", plural = "callbacks",
    verbs = "list get create update delete", delete = "http", extras = { "verify", "resend" } },

  -- Uploads: POST /uploads/account/{account_id}/{path} (multipart), GET /uploads/{path}/{jwt}
  { name = "attachments", family = "uploads", path = "attachments", single = "attachment", verbs = "upload" },
  { name = "images", family = "uploads", path = "images", single = "image", verbs = "upload" },

  -- Online payments: GET/POST /payments/account/{account_id}/invoice/{invoice_id}/payment_options, and
  -- the account's defaults, GET /payments/account/{account_id}/payment_options?entity_type=invoice.
  -- Bodies are the options themselves (no wrapper); answers {"payment_options": {...}}.
  { name = "invoice_payment_options", family = "payments", path = "invoice", single = "payment_options",
    verbs = "get create defaults" },

  -- Accounting business: /accounting/businesses/{business_uuid}/{path}[/{uuid}], bodies and answers
  -- {"data": ...}; the whole chart of accounts comes in one answer.
  { name = "ledger_accounts", family = "accounting_business", path = "ledger_accounts/accounts", single = "data",
    plural = "data", verbs = "list get create update", paged = false },
  -- Reports by business uuid: /accounting/businesses/{business_uuid}/reports/{kind}, in the accounting
  -- envelope. Their CSV downloads at the account's path (resource.lua finds the account).
  { name = "general_ledger", family = "business_reports", path = "reports/general_ledger", single = "general_ledger",
    verbs = "report download", group = "reports",
    params = "start_date end_date currency_code accountid locale summary_only" },
  { name = "cash_flow", family = "business_reports", path = "reports/cash_flow", single = "cash_flow",
    verbs = "report download", group = "reports", params = "start_date end_date currency_code" },
  -- the chart itself, a list; balances as 3-decimal strings ("925.000"); no download
  { name = "chart_of_accounts", family = "business_reports", path = "reports/chart_of_accounts",
    single = "journal_entry_accounts", verbs = "report", group = "reports",
    params = "start_date end_date currency_code account_type state sort use_ledger_entries" },

  -- Projects: /{base}/business/{business_id}/{path} and /{item}[/{id}]
  { name = "projects", family = "project", base = "projects", path = "projects", item = "project",
    single = "project", plural = "projects", verbs = "list get create update delete", delete = "http" },
  { name = "time_entries", family = "project", base = "timetracking", path = "time_entries",
    single = "time_entry", plural = "time_entries", verbs = "list get create update delete", delete = "http" },
  { name = "services", family = "project", base = "comments", path = "services", item = "service",
    single = "service", plural = "services", verbs = "list get create update delete", delete = "http",
    extras = { "rate", "create_rate", "update_rate" } },
  -- Every service's rate at once (one service's: services:rate); not paged.
  { name = "service_rates", family = "project", base = "comments", path = "service_rates", single = "service_rate",
    plural = "service_rates", verbs = "list", paged = false },

  -- Team members (superseding staff): /auth/api/v1/businesses/{business_id}/team_members[/{uuid}]; the
  -- record or the list is `response` itself (single and plural name nothing in the body).
  { name = "team_members", family = "identity", path = "team_members", single = "team_member",
    plural = "team_members", verbs = "list get" },
}

-- What a report's parameters take: "date" (YYYY-MM-DD, a real day), "currency" (catalogue.currencies),
-- "boolean", "id" (a whole number >= 1), "text" (a non-empty string), "uuid", "resolution" (m, 3m, y:
-- months or years per period); "dates", "currencies", "ids", "texts": a non-empty list of those (or
-- one); a list of strings: one of them (with sort = true: a sort field, f or -f, f_asc or f_desc).
catalogue.report_params = {
  start_date = "date", end_date = "date", dates = "dates", currency_code = "currency",
  currency_codes = "currencies", resolution = "resolution", cash_based = "boolean", summary_only = "boolean",
  clientids = "ids", payment_methods = "texts", payment_method = "text", statusids = "texts",
  date_type = { "issue", "paid" }, group_by = { "parent_category", "clients", "vendor", "author" },
  exclude_personal = "boolean", include_project = "boolean", client_id = "id", project_id = "id", locale = "text",
  accountid = "uuid", account_type = { "asset", "liability", "equity", "income", "expense" },
  state = { "active", "inactive" }, use_ledger_entries = "boolean",
  sort = { "account_name", "account_number", "account_type", "balance", sort = true },
}

-- ISO 4217 codes (Debian's iso-codes 4.15, which spec/reports_spec.lua checks this list holds, and ZWG,
-- issued since): a report's currency_code outside them is a bad argument.
catalogue.currencies = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN"
  .. " BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD"
  .. " FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF"
  .. " KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD"
  .. " NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL"
  .. " SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND"
  .. " VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL"

catalogue.entries = {}
catalogue.by_name = {}
for _, r in ipairs(rows) do
  assert(catalogue.families[r.family], r.name)
  local verbs = {}
  for v in r.verbs:gmatch("%S+") do verbs[v] = true end
  local params = {}
  for p in (r.params or ""):gmatch("%S+") do params[#params + 1] = assert(catalogue.report_params[p] and p, p) end
  r.verbs, r.extras, r.paged, r.params = verbs, r.extras or {}, r.paged ~= false, r.params and params
  catalogue.entries[#catalogue.entries + 1] = r
  catalogue.by_name[r.name] = r
end

function catalogue.owner_of(entry) return catalogue.families[entry.family].owner end

-- A report's CSV, by its download_token, at the account that holds the business (any report's family).
catalogue.download = "/accounting/account/{owner}/links/reports/{token}/{key}.csv"

-- catalogue.urls(entry, owner) -> the list URL and the item URL (without the id) of `entry` under the
-- owner id `owner` (already one encoded path segment).
function catalogue.urls(entry, owner)
  local f = catalogue.families[entry.family]
  local parts = { owner = owner, base = entry.base, path = entry.path, item = entry.item or entry.path }
  local function expand(template) return (template:gsub("{(%w+)}", parts)) end
  return expand(f.list), expand(f.item or f.list)
end

-- What a family's URLs start with, as a pattern ("/{base}/business/{owner}" -> any base, any owner).
local prefixes = {}
for name, f in pairs(catalogue.families) do
  local head = f.list:match("^(.-{owner})")
  local pattern = "^" .. head:gsub("[%-%.%+%*%?%[%]%^%$%%]", "%%%0"):gsub("{base}", "[%%w_]+")
    :gsub("{owner}", "[^/]+") .. "/"
  prefixes[#prefixes + 1] = { pattern = pattern, dialect = f.dialect, name = name }
end
table.sort(prefixes, function(a, b) return a.name < b.name end)

-- catalogue.dialect_of(path) -> the query dialect of the family whose URLs `path` is one of
-- ("accounting" for a path of no family: identity, auth).
function catalogue.dialect_of(path)
  if path:byte(1) ~= 47 then path = "/" .. path end -- 47: "/"
  for _, pre in ipairs(prefixes) do
    if path:find(pre.pattern) then return pre.dialect end
  end
  return "accounting"
end

return catalogue
