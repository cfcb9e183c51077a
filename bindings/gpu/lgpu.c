/*
 * lgpu.c - Lua binding kx.gpu: GPU partitions (docs/MANUAL.md §5; manual: README.md here).
 *
 *   gpu.devices()            probe OpenCL (refreshes the ledger's cache)
 *   gpu.stats()              devices with their promised memory
 *   gpu.available(dev)       percent free (number), and the same in ppm
 *   gpu.list()               partitions (live, and ending: .ending)
 *   gpu.create{device=, memory=, duration=, user=}  -> partition
 *   gpu.open(id)             -> partition (an existing one)
 *   gpu.release(id [, {force=, grace=}])            (lrelease.c)
 *   partition.id/.device/.memory/.bytes/.owner/.uid/.pid/.created/.expires
 *   partition:remaining(), partition:release([opts]), partition:exec{argv...,
 *       grace=, env=}  -> {code=N} | {signal=N}, with expired=true when the
 *       partition's end stopped it (lexec.c)
 *   local p <close> = gpu.create{...}   -- released (by force) at the end
 *
 * Failures of the world return nil, message (Chronos's messages); misuse
 * (bad arguments, a released handle) raises.
 */
#include "devices.h"
#include "lgpu.h"
#include "ledger.h"
#include "usage.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kx.h"

#define PARTITION_T "kx.gpu.partition"

extern char **environ;

struct lpart {
	struct kxgpu_partition p;
	char device_name[96];
	int released;
};

#define LEDGER_OR_FAIL(L, l, err)                                   \
	kxgpu_ledger *l = kxgpu_lua_ledger(err, sizeof err);        \
	if (!l)                                                     \
		return kx_fail(L, "%s", err)

/* Probes OpenCL and stores the facts; returns the count or -1. */
static int refresh_devices(kxgpu_ledger *l, struct kxgpu_device *devs,
                           char *err, size_t errlen)
{
	int n = kxgpu_probe_devices(devs, KXGPU_MAX_DEVICES, err, errlen);

	if (n < 0)
		return -1;
	if (kxgpu_ledger_set_devices(l, devs, (uint32_t)n, err, errlen) != 0)
		return -1;
	return n;
}

/* A ledger that never saw OpenCL probes it once; later calls never do. */
static int learn_devices(kxgpu_ledger *l, char *err, size_t errlen)
{
	struct kxgpu_device devs[KXGPU_MAX_DEVICES];
	struct kxgpu_snapshot s;
	int64_t probed;

	if (kxgpu_ledger_devices(l, &s, err, errlen) != 0)
		return -1;
	probed = s.probed_ms;
	kxgpu_snapshot_free(&s);
	return probed ? 0 : refresh_devices(l, devs, err, errlen);
}

static int bad_device(lua_State *L, lua_Integer dev)
{
	char buf[32];

	snprintf(buf, sizeof buf, "%lld", (long long)dev);
	return kx_fail(L, "Invalid device index: %s", buf);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
	lua_pushstring(L, v);
	lua_setfield(L, -2, k);
}

static void push_device(lua_State *L, const struct kxgpu_device *d)
{
	lua_createtable(L, 0, 8);
	set_int(L, "index", d->index);
	set_str(L, "name", d->name);
	set_str(L, "type", d->type);
	set_str(L, "vendor", d->vendor);
	set_str(L, "version", d->version);
	set_str(L, "platform", d->platform);
	set_int(L, "memory", (lua_Integer)d->memory);
}

static void push_partition_table(lua_State *L, const struct kxgpu_partition *p)
{
	int64_t left = p->expires_ms - kxgpu_now_ms();

	lua_createtable(L, 0, 12);
	set_str(L, "id", p->id);
	set_int(L, "device", p->device);
	lua_pushnumber(L, p->ppm / 1e6);
	lua_setfield(L, -2, "memory");
	set_int(L, "ppm", p->ppm);
	set_int(L, "bytes", (lua_Integer)p->bytes);
	set_str(L, "owner", p->owner);
	set_int(L, "uid", p->uid);
	set_int(L, "pid", p->pid);
	set_int(L, "creator_uid", p->creator_uid);
	lua_pushnumber(L, p->created_ms / 1e3);
	lua_setfield(L, -2, "created");
	lua_pushnumber(L, p->expires_ms / 1e3);
	lua_setfield(L, -2, "expires");
	lua_pushnumber(L, left > 0 && !p->released_ms ? left / 1e3 : 0);
	lua_setfield(L, -2, "remaining");
	/* expired or released by force, its programs still ending */
	lua_pushboolean(L, kxgpu_partition_ending(p, kxgpu_now_ms()));
	lua_setfield(L, -2, "ending");
}

