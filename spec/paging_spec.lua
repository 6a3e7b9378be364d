-- Paging: FreshBooks' edges (empty, exactly one full page, one more, past the end), each() memory over
-- 20,000 invoices (FB_SLOW=1: 100,000), all() in order with parallel fetching. The sandbox's counters
-- count the requests.
local sandbox = require "support.sandbox"
local H = require "support.fbtest"

local LIST = "GET /accounting/account/{account_id}/invoices/invoices"

describe("paging", function()
  local sb, acct

  setup(function()
    sb = sandbox.start{ invoices = 100 }
    acct = H.session(sb):account("aBcD1")
  end)
  teardown(function() if sb then sb:stop() end end)

  -- A reset also forgets every token: sign in again.
  local function reset(n)
    sb:admin("POST", "/_sandbox/reset", { invoices = n })
    acct = H.session(sb):account("aBcD1")
  end
  local function list_calls()
    return sb:admin("GET", "/_sandbox/counters").requests[LIST] or 0
  end
  -- [arrived, answered] of every invoice-list request since `since`, by the sandbox's clock.
  local function list_spans(since)
    local spans = {}
    for _, e in ipairs(H.log(sb, since)) do
      if e.path:find("invoices/invoices$") then spans[#spans + 1] = { e.time, e.done } end
    end
    return spans
  end
  local function ids(q)
    local out = {}
    for inv, err in acct.invoices:each(q) do
      assert(inv, tostring(err))
      out[#out + 1] = inv.id
    end
    return out
  end

  it("an empty result: no records, one request", function()
    reset(100)
    local before = list_calls()
    assert.same({}, ids{ search = { customerid = 1 } })
    assert.equal(1, list_calls() - before)
    local list, meta = acct.invoices:list{ search = { customerid = 1 } }
    assert.same({}, list)
    assert.equal(0, meta.total)
    local all = assert(acct.invoices:all({ search = { customerid = 1 } }, { parallel = 4 }))
    assert.same({}, all)
  end)

  it("exactly 100: one full page, one request", function()
    reset(100)
    local before = list_calls()
    local got = ids()
    assert.equal(100, #got)
    assert.equal(1, list_calls() - before)
    for i = 1, 100 do assert.equal(i, got[i]) end
  end)

  it("101: a second page with one record", function()
    reset(101)
    local before = list_calls()
    local got = ids()
    assert.equal(101, #got)
    assert.equal(101, got[101])
    assert.equal(2, list_calls() - before)
  end)

  it("past the end: an empty page, and each() starting there yields nothing", function()
    reset(101)
    local list, meta = acct.invoices:list{ page = 3, per_page = 100 }
    assert.same({}, list)
    assert.same({ 3, 2, 101 }, { meta.page, meta.pages, meta.total })
    assert.same({}, ids{ page = 3 })
    assert.same({ 101 }, ids{ page = 2 })
  end)

  it("page 0 is page 1 and per_page is capped at 100", function()
    reset(250)
    local _, meta = acct.invoices:list{ page = 0, per_page = 500 }
    assert.same({ 1, 100, 3 }, { meta.page, meta.per_page, meta.pages })
    local got = ids{ per_page = 500 }
    assert.equal(250, #got)
  end)

  it("each() stops at the first failure with (false, err)", function()
    reset(250)
    sb:admin("POST", "/_sandbox/faults", { route = "invoices/invoices$", method = "GET", fault = "500", skip = 1,
      times = 1 })
    local n, failure = 0, nil
    local fb = H.session(sb, { retry = false })
    for inv, err in fb:account("aBcD1").invoices:each() do
      if not inv then failure = err; break end
      n = n + 1
    end
    assert.equal(100, n)
    assert.same({ "server_error", 500 }, { failure.code, failure.status })
  end)

  it("all() returns every record in page order, fetching pages concurrently", function()
    reset(250)
    local calls = {}
    local all = assert(acct.invoices:all({ per_page = 10 }, { parallel = 4,
      progress = function(done, pages, n) calls[#calls + 1] = { done, pages, n } end }))
    assert.equal(250, #all)
    for i = 1, 250 do assert.equal(i, all[i].id) end
    assert.same({ 25, 25, 250 }, calls[#calls])
    for i = 2, #calls do assert.is_true(calls[i][1] > calls[i - 1][1]) end

    -- 16 pages that each take 150 ms at the server: the sandbox's log shows how many were in flight
    -- at once (page 1 alone, then up to `parallel`), whatever the machine's speed.
    sb:admin("POST", "/_sandbox/faults", { route = "invoices/invoices$", method = "GET", fault = "delay", ms = 150,
      rate = 1 })
    local since = H.last_seq(sb)
    local some = assert(acct.invoices:all({ per_page = 16, search = { invoiceids = (function()
      local t = {} for i = 1, 256 do t[i] = i end return t end)() } }, { parallel = 8 }))
    sb:admin("DELETE", "/_sandbox/faults")
    assert.equal(250, #some)
    for i = 1, 250 do assert.equal(i, some[i].id) end
    local spans = list_spans(since)
    assert.equal(16, #spans)
    assert.equal(8, H.max_overlap(spans))
  end)

  it("each() with parallel pages yields every record in page order, pages in flight together", function()
    reset(250)
    sb:admin("POST", "/_sandbox/faults", { route = "invoices/invoices$", method = "GET", fault = "delay", ms = 100,
      rate = 1 })
    local since = H.last_seq(sb)
    local got, calls = {}, {}
    for inv, err in acct.invoices:each({ per_page = 25 }, { parallel = 3,
        progress = function(done, pages) calls[#calls + 1] = { done, pages } end }) do
      assert(inv, tostring(err))
      got[#got + 1] = inv.id
    end
    sb:admin("DELETE", "/_sandbox/faults")
    assert.equal(250, #got)
    for i = 1, 250 do assert.equal(i, got[i]) end
    -- progress after every page, in order (a sliding window hands pages out one by one)
    local want = {}
    for i = 1, 10 do want[i] = { i, 10 } end
    assert.same(want, calls)
    local spans = list_spans(since)
    assert.equal(10, #spans)
    assert.equal(3, H.max_overlap(spans))
  end)

  it("keeps a sliding window: a slow page does not stop the others, connections are reused", function()
    reset(250)
    -- the third list request (page 3) takes 1.5 s; the others 50 ms
    sb:admin("POST", "/_sandbox/faults", { rules = {
      { route = "invoices/invoices$", method = "GET", fault = "delay", ms = 1500, skip = 2, times = 1 },
      { route = "invoices/invoices$", method = "GET", fault = "delay", ms = 50, rate = 1 } } })
    local since = H.last_seq(sb)
    local ids_in_order = {}
    for inv, err in acct.invoices:each({ per_page = 10 }, { parallel = 4 }) do
      assert(inv, tostring(err))
      ids_in_order[#ids_in_order + 1] = inv.id
    end
    sb:admin("DELETE", "/_sandbox/faults")
    assert.equal(250, #ids_in_order)
    for i = 1, 250 do assert.equal(i, ids_in_order[i]) end
    local log, slow = {}, nil
    for _, e in ipairs(H.log(sb, since)) do
      if e.path:find("invoices/invoices$") then
        log[#log + 1] = e
        if e.done - e.time > 1 then slow = e end
      end
    end
    assert.is_table(slow, "no slow page")
    -- While page 3 was slow, other pages kept starting: a window that waits for its slowest page
    -- would have started none (and at most `parallel` were ever in flight).
    local started_meanwhile = 0
    for _, e in ipairs(log) do
      if e ~= slow and e.time > slow.time and e.time < slow.done then started_meanwhile = started_meanwhile + 1 end
    end
    assert.is_true(started_meanwhile >= 4, "pages started while the slow one ran: " .. started_meanwhile)
    local spans = {}
    for i, e in ipairs(log) do spans[i] = { e.time, e.done } end
    assert.is_true(H.max_overlap(spans) <= 4)
    -- one walk, plain HTTP/1.1: at most `parallel` connections (plus the first page's, reused)
    local conns = {}
    for _, e in ipairs(log) do conns[e.connection] = true end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.is_true(n <= 4, n .. " connections")
  end)

  it("multiplexes the pages of a walk over TLS on one HTTP/2 connection", function()
    reset(250)
    local tls = H.session(sb, { api_url = (sb.tls_url:gsub("127%.0%.0%.1", "localhost")), cainfo = sb.ca_file })
    local since = H.last_seq(sb)
    local all = assert(tls:account("aBcD1").invoices:all({ per_page = 10 }, { parallel = 8 }))
    assert.equal(250, #all)
    local conns, h2, n = {}, 0, 0
    for _, e in ipairs(H.log(sb, since)) do
      if e.path:find("invoices/invoices$") then
        n = n + 1
        conns[e.connection] = true
        if e.http2 == "h2" then h2 = h2 + 1 end
      end
    end
    assert.equal(25, n)
    assert.equal(25, h2) -- HTTP/2 was negotiated for every page
    local c = 0
    for _ in pairs(conns) do c = c + 1 end
    assert.equal(1, c)
  end)

  it("all() reports a failed page as nil, err", function()
    reset(250)
    sb:admin("POST", "/_sandbox/faults", { route = "invoices/invoices$", method = "GET", fault = "500", skip = 2,
      times = 1 })
    local fb = H.session(sb, { retry = false })
    local all, err = fb:account("aBcD1").invoices:all({ per_page = 10 }, { parallel = 4 })
    assert.is_nil(all)
    assert.equal("server_error", err.code)
  end)
end)

-- Servers that never say "last page": every walk still ends, on its own evidence or at max_pages.
describe("paging against a server that never ends", function()
  local freshbooks = require "freshbooks"
  local cjson = require "cjson"
  local function session(pages_of)
    local requests = 0
    local fb = freshbooks.new{ client_id = "c", client_secret = "s", redirect_uri = "https://e.com/cb",
      tokens = { access_token = "a", refresh_token = "r", expires_in = 3600 }, retry = false,
      transport = function(req)
        requests = requests + 1
        assert(requests < 5000, "the walk did not stop")
        local page = tonumber(req.url:match("[?&]page=(%d+)")) or 1
        return { status = 200, headers = { ["content-type"] = "application/json" },
          body = cjson.encode{ response = { result = pages_of(page) } } }
      end }
    return fb:account("aBcD1").invoices, function() return requests end
  end
  local function records(first, n)
    local t = {}
    for i = 1, n do t[i] = { id = first + i } end
    return t
  end
  local function walk(invoices, opts)
    local n, last = 0, nil
    for inv, err in invoices:each({ per_page = 10 }, opts) do
      if not inv then last = err break end
      n = n + 1
    end
    return n, last
  end

  it("the same full page for every page number, no paging fields: stops after the repeat", function()
    local invoices, requests = session(function() return { invoices = records(0, 10) } end)
    local n, err = walk(invoices)
    assert.equal(10, n)
    assert.is_nil(err)
    assert.equal(2, requests())
    local all = assert(invoices:all{ per_page = 10 })
    assert.equal(10, #all)
  end)

  it("new full pages forever, no paging fields: too_many_pages at max_pages", function()
    local invoices, requests = session(function(page) return { invoices = records(page * 10, 10) } end)
    local n, err = walk(invoices, { max_pages = 50 })
    assert.equal(500, n)
    assert.equal("too_many_pages", err.code)
    assert.equal(50, requests())
    local list, aerr = invoices:all({ per_page = 10 }, { max_pages = 20, parallel = 4 })
    assert.is_nil(list)
    assert.equal("too_many_pages", aerr.code)
  end)

  it("a short page ends a walk without paging fields", function()
    local invoices, requests = session(function(page)
      return { invoices = records(page * 10, page < 3 and 10 or 4) }
    end)
    assert.equal(24, (walk(invoices)))
    assert.equal(3, requests())
  end)

  it("a server claiming a billion pages is refused before the walk, not followed", function()
    local invoices, requests = session(function(page)
      return { invoices = records(page * 10, 10), page = page, pages = 1e9, per_page = 10, total = 1e10 }
    end)
    local n, err = walk(invoices, { parallel = 8 })
    assert.equal(0, n)
    assert.equal("too_many_pages", err.code)
    assert.equal(1, requests())
  end)
end)

-- 20,000 invoices are 200 pages: a walk holding what it read would hold some 48 MB (a decoded invoice
-- takes 2.4 KiB), twenty times the bound below. (The sandbox renders each invoice at its first walk,
-- 0.3 ms apiece: FB_SLOW=1 walks 100,000.)
local TOTAL = os.getenv("FB_SLOW") == "1" and 100000 or 20000
describe(("each() over %d invoices"):format(TOTAL), function()
  local sb
  setup(function() sb = sandbox.start{ invoices = TOTAL } end)
  teardown(function() if sb then sb:stop() end end)

  local function walk(parallel)
    local acct = H.session(sb):account("aBcD1")
    collectgarbage("collect")
    local base = collectgarbage("count")
    -- The live heap (after a full collection) 20 times during the walk: what the walk really holds.
    local samples, n = {}, 0
    for inv, err in acct.invoices:each(nil, { parallel = parallel }) do
      assert(inv, tostring(err))
      n = n + 1
      if n % (TOTAL / 20) == 0 then
        collectgarbage("collect")
        samples[#samples + 1] = collectgarbage("count")
      end
    end
    assert.equal(TOTAL, n)
    assert.equal(20, #samples)
    local lo, hi = math.huge, 0
    for _, k in ipairs(samples) do lo, hi = math.min(lo, k), math.max(hi, k) end
    -- 20,000 decoded invoices take some 48 MB; one page is a few hundred KiB.
    return base, lo, hi
  end

  it("keeps memory flat (one page at a time)", function()
    local base, lo, hi = walk(1)
    assert.is_true(hi - base < 2048, ("live heap %.0f KiB above the start (%.0f..%.0f)"):format(hi - base, lo, hi))
    assert.is_true(hi - lo < 1024, ("live heap ranged %.0f..%.0f KiB during the walk"):format(lo, hi))
  end)

  it("keeps memory flat with parallel pages too (one window of 4 pages at a time)", function()
    local base, lo, hi = walk(4)
    assert.is_true(hi - base < 6144, ("live heap %.0f KiB above the start (%.0f..%.0f)"):format(hi - base, lo, hi))
    assert.is_true(hi - lo < 4096, ("live heap ranged %.0f..%.0f KiB during the walk"):format(lo, hi))
  end)
end)
