/* The HTTP client: a userdata holding a CURL easy handle attached to a CURLSH share (connections, DNS,
 * TLS sessions), so consecutive requests reuse one kept-alive connection; batch runs many requests over
 * one CURLM with a concurrency limit.
 *
 * libcurl never runs while a Lua error could be raised: every request is first copied from Lua into C
 * structures (inside a userdata whose __gc frees them, so a raise while collecting leaks nothing), then
 * libcurl runs, then the Lua results are built. No callback ever calls into Lua. */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include "freshbooks.h"
#include "fb_internal.h"

#define FB_XFERS_MT "freshbooks.transfers"
#define FB_DEFAULT_CONNECT_MS 10000L
#define FB_DEFAULT_TIMEOUT_MS 60000L
#define FB_DEFAULT_MAX_BODY ((curl_off_t)64 * 1024 * 1024)
#define FB_MAX_HEADER_BYTES (1024 * 1024)
#define FB_DEFAULT_CONCURRENCY 8
#define FB_MAX_CONCURRENCY 256

/* ---- process-wide libcurl state ------------------------------------------------------------------ */

static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
static int g_skip_global_init, g_global_init_done;
static CURLSH *g_host_share; /* supplied by the embedding host, never freed by us */
static CURLSH *g_own_share;  /* ours: created on first use, freed with its last client */
static long g_own_share_refs;
static pthread_mutex_t g_share_locks[CURL_LOCK_DATA_LAST];
static int g_share_locks_ready;

void freshbooks_skip_curl_global_init(void)
{
	pthread_mutex_lock(&g_mutex);
	g_skip_global_init = 1;
	pthread_mutex_unlock(&g_mutex);
}

void freshbooks_set_share(CURLSH *share)
{
	pthread_mutex_lock(&g_mutex);
	g_host_share = share;
	pthread_mutex_unlock(&g_mutex);
}

/* Called by luaopen: curl_global_init once per process, unless the host opted out. */
int fb_curl_global_init(void)
{
	CURLcode rc = CURLE_OK;
	pthread_mutex_lock(&g_mutex);
	if (!g_global_init_done && !g_skip_global_init && getenv("FRESHBOOKS_NO_CURL_GLOBAL_INIT") == NULL) {
		rc = curl_global_init(CURL_GLOBAL_DEFAULT);
		g_global_init_done = rc == CURLE_OK;
	}
	pthread_mutex_unlock(&g_mutex);
	return (int)rc;
}

/* Our share is used from one thread at a time in practice, but a host may run Lua states on several
 * threads: the locks keep DNS and TLS-session sharing correct then. */
