/*
 * remote.h - the ledger through `kxrun gpu serve`, for several users.
 *
 * In serve mode root owns the ledger directory (0755) and files (0600) and
 * answers a unix socket, <dir>/serve.sock (0666).  The identity of a caller
 * is the kernel's (SO_PEERCRED: uid and pid), never what it claims.  A
 * ledger opened by a user who cannot write the ledger while the socket
 * exists goes through the daemon (ledger.c does the switch); the calls and
 * messages are the same as with the file.
 *
 * Wire format: one request, one reply per connection, fixed-size structs
 * (the reply followed by n partition records).  Both ends are this code.
 */
#ifndef KX_GPU_REMOTE_H
#define KX_GPU_REMOTE_H

#include "ledger.h"

#define KXGPU_SOCKET_NAME "serve.sock"

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

/* Client: sends req to the socket and reads the reply (and, for READ, the
 * records into *parts, malloc'd).  Returns reply.rc, or KXGPU_EIO. */
int kxgpu_remote_call(const char *sock, const struct kxgpu_msg_req *req,
                      struct kxgpu_msg_reply *rep,
                      struct kxgpu_partition **parts, char *err,
                      size_t errlen);

/* The ledger calls in remote form (ledger.c switches to them). */
int kxgpu_remote_read(const char *sock, struct kxgpu_snapshot *snap,
                      int devices_only, char *err, size_t errlen);
int kxgpu_remote_probe(const char *sock, char *err, size_t errlen);
int kxgpu_remote_create(const char *sock, const struct kxgpu_request *req,
                        struct kxgpu_partition *out, char *err,
                        size_t errlen);
int kxgpu_remote_id(const char *sock, enum kxgpu_op op, const char *id,
                    struct kxgpu_partition *out, char *err, size_t errlen);
int kxgpu_remote_available(const char *sock, uint32_t device, uint32_t *ppm,
                           char *err, size_t errlen);

/* Server: carries out req on the ledger for the caller (uid, pid from
 * SO_PEERCRED).  Fills rep; for READ sets *parts (malloc'd, rep->n). */
void kxgpu_serve_request(kxgpu_ledger *l, const struct kxgpu_msg_req *req,
                         uid_t uid, pid_t pid, struct kxgpu_msg_reply *rep,
                         struct kxgpu_partition **parts);

#endif /* KX_GPU_REMOTE_H */
