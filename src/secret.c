/* Opaque secret userdata: the bytes live in C, Lua code sees only "freshbooks.secret(***)".
 * A secret can be passed to client:request as a header value or body part, to hmac_sha256 and equals,
 * and revealed with core.secret.reveal (hosts that sandbox user scripts do not expose freshbooks.core).
 * And the masker (core.secret.masker): secret values found in text, however the text spaces or groups them. */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "fb_internal.h"

#define FB_MASKER_MT "freshbooks.masker"

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


/* ---- the masker ----------------------------------------------------------------------------------
 * core.secret.masker(values) -> m; m:mask(s) -> s with every run of 16 or more of a value's letters and
 * digits, in order, replaced by "***": case and any other characters between them do not count, so a
 * value quoted whole, cut short, split in groups, spaced or upper-cased is found. A value with fewer
 * letters and digits is found whole (its letters and digits, in order); one with none, byte for byte.
 * Each maximal stretch of text the runs cover becomes one "***".
 * Nothing observable depends on what the values hold beyond what is replaced: no shorter piece of a
 * value is ever matched (a text that holds a guess is masked only when the guess is 16 of a token's
 * hex digits in a row: 2^64 / 49 tries a hit), the length and text of the answer follow from the
 * replaced stretches alone, and the time is one pass over the text per window width, a lookup per
 * position in a table keyed by a random hash of the values' windows, their bytes compared only where
 * the hash matched (a match). */

#define MASK_RUN 16 /* letters and digits of a value that count as the value */
#define MASK_WIDTHS (MASK_RUN + 1)

typedef struct {
	uint64_t hash;
	uint32_t value, at; /* the window: value's projection from `at`, `width` bytes long */
	int used;
} fb_slot;

typedef struct {
	size_t width;       /* window width in letters and digits */
	fb_slot *slots;     /* open addressing, a power of two, at most half full */
	size_t mask;
} fb_table;

typedef struct {
	size_t n;           /* values */
	char **proj;        /* each value's letters and digits, lower case (NULL: none) */
	size_t *projlen;
	char **raw;         /* values with no letter or digit, as they are (else NULL) */
	size_t *rawlen;
	fb_table tables[MASK_WIDTHS]; /* one per window width: run, and each shorter value's length */
	size_t ntables;
	uint64_t base;      /* the rolling hash's random odd base */
	int closed;
} fb_masker;

static int is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static void masker_free(fb_masker *m)
{
	size_t i;
	for (i = 0; i < m->n; i++) {
		if (m->proj != NULL && m->proj[i] != NULL) {
			OPENSSL_cleanse(m->proj[i], m->projlen[i]);
			free(m->proj[i]);
		}
		if (m->raw != NULL && m->raw[i] != NULL) {
			OPENSSL_cleanse(m->raw[i], m->rawlen[i]);
			free(m->raw[i]);
		}
	}
	for (i = 0; i < m->ntables; i++) {
		if (m->tables[i].slots != NULL)
			OPENSSL_cleanse(m->tables[i].slots, (m->tables[i].mask + 1) * sizeof(fb_slot));
		free(m->tables[i].slots);
	}
	free(m->proj);
	free(m->projlen);
	free(m->raw);
	free(m->rawlen);
	memset(m, 0, sizeof *m);
	m->closed = 1;
}

/* m:close(), __gc and __close: wipes the values, once. */
static int masker_close(lua_State *L)
{
	masker_free((fb_masker *)luaL_checkudata(L, 1, FB_MASKER_MT));
	return 0;
}

static uint64_t window_hash(const fb_masker *m, const char *p, size_t w)
{
	uint64_t h = 0;
	size_t i;
	for (i = 0; i < w; i++)
		h = h * m->base + (unsigned char)p[i];
	return h;
}

