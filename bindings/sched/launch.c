/* launch.c - the task launcher process (see launch.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launch.h"

extern char **environ;

const char *launch_stage_name(int stage)
{
	static const char *const names[] = { "exec", "join cgroup", "open stdin",
		"open stdout", "open stderr", "chdir" };
	return stage >= 0 && stage < STAGE_LIMIT ? names[stage] : "start";
}

#define MAX_JOBS 4096
#define MAX_OWNED 1024

struct job {
	uint32_t id;
	pid_t pid;         /* 0: free slot */
	int ended;         /* reaped; wstatus valid */
	int killed;        /* we killed it because the worker went */
	int wstatus;
	int64_t ts_start, ts_end, cpu_us;
	char *tag;
};

/* The launcher's whole state: it is a single-threaded process. */
static struct {
	int sock, sfd, keep_fd;
	char *const *recorder;
	const char *recorder_input;
	struct job jobs[MAX_JOBS];
	char *owned[MAX_OWNED];
	int nowned;
	char buf[LAUNCH_MSG_MAX];
} S;

/* What the child of clone() needs; it writes err and stage back (the
 * memory is shared until it execs). */
struct spawn {
	const char *procs, *io[3], *cwd;
	char **argv, **envp;
	const char *path;       /* $PATH for the search */
	volatile int err, stage;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void reply(uint32_t type, uint32_t job, int32_t a, int32_t b, int64_t t1, int64_t t2)
{
	struct launch_msg m = { .type = type, .job = job, .a = a, .b = b, .t1 = t1, .t2 = t2 };
	/* the worker may be gone: no SIGPIPE, and nothing else to do */
	while (send(S.sock, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

static void fail_child(struct spawn *sp, int stage)
{
	sp->err = errno;
	sp->stage = stage;
	_exit(127);
}

/* The child, between clone and exec: system calls only. */
static int child_main(void *arg)
{
	struct spawn *sp = arg;
	sigset_t none;
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (sp->procs[0]) {
		int fd = open(sp->procs, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "0", 1) != 1)
			fail_child(sp, STAGE_CGROUP);
		close(fd);
	}
	for (int i = 0; i < 3; i++) {
		const char *p = sp->io[i][0] ? sp->io[i] : "/dev/null";
		int fd = open(p, i == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0)
			fail_child(sp, STAGE_STDIN + i);
		if (fd != i) {
			dup2(fd, i);
			close(fd);
		}
	}
	if (sp->cwd[0] && chdir(sp->cwd) < 0)
		fail_child(sp, STAGE_CWD);
	close_range(3, ~0U, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	const char *file = sp->argv[0];
	if (strchr(file, '/')) {
		execve(file, sp->argv, sp->envp);
		fail_child(sp, STAGE_EXEC);
	}
	/* $PATH search as execvp does it: EACCES is kept if nothing better */
	char buf[PATH_MAX];
	int seen_eacces = 0;
	size_t flen = strlen(file);
	for (const char *p = sp->path; ; ) {
		const char *end = strchr(p, ':');
		size_t dlen = end ? (size_t)(end - p) : strlen(p);
		if (dlen + flen + 2 <= sizeof buf) {
			if (dlen == 0) {
				buf[0] = '.';
				dlen = 1;
			} else {
				memcpy(buf, p, dlen);
			}
			buf[dlen] = '/';
			memcpy(buf + dlen + 1, file, flen + 1);
			execve(buf, sp->argv, sp->envp);
			if (errno == EACCES)
				seen_eacces = 1;
			else if (errno != ENOENT && errno != ENOTDIR)
				fail_child(sp, STAGE_EXEC);
		}
		if (!end)
			break;
		p = end + 1;
	}
	errno = seen_eacces ? EACCES : ENOENT;
	fail_child(sp, STAGE_EXEC);
	return 127;
}

static struct job *job_find(uint32_t id)
{
	for (int i = 0; i < MAX_JOBS; i++)
		if (S.jobs[i].pid && S.jobs[i].id == id)
			return &S.jobs[i];
	return NULL;
}

static void job_free(struct job *j)
{
	free(j->tag);
	memset(j, 0, sizeof *j);
}

static char child_stack[64 * 1024] __attribute__((aligned(16)));

/* What starting one request came to. */
struct started {
	pid_t pid;
	int err, stage;
	int64_t t;
	const char *tag;   /* in the payload */
};

/* Starts the command of a spawn request: clone (CLONE_VM | CLONE_VFORK)
 * and exec.  In a zygote (extra = CLONE_PARENT) the command is born in the
 * zygote's cgroup as the launcher's child, and joins nothing. */
static void start_request(const struct launch_msg *m, char *payload, size_t len, int extra,
			  struct started *r)
{
	char *strs[LAUNCH_SPAWN_FIXED];
	size_t n = LAUNCH_SPAWN_FIXED + m->argc + m->envc;
	char **vec = calloc(n + 2, sizeof *vec);
	memset(r, 0, sizeof *r);
	r->stage = STAGE_EXEC;
	if (!vec || m->argc == 0) {
		r->err = vec ? EINVAL : ENOMEM;
		free(vec);
		return;
	}
	/* split the payload into its strings */
	size_t k = 0;
	for (size_t off = 0; off < len && k < n; k++) {
		char *s = payload + off;
		size_t l = strnlen(s, len - off);
		if (off + l == len)
			break;   /* not terminated */
		if (k < LAUNCH_SPAWN_FIXED)
			strs[k] = s;
		else
			vec[k - LAUNCH_SPAWN_FIXED] = s;
		off += l + 1;
	}
	if (k != n) {
		r->err = EINVAL;
		free(vec);
		return;
	}
	/* argv is vec[0..argc); the envc entries after it are added to the
	 * launcher's environment (an entry of the same name replaced) */
	char **argv = vec, **envp = environ, **merged = NULL;
	char **added = vec + m->argc;
	if (m->envc) {
		size_t ne = 0;
		while (environ[ne])
			ne++;
		merged = calloc(ne + m->envc + 1, sizeof *merged);
		if (!merged) {
			r->err = ENOMEM;
			free(vec);
			return;
		}
		size_t k2 = 0;
		for (size_t i = 0; i < ne; i++) {
			size_t nl = strcspn(environ[i], "=");
			int replaced = 0;
			for (uint32_t e = 0; e < m->envc && !replaced; e++)
				replaced = strncmp(added[e], environ[i], nl) == 0 && added[e][nl] == '=';
			if (!replaced)
				merged[k2++] = environ[i];
		}
		for (uint32_t e = 0; e < m->envc; e++)
			merged[k2++] = added[e];
		envp = merged;
	}
	/* added's pointers are in merged now: argv ends where env began */
	vec[m->argc] = NULL;
	const char *path = getenv("PATH");
	struct spawn sp = { .procs = extra ? "" : strs[0], .io = { strs[1], strs[2], strs[3] },
			    .cwd = strs[4], .argv = argv, .envp = envp,
			    .path = path ? path : "/usr/local/bin:/usr/bin:/bin" };
	sp.err = 0;
	pid_t pid = clone(child_main, child_stack + sizeof child_stack,
			  CLONE_VM | CLONE_VFORK | SIGCHLD | extra, &sp);
	r->t = now_us();
	r->tag = strs[5];
	if (pid < 0) {
		r->err = errno;
	} else if (sp.err) {
		/* it exited; the launcher reaps it (it is the parent either way)
		 * and finds no job for it */
		if (!extra)
			waitpid(pid, NULL, 0);
		r->err = sp.err;
		r->stage = sp.stage;
	} else {
		r->pid = pid;
	}
	free(merged);
	free(vec);
}

/* ---- zygotes: one per owned cgroup, living in it ---------------------------
 *
 * Moving a process into a cgroup v1 takes the kernel's global threadgroup
 * lock for writing (an RCU grace period: up to tens of ms on a busy
 * machine).  A command forked by a process already in the cgroup is born
 * there: each owned cgroup has a zygote, moved in once, that clones the
 * commands (CLONE_PARENT: they are still the launcher's children). */

struct zygote {
	pid_t pid;   /* 0: none (or dead) */
	int sock;
};
static struct zygote zyg[MAX_OWNED];

static _Noreturn void zygote_main(int sock, const char *dir)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	close(S.sock);
	if (S.keep_fd >= 0)
		close(S.keep_fd);
	close(S.sfd);
	char procs[PATH_MAX];
	size_t dl = strlen(dir);
	if (dl + sizeof "/cgroup.procs" > sizeof procs)
		_exit(1);
	memcpy(procs, dir, dl);
	memcpy(procs + dl, "/cgroup.procs", sizeof "/cgroup.procs");
	int fd = open(procs, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "0", 1) != 1)
		_exit(1);
	close(fd);
	for (;;) {
		ssize_t n = recv(sock, S.buf, sizeof S.buf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < (ssize_t)sizeof(struct launch_msg))
			_exit(0);
		struct launch_msg m;
		memcpy(&m, S.buf, sizeof m);
		struct started r;
		start_request(&m, S.buf + sizeof m, (size_t)n - sizeof m, CLONE_PARENT, &r);
		struct launch_msg out = { .type = r.err ? LAUNCH_FAILED : LAUNCH_STARTED, .job = m.job,
					  .a = r.err ? r.err : r.pid, .b = r.stage, .t1 = r.t };
		if (send(sock, &out, sizeof out, MSG_NOSIGNAL) < 0)
			_exit(0);
	}
}

static void zygote_start(int i)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		zygote_main(sv[1], S.owned[i]);
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return;
	}
	zyg[i].pid = pid;
	zyg[i].sock = sv[0];
}

