-- The nginx app of the specs of issue #24 (spec/pending_spec.lua, spec/redis_scaleout_spec.lua): many
-- FreshBooks connections of one app through freshbooks.connections and a Redis keyspace, configured as
-- docs/deployment.md asks: connection settings (resty.redis), the node's pending pairs in a shared
-- dict, a timer that writes them back.
--   http { lua_shared_dict fb_pending 1m;
--          init_by_lua_block { require("support.redis_app").configure(CONFIG_FILE) }
--          init_worker_by_lua_block { require("support.redis_app").worker() } }
--   location = /call    { content_by_lua_block { require("support.redis_app").call() } }    ?c=ID&op=me|refresh
--   location = /health  { content_by_lua_block { require("support.redis_app").health() } }
--   location = /pending { content_by_lua_block { require("support.redis_app").pending() } }  -> {entries = n}
-- CONFIG_FILE (JSON, 0600): api_url, client_id, client_secret, redirect_uri, redis_port, prefix, timeout,
-- lock_ttl, lock_timeout, store_timeout, shared_dict (absent: no pending place), trace (a path prefix:
-- each token call is written to <trace>.<worker pid> before it leaves and once its answer is in, so a
-- spec can tell which calls a killed worker had on the wire and which answers never arrived).
local cjson = require "cjson"
local freshbooks = require "freshbooks"

local app = {}
local config, conns

function app.configure(path)
  local f = assert(io.open(path, "rb"))
  config = cjson.decode(f:read("*a"))
  f:close()
end

-- The sandbox's name for a token (the first 12 hex digits of its SHA-256): through libcrypto where FFI
-- is (nginx, LuaJIT), else sha256sum.
local token_hash
local function hash(token)
  if not token_hash then
    local ok, util = pcall(require, "sandbox.util")
    token_hash = ok and util.token_hash or require("support.fbtest").hash
  end
  return token_hash(token)
end

-- A transport that writes each token call down, as the sandbox's log names tokens: "B <n> <hash of the
-- refresh token presented> <time>" before it leaves, "E <n> <status | error code> <time>" once its
-- answer is in (`clock`: epoch seconds).
function app.traced(send, trace, clock)
  local n = 0
  local function line(...)
    local f = io.open(trace, "a")
    if f then f:write(table.concat({ ... }, " "), "\n") f:close() end
  end
  return function(req)
    if not req.url:find("/auth/oauth/token", 1, true) then return send(req) end
    n = n + 1
    local id = n
    local decoded, body = pcall(cjson.decode, req.body)
    local presented = decoded and type(body) == "table" and body.refresh_token
    line("B", id, type(presented) == "string" and hash(presented) or "-", ("%.3f"):format(clock()))
    local res, err = send(req)
    line("E", id, res and res.status or (type(err) == "table" and err.code) or "error", ("%.3f"):format(clock()))
    return res, err
  end
end

-- A log hook writing each refresh's outcome down beside the calls: "L <connection> <outcome> <time>".
function app.logger(trace, clock)
  return function(event)
    if event.type ~= "refresh" and event.type ~= "load_failed" then return end
    local f = io.open(trace, "a")
    if f then
      f:write(("L %s %s %.3f\n"):format(tostring(event.connection), tostring(event.outcome or event.error), clock()))
      f:close()
    end
  end
end

local function connections()
  if conns then return conns end
  local c = config
  local o = { client_id = c.client_id, client_secret = c.client_secret, redirect_uri = c.redirect_uri,
    api_url = c.api_url, timeout = c.timeout, retry = false }
  if c.trace then
    local clock = function() ngx.update_time() return ngx.now() end
    local trace = c.trace .. "." .. ngx.worker.pid()
    o.transport = app.traced(freshbooks.transport.default{ timeout = c.timeout }, trace, clock)
    o.log = app.logger(trace, clock)
  end
  conns = freshbooks.connections{ app = o, store = app.keyspace() }
  return conns
end

local stores
function app.keyspace()
  if stores then return stores end
  local c = config
  stores = freshbooks.store.redis.keyspace{ redis = { host = "127.0.0.1", port = c.redis_port }, prefix = c.prefix,
    lock_ttl = c.lock_ttl, lock_timeout = c.lock_timeout, timeout = c.store_timeout,
    pending = c.shared_dict and { shared_dict = c.shared_dict } or nil }
  return stores
end

-- Every second, each worker writes back what the node keeps pending (an idle node too).
function app.worker()
  if not config.shared_dict then return end
  ngx.timer.every(1, function(premature)
    if not premature then app.keyspace().flush() end
  end)
end

local function reply(t) ngx.say(cjson.encode(t)) end

-- One call of the specs' load on a session: "refresh" (forced) or "me" (a request). -> ok, err
function app.run(fb, op)
  if op == "refresh" then
    local ok, err = fb:refresh()
    return ok == true, err
  end
  local res, err = fb:request{ path = "/auth/api/v1/users/me" }
  return res ~= nil, err
end

function app.call()
  local id, op = ngx.var.arg_c, ngx.var.arg_op or "me"
  local ok, err = app.run(connections():session(id), op)
  reply{ ok = ok == true, code = err and err.code, cause = err and err.cause and err.cause.code,
    message = err and tostring(err), pid = ngx.worker.pid() }
end

function app.health() ngx.say("ok") end

function app.pending()
  local dict = ngx.shared[config.shared_dict or ""]
  local n = 0
  for _, k in ipairs(dict and dict:get_keys(0) or {}) do if k:sub(1, 2) == "p:" then n = n + 1 end end
  reply{ entries = n }
end

return app
