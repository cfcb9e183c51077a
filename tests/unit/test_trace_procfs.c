/* Units of kx.trace's /proc reader: stat parsing, start times in ms since
 * the epoch with sub-second boot time, the ended/leader-left distinction,
 * vanished processes. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../bindings/trace/procfs.h"

static void test_parse_comm_with_spaces_and_parens(void **state)
{
	(void)state;
	/* fields 3..24; utime 150 stime 50 cutime 7 cstime 3 threads 4
	 * starttime 1000 rss 256 pages */
	const char *text = "4242 (a) (b c) S 17 4242 4242 0 -1 4194560 100 0 0 0 "
			   "150 50 7 3 20 0 4 0 1000 12345678 256 18446744073709551615";
	struct trace_proc_stat st;
	assert_int_equal(trace_proc_parse_stat(text, &st), 0);
	assert_int_equal(st.pid, 4242);
	assert_string_equal(st.comm, "a) (b c");
	assert_int_equal(st.state, 'S');
	assert_int_equal(st.ppid, 17);
	assert_int_equal(st.threads, 4);
	long tck = sysconf(_SC_CLK_TCK);
	assert_true(fabs(st.cpu_ms - 200.0 * 1000 / tck) < 1e-6);
	assert_true(fabs(st.children_cpu_ms - 10.0 * 1000 / tck) < 1e-6);
	assert_true(fabs(st.start_ms - (trace_proc_boot_ms() + 1000.0 * 1000 / tck)) < 1e-3);
	assert_int_equal(st.rss_kb, 256 * (sysconf(_SC_PAGESIZE) / 1024));
}

static void test_parse_refuses_garbage(void **state)
{
	(void)state;
	struct trace_proc_stat st;
	assert_int_equal(trace_proc_parse_stat("", &st), -EINVAL);
	assert_int_equal(trace_proc_parse_stat("12 (x", &st), -EINVAL);
	assert_int_equal(trace_proc_parse_stat("12 (x) S 1 2", &st), -EINVAL);
}

static void test_ended_is_a_zombie_without_threads(void **state)
{
	(void)state;
	struct trace_proc_stat st = { .state = 'Z', .threads = 1 };
	assert_true(trace_proc_ended(&st));
	st.threads = 3;   /* the leader left by pthread_exit, others run */
	assert_false(trace_proc_ended(&st));
	st.state = 'R';
	st.threads = 1;
	assert_false(trace_proc_ended(&st));
}

/* Boot time agrees with /proc/stat's btime (whole seconds) yet is finer. */
static void test_boot_time_matches_btime(void **state)
{
	(void)state;
	FILE *f = fopen("/proc/stat", "r");
	char line[256];
	long long btime = -1;
	assert_non_null(f);
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "btime %lld", &btime) == 1)
			break;
	fclose(f);
	assert_true(btime > 0);
	double boot = trace_proc_boot_ms();
	assert_true(fabs(boot - (double)btime * 1000) < 1000.5);
	assert_true(trace_proc_now_ms() > boot);
}

/* A child started now has a start time between the instants around fork(),
 * within one clock tick (the kernel's precision). */
static void test_start_time_of_a_fresh_child(void **state)
{
	(void)state;
	double tick = 1000.0 / (double)sysconf(_SC_CLK_TCK);
	double before = trace_proc_now_ms();
	pid_t pid = fork();
	if (pid == 0) {
		pause();
		_exit(0);
	}
	double after = trace_proc_now_ms();
	struct trace_proc_stat st;
	assert_int_equal(trace_proc_read_stat(pid, &st), 0);
	assert_int_equal(st.ppid, getpid());
	assert_true(st.start_ms >= before - tick - 1);
	assert_true(st.start_ms <= after + 1);
	assert_true(trace_proc_rss_kb(pid) > 0);
	pid_t kids[16];
	int n = trace_proc_children(getpid(), 0, kids, 16);
	int found = 0;
	for (int i = 0; i < n; i++)
		found |= kids[i] == pid;
	assert_true(found);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* A process that goes away between two reads: the kept descriptor and a
 * fresh read both say so, without stale figures. */
static void test_vanished_process(void **state)
{
	(void)state;
	pid_t pid = fork();
	if (pid == 0) {
		pause();
		_exit(0);
	}
	int fd = trace_proc_open_stat(pid);
	struct trace_proc_stat st;
	assert_true(fd >= 0);
	assert_int_equal(trace_proc_pread_stat(fd, &st), 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_true(trace_proc_pread_stat(fd, &st) < 0);
	assert_int_equal(trace_proc_read_stat(pid, &st), -ENOENT);
	assert_int_equal(trace_proc_rss_kb(pid), -1);
	assert_true(trace_proc_children(pid, 1, (pid_t[4]){0}, 4) < 0);
	close(fd);
}

/* A shell with a thousand children lists more than a page of pids. */
static void test_many_children_all_listed(void **state)
{
	(void)state;
	enum { N = 1000 };
	static pid_t kids[N], seen[N + 16];
	for (int i = 0; i < N; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			pause();
			_exit(0);
		}
		assert_true(kids[i] > 0);
	}
	int one = trace_proc_children(getpid(), 1, seen, N + 16);
	int all = trace_proc_children(getpid(), 0, seen, N + 16);
	for (int i = 0; i < N; i++)
		kill(kids[i], SIGKILL);
	for (int i = 0; i < N; i++)
		waitpid(kids[i], NULL, 0);
	assert_int_equal(one, N);
	assert_int_equal(all, N);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_comm_with_spaces_and_parens),
		cmocka_unit_test(test_parse_refuses_garbage),
		cmocka_unit_test(test_ended_is_a_zombie_without_threads),
		cmocka_unit_test(test_boot_time_matches_btime),
		cmocka_unit_test(test_start_time_of_a_fresh_child),
		cmocka_unit_test(test_vanished_process),
		cmocka_unit_test(test_many_children_all_listed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
