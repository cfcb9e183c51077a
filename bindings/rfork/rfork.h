/*
 * rfork.h - remote fork of a running process in user space (kx.rfork, the
 * C core; docs/MANUAL.md §5).  x86-64 Linux only.
 *
 * Parent side:
 *
 *     struct rf_holder *h;
 *     long r = rf_prepare(&opts, &h, err, sizeof err);
 *     if (r < 0)  -> failed, err says why
 *     if (r == 0) -> this is the parent: h serves children until rf_close(h)
 *     if (r > 0)  -> this is a resumed child (r = its index, 1, 2, ...): the
 *                    process now runs the parent's memory as it was at the
 *                    call; h describes the child side (rf_is_child(h)).
 *
 * rf_prepare captures the calling thread's callee-saved registers, stack and
 * instruction pointers, FS base, signal dispositions, the open regular files
 * and /proc/self/maps, then forks a "holder": a process that keeps the
 * copy-on-write image of memory as it was and serves it over TCP to children
 * that present the snapshot's id and 128-bit key.  The holder lives until
 * rf_close, the parent's exit (PR_SET_PDEATHSIG) or opts.idle_s without a
 * connection.  Only the calling thread is reproduced.
 *
 * Child side:
 *
 *     rf_resume(address, id, key_hex, err, sizeof err)
 *
 * fetches the descriptor, checks that the parent's files (executable,
 * libraries, other mapped files) are the same here, creates a userfaultfd,
 * starts a pager process that fills missing pages from the holder, and
 * replaces the calling process's memory with the parent's (lazily: each page
 * arrives on first touch).  On success it does not return: rf_prepare returns
 * again, in the parent's image, with the child's index.  On failure before
 * the point of no return it returns -1 and a message; after it (a failure of
 * the restorer, or the holder gone) the process dies with a message on stderr.
 * The calling process must be single-threaded.
 *
 * Regular files open in the parent at prepare are reopened in the child at the
 * same numbers, flags and offsets; every other descriptor but 0, 1, 2 is
 * closed.  Host-level state (an event loop's descriptors) is handed over by a
 * capture callback at prepare and the caller's own reset after resume.
 */
#ifndef KX_RFORK_H
#define KX_RFORK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rf_holder;

struct rf_prepare_opts {
	const char *listen;   /* "HOST:PORT", port 0 = any free port */
	double idle_s;        /* holder exits after this long without a client
	                         (<= 0: 600 s) */
	/* Called right before the snapshot; returns a malloc'd blob kept in
	 * the image (handed back by rf_resume_blob in the child), or NULL and
	 * a message.  May be NULL. */
	void *(*capture)(size_t *len, char *err, size_t errlen);
	/* "tcp" (NULL), "rdma" (an RDMA port must reach the listening
	 * address, else an error) or "auto" (RDMA when one does).  With RDMA
	 * the holder starts an agent that copies the image once, registers
	 * it and lets children read it with one-sided RDMA READs. */
	const char *transport;
	/* 1: the holder does not learn the working set of its children (each
	 * child is prefetched a static guess only; for measuring). */
	int no_learn;
};

long rf_prepare(const struct rf_prepare_opts *o, struct rf_holder **out,
                char *err, size_t errlen);

/* Parent side: snapshot id (16 hex digits), key (32 hex digits), address
 * "HOST:PORT" with the real port, children resumed so far. */
const char *rf_id(const struct rf_holder *h);
const char *rf_key(const struct rf_holder *h);
const char *rf_address(const struct rf_holder *h);
long rf_children(const struct rf_holder *h);
pid_t rf_holder_pid(const struct rf_holder *h);

/* What carries the pages: parent: "tcp" or "rdma" (the holder has an RDMA
 * agent); child: what its resume used.  rf_transport_info: the device, or
 * why not RDMA; in the parent *agent tells where the agent is. */
