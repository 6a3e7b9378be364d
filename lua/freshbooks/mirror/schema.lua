-- The mirror's schema (docs/mirror.md): a table per resource with typed columns for reports and joins
-- plus the whole record as JSON, the businesses, the sync checkpoints; its version and the forward
-- migrations. Typed columns are derived from the record, so a column a newer version adds is filled
-- from the JSON already stored: an upgrade never needs a sync.
local core = require "freshbooks.core"
local date = require "freshbooks.date"
local errors = require "freshbooks.errors"
local number = require("freshbooks.query").number
local resources = require "freshbooks.mirror.resources"

local encode = core.json.encode

local schema = {}

schema.VERSION = 2

-- Migrations from version k - 1 to k: migrations[k](backend) -> true | nil, err, in the upgrade's
-- transaction. Columns and tables the resource list adds need none (ensure() adds and fills them).
schema.migrations = {}

-- Values ----------------------------------------------------------------------------------------

-- A getter for a field path ("amount.code"), or for the first of several that holds a value.
local function getter(paths)
  if type(paths) == "string" then paths = { paths } end
  local gets = {}
  for i, path in ipairs(paths) do
    local a, b = path:match("^([^.]+)%.([^.]+)$")
    if a then
      gets[i] = function(rec)
        local t = rec[a]
        if type(t) == "table" then return t[b] end
      end
    else
      gets[i] = function(rec) return rec[path] end
    end
  end
  if #gets == 1 then return gets[1] end
  return function(rec)
    for _, g in ipairs(gets) do
      local v = g(rec)
      if v ~= nil and v ~= "" then return v end
    end
  end
end

-- "123.45" -> 12345 exactly (at most two decimals; anything else has no cents: NULL).
function schema.cents(s)
  if type(s) ~= "string" then return nil end
  local sign, int, frac = s:match("^%s*([%-+]?)(%d+)%.?(%d?%d?)%s*$")
  if not sign or #int > 15 then return nil end
  local c = tonumber(int) * 100 + tonumber((frac .. "00"):sub(1, 2))
  return sign == "-" and -c or c
end

local function stamp(v, zone)
  if type(v) ~= "string" or v == "" then return nil end
  local t = zone == "eastern" and date.from_eastern(v) or date.from_utc(v)
  return t and date.iso(t)
end
schema.stamp = stamp

local CONVERT = {
  int = function(v)
    if type(v) == "number" and v == math.floor(v) then return v end
    if type(v) == "string" and v:match("^%-?%d+$") and #v < 16 then return tonumber(v) end
    return nil
  end,
  text = function(v)
    if type(v) == "string" then return v end
    if type(v) == "number" then return number(v) end
    if type(v) == "boolean" then return tostring(v) end
    return nil
  end,
  bool = function(v)
    if v == true then return 1 elseif v == false then return 0 end
    return nil
  end,
  date = function(v)
    return type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%d") or nil
  end,
  eastern = function(v) return stamp(v, "eastern") end,
  utc = function(v) return stamp(v, "utc") end,
  iso = function(v) return stamp(v, "iso") end,
}

