/* fb_buf: a growable byte buffer owned by C, never by a luaL_Buffer, so it may live across libcurl
 * calls (request bodies, responses) and be wiped when it held a secret. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "fb_internal.h"

char *fb_buf_grow(fb_buf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : 256;
	char *p;
	while (cap - b->len < n) {
		if (cap > SIZE_MAX / 2)
			return NULL;
		cap *= 2;
	}
	p = (char *)realloc(b->p, cap);
	if (p == NULL)
		return NULL;
	b->p = p;
	b->cap = cap;
	return b->p + b->len;
}

int fb_buf_add(fb_buf *b, const char *s, size_t n)
{
	char *at = fb_buf_room(b, n);
	if (at == NULL)
		return -1;
	if (n > 0)
		memcpy(at, s, n);
	b->len += n;
	return 0;
}

void fb_buf_free(fb_buf *b, int wipe)
{
	if (b->p != NULL && wipe)
		OPENSSL_cleanse(b->p, b->cap);
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

