/* lua-freshbooks: the public C header for hosts that embed Lua and load its two C modules:
 * `freshbooks.core` (freshbooks/core.so: HTTP over libcurl, codecs, crypto, secrets) and `freshbooks.vm`
 * (freshbooks/vm.so: guest scripts in Lua states of their own, which freshbooks.guest drives).
 *
 * A host that manages libcurl itself calls these BEFORE luaopen_freshbooks_core (or before the first
 * `require "freshbooks.core"`):
 *
 *   freshbooks_skip_curl_global_init();   // the host already called curl_global_init()
 *   freshbooks_set_share(my_share);       // clients made with share=true use the host's CURLSH
 *   luaL_requiref(L, "freshbooks.core", luaopen_freshbooks_core, 0);
 *
 * The environment variable FRESHBOOKS_NO_CURL_GLOBAL_INIT (any value) also skips curl_global_init.
 * A host-supplied share stays the host's: it sets the share's locks if it runs Lua states on several
 * threads, keeps it alive until every client using it is closed, and frees it itself.
 *
 * Running its users' scripts (docs/guest.md): the host keeps the session in its own Lua state and never
 * gives user code that state, `freshbooks.core` or the session. It runs each script with
 *
 *   require("freshbooks.guest").run(fb, source, "=user.lua", { write = false, print = fn,
 *     businesses = { ids the script may touch },     -- default: every business the token reaches
 *     budget = { memory = bytes, instructions = n, time = seconds, patterns = steps, calls = n,
 *                output = bytes } })                   -> true, results... | nil, err (err.code)
 *
 * from its own (trusted) Lua code, as examples/embed/host.c does. freshbooks.vm then makes a new lua_State
 * per run (with lua_setallocf-capped memory, safe libraries only, nothing of the host's state), copies
 * only plain data between the two states, never raises across them, and closes the guest state before
 * run returns, so no user code runs in the host's lua_close. A run takes at most ~300 KiB of the calling
 * thread's C stack, whatever its budgets (docs/guest.md). Guest states are independent: threads may
 * run guests concurrently, each in its own host state. */
#ifndef FRESHBOOKS_H
#define FRESHBOOKS_H

#include <curl/curl.h>
#include <lua.h>

/* The library's version, and its only home (spec/rockspec_check fails on a copy anywhere else). */
#define FRESHBOOKS_VERSION "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* Opens the module: pushes the `freshbooks.core` table. */
int luaopen_freshbooks_core(lua_State *L);

/* Opens the guest VM module (in freshbooks/vm.so, not core.so): pushes the `freshbooks.vm` table. A host
 * that links the modules into its own binary registers both, e.g. in package.preload. */
int luaopen_freshbooks_vm(lua_State *L);

/* Do not call curl_global_init() when the module opens (the host did it). */
void freshbooks_skip_curl_global_init(void);

/* Share connections, DNS and TLS sessions through the host's CURLSH (NULL: back to the module's own,
 * which is created on first use and freed when its last client closes). Affects clients created
 * afterwards. */
void freshbooks_set_share(CURLSH *share);

#ifdef __cplusplus
}
#endif

#endif
