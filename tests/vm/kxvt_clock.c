/*
 * kxvt_clock.c - a statically linked member for kxvt.ko's clock tests
 * (kxvt_test clocks): prints, N times, a line of clock reads taken every
 * way a program can, then waits 1 ms the way it was told to:
 *
 *   c VDSO_MONO SYS_MONO VDSO_REAL SYS_REAL GTOD_US TIME_S COARSE_MONO BOOT
 *
 *   kxvt_clock N nanosleep|absolute|poll|select|futex|epoll
 * read in the order COARSE, MONOTONIC (vDSO, raw), REALTIME (vDSO, raw),
 * gettimeofday, time, BOOTTIME.  The SYS_ reads are raw system calls; the
 * others go through libc (the vDSO).  None of this can see LD_PRELOAD.
 */
#include <linux/futex.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long ns(const struct timespec *ts)
{
	return (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

static long long vdso(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ns(&ts);
}

static long long sys(clockid_t c)
{
	struct timespec ts;
	syscall(SYS_clock_gettime, c, &ts);
	return ns(&ts);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10;
	const char *how = argc > 2 ? argv[2] : "nanosleep";
	static int word;
	int ep = epoll_create1(0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (long i = 0; i < n; i++) {
		struct timeval tv;
		long long c[8];
		c[6] = vdso(CLOCK_MONOTONIC_COARSE);    /* in this order */
		c[0] = vdso(CLOCK_MONOTONIC);
		c[1] = sys(CLOCK_MONOTONIC);
		c[2] = vdso(CLOCK_REALTIME);
		c[3] = sys(CLOCK_REALTIME);
		gettimeofday(&tv, NULL);
		c[4] = (long long)tv.tv_sec * 1000000 + tv.tv_usec;
		c[5] = time(NULL);
		c[7] = vdso(CLOCK_BOOTTIME);
		printf("c %lld %lld %lld %lld %lld %lld %lld %lld\n", c[0], c[1], c[2], c[3],
		       c[4], c[5], c[6], c[7]);
		struct timespec ms = {0, 1000000};
		if (!strcmp(how, "nanosleep")) {
			syscall(SYS_nanosleep, &ms, NULL);
		} else if (!strcmp(how, "absolute")) {
			struct timespec at;
			clock_gettime(CLOCK_MONOTONIC, &at);
			at.tv_nsec += 1000000;
			if (at.tv_nsec >= 1000000000)
				at.tv_sec++, at.tv_nsec -= 1000000000;
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
		} else if (!strcmp(how, "poll")) {
			syscall(SYS_poll, NULL, 0, 1);
		} else if (!strcmp(how, "select")) {
			struct timeval t = {0, 1000};
			select(0, NULL, NULL, NULL, &t);
		} else if (!strcmp(how, "futex")) {
			syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &ms, NULL, 0);
		} else if (!strcmp(how, "epoll")) {
			struct epoll_event ev;
			epoll_wait(ep, &ev, 1, 1);
		}
	}
	return 0;
}
