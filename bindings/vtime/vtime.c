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
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FREEZER_ROOT "/sys/fs/cgroup/freezer"

static int nexp;

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

int vt_backend_parse(const char *name, enum vt_backend *out, char *err,
                     size_t errlen)
{
	int freezer_ok = access(FREEZER_ROOT "/cgroup.procs", W_OK) == 0;
	if (!strcmp(name, "signal")) {
		*out = VT_SIGNAL;
		return 1;
	}
	if (!strcmp(name, "freezer")) {
		if (!freezer_ok) {
			seterr(err, errlen, "vtime backend 'freezer' cannot run here: "
			       "%s is not a writable cgroup v1 freezer hierarchy (%s)",
			       FREEZER_ROOT, geteuid() ? "not root" : "not mounted");
			return 0;
		}
		*out = VT_FREEZER;
		return 1;
	}
	if (!strcmp(name, "auto")) {
		*out = freezer_ok ? VT_FREEZER : VT_SIGNAL;
		return 1;
	}
	seterr(err, errlen, "unknown vtime backend '%s' (signal, freezer, auto)",
	       name);
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
	if (!vt_backend_parse(backend ? backend : "auto", &b, err, errlen))
		return NULL;
	struct vt_exp *e = calloc(1, sizeof *e);
	if (!e) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	e->step = step;
	e->backend = b;
	int n = nexp++;
	snprintf(e->shm_path, sizeof e->shm_path, "/dev/shm/kxrun-vtime-%d-%d",
	         (int)getpid(), n);
	int fd = open(e->shm_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, sizeof(struct kxvt_shm)) < 0) {
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
	e->shm->version = 1;
	__atomic_store_n(&e->shm->magic, KXVT_MAGIC, __ATOMIC_RELEASE);
	if (b == VT_FREEZER) {
		snprintf(e->cg_path, sizeof e->cg_path, FREEZER_ROOT "/kxrun-vtime-%d-%d",
		         (int)getpid(), n);
		if (mkdir(e->cg_path, 0755) < 0 && errno != EEXIST) {
			seterr(err, errlen, "vtime freezer cgroup %s: %s", e->cg_path,
			       strerror(errno));
			munmap(e->shm, sizeof *e->shm);
			unlink(e->shm_path);
			free(e);
			return NULL;
		}
	}
	return e;
}

