/*
 * round.c - one CPU-proportional round of a kx.vtime experiment (vtime.h).
 */
#include "vtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IDLE_CONFIRM 50000      /* real ns without CPU before a /proc look */
#define WAKE_GRACE 3000000      /* ... when a parked thread's deadline is due */
#define POLL_NS 20000           /* between looks at running processes ... */
#define POLL_MAX_NS 250000      /* ... up to this at first while all use CPU, */
#define POLL_BACKOFF_NS 10000000 /* doubling up to this while they still do */
#define ESCAPED_LOOK_NS 200000000 /* between looks for escaped stopped processes */
#define MAX_REARMS 8
#define ONE_TASK_SLACK 50000    /* counter over the leader thread's clock, one task */
#define BATCH_NS 10000000       /* virtual ns a lone process's share may span */
#define BATCH_AFTER_NS 20000000 /* ... once it has been charged this much */

static int64_t perf_cpu(struct vt_proc *p)
{
	uint64_t c;
	if (p->perf_fd > 0 && read(p->perf_fd, &c, sizeof c) == (ssize_t)sizeof c)
		p->cpu_ns = (int64_t)c;
	return p->cpu_ns;
}

/* The counter overflows, and so stops p, once its tree has used cpu_budget
 * more CPU ns: the work of its share.  What the stop then costs (the
 * overflow interrupt, SIGSTOP's delivery, the stop: 20-50 us here, all in
 * the kernel) is counted past the overflow and not charged (past_overflow). */
static void arm(struct vt_proc *p, int64_t cpu_budget)
{
	int64_t period = cpu_budget < VT_MIN_PERIOD ? VT_MIN_PERIOD : cpu_budget;
	uint64_t v = (uint64_t)period;
	ioctl(p->perf_fd, PERF_EVENT_IOC_PERIOD, &v);
	p->period = period;
	p->armed_at = p->cpu_ns;
}

/* CPU ns the counter ran past its overflow (0 when it did not overflow):
 * the stop's own path.  No instruction of the process runs after the
 * overflow (the signal is taken on the way back to user mode). */
static int64_t past_overflow(const struct vt_proc *p)
{
	int64_t past = p->cpu_ns - (p->armed_at + p->period);
	return past > 0 ? past : 0;
}

static int has_children(pid_t pid)
{
	char path[64], c;
	snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, &c, 1);
	close(fd);
	return n == 1;
}

/* Virtual ns p has used since it was resumed: the CPU its tree's counter
 * counted (all its threads and children), less what the controller cost
 * it: the resume (resume_cost, measured in the counter's terms, which are
 * not quite its process CPU clock's: calibrate.c), a counter stop's path
 * past the overflow (past), and, for a process stopped as blocked, its
 * stop (what it used is read when it was found blocked).  So a share
 * stopped by its counter is charged its period less resume_cost, however
 * long its stop took. */
static int64_t used(struct vt_exp *e, struct vt_proc *p, int64_t past)
{
	int64_t skip = kxvt_skip_ns(__atomic_load_n(&e->shm->slot[p->slot].skip,
	                                            __ATOMIC_ACQUIRE));
	int blocked = p->run == VT_STOPPING;
	int64_t cpu = (blocked ? p->last_cpu : perf_cpu(p)) - p->perf_base - past -
	              e->resume_cost;
	if (cpu < 0)
		cpu = 0;
	p->share_cpu = cpu;
	return (int64_t)((double)cpu / p->speed) + skip;
}

static struct vt_timeline *tl_of(struct vt_exp *e, struct vt_proc *p)
{
	for (int i = 0; i < e->ntl; i++)
		if (e->tl[i].id == p->timeline)
			return &e->tl[i];
	return NULL;
}

/* The signals pending for p, of any thread (SigPnd) or the process
 * (ShdPnd), or-ed.  Read through a descriptor held since spawn: half the
 * cost of opening the file each round, and never another process that got
 * the same pid. */
