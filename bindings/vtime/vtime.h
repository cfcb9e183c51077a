/*
 * vtime.h - the kx.vtime controller core: experiments, dilated processes,
 * CPU-proportional rounds, freeze backends and the shared clock (shm.h).
 * No Lua, no loop; the binding (lvtime.c) calls vt_round_poll from the loop.
 *
 *   struct vt_exp *e = vt_exp_new(step_ns, "auto", err, sizeof err);
 *   int i = vt_spawn(e, argv, env_extra, libdir, &opts, err, n);
 *   vt_freeze(e);                     // every process stopped, clocks equal
 *   vt_round_begin(e);                // one round:
 *   while (!vt_round_poll(e, 5e6)) ;  //   until every process is done
 *   vt_exp_stop(e);                   // kill all, remove shm/cgroup
 *
 * A round from R to E = R + step.  Processes are grouped in timelines (one
 * per process unless spawned with the same timeline id); a timeline's
 * members run one after the other, each for an equal share of what is left
 * of [R, E), all timelines in parallel.  A member runs until its virtual
 * clock reaches the end of its share: its CPU time since its resume (its
 * process CPU clock; the perf task-clock of its whole tree when it has
 * children) divided by its speed, plus virtual sleeps that ended inside its
 * share.  A perf task-clock counter's overflow sends SIGSTOP to its process
 * group (F_SETSIG); a member that blocks (every task of its tree sleeping,
 * no CPU used) is stopped by the controller; one that exits is done.  What
 * a member ran past its share (or short of it) is carried into its next
 * one.  A member whose every thread sleeps past the round sits it out.
 * When every timeline is done the clock moves to E and every slot reads E.
 *
 * Backends: VT_SIGNAL (SIGSTOP/SIGCONT only) and VT_FREEZER (the above, and
 * the experiment's cgroup - v1 freezer.state or v2 cgroup.freeze - frozen
 * whenever the experiment is frozen between advances (vt_freeze,
 * vt_hold): it also holds children that left the process group.  Not at
 * every round: one write costs ~5 ms on this kernel.)
 */
#ifndef KX_VTIME_H
#define KX_VTIME_H
#include <stdint.h>
#include <sys/types.h>

#include "shm.h"

enum kx_io; /* host/kx.h */

enum vt_backend { VT_SIGNAL = 1, VT_FREEZER = 2, VT_KMOD = 3 };
enum vt_cgver { VT_CGV1 = 1, VT_CGV2 = 2 };

enum vt_run { VT_WAIT, VT_RUNNING, VT_STOPPING, VT_DONE };

/* Where an experiment's resume cost comes from (calibrate.c). */
enum vt_cost_source {
	VT_COST_NONE,      /* not asked for yet */
	VT_COST_GUESS,     /* could not be measured: a guess */
	VT_COST_MEASURING, /* provisional, being measured (corrected after) */
	VT_COST_CACHED,    /* measured earlier in this boot */
	VT_COST_MEASURED,  /* measured by this kxrun */
	VT_COST_PINNED,    /* given by the user */
};

struct vt_proc {
	pid_t pid;               /* also its process group id */
	double speed;            /* virtual = cpu / speed */
	int timeline;            /* id; processes of one timeline take turns */
	int cpu;                 /* pinned CPU, or -1 */
	int alive;
	int wstatus;             /* raw wait status once !alive */
	int64_t exit_vns;        /* its virtual clock when its exit was seen */
	int slot;                /* index in shm->slot */
	int perf_fd;             /* task-clock of its tree, SIGSTOP on overflow */
	int status_fd;           /* /proc/<pid>/status, kept open: read each
	                            round it sits out (pending signals) */
	int64_t cpu_ns;          /* CPU of its tree counted so far (perf) */
	int64_t charged_ns;      /* CPU its shares were charged (see round.c) */
	int64_t provisional;     /* shares charged a provisional resume cost */
	int64_t share_cpu;       /* of which in its last share */
	int64_t carry;           /* virtual ns run past its last share */
	/* the current round */
	enum vt_run run;
	int64_t q_start, q_end;  /* its share */
	int64_t acct_base;       /* q_start + carry: what it has used is counted
	                            from here (below q_start: a credit) */
	int64_t vbase;           /* its clock when resumed */
	int64_t perf_base;       /* cpu_ns when resumed */
	int64_t cpu_base;        /* the leader's process CPU clock then */
	int64_t period;          /* CPU ns armed in the counter ... */
	int64_t armed_at;        /* ... when it read this (cpu_ns) */
	int64_t poll_ns;         /* between looks while it uses CPU: backs off */
	int64_t look_at;         /* real ns before which it is not looked at */
	int64_t resumed;         /* real ns when it was resumed */
	int64_t lead_base;       /* its leader thread's CPU clock then */

