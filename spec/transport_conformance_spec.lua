-- One HTTP contract for both transports, proven by one suite: every case below runs against the
-- libcurl transport (here, in busted) and against the cosocket transport inside a real nginx, both
-- talking to the same hostile server (spec/support/hostile.lua: drips, lies about length, endless
-- chunked bodies, 1xx, bad status lines, huge headers, closes at every point; TLS with a wrong name
-- and a self-signed certificate). Every case: no crash, no hang past the deadline, the expected coded
-- error (or answer), the pool not poisoned (the next request on that host gets its own answer), and no
-- secret in any message.
local cjson = require "cjson"
local core = require "freshbooks.core"
local transport = require "freshbooks.transport"
local testserver = require "support.testserver"
local conformance = require "support.conformance"

local TIMEOUT = 1.5    -- per request, for the drip cases
local SLACK = 1.5      -- a failure must arrive within the deadline plus this (scheduling, nothing more)
local MAX_BODY = 1024 * 1024

-- name, url, expected: `code` (an error) or `status` (an answer; with `answer`, its body must be
-- "ok:<the case's marker>", so an answer meant for another request shows); `raises` = refused before
-- anything is sent (the hostile server counts what arrives).
local CASES = {
  { name = "ok", url = "/h/ok", status = 200, answer = true },
  { name = "status line without a reason", url = "/h/status_no_reason", status = 200 },
  { name = "HTTP/1.0 delimited by close", url = "/h/http10_close", status = 200 },
  { name = "100 Continue, then the answer", url = "/h/continue_then_200", status = 200 },
  { name = "103 Early Hints, then the answer", url = "/h/early_hints", status = 200 },
  { name = "16 informational answers, then the answer", url = "/h/sixteen_1xx", status = 200, answer = true },
  { name = "17 informational answers", url = "/h/seventeen_1xx", code = "protocol" },
  { name = "endless informational answers", url = "/h/endless_1xx", code = "protocol" },
  { name = "150 KB of headers in a 103 and 150 KB in the answer", url = "/h/big_1xx_headers", code = "too_large" },
  { name = "101 nobody asked for", url = "/h/switching", code = "protocol" },
  { name = "status 2000", url = "/h/status_2000", code = "protocol" },
  { name = "status 20", url = "/h/status_short", code = "protocol" },
  { name = "not HTTP at all", url = "/h/status_garbage", code = "protocol" },
  { name = "words instead of a status line", url = "/h/status_words", code = "protocol" },
  { name = "status line dripped", url = "/h/drip_status", code = "timeout", timeout = TIMEOUT },
  { name = "headers dripped", url = "/h/drip_headers", code = "timeout", timeout = TIMEOUT },
  { name = "body dripped", url = "/h/drip_body", code = "timeout", timeout = TIMEOUT },
  { name = "chunks dripped", url = "/h/drip_chunked", code = "timeout", timeout = TIMEOUT },
  { name = "4 MiB delimited by close, max_body 1 MiB", url = "/h/no_length_big", code = "too_large" },
  { name = "Content-Length over max_body", url = "/h/length_big", code = "too_large" },
  { name = "endless chunked body", url = "/h/endless_chunked", code = "too_large" },
  { name = "a 2 MiB header line", url = "/h/huge_header_line", code = "too_large" },
  { name = "20,000 header lines", url = "/h/many_headers", code = "too_large" },
  { name = "Content-Length longer than the body", url = "/h/length_short", code = "recv" },
  { name = "a forged second answer after the body", url = "/h/length_long", status = 200, answer = true },
  { name = "Content-Length: abc", url = "/h/length_bad", code = "protocol" },
  { name = "Content-Length: -1", url = "/h/length_negative", code = "protocol" },
  { name = "two Content-Length values", url = "/h/length_conflict", code = "protocol" },
  { name = "Content-Length: 0x5", url = "/h/length_hex", code = "protocol" },
  { name = "Content-Length: 5 5", url = "/h/length_two_numbers", code = "protocol" },
  { name = "Content-Length: 5, 5", url = "/h/length_list", code = "protocol" },
  { name = "Content-Length 5 and 05", url = "/h/length_leading_zero", code = "protocol" },
  { name = "a Content-Length of 20 digits", url = "/h/length_20_digits", code = "too_large" },
  { name = "chunked beside two Content-Lengths that differ", url = "/h/chunked_lengths_conflict", code = "protocol" },
  { name = "chunked beside a Content-Length", url = "/h/te_and_cl", status = 200, answer = true },
  { name = "chunk extensions and trailers", url = "/h/chunked_trailers", status = 200, answer = true },
  { name = "trailers are not headers", url = "/h/trailer_header", status = 200, answer = true,
    expect_headers = { ["content-type"] = "application/json", ["x-trailer"] = false } },
  { name = "150 KB of headers and 150 KB of trailers", url = "/h/big_trailers", code = "too_large" },
  { name = "a chunk size that is not hex", url = "/h/bad_chunk_size", code = "protocol" },
  { name = "a chunk size of 21 hex digits", url = "/h/chunk_size_overflow", code = "protocol" },
  { name = "no CRLF after a chunk", url = "/h/chunk_no_crlf", code = "protocol" },
  { name = "closed inside a chunk", url = "/h/chunk_truncated", code = "recv" },
  { name = "closed before a byte", url = "/h/close_at_once", code = "recv" },
  { name = "closed inside the status line", url = "/h/close_mid_status", code = "recv" },
  { name = "closed inside the headers", url = "/h/close_mid_headers", code = "recv" },
  { name = "closed before the body", url = "/h/close_after_headers", code = "recv" },
  -- The request side: refused before a byte leaves (the hostile server counts what arrives).
  { name = "CR LF in the query (request splitting)", raises = "space or control",
    url = "/h/ok?per_page=1 HTTP/1.1\r\nHost: x\r\n\r\nDELETE /h/ok HTTP/1.1" },
  { name = "CR LF in a header value", raises = "control character", url = "/h/ok",
    headers = { ["X-A"] = "1\r\nX-Injected: yes" } },
  { name = "NUL in a header value", raises = "control character", url = "/h/ok", headers = { ["X-A"] = "a\0b" } },
  { name = "DEL in a header value", raises = "control character", url = "/h/ok", headers = { ["X-A"] = "a\127b" } },
  { name = "a space in a header name", raises = "invalid header name", url = "/h/ok", headers = { ["X A"] = "1" } },
  { name = "a lower-case method", raises = "invalid method", url = "/h/ok", method = "get" },
  { name = "a method carrying a request line", raises = "invalid method", url = "/h/ok",
    method = "GET /h/ok HTTP/1.1\r\n\r\nDELETE" },
  { name = "the caller's Host", raises = "set by the transport", url = "/h/ok", headers = { Host = "evil" } },
  { name = "the caller's Content-Length", raises = "set by the transport", url = "/h/ok", method = "POST",
    body = "abcdef", headers = { ["Content-Length"] = "2" } },
  { name = "the caller's Transfer-Encoding", raises = "set by the transport", url = "/h/ok",
    headers = { ["transfer-encoding"] = "chunked" } },
  { name = "the caller's Connection", raises = "set by the transport", url = "/h/ok",
    headers = { Connection = "close" } },
  -- Headers: the caller's User-Agent wins and goes out once; no Content-Type is invented.
  { name = "the caller's User-Agent", url = "/echo?marker=ua", status = 200,
    headers = { ["User-Agent"] = "mine/1.0", Authorization = conformance.SECRET }, echo_user_agent = "mine/1.0" },
  { name = "the default User-Agent", url = "/echo?marker=dua", status = 200, echo_user_agent = "^lua%-freshbooks/" },
  -- Batches: results in input order, each with its own outcome.
  { name = "a batch of good and hostile answers", batch = { "/h/ok?marker=b1", "/h/status_2000", "/h/drip_body",
    "/h/ok?marker=b2" }, timeout = TIMEOUT },
}

