std = "max"
codes = true
max_line_length = 120
files["spec"] = { std = "+busted" }
files["sandbox/lua"] = { globals = { "ngx" } }
exclude_files = { "build", "sandbox/crosscheck/node_modules" }
