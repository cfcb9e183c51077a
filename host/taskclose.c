/*
 * taskclose.c - what a task's end runs besides its Lua code: the cancel
 * hooks bindings set on it (kx_on_cancel: told once, cancelled or not),
 * the pending <close> handlers of its thread, and the text of an error
 * value as lua.c prints it (for those handlers' errors and failed tasks).
 */
#include <stdlib.h>

#include "task.h"

struct kx_cancel_hook {
	void (*fn)(void *ud, int cancelled);
	void *ud;
	struct kx_cancel_hook *next;
};

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

void kx_task_end_hooks(kx_task *t, int cancelled)
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
	kx_task_end_hooks(t, 1);
}

static int tostring_call(lua_State *L)
{
	luaL_tolstring(L, 1, NULL);
	return 1;
}

/* A string or number as is, else what __tostring gives, else its type,
 * whatever the value's __tostring does. */
const char *kx_push_error_message(lua_State *L, int idx)
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

/* An error a handler raises is reported (the task's outcome stays what it
 * was). */
void kx_task_close_thread(kx_task *t, const void *was_marker, int was_ref,
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
		const char *msg = kx_push_error_message(L, -1);
		lua_pushfstring(L, "error in a <close> handler while %s: %s",
				while_doing, msg);
		kx_report(lua_tostring(L, -1));
		lua_pop(L, 2);
	}
	lua_pop(L, 1);
}
