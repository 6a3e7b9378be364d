-- Resources built from the catalogue: list/get/create/update/delete/archive/each/all and the extras.
--   local acct = fb:account(account_id)      -- accounting, webhook callbacks, uploads, reports, payments
--   local biz  = fb:business(business_id)    -- projects, time entries, services
--   local ab   = fb:accounting_business(business_uuid)   -- ledger accounts
-- Request bodies are wrapped in the resource's singular key and results unwrapped: verbs return the
-- record (or records and the paging meta), or nil, err.
local catalogue = require "freshbooks.catalogue"
local query = require "freshbooks.query"
local errors = require "freshbooks.errors"

local resource = {}

local Resource = {}
Resource.__index = Resource

-- What a resource object holds besides its name (the session, the catalogue entry, the owner id and
-- the paths) stays out of the object: it shows its verbs and its name, nothing else.
local P = setmetatable({}, { __mode = "k" })

local core = require "freshbooks.core"

-- An id becomes one path segment, never more: "." and ".." (which servers resolve, also when sent as
-- %2E) and separators, escapes and controls are refused outright; the rest is percent-encoded.
local function check_id(id, where)
  local t = type(id)
  if t == "number" and id == math.floor(id) and id > -2 ^ 53 and id < 2 ^ 53 then return query.number(id) end
  if t == "string" and id ~= "" and not id:match("^%.+$") and not id:find("[%c%s/\\%%?#]") then
    return core.urlencode(id)
  end
  error(("freshbooks: %s: id must be a whole number or an id string (no '/', '%%', '?', '#', spaces or"
    .. " controls, not '.' or '..'), got %s"):format(where, t == "string" and ("%q"):format(id) or t), 3)
end

local function check_fields(fields, where)
  if type(fields) ~= "table" then error(("freshbooks: %s: fields must be a table"):format(where), 3) end
end

local function bad_response(what, res)
  return errors.new{ code = "bad_response", status = res and res.status,
    message = "unexpected response shape: " .. what }
end

function Resource:__tostring()
  return ("freshbooks.resource(%s, %s %s)"):format(self.name, P[self].entry.family, P[self].owner_id)
end

local function verb(self, v)
  if not P[self].entry.verbs[v] then
    error(("freshbooks: %s: FreshBooks has no %s for this resource"):format(self.name, v), 3)
  end
end

-- Paths -----------------------------------------------------------------------------------------

local function paths(entry, owner)
  local f, p = entry.family, entry.path
  if f == "accounting" then
    local base = "/accounting/account/" .. owner .. "/" .. p
    return base, base
  elseif f == "events" then
    local base = "/events/account/" .. owner .. "/" .. p
    return base, base
  elseif f == "uploads" then
    return "/uploads/account/" .. owner .. "/" .. p, "/uploads/" .. p
  elseif f == "payments" then -- the account's defaults, and the entity's own (+ /{id}/payment_options)
    local base = "/payments/account/" .. owner .. "/"
    return base .. "payment_options", base .. p
  elseif f == "accounting_business" then
    local base = "/accounting/businesses/" .. owner .. "/" .. p
    return base, base
  end
  local prefix = "/" .. p[1] .. "/business/" .. owner .. "/"
  return prefix .. p[2], prefix .. p[3]
end

local function new(session, entry, owner_id, class)
  local list_path, item_path = paths(entry, check_id(owner_id, entry.name))
  local r = setmetatable({ name = entry.name }, class)
  P[r] = { session = session, entry = entry, owner_id = owner_id, list_path = list_path, item_path = item_path }
  return r
end

-- Requests and unwrapping ------------------------------------------------------------------------

local function render(self, q)
  if q ~= nil and type(q) ~= "table" and type(q) ~= "string" then
    error(("freshbooks: %s: query must be a table or a string"):format(self.name), 3)
  end
  return query.render(P[self].entry.family == "project" and "project" or "accounting", q)
end

local function request(self, method, path, q, json, idempotent)
  local res, err = P[self].session:request{ method = method, path = path, query = render(self, q), json = json,
    idempotent = idempotent }
  if not res then return nil, err end
  return res
