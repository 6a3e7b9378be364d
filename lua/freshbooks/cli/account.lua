-- `freshbooks status`, `logout`, `profiles` and `use`: the login a profile holds. `describe` is also
-- what `login` prints at the end.
local cli = require "freshbooks.cli"
local config = require "freshbooks.cli.config"
local text = require "freshbooks.cli.text"
local number = require("freshbooks.query").number

local account = {}
local exit = cli.exit

local function idstr(v)
  if v == nil then return "?" end
  return type(v) == "number" and number(v) or text.clean(v)
end

local function name_of(me)
  local n = ((me.first_name or "") .. " " .. (me.last_name or "")):match("^%s*(.-)%s*$")
  return n ~= "" and n or nil
end

-- "Alice Sandbox <alice@example.com>" (cleaned)
function account.who(user)
  local n = user.name or name_of(user)
  return text.clean((n or "?") .. (user.email and (" <" .. user.email .. ">") or ""))
end

-- The user and their businesses (what the login record keeps of them). -> user, businesses, raw list
function account.identity(fb)
  local me, err = fb:me()
  if not me then cli.fail(err) end
  local list, lerr = fb:memberships()
  if not list then cli.fail(lerr) end
  local user = { identity_id = me.identity_id or me.id, name = name_of(me), email = me.email }
  local businesses = {}
  for i, m in ipairs(list) do
    businesses[i] = { name = m.name, account_id = m.account_id, business_id = m.business_id,
                      business_uuid = m.business_uuid, role = m.role }
  end
  return user, businesses
end

local function is_default(record, m)
  local d = record and record.business
  return d ~= nil and (idstr(d) == idstr(m.business_id) or idstr(d) == idstr(m.account_id))
end

-- Who is connected, and their businesses (text, on out).
function account.describe(out, user, businesses, record)
  out:write(("Connected to FreshBooks as %s (identity %s)\n"):format(account.who(user), idstr(user.identity_id)))
  if #businesses == 0 then out:write("  no businesses: this user belongs to none\n") end
  for _, m in ipairs(businesses) do
    out:write(("%s %-30s account_id %-8s business_id %-10s role %s\n"):format(is_default(record, m) and "*" or " ",
      text.clean(m.name or "?"), idstr(m.account_id), idstr(m.business_id), text.clean(tostring(m.role))))
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

function account.status(ctx)
  local fb, path = ctx:connected()
  local user, businesses = account.identity(fb)
  local t = fb:tokens() or {}
  local out = ctx:output()
  if ctx.args.json then
    for _, m in ipairs(businesses) do m.default = is_default(ctx.record, m) end
    local scopes = {}
    for sc in (t.scope or ""):gmatch("%S+") do scopes[#scopes + 1] = sc end
    out:write(text.json{ profile = ctx.profile, user = user, businesses = text.array(businesses),
      scopes = text.array(scopes), tokens = path, api_url = fb.api_url, auth_url = fb.auth_url,
      access_token_expires_at = t.expires_at and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t.expires_at)) or nil },
      "\n")
    return out:commit()
  end
  account.describe(out, user, businesses, ctx.record)
  local scopes, line = {}, {}
  for sc in (t.scope or "(not stated)"):gmatch("%S+") do
    if #table.concat(line, " ") + #sc > 84 then scopes[#scopes + 1] = table.concat(line, " "); line = {} end
    line[#line + 1] = sc
  end
  scopes[#scopes + 1] = table.concat(line, " ")
  out:write("Scopes:       ", text.clean(table.concat(scopes, "\n              "), true), "\n")
  out:write("Access token: expires ", expiry(t.expires_at), "\n")
  out:write("Profile:      ", ctx.profile, "\n")
  out:write("Tokens:       ", path, " (mode 0600)\n")
  out:write("API:          ", fb.api_url, "\n")
  out:commit()
end

-- Errors that say the grant is already dead: nothing left to revoke.
local GONE = { invalid_grant = true, invalid_token = true, unauthorized = true, reauth_required = true }

function account.logout(ctx)
  local fb, path = ctx:connected()
  fb:authorized()
  local t = fb:tokens() or {}
  local ok, err = ctx:revoke(fb)
  if not ok and not GONE[err.code] then
    cli.fail(err, "could not revoke the tokens at FreshBooks; they are kept at " .. path)
  end
  local removed, msg = os.remove(path)
  if not removed then exit(1, "revoked, but cannot remove %s: %s", path, msg) end
  os.remove(ctx.record_path)
  os.remove(path .. ".lock") -- left by earlier releases (the lock is the directory's now)
  if ok then
    ctx:note("revoked the refresh token (the grant) and the access token at FreshBooks, and removed %s. FreshBooks"
      .. " refuses both from now on; an access token it kept anyway would end at its expiry%s.", path,
      t.expires_at and (", " .. os.date("%Y-%m-%d %H:%M", math.floor(t.expires_at))) or " (12 hours at most)")
  else
    ctx:note("the grant was already gone at FreshBooks; removed %s", path)
  end
end

-- `freshbooks profiles`: every login kept side by side, from the files alone (no network).
function account.profiles(ctx)
  local cfg = ctx.cfg
  ctx:settings()
  local rows = {}
  for _, name in ipairs(cfg.profiles()) do
    local tokens = cfg.tokens_path(name)
    local record = cfg.read_record(config.record_path(tokens))
    local connected = cfg.check_private(tokens, "the token file")
    local default
    for _, m in ipairs(record and record.businesses or {}) do
      if is_default(record, m) then default = m.name end
    end
    rows[#rows + 1] = { name = name, active = name == ctx.profile, connected = connected,
      user = record and record.user, api_url = record and record.api_url, business = default, tokens = tokens }
  end
  local out = ctx:output()
  if ctx.args.json then
    out:write(text.json(text.array(rows)), "\n")
    return out:commit()
  end
  local lines = { { "", "PROFILE", "USER", "API", "DEFAULT BUSINESS" } }
  for _, r in ipairs(rows) do
    lines[#lines + 1] = { r.active and "*" or "", r.name,
      r.connected and (r.user and account.who(r.user) or "connected") or "not connected",
      r.api_url and text.clean(r.api_url) or (r.connected and config.DEFAULT_API_URL or ""),
      r.business and text.clean(r.business) or "" }
  end
  local cols = { {}, {}, { min = 12 }, { min = 12 }, { min = 8 } }
  local widths = text.grid(lines, cols, out.columns) or text.grid(lines, cols)
  for _, l in ipairs(lines) do out:write(text.row(l, cols, widths), "\n") end
  out:commit()
end

-- `freshbooks use [BUSINESS]`: the profile's default business, kept in its login record.
function account.use(ctx)
  local fb = ctx:connected()
  local key = ctx.args.business
  local user, businesses = account.identity(fb)
  local out = ctx:output()
  if not key then
    account.describe(out, user, businesses, ctx.record)
    if not (ctx.record and ctx.record.business) and #businesses > 1 then
      out:write("No default business yet: commands use the first. `freshbooks use NAME` chooses one.\n")
    end
    return out:commit()
  end
  local m = ctx:business(fb, key)
  ctx:save_record(user, businesses, { business = idstr(m.business_id) })
  out:write(("Default business of profile %s: %s (account_id %s, business_id %s)\n"):format(ctx.profile,
    text.clean(m.name or "?"), idstr(m.account_id), idstr(m.business_id)))
  out:commit()
end

return account
