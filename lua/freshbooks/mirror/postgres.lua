-- The mirror's PostgreSQL backend: the interface of sqlite.lua again (exec, run, rows, first, atomic,
-- migration, columns, query, lease, close, dialect) over the C core's libpq binding (core.pg), for
-- many connections (customers) in one database.
--   local pg = require "freshbooks.mirror.postgres"
--   local session = assert(pg.session("postgresql://mirror@db/mirror"))   -- one per process or worker
--   local b = pg.open(session, "customer-7")                             -- that connection's mirror
--   local m = assert(require("freshbooks.mirror").open{ backend = b })
-- Tenancy: one set of tables; every table of a connection's data leads with `connection_id` (its key
-- and every index lead with it too), filled by default with the connection the session acts for, and
-- row-level security (FORCE: the owner too) keeps each statement to that connection's rows: the
-- mirror's SQL (sync, reports, status) is the same text on both backends, and a statement run for the
-- wrong connection finds nothing rather than another customer's rows. The connection a session acts
-- for is a row of `mirror_scope` (its backend pid -> connection id), written before the statements
-- for a connection and read once per statement by the policy: SQL from users and guests runs in a READ
-- ONLY transaction, which can write no table, so it cannot change whose rows it sees (a setting could
-- be changed by set_config in the query itself).
-- Why not a schema per connection: thousands of customers would be thousands of copies of ~30 tables
-- with their indexes and TOAST tables (catalog bloat, a relcache per backend that grows with every
-- customer a worker touches, a migration per customer), and one set of prepared statements could not
-- serve them all. RLS needs a role that is neither a superuser nor BYPASSRLS (they skip it): such a
-- role is refused.
local core = require "freshbooks.core"
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"

local postgres = {}

local LOCK_SPACE = 1179796050 -- 'FRMR': the mirror's advisory locks, apart from the application's own

-- The scope: which connection each session acts for, and the function that reads it (a subquery in a
-- policy is evaluated once per statement; a column default may only call a function).
local SCOPE = {
  "CREATE UNLOGGED TABLE IF NOT EXISTS mirror_scope (pid INTEGER PRIMARY KEY, connection_id TEXT NOT NULL)",
  "CREATE OR REPLACE FUNCTION mirror_connection() RETURNS TEXT LANGUAGE sql STABLE AS"
    .. " $$ SELECT connection_id FROM mirror_scope WHERE pid = pg_backend_pid() $$",
}

local function scope_statements(t)
  local mine = "connection_id = (SELECT mirror_connection())"
  return {
    "ALTER TABLE " .. t .. " ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE " .. t .. " FORCE ROW LEVEL SECURITY",
    ("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = current_schema() AND tablename = '%s'"
      .. " AND policyname = 'connection') THEN CREATE POLICY connection ON %s USING (%s) WITH CHECK (%s); END IF;"
      .. " END $$"):format(t, t, mine, mine),
  }
end
postgres.SCOPE = SCOPE

postgres.dialect = {
  name = "postgres",
  integer = "BIGINT", text = "TEXT", json = "JSONB",
  begin = "BEGIN",
  rowid = "ctid",
  key = function(cols) return "connection_id, " .. cols end,
  scope = { column = "connection_id TEXT NOT NULL DEFAULT mirror_connection()", statements = scope_statements,
            before = SCOPE },
  distinct = function(a, b) return a .. " IS DISTINCT FROM " .. b end,
  days = function(a, b) return "(CAST(" .. a .. " AS date) - CAST(" .. b .. " AS date))" end,
  add_days = function(d, n)
    return "to_char(CAST(" .. d .. " AS date) + CAST(" .. n .. " AS integer), 'YYYY-MM-DD')"
  end,
  div = function(a, b) return "div(" .. a .. ", " .. b .. ")" end,
  trim = function(x) return "btrim(" .. x .. ", E' \\t\\n\\x0b\\f\\r')" end,
}

