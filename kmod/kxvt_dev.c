// SPDX-License-Identifier: GPL-2.0
/*
 * kxvt_dev.c - /dev/kxvt: one open file is one experiment (kxvt.h).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/perf_event.h>
#include <linux/pid.h>
#include <linux/sched/clock.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "kxvt_internal.h"

static u32 kxvt_caps = KXVT_CAP_CLOCKS;
static char kxvt_pmu[64];

/* ---- experiments ---------------------------------------------------------- */

static void kxvt_exp_free_rcu(struct rcu_head *r)
{
	struct kxvt_exp *exp = container_of(r, struct kxvt_exp, rcu);
	u32 i;

	irq_work_sync(&exp->irq);
	if (exp->vvar)
		put_page(exp->vvar);
	for (i = 0; i < exp->nmembers; i++)
		kfree(exp->members[i]);
	kvfree(exp->members);
	kfree(exp);
	kxvt_probes_put();
	module_put(THIS_MODULE);     /* module exit waits with rcu_barrier() */
}

static void kxvt_exp_release(struct kref *ref)
{
	struct kxvt_exp *exp = container_of(ref, struct kxvt_exp, ref);

	call_rcu(&exp->rcu, kxvt_exp_free_rcu);
}

void kxvt_exp_put(struct kxvt_exp *exp)
{
	kref_put(&exp->ref, kxvt_exp_release);
}

static void kxvt_wake_ctl(struct irq_work *w)
{
	wake_up(&container_of(w, struct kxvt_exp, irq)->ctl_wq);
}

static int kxvt_open(struct inode *inode, struct file *file)
{
	struct kxvt_exp *exp;
	int err;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	exp = kzalloc(sizeof(*exp), GFP_KERNEL);
	if (!exp)
		return -ENOMEM;
	err = kxvt_probes_get();
	if (err) {
		kfree(exp);
		return err;
	}
	raw_spin_lock_init(&exp->lock);
	mutex_init(&exp->mutex);
	kref_init(&exp->ref);
	init_waitqueue_head(&exp->ctl_wq);
	init_irq_work(&exp->irq, kxvt_wake_ctl);
	__module_get(THIS_MODULE);
	file->private_data = exp;
	return 0;
}

/* The controller is gone: every member is killed, or runs on freely. */
static int kxvt_release(struct inode *inode, struct file *file)
{
	struct kxvt_exp *exp = file->private_data;
	struct kxvt_task **tasks = NULL;
	int i, n, max = 0;

	mutex_lock(&exp->mutex);
	for (;;) {
		n = kxvt_release_members(exp, tasks, max);
		if (n >= 0)
			break;
		kvfree(tasks);
		max = -n + 16;
		tasks = kvcalloc(max, sizeof(*tasks), GFP_KERNEL | __GFP_NOFAIL);
	}
	if (exp->vvar)
		kxvt_time_detach(exp);
	for (i = 0; i < n; i++) {
		if (exp->release_mode == KXVT_RELEASE_KILL)
			send_sig(SIGKILL, tasks[i]->task, 1);
		else
			kxvt_kick(tasks[i], TWA_SIGNAL);
		kxvt_task_put(tasks[i]);
	}
	for (i = 0; i < exp->nmembers; i++)
		wake_up_all(&exp->members[i]->wq);
	mutex_unlock(&exp->mutex);
	kvfree(tasks);
	kxvt_exp_put(exp);
	return 0;
}

/* ---- ioctls --------------------------------------------------------------- */

static long kxvt_info(void __user *arg)
{
	struct kxvt_info info = {
		.api_version = KXVT_API_VERSION,
		.caps = kxvt_caps,
		.max_members = KXVT_MAX_MEMBERS,
		.max_shares = KXVT_MAX_SHARES,
	};

	strscpy(info.pmu, kxvt_pmu, sizeof(info.pmu));
	return copy_to_user(arg, &info, sizeof(info)) ? -EFAULT : 0;
}

static long kxvt_config(struct kxvt_exp *exp, void __user *arg)
{
	struct kxvt_config cfg;

	if (copy_from_user(&cfg, arg, sizeof(cfg)))
		return -EFAULT;
	if (cfg.flags & ~KXVT_CFG_ALL || cfg.release > KXVT_RELEASE_RESUME)
		return -EINVAL;
	if (exp->nmembers)
		return -EBUSY;
	exp->clocks = cfg.flags & KXVT_CFG_CLOCKS;
	exp->release_mode = cfg.release;
	exp->realtime_base = cfg.realtime_base;
	exp->configured = true;
	return 0;
}

