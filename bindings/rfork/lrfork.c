/*
 * lrfork.c - Lua binding kx.rfork (docs/MANUAL.md §5), a thin layer over rfork.h.
 *
 *   rfork.prepare{listen="HOST:PORT", idle=seconds, transport="tcp"|"rdma"|
 *       "auto", learn=true} -> handle | nil, message (from a task).  Parent: h.child ==
 *       false, h.id, h.key, h.address, h.children, h.pid (the holder),
 *       h.transport, h.rdma (the RDMA agent: nil, "starting", "ready",
 *       "failed"), h.transport_info, h:close().  In a resumed child the same
 *       call returns again with h.child == true, h.index, h.transport and
 *       h.transport_info.
 *   rfork.resume{address=, id=, key=, transport="auto"|"rdma"|"tcp",
 *       container={rootfs=, pid=, net=true|"name", hostname=, cgroup={memory=,
 *       cpu=, pids=}}} -> nil, message (does not return on success: the
 *       process becomes the child)
 *   rfork._bench{...}: the transports measured alone (bench.c)
 */
#include "rfork.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostside.h"

#define HANDLE_T "kx.rfork.handle"

/* Shared between a handle and the watch that reaps its holder: whichever
 * ends last frees it. */
struct watch {
	int exited, orphan;
};

struct lhandle {
	struct rf_holder *h;
	struct watch *w;
};

static void on_holder_exit(pid_t pid, int wstatus, void *ud)
{
	struct watch *w = ud;
	(void)pid, (void)wstatus;
	w->exited = 1;
	if (w->orphan)
		free(w);
}

static struct lhandle *check_handle(lua_State *L)
{
	return luaL_checkudata(L, 1, HANDLE_T);
}

static void handle_close(struct lhandle *u)
{
	if (!u->h)
		return;
	if (u->w && u->w->exited)
		rf_holder_exited(u->h);
	rf_close(u->h);
	u->h = NULL;
	if (u->w) {
		if (u->w->exited)
			free(u->w);
		else
			u->w->orphan = 1;   /* freed by on_holder_exit */
		u->w = NULL;
	}
}

static int h_close(lua_State *L)
{
	handle_close(check_handle(L));
	return 0;
}

/* h.child, h.index (a child); h.id, h.key, h.address, h.children, h.pid
 * (the parent's): nil once closed or where they do not apply */
static int h_field(lua_State *L)
{
	struct lhandle *u = check_handle(L);
	const char *k = luaL_checkstring(L, 2);
	if (!u->h) {
		lua_pushnil(L);
		return 1;
	}
	int child = rf_is_child(u->h);
	if (!strcmp(k, "child"))
		lua_pushboolean(L, child);
	else if (!strcmp(k, "index") && child)
		lua_pushinteger(L, rf_index(u->h));
	else if (!strcmp(k, "id") && !child)
		lua_pushstring(L, rf_id(u->h));
	else if (!strcmp(k, "key") && !child)
		lua_pushstring(L, rf_key(u->h));
	else if (!strcmp(k, "address") && !child)
		lua_pushstring(L, rf_address(u->h));
	else if (!strcmp(k, "children") && !child)
		lua_pushinteger(L, rf_children(u->h));
	else if (!strcmp(k, "pid") && !child)
		lua_pushinteger(L, rf_holder_pid(u->h));
	else if (!strcmp(k, "transport"))
		lua_pushstring(L, rf_transport(u->h));
	else if (!strcmp(k, "transport_info") || !strcmp(k, "rdma")) {
		static const char *const agent_state[] = {NULL, "starting", "ready", "failed"};
		int agent;
		const char *info = rf_transport_info(u->h, &agent);
		if (k[0] == 'r' && !child && agent_state[agent])
			lua_pushstring(L, agent_state[agent]);
		else if (k[0] == 't' && info[0])
			lua_pushstring(L, info);
		else
			lua_pushnil(L);
	} else
		lua_pushnil(L);
	return 1;
}

static int h_gc(lua_State *L)
{
	handle_close(check_handle(L));
	return 0;
}

