/*
 * members.c - the processes running in a partition.  See members.h.
 */
#include "members.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether the environment of pid holds the entry `entry` (NUL-terminated
 * entries): 1 yes, 0 no, -1 unreadable. */
static int env_has(int procfd, const char *pid, const char *entry)
{
	char path[64];
	size_t len = 0, cap = 16384, elen = strlen(entry);
	char *buf = malloc(cap);
	int fd, found = 0;
	ssize_t n;

	snprintf(path, sizeof path, "%s/environ", pid);
	fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (len + 1 == cap) {
			char *more = cap < (8u << 20) ? realloc(buf, cap * 2) : NULL;
			if (!more)
				break;  /* past 8 MiB: what we read decides */
			buf = more;
			cap *= 2;
		}
	}
	close(fd);
	if (n < 0 && len == 0) {
		free(buf);
		return -1;  /* EACCES: another user's process */
	}
	buf[len] = 0;
	for (size_t i = 0; i < len && !found; i += strlen(buf + i) + 1)
		found = strncmp(buf + i, entry, elen) == 0 && buf[i + elen] == 0;
	free(buf);
	return found;
}

/* The run whose process group p is in, if p started after its leader. */
static int run_of(const struct kxgpu_members *ms, const struct kxgpu_proc *p)
{
	for (int i = 0; i < KXGPU_USAGE_RUNS; i++)
		if (ms->runs[i].pgid > 0 && ms->runs[i].pgid == p->pgrp &&
		    p->start >= ms->runs[i].pgid_start)
			return i;
	return -1;
}

static int add(struct kxgpu_members *ms, int *cap, pid_t pid,
               const struct kxgpu_proc *p, int run)
{
	struct kxgpu_member *m;

	if (ms->n == *cap) {
		int ncap = *cap ? *cap * 2 : 16;
		m = realloc(ms->m, (size_t)ncap * sizeof *m);
		if (!m)
			return -1;
		ms->m = m;
		*cap = ncap;
	}
	m = &ms->m[ms->n++];
	m->pid = pid;
	m->run = run;
	snprintf(m->comm, sizeof m->comm, "%s", p->comm);
	m->guard = strcmp(m->comm, KXGPU_GUARD_NAME) == 0;
	return 0;
}

int kxgpu_members_find(const char *usage_path, uid_t owner,
                       struct kxgpu_members *ms, char *err, size_t errlen)
{
	char entry[4400];
	kxgpu_usage u;
	struct dirent *de;
	pid_t self = getpid();
	int procfd, cap = 0, rc = 0;
	DIR *d;

	memset(ms, 0, sizeof *ms);
	if (kxgpu_usage_attach_ro(&u, usage_path, entry, sizeof entry) != 0)
		return 0;  /* nothing ever ran in it */
	if (atomic_load(&u.f->runs_ever) == 0) {
		kxgpu_usage_detach(&u);
		return 0;
	}
	for (int i = 0; i < KXGPU_USAGE_RUNS; i++) {
		ms->runs[i] = u.f->runs[i];
		ms->runs[i].pgid = atomic_load(&u.f->runs[i].pgid);
	}
	kxgpu_usage_detach(&u);

	snprintf(entry, sizeof entry, "KXGPU_USAGE=%s", usage_path);
	d = opendir("/proc");
	if (!d) {
		snprintf(err, errlen, "cannot read /proc: %s", strerror(errno));
		return -1;
	}
	procfd = dirfd(d);
	while ((de = readdir(d)) && rc == 0) {
		struct kxgpu_proc p;
		struct stat st;
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		int run, env;

		if (*end || pid <= 0 || pid == self ||
		    fstatat(procfd, de->d_name, &st, 0) != 0 ||
		    st.st_uid != owner || kxgpu_proc_read((pid_t)pid, &p) != 0 ||
		    p.state == 'Z' || p.state == 'X')
			continue;
		run = run_of(ms, &p);
		env = env_has(procfd, de->d_name, entry);
		if (env == 1 || run >= 0)
			rc = add(ms, &cap, (pid_t)pid, &p, run);
	}
	closedir(d);
	if (rc) {
		kxgpu_members_free(ms);
		snprintf(err, errlen, "out of memory");
	}
	return rc;
}

void kxgpu_members_free(struct kxgpu_members *ms)
{
	free(ms->m);
	ms->m = NULL;
	ms->n = 0;
}

int kxgpu_members_runner_alive(const struct kxgpu_members *ms, int i)
{
	return i >= 0 && i < KXGPU_USAGE_RUNS && ms->runs[i].pgid > 0 &&
	       kxgpu_proc_alive(ms->runs[i].runner, ms->runs[i].runner_start);
}

void kxgpu_members_names(const struct kxgpu_members *ms, char *buf,
                         size_t len)
{
	size_t used = 0;

	buf[0] = 0;
	for (int i = 0; i < ms->n; i++) {
		char one[64];
		int n;

		if (ms->m[i].guard)
			continue;
		n = snprintf(one, sizeof one, "%s%s (pid %d)", used ? ", " : "",
		             ms->m[i].comm, (int)ms->m[i].pid);
		if (used + (size_t)n + 6 >= len) {
			snprintf(buf + used, len - used, ", ...");
			return;
		}
		memcpy(buf + used, one, (size_t)n + 1);
		used += (size_t)n;
	}
}
