rockspec_format = "3.0"
package = "lua-freshbooks"
version = "scm-1"
source = { url = "git+https://example.invalid/lua-freshbooks.git" }
description = {
  summary = "FreshBooks API client: OAuth 2.0 with safe refresh-token rotation, resources, paging, webhooks",
  detailed = [[
A Lua module with a C core over libcurl (keep-alive, shared connection cache, parallel requests) and
OpenSSL (HMAC, CSPRNG) that connects programs to the FreshBooks accounting API.
]],
  license = "MIT",
  labels = { "freshbooks", "oauth2", "http", "accounting" },
}
dependencies = { "lua >= 5.1", "lua-cjson" }
external_dependencies = {
  CURL = { header = "curl/curl.h" },
  OPENSSL = { header = "openssl/hmac.h" },
}
build = {
  type = "builtin",
  modules = {
    ["freshbooks.core"] = {
      sources = { "src/core.c", "src/http.c", "src/codec.c", "src/crypto.c", "src/secret.c" },
      libraries = { "curl", "crypto" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
    },
    ["freshbooks"] = "lua/freshbooks/init.lua",
    ["freshbooks.errors"] = "lua/freshbooks/errors.lua",
    ["freshbooks.transport"] = "lua/freshbooks/transport.lua",
    ["freshbooks.retry"] = "lua/freshbooks/retry.lua",
    ["freshbooks.resource"] = "lua/freshbooks/resource.lua",
  },
}
test = { type = "command", command = "make check" }
