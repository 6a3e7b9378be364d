-- `freshbooks`, the command: the real bin/freshbooks as a subprocess (under the interpreter running the
-- specs) against the sandbox. The spec plays the browser, the hostile neighbour on the callback port
-- (another user of the machine too, as `nobody`) and the person at the terminal (tmux, script). Every
-- failure must be one clear message with the documented exit status, and no secret may ever reach the
-- output.
local cjson = require "cjson"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local C = require "support.cli"

local q = sandbox.shell_quote

describe("freshbooks, the command", function()
  local sb, port, w

  setup(function()
    port = C.free_port()
    sb = sandbox.start{ invoices = 250, redirect_uris = {
      ("http://127.0.0.1:%d/callback"):format(port), ("http://localhost:%d/callback"):format(port) } }
  end)
  teardown(function() if sb then sb:stop() end end)
  before_each(function() w = C.world(sb, port) end)
  after_each(function() w:cleanup() end)

  -- Connected without a browser: a token pair minted for `user`, in the default token file.
  local function connect(user)
    os.execute("mkdir -p -m 700 " .. q(w.config_home .. "/freshbooks"))
    assert(require("freshbooks.store.file")(w.tokens).save(sb:token{ user = user or "alice" }))
  end

  -- Every secret the run could have seen: the client secret, the tokens stored now and `extra`.
  local function assert_no_secret(text, extra)
    local list = { sb.app.client_secret }
    local t = cjson.decode(C.read(w.tokens) ~= "" and C.read(w.tokens) or "{}")
    list[#list + 1], list[#list + 2] = t.access_token, t.refresh_token
    for _, s in ipairs(extra or {}) do list[#list + 1] = s end
    assert.is_false(H.leaks(text, list), "a secret reached the output")
  end

  local function token_posts(since)
    return H.count(H.log(sb, since), H.is_token_post)
  end

  -- The browser's part: the authorize page (auto-consent) -> the Location it sends the browser to.
  local function consent(url) return H.consent(sb, url) end

  -- What the loopback answers a browser arriving at `url` (with the login's cookie, when it has it).
  local function visit(url, cookie)
    return sb:http{ url = url, timeout = 10, headers = cookie and { Cookie = cookie } or nil }
  end

  -- A whole browser: the start address the command printed, FreshBooks' consent (as `user`), the
  -- callback with the cookie. -> the listener's page
  local function browse(start, user)
    local st = C.start(sb, start)
    assert.equal(302, st.status, st.body)
    return visit(consent(st.authorize .. (user and ("&user=" .. user) or "")), st.cookie), st
  end

  local function hold_port(host, seconds)
    local ready = w.dir .. "/ready-" .. host
    local pid = w:background(("%s listen %s %d %d %s"):format(C.raw, host, port, seconds, q(ready)))
    assert(C.until_true(function() return H.read(ready) ~= nil end, 10), "no listener")
    return pid
  end

  local function port_is_free()
    local out = C.sh(("%s listen 127.0.0.1 %d 0 %s"):format(C.raw, port, q(w.dir .. "/probe")), 10)
    return out == ""
  end

  -- A program of another user (nobody): its files go in a directory it may write.
  -- (setpriv execs: the pid a spec keeps is the program's own, so cleanup ends it)
  local function as_nobody(cmd) return "setpriv --reuid=65534 --regid=65534 --clear-groups -- " .. cmd end
  local function shared_dir()
    local d = w.dir .. "/shared"
    os.execute("chmod 711 " .. q(w.dir) .. "; mkdir -p " .. q(d) .. "; chmod 1777 " .. q(d))
    return d
  end

  local function who(tokens) -- the identity the sandbox says a token file's access token is for
    local fb = require("freshbooks").new{ client_id = sb.app.client_id, client_secret = sb.app.client_secret,
      redirect_uri = w.redirect_uri, api_url = sb.url, auth_url = sb.url,
      tokens = { access_token = cjson.decode(C.read(tokens)).access_token } }
    local me = fb:me()
    return me and me.email
  end

  describe("arguments", function()
    it("has --help with examples and the global options on every command; --version; help COMMAND", function()
      local code, out = w:run("--help")
      assert.equal(0, code)
      for _, cmd in ipairs{ "login", "status", "logout", "profiles", "use", "report", "export", "api", "help",
        "completion" } do
        assert.truthy(out:find("\n   " .. cmd .. " ", 1, true), cmd)
        local c, o = w:run(cmd .. " --help")
        assert.equal(0, c, cmd)
        assert.truthy(o:find("Usage: freshbooks " .. cmd, 1, true), cmd)
        assert.truthy(o:find("\nExamples:\n   $ freshbooks ", 1, true), cmd)
        assert.truthy(o:find("\nGlobal options (before or after the command):\n   --profile <name>", 1, true), cmd)
        assert.truthy(o:find("--api-url <url>", 1, true), cmd)
        local h, ho = w:run("help " .. cmd)
        assert.equal(0, h, cmd)
        assert.equal(o, ho, cmd)
      end
      assert.truthy(out:find("3 not connected", 1, true))
      -- No arguments: the overview, as gh prints it (exit 0).
      local c, o, e = w:run("")
      assert.same({ 0, out, "" }, { c, o, e })
      c, o = w:run("--version")
      assert.equal(0, c)
      assert.truthy(o:find("^freshbooks %d+%.%d+%.%d+ %(lua%-freshbooks, [^)]*libcurl/[%d.]+%)\n$"), o)
      -- The report's help lists its kinds (from the same rows `report` runs).
      local _, ro = w:run("report --help")
      assert.truthy(ro:find("\n   billing +Outstanding invoices by client"), ro)
      -- --help on a closed stdout is a failure, not a silent 0.
      c, _, e = w:run("--help", { suffix = ">&-" })
      assert.equal(1, c)
      assert.truthy(e:find("cannot write to stdout", 1, true), e)
    end)

    it("usage errors exit 2 with the command's usage, and say what was probably meant", function()
      local cases = {
        { "exprot invoices", "Did you mean 'export'" },
        { "export invoices --parallel 0", "--parallel must be a whole number from 1 to 32",
          "Usage: freshbooks export" },
        { "report --frobnicate", "unknown option '--frobnicate'" },
        { "export invoicez", "unknown resource 'invoicez': did you mean invoices?" },
        { "export clinets", "did you mean clients?" },
        { "report biling", "no report 'biling': did you mean billing?" },
        { "help exprot", "no command 'exprot': did you mean export?" },
        { "--profile '../x' status", "a profile name is letters, digits" },
      }
      for _, c in ipairs(cases) do
        local code, out, err = w:run(c[1])
        assert.equal(2, code, c[1] .. ": " .. err)
        assert.equal("", out, c[1])
        assert.truthy(err:find(c[2], 1, true), c[1] .. ": " .. err)
        if c[3] then assert.truthy(err:find(c[3], 1, true), c[1] .. ": " .. err) end
        assert.is_nil(err:find("traceback", 1, true))
      end
      connect()
      local code, _, err = w:run("use 'Sandbox Widgets'")
      assert.equal(1, code)
      assert.truthy(err:find("no business matches 'Sandbox Widgets'; did you mean 'Sandbox Widgets Inc.'?", 1, true),
        err)
    end)
  end)

  describe("login", function()
    it("connects through the loopback with a scripted browser, then status, logout", function()
      local since = H.last_seq(sb)
      local code, out, err = w:run("login", { vars = { BROWSER = C.root .. "/sandbox/browser" } })
      assert.equal(0, code, err)
      assert.truthy(out:find("Connected to FreshBooks as Alice Sandbox <alice@example.com> (identity 1001)", 1, true))
      assert.truthy(out:find("Sandbox Widgets Inc.%s+account_id aBcD1%s+business_id 1000001%s+role owner"))
      assert.truthy(out:find("Sandbox Consulting Ltd.%s+account_id xYz92%s+business_id 1000002%s+role admin"))
      assert.truthy(err:find("Opened your browser", 1, true))
      -- The terminal shows the listener's one-time start address; the state is nowhere.
      local start = err:match("(http://127%.0%.0%.1:%d+/freshbooks%-login/%x+)")
      assert.truthy(start, err)
      assert.is_nil((out .. err):find("state=", 1, true))
      assert_no_secret(out .. err)
      -- the credentials check and the exchange
      assert.equal(2, token_posts(since))
      assert.equal("600", C.mode(w.tokens))
      assert.equal("700", C.mode(w.config_home .. "/freshbooks"))
      assert.same({ "tokens.json", "tokens.login.json" }, C.ls(w.config_home .. "/freshbooks"))
      assert.equal("600", C.mode(w.config_home .. "/freshbooks/tokens.login.json"))

      code, out, err = w:run("status")
      assert.equal(0, code, err)
      assert.truthy(out:find("Connected to FreshBooks as Alice Sandbox", 1, true))
      assert.truthy(out:find("account_id xYz92%s+business_id 1000002%s+role admin"))
      assert.truthy(out:find("Scopes:%s+user:profile:read"))
      assert.truthy(out:find("Access token: expires %d%d%d%d%-%d%d%-%d%d %d%d:%d%d %(in 1[12]h"))
      assert.truthy(out:find("Tokens:       " .. w.tokens .. " (mode 0600)", 1, true))
      assert_no_secret(out .. err)

      local before = H.last_seq(sb)
      code, out, err = w:run("logout")
      assert.equal("", out)
      assert.equal(0, code, err)
      assert.truthy(err:find("revoked the refresh token (the grant) and the access token at FreshBooks", 1, true))
      assert.equal(2, H.count(H.log(sb, before), function(e) return e.path == "/auth/oauth/revoke" end))
      assert.is_nil(H.read(w.tokens))
      assert.same({}, C.ls(w.config_home .. "/freshbooks"))
      code, out, err = w:run("status")
      assert.equal("", out)
      assert.equal(3, code)
      assert.truthy(err:find("not connected: no tokens at " .. w.tokens, 1, true))
      code, out, err = w:run("logout")
      assert.equal("", out)
      assert.equal(3, code, err)
    end)

    it("logout revokes the access token too: a copy of the token file stops working at once", function()
      connect()
      local copy = w.dir .. "/copied-tokens.json"
      os.execute("cp -p " .. q(w.tokens) .. " " .. q(copy))
      assert.equal("alice@example.com", who(copy))
      local code, _, err = w:run("logout")
      assert.equal(0, code, err)
      assert.truthy(err:find("FreshBooks refuses both from now on", 1, true), err)
      assert.is_nil(who(copy)) -- the access token of the copy: refused
      code, _, err = w:run("status --tokens " .. q(copy))
      assert.equal(3, code, err)
    end)

    it("opens the browser with xdg-open when there is a display and no $BROWSER", function()
      local bin = w.dir .. "/bin"
      os.execute("mkdir " .. q(bin))
      C.write(bin .. "/xdg-open", ("#!/bin/sh\necho \"$1\" >%s\nexec %s \"$1\"\n"):format(q(w.dir .. "/opened"),
        q(C.root .. "/sandbox/browser")), "755")
      local code, out, err = w:run("login", { vars = { DISPLAY = ":99", PATH = bin .. ":" .. os.getenv("PATH") } })
      assert.equal(0, code, err)
      assert.truthy(err:find("Opened your browser (xdg-open)", 1, true))
      -- a private page, not an address with the login's secrets in it
      assert.truthy(C.read(w.dir .. "/opened"):find("^file:///[^\n]*/login%.html\n$"), C.read(w.dir .. "/opened"))
      assert.truthy(out:find("Connected to FreshBooks as Alice", 1, true))
    end)

    it("keeps every secret of the login off the browser's command line and environment (another user reads /proc)",
      function()
        -- The browser launcher waits until the neighbour has read its /proc entry, then browses.
        local launcher = w.dir .. "/launcher"
        C.write(launcher, ("#!/bin/sh\necho $$ >%s\ni=0\nwhile [ ! -e %s ] && [ $i -lt 400 ]; do sleep 0.05;"
          .. " i=$((i+1)); done\nexec %s \"$@\"\n"):format(q(w.dir .. "/launcher.pid"), q(w.dir .. "/go"),
          q(C.root .. "/sandbox/browser")), "755")
        local job = w:spawn("login", { vars = { BROWSER = launcher } })
        assert.truthy(C.until_true(function() return C.read(w.dir .. "/launcher.pid"):match("%d+") end, 10),
          job:stderr())
        local pid = C.read(w.dir .. "/launcher.pid"):match("%d+")
        -- What every user of the machine reads: the command line. What only its owner reads: the environment.
        local cmdline = C.sh(as_nobody("cat /proc/" .. pid .. "/cmdline")):gsub("%z", " ")
        local environ = C.read("/proc/" .. pid .. "/environ"):gsub("%z", "\n")
        assert.truthy(cmdline:find("launcher", 1, true), cmdline)
        local start = job:url()
        local token = start:match("(%x+)$")
        for _, text in ipairs{ cmdline, environ } do
          assert.is_nil(text:find("state=", 1, true), text)
          assert.is_nil(text:find(token, 1, true), "the start address's secret is readable")
          assert.is_nil(text:find("oauth/authorize", 1, true), text)
          assert.is_false(H.leaks(text, { sb.app.client_secret }), "the client secret is in the browser's /proc")
        end
        -- The page it names is the browser's alone.
        local page = cmdline:match("file://(%S+)")
        assert.truthy(page, cmdline)
        assert.equal("600", C.mode(page))
        assert.truthy(C.sh(as_nobody("cat " .. q(page))):find("Permission denied", 1, true))
        -- The neighbour's attack, had it found an authorize address: its own code, delivered first.
        local stolen = cmdline:match("(http://%S+/oauth/authorize/%?%S+)")
        if stolen then visit(consent(stolen .. "&user=carol")) end
        C.write(w.dir .. "/go", "")
        local code, out, err = job:wait()
        assert.equal(0, code, err)
        assert.truthy(out:find("Connected to FreshBooks as Alice Sandbox", 1, true), out)
        assert.equal("alice@example.com", who(w.tokens))
        assert.is_nil(H.read(page)) -- removed once the login ended
      end)

    it("ignores a callback that did not come from the browser the login started, even with the right state", function()
      local job = w:spawn("login --no-browser")
      local st = C.start(sb, job:url())
      assert.equal(302, st.status)
      assert.truthy(st.cookie, "no cookie")
      -- Another browser opens the start address (a copy of it): refused, the first keeps its login.
      local second = C.start(sb, job:url())
      assert.equal(403, second.status)
      -- Someone who knows the state (not the cookie) delivers a code for their own account first.
      local forged = visit(consent(st.authorize .. "&user=carol"))
      assert.equal(403, forged.status)
      assert.truthy(forged.body:find("did not come from the browser", 1, true))
      local page = visit(consent(st.authorize), st.cookie)
      assert.equal(200, page.status, page.body)
      local code, out, err = job:wait()
      assert.equal(0, code, err)
      assert.truthy(out:find("Alice Sandbox", 1, true))
      assert.truthy(err:find("ignored a callback that did not come from the browser this login started", 1, true))
      assert.equal("alice@example.com", who(w.tokens))
    end)

    it("answers and ignores forged callbacks (wrong state, none, a denial): the genuine one still logs in", function()
      connect("carol") -- an earlier connection, replaced only by the genuine login
      local since = H.last_seq(sb)
      local job = w:spawn("login --no-browser --force")
      local st = C.start(sb, job:url())
      local callback = ("http://127.0.0.1:%d/callback"):format(port)
      -- What any web page can send with <img> (no cookie), and what an old tab sends (the cookie, an old state).
      for _, forged in ipairs{
        { callback .. "?code=abc&state=" .. ("0"):rep(32) },
        { callback .. "?code=abc" },
        { callback .. "?error=access_denied&error_description=no" },
        { callback .. "?code=abc&state=" .. ("0"):rep(32), st.cookie },
        { callback .. "?error=access_denied", st.cookie },
      } do
        local page = visit(forged[1], forged[2])
        assert.truthy(page.status == 400 or page.status == 403, forged[1])
      end
      assert.equal(0, token_posts(since) - 1) -- the credentials check only: no code was exchanged
      assert.equal(200, visit(consent(st.authorize), st.cookie).status)
      local code, out, err = job:wait()
      assert.equal(0, code, err)
      assert.truthy(out:find("Alice Sandbox", 1, true))
      assert.truthy(err:find("ignored a callback whose state does not match this login", 1, true))
      assert.equal("alice@example.com", who(w.tokens))
      assert_no_secret(out .. err)
    end)

    it("connections holding every slot, from this user or another, do not starve the genuine callback", function()
      local job = w:spawn("login --no-browser")
      local start = job:url()
      local shared = shared_dir()
      -- The other user's copy of the client: the checkout may sit in a directory only its owner can enter.
      local theirs = shared .. "/rawclient.lua"
      C.write(theirs, C.read(C.root .. "/spec/support/rawclient.lua"), "644")
      for _, hog in ipairs{ { C.raw, "mine" }, { as_nobody(C.lua .. " " .. q(theirs)), "theirs" } } do
        local ready = shared .. "/" .. hog[2]
        w:background(("%s hog 127.0.0.1 %d 48 20 %s"):format(hog[1], port, q(ready)))
        assert.truthy(C.until_true(function() return H.read(ready) ~= nil end, 10), "the hog did not start")
      end
      local page = browse(start)
      assert.equal(200, page.status, page.body)
      local code, out, err = job:wait()
      assert.equal(0, code, err)
      assert.truthy(out:find("Alice Sandbox", 1, true))
      assert.truthy(err:find("refused connections from another user's programs (uid 65534)", 1, true), err)
      assert.truthy(err:find("closed the oldest of 32 open connections on the callback port", 1, true), err)
    end)

    it("neutralises control characters from the network: request paths, FreshBooks' messages and values", function()
      local job = w:spawn("login --no-browser")
      local start = job:url()
      C.write(w.dir .. "/evil",
        ("GET /\27]0;owned\7\27[2J\194\155x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"):format(port))
      assert.truthy(C.sh(("%s send 127.0.0.1 %d %s"):format(C.raw, port, q(w.dir .. "/evil"))):find("404"))
      assert.equal(200, browse(start).status)
      local code, _, err = job:wait()
      assert.equal(0, code, err)
      assert.truthy(err:find("answered GET /\\x1b]0;owned\\x07\\x1b[2J\\u009bx on the callback port with 404", 1, true),
        err)
      assert.is_nil(err:find("[\27\7]"))
      assert.is_nil(err:find("\194\155", 1, true))
      -- A FreshBooks (here a hostile server) whose error quotes escape sequences.
      local body = '{"response":{"errors":[{"errno":1012,"field":"\\u001b[2Jid","message":"No \\u001b]0;owned'
        .. '\\u0007such \\u009b31mthing\\u202e"}]}}'
      C.write(w.dir .. "/answer", ("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d"
        .. "\r\nConnection: close\r\n\r\n%s"):format(#body, body))
      local hostile = C.free_port()
      w:background(("%s serve %d %s 20 %s"):format(C.raw, hostile, q(w.dir .. "/answer"), q(w.dir .. "/served")))
      assert.truthy(C.until_true(function() return H.read(w.dir .. "/served") ~= nil end, 10))
      local out
      code, out, err = w:run(("api GET /x --api-url http://127.0.0.1:%d"):format(hostile), { no_flags = true })
      assert.equal(1, code, err)
      assert.equal("", out)
      assert.truthy(err:find("not_found: No \\x1b]0;owned\\x07such \\u009b31mthing\\u202e (HTTP 404)", 1, true), err)
      assert.is_nil(err:find("[\27\7]"))
      -- FreshBooks' values: a client named with escapes, on a terminal (export) and in the report's table.
      local file = w.dir .. "/client.json"
      C.write(file, '{"client":{"organization":"\\u001b]0;pwned\\u0007Evil \\u001b[31mCorp","email":"e@example.com"}}')
      code, out, err = w:run("api POST /accounting/account/xYz92/users/clients --data @" .. q(file))
      assert.equal(0, code, err)
      local id = cjson.decode(out).response.result.client.id
      local screen
      code, screen = w:pty("export clients --business xYz92 --format csv")
      assert.equal(0, code, screen)
      assert.truthy(screen:find("\\x1b]0;pwned\\x07Evil \\x1b[31mCorp", 1, true), screen)
      assert.is_nil(screen:find("\27]0;pwned", 1, true))
      C.write(file, ('{"invoice":{"customerid":%d,"create_date":"2025-05-01","due_offset_days":10,"lines":[{"name":'
        .. '"x","qty":"1","unit_cost":{"amount":"10.00","code":"CAD"}}]}}'):format(id))
      code, out, err = w:run("api POST /accounting/account/xYz92/invoices/invoices --data @" .. q(file))
      assert.equal(0, code, err)
      local inv = cjson.decode(out).response.result.invoice.id
      code, _, err = w:run(("api PUT /accounting/account/xYz92/invoices/invoices/%d --data '%s'"):format(inv,
        '{"invoice":{"action_mark_as_sent":true}}'))
      assert.equal(0, code, err)
      code, screen = w:pty("report --as-of 2025-06-30 --business xYz92 --no-pager")
      assert.equal(0, code, screen)
      assert.truthy(screen:find("\\x1b]0;pwned\\x07Evil \\x1b[31mCorp", 1, true), screen)
      assert.is_nil(screen:find("\27]0;pwned", 1, true))
    end)

    it("the browser inherits no descriptor: once login ends the port is free, although the browser runs on", function()
      -- This browser keeps running (as browsers do) after it has browsed, and lists what it inherited.
      local browser = w.dir .. "/browser"
      C.write(browser, ("#!/bin/sh\nls -l /proc/$$/fd >%s\n%s \"$1\"\n(sleep 20 </dev/null >/dev/null 2>&1 &)\n")
        :format(q(w.dir .. "/fds"), q(C.root .. "/sandbox/browser")), "755")
      local code, _, err = w:run("login", { vars = { BROWSER = browser } })
      assert.equal(0, code, err)
      -- (the shell's own: its script, /dev/null; nothing of the command's: no socket, pipe, lock or token file)
      local fds = C.read(w.dir .. "/fds")
      assert.truthy(fds:find("%s0 %-> /dev/null"), fds)
      assert.is_nil(fds:find("socket:", 1, true), fds)
      assert.is_nil(fds:find("pipe:", 1, true), fds)
      assert.is_nil(fds:find(w.config_home, 1, true), fds)
      assert.truthy(port_is_free())
      -- and a second login on the same redirect URI right away
      code, _, err = w:run("login --force", { vars = { BROWSER = C.root .. "/sandbox/browser" } })
      assert.equal(0, code, err)
    end)

    it("answers the browser with a page that says it worked, then stops listening", function()
      local job = w:spawn("login --no-browser")
      local url = job:url()
      assert.truthy(job:stderr():find("Open this address in your browser", 1, true))
      local page = browse(url)
      assert.equal(200, page.status)
      assert.truthy(page.body:find("Connected to FreshBooks", 1, true))
      assert.truthy(page.body:find("alice@example.com", 1, true))
      assert.equal("no-store", page.headers["cache-control"])
      assert.equal("no-referrer", page.headers["referrer-policy"])
      local code, out, err = job:wait()
      assert.equal(0, code, err)
      assert.truthy(out:find("Tokens saved to " .. w.tokens, 1, true))
      -- One request, then closed: nothing answers on the port any more.
      assert.truthy(C.sh(("%s hold 127.0.0.1 %d 1"):format(C.raw, port)):find("CONNECT%-FAILED"))
    end)

    it("answers strays on the port (wrong path, garbage, other methods and hosts, silence) and still logs in",
      function()
        local job = w:spawn("login --no-browser")
        local url = job:url()
        -- A silent connection first: it must not hold up anything after it.
        w:background(("%s hold 127.0.0.1 %d 15 >%s"):format(C.raw, port, q(w.dir .. "/silent")))
        local stray = visit(("http://127.0.0.1:%d/favicon.ico"):format(port))
        assert.equal(404, stray.status)
        assert.truthy(stray.body:find("answer at /callback", 1, true))
        C.write(w.dir .. "/garbage", "\22\3\1\2\0\1\0\1\252\3\3 not http at all\r\n\r\n")
        local answer = C.sh(("%s send 127.0.0.1 %d %s"):format(C.raw, port, q(w.dir .. "/garbage")))
        assert.truthy(answer:find("^HTTP/1.1 400 Bad Request"), answer)
        local post = sb:http{ method = "POST", url = ("http://127.0.0.1:%d/callback"):format(port), body = "x" }
        assert.equal(405, post.status)
        local rebound = sb:http{ url = ("http://127.0.0.1:%d/callback?code=x&state=y"):format(port),
          headers = { Host = "evil.example:" .. port } }
        assert.equal(400, rebound.status)
        local page = browse(url)
        assert.equal(200, page.status, page.body)
        local code, _, err = job:wait()
        assert.equal(0, code, err)
        assert.truthy(err:find("answered GET /favicon.ico on the callback port with 404", 1, true))
        assert.truthy(err:find("answered a request that is not HTTP", 1, true))
        assert.truthy(err:find("answered POST /callback on the callback port with 405", 1, true))
        assert.equal("600", C.mode(w.tokens))
      end)

    it("tells a second request that the login has finished", function()
      local job = w:spawn("login --no-browser")
      local url = job:url()
      C.write(w.dir .. "/part1", ("GET /callback?code=replay&state=x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"):format(port))
      C.write(w.dir .. "/part2", "\r\n")
      w:background(("%s split 127.0.0.1 %d %s %s %s >%s"):format(C.raw, port, q(w.dir .. "/part1"),
        q(w.dir .. "/go"), q(w.dir .. "/part2"), q(w.dir .. "/second")))
      assert.equal(200, browse(url).status)
      C.write(w.dir .. "/go", "")
      local code, _, err = job:wait()
      assert.equal(0, code, err)
      assert.truthy(C.until_true(function() return C.read(w.dir .. "/second") ~= "" end, 10))
      local second = C.read(w.dir .. "/second")
      assert.truthy(second:find("^HTTP/1.1 409 Conflict"), second)
      assert.truthy(second:find("This login has finished", 1, true))
      assert.truthy(err:find("answered a second request (GET /callback): this login had already finished", 1, true))
    end)

    it("says so when access is not allowed (error=access_denied), and saves nothing", function()
      local job = w:spawn("login --no-browser")
      local page = browse(job:url(), "nobody") -- the sandbox denies an unknown user
      assert.equal(400, page.status)
      assert.truthy(page.body:find("access was not allowed", 1, true))
      local code, out, err = job:wait()
      assert.equal(1, code)
      assert.equal("", out)
      assert.truthy(err:find("login failed: access was not allowed (access_denied", 1, true))
      assert.is_nil(H.read(w.tokens))
    end)

    it("gives up after --timeout when no browser comes back (a slow one holds nothing), frees the port", function()
      local started = require("freshbooks.core").clock.now()
      local code, _, err = w:run("login --timeout 1", { vars = { BROWSER = "sleep 4" } })
      assert.equal(1, code)
      assert.truthy(err:find("no browser opened the login address within 1 s", 1, true), err)
      assert.truthy(require("freshbooks.core").clock.now() - started < 6)
      assert.truthy(port_is_free())
      assert.is_nil(H.read(w.tokens))
      -- opened, but FreshBooks never sent it back (an unregistered redirect URI shows an error page there)
      local job = w:spawn("login --no-browser --timeout 1")
      assert.equal(302, C.start(sb, job:url()).status)
      code, _, err = job:wait()
      assert.equal(1, code)
      assert.truthy(err:find("no answer from the browser within 1 s. If the browser showed an error, check that", 1,
        true), err)
    end)

    it("says when the port is already in use (also on ::1 for localhost), before any URL", function()
      local pid = hold_port("127.0.0.1", 20)
      local code, _, err = w:run("login --no-browser")
      os.execute("kill " .. pid)
      assert.equal(1, code)
      assert.truthy(err:find(("127.0.0.1 port %d is already in use"):format(port), 1, true))
      assert.is_nil(err:find("http://", 1, true))
      pid = hold_port("::1", 20)
      code, _, err = w:run("login --no-browser",
        { vars = { FB_REDIRECT_URI = ("http://localhost:%d/callback"):format(port) } })
      os.execute("kill " .. pid)
      assert.equal(1, code)
      assert.truthy(err:find(("[::1] port %d is already in use"):format(port), 1, true))
    end)

    it("stops cleanly on Ctrl-C while waiting", function()
      local job = w:spawn("login --no-browser")
      job:url()
      job:signal("INT")
      local code, _, err = job:wait(10)
      assert.equal(130, code)
      assert.truthy(err:find("freshbooks: interrupted", 1, true))
      assert.is_nil(err:find("traceback", 1, true))
      assert.truthy(port_is_free())
      assert.is_nil(H.read(w.tokens))
    end)

    it("says before the browser when the tokens cannot be saved", function()
      local code, _, err = w:run("login --tokens /nonexistent/dir/tokens.json --no-browser")
      assert.equal(1, code)
      assert.truthy(err:find("cannot save tokens at /nonexistent/dir/tokens.json", 1, true))
      assert.is_nil(err:find("http://", 1, true))
      -- a directory (or a link, a FIFO) at the path would refuse the save once FreshBooks had issued a pair
      local taken = w.dir .. "/taken"
      os.execute("mkdir -p " .. q(taken .. "/tokens.json"))
      os.execute("ln -s /etc/passwd " .. q(taken .. "/link.json"))
      for _, p in ipairs{ taken .. "/tokens.json", taken .. "/link.json" } do
        code, _, err = w:run("login --force --tokens " .. q(p) .. " --no-browser")
        assert.equal(1, code, err)
        assert.truthy(err:find("cannot save tokens at " .. p, 1, true), err)
        assert.is_nil(err:find("http://", 1, true))
      end
      assert.same({ "link.json", "tokens.json" }, C.ls(taken))
    end)

    it("says at once, before any browser, when FreshBooks does not know the app's client ID or secret", function()
      for _, vars in ipairs{ { FB_CLIENT_ID = "no-such-client" }, { FB_CLIENT_SECRET = "wrong-secret" } } do
        vars.BROWSER = C.root .. "/sandbox/browser"
        local started = require("freshbooks.core").clock.now()
        local code, out, err = w:run("login --timeout 60", { vars = vars })
        assert.equal(1, code, err)
        assert.equal("", out)
        assert.truthy(err:find("FreshBooks does not accept the app's client ID and secret (invalid_client)", 1, true),
          err)
        assert.truthy(err:find("(from FB_CLIENT_ID)", 1, true), err)
        assert.is_nil(err:find("Opened your browser", 1, true))
        assert.is_false(H.leaks(err, { "wrong-secret", sb.app.client_secret }))
        assert.truthy(require("freshbooks.core").clock.now() - started < 10)
      end
    end)

    it("needs credentials: exit 2 with where to put them when nobody can be asked", function()
      local code, _, err = w:run("login", { vars = { FB_CLIENT_ID = false } })
      assert.equal(2, code)
      assert.truthy(err:find("no client ID: set FB_CLIENT_ID, or put \"client_id\" in " .. w.config_home
        .. "/freshbooks/config", 1, true))
      code, _, err = w:run("login", { vars = { FB_CLIENT_SECRET = false } })
      assert.equal(2, code)
      assert.truthy(err:find("no client secret: set FB_CLIENT_SECRET", 1, true))
      connect()
      code, _, err = w:run("status", { vars = { FB_CLIENT_ID = false } })
      assert.equal(2, code)
      assert.truthy(err:find("no client ID", 1, true))
    end)

    it("reads the credentials from a private config file; a loose or malformed one is a usage error (2)", function()
      local dir = w.config_home .. "/freshbooks"
      os.execute("mkdir -p " .. q(dir))
      C.write(dir .. "/config", cjson.encode{ client_id = sb.app.client_id, client_secret = sb.app.client_secret,
        redirect_uri = w.redirect_uri, api_url = sb.url, auth_url = sb.url }, "600")
      local none = { FB_CLIENT_ID = false, FB_CLIENT_SECRET = false, FB_REDIRECT_URI = false,
                     BROWSER = C.root .. "/sandbox/browser" }
      local code, out, err = w:run("login", { vars = none, no_flags = true })
      assert.equal(0, code, err)
      assert.truthy(out:find("Connected to FreshBooks as Alice", 1, true))
      os.execute("chmod 644 " .. q(dir .. "/config"))
      code, out, err = w:run("status", { vars = none, no_flags = true })
      assert.equal(2, code)
      assert.truthy(err:find("the configuration file " .. dir .. "/config can be read or changed by other users"
        .. " (mode rw-r--r--)", 1, true))
      assert_no_secret(out .. err)
      for _, bad in ipairs{
        { '{"client_id": "x", "clientsecret": "typo"}', 'unknown key "clientsecret"' },
        { '{"client_id": "x"' .. (" "):rep(70000) .. "}", dir .. "/config is over 64 KiB" },
        { "client_id = x", dir .. "/config is not a JSON object" },
        { '{"client_id": 42}', "client_id must be a string" },
      } do
        C.write(dir .. "/config", bad[1], "600")
        code, out, err = w:run("status", { vars = none, no_flags = true })
        assert.same({ 2, "" }, { code, out })
        assert.truthy(err:find(bad[2], 1, true), err)
      end
    end)

    it("replaces a loose token file with a private one", function()
      os.execute("mkdir -p -m 700 " .. q(w.config_home .. "/freshbooks"))
      C.write(w.tokens, '{"refresh_token": "old-and-visible"}', "644")
      local code, _, err = w:run("status")
      assert.equal(1, code)
      assert.truthy(err:find("the token file " .. w.tokens .. " can be read or changed by other users", 1, true))
      code, _, err = w:run("login --force", { vars = { BROWSER = C.root .. "/sandbox/browser" } })
      assert.equal(0, code, err)
      assert.equal("600", C.mode(w.tokens))
      assert.truthy(cjson.decode(C.read(w.tokens)).refresh_token:match("^%x+$"))
      assert.same({ "tokens.json", "tokens.login.json" }, C.ls(w.config_home .. "/freshbooks"))
    end)

    it("asks on a terminal for what is missing, the secret without echo, and saves it privately", function()
      local t = w:tmux("login", { vars = { FB_CLIENT_ID = false, FB_CLIENT_SECRET = false, FB_REDIRECT_URI = false,
        BROWSER = C.root .. "/sandbox/browser" } })
      finally(function() t:close() end)
      assert.truthy(t:expect("Client ID: %s*$"), t:screen())
      local echoing = t:echoing_when("(not shown as you type): ")
      t:type(sb.app.client_id)
      assert.truthy(t:expect("Client secret %(not shown as you type%): %s*$"), t:screen())
      -- the prompt is an invitation to type: echo is already off when it shows
      assert.is_false(echoing(), "the secret prompt showed while the terminal still echoed")
      t:type(sb.app.client_secret)
      assert.truthy(t:expect("Redirect URI %[http://localhost:8976/callback%]: %s*$"), t:screen())
      t:type(w.redirect_uri)
      assert.equal(0, t:wait(), t:screen())
      local screen = t:screen()
      assert.truthy(screen:find("Connected to FreshBooks as Alice Sandbox", 1, true), screen)
      assert.truthy(screen:find("saved the app's credentials to " .. w.config_home .. "/freshbooks/config", 1, true))
      assert_no_secret(screen)
      local saved = cjson.decode(C.read(w.config_home .. "/freshbooks/config"))
      assert.same({ client_id = sb.app.client_id, client_secret = sb.app.client_secret,
                    redirect_uri = w.redirect_uri }, saved)
      assert.equal("600", C.mode(w.config_home .. "/freshbooks/config"))
      -- Next time nothing is asked.
      local code, _, err = w:run("status", { vars = { FB_CLIENT_ID = false, FB_CLIENT_SECRET = false,
        FB_REDIRECT_URI = false } })
      assert.equal(0, code, err)
    end)

    it("Ctrl-C at the secret prompt puts the terminal back (echo on) and ends the line", function()
      local tty = w.dir .. "/stty"
      local t = w:tmux("login", { vars = { FB_CLIENT_SECRET = false }, after = "stty -a >" .. q(tty) })
      finally(function() t:close() end)
      assert.truthy(t:expect("Client secret %(not shown as you type%): %s*$"), t:screen())
      os.execute(("tmux -S %s send-keys -t 0 C-c"):format(q(t.sock)))
      assert.equal(130, t:wait(10), t:screen())
      -- (a Ctrl-C that comes before the prompt turned echo off shows as ^C: the line still ends there)
      assert.truthy(t:screen():find("you type%): *%^?C?\nfreshbooks: interrupted\n"), t:screen())
      assert.truthy(C.until_true(function() return C.read(tty) ~= "" end, 5))
      assert.truthy(C.read(tty):find("[ ;]echo "), C.read(tty))
      assert.is_nil(C.read(tty):find("-echo ", 1, true))
    end)

    it("--paste: the person pastes the address the browser landed on (https redirect URI)", function()
      local https = "https://example.com/freshbooks/callback"
      local t = w:tmux("login --paste", { vars = { FB_REDIRECT_URI = https, BROWSER = "true" } })
      finally(function() t:close() end)
      local url = t:expect("(http://%S+/oauth/authorize/%?%S+)")
      assert.truthy(url, t:screen())
      assert.truthy(t:expect("Paste it here: %s*$"), t:screen())
      local landed = consent(url)
      assert.equal(https, landed:sub(1, #https))
      t:type(landed)
      assert.equal(0, t:wait(), t:screen())
      assert.truthy(t:screen():find("Connected to FreshBooks as Alice Sandbox", 1, true))
      assert.equal("600", C.mode(w.tokens))
      assert_no_secret(t:screen())
    end)

    it("--paste takes the address as people paste it: in quotes or angle brackets, with spaces around", function()
      local https = "https://example.com/freshbooks/callback"
      for _, wrap in ipairs{ "  '%s'  ", ' "%s"', "<%s> " } do
        local t = w:tmux("login --paste --force", { vars = { FB_REDIRECT_URI = https, BROWSER = "true" } })
        local url = t:expect("(http://%S+/oauth/authorize/%?%S+)")
        assert.truthy(t:expect("Paste it here: %s*$"), t:screen())
        t:type(wrap:format(consent(url)))
        local code = t:wait()
        local screen = t:screen()
        t:close()
        assert.equal(0, code, screen)
        assert.truthy(screen:find("Connected to FreshBooks as Alice Sandbox", 1, true), screen)
      end
    end)

    it("--paste checks the state and the address just the same", function()
      local https = { FB_REDIRECT_URI = "https://example.com/freshbooks/callback", BROWSER = "true" }
      local code, _, err = w:run("login --paste", { vars = https,
        stdin = "https://example.com/freshbooks/callback?code=abc&state=0123\n" })
      assert.equal(1, code)
      assert.truthy(err:find("state does not match", 1, true))
      code, _, err = w:run("login --paste", { vars = https, stdin = "https://evil.example/cb?code=abc&state=1\n" })
      assert.equal(1, code)
      assert.truthy(err:find("that address is not under the redirect URI https://example.com/freshbooks/callback",
        1, true))
      code, _, err = w:run("login --paste", { vars = https, stdin = "" })
      assert.equal(1, code)
      assert.truthy(err:find("no address was pasted", 1, true))
      assert.is_nil(H.read(w.tokens))
    end)

    it("needs --paste for a redirect URI it cannot listen on, and refuses a bad one", function()
      local code, _, err = w:run("login", { vars = { FB_REDIRECT_URI = "https://example.com/freshbooks/callback" } })
      assert.equal(2, code)
      assert.truthy(err:find("is not a loopback address", 1, true))
      assert.truthy(err:find("use --paste", 1, true))
      code, _, err = w:run("login", { vars = { FB_REDIRECT_URI = "http://example.com/cb" } })
      assert.equal(2, code)
      assert.truthy(err:find("must use https", 1, true))
      code, _, err = w:run("login --port 8", { vars = { FB_REDIRECT_URI = "https://example.com/freshbooks/callback" } })
      assert.equal(2, code)
      assert.truthy(err:find("--port needs a loopback redirect URI", 1, true))
    end)

    it("a second login says who is connected and asks (or needs --force), and warns when the user changes",
      function()
        local browser = { BROWSER = C.root .. "/sandbox/browser" }
        local code, _, err = w:run("login", { vars = browser })
        assert.equal(0, code, err)
        local before = C.read(w.tokens)
        -- Nobody to ask: a usage error that says what to do, and nothing changes.
        local out
        code, out, err = w:run("login", { vars = browser })
        assert.same({ 2, "" }, { code, out })
        assert.truthy(err:find("profile default is connected as Alice Sandbox <alice@example.com> at " .. sb.url
          .. ": --force replaces that login, --profile NAME keeps another beside it", 1, true), err)
        assert.equal(before, C.read(w.tokens))
        -- On a terminal: asked; no keeps it.
        local t = w:tmux("login", { vars = browser })
        assert.truthy(t:expect("The profile default is connected as Alice Sandbox <alice@example.com> at [^\n]*%. Log"
          .. " in again and replace it%? %[y/N%] %s*$"), t:screen())
        t:type("n")
        assert.equal(1, t:wait(), t:screen())
        assert.truthy(t:screen():find("login cancelled: Alice Sandbox <alice@example.com> is still connected", 1, true))
        t:close()
        assert.equal(before, C.read(w.tokens))
        -- Yes: the same user again, nothing to warn about.
        t = w:tmux("login", { vars = browser })
        assert.truthy(t:expect("%[y/N%] %s*$"), t:screen())
        t:type("y")
        assert.equal(0, t:wait(), t:screen())
        assert.is_nil(t:screen():find("this login is", 1, true), t:screen())
        t:close()
        -- Another user signs in: said, with both names.
        local job = w:spawn("login --force --no-browser")
        assert.equal(200, browse(job:url(), "carol").status)
        code, out, err = job:wait()
        assert.equal(0, code, err)
        assert.truthy(out:find("Connected to FreshBooks as Carol Baker", 1, true))
        assert.truthy(err:find("this login is Carol Baker <carol@example.com> (identity 1003), not Alice Sandbox"
          .. " <alice@example.com> (identity 1001), who was connected in profile default before", 1, true), err)
      end)
  end)
  describe("settings and profiles", function()
    it("remembers where the login was made (endpoints, CA file); FB_API_URL and then the flags win over it",
      function()
        local tls = { BROWSER = C.root .. "/sandbox/browser" }
        local flags = ("--api-url %s --auth-url %s --ca-file %s"):format(q(sb.tls_url), q(sb.url), q(sb.ca_file))
        local code, _, err = w:run("login " .. flags, { vars = tls, no_flags = true })
        assert.equal(0, code, err)
        local record = cjson.decode(C.read(w.config_home .. "/freshbooks/tokens.login.json"))
        assert.same({ sb.tls_url, sb.url, sb.ca_file, w.redirect_uri, sb.app.client_id },
          { record.api_url, record.auth_url, record.ca_file, record.redirect_uri, record.client_id })
        -- A plain command goes where the login was made (over TLS with its CA), not to production.
        local out
        code, out, err = w:run("status", { no_flags = true })
        assert.equal(0, code, err)
        assert.truthy(out:find("API:          " .. sb.tls_url, 1, true), out)
        -- The environment wins over the record, and a flag over the environment.
        code, _, err = w:run("status", { no_flags = true, vars = { FB_API_URL = "http://127.0.0.1:1" } })
        assert.equal(1, code)
        assert.truthy(err:find("connect", 1, true), err)
        code, out, err = w:run("status --api-url " .. q(sb.url), { no_flags = true,
          vars = { FB_API_URL = "http://127.0.0.1:1" } })
        assert.equal(0, code, err)
        assert.truthy(out:find("API:          " .. sb.url .. "\n", 1, true), out)
        code, _, err = w:run("status", { no_flags = true, vars = { FB_CA_FILE = "/nonexistent/ca.pem" } })
        assert.equal(2, code)
        assert.truthy(err:find("the CA file /nonexistent/ca.pem (from FB_CA_FILE) cannot be read", 1, true), err)
        -- Tokens of one app, credentials of another: said, not refused later as a dead login.
        code, _, err = w:run("status", { no_flags = true, vars = { FB_CLIENT_ID = "another-app" } })
        assert.equal(2, code)
        assert.truthy(err:find("were issued to the app with client ID " .. sb.app.client_id .. ", but the client ID"
          .. " in use is another-app (from FB_CLIENT_ID)", 1, true), err)
      end)

    it("keeps logins side by side: --profile and FB_PROFILE, `profiles`, and `use` for the default business",
      function()
        local browser = { BROWSER = C.root .. "/sandbox/browser" }
        local _, code, out, err
        code, _, err = w:run("login", { vars = browser })
        assert.equal(0, code, err)
        local job = w:spawn("--profile work login --no-browser")
        assert.equal(200, browse(job:url(), "carol").status)
        code, out, err = job:wait()
        assert.equal(0, code, err)
        assert.truthy(out:find("Carol Baker", 1, true))
        assert.truthy(out:find("profile work", 1, true))
        assert.equal("600", C.mode(w.config_home .. "/freshbooks/profiles/work/tokens.json"))
        assert.equal("700", C.mode(w.config_home .. "/freshbooks/profiles/work"))
        _, out = w:run("status")
        assert.truthy(out:find("Alice Sandbox", 1, true))
        code, out = w:run("status", { vars = { FB_PROFILE = "work" } })
        assert.equal(0, code)
        assert.truthy(out:find("Carol Baker", 1, true))
        code, out, err = w:run("profiles", { vars = { FB_PROFILE = "work" } })
        assert.equal(0, code, err)
        assert.truthy(out:find("\n  default Alice Sandbox <alice@example.com> ", 1, true), out)
        assert.truthy(out:find("\n%* work%s+Carol Baker <carol@example%.com>"), out)
        _, out = w:run("profiles --json")
        local list = cjson.decode(out)
        assert.same({ "default", "work" }, { list[1].name, list[2].name })
        assert.same({ true, false }, { list[1].active, list[2].active })
        code, _, err = w:run("--profile nobody status")
        assert.equal(3, code)
        assert.truthy(err:find("run `freshbooks login --profile nobody` first", 1, true), err)
        -- The default business: the first, said once at login; `use` chooses another, for good.
        code, _, err = w:run("export clients --format csv")
        assert.equal(0, code, err)
        assert.equal("", err) -- no "using the first of 2 businesses" note on every command
        code, out, err = w:run("use 'sandbox consulting ltd.'")
        assert.equal(0, code, err)
        assert.truthy(out:find("Default business of profile default: Sandbox Consulting Ltd. (account_id xYz92,"
          .. " business_id 1000002)", 1, true), out)
        code, out = w:run("export clients --format csv")
        assert.equal(0, code)
        assert.truthy(out:find("\nxYz92,", 1, true))
        assert.is_nil(out:find("aBcD1", 1, true))
        _, out = w:run("api GET '/accounting/account/{account_id}/users/clients'")
        assert.equal("xYz92", cjson.decode(out).response.result.clients[1].accounting_systemid)
        _, out = w:run("use")
        assert.truthy(out:find("\n%* Sandbox Consulting Ltd%.%s+account_id xYz92"), out)
        -- a token file without a record (an older login): the note, with how to choose
        os.remove(w.config_home .. "/freshbooks/tokens.login.json")
        code, _, err = w:run("export clients --format csv")
        assert.equal(0, code)
        assert.truthy(err:find("the first of 2 businesses; `freshbooks use` chooses the default", 1, true), err)
      end)

    it("a closed stdout is a failure that says so; nothing goes into the command's connections", function()
      connect()
      local since = H.last_seq(sb)
      local code, out, err = w:run("status", { suffix = ">&-" })
      assert.equal(1, code, err)
      assert.equal("", out)
      assert.truthy(err:find("cannot write to stdout: Bad file descriptor", 1, true), err)
      -- what it fetched was a clean request each: no output bytes were sent into a socket on fd 1
      for _, e in ipairs(H.log(sb, since)) do assert.truthy(e.status < 400, e.method .. " " .. e.path) end
      code, out = w:run("status", { suffix = "2>&- <&-" })
      assert.truthy(out:find("Connected to FreshBooks as Alice", 1, true))
      assert.equal(0, code, err)
    end)

    it("status --json: one document for scripts", function()
      connect()
      local code, out, err = w:run("status --json")
      assert.equal(0, code, err)
      local doc = cjson.decode(out)
      assert.same({ 1001, "alice@example.com", "Alice Sandbox" },
        { doc.user.identity_id, doc.user.email, doc.user.name })
      assert.equal(2, #doc.businesses)
      assert.equal("xYz92", doc.businesses[2].account_id)
      assert.equal("user:profile:read", doc.scopes[1])
      assert.truthy(doc.access_token_expires_at:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"))
      assert.equal(w.tokens, doc.tokens)
      assert.equal(sb.url, doc.api_url)
      assert.equal("default", doc.profile)
      assert_no_secret(out .. err)
    end)
  end)

  describe("report", function()
    it("prints the billing report as a table, CSV or JSON", function()
      connect()
      local code, out, err = w:run("report --as-of 2025-06-30")
      assert.equal(0, code, err)
      assert.truthy(out:find("Sandbox Widgets Inc. (account aBcD1, business 1000001): outstanding as of 2025-06-30",
        1, true))
      assert.truthy(out:find("Total%s+CAD"))
      assert.equal("", err) -- stdout is not a terminal here: no progress
      code, out = w:run("report --as-of 2025-06-30 --format csv --business 'Sandbox Consulting Ltd.'")
      assert.equal(0, code)
      assert.equal(1, out:find(require("freshbooks.report").CSV_HEADER, 1, true))
      assert.truthy(out:find("\nSandbox Consulting Ltd.,xYz92,1000002,", 1, true))
      assert.is_nil(out:find("aBcD1", 1, true))
      code, out = w:run("report --as-of 2025-06-30 --format json --business aBcD1")
      assert.equal(0, code)
      local doc = cjson.decode(out)
      assert.equal("aBcD1", doc.businesses[1].account_id)
      assert.equal("USD", doc.businesses[1].totals[1].currency)
    end)

    it("fails clearly: unknown business (1), bad date (2), not connected and dead tokens (3)", function()
      connect()
      local code, _, err = w:run("report --business 'Nope Inc.'")
      assert.equal(1, code)
      assert.truthy(err:find("no business matches 'Nope Inc.'", 1, true))
      -- not a day of the calendar, or more than a date: refused, not aged against some other day
      for _, bad in ipairs{ "yesterday", "2025-02-30", "2025-13-01", "2025-06-30x", "2025-06-30T00:00" } do
        local out
        code, out, err = w:run("report --as-of " .. q(bad))
        assert.equal(2, code, bad)
        assert.equal("", out, bad)
        assert.truthy(err:find("--as-of must be a date YYYY-MM-DD", 1, true), bad)
      end
      os.remove(w.tokens)
      code, _, err = w:run("report")
      assert.equal(3, code)
      assert.truthy(err:find("not connected", 1, true))
      assert(require("freshbooks.store.file")(w.tokens).save{ access_token = "expired-access",
        refresh_token = "revoked-refresh", expires_at = 1 })
      code, _, err = w:run("report")
      assert.equal(3, code)
      assert.truthy(err:find("run `freshbooks login` to connect (again)", 1, true))
      assert.is_nil(err:find("revoked-refresh", 1, true))
      code = w:run("status")
      assert.equal(3, code)
    end)

    it("pads the table by display width and fits it to the terminal (80 columns)", function()
      connect()
      -- Clients whose names are wider or narrower on screen than in bytes, each owing something.
      local names = { "Müller & Söhne GmbH", "株式会社サンプル商事ホールディングス", "Café e\204\129 Crème", "Zoë 👍 Ltd." }
      for _, name in ipairs(names) do
        local file = w.dir .. "/c.json"
        C.write(file, cjson.encode{ client = { organization = name, email = "x@example.com" } })
        local code, out, err = w:run("api POST /accounting/account/xYz92/users/clients --data @" .. q(file))
        assert.equal(0, code, err)
        local id = cjson.decode(out).response.result.client.id
        C.write(file, ('{"invoice":{"customerid":%d,"create_date":"2025-05-01","due_offset_days":10,"lines":[{"name":'
          .. '"x","qty":"1","unit_cost":{"amount":"12345.67","code":"CAD"}}]}}'):format(id))
        code, out, err = w:run("api POST /accounting/account/xYz92/invoices/invoices --data @" .. q(file))
        assert.equal(0, code, err)
        code, _, err = w:run(("api PUT /accounting/account/xYz92/invoices/invoices/%d --data '%s'"):format(
          cjson.decode(out).response.result.invoice.id, '{"invoice":{"action_mark_as_sent":true}}'))
        assert.equal(0, code, err)
      end
      local t = w:tmux("report --as-of 2025-06-30 --business xYz92 --no-pager", { width = 80 })
      finally(function() t:close() end)
      assert.equal(0, t:wait(), t:screen())
      local screen = t:screen()
      local text = require "freshbooks.cli.text"
      local lines, cur_at = {}, {}
      for l in screen:gmatch("[^\n]+") do
        if l:find(" CAD ", 1, true) then lines[#lines + 1] = l end
      end
      assert.truthy(#lines >= 4, screen)
      for _, l in ipairs(lines) do
        assert.truthy(text.width(l) <= 80, l)
        cur_at[#cur_at + 1] = text.width(l:sub(1, l:find(" CAD ", 1, true)))
      end
      for i = 2, #cur_at do assert.equal(cur_at[1], cur_at[i], screen) end -- the currency column lines up
      assert.truthy(screen:find("Müller & Söhne GmbH", 1, true), screen)
      assert.truthy(screen:find("株式会社", 1, true) and screen:find("…", 1, true), screen) -- cut to fit, marked
      -- In 40 columns: a block per client.
      t:close()
      t = w:tmux("report --as-of 2025-06-30 --business xYz92 --no-pager", { width = 40 })
      assert.equal(0, t:wait(), t:screen())
      screen = t:screen()
      assert.truthy(screen:find("\n    Outstanding%s+12345%.67"), screen)
      for l in screen:gmatch("[^\n]+") do assert.truthy(text.width(l) <= 40, l) end
    end)

    it("goes through the pager on a terminal (less), never when piped; --no-pager and --pager", function()
      connect()
      local t = w:tmux("report --as-of 2025-06-30 --business aBcD1", { height = 10 })
      finally(function() t:close() end)
      -- less shows the first screen and waits: the command has not ended
      assert.truthy(t:expect("\n:%s*$") or t:expect("%(END%)"), t:screen())
      assert.is_nil(C.read(t.rc):match("%d"))
      os.execute(("tmux -S %s send-keys -t 0 q"):format(q(t.sock)))
      assert.equal(0, t:wait(), t:screen())
      t:close()
      -- Piped: no pager whatever $PAGER says.
      local pager = w.dir .. "/pager"
      C.write(pager, ("#!/bin/sh\necho paged >%s\ncat\n"):format(q(w.dir .. "/paged")), "755")
      local code, out = w:run("report --as-of 2025-06-30", { vars = { PAGER = pager } })
      assert.equal(0, code)
      assert.truthy(out:find("Total", 1, true))
      assert.is_nil(H.read(w.dir .. "/paged"))
      local screen
      code, screen = w:pty("report --as-of 2025-06-30 --no-pager", { vars = { PAGER = pager } })
      assert.equal(0, code, screen)
      assert.is_nil(H.read(w.dir .. "/paged"))
      code, screen = w:pty("status --pager", { vars = { PAGER = pager } })
      assert.equal(0, code, screen)
      assert.equal("paged\n", H.read(w.dir .. "/paged"))
      assert.truthy(screen:find("Connected to FreshBooks as Alice", 1, true))
    end)

    it("says each failed business once, and that the report is incomplete", function()
      connect()
      sb:admin("POST", "/_sandbox/faults", { route = "/invoices/invoices$", fault = "503", times = 16 })
      finally(function() sb:admin("DELETE", "/_sandbox/faults") end)
      local code, out, err = w:run("report --as-of 2025-06-30 --format csv")
      assert.equal(1, code, err)
      assert.equal(require("freshbooks.report").CSV_HEADER .. "\n", out)
      local _, n = err:gsub("Service Unavailable", "")
      assert.equal(2, n, err)
      assert.is_nil(err:find("freshbooks: freshbooks:", 1, true))
      assert.is_nil(err:find(": freshbooks: ", 1, true), err)
      assert.truthy(err:find("the report is incomplete: 2 businesses could not be read (above)", 1, true), err)
    end)
  end)

  describe("export", function()
    local function lines(s)
      local t = {}
      for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
      return t
    end

    it("streams every record as JSON lines, in order, once each", function()
      connect()
      local code, out, err = w:run("export invoices --business aBcD1 --parallel 3")
      assert.equal(0, code, err)
      assert.equal("", err)
      local ids = {}
      for i, l in ipairs(lines(out)) do
        local rec = cjson.decode(l)
        assert.equal("aBcD1", rec.accountid)
        ids[i] = rec.id
        if i > 1 then assert.is_true(ids[i] > ids[i - 1]) end
      end
      assert.equal(250, #ids)
      assert_no_secret(out .. err)
    end)

    it("writes CSV with a header; --search, --include and --sort reach FreshBooks", function()
      connect()
      local fb = H.session(sb)
      local want = assert(fb:account("aBcD1").invoices:all{ search = { customerid = 10017 } })
      assert.is_true(#want > 0)
      local code, out, err = w:run("export invoices --format csv --search customerid=10017 --sort=-id")
      assert.equal(0, code, err)
      assert.truthy(err:find("using Sandbox Widgets Inc. (account_id aBcD1, business_id 1000001), the first of 2", 1,
        true))
      local rows = lines(out)
      local cols = H.split_csv(rows[1])
      local sorted = {}
      for i, c in ipairs(cols) do sorted[i] = c end
      table.sort(sorted)
      assert.same(sorted, cols)
      local at = {}
      for i, c in ipairs(cols) do at[c] = i end
      assert.truthy(at["outstanding.amount"])
      assert.equal(#want + 1, #rows)
      local last = math.huge
      for i = 2, #rows do
        local f = H.split_csv(rows[i])
        assert.equal(#cols, #f)
        assert.equal("10017", f[at.customerid])
        assert.is_true(tonumber(f[at.id]) < last)
        last = tonumber(f[at.id])
      end
      code, out = w:run("export invoices --business xYz92 --include lines")
      assert.equal(0, code)
      local first = cjson.decode(lines(out)[1])
      assert.is_table(first.lines)
      assert.truthy(first.lines[1].amount)
    end)

    it("exports project-family resources by business", function()
      connect()
      local code, out, err = w:run("export projects --business 1000001 --format csv")
      assert.equal(0, code, err)
      assert.equal(13, #lines(out)) -- header + 12 projects
    end)

    it("exports the lists FreshBooks does not page, in one request: ledger accounts by uuid, service rates", function()
      connect()
      local since = H.last_seq(sb)
      local code, out, err = w:run("export ledger_accounts --business 1000001")
      assert.equal(0, code, err)
      local want = assert(H.session(sb):accounting_business("4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001")
        .ledger_accounts:list())
      local got = lines(out)
      assert.equal(#want, #got)
      assert.equal(want[1].uuid, cjson.decode(got[1]).uuid)
      code, out, err = w:run("export service_rates --business 1000001 --format csv")
      assert.equal(0, code, err)
      assert.equal("business_id,rate,service_id", lines(out)[1])
      assert.equal(5, #lines(out)) -- header + the 4 seeded rates
      local routes = {}
      for _, e in ipairs(H.log(sb, since)) do
        if not e.route:find("^/auth/") then routes[#routes + 1] = e.method .. " " .. e.route end -- identity, tokens
      end
      assert.same({ "GET /accounting/businesses/{business_uuid}/ledger_accounts/accounts",
        "GET /accounting/businesses/{business_uuid}/ledger_accounts/accounts",
        "GET /comments/business/{business_id}/service_rates" }, routes)
    end)

    it("holds one window of pages, not the export: peak memory for 6,000 invoices as for 30", function()
      local big = sandbox.start{ invoices = 6000 }
      finally(function() big:stop() end)
      local bw = C.world(big)
      finally(function() bw:cleanup() end)
      os.execute("mkdir -p -m 700 " .. q(bw.config_home .. "/freshbooks"))
      assert(require("freshbooks.store.file")(bw.tokens).save(big:token{ user = "alice" }))
      local function peak(business)
        local rss, file = bw.dir .. "/rss", bw.dir .. "/out.jsonl"
        local code, _, err = bw:run(("export invoices --business %s --parallel 4 -o %s"):format(business, q(file)),
          { prefix = "/usr/bin/time -f %M -o " .. q(rss), timeout = 60 })
        assert.equal(0, code, err)
        return tonumber(C.read(rss):match("(%d+)%s*$")), select(2, C.read(file):gsub("\n", ""))
      end
      local small, n_small = peak("xYz92")
      local large, n_large = peak("aBcD1")
      assert.equal(30, n_small)
      assert.equal(6000, n_large)
      -- Holding 6,000 decoded invoices would take 14 MB and more (~2.4 KiB each); one window of 4 pages
      -- takes a few. Lua 5.3's collector lets more garbage pile up between cycles (6.3 MB seen with four
      -- spec jobs at a time; with setpause 100 it stays under 4 MB too): still well under a held export.
      local slack = _VERSION == "Lua 5.3" and 8192 or 4096
      assert.is_true(large - small < slack, ("peak RSS %d KB for 30 invoices, %d KB for 6000"):format(small, large))
    end)

    it("-o FILE that cannot be renamed into place leaves no temp file behind", function()
      connect()
      -- `-o ''` puts its temp file in the working directory: one of the spec's own, empty
      local cwd = w.dir .. "/cwd"
      os.execute("mkdir -p " .. q(cwd))
      local code, out, err = w:run("export clients --business aBcD1 -o ''", { cwd = cwd })
      assert.equal(1, code, err)
      assert.equal("", out)
      assert.truthy(err:find("cannot write", 1, true), err)
      assert.same({}, C.ls(cwd))
    end)

    it("-o FILE: replaced only by a complete export", function()
      connect()
      local file = w.dir .. "/invoices.jsonl"
      C.write(file, "previous export\n")
      sb:admin("POST", "/_sandbox/faults", { route = "/invoices/invoices$", fault = "malformed", skip = 1, times = 1 })
      local code, out, err = w:run("export invoices --business aBcD1 --parallel 1 -o " .. q(file))
      assert.equal(1, code)
      assert.equal("", out)
      assert.truthy(err:find("export of invoices stopped: bad_response", 1, true))
      assert.equal("previous export\n", C.read(file))
      assert.same({ "invoices.jsonl" }, (function()
        local t = {}
        for _, n in ipairs(C.ls(w.dir)) do if n:find("^invoices") then t[#t + 1] = n end end
        return t
      end)())
      code, out, err = w:run("export invoices --business aBcD1 -o " .. q(file))
      assert.equal("", out)
      assert.equal(0, code, err)
      assert.equal(250, #lines(C.read(file)))
      -- Not a regular file: written in place, never replaced (as root a rename would replace /dev/null).
      code, out, err = w:run("export invoices --business aBcD1 -o /dev/null")
      assert.equal(0, code, err)
      assert.equal("", out)
      assert.equal("character special file", C.sh("stat -c %F /dev/null"):match("[^\n]+"))
    end)

    it("Ctrl-C mid-export stops the request in flight and leaves no partial file behind", function()
      connect()
      local file = w.dir .. "/invoices.csv"
      -- the second page hangs for a minute: the Ctrl-C must abort it, not wait for it (job:wait gives 10 s)
      sb:admin("POST", "/_sandbox/faults", { route = "/invoices/invoices$", fault = "delay", ms = 60000, skip = 1,
        times = 1 })
      finally(function() sb:admin("DELETE", "/_sandbox/faults") end)
      local job = w:spawn("export invoices --business aBcD1 --parallel 1 --format csv -o " .. q(file))
      assert.truthy(C.until_true(function() return table.concat(C.ls(w.dir), " "):find("%.part") end, 10))
      job:signal("INT")
      local code, out, err = job:wait(10)
      assert.equal(130, code, err)
      assert.equal("", out)
      assert.truthy(err:find("freshbooks: interrupted", 1, true))
      assert.is_nil(table.concat(C.ls(w.dir), " "):find("invoices.csv", 1, true))
    end)

    it("refuses unknown resources and bad filters with exit 2, before any request", function()
      connect()
      local since = H.last_seq(sb)
      local cases = {
        { "export invoicez", "unknown resource 'invoicez': did you mean invoices? the resources: clients, invoices," },
        { "export attachments", "unknown resource 'attachments'" },
        { "export profit_and_loss", "unknown resource 'profit_and_loss'" },
        { "export systems", "unknown resource 'systems'" },
        { "export invoice_payment_options", "unknown resource 'invoice_payment_options'" },
        { "export invoices --search customerid", "--search expects key=value, got 'customerid'" },
        { "export invoices --search =42", "--search expects key=value, got '=42'" },
        { "export invoices --search 'search[x]=1'", "--search expects key=value, got 'search[x]=1'" },
        { "export invoices --search 'a b=1'", "--search expects key=value" },
        { "export invoices --sort 'id;drop'", "--sort expects a field name" },
        { "export invoices --include 'lines&x=1'", "--include expects a name" },
        { "export invoices --format xml", "argument for option '--format' must be one of 'jsonl', 'csv'" },
      }
      for _, c in ipairs(cases) do
        local code, out, err = w:run(c[1])
        assert.equal(2, code, c[1])
        assert.equal("", out)
        assert.truthy(err:find(c[2], 1, true), c[1] .. ": " .. err)
      end
      assert.equal(0, #H.log(sb, since))
    end)

    it("writes valid UTF-8 JSON lines and CSV whatever bytes FreshBooks sends", function()
      connect()
      local file = w.dir .. "/c.json"
      C.write(file, '{"client":{"organization":"Bad \255\254 UTF \195 end \237\160\128!","email":"u@example.com"}}')
      local _, code, err
      code, _, err = w:run("api POST /accounting/account/xYz92/users/clients --data @" .. q(file))
      assert.equal(0, code, err)
      local text = require "freshbooks.cli.text"
      for _, format in ipairs{ "jsonl", "csv" } do
        local out
        code, out, err = w:run("export clients --business xYz92 --format " .. format)
        assert.equal(0, code, err)
        assert.equal(out, text.utf8(out), format .. " is not valid UTF-8")
        assert.truthy(out:find("Bad \239\191\189\239\191\189 UTF \239\191\189 end", 1, true), out)
      end
      local out
      code, out = w:run("report --as-of 2025-06-30 --format json")
      assert.equal(0, code)
      assert.equal(out, text.utf8(out))
    end)

    it("says that it waits for FreshBooks' rate limit, and until when", function()
      connect()
      sb:admin("POST", "/_sandbox/faults", { route = "/invoices/invoices$", fault = "429", times = 1, retry_after = 2 })
      finally(function() sb:admin("DELETE", "/_sandbox/faults") end)
      local code, out, err = w:run("export invoices --business aBcD1 --parallel 1")
      assert.equal(0, code, err)
      assert.equal(250, #lines(out))
      local h, m, s = err:match("FreshBooks' rate limit: waiting 2 s, until (%d%d):(%d%d):(%d%d), then trying again")
      assert.truthy(h, err)
      local now = os.date("*t")
      local delta = (now.hour * 3600 + now.min * 60 + now.sec) - (h * 3600 + m * 60 + s)
      assert.truthy(delta >= -1 and delta <= 5, err)
    end)

    it("exits 4 when FreshBooks keeps answering 429, and 3 when not connected", function()
      connect()
      sb:admin("POST", "/_sandbox/faults", { route = "/invoices/invoices$", fault = "429", times = 8, retry_after = 0 })
      local code, _, err = w:run("export invoices --business aBcD1")
      sb:admin("DELETE", "/_sandbox/faults")
      assert.equal(4, code, err)
      assert.truthy(err:find("rate limit", 1, true))
      os.remove(w.tokens)
      code, _, err = w:run("export invoices")
      assert.equal(3, code)
      assert.truthy(err:find("run `freshbooks login` first", 1, true))
    end)

    for _, sig in ipairs{ "default", "ignore" } do
      it("stops quietly when its reader goes away (SIGPIPE " .. sig .. ")", function()
        connect()
        local pipeline = ("env --%s-signal=PIPE sh -c %s | head -n 3; echo \"rc=${PIPESTATUS[0]}\""):format(sig,
          q(w:line("export invoices --business aBcD1 --format csv --include lines", nil, true) .. " 2>"
            .. q(w.dir .. "/err")))
        local out = C.sh("bash -c " .. q(pipeline))
        local l = lines(out)
        assert.equal(4, #l, out)
        assert.truthy(l[1]:find("^accountid,"))
        assert.equal("rc=141", l[4])
        assert.equal("", C.read(w.dir .. "/err"))
      end)
    end

    it("shows no progress bar when -o names the pipe or the terminal the records go to", function()
      connect()
      local code, screen = w:pty("export invoices --business aBcD1 --parallel 1 -o /dev/stdout", { suffix = "| wc -l" })
      assert.equal(0, code, screen)
      assert.truthy(screen:find("^%s*250%s*$"), screen)
      code, screen = w:pty("export invoices --business aBcD1 --parallel 1 -o /dev/tty")
      assert.equal(0, code, screen)
      assert.is_nil(screen:find("pages", 1, true), screen)
      assert.truthy(screen:find('"invoice_number":"0000250"', 1, true), screen)
    end)

    it("shows a progress bar on a terminal, and none when piped", function()
      connect()
      local file = w.dir .. "/out.jsonl"
      local code, screen = w:pty("export invoices --business aBcD1 --parallel 1 -o " .. q(file))
      assert.equal(0, code, screen)
      assert.equal(250, #lines(C.read(file)))
      assert.truthy(screen:find("\rinvoices %[######%-+%] 1/3 pages  100 records  [%d,]+/s  ETA %d+s\27%[K"), screen)
      assert.truthy(screen:find("\rinvoices %[#+%] 3/3 pages  250 records  [%d,]+/s  done in [%d.]+s\27%[K\r?\n"),
        screen)
      -- The same terminal, but the records go into a pipe: no bar.
      code, screen = w:pty("export invoices --business aBcD1", { suffix = "| wc -l" })
      assert.equal(0, code, screen)
      assert.truthy(screen:find("^%s*250%s*$"), screen)
      -- stderr not a terminal: nothing on it.
      local out, err
      code, out, err = w:run("export invoices --business aBcD1 -o " .. q(file))
      assert.equal("", out)
      assert.equal(0, code)
      assert.equal("", err)
    end)
  end)

  describe("the token store", function()
    it("saves a refreshed pair into a token file whose name is as long as the file system allows", function()
      local t = sb:token{ user = "alice" }
      t.expires_at = 1
      local path = w.dir .. "/" .. ("t"):rep(245) .. ".json" -- 250 bytes: its lock file still fits in 255
      assert(require("freshbooks.store.file")(path).save(t))
      local since = H.last_seq(sb)
      local code, out, err = w:run("status --tokens " .. q(path))
      assert.equal(0, code, err)
      assert.truthy(out:find("Connected to FreshBooks as Alice", 1, true))
      assert.are_not.equal(t.refresh_token, cjson.decode(C.read(path)).refresh_token)
      code, out, err = w:run("status --tokens " .. q(path))
      assert.equal(0, code, err)
      assert.truthy(out:find("Connected to FreshBooks as Alice", 1, true))
      assert.equal(1, token_posts(since))
    end)

    it("keeps the refresh token FreshBooks issued when Ctrl-C comes while its answer is on the way", function()
      local t = sb:token{ user = "alice" }
      t.expires_at = 1 -- the access token is stale: the first call refreshes
      os.execute("mkdir -p -m 700 " .. q(w.config_home .. "/freshbooks"))
      assert(require("freshbooks.store.file")(w.tokens).save(t))
      -- FreshBooks rotates at once (the stored refresh token is spent), its answer arrives 2.5 s later.
      sb:admin("POST", "/_sandbox/faults", { route = "/auth/oauth/token", fault = "delay_after", ms = 2500, times = 1 })
      finally(function() sb:admin("DELETE", "/_sandbox/faults") end)
      local since = H.last_seq(sb)
      local job = w:spawn("status")
      assert.truthy(C.until_true(function() return token_posts(since) == 1 end, 10), "no refresh")
      require("freshbooks.core").clock.sleep(0.3)
      job:signal("INT")
      local code, out, err = job:wait(10)
      assert.equal(130, code, err)
      assert.truthy(err:find("freshbooks: interrupted", 1, true))
      assert_no_secret(out .. err, { t.refresh_token })
      local stored = cjson.decode(C.read(w.tokens))
      assert.are_not.equal(t.refresh_token, stored.refresh_token)
      code, out, err = w:run("status")
      assert.equal(0, code, err) -- the new pair is the one stored: still connected
      assert.truthy(out:find("Connected to FreshBooks as Alice", 1, true))
      assert.equal(1, token_posts(since))
    end)
  end)

  describe("api", function()
    it("makes one authenticated request and prints FreshBooks' JSON", function()
      connect()
      local code, out, err = w:run("api GET /auth/api/v1/users/me")
      assert.equal(0, code, err)
      assert.equal("alice@example.com", cjson.decode(out).response.email)
      code, out, err = w:run("api get '/accounting/account/{account_id}/users/clients' --business xYz92"
        .. " --query per_page=2 --query page=2")
      assert.equal(0, code, err)
      local result = cjson.decode(out).response.result
      assert.equal(2, #result.clients)
      assert.equal(2, result.page)
      assert.equal("xYz92", result.clients[1].accounting_systemid)
      code, out, err = w:run("api GET '/accounting/businesses/{business_uuid}/ledger_accounts/accounts'"
        .. " --business xYz92")
      assert.equal(0, code, err)
      assert.equal("Cash", cjson.decode(out).data[1].name)
      assert.equal(assert(H.session(sb):accounting_business("4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0002")
        .ledger_accounts:list())[1].uuid, cjson.decode(out).data[1].uuid)
      C.write(w.dir .. "/client.json",
        cjson.encode{ client = { organization = "CLI Test Co.", email = "cli@example.com" } })
      code, out, err = w:run("api POST /accounting/account/aBcD1/users/clients --data @" .. q(w.dir .. "/client.json"))
      assert.equal(0, code, err)
      assert.equal("CLI Test Co.", cjson.decode(out).response.result.client.organization)
      assert_no_secret(out .. err)
    end)

    it("an unknown {placeholder} is a usage error before any request; a 403's hint matches its cause", function()
      local _
      connect()
      local since = H.last_seq(sb)
      local code, out, err = w:run("api GET '/accounting/account/{acount_id}/users/clients'")
      assert.same({ 2, "" }, { code, out })
      assert.truthy(err:find("PATH holds {acount_id}, which is not a placeholder; did you mean {account_id}?", 1, true),
        err)
      code, _, err = w:run("api GET '/x/{nope}'")
      assert.equal(2, code)
      assert.truthy(err:find("the placeholders: {account_id}, {business_id}, {business_uuid}", 1, true), err)
      assert.equal(0, #H.log(sb, since))
      -- a business the user does not belong to: no word of scopes
      code, _, err = w:run("api GET /accounting/account/QmP57/invoices/invoices")
      assert.equal(1, code)
      assert.truthy(err:find("does not have access", 1, true), err)
      assert.truthy(err:find("a business it does not belong to", 1, true), err)
      assert.is_nil(err:find("scope", 1, true), err)
      -- a grant without the scope: the scope hint
      os.remove(w.tokens)
      assert(require("freshbooks.store.file")(w.tokens).save(sb:token{ user = "alice", scope = "user:profile:read" }))
      code, _, err = w:run("api GET /accounting/account/aBcD1/invoices/invoices")
      assert.equal(1, code)
      assert.truthy(err:find("the grant lacks a scope this needs", 1, true), err)
    end)

    it("says each thing once: no field error repeating the message, no code twice", function()
      connect()
      local code, _, err = w:run("api GET /accounting/account/aBcD1/invoices/invoices/999999")
      assert.equal(1, code)
      local _, n = err:gsub("Invoice not found", "")
      assert.equal(1, n, err)
      C.write(w.tokens, '{"access_token": "x"}', "600")
      code, _, err = w:run("status")
      assert.equal(3, code)
      local _, c = err:gsub("store_corrupt", "")
      assert.equal(1, c, err)
    end)

    it("indents JSON on a terminal and prints FreshBooks' body exactly when piped", function()
      connect()
      local code, out = w:run("api GET /auth/api/v1/users/me")
      assert.equal(0, code)
      assert.is_nil(out:find("\n  ", 1, true)) -- as FreshBooks sent it: one line
      local screen
      code, screen = w:pty("api GET /auth/api/v1/users/me")
      assert.equal(0, code, screen)
      assert.truthy(screen:find('{\r?\n  "response": {\r?\n    "'), screen)
      -- the same document, member for member
      local doc = cjson.decode((screen:gsub("\r", "")))
      assert.same(cjson.decode(out), doc)
    end)

    it("fails clearly: usage (2), FreshBooks' errors (1), not connected (3)", function()
      connect()
      local cases = {
        { "api FETCH /x", 2, "unknown method 'FETCH'" },
        { "api GET auth/api/v1/users/me", 2, "PATH must start with /" },
        { "api POST /accounting/account/aBcD1/users/clients --data '{bad'", 2, "--data is not valid JSON" },
        { "api GET /x --query novalue", 2, "--query expects key=value, got 'novalue'" },
        { "api POST /x --data @/nonexistent/file", 2, "--data: cannot read" },
        { "api POST /x --data @/dev/zero", 2, "--data: /dev/zero is over 16 MiB" },
        { "api GET /accounting/account/aBcD1/users/clients/999999", 1, "not_found" },
        { "api POST /accounting/account/aBcD1/invoices/invoices --data '{\"invoice\": {}}'", 1, "validation" },
      }
      for _, c in ipairs(cases) do
        local code, out, err = w:run(c[1])
        assert.equal(c[2], code, c[1] .. ": " .. err)
        assert.equal("", out)
        assert.truthy(err:find(c[3], 1, true), c[1] .. ": " .. err)
        assert.is_nil(err:find("traceback", 1, true))
      end
      os.remove(w.tokens)
      local code = w:run("api GET /auth/api/v1/users/me")
      assert.equal(3, code)
    end)
  end)

  describe("completion", function()
    -- A shell on a terminal with the completion loaded, `freshbooks` on its PATH; typing, then Tab.
    local function shell(name)
      local bin = w.dir .. "/bin"
      os.execute("mkdir -p " .. q(bin))
      C.write(bin .. "/freshbooks", ("#!/bin/sh\nexec %s \"$@\"\n"):format(C.command), "755")
      local script = w.dir .. "/completion." .. name
      local code, out, err = w:run("completion " .. name)
      assert.equal(0, code, err)
      C.write(script, out)
      local start = ({
        bash = "bash --norc --noprofile -i",
        zsh = "zsh -f -i",
        fish = "fish --no-config -i",
      })[name]
      -- (no history file: a shell writes it when its terminal goes away, after the spec's cleanup)
      local t = w:tmux(start, { raw = true, vars = { PATH = bin .. ":" .. os.getenv("PATH"), PS1 = "$ ",
        HISTFILE = "/dev/null", fish_private_mode = "1" } })
      local load = ({
        bash = ". " .. q(script),
        zsh = "PS1='$ '; autoload -U compinit && compinit -u -D && . " .. q(script),
        fish = "function fish_prompt; echo '$ '; end; source " .. q(script),
      })[name]
      t:type(load)
      t:type("echo loaded")
      assert.truthy(t:expect("\nloaded%s*\n%$ %s*$"), t:screen())
      return t
    end

    -- Type, Tab, see; then clear the line and wait for the empty prompt (a Ctrl-C would make readline
    -- drop what is typed next).
    local function tab(t, typed, want)
      os.execute(("tmux -S %s send-keys -t 0 -l %s"):format(q(t.sock), q(typed)))
      os.execute(("tmux -S %s send-keys -t 0 Tab"):format(q(t.sock)))
      local found = t:expect(want, 10)
      os.execute(("tmux -S %s send-keys -t 0 C-e C-u"):format(q(t.sock)))
      assert.truthy(t:expect("\n%$ %s*$"), t:screen())
      return found
    end

    for _, name in ipairs{ "bash", "zsh", "fish" } do
      it(name .. " completes commands, options, resources, report kinds, profiles and businesses", function()
        local code, _, err = w:run("login", { vars = { BROWSER = C.root .. "/sandbox/browser" } })
        assert.equal(0, code, err)
        os.execute("mkdir -p -m 700 " .. q(w.config_home .. "/freshbooks/profiles/work"))
        local t = shell(name)
        finally(function() t:close() end)
        assert.truthy(tab(t, "freshbooks expo", "freshbooks export "), t:screen())
        assert.truthy(tab(t, "freshbooks export invoice_p", "freshbooks export invoice_profiles "), t:screen())
        assert.truthy(tab(t, "freshbooks report bil", "freshbooks report billing "), t:screen())
        assert.truthy(tab(t, "freshbooks export invoices --form", "freshbooks export invoices %-%-format "), t:screen())
        assert.truthy(tab(t, "freshbooks export invoices --format c", "%-%-format csv "), t:screen())
        assert.truthy(tab(t, "freshbooks --profile wo", "freshbooks %-%-profile work "), t:screen())
        assert.truthy(tab(t, "freshbooks use Sandbox\\ Cons", "Sandbox\\? ?Consulting\\? ?Ltd%."), t:screen())
      end)
    end
  end)

  describe("make sandbox", function()
    it("prints commands that log in and report when pasted into another shell; TERM stops the sandbox", function()
      local mport = C.free_port()
      local out = w.dir .. "/make.out"
      local pid = w:background(("cd %s && make -s sandbox SANDBOX_ARGS='--redirect-uri http://localhost:%d/callback'"
        .. " >%s 2>&1"):format(q(C.root), mport, q(out)))
      assert.truthy(C.until_true(function() return C.read(out):find("head\n") end, 20), C.read(out))
      local printed = C.read(out):match("\n(export FB_PROFILE=.*)$")
      assert.truthy(printed, C.read(out))
      -- pasted as is, in a shell with nothing of ours but a config home
      local ran = C.sh(("env -i PATH=%s XDG_CONFIG_HOME=%s HOME=%s bash -c %s"):format(q(os.getenv("PATH")),
        q(w.config_home), q(w.dir), q("set -e\n" .. printed)), 60)
      assert.truthy(ran:find("Connected to FreshBooks as Alice Sandbox", 1, true), ran)
      assert.truthy(ran:find("Total%s+USD"), ran)
      assert.truthy(ran:find("\naccountid,", 1, true), ran)
      assert.truthy(C.read(w.config_home .. "/freshbooks/profiles/sandbox/tokens.json") ~= "")
      local prefix = C.read(out):match("FB_CA_FILE=(/%S+)/tls/ca%.pem")
      assert.truthy(prefix)
      os.execute("kill -TERM " .. pid)
      assert.truthy(C.until_true(function() return not H.read(prefix .. "/nginx.conf") end, 10), "not stopped")
    end)
  end)
end)
