/*
 * vtime.c - kx.vtime controller core (see vtime.h).
 */
#include "vtime.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FREEZER_ROOT "/sys/fs/cgroup/freezer"

static int nexp;

int64_t vt_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Where cgroup2 is mounted (first in /proc/self/mounts), or 0. */
static int cgroup2_root(char *out, size_t n)
{
	FILE *f = fopen("/proc/self/mounts", "re");
	char dev[256], mnt[256], type[64];
	int found = 0;
	while (f && !found && fscanf(f, "%255s %255s %63s %*[^\n]", dev, mnt, type) == 3)
		if (!strcmp(type, "cgroup2")) {
			snprintf(out, n, "%s", mnt);
			found = 1;
		}
	if (f)
		fclose(f);
	return found;
}

static void seterr(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, s, strlen(s));
	int e = n < 0 ? -errno : 0;
	close(fd);
	return e;
}

static int read_str(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t k = read(fd, buf, n - 1);
	close(fd);
	if (k < 0)
		return -errno;
	buf[k] = 0;
	return (int)k;
}

static int v1_ok(void)
{
	return access(FREEZER_ROOT "/cgroup.procs", W_OK) == 0;
}

static int v2_ok(char *why, size_t n)
{
	char root[256], path[300];
	if (!cgroup2_root(root, sizeof root)) {
		snprintf(why, n, "no cgroup2 hierarchy is mounted");
		return 0;
	}
	snprintf(path, sizeof path, "%s/cgroup.procs", root);
	if (access(path, W_OK) < 0) {
		snprintf(why, n, "%s is not writable (%s)", path, strerror(errno));
		return 0;
	}
	return 1; /* cgroup.freeze itself is checked in the experiment's cgroup */
}

int vt_backend_parse(const char *name, enum vt_backend *out,
                     enum vt_cgver *cgver, char *err, size_t errlen)
{
	char why[300] = "";
	*cgver = 0;
	if (!strcmp(name, "kmod") || (!strcmp(name, "auto") && vt_kmod_usable(NULL, 0))) {
		*out = VT_KMOD;
		if (vt_kmod_usable(why, sizeof why))
			return 1;
		seterr(err, errlen, "vtime backend 'kmod' cannot run here: %s", why);
		return 0;
	}
	if (!strcmp(name, "signal")) {
		*out = VT_SIGNAL;
		return 1;
	}
	int want_v1 = !strcmp(name, "freezer") || !strcmp(name, "freezer-v1");
	int want_v2 = !strcmp(name, "freezer") || !strcmp(name, "freezer-v2");
	if (want_v1 || want_v2 || !strcmp(name, "auto")) {
		*out = VT_FREEZER;
		if ((want_v1 || !want_v2) && v1_ok()) {
			*cgver = VT_CGV1;
			return 1;
		}
		if ((want_v2 || !want_v1) && v2_ok(why, sizeof why)) {
			*cgver = VT_CGV2;
			return 1;
		}
		if (!strcmp(name, "auto")) {
			*out = VT_SIGNAL;
			return 1;
		}
		seterr(err, errlen, "vtime backend '%s' cannot run here: %s%s%s%s", name,
		       want_v1 ? FREEZER_ROOT " is not a writable cgroup v1 freezer "
		                 "hierarchy" : "",
		       want_v1 && want_v2 ? "; cgroup v2: " : "", want_v2 ? why : "",
		       geteuid() ? " (not root)" : "");
		return 0;
	}
	seterr(err, errlen, "unknown vtime backend '%s' (signal, freezer, freezer-v1, "
	       "freezer-v2, kmod, auto)", name);
	return 0;
}

