-- A hostile HTTP server, run inside nginx (spec/support/testserver.lua, `hostile = true`): every
-- location /h/<case> answers through the raw request socket, byte for byte as the case says, so the
-- transports meet what no well-behaved server sends: drips, lies about length, endless chunked bodies,
-- 1xx before the answer, bad status lines, huge headers, and connections closed at every point.
--   /h/<case>?marker=X    every well-formed body carries X, so a reply read by the wrong request shows
--   /h/count              how many /h/ requests arrived so far
local hostile = {}

local function drip(sock, s, every)
  for i = 1, #s do
    if not sock:send(s:sub(i, i)) then return end
    ngx.sleep(every)
  end
end

local function forever(sock, chunk, limit)
  for _ = 1, limit do
    if not sock:send(chunk) then return end
  end
end

local function head(status, headers)
  return "HTTP/1.1 " .. status .. "\r\n" .. table.concat(headers or {}, "\r\n") .. (headers and #headers > 0 and
    "\r\n" or "") .. "\r\n"
end

local MIB = 1024 * 1024
local KB64 = string.rep("x", 65536)

-- name -> function(sock, marker): what the server writes. Returning "keep" leaves the connection open
-- for another request (as a kept-alive server would); anything else closes it.
local cases = {
  ok = function(sock, m)
    local body = "ok:" .. m
    sock:send(head("200 OK", { "Content-Length: " .. #body, "Content-Type: text/plain" }) .. body)
    return "keep"
  end,
  status_no_reason = function(sock, m)
    sock:send("HTTP/1.1 200\r\nContent-Length: " .. (#m + 3) .. "\r\n\r\nok:" .. m)
    return "keep"
  end,
  http10_close = function(sock, m) sock:send("HTTP/1.0 200 OK\r\n\r\nok:" .. m) end,
  continue_then_200 = function(sock, m)
    local body = "ok:" .. m
    sock:send("HTTP/1.1 100 Continue\r\n\r\n" .. head("200 OK", { "Content-Length: " .. #body }) .. body)
    return "keep"
  end,
  early_hints = function(sock, m)
    local body = "ok:" .. m
    sock:send("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" ..
      head("200 OK", { "Content-Length: " .. #body }) .. body)
    return "keep"
  end,
  -- Informational answers: 16 are skipped, a 17th is refused; their headers count towards the same
  -- 256 KiB as the final answer's (both transports: FB_MAX_1XX, FB_MAX_HEADER_BYTES).
  sixteen_1xx = function(sock, m)
    local body = "ok:" .. m
    sock:send(string.rep("HTTP/1.1 100 Continue\r\n\r\n", 16) .. head("200 OK", { "Content-Length: " .. #body }) ..
      body)
    return "keep"
  end,
  seventeen_1xx = function(sock)
    sock:send(string.rep("HTTP/1.1 100 Continue\r\n\r\n", 17) .. head("200 OK", { "Content-Length: 2" }) .. "ok")
  end,
  endless_1xx = function(sock) forever(sock, string.rep("HTTP/1.1 100 Continue\r\n\r\n", 1000), 1000) end,
  big_1xx_headers = function(sock)
    local lines = string.rep("X-Hint: " .. string.rep("h", 90) .. "\r\n", 1500) -- ~150 KB in each block
    sock:send("HTTP/1.1 103 Early Hints\r\n" .. lines .. "\r\nHTTP/1.1 200 OK\r\n" .. lines ..
      "Content-Length: 2\r\n\r\nok")
  end,
  switching = function(sock)
    sock:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
  end,
  status_2000 = function(sock) sock:send("HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok") end,
  status_short = function(sock) sock:send("HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok") end,
  status_garbage = function(sock) sock:send("SPDY/9 200 OK\r\nContent-Length: 2\r\n\r\nok") end,
  status_words = function(sock) sock:send("hello there, this is not HTTP\r\n\r\n") end,
  drip_status = function(sock) drip(sock, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0.5) end,
  drip_headers = function(sock)
    sock:send("HTTP/1.1 200 OK\r\n")
    drip(sock, "X-Drip: " .. string.rep("d", 200) .. "\r\n\r\n", 0.5)
  end,
  drip_body = function(sock)
    sock:send(head("200 OK", { "Content-Length: 200" }))
    drip(sock, string.rep("b", 200), 0.5)
  end,
  drip_chunked = function(sock)
    sock:send(head("200 OK", { "Transfer-Encoding: chunked" }))
    for _ = 1, 200 do
      if not sock:send("1\r\nc\r\n") then return end
      ngx.sleep(0.5)
    end
  end,
  no_length_big = function(sock)
    sock:send(head("200 OK", { "Connection: close" }))
    forever(sock, KB64, 64) -- 4 MiB, delimited by close
  end,
  length_big = function(sock)
    sock:send(head("200 OK", { "Content-Length: " .. 4 * MIB }))
    forever(sock, KB64, 64)
  end,
  endless_chunked = function(sock)
    sock:send(head("200 OK", { "Transfer-Encoding: chunked" }))
    forever(sock, "10000\r\n" .. KB64 .. "\r\n", 1e6)
  end,
  huge_header_line = function(sock)
    sock:send("HTTP/1.1 200 OK\r\nX-Huge: ")
    forever(sock, KB64, 32)
    sock:send("\r\nContent-Length: 2\r\n\r\nok")
  end,
  many_headers = function(sock)
    sock:send("HTTP/1.1 200 OK\r\n")
    local line = "X-Many: " .. string.rep("m", 90) .. "\r\n"
    forever(sock, string.rep(line, 200), 100) -- 20,000 lines, ~2 MB
    sock:send("Content-Length: 2\r\n\r\nok")
  end,
  length_short = function(sock) sock:send(head("200 OK", { "Content-Length: 100" }) .. "only ten b") end,
  length_long = function(sock, m)
    local body = "ok:" .. m
    -- The length covers the body; what follows is a second, forged answer a careless client would
    -- hand to the next request on this connection.
    sock:send(head("200 OK", { "Content-Length: " .. #body }) .. body ..
      "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
    return "keep"
  end,
  length_bad = function(sock) sock:send(head("200 OK", { "Content-Length: abc" }) .. "abc") end,
  length_negative = function(sock) sock:send(head("200 OK", { "Content-Length: -1" }) .. "x") end,
  -- Content-Length values libcurl alone would read leniently ("0x5" as 0, "5 5" as 5) or strictly.
  length_hex = function(sock) sock:send(head("200 OK", { "Content-Length: 0x5" }) .. "hello") end,
  length_two_numbers = function(sock) sock:send(head("200 OK", { "Content-Length: 5 5" }) .. "hello") end,
  length_list = function(sock) sock:send(head("200 OK", { "Content-Length: 5, 5" }) .. "hello") end,
  length_leading_zero = function(sock)
    sock:send(head("200 OK", { "Content-Length: 5", "Content-Length: 05" }) .. "hello")
  end,
  length_20_digits = function(sock)
    sock:send(head("200 OK", { "Content-Length: 99999999999999999999" }) .. "hello")
  end,
  chunked_lengths_conflict = function(sock)
    sock:send(head("200 OK", { "Transfer-Encoding: chunked", "Content-Length: 5", "Content-Length: 6" }) ..
      "2\r\nok\r\n0\r\n\r\n")
  end,
  length_conflict = function(sock)
    sock:send(head("200 OK", { "Content-Length: 5", "Content-Length: 6" }) .. "hello!")
  end,
  te_and_cl = function(sock, m)
    local body = "ok:" .. m
    sock:send(head("200 OK", { "Content-Length: 3", "Transfer-Encoding: chunked" }) ..
      string.format("%x\r\n%s\r\n0\r\n\r\n", #body, body))
  end,
  chunked_trailers = function(sock, m)
    local body = "ok:" .. m
    sock:send(head("200 OK", { "Transfer-Encoding: chunked" }) ..
      string.format("%x;ext=1\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n", #body, body))
    return "keep"
  end,
  -- Trailers are not headers: what follows the last chunk must not change the answer's headers, and
  -- its lines count towards the same 256 KiB as the headers'.
  trailer_header = function(sock, m)
    local body = "ok:" .. m
    sock:send(head("200 OK", { "Transfer-Encoding: chunked", "Content-Type: application/json" }) ..
      string.format("%x\r\n%s\r\n0\r\nContent-Type: text/html\r\nX-Trailer: t\r\n\r\n", #body, body))
    return "keep"
  end,
  big_trailers = function(sock)
    local lines = string.rep("X-Big: " .. string.rep("b", 90) .. "\r\n", 1500) -- ~150 KB each
    sock:send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" .. lines .. "\r\n2\r\nok\r\n0\r\n" .. lines .. "\r\n")
  end,
  bad_chunk_size = function(sock)
    sock:send(head("200 OK", { "Transfer-Encoding: chunked" }) .. "zz\r\nhello\r\n0\r\n\r\n")
  end,
  chunk_size_overflow = function(sock)
    sock:send(head("200 OK", { "Transfer-Encoding: chunked" }) .. "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n")
  end,
  chunk_no_crlf = function(sock)
    sock:send(head("200 OK", { "Transfer-Encoding: chunked" }) .. "5\r\nhelloXX2\r\nok\r\n0\r\n\r\n")
  end,
  chunk_truncated = function(sock)
    sock:send(head("200 OK", { "Transfer-Encoding: chunked" }) .. "64\r\nonly ten b")
  end,
  close_at_once = function() end,
  close_mid_status = function(sock) sock:send("HTTP/1.1 2") end,
  close_mid_headers = function(sock) sock:send("HTTP/1.1 200 OK\r\nContent-Len") end,
  close_after_headers = function(sock) sock:send(head("200 OK", { "Content-Length: 10" })) end,
}

function hostile.serve()
  local name = ngx.var.uri:match("^/h/([%w_]+)$")
  local counter = ngx.shared.hostile
  if name == "count" then -- how many /h/ requests arrived: a refused request must never get here
    ngx.say(counter:get("requests") or 0)
    return
  end
  counter:incr("requests", 1, 0)
  local case = cases[name]
  if not case then
    ngx.status = 404
    ngx.say("no such case")
    return
  end
  local marker = ngx.var.arg_marker or ""
  local sock = assert(ngx.req.socket(true))
  if case(sock, marker) == "keep" then return end
  ngx.exit(444) -- close the connection without another byte
end

hostile.cases = {}
for name in pairs(cases) do hostile.cases[#hostile.cases + 1] = name end
table.sort(hostile.cases)

return hostile
