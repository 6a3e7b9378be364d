-- `freshbooks`, the command (bin/freshbooks): connect to FreshBooks in one step, then report, export and
-- call the API. Arguments, help and usage errors come from lua-argparse; every command gets a context
-- (settings, the session, output, progress) from here and leaves through cli.exit.
-- Exit status: 0 ok, 1 failure, 2 usage, 3 not connected / re-authorization needed, 4 rate limited
-- (130 interrupted, 141 when the reader of the output went away, as a SIGPIPE death would say).
-- Failures are one clear message on stderr; a Lua traceback only for a bug, and only with FB_DEBUG=1.
local argparse = require "argparse"
local lfs = require "lfs"
local term = require "term"
local errors = require "freshbooks.errors"
local config = require "freshbooks.cli.config"

local cli = {}

-- Commands raise this (through cli.exit) to end with a status and a message.
local Exit = {}

function cli.exit(status, fmt, ...)
  local message = fmt
  if fmt and select("#", ...) > 0 then
    local args = { ... }
    for i = 1, select("#", ...) do if type(args[i]) ~= "number" then args[i] = tostring(args[i]) end end
    message = fmt:format((table.unpack or unpack)(args, 1, select("#", ...)))
  end
  error(setmetatable({ status = status, message = message }, Exit), 0)
end
local exit = cli.exit

