-- The accounting and project families, table-driven: one handler each for list/get/create/update/delete
-- over the catalogue in sandbox.data. Reports, the system and the service-rates list live here too.
local json = require "sandbox.json"
local state = require "sandbox.state"
local http = require "sandbox.http"
local util = require "sandbox.util"
local auth = require "sandbox.auth"
local data = require "sandbox.data"

local resources = {}
local NULL = json.null
local floor, ceil, tostring, tonumber = math.floor, math.ceil, tostring, tonumber

local function emit(account_id, event, object_id, user)
  local ok, webhooks = pcall(require, "sandbox.webhooks")
  if ok and webhooks.emit then webhooks.emit(account_id, event, object_id, user) end
end

-- Output fields computed for invoices beyond the stored ones.
local invoice_extra = { "invoiceid", "accountid", "invoice_number", "due_date", "outstanding", "paid", "amount",
  "v3_status", "payment_status", "display_status", "organization", "fname", "lname", "created_at",
  "discount_total", "ownerid", "currency_code", "updated" }

local function output_fields(R)
  if R.out then return R.out end
  local out, seen = {}, {}
  local function push(f) if not seen[f] then seen[f] = true; out[#out + 1] = f end end
  for _, f in ipairs(R.fields) do if f ~= "lines" then push(f) end end
  if R.name == "invoices" then for _, f in ipairs(invoice_extra) do push(f) end end
  for _, f in ipairs(R.shown or {}) do push(f) end
  for f in pairs(R.money or {}) do push(f) end
  R.out = out
  local filterable = { id = true, updated = true, vis_state = true }
  for _, f in ipairs(out) do filterable[f] = true end
  if R.id_alias then filterable[R.id_alias] = true end
  R.filterable = filterable
  return out
end

local function currency_of(rec, acct)
  local c = rec.currency_code
  if type(c) == "string" and c ~= "" then return c end
  return acct.currency_code
end

local function render(R, rec, acct, include_lines)
  local out = { id = rec.id }
  if R.id_alias then out[R.id_alias] = rec.id end
  local cur = currency_of(rec, acct)
  local money = R.money or {}
  for _, f in ipairs(output_fields(R)) do
    local v = rec[f]
    if money[f] and type(v) == "number" then v = util.money(v, cur) end
    if v == nil then v = NULL end
    out[f] = v
  end
  if rec.updated_t and R.name ~= "invoices" then out.updated = util.eastern(rec.updated_t) end
  out.accounting_systemid = acct.account_id
  if R.lines and include_lines then out.lines = json.array(rec.lines or {}) end
  return out
end

-- Errors in the resource's own shape. Returns status, body.
local rpc_code = { [400] = 3, [422] = 3, [404] = 5, [403] = 7, [409] = 6 }
local function fail(R, status, errno, field, message, value)
  local detail = { errno = errno, field = field or NULL, message = message, object = R and R.object or NULL,
                   value = value ~= nil and tostring(value) or NULL }
  if R and R.errors == "rpc" then
    return status, { code = rpc_code[status] or 2, message = message, details = json.array { {
      ["@type"] = "type.googleapis.com/google.rpc.ErrorInfo", reason = tostring(errno),
      domain = "accounting.api.freshbooks.com",
      metadata = { field = detail.field, message = message, object = detail.object, value = detail.value } } } }
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
local function paging(args, fail_fn)
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
  per_page = per_page or 15
  if per_page > 100 then per_page = 100 end
  if per_page < 1 then per_page = 15 end
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
  local key = lines and "lines" or "plain"
  if not c[key] then c[key] = json.raw(json.encode(render(R, rec, acct, lines))) end
  return c[key]
end

local function slice(list, p)
  local total = #list
  local out = json.array()
  local first = (p.page - 1) * p.per_page + 1
  for i = first, math.min(total, first + p.per_page - 1) do out[#out + 1] = list[i] end
  return out, { page = p.page, per_page = p.per_page, total = total, pages = ceil(total / p.per_page) }
end

local function resolve_field(R, key)
  output_fields(R)
  if R.aliases and R.aliases[key] then return R.aliases[key] end
  if key == "ids" or key == R.id_alias then return "id" end
  if R.filterable[key] then return key end
  if key:sub(-1) == "s" and R.filterable[key:sub(1, -2)] then return key:sub(1, -2) end
  if R.id_alias and key == R.id_alias .. "s" then return "id" end
end

local function value_of(_, rec, field)
  local v = rec[field]
  if field == "updated" and v == nil and rec.updated_t then return util.eastern(rec.updated_t) end
  return v
end

local function compare_value(R, field, v)
  if R.money and R.money[field] then return util.cents(v) end
  return v
end

-- search[...] -> predicates; unknown keys are ignored, as FreshBooks does.
local function accounting_filters(R, args)
  local preds, vis_given = {}, false
  for k, v in pairs(args) do
    local key, brackets = k:match("^search%[([^%]]+)%](.*)$")
    if key then
      local is_list = brackets == "[]" or type(v) == "table"
      local values = type(v) == "table" and v or { v }
      local like = key:match("^(.-)_like$")
      local lo = key:match("^(.-)_min$")
      local hi = key:match("^(.-)_max$")
      if is_list then
        local field = resolve_field(R, key)
        if field then
          local set = {}
          for _, x in ipairs(values) do set[tostring(x)] = true end
          if field == "vis_state" then vis_given = true end
          preds[#preds + 1] = function(rec) return set[tostring(value_of(R, rec, field))] == true end
        end
      elseif like then
        local field = resolve_field(R, like)
        if field then
          local needle = tostring(values[1]):lower()
          preds[#preds + 1] = function(rec)
            local x = value_of(R, rec, field)
            return x ~= nil and tostring(x):lower():find(needle, 1, true) ~= nil
          end
        end
      elseif lo or hi then
        local field = resolve_field(R, lo or hi)
        if field then
          local bound = compare_value(R, field, tostring(values[1]))
          local numeric = type(bound) == "number" or tonumber(bound) ~= nil
          if numeric then bound = tonumber(bound) end
          preds[#preds + 1] = function(rec)
            local x = value_of(R, rec, field)
            if x == nil then return false end
            if numeric then x = tonumber(x)
            elseif type(x) == "string" then x = x:sub(1, #bound)
            else x = tostring(x) end
            if x == nil then return false end
            if lo then return x >= bound end
            return x <= bound
          end
        end
      else
        local field = resolve_field(R, key)
        if field then
          if field == "vis_state" then vis_given = true end
          local want = compare_value(R, field, tostring(values[1]))
          preds[#preds + 1] = function(rec) return tostring(value_of(R, rec, field)) == tostring(want) end
        end
      end
    end
  end
  if not vis_given then
    preds[#preds + 1] = function(rec) return rec.vis_state ~= 1 end -- deleted records stay out of lists
  end
  return preds
end

local function sort_list(list, key_fn, desc)
  table.sort(list, function(a, b)
    local x, y = key_fn(a), key_fn(b)
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

local function list_page(R, req, ctx, matched, p)
  local page, meta = slice(matched, p)
  local lines = R.lines and has_include(req.args, "lines")
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
  local sort = type(req.args.sort) == "string" and req.args.sort
  if sort then
    local field, dir = sort:match("^(.-)_(asc)$")
    if not field then field, dir = sort:match("^(.-)_(desc)$") end
    field = field and resolve_field(R, field)
    if field then
      local money = R.money and R.money[field]
      sort_list(matched, function(rec)
        local v = value_of(R, rec, field)
        if money then return v end
        return tonumber(v) or v
      end, dir == "desc")
    end
  end
  col.walks = col.walks or {}
  col.walks[walk] = { writes = state.writes, matched = matched }
  return list_page(R, req, ctx, matched, p)
end

local function find(R, ctx, id)
  local rec = ctx.account.cols[R.name].by_id[tonumber(id)]
  if not rec or rec.removed then
    return nil, fail(R, 404, 1012, R.id_alias or "id", (R.object:gsub("^%l", string.upper):gsub("_", " "))
      .. " not found.", id)
  end
  return rec
end

local function get(R, req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":read")
  if not ctx then return s, b, h end
  local rec, st, body = find(R, ctx, id)
  if not rec then return st, body end
  return 200, { response = { result = { [R.single] = render(R, rec, ctx.account, has_include(req.args, "lines")
    or R.lines) } } }
end

-- Lines in, lines + total out. Returns lines, total cents or nil, status, body.
local function build_lines(R, lines, cur)
  if type(lines) ~= "table" then return nil, fail(R, 422, 1004, "lines", "Lines must be a list.", "") end
  local out, total = json.array(), 0
  for i, l in ipairs(lines) do
    if type(l) ~= "table" then return nil, fail(R, 422, 1004, "lines", "Invalid line.", i) end
    local qty = tonumber(l.qty or 1)
    local unit = util.cents(l.unit_cost)
    if R.errors == "rpc" and type(l.unit_cost) == "table" and type(l.unit_cost.amount) ~= "string" then
      unit = nil
    end
    if not qty or not unit then
      return nil, fail(R, 422, 1004, "unit_cost", "Invalid value for unit_cost.", i)
    end
    local amount = floor(qty * unit + 0.5)
    total = total + amount
    out[i] = { lineid = i, name = tostring(l.name or ""), description = tostring(l.description or ""),
               qty = tostring(l.qty or 1), unit_cost = util.money(unit, cur), amount = util.money(amount, cur),
               type = 0, taxName1 = l.taxName1 or "", taxAmount1 = tostring(l.taxAmount1 or "0"),
               taxName2 = l.taxName2 or "", taxAmount2 = tostring(l.taxAmount2 or "0") }
  end
  return out, total
end

-- Copy the writable fields of `src` into `rec`, validating money and references.
local function apply_fields(R, ctx, rec, src)
  local money = R.money or {}
  local cur = type(src.currency_code) == "string" and src.currency_code or currency_of(rec, ctx.account)
  for _, f in ipairs(R.fields) do
    local v = src[f]
    if v ~= nil and v ~= NULL then
      if f == "lines" and R.lines then
        local lines, total, err_body = build_lines(R, v, cur)
        if not lines then return nil, total, err_body end
        rec.lines = lines
        rec.amount = total
        if money.outstanding then rec.outstanding = total - (tonumber(rec.paid) or 0) end
      elseif money[f] then
        local amount = type(v) == "table" and v.amount or v
        if R.errors == "rpc" and type(amount) ~= "string" then
          return nil, fail(R, 422, 1004, f, "Money amounts must be strings.", tostring(amount))
        end
        local cents = util.cents(v)
        if not cents then return nil, fail(R, 422, 1004, f, "Invalid value for " .. f .. ".", tostring(amount)) end
        rec[f] = cents
      elseif f == "vis_state" then
        if v ~= 0 and v ~= 1 and v ~= 2 then return nil, fail(R, 422, 1004, f, "Invalid vis_state.", v) end
        rec[f] = v
      elseif f == "create_date" or f == "date" or f == "issue_date" or f == "paid_date" then
        if not util.parse_date(v) then return nil, fail(R, 422, 1004, f, "Invalid date.", v) end
        rec[f] = tostring(v):sub(1, 10)
      else
        local ref = R.refs and R.refs[f]
        if ref and not ctx.account.cols[ref].by_id[tonumber(v)] then
          local target = data.by_name[ref]
          return nil, fail(R, 422, 1012, f, (target.object:gsub("^%l", string.upper):gsub("_", " "))
            .. " not found.", v)
        end
        rec[f] = v
      end
    end
  end
  return true
end

local function required_missing(R, rec)
  for _, f in ipairs(R.required or {}) do
    local v = rec[f]
    if v == nil or v == "" or v == NULL then return f end
  end
  if R.required_any then
    for _, f in ipairs(R.required_any) do if rec[f] ~= nil and rec[f] ~= "" then return nil end end
    return R.required_any[#R.required_any]
  end
end

local function new_record(R, acct)
  local col = acct.cols[R.name]
  if R.name == "invoices" then
    return setmetatable({ col.next_id, 0, data.TODAY, 30, 0, 0, 1, 0, state.now() }, col.mt)
  end
  if R.name == "estimates" then return { vis_state = 0, status = 1, ui_status = "draft" } end
  return { vis_state = 0 }
end

local function insert(col, rec)
  local id = col.next_id
  rec.id = id
  col.next_id = id + 1
  col.list[#col.list + 1] = rec
  col.by_id[id] = rec
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

local function create(R, req, aid)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":write")
  if not ctx then return s, b, h end
  local body = http.json_body(req)
  if not body then return fail(R, 400, 1004, NULL, "The request body must be JSON.", NULL) end
  local src = body[R.single]
  if type(src) ~= "table" then src = {} end
  local rec = new_record(R, ctx.account)
  local ok, st, eb = apply_fields(R, ctx, rec, src)
  if not ok then return st, eb end
  local missing = required_missing(R, rec)
  if missing or (R.name == "invoices" and rec.customerid == 0) then
    missing = missing or "customerid"
    return fail(R, 422, 1001, missing, "Field " .. missing .. " is required.", NULL)
  end
  rec.updated_t = state.now()
  if R.money and R.money.amount and rec.amount == nil then rec.amount = 0 end
  if R.money and R.money.outstanding and rec.outstanding == nil then rec.outstanding = rec.amount; rec.paid = 0 end
  insert(ctx.account.cols[R.name], rec)
  if R.name == "payments" then after_payment(ctx, rec, rec.amount) end
  emit(aid, R.object .. ".create", rec.id, ctx.user)
  return 200, { response = { result = { [R.single] = render(R, rec, ctx.account, true) } } }
end

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
  for _, f in ipairs { "action_email", "action_mark_as_sent", "email_include_pdf" } do
    if set_but_not(src[f], "boolean") then return nil, fail(R, 422, 1004, f, "Invalid value for " .. f .. ".",
      scalar(src[f])) end
  end
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
  return 200, { response = { result = { share_link = { share_link = "https://" .. host .. "/#/link/" .. rec.share_token,
    invoice_id = rec.id } } } }
end

local function update(R, req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":write")
  if not ctx then return s, b, h end
  local rec, st, eb = find(R, ctx, id)
  if not rec then return st, eb end
  local body = http.json_body(req)
  if not body then return fail(R, 400, 1004, NULL, "The request body must be JSON.", NULL) end
  local src = body[R.single]
  if type(src) ~= "table" then src = {} end
  local event, action = ".update", false
  if src.vis_state ~= nil then
    -- A PUT that carries vis_state changes only vis_state: every other field is ignored.
    local v = src.vis_state
    if v ~= 0 and v ~= 1 and v ~= 2 then return fail(R, 422, 1004, "vis_state", "Invalid vis_state.", v) end
    if R.name == "payments" and v == 1 and rec.vis_state ~= 1 then after_payment(ctx, rec, -rec.amount) end
    rec.vis_state = v
    if v == 1 then event = ".delete" end
  else
    local st1, eb1
    action, st1, eb1 = send_action(R, src)
    if action == nil then return st1, eb1 end
    local old_amount = R.name == "payments" and rec.amount
    local ok, st2, eb2 = apply_fields(R, ctx, rec, src)
    if not ok then return st2, eb2 end
    if old_amount and rec.amount ~= old_amount then after_payment(ctx, rec, rec.amount - old_amount) end
    if action then send(R, ctx, rec, action) end
  end
  rec.updated_t = state.now()
  emit(aid, R.object .. event, rec.id, ctx.user)
  if action and action.email then emit(aid, R.object .. ".sendByEmail", rec.id, ctx.user) end
  return 200, { response = { result = { [R.single] = render(R, rec, ctx.account, true) } } }
end

local function delete(R, req, aid, id)
  local ctx, s, b, h = account_ctx(req, aid, "user:" .. R.scope .. ":write")
  if not ctx then return s, b, h end
  local rec, st, eb = find(R, ctx, id)
  if not rec then return st, eb end
  rec.removed = true
  ctx.account.cols[R.name].by_id[rec.id] = nil
  emit(aid, R.object .. ".delete", rec.id, ctx.user)
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
  return 200, { response = { result = { system = { id = biz.id, systemid = biz.id, accountid = biz.account_id,
    business_uuid = biz.business_uuid, name = biz.name, currency_code = biz.currency_code, active = true,
    modern_system = true, billing_status = "uptodate", country = "Canada", province = "Ontario", city = "Toronto",
    street = "1 Sandbox Way", code = "M5V 1A1", email = ctx.user.email, info_email = ctx.user.email,
    date = "2024-01-15 09:29:00", timezone = "US/Eastern", dst = true, test_system = true } } } }
end

-- Reports -------------------------------------------------------------------------------------------
local function report_range(req)
  local a = req.args
  local start = a.start_date and util.parse_date(a.start_date)
  local stop = a.end_date and util.parse_date(a.end_date)
  if (a.start_date and not start) or (a.end_date and not stop) then return nil end
  return start or (data.TODAY - 365), stop or data.TODAY
end

local function report(kind, req, aid)
  local ctx, s, b, h = account_ctx(req, aid, "user:reports:read")
  if not ctx then return s, b, h end
  local start, stop = report_range(req)
  if not start then return fail(nil, 400, 1004, "start_date", "Invalid date.", req.args.start_date) end
  local acct, cur = ctx.account, ctx.account.currency_code
  local cols = acct.cols
  local result = { start_date = util.date(start), end_date = util.date(stop), currency_code = cur,
                   company_name = acct.business.name, download_token = NULL }
  if kind == "profitloss_entity" then
    local income, expenses = 0, 0
    for _, inv in ipairs(cols.invoices.list) do
      local d = inv[3]
      if inv.vis_state ~= 1 and inv.status ~= 1 and d >= start and d <= stop then income = income + inv.amount end
    end
    for _, e in ipairs(cols.expenses.list) do
      local d = util.parse_date(e.date)
      if e.vis_state ~= 1 and d >= start and d <= stop then expenses = expenses + e.amount end
    end
    result.income = json.array { { description = "Sales", total = util.money(income, cur) } }
    result.expenses = json.array { { description = "Expenses", total = util.money(expenses, cur) } }
    result.total_income = util.money(income, cur)
    result.total_expenses = util.money(expenses, cur)
    result.cost_of_goods = util.money(0, cur)
    result.gross_margin = util.money(income, cur)
    result.net_profit = util.money(income - expenses, cur)
    return 200, { response = { result = { profitloss = result } } }
  elseif kind == "taxsummary" then
    result.taxes = json.array()
    for _, t in ipairs(cols.taxes.list) do
      if not t.removed then
        result.taxes[#result.taxes + 1] = { tax_name = t.name, tax_rate = t.amount, taxable_amount_collected =
          util.money(0, cur), tax_collected = util.money(0, cur), net_tax = util.money(0, cur) }
      end
    end
    return 200, { response = { result = { taxsummary = result } } }
  end
  local payments, total = json.array(), 0
  for _, p in ipairs(cols.payments.list) do
    local d = util.parse_date(p.date)
    if p.vis_state ~= 1 and d and d >= start and d <= stop then
      total = total + p.amount
      local inv = cols.invoices.by_id[tonumber(p.invoiceid)]
      payments[#payments + 1] = { paymentid = p.id, date = p.date, amount = util.money(p.amount, cur),
        method = p.type, invoiceid = p.invoiceid, invoice_number = inv and inv.invoice_number or NULL,
        client = inv and inv.organization or NULL }
    end
  end
  result.payments = payments
  result.total = util.money(total, cur)
  return 200, { response = { result = { payments_collected = result } } }
end

-- Project family ----------------------------------------------------------------------------------
local function project_ctx(req, bid, scope)
  local ctx, status, body, headers = member_ctx(req, "project", scope, state.business_by_id(bid), "business")
  if ctx then ctx.data = state.data.businesses[ctx.business.id] end
  return ctx, status, body, headers
end

local function project_json(rec, ctx)
  local p = {}
  for k, v in pairs(rec) do if not k:find("_t$") and k ~= "removed" then p[k] = v end end
  p.created_at, p.updated_at = util.iso(rec.created_t), util.iso(rec.updated_t)
  p.services = json.array()
  p.group = { id = rec.group_id, name = "Project", members = json.array { { id = 1, identity_id = 1001,
    first_name = "Alice", last_name = "Sandbox", role = "owner", active = true } } }
  p.group_id = nil
  p.logged_duration = rec.logged_duration
  p.business_id = ctx.business.id
  return p
end

local function entry_json(rec)
  local e = {}
  for k, v in pairs(rec) do if not k:find("_t$") and k ~= "removed" then e[k] = v end end
  e.started_at, e.created_at = util.iso(rec.started_at_t), util.iso(rec.created_t)
  return e
end

local function service_json(rec)
  return { id = rec.id, business_id = rec.business_id, name = rec.name, billable = rec.billable,
           vis_state = rec.vis_state }
end

local function project_fail(status, message, field)
  if field then return status, { errno = 2001, error = { [field] = message } } end
  return status, { error = message }
end

-- Plain key=value filters; booleans as true/false; updated_since; sort=f / sort=-f.
local function project_filter(records, args, time_fields)
  local out = {}
  for _, rec in ipairs(records) do
    local ok = not rec.removed
    for k, v in pairs(args) do
      if not ok then break end
      if type(v) == "table" then v = v[1] end
      if k == "updated_since" then
        local t = util.parse_time(v)
        ok = t ~= nil and (rec.updated_t or rec.created_t or 0) >= t
      elseif time_fields and time_fields[k] then
        local t = util.parse_time(v)
        local f = time_fields[k]
        ok = t ~= nil and ((f.min and rec[f.field] >= t) or (not f.min and rec[f.field] <= t))
      elseif k ~= "page" and k ~= "per_page" and k ~= "sort" and k:sub(1, 8) ~= "include" and rec[k] ~= nil then
        ok = tostring(rec[k]) == tostring(v)
      end
    end
    if ok then out[#out + 1] = rec end
  end
  local sort = type(args.sort) == "string" and args.sort
  if sort then
    local desc = sort:sub(1, 1) == "-"
    local f = desc and sort:sub(2) or sort
    local key = (f == "created_at" and "created_t") or (f == "updated_at" and "updated_t")
      or (f == "started_at" and "started_at_t") or f
    sort_list(out, function(rec) return rec[key] end, desc)
  end
  return out
end

local function project_list(kind, req, bid)
  local scope = kind == "time_entries" and "user:time_entries:read" or "user:projects:read"
  local ctx, s, b, h = project_ctx(req, bid, scope)
  if not ctx then return s, b, h end
  local p, ps, pb = paging(req.args, function(st, _, field, msg) return project_fail(st, msg, field) end)
  if not p then return ps, pb end
  local times = kind == "time_entries" and { started_from = { field = "started_at_t", min = true },
                                             started_to = { field = "started_at_t" } } or nil
  local matched = project_filter(ctx.data[kind].list, req.args, times)
  local page, meta = slice(matched, p)
  local conv = kind == "projects" and project_json or kind == "time_entries" and entry_json or service_json
  for i, rec in ipairs(page) do page[i] = conv(rec, ctx) end
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
  local conv = kind == "projects" and project_json or kind == "time_entries" and entry_json or service_json
  local rec
  if id then
    rec = col.by_id[tonumber(id)]
    if not rec or rec.removed then return project_fail(404, "Requested resource could not be found.") end
  end
  if req.method == "GET" or req.method == "HEAD" then return 200, { [single] = conv(rec, ctx) } end
  if req.method == "DELETE" then
    rec.removed = true
    col.by_id[rec.id] = nil
    return 204, nil
  end
  local body = http.json_body(req)
  if not body then return project_fail(400, "The request body must be JSON.") end
  local src = body[single]
  if type(src) ~= "table" then return project_fail(422, "This field is required.", single) end
  local fresh = not rec
  rec = rec or { vis_state = 0, created_t = state.now(), business_id = ctx.business.id }
  for k, v in pairs(src) do
    if k == "started_at" then
      local t = util.parse_time(v)
      if not t then return project_fail(422, "Invalid datetime.", "started_at") end
      rec.started_at_t = t
    elseif k ~= "id" and k ~= "created_at" and k ~= "updated_at" and type(k) == "string" then
      rec[k] = v
    end
  end
  if fresh then
    for _, f in ipairs(required_of[kind]) do
      if rec[f] == nil and not (f == "started_at" and rec.started_at_t) then
        return project_fail(422, "This field is required.", f)
      end
    end
    if kind == "time_entries" then rec.identity_id = ctx.user.id; rec.is_logged = rec.is_logged ~= false end
    if kind == "projects" then
      rec.logged_duration, rec.complete, rec.active = 0, rec.complete or false, rec.active ~= false
      rec.group_id = 9900 + col.next_id
    end
    insert(col, rec)
  end
  rec.updated_t = state.now()
  return 200, { [single] = conv(rec, ctx) }
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
  if not svc then return project_fail(404, "Requested resource could not be found.") end
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
end
for _, kind in ipairs { "profitloss_entity", "taxsummary", "payments_collected" } do
  routes[#routes + 1] = { method = "GET", path = ACC .. "reports/accounting/" .. kind,
    name = "/accounting/account/{account_id}/reports/accounting/" .. kind,
    handler = function(req, aid) return report(kind, req, aid) end }
end

local function padd(method, path, name, fn)
  routes[#routes + 1] = { method = method, path = path, name = name, handler = fn }
end
local PB = "/projects/business/(%d+)/"
padd("GET", PB .. "projects", "/projects/business/{business_id}/projects",
  function(req, bid) return project_list("projects", req, bid) end)
padd("POST", PB .. "project", "/projects/business/{business_id}/project",
  function(req, bid) return project_item("projects", req, bid) end)
for _, m in ipairs { "GET", "PUT", "DELETE" } do
  padd(m, PB .. "project/(%d+)", "/projects/business/{business_id}/project/{id}",
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
for _, m in ipairs { "GET", "PUT" } do
  padd(m, CB .. "service/(%d+)", "/comments/business/{business_id}/service/{id}",
    function(req, bid, id) return project_item("services", req, bid, id) end)
end
for _, m in ipairs { "GET", "POST", "PUT" } do
  padd(m, CB .. "service/(%d+)/rate", "/comments/business/{business_id}/service/{id}/rate", service_rate)
end
padd("GET", CB .. "service_rates", "/comments/business/{business_id}/service_rates", service_rates)

resources.routes = routes
resources.fail = fail
resources.member_ctx = member_ctx -- the other families' modules (ledger.lua, payments.lua) check members here
return resources
