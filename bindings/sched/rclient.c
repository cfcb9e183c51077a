/*
 * rclient.c - kx.sched.redis.client: a Redis connection on the kxrun loop (hiredis
 * 0.14, attached to libuv by the adapter below).  A call suspends only the calling task; the
 * reply wakes it from the loop, so a worker waiting in BLMOVE or a central in
 * BLPOP never blocks the others.  A blocking command holds its connection
 * until the reply: give each blocking waiter a connection of its own.
 *
 *   local redis = require "kx.sched.redis.client"
 *   local c = redis.new()
 *   assert(c:open("127.0.0.1", 6379, 5))  -- timeout in s
 *   c:call("AUTH", pw)         -- reply | nil, message
 *   c:call("BLMOVE", a, b, "LEFT", "RIGHT", 1)
 *   c:timed(5, "PING")         -- nil, "timeout" after 5 s
 *   redis.probe(ip, port, 5)   -- true | nil, "connection refused"
 *   c:connected()              -- false once the server went away
 *   c:close()                  -- pending calls return nil, "closed"
 *
 * Replies: status and bulk strings are strings, integers integers, a nil
 * reply is false, arrays are tables (nil elements false); an error reply
 * returns nil, message.  A lost connection returns nil, "connection lost:
 * ..." to every pending call; the caller reconnects (kx.sched does).
 */
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "kx.h"

#define RCONN "kx.sched.redis.conn"

/* Lives outside Lua memory: hiredis may call back after the userdata is
 * collected (at lua_close), so the struct is freed only once hiredis is done
 * with it and the userdata is gone. */
struct rconn {
	redisAsyncContext *ac;   /* NULL once closed or lost */
	kx_task *connecting;     /* the task waiting in connect */
	int pending;             /* commands whose callback has not run */
	int collected;           /* the userdata was collected: wake nobody */
	int freeing_ac;          /* inside redisAsyncFree: its callbacks must
	                            not free c under it */
	char why[160];           /* why the connection ended */
};

struct rcall {
	struct rconn *c;
	kx_task *task;
	int cancelled;           /* timeout or task cancelled: wake nobody */
};

static void rconn_maybe_free(struct rconn *c)
{
	if (c->collected && !c->ac && c->pending == 0 && !c->freeing_ac)
		free(c);
}

/* ---- hiredis on the libuv loop ------------------------------------------------
 * Not hiredis's adapters/libuv.h: its poll callback returns on an error
 * status, and libuv stops the poll on POLLERR, so a connection reset by a
 * server that died with a command unread hung every pending call until its
 * timeout (30 s for kx.sched's calls).  Here an error is handed to hiredis
 * as a read: the read fails and hiredis disconnects, with the reason. */
struct uvpoll {
	redisAsyncContext *ac;   /* NULL once hiredis let go of it */
	uv_poll_t handle;
	int events;
};

static void uvpoll_ready(uv_poll_t *h, int status, int events)
{
	struct uvpoll *p = h->data;
	if (status < 0)
		events = UV_READABLE;
	if (p->ac && (events & UV_READABLE))
		redisAsyncHandleRead(p->ac);
	if (p->ac && (events & UV_WRITABLE))
		redisAsyncHandleWrite(p->ac);
}

static void uvpoll_update(struct uvpoll *p, int add, int remove)
{
	p->events = (p->events | add) & ~remove;
	if (p->events)
		uv_poll_start(&p->handle, p->events, uvpoll_ready);
	else
		uv_poll_stop(&p->handle);
}

static void uvpoll_add_read(void *p) { uvpoll_update(p, UV_READABLE, 0); }
static void uvpoll_del_read(void *p) { uvpoll_update(p, 0, UV_READABLE); }
static void uvpoll_add_write(void *p) { uvpoll_update(p, UV_WRITABLE, 0); }
static void uvpoll_del_write(void *p) { uvpoll_update(p, 0, UV_WRITABLE); }

