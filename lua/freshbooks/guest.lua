-- Guest scripts: untrusted Lua (an embedding host's user scripts) run against a session, each run in a
-- Lua state of its own that freshbooks.vm makes and closes (src/guest.c), under budgets. Nothing of this
-- state exists in the guest's: no function, table, metatable, token or secret. The script's calls
-- arrive here as plain data, run against the session, and go back as plain data; errors go back as
-- plain tables {code, message, status, errno, errors} with secrets masked.
--   local guest = require "freshbooks.guest"
--   local ok, a, b = guest.run(fb, source, "=user.lua", { write = false, print = host_print,
--                                businesses = { "aBcD1" }, budget = { time = 5 }, usage = {} })
-- The script sees the library's shape: `local fb = ...` (also the global `fb`), fb:me(),
-- fb:memberships(), for m in fb:businesses(), fb:find_business(key), fb:account(id).invoices:list{...},
-- fb:business(id), fb:accounting_business(uuid),
-- for inv in acct.invoices:each{...}, acct.reports.profit_and_loss:get{...}; with write = true also
-- create/update/delete/archive/send_by_email. docs/guest.md has the whole contract.
local core = require "freshbooks.core"
local vm = require "freshbooks.vm"
local errors = require "freshbooks.errors"
local options = require "freshbooks.options"
local redact = require "freshbooks.redact"
local identity = require "freshbooks.identity"
local catalogue = require "freshbooks.catalogue"
local resource = require "freshbooks.resource"
local number = require("freshbooks.query").number

local guest = {}

-- Budgets per run (a host may change these defaults, or pass its own per run): bytes the guest state
-- may hold, VM instructions, seconds of wall clock (API calls included), pattern-matching steps, API
-- requests, bytes printed or returned. Each one, spent, ends the run with code "budget_<name>"
-- (instructions: "budget_cpu").
guest.budget = {
  memory = 32 * 1024 * 1024, instructions = 1e8, time = 30, patterns = 1e6, calls = 1000, output = 1024 * 1024,
}

local MAX_ITERATORS = 64 -- open each() loops per run (each holds a page in the host)
local MAX_OWNERS = 256   -- accounts and businesses named per run (each holds its resources in the host)
local MAX_PARALLEL = 8

local unpack = table.unpack or rawget(_G, "unpack")

-- What a guest may call on each resource. Queries must be tables (rendered by query.lua): a string
-- would reach the transport as it is. QUERY says where each verb takes its query.
local QUERY = { list = 1, each = 1, all = 1, get = 2, create = 2, update = 3 }
local WRITES = { "create", "update", "delete", "archive" }

local function verbs_of(e, write)
  local v = {}
  if e.verbs.report then
    v.get, v.download = true, e.verbs.download -- a report's CSV is a read too
  elseif not e.verbs.upload then
    if e.verbs.list then v.list, v.each, v.all = true, true, true end
    if e.verbs.get then v.get = true end
    if e.verbs.defaults then v.defaults = true end
    for _, w in ipairs(WRITES) do
      if e.verbs[w] then v[w] = write end
    end
    for _, x in ipairs(e.extras) do
      if x == "send_by_email" then v.send_by_email = write end
    end
  end
  return v
end

-- The verbs guests may call, per owner kind and resource name (write or not), and the groups
-- (acct.reports): what the guest state asks for the first time a script names a resource.
local shapes = {}
local function shape(write)
  if shapes[write] then return shapes[write] end
  local sh = { verbs = {}, groups = {} }
  for kind in pairs(catalogue.owners) do sh.verbs[kind], sh.groups[kind] = {}, {} end
  for _, e in ipairs(catalogue.entries) do
    local kind = catalogue.owner_of(e)
    local verbs = verbs_of(e, write)
    if next(verbs) then
      sh.verbs[kind][e.name] = verbs
      if e.group then sh.groups[kind][e.group] = true end
    end
  end
  shapes[write] = sh
  return sh
end

-- Text for the guest or for the host's error: no secret (the heuristic, and the session's exact
-- values when it can name them).
local function text(fb, s)
  s = redact.scrub(s)
  if type(fb.redact) == "function" then s = fb:redact(s) end
  return s
end

