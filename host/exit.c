/*
 * exit.c - kxrun's end, whichever way it comes (the main task done, a fatal
 * error, SIGINT/SIGTERM, os.exit): children's groups terminated, exit hooks
 * run, outputs flushed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "host.h"

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

void kx_exit_init(void)
{
	on_exit(at_exit, NULL);
}
