/* luaopen_freshbooks_core: version strings, curl_global_init (once, unless the host opted out), and the
 * pieces from the other files. Guest scripts have a module of their own (guest.c: freshbooks.vm). */
#include <curl/curl.h>
#include "freshbooks.h"
#include "fb_internal.h"

int fb_curl_global_init(void); /* share.c */

int luaopen_freshbooks_core(lua_State *L)
{
	int rc = fb_curl_global_init();
	if (rc != 0)
		return luaL_error(L, "freshbooks.core: curl_global_init failed: %s", curl_easy_strerror((CURLcode)rc));
	/* Once libcurl is globally initialised it must never be unloaded (there is no matching cleanup:
	 * other Lua states of the process may still use it), and with this module its libraries stay. */
	fb_pin_module((void *)&luaopen_freshbooks_core);
	lua_newtable(L);
	lua_pushliteral(L, FB_VERSION);
	lua_setfield(L, -2, "version");
	fb_open_secret(L);
	fb_open_codec(L);
	fb_open_crypto(L);
	fb_open_http(L);
	fb_open_lockfile(L);
	fb_open_clock(L);
	fb_open_interrupt(L);
	fb_open_decode(L);
	fb_open_fd(L);
	return 1;
}
