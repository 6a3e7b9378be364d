-- The sandbox as a server: start/stop, test endpoints, TLS, keep-alive, admin switch.
local sandbox = require "support.sandbox"

describe("sandbox server", function()
  local sb
  setup(function() sb = sandbox.start{ invoices = 20 } end)
  teardown(function() sb:stop() end)

  it("prints base URLs, a CA and a ready-made app", function()
    assert.matches("^http://127%.0%.0%.1:%d+$", sb.url)
    assert.matches("^https://127%.0%.0%.1:%d+$", sb.tls_url)
    assert.is_truthy(io.open(sb.ca_file, "r"))
    assert.equals("sandbox-client-id", sb.app.client_id)
    assert.is_true(#sb.app.client_secret > 16)
    assert.equals("http://localhost:8976/callback", sb.app.redirect_uri)
  end)

  it("echoes method, args, headers and body", function()
    local r = sb:http{ method = "PUT", path = "/_sandbox/echo?a=1&b=two", body = "payload",
                       headers = { ["X-Test"] = "yes" } }
    assert.equals(200, r.status)
    assert.equals("PUT", r.json.method)
    assert.equals("two", r.json.args.b)
    assert.equals("yes", r.json.headers["x-test"])
    assert.equals("payload", r.json.body)
    assert.is_number(r.json.connection)
    assert.equals(1, r.json.connection_requests)
  end)

  it("serves HTTPS with the printed CA", function()
    local r = sb:http{ url = sb.tls_url .. "/_sandbox/echo" }
    assert.equals(200, r.status)
    assert.equals("https", r.json.scheme)
  end)

  it("keeps connections alive", function()
    local out = io.popen("curl -s " .. sandbox.shell_quote(sb.url .. "/_sandbox/echo") .. " "
      .. sandbox.shell_quote(sb.url .. "/_sandbox/echo")):read("*a")
    local first, second = out:match('"connection_requests":(%d+).*"connection_requests":(%d+)')
    assert.equals("1", first)
    assert.equals("2", second)
  end)

  it("answers any status, delays and byte counts", function()
    assert.equals(503, sb:http{ path = "/_sandbox/status?code=503" }.status)
    local r = sb:http{ path = "/_sandbox/status?code=429&retry_after=7" }
    assert.equals(429, r.status)
    assert.equals("7", r.headers["retry-after"])
    assert.equals(204, sb:http{ path = "/_sandbox/status?code=204" }.status)
    assert.equals(100000, #sb:http{ path = "/_sandbox/bytes?n=100000" }.body)
    local t0 = os.time()
    assert.equals(200, sb:http{ path = "/_sandbox/delay?ms=300" }.status)
    assert.is_true(os.time() - t0 <= 2)
    assert.is_nil(sb:http{ path = "/_sandbox/delay?ms=3000", timeout = 0.5 }.status)
  end)

  it("has no /_sandbox endpoints without --admin, and stops for good", function()
    local plain = sandbox.start{ admin = false, auto_consent = false }
    assert.equals(404, plain:http{ path = "/_sandbox/echo" }.status)
    assert.equals(401, plain:http{ path = "/auth/api/v1/users/me" }.status)
    plain:stop()
    assert.is_nil(plain:http{ path = "/_sandbox/echo" }.status)
    local f = io.open(plain.prefix .. "/nginx.pid")
    assert.is_nil(f)
  end)
end)
