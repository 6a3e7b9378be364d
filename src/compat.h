/* The few shims Lua 5.1 / LuaJIT 2.1 needs to compile the 5.2+ style used in this core. Nothing else. */
#ifndef FB_COMPAT_H
#define FB_COMPAT_H

#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/* LuaJIT has the 5.1 API plus parts of 5.2 and its own extensions; its lualib.h names its jit library.
 * FB_LUA51 is plain Lua 5.1, which has neither. */
#if LUA_VERSION_NUM < 502 && defined(LUA_JITLIBNAME)
#define FB_LUAJIT 1
#elif LUA_VERSION_NUM < 502
#define FB_LUA51 1
#endif

#if LUA_VERSION_NUM < 502
/* LuaJIT 2.1 declares luaL_setfuncs/luaL_testudata, plain 5.1 does not: ours have private names so the
 * two can never clash. */
static inline void fb_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
	luaL_checkstack(L, nup + 1, "too many upvalues");
	for (; l->name; l++) {
		int i;
		for (i = 0; i < nup; i++)
			lua_pushvalue(L, -nup);
		lua_pushcclosure(L, l->func, nup);
		lua_setfield(L, -(nup + 2), l->name);
	}
	lua_pop(L, nup);
}
#define luaL_setfuncs fb_compat_setfuncs

static inline void *fb_compat_testudata(lua_State *L, int i, const char *tname)
{
	void *p = lua_touserdata(L, i);
	if (p == NULL || !lua_getmetatable(L, i))
		return NULL;
	luaL_getmetatable(L, tname);
	if (!lua_rawequal(L, -1, -2))
		p = NULL;
	lua_pop(L, 2);
	return p;
}
#define luaL_testudata fb_compat_testudata

#define lua_rawlen(L, i) lua_objlen(L, (i))
#ifndef lua_absindex
#define lua_absindex(L, i) ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)
#endif
#ifndef luaL_newlib
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs(L, (l), 0))
#endif
#endif

#ifdef FB_LUA51
#define LUA_OK 0

/* luaL_loadbufferx's mode check, as 5.2 makes it: a chunk is binary when it starts with ESC. */
static inline int fb_compat_loadbufferx(lua_State *L, const char *b, size_t n, const char *name, const char *mode)
{
	int binary = n > 0 && b[0] == LUA_SIGNATURE[0];
	if (mode != NULL && strchr(mode, binary ? 'b' : 't') == NULL) {
		lua_pushfstring(L, "attempt to load a %s chunk (mode is '%s')", binary ? "binary" : "text", mode);
		return LUA_ERRSYNTAX;
	}
	return luaL_loadbuffer(L, b, n, name);
}
#define luaL_loadbufferx fb_compat_loadbufferx
#endif

#if LUA_VERSION_NUM < 503
#define lua_isinteger(L, i) 0 /* every number is a double */
#endif

#endif
