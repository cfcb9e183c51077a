/*
 * task.c - Lua coroutines as tasks, driven by the libuv loop: the
 * scheduler.
 *
 * A task is a Lua thread plus a little C state (task.h).  It runs until it
 * waits (kx_await), sleeps, yields, or ends.  Wakes go through a ready queue
 * drained from an idle handle, so a task never runs inside another task's C
 * call.  This file holds the queue, running a task, waiting and waking
 * (timeouts and sleeps on a timer of the task's), and a task's end: done,
 * failed or cancelled, with the tasks waiting for it woken.  Its cancel
 * hooks and <close> handlers are taskclose.c's; the Lua class tasklib.c's.
 *
 * Blocking calls may happen inside user coroutines nested in a task: the
 * coroutine.resume/wrap replacements of nested.c pass the host's await
 * marker up to the task and hand the wake values back down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

static const char *const state_names[] = {
	"ready", "running", "waiting", "done", "failed", "cancelled",
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

const char *kx_task_status(kx_task *t)
{
	return state_names[t->state];
}

/* ---- the ready queue ---------------------------------------------------------- */

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

/* ---- waiting and waking ------------------------------------------------------ */

static void task_stop_timer(kx_task *t)
{
	if (t->timer && t->timer_mode != TM_NONE)
		uv_timer_stop(t->timer);
	t->timer_mode = TM_NONE;
}

static void on_task_timer(uv_timer_t *h)
{
	kx_task *t = h->data;
	enum kx_timer_mode mode = t->timer_mode;

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

static void task_start_timer(kx_task *t, double seconds, enum kx_timer_mode mode)
{
	if (t->timer && t->timer->loop != kx_host.loop) {
		/* a resumed child: the timer was the parent's loop's, which
		 * no longer refers to it (kx.rfork's hostloop.c) */
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

int kx_task_sleep(lua_State *L, kx_task *t, double seconds)
{
	t->state = T_WAITING;
	t->cancel = NULL;
	task_start_timer(t, seconds, TM_SLEEP);
	lua_pushlightuserdata(L, &await_marker);
	return lua_yield(L, 1);
}

/* ---- a task's start and end ------------------------------------------------ */

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
	luaL_setmetatable(L, KX_TASK_MT);
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
	struct kx_waiter *w = t->waiters;

	t->waiters = NULL;
	while (w) {
		struct kx_waiter *next = w->next;
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

static void task_finish(kx_task *t, enum kx_task_state st)
{
	lua_State *L = kx_host.L;

	task_stop_timer(t);
	t->state = st;
	t->cancel = NULL;
	kx_task_end_hooks(t, 0);
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

static void task_fail(kx_task *t)
{
	lua_State *L = kx_host.L, *co = t->co;

	if (lua_touserdata(co, -1) == &cancel_marker) {
		kx_task_end_hooks(t, 1);
		kx_task_close_thread(t, &cancel_marker, LUA_NOREF, "cancelling a task");
		task_finish(t, T_CANCELLED);
		return;
	}
	/* a copy of the error value: the <close> handlers still get it */
	lua_checkstack(co, 1);
	lua_pushvalue(co, -1);
	lua_xmove(co, L, 1);
	int err = lua_gettop(L);
	const char *msg = kx_push_error_message(L, err);
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
	kx_task_close_thread(t, NULL, t->result_ref, "ending a failed task");
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
	kx_task_end_hooks(t, 1);
	kx_task *prev = current;
	current = t;          /* __close handlers run as this task */
	kx_task_close_thread(t, NULL, LUA_NOREF, "cancelling a task");
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
		kx_task **ud = luaL_testudata(L, -1, KX_TASK_MT);
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

/* ---- memory and the loop --------------------------------------------------- */

static void timer_free(uv_handle_t *h)
{
	free(h);
}

void kx_task_collect(kx_task *t)
{
	luaL_unref(kx_host.L, LUA_REGISTRYINDEX, t->result_ref);
	luaL_unref(kx_host.L, LUA_REGISTRYINDEX, t->trace_ref);
	if (t->timer && t->timer->loop != kx_host.loop)
		free(t->timer);   /* of a retired loop: nothing refers to it */
	else if (t->timer)
		uv_close((uv_handle_t *)t->timer, timer_free);
	if (t->queued)
		t->collected = 1;
	else
		free(t);
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
	uv_idle_init(kx_host.loop, &ready_idle);
	kx_on_resume(tasks_resumed, NULL);
	kx_nested_init(L, &await_marker);
}
