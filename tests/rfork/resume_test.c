/*
 * resume_test.c - kx._resume_test, for the tests only (built as
 * $(BUILD)/tests/lua/kx/_resume_test.so, loaded through package.cpath; it
 * calls kxrun's own functions, which the binary exports): tests kxrun's
 * side of kx.rfork (bindings/rfork/host*.c) without the rfork core, by
 * making a child that is in the state a resumed child is in right after
 * the switch.
 *
 *   T.fork() -> pid in the parent, 0 in the child
 *       From a task: rf_host_capture(), then a raw fork system call (no
 *       pthread_atfork handlers run, glibc's cached thread id stays the
 *       parent's: as after a resume), then in the child every descriptor
 *       above 2 closed and rf_host_reset() called.
 *   T.wait(pid) -> {code=N} | {signal=N}   a child made by T.fork
 *   T.queue_work() -> true, worker_tid, loop_tid
 *       one uv_queue_work round trip (the threadpool path of bindings)
 *   T.getpid() -> pid
 *   T.fds() -> { ["3"] = "pipe:", ["4"] = "anon_inode:", ... }
 *       the calling process's descriptors above 2 and what they are (the
 *       link target up to '['), read without starting a process (whose
 *       pipes would be in the list)
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hostside.h"

static int l_fork(lua_State *L)
{
	char err[256];
	size_t len;
	kx_checktask(L, "fork");
	void *blob = rf_host_capture(&len, err, sizeof err);
	if (!blob)
		return kx_fail(L, "%s", err);
	fflush(NULL);
	pid_t pid = (pid_t)syscall(SYS_fork);
	if (pid < 0) {
		int e = errno;
		free(blob);
		return kx_fail(L, "fork: %s", strerror(e));
	}
	if (pid == 0) {
		close_range(3, ~0U, 0);
		if (rf_host_reset(blob, len, err, sizeof err) < 0) {
			fprintf(stderr, "kx._resume_test: reset: %s\n", err);
			_exit(125);
		}
	}
	free(blob);
	lua_pushinteger(L, pid);
	return 1;
}

struct child_wait {
	kx_task *task;
	int cancelled;
};

static void on_child(pid_t pid, int ws, void *ud)
{
	struct child_wait *w = ud;
	(void)pid;
	if (w->cancelled) {
		free(w);
		return;
	}
	lua_State *T = kx_task_state(w->task);
	lua_createtable(T, 0, 1);
	if (WIFSIGNALED(ws)) {
		lua_pushinteger(T, WTERMSIG(ws));
		lua_setfield(T, -2, "signal");
	} else {
		lua_pushinteger(T, WEXITSTATUS(ws));
		lua_setfield(T, -2, "code");
	}
	kx_task *t = w->task;
	free(w);
	kx_wake(t, 1);
}

static void child_wait_cancel(void *ud)
{
	((struct child_wait *)ud)->cancelled = 1;
}

static int l_wait(lua_State *L)
{
	pid_t pid = (pid_t)luaL_checkinteger(L, 1);
	kx_task *t = kx_checktask(L, "wait");
	struct child_wait *w = calloc(1, sizeof *w);
	if (!w)
		return luaL_error(L, "out of memory");
	w->task = t;
	int r = kx_child_watch(pid, on_child, w);
	if (r < 0) {
		free(w);
		return kx_fail(L, "wait %d: %s", (int)pid, strerror(-r));
	}
	return kx_await(L, t, -1, child_wait_cancel, w);
}

struct work {
	uv_work_t req;
	kx_task *task;
	pid_t worker_tid;
	int cancelled;
};

static void do_work(uv_work_t *req)
{
	struct work *w = req->data;
	w->worker_tid = (pid_t)syscall(SYS_gettid);
}

static void after_work(uv_work_t *req, int status)
{
	struct work *w = req->data;
	if (!w->cancelled) {
		lua_State *T = kx_task_state(w->task);
		if (status < 0) {
			lua_pushnil(T);
			lua_pushstring(T, uv_strerror(status));
		} else {
			lua_pushboolean(T, 1);
			lua_pushinteger(T, w->worker_tid);
		}
		lua_pushinteger(T, (lua_Integer)syscall(SYS_gettid));
		kx_wake(w->task, 3);
	}
	free(w);
}

static void work_cancel(void *ud)
{
	struct work *w = ud;
	w->cancelled = 1;
	uv_cancel((uv_req_t *)&w->req);
}

static int l_queue_work(lua_State *L)
{
	kx_task *t = kx_checktask(L, "queue_work");
	struct work *w = calloc(1, sizeof *w);
	if (!w)
		return luaL_error(L, "out of memory");
	w->task = t;
	w->req.data = w;
	int r = uv_queue_work(kx_loop(), &w->req, do_work, after_work);
	if (r < 0) {
		free(w);
		return kx_fail(L, "uv_queue_work: %s", uv_strerror(r));
	}
	return kx_await(L, t, -1, work_cancel, w);
}

static int l_getpid(lua_State *L)
{
	lua_pushinteger(L, getpid());
	return 1;
}

static int l_fds(lua_State *L)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char path[64], target[256];
	ssize_t n;

	if (!d)
		return luaL_error(L, "/proc/self/fd: %s", strerror(errno));
	lua_newtable(L);
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (fd <= 2 || fd == dirfd(d))
			continue;
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		n = readlink(path, target, sizeof target - 1);
		if (n < 0)
			continue;
		target[n] = 0;
		target[strcspn(target, "[")] = 0;
		lua_pushstring(L, target);
		lua_setfield(L, -2, e->d_name);
	}
	closedir(d);
	return 1;
}

int luaopen_kx__resume_test(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"fork", l_fork},
		{"wait", l_wait},
		{"queue_work", l_queue_work},
		{"getpid", l_getpid},
		{"fds", l_fds},
		{NULL, NULL},
	};
	luaL_newlib(L, fns);
	return 1;
}