static int h_tostring(lua_State *L)
{
	struct lhandle *u = check_handle(L);
	if (!u->h)
		lua_pushstring(L, "kx.rfork.handle (closed)");
	else if (rf_is_child(u->h))
		lua_pushfstring(L, "kx.rfork.handle (child %d)", (int)rf_index(u->h));
	else
		lua_pushfstring(L, "kx.rfork.handle (%s at %s, %d children)", rf_id(u->h),
		                rf_address(u->h), (int)rf_children(u->h));
	return 1;
}

/* t.transport: "tcp", "rdma" or "auto" (def when absent). */
static const char *check_transport(lua_State *L, const char *def)
{
	const char *t = kx_optstringfield(L, 1, "transport", def);
	if (strcmp(t, "tcp") && strcmp(t, "rdma") && strcmp(t, "auto"))
		kx_fielderror(L, 1, "transport", lua_pushfstring(L, "must be \"tcp\", \"rdma\" "
		              "or \"auto\", not \"%s\"", t));
	return t;
}

static int l_prepare(lua_State *L)
{
	kx_checktask(L, "prepare");
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *listen = kx_optstringfield(L, 1, "listen", "127.0.0.1:0");
	double idle = kx_optnumberfield(L, 1, "idle", 600);
	if (idle <= 0)
		return kx_fielderror(L, 1, "idle", "must be > 0 seconds");
	const char *transport = check_transport(L, "tcp");
	int learn = kx_optbooleanfield(L, 1, "learn", 1);
	struct lhandle *u = lua_newuserdatauv(L, sizeof *u, 0);
	u->h = NULL;
	u->w = calloc(1, sizeof *u->w);
	if (!u->w)
		return kx_fail(L, "out of memory");
	luaL_setmetatable(L, HANDLE_T);
	struct rf_prepare_opts o = {.listen = listen, .idle_s = idle, .capture = rf_host_capture,
	                            .transport = transport, .no_learn = !learn};
	char err[512];
	struct rf_holder *h;
	long r = rf_prepare(&o, &h, err, sizeof err);
	if (r < 0) {
		free(u->w);
		u->w = NULL;
		return kx_fail(L, "rfork.prepare: %s", err);
	}
	if (r > 0) {
		/* A resumed child: the parent's Lua state, our own process. */
		free(u->w);   /* the parent's watch means nothing here */
		u->w = NULL;
		u->h = h;
		if (!h)
			return kx_fail(L, "rfork: resumed child: out of memory");
		size_t len;
		const void *blob = rf_resume_blob(h, &len);
		if (rf_host_reset(blob, len, err, sizeof err) < 0)
			return kx_fail(L, "rfork: resumed child: %s", err);
		return 1;
	}
	u->h = h;
	if (kx_child_watch(rf_holder_pid(h), on_holder_exit, u->w) < 0) {
		free(u->w);   /* rf_close reaps it instead */
		u->w = NULL;
	}
	return 1;
}

/* t.container: NULL when absent; else ct filled (strings stay on the
 * stack, in the table). */
static const struct rf_container *check_container(lua_State *L, struct rf_container *ct)
{
	if (lua_getfield(L, 1, "container") == LUA_TNIL) {
		lua_pop(L, 1);
		return NULL;
	}
	if (!lua_istable(L, -1))
		kx_fielderror(L, 1, "container", "table expected");
	int t = lua_gettop(L);
	memset(ct, 0, sizeof *ct);
	ct->rootfs = kx_optstringfield(L, t, "rootfs", NULL);
	ct->hostname = kx_optstringfield(L, t, "hostname", NULL);
	ct->pid = kx_optbooleanfield(L, t, "pid", 0);
	int net = lua_getfield(L, t, "net");
	if (net == LUA_TBOOLEAN)
		ct->net = lua_toboolean(L, -1) ? RF_NET_NEW : RF_NET_HOST;
	else if (net == LUA_TSTRING)
		ct->net = RF_NET_NAMED, ct->netns = lua_tostring(L, -1);
	else if (net != LUA_TNIL)
		kx_fielderror(L, 1, "container", "net: true (a new namespace) or a name expected");
	lua_pop(L, 1);   /* the string stays alive in the table */
	if (lua_getfield(L, t, "cgroup") == LUA_TTABLE) {
		int g = lua_gettop(L);
		int mt = lua_getfield(L, g, "memory");
		if (mt == LUA_TNUMBER && lua_tonumber(L, -1) > 0)
			ct->memory = (uint64_t)lua_tonumber(L, -1);
		else if (mt == LUA_TSTRING && rf_parse_size(lua_tostring(L, -1), &ct->memory) == 0 &&
		         ct->memory)
			;
		else if (mt != LUA_TNIL)
			kx_fielderror(L, 1, "container", "cgroup.memory: bytes or a size (\"64M\") expected");
		lua_pop(L, 1);
		ct->cpus = kx_optnumberfield(L, g, "cpu", 0);
		ct->pids = (uint64_t)kx_optintegerfield(L, g, "pids", 0);
		if (ct->cpus < 0)
			kx_fielderror(L, 1, "container", "cgroup.cpu: cores (> 0) expected");
	} else if (!lua_isnil(L, -1)) {
		kx_fielderror(L, 1, "container", "cgroup: table expected");
	}
	lua_pop(L, 1);
	return ct;
}

