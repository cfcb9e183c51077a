/*
 * lvtime.c - Lua binding kx.vtime (docs/MANUAL.md §5; manual: README.md here).
 *
 *   vtime.experiment{step=ns, backend="auto"|"signal"|"freezer"|
 *                    "freezer-v1"|"freezer-v2"|"kmod", slice=s,
 *                    budget="cpu"|"instructions"}
 *       -> exp | nil, message      (slice: real seconds a round may last)
 *   exp:spawn(argv, {speed=, timeline=, env={K=V}, stdout=, stderr=})
 *       -> proc | nil, msg
 *   exp:freeze()  exp:advance(n) -> now  exp:run_until(vt) -> now
 *   exp:now()  exp:stop()  exp:stats()  exp.backend  exp.step  exp.rounds
 *   exp.cgroup  exp.budget  exp.budget_note
 *   proc.pid  proc.speed  proc.timeline  proc.cpu_pinned  proc:now()
 *   proc:cpu()  proc:alive()  proc:status()
 *   vtime.cleanup() -> removed cgroups
 *
 * advance suspends the calling task; rounds are driven from a libuv idle
 * handle, at most ~5 ms of real time per loop iteration.
 */
#include "vtime.h"

#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kx.h"

#define EXP_T "kx.vtime.experiment"
#define PROC_T "kx.vtime.process"

#define TURN_NS 5000000  /* real ns of rounds per loop iteration */

struct lexp {
	struct lexp *next, **prevp; /* live experiments (the atexit hook's) */
	struct vt_exp *e;
	uv_idle_t idle;
	int refs;            /* userdata + pending child watches + atexit */
	kx_task *task;       /* the task in advance(), or NULL */
	int64_t target;      /* round at which advance ends */
	int64_t first;       /* round at which it started */
	int64_t start_real;  /* real ns when it started */
	int shown;           /* progress drawn for it */
};

struct uexp { struct lexp *x; };
struct uproc { struct lexp *x; int idx; };

static struct lexp *live;

static void lexp_closed(uv_handle_t *h)
{
	struct lexp *x = h->data;
	*x->prevp = x->next;
	if (x->next)
		x->next->prevp = x->prevp;
	vt_exp_free(x->e);
	free(x);
}

static void lexp_unref(struct lexp *x)
{
	if (--x->refs == 0)
		uv_close((uv_handle_t *)&x->idle, lexp_closed);
}

/* A long advance shows its progress on a terminal (kx_progress: nothing
 * when stderr is not one): rounds done of the call's, virtual and real
 * time.  Only once it has run PROGRESS_AFTER_NS, so short calls stay
 * silent; the line ends with the call. */
#define PROGRESS_AFTER_NS 1000000000
static void show_progress(struct lexp *x, int end)
{
	int64_t real = vt_mono_ns() - x->start_real;
	if (!x->shown && (end || real < PROGRESS_AFTER_NS))
		return;
	x->shown = 1;
	char label[160];
	int64_t total = x->target - x->first, done = x->e->round - x->first;
	if (end && done < total) { /* stopped early: the line ends here */
		snprintf(label, sizeof label, "vtime: stopped after %lld of %lld rounds, "
		         "%.6f s virtual, %.1f s real, rounds", (long long)done,
		         (long long)total, vt_now(x->e) / 1e9, real / 1e9);
		total = done;
	} else {
		snprintf(label, sizeof label, "vtime: %.6f s virtual, %.1f s real, "
		         "rounds", vt_now(x->e) / 1e9, real / 1e9);
	}
	kx_progress(label, (double)done, (double)(total > 0 ? total : 1));
}

static void finish_advance(struct lexp *x)
{
	show_progress(x, 1);
	kx_task *t = x->task;
	x->task = NULL;
	uv_idle_stop(&x->idle);
	vt_hold(x->e);
	if (t) {
		lua_State *T = kx_task_state(t);
		lua_pushinteger(T, vt_now(x->e));
		kx_wake(t, 1);
	}
}

static int any_alive(struct vt_exp *e)
{
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].alive)
			return 1;
	return 0;
}

