-- An OpenResty application on lua-freshbooks: connect a FreshBooks account, then serve each business's
-- outstanding invoices as JSON. Nothing here blocks the nginx worker: inside request handlers the
-- session talks through cosockets, waits for refreshes with ngx.sleep, and the file store's lock is
-- polled on the event loop. One session per worker, shared by its requests (one refresh among them).
--   init_by_lua_block   { require("app").configure{ client_id = ..., client_secret = ..., ... } }
--   location = /connect     { content_by_lua_block { require("app").connect() } }
--   location = /callback    { content_by_lua_block { require("app").callback() } }
--   location = /outstanding { content_by_lua_block { require("app").outstanding() } }
--   location = /subscribe   { content_by_lua_block { require("app").subscribe() } }
--   location = /webhook     { content_by_lua_block { require("app").webhook() } }
--   location = /events      { content_by_lua_block { require("app").events() } }
-- Webhook verifiers and received events live in `lua_shared_dict freshbooks 1m;` (all workers).
local cjson = require "cjson.safe"
local freshbooks = require "freshbooks"
local report = require "freshbooks.report" -- the billing report: exact money, aging buckets
local webhook = require "freshbooks.webhook"

local app = {}
local config
local session -- per worker, made on first use

-- configure{client_id, client_secret, redirect_uri, tokens_file, api_url?, auth_url?, scopes?}
function app.configure(c)
  for _, k in ipairs{ "client_id", "client_secret", "redirect_uri", "tokens_file" } do
    if type(c[k]) ~= "string" or c[k] == "" then error("app.configure: " .. k .. " is required", 2) end
  end
  config = c
end

local function fb()
  if not session then
    session = freshbooks.new{
      client_id = config.client_id, client_secret = config.client_secret, redirect_uri = config.redirect_uri,
      api_url = config.api_url, auth_url = config.auth_url, scopes = config.scopes,
      store = freshbooks.store.file(config.tokens_file),
    }
  end
  return session
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

-- GET /connect: send the browser to FreshBooks; the state waits in a cookie for the callback.
function app.connect()
  local url, state = fb():authorize_url()
  ngx.header["Set-Cookie"] = "fb_state=" .. state .. "; Path=/; HttpOnly; SameSite=Lax"
  return ngx.redirect(url, 302)
end

-- GET /callback?code=&state=: the state must match the cookie (constant time), then the code is
-- exchanged and the tokens saved before anything uses them.
function app.callback()
  local ok, err = fb():authorize_callback(ngx.var.args or "", ngx.var.cookie_fb_state or "")
  if not ok then return fail(err.code == "state_mismatch" and 400 or 502, err) end
  ngx.header["Set-Cookie"] = "fb_state=; Path=/; Max-Age=0"
  return reply(200, { connected = true })
end

-- GET /outstanding[?as_of=YYYY-MM-DD]: per business and currency, what clients owe, aged.
function app.outstanding()
  local as_of = ngx.var.arg_as_of or os.date("!%Y-%m-%d")
  local day = report.day_number(as_of)
  if not day then return reply(400, { error = "bad_request", message = "as_of must be YYYY-MM-DD" }) end
  local memberships, err = fb():memberships()
  if not memberships then return fail(err.code == "reauth_required" and 401 or 502, err) end
  local out = {}
  for _, m in ipairs(memberships) do
    local acc = report.accumulator(day)
    for inv, ierr in fb():account(m.account_id).invoices:each({ per_page = 100 }, { parallel = 4 }) do
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

-- POST /subscribe?event=invoice.create: register this app's /webhook for an event of the first business.
function app.subscribe()
  local memberships, err = fb():memberships()
  if not memberships then return fail(502, err) end
  if not memberships[1] then return reply(409, { error = "no_business", message = "the user has no business" }) end
  local uri = ngx.var.scheme .. "://" .. ngx.var.http_host .. "/webhook"
  local cb, cerr = fb():account(memberships[1].account_id).callbacks:create{ event = ngx.var.arg_event, uri = uri }
  if not cb then return fail(cerr.status == 422 and 422 or 502, cerr) end
  return reply(200, { callback_id = cb.callbackid, event = cb.event, uri = cb.uri })
end

-- The verification delivery carries the verifier. Anyone could post one, so it is kept only once
-- FreshBooks itself accepts it for that callback (a timer, so the delivery is answered at once).
local function confirm(premature, account_id, callback_id, verifier)
  if premature then return end
  local ok, err = fb():account(account_id).callbacks:verify(callback_id, verifier)
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
    ngx.timer.at(0, confirm, account_id, webhook.field(fields, "object_id"), verifier)
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
