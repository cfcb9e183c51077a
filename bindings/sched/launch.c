/* launch.c - the task launcher process (see launch.h); the zygotes and the
 * start of one command are in zygote.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fdpass.h"
#include "zygote.h"

extern char **environ;

const char *launch_stage_name(int stage)
{
	static const char *const names[] = { "exec", "join cgroup", "open stdin",
		"open stdout", "open stderr", "chdir" };
	return stage >= 0 && stage < STAGE_LIMIT ? names[stage] : "start";
}

#define MAX_JOBS 4096
#define MAX_OWNED 1024
#define MAX_EARLY 256

struct job {
	uint32_t id;
	pid_t pid;         /* 0: free slot */
	int ended;         /* reaped; wstatus valid */
	int killed;        /* we killed it because the worker went */
	int wstatus;
	int64_t ts_start, ts_end, cpu_us;
	char *tag;
};

/* A child reaped before its zygote's note named it (it ended at once). */
struct early {
	pid_t pid;
	int wstatus;
	int64_t ts_end, cpu_us;
};

/* An owned cgroup and its zygote. */
struct owned {
	char *dir;         /* NULL: removed */
	pid_t zpid;        /* 0: no zygote (any more) */
	int notes;         /* the zygote's notes come here (-1: closed) */
};

/* The launcher's whole state: it is a single-threaded process. */
static struct {
	int sock, sfd, keep_fd;
	char *const *recorder;
	const char *recorder_input;
	struct job jobs[MAX_JOBS];
	struct early early[MAX_EARLY];
	int nearly;
	struct owned owned[MAX_OWNED];
	int nowned;
	char buf[sizeof(struct launch_msg) + LAUNCH_MSG_MAX];
} S;

