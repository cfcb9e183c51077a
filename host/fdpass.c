/* fdpass.c - descriptors over unix sockets (fdpass.h). */
#include "fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef union {
	char buf[CMSG_SPACE(sizeof(int) * KX_FDPASS_MAX)];
	struct cmsghdr align;
} control;

ssize_t kx_sendfds(int sock, const struct iovec *iov, int iovcnt, const int *fds, int nfds,
                   int flags)
{
	control u;
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt};
	if (nfds < 0 || nfds > KX_FDPASS_MAX)
		return -EINVAL;
	if (nfds) {
		memset(&u, 0, sizeof u);
		m.msg_control = u.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t n;
	while ((n = sendmsg(sock, &m, flags)) < 0 && errno == EINTR)
		;
	return n < 0 ? -errno : n;
}

ssize_t kx_recvfds(int sock, const struct iovec *iov, int iovcnt, int *fds, int max, int *nfds,
                   int flags)
{
	control u;
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt,
	                   .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	ssize_t n;
	while ((n = recvmsg(sock, &m, flags | MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (nfds)
		*nfds = 0;
	if (n < 0)
		return -errno;
	int got = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
			if (got < max)
				fds[got++] = fd;
			else
				close(fd);
		}
	}
	if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		return -EMSGSIZE;
	}
	if (nfds)
		*nfds = got;
	return n;
}
