-- What a mirror kept by incremental sync depends on, as FreshBooks does it: filter semantics (id
-- lists, exclusive maxima, day-granular dates read in US/Eastern across a DST change, updated_since),
-- typed answers, realistic seed data, and the admin routes that change records at chosen times,
-- hard-delete them, and deliver webhooks late, twice or out of order.
local sandbox = require "support.sandbox"
local cjson = require "cjson"
local H = require "support.fbtest"

describe("sandbox sync semantics", function()
  local sb, auth
  local A = "/accounting/account/aBcD1/"
  local function get(path) return sb:fetch{ path = path, headers = auth } end
  local function send(method, path, tbl) return sb:fetch{ method = method, path = path, headers = auth, json = tbl } end
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

  it("filters invoice profiles by clientid(s) read as customerid (docs:invoice_profiles)", function()
    local all = result(get(A .. "invoice_profiles/invoice_profiles")).invoice_profiles
    assert.is_true(#all >= 2)
    local one = result(get(A .. "invoice_profiles/invoice_profiles?search[clientid]=" .. all[1].customerid))
    for _, p in ipairs(one.invoice_profiles) do assert.equals(all[1].customerid, p.customerid) end
    assert.is_true(#one.invoice_profiles < #all)
    local both = result(get(A .. "invoice_profiles/invoice_profiles?search[clientids][]=" .. all[1].customerid
      .. "&search[clientids][]=" .. all[2].customerid))
    assert.equals(#all, #both.invoice_profiles)
    assert.same({}, result(get(A .. "invoice_profiles/invoice_profiles?search[clientid]=1")).invoice_profiles)
  end)

  it("filters estimates by statusid/statusids, their status code (docs:estimates)", function()
    local all = result(get(A .. "estimates/estimates")).estimates
    local sent = result(send("PUT", A .. "estimates/estimates/" .. all[1].id,
      { estimate = { action_mark_as_sent = true } }))
    assert.equals(2, sent.estimate.status)
    assert.same({ all[1].id }, ids(result(get(A .. "estimates/estimates?search[statusid]=2")).estimates))
    local both = result(get(A .. "estimates/estimates?search[statusids][]=1&search[statusids][]=2")).estimates
    assert.equals(#all, #both)
  end)

  it("answers a client's uuid for one client, not in lists (python's recorded GET, create and list)", function()
    local listed = result(get(A .. "users/clients?per_page=1")).clients[1]
    assert.is_nil(listed.uuid)
    assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", result(get(A .. "users/clients/" .. listed.id)).client.uuid)
    local made = result(send("POST", A .. "users/clients", { client = { email = "u@example.com" } })).client
    assert.is_string(made.uuid)
  end)

  it("answers staff's special searches: user_like over names and organization, phone_like", function()
    local staff = result(get(A .. "users/staffs")).staffs[1]
    assert.same({ staff.id }, ids(result(get(A .. "users/staffs?search[user_like]=" .. staff.lname:lower())).staffs))
    assert.same({}, result(get(A .. "users/staffs?search[user_like]=nobody-such")).staffs)
    assert.same({}, result(get(A .. "users/staffs?search[phone_like]=999")).staffs)
    assert.same({ staff.id }, ids(result(get(A .. "users/staffs?search[email_like]=" .. staff.email:sub(1, 4))).staffs))
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
    -- late: nothing at first, the delivery after the delay (1.5 s: a loaded machine can spend half a
    -- second between the change and the look at the inbox)
    sb:admin("DELETE", "/_sandbox/inbox")
    sb:admin("POST", "/_sandbox/webhooks", { delay = 1.5 })
    change(10011)
    os.execute("sleep 0.2")
    assert.equals(0, #inbox())
    assert.equals(1, #wait(1))
    sb:admin("POST", "/_sandbox/webhooks", {})
    local _, status = sb:admin("POST", "/_sandbox/webhooks", { release = "sideways" })
    assert.equals(400, status)
  end)

  it("answers lines only when include[]=lines asks, on one record as on lists (bills always carry theirs)", function()
    for _, path in ipairs { "invoices/invoices", "estimates/estimates", "credit_notes/credit_notes",
                            "invoice_profiles/invoice_profiles" } do
      local list = result(get(A .. path .. "?per_page=1"))
      local key = next(list, nil)
      while type(list[key]) ~= "table" do key = next(list, key) end
      local first = list[key][1]
      assert.is_nil(first.lines, path)
      local one = result(get(A .. path .. "/" .. first.id))
      local single = next(one)
      assert.is_nil(one[single].lines, path .. " GET")
      one = result(get(A .. path .. "/" .. first.id .. "?include[]=lines"))
      assert.is_true(#one[single].lines > 0, path .. " GET include[]=lines")
    end
    local made = result(send("POST", A .. "invoices/invoices", { invoice = { customerid = 10001,
      create_date = "2025-06-01", lines = { { name = "Work", qty = 2, unit_cost = { amount = "10.00" } } } } }))
    assert.is_nil(made.invoice.lines)
    assert.equals("20.00", made.invoice.amount.amount)
    local put = result(send("PUT", A .. "invoices/invoices/" .. made.invoice.id .. "?include[]=lines",
      { invoice = { notes = "n" } }))
    local line = put.invoice.lines[1]
    assert.same({ "Work", "2", 0, true }, { line.name, line.qty, line.basecampid, line.date == cjson.null })
    assert.is_true(#result(get(A .. "bills/bills/1")).bill.lines > 0)
  end)

  it("answers one credit note under credit_notes and takes credit_note or credit_notes", function()
    for _, wrapper in ipairs { "credit_note", "credit_notes" } do
      local r = send("POST", A .. "credit_notes/credit_notes", { [wrapper] = { clientid = 10001,
        create_date = "2025-06-01", lines = { { name = "Credit", qty = 1, unit_cost = { amount = "5.00" } } } } })
      local made = result(r).credit_notes
      assert.same({ 10001, "created", "5.00" }, { made.clientid, made.status, made.amount.amount })
      assert.is_nil(result(r).credit_note)
      assert.equals(made.id, result(get(A .. "credit_notes/credit_notes/" .. made.id)).credit_notes.id)
    end
  end)

  it("answers tasks' vis_state and takes the visState the Node SDK sends", function()
    local task = result(get(A .. "projects/tasks/1")).task
    assert.same({ 0, 0, 0 }, { task.vis_state, task.tax1, task.tax2 })
    assert.is_nil(task.visState)
    assert.equals(2, result(send("PUT", A .. "projects/tasks/1", { task = { visState = 2 } })).task.vis_state)
    assert.equals(0, result(send("PUT", A .. "projects/tasks/1", { task = { vis_state = 0 } })).task.vis_state)
    assert.equals(1, result(send("PUT", A .. "projects/tasks/2", { task = { visState = 1, name = "ignored" } }))
      .task.vis_state)
    assert.same({}, result(get(A .. "projects/tasks?search[taskids][]=2")).tasks)
  end)

  it("answers HTTP DELETE as FreshBooks does: {\"response\": {}}, other income {}", function()
    local tax = result(send("POST", A .. "taxes/taxes", { tax = { name = "PST", amount = "7" } })).tax
    local r = sb:http{ method = "DELETE", path = A .. "taxes/taxes/" .. tax.id, headers = auth }
    assert.same({ 200, '{"response":{}}' }, { r.status, r.body })
    r = sb:http{ method = "DELETE", path = A .. "other_incomes/other_incomes/1", headers = auth }
    assert.same({ 200, "{}" }, { r.status, r.body })
  end)

  it("answers projects as a list (group_id) and one at a time (group; a GET's abilities beside it)", function()
    local P = "/projects/business/1000001/"
    local list = get(P .. "projects?per_page=2").json
    assert.same({}, list.meta.sort)
    local first = list.projects[1]
    assert.is_number(first.group_id)
    assert.is_nil(first.group)
    assert.matches("^%d+%-%d%d%-%d%dT%d%d:%d%d:%d%d$", first.updated_at)
    local one = get(P .. "project/" .. first.id).json
    assert.equals(first.group_id, one.project.group.id)
    assert.is_nil(one.project.group_id)
    assert.is_nil(one.project.abilities)
    assert.is_true(#one.abilities > 10)
    for _, a in ipairs(one.abilities) do assert.same({ "string", "boolean" }, { type(a.name), type(a.value) }) end
    assert.is_nil(get(P .. "project/" .. first.id .. "?skip_group=true").json.project.group)
    local made = send("POST", P .. "project", { project = { title = "New" } }).json
    assert.same({ "New", true }, { made.project.title, made.project.description == cjson.null })
    assert.is_nil(made.abilities)
    -- every missing required field at once
    local r = send("POST", P .. "project", { project = { description = "no title" } })
    assert.same({ 422, 2001, "field required" }, { r.status, r.json.errno, r.json.error.title })
    r = send("POST", "/timetracking/business/1000001/time_entries", { time_entry = { note = "x" } })
    assert.same({ 422, "field required", "field required" },
      { r.status, r.json.error.started_at, r.json.error.duration })
  end)

  it("adds what the listed time entries logged to the meta: in all, unbilled, per member, client, project, day",
    function()
    local r = get("/timetracking/business/1000001/time_entries?per_page=5").json
    local meta, sum = r.meta, 0
    assert.is_true(meta.total_unbilled <= meta.total_logged)
    for _, m in ipairs(meta.total_logged_per_team_member) do
      sum = sum + m.total_logged
      local by_client, by_day = 0, 0
      for _, c in ipairs(m.total_logged_per_client) do
        by_client = by_client + c.total_logged
        local by_project = 0
        for _, p in ipairs(c.total_logged_per_project) do by_project = by_project + p.total_logged end
        assert.equals(c.total_logged, by_project)
      end
      for _, d in ipairs(m.total_logged_per_day) do
        assert.matches("^%d%d%d%d%-%d%d%-%d%d$", d.date)
        by_day = by_day + d.total_logged
      end
      assert.same({ m.total_logged, m.total_logged }, { by_client, by_day })
    end
    assert.equals(meta.total_logged, sum)
    sum = 0
    for _, c in ipairs(meta.total_logged_per_client) do sum = sum + c.total_logged end
    assert.equals(meta.total_logged, sum)
    local e = r.time_entries[1]
    assert.equals("America/New_York", e.local_timezone)
    assert.matches("^%d+%-%d%d%-%d%dT%d%d:%d%d:%d%d$", e.local_started_at)
    assert.matches("Z$", e.started_at)
  end)

  it("answers an attachment without a link and an image with the link it is served at", function()
    local acct = H.session(sb):account("aBcD1")
    local att, none = assert(acct.attachments:upload("%PDF-1.4", { filename = "a.pdf" }))
    assert.is_nil(none)
    assert.equals(att.jwt, att.public_id)
    local img, link = assert(acct.images:upload("\137PNG\r\n", { filename = "i.png", content_type = "image/png" }))
    assert.equals(img.jwt, img.public_id)
    local path = link:match("^https?://[^/]+(/service/uploads/images/%w+)$")
    assert(path, link)
    local back = sb:http{ path = path, headers = auth }
    assert.same({ 200, "\137PNG\r\n" }, { back.status, back.body })
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
