-- The scripts the Redis store runs inside Redis (EVALSHA, loaded by their SHA-1; store/redis.lua): its
-- load, fenced save, write-back (restore), generation marker, lock with owner and deadline, release,
-- extension, OAuth states (put, del) and scan.
-- Each touches one key (KEYS[1]), so they also run on a Redis Cluster. Server-side code: Redis' own
-- Lua 5.1, its `redis.call` and nothing of this library.
return {
  -- -> the record | its length when over ARGV[1] bytes | nil (WRONGTYPE for another kind of value)
  load = [[
local n = redis.call('STRLEN', KEYS[1])
if n > tonumber(ARGV[1]) then return n end
return redis.call('GET', KEYS[1])]],
  -- ARGV: previous refresh token ('' for a new authorization), the new refresh token, the new record
  -- (JSON), the size limit, the version the caller knows `previous` had (for a new authorization: the
  -- least version it may have). -> {1, version, absent}
  -- written (or already written: repeating it is harmless; absent = 1 when nothing was stored, or
  -- only a pair older than `previous`), {0, version} refused because the stored refresh token is
  -- another, newer one, {2, version} refused because the record with its version and saved_at is
  -- over the limit (load would refuse it). What is not a token record (garbage, oversized) holds no
  -- token to protect and is replaced. Versions go on from the caller's when nothing is stored (a
  -- wiped Redis), so a newer pair always has the higher one; a stored version below the caller's
  -- `previous` is a pair Redis lost and got back from a process that held an older one. A new
  -- authorization starts at Redis's clock in milliseconds, never below what is stored: every pair of a
  -- later authorization outranks every pair of an earlier one (its refreshes take over a millisecond
  -- each), a delete in between included, so a process holding the earlier grant's pair never writes
  -- it back over the later grant's.
  save = [[
local known = tonumber(ARGV[5]) or 0
local version, cur, absent = known, nil, 1
if redis.call('STRLEN', KEYS[1]) <= tonumber(ARGV[4]) then cur = redis.call('GET', KEYS[1]) end
if cur then
  local ok, t = pcall(cjson.decode, cur)
  if ok and type(t) == 'table' and type(t.refresh_token) == 'string' then
    version, absent = tonumber(t.version) or 0, 0
    if t.refresh_token == ARGV[2] then return {1, version, 0} end
    if ARGV[1] ~= '' and t.refresh_token ~= ARGV[1] then
      if version >= known then return {0, version} end
      version, absent = known, 1
    end
  end
end
if ARGV[1] == '' then
  local t = redis.call('TIME')
  version = math.max(version, known, t[1] * 1000 + math.floor(t[2] / 1000))
end
local rec = cjson.decode(ARGV[3])
rec.version = version + 1
rec.saved_at = tonumber(redis.call('TIME')[1])
local text = cjson.encode(rec)
if #text > tonumber(ARGV[4]) then return {2, version} end
redis.call('SET', KEYS[1], text)
return {1, version + 1, absent}]],
  -- A pair this process holds, written back after Redis lost it (ARGV: the record, its version, 'nx'
  -- to write only where no token record is). Never over a token record of the same or a higher version.
  -- -> 1 written | 0 refused
  restore = [[
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, t = pcall(cjson.decode, cur)
  if ok and type(t) == 'table' and type(t.refresh_token) == 'string'
    and (ARGV[3] == 'nx' or (tonumber(t.version) or 0) >= tonumber(ARGV[2])) then return 0 end
end
local rec = cjson.decode(ARGV[1])
rec.version = tonumber(ARGV[2])
rec.saved_at = tonumber(redis.call('TIME')[1])
redis.call('SET', KEYS[1], cjson.encode(rec))
return 1]],
  -- The store's generation: a random value set once; a Redis that lost its data has another (or none).
  -- A process that finds it changed marks it (ARGV[2] = 'wiped': "<generation> <ms on Redis's clock>"),
  -- so processes that never saw the one before learn it too. -> {generation, ms since the mark | -1}
  generation = [[
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local cur = redis.call('GET', KEYS[1])
if not cur then
  cur = ARGV[1]
  redis.call('SET', KEYS[1], cur)
end
local g, at = string.match(cur, '^(%S+) (%d+)$')
if not g then g = cur end
if ARGV[2] == 'wiped' then
  at = now
  redis.call('SET', KEYS[1], g .. ' ' .. now)
end
return {g, at and now - tonumber(at) or -1}]],
  -- The lock key holds "<owner> <deadline in ms>". Taken when absent, past its deadline, or already
  -- ours (a repeated attempt whose first answer was lost); its TTL is the deadline plus ARGV[3] ms,
  -- so a lock never released stays readable after its deadline. A value of another shape (the layout
  -- before: an owner alone, with its TTL) is waited out. -> {1, 'free' | 'again' | 'expired'} | {0}
  lock = [[
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local cur, state = redis.call('GET', KEYS[1]), 'free'
if cur then
  local owner, deadline = string.match(cur, '^(%x+) (%d+)$')
  if not owner then return {0} end
  if owner == ARGV[1] then state = 'again'
  elseif tonumber(deadline) > now then return {0}
  else state = 'expired' end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. (now + tonumber(ARGV[2])), 'PX', tonumber(ARGV[2]) + tonumber(ARGV[3]))
return {1, state}]],
  -- Compare-and-delete; with ARGV[2] ('pending': the holder got a pair it could not store) the key
  -- stays for ARGV[3] ms, past its deadline, so the next holder knows a pair may still come.
  -- -> 1 | 0 (not ours any more)
  unlock = [[
local cur = redis.call('GET', KEYS[1])
if not cur or string.match(cur, '^(%x+) ') ~= ARGV[1] then return 0 end
if ARGV[2] == 'pending' then
  redis.call('SET', KEYS[1], ARGV[1] .. ' 0', 'PX', tonumber(ARGV[3]))
  return 1
end
return redis.call('DEL', KEYS[1])]],
  -- A new deadline ARGV[2] ms from now, while the key is still ours (past its deadline too: nobody
  -- took it meanwhile). -> 1 | 0
  extend = [[
local cur = redis.call('GET', KEYS[1])
if not cur or string.match(cur, '^(%x+) ') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. (now + tonumber(ARGV[2])), 'PX', tonumber(ARGV[2]) + tonumber(ARGV[3]))
return 1]],
  put = "return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])",
  del = "return redis.call('DEL', KEYS[1])",
  -- One SCAN step (no key: list() is for one Redis, not a Cluster). -> {cursor, {keys}}
  scan = "return redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])",
}