static void zygote_drop(int i)
{
	if (zyg[i].pid) {
		kill(zyg[i].pid, SIGKILL);
		close(zyg[i].sock);
	}
	zyg[i].pid = 0;
}

/* The zygote of the cgroup whose cgroup.procs is `procs`, or -1. */
static int zygote_for(const char *procs)
{
	size_t pl = strlen(procs);
	for (int i = 0; i < S.nowned; i++) {
		if (!S.owned[i] || !zyg[i].pid)
			continue;
		size_t dl = strlen(S.owned[i]);
		if (pl == dl + strlen("/cgroup.procs") && memcmp(procs, S.owned[i], dl) == 0 &&
		    strcmp(procs + dl, "/cgroup.procs") == 0)
			return i;
	}
	return -1;
}

/* Asks zygote i to start the request; 0, or -1 when it could not (then
 * the launcher starts it itself). */
static int zygote_spawn(int i, size_t n, struct started *r)
{
	if (send(zyg[i].sock, S.buf, n, MSG_NOSIGNAL) < 0) {
		zygote_drop(i);
		return -1;
	}
	struct pollfd p = { zyg[i].sock, POLLIN, 0 };
	struct launch_msg out;
	if (poll(&p, 1, 10000) <= 0 || recv(zyg[i].sock, &out, sizeof out, 0) != sizeof out) {
		zygote_drop(i);
		return -1;
	}
	memset(r, 0, sizeof *r);
	r->t = out.t1;
	if (out.type == LAUNCH_FAILED) {
		r->err = out.a;
		r->stage = out.b;
	} else {
		r->pid = out.a;
	}
	return 0;
}