struct vt_exp *vt_exp_new(int64_t step, const char *backend, char *err,
                          size_t errlen)
{
	if (step <= 0) {
		seterr(err, errlen, "step must be > 0 virtual ns (got %lld)",
		       (long long)step);
		return NULL;
	}
	enum vt_backend b;
	enum vt_cgver cgver;
	if (!vt_backend_parse(backend ? backend : "auto", &b, &cgver, err, errlen))
		return NULL;
	struct vt_exp *e = calloc(1, sizeof *e);
	if (!e) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	e->step = step;
	e->backend = b;
	e->kfd = e->timens_fd = -1;
	e->cgver = cgver;
	e->overshoot = 50000;
	int n = nexp++;
	snprintf(e->shm_path, sizeof e->shm_path, "/dev/shm/kxrun-vtime-%d-%d",
	         (int)getpid(), n);
	int fd = open(e->shm_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0 || fchmod(fd, 0666) < 0 ||
	    ftruncate(fd, sizeof(struct kxvt_shm)) < 0) {
		seterr(err, errlen, "vtime clock %s: %s", e->shm_path, strerror(errno));
		if (fd >= 0)
			close(fd), unlink(e->shm_path);
		free(e);
		return NULL;
	}
	e->shm = mmap(NULL, sizeof *e->shm, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (e->shm == MAP_FAILED) {
		seterr(err, errlen, "mmap %s: %s", e->shm_path, strerror(errno));
		unlink(e->shm_path);
		free(e);
		return NULL;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	e->shm->start_real_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	e->shm->step = step;
	e->shm->nslots = KXVT_SLOTS;
	e->shm->version = KXVT_VERSION;
	__atomic_store_n(&e->shm->magic, KXVT_MAGIC, __ATOMIC_RELEASE);
	if (b == VT_KMOD && vt_kmod_open(e, err, errlen) < 0) {
		vt_kmod_stop(e);
		munmap(e->shm, sizeof *e->shm);
		unlink(e->shm_path);
		free(e);
		return NULL;
	}
	if (b == VT_FREEZER) {
		char root[256] = FREEZER_ROOT, probe[300];
		if (cgver == VT_CGV2)
			cgroup2_root(root, sizeof root);
		snprintf(e->cg_path, sizeof e->cg_path, "%s/kxrun-vtime-%d-%d", root,
		         (int)getpid(), n);
		const char *why = NULL;
		if (mkdir(e->cg_path, 0755) < 0 && errno != EEXIST)
			why = strerror(errno);
		snprintf(probe, sizeof probe, "%s/%s", e->cg_path,
		         cgver == VT_CGV2 ? "cgroup.freeze" : "freezer.state");
		if (!why && access(probe, W_OK) < 0) {
			why = "no freeze file (kernel without the cgroup v2 freezer)";
			rmdir(e->cg_path);
		}
		if (why) {
			seterr(err, errlen, "vtime freezer cgroup %s: %s", e->cg_path, why);
			munmap(e->shm, sizeof *e->shm);
			unlink(e->shm_path);
			free(e);
			return NULL;
		}
	}
	return e;
}

int vt_check_program(const char *prog, char *resolved, size_t rlen,
                     int allow_static, char *err, size_t errlen)
{
	if (!prog || !*prog) {
		seterr(err, errlen, "empty program name");
		return -1;
	}
	if (strchr(prog, '/')) {
		snprintf(resolved, rlen, "%s", prog);
	} else {
		const char *path = getenv("PATH");
		if (!path)
			path = "/usr/local/bin:/usr/bin:/bin";
		int found = 0;
		while (*path && !found) {
			const char *c = strchr(path, ':');
			size_t l = c ? (size_t)(c - path) : strlen(path);
			snprintf(resolved, rlen, "%.*s/%s", (int)l, l ? path : ".", prog);
			if (access(resolved, X_OK) == 0)
				found = 1;
			path += l + (c ? 1 : 0);
		}
		if (!found) {
			seterr(err, errlen, "%s: program not found in PATH", prog);
			return -1;
		}
	}
	if (access(resolved, X_OK) < 0) {
		seterr(err, errlen, "%s: %s", resolved, strerror(errno));
		return -1;
	}
	int fd = open(resolved, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		seterr(err, errlen, "%s: %s", resolved, strerror(errno));
		return -1;
	}
	Elf64_Ehdr eh;
	ssize_t k = pread(fd, &eh, sizeof eh, 0);
	int rc = 0;
	if (k >= 2 && ((char *)&eh)[0] == '#' && ((char *)&eh)[1] == '!') {
		rc = 0; /* a script: its interpreter is checked by nobody; README */
	} else if (k == (ssize_t)sizeof eh && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	           eh.e_ident[EI_CLASS] == ELFCLASS64) {
		int interp = 0;
		for (int i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;
			if (pread(fd, &ph, sizeof ph, eh.e_phoff + (off_t)i * eh.e_phentsize) !=
			    (ssize_t)sizeof ph)
				break;
			if (ph.p_type == PT_INTERP)
				interp = 1;
		}
		if (!interp && !allow_static) {
			seterr(err, errlen, "%s is statically linked: it cannot see virtual "
			       "time through libkxvtime.so (LD_PRELOAD); refusing to dilate it",
			       resolved);
			rc = -1;
		}
	} else {
		seterr(err, errlen, "%s: not a 64-bit ELF executable or script", resolved);
		rc = -1;
	}
	close(fd);
	return rc;
}

int vt_redirect(int target, const char *spec)
{
	if (!spec || !strcmp(spec, "inherit"))
		return 0;
	const char *path = !strcmp(spec, "null") ? "/dev/null" : spec;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	dup2(fd, target);
	close(fd);
	return 0;
}

static int proc_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (read_str(path, buf, sizeof buf) < 0)
		return 'X';
	char *p = strrchr(buf, ')');
	return p && p[1] && p[2] ? p[2] : 'X';
}

/* A process in vfork() (sh runs commands so) sleeps uninterruptibly until
 * its child execs or exits: it never shows stopped, and when the child is
 * stopped, its own stop is the child's. */
int vt_in_vfork_wait(pid_t pid)
{
	char path[64], buf[64];
	snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	/* where the wait is inlined differs between kernel versions */
	return proc_state(pid) == 'D' && (!strcmp(buf, "kernel_clone") ||
	       !strcmp(buf, "wait_for_vfork_done") || !strcmp(buf, "_do_fork"));
}

static void wait_stopped(pid_t pid)
{
	struct timespec t = {0, 20 * 1000};
	for (int i = 0; i < 20000; i++) { /* ~0.5 s at most */
		int s = proc_state(pid);
		if (s == 'T' || s == 't' || s == 'Z' || s == 'X')
			return;
		if (s == 'D' && vt_in_vfork_wait(pid))
			return;
		nanosleep(&t, NULL);
	}
}

/* A task-clock counter on pid and everything it will start; its overflow
 * (every `period` CPU ns of the main thread) sends SIGSTOP to the process
 * group.  -1 and a message when the kernel refuses. */
static int open_counter(pid_t pid, char *err, size_t errlen)
{
	struct perf_event_attr a;
	memset(&a, 0, sizeof a);
	a.size = sizeof a;
	a.type = PERF_TYPE_SOFTWARE;
	a.config = PERF_COUNT_SW_TASK_CLOCK;
	a.sample_period = 1000000000;
	a.inherit = 1;
	a.wakeup_events = 1;
	int fd = (int)syscall(SYS_perf_event_open, &a, pid, -1, -1,
	                      PERF_FLAG_FD_CLOEXEC);
	if (fd < 0) {
		seterr(err, errlen, "perf_event_open(task-clock) for pid %d: %s "
		       "(kx.vtime needs software perf events; see "
		       "/proc/sys/kernel/perf_event_paranoid)", (int)pid, strerror(errno));
		return -1;
	}
	struct f_owner_ex o = {F_OWNER_PGRP, pid};
	if (fcntl(fd, F_SETOWN_EX, &o) < 0 || fcntl(fd, F_SETSIG, SIGSTOP) < 0 ||
	    fcntl(fd, F_SETFL, O_ASYNC) < 0) {
		seterr(err, errlen, "perf counter overflow signal: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Explicit timelines get a CPU each, in order of first use, while there are
 * CPUs this process may use; later ones and own timelines float. */
static int timeline_cpu(struct vt_exp *e, int timeline)
{
	if (timeline < 0)
		return -1;
	int idx = -1;
	for (int i = 0; i < e->ntimelines_pinned; i++)
		if (e->pin_timeline[i] == timeline)
			idx = i;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) < 0)
		return -1;
	if (idx < 0) {
		if (e->ntimelines_pinned >= CPU_COUNT(&set) ||
		    e->ntimelines_pinned >= (int)(sizeof e->pin_timeline / sizeof(int)))
			return -1;
		idx = e->ntimelines_pinned;
		e->pin_timeline[e->ntimelines_pinned++] = timeline;
	}
	for (int c = 0, k = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set) && k++ == idx)
			return c;
	return -1;
}

static void slot_write(struct vt_exp *e, int i, int64_t vbase, int64_t vend,
                       int64_t cpu_base)
{
	struct kxvt_slot *s = &e->shm->slot[i];
	uint32_t q = s->seq;
	__atomic_store_n(&s->seq, q + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	s->vbase = vbase;
	s->vend = vend;
	s->cpu_base = cpu_base;
	__atomic_store_n(&s->seq, q + 2, __ATOMIC_RELEASE);
}

void vt_slot_resume(struct vt_exp *e, struct vt_proc *p, int64_t cpu_base)
{
	__atomic_store_n(&e->shm->slot[p->slot].skip, 0, __ATOMIC_RELEASE);
	slot_write(e, p->slot, p->vbase, p->q_end, cpu_base);
}

/* Room in e->procs for one more process. */
int vt_procs_reserve(struct vt_exp *e, char *err, size_t errlen)
{
	if (e->nprocs < e->cap)
		return 0;
	int cap = e->cap ? e->cap * 2 : 8;
	void *p = realloc(e->procs, cap * sizeof *e->procs);
	if (!p) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	e->procs = p;
	e->cap = cap;
	return 0;
}

int vt_spawn(struct vt_exp *e, char *const argv[], char *const env_extra[],
             const char *libdir, const struct vt_spawn_opts *o, char *err,
             size_t errlen)
{
	char prog[PATH_MAX];
	if (e->stopped) {
		seterr(err, errlen, "experiment stopped");
		return -1;
	}
	if (e->in_round) {
		seterr(err, errlen, "spawn during a round: wait for advance to return");
		return -1;
	}
	if (o->speed <= 0) {
		seterr(err, errlen, "speed must be > 0 (got %g)", o->speed);
		return -1;
	}
	if (e->backend == VT_KMOD) /* no clock slots: up to KXVT_MAX_MEMBERS */
		return vt_kmod_spawn(e, argv, env_extra, o, err, errlen);
	if (e->nprocs >= KXVT_SLOTS) {
		seterr(err, errlen, "at most %d processes per experiment", KXVT_SLOTS);
		return -1;
	}
	if (vt_check_program(argv[0], prog, sizeof prog, 0, err, errlen) < 0)
		return -1;
	char lib[PATH_MAX];
	snprintf(lib, sizeof lib, "%s/libkxvtime.so", libdir);
	if (access(lib, R_OK) < 0) {
		seterr(err, errlen, "%s: %s (build it with make)", lib, strerror(errno));
		return -1;
	}
	if (vt_procs_reserve(e, err, errlen) < 0)
		return -1;
	int slot = e->nprocs;
	int cpu = timeline_cpu(e, o->timeline);
	pid_t pid = fork();
	if (pid < 0) {
		seterr(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		const char *old = getenv("LD_PRELOAD");
		char pre[PATH_MAX * 2], sl[16];
		if (old && *old)
			snprintf(pre, sizeof pre, "%s:%s", lib, old);
		else
			snprintf(pre, sizeof pre, "%s", lib);
		setenv("LD_PRELOAD", pre, 1);
		setenv("KXRUN_VTIME_SHM", e->shm_path, 1);
		snprintf(sl, sizeof sl, "%d", slot);
		setenv("KXRUN_VTIME_SLOT", sl, 1);
		for (int i = 0; env_extra && env_extra[i]; i++)
			putenv(env_extra[i]);
		if (vt_redirect(1, o->out) < 0 || vt_redirect(2, o->err) < 0)
			_exit(126);
		raise(SIGSTOP); /* starts in its first round */
		execv(prog, argv);
		_exit(127);
	}
	setpgid(pid, pid);
	int st;
	if (waitpid(pid, &st, WUNTRACED) != pid || !WIFSTOPPED(st)) {
		seterr(err, errlen, "%s: the child failed before exec (status %d)", prog,
		       st);
		return -1;
	}
	int fd = open_counter(pid, err, errlen);
	if (fd < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		return -1;
	}
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(pid, sizeof set, &set); /* inherited by all it starts */
	}
	if (e->backend == VT_FREEZER) {
		/* Joined by the parent once stopped (a child writing itself into a
		 * frozen cgroup would freeze before it stops); it stays stopped too
		 * until its first round resumes it. */
		char tasks[240], pidbuf[24];
		snprintf(tasks, sizeof tasks, "%s/cgroup.procs", e->cg_path);
		snprintf(pidbuf, sizeof pidbuf, "%d", (int)pid);
		int rc = write_str(tasks, pidbuf);
		if (rc < 0) {
			close(fd);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			seterr(err, errlen, "%s: %s", tasks, strerror(-rc));
			return -1;
		}
	}
	struct kxvt_slot *s = &e->shm->slot[slot];
	memset(s, 0, sizeof *s);
	s->pid = pid;
	s->speed = o->speed;
	s->wake_at = INT64_MAX;
	int64_t now = vt_now(e);
	slot_write(e, slot, now, now, 0);
	struct vt_proc *p = &e->procs[e->nprocs];
	memset(p, 0, sizeof *p);
	p->pid = pid;
	p->speed = o->speed;
	p->timeline = o->timeline >= 0 ? o->timeline : -1 - slot;
	p->cpu = cpu;
	p->alive = 1;
	p->slot = slot;
	p->perf_fd = fd;
	char status[64];
	snprintf(status, sizeof status, "/proc/%d/status", (int)pid);
	p->status_fd = open(status, O_RDONLY | O_CLOEXEC);
	p->run = VT_DONE;
	return e->nprocs++;
}

void vt_cg_freeze(struct vt_exp *e, int frozen)
{
	char path[240], ev[240], buf[512];
	if (!e->cg_path[0] || e->cg_frozen == frozen)
		return;
	e->cg_frozen = frozen;
	if (e->cgver == VT_CGV2) {
		snprintf(path, sizeof path, "%s/cgroup.freeze", e->cg_path);
		snprintf(ev, sizeof ev, "%s/cgroup.events", e->cg_path);
		write_str(path, frozen ? "1" : "0");
		const char *want = frozen ? "frozen 1" : "frozen 0";
		struct timespec t = {0, 20 * 1000};
		for (int i = 0; i < 25000; i++) { /* ~0.5 s at most */
			if (read_str(ev, buf, sizeof buf) < 0 || strstr(buf, want))
				return;
			nanosleep(&t, NULL);
		}
		return;
	}
	const char *want = frozen ? "FROZEN" : "THAWED";
	snprintf(path, sizeof path, "%s/freezer.state", e->cg_path);
	write_str(path, want);
	struct timespec t = {0, 20 * 1000};
	for (int i = 0; i < 25000; i++) {
		if (read_str(path, buf, sizeof buf) < 0 || !strncmp(buf, want, strlen(want)))
			return;
		write_str(path, want);
		nanosleep(&t, NULL);
	}
}

void vt_freeze(struct vt_exp *e)
{
	if (e->backend == VT_KMOD) {
		vt_kmod_freeze(e);
		return;
	}
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].alive)
			kill(-e->procs[i].pid, SIGSTOP);
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].alive) {
			siginfo_t si;
			wait_stopped(e->procs[i].pid);
			/* the stop report, if any, is not news for the next round */
			waitid(P_PID, e->procs[i].pid, &si, WSTOPPED | WNOHANG);
			e->procs[i].run = VT_DONE;
		}
	vt_cg_freeze(e, 1);
	e->in_round = 0;
	e->frozen = 1;
}

