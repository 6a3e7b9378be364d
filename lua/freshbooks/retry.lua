-- Retries with backoff and jitter around a transport.
--   retry.wrap(send, {attempts = 4, base_delay = 0.5, max_delay = 30, deadline = 60, jitter = true,
--                     sleep = fn(seconds), clock = fn() -> seconds, random = fn() -> [0,1), log = fn(event)})
-- What is retried:
--   429                    any method (FreshBooks refused it before doing anything), after Retry-After
--                          when it fits in the deadline; a longer one (hours, an HTTP date next year)
--                          is not waited for: the 429 comes back as a rate_limited error with
--                          retry_after, for the caller to decide
--   500/502/503/504        idempotent methods only (GET HEAD PUT DELETE OPTIONS)
--   network failures       errors.NOT_SENT (nothing was sent): any method, except tls (retrying cannot
--                          help); others: idempotent only
-- A POST that may have reached the server is never sent twice: it could create a second invoice or
-- spend a single-use refresh token.
local core = require "freshbooks.core"
local errors = require "freshbooks.errors"
local transport = require "freshbooks.transport"

local retry = {}

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }
local RETRY_STATUS = { [500] = true, [502] = true, [503] = true, [504] = true }
local NOT_SENT = errors.NOT_SENT
local NEVER = { tls = true, too_large = true, aborted = true, protocol = true } -- retrying cannot help

local function default_clock()
  local ngx = require("freshbooks.transport").openresty()
  if ngx then ngx.update_time(); return ngx.now() end
  return core.now()
end

local function default_sleep(s)
  local ngx = require("freshbooks.transport").openresty()
  if ngx then return ngx.sleep(s) end
  return core.sleep(s)
end

-- -> reason string when (req, res, err) may be retried, and the server's wait (Retry-After) if any.
function retry.retryable(req, res, err)
  if res and res.status < 429 then return nil end -- the common case, decided first
  local method = (req.method or "GET"):upper()
  -- A request may say it is not idempotent although its method is (a PUT that sends an e-mail).
  local idempotent = req.idempotent
  if idempotent == nil then idempotent = IDEMPOTENT[method] end
  if res then
    if res.status == 429 then
      local ra = res.headers and res.headers["retry-after"]
      return "rate_limited", errors.retry_after(ra)
    end
    if RETRY_STATUS[res.status] and idempotent then return "http_" .. res.status end
    return nil
  end
  local code = type(err) == "table" and err.code or "transport"
  if NEVER[code] then return nil end
  if NOT_SENT[code] or idempotent then return code end
  return nil
end

local OPTIONS = { attempts = true, base_delay = true, max_delay = true, deadline = true, jitter = true, sleep = true,
                  clock = true, random = true, log = true }

