-- Query rendering per family, compared with hand-written query strings.
local query = require "freshbooks.query"

describe("query rendering", function()
  local function acc(q) return query.render("accounting", q) end
  local function proj(q) return query.render("project", q) end

  it("renders nothing for nil or an empty table", function()
    assert.equal("", acc(nil))
    assert.equal("", acc({}))
  end)

  it("renders paging as plain keys in both families", function()
    assert.equal("page=2&per_page=100", acc{ page = 2, per_page = 100 })
    assert.equal("page=2&per_page=100", proj{ page = 2, per_page = 100 })
  end)

  it("renders accounting equals, in-list, like and min/max in FreshBooks' search[] syntax", function()
    assert.equal("search[customerid]=12", acc{ search = { customerid = 12 } })
    assert.equal("search[invoiceids][]=1&search[invoiceids][]=22&search[invoiceids][]=333",
      acc{ search = { invoiceids = { 1, 22, 333 } } })
    assert.equal("search[organization_like]=Acme", acc{ search = { organization = { like = "Acme" } } })
    assert.equal("search[amount_max]=99.50&search[amount_min]=10",
      acc{ search = { amount = { min = "10", max = "99.50" } } })
    assert.equal("search[date_max]=2024-12-31&search[date_min]=2024-01-01",
      acc{ search = { date = { min = "2024-01-01", max = "2024-12-31" } } })
    -- FreshBooks' own key names pass through untouched
    assert.equal("search[email_like]=a%40b.com&search[updated_min]=2024-01-01%2000%3A00%3A00",
      acc{ search = { email_like = "a@b.com", updated_min = "2024-01-01 00:00:00" } })
  end)

  it("percent-encodes every value", function()
    assert.equal("search[organization_like]=Smith%20%26%20Sons%3D%2B%2F%3F%23", acc{
      search = { organization = { like = "Smith & Sons=+/?#" } } })
    assert.equal("search[fname]=Ren%C3%A9e", acc{ search = { fname = "Renée" } })
    assert.equal("q=a%5Bb%5D", proj{ q = "a[b]" })
  end)

  it("renders includes and sort for accounting", function()
    assert.equal("include[]=lines&include[]=allowed_gateways&sort=due_date_desc",
      acc{ include = { "lines", "allowed_gateways" }, sort = "-due_date" })
    assert.equal("sort=invoice_number_asc", acc{ sort = "invoice_number" })
    assert.equal("sort=invoice_number_desc", acc{ sort = "invoice_number_desc" })
  end)

  it("renders the project family with plain keys and -field sort", function()
    assert.equal("active=true&client_id=7&complete=false&sort=-updated_at",
      proj{ search = { client_id = 7, active = true }, complete = false, sort = "-updated_at" })
    assert.equal("sort=title", proj{ sort = "title" })
    assert.equal("updated_since=2024-05-01T00%3A00%3A00Z", proj{ updated_since = "2024-05-01T00:00:00Z" })
    assert.equal("project_ids[]=1&project_ids[]=2", proj{ search = { project_ids = { 1, 2 } } })
  end)

  it("renders a combined accounting query in sorted key order", function()
    assert.equal("include[]=lines&page=3&per_page=25&search[customerid]=5&search[v3_status]=unpaid"
      .. "&sort=create_date_asc",
      acc{ page = 3, per_page = 25, include = { "lines" }, sort = "create_date",
           search = { customerid = 5, v3_status = "unpaid" } })
  end)

  it("renders whole numbers without a fraction and booleans as words", function()
    assert.equal("page=1", acc{ page = 1.0 })
    assert.equal("search[amount_min]=0.5&search[paid]=true", acc{ search = { amount = { min = 0.5 }, paid = true } })
  end)

  it("writes any number without raising: whole ones exactly, the rest round-trip", function()
    local number = query.number
    assert.same({ "0", "-3", "12345", "9007199254740991", "-9007199254740991" },
      { number(0), number(-3), number(12345.0), number(2 ^ 53 - 1), number(-(2 ^ 53 - 1)) })
    for _, v in ipairs{ 2 ^ 53, 1e300, -1e300, 0.1, 1 / 3, 2 ^ 63 } do
      assert.equal(v, tonumber(number(v)))
    end
    assert.same({ "inf", "-inf" }, { number(1 / 0), number(-1 / 0) })
    assert.matches("nan", number(0 / 0))
  end)

  -- Lua 5.3+: the core's JSON decoder gives whole numbers as integers, and an id past 2^53 is still
  -- one exact integer there: its digits are the id (two ids must not print alike).
  it("writes a Lua integer with all its digits", function()
    if not math.type then return end -- LuaJIT / 5.1: no integers, nothing past 2^53 is exact
    local core = require "freshbooks.core"
    local ids = core.json.decode("[9007199254740993, 9007199254740992, -9007199254740993]")
    ids[4], ids[5] = math.maxinteger, math.mininteger
    local out = {}
    for i, v in ipairs(ids) do out[i] = query.number(v) end
    assert.same({ "9007199254740993", "9007199254740992", "-9007199254740993", "9223372036854775807",
      "-9223372036854775808" }, out)
  end)

  it("uses a string query as it is", function()
    assert.equal("search[x]=1", acc("?search[x]=1"))
  end)

  it("raises on bad input", function()
    assert.has_error(function() acc(42) end)
    assert.has_error(function() acc{ search = "x" } end)
    assert.has_error(function() acc{ search = { x = { between = 1 } } } end)
    assert.has_error(function() acc{ search = { x = function() end } } end)
    assert.has_error(function() acc{ sort = "" } end)
    assert.has_error(function() acc{ [1] = "x" } end)
  end)

  it("is the one query path: fb:request and the resources render a table the same way", function()
    local urls = {}
    local fb = require("freshbooks").new{ client_id = "c", client_secret = "s", redirect_uri = "https://e.com/cb",
      tokens = { access_token = "a", refresh_token = "r", expires_in = 3600 }, retry = false,
      transport = function(req)
        urls[#urls + 1] = req.url:match("%?(.*)$") or ""
        return { status = 200, headers = { ["content-type"] = "application/json" },
          body = '{"response":{"result":{"invoices":[],"projects":[],"page":1,"pages":1}},"projects":[],"meta":{}}' }
      end }
    local q = { search = { amount = { min = "10" }, customerid = 7 }, sort = "-due_date", per_page = 5 }
    assert(fb:request{ path = "/accounting/account/aBcD1/invoices/invoices", query = q })
    assert(fb:account("aBcD1").invoices:list(q))
    assert.equal(urls[1], urls[2])
    assert.equal("per_page=5&search[amount_min]=10&search[customerid]=7&sort=due_date_desc", urls[1])
    -- the project family's syntax for its paths
    local p = { search = { complete = true }, sort = "-updated_at" }
    assert(fb:request{ path = "/projects/business/1000001/projects", query = p })
    assert(fb:business(1000001).projects:list(p))
    assert.equal(urls[3], urls[4])
    assert.equal("complete=true&sort=-updated_at", urls[3])
  end)
end)
