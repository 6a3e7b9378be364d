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