-- Data for the guest with the session's exact secrets masked, copied only where something changed.
-- (No heuristic here, fb:redact's `exact`: it would mask UUIDs, such as a membership's business_uuid.)
local function redacted(fb, v)
  if type(fb.redact) ~= "function" then return v end
  local function walk(x, depth)
    if type(x) == "string" then return fb:redact(x, true) end
    if type(x) ~= "table" or depth > 40 then return x end
    local copy
    for k, y in pairs(x) do
      local z = walk(y, depth + 1)
      if z ~= y then
        if not copy then
          copy = {}
          for k2, y2 in pairs(x) do copy[k2] = y2 end
        end
        copy[k] = z
      end
    end
    return copy or x
  end
  return walk(v, 0)
end

-- An error as the guest gets it: public fields only (a save_failed error carries tokens for the host).
local function public_error(fb, err)
  if type(err) ~= "table" then return { code = "error", message = text(fb, tostring(err)) } end
  local function clean(v) return type(v) == "string" and text(fb, v) or v end
  local fields
  if type(err.errors) == "table" then
    fields = {}
    for _, f in ipairs(err.errors) do
      if type(f) == "table" then
        fields[#fields + 1] = { field = clean(f.field), message = clean(f.message), errno = tonumber(f.errno),
          object = clean(f.object), value = clean(f.value) }
      end
    end
  end
  return { code = tostring(err.code), message = text(fb, err.message), status = tonumber(err.status),
           errno = tonumber(err.errno), errors = fields }
end

-- A raised error, as the script will see it raised: the message without our file positions.
local function raised(fb, e)
  return text(fb, (tostring(e):gsub("^[^\n]-:%d+: ", "")))
end

-- The reply to a call: "ok", results... | "fail", nil or false, err | "raise", message.
local function answer(fb, ok, ...)
  if not ok then return { n = 2, "raise", raised(fb, (...)) } end
  local n, a, b = select("#", ...), ...
  if (a == nil or a == false) and b ~= nil then return { n = 3, "fail", a, public_error(fb, b) } end
  local out = { n = n + 1, "ok", ... }
  for i = 2, n + 1 do out[i] = redacted(fb, out[i]) end
  return out
end

local function bad(msg) error("freshbooks: " .. msg, 0) end

-- Ids compare as strings (JSON numbers may decode as floats: 12345.0).
local function idstr(v)
  if type(v) == "number" then return number(v) end
  return v
end

-- The owner kinds and the membership field that names each.
local MEMBERSHIP_FIELD = { account = "account_id", business = "business_id", accounting_business = "business_uuid" }

