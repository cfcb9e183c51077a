// SPDX-License-Identifier: GPL-2.0
/*
 * kxvt_time.c - members' clocks, sleeps and timeouts in virtual time.
 *
 * vDSO: members live in a time namespace of their own, whose vvar page the
 * kernel allocated for it (time_namespace.vvar_page; nothing else uses
 * it).  The module turns that page's clock mode to VDSO_CLOCKMODE_NONE
 * with an even sequence count: the vDSO then falls back to the system call
 * for every high-resolution clock, and reads CLOCK_*_COARSE and time()
 * from the page itself, where the module writes the round's start.  No
 * kernel function is needed for this, and none exported would do it.
 *
 * System calls: the raw_syscalls sys_enter/sys_exit tracepoints.  At exit,
 * clock_gettime/gettimeofday/time of a member get the member's clock (the
 * user buffer is written from a task work, where faults may sleep).  A
 * 6.1 kernel ignores a system-call number changed by a sys_enter probe but
 * reads the arguments from the registers afterwards, so timed waits are
 * steered through their arguments:
 *   - nanosleep/clock_nanosleep get an invalid argument (they fail at
 *     once); the sleep itself happens in a task work (kxvt_do_sleep);
 *   - poll, ppoll, select, pselect6, epoll_wait, epoll_pwait, epoll_pwait2
 *     and futex WAIT/WAIT_BITSET get no timeout.  A deadline inside the
 *     member's share is checked once (TIF_NOTIFY_SIGNAL set before the
 *     call: it returns at once unless ready); a later one is interrupted
 *     (TWA_SIGNAL) when a share it falls in starts.  At exit an interrupted
 *     call with no real signal pending becomes a timeout, and the member's
 *     clock jumps to the deadline.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/futex.h>
#include <linux/mm.h>
#include <linux/poll.h>
#include <linux/proc_ns.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/syscalls.h>
#include <linux/time_namespace.h>
#include <linux/uaccess.h>
#include <asm/syscall.h>

#include "kxvt_internal.h"

/* asm/vvar.h: DECLARE_VVAR(128, struct vdso_data, _vdso_data) */
#define KXVT_VDATA_OFFSET 128
/* An invalid clock id: clock_nanosleep fails with EINVAL before anything. */
#define KXVT_BAD_CLOCK 0x7fffffff

static struct vdso_data *kxvt_vdata(struct page *page)
{
	return page_address(page) + KXVT_VDATA_OFFSET;
}

static void kxvt_split(struct vdso_timestamp *ts, s64 ns)
{
	u32 rest;

	ts->sec = div_u64_rem(max_t(s64, ns, 0), NSEC_PER_SEC, &rest);
	ts->nsec = rest;
}

/* What the vDSO reads without a system call: COARSE clocks and time(). */
static void kxvt_vdata_fill(struct kxvt_exp *exp, struct vdso_data *vd)
{
	kxvt_split(&vd->basetime[CLOCK_REALTIME], exp->realtime_base + exp->now);
	kxvt_split(&vd->basetime[CLOCK_REALTIME_COARSE], exp->realtime_base + exp->now);
	kxvt_split(&vd->basetime[CLOCK_MONOTONIC_COARSE], exp->now);
}

/* The members' time namespace (p's); its page is trapped on first use. */
int kxvt_time_attach(struct kxvt_exp *exp, struct task_struct *p)
{
	struct time_namespace *ns;
	struct page *page = NULL;
	struct vdso_data *vd;
	int i, err = 0;

	task_lock(p);
	if (!p->nsproxy) {
		err = -ESRCH;
	} else {
		ns = p->nsproxy->time_ns;
		if (ns->ns.inum == PROC_TIME_INIT_INO || !ns->frozen_offsets)
			err = -EINVAL;
		else
			get_page(page = ns->vvar_page);
	}
	task_unlock(p);
	if (err)
		return err;
	if (exp->vvar) {
		err = exp->vvar == page ? 0 : -EXDEV;
		goto put;
	}
	vd = kxvt_vdata(page);
	for (i = 0; i < CS_BASES; i++) {
		if (READ_ONCE(vd[i].seq) != 1 ||
		    READ_ONCE(vd[i].clock_mode) != VDSO_CLOCKMODE_TIMENS) {
			pr_warn("unexpected time namespace page layout: clocks not trapped\n");
			err = -EOPNOTSUPP;
			goto put;
		}
	}
	exp->vvar = page;
	for (i = 0; i < CS_BASES; i++) {
		memcpy(exp->vvar_saved[i], vd[i].offset, sizeof(vd[i].offset));
		/* readers spin while seq is odd and the mode is not TIMENS */
		WRITE_ONCE(vd[i].clock_mode, VDSO_CLOCKMODE_NONE);
		smp_wmb();
		vd[i].hrtimer_res = hrtimer_resolution;
		kxvt_vdata_fill(exp, &vd[i]);
		smp_wmb();
		WRITE_ONCE(vd[i].seq, 2);
	}
	return 0;
put:
	put_page(page);
	return err;
}

