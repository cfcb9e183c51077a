/*
 * preload.c - libkxvtime.so, LD_PRELOADed into dilated processes.
 *
 * Maps the clock file named by KXRUN_VTIME_SHM read-only and answers the
 * time calls from it without a system call; sleeps and the timeouts of
 * poll/select/epoll_wait elapse in virtual time.  Without KXRUN_VTIME_SHM
 * (or with a file that is not a vtime clock) everything passes through.
 * Statically linked programs and raw syscalls escape (see README).
 */
#include "shm.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

static const volatile struct kxvt_shm *shm;

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_gettimeofday)(struct timeval *, void *);
static time_t (*real_time)(time_t *);
static int (*real_nanosleep)(const struct timespec *, struct timespec *);
static int (*real_clock_nanosleep)(clockid_t, int, const struct timespec *,
                                   struct timespec *);
static int (*real_usleep)(useconds_t);
static unsigned (*real_sleep)(unsigned);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
static int (*real_epoll_wait)(int, struct epoll_event *, int, int);
static int (*real_ppoll)(struct pollfd *, nfds_t, const struct timespec *,
                         const sigset_t *);
static int (*real_pselect)(int, fd_set *, fd_set *, fd_set *,
                           const struct timespec *, const sigset_t *);
static int (*real_epoll_pwait)(int, struct epoll_event *, int, int,
                               const sigset_t *);

#define RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)

__attribute__((constructor)) static void kxvt_init(void)
{
	RESOLVE(clock_gettime); RESOLVE(gettimeofday); RESOLVE(time);
	RESOLVE(nanosleep); RESOLVE(clock_nanosleep); RESOLVE(usleep);
	RESOLVE(sleep); RESOLVE(poll); RESOLVE(select); RESOLVE(epoll_wait);
	RESOLVE(ppoll); RESOLVE(pselect); RESOLVE(epoll_pwait);
	const char *path = getenv("KXRUN_VTIME_SHM");
	if (!path || !*path)
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	void *p = mmap(NULL, sizeof(struct kxvt_shm), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return;
	if (((struct kxvt_shm *)p)->magic != KXVT_MAGIC) {
		munmap(p, sizeof(struct kxvt_shm));
		return;
	}
	shm = p;
}

static int virtual_clock(clockid_t c)
{
	switch (c) {
	case CLOCK_REALTIME: case CLOCK_MONOTONIC: case CLOCK_BOOTTIME:
	case CLOCK_REALTIME_COARSE: case CLOCK_MONOTONIC_COARSE:
	case CLOCK_MONOTONIC_RAW:
		return 1;
	default:
		return 0;
	}
}

static int is_realtime(clockid_t c)
{
	return c == CLOCK_REALTIME || c == CLOCK_REALTIME_COARSE;
}

static int64_t vnow(clockid_t c, uint32_t *seq)
{
	int64_t v = kxvt_read(shm, seq);
	return is_realtime(c) ? v + shm->start_real_ns : v;
}

API int clock_gettime(clockid_t c, struct timespec *ts)
{
	if (!shm || !virtual_clock(c))
		return real_clock_gettime(c, ts);
	int64_t v = vnow(c, NULL);
	ts->tv_sec = v / 1000000000;
	ts->tv_nsec = v % 1000000000;
	return 0;
}

API int gettimeofday(struct timeval *tv, void *tz)
{
	if (!shm)
		return real_gettimeofday(tv, tz);
	struct timeval *volatile tvp = tv; /* glibc declares it nonnull */
	if (tvp) {
		int64_t v = vnow(CLOCK_REALTIME, NULL);
		tvp->tv_sec = v / 1000000000;
		tvp->tv_usec = (v % 1000000000) / 1000;
	}
	return 0;
}

API time_t time(time_t *t)
{
	if (!shm)
		return real_time(t);
	time_t s = (time_t)(vnow(CLOCK_REALTIME, NULL) / 1000000000);
	if (t)
		*t = s;
	return s;
}

/* Waits until the virtual clock reaches deadline (virtual ns, MONOTONIC
 * base).  Futex on the seqlock counter, with a real 50 ms backstop. */
static void wait_until(int64_t deadline)
{
	for (;;) {
		uint32_t seq;
		int64_t v = kxvt_read(shm, &seq);
		if (v >= deadline)
			return;
		struct timespec to = {0, 50 * 1000 * 1000};
		syscall(SYS_futex, &shm->seq, FUTEX_WAIT, seq, &to, NULL, 0);
	}
}

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

API int clock_nanosleep(clockid_t c, int flags, const struct timespec *req,
                        struct timespec *rem)
{
	if (!shm || !virtual_clock(c))
		return real_clock_nanosleep(c, flags, req, rem);
	if (req->tv_nsec < 0 || req->tv_nsec >= 1000000000 || req->tv_sec < 0)
		return EINVAL;
	int64_t deadline;
	if (flags & TIMER_ABSTIME)
		deadline = ts_ns(req) - (is_realtime(c) ? shm->start_real_ns : 0);
	else
		deadline = kxvt_read(shm, NULL) + ts_ns(req);
	wait_until(deadline);
	if (rem)
		rem->tv_sec = rem->tv_nsec = 0;
	return 0;
}

API int nanosleep(const struct timespec *req, struct timespec *rem)
{
	if (!shm)
		return real_nanosleep(req, rem);
	int e = clock_nanosleep(CLOCK_MONOTONIC, 0, req, rem);
	if (e) {
		errno = e;
		return -1;
	}
	return 0;
}

API int usleep(useconds_t us)
{
	if (!shm)
		return real_usleep(us);
	wait_until(kxvt_read(shm, NULL) + (int64_t)us * 1000);
	return 0;
}

API unsigned sleep(unsigned s)
{
	if (!shm)
		return real_sleep(s);
	wait_until(kxvt_read(shm, NULL) + (int64_t)s * 1000000000);
	return 0;
}

/* Timeouts: poll for real in short slices until ready or the virtual
 * deadline has passed (a blocking call with no timeout passes through). */
#define SLICE_MS 1

API int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (!shm || timeout <= 0)
		return real_poll(fds, n, timeout);
	int64_t deadline = kxvt_read(shm, NULL) + (int64_t)timeout * 1000000;
	for (;;) {
		int r = real_poll(fds, n, SLICE_MS);
		if (r != 0 || kxvt_read(shm, NULL) >= deadline)
			return r;
	}
}

