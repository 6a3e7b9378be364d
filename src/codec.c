/* Percent-encoding, query strings (nested search[key][]= forms), form encoding and decoding, base64.
 * Everything here is deterministic: table keys are sorted bytewise, arrays keep their order. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include "fb_internal.h"

#define FB_MAX_DEPTH 16

/* ---- percent-encoding -------------------------------------------------------------------------- */

static const char HEX[] = "0123456789ABCDEF";

static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.' || c == '_' || c == '~';
}

size_t fb_encoded_len(const char *s, size_t len)
{
	size_t i, n = 0;
	for (i = 0; i < len; i++)
		n += unreserved((unsigned char)s[i]) ? 1 : 3;
	return n;
}

void fb_encode_into(char *dst, const char *s, size_t len)
{
	size_t i;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (unreserved(c)) {
			*dst++ = (char)c;
		} else {
			*dst++ = '%';
			*dst++ = HEX[c >> 4];
			*dst++ = HEX[c & 15];
		}
	}
}

/* The same encoding, into a Lua buffer (in pieces, so a long value needs no large block). */
void fb_addencoded(luaL_Buffer *b, const char *s, size_t len)
{
	while (len > 0) {
		size_t n = len < LUAL_BUFFERSIZE / 3 ? len : LUAL_BUFFERSIZE / 3, out = fb_encoded_len(s, n);
		fb_encode_into(luaL_prepbuffer(b), s, n);
		luaL_addsize(b, out);
		s += n;
		len -= n;
	}
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Pushes the decoded s: "+" is a space, %XX a byte; a malformed % sequence is kept as it is. */
static void pushdecoded(lua_State *L, const char *s, size_t len)
{
	luaL_Buffer b;
	size_t i;
	luaL_buffinit(L, &b);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			luaL_addchar(&b, ' ');
		} else if (c == '%' && i + 2 < len && hexval((unsigned char)s[i + 1]) >= 0 &&
			   hexval((unsigned char)s[i + 2]) >= 0) {
			luaL_addchar(&b, (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2])));
			i += 2;
		} else {
			luaL_addchar(&b, (char)c);
		}
	}
	luaL_pushresult(&b);
}

static int l_urlencode(lua_State *L)
{
	size_t len;
	const char *s;
	luaL_Buffer b;
	if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TNUMBER)
		return luaL_error(L, "freshbooks.core.codec.urlencode: string expected, got %s", luaL_typename(L, 1));
	s = lua_tolstring(L, 1, &len);
	luaL_buffinit(L, &b);
	fb_addencoded(&b, s, len);
	luaL_pushresult(&b);
	return 1;
}

static int l_urldecode(lua_State *L)
{
	size_t len;
	const char *s;
	if (lua_type(L, 1) != LUA_TSTRING)
		return luaL_error(L, "freshbooks.core.codec.urldecode: string expected, got %s", luaL_typename(L, 1));
	s = lua_tolstring(L, 1, &len);
	pushdecoded(L, s, len);
	return 1;
}

/* ---- query strings ------------------------------------------------------------------------------ */

/* Formats the scalar at idx as text into buf (numbers: integers without ".0", the shortest %g that
 * reads back exactly otherwise). Raises on anything that is not a string, number or boolean. */
static const char *scalar_text(lua_State *L, int idx, char *buf, size_t bufsz, size_t *len, const char *fn)
{
	switch (lua_type(L, idx)) {
	case LUA_TSTRING:
		return lua_tolstring(L, idx, len);
	case LUA_TBOOLEAN:
		*len = lua_toboolean(L, idx) ? 4 : 5;
		return lua_toboolean(L, idx) ? "true" : "false";
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			snprintf(buf, bufsz, "%lld", (long long)lua_tointeger(L, idx));
		} else {
			double d = (double)lua_tonumber(L, idx);
			if (!isfinite(d))
				luaL_error(L, "%s: numbers must be finite", fn);
			if (d == floor(d) && fabs(d) < 1e15) {
				snprintf(buf, bufsz, "%.0f", d);
			} else {
				snprintf(buf, bufsz, "%.14g", d);
				if (strtod(buf, NULL) != d)
					snprintf(buf, bufsz, "%.17g", d);
			}
		}
		*len = strlen(buf);
		return buf;
	default:
		if (fb_issecret(L, idx))
			luaL_error(L, "%s: secrets are not allowed here", fn);
		luaL_error(L, "%s: string, number or boolean expected, got %s", fn, luaL_typename(L, idx));
		return NULL;
	}
}

