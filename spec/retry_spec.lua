-- Retries: the rules with a scripted transport (exact attempt counts, waits and log events), then the
-- sandbox's fault injection through the real C core (the sandbox's counters prove what was sent).
local retry = require "freshbooks.retry"
local errors = require "freshbooks.errors"

-- A transport that answers from a script and records calls; time is fake (sleep advances the clock).
local function scripted(script)
  local calls = {}
  local t = setmetatable({ calls = calls }, { __call = function(_, req)
    calls[#calls + 1] = req
    local step = script[#calls] or script[#script]
    if step.err then return nil, errors.new{ code = step.err, message = step.err } end
    return { status = step.status, headers = step.headers or {}, body = step.body or "" }
  end })
  return t
end

local function clocked(extra)
  local now, slept, events = 1000, {}, {}
  local o = { clock = function() return now end, sleep = function(s) slept[#slept + 1] = s; now = now + s end,
              log = function(e) events[#events + 1] = e end, random = function() return 1 end,
              base_delay = 0.5, max_delay = 4, attempts = 4, deadline = 60 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o, slept, events
end

describe("retry rules", function()
  it("retries 5xx for GET with exponential backoff and reports every retry", function()
    local t = scripted{ { status = 503 }, { status = 502 }, { status = 200 } }
    local o, slept, events = clocked()
    local res = retry.wrap(t, o){ method = "GET", url = "http://x/a?search[email]=p@x" }
    assert.equal(200, res.status)
    assert.equal(3, #t.calls)
    assert.same({ 0.5, 1 }, slept)
    assert.equal(2, #events)
    assert.same({ "retry", "GET", "http://x/a", "http_503", 1 },
      { events[1].type, events[1].method, events[1].url, events[1].reason, events[1].attempt })
  end)

  it("never re-sends a POST after a 5xx or a failure after sending", function()
    for _, step in ipairs{ { status = 500 }, { status = 503 }, { err = "timeout" }, { err = "recv" },
      { err = "send" } } do
      local t = scripted{ step, { status = 200 } }
      local o, slept = clocked()
      local res, err = retry.wrap(t, o){ method = "POST", url = "http://x/a", body = "{}" }
      assert.equal(1, #t.calls)
      assert.same({}, slept)
      if step.err then assert.equal(step.err, err.code) else assert.equal(step.status, res.status) end
    end
  end)

  it("never waits past the deadline for a Retry-After: huge, HTTP-date or negative values", function()
    for _, case in ipairs{
      { "86401", 1, 86401 }, { "99999999999999999999", 1, 1e20 },
      { "Wed, 21 Oct 2099 07:28:00 GMT", 1, nil }, -- a date decades away: seconds until then
      { "-5", 4, nil }, { "soon", 4, nil }, { "1e9", 4, nil }, -- unreadable: plain backoff, bounded
    } do
      local t = scripted{ { status = 429, headers = { ["retry-after"] = case[1] } } }
      local o, slept = clocked()
      local res = retry.wrap(t, o){ method = "GET", url = "http://x/a" }
      assert.equal(429, res.status, case[1])
      assert.equal(case[2], #t.calls, case[1])
      local total = 0
      for _, s in ipairs(slept) do total = total + s end
      assert.is_true(total <= 60, case[1])
      local err = errors.from_response{ status = 429, headers = { ["retry-after"] = case[1] }, body = "" }
      assert.equal("rate_limited", err.code)
      if case[3] then assert.equal(case[3], err.retry_after) end
    end
    -- and no configuration can ask for a sleep libcurl's clock cannot take
    assert.has_error(function() retry.wrap(scripted{ {} }, { deadline = 1e9 }) end)
    assert.has_error(function() retry.wrap(scripted{ {} }, { max_delay = math.huge }) end)
  end)

  it("retries a POST that never left: connect and resolve failures", function()
    for _, code in ipairs{ "connect", "resolve" } do
      local t = scripted{ { err = code }, { status = 201 } }
      local res = retry.wrap(t, clocked()){ method = "POST", url = "http://x/a" }
      assert.equal(201, res.status)
      assert.equal(2, #t.calls)
    end
  end)

  it("retries 429 for any method, waiting Retry-After seconds", function()
    local t = scripted{ { status = 429, headers = { ["retry-after"] = "3" } }, { status = 201 } }
    local o, slept = clocked()
    local res = retry.wrap(t, o){ method = "POST", url = "http://x/a" }
    assert.equal(201, res.status)
    assert.same({ 3 }, slept)
  end)

  it("honours Retry-After as an HTTP date", function()
    local when = os.time() + 5
    local t = scripted{ { status = 429, headers = { ["retry-after"] = os.date("!%a, %d %b %Y %H:%M:%S GMT", when) } },
                        { status = 200 } }
    local o, slept = clocked()
    retry.wrap(t, o){ method = "GET", url = "http://x/a" }
    assert.is_true(slept[1] >= 3 and slept[1] <= 5)
  end)

  it("does not retry 4xx, TLS or oversize failures", function()
    for _, step in ipairs{ { status = 400 }, { status = 401 }, { status = 404 }, { status = 501 }, { err = "tls" },
                           { err = "too_large" } } do
      local t = scripted{ step, { status = 200 } }
      retry.wrap(t, clocked()){ method = "GET", url = "http://x/a" }
      assert.equal(1, #t.calls)
    end
  end)

  it("stops after `attempts` and returns the last answer", function()
    local t = scripted{ { status = 503 } }
    local o, slept = clocked{ attempts = 3 }
    local res = retry.wrap(t, o){ method = "GET", url = "http://x/a" }
    assert.equal(503, res.status)
    assert.equal(3, #t.calls)
    assert.same({ 0.5, 1 }, slept)
  end)

  it("caps backoff at max_delay and applies jitter in [d/2, d]", function()
    local t = scripted{ { status = 503 } }
    local o, slept = clocked{ attempts = 6, max_delay = 2, random = function() return 0 end }
    retry.wrap(t, o){ method = "GET", url = "http://x/a" }
    assert.same({ 0.25, 0.5, 1, 1, 1 }, slept)
  end)

  it("gives up when the next wait would pass the overall deadline", function()
    local t = scripted{ { status = 429, headers = { ["retry-after"] = "30" } }, { status = 200 } }
    local o, slept = clocked{ deadline = 10 }
    local res = retry.wrap(t, o){ method = "GET", url = "http://x/a" }
    assert.equal(429, res.status)
    assert.equal(1, #t.calls)
    assert.same({}, slept)
  end)

  it("bounds later attempts' timeouts by the time left", function()
    local t = scripted{ { status = 503 }, { status = 200 } }
    local o = clocked{ deadline = 5 }
    retry.wrap(t, o){ method = "GET", url = "http://x/a", timeout = 60 }
    assert.equal(60, t.calls[1].timeout)
    assert.is_true(t.calls[2].timeout <= 4.5)
  end)

  it("retries only the retryable items of a batch, in place", function()
    local n = 0
    local t = setmetatable({}, { __call = function() error("single path not used") end })
    function t.batch(_, reqs)
      local out = {}
      for i, r in ipairs(reqs) do
        n = n + 1
        if r.url == "http://x/flaky" and n <= 3 then out[i] = { res = { status = 503, headers = {}, body = "" } }
        elseif r.url == "http://x/post" then out[i] = { res = { status = 500, headers = {}, body = "" } }
        else out[i] = { res = { status = 200, headers = {}, body = r.url } } end
      end
      return out
    end
    local o, slept, events = clocked()
    local out = retry.wrap(t, o):batch({ { method = "GET", url = "http://x/a" }, { method = "GET",
      url = "http://x/flaky" },
                                         { method = "POST", url = "http://x/post" } })
    assert.same({ 200, 200, 500 }, { out[1].res.status, out[2].res.status, out[3].res.status })
    assert.equal("http://x/flaky", out[2].res.body)
    assert.same({ 0.5 }, slept)
    assert.equal(1, #events)
  end)

  it("rejects bad options", function()
    assert.has_error(function() retry.wrap(scripted{}, { attempts = "3" }) end)
    assert.has_error(function() retry.wrap(scripted{}, { sleep = 1 }) end)
    assert.has_error(function() retry.wrap(scripted{}, 5) end)
    assert.has_error(function() retry.wrap(scripted{}, { attempt = 3 }) end)
  end)

  it("is off with false", function()
    local t = scripted{ { status = 503 } }
    assert.equal(t, retry.wrap(t, false))
  end)
end)

describe("retries under the sandbox's fault injection", function()
  local sandbox = require "support.sandbox"
  local H = require "support.fbtest"
  local core = require "freshbooks.core"
  local sb, fb, events

  local CLIENTS = "/accounting/account/{account_id}/users/clients"

  setup(function() sb = sandbox.start{ invoices = 250 } end)
  teardown(function() if sb then sb:stop() end end)
  before_each(function()
    sb:admin("DELETE", "/_sandbox/faults")
    sb:admin("DELETE", "/_sandbox/counters")
    events = {}
    fb = H.session(sb, { retry = { base_delay = 0.02, max_delay = 0.2, attempts = 4 },
                         log = function(e) if e.type == "retry" then events[#events + 1] = e end end })
  end)

  local function fault(rule) sb:admin("POST", "/_sandbox/faults", rule) end
  local function count(key) return sb:admin("GET", "/_sandbox/counters").requests[key] or 0 end
  local function posts(route) return #(sb:admin("GET", "/_sandbox/counters").posts[route] or {}) end

  it("retries a GET through 503, 502, a reset and a truncated body", function()
    for _, kind in ipairs{ "503", "502", "reset", "truncate" } do
      sb:admin("DELETE", "/_sandbox/counters")
      events = {}
      fault{ route = "users/clients/10001$", method = "GET", fault = kind, times = 2 }
      local c, err = fb:account("aBcD1").clients:get(10001)
      assert(c, kind .. ": " .. tostring(err))
      assert.equal(10001, c.id)
      assert.equal(3, count("GET " .. CLIENTS .. "/{id}"), kind)
      -- libcurl itself re-sends a GET once when a reused keep-alive connection dies unanswered
      if kind == "reset" then assert.is_true(#events >= 1) else assert.equal(2, #events, kind) end
    end
  end)

  it("never sends a POST twice after a 5xx or a reset: the sandbox saw it once", function()
    for _, kind in ipairs{ "500", "503", "reset", "reset_after" } do
      sb:admin("DELETE", "/_sandbox/counters")
      fault{ route = "users/clients$", method = "POST", fault = kind, times = 1 }
      local c, err = fb:account("aBcD1").clients:create{ organization = "Once " .. kind }
      assert.is_nil(c, kind)
      assert.is_true(errors.is(err), kind)
      assert.equal(1, count("POST " .. CLIENTS), kind)
      assert.equal(1, posts(CLIENTS), kind)
    end
    assert.equal(0, #events)
  end)

  it("re-sends a POST refused with 429, after Retry-After, and creates one record", function()
    local before = select(2, assert(fb:account("aBcD1").clients:list())).total
    fault{ route = "users/clients$", method = "POST", fault = "429", retry_after = 1, times = 1 }
    local t0 = core.clock.now()
    local c = assert(fb:account("aBcD1").clients:create{ organization = "After 429" })
    assert.is_true(core.clock.now() - t0 >= 0.9)
    assert.equal("After 429", c.organization)
    assert.equal(2, count("POST " .. CLIENTS))
    assert.equal(before + 1, select(2, assert(fb:account("aBcD1").clients:list())).total)
    assert.same({ "rate_limited", "POST", 1 }, { events[1].reason, events[1].method, events[1].delay })
  end)

  it("gives up after `attempts` with the server's error", function()
    fault{ route = "users/clients/10001$", method = "GET", fault = "503", times = 10 }
    local c, err = fb:account("aBcD1").clients:get(10001)
    assert.is_nil(c)
    assert.same({ "server_error", 503 }, { err.code, err.status })
    assert.equal(4, count("GET " .. CLIENTS .. "/{id}"))
  end)

  it("rides out the sandbox's global rate limit", function()
    sb:admin("POST", "/_sandbox/rate_limit", { limit = 10, window = 1 })
    local acct = fb:account("aBcD1")
    for i = 1, 15 do assert(acct.clients:get(10000 + i)) end
    sb:admin("DELETE", "/_sandbox/rate_limit")
    assert.is_true(#events >= 1)
    for _, e in ipairs(events) do assert.equal("rate_limited", e.reason) end
  end)

  it("retries failed pages of a parallel all() and keeps the order", function()
    fault{ route = "invoices/invoices$", method = "GET", fault = "503", rate = 0.3 }
    -- 10 attempts: a page failing all of them at a 30% fault rate (6e-6) would be a different bug
    fb = H.session(sb, { retry = { base_delay = 0.01, max_delay = 0.05, attempts = 10 },
                         log = function(e) if e.type == "retry" then events[#events + 1] = e end end })
    local all = assert(fb:account("aBcD1").invoices:all({ per_page = 10 }, { parallel = 4 }))
    assert.equal(250, #all)
    for i = 1, 250 do assert.equal(i, all[i].id) end
    assert.is_true(#events > 0)
  end)

  it("retries a POST when the connection was refused (nothing was sent)", function()
    local freshbooks = require "freshbooks"
    local slept = {}
    local dead = freshbooks.new(H.opts(sb, { api_url = "http://127.0.0.1:1", tokens = { access_token = "x",
      refresh_token = "y", expires_in = 3600 }, retry = { attempts = 3,
        sleep = function(s) slept[#slept + 1] = s end } }))
    local c, err = dead:account("aBcD1").clients:create{ organization = "x" }
    assert.is_nil(c)
    assert.equal("connect", err.code)
    assert.equal(2, #slept)
  end)
end)