-- Runtime errors (nil, err) -> the documented status and one readable message (never a secret:
-- tostring(err) carries codes, statuses and FreshBooks' own descriptions).
local NOT_CONNECTED = { reauth_required = true, unauthorized = true, invalid_grant = true, store_corrupt = true }

-- Ctrl-C (and SIGTERM) are trapped by the C core (core.signal.trap): they abort a transfer in
-- flight and are acted on here, where the command can stop cleanly, never inside library code.
function cli.check_interrupt()
  local core = package.loaded["freshbooks.core"]
  if core and core.signal.interrupted() then exit(130, "interrupted") end
end

function cli.fail(err, what)
  cli.check_interrupt() -- an aborted transfer or an uncertain refresh after Ctrl-C is the Ctrl-C
  if not errors.is(err) then exit(1, "%s", err) end
  local text = tostring(err):gsub("^freshbooks: ", "")
  for _, f in ipairs(err.errors or {}) do
    if f.field or f.message then text = text .. "\n  " .. (f.field and (f.field .. ": ") or "") .. (f.message or "") end
  end
  if what then text = what .. ": " .. text end
  if NOT_CONNECTED[err.code] then
    exit(3, "%s\nnot connected: run `freshbooks login` to connect (again)", text)
  elseif err.code == "rate_limited" then
    exit(4, "%s\nFreshBooks' rate limit was reached: try again %s", text,
      err.retry_after and ("in " .. math.ceil(err.retry_after) .. " s") or "later")
  elseif err.code == "forbidden" then
    exit(1, "%s\nthe grant may lack a scope this needs: `freshbooks login --scopes ...`", text)
  elseif err.code == "refresh_uncertain" then
    exit(1, "%s\ntry again; if FreshBooks then asks for it, run `freshbooks login`", text)
  end
  exit(1, "%s", text)
end

---------------------------------------------------------------------------------------------------
-- The context a command runs with

local Context = {}
Context.__index = Context

function Context.note(_, fmt, ...)
  io.stderr:write("freshbooks: ", select("#", ...) > 0 and fmt:format(...) or fmt, "\n")
end

function Context:settings()
  if not self.cached then
    self.cached = self.cfg.settings(self.args)
    local ca = self.cached.ca_file
    if ca then
      local f = io.open(ca, "rb")
      if not f then exit(2, "the CA file %s cannot be read", ca) end
      f:close()
    end
  end
  return self.cached
end

function Context:tokens_path()
  return self.args.tokens or self.cfg.default_tokens()
end

local CREDENTIALS = {
  { "client_id", "client ID", "Client ID", "FB_CLIENT_ID" },
  { "client_secret", "client secret", "Client secret (not shown as you type)", "FB_CLIENT_SECRET", secret = true },
  { "redirect_uri", "redirect URI", "Redirect URI", "FB_REDIRECT_URI", default = config.DEFAULT_REDIRECT_URI },
}

-- The app's credentials. With `ask`, what is missing is asked for on a terminal.
-- -> settings, {key = value} of what was typed
function Context:credentials(ask)
  local s, typed = self:settings(), {}
  local interactive = ask and term.isatty(io.stdin)
  local hinted = false
  for _, c in ipairs(CREDENTIALS) do
    local key, what, label, env = c[1], c[2], c[3], c[4]
    if not s[key] then
      if interactive then
        if not hinted then
          io.stderr:write("Your app's credentials are on https://my.freshbooks.com/#/developer (App Settings).\n")
          hinted = true
        end
        local v = config.ask(label .. (c.default and (" [" .. c.default .. "]") or "") .. ": ", c.secret)
        if v == "" then v = c.default end
        if not v then exit(2, "no %s given", what) end
        s[key], typed[key] = v, v
      elseif c.default then
        s[key] = c.default
      else
        exit(2, "no %s: set %s, or put \"%s\" in %s%s", what, env, key,
          self.cfg.path(), ask and " (or run freshbooks login on a terminal to be asked)" or "")
      end
    end
  end
  return s, typed
end

-- A session over the file store at `path`. A bad setting (redirect URI, URLs) is a usage error.
function Context.session(_, s, path)
  local freshbooks = require "freshbooks"
  -- (named "the settings" in the message; level 2 is pcall's, so no position either)
  local ok, fb = pcall(require("freshbooks.session").new, {
    client_id = s.client_id, client_secret = s.client_secret, redirect_uri = s.redirect_uri,
    api_url = s.api_url, auth_url = s.auth_url, cainfo = s.ca_file, store = freshbooks.store.file(path),
  }, "the settings", 2)
  if not ok then exit(2, "%s", tostring(fb)) end
  return fb
end

-- The session of a command that needs to be connected (exit 3 when there are no tokens).
function Context:connected()
  local path = self:tokens_path()
  if not self.cfg.check_private(path, "the token file") then
    exit(3, "not connected: no tokens at %s; run `freshbooks login` first", path)
  end
  return self:session(self:credentials(false), path), path
end

-- The business a command works on: --business (fb:find_business), else the user's first.
function Context:business(fb, key)
  if key then
    local m, err = fb:find_business(key)
    if not m then cli.fail(err) end
    return m
  end
  local list, err = fb:memberships()
  if not list then cli.fail(err) end
  if #list == 0 then exit(1, "this user belongs to no business") end
  if #list > 1 then
    self:note("using %s (account_id %s, business_id %s), the first of %d businesses; --business picks another",
      list[1].name or "?", tostring(list[1].account_id), tostring(list[1].business_id), #list)
  end
  return list[1]
end

-- Output to stdout or to a file. A file is written beside its final name and renamed over it at the
-- end, so a failed or interrupted run never leaves a truncated file (nor replaces an older one).
-- -> out with :write(...) (raises on failure), :commit(); out.file, out.terminal, out.pipe
local function write_failed(name, msg, errno)
  if errno == 32 then exit(141) end -- EPIPE: the reader went away (`| head`): stop, quietly
  exit(1, "cannot write %s: %s", name, msg)
end

function Context:output(path)
  local f, name, tmp = io.stdout, "to stdout", nil
  local out = {}
  if path and path ~= "-" then
    -- Only a regular file (or a new one) is replaced by renaming: never /dev/null, a FIFO or a symlink.
    local kind = lfs.symlinkattributes(path, "mode")
    local msg
    if kind == nil or kind == "file" then
      local core = require "freshbooks.core"
      tmp = path .. "." .. core.codec.hex(core.crypto.random_bytes(4)) .. ".part"
      f, msg = io.open(tmp, "wb")
      -- commit closes f before its rename: a failed rename must still remove the temp file
      if f then
        self.cleanups[#self.cleanups + 1] = function()
          if io.type(f) == "file" then f:close() end
          os.remove(tmp)
        end
      end
    else
      f, msg = io.open(path, "wb")
    end
    if not f then exit(1, "cannot write %s: %s", path, msg) end
    name, out.file = path, path
  end
  -- Where the data really goes: -o /dev/stdout or /dev/tty is the pipe or the terminal too.
  if not tmp then
    out.terminal = term.isatty(f)
    out.pipe = lfs.attributes(f == io.stdout and "/dev/stdout" or path, "mode") == "named pipe"
  end
  function out.write(o, ...)
    local ok, msg, errno = f:write(...)
    if not ok then write_failed(name, msg, errno) end
    return o
  end
  function out.commit()
    local ok, msg, errno = f:flush()
    if not ok then write_failed(name, msg, errno) end
    if tmp then
      f:close()
      local renamed, rmsg = os.rename(tmp, path)
      if not renamed then exit(1, "cannot write %s: %s", path, rmsg) end
      table.remove(self.cleanups)
    end
  end
  return out
end

-- A progress bar on stderr when it is a terminal and the data goes neither to it nor into a pipe.
function Context.progress(_, out, label, start)
  if not term.isatty(io.stderr) or out.terminal or out.pipe then return nil end
  return require("freshbooks.cli.progress").new(io.stderr, label, start)
end

---------------------------------------------------------------------------------------------------
-- Arguments

local function whole(min, max, what)
  return function(s)
    local n = tonumber(s)
    if n and n == math.floor(n) and n >= min and n <= max then return n end
    return nil, ("%s must be a whole number from %d to %d"):format(what, min, max)
  end
end

local EPILOG = [[
Exit status: 0 ok, 1 failure, 2 usage, 3 not connected (run `freshbooks login`), 4 rate limited.
Credentials: FB_CLIENT_ID, FB_CLIENT_SECRET, FB_REDIRECT_URI, else $XDG_CONFIG_HOME/freshbooks/config.]]

function cli.parser()
  local p = argparse("freshbooks",
    "FreshBooks from the command line: connect once, then report, export and call the API.")
    :command_target("command"):epilog(EPILOG):help_max_width(100)
  p:option("--tokens", "Token file (default: $XDG_CONFIG_HOME/freshbooks/tokens.json, mode 0600).")
    :argname("<file>")
  p:option("--api-url", "API base URL (default https://api.freshbooks.com; a sandbox's while developing).")
    :argname("<url>")
  p:option("--auth-url", "Authorization page base URL (default https://auth.freshbooks.com).")
    :argname("<url>")
  p:option("--ca-file", "CA bundle for TLS (a sandbox's throwaway CA).")
    :argname("<file>")

  local login = p:command("login")
    :summary("Connect to FreshBooks: allow access in the browser, save the tokens.")
    :description("Connect to FreshBooks. With a loopback redirect URI (http://localhost:PORT/...) it listens "
      .. "there for the browser's return; with an https one, --paste asks for the address the browser "
      .. "landed on. Missing credentials are asked for on a terminal and saved to the config file.")
  login:option("--scopes", "Scopes to ask for, space or comma separated (default: the app's).")
    :count("*"):argname("<scopes>")
  login:flag("--no-browser", "Only print the address to open; do not start a browser.")
  login:flag("--paste", "Paste the address the browser lands on instead of listening for it.")
  login:option("--port", "Listen on this port: the redirect URI with it must be registered too.")
    :convert(whole(1, 65535, "--port")):argname("<n>")
  login:option("--timeout", "Seconds to wait for the browser.")
    :convert(whole(1, 86400, "--timeout")):default("300"):argname("<s>")

  p:command("status", "Who is connected: user, businesses, scopes, token expiry, where tokens live.")
  p:command("logout", "Revoke the grant at FreshBooks and remove the stored tokens.")

  local report = p:command("report", "The billing report: outstanding invoices by client, aged.")
  report:option("--as-of", "Aging reference date, YYYY-MM-DD (default: today)."):argname("<date>")
  report:option("--business", "Only this business (name, business_id or account_id)."):argname("<name|id>")
  report:option("--format", "Output format."):choices{ "table", "csv", "json" }:default("table")
  report:option("--parallel", "Invoice pages fetched at once.")
    :convert(whole(1, 32, "--parallel")):default("4"):argname("<n>")

  local export = p:command("export", "Stream every record of a list resource as JSON lines or CSV.")
  export:argument("resource", "A list resource of the catalogue: invoices, clients, projects, ...")
  export:option("--business", "The business (name, business_id or account_id; default: the first).")
    :argname("<name|id>")
  export:option("--search", "A FreshBooks filter, e.g. customerid=42 or date_min=2025-01-01 (repeatable).")
    :count("*"):argname("<key=value>")
  export:option("--include", "Include related data, e.g. lines (repeatable)."):count("*"):argname("<name>")
  export:option("--sort", "Sort field; a leading - sorts descending (write --sort=-field)."):argname("<field>")
  export:option("--format", "Output format."):choices{ "jsonl", "csv" }:default("jsonl")
  export:option("--parallel", "Pages fetched at once.")
    :convert(whole(1, 32, "--parallel")):default("4"):argname("<n>")
  export:option("-o --output", "Write to this file (replaced only when the export is complete).")
    :argname("<file>")

  local api = p:command("api")
    :summary("One authenticated request to any API path; prints the JSON answer.")
    :description("One authenticated request (refreshed automatically), like `gh api`. {account_id}, "
      .. "{business_id} and {business_uuid} in PATH are replaced with those of --business (default: the first "
      .. "business).")
  api:argument("method", "GET, POST, PUT, PATCH or DELETE.")
  api:argument("path", "Path under the API URL, e.g. /auth/api/v1/users/me.")
  api:option("--query", "A query parameter key=value (repeatable)."):count("*"):argname("<key=value>")
  api:option("--data", "Request body: JSON text, @file, or @- for stdin."):argname("<json|@file>")
  api:option("--business", "The business for {account_id}/{business_id}/{business_uuid}."):argname("<name|id>")

  -- Usage errors leave through cli.exit (status 2) with the usage of the command at fault.
  p.error = function(parser, msg)
    error(setmetatable({ status = 2, message = msg, usage = parser:get_usage() }, Exit), 0)
  end
  return p
end

local COMMANDS = {
  login = "freshbooks.cli.login", logout = "freshbooks.cli.commands", status = "freshbooks.cli.commands",
  report = "freshbooks.cli.commands", api = "freshbooks.cli.commands", export = "freshbooks.cli.export",
}

local function run(ctx, argv)
  ctx.args = cli.parser():parse(argv)
  local loaded, core = pcall(require, "freshbooks.core")
  if not loaded then
    exit(1, "the C core (freshbooks.core) is not built for %s: run `make`%s in the checkout, or install the rock",
      rawget(_G, "jit") and "LuaJIT" or _VERSION, rawget(_G, "jit") and " LUA=luajit" or "")
  end
  -- The interpreter's own handler raises "interrupted!" in whatever Lua code runs next, where a pcall
  -- in a library (lua-cjson's safe decode) may swallow it and leave half a result: trap it instead.
  core.signal.trap()
  ctx.cfg = config.new(exit)
  require(COMMANDS[ctx.args.command])[ctx.args.command](ctx)
  local ok, msg, errno = io.stdout:flush()
  if not ok then write_failed("to stdout", msg, errno) end
end

-- cli.main(argv) -> exit status
function cli.main(argv)
  local ctx = setmetatable({ cleanups = {} }, Context)
  local ok, e = xpcall(function() return run(ctx, argv) end, function(e) -- Lua 5.1's xpcall passes no arguments
    if getmetatable(e) == Exit then return e end
    if type(e) == "string" and e:find("interrupted!$") then return { status = 130, message = "interrupted" } end
    if package.loaded["freshbooks.core"] and package.loaded["freshbooks.core"].interrupted() then
      return { status = 130, message = "interrupted" }
    end
    return { status = 1, message = "internal error: " .. tostring(e), trace = debug.traceback("", 2) }
  end)
  for i = #ctx.cleanups, 1, -1 do pcall(ctx.cleanups[i]) end
  if ok then return 0 end
  if e.message then io.stderr:write("freshbooks: ", e.message, "\n") end
  if e.usage then io.stderr:write(e.usage, "\nRun with --help for more.\n") end
  if e.trace and os.getenv("FB_DEBUG") then io.stderr:write(e.trace, "\n") end
  return e.status
end

return cli
