std = "max"
codes = true
read_globals = { "ngx" }  -- OpenResty code paths check for it at run time
max_line_length = 120
files["spec"] = { std = "+busted" }
files["sandbox/lua"] = { globals = { "ngx" } }
files["spec/support/hostile.lua"] = { globals = { "ngx" } }  -- runs inside nginx
files["examples/openresty"] = { globals = { "ngx" } }  -- handlers set ngx.status, ngx.header
exclude_files = { "build", "sandbox/crosscheck/node_modules" }
