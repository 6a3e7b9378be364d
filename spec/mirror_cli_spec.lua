-- The mirror's commands, run as a user runs them (bin/freshbooks as a subprocess, against a sandbox):
-- `sync` (a first sync, an incremental one, Ctrl-C and a resume, `--watch` with webhook events on a
-- Unix socket), `sql` (read-only, table/CSV/JSON, parameters, limits), `report --offline` equal to the
-- report over the API, and the reports only a mirror answers.
local cjson = require "cjson"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local C = require "support.cli"
local M = require "support.mirror"
local mirror = require "freshbooks.mirror"

local q = sandbox.shell_quote
local _ -- what a run printed when only its status and stderr matter

describe("freshbooks sync, sql and report --offline", function()
  local sb, w, fb

  setup(function()
    sb = sandbox.start{ invoices = 600, seed = 8 }
    w = C.world(sb)
    os.execute("mkdir -p -m 700 " .. q(w.config_home .. "/freshbooks"))
    local t = sb:token{}
    assert(require("freshbooks.store.file")(w.tokens).save(t))
    fb = H.session(sb, { tokens = t })
  end)
  teardown(function()
    if w then w:cleanup() end
    if sb then sb:stop() end
  end)

  local function db() return w.dir .. "/.local/share/freshbooks/mirror.db" end

  it("syncs everything, then only what changed; the mirror lives in the data directory, private", function()
    local code, out, err = w:run("sync --no-budget", { timeout = 120 })
    assert.equals(0, code, err)
    assert.matches("synced .- %d+ records read, %d+ written, %d+ deleted, 0 gone; %d+ requests", out)
    assert.equals("700", C.mode(w.dir .. "/.local/share/freshbooks"))
    assert.equals("600", C.mode(db()))
    assert(fb:account("aBcD1").invoices:update(3, { notes = "from the cli spec" }))
    code, out, err = w:run("sync --json --no-budget --business aBcD1", { timeout = 60 })
    assert.equals(0, code, err)
    local s = cjson.decode(out)
    assert.equals(1, s.written, out)
    assert.equals(0, #s.errors)
    local m = assert(mirror.open{ path = db(), readonly = true })
    M.assert_equal(m, fb, M.businesses, "after the command's syncs")
    m:close()
    -- usage errors and a busy mirror say so
    code, _, err = w:run("sync --listen " .. w.dir .. "/events.sock")
    assert.equals(2, code)
    assert.truthy(err:find("--watch", 1, true), err)
    local lock = assert(core.fs.lock(db() .. "-sync.lock", 0))
    code, _, err = w:run("sync")
    lock:unlock()
    assert.equals(1, code)
    assert.truthy(err:find("another sync is running", 1, true), err)
  end)

  it("shows FreshBooks' 429 and the wait its Retry-After asks for, then goes on", function()
    sb:admin("POST", "/_sandbox/faults", { route = "/users/clients$", fault = "429", retry_after = 2, times = 1 })
    local t = core.clock.now()
    local code, out, err = w:run("sync --business aBcD1 --resource clients --full", { timeout = 60 })
    assert.equals(0, code, err)
    assert.truthy(err:find("FreshBooks' rate limit: waiting 2 s", 1, true), err)
    assert.truthy(out:find("synced", 1, true))
    assert.is_true(core.clock.now() - t >= 2)
  end)

  it("stops at Ctrl-C (exit 130) and the next sync goes on to an equal mirror", function()
    local path = w.dir .. "/interrupted.db"
    M.slow_network(sb, true)
    finally(function() M.slow_network(sb, false) end)
    local since = H.last_seq(sb)
    local job = w:spawn("sync --no-budget --parallel 2 --mirror " .. q(path))
    assert(C.until_true(function() return M.requests(sb, since) >= 25 end, 30), "the sync made no progress")
    job:signal("INT")
    local code, _, err = job:wait(20)
    assert.equals(130, code, err)
    assert.truthy(err:find("interrupted", 1, true), err)
    M.slow_network(sb, false)
    code, _, err = w:run("sync --no-budget --mirror " .. q(path), { timeout = 120 })
    assert.equals(0, code, err)
    local m = assert(mirror.open{ path = path, readonly = true })
    M.assert_equal(m, fb, M.businesses, "after Ctrl-C and a resume")
    m:close()
  end)

  it("--watch applies webhook events from its socket at once, and syncs every --interval", function()
    local sock = w.dir .. "/events.sock"
    local job = w:spawn("sync --watch --interval 2 --no-budget --listen " .. q(sock))
    finally(function() job:signal("KILL") end)
    assert(C.until_true(function() return C.read(sock) ~= nil and require("lfs").attributes(sock, "mode") == "socket"
      end, 30), "no socket: " .. job:stderr())
    assert.equals("600", C.mode(sock))
    -- after the watch's first sync, so that only the event can bring the change
    assert(C.until_true(function() return C.read(job.out):find("synced", 1, true) ~= nil end, 60),
      "no first sync: " .. job:stderr())
    assert(fb:account("aBcD1").clients:update(10011, { organization = "Watched Co." }))
    local unix = require "socket.unix"
    local c = (unix.stream or unix)()
    assert(c:connect(sock))
    c:settimeout(20)
    assert(c:send(cjson.encode{ name = "client.update", object_id = "10011", account_id = "aBcD1",
      business_id = "1000001" } .. "\n" .. "not json\n"
      .. cjson.encode{ name = "callback.verify", object_id = "1", account_id = "aBcD1" } .. "\n"))
    local r1, r2, r3 = c:receive("*l"), c:receive("*l"), c:receive("*l")
    c:close()
    assert.matches("^ok [1-9]%d* 0$", r1)
    assert.equals("error bad_event", r2)
    assert.matches("^ignored ", r3)
    local code, out = w:run("sql \"SELECT organization FROM clients WHERE business_id = 1000001 AND id = 10011\""
      .. " --format csv")
    assert.equals(0, code)
    assert.equals("organization\nWatched Co.\n", out)
    -- and a change nobody announced arrives with the next sync of the loop
    assert(fb:account("aBcD1").invoices:update(8, { notes = "polled" }))
    assert(C.until_true(function()
      local _, o = w:run("sql \"SELECT json_extract(record, '$.notes') FROM invoices WHERE business_id = 1000001"
        .. " AND id = 8\" --format csv")
      return o:find("polled", 1, true) ~= nil
    end, 30), "the watch did not sync: " .. job:stderr())
    job:signal("INT")
    assert.equals(130, (job:wait(20)))
    assert.is_nil(require("lfs").attributes(sock, "mode")) -- the socket is removed on the way out
  end)

  it("answers read-only SQL as a table, CSV or JSON, with parameters, limits and clear refusals", function()
    local code, out, err = w:run("sql \"SELECT id, organization, outstanding_cents FROM invoices WHERE business_id = ?"
      .. " AND id <= 3 ORDER BY id\" --param 1000001")
    assert.equals(0, code, err)
    assert.matches("^%s*id organization%s+outstanding_cents\n%s*1 ", out)
    code, out = w:run("sql \"SELECT id, NULL AS empty, 1.5 AS f FROM invoices WHERE business_id = 1000001 AND"
      .. " id = 2\" --format json")
    assert.equals(0, code)
    local doc = cjson.decode(out)
    assert.same({ 1, 2, 1.5, cjson.null }, { #doc, doc[1].id, doc[1].f, doc[1].empty })
    code, out = w:run("sql \"SELECT 'a,\\\"b' AS x\" --format csv")
    assert.equals(0, code)
    assert.equals('x\n"a,""b"\n', out)
    for _, bad in ipairs { "DELETE FROM invoices", "ATTACH DATABASE 'x.db' AS x", "SELECT 1; DROP TABLE clients" } do
      code, _, err = w:run("sql " .. q(bad))
      assert.equals(1, code, bad)
      assert.truthy(#err > 0)
    end
    code, _, err = w:run("sql \"SELECT id FROM invoices\" --max-rows 5")
    assert.equals(1, code)
    assert.truthy(err:find("--max-rows", 1, true), err)
    code, _, err = w:run("sql \"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*)"
      .. " FROM c\" --timeout 1", { timeout = 20 })
    assert.equals(1, code)
    assert.truthy(err:find("--timeout", 1, true), err)
    code, _, err = w:run("sql \"SELECT 1\" --mirror " .. q(w.dir .. "/none.db"))
    assert.equals(1, code)
    assert.truthy(err:find("run `freshbooks sync` first", 1, true), err)
  end)

  it("reports offline exactly what the report over the API says, and the mirror's own reports", function()
    assert.equals(0, (w:run("sync --no-budget", { timeout = 60 })))
    local code, online, err = w:run("report --as-of 2025-06-30 --format csv", { timeout = 60 })
    assert.equals(0, code, err)
    local since = H.last_seq(sb)
    local offline
    code, offline, err = w:run("report --offline --as-of 2025-06-30 --format csv")
    assert.equals(0, code, err)
    local function sorted(s)
      local t = {}
      for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
      table.sort(t)
      return t
    end
    assert.same(sorted(online), sorted(offline))
    for _, kind in ipairs { "revenue --basis collected", "unbilled", "dso --as-of 2025-06-30 --days 30" } do
      local out
      code, out, err = w:run("report " .. kind .. " --format json")
      assert.equals(0, code, kind .. ": " .. err)
      assert.is_true(#cjson.decode(out) > 0, kind)
    end
    assert.equals(0, (M.requests(sb, since))) -- from the file alone
    code, _, err = w:run("report billing --offline --basis collected")
    assert.equals(2, code)
    assert.truthy(err:find("takes no --basis", 1, true), err)
    code, _, err = w:run("report revenue --from 2025-02-30")
    assert.equals(2, code, err)
  end)
end)
