-- Test controls: faults, counters, the request log, clock, reset, rate limit.
local sandbox = require "support.sandbox"

describe("sandbox controls", function()
  local sb, auth
  local CLIENTS = "/accounting/account/aBcD1/users/clients"
  local function get(path) return sb:http{ path = path or CLIENTS, headers = auth } end

  setup(function()
    sb = sandbox.start{ invoices = 5 }
    auth = { Authorization = "Bearer " .. sb:token().access_token }
  end)
  teardown(function() sb:stop() end)
  before_each(function()
    sb:admin("DELETE", "/_sandbox/faults")
    sb:admin("DELETE", "/_sandbox/counters")
  end)

  it("fails the next N requests deterministically", function()
    sb:admin("POST", "/_sandbox/faults", { route = "/users/clients$", fault = "503", times = 2 })
    assert.equals(503, get().status)
    assert.equals(503, get().status)
    assert.equals(200, get().status)
    sb:admin("POST", "/_sandbox/faults", { route = "/users/clients", fault = "500", skip = 1, times = 1 })
    assert.equals(200, get().status)
    assert.equals(500, get().status)
    assert.equals(200, get().status)
  end)

  it("injects 429 with Retry-After, resets, truncation, HTML and malformed JSON", function()
    sb:admin("POST", "/_sandbox/faults", { route = "clients", fault = "429", retry_after = 3 })
    local r = get()
    assert.equals(429, r.status)
    assert.equals("3", r.headers["retry-after"])
    sb:admin("POST", "/_sandbox/faults", { route = "clients", fault = "reset" })
    assert.is_nil(get().status)
    sb:admin("POST", "/_sandbox/faults", { route = "clients", fault = "truncate" })
    r = get()
    assert.is_true(r.status == nil or r.json == nil)
    sb:admin("POST", "/_sandbox/faults", { route = "clients", fault = "html", status = 502 })
    r = get()
    assert.equals(502, r.status)
    assert.matches("text/html", r.headers["content-type"])
    sb:admin("POST", "/_sandbox/faults", { route = "clients", fault = "malformed" })
    r = get()
    assert.equals(200, r.status)
    assert.is_nil(r.json)
    sb:admin("POST", "/_sandbox/faults", { route = "clients", fault = "delay", ms = 400 })
    local t0 = os.time()
    r = sb:http{ path = CLIENTS, headers = auth, timeout = 0.2 }
    assert.is_nil(r.status)
    assert.is_true(os.time() - t0 < 3)
    assert.equals(200, get().status)
  end)

  it("applies a fault rate from a seeded generator", function()
    sb:admin("POST", "/_sandbox/faults", { route = "clients", fault = "502", rate = 0.5 })
    local failed = 0
    for _ = 1, 20 do if get().status == 502 then failed = failed + 1 end end
    assert.is_true(failed > 2 and failed < 18)
  end)

  it("counts requests per route and method, keeps POST bodies and an ordered log of token hashes", function()
    get()
    get("/accounting/account/aBcD1/users/clients/10001")
    sb:http{ method = "POST", path = CLIENTS, headers = auth, json = { client = { fname = "Z" } } }
    local c = sb:admin("GET", "/_sandbox/counters")
    assert.equals(1, c.requests["GET /accounting/account/{account_id}/users/clients"])
    assert.equals(1, c.requests["GET /accounting/account/{account_id}/users/clients/{id}"])
    assert.equals(1, c.requests["POST /accounting/account/{account_id}/users/clients"])
    assert.matches('"fname":"Z"', c.posts["/accounting/account/{account_id}/users/clients"][1])
    local log = sb:admin("GET", "/_sandbox/log").log
    assert.equals(3, #log)
    assert.equals("GET", log[1].method)
    assert.equals(200, log[1].status)
    assert.matches("^%x+$", log[1].access_token)
    assert.equals(12, #log[1].access_token)
    assert.is_true(log[1].seq < log[2].seq)
    -- the token endpoint: secrets never stored, issued tokens named by hash
    local t = sb:token()
    local rr = sb:http{ method = "POST", path = "/auth/oauth/token", json = { grant_type = "refresh_token",
      client_id = sb.app.client_id, client_secret = sb.app.client_secret, refresh_token = t.refresh_token } }
    assert.equals(200, rr.status)
    c = sb:admin("GET", "/_sandbox/counters")
    local body = c.posts["/auth/oauth/token"][1]
    assert.is_nil(body:find(sb.app.client_secret, 1, true))
    assert.is_nil(body:find(t.refresh_token, 1, true))
    log = sb:admin("GET", "/_sandbox/log").log
    local last = log[#log]
    assert.equals("/auth/oauth/token", last.path)
    assert.matches("^%x+$", last.issued_access_token)
    assert.matches("^%x+$", last.refresh_token)
  end)

  it("moves the clock and resets everything", function()
    local before = sb:admin("GET", "/_sandbox/clock")
    local after = sb:admin("POST", "/_sandbox/clock", { advance = 3600 })
    assert.is_true(after.now - before.now >= 3599)
    sb:http{ method = "POST", path = CLIENTS, headers = auth, json = { client = { fname = "Gone" } } }
    sb:admin("POST", "/_sandbox/reset")
    assert.equals(0, sb:admin("GET", "/_sandbox/clock").offset)
    -- tokens are gone after a reset; data is back to the seed
    assert.equals(401, get().status)
    auth = { Authorization = "Bearer " .. sb:token().access_token }
    -- 50 seeded: 17 and 34 archived, 23 and 46 deleted
    assert.equals(46, get(CLIENTS .. "?search[vis_state]=0&per_page=100").json.response.result.total)
  end)

  it("rate-limits globally when asked", function()
    sb:admin("POST", "/_sandbox/rate_limit", { limit = 2, window = 60 })
    assert.equals(200, get().status)
    assert.equals(200, get().status)
    local r = get()
    assert.equals(429, r.status)
    assert.is_true(tonumber(r.headers["retry-after"]) >= 1)
    sb:admin("DELETE", "/_sandbox/rate_limit")
    assert.equals(200, get().status)
  end)
end)
