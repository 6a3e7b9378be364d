-- Every public function that takes a table of options refuses a name it does not know, with a message
-- that names the caller and the option (options.lua): a typo is never a silent default.
local freshbooks = require "freshbooks"
local options = require "freshbooks.options"

local APP = { client_id = "cid", client_secret = "csecret", redirect_uri = "https://example.com/cb" }
local function app(extra)
  local o = {}
  for k, v in pairs(APP) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end
local function offline() return nil, { code = "connect", message = "offline" } end

-- f raises, and the message (without its position) is exactly `message`.
local function refuses(message, f)
  local ok, err = pcall(f)
  assert.is_false(ok, "accepted: " .. message)
  assert.equal(message, (tostring(err):gsub("^[^:]*:%d+: ", "")))
end

describe("unknown options raise, naming the caller", function()
  local fb = freshbooks.new(app{ transport = offline })
  local acct = fb:account("aBcD1")

  it("freshbooks.new, and its retry table", function()
    refuses("freshbooks.new: unknown option 'timout'", function() freshbooks.new(app{ timout = 5 }) end)
    refuses("freshbooks.new: retry: unknown option 'atempts'", function()
      freshbooks.new(app{ retry = { atempts = 2 } })
    end)
  end)

  it("freshbooks.connections, its app, and status", function()
    refuses("freshbooks.connections: unknown option 'max_session'", function()
      freshbooks.connections{ app = APP, store = function() end, max_session = 5 }
    end)
    refuses("freshbooks.connections: app: unknown option 'timout'", function()
      freshbooks.connections{ app = app{ timout = 5 }, store = function() end }
    end)
    local conns = freshbooks.connections{ app = app{ transport = offline },
      store = function() return { load = function() end, save = function() return true end,
        put_state = function() return true end, take_state = function() return false end } end }
    refuses("freshbooks.connections: status: unknown option 'refersh'", function()
      conns:status("a", { refersh = true })
    end)
    refuses("freshbooks: authorize_url: unknown option 'scope'", function() conns:connect_url("a", { scope = "x" }) end)
  end)

  it("fb:authorize_url", function()
    refuses("freshbooks: authorize_url: unknown option 'redirect_uri'", function()
      fb:authorize_url{ redirect_uri = "https://evil.example/" }
    end)
  end)

  it("each and all", function()
    refuses("freshbooks: invoices:each: unknown option 'paralel'", function()
      acct.invoices:each({}, { paralel = 4 })
    end)
    refuses("freshbooks: clients:all: unknown option 'max_page'", function() acct.clients:all({}, { max_page = 4 }) end)
  end)

  it("fb:batch and fb:stream", function()
    refuses("freshbooks: batch: unknown option 'concurency'", function()
      fb:batch({ { path = "/x" } }, { concurency = 2 })
    end)
    refuses("freshbooks: stream: unknown option 'concurency'", function() fb:stream{ concurency = 2 } end)
  end)

  it("send_by_email and upload", function()
    refuses("freshbooks: invoices:send_by_email: unknown option 'recipient'", function()
      acct.invoices:send_by_email(1, { recipients = { "a@example.com" }, recipient = "b@example.com" })
    end)
    refuses("freshbooks: attachments:upload: unknown option 'file_name'", function()
      acct.attachments:upload("bytes", { file_name = "a.pdf" })
    end)
  end)

  it("the stores", function()
    refuses("freshbooks.store.file: unknown option 'lock_timout'", function()
      freshbooks.store.file("/tmp/fb-options-spec/tokens.json", { lock_timout = 1 })
    end)
    refuses("freshbooks.store.redis: unknown option 'lock_tll'", function()
      freshbooks.store.redis{ redis = function() end, key = "k", lock_tll = 1 }
    end)
    refuses("freshbooks.store.redis: unknown option 'key'", function()
      freshbooks.store.redis.keyspace{ redis = function() end, key = "k" }
    end)
    refuses("freshbooks.store.redis: redis: unknown option 'hots'", function()
      freshbooks.store.redis.keyspace{ redis = { hots = "127.0.0.1" } }
    end)
    refuses("freshbooks.store.redis: redis.tls: unknown option 'verify'", function()
      freshbooks.store.redis.keyspace{ redis = { host = "127.0.0.1", tls = { verify = false } } }
    end)
    refuses("freshbooks.store.redis: redis.sentinel: unknown option 'master'", function()
      freshbooks.store.redis.keyspace{ redis = { sentinel = { master = "m", addresses = { "h:1" } } } }
    end)
  end)

  it("retry.wrap and the transports", function()
    refuses("freshbooks.retry: unknown option 'atempts'", function()
      require("freshbooks.retry").wrap(offline, { atempts = 1 })
    end)
    refuses("freshbooks.core.http.client: unknown option 'tiemout'", function()
      freshbooks.transport.curl{ tiemout = 1 }
    end)
    refuses("freshbooks.core.http.client: unknown option 'tiemout'", function()
      freshbooks.transport.default{ tiemout = 1 }
    end)
    refuses("freshbooks.transport.cosocket: unknown option 'tiemout'", function()
      freshbooks.transport.cosocket{ tiemout = 1 }
    end)
  end)

  it("guest.run and report.run", function()
    refuses("freshbooks.guest.run: unknown option 'budgett'", function()
      require("freshbooks.guest").run(fb, "return 1", "=x", { budgett = {} })
    end)
    refuses("freshbooks.report: unknown option 'formatt'", function()
      require("freshbooks.report").run(fb, { formatt = "csv" }, io.stdout)
    end)
  end)

  it("the mirror: open, sync, apply, query, its reports, its backend and the OpenResty feed", function()
    local mirror = require "freshbooks.mirror"
    local reports = require "freshbooks.mirror.reports"
    refuses("freshbooks.mirror: open: unknown option 'pth'", function() mirror.open{ pth = "x.db" } end)
    refuses("freshbooks.mirror: open: path must be a file name", function() mirror.open{ path = "" } end)
    refuses("freshbooks.mirror.sqlite.open: unknown option 'readOnly'", function()
      require("freshbooks.mirror.sqlite").open(":memory:", { readOnly = true })
    end)
    refuses("freshbooks.mirror.feed.start: unknown option 'sock'", function()
      require("freshbooks.mirror.feed").start{ sock = "/run/x" }
    end)
    local m = assert(mirror.open{ path = ":memory:" })
    refuses("freshbooks.mirror: sync: unknown option 'paralel'", function() m:sync(fb, { paralel = 2 }) end)
    refuses("freshbooks.mirror: sync: parallel must be a whole number in 1..32", function()
      m:sync(fb, { parallel = 0 })
    end)
    refuses("freshbooks.mirror: sync: budget: unknown option 'rat'", function()
      m:sync(fb, { budget = { rat = 1 } })
    end)
    refuses("freshbooks.mirror: sync: budget must be a table {rate, burst, max} or false", function()
      m:sync(fb, { budget = true })
    end)
    refuses('freshbooks.mirror: sync: reconcile must be true, false or "full"', function()
      m:sync(fb, { reconcile = "daily" })
    end)
    refuses("freshbooks.mirror: apply: unknown option 'budgte'", function()
      m:apply(fb, { name = "invoice.update" }, { budgte = false })
    end)
    -- apply and apply_events share their checks: each still points at its own caller
    for _, call in ipairs {
      function() m:apply(nil, {}) end,
      function() m:apply_events(fb, {}, { budget = { bogus = 1 } }) end,
      function() m:apply_events(fb, {}, { budgte = false }) end,
    } do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("^[^:]*options_spec%.lua:%d+: freshbooks%.mirror: apply"), tostring(err))
    end
    refuses("freshbooks.mirror: query: unknown option 'max_row'", function()
      m:query("SELECT 1", nil, { max_row = 1 })
    end)
    refuses("freshbooks.mirror: query: deadline must be a number >= 0", function()
      m:query("SELECT 1", nil, { deadline = -1 })
    end)
    refuses("freshbooks.mirror.reports: billing: unknown option 'asof'", function()
      reports.billing(m, { asof = "2025-01-01" })
    end)
    refuses("freshbooks.mirror.reports: revenue: unknown option 'form'", function()
      reports.revenue(m, { form = "2025-01-01" })
    end)
    refuses("freshbooks.mirror.reports: unbilled_time: unknown option 'bussiness'", function()
      reports.unbilled_time(m, { bussiness = 1 })
    end)
    refuses("freshbooks.mirror.reports: dso: days must be a whole number >= 1", function()
      reports.dso(m, { days = 0.5 })
    end)
    refuses("freshbooks.mirror.reports: dso: a mirror (freshbooks.mirror.open) is required", function()
      reports.dso({}, {})
    end)
    m:close()
  end)

  it("also refuses a value of the wrong type or range, saying what it must be", function()
    refuses("freshbooks.new: timeout must be a number >= 0", function() freshbooks.new(app{ timeout = -1 }) end)
    refuses("freshbooks: invoices:each: parallel must be a number >= 1", function()
      acct.invoices:each({}, { parallel = 0 })
    end)
    refuses("freshbooks.connections: max_sessions must be a whole number >= 1", function()
      freshbooks.connections{ app = APP, store = function() end, max_sessions = 1.5 }
    end)
    refuses("freshbooks: batch: concurrency must be a whole number in 1..256", function()
      fb:batch({}, { concurrency = 0 })
    end)
    refuses("freshbooks.store.file: options must be a table, got string", function()
      freshbooks.store.file("/tmp/x", "fast")
    end)
    refuses("freshbooks.store.redis: wipe_check must be a number >= 0, or false", function()
      freshbooks.store.redis.keyspace{ redis = function() end, wipe_check = true }
    end)
    refuses("freshbooks.store.redis: legacy must be a boolean", function()
      freshbooks.store.redis.keyspace{ redis = function() end, legacy = "no" }
    end)
    refuses("freshbooks.store.redis: redis: database must be a whole number >= 0", function()
      freshbooks.store.redis{ key = "k", redis = { host = "127.0.0.1", database = 1.5 } }
    end)
    refuses("freshbooks.store.redis: redis: username needs a password", function()
      freshbooks.store.redis{ key = "k", redis = { host = "127.0.0.1", username = "u" } }
    end)
  end)
end)

describe("options.check", function()
  local spec = options.spec{ n = { "number", min = 1, max = 3, default = 2 }, f = { "function|false" },
    s = { "string", nonempty = true } }

  it("fills defaults, keeps what was given, and never changes the caller's table", function()
    local given = { f = false }
    local o = options.check("t", spec, given)
    assert.same({ n = 2, f = false }, o)
    assert.is_nil(given.n)
    assert.same({ n = 2 }, options.check("t", spec, nil))
  end)

  it("accepts a callable table as a function and refuses NaN, empty strings and the rest", function()
    assert.is_truthy(options.check("t", spec, { f = setmetatable({}, { __call = print }) }).f)
    refuses("t: n must be a number in 1..3", function() options.check("t", spec, { n = 0 / 0 }) end)
    refuses("t: n must be a number in 1..3", function() options.check("t", spec, { n = 4 }) end)
    refuses("t: s must be a non-empty string", function() options.check("t", spec, { s = "" }) end)
    refuses("t: f must be a function or false", function() options.check("t", spec, { f = true }) end)
    refuses("t: unknown option '1'", function() options.check("t", spec, { "positional" }) end)
  end)
end)
