-- GET /auth/api/v1/users/me: {"response": {...}} (no "result" level), business_memberships with
-- business.id (the business_id) and business.account_id (the account_id).
local json = require "sandbox.json"
local state = require "sandbox.state"
local auth = require "sandbox.auth"

local identity = {}

local function business_json(b)
  return {
    id = b.id, business_uuid = b.business_uuid, name = b.name, account_id = b.account_id,
    date_format = "mm/dd/yyyy", timezone = "America/New_York",
    address = { id = b.id + 2000000, street = "1 Sandbox Way", city = "Toronto", province = "Ontario",
                country = "Canada", postal_code = "M5V 1A1" },
    phone_number = { id = b.id + 3000000, phone_number = "4165550100" }, business_clients = json.array(),
  }
end

-- What a member may do in a business (the identity's permissions map, per account id).
local PERMISSIONS = { ["advanced_accounting.access"] = true, ["attachments.access"] = true,
  ["client.limit"] = -1, ["staff.limit"] = -1, ["retainers.access"] = true, ["new_time_tracking.access"] = true }

-- The identity's uuid, stable per user (the Python and Java SDKs' recorded identities carry one).
local function identity_uuid(u)
  return ("%08x-0002-4%03x-8%03x-%012x"):format(u.id * 2654435 % 0xffffffff, u.id % 4096, (u.id * 7) % 4096, u.id)
end

local function user_json(u)
  local memberships, roles, groups = json.array(), json.array(), json.array()
  local permissions, statuses = {}, {}
  for _, m in ipairs(u.memberships) do
    local b = state.businesses[m.business]
    memberships[#memberships + 1] = { id = m.id, role = m.role, unacknowledged_change = false,
      fasttrack_token = "eyJhbGciOiJIUzI1NiJ9.sandbox." .. m.id, business = business_json(b) }
    roles[#roles + 1] = { id = m.id + 100, role = m.role == "owner" and "admin" or m.role, systemid = b.id,
                          userid = 1, accountid = b.account_id, created_at = "2024-01-15T09:30:00Z",
                          links = { destroy = "/service/auth/api/v1/users/role/" .. (m.id + 100) } }
    groups[#groups + 1] = { id = m.id, group_id = b.id + 4000000, business_id = b.id, identity_id = u.id,
                            identity_uuid = identity_uuid(u), role = m.role, active = true }
    permissions[b.account_id] = PERMISSIONS
    statuses[b.account_id] = "active"
  end
  local first = u.memberships[1] and state.businesses[u.memberships[1].business]
  local profession = first and { id = u.id + 7000, business_id = first.id, company = first.name,
    title = "Owner", designation = json.null } or json.null
  return {
    id = u.id, identity_id = u.id, identity_uuid = identity_uuid(u), identity_origin = "magnum",
    unconfirmed_email = json.null,
    first_name = u.first_name, last_name = u.last_name, email = u.email, language = "en",
    confirmed_at = "2024-01-15T09:30:00Z", created_at = "2024-01-15T09:29:00Z", setup_complete = true,
    phone_numbers = json.array { { title = "", phone_number = json.null } }, addresses = json.array(),
    profession = profession, business_memberships = memberships, roles = roles, permissions = permissions,
    groups = groups, subscription_statuses = statuses, integrations = {},
    links = { me = "/service/auth/api/v1/users?id=" .. u.id, roles = "/service/auth/api/v1/users/role/" .. u.id },
    profile = { setup_complete = true, first_name = u.first_name, last_name = u.last_name, phone_number = json.null,
                address = json.null, has_password = true,
                professions = json.array { profession ~= json.null and profession or nil } },
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
