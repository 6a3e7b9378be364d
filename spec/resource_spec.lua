-- Every resource family against the sandbox through the real stack (session, retry, C core, nginx):
-- list/get/create/update/delete/archive, the extras, reports, callbacks, uploads, and each error shape.
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local errors = require "freshbooks.errors"
local catalogue = require "freshbooks.catalogue"

describe("resources against the sandbox", function()
  local sb, fb, acct, biz

  setup(function()
    sb = sandbox.start{ invoices = 250 }
    fb = H.session(sb)
    acct = fb:account("aBcD1")
    biz = fb:business(1000001)
  end)
  teardown(function() if sb then sb:stop() end end)

  local function money(amount) return { amount = amount, code = "USD" } end

  it("gives one account and one business object per id and session", function()
    assert.equal(fb:account("aBcD1"), fb:account("aBcD1"))
    assert.equal(fb:business(1000001), fb:business(1000001))
    assert.are_not.equal(fb:account("aBcD1"), fb:account("xYz92"))
    assert.are_not.equal(fb:account("aBcD1"), H.session(sb):account("aBcD1"))
    assert.has_error(function() fb:account({}) end)
  end)

  it("lets a dropped session go with every resource it made (no cycle outlives it, LuaJIT included)", function()
    local gone = setmetatable({}, { __mode = "k" })
    -- Each in a function of its own: LuaJIT's collector sees a live frame's dead locals as roots.
    local function session_and_resources()
      local s = H.session(sb)
      local a = s:account("aBcD1")
      assert.truthy(a.invoices:list{ per_page = 1 })
      local made = { a.reports.profit_and_loss, s:business(1000001).projects, s:accounting_business("u-1") }
      assert.equal(3, #made)
      gone[s], gone[a], gone[a.invoices] = "session", "account", "resource"
    end
    -- A transport of the caller's own, wrapped by the shared default retry decorator, goes with them.
    local function own_transport()
      local t = require("freshbooks.transport").curl{}
      local s = H.session(sb, { transport = t })
      assert.truthy(s:account("aBcD1").invoices:list{ per_page = 1 })
      gone[t], gone[s] = "transport", "its session"
    end
    session_and_resources()
    own_transport()
    for _ = 1, 4 do collectgarbage("collect") end
    assert.is_nil(select(2, next(gone)))
  end)

  it("shows a resource's name and verbs, not the session, entry or paths behind it", function()
    for _, r in ipairs{ acct.invoices, acct.reports.profit_and_loss, acct.attachments,
                        acct.invoice_payment_options, biz.projects } do
      local keys = {}
      for k in pairs(r) do keys[#keys + 1] = k end
      assert.same({ "name" }, keys)
      assert.is_nil(rawget(r, "session"))
      assert.is_nil(r.session)
      assert.is_function(r.get)
      assert.matches("^freshbooks%.resource%(" .. r.name:gsub("%p", "%%%0"), tostring(r))
    end
    assert.is_nil(acct.invoices.upload)
    assert.is_nil(acct.reports.profit_and_loss.list)
  end)

  it("lists every accounting and events resource with paging meta", function()
    for _, e in ipairs(catalogue.entries) do
      if (e.family == "accounting" or e.family == "events") and e.verbs.list then
        local list, meta = acct[e.name]:list{ per_page = 5 }
        assert(list, e.name .. ": " .. tostring(meta))
        assert.is_table(list)
        assert.is_true(#list <= 5, e.name)
        assert.is_number(meta.total, e.name)
        assert.equal(1, meta.page, e.name)
      end
    end
  end)

  -- Fields FreshBooks requires for each resource, and a field to change on update.
  local samples = {
    clients = { { organization = "Spec Co.", email = "spec@example.com" }, { organization = "Spec Co. 2" } },
    invoices = { { customerid = 10001, create_date = "2025-06-01",
                   lines = { { name = "Work", qty = 2, unit_cost = money("12.50") } } }, { po_number = "PO-7" } },
    estimates = { { customerid = 10001, create_date = "2025-06-01" }, { notes = "revised" } },
    expenses = { { categoryid = 2001, staffid = 1, date = "2025-06-02", amount = money("19.99") }, { notes = "taxi" } },
    items = { { name = "Widget", unit_cost = money("3.00") }, { description = "A widget" } },
    payments = { { invoiceid = 1, amount = money("1.00"), date = "2025-06-03" }, { note = "cheque" } },
    taxes = { { name = "VAT", amount = "20" }, { number = "VAT-1" } },
    credit_notes = { { clientid = 10001, create_date = "2025-06-01" }, { notes = "refund" } },
    other_incomes = { { amount = money("50.00"), date = "2025-06-04", category_name = "online_sales" },
      { note = "etsy" } },
    bills = { { vendorid = 301, issue_date = "2025-06-05", lines = { { categoryid = 2001, description = "Paper",
      quantity = 1, unit_cost = money("9.00") } } },
              { bill_number = "B-99" } },
    bill_payments = { { billid = 1, amount = money("1.00"), paid_date = "2025-06-06" }, { note = "wire" } },
    bill_vendors = { { vendor_name = "Spec Vendor" }, { country = "Canada" } },
    invoice_profiles = { { customerid = 10001, frequency = "m" }, { numberRecurring = 3 } },
    tasks = { { name = "Spec task", rate = money("80.00") }, { description = "reviews" } },
  }

  -- FreshBooks answers these two with their own id key only (no `id`).
  local ID = { bill_vendors = "vendorid", other_incomes = "incomeid" }

  it("creates, gets, updates, deletes and archives accounting records", function()
    for name, s in pairs(samples) do
      local r, entry = acct[name], catalogue.by_name[name]
      local rec, err = r:create(s[1])
      assert(rec, name .. " create: " .. tostring(err))
      local id = rec[ID[name] or "id"]
      assert.is_number(id, name)
      local got = assert(r:get(id))
      assert.equal(id, got[ID[name] or "id"], name)
      local k, v = next(s[2])
      local upd = assert(r:update(id, s[2]), name)
      assert.same(v, upd[k], name .. "." .. k)
      if entry.verbs.archive then
        assert.equal(2, assert(r:archive(id)).vis_state, name)
      end
      assert.is_true(r:delete(id), name)
      if entry.delete == "vis_state" then
        assert.equal(1, assert(r:get(id)).vis_state, name) -- FreshBooks keeps it, marked deleted
      else
        local none, nerr = r:get(id)
        assert.is_nil(none, name)
        assert.equal("not_found", nerr.code, name)
      end
    end
  end)

  it("keeps money as strings and unwraps invoices with their lines", function()
    local inv = assert(acct.invoices:create(samples.invoices[1]))
    assert.same(money("25.00"), inv.amount)
    local got = assert(acct.invoices:get(inv.id, { include = { "lines" } }))
    assert.equal(1, #got.lines)
    assert.equal("12.50", got.lines[1].unit_cost.amount)
  end)

  it("filters and sorts lists in the accounting syntax", function()
    local list = assert(acct.invoices:list{ search = { invoiceids = { 3, 5, 8 } }, sort = "-invoiceid" })
    assert.same({ 8, 5, 3 }, { list[1].id, list[2].id, list[3].id })
    local mine = assert(acct.invoices:list{ search = { customerid = 10017 }, per_page = 100 })
    assert.is_true(#mine > 0)
    for _, inv in ipairs(mine) do assert.equal(10017, inv.customerid) end
    local acme = assert(acct.clients:list{ search = { organization = { like = "acme" } }, per_page = 100 })
    assert.is_true(#acme > 0)
    for _, c in ipairs(acme) do assert.truthy(c.organization:lower():find("acme", 1, true)) end
    local ranged = assert(acct.invoices:list{ search = { date = { min = "2025-01-01", max = "2025-01-31" } },
      per_page = 100 })
    assert.is_true(#ranged > 0)
    for _, inv in ipairs(ranged) do
      assert.truthy(inv.create_date >= "2025-01-01" and inv.create_date <= "2025-01-31")
    end
  end)

  it("refuses a PUT that mixes vis_state with other fields (FreshBooks would drop them)", function()
    assert.has_error(function() acct.clients:update(10001, { vis_state = 0, organization = "x" }) end)
  end)

  it("raises on verbs FreshBooks does not have and on misspelt resources", function()
    assert.has_error(function() acct.expense_categories:create{ category = "x" } end)
    assert.has_error(function() acct.journal_entry_details:get(1) end)
    assert.has_error(function() return acct.invocies end)
    assert.has_error(function() acct.invoices:get{} end)
    assert.has_error(function() acct.clients:create("x") end)
    assert.has_error(function() fb:account(nil) end)
  end)

  it("reads categories, staff, gateways and journal entries", function()
    local cat = assert(acct.expense_categories:get(2001))
    assert.equal("Advertising", cat.category)
    assert.equal("alice", assert(acct.staff:get(1)).username)
    assert.equal("stripe", assert(acct.gateways:list())[1].gateway_name)
    local accounts = assert(acct.journal_entry_accounts:list())
    assert.is_true(#accounts >= 4)
    local je, err = acct.journal_entries:create{ name = "Adjust", date = "2025-06-01", currency_code = "USD",
      details = { { sub_accountid = accounts[1].id, debit = "10.00" }, { sub_accountid = accounts[3].id,
        credit = "10.00" } } }
    assert(je, tostring(err))
    assert.is_table(assert(acct.journal_entry_details:list()))
  end)

  it("runs the three reports", function()
    local pl = assert(acct.reports.profit_and_loss:get{ start_date = "2024-07-01", end_date = "2025-06-30" })
    assert.equal("USD", pl.currency_code)
    -- every line is an entry: description, entry_type, per-period data, total, children
    assert.matches("^%-?%d+%.%d%d$", pl.net_profit.total.amount)
    assert.equal("Net Profit (USD)", pl.net_profit.description)
    assert.is_table(assert(acct.reports.tax_summary:get{}).taxes)
    assert.is_table(assert(acct.reports.payments_collected:get{ start_date = "2023-01-01" }).payments)
    -- a bad date raises before anything is sent; sent as a string query, FreshBooks refuses it
    assert.has_error(function() acct.reports.profit_and_loss:get{ start_date = "not-a-date" } end,
      "freshbooks: profit_and_loss:get: start_date must be a date YYYY-MM-DD")
    local _, err = acct.reports.profit_and_loss:get("start_date=not-a-date")
    assert.equal("validation", err.code)
  end)

  it("creates, reads, updates and deletes projects, time entries and services", function()
    local p = assert(biz.projects:create{ title = "Spec project", client_id = 10001 })
    assert.equal("Spec project", assert(biz.projects:get(p.id)).title)
    assert.equal("Renamed", assert(biz.projects:update(p.id, { title = "Renamed" })).title)
    local te = assert(biz.time_entries:create{ project_id = p.id, started_at = "2025-06-01T09:00:00Z", duration = 3600,
                                              is_logged = true, note = "spec" })
    assert.equal(3600, assert(biz.time_entries:get(te.id)).duration)
    assert.equal("more", assert(biz.time_entries:update(te.id, { note = "more" })).note)
    assert.is_true(biz.time_entries:delete(te.id))
    assert.equal("not_found", select(2, biz.time_entries:get(te.id)).code)
    assert.is_true(biz.projects:delete(p.id))
    assert.equal("not_found", select(2, biz.projects:get(p.id)).code)

    local svc = assert(biz.services:create{ name = "Spec service", billable = true })
    assert.equal("Spec service", assert(biz.services:get(svc.id)).name)
    assert.equal("Renamed", assert(biz.services:update(svc.id, { name = "Renamed" })).name)
    assert.equal("not_found", select(2, biz.services:rate(svc.id)).code)
    assert.equal("45.00", assert(biz.services:create_rate(svc.id, { rate = "45.00" })).rate)
    assert.equal("50.00", assert(biz.services:update_rate(svc.id, { rate = "50.00" })).rate)
    assert.equal("50.00", assert(biz.services:rate(svc.id)).rate)
    assert.is_true(biz.services:delete(svc.id))
    assert.equal("not_found", select(2, biz.services:get(svc.id)).code)
  end)

  it("lists the project family with plain filters and -field sort", function()
    local all = assert(biz.projects:list{ per_page = 100 })
    local active = assert(biz.projects:list{ search = { active = true }, per_page = 100 })
    assert.is_true(#active > 0 and #active < #all)
    for _, p in ipairs(active) do assert.is_true(p.active) end
    local sorted = assert(biz.projects:list{ sort = "-id", per_page = 100 })
    for i = 2, #sorted do assert.is_true(sorted[i - 1].id > sorted[i].id) end
    local entries, meta = assert(biz.time_entries:list{ per_page = 7 })
    assert.equal(7, #entries)
    assert.equal(7, meta.per_page)
  end)

  it("manages webhook callbacks", function()
    local cb = assert(acct.callbacks:create{ event = "invoice.create", uri = sb.url .. "/_sandbox/inbox/spec" })
    assert.equal("invoice.create", assert(acct.callbacks:get(cb.callbackid)).event)
    assert.is_true(#assert(acct.callbacks:list()) >= 1)
    assert.equal("client", assert(acct.callbacks:update(cb.callbackid, { event = "client" })).event)
    assert.is_true(acct.callbacks:delete(cb.callbackid))
    local none, err = acct.callbacks:get(cb.callbackid)
    assert.is_nil(none)
    assert.same({ "not_found", 404, "Callback not found." }, { err.code, err.errno, err.message })
  end)

  it("uploads attachments and images and reads them back", function()
    local bytes = "%PDF-1.4\0binary\255data"
    local att, link = acct.attachments:upload(bytes, { filename = "a.pdf", content_type = "application/pdf" })
    assert(att, tostring(link))
    assert.is_string(att.jwt)
    assert.is_nil(link) -- FreshBooks answers an attachment without a link (an image with one)
    local back, ctype = acct.attachments:get(att.jwt)
    assert.equal(bytes, back)
    assert.equal("application/pdf", ctype)
    local img, img_link = acct.images:upload("\137PNG\r\n", { filename = "logo.png", content_type = "image/png" })
    assert(img, tostring(img_link))
    assert.matches("/service/uploads/images/" .. img.jwt .. "$", img_link)
    assert.equal("\137PNG\r\n", (acct.images:get(img.jwt)))
  end)

  describe("error shapes from the sandbox", function()
    it("legacy accounting: not found and validation", function()
      local _, err = acct.clients:get(424242)
      assert.same({ "not_found", 404, 1012 }, { err.code, err.status, err.errno })
      assert.same("client", err.errors[1].object)
      _, err = acct.invoices:create{ create_date = "2025-01-01" }
      assert.same({ "validation", 1001, "customerid" }, { err.code, err.errno, err.errors[1].field })
      _, err = acct.invoices:list{ per_page = "lots" }
      assert.same({ "bad_request", 1013 }, { err.code, err.errno })
    end)

    it("errors sent with HTTP 200", function()
      local _, err = acct.taxes:get(9999)
      assert.same({ "not_found", 200, 1012 }, { err.code, err.status, err.errno })
    end)

    it("google.rpc details", function()
      local _, err = acct.bills:create{ issue_date = "2025-01-01" }
      assert.same({ "validation", 422, 1001, "vendorid" }, { err.code, err.status, err.errno, err.errors[1].field })
      _, err = acct.bills:get(9999)
      assert.same({ "not_found", 1012 }, { err.code, err.errno })
    end)

    it("project family errno/error", function()
      local _, err = biz.projects:create{ description = "no title" }
      assert.same({ "validation", 2001, "title" }, { err.code, err.errno, err.errors[1].field })
      _, err = biz.projects:get(999999)
      assert.same({ "not_found", 404 }, { err.code, err.status })
    end)

    it("a missing scope is forbidden; another user's account too", function()
      local narrow = H.session(sb, { tokens = sb:token{ user = "alice", scope = "user:profile:read" } })
      local _, err = narrow:account("aBcD1").invoices:list()
      assert.same({ "forbidden", 403 }, { err.code, err.status })
      _, err = fb:account("QmP57").invoices:list()
      assert.same({ "forbidden", 403 }, { err.code, err.status })
    end)

    it("a mangled body or an HTML error page from the server", function()
      local raw = H.session(sb, { retry = false }):account("aBcD1")
      sb:admin("POST", "/_sandbox/faults", { route = "users/clients/10001$", fault = "malformed", times = 1 })
      local _, err = raw.clients:get(10001)
      assert.same({ "bad_response", 200 }, { err.code, err.status })
      sb:admin("POST", "/_sandbox/faults", { route = "users/clients/10001$", fault = "html", status = 502, times = 1 })
      _, err = raw.clients:get(10001)
      assert.same({ "server_error", 502, "502 Bad Gateway" }, { err.code, err.status, err.message })
    end)

    it("an unknown token's 401 body", function()
      local res = sb:http{ path = "/accounting/account/aBcD1/users/clients",
                           headers = { Authorization = "Bearer not-a-token" } }
      local err = errors.from_response(res)
      assert.same({ "unauthorized", 401 }, { err.code, err.status })
      assert.is_string(err.message)
    end)

    it("the token endpoint's RFC 6749 body", function()
      local res = sb:http{ method = "POST", path = "/auth/oauth/token", json = { grant_type = "refresh_token",
        client_id = sb.app.client_id, client_secret = sb.app.client_secret, refresh_token = "nope",
        redirect_uri = sb.app.redirect_uri } }
      local err = errors.from_response(res)
      assert.same({ "invalid_grant", "invalid_grant" }, { err.code, err.oauth_error })
    end)
  end)
end)

-- The invoice extras, checked at the request level: the exact paths, queries and bodies sent.
describe("invoice extras", function()
  local resource = require "freshbooks.resource"
  local sent
  local fake = { request = function(_, req)
    sent = req
    local result = req.path:find("share_link", 1, true)
      and { share_link = { share_link = "https://my.freshbooks.com/#/link/abc", invoiceid = 7 } }
      or { invoice = { id = 7 } }
    return { status = 200, headers = {}, data = { response = { result = result } } }
  end }
  local inv = resource.account(fake, "aBcD1").invoices

  it("gets a share link", function()
    assert.equal("https://my.freshbooks.com/#/link/abc", inv:share_link(7))
    assert.same({ "GET", "/accounting/account/aBcD1/invoices/invoices/7/share_link", "share_method=share_link" },
      { sent.method, sent.path, sent.query })
  end)

  it("sends by e-mail and marks as sent with FreshBooks' action fields", function()
    assert.equal(7, inv:send_by_email(7, { recipients = { "a@example.com" }, subject = "Inv", body = "Hi" }).id)
    assert.same({ "PUT", "/accounting/account/aBcD1/invoices/invoices/7" }, { sent.method, sent.path })
    assert.same({ invoice = { action_email = true, email_recipients = { "a@example.com" }, email_include_pdf = false,
      invoice_customized_email = { subject = "Inv", body = "Hi" } } }, sent.json)
    inv:mark_as_sent(7)
    assert.same({ invoice = { action_mark_as_sent = true } }, sent.json)
    assert.has_error(function() inv:send_by_email(7, {}) end)
  end)

  it("percent-encodes ids in paths", function()
    resource.account(fake, "a+b").clients:get("x:y@z")
    assert.equal("/accounting/account/a%2Bb/users/clients/x%3Ay%40z", sent.path)
    resource.account(fake, "aBcD1").clients:get(7.0)
    assert.equal("/accounting/account/aBcD1/users/clients/7", sent.path)
  end)

  it("refuses ids built to leave the resource path, before anything is sent", function()
    sent = nil
    local acct = resource.account(fake, "aBcD1")
    for _, id in ipairs{ "..", ".", "...", "../../../_sandbox/status", "a/b", "a\\b", "%2e%2e", "x y", "7?code=401",
        "7#x", "a\r\nb", "a\0b", "", 1.5, 2 ^ 60, true } do
      assert.has_error(function() acct.clients:get(id) end)
      assert.has_error(function() resource.account(fake, id) end)
    end
    assert.is_nil(sent)
    -- dots inside an id are fine (upload JWTs are a.b.c)
    acct.images:get("h.p.s")
    assert.equal("/uploads/images/h.p.s", sent.path)
  end)
end)


-- The invoice and estimate extras through the real stack: share links, e-mail (the sandbox's outbox,
-- /_sandbox/outbox) and mark as sent.
describe("invoice and estimate extras against the sandbox", function()
  local sb, acct

  setup(function()
    sb = sandbox.start{ invoices = 30 }
    acct = H.session(sb):account("aBcD1")
  end)
  teardown(function() if sb then sb:stop() end end)
  before_each(function() sb:admin("DELETE", "/_sandbox/outbox") end)

  local function outbox() return sb:admin("GET", "/_sandbox/outbox").outbox end
  local function requests() return sb:admin("GET", "/_sandbox/counters").total end
  local function draft(name)
    local rec = assert(acct[name]:create{ customerid = 10001, create_date = "2025-07-01",
      lines = { { name = "Work", qty = 1, unit_cost = { amount = "40.00", code = "USD" } } } })
    assert.equal(1, rec.status)
    return rec
  end

  it("never sends an e-mail twice: send_by_email is a PUT that is not retried when its answer is lost", function()
    local a = H.session(sb, { retry = { attempts = 3, base_delay = 0.01 } }):account("aBcD1")
    local inv = draft("invoices")
    local lose_answer = { route = "invoices/invoices/" .. inv.id .. "$", method = "PUT", fault = "reset_after",
      times = 1 }
    sb:admin("POST", "/_sandbox/faults", lose_answer)
    local rec, err = a.invoices:send_by_email(inv.id, { recipients = { "ap@example.com" } })
    assert.is_nil(rec)
    assert.truthy(err and err.code)
    assert.equal(1, #outbox())
    -- The control: an ordinary update under the same fault is retried and succeeds.
    sb:admin("POST", "/_sandbox/faults", lose_answer)
    local upd, uerr = a.invoices:update(inv.id, { notes = "retried" })
    assert(upd, tostring(uerr))
    assert.equal("retried", upd.notes)
    assert.equal(1, #outbox())
  end)

  it("share_link returns the invoice's link, and not_found for a missing invoice", function()
    local inv = draft("invoices")
    local link, rec = acct.invoices:share_link(inv.id)
    assert(link, tostring(rec))
    assert.matches("^https://[^/]+/.+", link)
    assert.same({ inv.id, "invoice", "share_link" }, { rec.resourceid, rec.resource_type, rec.share_method })
    assert.equal(link, (acct.invoices:share_link(inv.id)))
    local none, err = acct.invoices:share_link(999999)
    assert.is_nil(none)
    assert.same({ "not_found", 404, 1012, "invoice" }, { err.code, err.status, err.errno, err.errors[1].object })
  end)

  it("send_by_email marks the invoice sent and sends exactly one e-mail", function()
    local inv = draft("invoices")
    assert.equal("draft", inv.v3_status)
    local sent, err = acct.invoices:send_by_email(inv.id, { recipients = { "ap@example.com", "boss@example.org" },
      subject = "Invoice for June", body = "Thank you" })
    assert(sent, tostring(err))
    assert.same({ inv.id, 2, "sent" }, { sent.id, sent.status, sent.v3_status })
    assert.equal("sent", assert(acct.invoices:get(inv.id)).v3_status)
    local box = outbox()
    assert.equal(1, #box)
    assert.same({ inv.id, { "ap@example.com", "boss@example.org" }, "Invoice for June", "Thank you", false },
      { box[1].invoice_id, box[1].recipients, box[1].subject, box[1].body, box[1].include_pdf })
  end)

  it("send_by_email on an estimate", function()
    local est = draft("estimates")
    local sent = assert(acct.estimates:send_by_email(est.id, { recipients = { "client@example.com" },
      include_pdf = true }))
    assert.same({ 2, "sent" }, { sent.status, sent.ui_status })
    local box = outbox()
    assert.equal(1, #box)
    assert.same({ est.id, { "client@example.com" }, true }, { box[1].estimate_id, box[1].recipients,
      box[1].include_pdf })
  end)

  it("mark_as_sent changes the status and sends no e-mail", function()
    local inv = draft("invoices")
    local rec = assert(acct.invoices:mark_as_sent(inv.id))
    assert.same({ 2, "sent" }, { rec.status, rec.v3_status })
    local est = draft("estimates")
    assert.equal("sent", assert(acct.estimates:mark_as_sent(est.id)).ui_status)
    assert.equal(0, #outbox())
    local none, err = acct.invoices:mark_as_sent(999999)
    assert.is_nil(none)
    assert.equal("not_found", err.code)
  end)

  it("raises on bad recipients before sending anything", function()
    local inv = draft("invoices")
    local before = requests()
    assert.has_error(function() acct.invoices:send_by_email(inv.id) end)
    assert.has_error(function() acct.invoices:send_by_email(inv.id, { recipients = {} }) end)
    assert.has_error(function() acct.invoices:send_by_email(inv.id, { recipients = "ap@example.com" }) end)
    assert.has_error(function() acct.invoices:send_by_email(inv.id, { recipients = { "ap@example.com", 42 } }) end)
    assert.has_error(function() acct.estimates:send_by_email(1, { subject = "no one" }) end)
    assert.has_error(function() acct.clients:send_by_email(10001, { recipients = { "ap@example.com" } }) end)
    assert.has_error(function() acct.estimates:share_link(1) end)
    assert.equal(before, requests()) -- nothing reached the sandbox (admin calls are not counted)
    assert.equal(0, #outbox())
    assert.equal("draft", assert(acct.invoices:get(inv.id)).v3_status)
  end)

  it("returns the sandbox's validation error with its field errors", function()
    local inv = draft("invoices")
    local rec, err = acct.invoices:send_by_email(inv.id, { recipients = { "ap@example.com", "not-an-address" } })
    assert.is_nil(rec)
    assert.same({ "validation", 422, 1004 }, { err.code, err.status, err.errno })
    assert.same({ "email_recipients", "invoice", "not-an-address" },
      { err.errors[1].field, err.errors[1].object, err.errors[1].value })
    assert.equal("draft", assert(acct.invoices:get(inv.id)).v3_status)
    assert.equal(0, #outbox())
  end)
end)
