-- `make bench`: lua-freshbooks (under lua5.4 and luajit) against a raw libcurl loop in C and the
-- official FreshBooks Node SDK, all against one local sandbox holding 10,000 invoices, in one run:
--   1. single GET of a client record: requests per second and client CPU per request;
--   2. exporting the 10,000 invoices as the sandbox answers, and with 50 ms of latency per page (as a
--      remote API has): sequential, 8 pages at once over HTTP/1.1, 8 at once over HTTP/2 (TLS), with the
--      connections each walk opened (counted by the server);
--   3. memory per extra live session (1,000 sessions, one GET each): what the sessions hold on the heap
--      after a full collection (collectgarbage("count"); Node's heapUsed), and RSS, which also holds
--      what the collector has not given back.
-- Contenders run as child processes in interleaved rounds (the sandbox is one nginx worker on the same
-- cores, so one round alone says little); each figure is the median with the min-max of the rounds.
--   usage: lua5.4 bench/run.lua build/bench/raw_get [rounds]
local sandbox = require "launch" -- sandbox/launch.lua

local RAW = arg[1] or "build/bench/raw_get"
local ROUNDS = tonumber(arg[2]) or 3
local GETS, SESSIONS, INVOICES = 2000, 1000, 10000
local q = sandbox.shell_quote

local function say(fmt, ...) io.write(string.format(fmt, ...), "\n") io.flush() end

local function run(cmd, env)
  local p = assert(io.popen(env .. " " .. cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

local function has(cmd) return run("command -v " .. cmd .. " >/dev/null && echo yes", "") == "yes\n" end

-- The contenders: name -> function(mode, url, n) -> the numbers it printed (nil when it cannot run).
local NODE = has("node") and io.open("bench/node/node_modules/@freshbooks/api/package.json") ~= nil
local function ours(lua)
  return function(mode, url, n, env)
    local paths = ("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/%s/?.so;;'"):format(lua)
    return run(("%s bench/client.lua %s %s %s"):format(lua, mode, q(url), tostring(n)), env .. " " .. paths)
  end
end
local CONTENDERS = {
  { name = "lua-freshbooks, lua5.4", key = "lua54", run = ours("lua5.4") },
  { name = "lua-freshbooks, luajit", key = "luajit", run = ours("luajit") },
  { name = "raw libcurl loop (C)", key = "raw", modes = { get = true }, parse = "([%d%.]+) req/s, ([%d%.]+) us cpu",
    run = function(_, url, n, env)
    return run(("%s %s %d"):format(q(RAW), q(url .. "/accounting/account/aBcD1/users/clients/10001"), n),
      (env:gsub("FB_TOKEN=", "FB_BENCH_TOKEN=")))
  end },
  { name = "Node SDK @freshbooks/api", key = "node", skip = not NODE and "node or bench/node/node_modules missing",
    run = function(mode, url, n, env)
      return run(("node --expose-gc bench/node/bench.js %s %s %s"):format(mode, q(url), tostring(n)), env)
    end },
}

local function numbers(out)
  local t = {}
  for x in out:gmatch("[%d%.]+") do t[#t + 1] = tonumber(x) end
  return t
end

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  if #s == 0 then return nil end
  if #s % 2 == 1 then return s[(#s + 1) / 2] end
  return (s[#s / 2] + s[#s / 2 + 1]) / 2
end
local function spread(xs)
  local lo, hi = math.huge, -math.huge
  for _, x in ipairs(xs) do lo, hi = math.min(lo, x), math.max(hi, x) end
  return lo, hi
end
local function fmt(xs, f)
  if not xs or #xs == 0 then return "-" end
  local lo, hi = spread(xs)
  return (f .. " (" .. f .. "-" .. f .. ")"):format(median(xs), lo, hi)
end

-- The sandbox's TLS port by name, as a real API is reached (its certificate names localhost too).
local function by_name(url) return (url:gsub("^https://127%.0%.0%.1:", "https://localhost:")) end

local function bench(sb)
  local token = sb:token{ user = "alice" }.access_token
  local env = "FB_TOKEN=" .. q(token) .. " FB_CA=" .. q(sb.ca_file) .. " NODE_EXTRA_CA_CERTS=" .. q(sb.ca_file)
  local jit = run("luajit -v", ""):match("LuaJIT [%w%.%-]+") or "luajit"
  say("lua-freshbooks benchmark: %d rounds, sandbox with %d invoices (%s; %s; libcurl %s)", ROUNDS, INVOICES,
    _VERSION, jit, require("freshbooks.core").http.curl_version:match("libcurl/(%S+)"))
  for _, c in ipairs(CONTENDERS) do if c.skip then say("  (skipped: %s: %s)", c.name, c.skip) end end
  local results = {}
  local function record(key, what, value)
    results[key] = results[key] or {}
    results[key][what] = results[key][what] or {}
    table.insert(results[key][what], value)
  end
  local clients_url = sb.url -- the paths are built by each contender from the account and client ids
  local function export_round(label, url)
    for _, c in ipairs(CONTENDERS) do
      if not c.skip and (not c.modes or c.modes.export) then
        for _, par in ipairs(c.key == "node" and { 1 } or { 1, 8 }) do
          local since = sb:last_seq()
          local out = c.run("export", url, par, env)
          local secs, count = numbers(out)[1], numbers(out)[2]
          if count ~= INVOICES then error(c.name .. " export failed: " .. out) end
          local conns, h2 = {}, 0
          for _, e in ipairs(sb:log(since)) do
            if e.path:find("invoices/invoices$") then
              if e.connection then conns[e.connection] = true end
              if e.http2 then h2 = h2 + 1 end
            end
          end
          local n = 0
          for _ in pairs(conns) do n = n + 1 end
          local what = label .. "/p" .. par
          record(c.key, what, secs)
          record(c.key, what .. "/conns", n)
          record(c.key, what .. "/h2", h2)
        end
      end
    end
  end
  -- One untimed walk first: the sandbox keeps each record's rendering and each walk's filtered list
  -- while nothing changes, so no contender pays for the server's first encoding of a page.
  assert(run(("lua5.4 bench/client.lua export %s 8"):format(q(sb.url)),
    env .. " LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/lua5.4/?.so;;'"):find("10000"))
  for round = 1, ROUNDS do
    io.stderr:write(("round %d/%d\n"):format(round, ROUNDS))
    for _, c in ipairs(CONTENDERS) do
      if not c.skip then
        local out = c.run("get", clients_url, GETS, env)
        local t = numbers(out)
        if c.parse then
          local rps, cpu = out:match(c.parse)
          t = { tonumber(rps), tonumber(cpu) }
        end
        if not t[2] then error(c.name .. " get failed: " .. out) end
        record(c.key, "get_rps", t[1])
        record(c.key, "get_cpu", t[2])
      end
    end
    export_round("plain", sb.url)
    sb:admin("POST", "/_sandbox/faults", { route = "invoices/invoices$", method = "GET", fault = "delay", ms = 50,
      rate = 1 })
    export_round("latency", sb.url)
    export_round("latency_h2", by_name(sb.tls_url))
    sb:admin("DELETE", "/_sandbox/faults")
    for _, c in ipairs(CONTENDERS) do
      if not c.skip and (not c.modes or c.modes.mem) then
        local m = numbers(c.run("mem", clients_url, SESSIONS, env))
        record(c.key, "mem", m[1])
        record(c.key, "heap", m[2])
      end
    end
  end

  local function m(key, what) return results[key] and results[key][what] and median(results[key][what]) end
  local function ratio(a, b) return (a and b) and ("%.2f"):format(a / b) or "-" end
  say("")
  say("1. single GET of a client record (%d per round): requests/s, client CPU per request", GETS)
  say("   %-28s %-26s %-24s %-9s %s", "", "req/s median (min-max)", "CPU us/req", "vs raw", "vs Node")
  for _, c in ipairs(CONTENDERS) do
    if not c.skip then
      local r = results[c.key]
      say("   %-28s %-26s %-24s %-9s %s", c.name, fmt(r.get_rps, "%.0f"), fmt(r.get_cpu, "%.1f"),
        c.key == "raw" and "1" or ratio(m(c.key, "get_rps"), m("raw", "get_rps")) .. "x rate, " ..
          ratio(m(c.key, "get_cpu"), m("raw", "get_cpu")) .. "x CPU",
        c.key == "node" and "1" or ratio(m(c.key, "get_rps"), m("node", "get_rps")) .. "x rate")
    end
  end
  say("")
  say("2. export of %d invoices (100 pages of 100): seconds median (min-max), connections opened", INVOICES)
  for _, label in ipairs{ "plain", "latency", "latency_h2" } do
    say("   %s", ({ plain = "as the sandbox answers (HTTP/1.1)", latency = "50 ms per page, HTTP/1.1",
      latency_h2 = "50 ms per page, HTTPS (HTTP/2 when negotiated)" })[label])
    for _, c in ipairs(CONTENDERS) do
      if not c.skip and (not c.modes or c.modes.export) then
        for _, par in ipairs(c.key == "node" and { 1 } or { 1, 8 }) do
          local what = label .. "/p" .. par
          local r = results[c.key]
          local speedup = par > 1 and (" speed-up %sx"):format(ratio(m(c.key, label .. "/p1"), m(c.key, what))) or ""
          local vs_node = c.key ~= "node" and NODE and (" vs Node %sx faster"):format(ratio(m("node", label .. "/p1"),
            m(c.key, what))) or ""
          say("     %-28s %-9s %-22s conns %-3s h2 %-4s%s%s", c.name, par > 1 and ("parallel " .. par) or "sequential",
            fmt(r[what], "%.2f"), ("%d"):format(m(c.key, what .. "/conns") or 0),
            ("%d"):format(m(c.key, what .. "/h2") or 0), speedup, vs_node)
        end
      end
    end
  end
  say("")
  say("3. memory per extra live session (%d sessions, one GET each), median (min-max):", SESSIONS)
  say("   %-28s %-24s %-24s %s", "", "KB held (heap)", "KB RSS", "")
  for _, c in ipairs(CONTENDERS) do
    if not c.skip and (not c.modes or c.modes.mem) then
      local vs = c.key ~= "node" and NODE
        and ("(Node SDK / this: %sx held, %sx RSS)"):format(ratio(m("node", "heap"), m(c.key, "heap")),
          ratio(m("node", "mem"), m(c.key, "mem")))
      local r = results[c.key]
      say("   %-28s %-24s %-24s %s", c.name, fmt(r.heap, "%.2f"), fmt(r.mem, "%.1f"), vs or "")
    end
  end
end

local sb = sandbox.start{ invoices = INVOICES }
local ok, err = pcall(bench, sb)
sb:stop()
if not ok then io.stderr:write("bench failed: ", tostring(err), "\n") os.exit(1) end
