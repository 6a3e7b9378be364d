-- Reading a PostgreSQL mirror inside nginx without blocking the worker: PostgreSQL's wire protocol
-- (version 3) over a cosocket, read-only. libpq's calls block the thread, and Debian packages no
-- cosocket client (OpenResty's pgmoon is not in Debian), so this is a small one of our own: what the
-- mirror's reader needs and nothing more - TLS (sslmode disable, prefer, require, verify-full),
-- SCRAM-SHA-256 (the server's signature checked), MD5 and cleartext passwords, the extended protocol
-- with text parameters, answers converted as the C core's binding converts them (core.pg), error codes
-- from the same table (core.pg.code_of), the worker's connection pool.
--   local m = assert(require("freshbooks.mirror").open{ postgres = "postgresql://reader:pw@db/mirror",
--     connection = user_id, readonly = true })        -- in a request handler, timer, ...
--   local rows = require("freshbooks.mirror.reports").billing(m, { as_of = "2025-06-30" })
-- Every statement is one round trip: BEGIN, the connection's scope (mirror_scope, written in the
-- transaction itself), SET TRANSACTION READ ONLY, a statement_timeout, the statement, then ROLLBACK:
-- nothing a statement does outlives it, not even whose rows it saw. A connection goes back to the pool
-- only after an exchange that ended idle.
local core = require "freshbooks.core"
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local postgres = require "freshbooks.mirror.postgres"

local pgwire = {}

local floor, char, byte, concat = math.floor, string.char, string.byte, table.concat

local function int32(n)
  if n < 0 then n = n + 4294967296 end
  return char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
end
local function int16(n) return char(floor(n / 256) % 256, n % 256) end
local function get32(s, i)
  local a, b, c, d = byte(s, i, i + 3)
  local n = ((a * 256 + b) * 256 + c) * 256 + d
  if n >= 2147483648 then n = n - 4294967296 end
  return n
end
local function get16(s, i)
  local a, b = byte(s, i, i + 1)
  return a * 256 + b
end
local function message(kind, body) return kind .. int32(#body + 4) .. body end
local function cstring(s) return s .. "\0" end

-- Connection settings: a URI (postgresql://user:password@host:port/dbname?sslmode=...) or libpq's
-- key=value words.
local function unescape(s) return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end)) end
local function settings(info)
  local c = {}
  local scheme, rest = info:match("^(postgres[a-z]*)://(.*)$")
  if scheme then
    local auth, hostpart = rest:match("^([^@/]*)@(.*)$")
    if not auth then hostpart = rest end
    if auth then
      local u, p = auth:match("^([^:]*):(.*)$")
      c.user, c.password = unescape(u or auth), p and unescape(p) or nil
    end
    local hp, path = hostpart:match("^([^/?]*)(.*)$")
    local host, port = hp:match("^%[(.*)%]:?(%d*)$")
    if not host then host, port = hp:match("^([^:]*):?(%d*)$") end
    c.host, c.port = host ~= "" and unescape(host) or nil, tonumber(port)
    local db, query = path:match("^/?([^?]*)%??(.*)$")
    if db and db ~= "" then c.dbname = unescape(db) end
    for k, v in (query or ""):gmatch("([^&=]+)=([^&]*)") do c[unescape(k)] = unescape(v) end
  else
    local i = 1
    while i <= #info do
      local k, j = info:match("^%s*([%w_]+)%s*=%s*()", i)
      if not k then break end
      local v
      if info:sub(j, j) == "'" then
        local out, p = {}, j + 1
        while p <= #info do
          local ch = info:sub(p, p)
          if ch == "\\" then out[#out + 1] = info:sub(p + 1, p + 1) p = p + 2
          elseif ch == "'" then break
          else out[#out + 1] = ch p = p + 1 end
        end
        v, i = concat(out), p + 1
      else
        v = info:match("^[^%s]*", j)
        i = j + #v
      end
      c[k] = v
    end
  end
  c.port = tonumber(c.port) or 5432
  c.host = c.host or c.hostaddr or "127.0.0.1"
  c.user = c.user or "postgres"
  c.dbname = c.dbname or c.user
  c.sslmode = c.sslmode or "prefer"
  return c
end
pgwire.settings = settings

local function fail(code, msg, sqlstate)
  local e = errors.new{ code = code, message = msg }
  e.sqlstate = sqlstate
  return nil, e
end

-- An ErrorResponse's fields -> nil, err
local function server_error(body, password)
  local f, i = {}, 1
  while i <= #body and body:sub(i, i) ~= "\0" do
    local t = body:sub(i, i)
    local z = body:find("\0", i + 1, true) or #body + 1
    f[t] = body:sub(i + 1, z - 1)
    i = z + 1
  end
  local msg = f.M or "error"
  if password and #password > 0 then msg = msg:gsub(password:gsub("%p", "%%%0"), "***") end
  return fail(core.pg.code_of(f.C), msg, f.C)
end

local Conn = {}
Conn.__index = Conn

-- -> kind, body | nil, err (the socket's)
function Conn:read()
  local head, err = self.sock:receive(5)
  if not head then return nil, err end
  local n = get32(head, 2) - 4
  if n < 0 or n > 1073741824 then return nil, "a message of " .. n .. " bytes" end
  local body = ""
  if n > 0 then
    body, err = self.sock:receive(n)
    if not body then return nil, err end
  end
  return head:sub(1, 1), body
end

local function lost(err)
  return fail("pg_connection", "the connection to PostgreSQL failed: " .. tostring(err))
end

-- SASL SCRAM-SHA-256, the server's signature verified before its "authenticated" is believed.
local function scram(conn, cfg, mechanisms, most)
  if not mechanisms:find("SCRAM-SHA-256\0", 1, true) then
    return fail("pg_auth", "the server offers no SASL mechanism this client knows")
  end
  local nonce = ngx.encode_base64(core.crypto.random_bytes(18))
  local first_bare = "n=,r=" .. nonce
  local first = "n,," .. first_bare
  conn.sock:send(message("p", cstring("SCRAM-SHA-256") .. int32(#first) .. first))
  local kind, body = conn:read()
  if not kind then return lost(body) end
  if kind == "E" then return server_error(body) end
  if kind ~= "R" or get32(body, 1) ~= 11 then return fail("pg_auth", "unexpected answer to SCRAM") end
  local server_first = body:sub(5)
  local r, s, i = server_first:match("r=([^,]+),s=([^,]+),i=(%d+)")
  if not r or r:sub(1, #nonce) ~= nonce then return fail("pg_auth", "the server's SCRAM nonce is not ours") end
  -- The server chooses the work (PostgreSQL's default: 4096 iterations); a worker spends at most `most`.
  if #i > 9 or tonumber(i) < 1 or tonumber(i) > most then
    return fail("pg_auth", ("the server asks for %s SCRAM iterations; this reader does 1 to %d"
      .. " (max_scram_iterations)"):format(#i > 9 and "over 10^9" or i, most))
  end
  local without_proof = "c=biws,r=" .. r
  local salt = ngx.decode_base64(s)
  if not salt then return fail("pg_auth", "the server's SCRAM salt is not base64") end
  local proof, signature = core.pg.scram(cfg.password or "", salt, tonumber(i), first_bare .. "," .. server_first
    .. "," .. without_proof)
  if not proof then return nil, signature end
  local final = without_proof .. ",p=" .. ngx.encode_base64(proof)
  conn.sock:send(message("p", final))
  kind, body = conn:read()
  if not kind then return lost(body) end
  if kind == "E" then return server_error(body) end
  if kind ~= "R" or get32(body, 1) ~= 12 then return fail("pg_auth", "unexpected answer to SCRAM") end
  local v = body:sub(5):match("v=([^,]+)")
  if not v or not core.crypto.equals(v, ngx.encode_base64(signature)) then
    return fail("pg_auth", "the server did not prove it knows the password (SCRAM signature)")
  end
  return true
end

local pool_key = core.crypto.random_bytes(16)

-- A connection from the worker's pool, or a new one through TLS (as sslmode says) and authentication.
local function connect(cfg, timeout, most)
  local sock = ngx.socket.tcp()
  sock:settimeouts(timeout * 1000, timeout * 1000, timeout * 1000)
  local pool = ("freshbooks.pgwire:%s/%s:%d:%s:%s:%s:%s"):format(cfg.host, cfg.hostaddr or "", cfg.port, cfg.dbname,
    cfg.user,
    core.codec.hex(core.crypto.hmac_sha256(pool_key, cfg.password or "")), cfg.sslmode)
  -- (hostaddr, as libpq has it: the address to reach; host: the name TLS verifies)
  local ok, err = sock:connect(cfg.hostaddr or cfg.host, cfg.port, { pool = pool })
  if not ok then return lost(err) end
  local conn = setmetatable({ sock = sock }, Conn)
  if sock:getreusedtimes() > 0 then return conn end
  if cfg.sslmode ~= "disable" then
    sock:send(int32(8) .. int32(80877103))
    local answer, rerr = sock:receive(1)
    if not answer then sock:close() return lost(rerr) end
    if answer == "S" then
      local verify = cfg.sslmode == "verify-full" or cfg.sslmode == "verify-ca"
      local session, herr = sock:sslhandshake(nil, cfg.host, verify)
      if not session then sock:close() return fail("pg_tls", "TLS with PostgreSQL failed: " .. tostring(herr)) end
    elseif cfg.sslmode ~= "prefer" and cfg.sslmode ~= "allow" then
      sock:close()
      return fail("pg_tls", "PostgreSQL refused TLS, which sslmode=" .. cfg.sslmode .. " requires")
    end
  end
  local params = cstring("user") .. cstring(cfg.user) .. cstring("database") .. cstring(cfg.dbname)
    .. cstring("application_name") .. cstring(cfg.application_name or "freshbooks-mirror-reader")
    .. cstring("client_encoding") .. cstring("UTF8") .. "\0"
  sock:send(int32(#params + 8) .. int32(196608) .. params)
  while true do
    local kind, body = conn:read()
    if not kind then sock:close() return lost(body) end
    if kind == "E" then sock:close() return server_error(body, cfg.password) end
    if kind == "R" then
      local code = get32(body, 1)
      local aok, aerr = true, nil
      if code == 3 then
        sock:send(message("p", cstring(cfg.password or "")))
      elseif code == 5 then
        local inner = ngx.md5((cfg.password or "") .. cfg.user)
        sock:send(message("p", cstring("md5" .. ngx.md5(inner .. body:sub(5, 8)))))
      elseif code == 10 then
        aok, aerr = scram(conn, cfg, body:sub(5), most)
      elseif code ~= 0 then
        aok, aerr = fail("pg_auth", "an authentication method this client does not know (" .. code .. ")")
      end
      if not aok then sock:close() return nil, aerr end
    elseif kind == "Z" then
      return conn
    end -- ParameterStatus, BackendKeyData, NoticeResponse: nothing to keep
  end
end

-- Parse, Bind (text parameters), Describe, Execute of one unnamed statement.
local function extended(sql, params, n, describe)
  local vals = { int16(0), int16(n) }
  for i = 1, n do
    local v = params[i]
    if v == nil then
      vals[#vals + 1] = int32(-1)
    else
      if type(v) == "boolean" then v = v and "1" or "0"
      elseif type(v) == "number" then
        v = (v == floor(v) and v > -9007199254740992 and v < 9007199254740992) and ("%.0f"):format(v)
          or ("%.17g"):format(v)
      elseif type(v) ~= "string" then
        error("freshbooks.mirror.pgwire: parameters must be nil, booleans, numbers or strings", 4)
      end
      vals[#vals + 1] = int32(#v) .. v
    end
  end
  vals[#vals + 1] = int16(0)
  return message("P", cstring("") .. cstring(sql) .. int16(0)) .. message("B", cstring("") .. cstring("")
    .. concat(vals)) .. (describe and message("D", "P\0") or "") .. message("E", cstring("") .. int32(0))
end

local SCOPE = "INSERT INTO mirror_scope (pid, connection_id) VALUES (pg_backend_pid(), $1) ON CONFLICT (pid) DO"
  .. " UPDATE SET connection_id = excluded.connection_id"

-- Values as core.pg gives them under LuaJIT, by type: integers, whole numerics and floats as numbers
-- (from 2^53 on a number would round: its text instead), booleans, the rest as text.
local NUMERIC = { [20] = true, [21] = true, [23] = true, [26] = true, [1700] = true }
local EXACT = 2 ^ 53
local function value(oid, v)
  if oid == 16 then return v == "t" end
  if oid == 700 or oid == 701 then return tonumber(v) end
  if NUMERIC[oid] and #v < 20 and v:find("^%-?%d+$") then
    local x = tonumber(v)
    if x > -EXACT and x < EXACT then return x end
  end
  return v
end

-- One read-only statement for `scope`: {columns, rows} | nil, err. opts: deadline (seconds),
-- max_rows, max_bytes, null.
local function exchange(self, sql, params, n, opts)
  local conn, err = connect(self.cfg, self.timeout, self.max_scram_iterations)
  if not conn then return nil, err end
  local deadline = opts.deadline or self.statement_timeout
  local ms = math.max(1, floor(deadline * 1000))
  conn.sock:settimeouts(self.timeout * 1000, self.timeout * 1000, (deadline + self.timeout) * 1000)
  local out = {
    message("Q", cstring("BEGIN")),
    extended(SCOPE, { self.connection }, 1),
    extended("SET TRANSACTION READ ONLY", {}, 0),
    extended("SET LOCAL statement_timeout = " .. ms, {}, 0),
    extended(postgres.placeholders(sql), params, n, true),
    message("S", ""),
    message("Q", cstring("ROLLBACK")),
  }
  local sent, serr = conn.sock:send(concat(out))
  if not sent then conn.sock:close() return lost(serr) end
  local ready, done, failure = 0, 0, nil
  local columns, types, rows, bytes = nil, nil, {}, 0
  local null = opts.null
  while ready < 3 do
    local kind, body = conn:read()
    if not kind then conn.sock:close() return lost(body) end
    if kind == "Z" then
      ready = ready + 1
    elseif kind == "E" then
      local _, e = server_error(body)
      failure = failure or e
    elseif kind == "C" then
      done = done + 1
    elseif kind == "T" then
      local nf = get16(body, 1)
      columns, types = {}, {}
      local i = 3
      for c = 1, nf do
        local z = body:find("\0", i, true)
        columns[c] = body:sub(i, z - 1)
        types[c] = get32(body, z + 7)
        i = z + 19
      end
    elseif kind == "D" then
      local nf, i, row = get16(body, 1), 3, {}
      for c = 1, nf do
        local len = get32(body, i)
        i = i + 4
        if len < 0 then
          row[c] = null
        else
          row[c] = value(types[c], body:sub(i, i + len - 1))
          bytes = bytes + len
          i = i + len
        end
      end
      rows[#rows + 1] = row
      local too
      if opts.max_rows and #rows > opts.max_rows then
        too = errors.new{ code = "too_many_rows", message = ("more than %d rows"):format(opts.max_rows) }
      elseif opts.max_bytes and bytes > opts.max_bytes then
        too = errors.new{ code = "too_large", message = ("the answer passed %d bytes"):format(opts.max_bytes) }
      end
      -- The rest of an answer over the limit is never read: the connection closes (the server rolls
      -- the read-only transaction back), so a huge answer costs no more than the limit.
      if too then conn.sock:close() return nil, too end
    end
  end
  conn.sock:setkeepalive(self.keepalive * 1000, self.pool_size)
  if failure then return nil, failure end
  if done < 5 or not columns then -- (BEGIN, scope, read only, timeout, the statement)
    return fail("pg", "the statement answered no rows")
  end
  return { columns = columns, rows = rows }
end

local Backend = {}
Backend.__index = Backend

local OPEN = options.spec{
  timeout = { "number", min = 0.001, default = 5 },
  statement_timeout = { "number", min = 0.001, default = 30 },
  keepalive = { "number", min = 0, default = 60 },
  pool_size = { "number", integer = true, min = 1, default = 10 },
  -- PBKDF2 runs on the worker: 100,000 rounds take about 60 ms (4,096: 2.4 ms)
  max_scram_iterations = { "number", integer = true, min = 1, max = 10000000, default = 100000 },
}

-- pgwire.open(conninfo, connection_id, {timeout = 5, statement_timeout = 30, keepalive = 60,
-- pool_size = 10, max_scram_iterations = 100000}) -> backend (read-only: rows, first, query, columns)
function pgwire.open(conninfo, connection, opts)
  if type(conninfo) ~= "string" or conninfo == "" then
    error("freshbooks.mirror.pgwire.open: conninfo must be a connection string or URI", 2)
  end
  if type(connection) ~= "string" or connection == "" then
    error("freshbooks.mirror.pgwire.open: the connection id must be a non-empty string", 2)
  end
  opts = options.check("freshbooks.mirror.pgwire.open", OPEN, opts, 2)
  return setmetatable({ cfg = settings(conninfo), connection = connection, dialect = postgres.dialect,
    readonly = true, timeout = opts.timeout, statement_timeout = opts.statement_timeout,
    keepalive = opts.keepalive, pool_size = opts.pool_size, max_scram_iterations = opts.max_scram_iterations },
    Backend)
end

function Backend:query(sql, params, opts)
  if not env.yielding() then
    return fail("blocking_phase", "reading PostgreSQL needs cosockets, which this nginx phase cannot use")
  end
  params = params or {}
  return exchange(self, sql, params, params.n or #params, opts or {})
end

function Backend:rows(sql, ...)
  local res, err = self:query(sql, table.pack and table.pack(...) or { n = select("#", ...), ... })
  if not res then return nil, err end
  return res.rows
end

function Backend:first(sql, ...)
  local rows, err = self:rows(sql, ...)
  if not rows then return nil, err end
  return rows[1] or false
end

Backend.columns = postgres.columns

local function read_only()
  error("freshbooks.mirror.pgwire: this mirror reads only (nginx): the sync workers write it", 3)
end
Backend.exec, Backend.run, Backend.atomic, Backend.migration, Backend.lease = read_only, read_only, read_only,
  read_only, read_only
function Backend.close() end

Backend.__tostring = function(b) return "freshbooks.mirror.pgwire (" .. b.connection .. ")" end

return pgwire
