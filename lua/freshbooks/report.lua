-- The billing report: for every business the user belongs to (or one), outstanding invoices by client
-- with totals per currency and aging buckets (days past due relative to `as_of`). `freshbooks report`
-- runs it; the OpenResty example serves its totals.
--
-- Money is added exactly: amounts are parsed from FreshBooks' decimal strings into integer minor units,
-- never floats.
local date = require "freshbooks.date"
local options = require "freshbooks.options"

local report = {}

-- Money ----------------------------------------------------------------------------------------

-- "123.45" -> { units = 12345, scale = 2 }; nil for anything that is not a plain decimal.
function report.parse_money(s)
  if type(s) == "number" then error("freshbooks.report: money must come as a string, got a number", 2) end
  if type(s) ~= "string" then return nil end
  local sign, int, frac = s:match("^%s*([%-+]?)(%d*)%.?(%d*)%s*$")
  if not sign or (int == "" and frac == "") or #int + #frac > 15 then return nil end
  local units = tonumber((int == "" and "0" or int) .. frac)
  return { units = sign == "-" and -units or units, scale = #frac }
end

local function rescale(m, scale)
  local u = m.units
  for _ = m.scale + 1, scale do u = u * 10 end
  return u
end

function report.add_money(a, b)
  if not a then return { units = b.units, scale = b.scale } end
  local scale = math.max(a.scale, b.scale)
  return { units = rescale(a, scale) + rescale(b, scale), scale = scale }
end

function report.format_money(m, scale)
  if not m then m = { units = 0, scale = 0 } end
  scale = math.max(scale or 2, m.scale)
  local u = rescale(m, scale)
  local neg = u < 0
  if neg then u = -u end
  local p = 1
  for _ = 1, scale do p = p * 10 end
  local frac = u % p
  local int = (u - frac) / p
  local s = string.format("%d", int)
  if scale > 0 then s = s .. "." .. string.format("%0" .. scale .. "d", frac) end
  return (neg and "-" or "") .. s
end

local function money_less(a, b)
  local scale = math.max(a.scale, b.scale)
  return rescale(a, scale) < rescale(b, scale)
end

-- Dates and aging ------------------------------------------------------------------------------


report.BUCKETS = { "current", "1-30", "31-60", "61-90", "90+" }

function report.bucket(days_past_due)
  if days_past_due <= 0 then return "current" end
  if days_past_due <= 30 then return "1-30" end
  if days_past_due <= 60 then return "31-60" end
  if days_past_due <= 90 then return "61-90" end
  return "90+"
end

-- Aggregation ----------------------------------------------------------------------------------

local function client_name(inv)
  local org = type(inv.organization) == "string" and inv.organization or ""
  if org ~= "" then return org end
  local name = ((type(inv.fname) == "string" and inv.fname or "") .. " "
    .. (type(inv.lname) == "string" and inv.lname or "")):match("^%s*(.-)%s*$")
  if name ~= "" then return name end
  return "Client " .. tostring(inv.customerid or "?")
end

-- Is the invoice owed? Sent (not draft), not deleted, with something outstanding.
local function outstanding(inv)
  if inv.vis_state == 1 or inv.v3_status == "draft" or inv.status == 1 then return nil end
  local o = inv.outstanding
  local m = report.parse_money(type(o) == "table" and o.amount or o)
  if not m or m.units <= 0 then return nil end
  local code = (type(o) == "table" and o.code) or inv.currency_code or "?"
  return m, code
end

local function due_day(inv)
  local d = date.parse(inv.due_date)
  if d then return d end
  local created = date.parse(inv.create_date)
  if created then return created + (tonumber(inv.due_offset_days) or 0) end
end

-- A fresh per-business accumulator; add(inv) folds one invoice in; rows() and totals() read it out.
function report.accumulator(as_of_day)
  local acc = { clients = {}, totals = {}, count = 0 }
  local function fold(t, m, bucket)
    t.invoices = t.invoices + 1
    t.outstanding = report.add_money(t.outstanding, m)
    t[bucket] = report.add_money(t[bucket], m)
  end
  local function slot(tbl, key, extra)
    local t = tbl[key]
    if not t then
      t = { invoices = 0 }
      for k, v in pairs(extra) do t[k] = v end
      tbl[key] = t
    end
    return t
  end
  function acc.add(inv)
    local m, code = outstanding(inv)
    if not m then return false end
    local due = due_day(inv)
    local bucket = due and report.bucket(as_of_day - due) or "current"
    local key = tostring(inv.customerid) .. "\0" .. code
    fold(slot(acc.clients, key, { client_id = inv.customerid, client = client_name(inv), currency = code }), m, bucket)
    fold(slot(acc.totals, code, { currency = code }), m, bucket)
    acc.count = acc.count + 1
    return true
  end
  function acc.rows()
    local rows = {}
    for _, r in pairs(acc.clients) do rows[#rows + 1] = r end
    table.sort(rows, function(a, b)
      if a.currency ~= b.currency then return a.currency < b.currency end
      if money_less(b.outstanding, a.outstanding) then return true end
      if money_less(a.outstanding, b.outstanding) then return false end
      return a.client < b.client
    end)
    return rows
  end
  function acc.currency_totals()
    local rows = {}
    for _, r in pairs(acc.totals) do rows[#rows + 1] = r end
    table.sort(rows, function(a, b) return a.currency < b.currency end)
    return rows
  end
  return acc
end

-- Output ---------------------------------------------------------------------------------------

local COLS = { "invoices", "outstanding", "current", "1-30", "31-60", "61-90", "90+" }

local function cells(r)
  local out = { string.format("%d", r.invoices) }
  for i = 2, #COLS do out[i] = report.format_money(r[COLS[i]]) end
  return out
end

-- The table for a person (on a terminal, `width` columns: names are cut to fit, and when even that is
-- too wide each client becomes a block of lines). Cells are cleaned (they come from FreshBooks) and
-- padded by display width: a name with ü or 株 keeps the columns straight.
local HEAD = { "Client", "Cur", "Inv", "Outstanding", "Current", "1-30", "31-60", "61-90", "90+" }
local LAYOUT = { { min = 10 }, {}, { right = true }, { right = true }, { right = true }, { right = true },
                 { right = true }, { right = true }, { right = true } }

function report.table(out, biz, acc, as_of, width)
  local text = require "freshbooks.cli.text"
  local title = text.clean(("%s (account %s, business %s): outstanding as of %s"):format(biz.name or "?",
    tostring(biz.account_id), tostring(biz.business_id), as_of))
  out:write(width and text.fit(title, width - 1) or title, "\n")
  local rows = acc.rows()
  if #rows == 0 then out:write("  nothing outstanding\n\n") return end
  local lines = { HEAD }
  for _, r in ipairs(rows) do
    local c = cells(r)
    lines[#lines + 1] = { text.clean(r.client), text.clean(r.currency), c[1], c[2], c[3], c[4], c[5], c[6], c[7] }
  end
  local totals = {}
  for _, t in ipairs(acc.currency_totals()) do
    local c = cells(t)
    totals[#totals + 1] = { "Total", text.clean(t.currency), c[1], c[2], c[3], c[4], c[5], c[6], c[7] }
  end
  local all = {}
  for _, l in ipairs(lines) do all[#all + 1] = l end
  for _, l in ipairs(totals) do all[#all + 1] = l end
  local widths = text.grid(all, LAYOUT, width and width - 1, 2)
  if widths then
    local rule = {}
    for i, w in ipairs(widths) do rule[i] = ("-"):rep(w) end
    local function line(t) out:write("  ", text.row(t, LAYOUT, widths), "\n") end
    line(HEAD)
    line(rule)
    for i = 2, #lines do line(lines[i]) end
    line(rule)
    for _, t in ipairs(totals) do line(t) end
  else -- too narrow for columns: a block per client
    for i = 2, #all do
      local l = all[i]
      out:write("  ", text.fit(l[1] .. " (" .. l[2] .. ")", width - 3), "\n")
      for j = 3, #HEAD do out:write("    ", text.pad(HEAD[j], 12), l[j], "\n") end
    end
  end
  out:write("\n")
end

-- One CSV field (RFC 4180 quoting); `freshbooks export --format csv` writes its cells with it too.
function report.csv_field(v)
  v = tostring(v)
  if v:find('[,"\r\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end

report.CSV_HEADER = "business,account_id,business_id,client_id,client,currency,invoices,outstanding,current,"
  .. "days_1_30,days_31_60,days_61_90,days_90_plus"

function report.csv(out, biz, acc)
  for _, r in ipairs(acc.rows()) do
    local c = cells(r)
    local fields = { biz.name or "", biz.account_id or "", biz.business_id or "", r.client_id or "", r.client,
                     r.currency, c[1], c[2], c[3], c[4], c[5], c[6], c[7] }
    for i, v in ipairs(fields) do fields[i] = report.csv_field(v) end
    out:write(table.concat(fields, ","), "\n")
  end
end

-- JSON: one document for the whole run (per business: client rows and currency totals, money as
-- strings). Lists are written by hand: lua-cjson 2.1 writes an empty table as {}, not [].
local function json_list(list)
  local cjson = require "cjson"
  local parts = {}
  for i, r in ipairs(list) do
    local c = cells(r)
    parts[i] = cjson.encode{ client_id = r.client_id, client = r.client, currency = r.currency,
      invoices = r.invoices, outstanding = c[2], current = c[3], days_1_30 = c[4], days_31_60 = c[5],
      days_61_90 = c[6], days_90_plus = c[7] }
  end
  return "[" .. table.concat(parts, ",") .. "]"
end

local function json_business(biz, acc)
  local cjson = require "cjson"
  return ('{"name":%s,"account_id":%s,"business_id":%s,"clients":%s,"totals":%s}'):format(
    cjson.encode(biz.name or ""), cjson.encode(biz.account_id or ""), cjson.encode(biz.business_id or ""),
    json_list(acc.rows()), json_list(acc.currency_totals()))
end

-- report.writer(out, format, as_of, width) -> w: w.business(biz, acc) writes one business (streamed:
-- table and CSV at once, JSON at w.finish()). The API report and the mirror's (freshbooks.mirror.reports)
-- print through it.
function report.writer(out, format, as_of, width)
  local docs = {}
  if format == "csv" then out:write(report.CSV_HEADER, "\n") end
  return {
    business = function(biz, acc)
      if format == "csv" then report.csv(out, biz, acc)
      elseif format == "json" then docs[#docs + 1] = json_business(biz, acc)
      else report.table(out, biz, acc, as_of, width) end
    end,
    finish = function()
      if format == "json" then
        out:write('{"as_of":', require("cjson").encode(as_of), ',"businesses":[', table.concat(docs, ","), "]}\n")
      end
    end,
  }
end

-- Running --------------------------------------------------------------------------------------

-- Errors after which no other business can do better: stop at once.
local FATAL = { reauth_required = true, unauthorized = true, invalid_grant = true, refresh_uncertain = true,
                save_failed = true, lock_failed = true, rate_limited = true, store_corrupt = true }

-- report.run(fb, opts, out, log) -> true | nil, err
--   opts: as_of = "YYYY-MM-DD" (default today), business = name or id (fb:find_business), format =
--         "table" | "csv" | "json", parallel = invoice pages fetched at once (default 4),
--         progress = function(i, n, biz, pages_done, pages, invoices) (each()'s progress, per business),
--         width = columns the table must fit in (a terminal's; default: as wide as it needs)
--   out:  anything with :write(...); log(line) receives notes (a business that failed, no businesses).
-- A business whose invoices cannot be read is logged and the others are still reported; the error is
-- returned at the end. Authorization and rate-limit failures stop the run.
local OPTIONS = options.spec{
  as_of = { "string", say = "YYYY-MM-DD" }, business = { "string|number" },
  format = { "string", default = "table" }, parallel = { "number", min = 1, default = 4 },
  progress = { "function" }, width = { "number", integer = true, min = 1 },
}
function report.run(fb, opts, out, log)
  opts, log = options.check("freshbooks.report", OPTIONS, opts, 2), log or function() end
  local as_of = opts.as_of or os.date("%Y-%m-%d")
  local as_of_day = date.exact(as_of)
  if not as_of_day then error("freshbooks.report: as_of must be YYYY-MM-DD", 2) end
  local format = opts.format
  if format ~= "table" and format ~= "csv" and format ~= "json" then
    error("freshbooks.report: format must be table, csv or json", 2)
  end
  local list, err
  if opts.business then
    local one
    one, err = fb:find_business(opts.business)
    list = one and { one }
  else
    list, err = fb:memberships()
  end
  if not list then return nil, err end
  if #list == 0 then log("this user belongs to no business: nothing to report") end
  local w, failed = report.writer(out, format, as_of, opts.width), nil
  for i, biz in ipairs(list) do
    local acc = report.accumulator(as_of_day)
    -- Streamed: one window of `parallel` pages in memory, whatever the number of invoices.
    local progress = opts.progress and function(done, pages, n) opts.progress(i, #list, biz, done, pages, n) end
    local ierr
    -- The account_id comes from FreshBooks: one that is missing or no id fails this business only
    -- (fb:account raises on it, as on a caller's own bad id).
    local made, acct = pcall(fb.account, fb, biz.account_id)
    if not made then
      ierr = require("freshbooks.errors").new{ code = "bad_response",
        message = "the membership has no usable account_id" }
    else
      for inv, page_err in acct.invoices:each({ per_page = 100 },
        { parallel = opts.parallel, progress = progress }) do
        if not inv then ierr = page_err; break end
        acc.add(inv)
      end
    end
    if ierr then
      if FATAL[ierr.code] then return nil, ierr end
      log(("%s: %s"):format(biz.name or "?", tostring(ierr)))
      failed = ierr
    else
      w.business(biz, acc)
    end
  end
  w.finish()
  if failed then return nil, failed end
  return true
end

return report
