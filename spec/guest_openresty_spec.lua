-- Guest scripts inside OpenResty: a real nginx (lua-nginx-module on LuaJIT) runs freshbooks.guest in a
-- request handler, with the session on cosockets. The C core never calls the host's Lua across the
-- guest bridge, so a guest's API call yields the request like any other: the one worker keeps serving.
local cjson = require "cjson"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local testserver = require "support.testserver"

local APP = [[
    location = /app/guest {
      content_by_lua_block {
        local cjson = require "cjson"
        ngx.req.read_body()
        local cfg = cjson.decode(ngx.req.get_body_data())  -- POSTed: tokens never sit in a URL or a log
        local source, budget = cfg.source, cfg.budget
        cfg.source, cfg.budget = nil, nil
        local fb = require("freshbooks").new(cfg)
        local printed = {}
        ngx.update_time()
        local started = ngx.now()
        local ok, a = require("freshbooks.guest").run(fb, source, "=user", { budget = budget,
          print = function(s) printed[#printed + 1] = s end })
        ngx.update_time()
        ngx.say(cjson.encode{ ok = ok == true, result = ok and a or nil, code = not ok and a.code or nil,
          message = not ok and a.message or nil, printed = table.concat(printed, "\n"),
          cosockets = require("freshbooks.env").yielding() ~= nil, started = started,
          finished = ngx.now() })
      }
    }
    location = /app/ping {
      content_by_lua_block { ngx.update_time(); ngx.say(require("cjson").encode{ at = ngx.now() }) }
    }
]]

describe("guest scripts in OpenResty", function()
  local sb, app, client
  setup(function()
    sb = sandbox.start{ invoices = 20 }
    app = testserver.start{ http = testserver.lua_paths(), locations = APP }
    client = core.http.client{ timeout = 30 }
  end)
  teardown(function()
    if client then client:close() end
    if app then app.stop() end
    if sb then sb:stop() end
  end)

  local function body(source, budget)
    return cjson.encode{ api_url = sb.url, client_id = sb.app.client_id, client_secret = sb.app.client_secret,
      redirect_uri = sb.app.redirect_uri, tokens = sb:token{ user = "alice" }, source = source, budget = budget }
  end

  it("runs a guest script against the sandbox through cosockets", function()
    local status, _, res = client:request{ method = "POST", url = app.url .. "/app/guest", body = body([[
      local fb = ...
      local n = 0
      for m in fb:businesses() do
        for _ in fb:account(m.account_id).invoices:each{ per_page = 7 } do n = n + 1 end
      end
      print("invoices", n)
      return n
    ]]) }
    assert.are.equal(200, status, tostring(res) .. (app.log and app.log() or ""))
    local r = cjson.decode(res)
    assert.is_true(r.ok, tostring(r.message))
    assert.are.equal(50, r.result)
    assert.are.equal("invoices\t50", r.printed)
    assert.is_true(r.cosockets)
  end)

  it("never blocks the worker: a ping is answered while a guest's API call is in flight", function()
    sb:admin("POST", "/_sandbox/faults", { route = "users/me", fault = "delay", ms = 1500, times = 1 })
    local results = client:batch({
      { method = "POST", url = app.url .. "/app/guest", body = body("local fb = ... return fb:me().email") },
      { method = "GET", url = app.url .. "/delay?ms=200" },   -- served by the same single worker
      { method = "GET", url = app.url .. "/app/ping" },
    }, { concurrency = 3 })
    sb:admin("DELETE", "/_sandbox/faults")
    assert.is_nil(results[1].err)
    assert.are.equal(200, results[1].status, tostring(results[1].body))
    local g = cjson.decode(results[1].body)
    assert.is_true(g.ok, tostring(g.message))
    assert.are.equal("alice@example.com", g.result)
    local ping = cjson.decode(results[3].body)
    assert.is_true(ping.at >= g.started and ping.at < g.finished,
      ("ping at %.3f, guest run %.3f..%.3f"):format(ping.at, g.started, g.finished))
  end)

  -- The attack that broke the first release: a read-only guest inside OpenResty reached live tokens
  -- and made the cosocket transport send a DELETE. Every route it could try, in one script.
  it("a read-only guest reaches no token and makes the transport send no write, by any route", function()
    local tokens = sb:token{ user = "alice" }
    local since = sb:last_seq()
    local status, _, res = client:request{ method = "POST", url = app.url .. "/app/guest", body = cjson.encode{
      api_url = sb.url, client_id = sb.app.client_id, client_secret = sb.app.client_secret,
      redirect_uri = sb.app.redirect_uri, tokens = tokens, source = [[
      local fb = ...
      local seen, out = {}, {}
      local function walk(v, depth)
        if depth > 6 or seen[v] then return end
        local t = type(v)
        if t == "string" then out[#out + 1] = v return end
        if t ~= "table" then return end
        seen[v] = true
        for k, x in pairs(v) do walk(k, depth + 1) walk(x, depth + 1) end
        local mt = getmetatable(v)
        if type(mt) == "table" then walk(mt, depth + 1) end
      end
      local acct = fb:account(fb:memberships()[1].account_id)
      local id = acct.clients:list{ per_page = 1 }[1].id
      local tries = {
        function() return acct.clients:delete(id) end,
        function() return acct.clients:update(id, { organization = "x" }) end,
        function() return acct.clients:archive(id) end,
        function() return acct.invoices:create{ customerid = id } end,
        function() return fb:request{ method = "DELETE", path = "/accounting/account/x/users/clients/" .. id } end,
        function() return fb.transport{ method = "DELETE", url = "http://127.0.0.1/" } end,
        function() return require("freshbooks.transport") end,
        function() return ngx.req.set_method(ngx.HTTP_DELETE) end,
        function() return debug.getregistry() end,
        function() return package.loaded end,
        function() return load(string.dump(function() end)) end,
        function() return collectgarbage("count") end,
      }
      local refused = 0
      for _, f in ipairs(tries) do
        local ok, r = pcall(f)
        if not ok or r == nil then refused = refused + 1 else walk(r, 0) end
      end
      walk(fb, 0) walk(acct, 0) walk(acct.clients, 0) walk(_G, 0)
      return refused, table.concat(out, "\n")
    ]] } }
    assert.are.equal(200, status, tostring(res))
    local r = cjson.decode(res)
    assert.is_true(r.ok, tostring(r.message))
    assert.are.equal(12, r.result, "routes refused")
    for _, secret in ipairs{ tokens.access_token, tokens.refresh_token, sb.app.client_secret } do
      assert.is_nil(res:find(secret, 1, true), "a secret reached the guest")
      assert.is_nil(r.printed:find(secret, 1, true))
    end
    local writes = {}
    for _, e in ipairs(sb:log(since)) do
      if e.method ~= "GET" then writes[#writes + 1] = e.method .. " " .. e.path end
    end
    assert.same({}, writes)
  end)

  it("ends a bomb with its budget's code, and the worker serves on", function()
    local status, _, res = client:request{ method = "POST", url = app.url .. "/app/guest",
      body = body("while true do end", { instructions = 5e6 }) }
    assert.are.equal(200, status)
    local r = cjson.decode(res)
    assert.is_false(r.ok)
    assert.are.equal("budget_cpu", r.code)
    status = client:request{ method = "GET", url = app.url .. "/app/ping" }
    assert.are.equal(200, status)
  end)
end)
