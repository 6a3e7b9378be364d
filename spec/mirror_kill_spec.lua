-- A sync SIGKILLed at seeded random moments (mid-page, mid-transaction, between lists, during the sweep),
-- in a process of its own, then resumed: the file is never damaged nor half-written (every row is a
-- record FreshBooks has, and a walk's checkpoint never points past the pages it wrote), and once a run
-- completes the mirror equals the sandbox, also with changes made between the kills.
-- FB_SEED=n replays; FB_SLOW=1 kills many more times.
local cjson = require "cjson"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local M = require "support.mirror"
local mirror = require "freshbooks.mirror"

describe("freshbooks.mirror killed at any point", function()
  local sb, fb, dir, tokens_file

  setup(function()
    sb = sandbox.start{ invoices = 600, seed = M.seed % 991 + 1 }
    dir = H.tmpdir()
    local t = sb:token{}
    fb = H.session(sb, { tokens = t })
    tokens_file = dir .. "/tokens.json"
    local f = assert(io.open(tokens_file, "wb"))
    f:write(cjson.encode{ client_id = sb.app.client_id, client_secret = sb.app.client_secret,
      redirect_uri = sb.app.redirect_uri, access_token = t.access_token, refresh_token = t.refresh_token })
    f:close()
    M.slow_network(sb, true)
  end)
  teardown(function()
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  local n = 0
  -- Starts the worker; -> pid, output file
  local function start(path)
    n = n + 1
    local out = ("%s/worker%d.out"):format(dir, n)
    local pidfile = out .. ".pid"
    os.execute(("spec/env %s %s spec/support/mirror_worker.lua %s %s %s > %s 2>&1 & echo $! > %s"):format(H.lua, H.lua,
      sandbox.shell_quote(sb.url), sandbox.shell_quote(tokens_file), sandbox.shell_quote(path),
      sandbox.shell_quote(out), sandbox.shell_quote(pidfile)))
    local pid
    for _ = 1, 200 do
      pid = tonumber((H.read(pidfile) or ""):match("%d+"))
      if pid then break end
      core.clock.sleep(0.01)
    end
    return assert(pid), out
  end
  local function alive(pid)
    local stat = H.read("/proc/" .. pid .. "/stat")
    return stat ~= nil and not stat:match("^%d+ %b() [ZX]")
  end
  local function wait(pid, seconds)
    local deadline = core.clock.now() + seconds
    while alive(pid) and core.clock.now() < deadline do core.clock.sleep(0.02) end
    return not alive(pid)
  end

  -- What a killed run may leave: rows FreshBooks has, exactly; a walk checkpoint only past pages written.
  local function consistent(path, label)
    M.slow_network(sb, false)
    local m = assert(mirror.open{ path = path, readonly = true })
    assert.same({ "ok" }, assert(m:query("PRAGMA integrity_check")).rows[1])
    local truth = M.truth(fb, { M.businesses[1] })
    local diffs = {}
    for _, d in ipairs(M.diff(m, truth)) do
      if not d:match(": missing$") then diffs[#diffs + 1] = d end
    end
    assert(#diffs == 0, label .. ": rows that are not FreshBooks' records (seed " .. M.seed .. "):\n  "
      .. table.concat(diffs, "\n  ", 1, math.min(#diffs, 10)))
    local st = assert(m:query("SELECT resource, list, page FROM sync_state WHERE business_id = 1000001 AND phase"
      .. " = 'walk' AND list = 1 AND page > 1")).rows
    for _, row in ipairs(st) do
      local r = require("freshbooks.mirror.resources").by_name[row[1]]
      local want = truth[1000001][r.name]
      local live = {}
      for id, w in pairs(want) do if w.vis ~= 1 then live[#live + 1] = id end end
      table.sort(live)
      local through = math.min(#live, (row[3] - 1) * 100)
      for i = 1, through do
        local got = assert(m:query(("SELECT count(*) FROM %s WHERE business_id = 1000001 AND id = ?"):format(r.table),
          { live[i] })).rows[1][1]
        assert(got == 1, ("%s: %s checkpoint at page %d, record %s of page %d missing (seed %d)"):format(label, r.name,
          row[3], tostring(live[i]), math.floor((i - 1) / 100) + 1, M.seed))
      end
    end
    m:close()
    M.slow_network(sb, true)
  end

  it("resumes after SIGKILL without gaps or duplicates, never half-written (seed printed on failure)", function()
    print(("\n# mirror_kill_spec: FB_SEED=%d%s"):format(M.seed, M.slow and " FB_SLOW=1" or ""))
    local rnd = M.prng(M.seed)
    local path = dir .. "/killed.db"
    -- how many steps an unkilled first sync prints, to spread the kills over them
    local pid, out = start(dir .. "/timing.db")
    assert(wait(pid, 120), "the timing run did not end")
    assert.truthy(H.read(out):find("synced", 1, true), H.read(out))
    local _, steps = H.read(out):gsub("\n", "")
    local kills = M.slow and 40 or 4
    local killed, completed = 0, 0
    local acct = fb:account("aBcD1")
    for k = 1, kills do
      pid, out = start(path)
      -- at a step somewhere in the run, and then a moment later (inside a request or a transaction)
      local at = rnd(1, math.max(1, math.floor(steps * 0.6)))
      for _ = 1, 3000 do
        local _, lines = (H.read(out) or ""):gsub("\n", "")
        if lines >= at or not alive(pid) then break end
        core.clock.sleep(0.002)
      end
      core.clock.sleep(rnd(0, 30) / 1000)
      if alive(pid) then
        os.execute("kill -KILL " .. pid)
        killed = killed + 1
      else
        completed = completed + 1
      end
      assert(wait(pid, 30), "the worker outlived SIGKILL")
      if k <= kills - 2 then
        consistent(path, ("after kill %d"):format(k))
      else
        -- then FreshBooks changes between runs: the resumed sync must pick those changes up as well
        acct.invoices:update(rnd(1, 600), { notes = "kill round " .. k })
        acct.clients:update(10000 + rnd(1, 50), { organization = "Killed " .. k })
        acct.invoices:delete(rnd(1, 600))
      end
    end
    pid, out = start(path)
    assert(wait(pid, 120), "the last run did not end")
    assert.truthy(H.read(out):find("synced", 1, true), H.read(out))
    local m = assert(mirror.open{ path = path })
    M.assert_equal(m, fb, { M.businesses[1] }, ("after %d kills"):format(killed))
    m:close()
    print(("# %d kills, %d runs ended before their kill"):format(killed, completed))
    assert.is_true(killed >= kills / 2, killed .. " of " .. kills .. " runs were killed")
  end)
end)