static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *u)
{
	(void)h, (void)access, (void)u;
	pthread_mutex_lock(&g_share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *u)
{
	(void)h, (void)u;
	pthread_mutex_unlock(&g_share_locks[data]);
}

/* Returns the share a new client should use (NULL on failure); *own tells whether it is ours. */
static CURLSH *share_acquire(int *own)
{
	CURLSH *sh;
	pthread_mutex_lock(&g_mutex);
	if (g_host_share != NULL) {
		*own = 0;
		sh = g_host_share;
	} else {
		*own = 1;
		if (g_own_share == NULL) {
			int i;
			if (!g_share_locks_ready) {
				for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
					pthread_mutex_init(&g_share_locks[i], NULL);
				g_share_locks_ready = 1;
			}
			sh = curl_share_init();
			if (sh != NULL &&
			    (curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
			     curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
			     curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
			     curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
			     curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)) {
				curl_share_cleanup(sh);
				sh = NULL;
			}
			g_own_share = sh;
		}
		sh = g_own_share;
		if (sh != NULL)
			g_own_share_refs++;
	}
	pthread_mutex_unlock(&g_mutex);
	return sh;
}

static void share_release(CURLSH *sh, int own)
{
	if (sh == NULL || !own)
		return;
	pthread_mutex_lock(&g_mutex);
	if (sh == g_own_share && --g_own_share_refs == 0) {
		curl_share_cleanup(g_own_share); /* closes the cached connections */
		g_own_share = NULL;
	}
	pthread_mutex_unlock(&g_mutex);
}

/* ---- the client userdata -------------------------------------------------------------------------- */

typedef struct {
	CURL *easy; /* NULL once closed */
	CURLSH *share;
	int own_share, closed;
	long connect_timeout_ms, timeout_ms;
	char *cainfo, *capath, *proxy, *user_agent;
	char *user_agent_line; /* "User-Agent: ...", sent as a request header: cheaper than CURLOPT_USERAGENT */
	int insecure_no_verify_tls;
	curl_off_t max_body;
	CURLcode setup_rc; /* of setup_client on easy: a failure is reported by (and retried on) each request */
} fb_client;

static CURLcode setup_client(CURL *e, const fb_client *c);

static void client_release(fb_client *c)
{
	if (c->easy != NULL)
		curl_easy_cleanup(c->easy); /* before the share it is attached to */
	c->easy = NULL;
	share_release(c->share, c->own_share);
	c->share = NULL;
	free(c->cainfo);
	free(c->capath);
	if (c->proxy != NULL) /* may carry proxy credentials */
		OPENSSL_cleanse(c->proxy, strlen(c->proxy));
	free(c->proxy);
	free(c->user_agent);
	free(c->user_agent_line);
	c->cainfo = c->capath = c->proxy = c->user_agent = c->user_agent_line = NULL;
	c->closed = 1;
}

/* client:close(), __gc and __close: idempotent. */
static int client_close(lua_State *L)
{
	fb_client *c = (fb_client *)luaL_checkudata(L, 1, FB_CLIENT_MT);
	client_release(c);
	return 0;
}

static fb_client *check_open(lua_State *L, const char *fn)
{
	fb_client *c = (fb_client *)luaL_checkudata(L, 1, FB_CLIENT_MT);
	if (c->closed)
		luaL_error(L, "%s: client is closed", fn);
	return c;
}

static int client_tostring(lua_State *L)
{
	fb_client *c = (fb_client *)luaL_checkudata(L, 1, FB_CLIENT_MT);
	if (c->closed)
		lua_pushliteral(L, "freshbooks.client(closed)");
	else
		lua_pushfstring(L, "freshbooks.client(%p)", (void *)c);
	return 1;
}

/* Seconds (number > 0) -> milliseconds, at least 1. */
static long seconds_ms(lua_State *L, int idx, const char *fn, const char *name)
{
	lua_Number s;
	if (lua_type(L, idx) != LUA_TNUMBER)
		luaL_error(L, "%s: %s must be a number of seconds, got %s", fn, name, luaL_typename(L, idx));
	s = lua_tonumber(L, idx);
	if (!(s > 0 && s <= 86400.0 * 365))
		luaL_error(L, "%s: %s must be > 0 seconds", fn, name);
	return s * 1000 < 1 ? 1L : (long)(s * 1000);
}

static char *opt_string(lua_State *L, int idx, const char *name)
{
	size_t len;
	const char *s;
	char *copy;
	if (lua_type(L, idx) != LUA_TSTRING)
		luaL_error(L, "freshbooks.core.client: %s must be a string, got %s", name, luaL_typename(L, idx));
	s = lua_tolstring(L, idx, &len);
	if (strlen(s) != len)
		luaL_error(L, "freshbooks.core.client: %s contains a NUL byte", name);
	copy = (char *)malloc(len + 1);
	if (copy == NULL)
		luaL_error(L, "freshbooks.core.client: out of memory");
	memcpy(copy, s, len + 1);
	return copy;
}

/* core.client(opts) -> client. Unknown options raise: a misspelt TLS option must not pass silently. */
static int l_client(lua_State *L)
{
	static const char *fn = "freshbooks.core.client";
	fb_client *c;
	int use_share = 1;
	if (!lua_isnoneornil(L, 1))
		luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	c = (fb_client *)lua_newuserdata(L, sizeof *c);
	memset(c, 0, sizeof *c);
	c->closed = 1; /* until fully built; __gc frees whatever was set */
	c->connect_timeout_ms = FB_DEFAULT_CONNECT_MS;
	c->timeout_ms = FB_DEFAULT_TIMEOUT_MS;
	c->max_body = FB_DEFAULT_MAX_BODY;
	luaL_getmetatable(L, FB_CLIENT_MT);
	lua_setmetatable(L, -2);
	if (lua_istable(L, 1)) {
		lua_pushnil(L);
		while (lua_next(L, 1)) {
			const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
			if (strcmp(k, "connect_timeout") == 0) {
				c->connect_timeout_ms = seconds_ms(L, -1, fn, k);
			} else if (strcmp(k, "timeout") == 0) {
				c->timeout_ms = seconds_ms(L, -1, fn, k);
			} else if (strcmp(k, "cainfo") == 0) {
				free(c->cainfo);
				c->cainfo = opt_string(L, -1, k);
			} else if (strcmp(k, "capath") == 0) {
				free(c->capath);
				c->capath = opt_string(L, -1, k);
			} else if (strcmp(k, "proxy") == 0) {
				free(c->proxy);
				c->proxy = opt_string(L, -1, k);
			} else if (strcmp(k, "user_agent") == 0) {
				free(c->user_agent);
				c->user_agent = opt_string(L, -1, k);
			} else if (strcmp(k, "insecure_no_verify_tls") == 0) {
				if (lua_type(L, -1) != LUA_TBOOLEAN)
					return luaL_error(L, "%s: insecure_no_verify_tls must be a boolean", fn);
				c->insecure_no_verify_tls = lua_toboolean(L, -1);
			} else if (strcmp(k, "max_body") == 0) {
				lua_Number n = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
				if (!(n >= 1 && n <= 9007199254740992.0) || n != floor(n))
					return luaL_error(L, "%s: max_body must be a positive integer (bytes)", fn);
				c->max_body = (curl_off_t)n;
			} else if (strcmp(k, "share") == 0) {
				if (lua_type(L, -1) != LUA_TBOOLEAN)
					return luaL_error(L, "%s: share must be a boolean", fn);
				use_share = lua_toboolean(L, -1);
			} else {
				if (lua_type(L, -2) != LUA_TSTRING)
					return luaL_error(L, "%s: option names must be strings", fn);
				return luaL_error(L, "%s: unknown option '%s'", fn, k);
			}
			lua_pop(L, 1);
		}
	}
	if (c->user_agent == NULL) {
		static const char ua[] = "lua-freshbooks/" FB_VERSION;
		c->user_agent = (char *)malloc(sizeof ua);
		if (c->user_agent == NULL)
			return luaL_error(L, "%s: out of memory", fn);
		memcpy(c->user_agent, ua, sizeof ua);
	}
	{ /* an empty agent is sent empty ("Name;" in libcurl's header list) */
		size_t n = strlen(c->user_agent);
		c->user_agent_line = (char *)malloc(n + 13);
		if (c->user_agent_line == NULL)
			return luaL_error(L, "%s: out of memory", fn);
		if (n == 0)
			memcpy(c->user_agent_line, "User-Agent;", 12);
		else
			snprintf(c->user_agent_line, n + 13, "User-Agent: %s", c->user_agent);
	}
	if (use_share) {
		c->share = share_acquire(&c->own_share);
		if (c->share == NULL)
			return luaL_error(L, "%s: cannot create the libcurl share", fn);
	}
	c->easy = curl_easy_init();
	if (c->easy == NULL)
		return luaL_error(L, "%s: curl_easy_init failed", fn);
	c->setup_rc = setup_client(c->easy, c);
	c->closed = 0;
	return 1;
}

/* ---- one transfer: its request copied into C, and its response --------------------------------- */

typedef struct {
	char method[33]; /* upper-case letters, 1..32 of them */
	char *url;
	struct curl_slist *headers;
	fb_buf body;
	size_t body_sent;   /* read offset of the upload callback */
	int has_body, upload; /* upload: the request sends a body (through on_read) */
	long timeout_ms;    /* 0: the client's */
	CURL *easy;         /* batch only: owned by this transfer while it runs */
	curl_off_t max_body;
	fb_buf resp, head;  /* body, raw header lines of the final response */
	int too_large, headers_too_large, oom;
	CURLcode rc;
	long status;
	char errbuf[CURL_ERROR_SIZE];
} fb_xfer;

typedef struct {
	size_t n;
	fb_xfer x[1];
} fb_xfers;

static void slist_free_wiped(struct curl_slist *l)
{
	struct curl_slist *p;
	for (p = l; p != NULL; p = p->next) /* header values may be secrets */
		OPENSSL_cleanse(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

/* Frees what a transfer holds; idempotent (also run early, once Lua has its copies). */
static void xfer_free(fb_xfer *x)
{
	if (x->easy != NULL)
		curl_easy_cleanup(x->easy);
	x->easy = NULL;
	free(x->url);
	x->url = NULL;
	slist_free_wiped(x->headers);
	x->headers = NULL;
	fb_buf_free(&x->body, 1);
	fb_buf_free(&x->resp, 0);
	fb_buf_free(&x->head, 0);
}

static int xfers_gc(lua_State *L)
{
	fb_xfers *xs = (fb_xfers *)luaL_checkudata(L, 1, FB_XFERS_MT);
	size_t i;
	for (i = 0; i < xs->n; i++)
		xfer_free(&xs->x[i]);
	xs->n = 0;
	return 0;
}

static fb_xfers *new_xfers(lua_State *L, size_t n)
{
	fb_xfers *xs;
	size_t i;
	if (n > ((size_t)-1 - sizeof(fb_xfers)) / sizeof(fb_xfer))
		luaL_error(L, "freshbooks.client: too many requests");
	xs = (fb_xfers *)lua_newuserdata(L, sizeof(fb_xfers) + (n ? n - 1 : 0) * sizeof(fb_xfer));
	xs->n = 0;
	luaL_getmetatable(L, FB_XFERS_MT);
	lua_setmetatable(L, -2);
	for (i = 0; i < n; i++)
		memset(&xs->x[i], 0, sizeof(fb_xfer));
	xs->n = n;
	return xs;
}

static char *dup_or_raise(lua_State *L, const char *s, size_t len)
{
	char *p = (char *)malloc(len + 1);
	if (p == NULL)
		luaL_error(L, "freshbooks.client: out of memory");
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

static int is_tchar(unsigned char c)
{
	return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int bad_header_value(const char *s, size_t len)
{
	size_t i;
	for (i = 0; i < len; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return 1;
	return 0;
}

/* Adds "Name: value" (or "Name;" to send an empty value) to x->headers. */
static void add_header(lua_State *L, fb_xfer *x, const char *who, const char *name, size_t nlen,
		       const char *value, size_t vlen)
{
	size_t i;
	char *line;
	struct curl_slist *l;
	if (nlen == 0)
		luaL_error(L, "%s: empty header name", who);
	for (i = 0; i < nlen; i++)
		if (!is_tchar((unsigned char)name[i]))
			luaL_error(L, "%s: invalid header name '%s'", who, name);
	if (bad_header_value(value, vlen))
		luaL_error(L, "%s: header '%s' contains CR, LF or NUL", who, name);
	line = (char *)malloc(nlen + vlen + 3);
	if (line == NULL)
		luaL_error(L, "%s: out of memory", who);
	memcpy(line, name, nlen);
	if (vlen == 0) {
		line[nlen] = ';';
		line[nlen + 1] = '\0';
	} else {
		line[nlen] = ':';
		line[nlen + 1] = ' ';
		memcpy(line + nlen + 2, value, vlen);
		line[nlen + 2 + vlen] = '\0';
	}
	l = curl_slist_append(x->headers, line);
	OPENSSL_cleanse(line, nlen + vlen + 2);
	free(line);
	if (l == NULL)
		luaL_error(L, "%s: out of memory", who);
	x->headers = l;
}

/* Copies the request table at idx into x. Raises on bad arguments (x is freed by the xfers' __gc). */
static void collect_request(lua_State *L, int idx, fb_xfer *x, const char *who, const fb_client *c)
{
	size_t len, i;
	const char *s;
	int has_expect = 0, has_user_agent = 0;
	if (lua_type(L, idx) != LUA_TTABLE)
		luaL_error(L, "%s: request table expected, got %s", who, luaL_typename(L, idx));

	lua_getfield(L, idx, "method");
	if (lua_isnil(L, -1)) {
		memcpy(x->method, "GET", 4);
	} else {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "%s: method must be a string", who);
		s = lua_tolstring(L, -1, &len);
		if (len == 0 || len > 32)
			luaL_error(L, "%s: invalid method", who);
		for (i = 0; i < len; i++)
			if (!(s[i] >= 'A' && s[i] <= 'Z'))
				luaL_error(L, "%s: invalid method '%s' (upper-case letters only)", who, s);
		memcpy(x->method, s, len + 1);
	}
	lua_pop(L, 1);

	lua_getfield(L, idx, "url");
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "%s: url must be a string, got %s", who, luaL_typename(L, -1));
	s = lua_tolstring(L, -1, &len);
	if (!(strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0))
		luaL_error(L, "%s: url must start with http:// or https://", who);
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 127)
			luaL_error(L, "%s: url contains a space or control character", who);
	{
		CURLU *u = curl_url();
		CURLUcode uc = u ? curl_url_set(u, CURLUPART_URL, s, 0) : CURLUE_OUT_OF_MEMORY;
		curl_url_cleanup(u);
		if (uc != CURLUE_OK)
			luaL_error(L, "%s: malformed url", who);
	}
	x->url = dup_or_raise(L, s, len);
	lua_pop(L, 1);

	lua_getfield(L, idx, "headers");
	if (!lua_isnil(L, -1)) {
		int h = lua_gettop(L);
		if (lua_type(L, h) != LUA_TTABLE)
			luaL_error(L, "%s: headers must be a table", who);
		if (lua_rawlen(L, h) > 0) { /* {"Name: value", ...} */
			size_t n = lua_rawlen(L, h);
			for (i = 1; i <= n; i++) {
				const char *colon;
				lua_rawgeti(L, h, (int)i);
				if (lua_type(L, -1) != LUA_TSTRING)
					luaL_error(L, "%s: headers[%d] must be a \"Name: value\" string", who, (int)i);
				s = lua_tolstring(L, -1, &len);
				colon = (const char *)memchr(s, ':', len);
				if (colon == NULL)
					luaL_error(L, "%s: headers[%d] must be a \"Name: value\" string", who, (int)i);
				{
					const char *v = colon + 1;
					while (v < s + len && (*v == ' ' || *v == '\t'))
						v++;
					lua_pushlstring(L, s, (size_t)(colon - s)); /* NUL-terminated name for messages */
					add_header(L, x, who, lua_tostring(L, -1), (size_t)(colon - s), v,
						   (size_t)(s + len - v));
					if (strcasecmp(lua_tostring(L, -1), "expect") == 0)
						has_expect = 1;
					if (strcasecmp(lua_tostring(L, -1), "user-agent") == 0)
						has_user_agent = 1;
					lua_pop(L, 1);
				}
				lua_pop(L, 1);
			}
		} else { /* {Name = value} */
			lua_pushnil(L);
			while (lua_next(L, h)) {
				size_t nlen, vlen;
				const char *name, *value;
				if (lua_type(L, -2) != LUA_TSTRING)
					luaL_error(L, "%s: header names must be strings", who);
				name = lua_tolstring(L, -2, &nlen);
				if (lua_type(L, -1) == LUA_TNUMBER)
					lua_tostring(L, -1); /* values may be numbers (converted in place: key is safe) */
				value = fb_tobytes(L, -1, &vlen);
				if (value == NULL)
					luaL_error(L, "%s: header '%s' must be a string or secret, got %s", who, name,
						   luaL_typename(L, -1));
				add_header(L, x, who, name, nlen, value, vlen);
				if (strcasecmp(name, "expect") == 0)
					has_expect = 1;
				if (strcasecmp(name, "user-agent") == 0)
					has_user_agent = 1;
				lua_pop(L, 1);
			}
		}
	}
	lua_pop(L, 1);
	if (!has_user_agent) { /* the caller's User-Agent header wins, as it would over CURLOPT_USERAGENT */
		struct curl_slist *l = curl_slist_append(x->headers, c->user_agent_line);
		if (l == NULL)
			luaL_error(L, "%s: out of memory", who);
		x->headers = l;
	}

	lua_getfield(L, idx, "body");
	if (!lua_isnil(L, -1)) {
		int b = lua_gettop(L);
		x->has_body = 1;
		if (lua_type(L, b) == LUA_TSTRING) {
			s = lua_tolstring(L, b, &len);
			if (fb_buf_add(&x->body, s, len))
				luaL_error(L, "%s: out of memory", who);
		} else if (lua_type(L, b) == LUA_TTABLE) { /* parts: strings and secrets */
			size_t n = lua_rawlen(L, b);
			for (i = 1; i <= n; i++) {
				lua_rawgeti(L, b, (int)i);
				s = fb_tobytes(L, -1, &len);
				if (s == NULL)
					luaL_error(L, "%s: body[%d] must be a string or secret, got %s", who, (int)i,
						   luaL_typename(L, -1));
				if (fb_buf_add(&x->body, s, len))
					luaL_error(L, "%s: out of memory", who);
				lua_pop(L, 1);
			}
		} else {
			luaL_error(L, "%s: body must be a string or an array of parts, got %s", who,
				   luaL_typename(L, b));
		}
	}
	lua_pop(L, 1);

	lua_getfield(L, idx, "timeout");
	if (!lua_isnil(L, -1))
		x->timeout_ms = seconds_ms(L, -1, who, "timeout");
	lua_pop(L, 1);

	s = x->method; /* a body goes out (maybe empty) unless HEAD, or GET without one */
	x->upload = strcmp(s, "HEAD") != 0 && (x->has_body || strcmp(s, "POST") == 0 ||
					       strcmp(s, "PUT") == 0 || strcmp(s, "PATCH") == 0);
	if (x->upload && !has_expect) { /* "Expect:" removes curl's 100-continue round trip */
		struct curl_slist *l = curl_slist_append(x->headers, "Expect:");
		if (l == NULL)
			luaL_error(L, "%s: out of memory", who);
		x->headers = l;
	}
}

/* ---- libcurl callbacks (pure C) ------------------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	fb_xfer *x = (fb_xfer *)ud;
	size_t n = size * nmemb;
	if ((curl_off_t)n > x->max_body - (curl_off_t)x->resp.len) {
		x->too_large = 1; /* fail before allocating */
		return 0;
	}
	if (fb_buf_add(&x->resp, p, n)) {
		x->oom = 1;
		return 0;
	}
	return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
	fb_xfer *x = (fb_xfer *)ud;
	size_t n = size * nmemb;
	if (n >= 5 && memcmp(p, "HTTP/", 5) == 0)
		x->head.len = 0; /* a new response (after 1xx): keep only the final one's headers */
	if (x->head.len + n > FB_MAX_HEADER_BYTES) {
		x->headers_too_large = 1;
		return 0;
	}
	if (fb_buf_add(&x->head, p, n)) {
		x->oom = 1;
		return 0;
	}
	return n;
}

#define SET(opt, val)                                                                                  \
	do {                                                                                           \
		CURLcode rc_ = curl_easy_setopt(e, opt, val);                                          \
		if (rc_ != CURLE_OK)                                                                   \
			return rc_;                                                                    \
	} while (0)

/* The request body goes out through a read callback that refuses to rewind once bytes have left:
 * libcurl would otherwise silently re-send the body on a fresh connection when a reused one dies
 * before the answer, and the server may already have acted on it (a spent refresh token, a second
 * invoice). The transfer then fails instead, and the Lua layer decides. */
static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
	fb_xfer *x = (fb_xfer *)ud;
	size_t n = size * nitems, left = x->body.len - x->body_sent;
	if (n > left)
		n = left;
	if (n > 0)
		memcpy(buf, x->body.p + x->body_sent, n);
	x->body_sent += n;
	return n;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
	fb_xfer *x = (fb_xfer *)ud;
	if (origin == SEEK_SET && offset == 0 && x->body_sent == 0)
		return CURL_SEEKFUNC_OK;
	return CURL_SEEKFUNC_CANTSEEK;
}

