/* Descriptors, for programs that own their process (the `freshbooks` command; the library never calls
 * these): lua-socket, libcurl and Lua's io.open create descriptors without close-on-exec, so every
 * program the command starts (a browser, a pager, the shell that reads a prompt) would inherit the
 * login's listening sockets, API connections and files; and a command started with 0, 1 or 2 closed
 * would hand that number to the first socket it opens, writing its output into it. */
#define _GNU_SOURCE /* close_range, CLOSE_RANGE_CLOEXEC (glibc 2.34) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include "fb_internal.h"

static void mark(int fd)
{
	int flags = fcntl(fd, F_GETFD);
	if (flags >= 0 && !(flags & FD_CLOEXEC))
		(void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

/* core.close_on_exec() -> true: every descriptor above 2 is marked close-on-exec (call it right before
 * starting a program: descriptors opened later are not marked). */
static int l_close_on_exec(lua_State *L)
{
	DIR *dir;
	long max, fd;
#ifdef CLOSE_RANGE_CLOEXEC
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) {
		lua_pushboolean(L, 1);
		return 1;
	}
#endif
	dir = opendir("/proc/self/fd"); /* kernels before 5.11; the directory's own descriptor is marked too */
	if (dir != NULL) {
		struct dirent *e;
		while ((e = readdir(dir)) != NULL) {
			char *end;
			long n = strtol(e->d_name, &end, 10);
			if (*end == '\0' && end != e->d_name && n > 2)
				mark((int)n);
		}
		closedir(dir);
	} else {
		max = sysconf(_SC_OPEN_MAX);
		if (max < 0 || max > 65536)
			max = 65536;
		for (fd = 3; fd < max; fd++)
			mark((int)fd);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* core.guard_stdio() -> list of the descriptors among 0, 1, 2 that were closed. Each gets /dev/null,
 * opened the other way round (0 for writing, 1 and 2 for reading): no later socket or file can take the
 * number, and reading a closed stdin or writing a closed stdout still fails (EBADF) as it would have. */
static int l_guard_stdio(lua_State *L)
{
	int fd, n = 0;
	lua_newtable(L);
	for (fd = 0; fd <= 2; fd++) {
		int got;
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		got = open("/dev/null", (fd == 0 ? O_WRONLY : O_RDONLY) | O_NOCTTY);
		if (got < 0)
			return luaL_error(L, "freshbooks.core.guard_stdio: cannot open /dev/null");
		if (got != fd) { /* a lower number was free too: it is filled in a later round */
			if (dup2(got, fd) < 0)
				return luaL_error(L, "freshbooks.core.guard_stdio: dup2 failed");
			close(got);
		}
		lua_pushinteger(L, fd);
		lua_rawseti(L, -2, ++n);
	}
	return 1;
}

void fb_open_fd(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"close_on_exec", l_close_on_exec},
		{"guard_stdio", l_guard_stdio},
		{NULL, NULL},
	};
	luaL_setfuncs(L, funcs, 0);
}
