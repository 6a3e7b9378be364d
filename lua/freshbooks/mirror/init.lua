-- freshbooks.mirror: FreshBooks in a local database (docs/mirror.md).
--   local mirror = require "freshbooks.mirror"
--   local m = assert(mirror.open{ path = "mirror.db" })
--   local summary, err = m:sync(fb)                      -- first: everything; then: what changed
--   m:apply(fb, { name = "invoice.update", object_id = 7, account_id = "aBcD1" })   -- a webhook event
--   local res = m:query("SELECT count(*) FROM invoices WHERE vis_state <> 1")        -- read-only SQL
--   m:close()
-- Bad arguments raise; run-time failures return nil, err (an errors object with a stable code).
local errors = require "freshbooks.errors"
local resources = require "freshbooks.mirror.resources"
local schema = require "freshbooks.mirror.schema"
local sync = require "freshbooks.mirror.sync"

local mirror = {}

mirror.schema_version = schema.VERSION
-- The resources a mirror keeps (catalogue names; each is a table of the same name).
mirror.resources = {}
for i, r in ipairs(resources.list) do mirror.resources[i] = r.name end

local Mirror = {}
Mirror.__index = Mirror

local function check(opts, allowed, where)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error("freshbooks.mirror: " .. where .. ": options must be a table", 3) end
  for k in pairs(opts) do
    if not allowed[k] then error(("freshbooks.mirror: %s: unknown option '%s'"):format(where, tostring(k)), 3) end
  end
  return opts
end

local function number_opt(opts, k, min, where)
  local v = opts[k]
  if v ~= nil and (type(v) ~= "number" or v ~= v or v < min) then
    error(("freshbooks.mirror: %s: %s must be a number >= %s"):format(where, k, min), 3)
  end
end

-- mirror.open{path = file | backend = object, readonly = false} -> mirror | nil, err
-- A new file gets the current schema, an older one is migrated forward (also when opened read-only:
-- a writable connection does it first), a newer one is refused (mirror_too_new).
function mirror.open(opts)
  opts = check(opts, { path = true, backend = true, readonly = true, busy_timeout = true }, "open")
  if (opts.path == nil) == (opts.backend == nil) then error("freshbooks.mirror: open: give path or backend", 2) end
  if opts.path ~= nil and (type(opts.path) ~= "string" or opts.path == "") then
    error("freshbooks.mirror: open: path must be a file name", 2)
  end
  number_opt(opts, "busy_timeout", 0, "open")
  local b, err = opts.backend
  if not b then
    local sqlite = require "freshbooks.mirror.sqlite"
    local function connect(readonly)
      return sqlite.open(opts.path, { readonly = readonly, busy_timeout = opts.busy_timeout })
    end
    if opts.readonly then
      b, err = connect(true)
      if not b then return nil, err end
      local v, verr = schema.version(b)
      if verr then b:close() return nil, verr end
      if v == nil then
        b:close()
        return nil, errors.new{ code = "not_a_mirror", message = opts.path .. " holds no mirror (run a sync first)" }
      end
      if v < schema.VERSION then
        b:close()
        local w, werr = connect(false)
        if not w then return nil, werr end
        local ok, merr = schema.migrate(w)
        w:close()
        if not ok then return nil, merr end
        b, err = connect(true)
        if not b then return nil, err end
      elseif v > schema.VERSION then
        b:close()
        return nil, schema.too_new(v)
      end
    else
      b, err = connect(false)
      if not b then return nil, err end
    end
  end
  if not opts.readonly then
    local ok, merr = schema.migrate(b)
    if not ok then b:close() return nil, merr end
  end
  return setmetatable({ backend = b, readonly = opts.readonly == true }, Mirror)
end

local function live(self, where)
  if not self.backend then error("freshbooks.mirror: " .. where .. ": the mirror is closed", 3) end
  return self.backend
end

local SYNC = { businesses = true, resources = true, parallel = true, budget = true, progress = true, reconcile = true,
               reconcile_every = true, overlap = true, wait = true, refresh_memberships = true }

local function check_session(fb, where)
  if type(fb) ~= "table" or type(fb.request) ~= "function" then
    error("freshbooks.mirror: " .. where .. ": a session (freshbooks.new) is required", 3)
  end
end

local function check_budget(b, where)
  if b == nil or b == false then return end
  if type(b) ~= "table" then error("freshbooks.mirror: " .. where .. ": budget must be a table or false", 3) end
  for k, v in pairs(b) do
    if (k ~= "rate" and k ~= "burst" and k ~= "max") or type(v) ~= "number" or v ~= v or v <= 0 then
      error("freshbooks.mirror: " .. where .. ": budget takes rate, burst and max, numbers > 0", 3)
    end
  end
end

