/*
 * kmod_backend.c - kx.vtime's "kmod" backend: rounds run by kxvt.ko
 * (kmod/kxvt.h, kmod/README.md).
 *
 * The experiment is an open /dev/kxvt.  A spawned process enters the
 * experiment's time namespace (the first one makes it), stops before exec
 * until the module has it as a member, then execs: no LD_PRELOAD, so
 * statically linked programs are accepted; the module answers their clock
 * reads and runs their sleeps and timeouts in virtual time.  A round is
 * one KXVT_IOC_RUN with the first share of every timeline, then
 * KXVT_IOC_WAIT until every share has ended (KXVT_WAIT_ANY while a
 * timeline has members waiting for their turn, each started as the one
 * before it ends).  Shares, debts and credits follow round.c's rules, with
 * the module's exact CPU counts.  Closing the file kills every member,
 * wherever it went (setsid, double fork).
 */
#include "vtime.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../kmod/kxvt.h"
#include "kx.h"

#define SPEED_DEN (1u << 20)    /* speed as a fraction: num / SPEED_DEN */

int vt_kmod_usable(char *why, size_t n)
{
	int fd = open(KXVT_DEVICE, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (why)
			vt_seterr(why, n, "%s: %s (load kxvt.ko: kmod/README.md)", KXVT_DEVICE,
			       strerror(errno));
		return 0;
	}
	close(fd);
	return 1;
}

const char *vt_backend_name(const struct vt_exp *e)
{
	return e->backend == VT_KMOD ? "kmod" : e->backend == VT_FREEZER ? "freezer"
	                                                                  : "signal";
}

int vt_kmod_open(struct vt_exp *e, char *err, size_t errlen)
{
	struct kxvt_info info;
	e->kfd = open(KXVT_DEVICE, O_RDWR | O_CLOEXEC);
	if (e->kfd < 0 || ioctl(e->kfd, KXVT_IOC_INFO, &info) < 0) {
		vt_seterr(err, errlen, "vtime backend 'kmod': %s: %s", KXVT_DEVICE, strerror(errno));
		return -1;
	}
	if (info.api_version != KXVT_API_VERSION || !(info.caps & KXVT_CAP_CLOCKS)) {
		vt_seterr(err, errlen, "vtime backend 'kmod': %s speaks another version of "
		       "kxvt.h (rebuild kxvt.ko)", KXVT_DEVICE);
		return -1;
	}
	e->kmod_pmu = (info.caps & KXVT_CAP_INSTRUCTIONS) != 0;
	struct kxvt_config cfg = {.flags = KXVT_CFG_CLOCKS, .release = KXVT_RELEASE_KILL,
	                          .realtime_base = e->shm->start_real_ns};
	if (ioctl(e->kfd, KXVT_IOC_CONFIG, &cfg) < 0) {
		vt_seterr(err, errlen, "vtime backend 'kmod': configuring %s: %s", KXVT_DEVICE,
		       strerror(errno));
		return -1;
	}
	return 0;
}

/* Budgets in instructions need a hardware PMU (and are not built yet):
 * the experiment says why it counts CPU time instead. */
void vt_budget_choose(struct vt_exp *e, int instructions)
{
	e->budget_note[0] = 0;
	if (!instructions)
		return;
	snprintf(e->budget_note, sizeof e->budget_note, "%s",
	         e->backend != VT_KMOD ? "instruction budgets need backend 'kmod': "
	                                 "budgets count CPU time" :
	         !e->kmod_pmu ? "no hardware instruction counter (PMU) here, e.g. "
	                        "under QEMU TCG: budgets count CPU time" :
	                        "instruction budgets are not built yet: budgets count "
	                        "CPU time (kmod/README.md)");
}

/* In the child (kx_spawn's hook, async-signal-safe): killed with its
 * controller, in the experiment's time namespace (the first child makes
 * it).  It then stops before exec (KX_SPAWN_STOPPED) until it is added. */
struct kmod_child {
	pid_t parent;
	int timens_fd;
};

