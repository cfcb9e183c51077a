/*
 * ledger_ops.h - inside a kxgpu_ledger: one backend, chosen at open.
 *
 *   kxgpu_file_ops    the ledger file itself, under flock (ledger_file.c);
 *   kxgpu_remote_ops  through the `kxrun gpu serve` daemon's socket, for a
 *                     user who cannot write root's ledger (remote.c);
 *   kxgpu_absent_ops  no state directory and no right to make one: nothing
 *                     is promised, so lists are empty and creating says why
 *                     (ledger.c).
 *
 * Each function has the meaning of the public call of the same name in
 * ledger.h; ledger.c checks arguments common to all and dispatches.
 */
#ifndef KX_GPU_LEDGER_OPS_H
#define KX_GPU_LEDGER_OPS_H

#include "ledger.h"

struct kxgpu_ledger_ops {
	int (*read)(kxgpu_ledger *l, struct kxgpu_snapshot *snap, char *err,
	            size_t errlen);
	int (*devices)(kxgpu_ledger *l, struct kxgpu_snapshot *snap, char *err,
	               size_t errlen);
	int (*set_devices)(kxgpu_ledger *l, const struct kxgpu_device *devs,
	                   uint32_t n, char *err, size_t errlen);
	int (*create)(kxgpu_ledger *l, const struct kxgpu_request *req,
	              struct kxgpu_partition *out, char *err, size_t errlen);
	int (*release)(kxgpu_ledger *l, const struct kxgpu_release *rel,
	               struct kxgpu_partition *out, char *err, size_t errlen);
	int (*find)(kxgpu_ledger *l, const char *id, struct kxgpu_partition *out,
	            char *err, size_t errlen);
	int (*available)(kxgpu_ledger *l, uint32_t device, uint32_t *ppm,
	                 char *err, size_t errlen);
};

extern const struct kxgpu_ledger_ops kxgpu_file_ops, kxgpu_remote_ops,
                                     kxgpu_absent_ops;

struct kxgpu_ledger {
	const struct kxgpu_ledger_ops *ops;
	char dir[4096];        /* absolute: programs find their usage file by it */
	char path[4200];       /* <dir>/ledger */
	char sock[4200];       /* <dir>/serve.sock */
	int lockfd;            /* file backend: <dir>/ledger.lock */
	int serve;             /* the daemon's own: files 0600, usage files at
	                        * create */
	/* absent backend: why, and devices probed in this process */
	char absent[KXGPU_ERRLEN];
	uint32_t ndevices;
	int64_t probed_ms;
	struct kxgpu_device devices[KXGPU_MAX_DEVICES];
};

/* Formats into err (when not NULL) and returns code. */
int kxgpu_fail(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif /* KX_GPU_LEDGER_OPS_H */