void vt_set_clock(struct vt_exp *e, int64_t vns)
{
	uint32_t s = e->shm->seq;
	__atomic_store_n(&e->shm->seq, s + 1, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n(&e->shm->vns, vns, __ATOMIC_RELEASE);
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].alive) {
			e->procs[i].vbase = e->procs[i].q_end = vns;
			if (e->procs[i].slot >= 0) /* kmod: none */
				slot_write(e, e->procs[i].slot, vns, vns, 0);
		}
	__atomic_store_n(&e->shm->seq, s + 2, __ATOMIC_RELEASE);
	syscall(SYS_futex, &e->shm->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int64_t vt_now(const struct vt_exp *e)
{
	return e->shm ? kxvt_read(e->shm, NULL) : 0;
}

int64_t vt_leader_cpu(pid_t pid)
{
	/* clock_getcpuclockid(), without its clock_getres() check: the
	 * kernel's process CPU clock id, (~pid << 3) | CPUCLOCK_SCHED */
	clockid_t c = (clockid_t)(((unsigned)~pid << 3) | 2);
	struct timespec ts;
	if (clock_gettime(c, &ts) < 0)
		return -1;
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t vt_proc_now(struct vt_exp *e, int i)
{
	struct vt_proc *p = &e->procs[i];
	if (!p->alive)
		return p->exit_vns;
	if (e->stopped)
		return vt_now(e);
	if (e->backend == VT_KMOD)
		return vt_kmod_proc_now(e, i);
	struct kxvt_slot_view v;
	kxvt_slot_read(&e->shm->slot[p->slot], &v);
	int64_t cpu = vt_leader_cpu(p->pid);
	return kxvt_slot_clock(&v, e->shm->slot[p->slot].skip,
	                       cpu < 0 ? 0 : cpu - v.cpu_base);
}

void vt_proc_exited(struct vt_exp *e, pid_t pid, int wstatus)
{
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].pid == pid && e->procs[i].alive) {
			e->procs[i].exit_vns = vt_proc_now(e, i);
			e->procs[i].alive = 0;
			e->procs[i].wstatus = wstatus;
		}
}

