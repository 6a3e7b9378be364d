/* luaopen_freshbooks_core: version strings, curl_global_init (once, unless the host opted out), and the
 * pieces from the other files. */
#define _GNU_SOURCE /* dladdr, RTLD_NODELETE */
#include <dlfcn.h>
#include <stdarg.h>
#include <string.h>
#include <curl/curl.h>
#include "freshbooks.h"
#include "fb_internal.h"

int fb_curl_global_init(void); /* share.c */

/* Once libcurl is globally initialised it must never be unloaded (there is no matching cleanup: other
 * Lua states of the process may still use it). Lua 5.4 dlcloses C modules at lua_close, which would
 * unmap libcurl and OpenSSL under their global state, so this module pins itself (and with it its
 * libraries) for the life of the process. */
static void pin_module(void)
{
	Dl_info info;
	if (dladdr((void *)&luaopen_freshbooks_core, &info) && info.dli_fname != NULL)
		(void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE); /* never dlclosed */
}

/* Every error the core returns has this shape, {code =, message =} (the Lua layer makes it an errors
 * object); C functions that fail at run time return `nil, err` through fb_fail. */
void fb_push_error(lua_State *L, const char *code, const char *message, size_t len)
{
	lua_createtable(L, 0, 2);
	lua_pushstring(L, code);
	lua_setfield(L, -2, "code");
	lua_pushlstring(L, message, len);
	lua_setfield(L, -2, "message");
}

int fb_fail(lua_State *L, const char *code, const char *fmt, ...)
{
	va_list ap;
	const char *msg;
	lua_pushnil(L);
	va_start(ap, fmt);
	msg = lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	fb_push_error(L, code, msg, strlen(msg));
	lua_remove(L, -2); /* the formatted message */
	return 2;
}

/* A userdata class: `methods` as __index, `close` (idempotent) as __gc and __close, `tostring` as
 * __tostring (either may be NULL); the metatable is registered under `name` once. */
void fb_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction close,
		  lua_CFunction tostring)
{
	if (luaL_newmetatable(L, name)) {
		if (methods != NULL) {
			lua_newtable(L);
			luaL_setfuncs(L, methods, 0);
			lua_setfield(L, -2, "__index");
		}
		if (close != NULL) {
			lua_pushcfunction(L, close);
			lua_setfield(L, -2, "__gc");
			lua_pushcfunction(L, close);
			lua_setfield(L, -2, "__close");
		}
		if (tostring != NULL) {
			lua_pushcfunction(L, tostring);
			lua_setfield(L, -2, "__tostring");
		}
	}
	lua_pop(L, 1);
}

int luaopen_freshbooks_core(lua_State *L)
{
	int rc = fb_curl_global_init();
	if (rc != 0)
		return luaL_error(L, "freshbooks.core: curl_global_init failed: %s", curl_easy_strerror((CURLcode)rc));
	pin_module();
	lua_newtable(L);
	lua_pushliteral(L, FB_VERSION);
	lua_setfield(L, -2, "version");
	fb_open_secret(L);
	fb_open_codec(L);
	fb_open_crypto(L);
	fb_open_http(L);
	fb_open_lockfile(L);
	fb_open_clock(L);
	fb_open_interrupt(L);
	fb_open_decode(L);
	fb_open_guest(L); /* guest.c: guest scripts in a Lua state of their own */
	fb_open_fd(L);
	fb_open_sqlite(L); /* sqlite.c: the mirror's database */
	return 1;
}
