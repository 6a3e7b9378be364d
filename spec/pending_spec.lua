-- A pair FreshBooks issued while Redis could not take it outlives the process that got it (issue #24):
-- the Redis store keeps it in the node's pending place (`pending = {dir =}` for plain processes,
-- `{shared_dict =}` inside nginx), every process of the node loads it from there and writes it back,
-- and it leaves the place once Redis holds it. Against the sandbox, Debian's redis-server and nginx.
local cjson = require "cjson"
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"
local R = require "support.redis"
local H = require "support.fbtest"
local W = require "support.redis_worker"

local q = sandbox.shell_quote

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local out = p:read("*a")
  p:close()
  return out
end

describe("a pending pair", function()
  local sb, srv, dir, ws
  setup(function()
    sb = sandbox.start{ invoices = 5 }
    srv = R.start{}
    dir = H.tmpdir()
    ws = W.workers(sb, srv, dir)
  end)
  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
    H.rmdir(dir)
  end)
  after_each(function()
    if srv.pid then srv:resume() end
    sb:admin("DELETE", "/_sandbox/faults")
  end)

  local function token_posts(since)
    local out = {}
    for _, e in ipairs(H.log(sb, since)) do if H.is_token_post(e) then out[#out + 1] = e end end
    return out
  end
  -- FreshBooks rotates now and answers `ms` later; -> the sandbox's log entry once it rotated.
  local function slow_rotation(since, ms)
    sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = "delay_after", ms = ms, times = 1 })
    return function()
      return W.wait_for("FreshBooks to rotate", function()
        for _, e in ipairs(token_posts(since)) do if e.issued_refresh_token then return e end end
      end, 10)
    end
  end

  -- A process refreshes; Redis stops while FreshBooks answers, so its save fails; then it is killed
  -- (SIGKILL). -> the store, the refresh token FreshBooks issued (hash), the pending file's mode.
  local function orphan(k, node)
    local s = freshbooks.store.redis{ redis = R.factory(srv), key = k }
    assert(s.save(sb:token{}, nil))
    local since = H.last_seq(sb)
    local rotated = slow_rotation(since, 800)
    local c = ws.config(k, { mode = "lock", timeout = 3, pending_dir = node, after = dir .. "/never" })
    write(c.go, "")
    local pid = ws.start(c, dir .. "/orphan-" .. k:gsub("%W", "_"))
    local issued = rotated().issued_refresh_token
    srv:pause()
    W.wait_for("the pair in the node's pending place", function() return H.read(node .. "/pending.json") end, 10)
    local mode = sh("stat -c %a " .. q(node .. "/pending.json")):match("%d+")
    os.execute("kill -KILL " .. pid)
    ws.forget(pid)
    srv:resume()
    return s, issued, mode
  end

  it("of a killed process is loaded by the node's next process, written back and used", function()
    local node = dir .. "/node"
    os.execute("mkdir -m 700 " .. q(node))
    local k = "fb:pending:plain"
    local s, issued, mode = orphan(k, node)
    assert.equal("600", mode)
    local since = H.last_seq(sb)
    local fb = H.session(sb, { retry = false,
      store = freshbooks.store.redis{ redis = R.factory(srv), key = k, pending = { dir = node } } })
    -- Forced: with the refresh token Redis held this is invalid_grant, and reauth_required once the
    -- contested wait passes (what happens without the pending place, or when it is not read).
    assert.is_true(fb:refresh())
    local posts = token_posts(since)
    assert.equal(1, #posts)
    assert.equal(issued, posts[1].refresh_token) -- the dead process's pair was the one spent
    assert.equal(200, posts[1].status)
    assert.equal(posts[1].issued_refresh_token, H.hash(s.load().refresh_token))
    assert.is_nil(H.read(node .. "/pending.json")) -- gone once Redis took it
  end)

  it("leaves with its connection: after a delete nothing of it is written back", function()
    local node = dir .. "/node-delete"
    os.execute("mkdir -m 700 " .. q(node))
    local k = "fb:pending:deleted"
    orphan(k, node)
    local s = freshbooks.store.redis{ redis = R.factory(srv), key = k, pending = { dir = node } }
    assert.is_true(s.delete())
    assert.is_nil(s.load()) -- (it came back from the node's place before)
    assert.is_nil(freshbooks.store.redis{ redis = R.factory(srv), key = k }.load())
  end)

  it("of a new authorization replaces the node's pair of the grant before, and is what Redis gets", function()
    local node = dir .. "/node-regrant"
    os.execute("mkdir -m 700 " .. q(node))
    local k = "fb:pending:regrant"
    local s = freshbooks.store.redis{ redis = R.factory(srv, 0.3), key = k, pending = { dir = node } }
    assert(s.save(sb:token{}, nil))
    local before = assert(s.load())
    srv:kill() -- Redis away (no command of ours waits in it): a refresh of that grant, then a new
    -- authorization, both kept on the node
    local ok, err = s.save(sb:token{}, before)
    assert.is_nil(ok)
    assert.truthy(err.message:find("kept pending on this node", 1, true), err.message)
    local again = sb:token{}
    ok, err = s.save(again, nil)
    assert.is_nil(ok)
    assert.truthy(err.message:find("kept pending on this node", 1, true), err.message)
    srv:restart()
    local next_process = freshbooks.store.redis{ redis = R.factory(srv), key = k, pending = { dir = node } }
    assert.equal(H.hash(again.refresh_token), H.hash(next_process.load().refresh_token))
    assert.equal(H.hash(again.refresh_token), H.hash(freshbooks.store.redis{ redis = R.factory(srv), key = k }
      .load().refresh_token))
  end)

  it("is never read through a symlink, nor from a file of the wrong shape", function()
    local node = dir .. "/hostile"
    os.execute("mkdir -m 700 " .. q(node))
    local k = "fb:pending:hostile"
    local real = freshbooks.store.redis{ redis = R.factory(srv), key = k }
    assert(real.save({ access_token = "a-real", refresh_token = "r-real" }, nil))
    local planted = { [k] = { text = cjson.encode{ access_token = "a-planted", refresh_token = "r-planted" },
      version = 99, fence = "r-real", scope = k } }
    write(dir .. "/elsewhere.json", cjson.encode(planted))
    os.execute("ln -s " .. q(dir .. "/elsewhere.json") .. " " .. q(node .. "/pending.json"))
    local s = freshbooks.store.redis{ redis = R.factory(srv), key = k, pending = { dir = node } }
    assert.equal("r-real", s.load().refresh_token)
    os.remove(node .. "/pending.json")
    write(node .. "/pending.json", "[1, 2, 3]")
    os.execute("chmod 600 " .. q(node .. "/pending.json"))
    assert.equal("r-real", s.load().refresh_token)
    assert.equal("r-real", real.load().refresh_token) -- nothing planted reached Redis
  end)

  -- A store object is a process's view: a new one has seen no generation, as a process started after
  -- a wipe (a respawned worker, a plain process restarted).
  it("tells a process started after a wipe (its node saw the generation before) to wait for the holders", function()
    local node, other = dir .. "/gen-node", dir .. "/gen-other"
    os.execute("mkdir -m 700 " .. q(node) .. " " .. q(other))
    local k = "fb:pending:generation"
    local function store(place)
      return freshbooks.store.redis{ redis = R.factory(srv), key = k, pending = { dir = place } }
    end
    local holder = store(node)
    local pair = sb:token{}
    assert(holder.save(pair, nil)) -- the node saw the generation, and the holder holds the pair
    assert.is_truthy(H.read(node .. "/notes.json"))
    assert.is_nil(H.read(node .. "/pending.json")) -- a note is no pending pair
    srv:cli("FLUSHALL")
    -- A process of another node, which never saw Redis before: a new namespace to it, nothing to wait for.
    local t0 = core.clock.now()
    assert.is_nil(store(other).load())
    assert.is_true(core.clock.now() - t0 < 1)
    -- A process started on the holder's node: the node's note says Redis lost its data; it marks the
    -- generation for every process and reads the key again until the holders have had their chance.
    t0 = core.clock.now()
    assert.is_nil(store(node).load())
    local waited = core.clock.now() - t0
    assert.is_true(waited > 4 and waited < 8, ("waited %.2f s"):format(waited))
    assert.truthy(srv:cli("GET", k .. ":generation"):match("^%x+ %d+"))
    -- Now the other node's processes learn of the wipe from Redis, and the holder writes its pair back
    -- on its next use of Redis.
    local late = store(other)
    assert.is_nil(late.load()) -- (waits out what is left of the window)
    assert.equal(pair.refresh_token, holder.load().refresh_token)
    assert.equal(pair.refresh_token, late.load().refresh_token)
  end)

  it("in nginx survives a reload (HUP) in the shared dict; the new workers write it back and use it", function()
    local config = dir .. "/nginx.json"
    write(config, cjson.encode{ api_url = sb.url, client_id = sb.app.client_id, client_secret = sb.app.client_secret,
      redirect_uri = sb.app.redirect_uri, redis_port = srv.port, prefix = "fbp:", timeout = 3, lock_ttl = 1,
      lock_timeout = 5, store_timeout = 1, shared_dict = "fb_pending" })
    os.execute("chmod 600 " .. q(config))
    local app = "require('support.redis_app')"
    local ts = testserver.start{ workers = 2,
      http = testserver.lua_paths{ "spec", "build/deps/lua" } .. "\n  lua_shared_dict fb_pending 1m;"
        .. ("\n  init_by_lua_block { %s.configure(%q) }"):format(app, config)
        .. ("\n  init_worker_by_lua_block { %s.worker() }"):format(app),
      locations = ("location = /call { content_by_lua_block { %s.call() } }\n"
        .. "location = /pending { content_by_lua_block { %s.pending() } }"):format(app, app) }
    local client = core.http.client{ timeout = 20 }
    local function get(path)
      local status, _, body = client:request{ url = ts.url .. path }
      assert.equal(200, status, tostring(body) .. ts.log())
      return cjson.decode(body)
    end
    local ok, err = pcall(function()
      local stores = freshbooks.store.redis.keyspace{ redis = R.factory(srv), prefix = "fbp:" }
      assert(stores("c1").save(sb:token{}, nil))
      local since = H.last_seq(sb)
      local rotated = slow_rotation(since, 800)
      local first = dir .. "/first.json"
      os.execute("curl -s " .. q(ts.url .. "/call?c=c1&op=refresh") .. " > " .. q(first) .. " &")
      local issued = rotated().issued_refresh_token
      srv:pause()
      local answer = cjson.decode(W.wait_for("the first call's answer", function()
        local s = H.read(first)
        return s and s ~= "" and s
      end, 10))
      assert.is_false(answer.ok)
      assert.equal("save_failed", answer.code)
      assert.truthy(answer.message:find("kept pending on this node", 1, true), answer.message)
      assert.equal(1, get("/pending").entries)
      -- Reload: new workers; the one holding the pair in its memory exits.
      local old = sh("pgrep -P " .. ts.pid)
      os.execute("kill -HUP " .. ts.pid)
      W.wait_for("the old workers to exit", function()
        for pid in old:gmatch("%d+") do if sh("pgrep -P " .. ts.pid):find(pid, 1, true) then return false end end
        return true
      end, 10)
      srv:resume()
      local r = get("/call?c=c1&op=refresh")
      assert.is_true(r.ok, r.message)
      local posts = token_posts(since)
      assert.equal(2, #posts)
      assert.equal(issued, posts[2].refresh_token) -- the pair kept pending was the one spent
      assert.equal(200, posts[2].status)
      assert.equal(posts[2].issued_refresh_token, H.hash(stores("c1").load().refresh_token))
      assert.equal(0, get("/pending").entries)
      assert.is_false(H.leaks(ts.log(), { sb.app.client_secret }) or ts.log():find(string.rep("%x", 64)) ~= nil)
    end)
    client:close()
    ts.stop()
    assert(ok, err)
  end)
end)
