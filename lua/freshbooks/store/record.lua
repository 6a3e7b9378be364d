-- The token record the built-in stores keep (store/file.lua, store/redis.lua): which fields are
-- written, and how a stored text is read back. A token response may carry anything; a store keeps
-- what matters, and a text that is not a token record is `store_corrupt`, never a half-read pair.
local cjson = require "cjson.safe"
local errors = require "freshbooks.errors"
local FIELDS = require("freshbooks.oauth").FIELDS

local record = {}

-- record.encode(tokens) -> JSON text of the token fields only.
function record.encode(tokens)
  local out = {}
  for _, k in ipairs(FIELDS) do out[k] = tokens[k] end
  return assert(cjson.encode(out))
end

-- record.decode(text, where) -> tokens, the decoded table | nil, store_corrupt error (`where` names
-- the place for the message: "token file /x/tokens.json", "Redis key fb:tokens:42").
function record.decode(text, where)
  local t = cjson.decode(text)
  if type(t) ~= "table" or type(t.refresh_token) ~= "string" then
    return nil, errors.new{ code = "store_corrupt", message = where .. " is not a token record" }
  end
  local tokens = {}
  for _, k in ipairs(FIELDS) do
    if t[k] ~= cjson.null then tokens[k] = t[k] end
  end
  return tokens, t
end

return record
