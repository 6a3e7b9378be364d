-- A fault at every hook: every point where user code runs during a refresh (load, lock, unlock, save,
-- log, sleep, transport, clock, progress) fails in every way (raises, returns nil and an error,
-- returns garbage, stalls by yielding, stalls by sleeping). After each, the newest refresh token the
-- sandbox issued is in the store or in the error returned to the caller, and the sandbox still
-- accepts it. The matrix of outcomes is printed.
local freshbooks = require "freshbooks"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"

local ME = "/auth/api/v1/users/me"
local POINTS = { "load", "lock", "unlock", "save", "log", "sleep", "transport", "clock", "progress" }
local KINDS = { "raise", "nil_err", "garbage", "yield", "slow" }
local GARBAGE = { load = "garbage", lock = 42, save = "ok", clock = "noon", transport = { status = "two hundred" } }

-- `normal(...)` is what the hook does when it behaves; the fault replaces or delays it.
local function faulty(kind, point, normal)
  return function(...)
    if kind == "raise" then error("the " .. point .. " hook failed", 0) end
    if kind == "nil_err" then return nil, "the " .. point .. " hook said no" end
    if kind == "garbage" then return GARBAGE[point] end
    if kind == "yield" then coroutine.yield("stalled in " .. point) end
    if kind == "slow" then core.clock.sleep(0.05) end
    return normal(...)
  end
end

describe("a fault at every hook", function()
  local sb, root
  local matrix = {}
  setup(function()
    sb = sandbox.start{ invoices = 12 }
    root = H.tmpdir()
  end)
  teardown(function()
    if sb then sb:stop() end
    H.rmdir(root)
    local lines = { "\n    hook faults (outcome of the call; the newest refresh token was kept in every cell):" }
    lines[#lines + 1] = ("    %-10s" .. string.rep("%-22s", #KINDS)):format("", (table.unpack or unpack)(KINDS))
    for _, point in ipairs(POINTS) do
      local row = { ("    %-10s"):format(point) }
      for _, kind in ipairs(KINDS) do row[#row + 1] = ("%-22s"):format(matrix[point .. "/" .. kind] or "-") end
      lines[#lines + 1] = table.concat(row)
    end
    io.stderr:write(table.concat(lines, "\n"), "\n")
  end)

  -- One scenario: a store holding a pair whose access token has expired, so the call must refresh.
  local function scenario(point, kind)
    local dir = root .. "/" .. point .. "-" .. kind
    assert(H.run("mkdir -m 700 " .. sandbox.shell_quote(dir)))
    local store = freshbooks.store.file(dir .. "/tokens.json", { lock_timeout = 5 })
    local minted = sb:token{}
    minted.expires_at = os.time() - 60
    assert(store.save(minted))
    local opts = H.opts(sb, { retry = { base_delay = 0.01, attempts = 2 } })
    local hooks = { load = store.load, save = store.save, lock = store.lock }
    if point == "load" or point == "save" or point == "lock" then
      hooks[point] = faulty(kind, point, store[point])
    elseif point == "unlock" then
      hooks.lock = function()
        local h = assert(store.lock())
        return { unlock = faulty(kind, point, function() return h:unlock() end) }
      end
    elseif point == "log" then
      opts.log = faulty(kind, point, function() end)
    elseif point == "sleep" then
      -- the token endpoint answers 429 once, so the retry waits through the sleep hook
      sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = "429", times = 1 })
      opts.retry.sleep = faulty(kind, point, function(s) core.clock.sleep(s) end)
      opts.sleep = opts.retry.sleep
    elseif point == "transport" then
      local real = require("freshbooks.transport").curl{ timeout = 10 }
      local token_hook = faulty(kind, point, real)
      opts.transport = function(req)
        if req.url:find("/auth/oauth/token", 1, true) then return token_hook(req) end
        return real(req)
      end
    elseif point == "clock" then
      opts.clock = faulty(kind, point, os.time)
    end
    for k, v in pairs(hooks) do opts[k] = v end
    local fb = freshbooks.new(opts)
    local since = H.last_seq(sb)

    local co = coroutine.create(function()
      if point == "progress" then
        local progress = faulty(kind, point, function() end)
        local ok, list, err = pcall(fb:account("aBcD1").invoices.all, fb:account("aBcD1").invoices, { per_page = 5 },
          { progress = progress })
        if not ok then return nil, { code = "raised" } end
        return list, err
      end
      return fb:request{ path = ME }
    end)
    -- A scheduler that resumes what yields (a bounded number of times).
    local ok, res, err
    for _ = 1, 50 do
      ok, res, err = coroutine.resume(co)
      assert(ok, res)
      if coroutine.status(co) == "dead" then break end
    end
    assert.equal("dead", coroutine.status(co), point .. "/" .. kind .. ": still suspended")
    sb:admin("DELETE", "/_sandbox/faults")

    -- Where is the newest refresh token FreshBooks issued?
    local newest = H.newest_issued(sb, since) or H.hash(minted.refresh_token)
    local stored = store.load()
    local in_store = stored and H.hash(stored.refresh_token) == newest
    local in_error = type(err) == "table" and err.tokens and H.hash(err.tokens.refresh_token) == newest
    assert.is_true(in_store or in_error or false, point .. "/" .. kind .. ": the newest refresh token was lost ("
      .. tostring(err and err.code) .. ")")
    local kept = in_store and stored.refresh_token or err.tokens.refresh_token
    -- FreshBooks still takes it.
    local check = sb:http{ method = "POST", path = "/auth/oauth/token", json = { grant_type = "refresh_token",
      client_id = sb.app.client_id, client_secret = sb.app.client_secret, redirect_uri = sb.app.redirect_uri,
      refresh_token = kept } }
    assert.equal(200, check.status, point .. "/" .. kind .. ": the kept refresh token was refused")
    matrix[point .. "/" .. kind] = (res and "ok" or tostring(err and err.code)) .. (in_store and "" or " (in err)")
  end

  -- A fencing store answers conflict, and the session reloads to adopt what it holds; that load
  -- answers a table it cannot read (a strict row object that raises on a missing field). The late
  -- pair FreshBooks just issued must still come back on the error.
  it("a load answering an unreadable table after a conflict: the late pair is still on the error", function()
    local dir = root .. "/conflict-strict-load"
    assert(H.run("mkdir -m 700 " .. sandbox.shell_quote(dir)))
    local store = freshbooks.store.file(dir .. "/tokens.json", { lock_timeout = 5 })
    local minted = sb:token{}
    minted.expires_at = os.time() - 60
    assert(store.save(minted))
    local refused = false
    local strict = setmetatable({}, { __index = function(_, k) error("no column " .. tostring(k)) end })
    local fb = freshbooks.new(H.opts(sb, { retry = false, lock = store.lock,
      load = function() if refused then return strict end return store.load() end,
      save = function()
        refused = true
        return nil, require("freshbooks.errors").new{ code = "conflict", message = "the store holds newer tokens" }
      end }))
    local since = H.last_seq(sb)
    local ok, res, err = pcall(fb.request, fb, { path = ME })
    assert.is_true(ok, "the call raised: " .. tostring(res))
    assert.is_nil(res)
    assert.equal("conflict", err.code)
    local newest = H.newest_issued(sb, since)
    assert.is_not_nil(newest)
    assert.equal(newest, err.tokens and H.hash(err.tokens.refresh_token))
  end)

  for _, point in ipairs(POINTS) do
    for _, kind in ipairs(KINDS) do
      it(point .. " hook: " .. kind, function() scenario(point, kind) end)
    end
  end
end)
