/*
 * task.c - Lua coroutines as tasks, driven by the libuv loop.
 *
 * A task is a Lua thread plus a little C state.  It runs until it waits
 * (kx_await), sleeps, yields, or ends.  Wakes go through a ready queue drained
 * from an idle handle, so a task never runs inside another task's C call.
 *
 * Blocking calls may happen inside user coroutines nested in a task: the
 * coroutine.resume/wrap replacements of nested.c pass the host's await
 * marker up to the task and hand the wake values back down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

#define TASK_MT "kx.task"

enum task_state {
	T_READY,
	T_RUNNING,
	T_WAITING,
	T_DONE,
	T_FAILED,
	T_CANCELLED,
};

static const char *const state_names[] = {
	"ready", "running", "waiting", "done", "failed", "cancelled",
};

struct waiter {
	kx_task *task;   /* the task blocked in wait() */
	kx_task *target; /* the task it waits for */
	struct waiter *next;
};

enum timer_mode { TM_NONE, TM_TIMEOUT, TM_SLEEP };

struct kx_task {
	lua_State *co;
	int co_ref;  /* registry ref to the thread while the task is live */
	int ref;     /* registry ref to the task's userdata while live */
	enum task_state state;
	int nargs;   /* values on co's stack for the next resume */
	int queued;  /* in the ready queue */
	int collected; /* the userdata is gone: free when dequeued */
	kx_cancel_fn cancel;
	void *cancel_ud;
	uv_timer_t *timer;
	enum timer_mode timer_mode;
	kx_task *next_ready;
	struct waiter *waiters;
	int result_ref; /* table {n=, ...} of results, or the error value */
	int trace_ref;  /* traceback of a failed task */
	struct kx_cancel_hook *on_cancel;
};

struct kx_cancel_hook {
	void (*fn)(void *ud, int cancelled);
	void *ud;
	struct kx_cancel_hook *next;
};

static char await_marker;    /* yielded by kx_await, up through coroutines */
static char cancel_marker;   /* raised by a task cancelling itself */

static kx_task *current;
static kx_task *ready_head, *ready_tail;
static uv_idle_t ready_idle;

static void task_run(kx_task *t);

uv_loop_t *kx_loop(void)
{
	return kx_host.loop;
}

kx_task *kx_current(void)
{
	return current;
}

lua_State *kx_task_state(kx_task *t)
{
	return t->co;
}

int kx_task_finished(kx_task *t)
{
	return t->state >= T_DONE;
}

static void maybe_stop(void)
{
	if (kx_host.stopping || kx_host.in_repl)
		return;
	if (kx_host.main && kx_task_finished(kx_host.main) &&
	    (kx_host.live_tasks == 0 || kx_host.repl)) {
		kx_host.stopping = 1;
		uv_stop(kx_host.loop);
	}
}

static void on_ready(uv_idle_t *h)
{
	(void)h;
	while (ready_head) {
		kx_task *t = ready_head;
		ready_head = t->next_ready;
		if (!ready_head)
			ready_tail = NULL;
		t->next_ready = NULL;
		t->queued = 0;
		if (t->collected)
			free(t);
		else if (t->state == T_READY)
			task_run(t);
	}
	uv_idle_stop(&ready_idle);
}

static void make_ready(kx_task *t)
{
	t->state = T_READY;
	if (t->queued)
		return;
	t->queued = 1;
	t->next_ready = NULL;
	if (ready_tail)
		ready_tail->next_ready = t;
	else
		ready_head = t;
	ready_tail = t;
	if (!uv_is_active((uv_handle_t *)&ready_idle))
		uv_idle_start(&ready_idle, on_ready);
}

static void timer_free(uv_handle_t *h)
{
	free(h);
}

static void task_stop_timer(kx_task *t)
{
	if (t->timer && t->timer_mode != TM_NONE)
		uv_timer_stop(t->timer);
	t->timer_mode = TM_NONE;
}

