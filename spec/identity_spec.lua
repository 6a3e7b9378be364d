-- Identity: users/me (cached, refreshable) and business memberships for users with 0, 1 or 2 businesses.
local sandbox = require "support.sandbox"
local H = require "support.fbtest"

local ME = "/auth/api/v1/users/me"

describe("identity against the sandbox", function()
  local sb
  setup(function() sb = sandbox.start{ invoices = 5 } end)
  teardown(function() if sb then sb:stop() end end)

  local function me_calls(since)
    return H.count(H.log(sb, since), function(e) return e.path == ME end)
  end

  it("fetches me once per session and again on request", function()
    local fb = H.session(sb)
    local since = H.last_seq(sb)
    local me = assert(fb:me())
    assert.equal("alice@example.com", me.email)
    assert.equal(me, fb:me())
    assert.equal(1, me_calls(since))
    local again = assert(fb:me(true))
    assert.equal("alice@example.com", again.email)
    assert.equal(2, me_calls(since))
  end)

  it("iterates alice's two memberships with account_id, business_id, business_uuid, name, role", function()
    local fb = H.session(sb)
    local seen = {}
    for m in fb:businesses() do seen[#seen + 1] = m end
    assert.equal(2, #seen)
    assert.equal("aBcD1", seen[1].account_id)
    assert.equal(1000001, seen[1].business_id)
    assert.equal("1000001", tostring(seen[1].business_id)) -- an integer, fit for URLs
    assert.equal("4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001", seen[1].business_uuid)
    assert.equal("Sandbox Widgets Inc.", seen[1].name)
    assert.equal("owner", seen[1].role)
    assert.equal(5001, seen[1].membership_id)
    assert.equal("xYz92", seen[2].account_id)
    assert.equal("admin", seen[2].role)
  end)

  it("handles a user with no business and one with one", function()
    local bob = H.session(sb, nil, "bob")
    local n = 0
    for _ in bob:businesses() do n = n + 1 end
    assert.equal(0, n)
    assert.same({}, assert(bob:memberships()))
    local _, err = bob:find_business("Sandbox Widgets Inc.")
    assert.equal("not_found", err.code)

    local carol = H.session(sb, nil, "carol")
    local list = assert(carol:memberships())
    assert.equal(1, #list)
    assert.equal("QmP57", list[1].account_id)
  end)

  it("finds a business by name, business_id, account_id or uuid", function()
    local fb = H.session(sb)
    assert.equal("aBcD1", fb:find_business("Sandbox Widgets Inc.").account_id)
    assert.equal("aBcD1", fb:find_business("sandbox widgets inc.").account_id)
    assert.equal("xYz92", fb:find_business(1000002).account_id)
    assert.equal("xYz92", fb:find_business("1000002").account_id)
    assert.equal(1000002, fb:find_business("xYz92").business_id)
    assert.equal("aBcD1", fb:find_business("4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001").account_id)
    local m, err = fb:find_business("Nope Ltd.")
    assert.is_nil(m)
    assert.equal("not_found", err.code)
    assert.has_error(function() fb:find_business() end)
    assert.has_error(function() fb:find_business({}) end)
  end)

  it("reports a failure to read the identity: nil, err; in a for loop (false, err) once, as each() does", function()
    local fb = H.session(sb, { tokens = { access_token = "dead", refresh_token = "dead" } })
    local list, err = fb:memberships()
    assert.is_nil(list)
    assert.equal("reauth_required", err.code)
    local seen = {}
    for m, e in fb:businesses() do
      seen[#seen + 1] = { m, e }
      assert.is_true(#seen < 5, "the loop did not end")
    end
    assert.equal(1, #seen)
    assert.is_false(seen[1][1])
    assert.equal("reauth_required", seen[1][2].code)
  end)

  -- A hostile users/me: the sandbox answers every other call, this transport swaps in its identity.
  local function hostile_me(memberships)
    local real = require("freshbooks.transport").default{ timeout = 10 }
    local body = require("cjson").encode{ response = { id = 1, business_memberships = memberships } }
    return H.session(sb, { transport = function(req)
      if req.url:find(ME, 1, true) then
        local res = assert(real(req)) -- the real call (its token checked by the sandbox), another answer
        assert(res.status == 200)
        return { status = 200, headers = { ["content-type"] = "application/json" }, body = body }
      end
      return real(req)
    end })
  end

  it("never mixes two businesses: an id that names two of them is ambiguous", function()
    local fb = hostile_me{
      { id = 1, role = "owner", business = { id = 777, account_id = "aaa11", name = "One" } },
      { id = 2, role = { "x" }, business = { id = 888, account_id = "777", name = "Two" } },
      { id = 3, business = { id = 5, account_id = "bbb22", name = "Three" } },
      { id = 4, business = { id = 5, account_id = "ccc33", name = "Four" } },
      { id = 5, business = { id = 9, account_id = "ddd44", name = "Five" } },
      { id = 5, business = { id = 9, account_id = "ddd44", name = "Five" } }, -- listed twice: one business
      { id = 6, business = { id = true, account_id = { "x" }, name = 7 } },
      { id = 7 }, "junk", 42,
    }
    for _, key in ipairs{ "777", 777, 5, "5" } do
      local m, err = fb:find_business(key)
      assert.is_nil(m, tostring(key))
      assert.equal("ambiguous", err.code)
    end
    assert.equal("aaa11", fb:find_business("aaa11").account_id)
    assert.equal(888, fb:find_business(888).business_id)
    assert.equal("ccc33", fb:find_business("ccc33").account_id)
    assert.equal("ddd44", fb:find_business(9).account_id)
    assert.equal("not_found", select(2, fb:find_business("true")).code)
    assert.equal(8, #assert(fb:memberships()))
  end)

  it("reads 10,000 memberships and finds the last one", function()
    local list = {}
    for i = 1, 10000 do
      list[i] = { id = i, role = "admin", business = { id = 100000 + i, account_id = "acc" .. i, name = "Biz " .. i } }
    end
    local fb = hostile_me(list)
    assert.equal(10000, #assert(fb:memberships()))
    assert.equal("acc10000", fb:find_business(110000).account_id)
    assert.equal(110000, fb:find_business("biz 10000").business_id)
  end)

  it("forgets the cached identity after a new authorization", function()
    local fb = H.session(sb, nil, "bob")
    assert.equal("bob@example.com", assert(fb:me()).email)
    assert.is_true(H.authorize(sb, fb)) -- auto-consent signs in as alice
    assert.equal("alice@example.com", assert(fb:me()).email)
  end)
end)
