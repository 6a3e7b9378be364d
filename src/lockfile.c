/* Cross-process file lock (flock(2)), a careful read and atomic file replacement, for the token file
 * store. Paths with a NUL inside raise (C would see a shorter path: another file).
 *
 *   core.fs.lock(path [, timeout]) -> lock | nil, {code =, message =}
 *     Takes an exclusive flock on `path`: a directory, or a regular file of ours (created 0600 if
 *     missing); symlinks, FIFOs and devices are refused (store_insecure). Waits up to `timeout` seconds
 *     (default 30; 0 = try once). The kernel drops the lock when the process dies, so a crashed holder
 *     never wedges the others. lock:unlock() releases it; __gc and __close do the same (idempotent).
 *   core.fs.read(path [, max_bytes]) -> data | nil | nil, {code =, message =}  (see read_file)
 *   core.fs.write_atomic(path, data [, mode]) -> true | nil, {code =, message =}
 *     Writes a temp file in the same directory, fsyncs it, renames it over `path` and fsyncs the
 *     directory, so readers see the old content or the new one, never a torn file. Mode default 0600.
 *   core.fs.overwrite(path, data) -> true | nil, {code =, message =}
 *     The last resort when that fails (a full disk or quota, a directory no longer writable, a name
 *     too long for a temp file) and the data is a rotated token pair that is lost if not kept: rewrites
 *     our own existing regular file (one link, never through a symlink) where it is, only when the
 *     blocks it holds take the data (a full disk cannot stop it halfway). Not atomic: a crash in the
 *     write can tear the file.
 *
 * fb_open_lockfile(L) adds both functions to the table on top of the stack (the module table).
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "fb_internal.h"

#define LOCK_MT "freshbooks.lock"

typedef struct {
	int fd; /* -1 once released */
} fb_lock;


static int push_error(lua_State *L, const char *code, const char *what, const char *path, int err)
{
	if (err)
		return fb_fail(L, code, "%s %s: %s", what, path, strerror(err));
	return fb_fail(L, code, "%s %s", what, path);
}

static double now_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* A path from Lua with no NUL inside (a C path stops at the first one: another file). */
static const char *check_path(lua_State *L, int idx)
{
	size_t len;
	const char *path = luaL_checklstring(L, idx, &len);
	luaL_argcheck(L, len > 0, idx, "empty path");
	luaL_argcheck(L, strlen(path) == len, idx, "path contains a NUL byte");
	return path;
}

/* Opens what a lock is taken on: an existing directory or regular file (never through a symlink, never
 * a FIFO or a device, which could block or feed us forever), or a new regular file, mode 0600. */
static int open_lock_target(lua_State *L, const char *path, int *fd)
{
	struct stat st;
	for (;;) {
		*fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (*fd == -1 && errno == ENOENT)
			*fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
		if (*fd != -1 || errno != EEXIST) /* EEXIST: created meanwhile by another process, open it */
			break;
	}
	if (*fd == -1) {
		if (errno == ELOOP)
			return push_error(L, "store_insecure", "the lock path is a symbolic link:", path, 0);
		return push_error(L, "lock", "cannot open the lock", path, errno);
	}
	if (fstat(*fd, &st) != 0 || !(S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && st.st_uid == geteuid()))) {
		close(*fd);
		*fd = -1;
		return push_error(L, "store_insecure", "the lock is neither a directory nor our own regular file:",
				  path, 0);
	}
	return 0;
}

