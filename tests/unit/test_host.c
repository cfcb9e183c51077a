/* Units of the host: tasks driven by the loop from C, atomic files, the
 * library directory, the embedded stdlib. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "host.h"
#include "host_fixture.h"
#include "stdlib_embed.h"
#include "tmpdir.h"

static lua_State *L;

static int setup(void **state)
{
	(void)state;
	L = kx_test_host();
	return L ? 0 : -1;
}

/* Runs code as a task until the loop has nothing left; returns its task. */
static kx_task *run_task(const char *code)
{
	assert_int_equal(luaL_loadstring(L, code), LUA_OK);
	kx_task *t = kx_test_run_main(L, 1);
	lua_setglobal(L, "__t");
	return t;
}

static void test_task_runs_and_sleeps(void **state)
{
	(void)state;
	kx_task *t = run_task("local t0 = kx.now(); kx.sleep(0.02); "
			      "result = kx.now() - t0");
	assert_true(kx_task_finished(t));
	assert_false(kx_task_failed(t, NULL));
	lua_getglobal(L, "result");
	assert_true(lua_tonumber(L, -1) >= 0.019);
	lua_pop(L, 1);
}

static void test_blocking_outside_a_task_is_refused(void **state)
{
	(void)state;
	assert_int_not_equal(luaL_dostring(L, "kx.sleep(0.01)"), LUA_OK);
	assert_non_null(strstr(lua_tostring(L, -1), "must be called from a task"));
	lua_pop(L, 1);
}

static void test_waiting_on_a_failed_task(void **state)
{
	(void)state;
	kx_task *t = run_task("local c = kx.go(function() error('x1') end) "
			      "local ok, err = c:wait() "
			      "result = tostring(ok) .. ' ' .. err:match('x1')");
	assert_false(kx_task_failed(t, NULL));
	lua_getglobal(L, "result");
	assert_string_equal(lua_tostring(L, -1), "nil x1");
	lua_pop(L, 1);
}

static void test_atomic_file(void **state)
{
	(void)state;
	char dir[256], path[512], err[256];
	assert_int_equal(kx_test_tmpdir(dir, sizeof dir, "unit"), 0);
	snprintf(path, sizeof path, "%s/out.json", dir);
	assert_int_equal(kx_write_file_atomic(path, "{}\n", 3, err, sizeof err), 0);
	FILE *f = fopen(path, "r");
	char buf[8] = "";
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof buf, f));
	fclose(f);
	assert_string_equal(buf, "{}\n");
	snprintf(path, sizeof path, "%s/no/such/dir/x", dir);
	assert_true(kx_write_file_atomic(path, "x", 1, err, sizeof err) < 0);
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(kx_test_rmtree(dir), 0);
}

static void test_libdir_from_environment(void **state)
{
	(void)state;
	setenv("KXRUN_LIBDIR", "/opt/kx/lib", 1);
	assert_string_equal(kx_libdir(), "/opt/kx/lib");
	unsetenv("KXRUN_LIBDIR");
	assert_non_null(strstr(kx_libdir(), "lib"));
}

static void test_stdlib_is_embedded_by_module_name(void **state)
{
	(void)state;
	int found = 0;
	for (const struct kx_embedded *e = kx_stdlib; e->module; e++)
		if (strcmp(e->module, "kx._core") == 0 &&
		    strcmp(e->chunkname, "@kx/_core.lua") == 0)
			found = 1;
	assert_true(found);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_task_runs_and_sleeps),
		cmocka_unit_test(test_blocking_outside_a_task_is_refused),
		cmocka_unit_test(test_waiting_on_a_failed_task),
		cmocka_unit_test(test_atomic_file),
		cmocka_unit_test(test_libdir_from_environment),
		cmocka_unit_test(test_stdlib_is_embedded_by_module_name),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
