/*
 * remote.c - the ledger through `kxrun gpu serve`: client calls and the
 * server's request handler.  See remote.h.
 */
#include "remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices.h"

#define MSG_MAGIC 0x6b786770u  /* "kxgp" */

static int io_all(int fd, void *buf, size_t len, int writing)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = writing ? write(fd, (char *)buf + done, len - done)
		                    : read(fd, (char *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

int kxgpu_remote_call(const char *sock, const struct kxgpu_msg_req *req,
                      struct kxgpu_msg_reply *rep,
                      struct kxgpu_partition **parts, char *err,
                      size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct kxgpu_msg_req r = *req;
	int fd;

	if (parts)
		*parts = NULL;
	if (strlen(sock) >= sizeof sa.sun_path) {
		snprintf(err, errlen, "socket path too long: %s", sock);
		return KXGPU_EIO;
	}
	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		snprintf(err, errlen, "cannot reach `kxrun gpu serve` at %s: %s",
		         sock, strerror(errno));
		if (fd >= 0)
			close(fd);
		return KXGPU_EIO;
	}
	r.magic = MSG_MAGIC;
	if (io_all(fd, &r, sizeof r, 1) != 0 ||
	    io_all(fd, rep, sizeof *rep, 0) != 0 || rep->magic != MSG_MAGIC) {
		snprintf(err, errlen, "`kxrun gpu serve` at %s did not answer", sock);
		close(fd);
		return KXGPU_EIO;
	}
	if (rep->n && parts) {
		*parts = calloc(rep->n + 1, sizeof **parts);
		if (!*parts || io_all(fd, *parts, rep->n * sizeof **parts, 0) != 0) {
			free(*parts);
			*parts = NULL;
			snprintf(err, errlen, "`kxrun gpu serve` at %s: short reply",
			         sock);
			close(fd);
			return KXGPU_EIO;
		}
	}
	close(fd);
	if (rep->rc)
		snprintf(err, errlen, "%.*s", (int)sizeof rep->err - 1, rep->err);
	return rep->rc;
}

int kxgpu_remote_read(const char *sock, struct kxgpu_snapshot *snap,
                      int devices_only, char *err, size_t errlen)
{
	struct kxgpu_msg_req req = { .op = devices_only ? KXGPU_OP_DEVICES :
	                                                  KXGPU_OP_READ };
	struct kxgpu_msg_reply rep;
	struct kxgpu_partition *parts;
	int rc;

	memset(snap, 0, sizeof *snap);
	rc = kxgpu_remote_call(sock, &req, &rep, &parts, err, errlen);
	if (rc)
		return rc;
	snap->ndevices = rep.ndevices;
	snap->probed_ms = rep.probed_ms;
	memcpy(snap->devices, rep.devices, sizeof snap->devices);
	snap->n = parts ? rep.n : 0;
	snap->parts = parts ? parts : calloc(1, sizeof *parts);
	return 0;
}

int kxgpu_remote_probe(const char *sock, char *err, size_t errlen)
{
	struct kxgpu_msg_req req = { .op = KXGPU_OP_PROBE };
	struct kxgpu_msg_reply rep;

	return kxgpu_remote_call(sock, &req, &rep, NULL, err, errlen);
}

int kxgpu_remote_create(const char *sock, const struct kxgpu_request *r,
                        struct kxgpu_partition *out, char *err, size_t errlen)
{
	struct kxgpu_msg_req req = {
		.op = KXGPU_OP_CREATE, .device = r->device, .ppm = r->ppm,
		.duration_ms = r->duration_ms, .owner_set = r->owner != r->caller,
		.owner = r->owner,
	};
	struct kxgpu_msg_reply rep;
	int rc = kxgpu_remote_call(sock, &req, &rep, NULL, err, errlen);

	if (!rc && out)
		*out = rep.part;
	return rc;
}

int kxgpu_remote_id(const char *sock, enum kxgpu_op op, const char *id,
                    struct kxgpu_partition *out, char *err, size_t errlen)
{
	struct kxgpu_msg_req req = { .op = op };
	struct kxgpu_msg_reply rep;
	int rc;

	snprintf(req.id, sizeof req.id, "%s", id);
	rc = kxgpu_remote_call(sock, &req, &rep, NULL, err, errlen);
	if (!rc && out)
		*out = rep.part;
	return rc;
}

int kxgpu_remote_available(const char *sock, uint32_t device, uint32_t *ppm,
                           char *err, size_t errlen)
{
	struct kxgpu_msg_req req = { .op = KXGPU_OP_AVAILABLE, .device = device };
	struct kxgpu_msg_reply rep;
	int rc = kxgpu_remote_call(sock, &req, &rep, NULL, err, errlen);

	if (!rc)
		*ppm = rep.ppm;
	return rc;
}

/* ---- server side -------------------------------------------------------- */

void kxgpu_serve_request(kxgpu_ledger *l, const struct kxgpu_msg_req *req,
                         uid_t uid, pid_t pid, struct kxgpu_msg_reply *rep,
                         struct kxgpu_partition **parts)
{
	struct kxgpu_device devs[KXGPU_MAX_DEVICES];
	struct kxgpu_snapshot snap;
	char id[sizeof req->id + 1];
	int n;

	memset(rep, 0, sizeof *rep);
	rep->magic = MSG_MAGIC;
	*parts = NULL;
	memcpy(id, req->id, sizeof req->id);
	id[sizeof req->id] = 0;
	if (req->magic != MSG_MAGIC) {
		rep->rc = KXGPU_EINVAL;
		snprintf(rep->err, sizeof rep->err, "bad request");
		return;
	}
	switch (req->op) {
	case KXGPU_OP_READ:
	case KXGPU_OP_DEVICES:
		rep->rc = req->op == KXGPU_OP_READ ?
		          kxgpu_ledger_read(l, &snap, rep->err, sizeof rep->err) :
		          kxgpu_ledger_devices(l, &snap, rep->err, sizeof rep->err);
		if (rep->rc)
			return;
		rep->ndevices = snap.ndevices;
		rep->probed_ms = snap.probed_ms;
		memcpy(rep->devices, snap.devices, sizeof rep->devices);
		rep->n = snap.n;
		*parts = snap.parts;  /* the caller frees */
		return;
	case KXGPU_OP_PROBE:
		n = kxgpu_probe_devices(devs, KXGPU_MAX_DEVICES, rep->err,
		                        sizeof rep->err);
		rep->rc = n < 0 ? KXGPU_ENODEV :
		          kxgpu_ledger_set_devices(l, devs, (uint32_t)n, rep->err,
		                                   sizeof rep->err);
		return;
	case KXGPU_OP_CREATE: {
		struct kxgpu_request r = {
			.device = req->device, .ppm = req->ppm,
			.duration_ms = req->duration_ms, .caller = uid,
			.owner = req->owner_set ? req->owner : uid, .pid = pid,
		};
		rep->rc = kxgpu_ledger_create(l, &r, &rep->part, rep->err,
		                              sizeof rep->err);
		return;
	}
	case KXGPU_OP_RELEASE:
		rep->rc = kxgpu_ledger_release(l, id, uid, &rep->part, rep->err,
		                               sizeof rep->err);
		return;
	case KXGPU_OP_FIND:
		rep->rc = kxgpu_ledger_find(l, id, &rep->part, rep->err,
		                            sizeof rep->err);
		return;
	case KXGPU_OP_AVAILABLE:
		rep->rc = kxgpu_ledger_available(l, req->device, &rep->ppm,
		                                 rep->err, sizeof rep->err);
		return;
	default:
		rep->rc = KXGPU_EINVAL;
		snprintf(rep->err, sizeof rep->err, "unknown request %u", req->op);
	}
}
