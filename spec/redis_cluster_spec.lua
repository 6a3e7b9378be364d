-- Cluster contention through one Redis: 4 plain-Lua processes (Debian's lua-redis) and 2 nginx
-- instances of 2 workers each (lua-nginx-redis over cosockets), all forcing refreshes of the same
-- FreshBooks connection against the sandbox. With the store's lock: no reauth_required, no lost token,
-- and the stored pair is the newest the sandbox issued. Without it: losses (so the spec can fail).
local cjson = require "cjson"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"
local R = require "support.redis"
local H = require "support.fbtest"

local q = sandbox.shell_quote

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

describe("one connection, 4 processes and 2 nginx x 2 workers, one Redis", function()
  local sb, srv, dir
  setup(function()
    sb = sandbox.start{ invoices = 5 }
    srv = R.start{}
    dir = H.tmpdir()
  end)
  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  -- Every participant forces n refreshes; -> totals, the token posts, the store, wall time.
  local function run(n, mode)
    local key = "fb:cluster:" .. mode
    local store = freshbooks.store.redis{ redis = R.factory(srv), key = key }
    assert(store.save(sb:token{}))
    local first = store.load().version
    local since = H.last_seq(sb)
    local go, config = dir .. "/go-" .. mode, dir .. "/config-" .. mode .. ".json"
    write(config, cjson.encode{ api_url = sb.url, client_id = sb.app.client_id, client_secret = sb.app.client_secret,
      redirect_uri = sb.app.redirect_uri, redis_port = srv.port, key = key, n = n, go = go, mode = mode })
    os.execute("chmod 600 " .. q(config))
    local outs, servers = {}, {}
    for i = 1, 2 do
      local prefix = dir .. "/nginx" .. i .. "-" .. mode
      servers[i] = testserver.start{ workers = 2, http = testserver.lua_paths{ "spec", "build/deps/lua" } ..
        ("\n  init_worker_by_lua_block { require('support.redis_worker').nginx(%q, %q) }"):format(config, prefix) }
      outs[#outs + 1] = { prefix = prefix, count = 2 }
    end
    for i = 1, 4 do
      local out = dir .. "/proc" .. i .. "-" .. mode
      os.execute(H.lua .. " spec/support/redis_worker.lua " .. q(config) .. " " .. q(out) .. " >" .. q(out .. ".log")
        .. " 2>&1 &")
      outs[#outs + 1] = { file = out }
    end
    local t0 = os.time()
    write(go, "")
    -- Every participant's result, within a generous bound.
    local results
    for _ = 1, 1200 do
      results = {}
      for _, o in ipairs(outs) do
        if o.file then
          local s = H.read(o.file)
          if s then results[#results + 1] = s end
        else
          local p = io.popen("cat " .. q(o.prefix) .. ".[0-9]* 2>/dev/null")
          for line in p:lines() do results[#results + 1] = line end
          p:close()
        end
      end
      if #results == 8 then break end
      os.execute("sleep 0.1")
    end
    local seconds = os.time() - t0
    -- Nothing secret reached nginx's error logs or the processes' output (tokens are 64 hex digits).
    local logs = servers[1].log() .. servers[2].log()
    for i = 1, 4 do logs = logs .. (H.read(dir .. "/proc" .. i .. "-" .. mode .. ".log") or "") end
    assert.is_false(H.leaks(logs, { sb.app.client_secret }) or logs:find(string.rep("%x", 64)) ~= nil)
    os.execute("kill -TERM " .. servers[1].pid .. " " .. servers[2].pid) -- both shut down at once
    for _, s in ipairs(servers) do s.stop() end
    assert.equal(8, #results, "not every participant finished:\n" .. (H.read(dir .. "/proc1-" .. mode .. ".log") or ""))
    local r = { errors = {}, messages = {}, refreshed = 0, adopted = 0, store = store, posts = {}, seconds = seconds,
      first = first,
      carried = 0 }
    for _, line in ipairs(results) do
      local w = cjson.decode(line)
      assert.is_true(w.ok, w.failure)
      r.refreshed = r.refreshed + (w.outcomes.refreshed or 0)
      r.adopted = r.adopted + (w.outcomes.adopted or 0)
      r.carried = r.carried + #w.carried
      for code, c in pairs(w.errors) do r.errors[code] = (r.errors[code] or 0) + c end
      for code, m in pairs(w.messages) do r.messages[code] = m end
    end
    for _, e in ipairs(H.log(sb, since)) do if H.is_token_post(e) then r.posts[#r.posts + 1] = e end end
    return r
  end

  it("with the lock: 8 x 100 forced refreshes, 0 reauth_required, 0 lost, the stored pair accepted", function()
    local n = 100
    local r = run(n, "lock")
    for code, c in pairs(r.errors) do error(("unexpected error %s x%d: %s"):format(code, c, r.messages[code])) end
    assert.equal(8 * n, r.refreshed + r.adopted)
    assert.equal(r.refreshed, #r.posts) -- every token call was one rotation, none was refused
    for _, e in ipairs(r.posts) do assert.equal(200, e.status) end
    local stored = r.store.load()
    assert.equal(H.newest_issued(sb, 0), H.hash(stored.refresh_token))
    assert.equal(r.first + r.refreshed, stored.version) -- one write per rotation after the first save
    local fb = H.session(sb, { store = r.store })
    assert(fb:me())
    assert.is_true(fb:refresh())
    io.stderr:write(("\n    redis cluster: 4 processes + 2 nginx x 2 workers, %d forced refreshes each -> %d rotations,"
      .. " "
      .. "%d adoptions in %d s, 0 reauth_required, 0 lost, stored version %d accepted\n"):format(n, r.refreshed,
      r.adopted, r.seconds, stored.version))
  end)

  it("without the lock the same run loses the connection (so the spec above can fail)", function()
    local r = run(50, "nolock")
    assert.is_true((r.errors.reauth_required or 0) > 0, "no loss without the lock")
    io.stderr:write(("    redis cluster without the lock: 8 x 50 refreshes -> %d reauth_required\n")
      :format(r.errors.reauth_required))
  end)
end)
