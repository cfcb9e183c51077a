/*
 * util.c - small services the host offers to bindings: classes, failures,
 * atomic files, progress lines, where kxrun and its libraries live, and
 * hooks run before exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "host.h"

static int default_tostring(lua_State *L)
{
	lua_getfield(L, lua_upvalueindex(1), "__name");
	lua_pushfstring(L, "%s: %p", lua_tostring(L, -1), lua_topointer(L, 1));
	return 1;
}

void kx_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
		 lua_CFunction gc)
{
	luaL_newmetatable(L, tname);
	lua_newtable(L);
	if (methods)
		luaL_setfuncs(L, methods, 0);
	lua_setfield(L, -2, "__index");
	if (gc) {
		lua_pushcfunction(L, gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, gc);
		lua_setfield(L, -2, "__close");
	}
	lua_pushvalue(L, -1);
	lua_pushcclosure(L, default_tostring, 1);
	lua_setfield(L, -2, "__tostring");
}

int kx_fail(lua_State *L, const char *fmt, ...)
{
	va_list ap;

	lua_pushnil(L);
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	return 2;
}

int kx_write_file_atomic(const char *path, const void *buf, size_t len,
			 char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	int fd, e;
	const char *p = buf;

	if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >=
	    (int)sizeof tmp) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	snprintf(err, errlen, "%s: %s", path, strerror(e));
	return -e;
}

void kx_progress(const char *label, double done, double total)
{
	static double last;
	static int enabled = -1;
	struct timespec ts;

	if (enabled < 0) {
		const char *e = getenv("KXRUN_PROGRESS");
		enabled = isatty(2) && !(e && strcmp(e, "0") == 0);
	}
	if (!enabled)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double now = ts.tv_sec + ts.tv_nsec / 1e9;
	int end = total > 0 && done >= total;
	if (!end && now - last < 0.1)
		return;
	last = now;
	if (total > 0)
		fprintf(stderr, "\r\033[K%s  %.0f/%.0f  %3.0f%%%s", label, done,
			total, 100.0 * done / total, end ? "\n" : "");
	else
		fprintf(stderr, "\r\033[K%s  %.0f", label, done);
	fflush(stderr);
}

const char *kx_exe(void)
{
	static char path[PATH_MAX];

	if (!path[0]) {
		ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
		if (n < 0)
			n = 0;
		path[n] = 0;
	}
	return path;
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *kx_libdir(void)
{
	static char dir[PATH_MAX];
	char exe[PATH_MAX];
	const char *env = getenv("KXRUN_LIBDIR");

	if (env && *env)
		return env;
	if (dir[0])
		return dir;
	snprintf(exe, sizeof exe, "%s", kx_exe());
	char *d = dirname(exe);
	snprintf(dir, sizeof dir, "%s/build/lib", d);
	if (is_dir(dir))
		return dir;
	snprintf(dir, sizeof dir, "%s/lib", d);
	if (is_dir(dir))
		return dir;
	snprintf(dir, sizeof dir, "%s/../lib/kxrun", d);
	return dir;
}

/* ---- hooks before exit ---------------------------------------------------- */

struct exit_hook {
	void (*fn)(void *);
	void *ud;
	struct exit_hook *next;
};

static struct exit_hook *exit_hooks;

void kx_atexit(void (*fn)(void *ud), void *ud)
{
	struct exit_hook *h = malloc(sizeof *h);
	if (!h)
		return;
	h->fn = fn;
	h->ud = ud;
	h->next = exit_hooks;
	exit_hooks = h;
}

void kx_run_atexit(void)
{
	while (exit_hooks) {
		struct exit_hook *h = exit_hooks;
		exit_hooks = h->next;
		h->fn(h->ud);
		free(h);
	}
}

/* A resumed child: the hooks were the parent's, for the parent's things. */
void kx_forget_atexit(void)
{
	while (exit_hooks) {
		struct exit_hook *h = exit_hooks;
		exit_hooks = h->next;
		free(h);
	}
}
