/*
 * proc.c - kx.spawn: child processes as Lua objects, their pipes, waiting
 * and signalling them.
 *
 * Each child starts through kx_spawn in a session of its own (so its own
 * process group, and no controlling terminal to stop it); signals go to the
 * whole group so a shell's children go with it.  A child that a task
 * spawned is terminated with its group when that task is cancelled
 * (SIGTERM, SIGKILL after a grace), unless spawned with detach = true.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host.h"

#define PROC_MT "kx.process"
#define CANCEL_GRACE_MS 2000

struct pwaiter {
	kx_task *task;
	struct proc *p;
	struct pwaiter *next;
};

/* SIGKILL for a cancelled task's child that outlives its grace. */
struct grace {
	uv_timer_t timer;
	pid_t pgid;
	struct proc *p;   /* NULL once the process is gone */
};

struct proc {
	pid_t pid;
	uv_loop_t *loop;  /* the loop it was started on */
	int ref;          /* registry ref while the child runs */
	int exited;
	int code;
	int sig;
	int tracked;
	struct pwaiter *waiters;
	kx_task *owner;   /* the task that spawned it, until that one ends */
	kx_cancel_hook *hook;
	struct grace *grace;
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

static void grace_closed(uv_handle_t *h)
{
	free(h->data);
}

static void grace_end(struct grace *g)
{
	if (g->p)
		g->p->grace = NULL;
	uv_close((uv_handle_t *)&g->timer, grace_closed);
}

static void on_grace(uv_timer_t *h)
{
	struct grace *g = h->data;
	if (kx_group_alive(g->pgid))
		kill(-g->pgid, SIGKILL);
	grace_end(g);
}

/* The owner task's end: cancelled, the child's group is asked to go. */
static void on_owner_end(void *ud, int cancelled)
{
	struct proc *p = ud;
	p->hook = NULL;
	p->owner = NULL;
	if (!cancelled || p->exited || p->loop != kx_loop())
		return;
	kill(-p->pid, SIGTERM);
	kill(-p->pid, SIGCONT);   /* a stopped one must see it */
	struct grace *g = calloc(1, sizeof *g);
	if (!g) {
		kill(-p->pid, SIGKILL);
		return;
	}
	g->pgid = p->pid;
	g->p = p;
	g->timer.data = g;
	uv_timer_init(kx_loop(), &g->timer);
	uv_timer_start(&g->timer, on_grace, CANCEL_GRACE_MS, 0);
	p->grace = g;
}

static void on_proc_exit(pid_t pid, int ws, void *ud)
{
	struct proc *p = ud;
	(void)pid;

	p->exited = 1;
	if (WIFSIGNALED(ws))
		p->sig = WTERMSIG(ws);
	else
		p->code = WEXITSTATUS(ws);
	int group = kx_group_alive(p->pid);
	/* the group may live on without its leader: tracked while it does */
	if (p->tracked && !group)
		kx_untrack_pgid(p->pid);
	if (p->hook)
		kx_cancel_hook_remove(p->owner, p->hook);
	p->hook = NULL;
	p->owner = NULL;
	if (p->grace) {
		struct grace *g = p->grace;
		g->p = NULL;
		p->grace = NULL;
		if (!group)
			grace_end(g);
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
	luaL_unref(kx_host.L, LUA_REGISTRYINDEX, p->ref);
	p->ref = LUA_NOREF;
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

static const char parent_proc[] = "process %d was started by the parent "
	"of this resumed process: %s";

/* proc:wait([timeout_s]) -> {code=N} | {signal=N} | nil, "timeout" */
static int l_proc_wait(lua_State *L)
{
	struct proc *p = checkproc(L, 1);
	double timeout = luaL_optnumber(L, 2, -1);

	if (p->exited)
		return push_status(L, p);
	if (p->loop != kx_loop())
		return kx_fail(L, parent_proc, (int)p->pid,
			       "it cannot be waited for here");
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

/* proc:kill([sig]): to the child's whole process group; default SIGTERM. */
static int l_proc_kill(lua_State *L)
{
	struct proc *p = checkproc(L, 1);
	int sig = kx_checksignal(L, 2, SIGTERM);
	if (p->loop != kx_loop())
		return kx_fail(L, parent_proc, (int)p->pid, "not signalled from here");
	if (p->exited && !kx_group_alive(p->pid)) {
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

static int l_proc_pid(lua_State *L)
{
	lua_pushinteger(L, checkproc(L, 1)->pid);
	return 1;
}

/* proc.stdin, proc.stdout, proc.stderr: its pipes (nil where none) */
static int l_proc_stream(lua_State *L)
{
	checkproc(L, 1);
	lua_getiuservalue(L, 1, 1);
	lua_pushvalue(L, 2);
	lua_rawget(L, -2);
	return 1;
}

/* proc.status: once exited, a function giving its status (as wait) */
static int l_proc_status(lua_State *L)
{
	if (checkproc(L, 1)->exited)
		lua_pushcfunction(L, l_proc_wait);
	else
		lua_pushnil(L);
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
		lua_pushfstring(L, "process %d (exit %d)", (int)p->pid, p->code);
	return 1;
}

/* ---- kx.spawn ------------------------------------------------------------------ */

/* Everything spawn opened, closed whatever happens. */
struct setup {
	struct kx_spawn o;
	int own[3];       /* descriptors to close after the spawn, or -1 */
	int parent_end[3];/* our end of a "pipe", or -1 */
	char **env;
};

static void setup_close(struct setup *s)
{
	for (int i = 0; i < 3; i++) {
		if (s->own[i] >= 0)
			close(s->own[i]);
		if (s->parent_end[i] >= 0)
			close(s->parent_end[i]);
		s->own[i] = s->parent_end[i] = -1;
	}
	free(s->env);
	s->env = NULL;
}

/* env = {NAME = value | false} over kxrun's environment, as kx_env_new
 * changes; the strings are anchored in the table at keep. */
static char **make_env(lua_State *L, int t, int keep)
{
	int n = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		n++;
		lua_pop(L, 1);
	}
	const char **changes = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
	lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
	int i = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (lua_type(L, -2) != LUA_TSTRING)
			kx_fielderror(L, 1, "env", "names must be strings");
		const char *k = lua_tostring(L, -2);
		if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
			lua_pushstring(L, k);   /* removes it */
		else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
			lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -1));
		else
			kx_fielderror(L, 1, "env", lua_pushfstring(L, "value of '%s' "
				      "must be a string or false", k));
		changes[i++] = lua_tostring(L, -1);
		lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
		lua_pop(L, 1);
	}
	changes[i] = NULL;
	return kx_env_new(changes);
}

/* One of stdin/stdout/stderr: "inherit" (default), "null", "pipe", a path
 * or a descriptor.  0, or -1 with a message pushed. */
static int stdio_parse(lua_State *L, const char *field, int i, struct setup *s)
{
	int t = lua_getfield(L, 1, field);
	if (t == LUA_TNIL || (t == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "inherit"))) {
		s->o.io[i] = KX_IO_INHERIT;
	} else if (t == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "null")) {
		s->o.io[i] = KX_IO_NULL;
	} else if (t == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "pipe")) {
		int fds[2];
		if (pipe2(fds, O_CLOEXEC) < 0) {
			lua_pushfstring(L, "pipe: %s", strerror(errno));
			return -1;
		}
		s->own[i] = fds[i == 0 ? 0 : 1];
		s->parent_end[i] = fds[i == 0 ? 1 : 0];
		s->o.io[i] = KX_IO_FD;
		s->o.fd[i] = s->own[i];
	} else if (t == LUA_TSTRING) {
		const char *path = lua_tostring(L, -1);
		int flags = i == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC;
		int fd = open(path, flags | O_CLOEXEC, 0644);
		if (fd < 0) {
			lua_pushfstring(L, "%s '%s': %s", field, path, strerror(errno));
			return -1;
		}
		s->own[i] = fd;
		s->o.io[i] = KX_IO_FD;
		s->o.fd[i] = fd;
	} else if (lua_isinteger(L, -1)) {
		s->o.io[i] = KX_IO_FD;
		s->o.fd[i] = (int)lua_tointeger(L, -1);
	} else {
		kx_fielderror(L, 1, field, lua_pushfstring(L, "\"inherit\", \"null\", "
			      "\"pipe\", a path or a descriptor expected, got %s",
			      luaL_typename(L, -1)));
	}
	lua_pop(L, 1);
	return 0;
}

