/* freshbooks.vm: guest scripts in a Lua state of their own (freshbooks.guest is the Lua side, docs/guest.md
 * the contract). A module of its own, apart from freshbooks.core: it needs no libcurl, and a host that
 * only runs guests loads only this.
 *
 *   local g = require("freshbooks.vm").new(source, chunkname, { memory =, instructions =, time =,
 *                                                                 patterns =, output = })
 *   local kind, payload = g:resume(reply)   -- until kind is "done" or "error"
 *
 * Each run gets a new lua_State that holds only safe libraries, a prelude (guest_env.lua) and the
 * script; nothing of the host's state exists in it. The script talks to the host through two C
 * functions that copy plain data (plain.c) and yield: g:resume returns ("call", {n =, op, args...}) or
 * ("print", text) to the host's Lua, which runs the call against its session and passes the answer to
 * the next g:resume. No C code here calls the host's Lua, so the host's calls may yield (OpenResty).
 * Plain Lua 5.1 cannot yield across pcall, metamethods or for iterators, where scripts call the API:
 * there the bridge calls the host's `serve(kind, payload)` (g:resume's second argument) at once, in a
 * protected call on the host's state, and hands its reply back (FB_LUA51 below).
 *
 * Budgets, each ending the run with its own code (the state is closed at once, nothing of it runs
 * again): memory (the state's allocator refuses to grow past the cap), instructions (a count hook, plus
 * what library loops walk: charge()), time (a monotonic deadline checked in the hook, in the allocator,
 * at every charge, resume and crossing), pattern steps (the Lua matcher in guest_patterns.lua charges
 * them here), output (printed bytes and results). Budgets are the run's, not a thread's: every thread
 * of the script is charged to the same counts, and a stop ends them all (halt()).
 *
 * The C stack: a run uses at most CSTACK bytes of the host thread's C stack below g:resume (checked at
 * every resume of a coroutine, in the hook and before the wrapped library calls that may call Lua), on
 * every VM and whatever the budgets (LuaJIT does not bound C recursion itself; Lua 5.x stops at 200 C
 * levels, which 5.3's 8 KiB buffers make more than 1 MiB).
 *
 * Every operation on the guest state that may allocate (and so raise) runs inside a protected call on
 * that state; nothing raised in one state ever unwinds through the other. */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lualib.h>
#include "fb_internal.h"
#include "guest_lua.h" /* generated from the src/guest_*.lua chunks (Makefile) */
#ifdef FB_LUAJIT
#include <luajit.h>
#endif

#define GUEST_MT "freshbooks.guest"
#define HOOK_EVERY 1000          /* instructions between two budget checks (at most: see hook_period) */
#define MAX_CALL (1u << 20)      /* bytes of arguments in one call to the host */
#define MAX_REPLY (16u << 20)    /* bytes of one answer from the host */
#define MAX_MESSAGE 2000         /* bytes of an error message kept */
#define MIN_MEMORY (256u << 10)  /* a smaller cap could not hold the libraries and the prelude */
#define CSTACK (256u << 10)      /* bytes of C stack a run may use below g:resume (see too_deep) */
#define ALLOC_CHECK (256u << 10) /* bytes allocated between two readings of the clock */
#define BYTES_PER_UNIT 16        /* bytes a library function scans for one instruction of the budget */
/* The most values a library function pushes at once (more: it raises "too many results"). */
#if defined(LUAI_MAXSTACK)
#define MAX_RESULTS LUAI_MAXSTACK
#elif defined(FB_LUAJIT)
#define MAX_RESULTS 65500 /* LJ_STACK_MAX */
#else
#define MAX_RESULTS LUAI_MAXCSTACK
#endif

enum { STOP_NONE, STOP_MEMORY, STOP_CPU, STOP_TIME, STOP_PATTERNS, STOP_OUTPUT, STOP_HOST };
static const char *const STOP_CODE[] = {
	NULL, "budget_memory", "budget_cpu", "budget_time", "budget_patterns", "budget_output", "stopped",
};
static const char *const STOP_TEXT[] = {
	NULL, "the script used more memory than its budget", "the script ran more instructions than its budget",
	"the script ran past its deadline", "the script's patterns took more steps than their budget",
	"the script printed or returned more than its output budget", "the host stopped the run",
};

/* What a resume ended with. */
enum { RAN_CALL = 1, RAN_PRINT, RAN_DONE, RAN_ERROR, RAN_BAD_RESULT };

typedef struct {
	lua_State *G;       /* the guest state; NULL once closed */
	lua_State *T;       /* the script's thread (anchored in G's registry) */
	lua_State *running; /* the script's thread running now (halt_running() stops it from C) */
	int step_ref;       /* G's registry: the step function (made once, so a resume allocates nothing) */
	lua_Alloc alloc;    /* G's own allocator, which capped_alloc wraps */
	void *alloc_ud;
	size_t used, peak, memory;
	size_t allocated;   /* bytes allocated since the clock was last read */
	int refused;        /* the last growing allocation was refused */
	unsigned long long instructions, max_instructions, steps, max_steps;
	unsigned long long unchecked; /* instructions charged since the clock was last read */
	uintptr_t cstack_base; /* the C stack at g:resume */
	size_t output, max_output;
	double started, deadline, ended;
	int stop;           /* STOP_*: which budget ran out (sticky) */
	int pending;        /* RAN_CALL or RAN_PRINT: what the script's last yield asks for */
	int first;          /* arguments already on the script's thread (its session) */
	int ran;            /* RAN_*: how the last step ended */
	int busy;
#ifdef FB_LUA51
	lua_State *host;    /* during a resume: the host's state, and its serve function in its registry */
	int serve_ref;
	int host_failed;    /* serve raised: its error is on the host's stack, raised once the step is over */
#endif
	fb_buf msg;         /* the crossing in flight: plain data, or an error message */
	fb_buf dump;        /* bytecode of a chunk of ours being cached */
} fb_guest;

/* Our two chunks: compiled once per process, then loaded as bytecode (compiling the prelude costs
 * several times more than making the state). Only this bytecode is ever loaded: scripts are text. */
typedef struct {
	const char *src, *name;
	size_t len;
	char *bc; /* kept for the life of the process, like the module itself */
	size_t bclen;
} fb_chunk;
static fb_chunk env_chunk = {fb_guest_env_lua, "=freshbooks.guest", sizeof fb_guest_env_lua - 1, NULL, 0};
static fb_chunk patterns_chunk = {fb_guest_patterns_lua, "=freshbooks.patterns", sizeof fb_guest_patterns_lua - 1,
				  NULL, 0};
static fb_chunk sort_chunk = {fb_guest_sort_lua, "=freshbooks.sort", sizeof fb_guest_sort_lua - 1, NULL, 0};
static pthread_mutex_t chunk_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- the guest state's allocator and hook ------------------------------------------------------ */

static void halt_running(fb_guest *g);
static void hook_sooner(fb_guest *g);