-- The businesses a run may touch (opts.businesses: ids, each a membership's business_id, account_id or
-- business_uuid), resolved against the session's memberships on first use -> an object whose
-- allows(kind, id) guards every owner the script names, and whose memberships/me/find_business answer
-- with the listed businesses only (the others do not exist for the script). nil: no list, every
-- business the token reaches.
local function scope_of(fb, list)
  if list == nil then return nil end
  local want = {}
  for _, v in ipairs(list) do want[idstr(v)] = true end
  local ids -- kind -> {id = true}
  local function listed(m)
    return want[idstr(m.business_id)] or want[idstr(m.account_id)] or (m.business_uuid ~= nil and want[m.business_uuid])
  end
  local scope = { list = list }
  function scope.memberships(refresh)
    local all, err = fb:memberships(refresh)
    if not all then return nil, err end
    local out = {}
    for _, m in ipairs(all) do
      if listed(m) then out[#out + 1] = m end
    end
    return out
  end
  function scope.allows(kind, id)
    if not ids then
      local mine, err = scope.memberships()
      if not mine then bad("cannot read the businesses this script may use: " .. tostring(err)) end
      ids = {}
      for k, field in pairs(MEMBERSHIP_FIELD) do
        ids[k] = {}
        for _, m in ipairs(mine) do
          if m[field] ~= nil then ids[k][idstr(m[field])] = true end
        end
      end
    end
    return ids[kind][idstr(id)] == true
  end
  function scope.me(refresh)
    local me, err = fb:me(refresh)
    if type(me) ~= "table" then return me, err end
    local copy, kept = {}, {}
    for k, v in pairs(me) do copy[k] = v end
    for _, m in ipairs(type(me.business_memberships) == "table" and me.business_memberships or {}) do
      local b = type(m) == "table" and type(m.business) == "table" and m.business or {}
      if listed{ business_id = b.id, account_id = b.account_id, business_uuid = b.business_uuid } then
        kept[#kept + 1] = m
      end
    end
    copy.business_memberships = kept
    return copy
  end
  -- The library's own matching, over the listed memberships only.
  function scope.find_business(key)
    local mine, err = scope.memberships()
    if not mine then return nil, err end
    return identity.match(mine, key)
  end
  return scope
end

-- A run limited to some businesses may query a mirror only while the mirror holds no other business:
-- its SQL reads any row of the file. -> true | false, why (another business) | nil, err (unreadable)
local function mirror_within(m, list)
  local st, err = m:status()
  if not st then return nil, err end
  local want = {}
  for _, v in ipairs(list) do want[idstr(v)] = true end
  for _, b in ipairs(st.businesses) do
    if not (want[idstr(b.business_id)] or want[idstr(b.account_id)] or (b.business_uuid and want[b.business_uuid])) then
      return false, "the mirror holds business " .. tostring(b.business_id) .. ", which is not among the"
        .. " businesses this run may use (mirror only those: mirror:sync(fb, {businesses = ...}))"
    end
  end
  return true
end

-- The operations a script can ask for. Resources are built on a stand-in for the session whose every
-- request counts against the call budget and gets no more time than the run has left.
local function operations(fb, allowed, budget, deadline, scope)
  local run = { calls = 0, stop = nil }
  -- -> whether n more requests fit in the budgets (spend(n) takes them, or stops the run)
  local function affordable(n)
    return not run.stop and core.clock.now() < deadline and run.calls + n <= budget.calls
  end
  local function spend(n)
    if run.stop then return false end
    if core.clock.now() >= deadline then
      run.stop = errors.new{ code = "budget_time", message = "the script ran past its deadline" }
    elseif run.calls + n > budget.calls then
      run.stop = errors.new{ code = "budget_calls",
        message = ("the script made more API calls than its budget (%d)"):format(budget.calls) }
    else
      run.calls = run.calls + n
      return true
    end
    return false
  end
  local function bounded(req)
    req.timeout = math.max(0.001, math.min(req.timeout or fb.timeout or 60, deadline - core.clock.now()))
    return req
  end
  local session = {
    request = function(_, req)
      if not spend(1) then return nil, run.stop end
      return fb:request(bounded(req))
    end,
    batch = function(_, reqs, o)
      if not spend(#reqs) then
        local out = {}
        for i = 1, #reqs do out[i] = { err = run.stop } end
        return out
      end
      for _, req in ipairs(reqs) do bounded(req) end
      return fb:batch(reqs, o)
    end,
    -- each/all with parallel > 1 (resource.lua's window of pages, queued ahead of the records). A
    -- request past the budget is not sent: once those before it are done, it fails and stops the run.
    stream = function(_, o)
      local s, err = fb:stream(o)
      if not s then return nil, err end
      local refused, ids = {}, 0
      local budgeted = {}
      function budgeted.add(_, req)
        if affordable(1) then
          spend(1)
          return s:add(bounded(req))
        end
        ids = ids - 1 -- the session's stream counts its ids up from 1
        refused[#refused + 1] = ids
        return ids
      end
      function budgeted.next()
        local id, res, e = s:next()
        if id or not refused[1] then return id, res, e end
        spend(1)
        return table.remove(refused, 1), nil, run.stop
      end
      function budgeted.close() s:close() end
      return budgeted
    end,
  }

  local owners, named, iters, handles, live = {}, 0, {}, 0, 0
  local function kind_of(kind)
    if not catalogue.owners[kind] then bad("no such owner: " .. tostring(kind)) end
    return kind
  end
  local function owner(kind, id)
    kind_of(kind)
    local key = kind .. ":" .. tostring(id)
    if owners[key] then return owners[key] end
    local o = resource[kind](session, id) -- raises on a bad id (resource.lua's rule)
    if scope and not scope.allows(kind, id) then
      bad(("%s: %s is not among the businesses this script may use"):format(kind, tostring(id)))
    end
    if named >= MAX_OWNERS then bad(("more than %d accounts and businesses named in one run"):format(MAX_OWNERS)) end
    named = named + 1
    owners[key] = o
    return o
  end
  local function target(kind, id, name, verb)
    local verbs = allowed.verbs[kind_of(kind)][name]
    local ok = verbs and verbs[verb]
    if ok == nil then bad(("%s: guest scripts have no %s here"):format(tostring(name), tostring(verb))) end
    if not ok then bad(("%s:%s: this script may only read (the host allows no writes)"):format(name, verb)) end
    local e = catalogue.by_name[name]
    local o = owner(kind, id)
    return e.group and o[e.group][e.name] or o[e.name], e
  end
  local function check_query(e, verb, ...)
    local at = e.verbs.report and (verb == "get" and 1 or nil) or QUERY[verb]
    local q = at and select(at, ...)
    if q ~= nil and type(q) ~= "table" then
      bad(("%s:%s: the query must be a table (guest scripts cannot send query strings)"):format(e.name, verb))
    end
  end
  local function paging(o)
    if o ~= nil and type(o) ~= "table" then bad("each/all: options must be a table") end
    local parallel = o and tonumber(o.parallel) or 1
    return { parallel = math.max(1, math.min(MAX_PARALLEL, parallel)) }
  end

  local ops = {}
  -- -> {verbs = {...}} | {group = true} | nil: what the script may do with `name` (in `group`).
  function ops.resource(kind, name, group)
    local verbs = allowed.verbs[kind_of(kind)][name]
    if verbs and catalogue.by_name[name].group == group then return { verbs = verbs } end
    if group == nil and allowed.groups[kind][name] then return { group = true } end
    return nil
  end
  function ops.owner(kind, id) -- -> the owner's id field (account_id, business_id, business_uuid)
    owner(kind, id)
    return catalogue.owners[kind]
  end
  function ops.verb(kind, id, name, verb, ...)
    local r, e = target(kind, id, name, verb)
    check_query(e, verb, ...)
    if verb == "all" then
      local q, o = ...
      return r:all(q, paging(o))
    end
    return r[verb](r, ...)
  end
  function ops.each(kind, id, name, q, o)
    local r, e = target(kind, id, name, "each")
    check_query(e, "each", q)
    if live >= MAX_ITERATORS then bad(("each: more than %d loops open at once"):format(MAX_ITERATORS)) end
    local it = r:each(q, paging(o))
    handles, live = handles + 1, live + 1
    iters[handles] = it
    return handles
  end
  ops["next"] = function(h)
    local it = iters[h]
    if not it then return nil end
    local v, err = it()
    if not v then iters[h], live = nil, live - 1 end
    return v, err
  end
  local function asking(method)
    return function(...)
      if not spend(1) then return nil, run.stop end
      if scope then return scope[method](...) end
      return fb[method](fb, ...)
    end
  end
  ops.me, ops.memberships, ops.find_business = asking("me"), asking("memberships"), asking("find_business")
  -- mirror:query: read-only SQL on the host's mirror (opts.mirror), within the run's time and a bound
  -- on what it may answer (its rows are copied into the guest, whose memory budget counts them too).
  function ops.query(sql, params)
    if not allowed.mirror then bad("mirror:query: this host gives scripts no mirror") end
    if scope then
      local ok, why = mirror_within(allowed.mirror, scope.list)
      if ok == false then bad("mirror:query: " .. why) end
      if not ok then return nil, why end
    end
    if type(sql) ~= "string" then bad("mirror:query: sql must be a string") end
    if params ~= nil and type(params) ~= "table" then bad("mirror:query: params must be a list") end
    if not spend(1) then return nil, run.stop end
    return allowed.mirror:query(sql, params, { deadline = math.max(0, deadline - core.clock.now()),
      max_rows = guest.mirror_rows, max_bytes = budget.memory })
  end
  return ops, run
end

-- Runs the script step by step: each "call" is answered here, each "print" goes to the host. serve
-- answers one request (false once the run is stopped). Plain Lua 5.1 cannot yield where scripts call
-- the API (pcall, metamethods, for iterators): its core calls serve from inside the script's request.
local function drive(g, fb, ops, run, out)
  local function serve(kind, p)
    if kind == "print" then
      out(p)
      return nil
    end
    local f = ops[p[1]]
    local reply
    if type(f) == "function" then
      reply = answer(fb, pcall(f, unpack(p, 2, p.n)))
    else
      reply = { n = 2, "raise", "freshbooks: no such operation" }
    end
    return not run.stop and reply
  end
  local kind, p = g:resume(nil, serve)
  while kind == "call" or kind == "print" do
    local reply = serve(kind, p)
    if reply == false then break end
    kind, p = g:resume(reply, serve)
  end
  if run.stop then return "stopped", run.stop end
  return kind, p
end

local OPTIONS = options.spec{ print = { "function" }, write = { "boolean" }, budget = { "table" }, usage = { "table" },
  businesses = { "table" }, mirror = { "table" } }

-- Rows one mirror:query may answer.
guest.mirror_rows = 10000

-- guest.run(fb, source, chunkname, opts) -> true, results... | nil, err. The script is text (bytecode
-- is refused); its results are copied (plain data only). opts: write (default false), print (where
-- the script's print goes; default the host's print), budget (see guest.budget), usage (a table to
-- fill with what the run used), businesses (the ids of the businesses the script may touch: a
-- membership's business_id, account_id or business_uuid; default every business the token reaches),
-- mirror (a freshbooks.mirror the script may query, read-only, as `mirror:query(sql, params)`; with
-- businesses, the mirror must hold those businesses only). Bad arguments raise; a failed run returns
-- nil, err with err.code one of
-- syntax, script_error, bad_result, budget_memory, budget_cpu, budget_time, budget_patterns,
-- budget_calls, budget_output.
function guest.run(fb, source, chunkname, opts)
  if type(fb) ~= "table" or type(fb.request) ~= "function" then
    error("freshbooks.guest.run: a session is required", 2)
  end
  if type(source) ~= "string" then error("freshbooks.guest.run: source must be a string", 2) end
  if chunkname ~= nil and type(chunkname) ~= "string" then
    error("freshbooks.guest.run: chunkname must be a string", 2)
  end
  opts = options.check("freshbooks.guest.run", OPTIONS, opts, 2)
  for i, v in pairs(opts.businesses or {}) do
    if type(i) ~= "number" or (type(v) ~= "string" and type(v) ~= "number") then
      error("freshbooks.guest.run: businesses must be a list of business, account or business_uuid ids", 2)
    end
  end
  local budget = {}
  for k, v in pairs(guest.budget) do budget[k] = v end
  for k, v in pairs(opts.budget or {}) do
    if guest.budget[k] == nil then error("freshbooks.guest.run: unknown budget '" .. tostring(k) .. "'", 2) end
    if type(v) ~= "number" or v ~= v or v <= 0 then error("freshbooks.guest.run: budget." .. k .. " must be > 0", 2) end
    budget[k] = v
  end

  local allowed = shape(opts.write == true)
  if opts.mirror then
    if type(opts.mirror.query) ~= "function" then
      error("freshbooks.guest.run: mirror must be a freshbooks.mirror", 2)
    end
    if opts.businesses then
      local ok, why = mirror_within(opts.mirror, opts.businesses)
      if ok == false then error("freshbooks.guest.run: " .. why, 2) end
      if not ok then return nil, why end
    end
    allowed = setmetatable({ mirror = opts.mirror }, { __index = allowed })
  end
  local g, err = vm.new(source, chunkname or "=guest", { memory = budget.memory,
    instructions = budget.instructions, time = budget.time, patterns = budget.patterns, output = budget.output })
  if not g then return nil, errors.new{ code = err.code, message = text(fb, err.message) } end
  local ops, run = operations(fb, allowed, budget, core.clock.now() + budget.time, scope_of(fb, opts.businesses))
  local ok, kind, p = pcall(drive, g, fb, ops, run, opts.print or print)
  if opts.usage then
    for k, v in pairs(g:usage()) do opts.usage[k] = v end
    opts.usage.calls = run.calls
  end
  g:close()
  if not ok then error(kind, 0) end -- the host's own print raised: its error, as it was
  if kind == "done" then return true, unpack(p, 1, p.n) end
  if kind == "stopped" then return nil, p end
  return nil, errors.new{ code = p.code, message = text(fb, p.message) }
end

return guest