-- `?` and `?N` placeholders to PostgreSQL's `$N`, outside quoted text and identifiers.
local function placeholders(sql)
  local out, n, i, len = {}, 0, 1, #sql
  while i <= len do
    local c = sql:sub(i, i)
    if c == "'" or c == '"' then
      local j = i + 1
      while j <= len do
        local d = sql:sub(j, j)
        if d == c then
          if sql:sub(j + 1, j + 1) == c then j = j + 1 else break end
        elseif d == "\\" and c == "'" and sql:sub(i - 1, i - 1):match("[eE]") then
          j = j + 1
        end
        j = j + 1
      end
      out[#out + 1] = sql:sub(i, j)
      i = j + 1
    elseif c == "?" then
      local digits = sql:match("^%d+", i + 1)
      if digits then
        out[#out + 1] = "$" .. digits
        i = i + 1 + #digits
      else
        n = n + 1
        out[#out + 1] = "$" .. n
        i = i + 1
      end
    else
      local j = sql:find("['\"?]", i) or len + 1
      out[#out + 1] = sql:sub(i, j - 1)
      i = j
    end
  end
  return table.concat(out)
end
postgres.placeholders = placeholders

-- The password of a conninfo string or URI, to mask in every message (libpq's name the host, and a
-- malformed string may be quoted back).
local function password_of(info)
  if info:match("^%a+://") then -- a URI: in its user part, or a query parameter up to the next one
    return info:match("^%a+://[^:/@]*:([^@]*)@") or info:match("[?&]password=([^&#]*)")
  end
  return info:match("password%s*=%s*'([^']*)'") or info:match("password%s*=%s*([^%s']+)")
end

local function masked(self, text)
  text = tostring(text or "")
  local pw = self.password
  if pw and #pw > 0 then text = text:gsub(pw:gsub("%p", "%%%0"), "***") end
  return text
end

local function fail(session, err, what)
  if errors.is(err) then return nil, err end
  local e = errors.new{ code = err and err.code or "pg", message = (what and (what .. ": ") or "")
    .. masked(session, err and err.message or err) }
  e.sqlstate = err and err.sqlstate
  return nil, e
end

-- Sessions ------------------------------------------------------------------------------------------

local Session = {}
Session.__index = Session

local SESSION = options.spec{
  timeout = { "number", min = 0.001, max = 3600, default = 10 },
  statement_timeout = { "number", min = 0, default = 300 },
}

-- postgres.session(conninfo, {timeout = 10, statement_timeout = 300}) -> session | nil, err. One
-- PostgreSQL session, shared by the backends of the connections a process serves one after another.
-- It reconnects on its own when its connection was lost and no lease is held on it (a lease lives and
-- dies with the session that took it). statement_timeout: seconds any one statement may run.
function postgres.session(conninfo, opts)
  if type(conninfo) ~= "string" or conninfo == "" then
    error("freshbooks.mirror.postgres.session: conninfo must be a libpq connection string or URI", 2)
  end
  if env.nginx() then
    error("freshbooks.mirror.postgres.session: libpq would block the nginx worker: inside nginx open the"
      .. " mirror with freshbooks.mirror.open{postgres = ..., connection = ..., readonly = true} (cosockets)", 2)
  end
  opts = options.check("freshbooks.mirror.postgres.session", SESSION, opts, 2)
  local s = setmetatable({ info = conninfo, password = password_of(conninfo), timeout = opts.timeout,
    statement_timeout = opts.statement_timeout, leases = 0, generation = 0 }, Session)
  local ok, err = s:connect()
  if not ok then return nil, err end
  return s
end

function Session:connect()
  if self.db then self.db:close() end
  self.db, self.tenant, self.names, self.count = nil, nil, {}, 0
  local db, err = core.pg.connect(self.info, { timeout = self.timeout })
  if not db then return fail(self, err) end
  -- Row-level security is what keeps connections apart: a role that skips it is refused.
  local res, rerr = db:query("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
  if not res then db:close() return fail(self, rerr) end
  if res.rows[1] and res.rows[1][1] == true then
    db:close()
    return nil, errors.new{ code = "pg_role_bypasses_rls", message = "the mirror's role is a superuser or has"
      .. " BYPASSRLS, which skip the row-level security that keeps connections apart: connect as a role of"
      .. " its own (CREATE ROLE mirror LOGIN; a database it owns)" }
  end
  db:deadline(self.statement_timeout > 0 and self.statement_timeout or nil)
  -- scopes of sessions that ended: a later session given the same pid must not act for them
  db:exec("DELETE FROM mirror_scope WHERE pid NOT IN (SELECT pid FROM pg_stat_activity)")
  self.db = db
  self.generation = self.generation + 1
  return true
end

-- The live connection, made again when it was lost and nothing depends on the old one.
function Session:live()
  if self.db and self.db:ok() then return self.db end
  if self.leases > 0 then
    return nil, errors.new{ code = "pg_connection", message = "the connection holding a lease was lost" }
  end
  local ok, err = self:connect()
  if not ok then return nil, err end
  return self.db
end

-- The statement's prepared name on this connection (prepared the first time it is used).
function Session:prepared(sql)
  local db, err = self:live()
  if not db then return nil, err end
  local name = self.names[sql]
  if name then return db, name end
  self.count = self.count + 1
  name = "fb" .. self.count
  local ok, perr = db:prepare(name, placeholders(sql))
  if not ok then return fail(self, perr) end
  self.names[sql] = name
  return db, name
end

-- Sets the connection the next statements act for (outside a transaction: a rollback would undo it).
function Session:act_for(connection)
  if self.tenant == connection then return true end
  local db, name = self:prepared("INSERT INTO mirror_scope (pid, connection_id) VALUES (pg_backend_pid(), ?)"
    .. " ON CONFLICT (pid) DO UPDATE SET connection_id = excluded.connection_id")
  if not db then
    if name and name.sqlstate == "42P01" then return true end -- no mirror here yet: the migration makes it
    return nil, name
  end
  local rows, err = db:run(name, connection)
  if not rows then return fail(self, err) end
  self.tenant = connection
  return true
end

function Session:close()
  if self.db and self.db:ok() then self.db:exec("DELETE FROM mirror_scope WHERE pid = pg_backend_pid()") end
  if self.db then self.db:close() end
  self.db = nil
end

Session.__tostring = function() return "freshbooks.mirror.postgres.session" end

-- Backends ------------------------------------------------------------------------------------------

local Backend = {}
Backend.__index = Backend

-- postgres.open(session, connection_id) -> backend: the mirror of that connection.
function postgres.open(session, connection)
  if getmetatable(session) ~= Session then
    error("freshbooks.mirror.postgres.open: a session (freshbooks.mirror.postgres.session) is required", 2)
  end
  if type(connection) ~= "string" or connection == "" then
    error("freshbooks.mirror.postgres.open: the connection id must be a non-empty string", 2)
  end
  return setmetatable({ session = session, connection = connection, dialect = postgres.dialect }, Backend)
end

local function ready(self)
  local s = self.session
  if not s.in_transaction then
    local ok, err = s:act_for(self.connection)
    if not ok then return nil, err end
  end
  return s:live()
end

function Backend:exec(sql)
  local db, err = ready(self)
  if not db then return nil, err end
  local ok, eerr = db:exec(sql)
  if not ok then return fail(self.session, eerr) end
  return true
end

-- A connection found lost by a statement outside a transaction, with no lease on it, is made again
-- and the statement run once more (after a PostgreSQL restart, the first statement finds out).
local function again(self, err)
  local s = self.session
  return err and err.code == "pg_connection" and not s.in_transaction and s.leases == 0 and s:connect()
end

local function run(self, sql, ...)
  for _ = 1, 2 do
    local ok, err = ready(self)
    if not ok then return nil, err end
    local db, name = self.session:prepared(sql)
    if not db then
      if not again(self, name) then return nil, name end
    else
      local rows, n = db:run(name, ...)
      if rows then return rows, n end
      if not again(self, n) then return fail(self.session, n) end
    end
  end
  return nil, errors.new{ code = "pg_connection", message = "the connection was lost twice" }
end

function Backend:run(sql, ...)
  local _, n = run(self, sql, ...)
  if not _ then return nil, n end
  return n
end

function Backend:rows(sql, ...)
  return run(self, sql, ...)
end

function Backend:first(sql, ...)
  local rows, err = run(self, sql, ...)
  if not rows then return nil, err end
  return rows[1] or false
end

-- fn() -> true (commit) | nil, err (roll back); a raise rolls back and is raised again.
function Backend:atomic(fn)
  local s = self.session
  if s.in_transaction then error("freshbooks.mirror.postgres: transactions do not nest", 2) end
  local db, err = ready(self)
  if not db then return nil, err end
  local ok, berr = db:exec("BEGIN")
  if not ok then return fail(s, berr) end
  s.in_transaction = true
  local pok, res, ferr = pcall(fn)
  s.in_transaction = false
  if pok and res then
    local cok, cerr = db:exec("COMMIT")
    if cok then return res end
    if db:ok() then db:exec("ROLLBACK") end
    return fail(s, cerr)
  end
  if db:ok() then db:exec("ROLLBACK") end
  if not pok then error(res, 0) end
  return nil, ferr
end

-- A schema change for every connection: one at a time (a transaction-level advisory lock: workers
-- starting together would race on CREATE TABLE), and with row-level security lifted for the owner
-- while it runs (the typed columns it adds are filled from every connection's rows), in one
-- transaction: no other session ever sees the tables without it.
function Backend:migration(fn)
  return self:atomic(function()
    local ok, err = self:run("SELECT pg_advisory_xact_lock(?, 0)", LOCK_SPACE)
    if not ok then return nil, err end
    local tables
    tables, err = self:rows("SELECT quote_ident(relname) FROM pg_class c JOIN pg_namespace n"
      .. " ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relforcerowsecurity")
    if not tables then return nil, err end
    for _, t in ipairs(tables) do
      ok, err = self:exec("ALTER TABLE " .. t[1] .. " NO FORCE ROW LEVEL SECURITY")
      if not ok then return nil, err end
    end
    local res, ferr = fn()
    if not res then return nil, ferr end
    for _, t in ipairs(tables) do
      ok, err = self:exec("ALTER TABLE " .. t[1] .. " FORCE ROW LEVEL SECURITY")
      if not ok then return nil, err end
    end
    return res
  end)
end

function Backend:columns(tbl)
  local rows, err = self:rows("SELECT column_name FROM information_schema.columns WHERE table_schema ="
    .. " current_schema() AND table_name = ?", tbl)
  if not rows then return nil, err end
  if #rows == 0 then return nil end
  local set = {}
  for _, r in ipairs(rows) do set[r[1]] = true end
  return set
end
postgres.columns = Backend.columns -- (pgwire's too: it needs only rows)

-- A read-only query, as the connection: a READ ONLY transaction (PostgreSQL refuses every write in it:
-- read_only), stopped at `deadline` (pg_deadline), its rows bounded as they arrive (max_rows,
-- max_bytes). Row-level security keeps it to the connection's rows, and the transaction can write
-- nothing, so not whose rows those are. Session advisory locks it took are let go after it (they
-- outlive a rollback) unless the session holds a lease of its own.
function Backend:query(sql, params, opts)
  opts = opts or {}
  local s = self.session
  local db, err = ready(self)
  if not db then return nil, err end
  local ok, berr = db:exec("BEGIN READ ONLY")
  if not ok and again(self, berr) then
    db, err = ready(self)
    if not db then return nil, err end
    ok, berr = db:exec("BEGIN READ ONLY")
  end
  if not ok then return fail(s, berr) end
  if opts.deadline then db:deadline(opts.deadline) end
  local res, qerr = db:query(placeholders(sql), params or {}, { max_rows = opts.max_rows, max_bytes = opts.max_bytes,
    null = opts.null })
  db:deadline(s.statement_timeout > 0 and s.statement_timeout or nil)
  if db:ok() then
    db:exec("ROLLBACK")
    if s.leases == 0 then db:exec("SELECT pg_advisory_unlock_all()") end
  end
  if not res then return fail(s, qerr) end
  return res
end

-- A 31-bit key of the connection id (two ids sharing one only take turns).
local function lock_key(s)
  local h = 7
  for i = 1, #s do h = (h * 131 + s:byte(i)) % 2147483647 end
  return h
end

-- One writer per connection, across every process and node: a session advisory lock on
-- (LOCK_SPACE, hash of the connection id and name). Waits up to `wait` seconds (env.sleep) for a holder.
function Backend:lease(name, wait)
  local key = lock_key(self.connection .. "\0" .. (name or "sync"))
  local until_t = env.now() + (wait or 0)
  local delay = 0.01
  while true do
    local row, err = self:first("SELECT pg_try_advisory_lock(?, ?)", LOCK_SPACE, key)
    if not row then return nil, err end
    if row[1] == true then break end
    if env.now() >= until_t then
      return nil, errors.new{ code = "sync_in_progress", message = "another worker holds connection "
        .. self.connection }
    end
    env.sleep(math.min(delay, math.max(0, until_t - env.now())))
    delay = math.min(delay * 2, 0.25)
  end
  local s = self.session
  s.leases = s.leases + 1
  local generation, released = s.generation, false
  local lease = {}
  -- the session that took it, still connected (asked of the server: a cut connection looks fine to
  -- libpq until it is used)
  local function same_session()
    return s.generation == generation and s.db ~= nil and s.db:ok() and s.db:exec("SELECT 1") == true
  end
  -- whether the lease still holds: its session is the one that took it, and alive
  function lease.held() return not released and same_session() end
  function lease.release()
    if released then return end
    released = true
    s.leases = s.leases - 1
    if same_session() then
      local db, stmt = s:prepared("SELECT pg_advisory_unlock(?, ?)")
      if db then db:run(stmt, LOCK_SPACE, key) end
    end
  end
  return lease
end

function Backend.close() end -- the session is the caller's

Backend.__tostring = function(b) return "freshbooks.mirror.postgres (" .. b.connection .. ")" end

return postgres