static uint64_t pending_signals(struct vt_proc *p)
{
	char buf[2048];
	uint64_t mask = 0;
	if (p->status_fd <= 0)
		return 0;
	ssize_t n = pread(p->status_fd, buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	for (const char *k = buf; (k = strstr(k, "Pnd:")); k += 4)
		mask |= strtoull(k + 4, NULL, 16);
	return mask;
}

/* A signal pending for p: it must be resumed to take it. */
static int signal_pending(struct vt_proc *p)
{
	return pending_signals(p) != 0;
}

/* p blocked last time with every thread in a virtual sleep (no children)
 * that ends after this round, and no signal is pending for it: resuming it
 * would only see it park again. */
static int asleep_past(struct vt_exp *e, struct vt_proc *p, int64_t end)
{
	struct kxvt_slot *s = &e->shm->slot[p->slot];
	return p->ntasks > 0 && !p->by_budget &&
	       __atomic_load_n(&s->asleep, __ATOMIC_ACQUIRE) == p->ntasks &&
	       __atomic_load_n(&s->wake_at, __ATOMIC_ACQUIRE) >= end &&
	       !signal_pending(p);
}

/* Resumes the next waiting member of tl for an equal share of what is left
 * of the round; members whose carry covers their share sit it out. */
static void tl_next(struct vt_exp *e, struct vt_timeline *tl)
{
	int64_t end = (e->round + e->batch) * e->step;
	tl->active = -1;
	for (;;) {
		int first = -1, waiting = 0;
		for (int i = 0; i < e->nprocs; i++)
			if (e->procs[i].timeline == tl->id && e->procs[i].run == VT_WAIT) {
				waiting++;
				if (first < 0)
					first = i;
			}
		if (first < 0) {
			tl->done = 1;
			return;
		}
		struct vt_proc *p = &e->procs[first];
		if (asleep_past(e, p, end)) {
			e->n_asleep++;
			p->run = VT_DONE;
			continue;
		}
		int64_t share = (end - tl->t) / waiting;
		p->q_end = waiting == 1 ? end : tl->t + share;
		if (p->carry >= p->q_end - tl->t) {
			e->n_debt++;
			p->carry -= p->q_end - tl->t;
			tl->t = p->q_end;
			if (tl->t > e->reached)
				e->reached = tl->t;
			p->run = VT_DONE;
			continue;
		}
		/* a debt starts its clock later; a credit (negative) gives it more
		 * CPU, its clock then stays at q_end */
		int64_t budget_v = p->q_end - tl->t - p->carry;
		p->q_start = tl->t;
		p->acct_base = tl->t + p->carry;
		p->vbase = tl->t + (p->carry > 0 ? p->carry : 0);
		p->carry = 0;
		p->perf_base = perf_cpu(p);
		p->last_cpu = p->perf_base;
		p->counter_stale = 0;
		p->runnable_cpu = -1;
		p->stray_since = 0;
		p->idle_since = vt_mono_ns();
		p->rearms = 0;
		p->ntasks = 0;
		p->poll_ns = POLL_MAX_NS;
		arm(p, (int64_t)((double)budget_v * p->speed) + e->resume_cost);
		/* one that used its whole share last time will likely again:
		 * not looked at before its counter can have stopped it (a look
		 * from its CPU costs it an interrupt and two context switches,
		 * ~20 us here) */
		p->resumed = p->idle_since;
		p->look_at = p->by_budget ? p->idle_since + p->period + e->overshoot : 0;
		p->by_budget = 0;
		int64_t cpu = vt_leader_cpu(p->pid);
		p->lead_base = vt_thread_cpu(p->pid);
		p->last_own = cpu;
		p->cpu_base = (cpu < 0 ? 0 : cpu) + e->resume_cost;
		vt_slot_resume(e, p, p->cpu_base);
		e->n_shares++;
		if (e->cost_source == VT_COST_MEASURING)
			p->provisional++;
		p->run = VT_RUNNING;
		tl->active = first;
		kill(-p->pid, SIGCONT);
		return;
	}
}

/* One task: one thread, no children. */
static int single_task(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (vt_read_file(path, buf, sizeof buf) <= 0)
		return 0;
	const char *c = strrchr(buf, ')');
	int field = 2;
	for (; c && *c && field < 20; c++)
		if (*c == ' ')
			field++;
	return c && atoi(c) == 1 && !has_children(pid);
}

/* Rounds the coming round may span.  Lockstep rounds are there so that
 * processes see each other at the same virtual time; a process alone in
 * the experiment, one task that cannot park a second thread meanwhile,
 * has nobody to meet: it runs up to BATCH_NS of rounds (within the
 * advance) in one share, and pays one stop and resume for them, not one
 * per round.  A task it starts meanwhile ends the batch (busy), but
 * keeps the batch's counter period (an inherited counter keeps the one it
 * was made with), so its own overflows stop the process less often: not
 * before BATCH_AFTER_NS of its CPU, when programs start their threads. */
static int64_t batch_rounds(struct vt_exp *e)
{
	int64_t n = e->advance_to - e->round;
	if (n > BATCH_NS / e->step)
		n = BATCH_NS / e->step;
	if (n <= 1 || e->slice_cap > 0)
		return 1;
	int lone = -1;
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].alive) {
			if (lone >= 0)
				return 1;
			lone = i;
		}
	return lone >= 0 && e->procs[lone].charged_ns >= BATCH_AFTER_NS &&
	       single_task(e->procs[lone].pid) ? n : 1;
}