void vt_exp_stop(struct vt_exp *e)
{
	if (e->stopped)
		return;
	e->stopped = 1;
	e->in_round = 0;
	vt_kmod_stop(e); /* kmod: the module kills every member */
	for (int i = 0; i < e->nprocs; i++) {
		if (e->procs[i].alive) {
			kill(-e->procs[i].pid, SIGKILL);
			kill(-e->procs[i].pid, SIGCONT);
		}
		if (e->procs[i].perf_fd > 0)
			close(e->procs[i].perf_fd);
		e->procs[i].perf_fd = -1;
		if (e->procs[i].status_fd > 0)
			close(e->procs[i].status_fd);
		e->procs[i].status_fd = -1;
	}
	if (e->cg_path[0]) {
		vt_cg_freeze(e, 0);
		struct timespec t = {0, 1000 * 1000};
		for (int i = 0; i < 500 && rmdir(e->cg_path) < 0 && errno == EBUSY; i++)
			nanosleep(&t, NULL);
	}
	if (e->shm) {
		unlink(e->shm_path);
	}
}

void vt_exp_free(struct vt_exp *e)
{
	if (!e)
		return;
	vt_exp_stop(e);
	if (e->shm)
		munmap(e->shm, sizeof *e->shm);
	free(e->procs);
	free(e->tl);
	free(e);
}