static void on_task_timer(uv_timer_t *h)
{
	kx_task *t = h->data;
	enum timer_mode mode = t->timer_mode;

	t->timer_mode = TM_NONE;
	if (t->state != T_WAITING)
		return;
	if (mode == TM_TIMEOUT) {
		kx_cancel_fn cancel = t->cancel;
		t->cancel = NULL;
		if (cancel)
			cancel(t->cancel_ud);
		lua_pushnil(t->co);
		lua_pushliteral(t->co, "timeout");
		t->nargs = 2;
	} else {
		t->nargs = 0;
	}
	make_ready(t);
}

static void task_start_timer(kx_task *t, double seconds, enum timer_mode mode)
{
	if (t->timer && t->timer->loop != kx_host.loop) {
		/* a resumed child: the timer was the parent's loop's, which
		 * no longer refers to it (resume.c) */
		memset(t->timer, 0, sizeof *t->timer);
		uv_timer_init(kx_host.loop, t->timer);
		t->timer->data = t;
	}
	if (!t->timer) {
		t->timer = malloc(sizeof *t->timer);
		if (!t->timer)
			abort();
		uv_timer_init(kx_host.loop, t->timer);
		t->timer->data = t;
	}
	t->timer_mode = mode;
	uv_update_time(kx_host.loop);   /* loop time is stale while tasks run */
	/* math.huge and the like: libuv clamps UINT64_MAX to "never" */
	double ms_d = seconds * 1000.0 + 0.5;
	uint64_t ms = !(seconds > 0) ? 0 : ms_d >= 1.8e19 ? UINT64_MAX :
		(uint64_t)ms_d;
	uv_timer_start(t->timer, on_task_timer, ms, 0);
}

kx_task *kx_checktask(lua_State *L, const char *fname)
{
	if (!current)
		luaL_error(L, "'%s' blocks, so it must be called from a task "
			   "(the main chunk, kx.go, or a REPL line), not from a "
			   "plain C call path", fname);
	if (!lua_isyieldable(L))
		luaL_error(L, "'%s' blocks and cannot be called here (inside a "
			   "metamethod, iterator or C function that cannot "
			   "yield)", fname);
	return current;
}

int kx_await(lua_State *L, kx_task *t, double timeout_s, kx_cancel_fn cancel,
	     void *ud)
{
	t->state = T_WAITING;
	t->cancel = cancel;
	t->cancel_ud = ud;
	if (timeout_s >= 0)
		task_start_timer(t, timeout_s, TM_TIMEOUT);
	lua_pushlightuserdata(L, &await_marker);
	return lua_yield(L, 1);
}

void kx_wake(kx_task *t, int nvalues)
{
	if (t->state != T_WAITING) {
#ifdef KX_CHECKS
		/* a binding woke it twice, or after its cancel function ran */
		fprintf(stderr, "kxrun: kx_wake on a task that is %s, not waiting\n",
			state_names[t->state]);
		abort();
#endif
		lua_pop(t->co, nvalues);
		return;
	}
	task_stop_timer(t);
	t->cancel = NULL;
	t->nargs = nvalues;
	make_ready(t);
}

kx_cancel_hook *kx_on_cancel(kx_task *t, void (*fn)(void *ud, int cancelled),
			     void *ud)
{
	kx_cancel_hook *h = malloc(sizeof *h);
	if (!h)
		return NULL;
	h->fn = fn;
	h->ud = ud;
	h->next = t->on_cancel;
	t->on_cancel = h;
	return h;
}

void kx_cancel_hook_remove(kx_task *t, kx_cancel_hook *h)
{
	for (kx_cancel_hook **p = &t->on_cancel; *p; p = &(*p)->next) {
		if (*p == h) {
			*p = h->next;
			free(h);
			return;
		}
	}
}

/* The task's end: each cancel hook told whether it was cancelled. */
static void end_cancel_hooks(kx_task *t, int cancelled)
{
	while (t->on_cancel) {
		kx_cancel_hook *h = t->on_cancel;
		t->on_cancel = h->next;
		h->fn(h->ud, cancelled);
		free(h);
	}
}

