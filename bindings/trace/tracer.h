/*
 * tracer.h - follows process trees and samples them from /proc.
 *
 * A tracer owns two append-only JSON-lines files: samples
 * (ts_ms, pid, ppid, dt_ms, cpu_ms, rss_kb; cpu_ms is the CPU used since the
 * previous row of that pid) and process lives (pid, ppid, comm, start, end,
 * cpu_ms, peak_rss_kb).  Each row is one write(2) on an O_APPEND descriptor, so a run
 * killed at any point leaves only whole lines.
 *
 * Roots come from tracer_launch (a command it starts itself), trace_watch
 * (an existing pid) or a name pattern; their descendants are found from
 * /proc/PID/task/TID/children at every tick (or from eBPF fork events).
 * Each pid's rows carry its own CPU time (all its threads, never its
 * children's, which have rows of their own), so a tree's rows add up to the
 * tree's CPU time once.  A launched command's end is exact: its zombie is
 * read before it is reaped (or its eBPF exit event comes first).
 */
#ifndef KX_TRACE_TRACER_H
#define KX_TRACE_TRACER_H

#include <regex.h>
#include <sys/types.h>

#include "kx.h"
#include "procfs.h"

struct tracked {
	pid_t pid, ppid;
	double start_ms;
	double cpu_ms;       /* cumulative at the last row */
	double last_ms;      /* time of the last row */
	char comm[64];
	int alive;
	int launched;        /* its end is recorded by the launch path */
	int execed;          /* launched: seen after its exec */
	int stat_fd;         /* /proc/PID/stat kept open, or -1 */
	unsigned slot;       /* its eBPF switch counter */
	unsigned long long seen_switches;   /* the counter at the last read */
	int busy;            /* used CPU in its last window */
	long rss_kb;         /* at its last row */
	long peak_kb;        /* the largest resident set known of it: its
			      * rows, VmHWM (/proc source), the kernel's
			      * figure at its end */
	double read_ms;      /* when /proc was last read for it */
	int scan_children;   /* a root under eBPF: its existing tree is read
			      * from /proc once, then forks are reported */
	int in_map;          /* in the eBPF program's map: its forks and its
			      * exit are reported */
	double ended_ms;     /* under eBPF, when /proc first showed it ended
			      * with no exit event yet */
};

struct tracer {
	uv_timer_t timer;
	int samples_fd, procs_fd;
	double interval_ms;
	int has_match;
	regex_t match;
	struct tracked *procs;
	size_t nprocs, cap;
	int running;
	unsigned long rows;
	unsigned long write_errors;   /* rows lost to failed writes */
	int write_errno;              /* why, the last time */
	int map_fd;           /* the BPF map of followed tgids, or -1 */
	/* the eBPF source's context-switch counters (mapped memory), or
	 * NULL: a process whose counter has not moved and that used no CPU in
	 * its last window has not run since, so it is not read; its next row
	 * covers the whole quiet time (dt_ms), at least every TRACE_IDLE_ROW_MS. */
	volatile unsigned long long *switches;
	unsigned *next_slot;
	/* every exec is reported (trace_exec): `match` needs no /proc scan
	 * after the first tick */
	int execs_reported;
	volatile unsigned long long *lost_events;   /* eBPF events dropped */
	int scanned;
	char *batch;          /* a tick's sample rows, written at once */
	size_t batch_len, batch_cap;
	void (*drain)(void *);  /* the BPF source, drained before each tick */
	void *drain_ud;
	/* a directory of PID files, one per launched command while it runs
	 * (its content: the start time in ms), shared by every tracer of a
	 * run: a process found by `match` inside such a tree is left to the
	 * tracer that launched it, so no pid gets rows from two writers */
	char sentinels[256];
};

/* Opens the two files (created or appended) and starts sampling every
 * interval_s on the loop.  match may be NULL.  0 or -errno (err says). */
int trace_start(struct tracer *t, const char *samples_path,
		 const char *procs_path, double interval_s, const char *match,
		 char *err, size_t errlen);

/* Compiles a `match` pattern (POSIX extended) into re: 0, or -EINVAL with
 * the reason in err. */
int trace_compile_match(regex_t *re, const char *pattern, char *err,
			size_t errlen);

/* Uses dir for the PID files of launched commands (see sentinels). */
void trace_set_sentinels(struct tracer *t, const char *dir);

/* Marks pid (started at start_ms) as launched by this tracer, or unmarks. */
void trace_sentinel(struct tracer *t, pid_t pid, double start_ms, int on);

/* Follows pid and its descendants: the tree it has now is taken at once
 * (a loaded machine may delay the first tick past its end).  0, or -ESRCH
 * when there is no such process. */
int trace_watch(struct tracer *t, pid_t pid);

/* Looks for processes whose name matches now, without waiting for the
 * first tick (a start under load may take long enough for them to end). */
void trace_scan_matches(struct tracer *t);

/* Under eBPF, once the program is attached: puts the processes followed
 * so far (found from /proc) into its map, so their forks and exits are
 * reported from now on. */
void trace_follow_all(struct tracer *t);

/* From the BPF source: a child forked by a followed process; an exec; an
 * exit with the kernel's final CPU time of the process (all its threads). */
void trace_child(struct tracer *t, pid_t pid, pid_t ppid, double start_ms,
		  const char *comm, unsigned slot);
void trace_exec(struct tracer *t, pid_t pid, const char *comm);   /* any pid */
void trace_exit(struct tracer *t, pid_t pid, double end_ms, double cpu_ms,
		long peak_kb);

/* A quiet process gets a row at least this often (ms); under eBPF, where its
 * switch counter proves it has not run, from the figures of its last row,
 * reading /proc for its RSS only this often. */
#define TRACE_IDLE_ROW_MS 1000.0
#define TRACE_IDLE_READ_MS 10000.0

/* Under eBPF, a followed process seen ended in /proc whose exit event has
 * not come this long after (it ended before it was in the map, or the ring
 * buffer was full) is ended from /proc, as the /proc source would. */
#define TRACE_EXIT_WAIT_MS 1000.0

/* A process's exit event is sent at its last thread's final context
 * switch, which on a loaded machine can wait behind other work for tens of
 * ms after its parent was told: the launcher and trace_stop wait this long
 * at most for it, so that the figures are the kernel's. */
#define TRACE_EXIT_EVENT_WAIT_MS 500.0

/* Samples every live process now (also called by the timer). */
void trace_tick(struct tracer *t);

/* Records the end of a launched process from its zombie's stat (its own
 * CPU time) and wait4's ru_maxrss (KiB); nothing when its eBPF exit event
 * has already ended it. */
void trace_finish(struct tracer *t, pid_t pid,
		  const struct trace_proc_stat *st, long peak_kb);

/* Stops sampling (a last tick first), ends the processes still followed,
 * closes the files and frees the list (rows stays); closed runs once the
 * loop has let go of the tracer's memory. */
void trace_stop(struct tracer *t, uv_close_cb closed);

/* Whether pid is followed and has not ended. */
int trace_following(struct tracer *t, pid_t pid);

/* Live tracked processes. */
size_t trace_live(const struct tracer *t);

/* Writes s as a JSON string (with quotes) into out; returns its length. */
size_t trace_json_string(char *out, size_t len, const char *s);

#endif
