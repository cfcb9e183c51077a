/*
 * searcher.c - where `require` looks.
 *
 * 1. package.preload: native modules (kx.gpu, ...).
 * 2. the stdlib compiled into the binary (or $KXRUN_STDLIB/<name>.lua).
 * 3. package.path, which kxrun prefixes with: the script's directory,
 *    each directory of $KXRUN_PATH, the per-user directory
 *    ($XDG_DATA_HOME or ~/.local/share)/kxrun/lua, and luarocks' per-user
 *    Lua 5.4 tree (~/.luarocks); the system trees of lua5.4 and luarocks
 *    (/usr/local/share/lua/5.4, /usr/share/lua/5.4) stay as Lua has them.
 */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"
#include "stdlib_embed.h"

extern const luaL_Reg kx_native_modules[];

static const struct kx_embedded *find_embedded(const char *name)
{
	for (const struct kx_embedded *e = kx_stdlib; e->module; e++)
		if (strcmp(e->module, name) == 0)
			return e;
	return NULL;
}

/* With KXRUN_STDLIB=dir: dir/a/b.lua or dir/a/b/init.lua for "a.b". */
static int disk_path(const char *dir, const char *name, char *out, size_t n)
{
	char rel[PATH_MAX];
	struct stat st;
	snprintf(rel, sizeof rel, "%s", name);
	for (char *c = rel; *c; c++)
		if (*c == '.')
			*c = '/';
	snprintf(out, n, "%s/%s.lua", dir, rel);
	if (stat(out, &st) == 0)
		return 1;
	snprintf(out, n, "%s/%s/init.lua", dir, rel);
	return stat(out, &st) == 0;
}

static int stdlib_searcher(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const char *dir = getenv("KXRUN_STDLIB");
	char path[PATH_MAX];

	if (dir && *dir) {
		if (!disk_path(dir, name, path, sizeof path)) {
			lua_pushfstring(L, "no file '%s/%s.lua' (KXRUN_STDLIB)",
					dir, name);
			return 1;
		}
		if (luaL_loadfile(L, path) != LUA_OK)
			return luaL_error(L, "error loading module '%s' from "
					  "file '%s':\n\t%s", name, path,
					  lua_tostring(L, -1));
		lua_pushstring(L, path);
		return 2;
	}
	const struct kx_embedded *e = find_embedded(name);
	if (!e) {
		lua_pushfstring(L, "no module '%s' in kxrun's stdlib", name);
		return 1;
	}
	if (luaL_loadbuffer(L, e->source, e->len, e->chunkname) != LUA_OK)
		return luaL_error(L, "error loading module '%s':\n\t%s", name,
				  lua_tostring(L, -1));
	lua_pushstring(L, e->chunkname + 1);
	return 2;
}

int kx_has_tool(lua_State *L, const char *name)
{
	char mod[256], path[PATH_MAX];
	const char *dir = getenv("KXRUN_STDLIB");
	(void)L;
	if (strchr(name, '.') || strchr(name, '/') || strlen(name) > 64)
		return 0;
	snprintf(mod, sizeof mod, "kx.tools.%s", name);
	if (dir && *dir)
		return disk_path(dir, mod, path, sizeof path);
	return find_embedded(mod) != NULL;
}

/* Pushes "d/?.lua;d/?/init.lua;" for each directory of a colon list. */
static void add_dirs(luaL_Buffer *b, const char *list, const char *pat)
{
	const char *p = list;
	while (p && *p) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > 0) {
			for (const char *q = pat; *q; q++) {
				if (*q == '@')
					luaL_addlstring(b, p, len);
				else
					luaL_addchar(b, *q);
			}
		}
		p = end ? end + 1 : NULL;
	}
}

static void prefix_path(lua_State *L, const char *field, const char *dirs,
			const char *pat)
{
	luaL_Buffer b;
	lua_getglobal(L, "package");
	luaL_buffinit(L, &b);
	add_dirs(&b, dirs, pat);
	lua_getfield(L, -2, field);
	luaL_addvalue(&b);
	luaL_pushresult(&b);
	lua_setfield(L, -2, field);
	lua_pop(L, 1);
}

void kx_setup_package(lua_State *L, const char *script)
{
	char dirs[4 * PATH_MAX] = "", tmp[PATH_MAX];
	const char *home = getenv("HOME");
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *kxpath = getenv("KXRUN_PATH");
	size_t used = 0;

#define ADD(...) used += (size_t)snprintf(dirs + used, sizeof dirs - used, __VA_ARGS__); \
	if (used >= sizeof dirs) used = sizeof dirs - 1

	if (script && strcmp(script, "-") != 0) {
		snprintf(tmp, sizeof tmp, "%s", script);
		ADD("%s:", dirname(tmp));
	}
	if (kxpath && *kxpath) {
		ADD("%s:", kxpath);
	}
	if (xdg && *xdg) {
		ADD("%s/kxrun/lua:", xdg);
	} else if (home) {
		ADD("%s/.local/share/kxrun/lua:", home);
	}
	if (home) {
		ADD("%s/.luarocks/share/lua/5.4:", home);
	}
#undef ADD
	prefix_path(L, "path", dirs, "@/?.lua;@/?/init.lua;");
	if (home) {
		snprintf(tmp, sizeof tmp, "%s/.luarocks/lib/lua/5.4", home);
		prefix_path(L, "cpath", tmp, "@/?.so;");
	}

	/* native modules in package.preload */
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	for (const luaL_Reg *m = kx_native_modules; m->name; m++) {
		lua_pushcfunction(L, m->func);
		lua_setfield(L, -2, m->name);
	}
	lua_pop(L, 1);

	/* the stdlib searcher right after preload's */
	lua_getfield(L, -1, "searchers");
	lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
	for (lua_Integer i = n; i >= 2; i--) {
		lua_rawgeti(L, -1, i);
		lua_rawseti(L, -2, i + 1);
	}
	lua_pushcfunction(L, stdlib_searcher);
	lua_rawseti(L, -2, 2);
	lua_pop(L, 2);
}

/* Names of the built-in tools, for --help. */
void kx_push_tools(lua_State *L)
{
	lua_newtable(L);
	int n = 0;
	for (const struct kx_embedded *e = kx_stdlib; e->module; e++)
		if (strncmp(e->module, "kx.tools.", 9) == 0) {
			lua_pushstring(L, e->module + 9);
			lua_rawseti(L, -2, ++n);
		}
}
