-- Where `freshbooks` keeps its files, and the settings each command runs with.
--   $XDG_CONFIG_HOME/freshbooks/            (default ~/.config/freshbooks/, created 0700)
--     config              JSON, mode 0600: client_id, client_secret, redirect_uri, api_url, auth_url, ca_file
--     tokens.json         the default profile's tokens (freshbooks.store.file: atomic, mode 0600)
--     tokens.login.json   what that login was: its endpoints, CA file, app, user, businesses, default business
--     profiles/NAME/      another login side by side (--profile NAME, FB_PROFILE): the same three files,
--                         its config over the shared one
-- A setting comes from the first of: its flag, its environment variable, the login record (the
-- endpoints, CA file and redirect URI the tokens were issued through), the profile's config file, the
-- shared config file, the default. `login` asks on a terminal for credentials still missing.
local cjson = require "cjson.safe"
local lfs = require "lfs"
local spawn = require "freshbooks.cli.spawn"

local config = {}

config.DEFAULT_REDIRECT_URI = "http://localhost:8976/callback"
config.DEFAULT_PROFILE = "default"
config.DEFAULT_API_URL = "https://api.freshbooks.com"

-- The settings, in the order messages list them: flag (the argument's name), environment variable,
-- and whether the login record keeps it.
config.SETTINGS = {
  { "client_id", env = "FB_CLIENT_ID" },
  { "client_secret", env = "FB_CLIENT_SECRET" },
  { "redirect_uri", env = "FB_REDIRECT_URI", record = true },
  { "api_url", flag = "--api-url", env = "FB_API_URL", record = true },
  { "auth_url", flag = "--auth-url", env = "FB_AUTH_URL", record = true },
  { "ca_file", flag = "--ca-file", env = "FB_CA_FILE", record = true },
}
config.KEYS = {}
for _, s in ipairs(config.SETTINGS) do config.KEYS[s[1]] = s end

-- `exit(status, fmt, ...)` is the command's way out (freshbooks.cli).
function config.new(exit, getenv)
  local self = { exit = exit, getenv = getenv or os.getenv }

  local function env(name)
    local v = self.getenv(name)
    if v ~= nil and v ~= "" then return v end
  end

  function self.dir()
    local base = env("XDG_CONFIG_HOME")
    if not base then
      local home = env("HOME")
      if not home then exit(2, "set HOME or XDG_CONFIG_HOME: the configuration lives there") end
      base = home .. "/.config"
    end
    return base .. "/freshbooks"
  end

  function self.path() return self.dir() .. "/config" end

  -- Profiles ------------------------------------------------------------------------------------
  function self.check_profile(name)
    if type(name) ~= "string" or #name > 64 or not name:match("^[%w][%w_.-]*$") then
      exit(2, "a profile name is letters, digits, '_', '.' and '-' (at most 64), not '%s'", tostring(name))
    end
    return name
  end

  function self.profile_dir(name)
    if name == config.DEFAULT_PROFILE then return self.dir() end
    return self.dir() .. "/profiles/" .. name
  end

  -- Every profile with a token file or a login record: {name, dir}, the default first.
  function self.profiles()
    local list = { config.DEFAULT_PROFILE }
    local dir = self.dir() .. "/profiles"
    if lfs.attributes(dir, "mode") == "directory" then
      local names = {}
      for n in lfs.dir(dir) do
        if n ~= "." and n ~= ".." and n ~= config.DEFAULT_PROFILE and n:match("^[%w][%w_.-]*$")
          and lfs.attributes(dir .. "/" .. n, "mode") == "directory" then names[#names + 1] = n end
      end
      table.sort(names)
      for _, n in ipairs(names) do list[#list + 1] = n end
    end
    return list
  end

  function self.tokens_path(profile) return self.profile_dir(profile) .. "/tokens.json" end

  -- A directory of ours, private (its parents, e.g. ~/.config, as the system makes them).
  function self.make_dir(dir)
    dir = dir or self.dir()
    if lfs.attributes(dir, "mode") == "directory" then return dir end
    if not spawn.run("mkdir -p -m 700 " .. spawn.quote(dir) .. " 2>/dev/null")
      or lfs.attributes(dir, "mode") ~= "directory" then
      exit(1, "cannot create the directory %s", dir)
    end
    return dir
  end

  -- Files holding secrets must be ours alone: refuse one that others can read or write (like ssh).
  -- -> true when the file exists, false when it does not.
  function self.check_private(path, what, status)
    local perms = lfs.attributes(path, "permissions")
    if not perms then return false end
    if lfs.attributes(path, "mode") ~= "file" then exit(status or 1, "%s %s is not a regular file", what, path) end
    if perms:sub(4) ~= "------" then
      exit(status or 1, "%s %s can be read or changed by other users (mode %s): it holds secrets; run chmod 600 %s",
        what, path, perms, path)
    end
    return true
  end

  -- A private JSON object of ours ({} when there is none). A file that is not one is a setting gone
  -- wrong (status 2), named with its path.
  local function read_json(path, what)
    if not self.check_private(path, what, 2) then return nil end
    local f, msg = io.open(path, "rb")
    if not f then exit(2, "cannot read %s: %s", path, msg) end
    local data = f:read(65537) or "" -- bounded, like the token file
    f:close()
    if #data > 65536 then exit(2, "%s is over 64 KiB: not %s", path, what) end
    -- The core's decoder once a command has loaded it: ids stay integers (lua-cjson reads 1001 as
    -- 1001.0 under Lua 5.3+); the completion, which never loads it, needs only names.
    local core = package.loaded["freshbooks.core"]
    local t = core and core.json.decode(data) or cjson.decode(data)
    if type(t) ~= "table" or (next(t) ~= nil and t[1] ~= nil) then exit(2, "%s is not a JSON object", path) end
    return t
  end

  local function write_json(path, t)
    local ok, err = require("freshbooks.core").fs.write_atomic(path, require("freshbooks.cli.text").json(t), 384)
    if not ok then exit(1, "cannot save %s: %s", path, err.message) end
    return path
  end

  -- A config file's table. Unknown keys are refused: a typo would otherwise silently send requests
  -- to the default service.
  function self.load(path)
    local t = read_json(path, "the configuration file")
    if not t then return {} end
    for k, v in pairs(t) do
      if not config.KEYS[k] then exit(2, "%s: unknown key %q", path, tostring(k)) end
      if type(v) ~= "string" then exit(2, "%s: %s must be a string", path, k) end
    end
    return t
  end

  -- Merge `fields` into the profile's config file (atomic, mode 0600).
  function self.save(profile, fields)
    local dir = self.make_dir(self.profile_dir(profile))
    local path = dir .. "/config"
    local t = self.load(path)
    for k, v in pairs(fields) do t[k] = v end
    return write_json(path, t)
  end

  -- The login record: {api_url, auth_url, ca_file, redirect_uri, client_id, user = {identity_id, name,
  -- email}, businesses = {{name, account_id, business_id, business_uuid}}, business}, or nil.
  function self.read_record(path)
    local t = read_json(path, "the login record")
    if t == nil then return nil end
    for k in pairs(t) do
      if not (config.KEYS[k] or k == "client_id" or k == "user" or k == "businesses" or k == "business") then
        exit(2, "%s: unknown key %q (it is written by freshbooks login)", path, tostring(k))
      end
    end
    return t
  end

  function self.write_record(path, t) return write_json(path, t) end

  -- Settings ------------------------------------------------------------------------------------

  -- -> settings {key = value} (missing ones nil), with .source[key] saying where each came from.
  function self.settings(args, profile, record)
    local files = {}
    if profile ~= config.DEFAULT_PROFILE then
      local p = self.profile_dir(profile) .. "/config"
      files[1] = { p, self.load(p) }
    end
    files[#files + 1] = { self.path(), self.load(self.path()) }
    local s, source = {}, {}
    for _, def in ipairs(config.SETTINGS) do
      local k = def[1]
      if def.flag and args[k] then s[k], source[k] = args[k], def.flag
      elseif env(def.env) then s[k], source[k] = env(def.env), def.env
      elseif def.record and record and type(record[k]) == "string" then s[k], source[k] = record[k], "the login record"
      else
        for _, f in ipairs(files) do
          if f[2][k] then s[k], source[k] = f[2][k], f[1] break end
        end
      end
    end
    s.source = source
    return s
  end
  return self
end

-- The login record lives beside its token file, named after it (tokens.json: tokens.login.json).
function config.record_path(tokens)
  return (tokens:gsub("%.json$", "")) .. ".login.json"
end

-- Terminal prompts ------------------------------------------------------------------------------

-- On a terminal the shell reads the line: it can turn echo off for a secret and, whatever happens
-- (Ctrl-C included, which LuaJIT only notices after Enter), put the terminal back as it was. It
-- writes the prompt itself, after echo is off: a person (or a program) answering the prompt the
-- moment it appears never has the secret shown.
local READ = [[printf '%%s' %s >&2; IFS= read -r line && printf 'ok:%%s' "$line"]]
local READ_SECRET = [[old=$(stty -g 2>/dev/null); trap 'stty "$old" 2>/dev/null; exit 130' INT TERM HUP
stty -echo 2>/dev/null; printf '%%s' %s >&2; IFS= read -r line && printf 'ok:%%s' "$line"; stty "$old" 2>/dev/null]]

local function trim(s) return s and (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- Read one line (nil at end of input); `secret`: without echo.
function config.ask(prompt, secret)
  if not require("term").isatty(io.stdin) then
    io.stderr:write(prompt)
    io.stderr:flush()
    local line = io.read("*l")
    io.stderr:write("\n")
    return trim(line)
  end
  io.stderr:flush()
  local p = spawn.popen((secret and READ_SECRET or READ):format(spawn.quote(prompt)), "r")
  local out = p:read("*a") or ""
  p:close()
  local line = out:match("^ok:(.*)$")
  -- The Enter the terminal did not show (no echo), or the Ctrl-C that ended the line: the next
  -- message starts on a line of its own.
  if secret or not line then io.stderr:write("\n") end
  local core = package.loaded["freshbooks.core"]
  if core and core.signal.interrupted() then error("interrupted!", 0) end -- Ctrl-C at the prompt
  return trim(line)
end

-- A yes/no question on the terminal (default no). -> true for y or yes
function config.confirm(prompt)
  local answer = config.ask(prompt .. " [y/N] ")
  return answer ~= nil and (answer:lower() == "y" or answer:lower() == "yes")
end

return config
