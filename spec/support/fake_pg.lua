-- A hostile PostgreSQL for pgwire's specs: fake_pg.lua PORT READY_FILE. Serves connections one after
-- another (plain TCP; it refuses TLS), each as its startup message's database name says:
--   badsig  SCRAM with a server signature that proves nothing
--   nonce   SCRAM whose server nonce does not extend the client's
--   slowhash, hugehash  SCRAM asking for 9,999,999 and 10^20 iterations (the work is the server's choice)
--   huge    a message announcing 2 GB
--   silent  reads the startup message and never answers
--   garbage a stream of bytes that is no protocol at all
-- Writes READY_FILE once it listens.
local socket = require "socket"

local port, ready = tonumber(arg[1]), arg[2]
local srv = assert(socket.bind("127.0.0.1", port))
local f = assert(io.open(ready, "w"))
f:write("ready\n")
f:close()

local function int32(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end
local function get32(s) local a, b, c, d = s:byte(1, 4) return ((a * 256 + b) * 256 + c) * 256 + d end
local function message(kind, body) return kind .. int32(#body + 4) .. body end

local function serve(c)
  c:settimeout(10)
  local head = c:receive(8)
  if not head then return end
  local len, code = get32(head), get32(head:sub(5))
  if code == 80877103 then -- SSLRequest: refused, the startup message follows
    c:send("N")
    head = c:receive(8)
    if not head then return end
    len = get32(head)
  end
  local body = c:receive(len - 8) or ""
  local db = body:match("database%z([^%z]*)") or ""
  if db == "silent" then
    socket.sleep(30)
    return
  elseif db == "huge" then
    c:send("R" .. int32(2147483647) .. int32(0))
    return
  elseif db == "garbage" then
    c:send(string.rep("\255\0garbage", 100))
    return
  end
  c:send(message("R", int32(10) .. "SCRAM-SHA-256\0\0"))
  local kind = c:receive(1)
  local n = get32(c:receive(4) or "\0\0\0\4")
  local first = kind and c:receive(n - 4) or ""
  local nonce = first:match("r=([^,%z]+)") or ""
  local server_nonce = db == "nonce" and "someone-elses-nonce" or (nonce .. "server")
  local rounds = db == "slowhash" and "9999999" or db == "hugehash" and "99999999999999999999" or "4096"
  c:send(message("R", int32(11) .. "r=" .. server_nonce .. ",s=c2FsdHNhbHRzYWx0,i=" .. rounds))
  kind = c:receive(1)
  n = get32(c:receive(4) or "\0\0\0\4")
  if kind then c:receive(n - 4) end
  c:send(message("R", int32(12) .. "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
  c:send(message("R", int32(0)))
  c:send(message("Z", "I"))
  c:receive(1) -- (the client closes)
end

for _ = 1, 50 do
  local c = srv:accept()
  if c then
    pcall(serve, c)
    c:close()
  end
end
