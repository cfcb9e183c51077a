/*
 * kxvt_test.c - drives /dev/kxvt (kmod/kxvt.h) directly, for the guest's
 * cases (tests/vm/kxvt_*.sh):
 *
 *   kxvt_test info
 *   kxvt_test rounds N busy|idle|sleep STEP_US ROUNDS [clocks]
 *       N members (a busy loop, pause(), or a 1 ms nanosleep loop), ROUNDS
 *       rounds of one share each; checks every share's end and budget and
 *       prints "round_us R used_us U overrun_us O blocked B budget K"
 *   kxvt_test checks       every ioctl's refusals (errno for each)
 *   kxvt_test fuzz COUNT   random ioctls, then a round still works
 *   kxvt_test release kill|resume
 *       closes the experiment with a busy and a parked member
 *   kxvt_test clocks PROG HOW   PROG (kxvt_clock, static) as a member in a
 *       time namespace of its own, waiting HOW; its clocks must be virtual
 *   kxvt_test hold SECONDS      keeps an experiment open (rmmod refuses)
 *   kxvt_test cpu STEP_US PROG ARGS...  PROG as a member in rounds until it
 *       exits: the CPU charged to its shares against the scheduler's count
 * Exit status 0 when every check passed; a line "FAIL: ..." otherwise.
 */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kxvt.h"

#define MAXN 1024

static int failed;
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL: " __VA_ARGS__); \
	printf("\n"); failed = 1; } } while (0)

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int open_dev(void)
{
	int fd = open(KXVT_DEVICE, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("FAIL: %s: %s\n", KXVT_DEVICE, strerror(errno));
		exit(1);
	}
	return fd;
}

static int add(int fd, pid_t pid, int64_t vnow)
{
	struct kxvt_add a = {.pid = pid, .vnow = vnow};
	if (ioctl(fd, KXVT_IOC_ADD, &a) < 0)
		return -errno;
	return (int)a.id;
}

