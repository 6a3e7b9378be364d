# lua-freshbooks. `make` builds the C core for $(LUA); `make check` runs every test; `make demo` walks
# the `freshbooks` command through a local sandbox: login, report, export.
LUA      ?= lua5.4
# The version lives in src/freshbooks.h only (the C core and the Lua module read it from there).
VERSION  := $(shell sed -n 's/^#define FRESHBOOKS_VERSION "\(.*\)"$$/\1/p' src/freshbooks.h)
ifeq ($(LUA),luajit)
LUA_PC   := luajit
else
LUA_PC   := $(LUA)
endif
BUILD    := build/$(LUA)
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Werror -std=c99 -D_POSIX_C_SOURCE=200809L
# pkg-config runs only when something is compiled (`=`, not `:=`): on a fresh machine `make demo` and
# `make check` install the packages first, and no target prints pkg-config noise before that.
# The module links against libcurl/libssl/libcrypto but not liblua: the interpreter provides Lua's symbols.
pkg      = $(shell pkg-config $(1) $(2) 2>/dev/null || echo PKG_CONFIG_MISSING)
LUA_CFLAGS = $(call pkg,--cflags,$(LUA_PC) libcurl libssl libcrypto sqlite3 libpq)
LIBS     = $(call pkg,--libs,libcurl libssl libcrypto sqlite3 libpq)
# What a missing -dev package looks like, said plainly.
need_pkgs = @pkg-config --exists $(1) || { echo "missing development packages for: $(1)"; \
  echo "run 'make deps' (installs the Debian packages; as root) and try again"; exit 1; }
