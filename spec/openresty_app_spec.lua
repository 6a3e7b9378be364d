-- examples/openresty: the example application, its location blocks taken from its own nginx.conf, run
-- in a real nginx (2 workers) with a real Redis against the sandbox: each signed-in user connects their
-- own FreshBooks (connect -> consent -> callback -> outstanding), webhooks, disconnect.
local cjson = require "cjson"
local core = require "freshbooks.core"
local R = require "support.redis"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"
local H = require "support.fbtest"
local q = sandbox.shell_quote
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
  assert(#out == 10, "expected the ten locations of the example")
  return table.concat(out, "\n")
end

describe("the OpenResty example application", function()
  local sb, app, client, srv, hook_port
  local SESSION_TTL = 3
  setup(function()
    sb = sandbox.start{ invoices = 120 }
    srv = R.start{}
    -- FreshBooks reaches /webhook at the configured public URL: a listener of the spec's choosing.
    for _ = 1, 10 do
      hook_port = math.random(20000, 32000)
      local cfg = ("{ client_id = %q, client_secret = %q, redirect_uri = %q, session_secret = %q, redis_port = %d,"
        .. " api_url = %q, auth_url = %q, public_url = %q, session_ttl = %d, mirror_stream = true }")
        :format(sb.app.client_id, sb.app.client_secret, sb.app.redirect_uri,
        core.codec.hex(core.crypto.random_bytes(32)), srv.port, sb.url, sb.auth_url,
        "http://127.0.0.1:" .. hook_port, SESSION_TTL)
      local ok, started = pcall(testserver.start, {
        workers = 2, -- /connect and /callback may land on different workers: the state lives in Redis
        http = table.concat({
          testserver.lua_paths{ "examples/openresty", "build/deps/lua" },
          "lua_shared_dict freshbooks 1m;",
          "lua_shared_dict freshbooks_pending 1m;",
          "init_by_lua_block { require('app').configure(" .. cfg .. ") }",
          "init_worker_by_lua_block { require('app').init_worker() }",
          -- (the spec also keeps a copy of the last event delivered, as a wiretap would: the replay case)
          "server { listen 127.0.0.1:" .. hook_port .. "; location = /webhook { content_by_lua_block {"
            .. " ngx.req.read_body()"
          .. " local b = ngx.req.get_body_data() or ''"
            .. " if not b:find('verifier=', 1, true) then ngx.shared.freshbooks:set('spec:captured', b .. '\\n'"
            .. " .. (ngx.req.get_headers()['x-freshbooks-hmac-sha256'] or '')) end"
            .. " require('app').webhook() } } }",
        }, "\n  "),
        locations = example_locations() .. "\n    location = /_spec/captured { content_by_lua_block {"
          .. " ngx.print(ngx.shared.freshbooks:get('spec:captured') or '') } }",
      })
      if ok then app = started break end
    end
    assert(app, "the example app did not start")
    client = core.http.client{ timeout = 20 }
  end)
  teardown(function()
    if client then client:close() end
    if app then app.stop() end
    if sb then sb:stop() end
    if srv then srv:stop() end
  end)

  local function request(method, path, headers, body)
    local status, hdrs, rbody = client:request{ method = method, url = app.url .. path, headers = headers,
      body = body }
    assert(status, tostring(hdrs and hdrs.message))
    return status, hdrs, rbody
  end
  local function get(path, headers) return request("GET", path, headers) end
  local FORM = "application/x-www-form-urlencoded"
  -- A POST to the webhook URI FreshBooks was given.
  local function hook(body, headers)
    local h = { ["Content-Type"] = FORM }
    for k, v in pairs(headers or {}) do h[k] = v end
    local status, hdrs, rbody = client:request{ method = "POST",
      url = "http://127.0.0.1:" .. hook_port .. "/webhook", headers = h, body = body }
    assert(status, tostring(hdrs and hdrs.message))
    return status, hdrs, rbody
  end

  -- The app's own session for `name`: {cookie = "__Host-session=...", csrf = ...}.
  local sessions = {}
  local function fresh_session(name)
    local status, hdrs, body = request("POST", "/signin", { ["Content-Type"] = FORM }, "user=" .. name)
    assert.equal(200, status, body)
    return { cookie = hdrs["set-cookie"]:match("^(__Host%-session=[^;]+)"), csrf = cjson.decode(body).csrf,
      set_cookie = hdrs["set-cookie"] }
  end
  -- A session lives SESSION_TTL seconds: one is reused while it has at least half of that left (a loaded
  -- machine can spend seconds between two tests), then `name` signs in again.
  local function session(name)
    local s = sessions[name]
    if not s or core.clock.now() - s.at > SESSION_TTL / 2 then
      local at = core.clock.now()
      s = fresh_session(name)
      s.at = at
      sessions[name] = s
    end
    return s
  end
  local function signin(name) return session(name).cookie end
  local function post(name, path, extra)
    local s = session(name)
    local h = { Cookie = s.cookie, ["X-CSRF-Token"] = s.csrf }
    for k, v in pairs(extra or {}) do h[k] = v end
    return request("POST", path, h)
  end

  -- /connect as `name`, the consent of FreshBooks user `fb_user` -> the callback's query and the state cookie.
  local function connect(name, fb_user)
    local status, hdrs = get("/connect", { Cookie = signin(name) })
    assert.equal(302, status)
    local state = hdrs["set-cookie"]:match("__Host%-fb_state=([%x]+)")
    assert.truthy(state)
    assert.truthy(hdrs.location:find(sb.url, 1, true) == 1)
    -- The browser at FreshBooks (auto-consent) comes back to the registered redirect URI; here that
    -- URI's path and query are delivered to the app.
    local back = H.consent(sb, hdrs.location .. (fb_user and ("&user=" .. fb_user) or ""))
    assert.truthy(back:find(sb.app.redirect_uri, 1, true) == 1)
    return back:match("%?(.*)$"), "__Host-fb_state=" .. state
  end
  local function callback(name, query, state_cookie)
    return get("/callback?" .. query, { Cookie = signin(name) .. "; " .. state_cookie })
  end

  it("refuses a callback whose state does not match the cookie, and anyone not signed in", function()
    local status, _, body = get("/callback?code=abc&state=forged",
      { Cookie = signin("ann") .. "; __Host-fb_state=mine" })
    assert.equal(400, status)
    assert.equal("state_mismatch", cjson.decode(body).error)
    local forged = "__Host-session=" .. string.rep("0", 64)
    local twice = signin("ann") .. "; " .. signin("ann"):gsub("%x$", "0") -- which one? neither is believed
    for _, cookie in ipairs{ "", "__Host-session=ann", forged, twice } do
      status, _, body = get("/outstanding", { Cookie = cookie })
      assert.equal(401, status)
      assert.equal("not_signed_in", cjson.decode(body).error)
    end
  end)

  it("connects an account and serves its outstanding invoices", function()
    local query, state_cookie = connect("ann")
    local status, _, cb_body = callback("ann", query, state_cookie)
    assert.equal(200, status, cb_body)
    assert.truthy(srv:cli("GET", "fb-app:{ann}:tokens"):find("refresh_token", 1, true))
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
    status = post("ben", "/disconnect")
    assert.equal(200, status)
    assert.equal("", srv:cli("GET", "fb-app:{ben}:tokens"))
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
    local status, _, body = post("ann", "/subscribe?event=invoice.create")
    assert.equal(200, status, body)
    local cb = cjson.decode(body)
    assert.is_true(cb.verified)
    assert.equal("http://127.0.0.1:" .. hook_port .. "/webhook", cb.uri)
    local cb_id = ("%d"):format(cb.callback_id) -- (cjson under Lua 5.4 decodes numbers as floats)
    local fb = H.session(sb)
    local acct = fb:account("aBcD1")
    assert.is_true(assert(acct.callbacks:get(cb_id)).verified)
    -- A real event, signed by the sandbox with the verifier, reaches ann's event list.
    local inv = assert(acct.invoices:create{ customerid = 10001, create_date = "2025-07-01",
      lines = { { name = "Work", qty = 1, unit_cost = { amount = "10.00", code = "USD" } } } })
    local seen = poll("the invoice.create event", function()
      local _, _, ev = get("/events", { Cookie = signin("ann") })
      for _, e in ipairs(cjson.decode(ev).events) do
        if e.name == "invoice.create" and tonumber(e.object_id) == inv.id then return e end
      end
    end)
    assert.equal("aBcD1", seen.account_id)
    -- and is appended to the mirror's stream for ann's connection (mirror_stream)
    local entries = srv:cli("XRANGE", "freshbooks:{mirror}:events", "-", "+")
    assert.matches("connection\nann\nname\ninvoice.create\nobject_id\n" .. inv.id .. "\n", entries)
    local appended = srv:cli("XLEN", "freshbooks:{mirror}:events")
    -- A forged delivery (right fields, wrong signature) is refused and not recorded.
    local forged = "name=invoice.create&object_id=424242&account_id=aBcD1&business_id=1000001"
    status = hook(forged, { ["X-FreshBooks-Hmac-SHA256"] = core.codec.base64(string.rep("x", 32)) })
    assert.equal(401, status)
    local _, _, ev = get("/events", { Cookie = signin("ann") })
    for _, e in ipairs(cjson.decode(ev).events) do assert.are_not.equal("424242", e.object_id) end
    assert.equal(appended, srv:cli("XLEN", "freshbooks:{mirror}:events"))
  end)

  it("makes no call to FreshBooks for an unauthenticated verification, whatever it guesses", function()
    local since = H.last_seq(sb)
    for _, id in ipairs{ "1", "2", "3", "99" } do
      local status = hook("name=callback.verify&object_id=" .. id .. "&account_id=aBcD1&verifier=attacker" .. id)
      assert.equal(200, status) -- answered as FreshBooks expects, and nothing more
    end
    os.execute("sleep 0.5") -- (a timer would have fired by now)
    for _, e in ipairs(H.log(sb, since)) do
      assert.is_nil(e.path:find("callbacks", 1, true), "the app called FreshBooks: " .. e.method .. " " .. e.path)
    end
  end)

  it("builds the webhook URI from its configuration, never from the Host header", function()
    local s = session("ann")
    local p = io.popen(("curl -s -X POST -H %s -H %s -H %s %s"):format(q("Host: evil.example"),
      q("Cookie: " .. s.cookie), q("X-CSRF-Token: " .. s.csrf), q(app.url .. "/subscribe?event=invoice.update")))
    local body = p:read("*a")
    p:close()
    local cb = cjson.decode(body)
    assert.equal("http://127.0.0.1:" .. hook_port .. "/webhook", cb.uri, body)
  end)

  it("answers state-changing GETs with 405 and POSTs without this session's CSRF token with 403", function()
    for _, path in ipairs{ "/disconnect", "/subscribe?event=invoice.create", "/signout", "/signin?user=ann" } do
      local status, hdrs = get(path, { Cookie = signin("ann") })
      assert.equal(405, status, path)
      assert.equal("POST", hdrs.allow, path)
    end
    local other, own = session("zed"), session("ann").csrf
    -- ann's own token with its last digit changed (always changed: a token ending in 0 gets a 1)
    local near = own:sub(1, -2) .. (own:sub(-1) == "0" and "1" or "0")
    for _, token in ipairs{ false, "", other.csrf, near } do
      local h = { Cookie = signin("ann"), ["X-CSRF-Token"] = token or nil }
      local status, _, body = request("POST", "/disconnect", h)
      assert.equal(403, status, body)
      assert.equal("csrf", cjson.decode(body).error)
    end
    -- ann is still connected.
    local status, _, body = get("/connection", { Cookie = signin("ann") })
    assert.equal(200, status)
    assert.is_true(cjson.decode(body).connected)
  end)

  it("keeps sessions server-side: random at every sign-in, Secure, expiring, revocable", function()
    local a, b = fresh_session("pat"), fresh_session("pat")
    assert.are_not.equal(a.cookie, b.cookie)
    for _, attr in ipairs{ "; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/", "; Max-Age=" .. SESSION_TTL } do
      assert.truthy(a.set_cookie:find(attr, 1, true), attr)
    end
    assert.is_nil(srv:cli("KEYS", "*session*"):find(a.cookie:match("=(%x+)"), 1, true)) -- Redis holds a hash
    assert.equal(200, (get("/connection", { Cookie = a.cookie })))
    -- Signed out: that cookie is dead wherever a copy of it is; the other session lives on.
    assert.equal(200, (request("POST", "/signout", { Cookie = a.cookie, ["X-CSRF-Token"] = a.csrf })))
    assert.equal(401, (get("/connection", { Cookie = a.cookie })))
    assert.equal(200, (get("/connection", { Cookie = b.cookie })))
    os.execute("sleep " .. SESSION_TTL + 0.2)
    assert.equal(401, (get("/connection", { Cookie = b.cookie })))
    sessions = {} -- every session of the spec expired with it
  end)

  it("lists events to their own signed-in subscriber only", function()
    assert.equal(401, (get("/events")))
    local _, _, body = get("/events", { Cookie = signin("ann") })
    assert.is_true(#cjson.decode(body).events > 0)
    -- ben connected carol's FreshBooks (another account): he sees none of ann's.
    local query, state_cookie = connect("ben", "carol")
    assert.equal(200, (callback("ben", query, state_cookie)))
    _, _, body = get("/events", { Cookie = signin("ben") })
    assert.same({}, cjson.decode(body).events)
  end)

  it("records a replayed delivery once within the window, and bounds what a delivery may be", function()
    local _, _, before = get("/events", { Cookie = signin("ann") })
    local n = #cjson.decode(before).events
    -- The sandbox delivers a new event; the spec replays it as an attacker who captured it would.
    local acct = H.session(sb):account("aBcD1")
    local since = H.last_seq(sb)
    local inv = assert(acct.invoices:create{ customerid = 10001, create_date = "2025-07-02",
      lines = { { name = "Replay", qty = 1, unit_cost = { amount = "1.00", code = "USD" } } } })
    poll("the event", function()
      local _, _, ev = get("/events", { Cookie = signin("ann") })
      return #cjson.decode(ev).events == n + 1
    end)
    local _, _, captured = get("/_spec/captured")
    local fields, signed = captured:match("^(.-)\n(.*)$")
    assert.truthy(fields and fields:find("object_id=" .. ("%d"):format(inv.id), 1, true), captured)
    local _ = since
    local status, _, body = hook(fields, { ["X-FreshBooks-Hmac-SHA256"] = signed })
    assert.equal(200, status)
    assert.equal("duplicate", cjson.decode(body).received)
    local _, _, after = get("/events", { Cookie = signin("ann") })
    assert.equal(n + 1, #cjson.decode(after).events)
    -- A signature header of 7 KB (nginx bounds headers at 8 KB), a body of 64 KB: refused at once.
    local t0 = core.clock.now()
    status = hook(fields, { ["X-FreshBooks-Hmac-SHA256"] = "x" .. string.rep(" ", 7000) .. signed })
    assert.equal(401, status)
    assert.equal(413, (hook(fields .. "&x=" .. string.rep("a", 65536), { ["X-FreshBooks-Hmac-SHA256"] = signed })))
    assert.is_true(core.clock.now() - t0 < 1)
  end)
end)
