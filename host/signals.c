/*
 * signals.c - SIGINT/SIGTERM (terminate every child group, flush, exit
 * 130/143, or a user handler), kx.signal and kx.every.
 *
 * SIGINT and SIGTERM get a handler of our own rather than uv_signal: when Lua
 * is busy in a long computation the loop does not run, so the handler also
 * sets a Lua hook on the running task (as lua.c does) to stop it there.  A
 * second signal before the first is handled kills every child group at once.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"

#define SIGNAL_MT "kx.signal"
#define TIMER_MT "kx.timer"

static const struct {
	const char *name;
	int sig;
} signames[] = {
	{"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL},
	{"TRAP", SIGTRAP}, {"ABRT", SIGABRT}, {"BUS", SIGBUS}, {"FPE", SIGFPE},
	{"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},
	{"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
	{"TERM", SIGTERM}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},
	{"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
	{"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU},
	{"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
	{"WINCH", SIGWINCH}, {"IO", SIGIO}, {"PWR", SIGPWR}, {"SYS", SIGSYS},
	{NULL, 0},
};

/* A signal given as a number, "TERM" or "SIGTERM". */
int kx_checksignal(lua_State *L, int arg, int def)
{
	if (lua_isnoneornil(L, arg))
		return def;
	if (lua_type(L, arg) == LUA_TNUMBER) {
		lua_Integer n = luaL_checkinteger(L, arg);
		luaL_argcheck(L, n >= 0 && n < 65, arg, "no such signal");
		return (int)n;
	}
	const char *s = luaL_checkstring(L, arg);
	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (int i = 0; signames[i].name; i++)
		if (strcmp(signames[i].name, s) == 0)
			return signames[i].sig;
	return luaL_argerror(L, arg, lua_pushfstring(L, "no signal named '%s'",
						     lua_tostring(L, arg)));
}

const char *kx_signame(int sig)
{
	for (int i = 0; signames[i].name; i++)
		if (signames[i].sig == sig)
			return signames[i].name;
	return "?";
}

static uv_async_t sig_async;
static int user_handler[2] = {LUA_NOREF, LUA_NOREF}; /* INT, TERM */

static int *handler_slot(int sig)
{
	return sig == SIGINT ? &user_handler[0] : &user_handler[1];
}

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	lua_sethook(L, NULL, 0, 0);
	int sig = kx_host.interrupted;
	if (kx_host.repl && sig == SIGINT) {
		kx_host.interrupted = 0;
		/* the line is interrupted as if cancelled: what it spawned goes */
		if (kx_current())
			kx_task_interrupted(kx_current());
		luaL_error(L, "interrupted");
	}
	kx_shutdown(128 + sig);
}

