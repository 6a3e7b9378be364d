-- core.json.decode, the decoder of FreshBooks' answers: the same values lua-cjson gives (checked on
-- thousands of random documents), with object nulls left out and whole numbers as integers; and on
-- hostile input (every cut of a document, deep nesting, bad escapes, huge numbers) a coded
-- `nil, message`, never a raise or a crash.
local cjson = require "cjson"
local core = require "freshbooks.core"

local tointeger = math.tointeger

-- What lua-cjson's result becomes under the library's rules (the old tidy() walk, kept here as the
-- reference).
local function tidy(v)
  if type(v) ~= "table" then
    if tointeger and type(v) == "number" and v == math.floor(v) and math.abs(v) <= 2 ^ 53 then return tointeger(v) end
    return v
  end
  local n, out = #v, {}
  for k, x in pairs(v) do
    if x == cjson.null then
      if type(k) == "number" and k >= 1 and k <= n then out[k] = x end
    else
      out[k] = tidy(x)
    end
  end
  return out
end

local function same(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) ~= "table" then
    if a ~= b then return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
    if math.type and math.type(a) ~= math.type(b) then
      return false, path .. ": " .. math.type(a) .. " vs " .. math.type(b)
    end
    return true
  end
  for k, v in pairs(a) do
    local ok, why = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(b) do if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing" end end
  return true
end

-- Random documents: objects, arrays, strings with escapes and non-ASCII text, every kind of number.
local seed = 12345
local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
local WORDS = { "", "a", "Acme Ltd.", "naïve café", "日本語", "tab\there", "quote\"d", "back\\slash", "line\nbreak",
  "\1\31 controls", "emoji 😀", "/slash/", "null", "0", "-" }
local function gen(depth)
  local k = rnd(depth > 3 and 6 or 9)
  if k == 0 then return cjson.null end
  if k == 1 then return rnd(2) == 1 end
  if k == 2 then return rnd(2000000) - 1000000 end
  if k == 3 then return (rnd(2000000) - 1000000) / 64 end
  if k == 4 then return ({ 1e300, -1e-300, 2 ^ 53, 2 ^ 53 + 2, 1e15, 123456789012345678 })[rnd(6) + 1] end
  if k == 5 then return WORDS[rnd(#WORDS) + 1] .. WORDS[rnd(#WORDS) + 1] end
  if k == 6 or k == 7 then
    local t = {}
    for i = 1, rnd(6) do t[i] = gen(depth + 1) end
    if #t == 0 then return setmetatable({}, { __jsontype = "array" }) end
    return t
  end
  local t = {}
  for _ = 1, rnd(6) do t["k" .. rnd(50) .. WORDS[rnd(#WORDS) + 1]] = gen(depth + 1) end
  return t
end

describe("core.json.decode", function()
  it("gives what lua-cjson gives, under the library's rules, for 3,000 random documents", function()
    for i = 1, 3000 do
      local text = cjson.encode({ doc = gen(0) })
      local ours = assert(core.json.decode(text))
      local ok, why = same(tidy(cjson.decode(text)), ours)
      assert(ok, ("document %d: %s\n%s"):format(i, tostring(why), text))
    end
  end)

  it("reads FreshBooks' shapes: nulls left out of objects, kept in arrays, ids as integers", function()
    local v = assert(core.json.decode('{"response":{"result":{"invoice":{"id":7,"notes":null,"amount":'
      .. '{"amount":"12.50","code":"USD"},"lines":[null,{"qty":2.0}],"rate":1.5}}}}'))
    local inv = v.response.result.invoice
    assert.equal(7, inv.id)
    if math.type then assert.equal("integer", math.type(inv.id)) end
    assert.is_nil(inv.notes)
    assert.equal(core.json.null, inv.lines[1])
    assert.equal(cjson.null, inv.lines[1])
    assert.equal(2, inv.lines[2].qty)
    if math.type then assert.equal("integer", math.type(inv.lines[2].qty)) end
    assert.equal(1.5, inv.rate)
    assert.equal("12.50", inv.amount.amount)
    assert.equal("😀", core.json.decode('"\\ud83d\\ude00"'))
    -- a lone surrogate (lua-cjson refuses the document) is U+FFFD: one bad character, not a lost page
    for _, lone in ipairs{ '"\\ud800"', '"\\udc00"', '"\\ud800\\u0041"', '"\\ud83d"' } do
      assert.equal("\239\191\189", (core.json.decode(lone):gsub("A$", "")), lone)
    end
    assert.equal("\239\191\189A", core.json.decode('"\\ud800\\u0041"'))
    assert.equal(-0.0, core.json.decode("-0.0"))
  end)

  it("answers nil and a message for every cut of a document, and for hostile input", function()
    local doc = cjson.encode{ response = { result = { invoices = { { id = 1, notes = "a\"b\\c\226\130\172" },
      { id = 2, amount = { amount = "1.00", code = "CAD" } } }, page = 1, pages = 3 } } }
    for cut = 0, #doc - 1 do
      local v, err = core.json.decode(doc:sub(1, cut))
      assert.is_nil(v, "cut at " .. cut)
      assert.equal("bad_json", err.code)
      assert.matches("^invalid JSON at byte %d+: ", err.message)
    end
    for _, bad in ipairs{ "", " ", "nul", "tru", "{,}", "[1,]", "{\"a\"}", "{\"a\":1,}", "01", "1.", ".5", "-", "1e",
        "+1", "0x10", "NaN", "Infinity", "'x'", "\"a\\x\"", "\"\\u12\"", "\"\\uZZZZ\"", "\"raw\ncontrol\"", "{} x",
        "[1] [2]", "\"unterminated", "{\"a\" 1}", "[" .. string.rep("1,", 10) .. "]", "\0" } do
      local v, err = core.json.decode(bad)
      assert.is_nil(v, ("%q"):format(bad))
      assert.equal("bad_json", err.code)
    end
    -- nesting: 1000 levels are fine, 1001 are refused; a million opening brackets cost nothing
    assert.is_table(core.json.decode(string.rep("[", 1000) .. string.rep("]", 1000)))
    local _, deep = core.json.decode(string.rep("[", 1001) .. string.rep("]", 1001))
    assert.matches("nested too deep", deep.message)
    assert.matches("nested too deep", select(2, core.json.decode(string.rep("[", 1000000))).message)
    -- huge numbers stay numbers; long digit strings are exact as far as doubles go
    assert.equal(1e308, core.json.decode("1e308"))
    assert.equal(math.huge, core.json.decode("1e999"))
    assert.equal(12345678901234567890, core.json.decode("12345678901234567890"))
    assert.has_error(function() core.json.decode(nil) end)
  end)

  it("is used for every answer the library reads (the session's res.data)", function()
    local freshbooks = require "freshbooks"
    local fb = freshbooks.new{ client_id = "c", client_secret = "s", redirect_uri = "https://e.com/cb",
      tokens = { access_token = "a", refresh_token = "r", expires_in = 3600 }, retry = false,
      transport = function() return { status = 200, headers = { ["content-type"] = "application/json" },
        body = '{"id":10001.0,"gone":null,"list":[null]}' } end }
    local res = assert(fb:request{ path = "/x" })
    assert.equal(10001, res.data.id)
    if math.type then assert.equal("integer", math.type(res.data.id)) end
    assert.is_nil(res.data.gone)
    assert.equal(core.json.null, res.data.list[1])
  end)
end)