/* Rounds until the target, TURN_NS of real time per loop iteration. */
static void on_idle(uv_idle_t *h)
{
	struct lexp *x = h->data;
	struct vt_exp *e = x->e;
	int64_t t0 = vt_mono_ns();
	for (;;) {
		int64_t left = TURN_NS - (vt_mono_ns() - t0);
		if (left <= 0)
			return;
		if (!e->in_round) {
			if (e->round >= x->target) {
				finish_advance(x);
				return;
			}
			if (!any_alive(e)) { /* nobody to run: the clock jumps */
				e->round = x->target;
				vt_set_clock(e, e->round * e->step);
				finish_advance(x);
				return;
			}
			vt_round_begin(e);
		}
		if (!vt_round_poll(e, left))
			return;
		show_progress(x, 0);
	}
}

static void advance_cancel(void *ud)
{
	struct lexp *x = ud;
	show_progress(x, 1);
	x->task = NULL;
	uv_idle_stop(&x->idle);
	if (x->e->in_round && !x->e->stopped)
		vt_round_abort(x->e);
}

static struct lexp *checkexp(lua_State *L)
{
	struct uexp *u = luaL_checkudata(L, 1, EXP_T);
	if (!u->x)
		luaL_argerror(L, 1, "experiment already collected");
	return u->x;
}

/* Acting on a stopped experiment is a mistake: it raises (reading its
 * clock, rounds and counters is not). */
static struct lexp *checkexp_live(lua_State *L, const char *fname)
{
	struct lexp *x = checkexp(L);
	if (x->e->stopped)
		luaL_error(L, "%s: the experiment is stopped", fname);
	return x;
}

static int do_advance(lua_State *L, struct lexp *x, int64_t n)
{
	struct vt_exp *e = x->e;
	if (!e->frozen)
		return luaL_error(L, "advance before freeze: call exp:freeze() first");
	if (x->task)
		return luaL_error(L, "advance: another task is advancing this experiment");
	if (n <= 0) {
		lua_pushinteger(L, vt_now(e));
		return 1;
	}
	kx_task *t = kx_checktask(L, "advance");
	x->task = t;
	x->target = e->advance_to = e->round + n;
	x->first = e->round;
	x->start_real = vt_mono_ns();
	x->shown = 0;
	if (!any_alive(e)) {
		e->round = x->target;
		vt_set_clock(e, e->round * e->step);
		x->task = NULL;
		lua_pushinteger(L, vt_now(e));
		return 1;
	}
	uv_idle_start(&x->idle, on_idle);
	return kx_await(L, t, -1, advance_cancel, x);
}

static int e_advance(lua_State *L)
{
	struct lexp *x = checkexp_live(L, "advance");
	lua_Integer n = luaL_checkinteger(L, 2);
	luaL_argcheck(L, n >= 0, 2, "rounds must be >= 0");
	return do_advance(L, x, n);
}

static int e_run_until(lua_State *L)
{
	struct lexp *x = checkexp_live(L, "run_until");
	lua_Integer vt = luaL_checkinteger(L, 2);
	luaL_argcheck(L, vt >= 0, 2, "virtual time must be >= 0 ns");
	int64_t now = x->e->round * x->e->step;
	int64_t n = vt > now ? (vt - now + x->e->step - 1) / x->e->step : 0;
	return do_advance(L, x, n);
}

static int e_freeze(lua_State *L)
{
	struct lexp *x = checkexp_live(L, "freeze");
	if (x->task)
		return luaL_error(L, "freeze: an advance is in progress");
	vt_freeze(x->e);
	return 0;
}

static int e_now(lua_State *L)
{
	lua_pushinteger(L, vt_now(checkexp(L)->e));
	return 1;
}

static int e_stop(lua_State *L)
{
	struct lexp *x = checkexp(L);
	if (x->task) {
		kx_task *t = x->task;
		show_progress(x, 1);
		x->task = NULL;
		uv_idle_stop(&x->idle);
		lua_State *T = kx_task_state(t);
		lua_pushnil(T);
		lua_pushstring(T, "experiment stopped");
		kx_wake(t, 2);
	}
	vt_exp_stop(x->e);
	return 0;
}