-- TLS: from the trusted CA for another name, self-signed, and a connection opened without verification
-- that a verifying transport must not reuse. (`tls` is filled in once the server runs.)
local function tls_cases(ts)
  local wrong = "https://localhost:" .. ts.wrong_name_port .. "/"
  return {
    { name = "TLS: certificate for another name", full_url = wrong, code = "tls", no_followup = true },
    { name = "TLS: self-signed certificate", full_url = "https://localhost:" .. ts.self_signed_port .. "/",
      code = "tls", no_followup = true },
    { name = "TLS: trusted certificate by name", full_url = "https://localhost:" .. ts.tls_port .. "/echo?marker=tls",
      status = 200, no_followup = true },
    { name = "TLS: an unverified connection is not reused by a verifying transport", full_url = wrong, code = "tls",
      before = { opts = { insecure_no_verify_tls = true }, url = wrong }, before_status = 200, no_followup = true },
  }
end

local function check(o, case)
  local what = case.name
  assert.is_table(o, what .. ": no outcome")
  -- No secret in any message (the echo server's bodies repeat the request's headers on purpose).
  local text = cjson.encode(o)
  local messages = { o.message, o.raised, o.before and o.before.message }
  for _, r in ipairs(o.batch or {}) do messages[#messages + 1] = r.message end
  for _, m in pairs(messages) do assert.is_nil(m:find("sEcReT", 1, true), what .. ": the secret leaked: " .. m) end
  if case.raises then
    assert.is_string(o.raised, what .. ": expected a raise, got " .. text)
    assert.matches(case.raises, o.raised, 1, true)
    assert.equal(0, o.arrived, what .. ": the refused request reached the server")
    return
  end
  assert.is_nil(o.raised, what .. ": raised " .. tostring(o.raised))
  if case.batch then
    assert.equal(200, o.batch[1].status)
    assert.matches("ok:b1", o.batch[1].body, 1, true)
    assert.equal("protocol", o.batch[2].code)
    assert.equal("timeout", o.batch[3].code)
    assert.equal(200, o.batch[4].status)
    assert.matches("ok:b2", o.batch[4].body, 1, true)
  elseif case.code then
    assert.is_nil(o.status ~= nil and o.code == nil and o.status or nil, what .. ": expected " .. case.code ..
      ", got an answer: " .. text)
    assert.equal(case.code, o.code, what .. ": " .. text)
    assert.is_string(o.message)
  else
    assert.equal(case.status, o.status, what .. ": " .. text)
    if case.answer then assert.equal("ok:" .. conformance.marker(case), o.body, what) end
    for name, value in pairs(case.expect_headers or {}) do
      assert.equal(value or nil, o.headers[name], what .. ": header " .. name)
    end
    if case.echo_user_agent then
      local echoed = cjson.decode(o.body).headers["user-agent"]
      assert.is_string(echoed, what .. ": one User-Agent expected, got " .. cjson.encode(echoed))
      assert.matches(case.echo_user_agent, echoed, what)
    end
  end
  if case.before_status then assert.equal(case.before_status, o.before.status, what .. ": the unverified request") end
  local deadline = (case.timeout or 10) + SLACK
  assert.is_true(o.elapsed < deadline, ("%s: took %.2f s (deadline %.1f s)"):format(what, o.elapsed, deadline))
  if o.followup then
    assert.equal(200, o.followup.status, what .. ": the next request failed: " .. tostring(o.followup.code))
    assert.is_true(o.followup.ok, what .. ": the next request got another request's answer (poisoned pool)")
  end
end

local RUNNER = [[
    location = /conformance {
      content_by_lua_block {
        local cjson = require "cjson"
        local conformance = require "conformance"
        local transport = require "freshbooks.transport"
        ngx.req.read_body()
        local plan = cjson.decode(ngx.req.get_body_data())
        local function make(opts)
          local o = { timeout = 10, max_body = plan.max_body }
          for k, v in pairs(opts) do o[k] = v end
          return transport.cosocket(o)
        end
        local clock = function() ngx.update_time() return ngx.now() end
        local out = {}
        for i, case in ipairs(plan.cases) do out[i] = conformance.run(make, case, plan.base, clock) end
        ngx.say(cjson.encode(out))
      }
    }
]]

describe("transport conformance", function()
  local hostile, client_nginx, all

  setup(function()
    hostile = testserver.start{ hostile = true }
    all = {}
    for _, c in ipairs(CASES) do all[#all + 1] = c end
    for _, c in ipairs(tls_cases(hostile)) do all[#all + 1] = c end
    client_nginx = testserver.start{
      http = testserver.lua_paths{ "spec/support" } .. "\n  lua_ssl_trusted_certificate " .. hostile.ca_file .. ";",
      locations = RUNNER,
    }
  end)
  teardown(function()
    if client_nginx then client_nginx.stop() end
    if hostile then hostile.stop() end
  end)

  local outcomes = {}

  local function run_libcurl()
    local function make(opts)
      local o = { timeout = 10, max_body = MAX_BODY, cainfo = hostile.ca_file }
      for k, v in pairs(opts) do o[k] = v end
      return transport.curl(o)
    end
    local out = {}
    for i, case in ipairs(all) do out[i] = conformance.run(make, case, hostile.url, core.clock.now) end
    return out
  end

  local function run_cosocket()
    local c = core.http.client{ timeout = 300 }
    local status, _, body = c:request{ method = "POST", url = client_nginx.url .. "/conformance",
      body = cjson.encode{ cases = all, base = hostile.url, max_body = MAX_BODY } }
    c:close()
    assert.equal(200, status, tostring(body) .. client_nginx.log())
    return cjson.decode(body)
  end

  -- The cosocket side runs inside nginx (LuaJIT) whichever interpreter runs busted: once is enough,
  -- in the LuaJIT run; the libcurl side runs under both.
  for _, which in ipairs(rawget(_G, "jit") and { "libcurl", "cosocket" } or { "libcurl" }) do
    describe(which, function()
      setup(function()
        outcomes[which] = which == "libcurl" and run_libcurl() or run_cosocket()
      end)
      for i, case in ipairs(CASES) do
        it(case.name, function() check(outcomes[which][i], case) end)
      end
      it("TLS cases", function()
        for j, case in ipairs(tls_cases(hostile)) do check(outcomes[which][#CASES + j], case) end
      end)
    end)
  end
end)
