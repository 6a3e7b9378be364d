-- The accounting-business family: /accounting/businesses/{business_uuid}/ledger_accounts/accounts[/{uuid}]
-- (list, get, create, update; no delete). Keyed by the business's uuid, not its id. Bodies and answers
-- are {"data": ...}; errors {"errors": {"message", "status", "details": [{"reason", "metadata"}]}} with
-- every field error at once and HTTP 400, as the service's validation answers. The list is the whole
-- chart of accounts in one answer: it is not paged, and page/per_page are refused.
local json = require "sandbox.json"
local state = require "sandbox.state"
local http = require "sandbox.http"
local util = require "sandbox.util"
local data = require "sandbox.data"
local resources = require "sandbox.resources"

local ledger = {}
local NULL = json.null

local TYPES = {}
for t, subs in pairs(data.LEDGER_SUB_TYPES) do
  TYPES[t] = {}
  for _, s in ipairs(subs) do TYPES[t][s] = true end
end

-- problems: array of {field?, message}. -> status, body
local function fail(status, problems)
  local details = json.array()
  for i, p in ipairs(problems) do
    details[i] = { reason = p.field and (p.field .. ": " .. p.message) or p.message,
                   metadata = { field = p.field or NULL, message = p.message } }
  end
  return status, { errors = { message = "Request failed with status code " .. status, status = status,
                              details = details } }
end

local function not_found() return fail(404, { { message = "Not found." } }) end

local function account_json(rec)
  local subs = json.array()
  for i, u in ipairs(rec.sub_accounts) do subs[i] = u end
  return { uuid = rec.uuid, name = rec.name, number = rec.number or NULL, description = rec.description or "",
           type = rec.type, sub_type = rec.sub_type, system_account_name = rec.system_account_name or NULL,
           parent_account = rec.parent_account or NULL, sub_accounts = subs, auto_created = rec.auto_created,
           state = rec.state, updated_at = util.iso(rec.updated_t) .. ".000000Z" }
end

-- The caller's token, scope and membership of the business the uuid names (unknown: 403, as for ids).
local function business_ctx(req, uuid, write)
  local scope = "user:journal_entries:" .. (write and "write" or "read")
  local ctx, status, body, headers = resources.member_ctx(req, "accounting_business", scope,
    state.business_by_uuid(uuid), "business")
  if ctx then ctx.ledger = state.data.businesses[ctx.business.id].ledger end
  return ctx, status, body, headers
end

local function find(ctx, uuid)
  if not uuid:match("^%x+%-%x+%-%x+%-%x+%-%x+$") then return nil end
  return ctx.ledger.by_uuid[uuid]
end

local function list(req, buuid)
  local ctx, s, b, h = business_ctx(req, buuid, false)
  if not ctx then return s, b, h end
  for _, k in ipairs { "page", "per_page" } do
    if req.args[k] ~= nil then return fail(400, { { field = k, message = "This list is not paginated." } }) end
  end
  local out = json.array()
  for i, rec in ipairs(ctx.ledger.list) do out[i] = account_json(rec) end
  return 200, { data = out }
end

local function get(req, buuid, uuid)
  local ctx, s, b, h = business_ctx(req, buuid, false)
  if not ctx then return s, b, h end
  local rec = find(ctx, uuid)
  if not rec then return not_found() end
  return 200, { data = account_json(rec) }
end