struct watch { struct lexp *x; };

static void on_exit_cb(pid_t pid, int ws, void *ud)
{
	struct watch *w = ud;
	vt_proc_exited(w->x->e, pid, ws);
	lexp_unref(w->x);
	free(w);
}

/* Argument errors name the option: "bad argument #2 to 'spawn' (field
 * 'timeline': an integer >= 0 expected, got -1)". */
static int opt_error(lua_State *L, int arg, const char *k, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	const char *msg = lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	return kx_fielderror(L, arg, k, msg);
}

/* Every string key of the options table at arg is one of known (a typo
 * must not pass silently); other keys are argv's (the one-table form). */
static void check_keys(lua_State *L, int arg, const char *const known[])
{
	lua_pushnil(L);
	while (lua_next(L, arg)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			continue;
		const char *k = lua_tostring(L, -1);
		int ok = 0;
		for (int i = 0; known[i] && !ok; i++)
			ok = !strcmp(k, known[i]);
		if (!ok)
			luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", k));
	}
}

/* A number field > 0 and finite, or def when absent. */
static double opt_positive(lua_State *L, int arg, const char *k, double def,
                           const char *what)
{
	int t = lua_getfield(L, arg, k);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return def;
	}
	double v = lua_tonumber(L, -1);
	if (t != LUA_TNUMBER || !(v > 0) || !isfinite(v))
		opt_error(L, arg, k, "%s, a number > 0 (got %s)", what,
		          luaL_tolstring(L, -1, NULL));
	lua_pop(L, 1);
	return v;
}


static const char *const spawn_opts[] = {"speed", "timeline", "env", "stdout",
                                         "stderr", NULL};

/* exp:spawn(argv, opts) or exp:spawn{argv..., opts...} */
static int e_spawn(lua_State *L)
{
	struct lexp *x = checkexp_live(L, "spawn");
	if (x->e->in_round || x->task)
		return luaL_error(L, "spawn during an advance: wait for it to return");
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 3);
	int oi = lua_isnil(L, 3) ? 2 : 3; /* where the options are */
	if (oi == 3)
		luaL_checktype(L, 3, LUA_TTABLE);
	int n = (int)luaL_len(L, 2);
	luaL_argcheck(L, n >= 1, 2, "argv must have a program");
	check_keys(L, oi, spawn_opts);
	if (oi == 3)
		check_keys(L, 2, (const char *const[]){NULL});
	double speed = opt_positive(L, oi, "speed", 1.0, "relative CPU speed");
	lua_Integer timeline = -1;
	int t = lua_getfield(L, oi, "timeline");
	if (t != LUA_TNIL) {
		int isint;
		timeline = lua_tointegerx(L, -1, &isint);
		if (!isint || timeline < 0 || timeline >= (1 << 30))
			opt_error(L, oi, "timeline", "an integer >= 0 expected, got %s",
			          luaL_tolstring(L, -1, NULL));
	}
	lua_pop(L, 1);
	const char *out = kx_optstringfield(L, oi, "stdout", NULL);
	const char *err = kx_optstringfield(L, oi, "stderr", NULL);
	char **argv = lua_newuserdatauv(L, (n + 1) * sizeof(char *), 0);
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i);
		if (!lua_isstring(L, -1))
			luaL_argerror(L, 2, lua_pushfstring(L, "argv[%d]: string expected, "
			              "got %s", i, luaL_typename(L, -1)));
		argv[i - 1] = (char *)lua_tostring(L, -1);
		lua_pop(L, 1); /* the string stays in the table */
	}
	argv[n] = NULL;
	int nenv = 0;
	char **env = NULL;
	t = lua_getfield(L, oi, "env");
	if (t != LUA_TNIL && t != LUA_TTABLE)
		opt_error(L, oi, "env", "a table {NAME = value} expected, got %s",
		          lua_typename(L, t));
	if (t == LUA_TTABLE) {
		int envi = lua_gettop(L);
		lua_pushnil(L);
		while (lua_next(L, envi)) {
			if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
				opt_error(L, oi, "env", "names and values must be strings "
				          "(got %s = %s)", luaL_typename(L, -2),
				          luaL_typename(L, -1));
			nenv++, lua_pop(L, 1);
		}
		env = lua_newuserdatauv(L, (nenv + 1) * sizeof(char *), 0);
		int k = 0;
		lua_pushnil(L);
		while (lua_next(L, envi)) {
			lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
			env[k++] = (char *)lua_tostring(L, -1);
			lua_insert(L, envi); /* keep the string alive below */
			envi++;
			lua_pop(L, 1);
		}
		env[k] = NULL;
	}
	char msg[512];
	struct vt_spawn_opts o = {speed, (int)timeline, out, err};
	int idx = vt_spawn(x->e, argv, env, kx_libdir(), &o, msg, sizeof msg);
	if (idx < 0)
		return kx_fail(L, "%s", msg);
	pid_t pid = x->e->procs[idx].pid;
	struct watch *w = malloc(sizeof *w);
	w->x = x;
	x->refs++;
	if (kx_child_watch(pid, on_exit_cb, w) < 0) {
		x->refs--;
		free(w);
	}
	struct uproc *u = lua_newuserdatauv(L, sizeof *u, 1);
	u->x = x;
	u->idx = idx;
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, 1); /* the proc keeps its experiment alive */
	luaL_setmetatable(L, PROC_T);
	return 1;
}

