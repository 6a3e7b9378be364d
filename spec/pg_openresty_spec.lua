-- Reading the PostgreSQL mirror from OpenResty without blocking a worker (freshbooks.mirror.pgwire: the
-- wire protocol over cosockets): a real nginx with one worker answers a ping while one of its requests
-- waits on a slow statement; the billing report it computes equals the report from the same mirror
-- through libpq; SCRAM and TLS as PostgreSQL asks them, the server's proof checked; reads only, and
-- only the signed-in connection's rows.
local cjson = require "cjson"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"
local H = require "support.fbtest"
local C = require "support.cli"
local PG = require "support.postgres"
local mirror = require "freshbooks.mirror"
local reports = require "freshbooks.mirror.reports"

-- The app's reader: GET /read?c=CONNECTION&q=SQL (JSON answer or error), /billing?c=&as_of=, /ping,
-- and /set (a phase that cannot yield).
local LOCATIONS = [[
  location = /read {
    content_by_lua_block {
      local m = require("freshbooks.mirror").open{ postgres = ngx.var.pg, connection = ngx.var.arg_c,
        readonly = true }
      ngx.update_time()
      local started = ngx.now()
      local res, err = m:query(ngx.unescape_uri(ngx.var.arg_q or ""), nil,
        { deadline = tonumber(ngx.var.arg_deadline) or 10, max_rows = tonumber(ngx.var.arg_max_rows) })
      ngx.update_time()
      -- the first row with each number in full (JSON here keeps 14 digits) and a mark on text
      local first = {}
      for i, v in ipairs(res and res.rows[1] or {}) do
        first[i] = type(v) == "number" and ("%.17g"):format(v) or "text:" .. tostring(v)
      end
      ngx.say(require("cjson").encode{ rows = res and res.rows, first = first, columns = res and res.columns,
        code = err and err.code, message = err and err.message, started = started, finished = ngx.now() })
    }
  }
  location = /billing {
    content_by_lua_block {
      local m = require("freshbooks.mirror").open{ postgres = ngx.var.pg, connection = ngx.var.arg_c,
        readonly = true }
      local list, as_of = require("freshbooks.mirror.reports").billing(m, { as_of = ngx.var.arg_as_of })
      if not list then ngx.say(require("cjson").encode{ code = as_of.code, message = as_of.message }) return end
      local out = {}
      for _, b in ipairs(list) do
        out[tostring(b.business.business_id)] = { totals = b.acc.totals, count = b.acc.count }
      end
      ngx.say(require("cjson").encode(out))
    }
  }
  location = /hostile {
    content_by_lua_block {
      local b = require("freshbooks.mirror.pgwire").open(("postgresql://u:pw@127.0.0.1:%s/%s?sslmode=%s")
        :format(ngx.var.arg_port, ngx.var.arg_db, ngx.var.arg_ssl or "prefer"), "alice", { timeout = 0.5 })
      ngx.update_time()
      local started = ngx.now()
      local res, err = b:query("SELECT 1")
      ngx.update_time()
      ngx.say(require("cjson").encode{ ok = res ~= nil, code = err and err.code, message = err and err.message,
        seconds = ngx.now() - started })
    }
  }
  location = /ping {
    content_by_lua_block { ngx.update_time(); ngx.say(require("cjson").encode{ at = ngx.now() }) }
  }
  location = /set {
    set_by_lua_block $outcome {
      local m = require("freshbooks.mirror").open{ postgres = ngx.var.pg, connection = "alice", readonly = true }
      local res, err = m:query("SELECT 1")
      return res and "read" or err.code
    }
    return 200 $outcome;
  }
]]

