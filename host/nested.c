/*
 * nested.c - user coroutines inside tasks: coroutine.resume/wrap that pass
 * the host's await marker up to the task (so a blocking call works inside
 * them) and hand the wake values back down, and the innermost coroutine
 * running now, for the signal handler.
 */
#include "host.h"

/* The coroutines resumed inside the running task, innermost last, so that a
 * signal can interrupt a busy loop in a nested coroutine (a hook set on the
 * task's own thread would never run). */
#define NESTED_MAX 200   /* Lua's own limit on nested C calls */
static lua_State *nested[NESTED_MAX];
static int nnested;

static int l_enter(lua_State *L)
{
	if (nnested < NESTED_MAX)
		nested[nnested] = lua_tothread(L, 1);
	nnested++;
	return 0;
}

static int l_leave(lua_State *L)
{
	if (nnested > 0)
		nnested--;
	return lua_gettop(L);
}

static const char coroutine_shim[] =
	"local marker, enter, leave = ...\n"
	"local create, resume0, yield, status = coroutine.create, "
	"coroutine.resume, coroutine.yield, coroutine.status\n"
	"local function resume(co, ...) enter(co) return leave(resume0(co, ...)) end\n"
	"local function pass(co, ok, ...)\n"
	"  if ok and select('#', ...) == 1 and ... == marker and "
	"status(co) == 'suspended' then\n"
	"    return pass(co, resume(co, yield(marker)))\n"
	"  end\n"
	"  return ok, ...\n"
	"end\n"
	"local function unwrap(ok, ...)\n"
	"  if not ok then error((...), 0) end\n"
	"  return ...\n"
	"end\n"
	"coroutine.resume = function(co, ...) return pass(co, resume(co, ...)) end\n"
	"coroutine.wrap = function(f)\n"
	"  local co = create(f)\n"
	"  return function(...) return unwrap(pass(co, resume(co, ...))) end\n"
	"end\n";

void kx_nested_init(lua_State *L, void *await_marker)
{
	if (luaL_loadbuffer(L, coroutine_shim, sizeof coroutine_shim - 1,
			    "=[kx coroutine]") != LUA_OK)
		lua_error(L);
	lua_pushlightuserdata(L, await_marker);
	lua_pushcfunction(L, l_enter);
	lua_pushcfunction(L, l_leave);
	lua_call(L, 3, 0);
}

/* Async-signal-safe: reads two plain variables. */
lua_State *kx_nested_innermost(void)
{
	int n = nnested < NESTED_MAX ? nnested : NESTED_MAX;
	return n > 0 ? nested[n - 1] : NULL;
}
