/*
 * cleanup.c - ending everything an experiment ever ran (vtime.h): at
 * exp:stop(), when its controller dies (the supervisor), and what a dead
 * controller left (vt_cleanup).
 *
 * A dilated process is found, however it detached (left its process
 * group, setsid, double fork, reparented), by the clock file named in its
 * environment: KXRUN_VTIME_SHM=/dev/shm/kxrun-vtime-<controller>-<n> is
 * inherited by everything it starts.  The freezer backends' cgroup holds
 * even a process that cleared its environment.
 */
#include "vtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SHM_DIR "/dev/shm"
#define MARK "KXRUN_VTIME_SHM=" SHM_DIR "/"

/* SIGKILL (and SIGCONT, so that a stopped one goes) to pid, named to note
 * the first time. */
void vt_kill_noted(pid_t pid, struct vt_seen *seen, const struct vt_noter *n)
{
	char path[64], comm[64] = "?", what[160];
	if (pid <= 0 || pid == getpid())
		return;
	for (int i = 0; i < seen->n; i++)
		if (seen->pid[i] == pid) {
			kill(pid, SIGKILL);
			return;
		}
	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	if (vt_read_file(path, comm, sizeof comm) > 0)
		comm[strcspn(comm, "\n")] = 0;
	if (kill(pid, SIGKILL) < 0)
		return;
	kill(pid, SIGCONT);
	if (seen->n < (int)(sizeof seen->pid / sizeof seen->pid[0]))
		seen->pid[seen->n++] = pid;
	if (n && n->fn) {
		snprintf(what, sizeof what, "ended process %d (%s)", (int)pid, comm);
		n->fn(n->ud, n->ctl, what);
	}
}

/* The value of KXRUN_VTIME_SHM in pid's environment (its clock file's
 * name under /dev/shm), or 0.  A zombie's environment reads empty. */
static int env_mark(pid_t pid, char *name, size_t n)
{
	char path[64], env[16384];
	snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
	int len = vt_read_file(path, env, sizeof env);
	for (int i = 0; i < len; i += (int)strlen(env + i) + 1)
		if (!strncmp(env + i, MARK, strlen(MARK))) {
			snprintf(name, n, "%s", env + i + strlen(MARK));
			return 1;
		}
	return 0;
}

/* Kills every process whose clock file is `name` (or, name ending in '-',
 * starts with it), until a pass over /proc finds none: what they fork
 * meanwhile goes in the next pass.  Returns the number killed. */
static int sweep(const char *name, struct vt_seen *seen,
                 const struct vt_noter *n)
{
	size_t len = strlen(name);
	int prefix = len && name[len - 1] == '-';
	int before = seen->n;
	for (int pass = 0; pass < 50; pass++) {
		int found = 0;
		DIR *d = opendir("/proc");
		struct dirent *de;
		while (d && (de = readdir(d))) {
			char mark[256];
			pid_t pid = atoi(de->d_name);
			if (pid <= 0 || !env_mark(pid, mark, sizeof mark))
				continue;
			if (prefix ? strncmp(mark, name, len) : strcmp(mark, name))
				continue;
			vt_kill_noted(pid, seen, n);
			found = 1;
		}
		if (d)
			closedir(d);
		if (!found)
			break;
		struct timespec t = {0, 1000 * 1000}; /* SIGKILL takes a moment */
		nanosleep(&t, NULL);
	}
	return seen->n - before;
}

/* 1 when pid is stopped (T) in no live member's process group. */
static int escaped_and_stopped(const struct vt_exp *e, pid_t pid)
{
	pid_t g;
	if (vt_proc_state(pid, &g) != 'T')
		return 0;
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].alive && e->procs[i].pid == g)
			return 0;
	return 1;
}