/* Wraps the state's own allocator (lua_setallocf works on every VM; LuaJIT cannot take a custom
 * allocator in lua_newstate on x86_64 builds without GC64). It also reads the clock every ALLOC_CHECK
 * bytes: a library function that makes strings (rep, concat, upper, format, ..) works in proportion to
 * what it allocates, so past the deadline it gets no more memory. A stopped run gets none. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	fb_guest *g = (fb_guest *)ud;
	size_t old = ptr != NULL ? osize : 0; /* for a new block, Lua 5.4 passes the object type in osize */
	void *p;
	if (nsize > old && g->stop)
		return NULL;
	if (nsize > old && (g->allocated += nsize - old) >= ALLOC_CHECK) {
		g->allocated = 0;
		if (fb_now() >= g->deadline) {
			g->stop = STOP_TIME;
			halt_running(g);
			return NULL;
		}
	}
	if (nsize > old && nsize - old > g->memory - g->used) {
#if LUA_VERSION_NUM >= 504
		/* Lua 5.4 collects all garbage and asks again; refused twice, the budget is spent. (Its
		 * lauxlib's buffers, which ask us directly, raise a memory error when refused.) */
		if (g->refused && !g->stop) {
			g->stop = STOP_MEMORY;
			halt_running(g);
		}
		g->refused = 1;
#else
		/* LuaJIT and Lua 5.1 raise at once; Lua 5.3's lauxlib buffers raise a plain, catchable error. */
		if (!g->stop) {
			g->stop = STOP_MEMORY;
			halt_running(g);
		}
#endif
		return NULL;
	}
	p = g->alloc(g->alloc_ud, ptr, osize, nsize);
	if (p != NULL || nsize == 0) {
		g->used = g->used - old + nsize;
		if (g->used > g->peak)
			g->peak = g->used;
		if (nsize > old) {
			g->refused = 0;
			if (nsize - old >= ALLOC_CHECK)
				hook_sooner(g);
		}
	}
	return p;
}

static fb_guest *guest_of(lua_State *L)
{
	void *ud;
	(void)lua_getallocf(L, &ud);
	return (fb_guest *)ud;
}

static void on_count(lua_State *L, lua_Debug *ar);

/* Once the run is stopped, the hook runs at every instruction of the running thread (LuaJIT's hook is
 * the state's, the others' the thread's): the allocator and charge() stop it so, between two of its
 * instructions. Every other thread of the script is stopped where it next gets control: when what it
 * resumed returns (tick) or when it is resumed (tick, spawn), both in the prelude's coroutine functions,
 * the only ways from one thread to another. */
static void halt_running(fb_guest *g)
{
	if (g->running != NULL)
		lua_sethook(g->running, on_count, LUA_MASKCOUNT, 1);
}

/* Ends the run from a C function of the guest state: yields (nothing unwinds, see on_count), or raises
 * where no yield is possible, and the hook runs at every instruction of this thread from now on, so the
 * script gets no further. */
static int halt(lua_State *L, fb_guest *g)
{
	lua_sethook(L, on_count, LUA_MASKCOUNT, 1);
#if LUA_VERSION_NUM >= 503 || defined(FB_LUAJIT)
	if (lua_isyieldable(L))
		return lua_yield(L, 0);
#endif
	return luaL_error(L, "freshbooks.guest: %s", STOP_CODE[g->stop]);
}

static int stop(lua_State *L, fb_guest *g, int why)
{
	if (!g->stop)
		g->stop = why;
	return halt(L, g);
}

/* Charges n instructions of work a library function is about to do (elements it walks, bytes it scans
 * / BYTES_PER_UNIT), and reads the clock once HOOK_EVERY of them have gone by unchecked. -> whether the
 * run may go on. */
static int charge(fb_guest *g, lua_Number n)
{
	if (g->stop)
		return 0;
	if (n > 0) {
		unsigned long long u = n >= 1e18 ? 1000000000000000000ull : (unsigned long long)n;
		g->instructions += u;
		g->unchecked += u;
	}
	if (g->instructions > g->max_instructions)
		g->stop = STOP_CPU;
	else if (g->unchecked >= HOOK_EVERY) {
		g->unchecked = 0;
		if (fb_now() >= g->deadline)
			g->stop = STOP_TIME;
	}
	return !g->stop;
}

/* Instructions between two runs of the hook: HOOK_EVERY while the state holds at most 1 MiB, fewer as it
 * holds more (down to 1). One instruction may cost time in proportion to the state's size (comparing
 * two long strings, next() over a sparse table), so the time between two readings of the clock stays
 * near what HOOK_EVERY instructions over 1 MiB cost, whatever the memory budget. */
static int hook_period(const fb_guest *g)
{
	size_t p = (size_t)HOOK_EVERY * (1u << 20) / (g->used + 1);
	return p >= HOOK_EVERY ? HOOK_EVERY : p < 1 ? 1 : (int)p;
}

/* The state grew: its hook runs at the shorter period from now on, not from its next run (the
 * instructions up to then could each cost the new size). Only ever shortened here (lua_sethook starts
 * the count afresh); the hook lengthens it again. */
static void hook_sooner(fb_guest *g)
{
	if (g->running != NULL && !g->stop && hook_period(g) < lua_gethookcount(g->running))
		lua_sethook(g->running, on_count, LUA_MASKCOUNT, hook_period(g));
}

/* Whether the C stack below g:resume is deeper than a run may use. The frame address is the real stack
 * (a local's address may be on ASan's fake stack). */
static int too_deep(fb_guest *g)
{
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);
	return g->cstack_base > here && g->cstack_base - here > CSTACK;
}

/* Once a budget is spent, the hook yields whatever coroutine is running (a hook may yield, with no
 * values): nothing unwinds, so no pcall, message handler or __close of the script runs again, and the
 * script's thread comes back to g_step, which ends the run. A coroutine of the script yields to its
 * resumer, whose own hook fires within HOOK_EVERY instructions. Raising instead would not do: a
 * message handler then runs with hooks off, and in Lua 5.4 errors caught by nested pcalls in a
 * coroutine unwind in time quadratic in the work done. Where no yield is possible (inside a C call that
 * called Lua) the hook raises, until the C call is left. */
static void on_count(lua_State *L, lua_Debug *ar)
{
	fb_guest *g = guest_of(L);
	(void)ar;
	if (!g->stop) {
		int period = lua_gethookcount(L);
		g->instructions += (unsigned long long)period;
		g->unchecked = 0;
		if (g->instructions > g->max_instructions)
			g->stop = STOP_CPU;
		else if (fb_now() >= g->deadline)
			g->stop = STOP_TIME;
		else {
			if (hook_period(g) != period)
				lua_sethook(L, on_count, LUA_MASKCOUNT, hook_period(g));
			/* C recursion through the script's Lua (a __tostring under string.format, a coroutine
			 * resumed in a comparator) runs instructions at every level: it is seen here. */
			if (too_deep(g))
				luaL_error(L, "C stack overflow");
			return;
		}
	}
	lua_sethook(L, on_count, LUA_MASKCOUNT, 1);
#if LUA_VERSION_NUM >= 503
	if (lua_isyieldable(L)) {
		lua_yield(L, 0); /* in a hook, returns: the VM yields when the hook is done */
		return;
	}
	luaL_error(L, "freshbooks.guest: %s", STOP_CODE[g->stop]);
#elif defined(FB_LUAJIT)
	lua_yield(L, 0); /* LuaJIT yields from a hook, or raises where it cannot */
#else
	/* Lua 5.1 cannot yield from a hook: it raises, and the hook raises again at every instruction the
	 * script gets after a pcall (xpcall is rebuilt on pcall: no handler runs with hooks off). */
	luaL_error(L, "freshbooks.guest: %s", STOP_CODE[g->stop]);
#endif
}