/* The resume cost (calibrate.c), unless pinned: measured again every few
 * minutes, in the background; what the shares charged meanwhile with the
 * value there was were charged too much or too little is carried into
 * each process's next shares once the new one comes, so that its clock
 * catches up. */
static void resume_cost(struct vt_exp *e)
{
	enum vt_cost_source src;
	if (e->cost_source == VT_COST_PINNED)
		return;
	int64_t c = vt_resume_cost(&src);
	int arrived = e->cost_source == VT_COST_MEASURING && src != VT_COST_MEASURING;
	e->cost_source = src;
	if (!arrived)
		return;
	for (int i = 0; i < e->nprocs; i++) {
		struct vt_proc *p = &e->procs[i];
		int64_t over = p->provisional * (c - e->resume_cost);
		p->carry -= (int64_t)((double)over / p->speed);
		p->charged_ns -= over;
		p->provisional = 0;
	}
	e->resume_cost = c;
}

void vt_round_begin(struct vt_exp *e)
{
	if (e->backend == VT_KMOD) {
		vt_kmod_round_begin(e);
		return;
	}
	resume_cost(e);
	e->batch = batch_rounds(e);
	e->reached = 0;
	free(e->tl);
	e->tl = calloc(e->nprocs ? e->nprocs : 1, sizeof *e->tl);
	e->ntl = 0;
	int64_t start = e->round * e->step;
	for (int i = 0; i < e->nprocs; i++) {
		struct vt_proc *p = &e->procs[i];
		p->run = p->alive ? VT_WAIT : VT_DONE;
		if (p->alive && !tl_of(e, p)) {
			struct vt_timeline *t = &e->tl[e->ntl++];
			t->id = p->timeline;
			t->t = start;
			t->active = -1;
		}
	}
	e->frozen = 0;
	e->in_round = 1;
	e->round_start_real = vt_mono_ns();
	vt_cg_freeze(e, 0);
	/* one that escaped a round's stop and nobody waits for (above: one
	 * somebody waits for), now and then: the look costs a pass over
	 * /proc; after the thaw: a SIGCONT to a task in a frozen v1 cgroup
	 * is lost (it stays stopped when thawed) */
	if (e->round_start_real >= e->escaped_look) {
		e->escaped_look = e->round_start_real + ESCAPED_LOOK_NS;
		e->n_stray += vt_continue_escaped(e);
	}
	for (int i = 0; i < e->ntl; i++)
		tl_next(e, &e->tl[i]);
}

