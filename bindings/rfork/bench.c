/*
 * bench.c - rfork._bench: the transports measured on their own, for
 * experiments/rdma_rc_connection.lua (MITOSIS's os-network/rc-connection
 * microbenchmark) and the VM bed's benchmarks.  Internal: the name starts
 * with an underscore and may change.
 *
 *   rfork._bench{ address =, id =, key =, transport = "rdma" | "tcp",
 *                 op = "connect" | "read", size = bytes, count = n }
 *     -> times (seconds, one per operation) [, rc_times]  | nil, message
 *
 * "connect": count connections to the holder, each timed from the TCP
 * connect to a connection able to read (hello, descriptor; for rdma also
 * the queue pair, the exchange with the holder's agent and one test READ),
 * then closed; rc_times: the RDMA part alone.  "read": one connection, then
 * count reads of size bytes (a multiple of 4 KiB, at most 1 MiB) walking
 * through the parent's largest served mapping.
 */
#include "rdma.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One connection, upgraded when rdma; *t_rc: seconds of the upgrade. */
static struct rf_conn *open_conn(const char *address, uint64_t id, const uint8_t key[16],
                                 int rdma, uint32_t pages, const struct rf_transport **t,
                                 struct rf_desc **d, double *t_rc, char *err, size_t errlen)
{
	uint32_t index;
	struct rf_conn *c = rf_tcp.connect(address, id, key, 10000, d, &index, NULL, NULL, err,
	                                   errlen);
	*t = &rf_tcp;
	if (!c || !rdma)
		return c;
	char host[256], port[16];
	int declined;
	double t0 = now();
	struct rf_conn *r = rf_parse_address(address, host, sizeof host, port, sizeof port, err,
	                                     errlen) < 0 ? NULL
	                    : rf_rdma_upgrade(c, *d, host, 1, 10000, pages, &declined, err, errlen);
	*t_rc = now() - t0;
	if (!r) {
		rf_tcp.close(c);
		free(*d);
		return NULL;
	}
	*t = &rf_rdma;
	return r;
}

static const struct rf_map *largest_served(const struct rf_desc *d)
{
	const struct rf_map *m = rf_desc_maps(d), *best = NULL;
	for (uint32_t i = 0; i < d->nmaps; i++)
		if (m[i].kind == RF_MAP_SERVE && m[i].end - m[i].start <= RF_RDMA_MAP_MAX &&
		    (!best || m[i].end - m[i].start > best->end - best->start))
			best = &m[i];
	return best;
}

int rf_lua_bench(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "address");
	const char *address = luaL_checkstring(L, -1);
	lua_getfield(L, 1, "id");
	const char *id_hex = luaL_checkstring(L, -1);
	lua_getfield(L, 1, "key");
	const char *key_hex = luaL_checkstring(L, -1);
	lua_getfield(L, 1, "transport");
	const char *transport = luaL_checkstring(L, -1);
	lua_getfield(L, 1, "op");
	const char *op = luaL_checkstring(L, -1);
	lua_getfield(L, 1, "size");
	lua_Integer size = luaL_optinteger(L, -1, RF_PAGE);
	lua_getfield(L, 1, "count");
	lua_Integer count = luaL_optinteger(L, -1, 100);
	uint8_t key[16], idb[8];
	if (rf_parse_hex(key_hex, key, 16) < 0 || rf_parse_hex(id_hex, idb, 8) < 0)
		return luaL_argerror(L, 1, "id: 16 hex digits, key: 32");
	int rdma = !strcmp(transport, "rdma"), connect = !strcmp(op, "connect");
	if (!rdma && strcmp(transport, "tcp"))
		return luaL_argerror(L, 1, "transport must be \"rdma\" or \"tcp\"");
	if (!connect && strcmp(op, "read"))
		return luaL_argerror(L, 1, "op must be \"connect\" or \"read\"");
	if (size <= 0 || size % RF_PAGE || size > (lua_Integer)(RF_MAX_PAGES * RF_PAGE) || count < 1)
		return luaL_argerror(L, 1, "size: a multiple of 4 KiB up to 1 MiB; count >= 1");
	uint64_t id = strtoull(id_hex, NULL, 16);
	char err[512];
	const struct rf_transport *t;
	struct rf_desc *d;
	double t_rc = 0;
	lua_createtable(L, (int)count, 0);
	if (connect) {
		lua_createtable(L, rdma ? (int)count : 0, 0);
		for (lua_Integer i = 1; i <= count; i++) {
			double t0 = now();
			/* a landing buffer for the default read-ahead, as a child's */
			struct rf_conn *c = open_conn(address, id, key, rdma, 16, &t, &d, &t_rc, err,
			                              sizeof err);
			if (!c)
				goto fail;
			lua_pushnumber(L, now() - t0);
			lua_rawseti(L, -3, i);
			if (rdma) {
				lua_pushnumber(L, t_rc);
				lua_rawseti(L, -2, i);
			}
			t->close(c);
			free(d);
		}
		return 2;
	}
	uint32_t npages = (uint32_t)(size / RF_PAGE);
	struct rf_conn *c = open_conn(address, id, key, rdma, npages, &t, &d, &t_rc, err,
	                              sizeof err);
	if (!c)
		goto fail;
	const struct rf_map *m = largest_served(d);
	char *buf = t->buffer(c, npages, err, sizeof err);
	if (!m || m->end - m->start < (uint64_t)size || !buf) {
		if (buf)
			snprintf(err, sizeof err, "the parent has no served mapping of %lld bytes",
			         (long long)size);
		t->close(c);
		free(d);
		goto fail;
	}
	uint64_t at = m->start;
	for (lua_Integer i = 1; i <= count; i++) {
		if (at + size > m->end)
			at = m->start;
		double t0 = now();
		if (t->read_pages(c, at, buf, npages, err, sizeof err) < 0) {
			t->close(c);
			free(d);
			goto fail;
		}
		lua_pushnumber(L, now() - t0);
		lua_rawseti(L, -2, i);
		at += size;
	}
	t->close(c);
	free(d);
	return 1;
fail:
	lua_pushnil(L);
	lua_pushfstring(L, "rfork._bench: %s", err);
	return 2;
}
