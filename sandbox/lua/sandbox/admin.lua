-- /_sandbox/*: the controls specs use (reset, clock, counters, the request log, faults, rate limit,
-- inboxes, tokens). Exists only when the sandbox runs with --admin.
local json = require "sandbox.json"
local state = require "sandbox.state"
local http = require "sandbox.http"

local admin = {}

local function ok(req, body, status) return http.send(req, status or 200, body) end

local function body_table(req)
  if req.body == "" then return {} end
  local t = json.decode(req.body)
  if type(t) ~= "table" then return nil end
  return t
end

local handlers = {}

function handlers.reset(req)
  local t = body_table(req) or {}
  state.reset(t)
  return ok(req, { reset = true, invoices = state.opts.invoices, seed = state.opts.seed })
end

-- GET: {now, offset}; POST {advance = seconds} or {offset = seconds}.
function handlers.clock(req)
  if req.method == "POST" then
    local t = body_table(req) or {}
    if tonumber(t.offset) then state.offset = tonumber(t.offset) end
    if tonumber(t.advance) then state.offset = state.offset + tonumber(t.advance) end
  end
  return ok(req, { now = state.now(), offset = state.offset })
end

function handlers.counters(req)
  if req.method == "DELETE" then state.clear_counters() end
  local c = state.counters
  return ok(req, { requests = c.requests, posts = c.posts, total = state.log_seq })
end

-- The ordered request log: ?since=seq returns entries after that one.
function handlers.log(req)
  if req.method == "DELETE" then state.clear_counters() end
  local since = tonumber(req.args.since) or 0
  local out = json.array()
  for _, e in ipairs(state.log) do if e.seq > since then out[#out + 1] = e end end
  return ok(req, { log = out, dropped = state.log_dropped })
end

-- POST a rule (or {rules = [...]}) to add; DELETE clears; GET lists.
-- Rule: {route = "<Lua pattern on the path>", method = "GET"?, fault = "500"|"502"|"503"|"504"|"429"|
--        "reset"|"reset_after"|"delay"|"delay_after"|"truncate"|"html"|"malformed", times = n | rate = 0..1,
--        skip = n, ms = n (delay, delay_after), retry_after = s (429; false = no header)}
local kinds = { ["500"] = 1, ["502"] = 1, ["503"] = 1, ["504"] = 1, ["429"] = 1, reset = 1, reset_after = 1,
                delay = 1, delay_after = 1, truncate = 1, html = 1, malformed = 1 }
function handlers.faults(req)
  if req.method == "DELETE" then state.faults = {} end
  if req.method == "POST" then
    local t = body_table(req)
    if not t then return ok(req, { error = "body must be JSON" }, 400) end
    local rules = t.rules or { t }
    for _, r in ipairs(rules) do
      r.fault = tostring(r.fault or "")
      if not kinds[r.fault] then return ok(req, { error = "unknown fault " .. r.fault }, 400) end
      if r.times then r.times = tonumber(r.times) end
      if r.rate then r.rate = tonumber(r.rate) end
      if r.skip then r.skip = tonumber(r.skip) end
      if r.retry_after == json.null then r.retry_after = nil end
      if not r.times and not r.rate then r.times = 1 end
      state.faults[#state.faults + 1] = r
    end
  end
  return ok(req, { faults = json.array(state.faults) })
end

-- POST {limit = n, window = seconds} turns the global rate limit on; DELETE turns it off.
function handlers.rate_limit(req)
  if req.method == "DELETE" then state.rate = nil end
  if req.method == "POST" then
    local t = body_table(req) or {}
    state.rate = { limit = tonumber(t.limit) or 10, window = tonumber(t.window) or 1,
                   window_start = state.now(), count = 0 }
  end
  return ok(req, { rate_limit = state.rate or json.null })
end

-- A webhook delivery target: records every POST (raw body, headers, order).
function handlers.inbox(req)
  if req.method == "POST" then
    state.inbox[#state.inbox + 1] = { seq = #state.inbox + 1, path = req.path, body = req.body,
                                      headers = req.headers, received_at = state.now() }
    return ok(req, { received = true })
  end
  if req.method == "DELETE" then state.inbox = {} end
  return ok(req, { inbox = json.array(state.inbox) })
end

-- E-mails the sandbox "sent" (invoices and estimates): GET lists, DELETE clears.
function handlers.outbox(req)
  if req.method == "DELETE" then state.outbox = {} end
  return ok(req, { outbox = json.array(state.outbox) })
end

function handlers.deliveries(req)
  if req.method == "DELETE" then state.deliveries = {} end
  return ok(req, { deliveries = json.array(state.deliveries) })
end

function handlers.users(req)
  return ok(req, { users = require("sandbox.identity").admin_users() })
end

-- POST {user = "alice", scope = "...", client_id = ?}: mint a token pair without the browser dance.
function handlers.tokens(req)
  local t = body_table(req) or {}
  local res, err = require("sandbox.auth").mint(t)
  if not res then return ok(req, { error = err }, 400) end
  return ok(req, res)
end

function admin.handle(req)
  local name = req.path:match("^/_sandbox/([%w_]+)")
  local h = name and handlers[name]
  if not h then return http.send(req, 404, { message = "no such sandbox endpoint" }) end
  return h(req)
end

return admin
