/* The client userdata: a CURL easy handle attached to the CURLSH share (connections, DNS, TLS
 * sessions), so consecutive requests reuse one kept-alive connection, and the options every request of
 * the client shares. fb_open_http registers the client, its methods, core.http.render, limits and idempotent.
 *
 * libcurl never runs while a Lua error could be raised: every request is first copied from Lua into C
 * (request.c), then libcurl runs (transfer.c, batch.c), then the Lua results are built. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "http.h"

static void client_release(fb_client *c)
{
	if (c->easy != NULL)
		curl_easy_cleanup(c->easy); /* before the share it is attached to */
	c->easy = NULL;
	fb_share_release(c->share, c->own_share);
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

fb_client *fb_check_client(lua_State *L, const char *fn)
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

/* ---- options ------------------------------------------------------------------------------------- */

static const char *fn_client = "freshbooks.core.http.client";

static void opt_seconds(lua_State *L, void *field, const char *name)
{
	*(long *)field = fb_seconds_ms(L, -1, fn_client, name);
}

static void opt_string(lua_State *L, void *field, const char *name)
{
	size_t len;
	const char *s;
	char **dst = (char **)field;
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "%s: %s must be a string, got %s", fn_client, name, luaL_typename(L, -1));
	s = lua_tolstring(L, -1, &len);
	if (strlen(s) != len)
		luaL_error(L, "%s: %s contains a NUL byte", fn_client, name);
	free(*dst);
	*dst = (char *)malloc(len + 1);
	if (*dst == NULL)
		luaL_error(L, "%s: out of memory", fn_client);
	memcpy(*dst, s, len + 1);
}

static void opt_boolean(lua_State *L, void *field, const char *name)
{
	if (lua_type(L, -1) != LUA_TBOOLEAN)
		luaL_error(L, "%s: %s must be a boolean", fn_client, name);
	*(int *)field = lua_toboolean(L, -1);
}

static void opt_bytes(lua_State *L, void *field, const char *name)
{
	lua_Number n = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
	if (!(n >= 1 && n <= 9007199254740992.0) || n != floor(n))
		luaL_error(L, "%s: %s must be a positive integer (bytes)", fn_client, name);
	*(curl_off_t *)field = (curl_off_t)n;
}

typedef struct {
	const char *name;
	void (*set)(lua_State *L, void *field, const char *name);
	size_t offset;
} fb_option;

/* `share` is no field of the client: it decides whether one is acquired (a local, see l_client). */
#define SHARE_OPTION ((size_t)-1)
static const fb_option OPTIONS[] = {
	{"connect_timeout", opt_seconds, offsetof(fb_client, connect_timeout_ms)},
	{"timeout", opt_seconds, offsetof(fb_client, timeout_ms)},
	{"cainfo", opt_string, offsetof(fb_client, cainfo)},
	{"capath", opt_string, offsetof(fb_client, capath)},
	{"proxy", opt_string, offsetof(fb_client, proxy)},
	{"user_agent", opt_string, offsetof(fb_client, user_agent)},
	{"insecure_no_verify_tls", opt_boolean, offsetof(fb_client, insecure_no_verify_tls)},
	{"max_body", opt_bytes, offsetof(fb_client, max_body)},
	{"share", opt_boolean, SHARE_OPTION},
	{NULL, NULL, 0},
};

/* core.http.client(opts) -> client. Unknown options raise: a misspelt TLS option must not pass silently. */
static int l_client(lua_State *L)
{
	fb_client *c;
	int use_share = 1;
	size_t n;
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
			const fb_option *o;
			const char *k;
			if (lua_type(L, -2) != LUA_TSTRING)
				return luaL_error(L, "%s: option names must be strings", fn_client);
			k = lua_tostring(L, -2);
			for (o = OPTIONS; o->name != NULL && strcmp(o->name, k) != 0; o++)
				;
			if (o->name == NULL)
				return luaL_error(L, "%s: unknown option '%s'", fn_client, k);
			o->set(L, o->offset == SHARE_OPTION ? (void *)&use_share : (void *)((char *)c + o->offset), k);
			lua_pop(L, 1);
		}
	}
	if (c->user_agent == NULL) {
		static const char ua[] = "lua-freshbooks/" FB_VERSION;
		c->user_agent = (char *)malloc(sizeof ua);
		if (c->user_agent == NULL)
			return luaL_error(L, "%s: out of memory", fn_client);
		memcpy(c->user_agent, ua, sizeof ua);
	}
	n = strlen(c->user_agent);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)c->user_agent[i] < 0x20 || c->user_agent[i] == 0x7f)
			return luaL_error(L, "%s: user_agent contains a control character", fn_client);
	c->user_agent_line = (char *)malloc(n + 13);
	if (c->user_agent_line == NULL)
		return luaL_error(L, "%s: out of memory", fn_client);
	if (n == 0) /* an empty agent is sent empty ("Name;" in libcurl's header list) */
		memcpy(c->user_agent_line, "User-Agent;", 12);
	else
		snprintf(c->user_agent_line, n + 13, "User-Agent: %s", c->user_agent);
	if (use_share) {
		c->share = fb_share_acquire(&c->own_share);
		if (c->share == NULL)
			return luaL_error(L, "%s: cannot create the libcurl share", fn_client);
	}
	c->easy = curl_easy_init();
	if (c->easy == NULL)
		return luaL_error(L, "%s: curl_easy_init failed", fn_client);
	c->setup_rc = fb_setup_client(c->easy, c);
	c->closed = 0;
	return 1;
}

void fb_open_http(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"request", fb_client_request},
		{"batch", fb_client_batch},
		{"stream", fb_client_stream},
		{"close", client_close},
		{NULL, NULL},
	};
	fb_new_class(L, FB_CLIENT_MT, methods, client_close, client_tostring);
	fb_open_stream(L);
	fb_new_class(L, FB_XFERS_MT, NULL, fb_xfers_gc, NULL);

	lua_pushcfunction(L, l_client);
	lua_setfield(L, -2, "client");
	lua_pushcfunction(L, fb_l_http_request);
	lua_setfield(L, -2, "render");
	lua_pushstring(L, curl_version());
	lua_setfield(L, -2, "curl_version");

	/* The numbers both transports apply, so the cosocket transport reads them instead of copying. */
	lua_createtable(L, 0, 7);
	lua_pushnumber(L, FB_DEFAULT_CONNECT_MS / 1000.0);
	lua_setfield(L, -2, "connect_timeout");
	lua_pushnumber(L, FB_DEFAULT_TIMEOUT_MS / 1000.0);
	lua_setfield(L, -2, "timeout");
	lua_pushinteger(L, (lua_Integer)FB_DEFAULT_MAX_BODY);
	lua_setfield(L, -2, "max_body");
	lua_pushinteger(L, FB_MAX_HEADER_BYTES);
	lua_setfield(L, -2, "max_header_bytes");
	lua_pushinteger(L, FB_MAX_1XX);
	lua_setfield(L, -2, "max_1xx");
	lua_pushinteger(L, FB_DEFAULT_CONCURRENCY);
	lua_setfield(L, -2, "concurrency");
	lua_pushinteger(L, FB_MAX_CONCURRENCY);
	lua_setfield(L, -2, "max_concurrency");
	lua_setfield(L, -2, "limits");

	lua_newtable(L);
	for (const char *const *m = fb_idempotent_methods; *m != NULL; m++) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, *m);
	}
	lua_setfield(L, -2, "idempotent");
}
