/* The few shims Lua 5.1 / LuaJIT 2.1 needs to compile the 5.2+ style used in this core. Nothing else. */
#ifndef FB_COMPAT_H
#define FB_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

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

#if LUA_VERSION_NUM < 503
#define lua_isinteger(L, i) 0 /* every number is a double */
#endif

#endif
