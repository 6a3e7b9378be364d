-- Webhook events from OpenResty to the mirror (freshbooks.mirror.feed): a real nginx queues verified
-- events in a shared dict and hands them over a cosocket to the real `freshbooks sync --watch --listen`,
-- which writes the mirror. The worker never waits for the watcher (a stopped one, a dead one), and a
-- watcher that comes back gets every event still queued.
local cjson = require "cjson"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"
local H = require "support.fbtest"
local C = require "support.cli"
local M = require "support.mirror"

local q = sandbox.shell_quote

describe("OpenResty feeding webhook events to the mirror", function()
  local sb, w, app, client, fb, sock, watcher

  local function start_watcher()
    watcher = w:spawn("sync --watch --interval 3600 --no-budget --business aBcD1 --listen " .. q(sock))
    assert(C.until_true(function() return require("lfs").attributes(sock, "mode") == "socket" end, 60),
      "the watcher did not listen: " .. watcher:stderr())
  end
  local function organization(id)
    local _, out = w:run(("sql \"SELECT organization FROM clients WHERE business_id = 1000001 AND id = %d\""
      .. " --format csv"):format(id))
    return out:match("\n(.*)\n$")
  end

  setup(function()
    sb = sandbox.start{ invoices = 60, seed = 6 }
    w = C.world(sb)
    os.execute("mkdir -p -m 700 " .. q(w.config_home .. "/freshbooks"))
    local t = sb:token{}
    assert(require("freshbooks.store.file")(w.tokens).save(t))
    fb = H.session(sb, { tokens = t })
    sock = w.dir .. "/events.sock"
    app = testserver.start{
      http = testserver.lua_paths() .. "\n  lua_shared_dict freshbooks_events 1m;"
        .. ("\n  init_worker_by_lua_block { require('freshbooks.mirror.feed').start{ socket = %q, interval = 0.05,"
        .. " timeout = 1 } }"):format(sock),
      locations = [[
        location = /hook {
          content_by_lua_block {
            ngx.req.read_body()
            local fields = require("freshbooks.webhook").parse(ngx.req.get_body_data() or "")
            -- (the app verifies the signature here: examples/openresty/app.lua)
            local ok, err = require("freshbooks.mirror.feed").push(fields)
            ngx.update_time()
            ngx.say(require("cjson").encode{ queued = ok == true, err = err, at = ngx.now() })
          }
        }
        location = /ping {
          content_by_lua_block { ngx.update_time(); ngx.say(require("cjson").encode{ at = ngx.now() }) }
        }
        location = /sqlite {
          content_by_lua_block {
            local ok, err = pcall(require("freshbooks.mirror").open, { path = ngx.var.arg_path })
            ngx.say(ok and "opened" or tostring(err))
          }
        }
      ]],
    }
    client = core.http.client{ timeout = 20 }
    start_watcher()
  end)
  teardown(function()
    if watcher then watcher:signal("KILL") end
    if client then client:close() end
    if app then app.stop() end
    if w then w:cleanup() end
    if sb then sb:stop() end
  end)

  local function hook(name, id)
    local status, _, body = client:request{ method = "POST", url = app.url .. "/hook",
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
      body = ("name=%s&object_id=%s&account_id=aBcD1&business_id=1000001&identity_id=1001&user_id=1"):format(name, id) }
    assert.equals(200, status, body)
    return cjson.decode(body)
  end

  it("applies a delivered event to the mirror at once, through the watcher", function()
    assert(fb:account("aBcD1").clients:update(10002, { organization = "Fed Ltd." }))
    assert.is_true(hook("client.update", 10002).queued)
    assert(C.until_true(function() return organization(10002) == "Fed Ltd." end, 20),
      "not applied: " .. watcher:stderr())
  end)

  it("answers deliveries and other requests while the watcher does not answer, then delivers them all", function()
    os.execute("kill -STOP " .. watcher.pid)
    local stopped = core.clock.now()
    finally(function() os.execute("kill -CONT " .. watcher.pid) end)
    local acct = fb:account("aBcD1")
    for i = 3, 8 do
      assert(acct.clients:update(10000 + i, { organization = "Held " .. i }))
      local r = hook("client.update", 10000 + i)
      assert.is_true(r.queued)
    end
    -- the worker's timer is waiting for the stopped watcher's answer meanwhile; requests are answered
    local results = client:batch({ { method = "GET", url = app.url .. "/ping" },
      { method = "POST", url = app.url .. "/hook", headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "name=client.update&object_id=10009&account_id=aBcD1&business_id=1000001" } }, { concurrency = 2 })
    assert.equals(200, results[1].status)
    assert.equals(200, results[2].status)
    assert.is_true(core.clock.now() - stopped < 5, "the worker waited for the watcher")
    assert.are_not.equal("Held 8", organization(10008))
    os.execute("kill -CONT " .. watcher.pid)
    assert(C.until_true(function() return organization(10008) == "Held 8" end, 30),
      "not delivered after the watcher came back: " .. watcher:stderr())
    for i = 3, 7 do assert.equals("Held " .. i, organization(10000 + i)) end
  end)

  it("refuses to open a SQLite mirror inside nginx, whose waits would block the worker", function()
    local status, _, body = client:request{ url = app.url .. "/sqlite?path=" .. core.codec.urlencode(w.dir
      .. "/in-nginx.db") }
    assert.equals(200, status)
    assert.matches("freshbooks.mirror: open: SQLite would block the nginx worker", body, 1, true)
    assert.is_nil(io.open(w.dir .. "/in-nginx.db", "rb"))
  end)

  it("keeps events queued while no watcher runs, and delivers them to the next one", function()
    watcher:signal("KILL")
    watcher:wait(20)
    assert(fb:account("aBcD1").clients:update(10020, { organization = "Queued Co." }))
    assert.is_true(hook("client.update", 10020).queued)
    core.clock.sleep(0.5) -- some drain rounds find nobody listening
    start_watcher()
    assert(C.until_true(function() return organization(10020) == "Queued Co." end, 30),
      "the queued event was lost: " .. watcher:stderr())
    local m = assert(require("freshbooks.mirror").open{ path = w.dir .. "/.local/share/freshbooks/mirror.db",
      readonly = true })
    M.assert_equal(m, fb, { M.businesses[1] }, "after the fed events")
    m:close()
  end)
end)
