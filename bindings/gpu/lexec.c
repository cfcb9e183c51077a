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

/* Pushes nothing; returns the string on top, popped into the anchor table
 * at index anchor, which keeps it alive. */
static const char *keep(lua_State *L, int anchor)
{
	const char *s = lua_tostring(L, -1);

	lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
	return s;
}

/* The program's environment: kxrun's with the caller's env table applied,
 * then ours, which win: the enforcement library first in LD_PRELOAD (the
 * caller's LD_PRELOAD after it), the usage file, the partition.  The array
 * from kx_env_new (free it), or NULL when out of memory. */
static char **program_env(lua_State *L, int opts, const char *preload,
                          const char *usage, const char *id)
{
	const char *old_preload = getenv("LD_PRELOAD");
	const char **changes;
	size_t extra = 0, k = 0;
	int anchor, envt;

	lua_newtable(L);
	anchor = lua_gettop(L);
	lua_getfield(L, opts, "env");
	envt = lua_gettop(L);
	if (!lua_isnil(L, envt) && lua_type(L, envt) != LUA_TTABLE)
		kx_fielderror(L, opts, "env", "a table of names and values");
	if (lua_type(L, envt) == LUA_TTABLE) {
		lua_pushnil(L);
		while (lua_next(L, envt)) {
			extra++;
			lua_pop(L, 1);
		}
	}
	changes = lua_newuserdatauv(L, (extra + 4) * sizeof *changes, 0);
	lua_rawseti(L, anchor, 0);
	if (extra) {
		lua_pushnil(L);
		while (lua_next(L, envt)) {
			if (lua_type(L, -2) != LUA_TSTRING ||
			    (lua_type(L, -1) != LUA_TSTRING &&
			     lua_type(L, -1) != LUA_TNUMBER))
				kx_fielderror(L, opts, "env", "names and values "
				              "must be strings");
			if (strcmp(lua_tostring(L, -2), "LD_PRELOAD") == 0)
				old_preload = lua_tostring(L, -1);
			lua_pushfstring(L, "%s=%s", lua_tostring(L, -2),
			                lua_tostring(L, -1));
			changes[k++] = keep(L, anchor);
			lua_pop(L, 1);
		}
	}
	if (old_preload && *old_preload)
		lua_pushfstring(L, "LD_PRELOAD=%s:%s", preload, old_preload);
	else
		lua_pushfstring(L, "LD_PRELOAD=%s", preload);
	changes[k++] = keep(L, anchor);
	lua_pushfstring(L, "KXGPU_USAGE=%s", usage);
	changes[k++] = keep(L, anchor);
	lua_pushfstring(L, "KXRUN_GPU_PARTITION=%s", id);
	changes[k++] = keep(L, anchor);
	changes[k] = NULL;
	return kx_env_new(changes);
}

/* In the guard's process before exec: the status pipe is the guard's to
 * write (async-signal-safe). */
static int give_status_fd(void *ud)
{
	return fcntl(*(int *)ud, F_SETFD, 0) == 0 ? 0 : errno;
}

/* Starts the guard, the program's argv after its own arguments RUNNER_PID
 * STATUS_FD (guard.c).  Returns its pid, or -errno with the reason in err. */
static pid_t start_guard(lua_State *L, const char *guard, const char **argv,
                         int n, char **env, int *status_fd, char *err,
                         size_t errlen)
{
	const char **gargv = lua_newuserdatauv(L, ((size_t)n + 4) *
	                                       sizeof *gargv, 0);
	struct kx_spawn o = { .argv = gargv, .envp = (const char *const *)env,
	                      .child_hook = give_status_fd, .ud = status_fd };
	char runner[16], fd[16];

	snprintf(runner, sizeof runner, "%d", (int)getpid());
	snprintf(fd, sizeof fd, "%d", *status_fd);
	gargv[0] = guard;
	gargv[1] = runner;
	gargv[2] = fd;
	memcpy(gargv + 3, argv, ((size_t)n + 1) * sizeof *argv);
	return kx_spawn(&o, err, errlen);
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
	double grace;
	const char **argv;
	kxgpu_ledger *l;
	struct run *r;
	char **env;
	int n, status[2], child_errno;
	const char *guard, *preload;
	pid_t pid;

	luaL_checktype(L, argidx, LUA_TTABLE);
	n = (int)luaL_len(L, argidx);
	luaL_argcheck(L, n > 0, argidx, "a command is required");
	grace = kx_optnumberfield(L, argidx, "grace", 5);
	if (!(grace >= 0 && grace < 3600))
		kx_fielderror(L, argidx, "grace", "0 to 3600 seconds");
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
	preload = lua_tostring(L, -1);
	guard = lua_pushfstring(L, "%s/" KXGPU_GUARD_NAME, kx_libdir());
	if (access(guard, X_OK) != 0)
		return kx_fail(L, "cannot use %s: %s (build it with make)", guard,
		               strerror(errno));
	env = program_env(L, argidx, preload, usage, cur.id);
	if (!env)
		return kx_fail(L, "out of memory");

	r = calloc(1, sizeof *r);
	if (!r) {
		free(env);
		return kx_fail(L, "out of memory");
	}
	r->slot = -1;
	if (kxgpu_usage_attach(&r->usage, usage, err, sizeof err) != 0 ||
	    pipe2(status, O_CLOEXEC) != 0) {
		if (r->usage.f)  /* else err says why attach failed */
			snprintf(err, sizeof err, "pipe: %s", strerror(errno));
		kxgpu_usage_detach(&r->usage);
		free(r);
		free(env);
		return kx_fail(L, "%s", err);
	}
	pid = start_guard(L, guard, argv, n, env, &status[1], err, sizeof err);
	free(env);
	close(status[1]);
	if (pid < 0) {
		close(status[0]);
		kxgpu_usage_detach(&r->usage);
		free(r);
		return kx_fail(L, "%s", err);
	}
	r->pid = pid;  /* kx_spawn tracks its group */
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
