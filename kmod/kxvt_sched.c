// SPDX-License-Identifier: GPL-2.0
/*
 * kxvt_sched.c - the tasks of kxvt experiments and their shares.
 *
 * A member's tasks are followed through the scheduler's own tracepoints
 * (found with for_each_kernel_tracepoint(): they are not exported):
 * sched_process_fork adds a child (thread or process) to its parent's
 * member, sched_process_exit removes it, sched_switch accounts CPU time and
 * arms a per-task budget timer while the task is on a CPU, sched_wakeup
 * sees blocked tasks become runnable.  A task that must not run gets a
 * task_work (TWA_RESUME) that parks it in kxvt_park() on its way back to
 * user space: a killable, no-load sleep, so its signal state is untouched.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/math64.h>
#include <linux/module.h>
#include <linux/rculist.h>
#include <linux/sched/clock.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/tracepoint.h>

#include "kxvt_internal.h"

#define KXVT_MIN_SLICE_NS 5000  /* shortest budget timer: no timer storms */

static DEFINE_HASHTABLE(kxvt_tasks, 10);
static DEFINE_RAW_SPINLOCK(kxvt_hash_lock);
static struct kmem_cache *kxvt_task_cache;
atomic_t kxvt_ntasks = ATOMIC_INIT(0);

static void kxvt_probe_fork(void *data, struct task_struct *parent,
			    struct task_struct *child);
static void kxvt_probe_exit(void *data, struct task_struct *p);
static void kxvt_probe_switch(void *data, bool preempt,
			      struct task_struct *prev,
			      struct task_struct *next,
			      unsigned int prev_state);
static void kxvt_probe_wakeup(void *data, struct task_struct *p);

static struct kxvt_tp {
	const char *name;
	void *probe;
	struct tracepoint *tp;
} kxvt_tps[] = {
	{ "sched_process_fork", kxvt_probe_fork },
	{ "sched_process_exit", kxvt_probe_exit },
	{ "sched_switch", kxvt_probe_switch },
	{ "sched_wakeup", kxvt_probe_wakeup },
	{ "sys_enter", kxvt_probe_sys_enter },
	{ "sys_exit", kxvt_probe_sys_exit },
};

/* The probes are registered while an experiment exists: the system-call
 * ones put every system call of the machine on its slow path. */
static DEFINE_MUTEX(kxvt_probe_mutex);
static atomic_t kxvt_probe_users = ATOMIC_INIT(0);
static bool kxvt_registered;
/* How often they were registered (a run of experiments: once). */
static unsigned int kxvt_probe_registrations;
module_param_named(probe_registrations, kxvt_probe_registrations, uint, 0444);
MODULE_PARM_DESC(probe_registrations, "times the tracepoint probes were registered");

static void kxvt_unregister(int n)
{
	while (n--)
		tracepoint_probe_unregister(kxvt_tps[n].tp, kxvt_tps[n].probe, NULL);
	tracepoint_synchronize_unregister();
}

int kxvt_probes_get(void)
{
	int i, err = 0;

	mutex_lock(&kxvt_probe_mutex);
	atomic_inc(&kxvt_probe_users);
	if (!kxvt_registered)
		kxvt_probe_registrations++;
	for (i = 0; !kxvt_registered && i < ARRAY_SIZE(kxvt_tps); i++) {
		err = tracepoint_probe_register(kxvt_tps[i].tp, kxvt_tps[i].probe, NULL);
		if (err) {
			pr_err("tracepoint %s: %d\n", kxvt_tps[i].name, err);
			kxvt_unregister(i);
			atomic_dec(&kxvt_probe_users);
			goto out;
		}
	}
	kxvt_registered = true;
out:
	mutex_unlock(&kxvt_probe_mutex);
	return err;
}

/*
 * Unregistering rewrites kernel text (static calls and keys, synchronized
 * with an IPI to every CPU), and so does registering: not done for each of
 * a run of experiments but once the machine has had none for a while.
 * (Under QEMU TCG with 2 vCPUs that patching wedged the guest now and
 * then: a vCPU stuck on the patched instruction in __schedule, the other
 * waiting for its IPI.)
 */
#define KXVT_UNREGISTER_DELAY (5 * HZ)

