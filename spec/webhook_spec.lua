-- Webhook signatures: FreshBooks' construction (Python json.dumps of the form fields, in order) checked
-- against hand-computed values, then against real deliveries from the sandbox.
local webhook = require "freshbooks.webhook"

local VERIFIER = "s3cr3t-verifier"

describe("webhook signature construction", function()
  local fields = { { "name", "invoice.create" }, { "object_id", "1234567" }, { "account_id", "aBcD1" },
                   { "business_id", "1000001" }, { "identity_id", "1001" }, { "user_id", "1001" } }

  it("serialises the fields as Python's json.dumps does", function()
    assert.equal('{"name": "invoice.create", "object_id": "1234567", "account_id": "aBcD1", "business_id": "1000001", '
      .. '"identity_id": "1001", "user_id": "1001"}', webhook.message(fields))
  end)

  it("escapes quotes, controls and non-ASCII (surrogate pairs beyond the BMP)", function()
    local f = { { "name", "client.update" }, { "note", 'Café “best” 😀\n"x"\\' } }
    assert.equal('{"name": "client.update", "note": "Caf\\u00e9 \\u201cbest\\u201d \\ud83d\\ude00\\n\\"x\\"\\\\"}',
      webhook.message(f))
    assert.equal("+RoXgf9SIzm+PbDLmqxQZ8oyFuIfOolx/hyUQybBTxw=", webhook.sign(VERIFIER, f))
  end)

  -- spec/vectors/webhook_vectors.json was made by Python's own json.dumps (the script beside it): the
  -- client's signer, and the sandbox's deliveries (which use the same one), must give the same bytes.
  it("matches Python's json.dumps on every vector: controls, DEL, non-ASCII, invalid UTF-8", function()
    local f = assert(io.open("spec/vectors/webhook_vectors.json", "rb"))
    local v = require("cjson").decode(f:read("*a"))
    f:close()
    assert.is_true(#v.vectors >= 10)
    for _, case in ipairs(v.vectors) do
      local parsed = webhook.parse(case.body)
      assert.equal(case.message, webhook.message(parsed), case.case)
      assert.equal(case.signature, webhook.sign(v.verifier, parsed), case.case)
      -- (a body that repeats a name is signed as Python would, but never comes from FreshBooks)
      local repeated = case.case:find("repeated", 1, true)
      assert.same(repeated and { false, "duplicate_field" } or { true },
        { webhook.verify(v.verifier, case.body, case.signature) }, case.case)
    end
  end)

  it("signs with HMAC-SHA256 of the verifier, base64", function()
    assert.equal("rFfSA6u2iuQZbGs+NShbCGOFO0/eIbpWv7rHOBUU+uU=", webhook.sign(VERIFIER, fields))
  end)

  it("verifies a good signature and refuses a tampered one", function()
    assert.is_true(webhook.verify(VERIFIER, fields, "rFfSA6u2iuQZbGs+NShbCGOFO0/eIbpWv7rHOBUU+uU="))
    assert.is_true(webhook.verify(VERIFIER, fields, " rFfSA6u2iuQZbGs+NShbCGOFO0/eIbpWv7rHOBUU+uU=\r\n"))
    local ok, why = webhook.verify("other", fields, "rFfSA6u2iuQZbGs+NShbCGOFO0/eIbpWv7rHOBUU+uU=")
    assert.same({ false, "bad_signature" }, { ok, why })
    local swapped = { fields[2], fields[1], fields[3], fields[4], fields[5], fields[6] }
    assert.is_false(webhook.verify(VERIFIER, swapped, "rFfSA6u2iuQZbGs+NShbCGOFO0/eIbpWv7rHOBUU+uU="))
    assert.same({ false, "missing_signature" }, { webhook.verify(VERIFIER, fields, nil) })
  end)

  it("costs the same for a signature header of any size: bounded, trimmed in one pass", function()
    local good = "rFfSA6u2iuQZbGs+NShbCGOFO0/eIbpWv7rHOBUU+uU="
    assert.is_true(webhook.verify(VERIFIER, fields, (" "):rep(100) .. good .. ("\t"):rep(100)))
    for _, n in ipairs{ 8192, 65536, 1048576 } do
      for _, header in ipairs{ (" "):rep(n), (" "):rep(n) .. "x", "x" .. (" "):rep(n) .. "x", good .. (" "):rep(n) } do
        local t0 = os.clock()
        local ok, why = webhook.verify(VERIFIER, fields, header)
        local took = os.clock() - t0
        assert.is_false(ok)
        assert.equal("bad_signature", why)
        assert.is_true(took < 0.02, ("%d bytes of header: %.3f s of CPU"):format(#header, took))
      end
    end
  end)

  it("parses a raw form body keeping the received order", function()
    local body = "name=invoice.create&object_id=1234567&account_id=aBcD1&business_id=1000001&identity_id=1001"
      .. "&user_id=1001"
    local parsed = webhook.parse(body)
    assert.equal(6, #parsed)
    assert.same({ "object_id", "1234567" }, { parsed[2].name, parsed[2].value })
    assert.is_true(webhook.verify(VERIFIER, parsed, "rFfSA6u2iuQZbGs+NShbCGOFO0/eIbpWv7rHOBUU+uU="))
    assert.is_true(webhook.verify(VERIFIER, body, "rFfSA6u2iuQZbGs+NShbCGOFO0/eIbpWv7rHOBUU+uU="))
    assert.equal("aBcD1", webhook.field(parsed, "account_id"))
    assert.equal("a b+c", webhook.parse("x=a+b%2Bc")[1].value)
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() webhook.verify(VERIFIER, { name = "x" }, "sig") end)
    assert.has_error(function() webhook.verify(nil, fields, "sig") end)
    assert.has_error(function() webhook.parse(nil) end)
  end)
end)

describe("webhook deliveries from the sandbox", function()
  local sandbox = require "support.sandbox"
  local H = require "support.fbtest"
  local core = require "freshbooks.core"
  local sb, acct

  setup(function()
    sb = sandbox.start{ invoices = 50 }
    acct = H.session(sb):account("aBcD1")
  end)
  teardown(function() if sb then sb:stop() end end)

  -- Wait for the n-th delivery to reach the sandbox's inbox.
  local function delivery(n)
    local t0 = core.now()
    while core.now() - t0 < 5 do
      local inbox = sb:admin("GET", "/_sandbox/inbox").inbox
      if inbox[n] then return inbox[n] end
      core.sleep(0.02)
    end
    error("no delivery " .. n)
  end
  local function signature(d)
    local h = d.headers["x-freshbooks-hmac-sha256"]
    return type(h) == "table" and h[1] or h
  end

  it("verifies the verification delivery, confirms it, then verifies event deliveries", function()
    sb:admin("DELETE", "/_sandbox/inbox")
    local cb = assert(acct.callbacks:create{ event = "invoice", uri = sb.url .. "/_sandbox/inbox/hook" })
    local first = delivery(1)
    local fields = webhook.parse(first.body)
    assert.equal("callback.verify", webhook.field(fields, "name"))
    local verifier = webhook.field(fields, "verifier")
    assert.is_string(verifier)
    assert.is_true(webhook.verify(verifier, fields, signature(first)))
    assert.is_true(webhook.verify(verifier, first.body, signature(first)))
    assert.is_false(webhook.verify(verifier, first.body .. "&extra=1", signature(first)))

    assert.is_true(assert(acct.callbacks:verify(cb.callbackid, verifier)).verified)
    local _, err = acct.callbacks:verify(cb.callbackid, "wrong")
    assert.equal("validation", err.code)

    local inv = assert(acct.invoices:create{ customerid = 10001, create_date = "2025-06-01" })
    local event = delivery(2)
    local ef = webhook.parse(event.body)
    assert.same({ "invoice.create", tostring(inv.id) }, { webhook.field(ef, "name"), webhook.field(ef, "object_id") })
    assert.is_true(webhook.verify(verifier, ef, signature(event)))
    assert.is_false(webhook.verify("not-the-verifier", ef, signature(event)))

    -- resend: a new verifier arrives; the old one no longer matches
    assert(acct.callbacks:resend(cb.callbackid))
    local again = delivery(3)
    local af = webhook.parse(again.body)
    local v2 = webhook.field(af, "verifier")
    assert.are_not.equal(verifier, v2)
    assert.is_true(webhook.verify(v2, af, signature(again)))
    assert.is_false(webhook.verify(verifier, af, signature(again)))
  end)

  -- FreshBooks signs a dict, so a delivery never repeats a name; the message keeps a repeated name's
  -- first place and last value, while webhook.field reads the first value.
  it("refuses a delivery with a repeated field: a forged first value rides on the genuine signature", function()
    sb:admin("DELETE", "/_sandbox/inbox")
    local cb = assert(acct.callbacks:create{ event = "invoice", uri = sb.url .. "/_sandbox/inbox/hook" })
    local verifier = webhook.field(webhook.parse(delivery(1).body), "verifier")
    assert(acct.callbacks:verify(cb.callbackid, verifier))
    assert(acct.invoices:create{ customerid = 10001, create_date = "2025-06-01" })
    local event = delivery(2)
    assert.is_true(webhook.verify(verifier, event.body, signature(event)))
    local forged = event.body:gsub("object_id=", "object_id=666&object_id=", 1)
    assert.are_not.equal(event.body, forged)
    assert.equal("666", webhook.field(webhook.parse(forged), "object_id"))
    assert.same({ false, "duplicate_field" }, { webhook.verify(verifier, forged, signature(event)) })
    assert.same({ false, "duplicate_field" }, { webhook.verify(verifier, webhook.parse(forged), signature(event)) })
  end)

  it("refuses a delivery with several signatures, even when one is right", function()
    sb:admin("DELETE", "/_sandbox/inbox")
    assert(acct.callbacks:create{ event = "invoice", uri = sb.url .. "/_sandbox/inbox/hook" })
    local first = delivery(1)
    local verifier = webhook.field(webhook.parse(first.body), "verifier")
    local good = signature(first)
    assert.is_true(webhook.verify(verifier, first.body, { good }))
    for _, sigs in ipairs{ { good, "bm90LWl0" }, { "bm90LWl0", good }, { good, good } } do
      assert.same({ false, "duplicate_signature" }, { webhook.verify(verifier, first.body, sigs) })
    end
    assert.same({ false, "missing_signature" }, { webhook.verify(verifier, first.body, {}) })
  end)
end)
