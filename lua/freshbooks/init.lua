-- lua-freshbooks: a FreshBooks API client. `require "freshbooks"` is the public entry.
local freshbooks = {
  _VERSION = "0.1.0",
  errors = require "freshbooks.errors",
  transport = require "freshbooks.transport",
}
freshbooks.version = freshbooks._VERSION

return freshbooks