/* Runs one share for each of n members from `now`; fills res. */
static int round_all(int fd, int n, int64_t now, int64_t step, struct kxvt_result *res)
{
	static struct kxvt_share sh[MAXN];
	for (int i = 0; i < n; i++)
		sh[i] = (struct kxvt_share){.id = i, .speed_num = 1, .speed_den = 1,
		                            .vbase = now, .vend = now + step, .budget_ns = step};
	struct kxvt_run r = {.shares = (uintptr_t)sh, .nshares = n,
	                     .flags = KXVT_RUN_NEW_ROUND, .now = now};
	if (ioctl(fd, KXVT_IOC_RUN, &r) < 0)
		return -errno;
	int got = 0;
	while (got < n) {
		struct kxvt_wait w = {.timeout_ns = 5000000000LL, .results = (uintptr_t)(res + got),
		                      .nresults = n - got};
		if (ioctl(fd, KXVT_IOC_WAIT, &w) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (!w.nresults)
			return -ETIMEDOUT;
		got += w.nresults;
	}
	return 0;
}

static int timens_fd = -1; /* the experiment's time namespace, once made */

/* A child that waits on a pipe until go() (so that it is added before it
 * runs), in a time namespace of its own when asked, then runs `what`. */
struct kid { pid_t pid; int go; };

static struct kid start_kid(const char *what, int timens, char *const argv[])
{
	int p[2], ready[2];
	char c;
	struct kid k = {-1, -1};
	if (pipe(p) < 0 || pipe(ready) < 0)
		return k;
	k.pid = fork();
	if (k.pid == 0) {
		for (int f = 3; f < 256; f++) /* not the experiment's file */
			if (f != p[0] && f != ready[1] && f != timens_fd)
				close(f);
		if (timens) { /* the experiment's time namespace: the first
			       * child makes it, the others join it */
			int ns = timens_fd;
			if ((ns < 0 && (unshare(CLONE_NEWTIME) < 0 ||
			     (ns = open("/proc/self/ns/time_for_children", O_RDONLY)) < 0)) ||
			    setns(ns, CLONE_NEWTIME) < 0) {
				perror("time namespace");
				_exit(126);
			}
		}
		close(ready[1]); /* set up: it may be added */
		if (read(p[0], &c, 1) != 1)
			_exit(125);
		if (!strcmp(what, "busy"))
			for (volatile unsigned long i = 0;; i++)
				;
		if (!strcmp(what, "idle"))
			for (;;)
				pause();
		if (!strcmp(what, "sleep"))
			for (;;) {
				struct timespec ts = {0, 1000000};
				nanosleep(&ts, NULL);
			}
		if (argv)
			execv(argv[0], argv);
		_exit(127);
	}
	close(p[0]);
	close(ready[1]);
	if (read(ready[0], &c, 1) != 0)
		printf("FAIL: child %d did not get ready\n", k.pid);
	close(ready[0]);
	k.go = p[1];
	if (timens && timens_fd < 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/ns/time", k.pid);
		timens_fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	return k;
}

static void go(struct kid *k)
{
	if (write(k->go, "g", 1) != 1)
		printf("FAIL: cannot start child %d\n", k->pid);
	close(k->go);
}

static void reap(struct kid *k, int n)
{
	for (int i = 0; i < n; i++)
		if (k[i].pid > 0) {
			kill(k[i].pid, SIGKILL);
			waitpid(k[i].pid, NULL, 0);
		}
}

static int cmd_rounds(int n, const char *what, int64_t step_us, int rounds, int clocks)
{
	static struct kid kids[MAXN];
	static struct kxvt_result res[MAXN];
	int fd = open_dev();
	struct kxvt_config cfg = {.flags = clocks ? KXVT_CFG_CLOCKS : 0};
	CHECK(ioctl(fd, KXVT_IOC_CONFIG, &cfg) == 0, "CONFIG: %s", strerror(errno));
	if (n > MAXN)
		n = MAXN;
	for (int i = 0; i < n; i++) {
		kids[i] = start_kid(what, clocks, NULL);
		int id = add(fd, kids[i].pid, 0);
		CHECK(id == i, "ADD %d: %d", kids[i].pid, id);
		go(&kids[i]);
	}
	int64_t step = step_us * 1000, used = 0, over = 0, nb = 0, nk = 0, r = 0;
	/* warm-up: start-up (page faults after fork) costs milliseconds of
	 * CPU under TCG; idle members run until each has blocked */
	for (int settled = 0; !failed && r < 2000 && settled < 3; r++) {
		int e = round_all(fd, n, r * step, step, res), blocked = 0;
		CHECK(e == 0, "warm-up round %lld: %s", (long long)r, strerror(-e));
		for (int i = 0; i < n && !e; i++)
			blocked += res[i].end == KXVT_END_BLOCKED;
		settled = !strcmp(what, "busy") || blocked == n ? settled + 1 : 0;
	}
	int64_t t0 = mono_ns();
	for (int k = 0; k < rounds && !failed; k++, r++) {
		int e = round_all(fd, n, r * step, step, res);
		CHECK(e == 0, "round %lld: %s", (long long)r, strerror(-e));
		if (getenv("KXVT_TRACE"))
			for (int i = 0; i < n && !e; i++)
				printf("r%lld m%u end %u used %lld v %lld\n", (long long)r, res[i].id,
				       res[i].end, (long long)res[i].used_ns, (long long)res[i].vclock);
		for (int i = 0; i < n && !e; i++) {
			used += res[i].used_ns;
			over += res[i].overrun_ns;
			nb += res[i].end == KXVT_END_BLOCKED;
			nk += res[i].end == KXVT_END_BUDGET;
			CHECK(res[i].end == KXVT_END_BUDGET || res[i].end == KXVT_END_BLOCKED,
			      "member %u ended %u", res[i].id, res[i].end);
			CHECK(res[i].vclock == (res[i].end == KXVT_END_BUDGET ? (r + 1) * step :
			      res[i].vclock) && res[i].vclock >= r * step && res[i].vclock <= (r + 1) * step,
			      "member %u's clock %lld outside round %lld", res[i].id,
			      (long long)res[i].vclock, (long long)r);
		}
	}
	int64_t dt = mono_ns() - t0;
	printf("round_us %.1f used_us %.1f overrun_us %.1f blocked %lld budget %lld\n",
	       dt / 1e3 / rounds, used / 1e3 / ((int64_t)rounds * n),
	       over / 1e3 / ((int64_t)rounds * n), (long long)nb, (long long)nk);
	if (!strcmp(what, "busy"))
		CHECK(nk == (int64_t)rounds * n, "busy members ended by budget %lld of %lld times",
		      (long long)nk, (long long)rounds * n);
	if (!strcmp(what, "idle"))
		CHECK(nb == (int64_t)rounds * n, "idle members ended blocked %lld of %lld times",
		      (long long)nb, (long long)rounds * n);
	close(fd);
	reap(kids, n);
	return failed;
}

/* ---- clocks: a static program's every clock read is virtual -------------- */

static int cmd_clocks(const char *prog, const char *how)
{
	const int64_t step = 1000000, base = 1000000000000000000LL;
	int fd = open_dev(), out[2];
	struct kxvt_config cfg = {.flags = KXVT_CFG_CLOCKS, .realtime_base = base};
	CHECK(ioctl(fd, KXVT_IOC_CONFIG, &cfg) == 0, "CONFIG: %s", strerror(errno));
	if (pipe(out) < 0)
		return 1;
	fflush(stdout);
	int saved = dup(1);
	dup2(out[1], 1);
	char *argv[] = {(char *)prog, "30", (char *)how, NULL};
	struct kid k = start_kid("exec", 1, argv);
	dup2(saved, 1);
	close(out[1]);
	CHECK(add(fd, k.pid, 0) == 0, "ADD %d", k.pid);
	go(&k);
	static struct kxvt_result res[1];
	int64_t r = 0;
	struct kxvt_member_info mi = {.id = 0};
	for (; r < 3000 && !failed; r++) {
		CHECK(round_all(fd, 1, r * step, step, res) == 0, "round %lld", (long long)r);
		if (ioctl(fd, KXVT_IOC_MEMBER, &mi) == 0 && !mi.ntasks)
			break;
	}
	int st;
	waitpid(k.pid, &st, 0);
	CHECK(WIFEXITED(st) && !WEXITSTATUS(st), "%s %s ended with status %#x", prog, how, st);
	FILE *f = fdopen(out[0], "r");
	long long c[8], prev = -1;
	int lines = 0, late = 0;
	char line[512];
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "c %lld %lld %lld %lld %lld %lld %lld %lld", &c[0], &c[1], &c[2],
		           &c[3], &c[4], &c[5], &c[6], &c[7]) != 8)
			continue;
		lines++;
		long long end = (r + 1) * step;
		/* read in order: COARSE, MONOTONIC vDSO, raw, REALTIME vDSO, raw,
		 * gettimeofday, time, BOOTTIME: one clock that never steps back
		 * (REALTIME = base + MONOTONIC), within virtual time */
		long long seq[] = {c[6], c[0], c[1], c[2] - base, c[3] - base,
		                   c[4] * 1000 - base, c[7]};
		for (int i = 1; i < 7; i++) /* gettimeofday truncates to a us */
			CHECK(seq[i] + (i == 5 ? 999 : 0) >= seq[i - 1],
			      "read %d went back: %lld < %lld (line %s)", i, seq[i], seq[i - 1], line);
		CHECK(c[6] >= 0 && c[6] % step == 0 && c[7] <= end,
		      "clocks outside virtual time [0, %lld]: %s", end, line);
		CHECK(c[5] >= (base + c[6]) / 1000000000 && c[5] <= (base + c[7]) / 1000000000,
		      "time() %lld: %s", c[5], line);
		/* never early; the loop's own CPU on top (printf and eight
		 * clock reads: tens of us, up to several ms under TCG on a
		 * loaded host: most waits must stay under 2 ms) */
		if (prev >= 0) {
			CHECK(c[0] - prev >= step, "%s: 1 ms took %lld virtual ns", how, c[0] - prev);
			late += c[0] - prev >= 2 * step;
		}
		prev = c[0];
	}
	fclose(f);
	CHECK(lines == 30, "%d lines of clocks, not 30", lines);
	CHECK(late < lines / 2, "%s: %d of %d waits of 1 ms took 2 ms or more", how, late, lines);
	printf("%s: %d lines, %lld rounds, last MONOTONIC %lld\n", how, lines, (long long)r, prev);
	close(fd);
	close(timens_fd);
	timens_fd = -1;
	return failed;
}

