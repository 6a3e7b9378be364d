-- lua-freshbooks: a FreshBooks API client. `require "freshbooks"` is the public entry.
--   local fb = freshbooks.new{ client_id =, client_secret =, redirect_uri =, store = freshbooks.store.file(path) }
-- See docs/session.md for every option.
local freshbooks = {
  _VERSION = "0.1.0",
  errors = require "freshbooks.errors",
  transport = require "freshbooks.transport",
  store = { file = require "freshbooks.store.file", redis = require "freshbooks.store.redis" },
  webhook = require "freshbooks.webhook",
}
freshbooks.version = freshbooks._VERSION

-- freshbooks.new{...} -> a session (lua/freshbooks/session.lua). Bad configuration raises.
function freshbooks.new(opts)
  return require("freshbooks.session").new(opts)
end

-- freshbooks.connections{app =, store =, ...} -> many connections of one app (lua/freshbooks/connections.lua).
function freshbooks.connections(opts)
  return require("freshbooks.connections").new(opts)
end

return freshbooks
