/* Plain data between two Lua states (guest.c): nil, booleans, numbers, strings, the NULL light userdata
 * (cjson.null) and tables of those, written as bytes by one state and rebuilt by the other. Nothing else
 * can cross: no function, userdata, thread or metatable, so nothing of one state is reachable from the
 * other. Reading runs no Lua code (raw access only: no __index, __pairs, __len, __tostring); depth and
 * total size are bounded, so a cycle, a deep table or a table referenced a million times ends in an
 * error, not in a long C loop where no budget applies.
 *
 * Format: a tag byte per value: 'n' nil, 't' true, 'f' false, 'z' NULL light userdata, 'i' lua_Integer,
 * 'd' lua_Number, 's' size_t length + bytes, '{' key value ... '}'. A sequence is a uint32 count and that
 * many values. */
#include <stdint.h>
#include <string.h>
#include "fb_internal.h"

static int put(fb_plain_out *o, const void *p, size_t n)
{
	if (n > o->max - o->b->len) {
		o->err = "too large";
		return -1;
	}
	if (fb_buf_add(o->b, (const char *)p, n) != 0) {
		o->err = "out of memory";
		return -1;
	}
	return 0;
}

static int put_tag(fb_plain_out *o, char tag)
{
	return put(o, &tag, 1);
}

static int put_value(lua_State *L, int idx, fb_plain_out *o, int depth)
{
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return put_tag(o, 'n');
	case LUA_TBOOLEAN:
		return put_tag(o, lua_toboolean(L, idx) ? 't' : 'f');
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			lua_Integer i = lua_tointeger(L, idx);
			return put_tag(o, 'i') || put(o, &i, sizeof i);
		} else {
			lua_Number d = lua_tonumber(L, idx);
			return put_tag(o, 'd') || put(o, &d, sizeof d);
		}
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len); /* a string already: no conversion, no allocation */
		return put_tag(o, 's') || put(o, &len, sizeof len) || put(o, s, len);
	}
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) == NULL)
			return put_tag(o, 'z');
		break;
	case LUA_TTABLE:
		if (depth >= FB_PLAIN_DEPTH) {
			o->err = "tables nested too deep (or a cycle)";
			return -1;
		}
		if (!lua_checkstack(L, 3)) {
			o->err = "out of memory";
			return -1;
		}
		if (put_tag(o, '{'))
			return -1;
		lua_pushnil(L);
		while (lua_next(L, idx)) {
			int top = lua_gettop(L), kt = lua_type(L, top - 1);
			if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
				o->err = "table keys must be strings, numbers or booleans";
				lua_pop(L, 2);
				return -1;
			}
			if (put_value(L, top - 1, o, depth + 1) || put_value(L, top, o, depth + 1)) {
				lua_pop(L, 2);
				return -1;
			}
			lua_pop(L, 1);
		}
		return put_tag(o, '}');
	default:
		break;
	}
	o->err = "only plain data can cross (nil, booleans, numbers, strings and tables of those)";
	return -1;
}

int fb_plain_put_seq(lua_State *L, int first, int n, fb_plain_out *o)
{
	uint32_t count = (uint32_t)n;
	int i;
	o->err = NULL;
	if (put(o, &count, sizeof count))
		return -1;
	for (i = 0; i < n; i++)
		if (put_value(L, first + i, o, 0))
			return -1;
	return 0;
}

/* Rebuilding trusts the bytes (this file wrote them, into memory no Lua code can reach). */
static void get_value(lua_State *L, const char **p)
{
	char tag = *(*p)++;
	switch (tag) {
	case 'n':
		lua_pushnil(L);
		break;
	case 't':
	case 'f':
		lua_pushboolean(L, tag == 't');
		break;
	case 'z':
		lua_pushlightuserdata(L, NULL);
		break;
	case 'i': {
		lua_Integer i;
		memcpy(&i, *p, sizeof i);
		*p += sizeof i;
		lua_pushinteger(L, i);
		break;
	}
	case 'd': {
		lua_Number d;
		memcpy(&d, *p, sizeof d);
		*p += sizeof d;
		lua_pushnumber(L, d);
		break;
	}
	case 's': {
		size_t len;
		memcpy(&len, *p, sizeof len);
		*p += sizeof len;
		lua_pushlstring(L, *p, len);
		*p += len;
		break;
	}
	default: /* '{' */
		luaL_checkstack(L, 3, "freshbooks: plain data");
		lua_newtable(L);
		while (**p != '}') {
			get_value(L, p);
			get_value(L, p);
			lua_rawset(L, -3);
		}
		(*p)++;
		break;
	}
}

int fb_plain_get_seq(lua_State *L, const char *p)
{
	uint32_t count, i;
	memcpy(&count, p, sizeof count);
	p += sizeof count;
	luaL_checkstack(L, (int)count + 1, "freshbooks: plain data");
	for (i = 0; i < count; i++)
		get_value(L, &p);
	return (int)count;
}