/* ---- refusals ---------------------------------------------------------- */

static void expect_errno(int rc, int want, const char *what)
{
	CHECK(rc < 0 && errno == want, "%s: expected %s, got %s", what, strerror(want),
	      rc < 0 ? strerror(errno) : "success");
}

static char proc_state(pid_t pid);

static int cmd_checks(void)
{
	int fd = open_dev();
	struct kxvt_config cfg = {.flags = 1u << 7};
	expect_errno(ioctl(fd, _IO(KXVT_IOC_MAGIC, 99)), ENOTTY, "unknown command");
	expect_errno(ioctl(fd, _IOWR(KXVT_IOC_MAGIC, 3, char[7]), &cfg), ENOTTY, "ADD of a wrong size");
	expect_errno(ioctl(fd, _IOW('x', 4, struct kxvt_run), &cfg), ENOTTY, "another magic");
	expect_errno(ioctl(fd, KXVT_IOC_CONFIG, &cfg), EINVAL, "CONFIG with unknown flags");
	cfg = (struct kxvt_config){.release = 7};
	expect_errno(ioctl(fd, KXVT_IOC_CONFIG, &cfg), EINVAL, "CONFIG with release 7");
	expect_errno(ioctl(fd, KXVT_IOC_CONFIG, (void *)8), EFAULT, "CONFIG at address 8");
	expect_errno(ioctl(fd, KXVT_IOC_INFO, NULL), EFAULT, "INFO at NULL");
	struct kid busy = start_kid("busy", 0, NULL), idle = start_kid("idle", 0, NULL);
	expect_errno(add(fd, 0, 0), EINVAL, "ADD pid 0");
	errno = -add(fd, -5, 0);
	CHECK(errno == EINVAL, "ADD pid -5: %s", strerror(errno));
	errno = -add(fd, 4000000, 0);
	CHECK(errno == ESRCH, "ADD of no process: %s", strerror(errno));
	errno = -add(fd, getpid(), 0);
	CHECK(errno == EINVAL, "ADD of the caller: %s", strerror(errno));
	errno = -add(fd, 1, 0);
	CHECK(errno == EPERM, "ADD of init: %s", strerror(errno));
	errno = -add(fd, 2, 0);
	CHECK(errno == EINVAL, "ADD of kthreadd: %s", strerror(errno));
	expect_errno(ioctl(fd, KXVT_IOC_ADD, (void *)-1L), EFAULT, "ADD at address -1");
	pid_t other = fork();
	if (other == 0) {
		if (setresuid(65534, 65534, 65534) < 0)
			_exit(1);
		pause();
		_exit(0);
	}
	usleep(200000);
	errno = -add(fd, other, 0);
	CHECK(errno == EPERM, "ADD of another user's process: %s", strerror(errno));
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
	CHECK(add(fd, busy.pid, 0) == 0, "ADD busy");
	CHECK(add(fd, idle.pid, 0) == 1, "ADD idle");
	errno = -add(fd, busy.pid, 0);
	CHECK(errno == EBUSY, "ADD twice: %s", strerror(errno));
	cfg = (struct kxvt_config){0};
	expect_errno(ioctl(fd, KXVT_IOC_CONFIG, &cfg), EBUSY, "CONFIG after ADD");
	go(&busy);
	go(&idle);
	/* the busy member off its read of "go" (then parked until a round)
	 * before the first round: still in that read, it ends the round
	 * blocked having used nothing ("end 2, used 0", seen under TCG) */
	for (int i = 0; i < 2000 && proc_state(busy.pid) == 'S'; i++)
		usleep(1000);
	struct kxvt_share sh[2] = {
		{.id = 0, .speed_num = 1, .speed_den = 1, .vend = 1000000, .budget_ns = 1000000},
		{.id = 1, .speed_num = 1, .speed_den = 1, .vend = 1000000, .budget_ns = 1000000}};
	struct kxvt_run run = {.shares = (uintptr_t)sh, .nshares = 2, .flags = KXVT_RUN_NEW_ROUND};
	struct { const char *what; struct kxvt_share s; } bad[] = {
		{"member 7", {.id = 7, .speed_num = 1, .speed_den = 1, .budget_ns = 1}},
		{"speed 0", {.id = 0, .speed_den = 1, .budget_ns = 1}},
		{"budget 0", {.id = 0, .speed_num = 1, .speed_den = 1}},
		{"vend < vbase", {.id = 0, .speed_num = 1, .speed_den = 1, .vbase = 5, .budget_ns = 1}},
		{"pad", {.id = 0, .speed_num = 1, .speed_den = 1, .pad = 1, .budget_ns = 1}},
	};
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct kxvt_run r1 = {.shares = (uintptr_t)&bad[i].s, .nshares = 1};
		expect_errno(ioctl(fd, KXVT_IOC_RUN, &r1), EINVAL, bad[i].what);
	}
	struct kxvt_share dup[2] = {sh[0], sh[0]};
	struct kxvt_run rd = {.shares = (uintptr_t)dup, .nshares = 2};
	expect_errno(ioctl(fd, KXVT_IOC_RUN, &rd), EINVAL, "RUN of one member twice");
	struct kxvt_run rz = {.shares = (uintptr_t)sh, .nshares = 0};
	expect_errno(ioctl(fd, KXVT_IOC_RUN, &rz), EINVAL, "RUN of no share");
	rz.nshares = KXVT_MAX_SHARES + 1;
	expect_errno(ioctl(fd, KXVT_IOC_RUN, &rz), EINVAL, "RUN of too many shares");
	struct kxvt_run rf = {.shares = 16, .nshares = 2};
	expect_errno(ioctl(fd, KXVT_IOC_RUN, &rf), EFAULT, "RUN with shares at address 16");
	rf = run;
	rf.flags = 2;
	expect_errno(ioctl(fd, KXVT_IOC_RUN, &rf), EINVAL, "RUN with unknown flags");
	CHECK(ioctl(fd, KXVT_IOC_RUN, &run) == 0, "RUN: %s", strerror(errno));
	expect_errno(ioctl(fd, KXVT_IOC_RUN, &run), EBUSY, "RUN of running members");
	struct kxvt_wait w = {.nresults = KXVT_MAX_SHARES + 1};
	expect_errno(ioctl(fd, KXVT_IOC_WAIT, &w), EINVAL, "WAIT for too many results");
	w = (struct kxvt_wait){.flags = 4};
	expect_errno(ioctl(fd, KXVT_IOC_WAIT, &w), EINVAL, "WAIT with unknown flags");
	struct kxvt_result res[2];
	w = (struct kxvt_wait){.timeout_ns = -1, .results = (uintptr_t)res, .nresults = 2};
	CHECK(ioctl(fd, KXVT_IOC_WAIT, &w) == 0 && w.nresults == 2 && w.running == 0,
	      "WAIT: %s, %u results", strerror(errno), w.nresults);
	CHECK(res[0].id == 0 && res[0].used_ns > 0, "the busy member's share: end %u, used %lld",
	      res[0].end, (long long)res[0].used_ns);
	struct kxvt_member_info mi = {.id = 9};
	expect_errno(ioctl(fd, KXVT_IOC_MEMBER, &mi), EINVAL, "MEMBER 9");
	mi = (struct kxvt_member_info){.id = 0};
	CHECK(ioctl(fd, KXVT_IOC_MEMBER, &mi) == 0 && mi.ntasks == 1 && mi.cpu_ns > 0,
	      "MEMBER 0: %u tasks, %lld cpu ns", mi.ntasks, (long long)mi.cpu_ns);
	CHECK(ioctl(fd, KXVT_IOC_ABORT) == 0, "ABORT with nothing running");
	int fd2 = open_dev();
	cfg = (struct kxvt_config){.flags = KXVT_CFG_CLOCKS};
	CHECK(ioctl(fd2, KXVT_IOC_CONFIG, &cfg) == 0, "CONFIG clocks");
	struct kid plain = start_kid("idle", 0, NULL);
	errno = -add(fd2, plain.pid, 0);
	CHECK(errno == EINVAL, "ADD (clocks) of a process in the initial time namespace: %s",
	      strerror(errno));
	close(fd2);
	close(fd);
	struct kid all[] = {busy, idle, plain};
	reap(all, 3);
	return failed;
}

