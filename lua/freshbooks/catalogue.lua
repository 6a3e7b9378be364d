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
local catalogue = {}

catalogue.owners = { account = "account_id", business = "business_id", accounting_business = "business_uuid" }

-- envelope "response": answers are {"response": {"result": ...}}; otherwise the body is the payload.
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
  project = { owner = "business", list = "/{base}/business/{owner}/{path}", item = "/{base}/business/{owner}/{item}",
    dialect = "project", create = "item" },
}

local CRUD = "list get create update delete archive"
local rows = {
  -- Accounting: /accounting/account/{account_id}/{path}[/{id}]
  { name = "clients", family = "accounting", path = "users/clients", single = "client", plural = "clients",
    verbs = CRUD, delete = "vis_state" },
  { name = "invoices", family = "accounting", path = "invoices/invoices", single = "invoice", plural = "invoices",
    verbs = CRUD, delete = "vis_state", extras = { "share_link", "send_by_email", "mark_as_sent" } },
  { name = "estimates", family = "accounting", path = "estimates/estimates", single = "estimate",
    plural = "estimates", verbs = CRUD, delete = "vis_state", extras = { "send_by_email", "mark_as_sent" } },
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
  -- Reports: GET with start_date/end_date/currency_code; the result is unwrapped from its one key.
  { name = "profit_and_loss", family = "accounting", path = "reports/accounting/profitloss_entity",
    single = "profitloss", verbs = "report", group = "reports" },
  { name = "tax_summary", family = "accounting", path = "reports/accounting/taxsummary", single = "taxsummary",
    verbs = "report", group = "reports" },
  { name = "payments_collected", family = "accounting", path = "reports/accounting/payments_collected",
    single = "payments_collected", verbs = "report", group = "reports" },

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
}

catalogue.entries = {}
catalogue.by_name = {}
for _, r in ipairs(rows) do
  assert(catalogue.families[r.family], r.name)
  local verbs = {}
  for v in r.verbs:gmatch("%S+") do verbs[v] = true end
  r.verbs, r.extras, r.paged = verbs, r.extras or {}, r.paged ~= false
  catalogue.entries[#catalogue.entries + 1] = r
  catalogue.by_name[r.name] = r
end

function catalogue.owner_of(entry) return catalogue.families[entry.family].owner end

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
