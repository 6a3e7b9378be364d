-- Accounting and project resources: pagination, filters, includes, sort, CRUD, error shapes.
local sandbox = require "support.sandbox"

describe("sandbox resources", function()
  local sb, auth
  local A = "/accounting/account/aBcD1/"
  local function get(path) return sb:fetch{ path = path, headers = auth } end
  local function send(method, path, tbl) return sb:fetch{ method = method, path = path, headers = auth, json = tbl } end
  local function result(r) return r.json.response.result end

  setup(function()
    sb = sandbox.start{ invoices = 250, seed = 3 }
    auth = { Authorization = "Bearer " .. sb:token().access_token }
  end)
  teardown(function() sb:stop() end)

  it("pages like FreshBooks: default 15, cap 100, page 0 = 1, past the end empty", function()
    local r = result(get(A .. "invoices/invoices"))
    assert.equals(15, #r.invoices)
    assert.equals(15, r.per_page)
    local total = r.total
    assert.is_true(total > 200 and total <= 250) -- deleted (vis_state 1) never seeded; archived included
    r = result(get(A .. "invoices/invoices?per_page=500"))
    assert.equals(100, r.per_page)
    assert.equals(100, #r.invoices)
    assert.equals(math.ceil(total / 100), r.pages)
    local p0 = result(get(A .. "invoices/invoices?page=0&per_page=5"))
    local p1 = result(get(A .. "invoices/invoices?page=1&per_page=5"))
    assert.equals(1, p0.page)
    assert.equals(p1.invoices[1].id, p0.invoices[1].id)
    local past = result(get(A .. "invoices/invoices?page=999"))
    assert.equals(0, #past.invoices)
    assert.equals("[]", get(A .. "invoices/invoices?page=999").body:match('"invoices":(%[%])'))
    local last = result(get(A .. "invoices/invoices?per_page=100&page=" .. r.pages))
    assert.equals(total - (r.pages - 1) * 100, #last.invoices)
    local bad = get(A .. "invoices/invoices?per_page=abc")
    assert.equals(400, bad.status)
    assert.equals(1013, bad.json.response.errors[1].errno)
  end)

  it("handles exactly 100 and 101 records", function()
    local sb2 = sandbox.start{ invoices = 101 }
    local h = { Authorization = "Bearer " .. sb2:token().access_token }
    local r = sb2:http{ path = A .. "invoices/invoices?per_page=100&search[vis_state]=0", headers = h }.json
    local n0 = r.response.result.total
    r = sb2:http{ path = A .. "invoices/invoices?per_page=100", headers = h }.json.response.result
    assert.equals(101, r.total)
    assert.equals(2, r.pages)
    r = sb2:http{ path = A .. "invoices/invoices?per_page=100&page=2", headers = h }.json.response.result
    assert.equals(1, #r.invoices)
    assert.equals(101, r.invoices[1].id)
    assert.equals(100, n0) -- invoice 97 is archived
    sb2:stop()
  end)

  it("filters: equals, [] lists, _like, _min/_max, date ranges, vis_state", function()
    local all = result(get(A .. "invoices/invoices?per_page=100")).invoices
    local cid = all[1].customerid
    local r = result(get(A .. "invoices/invoices?per_page=100&search[customerid]=" .. cid))
    assert.is_true(r.total > 0)
    for _, inv in ipairs(r.invoices) do assert.equals(cid, inv.customerid) end
    r = result(get(A .. "invoices/invoices?search[invoiceids][]=3&search[invoiceids][]=5"))
    assert.equals(2, r.total)
    r = result(get(A .. "invoices/invoices?search[invoice_number_like]=000012"))
    assert.equals(11, r.total) -- 0000012 and 0000120..0000129
    r = result(get(A .. "invoices/invoices?per_page=100&search[amount_min]=500&search[amount_max]=1000"))
    for _, inv in ipairs(r.invoices) do
      local a = tonumber(inv.amount.amount)
      assert.is_true(a >= 500 and a <= 1000)
    end
    r = result(get(A .. "invoices/invoices?per_page=100&search[date_min]=2025-01-01&search[date_max]=2025-01-31"))
    assert.is_true(r.total > 0)
    for _, inv in ipairs(r.invoices) do assert.matches("^2025%-01%-", inv.create_date) end
    r = result(get(A .. "invoices/invoices?search[vis_state]=2"))
    for _, inv in ipairs(r.invoices) do assert.equals(2, inv.vis_state) end
    assert.is_true(r.total >= 2)
    r = result(get(A .. "users/clients?search[email_like]=EXAMPLE.COM&per_page=100"))
    assert.equals(48, r.total) -- 50 seeded, 2 deleted
  end)

  it("sorts and includes lines only on request", function()
    local r = result(get(A .. "invoices/invoices?sort=amount_desc&per_page=20"))
    for i = 2, #r.invoices do
      assert.is_true(tonumber(r.invoices[i - 1].amount.amount) >= tonumber(r.invoices[i].amount.amount))
    end
    assert.is_nil(r.invoices[1].lines)
    r = result(get(A .. "invoices/invoices?include[]=lines&per_page=3"))
    local inv = r.invoices[1]
    local sum = 0
    for _, l in ipairs(inv.lines) do sum = sum + tonumber(l.amount.amount) * 100 end
    assert.equals(math.floor(tonumber(inv.amount.amount) * 100 + 0.5), math.floor(sum + 0.5))
    assert.is_string(inv.amount.amount)
    assert.equals("USD", inv.amount.code)
    assert.is_string(inv.outstanding.amount)
    assert.matches("^%d%d%d%d%-%d%d%-%d%d$", inv.due_date)
  end)

  it("creates, updates and deletes through vis_state", function()
    local r = send("POST", A .. "users/clients", { client = { organization = "Sandbox Spec Co", email = "s@x.io" } })
    assert.equals(200, r.status)
    local c = result(r).client
    assert.equals(c.id, c.userid)
    r = send("POST", A .. "invoices/invoices", { invoice = { customerid = c.id, create_date = "2025-07-01",
      lines = { { name = "Work", qty = 3, unit_cost = { amount = "19.99", code = "USD" } } } } })
    assert.equals(200, r.status)
    local inv = result(r).invoice
    assert.equals("59.97", inv.amount.amount)
    assert.equals("59.97", inv.outstanding.amount)
    assert.equals("Sandbox Spec Co", inv.organization)
    r = send("PUT", A .. "invoices/invoices/" .. inv.id, { invoice = { notes = "hello" } })
    assert.equals("hello", result(r).invoice.notes)
    -- a PUT with vis_state ignores every other field
    r = send("PUT", A .. "invoices/invoices/" .. inv.id, { invoice = { vis_state = 1, notes = "ignored" } })
    assert.equals(1, result(r).invoice.vis_state)
    assert.equals("hello", result(r).invoice.notes)
    local listed = result(get(A .. "invoices/invoices?search[invoiceids][]=" .. inv.id))
    assert.equals(0, listed.total)
    listed = result(get(A .. "invoices/invoices?search[vis_state]=1&per_page=100"))
    assert.equals(3, listed.total) -- 250 seeded: 2 deleted, and this one
    assert.equals(inv.id, listed.invoices[3].id)
    -- a payment settles the invoice
    local inv2 = result(send("POST", A .. "invoices/invoices", { invoice = { customerid = c.id,
      create_date = "2025-07-02", lines = { { name = "W", qty = 1, unit_cost = { amount = "100.00" } } } } })).invoice
    r = send("POST", A .. "payments/payments", { payment = { invoiceid = inv2.id, amount = { amount = "100.00" },
      date = "2025-07-03", type = "Check" } })
    assert.equals(200, r.status)
    local after = result(get(A .. "invoices/invoices/" .. inv2.id)).invoice
    assert.equals("0.00", after.outstanding.amount)
    assert.equals("paid", after.payment_status)
  end)

  it("answers each family's error shape", function()
    -- legacy accounting
    local r = get(A .. "users/clients/4242")
    assert.equals(404, r.status)
    local e = r.json.response.errors[1]
    assert.equals(1012, e.errno)
    assert.equals("client", e.object)
    assert.equals("4242", e.value)
    r = send("POST", A .. "invoices/invoices", { invoice = { create_date = "2025-01-01" } })
    assert.equals(422, r.status)
    assert.equals(1001, r.json.response.errors[1].errno)
    r = send("POST", A .. "invoices/invoices", { invoice = { customerid = 1, create_date = "2025-01-01" } })
    assert.equals(1012, r.json.response.errors[1].errno)
    -- 200 with an error body (taxes)
    r = get(A .. "taxes/taxes/999")
    assert.equals(200, r.status)
    assert.equals(1012, r.json.response.errors[1].errno)
    -- google.rpc shape, and money must be strings there
    r = get(A .. "bills/bills/999")
    assert.equals(404, r.status)
    assert.equals(5, r.json.code)
    assert.equals("type.googleapis.com/google.rpc.ErrorInfo", r.json.details[1]["@type"])
    assert.equals("1012", r.json.details[1].reason)
    r = send("POST", A .. "bill_payments/bill_payments", { bill_payment = { billid = 1, amount = { amount = 5 },
      paid_date = "2025-01-01" } })
    assert.equals(422, r.status)
    assert.equals(3, r.json.code)
    -- project family
    r = get("/projects/business/1000001/project/1")
    assert.equals(404, r.status)
    assert.is_string(r.json.error)
    r = send("POST", "/projects/business/1000001/project", { project = { description = "no title" } })
    assert.equals(422, r.status)
    assert.equals(2001, r.json.errno)
    assert.is_string(r.json.error.title)
    -- events
    r = get("/events/account/aBcD1/events/callbacks/77")
    assert.equals(404, r.status)
    assert.equals(404, r.json.errno)
  end)

  it("serves the project family with its own shapes", function()
    local r = get("/projects/business/1000001/projects?per_page=5&page=2")
    assert.equals(200, r.status)
    assert.equals(5, #r.json.projects)
    assert.equals(2, r.json.meta.page)
    assert.equals(12, r.json.meta.total)
    assert.is_nil(r.json.response)
    r = get("/projects/business/1000001/projects?complete=true")
    for _, p in ipairs(r.json.projects) do assert.is_true(p.complete) end
    r = send("POST", "/projects/business/1000001/project", { project = { title = "New", client_id = 10001 } })
    assert.equals(200, r.status)
    local id = r.json.project.id
    assert.matches("^%d+%-%d+%-%d+T%d+:%d+:%d+$", r.json.project.created_at) -- projects write no Z
    r = sb:http{ method = "DELETE", path = "/projects/business/1000001/project/" .. id, headers = auth }
    assert.equals(204, r.status)
    assert.equals("", r.body)
    r = get("/timetracking/business/1000001/time_entries?per_page=100&sort=-started_at")
    assert.equals(59, r.json.meta.total) -- 60 seeded, the last one deleted
    for i = 2, #r.json.time_entries do
      assert.is_true(r.json.time_entries[i - 1].started_at >= r.json.time_entries[i].started_at)
    end
    assert.equals(60, get("/timetracking/business/1000001/time_entries?include_deleted=true").json.meta.total)
    r = send("POST", "/timetracking/business/1000001/time_entries", { time_entry = { is_logged = true,
      duration = 3600, started_at = "2025-06-01T10:00:00Z", project_id = 501 } })
    assert.equals(200, r.status)
    assert.equals(3600, r.json.time_entry.duration)
    r = get("/comments/business/1000001/service/701/rate")
    assert.equals("75.00", r.json.service_rate.rate)
  end)

  it("shares, e-mails and marks invoices and estimates as sent", function()
    local function outbox() return sb:admin("GET", "/_sandbox/outbox").outbox end
    sb:admin("DELETE", "/_sandbox/outbox")
    local inv = result(send("POST", A .. "invoices/invoices", { invoice = { customerid = 10001,
      create_date = "2025-07-01", lines = { { name = "W", qty = 1, unit_cost = { amount = "10.00" } } } } })).invoice
    assert.same({ 1, "draft" }, { inv.status, inv.v3_status })
    local path = A .. "invoices/invoices/" .. inv.id
    -- share links: one stable link per invoice; strict about share_method and the id
    local r = get(path .. "/share_link?share_method=share_link")
    assert.equals(200, r.status)
    local link = result(r).share_link
    assert.same({ inv.id, "invoice", 10001 }, { link.resourceid, link.resource_type, link.clientid })
    assert.matches("^https://127%.0%.0%.1:%d+/#/link/%x+%?type=secondary&share_method=share_link$", link.share_link)
    assert.equals(link.share_link, result(get(path .. "/share_link?share_method=share_link")).share_link.share_link)
    r = get(A .. "invoices/invoices/999999/share_link?share_method=share_link")
    assert.equals(404, r.status)
    assert.same({ 1012, "invoice", "999999" }, { r.json.response.errors[1].errno, r.json.response.errors[1].object,
      r.json.response.errors[1].value })
    for _, q in ipairs { "", "?share_method=email" } do
      r = get(path .. "/share_link" .. q)
      assert.equals(400, r.status, q)
      assert.same({ 1004, "share_method" }, { r.json.response.errors[1].errno, r.json.response.errors[1].field })
    end
    -- e-mail validation: nothing changes, nothing is sent
    for i, bad in ipairs { {}, { email_recipients = {} }, { email_recipients = "a@example.com" },
                           { email_recipients = { "a@example.com", "not-an-address" } },
                           { email_recipients = { 7 } } } do
      bad.action_email = true
      r = send("PUT", path, { invoice = bad })
      assert.equals(422, r.status, i)
      local e = r.json.response.errors[1]
      assert.same({ i <= 3 and 1001 or 1004, "email_recipients", "invoice" }, { e.errno, e.field, e.object }, i)
    end
    r = send("PUT", path, { invoice = { action_mark_as_sent = "yes" } })
    assert.same({ 422, "action_mark_as_sent" }, { r.status, r.json.response.errors[1].field })
    -- a PUT carrying vis_state ignores the action fields too
    r = send("PUT", path, { invoice = { vis_state = 0, action_email = true, email_recipients = { "a@example.com" } } })
    assert.equals(200, r.status)
    assert.equals("draft", result(r).invoice.v3_status)
    assert.equals(0, #outbox())
    -- sending: draft -> sent, one e-mail in the outbox
    r = send("PUT", path, { invoice = { action_email = true, email_recipients = { "a@example.com", "b@example.org" },
      email_include_pdf = false, invoice_customized_email = { subject = "Your invoice", body = "Thanks" } } })
    assert.equals(200, r.status)
    assert.same({ 2, "sent" }, { result(r).invoice.status, result(r).invoice.v3_status })
    assert.equals("sent", result(get(path)).invoice.v3_status)
    local box = outbox()
    assert.equals(1, #box)
    assert.same({ inv.id, "invoice", { "a@example.com", "b@example.org" }, "Your invoice", "Thanks", false, "aBcD1" },
      { box[1].invoice_id, box[1].object, box[1].recipients, box[1].subject, box[1].body, box[1].include_pdf,
        box[1].account_id })
    -- estimates: mark as sent sends nothing; e-mail with FreshBooks' default subject
    local function estimate()
      return result(send("POST", A .. "estimates/estimates", { estimate = { customerid = 10001,
        create_date = "2025-07-01" } })).estimate
    end
    local est = estimate()
    assert.same({ 1, "draft" }, { est.status, est.ui_status })
    r = send("PUT", A .. "estimates/estimates/" .. est.id, { estimate = { action_mark_as_sent = true } })
    assert.same({ 200, 2, "sent" }, { r.status, result(r).estimate.status, result(r).estimate.ui_status })
    assert.equals(1, #outbox())
    local est2 = estimate()
    r = send("PUT", A .. "estimates/estimates/" .. est2.id, { estimate = { action_email = true,
      email_recipients = { "c@example.com" }, estimate_customized_email = { body = "See attached" } } })
    assert.same({ 200, "sent" }, { r.status, result(r).estimate.ui_status })
    box = outbox()
    assert.equals(2, #box)
    assert.same({ est2.id, { "c@example.com" }, "See attached" },
      { box[2].estimate_id, box[2].recipients, box[2].body })
    assert.matches("sent you an estimate", box[2].subject)
    sb:admin("DELETE", "/_sandbox/outbox")
    assert.equals(0, #outbox())
  end)

  it("covers the rest of the catalogue and reports", function()
    for _, path in ipairs { "expenses/expenses", "expenses/categories", "items/items", "payments/payments",
      "taxes/taxes", "estimates/estimates", "credit_notes/credit_notes", "other_incomes/other_incomes",
      "bills/bills", "bill_payments/bill_payments", "bill_vendors/bill_vendors", "invoice_profiles/invoice_profiles",
      "projects/tasks", "users/staffs", "systems/gateways", "journal_entries/journal_entries",
      "journal_entries/journal_entry_details", "journal_entry_accounts/journal_entry_accounts" } do
      local r = get(A .. path)
      assert.equals(200, r.status, path)
      assert.is_number(result(r).total, path)
    end
    local r = get(A .. "reports/accounting/profitloss_entity?start_date=2024-01-01&end_date=2025-06-30")
    assert.is_string(result(r).profitloss.net_profit.total.amount)
    assert.equals(200, get(A .. "reports/accounting/taxsummary").status)
    assert.equals(200, get(A .. "reports/accounting/payments_collected").status)
    assert.equals(400, get(A .. "reports/accounting/taxsummary?start_date=nope").status)
  end)
end)