static void kxvt_unregister_fn(struct work_struct *w)
{
	mutex_lock(&kxvt_probe_mutex);
	if (kxvt_registered && !atomic_read(&kxvt_probe_users)) {
		kxvt_unregister(ARRAY_SIZE(kxvt_tps));
		kxvt_registered = false;
	}
	mutex_unlock(&kxvt_probe_mutex);
}
static DECLARE_DELAYED_WORK(kxvt_unregister_work, kxvt_unregister_fn);

void kxvt_probes_put(void)
{
	if (atomic_dec_and_test(&kxvt_probe_users))
		mod_delayed_work(system_wq, &kxvt_unregister_work, KXVT_UNREGISTER_DELAY);
}

static void kxvt_find_tp(struct tracepoint *tp, void *priv)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(kxvt_tps); i++)
		if (!strcmp(tp->name, kxvt_tps[i].name))
			kxvt_tps[i].tp = tp;
}

int kxvt_sched_init(void)
{
	int i;

	for_each_kernel_tracepoint(kxvt_find_tp, NULL);
	for (i = 0; i < ARRAY_SIZE(kxvt_tps); i++) {
		if (!kxvt_tps[i].tp) {
			pr_err("no tracepoint %s in this kernel\n", kxvt_tps[i].name);
			return -ENOENT;
		}
	}
	kxvt_task_cache = KMEM_CACHE(kxvt_task, 0);
	return kxvt_task_cache ? 0 : -ENOMEM;
}

/* After every experiment is gone (module exit, after rcu_barrier()). */
void kxvt_sched_exit(void)
{
	cancel_delayed_work_sync(&kxvt_unregister_work);
	kxvt_unregister_fn(NULL);
	kmem_cache_destroy(kxvt_task_cache);
}

struct kxvt_task *kxvt_find(struct task_struct *p)
{
	struct kxvt_task *t;

	hash_for_each_possible_rcu_notrace(kxvt_tasks, t, hnode, (unsigned long)p)
		if (t->task == p)
			return t;
	return NULL;
}

/* ---- clocks and shares (exp->lock held) ---------------------------------- */

/*
 * CPU time is the scheduler's own count (what CLOCK_*_CPUTIME_ID read):
 * se.sum_exec_runtime, up to date whenever the task leaves a CPU, plus, for
 * the current task, what it has run since se.exec_start by this CPU's
 * sched clock.  Another CPU's clock is never read: where the TSC is
 * unstable (a TCG guest: "TSCs unsynchronized") per-CPU sched clocks
 * differ by milliseconds, and a remote read lost ~40 % of a busy member's
 * CPU in 1 ms shares.  A task running elsewhere counts what the scheduler
 * last accounted it (at most a tick behind).
 */
static u64 kxvt_runtime(struct task_struct *p, bool oncpu)
{
	u64 sum = READ_ONCE(p->se.sum_exec_runtime), now, start;

	if (!oncpu || p != current)
		return sum;
	now = sched_clock_cpu(smp_processor_id());
	start = READ_ONCE(p->se.exec_start);
	return sum + (now > start ? now - start : 0);
}

s64 kxvt_used_now(struct kxvt_member *m)
{
	struct kxvt_task *t;
	s64 used = m->used;
	int n = m->noncpu;

	list_for_each_entry(t, &m->tasks, mnode) {
		if (!n)
			break;
		if (t->oncpu) {
			used += kxvt_runtime(t->task, true) - t->rt_in;
			n--;
		}
	}
	return used;
}

/* Its clock by the caller's view of its runtime (a thread running on
 * another CPU counts what the scheduler last accounted it). */
static s64 kxvt_vclock_raw(struct kxvt_member *m)
{
	s64 used = kxvt_used_now(m), v = m->vbase + m->skip;

	if (used > 0)
		v += mul_u64_u32_div(used, m->den, m->num);
	return v;
}

/* Its clock, as read: never past the share's end, never back (the views of
 * two threads on two CPUs differ by what each cannot see of the other). */
s64 kxvt_vclock(struct kxvt_member *m)
{
	s64 v;

	if (m->state != KXVT_M_RUN)
		return m->vfrozen;
	v = clamp(kxvt_vclock_raw(m), m->vlast, m->vend);
	m->vlast = v;
	return v;
}

