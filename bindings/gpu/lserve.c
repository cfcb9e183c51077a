/*
 * lserve.c - gpu.serve(): the ledger daemon for several users (remote.h).
 *
 * Root only.  Restricts the ledger to root (0600 files, 0755 directory),
 * listens on <dir>/serve.sock (0666) with libuv and answers one request per
 * connection, taking the caller's uid and pid from SO_PEERCRED.  It also
 * reads the ledger at every partition's expiry (a timer, re-armed after each
 * read and when the directory changes), which ends what still runs in
 * partitions that are over: they end at their time with nobody running a
 * command.  The calling task waits until it is cancelled (kxrun's
 * SIGINT/SIGTERM); the socket is removed then.
 */
#include "devices.h"
#include "lgpu.h"
#include "remote.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kx.h"

/* ---- one request --------------------------------------------------------- */

void kxgpu_serve_request(kxgpu_ledger *l, const struct kxgpu_msg_req *req,
                         uid_t uid, pid_t pid, struct kxgpu_msg_reply *rep,
                         struct kxgpu_partition **parts)
{
	struct kxgpu_device devs[KXGPU_MAX_DEVICES];
	struct kxgpu_snapshot snap;
	char id[sizeof req->id + 1];
	int n;

	memset(rep, 0, sizeof *rep);
	rep->magic = KXGPU_MSG_MAGIC;
	*parts = NULL;
	memcpy(id, req->id, sizeof req->id);
	id[sizeof req->id] = 0;
	if (req->magic != KXGPU_MSG_MAGIC) {
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
		rep->rc = req->force ?
		          kxgpu_ledger_release_force(l, id, uid, req->grace_ms,
		                                     &rep->part, rep->err,
		                                     sizeof rep->err) :
		          kxgpu_ledger_release(l, id, uid, &rep->part, rep->err,
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

/* ---- the daemon ---------------------------------------------------------- */

struct server {
	uv_pipe_t pipe;
	uv_timer_t sweep;       /* reads the ledger when something is due */
	uv_fs_event_t watch;    /* the directory: root may create directly */
	int open_handles;
	kxgpu_ledger *l;
	char sock[4200];
};

/* While a partition is ending its programs, the ledger is read this often
 * (each read ends those that are due). */
#define ENDING_POLL_MS 500

static void on_sweep(uv_timer_t *t);

/* Reads the ledger now, which ends the programs of partitions that are
 * over, and again at the next expiry: partitions end at their time even
 * when nobody runs a command. */
static void sweep(struct server *srv)
{
	struct kxgpu_snapshot s;
	char err[KXGPU_ERRLEN];
	int64_t now = kxgpu_now_ms(), next = INT64_MAX;

	if (kxgpu_ledger_read(srv->l, &s, err, sizeof err) != 0) {
		fprintf(stderr, "kxrun gpu serve: %s\n", err);
		next = now + 5000;  /* try again */
	} else {
		for (uint32_t i = 0; i < s.n; i++) {
			int64_t at = kxgpu_partition_ending(&s.parts[i], now) ?
			             now + ENDING_POLL_MS : s.parts[i].expires_ms;
			if (at < next)
				next = at;
		}
		kxgpu_snapshot_free(&s);
	}
	if (next == INT64_MAX)
		uv_timer_stop(&srv->sweep);
	else
		uv_timer_start(&srv->sweep, on_sweep,
		               next > now ? (uint64_t)(next - now) : 0, 0);
}

static void on_sweep(uv_timer_t *t)
{
	sweep(t->data);
}

/* Something changed in the ledger's directory (root works on the file
 * itself): look again soon, after the burst of writes. */
static void on_change(uv_fs_event_t *w, const char *name, int events,
                      int status)
{
	struct server *srv = w->data;

	(void)events, (void)status;
	if (name && strcmp(name, "ledger") == 0)
		uv_timer_start(&srv->sweep, on_sweep, 20, 0);
}

struct conn {
	uv_pipe_t pipe;
	struct server *srv;
	struct kxgpu_msg_req req;
	size_t got;
	struct kxgpu_msg_reply rep;
	struct kxgpu_partition *parts;
	uv_write_t w;
};

static void conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	free(c->parts);
	free(c);
}

static void conn_close(struct conn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->pipe))
		uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

static void on_written(uv_write_t *w, int status)
{
	(void)status;
	conn_close(w->data);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)hint;
	buf->base = (char *)&c->req + c->got;
	buf->len = sizeof c->req - c->got;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct ucred cred;
	socklen_t len = sizeof cred;
	uv_os_fd_t fd;
	uv_buf_t out[2];

