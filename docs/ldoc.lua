-- docs/meta.lua (LuaLS annotations: the one source) -> the same API with LDoc's tags, for `make docs`.
--   lua docs/ldoc.lua docs/meta.lua > build/docs-src/freshbooks.lua
-- LDoc cannot read LuaLS tags (it refuses @class, @meta, and reads `@param name type` as name and
-- text), so each doc block is rewritten: @class -> a @type section with @tfield, @param -> @tparam,
-- @return -> @treturn, @alias and @overload -> text; code lines stay for LDoc to name the items.
local src = assert(io.open(arg[1], "rb")):read("*a")

-- "type rest": the type may hold spaces only inside brackets (fun(a: x), table<k, v>).
local function split_type(s)
  local depth, i = 0, 1
  while i <= #s do
    local c = s:sub(i, i)
    if c:match("[%(%{%[<]") then depth = depth + 1
    elseif c:match("[%)%}%]>]") then depth = depth - 1
    elseif c:match("%s") and depth == 0 then break end
    i = i + 1
  end
  return (s:sub(1, i - 1):gsub("%s+", "")), (s:sub(i):gsub("^%s+", ""))
end

-- LDoc's optional mark is a leading "?", and any other "?" in a type confuses it.
local function ldoc_type(ty)
  local optional = ty:find("?$")
  ty = ty:gsub("%?", "")
  return optional and "?" .. ty or ty
end

-- Classes with methods (a `local X = {}` follows them) become @type sections, their methods its
-- items; data-only classes and aliases become @table items, listed first (LDoc puts an item in the
-- section above it).
local tables, sections = {}, {}
local out = sections
local function emit(s) out[#out + 1] = s end

local function describe(b, name)
  emit("--- " .. (b.text[1] or name))
  for i = 2, #b.text do emit("-- " .. b.text[i]) end
  for _, o in ipairs(b.overloads) do emit("-- Callable: `" .. o .. "`.") end
end

local header, block, in_header = {}, nil, true
local function flush(code)
  if not block then return end
  local b = block
  block = nil
  if b.class and code and code:match("^local [%w_]+ = {}") then
    out = sections
    describe(b, b.class)
    for _, f in ipairs(b.fields) do emit(("-- Field `%s` (%s): %s"):format(f[2], f[1], f[3])) end
    emit("-- @type " .. b.class)
    emit("local _ = {}")
  elseif b.class or b.alias then
    out = tables
    describe(b, b.class or b.alias)
    if b.alias then emit("-- The type: `" .. b.alias_type .. "`.") end
    for _, f in ipairs(b.fields) do emit(("-- @tfield %s %s %s"):format(f[1], f[2], f[3])) end
    emit("-- @table " .. (b.class or b.alias))
    emit("local _ = {}") -- ends the comment (LDoc joins comments across blank lines)
    emit("")
    out = sections
    return
  else
    describe(b, "")
    for _, t in ipairs(b.tags) do emit("-- " .. t) end
    if code and code:match("^function ") then emit(code) end
  end
  emit("")
end

for line in (src .. "\n"):gmatch("(.-)\r?\n") do
  if line == "---@meta" then line = "" end -- LuaLS only
  local doc = line:match("^%-%-%-(.*)$")
  if in_header and not doc and line:match("^%-%-") then
    header[#header + 1] = line:gsub("^%-%-%s?", "")
  elseif doc then
    in_header = false
    block = block or { text = {}, tags = {}, fields = {}, overloads = {} }
    local tag, rest = doc:match("^@(%w+)%s*(.*)$")
    if not tag then
      block.text[#block.text + 1] = doc
    elseif tag == "class" then
      block.class = rest:match("^([%w_.]+)")
    elseif tag == "field" then
      local name, r = rest:match("^([%w_]+%??)%s+(.*)$")
      local ty, desc = split_type(r)
      block.fields[#block.fields + 1] = { ldoc_type(ty), (name:gsub("%?$", "")), desc }
    elseif tag == "param" then
      local name, r = rest:match("^([%w_.]+%??)%s+(.*)$")
      local ty, desc = split_type(r)
      local opt = name:find("?", 1, true) or ty:find("?$")
      block.tags[#block.tags + 1] = ("@tparam%s %s %s %s"):format(opt and "[opt]" or "", ldoc_type(ty):gsub("^%?", ""),
        name:gsub("%?$", ""), desc)
    elseif tag == "return" then
      local ty, desc = split_type(rest)
      block.tags[#block.tags + 1] = ("@treturn %s %s"):format(ldoc_type(ty), desc)
    elseif tag == "alias" then
      block.alias, block.alias_type = rest:match("^([%w_.]+)%s+(.*)$")
    elseif tag == "overload" then
      block.overloads[#block.overloads + 1] = rest
    else
      error(("docs/ldoc.lua: no LDoc rendering for @%s (%s)"):format(tag, line), 0)
    end
  else
    in_header = in_header and line == ""
    flush(line)
  end
end
flush()

io.write("--- ", header[1] or "", "\n")
for i = 2, #header do io.write("-- ", header[i], "\n") end
io.write("-- @module freshbooks\n\n", table.concat(tables, "\n"), "\n", table.concat(sections, "\n"), "\n")
