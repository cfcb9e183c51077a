/* tracer.c - process trees sampled from /proc (see tracer.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "trace_event.h"
#include "tracer.h"

#define MAX_CHILDREN 16384

size_t trace_json_string(char *out, size_t len, const char *s)
{
	size_t n = 0;
	if (len < 3)
		return 0;
	out[n++] = '"';
	for (; *s && n + 8 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			/* comm is bytes, not UTF-8: escape what is not ASCII */
			n += (size_t)snprintf(out + n, len - n, "\\u%04x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	out[n++] = '"';
	out[n] = 0;
	return n;
}

/* One write(2): whole lines even when the run is killed.  A failed or short
 * write (a full disk) is counted; a cut line is ended, so the next line
 * stays whole and the audit reports the cut one. */
static void write_row(struct tracer *t, int fd, const char *row, size_t len)
{
	ssize_t n;
	while ((n = write(fd, row, len)) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)len)
		return;
	t->write_errors++;
	t->write_errno = n < 0 ? errno : ENOSPC;
	if (n > 0 && write(fd, "\n", 1) < 0)
		t->write_errno = errno;
}

static void sample_row(struct tracer *t, struct tracked *p, double now,
		       double cpu_ms, long rss_kb);
static void end_row(struct tracer *t, struct tracked *p, double end_ms);
static void flush_rows(struct tracer *t);

static struct tracked *find(struct tracer *t, pid_t pid)
{
	for (size_t i = t->nprocs; i > 0; i--)
		if (t->procs[i - 1].pid == pid && t->procs[i - 1].alive)
			return &t->procs[i - 1];
	return NULL;
}

/* Into the eBPF program's map: its forks and exit are reported from now
 * on; the children it already has are read from /proc at the next tick. */
static void follow(struct tracer *t, struct tracked *p)
{
	__u32 key = (__u32)p->pid;
	__u32 s = __atomic_fetch_add(t->next_slot, 1, __ATOMIC_RELAXED) &
		  (KX_TRACE_SLOTS - 1);
	bpf_map_update_elem(t->map_fd, &key, &s, BPF_ANY);
	p->slot = s;
	p->in_map = 1;
	p->scan_children = 1;
}

void trace_follow_all(struct tracer *t)
{
	for (size_t i = 0; i < t->nprocs; i++)
		if (t->procs[i].alive && !t->procs[i].in_map)
			follow(t, &t->procs[i]);
}

/* slot: the switch counter the eBPF program gave it (a fork it saw), or -1
 * to hand one out here (a root). */
static struct tracked *add(struct tracer *t, const struct trace_proc_stat *st,
			   long slot)
{
	if (t->nprocs == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct tracked *p = realloc(t->procs, cap * sizeof *p);
		if (!p)
			return NULL;
		t->procs = p;
		t->cap = cap;
	}
	struct tracked *p = &t->procs[t->nprocs++];
	memset(p, 0, sizeof *p);
	p->pid = st->pid;
	p->ppid = st->ppid;
	p->start_ms = st->start_ms;
	p->last_ms = st->start_ms;
	p->alive = 1;
	p->stat_fd = trace_proc_open_stat(st->pid);
	snprintf(p->comm, sizeof p->comm, "%s", st->comm);
	p->seen_switches = ~0ULL;   /* read at the next tick */
	if (t->map_fd >= 0 && slot < 0) {
		follow(t, p);
	} else if (slot >= 0) {
		p->slot = (unsigned)slot;
		p->in_map = 1;   /* the program put it there at its fork */
	}
	return p;
}

void trace_child(struct tracer *t, pid_t pid, pid_t ppid, double start_ms,
		  const char *comm, unsigned slot)
{
	struct trace_proc_stat st;
	if (find(t, pid))
		return;
	memset(&st, 0, sizeof st);
	st.pid = pid;
	st.ppid = ppid;
	st.start_ms = start_ms;
	snprintf(st.comm, sizeof st.comm, "%s", comm);
	add(t, &st, slot);
}

