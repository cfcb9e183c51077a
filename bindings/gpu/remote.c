/*
 * remote.c - the ledger backend that goes through `kxrun gpu serve`: one
 * connection per call, a fixed-size request and reply (remote.h).
 */
#include "ledger_ops.h"
#include "remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kx.h"

/* All of len bytes (host/kx.h's whole reads and writes): 0, or -1. */
static int recv_all(int fd, void *buf, size_t len)
{
	return kx_read_all(fd, buf, len) == (ssize_t)len ? 0 : -1;
}

/* Sends req and reads the reply (and, for READ, the records into *parts,
 * malloc'd).  Returns the reply's rc, or KXGPU_EIO. */
static int call(kxgpu_ledger *l, const struct kxgpu_msg_req *req,
                struct kxgpu_msg_reply *rep, struct kxgpu_partition **parts,
                char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct kxgpu_msg_req r = *req;
	int fd;

	if (parts)
		*parts = NULL;
	if (strlen(l->sock) >= sizeof sa.sun_path)
		return kxgpu_fail(err, errlen, KXGPU_EIO, "socket path too long: %s",
		                  l->sock);
	strcpy(sa.sun_path, l->sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return kxgpu_fail(err, errlen, KXGPU_EIO, "cannot reach `kxrun gpu "
		                  "serve` at %s: %s", l->sock, strerror(e));
	}
	r.magic = KXGPU_MSG_MAGIC;
	if (kx_write_all(fd, &r, sizeof r) != 0 ||
	    recv_all(fd, rep, sizeof *rep) != 0 ||
	    rep->magic != KXGPU_MSG_MAGIC) {
		close(fd);
		return kxgpu_fail(err, errlen, KXGPU_EIO, "`kxrun gpu serve` at %s "
		                  "did not answer", l->sock);
	}
	if (rep->n && parts) {
		*parts = calloc(rep->n + 1, sizeof **parts);
		if (!*parts || recv_all(fd, *parts, rep->n * sizeof **parts) != 0) {
			free(*parts);
			*parts = NULL;
			close(fd);
			return kxgpu_fail(err, errlen, KXGPU_EIO, "`kxrun gpu serve` "
			                  "at %s: short reply", l->sock);
		}
	}
	close(fd);
	if (rep->rc)
		kxgpu_fail(err, errlen, 0, "%.*s", (int)sizeof rep->err - 1,
		           rep->err);
	return rep->rc;
}

static int snapshot(kxgpu_ledger *l, enum kxgpu_op op,
                    struct kxgpu_snapshot *snap, char *err, size_t errlen)
{
	struct kxgpu_msg_req req = { .op = op };
	struct kxgpu_msg_reply rep;
	struct kxgpu_partition *parts;
	int rc = call(l, &req, &rep, &parts, err, errlen);

	if (rc)
		return rc;
	snap->ndevices = rep.ndevices;
	snap->probed_ms = rep.probed_ms;
	memcpy(snap->devices, rep.devices, sizeof snap->devices);
	snap->n = parts ? rep.n : 0;
	snap->parts = parts ? parts : calloc(1, sizeof *parts);
	return 0;
}

static int remote_read(kxgpu_ledger *l, struct kxgpu_snapshot *snap,
                       char *err, size_t errlen)
{
	return snapshot(l, KXGPU_OP_READ, snap, err, errlen);
}

static int remote_devices(kxgpu_ledger *l, struct kxgpu_snapshot *snap,
                          char *err, size_t errlen)
{
	return snapshot(l, KXGPU_OP_DEVICES, snap, err, errlen);
}

/* The daemon probes OpenCL for itself: facts from a user are not stored. */
static int remote_set_devices(kxgpu_ledger *l, const struct kxgpu_device *devs,
                              uint32_t n, char *err, size_t errlen)
{
	struct kxgpu_msg_req req = { .op = KXGPU_OP_PROBE };
	struct kxgpu_msg_reply rep;

	(void)devs, (void)n;
	return call(l, &req, &rep, NULL, err, errlen);
}

static int remote_create(kxgpu_ledger *l, const struct kxgpu_request *r,
                         struct kxgpu_partition *out, char *err, size_t errlen)
{
	struct kxgpu_msg_req req = {
		.op = KXGPU_OP_CREATE, .device = r->device, .ppm = r->ppm,
		.duration_ms = r->duration_ms, .owner_set = r->owner != r->caller,
		.owner = r->owner,
	};
	struct kxgpu_msg_reply rep;
	int rc = call(l, &req, &rep, NULL, err, errlen);

	if (!rc && out)
		*out = rep.part;
	return rc;
}

static int by_id(kxgpu_ledger *l, struct kxgpu_msg_req *req,
                 const char *id, struct kxgpu_partition *out, char *err,
                 size_t errlen)
{
	struct kxgpu_msg_reply rep;
	int rc;

	snprintf(req->id, sizeof req->id, "%s", id);
	rc = call(l, req, &rep, NULL, err, errlen);
	if (!rc && out)
		*out = rep.part;
	return rc;
}

static int remote_release(kxgpu_ledger *l, const struct kxgpu_release *rel,
                          struct kxgpu_partition *out, char *err,
                          size_t errlen)
{
	struct kxgpu_msg_req req = { .op = KXGPU_OP_RELEASE,
	                             .force = (uint32_t)rel->force,
	                             .grace_ms = rel->grace_ms };

	return by_id(l, &req, rel->id, out, err, errlen);
}

static int remote_find(kxgpu_ledger *l, const char *id,
                       struct kxgpu_partition *out, char *err, size_t errlen)
{
	struct kxgpu_msg_req req = { .op = KXGPU_OP_FIND };

	return by_id(l, &req, id, out, err, errlen);
}

static int remote_available(kxgpu_ledger *l, uint32_t device, uint32_t *ppm,
                            char *err, size_t errlen)
{
	struct kxgpu_msg_req req = { .op = KXGPU_OP_AVAILABLE,
	                             .device = device };
	struct kxgpu_msg_reply rep;
	int rc = call(l, &req, &rep, NULL, err, errlen);

	if (!rc)
		*ppm = rep.ppm;
	return rc;
}

const struct kxgpu_ledger_ops kxgpu_remote_ops = {
	.read = remote_read, .devices = remote_devices,
	.set_devices = remote_set_devices, .create = remote_create,
	.release = remote_release, .find = remote_find,
	.available = remote_available,
};
