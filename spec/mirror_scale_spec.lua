-- The mirror at scale, end to end and under faults: 20 connections (FB_SLOW=1: 60), two nginx of two
-- workers each appending webhook deliveries to a Redis stream (AOF), three `freshbooks sync --daemon`
-- workers syncing into one PostgreSQL and applying the stream's events. Faults: a worker SIGKILLed in
-- the middle of a sync, another in the middle of the events, PostgreSQL restarted, Redis restarted
-- (persistence), every delivery sent once or twice and in shuffled order. At the end every
-- connection's mirror equals the sandbox, no event is pending or lost (the workers' interval is an
-- hour: only the events can have brought the changes), and no connection was synced by two workers
-- at once (each sync's span, from the workers' own lines). One summary line says what it cost.
local cjson = require "cjson"
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"
local C = require "support.cli"
local H = require "support.fbtest"
local M = require "support.mirror"
local PG = require "support.postgres"
local R = require "support.redis"

local q = sandbox.shell_quote
local unpack = table.unpack or unpack
local SLOW = os.getenv("FB_SLOW") == "1"
local N = SLOW and 60 or 20
local CHANGES = SLOW and 30 or 6
local BIZ = { M.businesses[1] }
local KEY = "freshbooks:{mirror}:events"
-- The resources kept by default: what the events change and what copies their fields (a client's
-- organization is in its invoices, estimates, credit notes and profiles); FB_SLOW=1: all of them.
local RESOURCES = not SLOW and { "clients", "invoices", "payments", "estimates", "credit_notes", "invoice_profiles" }
  or nil

-- make check's budget: by default under Lua 5.4 only (the workers' Lua is the same on every interpreter,
-- and spec/stream_spec.lua runs the stream and the worker under LuaJIT too); FB_SLOW=1 under both.
if rawget(_G, "jit") and not SLOW then
  describe("the mirror at scale", function()
    it("runs under Lua 5.4 (FB_SLOW=1: under LuaJIT too)", function() pending("Lua 5.4 runs it") end)
  end)
  return
end

