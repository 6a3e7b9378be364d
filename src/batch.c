/* Many transfers over one CURLM, at most `concurrency` at once, through a small engine both methods
 * share:
 *   client:batch(requests, {concurrency = n}) -> results in input order (all collected, and checked,
 *     before the first byte goes out);
 *   client:stream{concurrency = n} -> a stream: stream:add(request) -> id, stream:next() -> id, status,
 *     headers, body | id, nil, err | nil (nothing in flight), stream:close(). Always n in flight while
 *     there is work, results as they complete: a paging walk keeps a sliding window, not a batch that
 *     waits for its slowest page.
 * The engine keeps its easy handles and hands each finished one to the next transfer, so the kept-alive
 * connections (or the one multiplexed HTTP/2 connection) serve the whole walk. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http.h"

#define FB_STREAM_MT "freshbooks.stream"

typedef struct {
	CURLM *m;
	const fb_client *c;
	CURLSH *share; /* the client's, held while these handles use it (the client may close first) */
	int own_share;
	size_t limit, active, nidle;
	CURL *idle[FB_MAX_CONCURRENCY];
	CURLMcode mc; /* a multi failure ends everything in flight */
} fb_engine;

static int engine_init(fb_engine *e, const fb_client *c, size_t limit)
{
	memset(e, 0, sizeof *e);
	e->c = c;
	e->limit = limit;
	e->m = curl_multi_init();
	if (e->m == NULL)
		return -1;
	e->share = c->share;
	e->own_share = c->own_share;
	fb_share_retain(e->share, e->own_share);
	/* up to `limit` connections kept, HTTP/2 multiplexed on one when the server speaks it */
	curl_multi_setopt(e->m, CURLMOPT_MAXCONNECTS, (long)limit);
	curl_multi_setopt(e->m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
	return 0;
}

/* Starts x on an idle handle (or a new one). Never raises: a failure is x->rc. */
static void engine_start(fb_engine *e, fb_xfer *x)
{
	CURL *h;
	if (e->c->closed) { /* its options are gone: nothing more starts */
		x->rc = CURLE_FAILED_INIT;
		snprintf(x->errbuf, sizeof x->errbuf, "the client is closed");
		return;
	}
	h = e->nidle > 0 ? e->idle[--e->nidle] : NULL;
	x->rc = CURLE_OK;
	if (h == NULL) {
		h = curl_easy_init();
		x->rc = h ? fb_setup_client(h, e->c) : CURLE_OUT_OF_MEMORY;
	}
	if (x->rc == CURLE_OK)
		x->rc = fb_setup_request(h, e->c, x);
	/* Over TLS the server may offer HTTP/2: wait for the connection being made and multiplex on it,
	 * instead of opening one per transfer. (Plain HTTP is HTTP/1.1: no reason to wait.) */
	if (x->rc == CURLE_OK)
		x->rc = curl_easy_setopt(h, CURLOPT_PIPEWAIT, x->https ? 1L : 0L);
	if (x->rc == CURLE_OK && curl_multi_add_handle(e->m, h) != CURLM_OK)
		x->rc = CURLE_FAILED_INIT;
	if (x->rc != CURLE_OK) {
		if (h != NULL)
			curl_easy_cleanup(h);
		return;
	}
	x->easy = h;
	e->active++;
}

/* The handle of a finished transfer goes back to the idle ones (its connection with it). */
static void engine_release(fb_engine *e, fb_xfer *x)
{
	curl_multi_remove_handle(e->m, x->easy);
	fb_forget_request(x->easy);
	if (e->nidle < FB_MAX_CONCURRENCY)
		e->idle[e->nidle++] = x->easy;
	else
		curl_easy_cleanup(x->easy);
	x->easy = NULL;
	e->active--;
}

/* Drives the transfers until one finishes: -> it, or NULL when none is in flight (or the multi
 * failed: e->mc). Never raises. */
static fb_xfer *engine_wait(fb_engine *e)
{
	while (e->active > 0 && e->mc == CURLM_OK) {
		int running = 0, left = 0;
		CURLMsg *msg;
		e->mc = curl_multi_perform(e->m, &running);
		while (e->mc == CURLM_OK && (msg = curl_multi_info_read(e->m, &left)) != NULL) {
			char *priv = NULL;
			fb_xfer *x;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
			x = (fb_xfer *)priv;
			x->rc = msg->data.result;
			curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
			engine_release(e, x);
			return x;
		}
		if (e->mc == CURLM_OK && running > 0)
			e->mc = curl_multi_poll(e->m, NULL, 0, 1000, NULL);
	}
	return NULL;
}

/* A transfer the multi failure took (or that never started): its error. */
static void abandon(fb_engine *e, fb_xfer *x)
{
	if (x->easy != NULL) {
		curl_multi_remove_handle(e->m, x->easy);
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
		e->active--;
	}
	x->rc = CURLE_ABORTED_BY_CALLBACK;
	snprintf(x->errbuf, sizeof x->errbuf, "aborted: %s", curl_multi_strerror(e->mc));
}

static void engine_free(fb_engine *e)
{
	while (e->nidle > 0)
		curl_easy_cleanup(e->idle[--e->nidle]);
	if (e->m != NULL) {
		curl_multi_cleanup(e->m);
		fb_share_release(e->share, e->own_share); /* after every handle using it is gone */
	}
	e->m = NULL;
	e->share = NULL;
}


static size_t concurrency(lua_State *L, int idx, const char *fn)
{
	size_t limit = FB_DEFAULT_CONCURRENCY;
	if (!lua_isnoneornil(L, idx)) {
		luaL_checktype(L, idx, LUA_TTABLE);
		lua_pushliteral(L, "concurrency");
		lua_rawget(L, idx); /* raw: no metamethod may run (it could close the client) */
		if (!lua_isnil(L, -1)) {
			lua_Number v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
			if (!(v >= 1 && v <= FB_MAX_CONCURRENCY) || v != floor(v))
				luaL_error(L, "%s: concurrency must be an integer in 1..%d", fn, FB_MAX_CONCURRENCY);
			limit = (size_t)v;
		}
		lua_pop(L, 1);
	}
	return limit;
}

/* ---- client:batch --------------------------------------------------------------------------------- */

int fb_client_batch(lua_State *L)
{
	static const char *fn = "freshbooks.client:batch";
	fb_client *c = fb_check_client(L, fn);
	fb_xfers *xs;
	fb_engine e;
	size_t n, i, next = 0, limit;
	luaL_checktype(L, 2, LUA_TTABLE);
	limit = concurrency(L, 3, fn);
	lua_settop(L, 2);
	n = lua_rawlen(L, 2);
	xs = fb_new_xfers(L, n);
	for (i = 0; i < n; i++) {
		char who[80];
		snprintf(who, sizeof who, "%s: request %d", fn, (int)(i + 1));
		lua_rawgeti(L, 2, (int)(i + 1));
		fb_collect_request(L, lua_gettop(L), &xs->x[i], who, c->user_agent_line);
		lua_pop(L, 1);
	}

	/* From here to the results nothing raises. */
	if (engine_init(&e, c, limit) != 0) {
		for (i = 0; i < n; i++)
			xs->x[i].rc = CURLE_OUT_OF_MEMORY;
	} else {
		for (;;) {
			while (e.active < limit && next < n && e.mc == CURLM_OK)
				engine_start(&e, &xs->x[next++]);
			if (engine_wait(&e) == NULL && (next >= n || e.mc != CURLM_OK))
				break;
		}
		for (i = 0; i < n; i++) /* only after a multi failure */
			if (xs->x[i].easy != NULL || (i >= next && e.mc != CURLM_OK))
				abandon(&e, &xs->x[i]);
		engine_free(&e);
	}

	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		fb_xfer *x = &xs->x[i];
		if (fb_xfer_failed(x)) {
			lua_createtable(L, 0, 1);
			fb_push_xfer_error(L, x);
			lua_setfield(L, -2, "err");
		} else {
			lua_createtable(L, 0, 3);
			lua_pushinteger(L, (lua_Integer)x->status);
			lua_setfield(L, -2, "status");
			fb_push_headers(L, &x->head);
			lua_setfield(L, -2, "headers");
			lua_pushlstring(L, x->resp.p != NULL ? x->resp.p : "", x->resp.len);
			lua_setfield(L, -2, "body");
		}
		lua_rawseti(L, -2, (int)(i + 1));
		fb_xfer_free(x); /* big bodies: free as soon as Lua has its copy */
	}
	return 1;
}

