/* Test program for kx.vtime: prints CLOCK_MONOTONIC (ns) at start and after
 * every 1 ms wait; on SIGUSR1 prints "usr1 <ns>".  argv[1] = iterations
 * (default unlimited, -1), argv[2] = how it waits: usleep (default),
 * nanosleep, poll, select, epoll, ppoll, pselect, epoll_pwait (timeouts with
 * nothing ready), thread (usleep in a second thread); "spin": argv[1] units
 * of fixed CPU work (about a ms each), printing "start", "end" and the CPU
 * time used ("cpu <ns>"); "spin2": the same work split over two threads;
 * "threads": argv[3] threads (default 8), each argv[1] times some CPU work
 * then usleep(1000), checking the sleep took >= 1 ms on the clock: prints
 * "early <ns>" for each that did not, then "sleeps <count>"; "fork": the
 * same in argv[3] child processes (default 2) forked after some CPU work
 * of the parent's (a child's clock starts below its parent's). */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got_usr1;
static void on_usr1(int s) { (void)s; got_usr1 = 1; }

static long long mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long n;
static const char *how;
static int loop(void);

static volatile long early_count, sleeps;

/* work of i-dependent length (up to ~0.4 ms), then a 1 ms sleep that
 * must not end early on the clock */
static void *sleeper(void *arg)
{
	unsigned long x = (unsigned long)arg;
	for (long i = 0; i < n; i++) {
		for (long k = 0; k < (long)((x + i * 7919) % 100) * 1000; k++)
			x = x * 2862933555777941757UL + 3037000493UL;
		long long t0 = mono();
		usleep(1000);
		long long d = mono() - t0;
		if (d < 1000000) {
			printf("early %lld\n", d);
			__atomic_add_fetch(&early_count, 1, __ATOMIC_RELAXED);
		}
		__atomic_add_fetch(&sleeps, 1, __ATOMIC_RELAXED);
	}
	return (void *)x;
}

static void *thread_main(void *a)
{
	(void)a;
	how = "usleep";
	loop();
	return NULL;
}

static long long cputime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static volatile unsigned long sink;

static void *work(void *units)
{
	unsigned long x = 0;
	for (long u = 0; u < (long)units; u++)
		for (int i = 0; i < 400000; i++)
			x = x * 2862933555777941757UL + 3037000493UL;
	sink += x;
	return NULL;
}

static int spin(int threads)
{
	long long c0 = cputime();
	printf("start %lld\n", mono());
	if (threads == 2) {
		pthread_t t;
		pthread_create(&t, NULL, work, (void *)(n / 2));
		work((void *)(n - n / 2));
		pthread_join(t, NULL);
	} else {
		work((void *)n);
	}
	printf("end %lld\n", mono());
	printf("cpu %lld\n", cputime() - c0);
	return 0;
}

int main(int argc, char **argv)
{
	n = argc > 1 ? atol(argv[1]) : -1;
	how = argc > 2 ? argv[2] : "usleep";
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(how, "spin") || !strcmp(how, "spin2"))
		return spin(!strcmp(how, "spin2") ? 2 : 1);
	if (!strcmp(how, "fork")) {
		int nc = argc > 3 ? atoi(argv[3]) : 2;
		for (int i = 0; i < nc; i++) {
			sleeper((void *)(long)(i + 1)); /* the parent works and sleeps */
			pid_t pid = fork();
			if (pid == 0) {
				sleeps = 0;
				sleeper((void *)(long)(i + 7));
				printf("sleeps %ld\n", sleeps);
				_exit(0);
			}
			waitpid(pid, NULL, 0);
		}
		printf("sleeps %ld\n", sleeps);
		return 0;
	}
	if (!strcmp(how, "threads")) {
		int nt = argc > 3 ? atoi(argv[3]) : 8;
		pthread_t t[64];
		for (int i = 0; i < nt && i < 64; i++)
			pthread_create(&t[i], NULL, sleeper, (void *)(long)(i + 1));
		for (int i = 0; i < nt && i < 64; i++)
			pthread_join(t[i], NULL);
		printf("sleeps %ld\n", sleeps);
		return 0;
	}
	if (!strcmp(how, "thread")) { /* the same loop in a second thread */
		pthread_t t;
		pthread_create(&t, NULL, thread_main, NULL);
		pthread_join(t, NULL);
		return 0;
	}
	return loop();
}

static int loop(void)
{
	int ep = epoll_create1(0);
	signal(SIGUSR1, on_usr1);
	printf("start %lld\n", mono());
	for (long i = 0; n < 0 || i < n; i++) {
		if (got_usr1) {
			got_usr1 = 0;
			printf("usr1 %lld\n", mono());
		}
		if (!strcmp(how, "nanosleep")) {
			struct timespec ts = {0, 1000000};
			nanosleep(&ts, NULL);
		} else if (!strcmp(how, "poll")) {
			poll(NULL, 0, 1);
		} else if (!strcmp(how, "select")) {
			struct timeval tv = {0, 1000};
			select(0, NULL, NULL, NULL, &tv);
		} else if (!strcmp(how, "ppoll")) {
			struct timespec ts = {0, 1000000};
			ppoll(NULL, 0, &ts, NULL);
		} else if (!strcmp(how, "pselect")) {
			struct timespec ts = {0, 1000000};
			pselect(0, NULL, NULL, NULL, &ts, NULL);
		} else if (!strcmp(how, "epoll_pwait")) {
			struct epoll_event ev;
			epoll_pwait(ep, &ev, 1, 1, NULL);
		} else if (!strcmp(how, "epoll")) {
			struct epoll_event ev;
			epoll_wait(ep, &ev, 1, 1);
		} else {
			usleep(1000);
		}
		printf("t %lld\n", mono());
	}
	return 0;
}