static void do_spawn(const struct launch_msg *m, char *payload, size_t len, size_t n)
{
	int64_t received = now_us();
	struct job *slot = NULL;
	for (int i = 0; i < MAX_JOBS && !slot; i++)
		if (!S.jobs[i].pid)
			slot = &S.jobs[i];
	if (!slot) {
		reply(LAUNCH_FAILED, m->job, EAGAIN, STAGE_EXEC, 0, 0);
		return;
	}
	struct started r;
	int z = len > 0 ? zygote_for(payload) : -1;
	if (z < 0 || zygote_spawn(z, n, &r) < 0)
		start_request(m, payload, len, 0, &r);
	if (r.err) {
		reply(LAUNCH_FAILED, m->job, r.err, r.stage, 0, 0);
		return;
	}
	/* the tag is the 6th string of the payload (the zygote's r.tag is in
	 * its own memory) */
	const char *tag = payload;
	for (int i = 0; i < 5; i++)
		tag += strlen(tag) + 1;
	slot->id = m->job;
	slot->pid = r.pid;
	slot->ts_start = r.t;
	slot->tag = strdup(tag);
	reply(LAUNCH_STARTED, m->job, r.pid, 0, r.t, received);
}

static void reap(void)
{
	for (;;) {
		int st;
		struct rusage ru;
		pid_t pid = wait4(-1, &st, WNOHANG, &ru);
		if (pid <= 0)
			return;
		for (int i = 0; i < S.nowned; i++)
			if (zyg[i].pid == pid)
				zygote_drop(i);
		for (int i = 0; i < MAX_JOBS; i++) {
			struct job *j = &S.jobs[i];
			if (j->pid != pid || j->ended)
				continue;
			j->ended = 1;
			j->wstatus = st;
			j->ts_end = now_us();
			j->cpu_us = (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
				    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
			reply(LAUNCH_EXITED, j->id, st, 0, j->ts_end, j->cpu_us);
			break;
		}
	}
}

/* Appends the decimal of v to p; returns the end. */
static char *put_int(char *p, int64_t v)
{
	char tmp[24];
	int n = 0;
	int neg = v < 0;
	uint64_t u = neg ? (uint64_t)-v : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (neg)
		*p++ = '-';
	while (n)
		*p++ = tmp[--n];
	return p;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void kill_cgroup(const char *dir)
{
	char path[PATH_MAX], buf[4096];
	size_t dl = strlen(dir);
	if (dl + sizeof "/cgroup.procs" > sizeof path)
		return;
	memcpy(path, dir, dl);
	memcpy(path + dl, "/cgroup.procs", sizeof "/cgroup.procs");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	for (ssize_t i = 0; i < n; ) {
		long pid = 0;
		while (i < n && buf[i] >= '0' && buf[i] <= '9')
			pid = pid * 10 + (buf[i++] - '0');
		if (pid > 0)
			kill((pid_t)pid, SIGKILL);
		i++;
	}
}

/* The worker is gone (or told us to go): nothing of its tasks survives it,
 * except the results that ended on their own, which go to the recorder. */
static _Noreturn void finish(void)
{
	int running = 0;
	for (int i = 0; i < S.nowned; i++)
		zygote_drop(i);
	for (int i = 0; i < MAX_JOBS; i++) {
		struct job *j = &S.jobs[i];
		if (j->pid && !j->ended) {
			kill(-j->pid, SIGKILL);
			kill(j->pid, SIGKILL);
			j->killed = 1;
			running++;
		}
	}
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	for (int tries = 0; running && tries < 500; tries++) {
		int st;
		struct rusage ru;
		pid_t pid = wait4(-1, &st, WNOHANG, &ru);
		if (pid < 0 && errno == ECHILD)
			break;
		if (pid <= 0) {
			nanosleep(&tick, NULL);
			continue;
		}
		for (int i = 0; i < MAX_JOBS; i++) {
			struct job *j = &S.jobs[i];
			if (j->pid == pid && !j->ended) {
				j->ended = 1;
				j->wstatus = st;
				j->ts_end = now_us();
				running--;
				/* it may have ended on its own just before the kill */
				if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
					j->killed = 0;
			}
		}
	}
	/* whatever the tasks left in the worker's cgroups goes with them */
	for (int tries = 0; tries < 200; tries++) {
		int left = 0;
		for (int i = 0; i < S.nowned; i++) {
			if (!S.owned[i])
				continue;
			kill_cgroup(S.owned[i]);
			if (rmdir(S.owned[i]) == 0 || errno == ENOENT)
				S.owned[i] = NULL;
			else
				left = 1;
		}
		if (!left)
			break;
		nanosleep(&tick, NULL);
	}
	int fd = -1;
	for (int i = 0; i < MAX_JOBS; i++) {
		struct job *j = &S.jobs[i];
		if (!j->pid || !j->ended || j->killed)
			continue;
		if (fd < 0) {
			if (!S.recorder)
				break;
			fd = memfd_create("kxrun-sched-orphans", 0);
			if (fd < 0)
				_exit(1);
			write_all(fd, S.recorder_input, strlen(S.recorder_input));
		}
		/* pid wstatus ts_start_us ts_end_us cpu_us tag */
		char line[128], *p = line;
		p = put_int(p, j->pid); *p++ = ' ';
		p = put_int(p, j->wstatus); *p++ = ' ';
		p = put_int(p, j->ts_start); *p++ = ' ';
		p = put_int(p, j->ts_end); *p++ = ' ';
		p = put_int(p, j->cpu_us); *p++ = ' ';
		write_all(fd, line, (size_t)(p - line));
		write_all(fd, j->tag, strlen(j->tag));
		write_all(fd, "\n", 1);
	}
	if (fd < 0)
		_exit(0);
	lseek(fd, 0, SEEK_SET);
	dup2(fd, 0);
	close(fd);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* the recorder holds keep_fd (the node's lock) until it is done */
	execve(S.recorder[0], S.recorder, environ);
	_exit(127);
}

static void on_message(ssize_t n)
{
	struct launch_msg m;
	if ((size_t)n < sizeof m)
		return;
	memcpy(&m, S.buf, sizeof m);
	char *payload = S.buf + sizeof m;
	size_t len = (size_t)n - sizeof m;
	struct job *j;
	switch (m.type) {
	case LAUNCH_SPAWN:
		do_spawn(&m, payload, len, (size_t)n);
		break;
	case LAUNCH_ACK:
		if ((j = job_find(m.job)) && j->ended)
			job_free(j);
		break;
	case LAUNCH_KILL:
		if ((j = job_find(m.job)) && !j->ended)
			kill(-j->pid, m.a);
		break;
	case LAUNCH_OWN:
		if (S.nowned < MAX_OWNED && len > 0 && payload[len - 1] == 0) {
			S.owned[S.nowned] = strdup(payload);
			if (S.owned[S.nowned])
				zygote_start(S.nowned);
			S.nowned++;
		}
		break;
	}
}

static _Noreturn void launcher_main(void)
{
	for (;;) {
		struct pollfd p[2] = { { S.sock, POLLIN, 0 }, { S.sfd, POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			finish();
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(S.sfd, &si, sizeof si) == sizeof si) {
				if (si.ssi_signo != SIGCHLD)
					finish();
			}
			reap();
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(S.sock, S.buf, sizeof S.buf, MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				finish();
			if (n > 0)
				on_message(n);
		}
	}
}

pid_t launch_fork(int *sock, char *const *recorder, const char *recorder_input, int keep_fd)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	int big = LAUNCH_MSG_MAX + 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		close(sv[0]);
		close(sv[1]);
		return -e;
	}
	if (pid > 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		close(sv[1]);
		*sock = sv[0];
		return pid;
	}
	/* the launcher: signals blocked; every handler of the worker's gone */
	setpgid(0, 0);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	/* our descriptors at 3 (socket) and 4 (kept), the rest closed; the
	 * kept one stays open across the recorder's exec */
	int sock_hi = fcntl(sv[1], F_DUPFD, 64);
	int keep_hi = keep_fd >= 0 ? fcntl(keep_fd, F_DUPFD, 64) : -1;
	if (sock_hi < 0 || dup2(sock_hi, 3) < 0 || (keep_fd >= 0 && (keep_hi < 0 || dup2(keep_hi, 4) < 0)))
		_exit(1);
	keep_fd = keep_fd >= 0 ? 4 : -1;
	close_range(keep_fd >= 0 ? 5 : 4, ~0U, 0);
	S.sock = 3;
	S.keep_fd = keep_fd;
	S.recorder = recorder;
	S.recorder_input = recorder_input ? recorder_input : "";
	sigset_t mine;
	sigemptyset(&mine);
	sigaddset(&mine, SIGCHLD);
	sigaddset(&mine, SIGTERM);
	sigaddset(&mine, SIGINT);
	sigaddset(&mine, SIGHUP);
	S.sfd = signalfd(-1, &mine, SFD_NONBLOCK | SFD_CLOEXEC);
	if (S.sfd < 0)
		_exit(1);
	launcher_main();
}
