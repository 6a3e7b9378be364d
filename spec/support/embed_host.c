/* A minimal embedding host for core_spec.lua: it initialises libcurl itself, hands the module its own
 * CURLSH through freshbooks.h, runs a Lua request, then makes its own request through the same share.
 * Prints "lua=<nginx connection> host=<nginx connection>": equal numbers prove the Lua client used the
 * host's share (one kept-alive connection). Both modules are linked in and registered in
 * package.preload, as a host that builds them into its binary does; a guest run through freshbooks.vm
 * must answer 42 first (else the host exits 1). Usage: embed_host <url of /echo> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <lauxlib.h>
#include <lualib.h>
#include "freshbooks.h"

static char body[65536];
static size_t body_len;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	size_t len = size * n;
	(void)ud;
	if (len > sizeof body - 1 - body_len)
		return 0;
	memcpy(body + body_len, p, len);
	body_len += len;
	body[body_len] = '\0';
	return len;
}

static const char *script =
	"local core = require 'freshbooks.core'\n"
	"local c = core.http.client()\n"
	"local status, _, body = assert(c:request{ url = ... })\n"
	"c:close()\n"
	"return (body:match('\"connection\":(%d+)'))\n";

static const char *guest_script =
	"local g = require('freshbooks.vm').new('return 6 * 7', '=g', { memory = 1e6, instructions = 1e6,\n"
	"  time = 5, patterns = 1e6, output = 1e6 })\n"
	"local kind, p = g:resume()\n"
	"assert(kind == 'done' and p[1] == 42, 'the guest VM did not answer 42')\n";

int main(int argc, char **argv)
{
	CURLSH *share;
	CURL *easy;
	lua_State *L;
	const char *p;
	int rc = 1;
	if (argc != 2)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	share = curl_share_init();
	curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	freshbooks_skip_curl_global_init();
	freshbooks_set_share(share);

	L = luaL_newstate();
	luaL_openlibs(L);
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_freshbooks_core);
	lua_setfield(L, -2, "freshbooks.core");
	lua_pushcfunction(L, luaopen_freshbooks_vm);
	lua_setfield(L, -2, "freshbooks.vm");
	lua_pop(L, 2);
	if (luaL_dostring(L, guest_script) != 0) {
		fprintf(stderr, "guest: %s\n", lua_tostring(L, -1));
		goto done;
	}
	if (luaL_loadstring(L, script) != 0 || (lua_pushstring(L, argv[1]), lua_pcall(L, 1, 1, 0)) != 0) {
		fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
		goto done;
	}
	printf("lua=%s ", lua_tostring(L, -1));

	easy = curl_easy_init();
	curl_easy_setopt(easy, CURLOPT_SHARE, share);
	curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	if (curl_easy_perform(easy) == CURLE_OK && (p = strstr(body, "\"connection\":")) != NULL) {
		printf("host=%d\n", atoi(p + strlen("\"connection\":")));
		rc = 0;
	}
	curl_easy_cleanup(easy);
done:
	lua_close(L);
	curl_share_cleanup(share);
	curl_global_cleanup();
	return rc;
}
