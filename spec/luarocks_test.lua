-- `luarocks test` (the rockspec's test section): LuaRocks runs this under the interpreter it targets
-- (`luarocks --lua-version=5.3 test` runs it under lua5.3), so it builds that interpreter's core and runs
-- the specs under it with spec/run, as `LUAS=<it> spec/run` would. Nothing is installed (make check
-- installs Debian's packages first): what .ci/deps lists must be there. Arguments are spec files.
local lua = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")

local function sh(cmd)
  io.stderr:write("luarocks test: ", cmd, "\n")
  local ok, _, code = os.execute(cmd)
  if ok == true or ok == 0 then return end -- Lua 5.2+ / 5.1
  os.exit(type(code) == "number" and code or 1)
end

local specs = {}
for i = 1, #arg do specs[i] = (arg[i]:gsub("'", "'\\''")) end
-- The nginx specs load build/luajit (under 5.4 and LuaJIT), and the guest spec's C host links Lua 5.4.
sh("make LUA=" .. lua .. " && make LUA=luajit && make LUA=lua5.4 build/lua5.4/embed-host")
sh(("LUAS=%s SPECS='%s' ./spec/run"):format(lua, #specs > 0 and table.concat(specs, " ") or "spec/*_spec.lua"))