/* ---- C functions of the guest state ------------------------------------------------------------ */

static void push_seq(lua_State *L, fb_guest *g);
static void put_reply(lua_State *L, fb_guest *g, int idx);

/* Hands the script's request to the host: yields the marker (the guest's address as light userdata,
 * which no script can make) through every coroutine of the script (guest_env.lua passes it up). */
static int yield_to_host(lua_State *L, fb_guest *g, int what)
{
	g->pending = what;
	lua_settop(L, 0);
	lua_pushlightuserdata(L, g);
	return lua_yield(L, 1);
}

#ifdef FB_LUA51
/* On the host's state, protected: serve(kind, payload) answers the request in g->msg, and its reply
 * replaces it there. `false` ends the run (the host has stopped it). */
static int host_serve(lua_State *H)
{
	fb_guest *g = (fb_guest *)lua_touserdata(H, 1);
	lua_rawgeti(H, LUA_REGISTRYINDEX, g->serve_ref);
	if (g->pending == RAN_CALL) {
		lua_pushliteral(H, "call");
		push_seq(H, g);
	} else {
		lua_pushliteral(H, "print");
		fb_plain_get_seq(H, g->msg.p);
	}
	lua_call(H, 2, 1);
	g->msg.len = 0;
	if (lua_type(H, -1) == LUA_TBOOLEAN && !lua_toboolean(H, -1))
		g->stop = STOP_HOST;
	else
		put_reply(H, g, lua_gettop(H));
	return 0;
}

/* Lua 5.1, given serve: the host answers at once (see the top of this file); its reply is what the
 * request returns. Without serve the request yields, which works outside pcall and metamethods. */
static int to_host(lua_State *L, fb_guest *g, int what)
{
	if (g->host == NULL)
		return yield_to_host(L, g, what);
	g->pending = what;
	if (lua_cpcall(g->host, host_serve, g) != 0) {
		g->host_failed = 1;
		return stop(L, g, STOP_HOST);
	}
	g->pending = 0;
	if (g->stop)
		return stop(L, g, g->stop);
	lua_settop(L, 0);
	g->msg.len = 0; /* read below, then free for the script's results or error */
	return fb_plain_get_seq(L, g->msg.p);
}
#else
#define to_host yield_to_host
#endif

/* call(op, ...) -> the host's answer ("ok", values... | "fail", first, err | "raise", message). */
static int g_call(lua_State *L)
{
	fb_guest *g = guest_of(L);
	fb_plain_out o;
	if (g->stop || fb_now() >= g->deadline) /* the deadline holds inside the bridge too */
		return stop(L, g, g->stop ? g->stop : STOP_TIME);
	g->pending = 0;
	g->msg.len = 0;
	o.b = &g->msg;
	o.max = MAX_CALL;
	if (fb_plain_put_seq(L, 1, lua_gettop(L), &o) != 0) {
		luaL_where(L, 2); /* the script's line: level 1 is the prelude's method that called us */
		lua_pushfstring(L, "freshbooks: arguments to the API: %s", o.err);
		lua_concat(L, 2);
		return lua_error(L);
	}
	return to_host(L, g, RAN_CALL);
}

/* print_host(text): the script's print, counted against the output budget: its text and its line's
 * end, so every print costs (an empty one too: the host writes a line for it). */
static int g_print(lua_State *L)
{
	fb_guest *g = guest_of(L);
	size_t len;
	fb_plain_out o;
	luaL_checklstring(L, 1, &len);
	lua_settop(L, 1);
	if (g->stop || fb_now() >= g->deadline)
		return stop(L, g, g->stop ? g->stop : STOP_TIME);
	if (len >= g->max_output - g->output)
		return stop(L, g, STOP_OUTPUT);
	g->output += len + 1;
	g->pending = 0;
	g->msg.len = 0;
	o.b = &g->msg;
	o.max = len + 64;
	if (fb_plain_put_seq(L, 1, 1, &o) != 0)
		return luaL_error(L, "freshbooks.guest: print: %s", o.err);
	return to_host(L, g, RAN_PRINT);
}

static int has_specials(const char *p, size_t len)
{
	size_t i;
	for (i = 0; i < len; i++)
		if (strchr("^$*+?.([%-", p[i]) != NULL && p[i] != '\0')
			return 1;
	return 0;
}

/* find(s, p [, init [, plain]]): string.find for literal patterns, in linear time (memmem; Lua's own
 * plain search is quadratic in the worst case), or `true` when p needs the Lua matcher. The start
 * position follows this VM's string.find. */
static int g_find(lua_State *L)
{
	size_t ls, lp, start;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	lua_Integer init = luaL_optinteger(L, 3, 1);
	const char *hit;
	fb_guest *g = guest_of(L);
	if (!lua_toboolean(L, 4) && has_specials(p, lp)) {
		lua_pushboolean(L, 1);
		return 1;
	}
	if (!charge(g, (lua_Number)(ls + lp) / BYTES_PER_UNIT))
		return halt(L, g);
#if LUA_VERSION_NUM >= 502
	if (init > 0)
		start = (size_t)init - 1;
	else if (init == 0 || init < -(lua_Integer)ls)
		start = 0;
	else
		start = (size_t)((lua_Integer)ls + init);
	if (start > ls) { /* Lua 5.4: a start past the end finds nothing */
		lua_pushnil(L);
		return 1;
	}
#else
	if (init < 0)
		init += (lua_Integer)ls + 1;
	if (init < 1)
		init = 1;
	start = (size_t)init - 1;
	if (start > ls) /* LuaJIT: a start past the end is the end */
		start = ls;
#endif
	hit = lp == 0 ? s + start : (const char *)memmem(s + start, ls - start, p, lp);
	if (hit == NULL) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
	lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)lp);
	return 2;
}

/* stopped() -> whether a budget has ended the run (the prelude refuses coroutine.close then). */
static int g_stopped(lua_State *L)
{
	lua_pushboolean(L, guest_of(L)->stop != STOP_NONE);
	return 1;
}

/* tick([co]): the prelude's coroutine.resume calls it before it resumes co, and with no argument when
 * the resume has returned. A stopped run stops the calling thread here (a budget spent inside co ends
 * its resumers too). Before a resume: the deadline (a coroutine may run HOOK_EVERY - 1 instructions
 * before its hook fires), and the C stack, which each nested resume takes more of: -> false when too
 * deep (the prelude answers as Lua 5.4 does: false, "C stack overflow"). */
static int g_tick(lua_State *L)
{
	fb_guest *g = guest_of(L);
	lua_State *co = lua_tothread(L, 1);
	if (!g->stop && co != NULL && fb_now() >= g->deadline)
		g->stop = STOP_TIME;
	if (g->stop)
		return halt(L, g);
	if (co != NULL && too_deep(g)) {
		lua_pushboolean(L, 0);
		return 1;
	}
	g->running = co != NULL ? co : L;
	hook_sooner(g); /* a thread made while the state was small runs at the period its size asks now */
	lua_pushboolean(L, 1);
	return 1;
}

