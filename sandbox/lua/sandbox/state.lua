-- Everything the sandbox remembers: configuration, the clock, apps and users, tokens, data,
-- counters and the request log, fault rules, the rate limit, the webhook inbox.
local util = require "sandbox.util"

local state = { opts = {}, offset = 0 }

local function now_real()
  if ngx and ngx.now then ngx.update_time(); return ngx.now() end
  return os.time()
end

-- Sandbox time = real time + the offset moved by /_sandbox/clock. Token lifetimes use it.
function state.now() return now_real() + state.offset end

-- Every FreshBooks scope the sandbox knows; apps get all of them unless they ask for fewer.
state.scopes = {
  "user:profile:read", "user:profile:write",
  "user:clients:read", "user:clients:write", "user:invoices:read", "user:invoices:write",
  "user:estimates:read", "user:estimates:write", "user:expenses:read", "user:expenses:write",
  "user:payments:read", "user:payments:write", "user:taxes:read", "user:taxes:write",
  "user:billable_items:read", "user:billable_items:write", "user:credit_notes:read",
  "user:credit_notes:write", "user:other_income:read", "user:other_income:write",
  "user:bills:read", "user:bills:write", "user:bill_payments:read", "user:bill_payments:write",
  "user:bill_vendors:read", "user:bill_vendors:write", "user:journal_entries:read",
  "user:journal_entries:write", "user:projects:read", "user:projects:write",
  "user:time_entries:read", "user:time_entries:write", "user:teams:read", "user:teams:write", "user:reports:read",
  "user:online_payments:read", "user:online_payments:write", "user:business:read",
  "user:uploads:read", "user:uploads:write",
  "user:notifications:read", "user:webhooks:read", "user:webhooks:write",
}

state.businesses = {
  { id = 1000001, business_uuid = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001", account_id = "aBcD1",
    name = "Sandbox Widgets Inc.", currency_code = "USD" },
  { id = 1000002, business_uuid = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0002", account_id = "xYz92",
    name = "Sandbox Consulting Ltd.", currency_code = "CAD" },
  { id = 1000003, business_uuid = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0003", account_id = "QmP57",
    name = "Carol's Bakery", currency_code = "USD" },
}

-- alice (the default) is in two businesses, bob in none, carol in one.
state.users = {
  { id = 1001, login = "alice", first_name = "Alice", last_name = "Sandbox", email = "alice@example.com",
    memberships = { { id = 5001, business = 1, role = "owner" }, { id = 5002, business = 2, role = "admin" } } },
  { id = 1002, login = "bob", first_name = "Bob", last_name = "Nobiz", email = "bob@example.com",
    memberships = {} },
  { id = 1003, login = "carol", first_name = "Carol", last_name = "Baker", email = "carol@example.com",
    memberships = { { id = 5003, business = 3, role = "owner" } } },
}

function state.user(key)
  for _, u in ipairs(state.users) do
    if tostring(u.id) == tostring(key) or u.login == key or u.email == key then return u end
  end
end

function state.business_by_account(aid)
  for _, b in ipairs(state.businesses) do if b.account_id == aid then return b end end
end

function state.business_by_id(bid)
  for _, b in ipairs(state.businesses) do if tostring(b.id) == tostring(bid) then return b end end
end

function state.business_by_uuid(uuid)
  for _, b in ipairs(state.businesses) do if b.business_uuid == uuid then return b end end
end

-- Is the user a member of business b?
function state.member(user, b)
  for _, m in ipairs(user.memberships) do if state.businesses[m.business] == b then return m end end
end