/* ---- fuzz ---------------------------------------------------------------- */

static uint64_t rnd_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static int cmd_fuzz(long count)
{
	static const unsigned cmds[] = {KXVT_IOC_INFO, KXVT_IOC_CONFIG, KXVT_IOC_ADD,
		KXVT_IOC_RUN, KXVT_IOC_WAIT, KXVT_IOC_ABORT, KXVT_IOC_MEMBER};
	static unsigned char buf[4096] __attribute__((aligned(16)));
	static struct kxvt_share sh[8];
	int fd = open_dev();
	struct kid kids[3] = {start_kid("busy", 0, NULL), start_kid("idle", 0, NULL),
	                      start_kid("sleep", 0, NULL)};
	pid_t pids[] = {kids[0].pid, kids[1].pid, kids[2].pid, 1, 2, 0, -1, getpid(), 4000000};
	for (int i = 0; i < 3; i++)
		go(&kids[i]);
	long ok = 0, errs = 0;
	for (long n = 0; n < count; n++) {
		for (size_t i = 0; i < sizeof buf; i += 8)
			*(uint64_t *)(buf + i) = rnd();
		unsigned cmd = rnd() % 4 ? cmds[rnd() % 7] : (unsigned)rnd();
		void *arg = buf;
		switch (rnd() % 8) {
		case 0: arg = NULL; break;
		case 1: arg = (void *)(uintptr_t)rnd(); break;
		case 2: arg = (void *)0xffff888000000000ULL; break;
		}
		if (arg == buf) { /* keep it from parking the world or waiting long */
			if (cmd == KXVT_IOC_ADD)
				((struct kxvt_add *)buf)->pid = pids[rnd() % 9];
			if (cmd == KXVT_IOC_WAIT)
				((struct kxvt_wait *)buf)->timeout_ns = rnd() % 2 ? (int64_t)(rnd() % 2000000) : -1;
			if (cmd == KXVT_IOC_RUN && rnd() % 2) {
				struct kxvt_run *r = (struct kxvt_run *)buf;
				for (int i = 0; i < 8; i++) {
					sh[i] = (struct kxvt_share){.id = rnd() % 4,
						.speed_num = rnd() % 3, .speed_den = rnd() % 3,
						.vbase = rnd() % 1000, .vend = rnd() % 3000000,
						.budget_ns = rnd() % 2000000};
				}
				r->shares = rnd() % 8 ? (uintptr_t)sh : rnd();
				r->nshares = rnd() % 10;
			}
		}
		if (cmd == KXVT_IOC_WAIT && arg != buf)
			continue; /* a wait without a sane timeout may wait for long */
		if (ioctl(fd, cmd, arg) == 0)
			ok++;
		else
			errs++;
		if (n % 500 == 0) { /* nothing left running for long */
			ioctl(fd, KXVT_IOC_ABORT);
			struct kxvt_result res[4];
			struct kxvt_wait w = {.timeout_ns = 2000000000, .results = (uintptr_t)res,
			                      .nresults = 4};
			ioctl(fd, KXVT_IOC_WAIT, &w);
		}
	}
	printf("fuzz: %ld ioctls, %ld succeeded, %ld failed\n", ok + errs, ok, errs);
	close(fd);
	reap(kids, 3);
	return failed;
}

