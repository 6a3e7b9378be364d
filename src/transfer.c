/* One transfer on an easy handle: the options a client sets once, the per-request options, the
 * libcurl callbacks (pure C: none calls into Lua), and the outcome turned into Lua values.
 * client:request{method=, url=, headers=, body=, timeout=} lives here. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <openssl/ssl.h>
#include "http.h"

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
	/* Bounded over all answers, not per answer: libcurl alone would take endless 1xx (up to its own
	 * 300 KB) and the cosocket transport must not be the only one to say no. */
	if (n > FB_MAX_HEADER_BYTES - x->head_bytes) {
		x->headers_too_large = 1;
		return 0;
	}
	x->head_bytes += n;
	if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		if (++x->answers > FB_MAX_1XX + 1) {
			x->too_many_1xx = 1;
			return 0;
		}
		x->head.len = 0; /* a new response (after 1xx): keep only the final one's headers */
		x->head_done = 0;
		if (n >= 12 && memcmp(p + 8, " 101", 4) == 0)
			x->switched = 1;
	} else if (x->head_done) {
		return n; /* a trailer (after the last chunk): not one of the answer's headers (as cosockets) */
	} else if ((n == 2 && p[0] == '\r' && p[1] == '\n') || (n == 1 && p[0] == '\n')) {
		x->head_done = 1; /* the end of a header block; for a 1xx another status line follows */
	}
	if (fb_buf_add(&x->head, p, n)) {
		x->oom = 1;
		return 0;
	}
	return n;
}

/* libcurl's OpenSSL backend writes every TLS session's secrets to $SSLKEYLOGFILE (named once, at
 * curl_global_init): with a capture of the traffic they reveal the tokens and the client secret. Its
 * callback is taken off each new context, which libcurl hands here after installing it. */
static CURLcode no_keylog(CURL *e, void *ssl_ctx, void *ud)
{
	(void)e, (void)ud;
	SSL_CTX_set_keylog_callback((SSL_CTX *)ssl_ctx, NULL);
	return CURLE_OK;
}

static int openssl_backend(void)
{
	const char *v = curl_version_info(CURLVERSION_NOW)->ssl_version;
	return v != NULL && strncmp(v, "OpenSSL/", 8) == 0; /* the context is an SSL_CTX only there */
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

/* With core.signal.trap, a Ctrl-C aborts the transfer in flight (libcurl calls this at least once
 * a second, and at once when a signal ends its wait). */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)ud, (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return fb_interrupted() != 0;
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
CURLcode fb_setup_client(CURL *e, const fb_client *c)
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
	if (openssl_backend())
		SET(CURLOPT_SSL_CTX_FUNCTION, no_keylog);
	SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	if (c->proxy != NULL) /* for the CONNECT to the proxy, which does not get the request's headers */
		SET(CURLOPT_USERAGENT, c->user_agent);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_READFUNCTION, on_read);
	SET(CURLOPT_SEEKFUNCTION, on_seek);
	SET(CURLOPT_XFERINFOFUNCTION, on_progress);
	return CURLE_OK;
}

/* What changes per request. Every method option is set explicitly, so nothing of the previous
 * request (a POST's body size, a custom method, HEAD's no-body) carries over. */
