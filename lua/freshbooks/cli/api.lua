-- `freshbooks api METHOD PATH`: one authenticated request to any path, like `gh api`. Piped or
-- redirected the body is FreshBooks' exactly; on a terminal JSON is indented (and, like everything on a
-- terminal, cleaned of control characters).
local catalogue = require "freshbooks.catalogue"
local cli = require "freshbooks.cli"
local text = require "freshbooks.cli.text"
local number = require("freshbooks.query").number

local api = {}
local exit = cli.exit

local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }

-- key=value pairs -> table (a repeated key becomes a list)
function api.key_values(list, option, key_pattern)
  local t = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k or not k:match(key_pattern) then
      exit(2, "%s expects key=value, got '%s'", option, text.clean(kv))
    end
    if t[k] == nil then t[k] = v
    elseif type(t[k]) == "table" then table.insert(t[k], v)
    else t[k] = { t[k], v } end
  end
  return t
end

local MAX_DATA = 16777216 -- 16 MiB
local function body(data)
  if not data then return nil end
  local s = data
  if data:sub(1, 1) == "@" then
    local file = data:sub(2)
    local f, msg = io.stdin, nil
    if file ~= "-" then f, msg = io.open(file, "rb") end
    if not f then exit(2, "--data: cannot read %s", msg) end
    s = f:read(MAX_DATA + 1) or "" -- bounded: @/dev/zero must not eat the memory
    if f ~= io.stdin then f:close() end
    if #s > MAX_DATA then exit(2, "--data: %s is over 16 MiB", file) end
  end
  if require("freshbooks.core").json_decode(s) == nil then
    exit(2, "--data is not valid JSON (%s)", text.clean(select(2, require("cjson.safe").decode(s)) or "?"))
  end
  return s
end

-- The placeholders PATH may hold, each an id of the business (catalogue.owners: the owners' keys).
local function placeholders()
  local names = {}
  for _, field in pairs(catalogue.owners) do names[#names + 1] = field end
  table.sort(names)
  return names
end

function api.api(ctx)
  local a = ctx.args
  local method = a.method:upper()
  if not METHODS[method] then exit(2, "unknown method '%s': GET, POST, PUT, PATCH or DELETE", text.clean(a.method)) end
  if a.path:sub(1, 1) ~= "/" or a.path:find("[%s%c]") then
    exit(2, "PATH must start with / (it is relative to the API URL), e.g. /auth/api/v1/users/me")
  end
  -- Every {name} must be a placeholder we fill: sent as is, FreshBooks answers 403 or 404, for a typo.
  local known = {}
  for _, f in ipairs(placeholders()) do known[f] = true end
  for name in a.path:gmatch("{([^}]*)}") do
    if not known[name] then
      local guess = text.suggest(name, placeholders())
      exit(2, "PATH holds {%s}, which is not a placeholder%s; the placeholders: {%s}", text.clean(name),
        guess and ("; did you mean {" .. guess .. "}?") or "", table.concat(placeholders(), "}, {"))
    end
  end
  local query = api.key_values(a.query, "--query", "^[%w_%.%-%[%]]+$")
  local data = body(a.data)
  local fb = ctx:connected()
  local path, biz = a.path, nil
  for _, field in ipairs(placeholders()) do
    if path:find("{" .. field .. "}", 1, true) then
      biz = biz or ctx:business(fb, a.business)
      local v = biz[field]
      if v == nil then exit(1, "the business %s has no %s", text.clean(biz.name or "?"), field) end
      path = path:gsub("{" .. field .. "}", function() return type(v) == "number" and number(v) or tostring(v) end)
    end
  end
  local res, err = fb:request{ method = method, path = path, query = next(query) and query or nil, body = data }
  if not res then cli.fail(err) end
  local out = ctx:output()
  local b = res.body or ""
  if b ~= "" then
    if out.terminal then b = text.pretty_json(b) or b end
    out:write(b, b:sub(-1) == "\n" and "" or "\n")
  end
  out:commit()
end

return api
