/* Units of the host's side of kx.rfork (bindings/rfork/host*.c) that need no child:
 * capture only from a task, capture leaves pipe contents in place, reset
 * refuses blobs that are not one of this kxrun's before touching anything.
 * The children themselves are tested by tests/spec/resume_spec.lua. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "host.h"
#include "host_fixture.h"
#include "hostside.h"

static lua_State *L;
static char err[256];
static int probe_result;

static int setup(void **state)
{
	(void)state;
	L = kx_test_host();
	return L ? 0 : -1;
}

/* Runs the global C function `name` as the body of a task. */
static void run_in_task(const char *name, lua_CFunction fn)
{
	lua_register(L, name, fn);
	char code[64];
	snprintf(code, sizeof code, "%s()", name);
	assert_int_equal(luaL_loadstring(L, code), LUA_OK);
	kx_task *t = kx_test_run_main(L, 0);
	assert_true(kx_task_finished(t));
	assert_false(kx_task_failed(t, NULL));
}

static void test_capture_outside_a_task_fails(void **state)
{
	(void)state;
	size_t len = 0;
	assert_null(rf_host_capture(&len, err, sizeof err));
	assert_non_null(strstr(err, "task"));
}

static int fds[3];

static int capture_probe(lua_State *T)
{
	(void)T;
	size_t len = 0;
	void *blob = rf_host_capture(&len, err, sizeof err);
	probe_result = blob != NULL && len > 0;
	free(blob);
	return 0;
}

static void test_capture_leaves_pipe_contents(void **state)
{
	(void)state;
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], "abc", 3), 3);
	fds[2] = eventfd(5, EFD_CLOEXEC);
	assert_true(fds[2] >= 0);
	run_in_task("capture_probe", capture_probe);
	assert_true(probe_result);
	char buf[8];
	assert_int_equal(read(fds[0], buf, sizeof buf), 3);
	assert_memory_equal(buf, "abc", 3);
	uint64_t count = 0;
	assert_int_equal(read(fds[2], &count, sizeof count), sizeof count);
	assert_int_equal(count, 5);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
}

static const char *reset_error;
static char bad_blob[64];
static size_t bad_len;

static int reset_probe(lua_State *T)
{
	(void)T;
	probe_result = rf_host_reset(bad_len ? bad_blob : NULL, bad_len, err,
				     sizeof err);
	reset_error = err;
	return 0;
}

static void *kept;
static size_t kept_len;

static int capture_keep(lua_State *T)
{
	(void)T;
	kept = rf_host_capture(&kept_len, err, sizeof err);
	return 0;
}

static int reset_kept(lua_State *T)
{
	(void)T;
	probe_result = rf_host_reset(kept, kept_len, err, sizeof err);
	reset_error = err;
	return 0;
}

static void test_reset_refuses_foreign_blobs(void **state)
{
	(void)state;
	uv_loop_t *loop = kx_loop();

	bad_len = 0;   /* none */
	run_in_task("reset_probe", reset_probe);
	assert_int_equal(probe_result, -1);
	assert_non_null(strstr(reset_error, "missing or truncated"));

	memset(bad_blob, 0x5a, sizeof bad_blob);   /* not ours */
	bad_len = sizeof bad_blob;
	run_in_task("reset_probe", reset_probe);
	assert_int_equal(probe_result, -1);
	assert_non_null(strstr(reset_error, "not one of this kxrun"));

	/* ours, but its header promises one descriptor more than it holds */
	run_in_task("capture_keep", capture_keep);
	assert_non_null(kept);
	uint32_t nfds;
	memcpy(&nfds, (char *)kept + 8, sizeof nfds);   /* magic, version, nfds */
	nfds++;
	memcpy((char *)kept + 8, &nfds, sizeof nfds);
	run_in_task("reset_kept", reset_kept);
	assert_int_equal(probe_result, -1);
	assert_non_null(strstr(reset_error, "corrupt"));
	free(kept);

	/* nothing was touched: the same loop goes on */
	assert_ptr_equal(kx_loop(), loop);
	assert_int_equal(kx_host.loop_gen, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capture_outside_a_task_fails),
		cmocka_unit_test(test_capture_leaves_pipe_contents),
		cmocka_unit_test(test_reset_refuses_foreign_blobs),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
