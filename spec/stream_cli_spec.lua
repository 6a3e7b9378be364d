-- `freshbooks sync --daemon`: two sync workers (the real command, as subprocesses) serving every
-- connection whose tokens a Redis keyspace keeps, into one PostgreSQL mirror, with the webhook events
-- of the cluster's stream; `--status` and `--metrics` say how each connection stands.
local cjson = require "cjson"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local C = require "support.cli"
local H = require "support.fbtest"
local M = require "support.mirror"
local PG = require "support.postgres"
local R = require "support.redis"

local q = sandbox.shell_quote
local IDS = { "acme", "globex", "initech" }

describe("freshbooks sync --daemon", function()
  local pg, srv, sb, w, fb, file, session
  local daemons = {}

  setup(function()
    R.client_module()
    pg = PG.start()
    srv = R.start{ aof = true }
    sb = sandbox.start{ invoices = 30, seed = 27 }
    w = C.world(sb)
    local stores = freshbooks.store.redis.keyspace{ redis = { host = "127.0.0.1", port = srv.port },
      prefix = "freshbooks:" }
    for _, id in ipairs(IDS) do assert(stores(id).save(sb:token{ user = "alice" })) end
    fb = H.session(sb)
    file = w.dir .. "/cluster.json"
    C.write(file, cjson.encode{ postgres = pg.conninfo, redis = { host = "127.0.0.1", port = srv.port } }, "600")
    session = assert(require("freshbooks.mirror.postgres").session(pg.conninfo))
  end)
  teardown(function()
    for _, d in ipairs(daemons) do d:signal("KILL") end
    if session then session:close() end
    if w then w:cleanup() end
    if sb then sb:stop() end
    if srv then srv:stop() end
    if pg then pg:stop() end
  end)

  local function status()
    local code, out, err = w:run("sync --daemon --status --json --cluster " .. q(file))
    assert.equals(0, code, err)
    local rows = cjson.decode(out)
    local by = {}
    for _, r in ipairs(rows) do by[r.connection] = r end
    return by
  end
  local function organization(id, client)
    local m = assert(require("freshbooks.mirror").open{ postgres = session, connection = id })
    local row = m:query("SELECT organization FROM clients WHERE business_id = 1000001 AND id = ?", { client })
    return row and row.rows[1] and row.rows[1][1]
  end

  it("two workers sync each connection once, apply the stream's events, and report status and metrics", function()
    for i = 1, 2 do
      daemons[i] = w:spawn(("sync --daemon --cluster %s --interval 3600 --no-budget --business aBcD1 --metrics %s")
        :format(q(file), q(w.dir .. "/m" .. i .. ".prom")))
    end
    assert(C.until_true(function()
      local st = status()
      for _, id in ipairs(IDS) do if not (st[id] and st[id].synced_at ~= cjson.null) then return false end end
      return true
    end, 60), "not every connection was synced: " .. daemons[1]:stderr() .. daemons[2]:stderr())
    for _, id in ipairs(IDS) do
      M.assert_equal(assert(require("freshbooks.mirror").open{ postgres = session, connection = id }), fb,
        { M.businesses[1] }, id .. daemons[1]:stderr() .. daemons[2]:stderr())
    end
    -- a delivery appended to the stream reaches the connection's mirror through a worker
    assert(fb:account("aBcD1").clients:update(10003, { organization = "Daemon Co." }))
    local events = require("freshbooks.mirror.stream").new{ redis = { host = "127.0.0.1", port = srv.port } }
    assert(events:push("globex", { name = "client.update", object_id = 10003, account_id = "aBcD1",
      business_id = 1000001 }))
    assert(C.until_true(function() return organization("globex", 10003) == "Daemon Co." end, 20),
      "the event was not applied")
    -- (acknowledged right after the commit that the mirror already shows)
    local function settled()
      return C.until_true(function()
        local st = status()
        for _, id in ipairs(IDS) do if st[id].pending ~= 0 then return false end end
        return true
      end, 10)
    end
    assert(settled(), "events still pending")
    -- one worker killed: the other goes on alone
    daemons[1]:signal("KILL")
    daemons[1]:wait(10)
    assert(fb:account("aBcD1").clients:update(10004, { organization = "Survivor Ltd." }))
    assert(events:push("acme", { name = "client.update", object_id = 10004, account_id = "aBcD1",
      business_id = 1000001 }))
    assert(C.until_true(function() return organization("acme", 10004) == "Survivor Ltd." end, 20),
      "the surviving worker did not apply the event: " .. daemons[2]:stderr())
    events:close()
    assert(settled(), "events still pending")
    local st = status()
    for _, id in ipairs(IDS) do
      assert.equals(cjson.null, st[id].last_error)
      assert.is_true(st[id].lag_s >= 0 and st[id].lag_s < 120)
    end
    -- each connection synced once in all (interval 3600): no connection by two workers
    assert(C.until_true(function() return C.read(w.dir .. "/m2.prom"):find("events_total", 1, true) end, 10))
    local syncs = 0
    for i = 1, 2 do
      syncs = syncs + tonumber(C.read(w.dir .. "/m" .. i .. ".prom"):match("freshbooks_mirror_syncs_total{[^}]*} (%d+)")
        or "0")
    end
    assert.equals(3, syncs)
    assert.matches('freshbooks_mirror_connection_pending_events{connection="acme"} %d', C.read(w.dir .. "/m2.prom"))
    local code, out = w:run("sync --daemon --status --cluster " .. q(file))
    assert.equals(0, code)
    for _, id in ipairs(IDS) do assert.matches(id, out, 1, true) end
    daemons[2]:signal("INT")
    assert.equals(130, (daemons[2]:wait(10))) -- interrupted, between steps
  end)

  it("refuses a cluster file others may read, and --daemon options without --daemon", function()
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
