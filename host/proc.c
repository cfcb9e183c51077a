/*
 * proc.c - child processes: kx.spawn, pipes, waiting, and the book of every
 * process group kxrun started, so none outlives it by accident.
 *
 * Each child runs in its own session (so its own process group); signals go
 * to the whole group so a shell's children go with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "host.h"

#define PROC_MT "kx.process"

extern char **environ;

/* ---- process groups to terminate ------------------------------------------ */

/* Plain arrays: the signal handler's last-resort path reads them. */
#define MAX_GROUPS 4096
static volatile pid_t groups[MAX_GROUPS];
static volatile int ngroups;

void kx_track_pgid(pid_t pgid)
{
	if (pgid <= 0)
		return;
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == pgid)
			return;
	for (int i = 0; i < ngroups; i++) {
		if (groups[i] == 0) {
			groups[i] = pgid;
			return;
		}
	}
	if (ngroups < MAX_GROUPS)
		groups[ngroups++] = pgid;
}

void kx_untrack_pgid(pid_t pgid)
{
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == pgid)
			groups[i] = 0;
	while (ngroups > 0 && groups[ngroups - 1] == 0)
		ngroups--;
}

/* Async-signal-safe: the second Ctrl-C's path. */
void kx_kill_groups_now(void)
{
	for (int i = 0; i < ngroups; i++)
		if (groups[i] > 0)
			kill(-groups[i], SIGKILL);
}

static int group_alive(pid_t pgid)
{
	return kill(-pgid, 0) == 0 || errno == EPERM;
}

/* SIGTERM (or sig) to every group, up to grace_s for them to go, then
 * SIGKILL.  Reaps what it can meanwhile, since zombie leaders keep their
 * group alive. */
void kx_terminate_children(int sig, double grace_s)
{
	int any = 0;
	for (int i = 0; i < ngroups; i++) {
		if (groups[i] > 0 && group_alive(groups[i])) {
			kill(-groups[i], sig);
			kill(-groups[i], SIGCONT); /* stopped ones must see it */
			any = 1;
		}
	}
	if (!any)
		return;
	struct timespec tick = {0, 5 * 1000 * 1000};
	for (double waited = 0; waited < grace_s; waited += 0.005) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		int alive = 0;
		for (int i = 0; i < ngroups; i++)
			if (groups[i] > 0 && group_alive(groups[i]))
				alive = 1;
		if (!alive)
			return;
		nanosleep(&tick, NULL);
	}
	kx_kill_groups_now();
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/* A resumed child's groups are its own; the parent's are not its business. */
void kx_procs_after_resume(void)
{
	for (int i = 0; i < ngroups; i++)
		groups[i] = 0;
	ngroups = 0;
}

/* ---- children forked by bindings ------------------------------------------ */

struct child_watch {
	uv_poll_t poll;
	int fd;
	pid_t pid;
	kx_child_cb cb;
	void *ud;
};

static void child_watch_free(uv_handle_t *h)
{
	struct child_watch *w = h->data;
	close(w->fd);
	free(w);
}

static void on_child_ready(uv_poll_t *h, int status, int events)
{
	struct child_watch *w = h->data;
	int ws = 0;
	(void)status;
	(void)events;
	pid_t r = waitpid(w->pid, &ws, WNOHANG);
	if (r == 0)
		return;
	if (r < 0)
		ws = 0;   /* reaped elsewhere: report a plain exit */
	uv_poll_stop(h);
	uv_close((uv_handle_t *)h, child_watch_free);
	w->cb(w->pid, ws, w->ud);
}

int kx_child_watch(pid_t pid, kx_child_cb cb, void *ud)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return -errno;
	struct child_watch *w = calloc(1, sizeof *w);
	if (!w) {
		close(fd);
		return -ENOMEM;
	}
	w->fd = fd;
	w->pid = pid;
	w->cb = cb;
	w->ud = ud;
	int r = uv_poll_init(kx_host.loop, &w->poll, fd);
	if (r < 0) {
		close(fd);
		free(w);
		return r;
	}
	w->poll.data = w;
	uv_poll_start(&w->poll, UV_READABLE, on_child_ready);
	return 0;
}

/* ---- processes ------------------------------------------------------------- */

struct pwaiter {
	kx_task *task;
	struct proc *p;
	struct pwaiter *next;
};

struct proc {
	uv_process_t h;
	int ref;          /* registry ref while the child runs */
	pid_t pid;
	int exited;
	int64_t code;
	int sig;
	int tracked;
	struct pwaiter *waiters;
};

