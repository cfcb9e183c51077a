/*
 * lregistry.c - Lua binding kx.vtime.registry: the tracer registration
 * channel (registry.h), served from the libuv loop.  kx.kronos is its user.
 *
 *   registry.path() -> default socket path | nil, msg
 *   registry.listen(path, fn) -> server | nil, msg
 *       fn(event) runs as a task for each event:
 *       {kind="register", conn=N, pid=TRACER_PID, id=, speed=, timeline=,
 *        cwd=, env={K=V}, cmds={{argv}...}, stdout="/dev/fd/N", stderr=...}
 *       {kind="hangup", conn=N}            the tracer went away
 *   server:accept(conn, {pids})   "ok"; closes the passed descriptors
 *   server:refuse(conn, msg)      "err"; closes the connection
 *   server:finish(conn, status)   "exit" ({code=N} or {signal=N}); closes it
 *   server:close()                every connection, the socket file
 *   server.path
 *   registry.tracer{path=, wait=, id=, speed=, timeline=, cwd=, env={"K=V"},
 *                   cmds={{argv}...}} -> {code=N}|{signal=N} | nil, msg
 *       blocks the whole process (it is the `kxrun vtime tracer` client)
 *   registry.killgroup(pgid)      SIGKILL (+SIGCONT) to a process group
 *   registry.chdir(dir) -> previous dir | nil, msg
 *   registry.getcwd() -> dir | nil, msg
 */
#include "registry.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kx.h"

#define SERVER_T "kx.vtime.registry.server"

struct conn {
	uv_poll_t poll;
	int fd;
	int id;
	int fds[VTREG_NFDS], nfds;   /* pipes from the tracer, until accepted */
	int registered, closing;
	pid_t peer;
	struct server *srv;
	struct conn *next;
};

struct server {
	uv_poll_t poll;
	int fd;
	int fn_ref;
	lua_State *L;                /* the main thread */
	int handles;                 /* open uv handles, the server's own too */
	int closed;
	int next_id;
	char path[108];
	struct conn *conns;
};

struct userver { struct server *s; };

static void server_release(struct server *s)
{
	if (--s->handles == 0) {
		luaL_unref(s->L, LUA_REGISTRYINDEX, s->fn_ref);
		free(s);
	}
}