API int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	if (!shm || !tv || (tv->tv_sec == 0 && tv->tv_usec == 0))
		return real_select(nfds, r, w, e, tv);
	int64_t deadline = kxvt_read(shm, NULL) + (int64_t)tv->tv_sec * 1000000000 +
	                   (int64_t)tv->tv_usec * 1000;
	fd_set r0, w0, e0;
	if (r) r0 = *r;
	if (w) w0 = *w;
	if (e) e0 = *e;
	for (;;) {
		struct timeval slice = {0, SLICE_MS * 1000};
		int k = real_select(nfds, r, w, e, &slice);
		int64_t v = kxvt_read(shm, NULL);
		if (k != 0 || v >= deadline) {
			int64_t left = k > 0 && deadline > v ? deadline - v : 0;
			tv->tv_sec = left / 1000000000;
			tv->tv_usec = (left % 1000000000) / 1000;
			return k;
		}
		if (r) *r = r0;
		if (w) *w = w0;
		if (e) *e = e0;
	}
}

API int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	if (!shm || timeout <= 0)
		return real_epoll_wait(epfd, ev, max, timeout);
	int64_t deadline = kxvt_read(shm, NULL) + (int64_t)timeout * 1000000;
	for (;;) {
		int r = real_epoll_wait(epfd, ev, max, SLICE_MS);
		if (r != 0 || kxvt_read(shm, NULL) >= deadline)
			return r;
	}
}

API int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *to,
              const sigset_t *mask)
{
	if (!shm || !to || (to->tv_sec == 0 && to->tv_nsec == 0))
		return real_ppoll(fds, n, to, mask);
	int64_t deadline = kxvt_read(shm, NULL) + ts_ns(to);
	for (;;) {
		struct timespec slice = {0, SLICE_MS * 1000000};
		int r = real_ppoll(fds, n, &slice, mask);
		if (r != 0 || kxvt_read(shm, NULL) >= deadline)
			return r;
	}
}

API int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e,
                const struct timespec *to, const sigset_t *mask)
{
	if (!shm || !to || (to->tv_sec == 0 && to->tv_nsec == 0))
		return real_pselect(nfds, r, w, e, to, mask);
	int64_t deadline = kxvt_read(shm, NULL) + ts_ns(to);
	fd_set r0, w0, e0;
	if (r) r0 = *r;
	if (w) w0 = *w;
	if (e) e0 = *e;
	for (;;) {
		struct timespec slice = {0, SLICE_MS * 1000000};
		int k = real_pselect(nfds, r, w, e, &slice, mask);
		if (k != 0 || kxvt_read(shm, NULL) >= deadline)
			return k;
		if (r) *r = r0;
		if (w) *w = w0;
		if (e) *e = e0;
	}
}

API int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
                    const sigset_t *mask)
{
	if (!shm || timeout <= 0)
		return real_epoll_pwait(epfd, ev, max, timeout, mask);
	int64_t deadline = kxvt_read(shm, NULL) + (int64_t)timeout * 1000000;
	for (;;) {
		int r = real_epoll_pwait(epfd, ev, max, SLICE_MS, mask);
		if (r != 0 || kxvt_read(shm, NULL) >= deadline)
			return r;
	}
}
