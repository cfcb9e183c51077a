/*
 * llaunch.c - kx.sched.launch: the worker's side of the task launcher
 * (launch.h) on the loop, and the two system calls the runner needs.
 *
 *   local launch = require "kx.sched.launch"
 *   local l = assert(launch.start{ recorder = { kxrun, "sched", "_record" },
 *                                  input = "redis://...\n", lock = "node-n1" })
 *   local job = assert(l:spawn{ "ffmpeg", ..., cgroup = ".../cgroup.procs",
 *                               stdout = "log", stderr = "log", tag = json })
 *   job.pid, job.ts_start, job.ts_request  -- ms since the epoch
 *   local st = job:wait()                -- {code = | signal =, ts_end =, cpu_ms =}
 *   job:ack()                            -- recorded: the launcher forgets it
 *   l:own(dir)                           -- removed when the worker is gone
 *   l:close()
 *   launch.mkdir(path), launch.kill(pid, sig), launch.cpu()
 *
 * spawn returns nil, message when the command cannot start ("ffmpeg: No
 * such file or directory"), with the stage as a third value.  A lock name
 * already held on this machine (by a live worker of the same node, or by
 * the recorder of a dead one) makes start return nil, "held".
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdpass.h"
#include "kx.h"
#include "launch.h"

#define LAUNCHER_MT "kx.sched.launcher"
#define JOB_MT "kx.sched.job"

struct job;

/* A zygote's request socket (LAUNCH_ZYGOTE): spawn requests for its
 * cgroup go there, not through the launcher. */
struct zygote {
	pid_t pid;
	int fd;
	char *procs;         /* its cgroup's cgroup.procs */
};

/* Outside Lua memory: the poll handle closes asynchronously. */
struct launcher {
	uv_poll_t poll;
	int sock, lock_fd;
	pid_t pid;
	int polling, dead, collected, exited;
	uint32_t next_id;
	struct job **jobs;   /* jobs not yet ended, by slot */
	int njobs, cap;
	struct zygote *zyg;
	int nzyg;
	char why[160];
};

enum { JOB_STARTING, JOB_RUNNING, JOB_ENDED, JOB_FAILED };

struct job {
	struct launcher *l;
	uint32_t id;
	int state, ref;
	pid_t via;           /* the zygote it was sent to (0: the launcher) */
	char *req;           /* the request, until it is answered */
	size_t reqlen;
	pid_t pid;
	int err, stage, wstatus;
	double ts_start, ts_end, cpu_ms;
	double ts_request;   /* when the launcher got the request */
	kx_task *waiter;
	char argv0[64];
};

static void launcher_maybe_free(struct launcher *l)
{
	if (l->collected && !l->polling && l->exited)
		free(l);
}

static void poll_closed(uv_handle_t *h)
{
	struct launcher *l = h->data;
	l->polling = 0;
	launcher_maybe_free(l);
}

static void job_detach(struct launcher *l, struct job *j)
{
	for (int i = 0; i < l->njobs; i++) {
		if (l->jobs[i] == j) {
			l->jobs[i] = l->jobs[--l->njobs];
			break;
		}
	}
}

static void push_status(lua_State *T, struct job *j)
{
	lua_createtable(T, 0, 4);
	if (WIFSIGNALED(j->wstatus)) {
		lua_pushinteger(T, WTERMSIG(j->wstatus));
		lua_setfield(T, -2, "signal");
	} else {
		lua_pushinteger(T, WEXITSTATUS(j->wstatus));
		lua_setfield(T, -2, "code");
	}
	lua_pushnumber(T, j->ts_end);
	lua_setfield(T, -2, "ts_end");
	lua_pushnumber(T, j->cpu_ms);
	lua_setfield(T, -2, "cpu_ms");
}

static void push_failure(lua_State *T, struct job *j)
{
	lua_pushnil(T);
	if (j->stage == STAGE_EXEC)
		lua_pushfstring(T, "%s: %s", j->argv0, strerror(j->err));
	else
		lua_pushfstring(T, "%s: cannot %s: %s", j->argv0, launch_stage_name(j->stage),
				strerror(j->err));
	lua_pushstring(T, launch_stage_name(j->stage));
}