/* The calling task's wait ended at deadline: the clock jumps there, by the
 * caller's own view (a jump measured from a floor another thread raised
 * fell short of it: usleep(1000) in one of 8 threads took 903-999 us). */
void kxvt_skip_to(struct kxvt_member *m, s64 deadline)
{
	s64 now = kxvt_vclock_raw(m);

	if (m->state == KXVT_M_RUN && deadline > now)
		m->skip += deadline - now;
}

bool kxvt_may_run(struct kxvt_member *m)
{
	return m->state == KXVT_M_FREE ||
	       (m->state == KXVT_M_RUN && !m->exhausted);
}

void kxvt_member_done(struct kxvt_member *m, u32 end)
{
	struct kxvt_exp *exp = m->exp;

	m->result_used = kxvt_used_now(m);
	/* a share ended by its budget ends at its end, by definition */
	m->vfrozen = end == KXVT_END_BUDGET ? m->vend : kxvt_vclock(m);
	m->cpu_total += m->result_used;
	m->state = KXVT_M_DONE;
	m->end = end;
	exp->ndone++;
	if (exp->wait_any || exp->ndone == exp->nrun)
		irq_work_queue(&exp->irq);
}

void kxvt_member_check(struct kxvt_member *m)
{
	if (m->state != KXVT_M_RUN || m->nactive > 0)
		return;
	kxvt_member_done(m, m->aborted ? KXVT_END_ABORTED :
			 m->exhausted ? KXVT_END_BUDGET : KXVT_END_BLOCKED);
}

/* Its budget is used: every runnable thread parks (those on another CPU
 * are sent an interrupt so that they notice now). */
void kxvt_member_exhaust(struct kxvt_member *m)
{
	struct kxvt_task *t;

	if (m->exhausted)
		return;
	m->exhausted = true;
	list_for_each_entry(t, &m->tasks, mnode) {
		if (t->state != KXVT_T_ACTIVE)
			continue;
		kxvt_queue(t, KXVT_DO_PARK);
		if (t->oncpu && t->task != current)
			kick_process(t->task);
	}
	kxvt_member_check(m);
}

static s64 kxvt_slice(struct kxvt_member *m, s64 left)
{
	/* threads on several CPUs use it together */
	return max_t(s64, left / max(m->noncpu, 1), KXVT_MIN_SLICE_NS);
}

/* The budget timer of t, on t's CPU (t is current there, or being switched
 * in): its callback reads t's runtime by that CPU's clock. */
static void kxvt_arm(struct kxvt_task *t)
{
	struct kxvt_member *m = t->m;
	s64 left = m->budget - kxvt_used_now(m);

	if (left <= 0)
		kxvt_member_exhaust(m);
	else
		hrtimer_start(&t->timer, ns_to_ktime(kxvt_slice(m, left)),
			      HRTIMER_MODE_REL_PINNED_HARD);
}

static enum hrtimer_restart kxvt_budget_fn(struct hrtimer *h)
{
	struct kxvt_task *t = container_of(h, struct kxvt_task, timer);
	struct kxvt_member *m = t->m;
	enum hrtimer_restart ret = HRTIMER_NORESTART;
	s64 left;
	raw_spin_lock(&m->exp->lock);
	/* re-armed meanwhile (a share started, the task came on a CPU) */
	if (!t->linked || m->state != KXVT_M_RUN || m->exhausted || hrtimer_is_queued(h))
		goto out;
	left = m->budget - kxvt_used_now(m);
	if (left > 0) {
		hrtimer_forward_now(h, ns_to_ktime(kxvt_slice(m, left)));
		ret = HRTIMER_RESTART;
	} else {
		kxvt_member_exhaust(m);
	}
out:
	raw_spin_unlock(&m->exp->lock);
	return ret;
}

/* Marks the share of m as begun; returns how many of its threads blocked
 * in a timed wait due in this share were put in kicks[] (referenced: the
 * caller interrupts them after unlocking). */
int kxvt_start_share(struct kxvt_member *m, const struct kxvt_share *s,
		     struct kxvt_task **kicks, int nkicks)
{
	struct kxvt_task *t;
	int k = 0;

