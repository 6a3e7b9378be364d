-- A sync worker for many connections (`freshbooks sync --daemon`): every connection of a
-- freshbooks.connections set (tokens in its store) kept in one PostgreSQL mirror, by any number of
-- workers on any number of nodes.
--   local w = require("freshbooks.mirror.worker").new{
--     postgres = "postgresql://mirror@db/mirror", connections = conns,       -- freshbooks.connections
--     events = require("freshbooks.mirror.stream").new{ redis = settings },  -- webhook events
--     interval = 300, concurrency = 4, budget = { rate = 3, burst = 120, max = 2000 } }
--   w:run()                        -- or w:step() in a loop of the program's own
--   w:status(id), w:statuses(), w:metrics() (Prometheus' text format)
-- One step: the stream's events (each connection's batch applied under its lease, acknowledged after
-- the commit; the objects of a resource read together, a request per hundred, however many deliveries
-- named them), then one connection due for a sync. Leases are PostgreSQL session advisory locks: one
-- holder per connection across every worker, free the moment the holder's session ends (a killed
-- worker's connection is synced by the next worker that asks). `concurrency` is a limit for all
-- workers sharing the database: that many slot locks, one held during each sync.
local core = require "freshbooks.core"
local cjson = require "cjson"
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local mirror = require "freshbooks.mirror"
local postgres = require "freshbooks.mirror.postgres"

local worker = {}

local Worker = {}
Worker.__index = Worker

local BUDGET = options.spec{
  rate = { "number", min = 0.001 }, burst = { "number", min = 1 }, max = { "number", integer = true, min = 1 },
}
local OPTIONS = options.spec{
  postgres = { "string", nonempty = true, say = "a libpq connection string or URI" },
  connections = { "table", say = "a freshbooks.connections set" },
  events = { "table", say = "a freshbooks.mirror.stream" },
  name = { "string", nonempty = true },
  interval = { "number", min = 0, default = 300 },
  concurrency = { "number", integer = true, min = 1, max = 1000, default = 4 },
  budget = { "table|false", say = "a table {rate, burst, max} or false" },
  batch = { "number", integer = true, min = 1, max = 10000, default = 100 },
  block = { "number", min = 0, max = 60, default = 1 },
  claim_after = { "number", min = 0.001, default = 30 },
  sync = { "table", say = "options of mirror:sync (parallel, reconcile, businesses, resources)" },
  log = { "function" },
}

-- Errors an event will meet again however often it is tried: it is acknowledged (the connection's
-- next sync reads whatever it named).
local FINAL = { reauth_required = true, unknown_business = true, forbidden = true, bad_request = true }

local SLOTS = "freshbooks.worker" -- the pseudo-connection whose leases are the concurrency slots

-- worker.new(opts) -> worker | nil, err (PostgreSQL could not be reached)
function worker.new(opts)
  if type(opts) ~= "table" then error("freshbooks.mirror.worker: expected a table of options", 2) end
  opts = options.check("freshbooks.mirror.worker", OPTIONS, opts, 2)
  if not opts.postgres then error("freshbooks.mirror.worker: postgres must be a connection string", 2) end
  local conns = opts.connections
  if type(conns) ~= "table" or type(conns.session) ~= "function" or type(conns.list) ~= "function" then
    error("freshbooks.mirror.worker: connections must be a freshbooks.connections set", 2)
  end
  if opts.events ~= nil and type(opts.events.read) ~= "function" then
    error("freshbooks.mirror.worker: events must be a freshbooks.mirror.stream", 2)
  end
  if type(opts.budget) == "table" then options.check("freshbooks.mirror.worker: budget", BUDGET, opts.budget, 2) end
  if env.nginx() then
    error("freshbooks.mirror.worker: a sync worker is a process of its own (freshbooks sync --daemon), not"
      .. " an nginx worker", 2)
  end
  local session, err = postgres.session(opts.postgres)
  if not session then return nil, err end
  local name = opts.name or (core.codec.hex(core.crypto.random_bytes(4)))
  return setmetatable({ o = opts, conns = conns, events = opts.events, session = session, name = name,
    mirrors = {}, slots = postgres.open(session, SLOTS),
    counters = { events = 0, events_coalesced = 0, events_deferred = 0, events_failed = 0, syncs = 0,
      sync_failures = 0, requests = 0, steps = 0 },
    lags = {}, lag_n = 0 }, Worker)