local function check(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error("freshbooks.retry: options must be a table", 3) end
  for k in pairs(opts) do
    if not OPTIONS[k] then error("freshbooks.retry: unknown option '" .. tostring(k) .. "'", 3) end
  end
  -- Waits are bounded (a day at most), so no Retry-After can make a call sleep without end.
  local function num(k, default, min, max)
    local v = opts[k]
    if v == nil then return default end
    if type(v) ~= "number" or v ~= v or v < min or (max and v > max) then
      error(("freshbooks.retry: %s must be a number in %s..%s"):format(k, min, max or "inf"), 4)
    end
    return v
  end
  local function fn(k, default)
    local v = opts[k]
    if v == nil then return default end
    if type(v) ~= "function" then error("freshbooks.retry: " .. k .. " must be a function", 4) end
    return v
  end
  return {
    attempts = math.floor(num("attempts", 4, 1, 100)),
    base_delay = num("base_delay", 0.5, 0, 86400),
    max_delay = num("max_delay", 30, 0, 86400),
    deadline = num("deadline", 60, 0, 86400),
    jitter = opts.jitter ~= false,
    sleep = fn("sleep", default_sleep),
    clock = fn("clock", default_clock),
    random = fn("random", math.random),
    log = fn("log", nil),
  }
end

-- Exponential backoff; with jitter a random point in [delay/2, delay] so clients spread out.
local function backoff(cfg, attempt)
  local d = math.min(cfg.max_delay, cfg.base_delay * 2 ^ (attempt - 1))
  if cfg.jitter then d = d * (0.5 + 0.5 * cfg.random()) end
  return d
end

local function report(cfg, req, attempt, delay, reason)
  if not cfg.log then return end
  local method = (req.method or "GET"):upper()
  local url = tostring(req.url or ""):gsub("%?.*$", "") -- queries may carry personal data
  pcall(cfg.log, { type = "retry", method = method, url = url, attempt = attempt, delay = delay, reason = reason,
    line = ("retry %s %s after %s (attempt %d, waiting %.2fs)"):format(method, url, reason, attempt + 1, delay) })
end

-- Later attempts must not run past the overall deadline.
local function bounded(req, remaining)
  if req.timeout and req.timeout <= remaining then return req end
  local r = {}
  for k, v in pairs(req) do r[k] = v end
  r.timeout = math.max(remaining, 0.001)
  return r
end

function retry.wrap(send, opts)
  if opts == false then return send end
  local cfg = check(opts)
  local t = {}

  local function one(req)
    local start = cfg.clock()
    local attempt, r = 1, req
    while true do
      local res, err = send(r)
      local reason, wait = retry.retryable(req, res, err)
      if not reason or attempt >= cfg.attempts then return res, err end
      local delay = wait or backoff(cfg, attempt)
      local remaining = start + cfg.deadline - cfg.clock() - delay
      if remaining <= 0 then return res, err end
      report(cfg, req, attempt, delay, reason)
      -- A sleep hook that fails ends the retries: the last answer stands.
      if delay > 0 and not pcall(cfg.sleep, delay) then return res, err end
      attempt, r = attempt + 1, bounded(req, remaining)
    end
  end

  -- Batch: run it, then re-run only the retryable items (together, after the longest wait they need).
  function t.batch(reqs, bopts)
    local out = transport.batch(send, reqs, bopts)
    local start = cfg.clock()
    for attempt = 1, cfg.attempts - 1 do
      local idx, reasons, delay = {}, {}, 0
      for i, req in ipairs(reqs) do
        local r = out[i] or {}
        local reason, wait = retry.retryable(req, r.res, r.err)
        if reason then
          idx[#idx + 1], reasons[#idx + 1] = i, reason
          delay = math.max(delay, wait or backoff(cfg, attempt))
        end
      end
      if #idx == 0 then break end
      local remaining = start + cfg.deadline - cfg.clock() - delay
      if remaining <= 0 then break end
      local sub = {}
      for j, i in ipairs(idx) do
        sub[j] = bounded(reqs[i], remaining)
        report(cfg, reqs[i], attempt, delay, reasons[j])
      end
      if delay > 0 and not pcall(cfg.sleep, delay) then break end
      local again = transport.batch(send, sub, bopts)
      for j, i in ipairs(idx) do out[i] = again[j] or { err = errors.new{ code = "internal",
        message = "batch lost a request" } } end
    end
    return out
  end

  -- Stream: a retryable result is sent again (after its wait) instead of being handed up, under the
  -- same attempts and deadline per request as one().
  function t.stream(sopts)
    local inner = transport.stream(send, sopts)
    local reqs, attempts, started, outer_of = {}, {}, {}, {}
    local ids = 0
    local s = {}
    function s.add(req)
      ids = ids + 1
      reqs[ids], attempts[ids], started[ids] = req, 1, cfg.clock()
      outer_of[inner.add(req)] = ids
      return ids
    end
    function s.next()
      while true do
        local iid, res, err = inner.next()
        if not iid then return nil end
        local id = outer_of[iid]
        outer_of[iid] = nil
        local req = reqs[id]
        local reason, wait = retry.retryable(req, res, err)
        local delay = reason and (wait or backoff(cfg, attempts[id]))
        local remaining = reason and started[id] + cfg.deadline - cfg.clock() - delay
        local again = reason and attempts[id] < cfg.attempts and remaining > 0
        if again then
          report(cfg, req, attempts[id], delay, reason)
          again = delay <= 0 or pcall(cfg.sleep, delay)
        end
        if not again then
          reqs[id], attempts[id], started[id] = nil, nil, nil
          return id, res, err
        end
        attempts[id] = attempts[id] + 1
        outer_of[inner.add(bounded(req, remaining))] = id
      end
    end
    s.close = inner.close
    return s
  end

  if type(send) == "table" and send.close then t.close = send.close end
  return setmetatable(t, { __call = function(_, req) return one(req) end })
end

return retry
