-- lua-freshbooks inside OpenResty: a real nginx (Debian's, lua-nginx-module on LuaJIT) runs the library
-- with the cosocket transport and talks to the sandbox. Proves the worker is never blocked.
local cjson = require "cjson"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"

-- The app: one worker, our Lua layer and the LuaJIT build of the core on its paths.
local APP = [[
    location = /app/get {
      content_by_lua_block {
        local transport = require("freshbooks.transport").default{ timeout = 5 }
        local res, err = transport{ method = "GET", url = ngx.unescape_uri(ngx.var.arg_url) }
        ngx.say(require("cjson").encode{ kind = res and "ok" or "err", status = res and res.status,
          body = res and res.body, code = err and err.code, message = err and err.message })
      }
    }
    location = /app/slow {
      content_by_lua_block {
        local started = ngx.now()
        local t = require("freshbooks.transport").cosocket{}
        local res = t{ method = "GET", url = ngx.unescape_uri(ngx.var.arg_url) }
        ngx.update_time()
        ngx.say(require("cjson").encode{ started = started, finished = ngx.now(), status = res and res.status })
      }
    }
    location = /app/ping {
      content_by_lua_block { ngx.update_time(); ngx.say(require("cjson").encode{ at = ngx.now() }) }
    }
    location = /app/batch {
      content_by_lua_block {
        local t = require("freshbooks.transport").cosocket{}
        local reqs = {}
        local base = ngx.unescape_uri(ngx.var.arg_base)
        for i = 1, 6 do reqs[i] = { method = "GET", url = base .. "/echo?i=" .. i } end
        local out = t:batch(reqs, { concurrency = 3 })
        local seen = {}
        for i, r in ipairs(out) do
          seen[i] = r.res and require("cjson").decode(r.res.body).uri:match("i=(%d+)") or ("err:" .. tostring(r.err))
        end
        ngx.say(require("cjson").encode(seen))
      }
    }
    location = /app/session {
      content_by_lua_block {
        local cjson = require "cjson"
        local freshbooks = require "freshbooks"
        ngx.req.read_body()
        local cfg = cjson.decode(ngx.req.get_body_data())  -- POSTed: tokens never sit in a URL or a log
        cfg.client_secret = "unused-here"
        local fb = freshbooks.new(cfg)
        local names = {}
        for m in fb:businesses() do names[#names + 1] = m.name end
        ngx.say(cjson.encode(names))
      }
    }
    location = /app/shared {
      content_by_lua_block {
        -- One session per worker, shared by concurrent requests (the usual OpenResty pattern).
        local cjson = require "cjson"
        ngx.req.read_body()
        local cfg = cjson.decode(ngx.req.get_body_data())
        local shared = package.loaded["app.shared"]
        if not shared then
          cfg.client_secret = cfg.secret
          cfg.secret = nil
          local saved = 0
          cfg.save = function() saved = saved + 1; return true end
          shared = { fb = require("freshbooks").new(cfg), saved = function() return saved end }
          package.loaded["app.shared"] = shared
        end
        local me, err = shared.fb:me()
        ngx.say(cjson.encode{ id = me and me.id, code = err and err.code, saved = shared.saved() })
      }
    }
    location = /app/lock/set {
      set_by_lua_block $outcome {
        local store = require("freshbooks").store.file(ngx.unescape_uri(ngx.var.arg_path), { lock_timeout = 30 })
        local handle, err = store.lock()
        if handle then handle:unlock() end
        return handle and "locked" or err.code
      }
      return 200 $outcome;
    }
    location = /app/lock {
      content_by_lua_block {
        -- Hold the file store's lock for 300 ms; concurrent requests of this one worker must queue on
        -- the event loop, not block the worker in flock (the holder could then never release).
        local store = require("freshbooks").store.file(ngx.unescape_uri(ngx.var.arg_path), { lock_timeout = 5 })
        ngx.update_time()
        local asked = ngx.now()
        local handle, err = store.lock()
        ngx.update_time()
        local got = ngx.now()
        if handle then ngx.sleep(0.3); ngx.update_time(); handle:unlock() end
        ngx.say(require("cjson").encode{ asked = asked, got = got, released = ngx.now(),
          code = err and err.code })
      }
    }
]]

-- A session built in init_by_lua, one per worker as OpenResty apps keep it: its requests must still
-- go over cosockets in the handlers (the transport is chosen per request), and fail loudly in a phase
-- that cannot yield instead of blocking the worker in libcurl.
local INIT_APP = [[
    location = /app/init/slow {
      content_by_lua_block {
        local fb = package.loaded["app.init_session"]
        ngx.update_time()
        local started = ngx.now()
        local res, err = fb:request{ path = "/auth/api/v1/users/me" } -- the sandbox delays it 1.5 s
        ngx.update_time()
        ngx.say(require("cjson").encode{ started = started, finished = ngx.now(), status = res and res.status,
          code = err and err.code })
      }
    }
    location = /app/init/set {
      set_by_lua_block $outcome {
        local res, err = package.loaded["app.init_session"]:request{ path = "/auth/api/v1/users/me" }
        return res and "sent" or err.code
      }
      return 200 $outcome;
    }
]]

describe("OpenResty (cosocket transport)", function()
  local sb, app, client, echo
  setup(function()
    sb = sandbox.start{ admin = true }
    echo = testserver.start() -- /echo and /delay, for what the transport sends and how long it waits
    local tok = sb:token{ user = "alice" }
    local init = ("package.loaded['app.init_session'] = require('freshbooks').new{ api_url = %q, client_id = %q,"
      .. " client_secret = 'unused', redirect_uri = %q, tokens = { access_token = %q, refresh_token = %q,"
      .. " expires_in = 43200 } }"):format(sb.url, sb.app.client_id, sb.app.redirect_uri, tok.access_token,
      tok.refresh_token)
    app = testserver.start{
      http = testserver.lua_paths() ..
        "\n  lua_ssl_trusted_certificate " .. sb.ca_file .. ";\n  lua_ssl_verify_depth 3;" ..
        "\n  init_by_lua_block { " .. init .. " }",
      locations = APP .. INIT_APP,
    }
    client = core.http.client{ timeout = 20 }
  end)
  teardown(function()
    if client then client:close() end
    if app then app.stop() end
    if echo then echo.stop() end
    if sb then sb:stop() end
  end)

  local function app_get(path)
    -- (no secrets in these URLs, so the error log may be shown on failure)
    local status, _, body = client:request{ method = "GET", url = app.url .. path }
    assert.are.equal(200, status, tostring(body) .. (app.log and app.log() or ""))
    return cjson.decode(body)
  end

  it("the default transport inside a request handler is the cosocket one", function()
    local r = app_get("/app/get?url=" .. core.codec.urlencode(echo.url .. "/echo?x=1"))
    assert.are.equal("ok", r.kind)
    assert.are.equal(200, r.status)
    assert.are.equal("/echo?x=1", cjson.decode(r.body).uri)
  end)

  -- nginx verifies a peer by its DNS names only, so TLS goes to https://localhost:<port> here.
  local function by_name(url) return (url:gsub("^https://127%.0%.0%.1:", "https://localhost:")) end

  it("verifies TLS against lua_ssl_trusted_certificate", function()
    local r = app_get("/app/get?url=" .. core.codec.urlencode(by_name(sb.tls_url) .. "/auth/api/v1/users/me"))
    assert.are.equal("ok", r.kind, r.message)
    assert.are.equal(401, r.status) -- verified and answered (no token sent)
  end)

  it("refuses to call TLS to an IP address verified, since nginx could not check the name", function()
    local r = app_get("/app/get?url=" .. core.codec.urlencode(sb.tls_url .. "/auth/api/v1/users/me"))
    assert.are.equal("err", r.kind)
    assert.are.equal("tls", r.code)
    assert.matches("IP address", r.message)
  end)

  it("fails TLS with code tls when the server's certificate is not from a trusted CA", function()
    -- The app's own HTTPS port has a certificate from another throwaway CA than the sandbox's.
    local r = app_get("/app/get?url=" .. core.codec.urlencode(by_name(app.tls_url) .. "/echo"))
    assert.are.equal("err", r.kind)
    assert.are.equal("tls", r.code)
  end)

  it("a session built in init_by_lua uses cosockets in handlers: the worker answers a ping meanwhile", function()
    sb:admin("POST", "/_sandbox/faults", { route = "users/me$", fault = "delay", ms = 1500, times = 1 })
    local results = client:batch({
      { method = "GET", url = app.url .. "/app/init/slow" },
      { method = "GET", url = app.url .. "/delay?ms=200" },
      { method = "GET", url = app.url .. "/app/ping" },
    }, { concurrency = 3 })
    assert.is_nil(results[1].err)
    local slow = cjson.decode(results[1].body)
    assert.are.equal(200, slow.status, tostring(slow.code))
    local ping = cjson.decode(results[3].body)
    assert.is_true(ping.at >= slow.started and ping.at < slow.finished,
      ("ping at %.3f, slow call %.3f..%.3f"):format(ping.at, slow.started, slow.finished))
  end)

  it("a request from a phase that cannot yield fails with blocking_phase, and nothing is sent", function()
    local H = require "support.fbtest"
    local since = H.last_seq(sb)
    local status, _, body = client:request{ url = app.url .. "/app/init/set" }
    assert.are.equal(200, status)
    assert.are.equal("blocking_phase", body)
    assert.are.equal(0, #H.log(sb, since))
  end)

  it("reports refused connections with code connect", function()
    local r = app_get("/app/get?url=" .. core.codec.urlencode("http://127.0.0.1:1/"))
    assert.are.equal("err", r.kind)
    assert.are.equal("connect", r.code)
  end)

  it("keeps connections alive in the worker's pool", function()
    local a = cjson.decode(app_get("/app/get?url=" .. core.codec.urlencode(echo.url .. "/echo")).body)
    local b = cjson.decode(app_get("/app/get?url=" .. core.codec.urlencode(echo.url .. "/echo")).body)
    assert.are.equal(a.connection, b.connection)
    assert.is_true(b.connection_requests > a.connection_requests)
  end)

  it("runs a batch on light threads and returns results in input order", function()
    local seen = app_get("/app/batch?base=" .. core.codec.urlencode(echo.url))
    assert.are.same({ "1", "2", "3", "4", "5", "6" }, seen)
  end)

  it("never blocks the worker: a ping is answered while a slow upstream call is in flight", function()
    -- One worker. The slow handler waits 1.5 s on the sandbox; the ping, sent while it waits, must be
    -- answered before the slow one finishes. Ordering, not a timing threshold.
    local results = client:batch({
      { method = "GET", url = app.url .. "/app/slow?url=" .. core.codec.urlencode(echo.url .. "/delay?ms=1500") },
      { method = "GET", url = app.url .. "/delay?ms=200" },   -- served by the same single worker
      { method = "GET", url = app.url .. "/app/ping" },
    }, { concurrency = 3 })
    assert.is_nil(results[1].err)
    local slow = cjson.decode(results[1].body)
    assert.are.equal(200, slow.status)
    assert.are.equal(200, results[3].status)
    local ping = cjson.decode(results[3].body)
    assert.is_true(ping.at >= slow.started and ping.at < slow.finished,
      ("ping at %.3f, slow call %.3f..%.3f"):format(ping.at, slow.started, slow.finished))
  end)

  it("shares one refresh between concurrent requests of a worker (single flight on ngx.sleep)", function()
    local H = require "support.fbtest"
    local tok = sb:token{ user = "alice" }
    local since = H.last_seq(sb)
    -- Expired access token: the first calls must refresh; concurrent ones wait for that one refresh.
    local body = cjson.encode{ api_url = sb.url, client_id = sb.app.client_id, secret = sb.app.client_secret,
      redirect_uri = sb.app.redirect_uri, tokens = { access_token = tok.access_token,
        refresh_token = tok.refresh_token, expires_at = os.time() - 10 } }
    local reqs = {}
    for i = 1, 6 do reqs[i] = { method = "POST", url = app.url .. "/app/shared", body = body } end
    local out = client:batch(reqs, { concurrency = 6 })
    for _, r in ipairs(out) do
      assert.is_nil(r.err)
      assert.are.equal(200, r.status)
      local got = cjson.decode(r.body)
      assert.are.equal(1001, got.id, tostring(got.code))
    end
    local posts = H.count(H.log(sb, since), H.is_token_post)
    assert.are.equal(1, posts)
  end)

  it("queues file-store locks of one worker on the event loop instead of blocking it", function()
    local path = os.tmpname()
    local url = app.url .. "/app/lock?path=" .. core.codec.urlencode(path)
    local out = client:batch({
      { method = "GET", url = url }, { method = "GET", url = url }, { method = "GET", url = url },
    }, { concurrency = 3 })
    os.remove(path)
    os.remove(path .. ".lock")
    local spans = {}
    for i, r in ipairs(out) do
      assert.is_nil(r.err)
      local t = cjson.decode(r.body)
      assert.is_nil(t.code, "request " .. i .. " failed to lock: " .. tostring(t.code))
      spans[i] = t
    end
    table.sort(spans, function(a, b) return a.got < b.got end)
    for i = 2, #spans do -- one holder at a time, each after the previous released
      assert.is_true(spans[i].got >= spans[i - 1].released, "lock holders overlapped")
    end
    assert.is_true(spans[3].asked < spans[1].released, "the requests did not run concurrently")
  end)

  it("never waits for a file-store lock in a phase that cannot yield: one try, then blocking_phase", function()
    local H = require "support.fbtest"
    local dir = H.tmpdir()
    local url = app.url .. "/app/lock/set?path=" .. core.codec.urlencode(dir .. "/tokens.json")
    local held = assert(core.fs.lock(dir .. "/.", 0)) -- another process holds it
    -- a worker waiting in flock (up to lock_timeout = 30 s) would not answer within 10 s
    local status, err, body = client:request{ url = url, timeout = 10 }
    held:unlock()
    assert.are.equal(200, status, tostring(err))
    assert.are.equal("blocking_phase", body)
    local _
    status, _, body = client:request{ url = url, timeout = 10 }
    assert.are.same({ 200, "locked" }, { status, body })
    H.rmdir(dir)
  end)

  it("runs a whole session (identity and businesses) inside a request handler", function()
    local tok = sb:token{ user = "alice" }
    local status, _, body = client:request{ method = "POST", url = app.url .. "/app/session",
      body = cjson.encode{ api_url = sb.url, client_id = sb.app.client_id, redirect_uri = sb.app.redirect_uri,
        tokens = { access_token = tok.access_token, refresh_token = tok.refresh_token, expires_in = 43200 } } }
    assert.are.equal(200, status, "session handler failed")
    local names = cjson.decode(body)
    assert.is_true(#names >= 2)
    assert.are.equal("string", type(names[1]))
  end)
end)

-- nginx's other yielding phases (lua-nginx-module 0.10.21+: ssl_client_hello, 0.10.22+: server_rewrite)
-- run cosockets and ngx.sleep like rewrite does; the library must treat them so: the Redis store's lock
-- wait on the event loop (never core.clock.sleep: the holder may be a request of this very worker), requests
-- over cosockets (never blocking_phase).
describe("OpenResty: the Redis store and the default transport in server_rewrite_by_lua", function()
  local R = require "support.redis"
  local srv, app, echo, client
  local SR = [[
  server_rewrite_by_lua_block {
    local uri = ngx.var.uri
    if uri ~= "/app/sr/lock" and uri ~= "/app/sr/get" then return end
    local cjson = require "cjson"
    if uri == "/app/sr/get" then
      local res, err = require("freshbooks.transport").default{ timeout = 5 }{ method = "GET",
        url = ngx.unescape_uri(ngx.var.arg_url) }
      ngx.say(cjson.encode{ status = res and res.status, code = err and err.code })
      return ngx.exit(200)
    end
    ngx.sleep(0.1) -- the holder (a content handler of this worker) takes the lock first
    local store = package.loaded["app.sr_store"](tonumber(ngx.var.arg_port))
    ngx.update_time()
    local asked = ngx.now()
    local handle, err = store.lock()
    ngx.update_time()
    if handle then handle:unlock() end
    ngx.say(cjson.encode{ asked = asked, got = ngx.now(), code = err and err.code })
    return ngx.exit(200)
  }
  init_by_lua_block {
    package.loaded["app.sr_store"] = function(port)
      return require("freshbooks").store.redis{ key = "fb:sr", lock_ttl = 30, lock_timeout = 2,
        redis = function()
          local r = require("nginx.redis"):new()
          r:set_timeout(2000)
          local ok, err = r:connect("127.0.0.1", port)
          if not ok then return nil, err end
          return r
        end }
    end
  }]]
  local HOLD = [[
    location = /app/sr/hold {
      content_by_lua_block {
        local store = package.loaded["app.sr_store"](tonumber(ngx.var.arg_port))
        local handle, err = store.lock()
        ngx.update_time()
        local locked = ngx.now()
        if handle then ngx.sleep(0.5); handle:unlock() end
        ngx.update_time()
        ngx.say(require("cjson").encode{ locked = locked, released = ngx.now(), code = err and err.code })
      }
    }
]]
  setup(function()
    srv = R.start{}
    echo = testserver.start()
    app = testserver.start{ http = testserver.lua_paths{ "build/deps/lua" } .. "\n" .. SR, locations = HOLD }
    client = core.http.client{ timeout = 20 }
  end)
  teardown(function()
    if client then client:close() end
    if app then app.stop() end
    if echo then echo.stop() end
    if srv then srv:stop() end
  end)

  it("waits for the lock on the event loop, never blocking the worker its holder runs on", function()
    local out = client:batch({
      { method = "GET", url = app.url .. "/app/sr/hold?port=" .. srv.port },
      { method = "GET", url = app.url .. "/app/sr/lock?port=" .. srv.port },
    }, { concurrency = 2 })
    assert.is_nil(out[1].err)
    assert.is_nil(out[2].err)
    local hold, waiter = cjson.decode(out[1].body), cjson.decode(out[2].body)
    assert.is_nil(hold.code, "the holder could not lock: " .. tostring(hold.code))
    assert.is_nil(waiter.code, "the server_rewrite waiter got " .. tostring(waiter.code)
      .. " (it blocked the worker, so the holder could never release)")
    assert.is_true(waiter.got >= hold.released - 0.01)
    -- The holder's 0.5 s sleep stretches while the waiter blocks the worker between its Redis calls.
    assert.is_true(hold.released - hold.locked < 0.5 + 0.15,
      ("the holder slept %.2f s for 0.5 s: the worker was blocked"):format(hold.released - hold.locked))
  end)

  it("sends requests over cosockets there instead of refusing with blocking_phase", function()
    local status, _, body = client:request{ method = "GET",
      url = app.url .. "/app/sr/get?url=" .. core.codec.urlencode(echo.url .. "/echo") }
    assert.are.equal(200, status)
    local r = cjson.decode(body)
    assert.is_nil(r.code, tostring(r.code))
    assert.are.equal(200, r.status)
  end)
end)
