-- errors.from_response: every FreshBooks error shape, from hand-written bodies (the sandbox-backed
-- proofs of the same shapes are in resource_spec.lua).
local errors = require "freshbooks.errors"
local cjson = require "cjson"

local function res(status, body, headers)
  headers = headers or {}
  if type(body) == "table" then body = cjson.encode(body); headers["content-type"] = "application/json" end
  return { status = status, headers = headers, body = body or "" }
end

describe("errors.from_response", function()
  it("returns nil for successes", function()
    assert.is_nil(errors.from_response(res(200, { response = { result = { invoice = { id = 1 } } } })))
    assert.is_nil(errors.from_response(res(204, "")))
    assert.is_nil(errors.from_response(res(200, "\137PNG...", { ["content-type"] = "image/png" })))
    -- a record may well have a field called `code` or `error`
    assert.is_nil(errors.from_response(res(200, { project = { id = 1, code = 3, error = "x" } })))
  end)

  it("reads the legacy accounting errors[] shape", function()
    local e = errors.from_response(res(404, { response = { errors = { {
      errno = 1012, field = "userid", message = "Client not found.", object = "client", value = "12345" } } } }))
    assert.is_true(errors.is(e))
    assert.same({ "not_found", 404, 1012, "Client not found." }, { e.code, e.status, e.errno, e.message })
    assert.same({ { errno = 1012, field = "userid", message = "Client not found.", object = "client",
      value = "12345" } },
      e.errors)
    assert.equal("freshbooks: not_found: Client not found. (HTTP 404)", tostring(e))
  end)

  it("refines a 400 by errno: required field and invalid value are validation errors", function()
    local e = errors.from_response(res(400, { response = { errors = {
      { errno = 1001, field = "customerid", message = "Field customerid is required.", object = "invoice" },
      { errno = 1004, field = "create_date", message = "Invalid date.", object = "invoice", value = "x" } } } }))
    assert.equal("validation", e.code)
    assert.equal(2, #e.errors)
    assert.equal("create_date", e.errors[2].field)
    assert.equal(1004, e.errors[2].errno)
  end)

  it("reads the legacy shape sent with HTTP 200", function()
    local e = errors.from_response(res(200, { response = { errors = { {
      errno = 1012, field = "taxid", message = "Tax not found.", object = "tax", value = "9" } } } }))
    assert.equal("not_found", e.code)
    assert.equal(200, e.status)
    assert.equal("taxid", e.errors[1].field)
  end)

  it("reads the google.rpc shape", function()
    local body = { code = 3, message = "Invalid request", details = { {
      ["@type"] = "type.googleapis.com/google.rpc.ErrorInfo", reason = "1001", domain = "accounting",
      metadata = { field = "vendorid", message = "Field vendorid is required.", object = "bill" } } } }
    local e = errors.from_response(res(400, body))
    -- the detail's text, not the top message (FreshBooks' says only "Request failed with status_code: N")
    assert.same({ "validation", 400, 1001, "Field vendorid is required." }, { e.code, e.status, e.errno, e.message })
    assert.same({ field = "vendorid", message = "Field vendorid is required.", object = "bill", errno = 1001 },
      e.errors[1])
    -- and with a 200 status, the rpc code decides
    body.code = 5
    assert.equal("not_found", errors.from_response(res(200, body)).code)
    -- empty metadata values are none; without a detail text the top message stands (the Java SDK's recorded 401)
    e = errors.from_response(res(401, { code = 16, message = "Request failed with status_code: 401", details = { {
      ["@type"] = "type.googleapis.com/google.rpc.ErrorInfo", reason = "1003", domain = "accounting.api.freshbooks.com",
      metadata = { object = "", message = "", value = "", field = "" } } } }))
    assert.same({ "unauthorized", 1003, "Request failed with status_code: 401" }, { e.code, e.errno, e.message })
    assert.same({ errno = 1003, message = "1003" }, e.errors[1])
  end)

  it("reads the project family shapes", function()
    local e = errors.from_response(res(422, { errno = 2001, error = { title = "This field is required." } }))
    assert.same({ "validation", 422, 2001 }, { e.code, e.status, e.errno })
    assert.same({ field = "title", message = "This field is required.", errno = 2001 }, e.errors[1])
    assert.equal("title: This field is required.", e.message)
    e = errors.from_response(res(404, { error = "Requested resource could not be found." }))
    assert.same({ "not_found", "Requested resource could not be found." }, { e.code, e.message })
    e = errors.from_response(res(401, { message = "Unauthorized" }))
    assert.same({ "unauthorized", "Unauthorized" }, { e.code, e.message })
  end)

  it("reads the accounting-business shape (ledger accounts): the reason, and metadata as field errors", function()
    local body = { errors = { message = "Bad Request", status = 400, details = { {
      reason = "Account name is already taken", metadata = { field = "name", message = "must be unique" } } } } }
    local e = errors.from_response(res(400, body))
    -- field errors come with 400 in this family: a validation failure, as the other families' 422
    assert.same({ "validation", 400, "Account name is already taken" }, { e.code, e.status, e.message })
    assert.same({ { field = "name", message = "must be unique" } }, e.errors)
    -- the same shape sent with 200 is an error too, and without field errors its own status names it
    assert.equal("validation", errors.from_response(res(200, body)).code)
    local missing = { errors = { message = "Request failed with status code 404", status = 404,
      details = { { reason = "Not found.", metadata = { message = "Not found." } } } } }
    assert.same({ "not_found", "Not found." }, { errors.from_response(res(200, missing)).code,
      errors.from_response(res(404, missing)).message })
    assert.equal("bad_request", errors.from_response(res(400, { errors = { message = "Bad Request", status = 400,
      details = { { reason = "Malformed request" } } } })).code)
    -- and a success in that family is not mistaken for one
    assert.is_nil(errors.from_response(res(200, { data = { uuid = "x", name = "Cash" } })))
  end)

  it("reads the online-payments shape (payment options), also with HTTP 200", function()
    local body = { error_type = "validation", message = "A validation error occurred.", errors = { {
      error_type = "type_error.enum", message = "value is not a valid enumeration member", field = "entity_type" } } }
    local e = errors.from_response(res(400, body))
    assert.same({ "validation", 400, "value is not a valid enumeration member" }, { e.code, e.status, e.message })
    assert.same({ { field = "entity_type", message = "value is not a valid enumeration member" } }, e.errors)
    assert.equal("validation", errors.from_response(res(200, body)).code)
    e = errors.from_response(res(200, { error_type = "not_found", message = "Resource not found" }))
    assert.same({ "not_found", 200, "Resource not found" }, { e.code, e.status, e.message })
    assert.equal("not_found", errors.from_response(res(404, { error_type = "not_found", message = "x" })).code)
    assert.is_nil(errors.from_response(res(200, { payment_options = { gateway_name = "stripe" } })))
  end)

  it("supports concatenation like tostring", function()
    local e = errors.new{ code = "timeout", message = "slow" }
    assert.equal("failed: freshbooks: timeout: slow", "failed: " .. e)
    assert.equal("freshbooks: timeout: slow!", e .. "!")
  end)

  it("reads the events shape", function()
    local e = errors.from_response(res(404, { errno = 404, message = "Callback not found" }))
    assert.same({ "not_found", 404, "Callback not found" }, { e.code, e.errno, e.message })
    e = errors.from_response(res(422, { errno = 422, message = "Invalid callback",
      details = { { field = "uri", message = "must be https" } } }))
    assert.same({ "validation", "uri", "must be https" }, { e.code, e.errors[1].field, e.errors[1].message })
  end)

  it("reads RFC 6749 auth errors, keeping their names as codes", function()
    local e = errors.from_response(res(400, { error = "invalid_grant",
      error_description = "The refresh token is invalid." }))
    assert.same({ "invalid_grant", "invalid_grant", "The refresh token is invalid." }, { e.code, e.oauth_error,
      e.message })
    e = errors.from_response(res(401, { error = "unauthenticated", error_description = "The access token expired" }))
    assert.same({ "unauthorized", "The access token expired" }, { e.code, e.message })
    e = errors.from_response(res(403, { error = "insufficient_scope", error_description = "needs user:invoices:read" }))
    assert.equal("forbidden", e.code)
  end)

  it("keeps a server's own OAuth error name to the message's rules: scrubbed, capped, a string", function()
    local hex = ("0123456789abcdef"):rep(4)
    local e = errors.from_response(res(400, { error = "bad_" .. hex .. ("z"):rep(3000), error_description = "no" }))
    assert.is_nil(e.code:find(hex, 1, true))
    assert.is_nil(tostring(e):find(hex, 1, true))
    assert.is_nil(e.oauth_error:find(hex, 1, true), e.oauth_error:sub(1, 80))
    assert.is_true(#e.oauth_error <= 1024 + 3, #e.oauth_error)
    e = errors.new{ code = "oauth_error", oauth_error = { hex } }
    assert.is_nil(e.oauth_error)
  end)

  it("says the HTTP status once in tostring, whatever the body held", function()
    local function count(s, what) local _, n = s:gsub(what, "") return n end
    for _, case in ipairs{ { 500, "" }, { 500, "not json" }, { 502, "<html>x</html>" }, { 404, "" },
        { 409, "" }, { 418, "" }, { 429, "" }, { 503, '{"error":"server_error"}' } } do
      local e = errors.from_response(res(case[1], case[2]))
      local s = tostring(e)
      assert.equal(1, count(s, "HTTP " .. case[1]), s)
      assert.equal(1, count(s, tostring(case[1])), s)
    end
    assert.equal("freshbooks: server_error: Internal Server Error (HTTP 500)",
      tostring(errors.from_response(res(500, ""))))
    -- the token endpoint's unreadable answer too
    local _, err = require("freshbooks.oauth").parse_token_response({ status = 502, headers = {}, body = "oops" },
      os.time)
    assert.equal(1, count(tostring(err), "502"), tostring(err))
  end)

  it("maps statuses without a known body", function()
    local e = errors.from_response(res(503, "<html><head><title>503 Service Unavailable</title></head></html>",
      { ["content-type"] = "text/html" }))
    assert.same({ "server_error", 503, "503 Service Unavailable" }, { e.code, e.status, e.message })
    e = errors.from_response(res(409, ""))
    assert.same({ "conflict", "Conflict" }, { e.code, e.message })
    e = errors.from_response(res(418, "teapot"))
    assert.equal("http_error", e.code)
  end)

  it("reads Retry-After on 429 in seconds or as an HTTP date", function()
    local e = errors.from_response(res(429, { message = "Too Many Requests" }, { ["retry-after"] = "7" }))
    assert.same({ "rate_limited", 7 }, { e.code, e.retry_after })
    assert.equal(30, errors.retry_after("Sun, 06 Nov 1994 08:50:07 GMT", 784111777))
    assert.equal(0, errors.retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111800))
    assert.is_nil(errors.retry_after("soon"))
  end)

  it("treats an unreadable JSON body or an HTML page on 200 as a bad response", function()
    local e = errors.from_response(res(200, '{"response": {"res', { ["content-type"] = "application/json" }))
    assert.equal("bad_response", e.code)
    e = errors.from_response(res(200, "<!DOCTYPE html><html></html>", { ["content-type"] = "text/html" }))
    assert.equal("bad_response", e.code)
  end)

  it("uses res.data when the caller already decoded the body", function()
    local r = res(404, "ignored")
    r.data = { errno = 404, message = "gone" }
    assert.equal("gone", errors.from_response(r).message)
  end)

  it("keeps token-like strings out of messages", function()
    local e = errors.from_response(res(400, { error = "invalid_grant",
      error_description = "token 9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928 is not valid" }))
    assert.is_nil(tostring(e):find("9f8e7d6c5b4a", 1, true))
  end)
end)

-- A hostile or broken server picks the values: every leaf of every known error shape replaced by
-- every JSON kind (huge and fractional numbers, booleans, null, objects, arrays, long strings).
describe("errors.from_response against hostile values", function()
  local shapes = {
    { response = { errors = { { errno = 1012, field = "userid", message = "m", object = "client", value = "v" } } } },
    { code = 3, message = "m", details = { { ["@type"] = "type.googleapis.com/google.rpc.BadRequest",
      fieldViolations = { { field = "f", description = "d" } } }, { reason = "r" } } },
    { errno = 2001, error = { title = "This field is required." } },
    { error = "invalid_grant", error_description = "d" },
    { error_type = "not_found", message = "m", errors = { { field = "f", message = "m" } } },
    { message = "m", errors = { f = "bad" }, details = { { reason = "r", metadata = { f = "x" } } } },
  }
  local kinds = { 1e300, -1e300, 0.5, 2 ^ 63, true, false, cjson.null, { 1, 2 }, { a = { b = {} } }, {},
                  ("x"):rep(100000), "" }
  local function paths(t, prefix, out)
    for k, v in pairs(t) do
      local p = {}
      for i, seg in ipairs(prefix) do p[i] = seg end
      p[#p + 1] = k
      out[#out + 1] = p
      if type(v) == "table" then paths(v, p, out) end
    end
    return out
  end
  local function with(shape, path, value)
    local copy = cjson.decode(cjson.encode(shape))
    local t = copy
    for i = 1, #path - 1 do t = t[path[i]] end
    t[path[#path]] = value
    return copy
  end

  it("always gives an error with a string code and message, never raises", function()
    local n = 0
    for _, shape in ipairs(shapes) do
      for _, path in ipairs(paths(shape, {}, {})) do
        for _, value in ipairs(kinds) do
          for _, status in ipairs{ 200, 400, 401, 404, 422, 500 } do
            local doc = with(shape, path, value)
            local body = cjson.encode(doc)
            local what = cjson.encode(path) .. " = " .. (type(value) == "string" and #value > 40 and
              "<" .. #value .. " bytes>" or cjson.encode(value)) .. ", HTTP " .. status
            local ok, e = pcall(errors.from_response, res(status, body, { ["content-type"] = "application/json" }))
            assert(ok, what .. " raised " .. tostring(e))
            if e ~= nil then
              assert.is_true(errors.is(e), what)
              assert.is_string(e.code, what)
              assert.is_string(e.message, what)
              assert.is_string(tostring(e), what)
              assert.is_true(#e.message <= 1024 + 3, what)
              for _, fe in ipairs(e.errors or {}) do
                for _, k in ipairs{ "field", "message", "object", "value" } do
                  assert(fe[k] == nil or type(fe[k]) == "string", what .. " errors[]." .. k)
                end
              end
              n = n + 1
            end
          end
        end
      end
    end
    assert.is_true(n > 1000, n)
  end)
end)

describe("redact.scrub", function()
  local redact = require "freshbooks.redact"
  it("mask takes a run of 16+ of a value's letters and digits for the value, wherever a cut left it", function()
    local token = "Zq8vL2mN4pR6sT1uW3xY5zA7bC9dE0fG" -- mixed, but a run scrub alone cannot take once cut
    local echo = "ERR unknown command 'evalsha', with args beginning with: '" .. token:sub(1, 18) .. "' "
    assert.equal("ERR unknown command 'evalsha', with args beginning with: '***' ", redact.mask(echo, { token }))
    assert.equal("a *** b *** c", redact.mask("a " .. token .. " b " .. token:sub(9, 24) .. " c", { token }))
    -- shorter than a run: kept (masking it would tell whoever sent it that a guess was right); short
    -- values only whole
    assert.equal("keep " .. token:sub(1, 15) .. " / ***", redact.mask("keep " .. token:sub(1, 15) .. " / " .. token,
      { token }))
    assert.equal("s*** and se", redact.mask("sshort and se", { "short" }))
  end)

  it("masks token-like runs and keeps paths, URLs and ordinary words readable", function()
    local hex = string.rep("a1", 32)
    local b64url = "eyJhbGciOiJIUzI1NiJ9-abcDEF_0123456789xyz"
    local s = redact.scrub("token " .. hex .. " and " .. b64url .. " in /tmp/fb-spec.Ab12Cd/tokens.json"
      .. " at https://api.freshbooks.com/accounting/account/aBcD1/invoices/invoices/1234567")
    assert.is_nil(s:find(hex, 1, true))
    assert.is_nil(s:find(b64url, 1, true))
    assert.truthy(s:find("/tmp/fb-spec.Ab12Cd/tokens.json", 1, true))
    assert.truthy(s:find("https://api.freshbooks.com/accounting/account/aBcD1/invoices/invoices/1234567", 1, true))
  end)

  it("is applied to every error message", function()
    local e = errors.new{ code = "x", message = "refresh " .. string.rep("0f", 20) .. " failed" }
    assert.are.equal("freshbooks: x: refresh *** failed", tostring(e))
  end)
end)
