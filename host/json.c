/*
 * json.c - kx.json over jansson.
 *
 * Lua integers stay integers (64-bit); floats are written with 15
 * significant digits when that gives them back exactly, else 17.
 * A table is an array when its keys are exactly 1..n (n > 0) or when it
 * carries kx.json.array's metatable (so [] survives a round trip); an empty
 * table is an object.  JSON null is kx.json.null.  Strings and keys are
 * taken whole, NUL bytes included.
 *
 * Nesting is limited to KX_JSON_MAX_DEPTH levels of arrays and objects both
 * ways, so deep data is refused with a message instead of exhausting a stack;
 * a table met again inside itself is a cycle, reported with its path.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "host.h"

#define ARRAY_MT "kx.json.array"
#define KX_JSON_MAX_DEPTH 2000

/* jansson's parser refuses input deeper than this on its own (a constant
 * of its build); the limit above must stay under it to be the one users
 * meet. */
#if KX_JSON_MAX_DEPTH >= JSON_PARSER_MAX_DEPTH
#error "KX_JSON_MAX_DEPTH must be below jansson's JSON_PARSER_MAX_DEPTH"
#endif

static char null_marker;

/* One step of the path from the encoded value to where encoding is. */
struct step {
	int key;             /* stack index of the key, or 0 for an index */
	lua_Integer index;
};

struct encoder {
	lua_State *L;
	int seen;            /* stack index: tables on the current path */
	int depth;
	int needs_17_digits; /* a float of the value does not survive 15 */
	char err[256];
	struct step path[KX_JSON_MAX_DEPTH + 1];
};

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

/* Pushes the path to the current depth, as Lua would index it: a.b[2]["x y"]. */
static void push_path(struct encoder *e)
{
	lua_State *L = e->L;
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 0; i < e->depth; i++) {
		const struct step *s = &e->path[i];
		if (!s->key) {
			lua_pushfstring(L, "[%I]", (LUAI_UACINT)s->index);
		} else if (lua_type(L, s->key) == LUA_TSTRING) {
			size_t len;
			const char *k = lua_tolstring(L, s->key, &len);
			size_t j = 0;
			int ident = len > 0 && !(k[0] >= '0' && k[0] <= '9');
			for (; ident && j < len; j++)
				ident = k[j] == '_' || (k[j] >= 'a' && k[j] <= 'z') ||
					(k[j] >= 'A' && k[j] <= 'Z') ||
					(k[j] >= '0' && k[j] <= '9');
			if (ident) {
				lua_pushfstring(L, "%s%s", i ? "." : "", k);
			} else {
				/* %q quoting through string.format keeps NULs */
				lua_getglobal(L, "string");
				lua_getfield(L, -1, "format");
				lua_remove(L, -2);
				lua_pushliteral(L, "[%q]");
				lua_pushvalue(L, s->key);
				lua_call(L, 2, 1);
			}
		} else {
			lua_pushvalue(L, s->key);
			lua_pushfstring(L, "[%s]", lua_tostring(L, -1));
			lua_remove(L, -2);
		}
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
}

static json_t *to_json(struct encoder *e, int idx);

