-- The C core's SQLite (src/sqlite.c): what the mirror stores must come back exactly (64-bit integers,
-- strings with any bytes, NULL), one statement per prepare, errors with stable codes, a deadline and
-- Ctrl-C that stop a running statement, read-only statements told apart, handles that close once.
local core = require "freshbooks.core"
local H = require "support.fbtest"

describe("core.sqlite.open", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir) end)

  local function one(db, sql, ...)
    local st = assert(db:prepare(sql))
    st:bind(...)
    assert.is_true(st:step())
    local row = st:row()
    st:close()
    return row
  end

  it("round-trips 64-bit integers, floats, strings with any bytes, booleans and NULL", function()
    local db = assert(core.sqlite.open(":memory:"))
    local big = 2 ^ 53 - 1
    if math.type then big = math.tointeger(big) end
    local r = one(db, "SELECT ?, typeof(?), ?, ?, typeof(?), ?, ?, ?, 3000000000, -3000000000",
      big, big, 1.5, "a\0b\255", "a\0b\255", true, false, nil)
    assert.equals(big, r[1])
    assert.equals("integer", r[2])
    assert.equals(1.5, r[3])
    assert.equals("a\0b\255", r[4])
    assert.equals("text", r[5])
    assert.same({ 1, 0 }, { r[6], r[7] })
    assert.is_nil(r[8])
    assert.same({ 3000000000, -3000000000 }, { r[9], r[10] })
    if math.type then
      assert.equals("integer", math.type(r[9]))
      assert.equals("float", math.type(one(db, "SELECT typeof(?), ?", 2.0, 2.0)[2]))
    end
    -- NULL as a given value (cjson.null for JSON output), else a hole
    local st = assert(db:prepare("SELECT 1, NULL, 3"))
    assert.is_true(st:step())
    local null = require("cjson").null
    assert.same({ 1, null, 3 }, st:row(null))
    assert.same({ "1", "NULL", "3" }, st:columns())
    assert.equals(3, st:get(3))
    st:close()
    db:close()
  end)

  it("refuses values it cannot store and a second statement in one prepare", function()
    local db = assert(core.sqlite.open(":memory:"))
    local st = assert(db:prepare("SELECT ?"))
    assert.has_error(function() st:bind({}) end)
    assert.has_error(function() st:bind(core.secret.new("s")) end)
    assert.has_error(function() st:bind(1, 2) end)
    local none, err = db:prepare("SELECT 1; DROP TABLE x")
    assert.is_nil(none)
    assert.equals("sqlite_multiple", err.code)
    assert.truthy(db:prepare("SELECT 1; -- a comment\n ; /* another */"))
    none, err = db:prepare("  -- nothing\n")
    assert.is_nil(none)
    assert.equals("sqlite_empty", err.code)
    none, err = db:prepare("SELEC 1")
    assert.is_nil(none)
    assert.equals("sqlite", err.code)
    assert.truthy(err.message:find("syntax error", 1, true))
    assert.has_error(function() db:prepare("SELECT 1\0; DROP TABLE x") end)
    db:close()
  end)

  it("answers constraint, busy and read-only failures with stable codes", function()
    local path = dir .. "/m.db"
    local db = assert(core.sqlite.open(path, { busy_timeout = 0 }))
    assert(db:exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    local ins = assert(db:prepare("INSERT INTO t VALUES (?, ?)"))
    assert.is_false(ins:bind(1, "a"):step())
    assert.equals(1, db:changes())
    local ok, err = ins:bind(1, "b"):step()
    assert.is_nil(ok)
    assert.equals("sqlite_constraint", err.code)
    assert.is_number(err.sqlite_code)
    -- another connection holds the write lock: busy at once (busy_timeout 0)
    local other = assert(core.sqlite.open(path, { busy_timeout = 0 }))
    assert(other:exec("BEGIN IMMEDIATE"))
    assert.is_true(other:in_transaction())
    ok, err = db:exec("BEGIN IMMEDIATE")
    assert.is_nil(ok)
    assert.equals("sqlite_busy", err.code)
    assert(other:exec("ROLLBACK"))
    local ro = assert(core.sqlite.open(path, { readonly = true }))
    ok, err = ro:exec("DELETE FROM t")
    assert.is_nil(ok)
    assert.equals("sqlite_readonly", err.code)
    local sel = assert(ro:prepare("SELECT count(*) FROM t"))
    assert.is_true(sel:readonly())
    assert.is_false(ins:readonly())
    assert.is_true(sel:step())
    assert.equals(1, sel:get(1))
    sel:close(); ro:close(); other:close(); ins:close(); db:close()
    local none
    none, err = core.sqlite.open(dir .. "/missing/m.db")
    assert.is_nil(none)
    assert.equals("sqlite_cantopen", err.code)
    none, err = core.sqlite.open(dir .. "/absent.db", { readonly = true })
    assert.is_nil(none)
    assert.equals("sqlite_cantopen", err.code)
    assert.has_error(function() core.sqlite.open(path, { nope = true }) end)
    assert.has_error(function() core.sqlite.open(path, { readonly = true, create = true }) end)
    assert.has_error(function() core.sqlite.open(path, { busy_timeout = -1 }) end)
  end)

  it("prepares only statements that read while restricted (ATTACH and DETACH too, which would create files)",
    function()
    local db = assert(core.sqlite.open(":memory:"))
    assert(db:exec("CREATE TABLE t(x)"))
    db:restrict(true)
    for _, sql in ipairs { "INSERT INTO t VALUES (1)", "ATTACH DATABASE '" .. dir .. "/a.db' AS a",
      "PRAGMA journal_mode=DELETE", "DROP TABLE t", "BEGIN", "VACUUM INTO '" .. dir .. "/v.db'" } do
      local none, err = db:prepare(sql)
      assert.is_nil(none, sql)
      assert.equals(23, err.sqlite_code % 256, sql) -- SQLITE_AUTH
    end
    assert.is_nil(io.open(dir .. "/a.db"))
    -- a table-valued function's first use on the connection (it declares its table then)
    local st = assert(db:prepare("SELECT value FROM json_each('[1,2]')"))
    assert.is_true(st:step())
    st:close()
    local none = db:prepare("UPDATE sqlite_master SET type = 'x'") -- still refused (SQLite refuses it itself)
    assert.is_nil(none)
    assert.truthy(db:prepare("SELECT count(*) FROM t"))
    assert.truthy(db:prepare("PRAGMA table_info(t)"))
    db:restrict(false)
    assert.truthy(db:prepare("INSERT INTO t VALUES (1)"))
    db:close()
  end)

  it("does not follow a symbolic link to the database", function()
    local target = dir .. "/real.db"
    assert(core.sqlite.open(target)):close()
    os.execute("ln -s " .. target .. " " .. dir .. "/link.db")
    local none, err = core.sqlite.open(dir .. "/link.db")
    assert.is_nil(none)
    assert.equals("sqlite_cantopen", err.code)
  end)

  it("stops a running statement at its deadline, and the connection stays usable", function()
    local db = assert(core.sqlite.open(":memory:"))
    local st = assert(db:prepare("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
      .. "SELECT count(*) FROM c"))
    db:deadline(0.1)
    local t = core.clock.now()
    local ok, err = st:step()
    assert.is_nil(ok)
    assert.equals("sqlite_deadline", err.code)
    assert.is_true(core.clock.now() - t < 5)
    db:deadline(nil)
    assert.same({ 2 }, one(db, "SELECT 1 + 1"))
    for _, bad in ipairs{ -1, 0 / 0, -math.huge } do
      assert.has_error(function() db:deadline(bad) end, nil, tostring(bad))
    end
    db:deadline(0) -- no time left at all
    ok, err = db:exec("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
    assert.is_nil(ok)
    assert.equals("sqlite_deadline", err.code)
    st:close(); db:close()
  end)

  it("stops a running statement on Ctrl-C in a program that traps interrupts", function()
    local script = dir .. "/long.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
      local core = require "freshbooks.core"
      core.signal.trap()
      local db = assert(core.sqlite.open(":memory:"))
      io.stdout:write("ready\n"); io.stdout:flush()
      local ok, err = db:exec("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
      io.stdout:write(tostring(ok), " ", err and err.code or "", "\n")
    ]])
    f:close()
    local out = dir .. "/out"
    os.execute(("spec/env %s %s %s > %s 2>&1 & echo $! > %s/pid"):format(H.lua, H.lua, script, out, dir))
    local pid
    for _ = 1, 200 do
      pid = H.read(dir .. "/pid")
      if pid and (H.read(out) or ""):find("ready") then break end
      core.clock.sleep(0.05)
    end
    core.clock.sleep(0.2)
    os.execute("kill -INT " .. pid:match("%d+"))
    local text
    for _ = 1, 200 do
      text = H.read(out) or ""
      if text:find("nil ") then break end
      core.clock.sleep(0.05)
    end
    os.execute("kill -KILL " .. pid:match("%d+") .. " 2>/dev/null")
    assert.truthy(text:find("nil aborted", 1, true), text)
  end)

  it("closes once: statements and databases closed twice, in any order, or collected", function()
    local db = assert(core.sqlite.open(":memory:"))
    local st = assert(db:prepare("SELECT 1"))
    db:close()
    db:close()
    assert.has_error(function() st:step() end)
    assert.has_error(function() db:exec("SELECT 1") end)
    st:close()
    st:close()
    assert.has_error(function() st:row() end)
    assert.equals("freshbooks.sqlite (closed)", tostring(db))
    for _ = 1, 50 do
      local d = core.sqlite.open(":memory:")
      d:prepare("SELECT 1")
    end
    collectgarbage()
    collectgarbage()
  end)