static int in_launched_tree(struct tracer *t, const struct trace_proc_stat *st);

void trace_exec(struct tracer *t, pid_t pid, const char *comm)
{
	struct tracked *p = find(t, pid);
	struct trace_proc_stat st;
	if (p) {
		snprintf(p->comm, sizeof p->comm, "%s", comm);
		return;
	}
	/* an exec anywhere: a new root when its name matches */
	if (!t->has_match || regexec(&t->match, comm, 0, NULL, 0) != 0 ||
	    pid == getpid() || trace_proc_read_stat(pid, &st) < 0 ||
	    (t->sentinels[0] && in_launched_tree(t, &st)))
		return;
	snprintf(st.comm, sizeof st.comm, "%s", comm);
	add(t, &st, -1);
}

static void raise_peak(struct tracked *p, long kb)
{
	if (kb > p->peak_kb)
		p->peak_kb = kb;
}

void trace_exit(struct tracer *t, pid_t pid, double end_ms, double cpu_ms,
		long peak_kb)
{
	struct tracked *p = find(t, pid);
	if (!p)
		return;
	raise_peak(p, peak_kb);
	sample_row(t, p, end_ms, cpu_ms, 0);
	flush_rows(t);
	end_row(t, p, end_ms);
}

static void sample_row(struct tracer *t, struct tracked *p, double now,
		       double cpu_ms, long rss_kb)
{
	char row[256];
	double dt = now - p->last_ms;
	double used = cpu_ms - p->cpu_ms;
	if (used < 0)
		used = 0;
	int n = snprintf(row, sizeof row,
			 "{\"ts_ms\":%.0f,\"pid\":%d,\"ppid\":%d,\"dt_ms\":%.3f,"
			 "\"cpu_ms\":%.3f,\"rss_kb\":%ld}\n",
			 now, (int)p->pid, (int)p->ppid, dt < 0 ? 0 : dt, used,
			 rss_kb < 0 ? 0 : rss_kb);
	if (t->batch_cap - t->batch_len < (size_t)n) {
		size_t cap = t->batch_cap ? t->batch_cap * 2 : 65536;
		char *b = realloc(t->batch, cap);
		if (!b) {
			write_row(t, t->samples_fd, row, (size_t)n);
			goto counted;
		}
		t->batch = b;
		t->batch_cap = cap;
	}
	memcpy(t->batch + t->batch_len, row, (size_t)n);
	t->batch_len += (size_t)n;
counted:
	p->busy = used > 0;
	p->rss_kb = rss_kb;
	raise_peak(p, rss_kb);
	p->cpu_ms = cpu_ms;
	p->last_ms = now;
	t->rows++;
}

/* A tick's rows in one write(2): only whole lines reach the file. */
static void flush_rows(struct tracer *t)
{
	if (t->batch_len)
		write_row(t, t->samples_fd, t->batch, t->batch_len);
	t->batch_len = 0;
}

static void end_row(struct tracer *t, struct tracked *p, double end_ms)
{
	char row[512], comm[160];
	trace_json_string(comm, sizeof comm, p->comm);
	int n = snprintf(row, sizeof row,
			 "{\"pid\":%d,\"ppid\":%d,\"comm\":%s,\"start\":%.0f,"
			 "\"end\":%.0f,\"cpu_ms\":%.3f,\"peak_rss_kb\":%ld}\n",
			 (int)p->pid, (int)p->ppid, comm, p->start_ms, end_ms,
			 p->cpu_ms, p->peak_kb);
	write_row(t, t->procs_fd, row, (size_t)n);
	p->alive = 0;
	if (p->stat_fd >= 0)
		close(p->stat_fd);
	p->stat_fd = -1;
}

static void forget(struct tracked *p)
{
	p->alive = 0;
	if (p->stat_fd >= 0)
		close(p->stat_fd);
	p->stat_fd = -1;
}


/* Already followed, or already ended (a zombie its parent has not reaped
 * is still listed among the children). */
