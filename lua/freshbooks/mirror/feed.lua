-- Webhook events from OpenResty to a mirror, without blocking a worker: a request handler that has
-- verified a delivery only queues its event in a shared dict (memory); a timer of one worker hands the
-- queue, over a cosocket, to the Unix socket `freshbooks sync --watch --listen PATH` serves, which
-- writes the mirror (SQLite blocks: it never runs in a worker). What the watcher has not answered stays
-- queued, so a watcher that is down or restarting loses nothing the queue can hold.
--   http {
--     lua_shared_dict freshbooks_events 4m;
--     init_worker_by_lua_block {
--       require("freshbooks.mirror.feed").start{ socket = "/run/freshbooks/events.sock" }
--     }
--   }
--   -- in the handler, after webhook.verify:  require("freshbooks.mirror.feed").push(fields)
local cjson = require "cjson"
local options = require "freshbooks.options"

local feed = {}

local DICT = "freshbooks_events"
local FIELDS = { "name", "object_id", "account_id", "business_id" }
local MAX_TRIES = 5

local function shared(name)
  local d = ngx.shared[name or DICT]
  if not d then error("freshbooks.mirror.feed: no lua_shared_dict " .. (name or DICT), 3) end
  return d
end

-- feed.push(fields [, dict]) -> true | nil, err: the event of a verified delivery (webhook.parse's
-- pairs, or a table of its fields), queued. A full queue drops its oldest event (the next sync reads
-- what it said) rather than this one.
function feed.push(fields, dict)
  local d = shared(dict)
  local ev = {}
  if fields[1] ~= nil then
    for _, p in ipairs(fields) do if type(p) == "table" then ev[p[1]] = p[2] end end
  else
    for k, v in pairs(fields) do ev[k] = v end
  end
  local out = {}
  for _, k in ipairs(FIELDS) do
    if type(ev[k]) == "string" or type(ev[k]) == "number" then out[k] = tostring(ev[k]) end
  end
  if not out.name or not out.object_id then return nil, "not an event" end
  local line = cjson.encode(out)
  for _ = 1, 3 do
    local n, err = d:rpush("queue", line)
    if n then return true end
    if err ~= "no memory" then return nil, err end
    d:lpop("queue")
    ngx.log(ngx.WARN, "freshbooks.mirror.feed: the queue is full; its oldest event is dropped")
  end
  return nil, "no memory"
end

-- One round: up to `batch` events over one connection, each answered before the next; an event not
-- answered goes back to the front of the queue (an error answer: to its end, at most MAX_TRIES times).
local function drain(opts)
  local d = shared(opts.dict)
  if (d:llen("queue") or 0) == 0 then return end
  local sock = ngx.socket.tcp()
  sock:settimeout(opts.timeout)
  local ok, err = sock:connect("unix:" .. opts.socket)
  if not ok then
    if opts.warned ~= err then ngx.log(ngx.WARN, "freshbooks.mirror.feed: ", opts.socket, ": ", err) end
    opts.warned = err
    return
  end
  opts.warned = nil
  for _ = 1, opts.batch do
    local line = d:lpop("queue")
    if not line then break end
    local sent, serr = sock:send(line .. "\n")
    local answer = sent and sock:receive("*l")
    if not answer then
      d:lpush("queue", line) -- not taken: first again next round
      ngx.log(ngx.WARN, "freshbooks.mirror.feed: ", opts.socket, ": ", tostring(serr or "no answer"))
      sock:close()
      return
    end
    if answer:match("^error ") and answer ~= "error bad_event" then
      local ev = cjson.decode(line)
      ev.tries = (tonumber(ev.tries) or 0) + 1
      if ev.tries < MAX_TRIES then d:rpush("queue", cjson.encode(ev)) end
    end
  end
  sock:setkeepalive(10000, 1)
end

-- feed.start{socket = path, dict = "freshbooks_events", interval = 0.2, batch = 100, timeout = 5} in
-- init_worker_by_lua: the first worker drains the queue every `interval` seconds.
local START = options.spec{
  socket = { "string", nonempty = true, say = "the watcher's --listen path" },
  dict = { "string", nonempty = true }, interval = { "number", min = 0.001, default = 0.2 },
  batch = { "number", integer = true, min = 1, default = 100 }, timeout = { "number", min = 0.001, default = 5 },
}

function feed.start(opts)
  opts = options.check("freshbooks.mirror.feed.start", START, opts, 2)
  if opts.socket == nil then
    error("freshbooks.mirror.feed.start: socket (the watcher's --listen path) is required", 2)
  end
  shared(opts.dict)
  if ngx.worker.id() ~= 0 then return true end
  local o = { socket = opts.socket, dict = opts.dict, batch = opts.batch, timeout = opts.timeout * 1000 }
  local busy = false
  return ngx.timer.every(opts.interval, function(premature)
    if premature or busy then return end
    busy = true
    local ok, err = pcall(drain, o)
    busy = false
    if not ok then ngx.log(ngx.ERR, "freshbooks.mirror.feed: ", tostring(err)) end
  end)
end

return feed
