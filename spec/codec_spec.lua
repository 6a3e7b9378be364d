-- The C core's encoders and crypto, against hand-written expected strings and published test vectors.
local core = require "freshbooks.core"

local function unhex(h) return (h:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end)) end

describe("core.codec.urlencode / core.codec.urldecode", function()
  it("keeps RFC 3986 unreserved characters and encodes everything else as %XX", function()
    assert.equal("AZaz09-._~", core.codec.urlencode("AZaz09-._~"))
    assert.equal("a%20b%2Bc%26d%3De%2Ff%3Fg%23h%5B%5D", core.codec.urlencode("a b+c&d=e/f?g#h[]"))
    assert.equal("%C3%A9t%C3%A9%00%FF", core.codec.urlencode("\195\169t\195\169\0\255"))
    assert.equal("", core.codec.urlencode(""))
    assert.equal("42", core.codec.urlencode(42))
  end)

  it("decodes %XX and + as a space, keeping malformed escapes as they are", function()
    assert.equal("a b+c&d", core.codec.urldecode("a+b%2Bc%26d"))
    assert.equal("\195\169\0", core.codec.urldecode("%c3%A9%00"))
    assert.equal("100% %zz %4", core.codec.urldecode("100%25 %zz %4"))
  end)

  it("round-trips every byte", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    assert.equal(all, core.codec.urldecode(core.codec.urlencode(all)))
  end)

  it("raises on non-strings", function()
    assert.error_matches(function() core.codec.urlencode({}) end, "string expected")
    assert.error_matches(function() core.codec.urldecode(nil) end, "string expected")
    assert.error_matches(function() core.codec.urlencode(core.secret.new("x")) end, "string expected")
  end)
end)

describe("core.codec.query", function()
  it("renders the nested FreshBooks forms, keys sorted", function()
    assert.equal("include[]=lines&page=2&search[ids][]=1&search[ids][]=2&search[name]=x",
      core.codec.query{ search = { ids = { 1, 2 }, name = "x" }, include = { "lines" }, page = 2 })
  end)

  it("encodes names and values but leaves its own brackets alone", function()
    assert.equal("search[email_like]=a%40b.com&search[x%20y]=%5B1%5D",
      core.codec.query{ search = { email_like = "a@b.com", ["x y"] = "[1]" } })
    assert.equal("a%26b=1%262", core.codec.query{ ["a&b"] = "1&2" })
  end)

  it("renders booleans and numbers", function()
    assert.equal("a=true&b=false&c=3&d=1.5&e=-7&f=100000",
      core.codec.query{ a = true, b = false, c = 3, d = 1.5, e = -7, f = 1e5 })
    assert.equal("x=0.1", core.codec.query{ x = 0.1 })
  end)

  it("nests deeper levels and numeric keys", function()
    assert.equal("a[b][c]=1&a[b][d][]=x&a[b][d][]=y", core.codec.query{ a = { b = { c = 1, d = { "x", "y" } } } })
    assert.equal("m[10]=b&m[2]=a", core.codec.query{ m = { [2] = "a", [10] = "b" } })
  end)

  it("is deterministic", function()
    local t = {}
    for i = 1, 50 do t["k" .. i] = i end
    local first = core.codec.query(t)
    for _ = 1, 5 do assert.equal(first, core.codec.query(t)) end
    assert.matches("^k1=1&k10=10&k11=11&", first)
  end)

  it("renders empty tables as nothing", function()
    assert.equal("", core.codec.query{})
    assert.equal("b=1", core.codec.query{ a = {}, b = 1 })
  end)

  it("raises on what it cannot render", function()
    assert.error_matches(function() core.codec.query("x") end, "table expected")
    assert.error_matches(function() core.codec.query{ 1, 2 } end, "expected a table of names")
    assert.error_matches(function() core.codec.query{ a = print } end, "string, number or boolean expected")
    assert.error_matches(function() core.codec.query{ a = { { b = 1 } } } end, "arrays of tables")
    assert.error_matches(function() core.codec.query{ a = core.secret.new("s") } end, "secrets are not allowed")
    assert.error_matches(function() core.codec.query{ a = 0 / 0 } end, "finite")
    assert.error_matches(function() core.codec.query{ a = { [1] = "x", ["1"] = "y", b = 1 } } end, "appears twice")
    local deep = {}
    local t = deep
    for _ = 1, 40 do t.x = {}; t = t.x end
    assert.error_matches(function() core.codec.query(deep) end, "nested too deep")
  end)
end)

