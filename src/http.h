/* What the HTTP files of the core share (not installed): the client and transfer structures.
 *   share.c     process-wide libcurl state: curl_global_init, the CURLSH
 *   request.c   the request policy: a Lua request table checked and copied into an fb_xfer; also
 *               core.http.render, the same policy rendering an HTTP/1.1 request head (cosockets)
 *   transfer.c  one transfer on an easy handle: options, callbacks, outcome -> Lua
 *   batch.c     many transfers over one CURLM: client:batch, client:stream
 *   client.c    the client userdata and its options; registers everything (fb_open_http) */
#ifndef FB_HTTP_H
#define FB_HTTP_H

#include <curl/curl.h>
#include "fb_internal.h"

#define FB_XFERS_MT "freshbooks.transfers"
#define FB_DEFAULT_CONNECT_MS 10000L
#define FB_DEFAULT_TIMEOUT_MS 60000L
#define FB_DEFAULT_MAX_BODY ((curl_off_t)64 * 1024 * 1024)
/* Response headers, all lines together. Below libcurl's own 300 KB limit, so this check (too_large)
 * fires first and the cosocket transport can apply the very same number. */
#define FB_MAX_HEADER_BYTES (256 * 1024)
/* Informational (1xx) answers skipped before the final one; a 17th is a protocol error. Their header
 * lines count towards FB_MAX_HEADER_BYTES with the final answer's (the cosocket transport: the same). */
#define FB_MAX_1XX 16
#define FB_DEFAULT_CONCURRENCY 8
#define FB_MAX_CONCURRENCY 256

/* The methods that may be sent twice (RFC 9110 §9.2.2, less TRACE): any other, and any request that
 * says idempotent = false, goes on a fresh connection and is never retried after it may have left.
 * NULL-terminated; exported as core.http.idempotent, so retries and the cosocket transport read this list. */
extern const char *const fb_idempotent_methods[];
int fb_method_idempotent(const char *method);

typedef struct {
	CURL *easy; /* NULL once closed */
	CURLSH *share;
	int own_share, closed;
	long connect_timeout_ms, timeout_ms;
	char *cainfo, *capath, *proxy, *user_agent;
	char *user_agent_line; /* "User-Agent: ...", sent as a request header: cheaper than CURLOPT_USERAGENT */
	int insecure_no_verify_tls;
	curl_off_t max_body;
	CURLcode setup_rc; /* of fb_setup_client on easy: a failure is reported by (and retried on) each request */
} fb_client;

typedef struct {
	char method[33]; /* a token of upper-case letters, 1..32 of them */
	char *url;
	CURLU *curlu;       /* the URL, parsed once: our checks and libcurl use the same parse */
	struct curl_slist *headers;
	fb_buf body;
	size_t body_sent;   /* read offset of the upload callback */
	int has_body, upload; /* upload: the request sends a body (through on_read), maybe empty */
	int once;           /* must not be sent twice (POST, PATCH, idempotent = false): a fresh connection */
	int keep_partial;   /* on a failure after the body began, hand back what arrived (err.partial_body) */
	int finish;         /* not aborted by a trapped interrupt: it ends by its own timeout */
	int https;
	long timeout_ms;    /* 0: the client's */
	CURL *easy;         /* batch only: owned by this transfer while it runs */
	curl_off_t max_body;
	fb_buf resp, head;  /* body, raw header lines of the final response */
	int too_large, headers_too_large, oom;
	int head_done;      /* the final response's header block ended (its empty line arrived) */
	int switched;       /* a 101: the server changed protocols we never asked for */
	int answers;        /* status lines so far (1xx and the final one): at most FB_MAX_1XX + 1 */
	int too_many_1xx;
	size_t head_bytes;  /* header bytes of every answer so far, 1xx included */
	CURLcode rc;
	long status;
	char errbuf[CURL_ERROR_SIZE];
} fb_xfer;

typedef struct {
	size_t n;
	fb_xfer x[1];
} fb_xfers;

/* share.c */
int fb_curl_global_init(void);
CURLSH *fb_share_acquire(int *own);
void fb_share_retain(CURLSH *sh, int own);
void fb_share_release(CURLSH *sh, int own);

/* request.c */
fb_xfers *fb_new_xfers(lua_State *L, size_t n);
void fb_xfer_free(fb_xfer *x);
void fb_collect_request(lua_State *L, int idx, fb_xfer *x, const char *who, const char *user_agent_line);
int fb_xfers_gc(lua_State *L);
int fb_l_http_request(lua_State *L);
long fb_seconds_ms(lua_State *L, int idx, const char *fn, const char *name);

/* transfer.c */
CURLcode fb_setup_client(CURL *e, const fb_client *c);
CURLcode fb_setup_request(CURL *e, const fb_client *c, fb_xfer *x);
void fb_forget_request(CURL *e);
int fb_xfer_failed(const fb_xfer *x);
void fb_push_xfer_error(lua_State *L, const fb_xfer *x);
void fb_push_headers(lua_State *L, fb_buf *head);
int fb_push_result(lua_State *L, fb_xfer *x);
int fb_client_request(lua_State *L);

/* batch.c */
int fb_client_batch(lua_State *L);
int fb_client_stream(lua_State *L);
void fb_open_stream(lua_State *L);

/* client.c */
fb_client *fb_check_client(lua_State *L, const char *fn);

#endif
