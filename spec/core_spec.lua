-- The C core's HTTP client against a real local nginx (spec/support/testserver.lua).
local core = require "freshbooks.core"
local cjson = require "cjson"
local system = require "system"
local testserver = require "support.testserver"
local H = require "support.fbtest"

local function now() return system.monotime() end

local ts
setup(function() ts = testserver.start() end)
teardown(function() if ts then ts.stop() end end)

local function echo(client, req)
  req.url = req.url or ts.url .. "/echo"
  local status, headers, body = client:request(req)
  assert(status, headers and headers.message)
  return cjson.decode(body), status, headers
end

describe("freshbooks.core", function()
  it("has a version and names its libcurl", function()
    assert.matches("^%d+%.%d+%.%d+$", core.version)
    assert.equal(core.version, require("freshbooks")._VERSION) -- the Lua module reads the core's
    assert.matches("^libcurl/%d", core.http.curl_version)
  end)
end)

describe("core.http.client options", function()
  it("accepts every documented option", function()
    local c = core.http.client{
      connect_timeout = 2, timeout = 5, cainfo = ts.ca_file, capath = "/etc/ssl/certs",
      insecure_no_verify_tls = false, user_agent = "spec/1", max_body = 1024, share = false,
    }
    assert.equal(200, (c:request{ url = ts.url .. "/echo" }))
    c:close()
  end)

  it("raises on bad option types and unknown options", function()
    assert.error_matches(function() core.http.client{ timeout = "10" } end, "timeout must be a number")
    assert.error_matches(function() core.http.client{ connect_timeout = 0 } end, "connect_timeout must be > 0")
    assert.error_matches(function() core.http.client{ insecure_no_verify_tls = "yes" } end, "must be a boolean")
    assert.error_matches(function() core.http.client{ max_body = -1 } end, "max_body")
    assert.error_matches(function() core.http.client{ max_body = 1.5 } end, "max_body")
    assert.error_matches(function() core.http.client{ cainfo = 42 } end, "cainfo must be a string")
    assert.error_matches(function() core.http.client{ share = 1 } end, "share must be a boolean")
    assert.error_matches(function() core.http.client{ insecure = true } end, "unknown option 'insecure'")
    assert.error_matches(function() core.http.client("x") end, "table expected")
  end)
end)