	m->state = KXVT_M_RUN;
	m->exhausted = m->aborted = m->reported = m->wake = false;
	m->vbase = s->vbase;
	m->vend = s->vend;
	m->budget = s->budget_ns;
	m->num = s->speed_num;
	m->den = s->speed_den;
	/* what its threads ran after its last share ended (parking, a signal
	 * handled between shares) counts in this one: no CPU goes uncounted */
	m->used -= m->result_used;
	m->result_used = m->skip = 0;
	m->vlast = s->vbase;
	m->exp->nrun++;
	if (!m->ntasks) {
		kxvt_member_done(m, KXVT_END_EXITED);
		return 0;
	}
	list_for_each_entry(t, &m->tasks, mnode) {
		if (t->oncpu) {
			/* on a CPU now (leaving its park, say): no switch-in
			 * will arm its timer; it arms it itself, on its CPU */
			kxvt_queue(t, KXVT_DO_ARM);
			kick_process(t->task);
		}
		if (t->state == KXVT_T_PARKED ||
		    (t->state == KXVT_T_ASLEEP && t->deadline < m->vend)) {
			t->state = KXVT_T_ACTIVE;
			m->nactive++;
			m->wake = true;
		} else if (t->state == KXVT_T_BLOCKED &&
			   t->tw_mode == KXVT_TW_WAIT && t->deadline < m->vend &&
			   k < nkicks) {
			/* counted active before its wakeup: the share must
			 * not end before it has seen its timeout */
			t->state = KXVT_T_ACTIVE;
			m->nactive++;
			refcount_inc(&t->ref);
			kicks[k++] = t;
		}
	}
	kxvt_member_check(m);
	return k;
}

/* ---- task works ----------------------------------------------------------- */

static void kxvt_task_free_rcu(struct rcu_head *r)
{
	struct kxvt_task *t = container_of(r, struct kxvt_task, rcu);
	struct kxvt_exp *exp = t->m->exp;

	put_task_struct(t->task);
	kmem_cache_free(kxvt_task_cache, t);
	kxvt_exp_put(exp);
}

void kxvt_task_put(struct kxvt_task *t)
{
	if (refcount_dec_and_test(&t->ref))
		call_rcu(&t->rcu, kxvt_task_free_rcu);
}

/* t's own task runs this: whatever its state said, it is runnable (a
 * wakeup the probes did not see would otherwise leave it "blocked"). */
void kxvt_running(struct kxvt_task *t)
{
	if (t->linked && t->state == KXVT_T_BLOCKED) {
		t->state = KXVT_T_ACTIVE;
		t->m->nactive++;
	}
}

/* Waits in a killable, no-load sleep until its member may run. */
static void kxvt_park(struct kxvt_task *t)
{
	struct kxvt_member *m = t->m;
	unsigned long flags;
	DEFINE_WAIT(wait);

	raw_spin_lock_irqsave(&m->exp->lock, flags);
	kxvt_running(t);
	if (!t->linked || kxvt_may_run(m) || t->state != KXVT_T_ACTIVE) {
		raw_spin_unlock_irqrestore(&m->exp->lock, flags);
		return;
	}
	t->state = KXVT_T_PARKED;
	m->nactive--;
	kxvt_member_check(m);
	raw_spin_unlock_irqrestore(&m->exp->lock, flags);

	WRITE_ONCE(t->in_wait, true);
	for (;;) {
		prepare_to_wait(&m->wq, &wait, TASK_KILLABLE | TASK_NOLOAD);
		if (READ_ONCE(t->state) != KXVT_T_PARKED || fatal_signal_pending(current))
			break;
		schedule();
	}
	finish_wait(&m->wq, &wait);

	raw_spin_lock_irqsave(&m->exp->lock, flags);
	t->in_wait = false;
	if (t->state == KXVT_T_PARKED) { /* killed */
		t->state = KXVT_T_ACTIVE;
		m->nactive++;
	}
	raw_spin_unlock_irqrestore(&m->exp->lock, flags);
}