/* getters: exp.step, exp.rounds, exp.backend, exp.cgroup */
static int e_step(lua_State *L)
{
	lua_pushinteger(L, checkexp(L)->e->step);
	return 1;
}

static int e_rounds(lua_State *L)
{
	lua_pushinteger(L, checkexp(L)->e->round);
	return 1;
}

static int e_backend(lua_State *L)
{
	lua_pushstring(L, vt_backend_name(checkexp(L)->e));
	return 1;
}

/* what budgets count (CPU time: instruction budgets are not built), and
 * why not instructions when they were asked for (kmod_backend.c) */
static int e_budget(lua_State *L)
{
	checkexp(L);
	lua_pushstring(L, "cpu");
	return 1;
}

static int e_budget_note(lua_State *L)
{
	struct vt_exp *e = checkexp(L)->e;
	e->budget_note[0] ? (void)lua_pushstring(L, e->budget_note) : lua_pushnil(L);
	return 1;
}

static int e_cgroup(lua_State *L)
{
	struct vt_exp *e = checkexp(L)->e;
	e->cg_path[0] ? (void)lua_pushstring(L, e->cg_path) : lua_pushnil(L);
	return 1;
}

static int e_gc(lua_State *L)
{
	struct uexp *u = luaL_checkudata(L, 1, EXP_T);
	if (u->x) {
		e_stop(L);
		lexp_unref(u->x);
		u->x = NULL;
	}
	return 0;
}

static struct vt_proc *checkproc(lua_State *L, struct lexp **xo)
{
	struct uproc *u = luaL_checkudata(L, 1, PROC_T);
	*xo = u->x;
	return &u->x->e->procs[u->idx];
}

static int p_now(lua_State *L)
{
	struct uproc *u = luaL_checkudata(L, 1, PROC_T);
	lua_pushinteger(L, vt_proc_now(u->x->e, u->idx));
	return 1;
}

/* CPU ns its shares of the rounds were charged: its process CPU clock (its
 * process tree's task-clock when it has children). */
static int p_cpu(lua_State *L)
{
	struct lexp *x;
	lua_pushinteger(L, checkproc(L, &x)->charged_ns);
	return 1;
}

