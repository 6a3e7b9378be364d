/* The request policy, one for every transport: a Lua request table {method, url, headers, body,
 * timeout} is checked and copied into C (an fb_xfer) before anything is sent.
 *   - method: 1..32 upper-case letters (a strict subset of RFC 9110's token);
 *   - url: http(s), no spaces or controls, parsed once by libcurl's URL parser;
 *   - headers: token names; values without controls other than HTAB (no CR, LF, NUL: no request
 *     splitting); the framing and connection headers belong to the transport and are refused;
 *     the caller's User-Agent wins over the client's;
 *   - body: a string or an array of strings and secrets;
 *   - idempotent: false (or a POST/PATCH) means never on a reused connection;
 *   - keep_partial: true hands a cut-off body back on the error (the token endpoint's salvage);
 *   - finish: true lets the transfer run to its end (or its timeout) after a trapped Ctrl-C (the token
 *     endpoint: once FreshBooks rotated, its answer holds the only live refresh token).
 * Fields are read with raw access, so no metamethod (Lua code) runs while a request is collected.
 *
 * core.http.render(req [, user_agent]) applies the same policy and renders the HTTP/1.1 request
 * head for transports that write their own bytes (the OpenResty cosocket transport):
 *   -> {scheme =, host =, port =, head = "METHOD target HTTP/1.1\r\nHost: ...\r\n...\r\n\r\n", body =,
 *       once = whether it must not be sent twice (the rule above: its own connection, no resend)}
 * (body only when one goes out; its Content-Length is in the head). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include "http.h"

const char *const fb_idempotent_methods[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", NULL};

int fb_method_idempotent(const char *method)
{
	const char *const *m;
	for (m = fb_idempotent_methods; *m != NULL; m++)
		if (strcmp(*m, method) == 0)
			return 1;
	return 0;
}

/* ---- transfers: allocation ----------------------------------------------------------------------- */

