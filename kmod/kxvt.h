/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kxvt.h - the user interface of kxvt.ko, the kernel backend of kx.vtime:
 * /dev/kxvt (root or CAP_SYS_ADMIN).  Included by the module and by
 * bindings/vtime; kmod/README.md has the model, the rules and the limits.
 *
 * One open file is one experiment.  Its members are process trees: a
 * process added with KXVT_IOC_ADD and everything it starts afterwards
 * (threads, children, their children; the module follows forks).  Outside
 * a share a member does not run: each of its threads parks on its way back
 * to user space (signals other than SIGKILL stay pending), and no signal,
 * /proc read or wait is involved.
 *
 * A round is driven by the controller:
 *
 *   KXVT_IOC_RUN    starts shares: member i runs until its threads have
 *                   used budget_ns of CPU time together (a timer in the
 *                   kernel parks them), or until none of them can run
 *                   (every thread blocked, asleep or parked);
 *   KXVT_IOC_WAIT   waits until every share started has ended (or, with
 *                   KXVT_WAIT_ANY, one), and says how each ended, what it
 *                   used and where its clock stands;
 *   KXVT_IOC_ABORT  ends the running shares now (a real-time cap).
 *
 * Clocks.  A member's clock is vbase + skip + used * speed_den / speed_num,
 * never past vend, during its share, and frozen between shares.  With
 * KXVT_CFG_CLOCKS, members must live in a time namespace of their own
 * (unshare(CLONE_NEWTIME) before they are added); the module then turns off
 * that namespace's vDSO clock page, so every clock read enters the kernel,
 * and answers CLOCK_REALTIME/MONOTONIC/BOOTTIME (and COARSE, RAW), time()
 * and gettimeofday() from the member's clock; nanosleep/clock_nanosleep
 * and the timeouts of poll, ppoll, select, pselect6, epoll_wait,
 * epoll_pwait, epoll_pwait2 and futex waits elapse in virtual time.  This
 * holds for raw system calls and statically linked programs.
 *
 * Closing the file (the controller exits or is killed) kills every member
 * (KXVT_RELEASE_KILL, the default) or lets each run on freely
 * (KXVT_RELEASE_RESUME, clocks real again).
 */
#ifndef _UAPI_KXVT_H
#define _UAPI_KXVT_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define KXVT_DEVICE "/dev/kxvt"
#define KXVT_API_VERSION 1
#define KXVT_MAX_MEMBERS 4096  /* per experiment */
#define KXVT_MAX_SHARES 4096   /* per KXVT_IOC_RUN / KXVT_IOC_WAIT */

/* capabilities (kxvt_info.caps) */
#define KXVT_CAP_CLOCKS       (1u << 0) /* vDSO trap and clock answers */
#define KXVT_CAP_INSTRUCTIONS (1u << 1) /* a hardware instruction counter */

struct kxvt_info {
	__u32 api_version;      /* KXVT_API_VERSION */
	__u32 caps;
	__u32 max_members;
	__u32 max_shares;
	char pmu[64];           /* why there are no instruction budgets, or "" */
};

#define KXVT_RELEASE_KILL   0
#define KXVT_RELEASE_RESUME 1
#define KXVT_CFG_CLOCKS     (1u << 0)
#define KXVT_CFG_ALL        KXVT_CFG_CLOCKS

/* Before the first member is added. */
struct kxvt_config {
	__u32 flags;            /* KXVT_CFG_* */
	__u32 release;          /* KXVT_RELEASE_* */
	__s64 realtime_base;    /* CLOCK_REALTIME reads this + the clock */
};

struct kxvt_add {
	__s32 pid;              /* in: a process of the caller's pid namespace */
	__u32 id;               /* out: the member's id (0, 1, ... in order) */
	__s64 vnow;             /* in: its clock until its first share */
};

struct kxvt_share {
	__u32 id;
	__u32 speed_num;        /* virtual ns = CPU ns * speed_den / speed_num */
	__u32 speed_den;
	__u32 pad;
	__s64 vbase;            /* its clock at the start of the share */
	__s64 vend;             /* the end of the share (its clock stops there) */
	__s64 budget_ns;        /* CPU ns its threads may use together */
};

#define KXVT_RUN_NEW_ROUND 1   /* the first shares of a round: needs every
                                  earlier share reported; members without a
                                  share read `now` until theirs */

struct kxvt_run {
	__u64 shares;           /* struct kxvt_share[nshares] */
	__u32 nshares;
	__u32 flags;            /* KXVT_RUN_NEW_ROUND */
	__s64 now;              /* the round's start (with KXVT_RUN_NEW_ROUND;
	                           also what COARSE clocks and time() read) */
};

#define KXVT_END_BUDGET  1      /* used its budget */
#define KXVT_END_BLOCKED 2      /* nothing of it could run */
#define KXVT_END_EXITED  3      /* its last task exited */
#define KXVT_END_ABORTED 4      /* KXVT_IOC_ABORT or the release */

struct kxvt_result {
	__u32 id;
	__u32 end;              /* KXVT_END_* */
	__s64 used_ns;          /* CPU ns of the share */
	__s64 vclock;           /* its clock at the end */
	__s64 overrun_ns;       /* CPU ns used past the budget */
};

#define KXVT_WAIT_ANY 1

struct kxvt_wait {
	__s64 timeout_ns;       /* < 0: no limit; 0: do not wait */
	__u64 results;          /* struct kxvt_result[nresults] */
	__u32 nresults;         /* in: room; out: filled */
	__u32 flags;            /* KXVT_WAIT_ANY */
	__u32 running;          /* out: shares still running */
	__u32 pad;
};

struct kxvt_member_info {
	__u32 id;               /* in */
	__u32 ntasks;           /* out: its live tasks (0: it has exited) */
	__s64 vclock;           /* its clock now */
	__s64 cpu_ns;           /* CPU ns of all its shares */
	__u32 running;          /* in a share now */
	__u32 pad;
};

#define KXVT_IOC_MAGIC 0xb7
#define KXVT_IOC_INFO   _IOR(KXVT_IOC_MAGIC, 1, struct kxvt_info)
#define KXVT_IOC_CONFIG _IOW(KXVT_IOC_MAGIC, 2, struct kxvt_config)
#define KXVT_IOC_ADD    _IOWR(KXVT_IOC_MAGIC, 3, struct kxvt_add)
#define KXVT_IOC_RUN    _IOW(KXVT_IOC_MAGIC, 4, struct kxvt_run)
#define KXVT_IOC_WAIT   _IOWR(KXVT_IOC_MAGIC, 5, struct kxvt_wait)
#define KXVT_IOC_ABORT  _IO(KXVT_IOC_MAGIC, 6)
#define KXVT_IOC_MEMBER _IOWR(KXVT_IOC_MAGIC, 7, struct kxvt_member_info)

#endif /* _UAPI_KXVT_H */