/* Who may be added: a live user process of the caller's user (real and
 * effective uid), not the caller's own process, not init, not a member. */
static int kxvt_check_target(struct task_struct *p)
{
	const struct cred *cred;
	int err = 0;

	if (p->flags & (PF_KTHREAD | PF_EXITING))
		return p->flags & PF_KTHREAD ? -EINVAL : -ESRCH;
	if (same_thread_group(p, current))
		return -EINVAL;
	if (is_global_init(p) || task_pid_vnr(p) == 1)
		return -EPERM;
	cred = get_task_cred(p);
	if (!uid_eq(cred->uid, current_euid()) || !uid_eq(cred->euid, current_euid()))
		err = -EPERM;
	put_cred(cred);
	if (!err && kxvt_find(p))
		err = -EBUSY;
	return err;
}

static long kxvt_add(struct kxvt_exp *exp, void __user *arg)
{
	struct kxvt_member *m = NULL, **grown;
	struct task_struct *p;
	struct kxvt_add add;
	unsigned long flags;
	long err;

	if (copy_from_user(&add, arg, sizeof(add)))
		return -EFAULT;
	if (add.pid <= 0)
		return -EINVAL;
	if (exp->nmembers >= KXVT_MAX_MEMBERS)
		return -ENOSPC;
	p = get_pid_task(find_get_pid(add.pid), PIDTYPE_PID);
	if (!p)
		return -ESRCH;
	rcu_read_lock();
	err = kxvt_check_target(p);
	rcu_read_unlock();
	if (err)
		goto out;
	if (exp->clocks) {
		err = kxvt_time_attach(exp, p);
		if (err)
			goto out;
	}
	err = -ENOMEM;
	m = kzalloc(sizeof(*m), GFP_KERNEL);
	grown = kvrealloc(exp->members, exp->nmembers * sizeof(*grown),
			  (exp->nmembers + 1) * sizeof(*grown), GFP_KERNEL);
	if (!m || !grown)
		goto out;
	exp->members = grown;
	m->exp = exp;
	m->id = exp->nmembers;
	m->state = KXVT_M_IDLE;
	m->vfrozen = add.vnow;
	INIT_LIST_HEAD(&m->tasks);
	init_waitqueue_head(&m->wq);
	raw_spin_lock_irqsave(&exp->lock, flags);
	exp->members[exp->nmembers++] = m;
	raw_spin_unlock_irqrestore(&exp->lock, flags);
	err = kxvt_add_tasks(m, p);
	if (!err) {
		add.id = m->id;
		m = NULL;
		err = copy_to_user(arg, &add, sizeof(add)) ? -EFAULT : 0;
	} else {
		raw_spin_lock_irqsave(&exp->lock, flags);
		exp->nmembers--;
		raw_spin_unlock_irqrestore(&exp->lock, flags);
	}
out:
	kfree(m);
	put_task_struct(p);
	return err;
}

static int kxvt_check_shares(struct kxvt_exp *exp, struct kxvt_share *s, u32 n)
{
	unsigned long *seen = bitmap_zalloc(exp->nmembers ?: 1, GFP_KERNEL);
	int err = 0;
	u32 i;

	if (!seen)
		return -ENOMEM;
	for (i = 0; i < n && !err; i++) {
		if (s[i].id >= exp->nmembers || test_and_set_bit(s[i].id, seen) ||
		    !s[i].speed_num || !s[i].speed_den || s[i].pad ||
		    s[i].budget_ns <= 0 || s[i].vend < s[i].vbase)
			err = -EINVAL;
		else if (exp->members[s[i].id]->state == KXVT_M_RUN)
			err = -EBUSY;
	}
	bitmap_free(seen);
	return err;
}