static int known(struct tracer *t, const struct trace_proc_stat *st)
{
	for (size_t i = t->nprocs; i > 0; i--) {
		const struct tracked *p = &t->procs[i - 1];
		if (p->pid == st->pid && (p->alive ||
		    (st->start_ms - p->start_ms < 20 && p->start_ms - st->start_ms < 20)))
			return 1;
	}
	return 0;
}

static void discover_children(struct tracer *t, pid_t pid, int threads)
{
	static pid_t kids[MAX_CHILDREN];
	int n = trace_proc_children(pid, threads, kids, MAX_CHILDREN);
	for (int i = 0; i < n; i++) {
		struct trace_proc_stat st;
		if (find(t, kids[i]) || trace_proc_read_stat(kids[i], &st) < 0 ||
		    trace_proc_ended(&st) || known(t, &st))
			continue;
		struct tracked *c = add(t, &st, -1);
		if (c)
			c->ppid = pid;
	}
}

int trace_watch(struct tracer *t, pid_t pid)
{
	struct trace_proc_stat st;
	if (find(t, pid))
		return 0;
	if (trace_proc_read_stat(pid, &st) < 0)
		return -ESRCH;
	/* followed first (under eBPF: in the map, so a fork from now on is
	 * reported), then the tree it already has, from /proc, breadth first */
	size_t first = t->nprocs;
	if (!add(t, &st, -1))
		return -ENOMEM;
	for (size_t i = first; i < t->nprocs; i++) {
		t->procs[i].scan_children = 0;
		discover_children(t, t->procs[i].pid, 0);
	}
	return 0;
}

void trace_set_sentinels(struct tracer *t, const char *dir)
{
	snprintf(t->sentinels, sizeof t->sentinels, "%s", dir ? dir : "");
}

void trace_sentinel(struct tracer *t, pid_t pid, double start_ms, int on)
{
	char path[320], text[32];
	if (!t->sentinels[0])
		return;
	snprintf(path, sizeof path, "%s/%d", t->sentinels, (int)pid);
	if (!on) {
		unlink(path);
		return;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	int n = snprintf(text, sizeof text, "%.0f\n", start_ms);
	write_row(t, fd, text, (size_t)n);
	close(fd);
}

/* Whether pid or one of its ancestors is a command some tracer launched
 * (a PID file whose start time is that process's: pids are reused). */
static int in_launched_tree(struct tracer *t, const struct trace_proc_stat *st)
{
	struct trace_proc_stat cur = *st;
	for (int hops = 0; hops < 64 && cur.pid > 1; hops++) {
		char path[320], text[32];
		snprintf(path, sizeof path, "%s/%d", t->sentinels, (int)cur.pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, text, sizeof text - 1);
			close(fd);
			text[n > 0 ? n : 0] = 0;
			double start = atof(text);
			if (start - cur.start_ms < 20 && cur.start_ms - start < 20)
				return 1;
		}
		if (cur.ppid <= 1 || trace_proc_read_stat(cur.ppid, &cur) < 0)
			break;
	}
	return 0;
}

void trace_scan_matches(struct tracer *t)
{
	if (!t->has_match)
		return;
	DIR *d = opendir("/proc");
	struct dirent *e;
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		pid_t pid = (pid_t)atoi(e->d_name);
		struct trace_proc_stat st;
		if (pid == getpid() || find(t, pid) ||
		    trace_proc_read_stat(pid, &st) < 0 || trace_proc_ended(&st) ||
		    known(t, &st))
			continue;
		if (regexec(&t->match, st.comm, 0, NULL, 0) != 0)
			continue;
		if (t->sentinels[0] && in_launched_tree(t, &st))
			continue;   /* its launcher's tracer follows it */
		add(t, &st, -1);
	}
	closedir(d);
}

