/*
 * util.c - small services the host offers to bindings: classes, failures,
 * progress lines, where kxrun and its libraries live, hooks run
 * before exit and after a resume, and the host's state.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "host.h"

struct kx_host kx_host;

void kx_report(const char *msg)
{
	fflush(stdout);
	fprintf(stderr, "kxrun: %s\n", msg ? msg : "(no message)");
	fflush(stderr);
}


static int default_tostring(lua_State *L)
{
	lua_getfield(L, lua_upvalueindex(1), "__name");
	lua_pushfstring(L, "%s: %p", lua_tostring(L, -1), lua_topointer(L, 1));
	return 1;
}

/* __index of a class with getters or a fallback: upvalues are the methods
 * table, the getters table (name -> C function) and the fallback (or nil). */
static int class_index(lua_State *L)
{
	lua_settop(L, 2);
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) {
		lua_insert(L, 1);
		lua_call(L, 2, 1);
		return 1;
	}
	lua_pop(L, 1);
	switch (lua_type(L, lua_upvalueindex(3))) {
	case LUA_TFUNCTION:
		lua_pushvalue(L, lua_upvalueindex(3));
		lua_insert(L, 1);
		lua_call(L, 2, 1);
		return 1;
	case LUA_TTABLE:
		lua_gettable(L, lua_upvalueindex(3));
		return 1;
	default:
		lua_pushnil(L);
		return 1;
	}
}

static int has(const luaL_Reg *r, const char *name)
{
	for (; r && r->name; r++)
		if (strcmp(r->name, name) == 0)
			return 1;
	return 0;
}

void kx_defclass(lua_State *L, const struct kx_class *c)
{
	luaL_newmetatable(L, c->name);
	int mt = lua_gettop(L);
	lua_newtable(L);
	if (c->methods)
		luaL_setfuncs(L, c->methods, 0);
	for (const luaL_Reg *r = c->meta; r && r->name; r++) {
		if (strcmp(r->name, "__index") == 0)
			continue;
		lua_pushcfunction(L, r->func);
		lua_setfield(L, mt, r->name);
	}
	if (has(c->meta, "__gc") && !has(c->meta, "__close")) {
		lua_getfield(L, mt, "__gc");
		lua_setfield(L, mt, "__close");
	}
	if (!has(c->meta, "__tostring")) {
		lua_pushvalue(L, mt);
		lua_pushcclosure(L, default_tostring, 1);
		lua_setfield(L, mt, "__tostring");
	}
	int fallback = 0;
	for (const luaL_Reg *r = c->meta; r && r->name; r++)
		if (strcmp(r->name, "__index") == 0) {
			lua_pushcfunction(L, r->func);
			fallback = 1;
		}
	if (!c->getters && !fallback) {
		lua_setfield(L, mt, "__index");   /* the methods table itself */
		return;
	}
	lua_newtable(L);
	for (const luaL_Reg *r = c->getters; r && r->name; r++) {
		lua_pushcfunction(L, r->func);
		lua_setfield(L, -2, r->name);
	}
	if (fallback)
		lua_rotate(L, -2, 1);   /* methods, getters, fallback */
	else
		lua_pushnil(L);
	lua_pushcclosure(L, class_index, 3);
	lua_setfield(L, mt, "__index");
}

void kx_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
		 lua_CFunction gc)
{
	luaL_Reg meta[2] = {{"__gc", gc}, {NULL, NULL}};
	struct kx_class c = {tname, methods, NULL, gc ? meta : NULL};
	kx_defclass(L, &c);
}

/* ---- fields of option tables ------------------------------------------------ */

int kx_fielderror(lua_State *L, int arg, const char *k, const char *msg)
{
	return luaL_argerror(L, arg, lua_pushfstring(L, "field '%s': %s", k, msg));
}

/* Pushes field k of the table at arg (nil when arg is none or nil). */
static int getfield(lua_State *L, int arg, const char *k)
{
	if (lua_isnoneornil(L, arg)) {
		lua_pushnil(L);
		return LUA_TNIL;
	}
	luaL_checktype(L, arg, LUA_TTABLE);
	return lua_getfield(L, arg, k);
}

static void field_type_error(lua_State *L, int arg, const char *k,
			     const char *want)
{
	kx_fielderror(L, arg, k, lua_pushfstring(L, "%s expected, got %s", want,
						 luaL_typename(L, -1)));
}

lua_Number kx_optnumberfield(lua_State *L, int arg, const char *k,
			     lua_Number def)
{
	arg = lua_absindex(L, arg);
	if (getfield(L, arg, k) == LUA_TNIL) {
		lua_pop(L, 1);
		return def;
	}
	int ok;
	lua_Number n = lua_tonumberx(L, -1, &ok);
	if (!ok)
		field_type_error(L, arg, k, "number");
	lua_pop(L, 1);
	return n;
}

