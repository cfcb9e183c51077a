/*
 * container.c - a resumed child in a lean container (rfork.h: struct
 * rf_container), as MITOSIS's fork-function runs its children: fresh
 * mount, UTS and IPC namespaces, a PID namespace (the child is its 1), a
 * fresh network namespace with only lo (or a named one), a read-only root
 * and cgroups with memory, CPU and process limits.
 *
 * The resuming process (R) makes the cgroups, opens their cgroup.procs,
 * unshares the namespaces and forks the child-to-be (C); C goes on with the
 * resume and is what the parent's image replaces.  R stays outside:
 * it passes signals on to C, and when C is gone it kills what is left in
 * the cgroups, removes them and exits as C did.  Until the switch C can
 * still fail with a message: it writes it to a pipe R reads (the restorer
 * closes the pipe: EOF means C switched), R cleans up and rf_resume
 * returns it.  Right before the switch C brings lo up, sets its host name,
 * builds its mounts (the root's files are open already: the restorer maps
 * descriptors, not paths) and joins the cgroups; its pager was started
 * before the join, so the pager's CPU and memory are not the child's.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CG_ROOT "/sys/fs/cgroup"

static pid_t child_pid;   /* R: C, for the signals it passes on */

int rf_parse_size(const char *text, uint64_t *bytes)
{
	char *end;
	double v = strtod(text, &end);
	const char *units = "KMGT";
	const char *u = *end ? strchr(units, *end & ~0x20) : NULL;
	if (end == text || v < 0 || (*end && (!u || (end[1] && strcmp(end + 1, "iB") &&
	                                              strcmp(end + 1, "B")))))
		return -1;
	for (const char *k = units; u && k <= u; k++)
		v *= 1024;
	*bytes = (uint64_t)v;
	return 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	int e = errno;
	close(fd);
	errno = e;
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* The group of controller ctl (made once: DIR/kxrun-rfork-PID, in cgroup
 * v2 when its root has the controller, else in the v1 hierarchy of that
 * name) with file set to value (v1's names; v2's given beside). */
static int make_group(struct rf_ctrun *run, const char *ctl, const char *v1file,
                      const char *v1value, const char *v2file, const char *v2value,
                      char *err, size_t errlen)
{
	char dir[256], path[320], controllers[256] = "";
	int fd = open(CG_ROOT "/cgroup.controllers", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, controllers, sizeof controllers - 1);
		controllers[n > 0 ? n : 0] = 0;
		close(fd);
	}
	int v2 = strstr(controllers, ctl) != NULL;
	if (v2)
		snprintf(dir, sizeof dir, CG_ROOT "/kxrun-rfork-%d", (int)getpid());
	else
		snprintf(dir, sizeof dir, CG_ROOT "/%s/kxrun-rfork-%d", ctl, (int)getpid());
	int i = 0;
	while (i < run->ngroups && strcmp(run->groups[i], dir))
		i++;
	if (i == run->ngroups) {
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "container: cannot create the cgroup %s: %s%s", dir,
			         strerror(errno), errno == ENOENT ? " (no such controller mounted)" : "");
			return -1;
		}
		snprintf(run->groups[run->ngroups++], sizeof run->groups[0], "%s", dir);
		snprintf(path, sizeof path, "%s/cgroup.procs", dir);
		run->procs[i] = open(path, O_WRONLY | O_CLOEXEC);
		if (run->procs[i] < 0) {
			snprintf(err, errlen, "container: %s: %s", path, strerror(errno));
			return -1;
		}
	}
	const char *value = v2 ? v2value : v1value;
	snprintf(path, sizeof path, "%s/%s", dir, v2 ? v2file : v1file);
	if (write_file(path, value) < 0) {
		snprintf(err, errlen, "container: cannot write %s to %s: %s", value, path,
		         strerror(errno));
		return -1;
	}
	return 0;
}