static int l_resume(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *f[3] = {"address", "id", "key"}, *v[3];
	for (int i = 0; i < 3; i++)
		if (!(v[i] = kx_optstringfield(L, 1, f[i], NULL)))
			return kx_fielderror(L, 1, f[i], "string expected, got nil");
	const char *address = v[0], *id = v[1], *key = v[2];
	const char *transport = check_transport(L, "auto");
	struct rf_container ct;
	const struct rf_container *c = check_container(L, &ct);
	char err[512];
	rf_resume(address, id, key, transport, c, err, sizeof err);
	return kx_fail(L, "rfork.resume: %s", err);
}

/* ---- rfork.spawn ----------------------------------------------------------
 *
 * A child resumed without exec: kx.spawn's process (stdio, session, the
 * task's cancellation: kx_spawn_lua) started by the zygote (zygote.c)
 * as this process's child, which runs rf_resume instead of a program.
 * What fails before the point of no return the child writes to a
 * close-on-exec pipe and exits 1; at the switch the restorer closes every
 * descriptor above 2 (the pager closed its copy when it started), so end
 * of file on the pipe with nothing in it means "resumed".  The caller's
 * task waits for that on the loop, so many spawns from many tasks resume
 * at once. */

struct pending {
	kx_task *task;
	uv_poll_t poll;
	int fd;
	int proc;     /* registry ref of the process handle */
	size_t len;
	char msg[512];
};

static void pending_closed(uv_handle_t *h)
{
	struct pending *w = h->data;
	close(w->fd);
	free(w);
}

static void pending_end(struct pending *w)
{
	luaL_unref(kx_task_state(w->task), LUA_REGISTRYINDEX, w->proc);
	uv_poll_stop(&w->poll);
	uv_close((uv_handle_t *)&w->poll, pending_closed);
}

static void on_report(uv_poll_t *h, int status, int events)
{
	struct pending *w = h->data;
	(void)events;
	ssize_t n = 0;
	if (status == 0) {
		n = read(w->fd, w->msg + w->len, sizeof w->msg - 1 - w->len);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n > 0 && (w->len += n) < sizeof w->msg - 1)
			return;   /* until end of file (the child's exit) */
	}
	lua_State *T = kx_task_state(w->task);
	int nres = 1;
	if (w->len) {
		w->msg[w->len] = 0;
		lua_pushnil(T);
		lua_pushfstring(T, "rfork.spawn: %s", w->msg);
		nres = 2;
	} else if (n < 0 || status < 0) {
		lua_pushnil(T);
		lua_pushfstring(T, "rfork.spawn: reading the child's report: %s",
		                status < 0 ? uv_strerror(status) : strerror(errno));
		nres = 2;
	} else {
		lua_rawgeti(T, LUA_REGISTRYINDEX, w->proc);
	}
	kx_task *t = w->task;
	pending_end(w);
	kx_wake(t, nres);
}

static void pending_cancel(void *ud)
{
	pending_end(ud);   /* the process goes with the task (kx_spawn_lua) */
}

/* The report pipe until a pending owns its read end: a to-be-closed value,
 * so that an argument error raised by kx_spawn_lua leaks nothing. */
