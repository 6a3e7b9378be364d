/* A tiny Lua host whose allocator fails on demand, for spec/cmem_spec.lua: the C core must survive a
 * memory error at every allocation it makes (a clean Lua error, nothing leaked or corrupted).
 *   oom_host SCRIPT  runs SCRIPT with these globals:
 *     oom(n)        the n-th growing allocation from now fails, and every one after it; oom(0): none
 *     oom_failed()  whether an allocation was refused since the last oom(n)
 *     curl_live()   blocks libcurl holds (its allocator is counted: curl_global_init_mem)
 *     nfds()        open file descriptors of the process
 * The host's own allocator wraps the state's (lua_setallocf works on every VM; LuaJIT refuses custom
 * allocators in lua_newstate on builds without GC64), and is put back before lua_close. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <curl/curl.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static lua_Alloc orig;
static void *orig_ud;
static long countdown;
static int failing;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	size_t old = ptr != NULL ? osize : 0;
	(void)ud;
	if (nsize > old) {
		if (countdown > 0 && --countdown == 0)
			failing = 1;
		if (failing)
			return NULL;
	}
	return orig(orig_ud, ptr, osize, nsize);
}

static long curl_blocks;
static void *c_malloc(size_t n)
{
	void *p = malloc(n);
	if (p != NULL)
		curl_blocks++;
	return p;
}
static void c_free(void *p)
{
	if (p != NULL)
		curl_blocks--;
	free(p);
}
static void *c_realloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (p == NULL && q != NULL)
		curl_blocks++;
	return q;
}
static char *c_strdup(const char *s)
{
	char *p = strdup(s);
	if (p != NULL)
		curl_blocks++;
	return p;
}
static void *c_calloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p != NULL)
		curl_blocks++;
	return p;
}

static int l_oom(lua_State *L)
{
	countdown = (long)luaL_optnumber(L, 1, 0);
	failing = 0;
	return 0;
}

static int l_oom_failed(lua_State *L)
{
	lua_pushboolean(L, failing);
	return 1;
}

static int l_curl_live(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)curl_blocks);
	return 1;
}

static int l_nfds(lua_State *L)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;
	if (d == NULL)
		return luaL_error(L, "nfds: cannot read /proc/self/fd");
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	lua_pushinteger(L, n - 1); /* not the directory's own descriptor */
	return 1;
}

int main(int argc, char **argv)
{
	lua_State *L;
	int rc;
	if (argc != 2) {
		fprintf(stderr, "usage: oom_host SCRIPT\n");
		return 2;
	}
	if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, c_malloc, c_free, c_realloc, c_strdup, c_calloc) != CURLE_OK)
		return 2;
	L = luaL_newstate();
	if (L == NULL)
		return 2;
	orig = lua_getallocf(L, &orig_ud);
	lua_setallocf(L, failing_alloc, NULL);
	luaL_openlibs(L);
	lua_register(L, "oom", l_oom);
	lua_register(L, "oom_failed", l_oom_failed);
	lua_register(L, "curl_live", l_curl_live);
	lua_register(L, "nfds", l_nfds);
	rc = luaL_dofile(L, argv[1]);
	if (rc != 0)
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
	countdown = 0;
	failing = 0;
	lua_setallocf(L, orig, orig_ud);
	lua_close(L);
	/* _exit, not exit: with the ASan runtime preloaded (make asan), libp11-kit's exit handler
	 * deadlocks on glibc's locale lock; nothing is left to flush but stdio. */
	fflush(NULL);
	_exit(rc != 0);
}
