/*
 * usage.c - lock-free shared allocation count of a partition.  See usage.h.
 */
#include "usage.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define USAGE_MAGIC "KXGPUMEM"

int kxgpu_proc_read(pid_t pid, struct kxgpu_proc *p)
{
	char path[64], buf[1024], *open_paren, *close_paren;
	unsigned long long st = 0;
	int pgrp = 0;
	ssize_t n;
	size_t len;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	/* the command name may hold spaces and parentheses */
	open_paren = strchr(buf, '(');
	close_paren = strrchr(buf, ')');
	if (!open_paren || !close_paren || close_paren < open_paren)
		return -1;
	/* field 3 (state) follows ") ", pgrp is field 5, start time field 22 */
	if (sscanf(close_paren + 2, "%c %*d %d %*d %*d %*d %*u %*u %*u %*u %*u "
	           "%*u %*u %*d %*d %*d %*d %*d %*d %llu", &p->state, &pgrp,
	           &st) != 3)
		return -1;
	len = (size_t)(close_paren - open_paren - 1);
	if (len >= sizeof p->comm)
		len = sizeof p->comm - 1;
	memcpy(p->comm, open_paren + 1, len);
	p->comm[len] = 0;
	p->pgrp = pgrp;
	p->start = st;
	return 0;
}

static uint64_t start_time(pid_t pid)
{
	struct kxgpu_proc p;

	return kxgpu_proc_read(pid, &p) == 0 ? p.start : 0;
}

int kxgpu_proc_alive(pid_t pid, uint64_t start)
{
	struct kxgpu_proc p;

	if (pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH))
		return 0;
	if (kxgpu_proc_read(pid, &p) != 0)
		return kill(pid, 0) == 0 || errno == EPERM;  /* unknown: alive */
	return p.state != 'Z' && p.state != 'X' &&
	       (start == 0 || p.start == start);
}

int kxgpu_usage_init(const char *path, uint64_t limit, int64_t expires_ms,
                     uid_t owner, char *err, size_t errlen)
{
	struct kxgpu_usage_file *f;
	struct stat st;
	int fd, rc = 0;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	/* the owner's: its programs write it, other users may only read it */
	if (fstat(fd, &st) == 0 && st.st_size == 0 &&
	    ((geteuid() == 0 && fchown(fd, owner, (gid_t)-1) != 0) ||
	     fchmod(fd, 0644) != 0)) {
		snprintf(err, errlen, "cannot give %s to uid %u: %s", path,
		         (unsigned)owner, strerror(errno));
		close(fd);
		return -1;
	}
	while (flock(fd, LOCK_EX) != 0 && errno == EINTR)
		;
	if (fstat(fd, &st) != 0 ||
	    (st.st_size == 0 && ftruncate(fd, sizeof *f) != 0)) {
		snprintf(err, errlen, "cannot size %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	f = mmap(NULL, sizeof *f, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (f == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (st.st_size == 0) {
		f->limit = limit;
		f->expires_ms = expires_ms;
		memcpy(f->magic, USAGE_MAGIC, 8);  /* last: marks it complete */
	} else if ((size_t)st.st_size != sizeof *f ||
	           memcmp(f->magic, USAGE_MAGIC, 8) != 0 || f->limit != limit) {
		snprintf(err, errlen, "%s is damaged or not this partition's", path);
		rc = -1;
	}
	munmap(f, sizeof *f);
	close(fd);  /* drops the lock */
	return rc;
}

static int attach(kxgpu_usage *u, const char *path, int writable,
                  char *err, size_t errlen)
{
	struct stat st;
	int fd;

	memset(u, 0, sizeof *u);
	fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || (size_t)st.st_size != sizeof *u->f) {
		snprintf(err, errlen, "%s has the wrong size", path);
		close(fd);
		return -1;
	}
	u->f = mmap(NULL, sizeof *u->f, PROT_READ | (writable ? PROT_WRITE : 0),
	            MAP_SHARED, fd, 0);
	close(fd);
	if (u->f == MAP_FAILED || memcmp(u->f->magic, USAGE_MAGIC, 8) != 0) {
		snprintf(err, errlen, "cannot map %s or it is not a usage file", path);
		if (u->f != MAP_FAILED)
			munmap(u->f, sizeof *u->f);
		u->f = NULL;
		return -1;
	}
	return 0;
}

int kxgpu_usage_attach(kxgpu_usage *u, const char *path, char *err,
                       size_t errlen)
{
	return attach(u, path, 1, err, errlen);
}

int kxgpu_usage_attach_ro(kxgpu_usage *u, const char *path, char *err,
                          size_t errlen)
{
	return attach(u, path, 0, err, errlen);
}

void kxgpu_usage_detach(kxgpu_usage *u)
{
	if (u->f)
		munmap(u->f, sizeof *u->f);
	memset(u, 0, sizeof *u);
}

