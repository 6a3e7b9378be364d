-- Webhook callbacks: /events/account/{account_id}/events/callbacks[/{id}], the verification delivery,
-- event notifications, and the X-FreshBooks-Hmac-SHA256 signature.
local json = require "sandbox.json"
local state = require "sandbox.state"
local http = require "sandbox.http"
local util = require "sandbox.util"
local auth = require "sandbox.auth"

local webhooks = {}

-- Events errors: {"errno": status, "message": ..., "details": ["...", ...]} (details are strings).
local function fail(status, message, details)
  return status, { errno = status, message = message, details = details and json.array(details) or nil }
end

local REQUIRED = { "callback: This field is required." }

local function callbacks_of(aid)
  local d = state.data.callbacks
  d[aid] = d[aid] or { list = {}, by_id = {}, next_id = 1 }
  return d[aid]
end

local function callback_json(cb)
  return { callbackid = cb.id, event = cb.event, uri = cb.uri, verified = cb.verified,
           updated_at = util.iso(cb.updated_t) .. "Z" }
end

-- One HTTP/1.1 POST over a cosocket (http and https, no certificate check: test targets only).
local function post(uri, body, headers)
  local scheme, host, port, path = uri:match("^(https?)://([^/:]+):?(%d*)(.*)$")
  if not scheme then return nil, "bad uri" end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if path == "" then path = "/" end
  local addr = host == "localhost" and "127.0.0.1" or host
  local sock = ngx.socket.tcp()
  sock:settimeouts(2000, 5000, 5000)
  local ok, err = sock:connect(addr, port)
  if not ok then return nil, "connect: " .. tostring(err) end
  if scheme == "https" then
    ok, err = sock:sslhandshake(nil, host, false)
    if not ok then sock:close(); return nil, "tls: " .. tostring(err) end
  end
  local lines = { "POST " .. path .. " HTTP/1.1", "Host: " .. host .. ":" .. port, "User-Agent: FreshBooks-Webhooks",
                  "Content-Type: application/x-www-form-urlencoded", "Content-Length: " .. #body,
                  "Connection: close" }
  for _, h in ipairs(headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
  ok, err = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
  if not ok then sock:close(); return nil, "send: " .. tostring(err) end
  local status_line = sock:receive("*l")
  sock:close()
  local status = status_line and tonumber(status_line:match("^HTTP/%S+%s+(%d+)"))
  if not status then return nil, "no response" end
  return status
end

-- Send one signed delivery after `delay` seconds (a timer: never in the request that caused it).
local function send_later(d, delay)
  ngx.timer.at(delay or 0, function(premature)
    if premature then return end
    local status, err = post(d.uri, d.body, { { "X-FreshBooks-Hmac-SHA256", d.signature } })
    d.record.status, d.record.error, d.record.sent_at = status, err, state.now()
  end)
end

-- Sign and deliver one form (array of {name, value}) with the callback's verifier as the key. How
-- deliveries travel is /_sandbox/webhooks' to set (state.delivery): late (`delay` seconds), `twice`,
-- or `hold` (kept until released, in the order the release asks for). Verification deliveries always
-- go at once.
local function deliver(cb, fields)
  local body = util.form(fields)
  local signature = ngx.encode_base64(util.hmac_sha256(cb.verifier, util.python_json(fields)))
  local mode = fields[1][2] ~= "callback.verify" and state.delivery or {}
  local copies = mode.twice and 2 or 1
  for _ = 1, copies do
    local record = { callbackid = cb.id, uri = cb.uri, name = fields[1][2], object_id = fields[2][2],
                     queued_at = state.now() }
    state.deliveries[#state.deliveries + 1] = record
    local d = { uri = cb.uri, body = body, signature = signature, record = record }
    if mode.hold then
      record.held = true
      state.held[#state.held + 1] = d
    else
      send_later(d, tonumber(mode.delay) or 0)
    end
  end
end

-- Send the held deliveries: order "sent" (as queued), "reverse", or "shuffle" (seeded). Returns the count.
function webhooks.release(order)
  local held = state.held
  state.held = {}
  if order == "reverse" then
    for i = 1, math.floor(#held / 2) do held[i], held[#held + 1 - i] = held[#held + 1 - i], held[i] end
  elseif order == "shuffle" then
    local rnd = util.prng(state.opts.seed + 11)
    for i = #held, 2, -1 do local j = rnd(1, i); held[i], held[j] = held[j], held[i] end
  end
  for i, d in ipairs(held) do
    d.record.held = nil
    d.record.release_order = i
    -- one after the other, a few milliseconds apart: the receiver sees them in this order
    send_later(d, (i - 1) * 0.005)
  end
  return #held
end

local function base_fields(name, object_id, aid, user)
  local b = state.business_by_account(aid)
  return { { "name", name }, { "object_id", tostring(object_id) }, { "account_id", aid },
           { "business_id", tostring(b and b.id or "") }, { "identity_id", tostring(user and user.id or "") },
           { "user_id", "1" } }
end

local function send_verification(cb, aid, user)
  local fields = base_fields("callback.verify", cb.id, aid, user)
  fields[#fields + 1] = { "verifier", cb.verifier }
  deliver(cb, fields)
end

-- Called by resources on changes: deliver to every verified callback whose event matches
-- ("invoice.create" or the whole family "invoice").
function webhooks.emit(aid, event, object_id, user)
  local d = state.data.callbacks[aid]
  if not d then return end
  local family = event:match("^([^.]+)")
  for _, cb in ipairs(d.list) do
    if not cb.removed and cb.verified and (cb.event == event or cb.event == family) then
      deliver(cb, base_fields(event, object_id, aid, user))
    end
  end
end

local function ctx_for(req, aid, write)
  local ctx, status, body, headers = auth.bearer(req, "events", write and "user:webhooks:write" or "user:webhooks:read")
  if not ctx then return nil, status, body, headers end
  local b = state.business_by_account(aid)
  if not b or not state.member(ctx.user, b) then return nil, fail(403, "Access denied.") end
  return ctx
end

local function valid_uri(u)
  return type(u) == "string" and u:match("^https?://[^/%s]+") ~= nil
end

local function list(req, aid)
  local ctx, s, b, h = ctx_for(req, aid, false)
  if not ctx then return s, b, h end
  local all = json.array()
  for _, cb in ipairs(callbacks_of(aid).list) do if not cb.removed then all[#all + 1] = cb end end
  local per_page = math.min(100, tonumber(req.args.per_page) or 15)
  if per_page < 1 then per_page = 15 end
  local page = math.max(1, tonumber(req.args.page) or 1)
  local out = json.array()
  for i = (page - 1) * per_page + 1, math.min(#all, page * per_page) do out[#out + 1] = callback_json(all[i]) end
  return 200, { response = { result = { callbacks = out, page = page, per_page = per_page, total = #all,
                                        pages = math.ceil(#all / per_page) } } }
end

local function create(req, aid)
  local ctx, s, b, h = ctx_for(req, aid, true)
  if not ctx then return s, b, h end
  local body = http.json_body(req)
  local src = body and body.callback
  if type(src) ~= "table" then return fail(422, "Invalid request.", REQUIRED) end
  if type(src.event) ~= "string" or not src.event:match("^[%l_]+[%.%l_]*$") then
    return fail(422, "Invalid event.", { "event: Not a valid event name." })
  end
  if not valid_uri(src.uri) then return fail(422, "Invalid uri.", { "uri: Not a valid URL." }) end
  local d = callbacks_of(aid)
  local cb = { id = d.next_id, event = src.event, uri = src.uri, verified = false, updated_t = state.now(),
               verifier = util.random_hex(16) }
  d.next_id = d.next_id + 1
  d.list[#d.list + 1] = cb
  d.by_id[cb.id] = cb
  send_verification(cb, aid, ctx.user)
  return 200, { response = { result = { callback = callback_json(cb) } } }
end

local function find(aid, id)
  local cb = callbacks_of(aid).by_id[tonumber(id)]
  if cb and not cb.removed then return cb end
end

local function get(req, aid, id)
  local ctx, s, b, h = ctx_for(req, aid, false)
  if not ctx then return s, b, h end
  local cb = find(aid, id)
  if not cb then return fail(404, "Callback not found.") end
  return 200, { response = { result = { callback = callback_json(cb) } } }
end

-- PUT {"callback": {"verifier": "..."}} verifies; {"callback": {"resend": true}} asks for a new delivery.
local function update(req, aid, id)
  local ctx, s, b, h = ctx_for(req, aid, true)
  if not ctx then return s, b, h end
  local cb = find(aid, id)
  if not cb then return fail(404, "Callback not found.") end
  local body = http.json_body(req)
  local src = body and body.callback
  if type(src) ~= "table" then return fail(422, "Invalid request.", REQUIRED) end
  if src.resend == true then
    cb.verifier = util.random_hex(16)
    cb.verified = false
    send_verification(cb, aid, ctx.user)
  elseif src.verifier ~= nil then
    if src.verifier ~= cb.verifier then
      return fail(422, "Verifier does not match.", { "verifier: The verifier does not match." })
    end
    cb.verified = true
  elseif src.uri ~= nil or src.event ~= nil then
    if src.uri ~= nil and not valid_uri(src.uri) then
      return fail(422, "Invalid uri.", { "uri: Not a valid URL." })
    end
    cb.uri, cb.event = src.uri or cb.uri, src.event or cb.event
  end
  cb.updated_t = state.now()
  return 200, { response = { result = { callback = callback_json(cb) } } }
end

local function delete(req, aid, id)
  local ctx, s, b, h = ctx_for(req, aid, true)
  if not ctx then return s, b, h end
  local cb = find(aid, id)
  if not cb then return fail(404, "Callback not found.") end
  cb.removed = true
  return 200, { response = {} }
end

local function upload(kind, req, aid)
  local ctx, s, b, h = auth.bearer(req, "accounting", "user:uploads:write")
  if not ctx then return s, b, h end
  local bz = state.business_by_account(aid)
  if not bz or not state.member(ctx.user, bz) then
    return 403, auth.forbidden("accounting", nil, "The user does not have access to this account.")
  end
  local fields = http.fields(req)
  local file = req.files and req.files.content
  if not fields or not file then
    return 400, { response = { errors = json.array { { errno = 1001, field = "content",
      message = "Field content is required.", object = kind, value = json.null } } } }
  end
  local jwt = util.random_hex(24)
  state.data.uploads[kind .. "/" .. jwt] = file
  -- {attachment|image: {filename, public_id, jwt, media_type, uuid}}; an image also answers the link it is
  -- served at (the Python SDK's recorded uploads: an attachment has no link).
  local single = kind == "images" and "image" or "attachment"
  local answer = { [single] = { jwt = jwt, public_id = jwt,
                                media_type = file.content_type or "application/octet-stream",
                                filename = file.filename, uuid = jwt:sub(1, 32) } }
  if kind == "images" then
    answer.link = ngx.var.scheme .. "://" .. ngx.var.http_host .. "/service/uploads/images/" .. jwt
  end
  return 200, answer
end

local function fetch_upload(kind, req, jwt)
  local ctx, s, b, h = auth.bearer(req, "accounting", "user:uploads:read")
  if not ctx then return s, b, h end
  local file = state.data.uploads[kind .. "/" .. jwt]
  if not file then return 404, { error = "File not found" } end
  return 200, file.content, { ["Content-Type"] = file.content_type or "application/octet-stream" }
end

local EB = "/events/account/([^/]+)/events/callbacks"
local EN = "/events/account/{account_id}/events/callbacks"
webhooks.routes = {
  { method = "GET", path = EB, name = EN, handler = list },
  { method = "POST", path = EB, name = EN, handler = create },
  { method = "GET", path = EB .. "/(%d+)", name = EN .. "/{id}", handler = get },
  { method = "PUT", path = EB .. "/(%d+)", name = EN .. "/{id}", handler = update },
  { method = "DELETE", path = EB .. "/(%d+)", name = EN .. "/{id}", handler = delete },
  { method = "POST", path = "/uploads/account/([^/]+)/attachments", name = "/uploads/account/{account_id}/attachments",
    handler = function(req, aid) return upload("attachments", req, aid) end },
  { method = "POST", path = "/uploads/account/([^/]+)/images", name = "/uploads/account/{account_id}/images",
    handler = function(req, aid) return upload("images", req, aid) end },
  { method = "GET", path = "/uploads/attachments/(%w+)", name = "/uploads/attachments/{jwt}",
    handler = function(req, jwt) return fetch_upload("attachments", req, jwt) end },
  { method = "GET", path = "/uploads/images/(%w+)", name = "/uploads/images/{jwt}",
    handler = function(req, jwt) return fetch_upload("images", req, jwt) end },
  { method = "GET", path = "/service/uploads/images/(%w+)", name = "/service/uploads/images/{jwt}",
    handler = function(req, jwt) return fetch_upload("images", req, jwt) end },
}

return webhooks
