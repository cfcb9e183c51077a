/* trace_event.h - what the BPF program tells the tracer (both sides). */
#ifndef KX_TRACE_EVENT_H
#define KX_TRACE_EVENT_H

enum kx_trace_event_type { TRACE_FORK = 1, TRACE_EXEC = 2, TRACE_EXIT = 3 };

struct kx_trace_event {
	unsigned int type;
	unsigned int pid;           /* tgid */
	unsigned int ppid;
	int exit_code;              /* the kernel's exit_code (wait status) */
	unsigned long long ts_ns;   /* CLOCK_BOOTTIME */
	unsigned long long cpu_ns;
	unsigned long long children_cpu_ns;
	unsigned long long maxrss_pages;   /* exit: its peak resident set */
	unsigned int slot;          /* fork: the child's switch counter */
	char comm[16];
};

/* Switch counters: one per followed process, indexed by the slot that the
 * `tracked` map holds for it.  Slots are handed out round-robin; two
 * processes sharing one only make the sampler read both more often. */
#define KX_TRACE_SLOTS 65536

#endif
