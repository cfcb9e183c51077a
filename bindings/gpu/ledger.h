/*
 * ledger.h - the machine's GPU partition ledger (kx.gpu), pure C.
 *
 * One directory per machine: $KXRUN_STATE_DIR/gpu when KXRUN_STATE_DIR is
 * set, else /var/lib/kxrun/gpu.  It holds
 *
 *   ledger        the ledger (below);
 *   ledger.lock   the lock every reader and writer takes (flock LOCK_EX);
 *   <id>.mem      per-partition usage counters for enforcement (usage.h).
 *
 * The ledger file is a checksummed header (magic, version, the cached device
 * facts), a checksummed counter block (the next partition number) and an
 * array of fixed-size 128-byte slots, each a partition record with its own
 * checksum, or all zeros when free.  A new ledger is written whole to a
 * temporary file and renamed into place; after that an update writes only
 * what changes (one slot, the counter) with pwrite and fdatasync, so it
 * costs the same with 1,000 partitions as with one.  Slots are 128-byte
 * aligned, so a write never spans a disk sector; a process that dies
 * between two writes leaves a readable ledger (the counter is never behind
 * the highest id found).
 *
 * The directory is made mode 0777 and the ledger files 0666 so that a
 * second user works with a directory the first one made; without `kxrun
 * gpu serve` every user of the machine is trusted to go through this code.
 * A ledger is opened with one of three backends (ledger_ops.h): the file,
 * the daemon's socket (a user who may not write root's ledger), or none (a
 * user who may not make the directory: nothing is promised there yet).
 *
 * A ledger whose size, magic or any checksum is wrong is reported as
 * KXGPU_ECORRUPT and never rewritten: move it away to start afresh.
 *
 * Amounts are integers: a partition's share is in parts per million of its
 * device (KXGPU_PPM = 100%), its bytes are memory * ppm / 10^6 rounded down.
 * Times are milliseconds of CLOCK_REALTIME.
 *
 * A partition's programs never outlive it, and its share is never promised
 * again while they run.  A partition that expired, or is being released by
 * force, is "ending": no program starts in it, and its record (with its
 * share) stays until its programs (members.h) are gone.  Every read ends the
 * programs of ending partitions that are due: those of a `run` whose kxrun
 * still waits for them get that kxrun's grace after expiry (it signals them
 * itself), those of a forced release the grace it gave; all others are
 * killed at once (SIGKILL: their runner was killed).  Then the record and
 * its .mem file go.  So expiry needs no monitor and holds after the creator
 * and the runner are gone.
 *
 * Functions return 0 or a negative KXGPU_E* code with a message in err.
 */
#ifndef KX_GPU_LEDGER_H
#define KX_GPU_LEDGER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KXGPU_PPM          1000000u
#define KXGPU_MAX_DEVICES  16
#define KXGPU_MAX_DURATION_MS (366LL * 24 * 3600 * 1000) /* one year */
#define KXGPU_ERRLEN       256

enum {
	KXGPU_EINVAL   = -1,  /* bad argument (device, fraction, duration, id) */
	KXGPU_ENOSPACE = -2,  /* "Not enough available memory" */
	KXGPU_EPERM    = -3,  /* not the owner / not an administrator */
	KXGPU_ENOENT   = -4,  /* no such partition */
	KXGPU_ECORRUPT = -5,  /* the ledger file is damaged */
	KXGPU_EIO      = -6,  /* a system call failed */
	KXGPU_ENODEV   = -7,  /* device index out of range */
	KXGPU_EBUSY    = -8,  /* programs run in it: release by force */
	KXGPU_EAGAIN   = -9,  /* a forced release is ending them: call again */
};

/* Facts about one OpenCL device, as cached in the ledger. */
struct kxgpu_device {
	uint32_t index;        /* position over all platforms, from 0 */
	uint32_t reserved;
	uint64_t memory;       /* CL_DEVICE_GLOBAL_MEM_SIZE, bytes */
	char name[96];
	char vendor[64];
	char type[16];         /* "GPU", "CPU", "Accelerator", ... */
	char version[48];      /* CL_DEVICE_VERSION */
	char platform[24];     /* short platform name */
};

/* One partition (a fixed-size record of the ledger file). */
struct kxgpu_partition {
	char id[24];           /* "partition_0001" */
	uint32_t device;
	uint32_t ppm;          /* share of the device, parts per million */
	uint64_t bytes;        /* memory * ppm / 10^6 */
	uint32_t uid;          /* owner */
	int32_t pid;           /* creator */
	char owner[32];        /* owner's user name */
	int64_t created_ms;
	int64_t expires_ms;
	uint32_t creator_uid;
	uint32_t end_grace_ms; /* released by force: SIGKILL after this */
	int64_t released_ms;   /* when a forced release began ending it, or 0 */
	uint8_t reserved[8];
	uint64_t checksum;     /* of this record in the file; 0 in a free slot */
};

/* Everything the ledger holds at one moment (expired records left out). */
struct kxgpu_snapshot {
	uint32_t ndevices;
	int64_t probed_ms;     /* when devices were last probed, 0 = never */
	struct kxgpu_device devices[KXGPU_MAX_DEVICES];
	uint32_t n;            /* live partitions, in id (creation) order */
	struct kxgpu_partition *parts;  /* malloc'd; kxgpu_snapshot_free */
};

