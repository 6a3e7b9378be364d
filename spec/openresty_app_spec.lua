-- examples/openresty: the example application, its location blocks taken from its own nginx.conf, run
-- in a real nginx against the sandbox: connect -> consent -> callback -> outstanding.
local cjson = require "cjson"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"
local H = require "support.fbtest"
local report = require "freshbooks.report"

-- The example's own location blocks, so the spec runs what the example shows.
local function example_locations()
  local f = assert(io.open("examples/openresty/nginx.conf"))
  local conf = f:read("*a")
  f:close()
  local out = {}
  for line in conf:gmatch("[^\n]+") do
    if line:match("^%s*location ") then out[#out + 1] = line end
  end
  assert(#out == 6, "expected the six locations of the example")
  return table.concat(out, "\n")
end

describe("the OpenResty example application", function()
  local sb, app, client, dir
  setup(function()
    sb = sandbox.start{ invoices = 120 }
    dir = H.tmpdir()
    local cfg = ("{ client_id = %q, client_secret = %q, redirect_uri = %q, tokens_file = %q, api_url = %q," ..
      " auth_url = %q }"):format(sb.app.client_id,
      sb.app.client_secret, sb.app.redirect_uri, dir .. "/tokens.json", sb.url, sb.auth_url)
    app = testserver.start{
      http = table.concat({
        testserver.lua_paths{ "examples/openresty" },
        "lua_shared_dict freshbooks 1m;",
        "init_by_lua_block { require('app').configure(" .. cfg .. ") }",
      }, "\n  "),
      locations = example_locations(),
    }
    client = core.client{ timeout = 20 }
  end)
  teardown(function()
    if client then client:close() end
    if app then app.stop() end
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  local function get(path, headers)
    local status, hdrs, body = client:request{ method = "GET", url = app.url .. path, headers = headers }
    assert(status, tostring(hdrs and hdrs.message))
    return status, hdrs, body
  end

  it("refuses a callback whose state does not match the cookie", function()
    local status, _, body = get("/callback?code=abc&state=forged", { Cookie = "fb_state=mine" })
    assert.equal(400, status)
    assert.equal("state_mismatch", cjson.decode(body).error)
  end)

  it("connects an account and serves its outstanding invoices", function()
    -- 1. /connect: a redirect to the sandbox's authorize page, the state in a cookie.
    local status, hdrs = get("/connect")
    assert.equal(302, status)
    local state = hdrs["set-cookie"]:match("fb_state=([%x]+)")
    assert.truthy(state)
    assert.truthy(hdrs.location:find(sb.url, 1, true) == 1)
    -- 2. The browser at FreshBooks (auto-consent) comes back to the registered redirect URI; here that
    --    URI's path and query are delivered to the app.
    local back = H.consent(sb, hdrs.location)
    local query = back:match("%?(.*)$")
    assert.truthy(back:find(sb.app.redirect_uri, 1, true) == 1)
    local _, cb_body
    status, _, cb_body = get("/callback?" .. query, { Cookie = "fb_state=" .. state })
    assert.equal(200, status, cb_body)
    assert.truthy(H.read(dir .. "/tokens.json"):find("refresh_token", 1, true))
    -- 3. The report, computed in nginx, equals the same report computed here from the same data.
    local body
    status, _, body = get("/outstanding?as_of=2025-06-30")
    assert.equal(200, status, body)
    local got = cjson.decode(body)
    assert.equal(2, #got.businesses)
    local fb = H.session(sb)
    for _, b in ipairs(got.businesses) do
      local acc = report.accumulator(report.day_number("2025-06-30"))
      for inv in fb:account(b.account_id).invoices:each() do acc.add(inv) end
      local want = {}
      for _, t in ipairs(acc.currency_totals()) do
        want[#want + 1] = { t.currency, t.invoices, report.format_money(t.outstanding) }
      end
      local have = {}
      for _, t in ipairs(b.totals) do have[#have + 1] = { t.currency, t.invoices, t.outstanding } end
      assert.same(want, have)
      assert.is_true(#have > 0)
    end
  end)

  local function poll(what, f)
    for _ = 1, 250 do
      local v = f()
      if v then return v end
      os.execute("sleep 0.02")
    end
    error("timed out waiting for " .. what)
  end

  it("subscribes to webhooks, confirms the verifier with FreshBooks, and accepts only signed events", function()
    -- Runs after the connect test: the app holds tokens. Register the app's /webhook for invoice.create.
    local status, _, body = client:request{ method = "POST", url = app.url .. "/subscribe?event=invoice.create" }
    assert.equal(200, status, body)
    local cb = cjson.decode(body)
    local cb_id = ("%d"):format(cb.callback_id) -- (cjson under Lua 5.4 decodes numbers as floats)
    local fb = H.session(sb)
    local acct = fb:account("aBcD1")
    -- The sandbox sent the verification delivery; the app confirmed it with FreshBooks.
    poll("the callback to be verified", function()
      local rec = assert(acct.callbacks:get(cb_id))
      return rec.verified
    end)
    -- A real event, signed by the sandbox with the verifier, reaches the app's event list.
    local inv = assert(acct.invoices:create{ customerid = 10001, create_date = "2025-07-01",
      lines = { { name = "Work", qty = 1, unit_cost = { amount = "10.00", code = "USD" } } } })
    local seen = poll("the invoice.create event", function()
      local _, _, ev = client:request{ method = "GET", url = app.url .. "/events" }
      for _, e in ipairs(cjson.decode(ev).events) do
        if e.name == "invoice.create" and tonumber(e.object_id) == inv.id then return e end
      end
    end)
    assert.equal("aBcD1", seen.account_id)
    -- A forged delivery (right fields, wrong signature) is refused and not recorded.
    local forged = "name=invoice.create&object_id=424242&account_id=aBcD1&business_id=1000001"
    status = client:request{ method = "POST", url = app.url .. "/webhook", body = forged,
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded",
                  ["X-FreshBooks-Hmac-SHA256"] = core.base64(string.rep("x", 32)) } }
    assert.equal(401, status)
    local _, _, ev = client:request{ method = "GET", url = app.url .. "/events" }
    for _, e in ipairs(cjson.decode(ev).events) do assert.are_not.equal("424242", e.object_id) end
    -- A forged verification is answered (as FreshBooks expects) but never becomes a trusted verifier:
    -- FreshBooks refuses it, so an event signed with it is still refused.
    local since = H.last_seq(sb)
    status = client:request{ method = "POST", url = app.url .. "/webhook",
      body = "name=callback.verify&object_id=" .. cb_id .. "&account_id=aBcD1&verifier=attacker",
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }
    assert.equal(200, status)
    poll("the app to try the forged verifier with FreshBooks", function()
      for _, e in ipairs(H.log(sb, since)) do
        if e.method == "PUT" and e.path:find("callbacks/" .. cb_id .. "$") then
          assert.equal(422, e.status)
          return true
        end
      end
    end)
    local webhook = require "freshbooks.webhook"
    status = client:request{ method = "POST", url = app.url .. "/webhook", body = forged,
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded",
                  ["X-FreshBooks-Hmac-SHA256"] = webhook.sign("attacker", forged) } }
    assert.equal(401, status)
  end)
end)
