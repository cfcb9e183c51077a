/*
 * bpfsrc.h - the eBPF source of a tracer: fork, exec and exit of followed
 * trees from tracepoints, through a ring buffer drained on the loop (its
 * epoll descriptor joins the loop; no polling thread).
 */
#ifndef KX_TRACE_BPFSRC_H
#define KX_TRACE_BPFSRC_H

#include <stddef.h>

#include "tracer.h"

struct trace_ebpf;

/* Loads and attaches the program and feeds t from its events.  NULL with a
 * reason in err when BPF cannot be used (not root, no BTF, refused...). */
struct trace_ebpf *trace_ebpf_open(struct tracer *t, char *err, size_t errlen);

/* What libbpf printed during the last trace_ebpf_open (the verifier's log
 * when it refused the program): for KXRUN_LOG=debug. */
const char *trace_ebpf_log(void);

/* Drains pending events into the tracer now. */
void trace_ebpf_drain(struct trace_ebpf *b);

/* Detaches and frees (after its loop handle is closed). */
void trace_ebpf_close(struct trace_ebpf *b);

#endif
