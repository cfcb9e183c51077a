// SPDX-License-Identifier: GPL-2.0
/*
 * trace.bpf.c - fork, exec and exit of the process trees kxrun follows.
 *
 * `tracked` holds the tgids the user asked for (roots); a fork of a tracked
 * process adds the child, so a whole tree is followed and nothing else.
 * Events go to a ring buffer that the host's loop drains.  Each followed
 * process also has a counter of its context switches (in and out, any
 * thread) that the sampler reads from mapped memory: a process whose counter
 * has not moved and that used no CPU in its last window has not run, so
 * /proc need not be read for it.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "trace_event.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);     /* tgid */
	__type(value, __u32);   /* its slot in switches[] */
} tracked SEC(".maps");

__u64 switches[KX_TRACE_SLOTS];
__u32 next_slot;
/* set by the tracer when it finds roots by name: every exec is reported,
 * so no /proc scan is needed to find them */
__u32 report_all_execs;
/* events the ring buffer had no room for (the tracer says so at the end) */
__u64 lost_events;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 pid = BPF_CORE_READ(child, pid);
	__u32 tgid = BPF_CORE_READ(child, tgid);
	__u32 slot;

	if (pid != tgid || !bpf_map_lookup_elem(&tracked, &ptgid))
		return 0;   /* a thread, or not ours */
	slot = __sync_fetch_and_add(&next_slot, 1) & (KX_TRACE_SLOTS - 1);
	switches[slot] = 1;   /* new: sampled at the next tick */
	bpf_map_update_elem(&tracked, &tgid, &slot, BPF_ANY);
	struct kx_trace_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost_events, 1);
		return 0;
	}
	e->type = TRACE_FORK;
	e->pid = tgid;
	e->ppid = ptgid;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cpu_ns = 0;
	e->children_cpu_ns = 0;
	e->maxrss_pages = 0;
	e->exit_code = 0;
	e->slot = slot;
	BPF_CORE_READ_STR_INTO(&e->comm, child, comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* tp_btf throughout: typed arguments, and no tracefs mount needed */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);

	if (!report_all_execs && !bpf_map_lookup_elem(&tracked, &tgid))
		return 0;
	struct kx_trace_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost_events, 1);
		return 0;
	}
	e->type = TRACE_EXEC;
	e->pid = tgid;
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cpu_ns = 0;
	e->children_cpu_ns = 0;
	e->maxrss_pages = 0;
	e->exit_code = 0;
	e->slot = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* The CPU time of the whole thread group, as thread_group_cputime() sums it:
 * what released threads left in signal->sum_sched_runtime plus the runtime
 * of every thread still on the group's list (this one, the leader, and any
 * thread still on its way out).  The list is walked by bpf_loop(): the
 * verifier checks its body once, not once per iteration (an unrolled walk
 * of 1024 threads, in two programs, took 130 ms of CPU to load, a second on
 * a saturated machine: everything that ended meanwhile went unseen). */
#define MAX_THREADS 1024

struct thread_walk {
	struct list_head *head, *pos;
	unsigned long off;   /* of thread_node in task_struct */
	__u64 ns;
};

static long add_thread(__u64 i, void *ctx)
{
	struct thread_walk *w = ctx;
	struct list_head *pos = w->pos;   /* not CO-RE: our own struct */
	struct task_struct *t;

	if (!pos || pos == w->head)
		return 1;   /* the end of the list */
	t = (void *)((char *)pos - w->off);
	w->ns += BPF_CORE_READ(t, se.sum_exec_runtime);
	w->pos = BPF_CORE_READ(pos, next);
	return 0;
}

static __u64 group_cpu_ns(struct task_struct *task)
{
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	struct thread_walk w = {
		.head = &sig->thread_head,
		.pos = BPF_CORE_READ(sig, thread_head.next),
		.off = bpf_core_field_offset(struct task_struct, thread_node),
		.ns = BPF_CORE_READ(sig, sum_sched_runtime),
	};

	bpf_loop(MAX_THREADS, add_thread, &w, 0);
	return w.ns;
}

/* Threads that ended their process (key: thread id, value: tgid), until
 * their last switch: only then is their own runtime final. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} dying SEC(".maps");

#define TASK_DEAD_STATE 0x80   /* TASK_DEAD in include/linux/sched.h */

static void emit_exit(struct task_struct *task)
{
	struct kx_trace_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost_events, 1);
		return;
	}
	e->type = TRACE_EXIT;
	e->pid = BPF_CORE_READ(task, tgid);
	e->ppid = BPF_CORE_READ(task, group_leader, real_parent, tgid);
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cpu_ns = group_cpu_ns(task);
	/* the children it waited for: each has its own exit event */
	e->children_cpu_ns = BPF_CORE_READ(task, signal, cutime) +
			     BPF_CORE_READ(task, signal, cstime);
	e->exit_code = BPF_CORE_READ(task, exit_code);
	/* set by do_exit() when the group died, from the mm's high-water mark
	 * (pages): the peak of a process too short for any sample */
	e->maxrss_pages = BPF_CORE_READ(task, signal, maxrss);
	e->slot = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, task, group_leader, comm);
	bpf_ringbuf_submit(e, 0);
}

/* Every thread passes here; the process ends with the last one (the group's
 * live count is already down to 0), which need not be its leader.  Its own
 * runtime still lacks the slice it is running (the scheduler adds it at its
 * next switch), so the event waits for its last switch. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid), tid = BPF_CORE_READ(task, pid);

	if (!bpf_map_lookup_elem(&tracked, &tgid))
		return 0;
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;   /* other threads of the process live on */
	bpf_map_delete_elem(&tracked, &tgid);
	if (bpf_map_update_elem(&dying, &tid, &tgid, BPF_ANY) < 0)
		emit_exit(task);   /* no room: a figure a slice short */
	return 0;
}

static __always_inline void count_switch(struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	__u32 *slot = bpf_map_lookup_elem(&tracked, &tgid);

	if (slot)
		__sync_fetch_and_add(&switches[*slot & (KX_TRACE_SLOTS - 1)], 1);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	__u32 tid = BPF_CORE_READ(prev, pid);

	/* its last switch: the scheduler has just added its final slice */
	if ((BPF_CORE_READ(prev, __state) & TASK_DEAD_STATE) &&
	    bpf_map_lookup_elem(&dying, &tid)) {
		bpf_map_delete_elem(&dying, &tid);
		emit_exit(prev);
	}
	count_switch(prev);
	if (BPF_CORE_READ(next, tgid) != BPF_CORE_READ(prev, tgid))
		count_switch(next);
	return 0;
}
