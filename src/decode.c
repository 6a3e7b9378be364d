/* JSON decoding for FreshBooks' answers, straight into the values the library hands out:
 *   core.json.decode(s) -> value | nil, {code = "bad_json", message}
 * - object members that are null are left out (so `if inv.notes then` means what it says); nulls in
 *   arrays stay, as core.json.null (lua-cjson's cjson.null, the NULL light userdata), so indexes do not shift;
 * - numbers without a fraction or exponent are integers on Lua 5.3+, and so are whole floats up to 2^53
 *   (an id 7.0 must read "/invoices/7" in a URL);
 * - strict RFC 8259 syntax, at most 1000 levels deep; anything else is `nil, err`, never a raise.
 * Why not lua-cjson (which still encodes): under Lua 5.4 Debian's 2.1 decodes every number as a float,
 * so each body needed a second walk in Lua, and its decode alone cost half of a raw libcurl request in
 * instructions; this one writes each value once, where it belongs. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "fb_internal.h"

#define MAX_DEPTH 1000

/* Every step returns -1 on a syntax error (d->err says which); a Lua error (out of memory) unwinds
 * as usual, with nothing of ours to free. */
typedef struct {
	lua_State *L;
	const char *p, *end;
	const char *err;
} dec;

#define bad(d, what) return ((d)->err = (what), -1)
#define TRY(x) do { if ((x) < 0) return -1; } while (0)

static void skip_ws(dec *d)
{
	while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
		d->p++;
}

static int hex4(dec *d)
{
	int v = 0, i;
	if (d->end - d->p < 4)
		bad(d, "truncated \\u escape");
	for (i = 0; i < 4; i++) {
		char c = *d->p++;
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			bad(d, "invalid \\u escape");
	}
	return v;
}

static void add_utf8(luaL_Buffer *b, unsigned long cp)
{
	if (cp < 0x80) {
		luaL_addchar(b, (char)cp);
	} else if (cp < 0x800) {
		luaL_addchar(b, (char)(0xC0 | (cp >> 6)));
		luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
	} else if (cp < 0x10000) {
		luaL_addchar(b, (char)(0xE0 | (cp >> 12)));
		luaL_addchar(b, (char)(0x80 | ((cp >> 6) & 0x3F)));
		luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
	} else {
		luaL_addchar(b, (char)(0xF0 | (cp >> 18)));
		luaL_addchar(b, (char)(0x80 | ((cp >> 12) & 0x3F)));
		luaL_addchar(b, (char)(0x80 | ((cp >> 6) & 0x3F)));
		luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
	}
}

/* A string (d->p just after the opening quote) pushed onto the stack. */
static int string(dec *d)
{
	const char *s = d->p;
	luaL_Buffer b;
	/* Most strings have no escape: pushed straight from the text. */
	while (d->p < d->end && *d->p != '"' && *d->p != '\\') {
		if ((unsigned char)*d->p < 0x20)
			bad(d, "control character in a string");
		d->p++;
	}
	if (d->p >= d->end)
		bad(d, "unterminated string");
	if (*d->p == '"') {
		lua_pushlstring(d->L, s, (size_t)(d->p - s));
		d->p++;
		return 0;
	}
	luaL_buffinit(d->L, &b);
	luaL_addlstring(&b, s, (size_t)(d->p - s));
	while (d->p < d->end && *d->p != '"') {
		unsigned char c = (unsigned char)*d->p++;
		if (c < 0x20)
			bad(d, "control character in a string");
		if (c != '\\') {
			luaL_addchar(&b, (char)c);
			continue;
		}
		if (d->p >= d->end)
			bad(d, "unterminated string");
		switch (*d->p++) {
		case '"': luaL_addchar(&b, '"'); break;
		case '\\': luaL_addchar(&b, '\\'); break;
		case '/': luaL_addchar(&b, '/'); break;
		case 'b': luaL_addchar(&b, '\b'); break;
		case 'f': luaL_addchar(&b, '\f'); break;
		case 'n': luaL_addchar(&b, '\n'); break;
		case 'r': luaL_addchar(&b, '\r'); break;
		case 't': luaL_addchar(&b, '\t'); break;
		case 'u': {
			int h = hex4(d);
			unsigned long cp;
			TRY(h);
			cp = (unsigned long)h;
			/* a surrogate pair is one code point; a lone surrogate is U+FFFD (lua-cjson refuses the
			 * whole document, which would lose a page for one bad character; kept as is, it would be
			 * invalid UTF-8 in every CSV cell and terminal it reaches) */
			if (cp >= 0xD800 && cp <= 0xDBFF && d->end - d->p >= 6 && d->p[0] == '\\' && d->p[1] == 'u') {
				const char *save = d->p;
				int lo;
				d->p += 2;
				lo = hex4(d);
				TRY(lo);
				if (lo >= 0xDC00 && lo <= 0xDFFF)
					cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
				else
					d->p = save;
			}
			if (cp >= 0xD800 && cp <= 0xDFFF)
				cp = 0xFFFD;
			add_utf8(&b, cp);
			break;
		}
		default:
			bad(d, "invalid escape in a string");
		}
	}
	if (d->p >= d->end)
		bad(d, "unterminated string");
	d->p++;
	luaL_pushresult(&b);
	return 0;
}