describe("core.codec.form / core.codec.form_decode", function()
  it("encodes a table sorted by name", function()
    assert.equal("a=x%20y&b=2&c=true", core.codec.form{ c = true, b = 2, a = "x y" })
    assert.equal("", core.codec.form{})
  end)

  it("keeps the order of {name, value} pairs", function()
    assert.equal("z=1&a=2&z=3", core.codec.form{ { "z", "1" }, { "a", 2 }, { "z", "3" } })
  end)

  it("returns body parts with the secret values still opaque", function()
    local parts = core.codec.form{ client_id = "abc", client_secret = core.secret.new("s/cret"),
      grant_type = "refresh_token",
      refresh_token = core.secret.new("r t") }
    assert.equal(4, #parts)
    assert.equal("client_id=abc&client_secret=", parts[1])
    assert.equal("s%2Fcret", core.secret.reveal(parts[2]))
    assert.equal("&grant_type=refresh_token&refresh_token=", parts[3])
    assert.equal("r%20t", core.secret.reveal(parts[4]))
    assert.equal("freshbooks.secret(***)", tostring(parts[2]))
  end)

  it("raises on bad input", function()
    assert.error_matches(function() core.codec.form("a=1") end, "table expected")
    assert.error_matches(function() core.codec.form{ "a" } end, "pair 1")
    assert.error_matches(function() core.codec.form{ a = {} } end, "string, number or boolean expected")
  end)

  it("decodes into ordered pairs", function()
    assert.same({
      { "name", "invoice.create" }, { "object_id", "12" }, { "empty", "" }, { "flag", "" }, { "a b", "c&d" },
      { "name", "again" },
    }, core.codec.form_decode("name=invoice.create&object_id=12&empty=&flag&a+b=c%26d&&name=again"))
    assert.same({}, core.codec.form_decode(""))
    assert.error_matches(function() core.codec.form_decode({}) end, "string expected")
  end)

  it("round-trips pairs", function()
    local pairs_in = { { "x", "1 2" }, { "ü", "=&+" }, { "x", "" } }
    assert.same(pairs_in, core.codec.form_decode(core.codec.form(pairs_in)))
  end)
end)

describe("core.codec.base64 / core.codec.unbase64", function()
  -- RFC 4648 section 10.
  local vectors = {
    { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
    { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
  }

  it("matches the RFC 4648 test vectors both ways", function()
    for _, v in ipairs(vectors) do
      assert.equal(v[2], core.codec.base64(v[1]))
      assert.equal(v[1], core.codec.unbase64(v[2]))
    end
  end)

  it("round-trips binary data", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    for n = 0, 5 do
      local s = all:sub(1, 250 + n)
      assert.equal(s, core.codec.unbase64(core.codec.base64(s)))
    end
    assert.equal("+/8=", core.codec.base64("\251\255"))
  end)

  it("returns nil for input that is not padded base64", function()
    for _, bad in ipairs{ "Zg=", "Zg", "Zm9v!A==", "Z===", "=Zg=", "Zg=a", "Zm 9v", "Zg==Zg==", "-_8=" } do
      local v, err = core.codec.unbase64(bad)
      assert.is_nil(v, bad)
      assert.same({ code = "bad_input", message = "invalid base64" }, err)
    end
  end)
end)

describe("core.crypto.hmac_sha256", function()
  -- RFC 4231 test cases 1, 2, 3, 4, 6 and 7.
  local aa131 = string.rep("\170", 131)
  local cases = {
    { string.rep("\11", 20), "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { "Jefe", "what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { string.rep("\170", 20), string.rep("\221", 50),
      "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
    { unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"), string.rep("\205", 50),
      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    { aa131, "Test Using Larger Than Block-Size Key - Hash Key First",
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { aa131, "This is a test using a larger than block-size key and a larger than block-size data."
      .. " The key needs to be hashed before being used by the HMAC algorithm.",
      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
  }

  it("matches the RFC 4231 test vectors", function()
    for i, c in ipairs(cases) do
      local mac = core.crypto.hmac_sha256(c[1], c[2])
      assert.equal(32, #mac)
      assert.equal(c[3], core.codec.hex(mac), "case " .. i)
    end
  end)

  it("takes the key as a secret", function()
    assert.equal(core.crypto.hmac_sha256("Jefe", "what do ya want for nothing?"),
      core.crypto.hmac_sha256(core.secret.new("Jefe"), "what do ya want for nothing?"))
  end)

  it("raises on bad arguments", function()
    assert.error_matches(function() core.crypto.hmac_sha256(nil, "x") end, "key: string or secret expected")
    assert.error_matches(function() core.crypto.hmac_sha256("k", {}) end, "message: string or secret expected")
  end)
end)

describe("core.crypto.equals, core.crypto.random_bytes, core.codec.hex", function()
  it("compares strings and secrets", function()
    assert.is_true(core.crypto.equals("abc", "abc"))
    assert.is_false(core.crypto.equals("abc", "abd"))
    assert.is_false(core.crypto.equals("abc", "abcd"))
    assert.is_true(core.crypto.equals("", ""))
    assert.is_true(core.crypto.equals(core.secret.new("abc"), "abc"))
    assert.error_matches(function() core.crypto.equals("a") end, "argument 2")
  end)

  it("returns n random bytes, different each time", function()
    assert.equal("", core.crypto.random_bytes(0))
    local a, b = core.crypto.random_bytes(32), core.crypto.random_bytes(32)
    assert.equal(32, #a)
    assert.are_not.equal(a, b)
    assert.equal(100000, #core.crypto.random_bytes(100000))
    assert.error_matches(function() core.crypto.random_bytes(-1) end, "integer")
    assert.error_matches(function() core.crypto.random_bytes(1.5) end, "integer")
    assert.error_matches(function() core.crypto.random_bytes(2 ^ 40) end, "integer")
  end)

  it("hex-encodes in lower case", function()
    assert.equal("00ff6162", core.codec.hex("\0\255ab"))
    assert.equal("", core.codec.hex(""))
    assert.error_matches(function() core.codec.hex(1) end, "string expected")
  end)
end)

describe("core.pg.scram (SCRAM-SHA-256 for pgwire), core.clock.time", function()
  -- RFC 7677's example exchange: user "user", password "pencil"
  local first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO"
  local server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
  local without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"

  it("gives RFC 7677's client proof and server signature", function()
    local proof, signature = core.pg.scram("pencil", core.codec.unbase64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096,
      first_bare .. "," .. server_first .. "," .. without_proof)
    assert.equals("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", core.codec.base64(proof))
    assert.equals("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", core.codec.base64(signature))
    local other = core.pg.scram("pencil!", "salt", 4096, "m")
    assert.are_not.equal(proof, other)
  end)

  it("raises on bad iterations and arguments", function()
    assert.has_error(function() core.pg.scram("pw", "salt", 0, "m") end)
    assert.has_error(function() core.pg.scram("pw", "salt", 1e8, "m") end)
    assert.has_error(function() core.pg.scram("pw", nil, 1, "m") end)
    assert.has_error(function() core.pg.scram(nil, "salt", 1, "m") end)
  end)

  it("tells the wall clock to the microsecond", function()
    local t = core.clock.time()
    assert.is_true(math.abs(t - os.time()) < 2)
    assert.is_true(t ~= math.floor(t) or core.clock.time() ~= t)
  end)
end)
