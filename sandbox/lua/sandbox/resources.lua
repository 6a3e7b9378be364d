-- The accounting and project families, table-driven: one handler each for list/get/create/update/delete
-- over the catalogue in sandbox.data and the record templates in sandbox.records. The system, the
-- invoice share link and the service-rates list live here too; reports (and their routes) in sandbox.reports.
local json = require "sandbox.json"
local state = require "sandbox.state"
local http = require "sandbox.http"
local util = require "sandbox.util"
local auth = require "sandbox.auth"
local data = require "sandbox.data"
local records = require "sandbox.records"

local resources = {}
local NULL = json.null
local floor, ceil, tostring, tonumber = math.floor, math.ceil, tostring, tonumber

local function emit(account_id, event, object_id, user)
  local ok, webhooks = pcall(require, "sandbox.webhooks")
  if ok and webhooks.emit then webhooks.emit(account_id, event, object_id, user) end
end

local function render(R, rec, acct, include_lines)
  local out = records.render(R.T, rec, acct)
  if R.lines and include_lines then out.lines = json.array(rec.lines or {}) end
  if R.name == "bills" then
    local v = acct.cols.bill_vendors.by_id[rec.vendorid]
    out.vendor = v and records.render(data.by_name.bill_vendors.T, v, acct) or NULL
    local pays = json.array()
    for _, p in ipairs(acct.cols.bill_payments.list) do
      if p.billid == rec.id and not p.removed then
        pays[#pays + 1] = records.render(data.by_name.bill_payments.T, p, acct)
      end
    end
    out.bill_payments = pays
  elseif R.name == "expenses" and include_lines == "category" then
    local c = acct.cols.categories.by_id[rec.categoryid]
    if c then out.category = records.render(data.by_name.categories.T, c, acct) end
  end
  return out
end

-- Errors in the resource's own shape (google.rpc also whenever the request carries X-API-VERSION).
-- Returns status, body.
local rpc_code = { [400] = 3, [422] = 3, [404] = 5, [403] = 7, [409] = 6, [401] = 16 }
local function text(v) if v == nil or v == NULL then return "" end return tostring(v) end
local function fail(R, status, errno, field, message, value)
  local detail = { errno = errno, field = field or NULL, message = message, object = R and R.object or NULL,
                   value = value ~= nil and value ~= NULL and tostring(value) or NULL }
  if (R and R.errors == "rpc") or state.rpc_errors then
    return status, { code = rpc_code[status] or 2, message = "Request failed with status_code: " .. status,
      details = json.array { {
      ["@type"] = "type.googleapis.com/google.rpc.ErrorInfo", reason = tostring(errno),
      domain = "accounting.api.freshbooks.com",
      -- metadata values are strings, empty where there is none (the Python and Java SDKs' recorded errors)
      metadata = { field = text(detail.field), message = message, object = text(detail.object),
                   value = text(detail.value) } } } }
  end
  local body = { response = { errors = json.array { detail } } }
  if R and R.errors == "legacy200" then return 200, body end
  return status, body
end

-- The caller: token, scope, and membership of the business that owns the URL's account or business.
local function member_ctx(req, family, scope, b, what)
  local ctx, status, body, headers = auth.bearer(req, family, scope)
  if not ctx then return nil, status, body, headers end
  if not b or not state.member(ctx.user, b) then
    return nil, 403, auth.forbidden(family, nil, "The user does not have access to this " .. what .. ".")
  end
  ctx.business = b
  return ctx
end

local function account_ctx(req, aid, scope)
  local ctx, status, body, headers = member_ctx(req, "accounting", scope, state.business_by_account(aid), "account")
  if ctx then ctx.account = state.data.accounts[aid] end
  return ctx, status, body, headers
end

-- Pagination as FreshBooks does it: per_page capped at 100, page 0 is 1, past the end is empty.
local function paging(args, fail_fn, default)
  local function num(v, errno, what)
    if v == nil then return nil end
    if type(v) == "table" then v = v[#v] end
    if not tostring(v):match("^%d+$") then return nil, fail_fn(400, errno, what, "Invalid " .. what .. ".", v) end
    return tonumber(v)
  end
  local per_page, s1, b1 = num(args.per_page, 1013, "per_page")
  if s1 then return nil, s1, b1 end
  local page, s2, b2 = num(args.page, 1014, "page")
  if s2 then return nil, s2, b2 end
  per_page = per_page or default or 15
  if per_page > 100 then per_page = 100 end
  if per_page < 1 then per_page = default or 15 end
  page = page or 1
  if page < 1 then page = 1 end
  return { page = page, per_page = per_page }
end

-- A record's JSON rendering, encoded once while no request has changed data (state.writes): the
-- sandbox is one worker, and encoding 100 invoices per page must not be what a client's parallel
-- paging measures.
local rendered = setmetatable({}, { __mode = "k" })
local function render_json(R, rec, acct, lines)
  local c = rendered[rec]
  if not c or c.writes ~= state.writes then
    c = { writes = state.writes }
    rendered[rec] = c
  end
  local key = lines and tostring(lines) or "plain"
  if not c[key] then
    local out = render(R, rec, acct, lines)
    for f in pairs(R.T.unlisted or {}) do out[f] = nil end
    c[key] = json.raw(json.encode(out))
  end
  return c[key]
end

local function slice(list, p)
  local total = #list
  local out = json.array()
  local first = (p.page - 1) * p.per_page + 1
  for i = first, math.min(total, first + p.per_page - 1) do out[#out + 1] = list[i] end
  return out, { page = p.page, per_page = p.per_page, total = total, pages = ceil(total / p.per_page) }
end

-- Filters -------------------------------------------------------------------------------------------
-- A search key names a field of the record (the answer's name), the record's id key, or an alias.
-- Returns the field, or nil for a key FreshBooks would not know (ignored, as FreshBooks does).
local function resolve_field(R, key)
  local T = R.T
  if R.aliases and R.aliases[key] then return R.aliases[key] end
  if key == "id" or key == R.id_key then return "id" end
  if key == "vis_state" or key == "visState" then return "vis_state" end
  if T.defaults[key] ~= nil or (T.money and T.money[key] ~= nil) then return key end
  if T.stamps and T.stamps[key] then return key end
  -- "updated" on the records that answer updated_at
  if key == "updated" and T.stamps and T.stamps.updated_at then return "updated_at" end
end

-- <field>s and <id key>s, and ids: the list forms.
local function resolve_list(R, key)
  if key == "ids" or key == R.id_key .. "s" then return "id" end
  if R.aliases and R.aliases[key] then return R.aliases[key] end
  return key:sub(-1) == "s" and resolve_field(R, key:sub(1, -2)) or nil
end

local DATE_FIELDS = { date = true, create_date = true, issue_date = true, paid_date = true, due_date = true,
                      user_entered_date = true }

-- A record's value for filtering and sorting: ids as numbers, money as cents, stamps as seconds.
local function value_of(R, rec, field)
  if field == "id" then return rec.id end
  local T = R.T
  if T.stamps and T.stamps[field] then return rec[field .. "_t"] end
  local v = rec[field]
  if v == nil then
    local d = T.defaults[field]
    if d == nil and T.money then d = T.money[field] end
    if type(d) == "function" then v = d(rec, R.acct) elseif d ~= records.ARRAY then v = d end
  end
  return v
end

-- The day (a day number) a value stands for: a date, or a stamp's day in the zone it is answered in.
local function day_of(R, field, v)
  if v == nil or v == NULL then return nil end
  local kind = R.T.stamps and R.T.stamps[field]
  if kind == "eastern" then return util.parse_date(util.eastern(v)) end
  if kind then return floor(v / 86400) end
  return util.parse_date(v)
end

local function is_day_field(R, field)
  return DATE_FIELDS[field] or (R.T.stamps and R.T.stamps[field]) ~= nil
end

-- The searches FreshBooks documents as "special" (docs:clients, docs:staff): name -> function(value, acct) ->
-- predicate.
local function contains_any(fields)
  return function(v)
    local needle = tostring(v):lower()
    return function(rec)
      for _, f in ipairs(fields) do
        local x = rec[f]
        if type(x) == "string" and x:lower():find(needle, 1, true) then return true end
      end
      return false
    end
  end
end
-- Clients with an invoice that matches `want(invoice)`: one pass over the invoices, then a set lookup.
local function clients_with(want)
  return function(_, acct)
    local set = {}
    for _, inv in ipairs(acct.cols.invoices.list) do
      if not inv.removed and inv.vis_state ~= 1 and want(inv) then set[inv.customerid] = true end
    end
    return function(rec) return set[rec.id] == true end
  end
end
local SPECIAL = {
  clients = {
    address_like = contains_any { "p_street", "p_street2", "p_city", "p_province", "p_country", "p_code" },
    phone_like = contains_any { "mob_phone", "home_phone", "bus_phone", "fax" },
    has_draft = clients_with(function(inv) return inv.status == 1 end),
    has_outstanding = clients_with(function(inv) return inv.status ~= 1 and inv.outstanding > 0 end),
    has_overdue = clients_with(function(inv) return inv.display_status == "overdue" end),
    has_credit = function(_, acct)
      local set = {}
      for _, c in ipairs(acct.cols.credit_notes.list) do
        if not c.removed and c.vis_state ~= 1 then set[c.clientid] = true end
      end
      return function(rec) return set[rec.id] == true end
    end,
  },
  -- docs:staff: user_like over names and organization, phone_like over the phone numbers
  staffs = {
    user_like = contains_any { "fname", "lname", "organization" },
    phone_like = contains_any { "mob_phone", "home_phone", "bus_phone", "fax" },
  },
}

-- search[...] -> predicates. Equals, In (`[]` lists), Like (case-insensitive substring), Between
-- (_min: equal or greater; _max: below, exclusive, as FreshBooks' search page says). Between on dates and
-- stamps has day-level granularity: the value is read as its day (YYYY-MM-DD; a time part is ignored).
local function accounting_filters(R, args)
  local preds, vis_given = {}, false
  local function add(p) preds[#preds + 1] = p end
  for k, v in pairs(args) do
    local key, brackets = k:match("^search%[([^%]]+)%](.*)$")
    if key then
      local values = type(v) == "table" and v or { v }
      local like = key:match("^(.-)_like$")
      local lo = key:match("^(.-)_min$")
      local hi = key:match("^(.-)_max$")
      local special = SPECIAL[R.name] and SPECIAL[R.name][key]
      if special then
        add(special(values[1], R.acct))
      elseif brackets == "[]" or type(v) == "table" then
        local field = resolve_list(R, key) or resolve_field(R, key)
        if field then
          local set = {}
          for _, x in ipairs(values) do set[tostring(x)] = true end
          if field == "vis_state" then vis_given = true end
          add(function(rec) return set[tostring(value_of(R, rec, field))] == true end)
        end
      elseif like then
        local field = resolve_field(R, like)
        if field then
          local needle = tostring(values[1]):lower()
          add(function(rec)
            local x = value_of(R, rec, field)
            return x ~= nil and x ~= NULL and tostring(x):lower():find(needle, 1, true) ~= nil
          end)
        end
      elseif lo or hi then
        local field = resolve_field(R, lo or hi)
        if field then
          local money = R.T.money and R.T.money[field] ~= nil
          local bound, get
          if is_day_field(R, field) then
            bound = util.parse_date(values[1])
            get = function(rec) return day_of(R, field, value_of(R, rec, field)) end
          elseif money then
            bound = util.cents(tostring(values[1]))
            get = function(rec) return value_of(R, rec, field) end
          else
            bound = tonumber(values[1])
            get = function(rec) return tonumber(value_of(R, rec, field)) end
          end
          if bound == nil then
            add(function() return false end)
          else
            add(function(rec)
              local x = get(rec)
              if type(x) ~= "number" then return false end
              if lo then return x >= bound end
              return x < bound
            end)
          end
        end
      else
        local field = resolve_field(R, key)
        if field then
          if field == "vis_state" then vis_given = true end
          local want = tostring(values[1])
          if R.T.money and R.T.money[field] ~= nil then want = tostring(util.cents(want)) end
          add(function(rec) return tostring(value_of(R, rec, field)) == want end)
        end
      end
    end
  end
  if not vis_given then
    add(function(rec) return rec.vis_state ~= 1 end) -- deleted records stay out of lists
  end
  return preds
end

local function sort_list(list, key_fn, desc)
  table.sort(list, function(a, b)
    local x, y = key_fn(a), key_fn(b)
    if x == NULL then x = nil end
    if y == NULL then y = nil end
    if x == y or x == nil or y == nil then
      if x == nil and y ~= nil then return not desc end
      if y == nil and x ~= nil then return desc end
      return a.id < b.id
    end
    if type(x) ~= type(y) then x, y = tostring(x), tostring(y) end
    if desc then return x > y end
    return x < y
  end)
end

local function has_include(args, what)
  for k, v in pairs(args) do
    if k == "include[]" or k == "include" then
      local vals = type(v) == "table" and v or { v }
      for _, x in ipairs(vals) do if x == what then return true end end
    end
  end
  return false
end

-- Accounting handlers ------------------------------------------------------------------------------

-- The list arguments but the page: what every page of one walk shares.
local function walk_key(args)
  local keys = {}
  for k, v in pairs(args) do
    if k ~= "page" then keys[#keys + 1] = k .. "=" .. (type(v) == "table" and table.concat(v, ",") or tostring(v)) end
  end
  table.sort(keys)
  return table.concat(keys, "&")
end

-- What an answer includes beyond the record: lines with include[]=lines (bills always carry theirs:
-- node:Bills.test.ts), an expense's category with include[]=category. Lists, single GETs and the answers
-- to POST and PUT alike (node:Invoice.test.ts and CreditNote.test.ts: no lines unless asked for).
local function includes(R, req)
  if R.lines == "bill" then return true end
  if R.lines and has_include(req.args, "lines") then return true end
  return R.name == "expenses" and has_include(req.args, "category") and "category" or nil
end

local function list_page(R, req, ctx, matched, p)
  local page, meta = slice(matched, p)
  local lines = includes(R, req)
  for i, rec in ipairs(page) do page[i] = render_json(R, rec, ctx.account, lines) end
  local result = { [R.plural] = page, page = meta.page, pages = meta.pages, per_page = meta.per_page,
                   total = meta.total }
  return 200, { response = { result = result } }
end

local function list(R, req, aid)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":read")
  if not ctx then return s, b, h end
  local p, ps, pb = paging(req.args, function(...) return fail(R, ...) end)
  if not p then return ps, pb end
  local col = ctx.account.cols[R.name]
  R.acct = ctx.account
  -- The pages of one walk share their filtered, sorted list: computed once while nothing changes.
  local walk = walk_key(req.args)
  local cached = col.walks and col.walks[walk]
  if cached and cached.writes == state.writes then
    return list_page(R, req, ctx, cached.matched, p)
  end
  local preds = accounting_filters(R, req.args)
  local matched, n = {}, 0
  local src = col.list
  for i = 1, #src do
    local rec = src[i]
    local ok = not rec.removed
    for j = 1, #preds do if ok and not preds[j](rec) then ok = false end end
    if ok then n = n + 1; matched[n] = rec end
  end
  -- sort=<field>_asc|_desc on a field the record answers; FreshBooks documents no error for another
  -- value (a "-field" or an unknown key): the list keeps its order.
  local sort = type(req.args.sort) == "string" and req.args.sort
  if sort then
    local field, dir = sort:match("^(.-)_(asc)$")
    if not field then field, dir = sort:match("^(.-)_(desc)$") end
    field = field and resolve_field(R, field)
    if field then
      sort_list(matched, function(rec)
        local v = value_of(R, rec, field)
        return tonumber(v) or v
      end, dir == "desc")
    end
  end
  col.walks = col.walks or {}
  col.walks[walk] = { writes = state.writes, matched = matched }
  return list_page(R, req, ctx, matched, p)
end

local function title(R) return (R.object:gsub("^%l", string.upper):gsub("_", " ")) end

local function find(R, ctx, id)
  local rec = ctx.account.cols[R.name].by_id[tonumber(id)]
  if not rec or rec.removed then
    return nil, fail(R, 404, 1012, R.id_key or "id", title(R) .. " not found.", id)
  end
  return rec
end

local function get(R, req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":read")
  if not ctx then return s, b, h end
  local rec, st, body = find(R, ctx, id)
  if not rec then return st, body end
  local lines = includes(R, req)
  return 200, { response = { result = { [R.answer or R.single] = render(R, rec, ctx.account, lines) } } }
end

-- Lines in, lines + total out. Returns lines, total cents or nil, status, body.
local function build_lines(R, ctx, rec, lines, cur)
  if type(lines) ~= "table" then return nil, fail(R, 422, 1004, "lines", "Lines must be a list.", NULL) end
  local out, total = json.array(), 0
  local t = state.now()
  for i, l in ipairs(lines) do
    if type(l) ~= "table" then return nil, fail(R, 422, 1004, "lines", "Invalid line.", i) end
    local qty = tonumber(l.qty or l.quantity or 1)
    local unit = util.cents(l.unit_cost)
    if R.errors == "rpc" and type(l.unit_cost) == "table" and type(l.unit_cost.amount) ~= "string" then
      unit = nil
    end
    if not qty or not unit then
      return nil, fail(R, 422, 1004, "unit_cost", "Invalid value for unit_cost.", i)
    end
    local amount = floor(qty * unit + 0.5)
    total = total + amount
    if R.lines == "bill" then
      local cat = ctx.account.cols.categories.by_id[tonumber(l.categoryid)]
      if not cat then return nil, fail(R, 422, 1012, "categoryid", "Category not found.", l.categoryid) end
      out[i] = data.bill_line(i, cat.category, cat.id, tostring(l.description or ""), qty, unit, cur)
      out[i].amount, out[i].total_amount = util.money(amount, cur), util.money(amount, cur)
    else
      local line = data.line(R.name, rec.id or ctx.account.cols[R.name].next_id, i, tostring(l.name or ""),
        qty, unit, cur, t)
      line.qty, line.amount = string.format("%.14g", qty), util.money(amount, cur)
      line.description = type(l.description) == "string" and l.description or ""
      if line.type then line.type = tonumber(l.type) or 0 end
      for _, f in ipairs { "taxName1", "taxName2" } do
        if type(l[f]) == "string" then line[f] = l[f] end
      end
      for _, f in ipairs { "taxAmount1", "taxAmount2" } do
        local v = l[f]
        if type(v) == "number" or type(v) == "string" and tonumber(v) then line[f] = tostring(v) end
      end
      out[i] = line
    end
  end
  return out, total
end

-- Fields a request never sets: ids, stamps and what FreshBooks computes.
local READONLY = { id = true, accounting_systemid = true, accountid = true, updated = true, created_at = true,
  updated_at = true, signup_date = true, outstanding = true, paid = true, v3_status = true, display_status = true,
  payment_status = true, due_date = true, date_paid = true, bill_payments = true, vendor = true,
  total_amount = true, tax_amount = true, ui_status = true, userid = true, invoiceid_ = true, logid = true }

-- Copy the writable fields of `src` into `rec`, typed as FreshBooks keeps them (ids as numbers, whatever
-- the request sent). Returns true or nil, status, body.
local function apply_fields(R, ctx, rec, src)
  local T = R.T
  local money = T.money or {}
  local cur = type(src.currency_code) == "string" and src.currency_code or records.currency(rec, ctx.account)
  if R.name == "journal_entries" and src.date ~= nil and src.user_entered_date == nil then
    src.user_entered_date = src.date
  end
  for key, v in pairs(src) do
    local f = key
    local known = f and (T.defaults[f] ~= nil or money[f] ~= nil or f == "lines" or f == "vis_state")
    local own_id = f == R.id_key and type(T.defaults[f]) == "function"
    if known and type(f) == "string" and not READONLY[f] and not own_id and v ~= nil then
      if f == "lines" and R.lines then
        local lines, total, err_body = build_lines(R, ctx, rec, v, cur)
        if not lines then return nil, total, err_body end
        rec.lines = lines
        rec.amount = total
        if R.name == "bills" then rec.total_amount, rec.tax_amount = total, 0 end
        if money.outstanding then rec.outstanding = total - (tonumber(rec.paid) or 0) end
      elseif money[f] ~= nil then
        if v == NULL then
          rec[f] = NULL
        else
          local amount = type(v) == "table" and v.amount or v
          if R.errors == "rpc" and type(amount) ~= "string" then
            return nil, fail(R, 422, 1004, f, "Money amounts must be strings.", tostring(amount))
          end
          local cents = util.cents(v)
          if not cents then return nil, fail(R, 422, 1004, f, "Invalid value for " .. f .. ".", tostring(amount)) end
          rec[f] = cents
        end
      elseif f == "vis_state" then
        if v ~= 0 and v ~= 1 and v ~= 2 then return nil, fail(R, 422, 1004, f, "Invalid vis_state.", v) end
        rec[f] = v
      elseif DATE_FIELDS[f] then
        if not util.parse_date(v) then return nil, fail(R, 422, 1004, f, "Invalid date.", v) end
        rec[f] = tostring(v):sub(1, 10)
      elseif f == "details" and R.name == "journal_entries" then
        rec.details = v -- checked by journal_details
      elseif f == "taxes" then
        if type(v) ~= "table" then return nil, fail(R, 422, 1004, f, "Invalid value for taxes.", NULL) end
        local taxes = json.array()
        for i, t in ipairs(v) do
          taxes[i] = { amount = tostring(type(t) == "table" and t.amount or ""), name = tostring(type(t) == "table"
            and t.name or "") }
        end
        rec.taxes = taxes
      else
        local x, why = records.coerce(T, f, v)
        if x == nil then return nil, fail(R, 422, 1004, f, ("Invalid value for %s: %s expected."):format(f, why),
          type(v) == "table" and NULL or v) end
        local ref = R.refs and R.refs[f]
        if ref and not ctx.account.cols[ref].by_id[x] then
          return nil, fail(R, 422, 1012, f, title(data.by_name[ref]) .. " not found.", v)
        end
        rec[f] = x
      end
    end
  end
  if R.name == "bills" and (src.due_offset_days ~= nil or src.issue_date ~= nil) and rec.issue_date then
    rec.due_date = util.date(util.parse_date(rec.issue_date) + (tonumber(rec.due_offset_days) or 0))
  end
  return true
end

-- The admin routes' way in (/_sandbox/change): the API's own typing and checks, no request.
function resources.apply(R, acct, rec, src)
  R.acct = acct
  return apply_fields(R, { account = acct }, rec, src)
end

-- A journal entry's details: each a debit or a credit (strings, as FreshBooks answers them) against a
-- sub account; the debits and the credits must balance.
local function journal_details(R, ctx, rec)
  local src = rec.details
  if type(src) ~= "table" or src[1] == nil then
    return nil, fail(R, 422, 1001, "details", "Field details is required.", NULL)
  end
  local out, debit, credit = json.array(), 0, 0
  for i, d in ipairs(src) do
    if type(d) ~= "table" then return nil, fail(R, 422, 1004, "details", "Invalid detail.", i) end
    local dc, cc = d.debit ~= nil and d.debit ~= NULL and util.cents(d.debit),
                   d.credit ~= nil and d.credit ~= NULL and util.cents(d.credit)
    if (dc == nil or dc == false) == (cc == nil or cc == false) then
      return nil, fail(R, 422, 1004, "details", "A detail is either a debit or a credit.", i)
    end
    debit, credit = debit + (dc or 0), credit + (cc or 0)
    local sub = tonumber(d.sub_accountid)
    if not sub then return nil, fail(R, 422, 1001, "sub_accountid", "Field sub_accountid is required.", NULL) end
    local id = (ctx.account.detail_seq or 9000) + 1
    ctx.account.detail_seq = id
    out[i] = { categoryid = NULL, credit = cc and tostring(d.credit) or NULL, currency_code = rec.currency_code
      or ctx.account.currency_code, debit = dc and tostring(d.debit) or NULL, description = rec.description or "",
      detailid = id, id = id, name = rec.name, sub_accountid = sub, user_entered_date = rec.user_entered_date }
  end
  if debit ~= credit then
    return nil, fail(R, 422, 1004, "details", "The debits and the credits must balance.", NULL)
  end
  rec.details = out
  return true
end

-- The first required field the create request left out (or sent empty).
local function required_missing(R, rec, src)
  for _, f in ipairs(R.required or {}) do
    local v = src[f]
    if v == nil or v == "" or v == NULL or v == 0 then return f end
  end
  if R.required_any then
    for _, f in ipairs(R.required_any) do if rec[f] ~= nil and rec[f] ~= "" then return nil end end
    return R.required_any[#R.required_any]
  end
end

local function insert(col, rec)
  local id = col.next_id
  rec.id = id
  col.next_id = id + 1
  col.list[#col.list + 1] = rec
  col.by_id[id] = rec
end
resources.insert = insert

local function new_record(R, acct)
  local col = acct.cols[R.name]
  local now = state.now()
  if R.name == "invoices" then
    return setmetatable({ col.next_id, 0, data.TODAY, 0, 0, 0, 1, 0, now, created_t = now }, col.mt)
  end
  local rec = { vis_state = 0, updated_t = now, created_at_t = now, updated_at_t = now, signup_date_t = now }
  if R.name == "clients" then
    rec.uuid = data.uuid(acct.seed, acct.business.id * 7 + 3, col.next_id)
  end
  return rec
end

-- A payment changes its invoice's paid amount and status.
local function after_payment(ctx, pay, delta)
  local inv = ctx.account.cols.invoices.by_id[tonumber(pay.invoiceid)]
  if not inv then return end
  inv.paid = math.max(0, inv.paid + delta)
  inv.status = inv.paid >= inv.amount and 4 or (inv.paid > 0 and 8 or 2)
  inv.updated_t = state.now()
  emit(ctx.account.account_id, "invoice.update", inv.id, ctx.user)
end

-- A bill payment changes its bill's paid and outstanding amounts and status.
local function after_bill_payment(ctx, pay, delta)
  local bill = ctx.account.cols.bills.by_id[tonumber(pay.billid)]
  if not bill then return end
  bill.paid = math.max(0, (bill.paid or 0) + delta)
  bill.outstanding = (bill.amount or 0) - bill.paid
  bill.status = bill.paid >= (bill.amount or 0) and "paid" or (bill.paid > 0 and "partial" or "unpaid")
  bill.updated_at_t = state.now()
end

local function settle(R, ctx, rec, delta)
  if R.name == "payments" then after_payment(ctx, rec, delta)
  elseif R.name == "bill_payments" then after_bill_payment(ctx, rec, delta) end
end

-- The record a POST or PUT carries: under the single name (or a wrapper the official SDKs also send),
-- with the field names FreshBooks also takes (tasks: visState) read as the ones it answers.
local function request_record(R, body)
  local src = body[R.single]
  for _, w in ipairs(R.wrapper_aliases or {}) do
    if type(src) ~= "table" then src = body[w] end
  end
  if type(src) ~= "table" then return {} end
  for from, to in pairs(R.request_aliases or {}) do
    if src[from] ~= nil and src[to] == nil then src[to] = src[from] end
    src[from] = nil
  end
  return src
end

local function create(R, req, aid)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":write")
  if not ctx then return s, b, h end
  local body = http.json_body(req)
  if not body then return fail(R, 400, 1004, NULL, "The request body must be JSON.", NULL) end
  local src = request_record(R, body)
  local rec = new_record(R, ctx.account)
  local ok, st, eb = apply_fields(R, ctx, rec, src)
  if not ok then return st, eb end
  local missing = required_missing(R, rec, src)
  if missing then return fail(R, 422, 1001, missing, "Field " .. missing .. " is required.", NULL) end
  if R.name == "journal_entries" then
    ok, st, eb = journal_details(R, ctx, rec)
    if not ok then return st, eb end
  end
  if R.name == "payments" or R.name == "expenses" or R.name == "other_incomes" or R.name == "bill_payments" then
    if rec.amount == nil then rec.amount = 0 end
  end
  if R.name == "payments" then
    local inv = ctx.account.cols.invoices.by_id[rec.invoiceid]
    rec.clientid = rec.clientid or (inv and inv.customerid)
    rec.currency_code = inv and inv.currency_code
  elseif R.name == "clients" then
    rec.currency_code = rec.currency_code or ctx.account.currency_code
    rec.username = rec.username or (type(rec.email) == "string" and rec.email:match("^[^@]+")) or nil
  elseif R.name == "invoices" or R.name == "estimates" or R.name == "invoice_profiles" then
    local c = ctx.account.cols.clients.by_id[rec.customerid]
    rec.currency_code = rec.currency_code or (c and c.currency_code)
    if R.name == "estimates" and rec.estimate_number == nil then
      rec.estimate_number = string.format("%07d", ctx.account.cols.estimates.next_id)
    end
  elseif R.name == "credit_notes" then
    local c = ctx.account.cols.clients.by_id[rec.clientid]
    rec.currency_code = rec.currency_code or (c and c.currency_code)
    rec.credit_number = rec.credit_number or string.format("CN%05d", ctx.account.cols.credit_notes.next_id)
  elseif R.name == "bills" then
    rec.outstanding, rec.paid = rec.amount or 0, 0
    rec.due_date = rec.due_date or util.date(util.parse_date(rec.issue_date) + (rec.due_offset_days or 0))
  end
  insert(ctx.account.cols[R.name], rec)
  if R.name == "journal_entries" then
    for _, d in ipairs(rec.details) do d.entryid = rec.id end
  end
  settle(R, ctx, rec, rec.amount or 0)
  emit(aid, R.object .. ".create", rec.id, ctx.user)
  return 200, { response = { result = { [R.answer or R.single] = render(R, rec, ctx.account, includes(R, req)) } } }
end

-- A change at time t: the stamps that say when a record last changed (`updated` or `updated_at`).
local function touch(rec, t)
  rec.updated_t, rec.updated_at_t = t, t
end
resources.touch = touch

-- Sending invoices and estimates -------------------------------------------------------------------
local EMAIL = "^[^%s@]+@[^%s@]+%.[^%s@.]+$"

local function set_but_not(v, kind)
  return v ~= nil and v ~= NULL and type(v) ~= kind
end

-- A rejected value as the error's `value`: scalars only.
local function scalar(v)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return v end
  return NULL
end

-- The action fields of a PUT, checked before anything changes. Returns the action
-- ({email = {...}} or {mark_as_sent = true}), false when there is none, or nil, status, body.
local function send_action(R, src)
  if not R.sends then return false end
  for _, f in ipairs { "action_email", "action_mark_as_sent", "email_include_pdf", "action_accept" } do
    if (f ~= "action_accept" or R.name == "estimates") and set_but_not(src[f], "boolean") then
      return nil, fail(R, 422, 1004, f, "Invalid value for " .. f .. ".", scalar(src[f]))
    end
  end
  -- Estimates take {"action_accept": true} (docs:estimates: status 5, ui_status accepted).
  if src.action_email ~= true and R.name == "estimates" and src.action_accept == true then return { accept = true } end
  if src.action_email ~= true then return src.action_mark_as_sent == true and { mark_as_sent = true } end
  local to = src.email_recipients
  if type(to) ~= "table" or to[1] == nil then
    return nil, fail(R, 422, 1001, "email_recipients", "Field email_recipients is required.", NULL)
  end
  local recipients = json.array()
  for _, a in ipairs(to) do
    if type(a) ~= "string" or not a:match(EMAIL) then
      return nil, fail(R, 422, 1004, "email_recipients", "Invalid e-mail address.", scalar(a))
    end
    recipients[#recipients + 1] = a
  end
  local custom_field = R.single .. "_customized_email"
  local custom = src[custom_field]
  if custom == NULL or custom == nil then custom = {} end
  if type(custom) ~= "table" or set_but_not(custom.subject, "string") or set_but_not(custom.body, "string") then
    return nil, fail(R, 422, 1004, custom_field, "Invalid value for " .. custom_field .. ".", NULL)
  end
  return { email = { recipients = recipients, subject = custom.subject ~= NULL and custom.subject or nil,
                     body = custom.body ~= NULL and custom.body or nil, include_pdf = src.email_include_pdf == true } }
end

-- Sending moves a draft to sent (FreshBooks leaves viewed, paid and partial invoices as they are) and
-- an e-mail lands in the admin-visible outbox.
local function send(R, ctx, rec, action)
  if action.accept then
    rec.status, rec.ui_status, rec.display_status, rec.accepted = 5, "accepted", "accepted", true
    return
  end
  if rec.status == 1 or rec.status == nil then
    rec.status = 2
    if R.name == "estimates" then rec.ui_status = "sent" end
  end
  local mail = action.email
  if not mail then return end
  local number = rec[R.object .. "_number"] or tostring(rec.id)
  state.outbox[#state.outbox + 1] = { seq = #state.outbox + 1, account_id = ctx.account.account_id,
    object = R.object, [R.object .. "_id"] = rec.id, recipients = mail.recipients,
    subject = mail.subject or ("%s sent you an %s (%s)"):format(ctx.account.business.name, R.object, number),
    body = mail.body or "", include_pdf = mail.include_pdf, sent_at = state.now() }
end

-- GET .../invoices/invoices/{id}/share_link?share_method=share_link: one stable link per invoice.
local function share_link(R, req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":read")
  if not ctx then return s, b, h end
  local rec, st, body = find(R, ctx, id)
  if not rec then return st, body end
  local method = req.args.share_method
  if method ~= "share_link" then
    return fail(R, 400, 1004, "share_method", "Invalid share_method.", scalar(method))
  end
  if not rec.share_token then rec.share_token = util.random_hex(16) end
  local host = req.headers.host
  if type(host) ~= "string" or host == "" then host = "localhost" end
  return 200, { response = { result = { share_link = { clientid = rec.customerid, resource_type = "invoice",
    resourceid = rec.id, share_method = "share_link",
    share_link = "https://" .. host .. "/#/link/" .. rec.share_token .. "?type=secondary&share_method=share_link" }
  } } }
end

-- GET .../invoices/invoices/{id}/pdf (postman:Invoices/Get Invoice PDF): the invoice as a one-page PDF.
local function pdf(R, req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":read")
  if not ctx then return s, b, h end
  local rec, st, body = find(R, ctx, id)
  if not rec then return st, body end
  local function esc(x) return (tostring(x):gsub("[()\\]", "\\%0"):gsub("[^\32-\126]", "?")) end
  local lines = { ctx.account.business.name, "Invoice " .. rec.invoice_number, "Date " .. rec.create_date,
    "Amount " .. util.money(rec.amount, rec.currency_code).amount .. " " .. rec.currency_code }
  local text = { "BT /F1 14 Tf 72 720 Td" }
  for i, l in ipairs(lines) do text[#text + 1] = (i > 1 and "0 -20 Td " or "") .. "(" .. esc(l) .. ") Tj" end
  text[#text + 1] = "ET"
  local stream = table.concat(text, "\n")
  local objects = { "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
    "<< /Length " .. #stream .. " >>\nstream\n" .. stream .. "\nendstream",
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>" }
  local out, offsets = { "%PDF-1.4\n" }, {}
  local size = #out[1]
  for i, o in ipairs(objects) do
    offsets[i] = size
    out[#out + 1] = i .. " 0 obj\n" .. o .. "\nendobj\n"
    size = size + #out[#out]
  end
  local xref = { "xref\n0 " .. (#objects + 1) .. "\n0000000000 65535 f \n" }
  for i = 1, #objects do xref[#xref + 1] = ("%010d 00000 n \n"):format(offsets[i]) end
  out[#out + 1] = table.concat(xref) .. "trailer\n<< /Size " .. (#objects + 1) .. " /Root 1 0 R >>\nstartxref\n"
    .. size .. "\n%%EOF\n"
  return 200, table.concat(out), { ["Content-Type"] = "application/pdf",
    ["Content-Disposition"] = 'inline; filename="invoice-' .. rec.invoice_number .. '.pdf"' }
end

local function update(R, req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":write")
  if not ctx then return s, b, h end
  local rec, st, eb = find(R, ctx, id)
  if not rec then return st, eb end
  local body = http.json_body(req)
  if not body then return fail(R, 400, 1004, NULL, "The request body must be JSON.", NULL) end
  local src = request_record(R, body)
  local event, action = ".update", false
  if src.vis_state ~= nil then
    -- A PUT that carries vis_state changes only vis_state: every other field is ignored.
    local v = src.vis_state
    if v ~= 0 and v ~= 1 and v ~= 2 then return fail(R, 422, 1004, "vis_state", "Invalid vis_state.", v) end
    if v == 1 and rec.vis_state ~= 1 then settle(R, ctx, rec, -(rec.amount or 0)) end
    rec.vis_state = v
    if v == 1 then event = ".delete" end
  else
    local st1, eb1
    action, st1, eb1 = send_action(R, src)
    if action == nil then return st1, eb1 end
    local old_amount = rec.amount
    local ok, st2, eb2 = apply_fields(R, ctx, rec, src)
    if not ok then return st2, eb2 end
    if old_amount and rec.amount ~= old_amount then settle(R, ctx, rec, rec.amount - old_amount) end
    if action then send(R, ctx, rec, action) end
  end
  touch(rec, state.now())
  emit(aid, R.object .. event, rec.id, ctx.user)
  if action and action.email then emit(aid, R.object .. ".sendByEmail", rec.id, ctx.user) end
  return 200, { response = { result = { [R.answer or R.single] = render(R, rec, ctx.account, includes(R, req)) } } }
end

-- HTTP DELETE: a record that has a vis_state becomes deleted (vis_state 1, still readable, as the PUT
-- does); the others (taxes, gateways) are gone. FreshBooks answers 200 {"response": {}} (the Python SDK's and
-- zerospam's recorded tax deletes), other income 200 {} (node's).
local function delete(R, req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":write")
  if not ctx then return s, b, h end
  local rec, st, eb = find(R, ctx, id)
  if not rec then return st, eb end
  if R.T.defaults.vis_state ~= nil then
    if rec.vis_state ~= 1 then settle(R, ctx, rec, -(rec.amount or 0)) end
    rec.vis_state = 1
    touch(rec, state.now())
  else
    rec.removed = true
    ctx.account.cols[R.name].by_id[rec.id] = nil
  end
  emit(aid, R.object .. ".delete", rec.id, ctx.user)
  if R.name == "other_incomes" then return 200, {} end
  return 200, { response = {} }
end

-- GET .../systems/systems/{id}: the account's one system, whose id is the business's (the identity's
-- roles[].systemid). Get only, scope user:business:read.
local SYSTEM = { object = "system", errors = "legacy" }
local function system(req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, "user:business:read")
  if not ctx then return s, b, h end
  local biz = ctx.business
  if tonumber(id) ~= biz.id then return fail(SYSTEM, 404, 1012, "systemid", "System not found.", id) end
  -- the fields postman's system answer carries (docs:systems describes them)
  local cc = biz.currency_code
  return 200, { response = { result = { system = { id = biz.id, systemid = biz.id, accountid = biz.account_id,
    business_uuid = biz.business_uuid, name = biz.name, currency_code = cc, active = true, auto_bill = 5,
    modern_system = true, billing_status = "uptodate", bus_phone = "", business_type = NULL, country = "Canada",
    province = "Ontario", city = "Toronto", street = "1 Sandbox Way", street2 = NULL, code = "M5V 1A1",
    email = ctx.user.email, info_email = ctx.user.email, fax = "", mob_phone = "", date = "2024-01-15 09:29:00",
    discountid = NULL, duration = 12, gst_amount = util.money(0, cc), payment_amount = util.money(0, cc),
    payment_frequency = 1, heard_about_us_via = NULL, ip = "127.0.0.1", landing_url = NULL,
    masterlock_billing = true, migrated_to_smux_at = NULL, num_clients = NULL, num_staff = NULL,
    referralid = "multibiz", referring_url = NULL, salutation = NULL, size_limit = NULL, split_token = NULL,
    timezone = "US/Eastern", timezoneid = 14, dst = true, test_system = true, vat_name = NULL,
    vat_number = NULL } } } }
end


-- Project family ----------------------------------------------------------------------------------
local function project_ctx(req, bid, scope)
  local ctx, status, body, headers = member_ctx(req, "project", scope, state.business_by_id(bid), "business")
  if ctx then ctx.data = state.data.businesses[ctx.business.id] end
  return ctx, status, body, headers
end

-- Time entries stamp in ISO 8601 UTC with a Z (node, python and java SDKs' recorded entries); projects
-- without the Z (postman, the Python and Java SDKs' recorded projects; node's edited bodies add it).
local function iso(t) return t and (util.iso(t) .. "Z") or NULL end
local function iso_bare(t) return t and util.iso(t) or NULL end

local function service_json(rec)
  local billable, vis = rec.billable, rec.vis_state
  if billable == nil then billable = true end
  return { id = rec.id, business_id = rec.business_id, name = rec.name, billable = billable, vis_state = vis or 0 }
end

-- What a new record of each kind holds until a request says otherwise, and the type each field keeps.
local PROJECT = { active = true, billed_amount = "0.00", billed_status = "unbilled", billing_method = NULL,
  budget = NULL, client_id = NULL, complete = false, description = NULL, due_date = NULL, expense_markup = 0,
  fixed_price = NULL, internal = false, project_manager_id = NULL, project_type = "fixed_price", rate = NULL,
  retainer_id = NULL, sample = false, title = "" }
local ENTRY = { active = false, billable = true, billed = false, client_id = NULL, duration = 0, internal = false,
  is_logged = true, note = NULL, pending_client = NULL, pending_project = NULL, pending_task = NULL,
  project_id = NULL, retainer_id = NULL, service_id = NULL, task_id = NULL, timer = NULL }
local SERVICE = { billable = true, name = "", vis_state = 0 }
local TYPES = {
  active = "bool", complete = "bool", internal = "bool", sample = "bool", billable = "bool", billed = "bool",
  is_logged = "bool", client_id = "int", project_id = "int", service_id = "int", task_id = "int",
  retainer_id = "int", project_manager_id = "int", duration = "int", expense_markup = "int", vis_state = "int",
  identity_id = "int", budget = "string", rate = "string", fixed_price = "string", title = "string",
  description = "string", note = "string", name = "string", billing_method = "string", project_type = "string",
  due_date = "string",
}
local DEFAULTS = { projects = PROJECT, time_entries = ENTRY, services = SERVICE }

-- What the caller may do with one project: GET of one project answers them beside the project, as
-- name/value pairs (the Python and Java SDKs' recorded answers; not in lists, creates or updates).
local ABILITIES = { "can_edit", "can_archive", "-can_generate_invoice", "can_delete", "can_invite_team_member",
  "can_manage_services", "can_view_team_time", "can_edit_hourly_budget", "can_edit_client",
  "can_edit_project_manager", "can_view_invoices_tab", "can_view_fixed_price", "can_edit_fixed_price",
  "can_edit_end_date", "can_edit_flat_rate", "can_edit_project_type", "can_edit_title", "can_view_review_tab",
  "can_view_discuss_tab", "can_track_time", "can_create_comment" }
local function abilities()
  local out = json.array()
  for i, a in ipairs(ABILITIES) do
    local off = a:sub(1, 1) == "-"
    out[i] = { name = off and a:sub(2) or a, value = not off }
  end
  return out
end

-- A project as a list answers it (group_id) or as one project is answered (its group, unless
-- skip_group=true), the Python and Java SDKs' recorded lists and single projects.
local function project_json(rec, ctx, args, single)
  local p = {}
  for k, d in pairs(PROJECT) do
    local v = rec[k]
    if v == nil then v = d end
    p[k] = v
  end
  p.id, p.business_id = rec.id, nil
  p.created_at, p.updated_at = iso_bare(rec.created_t), iso_bare(rec.updated_t)
  local services = json.array()
  for _, sid in ipairs(rec.service_ids or {}) do
    local svc = ctx.data.services.by_id[sid]
    if svc and not svc.removed then services[#services + 1] = service_json(svc) end
  end
  p.services = services
  p.logged_duration = args and args.include_logged_duration == "true" and (rec.logged or 0) or NULL
  if not single then
    p.group_id = rec.group_id
  elseif not (args and args.skip_group == "true") then
    p.group = { id = rec.group_id, pending_invitations = json.array(), members = json.array { {
      id = rec.group_id * 10 + 1, identity_id = 1001, first_name = "Alice", last_name = "Sandbox",
      email = "alice@example.com", company = ctx.business.name, role = "owner", active = true } } }
  end
  return p
end

local function entry_json(rec)
  local e = { id = rec.id, identity_id = rec.identity_id }
  for k, d in pairs(ENTRY) do
    local v = rec[k]
    if v == nil then v = d end
    e[k] = v
  end
  e.started_at, e.created_at = iso(rec.started_at_t), iso(rec.created_t)
  -- where and when the entry started in the business's own zone (the Java SDK's recorded entries)
  e.local_started_at = rec.started_at_t and (util.eastern(rec.started_at_t):gsub(" ", "T")) or NULL
  e.local_timezone = "America/New_York"
  return e
end

local function project_fail(status, message, field)
  if field then return status, { errno = 2001, error = { [field] = message } } end
  return status, { error = message }
end

-- The sort fields FreshBooks documents per kind: sort=f ascending, sort=-f descending.
local SORTS = { projects = { created_at = "created_t", due_date = "due_date", title = "title", id = "id" },
                time_entries = { started_at = "started_at_t", created_at = "created_t", id = "id" },
                services = { name = "name", id = "id" } }
local CONTROL = { page = true, per_page = true, sort = true, include_logged_duration = true, skip_group = true,
                  include_deleted = true, include_unlogged = true, team = true }

-- Plain key=value filters; booleans as true/false; updated_since (at or after), started_from (at or
-- after), started_to (at or before) are true date-times (ISO 8601, UTC; a `Z` or not).
local function project_filter(kind, records_, args)
  local out = {}
  local function since(v) return util.parse_time(v) end
  for _, rec in ipairs(records_) do
    local ok = not rec.removed and (not rec.deleted or args.include_deleted == "true")
    if kind == "time_entries" and ok and rec.is_logged == false then ok = args.include_unlogged == "true" end
    for k, v in pairs(args) do
      if not ok then break end
      if type(v) == "table" then v = v[1] end
      if k == "updated_since" then
        local t = since(v)
        ok = t ~= nil and (rec.updated_t or rec.created_t or 0) >= t
      elseif kind == "time_entries" and (k == "started_from" or k == "started_to") then
        local t = since(v)
        local at = rec.started_at_t
        ok = t ~= nil and ((k == "started_from" and at >= t) or (k == "started_to" and at <= t))
      elseif not CONTROL[k] and k:sub(1, 7) ~= "include" and DEFAULTS[kind][k] ~= nil or k == "identity_id" then
        local x = rec[k]
        if x == nil then x = DEFAULTS[kind][k] end
        ok = tostring(x) == tostring(v)
      end
    end
    if ok then out[#out + 1] = rec end
  end
  local sort = type(args.sort) == "string" and args.sort
  if sort then
    local desc = sort:sub(1, 1) == "-"
    local key = SORTS[kind][desc and sort:sub(2) or sort]
    if key then sort_list(out, function(rec) return rec[key] end, desc) end
  end
  return out
end

-- A time-entry list's meta adds what the matched entries logged: in all, unbilled, per team member (per
-- client and project, per day) and per client (per team member), as the Java SDK's recorded list shows.
local function logged_totals(entries, meta)
  local function bucket(into, index, key, id)
    local k = id == NULL and "null" or tostring(id)
    local b = index[k]
    if not b then
      b = { [key] = id, total_logged = 0 }
      index[k] = b
      into[#into + 1] = b
    end
    return b
  end
  local logged, unbilled = 0, 0
  local members, member_ix, clients, client_ix = json.array(), {}, json.array(), {}
  for _, rec in ipairs(entries) do
    local d = rec.duration or 0
    logged = logged + d
    if rec.billable ~= false and not rec.billed then unbilled = unbilled + d end
    local cid = rec.client_id == nil and NULL or rec.client_id
    local pid = rec.project_id == nil and NULL or rec.project_id
    local m = bucket(members, member_ix, "identity_id", rec.identity_id)
    m.total_logged = m.total_logged + d
    m.per_client, m.client_ix = m.per_client or json.array(), m.client_ix or {}
    m.per_day, m.day_ix = m.per_day or json.array(), m.day_ix or {}
    local mc = bucket(m.per_client, m.client_ix, "client_id", cid)
    mc.total_logged = mc.total_logged + d
    mc.per_project, mc.project_ix = mc.per_project or json.array(), mc.project_ix or {}
    local mp = bucket(mc.per_project, mc.project_ix, "project_id", pid)
    mp.total_logged = mp.total_logged + d
    local day = rec.started_at_t and util.eastern(rec.started_at_t):sub(1, 10) or NULL
    local md = bucket(m.per_day, m.day_ix, "date", day)
    md.total_logged = md.total_logged + d
    md.per_client, md.client_ix = md.per_client or json.array(), md.client_ix or {}
    local mdc = bucket(md.per_client, md.client_ix, "client_id", cid)
    mdc.total_logged = mdc.total_logged + d
    local c = bucket(clients, client_ix, "client_id", cid)
    c.total_logged = c.total_logged + d
    c.per_member, c.member_ix = c.per_member or json.array(), c.member_ix or {}
    local cm = bucket(c.per_member, c.member_ix, "identity_id", rec.identity_id)
    cm.total_logged = cm.total_logged + d
  end
  -- the working indexes out, FreshBooks' names in
  for _, m in ipairs(members) do
    for _, mc in ipairs(m.per_client) do
      mc.total_logged_per_project, mc.per_project, mc.project_ix = mc.per_project, nil, nil
    end
    for _, md in ipairs(m.per_day) do
      md.total_logged_per_client, md.per_client, md.client_ix = md.per_client, nil, nil
    end
    m.total_logged_per_client, m.total_logged_per_day = m.per_client, m.per_day
    m.per_client, m.client_ix, m.per_day, m.day_ix = nil, nil, nil, nil
  end
  for _, c in ipairs(clients) do c.total_logged_per_team_member, c.per_member, c.member_ix = c.per_member, nil, nil end
  meta.total_logged, meta.total_unbilled = logged, unbilled
  meta.total_logged_per_team_member, meta.total_logged_per_client = members, clients
end

local function project_list(kind, req, bid)
  local scope = kind == "time_entries" and "user:time_entries:read" or "user:projects:read"
  local ctx, s, b, h = project_ctx(req, bid, scope)
  if not ctx then return s, b, h end
  local p, ps, pb = paging(req.args, function(st, _, field, msg) return project_fail(st, msg, field) end, 30)
  if not p then return ps, pb end
  local matched = project_filter(kind, ctx.data[kind].list, req.args)
  local page, meta = slice(matched, p)
  for i, rec in ipairs(page) do
    page[i] = kind == "projects" and project_json(rec, ctx, req.args) or kind == "time_entries" and entry_json(rec)
      or service_json(rec)
  end
  if kind == "time_entries" then logged_totals(matched, meta) end
  -- a project list's meta says how it is sorted (the Python and Java SDKs' recorded lists); the others' do not
  if kind == "projects" then meta.sort = json.array() end
  return 200, { [kind] = page, meta = meta }
end

local single_of = { projects = "project", time_entries = "time_entry", services = "service" }
local required_of = { projects = { "title" }, time_entries = { "started_at", "duration" }, services = { "name" } }

local function project_item(kind, req, bid, id)
  local write = req.method ~= "GET" and req.method ~= "HEAD"
  local scope = (kind == "time_entries" and "user:time_entries:" or "user:projects:") .. (write and "write" or "read")
  local ctx, s, b, h = project_ctx(req, bid, scope)
  if not ctx then return s, b, h end
  local col = ctx.data[kind]
  local single = single_of[kind]
  local function answer(rec)
    if kind == "projects" then return project_json(rec, ctx, req.args, true) end
    if kind == "time_entries" then return entry_json(rec) end
    return service_json(rec)
  end
  local rec
  if id then
    rec = col.by_id[tonumber(id)]
    if not rec or rec.removed or rec.deleted then
      return project_fail(404, "Requested resource could not be found.")
    end
  end
  if req.method == "GET" or req.method == "HEAD" then
    if kind == "projects" then return 200, { project = answer(rec), abilities = abilities() } end
    return 200, { [single] = answer(rec) }
  end
  if req.method == "DELETE" then
    -- Time entries stay readable through include_deleted; services are deleted by vis_state.
    if kind == "time_entries" then rec.deleted = true
    elseif kind == "services" then rec.vis_state = 1; rec.removed = true
    else rec.removed = true; col.by_id[rec.id] = nil end
    rec.updated_t = state.now()
    return 204, nil
  end
  local body = http.json_body(req)
  if not body then return project_fail(400, "The request body must be JSON.") end
  local src = body[single]
  if type(src) ~= "table" then return project_fail(422, "This field is required.", single) end
  local fresh = not rec
  local work = {}
  for k, v in pairs(src) do
    if k == "started_at" then
      local t = util.parse_time(v)
      if not t then return project_fail(422, "Invalid datetime.", "started_at") end
      work.started_at_t = t
    elseif k == "service_ids" and kind == "projects" and type(v) == "table" then
      work.service_ids = v
    elseif type(k) == "string" and DEFAULTS[kind][k] ~= nil then
      local x = v
      local t = TYPES[k]
      if v ~= NULL and t then
        if t == "int" then x = tonumber(v); if not x or x ~= floor(x) then x = nil end
        elseif t == "bool" then
          if v == true or v == "true" then x = true elseif v == false or v == "false" then x = false else x = nil end
        elseif t == "string" then x = type(v) ~= "table" and tostring(v) or nil end
        if x == nil then return project_fail(422, "Invalid value.", k) end
      end
      work[k] = x
    end
  end
  if fresh then
    -- every missing field at once (the Python SDK's recorded validation error)
    local missing
    for _, f in ipairs(required_of[kind]) do
      if work[f] == nil and not (f == "started_at" and work.started_at_t) then
        missing = missing or {}
        missing[f] = "field required"
      end
    end
    if missing then return 422, { errno = 2001, error = missing } end
    rec = { created_t = state.now(), business_id = ctx.business.id }
    if kind == "time_entries" then rec.identity_id = ctx.user.id end
    if kind == "projects" then rec.logged, rec.group_id, rec.service_ids = 0, 9900 + col.next_id, {} end
  end
  for k, v in pairs(work) do rec[k] = v end
  if fresh then insert(col, rec) end
  rec.updated_t = state.now()
  return 200, { [single] = answer(rec) }
end

-- GET /comments/business/{bid}/service_rates: every rate set, one answer (not paged: page/per_page refused).
local function service_rates(req, bid)
  local ctx, s, b, h = project_ctx(req, bid, "user:projects:read")
  if not ctx then return s, b, h end
  for _, k in ipairs { "page", "per_page" } do
    if req.args[k] ~= nil then return project_fail(400, "This list is not paginated.", k) end
  end
  local out = json.array()
  for _, svc in ipairs(ctx.data.services.list) do
    local rate = not svc.removed and ctx.data.rates[svc.id]
    if rate then out[#out + 1] = { rate = rate, business_id = ctx.business.id, service_id = svc.id } end
  end
  return 200, { service_rates = out }
end

local function service_rate(req, bid, sid)
  local write = req.method ~= "GET"
  local ctx, s, b, h = project_ctx(req, bid, write and "user:projects:write" or "user:projects:read")
  if not ctx then return s, b, h end
  local svc = ctx.data.services.by_id[tonumber(sid)]
  if not svc or svc.removed then return project_fail(404, "Requested resource could not be found.") end
  if write then
    local body = http.json_body(req)
    local r = body and type(body.service_rate) == "table" and body.service_rate.rate
    if type(r) ~= "string" or not util.cents(r) then return project_fail(422, "Invalid rate.", "rate") end
    ctx.data.rates[svc.id] = r
  end
  local rate = ctx.data.rates[svc.id]
  if not rate then return project_fail(404, "Requested resource could not be found.") end
  return 200, { service_rate = { rate = rate, business_id = ctx.business.id, service_id = svc.id } }
end

-- Routes ------------------------------------------------------------------------------------------
local routes = {}
local ACC = "/accounting/account/([^/]+)/"
for _, R in ipairs(data.accounting) do
  local base = ACC .. R.path
  local name = "/accounting/account/{account_id}/" .. R.path
  local v = R.verbs
  local function add(method, path, rname, fn) routes[#routes + 1] = { method = method, path = path, name = rname,
    handler = function(req, ...) return fn(R, req, ...) end } end
  if v:find("l") then add("GET", base, name, list) end
  if v:find("c") then add("POST", base, name, create) end
  if v:find("g") then add("GET", base .. "/(%d+)", name .. "/{id}", get) end
  if v:find("u") then add("PUT", base .. "/(%d+)", name .. "/{id}", update) end
  if v:find("d") then add("DELETE", base .. "/(%d+)", name .. "/{id}", delete) end
  if not v:find("g") then add("GET", base .. "/(%d+)", name .. "/{id}", function(RR, req, aid, id)
    local ctx, s, b, h = account_ctx(req, aid, "user:" .. RR.scope .. ":read")
    if not ctx then return s, b, h end
    return fail(RR, 404, 1012, "id", "Not found.", id) end) end
end
routes[#routes + 1] = { method = "GET", path = ACC .. "systems/systems/(%d+)",
  name = "/accounting/account/{account_id}/systems/systems/{id}", handler = system }
do
  local R = data.by_name.invoices
  routes[#routes + 1] = { method = "GET", path = ACC .. R.path .. "/(%d+)/share_link",
    name = "/accounting/account/{account_id}/" .. R.path .. "/{id}/share_link",
    handler = function(req, aid, id) return share_link(R, req, aid, id) end }
  routes[#routes + 1] = { method = "GET", path = ACC .. R.path .. "/(%d+)/pdf",
    name = "/accounting/account/{account_id}/" .. R.path .. "/{id}/pdf",
    handler = function(req, aid, id) return pdf(R, req, aid, id) end }
end

local function padd(method, path, name, fn)
  routes[#routes + 1] = { method = method, path = path, name = name, handler = fn }
end
local PB = "/projects/business/(%d+)/"
padd("GET", PB .. "projects", "/projects/business/{business_id}/projects",
  function(req, bid) return project_list("projects", req, bid) end)
padd("POST", PB .. "project", "/projects/business/{business_id}/project",
  function(req, bid) return project_item("projects", req, bid) end)
padd("POST", PB .. "projects", "/projects/business/{business_id}/projects",
  function(req, bid) return project_item("projects", req, bid) end)
for _, m in ipairs { "GET", "PUT", "DELETE" } do
  padd(m, PB .. "project/(%d+)", "/projects/business/{business_id}/project/{id}",
    function(req, bid, id) return project_item("projects", req, bid, id) end)
  -- the plural item path the PHP SDK uses (and postman's create) reaches the same project
  padd(m, PB .. "projects/(%d+)", "/projects/business/{business_id}/projects/{id}",
    function(req, bid, id) return project_item("projects", req, bid, id) end)
end
local TB = "/timetracking/business/(%d+)/time_entries"
padd("GET", TB, "/timetracking/business/{business_id}/time_entries",
  function(req, bid) return project_list("time_entries", req, bid) end)
padd("POST", TB, "/timetracking/business/{business_id}/time_entries",
  function(req, bid) return project_item("time_entries", req, bid) end)
for _, m in ipairs { "GET", "PUT", "DELETE" } do
  padd(m, TB .. "/(%d+)", "/timetracking/business/{business_id}/time_entries/{id}",
    function(req, bid, id) return project_item("time_entries", req, bid, id) end)
end
local CB = "/comments/business/(%d+)/"
padd("GET", CB .. "services", "/comments/business/{business_id}/services",
  function(req, bid) return project_list("services", req, bid) end)
padd("POST", CB .. "service", "/comments/business/{business_id}/service",
  function(req, bid) return project_item("services", req, bid) end)
for _, m in ipairs { "GET", "PUT", "DELETE" } do
  padd(m, CB .. "service/(%d+)", "/comments/business/{business_id}/service/{id}",
    function(req, bid, id) return project_item("services", req, bid, id) end)
end
for _, m in ipairs { "GET", "POST", "PUT" } do
  padd(m, CB .. "service/(%d+)/rate", "/comments/business/{business_id}/service/{id}/rate", service_rate)
end
padd("GET", CB .. "service_rates", "/comments/business/{business_id}/service_rates", service_rates)

resources.routes = routes
resources.fail = fail
resources.render = render
resources.account_ctx = account_ctx
resources.member_ctx = member_ctx -- the other families' modules (ledger.lua, payments.lua) check members here
return resources
