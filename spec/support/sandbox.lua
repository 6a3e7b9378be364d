-- The sandbox launcher lives beside the sandbox (sandbox/launch.lua): the specs and `make bench` use the
-- same one.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/support"
local sandbox = dofile(here .. "/../../sandbox/launch.lua")

-- The specs' admin calls (tokens, clock, faults, the request log: hundreds per spec file) go through
-- libcurl in this process, on a private connection closed after each call: the launcher's curl CLI
-- costs a process per call (~50 ms, most of it CPU). What the specs send as a browser or an outsider
-- (sb:http) keeps going through the curl CLI, a client independent of the one under test.
local core = require "freshbooks.core"
local cjson = require "cjson"

local function admin(self, method, path, tbl)
  local c = core.http.client{ timeout = 60, share = false }
  local body = tbl ~= nil and cjson.encode(tbl) or nil
  local status, _, rbody = c:request{ method = method, url = self.url .. path, body = body,
    headers = body and { ["Content-Type"] = "application/json" } or nil }
  c:close()
  if not status then return nil, nil end
  local ok, decoded = pcall(sandbox.decode, rbody)
  return ok and decoded or nil, status
end

-- sb:fetch(req): sb:http's request and answer, through libcurl in this process (no multipart), for the
-- specs that drive the sandbox itself by the hundred (its conformance to FreshBooks' shapes).
local function fetch(self, req)
  assert(not req.multipart, "sb:fetch sends no multipart: use sb:http")
  local headers, body = {}, req.body
  for k, v in pairs(req.headers or {}) do headers[k] = v end
  if req.json ~= nil then
    body = cjson.encode(req.json)
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
  elseif req.form then
    body = core.codec.form(req.form) -- ({name, value} pairs, in order)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
  local url = req.url or (self.url .. (req.path or "/"))
  local c = core.http.client{ timeout = req.timeout or 60, share = false,
    cainfo = url:sub(1, 6) == "https:" and self.ca_file or nil }
  local status, hdrs, rbody = c:request{ method = req.method or "GET", url = url, headers = headers, body = body }
  c:close()
  if not status then return { status = nil, error = tostring(hdrs and hdrs.message), body = "", headers = {} } end
  local last = {}
  for k, v in pairs(hdrs) do last[k] = type(v) == "table" and v[#v] or v end
  local ok, decoded = pcall(sandbox.decode, rbody)
  return { status = status, headers = last, body = rbody, json = ok and decoded or nil }
end

local start = sandbox.start
function sandbox.start(opts)
  local sb = start(opts)
  sb.admin, sb.fetch = admin, fetch
  return sb
end

return sandbox
