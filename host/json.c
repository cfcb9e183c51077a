/*
 * json.c - kx.json over jansson.
 *
 * Lua integers stay integers (64-bit); floats are written with 15
 * significant digits when that gives them back exactly, else 17.
 * A table is an array when its keys are exactly 1..n (n > 0) or when it
 * carries kx.json.array's metatable (so [] survives a round trip); an empty
 * table is an object.  JSON null is kx.json.null.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "host.h"

#define ARRAY_MT "kx.json.array"
#define MAX_DEPTH 200

static char null_marker;
static int needs_17_digits; /* a float of the value does not survive 15 */

static int is_array_mt(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return 0;
	luaL_getmetatable(L, ARRAY_MT);
	int r = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return r;
}

/* n when t's keys are exactly 1..n, else -1 */
static lua_Integer array_length(lua_State *L, int idx)
{
	lua_Integer n = 0, max = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TNUMBER || !lua_isinteger(L, -1)) {
			lua_pop(L, 1);
			return -1;
		}
		lua_Integer k = lua_tointeger(L, -1);
		if (k < 1) {
			lua_pop(L, 1);
			return -1;
		}
		if (k > max)
			max = k;
		n++;
	}
	return n == max ? n : -1;
}

static json_t *to_json(lua_State *L, int idx, int depth, char *err, size_t n)
{
	idx = lua_absindex(L, idx);
	if (depth > MAX_DEPTH) {
		snprintf(err, n, "nesting deeper than %d (a cycle?)", MAX_DEPTH);
		return NULL;
	}
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return json_null();
	case LUA_TBOOLEAN:
		return json_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			return json_integer((json_int_t)lua_tointeger(L, idx));
		{
			double d = lua_tonumber(L, idx);
			if (!isfinite(d)) {
				snprintf(err, n, "cannot encode %g", d);
				return NULL;
			}
			char buf[32];
			snprintf(buf, sizeof buf, "%.15g", d);
			if (strtod(buf, NULL) != d)
				needs_17_digits = 1;
			return json_real(d);
		}
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		json_t *j = json_stringn(s, len);
		if (!j)
			snprintf(err, n, "string is not valid UTF-8");
		return j;
	}
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) == &null_marker)
			return json_null();
		break;
	case LUA_TTABLE: {
		lua_Integer len = array_length(L, idx);
		if (len > 0 || is_array_mt(L, idx)) {
			if (len < 0) {
				snprintf(err, n, "array has non-sequence keys");
				return NULL;
			}
			json_t *a = json_array();
			for (lua_Integer i = 1; i <= len; i++) {
				lua_rawgeti(L, idx, i);
				json_t *v = to_json(L, -1, depth + 1, err, n);
				lua_pop(L, 1);
				if (!v) {
					json_decref(a);
					return NULL;
				}
				json_array_append_new(a, v);
			}
			return a;
		}
		json_t *o = json_object();
		lua_pushnil(L);
		while (lua_next(L, idx)) {
			char kbuf[64];
			const char *key = kbuf;
			if (lua_type(L, -2) == LUA_TSTRING) {
				key = lua_tostring(L, -2);
			} else if (lua_type(L, -2) == LUA_TNUMBER &&
				   lua_isinteger(L, -2)) {
				snprintf(kbuf, sizeof kbuf, LUA_INTEGER_FMT,
					 lua_tointeger(L, -2));
			} else if (lua_type(L, -2) == LUA_TNUMBER) {
				snprintf(kbuf, sizeof kbuf, "%.17g",
					 (double)lua_tonumber(L, -2));
			} else {
				snprintf(err, n, "object key is a %s",
					 luaL_typename(L, -2));
				json_decref(o);
				lua_pop(L, 2);
				return NULL;
			}
			json_t *v = to_json(L, -1, depth + 1, err, n);
			if (!v) {
				json_decref(o);
				lua_pop(L, 2);
				return NULL;
			}
			json_object_set_new(o, key, v);
			lua_pop(L, 1);
		}
		return o;
	}
	default:
		break;
	}
	snprintf(err, n, "cannot encode a %s", luaL_typename(L, idx));
	return NULL;
}

static void push_json(lua_State *L, json_t *j, int depth)
{
	luaL_checkstack(L, 3, "JSON too deeply nested");
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *v;
		lua_createtable(L, 0, (int)json_object_size(j));
		json_object_foreach(j, k, v) {
			push_json(L, v, depth + 1);
			lua_setfield(L, -2, k);
		}
		break;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *v;
		lua_createtable(L, (int)json_array_size(j), 0);
		json_array_foreach(j, i, v) {
			push_json(L, v, depth + 1);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		luaL_setmetatable(L, ARRAY_MT);
		break;
	}
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(j), json_string_length(j));
		break;
	case JSON_INTEGER:
		lua_pushinteger(L, (lua_Integer)json_integer_value(j));
		break;
	case JSON_REAL:
		lua_pushnumber(L, json_real_value(j));
		break;
	case JSON_TRUE:
		lua_pushboolean(L, 1);
		break;
	case JSON_FALSE:
		lua_pushboolean(L, 0);
		break;
	case JSON_NULL:
		lua_pushlightuserdata(L, &null_marker);
		break;
	}
}

/* kx.json.encode(v [, {indent = n, sort = bool}]) -> string */
static int l_encode(lua_State *L)
{
	char err[256] = "";
	size_t flags = JSON_ENCODE_ANY;
	luaL_checkany(L, 1);
	if (lua_istable(L, 2)) {
		lua_getfield(L, 2, "indent");
		int indent = (int)luaL_optinteger(L, -1, 0);
		lua_getfield(L, 2, "sort");
		int sort = lua_isnil(L, -1) || lua_toboolean(L, -1);
		lua_pop(L, 2);
		if (indent > 0)
			flags |= JSON_INDENT(indent > 31 ? 31 : indent);
		else
			flags |= JSON_COMPACT;
		if (sort)
			flags |= JSON_SORT_KEYS;
	} else {
		flags |= JSON_COMPACT | JSON_SORT_KEYS;
	}
	lua_settop(L, 1);
	needs_17_digits = 0;
	json_t *j = to_json(L, 1, 0, err, sizeof err);
	if (!j)
		return luaL_error(L, "kx.json.encode: %s", err);
	/* the shortest of 15 or 17 digits that gives every float back */
	flags |= JSON_REAL_PRECISION(needs_17_digits ? 17 : 15);
	char *s = json_dumps(j, flags);
	json_decref(j);
	if (!s)
		return luaL_error(L, "kx.json.encode: out of memory");
	lua_pushstring(L, s);
	free(s);
	return 1;
}

/* kx.json.decode(s) -> value | nil, "line L column C: message" */
static int l_decode(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	json_error_t e;
	json_t *j = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!j)
		return kx_fail(L, "line %d column %d: %s", e.line, e.column,
			       e.text);
	push_json(L, j, 0);
	json_decref(j);
	return 1;
}

/* kx.json.array(t): mark t as an array (so an empty one encodes as []). */
static int l_array(lua_State *L)
{
	if (lua_isnoneornil(L, 1))
		lua_newtable(L);
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	luaL_setmetatable(L, ARRAY_MT);
	return 1;
}

int kx_open_json(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"encode", l_encode},
		{"decode", l_decode},
		{"array", l_array},
		{NULL, NULL},
	};
	luaL_newmetatable(L, ARRAY_MT);
	lua_pop(L, 1);
	luaL_newlib(L, fns);
	lua_pushlightuserdata(L, &null_marker);
	lua_setfield(L, -2, "null");
	lua_setfield(L, -2, "json");
	return 0;
}
