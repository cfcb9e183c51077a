/*
 * calibrate.c - what a resume costs a dilated process (vtime.h:
 * vt_resume_cost), so that virtual time does not charge it.
 *
 * A share stopped by its counter is charged the CPU its counter counted
 * up to the overflow (round.c: what it counted past it, the stop's own
 * path, is not charged).  That count holds the share's start too: SIGCONT,
 * the wake-up, the counter's timer started again (VM exits here), 10-20
 * us a share on this VM, which a process run plainly never pays.  It is
 * measured here, in the counter's terms: a forked child reads the
 * monotonic clock in a loop and adds up the gaps under GAP_NS, the time
 * it ran its own instructions.  Run free, with its counter off, the ratio
 * of its CPU time to that is what a plain run costs beyond its own
 * instructions (interrupts); run in shares of its counter's shortest
 * period, a share's count less its own instructions times that ratio is
 * the resume's cost.  All of it is time, not work: the host's speed (its
 * other tenants, its clock: the same job's CPU time varies up to 2x in
 * episodes of seconds on this VM) does not enter.
 *
 * Measured in a thread at the first experiment (the experiments go on
 * with a provisional value and are corrected when it comes: round.c) and
 * kept per boot and CPU model in a file (vt_calibration_path), so that the
 * next kxrun of this boot does not measure again.
 */
#include "vtime.h"

#include "kx.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GAP_NS 1000            /* a longer gap in the child's loop: not its run */
#define BLOCKS 6
#define SHARES 20              /* per block */
#define FREE_NS 8000000        /* real ns of a free run, before each block and after */
#define GUESS_NS 10000         /* until the first measurement of this boot */
#define KEEP_S 600             /* a value older: measured again (the load it
                                  was measured under may be gone: 5.6-7.5 us
                                  beside two busy loops here, 8-10.5 us not) */

/* The child: its own run time, added up where it reads its clock. */
static void spin(volatile int64_t *user)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t prev = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
		if (t - prev < GAP_NS)
			*user += t - prev;
		prev = t;
	}
}

struct mark { int64_t cpu, counter, user; };

static void mark(pid_t pid, int fd, volatile int64_t *user, struct mark *m)
{
	uint64_t c = 0;
	if (read(fd, &c, sizeof c) != (ssize_t)sizeof c)
		c = 0;
	m->counter = (int64_t)c;
	m->cpu = vt_leader_cpu(pid);
	m->user = *user;
}

static int stopped(pid_t pid, int block)
{
	siginfo_t si = {0};
	return waitid(P_PID, pid, &si, WSTOPPED | (block ? 0 : WNOHANG)) == 0 &&
	       si.si_pid == pid;
}

/* Runs the child free, its counter off, for FREE_NS of real time, not
 * looking at it meanwhile (a wake-up of the controller on its CPU costs
 * it ~20 us here). */
static int run_free(pid_t pid, int fd)
{
	ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
	struct timespec t = {0, FREE_NS};
	kill(pid, SIGCONT);
	nanosleep(&t, NULL);
	kill(pid, SIGSTOP);
	int ok = stopped(pid, 1);
	ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
	return ok ? 0 : -1;
}

/* One share as round.c runs a CPU-bound one: resumed, stopped by its
 * counter after VT_MIN_PERIOD of CPU, the controller asleep until then
 * and looking every 20 us after. */