/* The job is done with: the launcher's table no longer keeps it alive. */
static void job_unref(lua_State *L, struct job *j)
{
	if (j->ref != LUA_NOREF) {
		luaL_unref(L, LUA_REGISTRYINDEX, j->ref);
		j->ref = LUA_NOREF;
	}
}

/* For registry references dropped from loop callbacks (one state). */
static lua_State *main_state;

static void job_answered(struct job *j)
{
	free(j->req);
	j->req = NULL;
}

static void job_event(struct job *j, const struct launch_msg *m)
{
	kx_task *t = j->waiter;
	j->waiter = NULL;
	if (m->type == LAUNCH_STARTED || m->type == LAUNCH_FAILED)
		job_answered(j);
	switch (m->type) {
	case LAUNCH_STARTED:
		j->state = JOB_RUNNING;
		j->pid = m->a;
		j->ts_start = (double)m->t1 / 1000.0;
		j->ts_request = (double)m->t2 / 1000.0;
		kx_track_pgid(j->pid);
		if (t) {
			lua_rawgeti(kx_task_state(t), LUA_REGISTRYINDEX, j->ref);
			kx_wake(t, 1);
		}
		return;
	case LAUNCH_FAILED:
		j->state = JOB_FAILED;
		j->err = m->a;
		j->stage = m->b;
		job_detach(j->l, j);
		if (t) {
			push_failure(kx_task_state(t), j);
			kx_wake(t, 3);
		}
		break;
	case LAUNCH_EXITED:
		j->state = JOB_ENDED;
		j->wstatus = m->a;
		j->ts_end = (double)m->t1 / 1000.0;
		j->cpu_ms = (double)m->t2 / 1000.0;
		kx_untrack_pgid(j->pid);
		job_detach(j->l, j);
		if (t) {
			push_status(kx_task_state(t), j);
			kx_wake(t, 1);
		}
		break;
	}
	job_unref(main_state, j);
}

static void zygotes_close(struct launcher *l)
{
	for (int i = 0; i < l->nzyg; i++) {
		close(l->zyg[i].fd);
		free(l->zyg[i].procs);
	}
	free(l->zyg);
	l->zyg = NULL;
	l->nzyg = 0;
}

