-- The sync engine. Per (business, resource) a checkpoint in sync_state says how far the mirror is; it
-- moves only in the transaction that writes the data it describes, so a sync killed anywhere resumes
-- where the last commit left it, without a gap and without a duplicate (rows are keyed by id).
--   walk         a whole list, page by page (in parallel), each page one transaction with the
--                checkpoint (list, page): the first sync, a reconciliation, every sync of a "whole"
--                resource. Rows it sees carry the walk's generation; at its end, rows it did not see
--                are checked one by one (by id filter or GET) and marked gone when FreshBooks has them
--                no more.
--   incremental  what changed since the checkpoint: search[updated_min] (a day, re-read whole) or
--                updated_since (a date-time, re-read with an overlap); deleted records through
--                search[vis_state]=1 (time entries: include_deleted); de-duplicated by id and stamp.
--   reconcile    periodically: FreshBooks' counts against the mirror's; a difference (a record gone
--                without a trace) starts a walk.
-- "Now" is FreshBooks' (the Date of its answer), never the local clock.
local core = require "freshbooks.core"
local date = require "freshbooks.date"
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local resources = require "freshbooks.mirror.resources"
local schema = require "freshbooks.mirror.schema"

local sync = {}

local unpack = table.unpack or unpack

-- Errors after which no other resource can do better: the run stops (its checkpoints stay valid).
local FATAL = { reauth_required = true, unauthorized = true, invalid_grant = true, refresh_uncertain = true,
  save_failed = true, lock_failed = true, rate_limited = true, store_corrupt = true, aborted = true,
  sqlite_full = true, sqlite_corrupt = true, sqlite_readonly = true, sqlite_busy = true, sqlite_cantopen = true,
  budget_exhausted = true }
sync.FATAL = FATAL

local function interrupted()
  if core.signal.interrupted() then return errors.new{ code = "aborted", message = "interrupted" } end
end

-- The request budget: a token bucket (rate per second, burst); waits are shown through progress and
-- sleep on nginx's event loop there (env.sleep).
function sync.budget(opts, progress)
  local unlimited = opts == false
  opts = opts or {}
  local rate, burst, max = opts.rate or 3, opts.burst or 120, opts.max
  if unlimited then rate, burst = math.huge, math.huge end
  local b = { spent = 0, tokens = burst, at = core.clock.now() }
  function b.take(n)
    n = n or 1
    if max and b.spent + n > max then
      return errors.new{ code = "budget_exhausted", message = ("the run's budget of %d requests is spent"):format(max) }
    end
    if unlimited then b.spent = b.spent + n return end
    local now = core.clock.now()
    b.tokens = math.min(burst, b.tokens + (now - b.at) * rate)
    b.at = now
    if b.tokens < n then
      local wait = (n - b.tokens) / rate
      if progress then progress{ type = "wait", seconds = wait, reason = "budget" } end
      env.sleep(wait)
      b.tokens, b.at = n, core.clock.now()
    end
    b.tokens = b.tokens - n
    b.spent = b.spent + n
  end
  return b
end

-- Checkpoints ------------------------------------------------------------------------------------

local STATE = { "phase", "list", "page", "gen", "walk_started", "since", "reconciled_at", "synced_at", "status",
  "error" }

local function load_state(C, biz, r)
  local row, err = C.b:first("SELECT " .. table.concat(STATE, ", ") .. " FROM sync_state WHERE business_id = ?"
    .. " AND resource = ?", biz.business_id, r.name)
  if row == nil then return nil, err end
  local st = {}
  for i, k in ipairs(STATE) do st[k] = row and row[i] end
  return st
end

