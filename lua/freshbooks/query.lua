-- Query rendering. Users write one shape for every family:
--   { page = 2, per_page = 100,
--     search = { customerid = 12,                      -- equals
--                invoiceids = { 1, 2 },                -- in-list
--                organization = { like = "Acme" },     -- like (FreshBooks' `_like` key)
--                amount = { min = "10", max = "99" },  -- between (`_min` / `_max` keys)
--                date_min = "2024-01-01" },            -- or FreshBooks' own key names
--     include = { "lines" }, sort = "-due_date",       -- "-" for descending
--     <other key> = value }                            -- passed through as a plain parameter
-- and each family renders it in its dialect (catalogue.families: `dialect`):
--   "accounting" (accounting, events, ...): search[k]=v, search[k][]=a, include[]=x, sort=f_asc / f_desc
--   "project" (projects, time tracking, services): plain k=v, k[]=a, include[]=x, sort=f / -f
-- Keys come out sorted (the core's order), every value percent-encoded. A string query is used as is.
local query = {}

local core = require "freshbooks.core"

-- A number as FreshBooks writes it: whole numbers without a fraction ("2", not "2.0", on Lua 5.4
-- and LuaJIT alike), the rest exactly (%.17g; inf and nan as C prints them, never an error). A Lua
-- 5.3+ integer keeps all its digits, also past 2^53 (the core's decoder gives ids as integers).
local math_type = math.type
function query.number(v)
  if math_type and math_type(v) == "integer" then return string.format("%d", v) end
  if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return string.format("%d", v) end
  return string.format("%.17g", v)
end

local function scalar(v, where)
  local t = type(v)
  if t == "string" or t == "boolean" then return v end
  if t == "number" then return query.number(v) end
  error(("freshbooks.query: %s: string, number or boolean expected, got %s"):format(where, t), 4)
end

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n > 0 and n == #t
end

-- One search entry -> zero or more {key, value} in FreshBooks' vocabulary.
local function expand(k, v, out)
  if type(v) ~= "table" then
    out[k] = scalar(v, "search." .. k)
  elseif is_array(v) then
    local list = {}
    for i, x in ipairs(v) do list[i] = scalar(x, "search." .. k) end
    out[k] = list
  else
    for op, x in pairs(v) do
      if op == "like" then out[k .. "_like"] = scalar(x, "search." .. k .. ".like")
      elseif op == "min" then out[k .. "_min"] = scalar(x, "search." .. k .. ".min")
      elseif op == "max" then out[k .. "_max"] = scalar(x, "search." .. k .. ".max")
      else
        error(("freshbooks.query: search.%s: unknown operator %q (like, min, max)"):format(k, tostring(op)), 4)
      end
    end
  end
end

local function sort_value(dialect, s)
  if type(s) ~= "string" or s == "" then error("freshbooks.query: sort must be a non-empty string", 4) end
  local desc, field = s:match("^(%-?)(.+)$")
  if dialect == "project" then return desc .. field end
  if desc == "" and (field:match("_asc$") or field:match("_desc$")) then return field end
  return field .. (desc == "-" and "_desc" or "_asc")
end

-- query.table(dialect, q) -> the nested table the core's query encoder takes.
function query.table(dialect, q)
  local t = {}
  for k, v in pairs(q) do
    if type(k) ~= "string" then error("freshbooks.query: keys must be strings", 3) end
    if k == "search" then
      if type(v) ~= "table" then error("freshbooks.query: search must be a table", 3) end
      local s = {}
      for sk, sv in pairs(v) do
        if type(sk) ~= "string" then error("freshbooks.query: search keys must be strings", 3) end
        expand(sk, sv, s)
      end
      if dialect == "project" then
        for sk, sv in pairs(s) do t[sk] = sv end
      else
        t.search = s
      end
    elseif k == "include" then
      local list = type(v) == "table" and v or { v }
      local inc = {}
      for i, x in ipairs(list) do inc[i] = scalar(x, "include") end
      t.include = inc
    elseif k == "sort" then
      t.sort = sort_value(dialect, v)
    elseif type(v) == "table" then
      local list = {}
      if not is_array(v) then error(("freshbooks.query: %s: scalar or array expected"):format(k), 3) end
      for i, x in ipairs(v) do list[i] = scalar(x, k) end
      t[k] = list
    else
      t[k] = scalar(v, k)
    end
  end
  return t
end

-- query.render(dialect, q) -> query string without "?" ("" when empty).
function query.render(dialect, q)
  if q == nil then return "" end
  if type(q) == "string" then return (q:gsub("^%?", "")) end
  if type(q) ~= "table" then error("freshbooks.query: table or string expected, got " .. type(q), 2) end
  return core.codec.query(query.table(dialect, q))
end

-- Copy of q with paging fields replaced (q may be nil).
function query.with(q, fields)
  local t = {}
  if q then for k, v in pairs(q) do t[k] = v end end
  for k, v in pairs(fields) do t[k] = v end
  return t
end

return query
