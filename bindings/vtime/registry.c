/*
 * registry.c - the tracer registration channel (see registry.h).
 */
#include "fdpass.h"
#include "kx.h"
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void seterr(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

int vtreg_default_path(char *buf, size_t len)
{
	const char *env = getenv("KXRUN_VTIME_SOCK");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;
	if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/run/kxrun/vtime.sock");
	else if (xdg && *xdg)
		n = snprintf(buf, len, "%s/kxrun-vtime.sock", xdg);
	else
		n = snprintf(buf, len, "/tmp/kxrun-%d/vtime.sock", (int)geteuid());
	return n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)
	       ? -1 : 0;
}

static int make_addr(const char *path, struct sockaddr_un *a, char *err,
                     size_t errlen)
{
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof a->sun_path) {
		seterr(err, errlen, "%s: socket path longer than %zu bytes", path,
		       sizeof a->sun_path - 1);
		return -1;
	}
	strcpy(a->sun_path, path);
	return 0;
}

/* mkdir -p of path's directory (one level is what the defaults need, but
 * KXRUN_VTIME_SOCK may name a deeper one). */
static int make_parent(const char *path, char *err, size_t errlen)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	return kx_mkdir_p(dir, 0755, err, errlen) < 0 ? -1 : 0;
}

int vtreg_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un a;
	if (make_addr(path, &a, err, errlen) < 0 || make_parent(path, err, errlen) < 0)
		return -1;
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			seterr(err, errlen, "%s exists and is not a socket", path);
			return -1;
		}
		int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof a) == 0) {
			struct ucred cr = {0};
			socklen_t cl = sizeof cr;
			getsockopt(probe, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
			close(probe);
			seterr(err, errlen, "%s: another experiment (kxrun pid %d) is listening "
			       "there; stop it, or set KXRUN_VTIME_SOCK to another path",
			       path, (int)cr.pid);
			return -1;
		}
		if (probe >= 0)
			close(probe);
		unlink(path); /* stale: its controller is gone */
	}
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		seterr(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int vtreg_send(int fd, const char *msg, size_t len, const int *fds, int nfds)
{
	struct iovec iov = { (void *)msg, len };
	ssize_t n = nfds > VTREG_NFDS ? -EINVAL : kx_sendfds(fd, &iov, 1, fds, nfds, MSG_NOSIGNAL);
	return n < 0 ? (int)n : 0;
}

ssize_t vtreg_recv(int fd, char *buf, size_t len, int *fds, int *nfds,
                   int dontwait)
{
	struct iovec iov = { buf, len };
	return kx_recvfds(fd, &iov, 1, fds, fds ? VTREG_NFDS : 0, nfds,
	                  dontwait ? MSG_DONTWAIT : 0);
}

int vtreg_put(struct vtreg_msg *m, const char *s)
{
	size_t n = strlen(s) + 1;
	if (m->len + n > sizeof m->buf)
		return -1;
	memcpy(m->buf + m->len, s, n);
	m->len += n;
	return 0;
}

int vtreg_putf(struct vtreg_msg *m, const char *fmt, ...)
{
	char s[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s, sizeof s, fmt, ap);
	va_end(ap);
	return vtreg_put(m, s);
}

const char *vtreg_next(const char *buf, size_t len, size_t *off)
{
	if (*off >= len)
		return NULL;
	const char *s = buf + *off;
	const char *end = memchr(s, 0, len - *off);
	if (!end)
		return NULL;
	*off = (size_t)(end - buf) + 1;
	return s;
}

/* ---- the tracer side (blocking) ------------------------------------------ */

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int connect_retry(const char *path, double wait_s, char *err, size_t errlen)
{
	struct sockaddr_un a;
	if (make_addr(path, &a, err, errlen) < 0)
		return -1;
	double until = mono_now() + wait_s;
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			seterr(err, errlen, "socket: %s", strerror(errno));
			return -1;
		}
		if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
			return fd;
		int e = errno;
		close(fd);
		if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN) {
			seterr(err, errlen, "%s: %s", path, strerror(e));
			return -1;
		}
		if (mono_now() >= until) {
			seterr(err, errlen, "no experiment is listening on %s after %g s "
			       "(the orchestrator calls kronos.initializeExp first; "
			       "KXRUN_VTIME_SOCK names another socket)", path, wait_s);
			return -1;
		}
		struct timespec t = {0, 50 * 1000 * 1000};
		nanosleep(&t, NULL);
	}
}

static int build_request(struct vtreg_msg *m, const struct vtreg_request *rq)
{
	int bad = vtreg_put(m, "register") | vtreg_put(m, "id") | vtreg_put(m, rq->id) |
	          vtreg_put(m, "speed") | vtreg_putf(m, "%.17g", rq->speed) |
	          vtreg_put(m, "timeline") | vtreg_putf(m, "%ld", rq->timeline) |
	          vtreg_put(m, "cwd") | vtreg_put(m, rq->cwd);
	int n = 0;
	while (rq->env && rq->env[n])
		n++;
	bad |= vtreg_put(m, "env") | vtreg_putf(m, "%d", n);
	for (int i = 0; i < n; i++)
		bad |= vtreg_put(m, rq->env[i]);
	for (int c = 0; rq->cmds[c]; c++) {
		char *const *argv = rq->cmds[c];
		int k = 0;
		while (argv[k])
			k++;
		bad |= vtreg_put(m, "cmd") | vtreg_putf(m, "%d", k);
		for (int i = 0; i < k; i++)
			bad |= vtreg_put(m, argv[i]);
	}
	return bad ? -1 : 0;
}

