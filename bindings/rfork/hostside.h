/*
 * hostside.h - kx.rfork's side of kxrun in a resumed child: the descriptors
 * the host and libuv refer to (hostfds.c), the loop (hostloop.c) and the
 * thread pool (workpool.c).  The rfork core (rfork.h) knows nothing of
 * them: the Lua binding passes rf_host_capture as the prepare's capture
 * and calls rf_host_reset in the child.
 */
#ifndef RFORK_HOSTSIDE_H
#define RFORK_HOSTSIDE_H

#include <stddef.h>

#include "kx.h"

/* In the parent, at prepare, from a task (the child resumes inside it): a
 * malloc'd blob listing every descriptor above 2 and what it is.  NULL and
 * a message on failure. */
void *rf_host_capture(size_t *len, char *err, size_t errlen);

/* In a resumed child right after the switch (memory = the parent's at
 * prepare, fd table = 0, 1, 2 plus the regular files rfork reopened):
 * re-creates the captured descriptors at their numbers, retires the
 * parent's loop, starts a fresh one and hands it to the host (kx_resumed:
 * kx_on_resume hooks, then every task but the calling one cancelled).
 * 0, or -1 and a message. */
int rf_host_reset(const void *blob, size_t len, char *err, size_t errlen);

/* hostfds.c: the descriptors alone (rf_host_reset calls it). */
int rf_host_fds(const void *blob, size_t len, char *err, size_t errlen);

/* workpool.c: the parent's workers and their work are gone; from now on
 * uv_queue_work is served by a pool of this process. */
void rf_workpool_reset(void);

/* zygote.c: rfork.spawn's children come from a small exec'd process (no
 * copy of a big caller's page tables).  rf_zygote_spawn is kx_spawn_lua's
 * start (ud: struct rf_spawn_args; the child is this process's own);
 * rf_zygote_main is `kxrun rfork _zygote`, serving the socket sock. */
struct rf_container;
struct rf_spawn_args {
	const char *address, *id, *key, *transport;
	const struct rf_container *ct;
	int report;   /* the child writes why it failed here, before the switch */
};
pid_t rf_zygote_spawn(const struct kx_spawn *o, void *ud, char *err, size_t errlen);
int rf_zygote_main(int sock);
/* template.c: what a zygote says to its template of a snapshot (started
 * by rf_resume_template) on a SOCK_SEQPACKET socket: an order, with the
 * child's report pipe and its KX_IO_FD stdio as SCM_RIGHTS, answered with
 * the child's pid and its gate's write end (below), or why not (the
 * template then exits).  The first answer, when it is ready, is the
 * template's own pid (or an error).  It ends when the socket closes,
 * after a second without an order, or with its parent. */
struct rf_order {
	int io[3];            /* enum kx_io */
	char cwd[4096];       /* "" for the template's */
};
struct rf_order_reply {
	int pid;              /* > 0, or -errno with err */
	char err[512];
};

/* In a child forked for a request (by the zygote or a template), from a
 * pipe whose write end the zygote writes once the caller has the child's
 * pid: 1, go on; 0, the answer never went out (exit, saying nothing). */
int rf_gate_pass(int gate[2]);
/* In such a child: changes to cwd ("" : stays), or says why not on the
 * report pipe ("cwd 'X': ...", as rfork.spawn returns it) and -1. */
int rf_child_cwd(const char *cwd, int report);

#endif