static void on_term_signal(int sig)
{
	if (kx_host.interrupted && !kx_host.repl) {
		kx_kill_groups_now();
		_exit(128 + sig);
	}
	kx_host.interrupted = sig;
	if (*handler_slot(sig) == LUA_NOREF) {
		lua_State *co = kx_running_thread();
		if (co)
			lua_sethook(co, interrupt_hook,
				    LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
	}
	uv_async_send(&sig_async);
}

static void on_sig_async(uv_async_t *h)
{
	(void)h;
	int sig = kx_host.interrupted;
	if (!sig)
		return;
	int ref = *handler_slot(sig);
	if (ref != LUA_NOREF) {
		kx_host.interrupted = 0;
		lua_State *L = kx_host.L;
		lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
		lua_pushstring(L, kx_signame(sig));
		kx_go(L, 1, 0);
		return;
	}
	if (kx_host.repl && sig == SIGINT && kx_host.on_interrupt) {
		kx_host.interrupted = 0;
		kx_host.on_interrupt();
		return;
	}
	kx_shutdown(128 + sig);
}

static void install_handlers(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	memset(&sig_async, 0, sizeof sig_async);
	uv_async_init(kx_host.loop, &sig_async, on_sig_async);
	uv_unref((uv_handle_t *)&sig_async);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* A resumed child: the async on the new loop, our handlers installed again
 * (the resuming process had its own, at its own addresses), and none of
 * the parent's kx.signal handlers. */
static void signals_after_resume(void *ud)
{
	(void)ud;
	install_handlers();
	user_handler[0] = user_handler[1] = LUA_NOREF;
}

void kx_signals_init(lua_State *L)
{
	(void)L;
	install_handlers();
	kx_on_resume(signals_after_resume, NULL);
}

/* ---- kx.signal(name, fn) ---------------------------------------------------- */

struct sighandle {
	uv_signal_t h;   /* unused for INT and TERM */
	unsigned loop_gen; /* of the loop it was set up on */
	int sig;
	int fn_ref;
	int self_ref;
	int active;
};

static void on_user_signal(uv_signal_t *h, int sig)
{
	struct sighandle *s = h->data;
	lua_State *L = kx_host.L;
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
	lua_pushstring(L, kx_signame(sig));
	kx_go(L, 1, 0);
}

static void sighandle_closed(uv_handle_t *h)
{
	struct sighandle *s = h->data;
	luaL_unref(kx_host.L, LUA_REGISTRYINDEX, s->self_ref);
	s->self_ref = LUA_NOREF;
}

static int l_signal_stop(lua_State *L)
{
	struct sighandle *s = luaL_checkudata(L, 1, SIGNAL_MT);
	if (!s->active)
		return 0;
	s->active = 0;
	if (s->loop_gen != kx_host.loop_gen) {
		/* the parent's, in a resumed child: already gone */
		luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
		s->self_ref = LUA_NOREF;
	} else if (s->sig == SIGINT || s->sig == SIGTERM) {
		int *slot = handler_slot(s->sig);
		if (*slot == s->fn_ref)
			*slot = LUA_NOREF;
		luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
		s->self_ref = LUA_NOREF;
	} else {
		uv_close((uv_handle_t *)&s->h, sighandle_closed);
	}
	return 0;
}

/* kx.signal(name, fn) -> handle with :stop(); fn(name) runs as a task. */
static int l_signal(lua_State *L)
{
	int sig = kx_checksignal(L, 1, 0);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	luaL_argcheck(L, sig != SIGKILL && sig != SIGSTOP && sig > 0, 1,
		      "cannot be caught");
	struct sighandle *s = lua_newuserdatauv(L, sizeof *s, 1);
	memset(s, 0, sizeof *s);
	luaL_setmetatable(L, SIGNAL_MT);
	s->sig = sig;
	s->loop_gen = kx_host.loop_gen;
	lua_pushvalue(L, 2);
	lua_setiuservalue(L, -2, 1);
	lua_pushvalue(L, 2);
	s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, -1);
	s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	s->active = 1;
	if (sig == SIGINT || sig == SIGTERM) {
		*handler_slot(sig) = s->fn_ref;
		return 1;
	}
	uv_signal_init(kx_host.loop, &s->h);
	s->h.data = s;
	int r = uv_signal_start(&s->h, on_user_signal, sig);
	if (r < 0)
		return kx_fail(L, "signal %s: %s", kx_signame(sig), uv_strerror(r));
	return 1;
}

/* ---- kx.every(s, fn) ----------------------------------------------------------- */

struct ktimer {
	uv_timer_t h;
	int fn_ref;
	int self_ref;
	int last_ref;    /* the task of the previous tick */
	kx_task *last;
	int active;
};

static void on_tick(uv_timer_t *h)
{
	struct ktimer *t = h->data;
	lua_State *L = kx_host.L;
	if (t->last && !kx_task_finished(t->last))
		return;   /* the previous tick still runs: skip, do not pile up */
	luaL_unref(L, LUA_REGISTRYINDEX, t->last_ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
	t->last = kx_go(L, 0, 1);
	t->last_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void timer_closed(uv_handle_t *h)
{
	struct ktimer *t = h->data;
	lua_State *L = kx_host.L;
	luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, t->last_ref);
	t->last = NULL;
	t->last_ref = LUA_NOREF;
	luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
	t->self_ref = LUA_NOREF;
}

static int l_timer_stop(lua_State *L)
{
	struct ktimer *t = luaL_checkudata(L, 1, TIMER_MT);
	if (!t->active)
		return 0;
	t->active = 0;
	if (t->h.loop != kx_host.loop)   /* the parent's, in a resumed child */
		timer_closed((uv_handle_t *)&t->h);
	else
		uv_close((uv_handle_t *)&t->h, timer_closed);
	return 0;
}

/* kx.every(seconds, fn) -> timer with :stop(); each tick runs fn as a task. */
static int l_every(lua_State *L)
{
	double s = luaL_checknumber(L, 1);
	luaL_argcheck(L, s > 0, 1, "period must be positive");
	luaL_checktype(L, 2, LUA_TFUNCTION);
	struct ktimer *t = lua_newuserdatauv(L, sizeof *t, 0);
	memset(t, 0, sizeof *t);
	luaL_setmetatable(L, TIMER_MT);
	lua_pushvalue(L, 2);
	t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, -1);
	t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	t->last_ref = LUA_NOREF;
	uv_timer_init(kx_host.loop, &t->h);
	t->h.data = t;
	uint64_t ms = (uint64_t)(s * 1000.0 + 0.5);
	if (ms == 0)
		ms = 1;
	uv_timer_start(&t->h, on_tick, ms, ms);
	t->active = 1;
	return 1;
}

int kx_open_signal(lua_State *L)
{
	static const luaL_Reg sig_methods[] = {
		{"stop", l_signal_stop},
		{NULL, NULL},
	};
	static const luaL_Reg timer_methods[] = {
		{"stop", l_timer_stop},
		{NULL, NULL},
	};
	kx_newclass(L, SIGNAL_MT, sig_methods, NULL);
	lua_pop(L, 1);
	kx_newclass(L, TIMER_MT, timer_methods, NULL);
	lua_pop(L, 1);
	lua_pushcfunction(L, l_signal);
	lua_setfield(L, -2, "signal");
	lua_pushcfunction(L, l_every);
	lua_setfield(L, -2, "every");
	return 0;
}
