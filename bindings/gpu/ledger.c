/*
 * ledger.c - opening a ledger (choosing its backend, ledger_ops.h) and the
 * public calls of ledger.h, which check what all backends share and
 * dispatch.  The file format is in ledger_file.c, the daemon's socket in
 * remote.c.
 */
#include "kx.h"
#include "ledger_ops.h"
#include "remote.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_DIR "/var/lib/kxrun/gpu"

const char *kxgpu_default_dir(char *buf, size_t len)
{
	const char *s = getenv("KXRUN_STATE_DIR");

	if (s && *s)
		snprintf(buf, len, "%s/gpu", s);
	else
		snprintf(buf, len, "%s", DEFAULT_DIR);
	return buf;
}

/* A directory we may not make: no partition can exist there yet. */
static int denied(int e)
{
	return e == EACCES || e == EPERM || e == EROFS;
}

/* mkdir -p, the last component world-writable so other users can lock and
 * replace the ledger in it. */
static int make_dir(const char *dir, char *err, size_t errlen)
{
	char parent[4096], why[512];
	struct stat st;

	if (stat(dir, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 :
		       kxgpu_fail(err, errlen, KXGPU_EIO, "%s is not a directory",
		                  dir);
	snprintf(parent, sizeof parent, "%s", dir);
	char *slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = 0;
		int r = kx_mkdir_p(parent, 0755, why, sizeof why);
		if (r < 0)
			return kxgpu_fail(err, errlen, denied(-r) ? KXGPU_EPERM :
			                  KXGPU_EIO, "%s", why);
	}
	if (mkdir(dir, 0777) != 0)
		return errno == EEXIST ? 0 :
		       kxgpu_fail(err, errlen, denied(errno) ? KXGPU_EPERM :
		                  KXGPU_EIO, "cannot create %s: %s", dir,
		                  strerror(errno));
	/* only when we made it: the daemon may have restricted it since */
	if (chmod(dir, 0777) != 0)
		return kxgpu_fail(err, errlen, KXGPU_EIO, "cannot chmod %s: %s",
		                  dir, strerror(errno));
	return 0;
}

/* The lock file, made by whoever comes first; the file backend if we may
 * open it, else the daemon's socket when it is there. */
static int choose_backend(kxgpu_ledger *l, char *err, size_t errlen)
{
	char lockpath[4200];

	snprintf(lockpath, sizeof lockpath, "%s/ledger.lock", l->dir);
	l->lockfd = open(lockpath, O_RDWR | O_CLOEXEC);
	if (l->lockfd < 0 && errno == ENOENT) {
		l->lockfd = open(lockpath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
		                 0666);
		if (l->lockfd >= 0)
			fchmod(l->lockfd, 0666);  /* past the umask */
		else if (errno == EEXIST)  /* another process made it just now */
			l->lockfd = open(lockpath, O_RDWR | O_CLOEXEC);
	}
	if (l->lockfd >= 0) {
		l->ops = &kxgpu_file_ops;
		return 0;
	}
	if (errno != EACCES)
		return kxgpu_fail(err, errlen, KXGPU_EIO, "cannot open %s: %s",
		                  lockpath, strerror(errno));
	if (access(l->sock, F_OK) == 0) {
		l->ops = &kxgpu_remote_ops;  /* root's ledger: ask the daemon */
		return 0;
	}
	return kxgpu_fail(err, errlen, KXGPU_EIO, "cannot open %s: %s (the ledger "
	                  "belongs to `kxrun gpu serve`, which is not running)",
	                  lockpath, strerror(EACCES));
}

int kxgpu_ledger_open(kxgpu_ledger **out, const char *dir, char *err,
                      size_t errlen)
{
	char buf[4096], real[PATH_MAX];
	kxgpu_ledger *l;
	int rc;

	if (!dir)
		dir = kxgpu_default_dir(buf, sizeof buf);
	if (strlen(dir) >= 4000)
		return kxgpu_fail(err, errlen, KXGPU_EINVAL,
		                  "state directory name too long");
	l = calloc(1, sizeof *l);
	if (!l)
		return kxgpu_fail(err, errlen, KXGPU_EIO, "out of memory");
	l->lockfd = -1;
	rc = make_dir(dir, l->absent, sizeof l->absent);
	if (rc == KXGPU_EPERM) {
		/* e.g. a user before root ever made /var/lib/kxrun */
		l->ops = &kxgpu_absent_ops;
		snprintf(l->dir, sizeof l->dir, "%s", dir);
		*out = l;
		return 0;
	}
	/* absolute: a program that changes directory still finds its usage
	 * file, and every process names it alike */
	if (rc || !realpath(dir, real) || strlen(real) >= 4000) {
		if (!rc)
			rc = kxgpu_fail(l->absent, sizeof l->absent, KXGPU_EIO,
			                "cannot resolve %s: %s", dir,
			                strerror(errno));
		kxgpu_fail(err, errlen, rc, "%s", l->absent);
		free(l);
		return rc;
	}
	snprintf(l->dir, sizeof l->dir, "%s", real);
	snprintf(l->path, sizeof l->path, "%s/ledger", real);
	snprintf(l->sock, sizeof l->sock, "%s/%s", real, KXGPU_SOCKET_NAME);
	rc = choose_backend(l, err, errlen);
	if (rc) {
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

void kxgpu_ledger_close(kxgpu_ledger *l)
{
	if (!l)
		return;
	if (l->lockfd >= 0)
		close(l->lockfd);
	free(l);
}

const char *kxgpu_ledger_socket(const kxgpu_ledger *l)
{
	return l->sock;
}

const char *kxgpu_ledger_dir(const kxgpu_ledger *l)
{
	return l->dir;
}

int kxgpu_ledger_serve_mode(kxgpu_ledger *l, char *err, size_t errlen)
{
	struct kxgpu_snapshot snap;
	char lockpath[4200];
	int rc;

	if (l->ops != &kxgpu_file_ops || geteuid() != 0)
		return kxgpu_fail(err, errlen, KXGPU_EPERM,
		                  "Permission denied: kxrun gpu serve runs as root");
	l->serve = 1;
	rc = kxgpu_ledger_read(l, &snap, err, errlen);  /* makes the ledger */
	if (rc)
		return rc;
	kxgpu_snapshot_free(&snap);
	snprintf(lockpath, sizeof lockpath, "%s/ledger.lock", l->dir);
	if (chmod(l->dir, 0755) != 0 || chmod(l->path, 0600) != 0 ||
	    chmod(lockpath, 0600) != 0)
		return kxgpu_fail(err, errlen, KXGPU_EIO, "cannot restrict %s: %s",
		                  l->dir, strerror(errno));
	return 0;
}

void kxgpu_snapshot_free(struct kxgpu_snapshot *snap)
{
	free(snap->parts);
	snap->parts = NULL;
	snap->n = 0;
}

/* ---- dispatch ------------------------------------------------------------ */

int kxgpu_ledger_read(kxgpu_ledger *l, struct kxgpu_snapshot *snap, char *err,
                      size_t errlen)
{
	memset(snap, 0, sizeof *snap);
	return l->ops->read(l, snap, err, errlen);
}

int kxgpu_ledger_devices(kxgpu_ledger *l, struct kxgpu_snapshot *snap,
                         char *err, size_t errlen)
{
	memset(snap, 0, sizeof *snap);
	return l->ops->devices(l, snap, err, errlen);
}

int kxgpu_ledger_set_devices(kxgpu_ledger *l, const struct kxgpu_device *devs,
                             uint32_t n, char *err, size_t errlen)
{
	return l->ops->set_devices(l, devs, n < KXGPU_MAX_DEVICES ? n :
	                           KXGPU_MAX_DEVICES, err, errlen);
}

int kxgpu_ledger_create(kxgpu_ledger *l, const struct kxgpu_request *req,
                        struct kxgpu_partition *out, char *err, size_t errlen)
{
	if (req->ppm == 0 || req->ppm > KXGPU_PPM)
		return kxgpu_fail(err, errlen, KXGPU_EINVAL,
		                  "Invalid memory fraction: must be > 0 and <= 1");
	if (req->duration_ms <= 0 || req->duration_ms > KXGPU_MAX_DURATION_MS)
		return kxgpu_fail(err, errlen, KXGPU_EINVAL,
		                  "Invalid duration: must be > 0 and at most one "
		                  "year (31622400 seconds)");
	if (req->owner != req->caller && req->caller != 0)
		return kxgpu_fail(err, errlen, KXGPU_EPERM, "Permission denied: "
		                  "only administrators can create partitions for "
		                  "other users");
	return l->ops->create(l, req, out, err, errlen);
}

int kxgpu_ledger_release(kxgpu_ledger *l, const char *id, uid_t caller,
                         struct kxgpu_partition *out, char *err,
                         size_t errlen)
{
	struct kxgpu_release rel = { .id = id, .caller = caller };

	return l->ops->release(l, &rel, out, err, errlen);
}

int kxgpu_ledger_release_force(kxgpu_ledger *l, const char *id, uid_t caller,
                               uint32_t grace_ms, struct kxgpu_partition *out,
                               char *err, size_t errlen)
{
	struct kxgpu_release rel = { .id = id, .caller = caller, .force = 1,
	                             .grace_ms = grace_ms };

	return l->ops->release(l, &rel, out, err, errlen);
}

int kxgpu_ledger_find(kxgpu_ledger *l, const char *id,
                      struct kxgpu_partition *out, char *err, size_t errlen)
{
	return l->ops->find(l, id, out, err, errlen);
}

int kxgpu_ledger_available(kxgpu_ledger *l, uint32_t device, uint32_t *ppm,
                           char *err, size_t errlen)
{
	return l->ops->available(l, device, ppm, err, errlen);
}

/* ---- no state directory ----------------------------------------------------
 * Nothing was ever promised in a directory that does not exist: reads are
 * empty, creating says why it cannot; device facts are kept for this
 * process only. */

static int absent_devices(kxgpu_ledger *l, struct kxgpu_snapshot *snap,
                          char *err, size_t errlen)
{
	(void)err, (void)errlen;
	snap->ndevices = l->ndevices;
	snap->probed_ms = l->probed_ms;
	memcpy(snap->devices, l->devices, sizeof snap->devices);
	return 0;
}

static int absent_read(kxgpu_ledger *l, struct kxgpu_snapshot *snap,
                       char *err, size_t errlen)
{
	absent_devices(l, snap, err, errlen);
	snap->parts = calloc(1, sizeof *snap->parts);
	return snap->parts ? 0 : kxgpu_fail(err, errlen, KXGPU_EIO,
	                                    "out of memory");
}

static int absent_set_devices(kxgpu_ledger *l, const struct kxgpu_device *devs,
                              uint32_t n, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	memset(l->devices, 0, sizeof l->devices);
	memcpy(l->devices, devs, n * sizeof *devs);
	l->ndevices = n;
	l->probed_ms = kxgpu_now_ms();
	return 0;
}

static int absent_create(kxgpu_ledger *l, const struct kxgpu_request *req,
                         struct kxgpu_partition *out, char *err,
                         size_t errlen)
{
	(void)req, (void)out;
	return kxgpu_fail(err, errlen, KXGPU_EIO, "%s (the ledger's directory: "
	                  "root makes it with any `kxrun gpu` command, or set "
	                  "KXRUN_STATE_DIR)", l->absent);
}

static int absent_find(kxgpu_ledger *l, const char *id,
                       struct kxgpu_partition *out, char *err, size_t errlen)
{
	(void)l, (void)out;
	return kxgpu_fail(err, errlen, KXGPU_ENOENT, "Partition not found: %s",
	                  id);
}

static int absent_release(kxgpu_ledger *l, const struct kxgpu_release *rel,
                          struct kxgpu_partition *out, char *err,
                          size_t errlen)
{
	return absent_find(l, rel->id, out, err, errlen);
}

static int absent_available(kxgpu_ledger *l, uint32_t device, uint32_t *ppm,
                            char *err, size_t errlen)
{
	if (device >= l->ndevices)
		return kxgpu_fail(err, errlen, KXGPU_ENODEV,
		                  "Invalid device index: %u (%u device%s known)",
		                  device, l->ndevices, l->ndevices == 1 ? "" : "s");
	*ppm = KXGPU_PPM;
	return 0;
}

const struct kxgpu_ledger_ops kxgpu_absent_ops = {
	.read = absent_read, .devices = absent_devices,
	.set_devices = absent_set_devices, .create = absent_create,
	.release = absent_release, .find = absent_find,
	.available = absent_available,
};