/* Kills what is left in the groups and removes them. */
static void remove_groups(struct rf_ctrun *run)
{
	for (int i = 0; i < run->ngroups; i++) {
		if (run->procs[i] >= 0)
			close(run->procs[i]);
		char path[320], buf[4096];
		snprintf(path, sizeof path, "%s/cgroup.procs", run->groups[i]);
		for (int tries = 0; tries < 200 && rmdir(run->groups[i]) < 0 && errno == EBUSY; tries++) {
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
			if (fd >= 0)
				close(fd);
			buf[n > 0 ? n : 0] = 0;
			for (char *p = buf; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
				if (atoi(p) > 0)
					kill(atoi(p), SIGKILL);
			nanosleep(&(struct timespec){0, 5000000}, NULL);
		}
	}
	run->ngroups = 0;
}

static int make_groups(const struct rf_container *ct, struct rf_ctrun *run, char *err,
                       size_t errlen)
{
	char v[64], v2[80];
	if (ct->memory) {
		snprintf(v, sizeof v, "%llu", (unsigned long long)ct->memory);
		if (make_group(run, "memory", "memory.limit_in_bytes", v, "memory.max", v, err,
		               errlen) < 0)
			return -1;
	}
	if (ct->cpus > 0) {
		long quota = (long)(ct->cpus * 100000);
		snprintf(v, sizeof v, "%ld", quota < 1000 ? 1000 : quota);
		snprintf(v2, sizeof v2, "%s 100000", v);
		if (make_group(run, "cpu", "cpu.cfs_period_us", "100000", "cpu.max", v2, err,
		               errlen) < 0 ||
		    make_group(run, "cpu", "cpu.cfs_quota_us", v, "cpu.max", v2, err, errlen) < 0)
			return -1;
	}
	if (ct->pids) {
		snprintf(v, sizeof v, "%llu", (unsigned long long)ct->pids);
		if (make_group(run, "pids", "pids.max", v, "pids.max", v, err, errlen) < 0)
			return -1;
	}
	return 0;
}

static void pass_on(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

/* R: C's message, or its end once it switched. */
static __attribute__((noreturn)) void supervise(struct rf_ctrun *run)
{
	/* nothing of the process R was forked from stays open for C's life
	 * (rfork.spawn's kxrun: its pipes, its report pipe, its loop) */
	syscall(SYS_close_range, 3, ~0U, 0);
	int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		signal(sigs[i], pass_on);
	int status = 0;
	while (waitpid(child_pid, &status, 0) < 0 && errno == EINTR)
		;
	remove_groups(run);
	if (WIFSIGNALED(status)) {
		signal(WTERMSIG(status), SIG_DFL);
		sigset_t all;
		sigfillset(&all);
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		kill(getpid(), WTERMSIG(status));
	}
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

int rf_container_start(const struct rf_container *ct, struct rf_ctrun *run, char *err,
                       size_t errlen)
{
	memset(run, 0, sizeof *run);
	run->pipe = -1;
	if (make_groups(ct, run, err, errlen) < 0)
		goto fail;
	/* the PID namespace is for R's children; the others C makes for
	 * itself (C's pivot_root would move R's root too) */
	if (ct->pid && unshare(CLONE_NEWPID) < 0) {
		snprintf(err, errlen, "container: cannot make a PID namespace: %s%s", strerror(errno),
		         errno == EPERM ? " (needs root: CAP_SYS_ADMIN)" : "");
		goto fail;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "container: pipe: %s", strerror(errno));
		goto fail;
	}
	child_pid = fork();
	if (child_pid < 0) {
		snprintf(err, errlen, "container: fork: %s", strerror(errno));
		close(p[0]), close(p[1]);
		goto fail;
	}
	if (child_pid == 0) {
		close(p[0]);
		run->pipe = p[1];
		if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
		            (ct->net == RF_NET_NEW ? CLONE_NEWNET : 0)) < 0) {
			snprintf(err, errlen, "container: cannot make namespaces: %s%s", strerror(errno),
			         errno == EPERM ? " (needs root: CAP_SYS_ADMIN)" : "");
			rf_container_failed(run, err);
		}
		if (ct->net == RF_NET_NAMED) {
			char path[300];
			snprintf(path, sizeof path, strchr(ct->netns, '/') ? "%s" : "/run/netns/%s",
			         ct->netns);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
				snprintf(err, errlen, "container: network namespace %s: %s", path,
				         strerror(errno));
				rf_container_failed(run, err);
			}
			close(fd);
		}
		return 0;
	}
	close(p[1]);
	for (int i = 0; i < run->ngroups; i++) {
		close(run->procs[i]);
		run->procs[i] = -1;
	}
	char msg[512];
	ssize_t n;
	while ((n = read(p[0], msg, sizeof msg - 1)) < 0 && errno == EINTR)
		;
	close(p[0]);
	if (n <= 0)
		supervise(run);   /* switched: R is C's stand-in from now on */
	msg[n] = 0;
	waitpid(child_pid, NULL, 0);
	snprintf(err, errlen, "%s", msg);
