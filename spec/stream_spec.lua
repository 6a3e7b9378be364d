-- Webhook events through a Redis stream into the PostgreSQL mirror, and sync workers for many
-- connections (freshbooks.mirror.stream, freshbooks.mirror.worker), with a real nginx, Redis (AOF) and
-- PostgreSQL: the app appends deliveries without blocking and without calling FreshBooks; workers
-- apply them under the connection's lease and acknowledge after the commit; a consumer killed before
-- its acknowledgement has its events claimed; duplicates and reordering cost nothing but reads; one
-- worker per connection, a concurrency limit across workers; Redis and PostgreSQL restarts lose
-- nothing; status and metrics per connection.
local cjson = require "cjson"
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"
local H = require "support.fbtest"
local M = require "support.mirror"
local PG = require "support.postgres"
local R = require "support.redis"
local stream = require "freshbooks.mirror.stream"
local worker = require "freshbooks.mirror.worker"

local BIZ = { M.businesses[1] }
local SYNC = { businesses = { "aBcD1" }, parallel = 4 }

describe("webhook events through a Redis stream and sync workers", function()
  local pg, srv, sb, app, client, conns, fb, key
  local workers = {}
  local n = 0

  local function new_key()
    n = n + 1
    key = "fb:{t" .. n .. "}:events"
    return key
  end
  local function events() return stream.new{ redis = { host = "127.0.0.1", port = srv.port }, key = key } end
  local function new_worker(o)
    local opts = { postgres = pg.conninfo, connections = conns, events = events(), interval = 3600,
      budget = false, sync = SYNC, block = 0.05, claim_after = 0.5 }
    for k, v in pairs(o or {}) do opts[k] = v end
    local w = assert(worker.new(opts))
    workers[#workers + 1] = w
    return w
  end
  local function mirror_of(w, id) return assert(w:mirror(id)) end

  setup(function()
    R.client_module() -- (lua-redis's path under Lua 5.4)
    pg = PG.start()
    srv = R.start{ aof = true }
    sb = sandbox.start{ invoices = 40, seed = 26 }
    local stores = freshbooks.store.redis.keyspace{ redis = { host = "127.0.0.1", port = srv.port },
      prefix = "fb:conns:" }
    for _, id in ipairs { "c1", "c2", "c3" } do assert(stores(id).save(sb:token{ user = "alice" })) end
    -- c4: a grant FreshBooks no longer knows (revoked): its syncs fail with reauth_required
    local revoked = sb:token{ user = "alice" }
    revoked.access_token, revoked.refresh_token = "revoked-access-token", "revoked-refresh-token"
    assert(stores("c4").save(revoked))
    conns = freshbooks.connections{ app = H.opts(sb, { retry = false }), store = stores }
    fb = H.session(sb)
    app = testserver.start{
      http = testserver.lua_paths { "build/deps/lua" },
      locations = ("set $redis_port %d;\n"):format(srv.port) .. [[
        location = /hook {
          content_by_lua_block {
            ngx.req.read_body()
            -- (the app verifies the delivery's signature first: examples/openresty/app.lua)
            local fields = require("freshbooks.webhook").parse(ngx.req.get_body_data() or "")
            local events = require("freshbooks.mirror.stream").new{ key = ngx.unescape_uri(ngx.var.arg_key),
              timeout = 0.5, redis = { host = "127.0.0.1", port = tonumber(ngx.var.redis_port) } }
            local id, err = events:push(ngx.var.arg_c, fields)
            ngx.update_time()
            ngx.status = id and 200 or 503
            ngx.say(require("cjson").encode{ id = id, code = err and err.code, at = ngx.now() })
          }
        }
        location = /ping {
          content_by_lua_block { ngx.update_time(); ngx.say(require("cjson").encode{ at = ngx.now() }) }
        }
      ]],
    }
    client = core.http.client{ timeout = 20 }
  end)
  teardown(function()
    for _, w in ipairs(workers) do pcall(w.close, w) end
    if client then client:close() end
    if app then app.stop() end
    if sb then sb:stop() end
    if srv then srv:stop() end
    if pg then pg:stop() end
  end)

  local function delivery(c, name, id)
    return { method = "POST", url = app.url .. "/hook?c=" .. c .. "&key=" .. core.codec.urlencode(key),
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
      body = ("name=%s&object_id=%s&account_id=aBcD1&business_id=1000001&identity_id=1001"):format(name, id) }
  end
  local function deliver(c, name, id)
    local status, _, body = client:request(delivery(c, name, id))
    assert.equals(200, status, body)
    return cjson.decode(body)
  end
  local function drain(w, rounds)
    local total = 0
    for _ = 1, rounds or 20 do
      local got = assert(w:drain(0.05))
      total = total + got
      if got == 0 and next(assert(w.events:pending())) == nil then break end
    end
    return total
  end

  it("appends deliveries from nginx; a worker applies them after one read per object and acknowledges", function()
    new_key()
    local w = new_worker()
    assert(w:sync_connection("c1", true))
    M.assert_equal(mirror_of(w, "c1"), fb, BIZ, "first sync")
    local acct = fb:account("aBcD1")
    for i = 1, 4 do assert(acct.clients:update(10000 + i, { organization = "Streamed " .. i })) end
    local before, counted = H.last_seq(sb), w.counters.requests
    -- each object delivered twice, out of order; nothing reaches FreshBooks from nginx
    for _, i in ipairs { 3, 1, 4, 2, 1, 3, 2, 4 } do assert.truthy(deliver("c1", "client.update", 10000 + i).id) end
    assert.equals(0, (M.requests(sb, before)))
    assert.same({ c1 = 8 }, assert(w.events:pending()))
    assert.equals(8, drain(w))
    assert.equals(4, w.counters.events_coalesced)
    -- the four clients read together, in one request (a hundred a request), and the records that copy a
    -- client's fields refreshed once for them all, as the worker counted
    local spent, by = M.requests(sb, before)
    assert.equals(1, by["/accounting/account/{account_id}/users/clients"], cjson.encode(by))
    assert.equals(w.counters.requests - counted, spent)
    for route, count in pairs(by) do assert.is_true(count <= 2, route .. ": " .. count) end
    M.assert_equal(mirror_of(w, "c1"), fb, BIZ, "after the events")
    assert.same({}, assert(w.events:pending()))
    assert.equals("0", srv:cli("XLEN", key))
    assert.equals("0", (srv:cli("XPENDING", key, "freshbooks-mirror"):match("^%d+")))
    local p50, p99, count = w:lag()
    assert.equals(8, count)
    assert.is_true(p50 > 0 and p99 >= p50 and p99 < 30, p50 .. " " .. p99)
  end)

  it("applies a batch that fails event by event: an object that keeps failing holds back no other", function()
    new_key()
    local w = new_worker()
    local m = mirror_of(w, "c1")
    local item = assert(m:query("SELECT id FROM items WHERE business_id = 1000001 ORDER BY id LIMIT 1")).rows[1][1]
    local acct = fb:account("aBcD1")
    for i = 11, 12 do assert(acct.clients:update(10000 + i, { organization = "Held back? " .. i })) end
    sb:admin("POST", "/_sandbox/faults", { route = "/items/items", fault = "500", times = 1000 })
    finally(function() sb:admin("DELETE", "/_sandbox/faults") end)
    for _, d in ipairs { { "client.update", 10011 }, { "item.update", item }, { "client.update", 10012 } } do
      assert.truthy(deliver("c1", d[1], d[2]).id)
    end
    assert.equals(2, assert(w:drain(0.05)))
    assert.equals(1, w.counters.events_failed)
    assert.same({ c1 = 1 }, assert(w.events:pending()))
    assert.equals("Held back? 12", assert(m:query("SELECT organization FROM clients WHERE business_id = 1000001"
      .. " AND id = 10012")).rows[1][1])
    assert.equals("server_error", assert(w:status("c1")).last_error)
    sb:admin("DELETE", "/_sandbox/faults")
    assert.equals(1, drain(w, 40)) -- claimed once idle, applied, and the connection no longer failing
    assert.is_nil(assert(w:status("c1")).last_error)
    M.assert_equal(m, fb, BIZ, "after the held-back event")
  end)

  it("answers deliveries and pings while Redis does not answer (503 within the timeout), then appends", function()
    new_key()
    srv:pause()
    local paused = core.clock.now()
    finally(function() srv:resume() end)
    local results = client:batch({ delivery("c2", "client.update", 10001),
      { method = "GET", url = app.url .. "/ping" } }, { concurrency = 2 })
    assert.equals(503, results[1].status)
    assert.equals("store_unavailable", cjson.decode(results[1].body).code)
    assert.equals(200, results[2].status)
    local ping = cjson.decode(results[2].body).at
    assert.is_true(ping < cjson.decode(results[1].body).at, "the ping waited for the delivery")
    assert.is_true(core.clock.now() - paused < 5)
    srv:resume()
    assert.truthy(deliver("c2", "client.update", 10001).id)
  end)

  it("claims the events of a consumer killed before its acknowledgement (XAUTOCLAIM)", function()
    new_key()
    local w = new_worker()
    assert(w:sync_connection("c2", true))
    local acct = fb:account("aBcD1")
    for i = 5, 7 do
      assert(acct.clients:update(10000 + i, { organization = "Claimed " .. i }))
      assert.truthy(deliver("c2", "client.update", 10000 + i).id)
    end
    local out = H.tmpdir() .. "/reader.out"
    finally(function() H.rmdir(out:match("^(.*)/")) end)
    local pid = tonumber(io.popen(("spec/env %s %s spec/support/stream_reader.lua %d %s doomed > %s 2>&1 & echo $!")
      :format(H.lua, H.lua, srv.port, sandbox.shell_quote(key), sandbox.shell_quote(out))):read("*l"))
    R.register(pid, true)
    local deadline = core.clock.now() + 20
    while not (H.read(out) or ""):find("read 3", 1, true) and core.clock.now() < deadline do core.clock.sleep(0.02) end
    assert.matches("read 3", H.read(out) or "")
    os.execute("kill -KILL " .. pid)
    R.register(pid, false)
    -- the batch is the dead consumer's: nobody else reads it until it has been idle claim_after
    assert.matches("^3", srv:cli("XPENDING", key, "freshbooks-mirror"))
    assert.equals(3, drain(w, 40))
    M.assert_equal(mirror_of(w, "c2"), fb, BIZ, "after the claim")
    assert.equals("0", (srv:cli("XPENDING", key, "freshbooks-mirror"):match("^%d+")))
  end)

  it("syncs each connection in one worker at a time, within the concurrency limit, and frees a dead one's", function()
    new_key()
    local w1, w2 = new_worker{ concurrency = 1, name = "w1" }, new_worker{ concurrency = 1, name = "w2" }
    local held = assert(mirror_of(w1, "c3").backend:lease("sync", 0))
    local ok, err = w2:sync_connection("c3", true)
    assert.is_nil(ok)
    assert.equals("sync_in_progress", err.code)
    -- events for a connection another worker holds stay pending, and are applied once it is free
    assert.truthy(deliver("c3", "client.update", 10001).id)
    assert.equals(0, drain(w2, 1))
    assert.equals(1, w2.counters.events_deferred)
    held.release()
    -- the one slot taken by w1: w2 syncs nothing meanwhile
    local slot = assert(w1.slots:lease("slot1", 0))
    ok, err = w2:sync_connection("c3", true)
    assert.is_nil(ok)
    assert.equals("concurrency", err.code)
    slot.release()
    assert(w2:sync_connection("c3", true))
    -- a holder that dies: its session ends, and the lease with it
    local out = H.tmpdir() .. "/holder.out"
    finally(function() H.rmdir(out:match("^(.*)/")) end)
    local f = assert(io.open(out .. ".lua", "w"))
    f:write(([[local m = assert(require("freshbooks.mirror").open{ postgres = %q, connection = "c3" })
      assert(m.backend:lease("sync", 0)) print("held") io.stdout:flush() require("freshbooks.core").clock.sleep(60)]])
      :format(pg.conninfo))
    f:close()
    local pid = tonumber(io.popen(("spec/env %s %s %s > %s 2>&1 & echo $!"):format(H.lua, H.lua,
      sandbox.shell_quote(out .. ".lua"), sandbox.shell_quote(out))):read("*l"))
    R.register(pid, true)
    local deadline = core.clock.now() + 20
    while not (H.read(out) or ""):find("held", 1, true) and core.clock.now() < deadline do core.clock.sleep(0.02) end
    assert.equals("sync_in_progress", select(2, w1:sync_connection("c3", true)).code)
    os.execute("kill -KILL " .. pid)
    R.register(pid, false)
    deadline = core.clock.now() + 10
    local synced
    repeat
      synced = w1:sync_connection("c3", true)
      if not synced then core.clock.sleep(0.05) end
    until synced or core.clock.now() > deadline
    assert.truthy(synced, "the dead holder's lease was not freed")
    assert.equals(1, drain(w1, 40)) -- the deferred event, claimed
  end)

  it("serves every connection of the set; status, metrics; Redis and PostgreSQL restarts lose nothing", function()
    new_key()
    local w = new_worker{ interval = 0.5 }
    -- every connection due once: four steps try all four (c4's grant is revoked)
    local synced = {}
    for _ = 1, 4 do
      local res = assert(w:step(0))
      if res.synced then synced[res.synced] = res.error and res.error.code or true end
    end
    assert.same({ c1 = true, c2 = true, c3 = true, c4 = "reauth_required" }, synced)
    local acct = fb:account("aBcD1")
    assert(acct.clients:update(10008, { organization = "Persisted" }))
    assert.truthy(deliver("c1", "client.update", 10008).id)
    srv:restart() -- AOF (appendfsync always): the stream, its group and the pending counts survive
    assert.same({ c1 = 1 }, assert(w.events:pending()))
    pg:restart()
    assert.equals(1, drain(w, 40))
    M.assert_equal(mirror_of(w, "c1"), fb, BIZ, "after the restarts")
    -- a connection whose grant is gone: its status says so, the others go on
    local ok, err = w:sync_connection("c4", true)
    assert.is_nil(ok)
    assert.equals("reauth_required", err.code)
    local st = assert(w:status("c4"))
    assert.equals(err.code, st.last_error)
    assert.equals(0, st.pending)
    local good = assert(w:status("c1"))
    assert.is_nil(good.last_error)
    assert.is_true(good.lag >= 0 and good.lag < 30)
    assert.equals(2, #good.businesses)
    local text = w:metrics()
    assert.matches('freshbooks_mirror_events_total{worker="[^"]+"} 1\n', text)
    assert.matches('freshbooks_mirror_connection_failing{connection="c4"} 1\n', text)
    assert.matches('freshbooks_mirror_connection_failing{connection="c1"} 0\n', text)
    assert.matches('freshbooks_mirror_connection_pending_events{connection="c1"} 0\n', text)
    assert.matches('freshbooks_mirror_event_lag_seconds{worker="[^"]+",quantile="0.99"} %d', text)
  end)
end)
