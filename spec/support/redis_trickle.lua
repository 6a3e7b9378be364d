-- A hostile "Redis" for the deadline specs: it answers every command with an array of `lines`
-- integers, one line every `gap` seconds, so each read completes just inside any per-read timeout
-- longer than `gap`. One connection at a time; a closed client ends its answer.
--   lua5.4 spec/support/redis_trickle.lua PORT GAP LINES      (prints "ready" once listening)
local socket = require "socket"
local port, gap, lines = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
local server = assert(socket.bind("127.0.0.1", port))
io.stdout:write("ready\n")
io.stdout:flush()
for _ = 1, 1000 do -- bounded: at most this many connections
  local c = server:accept()
  if c then
    c:settimeout(gap)
    c:receive(1) -- a command has started
    local alive = c:send("*" .. lines .. "\r\n")
    for _ = 1, lines do
      if not alive then break end
      socket.sleep(gap)
      alive = c:send(":1\r\n")
    end
    c:close()
  end
end