static void kxvt_arm_self(struct kxvt_task *t)
{
	struct kxvt_member *m = t->m;
	unsigned long flags;

	raw_spin_lock_irqsave(&m->exp->lock, flags);
	if (t->linked && t->oncpu && m->state == KXVT_M_RUN && !m->exhausted)
		kxvt_arm(t);
	raw_spin_unlock_irqrestore(&m->exp->lock, flags);
}

static void kxvt_work_fn(struct callback_head *cb)
{
	struct kxvt_task *t = container_of(cb, struct kxvt_task, work);

	atomic_set(&t->work_queued, 0);
	smp_mb__after_atomic();
	if (!(current->flags & PF_EXITING)) {
		if (test_and_clear_bit(KXVT_DO_SLEEP, &t->todo))
			kxvt_do_sleep(t);
		if (test_and_clear_bit(KXVT_DO_PUT, &t->todo))
			kxvt_do_put(t);
		if (test_and_clear_bit(KXVT_DO_CLEAR, &t->todo))
			kxvt_do_clear(t);
		if (test_and_clear_bit(KXVT_DO_PARK, &t->todo))
			kxvt_park(t);
		if (test_and_clear_bit(KXVT_DO_ARM, &t->todo))
			kxvt_arm_self(t);
	}
	kxvt_task_put(t);
}

/* Only there to set TIF_NOTIFY_SIGNAL: the wait it interrupts ends. */
static void kxvt_kick_fn(struct callback_head *cb)
{
	struct kxvt_task *t = container_of(cb, struct kxvt_task, kick);

	atomic_set(&t->kick_queued, 0);
	kxvt_task_put(t);
}

/* The caller holds a reference to t (it is linked, or referenced). */
void kxvt_queue(struct kxvt_task *t, int what)
{
	set_bit(what, &t->todo);
	if (atomic_xchg(&t->work_queued, 1))
		return;
	refcount_inc(&t->ref);
	if (task_work_add(t->task, &t->work, TWA_RESUME)) { /* exiting */
		atomic_set(&t->work_queued, 0);
		refcount_dec(&t->ref);
	}
}

void kxvt_kick(struct kxvt_task *t, enum task_work_notify_mode mode)
{
	if (atomic_xchg(&t->kick_queued, 1))
		return;
	refcount_inc(&t->ref);
	if (task_work_add(t->task, &t->kick, mode)) {
		atomic_set(&t->kick_queued, 0);
		refcount_dec(&t->ref);
	}
}

/* ---- membership (exp->lock held) ------------------------------------------ */

static void kxvt_link(struct kxvt_task *t, struct kxvt_member *m,
		      struct task_struct *p, enum kxvt_tstate state)
{
	get_task_struct(p);
	t->task = p;
	t->m = m;
	t->state = state;
	t->linked = true;
	refcount_set(&t->ref, 1);
	init_task_work(&t->work, kxvt_work_fn);
	init_task_work(&t->kick, kxvt_kick_fn);
	hrtimer_init(&t->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_HARD);
	t->timer.function = kxvt_budget_fn;
	list_add_tail(&t->mnode, &m->tasks);
	m->ntasks++;
	if (state == KXVT_T_ACTIVE)
		m->nactive++;
	kref_get(&m->exp->ref);
	raw_spin_lock(&kxvt_hash_lock);
	hash_add_rcu(kxvt_tasks, &t->hnode, (unsigned long)p);
	raw_spin_unlock(&kxvt_hash_lock);
	atomic_inc(&kxvt_ntasks);
	if (state == KXVT_T_ACTIVE && !kxvt_may_run(m))
		kxvt_queue(t, KXVT_DO_PARK);
}

/* Drops the task from its member (it exits, or on release); the caller
 * then drops the linked reference. */
static void kxvt_unlink(struct kxvt_task *t)
{
	struct kxvt_member *m = t->m;

	hrtimer_try_to_cancel(&t->timer);
	if (t->oncpu) {
		m->used += kxvt_runtime(t->task, true) - t->rt_in;
		m->noncpu--;
		t->oncpu = false;
	}
	if (t->state == KXVT_T_ACTIVE)
		m->nactive--;
	t->linked = false;
	list_del(&t->mnode);
	m->ntasks--;
	raw_spin_lock(&kxvt_hash_lock);
	hash_del_rcu(&t->hnode);
	raw_spin_unlock(&kxvt_hash_lock);
	atomic_dec(&kxvt_ntasks);
	if (m->state == KXVT_M_RUN && !m->ntasks)
		kxvt_member_done(m, KXVT_END_EXITED);
	else
		kxvt_member_check(m);
}