int vt_check_program(const char *prog, char *resolved, size_t rlen, char *err,
                     size_t errlen)
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
		if (!interp) {
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

static int redirect(int target, const char *spec)
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

static void wait_stopped(pid_t pid)
{
	struct timespec t = {0, 20 * 1000};
	for (int i = 0; i < 20000; i++) { /* ~0.5 s at most */
		int s = proc_state(pid);
		if (s == 'T' || s == 't' || s == 'Z' || s == 'X')
			return;
		nanosleep(&t, NULL);
	}
}

int vt_spawn(struct vt_exp *e, char *const argv[], char *const env_extra[],
             const char *libdir, const char *out, const char *errp,
             double speed, char *err, size_t errlen)
{
	char prog[PATH_MAX];
	if (e->stopped) {
		seterr(err, errlen, "experiment stopped");
		return -1;
	}
	if (speed <= 0) {
		seterr(err, errlen, "speed must be > 0 (got %g)", speed);
		return -1;
	}
	if (vt_check_program(argv[0], prog, sizeof prog, err, errlen) < 0)
		return -1;
	char lib[PATH_MAX];
	snprintf(lib, sizeof lib, "%s/libkxvtime.so", libdir);
	if (access(lib, R_OK) < 0) {
		seterr(err, errlen, "%s: %s (build it with make)", lib, strerror(errno));
		return -1;
	}
	if (e->nprocs == e->cap) {
		int cap = e->cap ? e->cap * 2 : 8;
		void *p = realloc(e->procs, cap * sizeof *e->procs);
		if (!p) {
			seterr(err, errlen, "out of memory");
			return -1;
		}
		e->procs = p;
		e->cap = cap;
	}
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
		char pre[PATH_MAX * 2];
		if (old && *old)
			snprintf(pre, sizeof pre, "%s:%s", lib, old);
		else
			snprintf(pre, sizeof pre, "%s", lib);
		setenv("LD_PRELOAD", pre, 1);
		setenv("KXRUN_VTIME_SHM", e->shm_path, 1);
		for (int i = 0; env_extra && env_extra[i]; i++)
			putenv(env_extra[i]);
		if (redirect(1, out) < 0 || redirect(2, errp) < 0)
			_exit(126);
		raise(SIGSTOP); /* starts at the first thaw */
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
	if (e->backend == VT_FREEZER) {
		/* Joined by the parent once stopped (a child writing itself into a
		 * frozen cgroup would freeze before it stops); frozen from now on,
		 * its SIGCONT takes effect at the first thaw. */
		char tasks[200], state[200], pidbuf[24];
		snprintf(tasks, sizeof tasks, "%s/cgroup.procs", e->cg_path);
		snprintf(state, sizeof state, "%s/freezer.state", e->cg_path);
		snprintf(pidbuf, sizeof pidbuf, "%d", (int)pid);
		int rc = write_str(tasks, pidbuf);
		if (rc < 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			seterr(err, errlen, "%s: %s", tasks, strerror(-rc));
			return -1;
		}
		write_str(state, "FROZEN");
		kill(pid, SIGCONT);
	}
	struct vt_proc *p = &e->procs[e->nprocs];
	memset(p, 0, sizeof *p);
	p->pid = pid;
	p->speed = speed;
	p->alive = 1;
	return e->nprocs++;
}

static void freezer_set(struct vt_exp *e, const char *want)
{
	char path[200], buf[64];
	snprintf(path, sizeof path, "%s/freezer.state", e->cg_path);
	write_str(path, want);
	struct timespec t = {0, 20 * 1000};
	for (int i = 0; i < 50000; i++) {
		if (read_str(path, buf, sizeof buf) < 0 || !strncmp(buf, want, strlen(want)))
			return;
		write_str(path, want);
		nanosleep(&t, NULL);
	}
}

void vt_freeze(struct vt_exp *e)
{
	if (e->backend == VT_FREEZER) {
		freezer_set(e, "FROZEN");
	} else {
		for (int i = 0; i < e->nprocs; i++)
			if (e->procs[i].alive)
				kill(-e->procs[i].pid, SIGSTOP);
		for (int i = 0; i < e->nprocs; i++)
			if (e->procs[i].alive)
				wait_stopped(e->procs[i].pid);
	}
	e->frozen = 1;
}

void vt_thaw(struct vt_exp *e)
{
	if (e->backend == VT_FREEZER) {
		freezer_set(e, "THAWED");
	} else {
		for (int i = 0; i < e->nprocs; i++)
			if (e->procs[i].alive)
				kill(-e->procs[i].pid, SIGCONT);
	}
	e->frozen = 0;
}

void vt_set_clock(struct vt_exp *e, int64_t vns)
{
	uint32_t s = e->shm->seq;
	__atomic_store_n(&e->shm->seq, s + 1, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n(&e->shm->vns, vns, __ATOMIC_RELEASE);
	__atomic_store_n(&e->shm->seq, s + 2, __ATOMIC_RELEASE);
	syscall(SYS_futex, &e->shm->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int64_t vt_now(const struct vt_exp *e)
{
	return e->shm ? kxvt_read(e->shm, NULL) : 0;
}

void vt_proc_exited(struct vt_exp *e, pid_t pid, int wstatus)
{
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].pid == pid && e->procs[i].alive) {
			e->procs[i].alive = 0;
			e->procs[i].wstatus = wstatus;
			e->procs[i].exit_vns = vt_now(e);
		}
}

void vt_exp_stop(struct vt_exp *e)
{
	if (e->stopped)
		return;
	e->stopped = 1;
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].alive) {
			kill(-e->procs[i].pid, SIGKILL);
			kill(-e->procs[i].pid, SIGCONT);
		}
	if (e->cg_path[0]) {
		freezer_set(e, "THAWED");
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
	free(e);
}

static int controller_dead(const char *name)
{
	int pid;
	if (sscanf(name, "kxrun-vtime-%d-", &pid) != 1 || pid <= 0)
		return 0;
	return kill(pid, 0) < 0 && errno == ESRCH;
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
	d = opendir(FREEZER_ROOT);
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, "kxrun-vtime-", 12) || !controller_dead(de->d_name))
			continue;
		char dir[300], path[340], buf[8192];
		snprintf(dir, sizeof dir, FREEZER_ROOT "/%s", de->d_name);
		snprintf(path, sizeof path, "%s/cgroup.procs", dir);
		int n = read_str(path, buf, sizeof buf);
		for (char *s = n > 0 ? strtok(buf, "\n") : NULL; s; s = strtok(NULL, "\n"))
			kill(atoi(s), SIGKILL);
		snprintf(path, sizeof path, "%s/freezer.state", dir);
		write_str(path, "THAWED");
		struct timespec t = {0, 1000 * 1000};
		int ok = 0;
		for (int i = 0; i < 500; i++) {
			if (rmdir(dir) == 0) {
				ok = 1;
				break;
			}
			nanosleep(&t, NULL);
		}
		if (ok)
			removed++;
		else
			seterr(err, errlen, "could not remove %s: %s", dir, strerror(errno));
	}
	if (d)
		closedir(d);
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
