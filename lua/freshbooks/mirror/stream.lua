-- Webhook events through a Redis stream: the OpenResty app appends each verified delivery (a cosocket:
-- the worker never blocks, and nothing calls FreshBooks from the request); sync workers on any node read
-- the stream as one consumer group, write each event's object into the mirror and acknowledge it only
-- after the commit (freshbooks.mirror.worker). An event read by a worker that died before its
-- acknowledgement stays pending and is claimed by another (XAUTOCLAIM) once idle `claim_after` seconds.
-- An event only says which object to read again, so a duplicate or a late one costs a read, never a
-- wrong row.
--   local events = require("freshbooks.mirror.stream").new{ redis = { host = "10.0.0.5", tls = {} } }
--   events:push(connection_id, webhook.parse(body))        -- in the handler, after webhook.verify
--   local batch = events:read("worker-1", { count = 100, block = 1 })   -- {{id, connection, event, at}}
--   events:ack(batch)                                       -- after the mirror committed them
--   events:pending() -> { [connection_id] = events not yet acknowledged }
-- Keys: `key` (the stream; acknowledged entries are deleted from it, so it holds only the events still
-- to apply) and key .. ":pending" (a hash: events per connection). In a Redis Cluster give `key` a hash
-- tag ("freshbooks:{events}") so both live in one slot.
local core = require "freshbooks.core"
local env = require "freshbooks.env"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local rc = require "freshbooks.store.redis_client"

local stream = {}

local unpack = table.unpack or unpack

-- The delivery's fields a worker needs (webhook.parse's pairs or a table); the rest is not kept.
local FIELDS = { "name", "object_id", "account_id", "business_id", "identity_id" }

-- KEYS: stream, pending hash. ARGV: connection, then field, value pairs.
local PUSH = [[
local id = redis.call('XADD', KEYS[1], '*', 'connection', ARGV[1], unpack(ARGV, 2))
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return id]]
-- KEYS: stream, pending hash. ARGV: group, then connection, id pairs. An id acknowledged twice (two
-- workers that both applied a claimed event) counts once.
local ACK = [[
local n = 0
for i = 2, #ARGV, 2 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i + 1]) == 1 then
    n = n + 1
    redis.call('XDEL', KEYS[1], ARGV[i + 1])
    if redis.call('HINCRBY', KEYS[2], ARGV[i], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[i]) end
  end
end
return n]]

local Stream = {}
Stream.__index = Stream

local OPTIONS = options.spec{
  redis = { "table", say = "connection settings ({host =, port =, tls =, username =, password =, sentinel =})" },
  key = { "string", nonempty = true, default = "freshbooks:{mirror}:events" },
  group = { "string", nonempty = true, default = "freshbooks-mirror" },
  timeout = { "number", min = 0.001, default = 2 },
  keepalive = { "number", min = 0, default = 60 },
  pool_size = { "number", integer = true, min = 1, default = 100 },
}

-- stream.new{redis = settings, key =, group =, timeout = 2} -> events. `timeout`: seconds any one
-- operation may take (connect, TLS, AUTH and the command), beyond a read's own block.
function stream.new(opts)
  if type(opts) ~= "table" then error("freshbooks.mirror.stream: expected a table of options", 2) end
  opts = options.check("freshbooks.mirror.stream", OPTIONS, opts, 2)
  if opts.redis == nil then error("freshbooks.mirror.stream: redis must be a table of connection settings", 2) end
  if opts.key:find("[%z\1-\31\127]") or opts.group:find("[%z\1-\31\127]") then
    error("freshbooks.mirror.stream: key and group must hold no control characters", 2)
  end
  local settings = rc.settings(opts.redis, 3)
  local open, forget = rc.opener(settings)
  return setmetatable({ key = opts.key, pending_key = opts.key .. ":pending", group = opts.group,
    timeout = opts.timeout, keepalive = opts.keepalive * 1000, pool_size = opts.pool_size,
    open = open, forget = forget }, Stream)
end

local function unavailable(what, msg) return rc.unavailable(what, msg) end

-- Gives a client back: nginx's pool, or kept by this object (plain Lua: one connection).
local function give(self, client, healthy)
  if client.set_keepalive then
    if healthy then client:set_keepalive(self.keepalive, self.pool_size) else client:close() end
  elseif healthy then
    self.client = client
  else
    rc.close(client)
  end
end