end

local function log(self, ev)
  if self.o.log then
    ev.worker = self.name
    pcall(self.o.log, ev)
  end
end

local function wall() return core.clock.time() end

-- The connection's mirror on this worker's session (opened once: the schema is checked then).
function Worker:mirror(id)
  local m = self.mirrors[id]
  if m then return m end
  local err
  m, err = mirror.open{ postgres = self.session, connection = id }
  if not m then return nil, err end
  self.mirrors[id] = m
  return m
end

-- Status kept in Redis beside the stream (a hash: connection -> JSON), so every worker and the
-- operator's `status` see the same.
local function status_key(self) return self.events and self.events.key .. ":status" end

local function load_status(self, id)
  local key = status_key(self)
  if not key then return (self.local_status or {})[id] or {} end
  local raw = self.events:command(0, "hget", key, id)
  local ok, st = pcall(cjson.decode, type(raw) == "string" and raw or "{}")
  return ok and type(st) == "table" and st or {}
end

local function save_status(self, id, change)
  local st = load_status(self, id)
  for k, v in pairs(change) do
    if v == cjson.null then st[k] = nil else st[k] = v end
  end
  local key = status_key(self)
  if not key then
    self.local_status = self.local_status or {}
    self.local_status[id] = st
    return
  end
  self.events:command(0, "hset", key, id, cjson.encode(st))
end

local function all_status(self)
  local key = status_key(self)
  if not key then return self.local_status or {} end
  local flat, err = self.events:command(0, "hgetall", key)
  if err then return nil, err end
  flat = flat or {}
  local out = {}
  local function put(k, v)
    local ok, st = pcall(cjson.decode, v)
    if ok and type(st) == "table" then out[k] = st end
  end
  if flat[1] == nil then for k, v in pairs(flat) do put(k, v) end end
  for i = 1, #flat - 1, 2 do put(flat[i], flat[i + 1]) end
  return out
end

local function lag(self, seconds)
  self.lag_n = self.lag_n + 1
  self.lags[(self.lag_n - 1) % 1000 + 1] = seconds
end

local function err_code(err) return errors.is(err) and err.code or "error" end

