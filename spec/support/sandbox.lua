-- The sandbox launcher lives beside the sandbox (sandbox/launch.lua): the specs and `make bench` use the
-- same one.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/support"
return dofile(here .. "/../../sandbox/launch.lua")
