-- Who the user is and which businesses they belong to: GET /auth/api/v1/users/me, cached per session
-- until its tokens change hands (identity.forget). The session's methods (fb:me, ...) call these.
-- In a membership, business.id is the business_id (project family) and business.account_id the
-- account_id (accounting family); the membership's own id is neither.
local errors = require "freshbooks.errors"
local number = require("freshbooks.query").number

local identity = {}

local cache = setmetatable({}, { __mode = "k" }) -- session -> its users/me answer

-- identity.forget(fb): a new grant (or none) may be another user.
function identity.forget(fb) cache[fb] = nil end

-- identity.me(fb, refresh?) -> the identity table (the response's `response` object) | nil, err
function identity.me(fb, refresh)
  if cache[fb] and not refresh then return cache[fb] end
  local res, err = fb:request{ method = "GET", path = "/auth/api/v1/users/me" }
  if not res then return nil, err end
  local me = type(res.data) == "table" and res.data.response
  if type(me) ~= "table" then
    return nil, errors.new{ code = "bad_response", status = res.status,
      message = "users/me answered without a response object" }
  end
  cache[fb] = me
  return me
end

local function membership(m)
  local b = type(m.business) == "table" and m.business or {}
  return {
    account_id = b.account_id,
    business_id = b.id,
    business_uuid = b.business_uuid,
    name = b.name,
    role = m.role,
    membership_id = m.id,
    business = b,
  }
end

-- identity.memberships(fb, refresh?) -> array of memberships | nil, err
function identity.memberships(fb, refresh)
  local me, err = identity.me(fb, refresh)
  if not me then return nil, err end
  local out = {}
  local list = type(me.business_memberships) == "table" and me.business_memberships or {}
  for _, m in ipairs(list) do
    if type(m) == "table" then out[#out + 1] = membership(m) end
  end
  return out
end

-- for m, err in fb:businesses() do ... end: on a failure to read the identity the loop gets
-- (false, err) once and ends, as each() does (a nil would end the loop before its body saw the error).
function identity.businesses(fb, refresh)
  local list, err = identity.memberships(fb, refresh)
  local i = 0
  return function()
    if not list then
      if not err then return nil end
      local e = err
      err = nil
      return false, e
    end
    i = i + 1
    return list[i]
  end
end

-- Ids compare as strings; JSON numbers may decode as floats (12345.0) under Lua 5.4.
local function idstr(v)
  if type(v) == "number" then return number(v) end
  if type(v) == "string" then return v end
end

-- identity.find_business(fb, name_or_id, level) -> membership | nil, err: identity.match over the
-- session's memberships.
function identity.find_business(fb, key, level)
  if type(key) ~= "string" and type(key) ~= "number" then
    error("freshbooks: find_business: expected a business name or id", level + 1)
  end
  local list, err = identity.memberships(fb)
  if not list then return nil, err end
  return identity.match(list, key)
end

-- identity.match(memberships, name_or_id) -> membership | nil, err. Matches business_id, account_id or
-- business_uuid exactly, else the name (exact first, then case-insensitive). Guest runs match over the
-- memberships they may use.
function identity.match(list, key)
  local s = idstr(key)
  -- An id that names two businesses (a business_id that is another's account_id, one id listed with
  -- two account_ids) is ambiguous: the first hit would mix their accounting and projects.
  local found
  for _, m in ipairs(list) do
    if idstr(m.business_id) == s or idstr(m.account_id) == s or m.business_uuid == s then
      if found and (idstr(found.business_id) ~= idstr(m.business_id)
        or idstr(found.account_id) ~= idstr(m.account_id) or found.business_uuid ~= m.business_uuid) then
        return nil, errors.new{ code = "ambiguous", message = "several businesses match the id '" .. s .. "'" }
      end
      found = found or m
    end
  end
  if found then return found end
  local function by_name(eq)
    local hit
    for _, m in ipairs(list) do
      if type(m.name) == "string" and eq(m.name) then
        if hit then
          return nil, errors.new{ code = "ambiguous", message = "several businesses are named '" .. s .. "'" }
        end
        hit = m
      end
    end
    return hit
  end
  local m, aerr = by_name(function(n) return n == s end)
  if m or aerr then return m, aerr end
  m, aerr = by_name(function(n) return n:lower() == s:lower() end)
  if m or aerr then return m, aerr end
  return nil, errors.new{ code = "not_found", message = "no business matches '" .. s .. "'" }
end

return identity