/* ---- release ----------------------------------------------------------- */

static char proc_state(pid_t pid)
{
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 'X';
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	return p && p[1] ? p[2] : '?';
}

static long long utime_ticks(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	long long ut = -1;
	sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld", &ut);
	return ut;
}

static int cmd_release(const char *mode)
{
	int resume = !strcmp(mode, "resume"), fd = open_dev();
	struct kxvt_config cfg = {.flags = KXVT_CFG_CLOCKS,
		.release = resume ? KXVT_RELEASE_RESUME : KXVT_RELEASE_KILL};
	CHECK(ioctl(fd, KXVT_IOC_CONFIG, &cfg) == 0, "CONFIG");
	struct kid kids[3] = {start_kid("busy", 1, NULL), start_kid("idle", 1, NULL),
	                      start_kid("sleep", 1, NULL)};
	for (int i = 0; i < 3; i++) {
		CHECK(add(fd, kids[i].pid, 0) == i, "ADD %d", i);
		go(&kids[i]);
	}
	static struct kxvt_result res[3];
	for (int r = 0; r < 20; r++)
		CHECK(round_all(fd, 3, r * 1000000LL, 1000000, res) == 0, "round %d", r);
	usleep(100000);
	/* parked: an uninterruptible sleep that adds no load (ps shows I) */
	char st = proc_state(kids[0].pid);
	CHECK(st == 'I' || st == 'D', "the busy member is not parked: %c", st);
	long long ut0 = utime_ticks(kids[0].pid);
	close(fd);
	if (!resume) {
		for (int i = 0; i < 3; i++) {
			int st = 0;
			CHECK(waitpid(kids[i].pid, &st, 0) == kids[i].pid && WIFSIGNALED(st) &&
			      WTERMSIG(st) == SIGKILL, "member %d after the release: status %#x", i, st);
			kids[i].pid = -1;
		}
	} else {
		usleep(300000);
		CHECK(utime_ticks(kids[0].pid) > ut0, "the busy member does not run after the release");
		for (int i = 0; i < 3; i++) {
			char s = proc_state(kids[i].pid);
			CHECK(s == 'R' || s == 'S', "member %d is in state %c after the release", i, s);
		}
	}
	reap(kids, 3);
	printf("release %s: ok\n", mode);
	return failed;
}

