/*
 * lopendc.c - kx.opendc: the OpenDC exporter and verifier for Lua.
 *
 *   local opendc = require "kx.opendc"
 *   local s, err = opendc.export("logs/RUN", "opendc_out")
 *   -- s = { nodes=, tasks=, fragments=, samples=, samples_used=,
 *   --       samples_late=, input_bytes=, files = { tasks=, fragments=,
 *   --       topology=, ids= } }
 *   local v, err = opendc.verify("opendc_out")   -- { tasks=, fragments= }
 *
 * Inside a task both run on libuv's thread pool and suspend only the
 * calling task; outside one (a plain C call path) they run in place.
 * Failures return nil, message (the first problem, FILE:LINE for input).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kx.h"
#include "opendc.h"

struct job {
	uv_work_t req;
	kx_task *task;
	bool verify, cancelled;
	char *in, *out;
	struct od_summary sum;
	struct od_verify ver;
	int rc;
	char err[1024];
};

static void set_int(lua_State *L, const char *k, int64_t v)
{
	lua_pushinteger(L, (lua_Integer)v);
	lua_setfield(L, -2, k);
}

static void set_file(lua_State *L, const char *dir, const char *k,
		     const char *name)
{
	lua_pushfstring(L, "%s/%s", dir, name);
	lua_setfield(L, -2, k);
}

static int push_result(lua_State *L, const struct job *j)
{
	if (j->rc < 0) {
		lua_pushnil(L);
		lua_pushstring(L, j->err);
		return 2;
	}
	lua_newtable(L);
	if (j->verify) {
		set_int(L, "tasks", j->ver.tasks);
		set_int(L, "fragments", j->ver.fragments);
		return 1;
	}
	set_int(L, "nodes", j->sum.nodes);
	set_int(L, "tasks", j->sum.tasks);
	set_int(L, "fragments", j->sum.fragments);
	set_int(L, "samples", j->sum.samples);
	set_int(L, "samples_used", j->sum.samples_used);
	set_int(L, "samples_late", j->sum.samples_late);
	set_int(L, "input_bytes", j->sum.input_bytes);
	lua_newtable(L);
	set_file(L, j->out, "tasks", "tasks.parquet");
	set_file(L, j->out, "fragments", "fragments.parquet");
	set_file(L, j->out, "topology", "topology.json");
	set_file(L, j->out, "ids", "ids.json");
	lua_setfield(L, -2, "files");
	return 1;
}

static void free_job(struct job *j)
{
	free(j->in);
	free(j->out);
	free(j);
}

static void run_job(struct job *j)
{
	if (j->verify)
		j->rc = od_verify(j->out, &j->ver, j->err, sizeof(j->err));
	else
		j->rc = od_export(j->in, j->out, &j->sum, j->err,
				  sizeof(j->err));
}

static void work(uv_work_t *req)
{
	run_job(req->data);
}

static void after_work(uv_work_t *req, int status)
{
	struct job *j = req->data;
	(void)status;
	if (!j->cancelled)
		kx_wake(j->task, push_result(kx_task_state(j->task), j));
	free_job(j);
}

/* The task is gone: the worker runs on (it cannot be stopped half-way
 * without leaving temporary files); after_work frees the job. */
static void cancel_job(void *ud)
{
	struct job *j = ud;
	j->cancelled = true;
	uv_cancel((uv_req_t *)&j->req);
}

static int start(lua_State *L, bool verify, const char *in, const char *out)
{
	struct job *j = calloc(1, sizeof(*j));
	int n, r;

	if (!j || (in && !(j->in = strdup(in))) || !(j->out = strdup(out))) {
		if (j)
			free_job(j);
		return kx_fail(L, "out of memory");
	}
	j->verify = verify;
	j->task = kx_current();
	if (!j->task) {
		run_job(j);
		n = push_result(L, j);
		free_job(j);
		return n;
	}
	j->req.data = j;
	r = uv_queue_work(kx_loop(), &j->req, work, after_work);
	if (r < 0) {
		free_job(j);
		return kx_fail(L, "cannot start: %s", uv_strerror(r));
	}
	return kx_await(L, j->task, -1, cancel_job, j);
}

static int l_export(lua_State *L)
{
	const char *in = luaL_checkstring(L, 1);
	const char *out = luaL_checkstring(L, 2);
	return start(L, false, in, out);
}

static int l_verify(lua_State *L)
{
	return start(L, true, NULL, luaL_checkstring(L, 1));
}

int luaopen_kx_opendc(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "export", l_export },
		{ "verify", l_verify },
		{ NULL, NULL },
	};
	luaL_newlib(L, fns);
	return 1;
}