static json_t *table_to_json(struct encoder *e, int idx)
{
	lua_State *L = e->L;

	lua_pushvalue(L, idx);
	if (lua_rawget(L, e->seen) != LUA_TNIL) {
		lua_pop(L, 1);
		push_path(e);
		snprintf(e->err, sizeof e->err, "cycle at key %s (a table that "
			 "contains itself cannot be encoded)", lua_tostring(L, -1));
		lua_pop(L, 1);
		return NULL;
	}
	lua_pop(L, 1);
	if (e->depth >= KX_JSON_MAX_DEPTH) {
		snprintf(e->err, sizeof e->err, "nested deeper than %d levels "
			 "(kx.json's limit)", KX_JSON_MAX_DEPTH);
		return NULL;
	}
	lua_pushvalue(L, idx);
	lua_pushboolean(L, 1);
	lua_rawset(L, e->seen);

	json_t *out;
	int ok = 1;   /* on failure the stack is left as it is: the caller raises */
	struct step *step = &e->path[e->depth++];
	lua_Integer len = array_length(L, idx);
	if (len > 0 || is_array_mt(L, idx)) {
		if (len < 0) {
			snprintf(e->err, sizeof e->err, "array has non-sequence keys");
			return NULL;
		}
		out = json_array();
		step->key = 0;
		for (lua_Integer i = 1; out && ok && i <= len; i++) {
			step->index = i;
			lua_rawgeti(L, idx, i);
			json_t *v = to_json(e, -1);
			lua_pop(L, 1);
			ok = v && json_array_append_new(out, v) == 0;
		}
	} else {
		out = json_object();
		lua_pushnil(L);
		while (out && ok && lua_next(L, idx)) {
			char kbuf[64];
			const char *key = kbuf;
			size_t klen;
			step->key = lua_absindex(L, -2);
			if (lua_type(L, -2) == LUA_TSTRING) {
				key = lua_tolstring(L, -2, &klen);
			} else if (lua_type(L, -2) == LUA_TNUMBER &&
				   lua_isinteger(L, -2)) {
				klen = (size_t)snprintf(kbuf, sizeof kbuf,
					LUA_INTEGER_FMT, lua_tointeger(L, -2));
			} else if (lua_type(L, -2) == LUA_TNUMBER) {
				klen = (size_t)snprintf(kbuf, sizeof kbuf, "%.17g",
					(double)lua_tonumber(L, -2));
			} else {
				snprintf(e->err, sizeof e->err,
					 "object key is a %s", luaL_typename(L, -2));
				ok = 0;
				break;
			}
			json_t *v = to_json(e, -1);
			if (!v) {
				ok = 0;
				break;
			}
			if (json_object_setn_new(out, key, klen, v) < 0) {
				snprintf(e->err, sizeof e->err,
					 "object key is not valid UTF-8");
				ok = 0;
			}
			lua_pop(L, 1);
		}
	}
	e->depth--;
	if (!out || !ok) {
		json_decref(out);
		return NULL;
	}
	lua_pushvalue(L, idx);
	lua_pushnil(L);
	lua_rawset(L, e->seen);
	return out;
}

static json_t *to_json(struct encoder *e, int idx)
{
	lua_State *L = e->L;

	luaL_checkstack(L, 8, "kx.json.encode: value nested too deeply");
	idx = lua_absindex(L, idx);
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
				snprintf(e->err, sizeof e->err, "cannot encode %g", d);
				return NULL;
			}
			char buf[32];
			snprintf(buf, sizeof buf, "%.15g", d);
			if (strtod(buf, NULL) != d)
				e->needs_17_digits = 1;
			return json_real(d);
		}
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		json_t *j = json_stringn(s, len);
		if (!j)
			snprintf(e->err, sizeof e->err, "string is not valid UTF-8");
		return j;
	}
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) == &null_marker)
			return json_null();
		break;
	case LUA_TTABLE:
		return table_to_json(e, idx);
	default:
		break;
	}
	snprintf(e->err, sizeof e->err, "cannot encode a %s", luaL_typename(L, idx));
	return NULL;
}

/* How decoded strings are pushed.  jansson's parser refuses NUL bytes in
 * object keys (values are fine), so such input is parsed a second time
 * with every \u0000 written as a private-use character that the result is
 * then scanned for; the count of those found must equal the count written,
 * else the input had that character of its own and another is tried. */
struct decoder {
	lua_State *L;
	char nul_as[4];      /* UTF-8 of the stand-in for NUL, or "" */
	size_t nul_found;
};

static void push_string(struct decoder *d, const char *s, size_t len)
{
	const char *hit;
	if (!d->nul_as[0] || !(hit = memmem(s, len, d->nul_as, 3))) {
		lua_pushlstring(d->L, s, len);
		return;
	}
	luaL_Buffer b;
	luaL_buffinit(d->L, &b);
	do {
		luaL_addlstring(&b, s, (size_t)(hit - s));
		luaL_addchar(&b, '\0');
		d->nul_found++;
		len -= (size_t)(hit - s) + 3;
		s = hit + 3;
	} while ((hit = memmem(s, len, d->nul_as, 3)));
	luaL_addlstring(&b, s, len);
	luaL_pushresult(&b);
}

/* Pushes j as a Lua value; 0, or -1 when it nests deeper than the limit
 * (nothing is left pushed then). */
static int push_json(struct decoder *d, json_t *j, int depth)
{
	lua_State *L = d->L;
	luaL_checkstack(L, 4, "kx.json.decode: value nested too deeply");
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		const char *k;
		size_t klen;
		json_t *v;
		if (depth >= KX_JSON_MAX_DEPTH)
			return -1;
		lua_createtable(L, 0, (int)json_object_size(j));
		json_object_keylen_foreach(j, k, klen, v) {
			push_string(d, k, klen);
			if (push_json(d, v, depth + 1) < 0) {
				lua_pop(L, 2);
				return -1;
			}
			lua_rawset(L, -3);
		}
		break;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *v;
		if (depth >= KX_JSON_MAX_DEPTH)
			return -1;
		lua_createtable(L, (int)json_array_size(j), 0);
		json_array_foreach(j, i, v) {
			if (push_json(d, v, depth + 1) < 0) {
				lua_pop(L, 1);
				return -1;
			}
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		luaL_setmetatable(L, ARRAY_MT);
		break;
	}
	case JSON_STRING:
		push_string(d, json_string_value(j), json_string_length(j));
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
	return 0;
}

