-- Resources built from the catalogue (completed by the API-surface work).
local resource = {}

function resource.account(_session, _account_id)
  error("freshbooks: resources are not implemented yet", 2)
end

function resource.business(_session, _business_id)
  error("freshbooks: resources are not implemented yet", 2)
end

return resource