/* spawn(f) -> coroutine: coroutine.create, charged HOOK_EVERY instructions, what a new thread may run
 * before its first hook (in Lua 5.x the count is the thread's: a fresh thread starts it afresh). So the
 * instruction budget holds for the run, however its work is spread over coroutines. */
static int g_spawn(lua_State *L)
{
	fb_guest *g = guest_of(L);
	lua_State *co;
	luaL_checktype(L, 1, LUA_TFUNCTION);
	if (!charge(g, HOOK_EVERY) || fb_now() >= g->deadline)
		return stop(L, g, g->stop ? g->stop : STOP_TIME);
	co = lua_newthread(L); /* inherits this thread's hook (LuaJIT: the state's) */
	lua_pushvalue(L, 1);
	lua_xmove(L, co, 1);
	return 1;
}

/* charge(steps): the Lua matcher's steps, against the pattern budget. */
static int g_charge(lua_State *L)
{
	fb_guest *g = guest_of(L);
	lua_Integer n = luaL_checkinteger(L, 1);
	if (n > 0)
		g->steps += (unsigned long long)n;
	if (g->stop || g->steps > g->max_steps)
		return stop(L, g, g->stop ? g->stop : STOP_PATTERNS);
	return 0;
}

/* ---- library functions whose C loops the hook cannot see, charged before they run ---------------
 * Each wraps the library's own function (its upvalue) and charges what it is about to walk: elements
 * of a range or of a shift, bytes scanned. Ranges and lengths are read as the library reads them (an
 * argument it will reject is charged nothing: the library raises its own error). Functions whose work
 * is what they allocate (rep, concat's result, upper, format, ..) are seen by the allocator; sort runs
 * in Lua (guest_sort.lua); comparisons of long strings and next() over a sparse table are single
 * instructions of the VM, which the hook sees every HOOK_EVERY (docs/guest.md: the bound). */

/* Calls the wrapped function, charged `units`. Some call the script's Lua from a large C frame
 * (string.format's and table.concat's buffers: 8 KiB each on Lua 5.1 and 5.3), which a recursion through
 * a __tostring or an __index repeats faster than the hook looks: the C stack is checked here too. */
static int call_wrapped(lua_State *L, fb_guest *g, lua_Number units)
{
	if (!charge(g, units))
		return halt(L, g);
	if (too_deep(g))
		return luaL_error(L, "C stack overflow");
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return lua_gettop(L);
}

static lua_Number num_or(lua_State *L, int idx, lua_Number dflt)
{
	return lua_type(L, idx) == LUA_TNUMBER ? lua_tonumber(L, idx) : dflt;
}

/* The length the table library reads: raw for a table without a metatable (or on 5.1/LuaJIT, whose
 * table library is raw), else unknown (0: the prelude passes such tables through a stand-in whose
 * every access is Lua). */
static lua_Number table_len(lua_State *L, int idx)
{
	if (lua_type(L, idx) != LUA_TTABLE)
		return 0;
#if LUA_VERSION_NUM >= 502
	if (lua_getmetatable(L, idx)) {
		lua_pop(L, 1);
		return 0;
	}
#endif
	return (lua_Number)lua_rawlen(L, idx);
}

/* Elements from i to j (a range's count, 0 when empty). */
static lua_Number span(lua_Number i, lua_Number j)
{
	return j >= i ? j - i + 1 : 0;
}

/* Values pushed for a range: past MAX_RESULTS the library raises before it pushes any. */
static lua_Number results(lua_Number n)
{
	return n > MAX_RESULTS ? 0 : n;
}

/* unpack(t [, i [, j]]) / table.unpack: j - i + 1 values pushed. The length is read once, here, and
 * passed on (a __len runs once, as in the library's own unpack). */
static int g_unpack(lua_State *L)
{
	fb_guest *g = guest_of(L);
	lua_Number i, j;
#if LUA_VERSION_NUM >= 502
	lua_Integer first = luaL_optinteger(L, 2, 1);
	lua_Integer last = lua_isnoneornil(L, 3) ? luaL_len(L, 1) : luaL_checkinteger(L, 3);
	lua_settop(L, 1);
	lua_pushinteger(L, first);
	lua_pushinteger(L, last);
	i = (lua_Number)first;
	j = (lua_Number)last;
#else
	luaL_checktype(L, 1, LUA_TTABLE);
	i = num_or(L, 2, 1);
	j = num_or(L, 3, (lua_Number)lua_rawlen(L, 1));
#endif
	return call_wrapped(L, g, results(span(i, j)));
}

/* table.concat(t [, sep [, i [, j]]]): j - i + 1 elements (the result's bytes: the allocator). */
static int g_concat(lua_State *L)
{
	return call_wrapped(L, guest_of(L), span(num_or(L, 3, 1), num_or(L, 4, table_len(L, 1))));
}

/* table.insert(t, pos, v) / table.remove(t [, pos]): the elements shifted (none for a position the
 * library refuses or sets without a shift). */
static lua_Number shifted(lua_Number pos, lua_Number n)
{
	return pos >= 1 && pos <= n + 1 ? span(pos, n) : 1;
}

static int g_insert(lua_State *L)
{
	lua_Number n = table_len(L, 1);
	return call_wrapped(L, guest_of(L), lua_gettop(L) == 3 ? shifted(num_or(L, 2, n + 1), n) : 1);
}

static int g_remove(lua_State *L)
{
	lua_Number n = table_len(L, 1);
	return call_wrapped(L, guest_of(L), shifted(num_or(L, 2, n), n));
}

/* A string position as the string library reads it (negative: from the end), clamped to [0, len+1]. */
static lua_Number position(lua_Number pos, lua_Number len)
{
	if (pos < 0)
		pos = len + pos + 1;
	return pos < 0 ? 0 : pos > len + 1 ? len + 1 : pos;
}

/* The bytes from i to j of the string at 1 (i, j as the string library reads them). */
static lua_Number string_span(lua_State *L, lua_Number i, lua_Number j)
{
	size_t len = 0;
	if (lua_type(L, 1) == LUA_TSTRING)
		lua_tolstring(L, 1, &len);
	i = position(i, (lua_Number)len);
	j = position(j, (lua_Number)len);
	return span(i < 1 ? 1 : i, j > (lua_Number)len ? (lua_Number)len : j);
}

/* string.byte(s [, i [, j]]) and utf8.codepoint: a value pushed per byte from i to j. */
static int g_byte(lua_State *L)
{
	lua_Number i = num_or(L, 2, 1);
	return call_wrapped(L, guest_of(L), results(string_span(L, i, num_or(L, 3, i))));
}

#if LUA_VERSION_NUM >= 503
/* utf8.len(s [, i [, j]]): the bytes it decodes. */
static int g_utf8_len(lua_State *L)
{
	return call_wrapped(L, guest_of(L), string_span(L, num_or(L, 2, 1), num_or(L, 3, -1)) / BYTES_PER_UNIT);
}

