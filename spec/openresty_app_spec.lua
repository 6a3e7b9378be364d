-- examples/openresty: the example application, its location blocks taken from its own nginx.conf, run
-- in a real nginx (2 workers) with a real Redis against the sandbox: each signed-in user connects their
-- own FreshBooks (connect -> consent -> callback -> outstanding), webhooks, disconnect.
local cjson = require "cjson"
local core = require "freshbooks.core"
local R = require "support.redis"
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
  assert(#out == 9, "expected the nine locations of the example")
  return table.concat(out, "\n")
end

describe("the OpenResty example application", function()
  local sb, app, client, srv
  setup(function()
    sb = sandbox.start{ invoices = 120 }
    srv = R.start{}
    local cfg = ("{ client_id = %q, client_secret = %q, redirect_uri = %q, session_secret = %q, redis_port = %d,"
      .. " api_url = %q, auth_url = %q }"):format(sb.app.client_id, sb.app.client_secret, sb.app.redirect_uri,
      core.codec.hex(core.crypto.random_bytes(32)), srv.port, sb.url, sb.auth_url)
    app = testserver.start{
      workers = 2, -- /connect and /callback may land on different workers: the state lives in Redis
      http = table.concat({
        testserver.lua_paths{ "examples/openresty", "build/deps/lua" },
        "lua_shared_dict freshbooks 1m;",
        "init_by_lua_block { require('app').configure(" .. cfg .. ") }",
      }, "\n  "),
      locations = example_locations(),
    }
    client = core.http.client{ timeout = 20 }
  end)
  teardown(function()
    if client then client:close() end
    if app then app.stop() end
    if sb then sb:stop() end
    if srv then srv:stop() end
  end)

  local function request(method, path, headers)
    local status, hdrs, body = client:request{ method = method, url = app.url .. path, headers = headers }
    assert(status, tostring(hdrs and hdrs.message))
    return status, hdrs, body
  end
  local function get(path, headers) return request("GET", path, headers) end

  -- The app's own sign-in cookie for `name`.
  local cookies = {}
  local function signin(name)
    if not cookies[name] then
      local status, hdrs = get("/signin?user=" .. name)
      assert.equal(200, status)
      cookies[name] = hdrs["set-cookie"]:match("^(app_user=[^;]+)")
    end
    return cookies[name]
  end

  -- /connect as `name`, the consent of FreshBooks user `fb_user` -> the callback's query and the state cookie.
  local function connect(name, fb_user)
    local status, hdrs = get("/connect", { Cookie = signin(name) })
    assert.equal(302, status)
    local state = hdrs["set-cookie"]:match("fb_state=([%x]+)")
    assert.truthy(state)
    assert.truthy(hdrs.location:find(sb.url, 1, true) == 1)
    -- The browser at FreshBooks (auto-consent) comes back to the registered redirect URI; here that
    -- URI's path and query are delivered to the app.
    local back = H.consent(sb, hdrs.location .. (fb_user and ("&user=" .. fb_user) or ""))
    assert.truthy(back:find(sb.app.redirect_uri, 1, true) == 1)
    return back:match("%?(.*)$"), "fb_state=" .. state
  end
  local function callback(name, query, state_cookie)
    return get("/callback?" .. query, { Cookie = signin(name) .. "; " .. state_cookie })
  end

  it("refuses a callback whose state does not match the cookie, and anyone not signed in", function()
    local status, _, body = get("/callback?code=abc&state=forged", { Cookie = signin("ann") .. "; fb_state=mine" })
    assert.equal(400, status)
    assert.equal("state_mismatch", cjson.decode(body).error)
    local forged = "app_user=" .. signin("ann"):match("=(.*)$"):gsub("^ann", "ben") -- ann's signature, ben's name
    for _, cookie in ipairs{ "", "app_user=ann.00ff", forged } do
      status, _, body = get("/outstanding", { Cookie = cookie })
      assert.equal(401, status)
      assert.equal("not_signed_in", cjson.decode(body).error)
    end
  end)

  it("connects an account and serves its outstanding invoices", function()
    local query, state_cookie = connect("ann")
    local status, _, cb_body = callback("ann", query, state_cookie)
    assert.equal(200, status, cb_body)
    assert.truthy(srv:cli("GET", "fb-app:tokens:ann"):find("refresh_token", 1, true))
    -- The report, computed in nginx, equals the same report computed here from the same data.
    local body
    status, _, body = get("/outstanding?as_of=2025-06-30", { Cookie = signin("ann") })
    assert.equal(200, status, body)
    local got = cjson.decode(body)
    assert.equal(2, #got.businesses)
    local fb = H.session(sb)
    for _, b in ipairs(got.businesses) do
      local acc = report.accumulator(require("freshbooks.date").parse("2025-06-30"))
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
    status, _, body = get("/connection", { Cookie = signin("ann") })
    assert.equal(200, status)
    local st = cjson.decode(body)
    assert.is_true(st.connected)
    assert.equal(2, #st.businesses)
  end)

  it("keeps every signed-in user's connection their own", function()
    -- ben connects carol's FreshBooks; ann's connection (alice's) is untouched.
    local query, state_cookie = connect("ben", "carol")
    -- ann cannot complete ben's connection with ben's state, nor ben with a state of ann's.
    local status, _, body = callback("ann", query, state_cookie)
    assert.equal(400, status)
    assert.equal("state_mismatch", cjson.decode(body).error)
    local ann_query, ann_cookie = connect("ann")
    status = callback("ben", ann_query, ann_cookie)
    assert.equal(400, status)
    status, _, body = callback("ben", query, state_cookie)
    assert.equal(200, status, body)
    local function businesses(name)
      local s, _, b = get("/outstanding?as_of=2025-06-30", { Cookie = signin(name) })
      assert.equal(200, s, b)
      local ids = {}
      for _, biz in ipairs(cjson.decode(b).businesses) do ids[#ids + 1] = biz.account_id end
      table.sort(ids)
      return ids
    end
    assert.same({ "QmP57" }, businesses("ben"))
    assert.same({ "aBcD1", "xYz92" }, businesses("ann"))
    -- cat is signed in but never connected.
    status, _, body = get("/outstanding", { Cookie = signin("cat") })
    assert.equal(401, status)
    assert.equal("not_connected", cjson.decode(body).error)
    -- ben disconnects: revoked at FreshBooks, gone from Redis; ann still works.
    status = request("POST", "/disconnect", { Cookie = signin("ben") })
    assert.equal(200, status)
    assert.equal("", srv:cli("GET", "fb-app:tokens:ben"))
    status, _, body = get("/connection", { Cookie = signin("ben") })
    assert.equal(200, status)
    assert.is_false(cjson.decode(body).connected)
    assert.same({ "aBcD1", "xYz92" }, businesses("ann"))
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
    local status, _, body = request("POST", "/subscribe?event=invoice.create", { Cookie = signin("ann") })
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
                  ["X-FreshBooks-Hmac-SHA256"] = core.codec.base64(string.rep("x", 32)) } }
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
