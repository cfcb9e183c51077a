/*
 * lexec.c - partition:exec{...}: runs a program inside a partition.
 *
 * The program gets libkxgpu.so in LD_PRELOAD and the partition's usage file
 * in KXGPU_USAGE (usage.h), so its device allocations are counted against
 * the partition together with every other process running in it.  It runs
 * under kxgpu-guard (guard.c), the leader of a process group of its own, so
 * that it dies with this kxrun even when kxrun is killed; the run is
 * recorded in the usage file, so that whoever ends the partition finds it
 * (members.h).  A libuv timer set for the partition's expiry sends SIGTERM
 * to the group at that moment, and SIGKILL `grace` seconds later (default
 * 5).
 */
#include "lgpu.h"
#include "members.h"
#include "usage.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kx.h"

extern char **environ;

struct run {
	kx_task *task;          /* NULL once the waiting task is gone */
	pid_t pid;              /* the guard: leader of the program's group */
	uv_timer_t term, kill;
	int open_handles;
	int expired;
	uint64_t grace_ms;
	kxgpu_usage usage;      /* where the run is recorded */
	int slot;               /* its record there */
};

static void on_closed(uv_handle_t *h)
{
	struct run *r = h->data;

	if (--r->open_handles == 0)
		free(r);
}

static void on_kill(uv_timer_t *t)
{
	struct run *r = t->data;

	killpg(r->pid, SIGKILL);
}

static void on_term(uv_timer_t *t)
{
	struct run *r = t->data;

	r->expired = 1;
	killpg(r->pid, SIGTERM);
	uv_timer_start(&r->kill, on_kill, r->grace_ms, 0);
}

static void on_child_exit(pid_t pid, int wstatus, void *ud)
{
	struct run *r = ud;

	kx_untrack_pgid(pid);
	kxgpu_usage_end_run(&r->usage, r->slot);
	kxgpu_usage_detach(&r->usage);
	uv_timer_stop(&r->term);
	uv_timer_stop(&r->kill);
	if (r->task) {
		lua_State *T = kx_task_state(r->task);
		lua_createtable(T, 0, 2);
		if (WIFSIGNALED(wstatus)) {
			lua_pushinteger(T, WTERMSIG(wstatus));
			lua_setfield(T, -2, "signal");
		} else {
			lua_pushinteger(T, WEXITSTATUS(wstatus));
			lua_setfield(T, -2, "code");
		}
		lua_pushboolean(T, r->expired);
		lua_setfield(T, -2, "expired");
		kx_wake(r->task, 1);
		r->task = NULL;
	}
	uv_close((uv_handle_t *)&r->term, on_closed);
	uv_close((uv_handle_t *)&r->kill, on_closed);
}

/* The waiting task was cancelled: stop the program now. */
static void on_cancel(void *ud)
{
	struct run *r = ud;

	r->task = NULL;
	killpg(r->pid, SIGKILL);
}

/* Pushes a string kept alive by the anchor table at index anchor. */
static char *keep(lua_State *L, int anchor)
{
	char *s = (char *)lua_tostring(L, -1);

	lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
	return s;
}

/* environ without our variables, then ours, then the caller's env table.
 * Everything is anchored in a table left on the stack. */
static char **build_env(lua_State *L, int opts, const char *preload,
                        const char *usage, const char *id)
{
	static const char *const ours[] = { "LD_PRELOAD=", "KXGPU_USAGE=",
	                                    "KXRUN_GPU_PARTITION=" };
	const char *old_preload = getenv("LD_PRELOAD");
	size_t n = 0, extra = 0, k = 0;
	int anchor, envt;
	char **env;

	while (environ[n])
		n++;
	lua_getfield(L, opts, "env");
	envt = lua_gettop(L);
	if (lua_type(L, envt) == LUA_TTABLE) {
		lua_pushnil(L);
		while (lua_next(L, envt)) {
			extra++;
			lua_pop(L, 1);
		}
	}
	lua_newtable(L);
	anchor = lua_gettop(L);
	env = lua_newuserdatauv(L, (n + extra + 4) * sizeof *env, 0);
	lua_rawseti(L, anchor, 0);
	for (size_t i = 0; i < n; i++) {
		int skip = 0;
		for (size_t j = 0; j < 3; j++)
			skip |= strncmp(environ[i], ours[j], strlen(ours[j])) == 0;
		if (!skip)
			env[k++] = environ[i];
	}
	if (old_preload && *old_preload)
		lua_pushfstring(L, "LD_PRELOAD=%s:%s", preload, old_preload);
	else
		lua_pushfstring(L, "LD_PRELOAD=%s", preload);
	env[k++] = keep(L, anchor);
	lua_pushfstring(L, "KXGPU_USAGE=%s", usage);
	env[k++] = keep(L, anchor);
	lua_pushfstring(L, "KXRUN_GPU_PARTITION=%s", id);
	env[k++] = keep(L, anchor);
	if (extra) {
		lua_pushnil(L);
		while (lua_next(L, envt)) {
			lua_pushfstring(L, "%s=%s", luaL_checkstring(L, -2),
			                luaL_checkstring(L, -1));
			env[k++] = keep(L, anchor);
			lua_pop(L, 1);
		}
	}
	env[k] = NULL;
	return env;
}

