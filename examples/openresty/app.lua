-- A multi-user OpenResty application on lua-freshbooks: each signed-in user of the app connects their
-- own FreshBooks, then gets each of their businesses' outstanding invoices as JSON. The connections
-- live in Redis (freshbooks.store.redis through freshbooks.connections), so any number of nginx
-- workers and machines serve every user, and one refresh at a time happens per connection cluster-wide.
-- Nothing blocks the nginx worker: sessions talk through cosockets, Redis through lua-resty-redis
-- (Debian: lua-nginx-redis, module nginx.redis), and waits sleep on the event loop.
-- Safe to copy: the app's own sessions are random, server-side (Redis, hashed), expire and can be
-- revoked; every state-changing route is POST with a CSRF token; nothing an unauthenticated request
-- does makes an authenticated call to FreshBooks; URLs come from configuration, never from Host.
--   init_by_lua_block   { require("app").configure{ client_id = ..., client_secret = ..., ... } }
--   location = /signin      { content_by_lua_block { require("app").signin() } }      POST user=
--   location = /signout     { content_by_lua_block { require("app").signout() } }     POST, CSRF
--   location = /connect     { content_by_lua_block { require("app").connect() } }     GET: to FreshBooks
--   location = /callback    { content_by_lua_block { require("app").callback() } }    GET: from FreshBooks
--   location = /connection  { content_by_lua_block { require("app").connection() } }  GET
--   location = /outstanding { content_by_lua_block { require("app").outstanding() } } GET
--   location = /disconnect  { content_by_lua_block { require("app").disconnect() } }  POST, CSRF
--   location = /subscribe   { content_by_lua_block { require("app").subscribe() } }   POST, CSRF
--   location = /webhook     { content_by_lua_block { require("app").webhook() } }     POST (FreshBooks)
--   location = /events      { content_by_lua_block { require("app").events() } }      GET, the user's own
-- Webhook verifiers, pending verifications and received events live in `lua_shared_dict freshbooks 1m;`,
-- token pairs Redis could not take yet in `lua_shared_dict freshbooks_pending 1m;`.
local cjson = require "cjson.safe"
local core = require "freshbooks.core"
local freshbooks = require "freshbooks"
local report = require "freshbooks.report" -- the billing report: exact money, aging buckets
local webhook = require "freshbooks.webhook"

local app = {}
local config
local stores -- the Redis keyspace of every connection's tokens, per worker, made on first use
local keyspace -- () -> stores

-- init_worker_by_lua: every second, what the node's pending place holds (token pairs Redis could not
-- take when FreshBooks issued them) goes back to Redis, on an idle node and at once after a reload
-- too; and the hand-off of webhook events to the mirror's watcher, when there is one.
function app.init_worker()
  ngx.timer.every(1, function(premature)
    if not premature then keyspace().flush() end
  end)
  if config and config.mirror_socket then
    require("freshbooks.mirror.feed").start{ socket = config.mirror_socket }
  end
end

local connections -- per worker, made on first use

-- configure{client_id, client_secret, redirect_uri, session_secret, public_url, redis_host?, redis_port?,
-- redis_password?, prefix?, api_url?, auth_url?, scopes?, session_ttl? (s, 8 h), replay_window? (s, 600),
-- mirror_socket?, mirror_stream?}
-- public_url: this app's own https origin (the webhook URI FreshBooks calls is public_url .. "/webhook").
-- mirror_socket: where `freshbooks sync --watch --listen PATH` takes webhook events for a mirror
-- (docs/mirror.md): verified deliveries are handed to it (app.init_worker starts the hand-off).
-- mirror_stream: true, or the stream's key: verified deliveries are appended to a Redis stream (the app's
-- Redis) for the subscriber's connection, for `freshbooks sync --daemon` (docs/deployment.md).
function app.configure(c)
  for _, k in ipairs{ "client_id", "client_secret", "redirect_uri", "session_secret", "public_url" } do
    if type(c[k]) ~= "string" or c[k] == "" then error("app.configure: " .. k .. " is required", 2) end
  end
  if not c.public_url:match("^https?://[^/%s]+$") then
    error("app.configure: public_url must be an origin such as https://app.example.com", 2)
  end
  config = c
  config.session_ttl = tonumber(c.session_ttl) or 8 * 3600
  config.replay_window = tonumber(c.replay_window) or 600
end