end

-- The payload under FreshBooks' envelope: response.result (accounting, events) or, in the families
-- without one, the body itself (a body in the other shape has no payload).
local function payload(data, entry)
  if type(data) ~= "table" then return nil end
  if not catalogue.families[entry.family].envelope then return data end
  local r = data.response
  if type(r) == "table" then return type(r.result) == "table" and r.result or r end
  return data
end

-- A record is an object, a list an array (decoded, both are tables): the wrong one is no answer.
local function unwrap_one(self, res)
  local p = payload(res.data, P[self].entry)
  local v = p and (p[P[self].entry.single] or P[self].entry.answer and p[P[self].entry.answer])
  if type(v) ~= "table" or v[1] ~= nil then
    return nil, bad_response("no '" .. P[self].entry.single .. "' in the response", res)
  end
  return v
end

-- -> items, meta {page, pages, per_page, total}; a list FreshBooks does not page is one whole page.
local function unwrap_list(self, res)
  local p = payload(res.data, P[self].entry)
  local items = p and p[P[self].entry.plural]
  if type(items) ~= "table" or (items[1] == nil and next(items) ~= nil) then
    return nil, bad_response("no '" .. P[self].entry.plural .. "' list in the response", res)
  end
  if not P[self].entry.paged then return items, { page = 1, pages = 1, per_page = #items, total = #items } end
  local m = type(p.meta) == "table" and p.meta or p
  return items, { page = tonumber(m.page), pages = tonumber(m.pages), per_page = tonumber(m.per_page),
                  total = tonumber(m.total) }
end

local function wrap(self, fields)
  return { [P[self].entry.single] = fields }
end

-- Verbs ----------------------------------------------------------------------------------------

-- list(query) -> records, meta | nil, err
function Resource:list(q)
  verb(self, "list")
  if not P[self].entry.paged and type(q) == "table" and (q.page ~= nil or q.per_page ~= nil) then
    error(("freshbooks: %s:list: FreshBooks answers this list whole; it takes no page or per_page")
      :format(self.name), 2)
  end
  local res, err = request(self, "GET", P[self].list_path, q)
  if not res then return nil, err end
  return unwrap_list(self, res)
end

function Resource:get(id, q)
  verb(self, "get")
  local res, err = request(self, "GET", P[self].item_path .. "/" .. check_id(id, self.name .. ":get"), q)
  if not res then return nil, err end
  return unwrap_one(self, res)
end

-- The project family creates at the item path (`project`, `service`), the others at the list path.
function Resource:create(fields, q)
  verb(self, "create")
  check_fields(fields, self.name .. ":create")
  local path = P[self].entry.family == "project" and P[self].item_path or P[self].list_path
  local res, err = request(self, "POST", path, q, wrap(self, fields))
  if not res then return nil, err end
  return unwrap_one(self, res)
end

local function put(self, id, fields, where, q, idempotent)
  local res, err = request(self, "PUT", P[self].item_path .. "/" .. check_id(id, where), q, wrap(self, fields),
    idempotent)
  if not res then return nil, err end
  return unwrap_one(self, res)
end

-- FreshBooks ignores every other field of a PUT that carries vis_state: refuse the silent loss.
function Resource:update(id, fields, q)
  verb(self, "update")
  check_fields(fields, self.name .. ":update")
  local vis_key = P[self].entry.vis_key
  if fields[vis_key] ~= nil and next(fields, nil) ~= nil then
    for k in pairs(fields) do
      if k ~= vis_key then
        error(("freshbooks: %s:update: FreshBooks ignores other fields in a PUT that carries vis_state;"
          .. " use delete/archive, or send vis_state on its own"):format(self.name), 2)
      end
    end
  end
  return put(self, id, fields, self.name .. ":update", q)
end

-- delete(id) -> true | nil, err. vis_state = 1 or HTTP DELETE, whichever this resource wants.
function Resource:delete(id)
  verb(self, "delete")
  if P[self].entry.delete == "vis_state" then
    local rec, err = put(self, id, { [P[self].entry.vis_key] = 1 }, self.name .. ":delete")
    if not rec then return nil, err end
    return true
  end
  local res, err = request(self, "DELETE", P[self].item_path .. "/" .. check_id(id, self.name .. ":delete"))
  if not res then return nil, err end
  return true
end

function Resource:archive(id)
  verb(self, "archive")
  return put(self, id, { [P[self].entry.vis_key] = 2 }, self.name .. ":archive")
end

-- Paging ---------------------------------------------------------------------------------------

local function paging(q)
  if type(q) == "string" then
    error("freshbooks: each/all need a query table (they set page and per_page)", 3)
  end
  q = q or {}
  local per_page = q.per_page or 100
  return q, tonumber(q.page) or 1, per_page
end

-- Past this many pages a walk stops with too_many_pages (opts.max_pages): a server that never says
-- "last page" must not keep a loop running forever.
local MAX_PAGES = 100000

local function check_opts(opts, where)
  opts = opts or {}
  if type(opts) ~= "table" then error("freshbooks: " .. where .. ": options must be a table", 3) end
  local parallel = opts.parallel or 1
  if type(parallel) ~= "number" or parallel < 1 then
    error("freshbooks: " .. where .. ": parallel must be a number >= 1", 3)
  end
  if opts.progress ~= nil and type(opts.progress) ~= "function" then
    error("freshbooks: " .. where .. ": progress must be a function", 3)
  end
  local max_pages = opts.max_pages or MAX_PAGES
  if type(max_pages) ~= "number" or max_pages < 1 then
    error("freshbooks: " .. where .. ": max_pages must be a number >= 1", 3)
  end
  return math.floor(parallel), opts.progress, math.floor(max_pages)
end

local function too_many_pages(max_pages)
  return errors.new{ code = "too_many_pages",
    message = ("the walk passed %d pages without reaching the last one (max_pages)"):format(max_pages) }
end

-- A page's identity, to notice a server that answers every page number with the same records.
local function fingerprint(list)
  local a, b = list[1], list[#list]
  return tostring(type(a) == "table" and a.id or a) .. "|" .. tostring(type(b) == "table" and b.id or b) .. "|" .. #list
end

-- A list FreshBooks does not page is one request, whatever the walk asks: page and per_page are the
-- walk's settings, not filters, and the list refuses them.
local function whole(self, q, progress)
  local rest, meta, done = query.with(q, {}), nil, false
  rest.page, rest.per_page = nil, nil
  return function()
    if done then return nil end
    done = true
    local list, m = self:list(rest)
    if not list then return false, m end
    meta = m
    if progress then progress(1, 1, #list) end
    return list
  end, function() return meta end
end

-- The paging engine behind each() and all(). Page `first` comes alone and tells how many pages there
-- are; then windows of `parallel` pages go out together through fb:batch (the C core's multi
-- interface), and their records come back in page order. Only one window is held at a time.
-- next_window() -> records (possibly empty), or nil at the end, or false, err.
local function pager(self, q, parallel, progress, max_pages)
  if not P[self].entry.paged then return whole(self, paging(q), progress) end
  local page, per_page
  q, page, per_page = paging(q)
  local first, pages, seen, meta, last_print, ended = page, nil, 0, nil, nil, false
  -- The query is rendered once per walk; each page only appends its number.
  local rest = query.with(q, { per_page = per_page })
  rest.page = nil
  local base = render(self, rest)
  local sep = base == "" and "" or "&"
  local function page_query(n) return base .. sep .. "page=" .. string.format("%d", n) end
  local function report(done)
    if progress then progress(done - first + 1, math.max(pages or done, done) - first + 1, seen) end
  end
  -- Without `pages` the walk goes one page at a time and ends on an empty page, a page shorter than
  -- the page size, or a page identical to the one before.
  local function short(list, m)
    return #list == 0 or #list < ((m and m.per_page) or math.min(per_page, 100))
  end
  -- With `pages` known, a sliding window: `parallel` pages always in flight on one stream (the C
  -- core's multi interface, light threads under OpenResty), up to `parallel` more finished and held
  -- until their turn, records handed out in page order.
  local stream, submitted, held, page_of = nil, nil, {}, {}
  local function fill()
    while submitted <= pages and submitted < page + 2 * parallel do
      page_of[stream.add{ method = "GET", path = P[self].list_path, query = page_query(submitted) }] = submitted
      submitted = submitted + 1
    end
  end
  local function windowed()
    if not stream then
      local err
      stream, err = P[self].session:stream{ concurrency = parallel }
      if not stream then return false, err end
      submitted = page
      fill()
    end
    while not held[page] do
      local id, res, err = stream.next()
      if not id then return false, errors.new{ code = "internal", message = "the stream lost a page" } end
      if not res then stream.close() return false, err end
      local list, uerr = unwrap_list(self, res)
      if not list then stream.close() return false, uerr end
      held[page_of[id]], page_of[id] = list, nil
    end
    local list = held[page]
    held[page] = nil
    page, seen = page + 1, seen + #list
    if page <= pages then fill() else stream.close() end
    report(page - 1)
    return list
  end
  local function next_window()
    if meta and (pages == nil or page > pages) then
      if pages ~= nil or ended then return nil end
      if page - first >= max_pages then return false, too_many_pages(max_pages) end
      local list, m = self:list(page_query(page))
      if not list then return false, m end
      local print = fingerprint(list)
      if #list == 0 or print == last_print then return nil end
      last_print, ended = print, short(list, m)
      page, seen = page + 1, seen + #list
      report(page - 1)
      return list
    end
    if not meta then
      local list, m = self:list(page_query(page))
      if not list then return false, m end
      meta, pages, page, seen = m, m.pages, page + 1, #list
      if #list == 0 then pages = first - 1 end -- an empty first page ends the walk
      if pages == nil then last_print, ended = fingerprint(list), short(list, m) end
      if pages and pages - first + 1 > max_pages then return false, too_many_pages(max_pages) end
      report(first)
      return list
    end
    if parallel > 1 then return windowed() end
    local list, m = self:list(page_query(page))
    if not list then return false, m end
    page, seen = page + 1, seen + #list
    report(page - 1)
    return list
  end
  return next_window, function() return meta end
end

-- for record, err in res:each(query, {parallel = n, progress = fn}) do ... end
-- One page in memory at a time (one window of `parallel` pages with parallel > 1). On failure the
-- loop gets (false, err) once and then ends.
function Resource:each(q, opts)
  verb(self, "list")
  local parallel, progress, max_pages = check_opts(opts, "each")
  local next_window = pager(self, q, parallel, progress, max_pages)
  local items, i, done = {}, 0, false
  return function()
    while not done do
      i = i + 1
      local rec = items[i]
      if rec ~= nil then items[i] = nil; return rec end -- let records go as soon as they are handed out
      local list, err = next_window()
      if not list then
        done = true
        if list == false then return false, err end
        return nil
      end
      items, i = list, 0
    end
    return nil
  end
end

-- all(query, {parallel = n, progress = fn(pages_done, pages, records_so_far)}) -> records, meta | nil, err
-- each() with a window of `parallel` pages, collected in page order.
function Resource:all(q, opts)
  verb(self, "list")
  local parallel, progress, max_pages = check_opts(opts, "all")
  local next_window, meta = pager(self, q, parallel, progress, max_pages)
  local out = {}
  while true do
    local list, err = next_window()
    if list == nil then break end
    if list == false then return nil, err end
    for _, rec in ipairs(list) do out[#out + 1] = rec end
  end
  return out, meta()
end

-- Extras ---------------------------------------------------------------------------------------

local function extra(self, name)
  for _, e in ipairs(P[self].entry.extras) do if e == name then return end end
  error(("freshbooks: %s: FreshBooks has no %s for this resource"):format(self.name, name), 3)
end

-- Invoice share link -> the link string, and the whole record.
function Resource:share_link(id)
  extra(self, "share_link")
  local res, err = request(self, "GET", P[self].item_path .. "/" .. check_id(id,
    self.name .. ":share_link") .. "/share_link",
    { share_method = "share_link" })
  if not res then return nil, err end
  local p = payload(res.data, P[self].entry)
  local rec = p and p.share_link
  local link = type(rec) == "table" and rec.share_link or rec
  if type(link) ~= "string" then return nil, bad_response("no share_link in the response", res) end
  return link, rec
end

-- send_by_email(id, {recipients = {...}, subject =, body =, include_pdf = bool}) -> record
function Resource:send_by_email(id, opts)
  extra(self, "send_by_email")
  opts = opts or {}
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
    fields[P[self].entry.single .. "_customized_email"] = { subject = opts.subject, body = opts.body }
  end
  -- A PUT, but not idempotent: sent twice, the client gets two e-mails. Never retried after a 5xx.
  return put(self, id, fields, self.name .. ":send_by_email", nil, false)
end

function Resource:mark_as_sent(id)
  extra(self, "mark_as_sent")
  return put(self, id, { action_mark_as_sent = true }, self.name .. ":mark_as_sent")
end

-- Webhook callbacks: confirm with the verifier of the verification delivery, or ask for a new one.
function Resource:verify(id, verifier)
  extra(self, "verify")
  if type(verifier) ~= "string" or verifier == "" then
    error("freshbooks: callbacks:verify: verifier must be a string", 2)
  end
  return put(self, id, { verifier = verifier }, "callbacks:verify")
end

function Resource:resend(id)
  extra(self, "resend")
  return put(self, id, { resend = true }, "callbacks:resend")
end

-- Service rates: /comments/business/{bid}/service/{id}/rate
local function rate(self, method, id, fields, where)
  local path = P[self].item_path .. "/" .. check_id(id, where) .. "/rate"
  local res, err = request(self, method, path, nil, fields and { service_rate = fields })
  if not res then return nil, err end
  local p = payload(res.data, P[self].entry)
  local v = p and p.service_rate
  if type(v) ~= "table" then return nil, bad_response("no service_rate in the response", res) end
  return v
end
function Resource:rate(id) extra(self, "rate") return rate(self, "GET", id, nil, "services:rate") end
function Resource:create_rate(id, fields)
  extra(self, "create_rate"); check_fields(fields, "services:create_rate")
  return rate(self, "POST", id, fields, "services:create_rate")
end
function Resource:update_rate(id, fields)
  extra(self, "update_rate"); check_fields(fields, "services:update_rate")
  return rate(self, "PUT", id, fields, "services:update_rate")
end

-- Reports: acct.reports.profit_and_loss:get{ start_date = "2024-01-01", end_date = "2024-12-31" }
local Report = {}
Report.__index = Report
Report.__tostring = Resource.__tostring

function Report:get(q)
  local res, err = request(self, "GET", P[self].list_path, q)
  if not res then return nil, err end
  local p = payload(res.data, P[self].entry)
  if type(p) ~= "table" then return nil, bad_response("no report in the response", res) end
  return type(p[P[self].entry.single]) == "table" and p[P[self].entry.single] or p
end

-- Uploads: acct.attachments:upload(bytes, {filename =, content_type =}) -> {jwt, ...}, link
--          acct.images:get(jwt) -> bytes, content_type
local Upload = {}
Upload.__index = Upload
Upload.__tostring = Resource.__tostring

local function multipart(content, filename, ctype)
  local boundary = "lua-freshbooks-" .. core.hex(core.random_bytes(12))
  local safe = filename:gsub('[\r\n"]', "_")
  local body = table.concat({
    "--" .. boundary,
    'Content-Disposition: form-data; name="content"; filename="' .. safe .. '"',
    "Content-Type: " .. ctype, "", content, "--" .. boundary .. "--", "" }, "\r\n")
  return body, "multipart/form-data; boundary=" .. boundary
end

function Upload:upload(content, opts)
  opts = opts or {}
  if type(content) ~= "string" then error("freshbooks: " .. self.name .. ":upload: content must be a string", 2) end
  local filename = opts.filename or (self.name == "images" and "image" or "attachment")
  local body, ctype = multipart(content, filename, opts.content_type or "application/octet-stream")
  local res, err = P[self].session:request{ method = "POST", path = P[self].list_path, body = body,
                                         headers = { ["Content-Type"] = ctype } }
  if not res then return nil, err end
  local p = payload(res.data, P[self].entry)
  local rec = p and p[P[self].entry.single]
  if type(rec) ~= "table" then return nil, bad_response("no " .. P[self].entry.single .. " in the response", res) end
  return rec, p.link
end

function Upload:get(jwt)
  local res, err = P[self].session:request{ method = "GET", path = P[self].item_path .. "/" .. check_id(jwt,
    self.name .. ":get") }
  if not res then return nil, err end
  local ct = res.headers and res.headers["content-type"]
  return res.body, type(ct) == "table" and ct[1] or ct
end

-- Payment options: acct.invoice_payment_options:get(invoice_id), :create(invoice_id, fields) (the
-- fields are the body, unwrapped, as FreshBooks takes them), :defaults() (the account's, for invoices).
local PaymentOptions = {}
PaymentOptions.__index = PaymentOptions
PaymentOptions.__tostring = Resource.__tostring

local function options_path(self, id, where)
  return P[self].item_path .. "/" .. check_id(id, where) .. "/payment_options"
end

function PaymentOptions:get(id)
  local res, err = request(self, "GET", options_path(self, id, self.name .. ":get"))
  if not res then return nil, err end
  return unwrap_one(self, res)
end

function PaymentOptions:create(id, fields)
  local path = options_path(self, id, self.name .. ":create")
  check_fields(fields, self.name .. ":create")
  local res, err = request(self, "POST", path, nil, fields)
  if not res then return nil, err end
  return unwrap_one(self, res)
end

function PaymentOptions:defaults()
  local res, err = request(self, "GET", P[self].list_path, { entity_type = P[self].entry.path })
  if not res then return nil, err end
  return unwrap_one(self, res)
end

-- Account, business and accounting-business objects ---------------------------------------------

-- The catalogue entries an owner kind carries: name -> entry, and group -> {name -> entry}.
local function index_entries(families)
  local names, groups = {}, {}
  for _, e in ipairs(catalogue.entries) do
    if families[e.family] then
      if e.group then
        groups[e.group] = groups[e.group] or {}
        groups[e.group][e.name] = e
      else
        names[e.name] = e
      end
    end
  end
  return names, groups
end
local ENTRIES = {}
for kind in pairs(catalogue.owners) do
  local families = {}
  for f, t in pairs(catalogue.families) do families[f] = t.owner == kind end
  ENTRIES[kind] = { index_entries(families) }
end

local function make(session, e, id)
  local v = e.verbs
  return new(session, e, id, v.report and Report or v.upload and Upload or v.defaults and PaymentOptions
    or Resource)
end

-- Resource objects are made when first used (a session with thousands of accounts stays small). A
-- misspelt resource name is a bug in the caller: it raises instead of returning nil.
local function owner(session, id, kind)
  if type(session) ~= "table" or type(session.request) ~= "function" then
    error("freshbooks: " .. kind .. ": a session is required", 3)
  end
  check_id(id, kind)
  local names, groups = ENTRIES[kind][1], ENTRIES[kind][2]
  local function unknown(k)
    error(("freshbooks: %s %s has no resource %q"):format(kind, tostring(id), tostring(k)), 3)
  end
  return setmetatable({ [catalogue.owners[kind]] = id }, { __index = function(obj, k)
    local e = names[k]
    if e then
      local r = make(session, e, id)
      rawset(obj, k, r)
      return r
    end
    local group = groups[k]
    if not group then unknown(k) end
    local g = setmetatable({}, { __index = function(gt, name)
      local ge = group[name]
      if not ge then unknown(k .. "." .. tostring(name)) end
      local r = make(session, ge, id)
      rawset(gt, name, r)
      return r
    end })
    rawset(obj, k, g)
    return g
  end })
end

function resource.account(session, account_id)
  return owner(session, account_id, "account")
end

function resource.business(session, business_id)
  return owner(session, business_id, "business")
end

-- Keyed by the membership's business_uuid, not its business_id (the URL family /accounting/businesses).
function resource.accounting_business(session, business_uuid)
  return owner(session, business_uuid, "accounting_business")
end

return resource