enum { RF_AGENT_NONE, RF_AGENT_STARTING, RF_AGENT_READY, RF_AGENT_FAILED };
const char *rf_transport(const struct rf_holder *h);
const char *rf_transport_info(const struct rf_holder *h, int *agent);

/* Child side: 1 in a resumed child, its index (1, 2, ...) and the capture
 * blob taken at prepare (NULL, 0 when there was none). */
int rf_is_child(const struct rf_holder *h);
long rf_index(const struct rf_holder *h);
const void *rf_resume_blob(const struct rf_holder *h, size_t *len);

/* Tells h that its holder has exited (reaped by the caller), so that
 * rf_close signals nothing. */
void rf_holder_exited(struct rf_holder *h);

/* Stops the holder (children still resuming lose their parent) and frees h.
 * Safe on a child-side handle (only frees it). */
void rf_close(struct rf_holder *h);

/* A lean container for the resumed child (container.c): mount, UTS and IPC
 * namespaces of its own, and what is asked for here.  The resuming
 * process stays outside, passes signals on, removes the cgroups when the
 * child is gone and exits as it did.  Needs root. */
enum { RF_NET_HOST, RF_NET_NEW, RF_NET_NAMED };
struct rf_container {
	const char *rootfs;    /* the child's / (bound read-only; /proc, /dev and a
	                          tmpfs /tmp where it has those folders); NULL:
	                          the host's */
	int pid;               /* a PID namespace of its own: the child is its 1 */
	int net;               /* RF_NET_NEW: a network namespace with only lo;
	                          RF_NET_NAMED: netns (ip netns's name, or a path) */
	const char *netns;
	const char *hostname;  /* NULL: the host's name */
	uint64_t memory;       /* cgroup limits: bytes, cores, processes; 0: none */
	double cpus;
	uint64_t pids;
};

/* "64M", "1.5G", "512K", "4096": bytes (powers of 1024; a B or iB after
 * the unit is allowed).  0, or -1 on other text. */
int rf_parse_size(const char *text, uint64_t *bytes);

/* Resumes the snapshot served at address (see above).  key_hex: 32 hex
 * digits.  transport: "auto" (NULL: RDMA when the parent's holder offers
 * it and a local port reaches it, else TCP), "rdma" (else an error) or
 * "tcp".  ct: a container, or NULL.  Returns -1 with a message; does not
 * return on success. */
int rf_resume(const char *address, const char *id, const char *key_hex,
              const char *transport, const struct rf_container *ct, char *err,
              size_t errlen);

/* rf_resume as a template: the process resumes once and then, instead
 * of returning into the parent's code, forks a child for each order that
 * comes on `order` (kxrun's side: bindings/rfork/template.c, its protocol
 * in hostside.h), each child served by the shared pager as a child of its
 * own; rf_prepare returns in each with its index.  TCP and the shared
 * pager only.  Returns -1 + err when it cannot be one; does not return
 * otherwise. */
int rf_resume_template(const char *address, const char *id, const char *key_hex,
                       const char *transport, int order, char *err, size_t errlen);

/* For a process that forks many resuming processes (a zygote), once, in
 * its single thread: sets every signal disposition to the default and
 * reads its own layout, so that rf_resume in each fork sets only the
 * parent's other dispositions and need not read its maps.  Its forks
 * must keep those dispositions (kx_spawn: KX_SPAWN_KEEP_SIGNALS). */
void rf_resume_warm(void);

/* Tunables read from the environment by rf_resume (defaults in brackets):
 *   KXRUN_RFORK_TIMEOUT_MS  each request to the holder [10000]
 *   KXRUN_RFORK_READAHEAD   pages fetched per fault, 1..256 [16]
 *   KXRUN_RFORK_RDMA_DEVICE NAME[:PORT[:GID_INDEX]]: the RDMA port to use
 *                           (also read by rf_prepare's holder)           */

#endif /* KX_RFORK_H */