static int number(dec *d)
{
	const char *s = d->p;
	int integral = 1, digits = 0;
	if (d->p < d->end && *d->p == '-')
		d->p++;
	if (d->p < d->end && *d->p == '0') {
		d->p++;
		digits = 1;
	} else {
		while (d->p < d->end && *d->p >= '0' && *d->p <= '9')
			d->p++, digits++;
	}
	if (digits == 0)
		bad(d, "invalid number");
	if (d->p < d->end && *d->p == '.') {
		integral = 0;
		d->p++;
		if (d->p >= d->end || !(*d->p >= '0' && *d->p <= '9'))
			bad(d, "invalid number");
		while (d->p < d->end && *d->p >= '0' && *d->p <= '9')
			d->p++;
	}
	if (d->p < d->end && (*d->p == 'e' || *d->p == 'E')) {
		integral = 0;
		d->p++;
		if (d->p < d->end && (*d->p == '+' || *d->p == '-'))
			d->p++;
		if (d->p >= d->end || !(*d->p >= '0' && *d->p <= '9'))
			bad(d, "invalid number");
		while (d->p < d->end && *d->p >= '0' && *d->p <= '9')
			d->p++;
	}
	if (integral && d->p - s <= 18) { /* fits an int64 without a doubt */
		long long v = 0;
		const char *q = *s == '-' ? s + 1 : s;
		for (; q < d->p; q++)
			v = v * 10 + (*q - '0');
#if LUA_VERSION_NUM >= 503
		lua_pushinteger(d->L, (lua_Integer)(*s == '-' ? -v : v));
#else
		lua_pushnumber(d->L, (lua_Number)(*s == '-' ? -v : v));
#endif
		return 0;
	}
	/* Fractions, exponents and long integers: Lua's own conversion (the locale's decimal point is
	 * handled there, never by a bare strtod). */
	lua_pushlstring(d->L, s, (size_t)(d->p - s));
	{
		lua_Number x = lua_tonumber(d->L, -1);
		lua_pop(d->L, 1);
#if LUA_VERSION_NUM >= 503
		if (x == floor(x) && x >= -9007199254740992.0 && x <= 9007199254740992.0) {
			lua_pushinteger(d->L, (lua_Integer)x);
			return 0;
		}
#endif
		lua_pushnumber(d->L, x);
	}
	return 0;
}

static int literal(dec *d, const char *word, size_t n)
{
	if ((size_t)(d->end - d->p) >= n && memcmp(d->p, word, n) == 0) {
		d->p += n;
		return 1;
	}
	return 0;
}

/* One value pushed: 1; an object member's null (in_object): 0, nothing pushed; -1 on an error. */
static int value(dec *d, int depth, int in_object);

/* Members and elements wait on the stack until the closing brace says how many there are, and the
 * table is made at its final size: inserting into a table that keeps growing rehashed it at every
 * power of two (a 20-member record was rebuilt four times). Past CHUNK of them the table is made with
 * room for those and the rest go in as they come (the stack stays small whatever the document). */
#define CHUNK 64

/* Moves the n pairs (or values, when keys is 0) above `base` into a new table left at base + 1: the
 * table goes under them and takes them from the top, the last first. */
static void gather(lua_State *L, int base, int n, int keys)
{
	int i;
	if (keys)
		lua_createtable(L, 0, n);
	else
		lua_createtable(L, n, 0);
	lua_insert(L, base + 1);
	for (i = n; i > 0; i--) {
		if (keys)
			lua_rawset(L, base + 1);
		else
			lua_rawseti(L, base + 1, i);
	}
}