-- Applies one connection's entries under its lease -> acked, deferred
local function apply_connection(self, id, entries)
  local fb = self.conns:session(id) -- (before the lease: nothing between taking and letting go raises)
  local m, err = self:mirror(id)
  local lease
  if m then lease, err = m.backend:lease("sync", 0) end
  if not lease then
    if err and err.code == "sync_in_progress" then
      self.counters.events_deferred = self.counters.events_deferred + #entries
      return {}, #entries
    end
    self.counters.events_failed = self.counters.events_failed + #entries
    log(self, { type = "event_error", connection = id, error = err_code(err) })
    return {}, #entries
  end
  local done, by_key, order = {}, {}, {}
  for _, e in ipairs(entries) do
    local ev = e.event
    local k = table.concat({ ev.name or "", ev.object_id or "", ev.account_id or "", ev.business_id or "" }, "\0")
    if not by_key[k] then
      by_key[k] = {}
      order[#order + 1] = k
    else
      self.counters.events_coalesced = self.counters.events_coalesced + 1
    end
    table.insert(by_key[k], e)
  end
  local failed, erred = 0, false
  local function settle(list, out, aerr)
    if out then self.counters.requests = self.counters.requests + (out.requests or 0) end
    erred = erred or aerr ~= nil
    if out or FINAL[err_code(aerr)] or (aerr and aerr.status == 403) then
      for _, e in ipairs(list) do done[#done + 1] = e end
      if aerr then save_status(self, id, { last_error = err_code(aerr), last_error_at = wall() }) end
      return true
    end
    failed = failed + #list
    self.counters.events_failed = self.counters.events_failed + #list
    save_status(self, id, { last_error = err_code(aerr), last_error_at = wall() })
    log(self, { type = "event_error", connection = id, error = err_code(aerr) })
    return false
  end
  local function apply(method, arg)
    local ok, out, aerr = pcall(method, m, fb, arg, { budget = self.o.budget })
    if not ok then return nil, errors.new{ code = "error", message = tostring(out) } end
    return out, aerr
  end
  -- the batch's objects read together (a request per hundred of a resource); if that fails, each event
  -- alone, so one that keeps failing holds back no other
  local firsts, all = {}, {}
  for i, k in ipairs(order) do
    firsts[i] = by_key[k][1].event
    for _, e in ipairs(by_key[k]) do all[#all + 1] = e end
  end
  local out, berr = apply(m.apply_events, firsts)
  if out or FINAL[err_code(berr)] or (berr and berr.status == 403) or #order == 1
    or (berr and (berr.code or ""):match("^pg")) then -- (the database, not an event)
    settle(all, out, berr)
  else
    for _, k in ipairs(order) do
      local list = by_key[k]
      local one, aerr = apply(m.apply, list[1].event)
      if not settle(list, one, aerr) and aerr and (aerr.code or ""):match("^pg") then break end
    end
  end
  local acked, aerr = 0, nil
  if done[1] then acked, aerr = self.events:ack(done) end
  lease.release()
  if not acked then
    log(self, { type = "ack_error", connection = id, error = err_code(aerr) })
    return {}, failed
  end
  -- a connection whose events went through again is no longer failing (last_error_at stays)
  if not erred and done[1] and load_status(self, id).last_error then
    save_status(self, id, { last_error = cjson.null })
  end
  local now = wall()
  for _, e in ipairs(done) do if e.at then lag(self, math.max(0, now - e.at)) end end
  -- (an event another worker claimed and acknowledged first is not counted twice)
  self.counters.events = self.counters.events + (tonumber(acked) or 0)
  return done, failed
end

-- Reads and applies one batch of events -> how many were acknowledged | nil, err
function Worker:drain(block)
  if not self.events then return 0 end
  local batch, err = self.events:read(self.name, { count = self.o.batch, block = block or self.o.block,
    claim_after = self.o.claim_after })
  if not batch then return nil, err end
  local by_conn, order = {}, {}
  for _, e in ipairs(batch) do
    if not by_conn[e.connection] then
      by_conn[e.connection] = {}
      order[#order + 1] = e.connection
    end
    table.insert(by_conn[e.connection], e)
  end
  local n = 0
  for _, id in ipairs(order) do
    local done = apply_connection(self, id, by_conn[id])
    n = n + #done
  end
  return n
end

-- A free concurrency slot -> lease | nil
local function slot(self)
  for i = 1, self.o.concurrency do
    local lease = self.slots:lease("slot" .. i, 0)
    if lease then return lease end
  end
  return nil
end

-- Syncs connection `id` if no other worker does -> summary | nil, err
function Worker:sync_connection(id, force)
  local fb = self.conns:session(id) -- (before the lease: nothing between taking and letting go raises)
  local m, err = self:mirror(id)
  if not m then return nil, err end
  local lease
  lease, err = m.backend:lease("sync", 0)
  if not lease then return nil, err end
  -- (another worker may have synced it between our look at its status and the lease)
  if not force and (load_status(self, id).attempted_at or 0) + self.o.interval > wall() then
    lease.release()
    return nil, errors.new{ code = "not_due", message = "synced meanwhile" }
  end
  local taken = slot(self)
  if not taken then
    lease.release()
    return nil, errors.new{ code = "concurrency", message = "every sync slot is taken" }
  end
  local started = wall()
  log(self, { type = "sync", connection = id, started = started })
  local so = {}
  for k, v in pairs(self.o.sync or {}) do so[k] = v end
  so.budget = self.o.budget
  -- the lease is ours: Mirror:sync's own is taken again on the same session (advisory locks nest)
  local ok, summary, serr, partial = pcall(m.sync, m, fb, so)
  if not ok then summary, serr = nil, errors.new{ code = "error", message = tostring(summary) } end
  local spent = (summary or partial or {}).requests or 0
  self.counters.requests = self.counters.requests + spent
  local change = { attempted_at = started, worker = self.name, requests = spent }
  if summary then
    self.counters.syncs = self.counters.syncs + 1
    change.synced_at, change.last_error, change.duration, change.failures = wall(), cjson.null, wall() - started,
      cjson.null
    log(self, { type = "synced", connection = id, started = started, finished = change.synced_at })
  else
    self.counters.sync_failures = self.counters.sync_failures + 1
    -- tried again sooner than the interval: 5 s, doubling with each failure in a row, up to the interval
    local failures = (load_status(self, id).failures or 0) + 1
    change.failures = failures
    change.attempted_at = started - self.o.interval + math.min(self.o.interval, 5 * 2 ^ math.min(failures - 1, 16))
    change.last_error, change.last_error_at = err_code(serr), wall()
    log(self, { type = "sync_error", connection = id, error = err_code(serr), started = started,
      finished = wall() })
  end
  save_status(self, id, change)
  taken.release()
  lease.release()
  if not summary then return nil, serr end
  return summary
end

-- The connections due for a sync, the longest waiting first.
function Worker:due()
  local ids, err = self.conns:list()
  if not ids then return nil, err end
  local st
  st, err = all_status(self)
  if not st then return nil, err end
  local now, due = wall(), {}
  for _, id in ipairs(ids) do
    local at = st[id] and st[id].attempted_at or 0
    if at + self.o.interval <= now then due[#due + 1] = { id = id, at = at } end
  end
  table.sort(due, function(a, b) if a.at ~= b.at then return a.at < b.at end return a.id < b.id end)
  return due
end

-- One step: a batch of events, then one due connection synced (by this worker or, when another holds
-- it, the next due one). -> {events = n, synced = id or nil} | nil, err
function Worker:step(block)
  self.counters.steps = self.counters.steps + 1
  -- The due list costs a SCAN of the token keyspace and every status (work that grows with the
  -- connections): it is read again when used up or a few seconds old; sync_connection checks each
  -- connection again under its lease.
  local now, cache = wall(), self.due_cache
  if not cache or cache.i > #cache.list or now - cache.at >= math.min(5, self.o.interval) then
    local list, err = self:due()
    if not list then return nil, err end
    cache = { list = list, i = 1, at = now }
    self.due_cache = cache
  end
  -- (waits for events only when no connection is due, or every sync slot was taken)
  local n, err = self:drain((cache.i <= #cache.list and not cache.slots_full) and 0 or block)
  cache.slots_full = nil
  if not n then
    log(self, { type = "stream_error", error = err_code(err) })
    n = 0
  end
  while cache.i <= #cache.list do
    local d = cache.list[cache.i]
    local summary, serr = self:sync_connection(d.id)
    if serr and serr.code == "concurrency" then -- (tried again next step)
      cache.slots_full = true
      break
    end
    cache.i = cache.i + 1
    if summary or (serr and serr.code ~= "sync_in_progress" and serr.code ~= "not_due") then
      return { events = n, synced = d.id, error = serr }
    end
  end
  return { events = n }
end

-- w:run{steps = n, stop = function() -> true} : steps until stopped (Ctrl-C: core.signal's interrupt).
function Worker:run(opts)
  opts = opts or {}
  local i = 0
  while not (opts.steps and i >= opts.steps) and not (opts.stop and opts.stop()) do
    i = i + 1
    -- a step that raises (a store or hook of the program's own) is logged; the worker goes on
    local ok, res, err = pcall(self.step, self)
    if not ok then res, err = nil, errors.new{ code = "error", message = tostring(res) } end
    if not res then
      log(self, { type = "step_error", error = err_code(err), message = err and err.message })
      env.sleep(1)
    end
    if opts.after then opts.after(self, res, err) end
  end
end

-- w:status(id) -> {connection, synced_at, attempted_at, lag (seconds behind FreshBooks: since the last
-- sync that finished), pending (events not yet acknowledged), last_error, last_error_at, worker,
-- requests (of the last sync), businesses, resources (the mirror's m:status())} | nil, err
function Worker:status(id)
  local st = load_status(self, id)
  local pending = self.events and self.events:pending() or {}
  local out = { connection = id, synced_at = st.synced_at, attempted_at = st.attempted_at,
    lag = st.synced_at and (wall() - st.synced_at) or nil, pending = pending[id] or 0,
    last_error = st.last_error, last_error_at = st.last_error_at, worker = st.worker, requests = st.requests }
  local m, err = self:mirror(id)
  if not m then return nil, err end
  local ms, merr = m:status()
  if not ms then return nil, merr end
  out.businesses, out.resources = ms.businesses, ms.resources
  return out
end

-- w:statuses() -> the status of every connection (without the mirror's per-resource rows)
function Worker:statuses()
  local ids, err = self.conns:list()
  if not ids then return nil, err end
  local st, serr = all_status(self)
  if not st then return nil, serr end
  local pending = self.events and self.events:pending() or {}
  local out, now = {}, wall()
  table.sort(ids)
  for _, id in ipairs(ids) do
    local s = st[id] or {}
    out[#out + 1] = { connection = id, synced_at = s.synced_at, attempted_at = s.attempted_at,
      lag = s.synced_at and (now - s.synced_at) or nil, pending = pending[id] or 0, last_error = s.last_error,
      last_error_at = s.last_error_at, worker = s.worker }
  end
  return out
end

local function quantile(sorted, q)
  if not sorted[1] then return 0 end
  return sorted[math.max(1, math.ceil(q * #sorted))]
end

-- w:lag() -> p50, p99 seconds from an event's receipt to its commit (the last 1,000 events)
function Worker:lag()
  local s = {}
  for i, v in ipairs(self.lags) do s[i] = v end
  table.sort(s)
  return quantile(s, 0.5), quantile(s, 0.99), #s
end

-- w:metrics() -> Prometheus' text exposition format: this worker's counters, its events' lag, and
-- per connection the seconds since its last sync and its pending events.
function Worker:metrics()
  local c, lines = self.counters, {}
  local function metric(name, kind, help, samples)
    lines[#lines + 1] = "# HELP freshbooks_mirror_" .. name .. " " .. help
    lines[#lines + 1] = "# TYPE freshbooks_mirror_" .. name .. " " .. kind
    for _, s in ipairs(samples) do
      lines[#lines + 1] = ("freshbooks_mirror_%s%s %s"):format(name, s[1], s[2])
    end
  end
  local w = ('{worker="%s"}'):format(self.name)
  metric("events_total", "counter", "Webhook events applied and acknowledged.", { { w, c.events } })
  metric("events_coalesced_total", "counter", "Deliveries that named an object already read in their batch.",
    { { w, c.events_coalesced } })
  metric("events_deferred_total", "counter", "Events left pending: another worker held the connection.",
    { { w, c.events_deferred } })
  metric("events_failed_total", "counter", "Events that failed and stay pending.", { { w, c.events_failed } })
  metric("syncs_total", "counter", "Syncs finished.", { { w, c.syncs } })
  metric("sync_failures_total", "counter", "Syncs that failed.", { { w, c.sync_failures } })
  metric("requests_total", "counter", "Requests to FreshBooks.", { { w, c.requests } })
  local p50, p99, n = self:lag()
  metric("event_lag_seconds", "summary", "From a delivery's receipt to its commit (last 1000 events).",
    { { ('{worker="%s",quantile="0.5"}'):format(self.name), ("%.3f"):format(p50) },
      { ('{worker="%s",quantile="0.99"}'):format(self.name), ("%.3f"):format(p99) },
      { "_count" .. w, n } })
  local all = self:statuses()
  if all then
    local since, pending, failing = {}, {}, {}
    for _, s in ipairs(all) do
      local label = ('{connection="%s"}'):format((s.connection:gsub('[\\"\n]', "_")))
      if s.lag then since[#since + 1] = { label, ("%.0f"):format(s.lag) } end
      pending[#pending + 1] = { label, s.pending }
      failing[#failing + 1] = { label, s.last_error and 1 or 0 }
    end
    metric("connection_sync_age_seconds", "gauge", "Seconds since the connection's last finished sync.", since)
    metric("connection_pending_events", "gauge", "Events delivered and not yet applied.", pending)
    metric("connection_failing", "gauge", "1 when the connection's last sync or event failed.", failing)
  end
  return table.concat(lines, "\n") .. "\n"
end

function Worker:close()
  for _, m in pairs(self.mirrors) do m:close() end
  self.mirrors = {}
  if self.events then self.events:close() end
  self.session:close()
end

Worker.__tostring = function(w) return "freshbooks.mirror.worker (" .. w.name .. ")" end

return worker
