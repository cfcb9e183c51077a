/*
 * remote.h - the ledger through `kxrun gpu serve`, for several users.
 *
 * In serve mode root owns the ledger directory (0755) and files (0600) and
 * answers a unix socket, <dir>/serve.sock (0666).  The identity of a caller
 * is the kernel's (SO_PEERCRED: uid and pid), never what it claims.  A
 * ledger opened by a user who cannot write the ledger while the socket
 * exists uses the client backend (remote.c, kxgpu_remote_ops, chosen by
 * ledger.c at open); the daemon answers with kxgpu_serve_request (lserve.c)
 * on its own ledger.  The calls and messages are the same as with the file.
 *
 * Wire format: one request, one reply per connection, fixed-size structs
 * (the reply followed by n partition records).  Both ends are this code.
 */
#ifndef KX_GPU_REMOTE_H
#define KX_GPU_REMOTE_H

#include "ledger.h"

#define KXGPU_SOCKET_NAME "serve.sock"
#define KXGPU_MSG_MAGIC   0x6b786770u  /* "kxgp" */

enum kxgpu_op {
	KXGPU_OP_READ = 1, KXGPU_OP_DEVICES, KXGPU_OP_PROBE, KXGPU_OP_CREATE,
	KXGPU_OP_RELEASE, KXGPU_OP_FIND, KXGPU_OP_AVAILABLE,
};

struct kxgpu_msg_req {
	uint32_t magic;
	uint32_t op;
	uint32_t device;
	uint32_t ppm;
	int64_t duration_ms;
	uint32_t owner_set;      /* create for `owner` (root only) */
	uint32_t owner;
	char id[24];
	uint32_t force;          /* release: end its programs */
	uint32_t grace_ms;
};

struct kxgpu_msg_reply {
	uint32_t magic;
	int32_t rc;
	char err[KXGPU_ERRLEN];
	uint32_t ppm;            /* available */
	uint32_t n;              /* partition records following */
	struct kxgpu_partition part;  /* create, release, find */
	uint32_t ndevices;
	uint32_t reserved;
	int64_t probed_ms;
	struct kxgpu_device devices[KXGPU_MAX_DEVICES];
};

/* Server (lserve.c): carries out req on the ledger for the caller (uid, pid
 * from SO_PEERCRED).  Fills rep; for READ sets *parts (malloc'd, rep->n). */
void kxgpu_serve_request(kxgpu_ledger *l, const struct kxgpu_msg_req *req,
                         uid_t uid, pid_t pid, struct kxgpu_msg_reply *rep,
                         struct kxgpu_partition **parts);

#endif /* KX_GPU_REMOTE_H */
