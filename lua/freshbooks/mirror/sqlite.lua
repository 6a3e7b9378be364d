-- The mirror's SQLite backend (the C core's core.sqlite.open). A backend is the small interface the
-- rest of the mirror speaks, so that another database is a second implementation of it, not a copy:
--   backend.dialect                    what differs in SQL text (below)
--   backend:exec(sql)                  statements without rows (DDL)      -> true | nil, err
--   backend:run(sql, ...)              one statement with ? parameters    -> changes | nil, err
--   backend:rows(sql, ...)             its rows as arrays (NULL: nil)     -> rows | nil, err
--   backend:first(sql, ...)            its first row, or false            -> row | false | nil, err
--   backend:atomic(fn)                 fn() in one write transaction; committed when fn returns a true
--                                      value, rolled back when it returns nil, err or raises
--   backend:columns(table)             the table's column names as a set, nil when there is no table
--   backend:query(sql, params, opts)   a read-only query: {columns, rows} | nil, err (opts: deadline
--                                      seconds, max_rows, max_bytes, null)
--   backend:lease(name, wait)          an exclusive lease held until :release() or the process ends
--                                      (one sync per mirror)                -> lease | nil, err
--   backend:close()
-- The dialect: types (integer, text, json), `distinct(a, b)` (a null-safe "differs"), `days(a, b)`
-- (days from date text b to date text a), `add_days(d, n)` (date text n days after d), `div(a, b)`
-- (integer division, toward zero), `trim(x)` (the whitespace Lua's %s trims, both ends), `begin` (the
-- statement opening a write transaction), `rowid` (a row's own address, for migrations), `key(cols)`
-- (a key's columns: a database holding several connections puts the connection first) and `scope`
-- (nil here; see postgres.lua).
-- SQL is written with `?` parameters and SQLite/PostgreSQL's common upsert (ON CONFLICT ... DO UPDATE).
local core = require "freshbooks.core"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"

local sqlite = {}

local Backend = {}
Backend.__index = Backend

sqlite.dialect = {
  name = "sqlite",
  integer = "INTEGER", text = "TEXT", json = "TEXT",
  begin = "BEGIN IMMEDIATE",
  rowid = "rowid",
  key = function(cols) return cols end, -- one file, one connection: no connection key
  distinct = function(a, b) return a .. " IS NOT " .. b end,
  days = function(a, b) return "CAST(julianday(" .. a .. ") - julianday(" .. b .. ") AS INTEGER)" end,
  add_days = function(d, n) return "date(" .. d .. ", printf('%+d days', " .. n .. "))" end,
  div = function(a, b) return "(" .. a .. ") / (" .. b .. ")" end,
  trim = function(x) return "trim(" .. x .. ", ' ' || char(9, 10, 11, 12, 13))" end,
}

local function fail(err, what)
  if errors.is(err) then return nil, err end
  local e = errors.new{ code = err and err.code or "sqlite", message = (what and (what .. ": ") or "")
    .. tostring(err and err.message or err) }
  e.sqlite_code = err and err.sqlite_code
  return nil, e
end

-- sqlite.open(path, {readonly = false, busy_timeout = 5}) -> backend | nil, err
-- A new file is made 0600 first (business data; SQLite's -wal and -shm files take its mode).
local OPEN = options.spec{ readonly = { "boolean" }, busy_timeout = { "number", min = 0, max = 3600, default = 5 } }

function sqlite.open(path, opts)
  if type(path) ~= "string" or path == "" then error("freshbooks.mirror.sqlite.open: path must be a file name", 2) end
  opts = options.check("freshbooks.mirror.sqlite.open", OPEN, opts, 2)
  if not opts.readonly and path ~= ":memory:" and not io.open(path, "rb") then
    local ok, err = core.fs.write_atomic(path, "", 384) -- 0600
    if not ok then return fail(err, path) end
  end
  local db, err = core.sqlite.open(path, { readonly = opts.readonly == true, create = false,
    busy_timeout = opts.busy_timeout })
  if not db then return fail(err) end
  local b = setmetatable({ db = db, path = path, stmts = {}, readonly = opts.readonly == true,
    dialect = sqlite.dialect }, Backend)
  if not b.readonly then
    -- WAL: readers (reports, `freshbooks sql`) never wait for a sync, nor a sync for them. A killed
    -- process loses nothing committed; synchronous=NORMAL may lose the last commits on power loss
    -- (a resume fetches them again), never consistency. The WAL is copied back (with an fsync) when it
    -- holds 40 MB, not every 4: a first sync writes a page of records a transaction (measured: the
    -- upsert of an invoice 38 -> 16 us).
    local ok, perr = db:exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
      .. " PRAGMA wal_autocheckpoint=10000")
    if not ok then db:close() return fail(perr, path) end
  end
  return b
end

function Backend:close()
  for _, st in pairs(self.stmts) do st:close() end
  self.stmts = {}
  if self.db then self.db:close() end
end

function Backend:exec(sql)
  local ok, err = self.db:exec(sql)
  if not ok then return fail(err) end
  return true
end

-- Prepared once per SQL text and kept: the mirror runs the same few statements thousands of times.
local function prepared(self, sql)
  local st = self.stmts[sql]
  if st then return st end
  local err
  st, err = self.db:prepare(sql)
  if not st then return fail(err) end
  self.stmts[sql] = st
  return st
end

function Backend:run(sql, ...)
  local st, err = prepared(self, sql)
  if not st then return nil, err end
  st:bind(...)
  local more, serr = st:step()
  while more do more, serr = st:step() end
  st:reset()
  if more == nil then return fail(serr) end
  return self.db:changes()
end

function Backend:rows(sql, ...)
  local st, err = prepared(self, sql)
  if not st then return nil, err end
  st:bind(...)
  local out = {}
  while true do
    local more, serr = st:step()
    if more == nil then st:reset() return fail(serr) end
    if not more then break end
    out[#out + 1] = st:row()
  end
  st:reset()
  return out
end

function Backend:first(sql, ...)
  local st, err = prepared(self, sql)
  if not st then return nil, err end
  st:bind(...)
  local more, serr = st:step()
  local row = more and st:row() or false
  st:reset()
  if more == nil then return fail(serr) end
  return row
end

-- fn() -> true (commit) | nil, err (roll back); a raise rolls back and is raised again.
function Backend:atomic(fn)
  local ok, err = self.db:exec(self.dialect.begin)
  if not ok then return fail(err) end
  local pok, res, ferr = pcall(fn)
  if pok and res then
    ok, err = self.db:exec("COMMIT")
    if ok then return res end
    self.db:exec("ROLLBACK")
    return fail(err)
  end
  self.db:exec("ROLLBACK")
  if not pok then error(res, 0) end
  return nil, ferr
end

function Backend:columns(tbl)
  local rows, err = self:rows("SELECT name FROM pragma_table_info(?)", tbl)
  if not rows then return nil, err end
  if #rows == 0 then return nil end
  local set = {}
  for _, r in ipairs(rows) do set[r[1]] = true end
  return set
end

-- A read-only query: refused unless SQLite says the statement only reads (the connection of a
-- read-only mirror is opened read-only too). `deadline` stops it (sqlite_deadline), `max_rows` bounds
-- what it may answer (too_many_rows).
function Backend:query(sql, params, opts)
  opts = opts or {}
  self.db:restrict(true)
  local st, err = self.db:prepare(sql)
  self.db:restrict(false)
  if not st then
    if err and err.sqlite_code == 23 then -- SQLITE_AUTH: the authorizer refused something that writes
      return nil, errors.new{ code = "read_only", message = "only statements that read are allowed" }
    end
    return fail(err)
  end
  if not st:readonly() then
    st:close()
    return nil, errors.new{ code = "read_only", message = "only statements that read are allowed" }
  end
  local function finish(...)
    st:close()
    self.db:deadline(nil)
    return ...
  end
  local bound = pcall(st.bind, st, (table.unpack or unpack)(params or {}, 1, params and params.n or #(params or {})))
  if not bound then
    return finish(nil, errors.new{ code = "bad_parameters", message = "parameters must be nil, booleans, numbers"
      .. " or strings, one per ?" })
  end
  self.db:deadline(opts.deadline)
  local rows, max, bytes = {}, opts.max_rows, 0
  local ncols = #st:columns()
  while true do
    local more, serr = st:step()
    if more == nil then return finish(fail(serr)) end
    if not more then break end
    if max and #rows >= max then
      return finish(nil, errors.new{ code = "too_many_rows", message = ("more than %d rows"):format(max) })
    end
    local row = st:row(opts.null)
    if opts.max_bytes then
      bytes = bytes + 16 + 8 * ncols
      for i = 1, ncols do if type(row[i]) == "string" then bytes = bytes + #row[i] end end
      if bytes > opts.max_bytes then
        return finish(nil, errors.new{ code = "too_large", message = ("the answer passed %d bytes"):format(
          opts.max_bytes) })
      end
    end
    rows[#rows + 1] = row
  end
  return finish({ columns = st:columns(), rows = rows })
end

-- One sync per mirror file: an exclusive flock on a file beside it, released when the process ends
-- however it ends.
function Backend:lease(name, wait)
  if self.path == ":memory:" then return { release = function() end } end
  local lock, err = core.fs.lock(self.path .. "-" .. name .. ".lock", wait or 0)
  if not lock then
    if err and err.code == "lock_timeout" then
      return nil, errors.new{ code = "sync_in_progress", message = "another sync holds " .. self.path }
    end
    return fail(err)
  end
  return { release = function() lock:unlock() end }
end

return sqlite
