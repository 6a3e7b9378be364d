-- `freshbooks status`, `logout`, `report` and `api`; `describe` is also what `login` prints at the end.
local cjson = require "cjson.safe"
local catalogue = require "freshbooks.catalogue"
local cli = require "freshbooks.cli"
local number = require("freshbooks.query").number

local commands = {}
local exit = cli.exit

local function idstr(v)
  return type(v) == "number" and number(v) or tostring(v)
end

-- Who is connected, and their businesses (stdout).
function commands.describe(fb, out)
  local me, err = fb:me()
  if not me then cli.fail(err) end
  local list = assert(fb:memberships())
  local name = ((me.first_name or "") .. " " .. (me.last_name or "")):match("^%s*(.-)%s*$")
  out:write(("Connected to FreshBooks as %s%s (identity %s)\n"):format(name ~= "" and name or "?",
    me.email and (" <" .. me.email .. ">") or "", idstr(me.identity_id or me.id)))
  if #list == 0 then out:write("  no businesses: this user belongs to none\n") end
  for _, m in ipairs(list) do
    out:write(("  %-30s account_id %-8s business_id %-10s role %s\n"):format(m.name or "?", idstr(m.account_id),
      idstr(m.business_id), tostring(m.role)))
  end
end

local function expiry(t)
  if not t then return "unknown" end
  local left = t - os.time()
  local when = os.date("%Y-%m-%d %H:%M", math.floor(t))
  if left <= 0 then return when .. " (expired: the next call refreshes it)" end
  return ("%s (in %dh %02dm; refreshed automatically)"):format(when, math.floor(left / 3600),
    math.floor(left / 60) % 60)
end

function commands.status(ctx)
  local fb, path = ctx:connected()
  local out = ctx:output()
  commands.describe(fb, out)
  local t = fb:tokens() or {}
  local scopes, line = {}, {}
  for sc in (t.scope or "(not stated)"):gmatch("%S+") do
    if #table.concat(line, " ") + #sc > 84 then scopes[#scopes + 1] = table.concat(line, " "); line = {} end
    line[#line + 1] = sc
  end
  scopes[#scopes + 1] = table.concat(line, " ")
  out:write("Scopes:       ", table.concat(scopes, "\n              "), "\n")
  out:write("Access token: expires ", expiry(t.expires_at), "\n")
  out:write("Tokens:       ", path, " (mode 0600)\n")
  out:write("API:          ", fb.api_url, "\n")
  out:commit()
end

-- Errors that say the grant is already dead: nothing left to revoke.
local GONE = { invalid_grant = true, invalid_token = true, unauthorized = true, reauth_required = true }

function commands.logout(ctx)
  local fb, path = ctx:connected()
  local ok, err = fb:revoke()
  if not ok and not GONE[err.code] then
    cli.fail(err, "could not revoke the grant at FreshBooks; the tokens are kept at " .. path)
  end
  local removed, msg = os.remove(path)
  if not removed then exit(1, "revoked, but cannot remove %s: %s", path, msg) end
  os.remove(path .. ".lock") -- left by earlier releases (the lock is the directory's now)
  ctx:note(ok and "revoked at FreshBooks; removed %s" or "the grant was already gone; removed %s", path)
end

function commands.report(ctx)
  local a = ctx.args
  local report = require "freshbooks.report"
  if a.as_of and not require("freshbooks.date").exact(a.as_of) then exit(2, "--as-of must be a date YYYY-MM-DD") end
  local fb = ctx:connected()
  local out = ctx:output()
  local now = require("freshbooks.core").clock.now
  -- One bar per business; each() reports first after a business's first page, so it starts from the
  -- end of the previous business.
  local bar, since = nil, now()
  local ok, err = report.run(fb, { as_of = a.as_of, business = a.business, format = a.format, parallel = a.parallel,
    progress = function(i, n, biz, done, pages, invoices)
      if done == 1 then bar = ctx:progress(out, ("[%d/%d] %s"):format(i, n, biz.name or "?"), since) end
      if bar then bar.update(done, pages, invoices) end
      if done == pages then
        if bar then bar.finish() end
        bar, since = nil, now()
      end
    end }, out, function(line)
      if bar then bar.abort() bar = nil end
      ctx:note("%s", line)
    end)
  if bar then bar.abort() end
  if not ok then cli.fail(err) end
  out:commit()
end

local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }

-- key=value pairs -> table (a repeated key becomes a list)
function commands.key_values(list, option, key_pattern)
  local t = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k or not k:match(key_pattern) then
      exit(2, "%s expects key=value, got '%s'", option, kv)
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
  local text = data
  if data:sub(1, 1) == "@" then
    local file = data:sub(2)
    local f, msg = io.stdin, nil
    if file ~= "-" then f, msg = io.open(file, "rb") end
    if not f then exit(2, "--data: cannot read %s", msg) end
    text = f:read(MAX_DATA + 1) or "" -- bounded: @/dev/zero must not eat the memory
    if f ~= io.stdin then f:close() end
    if #text > MAX_DATA then exit(2, "--data: %s is over 16 MiB", file) end
  end
  local ok, err = cjson.decode(text)
  if ok == nil then exit(2, "--data is not valid JSON (%s)", err) end
  return text
end

function commands.api(ctx)
  local a = ctx.args
  local method = a.method:upper()
  if not METHODS[method] then exit(2, "unknown method '%s': GET, POST, PUT, PATCH or DELETE", a.method) end
  if a.path:sub(1, 1) ~= "/" or a.path:find("[%s%c]") then
    exit(2, "PATH must start with / (it is relative to the API URL), e.g. /auth/api/v1/users/me")
  end
  local query = commands.key_values(a.query, "--query", "^[%w_%.%-%[%]]+$")
  local data = body(a.data)
  local fb = ctx:connected()
  -- {account_id}, {business_id}, {business_uuid}: the ids of --business (each owner's key, catalogue.owners)
  local path, biz = a.path, nil
  for _, field in pairs(catalogue.owners) do
    if path:find("{" .. field .. "}", 1, true) then
      biz = biz or ctx:business(fb, a.business)
      path = path:gsub("{" .. field .. "}", function() return idstr(biz[field]) end)
    end
  end
  local res, err = fb:request{ method = method, path = path, query = next(query) and query or nil, body = data }
  if not res then cli.fail(err) end
  local out = ctx:output()
  if res.body and res.body ~= "" then
    out:write(res.body, res.body:sub(-1) == "\n" and "" or "\n")
  end
  out:commit()
end

return commands
