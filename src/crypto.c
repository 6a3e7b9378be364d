/* HMAC-SHA256, constant-time comparison and CSPRNG bytes from OpenSSL's libcrypto; hex for display. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include "fb_internal.h"

#define FB_RANDOM_MAX (1024 * 1024)

/* core.crypto.hmac_sha256(key, msg) -> 32 raw bytes; key and msg may be strings or secrets. */
static int l_hmac_sha256(lua_State *L)
{
	size_t klen, mlen;
	unsigned int outlen = 0;
	unsigned char out[EVP_MAX_MD_SIZE];
	const char *key = fb_checkbytes(L, 1, &klen, "freshbooks.core.crypto.hmac_sha256: key");
	const char *msg = fb_checkbytes(L, 2, &mlen, "freshbooks.core.crypto.hmac_sha256: message");
	if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &outlen) == NULL) {
		return fb_fail(L, "crypto", "HMAC-SHA256 failed");
	}
	lua_pushlstring(L, (const char *)out, outlen);
	OPENSSL_cleanse(out, sizeof out);
	return 1;
}

/* core.crypto.equals(a, b): constant time in the length of the inputs; different lengths are unequal. */
static int l_equals(lua_State *L)
{
	size_t alen, blen;
	const char *a = fb_checkbytes(L, 1, &alen, "freshbooks.core.crypto.equals: argument 1");
	const char *b = fb_checkbytes(L, 2, &blen, "freshbooks.core.crypto.equals: argument 2");
	lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
	return 1;
}

static int l_random_bytes(lua_State *L)
{
	lua_Number n = luaL_checknumber(L, 1);
	size_t len;
	unsigned char *p;
	if (!(n >= 0 && n <= FB_RANDOM_MAX) || n != (lua_Number)(size_t)n)
		return luaL_error(L, "freshbooks.core.crypto.random_bytes: n must be an integer in 0..%d", FB_RANDOM_MAX);
	len = (size_t)n;
	p = (unsigned char *)lua_newuserdata(L, len + 1); /* scratch space the GC owns */
	if (len > 0 && RAND_bytes(p, (int)len) != 1) {
		return fb_fail(L, "crypto", "RAND_bytes failed: no entropy");
	}
	lua_pushlstring(L, (const char *)p, len);
	return 1;
}

void fb_open_crypto(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"hmac_sha256", l_hmac_sha256},
		{"equals", l_equals},
		{"random_bytes", l_random_bytes},
		{NULL, NULL},
	};
	luaL_setfuncs(L, funcs, 0);
}