int vt_continue_escaped(struct vt_exp *e)
{
	char buf[8192];
	int n = 0;
	if (e->cg_path[0]) {
		/* the cgroup holds them all, even one that cleared its environment */
		char path[240];
		snprintf(path, sizeof path, "%s/cgroup.procs", e->cg_path);
		int len = vt_read_file(path, buf, sizeof buf);
		for (char *s = len > 0 ? strtok(buf, "\n") : NULL; s; s = strtok(NULL, "\n"))
			if (escaped_and_stopped(e, atoi(s)) && kill(atoi(s), SIGCONT) == 0)
				n++;
		return n;
	}
	const char *name = e->shm_path + strlen(SHM_DIR "/");
	DIR *d = opendir("/proc");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char mark[256];
		pid_t pid = atoi(de->d_name);
		/* the state first: stopped processes are few, environments long */
		if (pid > 0 && escaped_and_stopped(e, pid) &&
		    env_mark(pid, mark, sizeof mark) && !strcmp(mark, name) &&
		    kill(pid, SIGCONT) == 0)
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

void vt_exp_sweep(struct vt_exp *e)
{
	struct vt_seen seen = {0};
	char err[300];
	for (int i = 0; i < e->nprocs; i++)
		if (e->procs[i].alive) {
			kill(-e->procs[i].pid, SIGKILL);
			kill(-e->procs[i].pid, SIGCONT);
		}
	sweep(e->shm_path + strlen(SHM_DIR "/"), &seen, NULL);
	if (e->cg_path[0] && vt_cg_destroy(e->cg_path, e->cgver == VT_CGV2, &seen,
	                                   NULL, err, sizeof err))
		e->cg_path[0] = 0;
}

/* When pid started, in seconds since the epoch; -1 if it is gone. */
static double started(pid_t pid)
{
	static double btime = -1, hz;
	char path[64], buf[1024];
	if (btime < 0) {
		FILE *f = fopen("/proc/stat", "re");
		long long bt = 0;
		while (f && fgets(buf, sizeof buf, f))
			if (sscanf(buf, "btime %lld", &bt) == 1)
				break;
		if (f)
			fclose(f);
		btime = (double)bt;
		hz = (double)sysconf(_SC_CLK_TCK);
	}
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (vt_read_file(path, buf, sizeof buf) < 0)
		return -1;
	char *c = strrchr(buf, ')');
	unsigned long long ticks = 0;
	/* field 22 (starttime); c points at the end of field 2 */
	if (!c || sscanf(c + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u "
	                 "%*u %*d %*d %*d %*d %*d %*d %llu", &ticks) != 1)
		return -1;
	return btime + (double)ticks / hz;
}

/* The controller pid in "kxrun-vtime-<pid>-..." is dead: gone, or another
 * process that started after `since` (epoch s; < 0: unknown) has its pid. */
static int dead_controller(const char *name, double since, pid_t *ctl)
{
	int pid;
	if (sscanf(name, "kxrun-vtime-%d-", &pid) != 1 || pid <= 0)
		return 0;
	*ctl = pid;
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return 1;
	double s = started(pid);
	return s < 0 || (since >= 0 && s > since + 1);
}

/* Everything a dead controller left: its processes, cgroups (both roots)
 * and clock files. */
static void clear_controller(pid_t ctl, int *ncg, vt_note_fn note, void *ud,
                             char *err, size_t errlen)
{
	char prefix[64], path[600], what[640];
	struct vt_seen seen = {0};
	struct vt_noter n = {note, ud, ctl};
	snprintf(prefix, sizeof prefix, "kxrun-vtime-%d-", (int)ctl);
	sweep(prefix, &seen, &n);
	char roots[2][256];
	snprintf(roots[0], sizeof roots[0], "%s", vt_v1_root());
	if (!vt_v2_root(roots[1], sizeof roots[1]))
		roots[1][0] = 0;
	for (int v = 0; v < 2; v++) {
		DIR *d = roots[v][0] ? opendir(roots[v]) : NULL;
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (strncmp(de->d_name, prefix, strlen(prefix)))
				continue;
			snprintf(path, sizeof path, "%s/%s", roots[v], de->d_name);
			if (vt_cg_destroy(path, v == 1, &seen, &n, err, errlen)) {
				(*ncg)++;
				snprintf(what, sizeof what, "removed cgroup %s", path);
				if (note)
					note(ud, ctl, what);
			}
		}
		if (d)
			closedir(d);
	}
	DIR *d = opendir(SHM_DIR);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)))
			continue;
		snprintf(path, sizeof path, SHM_DIR "/%s", de->d_name);
		snprintf(what, sizeof what, "removed clock file %s", path);
		if (unlink(path) == 0 && note)
			note(ud, ctl, what);
	}
	if (d)
		closedir(d);
}