static int kmod_child_hook(void *ud)
{
	const struct kmod_child *c = ud;
	int ns = c->timens_fd;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != c->parent)
		return ESRCH;
	if (ns < 0 && (unshare(CLONE_NEWTIME) < 0 ||
	               (ns = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC)) < 0))
		return errno;
	return setns(ns, CLONE_NEWTIME) < 0 ? errno : 0;
}

/* No LD_PRELOAD: the module answers the clocks, so statically linked
 * programs are accepted.  Stopped once before exec (kx_spawn), added to
 * the experiment, continued: it parks on its way to exec until its first
 * share. */
int vt_kmod_spawn(struct vt_exp *e, char *const argv[], char *const env_extra[],
                  const struct vt_spawn_opts *o, char *err, size_t errlen)
{
	char prog[PATH_MAX];
	if (e->nprocs >= KXVT_MAX_MEMBERS) {
		vt_seterr(err, errlen, "at most %d processes per experiment (kmod)", KXVT_MAX_MEMBERS);
		return -1;
	}
	if (vt_check_program(argv[0], prog, sizeof prog, 1, err, errlen) < 0 ||
	    vt_procs_reserve(e, err, errlen) < 0)
		return -1;
	/* KXRUN_VTIME_SHM only names the experiment (cleanup and the tests
	 * find its processes by it); no library reads it */
	char shm[160];
	snprintf(shm, sizeof shm, "KXRUN_VTIME_SHM=%s", e->shm_path);
	struct kmod_child c = {getpid(), e->timens_fd};
	const char *fixed[] = {shm, NULL};
	/* the module ends it */
	pid_t pid = vt_spawn_member(prog, argv, fixed, env_extra, o, kmod_child_hook, &c,
	                            err, errlen);
	if (pid < 0)
		return -1;
	struct kxvt_add add = {.pid = pid, .vnow = vt_now(e)};
	if (ioctl(e->kfd, KXVT_IOC_ADD, &add) < 0) {
		vt_seterr(err, errlen, "%s: kxvt.ko refused the process: %s", prog, strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	if (e->timens_fd < 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/ns/time", (int)pid);
		e->timens_fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	kill(pid, SIGCONT);
	struct vt_proc *p = &e->procs[e->nprocs];
	memset(p, 0, sizeof *p);
	p->pid = pid;
	p->speed = o->speed;
	p->timeline = o->timeline >= 0 ? o->timeline : -1 - e->nprocs;
	p->cpu = -1;
	p->alive = 1;
	p->slot = -1; /* its clock is the module's, not the shared file's */
	p->perf_fd = p->status_fd = -1;
	p->run = VT_DONE;
	p->kmod_id = add.id;
	return e->nprocs++;
}

/* ---- rounds --------------------------------------------------------------- */

/* The next share of timeline tl: its next waiting member (tl->active
 * walks the timeline's chain) runs for an equal part of what is left of
 * the round; one whose debt covers it sits out.  1 and fills s, or 0 when
 * the timeline is done. */
static int tl_next(struct vt_exp *e, struct vt_timeline *tl, struct kxvt_share *s)
{
	int64_t end = (e->round + 1) * e->step;
	while (tl->active >= 0) {
		struct vt_proc *p = &e->procs[tl->active];
		if (p->run != VT_WAIT) {
			tl->active = p->tl_link;
			continue;
		}
		int waiting = 0;
		for (int i = tl->active; i >= 0; i = e->procs[i].tl_link)
			waiting += e->procs[i].run == VT_WAIT;
		p->q_end = waiting == 1 ? end : tl->t + (end - tl->t) / waiting;
		if (p->carry >= p->q_end - tl->t) {
			e->n_debt++;
			p->carry -= p->q_end - tl->t;
			tl->t = p->q_end;
			p->run = VT_DONE;
			continue;
		}
		p->q_start = tl->t;
		p->vbase = tl->t + (p->carry > 0 ? p->carry : 0);
		int64_t budget_v = p->q_end - tl->t - p->carry;
		p->carry = 0;
		p->run = VT_RUNNING;
		*s = (struct kxvt_share){.id = p->kmod_id, .speed_den = SPEED_DEN,
			.speed_num = (uint32_t)(p->speed * SPEED_DEN + 0.5),
			.vbase = p->vbase, .vend = p->q_end,
			.budget_ns = (int64_t)((double)budget_v * p->speed)};
		if (!s->speed_num)
			s->speed_num = 1;
		if (s->budget_ns < 1)
			s->budget_ns = 1;
		return 1;
	}
	tl->done = 1;
	return 0;
}

static void run_shares(struct vt_exp *e, struct kxvt_share *s, int n, int new_round)
{
	struct kxvt_run r = {.shares = (uintptr_t)s, .nshares = (uint32_t)n,
	                     .flags = new_round ? KXVT_RUN_NEW_ROUND : 0,
	                     .now = e->round * e->step};
	if (n > 0 && ioctl(e->kfd, KXVT_IOC_RUN, &r) < 0)
		fprintf(stderr, "kx.vtime (kmod): KXVT_IOC_RUN: %s\n", strerror(errno));
}

/* Timelines in one pass: a process without one is its own; the members of
 * an explicit one are chained in spawn order. */
void vt_kmod_round_begin(struct vt_exp *e)
{
	free(e->tl);
	e->tl = calloc(e->nprocs ? e->nprocs : 1, sizeof *e->tl);
	int *last = calloc(e->nprocs ? e->nprocs : 1, sizeof *last);
	e->ntl = 0;
	int64_t start = e->round * e->step;
	for (int i = 0; i < e->nprocs; i++) {
		struct vt_proc *p = &e->procs[i];
		p->run = p->alive ? VT_WAIT : VT_DONE;
		p->tl_link = -1;
		if (!p->alive)
			continue;
		int k = -1;
		if (p->timeline >= 0) /* explicit: few of them */
			for (int j = 0; j < e->ntl && k < 0; j++)
				if (e->tl[j].id == p->timeline)
					k = j;
		if (k < 0) {
			k = e->ntl++;
			e->tl[k] = (struct vt_timeline){.id = p->timeline, .t = start, .active = i};
		} else {
			e->procs[last[k]].tl_link = i;
		}
		last[k] = i;
		p->tl_idx = k;
	}
	free(last);
	e->frozen = 0;
	e->in_round = 1;
	e->round_start_real = vt_mono_ns();
	struct kxvt_share *s = calloc(e->ntl ? e->ntl : 1, sizeof *s);
	int n = 0;
	for (int i = 0; i < e->ntl; i++)
		n += tl_next(e, &e->tl[i], &s[n]);
	run_shares(e, s, n, 1);
	free(s);
}

/* How member p's share ended (round.c's member_done with exact counts). */
static void share_ended(struct vt_exp *e, struct vt_proc *p, const struct kxvt_result *r)
{
	struct vt_timeline *tl = &e->tl[p->tl_idx];
	int64_t used_v = (int64_t)((double)r->used_ns / p->speed);
	p->charged_ns += r->used_ns;
	p->share_cpu = r->used_ns;
	if (r->end == KXVT_END_BUDGET || r->end == KXVT_END_ABORTED) {
		/* its budget was q_end - vbase; what it ran past it is a debt.
		 * The module stops it within microseconds, so a debt over two
		 * steps is time the CPU was taken from it (a VM's vCPU
		 * descheduled by its host counts as CPU time): forgiven
		 * beyond that, as round.c does, rather than paid for with
		 * whole rounds of no CPU */
		p->carry = p->vbase + used_v - p->q_end;
		if (p->carry > 2 * e->step)
			p->carry = 2 * e->step;
		if (p->carry < 0)
			p->carry = 0;
		e->overshoot = (e->overshoot * 7 + r->overrun_ns) / 8;
		e->n_budget++;
		tl->t = p->q_end;
	} else {
		p->carry = 0;
		tl->t = r->vclock < p->q_start ? p->q_start : r->vclock < p->q_end ? r->vclock
		                                                                    : p->q_end;
		if (r->end == KXVT_END_EXITED)
			p->exit_vns = r->vclock;
		else
			e->n_blocked++;
	}
	p->run = VT_DONE;
}

static void round_end(struct vt_exp *e)
{
	e->round++;
	vt_set_clock(e, e->round * e->step);
	e->in_round = 0;
	e->frozen = 1;
}

int vt_kmod_round_poll(struct vt_exp *e, int64_t max_wait_ns)
{
	if (!e->in_round)
		return 1;
	int64_t t0 = vt_mono_ns();
	struct kxvt_result *res = calloc(e->nprocs ? e->nprocs : 1, sizeof *res);
	struct kxvt_share *s = calloc(e->ntl ? e->ntl : 1, sizeof *s);
	int ended = 0;
	for (;;) {
		int more = 0; /* a timeline has members waiting for their turn */
		for (int i = 0; i < e->nprocs; i++)
			more |= e->procs[i].run == VT_WAIT;
		int64_t left = max_wait_ns - (vt_mono_ns() - t0);
		if (e->slice_cap > 0) {
			int64_t cap = e->slice_cap - (vt_mono_ns() - e->round_start_real);
			if (cap < left)
				left = cap > 0 ? cap : 0;
		}
		struct kxvt_wait w = {.timeout_ns = left > 0 ? left : 0,
		                      .results = (uintptr_t)res, .nresults = (uint32_t)e->nprocs,
		                      .flags = more ? KXVT_WAIT_ANY : 0};
		if (ioctl(e->kfd, KXVT_IOC_WAIT, &w) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "kx.vtime (kmod): KXVT_IOC_WAIT: %s\n", strerror(errno));
			break;
		}
		int n = 0;
		for (uint32_t i = 0; i < w.nresults; i++) {
			struct vt_proc *p = &e->procs[res[i].id];
			share_ended(e, p, &res[i]);
			n += tl_next(e, &e->tl[p->tl_idx], &s[n]);
		}
		run_shares(e, s, n, 0);
		if (!w.running && !n) { /* every timeline is done */
			round_end(e);
			ended = 1;
			break;
		}
		if (e->slice_cap > 0 && vt_mono_ns() - e->round_start_real > e->slice_cap) {
			e->rounds_capped++;
			vt_kmod_round_abort(e);
			ended = 1;
			break;
		}
		if (vt_mono_ns() - t0 >= max_wait_ns)
			break;
	}
	free(res);
	free(s);
	return ended;
}

/* Ends the round now: the running shares are cut short (their members are
 * parked by the module), the waiting members do not run. */
void vt_kmod_round_abort(struct vt_exp *e)
{
	if (!e->in_round)
		return;
	ioctl(e->kfd, KXVT_IOC_ABORT);
	struct kxvt_result *res = calloc(e->nprocs ? e->nprocs : 1, sizeof *res);
	for (;;) {
		struct kxvt_wait w = {.timeout_ns = -1, .results = (uintptr_t)res,
		                      .nresults = (uint32_t)e->nprocs};
		if (ioctl(e->kfd, KXVT_IOC_WAIT, &w) < 0 && errno == EINTR)
			continue;
		for (uint32_t i = 0; i < w.nresults; i++)
			share_ended(e, &e->procs[res[i].id], &res[i]);
		if (!w.running)
			break;
	}
	free(res);
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].run == VT_WAIT)
			e->procs[i].run = VT_DONE;
	round_end(e);
}

void vt_kmod_freeze(struct vt_exp *e)
{
	if (e->in_round)
		vt_kmod_round_abort(e);
	e->in_round = 0;
	e->frozen = 1;
}

int64_t vt_kmod_proc_now(struct vt_exp *e, int i)
{
	struct kxvt_member_info mi = {.id = e->procs[i].kmod_id};
	if (!e->in_round || ioctl(e->kfd, KXVT_IOC_MEMBER, &mi) < 0)
		return vt_now(e);
	return mi.vclock;
}

/* Closing the experiment kills every member the module followed. */
void vt_kmod_stop(struct vt_exp *e)
{
	if (e->kfd >= 0)
		close(e->kfd);
	if (e->timens_fd >= 0)
		close(e->timens_fd);
	e->kfd = e->timens_fd = -1;
}