lua_Integer kx_optintegerfield(lua_State *L, int arg, const char *k,
			       lua_Integer def)
{
	arg = lua_absindex(L, arg);
	if (getfield(L, arg, k) == LUA_TNIL) {
		lua_pop(L, 1);
		return def;
	}
	int ok;
	lua_Integer n = lua_tointegerx(L, -1, &ok);
	if (!ok) {
		if (lua_isnumber(L, -1))
			kx_fielderror(L, arg, k, "number has no integer representation");
		field_type_error(L, arg, k, "integer");
	}
	lua_pop(L, 1);
	return n;
}

const char *kx_optstringfield(lua_State *L, int arg, const char *k,
			      const char *def)
{
	arg = lua_absindex(L, arg);
	int t = getfield(L, arg, k);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return def;
	}
	/* only a string: a number's text would live on the stack alone */
	if (t != LUA_TSTRING)
		field_type_error(L, arg, k, "string");
	const char *s = lua_tostring(L, -1);
	lua_pop(L, 1);   /* the table holds it */
	return s;
}

int kx_optbooleanfield(lua_State *L, int arg, const char *k, int def)
{
	arg = lua_absindex(L, arg);
	int t = getfield(L, arg, k);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return def;
	}
	if (t != LUA_TBOOLEAN)
		field_type_error(L, arg, k, "boolean");
	int b = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return b;
}

int kx_fail(lua_State *L, const char *fmt, ...)
{
	va_list ap;

	lua_pushnil(L);
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	return 2;
}

void kx_progress(const char *label, double done, double total)
{
	static double last;
	static int enabled = -1;
	struct timespec ts;

	if (enabled < 0) {
		const char *e = getenv("KXRUN_PROGRESS");
		enabled = isatty(2) && !(e && strcmp(e, "0") == 0);
	}
	if (!enabled)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double now = ts.tv_sec + ts.tv_nsec / 1e9;
	int end = total > 0 && done >= total;
	if (!end && now - last < 0.1)
		return;
	last = now;
	if (total > 0)
		fprintf(stderr, "\r\033[K%s  %.0f/%.0f  %3.0f%%%s", label, done,
			total, 100.0 * done / total, end ? "\n" : "");
	else
		fprintf(stderr, "\r\033[K%s  %.0f", label, done);
	fflush(stderr);
}

const char *kx_exe(void)
{
	static char path[PATH_MAX];

	if (!path[0]) {
		ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
		if (n < 0)
			n = 0;
		path[n] = 0;
	}
	return path;
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *kx_libdir(void)
{
	static char dir[PATH_MAX];
	char exe[PATH_MAX];
	const char *env = getenv("KXRUN_LIBDIR");

	if (env && *env)
		return env;
	if (dir[0])
		return dir;
	snprintf(exe, sizeof exe, "%s", kx_exe());
	char *d = dirname(exe);
	snprintf(dir, sizeof dir, "%s/build/lib", d);
	if (is_dir(dir))
		return dir;
	snprintf(dir, sizeof dir, "%s/lib", d);
	if (is_dir(dir))
		return dir;
	snprintf(dir, sizeof dir, "%s/../lib/kxrun", d);
	return dir;
}

/* ---- hooks before exit ---------------------------------------------------- */

struct exit_hook {
	void (*fn)(void *);
	void *ud;
	struct exit_hook *next;
};

static struct exit_hook *exit_hooks;

void kx_atexit(void (*fn)(void *ud), void *ud)
{
	struct exit_hook *h = malloc(sizeof *h);
	if (!h)
		return;
	h->fn = fn;
	h->ud = ud;
	h->next = exit_hooks;
	exit_hooks = h;
}

void kx_run_atexit(void)
{
	while (exit_hooks) {
		struct exit_hook *h = exit_hooks;
		exit_hooks = h->next;
		h->fn(h->ud);
		free(h);
	}
}

/* A resumed child: the hooks were the parent's, for the parent's things. */
void kx_forget_atexit(void *ud)
{
	(void)ud;
	while (exit_hooks) {
		struct exit_hook *h = exit_hooks;
		exit_hooks = h->next;
		free(h);
	}
}

/* ---- hooks after a resume ---------------------------------------------------- */

struct resume_hook {
	void (*fn)(void *);
	void *ud;
	struct resume_hook *next;
};

static struct resume_hook *resume_hooks, **resume_tail = &resume_hooks;

void kx_on_resume(void (*fn)(void *ud), void *ud)
{
	struct resume_hook *h = malloc(sizeof *h);
	if (!h)
		abort();   /* at start-up: nothing sensible goes on without it */
	h->fn = fn;
	h->ud = ud;
	h->next = NULL;
	*resume_tail = h;
	resume_tail = &h->next;
}

void kx_run_resume_hooks(void)
{
	for (struct resume_hook *h = resume_hooks; h; h = h->next)
		h->fn(h->ud);
}
