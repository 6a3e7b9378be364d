-- The built-in file store: atomic JSON, mode 0600, flock lock across processes.
local freshbooks = require "freshbooks"
local core = require "freshbooks.core"
local H = require "support.fbtest"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

-- A child interpreter that tries the lock and prints what happened.
local function child_lock(path, timeout, extra)
  local code = string.format([[
    local core = require "freshbooks.core"
    local l, err = core.lock_file(%q, %s)
    io.write(l and "locked" or err.code)
    %s]], path, tostring(timeout), extra or "")
  return H.lua .. " -e " .. require("support.sandbox").shell_quote(code)
end

describe("store.file", function()
  local dir, path, store
  before_each(function()
    dir = H.tmpdir()
    path = dir .. "/tokens.json"
    store = freshbooks.store.file(path)
  end)
  after_each(function() H.rmdir(dir) end)

  local tokens = { access_token = "a1", refresh_token = "r1", token_type = "Bearer", expires_in = 43200,
    scope = "user:profile:read", created_at = 1700000000, expires_at = 1700043200, extra = "not kept" }

  it("loads nothing (and no error) before the first save", function()
    local t, err = store.load()
    assert.is_nil(t)
    assert.is_nil(err)
  end)

  it("round-trips tokens as JSON, keeping only token fields", function()
    assert.is_true(store.save(tokens, nil))
    local t = assert(store.load())
    assert.same({ access_token = "a1", refresh_token = "r1", token_type = "Bearer", expires_in = 43200,
      scope = "user:profile:read", created_at = 1700000000, expires_at = 1700043200 }, t)
    assert.is_nil(H.read(path):find("not kept", 1, true))
  end)

  it("writes mode 0600 and leaves no temp file behind", function()
    assert.is_true(store.save(tokens))
    assert.is_true(store.save(tokens))
    assert.equal("600", sh("stat -c %a '" .. path .. "'"):match("%d+"))
    assert.equal("tokens.json\n", sh("ls '" .. dir .. "'"))
  end)

  it("replaces the file atomically: a reader holding the old file keeps the old content", function()
    assert.is_true(store.save(tokens))
    local f = assert(io.open(path, "rb"))
    assert.is_true(store.save{ access_token = "a2", refresh_token = "r2" })
    assert.truthy(f:read("*a"):find('"r1"', 1, true)) -- the old inode, intact
    f:close()
    assert.equal("r2", store.load().refresh_token)
  end)

  it("reports a corrupt file with a code instead of raising", function()
    local f = assert(io.open(path, "wb"))
    f:write("<html>not json")
    f:close()
    local t, err = store.load()
    assert.is_nil(t)
    assert.equal("store_corrupt", err.code)
  end)

  it("reports a failed save with a code", function()
    local bad = freshbooks.store.file(dir .. "/missing/dir/tokens.json")
    local ok, err = bad.save(tokens)
    assert.is_nil(ok)
    assert.equal("save_failed", err.code)
    assert.truthy(tostring(err):find("No such file", 1, true))
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() freshbooks.store.file() end, "freshbooks.store.file: path must be a non-empty string")
    assert.has_error(function() freshbooks.store.file("x", { lock_timeout = -1 }) end)
    assert.has_error(function() store.save("nope") end)
    assert.has_error(function() core.lock_file(path, -1) end)
    assert.has_error(function() core.write_file_atomic(path, {}) end)
  end)

  describe("lock", function()
    it("excludes another process until released, then lets it in", function()
      local l = assert(store.lock())
      assert.equal("lock_timeout", sh(child_lock(path .. ".lock", 0)))
      assert.equal("lock_timeout", sh(child_lock(path .. ".lock", 0.2)))
      assert.is_true(l:unlock())
      assert.is_true(l:unlock()) -- idempotent
      assert.equal("locked", sh(child_lock(path .. ".lock", 0)))
    end)

    it("is released when the holder dies", function()
      -- The child takes the lock and hangs; we kill it (its pid is in the pid file) and get the lock.
      local pidfile = dir .. "/child.pid"
      os.execute(child_lock(path .. ".lock", 1, "io.stdout:flush() while true do end")
        .. " >/dev/null 2>&1 & echo $! > '" .. pidfile .. "'")
      local deadline = os.time() + 10
      local l, err
      repeat -- wait until the child holds it
        l, err = core.lock_file(path .. ".lock", 0)
        if l then l:unlock() end
      until (not l and err.code == "lock_timeout") or os.time() > deadline
      assert.equal("lock_timeout", err and err.code)
      local pid = H.read(pidfile):match("%d+")
      os.execute("kill -9 " .. pid)
      l = assert(core.lock_file(path .. ".lock", 5))
      l:unlock()
    end)

    it("is released by garbage collection and by __close", function()
      local l = assert(store.lock())
      assert.equal("freshbooks.lock(held)", tostring(l))
      l = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      local l2 = assert(core.lock_file(path .. ".lock", 0))
      local mt = getmetatable(l2)
      mt.__close(l2)
      assert.equal("freshbooks.lock(released)", tostring(l2))
      assert.is_false(l2:held())
      assert.equal("locked", sh(child_lock(path .. ".lock", 0)))
    end)

    it("times out with a coded error", function()
      local l = assert(store.lock())
      local quick = freshbooks.store.file(path, { lock_timeout = 0.1 })
      local l2, err = quick.lock()
      assert.is_nil(l2)
      assert.equal("lock_timeout", err.code)
      l:unlock()
    end)
  end)
end)