-- m:sync(fb, opts) -> summary | nil, err, summary
--   businesses  keys (business_id, account_id, business_uuid or name; default: every membership)
--   resources   names (default mirror.resources)
--   parallel    pages in flight during a walk (default 4)
--   budget      {rate = 3 per second, burst = 120, max = requests for the run} or false
--   progress    function(event): {type = "resource" | "page" | "wait" | "done", ...}
--   reconcile   true: compare counts now; "full": walk everything again; false: never (default: daily)
--   reconcile_every seconds (86400); overlap: seconds re-read before the checkpoint (300)
--   wait        seconds to wait for another sync of this mirror to end (default 0: sync_in_progress)
function Mirror:sync(fb, opts)
  check_session(fb, "sync")
  opts = check(opts, SYNC, "sync")
  if self.readonly then error("freshbooks.mirror: sync: the mirror was opened read-only", 2) end
  number_opt(opts, "parallel", 1, "sync")
  number_opt(opts, "reconcile_every", 0, "sync")
  number_opt(opts, "overlap", 0, "sync")
  number_opt(opts, "wait", 0, "sync")
  check_budget(opts.budget, "sync")
  if opts.progress ~= nil and type(opts.progress) ~= "function" then
    error("freshbooks.mirror: sync: progress must be a function", 2)
  end
  local r = opts.reconcile
  if r ~= nil and r ~= true and r ~= false and r ~= "full" then
    error("freshbooks.mirror: sync: reconcile must be true, false or \"full\"", 2)
  end
  for _, k in ipairs { "businesses", "resources" } do
    if opts[k] ~= nil and (type(opts[k]) ~= "table" or opts[k][1] == nil) then
      error("freshbooks.mirror: sync: " .. k .. " must be a non-empty list", 2)
    end
  end
  for _, name in ipairs(opts.resources or {}) do
    if not resources.by_name[name] then
      error(("freshbooks.mirror: sync: %s is not a resource the mirror keeps (%s)"):format(tostring(name),
        table.concat(mirror.resources, ", ")), 2)
    end
  end
  local b = live(self, "sync")
  local lease, err = b:lease("sync", opts.wait or 0)
  if not lease then return nil, err end
  local res, serr, summary = sync.run(b, fb, opts)
  lease.release()
  return res, serr, summary
end

-- m:apply(fb, event, opts) -> outcome | nil, err. `event`: {name, object_id, account_id, business_id}
-- as a webhook delivers it (the delivery's form fields, verified by the caller). The object is read
-- again (it or its deletion is what counts, whatever order events arrive in, however often); events
-- of other resources or businesses are ignored ({ignored = why}). opts: budget, progress.
function Mirror:apply(fb, event, opts)
  check_session(fb, "apply")
  if type(event) ~= "table" then error("freshbooks.mirror: apply: event must be a table", 2) end
  opts = check(opts, { budget = true, progress = true }, "apply")
  check_budget(opts.budget, "apply")
  if self.readonly then error("freshbooks.mirror: apply: the mirror was opened read-only", 2) end
  local ev = {}
  if event[1] ~= nil then -- webhook.parse's ordered {name, value} pairs
    for _, p in ipairs(event) do if type(p) == "table" then ev[p[1]] = p[2] end end
  else
    ev = event
  end
  return sync.event(live(self, "apply"), fb, ev, opts)
end

-- m:query(sql, params, {deadline = seconds, max_rows = n, max_bytes = n, null = value}) -> {columns, rows}
-- | nil, err. One statement that only reads (read_only otherwise); too_many_rows, too_large,
-- sqlite_deadline when it answers or runs past its bounds.
function Mirror:query(sql, params, opts)
  if type(sql) ~= "string" then error("freshbooks.mirror: query: sql must be a string", 2) end
  if params ~= nil and type(params) ~= "table" then error("freshbooks.mirror: query: params must be a list", 2) end
  opts = check(opts, { deadline = true, max_rows = true, max_bytes = true, null = true }, "query")
  number_opt(opts, "deadline", 0, "query")
  number_opt(opts, "max_rows", 0, "query")
  number_opt(opts, "max_bytes", 0, "query")
  return live(self, "query"):query(sql, params, opts)
end

-- m:status() -> {businesses = {...}, resources = {{business_id, resource, phase, since, synced_at,
-- reconciled_at, status, error, rows, deleted, gone}, ...}} | nil, err
function Mirror:status()
  local b = live(self, "status")
  local biz, err = b:rows("SELECT business_id, account_id, business_uuid, name, synced_at FROM businesses"
    .. " ORDER BY business_id")
  if not biz then return nil, err end
  local out = { businesses = {}, resources = {} }
  for _, r in ipairs(biz) do
    out.businesses[#out.businesses + 1] = { business_id = r[1], account_id = r[2], business_uuid = r[3], name = r[4],
      synced_at = r[5] }
  end
  local states
  states, err = b:rows("SELECT business_id, resource, phase, since, synced_at, reconciled_at, status, error FROM"
    .. " sync_state ORDER BY business_id, resource")
  if not states then return nil, err end
  for _, s in ipairs(states) do
    local r = resources.by_name[s[2]]
    local counts = r and b:first(("SELECT count(*), sum(CASE WHEN vis_state = 1 THEN 1 ELSE 0 END), sum(CASE WHEN"
      .. " gone_at IS NOT NULL THEN 1 ELSE 0 END) FROM %s WHERE business_id = ?"):format(r.table), s[1]) or {}
    out.resources[#out.resources + 1] = { business_id = s[1], resource = s[2], phase = s[3], since = s[4],
      synced_at = s[5], reconciled_at = s[6], status = s[7], error = s[8], rows = counts[1] or 0,
      deleted = counts[2] or 0, gone = counts[3] or 0 }
  end
  return out
end

function Mirror:close()
  if self.backend then self.backend:close() end
  self.backend = nil
end

Mirror.__tostring = function() return "freshbooks.mirror" end

return mirror
