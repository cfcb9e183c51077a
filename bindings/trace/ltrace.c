/*
 * ltrace.c - kx.trace.core: the tracer and its launcher for Lua (the Lua
 * half, stdlib/kx/trace.lua, makes runs, files and audits of it).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kx.h"
#include "bpfsrc.h"
#include "lrundir.h"
#include "tracer.h"

#define TRACER_MT "kx.trace.tracer"

extern char **environ;

struct tracer_ud {
	struct tracer t;
	int ref;        /* held while the loop uses the memory */
	int closed;
	struct trace_ebpf *bpf;
	const char *source;   /* "ebpf" or "proc" */
	unsigned long long lost_events;   /* kept from the eBPF source at stop */
	char note[2048];      /* why not eBPF, when asked for auto */
};

static void drain_bpf(void *ud)
{
	trace_ebpf_drain(ud);
}

static struct tracer_ud *check(lua_State *L)
{
	return luaL_checkudata(L, 1, TRACER_MT);
}

static lua_State *mainL;   /* for registry refs from loop callbacks */

static void on_closed(uv_handle_t *h)
{
	struct tracer_ud *u = h->data;
	luaL_unref(mainL, LUA_REGISTRYINDEX, u->ref);
	u->ref = LUA_NOREF;
}

/* core.tracer{samples=, procs=, interval=, match=, source=} -> tracer | nil, err */
static int l_tracer(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "samples");
	const char *samples = luaL_checkstring(L, -1);
	lua_getfield(L, 1, "procs");
	const char *procs = luaL_checkstring(L, -1);
	lua_getfield(L, 1, "interval");
	double interval = luaL_optnumber(L, -1, 0.2);
	lua_getfield(L, 1, "match");
	const char *match = luaL_optstring(L, -1, NULL);
	lua_getfield(L, 1, "source");
	const char *source = luaL_optstring(L, -1, "auto");
	lua_getfield(L, 1, "sentinels");
	const char *sentinels = luaL_optstring(L, -1, NULL);
	luaL_argcheck(L, interval >= 0.001 && isfinite(interval), 1,
		      "interval must be finite and at least 1 ms");
	luaL_argcheck(L, strcmp(source, "auto") == 0 || strcmp(source, "proc") == 0 ||
		      strcmp(source, "ebpf") == 0, 1, "source must be auto, proc or ebpf");

	struct tracer_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
	memset(u, 0, sizeof *u);
	u->ref = LUA_NOREF;
	char err[512];
	if (trace_start(&u->t, samples, procs, interval, match, err,
			 sizeof err) < 0) {
		u->closed = 1;
		luaL_setmetatable(L, TRACER_MT);
		return kx_fail(L, "%s", err);
	}
	luaL_setmetatable(L, TRACER_MT);
	trace_set_sentinels(&u->t, sentinels);
	/* before the eBPF program loads (slow on a loaded machine): what runs
	 * now by the name asked for is found while it still runs */
	trace_scan_matches(&u->t);
	lua_pushvalue(L, -1);
	u->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	u->source = "proc";
	if (strcmp(source, "proc") != 0) {
		u->bpf = trace_ebpf_open(&u->t, u->note, sizeof u->note);
		if (u->bpf) {
			u->source = "ebpf";
			u->t.drain = drain_bpf;
			u->t.drain_ud = u->bpf;
		} else if (strcmp(source, "ebpf") == 0) {
			trace_stop(&u->t, on_closed);
			u->closed = 1;
			return kx_fail(L, "%s", u->note);
		}
	}
	return 1;
}

/* tracer:source() -> "ebpf" | "proc", and why not eBPF when it is not */
static int l_source(lua_State *L)
{
	struct tracer_ud *u = check(L);
	lua_pushstring(L, u->source);
	if (u->note[0] && !u->bpf)
		lua_pushstring(L, u->note);
	else
		lua_pushnil(L);
	return 2;
}

