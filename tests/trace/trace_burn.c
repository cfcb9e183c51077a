/*
 * trace_burn - a workload with a known answer for the kx.trace tests.
 *
 *   trace_burn MS THREADS MODE
 *
 * forks a child that burns MS ms of CPU in each of THREADS threads and ends
 * as MODE says: "join" (threads joined, then exit), "group" (exit_group from
 * the main thread while the others still burn), "leader" (the main thread
 * leaves first with pthread_exit; the last thread ends the process).  The
 * parent reaps it with wait4 and prints the kernel's own figure for it:
 * "pid=N cpu_ms=F" (rusage utime + stime, microsecond precision).
 * MODE "self" burns in this process (no child, THREADS ignored) and prints
 * its own figure the same way.
 *
 *   trace_burn MS MIB mem|memchild
 *
 * touches MIB MiB of memory and lives MS ms (wall clock) in all, then prints
 * the kernel's peak resident set of the process that did it:
 * "pid=N maxrss_kb=K" (rusage ru_maxrss).  "mem" does it itself, "memchild"
 * in a child it reaps with wait4 (the parent stays small), and adds its own
 * " self_kb=K" (which, as any ru_maxrss, counts the image it had before its
 * exec: a fork of whoever started it).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double burn_ms;

static double thread_cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *burn(void *arg)
{
	volatile unsigned long x = 0;
	(void)arg;
	while (thread_cpu_ms() < burn_ms)
		for (int i = 0; i < 10000; i++)
			x += (unsigned long)i;
	return NULL;
}

static void print_rusage(pid_t pid, const struct rusage *ru)
{
	printf("pid=%d cpu_ms=%.3f\n", (int)pid,
	       ru->ru_utime.tv_sec * 1e3 + ru->ru_utime.tv_usec / 1e3 +
	       ru->ru_stime.tv_sec * 1e3 + ru->ru_stime.tv_usec / 1e3);
}

static void child(int threads, const char *mode)
{
	pthread_t t[64];
	for (int i = 1; i < threads; i++)
		pthread_create(&t[i], NULL, burn, NULL);
	if (strcmp(mode, "leader") == 0)
		pthread_exit(NULL);
	burn(NULL);
	if (strcmp(mode, "join") == 0)
		for (int i = 1; i < threads; i++)
			pthread_join(t[i], NULL);
	exit(0);   /* "group": the other threads are still burning */
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Touches mib MiB, lives until ms have passed since t0; its ru_maxrss. */
static long touch(double t0, double ms, int mib)
{
	struct rusage ru;
	size_t len = (size_t)mib << 20;
	volatile char *p = malloc(len);
	if (!p)
		exit(1);
	for (size_t i = 0; i < len; i += 4096)
		p[i] = 1;
	while (now_ms() - t0 < ms)
		usleep(1000);
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static int memory(double ms, int mib, int in_child)
{
	double t0 = now_ms();
	struct rusage ru;
	if (!in_child) {
		printf("pid=%d maxrss_kb=%ld\n", (int)getpid(), touch(t0, ms, mib));
		return 0;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		touch(t0, ms, mib);
		_exit(0);
	}
	int ws;
	if (wait4(pid, &ws, 0, &ru) != pid)
		return 1;
	struct rusage self;
	getrusage(RUSAGE_SELF, &self);
	printf("pid=%d maxrss_kb=%ld self_kb=%ld\n", (int)pid, ru.ru_maxrss,
	       self.ru_maxrss);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strncmp(argv[3], "mem", 3) == 0)
		return memory(atof(argv[1]), atoi(argv[2]),
			      strcmp(argv[3], "memchild") == 0);
	if (argc != 4) {
		fprintf(stderr, "usage: trace_burn MS THREADS join|group|leader|self\n"
			"       trace_burn MS MIB mem|memchild\n");
		return 2;
	}
	burn_ms = atof(argv[1]);
	int threads = atoi(argv[2]);
	if (threads < 1 || threads > 64)
		return 2;
	struct rusage ru;
	if (strcmp(argv[3], "self") == 0) {
		burn(NULL);
		getrusage(RUSAGE_SELF, &ru);
		print_rusage(getpid(), &ru);
		return 0;
	}
	pid_t pid = fork();
	if (pid == 0)
		child(threads, argv[3]);
	int ws;
	if (wait4(pid, &ws, 0, &ru) != pid)
		return 1;
	print_rusage(pid, &ru);
	return 0;
}
