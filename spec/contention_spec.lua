-- Contention: coroutines in one process share one refresh; processes sharing one file store never
-- lose the single-use refresh token.
local cjson = require "cjson"
local freshbooks = require "freshbooks"
local transport = require "freshbooks.transport"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local core = require "freshbooks.core"

local ME = "/auth/api/v1/users/me"
-- Plain Lua 5.1 cannot yield across pcall, which the session's refresh runs in: a transport that yields
-- needs Lua 5.2+ or LuaJIT (docs/session.md). The processes' specs below hold everywhere.
local YIELDS = not (_VERSION == "Lua 5.1" and not rawget(_G, "jit"))
local it_yielding = YIELDS and it or function(name) pending(name .. " (Lua 5.1 cannot yield across pcall)") end
local q = sandbox.shell_quote

describe("contention", function()
  local sb, dir
  setup(function()
    sb = sandbox.start{ invoices = 5 }
    dir = H.tmpdir()
  end)
  teardown(function()
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  -- A transport that yields (like a cosocket would) while a token request is on the wire.
  local function yielding()
    local real = transport.curl{ timeout = 10 }
    return function(req)
      if req.url:find("/auth/oauth/token", 1, true) and coroutine.isyieldable() then coroutine.yield() end
      return real(req)
    end
  end

  local function run_all(fns)
    local cos, out = {}, {}
    for i, f in ipairs(fns) do cos[i] = coroutine.create(function() out[i] = { f() } end) end
    local alive, rounds
    rounds = 0
    repeat
      rounds = rounds + 1
      assert(rounds <= 100000, "the coroutines never finished")
      alive = false
      for _, co in ipairs(cos) do
        if coroutine.status(co) ~= "dead" then
          alive = true
          local ok, err = coroutine.resume(co)
          assert(ok, err)
        end
      end
    until not alive
    return out
  end

  it_yielding("coroutines sharing a session trigger one refresh (due token and forced)", function()
    local offset = 0
    local fb = H.session(sb, { transport = yielding(), clock = function() return os.time() + offset end })
    offset = 43200 -- every coroutine finds the token due
    local since = H.last_seq(sb)
    local fns = {}
    for i = 1, 10 do fns[i] = function() return fb:request{ path = ME } end end
    local out = run_all(fns)
    for i = 1, 10 do assert.equal(200, out[i][1] and out[i][1].status) end
    local log = H.log(sb, since)
    assert.equal(1, H.count(log, H.is_token_post))
    assert.equal(10, H.count(log, function(e) return e.path == ME and e.status == 200 end))

    since = H.last_seq(sb)
    for i = 1, 10 do fns[i] = function() return fb:refresh() end end
    out = run_all(fns)
    for i = 1, 10 do assert.is_true(out[i][1]) end
    assert.equal(1, H.count(H.log(sb, since), H.is_token_post))
  end)

  it_yielding("a caller that cannot yield gets refresh_in_progress instead of hanging", function()
    local fb = H.session(sb, { transport = yielding() })
    local co = coroutine.create(function() return fb:refresh() end)
    assert(coroutine.resume(co)) -- suspended inside the refresh
    local ok, err = fb:refresh() -- the main thread cannot wait
    assert.is_nil(ok)
    assert.equal("refresh_in_progress", err.code)
    local resumed, done = coroutine.resume(co)
    assert.is_true(resumed)
    assert.is_true(done)
  end)

  it_yielding("a batch or a stream whose caller cannot yield gets refresh_in_progress at once", function()
    local fb = H.session(sb, { transport = yielding() })
    local co = coroutine.create(function() return fb:refresh() end)
    assert(coroutine.resume(co)) -- suspended inside the refresh
    sb:admin("POST", "/_sandbox/clock", { advance = 43200 }) -- the access token is dead at the server
    local started = os.time()
    local out = fb:batch{ { path = ME }, { path = ME } }
    for i = 1, 2 do assert.equal("refresh_in_progress", out[i].err and out[i].err.code) end
    local s = assert(fb:stream())
    local id = s:add{ path = ME }
    local got, res, err = s:next()
    assert.equal(id, got)
    assert.is_nil(res)
    assert.equal("refresh_in_progress", err.code)
    s:close()
    assert.is_true(os.time() - started < 5, "waited for a refresh it could not wait for")
    local resumed, done = coroutine.resume(co)
    sb:admin("POST", "/_sandbox/clock", { offset = 0 })
    assert.is_true(resumed)
    assert.is_true(done)
  end)

  it_yielding("a refresh whose coroutine was dropped mid-call is taken over, not waited for forever", function()
    local logged = {}
    local fb = H.session(sb, { transport = yielding(), log = function(e) logged[#logged + 1] = e.outcome end })
    local since = H.last_seq(sb)
    do -- an nginx request aborted while its token call was on the wire: its coroutine is never resumed
      local co = coroutine.create(function() return fb:refresh() end)
      assert(coroutine.resume(co))
      assert.equal("suspended", coroutine.status(co))
    end
    collectgarbage()
    collectgarbage()
    local out = run_all{ function() return fb:refresh() end, function() return fb:request{ path = ME } end }
    assert.is_true(out[1][1], tostring(out[1][2]))
    assert.equal(200, out[2][1] and out[2][1].status, tostring(out[2][2]))
    assert.equal(1, H.count(H.log(sb, since), H.is_token_post)) -- the dropped one never sent its POST
    assert.truthy(table.concat(logged, " "):find("abandoned", 1, true))

    -- a waiter that sleeps (ngx.sleep in OpenResty) finds it by itself, without the collector's help: the
    -- collector is stopped here, or a step of it may find the dropped coroutine first (LuaJIT did, under load)
    collectgarbage("stop")
    finally(function() collectgarbage("restart") end)
    local slept = 0
    fb = H.session(sb, { transport = yielding(), sleep = function(s) slept = slept + s; core.clock.sleep(s) end })
    do
      local co = coroutine.create(function() return fb:refresh() end)
      assert(coroutine.resume(co))
    end
    assert.is_true(fb:refresh())
    assert.is_true(slept > 0.5 and slept < 60, slept) -- one full collection after a second of waiting
  end)

  -- N processes x n forced refreshes through one file store, with the sandbox failing `rate` of the
  -- token calls (503, a reset before anything is handled, 429: none of them rotates) and a loop
  -- deleting any lock file it finds. -> per-code error counts, rotations, adoptions, the token posts.
  local function run_workers(procs, n, mode, rate)
    local path = dir .. "/shared-" .. (mode or "lock") .. ".json"
    local store = freshbooks.store.file(path)
    assert(store.save(sb:token{}))
    sb:admin("DELETE", "/_sandbox/faults")
    if rate > 0 then
      local rules = {}
      for _, fault in ipairs{ "503", "reset", "429" } do
        rules[#rules + 1] = { route = "/auth/oauth/token", fault = fault, rate = rate / 3 }
      end
      sb:admin("POST", "/_sandbox/faults", { rules = rules })
    end
    local since = H.last_seq(sb)
    local cmd = { "( while :; do rm -f " .. q(dir) .. "/*.lock; sleep 0.01; done ) & deleter=$!" }
    for i = 1, procs do
      cmd[#cmd + 1] = table.concat({ H.lua, "spec/support/contention_worker.lua", q(sb.url), q(sb.app.client_id),
        q(sb.app.redirect_uri), q(path), tostring(n), mode or "" }, " ") .. " > " .. q(dir .. "/out." .. i)
        .. " 2>&1 & pids=\"$pids $!\""
    end
    cmd[#cmd + 1] = "wait $pids; kill $deleter"
    local env = "FB_CLIENT_SECRET=" .. q(sb.app.client_secret) .. " "
    os.execute(env .. "sh -c " .. q(table.concat(cmd, "\n")))
    sb:admin("DELETE", "/_sandbox/faults")
    local r = { errors = {}, refreshed = 0, adopted = 0, store = store, posts = {} }
    for i = 1, procs do
      local text = H.read(dir .. "/out." .. i) or ""
      local line = text:match("({.*})%s*$")
      assert.is_string(line, "worker " .. i .. " printed no result:\n" .. text)
      local w = cjson.decode(line)
      assert.is_true(w.ok, w.failure)
      r.refreshed = r.refreshed + (w.outcomes.refreshed or 0)
      r.adopted = r.adopted + (w.outcomes.adopted or 0)
      for code, c in pairs(w.errors) do r.errors[code] = (r.errors[code] or 0) + c end
    end
    for _, e in ipairs(H.log(sb, since)) do if H.is_token_post(e) then r.posts[#r.posts + 1] = e end end
    return r
  end

  -- 480 refreshes race for the lock (some 70 of them failing); FB_SLOW=1 runs 1,600.
  local ROUNDS = os.getenv("FB_SLOW") == "1" and 200 or 60
  it(("8 processes x %d forced refreshes, 15%% of token calls failing: no token lost"):format(ROUNDS), function()
    local procs, n = 8, ROUNDS
    local r = run_workers(procs, n, nil, 0.15)
    -- Failures happened and were reported, but none cost the token: no reauth_required, no
    -- invalid_grant at FreshBooks, and only the injected kinds of error.
    assert.is_nil(r.errors.reauth_required)
    local injected = 0
    for code, c in pairs(r.errors) do
      assert.is_true(code == "refresh_uncertain" or code == "rate_limited", "unexpected error " .. code)
      injected = injected + c
    end
    assert.is_true(injected > 0, "no fault was injected")
    assert.equal(procs * n, r.refreshed + r.adopted + injected)
    for _, e in ipairs(r.posts) do assert.is_true(e.status ~= 400, "FreshBooks refused a refresh token") end

    -- The stored pair is the newest FreshBooks issued, and it works for a call and one more rotation.
    local newest = H.newest_issued(sb, 0)
    assert.equal(newest, H.hash(r.store.load().refresh_token))
    local fb = H.session(sb, { store = r.store })
    assert(fb:me())
    assert.is_true(fb:refresh())
    io.stderr:write(string.format("\n    contention: %d processes x %d forced refreshes, 15%% faults -> %d rotations, "
      .. "%d adoptions, %d injected failures, 0 reauth_required, 0 lost\n", procs, n, r.refreshed, r.adopted, injected))
  end)

  it("the same without the store's lock loses tokens (so the spec above can fail)", function()
    local r = run_workers(8, 30, "nolock", 0)
    assert.is_true((r.errors.reauth_required or 0) > 0, "no loss without the lock")
    io.stderr:write(string.format("    without the lock: 8 x 30 refreshes -> %d reauth_required\n",
      r.errors.reauth_required))
  end)
end)
