-- The transport seam. A transport is `function(req) -> res | nil, err` with
--   req = { method, url, headers = { Name = value }, body = string?, timeout = seconds? }
--   res = { status = n, headers = { lowercase = value }, body = string }
-- plus an optional `batch(reqs, opts) -> { {res =, err =}, ... }` (input order). The default is the C
-- core over libcurl; OpenResty users and tests may pass their own.
local errors = require "freshbooks.errors"

local transport = {}

-- transport.curl(opts) -> a transport over one C-core client (one connection cache).
-- opts are passed to core.client (timeouts, cainfo, proxy, max_body, insecure_no_verify_tls, ...).
function transport.curl(opts)
  local core = require "freshbooks.core"
  local client = core.client(opts or {})
  local t = {}
  local function call(_, req)
    local status, headers, body = client:request(req)
    if not status then return nil, errors.from_core(headers) end
    return { status = status, headers = headers, body = body }
  end
  function t.batch(reqs, bopts)
    local out = client:batch(reqs, bopts or {})
    for i, r in ipairs(out) do
      if r.err then
        out[i] = { err = errors.from_core(r.err) }
      else
        out[i] = { res = r }
      end
    end
    return out
  end
  function t.close() client:close() end
  return setmetatable(t, { __call = call })
end

-- Run a batch on any transport: its own batch when it has one, else one request after another.
function transport.batch(t, reqs, opts)
  if type(t) == "table" and t.batch then return t.batch(reqs, opts) end
  local out = {}
  for i, req in ipairs(reqs) do
    local res, err = t(req)
    out[i] = { res = res, err = err }
  end
  return out
end

return transport
