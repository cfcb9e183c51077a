/*
 * ledger_file.c - the ledger file backend (ledger_ops.h): one file per
 * machine, read and updated under flock, a new one written through a
 * temporary file, fsync and rename; after that only the changed slot and
 * counter are written.  The format is described in ledger.h.
 */
#include "ledger_ops.h"
#include "members.h"
#include "usage.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kx.h"

#define LEDGER_MAGIC   "KXGPULG\n"
#define LEDGER_VERSION 1u

_Static_assert(sizeof(struct kxgpu_partition) == 128, "record size is fixed");
_Static_assert(sizeof(struct kxgpu_device) == 264, "device size is fixed");

/* Offsets in the file: header, counter block (sector-aligned), slots. */
#define COUNTER_OFF 4608
#define SLOTS_OFF   8192
#define SLOT_SIZE   sizeof(struct kxgpu_partition)

/* A runner's own SIGKILL comes at expiry + its grace; how late it may be
 * (a loaded machine) before a read kills in its place. */
#define RUNNER_SLACK_MS 2000

struct file_header {
	char magic[8];
	uint32_t version;
	uint32_t slots_off;
	uint32_t record_size;
	uint32_t ndevices;
	int64_t probed_ms;
	struct kxgpu_device devices[KXGPU_MAX_DEVICES];
	uint64_t checksum;      /* over the header with this field zero */
};
_Static_assert(sizeof(struct file_header) <= COUNTER_OFF, "header fits");

struct counter {
	uint32_t next_id;
	uint32_t reserved;
	uint64_t checksum;
};

/* The ledger as loaded, under the lock, with its file open for writing. */
struct state {
	int fd;
	struct file_header h;
	struct counter c;
	uint32_t nslots;
	struct kxgpu_partition *slots;  /* all slots, free ones zero */
	int written;                    /* something to fdatasync */
};

/* 64-bit words mixed with a multiply and rotate: fast over 128 KB, and any
 * flipped, zeroed or truncated region changes it. */
static uint64_t checksum(const void *a, size_t alen, const void *b,
                         size_t blen)
{
	uint64_t h = 0x6a09e667f3bcc909ull, w;
	const unsigned char *parts[2] = { a, b };
	size_t lens[2] = { alen, blen };

	for (int p = 0; p < 2; p++) {
		size_t i = 0;
		for (; i + 8 <= lens[p]; i += 8) {
			memcpy(&w, parts[p] + i, 8);
			h = (h ^ w) * 0x100000001b3ull;
			h = (h << 29) | (h >> 35);
		}
		for (; i < lens[p]; i++)
			h = (h ^ parts[p][i]) * 0x100000001b3ull;
		h ^= lens[p];
	}
	return h;
}

static int lock(kxgpu_ledger *l, char *err, size_t errlen)
{
	while (flock(l->lockfd, LOCK_EX) != 0)
		if (errno != EINTR)
			return kxgpu_fail(err, errlen, KXGPU_EIO, "cannot lock %s.lock: %s",
					  l->path, strerror(errno));
	return 0;
}

static void unlock(kxgpu_ledger *l)
{
	flock(l->lockfd, LOCK_UN);
}

static int corrupt(kxgpu_ledger *l, char *err, size_t errlen, const char *why)
{
	return kxgpu_fail(err, errlen, KXGPU_ECORRUPT,
			  "ledger corrupted: %s: %s (left as it is; move it away to "
			  "start afresh)", l->path, why);
}

/* Whole positional reads and writes (host/kx.h): 0, or -1 with errno. */
static int read_all(int fd, void *buf, size_t len, off_t off)
{
	return kx_pread_all(fd, buf, len, off) == (ssize_t)len ? 0 : -1;
}

static int write_all(int fd, const void *buf, size_t len, off_t off)
{
	return kx_pwrite_all(fd, buf, len, off);
}

static void remove_usage(kxgpu_ledger *l, const char *id)
{
	char path[4300];

	kxgpu_usage_path(l, id, path, sizeof path);
	unlink(path);
}