-- The fields of `src` checked against the ledger (`rec` is the account being changed, nil on create).
-- -> the accepted values (false: set to null), or nil and every problem found.
local function validate(ctx, src, rec)
  local problems, v = {}, {}
  local function bad(field, message) problems[#problems + 1] = { field = field, message = message } end
  -- name, type, sub_type and state always hold a value; the first three must come on create.
  local function text(field, nullable)
    local x = src[field]
    if x == nil then
      if not rec and not nullable and field ~= "state" then bad(field, "This field is required.") end
    elseif x == NULL then
      if nullable then v[field] = false else bad(field, "This field may not be null.") end
    elseif type(x) ~= "string" then
      bad(field, "Not a valid string.")
    elseif not nullable and not x:find("%S") then
      bad(field, "This field may not be blank.")
    else
      v[field] = x
    end
  end
  for _, f in ipairs { "name", "type", "sub_type", "state" } do text(f, false) end
  text("number", true)
  text("description", true)
  local kind = v.type or (rec and rec.type)
  if v.type and not TYPES[v.type] then bad("type", ('"%s" is not a valid choice.'):format(v.type)) end
  local sub = v.sub_type or (rec and rec.sub_type)
  if TYPES[kind] and sub and not TYPES[kind][sub] and (v.type or v.sub_type) then
    bad("sub_type", ('"%s" is not a valid choice for %s accounts.'):format(sub, kind))
  end
  if rec and rec.auto_created and ((v.type and v.type ~= rec.type) or (v.sub_type and v.sub_type ~= rec.sub_type)) then
    bad(v.type and "type" or "sub_type", "A system account keeps its type and sub type.")
  end
  if rec and v.type and v.type ~= rec.type and rec.sub_accounts[1] then
    bad("type", "An account with sub-accounts keeps its type.")
  end
  if v.state and v.state ~= "active" and v.state ~= "inactive" then
    bad("state", ('"%s" is not a valid choice.'):format(v.state))
  end
  if v.number then
    for _, other in ipairs(ctx.ledger.list) do
      if other ~= rec and other.number == v.number then
        bad("number", "An account with this number already exists.")
        break
      end
    end
  end
  local parent = src.parent_account
  if parent ~= nil and parent ~= NULL then
    local p = type(parent) == "string" and find(ctx, parent)
    if not p then
      bad("parent_account", ('Invalid pk "%s" - object does not exist.'):format(tostring(parent)))
    elseif p == rec or p.parent_account then
      bad("parent_account", "A sub-account cannot be a parent account.")
    elseif rec and rec.sub_accounts[1] then
      bad("parent_account", "An account with sub-accounts cannot become a sub-account.")
    elseif TYPES[kind] and p.type ~= kind then
      bad("parent_account", "The parent account must be of the same type.")
    else
      v.parent_account = p
    end
  elseif parent == NULL then
    v.parent_account = false
  elseif rec and v.type and rec.parent_account and v.type ~= rec.type then
    bad("type", "A sub-account has the type of its parent account.")
  end
  if problems[1] then return nil, problems end
  return v
end

-- The request's {"data": {...}}; a body in another shape names the missing wrapper.
local function fields(req)
  local body = http.json_body(req)
  if type(body) ~= "table" then return nil, { { message = "JSON parse error." } } end
  if type(body.data) ~= "table" or body.data[1] ~= nil then
    return nil, { { field = "data", message = "This field is required." } }
  end
  return body.data
end

local function unlink(ctx, rec)
  local old = rec.parent_account and ctx.ledger.by_uuid[rec.parent_account]
  if not old then return end
  for i, u in ipairs(old.sub_accounts) do
    if u == rec.uuid then table.remove(old.sub_accounts, i) break end
  end
end

local function apply(ctx, rec, v)
  for _, k in ipairs { "name", "type", "sub_type", "number", "description", "state" } do
    if v[k] ~= nil then rec[k] = v[k] or nil end
  end
  if v.parent_account ~= nil then
    unlink(ctx, rec)
    rec.parent_account = v.parent_account and v.parent_account.uuid or nil
    if v.parent_account then
      local subs = v.parent_account.sub_accounts
      subs[#subs + 1] = rec.uuid
    end
  end
  rec.updated_t = state.now()
end

local function create(req, buuid)
  local ctx, s, b, h = business_ctx(req, buuid, true)
  if not ctx then return s, b, h end
  local src, problems = fields(req)
  if not src then return fail(400, problems) end
  local v
  v, problems = validate(ctx, src)
  if not v then return fail(400, problems) end
  local l = ctx.ledger
  l.seq = l.seq + 1
  local rec = { uuid = data.ledger_uuid(state.opts.seed, ctx.business.id, l.seq), sub_accounts = {},
                auto_created = false, state = "active" }
  apply(ctx, rec, v)
  l.list[#l.list + 1], l.by_uuid[rec.uuid] = rec, rec
  return 201, { data = account_json(rec) }
end

local function update(req, buuid, uuid)
  local ctx, s, b, h = business_ctx(req, buuid, true)
  if not ctx then return s, b, h end
  local rec = find(ctx, uuid)
  if not rec then return not_found() end
  local src, problems = fields(req)
  if not src then return fail(400, problems) end
  local v
  v, problems = validate(ctx, src, rec)
  if not v then return fail(400, problems) end
  apply(ctx, rec, v)
  return 200, { data = account_json(rec) }
end

local BASE = "/accounting/businesses/([^/]+)/ledger_accounts/accounts"
local NAME = "/accounting/businesses/{business_uuid}/ledger_accounts/accounts"
ledger.routes = {
  { method = "GET", path = BASE, name = NAME, handler = list },
  { method = "POST", path = BASE, name = NAME, handler = create },
  { method = "GET", path = BASE .. "/([^/]+)", name = NAME .. "/{uuid}", handler = get },
  { method = "PUT", path = BASE .. "/([^/]+)", name = NAME .. "/{uuid}", handler = update },
}

return ledger
