/*
 * template.c - a resumed child that forks rfork.spawn's children.
 *
 * A resume builds the parent's layout in the resuming process: the hello,
 * its files checked, the zygote's layout unmapped and the parent's mapped,
 * each served range registered, the batch mapped at its first fault.  A
 * template does that once (rf_resume_template) and then, back in the
 * parent's image but before any of the parent's code runs (prepare.c's
 * child_comes_back), forks each child: the fork copies the layout and the
 * page tables of what the template has mapped, the template's
 * userfaultfd hands the child's to the shared pager (UFFD_EVENT_FORK),
 * and the child asks the pager to serve it as a child of its own
 * (RF_JOIN_ADOPT: its watch, its stderr, its stats) before kx_spawn
 * returns in it.  Each child is counted by the holder (RF_REQ_COUNT) and
 * reopens the parent's files itself (their offsets are its own).
 *
 * The template runs none of the parent's code, so every child starts from
 * the image as it was at prepare, as a resumed child does.
 */
#include "rfork.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fdpass.h"
#include "hostside.h"
#include "internal.h"

#define IDLE_MS 1000   /* without an order: the template ends */

/* What the child needs for its adoption, prepared by the template. */
struct adoption {
	const struct rf_restore *r;
	uint32_t seq;     /* the fork it is among the template's */
	pid_t tmpl;
};

/* A fork copies the page tables of a private mapping only when it has an
 * anonymous part (its anon_vma): the template writes one byte of each
 * writable served mapping back as it was, so that what the pager mapped
 * in it (its first fault's batch included) is mapped in every child. */
__attribute__((no_sanitize("address")))   /* ASan's own shadow is among them */
static void anchor_maps(const struct rf_desc *d)
{
	const struct rf_map *m = rf_desc_maps(d);
	for (uint32_t i = 0; i < d->nmaps; i++)
		if (m[i].kind == RF_MAP_SERVE && (m[i].prot & PROT_WRITE) && !m[i].shared) {
			volatile char *p = (volatile char *)(uintptr_t)m[i].start;
			*p = *p;
		}
}

/* In the child, stdio and session set: the template's descriptors closed,
 * its own watch on the pager, served as a child of its own.  An errno. */
static int adopt(void *ud)
{
	const struct adoption *a = ud;
	const struct rf_restore *r = a->r;
	close(r->tmpl_order);
	close(r->tmpl_holder);
	close(r->watch);   /* the template's: it signals the template */
	prctl(PR_SET_NAME, "kxrun-zygote");   /* as a resumed child of the zygote */
	int w[2], memfd, fd = rf_local_connect(r->join_name, SOCK_SEQPACKET);
	if (fd < 0)
		return errno ? errno : ECONNREFUSED;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w) < 0) {
		int e = errno;
		close(fd);
		return e;
	}
	/* knobs and flags are the template's (the pager copies them) */
	struct rf_join j = {.magic = RF_MAGIC, .version = RF_VERSION, .flags = RF_JOIN_ADOPT,
	                    .ra_base = 1, .ra_max = 1, .seq = a->seq, .tmpl = a->tmpl};
	memcpy(j.key, r->key, 16);
	char err[160];
	int rc = rf_join_send(fd, &j, NULL, -1, w[1], 10000, &memfd, err, sizeof err);
	close(fd);
	close(w[1]);
	if (rc < 0)
		close(w[0]);
	else if (rf_watch_pager(w[0], err, sizeof err) >= 0)   /* it takes w[0] */
		return 0;
	return ECONNREFUSED;
}

/* The holder counts the child; its index, or 0 when the holder is gone. */
static long count_child(int holder)
{
	struct rf_page_req q = {0, 0, RF_REQ_COUNT};
	struct rf_page_reply a;
	if (kx_write_all(holder, &q, sizeof q) < 0 ||
	    kx_read_all(holder, &a, sizeof a) != (ssize_t)sizeof a || a.status != RF_OK)
		return 0;
	return a.npages;
}

/* The answer to the zygote, with the child's gate (zygote.c) when there
 * is a child. */
static void answer(int order, pid_t pid, const char *err, int gate)
{
	struct rf_order_reply a = {.pid = pid};
	snprintf(a.err, sizeof a.err, "%s", err ? err : "");
	struct iovec iov = {&a, sizeof a};
	kx_sendfds(order, &iov, 1, &gate, gate >= 0, MSG_NOSIGNAL);
}

long rf_template_serve(const struct rf_restore *r, long index)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);   /* its parent is rfork.spawn's caller */
	prctl(PR_SET_NAME, "kxrun-template");
	anchor_maps(r->desc);
	struct timeval tv = {10, 0};   /* a holder that stops answering ends it */
	setsockopt(r->tmpl_holder, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	answer(r->tmpl_order, getpid(), NULL, -1);
	long first = index;   /* the template's own count goes to its first child */
	for (uint32_t seq = 0;;) {
		struct pollfd pf = {r->tmpl_order, POLLIN, 0};
		if (poll(&pf, 1, IDLE_MS) != 1)
			_exit(0);
		struct rf_order o;
		int fds[4], nfds = 0;
		struct iovec iov = {&o, sizeof o};
		ssize_t n = kx_recvfds(r->tmpl_order, &iov, 1, fds, 4, &nfds, 0);
		if (n != (ssize_t)sizeof o || nfds < 1)
			_exit(0);   /* the zygote is gone, or speaks another language */
		long idx = first ? first : count_child(r->tmpl_holder);
		first = 0;
		char err[512] = "the holder is gone";
		struct adoption a = {r, seq + 1, getpid()};
		static const char *const argv[] = {"rfork.spawn", NULL};
		struct kx_spawn s = {.argv = argv, .child_hook = adopt, .ud = &a,
		                     .flags = KX_SPAWN_FORK | KX_SPAWN_SIBLING | KX_SPAWN_SESSION |
		                              KX_SPAWN_DETACH | KX_SPAWN_KEEP_SIGNALS};
		for (int i = 0, at = 1; i < 3; i++) {
			s.io[i] = o.io[i] == KX_IO_FD && at < nfds ? KX_IO_FD : KX_IO_NULL;
			if (s.io[i] == KX_IO_FD)
				s.fd[i] = fds[at++];
		}
		int gate[2] = {-1, -1};
		pid_t pid = !idx ? -ESRCH : pipe2(gate, O_CLOEXEC) < 0 ? -errno
		                                                    : kx_spawn(&s, err, sizeof err);
		if (pid == 0) {
			/* the child: as rf_resume's, the cwd said on the report pipe */
			for (int i = 1; i < nfds; i++)
				close(fds[i]);
			if (!rf_gate_pass(gate))
				_exit(1);   /* nobody knows of it */
			o.cwd[sizeof o.cwd - 1] = 0;
			if (rf_child_cwd(o.cwd, fds[0]) < 0)
				_exit(1);
			close(fds[0]);   /* nothing said: resumed */
			return idx;
		}
		answer(r->tmpl_order, pid, pid < 0 ? err : NULL, pid > 0 ? gate[1] : -1);
		for (int i = 0; i < 2; i++)
			if (gate[i] >= 0)
				close(gate[i]);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		/* a failed fork leaves the pager's count of forks unsure: the
		 * zygote starts another template */
		if (pid < 0)
			_exit(1);
		seq++;
	}
}
