/* procfs.c - reading /proc for the tracer (see procfs.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "procfs.h"

static double ts_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

double trace_proc_now_ms(void)
{
	return ts_ms(CLOCK_REALTIME);
}

double trace_proc_boot_ms(void)
{
	static double boot;
	if (boot == 0) {
		/* the smallest difference of a few reads: least disturbed */
		double best = 0;
		for (int i = 0; i < 5; i++) {
			double r = ts_ms(CLOCK_REALTIME) - ts_ms(CLOCK_BOOTTIME);
			if (i == 0 || r < best)
				best = r;
		}
		boot = best;
	}
	return boot;
}

static long clk_tck(void)
{
	static long tck;
	if (!tck)
		tck = sysconf(_SC_CLK_TCK);
	return tck > 0 ? tck : 100;
}

int trace_proc_parse_stat(const char *text, struct trace_proc_stat *st)
{
	const char *open = strchr(text, '(');
	const char *close = strrchr(text, ')');
	if (!open || !close || close < open)
		return -EINVAL;
	memset(st, 0, sizeof *st);
	st->pid = (pid_t)atoi(text);
	size_t n = (size_t)(close - open - 1);
	if (n >= sizeof st->comm)
		n = sizeof st->comm - 1;
	memcpy(st->comm, open + 1, n);
	st->comm[n] = 0;
	/* fields from 3 (state) on, after ") " */
	unsigned long long utime, stime, starttime;
	long long cutime, cstime, rss = 0;
	int ppid, threads;
	char state;
	int k = sscanf(close + 2,
		       "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
		       "%lld %lld %*d %*d %d %*d %llu %*u %lld",
		       &state, &ppid, &utime, &stime, &cutime, &cstime,
		       &threads, &starttime, &rss);
	if (k < 8)
		return -EINVAL;
	static long page_kb;
	if (!page_kb)
		page_kb = sysconf(_SC_PAGESIZE) / 1024;
	st->rss_kb = (long)rss * page_kb;
	double tick_ms = 1000.0 / (double)clk_tck();
	st->state = state;
	st->ppid = ppid;
	st->threads = threads;
	st->cpu_ms = (double)(utime + stime) * tick_ms;
	st->children_cpu_ms = (double)(cutime + cstime) * tick_ms;
	st->start_ms = trace_proc_boot_ms() + (double)starttime * tick_ms;
	return 0;
}

static ssize_t read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	int e = errno;
	close(fd);
	if (n < 0)
		return -e;
	buf[n] = 0;
	return n;
}

int trace_proc_read_stat(pid_t pid, struct trace_proc_stat *st)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	ssize_t n = read_small(path, buf, sizeof buf);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return -ENOENT;
	return trace_proc_parse_stat(buf, st);
}

int trace_proc_open_stat(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int trace_proc_pread_stat(int fd, struct trace_proc_stat *st)
{
	char buf[1024];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	if (n < 0)
		return -errno;   /* ESRCH once the process is reaped */
	if (n == 0)
		return -ENOENT;
	buf[n] = 0;
	return trace_proc_parse_stat(buf, st);
}

long trace_proc_hwm_kb(pid_t pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if (read_small(path, buf, sizeof buf) <= 0)
		return -1;
	const char *at = strstr(buf, "\nVmHWM:");
	return at ? strtol(at + 8, NULL, 10) : -1;
}

long trace_proc_rss_kb(pid_t pid)
{
	char path[64], buf[256];
	long size, resident;
	snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
	if (read_small(path, buf, sizeof buf) <= 0)
		return -1;
	if (sscanf(buf, "%ld %ld", &size, &resident) != 2)
		return -1;
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int trace_proc_execed(pid_t pid)
{
	char path[64];
	unsigned long v[128];
	snprintf(path, sizeof path, "/proc/%d/auxv", (int)pid);
	ssize_t n = read_small(path, (char *)v, sizeof v);
	if (n < 0)
		return -1;
	for (size_t i = 0; i + 1 < (size_t)n / sizeof v[0] && v[i] != AT_NULL; i += 2)
		if (v[i] == AT_RANDOM)
			return v[i + 1] != getauxval(AT_RANDOM);
	return 1;
}

/* Appends the pids listed in a children file to out (from n); returns the
 * new count.  The file is read to its end: a shell with a thousand children
 * lists more than a page. */
static int children_file(const char *path, pid_t *out, int n, int max)
{
	static char buf[1 << 16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0;
	ssize_t got;
	if (fd < 0)
		return n;
	while (len < sizeof buf - 1 &&
	       (got = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)got;
	close(fd);
	buf[len] = 0;
	char *p = buf, *end;
	while (n < max) {
		long c = strtol(p, &end, 10);
		if (end == p)
			break;
		out[n++] = (pid_t)c;
		p = end;
	}
	return n;
}

int trace_proc_children(pid_t pid, int threads, pid_t *out, int max)
{
	char path[128];
	int n = 0;
	if (threads == 1) {
		/* one thread: its own list, without reading the task directory */
		snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid,
			 (int)pid);
		if (access(path, F_OK) < 0)
			return -errno;
		return children_file(path, out, 0, max);
	}
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%d/task/%s/children",
			 (int)pid, e->d_name);
		n = children_file(path, out, n, max);
	}
	closedir(d);
	return n;
}

pid_t trace_proc_flock_holder(const char *path)
{
	struct stat st;
	char line[256];
	pid_t holder = 0;
	if (stat(path, &st) < 0)
		return -errno;
	FILE *f = fopen("/proc/locks", "re");
	if (!f)
		return -errno;
	/* "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"; a waiter's line
	 * reads "1: -> FLOCK ..." and is skipped */
	while (!holder && fgets(line, sizeof line, f)) {
		char kind[16];
		int pid;
		unsigned maj, min;
		unsigned long ino;
		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%lu", kind, &pid,
			   &maj, &min, &ino) == 5 && strcmp(kind, "FLOCK") == 0 &&
		    ino == (unsigned long)st.st_ino && maj == major(st.st_dev) &&
		    min == minor(st.st_dev))
			holder = (pid_t)pid;
	}
	fclose(f);
	return holder;
}