/* utf8.offset(s, n [, i]): at most 4 bytes for each of the |n| characters it moves over. */
static int g_utf8_offset(lua_State *L)
{
	lua_Number n = fabs(num_or(L, 2, 0));
	lua_Number all = string_span(L, 1, -1);
	return call_wrapped(L, guest_of(L), (4 * n < all ? 4 * n : all) / BYTES_PER_UNIT);
}
#endif

/* tonumber(s [, base]) and rawequal of two strings: their bytes. */
static lua_Number string_units(lua_State *L, int idx)
{
	size_t len = 0;
	if (lua_type(L, idx) == LUA_TSTRING)
		lua_tolstring(L, idx, &len);
	return (lua_Number)len / BYTES_PER_UNIT;
}

static int g_tonumber(lua_State *L)
{
	return call_wrapped(L, guest_of(L), string_units(L, 1));
}

/* string.format: what it makes is the allocator's; its %s calls a __tostring (C stack: call_wrapped). */
static int g_format(lua_State *L)
{
	return call_wrapped(L, guest_of(L), 0);
}

static int g_rawequal(lua_State *L)
{
	return call_wrapped(L, guest_of(L), string_units(L, 1) + string_units(L, 2));
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
	(void)L;
	return fb_buf_add((fb_buf *)ud, (const char *)p, sz);
}

/* Pushes chunk c as a function (raises, so only in a protected call). */
static void load_chunk(lua_State *L, fb_guest *g, fb_chunk *c)
{
	char *bc;
	size_t len;
	pthread_mutex_lock(&chunk_lock);
	bc = c->bc;
	len = c->bclen;
	pthread_mutex_unlock(&chunk_lock);
	if (bc != NULL) {
		if (luaL_loadbufferx(L, bc, len, c->name, "b") != 0)
			lua_error(L);
		return;
	}
	if (luaL_loadbufferx(L, c->src, c->len, c->name, "t") != 0)
		lua_error(L);
	g->dump.len = 0;
#if LUA_VERSION_NUM >= 503
	if (lua_dump(L, dump_writer, &g->dump, 1) != 0)
#else
	if (lua_dump(L, dump_writer, &g->dump) != 0)
#endif
		return; /* not cached: compiled again next time */
	pthread_mutex_lock(&chunk_lock);
	if (c->bc == NULL && (c->bc = (char *)malloc(g->dump.len)) != NULL) {
		memcpy(c->bc, g->dump.p, g->dump.len);
		c->bclen = g->dump.len;
	}
	pthread_mutex_unlock(&chunk_lock);
	fb_buf_free(&g->dump, 0);
}

/* library(name, raw) -> what our chunk `name` makes ("patterns": the Lua matcher; "sort": table.sort),
 * loaded on first use only, given (find, charge, the VM's version, raw: the library's own functions). */
static int g_library(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	load_chunk(L, guest_of(L), strcmp(name, "sort") == 0 ? &sort_chunk : &patterns_chunk);
	lua_pushcfunction(L, g_find);
	lua_pushcfunction(L, g_charge);
	lua_pushinteger(L, LUA_VERSION_NUM);
	lua_pushvalue(L, 2);
	lua_call(L, 4, 1);
	return 1;
}

/* setmetatable without finalizers: both VMs switch hooks off while a __gc runs, so no budget could
 * stop one, and it would run after the script (at the state's close). */
