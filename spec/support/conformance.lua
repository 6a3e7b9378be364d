-- The transport conformance cases, run the same way against the libcurl transport (in busted) and
-- the cosocket transport (inside nginx, where spec/transport_conformance_spec.lua posts the plan):
--   conformance.run(make, case, base, clock) -> a plain outcome table (JSON-safe), where
--   make(opts) builds a transport, base is the hostile server's URL ("http://127.0.0.1:port"), and
--   clock() reads seconds.
-- Every request carries a Bearer secret, so the spec can check no message ever shows it.
local conformance = {}

conformance.SECRET = "Bearer sEcReT-tOkEn-0123456789abcdef"

-- Each case's marker (hostile answers carry it): an answer read by the wrong request shows.
function conformance.marker(case) return "m" .. case.name:gsub("[^%w]", "") end
local now_marker = conformance.marker

local function outcome(res, err)
  if res then return { status = res.status, body = res.body, headers = res.headers } end
  return { code = err and err.code, message = err and err.message, status = err and err.status }
end

-- Runs `req` through transport t; a raise (a refused request) is an outcome too.
local function attempt(t, req, clock)
  local started = clock()
  local ok, res, err = pcall(t, req)
  local o
  if ok then o = outcome(res, err) else o = { raised = tostring(res) } end
  o.elapsed = clock() - started
  return o
end

function conformance.run(make, case, base, clock)
  local t = make(case.opts or {})
  if case.before then -- another transport's request to the same place first (pool separation)
    local first = make(case.before.opts or {})
    local o = attempt(first, { method = "GET", url = case.before.url or (base .. case.url) }, clock)
    o.body = o.body and o.body:sub(1, 64)
    case.before_outcome = o
  end
  if case.batch then
    local reqs = {}
    for i, u in ipairs(case.batch) do reqs[i] = { method = "GET", url = base .. u, timeout = case.timeout,
      headers = { Authorization = conformance.SECRET } } end
    local started = clock()
    local results = t:batch(reqs, { concurrency = 2 })
    local o = { elapsed = clock() - started, batch = {} }
    for i, r in ipairs(results) do o.batch[i] = outcome(r.res, r.err) end
    return o
  end
  local url = case.full_url or (base .. case.url)
  if not case.full_url and not url:find("?", 1, true) then url = url .. "?marker=" .. now_marker(case) end
  local req = { method = case.method or "GET", url = url, timeout = case.timeout,
    headers = case.headers or { Authorization = conformance.SECRET }, body = case.body }
  -- A refused request must not reach the server: compare its request count before and after.
  local function arrived()
    local c = attempt(t, { method = "GET", url = base .. "/h/count" }, clock)
    return tonumber(c.body)
  end
  local before = case.raises and arrived()
  local o = attempt(t, req, clock)
  if case.raises then o.arrived = arrived() - before end
  if o.body and #o.body > 256 then o.body_len, o.body = #o.body, o.body:sub(1, 64) end
  o.before = case.before_outcome
  -- The next request on the same transport must get its own answer: nothing left in a pooled
  -- connection may be taken for it.
  if not case.no_followup then
    local f = attempt(t, { method = "GET", url = base .. "/echo?marker=followup" .. now_marker(case),
      headers = { Authorization = conformance.SECRET } }, clock)
    o.followup = { status = f.status, code = f.code, ok = f.body ~= nil and
      f.body:find("followup" .. now_marker(case), 1, true) ~= nil }
  end
  return o
end

return conformance