/* Counts the keys of the table at idx; returns 1 if it is a non-empty array 1..n. */
static int is_array(lua_State *L, int idx, size_t *count)
{
	size_t n = 0, len = lua_rawlen(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		n++;
		lua_pop(L, 1);
	}
	*count = n;
	return len > 0 && n == len;
}

typedef struct {
	const char *s;
	size_t len;
} fb_key;

static int keycmp(const void *a, const void *b)
{
	const fb_key *x = (const fb_key *)a, *y = (const fb_key *)b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->s, y->s, n);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Pushes a table name -> value (names as strings) and a userdata array of fb_key, sorted bytewise, for
 * the map at idx. The fb_key pointers point into strings anchored in the pushed table. */
static fb_key *sorted_keys(lua_State *L, int idx, size_t count, const char *fn)
{
	fb_key *keys;
	size_t i = 0;
	int names;
	lua_createtable(L, 0, (int)count);
	names = lua_gettop(L);
	keys = (fb_key *)lua_newuserdata(L, (count ? count : 1) * sizeof(fb_key));
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		char buf[64];
		size_t len;
		const char *s;
		if (lua_type(L, -2) != LUA_TSTRING && lua_type(L, -2) != LUA_TNUMBER)
			luaL_error(L, "%s: keys must be strings or numbers, got %s", fn, luaL_typename(L, -2));
		s = scalar_text(L, -2, buf, sizeof buf, &len, fn);
		lua_pushlstring(L, s, len); /* name, value -> value name */
		lua_pushvalue(L, -1);
		lua_rawget(L, names);
		if (!lua_isnil(L, -1))
			luaL_error(L, "%s: key '%s' appears twice (as a string and as a number)", fn, lua_tostring(L, -2));
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		lua_pushvalue(L, -3);
		lua_rawset(L, names); /* names[name] = value */
		keys[i].s = lua_tolstring(L, -1, &keys[i].len); /* anchored as a key of names */
		i++;
		lua_pop(L, 2);
	}
	qsort(keys, count, sizeof(fb_key), keycmp);
	return keys;
}

/* Appends "name=value" strings for the value at idx to the array at out (n items so far).
 * name is the Lua string at name_idx, already encoded, or 0 at the top level. */