/* Sends m + payload on fd; 0 or an errno. */
static int send_on(int fd, const struct launch_msg *m, const char *payload, size_t len)
{
	struct iovec iov[2] = { { (void *)m, sizeof *m }, { (void *)payload, len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	while (sendmsg(fd, &mh, MSG_NOSIGNAL) < 0) {
		if (errno != EINTR)
			return errno;
	}
	return 0;
}

static void zygote_add(struct launcher *l, pid_t pid, int fd, const char *dir)
{
	struct zygote *z = realloc(l->zyg, sizeof *z * (size_t)(l->nzyg + 1));
	char *procs = malloc(strlen(dir) + sizeof "/cgroup.procs");
	if (!z || !procs) {
		if (z)
			l->zyg = z;
		free(procs);
		close(fd);
		return;
	}
	l->zyg = z;
	strcpy(procs, dir);
	strcat(procs, "/cgroup.procs");
	l->zyg[l->nzyg++] = (struct zygote){ pid, fd, procs };
}

static void launcher_lost(struct launcher *l, const char *why);

/* The zygote `pid` is gone: requests sent to it and not answered go to the
 * launcher (it noted every start before the launcher said so). */
static void zygote_gone(struct launcher *l, pid_t pid)
{
	for (int i = 0; i < l->nzyg; i++) {
		if (l->zyg[i].pid == pid) {
			close(l->zyg[i].fd);
			free(l->zyg[i].procs);
			l->zyg[i] = l->zyg[--l->nzyg];
			break;
		}
	}
	for (int i = 0; i < l->njobs; i++) {
		struct job *j = l->jobs[i];
		if (j->state != JOB_STARTING || j->via != pid || !j->req)
			continue;
		j->via = 0;
		int e = send_on(l->sock, (const struct launch_msg *)j->req, j->req + sizeof(struct launch_msg),
				j->reqlen - sizeof(struct launch_msg));
		if (e) {
			launcher_lost(l, strerror(e));
			return;
		}
	}
}

/* The launcher went away: every waiter hears why. */
static void launcher_lost(struct launcher *l, const char *why)
{
	if (l->dead)
		return;
	l->dead = 1;
	snprintf(l->why, sizeof l->why, "the task launcher died (%s)", why);
	if (l->polling)
		uv_close((uv_handle_t *)&l->poll, poll_closed);
	zygotes_close(l);
	while (l->njobs > 0) {
		struct job *j = l->jobs[0];
		job_detach(l, j);
		job_answered(j);
		j->state = JOB_FAILED;
		if (j->waiter) {
			lua_State *T = kx_task_state(j->waiter);
			lua_pushnil(T);
			lua_pushstring(T, l->why);
			kx_wake(j->waiter, 2);
			j->waiter = NULL;
		}
		job_unref(main_state, j);
	}
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	struct launcher *l = h->data;
	(void)events;
	if (status < 0) {
		launcher_lost(l, uv_strerror(status));
		return;
	}
	for (;;) {
		struct launch_msg m;
		char dir[4096];
		struct iovec iov[2] = { { &m, sizeof m }, { dir, sizeof dir - 1 } };
		int fd = -1, nfd;
		ssize_t n = kx_recvfds(l->sock, iov, 2, &fd, 1, &nfd, MSG_DONTWAIT);
		if (n == -EAGAIN)
			return;
		if (n == -EMSGSIZE)
			continue;   /* cut short: not a message of ours */
		if (n <= 0) {
			launcher_lost(l, n == 0 ? "its socket closed" : strerror((int)-n));
			return;
		}
		if ((size_t)n < sizeof m) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (m.type == LAUNCH_ZYGOTE) {
			dir[n - sizeof m] = 0;
			if (fd >= 0)
				zygote_add(l, m.a, fd, dir);
			continue;
		}
		if (fd >= 0)
			close(fd);
		if (m.type == LAUNCH_ZYGOTE_GONE) {
			zygote_gone(l, m.a);
			if (l->dead)
				return;
			continue;
		}
		for (int i = 0; i < l->njobs; i++) {
			if (l->jobs[i]->id == m.job) {
				job_event(l->jobs[i], &m);
				break;
			}
		}
	}
}

static void on_launcher_exit(pid_t pid, int wstatus, void *ud)
{
	struct launcher *l = ud;
	(void)pid;
	l->exited = 1;
	if (!l->dead) {
		char why[64];
		if (WIFSIGNALED(wstatus))
			snprintf(why, sizeof why, "signal %d", WTERMSIG(wstatus));
		else
			snprintf(why, sizeof why, "exit %d", WEXITSTATUS(wstatus));
		launcher_lost(l, why);
	}
	kx_untrack_pgid(l->pid);
	launcher_maybe_free(l);
}

static struct launcher *check_launcher(lua_State *L)
{
	struct launcher **ud = luaL_checkudata(L, 1, LAUNCHER_MT);
	if (!*ud || (*ud)->sock < 0)
		luaL_error(L, "the launcher is closed");
	return *ud;
}

/* An abstract unix socket bound under `name`: held until every copy of the
 * descriptor is closed (the launcher and its recorder keep one), gone with
 * them, never a file left behind. */
static int take_lock(const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(name);
	if (n + 1 >= sizeof a.sun_path)
		n = sizeof a.sun_path - 2;
	memcpy(a.sun_path + 1, name, n);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* launch.start{recorder = {argv...}, input = string, lock = name} */
static int l_start(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *lock = kx_optstringfield(L, 1, "lock", NULL);
	const char *input = kx_optstringfield(L, 1, "input", "");
	lua_getfield(L, 1, "recorder");
	char **rec = NULL;
	if (!lua_isnil(L, -1)) {
		luaL_checktype(L, -1, LUA_TTABLE);
		int n = (int)lua_rawlen(L, -1);
		luaL_argcheck(L, n > 0, 1, "recorder is empty");
		rec = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
		for (int i = 0; i < n; i++) {
			lua_rawgeti(L, -2, i + 1);
			rec[i] = (char *)luaL_checkstring(L, -1);
			lua_pop(L, 1);   /* the recorder table keeps it */
		}
		rec[n] = NULL;
	}
	int lock_fd = -1;
	if (lock) {
		lock_fd = take_lock(lock);
		if (lock_fd == -EADDRINUSE) {
			lua_pushnil(L);
			lua_pushliteral(L, "held");
			return 2;
		}
		if (lock_fd < 0)
			return kx_fail(L, "lock %s: %s", lock, strerror(-lock_fd));
	}
	struct launcher *l = calloc(1, sizeof *l);
	if (!l) {
		if (lock_fd >= 0)
			close(lock_fd);
		return kx_fail(L, "out of memory");
	}
	/* the launcher is a copy of this process made now: rec and input are
	 * in its memory from here on */
	pid_t pid = launch_fork(&l->sock, rec, input, lock_fd);
	if (pid < 0) {
		if (lock_fd >= 0)
			close(lock_fd);
		free(l);
		return kx_fail(L, "cannot start the task launcher: %s", strerror((int)-pid));
	}
	l->pid = pid;
	l->lock_fd = lock_fd;
	l->next_id = 1;
	kx_track_pgid(pid);
	l->poll.data = l;
	uv_poll_init(kx_loop(), &l->poll, l->sock);
	uv_poll_start(&l->poll, UV_READABLE | UV_DISCONNECT, on_readable);
	l->polling = 1;
	if (kx_child_watch(pid, on_launcher_exit, l) < 0)
		l->exited = 1;   /* reaped by nobody we know: free on collect */
	struct launcher **ud = lua_newuserdatauv(L, sizeof *ud, 0);
	*ud = l;
	luaL_setmetatable(L, LAUNCHER_MT);
	return 1;
}

static void send_msg(lua_State *L, struct launcher *l, struct launch_msg *m,
		     const char *payload, size_t len)
{
	int e = send_on(l->sock, m, payload, len);
	if (e) {
		launcher_lost(l, strerror(e));
		luaL_error(L, "%s", l->why);
	}
}

static void cancel_wait(void *ud)
{
	((struct job *)ud)->waiter = NULL;
}


/* l:spawn{argv..., cgroup=, stdin=, stdout=, stderr=, cwd=, env=, tag=} */
static int l_spawn(lua_State *L)
{
	struct launcher *l = check_launcher(L);
	luaL_checktype(L, 2, LUA_TTABLE);
	int argc = (int)lua_rawlen(L, 2);
	luaL_argcheck(L, argc > 0, 2, "argv is empty");
	kx_task *t = kx_checktask(L, "spawn");
	if (l->dead)
		return kx_fail(L, "%s", l->why);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	static const char *const fixed[LAUNCH_SPAWN_FIXED] = { "cgroup", "stdin", "stdout",
		"stderr", "cwd", "tag" };
	for (int i = 0; i < LAUNCH_SPAWN_FIXED; i++) {
		const char *v = kx_optstringfield(L, 2, fixed[i], "");
		if (i >= 1 && i <= 3 && strcmp(v, "null") == 0)
			v = "";
		luaL_addstring(&b, v);
		luaL_addchar(&b, 0);
	}
	for (int i = 1; i <= argc; i++) {
		lua_rawgeti(L, 2, i);
		if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
			return luaL_error(L, "bad argument #1 to 'spawn' (argv[%d] is a %s, string expected)",
					  i, luaL_typename(L, -1));
		size_t len;
		const char *s = lua_tolstring(L, -1, &len);
		if (memchr(s, 0, len))
			return luaL_error(L, "bad argument #1 to 'spawn' (argv[%d] has a NUL byte)", i);
		lua_pop(L, 1);
		luaL_addlstring(&b, s, len);
		luaL_addchar(&b, 0);
	}
	int envc = 0;
	lua_getfield(L, 2, "env");
	if (!lua_isnil(L, -1)) {
		luaL_checktype(L, -1, LUA_TTABLE);
		int env = lua_gettop(L);
		lua_pushnil(L);
		while (lua_next(L, env)) {
			lua_pushfstring(L, "%s=%s", luaL_checkstring(L, -2), luaL_checkstring(L, -1));
			luaL_addvalue(&b);
			luaL_addchar(&b, 0);
			lua_pop(L, 1);
			envc++;
		}
	}
	lua_pop(L, 1);
	luaL_pushresult(&b);
	size_t len;
	const char *payload = lua_tolstring(L, -1, &len);

	struct job *j = lua_newuserdatauv(L, sizeof *j, 1);
	memset(j, 0, sizeof *j);
	luaL_setmetatable(L, JOB_MT);
	lua_pushvalue(L, 1);   /* the launcher lives as long as its jobs */
	lua_setiuservalue(L, -2, 1);
	j->l = l;
	j->id = l->next_id++;
	j->ref = LUA_NOREF;
	lua_rawgeti(L, 2, 1);
	snprintf(j->argv0, sizeof j->argv0, "%s", lua_tostring(L, -1));
	lua_pop(L, 1);
	if (l->njobs == l->cap) {
		int cap = l->cap ? l->cap * 2 : 16;
		struct job **nj = realloc(l->jobs, sizeof *nj * (size_t)cap);
		if (!nj)
			return kx_fail(L, "out of memory");
		l->jobs = nj;
		l->cap = cap;
	}
	struct launch_msg m = { .type = LAUNCH_SPAWN, .job = j->id, .argc = (uint32_t)argc,
				.envc = (uint32_t)envc };
	if (len > LAUNCH_MSG_MAX)
		return luaL_error(L, "command line too long for the launcher (%d bytes at most)", LAUNCH_MSG_MAX);
	/* to the zygote of its cgroup when there is one (the request is kept
	 * until answered, in case the zygote goes first), else the launcher */
	struct zygote *z = NULL;
	for (int i = 0; payload[0] && i < l->nzyg && !z; i++)
		if (strcmp(l->zyg[i].procs, payload) == 0)
			z = &l->zyg[i];
	if (z && (j->req = malloc(sizeof m + len))) {
		memcpy(j->req, &m, sizeof m);
		memcpy(j->req + sizeof m, payload, len);
		j->reqlen = sizeof m + len;
		if (send_on(z->fd, &m, payload, len) == 0)
			j->via = z->pid;
	}
	if (!j->via) {
		job_answered(j);
		send_msg(L, l, &m, payload, len);
	}
	l->jobs[l->njobs++] = j;
	j->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	j->waiter = t;
	return kx_await(L, t, -1, cancel_wait, j);
}

static struct job *check_job(lua_State *L)
{
	return luaL_checkudata(L, 1, JOB_MT);
}

/* job:wait() -> {code = | signal =, ts_end =, cpu_ms =} | nil, message */
static int l_job_wait(lua_State *L)
{
	struct job *j = check_job(L);
	kx_task *t = kx_checktask(L, "wait");
	if (j->state == JOB_ENDED) {
		push_status(L, j);
		return 1;
	}
	if (j->state == JOB_FAILED) {
		if (j->l->dead && j->stage == 0 && j->err == 0)
			return kx_fail(L, "%s", j->l->why);
		push_failure(L, j);
		return 3;
	}
	if (j->waiter)
		return luaL_error(L, "another task already waits for this job");
	j->waiter = t;
	return kx_await(L, t, -1, cancel_wait, j);
}

static int l_job_ack(lua_State *L)
{
	struct job *j = check_job(L);
	if (j->state == JOB_ENDED && !j->l->dead && j->l->sock >= 0) {
		struct launch_msg m = { .type = LAUNCH_ACK, .job = j->id };
		send_msg(L, j->l, &m, NULL, 0);
	}
	return 0;
}

/* job:kill([sig = 9]): to the job's whole process group */
static int l_job_kill(lua_State *L)
{
	struct job *j = check_job(L);
	int sig = (int)luaL_optinteger(L, 2, SIGKILL);
	if (j->state == JOB_RUNNING && !j->l->dead && j->l->sock >= 0) {
		struct launch_msg m = { .type = LAUNCH_KILL, .job = j->id, .a = sig };
		send_msg(L, j->l, &m, NULL, 0);
	}
	return 0;
}

static int l_job_pid(lua_State *L)
{
	lua_pushinteger(L, check_job(L)->pid);
	return 1;
}

static int l_job_ts_start(lua_State *L)
{
	lua_pushnumber(L, check_job(L)->ts_start);
	return 1;
}

/* when the launcher read the request (ts_start - ts_request: the fork and
 * exec; before it, the wake-up of the launcher) */
static int l_job_ts_request(lua_State *L)
{
	lua_pushnumber(L, check_job(L)->ts_request);
	return 1;
}

/* l:own(dir): the launcher removes dir (killing what is left in it) when
 * the worker is gone */
static int l_own(lua_State *L)
{
	struct launcher *l = check_launcher(L);
	size_t len;
	const char *dir = luaL_checklstring(L, 2, &len);
	if (l->dead)
		return kx_fail(L, "%s", l->why);
	struct launch_msg m = { .type = LAUNCH_OWN };
	send_msg(L, l, &m, dir, len + 1);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_pid(lua_State *L)
{
	lua_pushinteger(L, check_launcher(L)->pid);
	return 1;
}

static void launcher_close(struct launcher *l)
{
	if (l->sock < 0)
		return;
	if (l->polling && !l->dead)
		uv_close((uv_handle_t *)&l->poll, poll_closed);
	l->dead = 1;
	snprintf(l->why, sizeof l->why, "the launcher is closed");
	zygotes_close(l);
	close(l->sock);   /* the launcher sees the end and goes */
	l->sock = -1;
	if (l->lock_fd >= 0)
		close(l->lock_fd);
	l->lock_fd = -1;
}

static int l_close(lua_State *L)
{
	struct launcher **ud = luaL_checkudata(L, 1, LAUNCHER_MT);
	if (*ud)
		launcher_close(*ud);
	return 0;
}

static int l_gc(lua_State *L)
{
	struct launcher **ud = luaL_checkudata(L, 1, LAUNCHER_MT);
	struct launcher *l = *ud;
	if (!l)
		return 0;
	*ud = NULL;
	launcher_close(l);
	free(l->jobs);
	l->jobs = NULL;
	l->njobs = 0;
	l->collected = 1;
	launcher_maybe_free(l);
	return 0;
}

/* launch.mkdir(path [, mode = 0755]) -> true | nil, message, errno name */
static int l_mkdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	if (mkdir(path, (mode_t)luaL_optinteger(L, 2, 0755)) < 0) {
		int e = errno;
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, strerror(e));
		lua_pushstring(L, e == EEXIST ? "EEXIST" : "error");
		return 3;
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* launch.cpu() -> the CPU this process runs on now */
static int l_cpu(lua_State *L)
{
	lua_pushinteger(L, sched_getcpu());
	return 1;
}

/* launch.kill(pid, sig) -> true | nil, message */
static int l_kill(lua_State *L)
{
	lua_Integer pid = luaL_checkinteger(L, 1);
	int sig = (int)luaL_optinteger(L, 2, SIGKILL);
	luaL_argcheck(L, pid != 0 && pid != -1, 1, "pid 0 and -1 are not a process");
	if (kill((pid_t)pid, sig) < 0)
		return kx_fail(L, "kill %d: %s", (int)pid, strerror(errno));
	lua_pushboolean(L, 1);
	return 1;
}

int luaopen_kx_sched_launch(lua_State *L)
{
	static const luaL_Reg lmethods[] = {
		{"spawn", l_spawn}, {"own", l_own}, {"pid", l_pid}, {"close", l_close}, {NULL, NULL},
	};
	static const luaL_Reg lmeta[] = { {"__gc", l_gc}, {NULL, NULL} };
	static const luaL_Reg jmethods[] = {
		{"wait", l_job_wait}, {"ack", l_job_ack}, {"kill", l_job_kill}, {NULL, NULL},
	};
	static const luaL_Reg jgetters[] = {
		{"pid", l_job_pid}, {"ts_start", l_job_ts_start}, {"ts_request", l_job_ts_request}, {NULL, NULL},
	};
	static const luaL_Reg fns[] = {
		{"start", l_start}, {"mkdir", l_mkdir}, {"kill", l_kill}, {"cpu", l_cpu}, {NULL, NULL},
	};
	kx_defclass(L, &(struct kx_class){ LAUNCHER_MT, lmethods, NULL, lmeta });
	lua_pop(L, 1);
	kx_defclass(L, &(struct kx_class){ JOB_MT, jmethods, jgetters, NULL });
	lua_pop(L, 1);
	main_state = L;
	luaL_newlib(L, fns);
	return 1;
}