describe("client:request", function()
  local client
  before_each(function() client = core.http.client{ cainfo = ts.ca_file } end)
  after_each(function() client:close() end)

  it("GETs with the default user agent and no body", function()
    local e, status, headers = echo(client, {})
    assert.equal(200, status)
    assert.equal("GET", e.method)
    assert.equal("lua-freshbooks/" .. core.version, e.headers["user-agent"])
    assert.equal("", e.body)
    assert.equal("application/json", headers["content-type"])
  end)

  it("sends method, headers (table or array form) and a string body", function()
    local e = echo(client, {
      method = "POST", body = "a=1&b=2",
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["X-Num"] = 42, ["X-Empty"] = "" },
    })
    assert.equal("POST", e.method)
    assert.equal("a=1&b=2", e.body)
    assert.equal("42", e.headers["x-num"])
    assert.equal("", e.headers["x-empty"])
    e = echo(client, { method = "PUT", body = "{}", headers = { "Content-Type: application/json", "X-A:  b c" } })
    assert.equal("PUT", e.method)
    assert.equal("application/json", e.headers["content-type"])
    assert.equal("b c", e.headers["x-a"])
  end)

  it("joins body parts and secret parts in C", function()
    local e = echo(client, { method = "POST", body = { "token=", core.secret.new("s3cr3t"), "&x=1" } })
    assert.equal("token=s3cr3t&x=1", e.body)
  end)

  it("sends secrets as header values", function()
    local e = echo(client, { headers = { Authorization = core.secret.new("Bearer abc.def") } })
    assert.equal("Bearer abc.def", e.headers.authorization)
  end)

  it("supports DELETE, PATCH and HEAD", function()
    assert.equal("DELETE", echo(client, { method = "DELETE" }).method)
    assert.equal("PATCH", echo(client, { method = "PATCH", body = "{}" }).method)
    local status, headers, body = client:request{ method = "HEAD", url = ts.url .. "/echo" }
    assert.equal(200, status)
    assert.equal("application/json", headers["content-type"])
    assert.equal("", body)
  end)

  it("never sends Expect: 100-continue, even for a large POST", function()
    local big = string.rep("z", 2 * 1024 * 1024)
    local e = echo(client, { method = "POST", body = big })
    assert.is_nil(e.headers.expect)
    assert.equal(#big, #e.body)
  end)

  it("lower-cases response header names and keeps repeated headers as arrays", function()
    local status, headers = client:request{ url = ts.url .. "/headers" }
    assert.equal(200, status)
    assert.same({ "a=1; Path=/", "b=2; Path=/" }, headers["set-cookie"])
    assert.same({ "one", "two", "three" }, headers["x-dup"])
    assert.equal("solo", headers["x-single"])
    assert.is_nil(headers["X-Single"])
  end)

  it("returns HTTP error statuses as responses, not errors", function()
    local status, _, body = client:request{ url = ts.url .. "/status?code=404" }
    assert.equal(404, status)
    assert.equal("status 404\n", body)
    assert.equal(503, (client:request{ url = ts.url .. "/status?code=503" }))
  end)

  it("does not follow redirects", function()
    local status, headers = client:request{ url = ts.url .. "/status?code=302" }
    assert.equal(302, status)
    assert.equal("/echo", headers.location)
  end)

  it("reuses one kept-alive connection for consecutive idempotent requests", function()
    local first = echo(client, {})
    for i = 2, 6 do
      local e = echo(client, { method = i % 2 == 0 and "PUT" or "GET", body = i % 2 == 0 and "x" or nil })
      assert.equal(first.connection, e.connection)
      assert.equal(first.connection_requests + i - 1, e.connection_requests)
    end
  end)

  it("sends what must not be sent twice (POST, idempotent = false) on a fresh connection", function()
    -- A cached connection may have been closed by the server already; a request failing on it would
    -- be ambiguous, and a refresh token or an invoice must never be.
    local first = echo(client, {})
    for _, req in ipairs{ { method = "POST", body = "x" }, { method = "PUT", body = "x", idempotent = false },
        { method = "PATCH", body = "x" } } do
      local e = echo(client, req)
      assert.are_not.equal(first.connection, e.connection, req.method)
      assert.equal(1, e.connection_requests, req.method)
    end
    assert.has_error(function() client:request{ url = ts.url .. "/echo", idempotent = "no" } end)
  end)

  it("shares connections between clients through the process-wide share", function()
    local first = echo(client, {})
    local other = core.http.client()
    assert.equal(first.connection, echo(other, {}).connection)
    other:close()
    local private = core.http.client{ share = false }
    assert.are_not.equal(first.connection, echo(private, {}).connection)
    private:close()
  end)

  it("times out quickly with code timeout", function()
    local t0 = now()
    local status, err = client:request{ url = ts.url .. "/delay?ms=3000", timeout = 0.3 }
    local elapsed = now() - t0
    assert.is_nil(status)
    assert.equal("timeout", err.code)
    assert.equal(28, err.curl_code)
    assert.matches("[Tt]imed out", err.message)
    assert.is_true(elapsed < 2, "took " .. elapsed .. " s")
    local slow = core.http.client{ timeout = 0.3 }
    t0 = now()
    assert.equal("timeout", select(2, slow:request{ url = ts.url .. "/delay?ms=3000" }).code)
    assert.is_true(now() - t0 < 2)
    slow:close()
  end)

  it("fails TLS verification against the self-signed server without its CA", function()
    local plain = core.http.client{ share = false }
    local status, err = plain:request{ url = ts.tls_url .. "/echo" }
    assert.is_nil(status)
    assert.equal("tls", err.code)
    assert.is_string(err.message)
    plain:close()
  end)

  it("verifies the server with cainfo", function()
    local e = echo(client, { url = ts.tls_url .. "/echo" })
    assert.equal("https", e.scheme)
    local by_name = echo(client, { url = "https://localhost:" .. ts.tls_port .. "/echo" })
    assert.equal("https", by_name.scheme)
  end)

  it("skips verification only with insecure_no_verify_tls = true", function()
    local insecure = core.http.client{ insecure_no_verify_tls = true, share = false }
    assert.equal("https", echo(insecure, { url = ts.tls_url .. "/echo" }).scheme)
    insecure:close()
    local strict = core.http.client{ insecure_no_verify_tls = false, share = false }
    assert.equal("tls", select(2, strict:request{ url = ts.tls_url .. "/echo" }).code)
    strict:close()
  end)

  it("fails cleanly with too_large past max_body (streamed or announced)", function()
    local small = core.http.client{ max_body = 1000 }
    local status, err = small:request{ url = ts.url .. "/bytes?n=5000" }
    assert.is_nil(status)
    assert.equal("too_large", err.code)
    assert.matches("max_body", err.message)
    assert.equal(200, err.status)
    status, err = small:request{ url = ts.url .. "/bytes?n=5000&length=1" }
    assert.is_nil(status)
    assert.equal("too_large", err.code)
    assert.matches("max_body", err.message)
    local ok, _, body = small:request{ url = ts.url .. "/bytes?n=1000" }
    assert.equal(200, ok)
    assert.equal(1000, #body)
    local head_status, head_headers = small:request{ method = "HEAD", url = ts.url .. "/bytes?n=5000&length=1" }
    assert.equal(200, head_status)
    assert.equal("5000", head_headers["content-length"])
    small:close()
  end)

  it("enforces the 64 MiB default", function()
    local status, err = client:request{ url = ts.url .. "/bytes?n=" .. (64 * 1024 * 1024 + 1) }
    assert.is_nil(status)
    assert.equal("too_large", err.code)
  end)

  it("reports a refused connection with code connect", function()
    local status, err = client:request{ url = "http://127.0.0.1:1/" }
    assert.is_nil(status)
    assert.equal("connect", err.code)
    assert.equal(7, err.curl_code)
  end)

  it("reports an unresolvable host with code resolve", function()
    local status, err = client:request{ url = "http://no-such-host.invalid/" }
    assert.is_nil(status)
    assert.equal("resolve", err.code)
    assert.matches("no%-such%-host%.invalid", err.message)
  end)

  it("raises on bad arguments", function()
    assert.error_matches(function() client:request() end, "request table expected")
    assert.error_matches(function() client:request{} end, "url must be a string")
    assert.error_matches(function() client:request{ url = "ftp://127.0.0.1/" } end, "http:// or https://")
    assert.error_matches(function() client:request{ url = "http://127.0.0.1/a b" } end, "space or control")
    assert.error_matches(function() client:request{ url = "http://[::1/" } end, "malformed url")
    assert.error_matches(function() client:request{ url = ts.url, method = "get" } end, "invalid method")
    assert.error_matches(function() client:request{ url = ts.url, method = 1 } end, "method must be a string")
    assert.error_matches(function() client:request{ url = ts.url, headers = "x" } end, "headers must be a table")
    assert.error_matches(function() client:request{ url = ts.url, headers = { ["X-A"] = "1\r\nX-B: 2" } } end,
      "control character")
    assert.error_matches(function() client:request{ url = ts.url, headers = { ["Bad Name"] = "1" } } end,
      "invalid header name")
    assert.error_matches(function() client:request{ url = ts.url, headers = { "no colon" } } end, "Name: value")
    assert.error_matches(function() client:request{ url = ts.url, headers = { ["X-A"] = true } } end,
      "string or secret")
    assert.error_matches(function() client:request{ url = ts.url, body = 42 } end, "body must be a string")
    assert.error_matches(function() client:request{ url = ts.url, body = { "a", 1 } } end, "body%[2%]")
    assert.error_matches(function() client:request{ url = ts.url, timeout = -1 } end, "timeout must be > 0")
    -- The client still works after all that.
    assert.equal(200, (client:request{ url = ts.url .. "/echo" }))
  end)

  it("runs no Lua code while it reads a request: metamethods that close the client change nothing", function()
    local victim = core.http.client()
    local closer = { __index = function() victim:close() return ts.url .. "/echo" end }
    -- The fields behind __index are not seen (raw access), so the request is incomplete, not a crash.
    assert.error_matches(function() victim:request(setmetatable({}, closer)) end, "url must be a string")
    local status = victim:request(setmetatable({ url = ts.url .. "/echo" }, closer))
    assert.equal(200, status)
    local out = victim:batch(setmetatable({ { url = ts.url .. "/echo" } }, closer),
      setmetatable({}, closer))
    assert.equal(200, out[1].status)
    assert.equal(1, #victim:batch({ setmetatable({ url = ts.url .. "/echo", headers = setmetatable({},
      closer) }, closer) }))
    assert.matches("freshbooks.client%(0x", tostring(victim)) -- still open: nothing ran
    victim:close()
  end)

  it("never shows a secret in a bad-argument error", function()
    local req = { url = ts.url, headers = { ["X-Token"] = core.secret.new("TOPSECRET\n") } }
    local ok, msg = pcall(client.request, client, req)
    assert.is_false(ok)
    assert.is_nil(tostring(msg):find("TOPSECRET", 1, true))
  end)
