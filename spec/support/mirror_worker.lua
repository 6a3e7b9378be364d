-- A sync in a process of its own, for the specs that kill it: mirror_worker.lua API_URL TOKENS_FILE MIRROR
-- [PARALLEL] (MIRROR: a file, or pg:CONNECTION for a PostgreSQL mirror at $FB_PG). Prints a line per
-- progress event, "synced" and exits 0 when the sync completes, else the error and exits 1.
local cjson = require "cjson"
local freshbooks = require "freshbooks"
local mirror = require "freshbooks.mirror"

local api_url, tokens_file, path, parallel = arg[1], arg[2], arg[3], tonumber(arg[4] or "4")
local f = assert(io.open(tokens_file, "rb"))
local tokens = cjson.decode(f:read("*a"))
f:close()
local fb = freshbooks.new{ client_id = tokens.client_id, client_secret = tokens.client_secret,
  redirect_uri = tokens.redirect_uri, api_url = api_url, auth_url = api_url, timeout = 20,
  tokens = { access_token = tokens.access_token, refresh_token = tokens.refresh_token, expires_in = 43200 },
  save = function() return true end }
-- MIRROR "pg:CONNECTION": that connection's mirror in the PostgreSQL of $FB_PG (a conninfo)
local pg_connection = path:match("^pg:(.+)$")
local m, err
if pg_connection then
  m, err = mirror.open{ postgres = os.getenv("FB_PG"), connection = pg_connection }
else
  m, err = mirror.open{ path = path }
end
if not m then
  io.stdout:write("open failed: ", tostring(err), "\n")
  os.exit(1)
end
io.stdout:write("started\n")
io.stdout:flush()
-- a line per step, for the spec to choose a moment to kill
local function progress(ev)
  io.stdout:write(ev.type, " ", tostring(ev.resource or ""), " ", tostring(ev.page or ev.phase or ""), "\n")
  io.stdout:flush()
end
local ok, serr = m:sync(fb, { budget = false, parallel = parallel, businesses = { "aBcD1" }, wait = 30,
  progress = progress })
if not ok then
  io.stdout:write("failed: ", tostring(serr), "\n")
  os.exit(1)
end
m:close()
io.stdout:write("synced\n")
os.exit(0)
