/* luaopen_freshbooks_core: version strings, curl_global_init (once, unless the host opted out), and the
 * pieces from the other files. Guest scripts have a module of their own (guest.c: freshbooks.vm). */
#include <curl/curl.h>
#include "freshbooks.h"
#include "fb_internal.h"

int fb_curl_global_init(void); /* share.c */

/* One table per concern, filled by that concern's file: a reader sees the concerns in the module's
 * shape (core.http.client, core.codec.query, core.fs.lock, ...). */
static void group(lua_State *L, const char *name, void (*open)(lua_State *L))
{
	lua_newtable(L);
	open(L);
	lua_setfield(L, -2, name);
}

static void fb_open_json(lua_State *L)
{
	fb_open_decode(L);
	fb_open_encode(L);
}

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
	group(L, "http", fb_open_http);       /* client.c: client, render, limits, idempotent, curl_version */
	group(L, "codec", fb_open_codec);     /* codec.c: url and form encodings, query, base64, hex */
	group(L, "crypto", fb_open_crypto);   /* crypto.c: hmac_sha256, equals, random_bytes */
	group(L, "secret", fb_open_secret);   /* secret.c: new, reveal, is, masker */
	group(L, "json", fb_open_json);       /* decode.c, encode.c: decode, null, encode */
	group(L, "fs", fb_open_lockfile);     /* lockfile.c: lock, read, write_atomic, overwrite */
	group(L, "clock", fb_open_clock);     /* clock.c: now, sleep */
	group(L, "signal", fb_open_interrupt); /* interrupt.c: trap, interrupted */
	group(L, "process", fb_open_fd);     /* fd.c: close_on_exec, guard_stdio */
	group(L, "sqlite", fb_open_sqlite);   /* sqlite.c: open (the mirror's database) */
	group(L, "pg", fb_open_pg);           /* pg.c: connect (the mirror's PostgreSQL, libpq) */
	return 1;
}
