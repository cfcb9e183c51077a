/*
 * ltrace.c - kx.trace.core: the tracer and its launcher for Lua (the Lua
 * half, stdlib/kx/trace.lua, makes runs, files and audits of it).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
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
	const char *samples = kx_optstringfield(L, 1, "samples", NULL);
	const char *procs = kx_optstringfield(L, 1, "procs", NULL);
	if (!samples || !procs)
		return kx_fielderror(L, 1, samples ? "procs" : "samples",
				     "a file name expected");
	double interval = kx_optnumberfield(L, 1, "interval", 0.2);
	const char *match = kx_optstringfield(L, 1, "match", NULL);
	const char *source = kx_optstringfield(L, 1, "source", "auto");
	const char *sentinels = kx_optstringfield(L, 1, "sentinels", NULL);
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
		return luaL_error(L, "the trace run is stopped");
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
	uv_poll_t poll;   /* readable: the command has ended */
	uv_timer_t wait;  /* for its exit event (see finish) */
	int open_handles;
	double ended_ms;  /* when it was first seen ended */
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
	struct launch *l = h->data;
	if (--l->open_handles > 0)
		return;
	close(l->pidfd);
	luaL_unref(mainL, LUA_REGISTRYINDEX, l->tracer_ref);
	free(l);
}

static void finish(struct launch *l);

static void on_wait(uv_timer_t *h)
{
	finish(h->data);
}

/* The command has ended (a zombie).  Its end comes from the eBPF exit
 * event when there is one, else from its stat read before it is reaped;
 * wait4 gives the kernel's figure for the record.  The exit event is sent
 * at its last thread's final switch, which may come after its parent was
 * told (tens of ms on a loaded machine): finish looks again every 2 ms, up
 * to TRACE_EXIT_EVENT_WAIT_MS, without holding up the loop. */
