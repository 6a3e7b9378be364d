-- Start and stop local FreshBooks sandboxes from Lua: the specs (spec/support/sandbox.lua hands this
-- module on) and `make bench` use it (Lua 5.4 and LuaJIT; plain Lua + the curl CLI).
--   local sandbox = require "launch"           -- with sandbox/?.lua on package.path
--   local sb = sandbox.start{ invoices = 250, seed = 1, admin = true, auto_consent = true,
--                             redirect_uris = { "http://127.0.0.1:PORT/callback" } }
--   sb.url, sb.tls_url, sb.ca_file, sb.auth_url, sb.app = {client_id, client_secret, redirect_uri}, sb.user
--   sb:admin("POST", "/_sandbox/clock", { advance = 3600 }) -> decoded JSON, status
--   sb:http{ method =, path = | url =, headers = {}, body = | json = | form = } -> res {status, headers, body, json}
--   sb:token{ user = "alice", scope = "..." } -> token response (minted through the admin endpoint)
--   sb:log(since) -> the request log's entries after seq `since`; sb:last_seq()
--   sb:stop()
local cjson = require "cjson"

local sandbox = {}

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
sandbox.shell_quote = shell_quote

local function here()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "sandbox"
  return dir
end

sandbox.run_script = here() .. "/run"

local function read_all(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

local function tmpname()
  local name = os.tmpname()
  return name
end

-- Lua 5.4's cjson decodes every number as a float; make whole numbers integers again so that
-- "/invoices/" .. id reads "/invoices/7", not "/invoices/7.0".
local tointeger = math.tointeger
local function integers(v)
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = integers(x) end
  elseif type(v) == "number" and tointeger then
    return tointeger(v) or v
  end
  return v
end
sandbox.decode = function(s) return integers(cjson.decode(s)) end

local Sandbox = {}
Sandbox.__index = Sandbox

function sandbox.start(opts)
  opts = opts or {}
  local args = { shell_quote(sandbox.run_script), "--background" }
  if opts.port then args[#args + 1] = "--port " .. math.floor(opts.port) end
  if opts.tls_port then args[#args + 1] = "--tls-port " .. math.floor(opts.tls_port) end
  if opts.invoices then args[#args + 1] = "--invoices " .. math.floor(opts.invoices) end
  if opts.seed then args[#args + 1] = "--seed " .. math.floor(opts.seed) end
  if opts.admin ~= false then args[#args + 1] = "--admin" end
  if opts.auto_consent ~= false then args[#args + 1] = "--auto-consent" end
  -- More registered redirect URIs (exact match, as FreshBooks does); the first becomes sb.app.redirect_uri.
  for _, uri in ipairs(opts.redirect_uris or {}) do args[#args + 1] = "--redirect-uri " .. shell_quote(uri) end
  local out = read_all(table.concat(args, " ") .. " 2>&1")
  local info = {}
  for k, v in out:gmatch("([%w_]+)=([^\n]*)") do info[k] = v end
  if not info.url or not info.pid then error("sandbox did not start:\n" .. out, 2) end
  local sb = setmetatable({
    url = info.url, tls_url = info.tls_url, auth_url = info.auth_url, ca_file = info.ca_file,
    pid = tonumber(info.pid), prefix = info.prefix, admin_on = info.admin == "true",
    app = { client_id = info.client_id, client_secret = info.client_secret, redirect_uri = info.redirect_uri },
    user = { id = 1001, login = "alice", email = "alice@example.com" },
    users = { alice = 1001, bob = 1002, carol = 1003 },
    businesses = {
      { id = 1000001, account_id = "aBcD1" }, { id = 1000002, account_id = "xYz92" },
    },
  }, Sandbox)
  -- Stop a forgotten sandbox when it is collected (LuaJIT tables have no __gc: use a proxy).
  local stopper = function() sb:stop() end
  if newproxy then
    local proxy = newproxy(true)
    getmetatable(proxy).__gc = stopper
    sb._gc = proxy
  else
    sb._gc = setmetatable({}, { __gc = stopper })
  end
  return sb
end

-- One HTTP request with the curl CLI. Returns {status, headers = {lowercase = value}, body, json}.
function Sandbox:http(req)
  local url = req.url or (self.url .. (req.path or "/"))
  local hfile, bfile = tmpname(), tmpname()
  local cmd = { "curl -g -s -S -o", shell_quote(bfile), "-D", shell_quote(hfile),
                "-X", shell_quote(req.method or "GET") }
  if url:sub(1, 6) == "https:" then cmd[#cmd + 1] = "--cacert " .. shell_quote(self.ca_file) end
  if req.timeout then cmd[#cmd + 1] = "--max-time " .. tostring(req.timeout) end
  local headers = req.headers or {}
  local body = req.body
  if req.json ~= nil then
    body = cjson.encode(req.json)
    if not headers["Content-Type"] then cmd[#cmd + 1] = "-H 'Content-Type: application/json'" end
  elseif req.form then
    local parts = {}
    for _, p in ipairs(req.form) do
      parts[#parts + 1] = p[1]:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)
        .. "=" .. tostring(p[2]):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)
    end
    body = table.concat(parts, "&")
    cmd[#cmd + 1] = "-H 'Content-Type: application/x-www-form-urlencoded'"
  end
  if req.multipart then
    for _, p in ipairs(req.multipart) do cmd[#cmd + 1] = "-F " .. shell_quote(p[1] .. "=" .. p[2]) end
  end
  for k, v in pairs(headers) do cmd[#cmd + 1] = "-H " .. shell_quote(k .. ": " .. v) end
  local infile
  if body then
    infile = tmpname()
    local f = assert(io.open(infile, "wb"))
    f:write(body)
    f:close()
    cmd[#cmd + 1] = "--data-binary @" .. shell_quote(infile)
  end
  cmd[#cmd + 1] = shell_quote(url)
  local err = read_all(table.concat(cmd, " ") .. " 2>&1")
  local f = io.open(hfile, "rb")
  local head = f and f:read("*a") or ""
  if f then f:close() end
  f = io.open(bfile, "rb")
  local rbody = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(hfile)
  os.remove(bfile)
  if infile then os.remove(infile) end
  -- With several responses (100-continue), keep the last header block.
  local last = head
  for block in head:gmatch("HTTP/[^\r\n]*\r\n.-\r\n\r\n") do last = block end
  local status = tonumber(last:match("^HTTP/%S+%s+(%d+)"))
  if not status then return { status = nil, error = err, body = rbody, headers = {} } end
  local hdrs = {}
  for k, v in last:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do hdrs[k:lower()] = v end
  local ok, decoded = pcall(sandbox.decode, rbody)
  return { status = status, headers = hdrs, body = rbody, json = ok and decoded or nil }
end

-- An admin call: JSON in, decoded JSON out (plus the status).
function Sandbox:admin(method, path, tbl)
  local res = self:http{ method = method, path = path, json = tbl }
  return res.json, res.status
end

-- The request log after entry `since` (default all), and the newest entry's seq.
function Sandbox:log(since)
  return self:admin("GET", "/_sandbox/log?since=" .. (since or 0)).log
end

function Sandbox:last_seq()
  return self:admin("GET", "/_sandbox/counters").total
end

-- Mint a token pair for a user (default alice) through the admin endpoint.
function Sandbox:token(t)
  t = t or {}
  local res = self:admin("POST", "/_sandbox/tokens", t)
  return res
end

function Sandbox:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute(shell_quote(sandbox.run_script) .. " --stop " .. shell_quote(self.prefix) .. " >/dev/null 2>&1")
end

return sandbox