-- The typed columns of a resource, money and decimals as two (exact text, integer cents):
-- {{name, sqltype_key, value(rec)}, ...}
function schema.typed(r)
  if r.typed then return r.typed end
  local out = {}
  for _, c in ipairs(r.columns) do
    local name, kind = c[1], c[3]
    local get = getter(c[2])
    if kind == "money" or kind == "decimal" then
      local function amount(rec)
        local v = get(rec)
        if kind == "money" then v = type(v) == "table" and v.amount or nil end
        return type(v) == "string" and v or nil
      end
      out[#out + 1] = { name, "text", amount }
      out[#out + 1] = { name .. "_cents", "integer", function(rec) return schema.cents(amount(rec)) end }
    else
      local conv = CONVERT[kind] or error("freshbooks.mirror: column type " .. tostring(kind))
      out[#out + 1] = { name, (kind == "int" or kind == "bool") and "integer" or "text",
        function(rec) return conv(get(rec)) end }
    end
  end
  r.typed = out
  return out
end

-- The record's id, its vis_state (nil when it has none) and its change stamp (UTC ISO).
function schema.id(r, rec)
  local id = rec[r.id]
  if r.id_type == "integer" then
    id = CONVERT.int(id)
  elseif type(id) ~= "string" or id == "" then
    id = nil
  end
  return id
end

function schema.vis(r, rec)
  local v = r.vis and (rec[r.vis] or rec.visState) -- tasks have written visState
  if v == 0 or v == 1 or v == 2 then return v end
  return nil
end

function schema.updated(r, rec)
  return r.stamp and stamp(rec[r.stamp], r.zone) or nil
end

-- The record's change stamp (UTC ISO), and the stamp an incoming record must reach to replace a row:
-- its own, or an hour later when its Eastern wall time is in the hour that repeats as daylight time
-- ends (read as its first occurrence, it may be the second: a later change must never look older).
local function stamps(r, rec)
  local v = r.stamp and rec[r.stamp]
  if type(v) ~= "string" or v == "" then return nil end
  local t = r.zone == "eastern" and date.from_eastern(v) or date.from_utc(v)
  if not t then return nil end
  local iso = date.iso(t)
  if r.zone == "eastern" and date.eastern_offset(t) == -4 * 3600 and date.eastern_offset(t + 3600) == -5 * 3600 then
    return iso, date.iso(t + 3600)
  end
  return iso, iso
end

-- The parameters of the upsert (schema.upsert_sql) for one record: business, id, vis (nil: keep the
-- row's, 0 for a new one), updated, seen (nil: keep), synced_at, typed..., the record as canonical JSON
-- (core.json.encode: keys in byte order, so equal records are equal text in every Lua state), the
-- stamp guard. -> array, count
function schema.params(r, business_id, rec, vis, seen, now_iso)
  local updated, guard = stamps(r, rec)
  local p = { business_id, schema.id(r, rec), vis, updated, seen, now_iso }
  local typed = schema.typed(r)
  for i, c in ipairs(typed) do p[6 + i] = c[3](rec) end
  local n = 7 + #typed
  p[n] = encode(rec)
  p[n + 1] = guard
  return p, n + 1
end

-- SQL -------------------------------------------------------------------------------------------

local COMMON = { "business_id", "id", "vis_state", "updated", "seen", "gone_at", "synced_at" }

-- A table of a connection's data: in a database holding several connections (d.scope: PostgreSQL),
-- the connection's key leads the columns and the primary key, and the backend's d.scope(table) says
-- what keeps each connection to its own rows. -> the statements that make it
local function scoped_table(d, name, cols, key)
  local all = {}
  if d.scope then all[1] = d.scope.column end
  for _, c in ipairs(cols) do all[#all + 1] = c end
  all[#all + 1] = "PRIMARY KEY (" .. d.key(key) .. ")"
  local out = { ("CREATE TABLE IF NOT EXISTS %s (\n  %s\n)"):format(name, table.concat(all, ",\n  ")) }
  for _, sql in ipairs(d.scope and d.scope.statements(name) or {}) do out[#out + 1] = sql end
  return out
end

function schema.create_sql(r, d)
  local cols = {
    "business_id " .. d.integer .. " NOT NULL",
    "id " .. (r.id_type == "text" and d.text or d.integer) .. " NOT NULL",
    "vis_state " .. d.integer .. " NOT NULL DEFAULT 0",
    "updated " .. d.text, "seen " .. d.integer, "gone_at " .. d.text, "synced_at " .. d.text .. " NOT NULL",
  }
  for _, c in ipairs(schema.typed(r)) do cols[#cols + 1] = c[1] .. " " .. d[c[2]] end
  cols[#cols + 1] = "record " .. d.json .. " NOT NULL"
  return scoped_table(d, r.table, cols, "business_id, id")
end

-- One statement writes a record whatever the mirror holds: new rows are inserted; a row is changed only
-- when the record changed - its canonical JSON differs (FreshBooks' stamps have one-second granularity:
-- two changes within a second share a stamp, so an equal stamp says nothing) - or its vis_state
-- differs, or it was marked gone; and never by an older version of the record (an earlier stamp: a
-- re-read that commits late). changes() says whether it wrote.
function schema.upsert_sql(r, d)
  local names, sets = {}, {}
  for _, c in ipairs(COMMON) do names[#names + 1] = c end
  local values = { "?1", "?2", "COALESCE(?3, 0)", "?4", "?5", "NULL", "?6" }
  local n = 6
  for _, c in ipairs(schema.typed(r)) do
    n = n + 1
    names[#names + 1] = c[1]
    values[#values + 1] = "?" .. n
    sets[#sets + 1] = c[1] .. " = excluded." .. c[1]
  end
  n = n + 1
  names[#names + 1] = "record"
  values[#values + 1] = "?" .. n
  local g = "CAST(?" .. (n + 1) .. " AS " .. d.text .. ")" -- (PostgreSQL infers no type from IS NULL)
  local t = r.table
  return ("INSERT INTO %s (%s) VALUES (%s)\nON CONFLICT (%s) DO UPDATE SET"
    .. " vis_state = COALESCE(?3, %s.vis_state), updated = excluded.updated, seen = COALESCE(?5, %s.seen),"
    .. " gone_at = NULL, synced_at = excluded.synced_at, %srecord = excluded.record\nWHERE (%s.updated IS NULL"
    .. " OR %s IS NULL OR %s >= %s.updated) AND (%s OR %s OR %s.gone_at IS NOT NULL)")
    :format(t, table.concat(names, ", "), table.concat(values, ", "), d.key("business_id, id"), t, t,
    #sets > 0 and (table.concat(sets, ", ") .. ", ") or "", t, g, g, t,
    d.distinct(t .. ".record", "excluded.record"),
    d.distinct(t .. ".vis_state", "COALESCE(?3, " .. t .. ".vis_state)"), t)
end

local function base_sql(d)
  local i, t = d.integer, d.text
  local out = { "CREATE TABLE IF NOT EXISTS mirror_meta (key " .. t .. " PRIMARY KEY, value " .. t .. ")" }
  local function add(list) for _, sql in ipairs(list) do out[#out + 1] = sql end end
  add(d.scope and d.scope.before or {})
  add(scoped_table(d, "businesses", { "business_id " .. i .. " NOT NULL", "account_id " .. t, "business_uuid " .. t,
    "name " .. t, "role " .. t, "record " .. d.json, "synced_at " .. t }, "business_id"))
  add(scoped_table(d, "sync_state", { "business_id " .. i .. " NOT NULL", "resource " .. t .. " NOT NULL",
    "phase " .. t, "list " .. i, "page " .. i, "gen " .. i, "walk_started " .. t, "since " .. t,
    "reconciled_at " .. t, "synced_at " .. t, "status " .. t, "error " .. t }, "business_id, resource"))
  -- records to read again because a record they copy changed (written with that change)
  add(scoped_table(d, "pending", { "business_id " .. i .. " NOT NULL", "resource " .. t .. " NOT NULL",
    "filter " .. t .. " NOT NULL", "value " .. t .. " NOT NULL" }, "business_id, resource, filter, value"))
  return out
end

-- Version and migration -------------------------------------------------------------------------

function schema.version(b)
  if not b:columns("mirror_meta") then return nil end
  local row, err = b:first("SELECT value FROM mirror_meta WHERE key = 'schema_version'")
  if row == nil then return nil, err end
  return row and tonumber(row[1]) or nil
end

-- Every stored record of `r` (every connection's, in a database that holds several), decoded, through
-- `values(rec) -> params, n`, into the statement `sql`, whose last parameter is the row's d.rowid (the
-- row's own address, whatever its key).
local function each_record(b, r, sql, values)
  local rows, err = b:rows(("SELECT %s, record FROM %s"):format(b.dialect.rowid, r.table))
  if not rows then return nil, err end
  for _, row in ipairs(rows) do
    local rec = core.json.decode(row[2])
    if type(rec) == "table" then
      local p, n = values(rec)
      p[n + 1] = row[1]
      local ok, uerr = b:run(sql, (table.unpack or unpack)(p, 1, n + 1))
      if not ok then return nil, uerr end
    end
  end
  return true
end

-- Version 2: records are stored as canonical JSON (keys in byte order) and compared as text, so an
-- equal stamp with other content is written; version 1 stored lua-cjson's order, which differs from
-- one Lua state to the next.
schema.migrations[2] = function(b)
  for _, r in ipairs(resources.list) do
    local ok, err = each_record(b, r, ("UPDATE %s SET record = ? WHERE %s = ?"):format(r.table, b.dialect.rowid),
      function(rec) return { encode(rec) }, 1 end)
    if not ok then return nil, err end
  end
  return true
end

-- Adds the tables and typed columns the resource list has and the file lacks, filling new columns from
-- the stored records.
local function ensure(b)
  local d = b.dialect
  for _, sql in ipairs(base_sql(d)) do
    local ok, err = b:exec(sql)
    if not ok then return nil, err end
  end
  for _, r in ipairs(resources.list) do
    local have = b:columns(r.table)
    if not have then
      for _, sql in ipairs(schema.create_sql(r, d)) do
        local ok, err = b:exec(sql)
        if not ok then return nil, err end
      end
    else
      local missing = {}
      for _, c in ipairs(schema.typed(r)) do
        if not have[c[1]] then
          local ok, err = b:exec(("ALTER TABLE %s ADD COLUMN %s %s"):format(r.table, c[1], d[c[2]]))
          if not ok then return nil, err end
          missing[#missing + 1] = c
        end
      end
      if #missing > 0 then
        local sets = {}
        for i, c in ipairs(missing) do sets[i] = c[1] .. " = ?" end
        local ok, err = each_record(b, r, ("UPDATE %s SET %s WHERE %s = ?"):format(r.table, table.concat(sets, ", "),
          d.rowid), function(rec)
            local p = {}
            for i, c in ipairs(missing) do p[i] = c[3](rec) end
            return p, #missing
          end)
        if not ok then return nil, err end
      end
    end
    for i, cols in ipairs(r.indexes) do
      local ok, err = b:exec(("CREATE INDEX IF NOT EXISTS %s_%d ON %s (%s)"):format(r.table, i, r.table,
        d.key("business_id, " .. table.concat(cols, ", "))))
      if not ok then return nil, err end
    end
  end
  return true
end

function schema.too_new(v)
  return errors.new{ code = "mirror_too_new", message = ("the mirror has schema version %d; this lua-freshbooks"
    .. " knows up to %d: upgrade lua-freshbooks"):format(v, schema.VERSION) }
end

-- schema.migrate(backend) -> version | nil, err: a new file gets the current schema; an older one is
-- brought forward in one transaction; a newer one (written by a later version) is refused.
-- What ensure() would make, as a digest: a mirror at the current version with this layout needs no
-- transaction to open (a worker opens one per connection it serves).
local function layout(d)
  local parts = base_sql(d)
  for _, r in ipairs(resources.list) do
    for _, sql in ipairs(schema.create_sql(r, d)) do parts[#parts + 1] = sql end
    for _, cols in ipairs(r.indexes) do parts[#parts + 1] = table.concat(cols, ",") end
  end
  return core.codec.hex(core.crypto.hmac_sha256("freshbooks.mirror", table.concat(parts, "\n")))
end

function schema.migrate(b)
  local v, err = schema.version(b)
  if err then return nil, err end
  if v and v > schema.VERSION then return nil, schema.too_new(v) end
  local want = layout(b.dialect)
  if v == schema.VERSION then
    local row, lerr = b:first("SELECT value FROM mirror_meta WHERE key = 'layout'")
    if row == nil then return nil, lerr end
    if row and row[1] == want then return schema.VERSION end
  end
  local ok, merr = (b.migration or b.atomic)(b, function()
    local done, e = ensure(b)
    if not done then return nil, e end
    for k = (v or schema.VERSION) + 1, schema.VERSION do
      if schema.migrations[k] then
        done, e = schema.migrations[k](b)
        if not done then return nil, e end
      end
    end
    for key, value in pairs { schema_version = tostring(schema.VERSION), layout = want } do
      done, e = b:run("INSERT INTO mirror_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value ="
        .. " excluded.value", key, value)
      if not done then return nil, e end
    end
    return true
  end)
  if not ok then return nil, merr end
  return schema.VERSION
end

return schema
