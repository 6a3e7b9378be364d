-- freshbooks.mirror: FreshBooks in a local database (docs/mirror.md).
--   local mirror = require "freshbooks.mirror"
--   local m = assert(mirror.open{ path = "mirror.db" })
--   local summary, err = m:sync(fb)                      -- first: everything; then: what changed
--   m:apply(fb, { name = "invoice.update", object_id = 7, account_id = "aBcD1" })   -- a webhook event
--   local res = m:query("SELECT count(*) FROM invoices WHERE vis_state <> 1")        -- read-only SQL
--   m:close()
-- Bad arguments raise; run-time failures return nil, err (an errors object with a stable code).
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
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

local OPEN = options.spec{
  path = { "string", nonempty = true, say = "a file name" },
  backend = { "table", say = "a mirror backend (freshbooks.mirror.sqlite.open, freshbooks.mirror.postgres.open)" },
  postgres = { "string|table", say = "a libpq connection string or URI, or a freshbooks.mirror.postgres.session" },
  connection = { "string", nonempty = true, say = "a connection id (freshbooks.connections')" },
  readonly = { "boolean" },
  busy_timeout = { "number", min = 0, max = 3600 },
}

-- The PostgreSQL mirror of one connection: on a session of the caller's, or on one of its own (closed
-- with the mirror); inside nginx, read-only over cosockets (freshbooks.mirror.pgwire).
local function open_postgres(opts)
  if not opts.connection then error("freshbooks.mirror: open: postgres needs connection (whose mirror)", 3) end
  if env.nginx() then
    if not opts.readonly or type(opts.postgres) ~= "string" then
      error("freshbooks.mirror: open: inside nginx a PostgreSQL mirror is read-only (readonly = true) and"
        .. " named by a connection string (writes belong to the sync workers)", 3)
    end
    return require("freshbooks.mirror.pgwire").open(opts.postgres, opts.connection)
  end
  local pg = require "freshbooks.mirror.postgres"
  local session, owned = opts.postgres, false
  if type(session) == "string" then
    local err
    session, err = pg.session(session)
    if not session then return nil, err end
    owned = true
  end
  local b = pg.open(session, opts.connection)
  if owned then b.close = function() session:close() end end
  return b
end

-- mirror.open{path = file | postgres = conninfo or session, connection = id | backend = object,
-- readonly = false} -> mirror | nil, err
-- A new file gets the current schema, an older one is migrated forward (also when opened read-only:
-- a writable connection does it first), a newer one is refused (mirror_too_new).
function mirror.open(opts)
  opts = options.check("freshbooks.mirror: open", OPEN, opts, 2)
  local given = (opts.path and 1 or 0) + (opts.backend and 1 or 0) + (opts.postgres and 1 or 0)
  if given ~= 1 then error("freshbooks.mirror: open: give one of path, postgres or backend", 2) end
  if opts.connection and not opts.postgres then
    error("freshbooks.mirror: open: connection goes with postgres (a file holds one connection)", 2)
  end
  if opts.postgres then
    local b, err = open_postgres(opts)
    if not b then return nil, err end
    opts.backend = b
  end
  if opts.path and env.nginx() then
    -- SQLite waits on its locks and the disk in the calling thread: in nginx, the whole worker
    error("freshbooks.mirror: open: SQLite would block the nginx worker: open the PostgreSQL mirror there"
      .. " (freshbooks.mirror.postgres), or hand events to a watcher (freshbooks.mirror.feed)", 2)
  end
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

local BUDGET = options.spec{
  rate = { "number", min = 0.001 }, burst = { "number", min = 1 }, max = { "number", integer = true, min = 1 },
}
local SYNC = options.spec{
  businesses = { "table", say = "a non-empty list" }, resources = { "table", say = "a non-empty list" },
  parallel = { "number", integer = true, min = 1, max = 32 },
  budget = { "table|false", say = "a table {rate, burst, max} or false" },
  progress = { "function" },
  reconcile = { "boolean|string", say = 'true, false or "full"' },
  reconcile_every = { "number", min = 0 }, overlap = { "number", min = 0 }, wait = { "number", min = 0 },
  refresh_memberships = { "boolean" },
}
local APPLY = options.spec{ budget = { "table|false", say = "a table {rate, burst, max} or false" },
  progress = { "function" } }