/* What stays the same for every request of a client: set once on its handle (and on each batch
 * handle), since libcurl keeps options across transfers. */
static CURLcode setup_client(CURL *e, const fb_client *c)
{
	if (c->share != NULL)
		SET(CURLOPT_SHARE, c->share);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_FOLLOWLOCATION, 0L); /* an API client sees the 3xx itself */
	SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	SET(CURLOPT_SSL_VERIFYPEER, c->insecure_no_verify_tls ? 0L : 1L);
	SET(CURLOPT_SSL_VERIFYHOST, c->insecure_no_verify_tls ? 0L : 2L);
	if (c->cainfo != NULL)
		SET(CURLOPT_CAINFO, c->cainfo);
	if (c->capath != NULL)
		SET(CURLOPT_CAPATH, c->capath);
	if (c->proxy != NULL)
		SET(CURLOPT_PROXY, c->proxy);
	SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	if (c->proxy != NULL) /* for the CONNECT to the proxy, which does not get the request's headers */
		SET(CURLOPT_USERAGENT, c->user_agent);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_READFUNCTION, on_read);
	SET(CURLOPT_SEEKFUNCTION, on_seek);
	return CURLE_OK;
}

/* What changes per request. Every method option is set explicitly, so nothing of the previous
 * request (a POST's body size, a custom method, HEAD's no-body) carries over. */