static void member_done(struct vt_exp *e, struct vt_proc *p, int64_t used_v)
{
	struct vt_timeline *tl = tl_of(e, p);
	int64_t end = p->acct_base + used_v; /* a credit counts as used */
	p->charged_ns += p->share_cpu;
	if (p->by_budget) {
		/* ran past its share (its other threads and children ran too,
		 * their inherited counters on periods of their own; a budget
		 * under VT_MIN_PERIOD) or short of it.  A debt is paid in full,
		 * by rounds sat out: it is CPU its tree used (a late stop's path,
		 * which it was not, is not charged: past_overflow).  A credit is
		 * kept up to a step. */
		p->carry = end - p->q_end;
		if (p->carry < -e->step)
			p->carry = -e->step;
		tl->t = p->q_end;
	} else {
		p->carry = end > p->q_end ? end - p->q_end : 0;
		tl->t = end < p->q_start ? p->q_start : end < p->q_end ? end : p->q_end;
	}
	if (tl->t > e->reached)
		e->reached = tl->t;
	p->run = VT_DONE;
	tl_next(e, tl);
}

static void on_stopped(struct vt_exp *e, struct vt_proc *p)
{
	/* the stop's path past the overflow, when the counter stopped it:
	 * exact when its leader thread alone ran in the share (its own CPU
	 * clock is the counter's count, within what the two clocks differ
	 * by), and so learnt (a sample at most 4 times the mean: an
	 * outlier); when other threads or children ran too, each on an
	 * inherited counter with a period of its own, what the sum counted
	 * past the leader's period is their work too: the mean path at most */
	int64_t past = 0;
	if (p->run == VT_RUNNING) {
		perf_cpu(p);
		past = past_overflow(p);
		int64_t others = p->cpu_ns - p->perf_base - (vt_thread_cpu(p->pid) - p->lead_base);
		if (others > ONE_TASK_SLACK) {
			if (past > e->overshoot)
				past = e->overshoot;
		} else if (past > 0 && p->rearms == 0) {
			e->overshoot = (e->overshoot * 7 +
			                (past < 4 * e->overshoot ? past : 4 * e->overshoot)) / 8;
		}
	}
	int64_t used_v = used(e, p, past);
	if (p->run == VT_RUNNING) { /* its counter stopped it (or someone else) */
		int64_t left_cpu = (int64_t)((double)(p->q_end - p->acct_base - used_v) *
		                             p->speed);
		if (left_cpu > 2 * e->overshoot + VT_MIN_PERIOD && p->rearms < MAX_REARMS) {
			/* early: a child's or thread's own counter, or a stray SIGSTOP */
			p->rearms++;
			e->n_rearm++;
			arm(p, left_cpu);
			kill(-p->pid, SIGCONT);
			return;
		}
		e->stop_cpu += past;
		p->by_budget = 1;
		e->n_budget++;
	} else {
		e->n_blocked++;
	}
	member_done(e, p, used_v);
}

static void on_exit_seen(struct vt_exp *e, struct vt_proc *p, const siginfo_t *si)
{
	int64_t used_v = used(e, p, 0);
	int64_t end = p->vbase + used_v;
	p->exit_vns = end < p->q_end ? end : p->q_end;
	p->alive = 0;
	if (si->si_code == CLD_EXITED)
		p->wstatus = (si->si_status & 0xff) << 8;
	else
		p->wstatus = (si->si_status & 0x7f) | (si->si_code == CLD_DUMPED ? 0x80 : 0);
	p->by_budget = 0;
	member_done(e, p, used_v);
}

/* What /proc shows of a process tree (threads, children, recursively). */
enum tree { TREE_IDLE, TREE_STOPPED, TREE_RUNNABLE };

/* TREE_RUNNABLE when a task of pid's tree may run; else TREE_STOPPED when
 * one is stopped (T); else TREE_IDLE (every task sleeps, or is stopped by a
 * tracer).  *ntasks: pid's threads, 0 when it has children. */
