-- The mirror's commands (docs/mirror.md): `freshbooks sync [--watch]`, `freshbooks sql`, and the reports
-- `freshbooks report` runs from the mirror (`--offline`, and the kinds only a mirror answers).
-- The mirror lives in $XDG_DATA_HOME/freshbooks/mirror.db (a profile's under profiles/NAME/), or
-- --mirror FILE, or $FB_MIRROR.
local cjson = require "cjson"
local core = require "freshbooks.core"
local cli = require "freshbooks.cli"
local text = require "freshbooks.cli.text"
local spawn = require "freshbooks.cli.spawn"
local config = require "freshbooks.cli.config"
local mirror = require "freshbooks.mirror"
local number = require("freshbooks.query").number

local M = {}
local exit = cli.exit

-- Where the mirror is: --mirror, $FB_MIRROR, else the profile's data directory (made 0700).
function M.path(ctx, create)
  local a = ctx.args
  local p = a.mirror or (os.getenv("FB_MIRROR") ~= "" and os.getenv("FB_MIRROR")) or nil
  if p then return p end
  ctx:settings() -- the profile
  local base = os.getenv("XDG_DATA_HOME")
  if not base or base == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then exit(2, "set HOME or XDG_DATA_HOME: the mirror lives there") end
    base = home .. "/.local/share"
  end
  local dir = base .. "/freshbooks"
  if ctx.profile ~= config.DEFAULT_PROFILE then dir = dir .. "/profiles/" .. ctx.profile end
  if create then ctx.cfg.make_dir(dir) end
  return dir .. "/mirror.db"
end

local function open(ctx, readonly)
  local path = M.path(ctx, not readonly)
  if readonly and not io.open(path, "rb") then
    exit(1, "no mirror at %s: run `freshbooks sync` first", path)
  end
  local m, err = mirror.open{ path = path, readonly = readonly }
  if not m then
    if err.code == "mirror_too_new" or err.code == "not_a_mirror" then exit(1, "%s", err.message) end
    cli.fail(err, path)
  end
  ctx.cleanups[#ctx.cleanups + 1] = function() m:close() end
  return m, path
end

-- sync ------------------------------------------------------------------------------------------

local function budget(a)
  if a.no_budget then return false end
  return { rate = a.rate, burst = a.burst, max = a.max_requests }
end

-- Progress on a terminal: one bar per business and resource walked, notes for waits.
local function progress(ctx, out)
  local bar, label, records, t0 = nil, nil, 0, core.clock.now()
  return function(ev)
    if ev.type == "resource" then
      if bar then bar.finish() bar = nil end
      label, records, t0 = ("%s %s"):format(ev.business_id, ev.resource), 0, core.clock.now()
    elseif ev.type == "page" then
      records = records + ev.records
      if not bar and (ev.pages or 1) > 1 then bar = ctx:progress(out, label, t0) end
      if bar then bar.update(ev.page, math.max(ev.pages or ev.page, ev.page), records) end
    elseif ev.type == "wait" and ev.seconds >= 1 then
      ctx:note("request budget: waiting %.1f s", ev.seconds)
    elseif ev.type == "done" and bar then
      bar.finish()
      bar = nil
    end
  end
end

local function totals(summary)
  local t = { requests = summary.requests or 0, records = 0, written = 0, deleted = 0, gone = 0 }
  for _, s in ipairs(summary.resources or {}) do
    t.records, t.written = t.records + s.records, t.written + s.written
    t.deleted, t.gone = t.deleted + s.deleted, t.gone + s.gone
  end
  return t
end

local function report_summary(ctx, out, summary, seconds, path)
  local a = ctx.args
  local t = totals(summary)
  if a.json then
    local list = {}
    for i, s in ipairs(summary.resources) do list[i] = s end
    local errs = {}
    for i, e in ipairs(summary.errors or {}) do
      errs[i] = { business_id = e.business_id, resource = e.resource, code = e.error.code,
                  message = cli.describe_error(e.error) }
    end
    out:write(text.json{ mirror = path, now = summary.now, seconds = math.floor(seconds * 1000 + 0.5) / 1000,
      requests = t.requests, records = t.records, written = t.written, deleted = t.deleted, gone = t.gone,
      resources = text.array(list), errors = text.array(errs) }, "\n")
    return
  end
  local rows = { { "Business", "Resource", "Requests", "Read", "Written", "Deleted", "Gone" } }
  for _, s in ipairs(summary.resources) do
    if s.written + s.deleted + s.gone > 0 or a.verbose then
      rows[#rows + 1] = { tostring(s.business_id), s.resource, tostring(s.requests), tostring(s.records),
        tostring(s.written), tostring(s.deleted), tostring(s.gone) }
    end
  end
  if #rows > 1 then
    local layout = { {}, {}, { right = true }, { right = true }, { right = true }, { right = true }, { right = true } }
    local widths = text.grid(rows, layout, out.columns, 2)
    if widths then
      for _, r in ipairs(rows) do out:write("  ", text.row(r, layout, widths), "\n") end
    end
  end
  out:write(("synced %s: %d records read, %d written, %d deleted, %d gone; %d requests in %.1f s\n"):format(path,
    t.records, t.written, t.deleted, t.gone, t.requests, seconds))
end

local function sync_opts(ctx, out)
  local a = ctx.args
  return { businesses = a.business[1] and a.business or nil, resources = a.resource[1] and a.resource or nil,
    parallel = a.parallel, budget = budget(a), reconcile = a.full and "full" or (a.reconcile and true or nil),
    progress = progress(ctx, out) }
end

-- An event line from the listener: the delivery's fields as a JSON object.
local function event_of(line)
  local ok, ev = pcall(cjson.decode, line)
  if not ok or type(ev) ~= "table" then return nil end
  for k, v in pairs(ev) do if type(v) ~= "string" and type(v) ~= "number" then ev[k] = nil end end
  return ev
end

-- The socket events arrive on (the OpenResty example hands its verified deliveries here): a Unix
-- stream socket, one JSON object a line, answered "ok", "ignored" or "error CODE" once applied.
local function listen(ctx, path)
  local lfs = require "lfs"
  local unix = require "socket.unix"
  local kind = lfs.symlinkattributes(path, "mode")
  if kind == "socket" then os.remove(path)
  elseif kind ~= nil then exit(1, "%s exists and is not a socket", path) end
  -- bound beside its name, made 0600, then renamed into place: it never answers at the path with the
  -- umask's mode
  local tmp = path .. "." .. core.codec.hex(core.crypto.random_bytes(4))
  local srv = (unix.stream or unix)()
  local ok, err = srv:bind(tmp)
  if not ok then exit(1, "cannot listen on %s: %s", path, tostring(err)) end
  if not spawn.run("chmod 600 " .. spawn.quote(tmp)) or not os.rename(tmp, path) then
    os.remove(tmp)
    exit(1, "cannot listen on %s: the socket could not be made private", path)
  end
  srv:listen(16)
  srv:settimeout(0)
  ctx.cleanups[#ctx.cleanups + 1] = function() srv:close() os.remove(path) end
  return srv
end

local function serve(ctx, srv, m, fb, opts, seconds)
  local socket = require "socket"
  local deadline = core.clock.now() + seconds
  local clients = {}
  while core.clock.now() < deadline do
    cli.check_interrupt()
    local c = srv and srv:accept()
    if c then
      c:settimeout(0)
      clients[#clients + 1] = { sock = c, buf = "" }
    end
    local active = false
    for i = #clients, 1, -1 do
      local cl = clients[i]
      local data, err, partial = cl.sock:receive(8192)
      data = data or partial
      if data and data ~= "" then
        active = true
        cl.buf = cl.buf .. data
        if #cl.buf > 1048576 then err = "closed" end -- a line that never ends
        while true do
          local line, rest = cl.buf:match("^([^\n]*)\n(.*)$")
          if not line then break end
          cl.buf = rest
          local ev = event_of(line)
          local reply
          if not ev then
            reply = "error bad_event"
          else
            local res, aerr = m:apply(fb, ev, { budget = opts.budget })
            if res and res.ignored then
              reply = "ignored " .. res.ignored:gsub("\n", " ")
            elseif res then
              reply = ("ok %d %d"):format(res.written, res.gone)
              if res.written + res.gone > 0 then
                ctx:note("%s %s %s: %d written, %d gone", os.date("%H:%M:%S"), tostring(ev.name),
                  tostring(ev.object_id), res.written, res.gone)
              end
            else
              reply = "error " .. aerr.code
              ctx:note("%s %s: %s", tostring(ev.name), tostring(ev.object_id), cli.describe_error(aerr))
            end
          end
          cl.sock:send(reply .. "\n")
        end
      end
      if err == "closed" then
        cl.sock:close()
        table.remove(clients, i)
      end
    end
    if not active then socket.sleep(srv and 0.05 or 0.25) end
  end
  for _, cl in ipairs(clients) do cl.sock:close() end
end

-- The cluster file of --daemon: JSON, private (0600), since it holds the database's and Redis'
-- credentials: {"postgres": conninfo, "redis": {host, port, tls, username, password, sentinel},
-- "prefix": the token keyspace's (default "freshbooks:"), "stream": the events' key, "group"}.
local function cluster(ctx, path)
  if not ctx.cfg.check_private(path, "the cluster file") then exit(2, "no cluster file at %s", path) end
  local f = io.open(path, "rb")
  local ok, c = pcall(cjson.decode, f and f:read("*a") or "")
  if f then f:close() end
  if not ok or type(c) ~= "table" then exit(2, "%s: not a JSON object", path) end
  for k in pairs(c) do
    if not ({ postgres = true, redis = true, prefix = true, stream = true, group = true })[k] then
      exit(2, "%s: unknown key %q", path, tostring(k))
    end
  end
  if type(c.postgres) ~= "string" or type(c.redis) ~= "table" then
    exit(2, "%s: postgres (a connection string) and redis (connection settings) are required", path)
  end
  return c
end

-- freshbooks sync --daemon --cluster FILE: a sync worker for every connection of the set whose tokens
-- the cluster's Redis keeps (freshbooks.mirror.worker); --status prints each connection's and exits.
local function daemon(ctx)
  local a = ctx.args
  if not a.cluster then exit(2, "--daemon needs --cluster FILE (the database and Redis to serve)") end
  local c = cluster(ctx, a.cluster)
  local s = ctx:credentials(false)
  -- Debian installs lua-redis for Lua 5.1-5.3 only; the same file runs on 5.4
  if not pcall(require, "redis") then package.path = package.path .. ";/usr/share/lua/5.3/?.lua" end
  local freshbooks = require "freshbooks"
  local made, opts = pcall(function()
    local stores = freshbooks.store.redis.keyspace{ redis = c.redis, prefix = c.prefix }
    local conns = freshbooks.connections{ app = { client_id = s.client_id, client_secret = s.client_secret,
      redirect_uri = s.redirect_uri, api_url = s.api_url, auth_url = s.auth_url, cainfo = s.ca_file },
      store = stores }
    local events = require("freshbooks.mirror.stream").new{ redis = c.redis, key = c.stream, group = c.group }
    local opts = { postgres = c.postgres, connections = conns, events = events, interval = a.interval,
      concurrency = a.concurrency, claim_after = a.claim_after, budget = budget(a),
      sync = { parallel = a.parallel, businesses = a.business[1] and a.business or nil,
        resources = a.resource[1] and a.resource or nil },
      log = function(ev)
        if ev.error then ctx:note("%s %s %s: %s", os.date("%H:%M:%S"), ev.type, tostring(ev.connection or ""),
          ev.error) end
        -- each sync's span on the wall clock, to the millisecond (--verbose)
        if a.verbose and (ev.type == "synced" or ev.type == "sync_error") then
          ctx:note("sync %s %.3f %.3f %s", ev.connection, ev.started, ev.finished, ev.error or "ok")
        elseif a.verbose and ev.type == "sync" then
          ctx:note("sync %s %.3f start", ev.connection, ev.started)
        end
      end }
    return opts
  end)
  if not made then exit(2, "%s", text.clean(tostring(opts))) end
  local w, werr
  -- a worker starting while PostgreSQL is down (a restart, a failover) waits for it: 1 s, doubling to 30
  local delay = 1
  while true do
    w, werr = require("freshbooks.mirror.worker").new(opts)
    if w or a.status or werr.code ~= "pg_connection" then break end
    ctx:note("%s PostgreSQL: %s; trying again in %d s", os.date("%H:%M:%S"), cli.describe_error(werr), delay)
    core.clock.sleep(delay)
    cli.check_interrupt()
    delay = math.min(delay * 2, 30)
  end
  if not w then cli.fail(werr, "sync --daemon") end
  ctx.cleanups[#ctx.cleanups + 1] = function() w:close() end
  if a.status then
    local list, err = w:statuses()
    if not list then cli.fail(err, "status") end
    local rows = {}
    for i, st in ipairs(list) do
      local null = cjson.null
      rows[i] = { st.connection, st.synced_at and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(st.synced_at)) or null,
        st.lag and math.floor(st.lag) or null, st.pending, st.last_error or null, st.worker or null }
    end
    local out = ctx:output(nil)
    text.rows(out, a.json and "json" or "table", { "connection", "synced_at", "lag_s", "pending", "last_error",
      "worker" }, rows)
    out.commit()
    return
  end
  ctx:note("serving the connections of %s as worker %s", a.cluster, w.name)
  local last_metrics = -math.huge
  w:run{ stop = function() return core.signal.interrupted() end, after = function(self)
    if a.metrics and core.clock.now() - last_metrics >= 1 then
      last_metrics = core.clock.now()
      core.fs.write_atomic(a.metrics, self:metrics(), 420)
    end
  end }
  cli.check_interrupt()
end

function M.sync(ctx)
  local a = ctx.args
  if a.daemon then return daemon(ctx) end
  if a.status or a.cluster or a.metrics or a.concurrency or a.claim_after then
    exit(2, "--cluster, --status, --metrics, --concurrency and --claim-after go with --daemon")
  end
  if a.listen and not a.watch then exit(2, "--listen serves events while --watch runs") end
  local fb = ctx:connected()
  local m, path = open(ctx, false)
  local out = ctx:output(nil)
  local opts = sync_opts(ctx, out)
  local srv = a.listen and listen(ctx, a.listen)
  local first = true
  while true do
    local t0 = core.clock.now()
    local summary, err, partial = m:sync(fb, opts)
    cli.check_interrupt()
    if not summary then
      if not a.watch or first and err.code ~= "rate_limited" then
        if partial and partial.resources and #partial.resources > 0 and not a.json then
          report_summary(ctx, out, partial, core.clock.now() - t0, path)
        end
        if err.code == "sync_in_progress" then exit(1, "%s: another sync is running (its lock is %s-sync.lock)",
          path, path) end
        cli.fail(err, "sync")
      end
      ctx:note("%s sync: %s", os.date("%H:%M:%S"), cli.describe_error(err))
      if err.code == "reauth_required" or err.code == "invalid_grant" then cli.fail(err, "sync") end
      serve(ctx, srv, m, fb, opts, err.retry_after or a.interval)
    else
      if not a.watch or first or a.json or totals(summary).written + totals(summary).gone > 0 then
        report_summary(ctx, out, summary, core.clock.now() - t0, path)
      end
      out.commit()
      if not a.watch then return end
      serve(ctx, srv, m, fb, opts, a.interval)
    end
    first = false
  end
end

-- sql -------------------------------------------------------------------------------------------

function M.sql(ctx)
  local a = ctx.args
  local m = open(ctx, true)
  local res, err = m:query(a.query, a.param, { deadline = a.timeout, max_rows = a.max_rows, null = cjson.null })
  if not res then
    if err.code == "read_only" then
      exit(1, "only statements that read are allowed (the mirror is changed by sync)")
    end
    if err.code == "too_many_rows" then
      exit(1, "more than %d rows: narrow the query or raise --max-rows", a.max_rows)
    end
    if err.code == "sqlite_deadline" then exit(1, "the query ran past %s s (--timeout)", number(a.timeout)) end
    cli.fail(err, "sql")
  end
  local format = a.format or "table"
  local out = ctx:output(a.output, { pager = format == "table" and "hold" or nil, utf8 = true })
  text.rows(out, format, res.columns, res.rows)
  out.commit()
end

-- reports ---------------------------------------------------------------------------------------

function M.billing(ctx, out, a)
  local m = open(ctx, true)
  local list, as_of = require("freshbooks.mirror.reports").billing(m, { as_of = a.as_of, business = a.business })
  if not list then
    if as_of and as_of.code == "unknown_business" then exit(1, "%s", as_of.message) end
    cli.fail(as_of, "report")
  end
  local w = require("freshbooks.report").writer(out, a.format, as_of, out.terminal and out.columns or nil)
  for _, b in ipairs(list) do w.business(b.business, b.acc) end
  w.finish()
end

-- A tabular report (revenue, unbilled, dso) as a table, CSV or JSON.
local function tabular(ctx, out, a, res)
  if #res.rows == 0 and a.format ~= "json" and a.format ~= "csv" then out:write("nothing to report\n")
  else text.rows(out, a.format or "table", res.columns, res.rows) end
  ctx:note("from the mirror, synced %s", M.synced_at or "?")
end

local function run_tabular(name)
  return function(ctx, _, out, a)
    local m = open(ctx, true)
    local st = m:status()
    for _, b in ipairs(st and st.businesses or {}) do
      if not M.synced_at or (b.synced_at or "") > M.synced_at then M.synced_at = b.synced_at end
    end
    local days = a.days and tonumber(a.days)
    local ok, res, err = pcall(require("freshbooks.mirror.reports")[name], m, { as_of = a.as_of, business = a.business,
      from = a.from, to = a.to, basis = a.basis, days = days })
    if not ok then exit(2, "%s", tostring(res):gsub("^.-freshbooks%.mirror%.reports: [%w_]+: ", "")) end
    if not res then
      if err.code == "unknown_business" then exit(1, "%s", err.message) end
      cli.fail(err, "report")
    end
    tabular(ctx, out, a, res)
  end
end
M.revenue, M.unbilled, M.dso = run_tabular("revenue"), run_tabular("unbilled_time"), run_tabular("dso")

return M