/* Ctrl-C interrupted the running task (an error it may catch): its cancel
 * hooks run as if it had been cancelled. */
void kx_task_interrupted(kx_task *t)
{
	end_cancel_hooks(t, 1);
}

/* ---- life and death ---------------------------------------------------- */

static kx_task **checktask(lua_State *L, int i)
{
	return luaL_checkudata(L, i, TASK_MT);
}

kx_task *kx_go(lua_State *L, int nargs, int push)
{
	luaL_checktype(L, -(nargs + 1), LUA_TFUNCTION);
	kx_task *t = calloc(1, sizeof *t);
	if (!t)
		luaL_error(L, "out of memory");
	t->co = lua_newthread(L);
	t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_xmove(L, t->co, nargs + 1);
	t->nargs = nargs;
	t->result_ref = t->trace_ref = LUA_NOREF;

	kx_task **ud = lua_newuserdatauv(L, sizeof *ud, 0);
	*ud = t;
	luaL_setmetatable(L, TASK_MT);
	lua_pushvalue(L, -1);
	t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (!push)
		lua_pop(L, 1);
	kx_host.live_tasks++;
	make_ready(t);
	return t;
}

/* Wakes everyone waiting on t with its outcome. */
static void wake_waiters(kx_task *t)
{
	lua_State *L = kx_host.L;
	struct waiter *w = t->waiters;

	t->waiters = NULL;
	while (w) {
		struct waiter *next = w->next;
		lua_State *T = w->task->co;
		int n;
		lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
		if (t->state == T_DONE) {
			lua_pushboolean(T, 1);
			lua_getfield(L, -1, "n");
			n = (int)lua_tointeger(L, -1);
			lua_pop(L, 1);
			luaL_checkstack(T, n + 2, "too many results");
			for (int i = 1; i <= n; i++)
				lua_rawgeti(L, -1 - (i - 1), i);
			lua_xmove(L, T, n);
			lua_pop(L, 1);
			n += 1;
		} else {
			lua_pushnil(T);
			lua_xmove(L, T, 1);
			n = 2;
			if (t->state == T_FAILED) {
				lua_rawgeti(L, LUA_REGISTRYINDEX, t->trace_ref);
				lua_xmove(L, T, 1);
				n = 3;
			}
		}
		w->task->cancel = NULL;
		kx_wake(w->task, n);
		free(w);
		w = next;
	}
}

static void task_finish(kx_task *t, enum task_state st)
{
	lua_State *L = kx_host.L;

	task_stop_timer(t);
	t->state = st;
	t->cancel = NULL;
	end_cancel_hooks(t, 0);
	if (t->result_ref == LUA_NOREF) {
		lua_pushstring(L, st == T_CANCELLED ? "cancelled" : "failed");
		t->result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	luaL_unref(L, LUA_REGISTRYINDEX, t->co_ref);
	t->co_ref = LUA_NOREF;
	wake_waiters(t);
	luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
	t->ref = LUA_NOREF;
	kx_host.live_tasks--;
	maybe_stop();
}

static int tostring_call(lua_State *L)
{
	luaL_tolstring(L, 1, NULL);
	return 1;
}

/* Pushes the message of the error value at idx as lua.c shows one: a string
 * or number as is, else what __tostring gives, else its type.  Never
 * raises, whatever the value's __tostring does. */
static const char *push_error_message(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
		lua_pushvalue(L, idx);
		return lua_tostring(L, -1);
	}
	if (luaL_getmetafield(L, idx, "__tostring") == LUA_TNIL)
		return lua_pushfstring(L, "(error object is a %s value)",
				       luaL_typename(L, idx));
	lua_pop(L, 1);
	lua_pushcfunction(L, tostring_call);
	lua_pushvalue(L, idx);
	if (lua_pcall(L, 1, 1, 0) == LUA_OK)
		return lua_tostring(L, -1);
	const char *why = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) :
		luaL_typename(L, -1);
	const char *msg = lua_pushfstring(L, "(error object is a %s value whose "
					  "__tostring failed: %s)",
					  luaL_typename(L, idx), why);
	lua_remove(L, -2);
	return msg;
}

