-- The mirror at scale, measured in-process against one sandbox holding 10,000 invoices:
--   1. the first sync of the invoices into PostgreSQL (core.pg, a connection's rows under row-level
--      security) next to SQLite: seconds and invoices per second;
--   2. webhook events through the Redis stream into the PostgreSQL mirror: appends per second (XADD
--      from one client, Redis with appendfsync always), then a worker's drain of 1,000 events naming
--      1,000 invoices, and of 1,000 naming 200 (five times each): events per second and requests per
--      event (a batch's invoices are read together, 100 a request).
-- Rounds are interleaved; each figure is the median with the min-max of the rounds.
--   usage: LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/lua5.4/?.so;;' \
--            lua5.4 bench/mirror_scale.lua [rounds]
-- (The sandbox, PostgreSQL and Redis share the cores: the figures are server-bound.)
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"
local PG = require "support.postgres"
local R = require "support.redis"
local mirror = require "freshbooks.mirror"
local stream = require "freshbooks.mirror.stream"
local worker = require "freshbooks.mirror.worker"

local ROUNDS = tonumber(arg[1]) or 3
local INVOICES = 10000
local EVENTS = 1000
-- (bench/ is on package.path: make bench runs from the checkout)
package.path = "bench/?.lua;" .. package.path
local stats = require "stats"
local median, fmt, timed, say = stats.median, stats.fmt, stats.timed, stats.say

R.client_module()
local sb = sandbox.start{ invoices = INVOICES }
local pg, srv, dir
local ok, err = pcall(function()
  pg = PG.start()
  srv = R.start{ aof = true }
  dir = io.popen("mktemp -d /tmp/fb-bench.XXXXXX"):read("*l")
  local fb = freshbooks.new{ client_id = sb.app.client_id, client_secret = sb.app.client_secret,
    redirect_uri = sb.app.redirect_uri, api_url = sb.url, auth_url = sb.url, tokens = sb:token{} }
  local SYNC = { businesses = { "aBcD1" }, resources = { "invoices" }, budget = false, parallel = 8 }
  say("mirror at scale benchmark: %d rounds, sandbox with %d invoices (%s; SQLite %s, libpq %d)", ROUNDS,
    INVOICES, _VERSION, core.sqlite.sqlite_version, core.pg.libpq_version)
  -- one untimed walk first: the sandbox keeps each record's rendering while nothing changes
  local warm = assert(mirror.open{ path = dir .. "/warm.db" })
  assert(warm:sync(fb, SYNC))
  warm:close()
  local session = assert(require("freshbooks.mirror.postgres").session(pg.conninfo))
  local F = { sqlite = {}, postgres = {} }
  local rows
  for round = 1, ROUNDS do
    io.stderr:write(("round %d/%d: first syncs\n"):format(round, ROUNDS))
    local m = assert(mirror.open{ path = ("%s/first-%d.db"):format(dir, round) })
    table.insert(F.sqlite, (timed(function() assert(m:sync(fb, SYNC)) end)))
    m:close()
    m = assert(mirror.open{ postgres = session, connection = "first-" .. round })
    table.insert(F.postgres, (timed(function() assert(m:sync(fb, SYNC)) end)))
    rows = assert(m:query("SELECT count(*) FROM invoices")).rows[1][1]
    m:close()
  end

  -- 2. the stream
  local stores = freshbooks.store.redis.keyspace{ redis = { host = "127.0.0.1", port = srv.port }, prefix = "fb:" }
  assert(stores("events").save(sb:token{}))
  local conns = freshbooks.connections{ app = { client_id = sb.app.client_id, client_secret = sb.app.client_secret,
    redirect_uri = sb.app.redirect_uri, api_url = sb.url, auth_url = sb.url }, store = stores }
  local events = stream.new{ redis = { host = "127.0.0.1", port = srv.port } }
  local w = assert(worker.new{ postgres = pg.conninfo, connections = conns, events = events, budget = false,
    sync = SYNC, batch = 200, block = 0.05 })
  assert(w:sync_connection("events", true))
  local S = { push = {}, distinct = {}, repeated = {}, req_distinct = {}, req_repeated = {} }
  local function drain_rate(ids, key_rates, key_reqs)
    local since = sb:last_seq()
    local t = timed(function()
      for _, id in ipairs(ids) do
        assert(events:push("events", { name = "invoice.update", object_id = id, account_id = "aBcD1",
          business_id = 1000001 }))
      end
    end)
    table.insert(S.push, #ids / t)
    local applied = 0
    t = timed(function()
      while applied < #ids do applied = applied + assert(w:drain(0.05)) end
    end)
    local n = 0
    for _, e in ipairs(sb:log(since)) do if not e.path:match("^/_sandbox") then n = n + 1 end end
    table.insert(S[key_rates], #ids / t)
    table.insert(S[key_reqs], n / #ids)
  end
  for round = 1, ROUNDS do
    io.stderr:write(("round %d/%d: events\n"):format(round, ROUNDS))
    local distinct, repeated = {}, {}
    for i = 1, EVENTS do distinct[i] = (round * 997 + i * 7) % INVOICES + 1 end
    -- (each invoice's five deliveries arrive together, as a burst of edits sends them)
    for i = 1, EVENTS do repeated[i] = (round * 991 + math.floor((i - 1) / 5) * 13) % INVOICES + 1 end
    drain_rate(distinct, "distinct", "req_distinct")
    drain_rate(repeated, "repeated", "req_repeated")
  end
  local p50, p99 = w:lag()
  w:close()
  session:close()

  say("")
  say("1. first sync of %d invoices (business aBcD1, 8 pages at once)", rows)
  local s, p = median(F.sqlite), median(F.postgres)
  say("     SQLite       %-24s s  %7.0f invoices/s", fmt(F.sqlite, "%.2f"), rows / s)
  say("     PostgreSQL   %-24s s  %7.0f invoices/s   PostgreSQL/SQLite %.2fx", fmt(F.postgres, "%.2f"), rows / p,
    p / s)
  say("")
  say("2. webhook events through the Redis stream into the PostgreSQL mirror (one worker, batches of 200)")
  say("     appended (XADD, one client)        %s events/s", fmt(S.push, "%.0f"))
  say("     %d events, %d invoices            %s events/s   %s requests/event", EVENTS, EVENTS,
    fmt(S.distinct, "%.0f"), fmt(S.req_distinct, "%.2f"))
  say("     %d events, 200 invoices x 5        %s events/s   %s requests/event", EVENTS, fmt(S.repeated, "%.0f"),
    fmt(S.req_repeated, "%.2f"))
  say("     lag from append to commit (the worker's last 1000): p50 %.2f s, p99 %.2f s (a burst appended at once)",
    p50, p99)
end)
if srv then srv:stop() end
if pg then pg:stop() end
if dir and dir:match("^/tmp/fb%-bench%.") then os.execute("rm -rf '" .. dir .. "'") end
sb:stop()
if not ok then io.stderr:write("bench failed: ", tostring(err), "\n") os.exit(1) end
