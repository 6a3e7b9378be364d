-- A multi-user OpenResty application on lua-freshbooks: each signed-in user of the app connects their
-- own FreshBooks, then gets each of their businesses' outstanding invoices as JSON. The connections
-- live in Redis (freshbooks.store.redis through freshbooks.connections), so any number of nginx
-- workers and machines serve every user, and one refresh at a time happens per connection cluster-wide.
-- Nothing blocks the nginx worker: sessions talk through cosockets, Redis through lua-resty-redis
-- (Debian: lua-nginx-redis, module nginx.redis), and waits sleep on the event loop.
--   init_by_lua_block   { require("app").configure{ client_id = ..., client_secret = ..., ... } }
--   location = /signin      { content_by_lua_block { require("app").signin() } }
--   location = /connect     { content_by_lua_block { require("app").connect() } }
--   location = /callback    { content_by_lua_block { require("app").callback() } }
--   location = /connection  { content_by_lua_block { require("app").connection() } }
--   location = /outstanding { content_by_lua_block { require("app").outstanding() } }
--   location = /disconnect  { content_by_lua_block { require("app").disconnect() } }
--   location = /subscribe   { content_by_lua_block { require("app").subscribe() } }
--   location = /webhook     { content_by_lua_block { require("app").webhook() } }
--   location = /events      { content_by_lua_block { require("app").events() } }
-- Webhook verifiers and received events live in `lua_shared_dict freshbooks 1m;` (all workers).
local cjson = require "cjson.safe"
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local report = require "freshbooks.report" -- the billing report: exact money, aging buckets
local webhook = require "freshbooks.webhook"

local app = {}
local config
local connections -- per worker, made on first use

-- configure{client_id, client_secret, redirect_uri, session_secret, redis_host?, redis_port?,
-- redis_password?, prefix?, api_url?, auth_url?, scopes?}
function app.configure(c)
  for _, k in ipairs{ "client_id", "client_secret", "redirect_uri", "session_secret" } do
    if type(c[k]) ~= "string" or c[k] == "" then error("app.configure: " .. k .. " is required", 2) end
  end
  config = c
end

-- Redis connections from nginx's per-worker pool; the store gives each back with set_keepalive.
local function redis_client()
  local ok, redis = pcall(require, "resty.redis") -- OpenResty's name
  if not ok then redis = require "nginx.redis" end -- Debian's
  local r = redis:new()
  r:set_timeout(1000)
  local connected, err = r:connect(config.redis_host or "127.0.0.1", tonumber(config.redis_port) or 6379)
  if not connected then return nil, err end
  if config.redis_password and r:get_reused_times() == 0 then
    local authed, aerr = r:auth(config.redis_password)
    if not authed then r:close(); return nil, aerr end
  end
  return r
end

local function conns()
  if not connections then
    connections = freshbooks.connections{
      app = { client_id = config.client_id, client_secret = config.client_secret, redirect_uri = config.redirect_uri,
        api_url = config.api_url, auth_url = config.auth_url, scopes = config.scopes },
      store = freshbooks.store.redis.keyspace{ redis = redis_client, prefix = config.prefix or "fb-app:" },
    }
  end
  return connections
end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(body))
  return ngx.exit(status)
end

-- Errors go out as their code and message only (both free of secrets by construction).
local function fail(status, err)
  return reply(status, { error = err.code, message = err.message })
end

-- The signed-in user: this app's own login stands behind the `app_user` cookie (name.hmac). /signin
-- stands in for a real login here; the rest only trusts a cookie this app signed.
local function sign(name) return core.codec.hex(core.crypto.hmac_sha256(config.session_secret, "app_user:" .. name)) end

local function user()
  local name, mac = (ngx.var.cookie_app_user or ""):match("^([%w_.@-]+)%.(%x+)$")
  if name and #name <= 64 and core.crypto.equals(mac, sign(name)) then return name end
  return nil
end

local function signed_in()
  local name = user()
  if not name then reply(401, { error = "not_signed_in", message = "sign in to this app first" }) end
  return name
end

