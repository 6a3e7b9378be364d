-- The demo behind `make demo` (run it through examples/demo, which sets the module paths).
-- 1. start the sandbox (HTTPS with its throwaway CA, auto-consent on);
-- 2. authorize like a web app would: authorize URL -> consent -> redirect with code and state ->
--    callback helper (state checked, code exchanged, tokens saved to a file store);
-- 3. run examples/billing_report.lua as a user would, against the sandbox, for every business;
-- 4. stop the sandbox, whatever happened.
local freshbooks = require "freshbooks"
local sandbox = require "support.sandbox"

local LUA = os.getenv("FB_DEMO_LUA") or "lua5.4"
local AS_OF = "2025-06-30" -- the sandbox's seeded "today", so every aging bucket has something in it
local q = sandbox.shell_quote

local function step(s) io.stderr:write("demo: ", s, "\n") end

-- Arguments go to the billing report as they are (`./examples/demo --csv`, `--business NAME`).
local report_args = {}
for i, a in ipairs(arg or {}) do report_args[i] = q(a) end

local function demo(sb, dir)
  local tokens = dir .. "/tokens.json"
  local api_url = sb.tls_url or sb.url
  local fb = freshbooks.new{
    client_id = sb.app.client_id, client_secret = sb.app.client_secret, redirect_uri = sb.app.redirect_uri,
    api_url = api_url, auth_url = sb.auth_url or sb.url, cainfo = sb.ca_file,
    store = freshbooks.store.file(tokens),
  }
  local url, state = fb:authorize_url{ scopes = { "user:profile:read", "user:invoices:read", "user:clients:read" } }
  step("authorize at " .. url:gsub("state=[^&]+", "state=..."))
  local consent = sb:http{ url = url } -- the browser's part; auto-consent answers with the redirect
  if consent.status ~= 302 or not consent.headers.location then
    error("the consent page answered HTTP " .. tostring(consent.status))
  end
  local ok, err = fb:authorize_callback(consent.headers.location, state)
  if not ok then error("authorization failed: " .. tostring(err)) end
  step("authorized; tokens saved to " .. tokens)

  local cmd = table.concat({
    "FB_CLIENT_ID=" .. q(sb.app.client_id), "FB_CLIENT_SECRET=" .. q(sb.app.client_secret),
    "FB_REDIRECT_URI=" .. q(sb.app.redirect_uri), LUA, "examples/billing_report.lua", "--tokens", q(tokens),
    "--api-url", q(api_url), "--auth-url", q(sb.auth_url or sb.url), "--as-of", AS_OF,
    sb.ca_file and ("--ca-file " .. q(sb.ca_file)) or "", table.concat(report_args, " ") }, " ")
  step("running the billing report as of " .. AS_OF)
  local ran = os.execute(cmd)
  if ran ~= true and ran ~= 0 then error("the billing report failed") end
  if #report_args == 0 then step("the same as CSV: ./examples/demo --csv") end
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -m 700 " .. q(dir)))
step("starting the sandbox")
local sb = sandbox.start{ invoices = 250, auto_consent = true, admin = true }
local ok, err = pcall(demo, sb, dir)
sb:stop()
os.execute("rm -rf " .. q(dir))
step("sandbox stopped")
if not ok then
  io.stderr:write("demo failed: ", tostring(err), "\n")
  os.exit(1)
end