static int controller_dead(const char *name)
{
	int pid;
	if (sscanf(name, "kxrun-vtime-%d-", &pid) != 1 || pid <= 0)
		return 0;
	return kill(pid, 0) < 0 && errno == ESRCH;
}

/* Kills the processes of a dead controller's cgroup, thaws and removes it. */
static int cleanup_cgroup(const char *dir, int v2, char *err, size_t errlen)
{
	char path[340], buf[8192];
	snprintf(path, sizeof path, "%s/cgroup.procs", dir);
	int n = read_str(path, buf, sizeof buf);
	for (char *s = n > 0 ? strtok(buf, "\n") : NULL; s; s = strtok(NULL, "\n")) {
		kill(atoi(s), SIGKILL);
		kill(atoi(s), SIGCONT);
	}
	snprintf(path, sizeof path, "%s/%s", dir, v2 ? "cgroup.freeze" : "freezer.state");
	write_str(path, v2 ? "0" : "THAWED");
	struct timespec t = {0, 1000 * 1000};
	for (int i = 0; i < 500; i++) {
		if (rmdir(dir) == 0)
			return 1;
		nanosleep(&t, NULL);
	}
	seterr(err, errlen, "could not remove %s: %s", dir, strerror(errno));
	return 0;
}

int vt_cleanup(char *err, size_t errlen)
{
	int removed = 0;
	err[0] = 0;
	/* processes of dead controllers, whatever the backend */
	DIR *d = opendir("/proc");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		int pid = atoi(de->d_name);
		if (pid <= 0)
			continue;
		char path[64], env[8192];
		snprintf(path, sizeof path, "/proc/%d/environ", pid);
		int n = read_str(path, env, sizeof env);
		for (int i = 0; i < n; i += strlen(env + i) + 1) {
			const char *k = "KXRUN_VTIME_SHM=/dev/shm/";
			if (!strncmp(env + i, k, strlen(k)) &&
			    controller_dead(env + i + strlen(k))) {
				kill(pid, SIGKILL);
				kill(pid, SIGCONT);
				break;
			}
		}
	}
	if (d)
		closedir(d);
	char roots[2][256] = {FREEZER_ROOT, ""};
	cgroup2_root(roots[1], sizeof roots[1]);
	for (int v = 0; v < 2; v++) {
		if (!roots[v][0] || !(d = opendir(roots[v])))
			continue;
		while ((de = readdir(d))) {
			if (strncmp(de->d_name, "kxrun-vtime-", 12) ||
			    !controller_dead(de->d_name))
				continue;
			char dir[300];
			snprintf(dir, sizeof dir, "%s/%s", roots[v], de->d_name);
			removed += cleanup_cgroup(dir, v == 1, err, errlen);
		}
		closedir(d);
	}
	d = opendir("/dev/shm");
	while (d && (de = readdir(d))) {
		if (!strncmp(de->d_name, "kxrun-vtime-", 12) && controller_dead(de->d_name)) {
			char p[300];
			snprintf(p, sizeof p, "/dev/shm/%s", de->d_name);
			unlink(p);
		}
	}
	if (d)
		closedir(d);
	return removed;
}