static void uvpoll_closed(uv_handle_t *h)
{
	free(h->data);
}

static void uvpoll_cleanup(void *data)
{
	struct uvpoll *p = data;
	p->ac = NULL;
	uv_close((uv_handle_t *)&p->handle, uvpoll_closed);
}

static int uvpoll_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
	struct uvpoll *p = calloc(1, sizeof *p);
	if (!p)
		return REDIS_ERR;
	if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
		free(p);
		return REDIS_ERR;
	}
	p->ac = ac;
	p->handle.data = p;
	ac->ev.data = p;
	ac->ev.addRead = uvpoll_add_read;
	ac->ev.delRead = uvpoll_del_read;
	ac->ev.addWrite = uvpoll_add_write;
	ac->ev.delWrite = uvpoll_del_write;
	ac->ev.cleanup = uvpoll_cleanup;
	return REDIS_OK;
}

static void push_reply(lua_State *T, const redisReply *r)
{
	luaL_checkstack(T, 4, "redis reply too deep");
	switch (r->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
		lua_pushlstring(T, r->str, r->len);
		break;
	case REDIS_REPLY_INTEGER:
		lua_pushinteger(T, r->integer);
		break;
	case REDIS_REPLY_ARRAY:
		lua_createtable(T, (int)r->elements, 0);
		for (size_t i = 0; i < r->elements; i++) {
			push_reply(T, r->element[i]);
			lua_rawseti(T, -2, (lua_Integer)i + 1);
		}
		break;
	case REDIS_REPLY_ERROR:   /* nested (EXEC): {err = message} */
		lua_createtable(T, 0, 1);
		lua_pushlstring(T, r->str, r->len);
		lua_setfield(T, -2, "err");
		break;
	default:                  /* REDIS_REPLY_NIL */
		lua_pushboolean(T, 0);
		break;
	}
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rcall *call = priv;
	struct rconn *c = call->c;
	redisReply *r = reply;
	c->pending--;
	if (!call->cancelled && !c->collected) {
		lua_State *T = kx_task_state(call->task);
		if (!r) {
			lua_pushnil(T);
			if (c->why[0])
				lua_pushstring(T, c->why);
			else if (ac->err)
				lua_pushfstring(T, "connection lost: %s", ac->errstr);
			else
				lua_pushliteral(T, "closed");
			kx_wake(call->task, 2);
		} else if (r->type == REDIS_REPLY_ERROR) {
			lua_pushnil(T);
			lua_pushlstring(T, r->str, r->len);
			kx_wake(call->task, 2);
		} else {
			push_reply(T, r);
			kx_wake(call->task, 1);
		}
	}
	free(call);
	rconn_maybe_free(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn *c = ac->data;
	kx_task *t = c->connecting;
	c->connecting = NULL;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback */
		snprintf(c->why, sizeof c->why, "connection lost: %s", ac->errstr);
		c->ac = NULL;
	}
	if (!t || c->collected) {
		rconn_maybe_free(c);
		return;
	}
	lua_State *T = kx_task_state(t);
	if (status != REDIS_OK) {
		lua_pushnil(T);
		lua_pushstring(T, ac->errstr);
		kx_wake(t, 2);
	} else {
		lua_pushboolean(T, 1);
		kx_wake(t, 1);
	}
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rconn *c = ac->data;
	if (!c->why[0])
		snprintf(c->why, sizeof c->why, status == REDIS_OK ? "closed" :
			 "connection lost: %s", ac->errstr);
	c->ac = NULL;   /* hiredis frees it after this callback */
	rconn_maybe_free(c);
}

static struct rconn *check_conn(lua_State *L)
{
	struct rconn **ud = luaL_checkudata(L, 1, RCONN);
	return *ud;
}

static void cancel_connect(void *ud)
{
	struct rconn *c = ud;
	c->connecting = NULL;
	if (c->ac) {
		redisAsyncContext *ac = c->ac;
		c->ac = NULL;
		snprintf(c->why, sizeof c->why, "connection timed out");
		redisAsyncFree(ac);
	}
}

