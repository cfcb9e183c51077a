/*
 * launch.h - the task launcher of a kx.sched worker.
 *
 * A process forked from the worker when the worker starts, that starts
 * every task for it and outlives it long enough that no result is lost:
 *
 *   - start: clone(CLONE_VM | CLONE_VFORK) + exec; before exec the task
 *     takes its own process group, asks for SIGKILL when the launcher dies
 *     and opens its stdio.  It is born in its cgroup: each cgroup the worker
 *     owns (LAUNCH_OWN) gets a zygote (zygote.h), a process of the
 *     launcher's moved in once, whose request socket the worker is handed
 *     (LAUNCH_ZYGOTE): the worker sends it the request, it clones the task
 *     with CLONE_PARENT (the launcher's child) and notes the start to the
 *     launcher, which tells the worker.  Without a zygote the worker sends
 *     the request to the launcher and the task joins the cgroup itself (one
 *     write of "0" to cgroup.procs) before exec.  Either way nothing of the
 *     task runs outside it.  No shell, and the worker's loop never waits on
 *     a fork, a mkdir or an rmdir.
 *   - end: the launcher reaps the task (wait4) and tells the worker, which
 *     records the result and then acknowledges it.
 *   - the worker dies (its end of the socket closes): every task still
 *     running is killed (it is re-run elsewhere), the cgroups the worker
 *     owned are emptied and removed, and the results of tasks that ended on
 *     their own but were not acknowledged are handed, one line each, on
 *     stdin, to the recorder command the worker gave at start (which writes
 *     them where the worker would have).  So a command that completed is
 *     never run again because its worker died before recording it.
 *
 * Messages go over SOCK_SEQPACKET pairs; the launcher and its zygotes run
 * only system calls and their own code (they are forks of a threaded
 * process).
 */
#ifndef KX_SCHED_LAUNCH_H
#define KX_SCHED_LAUNCH_H

#include <stdint.h>
#include <sys/types.h>

enum launch_msg_type {
	/* worker -> launcher */
	LAUNCH_SPAWN = 1,   /* payload: strings, see launch_spawn_pack */
	LAUNCH_ACK,         /* the job's result is recorded: forget it */
	LAUNCH_KILL,        /* a = signal, to the job's process group */
	LAUNCH_OWN,         /* payload: a cgroup directory to remove at the end */
	/* launcher -> worker */
	LAUNCH_STARTED,     /* a = pid, t1 = start, t2 = request received (us
	                       since the epoch); from a zygote to the launcher
	                       the same, with the request's tag as payload */
	LAUNCH_FAILED,      /* a = errno, b = enum launch_stage; from a zygote
	                       t2 = the pid of the child that failed */
	LAUNCH_EXITED,      /* a = wait status, t1 = end (us), t2 = CPU (us) */
	LAUNCH_ZYGOTE,      /* a = the zygote's pid, payload: the cgroup it
	                       lives in; the descriptor of its request socket
	                       comes with it (SCM_RIGHTS) */
	LAUNCH_ZYGOTE_GONE, /* a = the zygote's pid: requests sent to it and
	                       not answered go to the launcher */
};

enum launch_stage { STAGE_EXEC, STAGE_CGROUP, STAGE_STDIN, STAGE_STDOUT,
		    STAGE_STDERR, STAGE_CWD, STAGE_LIMIT };

struct launch_msg {
	uint32_t type, job;
	int32_t a, b;
	int64_t t1, t2;
	uint32_t argc, envc;   /* LAUNCH_SPAWN: counts of the strings below */
};

/* Largest message (a spawn request with its command line). */
#define LAUNCH_MSG_MAX (128 * 1024)

/* A spawn request's strings, each NUL-terminated, in this order: cgroup
 * procs file ("" for none), stdin, stdout, stderr (paths; "" = /dev/null),
 * cwd ("" = the launcher's), tag (handed to the recorder), then argc
 * arguments and envc environment entries added to the launcher's
 * environment (one of the same name replaced). */
#define LAUNCH_SPAWN_FIXED 6

/* What the stage names say in messages. */
const char *launch_stage_name(int stage);

/* Forks the launcher.  recorder: argv of the command that gets the
 * orphaned results (NULL: none), recorder_input its first stdin line(s);
 * keep_fd: a descriptor the launcher and then the recorder hold until they
 * end (-1: none).  Returns the launcher's pid and sets *sock (the worker's
 * end, close-on-exec), or -errno. */
pid_t launch_fork(int *sock, char *const *recorder, const char *recorder_input,
		  int keep_fd);

#endif