static CURLcode setup_request(CURL *e, const fb_client *c, fb_xfer *x)
{
	const char *m = x->method;
	int head = strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
	int plain_get = strcmp(m, "GET") == 0 && !x->has_body;
	x->max_body = c->max_body;
	x->errbuf[0] = '\0';
	SET(CURLOPT_ERRORBUFFER, x->errbuf);
	SET(CURLOPT_URL, x->url);
	SET(CURLOPT_TIMEOUT_MS, x->timeout_ms > 0 ? x->timeout_ms : c->timeout_ms);
	/* early refusal when Content-Length says too much (HEAD has no body; 0 = no limit) */
	SET(CURLOPT_MAXFILESIZE_LARGE, head ? (curl_off_t)0 : c->max_body);
	SET(CURLOPT_HTTPHEADER, x->headers);
	SET(CURLOPT_WRITEDATA, x);
	SET(CURLOPT_HEADERDATA, x);
	SET(CURLOPT_PRIVATE, x);
	SET(CURLOPT_HTTPGET, 1L); /* method GET, no upload, NOBODY off: then adjust */
	SET(CURLOPT_NOBODY, head ? 1L : 0L);
	SET(CURLOPT_CUSTOMREQUEST, head || plain_get || post ? NULL : m);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, x->upload ? (curl_off_t)x->body.len : (curl_off_t)-1);
	if (x->upload) {
		x->body_sent = 0;
		SET(CURLOPT_POST, 1L);
		SET(CURLOPT_READDATA, x);
		SET(CURLOPT_SEEKDATA, x);
	}
	return CURLE_OK;
}