/* Adds every thread of leader's process (ADD, exp->mutex held). */
int kxvt_add_tasks(struct kxvt_member *m, struct task_struct *leader)
{
	struct kxvt_exp *exp = m->exp;
	int want = get_nr_threads(leader) + 4, n, i, used = 0, err = 0;
	struct kxvt_task **pre;
	struct task_struct *th;
	unsigned long flags;

	for (;;) {
		pre = kcalloc(want, sizeof(*pre), GFP_KERNEL);
		for (i = 0; pre && i < want; i++)
			if (!(pre[i] = kmem_cache_zalloc(kxvt_task_cache, GFP_KERNEL)))
				break;
		if (!pre || i < want) {
			err = -ENOMEM;
			goto out;
		}
		raw_spin_lock_irqsave(&exp->lock, flags);
		rcu_read_lock();
		n = 0;
		for_each_thread(leader, th)
			n++;
		if (n <= want)
			break;
		rcu_read_unlock();
		raw_spin_unlock_irqrestore(&exp->lock, flags);
		for (i = 0; i < want; i++)
			kmem_cache_free(kxvt_task_cache, pre[i]);
		kfree(pre);
		want = n + 4;
	}
	for_each_thread(leader, th) {
		if ((th->flags & PF_EXITING) || kxvt_find(th))
			continue;
		kxvt_link(pre[used++], m, th, READ_ONCE(th->__state) == TASK_RUNNING ?
			  KXVT_T_ACTIVE : KXVT_T_BLOCKED);
		kick_process(th);       /* on a CPU: it parks now */
	}
	rcu_read_unlock();
	raw_spin_unlock_irqrestore(&exp->lock, flags);
	if (!used)
		err = -ESRCH;
out:
	for (i = used; pre && i < want; i++)
		if (pre[i])
			kmem_cache_free(kxvt_task_cache, pre[i]);
	kfree(pre);
	return err;
}

/* Release: every member runs free from now on; the tasks the caller must
 * kill (KXVT_RELEASE_KILL) or whose timed wait it must interrupt are put
 * in out[] (referenced).  Returns their number, or -(tasks) when out[] is
 * too small. */
int kxvt_release_members(struct kxvt_exp *exp, struct kxvt_task **out, int max)
{
	struct kxvt_task *t;
	unsigned long flags;
	int i, n = 0, total = 0;

	raw_spin_lock_irqsave(&exp->lock, flags);
	for (i = 0; i < exp->nmembers; i++)
		total += exp->members[i]->ntasks;
	if (total > max) {
		raw_spin_unlock_irqrestore(&exp->lock, flags);
		return -total;
	}
	exp->dead = true;
	for (i = 0; i < exp->nmembers; i++) {
		struct kxvt_member *m = exp->members[i];

		m->state = KXVT_M_FREE;
		list_for_each_entry(t, &m->tasks, mnode) {
			hrtimer_try_to_cancel(&t->timer);
			if (t->state == KXVT_T_PARKED) {
				t->state = KXVT_T_ACTIVE;
				m->nactive++;
			}
			if (exp->release_mode == KXVT_RELEASE_KILL ||
			    t->tw_mode == KXVT_TW_WAIT) {
				refcount_inc(&t->ref);
				out[n++] = t;
			}
		}
	}
	raw_spin_unlock_irqrestore(&exp->lock, flags);
	return n;
}

/* ---- scheduler probes ----------------------------------------------------- */

/* Its runtime is up to date here (the scheduler updated it on the way). */
static void kxvt_switch_out(struct kxvt_task *t, bool blocks)
{
	struct kxvt_member *m = t->m;

	raw_spin_lock(&m->exp->lock);
	if (!t->linked)
		goto out;
	hrtimer_try_to_cancel(&t->timer);
	if (t->oncpu) {
		m->used += READ_ONCE(t->task->se.sum_exec_runtime) - t->rt_in;
		m->noncpu--;
		t->oncpu = false;
	}
	if (blocks && t->state == KXVT_T_ACTIVE && !t->in_wait) {
		t->state = KXVT_T_BLOCKED;
		m->nactive--;
		kxvt_member_check(m);
	}
out:
	raw_spin_unlock(&m->exp->lock);
}

