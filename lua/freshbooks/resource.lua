-- The owner objects and their resources, built from the catalogue:
--   local acct = fb:account(account_id)      -- accounting, webhook callbacks, uploads, reports, payments
--   local biz  = fb:business(business_id)    -- projects, time entries, services, team members
--   local ab   = fb:accounting_business(business_uuid)   -- ledger accounts, reports by business uuid
-- Verbs (list/get/create/update/delete/archive and the extras) send through the session's request;
-- bodies are wrapped in the resource's singular key and answers unwrapped from the family's envelope:
-- a verb returns the record (or the records and the paging meta), or nil, err. each/all: paging.lua.
local catalogue = require "freshbooks.catalogue"
local core = require "freshbooks.core"
local date = require "freshbooks.date"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local query = require "freshbooks.query"

local resource = {}

-- What a resource holds besides its name (the session, the catalogue row, the owner id, the URLs)
-- stays out of the object: it shows its verbs and its name, nothing else.
local P = setmetatable({}, { __mode = "k" })
resource.state = function(r) return P[r] end -- for paging.lua

-- An id becomes one path segment, never more: "." and ".." (which servers resolve, also when sent as
-- %2E) and separators, escapes and controls are refused outright; the rest is percent-encoded.
-- `level` here and below: error()'s level from the function's own frame, pointing at the user's call.
local function check_id(id, where, level)
  local t = type(id)
  if t == "number" and id == math.floor(id) and id > -2 ^ 53 and id < 2 ^ 53 then return query.number(id) end
  if t == "string" and id ~= "" and not id:match("^%.+$") and not id:find("[%c%s/\\%%?#]") then
    return core.codec.urlencode(id)
  end
  error(("freshbooks: %s: id must be a whole number or an id string (no '/', '%%', '?', '#', spaces or"
    .. " controls, not '.' or '..'), got %s"):format(where, t == "string" and ("%q"):format(id) or t), level)
end

local function check_fields(fields, where)
  if type(fields) ~= "table" then error(("freshbooks: %s: fields must be a table"):format(where), 3) end
end

local function bad_response(what, res)
  return errors.new{ code = "bad_response", status = res and res.status,
    message = "unexpected response shape: " .. what }
end

-- Requests and unwrapping ------------------------------------------------------------------------

local function render(st, q, level)
  if q ~= nil and type(q) ~= "table" and type(q) ~= "string" then
    error(("freshbooks: %s: query must be a table or a string"):format(st.entry.name), level + 1)
  end
  return query.render(st.dialect, q)
end

local function request(st, method, path, q, json, idempotent)
  return st.session:request{ method = method, path = path, query = render(st, q, 3), json = json,
    idempotent = idempotent }
end

-- The payload under the family's envelope: response.result (accounting, events) or, in the families
-- without one, the body itself (a body in the other shape has no payload).
local function payload(data, entry)
  if type(data) ~= "table" then return nil end
  if catalogue.families[entry.family].envelope ~= "response" then return data end
  local r = data.response
  if type(r) == "table" then return type(r.result) == "table" and r.result or r end
  return data
end

-- The identity family answers the record or the list as `response` itself, its meta beside it.
local function identity(entry) return catalogue.families[entry.family].envelope == "identity" end

-- A record is an object, a list an array (decoded, both are tables): the wrong one is no answer.
local function unwrap_one(st, res)
  local e = st.entry
  local v
  if identity(e) then
    v = type(res.data) == "table" and res.data.response
  else
    local p = payload(res.data, e)
    v = p and (p[e.single] or e.answer and p[e.answer])
  end
  if type(v) ~= "table" or v[1] ~= nil then
    return nil, bad_response("no '" .. e.single .. "' in the response", res)
  end
  return v
end