void trace_tick(struct tracer *t)
{
	if (t->drain)
		t->drain(t->drain_ud);   /* exits first: their ends are exact */
	double now = trace_proc_now_ms();
	if (t->has_match && !(t->execs_reported && t->scanned))
		trace_scan_matches(t);   /* once, then exec events find them */
	t->scanned = 1;
	/* new entries are appended while we walk: walk by index */
	for (size_t i = 0; i < t->nprocs; i++) {
		struct tracked *p = &t->procs[i];
		if (!p->alive)
			continue;
		if (t->switches && !p->ended_ms) {
			unsigned long long c = t->switches[p->slot];
			if (c == p->seen_switches && !p->busy) {
				/* it has not run since its last row */
				if (now - p->last_ms < TRACE_IDLE_ROW_MS)
					continue;
				if (now - p->read_ms < TRACE_IDLE_READ_MS) {
					/* same CPU time; RSS as last read */
					sample_row(t, p, now, p->cpu_ms, p->rss_kb);
					continue;
				}
			}
			p->seen_switches = c;
		}
		struct trace_proc_stat st;
		int r = p->stat_fd >= 0 ? trace_proc_pread_stat(p->stat_fd, &st) :
			trace_proc_read_stat(p->pid, &st);
		int gone = r < 0 || st.start_ms > p->start_ms + 20;
		if (gone && p->launched) {
			forget(p);   /* its launcher has written its end */
			continue;
		}
		if (!gone && trace_proc_ended(&st) && p->launched)
			continue;   /* its launcher will write its end */
		double at = now;
		if ((gone || trace_proc_ended(&st)) && t->map_fd >= 0) {
			/* its exit event has the exact end, unless it ended
			 * before it was in the map (or the event was lost):
			 * then, after a while, /proc has the end */
			if (!p->ended_ms)
				p->ended_ms = now;
			if (now - p->ended_ms < TRACE_EXIT_WAIT_MS)
				continue;
			at = p->ended_ms;
		}
		if (gone) {
			end_row(t, p, at);
			continue;
		}
		/* a launched command before its exec is a copy of kxrun (on a
		 * loaded machine for a while): that memory is not the
		 * command's, and beside its child's in one tick it was counted
		 * twice */
		if (p->launched && !p->execed) {
			if (trace_proc_execed(p->pid) == 0)
				continue;
			p->execed = 1;
		}
		/* /proc source: its peak so far, whenever it ran (the kernel's
		 * figure at its end is not to be had for a descendant) */
		if (t->map_fd < 0 && (p->read_ms == 0 || st.cpu_ms != p->cpu_ms))
			raise_peak(p, trace_proc_hwm_kb(p->pid));
		p->read_ms = now;
		/* its name now: a launched command's was kxrun's until exec */
		snprintf(p->comm, sizeof p->comm, "%s", st.comm);
		sample_row(t, p, at, st.cpu_ms, st.rss_kb);
		/* on a CPU now: it may run on without a context switch, so an
		 * unchanged switch counter will not prove it idle */
		if (st.state == 'R')
			p->busy = 1;
		if (trace_proc_ended(&st)) {
			end_row(t, &t->procs[i], at);
			continue;
		}
		/* eBPF reports forks itself, once it follows a process */
		if (t->map_fd < 0 || t->procs[i].scan_children) {
			t->procs[i].scan_children = 0;
			discover_children(t, t->procs[i].pid, st.threads);
		}
	}
	flush_rows(t);
}

void trace_finish(struct tracer *t, pid_t pid,
		  const struct trace_proc_stat *st, long peak_kb)
{
	struct tracked *p = find(t, pid);
	double now = trace_proc_now_ms();
	if (!p)
		return;
	raise_peak(p, peak_kb);
	snprintf(p->comm, sizeof p->comm, "%s", st->comm);
	/* the zombie's own time (all its threads); its children have rows of
	 * their own */
	sample_row(t, p, now, st->cpu_ms, 0);
	flush_rows(t);
	end_row(t, p, now);
}

static void on_tick(uv_timer_t *h)
{
	trace_tick(h->data);
}

int trace_compile_match(regex_t *re, const char *pattern, char *err,
			size_t errlen)
{
	int r = regcomp(re, pattern, REG_EXTENDED | REG_NOSUB);
	if (r == 0)
		return 0;
	char msg[128];
	regerror(r, re, msg, sizeof msg);
	snprintf(err, errlen, "bad match pattern '%s': %s", pattern, msg);
	return -EINVAL;
}