/* ---- client:stream -------------------------------------------------------------------------------- */

typedef struct {
	fb_engine e;
	int client_ref; /* the client stays alive (its share, its options) while the stream does */
	int open;
	size_t next_id, n, cap; /* the transfers not yet handed out, in the order they were added */
	fb_xfer **x;
	size_t *ids;
} fb_stream;

static fb_stream *check_stream(lua_State *L, const char *fn)
{
	fb_stream *s = (fb_stream *)luaL_checkudata(L, 1, FB_STREAM_MT);
	if (!s->open)
		luaL_error(L, "%s: the stream is closed", fn);
	return s;
}

/* Removes transfer k, keeping the others in the order they were added (they start in that order). */
static void drop(fb_stream *s, size_t k)
{
	if (s->x[k]->easy != NULL)
		abandon(&s->e, s->x[k]);
	fb_xfer_free(s->x[k]);
	free(s->x[k]);
	memmove(s->x + k, s->x + k + 1, (s->n - k - 1) * sizeof *s->x);
	memmove(s->ids + k, s->ids + k + 1, (s->n - k - 1) * sizeof *s->ids);
	s->n--;
}

static int waiting(const fb_xfer *x)
{
	return x->easy == NULL && x->rc == CURLE_OK;
}

/* stream:close(), __gc and __close: idempotent; transfers still in flight are abandoned. */
static int stream_close(lua_State *L)
{
	fb_stream *s = (fb_stream *)luaL_checkudata(L, 1, FB_STREAM_MT);
	if (!s->open)
		return 0;
	while (s->n > 0)
		drop(s, s->n - 1);
	free(s->x);
	free(s->ids);
	s->x = NULL;
	s->ids = NULL;
	engine_free(&s->e);
	luaL_unref(L, LUA_REGISTRYINDEX, s->client_ref);
	s->open = 0;
	return 0;
}

