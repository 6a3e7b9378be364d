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

-- How webhook deliveries travel from now on: POST {delay = s, twice = bool, hold = bool}; POST
-- {release = "sent"|"reverse"|"shuffle"} sends what was held; GET shows the mode and what is held.
function handlers.webhooks(req)
  if req.method == "POST" then
    local t = body_table(req)
    if not t then return ok(req, { error = "body must be JSON" }, 400) end
    if t.release ~= nil then
      local order = t.release
      if order ~= "sent" and order ~= "reverse" and order ~= "shuffle" then
        return ok(req, { error = "release: sent, reverse or shuffle" }, 400)
      end
      return ok(req, { released = require("sandbox.webhooks").release(order) })
    end
    local delay = t.delay
    if delay ~= nil and (type(delay) ~= "number" or delay < 0 or delay > 600) then
      return ok(req, { error = "delay: seconds, 0..600" }, 400)
    end
    state.delivery = { delay = delay, twice = t.twice == true, hold = t.hold == true }
  end
  return ok(req, { delivery = state.delivery, held = #state.held })
end

-- The record a change or a hard delete names: {account_id, resource (the catalogue's accounting name:
-- invoices, clients, ...), id} or {business_id, resource = projects|time_entries|services, id}.
local function target(t)
  local data = require "sandbox.data"
  if type(t.resource) ~= "string" or tonumber(t.id) == nil then return nil, "resource and id are required" end
  if t.account_id then
    local acct = state.data.accounts[t.account_id]
    local R = data.by_name[t.resource]
    if not acct or not R then return nil, "unknown account_id or resource" end
    local rec = acct.cols[R.name].by_id[tonumber(t.id)]
    if not rec or rec.removed then return nil, "no such record" end
    return { R = R, acct = acct, col = acct.cols[R.name], rec = rec, aid = t.account_id }
  end
  local b = state.data.businesses[tonumber(t.business_id)]
  local col = b and ({ projects = b.projects, time_entries = b.time_entries, services = b.services })[t.resource]
  if not col then return nil, "unknown business_id or resource" end
  local rec = col.by_id[tonumber(t.id)]
  if not rec or rec.removed then return nil, "no such record" end
  return { col = col, rec = rec }
end

-- A POST that names one record: its body and the record, or nil and the answer already sent.
local function posted_target(req)
  if req.method ~= "POST" then return nil, ok(req, { error = "POST only" }, 405) end
  local t = body_table(req)
  if not t then return nil, ok(req, { error = "body must be JSON" }, 400) end
  local tg, why = target(t)
  if not tg then return nil, ok(req, { error = why }, 404) end
  state.writes = state.writes + 1
  return t, tg
end

-- The sandbox time to stamp: `at` epoch seconds (UTC), or now.
local function when(t)
  if t.at == nil then return state.now() end
  return tonumber(t.at)
end

-- POST {account_id | business_id, resource, id, at?, set = {field = value, ...}}: change a record as a
-- user would in FreshBooks, at a chosen time (its updated stamp says `at`); vis_state 1 deletes and 2
-- archives. The change goes through the API's own typing and checks, and sends its webhook event.
function handlers.change(req)
  local t, tg = posted_target(req)
  if not t then return tg end
  local at = when(t)
  if not at then return ok(req, { error = "at: epoch seconds" }, 400) end
  local set = type(t.set) == "table" and t.set or {}
  local resources = require "sandbox.resources"
  if tg.R then
    local ok_, status, body = resources.apply(tg.R, tg.acct, tg.rec, set)
    if not ok_ then return ok(req, body, status) end
    resources.touch(tg.rec, at)
    local event = set.vis_state == 1 and ".delete" or ".update"
    require("sandbox.webhooks").emit(tg.aid, tg.R.object .. event, tg.rec.id, state.users[1])
    return ok(req, { record = resources.render(tg.R, tg.rec, tg.acct, true), updated_t = at })
  end
  -- the project family: the values are kept as given (an admin's test data)
  for k, v in pairs(set) do if k ~= "id" then tg.rec[k] = v end end
  tg.rec.updated_t = at
  return ok(req, { updated_t = at })
end

-- POST {account_id | business_id, resource, id}: the record is gone without a trace (no vis_state, in
-- no list, 404 on get), as records FreshBooks purges are; a `<object>.delete` event goes out.
function handlers.hard_delete(req)
  local t, tg = posted_target(req)
  if not t then return tg end
  tg.rec.removed = true
  tg.col.by_id[tg.rec.id] = nil
  if tg.R then require("sandbox.webhooks").emit(tg.aid, tg.R.object .. ".delete", tg.rec.id, state.users[1]) end
  return ok(req, { deleted = true })
end

function admin.handle(req)
  local name = req.path:match("^/_sandbox/([%w_]+)")
  local h = name and handlers[name]
  if not h then return http.send(req, 404, { message = "no such sandbox endpoint" }) end
  return h(req)
end

return admin
