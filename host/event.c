/*
 * event.c - kx.event(): tasks waiting for something another task will say
 * happened.  ev:wait([timeout_s]) blocks until the next ev:notify() (true)
 * or the timeout (nil, "timeout"); notify wakes every task waiting then and
 * returns how many.  There is no lost wake-up between a check and a wait:
 * tasks only switch where they block.
 */
#include <stdlib.h>

#include "host.h"

#define EVENT_MT "kx.event"

struct ewaiter {
	kx_task *task;
	struct kx_event *ev;
	struct ewaiter *next;
};

struct kx_event {
	struct ewaiter *waiters;
};

static void ewaiter_cancel(void *ud)
{
	struct ewaiter *w = ud, **p;
	for (p = &w->ev->waiters; *p; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	free(w);
}

static int l_wait(lua_State *L)
{
	struct kx_event *ev = luaL_checkudata(L, 1, EVENT_MT);
	double timeout = luaL_optnumber(L, 2, -1);
	kx_task *t = kx_checktask(L, "wait");
	struct ewaiter *w = malloc(sizeof *w);
	if (!w)
		return luaL_error(L, "out of memory");
	w->task = t;
	w->ev = ev;
	w->next = ev->waiters;
	ev->waiters = w;
	return kx_await(L, t, timeout, ewaiter_cancel, w);
}

static int l_notify(lua_State *L)
{
	struct kx_event *ev = luaL_checkudata(L, 1, EVENT_MT);
	struct ewaiter *w = ev->waiters;
	lua_Integer n = 0;
	ev->waiters = NULL;
	while (w) {
		struct ewaiter *next = w->next;
		lua_pushboolean(kx_task_state(w->task), 1);
		kx_wake(w->task, 1);
		free(w);
		w = next;
		n++;
	}
	lua_pushinteger(L, n);
	return 1;
}

/* A collected event has no waiters: each waiting task holds it on its
 * stack.  Nothing to free but the list, which is then empty. */
static int l_event(lua_State *L)
{
	struct kx_event *ev = lua_newuserdatauv(L, sizeof *ev, 0);
	ev->waiters = NULL;
	luaL_setmetatable(L, EVENT_MT);
	return 1;
}

int kx_open_event(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"wait", l_wait},
		{"notify", l_notify},
		{NULL, NULL},
	};
	kx_newclass(L, EVENT_MT, methods, NULL);
	lua_pop(L, 1);
	lua_pushcfunction(L, l_event);
	lua_setfield(L, -2, "event");
	return 0;
}
