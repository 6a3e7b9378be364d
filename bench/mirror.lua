-- The mirror, measured as a user runs it (bin/freshbooks as a subprocess) against one sandbox holding
-- 10,000 invoices (plus clients, payments, time entries and the rest of a business's books):
--   1. the first sync, as the sandbox answers and with 50 ms of latency on every answer (as a remote API
--      has), next to `freshbooks export` of the same records (every list the sync reads, the deleted
--      records' lists included), both 8 pages at once: seconds and records per second;
--   2. an incremental sync after 100 changes: requests (counted by the sandbox) and seconds;
--   3. the billing report over the 10,000 invoices: offline (SQL on the mirror, in-process, and the
--      `report --offline` command) next to the report over the API.
-- Rounds are interleaved; each figure is the median with the min-max of the rounds.
--   usage: LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/lua5.4/?.so;;' \
--            lua5.4 bench/mirror.lua [rounds]
-- (The sandbox is one nginx worker on the same cores: wall-clock figures are server-bound.)
local cjson = require "cjson"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local C = require "support.cli"
local mirror = require "freshbooks.mirror"
local reports = require "freshbooks.mirror.reports"
local resources = require "freshbooks.mirror.resources"

local ROUNDS = tonumber(arg[1]) or 3
local INVOICES = 10000
local q = sandbox.shell_quote
-- (bench/ is on package.path: make bench runs from the checkout)
package.path = "bench/?.lua;" .. package.path
local stats = require "stats"
local median, fmt, timed, say = stats.median, stats.fmt, stats.timed, stats.say

-- The exports that read what a first sync of one business reads: every list of every resource.
local function exports()
  local out = {}
  for _, r in ipairs(resources.list) do
    local base = ("export %s --business aBcD1 --parallel 8"):format(r.name)
    if r.include then base = base .. " --include lines" end
    out[#out + 1] = base
    if r.deleted == "include_deleted" then out[#out + 1] = base .. " --search include_deleted=true"
    elseif r.vis then out[#out + 1] = base .. " --search vis_state=1" end
  end
  return out
end

local sb = sandbox.start{ invoices = INVOICES }
local ok, err = pcall(function()
  local w = C.world(sb)
  os.execute("mkdir -p -m 700 " .. q(w.config_home .. "/freshbooks"))
  assert(require("freshbooks.store.file")(w.tokens).save(sb:token{}))
  local fb = require("freshbooks").new{ client_id = sb.app.client_id, client_secret = sb.app.client_secret,
    redirect_uri = sb.app.redirect_uri, api_url = sb.url, auth_url = sb.url, tokens = sb:token{} }
  local function run(args, timeout)
    local code, out, e = w:run(args, { timeout = timeout or 600 })
    if code ~= 0 then error(args .. ": " .. e) end
    return out
  end
  say("mirror benchmark: %d rounds, sandbox with %d invoices (%s; SQLite %s)", ROUNDS, INVOICES, _VERSION,
    core.sqlite.sqlite_version)
  -- One untimed walk first: the sandbox keeps each record's rendering while nothing changes.
  run("sync --business aBcD1 --parallel 8 --no-budget --mirror " .. q(w.dir .. "/warm.db"))
  local R = { sync = { [0] = {}, [50] = {} }, export = { [0] = {}, [50] = {} }, inv_sync = { [0] = {}, [50] = {} },
    inv_export = { [0] = {}, [50] = {} }, records = 0, exported = 0, inc_req = {}, inc_s = {}, inc_pages = {},
    sql = {}, offline = {}, api = {}, api_cmd = {} }
  local list = exports()
  for round = 1, ROUNDS do
    io.stderr:write(("round %d/%d\n"):format(round, ROUNDS))
    for _, latency in ipairs { 0, 50 } do
      sb:admin("DELETE", "/_sandbox/faults")
      if latency > 0 then
        sb:admin("POST", "/_sandbox/faults", { route = "^/[acpt]", fault = "delay", ms = latency, rate = 1,
          times = 100000000 })
      end
      local path = ("%s/first-%d-%d.db"):format(w.dir, round, latency)
      local t, out = timed(function()
        return run("sync --business aBcD1 --parallel 8 --no-budget --json --mirror " .. q(path))
      end)
      R.records = cjson.decode(out).records
      table.insert(R.sync[latency], t)
      local n = 0
      t = timed(function()
        for _, args in ipairs(list) do
          local o = run(args .. " -o " .. q(w.dir .. "/export.jsonl"))
          assert(o == "")
          n = n + select(2, C.read(w.dir .. "/export.jsonl"):gsub("\n", ""))
        end
      end)
      R.exported = n
      table.insert(R.export[latency], t)
      -- invoices alone (the bulk of the records)
      t = timed(function()
        run("sync --business aBcD1 --resource invoices --parallel 8 --no-budget --mirror " .. q(path .. "-inv"))
      end)
      table.insert(R.inv_sync[latency], t)
      t = timed(function()
        run("export invoices --business aBcD1 --parallel 8 --include lines -o " .. q(w.dir .. "/i.jsonl"))
        run("export invoices --business aBcD1 --parallel 8 --include lines --search vis_state=1 -o "
          .. q(w.dir .. "/d.jsonl"))
      end)
      table.insert(R.inv_export[latency], t)
    end
    sb:admin("DELETE", "/_sandbox/faults")
    -- 2. an incremental sync after 100 changes (invoices and clients, some deleted)
    local path = ("%s/first-%d-0.db"):format(w.dir, round)
    local acct = fb:account("aBcD1")
    for i = 1, 100 do
      local id = (round * 997 + i * 89) % INVOICES + 1
      if i % 10 == 0 then assert(acct.invoices:delete(id))
      elseif i % 7 == 0 then assert(acct.clients:update(10000 + i % 50 + 1, { note = "bench " .. round }))
      else assert(acct.invoices:update(id, { notes = ("bench %d %d"):format(round, i) })) end
    end
    local since = sb:last_seq()
    local t, out = timed(function()
      return run("sync --business aBcD1 --no-budget --json --mirror " .. q(path))
    end)
    local s = cjson.decode(out)
    local n, inv_pages = 0, 0
    for _, e in ipairs(sb:log(since)) do
      if not e.path:match("^/_sandbox") then
        n = n + 1
        if e.path:match("invoices/invoices$") then inv_pages = inv_pages + 1 end
      end
    end
    assert(s.written >= 100, out)
    table.insert(R.inc_req, n)
    table.insert(R.inc_s, t)
    table.insert(R.inc_pages, inv_pages)
    -- 3. the billing report
    local m = assert(mirror.open{ path = path, readonly = true })
    for _ = 1, 5 do
      table.insert(R.sql, (timed(function()
        assert(reports.billing(m, { as_of = "2025-06-30", business = "aBcD1" }))
      end)))
    end
    m:close()
    table.insert(R.offline, (timed(function()
      run("report --offline --as-of 2025-06-30 --business aBcD1 --format csv --mirror " .. q(path))
    end)))
    local function api_report()
      assert(require("freshbooks.report").run(fb, { as_of = "2025-06-30", business = "aBcD1", parallel = 8,
        format = "csv" }, { write = function(self) return self end }))
    end
    api_report() -- untimed: the sandbox renders the changed invoices again once
    table.insert(R.api, (timed(api_report)))
    table.insert(R.api_cmd, (timed(function()
      run("report --as-of 2025-06-30 --business aBcD1 --format csv --parallel 8")
    end)))
  end

  say("")
  say("1. first sync of business aBcD1 (%d records) next to `freshbooks export` of the same %d records", R.records,
    R.exported)
  say("   (%d exports: every list the sync reads, deleted records included; 8 pages at once, both)", #list)
  for _, latency in ipairs { 0, 50 } do
    local s, e = median(R.sync[latency]), median(R.export[latency])
    say("   %s", latency == 0 and "as the sandbox answers" or ("%d ms on every answer"):format(latency))
    say("     sync            %-24s s  %7.0f records/s", fmt(R.sync[latency], "%.2f"), R.records / s)
    say("     export          %-24s s  %7.0f records/s   sync/export %.2fx", fmt(R.export[latency], "%.2f"),
      R.exported / e, s / e)
    local si, ei = median(R.inv_sync[latency]), median(R.inv_export[latency])
    say("     invoices only   sync %s s, export %s s   sync/export %.2fx", fmt(R.inv_sync[latency], "%.2f"),
      fmt(R.inv_export[latency], "%.2f"), si / ei)
  end
  say("")
  say("2. incremental sync after 100 changes (90 invoices changed or deleted, 10 clients renamed)")
  say("     requests %s (invoice list pages %s), %s s", fmt(R.inc_req, "%.0f"), fmt(R.inc_pages, "%.0f"),
    fmt(R.inc_s, "%.2f"))
  say("")
  say("3. billing report over %d invoices", INVOICES)
  local ms = {}
  for i, x in ipairs(R.sql) do ms[i] = x * 1000 end
  say("     offline, SQL in-process       %s ms", fmt(ms, "%.1f"))
  say("     freshbooks report --offline   %s s (the command, start-up included)", fmt(R.offline, "%.3f"))
  say("     over the API, in-process      %s s   offline SQL is %.0fx faster", fmt(R.api, "%.3f"),
    median(R.api) / median(R.sql))
  say("     freshbooks report             %s s   offline is %.0fx faster", fmt(R.api_cmd, "%.2f"),
    median(R.api_cmd) / median(R.offline))
  w:cleanup()
end)
sb:stop()
if not ok then io.stderr:write("bench failed: ", tostring(err), "\n") os.exit(1) end