static uint64_t header_sum(struct file_header *h)
{
	uint64_t keep = h->checksum, sum;

	h->checksum = 0;
	sum = checksum(h, sizeof *h, NULL, 0);
	h->checksum = keep;
	return sum;
}

static uint64_t counter_sum(const struct counter *c)
{
	return checksum(&c->next_id, sizeof c->next_id, NULL, 0);
}

static uint64_t record_sum(struct kxgpu_partition *r)
{
	uint64_t keep = r->checksum, sum;

	r->checksum = 0;
	sum = checksum(r, sizeof *r, NULL, 0) | 1;  /* never 0 (= free) */
	r->checksum = keep;
	return sum;
}

static int is_free(const struct kxgpu_partition *r)
{
	static const struct kxgpu_partition zero;

	return memcmp(r, &zero, sizeof zero) == 0;
}

/* 42 for "partition_0042" (0 for anything else); called per record on
 * every load, so no sscanf. */
static uint32_t id_number(const char *id)
{
	uint32_t n = 0;

	if (strncmp(id, "partition_", 10) != 0)
		return 0;
	for (id += 10; *id >= '0' && *id <= '9' && n < 400000000u; id++)
		n = n * 10 + (uint32_t)(*id - '0');
	return *id ? 0 : n;
}

/* A new ledger: written whole beside it, synced, renamed into place
 * (kx_atomic_*: complete or absent, even across a crash). */
static int create_file(kxgpu_ledger *l, char *err, size_t errlen)
{
	struct file_header h;
	struct counter c = { .next_id = 1 };
	struct kx_atomic a;

	memset(&h, 0, sizeof h);
	memcpy(h.magic, LEDGER_MAGIC, 8);
	h.version = LEDGER_VERSION;
	h.slots_off = SLOTS_OFF;
	h.record_size = SLOT_SIZE;
	h.checksum = header_sum(&h);
	c.checksum = counter_sum(&c);
	if (kx_atomic_begin(&a, l->path, l->serve ? 0600 : 0666, err,
	                    errlen) < 0)
		return KXGPU_EIO;
	if (ftruncate(a.fd, SLOTS_OFF) != 0 ||
	    write_all(a.fd, &h, sizeof h, 0) != 0 ||
	    write_all(a.fd, &c, sizeof c, COUNTER_OFF) != 0) {
		int e = errno;
		kx_atomic_abort(&a);
		return kxgpu_fail(err, errlen, KXGPU_EIO, "cannot write %s: %s",
		                  l->path, strerror(e));
	}
	return kx_atomic_commit(&a, err, errlen) < 0 ? KXGPU_EIO : 0;
}

static int put_slot(struct state *s, uint32_t i, char *err, size_t errlen)
{
	if (write_all(s->fd, &s->slots[i], SLOT_SIZE,
	              SLOTS_OFF + (off_t)i * SLOT_SIZE) != 0)
		return kxgpu_fail(err, errlen, KXGPU_EIO, "cannot write the ledger: %s",
				  strerror(errno));
	s->written = 1;
	return 0;
}

static void free_slot(kxgpu_ledger *l, struct state *s, uint32_t i)
{
	remove_usage(l, s->slots[i].id);
	memset(&s->slots[i], 0, SLOT_SIZE);
}

/* Ends the programs of an ending partition that are due (ledger.h).
 * Returns how many are left: not due yet, or not ours to signal. */
static int end_due(kxgpu_ledger *l, const struct kxgpu_partition *r,
                   int64_t now)
{
	struct kxgpu_members ms;
	char path[4300];
	int left = 0;

	kxgpu_usage_path(l, r->id, path, sizeof path);
	if (kxgpu_members_find(path, r->uid, &ms, NULL, 0) != 0)
		return 0;  /* no /proc: nothing can be known or done */
	for (int i = 0; i < ms.n; i++) {
		const struct kxgpu_member *m = &ms.m[i];
		int64_t due = r->released_ms ? r->released_ms + r->end_grace_ms :
		                               r->expires_ms;

		if (!r->released_ms && kxgpu_members_runner_alive(&ms, m->run))
			due += ms.runs[m->run].grace_ms + RUNNER_SLACK_MS;
		if (now < due || (kill(m->pid, SIGKILL) != 0 && errno == EPERM))
			left++;
	}
	kxgpu_members_free(&ms);
	return left;
}