/* Starts the guard with the program's argv after its own arguments:
 * RUNNER_PID STATUS_FD (guard.c).  Returns its pid, or -errno with the
 * reason in err. */
static pid_t start_guard(lua_State *L, const char *guard, const char **argv,
                         int n, char **env, int status_fd, char *err,
                         size_t errlen)
{
	const char **gargv = lua_newuserdatauv(L, ((size_t)n + 4) *
	                                       sizeof *gargv, 0);
	char runner[16], fd[16];
	int fds[2], e = 0;
	pid_t pid;

	snprintf(runner, sizeof runner, "%d", (int)getpid());
	snprintf(fd, sizeof fd, "%d", status_fd);
	gargv[0] = guard;
	gargv[1] = runner;
	gargv[2] = fd;
	memcpy(gargv + 3, argv, ((size_t)n + 1) * sizeof *argv);
	if (pipe2(fds, O_CLOEXEC) != 0) {
		e = errno;
		snprintf(err, errlen, "pipe: %s", strerror(e));
		return -e;
	}
	pid = fork();
	if (pid < 0) {
		e = errno;
		close(fds[0]);
		close(fds[1]);
		snprintf(err, errlen, "fork: %s", strerror(e));
		return -e;
	}
	if (pid == 0) {
		sigset_t none;
		setpgid(0, 0);
		for (int sig = 1; sig < NSIG; sig++)
			if (sig != SIGKILL && sig != SIGSTOP)
				signal(sig, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		fcntl(status_fd, F_SETFD, 0);  /* the guard's to write */
		execve(guard, (char *const *)gargv, env);
		e = errno;
		if (write(fds[1], &e, sizeof e) < 0)
			_exit(127);
		_exit(127);
	}
	setpgid(pid, pid);  /* also here: no race with an early killpg */
	close(fds[1]);
	while (read(fds[0], &e, sizeof e) < 0 && errno == EINTR)
		;
	close(fds[0]);
	if (e) {
		waitpid(pid, NULL, 0);
		snprintf(err, errlen, "cannot run %s: %s", guard, strerror(e));
		return -e;
	}
	return pid;
}

/* The program's exec error from the guard (0: it started). */
static int program_errno(int fd)
{
	int e = 0;

	while (read(fd, &e, sizeof e) < 0 && errno == EINTR)
		;
	return e;
}

/* A run that cannot go on: its group killed and reaped, its record gone.
 * Pushes nil, message. */
static int abandon(lua_State *L, struct run *r, const char *fmt, ...)
{
	va_list ap;

	killpg(r->pid, SIGKILL);
	waitpid(r->pid, NULL, 0);
	kx_untrack_pgid(r->pid);
	kxgpu_usage_end_run(&r->usage, r->slot);
	kxgpu_usage_detach(&r->usage);
	free(r);
	lua_pushnil(L);
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	return 2;
}

int kxgpu_exec(lua_State *L, const struct kxgpu_partition *p, int argidx)
{
	kx_task *task = kx_checktask(L, "exec");
	char usage[4300], err[KXGPU_ERRLEN];
	struct kxgpu_partition cur;
	int64_t left;
	double grace = 5;
	const char **argv;
	kxgpu_ledger *l;
	struct run *r;
	char **env;
	int n, status[2], child_errno;
	const char *guard;
	pid_t pid;

	luaL_checktype(L, argidx, LUA_TTABLE);
	n = (int)luaL_len(L, argidx);
	luaL_argcheck(L, n > 0, argidx, "a command is required");
	if (lua_getfield(L, argidx, "grace") != LUA_TNIL)
		grace = luaL_checknumber(L, -1);
	lua_pop(L, 1);
	luaL_argcheck(L, grace >= 0 && grace < 3600, argidx,
	              "grace must be 0 to 3600 seconds");
	argv = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *argv, 0);
	for (int i = 0; i < n; i++) {
		lua_rawgeti(L, argidx, i + 1);
		argv[i] = luaL_checkstring(L, -1);
		lua_pop(L, 1);  /* the table keeps the string */
	}
	argv[n] = NULL;

	l = kxgpu_lua_ledger(err, sizeof err);
	if (!l)
		return kx_fail(L, "%s", err);
	if (kxgpu_ledger_find(l, p->id, &cur, err, sizeof err) != 0)
		return kx_fail(L, "%s", err);
	if (getuid() != 0 && getuid() != cur.uid)
		return kx_fail(L, "Permission denied: partition owned by %s",
		               cur.owner);
	left = cur.expires_ms - kxgpu_now_ms();
	if (left <= 0)
		return kx_fail(L, "Partition not found: %s", cur.id);
	kxgpu_usage_path(l, cur.id, usage, sizeof usage);
	if (kxgpu_usage_init(usage, cur.bytes, cur.expires_ms, cur.uid, err,
	                     sizeof err) != 0)
		return kx_fail(L, "%s", err);
	lua_pushfstring(L, "%s/libkxgpu.so", kx_libdir());
	if (access(lua_tostring(L, -1), R_OK) != 0)
		return kx_fail(L, "cannot use %s: %s (build it with make)",
		               lua_tostring(L, -1), strerror(errno));
	env = build_env(L, argidx, lua_tostring(L, -1), usage, cur.id);
	guard = lua_pushfstring(L, "%s/" KXGPU_GUARD_NAME, kx_libdir());
	if (access(guard, X_OK) != 0)
		return kx_fail(L, "cannot use %s: %s (build it with make)", guard,
		               strerror(errno));

	r = calloc(1, sizeof *r);
	if (!r)
		return kx_fail(L, "out of memory");
	r->slot = -1;
	if (kxgpu_usage_attach(&r->usage, usage, err, sizeof err) != 0 ||
	    pipe2(status, O_CLOEXEC) != 0) {
		if (r->usage.f)  /* else err says why attach failed */
			snprintf(err, sizeof err, "pipe: %s", strerror(errno));
		kxgpu_usage_detach(&r->usage);
		free(r);
		return kx_fail(L, "%s", err);
	}
	pid = start_guard(L, guard, argv, n, env, status[1], err, sizeof err);
	close(status[1]);
	if (pid < 0) {
		close(status[0]);
		kxgpu_usage_detach(&r->usage);
		free(r);
		return kx_fail(L, "%s", err);
	}
	r->pid = pid;
	kx_track_pgid(pid);
	/* recorded before anything can end the partition without finding it */
	r->slot = kxgpu_usage_add_run(&r->usage, pid, (uint32_t)(grace * 1000));
	child_errno = program_errno(status[0]);
	close(status[0]);
	if (child_errno)
		return abandon(L, r, "cannot run %s: %s", argv[0],
		               strerror(child_errno));
	if (r->slot < 0)
		return abandon(L, r, "too many programs run in %s at once (%d)",
		               cur.id, KXGPU_USAGE_RUNS);
	/* ended (released, expired) since we looked: no room for it now */
	if (kxgpu_ledger_find(l, cur.id, &cur, err, sizeof err) != 0)
		return abandon(L, r, "%s", err);
	if (kx_child_watch(pid, on_child_exit, r) != 0)
		return abandon(L, r, "cannot watch the child process");

	r->task = task;
	r->grace_ms = (uint64_t)(grace * 1000);
	r->open_handles = 2;
	uv_timer_init(kx_loop(), &r->term);
	uv_timer_init(kx_loop(), &r->kill);
	r->term.data = r->kill.data = r;
	uv_update_time(kx_loop());
	/* recomputed now: the loop's clock is monotonic, expiry is wall time */
	left = cur.expires_ms - kxgpu_now_ms();
	uv_timer_start(&r->term, on_term, left > 0 ? (uint64_t)left : 0, 0);
	return kx_await(L, task, -1, on_cancel, r);
}
