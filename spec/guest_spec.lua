-- Guest scripts (freshbooks.guest, src/guest.c) against a real sandbox, and through the C embedding
-- host (examples/embed/host.c) as a subprocess: the library's API shape for scripts, and every attack
-- we know of on the old in-state guest plus our own. Budgets are in guest_budget_spec.lua, the Lua
-- pattern matcher in guest_patterns_spec.lua.
local freshbooks = require "freshbooks"
local errors = require "freshbooks.errors"
local guest = require "freshbooks.guest"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"

local pack = function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or rawget(_G, "unpack")
local LUA54 = _VERSION == "Lua 5.4"
local PLAIN51 = _VERSION == "Lua 5.1" and not rawget(_G, "jit") -- answers guest calls at once (src/guest.c)

-- Prints everything a script can reach (every key, value and metatable from _G, every result and
-- error of the API), and which escape hatches exist, so the spec can search the lot for secrets.
local HOSTILE = [[
local fb = ...
local out = {}
local function say(...) for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end end
for _, name in ipairs{ "debug", "require", "package", "io", "load", "loadstring", "dofile", "loadfile",
    "collectgarbage", "module", "setfenv", "getfenv", "jit", "ffi", "newproxy", "gcinfo", "warn", "bit" } do
  say("hatch", name, rawget(_G, name) ~= nil)
end
say("hatch", "string.dump", string.dump ~= nil)
say("hatch", "('').dump", ("").dump ~= nil)  -- the string metatable is this state's own
say("hatch", "os.getenv", os.getenv ~= nil, "os.execute", os.execute ~= nil, "os.exit", os.exit ~= nil)
local seen = {}
local function walk(v, depth)
  say(v)
  if (type(v) ~= "table" and type(v) ~= "string") or seen[v] or depth > 8 then return end
  seen[v] = true
  local mt = getmetatable(v)
  if mt ~= nil then say("metatable"); walk(mt, depth + 1) end
  if type(v) == "table" then
    for k, x in pairs(v) do walk(k, depth + 1); walk(x, depth + 1) end
  end
end
walk(_G, 0)
local me, err = fb:me(); walk(me, 0); say(err)
local list = assert(fb:memberships()); walk(list, 0)
for m in fb:businesses() do walk(m, 0) end
local acct = fb:account(list[1].account_id)
walk(acct, 0)
local inv, e2 = acct.invoices:get(987654321)
say("missing invoice", inv, e2 and e2.code, e2); walk(e2, 0)
say("error metatable", type(getmetatable(e2)), pcall(setmetatable, e2, {}))
local page, meta = acct.invoices:list{ per_page = 3 }; walk(page, 0); walk(meta, 0)
say("result metatables", getmetatable(page), getmetatable(page[1]), getmetatable(meta))
local n = 0
for v in acct.invoices:each{ per_page = 2 } do n = n + 1; walk(v, 0); if n == 3 then break end end
say("each", n)
say("create allowed", pcall(acct.clients.create, acct.clients, { organization = "x" }))
local ok, e3 = pcall(acct.invoices.get, acct.invoices, { "not an id" }); say("bad arg", ok, e3)
local biz = fb:business(list[1].business_id)
local projects, pe = biz.projects:list{}; walk(projects, 0); walk(pe, 0)
print(table.concat(out, "\n"))
]]

