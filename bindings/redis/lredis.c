/* lredis.c - kx.redis (see lredis.h). */
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "kx.h"
#include "lredis.h"

#define CLIENT_MT "kx.redis.client"

static lua_State *mainL;

/* The loop adapter.  hiredis's own libuv adapter drops poll errors, so a
 * refused connection would never complete; here an error is handed to
 * hiredis as an event, and it finds the socket's error itself. */
struct uvev {
	uv_poll_t poll;
	redisAsyncContext *ac;
	int events;
};

static void uvev_poll(uv_poll_t *h, int status, int events)
{
	struct uvev *e = h->data;
	if (status < 0)
		events = e->events;
	if (e->ac && (events & UV_WRITABLE))
		redisAsyncHandleWrite(e->ac);
	if (e->ac && (events & UV_READABLE))
		redisAsyncHandleRead(e->ac);
}

static void uvev_update(struct uvev *e)
{
	if (e->events)
		uv_poll_start(&e->poll, e->events, uvev_poll);
	else
		uv_poll_stop(&e->poll);
}

static void uvev_add_read(void *p) { ((struct uvev *)p)->events |= UV_READABLE; uvev_update(p); }
static void uvev_del_read(void *p) { ((struct uvev *)p)->events &= ~UV_READABLE; uvev_update(p); }
static void uvev_add_write(void *p) { ((struct uvev *)p)->events |= UV_WRITABLE; uvev_update(p); }
static void uvev_del_write(void *p) { ((struct uvev *)p)->events &= ~UV_WRITABLE; uvev_update(p); }

static void uvev_closed(uv_handle_t *h)
{
	free(h->data);
}

static void uvev_cleanup(void *p)
{
	struct uvev *e = p;
	e->ac = NULL;
	uv_close((uv_handle_t *)&e->poll, uvev_closed);
}

static int uvev_attach(redisAsyncContext *ac)
{
	struct uvev *e = calloc(1, sizeof *e);
	if (!e || uv_poll_init(kx_loop(), &e->poll, ac->c.fd) != 0) {
		free(e);
		return REDIS_ERR;
	}
	e->poll.data = e;
	e->ac = ac;
	ac->ev.data = e;
	ac->ev.addRead = uvev_add_read;
	ac->ev.delRead = uvev_del_read;
	ac->ev.addWrite = uvev_add_write;
	ac->ev.delWrite = uvev_del_write;
	ac->ev.cleanup = uvev_cleanup;
	return REDIS_OK;
}

struct client {
	redisAsyncContext *ac;   /* NULL once disconnected */
	int connected;
	int ref;                 /* the userdata, while ac lives */
	kx_task *connecting;
	char err[200];
};

struct call {
	kx_task *task;           /* NULL: the caller gave up (timeout, cancel) */
};

static void push_reply(lua_State *T, redisReply *r, int depth)
{
	luaL_checkstack(T, 4, "reply too deep");
	switch (r->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
		lua_pushlstring(T, r->str, r->len);
		break;
	case REDIS_REPLY_INTEGER:
		lua_pushinteger(T, (lua_Integer)r->integer);
		break;
	case REDIS_REPLY_NIL:
		lua_pushboolean(T, 0);
		break;
	case REDIS_REPLY_ARRAY:
		lua_createtable(T, (int)r->elements, 0);
		for (size_t i = 0; i < r->elements; i++) {
			push_reply(T, r->element[i], depth + 1);
			lua_rawseti(T, -2, (lua_Integer)i + 1);
		}
		break;
	default:   /* errors inside arrays (MULTI) */
		lua_pushlstring(T, r->str ? r->str : "error", r->str ? r->len : 5);
		break;
	}
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct call *k = privdata;
	redisReply *r = reply;
	kx_task *t = k->task;
	free(k);
	if (!t)
		return;
	lua_State *T = kx_task_state(t);
	if (!r) {
		lua_pushnil(T);
		lua_pushfstring(T, "connection lost: %s",
				ac->errstr[0] ? ac->errstr : "closed");
		kx_wake(t, 2);
	} else if (r->type == REDIS_REPLY_ERROR) {
		lua_pushnil(T);
		lua_pushlstring(T, r->str, r->len);
		kx_wake(t, 2);
	} else {
		push_reply(T, r, 0);
		kx_wake(t, 1);
	}
}