end)

describe("client:batch", function()
  local client
  before_each(function() client = core.http.client() end)
  after_each(function() client:close() end)

  local function delays(n, ms)
    local reqs = {}
    for i = 1, n do reqs[i] = { url = ts.url .. "/delay?ms=" .. ms .. "&i=" .. i } end
    return reqs
  end

  -- Concurrency as the server saw it: each /delay answer carries the server's clock around its wait.
  local function overlap(out)
    local spans = {}
    for i, r in ipairs(out) do
      assert.equal(200, r.status, "request " .. i)
      spans[i] = { tonumber(r.headers["x-started"]), tonumber(r.headers["x-finished"]) }
    end
    return H.max_overlap(spans)
  end

  it("runs requests concurrently up to the limit", function()
    assert.equal(8, overlap(client:batch(delays(8, 300), { concurrency = 8 })))
    local three = client:batch(delays(9, 200), { concurrency = 3 })
    assert.equal(9, #three)
    assert.equal(3, overlap(three))
  end)

  it("runs one at a time with concurrency 1", function()
    local out = client:batch(delays(6, 100), { concurrency = 1 })
    assert.equal(6, #out)
    assert.equal(1, overlap(out))
  end)

  it("returns results in input order, errors in place", function()
    local reqs = {}
    for i = 1, 12 do
      -- Later requests finish first: reverse delays.
      reqs[i] = { url = ts.url .. "/echo?i=" .. i .. "&d=" .. (12 - i), method = "POST", body = "body" .. i }
    end
    reqs[5] = { url = "http://127.0.0.1:1/" }
    reqs[9] = { url = ts.url .. "/delay?ms=2000", timeout = 0.2 }
    reqs[12] = { url = ts.url .. "/delay?ms=" .. 10 }
    table.insert(reqs, 1, { url = ts.url .. "/delay?ms=400" })
    local out = client:batch(reqs, { concurrency = 4 })
    assert.equal(#reqs, #out)
    assert.equal("slept 400\n", out[1].body)
    for i = 2, #reqs do
      local r = out[i]
      if i == 6 then
        assert.equal("connect", r.err.code)
      elseif i == 10 then
        assert.equal("timeout", r.err.code)
      elseif i == 13 then
        assert.equal("slept 10\n", r.body)
      else
        local e = cjson.decode(r.body)
        assert.equal("body" .. (i - 1), e.body)
        assert.matches("i=" .. (i - 1) .. "&", e.uri)
        assert.equal("application/json", r.headers["content-type"])
      end
    end
  end)

  it("reuses connections through the share", function()
    local first = echo(client, {})
    local out = client:batch({ { url = ts.url .. "/echo" }, { url = ts.url .. "/echo" } }, { concurrency = 1 })
    for _, r in ipairs(out) do assert.equal(first.connection, cjson.decode(r.body).connection) end
    assert.equal(first.connection, echo(client, {}).connection)
  end)

  it("applies max_body and TLS settings to every transfer", function()
    local c = core.http.client{ max_body = 100, cainfo = ts.ca_file }
    local out = c:batch{ { url = ts.url .. "/bytes?n=1000" }, { url = ts.tls_url .. "/bytes?n=100" } }
    assert.equal("too_large", out[1].err.code)
    assert.equal(100, #out[2].body)
    c:close()
  end)

  it("accepts an empty batch and raises on bad arguments", function()
    assert.same({}, client:batch({}))
    assert.error_matches(function() client:batch() end, "table expected")
    assert.error_matches(function() client:batch({ "x" }) end, "request 1: request table expected")
    assert.error_matches(function() client:batch({ { url = ts.url }, { url = 1 } }) end, "request 2: url")
    assert.error_matches(function() client:batch({}, { concurrency = 0 }) end, "concurrency")
    assert.error_matches(function() client:batch({}, { concurrency = 2.5 }) end, "concurrency")
  end)
end)

describe("client:stream", function()
  local client
  before_each(function() client = core.http.client() end)
  after_each(function() client:close() end)

  it("keeps `concurrency` transfers in flight and hands results out as they complete", function()
    local st = client:stream{ concurrency = 3 }
    local ids = {}
    -- the first is slow: the others finish (and more start) while it runs
    ids[#ids + 1] = st:add{ url = ts.url .. "/delay?ms=800&i=slow" }
    for i = 1, 6 do ids[#ids + 1] = st:add{ url = ts.url .. "/delay?ms=100&i=" .. i } end
    local order, spans = {}, {}
    for _ = 1, 7 do
      local id, status, headers = st:next()
      assert.equal(200, status)
      order[#order + 1] = id
      spans[#spans + 1] = { tonumber(headers["x-started"]), tonumber(headers["x-finished"]) }
    end
    assert.is_nil(st:next()) -- nothing left
    assert.equal(ids[1], order[#order]) -- the slow one came last, the others did not wait for it
    assert.equal(3, H.max_overlap(spans))
    -- the handles (and their connections) are reused: 3 connections for the 7 requests
    local seen = {}
    for _ = 1, 6 do st:add{ url = ts.url .. "/echo" } end
    for _ = 1, 6 do
      local _, status, _, body = st:next()
      assert.equal(200, status)
      seen[require("cjson").decode(body).connection] = true
    end
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.is_true(n <= 3, n .. " connections")
    st:close()
    st:close() -- idempotent
    assert.error_matches(function() st:add{ url = ts.url } end, "closed")
  end)

  it("gives each failure its own coded error, checks requests when added, and survives its client", function()
    local st = client:stream{ concurrency = 2 }
    assert.error_matches(function() st:add{ url = "ftp://x/" } end, "http:// or https://")
    assert.error_matches(function() st:add{ url = ts.url, headers = { Host = "x" } } end, "set by the transport")
    local ok_id = st:add{ url = ts.url .. "/echo" }
    local bad_id = st:add{ url = "http://127.0.0.1:1/" }
    local got = {}
    for _ = 1, 2 do
      local id, status, err = st:next()
      got[id] = status or err.code
    end
    assert.same({ [ok_id] = 200, [bad_id] = "connect" }, got)
    -- a stream left open is closed by the collector; a closed client refuses new requests
    local other = core.http.client()
    local orphan = other:stream{}
    orphan:add{ url = ts.url .. "/delay?ms=2000" }
    other:close()
    assert.error_matches(function() orphan:add{ url = ts.url } end, "client is closed")
    orphan = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
  end)
end)

describe("curl_global_init opt-out", function()
  it("loads and works with FRESHBOOKS_NO_CURL_GLOBAL_INIT set", function()
    local lua = H.lua
    local script = "local c = require('freshbooks.core').http.client(); local s = c:request{url = '" .. ts.url ..
      "/echo'}; io.write('status=', tostring(s)); c:close()"
    local p = assert(io.popen("FRESHBOOKS_NO_CURL_GLOBAL_INIT=1 " .. lua .. " -e \"" .. script .. "\" 2>&1"))
    local out = p:read("*a")
    p:close()
    assert.equal("status=200", out)
  end)
end)

describe("TLS key logging", function()
  -- libcurl writes every TLS session's secrets to $SSLKEYLOGFILE, read once at curl_global_init: with
  -- them and a capture of the traffic, anyone reads the tokens and the client secret.
  it("writes no TLS secrets to $SSLKEYLOGFILE (single requests and batches)", function()
    local log = os.tmpname()
    os.remove(log)
    local url = "https://localhost:" .. ts.tls_port .. "/echo"
    local script = "local c = require('freshbooks.core').http.client{cainfo = '" .. ts.ca_file .. "'}; " ..
      "local s = c:request{url = '" .. url .. "'}; " ..
      "local b = c:batch({{url = '" .. url .. "'}, {url = '" .. url .. "', method = 'POST', body = 'x'}}); " ..
      "io.write('status=', tostring(s), ',', tostring(b[1].status), ',', tostring(b[2].status)); c:close()"
    local p = assert(io.popen("SSLKEYLOGFILE=" .. log .. " " .. H.lua .. " -e \"" .. script .. "\" 2>&1"))
    local out = p:read("*a")
    p:close()
    local f = io.open(log, "rb")
    local logged = f and f:read("*a") or ""
    if f then f:close() end
    os.remove(log)
    assert.equal("status=200,200,200", out)
    assert.equal("", logged)
  end)
end)

describe("freshbooks.h embedding", function()
  it("uses the host's CURLSH and skips curl_global_init when the host asks", function()
    local pc = H.lua -- the pkg-config name and the build directory of this interpreter
    local dir = ts.dir
    local cc = "cc -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Isrc -Ibuild/" .. pc .. "/gen" ..
      " $(pkg-config --cflags " .. pc .. " libcurl libssl libcrypto sqlite3 libpq) spec/support/embed_host.c src/*.c" ..
      " -o " .. dir .. "/embed_host $(pkg-config --libs " .. pc .. " libcurl libssl libcrypto sqlite3 libpq)" ..
      " -lm -ldl 2>&1"
    local p = assert(io.popen(cc))
    local out = p:read("*a")
    p:close()
    assert.equal("", out)
    p = assert(io.popen(dir .. "/embed_host " .. ts.url .. "/echo 2>&1"))
    out = p:read("*a")
    p:close()
    local lua_conn, host_conn = out:match("^lua=(%d+) host=(%d+)")
    assert.is_not_nil(lua_conn, out)
    assert.equal(lua_conn, host_conn)
  end)
end)

describe("client lifetime", function()
  it("closes idempotently; use after close raises clearly", function()
    local c = core.http.client()
    assert.matches("^freshbooks%.client%(0x%x+%)$", tostring(c))
    c:close()
    c:close()
    assert.equal("freshbooks.client(closed)", tostring(c))
    assert.error_matches(function() c:request{ url = ts.url } end, "client is closed")
    assert.error_matches(function() c:batch{} end, "client is closed")
  end)

  it("__gc and __close are the same idempotent close", function()
    local c = core.http.client()
    local mt = getmetatable(c)
    mt.__gc(c)
    assert.equal("freshbooks.client(closed)", tostring(c))
    mt.__gc(c)
    mt.__close(c)
    c:close()
    assert.error_matches(function() c:request{ url = ts.url } end, "client is closed")
  end)

  it("is closed by a to-be-closed variable (Lua 5.4)", function()
    if _VERSION ~= "Lua 5.4" then return end
    local chunk = assert(load([[
      local core, url = ...
      local kept
      do
        local c <close> = core.http.client()
        kept = c
        assert(c:request{ url = url })
      end
      return kept
    ]]))
    assert.equal("freshbooks.client(closed)", tostring(chunk(core, ts.url .. "/echo")))
  end)

  it("is freed by the garbage collector", function()
    for _ = 1, 20 do core.http.client():request{ url = ts.url .. "/echo" } end
    collectgarbage()
    collectgarbage()
    assert.equal(200, (core.http.client():request{ url = ts.url .. "/echo" }))
  end)

  it("sends requests through the configured proxy", function()
    -- The test nginx plays an HTTP proxy: it answers the absolute-form request for a host that does
    -- not even resolve, so the answer can only have come through the proxy.
    local c = core.http.client{ proxy = ts.url }
    local status, _, body = c:request{ url = "http://api.freshbooks.invalid/echo?via=proxy" }
    c:close()
    assert.equal(200, status)
    local seen = cjson.decode(body)
    assert.equal("/echo?via=proxy", seen.uri)
    assert.equal("api.freshbooks.invalid", seen.headers.host)
    local direct = core.http.client()
    local _, err = direct:request{ url = "http://api.freshbooks.invalid/echo" }
    direct:close()
    assert.equal("resolve", err.code)
  end)

  it("shows no proxy credentials in tostring", function()
    local c = core.http.client{ proxy = "http://user:hunter2@127.0.0.1:1" }
    assert.is_nil(tostring(c):find("hunter2", 1, true))
    c:close()
  end)
end)

describe("secrets", function()
  it("never print", function()
    local s = core.secret.new("refresh-token-value")
    assert.equal("freshbooks.secret(***)", tostring(s))
    if _VERSION == "Lua 5.1" and not rawget(_G, "jit") then -- its %s takes strings only
      assert.error_matches(function() return string.format("%s", s) end, "string expected, got userdata")
    else
      assert.equal("freshbooks.secret(***)", string.format("%s", s))
    end
    assert.equal("freshbooks.secret", getmetatable(s))
    assert.error_matches(function() return "x" .. s end, "concatenate")
    assert.error_matches(function() core.codec.hex(s) end, "string expected")
  end)

  it("reveal, compare and measure without printing", function()
    local s = core.secret.new("abc")
    assert.equal("abc", core.secret.reveal(s))
    assert.equal(s, core.secret.new(s))
    assert.is_true(s == core.secret.new("abc"))
    assert.is_false(s == core.secret.new("abd"))
    assert.equal(3, #s)
    assert.is_true(core.secret.is(s))
    assert.is_false(core.secret.is("abc"))
    assert.error_matches(function() core.secret.new(42) end, "string expected")
    assert.error_matches(function() core.secret.reveal("abc") end, "freshbooks.secret expected")
  end)

  it("wipes on close, idempotently", function()
    local s = core.secret.new("wipe-me")
    local mt_close = debug.getmetatable(s).__close
    mt_close(s)
    mt_close(s)
    assert.error_matches(function() core.secret.reveal(s) end, "wiped")
    assert.equal("freshbooks.secret(***)", tostring(s))
  end)
end)
