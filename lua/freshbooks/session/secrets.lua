-- A session's secrets, and the masking of everything that leaves the session: errors, log events and
-- fb:redact. The secrets are the app's client secret and every token the session has held (current,
-- pending, spent, stored): they are masked by exact value; redact.scrub's look-alike masking stays as
-- the second net. `p` below is a session's private state (session.lua).
local errors = require "freshbooks.errors"
local redaction = require "freshbooks.redact"

local secrets = {}

-- Tokens that left the current pair (rotated, refused, forgotten) stay masked: at most this many,
-- oldest first out. The current and pending pairs and the client secret are always masked; a
-- session whose tokens never changed holds no list at all.
local MAX_REMEMBERED = 32

-- secrets.remember(p, pair): its tokens stay masked whatever becomes of the pair.
function secrets.remember(p, t)
  if type(t) ~= "table" then return end
  for _, k in ipairs{ "access_token", "refresh_token" } do
    local v = t[k]
    if type(v) == "string" and v ~= "" then
      local list = p.remembered
      if not list then list = {} p.remembered = list end
      local known = false
      for _, s in ipairs(list) do if s == v then known = true break end end
      if not known then
        if #list >= MAX_REMEMBERED then table.remove(list, 1) end
        list[#list + 1] = v
      end
    end
  end
end

-- Every value to mask, the client secret first.
local function values(p)
  local out = { p.app.client_secret }
  for _, t in ipairs{ p.tokens, p.pending } do
    if t ~= nil then out[#out + 1], out[#out + 2] = t.access_token, t.refresh_token end
  end
  for _, v in ipairs(p.remembered or {}) do out[#out + 1] = v end
  return out
end

local function mask_string(s, list)
  return redaction.scrub(redaction.mask(s, list))
end

-- errors.new cuts a long message at 1 KiB before a session masks its secrets by value: a secret the
-- cut went through leaves its head before the "...", which no exact match finds: that head is cut too.
local function uncut(list, s)
  if #s < errors.MAX_MESSAGE then return s end
  return redaction.uncut(s, list)
end

-- Strings, and the text fields of an error (its message, field errors and cause), masked.
local function redact(list, v, depth)
  if type(v) == "string" then return mask_string(v, list) end
  if not errors.is(v) or depth > 3 then return v end
  v.message = mask_string(uncut(list, v.message or ""), list)
  if type(v.oauth_error) == "string" then v.oauth_error = mask_string(v.oauth_error, list) end
  for _, fe in ipairs(type(v.errors) == "table" and v.errors or {}) do
    if type(fe) == "table" then
      for _, k in ipairs{ "field", "message", "value", "object" } do
        if type(fe[k]) == "string" then fe[k] = mask_string(fe[k], list) end
      end
    end
  end
  if v.cause ~= nil then v.cause = redact(list, v.cause, depth + 1) end
  if type(v.cause) == "table" and not errors.is(v.cause) then v.cause = nil end -- a hook's own value
  return v
end

-- secrets.redact(p, v) -> v (a string or an error) with the session's secrets masked.
function secrets.redact(p, v)
  return redact(values(p), v, 0)
end

-- secrets.mask(p, s, exact) -> s masked: fb:redact (exact: the secrets only, for data such as UUIDs).
function secrets.mask(p, s, exact)
  if exact then return redaction.mask(s, values(p)) end
  return mask_string(s, values(p))
end

-- secrets.log(p, event): the log hook, on a coroutine of its own (an error, or a yield that would
-- suspend the caller's refresh forever, ends there), seeing string fields with the secrets masked.
function secrets.log(p, event)
  local hook = p.log
  if not hook then return end
  local list = values(p)
  local clean = {}
  for k, v in pairs(event) do clean[k] = type(v) == "string" and mask_string(v, list) or v end
  coroutine.resume(coroutine.create(hook), clean)
end

return secrets
