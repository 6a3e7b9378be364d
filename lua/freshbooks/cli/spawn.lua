-- Every program the command starts (a browser, the pager, the shell that reads a prompt, stty) starts
-- here, after core.close_on_exec(): it inherits no listening socket, API connection, lock or file of
-- ours (lua-socket, libcurl and io.open make descriptors that exec would otherwise pass on).
local spawn = {}

local function close_on_exec() require("freshbooks.core").close_on_exec() end

function spawn.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- -> file handle (io.popen)
function spawn.popen(cmd, mode)
  close_on_exec()
  return io.popen(cmd, mode or "r")
end

-- -> true when the command exited 0
function spawn.run(cmd)
  close_on_exec()
  local ok = os.execute(cmd)
  return ok == true or ok == 0 -- Lua 5.2+ / 5.1 and LuaJIT
end

-- The first line a command prints, or nil.
function spawn.line(cmd)
  local p = spawn.popen(cmd)
  if not p then return nil end
  local l = p:read("*l")
  p:close()
  return l
end

function spawn.have(program)
  return spawn.run("command -v " .. spawn.quote(program) .. " >/dev/null 2>&1")
end

-- Columns of the terminal (nil when there is none): $COLUMNS, else what stty says of /dev/tty.
function spawn.columns()
  local n = tonumber(os.getenv("COLUMNS") or "")
  if n and n > 0 then return n end
  local size = spawn.line("stty size </dev/tty 2>/dev/null")
  n = size and tonumber(size:match("^%d+ (%d+)"))
  return n and n > 0 and n or nil
end

return spawn
