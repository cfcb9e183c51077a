/* bpfsrc.c - the eBPF source (see bpfsrc.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpfsrc.h"

#ifdef KX_TRACE_NO_BPF

struct trace_ebpf *trace_ebpf_open(struct tracer *t, char *err, size_t errlen)
{
	(void)t;
	snprintf(err, errlen, "kxrun was built without BTF, so without its "
		 "eBPF program");
	return NULL;
}

const char *trace_ebpf_log(void)
{
	return "";
}

void trace_ebpf_drain(struct trace_ebpf *b)
{
	(void)b;
}

void trace_ebpf_close(struct trace_ebpf *b)
{
	(void)b;
}

#else

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "trace.skel.h"
#include "trace_event.h"

struct trace_ebpf {
	uv_poll_t poll;   /* first: freed from its close callback */
	struct trace_bpf *skel;
	struct ring_buffer *rb;
	struct tracer *t;
	long page_kb;
};

static int on_event(void *ctx, void *data, size_t len)
{
	struct trace_ebpf *b = ctx;
	const struct kx_trace_event *e = data;
	if (len < sizeof *e)
		return 0;
	double ts_ms = trace_proc_boot_ms() + (double)e->ts_ns / 1e6;
	char comm[sizeof e->comm + 1];
	memcpy(comm, e->comm, sizeof e->comm);
	comm[sizeof e->comm] = 0;
	switch (e->type) {
	case TRACE_FORK:
		trace_child(b->t, (pid_t)e->pid, (pid_t)e->ppid, ts_ms, comm,
			     e->slot);
		break;
	case TRACE_EXEC:
		trace_exec(b->t, (pid_t)e->pid, comm);
		break;
	case TRACE_EXIT:
		/* the process's own time: its children have rows of their own */
		trace_exit(b->t, (pid_t)e->pid, ts_ms, (double)e->cpu_ns / 1e6,
			   (long)e->maxrss_pages * b->page_kb);
		break;
	}
	return 0;
}

/* What libbpf said during the last open (the verifier's log among it),
 * for the error message and for KXRUN_LOG=debug.  Opens run on the loop
 * thread only. */
static char said[1 << 16];
static size_t said_len;

static int capture(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	if (said_len < sizeof said - 1) {
		int n = vsnprintf(said + said_len, sizeof said - said_len, fmt,
				  ap);
		if (n > 0)
			said_len += (size_t)n < sizeof said - said_len ?
				    (size_t)n : sizeof said - said_len - 1;
	}
	return 0;
}

const char *trace_ebpf_log(void)
{
	return said;
}

/* Why the program did not load, as precisely as can be told: the
 * verifier's last words when it refused the program, else the missing
 * privilege or kernel feature, else libbpf's last line. */
static void explain(char *err, size_t errlen, int e)
{
	const char *begin = strstr(said, "-- BEGIN PROG LOAD LOG --");
	const char *end = begin ? strstr(begin, "-- END PROG LOAD LOG --") : NULL;
	if (begin && end) {
		/* the program's name: "prog 'NAME': -- BEGIN ..." */
		const char *name = begin;
		while (name > said && name[-1] != '\n')
			name--;
		const char *q = strstr(name, "prog '");
		int nlen = q && q < begin ? (int)strcspn(q + 6, "'") : 0;
		/* its last lines, up to the END marker's line */
		while (end > begin && end[-1] != '\n')
			end--;
		while (end > begin && (end[-1] == '\n' || end[-1] == ' '))
			end--;
		const char *tail = end;
		for (int lines = 0; tail > begin && lines < 8; tail--)
			if (tail[-1] == '\n')
				lines++;
		while (tail < end && *tail == '\n')
			tail++;
		int tlen = (int)(end - tail);
		snprintf(err, errlen, "BPF load refused: the verifier rejected "
			 "program '%.*s' (%s); its log ends:\n%.*s", nlen,
			 q ? q + 6 : "", strerror(e), tlen, tail);
	} else if (geteuid() != 0) {
		snprintf(err, errlen, "BPF load refused: %s (not root: root is "
			 "needed for eBPF)", strerror(e));
	} else if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
		snprintf(err, errlen, "BPF load refused: %s (the kernel has no "
			 "BTF: /sys/kernel/btf/vmlinux is missing)", strerror(e));
	} else {
		/* libbpf's last line */
		size_t n = said_len;
		while (n > 0 && said[n - 1] == '\n')
			n--;
		const char *last = said + n;
		while (last > said && last[-1] != '\n')
			last--;
		snprintf(err, errlen, "BPF load refused: %s%s%.*s", strerror(e),
			 last < said + n ? "; libbpf: " : "",
			 (int)(said + n - last), last);
	}
}

static void on_ready(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	trace_ebpf_drain((struct trace_ebpf *)h);
}

struct trace_ebpf *trace_ebpf_open(struct tracer *t, char *err, size_t errlen)
{
	struct trace_ebpf *b = calloc(1, sizeof *b);
	int r;
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	said_len = 0;
	said[0] = 0;
	libbpf_set_print(capture);
	b->t = t;
	b->page_kb = sysconf(_SC_PAGESIZE) / 1024;
	b->skel = trace_bpf__open_and_load();
	if (!b->skel) {
		explain(err, errlen, errno);
		goto fail;
	}
	r = trace_bpf__attach(b->skel);
	if (r) {
		snprintf(err, errlen, "BPF attach refused: %s", strerror(-r));
		goto fail;
	}
	b->rb = ring_buffer__new(bpf_map__fd(b->skel->maps.events), on_event,
				 b, NULL);
	if (!b->rb) {
		snprintf(err, errlen, "BPF ring buffer: %s", strerror(errno));
		goto fail;
	}
	if (uv_poll_init(kx_loop(), &b->poll, ring_buffer__epoll_fd(b->rb)) < 0) {
		snprintf(err, errlen, "BPF ring buffer cannot join the loop");
		goto fail;
	}
	uv_poll_start(&b->poll, UV_READABLE, on_ready);
	t->map_fd = bpf_map__fd(b->skel->maps.tracked);
	t->switches = b->skel->bss->switches;
	t->next_slot = &b->skel->bss->next_slot;
	t->lost_events = &b->skel->bss->lost_events;
	if (t->has_match) {
		b->skel->bss->report_all_execs = 1;
		t->execs_reported = 1;
	}
	trace_follow_all(t);   /* those found before the program was there */
	return b;
fail:
	if (b->rb)
		ring_buffer__free(b->rb);
	if (b->skel)
		trace_bpf__destroy(b->skel);
	free(b);
	return NULL;
}

void trace_ebpf_drain(struct trace_ebpf *b)
{
	if (b && b->rb)
		ring_buffer__consume(b->rb);
}

static void closed(uv_handle_t *h)
{
	free(h);
}

void trace_ebpf_close(struct trace_ebpf *b)
{
	if (!b)
		return;
	trace_ebpf_drain(b);
	b->t->map_fd = -1;
	b->t->switches = NULL;
	b->t->lost_events = NULL;
	b->t->execs_reported = 0;
	b->t->next_slot = NULL;
	ring_buffer__free(b->rb);
	trace_bpf__destroy(b->skel);
	uv_poll_stop(&b->poll);
	uv_close((uv_handle_t *)&b->poll, closed);
}

#endif
