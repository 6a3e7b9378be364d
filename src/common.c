/* What every C module of the package shares (freshbooks.core, freshbooks.vm): the error shape, userdata
 * classes, pinning the module in memory, and the monotonic clock. */
#define _GNU_SOURCE /* dladdr, RTLD_NODELETE */
#include <dlfcn.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include "fb_internal.h"

/* A module whose process-wide state must outlive every Lua state (libcurl's global init, the guest
 * chunks' bytecode) is never unloaded: Lua 5.4 dlcloses C modules at lua_close. `symbol` is any
 * function of the module. */
void fb_pin_module(void *symbol)
{
	Dl_info info;
	if (dladdr(symbol, &info) && info.dli_fname != NULL)
		(void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE); /* never dlclosed */
}

/* Every error a module returns has this shape, {code =, message =} (the Lua layer makes it an errors
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

double fb_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double fb_optseconds(lua_State *L, int idx)
{
	lua_Number s;
	if (lua_isnoneornil(L, idx))
		return -1;
	s = luaL_checknumber(L, idx);
	if (!(s >= 0))
		luaL_argerror(L, idx, "seconds >= 0 expected");
	return (double)s;
}