-- Runs through the library (as a host would) and through the guest: the same text.
local SAME = [[
local fb = ...
local out = {}
for m in fb:businesses() do
  local acct = fb:account(m.account_id)
  local page, meta = acct.invoices:list{ per_page = 3, search = { vis_state = 0 } }
  out[#out + 1] = ("%s: %d of %s, page %s/%s"):format(m.name, #page, tostring(meta.total), tostring(meta.page),
    tostring(meta.pages))
  local n, sum = 0, 0
  for inv in acct.invoices:each{ per_page = 7 } do
    n = n + 1
    sum = sum + tonumber(inv.amount and inv.amount.amount or 0)
  end
  out[#out + 1] = ("each: %d invoices, %.2f"):format(n, sum)
  local one, err = acct.invoices:get(page[1].id)
  out[#out + 1] = "get: " .. tostring(one and one.id == page[1].id) .. " " .. tostring(err)
  local none, nerr = acct.invoices:get(987654321)
  out[#out + 1] = "missing: " .. tostring(none) .. " " .. tostring(nerr) .. " " .. tostring(nerr and nerr.code)
  local ok, msg = pcall(acct.invoices.get, acct.invoices, "..")
  out[#out + 1] = "bad id raises: " .. tostring(ok) .. " " .. tostring(msg):gsub("^[^\n]-:%d+: ", "")
  local pl = acct.reports.profit_and_loss:get{ start_date = "2024-01-01", end_date = "2024-12-31" }
  out[#out + 1] = "report: " .. type(pl)
  local all = assert(acct.clients:all{ per_page = 2 })
  out[#out + 1] = "clients: " .. #all
  local projects = assert(fb:business(m.business_id).projects:list{})
  out[#out + 1] = "projects: " .. #projects
  for w in m.name:gmatch("%a+") do out[#out + 1] = "word " .. w:upper() end
end
local found = fb:find_business("sandbox widgets inc.")
out[#out + 1] = "find: " .. tostring(found and found.name)
print(table.concat(out, "\n"))
return #out, out[1]
]]

local LEGIT = [[
local fb = ...
local n, total = 0, 0
for m in fb:businesses() do
  n = n + 1
  local page = assert(fb:account(m.account_id).invoices:list{ per_page = 5 })
  total = total + #page
end
print("businesses=" .. n .. " invoices=" .. total)
return n
]]

describe("guest scripts", function()
  local sb, dir, secrets
  setup(function()
    sb = sandbox.start{ invoices = 20 }
    dir = H.tmpdir()
    secrets = { sb.app.client_secret }
  end)
  teardown(function()
    if sb then sb:stop() end
    H.rmdir(dir)
  end)

  local function tokens_file()
    local tok = sb:token{ user = "alice" }
    secrets[#secrets + 1] = tok.access_token
    secrets[#secrets + 1] = tok.refresh_token
    local path = dir .. "/tokens-" .. tostring(math.random(1e9)) .. ".json"
    freshbooks.store.file(path).save(tok)
    return path
  end
  local function session(extra)
    local o = { store = freshbooks.store.file(tokens_file()) }
    for k, v in pairs(extra or {}) do o[k] = v end
    return freshbooks.new(H.opts(sb, o))
  end
  -- -> {n, ok, results...}, printed text, usage
  local function run(fb, src, opts)
    opts = opts or {}
    local printed = {}
    local o = { print = function(s) printed[#printed + 1] = s end, write = opts.write, budget = opts.budget,
                businesses = opts.businesses, usage = {} }
    local r = pack(guest.run(fb, src, opts.name or "=spec", o))
    return r, table.concat(printed, "\n"), o.usage
  end
  local function host_error_probe()
    local e = errors.new{ code = "probe", message = "checking", status = 418 }
    return tostring(e), getmetatable(e) == errors.Error, errors.is(e), rawget(errors.Error, "__newindex")
  end
  local function requests_since(seq)
    local out = {}
    for _, e in ipairs(H.log(sb, seq)) do
      if not e.path:match("^/_sandbox/") then out[#out + 1] = e end
    end
    return out
  end

  describe("API", function()
    it("runs a script written against the library unchanged, with the same results", function()
      local fb = session()
      local host_printed = {}
      local env = setmetatable({ print = function(s) host_printed[#host_printed + 1] = s end }, { __index = _G })
      local chunk = assert((loadstring or load)(SAME, "=same", "t", env))
      if setfenv then setfenv(chunk, env) end
      local hn, hfirst = chunk(fb)
      local r, printed = run(fb, SAME)
      assert.is_true(r[1], tostring(r[2]))
      assert.are.same({ hn, hfirst }, { r[2], r[3] })
      assert.are.equal(table.concat(host_printed, "\n"), printed)
      assert.truthy(printed:find("each: 20 invoices", 1, true), printed)
      assert.truthy(printed:find("missing: nil freshbooks: not_found:", 1, true), printed)
      assert.truthy(printed:find("bad id raises: false freshbooks: invoices:get: id must be", 1, true), printed)
      assert.truthy(printed:find("find: Sandbox Widgets Inc.", 1, true), printed)
    end)

    it("walks pages in parallel with each and all, every page counted against the call budget", function()
      local fb = session()
      local src = [[
        local fb = ...
        local acct = fb:account(fb:memberships()[1].account_id)
        local n = 0
        for inv, err in acct.invoices:each({ per_page = 2 }, { parallel = 4 }) do
          if not inv then error(err) end
          n = n + 1
        end
        local all = assert(acct.invoices:all({ per_page = 3 }, { parallel = 8 }))
        return n, #all
      ]]
      local seq = H.last_seq(sb)
      local r, _, usage = run(fb, src)
      assert.is_true(r[1], tostring(r[2]))
      assert.are.same({ 20, 20 }, { r[2], r[3] })
      local pages = #requests_since(seq) - 1 -- the memberships call is no page
      assert.are.equal(10 + 7, pages)
      assert.are.equal(pages + 1, usage.calls)
      -- A parallel walk past the budget sends exactly the budget (a new session: memberships not cached).
      seq = H.last_seq(sb)
      r = run(session(), src, { budget = { calls = 4 } })
      assert.is_nil(r[1])
      assert.are.equal("budget_calls", r[2].code)
      assert.are.equal(4, #requests_since(seq))
    end)

    it("reads only by default; write = true allows create, update, archive, delete and e-mail", function()
      local fb = session()
      local src = [[
        local fb = ...
        local acct = fb:account(fb:memberships()[1].account_id)
        local c, err = acct.clients:create{ organization = "Guest Co", email = "guest@example.com" }
        if not c then return nil, err end
        assert(acct.clients:update(c.id, { organization = "Guest Co 2" }))
        assert(acct.clients:archive(c.id))
        assert(acct.clients:delete(c.id))
        local inv = assert(acct.invoices:list{ per_page = 1 })[1]
        assert(acct.invoices:send_by_email(inv.id, { recipients = { "someone@example.com" } }))
        return c.id, (acct.clients:get(c.id)).vis_state
      ]]
      local r = run(fb, src)
      assert.is_nil(r[1])
      assert.are.equal("script_error", r[2].code)
      assert.truthy(r[2].message:find("this script may only read", 1, true), r[2].message)
      local outbox_before = #sb:admin("GET", "/_sandbox/outbox").outbox
      r = run(fb, src, { write = true })
      assert.is_true(r[1], tostring(r[2]))
      assert.are.equal("number", type(r[2]))
      assert.are.equal(1, r[3]) -- deleted
      assert.are.equal(outbox_before + 1, #sb:admin("GET", "/_sandbox/outbox").outbox)
    end)

    it("raises on bad arguments and returns nil, err with a code on runtime failures, as the library does", function()
      local fb = session()
      local r, printed = run(fb, [[
        local fb = ...
        local acct = fb:account("xYz92")
        local out = {}
        local function try(f, ...) local ok, e = pcall(f, ...) out[#out + 1] = tostring(ok) .. " " .. tostring(e) end
        try(acct.invoices.get, acct.invoices, "..")
        try(acct.invoices.list, acct.invoices, "per_page=1")      -- string queries: tables only
        try(acct.invoices.list, { per_page = 1 })                 -- dot instead of colon
        try(fb.account, fb, "a/b")
        try(function() return acct.nothing_here end)
        try(acct.clients.create, acct.clients, { organization = "x" })
        local foreign = fb:account("zzzz9")                       -- not a membership: 403
        local v, e = foreign.invoices:list{}
        out[#out + 1] = tostring(v) .. " " .. tostring(e and e.code) .. " " .. tostring(e and e.status)
        local rec, ie
        for a, b in foreign.invoices:each{} do rec, ie = a, b end
        out[#out + 1] = "each: " .. tostring(rec) .. " " .. tostring(ie and ie.code)
        print(table.concat(out, "\n"))
      ]])
      assert.is_true(r[1], tostring(r[2]))
      local lines = {}
      for l in printed:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.truthy(lines[1]:find("^false freshbooks: invoices:get: id must be"), lines[1])
      assert.truthy(lines[2]:find("the query must be a table", 1, true), lines[2])
      assert.truthy(lines[3]:find("call it with a colon", 1, true), lines[3])
      assert.truthy(lines[4]:find("^false freshbooks: account: id must be"), lines[4])
      assert.truthy(lines[5]:find("has no resource \"nothing_here\"", 1, true), lines[5])
      assert.truthy(lines[6]:find("may only read", 1, true), lines[6])
      assert.are.equal("nil forbidden 403", lines[7])
      assert.are.equal("each: false forbidden", lines[8])
    end)

    it("raises on bad arguments to guest.run", function()
      local fb = session()
      assert.has_error(function() guest.run({}, "return 1") end)
      assert.has_error(function() guest.run(fb, 42) end)
      assert.has_error(function() guest.run(fb, "return 1", 5) end)
      assert.has_error(function() guest.run(fb, "return 1", nil, { writ = true }) end)
      assert.has_error(function() guest.run(fb, "return 1", nil, { write = "yes" }) end)
      assert.has_error(function() guest.run(fb, "return 1", nil, { budget = { cpu = 1 } }) end)
      assert.has_error(function() guest.run(fb, "return 1", nil, { budget = { time = -1 } }) end)
      assert.has_error(function() guest.run(fb, "return 1", nil, { budget = { memory = 0 / 0 } }) end)
      assert.has_error(function() guest.run(fb, "return 1", nil, { businesses = "aBcD1" }) end)
      assert.has_error(function() guest.run(fb, "return 1", nil, { businesses = { {} } }) end)
    end)

    it("touch only the businesses the host lists; without a list, every business the token reaches", function()
      local fb = session()
      local list = assert(fb:memberships())
      assert.is_true(#list >= 2, "the sandbox user has two businesses")
      local one, other = list[1], list[2]
      local src = ([[
        local fb = ...
        local out = {}
        local function try(name, f, ...)
          local ok, e = pcall(f, ...)
          out[#out + 1] = name .. " " .. tostring(ok) .. " " .. tostring(e):gsub("^[^\n]-:%%d+: ", "")
        end
        try("listed account", function() return #assert(fb:account(%q).invoices:list{ per_page = 1 }) end)
        try("listed business", function() return #assert(fb:business(%q).projects:list{}) end)
        try("listed uuid", function() return type(fb:accounting_business(%q)) end)
        try("other account", fb.account, fb, %q)
        try("other business", fb.business, fb, %q)
        try("other uuid", fb.accounting_business, fb, %q)
        try("unreached account", fb.account, fb, "zzzz9")
        out[#out + 1] = "memberships " .. #fb:memberships()
        local n = 0
        for _ in fb:businesses() do n = n + 1 end
        out[#out + 1] = "businesses " .. n
        out[#out + 1] = "me " .. #fb:me().business_memberships
        local m, err = fb:find_business(%q)
        out[#out + 1] = "find other " .. tostring(m) .. " " .. tostring(err and err.code)
        m, err = fb:find_business(%q)
        out[#out + 1] = "find other by name " .. tostring(m) .. " " .. tostring(err and err.code)
        out[#out + 1] = "find listed " .. tostring((fb:find_business(%q) or {}).account_id)
        print(table.concat(out, "\n"))
      ]]):format(one.account_id, tostring(one.business_id), one.business_uuid, other.account_id,
        tostring(other.business_id), other.business_uuid, other.account_id, other.name, tostring(one.business_id))
      local seq = H.last_seq(sb)
      for _, key in ipairs{ one.account_id, one.business_id, one.business_uuid } do
        local r, out = run(fb, src, { businesses = { key } })
        assert.is_true(r[1], tostring(r[2]))
        local expect = {
          "^listed account true 1$", "^listed business true %d+$", "^listed uuid true table$",
          "^other account false freshbooks: account: .* is not among the businesses this script may use$",
          "^other business false freshbooks: business: .* is not among the businesses this script may use$",
          "^other uuid false freshbooks: accounting_business: .* is not among the businesses this script may use$",
          "^unreached account false freshbooks: account: zzzz9 is not among the businesses this script may use$",
          "^memberships 1$", "^businesses 1$", "^me 1$", "^find other nil not_found$",
          "^find other by name nil not_found$",
          "^find listed " .. one.account_id .. "$",
        }
        local i = 0
        for line in out:gmatch("[^\n]+") do
          i = i + 1
          assert.truthy(line:find(expect[i]), tostring(key) .. ": " .. line)
        end
        assert.are.equal(#expect, i, out)
      end
      for _, e in ipairs(requests_since(seq)) do
        assert.is_nil(e.path:find(other.account_id, 1, true), "a request reached the other business: " .. e.path)
        assert.is_nil(e.path:find("zzzz9", 1, true), e.path)
      end
      -- no list: every business (and an unreached one is for FreshBooks to refuse)
      local r, out = run(fb, src)
      assert.is_true(r[1], tostring(r[2]))
      assert.truthy(out:find("other account true", 1, true), out)
      assert.truthy(out:find("memberships " .. #list, 1, true), out)
    end)

    it("cannot grow the host's memory by naming owners: at most 256 a run", function()
      local fb = session()
      local r = run(fb, "local fb = ... for i = 1, 100000 do fb:account('a' .. i) end return 'named'",
        { budget = { time = 10 } })
      assert.is_nil(r[1])
      assert.are.equal("script_error", r[2].code)
      assert.truthy(r[2].message:find("more than 256 accounts and businesses named in one run", 1, true), r[2].message)
      r = run(fb, "local fb = ... for i = 1, 256 do fb:account('a' .. i) end for i = 1, 1000 do fb:account('a1') end "
        .. "return 'named'")
      assert.are.same({ n = 2, true, "named" }, r)
    end)
  end)

  describe("hostile scripts", function()
    it("see no secret and no escape hatch, in everything they can reach", function()
      local fb = session()
      local before = pack(host_error_probe())
      local r, out = run(fb, HOSTILE)
      assert.is_true(r[1], tostring(r[2]))
      assert.is_true(#out > 5000, "it really walked something")
      assert.truthy(out:find("missing invoice\nnil\nnot_found", 1, true), out:sub(1, 400))
      for hatch in out:gmatch("hatch\n([%w%.%(%)':]+)\ntrue") do error("guest can reach " .. hatch) end
      assert.truthy(out:find("error metatable\nstring\nfalse", 1, true))   -- protected, and its own
      assert.truthy(out:find("result metatables\nnil\nnil\nnil", 1, true))
      assert.truthy(out:find("create allowed\nfalse", 1, true))
      assert.truthy(out:find("each\n3", 1, true))
      assert.is_false(H.leaks(out, secrets), "a secret reached the guest")
      assert.are.same(before, pack(host_error_probe()))
    end)

    it("cannot touch the host's Error metatable, string metatable or libraries", function()
      local fb = session()
      local before = pack(host_error_probe())
      local string_mt, upper, dump = getmetatable(""), string.upper, string.dump
      local r = run(fb, [[
        local fb = ...
        local _, err = fb:account("aBcD1").invoices:get(987654321)
        local hits = {}
        local function try(name, f) local ok = pcall(f) hits[#hits + 1] = name .. "=" .. tostring(ok) end
        try("getmetatable(err).__tostring", function()
          getmetatable(err).__tostring = function() return "FORGED" end
        end)
        try("rawset(err mt)", function() rawset(getmetatable(err), "__newindex", print) end)
        local smt = getmetatable("")
        smt.__index = function() return function() return "FORGED BY GUEST" end end  -- our own string metatable
        smt.__add = function() return "FORGED" end
        string.upper = function() return "FORGED" end
        _G.tostring = function() return "FORGED" end
        return table.concat(hits, ",") .. " " .. ("x"):upper()
      ]])
      assert.is_true(r[1], tostring(r[2]))
      assert.are.equal("getmetatable(err).__tostring=false,rawset(err mt)=false FORGED BY GUEST", r[2])
      assert.are.same(before, pack(host_error_probe()))
      assert.are.equal(string_mt, getmetatable(""))
      assert.are.equal(upper, string.upper)
      assert.are.equal(dump, string.dump)
      assert.are.equal("X", ("x"):upper())
      assert.are.equal("freshbooks: probe: checking (HTTP 418)", tostring(errors.new{ code = "probe",
        message = "checking", status = 418 }))
    end)

    it("never see a save_failed error's tokens, in that run or the next", function()
      local captured, fail_save = nil, true
      local tok = sb:token{ user = "alice" }
      secrets[#secrets + 1], secrets[#secrets + 2] = tok.access_token, tok.refresh_token
      local fb = freshbooks.new(H.opts(sb, {
        tokens = { access_token = tok.access_token, refresh_token = tok.refresh_token, expires_at = 0 },
        save = function(new)
          captured = new
          if fail_save then return nil, "disk full" end
          return true
        end,
      }))
      -- The first API call refreshes (the token is due): the new pair cannot be saved.
      local r, out = run(fb, [[
        local fb = ...
        local me, err = fb:me()
        local t = {}
        for k, v in pairs(err or {}) do t[#t + 1] = tostring(k) .. "=" .. tostring(v) end
        print(tostring(me), tostring(err), table.concat(t, " "))
        return err and err.code, err and err.tokens
      ]])
      assert.is_true(r[1], tostring(r[2]))
      assert.are.equal("save_failed", r[2])
      assert.is_nil(r[3])
      assert.truthy(captured and captured.refresh_token)
      secrets[#secrets + 1], secrets[#secrets + 2] = captured.access_token, captured.refresh_token
      local _, err = fb:me() -- the host's own call gets the tokens attached, as documented
      assert.are.equal("save_failed", err.code)
      assert.are.equal(captured.refresh_token, err.tokens.refresh_token)
      fail_save = false -- the pending pair is saved on the next call: the tokens the second run uses
      local r2, out2 = run(fb, HOSTILE)
      assert.is_true(r2[1], tostring(r2[2]))
      assert.is_false(H.leaks(out .. "\n" .. out2, secrets), "a token reached a guest")
    end)

    it("get plain copies: changing a result changes nothing in the host", function()
      local fb = session()
      local me = assert(fb:me())
      local email = me.email
      local r = run(fb, [[
        local fb = ...
        local me = fb:me()
        me.email = "forged@example.com"
        for k in pairs(me) do me[k] = nil end
        return fb:me().email
      ]])
      assert.is_true(r[1], tostring(r[2]))
      assert.are.equal(email, r[2])
      assert.are.equal(email, fb:me().email)
    end)

    it("cannot send cyclic, deep, huge, shared or non-plain arguments", function()
      local fb = session()
      local seq = H.last_seq(sb)
      local r, out = run(fb, [[
        local fb = ...
        local acct = fb:account("aBcD1")
        local cases = {}
        local cyc = {}; cyc.self = cyc
        cases.cycle = { search = cyc }
        local deep = {}; local d = deep; for _ = 1, 100 do d.x = {}; d = d.x end
        cases.deep = { search = deep }
        local dag = {}; for _ = 1, 25 do dag = { dag, dag } end
        cases.dag = { search = dag }
        cases.huge = { search = { name = ("x"):rep(2 * 1024 * 1024) } }
        cases.func = { search = { f = print } }
        cases.thread = { search = { co = coroutine.create(print) } }
        cases.table_key = { [{}] = 1 }
        local lines = {}
        for _, name in ipairs{ "cycle", "deep", "dag", "huge", "func", "thread", "table_key" } do
          local t0 = os.clock()
          local ok, e = pcall(acct.invoices.list, acct.invoices, cases[name])
          lines[#lines + 1] = ("%s %s %s %.3f"):format(name, tostring(ok), tostring(e), os.clock() - t0)
        end
        print(table.concat(lines, "\n"))
      ]], { budget = { memory = 64 * 1024 * 1024 } })
      assert.is_true(r[1], tostring(r[2]))
      print(out)
      for line in out:gmatch("[^\n]+") do
        local name, ok, secs = line:match("^(%S+) (%S+) .* (%S+)$")
        assert.are.equal("false", ok, line)
        assert.truthy(line:find("freshbooks: arguments to the API", 1, true), line)
        assert.is_true(tonumber(secs) < 1, name .. " took " .. secs .. " s")
      end
      assert.truthy(out:find("cycle false .*nested too deep"), out)
      assert.truthy(out:find("dag false .*too large"), out)
      assert.are.equal(0, #requests_since(seq), "nothing reached the server")
    end)

    it("cannot return cyclic, deep, huge or non-plain results, nor metatables", function()
      local fb = session()
      local cases = {
        cycle = { "local t = {} t.t = t return t", "bad_result" },
        deep = { "local t = {} local d = t for _ = 1, 100 do d.x = {} d = d.x end return t", "bad_result" },
        func = { "return print", "bad_result" },
        thread = { "return coroutine.create(print)", "bad_result" },
        huge = { "return ('x'):rep(2 * 1024 * 1024)", "budget_output" },
        gc = { "return setmetatable({}, { __gc = function() while true do end end })", "script_error" },
      }
      for name, c in pairs(cases) do
        local r = run(fb, c[1])
        assert.is_nil(r[1], name)
        assert.are.equal(c[2], r[2].code, name .. ": " .. tostring(r[2]))
      end
      local r = run(fb, [[
        local mt = { __index = function() while true do end end, __tostring = function() while true do end end,
                     __close = function() while true do end end, __len = function() return 1e9 end }
        local later = {}
        local t = setmetatable({ a = 1, nested = setmetatable({ b = 2 }, mt) }, later)
        later.__gc = function() while true do end end  -- set after: never marks t for finalization
        return t, setmetatable({}, mt)
      ]])
      assert.is_true(r[1], tostring(r[2]))
      assert.are.same({ a = 1, nested = { b = 2 } }, r[2])
      assert.is_nil(getmetatable(r[2]))
      assert.is_nil(getmetatable(r[2].nested))
      assert.are.same({}, r[3])
      collectgarbage()
      collectgarbage() -- nothing of the guest is left to finalize: its state is closed
    end)

    it("raise error objects that reach the host as plain, coded errors, running none of their metamethods", function()
      local fb = session()
      local r = run(fb, [[
        error(setmetatable({ code = "x" }, { __tostring = function() while true do end end,
          __index = function() while true do end end, __concat = function() while true do end end }))
      ]])
      assert.is_nil(r[1])
      assert.are.equal("script_error", r[2].code)
      assert.are.equal("(error object is a table value)", r[2].message)
      assert.is_true(errors.is(r[2]))
      r = run(fb, "error({ code = 'my_code', message = 'my message' })")
      assert.are.equal("script_error", r[2].code)
      assert.are.equal("my_code: my message", r[2].message)
      r = run(fb, "error(coroutine.create(print))")
      assert.are.equal("(error object is a thread value)", r[2].message)
      r = run(fb, "error(('m'):rep(100000))")
      assert.is_true(#r[2].message < 3000)
      r = run(fb, "error()")
      assert.are.equal("(error object is a nil value)", r[2].message)
      r = run(fb, "local _, e = fb:account('aBcD1').invoices:get(987654321) error(e)")
      assert.are.equal("not_found: Invoice not found.", r[2].message)
    end)

    it("cannot run code after the run: finalizers are refused, the state is closed", function()
      local fb = session()
      local r = run(fb, "setmetatable({}, { __gc = function() fb:me(true) end })")
      assert.are.equal("script_error", r[2].code)
      assert.truthy(r[2].message:find("__gc metamethods are not allowed", 1, true))
      local seq = H.last_seq(sb)
      r = run(fb, [[
        local mt = {}
        for i = 1, 100 do setmetatable({}, mt) end
        mt.__gc = function() fb:me(true) end       -- too late to mark anything (Lua 5.4), ignored (LuaJIT)
        local co = coroutine.create(function() coroutine.yield() end)
        coroutine.resume(co)                         -- a suspended coroutine is simply dropped
        return "done"
      ]])
      assert.is_true(r[1], tostring(r[2]))
      for _ = 1, 3 do collectgarbage() end
      assert.are.equal(0, #requests_since(seq))
      if LUA54 then -- a __close runs inside the run, under its budgets
        r = run(fb, [[
          local closed
          do local x <close> = setmetatable({}, { __close = function() closed = true end }) end
          return closed
        ]])
        assert.are.same({ n = 2, true, true }, r)
        r = run(fb, "local y <close> = setmetatable({}, { __close = function() while true do end end }) return 1",
          { budget = { instructions = 2e6 } })
        assert.are.equal("budget_cpu", r[2].code, tostring(r[2]))
      end
    end)

    it("can call the API from coroutines, at any depth, and cannot yield to the host", function()
      local fb = session()
      local r, out = run(fb, [[
        local fb = ...
        local acct = fb:account("aBcD1")
        local gen = coroutine.wrap(function()
          for inv in acct.invoices:each{ per_page = 4 } do coroutine.yield(inv.id) end
        end)
        local ids = {}
        for id in gen do ids[#ids + 1] = id end
        local depth3 = coroutine.wrap(function()
          return coroutine.wrap(function()
            return coroutine.wrap(function() return fb:me().email end)()
          end)()
        end)()
        local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return (fb:me()).id, b end)
        local _, two = coroutine.resume(co, 1)
        local ok, id, b = coroutine.resume(co, "b")
        -- API calls inside a gsub callback and a sort comparator work (the matcher and sort are Lua);
        -- inside string.format's C (a __tostring) they cannot
        local names = ("a,b"):gsub("%a", function(x) return x .. #assert(fb:memberships()) end)
        local sorted, serr = pcall(table.sort, { 3, 1, 2 }, function(x, y) fb:me() return x < y end)
        local tostr, terr = pcall(string.format, "%s", setmetatable({}, { __tostring = function()
          return fb:me().email end }))
        print(#ids, depth3, two, ok, type(id), b, names, sorted, serr, tostr, terr)
        print("yield", pcall(coroutine.yield, "to the host?"))
      ]])
      assert.is_true(r[1], tostring(r[2]))
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      if PLAIN51 then -- no yield to the host (calls work inside C callbacks too); 5.1's %s takes no table
        assert.truthy(lines[1]:find("^20\talice@example.com\t2\ttrue\tnumber\tb\ta2,b2\ttrue\tnil\tfalse\t"),
          lines[1])
      else
        assert.truthy(lines[1]:find("^20\talice@example.com\t2\ttrue\tnumber\tb\ta2,b2\ttrue\tnil\tfalse\t"),
          lines[1])
        assert.truthy(lines[1]:find("yield across", 1, true), lines[1])
      end
      assert.are.equal("yield\tfalse\tattempt to yield from outside a coroutine", lines[2])
      -- at the top of the script, coroutines answer as in a main chunk (the host's are the reference)
      local src = [[
        local co, main = coroutine.running()
        return type(co), main, coroutine.isyieldable and coroutine.isyieldable(), (pcall(coroutine.yield))
      ]]
      local host = pack(assert((loadstring or load)(src))())
      r = run(fb, src)
      assert.are.same(host, pack(unpack(r, 2, r.n)))
      -- a plain yield at the top of the script is refused, whatever it passes
      r = run(fb, "coroutine.yield(1, 2, 3)")
      assert.are.equal("script_error", r[2].code)
      assert.truthy(r[2].message:find("outside a coroutine", 1, true))
    end)

    it("re-entrant runs are independent; a raising host print is the host's own error", function()
      local fb = session()
      local inner = {}
      local ok, a = guest.run(fb, "print('outer 1') print('outer 2') return 'outer'", "=outer", {
        print = function(s)
          inner[#inner + 1] = s
          local iok, v = guest.run(fb, "return (fb:me()).email .. ' from inside " .. s .. "'")
          inner[#inner + 1] = tostring(iok) .. " " .. tostring(v)
        end,
      })
      assert.is_true(ok)
      assert.are.equal("outer", a)
      assert.are.same({ "outer 1", "true alice@example.com from inside outer 1", "outer 2",
        "true alice@example.com from inside outer 2" }, inner)
      assert.has_error(function()
        guest.run(fb, "print('x') while true do end", "=p", { print = function() error("host print broke", 0) end })
      end, "host print broke")
      local r = run(fb, "return 1") -- and the next run is fine
      assert.is_true(r[1])
    end)

    it("cannot leave the resource path with ids or queries, nor force token refreshes", function()
      local fb = session()
      local seq = H.last_seq(sb)
      local r, out = run(fb, [[
        local fb = ...
        local acct = fb:account("aBcD1")
        local ids = { "../../../../../_sandbox/status", "..", ".", "...", "a/b", "a\\b", "%2e%2e", "%2E", "1?code=401",
          "1#x", "1 2", "1\r\nX-Evil: 1", "\0", "", 1.5, 1e300, -1e300, 0 / 0, math.huge, {}, true,
          "..%2F..%2F_sandbox", "\t" }
        local out = {}
        for _, id in ipairs(ids) do
          local ok, a = pcall(acct.invoices.get, acct.invoices, id, "code=401")
          out[#out + 1] = "id " .. tostring(ok) .. " " .. tostring(a)
          ok, a = pcall(acct.invoices.get, acct.invoices, id)
          out[#out + 1] = "id " .. tostring(ok) .. " " .. tostring(a)
        end
        for _, id in ipairs{ "../x", "a/b", "..", "1?x", "_sandbox/..", "%2F" } do
          out[#out + 1] = "owner " .. tostring((pcall(fb.account, fb, id))) .. " "
            .. tostring((pcall(fb.business, fb, id)))
        end
        local queries = { "code=401", { ["x&page=../../"] = 1 }, { ["\r\nX: y"] = 1 },
          { search = { ["a]&b=c"] = "../" } }, { include = { "../../../_sandbox" } }, { per_page = "1&page=2" },
          { sort = "x&y\r\n" }, setmetatable({}, { __index = function() return "evil" end }), { [1] = "../" } }
        for _, q in ipairs(queries) do
          local ok, a, b = pcall(acct.invoices.list, acct.invoices, q)
          out[#out + 1] = "query " .. tostring(ok) .. " " .. tostring(a) .. " " .. tostring(b)
        end
        print(table.concat(out, "\n"))
      ]])
      assert.is_true(r[1], tostring(r[2]))
      for line in out:gmatch("id true [^\n]*") do error("an id was accepted: " .. line) end
      assert.is_nil(out:find("owner true", 1, true), out)
      local sent = requests_since(seq)
      assert.is_true(#sent >= 1)
      for _, e in ipairs(sent) do
        assert.truthy(e.path:match("^/accounting/account/aBcD1/invoices/invoices$"), e.path)
        assert.are.equal("GET", e.method)
      end
      assert.are.equal(0, H.count(H.log(sb, seq), H.is_token_post), "no refresh was forced")
    end)

    it("get data as FreshBooks sent it, UUIDs included: only the session's own secrets are masked", function()
      local fb = session()
      local r = run(fb, "local fb = ... local m = fb:memberships()[1] return m.business_uuid, fb:me().identity_uuid")
      assert.is_true(r[1], tostring(r[2]))
      local me = assert(fb:me())
      assert.same({ assert(fb:memberships())[1].business_uuid, me.identity_uuid }, { r[2], r[3] })
      assert.matches("^%x+%-", r[2]) -- a UUID is 36 letters, digits and dashes: the look of a token to redact.scrub
    end)

    it("get the session's own redaction applied to every string they receive", function()
      local fb = session()
      local marker = "WORDTHATISSECRET"
      assert(fb:account("aBcD1").clients:create{ organization = marker .. " Inc", email = "m@example.com" })
      fb.redact = function(_, s) return (s:gsub(marker, "[redacted]")) end -- the hook another issue adds
      local r, out = run(fb, [[
        local fb = ...
        local acct = fb:account("aBcD1")
        for c in acct.clients:each{} do print(c.organization) end
        print(select(2, pcall(acct.clients.get, acct.clients, "WORDTHATISSECRET/1")))
        local _, err = acct.clients:get("WORDTHATISSECRET")
        print(err)
      ]])
      assert.is_true(r[1], tostring(r[2]))
      assert.truthy(out:find("[redacted] Inc", 1, true), out)
      assert.is_false(H.leaks(out, { marker }))
    end)
  end)

  describe("secrets the API quotes", function()
    -- A FreshBooks that quotes the request's path in a 404, cut at 1 KiB: a script that chooses the
    -- path chooses where the cut falls, and guesses the token's first characters there. Under two
    -- tokens that share no character at any place, everything the script sees must be the same.
    it("tell a script nothing of the token, whatever it guesses", function()
      local function quoting(token)
        return freshbooks.new{ client_id = "app", client_secret = "an-unrelated-client-secret",
          redirect_uri = "https://example.com/cb", api_url = "https://fb.test", retry = false,
          tokens = { access_token = token, refresh_token = "r" .. token }, transport = function(req)
            return { status = 404, headers = { ["content-type"] = "application/json" },
              body = '{"message":"no route ' .. req.url:match("^https?://[^/]+(/[^?]*)") .. ' for Bearer '
                .. token .. '"}' }
          end }
      end
      local hex = "0123456789abcdef"
      local a = "5e8a" .. ("0f1e2d3c4b5a6978"):rep(3) .. "8796a5b4c3d2"
      local b = a:gsub("%x", function(c) local i = hex:find(c, 1, true) return hex:sub(i % 16 + 1, i % 16 + 1) end)
      -- The script guesses a's first characters, one more at a time, under a (right) and under b (wrong).
      local function probe(token)
        local src = ([[
          local fb = ...
          local acct = fb:account("aBcD1")
          local head, hex, out = %q, "0123456789abcdef", {}
          local prefix = #"no route /accounting/account/aBcD1/invoices/invoices/"
          for known = 0, 14 do
            for c in hex:gmatch(".") do
              local guess = head:sub(1, known) .. c
              local _, err = acct.invoices:get(("."):rep(1024 - prefix - #guess) .. guess)
              out[#out + 1] = tostring(err)
            end
          end
          print(table.concat(out, "\n"))
        ]]):format(a:sub(1, 14))
        local r, printed = run(quoting(token), src)
        assert.is_true(r[1], tostring(r[2]))
        return printed
      end
      local right, wrong = probe(a), probe(b)
      assert.truthy(right:find("not_found", 1, true), right:sub(1, 200))
      assert.are.equal(wrong, right)
      assert.is_false(H.leaks(right, { a, a:sub(1, 16), a:sub(-16) }))
    end)
  end)

  describe("the C embedding host", function()
    local host = "build/lua5.4/embed-host"
    local function run_host(script_src, env)
      local script = dir .. "/script.lua"
      local f = assert(io.open(script, "wb"))
      f:write(script_src)
      f:close()
      local vars = {
        "FB_API_URL=" .. sandbox.shell_quote(sb.url),
        "FB_CLIENT_ID=" .. sandbox.shell_quote(sb.app.client_id),
        "FB_CLIENT_SECRET=" .. sandbox.shell_quote(sb.app.client_secret),
        "FB_REDIRECT_URI=" .. sandbox.shell_quote(sb.app.redirect_uri),
        "FB_TOKENS=" .. sandbox.shell_quote(tokens_file()),
        "LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/lua5.4/?.so;;'",
      }
      for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. sandbox.shell_quote(v) end
      -- `timeout`: a regression that runs guest code forever must fail this spec, not hang it.
      local p = io.popen(table.concat(vars, " ") .. " timeout 60 " .. host .. " " .. sandbox.shell_quote(script)
        .. " 2>&1; echo \"rc=$?\"")
      local out = p:read("*a")
      p:close()
      return out, tonumber(out:match("rc=(%d+)%s*$"))
    end

    it("runs a user script against the sandbox", function()
      assert.truthy(io.open(host), "build the host first: make LUA=lua5.4 " .. host)
      local out, rc = run_host(LEGIT)
      assert.are.equal(0, rc, H.leaks(out, secrets) and "(output hidden: it holds a secret)" or out)
      assert.truthy(out:find("businesses=2 invoices=10", 1, true), out)
      assert.truthy(out:find("result: 2", 1, true), out)
    end)

    it("gives a hostile user script no secret and no escape hatch", function()
      local out, rc = run_host(HOSTILE)
      assert.is_false(H.leaks(out, secrets), "a secret reached the script's output")
      assert.are.equal(0, rc, out)
      assert.truthy(#out > 5000)
      for hatch in out:gmatch("hatch\n([%w%.%(%)':]+)\ntrue") do error("script can reach " .. hatch) end
    end)

    it("reports a failing script on stderr with its code and exit status 1", function()
      local out, rc = run_host("error('boom from the script')")
      assert.are.equal(1, rc)
      assert.truthy(out:find("embed-host: script: freshbooks: script_error: ", 1, true), out)
      assert.truthy(out:find("boom from the script", 1, true))
      out, rc = run_host("error(setmetatable({}, { __tostring = function() return 'x' end }))")
      assert.are.equal(1, rc)
      assert.truthy(out:find("(error object is a table value)", 1, true), out)
      assert.is_nil(out:find("(null)", 1, true))
      assert.is_false(H.leaks(out, secrets))
    end)

    it("ends bombs with their budget's code, finalizers included, and exits", function()
      local t0 = os.time()
      local out, rc = run_host("while true do end", { FB_GUEST_INSTRUCTIONS = "5000000" })
      assert.are.equal(1, rc)
      assert.truthy(out:find("budget_cpu", 1, true), out)
      out, rc = run_host("local t = {} while true do t[#t + 1] = ('x'):rep(1000) .. #t end",
        { FB_GUEST_MEMORY = tostring(8 * 1024 * 1024) })
      assert.are.equal(1, rc)
      assert.truthy(out:find("budget_memory", 1, true), out)
      out, rc = run_host([[
        local mt = {}
        for _ = 1, 10 do setmetatable({}, mt) end
        mt.__gc = function() while true do end end
        local t = setmetatable({}, { __index = function() while true do end end })
        return "returned"
      ]])
      assert.are.equal(0, rc, out)
      assert.truthy(out:find("result: returned", 1, true), out)
      out, rc = run_host("setmetatable({}, { __gc = function() while true do end end })")
      assert.are.equal(1, rc)
      assert.truthy(out:find("__gc metamethods are not allowed", 1, true), out)
      assert.is_true(os.time() - t0 < 50)
      assert.is_false(H.leaks(out, secrets))
    end)

    it("lets a script touch only the businesses FB_GUEST_BUSINESSES lists", function()
      local src = "local fb = ... print(#fb:memberships()) return #assert(fb:account('aBcD1').invoices:list{}), "
        .. "select(2, pcall(fb.account, fb, 'xYz92'))"
      local out, rc = run_host(src, { FB_GUEST_BUSINESSES = "aBcD1" })
      assert.are.equal(0, rc, out)
      assert.truthy(out:find("^1\n"), out)
      assert.truthy(out:find("is not among the businesses this script may use", 1, true), out)
      out, rc = run_host(src)
      assert.are.equal(0, rc, out)
      assert.truthy(out:find("^2\n"), out)
    end)

    it("stops work spread over nested coroutines, at the run's budget, and exits", function()
      local t0 = os.time()
      local out, rc = run_host([[
        local function nest(d)
          if d == 0 then local x = 0 for i = 1, 900 do x = x + 1 end return end
          while true do coroutine.resume(coroutine.create(function() nest(d - 1) end)) end
        end
        nest(6)
      ]], { FB_GUEST_INSTRUCTIONS = "1000000", FB_GUEST_TIME = "1" })
      assert.are.equal(1, rc, out)
      assert.truthy(out:find("budget_cpu", 1, true), out)
      assert.is_true(os.time() - t0 < 10)
    end)
  end)
end)
