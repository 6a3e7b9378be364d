-- Team members (docs: freshbooks.com/api/team-members, which supersede staff):
--   GET /auth/api/v1/businesses/{business_id}/team_members[?active=&page=&per_page=]
--       -> {"response": [member, ...], "meta": {"page", "per_page", "total"}}
--   GET /auth/api/v1/businesses/{business_id}/team_members/{uuid} -> {"response": member}
-- A business's team: the sandbox users who are members of it (active, with their identity), an
-- employee without a FreshBooks login, and an invitation not yet accepted. Built on request from the
-- users and the seed. Scope user:teams:read; errors in the identity family's {"error", "error_description"}.
local json = require "sandbox.json"
local state = require "sandbox.state"
local util = require "sandbox.util"
local data = require "sandbox.data"

local team = {}
local NULL = json.null
local T0 = data.TODAY * 86400 + 15 * 3600

local ROLE = { owner = "business_owner", admin = "business_admin" }

local function member(b, n, t)
  local created = T0 - 86400 * (400 - n * 37)
  return { uuid = data.uuid(state.opts.seed, b.id * 13 + 5, n), first_name = t.first_name, middle_name = NULL,
    last_name = t.last_name, email = t.email, job_title = t.job_title or NULL, street_1 = NULL, street_2 = NULL,
    city = t.city or NULL, province = NULL, country = t.country or NULL, postal_code = NULL,
    phone_number = NULL, business_id = b.id, business_role_name = t.role, active = t.active,
    identity_id = t.identity_id or NULL,
    invitation_date_accepted = t.accepted and (util.iso(created + 3600) .. "Z") or NULL,
    created_at = util.iso(created) .. "Z", updated_at = util.iso(created + 86400 * (n * 5)) .. "Z" }
end

-- The business's team, in a stable order.
function team.of(b)
  local out = {}
  for _, u in ipairs(state.users) do
    local m = state.member(u, b)
    if m then
      out[#out + 1] = member(b, #out + 1, { first_name = u.first_name, last_name = u.last_name, email = u.email,
        role = ROLE[m.role] or "business_employee", active = true, identity_id = u.id, accepted = true,
        country = "Canada" })
    end
  end
  local slug = b.account_id:lower()
  out[#out + 1] = member(b, #out + 1, { first_name = "Sam", last_name = "Field", job_title = "Technician",
    email = "sam.field@" .. slug .. ".example.com", role = "no_seat_employee", active = true,
    country = "United States" })
  out[#out + 1] = member(b, #out + 1, { first_name = "Pat", last_name = "Invited",
    email = "pat.invited@" .. slug .. ".example.com", role = "business_employee", active = false })
  return out
end

local function fail(status, code, description)
  return status, { error = code, error_description = description }
end

local function ctx_for(req, bid)
  return require("sandbox.resources").member_ctx(req, "identity", "user:teams:read", state.business_by_id(bid),
    "business")
end

local function list(req, bid)
  local ctx, s, b, h = ctx_for(req, bid)
  if not ctx then return s, b, h end
  local args = req.args
  local function num(name, default)
    local v = args[name]
    if type(v) == "table" then v = v[#v] end
    if v == nil then return default end
    if not tostring(v):match("^%d+$") then return nil end
    return tonumber(v)
  end
  local page, per_page = num("page", 1), num("per_page", 15)
  if not page then return fail(400, "invalid_request", "page must be a whole number.") end
  if not per_page then return fail(400, "invalid_request", "per_page must be a whole number.") end
  page, per_page = math.max(page, 1), math.min(math.max(per_page, 1), 100)
  local active = args.active
  if type(active) == "table" then active = active[#active] end
  if active ~= nil and active ~= "true" and active ~= "false" then
    return fail(400, "invalid_request", "active must be true or false.")
  end
  local matched = {}
  for _, m in ipairs(team.of(ctx.business)) do
    if active == nil or (active == "true") == m.active then matched[#matched + 1] = m end
  end
  local page_items = json.array()
  for i = (page - 1) * per_page + 1, math.min(#matched, page * per_page) do page_items[#page_items + 1] = matched[i] end
  return 200, { response = page_items, meta = { page = page, per_page = per_page, total = #matched } }
end

local function get(req, bid, uuid)
  local ctx, s, b, h = ctx_for(req, bid)
  if not ctx then return s, b, h end
  for _, m in ipairs(team.of(ctx.business)) do
    if m.uuid == uuid then return 200, { response = m } end
  end
  return fail(404, "not_found", "Team member not found.")
end

local BASE = "/auth/api/v1/businesses/(%d+)/team_members"
local NAME = "/auth/api/v1/businesses/{business_id}/team_members"
team.routes = {
  { method = "GET", path = BASE, name = NAME, handler = list },
  { method = "GET", path = BASE .. "/([^/]+)", name = NAME .. "/{uuid}", handler = get },
}

return team