static void query_value(lua_State *L, int out, int *n, int name_idx, int idx, int depth)
{
	static const char *fn = "freshbooks.core.codec.query";
	size_t count, i;
	if (depth > FB_MAX_DEPTH)
		luaL_error(L, "%s: tables nested too deep", fn);
	if (lua_type(L, idx) != LUA_TTABLE) {
		char buf[64];
		size_t len;
		const char *s = scalar_text(L, idx, buf, sizeof buf, &len, fn);
		luaL_Buffer b;
		luaL_buffinit(L, &b);
		{
			size_t nlen;
			const char *name = lua_tolstring(L, name_idx, &nlen);
			luaL_addlstring(&b, name, nlen);
		}
		luaL_addchar(&b, '=');
		fb_addencoded(&b, s, len);
		luaL_pushresult(&b);
		lua_rawseti(L, out, ++*n);
		return;
	}
	luaL_checkstack(L, 8, fn);
	if (is_array(L, idx, &count)) {
		if (name_idx == 0)
			luaL_error(L, "%s: expected a table of names, got an array", fn);
		lua_pushvalue(L, name_idx);
		lua_pushliteral(L, "[]");
		lua_concat(L, 2);
		for (i = 1; i <= count; i++) {
			lua_rawgeti(L, idx, (int)i);
			if (lua_type(L, -1) == LUA_TTABLE)
				luaL_error(L, "%s: arrays of tables are not supported", fn);
			query_value(L, out, n, lua_gettop(L) - 1, lua_gettop(L), depth + 1);
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	} else if (count > 0) {
		int top = lua_gettop(L);
		fb_key *keys = sorted_keys(L, idx, count, fn);
		int names = top + 1;
		for (i = 0; i < count; i++) {
			luaL_Buffer b;
			luaL_buffinit(L, &b);
			if (name_idx) {
				size_t nlen;
				const char *name = lua_tolstring(L, name_idx, &nlen);
				luaL_addlstring(&b, name, nlen);
				luaL_addchar(&b, '[');
				fb_addencoded(&b, keys[i].s, keys[i].len);
				luaL_addchar(&b, ']');
			} else {
				fb_addencoded(&b, keys[i].s, keys[i].len);
			}
			luaL_pushresult(&b);
			lua_pushlstring(L, keys[i].s, keys[i].len);
			lua_rawget(L, names);
			query_value(L, out, n, lua_gettop(L) - 1, lua_gettop(L), depth + 1);
			lua_pop(L, 2);
		}
		lua_settop(L, top);
	}
}

/* Pushes the strings of the array at out joined by sep ('\0': no separator). */
static void push_joined(lua_State *L, int out, int n, char sep)
{
	luaL_Buffer b;
	int i;
	luaL_buffinit(L, &b);
	for (i = 1; i <= n; i++) {
		if (i > 1 && sep != '\0')
			luaL_addchar(&b, sep);
		lua_rawgeti(L, out, i);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
}

static int l_query(lua_State *L)
{
	int n = 0;
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	lua_newtable(L);
	query_value(L, 2, &n, 0, 1, 0);
	push_joined(L, 2, n, '&');
	return 1;
}

/* ---- form encoding -------------------------------------------------------------------------------- */

/* Appends "name=" (with a leading "&" after the first pair) and the encoded value: a string, or for a
 * secret value a new secret holding the encoded bytes, so secrets stay opaque all the way to libcurl. */
static void form_pair(lua_State *L, int out, int *n, int name_idx, int val_idx)
{
	static const char *fn = "freshbooks.core.codec.form";
	char nbuf[64], vbuf[64];
	size_t nlen, vlen;
	const char *name;
	luaL_Buffer b;
	if (lua_type(L, name_idx) != LUA_TSTRING && lua_type(L, name_idx) != LUA_TNUMBER)
		luaL_error(L, "%s: names must be strings or numbers, got %s", fn, luaL_typename(L, name_idx));
	name = scalar_text(L, name_idx, nbuf, sizeof nbuf, &nlen, fn);
	luaL_buffinit(L, &b);
	if (*n > 0)
		luaL_addchar(&b, '&');
	fb_addencoded(&b, name, nlen);
	luaL_addchar(&b, '=');
	if (fb_issecret(L, val_idx)) {
		const char *s = fb_tobytes(L, val_idx, &vlen);
		size_t elen = fb_encoded_len(s, vlen);
		char *tmp;
		luaL_pushresult(&b);
		lua_rawseti(L, out, ++*n);
		tmp = (char *)lua_newuserdata(L, elen + 1);
		fb_encode_into(tmp, s, vlen);
		fb_pushsecret(L, tmp, elen);
		OPENSSL_cleanse(tmp, elen);
		lua_rawseti(L, out, ++*n);
		lua_pop(L, 1);
		return;
	}
	{
		const char *v = scalar_text(L, val_idx, vbuf, sizeof vbuf, &vlen, fn);
		fb_addencoded(&b, v, vlen);
	}
	luaL_pushresult(&b);
	lua_rawseti(L, out, ++*n);
}

/* core.codec.form(t): t is a table name -> value (sent sorted by name) or an array of {name, value} pairs
 * (sent in order). Returns a string; if a value is a secret, returns an array of body parts (strings and
 * secrets) for client:request{body = ...} instead. */
static int l_form(lua_State *L)
{
	static const char *fn = "freshbooks.core.codec.form";
	int n = 0, out, i, has_secret = 0;
	size_t count;
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	lua_newtable(L);
	out = 2;
	if (is_array(L, 1, &count)) {
		for (i = 1; i <= (int)count; i++) {
			lua_rawgeti(L, 1, i);
			if (lua_type(L, -1) != LUA_TTABLE)
				return luaL_error(L, "%s: pair %d: {name, value} expected, got %s", fn, i,
						  luaL_typename(L, -1));
			lua_rawgeti(L, -1, 1);
			lua_rawgeti(L, -2, 2);
			form_pair(L, out, &n, lua_gettop(L) - 1, lua_gettop(L));
			lua_pop(L, 3);
		}
	} else if (count > 0) {
		fb_key *keys = sorted_keys(L, 1, count, fn);
		size_t k;
		for (k = 0; k < count; k++) {
			lua_pushlstring(L, keys[k].s, keys[k].len);
			lua_pushvalue(L, -1);
			lua_rawget(L, 3);
			form_pair(L, out, &n, lua_gettop(L) - 1, lua_gettop(L));
			lua_pop(L, 2);
		}
		lua_settop(L, 2);
	}
	for (i = 1; i <= n && !has_secret; i++) {
		lua_rawgeti(L, out, i);
		has_secret = fb_issecret(L, -1);
		lua_pop(L, 1);
	}
	if (!has_secret) {
		push_joined(L, out, n, 0);
		return 1;
	}
	/* Merge neighbouring strings: {"a=1&b=", secret, "&c=3"}. */
	{
		int parts, m = 0;
		lua_newtable(L);
		parts = lua_gettop(L);
		for (i = 1; i <= n; i++) {
			lua_rawgeti(L, out, i);
			if (m > 0 && lua_type(L, -1) == LUA_TSTRING) {
				lua_rawgeti(L, parts, m);
				if (lua_type(L, -1) == LUA_TSTRING) {
					lua_insert(L, -2);
					lua_concat(L, 2);
					lua_rawseti(L, parts, m);
					continue;
				}
				lua_pop(L, 1);
			}
			lua_rawseti(L, parts, ++m);
		}
	}
	return 1;
}

static int l_form_decode(lua_State *L)
{
	size_t len;
	const char *s, *end, *p;
	int n = 0;
	if (lua_type(L, 1) != LUA_TSTRING)
		return luaL_error(L, "freshbooks.core.codec.form_decode: string expected, got %s", luaL_typename(L, 1));
	s = lua_tolstring(L, 1, &len);
	end = s + len;
	lua_newtable(L);
	for (p = s; p < end;) {
		const char *amp = (const char *)memchr(p, '&', (size_t)(end - p));
		const char *seg_end = amp ? amp : end;
		const char *eq = (const char *)memchr(p, '=', (size_t)(seg_end - p));
		if (seg_end > p) {
			lua_createtable(L, 2, 0);
			pushdecoded(L, p, (size_t)((eq ? eq : seg_end) - p));
			lua_rawseti(L, -2, 1);
			if (eq)
				pushdecoded(L, eq + 1, (size_t)(seg_end - eq - 1));
			else
				lua_pushliteral(L, "");
			lua_rawseti(L, -2, 2);
			lua_rawseti(L, -2, ++n);
		}
		p = seg_end + 1;
	}
	return 1;
}

/* ---- base64 (libcrypto's encoder; strict validation before its decoder) ------------------------- */

static int l_base64(lua_State *L)
{
	size_t len;
	const char *s;
	unsigned char *out;
	int n;
	if (lua_type(L, 1) != LUA_TSTRING)
		return luaL_error(L, "freshbooks.core.codec.base64: string expected, got %s", luaL_typename(L, 1));
	s = lua_tolstring(L, 1, &len);
	if (len > (size_t)INT_MAX / 4 * 3 - 3)
		return luaL_error(L, "freshbooks.core.codec.base64: input too large");
	out = (unsigned char *)lua_newuserdata(L, (len + 2) / 3 * 4 + 1);
	n = EVP_EncodeBlock(out, (const unsigned char *)s, (int)len);
	lua_pushlstring(L, (const char *)out, (size_t)n);
	return 1;
}

static int b64char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* core.codec.unbase64(s) -> bytes, or nil, message on anything that is not canonical padded base64. */
static int l_unbase64(lua_State *L)
{
	size_t len, i, pad = 0;
	const char *s;
	unsigned char *out;
	int n;
	if (lua_type(L, 1) != LUA_TSTRING)
		return luaL_error(L, "freshbooks.core.codec.unbase64: string expected, got %s", luaL_typename(L, 1));
	s = lua_tolstring(L, 1, &len);
	if (len % 4 != 0 || len > (size_t)INT_MAX)
		goto bad;
	if (len > 0 && s[len - 1] == '=')
		pad = (s[len - 2] == '=') ? 2 : 1;
	for (i = 0; i < len - pad; i++)
		if (!b64char((unsigned char)s[i]))
			goto bad;
	if (len == 0) {
		lua_pushliteral(L, "");
		return 1;
	}
	out = (unsigned char *)lua_newuserdata(L, len / 4 * 3 + 1);
	n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n < pad)
		goto bad;
	lua_pushlstring(L, (const char *)out, (size_t)n - pad);
	return 1;
bad:
	return fb_fail(L, "bad_input", "invalid base64");
}

static int l_hex(lua_State *L)
{
	static const char digits[] = "0123456789abcdef";
	size_t len, i;
	const char *s;
	luaL_Buffer b;
	if (lua_type(L, 1) != LUA_TSTRING) /* no secrets: hex would reveal them */
		return luaL_error(L, "freshbooks.core.codec.hex: string expected, got %s", luaL_typename(L, 1));
	s = lua_tolstring(L, 1, &len);
	luaL_buffinit(L, &b);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		luaL_addchar(&b, digits[c >> 4]);
		luaL_addchar(&b, digits[c & 15]);
	}
	luaL_pushresult(&b);
	return 1;
}

void fb_open_codec(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"urlencode", l_urlencode},
		{"urldecode", l_urldecode},
		{"query", l_query},
		{"form", l_form},
		{"form_decode", l_form_decode},
		{"base64", l_base64},
		{"unbase64", l_unbase64},
		{"hex", l_hex},
		{NULL, NULL},
	};
	luaL_setfuncs(L, funcs, 0);
}
