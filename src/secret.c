/* Opaque secret userdata: the bytes live in C, Lua code sees only "freshbooks.secret(***)".
 * A secret can be passed to client:request as a header value or body part, to hmac_sha256 and equals,
 * and revealed with core.secret.reveal (hosts that sandbox user scripts do not expose freshbooks.core). */
#include <string.h>
#include <openssl/crypto.h>
#include "fb_internal.h"

typedef struct {
	size_t len;
	int wiped;
	char bytes[1];
} fb_secret;

int fb_issecret(lua_State *L, int idx)
{
	return luaL_testudata(L, idx, FB_SECRET_MT) != NULL;
}

void fb_pushsecret(lua_State *L, const char *s, size_t len)
{
	fb_secret *sec = (fb_secret *)lua_newuserdata(L, sizeof(fb_secret) + len);
	sec->len = len;
	sec->wiped = 0;
	memcpy(sec->bytes, s, len);
	sec->bytes[len] = '\0';
	luaL_getmetatable(L, FB_SECRET_MT);
	lua_setmetatable(L, -2);
}

static fb_secret *check_live(lua_State *L, int idx)
{
	fb_secret *sec = (fb_secret *)luaL_checkudata(L, idx, FB_SECRET_MT);
	if (sec->wiped)
		luaL_error(L, "freshbooks.secret: secret was wiped (closed)");
	return sec;
}

const char *fb_tobytes(lua_State *L, int idx, size_t *len)
{
	fb_secret *sec;
	if (lua_type(L, idx) == LUA_TSTRING)
		return lua_tolstring(L, idx, len);
	sec = (fb_secret *)luaL_testudata(L, idx, FB_SECRET_MT);
	if (sec == NULL)
		return NULL;
	if (sec->wiped)
		luaL_error(L, "freshbooks.secret: secret was wiped (closed)");
	*len = sec->len;
	return sec->bytes;
}

const char *fb_checkbytes(lua_State *L, int idx, size_t *len, const char *what)
{
	const char *s = fb_tobytes(L, idx, len);
	if (s == NULL)
		luaL_error(L, "%s: string or secret expected, got %s", what, luaL_typename(L, idx));
	return s;
}

/* core.secret.new(s): a secret from a string; a secret is returned as it is. */
static int l_secret(lua_State *L)
{
	size_t len;
	const char *s;
	if (fb_issecret(L, 1)) {
		check_live(L, 1);
		lua_settop(L, 1);
		return 1;
	}
	if (lua_type(L, 1) != LUA_TSTRING)
		return luaL_error(L, "freshbooks.core.secret.new: string expected, got %s", luaL_typename(L, 1));
	s = lua_tolstring(L, 1, &len);
	fb_pushsecret(L, s, len);
	return 1;
}

static int l_reveal(lua_State *L)
{
	fb_secret *sec = check_live(L, 1);
	lua_pushlstring(L, sec->bytes, sec->len);
	return 1;
}

static int l_is_secret(lua_State *L)
{
	lua_pushboolean(L, fb_issecret(L, 1));
	return 1;
}

/* __gc and __close: wipe the bytes, once. */
static int secret_wipe(lua_State *L)
{
	fb_secret *sec = (fb_secret *)luaL_checkudata(L, 1, FB_SECRET_MT);
	if (!sec->wiped) {
		OPENSSL_cleanse(sec->bytes, sec->len);
		sec->wiped = 1;
	}
	return 0;
}

static int secret_tostring(lua_State *L)
{
	luaL_checkudata(L, 1, FB_SECRET_MT);
	lua_pushliteral(L, "freshbooks.secret(***)");
	return 1;
}

/* Equal secrets compare equal (constant time), so a secret can be checked without revealing it. */
static int secret_eq(lua_State *L)
{
	fb_secret *a = (fb_secret *)luaL_testudata(L, 1, FB_SECRET_MT);
	fb_secret *b = (fb_secret *)luaL_testudata(L, 2, FB_SECRET_MT);
	lua_pushboolean(L, a && b && !a->wiped && !b->wiped && a->len == b->len &&
				   CRYPTO_memcmp(a->bytes, b->bytes, a->len) == 0);
	return 1;
}

static int secret_len(lua_State *L)
{
	/* The length is not hidden (a header's length is visible on the wire anyway). */
	fb_secret *sec = check_live(L, 1);
	lua_pushinteger(L, (lua_Integer)sec->len);
	return 1;
}

void fb_open_secret(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{"__gc", secret_wipe},
		{"__close", secret_wipe},
		{"__tostring", secret_tostring},
		{"__eq", secret_eq},
		{"__len", secret_len},
		{NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"new", l_secret},
		{"reveal", l_reveal},
		{"is", l_is_secret},
		{NULL, NULL},
	};
	luaL_newmetatable(L, FB_SECRET_MT);
	luaL_setfuncs(L, meta, 0);
	lua_pushliteral(L, "freshbooks.secret"); /* getmetatable(secret) does not expose the methods */
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
	luaL_setfuncs(L, funcs, 0);
}
