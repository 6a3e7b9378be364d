-- One worker of the contention spec: N forced refreshes through a shared file store, printing one JSON
-- line with what happened. Usage: <lua> contention_worker.lua api_url client_id client_secret
-- redirect_uri store_path N. (The client secret comes through the environment: FB_CLIENT_SECRET.)
local cjson = require "cjson"
local freshbooks = require "freshbooks"

-- A sixth argument "nolock" runs without the store's lock (to show the spec can fail).
local api_url, client_id, redirect_uri, path, n, mode = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5]), arg[6]
local outcomes, errors = {}, {}
local function count(t, k) t[k] = (t[k] or 0) + 1 end

local ok, failure = xpcall(function()
  local store = freshbooks.store.file(path)
  if mode == "nolock" then store = { load = store.load, save = store.save } end
  local fb = freshbooks.new{
    client_id = client_id, client_secret = os.getenv("FB_CLIENT_SECRET"), redirect_uri = redirect_uri,
    api_url = api_url, store = store, retry = false, timeout = 30,
    log = function(e) if e.type == "refresh" then count(outcomes, e.outcome) end end,
  }
  for i = 1, n do
    local done, err = fb:refresh()
    if not done then count(errors, err.code) end
    if i % 10 == 0 then -- and the tokens work
      local me, merr = fb:me(true)
      if not me then count(errors, "me:" .. merr.code) end
    end
  end
end, debug.traceback)

io.write(cjson.encode{ ok = ok, failure = not ok and tostring(failure) or nil, outcomes = outcomes,
  errors = errors }, "\n")
os.exit(ok and 0 or 1)