static void slist_free_wiped(struct curl_slist *l)
{
	struct curl_slist *p;
	for (p = l; p != NULL; p = p->next) /* header values may be secrets */
		OPENSSL_cleanse(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

/* Frees what a transfer holds; idempotent (also run early, once Lua has its copies). */
void fb_xfer_free(fb_xfer *x)
{
	if (x->easy != NULL)
		curl_easy_cleanup(x->easy);
	x->easy = NULL;
	free(x->url);
	x->url = NULL;
	curl_url_cleanup(x->curlu);
	x->curlu = NULL;
	slist_free_wiped(x->headers);
	x->headers = NULL;
	fb_buf_free(&x->body, 1);
	fb_buf_free(&x->resp, 0);
	fb_buf_free(&x->head, 0);
}

int fb_xfers_gc(lua_State *L)
{
	fb_xfers *xs = (fb_xfers *)luaL_checkudata(L, 1, FB_XFERS_MT);
	size_t i;
	for (i = 0; i < xs->n; i++)
		fb_xfer_free(&xs->x[i]);
	xs->n = 0;
	return 0;
}

/* n zeroed transfers in a userdata whose __gc frees them, so a raise while collecting leaks nothing. */
fb_xfers *fb_new_xfers(lua_State *L, size_t n)
{
	fb_xfers *xs;
	if (n > ((size_t)-1 - sizeof(fb_xfers)) / sizeof(fb_xfer))
		luaL_error(L, "freshbooks.client: too many requests");
	xs = (fb_xfers *)lua_newuserdata(L, sizeof(fb_xfers) + (n ? n - 1 : 0) * sizeof(fb_xfer));
	xs->n = 0;
	luaL_getmetatable(L, FB_XFERS_MT);
	lua_setmetatable(L, -2);
	memset(xs->x, 0, (n ? n : 1) * sizeof(fb_xfer));
	xs->n = n;
	return xs;
}

/* ---- the policy ---------------------------------------------------------------------------------- */

/* Seconds (number > 0) -> milliseconds, at least 1. */
long fb_seconds_ms(lua_State *L, int idx, const char *fn, const char *name)
{
	lua_Number s;
	if (lua_type(L, idx) != LUA_TNUMBER)
		luaL_error(L, "%s: %s must be a number of seconds, got %s", fn, name, luaL_typename(L, idx));
	s = lua_tonumber(L, idx);
	if (!(s > 0 && s <= 86400.0 * 365))
		luaL_error(L, "%s: %s must be > 0 seconds", fn, name);
	return s * 1000 < 1 ? 1L : (long)(s * 1000);
}

/* Pushes t[k] without metamethods; returns its type. */
static int rawfield(lua_State *L, int t, const char *k)
{
	lua_pushstring(L, k);
	lua_rawget(L, t);
	return lua_type(L, -1);
}

static int is_tchar(unsigned char c)
{
	return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 9110 field values: visible characters, spaces, HTAB and obs-text; no other controls. */
static int bad_header_value(const char *s, size_t len)
{
	size_t i;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 1;
	}
	return 0;
}

/* Framing and connection management are the transport's: a caller's Content-Length shorter than the
 * body would make the rest a second request on a shared connection. */
static const char *const OWNED[] = {"host", "content-length", "transfer-encoding", "connection", "expect",
				    "te", "upgrade", "keep-alive", "proxy-connection", "trailer", NULL};

static int owned_header(const char *name, size_t nlen)
{
	int i;
	for (i = 0; OWNED[i] != NULL; i++)
		if (strlen(OWNED[i]) == nlen && strncasecmp(OWNED[i], name, nlen) == 0)
			return 1;
	return 0;
}

/* Checks one header and adds "Name: value" (or "Name;", libcurl's way to send an empty value). */
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
	if (owned_header(name, nlen))
		luaL_error(L, "%s: header '%s' is set by the transport, not by the caller", who, name);
	if (bad_header_value(value, vlen))
		luaL_error(L, "%s: header '%s' contains a control character (CR, LF, NUL, ...)", who, name);
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

static void append_line(lua_State *L, fb_xfer *x, const char *who, const char *line)
{
	struct curl_slist *l = curl_slist_append(x->headers, line);
	if (l == NULL)
		luaL_error(L, "%s: out of memory", who);
	x->headers = l;
}

static void collect_method(lua_State *L, int idx, fb_xfer *x, const char *who)
{
	size_t len, i;
	const char *s;
	if (rawfield(L, idx, "method") == LUA_TNIL) {
		memcpy(x->method, "GET", 4);
	} else {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "%s: method must be a string", who);
		s = lua_tolstring(L, -1, &len);
		if (len == 0 || len > 32)
			luaL_error(L, "%s: invalid method", who);
		for (i = 0; i < len; i++)
			if (!(s[i] >= 'A' && s[i] <= 'Z'))
				luaL_error(L, "%s: invalid method (upper-case letters only)", who);
		memcpy(x->method, s, len + 1);
	}
	lua_pop(L, 1);
}

static void collect_url(lua_State *L, int idx, fb_xfer *x, const char *who)
{
	size_t len, i;
	const char *s;
	if (rawfield(L, idx, "url") != LUA_TSTRING)
		luaL_error(L, "%s: url must be a string, got %s", who, luaL_typename(L, -1));
	s = lua_tolstring(L, -1, &len);
	if (!(strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0))
		luaL_error(L, "%s: url must start with http:// or https://", who);
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 127)
			luaL_error(L, "%s: url contains a space or control character", who);
	x->curlu = curl_url();
	if (x->curlu == NULL)
		luaL_error(L, "%s: out of memory", who);
	if (curl_url_set(x->curlu, CURLUPART_URL, s, 0) != CURLUE_OK)
		luaL_error(L, "%s: malformed url", who);
	x->https = strncasecmp(s, "https://", 8) == 0;
	lua_pop(L, 1);
}

/* Headers: {Name = value} (value a string, number or secret) or {"Name: value", ...}. Returns
 * whether the caller gave a User-Agent. */