static void conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct server *s = c->srv;
	free(c);
	server_release(s);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	for (struct conn **p = &c->srv->conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	for (int i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	c->nfds = 0;
	uv_poll_stop(&c->poll);
	close(c->fd);
	uv_close((uv_handle_t *)&c->poll, conn_closed);
}

static struct conn *find_conn(struct server *s, int id)
{
	for (struct conn *c = s->conns; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static void send_close(struct conn *c, struct vtreg_msg *m)
{
	vtreg_send(c->fd, m->buf, m->len, NULL, 0);
	conn_close(c);
}

static void refuse(struct conn *c, const char *msg)
{
	struct vtreg_msg *m = calloc(1, sizeof *m);
	if (m) {
		vtreg_put(m, "err");
		vtreg_put(m, msg);
		vtreg_send(c->fd, m->buf, m->len, NULL, 0);
		free(m);
	}
	conn_close(c);
}

/* Pushes the register request as the event table; NULL or what is wrong. */
static const char *push_request(lua_State *L, struct conn *c, const char *buf,
                                size_t len)
{
	size_t off = 0;
	const char *s = vtreg_next(buf, len, &off);
	if (!s || strcmp(s, "register"))
		return "not a registration";
	if (c->nfds != VTREG_NFDS)
		return "registration without its stdout/stderr descriptors";
	lua_createtable(L, 0, 12);
	lua_pushliteral(L, "register");
	lua_setfield(L, -2, "kind");
	lua_pushinteger(L, c->id);
	lua_setfield(L, -2, "conn");
	lua_pushinteger(L, c->peer);
	lua_setfield(L, -2, "pid");
	lua_newtable(L);
	lua_setfield(L, -2, "cmds");
	while ((s = vtreg_next(buf, len, &off))) {
		if (!strcmp(s, "env") || !strcmp(s, "cmd")) {
			int env = s[0] == 'e';
			const char *ns = vtreg_next(buf, len, &off);
			int n = ns ? atoi(ns) : -1;
			if (n < 0 || n > 100000)
				return "bad count";
			lua_createtable(L, env ? 0 : n, env ? n : 0);
			for (int i = 1; i <= n; i++) {
				const char *a = vtreg_next(buf, len, &off);
				if (!a)
					return "truncated list";
				const char *eq = env ? strchr(a, '=') : NULL;
				if (env && !eq)
					continue;
				if (env) {
					lua_pushlstring(L, a, (size_t)(eq - a));
					lua_pushstring(L, eq + 1);
					lua_rawset(L, -3);
				} else {
					lua_pushstring(L, a);
					lua_rawseti(L, -2, i);
				}
			}
			if (env) {
				lua_setfield(L, -2, "env");
			} else {
				if (n == 0)
					return "empty command";
				lua_getfield(L, -2, "cmds");
				lua_insert(L, -2);
				lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
				lua_pop(L, 1);
			}
		} else {
			const char *v = vtreg_next(buf, len, &off);
			if (!v)
				return "truncated field";
			if (!strcmp(s, "speed"))
				lua_pushnumber(L, strtod(v, NULL));
			else if (!strcmp(s, "timeline"))
				lua_pushinteger(L, strtoll(v, NULL, 10));
			else
				lua_pushstring(L, v);
			lua_setfield(L, -2, s);
		}
	}
	lua_getfield(L, -1, "cmds");
	int ncmds = (int)luaL_len(L, -1);
	lua_pop(L, 1);
	if (ncmds == 0)
		return "no command";
	static const char *names[VTREG_NFDS] = { "stdout", "stderr" };
	for (int i = 0; i < VTREG_NFDS; i++) {
		lua_pushfstring(L, "/dev/fd/%d", c->fds[i]);
		lua_setfield(L, -2, names[i]);
	}
	return NULL;
}

/* Runs fn(event) as a task; the main thread's stack holds fn, event. */
static void emit(struct server *s)
{
	kx_go(s->L, 1, 0);
}

static void on_conn(uv_poll_t *h, int status, int events)
{
	struct conn *c = h->data;
	struct server *s = c->srv;
	(void)events;
	char *buf = malloc(VTREG_MAX_MSG);
	int fds[VTREG_NFDS] = { -1, -1 }, nfds = 0;
	ssize_t n = status < 0 || !buf ? -EIO
	            : vtreg_recv(c->fd, buf, VTREG_MAX_MSG, fds, &nfds, 1);
	if (n == -EAGAIN) {
		free(buf);
		return;
	}
	if (c->registered || c->nfds) { /* only the registration carries fds */
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	} else {
		memcpy(c->fds, fds, sizeof fds);
		c->nfds = nfds;
	}
	if (n <= 0 && n != -EMSGSIZE) {
		/* the tracer went away */
		if (c->registered) {
			lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->fn_ref);
			lua_createtable(s->L, 0, 2);
			lua_pushliteral(s->L, "hangup");
			lua_setfield(s->L, -2, "kind");
			lua_pushinteger(s->L, c->id);
			lua_setfield(s->L, -2, "conn");
			emit(s);
		}
		conn_close(c);
	} else if (n == -EMSGSIZE) {
		refuse(c, "request too large");
	} else if (c->registered) {
		refuse(c, "a tracer registers once");
	} else {
		int top = lua_gettop(s->L);
		lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->fn_ref);
		const char *bad = push_request(s->L, c, buf, (size_t)n);
		if (bad) {
			lua_settop(s->L, top);
			refuse(c, bad);
		} else {
			lua_settop(s->L, top + 2);
			c->registered = 1;
			emit(s);
		}
	}
	free(buf);
}

static void on_listen(uv_poll_t *h, int status, int events)
{
	struct server *s = h->data;
	(void)events;
	if (status < 0)
		return;
	for (;;) {
		int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			return;
		}
		struct ucred cr = {0};
		socklen_t cl = sizeof cr;
		getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
		c->fd = fd;
		c->peer = cr.pid;
		c->id = ++s->next_id;
		c->srv = s;
		c->next = s->conns;
		s->conns = c;
		uv_poll_init(kx_loop(), &c->poll, fd);
		c->poll.data = c;
		s->handles++;
		uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, on_conn);
	}
}

static struct server *checkserver(lua_State *L)
{
	struct userver *u = luaL_checkudata(L, 1, SERVER_T);
	luaL_argcheck(L, u->s && !u->s->closed, 1, "server closed");
	return u->s;
}

static void server_closed(uv_handle_t *h)
{
	server_release(h->data);
}