/* A TCP connect through libuv, to learn whether the server is there
 * (nothing is sent: no handshake, no password needed). */
struct probe {
	uv_tcp_t tcp;
	uv_connect_t req;
	kx_task *task;   /* NULL once the waiter gave up */
};

static void probe_closed(uv_handle_t *h)
{
	free(h->data);
}

static void probe_done(uv_connect_t *req, int status)
{
	struct probe *p = req->data;
	if (p->task) {
		lua_State *T = kx_task_state(p->task);
		if (status == 0) {
			lua_pushboolean(T, 1);
			kx_wake(p->task, 1);
		} else {
			lua_pushnil(T);
			lua_pushstring(T, uv_strerror(status));
			kx_wake(p->task, 2);
		}
	}
	if (!uv_is_closing((uv_handle_t *)&p->tcp))
		uv_close((uv_handle_t *)&p->tcp, probe_closed);
}

static void probe_cancel(void *ud)
{
	struct probe *p = ud;
	p->task = NULL;
	/* closing cancels the connect: probe_done runs with UV_ECANCELED,
	 * before probe_closed frees p */
	uv_close((uv_handle_t *)&p->tcp, probe_closed);
}

/* client.probe(ip, port [, timeout_s = 5]) -> true | nil, message */
static int l_probe(lua_State *L)
{
	const char *host = luaL_checkstring(L, 1);
	lua_Integer port = luaL_checkinteger(L, 2);
	double timeout = luaL_optnumber(L, 3, 5.0);
	struct sockaddr_storage sa;
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&sa) != 0 &&
	    uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&sa) != 0)
		return kx_fail(L, "not an IP address: %s", host);
	kx_task *t = kx_checktask(L, "probe");
	struct probe *p = calloc(1, sizeof *p);
	if (!p)
		return kx_fail(L, "out of memory");
	uv_tcp_init(kx_loop(), &p->tcp);
	p->tcp.data = p;
	p->req.data = p;
	int rc = uv_tcp_connect(&p->req, &p->tcp, (struct sockaddr *)&sa, probe_done);
	if (rc != 0) {
		uv_close((uv_handle_t *)&p->tcp, probe_closed);
		return kx_fail(L, "%s", uv_strerror(rc));
	}
	p->task = t;
	return kx_await(L, t, timeout, probe_cancel, p);
}

/* conn:open(host, port [, timeout_s = 5]) -> true | nil, message */
static int l_open(lua_State *L)
{
	struct rconn *c = check_conn(L);
	const char *host = luaL_checkstring(L, 2);
	lua_Integer port = luaL_checkinteger(L, 3);
	double timeout = luaL_optnumber(L, 4, 5.0);
	if (port <= 0 || port > 65535)
		return luaL_argerror(L, 3, "port must be 1-65535");
	kx_task *t = kx_checktask(L, "open");
	if (c->ac)
		return kx_fail(L, "already open");
	c->why[0] = 0;
	redisAsyncContext *ac = redisAsyncConnect(host, (int)port);
	if (!ac)
		return kx_fail(L, "cannot connect to %s:%d: out of memory", host, (int)port);
	if (ac->err) {
		lua_pushnil(L);
		lua_pushfstring(L, "cannot connect to %s:%d: %s", host, (int)port, ac->errstr);
		redisAsyncFree(ac);
		return 2;
	}
	ac->data = c;
	if (uvpoll_attach(ac, kx_loop()) != REDIS_OK) {
		redisAsyncFree(ac);
		return kx_fail(L, "cannot attach a redis connection to the loop");
	}
	c->ac = ac;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	c->connecting = t;
	/* hiredis 0.14 finishes a connect on the first writable event, which
	 * it only asks for with a command: ask now so refusals show at once */
	if (ac->ev.addWrite)
		ac->ev.addWrite(ac->ev.data);
	return kx_await(L, t, timeout, cancel_connect, c);
}

