-- `freshbooks`, the command (bin/freshbooks): connect to FreshBooks in one step, then report, export and
-- call the API. The commands are rows of one table (freshbooks.cli.commands) from which the argument
-- parser (lua-argparse), the help and the shell completion are made; every command gets a context
-- (settings, the session, output, progress) from here and leaves through cli.exit.
-- Exit status: 0 ok, 1 failure, 2 usage, 3 not connected / re-authorization needed, 4 rate limited
-- (130 interrupted, 141 when the reader of the output went away, as a SIGPIPE death would say).
-- Failures are one clear message on stderr; a Lua traceback only for a bug, and only with FB_DEBUG=1.
-- Nothing from the network reaches a terminal unneutralised: messages and notes go through text.clean,
-- and so does all output to a terminal.
local lfs = require "lfs"
local term = require "term"
local errors = require "freshbooks.errors"
local config = require "freshbooks.cli.config"
local text = require "freshbooks.cli.text"

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

-- Ctrl-C (and SIGTERM) are trapped by the C core (core.trap_interrupts): they abort a transfer in
-- flight and are acted on here, where the command can stop cleanly, never inside library code.
function cli.check_interrupt()
  local core = package.loaded["freshbooks.core"]
  if core and core.interrupted() then exit(130, "interrupted") end
end

-- Runtime errors (nil, err) -> the documented status and one readable message (never a secret:
-- tostring(err) carries codes, statuses and FreshBooks' own descriptions, cleaned: they came from the
-- network). A field error that only repeats the message adds nothing and is left out.
local NOT_CONNECTED = { reauth_required = true, unauthorized = true, invalid_grant = true, store_corrupt = true }

function cli.describe_error(err)
  -- "store_corrupt: could not load the stored tokens: store_corrupt: token file ..." says its code once
  local s = text.clean((tostring(err):gsub("^freshbooks: ", ""):gsub("^([%w_]+): (.-): %1: ", "%1: %2: ")))
  for _, f in ipairs(err.errors or {}) do
    local msg = f.message and text.clean(f.message)
    if (f.field or msg) and msg ~= text.clean(err.message or "") then
      s = s .. "\n  " .. (f.field and (text.clean(f.field) .. ": ") or "") .. (msg or "")
    end
  end
  return s
end

local function at(seconds) return os.date("%H:%M:%S", os.time() + math.ceil(seconds)) end

function cli.fail(err, what)
  cli.check_interrupt() -- an aborted transfer or an uncertain refresh after Ctrl-C is the Ctrl-C
  if not errors.is(err) then exit(1, "%s", text.clean(tostring(err))) end
  local s = cli.describe_error(err)
  if what then s = what .. ": " .. s end
  if NOT_CONNECTED[err.code] then
    exit(3, "%s\nnot connected: run `freshbooks login` to connect (again)", s)
  elseif err.code == "rate_limited" then
    exit(4, "%s\nFreshBooks' rate limit was reached: try again %s", s,
      err.retry_after and ("in " .. math.ceil(err.retry_after) .. " s (at " .. at(err.retry_after) .. ")") or "later")
  elseif err.code == "forbidden" and tostring(err.message):lower():find("scope", 1, true) then
    exit(1, "%s\nthe grant lacks a scope this needs: `freshbooks login --force --scopes ...`", s)
  elseif err.code == "forbidden" then
    exit(1, "%s\nFreshBooks refused this user access (a business it does not belong to, or a role without"
      .. " the permission)", s)
  elseif err.code == "refresh_uncertain" then
    exit(1, "%s\ntry again; if FreshBooks then asks for it, run `freshbooks login`", s)
  end
  exit(1, "%s", s)
end

---------------------------------------------------------------------------------------------------
-- The context a command runs with

local Context = {}
Context.__index = Context

-- A line on stderr (cleaned: notes quote what the network sent). A progress line being drawn is
-- ended first.
function Context:note(fmt, ...)
  if self.bar then self.bar.abort() self.bar = nil end
  io.stderr:write("freshbooks: ", text.clean(select("#", ...) > 0 and fmt:format(...) or fmt, true), "\n")
end

