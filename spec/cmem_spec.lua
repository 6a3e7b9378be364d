-- The C core against hostile input that needs no server: every case here is a defect that was found
-- by running the core under ASan/UBSan (`make asan`) and is checked here in a way that fails without
-- sanitizers too. spec/run also runs this file under valgrind.
local core = require "freshbooks.core"
local vm = require "freshbooks.vm"

local BUDGET = { memory = 16 * 1024 * 1024, instructions = 1e8, time = 30, patterns = 1e6, output = 1e6 }

-- Runs a guest script to its end, answering every call with `reply` -> kind, payload.
local function run_guest(src, reply)
  local g = assert(vm.new(src, "=cmem", BUDGET))
  local kind, p = g:resume()
  for _ = 1, 100 do
    if kind ~= "call" and kind ~= "print" then break end
    kind, p = g:resume(kind == "call" and (reply or { n = 2, "ok", {} }) or nil)
  end
  g:close()
  return kind, p
end

describe("guest bridge buffers", function()
  -- A call whose arguments are not plain data fails half-written; the script may catch that and go on.
  local HALF = [[
    local fb = ...
    local ok = pcall(fb.find_business, fb, { a = ("x"):rep(100), f = print })
    assert(not ok)
  ]]

  it("a call refused half-way leaves nothing behind for the script's results", function()
    local kind, p = run_guest(HALF .. "return 'done', 42")
    assert.equal("done", kind)
    assert.same({ n = 2, "done", 42 }, p)
  end)

  it("a call refused half-way leaves nothing behind in the script's error message", function()
    local kind, p = run_guest(HALF .. "error('boom', 0)")
    assert.equal("error", kind)
    assert.equal("script_error", p.code)
    assert.equal("boom", p.message)
  end)
end)

describe("guest replies", function()
  it("a reply's n must be an integer in 0..8: NaN, fractions and numbers past 2^31 raise", function()
    for _, n in ipairs{ 0 / 0, 1.5, 2 ^ 32 + 1, 2 ^ 53 + 2, -1, 9, 1 / 0 } do
      local g = assert(vm.new("local fb = ... return fb:me()", "=cmem", BUDGET))
      assert.equal("call", (g:resume()))
      local ok, err = pcall(g.resume, g, { n = n, "ok", {} })
      assert.is_false(ok, tostring(n))
      assert.matches("a reply holds 0 to 8 values", err, 1, true)
      g:close()
    end
    local g = assert(vm.new("local fb = ... return fb:me()", "=cmem", BUDGET))
    g:resume()
    local kind, p = g:resume({ n = 2.0, "ok", { id = 7 } })
    assert.equal("done", kind)
    assert.equal(7, p[1].id)
  end)
end)

describe("core.http.render's user agent", function()
  it("raises on a NUL byte, as core.http.client does, instead of sending what came before it", function()
    local ok, err = pcall(core.http.render, { url = "http://h/" }, "a\0\r\nX-Evil: 1")
    assert.is_false(ok)
    assert.matches("user_agent contains a control character", err, 1, true)
    assert.has_error(function() core.http.client{ user_agent = "a\0b" } end)
    assert.matches("User-Agent: a b\r\n", core.http.render({ url = "http://h/" }, "a b").head, 1, true)
  end)
end)