CURLcode fb_setup_request(CURL *e, const fb_client *c, fb_xfer *x)
{
	const char *m = x->method;
	int head = strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
	int plain_get = strcmp(m, "GET") == 0 && !x->has_body;
	x->max_body = c->max_body;
	x->errbuf[0] = '\0';
	SET(CURLOPT_ERRORBUFFER, x->errbuf);
	SET(CURLOPT_CURLU, x->curlu); /* the parse the policy checked */
	/* A proxy from the environment (http_proxy, ALL_PROXY, ...) never gets a plain-http request: it
	 * carries the bearer token, refresh token and client secret in clear (loopback api_url). "" turns
	 * libcurl's environment proxies off; NULL lets https use them, through a CONNECT tunnel that sees
	 * no header. The client's own `proxy` option (fb_setup_client) is used for both: the caller said so. */
	if (c->proxy == NULL)
		SET(CURLOPT_PROXY, x->https ? NULL : "");
	SET(CURLOPT_TIMEOUT_MS, x->timeout_ms > 0 ? x->timeout_ms : c->timeout_ms);
	SET(CURLOPT_FRESH_CONNECT, x->once ? 1L : 0L);
	SET(CURLOPT_NOPROGRESS, fb_trapping_interrupts() && !x->finish ? 0L : 1L);
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
void fb_forget_request(CURL *e)
{
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(e, CURLOPT_CURLU, NULL);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
	curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
	curl_easy_setopt(e, CURLOPT_READDATA, NULL);
	curl_easy_setopt(e, CURLOPT_SEEKDATA, NULL);
}

/* ---- results ------------------------------------------------------------------------------------- */

/* A Content-Length that is not all digits (libcurl reads "0x5" as 0 and "5 5" as 5, leaving bytes on
 * the connection), or two that disagree (RFC 9112 6.3: the message cannot be trusted). */
static int bad_length(const fb_buf *head)
{
	const char *p = head->p, *end = head->p + head->len, *first = NULL;
	size_t first_len = 0;
	while (p != NULL && p < end) {
		const char *eol = (const char *)memchr(p, '\n', (size_t)(end - p)), *le = eol ? eol : end, *v;
		if (le - p > 15 && strncasecmp(p, "content-length:", 15) == 0) {
			for (v = p + 15; v < le && (*v == ' ' || *v == '\t'); v++)
				;
			while (le > v && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t'))
				le--;
			if (le == v)
				return 1;
			for (const char *d = v; d < le; d++)
				if (!isdigit((unsigned char)*d))
					return 1;
			if (first == NULL) {
				first = v;
				first_len = (size_t)(le - v);
			} else if ((size_t)(le - v) != first_len || memcmp(first, v, first_len) != 0) {
				return 1;
			}
		}
		p = eol ? eol + 1 : end;
	}
	return 0;
}

/* Did the transfer fail, although libcurl may say it did not? libcurl accepts a header block cut off
 * by the end of the connection, and conflicting Content-Length headers (it uses the last). */
static int framing_error(const fb_xfer *x)
{
	return x->rc == CURLE_OK && (!x->head_done || x->switched || bad_length(&x->head));
}

int fb_xfer_failed(const fb_xfer *x)
{
	return x->rc != CURLE_OK || x->too_large || x->headers_too_large || x->too_many_1xx || x->oom ||
	       framing_error(x);
}

static int errbuf_says(const fb_xfer *x, const char *what)
{
	return strstr(x->errbuf, what) != NULL;
}

static const char *error_code(const fb_xfer *x)
{
	if (x->too_large || x->headers_too_large)
		return "too_large";
	if (x->switched || x->too_many_1xx)
		return "protocol";
	if (x->rc == CURLE_OK) /* a framing error: headers cut off by the close, or a bad length */
		return x->head_done ? "protocol" : "recv";
	/* Malformed answers libcurl reports as receive errors (messages stable since libcurl 7.x); the
	 * cosocket transport gives the same codes for the same bytes. */
	if (x->rc == CURLE_RECV_ERROR && errbuf_says(x, "chunked-encoding"))
		return "protocol";
	if (x->rc == CURLE_RECV_ERROR && errbuf_says(x, "Too large response headers"))
		return "too_large";
	if (x->rc == CURLE_OUT_OF_MEMORY && x->head.len > 0) /* a header line over libcurl's 100 KB */
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

static const char *error_message(const fb_xfer *x, char *buf, size_t size);

void fb_push_xfer_error(lua_State *L, const fb_xfer *x)
{
	char buf[96];
	const char *msg = error_message(x, buf, sizeof buf);
	fb_push_error(L, error_code(x), msg, strlen(msg));
	lua_pushinteger(L, (lua_Integer)x->rc);
	lua_setfield(L, -2, "curl_code");
	if (x->status > 0) {
		lua_pushinteger(L, (lua_Integer)x->status);
		lua_setfield(L, -2, "status");
	}
	if (x->keep_partial && x->resp.len > 0 && !x->too_large) {
		lua_pushlstring(L, x->resp.p, x->resp.len);
		lua_setfield(L, -2, "partial_body");
	}
}

/* What went wrong, in words (libcurl's own where it has them). */
static const char *error_message(const fb_xfer *x, char *buf, size_t size)
{
	if (x->too_large || x->rc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(buf, size, "response body larger than max_body (%lld bytes)", (long long)x->max_body);
		return buf;
	}
	else if (x->headers_too_large)
		return "response headers larger than 256 KiB";
	else if (x->oom)
		return "out of memory while receiving the response";
	else if (x->rc == CURLE_ABORTED_BY_CALLBACK && fb_interrupted())
		return "interrupted by a signal";
	else if (x->switched)
		return "the server switched protocols (HTTP 101), which was not asked for";
	else if (x->too_many_1xx)
		return "too many 1xx responses";
	else if (x->rc == CURLE_OUT_OF_MEMORY && x->head.len > 0)
		return "a response header line is larger than libcurl accepts (100 KB)";
	else if (x->rc == CURLE_OK && !x->head_done)
		return "the connection closed before the response headers ended";
	else if (x->rc == CURLE_OK)
		return "an invalid or conflicting Content-Length in the response";
	else if (x->errbuf[0] != '\0')
		return x->errbuf;
	else
		return curl_easy_strerror(x->rc);
}

/* Pushes the final response's headers: lower-cased names; a repeated header -> array of its values.
 * The names are lower-cased in place: head is not used afterwards. */
void fb_push_headers(lua_State *L, fb_buf *head)
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

/* Pushes one transfer's outcome: status, headers, body | nil, err. -> the number of values pushed. */
int fb_push_result(lua_State *L, fb_xfer *x)
{
	if (fb_xfer_failed(x)) {
		lua_pushnil(L);
		fb_push_xfer_error(L, x);
		return 2;
	}
	lua_pushinteger(L, (lua_Integer)x->status);
	fb_push_headers(L, &x->head);
	lua_pushlstring(L, x->resp.p != NULL ? x->resp.p : "", x->resp.len);
	return 3;
}

/* ---- a single request ---------------------------------------------------------------------------- */

/* client:request{method=, url=, headers=, body=, timeout=} -> status, headers, body | nil, err */
int fb_client_request(lua_State *L)
{
	static const char *fn = "freshbooks.client:request";
	fb_client *c = fb_check_client(L, fn);
	fb_xfers *xs;
	fb_xfer *x;
	int n;
	lua_settop(L, 2);
	xs = fb_new_xfers(L, 1);
	x = &xs->x[0];
	fb_collect_request(L, 2, x, fn, c->user_agent_line);

	/* From here to the end of curl_easy_perform nothing may raise. */
	if (c->setup_rc != CURLE_OK)
		c->setup_rc = fb_setup_client(c->easy, c);
	x->rc = c->setup_rc;
	if (x->rc == CURLE_OK)
		x->rc = fb_setup_request(c->easy, c, x);
	if (x->rc == CURLE_OK) {
		x->rc = curl_easy_perform(c->easy);
		if (x->head.len > 0) /* a response began: the code is this transfer's, not the last one's */
			curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &x->status);
	}
	fb_forget_request(c->easy);
	n = fb_push_result(L, x);
	fb_xfer_free(x); /* a big body: do not hold it twice until the next GC cycle */
	return n;
}