static int g_setmetatable(lua_State *L)
{
	if (lua_type(L, 2) == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		lua_rawget(L, 2);
		if (!lua_isnil(L, -1))
			return luaL_error(L, "freshbooks.guest: __gc metamethods are not allowed in guest scripts");
		lua_pop(L, 1);
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return lua_gettop(L);
}

/* string.rep: Lua loops n times even when there is nothing to copy ((""):rep(2^60), one C call), and
 * LuaJIT makes a result it already has without allocating (its strings are interned): what it makes is
 * charged first (its bytes; past the memory budget the allocator refuses it). */
static int g_rep(lua_State *L)
{
	size_t l, lsep;
	lua_Number n, bytes;
	luaL_checklstring(L, 1, &l);
	n = (lua_Number)luaL_checkinteger(L, 2);
	luaL_optlstring(L, 3, "", &lsep);
	if (l == 0 && lsep == 0) {
		lua_pushliteral(L, "");
		return 1;
	}
	bytes = n > 0 ? n * (lua_Number)(l + lsep) : 0;
	return call_wrapped(L, guest_of(L), bytes > (lua_Number)guest_of(L)->memory ? 0 : bytes / BYTES_PER_UNIT);
}

/* ---- building the guest state ------------------------------------------------------------------ */

static void open_lib(lua_State *G, const char *name, lua_CFunction open)
{
	lua_pushcfunction(G, open);
	lua_pushstring(G, name);
	lua_call(G, 1, 1);
	lua_setglobal(G, name);
}

static int listed(const char *const *names, const char *s)
{
	for (; *names != NULL; names++)
		if (strcmp(*names, s) == 0)
			return 1;
	return 0;
}

/* Removes from the table at idx every string key not in keep, and every non-string key. */
static void keep_only(lua_State *G, int idx, const char *const *keep)
{
	lua_pushnil(G);
	while (lua_next(G, idx)) {
		lua_pop(G, 1);
		if (lua_type(G, -1) != LUA_TSTRING || !listed(keep, lua_tostring(G, -1))) {
			lua_pushvalue(G, -1);
			lua_pushnil(G);
			lua_rawset(G, idx); /* clearing a field during the traversal is allowed */
		}
	}
}

/* Replaces t[name] (t at idx) by f with the old value as its upvalue; the old value also goes to the
 * table at raw (0: none) under `name`, for our own chunks, which need no charge. */
static void wrap_field(lua_State *G, int idx, const char *name, lua_CFunction f, int raw)
{
	lua_getfield(G, idx, name);
	if (lua_isnil(G, -1)) { /* not on this VM (utf8, table.unpack on 5.1) */
		lua_pop(G, 1);
		return;
	}
	if (raw != 0) {
		lua_pushvalue(G, -1);
		lua_setfield(G, raw, name);
	}
	lua_pushcclosure(G, f, 1);
	lua_setfield(G, idx, name);
}

/* The safe libraries: base without load*, dofile, require, collectgarbage, print (the prelude's goes
 * to the host) and the LuaJIT extras; string without dump; table, math, coroutine, utf8; os time,
 * clock, date and difftime only. No io, package, debug, jit or ffi at all. Removed here and rebuilt
 * in Lua by the prelude: the pattern functions and table.move (C loops no hook could stop), and xpcall
 * and coroutine.close: when the count hook raises, both VMs run a message handler with hooks still
 * off (Lua 5.4 also the __close handlers of a coroutine that died that way, once it is closed). The
 * prelude's xpcall calls its handler after pcall returns; its close refuses once the run is stopped.
 * Wrapped here, charged before they run: the functions whose C loops walk more than their arguments
 * hold (see g_unpack and below). Leaves the stock coroutine.close (or nil) at 1 and the functions
 * wrapped, unwrapped, at 2 (for the prelude only). */
static void open_safe_libs(lua_State *G)
{
	static const char *const globals[] = {
		"assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget", "rawlen",
		"rawset", "select", "setmetatable", "tonumber", "tostring", "type", "unpack", "_G", "_VERSION",
		"string", "table", "math", "coroutine", "utf8", "os", NULL,
	};
	static const char *const os_keep[] = {"time", "clock", "date", "difftime", NULL};
	static const char *const string_drop[] = {"dump", "find", "match", "gmatch", "gsub", NULL};
	const char *const *s;
	int globals_idx, raw;

	open_lib(G, "_G", luaopen_base); /* LuaJIT's base also opens coroutine */
	open_lib(G, LUA_STRLIBNAME, luaopen_string);
	open_lib(G, LUA_TABLIBNAME, luaopen_table);
	open_lib(G, LUA_MATHLIBNAME, luaopen_math);
	open_lib(G, LUA_OSLIBNAME, luaopen_os);
#if LUA_VERSION_NUM >= 502
	open_lib(G, LUA_COLIBNAME, luaopen_coroutine);
	open_lib(G, LUA_UTF8LIBNAME, luaopen_utf8);
#endif
	lua_getglobal(G, "_G");
	globals_idx = lua_gettop(G);
	lua_newtable(G);
	raw = lua_gettop(G);
	keep_only(G, globals_idx, globals);
	wrap_field(G, globals_idx, "setmetatable", g_setmetatable, 0);
	wrap_field(G, globals_idx, "unpack", g_unpack, raw);
	wrap_field(G, globals_idx, "tonumber", g_tonumber, raw);
	wrap_field(G, globals_idx, "rawequal", g_rawequal, raw);
	lua_getglobal(G, LUA_OSLIBNAME);
	keep_only(G, lua_gettop(G), os_keep);
	lua_getglobal(G, LUA_STRLIBNAME);
	for (s = string_drop; *s != NULL; s++) {
		lua_pushnil(G);
		lua_setfield(G, -2, *s);
	}
	wrap_field(G, lua_gettop(G), "rep", g_rep, raw);
	wrap_field(G, lua_gettop(G), "byte", g_byte, raw);
	wrap_field(G, lua_gettop(G), "format", g_format, raw);
	lua_getglobal(G, LUA_TABLIBNAME);
	lua_pushnil(G);
	lua_setfield(G, -2, "move");
	wrap_field(G, lua_gettop(G), "unpack", g_unpack, raw);
	wrap_field(G, lua_gettop(G), "concat", g_concat, raw);
	wrap_field(G, lua_gettop(G), "insert", g_insert, raw);
	wrap_field(G, lua_gettop(G), "remove", g_remove, raw);
#if LUA_VERSION_NUM >= 503
	lua_getglobal(G, LUA_UTF8LIBNAME);
	wrap_field(G, lua_gettop(G), "codepoint", g_byte, 0);
	wrap_field(G, lua_gettop(G), "len", g_utf8_len, 0);
	wrap_field(G, lua_gettop(G), "offset", g_utf8_offset, 0);
#endif
	lua_getglobal(G, LUA_COLIBNAME);
	lua_getfield(G, -1, "close");
	lua_replace(G, globals_idx); /* returned to the caller */
	lua_pushnil(G);
	lua_setfield(G, -2, "close");
	lua_settop(G, raw);
}

/* One step of the run, protected on the guest state's main thread: the host's answer (in g->msg) goes
 * to the script's thread, which runs until it asks the host for something, returns or fails. */
static int g_step(lua_State *G)
{
	fb_guest *g = (fb_guest *)lua_touserdata(G, lua_upvalueindex(1));
	lua_State *T = g->T;
	int k, status, nres;
	fb_plain_out o;
	lua_settop(G, 0);
	k = fb_plain_get_seq(G, g->msg.p);
	lua_xmove(G, T, k); /* within the LUA_MINSTACK slots a yielded C function keeps */
	k += g->first;
	g->first = 0;
	g->msg.len = 0;
	g->pending = 0;
	g->running = T;
#if LUA_VERSION_NUM >= 504
	status = lua_resume(T, G, k, &nres);
#elif LUA_VERSION_NUM >= 502
	status = lua_resume(T, G, k);
	nres = lua_gettop(T);
#else
	status = lua_resume(T, k);
	nres = lua_gettop(T);
#endif
	if (status == LUA_YIELD) {
		int marked = nres == 1 && lua_touserdata(T, -1) == (void *)g && g->pending;
		lua_pop(T, nres);
		if (marked) {
			g->ran = g->pending;
			return 0;
		}
		g->msg.len = 0;
		fb_buf_add(&g->msg, "attempt to yield from outside a coroutine", 41);
		g->ran = RAN_ERROR;
		return 0;
	}
	/* g->msg may still hold a call the script made and caught the failure of (arguments that are not
	 * plain data stop the copy half-way): the results or the error message replace it, or the host
	 * would read that half-written sequence as theirs, past the end of the buffer. */
	g->msg.len = 0;
	if (status == LUA_OK) {
		luaL_checkstack(G, nres + 4, "freshbooks.guest: results");
		lua_xmove(T, G, nres);
		o.b = &g->msg;
		o.max = g->max_output - g->output;
		g->ran = RAN_DONE;
		if (fb_plain_put_seq(G, 1, nres, &o) != 0) {
			g->msg.len = 0;
			fb_buf_add(&g->msg, o.err, strlen(o.err));
			g->ran = RAN_BAD_RESULT;
			if (strcmp(o.err, "too large") == 0 && !g->stop)
				g->stop = STOP_OUTPUT;
		} else {
			g->output += g->msg.len;
		}
		return 0;
	}
	/* The script failed: keep its message (raw fields only: no metamethod of the script runs). */
	luaL_checkstack(G, 4, "freshbooks.guest: error");
	lua_xmove(T, G, 1);
	g->ran = RAN_ERROR;
	if (status == LUA_ERRMEM && !g->stop)
		g->stop = STOP_MEMORY;
	if (lua_type(G, -1) == LUA_TTABLE) { /* {code =, message =}: "code: message" */
		lua_pushliteral(G, "message");
		lua_rawget(G, -2);
		if (lua_type(G, -1) == LUA_TSTRING) {
			lua_pushliteral(G, "code");
			lua_rawget(G, -3);
			if (lua_type(G, -1) == LUA_TSTRING) {
				lua_pushliteral(G, ": ");
				lua_pushvalue(G, -3);
				lua_concat(G, 3);
				lua_remove(G, -2);
			} else {
				lua_pop(G, 1);
			}
		} else {
			lua_pop(G, 1);
		}
	}
	if (lua_type(G, -1) == LUA_TSTRING || lua_type(G, -1) == LUA_TNUMBER) {
		size_t len;
		const char *s = lua_tolstring(G, -1, &len);
		fb_buf_add(&g->msg, s, len < MAX_MESSAGE ? len : MAX_MESSAGE);
	} else {
		const char *t = luaL_typename(G, -1);
		fb_buf_add(&g->msg, "(error object is a ", 19);
		fb_buf_add(&g->msg, t, strlen(t));
		fb_buf_add(&g->msg, " value)", 7);
	}
	return 0;
}

struct setup {
	fb_guest *g;
	const char *src, *name;
	size_t len;
	int syntax; /* the script did not compile (its message in g->msg) */
};

/* Builds the state, protected: libraries, the prelude (given the bridge and the host's API shape), then
 * the script, compiled as text only (bytecode could break out of any sandbox). */
static int g_setup(lua_State *G)
{
	struct setup *s = (struct setup *)lua_touserdata(G, 1);
	fb_guest *g = s->g;
	static const luaL_Reg bridge[] = {
		{"call", g_call},
		{"print", g_print},
		{"find", g_find},
		{"charge", g_charge},
		{"stopped", g_stopped},
		{"tick", g_tick},
		{"spawn", g_spawn},
		{"library", g_library},
		{NULL, NULL},
	};
	lua_settop(G, 0);
	open_safe_libs(G); /* leaves the stock coroutine.close (or nil) at 1, the raw functions at 2 */
	lua_pushlightuserdata(G, g);
	lua_pushcclosure(G, g_step, 1);
	g->step_ref = luaL_ref(G, LUA_REGISTRYINDEX);
	load_chunk(G, g, &env_chunk);
	lua_pushlightuserdata(G, g);
	lua_newtable(G);
	luaL_setfuncs(G, bridge, 0);
	lua_pushvalue(G, 1);
	lua_setfield(G, -2, "close");
	lua_pushvalue(G, 2);
	lua_setfield(G, -2, "raw");
	lua_call(G, 2, 1); /* -> the script's session object */
	g->msg.len = 0;
	if (luaL_loadbufferx(G, s->src, s->len, s->name, "t") != 0) {
		size_t len;
		const char *m = lua_tolstring(G, -1, &len);
		s->syntax = 1;
		fb_buf_add(&g->msg, m, len < MAX_MESSAGE ? len : MAX_MESSAGE);
		return 0;
	}
	g->T = lua_newthread(G);
	lua_pushvalue(G, -1);
	(void)luaL_ref(G, LUA_REGISTRYINDEX);
	lua_pop(G, 1);
	lua_insert(G, -2); /* chunk, session */
	lua_xmove(G, g->T, 2);
	g->first = 1;
	lua_sethook(g->T, on_count, LUA_MASKCOUNT, HOOK_EVERY); /* coroutines inherit it (LuaJIT: global) */
	{
		uint32_t none = 0; /* the first resume passes nothing */
		fb_buf_add(&g->msg, (const char *)&none, sizeof none);
	}
	return 0;
}

/* ---- the host's side ----------------------------------------------------------------------------- */

static void close_guest(fb_guest *g)
{
	if (g->G != NULL) {
		lua_setallocf(g->G, g->alloc, g->alloc_ud); /* LuaJIT frees its own arena only with its own allocator */
		lua_close(g->G);
		g->G = NULL;
		g->T = NULL;
		g->ended = fb_now();
	}
	fb_buf_free(&g->msg, 0);
	fb_buf_free(&g->dump, 0);
}

static fb_guest *check_guest(lua_State *L)
{
	return (fb_guest *)luaL_checkudata(L, 1, GUEST_MT);
}

static double budget(lua_State *L, const char *name, double max)
{
	double v;
	lua_getfield(L, 3, name);
	if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0) || lua_tonumber(L, -1) > max)
		luaL_error(L, "freshbooks.vm.new: %s must be a number > 0 (and <= %g)", name, max);
	v = (double)lua_tonumber(L, -1);
	lua_pop(L, 1);
	return v;
}

