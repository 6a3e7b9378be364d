-- lua-freshbooks: a FreshBooks API client. `require "freshbooks"` is the public entry.
--   local fb = freshbooks.new{ client_id =, client_secret =, redirect_uri =, store = freshbooks.store.file(path) }
-- See docs/session.md for every option.
local freshbooks = {
  errors = require "freshbooks.errors",
  transport = require "freshbooks.transport",
  store = { file = require "freshbooks.store.file", redis = require "freshbooks.store.redis" },
  webhook = require "freshbooks.webhook",
}
-- _VERSION and version: the C core's (src/freshbooks.h has the one copy), read on first use so that
-- `require "freshbooks"` works before the core is built (the command says how to build it).
setmetatable(freshbooks, { __index = function(t, k)
  if k ~= "_VERSION" and k ~= "version" then return nil end
  local v = require("freshbooks.core").version
  rawset(t, "_VERSION", v)
  rawset(t, "version", v)
  return v
end })

-- freshbooks.new{...} -> a session (lua/freshbooks/session.lua). Bad configuration raises.
function freshbooks.new(opts)
  return require("freshbooks.session").new(opts, "freshbooks.new", 2) -- (a tail call: level 2 is our caller)
end

-- freshbooks.connections{app =, store =, ...} -> many connections of one app (lua/freshbooks/connections.lua).
function freshbooks.connections(opts)
  return require("freshbooks.connections").new(opts)
end

return freshbooks