/* A forced release whose caller is still expected to come back and
 * release the record itself (so that it gets 0, not "not found"). */
static int releasing(const struct kxgpu_partition *r, int64_t now)
{
	return r->released_ms &&
	       now < r->released_ms + r->end_grace_ms + RUNNER_SLACK_MS;
}

/* Loads the ledger (making an empty one if absent), verifying every
 * checksum, and frees the slots of expired partitions. */
static int load(kxgpu_ledger *l, struct state *s, char *err, size_t errlen)
{
	struct stat st;
	uint32_t maxid = 0;
	int64_t now;
	int rc;

	memset(s, 0, sizeof *s);
	s->fd = open(l->path, O_RDWR | O_CLOEXEC);
	if (s->fd < 0 && errno == ENOENT) {
		rc = create_file(l, err, errlen);
		if (rc)
			return rc;
		s->fd = open(l->path, O_RDWR | O_CLOEXEC);
	}
	if (s->fd < 0)
		return kxgpu_fail(err, errlen, KXGPU_EIO, "cannot open %s: %s", l->path,
				  strerror(errno));
	if (fstat(s->fd, &st) != 0 || st.st_size < SLOTS_OFF ||
	    read_all(s->fd, &s->h, sizeof s->h, 0) != 0 ||
	    read_all(s->fd, &s->c, sizeof s->c, COUNTER_OFF) != 0)
		return corrupt(l, err, errlen, "shorter than its header");
	if (memcmp(s->h.magic, LEDGER_MAGIC, 8) != 0 ||
	    s->h.version != LEDGER_VERSION || s->h.slots_off != SLOTS_OFF ||
	    s->h.record_size != SLOT_SIZE || s->h.ndevices > KXGPU_MAX_DEVICES ||
	    header_sum(&s->h) != s->h.checksum)
		return corrupt(l, err, errlen, "bad header (checksum mismatch)");
	if (counter_sum(&s->c) != s->c.checksum || s->c.next_id == 0)
		return corrupt(l, err, errlen, "bad counter (checksum mismatch)");
	if ((st.st_size - SLOTS_OFF) % SLOT_SIZE != 0)
		return corrupt(l, err, errlen, "size does not match its records");
	s->nslots = (uint32_t)((st.st_size - SLOTS_OFF) / SLOT_SIZE);
	s->slots = calloc(s->nslots + 1, SLOT_SIZE);
	if (!s->slots)
		return kxgpu_fail(err, errlen, KXGPU_EIO, "out of memory");
	if (read_all(s->fd, s->slots, s->nslots * SLOT_SIZE, SLOTS_OFF) != 0)
		return corrupt(l, err, errlen, "cannot read its records");
	now = kxgpu_now_ms();
	for (uint32_t i = 0; i < s->nslots; i++) {
		struct kxgpu_partition *r = &s->slots[i];
		if (is_free(r))
			continue;
		if (r->checksum != record_sum(r) || r->id[0] == 0 ||
		    memchr(r->id, 0, sizeof r->id) == NULL ||
		    memchr(r->owner, 0, sizeof r->owner) == NULL)
			return corrupt(l, err, errlen, "record checksum mismatch");
		if (id_number(r->id) > maxid)
			maxid = id_number(r->id);
		if (kxgpu_partition_ending(r, now) && end_due(l, r, now) == 0 &&
		    !releasing(r, now)) {
			free_slot(l, s, i);
			rc = put_slot(s, i, err, errlen);
			if (rc)
				return rc;
		}
	}
	/* a creator that died after writing its record but before the counter */
	if (s->c.next_id <= maxid)
		s->c.next_id = maxid + 1;
	return 0;
}

/* Takes the lock and loads; on success the caller must call finish(). */
static int begin(kxgpu_ledger *l, struct state *s, char *err, size_t errlen)
{
	int rc = lock(l, err, errlen);

	if (rc)
		return rc;
	rc = load(l, s, err, errlen);
	if (rc) {
		if (s->fd >= 0)
			close(s->fd);
		free(s->slots);
		unlock(l);
	}
	return rc;
}