-- One command within timeout (+ extra seconds: a read's block) -> reply | nil, err. A kept connection
-- found closed (Redis restarted) is made again once.
function Stream:command(extra, method, ...)
  return rc.within(self.timeout + (extra or 0), function(ctx, deadline, ...)
    for attempt = 1, 2 do
      local client = self.client
      self.client = nil
      local err
      if not client then
        client, err = self.open(deadline)
        if not client then return nil, err end
      end
      ctx.client = client
      rc.arm(client, deadline)
      local reply, kind, msg = rc.call(client, method, ...)
      ctx.client = nil
      give(self, client, kind == nil or kind == "reply")
      if not kind then return reply end
      if kind == "reply" then return nil, rc.reply_error(msg) end
      self.forget()
      if kind == "timeout" or attempt == 2 then return nil, unavailable("no answer from Redis", msg) end
    end
  end, ...)
end

local function event_of(fields)
  local ev = {}
  if type(fields) ~= "table" then error("freshbooks.mirror.stream: push: fields must be a table", 3) end
  if fields[1] ~= nil then -- webhook.parse's ordered {name, value} pairs
    for _, p in ipairs(fields) do if type(p) == "table" then ev[p[1]] = p[2] end end
  else
    for _, k in ipairs(FIELDS) do ev[k] = fields[k] end
  end
  return ev
end

-- events:push(connection, fields) -> entry id | nil, err. `fields`: the verified delivery's form
-- fields (webhook.parse's pairs or a table); the time of receipt goes with them (the lag's start).
function Stream:push(connection, fields)
  if type(connection) ~= "string" or connection == "" then
    error("freshbooks.mirror.stream: push: the connection id must be a non-empty string", 2)
  end
  local ev = event_of(fields)
  local args = { PUSH, 2, self.key, self.pending_key, connection }
  for _, k in ipairs(FIELDS) do
    local v = ev[k]
    if v ~= nil and v ~= "" then
      v = tostring(v)
      if #v > 200 then return nil, errors.new{ code = "bad_event", message = k .. " is longer than 200 bytes" } end
      args[#args + 1], args[#args + 2] = k, v
    end
  end
  local ngx = env.yielding()
  if ngx then ngx.update_time() end
  args[#args + 1], args[#args + 2] = "at", ("%.3f"):format(ngx and ngx.now() or core.clock.time())
  return self:command(0, "eval", unpack(args))
end

-- The group, made (with the stream) when missing: a new stream, or a Redis that lost its data.
function Stream:ensure_group()
  local _, err = self:command(0, "xgroup", "CREATE", self.key, self.group, "0", "MKSTREAM")
  if err and err.redis_error ~= "BUSYGROUP" then return nil, err end
  return true
end

-- An entry (id, {field, value, ...}) -> {id, connection, event, at, deliveries}
local function entry(e)
  if type(e) ~= "table" or type(e[1]) ~= "string" or type(e[2]) ~= "table" then return nil end
  local f, kv = {}, e[2]
  for i = 1, #kv - 1, 2 do f[kv[i]] = kv[i + 1] end
  if not f.connection then return nil end
  local ev = {}
  for _, k in ipairs(FIELDS) do ev[k] = f[k] end
  return { id = e[1], connection = f.connection, event = ev, at = tonumber(f.at) }
end

local READ = options.spec{
  count = { "number", integer = true, min = 1, max = 10000, default = 100 },
  block = { "number", min = 0, max = 60, default = 1 },
  claim_after = { "number", min = 0.001, default = 30 },
}

-- events:read(consumer, {count = 100, block = 1, claim_after = 30}) -> entries | nil, err. First the
-- events other consumers left pending for claim_after seconds (a worker that died, or one that could
-- not take a connection's lease), then new ones, waiting up to `block` seconds for one.
function Stream:read(consumer, opts)
  if type(consumer) ~= "string" or consumer == "" or consumer:find("[%z\1-\31\127]") then
    error("freshbooks.mirror.stream: read: the consumer name must be a non-empty string", 2)
  end
  opts = options.check("freshbooks.mirror.stream: read", READ, opts, 2)
  local out = {}
  for _ = 1, 2 do
    local claimed, err = self:command(0, "xautoclaim", self.key, self.group, consumer,
      math.floor(opts.claim_after * 1000), "0-0", "COUNT", opts.count)
    if err and err.redis_error == "NOGROUP" then
      local ok, gerr = self:ensure_group()
      if not ok then return nil, gerr end
    elseif err then
      return nil, err
    else
      for _, e in ipairs(type(claimed) == "table" and type(claimed[2]) == "table" and claimed[2] or {}) do
        local en = entry(e)
        if en then en.claimed = true out[#out + 1] = en end
      end
      break
    end
  end
  if #out >= opts.count then return out end
  local block = #out > 0 and 0 or opts.block
  local args = { "GROUP", self.group, consumer, "COUNT", opts.count - #out }
  if block > 0 then args[#args + 1], args[#args + 2] = "BLOCK", math.max(1, math.floor(block * 1000)) end
  args[#args + 1], args[#args + 2], args[#args + 3] = "STREAMS", self.key, ">"
  local res, err = self:command(block, "xreadgroup", unpack(args))
  if err and err.redis_error == "NOGROUP" then
    local ok, gerr = self:ensure_group()
    if not ok then return nil, gerr end
    return out
  end
  if err then return nil, err end
  local s = type(res) == "table" and res[1]
  for _, e in ipairs(type(s) == "table" and type(s[2]) == "table" and s[2] or {}) do
    local en = entry(e)
    if en then out[#out + 1] = en end
  end
  return out
end

-- events:ack(entries) -> how many were still pending | nil, err. Acknowledged entries leave the stream.
function Stream:ack(entries)
  if type(entries) ~= "table" then error("freshbooks.mirror.stream: ack: expected a list of entries", 2) end
  if not entries[1] then return 0 end
  local args = { ACK, 2, self.key, self.pending_key, self.group }
  for _, e in ipairs(entries) do args[#args + 1], args[#args + 2] = e.connection, e.id end
  return self:command(0, "eval", unpack(args))
end

-- events:pending() -> {[connection] = events pushed and not yet acknowledged} | nil, err
function Stream:pending()
  local flat, err = self:command(0, "hgetall", self.pending_key)
  if not flat then
    if err then return nil, err end
    flat = {}
  end
  local out = {}
  if flat[1] == nil and next(flat) ~= nil then -- a client that answers HGETALL as a table
    for k, v in pairs(flat) do out[k] = tonumber(v) end
  else
    for i = 1, #flat - 1, 2 do out[flat[i]] = tonumber(flat[i + 1]) end
  end
  return out
end

-- events:close(): the kept connection (plain Lua) is closed; nginx's pool keeps its own.
function Stream:close()
  if self.client then rc.close(self.client) end
  self.client = nil
end

Stream.__tostring = function(s) return "freshbooks.mirror.stream (" .. s.key .. ")" end

stream.FIELDS = FIELDS

return stream