/* Runs the pending <close> handlers of a task's thread.  An error one of
 * them raises is reported (the task's outcome stays what it was); the error
 * the thread ended with, if any, is was_marker or the value at was_ref. */
static void close_thread(kx_task *t, const void *was_marker, int was_ref,
			 const char *while_doing)
{
	lua_State *co = t->co, *L = kx_host.L;
#if LUA_VERSION_RELEASE_NUM >= 50406
	int st = lua_closethread(co, L);
#else
	int st = lua_resetthread(co);
#endif
	if (st == LUA_OK || lua_gettop(co) < 1)
		return;
	lua_xmove(co, L, 1);
	int same = was_marker ? lua_touserdata(L, -1) == was_marker : 0;
	if (was_ref != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, was_ref);
		same = lua_rawequal(L, -1, -2);
		lua_pop(L, 1);
	}
	if (!same) {
		const char *msg = push_error_message(L, -1);
		lua_pushfstring(L, "error in a <close> handler while %s: %s",
				while_doing, msg);
		kx_report(lua_tostring(L, -1));
		lua_pop(L, 2);
	}
	lua_pop(L, 1);
}

static void task_fail(kx_task *t)
{
	lua_State *L = kx_host.L, *co = t->co;

	if (lua_touserdata(co, -1) == &cancel_marker) {
		end_cancel_hooks(t, 1);
		close_thread(t, &cancel_marker, LUA_NOREF, "cancelling a task");
		task_finish(t, T_CANCELLED);
		return;
	}
	/* a copy of the error value: the <close> handlers still get it */
	lua_checkstack(co, 1);
	lua_pushvalue(co, -1);
	lua_xmove(co, L, 1);
	int err = lua_gettop(L);
	const char *msg = push_error_message(L, err);
	luaL_traceback(L, co, NULL, 0);
	int fatal = !t->waiters && !kx_host.repl;
	if (!t->waiters) {
		lua_pushfstring(L, "%s\n%s", msg, lua_tostring(L, -1));
		kx_report(lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	t->trace_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pop(L, 1);   /* the message */
	t->result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	close_thread(t, NULL, t->result_ref, "ending a failed task");
	int is_main = t == kx_host.main;
	task_finish(t, T_FAILED);
	if (fatal || (is_main && !kx_host.repl)) {
		kx_host.exit_code = 1;
		kx_task_cancel_all();
		kx_host.stopping = 1;
		uv_stop(kx_host.loop);
	}
}

static void task_run(kx_task *t)
{
	lua_State *L = kx_host.L;
	kx_task *prev = current;
	int nres, status;

	current = t;
	t->state = T_RUNNING;
	status = lua_resume(t->co, L, t->nargs, &nres);
	t->nargs = 0;
	current = prev;

	if (status == LUA_YIELD) {
		lua_pop(t->co, nres);
		if (t->state == T_RUNNING)   /* coroutine.yield(): a turn */
			make_ready(t);
		return;
	}
	if (status != LUA_OK) {
		task_fail(t);
		return;
	}
	lua_createtable(L, nres, 1);
	lua_xmove(t->co, L, nres);
	for (int i = nres; i >= 1; i--)
		lua_rawseti(L, -(i + 1), i);
	lua_pushinteger(L, nres);
	lua_setfield(L, -2, "n");
	t->result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	task_finish(t, T_DONE);
}

void kx_task_cancel(kx_task *t)
{
	if (kx_task_finished(t))
		return;
	if (t == current) {
		lua_pushlightuserdata(t->co, &cancel_marker);
		lua_error(t->co);
	}
	if (t->state == T_WAITING) {
		kx_cancel_fn cancel = t->cancel;
		t->cancel = NULL;
		if (cancel)
			cancel(t->cancel_ud);
	}
	task_stop_timer(t);
	end_cancel_hooks(t, 1);
	kx_task *prev = current;
	current = t;          /* __close handlers run as this task */
	close_thread(t, NULL, LUA_NOREF, "cancelling a task");
	current = prev;
	task_finish(t, T_CANCELLED);
}

/* Cancels every live task (a fatal error, a signal, the end). */
void kx_task_cancel_all(void)
{
	lua_State *L = kx_host.L;

	/* collect first: cancelling runs Lua and may change the set */
	lua_newtable(L);
	int n = 0;
	lua_pushnil(L);
	while (lua_next(L, LUA_REGISTRYINDEX)) {
		kx_task **ud = luaL_testudata(L, -1, TASK_MT);
		if (ud && !kx_task_finished(*ud)) {
			lua_pushvalue(L, -1);
			lua_rawseti(L, -4, ++n);
		}
		lua_pop(L, 1);
	}
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		kx_task **ud = lua_touserdata(L, -1);
		if (*ud != current)
			kx_task_cancel(*ud);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

int kx_task_failed(kx_task *t, const char **msg)
{
	if (t->state != T_FAILED)
		return 0;
	if (msg) {
		lua_rawgeti(kx_host.L, LUA_REGISTRYINDEX, t->result_ref);
		*msg = lua_type(kx_host.L, -1) == LUA_TSTRING ?
			lua_tostring(kx_host.L, -1) : NULL;
		lua_pop(kx_host.L, 1);
	}
	return 1;
}

/* ---- Lua methods ------------------------------------------------------- */

static void waiter_cancel(void *ud)
{
	struct waiter *w = ud, **p;

	for (p = &w->target->waiters; *p; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	free(w);
}

static int push_outcome(lua_State *L, kx_task *t)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
	if (t->state != T_DONE) {
		lua_pushnil(L);
		lua_insert(L, -2);
		if (t->state != T_FAILED)
			return 2;
		lua_rawgeti(L, LUA_REGISTRYINDEX, t->trace_ref);
		return 3;
	}
	lua_getfield(L, -1, "n");
	int n = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	luaL_checkstack(L, n + 1, "too many results");
	lua_pushboolean(L, 1);
	for (int i = 1; i <= n; i++)
		lua_rawgeti(L, -1 - i, i);
	lua_remove(L, -(n + 2));
	return n + 1;
}

/* task:wait([timeout_s]) -> true, results... | nil, err [, traceback]:
 * err is the error value as raised (or "cancelled", "timeout") and the
 * traceback of a failed task comes third. */
static int l_task_wait(lua_State *L)
{
	kx_task *t = *checktask(L, 1);
	double timeout = luaL_optnumber(L, 2, -1);

	if (kx_task_finished(t))
		return push_outcome(L, t);
	kx_task *self = kx_checktask(L, "wait");
	if (self == t)
		return luaL_error(L, "a task cannot wait for itself");
	struct waiter *w = malloc(sizeof *w);
	if (!w)
		return luaL_error(L, "out of memory");
	w->task = self;
	w->target = t;
	w->next = t->waiters;
	t->waiters = w;
	return kx_await(L, self, timeout, waiter_cancel, w);
}

static int l_task_cancel(lua_State *L)
{
	kx_task_cancel(*checktask(L, 1));
	return 0;
}

static int l_task_status(lua_State *L)
{
	lua_pushstring(L, state_names[(*checktask(L, 1))->state]);
	return 1;
}

/* A task's memory goes with its userdata; a live task is kept referenced. */
static int l_task_gc(lua_State *L)
{
	kx_task **ud = checktask(L, 1);
	kx_task *t = *ud;

	if (!t || !kx_task_finished(t))
		return 0;
	*ud = NULL;
	luaL_unref(L, LUA_REGISTRYINDEX, t->result_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, t->trace_ref);
	if (t->timer && t->timer->loop != kx_host.loop)
		free(t->timer);   /* of a retired loop: nothing refers to it */
	else if (t->timer)
		uv_close((uv_handle_t *)t->timer, timer_free);
	if (t->queued)
		t->collected = 1;
	else
		free(t);
	return 0;
}

/* `local t <close> = kx.go(...)` cancels the task when the scope ends. */
static int l_task_close(lua_State *L)
{
	kx_task *t = *checktask(L, 1);
	if (t)
		kx_task_cancel(t);
	return 0;
}

static int l_task_tostring(lua_State *L)
{
	kx_task *t = *checktask(L, 1);
	lua_pushfstring(L, "task: %p (%s)", (void *)t,
			t ? state_names[t->state] : "collected");
	return 1;
}

static int l_go(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TFUNCTION);
	kx_go(L, lua_gettop(L) - 1, 1);
	return 1;
}

/* kx.sleep(s): 0 gives the other ready tasks a turn; math.huge sleeps
 * until the task is cancelled. */
static int l_sleep(lua_State *L)
{
	double s = luaL_checknumber(L, 1);
	luaL_argcheck(L, s == s, 1, "duration is not a number");
	luaL_argcheck(L, s >= 0, 1, "negative duration");
	kx_task *t = kx_checktask(L, "sleep");
	t->state = T_WAITING;
	t->cancel = NULL;
	task_start_timer(t, s, TM_SLEEP);
	lua_pushlightuserdata(L, &await_marker);
	return lua_yield(L, 1);
}

static int l_current(lua_State *L)
{
	if (!current)
		return 0;
	lua_rawgeti(L, LUA_REGISTRYINDEX, current->ref);
	return 1;
}

int kx_open_task(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"go", l_go},
		{"sleep", l_sleep},
		{"current", l_current},
		{NULL, NULL},
	};
	luaL_setfuncs(L, fns, 0);
	return 0;
}