static int run_share(pid_t pid, int fd)
{
	uint64_t period = VT_MIN_PERIOD;
	ioctl(fd, PERF_EVENT_IOC_PERIOD, &period);
	kill(pid, SIGCONT);
	struct timespec t = {0, VT_MIN_PERIOD};
	nanosleep(&t, NULL);
	t.tv_nsec = 20 * 1000;
	for (int i = 0; i < 5000; i++) { /* ~0.1 s at most */
		if (stopped(pid, 0))
			return 0;
		nanosleep(&t, NULL);
	}
	return -1;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Blocks of shares between free runs; each block's mean resume cost
 * against the plain overhead of the free runs beside it; the median
 * block.  -1 when it cannot be measured (no counter, the child lost). */
static int64_t measure(char *err, size_t errlen)
{
	volatile int64_t *user = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
	                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (user == MAP_FAILED) {
		vt_seterr(err, errlen, "mmap: %s", strerror(errno));
		return -1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) { /* spins and counts: no allocation, no locks */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		setpgid(0, 0); /* the counter stops its process group */
		raise(SIGSTOP);
		spin(user);
	}
	int64_t cost = -1;
	int fd = -1;
	if (pid < 0)
		vt_seterr(err, errlen, "fork: %s", strerror(errno));
	if (pid > 0 && stopped(pid, 1) &&
	    (fd = vt_open_counter(pid, err, errlen)) >= 0) {
		struct mark f0, f1, g1, s0, s1;
		int64_t block[BLOCKS];
		mark(pid, fd, user, &f0);
		int ok = run_free(pid, fd) == 0;
		mark(pid, fd, user, &f1);
		for (int b = 0; b < BLOCKS && ok; b++) {
			int64_t counted = 0, own = 0;
			for (int i = 0; i < SHARES && ok; i++) {
				mark(pid, fd, user, &s0);
				ok = run_share(pid, fd) == 0;
				mark(pid, fd, user, &s1);
				int64_t c = s1.counter - s0.counter; /* to the overflow */
				counted += c < VT_MIN_PERIOD ? c : VT_MIN_PERIOD;
				own += s1.user - s0.user;
			}
			/* the free runs before and after the block */
			ok = ok && run_free(pid, fd) == 0;
			mark(pid, fd, user, &g1);
			double plain = (double)(g1.cpu - s1.cpu + f1.cpu - f0.cpu) /
			               (double)(g1.user - s1.user + f1.user - f0.user);
			f0 = s1, f1 = g1;
			block[b] = (int64_t)((double)counted - plain * (double)own) / SHARES;
		}
		if (ok) {
			qsort(block, BLOCKS, sizeof block[0], cmp_i64);
			cost = block[BLOCKS / 2] > 0 ? block[BLOCKS / 2] : 0;
		} else {
			vt_seterr(err, errlen, "the calibration's child did not stop");
		}
	}
	if (fd >= 0)
		close(fd);
	if (pid > 0) {
		kill(pid, SIGKILL);
		kill(pid, SIGCONT);
		waitpid(pid, NULL, 0);
	}
	munmap((void *)user, 4096);
	return cost;
}

/* ---- the value and where it is kept -------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t cost = GUESS_NS;
static enum vt_cost_source source = VT_COST_NONE;
static time_t measured_at;     /* of cost */

int vt_calibration_path(char *buf, size_t n)
{
	const char *env = getenv("KXRUN_VTIME_CALIBRATION");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int k;
	if (env && *env)
		k = snprintf(buf, n, "%s", env);
	else if (geteuid() == 0)
		k = snprintf(buf, n, "/run/kxrun/vtime-calibration");
	else if (xdg && *xdg)
		k = snprintf(buf, n, "%s/kxrun-vtime-calibration", xdg);
	else
		k = snprintf(buf, n, "/tmp/kxrun-%d/vtime-calibration", (int)geteuid());
	return k > 0 && (size_t)k < n ? 0 : -1;
}

/* What the file's value holds for: this boot, this CPU model. */
static void this_machine(char *boot, size_t bn, char *cpu, size_t cn)
{
	char buf[8192];
	snprintf(boot, bn, "?");
	snprintf(cpu, cn, "?");
	if (vt_read_file("/proc/sys/kernel/random/boot_id", buf, sizeof buf) > 0)
		snprintf(boot, bn, "%.*s", (int)strcspn(buf, "\n"), buf);
	const char *m;
	if (vt_read_file("/proc/cpuinfo", buf, sizeof buf) > 0 &&
	    (m = strstr(buf, "model name")) && (m = strchr(m, ':')))
		snprintf(cpu, cn, "%.*s", (int)strcspn(m + 2, "\n"), m + 2);
}

/* The file's value when it is this machine's of this boot: 1; else 0
 * (*v still the value it holds, a better guess than none).  *when: the
 * time it was measured. */
static int cache_read(int64_t *v, time_t *when)
{
	char path[512], buf[1024], boot[64], cpu[256];
	if (vt_calibration_path(path, sizeof path) < 0 ||
	    vt_read_file(path, buf, sizeof buf) <= 0)
		return 0;
	this_machine(boot, sizeof boot, cpu, sizeof cpu);
	const char *r = strstr(buf, "\nresume_cost_ns ");
	if (!r || strncmp(buf, "kxrun vtime calibration 1\n", 26))
		return 0;
	*v = strtoll(r + 16, NULL, 10);
	const char *m = strstr(buf, "\nmeasured ");
	*when = m ? (time_t)strtoll(m + 10, NULL, 10) : 0;
	char want[512];
	snprintf(want, sizeof want, "\nboot_id %s\ncpu %s\n", boot, cpu);
	return strstr(buf, want) != NULL && *v >= 0;
}

/* 0, or -1 and a message */
static int cache_write(int64_t v, char *err, size_t errlen)
{
	char path[512], dir[512], buf[1024], boot[64], cpu[256];
	if (vt_calibration_path(path, sizeof path) < 0) {
		vt_seterr(err, errlen, "the calibration file's path is too long");
		return -1;
	}
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (kx_mkdir_p(dir, 0755, err, errlen) < 0)
			return -1;
	}
	this_machine(boot, sizeof boot, cpu, sizeof cpu);
	int n = snprintf(buf, sizeof buf, "kxrun vtime calibration 1\nboot_id %s\ncpu %s\n"
	                 "resume_cost_ns %lld\nmeasured %lld\n", boot, cpu,
	                 (long long)v, (long long)time(NULL));
	return kx_write_file_atomic(path, buf, (size_t)n, err, errlen) < 0 ? -1 : 0;
}