static void kxvt_switch_in(struct kxvt_task *t)
{
	struct kxvt_member *m = t->m;

	raw_spin_lock(&m->exp->lock);
	if (!t->linked)
		goto out;
	t->rt_in = READ_ONCE(t->task->se.sum_exec_runtime);
	t->oncpu = true;
	m->noncpu++;
	if (t->state == KXVT_T_BLOCKED) { /* woken without a wakeup event */
		t->state = KXVT_T_ACTIVE;
		m->nactive++;
	}
	if (m->state == KXVT_M_RUN && !m->exhausted) {
		kxvt_arm(t);
	} else if (!kxvt_may_run(m) && t->state == KXVT_T_ACTIVE) {
		kxvt_queue(t, KXVT_DO_PARK);
	}
out:
	raw_spin_unlock(&m->exp->lock);
}

static void kxvt_probe_switch(void *data, bool preempt,
			      struct task_struct *prev,
			      struct task_struct *next,
			      unsigned int prev_state)
{
	struct kxvt_task *t;

	if (!atomic_read(&kxvt_ntasks))
		return;
	t = kxvt_find(prev);
	/* prev->__state, not prev_state: a pending signal may have kept
	 * the task runnable after prev_state was read */
	if (t)
		kxvt_switch_out(t, !preempt && READ_ONCE(prev->__state) != TASK_RUNNING);
	t = kxvt_find(next);
	if (t)
		kxvt_switch_in(t);
}

static void kxvt_probe_wakeup(void *data, struct task_struct *p)
{
	struct kxvt_task *t;
	struct kxvt_member *m;

	if (!atomic_read(&kxvt_ntasks))
		return;
	t = kxvt_find(p);
	if (!t)
		return;
	m = t->m;
	raw_spin_lock(&m->exp->lock);
	if (t->linked && t->state == KXVT_T_BLOCKED) {
		t->state = KXVT_T_ACTIVE;
		m->nactive++;
		if (!kxvt_may_run(m))
			kxvt_queue(t, KXVT_DO_PARK);
	}
	raw_spin_unlock(&m->exp->lock);
}

static void kxvt_probe_fork(void *data, struct task_struct *parent,
			    struct task_struct *child)
{
	struct kxvt_task *t, *c;
	struct kxvt_member *m;
	unsigned long flags;
	bool linked = false;

	if (!atomic_read(&kxvt_ntasks))
		return;
	t = kxvt_find(current);
	if (!t)
		return;
	m = t->m;
	c = kmem_cache_zalloc(kxvt_task_cache, GFP_ATOMIC);
	raw_spin_lock_irqsave(&m->exp->lock, flags);
	if (c && t->linked && !m->exp->dead) {
		kxvt_link(c, m, child, KXVT_T_ACTIVE);
		linked = true;
	}
	raw_spin_unlock_irqrestore(&m->exp->lock, flags);
	if (linked)
		return;
	if (c)
		kmem_cache_free(kxvt_task_cache, c);
	/* a child the module cannot follow does not run uncontrolled */
	if (!c || m->exp->release_mode == KXVT_RELEASE_KILL) {
		if (!c)
			pr_warn_ratelimited("out of memory: killing the new child %d of member %u\n",
					    task_pid_nr(child), m->id);
		send_sig(SIGKILL, child, 1);
	}
}

static void kxvt_probe_exit(void *data, struct task_struct *p)
{
	struct kxvt_task *t;
	struct kxvt_member *m;
	unsigned long flags;
	bool unlinked = false;

	if (!atomic_read(&kxvt_ntasks))
		return;
	t = kxvt_find(p);
	if (!t)
		return;
	m = t->m;
	raw_spin_lock_irqsave(&m->exp->lock, flags);
	if (t->linked) {
		kxvt_unlink(t);
		unlinked = true;
	}
	raw_spin_unlock_irqrestore(&m->exp->lock, flags);
	if (unlinked)
		kxvt_task_put(t);
}