static long kxvt_run(struct kxvt_exp *exp, void __user *arg)
{
	struct kxvt_task **kicks = NULL;
	struct kxvt_share *shares;
	struct kxvt_run run;
	unsigned long flags;
	int nkicks = 0, k = 0, i;
	long err;

	if (copy_from_user(&run, arg, sizeof(run)))
		return -EFAULT;
	if (!run.nshares || run.nshares > KXVT_MAX_SHARES ||
	    run.flags & ~KXVT_RUN_NEW_ROUND)
		return -EINVAL;
	shares = vmemdup_user(u64_to_user_ptr(run.shares),
			      array_size(run.nshares, sizeof(*shares)));
	if (IS_ERR(shares))
		return PTR_ERR(shares);
	err = kxvt_check_shares(exp, shares, run.nshares);
	if (err)
		goto out;
	err = -EBUSY;
	if ((run.flags & KXVT_RUN_NEW_ROUND) && exp->nrun)
		goto out;
	for (i = 0; i < run.nshares; i++)
		nkicks += exp->members[shares[i].id]->ntasks;
	err = -ENOMEM;
	kicks = kvcalloc(nkicks ?: 1, sizeof(*kicks), GFP_KERNEL);
	if (!kicks)
		goto out;
	raw_spin_lock_irqsave(&exp->lock, flags);
	if (run.flags & KXVT_RUN_NEW_ROUND) {
		exp->now = run.now;
		for (i = 0; i < exp->nmembers; i++) {
			exp->members[i]->state = KXVT_M_IDLE;
			exp->members[i]->vfrozen = run.now;
		}
	}
	for (i = 0; i < run.nshares; i++)
		k += kxvt_start_share(exp->members[shares[i].id], &shares[i],
				      kicks + k, nkicks - k);
	raw_spin_unlock_irqrestore(&exp->lock, flags);
	if ((run.flags & KXVT_RUN_NEW_ROUND) && exp->vvar)
		kxvt_time_round(exp);
	/* only where a thread waits to run: a member whose threads all sleep
	 * past its share costs no wakeup (READ_ONCE: set under the lock above) */
	for (i = 0; i < run.nshares; i++)
		if (READ_ONCE(exp->members[shares[i].id]->wake))
			wake_up_all(&exp->members[shares[i].id]->wq);
	for (i = 0; i < k; i++) {
		kxvt_kick(kicks[i], TWA_SIGNAL);
		kxvt_task_put(kicks[i]);
	}
	err = 0;
out:
	kvfree(kicks);
	kvfree(shares);
	return err;
}

static bool kxvt_wait_done(struct kxvt_exp *exp, bool any)
{
	u32 nrun = READ_ONCE(exp->nrun), ndone = READ_ONCE(exp->ndone);

	return !nrun || (any ? ndone > 0 : ndone == nrun);
}

static long kxvt_wait(struct kxvt_exp *exp, void __user *arg)
{
	struct kxvt_result *res = NULL;
	struct kxvt_wait w;
	unsigned long flags;
	bool any;
	long err = 0;
	u32 i, n = 0;

	if (copy_from_user(&w, arg, sizeof(w)))
		return -EFAULT;
	if (w.nresults > KXVT_MAX_SHARES || w.flags & ~KXVT_WAIT_ANY || w.pad)
		return -EINVAL;
	any = w.flags & KXVT_WAIT_ANY;
	if (w.nresults) {
		res = kvcalloc(w.nresults, sizeof(*res), GFP_KERNEL);
		if (!res)
			return -ENOMEM;
	}
	raw_spin_lock_irqsave(&exp->lock, flags);
	exp->wait_any = any;
	raw_spin_unlock_irqrestore(&exp->lock, flags);
	if (w.timeout_ns < 0)
		err = wait_event_interruptible(exp->ctl_wq, kxvt_wait_done(exp, any));
	else if (w.timeout_ns > 0)
		err = wait_event_interruptible_hrtimeout(exp->ctl_wq,
				kxvt_wait_done(exp, any), ns_to_ktime(w.timeout_ns));
	if (err && err != -ETIME)
		goto out;
	raw_spin_lock_irqsave(&exp->lock, flags);
	for (i = 0; i < exp->nmembers && n < w.nresults; i++) {
		struct kxvt_member *m = exp->members[i];

		if (m->state != KXVT_M_DONE || m->reported)
			continue;
		m->reported = true;
		exp->nrun--;
		exp->ndone--;
		res[n].id = m->id;
		res[n].end = m->end;
		res[n].used_ns = m->result_used;
		res[n].vclock = m->vfrozen;
		res[n].overrun_ns = max_t(s64, m->result_used - m->budget, 0);
		n++;
	}
	w.running = exp->nrun - exp->ndone;
	raw_spin_unlock_irqrestore(&exp->lock, flags);
	w.nresults = n;
	err = 0;
	if (n && copy_to_user(u64_to_user_ptr(w.results), res, n * sizeof(*res)))
		err = -EFAULT;
	else if (copy_to_user(arg, &w, sizeof(w)))
		err = -EFAULT;
out:
	kvfree(res);
	return err;
}

