/* Units of kx.trace's tracer from C: a watched child burning a known amount
 * of CPU adds up to the kernel's figure (wait4), vanished processes get an
 * end, every line written is whole JSON, bad input is refused. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "host.h"
#include "../../bindings/trace/tracer.h"
#include "tmpdir.h"

static char dir[512], samples[512], procs[512];

static void on_closed(uv_handle_t *h)
{
	(void)h;
}

/* A tracer writing the fixture's two files, ticking every interval_s. */
static void start(struct tracer *t, double interval_s)
{
	char err[256];
	assert_int_equal(trace_start(t, samples, procs, interval_s, NULL, err,
				      sizeof err), 0);
}

/* Stopped, its files closed. */
static void stop(struct tracer *t)
{
	trace_stop(t, on_closed);
	uv_run(kx_loop(), UV_RUN_NOWAIT);
}

static int setup(void **state)
{
	(void)state;
	if (!kx_host_init())
		return -1;
	if (kx_test_tmpdir(dir, sizeof dir, "trace-unit") < 0)
		return -1;
	snprintf(samples, sizeof samples, "%s/proc_metrics.jsonl", dir);
	snprintf(procs, sizeof procs, "%s/procs.jsonl", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(samples);
	unlink(procs);
	rmdir(dir);
	return 0;
}

static int reset(void **state)
{
	(void)state;
	unlink(samples);
	unlink(procs);
	return 0;
}

/* Every line of path is a whole JSON object; calls fn on each. */
static int each_line(const char *path, void (*fn)(json_t *, void *), void *ud)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int n = 0;
	assert_non_null(f);
	while (fgets(line, sizeof line, f)) {
		size_t len = strlen(line);
		assert_true(len > 0 && line[len - 1] == '\n');
		json_error_t err;
		json_t *o = json_loads(line, 0, &err);
		assert_non_null(o);
		assert_true(json_is_object(o));
		if (fn)
			fn(o, ud);
		json_decref(o);
		n++;
	}
	fclose(f);
	return n;
}

struct sum {
	pid_t pid;
	double cpu_ms;
	int rows;
	double end_ms;
};

static void add_cpu(json_t *o, void *ud)
{
	struct sum *s = ud;
	if (json_integer_value(json_object_get(o, "pid")) != s->pid)
		return;
	s->cpu_ms += json_number_value(json_object_get(o, "cpu_ms"));
	assert_true(json_number_value(json_object_get(o, "dt_ms")) >= 0);
	s->rows++;
}

static void find_end(json_t *o, void *ud)
{
	struct sum *s = ud;
	if (json_integer_value(json_object_get(o, "pid")) == s->pid)
		s->end_ms = json_number_value(json_object_get(o, "end"));
}

static double cpu_ms_of(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec * 1e3 + (double)ru->ru_utime.tv_usec / 1e3 +
	       (double)ru->ru_stime.tv_sec * 1e3 + (double)ru->ru_stime.tv_usec / 1e3;
}

static double process_cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The launcher's way: sample while it runs, read the zombie before reaping
 * it.  The rows add up to wait4's figure within 2%. */
static void test_burning_child_adds_up_to_the_kernel_figure(void **state)
{
	(void)state;
	struct tracer t;
	start(&t, 0.05);
	pid_t pid = fork();
	if (pid == 0) {
		volatile unsigned long x = 0;
		while (process_cpu_ms() < 600)
			for (int i = 0; i < 10000; i++)
				x += (unsigned long)i;
		_exit(0);
	}
	assert_int_equal(trace_watch(&t, pid), 0);
	siginfo_t si;
	for (;;) {
		memset(&si, 0, sizeof si);
		waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
		if (si.si_pid == pid)
			break;
		usleep(50000);
		trace_tick(&t);
	}
	struct trace_proc_stat st;
	assert_int_equal(trace_proc_read_stat(pid, &st), 0);
	struct rusage ru;
	int ws;
	assert_int_equal(wait4(pid, &ws, 0, &ru), pid);
	trace_finish(&t, pid, &st, ru.ru_maxrss);
	stop(&t);

	struct sum s = { .pid = pid };
	each_line(samples, add_cpu, &s);
	double kernel = cpu_ms_of(&ru);
	assert_true(kernel >= 600);
	assert_true(s.rows >= 2);
	/* 2 %, and one clock tick: /proc counts CPU in ticks, rusage in us */
	if (fabs(s.cpu_ms - kernel) > 0.02 * kernel + 1000.0 / sysconf(_SC_CLK_TCK))
		fail_msg("rows add up to %.1f ms, kernel says %.1f ms", s.cpu_ms,
			 kernel);
	assert_int_equal(each_line(procs, find_end, &s), 1);
	assert_true(s.end_ms > 0);
	assert_int_equal(trace_live(&t), 0);
}

/* A watched process killed and reaped between two ticks is ended at the
 * next one; nothing is sampled for it afterwards. */