static void reply(uint32_t type, uint32_t job, int32_t a, int32_t b, int64_t t1, int64_t t2)
{
	struct launch_msg m = { .type = type, .job = job, .a = a, .b = b, .t1 = t1, .t2 = t2 };
	/* the worker may be gone: no SIGPIPE, and nothing else to do */
	while (send(S.sock, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
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

static struct job *job_slot(void)
{
	for (int i = 0; i < MAX_JOBS; i++)
		if (!S.jobs[i].pid)
			return &S.jobs[i];
	return NULL;
}

static struct job *job_new(uint32_t id, pid_t pid, int64_t ts_start, const char *tag)
{
	struct job *j = job_slot();
	if (!j || !(j->tag = strdup(tag)))
		return NULL;
	j->id = id;
	j->pid = pid;
	j->ts_start = ts_start;
	return j;
}

static void job_ended(struct job *j, int st, int64_t ts_end, int64_t cpu_us)
{
	j->ended = 1;
	j->wstatus = st;
	j->ts_end = ts_end;
	j->cpu_us = cpu_us;
	reply(LAUNCH_EXITED, j->id, st, 0, ts_end, cpu_us);
}

/* ---- zygotes ---------------------------------------------------------------
 *
 * Moving a process into a cgroup v1 takes the kernel's global threadgroup
 * lock for writing (an RCU grace period: up to tens of ms on a busy
 * machine).  A command forked by a process already in the cgroup is born
 * there: each owned cgroup has a zygote, moved in once.  The worker sends
 * it requests directly (one wake-up: worker -> zygote); its notes tell the
 * launcher what it started. */

/* Forks the zygote of owned cgroup i and hands the worker its request
 * socket (LAUNCH_ZYGOTE with the descriptor).  Without one the worker asks
 * the launcher, which starts the command itself. */
static void zygote_start(int i)
{
	struct owned *o = &S.owned[i];
	int notes[2], req[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, notes) < 0)
		return;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, req) < 0) {
		close(notes[0]);
		close(notes[1]);
		return;
	}
	int big = LAUNCH_MSG_MAX + 4096;
	setsockopt(notes[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
	setsockopt(notes[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	setsockopt(req[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
	setsockopt(req[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	pid_t pid = fork();
	if (pid == 0)
		zygote_main(notes[1], req[1], o->dir);
	close(notes[1]);
	close(req[1]);
	if (pid < 0) {
		close(notes[0]);
		close(req[0]);
		return;
	}
	o->zpid = pid;
	o->notes = notes[0];
	struct launch_msg m = { .type = LAUNCH_ZYGOTE, .a = pid };
	size_t dl = strlen(o->dir) + 1;
	struct iovec iov[2] = { { &m, sizeof m }, { o->dir, dl } };
	kx_sendfds(S.sock, iov, 2, &req[0], 1, MSG_NOSIGNAL);
	close(req[0]);   /* the worker's now: it alone holds the zygote's input */
}

/* A child whose zygote's note has not come yet: kept until it does (an
 * entry of the same pid is older, so stale). */
static struct early *early_take(pid_t pid, struct early *out);
static void early_add(pid_t pid, int st, int64_t ts_end, int64_t cpu_us)
{
	struct early old;
	early_take(pid, &old);
	if (S.nearly == MAX_EARLY)
		memmove(S.early, S.early + 1, sizeof S.early[0] * --S.nearly);
	S.early[S.nearly++] = (struct early){ pid, st, ts_end, cpu_us };
}

static struct early *early_take(pid_t pid, struct early *out)
{
	for (int i = 0; i < S.nearly; i++) {
		if (S.early[i].pid == pid) {
			*out = S.early[i];
			S.early[i] = S.early[--S.nearly];
			return out;
		}
	}
	return NULL;
}

/* One note of owned[i]'s zygote (n bytes in S.buf). */
static void on_note(ssize_t n)
{
	struct launch_msg m;
	if ((size_t)n < sizeof m)
		return;
	memcpy(&m, S.buf, sizeof m);
	struct early e;
	if (m.type == LAUNCH_FAILED) {
		/* the child that failed before exec is ours to reap */
		pid_t dead = (pid_t)m.t2;
		if (dead > 0 && !early_take(dead, &e))
			waitpid(dead, NULL, 0);
		reply(LAUNCH_FAILED, m.job, m.a, m.b, 0, 0);
		return;
	}
	if (m.type != LAUNCH_STARTED)
		return;
	S.buf[n < (ssize_t)sizeof S.buf ? n : (ssize_t)sizeof S.buf - 1] = 0;
	struct job *j = job_new(m.job, m.a, m.t1, S.buf + sizeof m);
	if (!j) {
		/* no room to keep it: it cannot be accounted for, so it goes */
		kill(-m.a, SIGKILL);
		kill(m.a, SIGKILL);
		reply(LAUNCH_FAILED, m.job, EAGAIN, STAGE_EXEC, 0, 0);
		return;
	}
	reply(LAUNCH_STARTED, m.job, m.a, 0, m.t1, m.t2);
	if (early_take(m.a, &e)) {
		/* ours only if that pid is reaped for good: an entry left by a
		 * command nobody noted (its zygote killed at that moment) would
		 * have a pid used again since */
		siginfo_t si = { 0 };
		if (waitid(P_PID, (id_t)m.a, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD)
			job_ended(j, e.wstatus, e.ts_end, e.cpu_us);
	}
}

/* Reads every note owned[i]'s zygote has written so far; 0 at its end. */
static int read_notes(int i)
{
	for (;;) {
		ssize_t n = recv(S.owned[i].notes, S.buf, sizeof S.buf, MSG_DONTWAIT);
		if (n > 0) {
			on_note(n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN;
	}
}

/* Owned[i]'s zygote is gone: what it noted counts, the worker hears it
 * (requests it sent and that were not noted go to the launcher). */
static void zygote_gone(int i, int tell)
{
	struct owned *o = &S.owned[i];
	if (o->notes >= 0) {
		read_notes(i);
		close(o->notes);
		o->notes = -1;
	}
	if (o->zpid && tell)
		reply(LAUNCH_ZYGOTE_GONE, 0, o->zpid, 0, 0, 0);
	o->zpid = 0;
}

/* ---- the launcher's own starts (no zygote) ------------------------------- */

static void do_spawn(const struct launch_msg *m, char *payload, size_t len)
{
	int64_t received = launch_now_us();
	if (!job_slot()) {
		reply(LAUNCH_FAILED, m->job, EAGAIN, STAGE_EXEC, 0, 0);
		return;
	}
	struct started r;
	launch_start(m, payload, len, 0, &r);
	if (r.dead)
		waitpid(r.dead, NULL, 0);
	if (r.err) {
		reply(LAUNCH_FAILED, m->job, r.err, r.stage, 0, 0);
		return;
	}
	if (!job_new(m->job, r.pid, r.t, r.tag)) {
		kill(-r.pid, SIGKILL);
		kill(r.pid, SIGKILL);
		reply(LAUNCH_FAILED, m->job, EAGAIN, STAGE_EXEC, 0, 0);
		return;
	}
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
		int64_t now = launch_now_us();
		int64_t cpu = (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
			      ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
		int known = 0;
		for (int i = 0; i < S.nowned && !known; i++) {
			if (S.owned[i].zpid == pid) {
				zygote_gone(i, 1);
				known = 1;
			}
		}
		for (int i = 0; i < MAX_JOBS && !known; i++) {
			struct job *j = &S.jobs[i];
			if (j->pid == pid && !j->ended) {
				job_ended(j, st, now, cpu);
				known = 1;
			}
		}
		if (!known)
			early_add(pid, st, now, cpu);
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

/* The zygotes end once the worker's ends of their sockets are closed (the
 * worker died), each after noting what it started; their notes are read
 * meanwhile, so every command started is a job here.  A zygote that does
 * not end in time (the launcher was told to go while the worker lives) is
 * killed. */
static void zygotes_end(void)
{
	struct timespec tick = { 0, 2 * 1000 * 1000 };
	for (int tries = 0; tries < 250; tries++) {
		int left = 0;
		for (int i = 0; i < S.nowned; i++) {
			if (!S.owned[i].zpid)
				continue;
			read_notes(i);
			pid_t r = waitpid(S.owned[i].zpid, NULL, WNOHANG);
			if (r == S.owned[i].zpid || (r < 0 && errno == ECHILD))
				zygote_gone(i, 0);
			else
				left++;
		}
		if (!left)
			return;
		nanosleep(&tick, NULL);
	}
	for (int i = 0; i < S.nowned; i++) {
		if (S.owned[i].zpid) {
			kill(S.owned[i].zpid, SIGKILL);
			waitpid(S.owned[i].zpid, NULL, 0);
			zygote_gone(i, 0);
		}
	}
}

/* The worker is gone (or told us to go): nothing of its tasks survives it,
 * except the results that ended on their own, which go to the recorder. */
static _Noreturn void finish(void)
{
	zygotes_end();
	reap();
	int running = 0;
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
				j->ts_end = launch_now_us();
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
			char *dir = S.owned[i].dir;
			if (!dir)
				continue;
			kill_cgroup(dir);
			if (rmdir(dir) == 0 || errno == ENOENT)
				S.owned[i].dir = NULL;
			else
				left = 1;
		}
		if (!left)
			break;
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		nanosleep(&tick, NULL);
	}
	int fd = -1, killed = 0, results = 0;
	for (int i = 0; i < MAX_JOBS; i++) {
		struct job *j = &S.jobs[i];
		killed += j->pid && j->killed;
		results += j->pid && j->ended && !j->killed;
	}
	if (killed || results) {
		/* one line in the worker's log: what became of its tasks */
		char line[160], *p = line;
		static const char a[] = "kx.sched launcher: the worker is gone: ", b[] = " task(s) killed, ",
			c[] = " result(s) to record\n";
		memcpy(p, a, sizeof a - 1); p += sizeof a - 1;
		p = put_int(p, killed);
		memcpy(p, b, sizeof b - 1); p += sizeof b - 1;
		p = put_int(p, results);
		memcpy(p, c, sizeof c - 1); p += sizeof c - 1;
		write_all(2, line, (size_t)(p - line));
	}
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
		do_spawn(&m, payload, len);
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
			struct owned *o = &S.owned[S.nowned];
			o->dir = strdup(payload);
			o->notes = -1;
			S.nowned++;
			if (o->dir)
				zygote_start(S.nowned - 1);
		}
		break;
	}
}

static _Noreturn void launcher_main(void)
{
	struct pollfd p[2 + MAX_OWNED];
	int idx[MAX_OWNED];
	for (;;) {
		int np = 2;
		p[0] = (struct pollfd){ S.sock, POLLIN, 0 };
		p[1] = (struct pollfd){ S.sfd, POLLIN, 0 };
		for (int i = 0; i < S.nowned; i++) {
			if (S.owned[i].notes >= 0) {
				idx[np - 2] = i;
				p[np++] = (struct pollfd){ S.owned[i].notes, POLLIN, 0 };
			}
		}
		if (poll(p, (nfds_t)np, -1) < 0) {
			if (errno == EINTR)
				continue;
			finish();
		}
		/* notes first: a command that ended at once is then a job when
		 * its exit is reaped */
		for (int k = 2; k < np; k++)
			if (p[k].revents)
				read_notes(idx[k - 2]);
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