static enum tree tree_state(pid_t pid, int depth, int *ntasks)
{
	char path[96], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return TREE_IDLE;
	struct dirent *de;
	enum tree st = TREE_IDLE;
	while (st != TREE_RUNNABLE && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (depth == 0 && *ntasks >= 0)
			(*ntasks)++;
		int fd;
		ssize_t n;
		snprintf(path, sizeof path, "/proc/%d/task/%s/stat", (int)pid, de->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
			n = read(fd, buf, sizeof buf - 1);
			close(fd);
			buf[n > 0 ? n : 0] = 0;
			char *c = strrchr(buf, ')');
			if (c && c[1] && c[2] == 'R')
				st = TREE_RUNNABLE;
			else if (c && c[1] && c[2] == 'T')
				st = TREE_STOPPED;
		}
		if (st == TREE_RUNNABLE || depth > 16)
			break;
		snprintf(path, sizeof path, "/proc/%d/task/%s/children", (int)pid,
		         de->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
			n = read(fd, buf, sizeof buf - 1);
			close(fd);
			buf[n > 0 ? n : 0] = 0;
			for (char *s = strtok(buf, " \n"); s && st != TREE_RUNNABLE;
			     s = strtok(NULL, " \n")) {
				*ntasks = -1;
				enum tree c = tree_state(atoi(s), depth + 1, ntasks);
				if (c > st)
					st = c;
			}
		}
	}
	closedir(d);
	return st;
}

/* SIGSTOP pending for p (any thread, or the process): a stop on its way. */
static int stop_pending(struct vt_proc *p)
{
	return (pending_signals(p) & (1ull << (SIGSTOP - 1))) != 0;
}

/* p has used cpu ns of its share, ran ran ns of them since the last look
 * (real ns ago): look again once it may have used its budget, but after
 * at most its poll interval, which doubles while it keeps using the CPU
 * (each look is a wake-up of the controller, on p's CPU as often as not:
 * an interrupt and two context switches billed to p).  One that used
 * less than half the time may block any moment (or wakes now and then
 * and sleeps between: a look must see it idle to find it blocked): at
 * most POLL_MAX_NS.  In a batch, a second task (thread, child) ends the
 * batch: p is stopped now, its share ending where it is, as a blocked
 * one's. */
static int64_t busy(struct vt_exp *e, struct vt_proc *p, int64_t now,
                    int64_t cpu, int64_t ran, int64_t ago)
{
	if (e->batch > 1 && !single_task(p->pid)) {
		p->last_cpu = perf_cpu(p); /* what it used: read as a blocked one's */
		p->run = VT_STOPPING;
		kill(-p->pid, SIGSTOP);
		return 0;
	}
	int64_t left = p->period - cpu + e->overshoot;
	if (2 * ran < ago) {
		p->poll_ns = POLL_MAX_NS;
		return left < POLL_MAX_NS ? left : POLL_MAX_NS;
	}
	if (p->look_at) {
		/* CPU-bound: look when its counter will have stopped it at the
		 * rate it has had the CPU (others' load shares it) */
		double real = (double)(now - p->resumed);
		int64_t wait = cpu > 0 ? (int64_t)((double)left * real / (double)cpu) : left;
		return wait < POLL_BACKOFF_NS ? wait : POLL_BACKOFF_NS;
	}
	int64_t wait = left < p->poll_ns ? left : p->poll_ns;
	if (p->poll_ns < POLL_BACKOFF_NS)
		p->poll_ns *= 2;
	return wait;
}

/* Looks at a running process; returns the real ns it cannot end its share
 * in by its budget (the CPU it has left), 0 when it may be about to. */