end)

-- core.json.encode (src/encode.c): how the mirror stores records, so that the same record is the same
-- text in every process (its comparisons are text comparisons).
describe("core.json.encode", function()
  local encode, decode, null = core.json.encode, core.json.decode, core.json.null

  it("writes members in byte order of their keys, whatever order the table holds them in", function()
    local keys = {}
    for i = 1, 300 do keys[i] = ("k%03d"):format((i * 7919) % 1000) end
    local a, b = {}, {}
    for i = 1, #keys do a[keys[i]] = i end
    for i = #keys, 1, -1 do b[keys[i]] = i end
    assert.equals(encode(a), encode(b))
    assert.equals('{"B":1,"a":{"x":[1,2,{"p":true,"q":false}]},"a b":"","aa":null}',
      encode{ aa = null, a = { x = { 1, 2, { q = false, p = true } } }, ["a b"] = "", B = 1 })
    -- byte order: shorter prefixes first, bytes compared unsigned
    assert.equals('{"a":1,"a\\u0000":2,"ab":3,"\195\169":4}', encode{ ["\195\169"] = 4, ab = 3, ["a\0"] = 2, a = 1 })
  end)

  it("round-trips what the decoder reads: strings with any bytes, whole and fractional numbers, nulls in arrays",
    function()
    local text = '{"a":"q\\"b\\\\s\\n\\t\\u0001\\u001f\255","big":9007199254740993,"f":0.1,"n":[1,null,-3],'
      .. '"neg":-2.5e-07,"o":{},"t":true}'
    local v = assert(decode(text))
    local once = encode(v)
    assert.equals(once, encode(assert(decode(once))))
    assert.equals(0.1, decode(once).f)
    assert.equals(-2.5e-07, decode(once).neg)
    assert.matches('"a":"q\\"b\\\\s\\n\\t\\u0001\\u001f\255"', once, 1, true)
    assert.matches('"n":[1,null,-3]', once, 1, true)
    assert.equals("{}", encode({})) -- an empty table is an object
    assert.equals("3000000000", encode(3000000000))
    assert.equals('"x"', encode("x"))
  end)

  it("refuses what has no JSON with bad_value, never raising", function()
    for _, v in ipairs { { f = function() end }, { [true] = 1 }, { [2] = 1 }, 0 / 0, math.huge,
      { a = { b = -math.huge } }, { [1.5] = 1 } } do
      local out, err = encode(v)
      assert.is_nil(out)
      assert.equals("bad_value", err.code)
    end
    local deep = {}
    local t = deep
    for _ = 1, 1100 do t.x = {} t = t.x end
    local out, err = encode(deep)
    assert.is_nil(out)
    assert.matches("deep", err.message)
  end)

  it("escapes a long string in slices: memory for its text, never six times its length", function()
    -- 80 MiB of text under a 600 MB address-space limit: reserving the worst case for the whole
    -- string at once (480 MiB, rounded up to 512) ran out of memory here.
    local vm = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
    local function q(x) return "'" .. x:gsub("'", "'\\''") .. "'" end
    local code = "local s = ('x'):rep(80 * 1024 * 1024) .. '\\n'"
      .. " local ok, r = pcall(require('freshbooks.core').json.encode, { s }) print(ok, ok and #r or r)"
    local p = io.popen(("sh -c 'ulimit -v 600000; exec \"$0\" -e \"$1\"' %s %s 2>&1"):format(q(vm), q(code)))
    local out = p:read("*a")
    p:close()
    assert.equal("true\t" .. (80 * 1024 * 1024 + 6) .. "\n", out)
    assert.equal('["a\\nb\\"\\\\\\u0001' .. ("y"):rep(9000) .. '"]', encode{ "a\nb\"\\\1" .. ("y"):rep(9000) })
  end)
end)
