-- Shared helpers for the session specs: sessions wired to a sandbox, the authorization dance, the
-- sandbox's request log, temp dirs. (The sandbox itself is spec/support/sandbox.lua.)
local freshbooks = require "freshbooks"

local H = {}

-- The interpreter running the specs, for child processes.
H.lua = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")

function H.opts(sb, extra)
  local o = {
    client_id = sb.app.client_id, client_secret = sb.app.client_secret, redirect_uri = sb.app.redirect_uri,
    api_url = sb.url, auth_url = sb.auth_url or sb.url, timeout = 10,
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- A session holding a freshly minted token pair for `user` (default alice).
function H.session(sb, extra, user)
  local o = H.opts(sb, extra)
  if o.tokens == nil and not (extra and (extra.store or extra.load)) then
    o.tokens = sb:token{ user = user or "alice" }
  end
  return freshbooks.new(o)
end

-- The browser's part: open the authorize URL (auto-consent answers 302 to the redirect URI).
-- Returns the Location the browser would follow.
function H.consent(sb, url)
  local res = sb:http{ url = url }
  assert(res.status == 302, "authorize answered " .. tostring(res.status) .. ": " .. tostring(res.body))
  return res.headers.location
end

function H.authorize(sb, fb, scopes)
  local url, state = fb:authorize_url{ scopes = scopes }
  return fb:authorize_callback(H.consent(sb, url), state)
end

-- Request-log entries after `since` (default all), and the last seq.
function H.log(sb, since) return sb:log(since) end
function H.last_seq(sb) return sb:last_seq() end

function H.count(entries, pred)
  local n = 0
  for _, e in ipairs(entries) do if pred(e) then n = n + 1 end end
  return n
end

function H.is_token_post(e) return e.method == "POST" and e.path == "/auth/oauth/token" end

-- The sandbox's token hash (first 12 hex digits of SHA-256), as its request log shows tokens. The
-- token goes through a temp file, never a command line.
function H.hash(token)
  local name = os.tmpname()
  local f = assert(io.open(name, "wb"))
  f:write(token)
  f:close()
  local p = assert(io.popen("sha256sum < '" .. name .. "'"))
  local out = p:read("*a")
  p:close()
  os.remove(name)
  return out:sub(1, 12)
end

-- The newest refresh token the sandbox issued (its hash) after log entry `since`.
function H.newest_issued(sb, since)
  local issued
  for _, e in ipairs(H.log(sb, since)) do issued = e.issued_refresh_token or issued end
  return issued
end

-- Whether a shell command exited 0, under every Lua: 5.1 and LuaJIT's os.execute return the status
-- (0 is truthy there, and so is a failure's 256), 5.2+ return true or nil.
function H.run(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

-- spec/run tags its run's directories (FB_SPEC_TAG) so that its leftover check sees only its own,
-- whatever other runs on the machine are doing.
function H.tmpdir()
  local tag = (os.getenv("FB_SPEC_TAG") or ""):gsub("[^%w]", "")
  local p = io.popen("mktemp -d /tmp/fb-spec." .. tag .. "XXXXXX")
  local dir = p:read("*l")
  p:close()
  return dir
end

function H.rmdir(dir)
  if dir and dir:match("^/tmp/fb%-spec%.") then os.execute("rm -rf '" .. dir .. "'") end
end

function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Does `s` contain any of the secret strings? (Checked without printing them.)
function H.leaks(s, secrets)
  s = tostring(s)
  for _, v in ipairs(secrets) do
    if type(v) == "string" and #v > 0 and s:find(v, 1, true) then return true end
  end
  return false
end

-- Fields of one CSV line ("" quoting, as RFC 4180).
function H.split_csv(line)
  local f, i = {}, 1
  while i <= #line + 1 do
    if line:sub(i, i) == '"' then
      local j, v = i + 1, {}
      while true do
        local c = line:sub(j, j)
        if c == '"' and line:sub(j + 1, j + 1) == '"' then v[#v + 1] = '"'; j = j + 2
        elseif c == '"' then j = j + 1; break
        elseif c == "" then break
        else v[#v + 1] = c; j = j + 1 end
      end
      f[#f + 1] = table.concat(v)
      i = j + 1
    else
      local j = line:find(",", i, true) or #line + 1
      f[#f + 1] = line:sub(i, j - 1)
      i = j + 1
    end
  end
  return f
end

-- The most intervals {start, finish} in progress at one instant: concurrency as the server saw it,
-- so a spec can prove parallelism without timing the client.
function H.max_overlap(intervals)
  local events = {}
  for _, iv in ipairs(intervals) do
    events[#events + 1] = { iv[1], 1 }
    events[#events + 1] = { iv[2], -1 }
  end
  -- At equal times, a finish sorts before a start: touching intervals do not overlap.
  table.sort(events, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end return a[2] < b[2] end)
  local now, most = 0, 0
  for _, e in ipairs(events) do
    now = now + e[2]
    if now > most then most = now end
  end
  return most
end

return H