function state.configure(opts)
  local o = {
    invoices = tonumber(opts.invoices) or 250,
    seed = tonumber(opts.seed) or 1,
    admin = opts.admin == true,
    auto_consent = opts.auto_consent == true,
  }
  state.opts = o
  state.default_client_id = opts.client_id or "sandbox-client-id"
  -- The ready-made app and a second one (tokens never cross apps). `--redirect-uri` adds registered
  -- URIs (a test's own loopback port), matched exactly like the others.
  local uris = { opts.redirect_uri or "http://localhost:8976/callback", "https://localhost/callback",
                 "http://127.0.0.1:8976/callback", "https://example.com/freshbooks/callback" }
  for _, u in ipairs(opts.extra_redirect_uris or {}) do uris[#uris + 1] = u end
  state.apps = {
    [opts.client_id or "sandbox-client-id"] = {
      client_id = opts.client_id or "sandbox-client-id",
      client_secret = opts.client_secret or "sandbox-client-secret-0123456789abcdef",
      name = "Sandbox App",
      redirect_uris = uris,
    },
    ["other-client-id"] = {
      client_id = "other-client-id", client_secret = "other-client-secret-fedcba9876543210",
      name = "Other App", redirect_uris = { "https://other.example.com/cb" },
    },
  }
end

function state.worker_started() end

-- Counts requests that may change data: cached JSON renderings of records (resources.lua) are
-- valid while it stays the same.
state.writes = 0

function state.reset(opts)
  if opts then
    if opts.invoices then state.opts.invoices = tonumber(opts.invoices) or state.opts.invoices end
    if opts.seed then state.opts.seed = tonumber(opts.seed) or state.opts.seed end
  end
  state.offset = 0
  state.codes, state.access, state.refresh, state.newest = {}, {}, {}, {}
  state.faults, state.rate = {}, nil
  state.fault_rand = util.prng(state.opts.seed + 7)
  state.inbox, state.deliveries, state.held, state.delivery = {}, {}, {}, {}
  state.outbox = {} -- invoices and estimates sent by e-mail
  state.clear_counters()
  state.data = require("sandbox.data").seed(state)
end

local LOG_MAX = 20000

function state.clear_counters()
  state.counters = { requests = {}, posts = {} }
  state.log, state.log_seq, state.log_dropped = {}, 0, 0
end

-- Count the request and open its log entry (tokens appear only as short hashes).
function state.record(req, route_name)
  local key = req.method .. " " .. route_name
  local c = state.counters
  c.requests[key] = (c.requests[key] or 0) + 1
  state.log_seq = state.log_seq + 1
  -- connection: nginx's connection number, and http2 set when the request came over HTTP/2 (the
  -- benchmarks count the connections a walk opened, and check h2 was negotiated)
  local entry = { seq = state.log_seq, time = now_real(), sandbox_time = state.now(), method = req.method,
                  path = req.path, route = route_name, connection = tonumber(ngx.var.connection),
                  http2 = ngx.var.http2 ~= "" and ngx.var.http2 or nil }
  local auth = req.headers.authorization
  if type(auth) == "string" then
    local token = auth:match("^[Bb]earer%s+(%S+)")
    entry.access_token = util.token_hash(token)
  end
  if #state.log >= LOG_MAX then table.remove(state.log, 1); state.log_dropped = state.log_dropped + 1 end
  state.log[#state.log + 1] = entry
  req.log = entry
  if req.method == "POST" then
    local posts = c.posts[route_name] or {}
    c.posts[route_name] = posts
    if #posts >= 1000 then table.remove(posts, 1) end
    posts[#posts + 1] = req.redact and req.redact(req.body) or req.body
    req.post_index = { posts, #posts }
  end
end

-- The first fault rule that matches this request, consuming it when it counts down.
function state.fault_for(req)
  for i, rule in ipairs(state.faults) do
    if (not rule.method or rule.method == req.method) and (not rule.route or req.path:find(rule.route)) then
      if rule.skip and rule.skip > 0 then
        rule.skip = rule.skip - 1
      elseif rule.rate and not rule.times then
        if state.fault_rand() < rule.rate then rule.hits = (rule.hits or 0) + 1; return rule end
      else
        rule.hits = (rule.hits or 0) + 1
        if rule.times then
          rule.times = rule.times - 1
          if rule.times <= 0 then table.remove(state.faults, i) end
        end
        return rule
      end
    end
  end
end

-- The optional global rate limit: returns seconds to wait when over the limit.
function state.rate_limited()
  local r = state.rate
  if not r then return nil end
  local now = state.now()
  if now >= r.window_start + r.window then r.window_start, r.count = now, 0 end
  r.count = r.count + 1
  if r.count > r.limit then
    r.rejected = (r.rejected or 0) + 1
    return math.max(1, math.ceil(r.window_start + r.window - now))
  end
end

return state
