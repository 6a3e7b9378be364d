/* Interrupts for programs that own their process (the `freshbooks` command): core.signal.trap()
 * replaces the interpreter's SIGINT handler, whose "interrupted!" error fires inside whatever Lua code
 * runs next and can be swallowed by any pcall there (lua-cjson's safe decode is one), with a flag.
 * Then a transfer in flight is aborted by libcurl's progress callback (code "aborted"), sleeps and lock
 * waits return early, and the program asks core.signal.interrupted() where it can stop cleanly.
 * Libraries and embedding hosts never call it: signals are the process's business. */
#include <signal.h>
#include <string.h>
#include "fb_internal.h"

static volatile sig_atomic_t g_signal;
static volatile sig_atomic_t g_trapping;

static void on_signal(int sig)
{
	g_signal = sig;
}

int fb_interrupted(void)
{
	return g_signal;
}

int fb_trapping_interrupts(void)
{
	return g_trapping;
}

/* core.signal.trap() -> true: SIGINT and SIGTERM set the flag (without SA_RESTART, so a blocking
 * wait returns at once). */
static int l_trap_interrupts(lua_State *L)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
		return luaL_error(L, "freshbooks.core.signal.trap: sigaction failed");
	g_trapping = 1;
	lua_pushboolean(L, 1);
	return 1;
}

/* core.signal.interrupted() -> the signal's number, or false. */
static int l_interrupted(lua_State *L)
{
	if (g_signal)
		lua_pushinteger(L, g_signal);
	else
		lua_pushboolean(L, 0);
	return 1;
}

void fb_open_interrupt(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"trap", l_trap_interrupts},
		{"interrupted", l_interrupted},
		{NULL, NULL},
	};
	luaL_setfuncs(L, funcs, 0);
}
