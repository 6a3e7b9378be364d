/* An embedding host: a C program that lets its users script FreshBooks without ever handing them a
 * secret. The host owns the credentials (from its environment) and the token store; the user's script
 * runs through freshbooks.guest, which gives it plain functions and copied data only.
 *
 *   FB_API_URL=... FB_CLIENT_ID=... FB_CLIENT_SECRET=... FB_REDIRECT_URI=... FB_TOKENS=tokens.json \
 *   [FB_CAINFO=ca.pem] [FB_GUEST_WRITE=1] embed-host user-script.lua
 *
 * Exit status: 0 when the script ran, 1 when it failed (its error on stderr), 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/* Trusted code, run by the host before any user code: builds the session from the host's settings. */
static const char *host_setup =
	"local freshbooks = require 'freshbooks'\n"
	"local function need(name)\n"
	"  local v = os.getenv(name)\n"
	"  if not v or v == '' then error('embed-host: set ' .. name, 0) end\n"
	"  return v\n"
	"end\n"
	"return freshbooks.new{\n"
	"  api_url = need 'FB_API_URL', client_id = need 'FB_CLIENT_ID',\n"
	"  client_secret = need 'FB_CLIENT_SECRET', redirect_uri = need 'FB_REDIRECT_URI',\n"
	"  store = freshbooks.store.file(need 'FB_TOKENS'), cainfo = os.getenv 'FB_CAINFO',\n"
	"}\n";

/* Runs the user's script through the guest module with the session as its only way out. */
static const char *run_guest =
	"local fb, path, write = ...\n"
	"local f = assert(io.open(path, 'rb'))\n"
	"local source = f:read('*a')\n"
	"f:close()\n"
	"local ok, err = require('freshbooks.guest').run(fb, source, '@' .. path, { write = write })\n"
	"if not ok then error(err, 0) end\n";

static int fail(lua_State *L, const char *what)
{
	fprintf(stderr, "embed-host: %s: %s\n", what, lua_tostring(L, -1));
	lua_close(L);
	return 1;
}

int main(int argc, char **argv)
{
	lua_State *L;
	const char *write;
	if (argc != 2) {
		fprintf(stderr, "usage: embed-host user-script.lua\n");
		return 2;
	}
	L = luaL_newstate();
	if (L == NULL)
		return 1;
	luaL_openlibs(L);
	if (luaL_loadstring(L, host_setup) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
		return fail(L, "setup");
	/* stack: session */
	if (luaL_loadstring(L, run_guest) != LUA_OK)
		return fail(L, "guest loader");
	lua_insert(L, -2);
	lua_pushstring(L, argv[1]);
	write = getenv("FB_GUEST_WRITE");
	lua_pushboolean(L, write != NULL && write[0] == '1');
	if (lua_pcall(L, 3, 0, 0) != LUA_OK)
		return fail(L, "script");
	lua_close(L);
	return 0;
}
