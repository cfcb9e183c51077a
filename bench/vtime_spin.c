/*
 * vtime_spin: a fixed CPU-bound job for the vtime benchmarks.  Spins
 * ITERATIONS times (0: forever) and prints how long that took on its own
 * clock (virtual time when dilated), in CPU time, and the time it ran its
 * own instructions (run_ticks, in the CPU's time-stamp counter's ticks):
 *
 *   elapsed_ns ELAPSED cpu_ns CPU utime_ns USER stime_ns SYSTEM run_ticks RUN
 *
 * run_ticks adds up the gaps between two reads of the time-stamp counter
 * (every 64 iterations) shorter than GAP_TICKS: longer ones are interrupts,
 * the kernel, a stop, another process.  It is read directly (the clock
 * library cannot see it), so it is real time, not virtual, and the ratio
 * of a run's CPU (or virtual) time to it does not depend on how fast the
 * host ran the loop that time (its other tenants, its clock): the
 * benchmarks compare those ratios.  0 where the counter cannot be read.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#define GAP_TICKS 4000 /* ~1.5 us at 2.6 GHz */

static inline uint64_t ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
#elif defined(__aarch64__)
	uint64_t v;
	__asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
	return v;
#else
	return 0;
#endif
}

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
	uint64_t run = 0, prev = ticks();
	for (unsigned long long i = 0; n == 0 || i < n; i++) {
		x += i;
		if ((i & 63) == 63) {
			uint64_t t = ticks();
			if (t - prev < GAP_TICKS)
				run += t - prev;
			prev = t;
		}
	}
	int64_t t1 = ns(CLOCK_MONOTONIC), c1 = ns(CLOCK_PROCESS_CPUTIME_ID);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("elapsed_ns %lld cpu_ns %lld utime_ns %lld stime_ns %lld run_ticks %llu\n",
	       (long long)(t1 - t0), (long long)(c1 - c0),
	       (long long)ru.ru_utime.tv_sec * 1000000000 + ru.ru_utime.tv_usec * 1000,
	       (long long)ru.ru_stime.tv_sec * 1000000000 + ru.ru_stime.tv_usec * 1000,
	       (unsigned long long)run);
	return 0;
}