static void test_vanished_process_gets_an_end(void **state)
{
	(void)state;
	struct tracer t;
	start(&t, 1.0);
	pid_t pid = fork();
	if (pid == 0) {
		pause();
		_exit(0);
	}
	assert_int_equal(trace_watch(&t, pid), 0);
	trace_tick(&t);
	assert_int_equal(trace_live(&t), 1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	trace_tick(&t);
	assert_int_equal(trace_live(&t), 0);
	unsigned long rows = t.rows;
	trace_tick(&t);
	assert_int_equal(t.rows, rows);
	stop(&t);
	struct sum s = { .pid = pid };
	assert_int_equal(each_line(procs, find_end, &s), 1);
	assert_true(s.end_ms > 0);
	assert_int_equal(each_line(samples, add_cpu, &s), (int)rows);
}

/* Descendants are found from /proc at each tick and get rows of their own. */
static void test_descendants_are_followed(void **state)
{
	(void)state;
	struct tracer t;
	start(&t, 1.0);
	pid_t pid = fork();
	if (pid == 0) {
		pid_t kid = fork();
		if (kid == 0) {
			pause();
			_exit(0);
		}
		pause();
		_exit(0);
	}
	assert_int_equal(trace_watch(&t, pid), 0);
	for (int i = 0; i < 100 && trace_live(&t) < 2; i++) {
		usleep(10000);
		trace_tick(&t);
	}
	assert_int_equal(trace_live(&t), 2);
	pid_t kids[4];
	assert_int_equal(trace_proc_children(pid, 1, kids, 4), 1);
	kill(kids[0], SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	stop(&t);
	struct sum s = { .pid = kids[0] };
	each_line(procs, find_end, &s);
	assert_true(s.end_ms > 0);
}

struct rows_of {
	pid_t pid;
	int rows;
	long max_rss_kb;
};

static void rss_of(json_t *o, void *ud)
{
	struct rows_of *r = ud;
	if (json_integer_value(json_object_get(o, "pid")) != r->pid)
		return;
	long kb = (long)json_integer_value(json_object_get(o, "rss_kb"));
	r->rows++;
	if (kb > r->max_rss_kb)
		r->max_rss_kb = kb;
}

/* A launched command before its exec is a copy of kxrun (64 MiB here): no
 * row of it until it has exec'd; then its own memory. */
static void test_launched_command_has_no_row_before_exec(void **state)
{
	(void)state;
	size_t big = 64u << 20;
	char *mem = malloc(big);
	assert_non_null(mem);
	memset(mem, 1, big);
	int go[2];
	assert_int_equal(pipe(go), 0);
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		close(go[1]);
		if (read(go[0], &c, 1) == 1)
			execl("/bin/sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	close(go[0]);
	struct tracer t;
	start(&t, 1.0);
	assert_int_equal(trace_watch(&t, pid), 0);
	t.procs[t.nprocs - 1].launched = 1;
	trace_tick(&t);
	usleep(20000);
	trace_tick(&t);
	assert_int_equal(write(go[1], "x", 1), 1);
	close(go[1]);
	char exe[64], target[256] = "";
	snprintf(exe, sizeof exe, "/proc/%d/exe", (int)pid);
	for (int i = 0; i < 500 && !strstr(target, "sleep"); i++) {
		ssize_t n = readlink(exe, target, sizeof target - 1);
		target[n > 0 ? n : 0] = 0;
		usleep(10000);
	}
	usleep(50000);
	trace_tick(&t);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	stop(&t);
	free(mem);
	struct rows_of r = { .pid = pid };
	each_line(samples, rss_of, &r);
	assert_true(r.rows >= 1);             /* after its exec */
	assert_true(r.max_rss_kb < 16 * 1024); /* sleep's, never ours */
}

static void test_refuses_bad_input(void **state)
{
	(void)state;
	struct tracer t;
	char err[256];
	assert_int_equal(trace_start(&t, "/proc/version/x/s.jsonl", procs,
				      0.2, NULL, err, sizeof err), -ENOTDIR);
	assert_non_null(strstr(err, "/proc/version/x/s.jsonl"));
	assert_int_equal(trace_start(&t, samples, procs, 0.2, "(", err,
				      sizeof err), -EINVAL);
	assert_non_null(strstr(err, "bad match pattern"));
	start(&t, 0.2);
	assert_int_equal(trace_watch(&t, 4194000), -ESRCH);
	stop(&t);
}

static void test_json_string_escapes(void **state)
{
	(void)state;
	char out[512];
	trace_json_string(out, sizeof out, "a\"b\\c\n\xe9");
	assert_string_equal(out, "\"a\\\"b\\\\c\\u000a\\u00e9\"");
	json_error_t err;
	json_t *o = json_loads(out, JSON_DECODE_ANY, &err);
	assert_non_null(o);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_burning_child_adds_up_to_the_kernel_figure, reset),
		cmocka_unit_test_setup(test_vanished_process_gets_an_end, reset),
		cmocka_unit_test_setup(test_descendants_are_followed, reset),
		cmocka_unit_test_setup(test_launched_command_has_no_row_before_exec, reset),
		cmocka_unit_test_setup(test_refuses_bad_input, reset),
		cmocka_unit_test(test_json_string_escapes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
