/*
 * procfs.h - what /proc says of a process, in the units traces use.
 *
 * Times are ms since the epoch (process start from its starttime in clock
 * ticks plus the boot time, which is taken with sub-millisecond precision
 * from CLOCK_REALTIME - CLOCK_BOOTTIME, not /proc/stat's whole seconds);
 * CPU time in ms; memory in KiB.
 */
#ifndef KX_TRACE_PROCFS_H
#define KX_TRACE_PROCFS_H

#include <stdint.h>
#include <sys/types.h>

struct trace_proc_stat {
	pid_t pid, ppid;
	char state;             /* R S D Z T ... (of the leader thread) */
	int threads;            /* num_threads */
	char comm[64];
	double cpu_ms;          /* utime + stime of the process itself */
	double children_cpu_ms; /* cutime + cstime: its waited-for children */
	double start_ms;        /* ms since the epoch */
	long rss_kb;            /* resident set (stat's rss field) */
};

/* Ended: a zombie with no thread left.  A process whose leader thread left
 * first (pthread_exit) shows state Z while its other threads run on. */
static inline int trace_proc_ended(const struct trace_proc_stat *st)
{
	return st->state == 'Z' && st->threads <= 1;
}

/* Boot time, ms since the epoch. */
double trace_proc_boot_ms(void);

/* Wall clock, ms since the epoch. */
double trace_proc_now_ms(void);

/* Parses the text of /proc/PID/stat (comm may hold spaces and parens). */
int trace_proc_parse_stat(const char *text, struct trace_proc_stat *st);

/* Reads /proc/PID/stat; 0, or -errno (ENOENT once the process is gone). */
int trace_proc_read_stat(pid_t pid, struct trace_proc_stat *st);

/* The same through a descriptor kept open on /proc/PID/stat (pread at 0
 * gives fresh figures: one system call a sample). */
int trace_proc_open_stat(pid_t pid);
int trace_proc_pread_stat(int fd, struct trace_proc_stat *st);

/* The peak resident set so far (VmHWM of /proc/PID/status) in KiB; -1 when
 * gone. */
long trace_proc_hwm_kb(pid_t pid);

/* Resident set in KiB from /proc/PID/statm; -1 when gone. */
long trace_proc_rss_kb(pid_t pid);

/* Whether pid, forked from this process, has exec'd since: 1 (its auxv is
 * no longer ours: AT_RANDOM points elsewhere), 0 (not yet: its memory is
 * still a copy of ours), -1 when gone. */
int trace_proc_execed(pid_t pid);

/* Children of every thread of pid (from /proc/PID/task/TID/children): up
 * to max into out; returns how many, or -errno.  threads: how many it has
 * (stat's num_threads; 1 reads the leader's list alone, 0 if unknown). */
int trace_proc_children(pid_t pid, int threads, pid_t *out, int max);

/* The process holding a flock(2) lock on path, from the kernel's table
 * (/proc/locks): its pid, 0 when nobody holds one, or -errno. */
pid_t trace_proc_flock_holder(const char *path);

#endif
