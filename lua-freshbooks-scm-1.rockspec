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
-- The `freshbooks` command also needs argparse, luasocket (the login's loopback listener), lua-term
-- (isatty) and luafilesystem; Debian: lua-argparse lua-socket lua-term lua-filesystem. The Redis store
-- takes the user's client (lua-redis, resty.redis), so no Redis client is a dependency.
-- The Lua versions are the ones CI runs (spec/run: 5.1, 5.3, 5.4 and LuaJIT, which LuaRocks calls 5.1);
-- 5.2 is not among them, so it is refused rather than installed untested.
dependencies = { "lua >= 5.1, < 5.5, ~= 5.2", "lua-cjson", "argparse", "luasocket", "lua-term", "luafilesystem" }
-- libcurl, libssl, libcrypto, libsqlite3 and libpq (the mirror) are found by the Makefile through pkg-config
-- (Debian keeps curl.h under the multiarch include directory, where LuaRocks' own header search does not look).
build = {
  type = "make",
  build_target = "rock",
  build_variables = { CFLAGS = "$(CFLAGS)", LIBFLAG = "$(LIBFLAG)", LUA_INCDIR = "$(LUA_INCDIR)" },
  install_target = "rock-install",
  install_variables = { INST_LIBDIR = "$(LIBDIR)" },
  install = {
    lua = {
      ["freshbooks"] = "lua/freshbooks/init.lua",
      ["freshbooks.catalogue"] = "lua/freshbooks/catalogue.lua",
      ["freshbooks.cli"] = "lua/freshbooks/cli/init.lua",
      ["freshbooks.cli.account"] = "lua/freshbooks/cli/account.lua",
      ["freshbooks.cli.api"] = "lua/freshbooks/cli/api.lua",
      ["freshbooks.cli.commands"] = "lua/freshbooks/cli/commands.lua",
      ["freshbooks.cli.complete"] = "lua/freshbooks/cli/complete.lua",
      ["freshbooks.cli.config"] = "lua/freshbooks/cli/config.lua",
      ["freshbooks.cli.export"] = "lua/freshbooks/cli/export.lua",
      ["freshbooks.cli.mirror"] = "lua/freshbooks/cli/mirror.lua",
      ["freshbooks.cli.login"] = "lua/freshbooks/cli/login.lua",
      ["freshbooks.cli.loopback"] = "lua/freshbooks/cli/loopback.lua",
      ["freshbooks.cli.progress"] = "lua/freshbooks/cli/progress.lua",
      ["freshbooks.cli.report"] = "lua/freshbooks/cli/report.lua",
      ["freshbooks.cli.spawn"] = "lua/freshbooks/cli/spawn.lua",
      ["freshbooks.cli.text"] = "lua/freshbooks/cli/text.lua",
      ["freshbooks.connections"] = "lua/freshbooks/connections.lua",
      ["freshbooks.date"] = "lua/freshbooks/date.lua",
      ["freshbooks.env"] = "lua/freshbooks/env.lua",
      ["freshbooks.errors"] = "lua/freshbooks/errors.lua",
      ["freshbooks.guest"] = "lua/freshbooks/guest.lua",
      ["freshbooks.identity"] = "lua/freshbooks/identity.lua",
      ["freshbooks.oauth"] = "lua/freshbooks/oauth.lua",
      ["freshbooks.mirror"] = "lua/freshbooks/mirror/init.lua",
      ["freshbooks.mirror.feed"] = "lua/freshbooks/mirror/feed.lua",
      ["freshbooks.mirror.postgres"] = "lua/freshbooks/mirror/postgres.lua",
      ["freshbooks.mirror.pgwire"] = "lua/freshbooks/mirror/pgwire.lua",
      ["freshbooks.mirror.reports"] = "lua/freshbooks/mirror/reports.lua",
      ["freshbooks.mirror.resources"] = "lua/freshbooks/mirror/resources.lua",
      ["freshbooks.mirror.schema"] = "lua/freshbooks/mirror/schema.lua",
      ["freshbooks.mirror.sqlite"] = "lua/freshbooks/mirror/sqlite.lua",
      ["freshbooks.mirror.stream"] = "lua/freshbooks/mirror/stream.lua",
      ["freshbooks.mirror.sync"] = "lua/freshbooks/mirror/sync.lua",
      ["freshbooks.mirror.worker"] = "lua/freshbooks/mirror/worker.lua",
      ["freshbooks.options"] = "lua/freshbooks/options.lua",
      ["freshbooks.paging"] = "lua/freshbooks/paging.lua",
      ["freshbooks.pipeline"] = "lua/freshbooks/pipeline.lua",
      ["freshbooks.query"] = "lua/freshbooks/query.lua",
      ["freshbooks.redact"] = "lua/freshbooks/redact.lua",
      ["freshbooks.report"] = "lua/freshbooks/report.lua",
      ["freshbooks.resource"] = "lua/freshbooks/resource.lua",
      ["freshbooks.retry"] = "lua/freshbooks/retry.lua",
      ["freshbooks.session"] = "lua/freshbooks/session.lua",
      ["freshbooks.session.secrets"] = "lua/freshbooks/session/secrets.lua",
      ["freshbooks.session.tokens"] = "lua/freshbooks/session/tokens.lua",
      ["freshbooks.store.file"] = "lua/freshbooks/store/file.lua",
      ["freshbooks.store.record"] = "lua/freshbooks/store/record.lua",
      ["freshbooks.store.pending"] = "lua/freshbooks/store/pending.lua",
      ["freshbooks.store.redis"] = "lua/freshbooks/store/redis.lua",
      ["freshbooks.store.redis_client"] = "lua/freshbooks/store/redis_client.lua",
      ["freshbooks.store.redis_scripts"] = "lua/freshbooks/store/redis_scripts.lua",
      ["freshbooks.transport"] = "lua/freshbooks/transport/init.lua",
      ["freshbooks.transport.cosocket"] = "lua/freshbooks/transport/cosocket.lua",
      ["freshbooks.transport.curl"] = "lua/freshbooks/transport/curl.lua",
      ["freshbooks.webhook"] = "lua/freshbooks/webhook.lua",
    },
    bin = { freshbooks = "bin/freshbooks" },
  },
}
-- `luarocks test`: the specs under LuaRocks' interpreter, with no package installed (spec/luarocks_test.lua).
test = { type = "command", script = "spec/luarocks_test.lua" }