/* The helper's "…: No such file or directory" in libuv's words (as
 * kx.spawn has always said it): its last part in lower case. */
static const char *libuv_case(char *msg)
{
	char *c = strrchr(msg, ':');
	if (c && c[1] == ' ')
		c[2] = (char)tolower((unsigned char)c[2]);
	return msg;
}

/* kx.spawn's options and process handle, for kx.spawn itself and bindings
 * whose child runs a function instead of exec (kx.h). */
int kx_spawn_lua(lua_State *L, const char *name, kx_spawn_fn start, void *ud)
{
	int by_binding = start != NULL;   /* the binding's child: argv is the name */
	static const char *const names[3] = {"stdin", "stdout", "stderr"};
	luaL_checktype(L, 1, LUA_TTABLE);
	int argc = by_binding ? 1 : (int)lua_rawlen(L, 1);
	luaL_argcheck(L, argc > 0, 1, "argv is empty");
	lua_newtable(L);   /* keeps strings alive */
	int keep = lua_gettop(L);
	const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(argc + 1), 0);
	lua_rawseti(L, keep, 1);
	argv[0] = name;
	for (int i = 1; i <= argc && !by_binding; i++) {
		lua_rawgeti(L, 1, i);
		if (!lua_isstring(L, -1))
			return luaL_argerror(L, 1, lua_pushfstring(L, "argv[%d] is a %s, "
					     "string expected", i, luaL_typename(L, -2)));
		argv[i - 1] = lua_tostring(L, -1);
		lua_rawseti(L, keep, i + 1);
	}
	argv[argc] = NULL;

	struct setup s;
	memset(&s, 0, sizeof s);
	for (int i = 0; i < 3; i++)
		s.own[i] = s.parent_end[i] = -1;
	s.o.argv = argv;
	s.o.cwd = kx_optstringfield(L, 1, "cwd", NULL);
	lua_getfield(L, 1, "detach");
	int detach = lua_toboolean(L, -1);   /* any true value, as always */
	lua_pop(L, 1);
	s.o.flags = KX_SPAWN_SESSION | (detach ? KX_SPAWN_DETACH : 0);
	if (lua_getfield(L, 1, "env") != LUA_TNIL) {
		if (by_binding)
			kx_fielderror(L, 1, "env", "not for a child that runs no program "
				      "(it keeps the environment of the image it runs)");
		if (!lua_istable(L, -1))
			kx_fielderror(L, 1, "env", "table expected");
		s.env = make_env(L, lua_gettop(L), keep);
		if (!s.env)
			return luaL_error(L, "out of memory");
		s.o.envp = (const char *const *)s.env;
	}
	lua_pop(L, 1);
	for (int i = 0; i < 3; i++) {
		if (stdio_parse(L, names[i], i, &s) < 0) {
			setup_close(&s);
			return kx_fail(L, by_binding ? "%s: %s" : "spawn %s: %s", argv[0],
				       lua_tostring(L, -1));
		}
	}

	char err[512];
	pid_t pid = start ? start(&s.o, ud, err, sizeof err) : kx_spawn(&s.o, err, sizeof err);
	for (int i = 0; i < 3; i++) {
		if (s.own[i] >= 0)
			close(s.own[i]);
		s.own[i] = -1;
	}
	free(s.env);
	s.env = NULL;
	if (pid < 0) {
		setup_close(&s);
		if (by_binding)
			return kx_fail(L, "%s: %s", name, err);
		return kx_fail(L, "%s", libuv_case(err));
	}

	struct proc *p = lua_newuserdatauv(L, sizeof *p, 1);
	memset(p, 0, sizeof *p);
	p->ref = LUA_NOREF;
	p->pid = pid;
	p->loop = kx_loop();
	p->tracked = !detach;
	luaL_setmetatable(L, PROC_MT);
	int pidx = lua_gettop(L);
	lua_newtable(L);   /* the process's streams */
	struct kx_stream *streams[3] = {NULL, NULL, NULL};
	for (int i = 0; i < 3; i++) {
		if (s.parent_end[i] < 0)
			continue;
		int fd = s.parent_end[i];
		s.parent_end[i] = -1;
		streams[i] = kx_stream_new(L, fd);
		if (streams[i])
			lua_setfield(L, -2, names[i]);
	}
	lua_setiuservalue(L, pidx, 1);
	lua_pushvalue(L, pidx);
	p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	int r = kx_child_watch(pid, on_proc_exit, p);
	if (r < 0) {
		kill(-pid, SIGKILL);
		waitpid(pid, NULL, 0);
		on_proc_exit(pid, SIGKILL, p);
		return kx_fail(L, by_binding ? "%s: cannot watch the child: %s" :
			       "spawn %s: cannot watch the child: %s", argv[0],
			       strerror(-r));
	}
	kx_task *owner = kx_current();
	if (!detach && owner) {
		p->owner = owner;
		p->hook = kx_on_cancel(owner, on_owner_end, p);
	}
	for (int i = 1; i < 3; i++)
		if (streams[i])
			kx_stream_start_reading(streams[i]);
	lua_pushvalue(L, pidx);
	return 1;
}

/* kx.spawn{argv..., env=, cwd=, stdin=, stdout=, stderr=, detach=}
 * -> process | nil, message */
static int l_spawn(lua_State *L)
{
	return kx_spawn_lua(L, NULL, NULL, NULL);
}

int kx_open_proc(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"wait", l_proc_wait},
		{"kill", l_proc_kill},
		{NULL, NULL},
	};
	static const luaL_Reg getters[] = {
		{"pid", l_proc_pid},
		{"stdin", l_proc_stream},
		{"stdout", l_proc_stream},
		{"stderr", l_proc_stream},
		{"status", l_proc_status},
		{NULL, NULL},
	};
	static const luaL_Reg meta[] = {
		{"__tostring", l_proc_tostring},
		{NULL, NULL},
	};
	kx_open_stream(L);
	kx_defclass(L, &(struct kx_class){PROC_MT, methods, getters, meta});
	lua_pop(L, 1);

	lua_pushcfunction(L, l_spawn);
	lua_setfield(L, -2, "spawn");
	return 0;
}