static int e_stats(lua_State *L)
{
	const struct vt_exp *e = checkexp(L)->e;
	const struct { const char *name; int64_t value; } stats[] = {
		{"rounds", e->round},           {"capped", e->rounds_capped},
		{"overshoot_ns", e->overshoot}, {"budget_stops", e->n_budget},
		{"blocked_stops", e->n_blocked}, {"early_stops", e->n_rearm},
		{"asleep_skipped", e->n_asleep}, {"debt_skipped", e->n_debt},
		{"strays_continued", e->n_stray}, {"resume_cost_ns", e->resume_cost},
		{"shares", e->n_shares}, {"stop_cpu_ns", e->stop_cpu},
		{"resume_cost_measuring", e->cost_source == VT_COST_MEASURING},
		{"batched_rounds", e->n_batched},
	};
	lua_createtable(L, 0, (int)(sizeof stats / sizeof stats[0]));
	for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++) {
		lua_pushinteger(L, stats[i].value);
		lua_setfield(L, -2, stats[i].name);
	}
	return 1;
}

static int p_alive(lua_State *L)
{
	struct lexp *x;
	lua_pushboolean(L, checkproc(L, &x)->alive);
	return 1;
}

static int p_status(lua_State *L)
{
	struct lexp *x;
	struct vt_proc *p = checkproc(L, &x);
	if (p->alive)
		return lua_pushnil(L), 1;
	lua_createtable(L, 0, 1);
	if (WIFSIGNALED(p->wstatus)) {
		lua_pushinteger(L, WTERMSIG(p->wstatus));
		lua_setfield(L, -2, "signal");
	} else {
		lua_pushinteger(L, WEXITSTATUS(p->wstatus));
		lua_setfield(L, -2, "code");
	}
	return 1;
}

/* getters: proc.pid, proc.speed, proc.timeline (nil: a timeline of its
 * own), proc.cpu_pinned (nil: not pinned) */
static int p_pid(lua_State *L)
{
	struct lexp *x;
	lua_pushinteger(L, checkproc(L, &x)->pid);
	return 1;
}

static int p_speed(lua_State *L)
{
	struct lexp *x;
	lua_pushnumber(L, checkproc(L, &x)->speed);
	return 1;
}

static int p_timeline(lua_State *L)
{
	struct lexp *x;
	struct vt_proc *p = checkproc(L, &x);
	p->timeline >= 0 ? lua_pushinteger(L, p->timeline) : lua_pushnil(L);
	return 1;
}

static int p_cpu_pinned(lua_State *L)
{
	struct lexp *x;
	struct vt_proc *p = checkproc(L, &x);
	p->cpu >= 0 ? lua_pushinteger(L, p->cpu) : lua_pushnil(L);
	return 1;
}

/* kxrun's exit ends the experiment, whatever way it comes (the host's
 * process-group book is not used: the experiment's processes are more than
 * its leaders' groups, and a killed controller's are the supervisor's). */
static void at_exit(void *ud)
{
	struct lexp *x = ud;
	vt_exp_stop(x->e);
}

/* Notes collected into the table at the top of the stack: {what, ctl}. */
static void note_to_table(void *ud, pid_t ctl, const char *what)
{
	lua_State *L = ud;
	lua_createtable(L, 2, 0);
	lua_pushstring(L, what);
	lua_rawseti(L, -2, 1);
	lua_pushinteger(L, ctl);
	lua_rawseti(L, -2, 2);
	lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
}

/* "kxrun: vtime: killed controller 12: ended process 34 (sleep)" */
static void note_to_stderr(void *ud, pid_t ctl, const char *what)
{
	fprintf(stderr, "kxrun: vtime: %s %d: %s\n", (const char *)ud, (int)ctl,
	        what);
}

/* vtime.cleanup([fn]) -> cgroups removed [, error]; fn(what, controller_pid)
 * for each thing ended or removed. */
static int l_cleanup(lua_State *L)
{
	char msg[512];
	if (!lua_isnoneornil(L, 1))
		luaL_checktype(L, 1, LUA_TFUNCTION);
	lua_settop(L, 1);
	lua_newtable(L);
	int n = vt_cleanup(note_to_table, L, msg, sizeof msg);
	for (lua_Integer i = 1; !lua_isnil(L, 1) && i <= luaL_len(L, 2); i++) {
		lua_pushvalue(L, 1);
		lua_rawgeti(L, 2, i);
		lua_rawgeti(L, -1, 1);
		lua_rawgeti(L, -2, 2);
		lua_remove(L, -3);
		lua_call(L, 2, 0);
	}
	lua_pushinteger(L, n);
	if (msg[0]) {
		lua_pushstring(L, msg);
		return 2;
	}
	return 1;
}