describe("the mirror at scale", function()
  local pg, srv, sb, w, fb, file, session, client
  local apps, daemons, killed = {}, {}, {}
  local ids = {}
  for i = 1, N do ids[i] = ("conn%02d"):format(i) end

  setup(function()
    R.client_module()
    pg = PG.start()
    srv = R.start{ aof = true }
    sb = sandbox.start{ invoices = 12, seed = 2626 }
    w = C.world(sb)
    local stores = freshbooks.store.redis.keyspace{ redis = { host = "127.0.0.1", port = srv.port },
      prefix = "freshbooks:" }
    for _, id in ipairs(ids) do assert(stores(id).save(sb:token{ user = "alice" })) end
    fb = H.session(sb)
    file = w.dir .. "/cluster.json"
    C.write(file, cjson.encode{ postgres = pg.conninfo, redis = { host = "127.0.0.1", port = srv.port } }, "600")
    session = assert(require("freshbooks.mirror.postgres").session(pg.conninfo))
    for i = 1, 2 do
      apps[i] = testserver.start{ workers = 2, http = testserver.lua_paths { "build/deps/lua" },
        locations = ("set $redis_port %d;\n"):format(srv.port) .. [[
          location = /hook {
            content_by_lua_block {
              ngx.req.read_body()
              -- (the app verifies the delivery's signature first: examples/openresty/app.lua)
              local fields = require("freshbooks.webhook").parse(ngx.req.get_body_data() or "")
              local events = require("freshbooks.mirror.stream").new{ timeout = 1,
                redis = { host = "127.0.0.1", port = tonumber(ngx.var.redis_port) } }
              local id, err = events:push(ngx.var.arg_c, fields)
              ngx.status = id and 200 or 503
              ngx.say(id or err.code)
            }
          }
        ]] }
    end
    client = core.http.client{ timeout = 20 }
  end)
  teardown(function()
    for _, d in ipairs(daemons) do d:signal("KILL") end
    if client then client:close() end
    for _, a in ipairs(apps) do a.stop() end
    if session then session:close() end
    if w then w:cleanup() end
    if sb then sb:stop() end
    if srv then srv:stop() end
    if pg then pg:stop() end
  end)

  local function daemon()
    local i = #daemons + 1
    daemons[i] = w:spawn(("sync --daemon --cluster %s --interval 3600 --no-budget --business aBcD1 --parallel 2"
      .. " --concurrency 3 --claim-after 2 -v --metrics %s%s"):format(q(file), q(w.dir .. "/m" .. i .. ".prom"),
      RESOURCES and (" --resource " .. table.concat(RESOURCES, " --resource ")) or ""))
    daemons[i].index = i
    return daemons[i]
  end
  local function kill(d)
    d:signal("KILL")
    d:wait(10)
    killed[d] = core.clock.time()
  end
  -- each sync's span per connection: {start, finish, worker} (a killed worker's open sync ends at the kill)
  local function spans()
    local out = {}
    for _, d in ipairs(daemons) do
      local open = {}
      for line in d:stderr():gmatch("[^\n]+") do
        local id, a, b = line:match("sync (%S+) ([%d.]+) (%S+)")
        if b == "start" then
          open[id] = tonumber(a)
        elseif id then
          out[id] = out[id] or {}
          table.insert(out[id], { tonumber(a), tonumber(b), d.index })
          open[id] = nil
        end
      end
      for id, a in pairs(open) do
        out[id] = out[id] or {}
        table.insert(out[id], { a, killed[d] or core.clock.time(), d.index, open = true })
      end
    end
    return out
  end
  local function statuses()
    local flat = srv:cli("HGETALL", KEY .. ":status")
    local st, key = {}, nil
    for line in flat:gmatch("[^\n]+") do
      if key then st[key] = cjson.decode(line) key = nil else key = line end
    end
    return st
  end
  local function pending()
    local n = 0
    for v in srv:cli("HVALS", KEY .. ":pending"):gmatch("%-?%d+") do n = n + tonumber(v) end
    return n
  end
  local function metric(name)
    local total, worst = 0, 0
    for i = 1, #daemons do
      for v in C.read(w.dir .. "/m" .. i .. ".prom"):gmatch("freshbooks_mirror_" .. name .. " ([%d.]+)") do
        total, worst = total + tonumber(v), math.max(worst, tonumber(v))
      end
    end
    return total, worst
  end

  it("ends with every mirror equal to the sandbox, no event lost, no connection synced twice at once", function()
    local t0 = core.clock.now()
    local faults = {}
    for _ = 1, 3 do daemon() end
    -- a worker killed in the middle of a first sync; a new one takes its place
    assert(C.until_true(function() return daemons[1]:stderr():match("sync %S+ [%d.]+ start\n[^\n]*$") end, 30),
      "worker 1 never started a sync: " .. daemons[1]:stderr())
    kill(daemons[1])
    local mid = false
    for _, list in pairs(spans()) do for _, sp in ipairs(list) do mid = mid or (sp.open and sp[3] == 1) end end
    assert.is_true(mid, "worker 1 was not killed in a sync")
    faults[#faults + 1] = "worker SIGKILL mid-sync"
    daemon()
    assert(C.until_true(function()
      local st = statuses()
      for _, id in ipairs(ids) do if not (st[id] and st[id].synced_at) then return false end end
      return true
    end, 60), "not every connection was synced")
    -- the changes, and a delivery of each to every connection: some twice, all shuffled
    local rnd = M.prng(M.seed)
    print(("\n# mirror_scale_spec: FB_SEED=%d"):format(M.seed))
    local acct = fb:account("aBcD1")
    local changed = {}
    for i = 1, CHANGES do
      if i % 2 == 0 then
        local id = 10000 + i
        assert(acct.clients:update(id, { organization = "Scaled " .. i }))
        changed[#changed + 1] = { "client.update", id }
      else
        local list = assert(acct.invoices:list{ per_page = CHANGES })
        local inv = list[(i % #list) + 1]
        assert(acct.invoices:update(inv.id, { notes = "scaled " .. i }))
        changed[#changed + 1] = { "invoice.update", inv.id }
      end
    end
    local deliveries = {}
    for _, id in ipairs(ids) do
      for _, ch in ipairs(changed) do
        for _ = 1, (rnd(1, 10) <= 3) and 2 or 1 do deliveries[#deliveries + 1] = { id, ch[1], ch[2] } end
      end
    end
    for i = #deliveries, 2, -1 do
      local j = rnd(1, i)
      deliveries[i], deliveries[j] = deliveries[j], deliveries[i]
    end
    local since = H.last_seq(sb)
    local sent, refused = 0, {}
    local function send(list)
      local reqs = {}
      for i, d in ipairs(list) do
        reqs[i] = { method = "POST", url = apps[i % 2 + 1].url .. "/hook?c=" .. d[1],
          headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
          body = ("name=%s&object_id=%s&account_id=aBcD1&business_id=1000001&identity_id=1001"):format(d[2], d[3]) }
      end
      for i, r in ipairs(client:batch(reqs, { concurrency = 8 })) do
        if r.status == 200 then sent = sent + 1 else refused[#refused + 1] = list[i] end
      end
    end
    local chunk = math.ceil(#deliveries / 4)
    local function part(k) return { unpack(deliveries, (k - 1) * chunk + 1, math.min(#deliveries, k * chunk)) } end
    send(part(1))
    -- a worker killed while it applies events (its unacknowledged batch is claimed by the others)
    assert(C.until_true(function() return pending() < #deliveries and true end, 10))
    kill(daemons[2])
    faults[#faults + 1] = "worker SIGKILL mid-event"
    daemon()
    send(part(2))
    pg:restart()
    faults[#faults + 1] = "PostgreSQL restart"
    send(part(3))
    srv:restart()
    faults[#faults + 1] = "Redis restart (AOF)"
    send(part(4))
    -- what nginx could not append (503: Redis was down) FreshBooks delivers again
    local again = refused
    refused = {}
    if again[1] then send(again) end
    assert.same({}, refused)
    faults[#faults + 1] = ("%d deliveries duplicated, all shuffled"):format(#deliveries - #ids * #changed)
    assert(C.until_true(function() return pending() == 0 and srv:cli("XLEN", KEY) == "0" end, 60),
      ("events still pending: %d"):format(pending()))
    -- every mirror equals FreshBooks
    local truth = M.truth(fb, BIZ)
    if RESOURCES then -- (the others are neither kept nor compared)
      local kept = {}
      for _, r in ipairs(RESOURCES) do kept[r] = true end
      for _, per in pairs(truth) do for name in pairs(per) do if not kept[name] then per[name] = {} end end end
    end
    for _, id in ipairs(ids) do
      local m = assert(require("freshbooks.mirror").open{ postgres = session, connection = id })
      local diff = M.diff(m, truth)
      assert.equals(0, #diff, id .. ": " .. table.concat(diff, "\n", 1, math.min(#diff, 10)))
    end
    -- no connection synced by two workers at once
    local all = spans()
    local syncs = 0
    for _, id in ipairs(ids) do
      local list = all[id] or {}
      table.sort(list, function(a, b) return a[1] < b[1] end)
      for i = 2, #list do
        assert.is_true(list[i][1] >= list[i - 1][2] - 0.001, ("%s synced by workers %d and %d at once")
          :format(id, list[i - 1][3], list[i][3]))
      end
      syncs = syncs + #list
    end
    local requests = M.requests(sb, since)
    -- what an operator sees: --status (every connection synced, nothing pending, no error) and the
    -- metrics a scraper reads
    local code, out, err = w:run("sync --daemon --status --json --cluster " .. q(file))
    assert.equals(0, code, err)
    local seen = 0
    for _, r in ipairs(cjson.decode(out)) do
      seen = seen + 1
      assert.equals(0, r.pending, r.connection)
      assert.equals(cjson.null, r.last_error, r.connection)
      assert.is_true(r.lag_s >= 0 and r.lag_s < 300, r.connection)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT", r.synced_at)
    end
    assert.equals(N, seen)
    code, out = w:run("sync --daemon --status --cluster " .. q(file))
    assert.equals(0, code)
    assert.matches("conn01", out, 1, true)
    -- (the file is rewritten every second: it may show the moment before the last events were applied)
    local prom
    assert(C.until_true(function()
      prom = C.read(w.dir .. "/m" .. #daemons .. ".prom")
      return prom:find('freshbooks_mirror_connection_pending_events{connection="conn01"} 0\n', 1, true)
    end, 10), "the metrics file still shows pending events: " .. tostring(prom) .. daemons[#daemons]:stderr())
    assert.matches('freshbooks_mirror_connection_failing{connection="conn01"} 0\n', prom)
    assert.matches('# TYPE freshbooks_mirror_event_lag_seconds summary\n', prom)
    core.clock.sleep(1.2) -- (every live worker's metrics file rewritten since the last event)
    local applied = metric("events_total{[^}]*}")
    local _, p50 = metric('event_lag_seconds{[^}]*quantile="0.5"}')
    local _, p99 = metric('event_lag_seconds{[^}]*quantile="0.99"}')
    print(("\n# mirror_scale: %d connections, %d deliveries (%d events, %d acknowledged in the workers' metrics),"
      .. " lag p50 %.3f s p99 %.3f s (worst worker), %.2f requests per changed record, %d syncs, %.1f s; faults: %s")
      :format(N, #deliveries, #ids * #changed, applied, p50, p99, requests / (#ids * #changed), syncs,
        core.clock.now() - t0, table.concat(faults, ", ")))
    -- Ctrl-C stops a worker between steps (exit 130)
    daemons[3]:signal("INT")
    assert.equals(130, (daemons[3]:wait(10)))
  end)

  it("refuses a cluster file others may read, and --daemon's options without --daemon", function()
    local open_file = w.dir .. "/open.json"
    C.write(open_file, cjson.encode{ postgres = pg.conninfo, redis = { host = "127.0.0.1", port = srv.port } }, "644")
    local code, _, err = w:run("sync --daemon --status --cluster " .. q(open_file))
    assert.equals(1, code, err)
    assert.matches("open.json can be read or changed by other users", err, 1, true)
    code, _, err = w:run("sync --status")
    assert.equals(2, code)
    assert.matches("go with --daemon", err, 1, true)
    code, _, err = w:run("sync --daemon")
    assert.equals(2, code)
    assert.matches("--cluster", err, 1, true)
  end)
end)
