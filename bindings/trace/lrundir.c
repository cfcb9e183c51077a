/* lrundir.c - kx.trace.core's run-directory functions (see lrundir.h). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpfsrc.h"
#include "lrundir.h"
#include "procfs.h"
#include "tracer.h"

#define LOCK_MT "kx.trace.lock"

/* core.stat(pid) -> {pid, ppid, comm, state, start_ms, cpu_ms} | nil, err */
static int l_stat(lua_State *L)
{
	struct trace_proc_stat st;
	lua_Integer pid = luaL_checkinteger(L, 1);
	if (pid <= 0 || trace_proc_read_stat((pid_t)pid, &st) < 0)
		return kx_fail(L, "no process %d", (int)pid);
	lua_createtable(L, 0, 6);
	lua_pushinteger(L, st.pid);
	lua_setfield(L, -2, "pid");
	lua_pushinteger(L, st.ppid);
	lua_setfield(L, -2, "ppid");
	lua_pushstring(L, st.comm);
	lua_setfield(L, -2, "comm");
	lua_pushlstring(L, &st.state, 1);
	lua_setfield(L, -2, "state");
	lua_pushnumber(L, st.start_ms);
	lua_setfield(L, -2, "start_ms");
	lua_pushnumber(L, st.cpu_ms);
	lua_setfield(L, -2, "cpu_ms");
	return 1;
}

/* ---- a run's lock: one owner per run directory -------------------------- */

/* core.lock(path) -> lock | nil, message, holder pid.  An flock(2) on path,
 * held until lock:release() or collection: the kernel drops it when its
 * holder dies, so a stale pid file can never pass for a live owner. */
static int l_lock(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int *fd = lua_newuserdatauv(L, sizeof *fd, 0);
	*fd = -1;
	luaL_setmetatable(L, LOCK_MT);
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (*fd < 0)
		return kx_fail(L, "%s: %s", path, strerror(errno));
	if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
		return 1;
	int e = errno;
	close(*fd);
	*fd = -1;
	if (e != EWOULDBLOCK)
		return kx_fail(L, "%s: %s", path, strerror(e));
	pid_t holder = trace_proc_flock_holder(path);
	lua_pushnil(L);
	lua_pushfstring(L, "%s is held by process %d", path, (int)holder);
	lua_pushinteger(L, holder > 0 ? holder : 0);
	return 3;
}

static int l_lock_release(lua_State *L)
{
	int *fd = luaL_checkudata(L, 1, LOCK_MT);
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	return 0;
}

/* core.lock_holder(path) -> pid | nil: who holds the lock on path now */
static int l_lock_holder(lua_State *L)
{
	pid_t pid = trace_proc_flock_holder(luaL_checkstring(L, 1));
	if (pid <= 0)
		return 0;
	lua_pushinteger(L, pid);
	return 1;
}

/* core.signal_holder(path, pid, signo) -> true | nil, message: signals pid
 * only while it holds the lock on path.  The pidfd is taken before the
 * check, so a pid reused after its holder died is never signalled. */
static int l_signal_holder(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lua_Integer pid = luaL_checkinteger(L, 2);
	int sig = (int)luaL_checkinteger(L, 3);
	luaL_argcheck(L, pid > 0, 2, "pid must be positive");
	int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd < 0)
		return kx_fail(L, "process %d: %s", (int)pid, strerror(errno));
	if (trace_proc_flock_holder(path) != (pid_t)pid) {
		close(pidfd);
		return kx_fail(L, "process %d does not hold %s", (int)pid, path);
	}
	int r = (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
	int e = errno;
	close(pidfd);
	if (r < 0)
		return kx_fail(L, "process %d: %s", (int)pid, strerror(e));
	lua_pushboolean(L, 1);
	return 1;
}

/* core.check_match(pattern) -> true | nil, message: whether the tracer
 * would take pattern (POSIX extended, as regcomp reads it) */
static int l_check_match(lua_State *L)
{
	const char *pattern = luaL_checkstring(L, 1);
	regex_t re;
	char err[256];
	if (trace_compile_match(&re, pattern, err, sizeof err) < 0)
		return kx_fail(L, "%s", err);
	regfree(&re);
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- CTS/ written whole or not at all ------------------------------------ */

/* core.tmpdir_beside(path) -> a new empty directory beside path | nil, err */
static int l_tmpdir_beside(lua_State *L)
{
	char tmp[4096], err[512];
	if (kx_tmpdir_beside(luaL_checkstring(L, 1), tmp, sizeof tmp, err,
			     sizeof err) < 0)
		return kx_fail(L, "%s", err);
	lua_pushstring(L, tmp);
	return 1;
}

/* core.publish_dir(tmp, dir, {names...}) -> true | nil, err */
static int l_publish_dir(lua_State *L)
{
	const char *tmp = luaL_checkstring(L, 1);
	const char *dir = luaL_checkstring(L, 2);
	luaL_checktype(L, 3, LUA_TTABLE);
	int n = (int)lua_rawlen(L, 3);
	const char **names = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *names, 0);
	for (int i = 0; i < n; i++) {
		if (lua_rawgeti(L, 3, i + 1) != LUA_TSTRING)
			return luaL_argerror(L, 3, lua_pushfstring(L, "names[%d] is a "
					     "%s, string expected", i + 1, luaL_typename(L, -1)));
		names[i] = lua_tostring(L, -1);
		lua_pop(L, 1);   /* the table keeps the string */
	}
	names[n] = NULL;
	char err[512];
	if (kx_publish_dir(tmp, dir, names, err, sizeof err) < 0)
		return kx_fail(L, "%s", err);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_discard_dir(lua_State *L)
{
	kx_discard_dir(luaL_checkstring(L, 1));
	return 0;
}

/* core.bpf_log() -> what libbpf printed while loading the eBPF program
 * last (the verifier's log when it refused it) */
static int l_bpf_log(lua_State *L)
{
	lua_pushstring(L, trace_ebpf_log());
	return 1;
}

/* core.free_bytes(path) -> bytes available to us on path's file system */
static int l_free_bytes(lua_State *L)
{
	struct statvfs v;
	const char *path = luaL_checkstring(L, 1);
	if (statvfs(path, &v) < 0)
		return kx_fail(L, "%s: %s", path, strerror(errno));
	lua_pushinteger(L, (lua_Integer)v.f_bavail * (lua_Integer)v.f_frsize);
	return 1;
}

static int l_now_ms(lua_State *L)
{
	lua_pushnumber(L, trace_proc_now_ms());
	return 1;
}

void trace_rundir_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"stat", l_stat},
		{"now_ms", l_now_ms},
		{"free_bytes", l_free_bytes},
		{"lock", l_lock},
		{"lock_holder", l_lock_holder},
		{"signal_holder", l_signal_holder},
		{"check_match", l_check_match},
		{"tmpdir_beside", l_tmpdir_beside},
		{"publish_dir", l_publish_dir},
		{"discard_dir", l_discard_dir},
		{"bpf_log", l_bpf_log},
		{NULL, NULL},
	};
	static const luaL_Reg lock_methods[] = {
		{"release", l_lock_release},
		{NULL, NULL},
	};
	luaL_setfuncs(L, fns, 0);
	kx_newclass(L, LOCK_MT, lock_methods, l_lock_release);
	lua_pop(L, 1);
}
