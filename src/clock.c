/* Time for the Lua layer's retries and benchmarks: a monotonic clock and a blocking sleep that works
 * the same under Lua 5.4 and LuaJIT (OpenResty code passes ngx.sleep instead). */
#include <errno.h>
#include <time.h>
#include "fb_internal.h"

/* core.clock.now() -> seconds (float) on a monotonic clock: for intervals, not dates. */
static int l_now(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)fb_now());
	return 1;
}

/* core.clock.time() -> seconds (float) since the epoch, to the microsecond: for times compared across
 * processes and machines (an event's receipt in nginx, its commit in a sync worker). */
static int l_time(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)(ts.tv_nsec / 1000) / 1e6);
	return 1;
}

/* core.clock.sleep(seconds): blocks the thread; resumes after signals until the time has passed (or an
 * interrupt trapped by core.signal.trap arrives). */
static int l_sleep(lua_State *L)
{
	lua_Number s = luaL_checknumber(L, 1);
	struct timespec ts;
	if (!(s >= 0) || s > 86400.0)
		return luaL_argerror(L, 1, "seconds between 0 and 86400 expected");
	ts.tv_sec = (time_t)s; /* truncates: s >= 0 */
	ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !fb_interrupted())
		;
	return 0;
}

void fb_open_clock(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"now", l_now},
		{"sleep", l_sleep},
		{"time", l_time},
		{NULL, NULL},
	};
	luaL_setfuncs(L, funcs, 0);
}
