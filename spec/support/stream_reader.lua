-- A consumer that reads a batch of the stream and dies before acknowledging it (the spec SIGKILLs it):
-- stream_reader.lua REDIS_PORT KEY CONSUMER. Prints "read N" once it holds the batch.
require("support.redis").client_module() -- (lua-redis's path under Lua 5.4)
local stream = require "freshbooks.mirror.stream"
local core = require "freshbooks.core"
local events = stream.new{ redis = { host = "127.0.0.1", port = tonumber(arg[1]) }, key = arg[2] }
local batch = assert(events:read(arg[3], { count = 1000, block = 5 }))
io.stdout:write("read ", #batch, "\n")
io.stdout:flush()
core.clock.sleep(60)
