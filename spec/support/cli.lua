-- Drive the real `freshbooks` command (bin/freshbooks) as a subprocess, under the interpreter running
-- the specs, against a sandbox: synchronously, in the background (while the spec plays the browser),
-- or on a real terminal (tmux to type into it, `script` to see what a terminal shows). Every run and
-- every wait is bounded; a job still running at its deadline is killed and the spec fails.
--   local w = C.world(sb, port)          -- a private temp dir as $XDG_CONFIG_HOME, the app's credentials
--   local code, out, err = w:run("status")
--   local job = w:spawn("login --no-browser"); local url = job:url(); ...; job:wait()
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"

local q = sandbox.shell_quote
local C = {}

C.root = assert(io.popen("pwd")):read("*l")
C.lua = H.lua
C.command = C.lua .. " " .. q(C.root .. "/bin/freshbooks")
C.raw = C.lua .. " " .. q(C.root .. "/spec/support/rawclient.lua")

-- Nothing from the developer's own environment leaks in (a BROWSER, a DISPLAY, real credentials).
local CLEAR = "env -u BROWSER -u DISPLAY -u WAYLAND_DISPLAY -u FB_CLIENT_ID -u FB_CLIENT_SECRET -u FB_REDIRECT_URI"
  .. " -u TMUX -u FB_DEBUG"

function C.read(path) return H.read(path) or "" end