static int64_t check(struct vt_exp *e, struct vt_proc *p, int64_t now)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (!p->alive) { /* reaped by the child watch between two polls */
		member_done(e, p, used(e, p, 0));
		return 0;
	}
	int w = waitid(P_PID, p->pid, &si, WSTOPPED | WEXITED | WNOHANG | WNOWAIT);
	if (w < 0 && errno == ECHILD) { /* reaped elsewhere: a plain exit */
		si.si_code = CLD_EXITED;
		si.si_status = 0;
		on_exit_seen(e, p, &si);
		return 0;
	}
	if (w == 0 && si.si_pid == p->pid) {
		if (si.si_code == CLD_STOPPED || si.si_code == CLD_TRAPPED) {
			waitid(P_PID, p->pid, &si, WSTOPPED | WNOHANG);
			/* a report from an earlier stop (SIGCONT since) is stale */
			if (vt_proc_state(p->pid, NULL) == 'T')
				on_stopped(e, p);
		} else {
			on_exit_seen(e, p, &si); /* the child watch reaps it */
		}
		return 0;
	}
	/* stopped as blocked, but waiting in vfork() for a child that the
	 * group's SIGSTOP stopped: it will never show it (stopped by its
	 * counter so: the idle path below sees it) */
	if (p->run == VT_STOPPING && vt_in_vfork_wait(p->pid)) {
		on_stopped(e, p);
		return 0;
	}
	if (p->run != VT_RUNNING)
		return 0;
	if (now < p->look_at)
		return p->look_at - now;
	/* Using CPU?  Its own CPU clock first: reading the counter of a
	 * running task interrupts it (an IPI, a VM exit here), time billed to
	 * it and so to its virtual clock (+5 % at 4000 reads a second); the
	 * tree's counter only when its own clock stands (children). */
	int64_t own = vt_leader_cpu(p->pid), ago = now - p->idle_since;
	if (own != p->last_own) {
		int64_t ran = own - p->last_own;
		p->last_own = own;
		p->idle_since = now;
		p->counter_stale = 1; /* not read meanwhile: it moved too */
		return busy(e, p, now, own - p->cpu_base + e->resume_cost, ran, ago);
	}
	/* its children used CPU since the last look (the counter moved while
	 * its own clock stood) */
	int64_t cpu = perf_cpu(p);
	if (cpu != p->last_cpu) {
		int64_t ran = cpu - p->last_cpu;
		int stale = p->counter_stale;
		p->last_cpu = cpu;
		p->counter_stale = 0;
		if (!stale) {
			p->idle_since = now;
			return busy(e, p, now, cpu - p->perf_base, ran, ago);
		}
	}
	struct kxvt_slot *s = &e->shm->slot[p->slot];
	int64_t grace = IDLE_CONFIRM;
	if (__atomic_load_n(&s->parked, __ATOMIC_ACQUIRE) > 0 &&
	    __atomic_load_n(&s->wake_at, __ATOMIC_ACQUIRE) < p->q_end)
		grace = WAKE_GRACE;
	if (now - p->idle_since < grace)
		return grace - (now - p->idle_since);
	/* runnable at this CPU count: still so, since a task must run to
	 * block (it waits for a CPU) */
	if (p->runnable_cpu == cpu)
		return POLL_MAX_NS;
	/* idle, waiting in vfork() for a child that is stopped (it would show
	 * as "stopping" below forever): its share ends here; resumed, the
	 * child goes on */
	if (vt_in_vfork_wait(p->pid)) {
		on_stopped(e, p);
		return 0;
	}
	int ntasks = 0;
	enum tree tree = tree_state(p->pid, 0, &ntasks);
	if (tree == TREE_RUNNABLE) {
		p->runnable_cpu = cpu;
		p->stray_since = 0;
		return POLL_MAX_NS;
	}
	if (tree == TREE_STOPPED) {
		/* Its leader was stopped and its report already taken: done. */
		if (vt_proc_state(p->pid, NULL) == 'T') {
			on_stopped(e, p);
			return 0;
		}
		/* A task stopped while its leader runs on, with no stop on its
		 * way to the leader: a stray.  A process forked while its group
		 * was stopped and continued is born stopped (the kernel hands a
		 * fork in progress the group's SIGSTOP but not the SIGCONT,
		 * which is ignored by default), and its parent then waits for it
		 * forever.  Seen twice, IDLE_CONFIRM apart (a group stop reaches
		 * every process within microseconds), it is continued. */
		if (stop_pending(p)) {
			p->stray_since = 0;
			return IDLE_CONFIRM;
		}
		if (!p->stray_since) {
			p->stray_since = now;
			return IDLE_CONFIRM;
		}
		if (now - p->stray_since < IDLE_CONFIRM)
			return IDLE_CONFIRM - (now - p->stray_since);
		p->stray_since = 0;
		p->idle_since = now;
		e->n_stray++;
		kill(-p->pid, SIGCONT);
		/* or it left the group (setsid) with the group's SIGSTOP on
		 * its way to it, and its parent waits for it */
		e->n_stray += vt_continue_escaped(e);
		return POLL_NS;
	}
	p->ntasks = ntasks > 0 ? ntasks : 0;
	p->run = VT_STOPPING; /* blocked: stopped for the rest of the round */
	kill(-p->pid, SIGSTOP);
	return 0;
}