-- GET /signin?user=NAME (a stand-in for the app's own login)
function app.signin()
  local name = ngx.var.arg_user or ""
  if not name:match("^[%w_.@-]+$") or #name > 64 then
    return reply(400, { error = "bad_request", message = "user must be 1-64 letters, digits or _.@-" })
  end
  ngx.header["Set-Cookie"] = "app_user=" .. name .. "." .. sign(name) .. "; Path=/; HttpOnly; SameSite=Lax"
  return reply(200, { signed_in = name })
end

-- GET /connect: send the browser to FreshBooks. The state is kept in Redis for this user's connection
-- (single use, a few minutes) and in a cookie binding it to this browser.
function app.connect()
  local name = signed_in()
  local url, state = conns():connect_url(name)
  if not url then return fail(503, state) end
  ngx.header["Set-Cookie"] = "fb_state=" .. state .. "; Path=/; HttpOnly; SameSite=Lax"
  return ngx.redirect(url, 302)
end

-- GET /callback?code=&state=: the state must be one issued for this user's connection and match the
-- cookie; then the code is exchanged and the tokens saved before anything uses them.
function app.callback()
  local name = signed_in()
  local ok, err = conns():callback(name, ngx.var.args or "", ngx.var.cookie_fb_state)
  if not ok then
    local status = err.code == "state_mismatch" and 400 or err.code == "store_unavailable" and 503 or 502
    return fail(status, err)
  end
  ngx.header["Set-Cookie"] = "fb_state=; Path=/; Max-Age=0"
  return reply(200, { connected = true })
end

-- GET /connection: this user's connection as the store and FreshBooks see it (conns:status).
function app.connection()
  local st, err = conns():status(signed_in())
  if not st then return fail(503, err) end
  return reply(200, st)
end

-- POST /disconnect: revoke at FreshBooks and forget the tokens.
function app.disconnect()
  local ok, err = conns():disconnect(signed_in())
  if not ok then return fail(502, err) end
  return reply(200, { connected = false })
end

local function session_failure(err)
  if err.code == "reauth_required" then
    return reply(401, { error = "not_connected", message = "connect your FreshBooks first (" .. err.code .. ")" })
  end
  return fail(err.code == "store_unavailable" and 503 or 502, err)
end

-- GET /outstanding[?as_of=YYYY-MM-DD]: per business and currency, what the user's clients owe, aged.
function app.outstanding()
  local fb = conns():session(signed_in())
  local as_of = ngx.var.arg_as_of or os.date("!%Y-%m-%d")
  local day = require("freshbooks.date").exact(as_of)
  if not day then return reply(400, { error = "bad_request", message = "as_of must be YYYY-MM-DD" }) end
  local memberships, err = fb:memberships()
  if not memberships then return session_failure(err) end
  local out = {}
  for _, m in ipairs(memberships) do
    local acc = report.accumulator(day)
    for inv, ierr in fb:account(m.account_id).invoices:each({ per_page = 100 }, { parallel = 4 }) do
      if not inv then return fail(502, ierr) end
      acc.add(inv)
    end
    local totals = {}
    for _, t in ipairs(acc.currency_totals()) do
      totals[#totals + 1] = { currency = t.currency, invoices = t.invoices,
        outstanding = report.format_money(t.outstanding), ["90+"] = report.format_money(t["90+"]) }
    end
    out[#out + 1] = { business = m.name, account_id = m.account_id, totals = totals }
  end
  return reply(200, { as_of = as_of, businesses = out })
end

-- Webhooks -------------------------------------------------------------------------------------

local function shared() return ngx.shared.freshbooks end

local function verifiers(account_id)
  return cjson.decode(shared():get("verifiers:" .. account_id) or "[]") or {}
end

-- POST /subscribe?event=invoice.create: register this app's /webhook for an event of the user's first
-- business. Whose connection verifies the account's callbacks is remembered first: FreshBooks may
-- deliver the verification before the create call has even answered.
function app.subscribe()
  local name = signed_in()
  local fb = conns():session(name)
  local memberships, err = fb:memberships()
  if not memberships then return session_failure(err) end
  if not memberships[1] then return reply(409, { error = "no_business", message = "the user has no business" }) end
  local uri = ngx.var.scheme .. "://" .. ngx.var.http_host .. "/webhook"
  local account_id = memberships[1].account_id
  shared():set("subscriber:" .. account_id, name)
  local cb, cerr = fb:account(account_id).callbacks:create{ event = ngx.var.arg_event, uri = uri }
  if not cb then return fail(cerr.status == 422 and 422 or 502, cerr) end
  return reply(200, { callback_id = cb.callbackid, event = cb.event, uri = cb.uri })
end

-- The verification delivery carries the verifier. Anyone could post one, so it is kept only once
-- FreshBooks itself accepts it for that callback (a timer, so the delivery is answered at once).
local function confirm(premature, owner, account_id, callback_id, verifier)
  if premature then return end
  local ok, err = conns():session(owner):account(account_id).callbacks:verify(callback_id, verifier)
  if not ok then
    ngx.log(ngx.WARN, "webhook verification refused: ", err.code) -- the code only, never the verifier
    return
  end
  local list = verifiers(account_id)
  list[#list + 1] = verifier
  shared():set("verifiers:" .. account_id, cjson.encode(list))
end

-- POST /webhook: FreshBooks' deliveries (form-encoded, signed with the callback's verifier).
function app.webhook()
  ngx.req.read_body()
  local fields = webhook.parse(ngx.req.get_body_data() or "")
  local account_id = webhook.field(fields, "account_id") or ""
  local verifier = webhook.field(fields, "verifier")
  if verifier then
    local owner = shared():get("subscriber:" .. account_id)
    if owner then ngx.timer.at(0, confirm, owner, account_id, webhook.field(fields, "object_id"), verifier) end
    return reply(200, { received = "verification" })
  end
  local signature = ngx.req.get_headers()["x-freshbooks-hmac-sha256"]
  for _, v in ipairs(verifiers(account_id)) do
    if webhook.verify(v, fields, signature) then
      local n = shared():incr("events", 1, 0) -- atomic across workers: each event gets its own slot
      shared():set("event:" .. n, cjson.encode{ name = webhook.field(fields, "name"),
        object_id = webhook.field(fields, "object_id"), account_id = account_id })
      return reply(200, { received = "event" })
    end
  end
  return reply(401, { error = "bad_signature", message = "not signed by a verified callback" })
end

-- GET /events: what verified deliveries said, newest first.
function app.events()
  local out, n = {}, shared():get("events") or 0
  for i = n, math.max(1, n - 99), -1 do
    local e = shared():get("event:" .. i)
    if e then out[#out + 1] = cjson.decode(e) end
  end
  return reply(200, { events = out })
end

return app