/* kx.json.encode(v [, {indent = n, sort = bool}]) -> string */
static int l_encode(lua_State *L)
{
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
	/* the encoder's path is too big for the C stack of a coroutine's
	 * caller; a userdata is freed with the call if anything raises */
	struct encoder *e = lua_newuserdatauv(L, sizeof *e, 0);
	e->L = L;
	e->depth = 0;
	e->needs_17_digits = 0;
	e->err[0] = 0;
	lua_newtable(L);
	e->seen = lua_gettop(L);
	json_t *j = to_json(e, 1);
	if (!j)
		return luaL_error(L, "kx.json.encode: %s",
				  e->err[0] ? e->err : "out of memory");
	/* the shortest of 15 or 17 digits that gives every float back */
	flags |= JSON_REAL_PRECISION(e->needs_17_digits ? 17 : 15);
	char *s = json_dumps(j, flags);
	json_decref(j);
	if (!s)
		return luaL_error(L, "kx.json.encode: out of memory");
	lua_pushstring(L, s);
	free(s);
	return 1;
}

static int parse_failed(lua_State *L, const json_error_t *e)
{
	if (json_error_code(e) == json_error_stack_overflow)
		return kx_fail(L, "line %d column %d: nested deeper than %d "
			       "levels (kx.json's limit)", e->line, e->column,
			       KX_JSON_MAX_DEPTH);
	return kx_fail(L, "line %d column %d: %s", e->line, e->column, e->text);
}

/* s with each \u0000 escape written as \uXXXX (same length, so the
 * positions in messages hold); *n is how many. */
static char *nul_escapes_as(const char *s, size_t len, unsigned cp, size_t *n)
{
	char *t = malloc(len ? len : 1);
	if (!t)
		return NULL;
	memcpy(t, s, len);
	*n = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (t[i] != '\\')
			continue;
		if (i + 5 < len && memcmp(t + i + 1, "u0000", 5) == 0) {
			char hex[5];
			snprintf(hex, sizeof hex, "%04X", cp);
			memcpy(t + i + 2, hex, 4);
			++*n;
		}
		i++;   /* the escaped character is not an escape itself */
	}
	return t;
}

static int too_deep(lua_State *L)
{
	return kx_fail(L, "nested deeper than %d levels (kx.json's limit)",
		       KX_JSON_MAX_DEPTH);
}

/* kx.json.decode(s) -> value | nil, "line L column C: message" */
static int l_decode(lua_State *L)
{
	size_t len, nul_written;
	const char *s = luaL_checklstring(L, 1, &len);
	struct decoder d = {.L = L};
	json_error_t e;
	const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
	json_t *j = json_loadb(s, len, flags, &e);
	if (j) {
		int r = push_json(&d, j, 0);
		json_decref(j);
		return r == 0 ? 1 : too_deep(L);
	}
	if (json_error_code(&e) != json_error_null_byte_in_key)
		return parse_failed(L, &e);
	for (unsigned cp = 0xF8FF; cp >= 0xF8F0; cp--) {
		char *t = nul_escapes_as(s, len, cp, &nul_written);
		if (!t)
			return luaL_error(L, "kx.json.decode: out of memory");
		j = json_loadb(t, len, flags, &e);
		free(t);
		if (!j)
			return parse_failed(L, &e);
		d.nul_as[0] = (char)(0xE0 | (cp >> 12));
		d.nul_as[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		d.nul_as[2] = (char)(0x80 | (cp & 0x3F));
		d.nul_found = 0;
		int r = push_json(&d, j, 0);
		json_decref(j);
		if (r < 0)
			return too_deep(L);
		if (d.nul_found == nul_written)
			return 1;
		lua_pop(L, 1);   /* the input had that character: try another */
	}
	return kx_fail(L, "NUL bytes in object keys cannot be decoded when the "
		       "input also holds every one of U+F8F0..U+F8FF");
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
	lua_pushinteger(L, KX_JSON_MAX_DEPTH);
	lua_setfield(L, -2, "max_depth");
	lua_setfield(L, -2, "json");
	return 0;
}