/* After a transfer (or a failed setup): no option may point into x, which is about to be freed. */
static void forget_request(CURL *e)
{
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
	curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
	curl_easy_setopt(e, CURLOPT_READDATA, NULL);
	curl_easy_setopt(e, CURLOPT_SEEKDATA, NULL);
}

/* ---- results ------------------------------------------------------------------------------------- */

static const char *error_code(const fb_xfer *x)
{
	if (x->too_large || x->headers_too_large)
		return "too_large";
	switch (x->rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return "timeout";
	case CURLE_COULDNT_CONNECT:
		return "connect";
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return "resolve";
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CLIENTCERT:
	case CURLE_USE_SSL_FAILED:
		return "tls";
	case CURLE_FILESIZE_EXCEEDED:
		return "too_large";
	case CURLE_ABORTED_BY_CALLBACK:
		return "aborted";
	case CURLE_SEND_ERROR:
		return "send";
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SEND_FAIL_REWIND: /* the body went out, the connection died: see on_seek */
		return "recv";
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
	case CURLE_TOO_MANY_REDIRECTS:
	case CURLE_BAD_CONTENT_ENCODING:
		return "protocol";
	default:
		return "curl";
	}
}

static void push_error(lua_State *L, const fb_xfer *x)
{
	lua_createtable(L, 0, 4);
	lua_pushstring(L, error_code(x));
	lua_setfield(L, -2, "code");
	if (x->too_large || x->rc == CURLE_FILESIZE_EXCEEDED) {
		char msg[96];
		snprintf(msg, sizeof msg, "response body larger than max_body (%lld bytes)", (long long)x->max_body);
		lua_pushstring(L, msg);
	}
	else if (x->headers_too_large)
		lua_pushliteral(L, "response headers larger than 1 MiB");
	else if (x->oom)
		lua_pushliteral(L, "out of memory while receiving the response");
	else if (x->errbuf[0] != '\0')
		lua_pushstring(L, x->errbuf);
	else
		lua_pushstring(L, curl_easy_strerror(x->rc));
	lua_setfield(L, -2, "message");
	lua_pushinteger(L, (lua_Integer)x->rc);
	lua_setfield(L, -2, "curl_code");
	if (x->status > 0) {
		lua_pushinteger(L, (lua_Integer)x->status);
		lua_setfield(L, -2, "status");
	}
}

