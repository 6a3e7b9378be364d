std = "max"
codes = true
read_globals = { "ngx" }  -- OpenResty code paths check for it at run time
max_line_length = 120
files["spec"] = { std = "+busted" }
files["sandbox/lua"] = { globals = { "ngx" } }
files["spec/support/hostile.lua"] = { globals = { "ngx" } }  -- runs inside nginx
-- The guest state's prelude (src/guest.c) replaces these in the guest's own libraries.
files["src/guest_env.lua"] = { globals = { "print", "xpcall", "tostring", "coroutine", "string", "table", "os" } }
files["examples/openresty"] = { globals = { "ngx" } }  -- handlers set ngx.status, ngx.header
exclude_files = { "build", "sandbox/crosscheck/node_modules" }
-- LuaLS meta file: empty functions and tables that only describe the API.
files["docs/meta.lua"] = { unused = false }
