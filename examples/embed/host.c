/* An embedding host: a C program that lets its users script FreshBooks without ever handing them a
 * secret. The host owns the credentials (from its environment) and the token store; the user's script
 * runs through freshbooks.guest, in a Lua state of its own with budgets, and reaches the API only
 * through plain data copied between the two states.
 *
 *   FB_API_URL=... FB_CLIENT_ID=... FB_CLIENT_SECRET=... FB_REDIRECT_URI=... FB_TOKENS=tokens.json \
 *   [FB_CAINFO=ca.pem] [FB_GUEST_WRITE=1] [FB_GUEST_BUSINESSES=id,id] [FB_GUEST_<BUDGET>=n ...] \
 *   embed-host user-script.lua
 *
 * FB_GUEST_MEMORY, _INSTRUCTIONS, _TIME, _PATTERNS, _CALLS, _OUTPUT override the budgets (see
 * freshbooks.guest). FB_GUEST_BUSINESSES lists the businesses the script may touch (a membership's
 * business_id, account_id or business_uuid, comma-separated); unset, every business the token reaches.
 * The script's print goes to stdout; its return values are printed after it.
 * Exit status: 0 when the script ran, 1 when it failed (its error, with its code, on stderr), 2 on bad
 * usage. */
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

/* Runs the user's script as a guest. Its error is turned into text here (tostring of the library's
 * error object), so what reaches C is always a string. */
static const char *run_guest =
	"local fb, path, write = ...\n"
	"local f = assert(io.open(path, 'rb'))\n"
	"local source = f:read('*a')\n"
	"f:close()\n"
	"local budget = {}\n"
	"for _, k in ipairs{ 'memory', 'instructions', 'time', 'patterns', 'calls', 'output' } do\n"
	"  budget[k] = tonumber(os.getenv('FB_GUEST_' .. k:upper()))\n"
	"end\n"
	"local businesses\n"
	"if os.getenv('FB_GUEST_BUSINESSES') then\n"
	"  businesses = {}\n"
	"  for id in os.getenv('FB_GUEST_BUSINESSES'):gmatch('[^,]+') do businesses[#businesses + 1] = id end\n"
	"end\n"
	"local function report(ok, ...)\n"
	"  if not ok then error(tostring((...)), 0) end\n"
	"  for i = 1, select('#', ...) do print('result: ' .. tostring((select(i, ...)))) end\n"
	"end\n"
	"report(require('freshbooks.guest').run(fb, source, '@' .. path, { write = write, budget = budget,\n"
	"  businesses = businesses }))\n";

static int fail(lua_State *L, const char *what)
{
	const char *msg = lua_tostring(L, -1);
	fprintf(stderr, "embed-host: %s: %s\n", what, msg != NULL ? msg : "(error object is not a string)");
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
