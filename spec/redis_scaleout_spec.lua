-- The scale-out of issue #24, run as users deploy it: one sandbox, one Redis (AOF), two nginx of two
-- workers (spec/support/redis_app.lua: connections over a keyspace, the node's pending pairs in a
-- shared dict, a flush timer) driven over HTTP, and plain processes (spec/support/redis_scaleout.lua:
-- the node's pending pairs in one directory), many connections, calls and forced refreshes at random,
-- while this spec injects faults: worker SIGKILL, Redis SIGSTOP past the lock TTL, Redis restarted with
-- and without its data, a slow and a failing token endpoint, an answer lost on the wire, a lock holder
-- killed while FreshBooks answers, nginx -s reload while Redis is away.
--
-- Every token call is written down by its caller (the hash of the refresh token it presented, and what
-- came back) and by the sandbox (its log), so each rotation chain of each connection is followed to its
-- end. A chain that ends in a pair nobody holds is a lost pair; its cause is read from the calls: the
-- answer never arrived (lost on the wire), its caller was killed while FreshBooks answered, the pair's
-- only holders were gone when Redis came back empty (no persistence), or none of these: a loss a client
-- could have prevented. A reauth_required while the connection's chain was alive is a false one. The
-- spec prints one line and fails on any preventable loss and any false reauth_required.
-- Quick by default (one round of every fault, 10 s of load); FB_SLOW=1 runs the round over and over
-- for 5 minutes, with more connections and processes.
local cjson = require "cjson"
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"
local R = require "support.redis"
local H = require "support.fbtest"
local W = require "support.redis_worker"

local q = sandbox.shell_quote
local SLOW = os.getenv("FB_SLOW") == "1"
local ROUND = 10                       -- seconds: every fault once, then a second and a half of quiet
local LOAD = SLOW and 30 * ROUND or ROUND -- seconds of load
local CONNECTIONS = SLOW and 40 or 16
local PLAIN = SLOW and 4 or 2           -- plain processes
local TIMEOUT, LOCK_TTL = 2, 1          -- the session's timeout (the lock covers a call: 4 s), the lock's TTL

local function sh(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local out = p:read("*a")
  p:close()
  return out
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Epoch seconds (the sandbox logs on that clock): one reading of `date`, then the monotonic clock.
local now_wall
do
  local base, mono = tonumber(sh("date +%s.%N")), core.clock.now()
  now_wall = function() return base + core.clock.now() - mono end
end

-- The sandbox's names of many tokens (H.hash's), by one sha256sum; the tokens go through files in a
-- 0700 directory, never a command line.
local function hashes(tokens)
  local d = H.tmpdir()
  local names = {}
  for i, t in ipairs(tokens) do
    names[i] = tostring(i)
    write(d .. "/" .. i, t)
  end
  local out = {}
  if #names > 0 then
    local text = sh("cd " .. q(d) .. " && sha256sum " .. table.concat(names, " "))
    for hex, name in text:gmatch("(%x+)%s+(%d+)") do out[tonumber(name)] = hex:sub(1, 12) end
  end
  H.rmdir(d)
  return out
end

describe("scale-out: 2 nginx x 2 workers and plain processes, one Redis, faults", function()
  local sb, srv, dir
  local nginx, plain, procs = {}, {}, {}
  setup(function()
    sb = sandbox.start{ invoices = 5 }
    srv = R.start{ aof = true }
    dir = H.tmpdir()
  end)
  teardown(function()
    write(dir .. "/stop", "")
    for _, p in ipairs(procs) do
      if p.pid then os.execute("kill -KILL " .. p.pid .. " 2>/dev/null") R.register(p.pid, false) end
    end
    for _, n in ipairs(nginx) do n.ts.stop() end
    if srv then srv:stop() end
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  it("loses only what no client can keep, and never says reauth_required for a live connection", function()
    -- Connections: one sandbox user each (a grant is one app and one user).
    local ids, roots = {}, {} -- roots[id] = { {hash, time}, ... }: the initial grant, then each re-authorization
    local stores = freshbooks.store.redis.keyspace{ redis = R.factory(srv, 2), prefix = "so:" }
    local granted_at, tokens = {}, {}
    for i = 1, CONNECTIONS do
      local id = ("sc%02d"):format(i)
      ids[i] = id
      assert(sb:admin("POST", "/_sandbox/users", { login = id }).id)
      local t = sb:token{ user = id }
      assert(stores(id).save(t, nil))
      granted_at[i], tokens[i] = now_wall(), t.refresh_token
    end
    for i, h in ipairs(hashes(tokens)) do roots[ids[i]] = { { hash = h, time = granted_at[i] } } end
    local posts, last_seq = {}, H.last_seq(sb) -- (before anything else can rotate)
    local node = dir .. "/node"
    os.execute("mkdir -m 700 " .. q(node))
    local config = { api_url = sb.url, client_id = sb.app.client_id, client_secret = sb.app.client_secret,
      redirect_uri = sb.app.redirect_uri, redis_port = srv.port, prefix = "so:", ids = ids, node = node,
      timeout = TIMEOUT, lock_ttl = LOCK_TTL, lock_timeout = 3, store_timeout = 0.5, refresh_rate = 0.08,
      concurrency = 6, stop = dir .. "/stop", seed = 24, shared_dict = "fb_pending", nginx = {} }

    -- Two nginx of two workers.
    local app = "require('support.redis_app')"
    for i = 1, 2 do
      local c = {}
      for k, v in pairs(config) do c[k] = v end
      c.trace = dir .. "/trace.n" .. i
      local file = dir .. "/nginx" .. i .. ".json"
      write(file, cjson.encode(c))
      local ts = testserver.start{ workers = 2,
        http = testserver.lua_paths{ "spec", "build/deps/lua", "sandbox/lua" } .. "\n  lua_shared_dict fb_pending 1m;"
          .. ("\n  init_by_lua_block { %s.configure(%q) }"):format(app, file)
          .. ("\n  init_worker_by_lua_block { %s.worker() }"):format(app),
        locations = ("location = /call { content_by_lua_block { %s.call() } }\n"
          .. "location = /health { content_by_lua_block { %s.health() } }"):format(app, app) }
      nginx[i] = { ts = ts, trace = c.trace }
      config.nginx[i] = ts.url
    end
    local config_file = dir .. "/config.json"
    write(config_file, cjson.encode(config))

    -- The processes: plain participants (restarted when killed), the driver of both nginx, the prober.
    local function spawn(kind, name, trace)
      local out = dir .. "/" .. name
      local p = io.popen(("%s spec/support/redis_scaleout.lua %s %s %s %s >%s 2>&1 & echo $!"):format(H.lua, kind,
        q(config_file), q(out), trace and q(trace) or "", q(out .. ".log")))
      local pid = tonumber(p:read("*a"):match("%d+"))
      p:close()
      R.register(pid, true)
      local proc = { kind = kind, pid = pid, out = out, trace = trace }
      procs[#procs + 1] = proc
      return proc
    end
    for i = 1, PLAIN do
      plain[i] = spawn("plain", "plain" .. i .. ".1", dir .. "/trace.p" .. i .. ".1")
      plain[i].slot, plain[i].gen = i, 1
    end
    spawn("driver", "driver")
    local prober = spawn("prober", "prober")

    -- The sandbox's log, read as the run goes (it keeps the last 20000 entries): token calls only,
    -- each once answered (an entry is made when the request arrives; a refusal made before handling,
    -- a 503 fault, is never marked answered: taken as it is after 5 s).
    local function poll()
      local now = now_wall()
      for _, e in ipairs(H.log(sb, last_seq)) do
        if not e.done and now - e.time < 5 then break end
        assert(e.seq == last_seq + 1, "the sandbox's log dropped entries")
        last_seq = e.seq
        if H.is_token_post(e) and e.grant_type == "refresh_token" then posts[#posts + 1] = e end
      end
    end

    -- Trace files: who presented which refresh token, and whether its answer came.
    local killed = {} -- trace file -> when its process was killed
    local gone = {} -- trace file -> when its process ended (killed, or an old worker after a reload)
    local function trace_files()
      local files = {}
      for f in sh("ls " .. q(dir) .. " | grep '^trace\\.'"):gmatch("[^\n]+") do files[#files + 1] = dir .. "/" .. f end
      return files
    end
    local function open_calls(file) -- calls begun and not answered
      local open = {}
      for line in (H.read(file) or ""):gmatch("[^\n]+") do
        local kind, n, what = line:match("^(%u) (%d+) (%S+)")
        if kind == "B" then open[n] = what elseif kind == "E" then open[n] = nil end
      end
      return open
    end
    local function nginx_workers(i) return sh("pgrep -P " .. nginx[i].ts.pid) end
    local function kill(pid, trace)
      os.execute("kill -KILL " .. pid)
      if trace then killed[trace], gone[trace] = now_wall(), now_wall() end
    end
    local function kill_worker(i, pid)
      pid = pid or nginx_workers(i):match("%d+")
      if pid then kill(pid, nginx[i].trace .. "." .. pid) end
    end
    local function kill_plain(p)
      kill(p.pid, p.trace)
      R.register(p.pid, false)
      p.pid = nil
      local gen = p.gen + 1
      local fresh = spawn("plain", "plain" .. p.slot .. "." .. gen, dir .. "/trace.p" .. p.slot .. "." .. gen)
      fresh.slot, fresh.gen = p.slot, gen
      plain[p.slot] = fresh
    end
    local function fault(rule) sb:admin("POST", "/_sandbox/faults", rule) end
    local TOKEN = "/auth/oauth/token"
    local wipes = {}

    -- The faults of one round, at seconds from its start.
    local round = {
      { 0.5, "slow token endpoint", function()
        fault{ route = TOKEN, fault = "delay_after", ms = 1200, times = 4 }
      end },
      { 1, "worker SIGKILL", function()
        kill_worker(1)
        kill_plain(plain[1])
      end },
      { 1.5, "Redis restarted without its data", function()
        srv:restart{ wipe = true }
        wipes[#wipes + 1] = now_wall()
      end },
      { 2.5, "Redis SIGSTOP past the lock TTL", function() srv:pause() end },
      { 4, nil, function() srv:resume() end },
      { 4.5, "failing token endpoint, an answer lost on the wire", function()
        fault{ route = TOKEN, fault = "503", times = 3 }
        fault{ route = TOKEN, fault = "reset_after", times = 1 }
      end },
      { 5, "Redis restarted with its data", function() srv:restart() end },
      { 5.5, "a lock holder killed while FreshBooks answers", function()
        fault{ route = TOKEN, fault = "delay_after", ms = 1500, times = 1 }
        local t0 = core.clock.now()
        while core.clock.now() - t0 < 1.5 do
          for _, file in ipairs(trace_files()) do
            if not killed[file] and next(open_calls(file)) then
              local pid = file:match("trace%.n%d%.(%d+)$")
              if pid then
                kill_worker(tonumber(file:match("trace%.n(%d)")), pid)
                return
              end
              for _, p in ipairs(plain) do if p.trace == file then kill_plain(p) return end end
            end
          end
          core.clock.sleep(0.05)
        end
      end },
      { 7.5, "nginx -s reload while Redis is away", function()
        fault{ route = TOKEN, fault = "delay_after", ms = 800, times = 2 }
        srv:pause()
      end },
      { 8, nil, function()
        for pid in nginx_workers(2):gmatch("%d+") do gone[nginx[2].trace .. "." .. pid] = now_wall() end
        os.execute("kill -HUP " .. nginx[2].ts.pid)
      end },
      { 8.5, nil, function() srv:resume() end },
    }
    local schedule = {}
    for start = 0, LOAD - ROUND, ROUND do
      for _, f in ipairs(round) do schedule[#schedule + 1] = { at = start + f[1], name = f[2], run = f[3] } end
    end

    -- The monitor: a connection every participant finds dead (reauth_required, no rotation for 3 s) is
    -- authorized again, as its user would.
    local events_seen, reauths, granted = {}, {}, {} -- granted: a new grant Redis has not taken yet
    local function events()
      local out = {}
      for _, p in ipairs(procs) do
        for line in (H.read(p.out .. ".events") or ""):gmatch("[^\n]+") do
          local began, t, id, why = line:match("^(%S+) (%S+) (%S+) ?(.*)$")
          out[#out + 1] = { began = tonumber(began), time = tonumber(t), id = id, why = why }
        end
      end
      return out
    end
    local function last_rotation(id)
      local chain = {}
      for _, r in ipairs(roots[id]) do chain[r.hash] = r.time end
      local latest = roots[id][#roots[id]].time
      for _, e in ipairs(posts) do
        if e.status == 200 and chain[e.refresh_token] then
          chain[e.issued_refresh_token] = e.time
          latest = math.max(latest, e.time)
        end
      end
      return latest
    end
    local function monitor()
      local now = now_wall()
      for _, ev in ipairs(events()) do
        local key = ev.id .. "@" .. ev.time
        if not events_seen[key] then
          events_seen[key] = true
          reauths[ev.id] = math.max(reauths[ev.id] or 0, ev.began)
        end
      end
      for id, t in pairs(reauths) do
        local root = roots[id][#roots[id]]
        if granted[id] or (t > root.time and now - last_rotation(id) > 3) then
          local fresh = granted[id] or sb:token{ user = id }
          granted[id] = fresh
          if stores(id).save(fresh, nil) then -- (else Redis is away: saved on a later round)
            granted[id] = nil
            roots[id][#roots[id] + 1] = { hash = H.hash(fresh.refresh_token), time = now_wall() }
          end
        end
      end
    end

    -- The run.
    local started = core.clock.now()
    local next_poll, next_monitor, i = 0, 0, 1
    while core.clock.now() - started < LOAD do
      local t = core.clock.now() - started
      while schedule[i] and schedule[i].at <= t do
        schedule[i].run()
        i = i + 1
      end
      if t >= next_poll then poll(); next_poll = t + 0.5 end
      if t >= next_monitor then monitor(); next_monitor = t + 0.5 end
      core.clock.sleep(0.05)
    end
    if srv.pid then srv:resume() end
    sb:admin("DELETE", "/_sandbox/faults")
    write(config.stop, "")
    W.wait_for("every process to stop", function()
      for _, p in ipairs(procs) do
        if p.pid then
          local r = H.read(p.out)
          if not (r and cjson.decode(r).final) then return false end
        end
      end
      return true
    end, 30)
    for _, p in ipairs(procs) do if p.pid then R.register(p.pid, false) p.pid = nil end end
    local seconds = core.clock.now() - started
    -- What the node kept pending goes back (the nginx timers do it every second), then the log's end.
    local node_stores = freshbooks.store.redis.keyspace{ redis = R.factory(srv, 2), prefix = "so:",
      pending = { dir = node } }
    assert(node_stores.flush())
    core.clock.sleep(1.1)
    W.wait_for("the sandbox to answer every call", function()
      poll()
      local e = H.log(sb, last_seq)[1]
      return e == nil
    end, 10)
    monitor()
    assert.is_nil(next(granted), "a new grant Redis never took")

    -- The chains. Each refresh token issued -> the call that issued it; each root -> its connection.
    local issued_by, next_of = {}, {}
    for _, e in ipairs(posts) do
      if e.status == 200 and e.issued_refresh_token then
        issued_by[e.issued_refresh_token] = e
        next_of[e.refresh_token] = e.issued_refresh_token
      end
    end
    -- Every call of every trace, by the refresh token it presented.
    local calls = {}
    for _, file in ipairs(trace_files()) do
      local begun = {}
      for line in (H.read(file) or ""):gmatch("[^\n]+") do
        local kind, n, what, at = line:match("^(%u) (%d+) (%S+) (%S+)$")
        if kind == "B" then
          begun[n] = { file = file, hash = what, began = tonumber(at) }
          calls[what] = calls[what] or {}
          table.insert(calls[what], begun[n])
        elseif kind == "E" and begun[n] then
          begun[n].outcome, begun[n].ended = what, tonumber(at)
        end
      end
    end
    -- Why the pair the call e issued (the sandbox's log entry) was lost.
    local function cause(e, root_time)
      if not e then -- a root, never rotated: only this spec and the processes that loaded it held it
        for _, w in ipairs(wipes) do if w > root_time then return "wiped" end end
        return "preventable"
      end
      -- The caller's record of the call that got h: the last to present e.refresh_token before the
      -- sandbox answered it, among those that got no answer, a 200, or no HTTP answer at all (a 400,
      -- a 503 came from calls FreshBooks refused).
      local mine
      for _, c in ipairs(calls[e.refresh_token] or {}) do
        local refused = c.outcome and c.outcome:match("^%d+$") and c.outcome ~= "200"
        if not refused and c.began <= e.time + 0.05 and (not mine or c.began > mine.began) then mine = c end
      end
      if not mine then return "preventable" end
      local k = killed[mine.file]
      if not mine.outcome then return k and "killed" or "preventable" end
      if mine.outcome ~= "200" then return "wire" end -- the answer never reached its caller
      if k and k - mine.ended < 1 then return "killed" end -- between the answer and its save
      local g = gone[mine.file]
      for _, w in ipairs(wipes) do
        if e.time < w and g and g < w then return "wiped" end -- its only holder was gone when Redis came back empty
      end
      return "preventable"
    end

    -- What happened to connection id between t0 and t1, for a failure's message: its refresh outcomes
    -- (L), its token calls as their callers saw them (B/E) and as the sandbox answered them (FB),
    -- refresh tokens by the first 6 digits of their hash.
    local owner = {}
    for id, rs in pairs(roots) do
      for _, r in ipairs(rs) do
        local h = r.hash
        while h and not owner[h] do owner[h] = id; h = next_of[h] end
      end
    end
    local function story(id, t0, t1)
      local out = {}
      local function add(t, text) if t and t >= t0 and t <= t1 then out[#out + 1] = { t, text } end end
      for _, file in ipairs(trace_files()) do
        local name, hash_of = file:match("trace%.(.*)$"), {}
        for line in (H.read(file) or ""):gmatch("[^\n]+") do
          local kind, a, b, at = line:match("^(%u) (%S+) (%S+) (%S+)$")
          if kind == "L" and a == id then add(tonumber(at), name .. " " .. b) end
          if kind == "B" then
            hash_of[a] = b
            if owner[b] == id then add(tonumber(at), name .. " sends " .. b:sub(1, 6)) end
          end
          if kind == "E" and owner[hash_of[a] or ""] == id then add(tonumber(at), name .. " got " .. b) end
        end
      end
      for _, e in ipairs(posts) do
        if owner[e.refresh_token] == id then
          add(e.time, ("FB %s %s->%s"):format(tostring(e.status), e.refresh_token:sub(1, 6),
            tostring(e.issued_refresh_token):sub(1, 6)))
        end
      end
      table.sort(out, function(a, b) return a[1] < b[1] end)
      for k, x in ipairs(out) do out[k] = ("    %.3f %s"):format(x[1], x[2]) end
      return table.concat(out, "\n")
    end
    local lost, losses, dead_at = { wire = 0, killed = 0, wiped = 0, preventable = 0 }, {}, {}
    local alive, dead = {}, {} -- by connection: its newest chain ends in the stored pair, or was lost
    local stored_of, stored_tokens = {}, {}
    for k, id in ipairs(ids) do
      stored_of[id] = stores(id).load()
      stored_tokens[k] = stored_of[id] and stored_of[id].refresh_token or ""
    end
    local stored_hashes = hashes(stored_tokens)
    for k, id in ipairs(ids) do
      local stored = stored_of[id]
      local stored_hash = stored and stored_hashes[k]
      for j, root in ipairs(roots[id]) do
        local h = root.hash
        while next_of[h] do h = next_of[h] end
        local current = j == #roots[id]
        if current and h == stored_hash then
          alive[id] = stored
        else -- a lost chain, the current one included: its cause is counted (a preventable one fails)
          dead[id] = dead[id] or current
          local why = cause(issued_by[h], root.time)
          lost[why] = lost[why] + 1
          local e = issued_by[h]
          local n, in_chain = 0, nil
          local x = root.hash
          while x do
            n = n + 1
            if x == stored_hash then in_chain = n end
            x = next_of[x]
          end
          local who = {}
          for _, c in ipairs(e and calls[e.refresh_token] or {}) do
            who[#who + 1] = ("%s %s %.3f-%s"):format(c.file:match("[^/]+$"), tostring(c.outcome), c.began,
              tostring(c.ended))
          end
          if why == "preventable" then
            losses[#losses + 1] = ("%s: chain %d of %d; %d pairs, stored is pair %s, version %s; issued at %.3f"
              .. " by [%s]; gone %s; wipes %s\n%s"):format(id, j, #roots[id], n, tostring(in_chain),
              tostring(stored and stored.version), e and e.time or 0, table.concat(who, "; "),
              cjson.encode(gone), cjson.encode(wipes), story(id, (e and e.time or root.time) - 8, math.huge))
          end
          -- From the lost pair's issue on, the connection was dead until its next grant.
          dead_at[id .. "#" .. j] = issued_by[h] and issued_by[h].time or root.time
        end
      end
    end
    -- A reauth_required while the connection's chain was alive is false.
    local false_reauth, genuine, falses = 0, 0, {}
    for _, ev in ipairs(events()) do
      local j = 1 -- the grant in force when the call began (a call may outlast a new grant)
      for k, root in ipairs(roots[ev.id]) do if root.time <= ev.began then j = k end end
      local lost_at = dead_at[ev.id .. "#" .. j]
      if lost_at and ev.time >= lost_at - 0.05 then
        genuine = genuine + 1
      else
        false_reauth = false_reauth + 1
        falses[#falses + 1] = ("%s at %.3f: %s\n%s"):format(ev.id, ev.time, ev.why or "", story(ev.id, ev.time - 8,
          ev.time + 1))
      end
    end
    -- Counts of every process.
    local requests, errors, buckets = 0, {}, {}
    for _, p in ipairs(procs) do
      local r = cjson.decode(H.read(p.out) or "{}")
      requests = requests + (r.requests or 0)
      for code, n in pairs(r.errors or {}) do errors[code] = (errors[code] or 0) + n end
      if p == prober then buckets = r.health or {} end
    end
    local total, times = 0, {}
    for b, n in pairs(buckets) do total = total + n; times[#times + 1] = { tonumber(b) / 10, n } end
    table.sort(times, function(a, b) return a[1] < b[1] end)
    local p99, seen = 0, 0
    for _, x in ipairs(times) do
      seen = seen + x[2]
      if seen >= 0.99 * total then p99 = x[1] break end
    end
    local rotations = 0
    for _, e in ipairs(posts) do if e.status == 200 then rotations = rotations + 1 end end
    local codes = {}
    for code, n in pairs(errors) do codes[#codes + 1] = code .. " " .. n end
    table.sort(codes)

    io.stderr:write(("\n    scale-out (%s: %.0f s, %d connections, 2 nginx x 2 workers + %d processes): %d requests,"
      .. " %d rotations; lost pairs: %d answer lost on the wire, %d process killed while FreshBooks answered,"
      .. " %d Redis wiped after the process that saved it ended, %d preventable; %d false reauth_required (%d genuine);"
      .. " health p99 %.1f ms over %d probes\n"):format(SLOW and "FB_SLOW=1" or "quick", seconds, CONNECTIONS, PLAIN,
      requests, rotations, lost.wire, lost.killed, lost.wiped, lost.preventable, false_reauth, genuine, p99, total))
    io.stderr:write("    errors: " .. table.concat(codes, ", ") .. "\n")

    -- Nothing secret in nginx's logs or the processes' output.
    local logs = nginx[1].ts.log() .. nginx[2].ts.log()
    for _, p in ipairs(procs) do logs = logs .. (H.read(p.out .. ".log") or "") end
    assert.is_false(H.leaks(logs, { sb.app.client_secret }) or logs:find(string.rep("%x", 64)) ~= nil)
    assert.is_true(requests > 0 and total > 0 and rotations > 0)
    assert.equal(0, lost.preventable + false_reauth, "preventable losses:\n" .. table.concat(losses, "\n")
      .. "\nfalse reauth_required:\n" .. table.concat(falses, "\n"))
    -- Every connection alive now (the stored pair is its chain's newest, and FreshBooks takes it), or
    -- lost for a cause counted above and not yet authorized again.
    for _, id in ipairs(ids) do
      assert.is_truthy(alive[id] or dead[id], id .. ": its stored pair is not its chain's newest")
      if alive[id] then
        local ok, err = H.session(sb, { store = stores(id), retry = false }):refresh()
        assert.is_true(ok, id .. ": " .. tostring(err))
      end
    end
  end)
end)
