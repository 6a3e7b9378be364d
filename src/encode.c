/* Canonical JSON: core.json.encode(value) -> text | nil, {code = "bad_value", message}
 * The same value is the same text in every Lua state: object members are written in byte order of
 * their keys (Lua 5.4 seeds each state's string hashes, so lua-cjson, which follows the table's own
 * order, writes one record differently from one process to the next). The mirror stores records this
 * way and compares them as text: an equal stamp with different content is a change, an equal text is
 * none. lua-cjson has no sorted mode, and sorting in Lua cost five times its encode; this costs about
 * what it does.
 * - a table with t[1] ~= nil is an array of its values 1..#t (the decoder's arrays: nulls inside are
 *   core.json.null, so there are no holes), any other table an object (an empty one is {});
 * - integers (and whole floats within 2^53, as the decoder reads them) are written whole, other
 *   numbers with 17 significant digits (they read back the same); NaN and infinities are refused;
 * - strings as they are, with " \ and control characters escaped (no other byte is changed);
 * - object keys must be strings; at most 1000 levels deep.
 * Nothing of the value's metatables is consulted (raw access): no Lua code runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fb_internal.h"

#define MAX_DEPTH 1000

typedef struct {
	lua_State *L;
	fb_buf b;
	const char *err;
	int oom;
} enc;

typedef struct {
	unsigned long long head; /* the first 8 bytes, big-endian: most comparisons end here */
	const char *p;
	size_t n;
	int at; /* its stack slot */
} key;

/* Room for n more bytes at the end of the buffer -> where they go (the caller advances e->b.len). */
static char *room(enc *e, size_t n)
{
	char *at = fb_buf_room(&e->b, n);
	if (at == NULL)
		e->oom = 1;
	return at;
}

#define ADD(e, s, n) do { char *at_ = room((e), (n)); if (at_ == NULL) return -1; \
	memcpy(at_, (s), (n)); (e)->b.len += (n); } while (0)
#define FAIL(e, what) return ((e)->err = (what), -1)

/* A string's input is escaped a slice at a time: room for the worst case (6 bytes a byte) of one
 * slice, never of the whole string (a 100 MB string would ask for 600 MB). */
#define SLICE 4096

static int add_string(enc *e, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0;
	ADD(e, "\"", 1);
	while (i < n) {
		size_t end = n - i > SLICE ? i + SLICE : n;
		char *o = room(e, 6 * (end - i) + 1), *start = o;
		if (o == NULL)
			return -1;
		for (; i < end; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c >= 0x20 && c != '"' && c != '\\') {
				*o++ = (char)c;
				continue;
			}
			*o++ = '\\';
			switch (c) {
			case '"': *o++ = '"'; break;
			case '\\': *o++ = '\\'; break;
			case '\b': *o++ = 'b'; break;
			case '\f': *o++ = 'f'; break;
			case '\n': *o++ = 'n'; break;
			case '\r': *o++ = 'r'; break;
			case '\t': *o++ = 't'; break;
			default:
				*o++ = 'u';
				*o++ = '0';
				*o++ = '0';
				*o++ = hex[c >> 4];
				*o++ = hex[c & 15];
			}
		}
		e->b.len += (size_t)(o - start);
	}
	ADD(e, "\"", 1);
	return 0;
}

/* A whole number's decimal digits (snprintf costs more than the rest of a small record). */
static int add_whole(enc *e, long long v)
{
	char tmp[24], *p = tmp + sizeof tmp;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	ADD(e, p, (size_t)(tmp + sizeof tmp - p));
	return 0;
}

static int add_number(enc *e, int idx)
{
	char tmp[64];
	int n;
#if LUA_VERSION_NUM >= 503
	if (lua_isinteger(e->L, idx))
		return add_whole(e, (long long)lua_tointeger(e->L, idx));
#endif
	{
		double x = (double)lua_tonumber(e->L, idx);
		if (x != x || x == HUGE_VAL || x == -HUGE_VAL)
			FAIL(e, "NaN and infinity have no JSON");
		if (x == floor(x) && x >= -9007199254740992.0 && x <= 9007199254740992.0)
			return add_whole(e, (long long)x);
		n = snprintf(tmp, sizeof tmp, "%.17g", x);
		/* the C locale's point, whatever the process's locale says */
		{
			char *dot = strchr(tmp, ',');
			if (dot != NULL)
				*dot = '.';
		}
		ADD(e, tmp, (size_t)n);
	}
	return 0;
}

static unsigned long long head_of(const char *p, size_t n)
{
	unsigned long long h = 0;
	size_t i;
	for (i = 0; i < 8; i++)
		h = (h << 8) | (i < n ? (unsigned char)p[i] : 0);
	return h;
}

static int cmp_key(const void *a, const void *b)
{
	const key *x = a, *y = b;
	size_t n;
	if (x->head != y->head)
		return x->head < y->head ? -1 : 1;
	n = x->n < y->n ? x->n : y->n;
	int c = memcmp(x->p, y->p, n);
	if (c != 0)
		return c;
	return x->n < y->n ? -1 : x->n > y->n ? 1 : 0;
}

static int value(enc *e, int idx, int depth);

/* An object: its keys pushed on the stack (n slots), sorted by their bytes through an index array
 * (on the C stack for the usual sizes), then each member written, its value looked up by the key
 * already on the stack (no string is made or hashed again). */