/* vtime._supervise(controller_pid, pidfd): the supervisor process's body
 * (`kxrun vtime supervise`); what it ends is named on stderr. */
static int l_supervise(lua_State *L)
{
	pid_t ctl = (pid_t)luaL_checkinteger(L, 1);
	int fd = (int)luaL_checkinteger(L, 2);
	char msg[512];
	if (vt_supervise(fd, ctl, note_to_stderr, "killed controller", msg, sizeof msg) < 0)
		return kx_fail(L, "%s", msg);
	lua_pushboolean(L, 1);
	return 1;
}

static const char *const cost_sources[] = {
	[VT_COST_NONE] = "none", [VT_COST_GUESS] = "guess",
	[VT_COST_MEASURING] = "measuring", [VT_COST_CACHED] = "cached",
	[VT_COST_MEASURED] = "measured", [VT_COST_PINNED] = "pinned",
};

/* {resume_cost_ns=, source=, file=}: the value an experiment made now
 * takes and where it comes from. */
static void push_calibration(lua_State *L, int64_t v, enum vt_cost_source src)
{
	char path[512];
	lua_createtable(L, 0, 3);
	lua_pushinteger(L, v);
	lua_setfield(L, -2, "resume_cost_ns");
	lua_pushstring(L, cost_sources[src]);
	lua_setfield(L, -2, "source");
	if (vt_calibration_path(path, sizeof path) == 0) {
		lua_pushstring(L, path);
		lua_setfield(L, -2, "file");
	}
}

/* vtime.calibration() -> {resume_cost_ns, source, file}; starts measuring
 * in the background when this boot has no value yet. */
static int l_calibration(lua_State *L)
{
	enum vt_cost_source src;
	int64_t v = vt_resume_cost(&src);
	push_calibration(L, v, src);
	return 1;
}

/* vtime.calibrate() -> {resume_cost_ns, source = "measured", file,
 * not_kept = why} | nil, message: measures now (~0.1 s, blocking) and
 * keeps the value in the file. */
static int l_calibrate(lua_State *L)
{
	char msg[512];
	int64_t v = vt_calibrate(msg, sizeof msg);
	if (v < 0)
		return kx_fail(L, "%s", msg);
	push_calibration(L, v, VT_COST_MEASURED);
	if (msg[0]) {
		lua_pushstring(L, msg);
		lua_setfield(L, -2, "not_kept");
	}
	return 1;
}

static void on_supervisor_exit(pid_t pid, int ws, void *ud)
{
	(void)pid, (void)ws, (void)ud;
}

/* Once per kxrun, before its first experiment: clear what dead controllers
 * left (named on stderr) and start the supervisor that ends this one's
 * processes if it dies without stopping them (SIGKILL). */
static void first_experiment(void)
{
	static int done;
	char msg[512];
	if (done)
		return;
	done = 1;
	vt_cleanup(note_to_stderr, "dead controller", msg, sizeof msg);
	if (msg[0])
		fprintf(stderr, "kxrun: vtime: %s\n", msg);
	pid_t pid = vt_supervisor_start(kx_exe(), msg, sizeof msg);
	if (pid < 0)
		fprintf(stderr, "kxrun: vtime: no supervisor (%s): if kxrun is killed, "
		        "`kxrun vtime cleanup` ends its dilated processes\n", msg);
	else
		kx_child_watch(pid, on_supervisor_exit, NULL);
}

static const char *const exp_opts[] = {"step", "backend", "slice",
                                       "resume_cost", "budget", NULL};