-- The profile, its token file and login record, and the settings (flags > environment > login
-- record > config files > defaults).
function Context:settings()
  if self.cached then return self.cached end
  local a, cfg = self.args, self.cfg
  self.profile = cfg.check_profile(a.profile or os.getenv("FB_PROFILE") ~= "" and os.getenv("FB_PROFILE")
    or config.DEFAULT_PROFILE)
  self.tokens = a.tokens or cfg.tokens_path(self.profile)
  self.record_path = config.record_path(self.tokens)
  self.record = cfg.read_record(self.record_path)
  local s = cfg.settings(a, self.profile, self.record)
  if s.ca_file then
    local f = io.open(s.ca_file, "rb")
    if not f then exit(2, "the CA file %s (from %s) cannot be read", s.ca_file, s.source.ca_file) end
    f:close()
  end
  self.cached = s
  return s
end

function Context:tokens_path()
  self:settings()
  return self.tokens
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

-- Waits the retry layer starts are said, with when they end: a rate-limited run is not silent.
function Context:retry_note(event)
  if event.type ~= "retry" or (event.delay or 0) < 1 then return end
  local until_at = os.time() + math.ceil(event.delay)
  if self.waiting_until and math.abs(self.waiting_until - until_at) <= 1 then return end -- a batch's items
  self.waiting_until = until_at
  if event.reason == "rate_limited" then
    self:note("FreshBooks' rate limit: waiting %d s, until %s, then trying again", math.ceil(event.delay),
      os.date("%H:%M:%S", until_at))
  else
    self:note("%s: trying again in %d s (at %s)", event.reason:gsub("^http_", "HTTP "), math.ceil(event.delay),
      os.date("%H:%M:%S", until_at))
  end
end

-- A session over the file store at `path` (or, without one, over `tokens` alone). A bad setting
-- (redirect URI, URLs) is a usage error. The one place the command makes sessions.
function Context:session(s, path, tokens)
  local freshbooks = require "freshbooks"
  local ok, fb = pcall(freshbooks.new, {
    client_id = s.client_id, client_secret = s.client_secret, redirect_uri = s.redirect_uri,
    api_url = s.api_url, auth_url = s.auth_url, cainfo = s.ca_file,
    store = path and freshbooks.store.file(path) or nil, tokens = tokens,
    log = function(event) self:retry_note(event) end,
  })
  if not ok then exit(2, "%s", text.clean(tostring(fb):gsub("^[^:]*:%d+: ", ""):gsub("^freshbooks%.new: ", ""))) end
  return fb
end

-- The session of a command that needs to be connected (exit 3 when there are no tokens).
function Context:connected()
  local path = self:tokens_path()
  if not self.cfg.check_private(path, "the token file") then
    exit(3, "not connected: no tokens at %s; run `freshbooks login%s` first", path,
      self.profile ~= config.DEFAULT_PROFILE and (" --profile " .. self.profile) or "")
  end
  local s = self:credentials(false)
  local r = self.record
  if r and r.client_id and r.client_id ~= s.client_id then
    exit(2, "the tokens at %s were issued to the app with client ID %s, but the client ID in use is %s (from %s):"
      .. " use that app's credentials, or run `freshbooks login` again", path, text.clean(r.client_id),
      text.clean(s.client_id), s.source.client_id or "?")
  end
  return self:session(s, path), path
end

-- Revoke what a logout ends: the access token (a copy of the token file would otherwise work until
-- it expires) and the grant (its refresh token). -> true | nil, err, what_was_done
function Context:revoke(fb)
  fb:authorized() -- the tokens, loaded from the store
  local t = fb:tokens() or {}
  if t.access_token and (not t.expires_at or t.expires_at > os.time()) then
    local done, err = self:session(self:settings(), nil, { access_token = t.access_token }):revoke()
    if not done then return nil, err end
  end
  return fb:revoke()
end

-- Write the login record: `fields` over the current one (fresh: instead of it), with the user and
-- businesses FreshBooks just said.
function Context:save_record(user, businesses, fields, fresh)
  local s = self:settings()
  local r = {}
  if not fresh then
    for k, v in pairs(self.record or {}) do r[k] = v end
    for _, def in ipairs(config.SETTINGS) do
      if def.record and r[def[1]] == nil then r[def[1]] = s[def[1]] end
    end
    r.client_id = r.client_id or s.client_id
  end
  r.user, r.businesses = user, text.array(businesses)
  for k, v in pairs(fields or {}) do r[k] = v end
  self.cfg.make_dir(self.tokens:match("^(.*)/[^/]*$") or ".")
  self.cfg.write_record(self.record_path, r)
  self.record = r
end

