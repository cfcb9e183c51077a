/*
 * members.h - the processes running in a partition, found in /proc.
 *
 * A member is a process of the partition's owner that
 *   - has KXGPU_USAGE=<the partition's usage file> in its environment (every
 *     program `run` or exec starts has it, and passes it to its children,
 *     also those that leave the process group with setsid), or
 *   - is in the process group of a run recorded in the usage file (usage.h)
 *     and started after that group's leader, when its environment cannot be
 *     read or was replaced.
 * A partition whose usage file is absent, or records no run, has none.
 * Zombies are not members (they hold nothing).  The calling process is never
 * one, so a command run inside a partition does not end itself.
 *
 * Plain C, no host: used by the ledger (ledger_file.c) under its lock.
 */
#ifndef KX_GPU_MEMBERS_H
#define KX_GPU_MEMBERS_H

#include <stddef.h>
#include <sys/types.h>

#include "usage.h"

#define KXGPU_GUARD_NAME "kxgpu-guard"

struct kxgpu_member {
	pid_t pid;
	int run;               /* index of its run in runs[], or -1 */
	int guard;             /* a kxgpu-guard (not the user's program) */
	char comm[16];
};

struct kxgpu_members {
	int n;
	struct kxgpu_member *m;                          /* malloc'd */
	struct kxgpu_usage_run runs[KXGPU_USAGE_RUNS];   /* as recorded */
};

/* Fills ms (free it with kxgpu_members_free).  Returns 0, or -1 with a
 * message in err when /proc cannot be read. */
int kxgpu_members_find(const char *usage_path, uid_t owner,
                       struct kxgpu_members *ms, char *err, size_t errlen);
void kxgpu_members_free(struct kxgpu_members *ms);

/* Whether the kxrun that started run i is still there. */
int kxgpu_members_runner_alive(const struct kxgpu_members *ms, int i);

/* "sh (pid 12), sleep (pid 13)": the programs, guards left out, cut to
 * len with ", ..." when there are many. */
void kxgpu_members_names(const struct kxgpu_members *ms, char *buf,
                         size_t len);

#endif /* KX_GPU_MEMBERS_H */