/* Makes what was written durable (dropping free slots at the end, so the
 * file shrinks back after a busy day), unlocks, frees. */
static int finish(kxgpu_ledger *l, struct state *s, int rc, char *err,
                  size_t errlen)
{
	uint32_t used = s->nslots;

	while (used > 0 && is_free(&s->slots[used - 1]))
		used--;
	if (s->written && used < s->nslots &&
	    ftruncate(s->fd, SLOTS_OFF + (off_t)used * SLOT_SIZE) != 0 && !rc)
		rc = kxgpu_fail(err, errlen, KXGPU_EIO, "cannot truncate %s: %s", l->path,
				strerror(errno));
	if (s->written && fdatasync(s->fd) != 0 && !rc)
		rc = kxgpu_fail(err, errlen, KXGPU_EIO, "cannot sync %s: %s", l->path,
				strerror(errno));
	close(s->fd);
	unlock(l);
	free(s->slots);
	return rc;
}

static int by_id(const void *a, const void *b)
{
	uint32_t x = id_number(((const struct kxgpu_partition *)a)->id);
	uint32_t y = id_number(((const struct kxgpu_partition *)b)->id);

	return x < y ? -1 : x > y;
}

static int file_read(kxgpu_ledger *l, struct kxgpu_snapshot *snap, char *err,
                      size_t errlen)
{
	struct state s;
	int rc;

	rc = begin(l, &s, err, errlen);
	if (rc)
		return rc;
	snap->ndevices = s.h.ndevices;
	snap->probed_ms = s.h.probed_ms;
	memcpy(snap->devices, s.h.devices, sizeof snap->devices);
	snap->parts = calloc(s.nslots + 1, sizeof *snap->parts);
	if (!snap->parts) {
		rc = kxgpu_fail(err, errlen, KXGPU_EIO, "out of memory");
	} else {
		for (uint32_t i = 0; i < s.nslots; i++)
			if (!is_free(&s.slots[i]))
				snap->parts[snap->n++] = s.slots[i];
		qsort(snap->parts, snap->n, sizeof *snap->parts, by_id);
	}
	return finish(l, &s, rc, err, errlen);
}

static int file_devices(kxgpu_ledger *l, struct kxgpu_snapshot *snap,
                         char *err, size_t errlen)
{
	struct file_header h;
	int fd, rc;

	rc = lock(l, err, errlen);
	if (rc)
		return rc;
	fd = open(l->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		unlock(l);
		return 0;  /* no ledger yet: no devices known */
	}
	if (fd < 0)
		rc = kxgpu_fail(err, errlen, KXGPU_EIO, "cannot open %s: %s", l->path,
				strerror(errno));
	else if (read_all(fd, &h, sizeof h, 0) != 0)
		rc = corrupt(l, err, errlen, "shorter than its header");
	else if (memcmp(h.magic, LEDGER_MAGIC, 8) != 0 ||
	         h.version != LEDGER_VERSION || h.ndevices > KXGPU_MAX_DEVICES ||
	         header_sum(&h) != h.checksum)
		rc = corrupt(l, err, errlen, "bad header (checksum mismatch)");
	if (fd >= 0)
		close(fd);
	unlock(l);
	if (!rc) {
		snap->ndevices = h.ndevices;
		snap->probed_ms = h.probed_ms;
		memcpy(snap->devices, h.devices, sizeof snap->devices);
	}
	return rc;
}

static int file_set_devices(kxgpu_ledger *l, const struct kxgpu_device *devs,
                             uint32_t n, char *err, size_t errlen)
{
	struct state s;
	int rc;

	rc = begin(l, &s, err, errlen);
	if (rc)
		return rc;
	memset(s.h.devices, 0, sizeof s.h.devices);
	memcpy(s.h.devices, devs, n * sizeof *devs);
	s.h.ndevices = n;
	s.h.probed_ms = kxgpu_now_ms();
	s.h.checksum = header_sum(&s.h);
	if (write_all(s.fd, &s.h, sizeof s.h, 0) != 0)
		rc = kxgpu_fail(err, errlen, KXGPU_EIO, "cannot write %s: %s", l->path,
				strerror(errno));
	s.written = 1;
	return finish(l, &s, rc, err, errlen);
}

