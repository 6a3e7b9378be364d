/* Internal glue between the core's C files. Not installed, not for hosts. */
#ifndef FB_INTERNAL_H
#define FB_INTERNAL_H

#include <stddef.h>
#include "compat.h"

/* The version's one home is FRESHBOOKS_VERSION in freshbooks.h: the Makefile, the Lua module
 * (freshbooks._VERSION, from core.version) and the user agent all read it from there. */
#include "freshbooks.h"
#define FB_VERSION FRESHBOOKS_VERSION

#define FB_SECRET_MT "freshbooks.secret"
#define FB_CLIENT_MT "freshbooks.client"

/* Each file adds its functions to the table on the top of the stack: its concern's (core.c makes one
 * per concern). */
void fb_open_http(lua_State *L);      /* core.http   (client.c) */
void fb_open_codec(lua_State *L);     /* core.codec  (codec.c) */
void fb_open_crypto(lua_State *L);    /* core.crypto (crypto.c) */
void fb_open_secret(lua_State *L);    /* core.secret (secret.c) */
void fb_open_decode(lua_State *L);    /* core.json   (decode.c): FreshBooks' answers */
void fb_open_encode(lua_State *L);    /* core.json   (encode.c): canonical JSON (the mirror's records) */
void fb_open_lockfile(lua_State *L);  /* core.fs     (lockfile.c): the token file store */
void fb_open_clock(lua_State *L);     /* core.clock  (clock.c): retries, benchmarks */
void fb_open_interrupt(lua_State *L); /* core.signal (interrupt.c): the command */
void fb_open_fd(lua_State *L);        /* core.process (fd.c): descriptors, for the command */
void fb_open_sqlite(lua_State *L);    /* core.sqlite (sqlite.c): the mirror's database */
void fb_open_pg(lua_State *L);        /* core.pg     (pg.c): the mirror's PostgreSQL */

/* interrupt.c: the signal that arrived since core.signal.trap() (0: none), and whether it runs. */
int fb_interrupted(void);
int fb_trapping_interrupts(void);

/* common.c, shared by both modules (freshbooks.core, freshbooks.vm): seconds on a monotonic clock
 * (core.clock.now); {code =, message =}, the shape of every error a module returns, and `return fb_fail(L,
 * code, fmt, ...)`, which returns `nil, {code, message}` from a C function; a userdata class (methods
 * as __index, close as __gc/__close, __tostring); and pinning a module for the life of the process. */
double fb_now(void);
/* An optional duration argument: -1 for none/nil, else its seconds (raises unless a number >= 0). */
double fb_optseconds(lua_State *L, int idx);
void fb_push_error(lua_State *L, const char *code, const char *message, size_t len);
int fb_fail(lua_State *L, const char *code, const char *fmt, ...);
void fb_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction close,
		  lua_CFunction tostring);
void fb_pin_module(void *symbol);

/* The bytes of a string or of a secret at idx (NULL if it is neither). The pointer lives as long as
 * the value stays reachable from Lua. */
const char *fb_tobytes(lua_State *L, int idx, size_t *len);
/* Like fb_tobytes, but raises "<what>: string or secret expected". */
const char *fb_checkbytes(lua_State *L, int idx, size_t *len, const char *what);
/* 1 if the value at idx is a secret userdata. */
int fb_issecret(lua_State *L, int idx);
/* Pushes a new secret holding a copy of s. */
void fb_pushsecret(lua_State *L, const char *s, size_t len);

/* Percent-encodes s into the buffer (RFC 3986 unreserved kept). */
void fb_addencoded(luaL_Buffer *b, const char *s, size_t len);
/* Encoded length of s, and encoding into dst (dst must hold fb_encoded_len bytes). */
size_t fb_encoded_len(const char *s, size_t len);
void fb_encode_into(char *dst, const char *s, size_t len);

/* A growable byte buffer owned by C (never by a luaL_Buffer, so it may live across libcurl calls). */
typedef struct {
	char *p;
	size_t len, cap;
} fb_buf;
int fb_buf_add(fb_buf *b, const char *s, size_t n); /* 0 ok, -1 out of memory */
char *fb_buf_grow(fb_buf *b, size_t n); /* fb_buf_room's slow path: doubles the capacity until n more fit */
/* Where n more bytes go (the caller adds them to len) | NULL: out of memory. Inline: per value encoded. */
static inline char *fb_buf_room(fb_buf *b, size_t n)
{
	return n <= b->cap - b->len ? b->p + b->len : fb_buf_grow(b, n);
}
void fb_buf_free(fb_buf *b, int wipe);

/* plain.c: plain data copied between two Lua states as bytes (guest scripts). fb_plain_put_seq appends
 * n values from `first` to o->b, reading raw (no Lua code runs); -1 when one is not plain data, nests
 * deeper than FB_PLAIN_DEPTH or would make o->b longer than o->max (o->err says which). It pushes at
 * most 3 values per table level on L. fb_plain_get_seq pushes the values back (raises on memory, so
 * only in a protected call) and returns their count. */
#define FB_PLAIN_DEPTH 32
typedef struct {
	fb_buf *b;
	size_t max;
	const char *err;
} fb_plain_out;
int fb_plain_put_seq(lua_State *L, int first, int n, fb_plain_out *o);
int fb_plain_get_seq(lua_State *L, const char *p);

#endif