-- Redis connections from nginx's per-worker pool; the store gives each back with set_keepalive.
local function redis_client()
  local ok, redis = pcall(require, "resty.redis") -- OpenResty's name
  if not ok then ok, redis = pcall(require, "nginx.redis") end -- Debian's
  if not ok then
    return nil, "resty.redis is missing: OpenResty ships it; on Debian's nginx put lua-nginx-redis's"
      .. " nginx/redis.lua on lua_package_path (`make deps` puts it in LIB/build/deps/lua)"
  end
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

-- pending: a pair Redis could not take outlives this worker and is seen by the node's other workers
-- (lua_shared_dict freshbooks_pending; docs/deployment.md)
function keyspace()
  stores = stores or freshbooks.store.redis.keyspace{ redis = redis_client, prefix = config.prefix or "fb-app:",
    pending = { shared_dict = "freshbooks_pending" } }
  return stores
end

local function conns()
  if not connections then
    connections = freshbooks.connections{
      app = { client_id = config.client_id, client_secret = config.client_secret, redirect_uri = config.redirect_uri,
        api_url = config.api_url, auth_url = config.auth_url, scopes = config.scopes },
      store = keyspace(),
    }
  end
  return connections
end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say(cjson.encode(body))
  return ngx.exit(status)
end

-- Errors go out as their code and message only (both free of secrets by construction).
local function fail(status, err)
  return reply(status, { error = err.code, message = err.message })
end

-- The app's own sessions ----------------------------------------------------------------------------
-- A session is a random 32-byte id in a cookie; Redis keeps HMAC(session_secret, id) -> {user, csrf}
-- with a TTL, so a copy of Redis holds no cookie, a session ends when it expires or is signed out, and
-- every sign-in gets a new id.
local COOKIE = "__Host-session"

local function session_key(id) return (config.prefix or "fb-app:") .. "session:"
  .. core.codec.hex(core.crypto.hmac_sha256(config.session_secret, id)) end

-- One command on a pooled Redis connection -> reply | nil, err
local function kv(cmd, ...)
  local r, err = redis_client()
  if not r then return nil, err end
  local v, cerr = r[cmd](r, ...)
  if v == nil and cerr then r:close() return nil, cerr end
  r:set_keepalive(60000, 100)
  if v == ngx.null then return nil end
  return v
end

-- A cookie of the request by its exact name (a repeated one: none is believed).
local function cookie(name)
  local h = ngx.req.get_headers()["cookie"]
  if type(h) == "table" then h = table.concat(h, "; ") end
  local found
  for k, v in (h or ""):gmatch("([^=;%s]+)=([^;]*)") do
    if k == name then
      if found then return nil end
      found = v
    end
  end
  return found
end

local function cookie_id() return (cookie(COOKIE) or ""):match("^(%x+)$") end

-- -> {user, csrf} of this request's session, or nil
local function current()
  local id = cookie_id()
  if not id or #id ~= 64 then return nil end
  local v = kv("get", session_key(id))
  local t = v and cjson.decode(v)
  if type(t) ~= "table" or type(t.user) ~= "string" then return nil end
  t.id = id
  return t
end

local function signed_in()
  local s = current()
  if not s then reply(401, { error = "not_signed_in", message = "sign in to this app first" }) end
  return s.user, s
end

-- POST with this session's CSRF token (header X-CSRF-Token, or a form field csrf) -> the user's name.
local function post_from_session()
  if ngx.req.get_method() ~= "POST" then
    ngx.header["Allow"] = "POST"
    return reply(405, { error = "method_not_allowed", message = "POST only" })
  end
  local name, s = signed_in()
  local token = ngx.req.get_headers()["x-csrf-token"]
  if type(token) ~= "string" then
    ngx.req.read_body()
    local args = ngx.req.get_post_args(10)
    token = type(args.csrf) == "string" and args.csrf or nil
  end
  if type(token) ~= "string" or #token ~= 64 or not core.crypto.equals(token, s.csrf) then
    return reply(403, { error = "csrf", message = "missing or wrong CSRF token" })
  end
  return name, s
end

