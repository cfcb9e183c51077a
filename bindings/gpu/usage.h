/*
 * usage.h - the shared allocation count of one partition, and the programs
 * running in it.
 *
 * <state dir>/<id>.mem is a small file mapped by every process running in
 * the partition (libkxgpu.so maps it from $KXGPU_USAGE).  It holds the limit,
 * the expiry time, the total charged and one slot per process (pid, its start
 * time, its bytes).  Updates are lock-free: the total moves by
 * compare-and-swap, so a request is granted only while total + size <= limit,
 * whatever the number of processes.  A member that crashes leaves its slot
 * behind; the next request that would be refused first reclaims the slots of
 * dead processes (pid gone, a zombie, or reused: start time differs) and
 * tries again.
 *
 * It also records each run (`kxrun gpu run`, partition:exec): the process
 * group it started, led by kxgpu-guard, and the kxrun waiting for it, so that
 * whoever ends the partition finds its programs (members.h).
 *
 * The file belongs to the partition's owner, mode 0644: its members (which
 * run as the owner) and root write it, other users only read it.
 *
 * This file is plain C without the host: it is linked into kxrun and into the
 * preload library.
 */
#ifndef KX_GPU_USAGE_H
#define KX_GPU_USAGE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KXGPU_USAGE_SLOTS 256
#define KXGPU_USAGE_RUNS  32

struct kxgpu_usage_slot {
	_Atomic int32_t pid;          /* 0 free, -1 being reclaimed */
	uint32_t pad;
	_Atomic uint64_t start;       /* /proc/<pid>/stat start time */
	_Atomic uint64_t bytes;
};

/* One run: its process group (the guard's pid) and the kxrun waiting for
 * it, each with its start time (pids are reused), and that kxrun's grace. */
struct kxgpu_usage_run {
	_Atomic int32_t pgid;         /* 0 free, -1 being written */
	int32_t runner;
	uint64_t pgid_start;
	uint64_t runner_start;
	uint32_t grace_ms;
	uint32_t pad;
};

struct kxgpu_usage_file {
	char magic[8];
	uint64_t limit;
	int64_t expires_ms;
	_Atomic uint64_t total;
	uint64_t reserved[4];
	struct kxgpu_usage_slot slots[KXGPU_USAGE_SLOTS];
	_Atomic uint32_t runs_ever;   /* runs started in it since it was made */
	uint32_t pad;
	struct kxgpu_usage_run runs[KXGPU_USAGE_RUNS];
};

typedef struct kxgpu_usage {
	struct kxgpu_usage_file *f;
	struct kxgpu_usage_slot *slot;   /* this process's, once it charged */
	pid_t pid;                       /* owner of slot (changes on fork) */
} kxgpu_usage;

/* A process as /proc/<pid>/stat shows it. */
struct kxgpu_proc {
	char state;                   /* 'R', 'S', 'D', 'T', 'Z', ... */
	pid_t pgrp;
	uint64_t start;               /* clock ticks after boot */
	char comm[16];
};

/* 0, or -1 when there is no such process (or /proc cannot be read). */
int kxgpu_proc_read(pid_t pid, struct kxgpu_proc *p);

/* Whether pid runs and is the process started at start (0: whichever);
 * a zombie is not alive.  A process /proc cannot tell about counts as
 * alive. */
int kxgpu_proc_alive(pid_t pid, uint64_t start);

/* Makes the usage file of a partition if it does not exist yet (under an
 * flock of the file itself), owned by owner (when we are root) and mode
 * 0644.  Returns 0 or -1 with a message in err. */
int kxgpu_usage_init(const char *path, uint64_t limit, int64_t expires_ms,
                     uid_t owner, char *err, size_t errlen);

/* Maps an existing usage file, for writing (a member, the runner) or only
 * for reading (anyone).  Returns 0 or -1 with a message in err. */
int kxgpu_usage_attach(kxgpu_usage *u, const char *path, char *err,
                       size_t errlen);
int kxgpu_usage_attach_ro(kxgpu_usage *u, const char *path, char *err,
                          size_t errlen);
void kxgpu_usage_detach(kxgpu_usage *u);

/* Records a run of this process (the runner): the process group pgid,
 * whose leader was just started, and the grace it gives at expiry.  Returns
 * the run's index, or -1 when all KXGPU_USAGE_RUNS are in use. */
int kxgpu_usage_add_run(kxgpu_usage *u, pid_t pgid, uint32_t grace_ms);

/* The run at index i has ended. */
void kxgpu_usage_end_run(kxgpu_usage *u, int i);

/* Charges bytes to this process: 0, or -1 when the partition would go past
 * its limit or has expired (nothing charged then). */
int kxgpu_usage_charge(kxgpu_usage *u, uint64_t bytes);

/* Gives back bytes charged earlier by this process. */
void kxgpu_usage_uncharge(kxgpu_usage *u, uint64_t bytes);

/* Bytes the members alive now hold, without writing (a read-only mapping
 * will do): dead members are left out, not reclaimed. */
uint64_t kxgpu_usage_held(const kxgpu_usage *u);

#endif /* KX_GPU_USAGE_H */