struct kxgpu_release {
	const char *id;
	uid_t caller;          /* only the owner or root (0) may */
	int force;             /* end its programs (else refuse, naming them) */
	uint32_t grace_ms;     /* with force: SIGTERM, SIGKILL this much later */
};

struct kxgpu_request {
	uint32_t device;
	uint32_t ppm;          /* 1 .. KXGPU_PPM */
	int64_t duration_ms;   /* 1 .. KXGPU_MAX_DURATION_MS */
	uid_t caller;          /* who asks (from the kernel: getuid()) */
	uid_t owner;           /* for whom; != caller needs caller == 0 */
	pid_t pid;             /* creator pid */
};

typedef struct kxgpu_ledger kxgpu_ledger;

/* Directory used when dir is NULL: $KXRUN_STATE_DIR/gpu or the default. */
const char *kxgpu_default_dir(char *buf, size_t len);

/* Opens (making the directory and lock file if needed) the ledger in dir,
 * NULL for the default.  Cheap: reads nothing yet. */
int kxgpu_ledger_open(kxgpu_ledger **out, const char *dir, char *err,
                      size_t errlen);
void kxgpu_ledger_close(kxgpu_ledger *l);

/* For `kxrun gpu serve` (root): restricts the directory to 0755 and the
 * ledger and lock to 0600, and makes partitions' usage files at creation
 * (users cannot create files in the directory any more). */
int kxgpu_ledger_serve_mode(kxgpu_ledger *l, char *err, size_t errlen);

/* <dir>/serve.sock */
const char *kxgpu_ledger_socket(const kxgpu_ledger *l);
const char *kxgpu_ledger_dir(const kxgpu_ledger *l);

/* Reads the ledger: live and ending partitions (ending the programs that
 * are due, dropping the records that are over, which rewrites it). */
int kxgpu_ledger_read(kxgpu_ledger *l, struct kxgpu_snapshot *snap, char *err,
                      size_t errlen);
void kxgpu_snapshot_free(struct kxgpu_snapshot *snap);

/* Only the cached device facts (snap->n = 0): reads the header alone. */
int kxgpu_ledger_devices(kxgpu_ledger *l, struct kxgpu_snapshot *snap,
                         char *err, size_t errlen);

/* Replaces the cached device facts (after an OpenCL probe). */
int kxgpu_ledger_set_devices(kxgpu_ledger *l, const struct kxgpu_device *devs,
                             uint32_t n, char *err, size_t errlen);

/* Creates a partition: checks the request, the caller's right to create for
 * owner, and that the device's live shares plus this one stay <= 100%, all
 * under the lock.  Fills *out. */
int kxgpu_ledger_create(kxgpu_ledger *l, const struct kxgpu_request *req,
                        struct kxgpu_partition *out, char *err, size_t errlen);

/* Releases id; only its owner or root (caller 0) may.  Fills *out if not
 * NULL with the record.  While programs run in it, KXGPU_EBUSY with a
 * message naming them ("sh (pid 12), ..."), and nothing changes. */
int kxgpu_ledger_release(kxgpu_ledger *l, const char *id, uid_t caller,
                         struct kxgpu_partition *out, char *err,
                         size_t errlen);

/* Releases id by force: the first call makes it ending and sends its
 * programs SIGTERM, a call grace_ms later SIGKILL; KXGPU_EAGAIN while they
 * run (call again), 0 once they are gone and the partition is released. */
int kxgpu_ledger_release_force(kxgpu_ledger *l, const char *id, uid_t caller,
                               uint32_t grace_ms, struct kxgpu_partition *out,
                               char *err, size_t errlen);

/* Whether p takes no new program: expired, or being released by force. */
int kxgpu_partition_ending(const struct kxgpu_partition *p, int64_t now);

/* Finds a live partition (not an ending one). */
int kxgpu_ledger_find(kxgpu_ledger *l, const char *id,
                      struct kxgpu_partition *out, char *err, size_t errlen);

/* Share of device still free, in ppm. */
int kxgpu_ledger_available(kxgpu_ledger *l, uint32_t device, uint32_t *ppm,
                           char *err, size_t errlen);

/* ---- helpers shared by the binding and the CLI -------------------------- */

/* Parses a fraction "0.5", "1", ".25", "0.000001" (at most 6 decimals, no
 * float) into ppm.  Returns 0 or KXGPU_EINVAL (also for <= 0 or > 1). */
int kxgpu_parse_fraction(const char *s, uint32_t *ppm);

/* Parses seconds "3600", "0.25" (at most 3 decimals) into ms, 1 ms .. one
 * year.  Returns 0 or KXGPU_EINVAL. */
int kxgpu_parse_duration(const char *s, int64_t *ms);

/* Formats ppm as a percentage with two decimals ("75.00"), truncating. */
void kxgpu_format_percent(uint32_t ppm, char *buf, size_t len);

/* memory * ppm / 10^6 without overflow or rounding up. */
uint64_t kxgpu_share_bytes(uint64_t memory, uint32_t ppm);

int64_t kxgpu_now_ms(void);

/* Name of uid ("uid1234" when it has no passwd entry). */
void kxgpu_user_name(uid_t uid, char *buf, size_t len);

/* uid of a user name or a number; -1 when unknown. */
int kxgpu_user_uid(const char *name, uid_t *uid);

/* Path of a partition's usage file: <dir>/<id>.mem */
void kxgpu_usage_path(const kxgpu_ledger *l, const char *id, char *buf,
                      size_t len);

#endif /* KX_GPU_LEDGER_H */