int trace_start(struct tracer *t, const char *samples_path,
		 const char *procs_path, double interval_s, const char *match,
		 char *err, size_t errlen)
{
	memset(t, 0, sizeof *t);
	t->samples_fd = t->procs_fd = -1;
	t->map_fd = -1;
	if (match && *match) {
		if (trace_compile_match(&t->match, match, err, errlen) < 0)
			return -EINVAL;
		t->has_match = 1;
	}
	t->samples_fd = open(samples_path, O_WRONLY | O_CREAT | O_APPEND |
			     O_CLOEXEC, 0644);
	if (t->samples_fd < 0)
		goto fail;
	t->procs_fd = open(procs_path, O_WRONLY | O_CREAT | O_APPEND |
			   O_CLOEXEC, 0644);
	if (t->procs_fd < 0)
		goto fail;
	t->interval_ms = interval_s * 1000.0;
	uv_timer_init(kx_loop(), &t->timer);
	t->timer.data = t;
	uint64_t ms = (uint64_t)(t->interval_ms + 0.5);
	uv_timer_start(&t->timer, on_tick, ms ? ms : 1, ms ? ms : 1);
	t->running = 1;
	return 0;
fail:;
	int e = errno;
	snprintf(err, errlen, "%s: %s", t->samples_fd < 0 ? samples_path :
		 procs_path, strerror(e));
	if (t->samples_fd >= 0)
		close(t->samples_fd);
	if (t->has_match)
		regfree(&t->match);
	t->has_match = 0;
	return -e;
}

/* Whether a followed process has ended (in /proc) with no exit event yet. */
static int awaiting_exit(const struct tracked *p)
{
	struct trace_proc_stat st;
	if (!p->alive || p->launched || p->ended_ms)
		return 0;   /* an ended_ms one will get none */
	return trace_proc_read_stat(p->pid, &st) < 0 ||
	       st.start_ms > p->start_ms + 20 || trace_proc_ended(&st);
}

/* Under eBPF, before the last tick: the exit events of processes that have
 * ended, up to TRACE_EXIT_EVENT_WAIT_MS. */
static void await_exits(struct tracer *t)
{
	double until = trace_proc_now_ms() + TRACE_EXIT_EVENT_WAIT_MS;
	if (!t->drain || t->map_fd < 0)
		return;
	for (;;) {
		int pending = 0;
		t->drain(t->drain_ud);
		for (size_t i = 0; i < t->nprocs && !pending; i++)
			pending = awaiting_exit(&t->procs[i]);
		if (!pending || trace_proc_now_ms() >= until)
			return;
		usleep(1000);
	}
}

void trace_stop(struct tracer *t, uv_close_cb closed)
{
	if (!t->running)
		return;
	await_exits(t);
	trace_tick(t);
	t->running = 0;
	uv_close((uv_handle_t *)&t->timer, closed);
	double now = trace_proc_now_ms();
	for (size_t i = 0; i < t->nprocs; i++)
		if (t->procs[i].alive && !t->procs[i].launched)
			end_row(t, &t->procs[i], t->procs[i].ended_ms ?
				t->procs[i].ended_ms : now);
	flush_rows(t);
	for (size_t i = 0; i < t->nprocs; i++)
		forget(&t->procs[i]);
	free(t->procs);
	t->procs = NULL;
	t->nprocs = t->cap = 0;
	close(t->samples_fd);
	close(t->procs_fd);
	free(t->batch);
	t->batch = NULL;
	t->batch_len = t->batch_cap = 0;
	if (t->has_match)
		regfree(&t->match);
	t->has_match = 0;
}

int trace_following(struct tracer *t, pid_t pid)
{
	return find(t, pid) != NULL;
}

size_t trace_live(const struct tracer *t)
{
	size_t n = 0;
	for (size_t i = 0; i < t->nprocs; i++)
		n += t->procs[i].alive;
	return n;
}
