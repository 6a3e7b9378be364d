-- The mirror in PostgreSQL (Debian's, started here on a free port, run by an unprivileged user): the
-- C core's libpq binding (core.pg) keeps what the mirror stores exact and stops what runs too long; the
-- backend holds many connections in one database, each seeing and changing only its own rows; a sync
-- there equals the sandbox and costs what it costs on SQLite, survives SIGKILL and a PostgreSQL restart,
-- answers the same reports, and one writer per connection holds its lease until its session ends.
local cjson = require "cjson"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local M = require "support.mirror"
local PG = require "support.postgres"
local mirror = require "freshbooks.mirror"
local postgres = require "freshbooks.mirror.postgres"
local reports = require "freshbooks.mirror.reports"

local A = "aBcD1"

describe("PostgreSQL", function()
  local pg, sb, fb, dir, session

  setup(function()
    pg = PG.start()
    sb = sandbox.start{ invoices = 250, seed = 8 }
    fb = H.session(sb)
    dir = H.tmpdir()
    session = assert(postgres.session(pg.conninfo))
  end)
  teardown(function()
    if session then session:close() end
    if sb then sb:stop() end
    if pg then pg:stop() end
    H.rmdir(dir)
  end)

  describe("core.pg", function()
    local db
    before_each(function() db = assert(core.pg.connect(pg.conninfo)) end)
    after_each(function() db:close() end)

    it("round-trips 64-bit integers, exact numerics, NULL, booleans and text", function()
      assert(db:exec("CREATE TEMP TABLE t (a bigint, n numeric, s text, b boolean, f float8)"))
      assert(db:prepare("ins", "INSERT INTO t VALUES ($1, $2, $3, $4, $5)"))
      local big = math.type and math.tointeger(2 ^ 53) + 1 or nil -- beyond a double, on 5.3+
      local rows, changed = db:run("ins", 3000000000, "12345678901234567890.25", "é\1'\"\\", true, 1.5)
      assert.same({}, rows)
      assert.equals(1, changed)
      assert(db:run("ins", big or -3000000000, "42", nil, false, nil))
      assert(db:prepare("sel", "SELECT a, n, s, b, f, sum(a) OVER () FROM t ORDER BY a DESC"))
      rows = assert(db:run("sel"))
      assert.same({ 3000000000, "12345678901234567890.25", "é\1'\"\\", true, 1.5 },
        { rows[big and 2 or 1][1], rows[big and 2 or 1][2], rows[big and 2 or 1][3], rows[big and 2 or 1][4],
          rows[big and 2 or 1][5] })
      local other = rows[big and 1 or 2]
      assert.equals(big or -3000000000, other[1])
      assert.equals(42, other[2]) -- a whole numeric reads as an integer
      assert.is_nil(other[3])
      assert.is_false(other[4])
      if big then assert.equals(3000000000 + big, other[6]) end
      assert.has_error(function() db:run("ins", 1, "1", "a\0b", true, 1) end) -- text holds no zero byte
    end)

    it("fails with stable codes and stays usable; a statement past its deadline is cancelled", function()
      local function code(ok, err) assert.is_nil(ok) return err.code, err.sqlstate end
      assert.same({ "pg", "42601" }, { code(db:exec("SELEC 1")) })
      assert(db:exec("DROP TABLE IF EXISTS pg_spec_u; CREATE TABLE pg_spec_u (k int PRIMARY KEY)"))
      assert(db:exec("INSERT INTO pg_spec_u VALUES (1)"))
      assert.same({ "pg_constraint", "23505" }, { code(db:exec("INSERT INTO pg_spec_u VALUES (1)")) })
      assert(db:exec("BEGIN READ ONLY"))
      assert.equals("read_only", (code(db:exec("INSERT INTO pg_spec_u VALUES (2)"))))
      assert(db:exec("ROLLBACK"))
      db:deadline(0.2)
      local t0 = core.clock.now()
      assert.equals("pg_deadline", (code(db:exec("SELECT pg_sleep(5)"))))
      assert.is_true(core.clock.now() - t0 < 2)
      -- rows that trickle in (each one big enough to be sent as it is made) do not restart the clock
      t0 = core.clock.now()
      assert.equals("pg_deadline", (code(db:query("SELECT pg_sleep(0.05), repeat('x', 20000)"
        .. " FROM generate_series(1, 100)"))))
      assert.is_true(core.clock.now() - t0 < 2)
      db:deadline(nil)
      for _, bad in ipairs{ -1, 0 / 0, -math.huge } do
        assert.has_error(function() db:deadline(bad) end, nil, tostring(bad))
      end
      assert.same({ columns = { "x" }, rows = { { 2 } } }, db:query("SELECT 1 + $1 AS x", { 1 }))
      assert.equals("too_many_rows", (code(db:query("SELECT generate_series(1, 10)", nil, { max_rows = 3 }))))
      assert.has_error(function() db:query("SELECT 1", nil, { max_rows = 0 / 0 }) end)
      assert.same({ { 2 ^ 53 } }, assert(db:query("SELECT $1::float8", { 2 ^ 53 })).rows)
      assert.equals("too_large", (code(db:query("SELECT repeat('x', 1000)", nil, { max_bytes = 100 }))))
      assert.is_true(db:exec("SELECT 1")) -- still usable after each
      db:close()
      db:close()
      assert.has_error(function() db:exec("SELECT 1") end)
    end)

    it("gives up a server that stops answering, even a cancel, at its deadline", function()
      local pid = db:pid()
      db:deadline(0.3)
      os.execute("kill -STOP " .. pid)
      finally(function() os.execute("kill -CONT " .. pid) end)
      local t0 = core.clock.now()
      local ok, err = db:exec("SELECT 1")
      assert.is_nil(ok)
      assert.equals("pg_connection", err.code)
      assert.is_true(core.clock.now() - t0 < 8, "waited " .. (core.clock.now() - t0))
      assert.is_false(db:ok())
      assert.equals("pg_connection", select(2, db:exec("SELECT 1")).code)
    end)

    it("refuses a wrong password and a closed port with codes, never showing the password", function()
      local bad = pg.conninfo:gsub("password=%S+", "password=Wr0ngSecretXyz")
      local none, err = core.pg.connect(bad)
      assert.is_nil(none)
      assert.equals("pg_auth", err.code)
      local s, serr = postgres.session(bad)
      assert.is_nil(s)
      assert.is_nil(tostring(serr):find("Wr0ngSecretXyz", 1, true))
      -- a URI whose password parameter libpq quotes back (a bad escape), with parameters after it
      s, serr = postgres.session("postgresql://mirror@127.0.0.1:1/mirror?password=Wr0ngSecretXyz%zz&sslmode=disable")
      assert.is_nil(s)
      assert.is_nil(tostring(serr):find("Wr0ngSecretXyz", 1, true), tostring(serr))
      none, err = core.pg.connect("host=127.0.0.1 port=1 dbname=x", { timeout = 5 })
      assert.is_nil(none)
      assert.equals("pg_connection", err.code)
    end)
  end)

  describe("the mirror", function()
    local m

    setup(function()
      m = assert(mirror.open{ postgres = session, connection = "alice" })
      assert(m:sync(fb, { budget = false }))
    end)

    it("holds after the first sync exactly what FreshBooks holds, typed as on SQLite", function()
      M.assert_equal(m, fb, M.businesses, "first sync into PostgreSQL")
      local row = assert(m:query("SELECT id, customerid, outstanding_cents, outstanding, due_date, updated FROM"
        .. " invoices WHERE business_id = 1000001 AND id = 3")).rows[1]
      local inv = assert(fb:account(A).invoices:get(3))
      assert.equals(3, row[1])
      assert.equals(inv.customerid, row[2])
      assert.equals(M.cents(inv.outstanding.amount), row[3])
      assert.equals(inv.outstanding.amount, row[4])
      assert.equals(inv.due_date, row[5])
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", row[6])
    end)

    it("keeps many connections in one database, each to its own rows", function()
      local other = assert(mirror.open{ postgres = session, connection = "carol-app" })
      assert(other:sync(fb, { budget = false, businesses = { A }, resources = { "clients" } }))
      local function count(mm) return assert(mm:query("SELECT count(*) FROM clients")).rows[1][1] end
      local all = count(m)
      assert.is_true(count(other) > 0 and count(other) < all)
      -- a write as one connection changes none of another's rows
      assert.is_true(assert(other.backend:run("UPDATE clients SET fname = 'other'")) > 0)
      assert.equals(0, assert(m:query("SELECT count(*) FROM clients WHERE fname = 'other'")).rows[1][1])
      -- SQL through query() cannot change whose rows it sees: it can write nothing, the scope included
      for _, sql in ipairs { "WITH x AS (UPDATE mirror_scope SET connection_id = 'alice' RETURNING 1) SELECT count(*)"
        .. " FROM clients", "SELECT count(*) FROM clients WHERE set_config('x.y', 'z', true) IS NOT NULL AND"
        .. " (SELECT count(*) FROM mirror_scope) >= 0" } do
        local res, qerr = other:query(sql)
        if res then assert.equals(count(other), res.rows[1][1], sql) else assert.equals("read_only", qerr.code, sql) end
      end
      assert.equals(0, assert(other:query("SELECT count(*) FROM clients WHERE fname <> 'other'")).rows[1][1])
      -- a statement for no connection finds nothing and writes nothing
      local db = assert(core.pg.connect(pg.conninfo))
      assert.same({ { 0 } }, assert(db:query("SELECT count(*) FROM clients")).rows)
      assert.is_nil((db:exec("INSERT INTO clients (business_id, id, synced_at, record) VALUES (1, 1, 'x', '{}')")))
      db:close()
      -- a role that skips row-level security is refused
      local su, err = postgres.session(pg.superuser)
      assert.is_nil(su)
      assert.equals("pg_role_bypasses_rls", err.code)
      other:close()
    end)

    it("syncs incrementally at the cost it has on SQLite, and applies webhook events", function()
      local lite = assert(mirror.open{ path = dir .. "/same.db" })
      assert(lite:sync(fb, { budget = false }))
      local acct = fb:account(A)
      assert(acct.invoices:update(17, { notes = "changed" }))
      assert(acct.clients:update(10004, { organization = "Renamed Ltd." }))
      assert(acct.invoices:delete(21))
      assert(sb:admin("POST", "/_sandbox/hard_delete", { account_id = A, resource = "items", id = 2 }))
      local a = assert(lite:sync(fb, { budget = false, reconcile = true }))
      local b = assert(m:sync(fb, { budget = false, reconcile = true }))
      assert.equals(a.requests, b.requests)
      local function written(s)
        local n = 0
        for _, r in ipairs(s.resources) do n = n + r.written + r.gone end
        return n
      end
      assert.equals(written(a), written(b))
      M.assert_equal(m, fb, M.businesses, "after an incremental sync")
      assert(acct.invoices:update(30, { notes = "hooked" }))
      assert.equals(1, assert(m:apply(fb, { name = "invoice.update", object_id = "30", account_id = A })).written)
      assert(sb:admin("POST", "/_sandbox/hard_delete", { account_id = A, resource = "expenses", id = 3 }))
      assert.equals(1, assert(m:apply(fb, { name = "expense.delete", object_id = "3", account_id = A })).gone)
      M.assert_equal(m, fb, M.businesses, "after events")
      -- the reports answer the same from both
      assert(lite:sync(fb, { budget = false }))
      for _, as_of in ipairs { "2025-06-30", "2025-01-15" } do
        local x, y = assert(reports.billing(lite, { as_of = as_of })), assert(reports.billing(m, { as_of = as_of }))
        assert.equals(#x, #y)
        for i = 1, #x do
          assert.same(x[i].acc.totals, y[i].acc.totals)
          assert.same(x[i].acc.clients, y[i].acc.clients)
        end
      end
      for _, basis in ipairs { "invoiced", "collected" } do
        assert.same(assert(reports.revenue(lite, { basis = basis })), assert(reports.revenue(m, { basis = basis })))
      end
      assert.same(assert(reports.unbilled_time(lite)), assert(reports.unbilled_time(m)))
      assert.same(assert(reports.dso(lite, { as_of = "2025-06-30" })), assert(reports.dso(m, { as_of = "2025-06-30" })))
      lite:close()
    end)

    it("answers read-only SQL only, bounded by a deadline and a row limit", function()
      for _, sql in ipairs { "DELETE FROM invoices", "UPDATE clients SET fname = 'x'", "DROP TABLE invoices",
        "CREATE TABLE x (a int)", "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT set_config('transaction_read_only', 'off', true)" } do
        local res, err = m:query(sql)
        if sql:match("default_transaction") then
          assert(res) -- a setting for later transactions only: this one stays read-only
        elseif sql:match("^SELECT") then
          assert.is_nil(res, sql)
          assert.equals("pg", err.code, sql) -- "transaction read-write mode must be set before any query"
        else
          assert.is_nil(res, sql)
          assert.equals("read_only", err.code, sql)
        end
      end
      local res, err = m:query("SELECT pg_sleep(3)", nil, { deadline = 0.2 })
      assert.is_nil(res)
      assert.equals("pg_deadline", err.code)
      res, err = m:query("SELECT id FROM invoices", nil, { max_rows = 5 })
      assert.is_nil(res)
      assert.equals("too_many_rows", err.code)
      res = assert(m:query("SELECT count(*) AS n FROM invoices WHERE business_id = ? AND vis_state <> ?",
        { 1000001, 1 }))
      assert.same({ "n" }, res.columns)
      assert.is_true(res.rows[1][1] > 200)
    end)

    it("lets one writer at a time hold a connection, until its session ends however it ends", function()
      local s2 = assert(postgres.session(pg.conninfo))
      local mine = assert(postgres.open(session, "alice"):lease("sync", 0))
      local none, err = postgres.open(s2, "alice"):lease("sync", 0)
      assert.is_nil(none)
      assert.equals("sync_in_progress", err.code)
      assert(postgres.open(s2, "bob"):lease("sync", 0)).release() -- another connection is free
      local second = mirror.open{ postgres = s2, connection = "alice" }
      local _, serr = second:sync(fb, { budget = false })
      assert.equals("sync_in_progress", serr.code)
      mine.release()
      local got = assert(postgres.open(s2, "alice"):lease("sync", 0))
      assert.is_true(got.held())
      -- the holder's session is cut (a killed worker): the lease is free at once
      local s3 = assert(postgres.session(pg.conninfo))
      local t0 = core.clock.now()
      local waiting = postgres.open(s3, "alice")
      local pid = s2.db:pid()
      pg:psql(("SELECT pg_terminate_backend(%d)"):format(pid))
      local taken = assert(waiting:lease("sync", 10))
      assert.is_true(core.clock.now() - t0 < 2)
      assert.is_false(got.held()) -- the old holder can tell
      taken.release()
      got.release()
      s2:close()
      s3:close()
    end)
  end)

  describe("a sync into PostgreSQL", function()
    local tokens_file

    setup(function()
      local t = sb:token{}
      tokens_file = dir .. "/tokens.json"
      local f = assert(io.open(tokens_file, "wb"))
      f:write(cjson.encode{ client_id = sb.app.client_id, client_secret = sb.app.client_secret,
        redirect_uri = sb.app.redirect_uri, access_token = t.access_token, refresh_token = t.refresh_token })
      f:close()
    end)

    local function start(connection)
      local out = ("%s/%s.%d.out"):format(dir, connection, math.random(1e9))
      local pidfile = out .. ".pid"
      os.execute(("FB_PG=%s spec/env %s %s spec/support/mirror_worker.lua %s %s %s 2 > %s 2>&1 & echo $! > %s")
        :format(sandbox.shell_quote(pg.conninfo), H.lua, H.lua, sandbox.shell_quote(sb.url),
        sandbox.shell_quote(tokens_file), "pg:" .. connection, sandbox.shell_quote(out), sandbox.shell_quote(pidfile)))
      local pid
      for _ = 1, 200 do
        pid = tonumber((H.read(pidfile) or ""):match("%d+"))
        if pid then break end
        core.clock.sleep(0.01)
      end
      return assert(pid), out
    end
    local function alive(pid)
      local stat = H.read("/proc/" .. pid .. "/stat")
      return stat ~= nil and not stat:match("^%d+ %b() [ZX]")
    end
    local function wait(pid, seconds)
      local deadline = core.clock.now() + seconds
      while alive(pid) and core.clock.now() < deadline do core.clock.sleep(0.02) end
      return not alive(pid)
    end
    local function lines(out) return select(2, (H.read(out) or ""):gsub("\n", "")) end

    it("survives SIGKILL mid-page and a PostgreSQL restart: every row FreshBooks', then equal", function()
      local rnd = M.prng(M.seed)
      print(("\n# pg_spec: FB_SEED=%d"):format(M.seed))
      M.slow_network(sb, true)
      finally(function() M.slow_network(sb, false) end)
      local m = assert(mirror.open{ postgres = session, connection = "killed" })
      local function consistent(label)
        M.slow_network(sb, false)
        local diffs = {}
        for _, d in ipairs(M.diff(m, M.truth(fb, { M.businesses[1] }))) do
          if not d:match(": missing$") then diffs[#diffs + 1] = d end
        end
        assert(#diffs == 0, label .. ": rows that are not FreshBooks' records (seed " .. M.seed .. "):\n  "
          .. table.concat(diffs, "\n  ", 1, math.min(#diffs, 10)))
        M.slow_network(sb, true)
      end
      for k = 1, 3 do
        local pid, out = start("killed")
        local at = rnd(3, 40)
        for _ = 1, 3000 do
          if lines(out) >= at or not alive(pid) then break end
          core.clock.sleep(0.002)
        end
        core.clock.sleep(rnd(0, 20) / 1000)
        os.execute("kill -KILL " .. pid)
        assert(wait(pid, 30))
        consistent("after kill " .. k)
      end
      -- PostgreSQL goes away mid-sync (an operator's restart): the run stops with pg_connection
      local pid, out = start("killed")
      for _ = 1, 3000 do
        if lines(out) >= 20 or not alive(pid) then break end
        core.clock.sleep(0.002)
      end
      pg:restart()
      assert(wait(pid, 60))
      assert.matches("pg_connection", H.read(out))
      consistent("after the restart")
      pid, out = start("killed")
      assert(wait(pid, 120), "the last run did not end")
      assert.truthy(H.read(out):find("synced", 1, true), H.read(out))
      M.slow_network(sb, false)
      M.assert_equal(m, fb, { M.businesses[1] }, "after kills and a restart")
      m:close()
    end)

    it("migrates forward once for every connection: new columns filled from each one's records", function()
      local a = assert(mirror.open{ postgres = session, connection = "alice" })
      local want = assert(a:query("SELECT id, outstanding_cents FROM invoices ORDER BY business_id, id")).rows
      local db = assert(core.pg.connect(pg.conninfo))
      assert(db:exec("ALTER TABLE invoices DROP COLUMN outstanding_cents CASCADE;"
        .. " UPDATE mirror_meta SET value = '1' WHERE key = 'schema_version'"))
      db:close()
      local again = assert(mirror.open{ postgres = session, connection = "killed" })
      assert.same(want, assert(a:query("SELECT id, outstanding_cents FROM invoices ORDER BY business_id, id")).rows)
      assert.is_true(#assert(again:query("SELECT id FROM invoices WHERE outstanding_cents IS NOT NULL")).rows > 100)
      -- row-level security is back on for the owner
      assert.same({ { true } }, assert(pg:psql("SELECT bool_and(relforcerowsecurity) FROM pg_class WHERE relname IN"
        .. " ('invoices', 'clients', 'businesses')") == "t" and { { true } } or {}))
      a:close()
      again:close()
    end)
  end)
end)