void kxvt_time_round(struct kxvt_exp *exp)
{
	struct vdso_data *vd = kxvt_vdata(exp->vvar);

	WRITE_ONCE(vd->seq, vd->seq + 1);
	smp_wmb();
	kxvt_vdata_fill(exp, vd);
	smp_wmb();
	WRITE_ONCE(vd->seq, vd->seq + 1);
}

/* Release: the page becomes an ordinary time namespace page again. */
void kxvt_time_detach(struct kxvt_exp *exp)
{
	struct vdso_data *vd = kxvt_vdata(exp->vvar);
	int i;

	for (i = 0; i < CS_BASES; i++) {
		WRITE_ONCE(vd[i].seq, vd[i].seq | 1);
		smp_wmb();
		memcpy(vd[i].offset, exp->vvar_saved[i], sizeof(vd[i].offset));
		smp_wmb();
		WRITE_ONCE(vd[i].clock_mode, VDSO_CLOCKMODE_TIMENS);
		smp_wmb();
		WRITE_ONCE(vd[i].seq, 1);
	}
}

/* ---- system calls --------------------------------------------------------- */

static bool kxvt_virtual_clock(clockid_t c)
{
	switch (c) {
	case CLOCK_REALTIME: case CLOCK_MONOTONIC: case CLOCK_MONOTONIC_RAW:
	case CLOCK_REALTIME_COARSE: case CLOCK_MONOTONIC_COARSE:
	case CLOCK_BOOTTIME: case CLOCK_REALTIME_ALARM: case CLOCK_BOOTTIME_ALARM:
		return true;
	default:
		return false;
	}
}

static bool kxvt_realtime(clockid_t c)
{
	return c == CLOCK_REALTIME || c == CLOCK_REALTIME_COARSE ||
	       c == CLOCK_REALTIME_ALARM;
}

/* A user timespec (or timeval, usec) as ns; -1 when unreadable or invalid
 * (the call then goes on untouched and fails or waits as usual). */
