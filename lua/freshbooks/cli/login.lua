-- `freshbooks login`: the OAuth authorization-code flow from a terminal. With a loopback redirect URI
-- the command listens there (freshbooks.cli.loopback) for the browser's return; with --paste the user
-- pastes the address the browser landed on. Either way the callback's state is checked before the code
-- is exchanged, and the tokens go through the session's save (the file store: atomic, mode 0600).
--
-- No secret of the login (the state, the start address) is ever on a command line, where every user of
-- the machine can read it (/proc/PID/cmdline): the browser is given a private file (0600, in a 0700
-- directory) that sends it on, and the environment it inherits holds no client secret.
local core = require "freshbooks.core"
local cli = require "freshbooks.cli"
local account = require "freshbooks.cli.account"
local config = require "freshbooks.cli.config"
local spawn = require "freshbooks.cli.spawn"
local text = require "freshbooks.cli.text"

local login = {}
local exit = cli.exit
local q = spawn.quote

-- A private page that sends the browser to `url`: -> its file:// address.
local function launch_page(ctx, url)
  local base = os.getenv("XDG_RUNTIME_DIR")
  if not base or base == "" or not require("lfs").attributes(base, "mode") then base = os.getenv("TMPDIR") end
  if not base or base == "" then base = "/tmp" end
  local dir = spawn.line("mktemp -d " .. q(base .. "/freshbooks-login.XXXXXXXX") .. " 2>/dev/null")
  if not dir or dir == "" then return nil end
  ctx.cleanups[#ctx.cleanups + 1] = function() os.remove(dir .. "/login.html") os.remove(dir) end
  local href = url:gsub("&", "&amp;"):gsub('"', "&quot;")
  local page = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">\n'
    .. '<meta http-equiv="refresh" content="0;url=%s">\n<title>freshbooks login</title></head>\n'
    .. '<body><p><a href="%s">Continue to FreshBooks</a></p></body></html>\n'):format(href, href)
  if not core.write_file_atomic(dir .. "/login.html", page, 384) then return nil end
  return "file://" .. dir .. "/login.html"
end

-- $BROWSER (first entry; %s is the address), else open on macOS, else xdg-open when there is a display.
-- Started in the background with its output discarded: a slow or missing browser never holds us up.
local function open_browser(ctx, url)
  local cmd = os.getenv("BROWSER")
  cmd = cmd and cmd:match("^([^:]+)")
  if not cmd then
    local os_name = spawn.line("uname -s 2>/dev/null")
    if os_name == "Darwin" and spawn.have("open") then cmd = "open"
    elseif (os.getenv("DISPLAY") or os.getenv("WAYLAND_DISPLAY")) and spawn.have("xdg-open") then cmd = "xdg-open" end
  end
  if not cmd then return nil end
  local page = launch_page(ctx, url)
  if not page then return nil end
  local line = cmd:find("%s", 1, true) and cmd:gsub("%%s", function() return q(page) end) or (cmd .. " " .. q(page))
  spawn.run("unset FB_CLIENT_SECRET; (" .. line .. ") >/dev/null 2>&1 </dev/null &")
  return cmd
end

-- What went wrong, for the terminal and for the browser page.
local function explain(err)
  local c = err.code
  if c == "state_mismatch" then
    return "the answer's state does not match this login (an old browser tab, or a request that did not come"
      .. " from FreshBooks' page); nothing was saved"
  elseif c == "access_denied" then
    return "access was not allowed (access_denied: " .. text.clean(err.message) .. ")"
  elseif c == "invalid_callback" then
    return "the answer carries no authorization code"
  elseif c == "invalid_grant" then
    return "FreshBooks refused the authorization code (invalid_grant: " .. text.clean(err.message)
      .. "); codes are single use and last 5 minutes"
  elseif c == "invalid_client" then
    return "FreshBooks refused the app's credentials (invalid_client): check the client ID and secret"
  end
  return cli.describe_error(err)
end

local function failed(err)
  if err.code == "rate_limited" then cli.fail(err, "login failed") end
  exit(1, "login failed: %s\nrun `freshbooks login` to try again", explain(err))
end