	int64_t last_cpu;        /* cpu_ns at the last poll */
	int counter_stale;       /* its own clock moved since last_cpu */
	int64_t last_own;        /* the leader's CPU clock then */
	int64_t idle_since;      /* real ns since when it used no CPU */
	int64_t runnable_cpu;    /* cpu_ns when /proc last showed it runnable */
	int64_t stray_since;     /* real ns a stray stopped task was seen, 0 */
	int rearms;              /* early stops resumed this share */
	int by_budget;           /* stopped by its counter, not for blocking */
	int ntasks;              /* threads when it blocked, 0: children too */
	uint32_t kmod_id;        /* kmod: its member id in kxvt.ko */
	int tl_idx, tl_link;     /* kmod: its timeline in e->tl this round, the
	                            next member of that timeline (-1: none) */
};

struct vt_timeline {
	int id;
	int64_t t;               /* virtual time its members have used up to */
	int active;              /* index of the member running, or -1 */
	int done;
};

struct vt_exp {
	int64_t step;            /* virtual ns per round */
	enum vt_backend backend;
	enum vt_cgver cgver;     /* freezer: which cgroup interface */
	int frozen;              /* every process stopped, clocks at a boundary */
	int stopped;             /* vt_exp_stop done */
	int in_round;            /* between vt_round_begin and its end */
	int64_t round;           /* rounds completed */
	int64_t round_start_real;
	int64_t advance_to;      /* round the current advance ends at */
	int64_t batch;           /* rounds the current round spans: a lone
	                            process runs them in one share */
	int64_t reached;         /* virtual time its timelines reached */
	int64_t n_batched;       /* rounds run so */
	int64_t slice_cap;       /* real ns a round may last, 0 = no cap */
	int64_t overshoot;       /* mean CPU ns from a counter's overflow to
	                            the stop (the stop's path: not charged) */
	int64_t stop_cpu;        /* CPU ns not charged as stops' paths */
	int64_t resume_cost;     /* CPU ns a resume costs a process */
	enum vt_cost_source cost_source;
	int64_t rounds_capped;   /* rounds ended by slice_cap */
	int64_t n_budget, n_blocked, n_rearm; /* how shares ended, early stops */
	int64_t n_asleep;        /* shares not run: every thread asleep */
	int64_t n_debt;          /* shares not run: a debt covered them */
	int64_t n_stray;         /* stray stopped tasks continued (round.c) */
	int64_t escaped_look;    /* when rounds next look for them (cleanup.c) */
	int64_t n_shares;        /* shares run (resumes) */
	struct kxvt_shm *shm;    /* read-write mapping */
	char shm_path[128];
	char cg_path[200];       /* freezer cgroup directory, or "" */
	int cg_frozen;           /* what was last written to it */
	struct vt_proc *procs;
	int nprocs, cap;
	struct vt_timeline *tl;  /* the current round's timelines */
	int ntl;
	int kfd, timens_fd;      /* kmod: /dev/kxvt, the members' time namespace */
	int kmod_pmu;            /* kmod: the module found a hardware PMU */
	char budget_note[128];   /* why budgets count CPU time, or "" */
	int ntimelines_pinned;   /* explicit timelines given a CPU so far */
	int pin_timeline[64];    /* their ids, index = order of first use */
};

struct vt_spawn_opts {
	double speed;            /* > 0 */
	int timeline;            /* >= 0 explicit id (pinned when CPUs allow),
	                            -1: a timeline of its own */
	const char *out, *err;   /* NULL = inherit, "null", or a path */
};

/* The backends' names (a new backend adds its name here, in
 * vt_backend_known and a branch of vt_backend_parse). */
#define VT_BACKEND_NAMES "signal, freezer, freezer-v1, freezer-v2, kmod, auto"
int vt_backend_known(const char *name);
/* Parses "signal" | "freezer" | "kmod" | "auto" (also "freezer-v1",
 * "freezer-v2"; "auto" is kmod where /dev/kxvt opens, else as before);
 * 0 and a message naming what is missing when it cannot run here. */
