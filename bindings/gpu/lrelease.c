/*
 * lrelease.c - releasing a partition from Lua: gpu.release(id, opts),
 * partition:release(opts) and <close>.
 *
 * While programs run in a partition a plain release is refused with a
 * message naming them; by force (opts.force) they get SIGTERM, then SIGKILL
 * after opts.grace seconds (default 5), and the call returns once they are
 * gone and the partition is released: the task waits meanwhile (a timer
 * asks the ledger again every POLL_MS).  <close> releases by force without
 * waiting.
 */
#include "lgpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kx.h"

#define POLL_MS 50
/* How long past the grace a forced release waits for programs that do not
 * die (not ours to signal, stuck in the kernel) before it says so. */
#define GIVE_UP_MS 10000

struct ending {
	kx_task *task;          /* NULL: nobody waits (<close>, cancelled) */
	uv_timer_t timer;
	kxgpu_ledger *l;        /* its own: the state directory may change */
	char id[32];
	uint32_t grace_ms;
	int64_t give_up_ms;
};

static void ending_closed(uv_handle_t *h)
{
	struct ending *e = h->data;

	kxgpu_ledger_close(e->l);
	free(e);
}

static void on_poll(uv_timer_t *t)
{
	struct ending *e = t->data;
	char err[KXGPU_ERRLEN];
	int rc = kxgpu_ledger_release_force(e->l, e->id, getuid(), e->grace_ms,
	                                    NULL, err, sizeof err);

	if (rc == KXGPU_EAGAIN && kxgpu_now_ms() < e->give_up_ms)
		return;
	if (rc == KXGPU_ENOENT)
		rc = 0;  /* its programs ended: a read released it first */
	if (rc == KXGPU_EAGAIN)
		snprintf(err, sizeof err, "Partition %s: its programs did not end "
		         "%u s after SIGKILL", e->id, GIVE_UP_MS / 1000);
	if (e->task) {
		lua_State *T = kx_task_state(e->task);
		if (rc == 0) {
			lua_pushboolean(T, 1);
			kx_wake(e->task, 1);
		} else {
			lua_pushnil(T);
			lua_pushstring(T, err);
			kx_wake(e->task, 2);
		}
	} else if (rc != 0) {
		fprintf(stderr, "kxrun: %s\n", err);
	}
	uv_close((uv_handle_t *)t, ending_closed);
}

/* The waiting task is gone: the partition stays ending, and the ledger
 * kills what is left once the grace is over. */
static void ending_cancel(void *ud)
{
	struct ending *e = ud;

	e->task = NULL;
	uv_close((uv_handle_t *)&e->timer, ending_closed);
}

/* Polls the forced release of id until it is done; task NULL: nobody
 * waits.  NULL when out of memory or the ledger cannot be opened. */
static struct ending *start_ending(const char *dir, const char *id,
                                   uint32_t grace_ms, kx_task *task)
{
	struct ending *e = calloc(1, sizeof *e);
	char err[KXGPU_ERRLEN];

	if (!e || kxgpu_ledger_open(&e->l, dir, err, sizeof err) != 0) {
		free(e);
		return NULL;
	}
	e->task = task;
	snprintf(e->id, sizeof e->id, "%s", id);
	e->grace_ms = grace_ms;
	e->give_up_ms = kxgpu_now_ms() + grace_ms + GIVE_UP_MS;
	uv_timer_init(kx_loop(), &e->timer);
	e->timer.data = e;
	uv_timer_start(&e->timer, on_poll, POLL_MS, POLL_MS);
	return e;
}

int kxgpu_release(lua_State *L, const char *id, int opts, int *released)
{
	char err[KXGPU_ERRLEN];
	double grace = 5;
	int force = 0, rc;
	kxgpu_ledger *l;
	struct ending *e;
	kx_task *task;

	*released = 0;
	if (!lua_isnoneornil(L, opts)) {
		luaL_checktype(L, opts, LUA_TTABLE);
		if (lua_getfield(L, opts, "force") != LUA_TNIL)
			force = lua_toboolean(L, -1);
		if (lua_getfield(L, opts, "grace") != LUA_TNIL) {
			int isnum;
			grace = lua_tonumberx(L, -1, &isnum);
			if (!isnum || !(grace >= 0 && grace < 3600))
				return luaL_argerror(L, opts, "field 'grace': 0 to "
				                     "3600 seconds");
		}
		lua_pop(L, 2);
	}
	task = force ? kx_checktask(L, "release") : NULL;  /* it may wait */
	l = kxgpu_lua_ledger(err, sizeof err);
	if (!l)
		return kx_fail(L, "%s", err);
	rc = force ? kxgpu_ledger_release_force(l, id, getuid(),
	                                        (uint32_t)(grace * 1000), NULL,
	                                        err, sizeof err)
	           : kxgpu_ledger_release(l, id, getuid(), NULL, err, sizeof err);
	if (rc != 0 && rc != KXGPU_EAGAIN)
		return kx_fail(L, "%s", err);
	*released = 1;  /* released, or ending: no program starts in it now */
	if (rc == 0) {
		lua_pushboolean(L, 1);
		return 1;
	}
	e = start_ending(kxgpu_ledger_dir(l), id, (uint32_t)(grace * 1000),
	                 task);
	if (!e)
		return kx_fail(L, "out of memory");
	return kx_await(L, e->task, -1, ending_cancel, e);
}

void kxgpu_release_quietly(const char *id)
{
	char err[KXGPU_ERRLEN];
	kxgpu_ledger *l = kxgpu_lua_ledger(err, sizeof err);
	int rc = l ? kxgpu_ledger_release_force(l, id, getuid(), 5000, NULL, err,
	                                        sizeof err) : KXGPU_EIO;

	if (rc == KXGPU_EAGAIN && !start_ending(kxgpu_ledger_dir(l), id, 5000,
	                                        NULL))
		snprintf(err, sizeof err, "Partition %s: out of memory", id);
	else if (rc == KXGPU_EAGAIN || rc == 0 || rc == KXGPU_ENOENT)
		return;  /* ENOENT: it expired */
	fprintf(stderr, "kxrun: cannot release %s at the end of its scope: %s\n",
	        id, err);
}
