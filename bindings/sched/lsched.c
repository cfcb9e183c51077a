/*
 * lsched.c - kx.sched.core: the policy for Lua.  The backends (the Lua half
 * in stdlib/kx/sched.lua) keep their nodes as tables and ask here.
 */
#include <stdlib.h>

#include "kx.h"
#include "policy.h"

/* core.pick(nodes, units, weigher, order) -> index | nil
 * nodes: array of {id=, capacity=, parallel=, running=, used=, alive=} */
static int l_pick(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer units = luaL_checkinteger(L, 2);
	int w = sched_weigher_parse(luaL_optstring(L, 3, NULL));
	const char *order = luaL_optstring(L, 4, "min");
	if (w < 0)
		return luaL_argerror(L, 3, "weigher must be instances or vcpu");
	int order_max = order[0] == 'm' && order[1] == 'a';
	int n = (int)lua_rawlen(L, 1);
	struct sched_node *nodes = lua_newuserdatauv(L, sizeof *nodes * (size_t)(n + 1), 0);
	for (int i = 0; i < n; i++) {
		lua_rawgeti(L, 1, i + 1);
		luaL_checktype(L, -1, LUA_TTABLE);
		lua_getfield(L, -1, "id");
		nodes[i].id = luaL_checkstring(L, -1);
		lua_pop(L, 1);   /* the node table keeps the string */
		lua_getfield(L, -1, "capacity");
		nodes[i].capacity = (int)luaL_checkinteger(L, -1);
		lua_getfield(L, -2, "parallel");
		nodes[i].parallel = (int)luaL_optinteger(L, -1, 0);
		lua_getfield(L, -3, "running");
		nodes[i].running = (int)luaL_optinteger(L, -1, 0);
		lua_getfield(L, -4, "used");
		nodes[i].used = (int)luaL_optinteger(L, -1, 0);
		lua_getfield(L, -5, "alive");
		nodes[i].alive = lua_isnil(L, -1) || lua_toboolean(L, -1);
		lua_pop(L, 6);
	}
	int i = sched_pick(nodes, n, (int)units, (enum sched_weigher)w, order_max);
	if (i >= 0) {
		lua_pushinteger(L, i + 1);
		return 1;
	}
	lua_pushnil(L);
	lua_pushboolean(L, sched_ever_feasible(nodes, n, (int)units));
	return 2;
}

/* core.capacity(capacity, allocation_ratio, cores) */
static int l_capacity(lua_State *L)
{
	lua_pushinteger(L, sched_capacity((int)luaL_optinteger(L, 1, 0),
					  luaL_optnumber(L, 2, 1.0),
					  (int)luaL_checkinteger(L, 3)));
	return 1;
}

int luaopen_kx_sched_core(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"pick", l_pick},
		{"capacity", l_capacity},
		{NULL, NULL},
	};
	luaL_newlib(L, fns);
	return 1;
}