static void finish(struct launch *l)
{
	struct tracer *t = &l->u->t;
	double now = trace_proc_now_ms();
	if (!l->ended_ms)
		l->ended_ms = now;
	if (t->running && t->drain) {
		t->drain(t->drain_ud);
		if (trace_following(t, l->pid) &&
		    now - l->ended_ms < TRACE_EXIT_EVENT_WAIT_MS) {
			uv_poll_stop(&l->poll);
			uv_timer_start(&l->wait, on_wait, 2, 0);
			return;
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
	if (have_stat)   /* no-op once ended by its eBPF event */
		trace_finish(t, l->pid, &st, ru.ru_maxrss);
	trace_sentinel(t, l->pid, 0, 0);
	kx_untrack_pgid(l->pid);
	uv_poll_stop(&l->poll);
	if (l->task) {
		push_record(kx_task_state(l->task), l, ws, &ru, l->ended_ms);
		kx_wake(l->task, 1);
		l->task = NULL;
	}
	uv_close((uv_handle_t *)&l->poll, launch_closed);
	uv_close((uv_handle_t *)&l->wait, launch_closed);
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
	struct launch *l = h->data;
	siginfo_t si;
	(void)status;
	(void)events;
	memset(&si, 0, sizeof si);
	if (waitid(P_PID, (id_t)l->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
	    si.si_pid == 0)
		return;
	finish(l);
}

/* The waiting task was cancelled: the command goes with it. */
static void launch_cancel(void *ud)
{
	struct launch *l = ud;
	l->task = NULL;
	kill(-l->pid, SIGTERM);
}

/* env = {NAME = value | false}: kx_env_new's changes ("NAME=VALUE" sets,
 * "NAME" removes), kept alive in a table at the top of the stack. */
static const char **env_changes(lua_State *L, int t)
{
	size_t n = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		n++;
		lua_pop(L, 1);
	}
	lua_createtable(L, (int)n, 0);
	int keep = lua_gettop(L);
	const char **ch = lua_newuserdatauv(L, (n + 1) * sizeof *ch, 0);
	lua_rawseti(L, keep, 0);
	size_t k = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (lua_type(L, -2) != LUA_TSTRING)
			kx_fielderror(L, 2, "env", "names must be strings");
		const char *name = lua_tostring(L, -2);
		if (lua_type(L, -1) == LUA_TBOOLEAN)
			ch[k] = lua_pushstring(L, name);
		else if (lua_isstring(L, -1))
			ch[k] = lua_pushfstring(L, "%s=%s", name,
						lua_tostring(L, -1));
		else
			kx_fielderror(L, 2, "env", lua_pushfstring(L,
				"value of '%s' is a %s, a string or false expected",
				name, luaL_typename(L, -1)));
		lua_rawseti(L, keep, (lua_Integer)++k);
		lua_pop(L, 1);
	}
	ch[k] = NULL;
	return ch;
}

/* stdin/stdout/stderr = "inherit" | "null" | PATH into o->io[i], o->fd[i]
 * (the descriptor to close once spawned, or -1). */
static int open_stdio(lua_State *L, int t, const char *field, int i,
		      struct kx_spawn *o)
{
	const char *v = kx_optstringfield(L, t, field, NULL);
	o->fd[i] = -1;
	if (!v || strcmp(v, "inherit") == 0)
		return 0;
	if (strcmp(v, "null") == 0) {
		o->io[i] = KX_IO_NULL;
		return 0;
	}
	o->fd[i] = open(v, i == 0 ? O_RDONLY | O_CLOEXEC :
			O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (o->fd[i] < 0)
		return -errno;
	o->io[i] = KX_IO_FD;
	return 0;
}

/* tracer:launch{argv..., cwd=, env=, stdin=, stdout=, stderr=}
 * -> {pid, ts_start, ts_end, exit_code | signal, cpu_ms, peak_rss_kb} |
 * nil, err.  The command is started stopped (kx_spawn), followed, then let
 * go: none of its forks is missed. */
static int l_launch(lua_State *L)
{
	struct tracer_ud *u = check(L);
	luaL_checktype(L, 2, LUA_TTABLE);
	int argc = (int)lua_rawlen(L, 2);
	luaL_argcheck(L, argc > 0, 2, "argv is empty");
	if (!u->t.running)
		return luaL_error(L, "the trace run is stopped");
	kx_task *task = kx_checktask(L, "exec");

	const char **argv = lua_newuserdatauv(L, (size_t)(argc + 1) * sizeof *argv, 0);
	for (int i = 1; i <= argc; i++) {
		lua_rawgeti(L, 2, i);
		if (!lua_isstring(L, -1))
			return luaL_argerror(L, 2, lua_pushfstring(L, "argv[%d] is a "
					     "%s, string expected", i, luaL_typename(L, -1)));
		lua_rawseti(L, 2, i);   /* the string form stays in the table */
		lua_rawgeti(L, 2, i);
		argv[i - 1] = lua_tostring(L, -1);
		lua_pop(L, 1);
	}
	argv[argc] = NULL;
	struct kx_spawn o = { .argv = argv, .flags = KX_SPAWN_STOPPED };
	o.cwd = kx_optstringfield(L, 2, "cwd", NULL);
	char **envp = NULL;
	lua_getfield(L, 2, "env");
	if (lua_istable(L, -1)) {
		envp = kx_env_new(env_changes(L, lua_gettop(L)));
		if (!envp)
			return kx_fail(L, "out of memory");
		o.envp = (const char *const *)envp;
	}
	static const char *const fields[] = { "stdin", "stdout", "stderr" };
	char err[512] = "";
	pid_t pid = 0;
	for (int i = 0; i < 3 && !pid; i++)
		if ((pid = open_stdio(L, 2, fields[i], i, &o)) < 0) {
			lua_getfield(L, 2, fields[i]);
			snprintf(err, sizeof err, "%s: %s", lua_tostring(L, -1),
				 strerror(-pid));
		}
	double before_ms = trace_proc_now_ms();
	if (!pid)
		pid = kx_spawn(&o, err, sizeof err);
	free(envp);
	for (int i = 0; i < 3; i++)
		if (o.io[i] == KX_IO_FD)
			close(o.fd[i]);
	if (pid < 0)
		return kx_fail(L, "%s", err);
	/* stopped before exec: followed now, then let go */
	if (trace_watch(&u->t, pid) == 0)
		for (size_t i = u->t.nprocs; i > 0; i--)
			if (u->t.procs[i - 1].pid == pid) {
				u->t.procs[i - 1].launched = 1;
				trace_sentinel(&u->t, pid,
					       u->t.procs[i - 1].start_ms, 1);
				break;
			}

	struct launch *l = calloc(1, sizeof *l);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (!l || pidfd < 0 || uv_poll_init(kx_loop(), &l->poll, pidfd) < 0) {
		int e = l ? errno : ENOMEM;
		kill(-pid, SIGKILL);
		waitpid(pid, NULL, 0);
		kx_untrack_pgid(pid);
		trace_sentinel(&u->t, pid, 0, 0);
		if (pidfd >= 0)
			close(pidfd);
		free(l);
		return kx_fail(L, "pidfd_open: %s", strerror(e));
	}
	/* the kernel's start time has clock-tick precision (10 ms): keep it
	 * within what we saw around the fork */
	struct trace_proc_stat st;
	double after_ms = trace_proc_now_ms();
	uv_timer_init(kx_loop(), &l->wait);   /* cannot fail */
	l->poll.data = l->wait.data = l;
	l->open_handles = 2;
	l->pidfd = pidfd;
	l->pid = pid;
	l->u = u;
	l->start_ms = trace_proc_read_stat(pid, &st) == 0 ? st.start_ms : after_ms;
	if (l->start_ms < before_ms)
		l->start_ms = before_ms;
	if (l->start_ms > after_ms)
		l->start_ms = after_ms;
	kill(pid, SIGCONT);
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
