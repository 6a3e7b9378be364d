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

local start = sandbox.start
function sandbox.start(opts)
  local sb = start(opts)
  sb.admin = admin
  return sb
end

return sandbox
