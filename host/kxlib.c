/*
 * kxlib.c - the core module `kx` (also the global `kx`): tasks, processes,
 * timers, signals, JSON and logging; its Lua half is stdlib/kx/_core.lua.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host.h"

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* kx.now(): monotonic seconds */
static int l_now(lua_State *L)
{
	lua_pushnumber(L, clock_s(CLOCK_MONOTONIC));
	return 1;
}

/* kx.time(): wall clock, seconds since the epoch */
static int l_time(lua_State *L)
{
	lua_pushnumber(L, clock_s(CLOCK_REALTIME));
	return 1;
}

/* kx.progress(label, done, total): a progress line on a terminal */
static int l_progress(lua_State *L)
{
	kx_progress(luaL_checkstring(L, 1), luaL_checknumber(L, 2),
		    luaL_optnumber(L, 3, 0));
	return 0;
}

/* kx.write_file(path, data) -> true | nil, message: the file is replaced
 * whole or not at all (kx_write_file_atomic). */
static int l_write_file(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	char err[512];
	if (kx_write_file_atomic(path, data, len, err, sizeof err) < 0)
		return kx_fail(L, "%s", err);
	lua_pushboolean(L, 1);
	return 1;
}

/* kx.mkdir(path [, mode = 0755]) -> true | nil, message: mkdir -p
 * (kx_mkdir_p), no shell. */
static int l_mkdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lua_Integer mode = luaL_optinteger(L, 2, 0755);
	luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "mode out of range");
	char err[512];
	if (kx_mkdir_p(path, (mode_t)mode, err, sizeof err) < 0)
		return kx_fail(L, "%s", err);
	lua_pushboolean(L, 1);
	return 1;
}

/* kx.tmpdir([name]) -> path | nil, message: a new directory
 * $TMPDIR/kxrun-NAME.XXXXXX (TMPDIR, else /tmp), mode 0700; the caller
 * removes it. */
static int l_tmpdir(lua_State *L)
{
	const char *name = luaL_optstring(L, 1, "tmp");
	luaL_argcheck(L, *name && !strchr(name, '/'), 1,
		      "a name without '/' expected");
	const char *t = getenv("TMPDIR");
	const char *base = t && *t ? t : "/tmp";
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/kxrun-%s.XXXXXX", base, name) >=
	    (int)sizeof path)
		return kx_fail(L, "%s: file name too long", base);
	if (!mkdtemp(path))
		return kx_fail(L, "cannot create a directory in %s: %s", base,
			       strerror(errno));
	lua_pushstring(L, path);
	return 1;
}

static int l_libdir(lua_State *L)
{
	lua_pushstring(L, kx_libdir());
	return 1;
}

int luaopen_kx(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"now", l_now},
		{"time", l_time},
		{"progress", l_progress},
		{"libdir", l_libdir},
		{"write_file", l_write_file},
		{"mkdir", l_mkdir},
		{"tmpdir", l_tmpdir},
		{NULL, NULL},
	};
	luaL_newlib(L, fns);
	kx_open_task(L);
	kx_open_proc(L);
	kx_open_signal(L);
	kx_open_json(L);
	kx_open_event(L);
	lua_pushstring(L, KX_VERSION);
	lua_setfield(L, -2, "version");
	lua_pushstring(L, kx_exe());
	lua_setfield(L, -2, "exe");

	/* the Lua half extends the table */
	lua_getglobal(L, "require");
	lua_pushliteral(L, "kx._core");
	lua_call(L, 1, 1);
	lua_pushvalue(L, -2);
	lua_call(L, 1, 0);
	return 1;
}