static struct proc *checkproc(lua_State *L, int i)
{
	return luaL_checkudata(L, i, PROC_MT);
}

static int push_status(lua_State *L, struct proc *p)
{
	lua_createtable(L, 0, 1);
	if (p->sig) {
		lua_pushinteger(L, p->sig);
		lua_setfield(L, -2, "signal");
	} else {
		lua_pushinteger(L, p->code);
		lua_setfield(L, -2, "code");
	}
	return 1;
}

static void on_proc_closed(uv_handle_t *h)
{
	struct proc *p = h->data;
	luaL_unref(kx_host.L, LUA_REGISTRYINDEX, p->ref);
	p->ref = LUA_NOREF;
}

static void on_proc_exit(uv_process_t *h, int64_t code, int sig)
{
	struct proc *p = h->data;

	p->exited = 1;
	p->code = code;
	p->sig = sig;
	if (p->tracked) {
		/* the group may live on without its leader; keep it tracked
		 * only while it does */
		if (!group_alive(p->pid))
			kx_untrack_pgid(p->pid);
	}
	struct pwaiter *w = p->waiters;
	p->waiters = NULL;
	while (w) {
		struct pwaiter *next = w->next;
		push_status(kx_task_state(w->task), p);
		kx_wake(w->task, 1);
		free(w);
		w = next;
	}
	uv_close((uv_handle_t *)h, on_proc_closed);
}