function C.write(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then os.execute("chmod " .. mode .. " " .. q(path)) end
end

function C.mode(path)
  local p = io.popen("stat -c %a " .. q(path) .. " 2>/dev/null")
  local m = p:read("*l")
  p:close()
  return m
end

function C.ls(dir)
  local p = io.popen("ls -A " .. q(dir) .. " 2>/dev/null")
  local names = {}
  for l in p:lines() do names[#names + 1] = l end
  p:close()
  table.sort(names)
  return names
end

-- Wait until pred() is true, at most `seconds`. -> true | false
function C.until_true(pred, seconds)
  local deadline = core.clock.now() + (seconds or 10)
  while core.clock.now() < deadline do
    if pred() then return true end
    core.clock.sleep(0.02)
  end
  return pred() and true or false
end

function C.free_port()
  local p = io.popen(C.raw .. " freeport")
  local port = tonumber(p:read("*l"))
  p:close()
  return assert(port, "no free port")
end

-- A shell command's output (both streams), bounded by `timeout`.
function C.sh(cmd, timeout)
  local p = io.popen("timeout -k 2 " .. (timeout or 20) .. " sh -c " .. q(cmd) .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

---------------------------------------------------------------------------------------------------
-- A world: one temp directory (the config home lives in it) and the sandbox app's credentials.

local World = {}
World.__index = World

function C.world(sb, port)
  local dir = H.tmpdir()
  local w = setmetatable({ sb = sb, dir = dir, port = port, config_home = dir .. "/config", n = 0, pids = {} },
    World)
  w.redirect_uri = port and ("http://127.0.0.1:%d/callback"):format(port) or sb.app.redirect_uri
  w.tokens = w.config_home .. "/freshbooks/tokens.json"
  w.vars = { XDG_CONFIG_HOME = w.config_home, HOME = dir, FB_CLIENT_ID = sb.app.client_id,
             FB_CLIENT_SECRET = sb.app.client_secret, FB_REDIRECT_URI = w.redirect_uri }
  w.flags = "--api-url " .. q(sb.url) .. " --auth-url " .. q(sb.url)
  return w
end

-- Whatever a failed spec left running (our own pids only), then the directory.
function World:cleanup()
  for _, pid in ipairs(self.pids) do os.execute(("kill -KILL %d 2>/dev/null"):format(pid)) end
  H.rmdir(self.dir)
end

-- Start `cmd` in the background (its pid is remembered for cleanup). -> pid
function World:background(cmd)
  local pidfile = self.dir .. "/bg" .. (#self.pids + 1) .. ".pid"
  os.execute(("sh -c %s >/dev/null 2>&1 &"):format(q(cmd .. " & echo $! >" .. q(pidfile) .. "; wait")))
  assert(C.until_true(function() return C.read(pidfile):match("%d+") end, 10), "did not start: " .. cmd)
  local pid = tonumber(C.read(pidfile):match("%d+"))
  self.pids[#self.pids + 1] = pid
  return pid
end

-- The environment of one run: the world's variables, overridden by `vars` (false unsets one).
function World:env(vars)
  local all = {}
  for k, v in pairs(self.vars) do all[k] = v end
  for k, v in pairs(vars or {}) do all[k] = v end
  local parts = { CLEAR }
  local keys = {}
  for k in pairs(all) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do if all[k] then parts[#parts + 1] = k .. "=" .. q(all[k]) end end
  return table.concat(parts, " ")
end

-- The shell command for `args` (a string of already quoted arguments); `exec` makes the interpreter
-- take the shell's pid (so timeouts and signals reach it). opts: vars, no_flags, prefix (a wrapper
-- command such as /usr/bin/time), suffix (e.g. "| wc -l"), cwd (default: the checkout).
function World:line(args, opts, exec)
  opts = opts or {}
  return ("cd %s && %s%s %s%s %s %s %s"):format(q(opts.cwd or C.root), exec and "exec " or "", self:env(opts.vars),
    opts.prefix and (opts.prefix .. " ") or "", C.command, args, opts.no_flags and "" or self.flags, opts.suffix or "")
end

function World:files()
  self.n = self.n + 1
  local base = ("%s/run%d"):format(self.dir, self.n)
  return base .. ".out", base .. ".err", base .. ".in", base .. ".rc", base .. ".pid"
end

-- Run to the end. -> exit status, stdout, stderr
function World:run(args, opts)
  opts = opts or {}
  local out, err, input = self:files()
  C.write(input, opts.stdin or "")
  local p = io.popen(("timeout -k 2 %d sh -c %s <%s >%s 2>%s; echo $?"):format(opts.timeout or 20,
    q(self:line(args, opts, true)), q(input), q(out), q(err)))
  local code = tonumber(p:read("*a"))
  p:close()
  return code, C.read(out), C.read(err)
end

---------------------------------------------------------------------------------------------------
-- Jobs: the command in the background (the spec plays the browser meanwhile)

local Job = {}
Job.__index = Job

function World:spawn(args, opts)
  opts = opts or {}
  local out, err, input, rc, pid = self:files()
  C.write(input, opts.stdin or "")
  -- The interpreter's own pid is kept (for signals); the wrapper records its exit status.
  local inner = ("(%s) <%s >%s 2>%s & echo $! >%s; wait $!; echo $? >%s"):format(self:line(args, opts, true),
    q(input), q(out), q(err), q(pid), q(rc))
  os.execute("sh -c " .. q(inner) .. " >/dev/null 2>&1 &")
  local job = setmetatable({ out = out, err = err, rc = rc, pidfile = pid, world = self }, Job)
  assert(C.until_true(function() return C.read(pid):match("%d+") end, 10), "the command did not start")
  job.pid = tonumber(C.read(pid):match("%d+"))
  self.pids[#self.pids + 1] = job.pid
  return job
end

function Job:stderr() return C.read(self.err) end

-- Wait until stderr matches `pattern`; -> its captures (or the match), nil on timeout.
function Job:expect(pattern, seconds)
  local found
  C.until_true(function()
    found = { self:stderr():match(pattern) }
    return found[1] ~= nil
  end, seconds or 10)
  return (table.unpack or unpack)(found)
end

-- The address the command printed for the browser: the listener's one-time start address (the
-- authorize URL with --paste).
function Job:url()
  return assert(self:expect("(http://%S+/freshbooks%-login/%x+)"), "no start address:\n" .. self:stderr())
end

-- A browser (curl) with its own cookie jar: what the listener's start address answers (the authorize
-- URL it redirects to, and the cookie that binds the callback to this browser).
-- -> {status, authorize = Location, cookie = "name=value"}
function C.start(sb, url)
  local res = sb:http{ url = url, timeout = 10 }
  local set = res.headers["set-cookie"]
  return { status = res.status, authorize = res.headers.location, body = res.body,
           cookie = type(set) == "string" and set:match("^([^;]+)") or nil }
end

function Job:signal(sig) os.execute(("kill -%s %d 2>/dev/null"):format(sig, self.pid)) end

-- -> exit status, stdout, stderr (the job is killed if it is still running after `seconds`)
function Job:wait(seconds)
  if not C.until_true(function() return C.read(self.rc):match("%d+") end, seconds or 20) then
    self:signal("KILL")
    C.until_true(function() return C.read(self.rc):match("%d+") end, 5)
    error("the command was still running after " .. (seconds or 20) .. " s; stderr:\n" .. self:stderr(), 2)
  end
  return tonumber(C.read(self.rc):match("%d+")), C.read(self.out), self:stderr()
end

---------------------------------------------------------------------------------------------------
-- Real terminals

-- Run on a pseudo-terminal (util-linux `script`): -> exit status, everything the terminal showed.
function World:pty(args, opts)
  local out = self:files()
  local p = io.popen(("timeout -k 2 %d script -q -e -c %s /dev/null </dev/null >%s 2>&1; echo $?"):format(
    (opts and opts.timeout) or 30, q(self:line(args, opts)), q(out)))
  local code = tonumber(p:read("*a"))
  p:close()
  return code, C.read(out)
end

-- A tmux session running the command, to type into like a person. Its own server socket.
local Tmux = {}
Tmux.__index = Tmux

-- opts: vars, after (a command run on the same terminal once the command has ended, e.g. `stty -a`),
-- raw (args is a whole command line, e.g. a shell, run with the world's environment), width, height.
function World:tmux(args, opts)
  opts = opts or {}
  local _, _, _, rc = self:files()
  -- a socket of its own: a server just killed on another may still be going away
  local t = setmetatable({ sock = rc:gsub("%.rc$", ".tmux"), rc = rc }, Tmux)
  local line = opts.raw and ("cd %s && %s %s"):format(q(C.root), self:env(opts.vars), args) or self:line(args, opts)
  local cmd = ("%s; echo $? >%s; %s sleep 60"):format(line, q(rc), opts.after and (opts.after .. ";") or "")
  assert(H.run(("TERM=xterm tmux -S %s new-session -d -x %d -y %d %s"):format(q(t.sock), opts.width or 220,
    opts.height or 50, q(cmd))))
  return t
end

function Tmux:screen()
  local p = io.popen(("tmux -S %s capture-pane -p -J -S -200 2>/dev/null"):format(q(self.sock)))
  local s = p:read("*a")
  p:close()
  return s
end

function Tmux:expect(pattern, seconds)
  local found
  C.until_true(function()
    found = self:screen():match(pattern)
    return found ~= nil
  end, seconds or 10)
  return found
end

function Tmux:type(text)
  os.execute(("tmux -S %s send-keys -t 0 -l %s"):format(q(self.sock), q(text)))
  os.execute(("tmux -S %s send-keys -t 0 Enter"):format(q(self.sock)))
end

-- Whether the pane's terminal echoed at the moment `text` first appeared in its output: a watcher
-- on the pane's output stream asks stty the instant the last byte of `text` passes, faster than
-- anyone could type. Call before the text can appear. -> function() -> true/false (nil: not seen)
function Tmux:echoing_when(text)
  local file = self.rc:gsub("%.rc$", ".echo")
  os.remove(file)
  local watcher = ("export out=%s tty=$(tmux -S %s display -p -t 0 '#{pane_tty}'); exec lua5.4 -e %s"):format(
    q(file), q(self.sock),
    q(([[local want, seen = %q, ""
      repeat
        local c = io.read(1)
        seen = (seen .. (c or "")):sub(-#want)
      until not c or seen == want
      if seen == want then os.execute('stty -a -F "$tty" >"$out" 2>&1') end
      io.read("a")]]):format(text)))
  assert(H.run(("tmux -S %s pipe-pane -O -t 0 %s"):format(q(self.sock), q(watcher))))
  return function()
    if not C.until_true(function() return C.read(file):find("echo", 1, true) end, 10) then return nil end
    local s = C.read(file)
    return s:find("[ ;\n]echo[ ;\n]") ~= nil or s:find("^echo[ ;\n]") ~= nil
  end
end

function Tmux:wait(seconds)
  C.until_true(function() return C.read(self.rc):match("%d+") end, seconds or 20)
  return tonumber(C.read(self.rc):match("%d+"))
end

function Tmux:close() os.execute(("tmux -S %s kill-server 2>/dev/null"):format(q(self.sock))) end

return C