int vt_backend_parse(const char *name, enum vt_backend *out,
                     enum vt_cgver *cgver, char *err, size_t errlen);
/* NULL and a message on failure (step <= 0, backend, shm). */
struct vt_exp *vt_exp_new(int64_t step, const char *backend, char *err,
                          size_t errlen);
/* Checks that path (searched in PATH when it has no '/') exists, is
 * executable and, unless allow_static, is not a statically linked ELF (no
 * PT_INTERP); fills resolved.  0, or -1 and a message. */
int vt_check_program(const char *prog, char *resolved, size_t rlen,
                     int allow_static, char *err, size_t errlen);
/* Forks argv[0] (resolved) into its own process group (and cgroup) with
 * LD_PRELOAD=<libdir>/libkxvtime.so, KXRUN_VTIME_SHM and KXRUN_VTIME_SLOT
 * set, extra env "K=V" strings added, a task-clock counter attached.  The
 * child is stopped before exec: its start-up is the first CPU it uses in
 * its first round.  Returns the index in e->procs, or -1 and a message. */
int vt_spawn(struct vt_exp *e, char *const argv[], char *const env_extra[],
             const char *libdir, const struct vt_spawn_opts *o, char *err,
             size_t errlen);
/* Stops every live process and waits until each is stopped. */
void vt_freeze(struct vt_exp *e);
/* Starts a round (e->frozen must be set). */
void vt_round_begin(struct vt_exp *e);
/* Drives the round for up to max_wait_ns of real time; 1 once it has ended
 * (e->round incremented, clocks set, e->frozen), else 0. */
int vt_round_poll(struct vt_exp *e, int64_t max_wait_ns);
/* Between advances: the freezer backend freezes its cgroup. */
void vt_hold(struct vt_exp *e);
/* Ends a round now: stops whoever still runs (their share is cut short). */
void vt_round_abort(struct vt_exp *e);
/* Sets exp:now() and every slot to vns (a boundary), wakes sleepers. */
void vt_set_clock(struct vt_exp *e, int64_t vns);
int64_t vt_now(const struct vt_exp *e);
/* Process i's virtual clock as the controller sees it. */
int64_t vt_proc_now(struct vt_exp *e, int i);
/* Records the exit of pid (from the child watch). */
void vt_proc_exited(struct vt_exp *e, pid_t pid, int wstatus);
/* Kills every process the experiment ever ran, however it detached
 * (cleanup.c), removes its clock file and cgroup.  Twice is harmless. */
void vt_exp_stop(struct vt_exp *e);
void vt_exp_free(struct vt_exp *e);

/* What a sweep ended or removed, as a phrase ("ended process 12 (sleep)",
 * "removed cgroup /sys/...", "removed clock file /dev/shm/..."), and the
 * controller it belonged to, for messages. */
typedef void (*vt_note_fn)(void *ud, pid_t ctl, const char *what);
/* Ends what dead controllers left (their processes, found by the clock
 * file named in their environment or by cgroup, kxrun-vtime-* cgroups of
 * both roots, clock files), naming each to note (may be NULL).  A
 * controller is dead when its pid is gone or was reused since.  Returns
 * the number of cgroups removed; err says what could not be removed. */
int vt_cleanup(vt_note_fn note, void *ud, char *err, size_t errlen);
/* The supervisor of this process's experiments: `exe vtime supervise PID
 * FD` in a session of its own, FD a pidfd of this process.  Its pid, or -1
 * and a message. */
pid_t vt_supervisor_start(const char *exe, char *err, size_t errlen);
/* The supervisor's work: blocks until the controller ctl (pidfd) has died,
 * then ends what it left as vt_cleanup does.  0, or -1 and a message. */
int vt_supervise(int pidfd, pid_t ctl, vt_note_fn note, void *ud, char *err,
                 size_t errlen);

