/*
 * calibrate.c - what a stop and a resume cost a dilated process in CPU
 * time (vtime.h: vt_resume_cost), so that virtual time does not charge it.
 *
 * Every share ends with a stop (the counter's overflow interrupt, SIGSTOP,
 * the stop itself) and starts with a resume (SIGCONT, the wake-up): kernel
 * work in the process's context, billed to its CPU clock, so to its
 * virtual clock.  At step 100 us that made a CPU-bound job's virtual
 * duration 13-28 % longer than its plain CPU time here.  Measured once per
 * controller: a forked child spins, counting; its work per CPU ns running
 * free and running in 100 us shares stopped by its counter gives the CPU
 * each stop-and-resume cost.
 */
#include "vtime.h"

#include <linux/perf_event.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCKS 5
#define SHARES 60               /* per block */
#define SHARE_NS 100000
#define FREE_NS 10000000

/* Runs the child free (its counter out of the way) until it has used ns
 * more CPU. */
static void run_free(pid_t pid, int fd, int64_t ns)
{
	uint64_t never = 1000000000000ull;
	ioctl(fd, PERF_EVENT_IOC_PERIOD, &never);
	int64_t c0 = vt_leader_cpu(pid);
	struct timespec t = {0, 200 * 1000};
	kill(pid, SIGCONT);
	for (int i = 0; i < 2500 && vt_leader_cpu(pid) - c0 < ns; i++)
		nanosleep(&t, NULL);
	kill(pid, SIGSTOP);
	siginfo_t si;
	waitid(P_PID, pid, &si, WSTOPPED);
}

/* One share: resumed, stopped by its counter after SHARE_NS of CPU. */
static int run_share(pid_t pid, int fd)
{
	uint64_t period = SHARE_NS;
	struct timespec t = {0, 20 * 1000};
	ioctl(fd, PERF_EVENT_IOC_PERIOD, &period);
	kill(pid, SIGCONT);
	for (int i = 0; i < 5000; i++) { /* ~0.1 s at most */
		siginfo_t si = {0};
		if (waitid(P_PID, pid, &si, WSTOPPED | WNOHANG) == 0 && si.si_pid == pid)
			return 0;
		nanosleep(&t, NULL);
	}
	return -1;
}

int64_t vt_resume_cost(void)
{
	static int64_t cost = -1;
	if (cost >= 0)
		return cost;
	cost = 0;
	volatile uint64_t *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
	                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (count == MAP_FAILED)
		return cost;
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) { /* spins and counts: no allocation, no locks */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		setpgid(0, 0);
		raise(SIGSTOP);
		for (;;)
			(*count)++;
	}
	char err[256];
	int fd = -1;
	siginfo_t si;
	if (pid > 0 && waitid(P_PID, pid, &si, WSTOPPED) == 0 &&
	    (fd = vt_open_counter(pid, err, sizeof err)) >= 0) {
		/* free, blocks of shares, free again: the free rate is their
		 * mean, so a drift in the machine's load meanwhile cancels out;
		 * the median block, so one that others' load hit does not count */
		uint64_t n0 = *count;
		int64_t c0 = vt_leader_cpu(pid);
		run_free(pid, fd, FREE_NS);
		uint64_t n1 = *count, nb[BLOCKS + 1];
		int64_t c1 = vt_leader_cpu(pid), cb[BLOCKS + 1];
		int ok = 1;
		nb[0] = n1, cb[0] = c1;
		for (int b = 0; b < BLOCKS && ok; b++) {
			for (int i = 0; i < SHARES && ok; i++)
				ok = run_share(pid, fd) == 0;
			nb[b + 1] = *count, cb[b + 1] = vt_leader_cpu(pid);
		}
		uint64_t n2 = *count;
		int64_t c2 = vt_leader_cpu(pid);
		run_free(pid, fd, FREE_NS);
		uint64_t n3 = *count;
		int64_t c3 = vt_leader_cpu(pid);
		double rate = (double)(n1 - n0 + n3 - n2) / (double)(c1 - c0 + c3 - c2);
		double per[BLOCKS];
		for (int b = 0; ok && rate > 0 && b < BLOCKS; b++) {
			double work = (double)(nb[b + 1] - nb[b]) / rate; /* CPU it needs */
			per[b] = ((double)(cb[b + 1] - cb[b]) - work) / SHARES;
			for (int k = b; k > 0 && per[k] < per[k - 1]; k--) {
				double t = per[k];
				per[k] = per[k - 1], per[k - 1] = t;
			}
		}
		double med = per[BLOCKS / 2];
		if (ok && rate > 0 && med > 0)
			cost = med < SHARE_NS / 2 ? (int64_t)med : SHARE_NS / 2;
	}
	if (fd >= 0)
		close(fd);
	if (pid > 0) {
		kill(pid, SIGKILL);
		kill(pid, SIGCONT);
		waitpid(pid, NULL, 0);
	}
	munmap((void *)count, 4096);
	return cost;
}