/* Takes back the shares of members that are gone; returns bytes freed. */
static uint64_t reclaim_dead(struct kxgpu_usage_file *f, pid_t self)
{
	uint64_t freed = 0;

	for (int i = 0; i < KXGPU_USAGE_SLOTS; i++) {
		struct kxgpu_usage_slot *s = &f->slots[i];
		int32_t pid = atomic_load(&s->pid);
		uint64_t b;

		if (pid <= 0 || pid == self ||
		    kxgpu_proc_alive(pid, atomic_load(&s->start)))
			continue;
		if (!atomic_compare_exchange_strong(&s->pid, &pid, -1))
			continue;  /* someone else reclaims it */
		b = atomic_exchange(&s->bytes, 0);
		atomic_fetch_sub(&f->total, b);
		freed += b;
		atomic_store(&s->start, 0);
		atomic_store(&s->pid, 0);
	}
	return freed;
}

static struct kxgpu_usage_slot *take_slot(struct kxgpu_usage_file *f,
                                          pid_t self)
{
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < KXGPU_USAGE_SLOTS; i++) {
			int32_t zero = 0;
			if (atomic_compare_exchange_strong(&f->slots[i].pid, &zero,
			                                   self)) {
				atomic_store(&f->slots[i].bytes, 0);
				atomic_store(&f->slots[i].start, start_time(self));
				return &f->slots[i];
			}
		}
		reclaim_dead(f, self);
	}
	return NULL;
}

/* getpid() is a system call: cache it, refreshed in forked children. */
static pid_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void refresh_pid(void)
{
	cached_pid = getpid();
}

static void watch_forks(void)
{
	refresh_pid();
	pthread_atfork(NULL, NULL, refresh_pid);
}

static pid_t self_pid(void)
{
	pthread_once(&pid_once, watch_forks);
	return cached_pid;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kxgpu_usage_charge(kxgpu_usage *u, uint64_t bytes)
{
	struct kxgpu_usage_file *f = u->f;
	pid_t self = self_pid();
	uint64_t cur;
	int reclaimed = 0;

	if (!f || now_ms() >= f->expires_ms)
		return -1;
	if (!u->slot || u->pid != self) {  /* first charge, or a forked child */
		u->slot = take_slot(f, self);
		u->pid = self;
		if (!u->slot)
			return -1;
	}
	cur = atomic_load(&f->total);
	for (;;) {
		if (bytes > f->limit || cur > f->limit - bytes) {
			if (reclaimed++ || reclaim_dead(f, self) == 0)
				return -1;
			cur = atomic_load(&f->total);
			continue;
		}
		if (atomic_compare_exchange_weak(&f->total, &cur, cur + bytes))
			break;
	}
	atomic_fetch_add(&u->slot->bytes, bytes);
	return 0;
}

void kxgpu_usage_uncharge(kxgpu_usage *u, uint64_t bytes)
{
	uint64_t cur, take;

	if (!u->f || !u->slot || u->pid != self_pid())
		return;  /* charged by the parent before fork: its slot keeps it */
	cur = atomic_load(&u->slot->bytes);
	do
		take = bytes < cur ? bytes : cur;
	while (!atomic_compare_exchange_weak(&u->slot->bytes, &cur, cur - take));
	atomic_fetch_sub(&u->f->total, take);
}

uint64_t kxgpu_usage_held(const kxgpu_usage *u)
{
	uint64_t held = 0;

	for (int i = 0; u->f && i < KXGPU_USAGE_SLOTS; i++) {
		const struct kxgpu_usage_slot *s = &u->f->slots[i];
		int32_t pid = atomic_load(&s->pid);

		if (pid > 0 && kxgpu_proc_alive(pid, atomic_load(&s->start)))
			held += atomic_load(&s->bytes);
	}
	return held;
}

int kxgpu_usage_add_run(kxgpu_usage *u, pid_t pgid, uint32_t grace_ms)
{
	pid_t self = getpid();

	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < KXGPU_USAGE_RUNS; i++) {
			struct kxgpu_usage_run *r = &u->f->runs[i];
			int32_t cur = atomic_load(&r->pgid);

			/* the second round takes runs that are over: their
			 * group's leader and their runner both gone */
			if (cur != 0 && (round == 0 || cur < 0 ||
			    kxgpu_proc_alive(cur, r->pgid_start) ||
			    kxgpu_proc_alive(r->runner, r->runner_start)))
				continue;
			if (!atomic_compare_exchange_strong(&r->pgid, &cur, -1))
				continue;
			r->runner = self;
			r->runner_start = start_time(self);
			r->pgid_start = start_time(pgid);
			r->grace_ms = grace_ms;
			atomic_fetch_add(&u->f->runs_ever, 1);
			atomic_store(&r->pgid, pgid);  /* last: complete */
			return i;
		}
	}
	return -1;
}

void kxgpu_usage_end_run(kxgpu_usage *u, int i)
{
	if (u->f && i >= 0 && i < KXGPU_USAGE_RUNS)
		atomic_store(&u->f->runs[i].pgid, 0);
}