/* Pushes the final response's headers: lower-cased names; a repeated header -> array of its values.
 * The names are lower-cased in place: head is not used afterwards. */
static void push_headers(lua_State *L, fb_buf *head)
{
	char *p = head->p, *end = head->p + head->len;
	const char *q;
	int t, lines = 0;
	for (q = p; q != NULL && (q = (const char *)memchr(q, '\n', (size_t)(end - q))) != NULL; q++)
		lines++;
	lua_createtable(L, 0, lines); /* sized once: one slot per line is enough */
	t = lua_gettop(L);
	while (p != NULL && p < end) {
		char *eol = (char *)memchr(p, '\n', (size_t)(end - p));
		char *le = eol ? eol : end, *colon, *n;
		const char *v, *ve;
		if (le > p && le[-1] == '\r')
			le--;
		colon = (char *)memchr(p, ':', (size_t)(le - p));
		if (colon != NULL && colon > p && *p != ' ' && *p != '\t' &&
		    !(le - p >= 5 && memcmp(p, "HTTP/", 5) == 0)) { /* skip the status line and folded lines */
			for (n = p; n < colon; n++)
				*n = (char)tolower((unsigned char)*n);
			lua_pushlstring(L, p, (size_t)(colon - p));
			for (v = colon + 1; v < le && (*v == ' ' || *v == '\t'); v++)
				;
			for (ve = le; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
				;
			lua_pushvalue(L, -1);
			lua_rawget(L, t);
			if (lua_isnil(L, -1)) {
				lua_pop(L, 1);
				lua_pushlstring(L, v, (size_t)(ve - v));
				lua_rawset(L, t);
			} else if (lua_type(L, -1) == LUA_TSTRING) {
				lua_createtable(L, 2, 0);
				lua_insert(L, -2);
				lua_rawseti(L, -2, 1);
				lua_pushlstring(L, v, (size_t)(ve - v));
				lua_rawseti(L, -2, 2);
				lua_rawset(L, t);
			} else {
				lua_pushlstring(L, v, (size_t)(ve - v));
				lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
				lua_pop(L, 2);
			}
		}
		p = eol ? eol + 1 : end;
	}
}

/* ---- request and batch --------------------------------------------------------------------------- */

/* client:request{method=, url=, headers=, body=, timeout=} -> status, headers, body | nil, err */
static int client_request(lua_State *L)
{
	static const char *fn = "freshbooks.client:request";
	fb_client *c = check_open(L, fn);
	fb_xfers *xs;
	fb_xfer *x;
	lua_settop(L, 2);
	xs = new_xfers(L, 1);
	x = &xs->x[0];
	collect_request(L, 2, x, fn, c);

	/* From here to the end of curl_easy_perform nothing may raise. */
	if (c->setup_rc != CURLE_OK)
		c->setup_rc = setup_client(c->easy, c);
	x->rc = c->setup_rc;
	if (x->rc == CURLE_OK)
		x->rc = setup_request(c->easy, c, x);
	if (x->rc == CURLE_OK) {
		x->rc = curl_easy_perform(c->easy);
		if (x->head.len > 0) /* a response began: the code is this transfer's, not the last one's */
			curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &x->status);
	}
	forget_request(c->easy);

	if (x->rc != CURLE_OK || x->too_large || x->headers_too_large || x->oom) {
		lua_pushnil(L);
		push_error(L, x);
		return 2;
	}
	lua_pushinteger(L, (lua_Integer)x->status);
	push_headers(L, &x->head);
	lua_pushlstring(L, x->resp.p != NULL ? x->resp.p : "", x->resp.len);
	xfer_free(x); /* a big body: do not hold it twice until the next GC cycle */
	return 3;
}