-- (level: where the error points, 3 by default: the caller of the method that checks)
local function check_session(fb, where, level)
  if type(fb) ~= "table" or type(fb.request) ~= "function" then
    error("freshbooks.mirror: " .. where .. ": a session (freshbooks.new) is required", level or 3)
  end
end

-- The budget table, checked like options (a table of its own: {rate, burst, max}).
local function check_budget(b, where, level)
  if type(b) == "table" then options.check("freshbooks.mirror: " .. where .. ": budget", BUDGET, b, level or 3) end
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
  opts = options.check("freshbooks.mirror: sync", SYNC, opts, 2)
  if self.readonly then error("freshbooks.mirror: sync: the mirror was opened read-only", 2) end
  check_budget(opts.budget, "sync")
  if type(opts.reconcile) == "string" and opts.reconcile ~= "full" then
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

-- An event's fields: webhook.parse's ordered {name, value} pairs, or a table of them.
local function fields_of(event)
  if event[1] == nil then return event end
  local ev = {}
  for _, p in ipairs(event) do if type(p) == "table" then ev[p[1]] = p[2] end end
  return ev
end

-- m:apply(fb, event, opts) -> outcome | nil, err. `event`: {name, object_id, account_id, business_id}
-- as a webhook delivers it (the delivery's form fields, verified by the caller). The object is read
-- again (it or its deletion is what counts, whatever order events arrive in, however often); events
-- of other resources or businesses are ignored ({ignored = why}). opts: budget, progress.
-- What apply and apply_events check before anything (errors at their caller's caller). -> opts
local function check_apply(self, fb, what, opts)
  check_session(fb, what, 4)
  opts = options.check("freshbooks.mirror: " .. what, APPLY, opts, 3)
  check_budget(opts.budget, what, 4)
  if self.readonly then error("freshbooks.mirror: " .. what .. ": the mirror was opened read-only", 3) end
  return opts
end

function Mirror:apply(fb, event, opts)
  if type(event) ~= "table" then error("freshbooks.mirror: apply: event must be a table", 2) end
  opts = check_apply(self, fb, "apply", opts)
  return sync.event(live(self, "apply"), fb, fields_of(event), opts)
end

-- m:apply_events(fb, events, opts) -> outcome | nil, err: a batch of events as m:apply takes them;
-- the objects of one business and resource are read together (100 a request). outcome: {written,
-- gone, requests, ignored = how many events named nothing the mirror keeps}. opts: budget, progress.
function Mirror:apply_events(fb, events, opts)
  if type(events) ~= "table" then error("freshbooks.mirror: apply_events: events must be a list", 2) end
  opts = check_apply(self, fb, "apply_events", opts)
  local list = {}
  for i, event in ipairs(events) do
    if type(event) ~= "table" then error("freshbooks.mirror: apply_events: event " .. i .. " is not a table", 2) end
    list[i] = fields_of(event)
  end
  return sync.events(live(self, "apply_events"), fb, list, opts)
end

local QUERY = options.spec{
  deadline = { "number", min = 0 }, max_rows = { "number", integer = true, min = 0 },
  max_bytes = { "number", integer = true, min = 0 },
  null = { "userdata|table|string|number|boolean", say = "the value NULL reads as (e.g. cjson.null)" },
}

-- m:query(sql, params, {deadline = seconds, max_rows = n, max_bytes = n, null = value}) -> {columns, rows}
-- | nil, err. One statement that only reads (read_only otherwise); too_many_rows, too_large,
-- sqlite_deadline when it answers or runs past its bounds.
function Mirror:query(sql, params, opts)
  if type(sql) ~= "string" then error("freshbooks.mirror: query: sql must be a string", 2) end
  if params ~= nil and type(params) ~= "table" then error("freshbooks.mirror: query: params must be a list", 2) end
  opts = options.check("freshbooks.mirror: query", QUERY, opts, 2)
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
