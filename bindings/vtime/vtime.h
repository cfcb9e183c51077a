/*
 * vtime.h - the kx.vtime controller core: experiments, dilated processes,
 * freeze/thaw backends and the shared virtual clock.  No Lua, no loop; the
 * binding (lvtime.c) drives rounds with libuv timers.
 *
 *   struct vt_exp *e = vt_exp_new(step_ns, "auto", err, sizeof err);
 *   pid_t pid = vt_spawn(e, argv, envp_extra, stdout_path, ..., err, n);
 *   vt_freeze(e);                         // every process stopped
 *   for each round: vt_thaw(e); <real slice>; vt_freeze(e);
 *                   vt_set_clock(e, e->round * step)
 *   vt_exp_stop(e);                       // kill all, remove shm/cgroup
 *
 * Backends: VT_SIGNAL (SIGSTOP/SIGCONT to each process group) and
 * VT_FREEZER (cgroup v1 freezer: /sys/fs/cgroup/freezer/kxrun-vtime-<pid>-<n>).
 * "auto" = freezer when that hierarchy is writable, else signal.
 */
#ifndef KX_VTIME_H
#define KX_VTIME_H
#include <stdint.h>
#include <sys/types.h>

#include "shm.h"

enum vt_backend { VT_SIGNAL = 1, VT_FREEZER = 2 };

struct vt_proc {
	pid_t pid;               /* also its process group id */
	double speed;            /* recorded; not applied yet (see README) */
	int alive;
	int wstatus;             /* raw wait status once !alive */
	int64_t exit_vns;        /* virtual clock when its exit was seen */
};

struct vt_exp {
	int64_t step;            /* virtual ns per round */
	enum vt_backend backend;
	int frozen;              /* freeze() called and not thawed since */
	int stopped;             /* vt_exp_stop done */
	int64_t round;           /* rounds completed */
	struct kxvt_shm *shm;    /* read-write mapping */
	char shm_path[128];
	char cg_path[160];       /* freezer cgroup directory, or "" */
	struct vt_proc *procs;
	int nprocs, cap;
};

/* Parses "signal" | "freezer" | "auto"; 0 and a message naming what is
 * missing when it cannot run here. */
int vt_backend_parse(const char *name, enum vt_backend *out, char *err,
                     size_t errlen);
/* NULL and a message on failure (step <= 0, backend, shm). */
struct vt_exp *vt_exp_new(int64_t step, const char *backend, char *err,
                          size_t errlen);
/* Checks that path (searched in PATH when it has no '/') exists, is
 * executable and is not a statically linked ELF (no PT_INTERP); fills
 * resolved.  0, or -1 and a message. */
int vt_check_program(const char *prog, char *resolved, size_t rlen, char *err,
                     size_t errlen);
/* Forks argv[0] (resolved) into its own process group (and cgroup) with
 * LD_PRELOAD=<libdir>/libkxvtime.so and KXRUN_VTIME_SHM set, extra env
 * "K=V" strings added; stdout/stderr: NULL = inherit, "null", or a path.
 * The child is stopped before exec (it starts at the next thaw).
 * Returns the index in e->procs, or -1 and a message. */
int vt_spawn(struct vt_exp *e, char *const argv[], char *const env_extra[],
             const char *libdir, const char *out, const char *errp,
             double speed, char *err, size_t errlen);
/* Stops every live process and waits until each is stopped (signal: state
 * T in /proc; freezer: FROZEN). */
void vt_freeze(struct vt_exp *e);
void vt_thaw(struct vt_exp *e);
/* Seqlock write of the virtual clock, then FUTEX_WAKE of every waiter. */
void vt_set_clock(struct vt_exp *e, int64_t vns);
int64_t vt_now(const struct vt_exp *e);
/* Records the exit of pid (from the child watch). */
void vt_proc_exited(struct vt_exp *e, pid_t pid, int wstatus);
/* Kills every process, removes shm and cgroup.  Twice is harmless. */
void vt_exp_stop(struct vt_exp *e);
void vt_exp_free(struct vt_exp *e);
/* Thaws and removes leftover kxrun-vtime-* freezer cgroups (killing their
 * processes) and /dev/shm/kxrun-vtime-* files of dead controllers.
 * Returns the number of cgroups removed. */
int vt_cleanup(char *err, size_t errlen);
#endif
