-- The one options checker: every public function that takes a table of options declares them here as
-- name -> rule and gets back the values with defaults filled in. An unknown name raises (a typo must
-- never be a silent default), and so does a value of the wrong type or range; the message names the
-- caller and the option: "freshbooks.new: timeout must be a number >= 0".
--   local SPEC = options.spec{ timeout = { "number", min = 0, default = 60 }, log = { "function" } }
--   local o = options.check("freshbooks.new", SPEC, opts, 2)   -- 2: raise at the caller's caller
-- A rule: { types, min =, max =, integer = true, nonempty = true, default =, say = }. `types` is one
-- type name or several joined by "|": string, number, boolean, table, function (a function or a
-- callable table), userdata (full or light), false (the value false itself). nonempty: a string must
-- not be "". say: what the message says the value must be ("an http(s) URL"), for a rule its caller
-- checks further. Checks that need more than a type (URLs, ids) stay with their caller.
local options = {}

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end
options.callable = callable

local TEST = {
  ["function"] = callable,
  ["false"] = function(v) return v == false end,
}
local NOUN = { ["function"] = "a function", table = "a table", string = "a string", boolean = "a boolean",
  number = "a number", ["false"] = "false", userdata = "a userdata" }

-- options.spec{name = rule} -> the compiled spec (types split once, the message made once).
function options.spec(rules)
  local spec = {}
  for name, rule in pairs(rules) do
    local r = { min = rule.min, max = rule.max, integer = rule.integer, nonempty = rule.nonempty,
      default = rule.default, tests = {} }
    local nouns = {}
    for t in rule[1]:gmatch("[^|]+") do
      r.tests[#r.tests + 1] = TEST[t] or function(v) return type(v) == t end
      nouns[#nouns + 1] = assert(NOUN[t], "options.spec: unknown type " .. t)
    end
    local what = table.concat(nouns, " or ")
    if rule.integer then what = "a whole number" end
    if rule.nonempty then what = what:gsub("^a string", "a non-empty string") end
    if r.min and r.max then what = what .. (" in %s..%s"):format(r.min, r.max)
    elseif r.min then what = what .. (" >= %s"):format(r.min) end
    r.message = name .. " must be " .. (rule.say or what)
    spec[name] = r
  end
  return spec
end

local function fits(r, v)
  local ok = false
  for _, test in ipairs(r.tests) do if test(v) then ok = true break end end
  if not ok then return false end
  if r.nonempty and v == "" then return false end
  if type(v) ~= "number" then return true end
  if v ~= v then return false end
  if r.integer and v ~= math.floor(v) then return false end
  return (r.min == nil or v >= r.min) and (r.max == nil or v <= r.max)
end

-- options.check(who, spec, opts, level) -> a new table: every option given, the defaults for the rest.
-- `opts` may be nil (all defaults). `level` is error()'s level as seen from the function calling check.
function options.check(who, spec, opts, level)
  level = (level or 2) + 1
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error(who .. ": options must be a table, got " .. type(opts), level) end
  local out = {}
  for k, v in pairs(opts) do
    local r = spec[k]
    if not r then error(who .. ": unknown option '" .. tostring(k) .. "'", level) end
    if not fits(r, v) then error(who .. ": " .. r.message, level) end
    out[k] = v
  end
  for k, r in pairs(spec) do
    if out[k] == nil then out[k] = r.default end
  end
  return out
end

return options