static void pwaiter_cancel(void *ud)
{
	struct pwaiter *w = ud, **pp;
	for (pp = &w->p->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	free(w);
}

/* proc:wait([timeout_s]) -> {code=N} | {signal=N} | nil, "timeout" */
static int l_proc_wait(lua_State *L)
{
	struct proc *p = checkproc(L, 1);
	double timeout = luaL_optnumber(L, 2, -1);

	if (p->exited)
		return push_status(L, p);
	if (p->h.loop != kx_host.loop)
		return kx_fail(L, "process %d was started by the parent of this "
			       "resumed process: it cannot be waited for here",
			       (int)p->pid);
	kx_task *t = kx_checktask(L, "wait");
	struct pwaiter *w = malloc(sizeof *w);
	if (!w)
		return luaL_error(L, "out of memory");
	w->task = t;
	w->p = p;
	w->next = p->waiters;
	p->waiters = w;
	return kx_await(L, t, timeout, pwaiter_cancel, w);
}

static const struct {
	const char *name;
	int sig;
} signames[] = {
	{"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL},
	{"TRAP", SIGTRAP}, {"ABRT", SIGABRT}, {"BUS", SIGBUS}, {"FPE", SIGFPE},
	{"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},
	{"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
	{"TERM", SIGTERM}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},
	{"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
	{"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU},
	{"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
	{"WINCH", SIGWINCH}, {"IO", SIGIO}, {"PWR", SIGPWR}, {"SYS", SIGSYS},
	{NULL, 0},
};

/* A signal given as a number, "TERM" or "SIGTERM". */
int kx_checksignal(lua_State *L, int arg, int def)
{
	if (lua_isnoneornil(L, arg))
		return def;
	if (lua_type(L, arg) == LUA_TNUMBER) {
		lua_Integer n = luaL_checkinteger(L, arg);
		luaL_argcheck(L, n >= 0 && n < 65, arg, "no such signal");
		return (int)n;
	}
	const char *s = luaL_checkstring(L, arg);
	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (int i = 0; signames[i].name; i++)
		if (strcmp(signames[i].name, s) == 0)
			return signames[i].sig;
	return luaL_argerror(L, arg, lua_pushfstring(L, "no signal named '%s'",
						     lua_tostring(L, arg)));
}

const char *kx_signame(int sig)
{
	for (int i = 0; signames[i].name; i++)
		if (signames[i].sig == sig)
			return signames[i].name;
	return "?";
}

/* proc:kill([sig]): to the child's whole process group; default SIGTERM. */
static int l_proc_kill(lua_State *L)
{
	struct proc *p = checkproc(L, 1);
	int sig = kx_checksignal(L, 2, SIGTERM);
	if (p->h.loop != kx_host.loop)
		return kx_fail(L, "process %d was started by the parent of this "
			       "resumed process: not signalled from here",
			       (int)p->pid);
	if (p->exited && !group_alive(p->pid)) {
		lua_pushboolean(L, 0);
		return 1;
	}
	int r = kill(-p->pid, sig);
	if (r < 0 && errno == ESRCH)
		r = kill(p->pid, sig);
	if (r < 0)
		return kx_fail(L, "kill %d: %s", (int)p->pid, strerror(errno));
	lua_pushboolean(L, 1);
	return 1;
}

static int l_proc_index(lua_State *L)
{
	struct proc *p = checkproc(L, 1);
	const char *k = luaL_checkstring(L, 2);

	if (strcmp(k, "pid") == 0) {
		lua_pushinteger(L, p->pid);
		return 1;
	}
	if (strcmp(k, "stdin") == 0 || strcmp(k, "stdout") == 0 ||
	    strcmp(k, "stderr") == 0) {
		lua_getiuservalue(L, 1, 1);
		lua_getfield(L, -1, k);
		return 1;
	}
	if (strcmp(k, "status") == 0 && p->exited) {
		lua_pushcfunction(L, l_proc_wait);
		return 1;
	}
	luaL_getmetafield(L, 1, "methods");
	lua_getfield(L, -1, k);
	return 1;
}

static int l_proc_tostring(lua_State *L)
{
	struct proc *p = checkproc(L, 1);
	if (!p->exited)
		lua_pushfstring(L, "process %d (running)", (int)p->pid);
	else if (p->sig)
		lua_pushfstring(L, "process %d (signal %d)", (int)p->pid, p->sig);
	else
		lua_pushfstring(L, "process %d (exit %d)", (int)p->pid,
				(int)p->code);
	return 1;
}

/* Builds the environment: the current one with `env` applied on top
 * (value false removes a variable). */
static char **make_env(lua_State *L, int t)
{
	int n = 0;
	while (environ[n])
		n++;
	lua_newtable(L);   /* name -> "name=value" */
	for (int i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		if (!eq)
			continue;
		lua_pushlstring(L, environ[i], (size_t)(eq - environ[i]));
		lua_pushstring(L, environ[i]);
		lua_rawset(L, -3);
	}
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "bad 'env' to 'spawn' (names must be strings)");
		lua_pushvalue(L, -2);
		if (lua_toboolean(L, -2) == 0 && lua_type(L, -2) == LUA_TBOOLEAN) {
			lua_pushnil(L);
		} else {
			if (!lua_isstring(L, -2))
				luaL_error(L, "bad 'env' to 'spawn' (value of '%s' "
					   "must be a string)", lua_tostring(L, -3));
			lua_pushfstring(L, "%s=%s", lua_tostring(L, -3),
					lua_tostring(L, -2));
		}
		lua_rawset(L, -5);
		lua_pop(L, 1);
	}
	int count = 0;
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		count++;
		lua_pop(L, 1);
	}
	char **env = lua_newuserdatauv(L, sizeof(char *) * (size_t)(count + 1), 0);
	int i = 0;
	lua_pushnil(L);
	while (lua_next(L, -3)) {
		env[i++] = (char *)lua_tostring(L, -1);
		lua_pop(L, 1);
	}
	env[i] = NULL;
	/* the table keeps the strings alive; leave table and array on the stack */
	return env;
}

struct stdio_spec {
	int kind;   /* 0 inherit, 1 null/path fd, 2 pipe */
	int fd;
};

static void stdio_parse(lua_State *L, int t, const char *field, int target,
			struct stdio_spec *out)
{
	lua_getfield(L, t, field);
	out->kind = 0;
	out->fd = -1;
	if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TSTRING &&
				 strcmp(lua_tostring(L, -1), "inherit") == 0)) {
		out->fd = target;
	} else if (lua_type(L, -1) == LUA_TSTRING) {
		const char *v = lua_tostring(L, -1);
		if (strcmp(v, "pipe") == 0) {
			out->kind = 2;
		} else {
			const char *path = strcmp(v, "null") == 0 ? "/dev/null" : v;
			int flags = target == 0 ? O_RDONLY :
				    O_WRONLY | O_CREAT | O_TRUNC;
			int fd = open(path, flags | O_CLOEXEC, 0644);
			if (fd < 0) {
				lua_pop(L, 1);
				lua_pushfstring(L, "%s: %s", path, strerror(errno));
				out->kind = -1;
				return;
			}
			out->kind = 1;
			out->fd = fd;
		}
	} else if (lua_type(L, -1) == LUA_TNUMBER) {
		out->fd = (int)lua_tointeger(L, -1);
	} else {
		luaL_error(L, "bad '%s' to 'spawn' (\"inherit\", \"null\", "
			   "\"pipe\", a path or a descriptor expected, got %s)",
			   field, luaL_typename(L, -1));
	}
	lua_pop(L, 1);
}

/* kx.spawn{argv..., env=, cwd=, stdin=, stdout=, stderr=, detach=}
 * -> process | nil, message */
static int l_spawn(lua_State *L)
{
	static const char *const names[3] = {"stdin", "stdout", "stderr"};
	luaL_checktype(L, 1, LUA_TTABLE);
	int argc = (int)lua_rawlen(L, 1);
	luaL_argcheck(L, argc > 0, 1, "argv is empty");
	lua_newtable(L);   /* keeps the argv strings alive */
	int keep = lua_gettop(L);
	char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(argc + 1), 0);
	for (int i = 1; i <= argc; i++) {
		lua_rawgeti(L, 1, i);
		if (!lua_isstring(L, -1))
			return luaL_error(L, "bad argument #1 to 'spawn' (argv[%d] "
					  "is a %s, string expected)", i,
					  luaL_typename(L, -1));
		argv[i - 1] = (char *)lua_tostring(L, -1);
		lua_rawseti(L, keep, i);
	}
	argv[argc] = NULL;

	uv_process_options_t o;
	memset(&o, 0, sizeof o);
	o.file = argv[0];
	o.args = argv;
	o.exit_cb = on_proc_exit;
	o.flags = UV_PROCESS_DETACHED;

	lua_getfield(L, 1, "cwd");
	if (!lua_isnil(L, -1))
		o.cwd = luaL_checkstring(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, 1, "env");
	if (!lua_isnil(L, -1)) {
		luaL_argcheck(L, lua_istable(L, -1), 1, "'env' must be a table");
		o.env = make_env(L, lua_gettop(L));
	}
	lua_getfield(L, 1, "detach");
	int detach = lua_toboolean(L, -1);
	lua_pop(L, 1);

	struct stdio_spec io[3];
	uv_stdio_container_t cont[3];
	for (int i = 0; i < 3; i++) {
		stdio_parse(L, 1, names[i], i, &io[i]);
		if (io[i].kind < 0) {
			for (int j = 0; j < i; j++)
				if (io[j].kind == 1)
					close(io[j].fd);
			return kx_fail(L, "spawn %s: %s", argv[0],
				       lua_tostring(L, -1));
		}
	}

	struct proc *p = lua_newuserdatauv(L, sizeof *p, 1);
	memset(p, 0, sizeof *p);
	p->ref = LUA_NOREF;
	luaL_setmetatable(L, PROC_MT);
	int pidx = lua_gettop(L);
	lua_newtable(L);   /* the process's streams */
	struct kx_stream *streams[3] = {NULL, NULL, NULL};
	for (int i = 0; i < 3; i++) {
		if (io[i].kind == 2) {
			streams[i] = kx_stream_new(L);
			lua_setfield(L, -2, names[i]);
			cont[i].flags = UV_CREATE_PIPE |
					(i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
			cont[i].data.stream = kx_stream_handle(streams[i]);
		} else {
			cont[i].flags = UV_INHERIT_FD;
			cont[i].data.fd = io[i].fd;
		}
	}
	lua_setiuservalue(L, pidx, 1);
	o.stdio = cont;
	o.stdio_count = 3;

	p->h.data = p;
	int r = uv_spawn(kx_host.loop, &p->h, &o);
	for (int i = 0; i < 3; i++)
		if (io[i].kind == 1)
			close(io[i].fd);
	if (r < 0) {
		for (int i = 0; i < 3; i++)
			if (streams[i])
				kx_stream_close(streams[i]);
		p->exited = 1;
		lua_pushvalue(L, pidx);
		p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
		uv_close((uv_handle_t *)&p->h, on_proc_closed);
		return kx_fail(L, "spawn %s: %s", argv[0], uv_strerror(r));
	}
	p->pid = p->h.pid;
	lua_pushvalue(L, pidx);
	p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (!detach) {
		kx_track_pgid(p->pid);
		p->tracked = 1;
	}
	for (int i = 1; i < 3; i++)
		if (streams[i])
			kx_stream_start_reading(streams[i]);
	lua_pushvalue(L, pidx);
	return 1;
}

int kx_open_proc(lua_State *L)
{
	static const luaL_Reg proc_methods[] = {
		{"wait", l_proc_wait},
		{"kill", l_proc_kill},
		{NULL, NULL},
	};
	kx_open_stream(L);
	luaL_newmetatable(L, PROC_MT);
	luaL_newlib(L, proc_methods);
	lua_setfield(L, -2, "methods");
	lua_pushcfunction(L, l_proc_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, l_proc_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);

	lua_pushcfunction(L, l_spawn);
	lua_setfield(L, -2, "spawn");
	return 0;
}