static long kxvt_abort(struct kxvt_exp *exp)
{
	unsigned long flags;
	u32 i;

	raw_spin_lock_irqsave(&exp->lock, flags);
	for (i = 0; i < exp->nmembers; i++) {
		struct kxvt_member *m = exp->members[i];

		if (m->state == KXVT_M_RUN) {
			m->aborted = true;
			kxvt_member_exhaust(m);
			kxvt_member_check(m);
		}
	}
	raw_spin_unlock_irqrestore(&exp->lock, flags);
	return 0;
}

static long kxvt_member(struct kxvt_exp *exp, void __user *arg)
{
	struct kxvt_member_info mi;
	struct kxvt_member *m;
	unsigned long flags;

	if (copy_from_user(&mi, arg, sizeof(mi)))
		return -EFAULT;
	if (mi.id >= exp->nmembers || mi.pad)
		return -EINVAL;
	m = exp->members[mi.id];
	raw_spin_lock_irqsave(&exp->lock, flags);
	mi.ntasks = m->ntasks;
	mi.vclock = kxvt_vclock(m);
	mi.running = m->state == KXVT_M_RUN;
	mi.cpu_ns = m->cpu_total + (mi.running ? kxvt_used_now(m) : 0);
	raw_spin_unlock_irqrestore(&exp->lock, flags);
	return copy_to_user(arg, &mi, sizeof(mi)) ? -EFAULT : 0;
}

static long kxvt_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct kxvt_exp *exp = file->private_data;
	void __user *uarg = (void __user *)arg;
	long err;

	if (cmd == KXVT_IOC_INFO)
		return kxvt_info(uarg);
	rcu_read_lock();
	err = kxvt_find(current) ? -EPERM : 0;  /* a member drives no experiment */
	rcu_read_unlock();
	if (err)
		return err;
	mutex_lock(&exp->mutex);
	switch (cmd) {
	case KXVT_IOC_CONFIG:
		err = kxvt_config(exp, uarg);
		break;
	case KXVT_IOC_ADD:
		err = kxvt_add(exp, uarg);
		break;
	case KXVT_IOC_RUN:
		err = kxvt_run(exp, uarg);
		break;
	case KXVT_IOC_WAIT:
		err = kxvt_wait(exp, uarg);
		break;
	case KXVT_IOC_ABORT:
		err = kxvt_abort(exp);
		break;
	case KXVT_IOC_MEMBER:
		err = kxvt_member(exp, uarg);
		break;
	default:
		err = -ENOTTY;
	}
	mutex_unlock(&exp->mutex);
	return err;
}

static const struct file_operations kxvt_fops = {
	.owner = THIS_MODULE,
	.open = kxvt_open,
	.release = kxvt_release,
	.unlocked_ioctl = kxvt_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice kxvt_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "kxvt",
	.fops = &kxvt_fops,
	.mode = 0600,
};

/* A hardware instruction counter for budgets in instructions: absent under
 * QEMU TCG (and where perf has no PMU driver). */
static void kxvt_probe_pmu(void)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_HARDWARE,
		.config = PERF_COUNT_HW_INSTRUCTIONS,
		.size = sizeof(attr),
		.disabled = 1,
		.exclude_kernel = 1,
	};
	struct perf_event *ev = perf_event_create_kernel_counter(&attr, -1, current,
								  NULL, NULL);

	if (IS_ERR(ev)) {
		snprintf(kxvt_pmu, sizeof(kxvt_pmu),
			 "no hardware instruction counter (perf: %ld)", PTR_ERR(ev));
		return;
	}
	perf_event_release_kernel(ev);
	kxvt_caps |= KXVT_CAP_INSTRUCTIONS;
}

static int __init kxvt_init(void)
{
	int err = kxvt_sched_init();

	if (err)
		return err;
	kxvt_probe_pmu();
	err = misc_register(&kxvt_misc);
	if (err) {
		pr_err("cannot register /dev/kxvt: %d\n", err);
		kxvt_sched_exit();
	}
	return err;
}

static void __exit kxvt_exit(void)
{
	misc_deregister(&kxvt_misc);
	rcu_barrier();  /* the last experiment's free (and its module_put) */
	kxvt_sched_exit();
}

module_init(kxvt_init);
module_exit(kxvt_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kx.vtime kernel backend: virtual time rounds");