-- Ask FreshBooks, before any browser, whether it knows the app: a made-up code is refused as
-- invalid_grant when the client ID and secret are right, as invalid_client when they are not (the
-- authorize page would only show an error in the browser, and the command would wait its timeout).
local function check_client(fb, s)
  local _, err = fb:exchange("freshbooks-cli-check-" .. core.hex(core.random_bytes(8)))
  if not err then return end
  if err.code == "invalid_client" or err.code == "unauthorized_client" then
    exit(1, "FreshBooks does not accept the app's client ID and secret (%s): check client ID %s (from %s) and the"
      .. " secret (from %s) against the app's page, https://my.freshbooks.com/#/developer", err.code,
      text.clean(s.client_id), s.source.client_id or "the prompt", s.source.client_secret or "the prompt")
  elseif err.code == "rate_limited" then
    cli.fail(err, "login failed")
  elseif err.code ~= "invalid_grant" and err.code ~= "invalid_request" and not err.status then
    cli.fail(err, "cannot reach FreshBooks") -- the network: the browser would not help
  end
end

local function show(lines)
  io.stderr:write(table.concat(lines, "\n"), "\n")
  io.stderr:flush()
end

local function loopback_login(ctx, fb, url, state, redirect)
  local loopback = require "freshbooks.cli.loopback"
  local lb = loopback.parse(redirect)
  if not lb then
    exit(2, "the redirect URI %s is not a loopback address (http://localhost:PORT/... or http://127.0.0.1:PORT/...):"
      .. " use --paste, and paste the address the browser lands on", redirect)
  end
  local listener, lerr = loopback.listen(lb)
  if not listener then exit(1, "cannot wait for the browser: %s", lerr.message) end
  ctx.cleanups[#ctx.cleanups + 1] = function() listener:close(function() end, 0) end
  local timeout = ctx.args.timeout
  local start = listener:expect(url, state, timeout)
  local function note(line) ctx:note("%s", line) end
  local opened = not ctx.args.no_browser and open_browser(ctx, start)
  show{ opened and ("Opened your browser (" .. opened .. "). If nothing appeared, open this address (once, in one"
      .. " browser):") or "Open this address in your browser (once, in one browser):", "  " .. start,
    ("Waiting for the browser's return to %s (up to %s) ..."):format(redirect,
      timeout >= 120 and (math.floor(timeout / 60) .. " min") or (timeout .. " s")) }
  local req = listener:wait(require("socket").gettime() + timeout, note)
  if not req then
    listener:close(note, 0)
    if not listener.started then
      exit(1, "login failed: no browser opened the login address within %d s; run `freshbooks login` to try again"
        .. " (--no-browser prints the address only)", timeout)
    end
    exit(1, "login failed: no answer from the browser within %d s. If the browser showed an error, check that"
      .. " %s is registered for the app exactly; run `freshbooks login` to try again", timeout, redirect)
  end
  local done, err = fb:authorize_callback(req.query, state)
  if done then
    local me = fb:me()
    listener:answer(req, 200, "Connected to FreshBooks",
      (me and me.email and ("Signed in as " .. me.email .. ". ") or "") .. "You can close this window.")
  else
    listener:answer(req, 400, "Login failed", explain(err) .. ". Return to the terminal.")
  end
  listener:close(note)
  return done, err
end

-- A pasted address as people paste it: in quotes or angle brackets, with spaces around.
local function unwrap(line)
  line = line:gsub("^%s+", ""):gsub("%s+$", "")
  local inner = line:match('^"(.*)"$') or line:match("^'(.*)'$") or line:match("^<(.*)>$")
  if inner then return unwrap(inner) end
  return line
end

local function paste_login(ctx, fb, url, state, redirect)
  local opened = not ctx.args.no_browser and open_browser(ctx, url)
  show{ opened and ("Opened your browser (" .. opened .. "). If nothing appeared, open this address:")
      or "Open this address in your browser:", "  " .. url,
    "Allow access; then copy the address of the page the browser lands on (" .. redirect .. "?code=...)." }
  local line = config.ask("Paste it here: ")
  line = line and unwrap(line)
  if not line or line == "" then exit(1, "login failed: no address was pasted") end
  if line:match("^%a[%w+.-]*://") and line:sub(1, #redirect + 1) ~= redirect .. "?" then
    exit(1, "login failed: that address is not under the redirect URI %s; paste the address the browser"
      .. " landed on after allowing access", redirect)
  end
  return fb:authorize_callback(line, state)
end

-- A profile that is connected already is replaced after a yes on the terminal, or with --force.
local function confirm_replace(ctx, path)
  if ctx.args.force or not ctx.cfg.check_private(path, "the token file") then return end
  local r = ctx.record
  local who = r and r.user and account.who(r.user) or "a user this profile did not record"
  local where = r and r.api_url and r.api_url ~= config.DEFAULT_API_URL and (" at " .. text.clean(r.api_url)) or ""
  local what = ("profile %s is connected as %s%s"):format(ctx.profile, who, where)
  local term = require "term"
  if not (term.isatty(io.stdin) and term.isatty(io.stderr)) then
    exit(2, "%s: --force replaces that login, --profile NAME keeps another beside it", what)
  end
  if not config.confirm(("The %s. Log in again and replace it?"):format(what)) then
    exit(1, "login cancelled: %s is still connected", who)
  end
end

local function absolute(path)
  if not path or path:sub(1, 1) == "/" then return path end
  return require("lfs").currentdir() .. "/" .. path
end

function login.login(ctx)
  local a = ctx.args
  local path = ctx:tokens_path()
  local s, typed = ctx:credentials(true)
  confirm_replace(ctx, path)
  if not a.tokens then ctx.cfg.make_dir(ctx.cfg.profile_dir(ctx.profile)) end
  local redirect = s.redirect_uri
  if a.port then
    redirect = require("freshbooks.cli.loopback").with_port(redirect, a.port)
    if not redirect then exit(2, "--port needs a loopback redirect URI (http://localhost:PORT/...), not %s",
      s.redirect_uri) end
    s.redirect_uri = redirect
  end
  local fb = ctx:session(s, path)
  -- Before the browser (and before FreshBooks issues a pair): can the tokens be saved there? What is
  -- at the path must be a token file of ours or nothing (a directory there would refuse the save),
  -- and a probe beside it takes the store's own way: temp file, fsync, rename.
  local _, lerr = require("freshbooks").store.file(path).load()
  if lerr and lerr.code == "store_insecure" then
    exit(1, "cannot save tokens at %s: %s (remove it first)", path, text.clean(lerr.message))
  end
  local probed, perr = core.write_file_atomic(path .. ".probe", "{}")
  if not probed then exit(1, "cannot save tokens at %s: %s", path, perr.message) end
  os.remove(path .. ".probe")

  local scopes = {}
  for _, list in ipairs(a.scopes) do
    for sc in list:gmatch("[^%s,]+") do scopes[#scopes + 1] = sc end
  end
  local ok, url, state = pcall(fb.authorize_url, fb, { scopes = scopes[1] and scopes or nil })
  if not ok then exit(2, "%s", tostring(url):gsub("^[^:]*:%d+: ", "")) end
  check_client(fb, s)

  local before = ctx.record
  local done, err = (a.paste and paste_login or loopback_login)(ctx, fb, url, state, redirect)
  if not done then failed(err) end
  if next(typed) then ctx:note("saved the app's credentials to %s (mode 0600)", ctx.cfg.save(ctx.profile, typed)) end

  local user, businesses = account.identity(fb)
  local function id(v) return type(v) == "number" and require("freshbooks.query").number(v) or tostring(v) end
  local same = before and before.user and id(before.user.identity_id) == id(user.identity_id)
  if before and before.user and not same then
    ctx:note("this login is %s (identity %s), not %s (identity %s), who was connected in profile %s before",
      account.who(user), tostring(user.identity_id), account.who(before.user), tostring(before.user.identity_id),
      ctx.profile)
  end
  -- The default business: kept across a login of the same user, else the first.
  local business = same and before.business
  local still = false
  for _, m in ipairs(businesses) do
    if business and id(m.business_id) == id(business) then still = true end
  end
  if not still then business = businesses[1] and id(businesses[1].business_id) or nil end
  ctx:save_record(user, businesses, { api_url = fb.api_url, auth_url = fb.auth_url, ca_file = absolute(s.ca_file),
    redirect_uri = s.redirect_uri, client_id = s.client_id, business = business }, true)

  local out = ctx:output()
  account.describe(out, user, businesses, ctx.record)
  if #businesses > 1 then
    out:write("* is the default business of this profile: `freshbooks use NAME` chooses another.\n")
  end
  out:write("Tokens saved to ", path, " (mode 0600), profile ", ctx.profile, ".\n")
  out:commit()
end

return login