static void *measure_thread(void *ud)
{
	(void)ud;
	char err[256];
	int64_t v = measure(err, sizeof err);
	if (v >= 0) /* kept before it is used: a kxrun may end once it is */
		cache_write(v, err, sizeof err);
	pthread_mutex_lock(&lock);
	if (v >= 0)
		cost = v, measured_at = time(NULL);
	source = v >= 0 ? VT_COST_MEASURED : VT_COST_GUESS;
	pthread_mutex_unlock(&lock);
	return NULL;
}

/* (locked) */
static void start_measuring(void)
{
	pthread_t t;
	pthread_attr_t a;
	source = VT_COST_MEASURING;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, measure_thread, NULL) != 0)
		source = VT_COST_GUESS;
	pthread_attr_destroy(&a);
}

int64_t vt_resume_cost(enum vt_cost_source *src)
{
	pthread_mutex_lock(&lock);
	if (source == VT_COST_NONE) {
		int64_t v = GUESS_NS;
		if (cache_read(&v, &measured_at))
			source = VT_COST_CACHED;
		cost = v;
	}
	if (source == VT_COST_NONE ||
	    ((source == VT_COST_CACHED || source == VT_COST_MEASURED) &&
	     time(NULL) - measured_at >= KEEP_S))
		start_measuring(); /* meanwhile: the value there is, or a guess */
	int64_t v = cost;
	*src = source;
	pthread_mutex_unlock(&lock);
	return v;
}

int64_t vt_calibrate(char *err, size_t errlen)
{
	int64_t v = measure(err, errlen);
	if (v < 0)
		return -1;
	pthread_mutex_lock(&lock);
	if (source != VT_COST_MEASURING) { /* else its thread sets it soon */
		cost = v, measured_at = time(NULL);
		source = VT_COST_MEASURED;
	}
	pthread_mutex_unlock(&lock);
	if (cache_write(v, err, errlen) == 0)
		err[0] = 0;
	return v;
}
