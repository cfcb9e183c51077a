/*
 * vtime_spin: a fixed CPU-bound job for the vtime benchmarks.  Spins
 * ITERATIONS times (0: forever) and prints how long that took on its own
 * clock (virtual time when dilated) and in CPU time:
 *
 *   elapsed_ns ELAPSED cpu_ns CPU utime_ns USER stime_ns SYSTEM
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static int64_t ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s ITERATIONS\n", argv[0]);
		return 2;
	}
	unsigned long long n = strtoull(argv[1], NULL, 10);
	int64_t t0 = ns(CLOCK_MONOTONIC), c0 = ns(CLOCK_PROCESS_CPUTIME_ID);
	volatile unsigned long long x = 0;
	for (unsigned long long i = 0; n == 0 || i < n; i++)
		x += i;
	int64_t t1 = ns(CLOCK_MONOTONIC), c1 = ns(CLOCK_PROCESS_CPUTIME_ID);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("elapsed_ns %lld cpu_ns %lld utime_ns %lld stime_ns %lld\n",
	       (long long)(t1 - t0), (long long)(c1 - c0),
	       (long long)ru.ru_utime.tv_sec * 1000000000 + ru.ru_utime.tv_usec * 1000,
	       (long long)ru.ru_stime.tv_sec * 1000000000 + ru.ru_stime.tv_usec * 1000);
	return 0;
}
