-- The sandbox as a server: start/stop, TLS, keep-alive, admin switch. (The C core's test routes --
-- echo, delays, byte counts, any status -- are the test server's: spec/support/testserver.lua.)
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

  it("serves HTTPS with the printed CA", function()
    local r = sb:http{ url = sb.tls_url .. "/auth/api/v1/users/me" }
    assert.equals(401, r.status) -- the TLS handshake verified against the CA; no token, so 401
  end)

  it("keeps connections alive", function()
    local url = sandbox.shell_quote(sb.url .. "/auth/api/v1/users/me")
    local out = io.popen("curl -s -w '%{num_connects} ' -o /dev/null " .. url .. " -o /dev/null " .. url):read("*a")
    assert.equals("1 0 ", out) -- the second request reused the first one's connection
  end)

  it("never shares its port with another server: a second sandbox asked for it does not start", function()
    -- (two sandboxes on one port would each answer part of a spec's requests: tokens of one unknown to
    -- the other, logs empty; random ports under parallel spec jobs made that a rare flake)
    local port = tonumber(sb.url:match(":(%d+)$"))
    local ok, err = pcall(sandbox.start, { port = port, invoices = 1 })
    if ok then err:stop() end
    assert.is_false(ok)
    assert.truthy(tostring(err):find("in use", 1, true), tostring(err))
    assert.equals(401, sb:http{ path = "/auth/api/v1/users/me" }.status) -- the first one still answers
  end)

  it("has no /_sandbox endpoints without --admin, and stops for good", function()
    local plain = sandbox.start{ admin = false, auto_consent = false }
    assert.equals(404, plain:http{ path = "/_sandbox/counters" }.status)
    assert.equals(401, plain:http{ path = "/auth/api/v1/users/me" }.status)
    plain:stop()
    assert.is_nil(plain:http{ path = "/auth/api/v1/users/me" }.status)
    local f = io.open(plain.prefix .. "/nginx.pid")
    assert.is_nil(f)
  end)
end)