static int l_experiment(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	check_keys(L, 1, exp_opts);
	int isnum = lua_getfield(L, 1, "step") == LUA_TNUMBER;
	lua_Number stepn = lua_tonumber(L, -1);
	if (!isnum || !(stepn >= 1) || stepn > 0x1p47 || stepn != floor(stepn))
		opt_error(L, 1, "step", "virtual ns per round, an integer > 0 and "
		          "<= 2^47 (got %s)", luaL_tolstring(L, -1, NULL));
	lua_pop(L, 1);
	const char *backend = kx_optstringfield(L, 1, "backend", "auto");
	if (!vt_backend_known(backend))
		opt_error(L, 1, "backend", "unknown backend '%s' (%s)", backend,
		          VT_BACKEND_NAMES);
	double slice = opt_positive(L, 1, "slice", 0, "real seconds a round may last");
	const char *budget = kx_optstringfield(L, 1, "budget", "cpu");
	if (strcmp(budget, "cpu") && strcmp(budget, "instructions"))
		opt_error(L, 1, "budget", "unknown budget '%s' (cpu, instructions)", budget);
	int64_t resume_cost = -1;
	int t = lua_getfield(L, 1, "resume_cost");
	if (t != LUA_TNIL) {
		int isint;
		resume_cost = lua_tointegerx(L, -1, &isint);
		if (!isint || resume_cost < 0 || resume_cost > 1000000000)
			opt_error(L, 1, "resume_cost", "CPU ns, an integer >= 0 expected, got %s",
			          luaL_tolstring(L, -1, NULL));
	}
	lua_pop(L, 1);
	char msg[512];
	first_experiment();
	struct vt_exp *e = vt_exp_new((int64_t)stepn, backend, msg, sizeof msg);
	if (!e)
		return kx_fail(L, "%s", msg);
	vt_budget_choose(e, !strcmp(budget, "instructions"));
	struct lexp *x = calloc(1, sizeof *x);
	x->e = e;
	x->refs = 2; /* userdata, atexit */
	e->slice_cap = (int64_t)(slice * 1e9);
	if (resume_cost >= 0) {
		e->resume_cost = resume_cost;
		e->cost_source = VT_COST_PINNED;
	} else {
		e->resume_cost = vt_resume_cost(&e->cost_source);
	}
	uv_idle_init(kx_loop(), &x->idle);
	x->idle.data = x;
	x->next = live;
	if (live)
		live->prevp = &x->next;
	x->prevp = &live;
	live = x;
	kx_atexit(at_exit, x);
	struct uexp *u = lua_newuserdatauv(L, sizeof *u, 0);
	u->x = x;
	luaL_setmetatable(L, EXP_T);
	return 1;
}

static const luaL_Reg exp_methods[] = {
	{"spawn", e_spawn}, {"freeze", e_freeze}, {"advance", e_advance},
	{"run_until", e_run_until}, {"now", e_now}, {"stop", e_stop},
	{"stats", e_stats}, {NULL, NULL}};
static const luaL_Reg proc_methods[] = {
	{"now", p_now}, {"cpu", p_cpu}, {"alive", p_alive}, {"status", p_status},
	{NULL, NULL}};
static const luaL_Reg funcs[] = {
	{"experiment", l_experiment}, {"cleanup", l_cleanup},
	{"calibration", l_calibration}, {"calibrate", l_calibrate},
	{"_supervise", l_supervise}, {NULL, NULL}};

static const luaL_Reg exp_getters[] = {
	{"step", e_step}, {"rounds", e_rounds}, {"backend", e_backend},
	{"cgroup", e_cgroup}, {"budget", e_budget}, {"budget_note", e_budget_note},
	{NULL, NULL}};
static const luaL_Reg exp_meta[] = {{"__gc", e_gc}, {NULL, NULL}};
static const luaL_Reg proc_getters[] = {
	{"pid", p_pid}, {"speed", p_speed}, {"timeline", p_timeline},
	{"cpu_pinned", p_cpu_pinned}, {NULL, NULL}};

int luaopen_kx_vtime(lua_State *L)
{
	kx_defclass(L, &(struct kx_class){EXP_T, exp_methods, exp_getters, exp_meta});
	lua_pop(L, 1);
	kx_defclass(L, &(struct kx_class){PROC_T, proc_methods, proc_getters, NULL});
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}