local function save_sql(d)
  local s = {}
  for i, k in ipairs(STATE) do s[i] = k .. " = excluded." .. k end
  return ("INSERT INTO sync_state (business_id, resource, %s) VALUES (?, ?, %s) ON CONFLICT (%s) DO UPDATE SET %s")
    :format(table.concat(STATE, ", "), ("?, "):rep(#STATE - 1) .. "?", d.key("business_id, resource"),
    table.concat(s, ", "))
end

-- Inside a transaction (the one writing the data the checkpoint describes).
local function save_state(C, biz, r, st)
  local p = { biz.business_id, r.name }
  for i, k in ipairs(STATE) do p[i + 2] = st[k] end
  C.save_sql = C.save_sql or save_sql(C.b.dialect)
  return C.b:run(C.save_sql, unpack(p, 1, #STATE + 2))
end

local function save_alone(C, biz, r, st)
  return C.b:atomic(function() return save_state(C, biz, r, st) end)
end

-- Where the next incremental pass starts for a change at or after epoch t: the day in the stamp's zone
-- (updated_min), or the instant itself (updated_since). Never earlier than `old`.
local function since_of(r, t, old)
  local v
  if r.sync == "updated_since" then v = date.iso(t)
  elseif r.zone == "eastern" then v = date.eastern_day(t)
  else v = date.format(math.floor(t / 86400)) end
  if old and old > v then return old end
  return v
end

-- Lists -----------------------------------------------------------------------------------------

-- The lists that together hold every record of `r` (changed since `since`, when given), and how each
-- says a record's vis_state: "record" (its own field; the deleted list's records are 1), 0 (alive),
-- "unless_live" (time entries listed with include_deleted: deleted unless the live list had them).
local function lists(r, since)
  local function q(extra)
    local t = {}
    if r.paged then t.per_page = 100 end
    if r.include then t.include = r.include end
    if r.family == "project" then
      if since then t.updated_since = since end
      for k, v in pairs(extra or {}) do t[k] = v end
    else
      t.search = {}
      if since then t.search.updated_min = since end
      for k, v in pairs(extra or {}) do t.search[k] = v end
      if next(t.search) == nil then t.search = nil end
    end
    return t
  end
  if r.deleted == "include_deleted" then
    return { { name = "live", query = q(), vis = 0 },
             { name = "all", query = q{ include_deleted = true }, vis = "unless_live" } }
  elseif r.vis then
    return { { name = "live", query = q(), vis = "record" },
             { name = "deleted", query = q{ vis_state = 1 }, vis = "record", deleted = true } }
  end
  return { { name = "live", query = q(), vis = 0 } }
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- Writing ---------------------------------------------------------------------------------------

local function stats(C, biz, r)
  local key = tostring(biz.business_id) .. "/" .. r.name
  local s = C.stats[key]
  if not s then
    s = { business_id = biz.business_id, resource = r.name, requests = 0, pages = 0, records = 0, written = 0,
          deleted = 0, gone = 0 }
    C.stats[key] = s
    C.order[#C.order + 1] = s
  end
  return s
end

local function upsert_sql(C, r)
  local sql = C.upserts[r.name]
  if not sql then
    sql = schema.upsert_sql(r, C.b.dialect)
    C.upserts[r.name] = sql
  end
  return sql
end

-- The vis_state a list gives a record (nil: the row keeps its own, 0 for a new one).
local function vis_of(r, list, rec, is_live, started)
  if list.vis == "record" then
    local v = schema.vis(r, rec)
    if v == nil then v = list.deleted and 1 or 0 end
    return v
  elseif list.vis == "unless_live" then
    local id = schema.id(r, rec)
    if is_live and is_live(id) then return nil end
    -- made after this pass began: the live list may have been read before it existed
    local made = schema.stamp(rec.created_at, "iso")
    if made and started and made >= started then return nil end
    return 1
  end
  return list.vis
end

-- Dependents ------------------------------------------------------------------------------------

local function old_record(C, biz, r, id)
  if not r.dependents then return nil end
  local row = C.b:first(("SELECT record FROM %s WHERE business_id = ? AND id = ?"):format(r.table), biz.business_id, id)
  return row and core.json.decode(row[1]) or nil
end

-- Inside the transaction that changes `r`'s record: what copies it is queued in `pending` (read again
-- by refresh_dependents), so a kill in between loses nothing.
local function queue_dependents(C, biz, r, new, old)
  local deps = r.dependents
  if not deps then return true end
  if deps.fields and new and old then -- a record gone changes what copies it
    local differs = false
    for _, f in ipairs(deps.fields) do
      if tostring(old[f]) ~= tostring(new[f]) then differs = true end
    end
    if not differs then return true end
  end
  local rec = new or old
  for _, d in ipairs(deps) do
    local value = ""
    if d[2] then value = rec and rec[d.from or r.id] end
    -- a new record is copied nowhere yet; a new child (a bill payment) changes its parent (its bill)
    local wanted = old ~= nil or d.from ~= nil
    if wanted and (value ~= nil and value ~= "" or not d[2]) then
      local ok, err = C.b:run("INSERT INTO pending (business_id, resource, filter, value) VALUES (?, ?, ?, ?)"
        .. " ON CONFLICT (" .. C.b.dialect.key("business_id, resource, filter, value") .. ") DO NOTHING",
        biz.business_id, d[1], d[2] or "",
        tostring(value))
      if not ok then return nil, err end
    end
  end
  return true
end

-- Writes one page's records; `extra()` runs in the same transaction (the checkpoint).
local function write_page(C, biz, r, records, list, opts)
  local s = stats(C, biz, r)
  local sql = upsert_sql(C, r)
  return C.b:atomic(function()
    for _, rec in ipairs(records) do
      if type(rec) == "table" then
        local vis = vis_of(r, list, rec, opts.is_live, opts.started)
        local p, n = schema.params(r, biz.business_id, rec, vis, opts.seen, C.now_iso)
        if p[2] ~= nil then
          local old = old_record(C, biz, r, p[2])
          local changed, err = C.b:run(sql, unpack(p, 1, n))
          if not changed then return nil, err end
          if changed > 0 then
            local ok, derr = queue_dependents(C, biz, r, rec, old)
            if not ok then return nil, derr end
          end
          -- unchanged, but seen by this walk
          if changed == 0 and opts.seen then
            local ok, serr = C.b:run(("UPDATE %s SET seen = ? WHERE business_id = ? AND id = ?"):format(r.table),
              opts.seen, p[1], p[2])
            if not ok then return nil, serr end
          end
          s.written = s.written + changed
          if vis == 1 and list.vis == "unless_live" then s.deleted = s.deleted + changed end
        end
      end
    end
    s.records = s.records + #records
    if opts.extra then
      local ok, err = opts.extra()
      if not ok then return nil, err end
    end
    return true
  end)
end

-- Walks one list from page `first` with each() (pages in parallel after the first) and hands every page
-- to on_page(records, page) as it completes, in page order. each()'s progress says where a page ends:
-- it is called for a page just before that page's records come.
local function walk(C, biz, r, list, first, on_page)
  local s = stats(C, biz, r)
  local q = copy(list.query)
  if r.paged then q.page = first end
  local queue, qi, prev, batch, budget_err = {}, 1, 0, {}, nil
  local function progress(done, pages, seen)
    queue[#queue + 1] = { page = first + done - 1, count = seen - prev, pages = first + pages - 1 }
    prev = seen
    s.requests, s.pages = s.requests + 1, s.pages + 1
    budget_err = budget_err or C.budget.take(1)
  end
  local function commit()
    local e = queue[qi]
    qi = qi + 1
    local recs = batch
    batch = {}
    local ok, err = on_page(recs, e.page)
    if not ok then return nil, err end
    if C.progress then
      C.progress{ type = "page", business_id = biz.business_id, resource = r.name, list = list.name, page = e.page,
        pages = e.pages, records = #recs, written = s.written }
    end
    local stop = interrupted()
    if stop then return nil, stop end
    return true
  end
  local h = resources.handle(C.fb, r, biz)
  for rec, err in h:each(q, { parallel = C.parallel, progress = progress }) do
    if budget_err then return nil, budget_err end
    if not rec then return nil, err end
    while queue[qi] and queue[qi].count == 0 do
      local ok, cerr = commit()
      if not ok then return nil, cerr end
    end
    batch[#batch + 1] = rec
    if queue[qi] and #batch >= queue[qi].count then
      local ok, cerr = commit()
      if not ok then return nil, cerr end
    end
  end
  if budget_err then return nil, budget_err end
  while queue[qi] do
    local ok, cerr = commit()
    if not ok then return nil, cerr end
  end
  return true
end

-- Checking given ids ----------------------------------------------------------------------------

local function mark_gone(C, biz, r, id)
  local s = stats(C, biz, r)
  local old = old_record(C, biz, r, id)
  local n, err = C.b:run(("UPDATE %s SET vis_state = 1, gone_at = ?, synced_at = ? WHERE business_id = ? AND id = ?"
    .. " AND gone_at IS NULL"):format(r.table), C.now_iso, C.now_iso, biz.business_id, id)
  if not n then return nil, err end
  s.gone = s.gone + n
  if n > 0 and old then return queue_dependents(C, biz, r, nil, old) end
  return true
end

local function is_not_found(err)
  return err and (err.status == 404 or err.code == "not_found")
end

-- Reads given records again as FreshBooks lists them: found ones are written (seen = `seen`), the rest
-- marked gone. Accounting records by their id filter (100 a request, the live list, then the deleted
-- one); projects by their whole list (a single project answers another shape); the others one GET each.
local function verify(C, biz, r, ids, seen)
  if #ids == 0 then return true end
  local s = stats(C, biz, r)
  local h = resources.handle(C.fb, r, biz)
  if r.fetch == "list" then
    local got = {}
    for _, list in ipairs(lists(r, nil)) do
      local ok, err = walk(C, biz, r, list, 1, function(records)
        for _, rec in ipairs(records) do got[schema.id(r, rec) or false] = true end
        return write_page(C, biz, r, records, list, { seen = seen })
      end)
      if not ok then return nil, err end
    end
    return C.b:atomic(function()
      for _, id in ipairs(ids) do
        if not got[id] then
          local done, err = mark_gone(C, biz, r, id)
          if not done then return nil, err end
        end
      end
      return true
    end)
  end
  if r.search_key then
    local key = r.search_key .. "s"
    for i = 1, #ids, 100 do
      local left = {}
      for j = i, math.min(i + 99, #ids) do left[#left + 1] = ids[j] end
      for _, list in ipairs(lists(r, nil)) do
        if #left == 0 then break end
        local q = copy(list.query)
        q.search = copy(q.search or {})
        q.search[key] = left
        local e = C.budget.take(1)
        if e then return nil, e end
        s.requests = s.requests + 1
        local found, err = h:list(q)
        if not found then return nil, err end
        local got = {}
        for _, rec in ipairs(found) do got[schema.id(r, rec) or false] = true end
        local ok, werr = write_page(C, biz, r, found, list, { seen = seen })
        if not ok then return nil, werr end
        local rest = {}
        for _, id in ipairs(left) do if not got[id] then rest[#rest + 1] = id end end
        left = rest
      end
      if #left > 0 then
        local ok, gerr = C.b:atomic(function()
          for _, id in ipairs(left) do
            local done, err = mark_gone(C, biz, r, id)
            if not done then return nil, err end
          end
          return true
        end)
        if not ok then return nil, gerr end
      end
    end
    return true
  end
  for _, id in ipairs(ids) do
    local rec, err
    if r.get then
      local e = C.budget.take(1)
      if e then return nil, e end
      s.requests = s.requests + 1
      rec, err = h:get(id, r.include and { include = r.include } or nil)
      if not rec and not is_not_found(err) then return nil, err end
    end
    local ok, werr
    if rec then
      ok, werr = write_page(C, biz, r, { rec }, { vis = r.vis and "record" or 0 }, { seen = seen })
    else
      ok, werr = C.b:atomic(function() return mark_gone(C, biz, r, id) end)
    end
    if not ok then return nil, werr end
  end
  return true
end

-- Reads again the records queued in `pending` for the business (by filter, 100 values a request, or
-- the whole list), then forgets the queue entries it served.
local function refresh_dependents(C, biz)
  local rows, err = C.b:rows("SELECT resource, filter, value FROM pending WHERE business_id = ? ORDER BY resource,"
    .. " filter", biz.business_id)
  if not rows then return nil, err end
  local groups, order = {}, {}
  for _, row in ipairs(rows) do
    local key = row[1] .. "\0" .. row[2]
    if not groups[key] then
      groups[key] = { resource = row[1], filter = row[2], values = {} }
      order[#order + 1] = groups[key]
    end
    local v = groups[key].values
    v[#v + 1] = row[3]
  end
  for _, g in ipairs(order) do
    local d = resources.by_name[g.resource]
    local chunks = {}
    if g.filter == "" then
      chunks[1] = false
    else
      for i = 1, #g.values, 100 do
        local c = {}
        for j = i, math.min(i + 99, #g.values) do c[#c + 1] = g.values[j] end
        chunks[#chunks + 1] = c
      end
    end
    for _, chunk in ipairs(chunks) do
      for _, list in ipairs(d and lists(d, nil) or {}) do
        local one = { name = list.name, vis = list.vis, deleted = list.deleted, query = copy(list.query) }
        if chunk then
          one.query.search = copy(one.query.search or {})
          one.query.search[g.filter .. "s"] = chunk
        end
        local ok, werr = walk(C, biz, d, one, 1, function(records)
          return write_page(C, biz, d, records, one, {})
        end)
        if not ok then return nil, werr end
      end
      local ok, derr = C.b:atomic(function()
        for _, v in ipairs(chunk or { "" }) do
          local done, e = C.b:run("DELETE FROM pending WHERE business_id = ? AND resource = ? AND filter = ? AND value"
            .. " = ?", biz.business_id, g.resource, g.filter, v)
          if not done then return nil, e end
        end
        return true
      end)
      if not ok then return nil, derr end
    end
  end
  return true
end

-- Passes ----------------------------------------------------------------------------------------

local function overlap(C) return C.opts.overlap or 300 end

-- A walk of every list of `r`, resumed from its checkpoint, then the sweep: rows the walk did not see
-- are checked, and the checkpoint becomes an incremental one from the walk's start.
local function full_walk(C, biz, r, st)
  if st.phase ~= "walk" then
    st.phase, st.list, st.page, st.gen, st.walk_started = "walk", 1, 1, (st.gen or 0) + 1, C.now_iso
    local ok, err = save_alone(C, biz, r, st)
    if not ok then return nil, err end
  end
  if C.progress then
    C.progress{ type = "resource", business_id = biz.business_id, resource = r.name, phase = "walk" }
  end
  local started = st.walk_started
  local all = lists(r, nil)
  for li = st.list, #all do
    local list = all[li]
    local first = li == st.list and st.page or 1
    local ok, err = walk(C, biz, r, list, first, function(records, page)
      return write_page(C, biz, r, records, list, { seen = st.gen, started = started,
        -- time entries: alive when this walk's live list had them (its generation in `seen`)
        is_live = function(id)
          local row = C.b:first(("SELECT seen FROM %s WHERE business_id = ? AND id = ?"):format(r.table),
            biz.business_id, id)
          return row and row[1] == st.gen and list.name ~= "live"
        end,
        extra = function()
          st.list, st.page = li, page + 1
          return save_state(C, biz, r, st)
        end })
    end)
    if not ok then return nil, err end
    st.list, st.page = li + 1, 1
    ok, err = save_alone(C, biz, r, st)
    if not ok then return nil, err end
  end
  -- The sweep: what the walk did not see is gone, or was passed over when pages moved under it.
  local rows, err = C.b:rows(("SELECT id FROM %s WHERE business_id = ? AND (seen IS NULL OR seen <> ?) AND gone_at"
    .. " IS NULL"):format(r.table), biz.business_id, st.gen)
  if not rows then return nil, err end
  local ids = {}
  for i, row in ipairs(rows) do ids[i] = row[1] end
  local ok, verr = verify(C, biz, r, ids, st.gen)
  if not ok then return nil, verr end
  local t = date.from_utc(started) or C.t0
  st.phase = r.sync == "whole" and "done" or "incremental"
  st.list, st.page = nil, nil
  st.since = since_of(r, t - overlap(C), nil)
  st.reconciled_at, st.synced_at, st.status, st.error = C.now_iso, C.now_iso, "ok", nil
  return save_alone(C, biz, r, st)
end

-- What changed since the checkpoint, then the checkpoint moves to FreshBooks' now (less the overlap).
local function incremental(C, biz, r, st)
  if C.progress then
    C.progress{ type = "resource", business_id = biz.business_id, resource = r.name, phase = "incremental" }
  end
  local live = {}
  local started = C.now_iso
  for _, list in ipairs(lists(r, st.since)) do
    local ok, err = walk(C, biz, r, list, 1, function(records)
      if list.name == "live" then
        for _, rec in ipairs(records) do
          local id = schema.id(r, rec)
          if id ~= nil then live[id] = true end
        end
      end
      return write_page(C, biz, r, records, list, { started = started,
        is_live = function(id) return live[id] == true end })
    end)
    if not ok then return nil, err end
  end
  st.since = since_of(r, C.t0 - overlap(C), st.since)
  st.synced_at, st.status, st.error = C.now_iso, "ok", nil
  return save_alone(C, biz, r, st)
end

-- FreshBooks' counts against the mirror's, per list: equal, or the lists that differ.
local function counts_differ(C, biz, r)
  local s = stats(C, biz, r)
  local h = resources.handle(C.fb, r, biz)
  for _, list in ipairs(lists(r, nil)) do
    local q = copy(list.query)
    q.per_page = 1
    local e = C.budget.take(1)
    if e then return nil, e end
    s.requests = s.requests + 1
    local _, meta = h:list(q)
    if not _ then return nil, meta end
    local where = list.name == "deleted" and "vis_state = 1 AND gone_at IS NULL"
      or list.name == "all" and "gone_at IS NULL" or "vis_state <> 1 AND gone_at IS NULL"
    local row, err = C.b:first(("SELECT count(*) FROM %s WHERE business_id = ? AND %s"):format(r.table, where),
      biz.business_id)
    if not row then return nil, err end
    if tonumber(meta.total) ~= row[1] then return true end
  end
  return false
end

local function reconcile_due(C, st)
  local want = C.opts.reconcile
  if want == "full" or want == true then return true end
  if want == false then return false end
  local last = st.reconciled_at and date.from_utc(st.reconciled_at)
  return not last or C.t0 - last >= (C.opts.reconcile_every or 86400)
end

local pass_of

local function pass(C, biz, r)
  local ok, err = pass_of(C, biz, r)
  if not ok then return nil, err end
  return refresh_dependents(C, biz)
end

function pass_of(C, biz, r)
  local st, err = load_state(C, biz, r)
  if not st then return nil, err end
  -- A walk's checkpoint starts the next incremental pass where the walk began (less the overlap):
  -- what changes while it runs is the next sync's.
  if r.sync == "whole" or st.phase == nil or st.phase == "walk" or C.opts.reconcile == "full" then
    if C.opts.reconcile == "full" and st.phase ~= "walk" then st.phase = "reconcile" end
    return full_walk(C, biz, r, st)
  end
  local ok, ierr = incremental(C, biz, r, st)
  if not ok then return nil, ierr end
  if not reconcile_due(C, st) then return true end
  if C.progress then
    C.progress{ type = "resource", business_id = biz.business_id, resource = r.name, phase = "reconcile" }
  end
  local differ, derr = counts_differ(C, biz, r)
  if differ == nil then return nil, derr end
  if differ then
    -- a change since the pass above, or a record gone without a trace: look again, then walk
    ok, ierr = incremental(C, biz, r, st)
    if not ok then return nil, ierr end
    differ, derr = counts_differ(C, biz, r)
    if differ == nil then return nil, derr end
    if differ then
      st.phase = "reconcile"
      return full_walk(C, biz, r, st)
    end
  end
  st.reconciled_at = C.now_iso
  return save_alone(C, biz, r, st)
end

-- Businesses ------------------------------------------------------------------------------------

-- FreshBooks' now (the Date of its answer) and the user's memberships.
local function server_now(C)
  local e = C.budget.take(1)
  if e then return nil, e end
  local res, err = C.fb:request{ method = "GET", path = "/auth/api/v1/users/me" }
  if not res then return nil, err end
  C.requests = C.requests + 1
  local t = date.http(res.headers and res.headers.date)
  local list, merr = C.fb:memberships(C.opts.refresh_memberships)
  if not list then return nil, merr end
  return t or os.time(), list
end
sync.server_now = server_now

local function save_businesses(C, list)
  return C.b:atomic(function()
    for _, m in ipairs(list) do
      local id = tonumber(m.business_id)
      if id then
        local ok, err = C.b:run("INSERT INTO businesses (business_id, account_id, business_uuid, name, role, record,"
          .. " synced_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (" .. C.b.dialect.key("business_id")
          .. ") DO UPDATE SET account_id ="
          .. " excluded.account_id, business_uuid = excluded.business_uuid, name = excluded.name, role ="
          .. " excluded.role, record = excluded.record, synced_at = excluded.synced_at", id,
          m.account_id ~= nil and tostring(m.account_id) or nil, m.business_uuid, m.name, m.role,
          core.json.encode(type(m.business) == "table" and m.business or {}), C.now_iso)
        if not ok then return nil, err end
      end
    end
    return true
  end)
end

local function chosen(list, keys)
  if not keys then return list end
  local out = {}
  for _, k in ipairs(keys) do
    local s, hit = tostring(k), nil
    for _, m in ipairs(list) do
      if tostring(m.business_id) == s or tostring(m.account_id) == s or m.business_uuid == s or m.name == s then
        hit = m
      end
    end
    if not hit then
      return nil, errors.new{ code = "unknown_business", message = "this user has no business " .. s }
    end
    out[#out + 1] = hit
  end
  return out
end

-- sync.run(b, fb, opts) -> summary | nil, err, summary
function sync.run(b, fb, opts)
  local C = { b = b, fb = fb, opts = opts, stats = {}, order = {}, upserts = {}, requests = 0,
              parallel = opts.parallel or 4, progress = opts.progress }
  C.budget = opts.budget_object or sync.budget(opts.budget, opts.progress)
  local t0, list = server_now(C)
  local summary = { resources = C.order, errors = {} }
  if not t0 then return nil, list, summary end
  C.t0, C.now_iso = t0, date.iso(t0)
  summary.now = C.now_iso
  local ok, err = save_businesses(C, list)
  if not ok then return nil, err, summary end
  local businesses
  businesses, err = chosen(list, opts.businesses)
  if not businesses then return nil, err, summary end
  local wanted = resources.list
  if opts.resources then
    wanted = {}
    for _, name in ipairs(opts.resources) do wanted[#wanted + 1] = resources.by_name[name] end
  end
  local failed
  for _, biz in ipairs(businesses) do
    biz = { business_id = tonumber(biz.business_id), account_id = biz.account_id, business_uuid = biz.business_uuid,
            name = biz.name }
    -- what a killed run had queued
    local ok0, perr0 = refresh_dependents(C, biz)
    if not ok0 then
      summary.requests = C.budget.spent
      return nil, perr0, summary
    end
    for _, r in ipairs(wanted) do
      local done, perr = pass(C, biz, r)
      if not done then
        if FATAL[perr.code] then
          summary.requests = C.budget.spent
          return nil, perr, summary
        end
        local st = load_state(C, biz, r) or {}
        st.status = perr.status == 403 and "forbidden" or "error"
        st.error = tostring(perr)
        save_alone(C, biz, r, st)
        if st.status ~= "forbidden" then
          failed = failed or perr
          summary.errors[#summary.errors + 1] = { business_id = biz.business_id, resource = r.name, error = perr }
        end
      end
    end
  end
  summary.requests = C.budget.spent
  if C.progress then C.progress{ type = "done", summary = summary } end
  if failed then return nil, failed, summary end
  return summary
end

-- Webhook events --------------------------------------------------------------------------------

-- The object an event names: r, id, biz | nil, why ignored | nil, nil, err. `known` caches the
-- businesses looked up (owner key -> row or false).
local function target(C, ev, known)
  local name = type(ev.name) == "string" and ev.name or ""
  local object = name:match("^([%w_]+)%.[%w_]+$")
  local r = object and resources.by_event[object]
  if not r then return nil, "not a mirrored resource: " .. name end
  local id = ev.object_id
  if r.id_type == "integer" then
    id = tonumber(id)
    if id and (id ~= math.floor(id) or id < 0) then id = nil end
  elseif type(id) ~= "string" or id == "" then
    id = nil
  end
  if id == nil then return nil, "no usable object_id" end
  local where = r.owner == "business" and "business_id = ?" or "account_id = ?"
  local key = r.owner == "business" and tonumber(ev.business_id) or (ev.account_id and tostring(ev.account_id))
  local cache = r.owner .. "\0" .. tostring(key)
  local row = known[cache]
  if row == nil then
    local err
    row, err = C.b:first("SELECT business_id, account_id, business_uuid, name FROM businesses WHERE " .. where, key)
    if row == nil then return nil, nil, err end
    known[cache] = row
  end
  if not row then return nil, "not a mirrored business" end
  if not (r.search_key or r.get or r.fetch) then return nil, "FreshBooks reads " .. r.name .. " only in lists" end
  return r, id, { business_id = row[1], account_id = row[2], business_uuid = row[3], name = row[4] }
end

-- sync.events(b, fb, events, opts) -> outcome | nil, err. Each event's object is read again and written
-- (or marked gone when FreshBooks no longer has it); a payment's invoice and a bill payment's bill too.
-- The objects of one business and resource are read together (verify: 100 ids a request), so a burst
-- of events costs a request per hundred objects, not one each. outcome: {written, gone, requests,
-- ignored = n, ignored_why = last reason, resource, id (of the first event applied)}.
function sync.events(b, fb, evs, opts)
  opts = opts or {}
  local C = { b = b, fb = fb, opts = opts, stats = {}, order = {}, upserts = {}, requests = 0,
              progress = opts.progress }
  C.budget = opts.budget_object or sync.budget(opts.budget, opts.progress)
  C.now_iso = date.iso(opts.now or os.time())
  local known, groups, order, ignored, why, first = {}, {}, {}, 0, nil, nil
  for _, ev in ipairs(evs) do
    local r, id, biz = target(C, ev, known)
    if r then
      local key = biz.business_id .. "\0" .. r.name
      local g = groups[key]
      if not g then
        g = { r = r, biz = biz, ids = {}, has = {} }
        groups[key] = g
        order[#order + 1] = g
      end
      if not g.has[id] then g.has[id], g.ids[#g.ids + 1] = true, id end
      first = first or { resource = r.name, id = id }
    elseif biz then
      return nil, biz
    else
      ignored, why = ignored + 1, id
    end
  end
  local bizs, seen_biz = {}, {}
  for _, g in ipairs(order) do
    local ok, ferr = verify(C, g.biz, g.r, g.ids, nil)
    if not ok then return nil, ferr end
    -- what the records change too (a payment, its invoice), read a hundred ids a statement
    local rel = {}
    local mine = g.r.related and g.ids or {}
    for from = 1, #mine, 100 do
      local chunk, marks = { unpack(mine, from, math.min(from + 99, #mine)) }, {}
      for k = 1, #chunk do marks[k] = "?" end
      local stored = b:rows(("SELECT record FROM %s WHERE business_id = ? AND gone_at IS NULL AND id IN (%s)")
        :format(g.r.table, table.concat(marks, ", ")), g.biz.business_id, unpack(chunk))
      for _, row in ipairs(stored or {}) do
        local rec = core.json.decode(row[1])
        for rname, field in pairs(type(rec) == "table" and g.r.related or {}) do
          local rid = tonumber(rec[field])
          if rid then
            rel[rname] = rel[rname] or {}
            table.insert(rel[rname], rid)
          end
        end
      end
    end
    for rname, ids in pairs(rel) do
      ok, ferr = verify(C, g.biz, resources.by_name[rname], ids, nil)
      if not ok then return nil, ferr end
    end
    if not seen_biz[g.biz.business_id] then
      seen_biz[g.biz.business_id] = true
      bizs[#bizs + 1] = g.biz
    end
  end
  for _, biz in ipairs(bizs) do
    local ok, ferr = refresh_dependents(C, biz)
    if not ok then return nil, ferr end
  end
  local written, gone = 0, 0
  for _, st in ipairs(C.order) do written, gone = written + st.written, gone + st.gone end
  local out = { written = written, gone = gone, requests = C.budget.spent, ignored = ignored, ignored_why = why }
  if first then out.resource, out.id = first.resource, first.id end
  return out
end

-- sync.event(b, fb, event, opts) -> outcome | nil, err: one event (sync.events), as
-- {resource, id, written, gone, requests} or {ignored = why}.
function sync.event(b, fb, ev, opts)
  local out, err = sync.events(b, fb, { ev }, opts)
  if not out then return nil, err end
  if out.ignored > 0 then return { ignored = out.ignored_why } end
  return { resource = out.resource, id = out.id, written = out.written, gone = out.gone, requests = out.requests }
end

return sync
