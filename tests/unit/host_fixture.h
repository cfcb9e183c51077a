/*
 * host_fixture.h - cmocka units that drive the host: a Lua state set up as
 * kxrun sets up its own (package paths, the kx module), and a function run
 * as the main task until the loop has nothing left to do.
 */
#ifndef KX_TEST_HOST_FIXTURE_H
#define KX_TEST_HOST_FIXTURE_H

#include "host.h"

static inline lua_State *kx_test_host(void)
{
	lua_State *L = kx_host_init();
	if (!L)
		return NULL;
	kx_setup_package(L, NULL);
	luaL_requiref(L, "kx", luaopen_kx, 1);
	lua_pop(L, 1);
	return L;
}

/* The function on top of L's stack as the main task, run to the loop's
 * end; its handle is left pushed when push. */
static inline kx_task *kx_test_run_main(lua_State *L, int push)
{
	kx_task *t = kx_go(L, 0, push);
	kx_host.main = t;
	kx_host.stopping = 0;
	uv_run(kx_loop(), UV_RUN_DEFAULT);
	return t;
}

#endif
