/* client:batch: many transfers over one CURLM, at most `concurrency` at once, results in input order.
 * Every request is collected (and checked) before the first byte goes out. */
#include <math.h>
#include <stdio.h>
#include "http.h"

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
			x->rc = x->easy ? fb_setup_client(x->easy, c) : CURLE_OUT_OF_MEMORY;
			if (x->rc == CURLE_OK)
				x->rc = fb_setup_request(x->easy, c, x);
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
int fb_client_batch(lua_State *L)
{
	static const char *fn = "freshbooks.client:batch";
	fb_client *c = fb_check_client(L, fn);
	fb_xfers *xs;
	size_t n, i, limit = FB_DEFAULT_CONCURRENCY;
	luaL_checktype(L, 2, LUA_TTABLE);
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		lua_pushliteral(L, "concurrency");
		lua_rawget(L, 3); /* raw: no metamethod may run (it could close the client) */
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
	xs = fb_new_xfers(L, n);
	for (i = 0; i < n; i++) {
		char who[80];
		snprintf(who, sizeof who, "%s: request %d", fn, (int)(i + 1));
		lua_rawgeti(L, 2, (int)(i + 1));
		fb_collect_request(L, lua_gettop(L), &xs->x[i], who, c->user_agent_line);
		lua_pop(L, 1);
	}

	run_batch(c, xs, limit);

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