/* Runs every transfer of xs over one CURLM, at most `limit` at once. Never raises. */
static void run_batch(fb_client *c, fb_xfers *xs, size_t limit)
{
	CURLM *m = curl_multi_init();
	size_t next = 0, active = 0, i;
	CURLMcode mc = CURLM_OK;
	if (m == NULL) {
		for (i = 0; i < xs->n; i++)
			xs->x[i].rc = CURLE_OUT_OF_MEMORY;
		return;
	}
	while (next < xs->n || active > 0) {
		int running = 0, left = 0;
		CURLMsg *msg;
		while (active < limit && next < xs->n) {
			fb_xfer *x = &xs->x[next++];
			x->easy = curl_easy_init();
			x->rc = x->easy ? setup_client(x->easy, c) : CURLE_OUT_OF_MEMORY;
			if (x->rc == CURLE_OK)
				x->rc = setup_request(x->easy, c, x);
			if (x->rc == CURLE_OK && curl_multi_add_handle(m, x->easy) != CURLM_OK)
				x->rc = CURLE_FAILED_INIT;
			if (x->rc != CURLE_OK) {
				if (x->easy)
					curl_easy_cleanup(x->easy);
				x->easy = NULL;
				continue;
			}
			active++;
		}
		if (active == 0)
			continue;
		mc = curl_multi_perform(m, &running);
		while (mc == CURLM_OK && (msg = curl_multi_info_read(m, &left)) != NULL) {
			fb_xfer *x;
			char *priv = NULL;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
			x = (fb_xfer *)priv;
			x->rc = msg->data.result;
			curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
			curl_multi_remove_handle(m, x->easy);
			curl_easy_cleanup(x->easy);
			x->easy = NULL;
			active--;
		}
		if (mc == CURLM_OK && running > 0)
			mc = curl_multi_poll(m, NULL, 0, 1000, NULL);
		if (mc != CURLM_OK)
			break;
	}
	/* Only after a multi failure: abandon what is left. */
	for (i = 0; i < xs->n; i++) {
		fb_xfer *x = &xs->x[i];
		if (x->easy != NULL) {
			curl_multi_remove_handle(m, x->easy);
			curl_easy_cleanup(x->easy);
			x->easy = NULL;
			x->rc = CURLE_ABORTED_BY_CALLBACK;
			snprintf(x->errbuf, sizeof x->errbuf, "batch aborted: %s", curl_multi_strerror(mc));
		} else if (i >= next) {
			x->rc = CURLE_ABORTED_BY_CALLBACK;
			snprintf(x->errbuf, sizeof x->errbuf, "batch aborted: %s", curl_multi_strerror(mc));
		}
	}
	curl_multi_cleanup(m);
}