-- spec/support/oom_host.c: a Lua host whose allocator fails at the n-th allocation, for every n an
-- operation makes; the operation must raise a string error (or return nil, err) and leave no file
-- descriptor and no libcurl block behind.
describe("memory errors at every allocation", function()
  local dir, host
  local PC = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    host = dir .. "/oom_host"
    local cmd = ("cc -std=c99 -O1 -o %s spec/support/oom_host.c $(pkg-config --cflags --libs %s libcurl) -lm -ldl 2>&1")
      :format(host, PC)
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    assert(io.open(host), "cannot build the oom host: " .. out)
  end)
  teardown(function() if dir then os.execute("rm -rf " .. dir) end end)

  -- Runs the operations (Lua source of a table name -> function) under the sweep; -> report lines.
  local function sweep(ops)
    local script = dir .. "/sweep.lua"
    local f = assert(io.open(script, "w"))
    f:write("local core = require 'freshbooks.core'\nlocal vm = require 'freshbooks.vm'\n",
      "local dir = ", ("%q"):format(dir), "\nlocal OPS = ", ops, [[

local names = {}
for k in pairs(OPS) do names[#names + 1] = k end
table.sort(names)
for _, name in ipairs(names) do
  local op = OPS[name]
  op(); collectgarbage(); collectgarbage()
  local fds, blocks = nfds(), curl_live()
  local n, refused, bad = 0, true, nil
  while refused and n < 5000 do
    n = n + 1
    oom(n)
    local ok, e = pcall(op)
    refused = oom_failed()
    oom(0)
    if not ok and type(e) ~= "string" then bad = bad or ("at " .. n .. ": a " .. type(e) .. " error") end
    collectgarbage(); collectgarbage()
  end
  print(("%s points=%d fds=%d blocks=%d %s"):format(name, n, nfds() - fds, curl_live() - blocks, bad or "ok"))
end
]])
    f:close()
    local p = io.popen(host .. " " .. script .. " 2>&1; echo exit=$?")
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("exit=0\n", 1, true), out)
    return out
  end

  local function each_clean(out, n)
    local lines = 0
    for line in out:gmatch("[^\n]+") do
      if not line:find("^exit=") then
        lines = lines + 1
        assert.truthy(line:find(" fds=0 blocks=0 ok$"), line)
        assert.is_true(tonumber(line:match("points=(%d+)")) > 1, line)
      end
    end
    assert.equal(n, lines, out)
  end

  it("read_file closes its file when the buffer cannot grow", function()
    local f = assert(io.open(dir .. "/tok", "w"))
    f:write(("x"):rep(20000))
    f:close()
    local out = sweep([[{
      read = function() return core.fs.read(dir .. "/tok") end,
      write = function() return core.fs.write_atomic(dir .. "/out", ("y"):rep(10000)) end,
      lock = function() local l = core.fs.lock(dir .. "/lk", 0); if l then l:unlock() end end,
    }]])
    each_clean(out, 3)
  end)

  it("codecs, json_decode, secrets, SQLite statements and guest states raise cleanly at every allocation", function()
    local out = sweep([[{
      json = function()
        return core.json.decode('{"a":[' .. ('1.5,"x\\u00e9y",'):rep(300) .. '2],"b":{"c":null,"d":"'
          .. ('\\n'):rep(3000) .. '"}}')
      end,
      query = function()
        return core.codec.query{ search = { ids = { 1, 2, 3 }, name = ("x y"):rep(500) }, include = { "a" }, page = 2 }
      end,
      form = function()
        return core.codec.form{ a = ("z&"):rep(400), token = core.secret.new(("s"):rep(100)), b = 1.5 }
      end,
      form_decode = function() return core.codec.form_decode(("a=b%20c&"):rep(50)) end,
      base64 = function() return core.codec.unbase64(core.codec.base64(("abc"):rep(1000))) end,
      secret = function()
        local s = core.secret.new(("q"):rep(1000))
        local random = core.crypto.random_bytes(64)
        return core.crypto.hmac_sha256(s, "m"), core.crypto.equals(s, "x"), core.codec.hex(random), tostring(s)
      end,
      sqlite = function()
        local db = core.sqlite.open(dir .. "/m.db")
        if not db then return end
        db:exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        local st = db:prepare("INSERT OR REPLACE INTO t (id, v) VALUES (?, ?)")
        if st then st:bind(7, ("v"):rep(200)); st:step(); st:close() end
        local rows = db:prepare("SELECT id, v FROM t")
        local r = rows and rows:step() and rows:row()
        db:close()
        return r
      end,
      guest = function()
        local g = vm.new("local fb = ... local x = fb:me() return 1, 'two', { three = x }", "=g",
          { memory = 8e6, instructions = 1e8, time = 30, patterns = 1e6, output = 1e6 })
        local kind = g:resume()
        if kind == "call" then g:resume{ n = 2, "ok", { id = 1, name = ("n"):rep(100) } } end
        g:close()
      end,
    }]])
    each_clean(out, 8)
  end)

  it("http_request and the client free libcurl's memory and keep no socket", function()
    local out = sweep([[{
      http_request = function()
        return core.http.render{ method = "POST", url = "http://h:81/p?q=1",
          headers = { A = "b", T = core.secret.new("zz") }, body = { "a", core.secret.new("b") } }
      end,
      client = function()
        core.http.client{ timeout = 5, user_agent = "x", proxy = "http://u:p@127.0.0.1:1" }:close()
      end,
      request = function()
        local c = core.http.client{ timeout = 2, connect_timeout = 1, share = false }
        local r = { c:request{ url = "http://127.0.0.1:1/x", headers = { X = "y" }, body = "b" } }
        c:close()
        return r
      end,
      batch = function()
        local c = core.http.client{ timeout = 2, share = false }
        local r = c:batch({ { url = "http://127.0.0.1:1/a" }, { url = "http://127.0.0.1:1/b" } }, { concurrency = 2 })
        c:close()
        return r
      end,
      stream = function()
        local c = core.http.client{ timeout = 2, share = false }
        local s = c:stream{ concurrency = 2 }
        s:add{ url = "http://127.0.0.1:1/a" }
        s:add{ url = "http://127.0.0.1:1/b" }
        local r = { s:next() }
        s:close()
        c:close()
        return r
      end,
    }]])
    each_clean(out, 5)
  end)

  -- A PostgreSQL answer is libpq's memory while Lua reads it into tables: a memory error half-way must
  -- not lose it. valgrind counts what is lost (the host's allocator alone cannot see libpq's).
  it("a PostgreSQL answer read into Lua is freed when Lua runs out of memory half-way (valgrind)", function()
    local pg = require("support.postgres").start()
    finally(function() pg:stop() end)
    local script = dir .. "/pg_oom.lua"
    local f = assert(io.open(script, "w"))
    f:write(("local core = require 'freshbooks.core'\nlocal db = assert(core.pg.connect(%q))\n"):format(pg.conninfo), [[
local sql = "SELECT g, repeat('x', 20) AS v FROM generate_series(1, 300) g"
assert(db:prepare("rows", sql))
local refused = 0
for n = 25, 1000, 25 do
  for _, read in ipairs { function() return db:run("rows") end, function() return db:query(sql) end } do
    oom(n)
    local ok = pcall(read)
    if oom_failed() and not ok then refused = refused + 1 end
    oom(0)
    collectgarbage()
  end
end
-- and the connection still answers, in full
local rows, err = db:run("rows")
assert(type(rows) == "table" and #rows == 300, type(err) == "table" and err.message or "run: " .. #(rows or {}))
local res, qerr = db:query(sql)
assert(res and #res.rows == 300, type(qerr) == "table" and qerr.message or "query")
db:close()
print("refused=" .. refused)
]])
    f:close()
    local p = io.popen(("valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 %s %s 2>&1;"
      .. " echo exit=$?"):format(host, script))
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("exit=0\n", 1, true), out)
    assert.is_true(tonumber(out:match("refused=(%d+)")) >= 20, out) -- the errors came while rows were read
  end)
end)
