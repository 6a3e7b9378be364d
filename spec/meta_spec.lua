-- docs/meta.lua (the editors' annotations, and the source of `make docs`) against the real modules:
-- every function it documents exists, and every public function of the stable objects is documented,
-- so a new or renamed function cannot leave the annotations behind.
local freshbooks = require "freshbooks"
local core = require "freshbooks.core"
local vm = require "freshbooks.vm"

-- class name -> {function name = true}, from `---@class X` + `local L = {}` + `function L.f` / `L:f`.
local function documented()
  local classes, of_local, class = {}, {}, nil
  for line in io.lines("docs/meta.lua") do
    class = line:match("^%-%-%-@class ([%w_.]+)") or class
    local l = line:match("^local ([%w_]+) = {}")
    if l and class then of_local[l], classes[class] = class, classes[class] or {} end
    local owner, name = line:match("^function ([%w_]+)[.:]([%w_]+)%(")
    if owner then
      assert(of_local[owner], "docs/meta.lua: function of an unknown table: " .. line)
      classes[of_local[owner]][name] = true
    end
  end
  return classes
end

local function public(t)
  local out = {}
  for k, v in pairs(t) do
    if type(v) == "function" and not tostring(k):match("^_") then out[k] = true end
  end
  return out
end

describe("docs/meta.lua", function()
  local doc = documented()
  local fb = freshbooks.new{ client_id = "id", client_secret = "secret", redirect_uri = "https://example.com/cb",
    transport = function() return nil, { code = "connect" } end }
  local acct = fb:account("aBcD1")
  local client = core.http.client()
  local g = assert(vm.new("return 1", "=meta", { memory = 1e6, instructions = 1e6, time = 1, patterns = 1e6,
    output = 1e6 }))
  local conns = freshbooks.connections{ app = { client_id = "id", client_secret = "s",
    redirect_uri = "https://example.com/cb" }, store = function() return { load = function() end } end }
  local stream = assert(fb:stream())
  local db = assert(core.sqlite.open(":memory:"))
  local stmt = assert(db:prepare("SELECT 1"))
  local mir = assert(require("freshbooks.mirror").open{ path = ":memory:" })
  teardown(function() client:close() g:close() stream:close() stmt:close() db:close() mir:close() end)

  -- The objects behind each class: every public function of each must be documented.
  local real = {
    ["freshbooks"] = { t = freshbooks },
    ["freshbooks.Session"] = { t = require("freshbooks.session").methods },
    ["freshbooks.Stream"] = { t = getmetatable(stream).__index },
    ["freshbooks.Connections"] = { t = getmetatable(conns).__index },
    ["freshbooks.Resource"] = { t = getmetatable(acct.invoices).__index },
    ["freshbooks.PaymentOptions"] = { t = getmetatable(acct.invoice_payment_options).__index },
    ["freshbooks.Report"] = { t = getmetatable(acct.reports.profit_and_loss).__index },
    ["freshbooks.Upload"] = { t = getmetatable(acct.attachments).__index },
    ["freshbooks.errors"] = { t = require "freshbooks.errors" },
    ["freshbooks.store.file"] = { t = freshbooks.store.file },
    ["freshbooks.store.redis"] = { t = freshbooks.store.redis },
    ["freshbooks.webhook"] = { t = require "freshbooks.webhook" },
    ["freshbooks.guest"] = { t = require "freshbooks.guest" },
    ["freshbooks.transport"] = { t = require "freshbooks.transport" },
    ["freshbooks.env"] = { t = require "freshbooks.env" },
    ["freshbooks.retry"] = { t = require "freshbooks.retry" },
    ["freshbooks.report"] = { t = require "freshbooks.report" },
    ["freshbooks.core"] = { t = core },
    ["freshbooks.core.http"] = { t = core.http },
    ["freshbooks.core.codec"] = { t = core.codec },
    ["freshbooks.core.crypto"] = { t = core.crypto },
    ["freshbooks.core.secret"] = { t = core.secret },
    ["freshbooks.core.json"] = { t = core.json },
    ["freshbooks.core.fs"] = { t = core.fs },
    ["freshbooks.core.clock"] = { t = core.clock },
    ["freshbooks.core.signal"] = { t = core.signal },
    ["freshbooks.core.process"] = { t = core.process },
    ["freshbooks.core.Client"] = { t = getmetatable(client).__index },
    ["freshbooks.vm"] = { t = vm },
    ["freshbooks.vm.Guest"] = { t = getmetatable(g).__index },
    ["freshbooks.core.sqlite"] = { t = core.sqlite },
    ["freshbooks.core.Sqlite"] = { t = getmetatable(db).__index },
    ["freshbooks.core.SqliteStatement"] = { t = getmetatable(stmt).__index },
    ["freshbooks.mirror"] = { t = require "freshbooks.mirror" },
    ["freshbooks.Mirror"] = { t = getmetatable(mir).__index },
    ["freshbooks.mirror.reports"] = { t = require "freshbooks.mirror.reports" },
  }

  -- Every miss is listed at once, sorted, so one run says all that is to fix.
  local function none(list, what)
    table.sort(list)
    assert(#list == 0, #list .. " " .. what .. ": " .. table.concat(list, ", "))
  end

  it("documents only functions that exist", function()
    local missing = {}
    for class, names in pairs(doc) do
      local r = real[class]
      for name in pairs(names) do
        if r and type(r.t[name]) ~= "function" then missing[#missing + 1] = class .. "." .. name end
      end
    end
    none(missing, "documented but do not exist")
  end)

  it("reads the session's methods from the table checked here", function()
    for name, f in pairs(require("freshbooks.session").methods) do assert.equal(f, fb[name], name) end
  end)

  it("documents every public function of the stable objects", function()
    local missing = {}
    for class, r in pairs(real) do
      for name in pairs(public(r.t)) do
        if not (doc[class] or {})[name] then missing[#missing + 1] = class .. "." .. name end
      end
    end
    none(missing, "have no annotation in docs/meta.lua")
  end)
end)
