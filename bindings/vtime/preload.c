/*
 * preload.c - libkxvtime.so, LD_PRELOADed into dilated processes.
 *
 * Maps the clock file named by KXRUN_VTIME_SHM and answers the time calls
 * from its slot KXRUN_VTIME_SLOT (shm.h: the round's base plus this
 * process's CPU time since, divided by its speed); sleeps and the timeouts
 * of poll/select/epoll_wait elapse in virtual time: a deadline inside the
 * process's quantum is reached at once (its clock jumps to it), a later one
 * parks the thread until a round in which it falls.  Without KXRUN_VTIME_SHM
 * (or with a file that is not a vtime clock) everything passes through.
 * Statically linked programs and raw syscalls escape (see README).
 */
#include "shm.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

static volatile struct kxvt_shm *shm;
static volatile struct kxvt_slot *slot;   /* NULL: the shared clock only */
static pid_t mypid;
/* A process other than the slot's own (a child) measures its CPU from the
 * first read after each resume of the slot. */
static uint32_t lazy_seq = 1;
static int64_t lazy_base;
/* The highest value this process has read: its clock never steps back. */
static int64_t floor_ns;

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

static void after_fork(void)
{
	mypid = getpid();
	lazy_seq = 1; /* never a seqlock value at rest (odd) */
}

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
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	void *p = mmap(NULL, sizeof(struct kxvt_shm), PROT_READ | PROT_WRITE,
	               MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return;
	struct kxvt_shm *s = p;
	if (s->magic != KXVT_MAGIC || s->version != KXVT_VERSION) {
		munmap(p, sizeof(struct kxvt_shm));
		return;
	}
	shm = s;
	const char *sl = getenv("KXRUN_VTIME_SLOT");
	int i = sl ? atoi(sl) : -1;
	if (i >= 0 && i < KXVT_SLOTS && (uint32_t)i < s->nslots)
		slot = &s->slot[i];
	mypid = getpid();
	pthread_atfork(NULL, NULL, after_fork);
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

static int64_t own_cpu(void)
{
	struct timespec ts;
	real_clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* This process's raw virtual clock (MONOTONIC base) and the slot's view it
 * was read with (*vo).  The view, the CPU time and skip are one snapshot:
 * a read that a stop interrupts and a resume follows (the slot changed:
 * another round) is done again, else it would return the old round's
 * value in the new one. */
static int64_t vclock_raw(struct kxvt_slot_view *vo)
{
	struct kxvt_slot_view v;
	int64_t cpu;
	uint64_t skip;
	do {
		kxvt_slot_read(slot, &v);
		cpu = own_cpu();
		skip = __atomic_load_n(&slot->skip, __ATOMIC_ACQUIRE);
	} while (__atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE) != v.seq ||
	         kxvt_skip_gen(skip) != kxvt_gen(v.seq));
	int64_t base;
	if (mypid == slot->pid) {
		base = v.cpu_base;
	} else {
		if (__atomic_load_n(&lazy_seq, __ATOMIC_RELAXED) != v.seq) {
			lazy_base = cpu;
			__atomic_store_n(&lazy_seq, v.seq, __ATOMIC_RELAXED);
		}
		base = lazy_base;
	}
	if (vo)
		*vo = v;
	return kxvt_slot_clock(&v, kxvt_skip_ns(skip), cpu - base);
}

/* The clock as the process reads it: never below an earlier read (the
 * floor: a child's own clock starts below what its parent read, threads
 * read the CPU time in some order).  A read below the floor because a
 * resume came in between (the slot changed) is done again. */
static int64_t vclock(struct kxvt_slot_view *vo)
{
	if (!slot)
		return kxvt_read(shm, NULL);
	struct kxvt_slot_view v;
	int64_t c, f;
	for (;;) {
		c = vclock_raw(&v);
		f = __atomic_load_n(&floor_ns, __ATOMIC_RELAXED);
		if (c >= f || __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE) == v.seq)
			break;
	}
	while (c > f && !__atomic_compare_exchange_n(&floor_ns, &f, c, 0,
	                                             __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	if (vo)
		*vo = v;
	return c > f ? c : f;
}

static int64_t vnow(clockid_t c)
{
	int64_t v = vclock(NULL);
	return is_realtime(c) ? v + shm->start_real_ns : v;
}

API int clock_gettime(clockid_t c, struct timespec *ts)
{
	if (!shm || !virtual_clock(c))
		return real_clock_gettime(c, ts);
	int64_t v = vnow(c);
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
		int64_t v = vnow(CLOCK_REALTIME);
		tvp->tv_sec = v / 1000000000;
		tvp->tv_usec = (v % 1000000000) / 1000;
	}
	return 0;
}

API time_t time(time_t *t)
{
	if (!shm)
		return real_time(t);
	time_t s = (time_t)(vnow(CLOCK_REALTIME) / 1000000000);
	if (t)
		*t = s;
	return s;
}

/* A deadline inside this process's quantum is reached at once: the clock
 * jumps to it (skip), measured from the raw clock (the floor may stand
 * above it: a jump from the floor would fall short of the deadline), and
 * swapped into the share it was measured in only (skip's generation: a
 * stop between the read and the write, then a resume, must not carry it
 * into the next share).  1 when the deadline is reached. */
static int deadline_reached(int64_t deadline)
{
	for (;;) {
		struct kxvt_slot_view v;
		int64_t now = vclock(&v);
		if (now >= deadline)
			return 1;
		if (!slot || deadline >= v.vend)
			return 0;
		int64_t raw = vclock_raw(&v);
		if (raw >= deadline)
			return 1;
		if (deadline >= v.vend)
			return 0;
		uint64_t w = __atomic_load_n(&slot->skip, __ATOMIC_ACQUIRE);
		while (kxvt_skip_gen(w) == kxvt_gen(v.seq))
			if (__atomic_compare_exchange_n(&slot->skip, &w,
			        kxvt_skip_pack(kxvt_gen(v.seq), kxvt_skip_ns(w) + deadline - raw),
			        0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				return 1;
	}
}

/* A thread waits for a later round: tell the controller why it blocks.
 * sleep: nothing but the clock (or a signal) can end the wait. */
static void park(int64_t deadline, int sleep)
{
	if (!slot)
		return;
	if (sleep)
		__atomic_fetch_add(&slot->asleep, 1, __ATOMIC_ACQ_REL);
	__atomic_fetch_add(&slot->parked, 1, __ATOMIC_ACQ_REL);
	int64_t w = __atomic_load_n(&slot->wake_at, __ATOMIC_ACQUIRE);
	while (deadline < w && !__atomic_compare_exchange_n(&slot->wake_at, &w,
	           deadline, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
}

static void unpark(int sleep)
{
	if (!slot)
		return;
	if (__atomic_fetch_sub(&slot->parked, 1, __ATOMIC_ACQ_REL) == 1)
		__atomic_store_n(&slot->wake_at, INT64_MAX, __ATOMIC_RELEASE);
	if (sleep)
		__atomic_fetch_sub(&slot->asleep, 1, __ATOMIC_ACQ_REL);
}

static void park_begin(int64_t deadline)
{
	park(deadline, 0);
}

static void park_end(void)
{
	unpark(0);
}

/* Waits until the virtual clock reaches deadline (virtual ns, MONOTONIC
 * base): the futex on the round counter, with a real 50 ms backstop. */
static void wait_until(int64_t deadline)
{
	for (;;) {
		uint32_t seq;
		kxvt_read(shm, &seq);
		if (deadline_reached(deadline))
			return;
		struct timespec to = {0, 50 * 1000 * 1000};
		park(deadline, 1);
		syscall(SYS_futex, &shm->seq, FUTEX_WAIT, seq, &to, NULL, 0);
		unpark(1);
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
		deadline = vclock(NULL) + ts_ns(req);
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
	wait_until(vclock(NULL) + (int64_t)us * 1000);
	return 0;
}

API unsigned sleep(unsigned s)
{
	if (!shm)
		return real_sleep(s);
	wait_until(vclock(NULL) + (int64_t)s * 1000000000);
	return 0;
}

/* Timeouts: ready now, or the virtual deadline reached (deadline_reached),
 * else wait for real in short slices, parked, and check again (a blocking
 * call with no timeout passes through). */
#define SLICE_MS 1

API int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (!shm || timeout <= 0)
		return real_poll(fds, n, timeout);
	int64_t deadline = vclock(NULL) + (int64_t)timeout * 1000000;
	for (;;) {
		int r = real_poll(fds, n, 0);
		if (r != 0 || deadline_reached(deadline))
			return r;
		park_begin(deadline);
		r = real_poll(fds, n, SLICE_MS);
		park_end();
		if (r != 0)
			return r;
	}
}

API int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	if (!shm || !tv || (tv->tv_sec == 0 && tv->tv_usec == 0))
		return real_select(nfds, r, w, e, tv);
	int64_t deadline = vclock(NULL) + (int64_t)tv->tv_sec * 1000000000 +
	                   (int64_t)tv->tv_usec * 1000;
	fd_set r0, w0, e0;
	if (r) r0 = *r;
	if (w) w0 = *w;
	if (e) e0 = *e;
	for (int first = 1;; first = 0) {
		struct timeval slice = {0, first ? 0 : SLICE_MS * 1000};
		if (!first)
			park_begin(deadline);
		int k = real_select(nfds, r, w, e, &slice);
		if (!first)
			park_end();
		if (k != 0 || deadline_reached(deadline)) {
			int64_t v = vclock(NULL);
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

/* The controller's SIGSTOP/SIGCONT makes epoll_wait fail with EINTR
 * (signal(7)); not the program's business when the slot was resumed
 * meanwhile. */
static uint32_t resumes(void)
{
	return slot ? __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE) : shm->seq;
}

static int ours(int r, uint32_t before)
{
	return r < 0 && errno == EINTR && resumes() != before;
}

API int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	if (!shm || timeout <= 0)
		return real_epoll_wait(epfd, ev, max, timeout);
	int64_t deadline = vclock(NULL) + (int64_t)timeout * 1000000;
	for (;;) {
		int r = real_epoll_wait(epfd, ev, max, 0);
		if (r != 0 || deadline_reached(deadline))
			return r;
		uint32_t before = resumes();
		park_begin(deadline);
		r = real_epoll_wait(epfd, ev, max, SLICE_MS);
		park_end();
		if (r != 0 && !ours(r, before))
			return r;
	}
}

API int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *to,
              const sigset_t *mask)
{
	if (!shm || !to || (to->tv_sec == 0 && to->tv_nsec == 0))
		return real_ppoll(fds, n, to, mask);
	int64_t deadline = vclock(NULL) + ts_ns(to);
	for (int first = 1;; first = 0) {
		struct timespec slice = {0, first ? 0 : SLICE_MS * 1000000};
		if (!first)
			park_begin(deadline);
		int r = real_ppoll(fds, n, &slice, mask);
		if (!first)
			park_end();
		if (r != 0 || deadline_reached(deadline))
			return r;
	}
}

API int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e,
                const struct timespec *to, const sigset_t *mask)
{
	if (!shm || !to || (to->tv_sec == 0 && to->tv_nsec == 0))
		return real_pselect(nfds, r, w, e, to, mask);
	int64_t deadline = vclock(NULL) + ts_ns(to);
	fd_set r0, w0, e0;
	if (r) r0 = *r;
	if (w) w0 = *w;
	if (e) e0 = *e;
	for (int first = 1;; first = 0) {
		struct timespec slice = {0, first ? 0 : SLICE_MS * 1000000};
		if (!first)
			park_begin(deadline);
		int k = real_pselect(nfds, r, w, e, &slice, mask);
		if (!first)
			park_end();
		if (k != 0 || deadline_reached(deadline))
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
	int64_t deadline = vclock(NULL) + (int64_t)timeout * 1000000;
	for (;;) {
		int r = real_epoll_pwait(epfd, ev, max, 0, mask);
		if (r != 0 || deadline_reached(deadline))
			return r;
		uint32_t before = resumes();
		park_begin(deadline);
		r = real_epoll_pwait(epfd, ev, max, SLICE_MS, mask);
		park_end();
		if (r != 0 && !ours(r, before))
			return r;
	}
}
