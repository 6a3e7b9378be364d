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
    local l, err = core.fs.lock(%q, %s)
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
    assert.has_error(function() freshbooks.store.file() end,
      "freshbooks.store.file: path must be a file name (a non-empty string without NUL)")
    assert.has_error(function() freshbooks.store.file("a\0b") end)
    assert.has_error(function() core.fs.lock("a\0b") end)
    assert.has_error(function() core.fs.read("a\0b") end)
    assert.has_error(function() core.fs.write_atomic("a\0b", "x") end)
    assert.has_error(function() freshbooks.store.file("x", { lock_timeout = -1 }) end)
    assert.has_error(function() store.save("nope") end)
    assert.has_error(function() core.fs.lock(path, -1) end)
    assert.has_error(function() core.fs.write_atomic(path, {}) end)
  end)

  -- What an outsider can put at the token path. Loads run in a child process with a time limit, so
  -- a regression (a blocking FIFO, an endless /dev/zero) fails the spec instead of hanging the run.
  describe("hostile files", function()
    local function child_load(p)
      local code = ("local t, err = require('freshbooks').store.file(%q).load()\n"
        .. "io.write(t and 'loaded' or (err and err.code) or 'nothing')"):format(p)
      return sh("timeout 10 " .. H.lua .. " -e " .. require("support.sandbox").shell_quote(code) .. "; echo ' rc='$?")
    end

    it("a FIFO at the token path is refused at once, not read until a writer comes", function()
      assert(H.run("mkfifo '" .. path .. "'"))
      assert.equal("store_insecure rc=0", child_load(path):match("%S+ rc=%d+"))
    end)

    it("a symlink (to /dev/zero, to another file, dangling) is never followed", function()
      local other = dir .. "/elsewhere.json"
      assert(freshbooks.store.file(other).save(tokens))
      for _, target in ipairs{ "/dev/zero", other, dir .. "/missing" } do
        os.remove(path)
        assert(H.run("ln -s '" .. target .. "' '" .. path .. "'"))
        assert.equal("store_insecure rc=0", child_load(path):match("%S+ rc=%d+"), target)
      end
      -- a save replaces the link itself with our own file; the link's target is untouched
      local before = H.read(other)
      assert.is_true(store.save{ access_token = "a9", refresh_token = "r9" })
      assert.equal("", sh("find '" .. path .. "' -type l"))
      assert.equal("r9", store.load().refresh_token)
      assert.equal(before, H.read(other))
    end)

    it("a device, a directory or an oversized file is refused", function()
      assert.equal("store_insecure", select(2, freshbooks.store.file(dir).load()).code)
      assert.equal("store_insecure", select(2, freshbooks.store.file("/dev/null").load()).code)
      local f = assert(io.open(path, "wb"))
      f:write(string.rep("x", 70000))
      f:close()
      assert.equal("store_corrupt", select(2, store.load()).code)
    end)

    it("the in-place rewrite (a full disk's last resort) writes only our own file, one link, in its blocks", function()
      local other = dir .. "/elsewhere.json"
      assert(freshbooks.store.file(other).save(tokens))
      local before = H.read(other)
      local function refused(p) local ok, err = core.fs.overwrite(p, "{}"); return not ok and err.code end
      assert(H.run("ln -s '" .. other .. "' '" .. path .. "'"))
      assert.equal("io", refused(path)) -- O_NOFOLLOW: ELOOP
      os.remove(path)
      assert(H.run("ln '" .. other .. "' '" .. path .. "'"))
      assert.equal("store_insecure", refused(path))
      os.remove(path)
      assert(H.run("mkfifo '" .. path .. "'"))
      assert.equal("io", refused(path)) -- no reader: ENXIO at once, never a wait
      os.remove(path)
      assert.equal("io", refused(path)) -- nothing to rewrite
      assert.equal("io", refused(dir))
      assert.equal(before, H.read(other))
      assert.is_true(store.save(tokens))
      local saved = H.read(path)
      local ok, err = core.fs.overwrite(path, ("x"):rep(70000)) -- more than the blocks it holds
      assert.is_nil(ok)
      assert.equal("io", err.code)
      assert.equal(saved, H.read(path))
      assert.is_true(core.fs.overwrite(path, '{"refresh_token":"r5"}'))
      assert.equal("r5", store.load().refresh_token)
      assert.has_error(function() core.fs.overwrite("a\0b", "x") end)
    end)

    it("a token file others can read is made 0600 when it is loaded", function()
      assert.is_true(store.save(tokens))
      assert(H.run("chmod 0644 '" .. path .. "'"))
      assert.equal("r1", store.load().refresh_token)
      assert.equal("600", sh("stat -c %a '" .. path .. "'"):match("%d+"))
    end)

    it("a token file of another user is refused", function()
      if sh("id -u"):match("%d+") ~= "0" then return pending("needs root to give a file away") end
      assert.is_true(store.save(tokens))
      assert(H.run("chown nobody '" .. path .. "'"))
      local t, err = store.load()
      assert.is_nil(t)
      assert.equal("store_insecure", err.code)
    end)

    it("the lock cannot be defeated by deleting files: it is the directory's", function()
      local l = assert(store.lock())
      os.execute("rm -f '" .. dir .. "'/*.lock '" .. dir .. "'/.*.lock")
      assert.equal("lock_timeout", sh(child_lock(dir .. "/.", 0)))
      l:unlock()
      -- and a dangling symlink named like the old lock file is never followed or created
      assert(H.run("ln -s '" .. dir .. "/target' '" .. path .. ".lock'"))
      assert(store.lock()):unlock()
      assert.is_nil(io.open(dir .. "/target"))
      assert.equal("store_insecure", select(2, core.fs.lock(path .. ".lock", 0)).code)
    end)
  end)

  -- A full and a read-only file system (tmpfs, mounted by the spec as root): the save fails with a
  -- code, the session keeps the tokens for the caller (save_failed), and the old file stays whole.
  describe("file systems that refuse writes", function()
    local mnt, mounted
    setup(function()
      mnt = H.tmpdir()
      mounted = sh("id -u"):match("%d+") == "0"
        and H.run("mount -t tmpfs -o size=64k,mode=700 tmpfs '" .. mnt .. "' 2>/dev/null")
    end)
    teardown(function()
      if mounted then assert(H.run("umount '" .. mnt .. "'"), "the spec's tmpfs could not be unmounted") end
      H.rmdir(mnt)
    end)

    it("full: the pair is kept in place; too big for that, or read-only: save_failed, nothing torn", function()
      if not mounted then return pending("cannot mount a tmpfs here (needs root)") end
      local p = mnt .. "/tokens.json"
      local s = freshbooks.store.file(p)
      assert.is_true(s.save(tokens))
      -- fill the file system: no temp file can be written, but the token file's own page takes a pair
      os.execute("dd if=/dev/zero of='" .. mnt .. "/fill' bs=1k count=80 2>/dev/null")
      assert.is_false(H.run("dd if=/dev/zero of='" .. mnt .. "/probe' bs=4k count=2 2>/dev/null"), "not full")
      os.remove(mnt .. "/probe")
      assert.is_true(s.save{ access_token = "a2", refresh_token = "r2" })
      assert.same({ "a2", "r2" }, { s.load().access_token, s.load().refresh_token })
      local before = H.read(p)
      local ok, err = s.save{ access_token = "a3", refresh_token = ("r"):rep(20000) }
      assert.is_nil(ok)
      assert.equal("save_failed", err.code)
      assert.equal(before, H.read(p))
      assert.equal("", sh("ls '" .. mnt .. "' | grep tmp || true"))
      os.remove(mnt .. "/fill")
      assert(H.run("mount -o remount,ro '" .. mnt .. "'"))
      ok, err = s.save{ access_token = "a4", refresh_token = "r4" }
      assert(H.run("mount -o remount,rw '" .. mnt .. "'"))
      assert.is_nil(ok)
      assert.equal("save_failed", err.code)
      assert.equal("r2", s.load().refresh_token)
    end)
  end)

  describe("lock", function()
    it("excludes another process until released, then lets it in", function()
      local l = assert(store.lock())
      assert.equal("lock_timeout", sh(child_lock(dir .. "/.", 0)))
      assert.equal("lock_timeout", sh(child_lock(dir .. "/.", 0.2)))
      assert.is_true(l:unlock())
      assert.is_true(l:unlock()) -- idempotent
      assert.equal("locked", sh(child_lock(dir .. "/.", 0)))
    end)

    it("is released when the holder dies", function()
      -- The child takes the lock and hangs; we kill it (its pid is in the pid file) and get the lock.
      local pidfile = dir .. "/child.pid"
      os.execute(child_lock(dir .. "/.", 1, "io.stdout:flush() while true do end")
        .. " >/dev/null 2>&1 & echo $! > '" .. pidfile .. "'")
      local deadline = os.time() + 10
      local l, err
      repeat -- wait until the child holds it
        l, err = core.fs.lock(dir .. "/.", 0)
        if l then l:unlock() end
      until (not l and err.code == "lock_timeout") or os.time() > deadline
      assert.equal("lock_timeout", err and err.code)
      local pid = H.read(pidfile):match("%d+")
      os.execute("kill -9 " .. pid)
      l = assert(core.fs.lock(dir .. "/.", 5))
      l:unlock()
    end)

    it("is released by garbage collection and by __close", function()
      local l = assert(store.lock())
      assert.equal("freshbooks.lock(held)", tostring(l))
      l = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      local l2 = assert(core.fs.lock(dir .. "/.", 0))
      local mt = getmetatable(l2)
      mt.__close(l2)
      assert.equal("freshbooks.lock(released)", tostring(l2))
      assert.is_false(l2:held())
      assert.equal("locked", sh(child_lock(dir .. "/.", 0)))
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
