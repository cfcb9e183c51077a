/*
 * host.c - the host's start and its loop: what kxrun does once, whatever
 * started it (the command line, or a unit test), and the switch to a fresh
 * loop in a resumed process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <lualib.h>

#include "host.h"

/* ---- a resumed process (kx.rfork) --------------------------------------------- */

void kx_resumed(uv_loop_t *fresh)
{
	kx_host.loop = fresh;
	kx_host.loop_gen++;
	kx_host.pid = getpid();
	kx_host.stopping = 0;
	kx_host.exit_code = 0;
	kx_host.interrupted = 0;
	kx_run_resume_hooks();
	kx_tasks_after_resume();
}

void kx_run_loops(void)
{
	uv_loop_t *ran;
	do {
		ran = kx_host.loop;
		uv_run(ran, UV_RUN_DEFAULT);
	} while (ran != kx_host.loop);
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
	kx_exit_init();
	kx_on_resume(kx_forget_atexit, NULL);
	kx_on_resume(kx_children_after_resume, NULL);
	kx_signals_init(L);
	kx_tasks_init(L);
	kx_tasklib_init(L);
	return L;
}
