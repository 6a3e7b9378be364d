-- The FreshBooks resource catalogue: one row per resource. resource.lua builds every object from it.
--   name     field on the account/business object (`acct.invoices`, `biz.time_entries`)
--   family   accounting, events, uploads, payments (by account_id), project (by business_id),
--            accounting_business (by business_uuid): see catalogue.families
--   path     accounting/events/uploads/accounting_business: path after the family's base;
--            payments: the entity whose payment options these are;
--            project: { base, list path, item path }
--   single / plural   the body wrapper and list keys
--   verbs    what FreshBooks allows: list get create update delete archive (and defaults)
--   delete   "vis_state" (PUT {single = {vis_state = 1}}) or "http" (DELETE)
--   vis_key  the name the resource gives vis_state in requests and answers
--   answer   the key one record is answered under when it is not `single` (credit notes: credit_notes)
--   extras   extra verbs resource.lua implements (invoice share link, send by email, ...)
--   group    a sub-table of the account object (reports)
--   paged    false for lists FreshBooks answers whole, without paging (service rates, ledger accounts)
local catalogue = {}

local rows = {
  -- Accounting family: /accounting/account/{account_id}/{path}[/{id}]
  { "clients",            "accounting", "users/clients",                   "client",            "clients",
    "list get create update delete archive", "vis_state" },
  { "invoices",           "accounting", "invoices/invoices",               "invoice",           "invoices",
    "list get create update delete archive", "vis_state",
    extras = { "share_link", "send_by_email", "mark_as_sent" } },
  { "estimates",          "accounting", "estimates/estimates",             "estimate",          "estimates",
    "list get create update delete archive", "vis_state", extras = { "send_by_email", "mark_as_sent" } },
  { "expenses",           "accounting", "expenses/expenses",               "expense",           "expenses",
    "list get create update delete archive", "vis_state" },
  { "expense_categories", "accounting", "expenses/categories",             "category",          "categories",
    "list get" },
  { "items",              "accounting", "items/items",                     "item",              "items",
    "list get create update delete archive", "vis_state" },
  { "payments",           "accounting", "payments/payments",               "payment",           "payments",
    "list get create update delete", "vis_state" },
  { "taxes",              "accounting", "taxes/taxes",                     "tax",               "taxes",
    "list get create update delete", "http" },
  { "credit_notes",       "accounting", "credit_notes/credit_notes",       "credit_note",       "credit_notes",
    "list get create update delete archive", "vis_state", answer = "credit_notes" },
  { "other_incomes",      "accounting", "other_incomes/other_incomes",     "other_income",      "other_income",
    "list get create update delete", "vis_state" },
  { "bills",              "accounting", "bills/bills",                     "bill",              "bills",
    "list get create update delete archive", "vis_state" },
  { "bill_payments",      "accounting", "bill_payments/bill_payments",     "bill_payment",      "bill_payments",
    "list get create update delete", "vis_state" },
  { "bill_vendors",       "accounting", "bill_vendors/bill_vendors",       "bill_vendor",       "bill_vendors",
    "list get create update delete archive", "vis_state" },
  { "staff",              "accounting", "users/staffs",                    "staff",             "staffs",
    "list get update delete", "vis_state" },
  { "gateways",           "accounting", "systems/gateways",                "gateway",           "gateways",
    "list delete", "http" },
  { "invoice_profiles",   "accounting", "invoice_profiles/invoice_profiles", "invoice_profile", "invoice_profiles",
    "list get create update delete archive", "vis_state" },
  { "systems",            "accounting", "systems/systems",                 "system",            nil, "get" },
  { "tasks",              "accounting", "projects/tasks",                  "task",              "tasks",
    "list get create update delete archive", "vis_state" },
  { "journal_entries",    "accounting", "journal_entries/journal_entries", "journal_entry",     "journal_entries",
    "list create" },
  { "journal_entry_details", "accounting", "journal_entries/journal_entry_details", "journal_entry_detail",
    "journal_entry_details", "list" },
  { "journal_entry_accounts", "accounting", "journal_entry_accounts/journal_entry_accounts",
    "journal_entry_account", "journal_entry_accounts", "list" },
  -- Reports: GET with start_date/end_date/currency_code; the result is unwrapped from its one key.
  { "profit_and_loss",    "accounting", "reports/accounting/profitloss_entity", "profitloss", nil, "report",
    group = "reports" },
  { "tax_summary",        "accounting", "reports/accounting/taxsummary",   "taxsummary",        nil, "report",
    group = "reports" },
  { "payments_collected", "accounting", "reports/accounting/payments_collected", "payments_collected", nil,
    "report", group = "reports" },

  -- Webhook callbacks: /events/account/{account_id}/events/callbacks[/{id}]
  { "callbacks",          "events",     "events/callbacks",                "callback",          "callbacks",
    "list get create update delete", "http", extras = { "verify", "resend" } },

  -- Uploads: POST /uploads/account/{account_id}/{path} (multipart), GET /uploads/{path}/{jwt}
  { "attachments",        "uploads",    "attachments",                     "attachment",        nil, "upload" },
  { "images",             "uploads",    "images",                          "image",             nil, "upload" },

  -- Online payments: GET/POST /payments/account/{account_id}/invoice/{invoice_id}/payment_options, and
  -- the account's defaults, GET /payments/account/{account_id}/payment_options?entity_type=invoice.
  -- Bodies are the options themselves (no wrapper); answers {"payment_options": {...}}.
  { "invoice_payment_options", "payments", "invoice",                     "payment_options",   nil,
    "get create defaults" },

  -- Accounting-business family: /accounting/businesses/{business_uuid}/{path}[/{uuid}], bodies and
  -- answers {"data": ...}; the whole chart of accounts comes in one answer.
  { "ledger_accounts",    "accounting_business", "ledger_accounts/accounts", "data",            "data",
    "list get create update", paged = false },

  -- Project family: /{base}/business/{business_id}/{list path} and /{item path}[/{id}]
  { "projects",           "project",    { "projects", "projects", "project" }, "project",       "projects",
    "list get create update delete", "http" },
  { "time_entries",       "project",    { "timetracking", "time_entries", "time_entries" }, "time_entry",
    "time_entries", "list get create update delete", "http" },
  { "services",           "project",    { "comments", "services", "service" }, "service",       "services",
    "list get create update delete", "http", extras = { "rate", "create_rate", "update_rate" } },
  -- Every service's rate at once (one service's: services:rate); not paged.
  { "service_rates",      "project",    { "comments", "service_rates", "service_rates" }, "service_rate",
    "service_rates", "list", paged = false },
}

