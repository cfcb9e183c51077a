/*
 * fdpass.h - descriptors passed over unix sockets (SCM_RIGHTS), the one
 * way every module does it.  Plain C: no Lua, no loop (the rfork pager and
 * the test programs link it alone).
 */
#ifndef KX_FDPASS_H
#define KX_FDPASS_H

#include <sys/types.h>
#include <sys/uio.h>

#define KX_FDPASS_MAX 8   /* descriptors one message carries at most */

/* Sends iov (iovcnt parts) on sock with nfds descriptors of fds (0..
 * KX_FDPASS_MAX; the sender keeps its copies), flags as sendmsg's, an
 * EINTR retried: the bytes sent, or -errno. */
ssize_t kx_sendfds(int sock, const struct iovec *iov, int iovcnt, const int *fds, int nfds,
                   int flags);

/* Receives into iov with the descriptors that came, close-on-exec: up to
 * max of them in fds (*nfds: how many; those beyond max are closed; fds
 * and nfds may be NULL with max 0), flags as recvmsg's, an EINTR retried.
 * The bytes received (0: end of file), or -errno; a message cut short
 * (data or descriptors) is -EMSGSIZE with every descriptor of it closed. */
ssize_t kx_recvfds(int sock, const struct iovec *iov, int iovcnt, int *fds, int max, int *nfds,
                   int flags);

#endif /* KX_FDPASS_H */
