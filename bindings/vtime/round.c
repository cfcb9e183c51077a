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

/* The counter refires every period until the SIGSTOP lands (~100 us on
 * this VM); at the kernel's floor of 10 us its timer interrupts starved a
 * CPU here (soft lockup).  Shorter budgets overrun and are carried. */
#define MIN_PERIOD 200000
#define IDLE_CONFIRM 50000      /* real ns without CPU before a /proc look */
#define WAKE_GRACE 3000000      /* ... when a parked thread's deadline is due */
#define POLL_NS 20000           /* between looks at running processes ... */
#define POLL_MAX_NS 250000      /* ... up to this while all use CPU */
#define MAX_REARMS 8

static int64_t perf_cpu(struct vt_proc *p)
{
	uint64_t c;
	if (p->perf_fd > 0 && read(p->perf_fd, &c, sizeof c) == (ssize_t)sizeof c)
		p->cpu_ns = (int64_t)c;
	return p->cpu_ns;
}

static void arm(struct vt_exp *e, struct vt_proc *p, int64_t cpu_budget)
{
	int64_t period = cpu_budget - e->overshoot;
	if (period < MIN_PERIOD)
		period = MIN_PERIOD;
	uint64_t v = (uint64_t)period;
	ioctl(p->perf_fd, PERF_EVENT_IOC_PERIOD, &v);
	p->period = period;
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

/* Virtual ns p has used since it was resumed.  The CPU is the leader's
 * process CPU clock, the one its own clock reads (the task-clock counter
 * also bills the interrupts that hit it: up to ~10 % more on this loaded
 * VM), unless it has children (and the counter, which counts them too, is
 * well ahead): then the counter. */
static int64_t used(struct vt_exp *e, struct vt_proc *p)
{
	int64_t skip = kxvt_skip_ns(__atomic_load_n(&e->shm->slot[p->slot].skip,
	                                            __ATOMIC_ACQUIRE));
	int64_t tree = perf_cpu(p) - p->perf_base - e->resume_cost;
	int64_t own = vt_leader_cpu(p->pid);
	int64_t cpu = own - p->cpu_base;
	if (cpu < 0)
		cpu = 0;
	if (tree < 0)
		tree = 0;
	if (own < 0 || (tree > cpu + cpu / 8 + 20000 && has_children(p->pid)))
		cpu = tree;
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

/* A signal pending for p (SigPnd of a thread, ShdPnd of the process): it
 * must be resumed to take it.  Read through a descriptor held since spawn:
 * half the cost of opening the file each round, and never another process
 * that got the same pid. */
static int signal_pending(struct vt_proc *p)
{
	char buf[2048];
	if (p->status_fd <= 0)
		return 0;
	ssize_t n = pread(p->status_fd, buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	for (const char *k = buf; (k = strstr(k, "Pnd:")); k += 4)
		if (strtoull(k + 4, NULL, 16) != 0)
			return 1;
	return 0;
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
	int64_t end = (e->round + 1) * e->step;
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
		p->runnable_cpu = -1;
		p->stray_since = 0;
		p->idle_since = vt_mono_ns();
		p->rearms = 0;
		p->by_budget = 0;
		p->ntasks = 0;
		arm(e, p, (int64_t)((double)budget_v * p->speed) + e->resume_cost);
		int64_t cpu = vt_leader_cpu(p->pid);
		p->last_own = cpu;
		p->cpu_base = (cpu < 0 ? 0 : cpu) + e->resume_cost;
		vt_slot_resume(e, p, p->cpu_base);
		e->n_shares++;
		p->run = VT_RUNNING;
		tl->active = first;
		kill(-p->pid, SIGCONT);
		return;
	}
}

void vt_round_begin(struct vt_exp *e)
{
	if (e->backend == VT_KMOD) {
		vt_kmod_round_begin(e);
		return;
	}
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
	for (int i = 0; i < e->ntl; i++)
		tl_next(e, &e->tl[i]);
}

static void member_done(struct vt_exp *e, struct vt_proc *p, int64_t used_v)
{
	struct vt_timeline *tl = tl_of(e, p);
	int64_t end = p->acct_base + used_v; /* a credit counts as used */
	p->charged_ns += p->share_cpu;
	if (p->by_budget) {
		/* ran past its share (the signal comes late; other threads ran
		 * too) or short of it.  A debt over two steps means the stop came
		 * milliseconds late (seen now and then on this loaded VM, often
		 * with a slow controller): the rest is forgiven rather than paid
		 * for with whole rounds of no CPU */
		p->carry = end - p->q_end;
		if (p->carry < -e->step)
			p->carry = -e->step;
		if (p->carry > 2 * e->step)
			p->carry = 2 * e->step;
		tl->t = p->q_end;
	} else {
		p->carry = end > p->q_end ? end - p->q_end : 0;
		tl->t = end < p->q_start ? p->q_start : end < p->q_end ? end : p->q_end;
	}
	p->run = VT_DONE;
	tl_next(e, tl);
}

static void on_stopped(struct vt_exp *e, struct vt_proc *p)
{
	int64_t used_v = used(e, p);
	if (p->run == VT_RUNNING) { /* its counter stopped it (or someone else) */
		int64_t ran = p->cpu_ns - p->perf_base;
		int64_t left_cpu = (int64_t)((double)(p->q_end - p->acct_base - used_v) *
		                             p->speed);
		if (left_cpu > 2 * e->overshoot + MIN_PERIOD && p->rearms < MAX_REARMS) {
			/* early: a child's or thread's own counter, or a stray SIGSTOP */
			p->rearms++;
			e->n_rearm++;
			arm(e, p, left_cpu);
			kill(-p->pid, SIGCONT);
			return;
		}
		if (p->rearms == 0) {
			int64_t late = ran - p->period;
			if (late < 0)
				late = 0;
			e->overshoot = (e->overshoot * 7 + late) / 8;
		}
		p->by_budget = 1;
		e->n_budget++;
	} else {
		e->n_blocked++;
	}
	member_done(e, p, used_v);
}

static void on_exit_seen(struct vt_exp *e, struct vt_proc *p, const siginfo_t *si)
{
	int64_t used_v = used(e, p);
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
	char buf[2048];
	if (p->status_fd <= 0)
		return 0;
	ssize_t n = pread(p->status_fd, buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	for (const char *k = buf; (k = strstr(k, "Pnd:")); k += 4)
		if (strtoull(k + 4, NULL, 16) & (1ull << (SIGSTOP - 1)))
			return 1;
	return 0;
}

static int leader_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 'X';
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	char *c = strrchr(buf, ')');
	return c && c[1] && c[2] ? c[2] : 'X';
}

/* Looks at a running process; returns the real ns it cannot end its share
 * in by its budget (the CPU it has left), 0 when it may be about to. */
static int64_t check(struct vt_exp *e, struct vt_proc *p, int64_t now)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (!p->alive) { /* reaped by the child watch between two polls */
		member_done(e, p, used(e, p));
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
			if (leader_state(p->pid) == 'T')
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
	/* Using CPU?  Its own CPU clock first: reading the counter of a
	 * running task interrupts it (an IPI, a VM exit here), time billed to
	 * it and so to its virtual clock (+5 % at 4000 reads a second); the
	 * tree's counter only when its own clock stands (children). */
	int64_t own = vt_leader_cpu(p->pid);
	if (own != p->last_own) {
		p->last_own = own;
		p->idle_since = now;
		return p->period - (own - p->cpu_base);
	}
	int64_t cpu = perf_cpu(p);
	if (cpu != p->last_cpu) {
		p->last_cpu = cpu;
		p->idle_since = now;
		return p->period - (cpu - p->perf_base);
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
		return p->period - (cpu - p->perf_base);
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
		return p->period - (cpu - p->perf_base);
	}
	if (tree == TREE_STOPPED) {
		/* Its leader was stopped and its report already taken: done. */
		if (leader_state(p->pid) == 'T') {
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

static void round_end(struct vt_exp *e)
{
	e->round++;
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
	for (int i = 0; i < e->nprocs; i++) {
		struct vt_proc *p = &e->procs[i];
		if (p->alive && p->by_budget) {
			int64_t c = p->acct_base + used(e, p) - p->q_end;
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
		 * it has had the CPU it has left: look again then, at most
		 * POLL_MAX_NS later (it may block or exit meanwhile) */
		int64_t wait = POLL_MAX_NS;
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