catalogue.entries = {}
catalogue.by_name = {}

for _, r in ipairs(rows) do
  local e = { name = r[1], family = r[2], path = r[3], single = r[4], plural = r[5], delete = r[7],
              vis_key = r.vis_key or "vis_state", answer = r.answer,
              extras = r.extras or {}, group = r.group, paged = r.paged ~= false, verbs = {} }
  for v in r[6]:gmatch("%S+") do e.verbs[v] = true end
  catalogue.entries[#catalogue.entries + 1] = e
  catalogue.by_name[e.name] = e
end

-- The families: which owner object carries their resources, and whether their answers come in
-- FreshBooks' {"response": {"result": ...}} envelope (the others are the payload itself).
catalogue.families = {
  accounting          = { owner = "account", envelope = true },
  events              = { owner = "account", envelope = true },
  uploads             = { owner = "account" },
  payments            = { owner = "account" },
  project             = { owner = "business" },
  accounting_business = { owner = "accounting_business" },
}

-- The owner objects (fb:account(id), fb:business(id), fb:accounting_business(uuid)) and the field
-- of a membership (fb:memberships()) that holds each one's id.
catalogue.owners = { account = "account_id", business = "business_id", accounting_business = "business_uuid" }

function catalogue.owner_of(entry) return catalogue.families[entry.family].owner end

return catalogue
