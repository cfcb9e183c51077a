/*
 * pjoin.c - how a resuming process joins the shared pager (internal.h),
 * and the abstract unix sockets of this user that the join and the
 * holder's local hello (tcp.c) go through.
 *
 * The pager listens on an abstract unix socket named after what it serves
 * (rf_join_name: the user, the parent, the cgroups, the holder's address).
 * A resuming process connects, checks the listener runs as its own user
 * (SO_PEERCRED: nobody else gets its key or memory) and sends one message: the parent's key, its prefetch batch and knobs, with
 * its userfaultfd and its stderr (SCM_RIGHTS).  The pager checks the
 * sender's user and the key and answers one byte: RF_OK, or why not (the
 * resuming process then starts its own pager).
 */
#include "internal.h"
#include "fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static socklen_t join_addr(const char *name, struct sockaddr_un *a)
{
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	size_t n = strnlen(name, sizeof a->sun_path - 2);
	memcpy(a->sun_path + 1, name, n);   /* abstract: a leading NUL */
	return offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

/* The cgroups of this process (FNV-1a of /proc/self/cgroup): a pager
 * serves only children in its own cgroups, so that what is done to a
 * cgroup (its processes killed or frozen, its CPU counted) is done to the
 * pager of its children and to no other child. */
static uint64_t cgroups_hash(void)
{
	char b[4096];
	uint64_t h = 0xcbf29ce484222325ULL;
	int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, b, sizeof b) : -1;
	if (fd >= 0)
		close(fd);
	for (ssize_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)b[i]) * 0x100000001b3ULL;
	return h;
}

void rf_join_name(char *out, size_t len, const char *address, uint64_t id)
{
	snprintf(out, len, "kxrun-rfork-pager/%u/%016llx/%016llx/%s", (unsigned)getuid(),
	         (unsigned long long)id, (unsigned long long)cgroups_hash(), address);
}

int rf_local_listen(const char *name, int type)
{
	struct sockaddr_un a;
	socklen_t alen = join_addr(name, &a);
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, alen) < 0 || listen(fd, 64) < 0) {
		close(fd);   /* EADDRINUSE: another serves it (or squats it) */
		return -1;
	}
	return fd;
}

static int peer_uid_is_mine(int fd, pid_t *pid)
{
	struct ucred cr;
	socklen_t l = sizeof cr;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0 || cr.uid != getuid())
		return 0;
	if (pid)
		*pid = cr.pid;
	return 1;
}

int rf_local_connect(const char *name, int type)
{
	struct sockaddr_un a;
	socklen_t alen = join_addr(name, &a);
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, alen) < 0 || !peer_uid_is_mine(fd, NULL)) {
		close(fd);
		return -1;
	}
	return fd;
}

int rf_join_send(int fd, const struct rf_join *j, const struct rf_page_req *plan, int uffd,
                 int watch, int timeout_ms, int *memfd, char *err, size_t errlen)
{
	struct iovec iov[2] = {{(void *)j, sizeof *j},
	                       {(void *)plan, (size_t)j->nplan * sizeof *plan}};
	int fds[3] = {uffd, 2, watch}, nfds;
	int skip = uffd < 0;   /* a template's fork: the pager has its userfaultfd */
	uint8_t answer = RF_EAUTH;
	struct iovec aiov = {&answer, 1};
	struct pollfd pf = {fd, POLLIN, 0};
	ssize_t n;
	*memfd = -1;
	if ((n = kx_sendfds(fd, iov, 2, fds + skip, 3 - skip, MSG_NOSIGNAL)) < 0) {
		snprintf(err, errlen, "shared pager: %s", strerror((int)-n));
		return -1;
	}
	/* the answer, with the cache's memfd when the pager has one */
	if (poll(&pf, 1, timeout_ms) != 1 || kx_recvfds(fd, &aiov, 1, memfd, 1, &nfds, 0) != 1) {
		snprintf(err, errlen, "shared pager: no answer");
		return -1;
	}
	if (answer != RF_OK) {
		if (*memfd >= 0)
			close(*memfd);
		*memfd = -1;
		snprintf(err, errlen, "shared pager refused: %s",
		         answer == RF_EAUTH ? "wrong key" :
		         answer == RF_EID ? "no such fork of a template" : "serving too many children");
		return -1;
	}
	return 0;
}

int rf_join_accept(int listen_fd)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd >= 0 && !peer_uid_is_mine(fd, NULL)) {
		uint8_t no = RF_EAUTH;
		send(fd, &no, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		return -1;
	}
	return fd;
}

int rf_join_recv(int fd, struct rf_join *j, struct rf_page_req *plan, int *uffd, int *errfd,
                 int *watch, pid_t *pid)
{
	struct iovec iov[2] = {{j, sizeof *j}, {plan, RF_BATCH_RANGES * sizeof *plan}};
	int fds[3], nfds = 0;
	ssize_t n = kx_recvfds(fd, iov, 2, fds, 3, &nfds, MSG_DONTWAIT);
	if (n == -EAGAIN)
		return 0;   /* not yet */
	/* a template's fork (RF_JOIN_ADOPT) brings no userfaultfd */
	int adopt = n >= (ssize_t)sizeof *j && (j->flags & RF_JOIN_ADOPT);
	int ok = n >= (ssize_t)sizeof *j && nfds == 3 - adopt &&
	         j->magic == RF_MAGIC && j->version == RF_VERSION &&
	         j->nplan <= RF_BATCH_RANGES &&
	         (size_t)n == sizeof *j + (size_t)j->nplan * sizeof *plan &&
	         peer_uid_is_mine(fd, pid);
	for (uint32_t i = 0; ok && i < j->nplan; i++)
		ok = !(plan[i].addr & (RF_PAGE - 1)) && plan[i].npages &&
		     plan[i].npages <= RF_MAX_PAGES;
	if (ok) {
		*uffd = adopt ? -1 : fds[0];
		*errfd = fds[1 - adopt];
		*watch = fds[2 - adopt];
		return 1;
	}
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	return -1;
}

void rf_join_answer(int fd, uint8_t status, int memfd)
{
	struct iovec iov = {&status, 1};
	kx_sendfds(fd, &iov, 1, &memfd, memfd >= 0, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}
