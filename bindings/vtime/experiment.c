/*
 * experiment.c - a kx.vtime experiment (vtime.h): its clock file, freezing,
 * the clock between rounds, its processes' clocks and exits, stopping it.
 */
#include "vtime.h"

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

static int nexp;

int64_t vt_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void vt_seterr(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

int vt_write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, s, strlen(s));
	int e = n < 0 ? -errno : 0;
	close(fd);
	return e;
}

int vt_read_file(const char *path, char *buf, size_t n)
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

struct vt_exp *vt_exp_new(int64_t step, const char *backend, char *err,
                          size_t errlen)
{
	if (step <= 0) {
		vt_seterr(err, errlen, "step must be > 0 virtual ns (got %lld)",
		       (long long)step);
		return NULL;
	}
	enum vt_backend b;
	enum vt_cgver cgver;
	if (!vt_backend_parse(backend ? backend : "auto", &b, &cgver, err, errlen))
		return NULL;
	struct vt_exp *e = calloc(1, sizeof *e);
	if (!e) {
		vt_seterr(err, errlen, "out of memory");
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
		vt_seterr(err, errlen, "vtime clock %s: %s", e->shm_path, strerror(errno));
		if (fd >= 0)
			close(fd), unlink(e->shm_path);
		free(e);
		return NULL;
	}
	e->shm = mmap(NULL, sizeof *e->shm, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (e->shm == MAP_FAILED) {
		vt_seterr(err, errlen, "mmap %s: %s", e->shm_path, strerror(errno));
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
	if ((b == VT_FREEZER && vt_cg_create(e, n, err, errlen) < 0) ||
	    (b == VT_KMOD && vt_kmod_open(e, err, errlen) < 0)) {
		vt_kmod_stop(e);
		munmap(e->shm, sizeof *e->shm);
		unlink(e->shm_path);
		free(e);
		return NULL;
	}
	return e;
}

int vt_proc_state(pid_t pid, pid_t *pgrp)
{
	char path[64], buf[512], st;
	int g;
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (vt_read_file(path, buf, sizeof buf) <= 0)
		return 'X';
	char *c = strrchr(buf, ')'); /* the name may hold anything */
	if (!c || sscanf(c + 1, " %c %*d %d", &st, &g) != 2)
		return 'X';
	if (pgrp)
		*pgrp = g;
	return st;
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
	return vt_proc_state(pid, NULL) == 'D' && (!strcmp(buf, "kernel_clone") ||
	       !strcmp(buf, "wait_for_vfork_done") || !strcmp(buf, "_do_fork"));
}

static void wait_stopped(pid_t pid)
{
	struct timespec t = {0, 20 * 1000};
	for (int i = 0; i < 20000; i++) { /* ~0.5 s at most */
		int s = vt_proc_state(pid, NULL);
		if (s == 'T' || s == 't' || s == 'Z' || s == 'X')
			return;
		if (s == 'D' && vt_in_vfork_wait(pid))
			return;
		nanosleep(&t, NULL);
	}
}

/* Writes a slot (the process is stopped) and starts a new share for its
 * skip: the generation after this write, no ns. */
void vt_slot_write(struct vt_exp *e, int i, int64_t vbase, int64_t vend,
                   int64_t cpu_base)
{
	struct kxvt_slot *s = &e->shm->slot[i];
	uint32_t q = s->seq;
	__atomic_store_n(&s->seq, q + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	s->vbase = vbase;
	s->vend = vend;
	s->cpu_base = cpu_base;
	__atomic_store_n(&s->skip, kxvt_skip_pack(kxvt_gen(q + 2), 0), __ATOMIC_RELAXED);
	__atomic_store_n(&s->seq, q + 2, __ATOMIC_RELEASE);
}

void vt_slot_resume(struct vt_exp *e, struct vt_proc *p, int64_t cpu_base)
{
	vt_slot_write(e, p->slot, p->vbase, p->q_end, cpu_base);
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
				vt_slot_write(e, e->procs[i].slot, vns, vns, 0);
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

int64_t vt_thread_cpu(pid_t tid)
{
	/* the same for one thread: CPUCLOCK_PERTHREAD_MASK */
	clockid_t c = (clockid_t)(((unsigned)~tid << 3) | 4 | 2);
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
	return kxvt_slot_clock(&v, kxvt_skip_ns(e->shm->slot[p->slot].skip),
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
	vt_exp_sweep(e);
	for (int i = 0; i < e->nprocs; i++) {
		if (e->procs[i].perf_fd > 0)
			close(e->procs[i].perf_fd);
		e->procs[i].perf_fd = -1;
		if (e->procs[i].status_fd > 0)
			close(e->procs[i].status_fd);
		e->procs[i].status_fd = -1;
	}
	if (e->shm)
		unlink(e->shm_path);
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

