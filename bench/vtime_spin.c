/*
 * vtime_spin: a fixed CPU-bound job for the vtime benchmarks.  Spins
 * ITERATIONS times (0: forever) and prints how long that took on its own
 * clock (virtual time when dilated) and in CPU time:
 *
 *   elapsed_ns ELAPSED cpu_ns CPU
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
	printf("elapsed_ns %lld cpu_ns %lld\n", (long long)(ns(CLOCK_MONOTONIC) - t0),
	       (long long)(ns(CLOCK_PROCESS_CPUTIME_ID) - c0));
	return 0;
}
