-- Where `freshbooks` keeps its files, and the app's credentials.
--   $XDG_CONFIG_HOME/freshbooks/            (default ~/.config/freshbooks/, created 0700)
--     config        JSON, mode 0600: client_id, client_secret, redirect_uri, api_url, auth_url, ca_file
--     tokens.json   the token store (freshbooks.store.file: atomic writes, mode 0600), or --tokens FILE
-- FB_CLIENT_ID / FB_CLIENT_SECRET / FB_REDIRECT_URI win over the file; `login` asks for what is still
-- missing when it runs on a terminal (the secret without echo) and saves what it was told.
local cjson = require "cjson.safe"
local lfs = require "lfs"

local config = {}

config.DEFAULT_REDIRECT_URI = "http://localhost:8976/callback"
config.KEYS = { client_id = true, client_secret = true, redirect_uri = true, api_url = true, auth_url = true,
                ca_file = true }
local ENV = { client_id = "FB_CLIENT_ID", client_secret = "FB_CLIENT_SECRET", redirect_uri = "FB_REDIRECT_URI" }

-- `exit(status, message)` is the command's way out (freshbooks.cli).
function config.new(exit, getenv)
  local self = { exit = exit, getenv = getenv or os.getenv }

  function self.dir()
    local base = self.getenv("XDG_CONFIG_HOME")
    if not base or base == "" then
      local home = self.getenv("HOME")
      if not home or home == "" then exit(2, "set HOME or XDG_CONFIG_HOME: the configuration lives there") end
      base = home .. "/.config"
    end
    return base .. "/freshbooks"
  end

  function self.path() return self.dir() .. "/config" end
  function self.default_tokens() return self.dir() .. "/tokens.json" end

  -- Our own directory, private (its parents, e.g. ~/.config, as the system makes them).
  function self.make_dir()
    local dir = self.dir()
    if lfs.attributes(dir, "mode") == "directory" then return dir end
    local ok = os.execute("mkdir -p -m 700 '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
    if (ok ~= true and ok ~= 0) or lfs.attributes(dir, "mode") ~= "directory" then
      exit(1, "cannot create the directory %s", dir)
    end
    return dir
  end

  -- Files holding secrets must be ours alone: refuse one that others can read or write (like ssh).
  -- -> true when the file exists, false when it does not.
  function self.check_private(path, what)
    local perms = lfs.attributes(path, "permissions")
    if not perms then return false end
    if lfs.attributes(path, "mode") ~= "file" then exit(1, "%s %s is not a regular file", what, path) end
    if perms:sub(4) ~= "------" then
      exit(1, "%s %s can be read or changed by other users (mode %s): it holds secrets; run chmod 600 %s",
        what, path, perms, path)
    end
    return true
  end

  -- The config file's table ({} when there is none). Unknown keys are refused: a typo would otherwise
  -- silently send requests to the default service.
  function self.load()
    local path = self.path()
    if not self.check_private(path, "the configuration file") then return {} end
    local f, msg = io.open(path, "rb")
    if not f then exit(1, "cannot read %s: %s", path, msg) end
    local text = f:read(65537) or "" -- bounded, like the token file
    f:close()
    if #text > 65536 then exit(1, "%s is over 64 KiB: not a configuration file", path) end
    local t, err = cjson.decode(text)
    if type(t) ~= "table" then exit(1, "%s is not a JSON object (%s)", path, tostring(err or "not an object")) end
    for k, v in pairs(t) do
      if not config.KEYS[k] then exit(1, "%s: unknown key %q", path, tostring(k)) end
      if type(v) ~= "string" then exit(1, "%s: %s must be a string", path, k) end
    end
    return t
  end

  -- Merge `fields` into the config file (atomic, mode 0600).
  function self.save(fields)
    local t = self.load()
    for k, v in pairs(fields) do t[k] = v end
    self.make_dir()
    local ok, err = require("freshbooks.core").fs.write_atomic(self.path(), assert(cjson.encode(t)), 384)
    if not ok then exit(1, "cannot save %s: %s", self.path(), err.message) end
    return self.path()
  end

  -- Settings from the command line, the environment, then the file. -> table (missing ones nil)
  function self.settings(args)
    local file = self.load()
    local s = {}
    for k in pairs(config.KEYS) do
      local env = ENV[k] and self.getenv(ENV[k])
      s[k] = args[k] or (env ~= "" and env) or file[k]
    end
    return s
  end
  return self
end

-- Terminal prompts ------------------------------------------------------------------------------

-- On a terminal the shell reads the line: it can turn echo off for a secret and, whatever happens
-- (Ctrl-C included, which LuaJIT only notices after Enter), put the terminal back as it was.
local READ = [[IFS= read -r line && printf 'ok:%s' "$line"]]
local READ_SECRET = [[old=$(stty -g 2>/dev/null); trap 'stty "$old" 2>/dev/null; exit 130' INT TERM HUP
stty -echo 2>/dev/null; IFS= read -r line && printf 'ok:%s' "$line"; stty "$old" 2>/dev/null]]

local function trim(s) return s and (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- Read one line (nil at end of input); `secret`: without echo.
function config.ask(prompt, secret)
  io.stderr:write(prompt)
  io.stderr:flush()
  if not require("term").isatty(io.stdin) then
    local line = io.read("*l")
    io.stderr:write("\n")
    return trim(line)
  end
  local p = io.popen(secret and READ_SECRET or READ, "r")
  local out = p:read("*a") or ""
  p:close()
  local core = package.loaded["freshbooks.core"]
  if core and core.signal.interrupted() then error("interrupted!", 0) end -- Ctrl-C at the prompt
  local line = out:match("^ok:(.*)$")
  if secret or not line then io.stderr:write("\n") end -- the Enter the terminal did not show
  return trim(line)
end

return config