/* ---- internal, shared by the core's files ---- */
int64_t vt_mono_ns(void);
void vt_seterr(char *err, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int vt_read_file(const char *path, char *buf, size_t n);  /* bytes, -errno */
int vt_write_file(const char *path, const char *s);       /* 0, -errno */
int64_t vt_leader_cpu(pid_t pid);          /* its CLOCK_PROCESS_CPUTIME, -1 */
int64_t vt_thread_cpu(pid_t tid);          /* that thread's alone, -1 */
int vt_in_vfork_wait(pid_t pid);           /* D, waiting for a vfork child */
int vt_proc_state(pid_t pid, pid_t *pgrp); /* /proc's state letter ('X': gone),
                                              its process group (may be NULL) */
void vt_slot_write(struct vt_exp *e, int i, int64_t vbase, int64_t vend,
                   int64_t cpu_base);
void vt_slot_resume(struct vt_exp *e, struct vt_proc *p, int64_t cpu_base);

/* cgroup.c: roots (KXRUN_VTIME_FREEZER_ROOT / KXRUN_VTIME_CGROUP2_ROOT
 * override them), the experiment's cgroup */
const char *vt_v1_root(void);
int vt_v2_root(char *out, size_t n);       /* 0: no cgroup2 mount */
int vt_cg_create(struct vt_exp *e, int n, char *err, size_t errlen);
int vt_cg_join(struct vt_exp *e, pid_t pid, char *err, size_t errlen);
void vt_cg_freeze(struct vt_exp *e, int frozen);
struct vt_seen { pid_t pid[512]; int n; }; /* processes killed so far */
struct vt_noter;
int vt_cg_destroy(const char *dir, int v2, struct vt_seen *seen,
                  const struct vt_noter *n, char *err, size_t errlen);

/* spawn.c: the task-clock counter whose overflow stops pid's group; room
 * in e->procs for one more; a stdout/stderr spec ("inherit", "null", a
 * path) as kx_spawn stdio */
int vt_open_counter(pid_t pid, char *err, size_t errlen);
int vt_procs_reserve(struct vt_exp *e, char *err, size_t errlen);
int vt_stdio_spec(const char *spec, const char *name, enum kx_io *io, int *fd,
                  char *err, size_t errlen);
/* spawn.c: a member's process, stopped before exec, detached from the
 * host; its environment is fixed (NULL-ended) then env_extra */
pid_t vt_spawn_member(const char *prog, char *const argv[], const char *const fixed[],
                      char *const env_extra[], const struct vt_spawn_opts *o,
                      int (*hook)(void *), void *ud, char *err, size_t errlen);

/* kmod_backend.c: backend "kmod", rounds run by kxvt.ko (kmod/kxvt.h) */
int vt_kmod_usable(char *why, size_t n);
const char *vt_backend_name(const struct vt_exp *e);
void vt_budget_choose(struct vt_exp *e, int instructions);
int vt_kmod_open(struct vt_exp *e, char *err, size_t errlen);
int vt_kmod_spawn(struct vt_exp *e, char *const argv[], char *const env_extra[],
                  const struct vt_spawn_opts *o, char *err, size_t errlen);
void vt_kmod_round_begin(struct vt_exp *e);
int vt_kmod_round_poll(struct vt_exp *e, int64_t max_wait_ns);
void vt_kmod_round_abort(struct vt_exp *e);
void vt_kmod_freeze(struct vt_exp *e);
int64_t vt_kmod_proc_now(struct vt_exp *e, int i);
void vt_kmod_stop(struct vt_exp *e);
/* The shortest counter period: at the kernel's floor of 10 us its timer
 * interrupts starved a CPU on this VM (soft lockup); a shorter share
 * overruns and is carried (round.c). */
#define VT_MIN_PERIOD 200000
/* calibrate.c: CPU ns a resume costs a process here.  The first call
 * takes the value kept for this boot and CPU model or starts measuring it
 * in a thread (*src VT_COST_MEASURING: a provisional value until later
 * calls say otherwise; also when the value is over 10 minutes old, as
 * long experiments go on: they correct what they charged meanwhile).
 * vt_calibrate measures it now (~0.1 s) and keeps it: the value (err says
 * why it could not be kept, else ""), or -1 and a message.
 * vt_calibration_path: the file (0, -1). */
int64_t vt_resume_cost(enum vt_cost_source *src);
int64_t vt_calibrate(char *err, size_t errlen);
int vt_calibration_path(char *buf, size_t n);

/* cleanup.c */
struct vt_noter { vt_note_fn fn; void *ud; pid_t ctl; };
void vt_kill_noted(pid_t pid, struct vt_seen *seen, const struct vt_noter *n);
void vt_exp_sweep(struct vt_exp *e);
/* Continues the experiment's processes stopped outside every member's
 * process group (its cgroup's, or those with its clock file in their
 * environment); returns how many.  A process that leaves its group
 * (setsid, setpgid) while the group's SIGSTOP is on its way to it stops in
 * its new group, which no SIGCONT of the rounds reaches. */
int vt_continue_escaped(struct vt_exp *e);
#endif
