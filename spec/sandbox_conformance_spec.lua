-- The sandbox answers like FreshBooks: every endpoint of spec/shapes/freshbooks.lua (every catalogue
-- verb, every report, each family's errors) driven against a running sandbox, each answer checked
-- against its shape (missing fields, extra fields, types, formats, envelope, status). Prints
--   N endpoints, N conform, N differ
-- and fails on any difference not in KNOWN (each with its reason). Run alone:
--   SPECS=spec/sandbox_conformance_spec.lua LUAS=lua5.4 ./spec/run
local sandbox = require "support.sandbox"
local shapes = require "shapes.freshbooks"
local check = require "shapes.check"

-- Differences the sandbox keeps on purpose, by endpoint key: why each is not fixed. Keep it short.
local KNOWN = {
}

describe("the shape checker", function()
  -- The spec must be able to fail: feed it answers that are wrong in each way it claims to see.
  local R = shapes.records
  local function one(record) return shapes.envelopes.one("client", record) end
  local good = [[{"response":{"result":{"client":{"accounting_systemid":"a","allow_email_include_pdf":false,
    "allow_late_fees":true,
    "allow_late_notifications":true,"bus_phone":"","company_industry":null,"company_size":null,"currency_code":"USD",
    "direct_link_token":null,"email":"","fax":"","fname":"","has_retainer":null,"home_phone":null,"id":1,
    "language":"en","last_activity":null,"last_login":null,"level":0,"lname":"","mob_phone":"","note":null,
    "notified":false,"num_logins":0,"organization":"","p_city":"","p_code":"","p_country":"","p_province":"",
    "p_street":"","p_street2":"","pref_email":true,"pref_gmail":false,"retainer_id":null,"role":"client",
    "s_city":"","s_code":"","s_country":"","s_province":"","s_street":"","s_street2":"",
    "signup_date":"2025-01-01 10:00:00","statement_token":null,"subdomain":null,"updated":"2025-01-01 05:00:00",
    "userid":1,"username":"u","vat_name":null,"vat_number":null,"vis_state":0}}}}]]
  local function diffs(body)
    return check.value(one(R.client), assert(check.decode(body)))
  end

  it("passes a conforming answer", function()
    assert.same({}, diffs(good))
  end)

  it("sees a missing field, an extra field, a wrong type, a wrong format, a wrong envelope", function()
    local d = diffs((good:gsub('"username":"u",', "")))
    assert.same({ "$.response.result.client.username: missing" }, d)
    d = diffs((good:gsub('"username":"u"', '"username":"u","bogus":1')))
    assert.same({ "$.response.result.client.bogus: extra field" }, d)
    d = diffs((good:gsub('"id":1', '"id":"1"')))
    assert.same({ '$.response.result.client.id: int expected, got string "1"' }, d)
    d = diffs((good:gsub('"updated":"2025%-01%-01 05:00:00"', '"updated":"2025-01-01T05:00:00Z"')))
    assert.same({ '$.response.result.client.updated: eastern expected, got string "2025-01-01T05:00:00Z"' }, d)
    d = check.value(one(R.client), assert(check.decode('{"client":{}}')))
    assert.same({ "$.response: missing", "$.client: extra field" }, d)
  end)

  it("tells [] from {}, money objects from numbers, and null from a value", function()
    local list = shapes.envelopes.list("taxes", R.tax)
    local d = check.value(list, assert(check.decode('{"response":{"result":{"taxes":{},"page":1,"pages":0,'
      .. '"per_page":15,"total":0}}}')))
    assert.same({ "$.response.result.taxes: array expected, got object" }, d)
    d = check.value({ fields = { amount = "money" } }, assert(check.decode('{"amount":{"amount":12.5,"code":"USD"}}')))
    assert.same(1, #d)
    d = check.value({ fields = { amount = "money" } },
      assert(check.decode('{"amount":{"amount":"12.50","code":"USD"}}')))
    assert.same({}, d)
    d = check.value({ fields = { a = "int", b = "?int" } }, assert(check.decode('{"a":null,"b":null}')))
    assert.same({ "$.a: int expected, got null" }, d)
  end)
end)

describe("sandbox conformance", function()
  local sb, token
  local A, BID = "/accounting/account/aBcD1/", "1000001"
  local results = {} -- key -> { diffs }
  local function H(extra)
    local h = { Authorization = "Bearer " .. token }
    for k, v in pairs(extra or {}) do h[k] = v end
    return h
  end

  -- One request checked against the endpoint `key` (its shape and status). Returns the decoded body.
  local function drive(key, req, status)
    local want = shapes.endpoints[key .. " " .. (status or 200)] or shapes.endpoints[key .. " " .. 201]
    assert(want, "no shape for " .. key)
    local res = req.multipart and sb:http(req) or sb:fetch(req)
    local d = {}
    if res.status ~= want.status then
      d[#d + 1] = ("status %s, FreshBooks answers %d"):format(tostring(res.status), want.status)
    end
    local body
    if want.status ~= 204 then
      local err
      body, err = check.decode(res.body)
      if not body then d[#d + 1] = "body: " .. tostring(err) .. ": " .. res.body:sub(1, 120)
      else for _, x in ipairs(check.value(want.body, body)) do d[#d + 1] = x end end
    elseif res.body ~= "" then
      d[#d + 1] = "a 204 with a body"
    end
    local r = results[want.key .. " " .. want.status] or {}
    for _, x in ipairs(d) do r[#r + 1] = x end
    results[want.key .. " " .. want.status] = r
    return body, res
  end

  setup(function()
    sb = sandbox.start{ invoices = 40, seed = 5 }
    token = sb:token().access_token
  end)
  teardown(function() if sb then sb:stop() end end)

  local creates = {
    ["users/clients"] = { client = { fname = "Spec", organization = "Conformance Co", email = "c@example.com" } },
    ["invoices/invoices"] = { invoice = { customerid = "10001", create_date = "2025-06-01",
      lines = { { name = "Work", qty = 2, unit_cost = { amount = "10.00", code = "USD" } } } } },
    ["estimates/estimates"] = { estimate = { customerid = 10001, create_date = "2025-06-01",
      lines = { { name = "Work", qty = 1, unit_cost = { amount = "99.00", code = "USD" } } } } },
    ["expenses/expenses"] = { expense = { categoryid = "2001", staffid = "1", date = "2025-06-01",
      amount = { amount = "12.50", code = "USD" } } },
    ["items/items"] = { item = { name = "Spec item", qty = "3", unit_cost = { amount = "5.00", code = "USD" },
      tax1 = "1" } },
    ["payments/payments"] = { payment = { invoiceid = 1, amount = { amount = "1.00", code = "USD" },
      date = "2025-06-02", type = "Cash" } },
    ["taxes/taxes"] = { tax = { name = "PST", amount = "7", number = "P-7" } },
    ["credit_notes/credit_notes"] = { credit_note = { clientid = "10001", create_date = "2025-06-01",
      lines = { { name = "Refund", qty = 1, unit_cost = { amount = "20.00", code = "USD" } } } } },
    ["other_incomes/other_incomes"] = { other_income = { amount = { amount = "113.00", code = "USD" },
      category_name = "online_sales", date = "2025-06-01", payment_type = "Visa", source = "Etsy",
      taxes = { { amount = "3", name = "HST" } } } },
    ["bills/bills"] = { bill = { vendorid = 301, issue_date = "2025-06-01", due_offset_days = 30,
      currency_code = "USD", language = "en", lines = { { categoryid = 2001, description = "Raw material",
      quantity = 10, unit_cost = { amount = "15.00", code = "USD" } } } } },
    ["bill_payments/bill_payments"] = { bill_payment = { billid = 1, amount = { amount = "1.00", code = "USD" },
      paid_date = "2025-06-01", payment_type = "Check" } },
    ["bill_vendors/bill_vendors"] = { bill_vendor = { vendor_name = "IKEA", currency_code = "USD", language = "en",
      is_1099 = false } },
    ["invoice_profiles/invoice_profiles"] = { invoice_profile = { customerid = 10001, frequency = "m",
      create_date = "2025-06-01" } },
    ["projects/tasks"] = { task = { name = "Walking Dogs", rate = { amount = "25.47", code = "USD" } } },
    ["journal_entries/journal_entries"] = { journal_entry = { name = "Adjust", user_entered_date = "2025-06-01",
      currency_code = "USD", description = "Spec", details = { { debit = "200", sub_accountid = 4041 },
      { credit = "200", sub_accountid = 4041 } } } },
  }
  local updates = { clients = "note", invoices = "notes", estimates = "notes", expenses = "notes",
    items = "description", payments = "note", taxes = "number", credit_notes = "notes", other_incomes = "note",
    bills = "bill_number", bill_payments = "note", bill_vendors = "website", invoice_profiles = "notes",
    tasks = "description", staffs = "note" }
  local ID_KEYS = { other_income = "incomeid", bill_vendor = "vendorid" }

  it("answers every accounting resource, verb by verb, in FreshBooks' shapes", function()
    for _, r in ipairs(shapes.accounting) do
      local path, single, plural, verbs = r[1], r[2], r[3], r[5]
      local key = "/accounting/account/{account_id}/" .. path
      local idk = ID_KEYS[single] or "id"
      local first
      if verbs:find("l") then
        local body = drive("GET " .. key, { path = A .. path .. "?per_page=5&include[]=lines", headers = H() })
        local list = body and body.response and body.response.result and body.response.result[plural]
        first = type(list) == "table" and list[1] and list[1][idk]
      end
      if verbs:find("g") then
        drive("GET " .. key .. "/{id}", { path = A .. path .. "/" .. tostring(first), headers = H() })
        drive("GET " .. key .. "/{id}", { path = A .. path .. "/" .. tostring(first) .. "?include[]=lines",
          headers = H() })
      end
      local made
      if verbs:find("c") then
        local body = drive("POST " .. key, { method = "POST", path = A .. path, headers = H(), json = creates[path] })
        local rec = body and body.response and body.response.result and body.response.result[single]
        made = type(rec) == "table" and rec[idk]
      end
      local target = made or first
      local field = updates[path:match("/(.*)$")] or updates[plural]
      if verbs:find("u") then
        drive("PUT " .. key .. "/{id}", { method = "PUT", path = A .. path .. "/" .. tostring(target), headers = H(),
          json = { [single] = { [field] = "changed by the spec" } } })
      end
      if verbs:find("d") then
        drive("DELETE " .. key .. "/{id}", { method = "DELETE", path = A .. path .. "/" .. tostring(target),
          headers = H() })
      end
    end
    drive("GET " .. A:gsub("aBcD1", "{account_id}") .. "systems/systems/{id}",
      { path = A .. "systems/systems/1000001", headers = H() })
    drive("GET /accounting/account/{account_id}/invoices/invoices/{id}/share_link",
      { path = A .. "invoices/invoices/2/share_link?share_method=share_link", headers = H() })
  end)

  it("answers every report in FreshBooks' shapes, at each path it is served (with and without parameters)", function()
    local BIZ = "/accounting/businesses/4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001/reports/"
    local queries = { "?start_date=2024-07-01&end_date=2025-06-30&resolution=3m",
                      "?dates[]=2024-12-31&dates[]=2025-06-30&group_by=clients&date_type=paid", "" }
    for _, q in ipairs(queries) do
      for _, k in ipairs(shapes.reports) do
        if k[4]:find("a") then
          drive("GET /accounting/account/{account_id}/reports/accounting/" .. k[1],
            { path = A .. "reports/accounting/" .. k[1] .. q, headers = H() })
        end
        if k[4]:find("b") then
          drive("GET /accounting/businesses/{business_uuid}/reports/" .. k[1],
            { path = BIZ .. k[1] .. q, headers = H() })
        end
      end
    end
    -- a multi-currency business, in its second currency; a journal entry in the ledger reports
    drive("GET /accounting/account/{account_id}/reports/accounting/payments_collected",
      { path = "/accounting/account/xYz92/reports/accounting/payments_collected", headers = H() })
    sb:http{ method = "POST", path = A .. "journal_entries/journal_entries", headers = H(), json = { journal_entry = {
      name = "Owner draw", user_entered_date = "2025-06-01", currency_code = "USD", description = "spec",
      details = { { debit = "50.00", sub_accountid = 4041 }, { credit = "50.00", sub_accountid = 401 } } } } }
    for _, k in ipairs { "manual_journal_entry", "general_ledger", "trial_balance" } do
      drive("GET /accounting/account/{account_id}/reports/accounting/" .. k,
        { path = A .. "reports/accounting/" .. k, headers = H() })
    end
    for _, k in ipairs { "invoice_details", "accounts_aging", "general_ledger" } do
      drive("GET /accounting/account/{account_id}/reports/accounting/" .. k,
        { path = "/accounting/account/xYz92/reports/accounting/" .. k .. "?currency_code=USD", headers = H() })
    end
  end)

  it("answers team members and an accepted estimate", function()
    local TM = "/auth/api/v1/businesses/{business_id}/team_members"
    local list = drive("GET " .. TM, { path = "/auth/api/v1/businesses/1000001/team_members", headers = H() })
    drive("GET " .. TM, { path = "/auth/api/v1/businesses/1000002/team_members?active=true&per_page=1&page=2",
      headers = H() })
    drive("GET " .. TM .. "/{uuid}", { path = "/auth/api/v1/businesses/1000001/team_members/" .. list.response[1].uuid,
      headers = H() })
    drive("ERROR identity 404", { path = "/auth/api/v1/businesses/1000001/team_members/nobody", headers = H() }, 404)
    local est = drive("PUT /accounting/account/{account_id}/estimates/estimates/{id}", { method = "PUT",
      path = A .. "estimates/estimates/2", headers = H(), json = { estimate = { action_accept = true } } })
    assert.equal(5, est.response.result.estimate.status)
  end)

  it("answers webhook callbacks, the project family, payment options, ledger accounts and identity", function()
    local EV = "/events/account/{account_id}/events/callbacks"
    local cb = drive("POST " .. EV, { method = "POST", path = "/events/account/aBcD1/events/callbacks", headers = H(),
      json = { callback = { event = "invoice.create", uri = sb.url .. "/_sandbox/inbox" } } })
    local cid = cb.response.result.callback.callbackid
    drive("GET " .. EV, { path = "/events/account/aBcD1/events/callbacks", headers = H() })
    drive("GET " .. EV .. "/{id}", { path = "/events/account/aBcD1/events/callbacks/" .. cid, headers = H() })
    drive("PUT " .. EV .. "/{id}", { method = "PUT", path = "/events/account/aBcD1/events/callbacks/" .. cid,
      headers = H(), json = { callback = { resend = true } } })
    drive("DELETE " .. EV .. "/{id}", { method = "DELETE", path = "/events/account/aBcD1/events/callbacks/" .. cid,
      headers = H() })

    local P, T, C = "/projects/business/{business_id}/", "/timetracking/business/{business_id}/time_entries",
      "/comments/business/{business_id}/"
    local p, t, c = "/projects/business/" .. BID .. "/", "/timetracking/business/" .. BID .. "/time_entries",
      "/comments/business/" .. BID .. "/"
    drive("GET " .. P .. "projects", { path = p .. "projects?per_page=3", headers = H() })
    drive("GET " .. P .. "projects", { path = p .. "projects?include_logged_duration=true&skip_group=true",
      headers = H() })
    local proj = drive("POST " .. P .. "project", { method = "POST", path = p .. "project", headers = H(),
      json = { project = { title = "Some project", description = "a project", client_id = "10001" } } })
    local pid = proj.project.id
    drive("GET " .. P .. "project/{id}", { path = p .. "project/" .. pid, headers = H() })
    drive("PUT " .. P .. "project/{id}", { method = "PUT", path = p .. "project/" .. pid, headers = H(),
      json = { project = { title = "Some changed project" } } })
    drive("GET " .. T, { path = t .. "?per_page=3", headers = H() })
    local te = drive("POST " .. T, { method = "POST", path = t, headers = H(), json = { time_entry = {
      client_id = 10001, duration = 360, internal = true, is_logged = true,
      started_at = "2025-01-21T10:00:00.000Z" } } })
    local tid = te.time_entry.id
    drive("GET " .. T .. "/{id}", { path = t .. "/" .. tid, headers = H() })
    drive("PUT " .. T .. "/{id}", { method = "PUT", path = t .. "/" .. tid, headers = H(),
      json = { time_entry = { duration = 680 } } })
    drive("GET " .. C .. "services", { path = c .. "services", headers = H() })
    local svc = drive("POST " .. C .. "service", { method = "POST", path = c .. "service", headers = H(),
      json = { service = { name = "Document Review" } } })
    local sid = svc.service.id
    drive("GET " .. C .. "service/{id}", { path = c .. "service/" .. sid, headers = H() })
    drive("PUT " .. C .. "service/{id}", { method = "PUT", path = c .. "service/" .. sid, headers = H(),
      json = { service = { name = "Document Review II" } } })
    drive("POST " .. C .. "service/{id}/rate", { method = "POST", path = c .. "service/" .. sid .. "/rate",
      headers = H(), json = { service_rate = { rate = "10.0" } } })
    drive("PUT " .. C .. "service/{id}/rate", { method = "PUT", path = c .. "service/" .. sid .. "/rate",
      headers = H(), json = { service_rate = { rate = "12.5" } } })
    drive("GET " .. C .. "service/{id}/rate", { path = c .. "service/" .. sid .. "/rate", headers = H() })
    drive("GET " .. C .. "service_rates", { path = c .. "service_rates", headers = H() })
    drive("DELETE " .. P .. "project/{id}", { method = "DELETE", path = p .. "project/" .. pid, headers = H() }, 204)
    drive("DELETE " .. T .. "/{id}", { method = "DELETE", path = t .. "/" .. tid, headers = H() }, 204)
    drive("DELETE " .. C .. "service/{id}", { method = "DELETE", path = c .. "service/" .. sid, headers = H() }, 204)

    local PO = "/payments/account/{account_id}/"
    drive("POST " .. PO .. "invoice/{id}/payment_options", { method = "POST",
      path = "/payments/account/aBcD1/invoice/3/payment_options", headers = H(),
      json = { gateway_name = "stripe", has_credit_card = true } })
    drive("GET " .. PO .. "invoice/{id}/payment_options",
      { path = "/payments/account/aBcD1/invoice/3/payment_options", headers = H() })
    drive("GET " .. PO .. "payment_options",
      { path = "/payments/account/aBcD1/payment_options?entity_type=invoice", headers = H() })

    local LA = "/accounting/businesses/{business_uuid}/ledger_accounts/accounts"
    local la = "/accounting/businesses/4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001/ledger_accounts/accounts"
    local list = drive("GET " .. LA, { path = la, headers = H() })
    drive("GET " .. LA .. "/{uuid}", { path = la .. "/" .. list.data[1].uuid, headers = H() })
    local made = drive("POST " .. LA, { method = "POST", path = la, headers = H(), json = { data = {
      name = "Spec Expenses", type = "expense", sub_type = "Operating Expense", number = "6100" } } }, 201)
    drive("PUT " .. LA .. "/{uuid}", { method = "PUT", path = la .. "/" .. made.data.uuid, headers = H(),
      json = { data = { description = "changed" } } })

    drive("GET /auth/api/v1/users/me", { path = "/auth/api/v1/users/me", headers = H() })
    local fresh = sb:token()
    drive("POST /auth/oauth/token", { method = "POST", path = "/auth/oauth/token", json = {
      grant_type = "refresh_token", client_id = sb.app.client_id, client_secret = sb.app.client_secret,
      refresh_token = fresh.refresh_token, redirect_uri = sb.app.redirect_uri } })
    drive("POST /auth/oauth/revoke", { method = "POST", path = "/auth/oauth/revoke", json = {
      client_id = sb.app.client_id, client_secret = sb.app.client_secret, token = fresh.access_token } })
  end)

  it("answers each family's errors in its own envelope", function()
    local none = {}
    local narrow = "Bearer " .. sb:token{ scope = "user:profile:read" }.access_token
    local V = { ["X-API-VERSION"] = "2023-02-20" }
    drive("ERROR accounting 401", { path = A .. "users/clients", headers = none }, 401)
    drive("ERROR accounting 403", { path = A .. "users/clients", headers = { Authorization = narrow } }, 403)
    drive("ERROR accounting 404", { path = A .. "users/clients/999999", headers = H() }, 404)
    drive("ERROR accounting 422", { method = "POST", path = A .. "invoices/invoices", headers = H(),
      json = { invoice = { create_date = "2025-01-01" } } }, 422)
    drive("ERROR accounting 400", { path = A .. "invoices/invoices?per_page=abc", headers = H() }, 400)
    drive("ERROR taxes 200", { path = A .. "taxes/taxes/999", headers = H() }, 200)
    drive("ERROR rpc 401", { path = A .. "users/clients", headers = V }, 401)
    drive("ERROR rpc 404", { path = A .. "invoices/invoices/999999", headers = H(V) }, 404)
    drive("ERROR rpc 404", { path = A .. "no/such/thing", headers = H(V) }, 404)
    drive("ERROR rpc 422", { method = "POST", path = A .. "bill_payments/bill_payments", headers = H(),
      json = { bill_payment = { billid = 1, amount = { amount = 5 }, paid_date = "2025-01-01" } } }, 422)
    drive("ERROR identity 401", { path = "/auth/api/v1/users/me", headers = none }, 401)
    drive("ERROR token 400", { method = "POST", path = "/auth/oauth/token", json = { client_id = sb.app.client_id,
      client_secret = sb.app.client_secret } }, 400)
    drive("ERROR token 401", { method = "POST", path = "/auth/oauth/token", json = { grant_type = "refresh_token",
      client_id = sb.app.client_id, client_secret = "wrong", refresh_token = "x" } }, 401)
    drive("ERROR events 401", { path = "/events/account/aBcD1/events/callbacks", headers = none }, 401)
    drive("ERROR events 404", { path = "/events/account/aBcD1/events/callbacks/999", headers = H() }, 404)
    drive("ERROR events 422", { method = "POST", path = "/events/account/aBcD1/events/callbacks", headers = H(),
      json = { callback = { event = "invoice.create", uri = "not a uri" } } }, 422)
    drive("ERROR project 404", { path = "/projects/business/1000001/project/1", headers = H() }, 404)
    drive("ERROR project 422", { method = "POST", path = "/projects/business/1000001/project", headers = H(),
      json = { project = { description = "no title" } } }, 422)
    drive("ERROR project 401", { path = "/projects/business/1000001/projects", headers = none }, 401)
    local la = "/accounting/businesses/4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001/ledger_accounts/accounts"
    drive("ERROR business 400", { method = "POST", path = la, headers = H(), json = { data = { name = "x" } } }, 400)
    drive("ERROR business 404", { path = la .. "/00000000-0000-4000-8000-000000000000", headers = H() }, 404)
    drive("ERROR payments 400", { path = "/payments/account/aBcD1/payment_options", headers = H() }, 400)
    drive("ERROR payments 404", { path = "/payments/account/aBcD1/invoice/5/payment_options", headers = H() }, 404)
  end)

  it("takes uploads and deletes a gateway", function()
    local f = os.tmpname()
    local fh = assert(io.open(f, "wb"))
    fh:write("%PDF-1.4 spec")
    fh:close()
    for _, kind in ipairs { "attachments", "images" } do
      drive("POST /uploads/account/{account_id}/" .. kind, { method = "POST",
        path = "/uploads/account/aBcD1/" .. kind, headers = H(), multipart = { { "content", "@" .. f } } })
    end
    os.remove(f)
    drive("DELETE /accounting/account/{account_id}/systems/gateways/{id}", { method = "DELETE",
      path = A .. "systems/gateways/1", headers = H() })
  end)

  it("drives every endpoint the shapes describe, and differs only where KNOWN says why", function()
    local missing = {}
    for _, e in ipairs(shapes.endpoints) do
      if not results[e.key .. " " .. e.status] then missing[#missing + 1] = e.key .. " " .. e.status end
    end
    assert.same({}, missing)
    local keys = {}
    for k in pairs(results) do keys[#keys + 1] = k end
    table.sort(keys)
    local conform, differ, unexplained = 0, 0, {}
    for _, k in ipairs(keys) do
      local d = results[k]
      if #d == 0 then conform = conform + 1 else
        differ = differ + 1
        if not KNOWN[k] then
          unexplained[#unexplained + 1] = k .. ":\n    " .. table.concat(d, "\n    ", 1, math.min(#d, 12))
        end
      end
    end
    for k in pairs(KNOWN) do
      assert(results[k] and #results[k] > 0, "KNOWN lists " .. k .. ", which conforms now: take it off the list")
    end
    print(("%d endpoints, %d conform, %d differ"):format(#keys, conform, differ))
    assert(#unexplained == 0, "differences nobody explained:\n  " .. table.concat(unexplained, "\n  "))
  end)
end)
