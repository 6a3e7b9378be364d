-- GET /auth/api/v1/users/me: {"response": {...}} (no "result" level), business_memberships with
-- business.id (the business_id) and business.account_id (the account_id).
local json = require "sandbox.json"
local state = require "sandbox.state"
local auth = require "sandbox.auth"

local identity = {}

local function business_json(b)
  return {
    id = b.id, business_uuid = b.business_uuid, name = b.name, account_id = b.account_id,
    date_format = "mm/dd/yyyy", timezone = "US/Eastern", active = true, currency_code = b.currency_code,
    address = { street = "1 Sandbox Way", city = "Toronto", province = "Ontario", country = "Canada",
                postal_code = "M5V 1A1" },
    phone_number = json.null, business_clients = json.array(), status = "active",
  }
end

local function user_json(u)
  local memberships, roles = json.array(), json.array()
  for _, m in ipairs(u.memberships) do
    local b = state.businesses[m.business]
    memberships[#memberships + 1] = { id = m.id, role = m.role, unacknowledged_change = false,
                                      fasttrack_token = json.null, business = business_json(b) }
    roles[#roles + 1] = { id = m.id + 100, role = m.role == "owner" and "admin" or m.role, systemid = b.id,
                          userid = 1, accountid = b.account_id, created_at = "2024-01-15T09:30:00Z",
                          links = { destroy = "/api/v1/users/role/" .. (m.id + 100) } }
  end
  return {
    id = u.id, identity_id = u.id, identity_uuid = string.format("0b6e7c1d-sbx0-4000-8000-%012d", u.id),
    first_name = u.first_name, last_name = u.last_name, email = u.email, language = "en",
    confirmed_at = "2024-01-15T09:30:00Z", created_at = "2024-01-15T09:29:00Z", setup_complete = true,
    phone_numbers = json.array(), addresses = json.array(), profession = json.null,
    business_memberships = memberships, roles = roles, permissions = {}, groups = json.array(),
    subscription_statuses = {}, integrations = {}, links = {}, unacknowledged_notifications = json.array(),
    profile = { setup_complete = true, first_name = u.first_name, last_name = u.last_name, email = u.email },
  }
end

function identity.me(req)
  local ctx, status, body, headers = auth.bearer(req, "identity", "user:profile:read")
  if not ctx then return status, body, headers end
  return 200, { response = user_json(ctx.user) }
end

function identity.admin_users()
  local out = json.array()
  for _, u in ipairs(state.users) do out[#out + 1] = user_json(u) end
  return out
end

return identity
