-- The sandbox's entry points: init (nginx master, before fork), init_worker, handle (every request).
-- All state lives in this worker's Lua memory (worker_processes 1), so behaviour is deterministic.
local json = require "sandbox.json"
local state = require "sandbox.state"
local http = require "sandbox.http"

local main = {}

function main.init(opts)
  state.configure(opts)
  state.reset()
end

function main.init_worker()
  state.worker_started()
end

local routes -- built lazily: modules register their routes in order

local function build_routes()
  routes = {}
  local function add(list) for _, r in ipairs(list) do routes[#routes + 1] = r end end
  add(require("sandbox.auth").routes)
  add(require("sandbox.webhooks").routes)
  add(require("sandbox.resources").routes)
  add(require("sandbox.reports").routes)
  add(require("sandbox.team").routes)
  add(require("sandbox.payments").routes)
  add(require("sandbox.ledger").routes)
end

-- Route patterns are Lua patterns anchored at both ends; captures become handler arguments.
local function match(method, path)
  local path_matched
  for _, r in ipairs(routes) do
    local caps = { path:match("^" .. r.path .. "$") }
    if caps[1] then
      path_matched = true
      if r.method == method or (r.method == "GET" and method == "HEAD") then return r, caps end
    end
  end
  return nil, path_matched
end

function main.handle()
  if not routes then build_routes() end
  local req = http.request()
  if req.path:sub(1, 10) == "/_sandbox/" then
    if not state.opts.admin then return http.send(req, 404, { message = "Not Found" }) end
    return require("sandbox.admin").handle(req) -- (a reset makes new records: nothing cached fits them)
  end
  if req.method ~= "GET" and req.method ~= "HEAD" then state.writes = state.writes + 1 end
  local limited = state.rate_limited()
  if limited then
    return http.send(req, 429, { message = "Too Many Requests" }, { ["Retry-After"] = tostring(limited) })
  end
  local route, caps = match(req.method, req.path)
  if not route then
    state.record(req, caps and "405" or "404")
    if req.headers["x-api-version"] and req.path:find("^/accounting/") then
      return http.send(req, caps and 405 or 404, { code = caps and 12 or 5, message = caps and "Method Not Allowed"
        or "Not Found", details = json.array() })
    end
    if caps then return http.send(req, 405, { message = "Method Not Allowed" }) end
    return http.send(req, 404, { message = "Not Found" })
  end
  req.route, req.redact = route, route.redact
  -- Accounting errors come in google.rpc shape when the request asks for a newer API version.
  local version = req.headers["x-api-version"]
  state.rpc_errors = version ~= nil and version ~= ""
  state.record(req, route.name)
  local fault = state.fault_for(req)
  if fault and http.apply_fault_before(req, fault) then return end
  local status, body, headers = route.handler(req, unpack(caps))
  http.send(req, status, body, headers, fault)
end

-- For the json module's users elsewhere.
main.json = json

return main