static uint32_t used_ppm(const struct state *s, uint32_t device)
{
	uint64_t used = 0;

	for (uint32_t i = 0; i < s->nslots; i++)
		if (!is_free(&s->slots[i]) && s->slots[i].device == device)
			used += s->slots[i].ppm;
	return used > KXGPU_PPM ? KXGPU_PPM : (uint32_t)used;
}

static int file_create(kxgpu_ledger *l, const struct kxgpu_request *req,
                        struct kxgpu_partition *out, char *err, size_t errlen)
{
	struct kxgpu_partition *r;
	struct state s;
	uint32_t used, slot;
	char a[16], b[16];
	int rc;

	rc = begin(l, &s, err, errlen);
	if (rc)
		return rc;
	if (req->device >= s.h.ndevices) {
		rc = kxgpu_fail(err, errlen, KXGPU_ENODEV,
				"Invalid device index: %u (%u device%s known)",
				req->device, s.h.ndevices, s.h.ndevices == 1 ? "" : "s");
		return finish(l, &s, rc, err, errlen);
	}
	used = used_ppm(&s, req->device);
	if (req->ppm > KXGPU_PPM - used) {
		kxgpu_format_percent(KXGPU_PPM - used, a, sizeof a);
		kxgpu_format_percent(req->ppm, b, sizeof b);
		rc = kxgpu_fail(err, errlen, KXGPU_ENOSPACE,
				"Not enough available memory: device %u has %s%% free, "
				"%s%% requested", req->device, a, b);
		return finish(l, &s, rc, err, errlen);
	}
	if (s.c.next_id > 99999999) {
		rc = kxgpu_fail(err, errlen, KXGPU_EIO, "partition numbers exhausted");
		return finish(l, &s, rc, err, errlen);
	}
	for (slot = 0; slot < s.nslots && !is_free(&s.slots[slot]); slot++)
		;  /* slot == nslots: append (slots has room for one more) */
	r = &s.slots[slot];
	memset(r, 0, sizeof *r);
	snprintf(r->id, sizeof r->id, "partition_%04u", s.c.next_id++);
	r->device = req->device;
	r->ppm = req->ppm;
	r->bytes = kxgpu_share_bytes(s.h.devices[req->device].memory, req->ppm);
	r->uid = req->owner;
	r->creator_uid = req->caller;
	r->pid = req->pid;
	kxgpu_user_name(req->owner, r->owner, sizeof r->owner);
	r->created_ms = kxgpu_now_ms();
	r->expires_ms = r->created_ms + req->duration_ms;
	r->checksum = record_sum(r);
	/* the record first: a crash before the counter is repaired on load */
	rc = put_slot(&s, slot, err, errlen);
	s.c.checksum = counter_sum(&s.c);
	if (!rc && write_all(s.fd, &s.c, sizeof s.c, COUNTER_OFF) != 0)
		rc = kxgpu_fail(err, errlen, KXGPU_EIO, "cannot write %s: %s", l->path,
				strerror(errno));
	if (!rc && out)
		*out = *r;
	if (!rc && l->serve) {  /* users cannot create files here: make it now */
		char path[4300];
		kxgpu_usage_path(l, r->id, path, sizeof path);
		rc = kxgpu_usage_init(path, r->bytes, r->expires_ms, r->uid, err,
		                      errlen)
		     ? KXGPU_EIO : 0;
	}
	return finish(l, &s, rc, err, errlen);
}

/* The slot of id, ending or not; -1 when there is none. */
static int find(const struct state *s, const char *id)
{
	for (uint32_t i = 0; i < s->nslots; i++)
		if (!is_free(&s->slots[i]) &&
		    strncmp(s->slots[i].id, id, sizeof s->slots[i].id) == 0)
			return (int)i;
	return -1;
}

/* Ends a partition's programs by force: SIGTERM at the first call (which
 * makes it ending), SIGKILL once the grace is over. */
