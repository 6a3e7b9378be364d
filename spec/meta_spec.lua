-- docs/meta.lua (the editors' annotations, and the source of `make docs`) against the real modules:
-- every function it documents exists, and every public function of the stable objects is documented,
-- so a new or renamed function cannot leave the annotations behind.
local freshbooks = require "freshbooks"
local core = require "freshbooks.core"

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
  local client = core.client()
  local g = assert(core.guest("return 1", "=meta", { memory = 1e6, instructions = 1e6, time = 1, patterns = 1e6,
    output = 1e6 }))
  local conns = freshbooks.connections{ app = { client_id = "id", client_secret = "s",
    redirect_uri = "https://example.com/cb" }, store = function() return { load = function() end } end }
  teardown(function() client:close() g:close() end)

  -- The objects behind each class. `all = true`: every public function must be documented (the
  -- others still expose helpers of their own, which the annotations leave out).
  local real = {
    ["freshbooks"] = { t = freshbooks, all = true },
    ["freshbooks.Session"] = { t = getmetatable(fb).__index, all = true },
    ["freshbooks.Connections"] = { t = getmetatable(conns).__index, all = true },
    ["freshbooks.Resource"] = { t = getmetatable(acct.invoices).__index },
    ["freshbooks.Report"] = { t = getmetatable(acct.reports.profit_and_loss).__index, all = true },
    ["freshbooks.Upload"] = { t = getmetatable(acct.attachments).__index, all = true },
    ["freshbooks.errors"] = { t = require "freshbooks.errors" },
    ["freshbooks.store"] = { t = freshbooks.store },
    ["freshbooks.store.redis"] = { t = freshbooks.store.redis, all = true },
    ["freshbooks.webhook"] = { t = require "freshbooks.webhook", all = true },
    ["freshbooks.guest"] = { t = require "freshbooks.guest", all = true },
    ["freshbooks.transport"] = { t = require "freshbooks.transport", all = true },
    ["freshbooks.retry"] = { t = require "freshbooks.retry", all = true },
    ["freshbooks.report"] = { t = require "freshbooks.report" },
    ["freshbooks.core"] = { t = core, all = true },
    ["freshbooks.core.Client"] = { t = getmetatable(client).__index, all = true },
    ["freshbooks.core.Guest"] = { t = getmetatable(g).__index, all = true },
  }

  it("documents only functions that exist", function()
    for class, names in pairs(doc) do
      local r = real[class]
      for name in pairs(names) do
        if r then assert.is_function(r.t[name], class .. "." .. name .. " is documented but does not exist") end
      end
    end
  end)

  it("documents every public function of the stable objects", function()
    for class, r in pairs(real) do
      if r.all then
        for name in pairs(public(r.t)) do
          assert.is_true((doc[class] or {})[name], class .. "." .. name .. " has no annotation in docs/meta.lua")
        end
      end
    end
  end)
end)