void vt_hold(struct vt_exp *e)
{
	vt_cg_freeze(e, 1);
}

/* Rounds the round that is ending covered: one, or in a batch those up to
 * where its process's share reached (it may have blocked or exited in any
 * of them). */
static int64_t rounds_covered(const struct vt_exp *e)
{
	int64_t n = (e->reached - e->round * e->step + e->step - 1) / e->step;
	return n < 1 ? 1 : n > e->batch ? e->batch : n;
}

static void round_end(struct vt_exp *e)
{
	int64_t n = rounds_covered(e);
	if (n > 1)
		e->n_batched += n;
	e->round += n;
	vt_set_clock(e, e->round * e->step);
	e->in_round = 0;
	e->frozen = 1;
}

void vt_round_abort(struct vt_exp *e)
{
	if (e->backend == VT_KMOD)
		vt_kmod_round_abort(e);
	if (!e->in_round)
		return;
	for (int i = 0; i < e->nprocs; i++) {
		struct vt_proc *p = &e->procs[i];
		if (p->run == VT_RUNNING || p->run == VT_STOPPING) {
			kill(-p->pid, SIGSTOP);
			p->by_budget = p->run == VT_RUNNING;
		}
	}
	vt_freeze(e); /* waits for every stop */
	/* where each got to (stopped: the same both times it is read) */
	for (int i = 0; i < e->nprocs; i++) {
		struct vt_proc *p = &e->procs[i];
		int64_t t = p->alive && p->by_budget ? p->acct_base + used(e, p, 0) : 0;
		if (t > e->reached)
			e->reached = t < p->q_end ? t : p->q_end;
	}
	int64_t end = (e->round + rounds_covered(e)) * e->step;
	for (int i = 0; i < e->nprocs; i++) {
		struct vt_proc *p = &e->procs[i];
		if (p->alive && p->by_budget) {
			int64_t c = p->acct_base + used(e, p, 0) - end;
			p->carry = c < -e->step ? -e->step : c;
		}
	}
	e->frozen = 0;
	round_end(e);
}

int vt_round_poll(struct vt_exp *e, int64_t max_wait_ns)
{
	if (e->backend == VT_KMOD)
		return vt_kmod_round_poll(e, max_wait_ns);
	if (!e->in_round)
		return 1;
	int64_t t0 = vt_mono_ns();
	for (;;) {
		int64_t now = vt_mono_ns();
		/* a process using CPU cannot end its share by its budget before
		 * it has had the CPU it has left: look again then, at most its
		 * poll interval later (it may block or exit meanwhile; busy) */
		int64_t wait = POLL_BACKOFF_NS;
		for (int i = 0; i < e->nprocs; i++) {
			enum vt_run r = e->procs[i].run;
			if (r == VT_RUNNING || r == VT_STOPPING) {
				int64_t w = check(e, &e->procs[i], now);
				if (w < wait)
					wait = w;
			}
		}
		int done = 1;
		for (int i = 0; i < e->ntl; i++)
			done &= e->tl[i].done;
		if (done) {
			round_end(e);
			return 1;
		}
		if (e->slice_cap > 0 && now - e->round_start_real > e->slice_cap) {
			e->rounds_capped++;
			vt_round_abort(e);
			return 1;
		}
		if (now - t0 >= max_wait_ns)
			return 0;
		struct timespec pause = {0, wait > POLL_NS ? wait : POLL_NS};
		nanosleep(&pause, NULL);
	}
}