static void call_cancel(void *ud)
{
	((struct call *)ud)->task = NULL;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct client *c = ac->data;
	kx_task *t = c->connecting;
	c->connecting = NULL;
	if (status == REDIS_OK)
		c->connected = 1;
	else
		snprintf(c->err, sizeof c->err, "%s", ac->errstr);
	if (t) {
		lua_State *T = kx_task_state(t);
		if (status == REDIS_OK) {
			lua_rawgeti(T, LUA_REGISTRYINDEX, c->ref);   /* the client */
			kx_wake(t, 1);
		} else {
			lua_pushnil(T);
			lua_pushstring(T, c->err);
			kx_wake(t, 2);
		}
	}
	if (status != REDIS_OK) {
		c->ac = NULL;   /* hiredis frees it after this callback */
		luaL_unref(mainL, LUA_REGISTRYINDEX, c->ref);
		c->ref = LUA_NOREF;
	}
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct client *c = ac->data;
	(void)status;
	if (!c)
		return;
	snprintf(c->err, sizeof c->err, "%s", ac->errstr[0] ? ac->errstr : "closed");
	c->connected = 0;
	c->ac = NULL;
	luaL_unref(mainL, LUA_REGISTRYINDEX, c->ref);
	c->ref = LUA_NOREF;
}

/* Timed out: give the half-open connection up. */
static void connect_cancel(void *ud)
{
	struct client *c = ud;
	c->connecting = NULL;
	snprintf(c->err, sizeof c->err, "connect timed out");
	if (c->ac)
		redisAsyncDisconnect(c->ac);
}

/* redis.connect{host="127.0.0.1", port=6379, timeout=} -> client | nil, err
 * (the TCP connection only: AUTH and SELECT are calls) */
static int l_connect(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "host");
	const char *host = luaL_optstring(L, -1, "127.0.0.1");
	lua_getfield(L, 1, "port");
	int port = (int)luaL_optinteger(L, -1, 6379);
	lua_getfield(L, 1, "timeout");
	double timeout = luaL_optnumber(L, -1, 5.0);
	kx_task *t = kx_checktask(L, "connect");

	struct client *c = lua_newuserdatauv(L, sizeof *c, 0);
	memset(c, 0, sizeof *c);
	c->ref = LUA_NOREF;
	luaL_setmetatable(L, CLIENT_MT);
	redisAsyncContext *ac = redisAsyncConnect(host, port);
	if (!ac)
		return kx_fail(L, "redis %s:%d: out of memory", host, port);
	if (ac->err) {
		lua_pushnil(L);
		lua_pushfstring(L, "redis %s:%d: %s", host, port, ac->errstr);
		redisAsyncFree(ac);
		return 2;
	}
	ac->data = c;
	if (uvev_attach(ac) != REDIS_OK) {
		redisAsyncFree(ac);
		return kx_fail(L, "redis %s:%d: cannot join the loop", host, port);
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	c->ac = ac;
	lua_pushvalue(L, -1);
	c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	c->connecting = t;
	return kx_await(L, t, timeout, connect_cancel, c);
}

static struct client *check(lua_State *L)
{
	return luaL_checkudata(L, 1, CLIENT_MT);
}

/* c:call(cmd, args...) -> reply | nil, message */
static int l_call(lua_State *L)
{
	struct client *c = check(L);
	int argc = lua_gettop(L) - 1;
	luaL_argcheck(L, argc >= 1, 2, "command expected");
	if (!c->ac || !c->connected)
		return kx_fail(L, "connection lost: %s", c->err[0] ? c->err : "not connected");
	kx_task *t = kx_checktask(L, "call");
	const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)argc, 0);
	size_t *lens = lua_newuserdatauv(L, sizeof(size_t) * (size_t)argc, 0);
	for (int i = 0; i < argc; i++) {
		if (lua_type(L, i + 2) != LUA_TSTRING && lua_type(L, i + 2) != LUA_TNUMBER)
			return luaL_argerror(L, i + 2, "string or number expected");
		argv[i] = lua_tolstring(L, i + 2, &lens[i]);
	}
	struct call *k = malloc(sizeof *k);
	if (!k)
		return luaL_error(L, "out of memory");
	k->task = t;
	if (redisAsyncCommandArgv(c->ac, on_reply, k, argc, argv, lens) != REDIS_OK) {
		free(k);
		return kx_fail(L, "connection lost: %s", c->ac ? c->ac->errstr : "closed");
	}
	return kx_await(L, t, -1, call_cancel, k);
}

static int l_connected(lua_State *L)
{
	struct client *c = check(L);
	lua_pushboolean(L, c->ac && c->connected);
	return 1;
}

static int l_close(lua_State *L)
{
	struct client *c = check(L);
	if (c->ac) {
		redisAsyncContext *ac = c->ac;
		c->ac = NULL;
		c->connected = 0;
		redisAsyncDisconnect(ac);   /* pending replies still arrive */
	}
	return 0;
}

int luaopen_kx_redis(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"call", l_call},
		{"connected", l_connected},
		{"close", l_close},
		{NULL, NULL},
	};
	static const luaL_Reg fns[] = {
		{"connect", l_connect},
		{NULL, NULL},
	};
	lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
	mainL = lua_tothread(L, -1);
	lua_pop(L, 1);
	kx_newclass(L, CLIENT_MT, methods, NULL);
	lua_pushcfunction(L, l_close);
	lua_setfield(L, -2, "__close");
	lua_pop(L, 1);
	luaL_newlib(L, fns);
	return 1;
}