static size_t slot_of(uint64_t h, size_t mask)
{
	return (size_t)((h * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static fb_table *table_for(fb_masker *m, size_t width)
{
	size_t i;
	for (i = 0; i < m->ntables; i++)
		if (m->tables[i].width == width)
			return &m->tables[i];
	if (m->ntables == MASK_WIDTHS) /* cannot happen: widths are 1..MASK_RUN_MAX */
		return NULL;
	m->tables[m->ntables].width = width;
	return &m->tables[m->ntables++];
}

static void add_window(fb_masker *m, fb_table *tb, size_t i, size_t at)
{
	uint64_t h = window_hash(m, m->proj[i] + at, tb->width);
	size_t k = slot_of(h, tb->mask);
	while (tb->slots[k].used)
		k = (k + 1) & tb->mask;
	tb->slots[k].used = 1;
	tb->slots[k].hash = h;
	tb->slots[k].value = (uint32_t)i;
	tb->slots[k].at = (uint32_t)at;
}

/* Every window of every value into its width's table. */
static int masker_build(fb_masker *m)
{
	size_t i, t, windows[MASK_WIDTHS];
	memset(windows, 0, sizeof windows);
	for (i = 0; i < m->n; i++) {
		fb_table *tb;
		if (m->proj[i] == NULL)
			continue;
		if ((tb = table_for(m, m->projlen[i] < MASK_RUN ? m->projlen[i] : MASK_RUN)) == NULL)
			return -1;
		windows[tb - m->tables] += m->projlen[i] - tb->width + 1;
	}
	for (t = 0; t < m->ntables; t++) {
		size_t cap = 16;
		while (cap < 2 * windows[t])
			cap *= 2;
		m->tables[t].slots = (fb_slot *)calloc(cap, sizeof(fb_slot));
		if (m->tables[t].slots == NULL)
			return -1;
		m->tables[t].mask = cap - 1;
	}
	for (i = 0; i < m->n; i++) {
		fb_table *tb;
		size_t at;
		if (m->proj[i] == NULL)
			continue;
		tb = table_for(m, m->projlen[i] < MASK_RUN ? m->projlen[i] : MASK_RUN);
		for (at = 0; at + tb->width <= m->projlen[i]; at++)
			add_window(m, tb, i, at);
	}
	return 0;
}

/* core.secret.masker(values) -> masker. values: a list of strings (others are skipped). */
static int l_masker(lua_State *L)
{
	fb_masker *m;
	size_t i, n;
	luaL_checktype(L, 1, LUA_TTABLE);
	n = (size_t)lua_rawlen(L, 1);
	m = (fb_masker *)lua_newuserdata(L, sizeof *m);
	memset(m, 0, sizeof *m);
	m->closed = 1; /* until built: __gc frees what was made */
	luaL_getmetatable(L, FB_MASKER_MT);
	lua_setmetatable(L, -2);
	m->proj = (char **)calloc(n + 1, sizeof(char *));
	m->projlen = (size_t *)calloc(n + 1, sizeof(size_t));
	m->raw = (char **)calloc(n + 1, sizeof(char *));
	m->rawlen = (size_t *)calloc(n + 1, sizeof(size_t));
	if (m->proj == NULL || m->projlen == NULL || m->raw == NULL || m->rawlen == NULL)
		return luaL_error(L, "freshbooks.core.secret.masker: out of memory");
	m->n = n;
	for (i = 0; i < n; i++) {
		size_t len, j, k = 0;
		const char *v;
		char *p;
		lua_rawgeti(L, 1, (lua_Integer)i + 1);
		if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
			lua_pop(L, 1);
			continue;
		}
		v = lua_tolstring(L, -1, &len);
		p = (char *)malloc(len);
		if (p == NULL)
			return luaL_error(L, "freshbooks.core.secret.masker: out of memory");
		for (j = 0; j < len; j++)
			if (is_alnum((unsigned char)v[j]))
				p[k++] = (char)lower((unsigned char)v[j]);
		if (k > 0) {
			m->proj[i] = p;
			m->projlen[i] = k;
		} else {
			memcpy(p, v, len);
			m->raw[i] = p;
			m->rawlen[i] = len;
		}
		lua_pop(L, 1);
	}
	if (RAND_bytes((unsigned char *)&m->base, sizeof m->base) != 1)
		return luaL_error(L, "freshbooks.core.secret.masker: RAND_bytes failed: no entropy");
	m->base |= 1;
	if (masker_build(m) != 0)
		return luaL_error(L, "freshbooks.core.secret.masker: out of memory");
	m->closed = 0;
	return 1;
}

/* Marks the text's bytes from a to b (inclusive); the marks are made on the first hit only. */
static unsigned char *cover(lua_State *L, unsigned char *covered, size_t len, size_t a, size_t b)
{
	if (covered == NULL) {
		covered = (unsigned char *)lua_newuserdata(L, len);
		memset(covered, 0, len);
	}
	memset(covered + a, 1, b - a + 1);
	return covered;
}

/* m:mask(s) -> s, masked (the same string when nothing matched). One pass over s per window width:
 * its letters and digits go through a ring of the last `width` of them and a rolling hash. */
static int masker_mask(lua_State *L)
{
	fb_masker *m = (fb_masker *)luaL_checkudata(L, 1, FB_MASKER_MT);
	size_t len, i, t;
	const char *s = luaL_checklstring(L, 2, &len);
	unsigned char *covered = NULL;
	luaL_Buffer b;
	if (m->closed)
		return luaL_error(L, "freshbooks.masker: closed");
	for (t = 0; t < m->ntables; t++) {
		const fb_table *tb = &m->tables[t];
		size_t w = tb->width, seen = 0, j;
		size_t at[MASK_RUN];
		unsigned char ring[MASK_RUN];
		uint64_t h = 0, top = 1;
		for (j = 1; j < w; j++)
			top *= m->base;
		for (i = 0; i < len; i++) {
			unsigned char c = (unsigned char)s[i];
			size_t r = seen % w, k;
			if (!is_alnum(c))
				continue;
			c = lower(c);
			if (seen >= w)
				h -= top * ring[r]; /* the oldest leaves the window */
			h = h * m->base + c;
			ring[r] = c;
			at[r] = i;
			if (++seen < w)
				continue;
			r = seen % w; /* the window's first letter or digit */
			for (k = slot_of(h, tb->mask); tb->slots[k].used; k = (k + 1) & tb->mask) {
				const char *v = m->proj[tb->slots[k].value] + tb->slots[k].at;
				if (tb->slots[k].hash != h)
					continue;
				for (j = 0; j < w && ring[(r + j) % w] == (unsigned char)v[j]; j++)
					;
				if (j == w) {
					covered = cover(L, covered, len, at[r], i);
					break;
				}
			}
		}
	}
	for (i = 0; i < m->n; i++) { /* values with no letter or digit: byte for byte */
		const char *from = s, *end = s + len, *hit;
		if (m->raw[i] == NULL)
			continue;
		while ((hit = (const char *)memmem(from, (size_t)(end - from), m->raw[i], m->rawlen[i])) != NULL) {
			covered = cover(L, covered, len, (size_t)(hit - s), (size_t)(hit - s) + m->rawlen[i] - 1);
			from = hit + 1;
		}
	}
	if (covered == NULL) {
		lua_settop(L, 2);
		return 1;
	}
	luaL_buffinit(L, &b);
	for (i = 0; i < len; i++) {
		if (!covered[i])
			luaL_addchar(&b, s[i]);
		else if (i == 0 || !covered[i - 1])
			luaL_addstring(&b, "***");
	}
	luaL_pushresult(&b);
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
		{"masker", l_masker},
		{NULL, NULL},
	};
	static const luaL_Reg masker_methods[] = {
		{"mask", masker_mask},
		{"close", masker_close},
		{NULL, NULL},
	};
	luaL_newmetatable(L, FB_SECRET_MT);
	luaL_setfuncs(L, meta, 0);
	lua_pushliteral(L, "freshbooks.secret"); /* getmetatable(secret) does not expose the methods */
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
	fb_new_class(L, FB_MASKER_MT, masker_methods, masker_close, NULL);
	luaL_setfuncs(L, funcs, 0);
}