-- The business a command works on: --business (fb:find_business), else the profile's default (set by
-- `freshbooks use`), else the user's first.
function Context:business(fb, key)
  local r = self.record
  local saved = not key and r and r.business
  key = key or saved
  if key then
    local m, err = fb:find_business(key)
    if m then return m end
    if err and err.code ~= "not_found" then cli.fail(err) end
    local names, keys = {}, {}
    local list = fb:memberships() or {}
    for _, b in ipairs(list) do
      names[#names + 1] = b.name
      for _, k in ipairs{ b.name, tostring(b.account_id), tostring(b.business_id) } do keys[#keys + 1] = k end
    end
    local guess = text.suggest(key, keys)
    if saved then
      exit(1, "the default business %s is not among this user's businesses any more: `freshbooks use` lists them",
        text.clean(key))
    end
    exit(1, "no business matches '%s'%s", text.clean(key), guess and ("; did you mean '" .. text.clean(guess) .. "'?")
      or (#names > 0 and ("; this user's businesses: " .. text.clean(table.concat(names, ", "))) or ""))
  end
  local list, err = fb:memberships()
  if not list then cli.fail(err) end
  if #list == 0 then exit(1, "this user belongs to no business") end
  if #list > 1 then
    self:note("using %s (account_id %s, business_id %s), the first of %d businesses; `freshbooks use` chooses"
      .. " the default, --business another for one command", list[1].name or "?", tostring(list[1].account_id),
      tostring(list[1].business_id), #list)
  end
  return list[1]
end

-- Output --------------------------------------------------------------------------------------------

-- The pager for output to a terminal: $FB_PAGER, else $PAGER, else less (-FRX: a screenful or less is
-- just printed). "" or cat means none.
local function pager_command()
  local p = os.getenv("FB_PAGER") or os.getenv("PAGER")
  if p == nil then
    if not require("freshbooks.cli.spawn").have("less") then return nil end
    p = "less"
  end
  if p:match("^%s*$") or p:match("^%s*cat%s*$") then return nil end
  return p
end

-- Output to stdout or to a file. A file is written beside its final name and renamed over it at the
-- end, so a failed or interrupted run never leaves a truncated file (nor replaces an older one).
-- On a terminal everything written is cleaned; with opts.utf8 it is valid UTF-8 anywhere (JSON and
-- CSV readers refuse anything else); with opts.pager (or --pager) it goes through the
-- pager, held until commit when opts.pager is "hold" (a progress bar may draw meanwhile).
-- -> out with :write(...) (raises on failure), :commit(); out.file, out.terminal, out.pipe, out.columns
local function write_failed(name, msg, errno)
  if errno == 32 then exit(141) end -- EPIPE: the reader went away (`| head`): stop, quietly
  exit(1, "cannot write %s: %s", name, msg)
end

function Context:output(path, opts)
  opts = opts or {}
  local f, name, tmp = io.stdout, "to stdout", nil
  local out = {}
  if path and path ~= "-" then
    -- Only a regular file (or a new one) is replaced by renaming: never /dev/null, a FIFO or a symlink.
    local kind = lfs.symlinkattributes(path, "mode")
    local msg
    if kind == nil or kind == "file" then
      local core = require "freshbooks.core"
      tmp = path .. "." .. core.hex(core.random_bytes(4)) .. ".part"
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
  if out.terminal then out.columns = require("freshbooks.cli.spawn").columns() end
  local a = self.args
  local paging = out.terminal and f == io.stdout and not a.no_pager and (a.pager or opts.pager) and pager_command()
  local held, pager = paging and opts.pager == "hold" and {}, nil
  local function start_pager()
    pager = require("freshbooks.cli.spawn").popen(paging, "w")
    if not pager then exit(1, "cannot start the pager %s", paging) end
    f, name = pager, "to the pager"
    self.cleanups[#self.cleanups + 1] = function() if pager then pager:close() pager = nil end end
  end
  -- No progress bar over a pager that shows the output as it comes; one while held output waits.
  if paging then out.pipe, out.held = not held, held and true end
  function out.write(o, ...)
    local s = table.concat({ ... })
    if out.terminal then s = text.clean(s, true) elseif opts.utf8 then s = text.utf8(s) end
    if held then held[#held + 1] = s return o end
    if paging and not pager then start_pager() end
    local ok, msg, errno = f:write(s)
    if not ok then
      if pager and errno == 32 then exit(0) end -- the pager was quit before the end: that is fine
      write_failed(name, msg, errno)
    end
    return o
  end
  function out.commit()
    if held then
      local all = table.concat(held)
      held = nil
      if all ~= "" then out.write(out, all) end
    end
    local ok, msg, errno = f:flush()
    if not ok then
      if pager and errno == 32 then exit(0) end
      write_failed(name, msg, errno)
    end
    if pager then
      pager:close() -- waits until the person quits it
      pager = nil
    end
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
function Context:progress(out, label, start)
  if not term.isatty(io.stderr) or out.terminal and not out.held or out.pipe then return nil end
  local bar = require("freshbooks.cli.progress").new(io.stderr, text.clean(label), start)
  local ctx = self
  ctx.bar = bar
  return {
    update = function(...) ctx.bar = bar bar.update(...) end,
    finish = function() bar.finish() ctx.bar = nil end,
    abort = function() bar.abort() ctx.bar = nil end,
  }
end

---------------------------------------------------------------------------------------------------
-- Running

local function version_line()
  local ok, core = pcall(require, "freshbooks.core")
  local v = ok and core.version or "(core not built)"
  return ("freshbooks %s (lua-freshbooks, %s%s)"):format(v, rawget(_G, "jit") and jit.version or _VERSION,
    ok and (", " .. (tostring(core.curl_version):match("^libcurl/[%d.]+") or "libcurl")) or "")
end

local function run(ctx, argv)
  local commands = require "freshbooks.cli.commands"
  -- Completion asks before anything else, and fast: no core, no session.
  if argv[1] == "__complete" then
    return require("freshbooks.cli.complete").candidates(ctx, argv)
  end
  local parser = commands.parser()
  ctx.args = parser:parse(argv)
  local a = ctx.args
  if a.version then
    io.stdout:write(version_line(), "\n")
  elseif not a.command then
    io.stdout:write(commands.help(nil), "\n") -- no command: the overview, as `gh` does
  else
    local loaded, core = pcall(require, "freshbooks.core")
    if not loaded then
      exit(1, "the C core (freshbooks.core) is not built for %s: run `make`%s in the checkout, or install the rock",
        rawget(_G, "jit") and "LuaJIT" or _VERSION, rawget(_G, "jit") and " LUA=luajit" or "")
    end
    -- Before any descriptor is opened: a closed 0, 1 or 2 is filled, so no socket can take its number.
    core.guard_stdio()
    -- The interpreter's own handler raises "interrupted!" in whatever Lua code runs next, where a pcall
    -- in a library (lua-cjson's safe decode) may swallow it and leave half a result: trap it instead.
    core.trap_interrupts()
    ctx.cfg = config.new(exit)
    local row = commands.by_name[a.command]
    require(row.module)[row.run or a.command](ctx)
  end
  local ok, msg, errno = io.stdout:flush()
  if not ok then write_failed("to stdout", msg, errno) end
end

-- cli.main(argv) -> exit status
function cli.main(argv)
  local ctx = setmetatable({ cleanups = {} }, Context)
  local ok, e = xpcall(function() return run(ctx, argv) end, function(e) -- Lua 5.1's xpcall passes no arguments
    if getmetatable(e) == Exit then return e end
    local help = require("freshbooks.cli.commands").is_help(e)
    if help then return help end
    if type(e) == "string" and e:find("interrupted!$") then return { status = 130, message = "interrupted" } end
    if package.loaded["freshbooks.core"] and package.loaded["freshbooks.core"].interrupted() then
      return { status = 130, message = "interrupted" }
    end
    return { status = 1, message = "internal error: " .. tostring(e), trace = debug.traceback("", 2) }
  end)
  if not ok and e.help then -- -h/--help anywhere: the help of that command, on stdout
    local written, msg, errno = io.stdout:write(e.help, "\n")
    if written then written, msg, errno = io.stdout:flush() end
    if written then ok = true else e = { status = errno == 32 and 141 or 1, message = errno ~= 32 and
      ("cannot write to stdout: " .. tostring(msg)) or nil } end
  end
  for i = #ctx.cleanups, 1, -1 do pcall(ctx.cleanups[i]) end
  if ok then return 0 end
  if ctx.bar then ctx.bar.abort() end
  if e.message then io.stderr:write("freshbooks: ", text.clean(e.message, true), "\n") end
  if e.usage then io.stderr:write(e.usage, "\nRun with --help for more.\n") end
  if e.trace and os.getenv("FB_DEBUG") then io.stderr:write(e.trace, "\n") end
  return e.status
end

cli.Exit = Exit
return cli
