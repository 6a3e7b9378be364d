-- Walking a resource's pages: each() and all() (resource.lua's verbs call these). Page `first` comes
-- alone and says how many pages there are; with `parallel` > 1 the rest go out on the session's
-- stream as a sliding window, records handed out in page order. Every walk is bounded: by `pages`,
-- else an empty, short or repeated page, else `max_pages`.
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local query = require "freshbooks.query"
local resource = require "freshbooks.resource"

local paging = {}

-- Past this many pages a walk stops with too_many_pages: a server that never says "last page" must
-- not keep a loop running forever.
local OPTIONS = options.spec{
  parallel = { "number", min = 1, default = 1 },
  progress = { "function" },
  max_pages = { "number", min = 1, default = 100000 },
}

local function too_many_pages(max_pages)
  return errors.new{ code = "too_many_pages",
    message = ("the walk passed %d pages without reaching the last one (max_pages)"):format(max_pages) }
end

-- A page's identity, to notice a server that answers every page number with the same records.
local function fingerprint(list)
  local a, b = list[1], list[#list]
  return tostring(type(a) == "table" and a.id or a) .. "|" .. tostring(type(b) == "table" and b.id or b) .. "|" .. #list
end

-- A list FreshBooks does not page is one request, whatever the walk asks: page and per_page are the
-- walk's settings, not filters, and the list refuses them.
local function whole(r, q, progress)
  local rest, meta, done = query.with(q, {}), nil, false
  rest.page, rest.per_page = nil, nil
  return function()
    if done then return nil end
    done = true
    local list, m = r:list(rest)
    if not list then return false, m end
    meta = m
    if progress then progress(1, 1, #list) end
    return list
  end, function() return meta end
end

-- The walk of `r` -> next_window() (records, possibly none; nil at the end; false, err), meta().
local function pager(r, q, o)
  local st = resource.state(r)
  local parallel, progress, max_pages = math.floor(o.parallel), o.progress, math.floor(o.max_pages)
  q = q or {}
  if not st.entry.paged then return whole(r, q, progress) end
  local per_page = q.per_page or 100
  local page = tonumber(q.page) or 1
  local first, pages, seen, meta, last_print, ended = page, nil, 0, nil, nil, false
  -- The query is rendered once per walk; each page only appends its number.
  local rest = query.with(q, { per_page = per_page })
  rest.page = nil
  local base = query.render(st.dialect, rest)
  local sep = base == "" and "" or "&"
  local function page_query(n) return base .. sep .. "page=" .. string.format("%d", n) end
  local function report(done)
    if progress then progress(done - first + 1, math.max(pages or done, done) - first + 1, seen) end
  end
  -- Without `pages` the walk goes one page at a time and ends on an empty page, a page shorter than
  -- the page size, or a page identical to the one before.
  local function short(list, m)
    return #list == 0 or #list < ((m and m.per_page) or math.min(per_page, 100))
  end
  -- With `pages` known, a sliding window: `parallel` pages always in flight on one stream (the C
  -- core's multi interface, light threads under OpenResty), up to `parallel` more finished and held
  -- until their turn.
  local stream, submitted, held, page_of = nil, nil, {}, {}
  local function fill()
    while submitted <= pages and submitted < page + 2 * parallel do
      page_of[stream:add{ method = "GET", path = st.list_path, query = page_query(submitted) }] = submitted
      submitted = submitted + 1
    end
  end
  local function windowed()
    if not stream then
      local err
      stream, err = st.session:stream{ concurrency = parallel }
      if not stream then return false, err end
      submitted = page
      fill()
    end
    while not held[page] do
      local id, res, err = stream:next()
      if not id then return false, errors.new{ code = "internal", message = "the stream lost a page" } end
      if not res then stream:close() return false, err end
      local list, uerr = resource.unwrap_list(st, res)
      if not list then stream:close() return false, uerr end
      held[page_of[id]], page_of[id] = list, nil
    end
    local list = held[page]
    held[page] = nil
    page, seen = page + 1, seen + #list
    if page <= pages then fill() else stream:close() end
    report(page - 1)
    return list
  end
  local function next_window()
    if meta and (pages == nil or page > pages) then
      if pages ~= nil or ended then return nil end
      if page - first >= max_pages then return false, too_many_pages(max_pages) end
      local list, m = r:list(page_query(page))
      if not list then return false, m end
      local print = fingerprint(list)
      if #list == 0 or print == last_print then return nil end
      last_print, ended = print, short(list, m)
      page, seen = page + 1, seen + #list
      report(page - 1)
      return list
    end
    if not meta then
      local list, m = r:list(page_query(page))
      if not list then return false, m end
      meta, pages, page, seen = m, m.pages, page + 1, #list
      if #list == 0 then pages = first - 1 end -- an empty first page ends the walk
      if pages == nil then last_print, ended = fingerprint(list), short(list, m) end
      if pages and pages - first + 1 > max_pages then return false, too_many_pages(max_pages) end
      report(first)
      return list
    end
    if parallel > 1 then return windowed() end
    local list, m = r:list(page_query(page))
    if not list then return false, m end
    page, seen = page + 1, seen + #list
    report(page - 1)
    return list
  end
  return next_window, function() return meta end
end

-- each/all's arguments, checked before anything is sent (level 3: the verb's caller, the verb having
-- tail-called paging).
local function start(r, q, opts, who)
  if q ~= nil and type(q) ~= "table" then
    error("freshbooks: " .. who .. ": needs a query table (it sets page and per_page)", 3)
  end
  return pager(r, q, options.check("freshbooks: " .. who, OPTIONS, opts, 3))
end

-- paging.each(r, q, opts, who) -> an iterator of records. One page in memory at a time (one window of
-- `parallel` pages with parallel > 1). On failure the loop gets (false, err) once and then ends: a
-- nil would end a `for` loop before its body saw the error.
function paging.each(r, q, opts, who)
  local next_window = start(r, q, opts, who)
  local items, i, done = {}, 0, false
  return function()
    while not done do
      i = i + 1
      local rec = items[i]
      if rec ~= nil then items[i] = nil; return rec end -- let records go as soon as they are handed out
      local list, err = next_window()
      if not list then
        done = true
        if list == false then return false, err end
        return nil
      end
      items, i = list, 0
    end
    return nil
  end
end

-- paging.all(r, q, opts, who) -> records, meta | nil, err: each's walk, collected in page order.
function paging.all(r, q, opts, who)
  local next_window, meta = start(r, q, opts, who)
  local out = {}
  while true do
    local list, err = next_window()
    if list == nil then break end
    if list == false then return nil, err end
    for _, rec in ipairs(list) do out[#out + 1] = rec end
  end
  return out, meta()
end

return paging