static int object(dec *d, int depth)
{
	lua_State *L = d->L;
	int base = lua_gettop(L), n = 0, gathered = 0, r;
	skip_ws(d);
	if (d->p < d->end && *d->p == '}') {
		d->p++;
		lua_createtable(L, 0, 0);
		return 0;
	}
	for (;;) {
		luaL_checkstack(L, 4, "freshbooks.core.json.decode");
		skip_ws(d);
		if (d->p >= d->end || *d->p != '"')
			bad(d, "object key expected");
		d->p++;
		TRY(string(d));
		skip_ws(d);
		if (d->p >= d->end || *d->p != ':')
			bad(d, "':' expected");
		d->p++;
		r = value(d, depth, 1);
		TRY(r);
		if (!r) {
			lua_pop(L, 1); /* the key of a null member */
		} else if (gathered) {
			lua_rawset(L, base + 1);
		} else if (++n == CHUNK) {
			gather(L, base, n, 1);
			gathered = 1;
		}
		skip_ws(d);
		if (d->p < d->end && *d->p == ',') {
			d->p++;
			continue;
		}
		if (d->p < d->end && *d->p == '}') {
			d->p++;
			if (!gathered)
				gather(L, base, n, 1);
			return 0;
		}
		bad(d, "',' or '}' expected");
	}
}

static int array(dec *d, int depth)
{
	lua_State *L = d->L;
	int base = lua_gettop(L), n = 0, gathered = 0;
	skip_ws(d);
	if (d->p < d->end && *d->p == ']') {
		d->p++;
		lua_createtable(L, 0, 0);
		return 0;
	}
	for (;;) {
		luaL_checkstack(L, 4, "freshbooks.core.json.decode");
		TRY(value(d, depth, 0));
		if (gathered) {
			lua_rawseti(L, base + 1, ++n);
		} else if (++n == CHUNK) {
			gather(L, base, n, 0);
			gathered = 1;
		}
		skip_ws(d);
		if (d->p < d->end && *d->p == ',') {
			d->p++;
			continue;
		}
		if (d->p < d->end && *d->p == ']') {
			d->p++;
			if (!gathered)
				gather(L, base, n, 0);
			return 0;
		}
		bad(d, "',' or ']' expected");
	}
}

static int value(dec *d, int depth, int in_object)
{
	skip_ws(d);
	if (d->p >= d->end)
		bad(d, "unexpected end of input");
	switch (*d->p) {
	case '{':
	case '[':
		if (depth >= MAX_DEPTH)
			bad(d, "nested too deep");
		luaL_checkstack(d->L, 8, "freshbooks.core.json.decode");
		if (*d->p++ == '{')
			TRY(object(d, depth + 1));
		else
			TRY(array(d, depth + 1));
		return 1;
	case '"':
		d->p++;
		TRY(string(d));
		return 1;
	case 't':
		if (!literal(d, "true", 4))
			bad(d, "invalid literal");
		lua_pushboolean(d->L, 1);
		return 1;
	case 'f':
		if (!literal(d, "false", 5))
			bad(d, "invalid literal");
		lua_pushboolean(d->L, 0);
		return 1;
	case 'n':
		if (!literal(d, "null", 4))
			bad(d, "invalid literal");
		if (in_object)
			return 0;
		lua_pushlightuserdata(d->L, NULL);
		return 1;
	default:
		if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) {
			TRY(number(d));
			return 1;
		}
		bad(d, "unexpected character");
	}
}

static int l_json_decode(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	dec d;
	d.L = L;
	d.p = s;
	d.end = s + len;
	d.err = NULL;
	lua_settop(L, 1);
	if (value(&d, 0, 0) >= 0) {
		skip_ws(&d);
		if (d.p == d.end)
			return 1;
		d.err = "trailing characters";
	}
	lua_settop(L, 1);
	return fb_fail(L, "bad_json", "invalid JSON at byte %d: %s", (int)(d.p - s), d.err);
}

void fb_open_decode(lua_State *L)
{
	lua_pushcfunction(L, l_json_decode);
	lua_setfield(L, -2, "decode");
	lua_pushlightuserdata(L, NULL); /* the same value as lua-cjson's cjson.null */
	lua_setfield(L, -2, "null");
}