/* Runs PROG as a member in rounds of STEP_US until it exits: the CPU its
 * shares were charged against what wait4() says it used. */
static int cmd_cpu(int64_t step_us, char **argv)
{
	int fd = open_dev(), clocks = getenv("KXVT_CLOCKS") != NULL;
	struct kxvt_config cfg = {.flags = clocks ? KXVT_CFG_CLOCKS : 0};
	CHECK(ioctl(fd, KXVT_IOC_CONFIG, &cfg) == 0, "CONFIG");
	struct kid k = start_kid("exec", clocks, argv);
	CHECK(add(fd, k.pid, 0) == 0, "ADD");
	char path[64];
	long long rt0 = 0;
	snprintf(path, sizeof path, "/proc/%d/schedstat", k.pid);
	FILE *f = fopen(path, "r");
	if (!f || fscanf(f, "%lld", &rt0) != 1)
		rt0 = 0;
	if (f)
		fclose(f);
	go(&k);
	static struct kxvt_result res[1];
	int64_t step = step_us * 1000, charged = 0, r = 0, over = 0;
	struct kxvt_member_info mi = {.id = 0};
	for (; r < 100000 && !failed; r++) {
		CHECK(round_all(fd, 1, r * step, step, res) == 0, "round %lld", (long long)r);
		charged += res[0].used_ns;
		over += res[0].overrun_ns;
		if (ioctl(fd, KXVT_IOC_MEMBER, &mi) == 0 && !mi.ntasks)
			break;
	}
	struct rusage ru;
	int st;
	wait4(k.pid, &st, 0, &ru);
	int64_t cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	              (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
	cpu -= rt0; /* from its ADD on: what it used before is not a member's */
	printf("rounds %lld charged %lld cpu %lld ratio %.4f overrun/round %lld\n", (long long)r,
	       (long long)charged, (long long)cpu, (double)charged / cpu, (long long)(over / (r + 1)));
	/* the scheduler's count against the shares': what is not charged to
	 * a share is lost to virtual time (a stall in a share's last
	 * accounting is at most the park path: tens of us) */
	CHECK(cpu > 0 && fabs((double)charged / cpu - 1) < 0.02,
	      "charged %lld of %lld CPU ns", (long long)charged, (long long)cpu);
	close(fd);
	return failed;
}

/* Holds an experiment with a parked member (rmmod must refuse). */
static int cmd_hold(int seconds)
{
	int fd = open_dev();
	struct kid k = start_kid("busy", 0, NULL);
	CHECK(add(fd, k.pid, 0) == 0, "ADD");
	go(&k);
	printf("holding\n");
	fflush(stdout);
	sleep(seconds);
	close(fd);
	reap(&k, 1);
	return failed;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(600); /* a hang fails loudly */
	if (argc >= 2 && !strcmp(argv[1], "info")) {
		int fd = open_dev();
		struct kxvt_info info;
		CHECK(ioctl(fd, KXVT_IOC_INFO, &info) == 0, "INFO: %s", strerror(errno));
		printf("api %u caps %#x max_members %u pmu '%s'\n", info.api_version,
		       info.caps, info.max_members, info.pmu);
		return failed;
	}
	if (argc >= 6 && !strcmp(argv[1], "rounds"))
		return cmd_rounds(atoi(argv[2]), argv[3], atoll(argv[4]), atoi(argv[5]),
		                  argc > 6 && !strcmp(argv[6], "clocks"));
	if (argc >= 4 && !strcmp(argv[1], "clocks"))
		return cmd_clocks(argv[2], argv[3]);
	if (argc >= 2 && !strcmp(argv[1], "checks"))
		return cmd_checks();
	if (argc >= 3 && !strcmp(argv[1], "fuzz"))
		return cmd_fuzz(atol(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "release"))
		return cmd_release(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "cpu"))
		return cmd_cpu(atoll(argv[2]), argv + 3);
	if (argc >= 3 && !strcmp(argv[1], "hold"))
		return cmd_hold(atoi(argv[2]));
	fprintf(stderr, "usage: see the head of tests/vm/kxvt_test.c\n");
	return 2;
}
