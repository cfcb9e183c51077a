/*
 * lredis.h - kx.redis: a Redis client for tasks, over hiredis's async API
 * and its libuv adapter, so a call suspends the calling task and never the
 * loop.
 *
 *   local c, err = redis.connect{ host = "127.0.0.1", port = 6379 }
 *   local v, err = c:call("GET", "k")   -- string, integer, table, false (nil
 *                                       -- reply), or nil + message on error
 *   c:close()
 *
 * A lost connection makes every pending and later call return
 * nil, "connection lost: ..."; c:connected() says so; callers reconnect.
 */
#ifndef KX_LREDIS_H
#define KX_LREDIS_H

#include <lua.h>

int luaopen_kx_redis(lua_State *L);

#endif
