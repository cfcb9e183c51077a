/*
 * host.c - the host's state and its end: what kxrun does once, whatever
 * started it (the command line, or a unit test).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <lualib.h>

#include "host.h"

struct kx_host kx_host;

void kx_report(const char *msg)
{
	fflush(stdout);
	fprintf(stderr, "kxrun: %s\n", msg ? msg : "(no message)");
	fflush(stderr);
}

static int exiting;

/* The end, whichever way it comes: children's groups terminated, hooks run,
 * outputs flushed. */
void kx_shutdown(int code)
{
	if (exiting)
		_exit(code);
	exiting = 1;
	kx_terminate_children(SIGTERM, 2.0);
	kx_run_atexit();
	fflush(NULL);
	exit(code);
}

/* os.exit() and plain exit(): the same clean-up, in the host process only
 * (children forked by bindings inherit this handler).  A resumed child
 * (kx.rfork) ends here, before the libraries' destructors: they would join
 * threads of the parent that do not exist in it (libuv's threadpool, an
 * OpenCL runtime's workers) and wait forever. */
static void at_exit(int status, void *ud)
{
	(void)ud;
	if (getpid() != kx_host.pid)
		return;
	if (!exiting) {
		exiting = 1;
		kx_terminate_children(SIGTERM, 2.0);
		kx_run_atexit();
	}
	if (kx_host.loop_gen > 0) {
		fflush(NULL);
		_exit(status);
	}
}

/* ---- after a resume ---------------------------------------------------------- */

struct resume_hook {
	void (*fn)(void *);
	void *ud;
	struct resume_hook *next;
};

static struct resume_hook *resume_hooks, **resume_tail = &resume_hooks;

void kx_on_resume(void (*fn)(void *ud), void *ud)
{
	struct resume_hook *h = malloc(sizeof *h);
	if (!h)
		abort();   /* at start-up: nothing sensible goes on without it */
	h->fn = fn;
	h->ud = ud;
	h->next = NULL;
	*resume_tail = h;
	resume_tail = &h->next;
}

void kx_run_resume_hooks(void)
{
	for (struct resume_hook *h = resume_hooks; h; h = h->next)
		h->fn(h->ud);
}

lua_State *kx_host_init(void)
{
	kx_host.pid = getpid();
	kx_host.loop = uv_default_loop();
	lua_State *L = luaL_newstate();
	if (!L)
		return NULL;
	kx_host.L = L;
	luaL_openlibs(L);
	on_exit(at_exit, NULL);
	kx_signals_init(L);
	kx_tasks_init(L);
	return L;
}