/* client:batch(requests, {concurrency = n}) -> { {status=, headers=, body=} | {err = {...}}, ... } */
static int client_batch(lua_State *L)
{
	static const char *fn = "freshbooks.client:batch";
	fb_client *c = check_open(L, fn);
	fb_xfers *xs;
	size_t n, i, limit = FB_DEFAULT_CONCURRENCY;
	luaL_checktype(L, 2, LUA_TTABLE);
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		lua_getfield(L, 3, "concurrency");
		if (!lua_isnil(L, -1)) {
			lua_Number v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
			if (!(v >= 1 && v <= FB_MAX_CONCURRENCY) || v != floor(v))
				return luaL_error(L, "%s: concurrency must be an integer in 1..%d", fn,
						  FB_MAX_CONCURRENCY);
			limit = (size_t)v;
		}
		lua_pop(L, 1);
	}
	lua_settop(L, 2);
	n = lua_rawlen(L, 2);
	xs = new_xfers(L, n);
	for (i = 0; i < n; i++) {
		char who[80];
		snprintf(who, sizeof who, "%s: request %d", fn, (int)(i + 1));
		lua_rawgeti(L, 2, (int)(i + 1));
		collect_request(L, lua_gettop(L), &xs->x[i], who, c);
		lua_pop(L, 1);
	}

	run_batch(c, xs, limit);

	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		fb_xfer *x = &xs->x[i];
		if (x->rc != CURLE_OK || x->too_large || x->headers_too_large || x->oom) {
			lua_createtable(L, 0, 1);
			push_error(L, x);
			lua_setfield(L, -2, "err");
		} else {
			lua_createtable(L, 0, 3);
			lua_pushinteger(L, (lua_Integer)x->status);
			lua_setfield(L, -2, "status");
			push_headers(L, &x->head);
			lua_setfield(L, -2, "headers");
			lua_pushlstring(L, x->resp.p != NULL ? x->resp.p : "", x->resp.len);
			lua_setfield(L, -2, "body");
		}
		lua_rawseti(L, -2, (int)(i + 1));
		xfer_free(x); /* big bodies: free as soon as Lua has its copy */
	}
	return 1;
}

void fb_open_http(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{"__gc", client_close},
		{"__close", client_close},
		{"__tostring", client_tostring},
		{NULL, NULL},
	};
	static const luaL_Reg methods[] = {
		{"request", client_request},
		{"batch", client_batch},
		{"close", client_close},
		{NULL, NULL},
	};
	luaL_newmetatable(L, FB_CLIENT_MT);
	luaL_setfuncs(L, meta, 0);
	lua_newtable(L);
	luaL_setfuncs(L, methods, 0);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);

	luaL_newmetatable(L, FB_XFERS_MT);
	lua_pushcfunction(L, xfers_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);

	lua_pushcfunction(L, l_client);
	lua_setfield(L, -2, "client");
	lua_pushstring(L, curl_version());
	lua_setfield(L, -2, "curl_version");
}