/* A resumed child: the ready queue's handle on the new loop. */
static void tasks_resumed(void *ud)
{
	(void)ud;
	memset(&ready_idle, 0, sizeof ready_idle);
	uv_idle_init(kx_host.loop, &ready_idle);
	if (ready_head)
		uv_idle_start(&ready_idle, on_ready);
}

void kx_tasks_init(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"wait", l_task_wait},
		{"cancel", l_task_cancel},
		{"status", l_task_status},
		{NULL, NULL},
	};
	static const luaL_Reg meta[] = {
		{"__gc", l_task_gc},
		{"__close", l_task_close},
		{"__tostring", l_task_tostring},
		{NULL, NULL},
	};
	kx_defclass(L, &(struct kx_class){TASK_MT, methods, NULL, meta});
	lua_pop(L, 1);

	uv_idle_init(kx_host.loop, &ready_idle);
	kx_on_resume(tasks_resumed, NULL);
	kx_nested_init(L, &await_marker);
}

/* A resumed child, after the hooks: the calling task becomes the main one,
 * every other task is cancelled. */
void kx_tasks_after_resume(void)
{
	if (current != kx_host.main) {
		kx_host.main = current;
		kx_host.main_is_tool = 0;
	}
	kx_host.repl = 0;
	kx_host.in_repl = 0;
	kx_task_cancel_all();
}

/* Exit status from the main task: 1 if it failed; a tool's first result
 * (a number, or false for 1); else 0. */
int kx_main_status(void)
{
	kx_task *t = kx_host.main;
	lua_State *L = kx_host.L;
	int code = 0;

	if (t->state == T_FAILED || t->state == T_CANCELLED)
		return 1;
	if (!kx_host.main_is_tool || t->state != T_DONE)
		return 0;
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->result_ref);
	lua_rawgeti(L, -1, 1);
	if (lua_type(L, -1) == LUA_TNUMBER)
		code = (int)lua_tointeger(L, -1);
	else if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
		code = 1;
	lua_pop(L, 2);
	return code;
}

/* For the signal handler: the thread to interrupt when Lua is busy. */
lua_State *kx_running_thread(void)
{
	lua_State *co = kx_nested_innermost();
	if (co)
		return co;
	return current ? current->co : NULL;
}