-- POST /signin (user=NAME): a stand-in for the app's own login; a new session at every sign-in.
function app.signin()
  if ngx.req.get_method() ~= "POST" then
    ngx.header["Allow"] = "POST"
    return reply(405, { error = "method_not_allowed", message = "POST only" })
  end
  ngx.req.read_body()
  local name = ngx.req.get_post_args(10).user
  if type(name) ~= "string" or not name:match("^[%w_.@-]+$") or #name > 64 then
    return reply(400, { error = "bad_request", message = "user must be 1-64 letters, digits or _.@-" })
  end
  local old = cookie_id()
  if old then kv("del", session_key(old)) end
  local id, csrf = core.codec.hex(core.crypto.random_bytes(32)), core.codec.hex(core.crypto.random_bytes(32))
  local ok, err = kv("set", session_key(id), cjson.encode{ user = name, csrf = csrf }, "EX", config.session_ttl)
  if not ok then return fail(503, { code = "store_unavailable", message = tostring(err) }) end
  ngx.header["Set-Cookie"] = COOKIE .. "=" .. id .. "; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age="
    .. config.session_ttl
  return reply(200, { signed_in = name, csrf = csrf })
end

-- POST /signout: the session ends here, whoever holds a copy of the cookie.
function app.signout()
  local _, s = post_from_session()
  kv("del", session_key(s.id))
  ngx.header["Set-Cookie"] = COOKIE .. "=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
  return reply(200, { signed_in = false })
end

-- FreshBooks ---------------------------------------------------------------------------------------

-- GET /connect: send the browser to FreshBooks. The state is kept in Redis for this user's connection
-- (single use, a few minutes) and in a cookie binding it to this browser.
function app.connect()
  local name = signed_in()
  local url, state = conns():connect_url(name)
  if not url then return fail(503, state) end
  ngx.header["Set-Cookie"] = "__Host-fb_state=" .. state .. "; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600"
  return ngx.redirect(url, 302)
end

-- GET /callback?code=&state=: the state must be one issued for this user's connection and match the
-- cookie; then the code is exchanged and the tokens saved before anything uses them.
function app.callback()
  local name = signed_in()
  local ok, err = conns():callback(name, ngx.var.args or "", cookie("__Host-fb_state"))
  if not ok then
    local status = err.code == "state_mismatch" and 400 or err.code:match("^store_") and 503 or 502
    return fail(status, err)
  end
  ngx.header["Set-Cookie"] = "__Host-fb_state=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
  return reply(200, { connected = true })
end

-- GET /connection: this user's connection as the store and FreshBooks see it (conns:status).
function app.connection()
  local st, err = conns():status((signed_in()))
  if not st then return fail(503, err) end
  return reply(200, st)
end

-- POST /disconnect: revoke at FreshBooks and forget the tokens.
function app.disconnect()
  local ok, err = conns():disconnect((post_from_session()))
  if not ok then return fail(502, err) end
  return reply(200, { connected = false })
end

local function session_failure(err)
  if err.code == "reauth_required" then
    return reply(401, { error = "not_connected", message = "connect your FreshBooks first (" .. err.code .. ")" })
  end
  return fail(err.code:match("^store_") and 503 or 502, err)
end

-- GET /outstanding[?as_of=YYYY-MM-DD]: per business and currency, what the user's clients owe, aged.
function app.outstanding()
  local fb = conns():session((signed_in()))
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
-- FreshBooks sends a new callback's verifier to the callback's URI, unauthenticated; whoever can
-- reach /webhook can send one too. So /webhook only keeps a few candidates for a callback this app is
-- creating right now, and the signed-in user's own POST /subscribe tries them with FreshBooks: an
-- outside request never makes the app call FreshBooks. Deliveries carry no id or time: the same
-- signed body is accepted once per replay_window (a replay after it is accepted again; handlers must
-- be idempotent).

local function shared() return ngx.shared.freshbooks end
local MAX_CANDIDATES = 3

local function verifiers(account_id)
  return cjson.decode(shared():get("verifiers:" .. account_id) or "[]") or {}
end

