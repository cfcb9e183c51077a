/*
 * lstate.c - which ledger the kx.gpu binding uses: the default state
 * directory, or the one gpu.state_dir(dir) set for this process (tests and
 * experiments that must not touch the machine's).
 */
#include "lgpu.h"

#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

static char dir_override[4096];

kxgpu_ledger *kxgpu_lua_ledger(char *err, size_t errlen)
{
	static kxgpu_ledger *cached;
	static char cached_for[4096];  /* as asked: the ledger's is absolute */
	char dir[4096];

	if (dir_override[0])
		snprintf(dir, sizeof dir, "%s", dir_override);
	else
		kxgpu_default_dir(dir, sizeof dir);
	if (cached && strcmp(cached_for, dir) == 0)
		return cached;
	kxgpu_ledger_close(cached);
	cached = NULL;
	if (kxgpu_ledger_open(&cached, dir, err, errlen) != 0)
		return NULL;
	snprintf(cached_for, sizeof cached_for, "%s", dir);
	return cached;
}

/* gpu.state_dir() -> the ledger directory; gpu.state_dir(path) uses path
 * (the ledger directory itself) from now on; gpu.state_dir(false) goes back
 * to the default. */
int kxgpu_state_dir(lua_State *L)
{
	char dir[4096];

	if (lua_type(L, 1) == LUA_TSTRING) {
		size_t n;
		const char *d = lua_tolstring(L, 1, &n);
		luaL_argcheck(L, n > 0 && n < 4000 && strlen(d) == n, 1,
		              "a directory name");
		snprintf(dir_override, sizeof dir_override, "%s", d);
	} else if (lua_type(L, 1) == LUA_TBOOLEAN && !lua_toboolean(L, 1)) {
		dir_override[0] = 0;
	} else if (!lua_isnoneornil(L, 1)) {  /* not a number turned into ./5 */
		return luaL_typeerror(L, 1, "string or false");
	}
	if (dir_override[0])
		lua_pushstring(L, dir_override);
	else
		lua_pushstring(L, kxgpu_default_dir(dir, sizeof dir));
	return 1;
}
