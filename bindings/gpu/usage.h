/*
 * usage.h - the shared allocation count of one partition.
 *
 * <state dir>/<id>.mem is a small file mapped by every process running in
 * the partition (libkxgpu.so maps it from $KXGPU_USAGE).  It holds the limit,
 * the expiry time, the total charged and one slot per process (pid, its start
 * time, its bytes).  Updates are lock-free: the total moves by
 * compare-and-swap, so a request is granted only while total + size <= limit,
 * whatever the number of processes.  A member that crashes leaves its slot
 * behind; the next request that would be refused first reclaims the slots of
 * dead processes (pid gone, or reused: start time differs) and tries again.
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

struct kxgpu_usage_slot {
	_Atomic int32_t pid;          /* 0 free, -1 being reclaimed */
	uint32_t pad;
	_Atomic uint64_t start;       /* /proc/<pid>/stat start time */
	_Atomic uint64_t bytes;
};

struct kxgpu_usage_file {
	char magic[8];
	uint64_t limit;
	int64_t expires_ms;
	_Atomic uint64_t total;
	uint64_t reserved[4];
	struct kxgpu_usage_slot slots[KXGPU_USAGE_SLOTS];
};

typedef struct kxgpu_usage {
	struct kxgpu_usage_file *f;
	struct kxgpu_usage_slot *slot;   /* this process's, once it charged */
	pid_t pid;                       /* owner of slot (changes on fork) */
} kxgpu_usage;

/* Makes the usage file of a partition if it does not exist yet (under an
 * flock of the file itself).  Returns 0 or -1 with a message in err. */
int kxgpu_usage_init(const char *path, uint64_t limit, int64_t expires_ms,
                     char *err, size_t errlen);

/* Maps an existing usage file.  Returns 0 or -1 with a message in err. */
int kxgpu_usage_attach(kxgpu_usage *u, const char *path, char *err,
                       size_t errlen);
void kxgpu_usage_detach(kxgpu_usage *u);

/* Charges bytes to this process: 0, or -1 when the partition would go past
 * its limit or has expired (nothing charged then). */
int kxgpu_usage_charge(kxgpu_usage *u, uint64_t bytes);

/* Gives back bytes charged earlier by this process. */
void kxgpu_usage_uncharge(kxgpu_usage *u, uint64_t bytes);

/* Bytes charged by all members now (after reclaiming dead ones). */
uint64_t kxgpu_usage_total(kxgpu_usage *u);

#endif /* KX_GPU_USAGE_H */
