-- No secret leaves the library: a scripted FreshBooks that echoes the client secret and the tokens
-- back in every error shape it has (messages, field names and values, HTML titles, RFC 6749
-- descriptions, rpc metadata), store hooks whose errors quote the tokens, and a log hook recording
-- everything. Every string that leaves (returns, errors and their field errors and causes, log
-- events, tostring of every object) is searched for every secret value, for long hex secrets and
-- for short, letters-only and symbol-laden ones, which no look-alike heuristic could recognise.
local cjson = require "cjson"
local freshbooks = require "freshbooks"
local errors = require "freshbooks.errors"

local STYLES = {
  hex64 = function(n) return ("%08x"):format(n):rep(8) end,
  short = function(n) return "s" .. ("%05d"):format(n) .. "kQ" end,       -- 8 characters
  letters = function(n) return ("abcdefghijklmnopqrst"):gsub(".", function(c)
    return string.char((c:byte() - 97 + n) % 26 + 97) end) end,             -- 20 letters, no digit
  symbols = function(n) return "t." .. n .. "-x_y~z+w/v=" .. n end,
}

-- The hostile server: tokens from `mint`, and each error shape quoting the secrets it knows.
local function scripted(secret, mint)
  local issued = {}
  local function known() return issued[#issued] or { access_token = "?", refresh_token = "?" } end
  local t = {}
  local function answer(status, body, headers)
    local h = headers or {}
    h["content-type"] = h["content-type"] or "application/json"
    return { status = status, headers = h, body = type(body) == "table" and cjson.encode(body) or body }
  end
  local routes = {
    ["/auth/oauth/token"] = function(req)
      local f = cjson.decode(req.body)
      if f.refresh_token == "refuse-me" then
        return answer(400, { error = "invalid_grant", error_description = "refresh token " .. f.refresh_token ..
          " with client secret " .. f.client_secret .. " is not valid" })
      end
      local pair = { access_token = mint(), refresh_token = mint() }
      issued[#issued + 1] = pair
      return answer(200, { access_token = pair.access_token, refresh_token = pair.refresh_token, token_type = "Bearer",
        expires_in = 43200, created_at = os.time(), scope = "user:profile:read" })
    end,
    ["/legacy"] = function() local k = known()
      return answer(400, { response = { errors = { { errno = 1004, field = k.access_token, object = "client",
        message = "bad " .. k.refresh_token, value = secret } } } }) end,
    ["/rpc"] = function() local k = known()
      return answer(200, { code = 3, message = "token " .. k.access_token, details = { { reason = "1004",
        metadata = { value = k.refresh_token, field = secret, message = secret } } } }) end,
    ["/business"] = function() local k = known()
      return answer(400, { errors = { message = k.access_token, status = 400, details = { { reason = k.refresh_token,
        metadata = { field = secret, value = k.access_token } } } } }) end,
    ["/project"] = function() local k = known()
      return answer(422, { errno = 2001, error = { [k.access_token] = "invalid " .. k.refresh_token } }) end,
    ["/html"] = function() local k = known()
      return answer(502, "<html><head><title>upstream " .. k.access_token .. "</title></head></html>",
        { ["content-type"] = "text/html" }) end,
    ["/unauthorized"] = function() local k = known()
      return answer(403, { error = "invalid_token", error_description = "the token " .. k.access_token ..
        " lacks a scope; refresh with " .. k.refresh_token }) end,
    ["/oauth_name"] = function() local k = known()
      return answer(401, { error = "bad " .. k.refresh_token, error_description = "token " .. k.access_token }) end,
    ["/ratelimit"] = function() return answer(429, { message = "slow down " .. secret },
      { ["retry-after"] = "1" }) end,
    -- (a success: its data reaches the host as FreshBooks sent it; guests get fb:redact'ed copies)
    ["/auth/api/v1/users/me"] = function() return answer(200, { response = { id = 1, business_memberships = {
      { id = 5, role = "owner", business = { id = 77, account_id = "acc1", name = "Biz" } } } } })
    end,
  }
  setmetatable(t, { __call = function(_, req)
    local path = req.url:match("^https?://[^/]+([^?]*)")
    local route = routes[path] or routes[path:match("(/[%w_]+)$") or ""]
    if not route then return answer(404, { message = "no route " .. path }) end
    return route(req)
  end })
  t.issued = issued
  return t
end

describe("secrets never leave the library", function()
  for style, make in pairs(STYLES) do
    it("with " .. style .. " secrets", function()
      local n = 0
      local function mint() n = n + 1; return make(n) end
      local secret = mint()
      local server = scripted(secret, mint)
      local out = {} -- every string that left
      local function collect(v, depth)
        depth = depth or 0
        if depth > 6 then return end
        local ty = type(v)
        if ty == "string" then out[#out + 1] = v
        elseif ty == "number" or ty == "boolean" or ty == "nil" then return
        elseif errors.is(v) then
          out[#out + 1] = tostring(v)
          for k, x in pairs(v) do if k ~= "tokens" then collect(x, depth + 1) end end -- tokens: the caller's, by design
        elseif ty == "table" then
          for k, x in pairs(v) do collect(k, depth + 1); collect(x, depth + 1) end
        else
          out[#out + 1] = tostring(v)
        end
      end
      local stored = nil
      local fail_store = false
      local fb = freshbooks.new{
        client_id = "app", client_secret = secret, redirect_uri = "https://example.com/cb", api_url = "https://fb.test",
        transport = server, retry = { attempts = 2, base_delay = 0, sleep = function() end },
        log = function(e) collect(e) end,
        load = function()
          if fail_store then return nil, "cannot read tokens " .. (stored and stored.refresh_token or "") end
          return stored
        end,
        save = function(new)
          if fail_store then error("disk full writing " .. new.refresh_token .. " and " .. new.access_token, 0) end
          stored = new
          return true
        end,
        lock = function() return function() end end,
      }
      -- authorize (the code exchange), then every error shape, then refreshes that fail
      assert(fb:authorize_callback("code=abc&state=s1", "s1"))
      for _, path in ipairs{ "/legacy", "/rpc", "/business", "/project", "/html", "/unauthorized", "/oauth_name",
          "/ratelimit", "/nowhere" } do
        local res, err = fb:request{ path = path }
        assert.is_nil(res, path)
        collect(err)
      end
      local acct = fb:account("acc1")
      collect(tostring(fb)); collect(tostring(acct.clients)); collect(tostring(acct.reports.profit_and_loss))
      collect({ acct.clients:get(1) }); collect({ acct.clients:list{ search = { email = secret } } })
      collect(fb:memberships())
      collect({ fb:refresh() })
      fail_store = true
      collect({ fb:refresh() })        -- save raises quoting the new tokens: save_failed
      collect({ fb:request{ path = "/legacy" } }) -- the pending pair cannot be saved either
      fail_store = false
      stored = { access_token = "refuse-me", refresh_token = "refuse-me" }
      collect({ fb:refresh() })        -- the server refuses, quoting the token and the client secret
      collect({ fb:authorize_callback("code=x&state=wrong", "s2") })
      collect({ fb:revoke() })

      local secrets = { secret }
      for _, pair in ipairs(server.issued) do
        secrets[#secrets + 1] = pair.access_token
        secrets[#secrets + 1] = pair.refresh_token
      end
      assert.is_true(#server.issued >= 2 and #out > 40, "the scenario did not run")
      for _, s in ipairs(out) do
        for _, sec in ipairs(secrets) do
          assert.is_nil(s:find(sec, 1, true), ("%s secret %q leaked in %q"):format(style, sec, s))
        end
      end
    end)
  end
end)

describe("secrets and the 1 KiB message cap", function()
  -- A secret no look-alike heuristic recognises (letters only), echoed where errors.new's cut falls:
  -- the session masks exact values after the cut, so the head of the secret must not survive it.
  it("masks a secret the cut goes through", function()
    local secret = "abcdefghijklmnopqrstuvwxyzabcdefghijklmn"
    for pad = 980, 1030 do
      local fb = freshbooks.new{ client_id = "app", client_secret = secret, redirect_uri = "https://example.com/cb",
        api_url = "https://fb.test", tokens = { access_token = "tok", refresh_token = "rt" }, retry = false,
        transport = function() return { status = 400, headers = { ["content-type"] = "application/json" },
          body = cjson.encode{ errno = 1, message = ("."):rep(pad) .. secret .. " is wrong" } } end }
      local _, err = fb:request{ path = "/x" }
      local s = tostring(err)
      assert.is_true(#err.message <= 1027, pad)
      assert.is_nil(s:find(secret:sub(1, 4), 1, true), ("pad %d: %q"):format(pad, s:sub(-40)))
    end
  end)
end)

-- What of a value a text shows, by the masking rule's own measure, computed here the slow way: the
-- longest run of the value's letters and digits (case and other characters between them ignored) that
-- the text holds.
local function projection(s) return (s:gsub("%W", ""):lower()) end
local function shown(text, value)
  local t, v = projection(text), projection(value)
  local best = 0
  for i = 1, #v do
    for j = i + best, #v do
      if not t:find(v:sub(i, j), 1, true) then break end
      best = j - i + 1
    end
  end
  return best
end

describe("secrets quoted reformatted", function()
  -- A hostile server quotes the token and the client secret as it likes: in groups, spaced, on lines,
  -- upper-cased, reversed halves, cut to a head, inside words. No run of 16 of a value's letters and
  -- digits survives, in any error field the caller sees.
  local token = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
  local secret = "Xk3-pQ9_wR7.zT5vN2mL8yH4"
  local shapes = {
    groups = function(v) return (v:gsub("....", "%0 ")) end,
    dashes = function(v) return (v:gsub("........", "%0-")) end,
    lines = function(v) return (v:gsub("........", "%0\n")) end,
    upper = function(v) return v:upper() end,
    halves = function(v) return v:sub(#v / 2 + 1) .. " / " .. v:sub(1, #v / 2) end,
    head20 = function(v) return projection(v):sub(1, 20) .. "..." end,
    spaced = function(v) return (v:gsub(".", "%0 ")) end,
    quoted = function(v) return "'" .. v:sub(1, 20) .. "'+'" .. v:sub(21) .. "'" end,
    inside = function(v) return "abc" .. v .. "def" end,
  }
  for name, shape in pairs(shapes) do
    it("masks them " .. name, function()
      local fb = freshbooks.new{ client_id = "app", client_secret = secret, redirect_uri = "https://example.com/cb",
        api_url = "https://fb.test", tokens = { access_token = token, refresh_token = "r" .. token:sub(2) },
        retry = false, transport = function()
          return { status = 400, headers = { ["content-type"] = "application/json" }, body = cjson.encode{
            errors = { message = "token " .. shape(token) .. " for client " .. shape(secret), status = 400,
              details = { { reason = shape(token), metadata = { field = shape(secret), value = shape(token) } } } } } }
        end }
      local _, err = fb:request{ path = "/x" }
      local texts = { tostring(err), err.message }
      for _, f in ipairs(err.errors or {}) do
        for _, k in ipairs{ "field", "message", "value", "object" } do texts[#texts + 1] = f[k] end
      end
      assert.is_true(#texts > 2, "the error has field errors")
      for _, text in ipairs(texts) do
        for _, v in ipairs{ token, "r" .. token:sub(2), secret } do
          local run = shown(text, v)
          assert.is_true(run < 16, ("%s: %d of %q in %q"):format(name, run, v, text))
        end
      end
    end)
  end
end)

describe("no oracle on a secret", function()
  -- A caller who controls part of a message (a 404 that quotes the request path, cut at 1 KiB) and
  -- guesses at the token's characters: what comes back must not depend on whether a guess was right.
  -- Each guess ends exactly where the cut falls; every answer must be the same text.
  local function quoting(token)
    return freshbooks.new{ client_id = "app", client_secret = "cs-" .. token:sub(-20),
      redirect_uri = "https://example.com/cb",
      api_url = "https://fb.test", tokens = { access_token = token, refresh_token = "r-" .. token }, retry = false,
      transport = function(req)
        return { status = 404, headers = { ["content-type"] = "application/json" },
          body = cjson.encode{ message = "no route " .. req.url:match("^https?://[^/]+(/[^?]*)") } }
      end }
  end
  -- Each answer under the real token must be the answer under a token that shares no character with
  -- it at any place: then nothing in it (text, length) says whether a guess was right. (A guess of 16
  -- of the token's characters in a row is masked: that is the rule, and 2^64 tries.)
  it("a guess where the cut falls gets the same answer under any token", function()
    local hex = "0123456789abcdef"
    local a = "c0ffee" .. ("0123456789abcdef"):rep(3) .. "deadbeef1a"
    local b = a:gsub("%x", function(c) local i = hex:find(c, 1, true) return hex:sub(i % 16 + 1, i % 16 + 1) end)
    local fa, fb = quoting(a), quoting(b)
    local at = errors.MAX_MESSAGE - #"no route /"
    local n = 0
    for known = 0, 14 do -- the caller knows `known` characters and tries every next one
      for c in hex:gmatch(".") do
        for _, after in ipairs{ 0, 1, 3 } do -- the cut right after the guess, or a few characters on
          local guess = a:sub(1, known) .. c
          local path = "/" .. ("."):rep(at - #guess - after) .. guess .. ("/x"):rep(40)
          local _, ea = fa:request{ path = path }
          local _, eb = fb:request{ path = path }
          assert.are.equal(tostring(eb), tostring(ea), ("knowing %d characters, guessing %q"):format(known, c))
          n = n + 1
        end
      end
    end
    assert.are.equal(15 * 16 * 3, n)
  end)
end)

describe("environment proxies and plain-http secrets", function()
  local socket = require "socket"
  local testserver = require "support.testserver"
  local H = require "support.fbtest"
  local ts, dir
  setup(function()
    ts = testserver.start()
    dir = H.tmpdir()
  end)
  teardown(function()
    if ts then ts.stop() end
    H.rmdir(dir)
  end)

  local TOKEN, REFRESH, SECRET = ("a1"):rep(32), ("b2"):rep(32), "client-secret-" .. ("c3"):rep(10)
  -- Runs a session in a child process with `env` set, a listener standing in for the proxy: -> what the
  -- proxy received, and the child's output (the status of a GET and of a refresh).
  local function through(env, opts)
    local proxy = assert(socket.bind("127.0.0.1", 0))
    proxy:settimeout(0.05)
    local _, port = proxy:getsockname()
    local script = dir .. "/child.lua"
    local f = assert(io.open(script, "w"))
    f:write(([[
      local freshbooks = require "freshbooks"
      local fb = freshbooks.new{ client_id = "app", client_secret = %q, redirect_uri = "https://example.com/cb",
        api_url = %q, auth_url = %q, tokens = { access_token = %q, refresh_token = %q }, retry = false,
        timeout = 3, cainfo = %q, proxy = %s, save = function() return true end }
      local res, err = fb:request{ path = "/echo" }
      local ok, rerr = fb:refresh()
      local f = io.open(%q, "w")
      f:write("get\t", tostring(res and res.status or err.code), "\nrefresh\t", ok and "ok" or rerr.code, "\n")
      f:close()
      os.rename(%q, %q)
    ]]):format(SECRET, opts.api_url, opts.api_url, TOKEN, REFRESH, ts.ca_file,
      opts.proxy and ("%q"):format(opts.proxy:gsub("PORT", port)) or "nil", dir .. "/out.tmp", dir .. "/out.tmp",
      dir .. "/done"))
    f:close()
    os.remove(dir .. "/done")
    local vars = {}
    for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. v:gsub("PORT", port) end
    os.execute(("env %s timeout 20 %s %s > %s 2>&1 &"):format(table.concat(vars, " "), H.lua, script, dir .. "/err"))
    local seen = {}
    local t0 = socket.gettime()
    while not io.open(dir .. "/done") and socket.gettime() - t0 < 15 do
      local conn = proxy:accept()
      if conn then
        conn:settimeout(0.5)
        local data, _, partial = conn:receive(65536)
        seen[#seen + 1] = data or partial or ""
        conn:close()
      end
    end
    proxy:close()
    return table.concat(seen, "\n"), (H.read(dir .. "/done") or "") .. (H.read(dir .. "/err") or "")
  end

  it("never get a plain-http request: http_proxy, HTTP_PROXY, ALL_PROXY, all_proxy", function()
    for _, var in ipairs{ "http_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy" } do
      local seen, out = through({ [var] = "http://127.0.0.1:PORT" }, { api_url = ts.url })
      assert.are.equal("", seen, var .. ": the proxy got a request")
      assert.truthy(out:find("get\t200", 1, true), var .. ": " .. out)
      assert.truthy(out:find("refresh\t", 1, true), var .. ": " .. out)
    end
  end)

  it("see https only as a tunnel; the proxy option sends plain http through the proxy, as asked", function()
    local seen = through({ https_proxy = "http://127.0.0.1:PORT", HTTPS_PROXY = "http://127.0.0.1:PORT" },
      { api_url = ts.tls_url })
    assert.truthy(seen:find("^CONNECT "), seen)
    assert.is_false(H.leaks(seen, { TOKEN, REFRESH, SECRET }), seen)
    seen = through({}, { api_url = ts.url, proxy = "http://127.0.0.1:PORT" })
    assert.truthy(seen:find("Authorization: Bearer " .. TOKEN, 1, true), "the proxy option is used: " .. seen)
  end)
end)
