-- freshbooks.store.redis inside a real nginx through resty.redis (Debian's lua-nginx-redis, vendored in
-- build/deps/lua): TLS verified against lua_ssl_trusted_certificate and the server name, an ACL user,
-- pooled connections that never cross settings, and an overall deadline against a Redis that trickles
-- its answer (a cosocket's read timeout restarts on every byte). Each location answers JSON.
local cjson = require "cjson"
local core = require "freshbooks.core"
local R = require "support.redis"
local H = require "support.fbtest"
local testserver = require "support.testserver"

describe("store.redis in nginx (resty.redis)", function()
  local srv, ts, client, trickle_pid, trickle
  local PASSWORD = "acl-pw-nginx-51c0"
  setup(function()
    srv = R.start{ tls = true, users = { "fbapp on >" .. PASSWORD .. " ~fbacl:* +@all -@dangerous" } }
    trickle = math.random(33000, 39000)
    local p = io.popen(H.lua .. " spec/support/redis_trickle.lua " .. trickle .. " 0.2 60 2>&1 & echo $!")
    trickle_pid = tonumber(p:read("*l"))
    R.register(trickle_pid, true)
    assert.truthy(p:read("*l"):find("ready", 1, true))
    p:close()
    -- One location runs a store operation with the settings in its query (JSON), and answers what it got.
    local handler = [[
      content_by_lua_block {
        local cjson = require "cjson"
        local freshbooks = require "freshbooks"
        local s = cjson.decode(ngx.unescape_uri(ngx.var.arg_s))
        local ks = freshbooks.store.redis.keyspace{ redis = s.redis, prefix = s.prefix or "fbacl:",
          timeout = s.timeout }
        local t0 = ngx.now()
        local out = {}
        for _ = 1, s.n or 1 do
          local v, err
          if s.op == "save" then v, err = ks(s.id).save({ access_token = "a", refresh_token = s.id .. "-r" }, nil)
          else v, err = ks(s.id).load() end
          out[#out + 1] = { ok = v ~= nil, code = err and err.code, message = err and tostring(err),
            refresh = type(v) == "table" and v.refresh_token or nil }
        end
        ngx.update_time()
        ngx.say(cjson.encode{ results = out, took = ngx.now() - t0 })
      }
    ]]
    ts = testserver.start{
      workers = 1,
      http = testserver.lua_paths{ "build/deps/lua" } .. "\n  lua_ssl_trusted_certificate " .. srv.ca_file .. ";",
      locations = "location = /op { " .. handler .. " }\n"
        .. "location = /op_other_ca { lua_ssl_trusted_certificate " .. srv.other_ca_file .. "; " .. handler .. " }",
    }
    client = core.client{ timeout = 20 }
  end)
  teardown(function()
    if client then client:close() end
    if ts then ts.stop() end
    if srv then srv:stop() end
    if trickle_pid then os.execute("kill " .. trickle_pid) R.register(trickle_pid, false) end
  end)

  local function op(path, s)
    local status, _, body = client:request{ method = "GET",
      url = ts.url .. path .. "?s=" .. core.urlencode(cjson.encode(s)) }
    assert.equal(200, status, body .. "\n" .. ts.log())
    return cjson.decode(body)
  end
  local function settings(extra)
    local s = { host = "127.0.0.1", port = srv.tls_port, tls = { server_name = "localhost", ca_file = srv.ca_file },
      username = "fbapp",
      password = PASSWORD }
    for k, v in pairs(extra or {}) do s[k] = v end
    return s
  end

  it("keeps tokens over verified TLS as the ACL user, reusing pooled connections", function()
    local r = op("/op", { redis = settings(), op = "save", id = "acme" })
    assert.is_true(r.results[1].ok, r.results[1].message)
    r = op("/op", { redis = settings(), op = "load", id = "acme", n = 20 })
    for _, x in ipairs(r.results) do assert.equal("acme-r", x.refresh, x.message) end
    assert.truthy(srv:cli("GET", "fbacl:{acme}:tokens"):find("acme-r", 1, true))
    -- 21 operations, one TLS connection kept in the pool: Redis counted few connections.
    local info = srv:cli("INFO", "stats")
    local conns = tonumber(info:match("total_connections_received:(%d+)"))
    assert.is_true(conns <= 5, "connections: " .. tostring(conns))
  end)

  it("refuses another CA, another name, a wrong password, keys outside the ACL, with codes", function()
    local cases = {
      { "/op_other_ca", settings{ tls = { server_name = "localhost", ca_file = srv.other_ca_file } }, "store_tls" },
      { "/op", settings{ tls = { server_name = "wrong.example" } }, "store_tls" },
      { "/op", settings{ password = "wrong-password" }, "store_auth" },
      { "/op", settings{ username = "nobody" }, "store_auth" },
    }
    for i, c in ipairs(cases) do
      local r = op(c[1], { redis = c[2], op = "load", id = "acme" }).results[1]
      assert.is_false(r.ok, "case " .. i)
      assert.equal(c[3], r.code, "case " .. i .. ": " .. tostring(r.message))
      assert.is_false(H.leaks(r.message, { PASSWORD, "wrong-password" }))
    end
    -- A pooled connection of the right settings is never handed to the wrong ones (and back).
    for _ = 1, 3 do
      assert.equal("store_auth", op("/op", { redis = settings{ password = "wrong-password" }, op = "load",
        id = "acme" }).results[1].code)
      assert.equal("acme-r", op("/op", { redis = settings(), op = "load", id = "acme" }).results[1].refresh)
    end
    local r = op("/op", { redis = settings(), prefix = "elsewhere:", op = "save", id = "acme" }).results[1]
    assert.equal("store_auth", r.code, r.message)
  end)

  it("ends every operation by its deadline when Redis trickles its answer", function()
    local r = op("/op", { redis = { host = "127.0.0.1", port = trickle }, op = "load", id = "x", timeout = 1, n = 2 })
    for _, x in ipairs(r.results) do assert.equal("store_unavailable", x.code, x.message) end
    assert.is_true(r.took < 2 * 1 + 0.8, ("two operations took %.2f s with a 1 s deadline"):format(r.took))
  end)
end)