/* client:stream{concurrency = n} -> stream */
int fb_client_stream(lua_State *L)
{
	static const char *fn = "freshbooks.client:stream";
	fb_client *c = fb_check_client(L, fn);
	size_t limit = concurrency(L, 2, fn);
	fb_stream *s = (fb_stream *)lua_newuserdata(L, sizeof *s);
	memset(s, 0, sizeof *s);
	luaL_getmetatable(L, FB_STREAM_MT);
	lua_setmetatable(L, -2);
	s->client_ref = LUA_NOREF;
	if (engine_init(&s->e, c, limit) != 0)
		return luaL_error(L, "%s: curl_multi_init failed", fn);
	/* open before the reference: luaL_ref may raise (out of memory), and __gc must then free the engine */
	s->open = 1;
	lua_pushvalue(L, 1);
	s->client_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 1;
}

/* stream:add(request) -> id; checked now (a bad request raises), started when a place is free. */
static int stream_add(lua_State *L)
{
	static const char *fn = "freshbooks.stream:add";
	fb_stream *s = check_stream(L, fn);
	fb_xfers *tmp;
	fb_xfer *x;
	const fb_client *c;
	lua_settop(L, 2);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->client_ref);
	c = (const fb_client *)lua_touserdata(L, 3);
	if (c->closed)
		return luaL_error(L, "%s: the client is closed", fn);
	tmp = fb_new_xfers(L, 1);
	fb_collect_request(L, 2, &tmp->x[0], fn, c->user_agent_line);
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		fb_xfer **nx = (fb_xfer **)realloc(s->x, cap * sizeof *nx);
		size_t *ni;
		if (nx == NULL)
			return luaL_error(L, "%s: out of memory", fn);
		s->x = nx;
		ni = (size_t *)realloc(s->ids, cap * sizeof *ni);
		if (ni == NULL)
			return luaL_error(L, "%s: out of memory", fn);
		s->ids = ni;
		s->cap = cap;
	}
	x = (fb_xfer *)malloc(sizeof *x);
	if (x == NULL)
		return luaL_error(L, "%s: out of memory", fn);
	*x = tmp->x[0]; /* the transfer moves to the stream: the temporary's __gc frees nothing */
	memset(&tmp->x[0], 0, sizeof tmp->x[0]);
	s->x[s->n] = x;
	s->ids[s->n] = ++s->next_id;
	s->n++;
	if (s->e.active < s->e.limit && s->e.mc == CURLM_OK)
		engine_start(&s->e, x);
	lua_pushinteger(L, (lua_Integer)s->next_id);
	return 1;
}

/* stream:next() -> id, status, headers, body | id, nil, err | nil when nothing is left. */
static int stream_next(lua_State *L)
{
	fb_stream *s = check_stream(L, "freshbooks.stream:next");
	fb_xfer *done = NULL;
	size_t k, id;
	int pushed;
	if (s->n == 0)
		return 0;
	/* A transfer that could not start (its setup failed) is done already. */
	for (k = 0; k < s->n && done == NULL; k++)
		if (s->x[k]->easy == NULL && !waiting(s->x[k]))
			done = s->x[k];
	if (done == NULL)
		done = engine_wait(&s->e);
	if (done == NULL) { /* the multi failed: the oldest transfer carries the error */
		if (s->e.mc == CURLM_OK)
			s->e.mc = CURLM_INTERNAL_ERROR;
		done = s->x[0];
		abandon(&s->e, done);
	}
	for (k = 0; s->x[k] != done; k++)
		;
	id = s->ids[k];
	/* keep `limit` in flight: the next waiting transfers start now, oldest first */
	for (size_t j = 0; j < s->n && s->e.active < s->e.limit && s->e.mc == CURLM_OK; j++)
		if (s->x[j] != done && waiting(s->x[j]))
			engine_start(&s->e, s->x[j]);
	lua_pushinteger(L, (lua_Integer)id);
	pushed = fb_push_result(L, done);
	drop(s, k);
	return 1 + pushed;
}

void fb_open_stream(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"add", stream_add},
		{"next", stream_next},
		{"close", stream_close},
		{NULL, NULL},
	};
	fb_new_class(L, FB_STREAM_MT, methods, stream_close, NULL);
}
