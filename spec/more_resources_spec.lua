-- The resources the official SDKs cover beyond the first catalogue, through the real stack (session,
-- retry, C core, nginx) against the sandbox: systems, ledger accounts (the accounting-business family,
-- by business_uuid, {"data": ...} bodies), invoice payment options and the account's defaults, the
-- service-rates list. Each with its error paths: not found, validation, a missing scope, another user's
-- business. Then the answers the sandbox never gives (wrong shapes), on a stand-in session, and guests.
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local errors = require "freshbooks.errors"
local resource = require "freshbooks.resource"
local guest = require "freshbooks.guest"
local NULL = require("freshbooks.core").json.null -- sent as JSON null

local ALICE_1 = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001" -- alice's first business (owner)
local CAROL = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0003"   -- carol's, alice is no member

describe("resources beyond the first catalogue, against the sandbox", function()
  local sb, fb

  setup(function()
    sb = sandbox.start{ invoices = 30 }
    fb = H.session(sb)
  end)
  teardown(function() if sb then sb:stop() end end)

  local function narrow(scope) return H.session(sb, { tokens = sb:token{ user = "alice", scope = scope } }) end
  local function codes(err) return { err.code, err.status } end
  -- The requests that reached the sandbox after `since`: "METHOD route" strings.
  local function requests(since)
    local out = {}
    for _, e in ipairs(H.log(sb, since)) do out[#out + 1] = e.method .. " " .. e.route end
    return out
  end

  describe("systems", function()
    it("gets the account's system, whose id is the identity's systemid", function()
      local me = assert(fb:me())
      local role
      for _, r in ipairs(me.roles) do if r.accountid == "aBcD1" then role = r end end
      local sys = assert(fb:account("aBcD1").systems:get(role.systemid))
      assert.same({ role.systemid, role.systemid, "aBcD1", ALICE_1, "Sandbox Widgets Inc.", "USD" },
        { sys.id, sys.systemid, sys.accountid, sys.business_uuid, sys.name, sys.currency_code })
    end)

    it("not found, a missing scope, another user's account", function()
      local acct = fb:account("aBcD1")
      local none, err = acct.systems:get(1000002) -- alice's other business's system, not this account's
      assert.is_nil(none)
      assert.same({ "not_found", 404, 1012, "system" }, { err.code, err.status, err.errno, err.errors[1].object })
      local _
      _, err = narrow("user:profile:read"):account("aBcD1").systems:get(1000001)
      assert.same({ "forbidden", 403 }, codes(err))
      assert(narrow("user:business:read"):account("aBcD1").systems:get(1000001))
      _, err = fb:account("QmP57").systems:get(1000003)
      assert.same({ "forbidden", 403 }, codes(err))
    end)

    it("has get only", function()
      local sys = fb:account("aBcD1").systems
      assert.has_error(function() sys:list() end)
      assert.has_error(function() sys:create{} end)
      assert.has_error(function() sys:update(1000001, {}) end)
      assert.has_error(function() sys:delete(1000001) end)
    end)
  end)

  describe("ledger accounts (by business_uuid)", function()
    local ledger
    before_each(function() ledger = fb:accounting_business(ALICE_1).ledger_accounts end)

    it("is reached through the membership's business_uuid, one object per uuid and session", function()
      local m = assert(fb:find_business(1000001))
      assert.equal(ALICE_1, m.business_uuid)
      local ab = fb:accounting_business(m.business_uuid)
      assert.equal(ab, fb:accounting_business(ALICE_1))
      assert.equal(ALICE_1, ab.business_uuid)
      assert.has_error(function() return ab.invoices end) -- accounting resources are on fb:account
      assert.has_error(function() return fb:account("aBcD1").ledger_accounts end)
      assert.has_error(function() fb:accounting_business("../aBcD1") end)
    end)

    it("lists the whole chart of accounts in one request, with its sub-accounts linked", function()
      local since = H.last_seq(sb)
      local list, meta = assert(ledger:list())
      assert.is_true(#list >= 10)
      assert.same({ 1, 1, #list, #list }, { meta.page, meta.pages, meta.per_page, meta.total })
      local by = {}
      for _, a in ipairs(list) do by[a.uuid] = a end
      local cash = list[1]
      assert.same({ "Cash", "1000", "asset", "Cash & Bank", true }, { cash.name, cash.number, cash.type,
        cash.sub_type, cash.auto_created })
      assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", cash.uuid)
      assert.is_nil(cash.parent_account) -- null, left out
      local petty = by[cash.sub_accounts[1]]
      assert.same({ "Petty Cash", cash.uuid }, { petty.name, petty.parent_account })
      assert.same({ "GET /accounting/businesses/{business_uuid}/ledger_accounts/accounts" }, requests(since))
      -- each and all walk it in one request too, page and per_page being the walk's settings
      since = H.last_seq(sb)
      local n = 0
      for a, err in ledger:each({ per_page = 3 }, { parallel = 4 }) do
        assert(a, tostring(err))
        n = n + 1
      end
      assert.equal(#list, n)
      local all, ameta = assert(ledger:all({ per_page = 2 }, { parallel = 3 }))
      assert.same({ #list, #list }, { #all, ameta.total })
      assert.equal(2, #requests(since))
      -- the sandbox, like the library, takes no paging on this list
      assert.has_error(function() ledger:list{ per_page = 5 } end)
      assert.has_error(function() ledger:list{ page = 2 } end)
      local res = sb:http{ path = "/accounting/businesses/" .. ALICE_1 .. "/ledger_accounts/accounts?page=2",
        headers = { Authorization = "Bearer " .. sb:token().access_token } }
      assert.same({ 400, "page" }, { res.status, res.json.errors.details[1].metadata.field })
    end)

    it("creates, gets and updates accounts, sub-accounts included", function()
      local cash = assert(ledger:list())[1]
      local rec, err = ledger:create{ name = "Store Cash", number = "1003", type = "asset", sub_type = "Cash & Bank",
        description = "Till", parent_account = cash.uuid }
      assert(rec, tostring(err))
      assert.same({ "Store Cash", "1003", "Till", cash.uuid, false, "active" },
        { rec.name, rec.number, rec.description, rec.parent_account, rec.auto_created, rec.state })
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$", rec.updated_at)
      assert.same(rec, assert(ledger:get(rec.uuid)))
      local parent = assert(ledger:get(cash.uuid))
      assert.equal(rec.uuid, parent.sub_accounts[#parent.sub_accounts])
      local top = assert(ledger:create{ name = "Consulting", type = "income", sub_type = "Income" })
      assert.is_nil(top.parent_account)
      local upd = assert(ledger:update(rec.uuid, { name = "Store Cash (front)", state = "inactive" }))
      assert.same({ "Store Cash (front)", "inactive", "1003" }, { upd.name, upd.state, upd.number })
      -- moving it to the top level takes it out of its parent's sub_accounts
      upd = assert(ledger:update(rec.uuid, { parent_account = NULL }))
      assert.is_nil(upd.parent_account)
      for _, u in ipairs(assert(ledger:get(cash.uuid)).sub_accounts) do assert.are_not.equal(rec.uuid, u) end
      assert.equal("Store Cash (front)", assert(ledger:get(rec.uuid)).name)
    end)

    it("answers validation errors with every field at once (HTTP 400, code validation)", function()
      local list = assert(ledger:list())
      local none, err = ledger:create{ number = "1000", parent_account = "not-an-account" }
      assert.is_nil(none)
      assert.same({ "validation", 400 }, codes(err))
      local fields = {}
      for _, f in ipairs(err.errors) do fields[#fields + 1] = f.field end
      assert.same({ "name", "type", "sub_type", "number", "parent_account" }, fields)
      assert.equal("name: This field is required.", err.message) -- the first reason, the most specific text
      assert.equal("This field is required.", err.errors[1].message)
      local _
      _, err = ledger:create{ name = "X", type = "asset", sub_type = "Income" }
      assert.same({ "validation", "sub_type" }, { err.code, err.errors[1].field })
      _, err = ledger:create{ name = "X", type = "income", sub_type = "Income", parent_account = list[1].uuid }
      assert.same({ "validation", "parent_account" }, { err.code, err.errors[1].field })
      _, err = ledger:update(list[1].uuid, { type = "expense", sub_type = "Operating Expense" })
      assert.same({ "validation", 400 }, codes(err)) -- a system account keeps its type
      _, err = ledger:update(list[1].uuid, { name = NULL })
      assert.same({ "validation", "name" }, { err.code, err.errors[1].field })
      assert.equal("Cash", assert(ledger:get(list[1].uuid)).name) -- nothing changed
    end)

    it("not found, no delete, a missing scope, another user's business", function()
      local missing = "00000000-0000-4000-8000-000000000000"
      local none, err = ledger:get(missing)
      assert.is_nil(none)
      assert.same({ "not_found", 404, "Not found." }, { err.code, err.status, err.message })
      local _
      _, err = ledger:update(missing, { name = "x" })
      assert.same({ "not_found", 404 }, codes(err))
      assert.has_error(function() ledger:delete(missing) end)
      local res = sb:http{ method = "DELETE", path = "/accounting/businesses/" .. ALICE_1
        .. "/ledger_accounts/accounts/" .. missing, headers = { Authorization = "Bearer " .. sb:token().access_token } }
      assert.equal(405, res.status)
      local read = narrow("user:journal_entries:read"):accounting_business(ALICE_1).ledger_accounts
      assert(read:list())
      _, err = read:create{ name = "x", type = "asset", sub_type = "Cash & Bank" }
      assert.same({ "forbidden", 403 }, codes(err))
      _, err = narrow("user:profile:read"):accounting_business(ALICE_1).ledger_accounts:list()
      assert.same({ "forbidden", 403 }, codes(err))
      _, err = fb:accounting_business(CAROL).ledger_accounts:list()
      assert.same({ "forbidden", 403 }, codes(err))
      _, err = fb:accounting_business(missing).ledger_accounts:list()
      assert.same({ "forbidden", 403 }, codes(err))
      assert(H.session(sb, nil, "carol"):accounting_business(CAROL).ledger_accounts:list())
    end)

    it("sends {\"data\": fields}; a body in another family's wrapper is refused", function()
      local since = H.last_seq(sb)
      local rec = assert(ledger:create{ name = "Wrapped", type = "expense", sub_type = "Other Expense" })
      local posts = sb:admin("GET", "/_sandbox/counters").posts
      local sent = posts["/accounting/businesses/{business_uuid}/ledger_accounts/accounts"]
      assert.same({ data = { name = "Wrapped", type = "expense", sub_type = "Other Expense" } },
        sandbox.decode(sent[#sent]))
      assert.equal(1, #requests(since))
      local res = sb:http{ method = "POST", path = "/accounting/businesses/" .. ALICE_1 .. "/ledger_accounts/accounts",
        headers = { Authorization = "Bearer " .. sb:token().access_token },
        json = { ledger_account = { name = "x", type = "asset", sub_type = "Cash & Bank" } } }
      assert.same({ 400, "data" }, { res.status, res.json.errors.details[1].metadata.field })
      assert.truthy(rec.uuid)
    end)
  end)

  describe("invoice payment options", function()
    local po
    before_each(function() po = fb:account("aBcD1").invoice_payment_options end)

    it("gets the account's defaults for invoices", function()
      local d = assert(po:defaults())
      assert.same({ "stripe", "invoice", true, false }, { d.gateway_name, d.entity_type, d.has_credit_card,
        d.allow_partial_payments })
      assert.is_nil(d.entity_id)
      assert.same({ "USD" }, d.gateway_info.currencies)
      -- the sandbox wants entity_type, as FreshBooks does
      local h = { Authorization = "Bearer " .. sb:token().access_token }
      local res = sb:http{ path = "/payments/account/aBcD1/payment_options", headers = h }
      assert.same({ 400, "validation", "entity_type" }, { res.status, res.json.error_type, res.json.errors[1].field })
      res = sb:http{ path = "/payments/account/aBcD1/payment_options?entity_type=bill", headers = h }
      assert.equal(400, res.status)
    end)

    it("an invoice has none until they are set; create sets them, get reads them back", function()
      local none, err = po:get(3)
      assert.is_nil(none)
      assert.same({ "not_found", 404, "Resource not found" }, { err.code, err.status, err.message })
      local opts = assert(po:create(3, { gateway_name = "stripe", has_credit_card = true, has_ach_transfer = true,
        entity_type = "invoice", entity_id = 3 }))
      assert.same({ "stripe", "3", "invoice", true, true, false },
        { opts.gateway_name, opts.entity_id, opts.entity_type, opts.has_credit_card, opts.has_ach_transfer,
          opts.allow_partial_payments })
      assert.same(opts, assert(po:get(3)))
      -- a second create replaces them
      assert.is_true(assert(po:create(3, { gateway_name = "stripe", allow_partial_payments = true }))
        .allow_partial_payments)
      assert.is_false(assert(po:get(3)).has_ach_transfer)
      -- the body goes out as FreshBooks takes it: the options themselves, no wrapper
      local posts = sb:admin("GET", "/_sandbox/counters").posts
      local sent = posts["/payments/account/{account_id}/invoice/{invoice_id}/payment_options"]
      assert.same({ gateway_name = "stripe", allow_partial_payments = true }, sandbox.decode(sent[#sent]))
    end)

    it("validation, an unknown invoice, a missing scope, another user's account", function()
      local none, err = po:create(4, { gateway_name = "fbpay", has_credit_card = "yes", entity_id = 5 })
      assert.is_nil(none)
      assert.same({ "validation", 400 }, codes(err))
      local fields = {}
      for _, f in ipairs(err.errors) do fields[#fields + 1] = f.field end
      assert.same({ "gateway_name", "entity_id", "has_credit_card" }, fields)
      assert.equal("no gateway of this name is connected to the account", err.message)
      local _
      _, err = po:create(4, { payment_options = { gateway_name = "stripe" } }) -- wrapped: nothing at the top
      assert.same({ "validation", "gateway_name" }, { err.code, err.errors[1].field })
      assert.equal("not_found", select(2, po:get(4)).code) -- nothing was set
      _, err = po:create(999999, { gateway_name = "stripe" })
      assert.same({ "not_found", 404 }, codes(err))
      _, err = po:get(999999)
      assert.same({ "not_found", 404 }, codes(err))
      local read = narrow("user:online_payments:read"):account("aBcD1").invoice_payment_options
      assert(read:defaults())
      _, err = read:create(4, { gateway_name = "stripe" })
      assert.same({ "forbidden", 403 }, codes(err))
      _, err = narrow("user:invoices:read"):account("aBcD1").invoice_payment_options:defaults()
      assert.same({ "forbidden", 403 }, codes(err))
      _, err = fb:account("QmP57").invoice_payment_options:get(1)
      assert.same({ "forbidden", 403 }, codes(err))
    end)

    it("raises on bad arguments before sending anything", function()
      local since = H.last_seq(sb)
      assert.has_error(function() po:get("../../payment_options") end)
      assert.has_error(function() po:create(1) end)
      assert.has_error(function() po:create(nil, { gateway_name = "stripe" }) end)
      assert.has_error(function() po:list() end)
      assert.has_error(function() po:update(1, {}) end)
      assert.has_error(function() for _ in po:each() do end end)
      assert.equal(0, #requests(since))
    end)
  end)

  describe("service rates", function()
    local biz
    before_each(function() biz = fb:business(1000001) end)

    it("lists every service's rate in one request, and sees a new one", function()
      local since = H.last_seq(sb)
      local rates, meta = assert(biz.service_rates:list())
      assert.same({ 1, 1, #rates }, { meta.page, meta.pages, meta.total })
      assert.is_true(#rates >= 4)
      local one = assert(biz.services:rate(rates[1].service_id))
      assert.same({ one.rate, one.service_id, 1000001 }, { rates[1].rate, rates[1].service_id, rates[1].business_id })
      assert.same({ "GET /comments/business/{business_id}/service_rates",
                    "GET /comments/business/{business_id}/service/{id}/rate" }, requests(since))
      local svc = assert(biz.services:create{ name = "Rated", billable = true })
      local function listed(id)
        for _, r in ipairs(assert(biz.service_rates:list())) do if r.service_id == id then return r end end
      end
      assert.is_nil(listed(svc.id)) -- no rate yet
      assert(biz.services:create_rate(svc.id, { rate = "42.50" }))
      assert.equal("42.50", listed(svc.id).rate)
      local found
      for r, err in biz.service_rates:each() do
        assert(r, tostring(err))
        if r.service_id == svc.id then found = r end
      end
      assert.equal("42.50", found.rate)
      assert.equal(#rates + 1, #assert(biz.service_rates:all()))
    end)

    it("takes no paging; a missing scope and another user's business are forbidden", function()
      assert.has_error(function() biz.service_rates:list{ per_page = 10 } end)
      assert.has_error(function() biz.service_rates:get(701) end)
      local res = sb:http{ path = "/comments/business/1000001/service_rates?per_page=10",
        headers = { Authorization = "Bearer " .. sb:token().access_token } }
      assert.same({ 400, 2001 }, { res.status, res.json.errno })
      local _, err = narrow("user:time_entries:read"):business(1000001).service_rates:list()
      assert.same({ "forbidden", 403 }, codes(err))
      _, err = fb:business(1000003).service_rates:list()
      assert.same({ "forbidden", 403 }, codes(err))
    end)
  end)

  describe("guest scripts", function()
    it("read ledger accounts by business_uuid and service rates; writes need write = true", function()
      local script = [[
        local fb = ...
        local m = fb:memberships()[1]
        local ab = fb:accounting_business(m.business_uuid)
        local n = 0
        for a in ab.ledger_accounts:each() do n = n + 1 end
        local rates = assert(fb:business(m.business_id).service_rates:list())
        local d = assert(fb:account(m.account_id).invoice_payment_options:defaults())
        local ok, e = pcall(ab.ledger_accounts.create, ab.ledger_accounts, { name = "x" })
        return ab.business_uuid, n, #rates, d.gateway_name, ok, tostring(e):match("may only read") ~= nil
      ]]
      local ok, uuid, n, rates, gw, created, refused = guest.run(fb, script, "=breadth")
      assert(ok, tostring(uuid))
      assert.same({ ALICE_1, #assert(fb:accounting_business(ALICE_1).ledger_accounts:list()),
        #assert(fb:business(1000001).service_rates:list()), "stripe", false, true },
        { uuid, n, rates, gw, created, refused })
      -- Data reach the guest as FreshBooks sent them, UUIDs included; the session's own secrets do not.
      local tokens = sb:token{}
      local own = H.session(sb, { tokens = tokens })
      local acct = own:account("aBcD1")
      local c = assert(acct.clients:create{ organization = tokens.access_token, email = "t@example.com" })
      local gok, org, cash = guest.run(own, ([[
        local fb = ...
        local cash = assert(fb:accounting_business(fb:memberships()[1].business_uuid).ledger_accounts:list())[1]
        return assert(fb:account("aBcD1").clients:get(%d)).organization, cash.uuid
      ]]):format(c.id), "=masking")
      assert(gok, tostring(org))
      assert.same({ "***", assert(fb:accounting_business(ALICE_1).ledger_accounts:list())[1].uuid }, { org, cash })
      local wok, rec = guest.run(fb, [[
        local fb = ...
        return assert(fb:accounting_business(fb:memberships()[1].business_uuid).ledger_accounts:create{
          name = "From a guest", type = "asset", sub_type = "Other Asset" }).name
      ]], "=write", { write = true })
      assert.same({ true, "From a guest" }, { wok, rec })
    end)
  end)
end)

-- Answers the sandbox never gives, on a stand-in session: each family reads its own shape only.
describe("unwrapping the new families' answers", function()
  local sent, answer
  local fake = { request = function(_, req)
    sent = req
    local res = { status = answer.status or 200, headers = { ["content-type"] = "application/json" },
                  data = answer.data }
    local err = errors.from_response(res)
    if err then return nil, err end
    return res
  end }
  local UUID = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001"
  local function ledger() return resource.accounting_business(fake, UUID).ledger_accounts end
  local function shape_error(f) local v, err = f(); assert.is_nil(v); return err end

  it("ledger accounts: {\"data\": ...} only, an object for one, an array for a list", function()
    answer = { data = { data = { uuid = "u1", name = "Cash" } } }
    assert.equal("Cash", ledger():get("u1").name)
    assert.same({ "GET", "/accounting/businesses/" .. UUID .. "/ledger_accounts/accounts/u1" },
      { sent.method, sent.path })
    for _, wrong in ipairs {
      { response = { result = { data = { uuid = "u1" } } } }, -- the accounting envelope
      {},                                                   -- {"data": null}: the null is dropped
      { data = "u1" },
      { data = { { uuid = "u1" } } },                        -- a list where one record was due
      { ledger_account = { uuid = "u1" } },
    } do
      answer = { data = wrong }
      assert.equal("bad_response", shape_error(function() return ledger():get("u1") end).code)
    end
    answer = { data = { data = { uuid = "u1" } } }          -- an object where a list was due
    assert.equal("bad_response", shape_error(function() return ledger():list() end).code)
    answer = { data = { data = {} } }                        -- an empty chart is a list
    local list, meta = ledger():list()
    assert.same({ {}, 0 }, { list, meta.total })
  end)

  it("errors bodies, also when sent with HTTP 200, and a data answer is never one", function()
    answer = { status = 200, data = { errors = { message = "Request failed with status code 404", status = 404,
      details = { { reason = "Not found.", metadata = { message = "Not found." } } } } } }
    local err = shape_error(function() return ledger():get("u1") end)
    assert.same({ "not_found", 200, "Not found." }, { err.code, err.status, err.message })
    answer = { status = 400, data = { errors = { message = "Request failed with status code 400", status = 400,
      details = { { reason = "name: This field is required.",
                    metadata = { field = "name", message = "This field is required." } } } } } }
    err = shape_error(function() return ledger():create{} end)
    assert.same({ "validation", 400, "name: This field is required.", "name" },
      { err.code, err.status, err.message, err.errors[1].field })
    assert.same({ data = {} }, sent.json)
    answer = { status = 403, data = { errors = { message = "Forbidden", status = 403 } } }
    assert.equal("forbidden", shape_error(function() return ledger():list() end).code)
    -- a success that happens to carry an errors member is still a success
    answer = { data = { data = { uuid = "u1", name = "Cash" }, errors = { message = "ignored" } } }
    assert.equal("Cash", ledger():get("u1").name)
  end)

  it("payment options: {\"payment_options\": ...} bare, error_type bodies at any status", function()
    local po = resource.account(fake, "aBcD1").invoice_payment_options
    answer = { data = { payment_options = { gateway_name = "stripe" } } }
    assert.equal("stripe", po:get(7).gateway_name)
    assert.equal("/payments/account/aBcD1/invoice/7/payment_options", sent.path)
    assert.equal("stripe", po:create(7, { gateway_name = "stripe" }).gateway_name)
    assert.same({ "POST", { gateway_name = "stripe" } }, { sent.method, sent.json })
    assert.equal("stripe", po:defaults().gateway_name)
    assert.same({ "/payments/account/aBcD1/payment_options", "entity_type=invoice" }, { sent.path, sent.query })
    answer = { data = { response = { result = { payment_options = { gateway_name = "stripe" } } } } }
    assert.equal("bad_response", shape_error(function() return po:get(7) end).code)
    answer = { data = { error_type = "not_found", message = "Resource not found" } }
    local err = shape_error(function() return po:get(7) end)
    assert.same({ "not_found", 200, "Resource not found" }, { err.code, err.status, err.message })
    answer = { status = 400, data = { error_type = "validation", message = "A validation error occurred.",
      errors = { { error_type = "type_error.enum", message = "not a valid enumeration member",
                   field = "entity_type" } } } }
    err = shape_error(function() return po:defaults() end)
    assert.same({ "validation", "not a valid enumeration member", "entity_type" },
      { err.code, err.message, err.errors[1].field })
  end)

  it("systems and service rates keep their families' shapes", function()
    answer = { data = { response = { result = { system = { id = 1 } } } } }
    local acct = resource.account(fake, "aBcD1")
    assert.equal(1, acct.systems:get(1).id)
    assert.equal("/accounting/account/aBcD1/systems/systems/1", sent.path)
    answer = { data = { data = { id = 1 } } }
    assert.equal("bad_response", shape_error(function() return acct.systems:get(1) end).code)
    local rates = resource.business(fake, 1000001).service_rates
    answer = { data = { service_rates = { { rate = "1.00", service_id = 1 } } } }
    assert.equal("1.00", rates:list()[1].rate)
    assert.equal("/comments/business/1000001/service_rates", sent.path)
    answer = { data = { response = { result = { service_rates = { { rate = "1.00" } } } } } }
    assert.equal("bad_response", shape_error(function() return rates:list() end).code)
    answer = { data = { service_rates = { rate = "1.00" } } }
    assert.equal("bad_response", shape_error(function() return rates:list() end).code)
  end)

  it("refuses ids built to leave the resource path, before anything is sent", function()
    sent = nil
    local acct = resource.account(fake, "aBcD1")
    for _, id in ipairs { "..", ".", "a/b", "%2e%2e", "x y", "7?entity_type=bill", "7#x", "", 1.5, true } do
      assert.has_error(function() resource.accounting_business(fake, id) end)
      assert.has_error(function() ledger():get(id) end)
      assert.has_error(function() ledger():update(id, { name = "x" }) end)
      assert.has_error(function() acct.invoice_payment_options:get(id) end)
      assert.has_error(function() acct.invoice_payment_options:create(id, {}) end)
      assert.has_error(function() acct.systems:get(id) end)
    end
    assert.is_nil(sent)
  end)
end)