fail:
	remove_groups(run);
	return -1;
}

void rf_container_failed(struct rf_ctrun *run, const char *err)
{
	if (write(run->pipe, err, strlen(err)) < 0)
		_exit(1);
	_exit(1);
}

static int lo_up(char *err, size_t errlen)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	int ok = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 &&
	         (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
	if (!ok)
		snprintf(err, errlen, "container: cannot bring lo up: %s", strerror(errno));
	if (s >= 0)
		close(s);
	return ok ? 0 : -1;
}

static int is_dir(const char *root, const char *sub, char *path, size_t len)
{
	struct stat st;
	snprintf(path, len, "%s/%s", root, sub);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The root: rootfs bound read-only with /proc (of the PID namespace), /dev
 * (the host's) and a /tmp (tmpfs) where it has those folders; without a
 * rootfs the host's, with a /proc of the PID namespace. */
static int mounts(const struct rf_container *ct, char *err, size_t errlen)
{
	char path[4200];
	const char *what = "/";
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		goto fail;
	if (!ct->rootfs) {
		what = "/proc";
		if (ct->pid && mount("proc", "/proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL) < 0)
			goto fail;
		return 0;
	}
	what = ct->rootfs;
	if (mount(ct->rootfs, ct->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
		goto fail;
	if (mount(NULL, ct->rootfs, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
		goto fail;
	if (is_dir(ct->rootfs, "proc", path, sizeof path) && (what = "/proc", 1) &&
	    (ct->pid ? mount("proc", path, "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL)
	             : mount("/proc", path, NULL, MS_BIND | MS_REC, NULL)) < 0)
		goto fail;
	if (is_dir(ct->rootfs, "dev", path, sizeof path) && (what = "/dev", 1) &&
	    mount("/dev", path, NULL, MS_BIND | MS_REC, NULL) < 0)
		goto fail;
	if (is_dir(ct->rootfs, "tmp", path, sizeof path) && (what = "/tmp", 1) &&
	    mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777") < 0)
		goto fail;
	what = ct->rootfs;
	if (chdir(ct->rootfs) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
	    umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "container: mounting %s: %s", what, strerror(errno));
	return -1;
}

int rf_container_finish(const struct rf_container *ct, struct rf_ctrun *run, char *err,
                        size_t errlen)
{
	if (ct->net == RF_NET_NEW && lo_up(err, errlen) < 0)
		return -1;
	if (ct->hostname && sethostname(ct->hostname, strlen(ct->hostname)) < 0) {
		snprintf(err, errlen, "container: hostname %s: %s", ct->hostname, strerror(errno));
		return -1;
	}
	if (mounts(ct, err, errlen) < 0)
		return -1;
	for (int i = 0; i < run->ngroups; i++) {
		if (write(run->procs[i], "0", 1) != 1) {
			snprintf(err, errlen, "container: joining %s: %s", run->groups[i], strerror(errno));
			return -1;
		}
		close(run->procs[i]);
	}
	return 0;
}
