-- The client reads every envelope spec/shapes/freshbooks.lua describes, as the sandbox now answers them:
-- errors.lua finds each family's message, errno and field errors; resource.lua unwraps every record and
-- list (through a session, the way users call it). Answers are checked against their shape first, so a
-- body the client parses is one FreshBooks would send.
local sandbox = require "support.sandbox"
local shapes = require "shapes.freshbooks"
local check = require "shapes.check"
local errors = require "freshbooks.errors"
local catalogue = require "freshbooks.catalogue"
local H = require "support.fbtest"

describe("the client reads the sandbox's envelopes", function()
  local sb, token
  local A = "/accounting/account/aBcD1/"
  setup(function()
    sb = sandbox.start{ invoices = 20, seed = 2 }
    token = sb:token().access_token
  end)
  teardown(function() if sb then sb:stop() end end)

  -- The answer to `req`, checked against the shape `key`, then read by errors.from_response.
  local function read(key, req)
    local res = sb:http(req)
    local want = shapes.endpoints[key]
    assert(want, key)
    assert.equals(want.status, res.status, key .. ": " .. res.body)
    assert.same({}, check.value(want.body, assert(check.decode(res.body))), key)
    return errors.from_response{ status = res.status, headers = res.headers, body = res.body }, res
  end
  local function auth(extra)
    local h = { Authorization = "Bearer " .. token }
    for k, v in pairs(extra or {}) do h[k] = v end
    return h
  end

  it("accounting legacy errors: 401 errno 1003, 404 errno 1012 with its field, 422 field errors, 200 bodies", function()
    local e = read("ERROR accounting 401 401", { path = A .. "users/clients" })
    assert.same({ "unauthorized", 401, 1003 }, { e.code, e.status, e.errno })
    assert.matches("authorized", e.message)
    e = read("ERROR accounting 404 404", { path = A .. "users/clients/424242", headers = auth() })
    assert.same({ "not_found", 404, 1012, "userid", "client", "424242" },
      { e.code, e.status, e.errno, e.errors[1].field, e.errors[1].object, e.errors[1].value })
    assert.equals("Client not found.", e.message)
    e = read("ERROR accounting 422 422", { method = "POST", path = A .. "invoices/invoices", headers = auth(),
      json = { invoice = { customerid = 10001 } } })
    assert.same({ "validation", 1001, "create_date" }, { e.code, e.errno, e.errors[1].field })
    e = read("ERROR accounting 400 400", { path = A .. "invoices/invoices?page=x", headers = auth() })
    assert.same({ "bad_request", 1014, "page" }, { e.code, e.errno, e.errors[1].field })
    e = read("ERROR taxes 200 200", { path = A .. "taxes/taxes/999", headers = auth() })
    assert.same({ "not_found", 200, 1012 }, { e.code, e.status, e.errno })
    local narrow = sb:token{ scope = "user:profile:read" }.access_token
    e = read("ERROR accounting 403 403", { path = A .. "users/clients",
      headers = { Authorization = "Bearer " .. narrow } })
    assert.same({ "forbidden", 1003 }, { e.code, e.errno })
  end)

  it("google.rpc errors under X-API-VERSION and from the newer endpoints: code 16, 5, 3 with details", function()
    local V = { ["X-API-VERSION"] = "2023-02-20" }
    local e = read("ERROR rpc 401 401", { path = A .. "users/clients", headers = V })
    assert.same({ "unauthorized", 401, 16, 1003 }, { e.code, e.status, e.rpc_code, e.errno })
    e = read("ERROR rpc 404 404", { path = A .. "invoices/invoices/999999", headers = auth(V) })
    assert.same({ "not_found", 5, 1012, "invoiceid" }, { e.code, e.rpc_code, e.errno, e.errors[1].field })
    assert.equals("Invoice not found.", e.message)
    e = read("ERROR rpc 422 422", { method = "POST", path = A .. "bills/bills", headers = auth(),
      json = { bill = { vendorid = 301 } } })
    assert.same({ "validation", 3, 1001, "issue_date" }, { e.code, e.rpc_code, e.errno, e.errors[1].field })
    -- as FreshBooks writes them: the status in the top message, the text in the metadata, "" for none
    local _, res = read("ERROR rpc 401 401", { path = A .. "users/clients", headers = V })
    assert.equals("Request failed with status_code: 401", res.json.message)
    assert.same({ field = "", object = "", value = "" }, { field = res.json.details[1].metadata.field,
      object = res.json.details[1].metadata.object, value = res.json.details[1].metadata.value })
    assert.matches("authorized", res.json.details[1].metadata.message)
    e = read("ERROR rpc 404 404", { path = A .. "no/such/thing", headers = auth(V) })
    assert.same({ "not_found", 5 }, { e.code, e.rpc_code })
    e, res = read("ERROR rpc 404 404", { path = A .. "users/clients/424242", headers = auth(V) })
    assert.equals("Request failed with status_code: 404", res.json.message)
    assert.same({ "Client not found.", "userid", "client", "424242" },
      { e.message, e.errors[1].field, e.errors[1].object, e.errors[1].value })
  end)

  it("events, project, accounting-business, payments and OAuth errors, each with its message", function()
    local e = read("ERROR events 401 401", { path = "/events/account/aBcD1/events/callbacks" })
    assert.same({ "unauthorized", 401 }, { e.code, e.errno })
    assert.matches("^invalid_token: ", e.message)
    e = read("ERROR events 422 422", { method = "POST", path = "/events/account/aBcD1/events/callbacks",
      headers = auth(), json = { callback = { event = "invoice.create", uri = "nope" } } })
    assert.same({ "validation", 422, "uri: Not a valid URL." }, { e.code, e.errno, e.errors[1].message })
    e = read("ERROR events 404 404", { path = "/events/account/aBcD1/events/callbacks/9", headers = auth() })
    assert.same({ "not_found", "Callback not found." }, { e.code, e.message })
    e = read("ERROR project 422 422", { method = "POST", path = "/projects/business/1000001/project",
      headers = auth(), json = { project = { description = "untitled" } } })
    assert.same({ "validation", 2001, "title" }, { e.code, e.errno, e.errors[1].field })
    e = read("ERROR project 404 404", { path = "/projects/business/1000001/project/9", headers = auth() })
    assert.same({ "not_found", "Requested resource could not be found." }, { e.code, e.message })
    e = read("ERROR project 401 401", { path = "/projects/business/1000001/projects" })
    assert.equals("unauthorized", e.code)
    local la = "/accounting/businesses/4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001/ledger_accounts/accounts"
    e = read("ERROR business 400 400", { method = "POST", path = la, headers = auth(), json = { data = {} } })
    assert.equals("validation", e.code)
    local fields = {}
    for _, fe in ipairs(e.errors) do fields[#fields + 1] = fe.field end
    table.sort(fields)
    assert.same({ "name", "sub_type", "type" }, fields)
    e = read("ERROR payments 400 400", { path = "/payments/account/aBcD1/payment_options", headers = auth() })
    assert.same({ "validation", "entity_type" }, { e.code, e.errors[1].field })
    e = read("ERROR payments 404 404", { path = "/payments/account/aBcD1/invoice/2/payment_options", headers = auth() })
    assert.same({ "not_found", "Resource not found" }, { e.code, e.message })
    e = read("ERROR identity 401 401", { path = "/auth/api/v1/users/me" })
    assert.same({ "unauthorized", "unauthenticated" }, { e.code, e.oauth_error })
    e = read("ERROR token 400 400", { method = "POST", path = "/auth/oauth/token", json = {
      grant_type = "refresh_token", client_id = sb.app.client_id, client_secret = sb.app.client_secret,
      refresh_token = "spent" } })
    assert.same({ "invalid_grant", 400 }, { e.code, e.status })
  end)

  it("reads FreshBooks' recorded envelopes the sandbox does not produce", function()
    -- written from the references' shapes: an errno that is an HTTP status, an error_type of its own, a
    -- google.rpc error sent with HTTP 200, field metadata on a business error
    local cases = {
      { 404, '{"response":{"errors":[{"errno":404,"message":"Account not found"}]}}', "not_found",
        "Account not found" },
      { 400, '{"error_type":"invalid_cc_type","message":"Invalid CC type"}', "bad_request", "Invalid CC type" },
      { 200, '{"code":5,"message":"Bill not found.","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo",'
        .. '"reason":"1012","domain":"d","metadata":{"field":"billid"}}]}', "not_found", "Bill not found." },
      { 409, '{"errors":{"message":"Request failed with status code 409","status":409,"details":[{"reason":'
        .. '"number: taken","metadata":{"field":"number","message":"taken"}}]}}', "conflict", "number: taken" },
    }
    for _, c in ipairs(cases) do
      local e = errors.from_response{ status = c[1], headers = { ["content-type"] = "application/json" }, body = c[2] }
      assert(e, c[2])
      assert.same({ c[3], c[4] }, { e.code, e.message }, c[2])
    end
  end)

  it("unwraps every catalogue record and list through a session, with the record's own id key", function()
    local fb = H.session(sb)
    local acct = fb:account("aBcD1")
    local ID = { other_incomes = "incomeid", bill_vendors = "vendorid" }
    local n = 0
    for _, entry in ipairs(catalogue.entries) do
      if entry.family == "accounting" and entry.verbs.list and entry.verbs.get then
        local list, meta = acct[entry.name]:list{ per_page = 2 }
        assert(list, entry.name .. ": " .. tostring(meta))
        assert.is_number(meta.total, entry.name)
        local id = list[1] and list[1][ID[entry.name] or "id"]
        assert.is_number(id, entry.name)
        local rec, err = acct[entry.name]:get(id)
        assert(rec, entry.name .. ": " .. tostring(err))
        assert.equals(id, rec[ID[entry.name] or "id"], entry.name)
        n = n + 1
      end
    end
    assert.is_true(n >= 16)
    local biz = fb:business(1000001)
    for _, name in ipairs { "projects", "time_entries", "services" } do
      local list = assert(biz[name]:list{ per_page = 2 })
      assert(biz[name]:get(list[1].id), name)
    end
    local pl = assert(acct.reports.profit_and_loss:get{ resolution = "m", start_date = "2025-01-01" })
    assert.equals(6, #pl.dates)
    assert.equals(6, #pl.net_profit.data)
  end)
end)