	(void)buf;
	if (n < 0) {
		conn_close(c);
		return;
	}
	c->got += (size_t)n;
	if (c->got < sizeof c->req)
		return;
	uv_read_stop(s);
	/* who is asking, from the kernel: never from the request */
	if (uv_fileno((uv_handle_t *)s, &fd) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		conn_close(c);
		return;
	}
	kxgpu_serve_request(c->srv->l, &c->req, cred.uid, cred.pid, &c->rep,
	                    &c->parts);
	if (c->req.op == KXGPU_OP_CREATE || c->req.op == KXGPU_OP_RELEASE)
		sweep(c->srv);  /* a new expiry to wait for, or one ending */
	out[0] = uv_buf_init((char *)&c->rep, sizeof c->rep);
	out[1] = uv_buf_init((char *)c->parts, c->rep.n * sizeof *c->parts);
	c->w.data = c;
	if (uv_write(&c->w, s, out, c->rep.n ? 2 : 1, on_written) != 0)
		conn_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct server *srv = server->data;
	struct conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof *c);
	if (!c)
		return;
	c->srv = srv;
	uv_pipe_init(kx_loop(), &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 ||
	    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0)
		conn_close(c);
}

static struct server *active;  /* its socket goes when kxrun exits */

static void server_closed(uv_handle_t *h)
{
	struct server *srv = h->data;

	if (--srv->open_handles > 0)
		return;
	if (active == srv)
		active = NULL;
	free(srv);
}

static void unlink_at_exit(void *ud)
{
	(void)ud;
	if (active && active->sock[0])
		unlink(active->sock);
}

static void server_stop(void *ud)
{
	struct server *srv = ud;

	if (!srv->sock[0])
		return;
	unlink(srv->sock);
	srv->sock[0] = 0;
	uv_close((uv_handle_t *)&srv->pipe, server_closed);
	uv_close((uv_handle_t *)&srv->sweep, server_closed);
	uv_close((uv_handle_t *)&srv->watch, server_closed);
}

int kxgpu_serve(lua_State *L)
{
	kx_task *task = kx_checktask(L, "serve");
	char err[KXGPU_ERRLEN];
	struct server *srv;
	kxgpu_ledger *l;
	int rc;

	l = kxgpu_lua_ledger(err, sizeof err);
	if (!l)
		return kx_fail(L, "%s", err);
	if (kxgpu_ledger_serve_mode(l, err, sizeof err) != 0)
		return kx_fail(L, "%s", err);
	srv = calloc(1, sizeof *srv);
	if (!srv)
		return kx_fail(L, "out of memory");
	srv->l = l;
	snprintf(srv->sock, sizeof srv->sock, "%s", kxgpu_ledger_socket(l));
	uv_pipe_init(kx_loop(), &srv->pipe, 0);
	uv_timer_init(kx_loop(), &srv->sweep);
	uv_fs_event_init(kx_loop(), &srv->watch);
	srv->pipe.data = srv->sweep.data = srv->watch.data = srv;
	srv->open_handles = 3;
	unlink(srv->sock);  /* a daemon that died leaves its socket */
	rc = uv_pipe_bind(&srv->pipe, srv->sock);
	if (!rc)
		rc = uv_listen((uv_stream_t *)&srv->pipe, 128, on_connection);
	if (rc || chmod(srv->sock, 0666) != 0) {
		lua_pushfstring(L, "cannot listen on %s: %s", srv->sock,
		                rc ? uv_strerror(rc) : strerror(errno));
		unlink(srv->sock);
		uv_close((uv_handle_t *)&srv->pipe, server_closed);
		uv_close((uv_handle_t *)&srv->sweep, server_closed);
		uv_close((uv_handle_t *)&srv->watch, server_closed);
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2;
	}
	if (!active) {
		static int registered;
		if (!registered++)
			kx_atexit(unlink_at_exit, NULL);
	}
	active = srv;
	/* without it, partitions root makes directly end at the next request */
	uv_fs_event_start(&srv->watch, on_change, kxgpu_ledger_dir(l), 0);
	sweep(srv);
	return kx_await(L, task, -1, server_stop, srv);
}
