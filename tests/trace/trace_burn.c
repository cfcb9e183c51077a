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

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: trace_burn MS THREADS join|group|leader|self\n");
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