-- pgwire runs in nginx's LuaJIT whichever interpreter runs busted, and pg_spec.lua covers libpq's side
-- under both: by default this file runs under LuaJIT only (make check's budget); FB_SLOW=1 under both.
if not rawget(_G, "jit") and os.getenv("FB_SLOW") ~= "1" then
  describe("the PostgreSQL mirror read from OpenResty", function()
    it("runs under LuaJIT (FB_SLOW=1: here too)", function() pending("LuaJIT runs it") end)
  end)
  return
end

describe("the PostgreSQL mirror read from OpenResty", function()
  local pg, sb, fb, app, client, m, session

  local function start_app(conninfo)
    return testserver.start{
      http = testserver.lua_paths()
        .. ("\n  lua_ssl_trusted_certificate %s;\n  lua_ssl_verify_depth 3;"):format(pg.ca_file)
        .. "\n  init_by_lua_block { require('freshbooks.mirror') require('freshbooks.mirror.pgwire') }",
      locations = ("set $pg %q;\n"):format(conninfo) .. LOCATIONS,
    }
  end

  setup(function()
    pg = PG.start{ tls = true }
    sb = sandbox.start{ invoices = 120, seed = 9 }
    fb = H.session(sb)
    session = assert(require("freshbooks.mirror.postgres").session(pg.conninfo))
    m = assert(mirror.open{ postgres = session, connection = "alice" })
    assert(m:sync(fb, { budget = false }))
    local other = assert(mirror.open{ postgres = session, connection = "carol" })
    assert(other:sync(fb, { budget = false, businesses = { "aBcD1" }, resources = { "invoices" } }))
    -- the reader over TLS, its certificate verified (nginx checks DNS names: localhost)
    app = start_app(pg.url:gsub("@127%.0%.0%.1:", "@localhost:") .. "?sslmode=verify-full&hostaddr=127.0.0.1")
    client = core.http.client{ timeout = 30 }
  end)
  teardown(function()
    if client then client:close() end
    if app then app.stop() end
    if session then session:close() end
    if sb then sb:stop() end
    if pg then pg:stop() end
  end)

  local function get(path)
    local status, _, body = client:request{ url = app.url .. path }
    assert.equals(200, status, tostring(body) .. (app.log and app.log() or ""))
    return cjson.decode(body)
  end
  local function read(c, sql) return get("/read?c=" .. c .. "&q=" .. core.codec.urlencode(sql)) end

  it("answers the billing report the libpq mirror answers, over TLS with SCRAM", function()
    for _, as_of in ipairs { "2025-06-30", "2024-12-31" } do
      local got = get("/billing?c=alice&as_of=" .. as_of)
      local want = assert(reports.billing(m, { as_of = as_of }))
      assert.equals(2, #want)
      for _, b in ipairs(want) do
        local g = got[tostring(b.business.business_id)]
        assert.equals(b.acc.count, g.count)
        for code, t in pairs(b.acc.totals) do
          assert.equals(t.invoices, g.totals[code].invoices)
          assert.same(t.outstanding, g.totals[code].outstanding)
          assert.same(t["90+"], g.totals[code]["90+"])
        end
      end
    end
    local tls = read("alice", "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert.is_true(tls.rows[1][1], cjson.encode(tls))
    local auth = pg:psql("SELECT count(*) FROM pg_authid WHERE rolname = 'mirror'"
      .. " AND rolpassword LIKE 'SCRAM-SHA-256$%'", "postgres")
    assert.equals("1", auth)
  end)

  it("never blocks the worker: a ping is answered while a statement runs", function()
    local results = client:batch({
      { method = "GET", url = app.url .. "/read?c=alice&q=" .. core.codec.urlencode("SELECT pg_sleep(1.5), 1") },
      { method = "GET", url = app.url .. "/ping?delay" },
      { method = "GET", url = app.url .. "/ping" },
    }, { concurrency = 3 })
    local slow = cjson.decode(results[1].body)
    assert.is_nil(slow.code, slow.message)
    local ping = cjson.decode(results[3].body)
    assert.is_true(ping.at >= slow.started and ping.at < slow.finished,
      ("ping at %.3f, slow statement %.3f..%.3f"):format(ping.at, slow.started, slow.finished))
  end)

  it("reads only, and only the signed-in connection's rows", function()
    local all = read("alice", "SELECT count(*) FROM invoices").rows[1][1]
    local carol = read("carol", "SELECT count(*) FROM invoices").rows[1][1]
    assert.is_true(carol > 0 and carol < all, all .. " / " .. carol)
    assert.equals(0, read("nobody", "SELECT count(*) FROM invoices").rows[1][1])
    for _, sql in ipairs { "UPDATE invoices SET status = 0", "DELETE FROM mirror_scope",
      "WITH x AS (UPDATE mirror_scope SET connection_id = 'alice' RETURNING 1) SELECT count(*) FROM invoices",
      "CREATE TABLE x (a int)" } do
      local r = read("carol", sql)
      assert.equals("read_only", r.code, sql)
    end
    -- nothing a statement did outlives it: the pooled connection reads as whoever asks next
    assert.equals(carol, read("carol", "SELECT count(*) FROM invoices").rows[1][1])
    assert.equals(0, read("nobody", "SELECT count(*) FROM invoices").rows[1][1])
    local t0 = core.clock.now()
    local r = get("/read?c=alice&deadline=0.3&q=" .. core.codec.urlencode("SELECT pg_sleep(5)"))
    assert.is_nil(r.rows)
    assert.equals("pg_deadline", r.code)
    assert.is_true(core.clock.now() - t0 < 3)
    assert.equals("pg", read("alice", "SELEC 1").code)
    assert.equals(1, read("alice", "SELECT 1").rows[1][1])
  end)

  it("stops reading an answer at its row limit, and gives integers as exactly as libpq's reader", function()
    local t0 = core.clock.now()
    local r = get("/read?c=alice&max_rows=3&q=" .. core.codec.urlencode("SELECT generate_series(1, 20000000)"))
    assert.equals("too_many_rows", r.code)
    -- the rest is never read: the connection closes (reading twenty million rows takes seconds)
    io.stderr:write(("    over the row limit: answered in %.2f s\n"):format(core.clock.now() - t0))
    assert.is_true(core.clock.now() - t0 < 1.5, core.clock.now() - t0)
    assert.equals(1, read("alice", "SELECT 1").rows[1][1])
    local first = read("alice", "SELECT 9007199254740991::bigint, -9007199254740991::bigint, 1234567890123456::bigint,"
      .. " 9007199254740992::bigint, 12345678901234567890::numeric, 2.5::numeric").first
    assert.same({ "9007199254740991", "-9007199254740991", "1234567890123456", "text:9007199254740992",
      "text:12345678901234567890", "text:2.5" }, first)
  end)

  it("refuses a phase that cannot yield, and a wrong password, with codes", function()
    local status, _, body = client:request{ url = app.url .. "/set" }
    assert.equals(200, status)
    assert.equals("blocking_phase", body)
    local bad = start_app(pg.url:gsub(":[^:@/]+@", ":Wr0ngPassw0rd@"):gsub("@127%.0%.0%.1:", "@localhost:")
      .. "?sslmode=require&hostaddr=127.0.0.1")
    finally(function() bad.stop() end)
    local st, _, b = client:request{ url = bad.url .. "/read?c=alice&q=SELECT%201" }
    assert.equals(200, st)
    local r = cjson.decode(b)
    assert.equals("pg_auth", r.code)
    assert.is_nil(b:find("Wr0ngPassw0rd", 1, true))
  end)

  it("refuses a server that proves nothing, and answers hostile servers with codes, within the timeout", function()
    local port = C.free_port()
    local dir = H.tmpdir()
    local pid = tonumber(io.popen(("spec/env %s %s spec/support/fake_pg.lua %d %s >/dev/null 2>&1 & echo $!")
      :format(H.lua, H.lua, port, sandbox.shell_quote(dir .. "/ready"))):read("*l"))
    finally(function()
      os.execute("kill -KILL " .. pid .. " 2>/dev/null")
      H.rmdir(dir)
    end)
    assert(C.until_true(function() return H.read(dir .. "/ready") end, 10), "the fake server did not start")
    local function hostile(db, ssl)
      local r = get(("/hostile?port=%d&db=%s&ssl=%s"):format(port, db, ssl or "prefer"))
      assert.is_false(r.ok, db)
      assert.is_true(r.seconds < 3, db .. ": " .. r.seconds)
      return r
    end
    local r = hostile("badsig")
    assert.equals("pg_auth", r.code)
    assert.matches("did not prove", r.message)
    r = hostile("nonce")
    assert.equals("pg_auth", r.code)
    assert.matches("nonce is not ours", r.message)
    -- PBKDF2 runs on the worker, as many rounds as the server asks: a bounded number, else pg_auth
    for _, db in ipairs { "slowhash", "hugehash" } do
      r = hostile(db)
      assert.equals("pg_auth", r.code, db)
      assert.matches("SCRAM iterations; this reader does 1 to 100000", r.message, 1, true)
    end
    assert.equals("pg_tls", hostile("badsig", "require").code) -- TLS refused where it is required
    assert.equals("pg_connection", hostile("huge").code)
    assert.equals("pg_connection", hostile("garbage").code)
    assert.equals("pg_connection", hostile("silent").code) -- the timeout, 0.5 s
    assert.equals(1, read("alice", "SELECT 1").rows[1][1]) -- and the worker goes on
  end)
end)