/* redis.new() -> conn (closed; conn:open connects it) */
static int l_new(lua_State *L)
{
	struct rconn *c = calloc(1, sizeof *c);
	if (!c)
		return luaL_error(L, "out of memory");
	struct rconn **ud = lua_newuserdatauv(L, sizeof *ud, 0);
	*ud = c;
	luaL_setmetatable(L, RCONN);
	return 1;
}

static void cancel_call(void *ud)
{
	((struct rcall *)ud)->cancelled = 1;
}

#define MAX_ARGS 256

/* Sends the command made of the arguments from index `first` on; the task
 * waits for the reply at most timeout_s (< 0: for ever). */
static int send_call(lua_State *L, struct rconn *c, int first, double timeout_s)
{
	int argc = lua_gettop(L) - first + 1;
	if (argc < 1)
		return luaL_argerror(L, first, "command expected");
	if (argc > MAX_ARGS)
		return luaL_argerror(L, first + MAX_ARGS, "too many arguments");
	const char *argv[MAX_ARGS];
	size_t lens[MAX_ARGS];
	for (int i = 0; i < argc; i++) {
		int t = lua_type(L, first + i);
		if (t != LUA_TSTRING && t != LUA_TNUMBER)
			return luaL_argerror(L, first + i, "string or number expected");
		argv[i] = lua_tolstring(L, first + i, &lens[i]);
	}
	kx_task *t = kx_checktask(L, "call");
	if (!c->ac)
		return kx_fail(L, "%s", c->why[0] ? c->why : "not connected");
	struct rcall *call = calloc(1, sizeof *call);
	if (!call)
		return kx_fail(L, "out of memory");
	call->c = c;
	call->task = t;
	if (redisAsyncCommandArgv(c->ac, on_reply, call, argc, argv, lens) != REDIS_OK) {
		free(call);
		return kx_fail(L, "cannot send command: %s", c->ac->errstr);
	}
	c->pending++;
	return kx_await(L, t, timeout_s, cancel_call, call);
}

/* conn:call(cmd, ...) -> reply | nil, message */
static int l_call(lua_State *L)
{
	return send_call(L, check_conn(L), 2, -1);
}

/* conn:timed(timeout_s, cmd, ...) -> reply | nil, message ("timeout"): a
 * server that stops answering without closing the connection is noticed. */
static int l_timed(lua_State *L)
{
	struct rconn *c = check_conn(L);
	double timeout = luaL_checknumber(L, 2);
	return send_call(L, c, 3, timeout);
}

static int l_connected(lua_State *L)
{
	struct rconn *c = check_conn(L);
	lua_pushboolean(L, c->ac != NULL && c->connecting == NULL);
	return 1;
}

static void rconn_close(struct rconn *c)
{
	if (c->ac) {
		redisAsyncContext *ac = c->ac;
		c->ac = NULL;
		snprintf(c->why, sizeof c->why, "closed");
		c->freeing_ac = 1;
		redisAsyncFree(ac);   /* pending calls get nil, "closed" */
		c->freeing_ac = 0;
	}
}

static int l_close(lua_State *L)
{
	rconn_close(check_conn(L));
	return 0;
}

static int l_gc(lua_State *L)
{
	struct rconn **ud = luaL_checkudata(L, 1, RCONN);
	struct rconn *c = *ud;
	if (!c)
		return 0;
	*ud = NULL;
	c->collected = 1;
	rconn_close(c);
	rconn_maybe_free(c);
	return 0;
}

int luaopen_kx_sched_redis_client(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"open", l_open},
		{"call", l_call},
		{"timed", l_timed},
		{"connected", l_connected},
		{"close", l_close},
		{NULL, NULL},
	};
	static const luaL_Reg fns[] = {
		{"new", l_new},
		{"probe", l_probe},
		{NULL, NULL},
	};
	kx_newclass(L, RCONN, methods, l_gc);
	lua_pop(L, 1);
	luaL_newlib(L, fns);
	return 1;
}