static int force_end(struct state *s, uint32_t i, uint32_t grace_ms,
                     const struct kxgpu_members *ms, char *err,
                     size_t errlen)
{
	struct kxgpu_partition *r = &s->slots[i];
	int64_t now = kxgpu_now_ms();
	int sig = 0, rc;

	if (!r->released_ms) {
		r->released_ms = now;
		r->end_grace_ms = grace_ms;
		r->checksum = record_sum(r);
		rc = put_slot(s, i, err, errlen);
		if (rc)
			return rc;
		sig = SIGTERM;
	} else if (now >= r->released_ms + r->end_grace_ms) {
		sig = SIGKILL;
	}
	for (int k = 0; sig && k < ms->n; k++)
		kill(ms->m[k].pid, sig);
	return kxgpu_fail(err, errlen, KXGPU_EAGAIN, "Partition %s: ending "
	                  "%d process%s", r->id, ms->n, ms->n == 1 ? "" : "es");
}

static int file_release(kxgpu_ledger *l, const struct kxgpu_release *rel,
                        struct kxgpu_partition *out, char *err, size_t errlen)
{
	struct kxgpu_members ms;
	char path[4300], names[160];
	struct state s;
	int rc, i;

	rc = begin(l, &s, err, errlen);
	if (rc)
		return rc;
	i = find(&s, rel->id);
	if (i < 0)
		rc = kxgpu_fail(err, errlen, KXGPU_ENOENT, "Partition not found: %s",
		                rel->id);
	else if (rel->caller != 0 && rel->caller != s.slots[i].uid)
		rc = kxgpu_fail(err, errlen, KXGPU_EPERM,
		                "Permission denied: partition owned by %s",
		                s.slots[i].owner);
	if (rc)
		return finish(l, &s, rc, err, errlen);
	if (out)
		*out = s.slots[i];
	kxgpu_usage_path(l, s.slots[i].id, path, sizeof path);
	rc = kxgpu_members_find(path, s.slots[i].uid, &ms, err, errlen) ?
	     KXGPU_EIO : 0;
	if (rc) {
		/* nothing to do */
	} else if (ms.n == 0) {
		free_slot(l, &s, (uint32_t)i);
		rc = put_slot(&s, (uint32_t)i, err, errlen);
	} else if (!rel->force) {
		kxgpu_members_names(&ms, names, sizeof names);
		rc = kxgpu_fail(err, errlen, KXGPU_EBUSY, "Partition %s has "
		                "programs running in it: %s; end them first, or "
		                "release it by force", rel->id,
		                names[0] ? names : "its guard");
	} else {
		rc = force_end(&s, (uint32_t)i, rel->grace_ms, &ms, err, errlen);
	}
	kxgpu_members_free(&ms);
	return finish(l, &s, rc, err, errlen);
}

static int file_find(kxgpu_ledger *l, const char *id,
                      struct kxgpu_partition *out, char *err, size_t errlen)
{
	struct state s;
	int rc, i;

	rc = begin(l, &s, err, errlen);
	if (rc)
		return rc;
	i = find(&s, id);
	if (i < 0 || kxgpu_partition_ending(&s.slots[i], kxgpu_now_ms()))
		rc = kxgpu_fail(err, errlen, KXGPU_ENOENT, "Partition not found: %s",
		                id);
	else
		*out = s.slots[i];
	return finish(l, &s, rc, err, errlen);
}

static int file_available(kxgpu_ledger *l, uint32_t device, uint32_t *ppm,
                           char *err, size_t errlen)
{
	struct state s;
	int rc;

	rc = begin(l, &s, err, errlen);
	if (rc)
		return rc;
	if (device >= s.h.ndevices)
		rc = kxgpu_fail(err, errlen, KXGPU_ENODEV,
				"Invalid device index: %u (%u device%s known)", device,
				s.h.ndevices, s.h.ndevices == 1 ? "" : "s");
	else
		*ppm = KXGPU_PPM - used_ppm(&s, device);
	return finish(l, &s, rc, err, errlen);
}

const struct kxgpu_ledger_ops kxgpu_file_ops = {
	.read = file_read, .devices = file_devices,
	.set_devices = file_set_devices, .create = file_create,
	.release = file_release, .find = file_find, .available = file_available,
};
