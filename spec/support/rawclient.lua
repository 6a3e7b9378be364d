-- Raw TCP for the login specs, run as a child process so that the spec process never loads lua-socket
-- (which sets SIGPIPE to "ignore" for itself and every child it starts). Every wait is bounded.
--   lua rawclient.lua freeport                        -> a free 127.0.0.1 port (on stdout)
--   lua rawclient.lua listen HOST PORT SECONDS READY  -> hold HOST:PORT; create file READY once listening
--   lua rawclient.lua send HOST PORT FILE             -> send FILE's bytes, print the answer until close
--   lua rawclient.lua hold HOST PORT SECONDS          -> connect, send nothing, print what arrives
--   lua rawclient.lua split HOST PORT FILE1 GO FILE2  -> send FILE1; once file GO exists send FILE2; print
--   lua rawclient.lua hog HOST PORT N SECONDS READY   -> keep N idle connections open (each one closed is
--                                                        opened again) for SECONDS; READY once N are open
--   lua rawclient.lua serve PORT FILE SECONDS READY   -> a server on 127.0.0.1:PORT answering every request
--                                                        with FILE's bytes (a whole HTTP response)
local socket = require "socket"

local mode = arg[1]

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function connect(host, port)
  local c = assert((host:find(":", 1, true) and socket.tcp6 or socket.tcp4)())
  c:settimeout(5)
  local ok, err = c:connect(host, tonumber(port))
  if not ok then io.write("CONNECT-FAILED ", tostring(err), "\n") os.exit(0) end
  return c
end

-- Everything until the server closes (at most `seconds`).
local function answer(c, seconds)
  local out, deadline = {}, socket.gettime() + seconds
  while socket.gettime() < deadline do
    c:settimeout(math.max(deadline - socket.gettime(), 0.01))
    local data, err, partial = c:receive(4096)
    out[#out + 1] = data or partial or ""
    if err == "closed" then break end
    if err and err ~= "timeout" then out[#out + 1] = "\nRECEIVE-FAILED " .. err break end
  end
  return table.concat(out)
end

if mode == "freeport" then
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  io.write(port, "\n")
elseif mode == "listen" then
  local host, port, seconds, ready = arg[2], tonumber(arg[3]), tonumber(arg[4]), arg[5]
  local s = assert((host:find(":", 1, true) and socket.tcp6 or socket.tcp4)())
  if host:find(":", 1, true) then s:setoption("ipv6-v6only", true) end
  s:setoption("reuseaddr", true) -- like any server: closed connections (TIME_WAIT) do not count as in use
  local ok, err = s:bind(host, port)
  if not ok then io.write("BIND-FAILED ", tostring(err), "\n") os.exit(0) end
  assert(s:listen(4))
  assert(io.open(ready, "w")):close()
  socket.sleep(seconds)
elseif mode == "send" then
  local c = connect(arg[2], arg[3])
  c:send(read(arg[4]))
  io.write(answer(c, 10))
elseif mode == "hold" then
  local c = connect(arg[2], arg[3])
  io.write(answer(c, tonumber(arg[4])))
elseif mode == "split" then
  local c = connect(arg[2], arg[3])
  c:send(read(arg[4]))
  local deadline = socket.gettime() + 10
  while not exists(arg[5]) and socket.gettime() < deadline do socket.sleep(0.01) end
  c:send(read(arg[6]))
  io.write(answer(c, 5))
elseif mode == "hog" then
  local host, port, n, seconds, ready = arg[2], tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5]), arg[6]
  local open, deadline, readied = {}, socket.gettime() + seconds, false
  while socket.gettime() < deadline do
    for i = 1, n do
      if not open[i] then
        local c = (host:find(":", 1, true) and socket.tcp6 or socket.tcp4)()
        c:settimeout(1)
        if c:connect(host, port) then c:settimeout(0) open[i] = c else c:close() end
      end
    end
    if not readied and #open == n then assert(io.open(ready, "w")):close() readied = true end
    local conns = {}
    for _, c in pairs(open) do conns[#conns + 1] = c end
    local readable = socket.select(conns, nil, 0.05)
    for _, c in ipairs(readable or {}) do -- answered (refused, timed out) or closed: open another
      for i, o in pairs(open) do if o == c then o:close() open[i] = nil end end
    end
  end
elseif mode == "serve" then
  local port, reply, seconds, ready = tonumber(arg[2]), read(arg[3]), tonumber(arg[4]), arg[5]
  local s = assert(socket.tcp4())
  s:setoption("reuseaddr", true)
  assert(s:bind("127.0.0.1", port))
  assert(s:listen(16))
  assert(io.open(ready, "w")):close()
  s:settimeout(0.1)
  local deadline = socket.gettime() + seconds
  while socket.gettime() < deadline do
    local c = s:accept()
    if c then
      c:settimeout(2)
      repeat local l = c:receive("*l") until not l or l == ""
      c:send(reply)
      c:close()
    end
  end
else
  error("rawclient: unknown mode " .. tostring(mode))
end
