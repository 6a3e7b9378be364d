# lua-freshbooks. `make` builds the C core for $(LUA); `make check` runs every test; `make demo` runs
# the billing report against the sandbox.
LUA      ?= lua5.4
VERSION  := 0.1.0
ifeq ($(LUA),luajit)
LUA_PC   := luajit
else
LUA_PC   := $(LUA)
endif
BUILD    := build/$(LUA)
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Werror -std=c99 -D_POSIX_C_SOURCE=200809L
PKGS     := $(LUA_PC) libcurl libcrypto
# The module links against libcurl/libcrypto but not liblua: the interpreter provides Lua's symbols.
LUA_CFLAGS := $(shell pkg-config --cflags $(PKGS))
LIBS     := $(shell pkg-config --libs libcurl libcrypto)
SRC      := $(wildcard src/*.c)
HDR      := $(wildcard src/*.h)
CORE     := $(BUILD)/freshbooks/core.so

.PHONY: all check test lint valgrind demo sandbox clean install
all: $(CORE)

$(CORE): $(SRC) $(HDR) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared -DFB_VERSION='"$(VERSION)"' $(LUA_CFLAGS) $(SRC) -o $@ $(LIBS)

# Everything CI runs. spec/run prints the final "N passed, N failed" line.
check:
	$(MAKE) LUA=lua5.4
	$(MAKE) LUA=luajit
	./spec/run

test: check

lint:
	luacheck -q lua spec examples bench sandbox

demo: all
	./examples/demo

sandbox:
	./sandbox/run --admin --auto-consent

clean:
	rm -rf build
