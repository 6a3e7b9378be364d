-- Online payments (by account_id): an invoice's payment options,
--   GET/POST /payments/account/{account_id}/invoice/{invoice_id}/payment_options
-- and the account's defaults, GET /payments/account/{account_id}/payment_options?entity_type=invoice.
-- Bodies are the options themselves, unwrapped; answers {"payment_options": {...}}; errors
-- {"error_type": "validation"|"not_found"|"forbidden", "message", "errors": [{error_type, message, field}]}
-- (the shape the official SDKs' recorded tests show). An invoice has options only once they were set.
local json = require "sandbox.json"
local state = require "sandbox.state"
local http = require "sandbox.http"
local resources = require "sandbox.resources"

local payments = {}
local NULL = json.null

-- The flags a payment option set carries, all false unless set (the defaults turn on cards).
local FLAGS = { "has_credit_card", "has_ach_transfer", "has_bacs_debit", "has_sepa_debit", "has_acss_debit",
                "has_paypal_smart_checkout", "allow_partial_payments" }
local ENTITY_TYPES = { invoice = true, invoices = true, invoice_profile = true, checkout_link = true,
                       payment_method_setup = true }
local PERMITTED = "'invoice', 'invoices', 'invoice_profile', 'checkout_link', 'payment_method_setup'"

local function not_found() return 404, { error_type = "not_found", message = "Resource not found" } end

-- problems: array of {error_type, message, field}
local function invalid(problems)
  return 400, { error_type = "validation", message = "A validation error occurred.", errors = json.array(problems) }
end

local function account_ctx(req, aid, write)
  local scope = "user:online_payments:" .. (write and "write" or "read")
  local ctx, status, body, headers = resources.member_ctx(req, "payments", scope, state.business_by_account(aid),
    "account")
  if ctx then ctx.account = state.data.accounts[aid] end
  return ctx, status, body, headers
end

-- The account's connected gateway (the seeded one): its name and the gateway_info FreshBooks shows.
local function gateway(acct)
  local g = acct.cols.gateways.list[1]
  return g and g.gateway_name, g and { id = "gw_" .. acct.account_id, account_id = tostring(acct.business.id),
    country = "CA", currencies = json.array { acct.currency_code }, gateway_name = g.gateway_name,
    user_publishable_key = NULL, bank_transfer_enabled = false, can_process_payments = true }
end

local function options_json(acct, opts, entity_type, entity_id)
  local name, info = gateway(acct)
  local out = { gateway_name = opts.gateway_name or name, entity_type = entity_type,
                entity_id = entity_id and tostring(entity_id) or NULL, stripe_acss_payment_options = NULL,
                gateway_info = info or NULL }
  for _, f in ipairs(FLAGS) do out[f] = opts[f] == true end
  return { payment_options = out }
end

local DEFAULTS = { has_credit_card = true }

local function defaults(req, aid)
  local ctx, s, b, h = account_ctx(req, aid, false)
  if not ctx then return s, b, h end
  local t = req.args.entity_type
  if type(t) == "table" then t = t[#t] end
  if t == nil then
    return invalid { { error_type = "value_error.missing", message = "field required", field = "entity_type" } }
  end
  if not ENTITY_TYPES[t] then
    return invalid { { error_type = "type_error.enum", field = "entity_type",
      message = "value is not a valid enumeration member; permitted: " .. PERMITTED } }
  end
  return 200, options_json(ctx.account, DEFAULTS, t)
end

local function invoice_of(ctx, id)
  local inv = ctx.account.cols.invoices.by_id[tonumber(id)]
  if inv and not inv.removed then return inv end
end

local function get(req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, false)
  if not ctx then return s, b, h end
  local inv = invoice_of(ctx, id)
  local opts = inv and ctx.account.payment_options[inv.id]
  if not opts then return not_found() end
  return 200, options_json(ctx.account, opts, "invoice", inv.id)
end

-- Every problem of the body at once, as FreshBooks' validation answers.
local function check(ctx, inv, body)
  local problems = {}
  local function bad(field, error_type, message)
    problems[#problems + 1] = { field = field, error_type = error_type, message = message }
  end
  local name = body.gateway_name
  if name == nil or name == NULL then
    bad("gateway_name", "value_error.missing", "field required")
  elseif type(name) ~= "string" then
    bad("gateway_name", "type_error.str", "str type expected")
  elseif name ~= gateway(ctx.account) then
    bad("gateway_name", "value_error", "no gateway of this name is connected to the account")
  end
  local t = body.entity_type
  if t ~= nil and t ~= "invoice" then
    bad("entity_type", "type_error.enum", "value is not a valid enumeration member; permitted: 'invoice'")
  end
  local id = body.entity_id
  if id ~= nil and tostring(id) ~= tostring(inv.id) then
    bad("entity_id", "value_error", "entity_id is not the invoice in the path")
  end
  for _, f in ipairs(FLAGS) do
    local v = body[f]
    if v ~= nil and type(v) ~= "boolean" then bad(f, "type_error.bool", "value could not be parsed to a boolean") end
  end
  return problems
end

local function create(req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, true)
  if not ctx then return s, b, h end
  local inv = invoice_of(ctx, id)
  if not inv then return not_found() end
  local body = http.json_body(req)
  if type(body) ~= "table" or body[1] ~= nil then
    return invalid { { error_type = "type_error.dict", message = "value is not a valid dict", field = "__root__" } }
  end
  local problems = check(ctx, inv, body)
  if problems[1] then return invalid(problems) end
  local opts = { gateway_name = body.gateway_name }
  for _, f in ipairs(FLAGS) do opts[f] = body[f] == true end
  ctx.account.payment_options[inv.id] = opts
  return 200, options_json(ctx.account, opts, "invoice", inv.id)
end

local P = "/payments/account/([^/]+)/"
local NAME = "/payments/account/{account_id}/"
payments.routes = {
  { method = "GET", path = P .. "payment_options", name = NAME .. "payment_options", handler = defaults },
  { method = "GET", path = P .. "invoice/(%d+)/payment_options",
    name = NAME .. "invoice/{invoice_id}/payment_options", handler = get },
  { method = "POST", path = P .. "invoice/(%d+)/payment_options",
    name = NAME .. "invoice/{invoice_id}/payment_options", handler = create },
}

return payments