static int l_devices(lua_State *L)
{
	struct kxgpu_device devs[KXGPU_MAX_DEVICES];
	char err[KXGPU_ERRLEN];
	LEDGER_OR_FAIL(L, l, err);
	int n = refresh_devices(l, devs, err, sizeof err);

	if (n < 0)
		return kx_fail(L, "%s", err);
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		push_device(L, &devs[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* Devices (refreshed from OpenCL when it answers, else as cached) with
 * used/available bytes and partition counts. */
static int l_stats(lua_State *L)
{
	struct kxgpu_device devs[KXGPU_MAX_DEVICES];
	struct kxgpu_snapshot s;
	char err[KXGPU_ERRLEN], perr[KXGPU_ERRLEN];
	LEDGER_OR_FAIL(L, l, err);
	int probed = refresh_devices(l, devs, perr, sizeof perr);

	if (kxgpu_ledger_read(l, &s, err, sizeof err) != 0)
		return kx_fail(L, "%s", err);
	if (probed < 0 && s.ndevices == 0) {
		kxgpu_snapshot_free(&s);
		return kx_fail(L, "%s", perr);
	}
	lua_createtable(L, (int)s.ndevices, 0);
	for (uint32_t i = 0; i < s.ndevices; i++) {
		uint64_t used = 0;
		uint32_t ppm = 0, count = 0;

		for (uint32_t j = 0; j < s.n; j++) {
			if (s.parts[j].device != i)
				continue;
			used += s.parts[j].bytes;
			ppm += s.parts[j].ppm;
			count++;
		}
		push_device(L, &s.devices[i]);
		set_int(L, "used", (lua_Integer)used);
		set_int(L, "available", (lua_Integer)(s.devices[i].memory - used));
		set_int(L, "used_ppm", ppm);
		lua_pushnumber(L, ppm / 1e4);
		lua_setfield(L, -2, "usage");
		set_int(L, "partitions", count);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	kxgpu_snapshot_free(&s);
	if (probed < 0) {  /* stale facts: say so */
		lua_pushstring(L, perr);
		return 2;
	}
	return 1;
}

static int l_available(lua_State *L)
{
	lua_Integer dev = luaL_checkinteger(L, 1);
	char err[KXGPU_ERRLEN];
	uint32_t ppm;
	LEDGER_OR_FAIL(L, l, err);

	if (dev < 0 || dev > 0xffff)
		return bad_device(L, dev);
	if (learn_devices(l, err, sizeof err) < 0)
		return kx_fail(L, "%s", err);
	if (kxgpu_ledger_available(l, (uint32_t)dev, &ppm, err, sizeof err) != 0)
		return kx_fail(L, "%s", err);
	lua_pushnumber(L, ppm / 1e4);
	lua_pushinteger(L, ppm);
	return 2;
}

static int l_list(lua_State *L)
{
	struct kxgpu_snapshot s;
	char err[KXGPU_ERRLEN];
	LEDGER_OR_FAIL(L, l, err);

	if (kxgpu_ledger_read(l, &s, err, sizeof err) != 0)
		return kx_fail(L, "%s", err);
	lua_createtable(L, (int)s.n, 0);
	for (uint32_t i = 0; i < s.n; i++) {
		push_partition_table(L, &s.parts[i]);
		if (s.parts[i].device < s.ndevices) {
			lua_pushstring(L, s.devices[s.parts[i].device].name);
			lua_setfield(L, -2, "device_name");
		}
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	kxgpu_snapshot_free(&s);
	return 1;
}

static void push_partition(lua_State *L, const struct kxgpu_partition *p,
                           const struct kxgpu_device *dev)
{
	struct lpart *lp = lua_newuserdatauv(L, sizeof *lp, 0);

	lp->p = *p;
	lp->released = 0;
	snprintf(lp->device_name, sizeof lp->device_name, "%s",
	         dev ? dev->name : "");
	luaL_setmetatable(L, PARTITION_T);
}

/* memory: a fraction as a number (rounded to the nearest ppm) or a decimal
 * string (exact); duration: seconds, number or string. */
static int get_fraction(lua_State *L, int idx, uint32_t *ppm)
{
	if (lua_type(L, idx) == LUA_TSTRING)
		return kxgpu_parse_fraction(lua_tostring(L, idx), ppm);
	if (lua_type(L, idx) == LUA_TNUMBER) {
		lua_Number x = lua_tonumber(L, idx);
		if (!(x > 0 && x <= 1))
			return KXGPU_EINVAL;
		*ppm = (uint32_t)llround(x * KXGPU_PPM);
		return *ppm ? 0 : KXGPU_EINVAL;
	}
	return KXGPU_EINVAL;
}

static int get_duration(lua_State *L, int idx, int64_t *ms)
{
	if (lua_type(L, idx) == LUA_TSTRING)
		return kxgpu_parse_duration(lua_tostring(L, idx), ms);
	if (lua_type(L, idx) == LUA_TNUMBER) {
		lua_Number x = lua_tonumber(L, idx);
		if (!(x > 0 && x * 1000 <= (lua_Number)KXGPU_MAX_DURATION_MS))
			return KXGPU_EINVAL;
		*ms = (int64_t)llround(x * 1000);
		return *ms ? 0 : KXGPU_EINVAL;
	}
	return KXGPU_EINVAL;
}

static int l_create(lua_State *L)
{
	struct kxgpu_request req = { .caller = getuid(), .pid = getpid() };
	struct kxgpu_device devs[KXGPU_MAX_DEVICES];
	struct kxgpu_snapshot s;
	struct kxgpu_partition p;
	char err[KXGPU_ERRLEN];
	lua_Integer dev;
	int rc = 0;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "device");
	dev = luaL_optinteger(L, -1, 0);
	lua_getfield(L, 1, "memory");
	lua_getfield(L, 1, "duration");
	lua_getfield(L, 1, "user");
	if (lua_isnil(L, -3))
		return luaL_argerror(L, 1, "memory (a fraction of the device) is required");
	if (lua_isnil(L, -2))
		return luaL_argerror(L, 1, "duration (seconds) is required");
	if (dev < 0 || dev >= KXGPU_MAX_DEVICES)
		return bad_device(L, dev);
	req.device = (uint32_t)dev;
	if (get_fraction(L, -3, &req.ppm) != 0)
		return kx_fail(L, "Invalid memory fraction: must be > 0 and <= 1 "
		               "(at most 6 decimals)");
	if (get_duration(L, -2, &req.duration_ms) != 0)
		return kx_fail(L, "Invalid duration: must be > 0 and at most one "
		               "year (31622400 seconds)");
	req.owner = req.caller;
	if (lua_type(L, -1) == LUA_TNUMBER) {
		int isint;
		lua_Integer uid = lua_tointegerx(L, -1, &isint);
		/* (uid_t)-1 means "no uid" to the kernel */
		if (!isint || uid < 0 || uid >= 0xffffffffLL)
			return luaL_argerror(L, 1, "field 'user': a user name or a "
			                     "uid from 0 to 4294967294");
		req.owner = (uid_t)uid;
	} else if (!lua_isnil(L, -1)) {
		const char *u = luaL_checkstring(L, -1);
		if (kxgpu_user_uid(u, &req.owner) != 0)
			return kx_fail(L, "Unknown user: %s", u);
	}
	LEDGER_OR_FAIL(L, l, err);
	/* the first use of a ledger learns the devices; later ones never
	 * start OpenCL */
	if (kxgpu_ledger_devices(l, &s, err, sizeof err) != 0)
		return kx_fail(L, "%s", err);
	if (s.probed_ms == 0) {
		rc = refresh_devices(l, devs, err, sizeof err);
		if (rc >= 0) {
			memcpy(s.devices, devs, sizeof devs);
			s.ndevices = (uint32_t)rc;
		}
	}
	kxgpu_snapshot_free(&s);
	if (rc < 0)
		return kx_fail(L, "%s", err);
	if (kxgpu_ledger_create(l, &req, &p, err, sizeof err) != 0)
		return kx_fail(L, "%s", err);
	push_partition(L, &p, p.device < s.ndevices ? &s.devices[p.device] : NULL);
	return 1;
}

static int l_open(lua_State *L)
{
	const char *id = luaL_checkstring(L, 1);
	struct kxgpu_partition p;
	char err[KXGPU_ERRLEN];
	LEDGER_OR_FAIL(L, l, err);

	struct kxgpu_snapshot s;

	if (kxgpu_ledger_find(l, id, &p, err, sizeof err) != 0 ||
	    kxgpu_ledger_devices(l, &s, err, sizeof err) != 0)
		return kx_fail(L, "%s", err);
	push_partition(L, &p, p.device < s.ndevices ? &s.devices[p.device] : NULL);
	kxgpu_snapshot_free(&s);
	return 1;
}

static int l_release(lua_State *L)
{
	int released;

	return kxgpu_release(L, luaL_checkstring(L, 1), 2, &released);
}

/* ---- partition userdata ------------------------------------------------- */

static struct lpart *checkpart(lua_State *L)
{
	return luaL_checkudata(L, 1, PARTITION_T);
}

static int p_remaining(lua_State *L)
{
	struct lpart *lp = checkpart(L);
	int64_t left = lp->p.expires_ms - kxgpu_now_ms();

	lua_pushnumber(L, left > 0 && !lp->released ? left / 1e3 : 0);
	return 1;
}

/* Misuse of a released handle raises (liolib's rule for a closed file). */
static struct lpart *checklive(lua_State *L)
{
	struct lpart *lp = checkpart(L);

	if (lp->released)
		luaL_error(L, "attempt to use a released partition (%s)", lp->p.id);
	return lp;
}

static int p_release(lua_State *L)
{
	struct lpart *lp = checklive(L);

	return kxgpu_release(L, lp->p.id, 2, &lp->released);
}

/* <close>: released by force, nobody waiting; never raises (like a file's
 * __close), a failure is reported on stderr. */
static int p_close(lua_State *L)
{
	struct lpart *lp = checkpart(L);

	if (!lp->released) {
		lp->released = 1;
		kxgpu_release_quietly(lp->p.id);
	}
	return 0;
}

static int p_tostring(lua_State *L)
{
	struct lpart *lp = checkpart(L);

	lua_pushfstring(L, "%s: %s (device %d, %d MB, %s)", PARTITION_T, lp->p.id,
	                (int)lp->p.device, (int)(lp->p.bytes >> 20), lp->p.owner);
	return 1;
}


static int p_exec(lua_State *L)
{
	struct lpart *lp = checklive(L);

	return kxgpu_exec(L, &lp->p, 2);
}

static const luaL_Reg part_methods[] = {
	{ "remaining", p_remaining },
	{ "release", p_release },
	{ "exec", p_exec },
	{ NULL, NULL },
};

/* A field of the partition's record (a getter of the class). */
static int p_field(lua_State *L)
{
	struct lpart *lp = checkpart(L);
	const char *k = luaL_checkstring(L, 2);

	if (strcmp(k, "creator") == 0) {
		char name[64];
		kxgpu_user_name(lp->p.creator_uid, name, sizeof name);
		lua_pushstring(L, name);
	} else if (strcmp(k, "device_name") == 0) {
		lua_pushstring(L, lp->device_name);
	} else {
		push_partition_table(L, &lp->p);
		lua_getfield(L, -1, k);
	}
	return 1;
}

static const luaL_Reg part_getters[] = {
	{ "id", p_field }, { "device", p_field }, { "device_name", p_field },
	{ "memory", p_field }, { "ppm", p_field }, { "bytes", p_field },
	{ "owner", p_field }, { "uid", p_field }, { "pid", p_field },
	{ "creator", p_field }, { "creator_uid", p_field },
	{ "created", p_field }, { "expires", p_field },
	{ NULL, NULL },
};

/* no __gc: a partition outlives its userdata (and its process) */
static const luaL_Reg part_meta[] = {
	{ "__close", p_close },
	{ "__tostring", p_tostring },
	{ NULL, NULL },
};

/* gpu.usage(id) -> bytes the partition's programs hold now, its limit;
 * 0, limit when nothing ran in it yet. */
static int l_usage(lua_State *L)
{
	const char *id = luaL_checkstring(L, 1);
	char err[KXGPU_ERRLEN], path[4300];
	struct kxgpu_partition p;
	kxgpu_usage u;
	LEDGER_OR_FAIL(L, l, err);

	if (kxgpu_ledger_find(l, id, &p, err, sizeof err) != 0)
		return kx_fail(L, "%s", err);
	kxgpu_usage_path(l, p.id, path, sizeof path);
	if (kxgpu_usage_attach_ro(&u, path, err, sizeof err) != 0) {
		lua_pushinteger(L, 0);
	} else {  /* read-only: another user's partition too */
		lua_pushinteger(L, (lua_Integer)kxgpu_usage_held(&u));
		kxgpu_usage_detach(&u);
	}
	lua_pushinteger(L, (lua_Integer)p.bytes);
	return 2;
}

static const luaL_Reg funcs[] = {
	{ "state_dir", kxgpu_state_dir },
	{ "usage", l_usage },
	{ "serve", kxgpu_serve },
	{ "devices", l_devices },
	{ "stats", l_stats },
	{ "available", l_available },
	{ "list", l_list },
	{ "create", l_create },
	{ "open", l_open },
	{ "release", l_release },
	{ NULL, NULL },
};

int luaopen_kx_gpu(lua_State *L)
{
	kx_defclass(L, &(struct kx_class){ PARTITION_T, part_methods,
	                                   part_getters, part_meta });
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}