/* Copies what is readable on *fd to out; closes it (-1) at EOF. */
static void relay(int *fd, int out)
{
	char buf[65536];
	ssize_t n = read(*fd, buf, sizeof buf);
	if (n > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break; /* our own output is gone: drop, keep draining */
			off += w;
		}
	} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
		close(*fd);
		*fd = -1;
	}
}

/* Parses a controller message; 1 = the end (status or error set), 0 = go on. */
static int on_reply(const char *buf, size_t len, int *status, char *err,
                    size_t errlen)
{
	size_t off = 0;
	const char *kind = vtreg_next(buf, len, &off);
	if (kind && !strcmp(kind, "ok"))
		return 0;
	if (kind && !strcmp(kind, "err")) {
		const char *msg = vtreg_next(buf, len, &off);
		seterr(err, errlen, "%s", msg ? msg : "refused");
		*status = -1;
		return 1;
	}
	if (kind && !strcmp(kind, "exit")) {
		const char *how = vtreg_next(buf, len, &off);
		const char *num = vtreg_next(buf, len, &off);
		int v = num ? atoi(num) : 0;
		if (how && !strcmp(how, "signal"))
			*status = v & 0x7f;
		else
			*status = (v & 0xff) << 8;
		return 1;
	}
	seterr(err, errlen, "unexpected message from the controller");
	*status = -1;
	return 1;
}

int vtreg_tracer(const char *path, double wait_s,
                 const struct vtreg_request *rq, char *err, size_t errlen)
{
	struct vtreg_msg *m = calloc(1, sizeof *m);
	if (!m) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	if (build_request(m, rq) < 0) {
		seterr(err, errlen, "request over %d bytes (environment too large?)",
		       VTREG_MAX_MSG);
		free(m);
		return -1;
	}
	/* SIGINT/SIGTERM/SIGHUP end the tracer; the loop's own handlers never
	 * run while it blocks here, so take them through a signalfd, blocked
	 * before the request goes out: the orchestrator may signal it as soon
	 * as it has registered. */
	sigset_t sigs, old;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, &old);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	int sock = connect_retry(path, wait_s, err, errlen);
	if (sock < 0) {
		free(m);
		goto unblock;
	}
	int out[2], errp[2];
	if (pipe2(out, O_CLOEXEC) < 0) {
		seterr(err, errlen, "pipe: %s", strerror(errno));
		close(sock);
		free(m);
		goto unblock;
	}
	if (pipe2(errp, O_CLOEXEC) < 0) {
		seterr(err, errlen, "pipe: %s", strerror(errno));
		close(out[0]), close(out[1]), close(sock);
		free(m);
		goto unblock;
	}
	int ends[2] = { out[1], errp[1] };
	int rc = vtreg_send(sock, m->buf, m->len, ends, 2);
	close(out[1]);
	close(errp[1]);
	free(m);
	int fds[2] = { out[0], errp[0] };
	if (rc < 0) {
		seterr(err, errlen, "%s: sending the request: %s", path, strerror(-rc));
		close(sock), close(fds[0]), close(fds[1]);
		goto unblock;
	}
	int status = -1, done = 0;
	char *buf = malloc(4096);
	while (!done) {
		struct pollfd p[4] = {
			{ sock, POLLIN, 0 }, { fds[0], POLLIN, 0 }, { fds[1], POLLIN, 0 },
			{ sfd, POLLIN, 0 },
		};
		if (poll(p, 4, -1) < 0) {
			if (errno == EINTR)
				continue;
			seterr(err, errlen, "poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			relay(&fds[0], 1);
		if (p[2].revents)
			relay(&fds[1], 2);
		if (p[3].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
				status = (int)si.ssi_signo;
				break;
			}
		}
		if (p[0].revents) {
			ssize_t n = vtreg_recv(sock, buf, 4096, NULL, NULL, 0);
			if (n <= 0) {
				seterr(err, errlen, "the experiment's controller went away (%s)",
				       n == 0 ? "connection closed" : strerror((int)-n));
				break;
			}
			done = on_reply(buf, (size_t)n, &status, err, errlen);
		}
	}
	/* What the commands wrote before they ended is in the pipes: drain it
	 * without waiting for EOF (a leftover child may hold the pipes open). */
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0) {
			fcntl(fds[i], F_SETFL, O_NONBLOCK);
			for (int k = 0; k < 4096 && fds[i] >= 0; k++) {
				struct pollfd p = { fds[i], POLLIN, 0 };
				if (poll(&p, 1, 0) <= 0)
					break;
				relay(&fds[i], i + 1);
			}
			if (fds[i] >= 0)
				close(fds[i]);
		}
	free(buf);
	close(sock);
	if (sfd >= 0)
		close(sfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return status;
unblock:
	if (sfd >= 0)
		close(sfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return -1;
}