/* Adds ctl to the list of dead controllers (once). */
static void add_dead(pid_t *dead, int *n, int cap, pid_t ctl)
{
	for (int i = 0; i < *n; i++)
		if (dead[i] == ctl)
			return;
	if (*n < cap)
		dead[(*n)++] = ctl;
}

/* The dead controllers named in dir's kxrun-vtime-* entries. */
static void dead_in_dir(const char *dir, pid_t *dead, int *n, int cap)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[600];
	while (d && (de = readdir(d))) {
		struct stat st;
		pid_t ctl;
		if (strncmp(de->d_name, "kxrun-vtime-", 12))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		double since = stat(path, &st) == 0 ? (double)st.st_ctime : -1;
		if (dead_controller(de->d_name, since, &ctl))
			add_dead(dead, n, cap, ctl);
	}
	if (d)
		closedir(d);
}

int vt_cleanup(vt_note_fn note, void *ud, char *err, size_t errlen)
{
	pid_t dead[256];
	int ndead = 0, ncg = 0;
	char root[256];
	err[0] = 0;
	/* processes of dead controllers, whatever the backend */
	DIR *d = opendir("/proc");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char mark[256];
		pid_t pid = atoi(de->d_name), ctl;
		if (pid > 0 && env_mark(pid, mark, sizeof mark) &&
		    dead_controller(mark, started(pid), &ctl))
			add_dead(dead, &ndead, 256, ctl);
	}
	if (d)
		closedir(d);
	dead_in_dir(vt_v1_root(), dead, &ndead, 256);
	if (vt_v2_root(root, sizeof root))
		dead_in_dir(root, dead, &ndead, 256);
	dead_in_dir(SHM_DIR, dead, &ndead, 256);
	for (int i = 0; i < ndead; i++)
		clear_controller(dead[i], &ncg, note, ud, err, errlen);
	return ncg;
}

/* The supervisor: waits for the controller (pidfd) to die, then ends what
 * it left.  Runs in a process of its own (`kxrun vtime supervise`). */
int vt_supervise(int pidfd, pid_t ctl, vt_note_fn note, void *ud, char *err,
                 size_t errlen)
{
	struct pollfd p = {pidfd, POLLIN, 0};
	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR) {
			vt_seterr(err, errlen, "poll on the controller's pidfd: %s",
			          strerror(errno));
			return -1;
		}
	close(pidfd);
	int ncg = 0;
	err[0] = 0;
	clear_controller(ctl, &ncg, note, ud, err, errlen);
	return err[0] ? -1 : 0;
}

pid_t vt_supervisor_start(const char *exe, char *err, size_t errlen)
{
	extern char **environ;
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (pidfd < 0) {
		vt_seterr(err, errlen, "pidfd_open: %s", strerror(errno));
		return -1;
	}
	/* a copy without close-on-exec for the supervisor, closed right after
	 * (one thread forks here: no other child can inherit it) */
	int fd = fcntl(pidfd, F_DUPFD, 10);
	close(pidfd);
	if (fd < 0) {
		vt_seterr(err, errlen, "dup: %s", strerror(errno));
		return -1;
	}
	char ctl[24], fdarg[24];
	snprintf(ctl, sizeof ctl, "%d", (int)getpid());
	snprintf(fdarg, sizeof fdarg, "%d", fd);
	char *argv[] = {(char *)exe, "vtime", "supervise", ctl, fdarg, NULL};
	posix_spawnattr_t a;
	posix_spawn_file_actions_t fa;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_init(&a);
	/* its own session: a terminal's Ctrl-C or a kill of kxrun's group
	 * does not reach it */
	posix_spawnattr_setflags(&a, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
	                         POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setsigmask(&a, &none);
	posix_spawnattr_setsigdefault(&a, &all);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawn(&pid, exe, &fa, &a, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&a);
	close(fd);
	if (rc) {
		vt_seterr(err, errlen, "%s: %s", exe, strerror(rc));
		return -1;
	}
	return pid;
}
