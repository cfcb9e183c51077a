/* Units for a partition's shared allocation count (bindings/gpu/usage.c) and
 * for libkxgpu.so enforcing it on a real OpenCL program (PoCL). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../bindings/gpu/ledger.h"
#include "../../bindings/gpu/usage.h"
#include "need.h"
#include "tmpdir.h"

#define MIB (1024ull * 1024)

static char path[256], dir[160], err[256];

static int setup(void **state)
{
	(void)state;
	assert_int_equal(kx_test_tmpdir(dir, sizeof dir, "gpu-usage"), 0);
	snprintf(path, sizeof path, "%s/partition_0001.mem", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(kx_test_rmtree(dir), 0);
	return 0;
}

static void test_limit_and_release(void **state)
{
	kxgpu_usage u;

	(void)state;
	assert_int_equal(kxgpu_usage_init(path, 10 * MIB, kxgpu_now_ms() + 60000,
	                                  getuid(),
	                                  err, sizeof err), 0);
	/* a second init of the same partition keeps the count */
	assert_int_equal(kxgpu_usage_init(path, 10 * MIB, kxgpu_now_ms() + 60000,
	                                  getuid(),
	                                  err, sizeof err), 0);
	assert_int_equal(kxgpu_usage_init(path, 11 * MIB, kxgpu_now_ms() + 60000,
	                                  getuid(),
	                                  err, sizeof err), -1);
	assert_int_equal(kxgpu_usage_attach(&u, path, err, sizeof err), 0);
	assert_int_equal(kxgpu_usage_charge(&u, 6 * MIB), 0);
	assert_int_equal(kxgpu_usage_charge(&u, 4 * MIB), 0);
	assert_int_equal(kxgpu_usage_charge(&u, 1), -1);
	assert_int_equal(kxgpu_usage_held(&u), 10 * MIB);
	kxgpu_usage_uncharge(&u, 4 * MIB);
	assert_int_equal(kxgpu_usage_charge(&u, 5 * MIB), -1);
	assert_int_equal(kxgpu_usage_charge(&u, 4 * MIB), 0);
	assert_int_equal(kxgpu_usage_charge(&u, UINT64_MAX), -1);
	kxgpu_usage_detach(&u);
}

static void test_expired_refuses(void **state)
{
	kxgpu_usage u;

	(void)state;
	assert_int_equal(kxgpu_usage_init(path, 10 * MIB, kxgpu_now_ms() - 1,
	                                  getuid(),
	                                  err, sizeof err), 0);
	assert_int_equal(kxgpu_usage_attach(&u, path, err, sizeof err), 0);
	assert_int_equal(kxgpu_usage_charge(&u, 1), -1);
	kxgpu_usage_detach(&u);
}

/* A member that dies holding memory: its share comes back. */
static void test_dead_member_reclaimed(void **state)
{
	kxgpu_usage u;
	pid_t pid;
	int st;

	(void)state;
	assert_int_equal(kxgpu_usage_init(path, 10 * MIB, kxgpu_now_ms() + 60000,
	                                  getuid(),
	                                  err, sizeof err), 0);
	assert_int_equal(kxgpu_usage_attach(&u, path, err, sizeof err), 0);
	assert_int_equal(kxgpu_usage_charge(&u, 2 * MIB), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* same mapping after fork: the child takes a slot of its own */
		if (kxgpu_usage_charge(&u, 8 * MIB) != 0)
			_exit(1);
		if (kxgpu_usage_charge(&u, 1) != -1)
			_exit(2);
		raise(SIGKILL);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	/* held (what list shows) leaves the dead child out before anything
	 * reclaimed its share; the parent's own 2 MiB stay charged, the dead
	 * child's 8 come back */
	assert_int_equal(kxgpu_usage_held(&u), 2 * MIB);
	assert_int_equal(kxgpu_usage_charge(&u, 8 * MIB), 0);
	assert_int_equal(kxgpu_usage_held(&u), 10 * MIB);
	assert_int_equal(kxgpu_usage_charge(&u, 1), -1);
	kxgpu_usage_detach(&u);
}

/* Runs gpu_alloc under libkxgpu.so; returns its exit status, output in out. */
static int run_alloc(const char *args, char *out, size_t outlen)
{
	const char *build = getenv("BUILD");
	char cmd[1024];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof cmd, "KXGPU_USAGE='%s' LD_PRELOAD='%s/lib/libkxgpu.so' "
	         "'%s/tests/gpu_alloc' %s 2>&1", path, build ? build : "build",
	         build ? build : "build", args);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, outlen - 1, p);
	out[n] = 0;
	return WEXITSTATUS(pclose(p));
}

/* The tools `make test` builds: missing, the test fails (not skips). */
static int have_tools(void)
{
	const char *build = getenv("BUILD");
	char a[300], b[300];

	snprintf(a, sizeof a, "%s/lib/libkxgpu.so", build ? build : "build");
	snprintf(b, sizeof b, "%s/tests/gpu_alloc", build ? build : "build");
	return access(a, R_OK) == 0 && access(b, X_OK) == 0;
}

/* An 8 MiB partition: a program gets 8 buffers of 1 MiB and is refused the
 * ninth with CL_MEM_OBJECT_ALLOCATION_FAILURE; with a second process
 * holding 5 MiB, the first gets only 3. */
static void test_preload_enforces_opencl(void **state)
{
	char out[4096];
	FILE *holder;
	char cmd[1024], line[128];
	const char *build = getenv("BUILD");

	(void)state;
	NEED("opencl");
	assert_true(have_tools());   /* make test builds both */
	assert_int_equal(kxgpu_usage_init(path, 8 * MIB, kxgpu_now_ms() + 60000,
	                                  getuid(),
	                                  err, sizeof err), 0);
	assert_int_equal(run_alloc("1 9", out, sizeof out), 3);
	assert_non_null(strstr(out, "ok 7\n"));
	assert_non_null(strstr(out, "refused 8: CL_MEM_OBJECT_ALLOCATION_FAILURE"));
	/* everything came back when it exited */
	assert_int_equal(run_alloc("1 8", out, sizeof out), 0);
	assert_int_equal(run_alloc("--svm 2 5", out, sizeof out), 3);
	assert_non_null(strstr(out, "ok 3\n"));
	assert_non_null(strstr(out, "refused 4"));

	/* two processes of one partition share the 8 MiB */
	snprintf(cmd, sizeof cmd, "echo $$; KXGPU_USAGE='%s' "
	         "LD_PRELOAD='%s/lib/libkxgpu.so' exec '%s/tests/gpu_alloc' 5 1 30",
	         path, build ? build : "build",
	         build ? build : "build");
	holder = popen(cmd, "r");
	assert_non_null(holder);
	assert_non_null(fgets(line, sizeof line, holder));
	pid_t hpid = atoi(line);
	assert_true(hpid > 0);
	while (fgets(line, sizeof line, holder) && strncmp(line, "held", 4) != 0)
		;
	assert_string_equal(line, "held 1\n");
	assert_int_equal(run_alloc("1 4", out, sizeof out), 3);
	assert_non_null(strstr(out, "ok 2\n"));
	assert_non_null(strstr(out, "refused 3"));
	/* the holder dies without freeing: its 5 MiB are reclaimed */
	assert_int_equal(kill(hpid, SIGKILL), 0);
	pclose(holder);
	assert_int_equal(run_alloc("1 8", out, sizeof out), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_limit_and_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expired_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_member_reclaimed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preload_enforces_opencl, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
