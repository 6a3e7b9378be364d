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
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local transport = require "freshbooks.transport"

local retry = {}

local IDEMPOTENT = core.http.idempotent -- the core's rule of what may be sent twice
local RETRY_STATUS = { [500] = true, [502] = true, [503] = true, [504] = true }
local NOT_SENT = errors.NOT_SENT
local NEVER = { tls = true, too_large = true, aborted = true, protocol = true } -- retrying cannot help

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

-- Waits are bounded (a day at most), so no Retry-After can make a call sleep without end.
local OPTIONS = options.spec{
  attempts = { "number", min = 1, max = 100, default = 4 },
  base_delay = { "number", min = 0, max = 86400, default = 0.5 },
  max_delay = { "number", min = 0, max = 86400, default = 30 },
  deadline = { "number", min = 0, max = 86400, default = 60 },
  jitter = { "boolean", default = true },
  sleep = { "function", default = env.sleep },
  clock = { "function", default = env.now },
  random = { "function", default = math.random },
  log = { "function" },
}

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

-- The decorator: a transport whose requests, batches and streams are retried.
local Retry = {}
Retry.__index = Retry

function Retry:__call(req)
  local cfg, send = self.cfg, self.send
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
function Retry:batch(reqs, bopts)
  local cfg, send = self.cfg, self.send
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
-- same attempts and deadline per request as a single request.
local Stream = {}
Stream.__index = Stream

function Stream:add(req)
  self.ids = self.ids + 1
  local id = self.ids
  self.reqs[id], self.attempts[id], self.started[id] = req, 1, self.cfg.clock()
  self.outer_of[self.inner:add(req)] = id
  return id
end

function Stream:next()
  local cfg = self.cfg
  while true do
    local iid, res, err = self.inner:next()
    if not iid then return nil end
    local id = self.outer_of[iid]
    self.outer_of[iid] = nil
    local req, attempts = self.reqs[id], self.attempts[id]
    local reason, wait = retry.retryable(req, res, err)
    local delay = reason and (wait or backoff(cfg, attempts))
    local remaining = reason and self.started[id] + cfg.deadline - cfg.clock() - delay
    local again = reason and attempts < cfg.attempts and remaining > 0
    if again then
      report(cfg, req, attempts, delay, reason)
      again = delay <= 0 or pcall(cfg.sleep, delay)
    end
    if not again then
      self.reqs[id], self.attempts[id], self.started[id] = nil, nil, nil
      return id, res, err
    end
    self.attempts[id] = attempts + 1
    self.outer_of[self.inner:add(bounded(req, remaining))] = id
  end
end

function Stream:close() self.inner:close() end

function Retry:stream(sopts)
  local inner, err = transport.stream(self.send, sopts)
  if not inner then return nil, err end
  return setmetatable({ cfg = self.cfg, inner = inner, reqs = {}, attempts = {}, started = {}, outer_of = {},
    ids = 0 }, Stream)
end

function Retry:close()
  local send = self.send
  if type(send) == "table" and send.close then send:close() end
end

-- retry.check(opts, who, level): raises on options wrap would refuse (`who` names the caller, as in
-- "freshbooks.new: retry"; `level`: error()'s, from the caller).
function retry.check(opts, who, level)
  options.check(who, OPTIONS, opts, level + 1)
end

-- retry.wrap(send, opts | false) -> the decorated transport (send itself with false).
function retry.wrap(send, opts)
  if opts == false then return send end
  local cfg = options.check("freshbooks.retry", OPTIONS, opts, 2)
  cfg.attempts = math.floor(cfg.attempts)
  return setmetatable({ send = send, cfg = cfg }, Retry)
end

return retry