static int collect_headers(lua_State *L, int idx, fb_xfer *x, const char *who)
{
	int h, has_user_agent = 0;
	size_t len, i;
	const char *s;
	if (rawfield(L, idx, "headers") == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	h = lua_gettop(L);
	if (lua_type(L, h) != LUA_TTABLE)
		luaL_error(L, "%s: headers must be a table", who);
	if (lua_rawlen(L, h) > 0) {
		size_t n = lua_rawlen(L, h);
		for (i = 1; i <= n; i++) {
			const char *colon, *v;
			lua_rawgeti(L, h, (int)i);
			if (lua_type(L, -1) != LUA_TSTRING)
				luaL_error(L, "%s: headers[%d] must be a \"Name: value\" string", who, (int)i);
			s = lua_tolstring(L, -1, &len);
			colon = (const char *)memchr(s, ':', len);
			if (colon == NULL)
				luaL_error(L, "%s: headers[%d] must be a \"Name: value\" string", who, (int)i);
			for (v = colon + 1; v < s + len && (*v == ' ' || *v == '\t'); v++)
				;
			lua_pushlstring(L, s, (size_t)(colon - s)); /* NUL-terminated name for messages */
			add_header(L, x, who, lua_tostring(L, -1), (size_t)(colon - s), v, (size_t)(s + len - v));
			if (strcasecmp(lua_tostring(L, -1), "user-agent") == 0)
				has_user_agent = 1;
			lua_pop(L, 2);
		}
	} else {
		lua_pushnil(L);
		while (lua_next(L, h)) {
			size_t nlen, vlen;
			const char *name, *value;
			if (lua_type(L, -2) != LUA_TSTRING)
				luaL_error(L, "%s: header names must be strings", who);
			name = lua_tolstring(L, -2, &nlen);
			if (lua_type(L, -1) == LUA_TNUMBER)
				lua_tostring(L, -1); /* values may be numbers (converted in place: the key is safe) */
			value = fb_tobytes(L, -1, &vlen);
			if (value == NULL)
				luaL_error(L, "%s: header '%s' must be a string or secret, got %s", who, name,
					   luaL_typename(L, -1));
			add_header(L, x, who, name, nlen, value, vlen);
			if (strcasecmp(name, "user-agent") == 0)
				has_user_agent = 1;
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	return has_user_agent;
}

static void collect_body(lua_State *L, int idx, fb_xfer *x, const char *who)
{
	size_t len, i;
	const char *s;
	int b;
	if (rawfield(L, idx, "body") == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	b = lua_gettop(L);
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
		luaL_error(L, "%s: body must be a string or an array of parts, got %s", who, luaL_typename(L, b));
	}
	lua_pop(L, 1);
}

/* Copies the request table at idx into x. Raises on bad arguments (x is freed by the xfers' __gc).
 * user_agent_line ("User-Agent: ..." or "User-Agent;") is added unless the caller gave one. */
void fb_collect_request(lua_State *L, int idx, fb_xfer *x, const char *who, const char *user_agent_line)
{
	const char *m;
	idx = lua_absindex(L, idx);
	if (lua_type(L, idx) != LUA_TTABLE)
		luaL_error(L, "%s: request table expected, got %s", who, luaL_typename(L, idx));
	collect_method(L, idx, x, who);
	collect_url(L, idx, x, who);
	if (!collect_headers(L, idx, x, who) && user_agent_line != NULL)
		append_line(L, x, who, user_agent_line);
	collect_body(L, idx, x, who);
	if (rawfield(L, idx, "timeout") != LUA_TNIL)
		x->timeout_ms = fb_seconds_ms(L, -1, who, "timeout");
	lua_pop(L, 1);

	m = x->method;
	/* A request that must not be sent twice never goes on a cached connection the server may have
	 * closed already: its failure would be ambiguous (a spent refresh token, a second invoice). */
	switch (rawfield(L, idx, "idempotent")) {
	case LUA_TNIL:
		x->once = !fb_method_idempotent(m);
		break;
	case LUA_TBOOLEAN:
		x->once = !lua_toboolean(L, -1);
		break;
	default:
		luaL_error(L, "%s: idempotent must be a boolean", who);
	}
	lua_pop(L, 1);
	x->keep_partial = rawfield(L, idx, "keep_partial") != LUA_TNIL && lua_toboolean(L, -1);
	lua_pop(L, 1);
	x->finish = rawfield(L, idx, "finish") != LUA_TNIL && lua_toboolean(L, -1);
	lua_pop(L, 1);
	/* a body goes out (maybe empty) unless HEAD, or GET without one */
	x->upload = strcmp(m, "HEAD") != 0 &&
		    (x->has_body || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0);
	if (x->upload) /* an empty Expect: removes libcurl's 100-continue round trip */
		append_line(L, x, who, "Expect:");
}

/* ---- core.http.render: the same policy, rendered as bytes --------------------------------------- */

/* libcurl's strings for the URL's parts, freed by fb_l_http_request whatever render_head does. */
typedef struct {
	fb_xfer *x;
	char *scheme, *host, *path, *query, *port;
} fb_url_parts;

/* Builds {scheme, host, port, head, body}, in a protected call: a memory error raised while libcurl's
 * strings are held leaked them. */
static int render_head(lua_State *L)
{
	fb_url_parts *u = (fb_url_parts *)lua_touserdata(L, 1);
	fb_xfer *x = u->x;
	luaL_Buffer b;
	struct curl_slist *h;
	int out, https = strcmp(u->scheme, "https") == 0, default_port = u->port == NULL;
	lua_createtable(L, 0, 7);
	out = lua_gettop(L);
	lua_pushboolean(L, x->once);
	lua_setfield(L, out, "once");
	lua_pushstring(L, u->scheme);
	lua_setfield(L, out, "scheme");
	lua_pushstring(L, u->host);
	lua_setfield(L, out, "host");
	lua_pushinteger(L, default_port ? (https ? 443 : 80) : atoi(u->port));
	lua_setfield(L, out, "port");

	luaL_buffinit(L, &b);
	luaL_addstring(&b, x->method);
	luaL_addchar(&b, ' ');
	luaL_addstring(&b, u->path);
	if (u->query != NULL) {
		luaL_addchar(&b, '?');
		luaL_addstring(&b, u->query);
	}
	luaL_addstring(&b, " HTTP/1.1\r\nHost: ");
	luaL_addstring(&b, u->host);
	if (!default_port) {
		luaL_addchar(&b, ':');
		luaL_addstring(&b, u->port);
	}
	luaL_addstring(&b, "\r\n");
	for (h = x->headers; h != NULL; h = h->next) {
		size_t n = strlen(h->data);
		if (strcmp(h->data, "Expect:") == 0) /* libcurl's directive, not a header */
			continue;
		if (n > 0 && h->data[n - 1] == ';' && memchr(h->data, ':', n) == NULL) {
			luaL_addlstring(&b, h->data, n - 1); /* "Name;" is an empty value */
			luaL_addstring(&b, ":");
		} else {
			luaL_addlstring(&b, h->data, n);
		}
		luaL_addstring(&b, "\r\n");
	}
	if (x->upload) {
		char len[32];
		snprintf(len, sizeof len, "Content-Length: %lu\r\n", (unsigned long)x->body.len);
		luaL_addstring(&b, len);
	}
	luaL_addstring(&b, "\r\n");
	luaL_pushresult(&b);
	lua_setfield(L, out, "head");
	if (x->upload) {
		lua_pushlstring(L, x->body.p != NULL ? x->body.p : "", x->body.len);
		lua_setfield(L, out, "body");
	}
	return 1;
}

int fb_l_http_request(lua_State *L)
{
	static const char *fn = "freshbooks.core.http.render";
	fb_xfers *xs;
	fb_url_parts u;
	const char *ua;
	size_t ualen;
	int rc;
	lua_settop(L, 2);
	ua = luaL_optlstring(L, 2, "lua-freshbooks/" FB_VERSION, &ualen);
	if (bad_header_value(ua, ualen)) /* its whole length: a NUL cut it short (and hid what followed) */
		return luaL_error(L, "%s: user_agent contains a control character", fn);
	lua_pushfstring(L, "User-Agent: %s", ua); /* 3: kept on the stack while collecting */
	xs = fb_new_xfers(L, 1);              /* 4 */
	memset(&u, 0, sizeof u);
	u.x = &xs->x[0];
	fb_collect_request(L, 1, u.x, fn, lua_tostring(L, 3));
	lua_pushcfunction(L, render_head); /* before libcurl's strings: may allocate (Lua 5.1) */
	if (curl_url_get(u.x->curlu, CURLUPART_SCHEME, &u.scheme, 0) != CURLUE_OK ||
	    curl_url_get(u.x->curlu, CURLUPART_HOST, &u.host, 0) != CURLUE_OK ||
	    curl_url_get(u.x->curlu, CURLUPART_PATH, &u.path, 0) != CURLUE_OK) {
		curl_free(u.scheme), curl_free(u.host), curl_free(u.path);
		return luaL_error(L, "%s: malformed url", fn);
	}
	if (curl_url_get(u.x->curlu, CURLUPART_PORT, &u.port, 0) != CURLUE_OK)
		u.port = NULL; /* the scheme's default */
	if (curl_url_get(u.x->curlu, CURLUPART_QUERY, &u.query, 0) != CURLUE_OK)
		u.query = NULL;
	lua_pushlightuserdata(L, &u);
	rc = lua_pcall(L, 1, 1, 0);
	curl_free(u.scheme), curl_free(u.host), curl_free(u.path), curl_free(u.query), curl_free(u.port);
	if (rc != 0)
		return lua_error(L);
	fb_xfer_free(u.x);
	return 1;
}
