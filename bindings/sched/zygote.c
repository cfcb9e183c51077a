/* zygote.c - starting one command, and the zygote process (see zygote.h).
 * Between clone and exec the child runs only system calls (the launcher is
 * a fork of a threaded process). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "zygote.h"

extern char **environ;

/* What the child of clone() needs; it writes err and stage back (the
 * memory is shared until it execs). */
struct spawn {
	const char *procs, *io[3], *cwd;
	char **argv, **envp;
	const char *path;       /* $PATH for the search */
	volatile int err, stage;
};

int64_t launch_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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

static char child_stack[64 * 1024] __attribute__((aligned(16)));

/* Starts the command of a spawn request: clone (CLONE_VM | CLONE_VFORK)
 * and exec.  In a zygote (extra = CLONE_PARENT) the command is born in the
 * zygote's cgroup as the launcher's child, and joins nothing. */
void launch_start(const struct launch_msg *m, char *payload, size_t len, int extra, struct started *r)
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
	r->t = launch_now_us();
	r->tag = strs[5];
	if (pid < 0) {
		r->err = errno;
	} else if (sp.err) {
		/* it exited before exec: the launcher reaps it (it is the parent
		 * either way) */
		r->dead = pid;
		r->err = sp.err;
		r->stage = sp.stage;
	} else {
		r->pid = pid;
	}
	free(merged);
	free(vec);
}

/* A request read and the note written by a zygote: one at a time. */
static char zbuf[sizeof(struct launch_msg) + LAUNCH_MSG_MAX];

_Noreturn void zygote_main(int note_fd, int req_fd, const char *dir)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(0);
	/* ours at 3 (notes) and 4 (requests); the launcher's others closed */
	int nh = fcntl(note_fd, F_DUPFD, 64), rh = fcntl(req_fd, F_DUPFD, 64);
	if (nh < 0 || rh < 0 || dup2(nh, 3) < 0 || dup2(rh, 4) < 0)
		_exit(1);
	close_range(5, ~0U, 0);
	note_fd = 3;
	req_fd = 4;
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
		ssize_t n = recv(req_fd, zbuf, sizeof zbuf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < (ssize_t)sizeof(struct launch_msg))
			_exit(0);   /* the worker's end closed: nothing more comes */
		int64_t received = launch_now_us();
		struct launch_msg m;
		memcpy(&m, zbuf, sizeof m);
		if (m.type != LAUNCH_SPAWN)
			continue;
		struct started r;
		launch_start(&m, zbuf + sizeof m, (size_t)n - sizeof m, CLONE_PARENT, &r);
		/* the note: the start, with the tag the launcher keeps for the
		 * recorder (moved to just after the header, in place) */
		struct launch_msg out = { .job = m.job };
		size_t tl = 0;
		if (r.err) {
			out.type = LAUNCH_FAILED;
			out.a = r.err;
			out.b = r.stage;
			out.t2 = r.dead;
		} else {
			out.type = LAUNCH_STARTED;
			out.a = r.pid;
			out.t1 = r.t;
			out.t2 = received;
			tl = strlen(r.tag) + 1;
			memmove(zbuf + sizeof out, r.tag, tl);
		}
		memcpy(zbuf, &out, sizeof out);
		while (send(note_fd, zbuf, sizeof out + tl, MSG_NOSIGNAL) < 0) {
			if (errno != EINTR)
				_exit(0);   /* the launcher is gone: so is what we started */
		}
	}
}
