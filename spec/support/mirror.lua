-- Helpers for the mirror specs: what the sandbox holds, read independently of the mirror (raw GETs,
-- decoded by lua-cjson), and a full comparison with a mirror file, every field of every record.
local cjson = require "cjson"
local core = require "freshbooks.core"
local sandbox = require "support.sandbox"
local H = require "support.fbtest"
local resources = require "freshbooks.mirror.resources"

local M = {}

M.seed = tonumber(os.getenv("FB_SEED") or "") or os.time() % 100000
M.slow = os.getenv("FB_SLOW") == "1"

-- A seeded generator (the same on every interpreter), printed so a failure can be replayed.
function M.prng(seed)
  local s = seed % 2147483647
  if s <= 0 then s = s + 2147483646 end
  return function(a, b)
    s = s * 16807 % 2147483647
    if not a then return s / 2147483647 end
    return a + s % (b - a + 1)
  end
end

-- JSON as the library reads it: object members that are null are left out (core.json.decode).
local function strip(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if x ~= cjson.null then out[k] = strip(x) end
  end
  return out
end

local function raw_get(fb, path, query)
  local res, err = fb:request{ method = "GET", path = path, query = query }
  assert(res, tostring(err))
  return strip(sandbox.decode(res.body))
end

local function list_path(r, biz)
  local e = require("freshbooks.catalogue").by_name[r.name]
  if r.family == "accounting" then return "/accounting/account/" .. biz.account_id .. "/" .. e.path end
  if r.family == "accounting_business" then
    return "/accounting/businesses/" .. biz.business_uuid .. "/" .. e.path
  end
  local p = e.path
  if type(p) == "table" then return "/" .. p[1] .. "/business/" .. biz.business_id .. "/" .. p[2] end
  return "/" .. e.base .. "/business/" .. biz.business_id .. "/" .. p -- the catalogue's named fields
end

-- Every record of one list, all pages: {id = record}.
local function read_list(fb, r, biz, extra)
  local out = {}
  local page = 1
  while true do
    local q = {}
    for k, v in pairs(extra or {}) do q[k] = v end
    if r.paged then q.per_page, q.page = 100, page end
    if r.include then q.include = r.include end
    local body = raw_get(fb, list_path(r, biz), q)
    local payload = r.family == "accounting" and body.response.result or body
    local items = r.family == "accounting_business" and payload.data or payload[r.plural]
    for _, rec in ipairs(items) do out[rec[r.id]] = rec end
    local meta = payload.meta or payload
    if not r.paged or #items == 0 or page >= (tonumber(meta.pages) or 0) then break end
    page = page + 1
  end
  return out
end

-- What the sandbox holds for every mirrored resource of the businesses:
-- {[business_id] = {[resource] = {[id] = {record = rec, vis = 0|1|2}}}}
function M.truth(fb, businesses)
  local all = {}
  for _, biz in ipairs(businesses) do
    local per = {}
    for _, r in ipairs(resources.list) do
      local got = {}
      local function add(list, vis)
        for id, rec in pairs(list) do
          local v = vis
          if v == nil then v = r.vis and rec[r.vis] or 0 end
          got[id] = { record = rec, vis = v }
        end
      end
      if r.family == "project" then
        if r.name == "time_entries" then
          local everything = read_list(fb, r, biz, { include_deleted = true })
          local alive = read_list(fb, r, biz)
          for id, rec in pairs(everything) do got[id] = { record = rec, vis = alive[id] and 0 or 1 } end
        else
          add(read_list(fb, r, biz), 0)
        end
      else
        add(read_list(fb, r, biz))
        if r.vis then add(read_list(fb, r, biz, { search = { vis_state = 1 } })) end
      end
      per[r.name] = got
    end
    all[biz.business_id] = per
  end
  return all
end

local function same(a, b, path, diffs)
  if type(a) ~= type(b) then
    diffs[#diffs + 1] = ("%s: %s vs %s"):format(path, tostring(a), tostring(b))
    return
  end
  if type(a) ~= "table" then
    if a ~= b then diffs[#diffs + 1] = ("%s: %s vs %s"):format(path, tostring(a), tostring(b)) end
    return
  end
  for k, v in pairs(a) do same(v, b[k], path .. "." .. tostring(k), diffs) end
  for k, v in pairs(b) do if a[k] == nil then same(nil, v, path .. "." .. tostring(k), diffs) end end
end

-- Every row of the mirror against the truth: the same ids, each record equal in every field, the same
-- vis_state; rows marked gone are rows FreshBooks no longer has. -> list of differences
function M.diff(m, truth)
  local diffs = {}
  for business_id, per in pairs(truth) do
    for _, r in ipairs(resources.list) do
      local want = per[r.name]
      local sql = ("SELECT id, vis_state, gone_at, record FROM %s WHERE business_id = ?"):format(r.table)
      local res = assert(m:query(sql, { business_id }))
      local seen = {}
      for _, row in ipairs(res.rows) do
        local id, vis, gone, json = row[1], row[2], row[3], row[4]
        local where = ("%s/%s/%s"):format(business_id, r.name, tostring(id))
        local w = want[id]
        seen[id] = true
        if gone then
          if w then diffs[#diffs + 1] = where .. ": marked gone, FreshBooks has it" end
          if vis ~= 1 then diffs[#diffs + 1] = where .. ": gone but vis_state " .. tostring(vis) end
        elseif not w then
          diffs[#diffs + 1] = where .. ": in the mirror, not in FreshBooks"
        else
          if vis ~= w.vis then diffs[#diffs + 1] = ("%s: vis_state %s, FreshBooks %s"):format(where, vis, w.vis) end
          same(core.json.decode(json), w.record, where, diffs)
        end
      end
      for id in pairs(want) do
        if not seen[id] then diffs[#diffs + 1] = ("%s/%s/%s: missing"):format(business_id, r.name, tostring(id)) end
      end
    end
  end
  return diffs
end

function M.assert_equal(m, fb, businesses, label)
  local diffs = M.diff(m, M.truth(fb, businesses))
  if #diffs > 0 then
    local shown = {}
    for i = 1, math.min(#diffs, 15) do shown[i] = diffs[i] end
    error(("%s: the mirror differs from the sandbox in %d places (seed %d):\n  %s"):format(label or "mirror",
      #diffs, M.seed, table.concat(shown, "\n  ")), 2)
  end
end

M.businesses = {
  { business_id = 1000001, account_id = "aBcD1", business_uuid = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0001" },
  { business_id = 1000002, account_id = "xYz92", business_uuid = "4e1c1a52-8f0e-4f59-9a62-0c6d7b1a0002" },
}

function M.remove_db(path)
  for _, s in ipairs { "", "-wal", "-shm", "-sync.lock" } do os.remove(path .. s) end
end

-- Requests the sandbox saw after log entry `since`, by route (METHOD /route/{template}).
function M.requests(sb, since)
  local n, by = 0, {}
  for _, e in ipairs(H.log(sb, since)) do
    if not e.path:match("^/_sandbox") then
      n = n + 1
      by[e.route or e.path] = (by[e.route or e.path] or 0) + 1
    end
  end
  return n, by
end

-- "123.45" -> 12345, read independently of the mirror's own parser.
function M.cents(s)
  local sign, i, f = s:match("^(%-?)(%d+)%.(%d%d)$")
  local c = tonumber(i) * 100 + tonumber(f)
  return sign == "-" and -c or c
end

-- Epoch seconds of a UTC wall time.
function M.utc(y, m, d, hh, mm)
  local date = require "freshbooks.date"
  return date.days(y, m, d) * 86400 + (hh or 0) * 3600 + (mm or 0) * 60
end

-- Every answer late by 25 ms (a slow network), or back to prompt answers.
function M.slow_network(sb, on)
  sb:admin("DELETE", "/_sandbox/faults")
  if on then sb:admin("POST", "/_sandbox/faults", { route = "^/[acpt]", fault = "delay", ms = 25, rate = 1,
    times = 100000000 }) end
end

-- Sets the sandbox's clock to epoch t.
function M.clock(sb, t)
  local now = sb:admin("GET", "/_sandbox/clock")
  local offset = t - (now.now - now.offset)
  sb:admin("POST", "/_sandbox/clock", { offset = offset })
end

return M
