-- `freshbooks export RESOURCE`: every record of a list resource, streamed through each() (one window of
-- --parallel pages in memory, whatever the total), as JSON lines or CSV (valid UTF-8 whatever
-- FreshBooks sent), to stdout or -o FILE.
local cjson = require "cjson"
local catalogue = require "freshbooks.catalogue"
local number = require("freshbooks.query").number
local cli = require "freshbooks.cli"
local report = require "freshbooks.report"
local text = require "freshbooks.cli.text"

local export = {}
local exit = cli.exit

function export.listable()
  local names = {}
  for _, e in ipairs(catalogue.entries) do
    if e.verbs.list and e.plural and not e.group then names[#names + 1] = e.name end
  end
  return names
end

-- One cell: numbers without a spurious fraction, nested objects flattened by the caller, lists as JSON.
local function scalar(v)
  local t = type(v)
  if t == "number" then
    return number(v)
  elseif t == "table" then
    if next(v) == nil then return "" end
    return cjson.encode(v)
  elseif v == cjson.null then
    return ""
  end
  return tostring(v)
end

-- {a = 1, outstanding = {amount = "1.00", code = "USD"}, lines = {...}} ->
-- {a = "1", ["outstanding.amount"] = "1.00", ["outstanding.code"] = "USD", lines = "[...]"}
local function flatten(rec, prefix, out)
  out = out or {}
  for k, v in pairs(rec) do
    local name = prefix .. tostring(k)
    if type(v) == "table" and next(v) ~= nil and v[1] == nil then
      flatten(v, name .. ".", out)
    else
      out[name] = scalar(v)
    end
  end
  return out
end

-- CSV: the columns are the fields of the first page's records (sorted; FreshBooks leaves null fields out,
-- so one record may lack some). A field first seen later has no column: said once, on stderr.
local function csv_writer(ctx, out)
  local columns, pending, known = nil, {}, {}
  local function row(flat)
    local cells = {}
    for i, c in ipairs(columns) do cells[i] = report.csv_field(flat[c] or "") end
    out:write(table.concat(cells, ","), "\n")
    for k in pairs(flat) do
      if not known[k] then
        known[k] = true
        ctx:note("field %s appeared after the CSV header was written and is left out (--format jsonl keeps"
          .. " everything)", k)
      end
    end
  end
  local function header()
    columns = {}
    for _, flat in ipairs(pending) do
      for k in pairs(flat) do if not known[k] then known[k] = true; columns[#columns + 1] = k end end
    end
    table.sort(columns)
    local cells = {}
    for i, c in ipairs(columns) do cells[i] = report.csv_field(c) end
    if #cells > 0 then out:write(table.concat(cells, ","), "\n") end -- no records: no output at all
    for _, flat in ipairs(pending) do row(flat) end
    pending = nil
  end
  return {
    record = function(rec, page_size)
      local flat = flatten(rec, "")
      if columns then return row(flat) end
      pending[#pending + 1] = flat
      if #pending >= page_size then header() end
    end,
    finish = function() if not columns then header() end end,
  }
end

local function jsonl_writer(_, out)
  return {
    record = function(rec) out:write(cjson.encode(rec), "\n") end,
    finish = function() end,
  }
end

function export.export(ctx)
  local a = ctx.args
  local entry = catalogue.by_name[a.resource]
  if not (entry and entry.verbs.list and entry.plural and not entry.group) then
    exit(2, "%s", text.unknown("unknown resource", a.resource, export.listable(), "resources"))
  end
  local search = require("freshbooks.cli.api").key_values(a.search, "--search", "^[%a_][%w_]*$")
  for _, inc in ipairs(a.include) do
    if not inc:match("^[%a_][%w_]*$") then
      exit(2, "--include expects a name such as lines, got '%s'", text.clean(inc))
    end
  end
  if a.sort and not a.sort:match("^%-?[%a_][%w_]*$") then
    exit(2, "--sort expects a field name, - in front for descending (--sort=-field), got '%s'", text.clean(a.sort))
  end
  local per_page = 100
  local q = { per_page = per_page, search = next(search) and search or nil,
              include = a.include[1] and a.include or nil, sort = a.sort }

  local fb = ctx:connected()
  local biz = ctx:business(fb, a.business)
  local kind = catalogue.owner_of(entry) -- account, business or accounting_business: the membership has each id
  local owner = fb[kind](fb, biz[catalogue.owners[kind]])
  local out = ctx:output(a.output, { utf8 = true })
  local writer = (a.format == "csv" and csv_writer or jsonl_writer)(ctx, out)
  local bar = ctx:progress(out, entry.name)
  for rec, err in owner[entry.name]:each(q, { parallel = a.parallel, progress = bar and bar.update }) do
    if not rec then
      if bar then bar.abort() end
      cli.fail(err, "export of " .. entry.name .. " stopped")
    end
    writer.record(rec, per_page)
    cli.check_interrupt()
  end
  writer.finish()
  out:commit()
  if bar then bar.finish() end
end

return export