static void server_close(struct server *s)
{
	if (s->closed)
		return;
	s->closed = 1;
	while (s->conns)
		conn_close(s->conns);
	uv_poll_stop(&s->poll);
	close(s->fd);
	unlink(s->path);
	uv_close((uv_handle_t *)&s->poll, server_closed);
}

static int l_listen(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	char err[512];
	int fd = vtreg_listen(path, err, sizeof err);
	if (fd < 0)
		return kx_fail(L, "%s", err);
	struct userver *u = lua_newuserdatauv(L, sizeof *u, 0);
	u->s = calloc(1, sizeof *u->s);
	struct server *s = u->s;
	s->fd = fd;
	snprintf(s->path, sizeof s->path, "%s", path);
	lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
	s->L = lua_tothread(L, -1);
	lua_pop(L, 1);
	lua_pushvalue(L, 2);
	s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	uv_poll_init(kx_loop(), &s->poll, fd);
	s->poll.data = s;
	s->handles = 1;
	uv_poll_start(&s->poll, UV_READABLE, on_listen);
	luaL_setmetatable(L, SERVER_T);
	return 1;
}

static struct conn *checkconn(lua_State *L, struct server *s)
{
	struct conn *c = find_conn(s, (int)luaL_checkinteger(L, 2));
	return c; /* NULL: the tracer has gone meanwhile */
}

static int s_accept(lua_State *L)
{
	struct server *s = checkserver(L);
	struct conn *c = checkconn(L, s);
	luaL_checktype(L, 3, LUA_TTABLE);
	if (!c)
		return kx_fail(L, "tracer gone");
	struct vtreg_msg *m = calloc(1, sizeof *m);
	if (!m)
		return kx_fail(L, "out of memory");
	vtreg_put(m, "ok");
	for (lua_Integer i = 1; i <= luaL_len(L, 3); i++) {
		lua_rawgeti(L, 3, i);
		vtreg_putf(m, "%lld", (long long)lua_tointeger(L, -1));
		lua_pop(L, 1);
	}
	vtreg_send(c->fd, m->buf, m->len, NULL, 0);
	free(m);
	for (int i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	c->nfds = 0;
	lua_pushboolean(L, 1);
	return 1;
}

static int s_refuse(lua_State *L)
{
	struct server *s = checkserver(L);
	struct conn *c = checkconn(L, s);
	const char *msg = luaL_checkstring(L, 3);
	if (c)
		refuse(c, msg);
	return 0;
}

static int s_finish(lua_State *L)
{
	struct server *s = checkserver(L);
	struct conn *c = checkconn(L, s);
	luaL_checktype(L, 3, LUA_TTABLE);
	if (!c)
		return 0;
	struct vtreg_msg *m = calloc(1, sizeof *m);
	if (!m) {
		conn_close(c);
		return 0;
	}
	vtreg_put(m, "exit");
	if (lua_getfield(L, 3, "signal") != LUA_TNIL) {
		vtreg_put(m, "signal");
		vtreg_putf(m, "%lld", (long long)luaL_checkinteger(L, -1));
	} else {
		lua_getfield(L, 3, "code");
		vtreg_put(m, "code");
		vtreg_putf(m, "%lld", (long long)luaL_optinteger(L, -1, 0));
	}
	send_close(c, m);
	free(m);
	return 0;
}

static int s_close(lua_State *L)
{
	struct userver *u = luaL_checkudata(L, 1, SERVER_T);
	if (u->s) {
		server_close(u->s);
		u->s = NULL;
	}
	return 0;
}

/* getter: server.path (nil once closed) */
static int s_path(lua_State *L)
{
	struct userver *u = luaL_checkudata(L, 1, SERVER_T);
	if (u->s)
		lua_pushstring(L, u->s->path);
	else
		lua_pushnil(L);
	return 1;
}

static int l_path(lua_State *L)
{
	char path[108];
	if (vtreg_default_path(path, sizeof path) < 0)
		return kx_fail(L, "KXRUN_VTIME_SOCK: longer than a socket path may be");
	lua_pushstring(L, path);
	return 1;
}

/* A NULL-terminated char* array of the strings in the table at idx (kept
 * alive by that table), in a userdata pushed on the stack. */
static char **strlist(lua_State *L, int idx, const char *what)
{
	int n = (int)luaL_len(L, idx);
	char **v = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(char *), 0);
	for (int i = 1; i <= n; i++) {
		if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
			luaL_error(L, "bad '%s' to 'tracer' (strings expected)", what);
		v[i - 1] = (char *)lua_tostring(L, -1);
		lua_pop(L, 1);
	}
	v[n] = NULL;
	return v;
}