#define push_error fb_push_error

/* vm.new(source, chunkname, {memory, instructions, time, patterns, output}) -> guest
 * | nil, {code = "syntax" | "budget_memory", message} */
static int l_guest(lua_State *L)
{
	struct setup s;
	fb_guest *g;
	lua_State *G;
	int status;
	if (lua_type(L, 1) != LUA_TSTRING)
		return luaL_error(L, "freshbooks.vm.new: source must be a string");
	s.src = lua_tolstring(L, 1, &s.len);
	s.name = luaL_optstring(L, 2, "=guest");
	luaL_checktype(L, 3, LUA_TTABLE);
	g = (fb_guest *)lua_newuserdata(L, sizeof *g);
	memset(g, 0, sizeof *g);
	luaL_getmetatable(L, GUEST_MT);
	lua_setmetatable(L, -2);
	g->memory = (size_t)budget(L, "memory", 1e15);
	if (g->memory < MIN_MEMORY)
		g->memory = MIN_MEMORY;
	g->max_instructions = (unsigned long long)budget(L, "instructions", 1e18);
	g->max_steps = (unsigned long long)budget(L, "patterns", 1e18);
	g->max_output = (size_t)budget(L, "output", 1e15);
	g->started = fb_now();
	g->deadline = g->started + budget(L, "time", 1e9);

	G = luaL_newstate();
	if (G == NULL)
		return luaL_error(L, "freshbooks.vm.new: cannot create a Lua state");
	g->G = G;
	g->alloc = lua_getallocf(G, &g->alloc_ud);
	g->used = g->peak = (size_t)lua_gc(G, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(G, LUA_GCCOUNTB, 0);
	lua_setallocf(G, capped_alloc, g);
#ifdef FB_LUAJIT
	/* The interpreter only: compiled traces do not call the count hook. */
	luaJIT_setmode(G, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
#endif
#if LUA_VERSION_NUM < 504
	/* A shorter GC pause keeps the heap near the live data: the first refusal spends the budget here. */
	lua_gc(G, LUA_GCSETPAUSE, 100);
#endif
	lua_gc(G, LUA_GCSTOP, 0); /* building it makes no garbage worth collecting */
	s.g = g;
	s.syntax = 0;
#if LUA_VERSION_NUM >= 502
	lua_pushcfunction(G, g_setup); /* a light C function: allocates nothing */
	lua_pushlightuserdata(G, &s);
	status = lua_pcall(G, 1, 0, 0);
#else
	status = lua_cpcall(G, g_setup, &s); /* makes the closure inside the protected call */
#endif
	if (status != 0 || s.syntax) {
		lua_pushnil(L);
		if (g->stop == STOP_MEMORY || status == LUA_ERRMEM) {
			push_error(L, STOP_CODE[STOP_MEMORY], STOP_TEXT[STOP_MEMORY], strlen(STOP_TEXT[STOP_MEMORY]));
		} else if (s.syntax) {
			push_error(L, "syntax", g->msg.p, g->msg.len);
		} else { /* a broken prelude: a bug of ours */
			size_t len = 0;
			const char *m = lua_type(G, -1) == LUA_TSTRING ? lua_tolstring(G, -1, &len) : "";
			push_error(L, "internal", m, len < MAX_MESSAGE ? len : MAX_MESSAGE);
		}
		close_guest(g);
		return 2;
	}
	lua_settop(G, 0);
	lua_gc(G, LUA_GCRESTART, 0);
	return 1;
}

/* Pushes the values in g->msg as a table {n =, ...}. */
static void push_seq(lua_State *L, fb_guest *g)
{
	int n, i;
	int top = lua_gettop(L);
	n = fb_plain_get_seq(L, g->msg.p);
	lua_createtable(L, n, 1);
	lua_insert(L, top + 1);
	for (i = n; i >= 1; i--)
		lua_rawseti(L, top + 1, i);
	lua_pushinteger(L, n);
	lua_setfield(L, top + 1, "n");
}

/* The reply at idx ({n =, ...}, or nil for none) into g->msg. */
static void put_reply(lua_State *L, fb_guest *g, int idx)
{
	fb_plain_out o;
	int n = 0, i, top = lua_gettop(L);
	if (!lua_isnil(L, idx)) {
		luaL_checktype(L, idx, LUA_TTABLE);
		lua_getfield(L, idx, "n");
		if (lua_type(L, -1) == LUA_TNUMBER) {
			/* checked as a number: lua_tointeger made NaN and 1.5 zero and 2^32 + 1 one (UB on 5.1) */
			lua_Number v = lua_tonumber(L, -1);
			if (!(v >= 0 && v <= 8) || v != floor(v))
				luaL_error(L, "freshbooks.guest: a reply holds 0 to 8 values");
			n = (int)v;
		} else {
			n = lua_rawlen(L, idx) > 8 ? 9 : (int)lua_rawlen(L, idx);
		}
		lua_pop(L, 1);
		if (n > 8)
			luaL_error(L, "freshbooks.guest: a reply holds 0 to 8 values");
	}
	luaL_checkstack(L, n + 8, "freshbooks.guest");
	for (i = 1; i <= n; i++)
		lua_rawgeti(L, idx, i);
	g->msg.len = 0;
	o.b = &g->msg;
	o.max = MAX_REPLY;
	if (fb_plain_put_seq(L, top + 1, n, &o) != 0) {
		/* The script gets a runtime failure, as for any call that could not be answered. */
		lua_settop(L, top);
		lua_pushliteral(L, "fail");
		lua_pushnil(L);
		lua_pushfstring(L, "the answer cannot be handed to the script: %s", o.err);
		push_error(L, "too_large", lua_tostring(L, -1), lua_rawlen(L, -1));
		lua_remove(L, -2);
		g->msg.len = 0;
		o.max = MAX_REPLY;
		if (fb_plain_put_seq(L, top + 1, 3, &o) != 0)
			luaL_error(L, "freshbooks.guest: %s", o.err);
	}
	lua_settop(L, top);
}

/* g:resume([reply [, serve]]) -> "call", {n =, op, args...} | "print", text | "done", {n =, results...}
 *                    | "error", {code =, message =}. The reply answers the last "call": {n =, ...}.
 * serve(kind, payload) -> reply | false answers requests at once instead (used on plain Lua 5.1 only). */
static int l_resume(lua_State *L)
{
	fb_guest *g = check_guest(L);
	int status = LUA_OK;
	if (g->G == NULL)
		return luaL_error(L, "freshbooks.guest: the run has ended");
	if (g->busy)
		return luaL_error(L, "freshbooks.guest: resumed from inside its own step");
	lua_settop(L, 3);
	put_reply(L, g, 2);
	if (!lua_isnil(L, 3))
		luaL_checktype(L, 3, LUA_TFUNCTION);
	if (!g->stop && fb_now() >= g->deadline)
		g->stop = STOP_TIME;
	if (!g->stop) {
		g->cstack_base = (uintptr_t)__builtin_frame_address(0);
#ifdef FB_LUA51
		if (!lua_isnil(L, 3)) {
			g->serve_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops serve */
			g->host = L;
		}
#endif
		lua_settop(L, 1);
		g->busy = 1;
		lua_rawgeti(g->G, LUA_REGISTRYINDEX, g->step_ref);
		status = lua_pcall(g->G, 0, 0, 0);
		g->busy = 0;
#ifdef FB_LUA51
		if (g->host != NULL)
			luaL_unref(L, LUA_REGISTRYINDEX, g->serve_ref);
		g->host = NULL;
		if (g->host_failed) { /* serve's error is on top of our stack: the host's own, as it was */
			close_guest(g);
			return lua_error(L);
		}
#endif
		if (status != LUA_OK) {
			if (status == LUA_ERRMEM && !g->stop)
				g->stop = STOP_MEMORY;
			g->ran = RAN_ERROR;
			g->msg.len = 0;
			if (lua_type(g->G, -1) == LUA_TSTRING) {
				size_t len;
				const char *m = lua_tolstring(g->G, -1, &len);
				fb_buf_add(&g->msg, m, len < MAX_MESSAGE ? len : MAX_MESSAGE);
			}
			lua_settop(g->G, 0);
		}
	}
	if (g->stop) {
		lua_pushliteral(L, "error");
		push_error(L, STOP_CODE[g->stop], STOP_TEXT[g->stop], strlen(STOP_TEXT[g->stop]));
		close_guest(g);
		return 2;
	}
	switch (g->ran) {
	case RAN_CALL:
		lua_pushliteral(L, "call");
		push_seq(L, g);
		return 2;
	case RAN_PRINT:
		lua_pushliteral(L, "print");
		fb_plain_get_seq(L, g->msg.p);
		return 2;
	case RAN_DONE:
		lua_pushliteral(L, "done");
		push_seq(L, g);
		close_guest(g);
		return 2;
	default:
		lua_pushliteral(L, "error");
		if (g->ran == RAN_BAD_RESULT) {
			lua_pushliteral(L, "the script's results are not plain data: ");
			lua_pushlstring(L, g->msg.p, g->msg.len);
			lua_concat(L, 2);
			push_error(L, "bad_result", lua_tostring(L, -1), lua_rawlen(L, -1));
			lua_remove(L, -2);
		} else {
			push_error(L, status == LUA_OK ? "script_error" : "internal", g->msg.p ? g->msg.p : "",
				   g->msg.len);
		}
		close_guest(g);
		return 2;
	}
}

/* g:usage() -> {memory = peak bytes, instructions =, patterns =, output = bytes, seconds =} */
static int l_usage(lua_State *L)
{
	fb_guest *g = check_guest(L);
	lua_createtable(L, 0, 5);
	lua_pushinteger(L, (lua_Integer)g->peak);
	lua_setfield(L, -2, "memory");
	lua_pushinteger(L, (lua_Integer)g->instructions);
	lua_setfield(L, -2, "instructions");
	lua_pushinteger(L, (lua_Integer)g->steps);
	lua_setfield(L, -2, "patterns");
	lua_pushinteger(L, (lua_Integer)g->output);
	lua_setfield(L, -2, "output");
	lua_pushnumber(L, (lua_Number)((g->G != NULL ? fb_now() : g->ended) - g->started));
	lua_setfield(L, -2, "seconds");
	return 1;
}

/* g:close(), __gc and __close: idempotent. */
static int l_close(lua_State *L)
{
	fb_guest *g = check_guest(L);
	if (g->busy)
		return luaL_error(L, "freshbooks.guest: closed from inside its own step");
	close_guest(g);
	return 0;
}

static int l_tostring(lua_State *L)
{
	fb_guest *g = check_guest(L);
	lua_pushfstring(L, "freshbooks.guest(%s)", g->G != NULL ? "running" : "ended");
	return 1;
}

int luaopen_freshbooks_vm(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"resume", l_resume},
		{"usage", l_usage},
		{"close", l_close},
		{NULL, NULL},
	};
	fb_pin_module((void *)&luaopen_freshbooks_vm); /* the chunks' bytecode is cached for the process */
	fb_new_class(L, GUEST_MT, methods, l_close, l_tostring);
	lua_newtable(L);
	lua_pushcfunction(L, l_guest);
	lua_setfield(L, -2, "new");
	return 1;
}