HDR      := $(wildcard src/*.h)
# Two C modules: freshbooks.core (HTTP over libcurl, codecs, crypto, secrets) and freshbooks.vm (guest
# scripts in Lua states of their own: no libcurl; libcrypto only for wiping buffers). common.c and
# buf.c go into both.
COMMON_SRC := src/common.c src/buf.c
VM_SRC   := src/guest.c src/plain.c $(COMMON_SRC)
CORE_SRC := $(filter-out src/guest.c src/plain.c,$(wildcard src/*.c))
# The guest state's Lua parts (src/guest.c runs them in every guest state) are compiled into the VM.
GUEST_LUA := $(wildcard src/guest_*.lua)
CORE     := $(BUILD)/freshbooks/core.so
VM       := $(BUILD)/freshbooks/vm.so
VM_LIBS   = $(call pkg,--libs,libcrypto)

.PHONY: all deps check test lint valgrind asan demo sandbox crosscheck clean rock rock-install rockspec docs
all: $(CORE) $(VM)

$(CORE): $(CORE_SRC) $(HDR) Makefile
	$(call need_pkgs,$(LUA_PC) libcurl libssl libcrypto sqlite3 libpq)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared $(LUA_CFLAGS) $(CORE_SRC) -o $@ $(LIBS)

$(VM): $(VM_SRC) $(HDR) $(BUILD)/gen/guest_lua.h Makefile
	$(call need_pkgs,$(LUA_PC) libcurl libcrypto)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared -I$(BUILD)/gen $(LUA_CFLAGS) $(VM_SRC) -o $@ $(VM_LIBS)

# Each src/guest_<name>.lua becomes `static const char fb_guest_<name>_lua[]` ('?' escaped: no trigraphs).
build/%/gen/guest_lua.h: $(GUEST_LUA) Makefile
	@mkdir -p $(dir $@)
	@for f in $(GUEST_LUA); do echo "static const char fb_$$(basename $$f .lua)_lua[] ="; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/"/' -e 's/$$/\\n"/' $$f; echo ";"; \
	done > $@

# The embedding example (examples/embed/host.c): a C host running user scripts through freshbooks.guest.
$(BUILD)/embed-host: examples/embed/host.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(LUA_CFLAGS) $< -o $@ $(call pkg,--libs,$(LUA_PC)) -ldl -lm

# The Debian packages everything needs; quick when they are all there (FB_NO_DEPS=1 skips the check).
deps:
	@[ -n "$(FB_NO_DEPS)" ] || ./.ci/deps
	@$(MAKE) -s $(RESTY_REDIS)

# resty.redis for the nginx specs and the OpenResty example on Debian's nginx (.ci/vendor says why).
RESTY_REDIS := build/deps/lua/nginx/redis.lua
$(RESTY_REDIS):
	./.ci/vendor $@

# Everything CI runs: the core for every interpreter the rockspec claims, then spec/run (its last
# line: "N passed, N failed", after "N skipped").
check: deps
	$(MAKE) LUA=lua5.4 all build/lua5.4/embed-host
	$(MAKE) LUA=luajit
	$(MAKE) LUA=lua5.1
	$(MAKE) LUA=lua5.3
	./spec/run

test: check

# `make asan [LUA=luajit] [SPECS="spec/x_spec.lua ..."]`: the core built with ASan and UBSan into
# build/asan-$(LUA) (the interpreter is not instrumented: the runtime is preloaded), then the C-core
# specs against it. Not part of `make check` (the guest specs take minutes under ASan).
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_SPECS ?= spec/core_spec.lua spec/codec_spec.lua spec/json_spec.lua spec/cmem_spec.lua spec/guest_patterns_spec.lua
asan:
	$(MAKE) LUA=$(LUA) BUILD=build/asan-$(LUA) CFLAGS="$(ASAN_FLAGS)"
	LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="build/asan-$(LUA)/?.so;;" \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(LUA) /usr/bin/busted --ignore-lua -o TAP $(or $(SPECS),$(ASAN_SPECS))

lint:
	luacheck -q lua src spec examples bench sandbox docs bin/freshbooks .busted

demo: deps
	$(MAKE) LUA=$(LUA) all
	./examples/demo

# `make sandbox`: a sandbox in the foreground (Ctrl-C or TERM stops it) and the commands that use it,
# ready to paste into another shell: a profile of their own, so a real login is left alone.
# SANDBOX_ARGS go to sandbox/run (e.g. --redirect-uri http://localhost:PORT/callback).
sandbox:
	@info=$$(mktemp); prefix=; here=$$(pwd); \
	trap 'if [ -n "$$prefix" ]; then ./sandbox/run --stop "$$prefix"; fi; rm -f "$$info"' EXIT; \
	trap 'exit 130' INT TERM; \
	./sandbox/run --background --admin --auto-consent $(SANDBOX_ARGS) >"$$info" || exit 1; \
	v() { sed -n "s/^$$1=//p" "$$info"; }; prefix=$$(v prefix); \
	printf '%s\n' "The FreshBooks sandbox answers at $$(v tls_url) (Ctrl-C here stops it). In another shell:" "" \
	  "export FB_PROFILE=sandbox FB_CLIENT_ID=$$(v client_id) FB_CLIENT_SECRET=$$(v client_secret) \\" \
	  "  FB_REDIRECT_URI=$$(v redirect_uri) FB_API_URL=$$(v tls_url) FB_AUTH_URL=$$(v url) \\" \
	  "  FB_CA_FILE=$$(v ca_file)" \
	  "BROWSER=$$here/sandbox/browser $$here/bin/freshbooks login" \
	  "$$here/bin/freshbooks report --as-of 2025-06-30" \
	  "$$here/bin/freshbooks export invoices --format csv | head" ""; \
	while kill -0 "$$(v pid)" 2>/dev/null; do sleep 1 & wait $$!; done

# The official FreshBooks Node SDK against the sandbox (needs npm; outside `make check`).
crosscheck:
	./sandbox/crosscheck/run

clean:
	rm -rf build

# The API reference (build/docs/index.html) from docs/meta.lua, the LuaLS annotations editors read:
# docs/ldoc.lua rewrites them in LDoc's tags, and Debian's LDoc fails on any warning.
docs:
	@mkdir -p build/docs-src
	$(LUA) docs/ldoc.lua docs/meta.lua > build/docs-src/freshbooks.lua
	ldoc --fatalwarnings -q -p lua-freshbooks -t "lua-freshbooks $(VERSION) API" -d build/docs build/docs-src/freshbooks.lua

# LuaRocks (`build.type = "make"` in the rockspec) calls these with its own variables: LUA_INCDIR for
# the interpreter it builds for, LIBFLAG, and INST_LIBDIR. libcurl, libssl and libcrypto come from
# pkg-config, which knows Debian's multiarch directories (LuaRocks' header search does not).
ROCK_CORE := build/rock/freshbooks/core.so
ROCK_VM  := build/rock/freshbooks/vm.so
LIBFLAG  ?= -shared
rock: build/rock/gen/guest_lua.h
	$(call need_pkgs,libcurl libssl libcrypto sqlite3 libpq)
	@mkdir -p $(dir $(ROCK_CORE))
	$(CC) $(CFLAGS) $(WARN) -fPIC $(LIBFLAG) -I$(LUA_INCDIR) \
	  $(call pkg,--cflags,libcurl libssl libcrypto sqlite3 libpq) $(CORE_SRC) -o $(ROCK_CORE) $(LIBS)
	$(CC) $(CFLAGS) $(WARN) -fPIC $(LIBFLAG) -I$(LUA_INCDIR) -Ibuild/rock/gen \
	  $(call pkg,--cflags,libcurl libcrypto) $(VM_SRC) -o $(ROCK_VM) $(VM_LIBS)

rock-install:
	install -d $(INST_LIBDIR)/freshbooks
	install -m 755 $(ROCK_CORE) $(INST_LIBDIR)/freshbooks/core.so
	install -m 755 $(ROCK_VM) $(INST_LIBDIR)/freshbooks/vm.so

# The checkout's rockspec is LuaRocks' development one (scm-1: whatever is checked out). A release's is
# made from it with the version and tag from src/freshbooks.h, for the release to publish.
RELEASE_ROCKSPEC := build/lua-freshbooks-$(VERSION)-1.rockspec
rockspec: $(RELEASE_ROCKSPEC)
$(RELEASE_ROCKSPEC): lua-freshbooks-scm-1.rockspec src/freshbooks.h
	@mkdir -p $(dir $@)
	sed -e 's/^version = "scm-1"$$/version = "$(VERSION)-1"/' \
	  -e 's/^\(source = { url = "[^"]*"\) }$$/\1, tag = "v$(VERSION)" }/' $< > $@
	@grep -q '^version = "$(VERSION)-1"$$' $@ && grep -q 'tag = "v$(VERSION)"' $@ || \
	  { echo "$@: the version or source line of the rockspec changed shape"; rm -f $@; exit 1; }

# `make bench`: lua-freshbooks under lua5.4 and luajit against a raw libcurl loop in C and the official
# Node SDK (installed into bench/node with npm when npm is there; skipped with a line otherwise), one
# sandbox, interleaved rounds, medians and min-max (bench/run.lua says what is measured); then the mirror
# (bench/mirror.lua: first sync next to export, an incremental sync after 100 changes, the offline report),
# and the mirror at scale (bench/mirror_scale.lua: the first sync into PostgreSQL next to SQLite, events
# per second through the Redis stream into the mirror).
BENCH_RAW := build/bench/raw_get
$(BENCH_RAW): bench/raw_get.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(call pkg,--cflags,libcurl) bench/raw_get.c -o $@ $(call pkg,--libs,libcurl)

.PHONY: bench
bench: deps $(BENCH_RAW)
	$(MAKE) LUA=lua5.4 all
	$(MAKE) LUA=luajit all
	@if command -v npm >/dev/null; then [ -d bench/node/node_modules/@freshbooks/api ] || \
	  (cd bench/node && npm ci --no-audit --no-fund --silent) || echo "bench: npm could not install the Node SDK"; fi
	LUA_PATH="lua/?.lua;lua/?/init.lua;sandbox/?.lua;;" LUA_CPATH="build/lua5.4/?.so;;" lua5.4 bench/run.lua $(BENCH_RAW)
	LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="build/lua5.4/?.so;;" lua5.4 bench/mirror.lua
	LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="build/lua5.4/?.so;;" lua5.4 bench/mirror_scale.lua

# `make bench-callgrind [CALLGRIND_LUAS="lua5.4 luajit"]`: instructions per GET under valgrind's
# callgrind, a session's `acct.clients:get` against the raw libcurl loop (bench/callgrind.lua).
CALLGRIND_LUAS ?= lua5.4
.PHONY: bench-callgrind
bench-callgrind: deps $(BENCH_RAW)
	@for l in $(CALLGRIND_LUAS); do $(MAKE) -s LUA=$$l all; done
	LUA_PATH="lua/?.lua;lua/?/init.lua;sandbox/?.lua;;" LUA_CPATH="build/lua5.4/?.so;;" \
	  lua5.4 bench/callgrind.lua $(BENCH_RAW) $(CALLGRIND_LUAS)
