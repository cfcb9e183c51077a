/*
 * zygote.h - inside the launcher (launch.h): starting one command (clone +
 * exec, no shell) and the zygote process that starts them from inside a
 * cgroup.
 *
 * A zygote is forked by the launcher for each cgroup the worker owns and
 * moves itself into it once.  The worker sends it spawn requests directly
 * (its socket was handed to the worker); it clones each command with
 * CLONE_PARENT, so the command is born in the cgroup and is the launcher's
 * child, and notes every start to the launcher (LAUNCH_STARTED with the
 * request's tag as payload, or LAUNCH_FAILED) before it reads the next
 * request.  It ends when the worker's end of its request socket closes
 * (after noting what it started), or with the launcher (PDEATHSIG).
 */
#ifndef KX_SCHED_ZYGOTE_H
#define KX_SCHED_ZYGOTE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "launch.h"

/* What starting one request came to. */
struct started {
	pid_t pid;        /* the command (0: it did not start) */
	pid_t dead;       /* a child that failed before exec (a zygote's is
	                     the launcher's to reap) */
	int err, stage;   /* errno and enum launch_stage when it did not */
	int64_t t;        /* when exec succeeded (us since the epoch) */
	const char *tag;  /* the request's tag, in its payload */
};

/* CLOCK_REALTIME in us since the epoch. */
int64_t launch_now_us(void);

/* Starts the command of a spawn request (clone(CLONE_VM | CLONE_VFORK |
 * extra) + exec).  With extra = CLONE_PARENT (a zygote) the command joins
 * no cgroup: it is born in the zygote's. */
void launch_start(const struct launch_msg *m, char *payload, size_t len, int extra,
		  struct started *r);

/* The zygote: notes go to note_fd, requests come on req_fd; dir is the
 * cgroup it moves into.  Every other descriptor is closed. */
_Noreturn void zygote_main(int note_fd, int req_fd, const char *dir);

#endif
