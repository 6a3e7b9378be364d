-- `freshbooks report [KIND]`: the reports, as rows. A kind is one row: its name, a summary (in `report
-- --help` and the completion), the formats it writes (the first is the default), the options of
-- `report` it takes, and run(ctx, fb, out, args). On a terminal the output goes through the pager.
local cli = require "freshbooks.cli"
local text = require "freshbooks.cli.text"

local report = {}
local exit = cli.exit

-- The billing report (freshbooks.report): every business (or --business), outstanding invoices by
-- client and currency, aged. One progress bar per business; each business's failure is said once.
local function billing(ctx, fb, out, a)
  local lib = require "freshbooks.report"
  if a.as_of and not require("freshbooks.date").exact(a.as_of) then exit(2, "--as-of must be a date YYYY-MM-DD") end
  local now = require("freshbooks.core").clock.now
  -- each() reports first after a business's first page, so a bar starts from the end of the previous one
  local bar, since, failures = nil, now(), 0
  local ok, err = lib.run(fb, { as_of = a.as_of, business = a.business, format = a.format, parallel = a.parallel,
    width = out.terminal and out.columns or nil,
    progress = function(i, n, biz, done, pages, invoices)
      if done == 1 then bar = ctx:progress(out, ("[%d/%d] %s"):format(i, n, biz.name or "?"), since) end
      if bar then bar.update(done, pages, invoices) end
      if done == pages then
        if bar then bar.finish() end
        bar, since = nil, now()
      end
    end }, out, function(line)
      bar = nil
      failures = failures + 1
      ctx:note("%s", (line:gsub(": freshbooks: ", ": ", 1)))
    end)
  if bar then bar.abort() end
  if not ok then
    if failures > 0 and err.code ~= "rate_limited" and not err.fatal then
      out:commit() -- what could be reported stands; the failures were said above, once each
      exit(1, "the report is incomplete: %d business%s could not be read (above)", failures,
        failures == 1 and "" or "es")
    end
    cli.fail(err)
  end
end

-- The mirror's kinds (freshbooks.cli.mirror) read the mirror only: `mirror = true`.
local function from_mirror(name)
  return function(...) return require("freshbooks.cli.mirror")[name](...) end
end

report.KINDS = {
  { name = "billing", summary = "Outstanding invoices by client and currency, aged (current, 1-30 ... 90+ days).",
    formats = { "table", "csv", "json" }, options = { "as_of", "business", "parallel", "offline", "mirror" },
    run = billing },
  { name = "revenue", summary = "From the mirror: revenue by client by month (--basis invoiced or collected).",
    formats = { "table", "csv", "json" }, options = { "business", "from", "to", "basis", "offline", "mirror" },
    mirror = true, run = from_mirror("revenue") },
  { name = "unbilled", summary = "From the mirror: billable time not yet billed, by client and project.",
    formats = { "table", "csv", "json" }, options = { "business", "offline", "mirror" }, mirror = true,
    run = from_mirror("unbilled") },
  { name = "dso", summary = "From the mirror: days sales outstanding per currency (--days of sales, default 90).",
    formats = { "table", "csv", "json" }, options = { "as_of", "business", "days", "offline", "mirror" },
    mirror = true, run = from_mirror("dso") },
}
report.by_name = {}
for _, k in ipairs(report.KINDS) do report.by_name[k.name] = k end

-- Options of `report` and the kinds that take them (for the message when a kind does not).
local OPTIONS = { as_of = "--as-of", business = "--business", parallel = "--parallel", offline = "--offline",
  mirror = "--mirror", from = "--from", to = "--to", basis = "--basis", days = "--days" }

function report.report(ctx)
  local a = ctx.args
  local name = a.kind or report.KINDS[1].name
  local kind = report.by_name[name]
  if not kind then
    local names = {}
    for _, k in ipairs(report.KINDS) do names[#names + 1] = k.name end
    exit(2, "%s", text.unknown("no report", name, names, "reports"))
  end
  local takes = {}
  for _, o in ipairs(kind.options) do takes[o] = true end
  for key, flag in pairs(OPTIONS) do
    local default = key == "parallel" and 4 or nil
    if a[key] ~= nil and a[key] ~= default and a[key] ~= false and not takes[key] then
      exit(2, "the %s report takes no %s", kind.name, flag)
    end
  end
  a.format = a.format or kind.formats[1]
  local fine = false
  for _, f in ipairs(kind.formats) do fine = fine or f == a.format end
  if not fine then exit(2, "the %s report is written as %s, not %s", kind.name, table.concat(kind.formats, ", "),
    a.format) end
  local offline = a.offline or kind.mirror
  local fb = not offline and ctx:connected() or nil
  -- A table on a terminal goes through the pager, held until it is complete: progress bars draw meanwhile.
  local out = ctx:output(nil, { pager = a.format == "table" and "hold" or nil, utf8 = true })
  if offline and kind.name == "billing" then require("freshbooks.cli.mirror").billing(ctx, out, a)
  else kind.run(ctx, fb, out, a) end
  out:commit()
end

return report