-- -> items, meta {page, pages, per_page, total}; a list FreshBooks does not page is one whole page.
local function unwrap_list(st, res)
  local e = st.entry
  local items, m
  if identity(e) then
    local d = type(res.data) == "table" and res.data or {}
    items, m = d.response, d.meta
  else
    local p = payload(res.data, e)
    items = p and p[e.plural]
    m = p and (type(p.meta) == "table" and p.meta or p)
  end
  if type(items) ~= "table" or (items[1] == nil and next(items) ~= nil) then
    return nil, bad_response("no '" .. e.plural .. "' list in the response", res)
  end
  if not e.paged then return items, { page = 1, pages = 1, per_page = #items, total = #items } end
  m = type(m) == "table" and m or {}
  local meta = { page = tonumber(m.page), pages = tonumber(m.pages), per_page = tonumber(m.per_page),
                 total = tonumber(m.total) }
  -- The identity family says no `pages`: the last page is where `total` ends.
  if identity(e) and not meta.pages and meta.total and meta.per_page and meta.per_page >= 1 then
    meta.pages = math.max(1, math.ceil(meta.total / meta.per_page))
  end
  return items, meta
end
resource.unwrap_list = unwrap_list

local function one(st, res, err)
  if not res then return nil, err end
  return unwrap_one(st, res)
end

-- Verbs ----------------------------------------------------------------------------------------

local Resource = {}
Resource.__index = Resource

function Resource:__tostring()
  local st = P[self]
  return ("freshbooks.resource(%s, %s %s)"):format(self.name, st.entry.family, st.owner_id)
end

-- The resource's state, once the verb is one FreshBooks has for it.
local function verb(self, v)
  local st = P[self]
  if not st.entry.verbs[v] then
    error(("freshbooks: %s: FreshBooks has no %s for this resource"):format(self.name, v), 3)
  end
  return st
end

local function item(st, id, where, level) return st.item_path .. "/" .. check_id(id, where, level + 1) end

-- list(query) -> records, meta | nil, err
function Resource:list(q)
  local st = verb(self, "list")
  if not st.entry.paged and type(q) == "table" and (q.page ~= nil or q.per_page ~= nil) then
    error(("freshbooks: %s:list: FreshBooks answers this list whole; it takes no page or per_page")
      :format(self.name), 2)
  end
  local res, err = request(st, "GET", st.list_path, q)
  if not res then return nil, err end
  return unwrap_list(st, res)
end

function Resource:get(id, q)
  local st = verb(self, "get")
  return one(st, request(st, "GET", item(st, id, self.name .. ":get", 3), q))
end

-- The families with `create = "item"` create at the item URL (`project`, `service`).
function Resource:create(fields, q)
  local st = verb(self, "create")
  check_fields(fields, self.name .. ":create")
  local path = catalogue.families[st.entry.family].create == "item" and st.item_path or st.list_path
  return one(st, request(st, "POST", path, q, { [st.entry.single] = fields }))
end

-- (`level`: 2 when the verb tail-calls put, 3 when it does not)
local function put(st, id, fields, where, q, idempotent, level)
  return one(st, request(st, "PUT", item(st, id, where, level + 1), q, { [st.entry.single] = fields }, idempotent))
end

-- FreshBooks ignores every other field of a PUT that carries vis_state: refuse the silent loss.
function Resource:update(id, fields, q)
  local st = verb(self, "update")
  check_fields(fields, self.name .. ":update")
  if fields.vis_state ~= nil then
    for k in pairs(fields) do
      if k ~= "vis_state" then
        error(("freshbooks: %s:update: FreshBooks ignores other fields in a PUT that carries vis_state;"
          .. " use delete/archive, or send vis_state on its own"):format(self.name), 2)
      end
    end
  end
  return put(st, id, fields, self.name .. ":update", q, nil, 2)
end

-- delete(id) -> true | nil, err. vis_state = 1 or HTTP DELETE, whichever this resource wants.
function Resource:delete(id)
  local st = verb(self, "delete")
  local done, err
  if st.entry.delete == "vis_state" then
    done, err = put(st, id, { vis_state = 1 }, self.name .. ":delete", nil, nil, 3)
  else
    done, err = request(st, "DELETE", item(st, id, self.name .. ":delete", 3))
  end
  if not done then return nil, err end
  return true
end

function Resource:archive(id)
  local st = verb(self, "archive")
  return put(st, id, { vis_state = 2 }, self.name .. ":archive", nil, nil, 2)
end

-- for record, err in res:each(query, {parallel =, progress =, max_pages =}) do ... end
function Resource:each(q, opts)
  verb(self, "list")
  return require("freshbooks.paging").each(self, q, opts, self.name .. ":each")
end

-- all(query, {parallel =, progress =, max_pages =}) -> records, meta | nil, err
function Resource:all(q, opts)
  verb(self, "list")
  return require("freshbooks.paging").all(self, q, opts, self.name .. ":all")
end

-- Extras ---------------------------------------------------------------------------------------

local function extra(self, name)
  local st = P[self]
  for _, e in ipairs(st.entry.extras) do if e == name then return st end end
  error(("freshbooks: %s: FreshBooks has no %s for this resource"):format(self.name, name), 3)
end

-- Invoice share link -> the link string, and the whole record.
function Resource:share_link(id)
  local st = extra(self, "share_link")
  local res, err = request(st, "GET", item(st, id, self.name .. ":share_link", 3) .. "/share_link",
    { share_method = "share_link" })
  if not res then return nil, err end
  local p = payload(res.data, st.entry)
  local rec = p and p.share_link
  local link = type(rec) == "table" and rec.share_link or rec
  if type(link) ~= "string" then return nil, bad_response("no share_link in the response", res) end
  return link, rec
end

-- send_by_email(id, {recipients = {...}, subject =, body =, include_pdf = bool}) -> record
local EMAIL = options.spec{ recipients = { "table" }, subject = { "string" }, body = { "string" },
  include_pdf = { "boolean" } }
function Resource:send_by_email(id, opts)
  local st = extra(self, "send_by_email")
  opts = options.check("freshbooks: " .. self.name .. ":send_by_email", EMAIL, opts, 2)
  local ok = type(opts.recipients) == "table" and opts.recipients[1] ~= nil
  for _, r in ipairs(ok and opts.recipients or {}) do
    if type(r) ~= "string" or r == "" then ok = false end -- the address itself FreshBooks validates
  end
  if not ok then
    error(("freshbooks: %s:send_by_email: recipients must be a non-empty array of e-mail addresses")
      :format(self.name), 2)
  end
  local fields = { action_email = true, email_recipients = opts.recipients,
    email_include_pdf = opts.include_pdf == true }
  if opts.subject or opts.body then
    fields[st.entry.single .. "_customized_email"] = { subject = opts.subject, body = opts.body }
  end
  -- A PUT, but not idempotent: sent twice, the client gets two e-mails. Never retried after a 5xx.
  return put(st, id, fields, self.name .. ":send_by_email", nil, false, 2)
end

function Resource:mark_as_sent(id)
  local st = extra(self, "mark_as_sent")
  return put(st, id, { action_mark_as_sent = true }, self.name .. ":mark_as_sent", nil, nil, 2)
end

-- Estimates: the client's acceptance, recorded (status 5, "accepted") -> the estimate.
function Resource:accept(id)
  local st = extra(self, "accept")
  return put(st, id, { action_accept = true }, self.name .. ":accept", nil, nil, 2)
end

local function content_type(res)
  local ct = res.headers and res.headers["content-type"]
  return type(ct) == "table" and ct[1] or ct
end

-- Invoices: the invoice as FreshBooks prints it -> the PDF's bytes, its content type.
function Resource:pdf(id)
  local st = extra(self, "pdf")
  local res, err = request(st, "GET", item(st, id, self.name .. ":pdf", 3) .. "/pdf")
  if not res then return nil, err end
  local body, ct = res.body, content_type(res)
  if type(body) ~= "string" or body:sub(1, 5) ~= "%PDF-" then
    return nil, bad_response("not a PDF (" .. tostring(ct) .. ")", res)
  end
  return body, ct
end

-- Webhook callbacks: confirm with the verifier of the verification delivery, or ask for a new one.
function Resource:verify(id, verifier)
  local st = extra(self, "verify")
  if type(verifier) ~= "string" or verifier == "" then
    error("freshbooks: callbacks:verify: verifier must be a string", 2)
  end
  return put(st, id, { verifier = verifier }, "callbacks:verify", nil, nil, 2)
end

function Resource:resend(id)
  local st = extra(self, "resend")
  return put(st, id, { resend = true }, "callbacks:resend", nil, nil, 2)
end

-- Service rates: /comments/business/{bid}/service/{id}/rate
local function rate(st, method, id, fields, where)
  local res, err = request(st, method, item(st, id, where, 3) .. "/rate", nil, fields and { service_rate = fields })
  if not res then return nil, err end
  local p = payload(res.data, st.entry)
  local v = p and p.service_rate
  if type(v) ~= "table" then return nil, bad_response("no service_rate in the response", res) end
  return v
end
function Resource:rate(id) return rate(extra(self, "rate"), "GET", id, nil, "services:rate") end
function Resource:create_rate(id, fields)
  local st = extra(self, "create_rate")
  check_fields(fields, "services:create_rate")
  return rate(st, "POST", id, fields, "services:create_rate")
end
function Resource:update_rate(id, fields)
  local st = extra(self, "update_rate")
  check_fields(fields, "services:update_rate")
  return rate(st, "PUT", id, fields, "services:update_rate")
end

-- Reports: acct.reports.profit_and_loss:get{ start_date = "2024-01-01", end_date = "2024-12-31" }
local Report = { __tostring = Resource.__tostring }
Report.__index = Report

-- A report's query, checked against its row's parameters (catalogue.report_params): an unknown name, a
-- value of the wrong type or form (a date that is no day, a currency outside ISO 4217), an empty list
-- or a start after the end raise, as bad arguments do. A string query is sent as it is.
local CURRENCY = {}
for c in catalogue.currencies:gmatch("%u+") do CURRENCY[c] = true end

local KINDS = {
  date = { "string", "a date YYYY-MM-DD", function(v) return date.exact(v) ~= nil end },
  currency = { "string", "an ISO 4217 currency code such as USD", function(v) return CURRENCY[v] end },
  boolean = { "boolean", "a boolean" },
  id = { "number", "a whole number >= 1", function(v) return v >= 1 and v == math.floor(v) and v < 2 ^ 53 end },
  text = { "string", "a non-empty string", function(v) return v ~= "" end },
  uuid = { "string", "a UUID", function(v) return v:match("^%x+%-%x+%-%x+%-%x+%-%x+$") and #v == 36 end },
  resolution = { "string", "a period such as m, 3m or y", function(v)
    local n = v:match("^(%d*)[my]$")
    return n and (n == "" or tonumber(n) >= 1) end },
}
local LISTS = { dates = "date", currencies = "currency", ids = "id", texts = "text" }

local function choice(set)
  local names = table.concat(set, ", ")
  return { "string", (set.sort and "a sort field (f, -f, f_asc or f_desc) of " or "one of ") .. names,
    function(v)
      if set.sort then v = v:gsub("^%-", ""):gsub("_asc$", ""):gsub("_desc$", "") end
      for _, x in ipairs(set) do if x == v then return true end end
    end }
end

local function fits(kind, v)
  return type(v) == kind[1] and (not kind[3] or kind[3](v))
end

-- One spec per report, made when first used: name -> {kind, list = true?}.
local SPECS = setmetatable({}, { __mode = "k" })
local function spec_of(e)
  local spec = SPECS[e]
  if not spec then
    spec = {}
    for _, name in ipairs(e.params) do
      local k = catalogue.report_params[name]
      if type(k) == "table" then spec[name] = { choice(k) }
      elseif LISTS[k] then spec[name] = { KINDS[LISTS[k]], list = true }
      else spec[name] = { KINDS[k] } end
    end
    SPECS[e] = spec
  end
  return spec
end

-- resource.check_report(entry, q, who, level) -> the query to send (lists of one given as one value
-- become lists); raises at `level` on a bad one.
function resource.check_report(e, q, who, level)
  level = level + 1
  if type(q) == "string" then return q end
  if q == nil then return nil end
  if type(q) ~= "table" then error(who .. ": query must be a table or a string", level) end
  local spec, out = spec_of(e), {}
  for k, v in pairs(q) do
    local rule = type(k) == "string" and spec[k]
    if not rule then
      local names = {}
      for n in pairs(spec) do names[#names + 1] = n end
      table.sort(names)
      error(("%s: unknown parameter '%s' (this report takes %s)"):format(who, tostring(k),
        table.concat(names, ", ")), level)
    end
    local kind = rule[1]
    if rule.list then
      if type(v) ~= "table" then v = { v } end
      local ok = #v > 0
      for i, x in pairs(v) do ok = ok and type(i) == "number" and i >= 1 and i <= #v and fits(kind, x) end
      if not ok then error(("%s: %s must be %s, or a non-empty list of them"):format(who, k, kind[2]), level) end
    elseif not fits(kind, v) then
      error(("%s: %s must be %s"):format(who, k, kind[2]), level)
    end
    out[k] = v
  end
  if out.start_date and out.end_date and date.exact(out.start_date) > date.exact(out.end_date) then
    error(who .. ": start_date must not be after end_date", level)
  end
  return out
end

-- get(query) -> the report (its result key unwrapped: the chart of accounts is the list itself) | nil, err
function Report:get(q)
  local st = P[self]
  q = resource.check_report(st.entry, q, "freshbooks: " .. self.name .. ":get", 2)
  local res, err = request(st, "GET", st.list_path, q)
  if not res then return nil, err end
  local p = payload(res.data, st.entry)
  if type(p) ~= "table" then return nil, bad_response("no report in the response", res) end
  return type(p[st.entry.single]) == "table" and p[st.entry.single] or p
end

-- The account of a report served by business uuid: the membership that has that uuid (the session
-- caches its memberships).
local function account_of(st)
  if catalogue.owner_of(st.entry) == "account" then return st.owner_id end
  local list, err = st.session:memberships()
  if not list then return nil, err end
  for _, m in ipairs(list) do
    if m.business_uuid == st.owner_id and m.account_id ~= nil then return m.account_id end
  end
  return nil, errors.new{ code = "not_found",
    message = "no business of this user has business_uuid " .. tostring(st.owner_id) .. ": its account is unknown" }
end

-- download(download_token) -> the report as FreshBooks' CSV text, as the report is now with the
-- parameters the token was given with | nil, err
function Report:download(token)
  local st = P[self]
  local where = self.name .. ":download"
  if not st.entry.verbs.download then
    error(("freshbooks: %s: FreshBooks has no download for this report"):format(where), 2)
  end
  if type(token) ~= "string" or not token:match("^[%w_%-%.]+$") or token:match("^%.+$") then
    error(("freshbooks: %s: token must be the download_token of a report"):format(where), 2)
  end
  local account, err = account_of(st)
  if not account then return nil, err end
  local path = catalogue.download:gsub("{(%w+)}", { owner = check_id(account, where, 2), token = token,
    key = st.entry.single })
  local res
  res, err = st.session:request{ method = "GET", path = path }
  if not res then return nil, err end
  local ct = content_type(res) or ""
  if type(res.body) ~= "string" or ct:find("json", 1, true) or ct:find("html", 1, true) then
    return nil, bad_response("not a CSV (" .. ct .. ")", res)
  end
  return res.body
end

-- Uploads: acct.attachments:upload(bytes, {filename =, content_type =}) -> {jwt, ...}, link
--          acct.images:get(jwt) -> bytes, content_type
local Upload = { __tostring = Resource.__tostring }
Upload.__index = Upload

local function multipart(content, filename, ctype)
  local boundary = "lua-freshbooks-" .. core.codec.hex(core.crypto.random_bytes(12))
  local safe = filename:gsub('[\r\n"]', "_")
  local body = table.concat({
    "--" .. boundary,
    'Content-Disposition: form-data; name="content"; filename="' .. safe .. '"',
    "Content-Type: " .. ctype, "", content, "--" .. boundary .. "--", "" }, "\r\n")
  return body, "multipart/form-data; boundary=" .. boundary
end

local UPLOAD = options.spec{ filename = { "string" }, content_type = { "string", nonempty = true } }
function Upload:upload(content, opts)
  local st = P[self]
  opts = options.check("freshbooks: " .. self.name .. ":upload", UPLOAD, opts, 2)
  if type(content) ~= "string" then error("freshbooks: " .. self.name .. ":upload: content must be a string", 2) end
  local filename = opts.filename or (self.name == "images" and "image" or "attachment")
  local body, ctype = multipart(content, filename, opts.content_type or "application/octet-stream")
  local res, err = st.session:request{ method = "POST", path = st.list_path, body = body,
    headers = { ["Content-Type"] = ctype } }
  if not res then return nil, err end
  local p = payload(res.data, st.entry)
  local rec = p and p[st.entry.single]
  if type(rec) ~= "table" then return nil, bad_response("no " .. st.entry.single .. " in the response", res) end
  return rec, p.link
end

function Upload:get(jwt)
  local st = P[self]
  local res, err = st.session:request{ method = "GET", path = item(st, jwt, self.name .. ":get", 3) }
  if not res then return nil, err end
  return res.body, content_type(res)
end

-- Payment options: acct.invoice_payment_options:get(invoice_id), :create(invoice_id, fields) (the
-- fields are the body, unwrapped, as FreshBooks takes them), :defaults() (the account's, for invoices).
local PaymentOptions = { __tostring = Resource.__tostring }
PaymentOptions.__index = PaymentOptions

function PaymentOptions:get(id)
  local st = P[self]
  return one(st, request(st, "GET", item(st, id, self.name .. ":get", 3) .. "/payment_options"))
end

function PaymentOptions:create(id, fields)
  local st = P[self]
  local path = item(st, id, self.name .. ":create", 3) .. "/payment_options"
  check_fields(fields, self.name .. ":create")
  return one(st, request(st, "POST", path, nil, fields))
end

function PaymentOptions:defaults()
  local st = P[self]
  return one(st, request(st, "GET", st.list_path, { entity_type = st.entry.path }))
end

-- Owner objects ----------------------------------------------------------------------------------

local function class_of(e)
  local v = e.verbs
  return v.report and Report or v.upload and Upload or v.defaults and PaymentOptions or Resource
end

local function make(session, e, owner_id)
  local list_path, item_path = catalogue.urls(e, check_id(owner_id, e.name, 2))
  local r = setmetatable({ name = e.name }, class_of(e))
  P[r] = { session = session, entry = e, owner_id = owner_id, list_path = list_path, item_path = item_path,
    dialect = catalogue.families[e.family].dialect }
  return r
end

-- Each owner kind's rows: name -> row, and group -> {name -> row}.
local ENTRIES = {}
for kind in pairs(catalogue.owners) do ENTRIES[kind] = { names = {}, groups = {} } end
for _, e in ipairs(catalogue.entries) do
  local idx = ENTRIES[catalogue.owner_of(e)]
  if e.group then
    idx.groups[e.group] = idx.groups[e.group] or {}
    idx.groups[e.group][e.name] = e
  else
    idx.names[e.name] = e
  end
end

-- An owner shows its id field and the resources used so far; the session and its kind stay out.
local OWNER = setmetatable({}, { __mode = "k" }) -- owner object or group table -> {session, kind, id, rows}

local function unknown(o, k)
  error(("freshbooks: %s %s has no resource %q"):format(o.kind, tostring(o.id), tostring(k)), 3)
end

-- Resource objects are made when first used (a session with thousands of accounts stays small). A
-- misspelt resource name is a bug in the caller: it raises instead of returning nil.
local Group = {}
function Group.__index(g, name)
  local o = OWNER[g]
  local e = o.rows[name]
  if not e then unknown(o, o.group .. "." .. tostring(name)) end
  local r = make(o.session, e, o.id)
  rawset(g, name, r)
  return r
end

local Owner = {}
function Owner.__index(obj, k)
  local o = OWNER[obj]
  local idx = ENTRIES[o.kind]
  local e = idx.names[k]
  if e then
    local r = make(o.session, e, o.id)
    rawset(obj, k, r)
    return r
  end
  local rows = idx.groups[k]
  if not rows then unknown(o, k) end
  local g = setmetatable({}, Group)
  OWNER[g] = { session = o.session, kind = o.kind, id = o.id, rows = rows, group = k }
  rawset(obj, k, g)
  return g
end

-- resource.owner(session, kind, id, level) -> a new owner object (fb:account(id) and the others).
function resource.owner(session, kind, id, level)
  level = level or 2
  if type(session) ~= "table" or type(session.request) ~= "function" then
    error("freshbooks: " .. kind .. ": a session is required", level)
  end
  check_id(id, kind, level + 1)
  local obj = setmetatable({ [catalogue.owners[kind]] = id }, Owner)
  OWNER[obj] = { session = session, kind = kind, id = id }
  return obj
end

-- (tail calls: resource.owner's frame is theirs, and level 2 their caller)
function resource.account(session, account_id) return resource.owner(session, "account", account_id, 2) end
function resource.business(session, business_id) return resource.owner(session, "business", business_id, 2) end
-- Keyed by the membership's business_uuid, not its business_id (the URL family /accounting/businesses).
function resource.accounting_business(session, business_uuid)
  return resource.owner(session, "accounting_business", business_uuid, 2)
end

return resource