static int l_watch(lua_State *L)
{
	struct tracer_ud *u = check(L);
	lua_Integer pid = luaL_checkinteger(L, 2);
	luaL_argcheck(L, pid > 0, 2, "pid must be positive");
	if (!u->t.running)
		return kx_fail(L, "the run is stopped");
	if (trace_watch(&u->t, (pid_t)pid) < 0)
		return kx_fail(L, "no process %d", (int)pid);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_stop(lua_State *L)
{
	struct tracer_ud *u = check(L);
	if (u->t.running) {
		trace_stop(&u->t, on_closed);
		if (u->t.lost_events)
			u->lost_events = *u->t.lost_events;
		trace_ebpf_close(u->bpf);
		u->bpf = NULL;
		u->closed = 1;
	}
	return 0;
}

static int l_live(lua_State *L)
{
	struct tracer_ud *u = check(L);
	lua_pushinteger(L, (lua_Integer)trace_live(&u->t));
	lua_pushinteger(L, (lua_Integer)u->t.rows);
	unsigned long long lost = u->t.lost_events ? *u->t.lost_events :
				  u->lost_events;
	if (!u->t.write_errors && !lost)
		return 2;
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	if (u->t.write_errors) {
		lua_pushfstring(L, "%d rows could not be written: %s",
				(int)u->t.write_errors,
				strerror(u->t.write_errno));
		luaL_addvalue(&b);
	}
	if (lost) {
		lua_pushfstring(L, "%s%d eBPF events were lost (ring buffer full)",
				u->t.write_errors ? "; " : "", (int)lost);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	return 3;
}

/* ---- launching a traced command ----------------------------------------- */

struct launch {
	uv_poll_t poll;   /* first: the close callback frees the struct */
	int pidfd;
	struct tracer_ud *u;
	int tracer_ref;   /* keeps the tracer while the child lives */
	pid_t pid;
	double start_ms;
	kx_task *task;
};

static void push_record(lua_State *T, struct launch *l, int ws,
			const struct rusage *ru, double end_ms)
{
	lua_createtable(T, 0, 6);
	lua_pushinteger(T, l->pid);
	lua_setfield(T, -2, "pid");
	lua_pushinteger(T, (lua_Integer)(l->start_ms + 0.5));
	lua_setfield(T, -2, "ts_start");
	lua_pushinteger(T, (lua_Integer)(end_ms + 0.5));
	lua_setfield(T, -2, "ts_end");
	if (WIFSIGNALED(ws)) {
		lua_pushinteger(T, WTERMSIG(ws));
		lua_setfield(T, -2, "signal");
	} else {
		lua_pushinteger(T, WEXITSTATUS(ws));
		lua_setfield(T, -2, "exit_code");
	}
	/* the kernel's own figure: the command and every descendant it
	 * waited for, to the microsecond */
	lua_pushnumber(T, (double)ru->ru_utime.tv_sec * 1e3 +
		       (double)ru->ru_utime.tv_usec / 1e3 +
		       (double)ru->ru_stime.tv_sec * 1e3 +
		       (double)ru->ru_stime.tv_usec / 1e3);
	lua_setfield(T, -2, "cpu_ms");
	/* its peak resident set, or that of the largest descendant it waited
	 * for (KiB) */
	lua_pushinteger(T, ru->ru_maxrss);
	lua_setfield(T, -2, "peak_rss_kb");
}

static void launch_closed(uv_handle_t *h)
{
	struct launch *l = (struct launch *)h;
	close(l->pidfd);
	luaL_unref(mainL, LUA_REGISTRYINDEX, l->tracer_ref);
	free(l);
}

/* Readable pidfd: the child is a zombie.  Its end comes from the eBPF exit
 * event when there is one (drained first), else from its stat read before
 * it is reaped; wait4 gives the kernel's figure for the record. */
static void on_pidfd(uv_poll_t *h, int status, int events)
{
	struct launch *l = (struct launch *)h;
	struct tracer *t = &l->u->t;
	siginfo_t si;
	(void)status;
	(void)events;
	memset(&si, 0, sizeof si);
	if (waitid(P_PID, (id_t)l->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
	    si.si_pid == 0)
		return;
	double end_ms = trace_proc_now_ms();
	if (t->running && t->drain) {
		/* its exit event follows its last switch, which may come a few
		 * microseconds after its parent is told: wait for it briefly */
		for (int i = 0; i < 50; i++) {
			t->drain(t->drain_ud);
			if (!trace_following(t, l->pid))
				break;
			usleep(100);
		}
	}
	/* the zombie's stat (its own CPU time) before wait4 reaps it; wait4
	 * then gives its peak resident set (ru_maxrss) */
	struct trace_proc_stat st;
	int have_stat = t->running && trace_proc_read_stat(l->pid, &st) == 0;
	int ws = 0;
	struct rusage ru;
	memset(&ru, 0, sizeof ru);
	while (wait4(l->pid, &ws, 0, &ru) < 0 && errno == EINTR)
		;
	if (have_stat)
		trace_finish(t, l->pid, &st, ru.ru_maxrss);   /* no-op once
							       * ended by eBPF */
	trace_sentinel(t, l->pid, 0, 0);
	kx_untrack_pgid(l->pid);
	uv_poll_stop(h);
	if (l->task) {
		push_record(kx_task_state(l->task), l, ws, &ru, end_ms);
		kx_wake(l->task, 1);
		l->task = NULL;
	}
	uv_close((uv_handle_t *)h, launch_closed);
}

/* The waiting task was cancelled: the command goes with it. */
static void launch_cancel(void *ud)
{
	struct launch *l = ud;
	l->task = NULL;
	kill(-l->pid, SIGTERM);
}

/* env: the current environment with the table's entries applied. */
static char **build_env(lua_State *L, int t)
{
	size_t n = 0, extra = 0;
	while (environ[n])
		n++;
	if (t) {
		lua_pushnil(L);
		while (lua_next(L, t)) {
			extra++;
			lua_pop(L, 1);
		}
	}
	lua_newtable(L);   /* keeps the "K=V" strings alive */
	int keep = lua_gettop(L);
	char **env = lua_newuserdatauv(L, (n + extra + 1) * sizeof *env, 0);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		int overridden = 0;
		if (t) {
			const char *eq = strchr(environ[i], '=');
			size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
			lua_pushlstring(L, environ[i], nl);
			overridden = lua_rawget(L, t) != LUA_TNIL;
			lua_pop(L, 1);
		}
		if (!overridden)
			env[k++] = environ[i];
	}
	if (t) {
		lua_pushnil(L);
		while (lua_next(L, t)) {
			if (lua_type(L, -1) != LUA_TBOOLEAN) {
				const char *kv = lua_pushfstring(L, "%s=%s",
					luaL_checkstring(L, -2), luaL_checkstring(L, -1));
				lua_rawseti(L, keep, (lua_Integer)(k + 1));
				env[k++] = (char *)kv;
			}
			lua_pop(L, 1);
		}
	}
	env[k] = NULL;
	return env;
}

static int open_stdio(lua_State *L, int t, const char *field, int target)
{
	lua_getfield(L, t, field);
	const char *v = lua_tostring(L, -1);
	lua_pop(L, 1);
	if (!v || strcmp(v, "inherit") == 0)
		return -1;
	const char *path = strcmp(v, "null") == 0 ? "/dev/null" : v;
	int fd = open(path, target == 0 ? O_RDONLY :
		      O_WRONLY | O_CREAT | O_TRUNC, 0644);   /* no CLOEXEC: dup2'd */
	if (fd < 0)
		luaL_error(L, "%s: %s", path, strerror(errno));
	return fd;
}

/* tracer:launch{argv..., cwd=, env=, stdin=, stdout=, stderr=}
 * -> {pid, ts_start, ts_end, exit_code | signal, cpu_ms} | nil, err */
static int l_launch(lua_State *L)
{
	struct tracer_ud *u = check(L);
	luaL_checktype(L, 2, LUA_TTABLE);
	int argc = (int)lua_rawlen(L, 2);
	luaL_argcheck(L, argc > 0, 2, "argv is empty");
	if (!u->t.running)
		return kx_fail(L, "the run is stopped");
	kx_task *task = kx_checktask(L, "exec");

	char **argv = lua_newuserdatauv(L, (size_t)(argc + 1) * sizeof *argv, 0);
	for (int i = 1; i <= argc; i++) {
		lua_rawgeti(L, 2, i);
		argv[i - 1] = (char *)luaL_checkstring(L, -1);
		lua_rawseti(L, 2, i);   /* the string form stays in the table */
		lua_rawgeti(L, 2, i);
		argv[i - 1] = (char *)lua_tostring(L, -1);
		lua_pop(L, 1);
	}
	argv[argc] = NULL;
	lua_getfield(L, 2, "cwd");
	const char *cwd = lua_tostring(L, -1);
	lua_getfield(L, 2, "env");
	int envt = lua_istable(L, -1) ? lua_gettop(L) : 0;
	char **envp = build_env(L, envt);
	int fds[3];
	fds[0] = open_stdio(L, 2, "stdin", 0);
	fds[1] = open_stdio(L, 2, "stdout", 1);
	fds[2] = open_stdio(L, 2, "stderr", 2);

	int errpipe[2], gopipe[2];
	double before_ms = trace_proc_now_ms();
	if (pipe2(errpipe, O_CLOEXEC) < 0)
		return kx_fail(L, "pipe: %s", strerror(errno));
	if (pipe2(gopipe, O_CLOEXEC) < 0) {
		close(errpipe[0]);
		close(errpipe[1]);
		return kx_fail(L, "pipe: %s", strerror(errno));
	}
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(errpipe[0]);
		close(errpipe[1]);
		close(gopipe[0]);
		close(gopipe[1]);
		return kx_fail(L, "fork: %s", strerror(e));
	}
	if (pid == 0) {
		/* only async-signal-safe calls from here on */
		sigset_t none;
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (int i = 0; i < 3; i++)
			if (fds[i] >= 0 && dup2(fds[i], i) < 0)
				goto failed;
		if (cwd && chdir(cwd) < 0)
			goto failed;
		/* wait until the parent follows us, so no fork of ours is missed */
		char go;
		close(gopipe[1]);
		while (read(gopipe[0], &go, 1) < 0 && errno == EINTR)
			;
		execvpe(argv[0], argv, envp);
failed:;
		int e = errno;
		if (write(errpipe[1], &e, sizeof e) < 0)
			_exit(127);
		_exit(127);
	}
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	close(errpipe[1]);
	close(gopipe[0]);
	if (trace_watch(&u->t, pid) == 0)
		for (size_t i = u->t.nprocs; i > 0; i--)
			if (u->t.procs[i - 1].pid == pid) {
				u->t.procs[i - 1].launched = 1;
				trace_sentinel(&u->t, pid,
						u->t.procs[i - 1].start_ms, 1);
				break;
			}
	if (write(gopipe[1], "g", 1) < 0)
		kill(pid, SIGKILL);
	close(gopipe[1]);
	int child_errno = 0;
	ssize_t got;
	while ((got = read(errpipe[0], &child_errno, sizeof child_errno)) < 0 &&
	       errno == EINTR)
		;
	close(errpipe[0]);
	if (got == sizeof child_errno) {
		waitpid(pid, NULL, 0);
		trace_sentinel(&u->t, pid, 0, 0);
		return kx_fail(L, "exec %s: %s", argv[0], strerror(child_errno));
	}

	struct launch *l = calloc(1, sizeof *l);
	struct trace_proc_stat st;
	l->u = u;
	l->pid = pid;
	/* the kernel's start time has clock-tick precision (10 ms): keep it
	 * within what we saw around fork() */
	double after_ms = trace_proc_now_ms();
	l->start_ms = trace_proc_read_stat(pid, &st) == 0 ? st.start_ms : after_ms;
	if (l->start_ms < before_ms)
		l->start_ms = before_ms;
	if (l->start_ms > after_ms)
		l->start_ms = after_ms;
	kx_track_pgid(pid);
	l->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (l->pidfd < 0 || uv_poll_init(kx_loop(), &l->poll, l->pidfd) < 0) {
		kill(-pid, SIGKILL);
		waitpid(pid, NULL, 0);
		trace_sentinel(&u->t, pid, 0, 0);
		free(l);
		return kx_fail(L, "pidfd_open: %s", strerror(errno));
	}
	lua_pushvalue(L, 1);
	l->tracer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	l->task = task;
	uv_poll_start(&l->poll, UV_READABLE, on_pidfd);
	return kx_await(L, task, -1, launch_cancel, l);
}

int luaopen_kx_trace_core(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"watch", l_watch},
		{"launch", l_launch},
		{"stop", l_stop},
		{"live", l_live},
		{"source", l_source},
		{NULL, NULL},
	};
	static const luaL_Reg fns[] = {
		{"tracer", l_tracer},
		{NULL, NULL},
	};
	lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
	mainL = lua_tothread(L, -1);
	lua_pop(L, 1);
	kx_newclass(L, TRACER_MT, methods, NULL);
	lua_pop(L, 1);
	luaL_newlib(L, fns);
	trace_rundir_open(L);
	return 1;
}