static int lock_file(lua_State *L)
{
	const char *path = check_path(L, 1);
	double timeout = luaL_optnumber(L, 2, 30);
	double deadline;
	long pause = 1;
	fb_lock *lk;
	int fd;

	luaL_argcheck(L, timeout >= 0, 2, "timeout must be >= 0");
	/* The userdata exists before the fd does, so no error path can leak the descriptor. */
	lk = (fb_lock *)lua_newuserdata(L, sizeof *lk);
	lk->fd = -1;
	luaL_getmetatable(L, LOCK_MT);
	lua_setmetatable(L, -2);

	if (open_lock_target(L, path, &fd) != 0)
		return 2;
	lk->fd = fd;

	deadline = now_monotonic() + timeout;
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 1;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			int err = errno;
			close(fd);
			lk->fd = -1;
			return push_error(L, "lock", "cannot lock", path, err);
		}
		if (now_monotonic() >= deadline) {
			close(fd);
			lk->fd = -1;
			return push_error(L, "lock_timeout", "timed out waiting for the lock on", path, 0);
		}
		if (fb_interrupted()) {
			close(fd);
			lk->fd = -1;
			return push_error(L, "lock", "interrupted while waiting for the lock on", path, 0);
		}
		/* Polling with a short, growing pause keeps the wait bounded without a blocking flock that
		 * no timeout could interrupt. */
		sleep_ms(pause);
		if (pause < 20)
			pause *= 2;
	}
}

/* core.fs.read(path [, max_bytes = 65536]) -> data | nil (no such file) | nil, {code, message}.
 * The token file is trusted only as our own regular file of bounded size: a symlink (to /dev/zero, to
 * another user's file), a FIFO (which would block the reader) or a device is refused with
 * store_insecure, another owner too; a file that others may read is made 0600 on the spot. */
static int read_file(lua_State *L)
{
	const char *path = check_path(L, 1);
	lua_Number max = luaL_optnumber(L, 2, 65536);
	struct stat st;
	luaL_Buffer b;
	size_t total = 0;
	fb_lock *guard;
	int fd;
	luaL_argcheck(L, max >= 1 && max <= 64 * 1024 * 1024, 2, "max_bytes must be in 1..64 MiB");
	/* The descriptor is held by a userdata whose __gc closes it (a lock's): the buffer below may
	 * raise a memory error while the file is open, which leaked the descriptor. */
	guard = (fb_lock *)lua_newuserdata(L, sizeof *guard);
	guard->fd = -1;
	luaL_getmetatable(L, LOCK_MT);
	lua_setmetatable(L, -2);
	do
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	while (fd == -1 && errno == EINTR);
	if (fd == -1) {
		if (errno == ENOENT)
			return 0;
		if (errno == ELOOP)
			return push_error(L, "store_insecure", "the token file is a symbolic link:", path, 0);
		return push_error(L, "load_failed", "cannot open", path, errno);
	}
	guard->fd = fd;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd), guard->fd = -1;
		return push_error(L, "store_insecure", "the token file is not a regular file:", path, 0);
	}
	if (st.st_uid != geteuid()) {
		close(fd), guard->fd = -1;
		return push_error(L, "store_insecure", "the token file belongs to another user:", path, 0);
	}
	if ((st.st_mode & 077) != 0 && fchmod(fd, 0600) != 0) {
		int err = errno;
		close(fd), guard->fd = -1;
		return push_error(L, "store_insecure", "the token file is readable by others and cannot be made 0600:",
				  path, err);
	}
	if ((lua_Number)st.st_size > max) {
		close(fd), guard->fd = -1;
		return push_error(L, "store_corrupt", "the token file is too large to be a token record:", path, 0);
	}
	luaL_buffinit(L, &b);
	for (;;) {
		char *p = luaL_prepbuffer(&b);
		ssize_t n = read(fd, p, LUAL_BUFFERSIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;
			close(fd), guard->fd = -1;
			return push_error(L, "load_failed", "cannot read", path, err);
		}
		if (n == 0)
			break;
		luaL_addsize(&b, (size_t)n);
		total += (size_t)n;
		if ((lua_Number)total > max) { /* it grew while we read */
			close(fd), guard->fd = -1;
			return push_error(L, "store_corrupt", "the token file is too large to be a token record:", path, 0);
		}
	}
	close(fd), guard->fd = -1;
	luaL_pushresult(&b);
	return 1;
}

