/*
 * registry.h - the tracer registration channel of kx.vtime (Kronos's
 * `tracer` processes joining an orchestrator's experiment).  No Lua, no loop:
 * lregistry.c serves it from libuv, `kxrun vtime tracer` is the client.
 *
 * The experiment listens on a Unix SOCK_SEQPACKET socket (one message = one
 * packet, so no framing).  A message is a list of NUL-terminated strings,
 * the first naming its kind:
 *
 *   tracer -> controller   "register" id ID speed S timeline T cwd DIR
 *                          env N K=V... cmd N ARG... [cmd N ARG...]
 *                          + 2 fds (SCM_RIGHTS): write ends of the pipes
 *                          that carry the commands' stdout and stderr
 *   controller -> tracer   "ok" PID...           the commands were spawned
 *                          "err" MESSAGE         refused (then closed)
 *                          "exit" code|signal N  every command ended (or the
 *                                                experiment stopped)
 *
 *   char path[108]; vtreg_default_path(path, sizeof path);
 *   int lfd = vtreg_listen(path, err, sizeof err);     // controller
 *   int st = vtreg_tracer(path, wait_s, &req, err, n); // tracer, blocks
 */
#ifndef KX_VTIME_REGISTRY_H
#define KX_VTIME_REGISTRY_H
#include <stddef.h>
#include <sys/types.h>

#define VTREG_MAX_MSG (128 * 1024) /* fits a default socket send buffer */
#define VTREG_NFDS 2               /* stdout, stderr */

/* $KXRUN_VTIME_SOCK, else /run/kxrun/vtime.sock for root, else
 * $XDG_RUNTIME_DIR/kxrun-vtime.sock, else /tmp/kxrun-<uid>/vtime.sock.
 * 0, or -1 when the result does not fit a socket address. */
int vtreg_default_path(char *buf, size_t len);

/* Creates the parent directory if needed and binds a non-blocking
 * listening socket at path.  A socket file nobody answers on (a dead
 * controller's) is removed first; one a live process listens on is refused
 * with a message naming that process.  fd, or -1 and a message. */
int vtreg_listen(const char *path, char *err, size_t errlen);

/* Sends one message with up to VTREG_NFDS descriptors.  0 or -errno. */
int vtreg_send(int fd, const char *msg, size_t len, const int *fds, int nfds);

/* Receives one message (non-blocking when dontwait) and the descriptors
 * passed with it (close-on-exec).  Bytes (0 = the peer closed), or -errno;
 * -EMSGSIZE for a message over len (its descriptors are closed). */
ssize_t vtreg_recv(int fd, char *buf, size_t len, int *fds, int *nfds,
                   int dontwait);

/* Message building: appends a string (with its NUL).  0, or -1 when the
 * message would exceed VTREG_MAX_MSG. */
struct vtreg_msg {
	char buf[VTREG_MAX_MSG];
	size_t len;
};
int vtreg_put(struct vtreg_msg *m, const char *s);
int vtreg_putf(struct vtreg_msg *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Reading: the string at *off (advanced past it), or NULL at the end or
 * when the message is not NUL-terminated there. */
const char *vtreg_next(const char *buf, size_t len, size_t *off);

/* What a tracer asks for. */
struct vtreg_request {
	const char *id;
	double speed;
	long timeline;
	const char *cwd;
	char *const *env;          /* NULL-terminated "K=V" */
	char *const *const *cmds;  /* NULL-terminated list of argv arrays */
};

/* The tracer: connects (retrying for up to wait_s seconds while nobody
 * listens), registers, copies the commands' stdout/stderr to its own until
 * the controller reports their end.  Blocks; SIGINT, SIGTERM and SIGHUP
 * end it (the controller then kills the commands).
 * Returns a wait status (as waitpid gives it) of the commands, or -1 and a
 * message (no experiment, refused, controller gone). */
int vtreg_tracer(const char *path, double wait_s,
                 const struct vtreg_request *rq, char *err, size_t errlen);

#endif
