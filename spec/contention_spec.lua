-- Contention: coroutines in one process share one refresh; processes sharing one file store never
-- lose the single-use refresh token.
local cjson = require "cjson"
local freshbooks = require "freshbooks"
local transport = require "freshbooks.transport"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"

local ME = "/auth/api/v1/users/me"
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
      if req.url:find("/auth/oauth/token", 1, true) then coroutine.yield() end
      return real(req)
    end
  end

  local function run_all(fns)
    local cos, out = {}, {}
    for i, f in ipairs(fns) do cos[i] = coroutine.create(function() out[i] = { f() } end) end
    local alive
    repeat
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

  it("coroutines sharing a session trigger one refresh (due token and forced)", function()
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

  it("a caller that cannot yield gets refresh_in_progress instead of hanging", function()
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

  it("8 processes x 50 forced refreshes on one file store: no token lost", function()
    local procs, n = 8, 50
    local path = dir .. "/shared.json"
    local store = freshbooks.store.file(path)
    assert(store.save(sb:token{}))
    local since = H.last_seq(sb)
    local cmd = {}
    for i = 1, procs do
      cmd[#cmd + 1] = table.concat({ H.lua, "spec/support/contention_worker.lua", q(sb.url), q(sb.app.client_id),
        q(sb.app.redirect_uri), q(path), tostring(n) }, " ") .. " > " .. q(dir .. "/out." .. i) .. " 2>&1 &"
    end
    cmd[#cmd + 1] = "wait"
    local env = "FB_CLIENT_SECRET=" .. q(sb.app.client_secret) .. " "
    os.execute(env .. "sh -c " .. q(table.concat(cmd, "\n")))

    local refreshed, adopted, errors = 0, 0, {}
    for i = 1, procs do
      local text = H.read(dir .. "/out." .. i) or ""
      local line = text:match("({.*})%s*$")
      assert.is_string(line, "worker " .. i .. " printed no result:\n" .. text)
      local r = cjson.decode(line)
      assert.is_true(r.ok, r.failure)
      refreshed = refreshed + (r.outcomes.refreshed or 0)
      adopted = adopted + (r.outcomes.adopted or 0)
      for code, c in pairs(r.errors) do errors[code] = (errors[code] or 0) + c end
    end
    assert.same({}, errors) -- no reauth_required, no failure of any kind
    assert.equal(procs * n, refreshed + adopted)
    assert.is_true(refreshed >= n) -- real rotations happened, many of them

    -- The sandbox saw exactly those refreshes, every one of them accepted (no invalid_grant at all).
    local posts = {}
    for _, e in ipairs(H.log(sb, since)) do if H.is_token_post(e) then posts[#posts + 1] = e end end
    assert.equal(refreshed, #posts)
    for _, e in ipairs(posts) do assert.equal(200, e.status) end

    -- The stored pair is the newest: the sandbox accepts it for a call and for one more rotation.
    local fb = H.session(sb, { store = store })
    assert(fb:me())
    assert.is_true(posts[#posts].issued_refresh_token ~= nil)
    local since2 = H.last_seq(sb)
    assert.is_true(fb:refresh())
    local log = H.log(sb, since2)
    assert.equal(1, H.count(log, H.is_token_post))
    assert.equal(posts[#posts].issued_refresh_token, log[1].refresh_token)
    io.stderr:write(string.format("\n    contention: %d processes x %d forced refreshes -> %d rotations, "
      .. "%d adoptions, 0 errors\n", procs, n, refreshed, adopted))
  end)
end)
