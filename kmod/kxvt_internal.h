/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kxvt_internal.h - what the parts of kxvt.ko share: experiments, members,
 * member tasks, and the functions each part offers the others.
 *
 *   kxvt_dev.c    /dev/kxvt, the ioctls, release, module init and exit
 *   kxvt_sched.c  member tasks: fork/exit/switch/wakeup probes, the budget
 *                 timer, parking, shares
 *   kxvt_time.c   clocks: the members' vDSO page, the system-call probes
 *                 (clock answers, virtual sleeps and timeouts)
 *
 * Locking: exp->lock (raw, irq-safe) guards every member and member-task
 * field below; it is taken inside the scheduler (rq lock held), so code
 * holding it never wakes a task, sends a signal or sleeps: such work is
 * done after unlocking (or from exp->irq for the controller's wakeup).
 * exp->mutex serializes the ioctls.  Member tasks are found through a
 * global hash (RCU) keyed by task_struct.
 */
#ifndef KXVT_INTERNAL_H
#define KXVT_INTERNAL_H

#include <linux/hashtable.h>
#include <linux/hrtimer.h>
#include <linux/irq_work.h>
#include <linux/kref.h>
#include <linux/mutex.h>
#include <linux/refcount.h>
#include <linux/sched.h>
#include <linux/spinlock.h>
#include <linux/task_work.h>
#include <linux/wait.h>
#include <vdso/datapage.h>

#include "kxvt.h"

enum kxvt_tstate {
	KXVT_T_ACTIVE,          /* runnable (or running) and allowed to be */
	KXVT_T_BLOCKED,         /* asleep in the kernel */
	KXVT_T_PARKED,          /* waiting in kxvt_park() for its member's share */
	KXVT_T_ASLEEP,          /* in a virtual sleep (kxvt_time.c) */
};

enum kxvt_mstate {
	KXVT_M_IDLE,            /* between shares: its threads park */
	KXVT_M_RUN,             /* in a share */
	KXVT_M_DONE,            /* its share ended, not yet reported */
	KXVT_M_FREE,            /* released: runs without control */
};

/* What a task's exit work does on its way to user space (kxvt_task.todo). */
enum {
	KXVT_DO_SLEEP,          /* a virtual sleep (kxvt_time.c) */
	KXVT_DO_PUT,            /* write the clock answer to user memory */
	KXVT_DO_CLEAR,          /* a select that timed out: clear its sets */
	KXVT_DO_PARK,           /* park until its member may run */
	KXVT_DO_ARM,            /* arm its budget timer on its own CPU */
};

/* A timed wait in progress (kxvt_task.tw_mode). */
enum {
	KXVT_TW_NONE,
	KXVT_TW_SLEEP,          /* nanosleep, clock_nanosleep: neutralized */
	KXVT_TW_ONCE,           /* deadline in the share: one check, no wait */
	KXVT_TW_WAIT,           /* deadline later: waits, interrupted in time */
};

struct kxvt_exp;

struct kxvt_member {
	struct kxvt_exp *exp;
	u32 id;
	struct list_head tasks;
	int ntasks;             /* linked tasks */
	int nactive;            /* of which KXVT_T_ACTIVE */
	int noncpu;             /* of which on a CPU */
	enum kxvt_mstate state;
	u32 end;                /* KXVT_END_* once done */
	bool exhausted;         /* used its budget: its threads park */
	bool aborted;
	bool reported;          /* its end was returned by KXVT_IOC_WAIT */
	bool wake;              /* its share woke parked or sleeping threads */
	/* the share */
	s64 vbase, vend, budget;
	u32 num, den;
	s64 used;               /* CPU ns of the share, but for what its
				   threads on a CPU ran since rt_in */
	s64 skip;               /* virtual ns its sleeps jumped */
	s64 result_used;        /* CPU ns when it ended */
	s64 vfrozen;            /* its clock outside a share */
	s64 vlast;              /* the last clock read in the share */
	s64 cpu_total;          /* CPU ns of its ended shares */
	wait_queue_head_t wq;   /* its parked and virtually sleeping threads */
};

struct kxvt_task {
	struct hlist_node hnode;        /* kxvt hash, by task */
	struct list_head mnode;         /* member->tasks */
	struct task_struct *task;       /* referenced while linked */
	struct kxvt_member *m;
	refcount_t ref;                 /* linked + each queued work */
	bool linked;
	bool in_wait;                   /* in kxvt_park()'s or a virtual sleep's
					   wait loop: its switch-outs are not
					   blocking (a share may have begun) */
	enum kxvt_tstate state;
	bool oncpu;
	u64 rt_in;                      /* its runtime when it went on the CPU
					   (or when the share began) */
	struct hrtimer timer;           /* its member's budget, while on CPU */
	struct callback_head work;      /* TWA_RESUME: the todo bits */
	struct callback_head kick;      /* TWA_SIGNAL: interrupts a wait */
	atomic_t work_queued, kick_queued;
	unsigned long todo;
	/* a timed wait (kxvt_time.c) */
	u8 tw_mode;
	bool tw_kick;                   /* interrupt it after the run starts */
	long tw_nr;
	unsigned long tw_ip;
	s64 deadline;
	void __user *tw_ptr;            /* rem (sleeps), timeout (select) */
	unsigned long tw_sets[4];       /* select: nfds, in, out, except */
	/* the clock answer for KXVT_DO_PUT */
	void __user *put_ptr;
	unsigned int put_len;
	u64 put_buf[2];
	struct rcu_head rcu;
};

struct kxvt_exp {
	raw_spinlock_t lock;
	struct mutex mutex;
	struct kref ref;                /* the file + each linked task */
	bool dead;                      /* the file was released */
	bool wait_any;                  /* KXVT_IOC_WAIT wants each end */
	bool configured, clocks;
	u32 release_mode;
	s64 realtime_base;
	s64 now;                        /* the round's start (KXVT_IOC_RUN) */
	struct kxvt_member **members;
	u32 nmembers;
	u32 nrun;                       /* shares started, not reported */
	u32 ndone;                      /* of which ended */
	wait_queue_head_t ctl_wq;       /* KXVT_IOC_WAIT */
	struct irq_work irq;            /* wakes ctl_wq from any context */
	struct page *vvar;              /* the members' time namespace page */
	struct timens_offset vvar_saved[CS_BASES][VDSO_BASES]; /* restored at release */
	struct rcu_head rcu;
};

/* kxvt_sched.c */
int kxvt_sched_init(void);
void kxvt_sched_exit(void);
int kxvt_probes_get(void);
void kxvt_probes_put(void);
struct kxvt_task *kxvt_find(struct task_struct *p);
s64 kxvt_vclock(struct kxvt_member *m);
s64 kxvt_used_now(struct kxvt_member *m);
bool kxvt_may_run(struct kxvt_member *m);
void kxvt_queue(struct kxvt_task *t, int what);
void kxvt_kick(struct kxvt_task *t, enum task_work_notify_mode mode);
void kxvt_member_check(struct kxvt_member *m);
void kxvt_running(struct kxvt_task *t);
void kxvt_member_done(struct kxvt_member *m, u32 end);
void kxvt_member_exhaust(struct kxvt_member *m);
int kxvt_add_tasks(struct kxvt_member *m, struct task_struct *leader);
int kxvt_start_share(struct kxvt_member *m, const struct kxvt_share *s,
		     struct kxvt_task **kicks, int nkicks);
int kxvt_release_members(struct kxvt_exp *exp, struct kxvt_task **out, int max);
void kxvt_task_put(struct kxvt_task *t);
void kxvt_exp_put(struct kxvt_exp *exp);
void kxvt_skip_to(struct kxvt_member *m, s64 deadline);
extern atomic_t kxvt_ntasks;

/* kxvt_time.c */
int kxvt_time_attach(struct kxvt_exp *exp, struct task_struct *p);
void kxvt_time_round(struct kxvt_exp *exp);
void kxvt_time_detach(struct kxvt_exp *exp);
void kxvt_probe_sys_enter(void *data, struct pt_regs *regs, long id);
void kxvt_probe_sys_exit(void *data, struct pt_regs *regs, long ret);
void kxvt_do_sleep(struct kxvt_task *t);
void kxvt_do_put(struct kxvt_task *t);
void kxvt_do_clear(struct kxvt_task *t);

#endif /* KXVT_INTERNAL_H */
