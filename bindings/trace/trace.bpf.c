// SPDX-License-Identifier: GPL-2.0
/*
 * trace.bpf.c - fork, exec and exit of the process trees kxrun follows.
 *
 * `tracked` holds the tgids the user asked for (roots); a fork of a tracked
 * process adds the child, so a whole tree is followed and nothing else.
 * Events go to a ring buffer that the host's loop drains.
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
	__type(key, __u32);
	__type(value, __u8);
} tracked SEC(".maps");

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
	__u8 one = 1;

	if (pid != tgid || !bpf_map_lookup_elem(&tracked, &ptgid))
		return 0;   /* a thread, or not ours */
	bpf_map_update_elem(&tracked, &tgid, &one, BPF_ANY);
	struct kx_trace_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->type = TRACE_FORK;
	e->pid = tgid;
	e->ppid = ptgid;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cpu_ns = 0;
	e->children_cpu_ns = 0;
	e->exit_code = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, child, comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* tp_btf throughout: typed arguments, and no tracefs mount needed */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);

	if (!bpf_map_lookup_elem(&tracked, &tgid))
		return 0;
	struct kx_trace_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->type = TRACE_EXEC;
	e->pid = tgid;
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cpu_ns = 0;
	e->children_cpu_ns = 0;
	e->exit_code = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid), pid = BPF_CORE_READ(task, pid);

	if (pid != tgid || !bpf_map_lookup_elem(&tracked, &tgid))
		return 0;   /* a thread of the process, or not ours */
	bpf_map_delete_elem(&tracked, &tgid);
	struct kx_trace_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->type = TRACE_EXIT;
	e->pid = tgid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->ts_ns = bpf_ktime_get_boot_ns();
	/* the leader's own time, that of its dead threads, and that of the
	 * children it waited for */
	e->cpu_ns = BPF_CORE_READ(task, se.sum_exec_runtime) +
		    BPF_CORE_READ(task, signal, sum_sched_runtime);
	e->children_cpu_ns = BPF_CORE_READ(task, signal, cutime) +
			     BPF_CORE_READ(task, signal, cstime);
	e->exit_code = BPF_CORE_READ(task, exit_code);
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
