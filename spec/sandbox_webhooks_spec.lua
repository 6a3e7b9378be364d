-- Webhooks: verification delivery, signature, verify, events, resend. The sandbox delivers to its own
-- /_sandbox/inbox.
local sandbox = require "support.sandbox"

local function form_decode(s)
  local out = {}
  for part in s:gmatch("[^&]+") do
    local k, v = part:match("^([^=]*)=(.*)$")
    local function dec(x)
      return (x:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
    end
    out[#out + 1] = { dec(k), dec(v) }
  end
  return out
end

-- What FreshBooks signs: Python's json.dumps of the form dict (", " and ": ", ASCII only here).
local function python_json(pairs_)
  local items = {}
  for i, p in ipairs(pairs_) do items[i] = '"' .. p[1] .. '": "' .. p[2] .. '"' end
  return "{" .. table.concat(items, ", ") .. "}"
end

local function hmac_b64(key, msg)
  local f = os.tmpname()
  local h = io.open(f, "wb"); h:write(msg); h:close()
  local out = io.popen("openssl dgst -sha256 -binary -hmac " .. sandbox.shell_quote(key) .. " < " .. f
    .. " | openssl base64 -A"):read("*a")
  os.remove(f)
  return out
end

local function sleep(s) os.execute("sleep " .. s) end

describe("sandbox webhooks", function()
  local sb, auth
  local E = "/events/account/aBcD1/events/callbacks"
  local function inbox()
    for _ = 1, 50 do
      local items = sb:admin("GET", "/_sandbox/inbox").inbox
      if #items > 0 then return items end
      sleep(0.05)
    end
    return {}
  end

  setup(function()
    sb = sandbox.start{ invoices = 5 }
    auth = { Authorization = "Bearer " .. sb:token().access_token }
  end)
  teardown(function() sb:stop() end)

  it("verifies, signs, delivers events and resends", function()
    local r = sb:http{ method = "POST", path = E, headers = auth,
      json = { callback = { event = "invoice.create", uri = sb.url .. "/_sandbox/inbox" } } }
    assert.equals(200, r.status)
    local cb = r.json.response.result.callback
    assert.is_false(cb.verified)
    local got = inbox()
    assert.equals(1, #got)
    local d = got[1]
    assert.equals("application/x-www-form-urlencoded", d.headers["content-type"])
    local fields = form_decode(d.body)
    local names = {}
    for i, p in ipairs(fields) do names[i] = p[1] end
    assert.same({ "name", "object_id", "account_id", "business_id", "identity_id", "user_id", "verifier" }, names)
    assert.equals("callback.verify", fields[1][2])
    local verifier = fields[7][2]
    assert.equals(hmac_b64(verifier, python_json(fields)), d.headers["x-freshbooks-hmac-sha256"])
    -- the compact JSON (no spaces) must NOT be what is signed
    local compact = python_json(fields):gsub('", "', '","'):gsub('": "', '":"')
    assert.is_true(hmac_b64(verifier, compact) ~= d.headers["x-freshbooks-hmac-sha256"])

    -- wrong verifier, then the right one
    r = sb:http{ method = "PUT", path = E .. "/" .. cb.callbackid, headers = auth,
                 json = { callback = { verifier = "x" } } }
    assert.equals(422, r.status)
    assert.equals(422, r.json.errno)
    r = sb:http{ method = "PUT", path = E .. "/" .. cb.callbackid, headers = auth,
      json = { callback = { verifier = verifier } } }
    assert.is_true(r.json.response.result.callback.verified)

    -- an event delivers name/object_id/account_id/business_id/identity_id/user_id, signed
    sb:admin("DELETE", "/_sandbox/inbox")
    r = sb:http{ method = "POST", path = "/accounting/account/aBcD1/invoices/invoices", headers = auth,
      json = { invoice = { customerid = 10001, create_date = "2025-07-01" } } }
    local inv = r.json.response.result.invoice
    got = inbox()
    assert.equals(1, #got)
    fields = form_decode(got[1].body)
    assert.same({ "name", "invoice.create" }, fields[1])
    assert.same({ "object_id", tostring(inv.id) }, fields[2])
    assert.same({ "account_id", "aBcD1" }, fields[3])
    assert.same({ "business_id", "1000001" }, fields[4])
    assert.same({ "identity_id", "1001" }, fields[5])
    assert.equals(hmac_b64(verifier, python_json(fields)), got[1].headers["x-freshbooks-hmac-sha256"])

    -- resend: a new verification with a new verifier, unverified until confirmed
    sb:admin("DELETE", "/_sandbox/inbox")
    r = sb:http{ method = "PUT", path = E .. "/" .. cb.callbackid, headers = auth,
                 json = { callback = { resend = true } } }
    assert.is_false(r.json.response.result.callback.verified)
    got = inbox()
    fields = form_decode(got[1].body)
    assert.equals("callback.verify", fields[1][2])
    assert.is_true(fields[7][2] ~= verifier)

    -- list and delete
    r = sb:http{ path = E, headers = auth }
    assert.equals(1, r.json.response.result.total)
    r = sb:http{ method = "DELETE", path = E .. "/" .. cb.callbackid, headers = auth }
    assert.equals(200, r.status)
    assert.equals(0, sb:http{ path = E, headers = auth }.json.response.result.total)
  end)

  it("rejects bad callbacks with the events error shape", function()
    local r = sb:http{ method = "POST", path = E, headers = auth, json = { callback = { event = "invoice.create",
      uri = "not a uri" } } }
    assert.equals(422, r.status)
    assert.equals(422, r.json.errno)
    assert.is_table(r.json.details)
  end)
end)