static int l_tracer(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	struct vtreg_request rq = {0};
	lua_getfield(L, 1, "path");            /* 2 */
	const char *path = luaL_checkstring(L, 2);
	lua_getfield(L, 1, "wait");            /* 3 */
	double wait = luaL_optnumber(L, 3, 10);
	lua_getfield(L, 1, "id");              /* 4 */
	rq.id = luaL_checkstring(L, 4);
	lua_getfield(L, 1, "speed");           /* 5 */
	rq.speed = luaL_optnumber(L, 5, 1.0);
	luaL_argcheck(L, rq.speed > 0, 1, "speed must be > 0");
	lua_getfield(L, 1, "timeline");        /* 6 */
	rq.timeline = (long)luaL_optinteger(L, 6, 0);
	lua_getfield(L, 1, "cwd");             /* 7 */
	rq.cwd = luaL_checkstring(L, 7);
	lua_getfield(L, 1, "env");             /* 8 */
	luaL_checktype(L, 8, LUA_TTABLE);
	rq.env = strlist(L, 8, "env");         /* 9 */
	lua_getfield(L, 1, "cmds");            /* 10 */
	luaL_checktype(L, 10, LUA_TTABLE);
	int n = (int)luaL_len(L, 10);
	luaL_argcheck(L, n > 0, 1, "'cmds' must hold a command");
	char ***cmds = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(char **), 0); /* 11 */
	lua_createtable(L, n, 0);              /* 12: keeps the argv arrays */
	for (int i = 1; i <= n; i++) {
		if (lua_rawgeti(L, 10, i) != LUA_TTABLE || luaL_len(L, -1) < 1)
			luaL_error(L, "bad 'cmds' to 'tracer' (argv tables expected)");
		cmds[i - 1] = strlist(L, lua_gettop(L), "cmds");
		lua_rawseti(L, 12, i);
		lua_pop(L, 1);
	}
	cmds[n] = NULL;
	rq.cmds = (char *const *const *)cmds;
	char err[512];
	int st = vtreg_tracer(path, wait, &rq, err, sizeof err);
	if (st < 0)
		return kx_fail(L, "%s", err);
	lua_createtable(L, 0, 1);
	if (WIFSIGNALED(st)) {
		lua_pushinteger(L, WTERMSIG(st));
		lua_setfield(L, -2, "signal");
	} else {
		lua_pushinteger(L, WEXITSTATUS(st));
		lua_setfield(L, -2, "code");
	}
	return 1;
}

static int l_killgroup(lua_State *L)
{
	lua_Integer pgid = luaL_checkinteger(L, 1);
	luaL_argcheck(L, pgid > 1, 1, "process group id expected");
	kill(-(pid_t)pgid, SIGKILL);
	kill(-(pid_t)pgid, SIGCONT); /* a stopped group dies now, not at thaw */
	return 0;
}

static int l_getcwd(lua_State *L)
{
	char dir[PATH_MAX];
	if (!getcwd(dir, sizeof dir))
		return kx_fail(L, "getcwd: %s", strerror(errno));
	lua_pushstring(L, dir);
	return 1;
}

static int l_chdir(lua_State *L)
{
	const char *dir = luaL_checkstring(L, 1);
	char prev[PATH_MAX];
	if (!getcwd(prev, sizeof prev))
		return kx_fail(L, "getcwd: %s", strerror(errno));
	if (chdir(dir) < 0)
		return kx_fail(L, "%s: %s", dir, strerror(errno));
	lua_pushstring(L, prev);
	return 1;
}

int luaopen_kx_vtime_registry(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"accept", s_accept}, {"refuse", s_refuse}, {"finish", s_finish},
		{"close", s_close}, {NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"path", l_path}, {"listen", l_listen}, {"tracer", l_tracer},
		{"killgroup", l_killgroup}, {"chdir", l_chdir}, {"getcwd", l_getcwd},
		{NULL, NULL},
	};
	static const luaL_Reg getters[] = {{"path", s_path}, {NULL, NULL}};
	static const luaL_Reg meta[] = {{"__gc", s_close}, {NULL, NULL}};
	kx_defclass(L, &(struct kx_class){SERVER_T, methods, getters, meta});
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}