static int lock_unlock(lua_State *L)
{
	fb_lock *lk = (fb_lock *)luaL_checkudata(L, 1, LOCK_MT);
	if (lk->fd != -1) {
		close(lk->fd); /* closing the only descriptor releases the flock */
		lk->fd = -1;
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int lock_held(lua_State *L)
{
	fb_lock *lk = (fb_lock *)luaL_checkudata(L, 1, LOCK_MT);
	lua_pushboolean(L, lk->fd != -1);
	return 1;
}

static int lock_tostring(lua_State *L)
{
	fb_lock *lk = (fb_lock *)luaL_checkudata(L, 1, LOCK_MT);
	lua_pushstring(L, lk->fd != -1 ? "freshbooks.lock(held)" : "freshbooks.lock(released)");
	return 1;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int write_file_atomic(lua_State *L)
{
	size_t len, plen, keep;
	const char *path = check_path(L, 1);
	const char *data = luaL_checklstring(L, 2, &len);
	lua_Number mode = luaL_optnumber(L, 3, 0600);
	char *tmp, *dir, *slash;
	int fd, dfd, err;

	plen = strlen(path);
	luaL_argcheck(L, mode >= 0 && mode <= 07777, 3, "bad mode");
	/* The temp name is the file's name cut to 200 bytes + ".tmp.XXXXXX": a name near NAME_MAX (255)
	 * must not make every save fail (a refreshed token pair would be lost). */
	slash = strrchr(path, '/');
	keep = slash ? (size_t)(slash - path) + 1 : 0;
	keep = plen - keep > 200 ? keep + 200 : plen;
	/* Buffers live in userdata so a Lua error cannot leak them. */
	tmp = (char *)lua_newuserdata(L, plen + 16);
	memcpy(tmp, path, keep);
	memcpy(tmp + keep, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");

	fd = mkstemp(tmp); /* same directory as path, so rename() is atomic */
	if (fd == -1)
		return push_error(L, "io", "cannot create a temp file for", path, errno);
	if (fchmod(fd, (mode_t)mode) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
		err = errno;
		close(fd);
		unlink(tmp);
		return push_error(L, "io", "cannot write", path, err);
	}
	if (close(fd) != 0) {
		err = errno;
		unlink(tmp);
		return push_error(L, "io", "cannot write", path, err);
	}
	if (rename(tmp, path) != 0) {
		err = errno;
		unlink(tmp);
		return push_error(L, "io", "cannot replace", path, err);
	}

	/* fsync the directory so the rename itself survives a crash. */
	dir = (char *)lua_newuserdata(L, plen + 2);
	memcpy(dir, path, plen + 1);
	slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd != -1) {
		fsync(dfd); /* some file systems refuse fsync on directories; the data is already safe */
		close(dfd);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int overwrite_file(lua_State *L)
{
	size_t len, done = 0;
	const char *path = check_path(L, 1);
	const char *data = luaL_checklstring(L, 2, &len);
	struct stat st;
	int err, fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd == -1)
		return push_error(L, "io", "cannot open", path, errno);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
		close(fd);
		return push_error(L, "store_insecure", "not a regular file of ours:", path, 0);
	}
	if ((unsigned long long)len > (unsigned long long)st.st_blocks * 512ULL) {
		close(fd);
		return push_error(L, "io", "no room in place for", path, ENOSPC);
	}
	while (done < len) {
		ssize_t w = pwrite(fd, data + done, len - done, (off_t)done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		done += (size_t)w;
	}
	if (done < len || ftruncate(fd, (off_t)len) != 0 || fsync(fd) != 0) {
		err = errno;
		close(fd);
		return push_error(L, "io", "cannot rewrite", path, err);
	}
	if (close(fd) != 0)
		return push_error(L, "io", "cannot rewrite", path, errno);
	lua_pushboolean(L, 1);
	return 1;
}

void fb_open_lockfile(lua_State *L)
{
	static const luaL_Reg lock_methods[] = {
		{"unlock", lock_unlock},
		{"held", lock_held},
		{NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"lock", lock_file},
		{"read", read_file},
		{"write_atomic", write_file_atomic},
		{"overwrite", overwrite_file},
		{NULL, NULL},
	};

	fb_new_class(L, LOCK_MT, lock_methods, lock_unlock, lock_tostring);
	luaL_setfuncs(L, funcs, 0);
}