-- POST /subscribe?event=invoice.create: register this app's /webhook for an event of the user's first
-- business, and confirm it with the verifier FreshBooks sends.
function app.subscribe()
  local name = post_from_session()
  local fb = conns():session(name)
  local memberships, err = fb:memberships()
  if not memberships then return session_failure(err) end
  if not memberships[1] then return reply(409, { error = "no_business", message = "the user has no business" }) end
  local account_id = memberships[1].account_id
  -- FreshBooks may deliver the verification before the create call has even answered.
  shared():set("pending:" .. account_id, name, 30)
  local cb, cerr = fb:account(account_id).callbacks:create{ event = ngx.var.arg_event,
    uri = config.public_url .. "/webhook" }
  if not cb then return fail(cerr.status == 422 and 422 or 502, cerr) end
  local id = ("%d"):format(cb.callbackid)
  for _ = 1, 100 do -- up to 5 s for the verification delivery
    for i = 1, MAX_CANDIDATES do
      local verifier = shared():get("candidate:" .. account_id .. ":" .. id .. ":" .. i)
      if verifier then
        shared():delete("candidate:" .. account_id .. ":" .. id .. ":" .. i)
        if fb:account(account_id).callbacks:verify(id, verifier) then
          local list = verifiers(account_id)
          list[#list + 1] = verifier
          shared():set("verifiers:" .. account_id, cjson.encode(list))
          shared():set("subscriber:" .. account_id, name)
          return reply(200, { callback_id = cb.callbackid, event = cb.event, uri = cb.uri, verified = true })
        end
      end
    end
    ngx.sleep(0.05)
  end
  return reply(504, { error = "not_verified", callback_id = cb.callbackid,
    message = "FreshBooks' verification did not arrive; POST /subscribe again or ask FreshBooks to resend" })
end

local MAX_BODY = 16384

-- POST /webhook: FreshBooks' deliveries (form-encoded, signed with the callback's verifier).
function app.webhook()
  if ngx.req.get_method() ~= "POST" then
    ngx.header["Allow"] = "POST"
    return reply(405, { error = "method_not_allowed", message = "POST only" })
  end
  ngx.req.read_body()
  local raw = ngx.req.get_body_data() or ""
  if #raw > MAX_BODY then return reply(413, { error = "too_large", message = "not a FreshBooks delivery" }) end
  local fields = webhook.parse(raw)
  local account_id = webhook.field(fields, "account_id") or ""
  local verifier = webhook.field(fields, "verifier")
  if verifier then
    -- Kept only for a callback being created now, a few per callback; tried by its creator's request.
    local object_id = webhook.field(fields, "object_id") or ""
    if shared():get("pending:" .. account_id) and object_id:match("^%d+$") and #verifier <= 128 then
      local n = shared():incr("candidates:" .. account_id .. ":" .. object_id, 1, 0, 30)
      if n and n <= MAX_CANDIDATES then
        shared():set("candidate:" .. account_id .. ":" .. object_id .. ":" .. n, verifier, 30)
      end
    end
    return reply(200, { received = "verification" })
  end
  local signature = ngx.req.get_headers()["x-freshbooks-hmac-sha256"]
  for _, v in ipairs(verifiers(account_id)) do
    if webhook.verify(v, fields, signature) then
      local seen = core.codec.hex(core.crypto.hmac_sha256(v, raw))
      if not shared():add("delivery:" .. seen, true, config.replay_window) then
        return reply(200, { received = "duplicate" })
      end
      -- the mirror's stream, which the sync workers read (mirror_stream): first, since a delivery not
      -- appended is not received (503: FreshBooks sends it again)
      local subscriber = config.mirror_stream and shared():get("subscriber:" .. account_id)
      if subscriber then
        local appended = require("freshbooks.mirror.stream").new{ key = type(config.mirror_stream) == "string"
          and config.mirror_stream or nil, redis = { host = config.redis_host or "127.0.0.1",
          port = tonumber(config.redis_port) or 6379, password = config.redis_password } }:push(subscriber, fields)
        if not appended then
          shared():delete("delivery:" .. seen)
          return reply(503, { error = "unavailable", message = "the event could not be queued; deliver it again" })
        end
      end
      local n = shared():incr("events:" .. account_id, 1, 0) -- atomic across workers
      shared():set("event:" .. account_id .. ":" .. n, cjson.encode{ name = webhook.field(fields, "name"),
        object_id = webhook.field(fields, "object_id"), account_id = account_id })
      -- the mirror: queued in memory here, written by `freshbooks sync --watch` (never in a worker)
      if config.mirror_socket then require("freshbooks.mirror.feed").push(fields) end
      return reply(200, { received = "event" })
    end
  end
  return reply(401, { error = "bad_signature", message = "not signed by a verified callback" })
end

-- GET /events: what verified deliveries said about the signed-in user's subscribed accounts, newest first.
function app.events()
  local name = signed_in()
  local fb = conns():session(name)
  local memberships, err = fb:memberships()
  if not memberships then return session_failure(err) end
  local out = {}
  for _, m in ipairs(memberships) do
    local aid = m.account_id
    if shared():get("subscriber:" .. aid) == name then
      local n = shared():get("events:" .. aid) or 0
      for i = n, math.max(1, n - 99), -1 do
        local e = shared():get("event:" .. aid .. ":" .. i)
        if e then out[#out + 1] = cjson.decode(e) end
      end
    end
  end
  return reply(200, { events = out })
end

return app