#define SMALL 64
static int object(enc *e, int idx, int depth)
{
	lua_State *L = e->L;
	key small[SMALL], *keys = small;
	int base = lua_gettop(L), n = 0, i;
	if (!lua_checkstack(L, 8))
		FAIL(e, "nested too deep");
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		int t = lua_type(L, -2);
		lua_pop(L, 1);
		if (t != LUA_TSTRING)
			FAIL(e, t == LUA_TNUMBER ? "an array with holes, or number keys" : "object keys must be strings");
		if (!lua_checkstack(L, 8))
			FAIL(e, "an object with too many members");
		lua_pushvalue(L, -1); /* kept: the copy below stays, the original goes on with lua_next */
		lua_insert(L, -2);
		n++;
	}
	ADD(e, "{", 1);
	if (n > SMALL)
		keys = (key *)lua_newuserdata(L, (size_t)n * sizeof *keys); /* freed by the collector */
	for (i = 0; i < n; i++) {
		keys[i].p = lua_tolstring(L, base + 1 + i, &keys[i].n);
		keys[i].at = base + 1 + i;
		keys[i].head = head_of(keys[i].p, keys[i].n);
	}
	if (n > 1)
		qsort(keys, (size_t)n, sizeof *keys, cmp_key);
	for (i = 0; i < n; i++) {
		int rc;
		if (i > 0)
			ADD(e, ",", 1);
		if (add_string(e, keys[i].p, keys[i].n) != 0)
			return -1;
		ADD(e, ":", 1);
		lua_pushvalue(L, keys[i].at);
		lua_rawget(L, idx);
		rc = value(e, lua_gettop(L), depth + 1);
		lua_pop(L, 1);
		if (rc != 0)
			return rc;
	}
	lua_settop(L, base);
	ADD(e, "}", 1);
	return 0;
}

/* An array: values 1..n (other keys, which the decoder never makes, are not written). */
static int array(enc *e, int idx, int depth, size_t n)
{
	size_t i;
	ADD(e, "[", 1);
	for (i = 1; i <= n; i++) {
		int rc;
		if (i > 1)
			ADD(e, ",", 1);
		lua_rawgeti(e->L, idx, (int)i);
		rc = value(e, lua_gettop(e->L), depth + 1);
		lua_pop(e->L, 1);
		if (rc != 0)
			return rc;
	}
	ADD(e, "]", 1);
	return 0;
}

static int value(enc *e, int idx, int depth)
{
	lua_State *L = e->L;
	switch (lua_type(L, idx)) {
	case LUA_TSTRING: {
		size_t n;
		const char *s = lua_tolstring(L, idx, &n);
		return add_string(e, s, n);
	}
	case LUA_TNUMBER:
		return add_number(e, idx);
	case LUA_TBOOLEAN:
		if (lua_toboolean(L, idx))
			ADD(e, "true", 4);
		else
			ADD(e, "false", 5);
		return 0;
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) != NULL)
			FAIL(e, "a light userdata other than core.json.null");
		ADD(e, "null", 4);
		return 0;
	case LUA_TTABLE: {
		size_t n;
		if (depth >= MAX_DEPTH)
			FAIL(e, "nested too deep");
		if (!lua_checkstack(L, 4))
			FAIL(e, "nested too deep");
		lua_rawgeti(L, idx, 1);
		n = lua_isnil(L, -1) ? 0 : (size_t)lua_rawlen(L, idx);
		lua_pop(L, 1);
		return n > 0 ? array(e, idx, depth, n) : object(e, idx, depth);
	}
	default:
		FAIL(e, "only tables, strings, numbers, booleans and core.json.null have JSON");
	}
}

/* In a protected call: a memory error anywhere unwinds to l_encode, which frees the buffer. */
static int encode_protected(lua_State *L)
{
	enc *e = (enc *)lua_touserdata(L, 1);
	lua_settop(L, 2);
	e->L = L;
	lua_pushboolean(L, value(e, 2, 0) == 0);
	return 1;
}

static int l_encode(lua_State *L)
{
	enc e;
	int status, ok;
	luaL_checkany(L, 1);
	lua_settop(L, 1);
	memset(&e, 0, sizeof e);
	if (fb_buf_grow(&e.b, 4096) == NULL) /* a record's text fits at once */
		return luaL_error(L, "freshbooks.core.json.encode: out of memory");
	lua_pushcfunction(L, encode_protected);
	lua_pushlightuserdata(L, &e);
	lua_pushvalue(L, 1);
	status = lua_pcall(L, 2, 1, 0);
	ok = status == 0 && lua_toboolean(L, -1);
	if (status != 0 || e.oom) {
		fb_buf_free(&e.b, 0);
		if (status != 0)
			return lua_error(L);
		return luaL_error(L, "freshbooks.core.json.encode: out of memory");
	}
	if (!ok) {
		fb_buf_free(&e.b, 0);
		return fb_fail(L, "bad_value", "%s", e.err);
	}
	lua_pushlstring(L, e.b.p != NULL ? e.b.p : "", e.b.len);
	fb_buf_free(&e.b, 0);
	return 1;
}

void fb_open_encode(lua_State *L)
{
	lua_pushcfunction(L, l_encode);
	lua_setfield(L, -2, "encode");
}
