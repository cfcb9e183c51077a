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
 * (children forked by bindings inherit this handler). */
static void at_exit(void)
{
	if (getpid() != kx_host.pid || exiting)
		return;
	exiting = 1;
	kx_terminate_children(SIGTERM, 2.0);
	kx_run_atexit();
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
	atexit(at_exit);
	kx_signals_init(L);
	kx_tasks_init(L);
	return L;
}