static s64 kxvt_read_time(unsigned long uptr, bool usec)
{
	struct __kernel_timespec ts;

	if (!uptr || copy_from_user_nofault(&ts, (void __user *)uptr, sizeof(ts)))
		return -1;
	if (usec)
		ts.tv_nsec *= NSEC_PER_USEC;
	if (ts.tv_sec < 0 || ts.tv_nsec < 0 || ts.tv_nsec >= NSEC_PER_SEC ||
	    ts.tv_sec > KTIME_SEC_MAX)
		return -1;
	return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/* Decides how a timed wait with deadline t->deadline goes (exp->lock). */
static void kxvt_wait_mode(struct kxvt_task *t)
{
	struct kxvt_member *m = t->m;

	if (t->tw_mode == KXVT_TW_SLEEP)
		return;
	t->tw_mode = m->state == KXVT_M_RUN && !m->exhausted &&
		     t->deadline < m->vend ? KXVT_TW_ONCE : KXVT_TW_WAIT;
}

/* Reads the timeout of a timed wait and neutralizes it; false when the
 * call is not one, has no timeout, or cannot be read (left alone). */
static bool kxvt_timed_wait(struct kxvt_task *t, struct pt_regs *regs, long id,
			    s64 *rel, s64 *abs)
{
	struct kxvt_exp *exp = t->m->exp;
	s64 v;
	int op;

	*rel = *abs = -1;
	t->tw_ptr = NULL;
	switch (id) {
	case __NR_nanosleep:
		if ((*rel = kxvt_read_time(regs->di, false)) < 0)
			return false;
		t->tw_ptr = (void __user *)regs->si;
		regs->di = 0;                   /* fails with EFAULT */
		t->tw_mode = KXVT_TW_SLEEP;
		return true;
	case __NR_clock_nanosleep:
		if (!kxvt_virtual_clock(regs->di) || (v = kxvt_read_time(regs->dx, false)) < 0)
			return false;
		if (regs->si & TIMER_ABSTIME) {
			*abs = kxvt_realtime(regs->di) ? v - exp->realtime_base : v;
		} else {
			*rel = v;
			t->tw_ptr = (void __user *)regs->r10;
		}
		regs->di = KXVT_BAD_CLOCK;      /* fails with EINVAL */
		t->tw_mode = KXVT_TW_SLEEP;
		return true;
	case __NR_poll:
		if ((int)regs->dx <= 0)
			return false;
		*rel = (s64)(int)regs->dx * NSEC_PER_MSEC;
		regs->dx = -1;
		return true;
	case __NR_epoll_wait:
	case __NR_epoll_pwait:
		if ((int)regs->r10 <= 0)
			return false;
		*rel = (s64)(int)regs->r10 * NSEC_PER_MSEC;
		regs->r10 = -1;
		return true;
	case __NR_ppoll:
		if ((*rel = kxvt_read_time(regs->dx, false)) <= 0)
			return false;
		regs->dx = 0;
		return true;
	case __NR_epoll_pwait2:
		if ((*rel = kxvt_read_time(regs->r10, false)) <= 0)
			return false;
		regs->r10 = 0;
		return true;
	case __NR_select:
	case __NR_pselect6:
		if ((*rel = kxvt_read_time(regs->r8, id == __NR_select)) <= 0)
			return false;
		t->tw_ptr = (void __user *)regs->r8;
		t->tw_sets[0] = regs->di;
		t->tw_sets[1] = regs->si;
		t->tw_sets[2] = regs->dx;
		t->tw_sets[3] = regs->r10;
		regs->r8 = 0;
		return true;
	case __NR_futex:
		op = regs->si & FUTEX_CMD_MASK;
		if ((op != FUTEX_WAIT && op != FUTEX_WAIT_BITSET) ||
		    (v = kxvt_read_time(regs->r10, false)) < 0)
			return false;
		if (op == FUTEX_WAIT)
			*rel = v;
		else
			*abs = regs->si & FUTEX_CLOCK_REALTIME ? v - exp->realtime_base : v;
		regs->r10 = 0;
		return true;
	}
	return false;
}

static void kxvt_enter(struct kxvt_task *t, struct pt_regs *regs, long id)
{
	struct kxvt_member *m = t->m;
	unsigned long flags;
	s64 rel, abs;

	if (t->tw_mode != KXVT_TW_NONE && t->tw_ip == regs->ip &&
	    (id == t->tw_nr || id == __NR_restart_syscall)) {
		/* the same wait, restarted after a signal: its deadline and
		 * its (neutralized) arguments stand */
		raw_spin_lock_irqsave(&m->exp->lock, flags);
		kxvt_wait_mode(t);
		raw_spin_unlock_irqrestore(&m->exp->lock, flags);
		goto once;
	}
	t->tw_mode = KXVT_TW_NONE;
	if (READ_ONCE(m->exp->dead) || !kxvt_timed_wait(t, regs, id, &rel, &abs))
		return;
	t->tw_nr = id;
	t->tw_ip = regs->ip;
	raw_spin_lock_irqsave(&m->exp->lock, flags);
	t->deadline = abs >= 0 ? abs : kxvt_vclock(m) + rel;
	kxvt_wait_mode(t);
	raw_spin_unlock_irqrestore(&m->exp->lock, flags);
once:
	if (t->tw_mode == KXVT_TW_ONCE)
		kxvt_kick(t, TWA_SIGNAL_NO_IPI);
}

void kxvt_probe_sys_enter(void *data, struct pt_regs *regs, long id)
{
	struct kxvt_task *t;

	if (!atomic_read(&kxvt_ntasks))
		return;
	t = kxvt_find(current);
	if (t && t->m->exp->clocks)
		kxvt_enter(t, regs, id);
}

static bool kxvt_interrupted(long ret)
{
	return ret == -EINTR || ret == -ERESTARTSYS || ret == -ERESTARTNOINTR ||
	       ret == -ERESTARTNOHAND || ret == -ERESTART_RESTARTBLOCK;
}

/* A sleep whose deadline is reached now needs no task work. */
static void kxvt_exit_sleep(struct kxvt_task *t, struct pt_regs *regs)
{
	struct kxvt_member *m = t->m;
	unsigned long flags;
	bool wait = false;

	raw_spin_lock_irqsave(&m->exp->lock, flags);
	if (m->exp->dead || kxvt_vclock(m) >= t->deadline)
		;
	else if (m->state == KXVT_M_RUN && !m->exhausted && t->deadline < m->vend)
		kxvt_skip_to(m, t->deadline);
	else
		wait = true;
	raw_spin_unlock_irqrestore(&m->exp->lock, flags);
	if (wait) {
		kxvt_queue(t, KXVT_DO_SLEEP);
	} else {
		regs->ax = 0;
		t->tw_mode = KXVT_TW_NONE;
	}
}

static void kxvt_exit_wait(struct kxvt_task *t, struct pt_regs *regs, long ret)
{
	struct kxvt_member *m = t->m;
	unsigned long flags;
	bool due;

	if (t->tw_mode == KXVT_TW_SLEEP) {
		kxvt_exit_sleep(t, regs);
		return;
	}
	if (!kxvt_interrupted(ret) || ret == -EINTR) {
		/* ready, an error of its own, or EINTR for a real signal (or
		 * our interrupt, below) */
		if (ret != -EINTR || task_sigpending(current)) {
			t->tw_mode = KXVT_TW_NONE;
			return;
		}
	} else if (task_sigpending(current)) {
		return; /* a real signal: a restart keeps the deadline */
	}
	raw_spin_lock_irqsave(&m->exp->lock, flags);
	due = m->exp->dead || (m->state == KXVT_M_RUN && t->deadline < m->vend);
	if (due)
		kxvt_skip_to(m, t->deadline);
	raw_spin_unlock_irqrestore(&m->exp->lock, flags);
	if (!due) {     /* interrupted by someone else's task work: wait on */
		regs->ax = -ERESTARTNOINTR;
		return;
	}
	regs->ax = t->tw_nr == __NR_futex ? -ETIMEDOUT : 0;
	if (t->tw_nr == __NR_select || t->tw_nr == __NR_pselect6)
		kxvt_queue(t, KXVT_DO_CLEAR);
	t->tw_mode = KXVT_TW_NONE;
}

static void kxvt_put(struct kxvt_task *t, unsigned long uptr, u64 a, u64 b,
		     unsigned int len)
{
	t->put_ptr = (void __user *)uptr;
	t->put_buf[0] = a;
	t->put_buf[1] = b;
	t->put_len = len;
	kxvt_queue(t, KXVT_DO_PUT);
}

/* clock_gettime, gettimeofday, time: the member's clock. */
static void kxvt_answer(struct kxvt_task *t, struct pt_regs *regs, long id, long ret)
{
	struct kxvt_exp *exp = t->m->exp;
	unsigned long flags;
	s64 v;
	u32 ns;

	if (ret < 0 || exp->dead ||
	    (id != __NR_clock_gettime && id != __NR_gettimeofday && id != __NR_time))
		return;
	if (id == __NR_clock_gettime && !kxvt_virtual_clock(regs->di))
		return;
	raw_spin_lock_irqsave(&exp->lock, flags);
	v = kxvt_vclock(t->m);
	raw_spin_unlock_irqrestore(&exp->lock, flags);
	if (id != __NR_clock_gettime || kxvt_realtime(regs->di))
		v += exp->realtime_base;
	v = div_u64_rem(max_t(s64, v, 0), NSEC_PER_SEC, &ns);
	if (id == __NR_clock_gettime)
		kxvt_put(t, regs->si, v, ns, 2 * sizeof(u64));
	else if (id == __NR_gettimeofday && regs->di)
		kxvt_put(t, regs->di, v, ns / NSEC_PER_USEC, 2 * sizeof(u64));
	else if (id == __NR_time) {
		regs->ax = v;
		if (regs->di)
			kxvt_put(t, regs->di, v, 0, sizeof(u64));
	}
}

void kxvt_probe_sys_exit(void *data, struct pt_regs *regs, long ret)
{
	struct kxvt_task *t;
	long id;

	if (!atomic_read(&kxvt_ntasks))
		return;
	t = kxvt_find(current);
	if (!t || !t->m->exp->clocks)
		return;
	id = syscall_get_nr(current, regs);
	if (t->tw_mode != KXVT_TW_NONE &&
	    (id == t->tw_nr || id == __NR_restart_syscall))
		kxvt_exit_wait(t, regs, ret);
	else
		kxvt_answer(t, regs, id, ret);
}

/* ---- task works ----------------------------------------------------------- */

void kxvt_do_put(struct kxvt_task *t)
{
	u64 buf[2] = { t->put_buf[0], t->put_buf[1] }; /* hardened usercopy:
							   not from the slab */

	if (copy_to_user(t->put_ptr, buf, t->put_len))
		return; /* the program's own fault: it sees the real value */
}

/* A select that timed out: no descriptor ready, no time left. */
void kxvt_do_clear(struct kxvt_task *t)
{
	unsigned long n = min_t(unsigned long, t->tw_sets[0], 1 << 20);
	size_t bytes = DIV_ROUND_UP(n, BITS_PER_LONG) * sizeof(long);
	int i;

	for (i = 1; i <= 3; i++)
		if (t->tw_sets[i] && clear_user((void __user *)t->tw_sets[i], bytes))
			return;
	if (t->tw_ptr && clear_user(t->tw_ptr, 2 * sizeof(u64)))
		return;
}

/* A virtual sleep whose deadline lies past the member's share: waits
 * until a share it falls in starts (the member is blocked meanwhile), a
 * signal comes (EINTR, and the time left for a relative sleep), or the
 * experiment is released (it ends at once). */
void kxvt_do_sleep(struct kxvt_task *t)
{
	struct kxvt_member *m = t->m;
	struct pt_regs *regs = current_pt_regs();
	struct __kernel_timespec rem = {};
	bool intr = false;
	unsigned long flags;
	DEFINE_WAIT(wait);
	u32 ns;

	raw_spin_lock_irqsave(&m->exp->lock, flags);
	kxvt_running(t);
	if (!t->linked || m->exp->dead || t->state != KXVT_T_ACTIVE)
		goto out;
	t->state = KXVT_T_ASLEEP;
	m->nactive--;
	kxvt_member_check(m);
	raw_spin_unlock_irqrestore(&m->exp->lock, flags);

	WRITE_ONCE(t->in_wait, true);
	for (;;) {
		prepare_to_wait(&m->wq, &wait, TASK_INTERRUPTIBLE);
		if (READ_ONCE(t->state) != KXVT_T_ASLEEP || READ_ONCE(m->exp->dead))
			break;
		if (task_sigpending(current)) {
			intr = true;
			break;
		}
		/* a task work's notification is not a signal: we run inside
		 * task_work_run(), which runs that work after this one */
		if (test_thread_flag(TIF_NOTIFY_SIGNAL))
			clear_notify_signal();
		schedule();
	}
	finish_wait(&m->wq, &wait);

	raw_spin_lock_irqsave(&m->exp->lock, flags);
	t->in_wait = false;
	if (t->state == KXVT_T_ASLEEP) {
		t->state = KXVT_T_ACTIVE;
		m->nactive++;
	}
	if (!kxvt_may_run(m))   /* a signal woke it between shares */
		kxvt_queue(t, KXVT_DO_PARK);
	if (!intr) {
		kxvt_skip_to(m, t->deadline);
	} else {
		rem.tv_sec = div_u64_rem(max_t(s64, t->deadline - kxvt_vclock(m), 0),
					 NSEC_PER_SEC, &ns);
		rem.tv_nsec = ns;
	}
out:
	raw_spin_unlock_irqrestore(&m->exp->lock, flags);
	t->tw_mode = KXVT_TW_NONE;
	regs->ax = intr ? -EINTR : 0;
	if (intr && t->tw_ptr && copy_to_user(t->tw_ptr, &rem, sizeof(rem)))
		regs->ax = -EFAULT;
}
