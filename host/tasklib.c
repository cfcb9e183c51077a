/*
 * tasklib.c - tasks' Lua face: the kx.task class (task:wait, :cancel,
 * :status, <close>), kx.go, kx.sleep and kx.current; the main task's exit
 * status, the thread a signal interrupts, and the tasks of a resumed
 * child.  The scheduler behind them is task.c.
 */
#include <stdlib.h>

#include "task.h"

static kx_task **checktask(lua_State *L, int i)
{
	return luaL_checkudata(L, i, KX_TASK_MT);
}

static void waiter_cancel(void *ud)
{
	struct kx_waiter *w = ud, **p;

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
	struct kx_waiter *w = malloc(sizeof *w);
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
	lua_pushstring(L, kx_task_status(*checktask(L, 1)));
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
	kx_task_collect(t);
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
			t ? kx_task_status(t) : "collected");
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
	return kx_task_sleep(L, kx_checktask(L, "sleep"), s);
}

static int l_current(lua_State *L)
{
	kx_task *t = kx_current();
	if (!t)
		return 0;
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
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

void kx_tasklib_init(lua_State *L)
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
	kx_defclass(L, &(struct kx_class){KX_TASK_MT, methods, NULL, meta});
	lua_pop(L, 1);
}

/* t (live) becomes the main task.  Its userdata stays referenced for the
 * host's life: the host asks about the main task after it ended, and its
 * memory goes with the userdata's collection. */
void kx_set_main(kx_task *t)
{
	lua_State *L = kx_host.L;
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
	lua_setfield(L, LUA_REGISTRYINDEX, "kx.main_task");
	kx_host.main = t;
}

/* A resumed child, after the hooks: the calling task becomes the main one,
 * every other task is cancelled. */
void kx_tasks_after_resume(void)
{
	if (kx_current() != kx_host.main) {
		kx_set_main(kx_current());
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
	return kx_current() ? kx_current()->co : NULL;
}