#define PIPE_T "kx.rfork.reportpipe"
static int pipe_close(lua_State *L)
{
	int *fd = luaL_checkudata(L, 1, PIPE_T);
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	fd[0] = fd[1] = -1;
	return 0;
}

/* rfork.spawn{address=, id=, key=, transport=, container=, stdin=, stdout=,
 * stderr=, cwd=, detach=} -> process (as kx.spawn's) | nil, message */
static int l_spawn(lua_State *L)
{
	kx_task *t = kx_checktask(L, "spawn");
	luaL_checktype(L, 1, LUA_TTABLE);
	struct rf_spawn_args a;
	const char *f[3] = {"address", "id", "key"}, *v[3];
	for (int i = 0; i < 3; i++)
		if (!(v[i] = kx_optstringfield(L, 1, f[i], NULL)))
			return kx_fielderror(L, 1, f[i], "string expected, got nil");
	a.address = v[0], a.id = v[1], a.key = v[2];
	a.transport = check_transport(L, "auto");
	struct rf_container ct;
	a.ct = check_container(L, &ct);
	int *p = lua_newuserdatauv(L, 2 * sizeof *p, 0);
	p[0] = p[1] = -1;
	luaL_setmetatable(L, PIPE_T);
	int slot = lua_gettop(L);
	lua_toclose(L, slot);
	if (pipe2(p, O_CLOEXEC) < 0 || fcntl(p[0], F_SETFL, O_NONBLOCK) < 0)
		return kx_fail(L, "rfork.spawn: report pipe: %s", strerror(errno));
	a.report = p[1];
	int n = kx_spawn_lua(L, "rfork.spawn", rf_zygote_spawn, &a);
	close(p[1]);
	p[1] = -1;
	struct pending *w = n == 1 ? calloc(1, sizeof *w) : NULL;
	if (!w || uv_poll_init(kx_loop(), &w->poll, p[0]) < 0) {
		free(w);
		if (n != 1)
			return n;   /* nil, message */
		lua_getfield(L, -1, "pid");
		kill(-(pid_t)lua_tointeger(L, -1), SIGKILL);   /* reaped by its watch */
		return kx_fail(L, "rfork.spawn: cannot watch the report pipe: out of memory");
	}
	w->task = t;
	w->fd = p[0];
	p[0] = -1;
	w->poll.data = w;
	lua_pushvalue(L, -1);
	w->proc = luaL_ref(L, LUA_REGISTRYINDEX);
	uv_poll_start(&w->poll, UV_READABLE, on_report);
	lua_closeslot(L, slot);   /* nothing left in it; no slot across the wait */
	return kx_await(L, t, -1, pending_cancel, w);
}

int rf_lua_bench(lua_State *L);   /* bench.c */
void rf_huge_alloc(lua_State *L);  /* hugealloc.c */

int luaopen_kx_rfork(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"prepare", l_prepare},
		{"resume", l_resume},
		{"spawn", l_spawn},
		{"_bench", rf_lua_bench},
		{NULL, NULL},
	};
	static const luaL_Reg methods[] = {{"close", h_close}, {NULL, NULL}};
	static const luaL_Reg getters[] = {
		{"child", h_field}, {"index", h_field}, {"id", h_field},
		{"key", h_field}, {"address", h_field}, {"children", h_field},
		{"pid", h_field}, {"transport", h_field}, {"transport_info", h_field},
		{"rdma", h_field}, {NULL, NULL},
	};
	static const luaL_Reg meta[] = {
		{"__gc", h_gc}, {"__tostring", h_tostring}, {NULL, NULL},
	};
	kx_defclass(L, &(struct kx_class){HANDLE_T, methods, getters, meta});
	lua_pop(L, 1);
	static const luaL_Reg pipe_meta[] = {
		{"__gc", pipe_close}, {"__close", pipe_close}, {NULL, NULL},
	};
	luaL_newmetatable(L, PIPE_T);
	luaL_setfuncs(L, pipe_meta, 0);
	lua_pop(L, 1);
	rf_huge_alloc(L);   /* big blocks in huge pages: a prepare copies few page tables */
	luaL_newlib(L, fns);
	return 1;
}
