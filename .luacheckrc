std = "max"
codes = true
read_globals = { "ngx" }  -- OpenResty code paths check for it at run time
max_line_length = 120
files["spec"] = { std = "+busted" }
files["sandbox/lua"] = { globals = { "ngx" } }
exclude_files = { "build", "sandbox/crosscheck/node_modules" }
