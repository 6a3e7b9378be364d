-- `freshbooks login`: the OAuth authorization-code flow from a terminal. With a loopback redirect URI
-- the command listens there (freshbooks.cli.loopback) for the browser's return; with --paste the user
-- pastes the address the browser landed on. Either way the callback's state is checked before the code
-- is exchanged, and the tokens go through the session's save (the file store: atomic, mode 0600).
local core = require "freshbooks.core"
local cli = require "freshbooks.cli"
local commands = require "freshbooks.cli.commands"
local config = require "freshbooks.cli.config"

local login = {}
local exit = cli.exit

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- $BROWSER (first entry; %s is the address), else open on macOS, else xdg-open when there is a display.
-- Started in the background with its output discarded: a slow or missing browser never holds us up.
local function open_browser(url)
  local cmd = os.getenv("BROWSER")
  cmd = cmd and cmd:match("^([^:]+)")
  if not cmd then
    local p = io.popen("uname -s 2>/dev/null")
    local os_name = p and p:read("*l")
    if p then p:close() end
    local function have(c)
      local ran = os.execute("command -v " .. c .. " >/dev/null 2>&1")
      return ran == true or ran == 0 -- Lua 5.4 / LuaJIT
    end
    if os_name == "Darwin" and have("open") then cmd = "open"
    elseif (os.getenv("DISPLAY") or os.getenv("WAYLAND_DISPLAY")) and have("xdg-open") then cmd = "xdg-open" end
  end
  if not cmd then return nil end
  local line = cmd:find("%s", 1, true) and cmd:gsub("%%s", function() return q(url) end) or (cmd .. " " .. q(url))
  os.execute("(" .. line .. ") >/dev/null 2>&1 </dev/null &")
  return cmd
end

-- What went wrong, for the terminal and for the browser page.
local function explain(err)
  local c = err.code
  if c == "state_mismatch" then
    return "the answer's state does not match this login (an old browser tab, or a request that did not come"
      .. " from FreshBooks' page); nothing was saved"
  elseif c == "access_denied" then
    return "access was not allowed (access_denied: " .. tostring(err.message) .. ")"
  elseif c == "invalid_callback" then
    return "the answer carries no authorization code"
  elseif c == "invalid_grant" then
    return "FreshBooks refused the authorization code (invalid_grant: " .. tostring(err.message)
      .. "); codes are single use and last 5 minutes"
  elseif c == "invalid_client" then
    return "FreshBooks refused the app's credentials (invalid_client): check the client ID and secret"
  end
  return tostring(err):gsub("^freshbooks: ", "")
end

local function failed(err)
  if err.code == "rate_limited" then cli.fail(err, "login failed") end
  exit(1, "login failed: %s\nrun `freshbooks login` to try again", explain(err))
end

local function show(ctx, url, how)
  local opened = not ctx.args.no_browser and open_browser(url)
  io.stderr:write(opened and ("Opened your browser (" .. opened .. "). If nothing appeared, open this address:\n")
    or "Open this address in your browser:\n", "  ", url, "\n", how, "\n")
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
  local function note(line) ctx:note("%s", line) end
  local timeout = ctx.args.timeout
  show(ctx, url, ("Waiting for the browser's return to %s (up to %s) ..."):format(redirect,
    timeout >= 120 and (math.floor(timeout / 60) .. " min") or (timeout .. " s")))
  local ok, req = pcall(listener.wait, listener, require("socket").gettime() + timeout, note)
  if not ok then listener:close(note, 0) error(req, 0) end
  if not req then
    listener:close(note, 0)
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

local function paste_login(ctx, fb, url, state, redirect)
  show(ctx, url, "Allow access; then copy the address of the page the browser lands on (" .. redirect
    .. "?code=...).")
  local line = config.ask("Paste it here: ")
  if not line or line == "" then exit(1, "login failed: no address was pasted") end
  if line:match("^%a[%w+.-]*://") and line:sub(1, #redirect + 1) ~= redirect .. "?" then
    exit(1, "login failed: that address is not under the redirect URI %s; paste the address the browser"
      .. " landed on after allowing access", redirect)
  end
  return fb:authorize_callback(line, state)
end

function login.login(ctx)
  local a = ctx.args
  local path = ctx:tokens_path()
  if not a.tokens then ctx.cfg.make_dir() end
  local s, typed = ctx:credentials(true)
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
    exit(1, "cannot save tokens at %s: %s (remove it first)", path, lerr.message)
  end
  local probed, perr = core.fs.write_atomic(path .. ".probe", "{}")
  if not probed then exit(1, "cannot save tokens at %s: %s", path, perr.message) end
  os.remove(path .. ".probe")

  local scopes = {}
  for _, list in ipairs(a.scopes) do
    for sc in list:gmatch("[^%s,]+") do scopes[#scopes + 1] = sc end
  end
  local ok, url, state = pcall(fb.authorize_url, fb, { scopes = scopes[1] and scopes or nil })
  if not ok then exit(2, "%s", tostring(url):gsub("^[^:]*:%d+: ", "")) end

  local done, err = (a.paste and paste_login or loopback_login)(ctx, fb, url, state, redirect)
  if not done then failed(err) end
  if next(typed) then ctx:note("saved the app's credentials to %s (mode 0600)", ctx.cfg.save(typed)) end
  local out = ctx:output()
  commands.describe(fb, out)
  out:write("Tokens saved to ", path, " (mode 0600).\n")
  out:commit()
end

return login
