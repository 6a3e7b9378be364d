-- What a mirror kept by incremental sync depends on, as FreshBooks does it: filter semantics (id
-- lists, exclusive maxima, day-granular dates read in US/Eastern across a DST change, updated_since),
-- typed answers, realistic seed data, and the admin routes that change records at chosen times,
-- hard-delete them, and deliver webhooks late, twice or out of order.
local sandbox = require "support.sandbox"

describe("sandbox sync semantics", function()
  local sb, auth
  local A = "/accounting/account/aBcD1/"
  local function get(path) return sb:http{ path = path, headers = auth } end
  local function send(method, path, tbl) return sb:http{ method = method, path = path, headers = auth, json = tbl } end
  local function result(r) assert(r.status == 200, r.body) return r.json.response.result end
  local function ids(list, key)
    local out = {}
    for i, r in ipairs(list) do out[i] = r[key or "id"] end
    return out
  end
  -- Epoch seconds of a UTC wall time.
  local function utc(y, m, d, hh, mm)
    return os.time{ year = y, month = m, day = d, hour = hh, min = mm, sec = 0, isdst = false }
      - os.time{ year = 1970, month = 1, day = 1, hour = 0, isdst = false }
  end

  setup(function()
    sb = sandbox.start{ invoices = 150, seed = 9 }
    auth = { Authorization = "Bearer " .. sb:token().access_token }
  end)
  teardown(function() if sb then sb:stop() end end)

  it("filters every listable resource by its id list (search[<id key>s][] and search[ids][])", function()
    local keys = { ["users/clients"] = { "clients", "userid", "id" },
      ["invoices/invoices"] = { "invoices", "invoiceid" },
      ["estimates/estimates"] = { "estimates", "estimateid" }, ["expenses/expenses"] = { "expenses", "expenseid" },
      ["expenses/categories"] = { "categories", "categoryid" }, ["items/items"] = { "items", "itemid" },
      ["payments/payments"] = { "payments", "paymentid" }, ["taxes/taxes"] = { "taxes", "taxid" },
      ["credit_notes/credit_notes"] = { "credit_notes", "creditid" },
      ["other_incomes/other_incomes"] = { "other_income", "incomeid", "incomeid" },
      ["bills/bills"] = { "bills", "billid" },
      ["bill_vendors/bill_vendors"] = { "bill_vendors", "vendorid", "vendorid" },
      ["invoice_profiles/invoice_profiles"] = { "invoice_profiles", "profileid" },
      ["projects/tasks"] = { "tasks", "taskid" } }
    for path, k in pairs(keys) do
      local plural, idk, field = k[1], k[2], k[3] or "id"
      local all = result(get(A .. path .. "?per_page=100"))[plural]
      assert.is_true(#all >= 2, path)
      local want = { all[1][field], all[2][field] }
      for _, q in ipairs { "search[" .. idk .. "s][]=", "search[ids][]=" } do
        local r = result(get(A .. path .. "?" .. q .. want[1] .. "&" .. q .. want[2]))
        assert.same(want, ids(r[plural], field), path .. " " .. q)
      end
      local one = result(get(A .. path .. "?search[" .. idk .. "]=" .. want[2]))
      assert.same({ want[2] }, ids(one[plural], field), path)
    end
  end)

  it("matches maxima below the value, minima at or above it (money, numbers and days)", function()
    local inv = result(get(A .. "invoices/invoices?per_page=1&page=7")).invoices[1]
    local a = inv.amount.amount
    local function total(q) return result(get(A .. "invoices/invoices?per_page=100&" .. q)).total end
    local function has(q)
      for _, i in ipairs(result(get(A .. "invoices/invoices?per_page=100&" .. q)).invoices) do
        if i.id == inv.id then return true end
      end
      return false
    end
    assert.is_true(has("search[amount_min]=" .. a))
    assert.is_false(has("search[amount_max]=" .. a))
    assert.equals(0, total("search[amount_min]=" .. a .. "&search[amount_max]=" .. a))
    local d = inv.create_date
    assert.is_true(has("search[date_min]=" .. d))
    assert.is_false(has("search[date_max]=" .. d))
    assert.equals(0, total("search[date_min]=" .. d .. "&search[date_max]=" .. d))
    -- the whole collection splits at any day with nothing lost or counted twice
    local all = total("search[vis_state]=0")
    assert.equals(all, total("search[vis_state]=0&search[date_max]=" .. d)
      + total("search[vis_state]=0&search[date_min]=" .. d))
  end)

  it("reads updated_min/_max as a US/Eastern day; a time part is ignored (day-level granularity)", function()
    -- 2025-03-10 03:30 UTC is 23:30 on the 9th in New York (EDT began at 07:00 UTC on the 9th);
    -- 2025-03-08 04:30 UTC is 23:30 on the 7th (EST).
    local after_change = utc(2025, 3, 10, 3, 30)
    local before_change = utc(2025, 3, 8, 4, 30)
    local r = sb:admin("POST", "/_sandbox/change", { account_id = "aBcD1", resource = "invoices", id = 11,
      at = after_change, set = { notes = "late on the 9th" } })
    assert.equals("2025-03-09 23:30:00", r.record.updated)
    r = sb:admin("POST", "/_sandbox/change", { account_id = "aBcD1", resource = "invoices", id = 12,
      at = before_change, set = { notes = "late on the 7th" } })
    assert.equals("2025-03-07 23:30:00", r.record.updated)
    local function got(q)
      local out = {}
      for _, i in ipairs(result(get(A .. "invoices/invoices?per_page=100&" .. q)).invoices) do
        if i.id == 11 or i.id == 12 then out[#out + 1] = i.id end
      end
      return out
    end
    assert.same({ 11 }, got("search[updated_min]=2025-03-09&search[updated_max]=2025-03-10"))
    assert.same({}, got("search[updated_min]=2025-03-10&search[updated_max]=2025-03-11"))
    assert.same({ 12 }, got("search[updated_min]=2025-03-07&search[updated_max]=2025-03-08"))
    -- a time part changes nothing: the day is what counts
    assert.same({ 11 }, got("search[updated_min]=2025-03-09%2023:59:59&search[updated_max]=2025-03-10%2000:00:01"))
    assert.same({ 11, 12 }, got("search[updated_min]=2025-03-07T12:00:00Z&search[updated_max]=2025-03-10"))
  end)

  it("answers the clients' special searches: address_like, phone_like, has_outstanding, has_draft", function()
    local clients = result(get(A .. "users/clients?per_page=100")).clients
    local c = clients[3]
    local r = result(get(A .. "users/clients?per_page=100&search[address_like]=" .. c.p_code))
    assert.same({ c.id }, ids(r.clients))
    r = result(get(A .. "users/clients?per_page=100&search[phone_like]=" .. c.bus_phone))
    assert.same({ c.id }, ids(r.clients))
    local owing, drafts = {}, {}
    for page = 1, 2 do
      for _, inv in ipairs(result(get(A .. "invoices/invoices?per_page=100&page=" .. page)).invoices) do
        if inv.v3_status ~= "draft" and inv.outstanding.amount ~= "0.00" then owing[inv.customerid] = true end
        if inv.status == 1 then drafts[inv.customerid] = true end
      end
    end
    for q, want in pairs { has_outstanding = owing, has_draft = drafts } do
      local got = result(get(A .. "users/clients?per_page=100&search[" .. q .. "]=")).clients
      assert.is_true(#got > 0 and #got < #clients, q)
      for _, cl in ipairs(got) do assert.is_true(want[cl.id] == true, q) end
    end
  end)

  it("keeps deleted records out of lists unless search[vis_state] asks; archived ones stay in", function()
    local function vis(q)
      local seen = {}
      for _, c in ipairs(result(get(A .. "users/clients?per_page=100" .. q)).clients) do seen[c.vis_state] = true end
      return seen
    end
    assert.same({ [0] = true, [2] = true }, vis(""))
    assert.same({ [1] = true }, vis("&search[vis_state]=1"))
    assert.same({ [2] = true }, vis("&search[vis_state]=2"))
  end)

  it("sorts by <field>_asc/_desc; a '-field' or an unknown key leaves the list in id order", function()
    local r = result(get(A .. "invoices/invoices?per_page=30&sort=amount_desc")).invoices
    for i = 2, #r do assert.is_true(tonumber(r[i - 1].amount.amount) >= tonumber(r[i].amount.amount)) end
    r = result(get(A .. "invoices/invoices?per_page=30&sort=create_date_asc")).invoices
    for i = 2, #r do assert.is_true(r[i - 1].create_date <= r[i].create_date) end
    for _, q in ipairs { "-amount", "nonsense_desc", "amount" } do
      r = result(get(A .. "invoices/invoices?per_page=30&sort=" .. q)).invoices
      for i = 2, #r do assert.is_true(r[i - 1].id < r[i].id, q) end
    end
  end)

  it("answers created records typed and filled as FreshBooks does, whatever types the request sent", function()
    local inv = result(send("POST", A .. "invoices/invoices", { invoice = { customerid = "10001",
      create_date = "2025-06-01", due_offset_days = "15", lines = { { name = "W", qty = "2",
      unit_cost = { amount = "10.00", code = "USD" } } } } })).invoice
    assert.same({ 10001, 15, "USD", "en", "draft", 1, "20.00", "2025-06-16" }, { inv.customerid, inv.due_offset_days,
      inv.currency_code, inv.language, inv.v3_status, inv.status, inv.amount.amount, inv.due_date })
    local item = result(send("POST", A .. "items/items", { item = { name = "Thing", tax1 = "1", tax2 = "2",
      unit_cost = { amount = "1.00", code = "USD" } } })).item
    assert.same({ 1, 2 }, { item.tax1, item.tax2 })
    local ex = result(send("POST", A .. "expenses/expenses", { expense = { categoryid = "2001", staffid = "1",
      clientid = "10001", date = "2025-06-01", amount = { amount = "3.00", code = "USD" } } })).expense
    assert.same({ 2001, 1, 10001 }, { ex.categoryid, ex.staffid, ex.clientid })
    local r = send("POST", A .. "items/items", { item = { name = "Bad", tax1 = "one" } })
    assert.same({ 422, 1004, "tax1" }, { r.status, r.json.response.errors[1].errno, r.json.response.errors[1].field })
    local p = send("POST", "/projects/business/1000001/project", { project = { title = "T", client_id = "10001" } })
    assert.same({ 10001, true, false, "unbilled", "0.00" }, { p.json.project.client_id, p.json.project.active,
      p.json.project.complete, p.json.project.billed_status, p.json.project.billed_amount })
    local te = send("POST", "/timetracking/business/1000001/time_entries", { time_entry = { duration = 60,
      started_at = "2025-06-01T10:00:00Z", is_logged = true } })
    assert.same({ false, true, false, "2025-06-01T10:00:00Z" }, { te.json.time_entry.active,
      te.json.time_entry.billable, te.json.time_entry.billed, te.json.time_entry.started_at })
  end)

  it("takes journal entries on user_entered_date, answers [] for empty lists, and never leaks a Lua value", function()
    local r = send("POST", A .. "journal_entries/journal_entries", { journal_entry = { name = "Adjust",
      user_entered_date = "2025-06-01", currency_code = "USD", details = { { debit = "5.00", sub_accountid = 4041 },
      { credit = "5.00", sub_accountid = 4041 } } } })
    assert.equals(200, r.status, r.body)
    local je = r.json.response.result.journal_entry
    assert.same({ "2025-06-01", "5.00", "5.00" }, { je.user_entered_date, je.details[1].debit, je.details[2].credit })
    r = send("POST", A .. "journal_entries/journal_entries", { journal_entry = { name = "Bad",
      user_entered_date = "2025-06-01", details = { { debit = "5.00", sub_accountid = 4041 } } } })
    assert.equals(422, r.status)
    r = sb:http{ method = "POST", path = A .. "journal_entries/journal_entries", headers = auth,
      body = '{"journal_entry":{"name":"N","user_entered_date":null,"details":[]}}' }
    assert.equals(422, r.status)
    assert.is_nil(r.body:find("userdata", 1, true))
    local accts = get(A .. "journal_entry_accounts/journal_entry_accounts")
    assert.truthy(accts.body:find('"sub_accounts":[]', 1, true))
    assert.is_nil(accts.body:find('"sub_accounts":{}', 1, true))
    assert.truthy(get(A .. "bill_vendors/bill_vendors").body:find('"tax_defaults":[]', 1, true))
  end)

  it("filters the project family by updated_since (a true date-time, with or without Z) and started ranges", function()
    local list = get("/timetracking/business/1000001/time_entries?per_page=100&sort=started_at").json
    local e = list.time_entries[10]
    local at = e.started_at
    local n = list.meta.total
    local from = get("/timetracking/business/1000001/time_entries?per_page=100&started_from=" .. at).json.meta.total
    local to = get("/timetracking/business/1000001/time_entries?per_page=100&started_to=" .. at).json.meta.total
    assert.equals(n + 1, from + to) -- both bounds include the entry that starts exactly then
    local t = utc(2025, 6, 20, 12, 0)
    sb:admin("POST", "/_sandbox/change", { business_id = 1000001, resource = "projects", id = 503, at = t,
      set = { description = "touched" } })
    local function since(v)
      local out = {}
      for _, p in ipairs(get("/projects/business/1000001/projects?per_page=100&updated_since=" .. v).json.projects) do
        out[#out + 1] = p.id
      end
      return out
    end
    assert.truthy(table.concat(since("2025-06-20T12:00:00Z"), ","):find("503", 1, true))
    assert.truthy(table.concat(since("2025-06-20T12:00:00"), ","):find("503", 1, true))
    assert.falsy(table.concat(since("2025-06-20T12:00:01Z"), ","):find("503", 1, true))
  end)

  it("seeds realistic books: several currencies, deleted and archived records, changes on later days", function()
    local clients = result(get("/accounting/account/xYz92/users/clients?per_page=100")).clients
    local codes = {}
    for _, c in ipairs(clients) do codes[c.currency_code] = true end
    assert.same({ CAD = true, USD = true }, codes)
    local pc = result(get("/accounting/account/xYz92/reports/accounting/payments_collected?start_date=2023-01-01"))
    assert.is_true(#pc.payments_collected.currency_codes >= 1)
    local later, invs = 0, result(get(A .. "invoices/invoices?per_page=100")).invoices
    for _, i in ipairs(invs) do
      if i.updated:sub(1, 10) > i.create_date then later = later + 1 end
      assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", i.updated)
    end
    assert.is_true(later > 10 and later < #invs, later)
    for _, path in ipairs { "expenses/expenses", "estimates/estimates", "other_incomes/other_incomes" } do
      assert.is_true(result(get(A .. path .. "?search[vis_state]=1")).total >= 1, path)
    end
    assert.is_true(result(get(A .. "invoices/invoices?search[vis_state]=1")).total >= 1)
  end)

  it("hard-deletes through the admin route: gone from every list and 404, with a delete event", function()
    local r = sb:admin("POST", "/_sandbox/hard_delete", { account_id = "aBcD1", resource = "clients", id = 10005 })
    assert.is_true(r.deleted)
    assert.equals(404, get(A .. "users/clients/10005").status)
    for _, v in ipairs { "0", "1", "2" } do
      local list = result(get(A .. "users/clients?per_page=100&search[vis_state]=" .. v)).clients
      for _, c in ipairs(list) do assert.not_equals(10005, c.id) end
    end
    local _, status = sb:admin("POST", "/_sandbox/hard_delete", { account_id = "aBcD1", resource = "clients",
      id = 10005 })
    assert.equals(404, status)
    _, status = sb:admin("POST", "/_sandbox/change", { account_id = "aBcD1", resource = "clients", id = 10006,
      set = { vis_state = 7 } })
    assert.equals(422, status)
  end)

  it("delivers webhooks late, twice, or held and released out of order", function()
    sb:admin("DELETE", "/_sandbox/inbox")
    local cb = result(send("POST", "/events/account/aBcD1/events/callbacks", { callback = {
      event = "client", uri = sb.url .. "/_sandbox/inbox" } })).callback
    local function inbox() return sb:admin("GET", "/_sandbox/inbox").inbox end
    local function wait(n)
      for _ = 1, 200 do
        if #inbox() >= n then return inbox() end
        os.execute("sleep 0.02")
      end
      return inbox()
    end
    local verifier = wait(1)[1].body:match("verifier=(%w+)")
    assert(result(send("PUT", "/events/account/aBcD1/events/callbacks/" .. cb.callbackid,
      { callback = { verifier = verifier } })).callback.verified)
    sb:admin("DELETE", "/_sandbox/inbox")
    local function change(id) sb:admin("POST", "/_sandbox/change", { account_id = "aBcD1", resource = "clients",
      id = id, set = { note = "n" } }) end
    -- twice
    sb:admin("POST", "/_sandbox/webhooks", { twice = true })
    change(10007)
    local got = wait(2)
    assert.equals(2, #got)
    assert.equals(got[1].body, got[2].body)
    -- held, then released in reverse
    sb:admin("DELETE", "/_sandbox/inbox")
    sb:admin("POST", "/_sandbox/webhooks", { hold = true })
    change(10008); change(10009); change(10010)
    os.execute("sleep 0.1")
    assert.equals(0, #inbox())
    assert.equals(3, sb:admin("POST", "/_sandbox/webhooks", { release = "reverse" }).released)
    got = wait(3)
    local order = {}
    for i, m in ipairs(got) do order[i] = m.body:match("object_id=(%d+)") end
    assert.same({ "10010", "10009", "10008" }, order)
    -- late: nothing at first, the delivery after the delay
    sb:admin("DELETE", "/_sandbox/inbox")
    sb:admin("POST", "/_sandbox/webhooks", { delay = 0.5 })
    change(10011)
    os.execute("sleep 0.2")
    assert.equals(0, #inbox())
    assert.equals(1, #wait(1))
    sb:admin("POST", "/_sandbox/webhooks", {})
    local _, status = sb:admin("POST", "/_sandbox/webhooks", { release = "sideways" })
    assert.equals(400, status)
  end)

  it("revokes like FreshBooks: a revoked refresh token ends its grant's access tokens", function()
    local t = sb:token{ user = "carol" }
    local h = { Authorization = "Bearer " .. t.access_token }
    assert.equals(200, sb:http{ path = "/auth/api/v1/users/me", headers = h }.status)
    assert.equals(200, sb:http{ method = "POST", path = "/auth/oauth/revoke", json = { client_id = sb.app.client_id,
      client_secret = sb.app.client_secret, token = t.refresh_token } }.status)
    local r = sb:http{ path = "/auth/api/v1/users/me", headers = h }
    assert.equals(401, r.status)
    assert.equals("unauthenticated", r.json.error)
    r = sb:http{ path = "/accounting/account/QmP57/users/clients", headers = h }
    assert.same({ 401, 1003 }, { r.status, r.json.response.errors[1].errno })
  end)

  it("answers Date in its own time, which the clock moves (a mirror learns FreshBooks' now from it)", function()
    local date = require "freshbooks.date"
    local before = sb:admin("GET", "/_sandbox/clock")
    sb:admin("POST", "/_sandbox/clock", { offset = -400 * 86400 })
    local r = get(A .. "users/clients?per_page=1")
    local now = sb:admin("GET", "/_sandbox/clock").now
    local at = date.http(r.headers.date)
    assert.is_true(math.abs(at - now) <= 2, r.headers.date)
    sb:admin("POST", "/_sandbox/clock", { offset = before.offset })
    assert.is_true(math.abs(date.http(get(A .. "users/clients?per_page=1").headers.date) - os.time()) <= 2)
  end)
end)
