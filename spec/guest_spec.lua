-- Guest scripts (freshbooks.guest) and the embedding host (examples/embed/host.c): user scripts call
-- the API through a real session against the sandbox but can reach no secret.
local freshbooks = require "freshbooks"
local guest = require "freshbooks.guest"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"

-- A hostile script: reports which escape hatches exist, then prints every string it can reach from its
-- environment (keys, values, tostring of everything, error messages) so the spec can search the lot.
local HOSTILE = [[
local out = {}
local function say(...) local t = {...}; for i = 1, select("#", ...) do out[#out + 1] = tostring(t[i]) end end
for _, name in ipairs{ "debug", "require", "package", "io", "load", "loadstring", "dofile", "loadfile",
                      "getmetatable", "rawset", "collectgarbage", "module", "setfenv", "getfenv", "jit", "ffi" } do
  say("hatch", name, _G[name] ~= nil)
end
say("hatch", "string.dump", string.dump ~= nil)
say("hatch", "os.execute", os.execute ~= nil, "os.getenv", os.getenv ~= nil)
local seen = {}
local function walk(v, depth)
  say(v)
  if type(v) ~= "table" or seen[v] or depth > 6 then return end
  seen[v] = true
  for k, x in pairs(v) do walk(k, depth + 1); walk(x, depth + 1) end
end
walk(_G, 0)
local me, err = freshbooks.me(); walk(me, 0); say(err)
local list = freshbooks.businesses(); walk(list, 0)
local acct = freshbooks.account(list[1].account_id)
walk(acct, 0)
local inv, e2 = acct.invoices.get(987654321)
say("missing invoice", inv, e2 and e2.code, e2); walk(e2, 0)
local page = acct.invoices.list{ per_page = 3 }; walk(page, 0)
local n = 0
for v in acct.invoices.each{ per_page = 2 } do n = n + 1; walk(v, 0); if n == 3 then break end end
say("each", n)
say("create allowed", acct.clients.create ~= nil)
local ok, e3 = pcall(acct.invoices.get, { "not an id" }); say("bad arg", ok, e3)
print(table.concat(out, "\n"))
]]

local LEGIT = [[
local n, total = 0, 0
for _, m in ipairs(assert(freshbooks.businesses())) do
  n = n + 1
  local acct = freshbooks.account(m.account_id)
  local page = assert(acct.invoices.list{ per_page = 5 })
  total = total + #(page.invoices or page)
end
print("businesses=" .. n .. " invoices=" .. total)
]]

describe("guest scripts", function()
  local sb, dir, secrets
  setup(function()
    sb = sandbox.start{ invoices = 20 }
    dir = H.tmpdir()
  end)
  teardown(function()
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  local function store_with_tokens()
    local tok = sb:token{ user = "alice" }
    secrets = { sb.app.client_secret, tok.access_token, tok.refresh_token }
    local path = dir .. "/tokens-" .. tostring(math.random(1e9)) .. ".json"
    freshbooks.store.file(path).save(tok)
    return path
  end

  it("lets a guest read the API in process, and shows it nothing secret", function()
    local fb = freshbooks.new(H.opts(sb, { store = freshbooks.store.file(store_with_tokens()) }))
    local printed = {}
    local ok, err = guest.run(fb, HOSTILE, "=hostile", { print = function(s) printed[#printed + 1] = s end })
    assert.is_true(ok, err)
    local out = table.concat(printed, "\n")
    assert.is_true(#out > 1000)              -- it really walked something
    assert.truthy(out:find("missing invoice", 1, true))
    assert.truthy(out:find("not_found", 1, true))
    for hatch in out:gmatch("hatch\n([%w%.]+)\ntrue") do error("guest can reach " .. hatch) end
    assert.truthy(out:find("create allowed\nfalse", 1, true))
    assert.truthy(out:find("each\n3", 1, true))
    assert.is_false(H.leaks(out, secrets), "a secret reached the guest")
  end)

  it("rejects precompiled bytecode", function()
    local fb = freshbooks.new(H.opts(sb, { store = freshbooks.store.file(store_with_tokens()) }))
    local ok, err = guest.run(fb, string.dump(function() return 1 end), "=bytecode")
    assert.is_nil(ok)
    assert.truthy(tostring(err):find("binary", 1, true) or tostring(err):find("mode", 1, true), err)
  end)

  it("allows writes only when the host says so", function()
    local fb = freshbooks.new(H.opts(sb, { store = freshbooks.store.file(store_with_tokens()) }))
    local src = [[
      local m = freshbooks.businesses()[1]
      local acct = freshbooks.account(m.account_id)
      local c, err = acct.clients.create{ organization = "Guest Co", email = "guest@example.com" }
      assert(c, tostring(err))
      return c.id
    ]]
    local ok, id = guest.run(fb, src, "=writer", { write = true })
    assert.is_true(ok, id)
    assert.are.equal("number", type(id))
    ok = guest.run(fb, src, "=reader")
    assert.is_nil(ok)
  end)

  describe("the C embedding host", function()
    local host = "build/lua5.4/embed-host"
    local function run_host(script_src)
      local script = dir .. "/script.lua"
      local f = assert(io.open(script, "wb")); f:write(script_src); f:close()
      local env = table.concat({
        "FB_API_URL=" .. sandbox.shell_quote(sb.url),
        "FB_CLIENT_ID=" .. sandbox.shell_quote(sb.app.client_id),
        "FB_CLIENT_SECRET=" .. sandbox.shell_quote(sb.app.client_secret),
        "FB_REDIRECT_URI=" .. sandbox.shell_quote(sb.app.redirect_uri),
        "FB_TOKENS=" .. sandbox.shell_quote(store_with_tokens()),
        "LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/lua5.4/?.so;;'",
      }, " ")
      local p = io.popen(env .. " " .. host .. " " .. sandbox.shell_quote(script) .. " 2>&1; echo \"rc=$?\"")
      local out = p:read("*a")
      p:close()
      return out, tonumber(out:match("rc=(%d+)%s*$"))
    end

    it("runs a user script against the sandbox", function()
      assert.truthy(io.open(host), "build the host first: make LUA=lua5.4 " .. host)
      local out, rc = run_host(LEGIT)
      assert.are.equal(0, rc, H.leaks(out, secrets) and "(output hidden: it holds a secret)" or out)
      assert.truthy(out:find("businesses=2 invoices=10", 1, true), out)
    end)

    it("gives a hostile user script no secret and no escape hatch", function()
      local out, rc = run_host(HOSTILE)
      assert.is_false(H.leaks(out, secrets), "a secret reached the script's output")
      assert.are.equal(0, rc, out)
      for hatch in out:gmatch("hatch\n([%w%.]+)\ntrue") do error("script can reach " .. hatch) end
    end)

    it("reports a failing script on stderr with exit status 1", function()
      local out, rc = run_host("error('boom from the script')")
      assert.are.equal(1, rc)
      assert.truthy(out:find("boom from the script", 1, true))
      assert.is_false(H.leaks(out, secrets))
    end)
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() guest.run({}, "return 1") end)
    assert.has_error(function() guest.api(nil) end)
    local fb = freshbooks.new(H.opts(sb, { store = freshbooks.store.file(store_with_tokens()) }))
    assert.has_error(function() guest.run(fb, 42) end)
  end)
end)
