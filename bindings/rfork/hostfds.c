/*
 * hostfds.c - kxrun's descriptors across a resume: what the host and libuv
 * in the parent's memory refer to must exist again in a resumed child.
 *
 * A resumed child has the parent's memory as it was at prepare, but a fd
 * table of its own (0, 1, 2 and the regular files rfork reopened).  The
 * parent's memory still names descriptors that libuv and the host use:
 *
 *  - libuv's process-global signal lock pipe (uv__signal_lock_pipefd, one
 *    byte in it while unlocked; re-created only by libuv's pthread_atfork
 *    child handler, which a resume does not run);
 *  - the loop's epoll (backend_fd), its signal pipe and its async eventfd;
 *  - pipes, sockets, pidfds of handles watched by the old loop;
 *  - descriptors that bindings and Lua objects will close on collection.
 *
 * Capture (parent, at prepare) lists every descriptor above 2 with what it
 * is; the child gives each number that is free in it a descriptor again:
 *
 *  - a pipe: a new pipe at each number of the old one, holding the bytes
 *    the old one held (read with tee(2), not consumed in the parent); a pipe
 *    the parent held one end of becomes a widowed pipe (EOF / EPIPE);
 *  - an eventfd: a new one with the same counter and flags;
 *  - an epoll: a new empty one;
 *  - a socket: one end of a unix socket pair whose peer is closed;
 *  - a regular file or directory rfork did not reopen: reopened at its
 *    offset; /dev/null, /dev/zero, /dev/full, /dev/[u]random reopened;
 *  - anything else (pidfds, timerfds, terminals): /dev/null.
 *
 * So no number the parent used is free in the child: stale code closing
 * or writing one of them hits a harmless stand-in, never a new descriptor
 * of the child.
 *
 * Not kept: two descriptors of one eventfd become two eventfds (anonymous
 * inodes cannot be told apart); a named FIFO becomes an anonymous pipe; a
 * socket's peer and a pidfd's process are the parent's business.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostside.h"

#define BLOB_MAGIC 0x5352584bu /* "KXRS" */
#define BLOB_VERSION 1

enum fd_kind { FK_PIPE, FK_EVENTFD, FK_EPOLL, FK_SOCKET, FK_FILE, FK_DEVICE,
	       FK_OTHER };

static const char *const kind_names[] = {
	"pipe", "eventfd", "epoll", "socket", "file", "device", "other",
};

struct blob_head {
	uint32_t magic, version, nfds, size;
};

/* One descriptor; followed by pathlen bytes of path, then datalen bytes of
 * pipe contents. */
struct blob_fd {
	int32_t fd;
	int32_t flags;     /* F_GETFL */
	int32_t group;     /* PIPE: the first fd seen on the same pipe */
	int32_t pipe_size; /* PIPE */
	int32_t socktype;  /* SOCKET */
	uint32_t pathlen;  /* FILE, DEVICE */
	uint32_t datalen;  /* PIPE, on the first read end: its bytes */
	uint64_t value;    /* EVENTFD: counter; FILE: offset */
	uint8_t kind;
	uint8_t cloexec;
	uint8_t semaphore; /* EVENTFD */
	uint8_t pad;
};

/* ---- capture ---------------------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
};

static int buf_add(struct buf *b, const void *data, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	if (n)   /* data may be NULL when there is nothing */
		memcpy(b->p + b->len, data, n);
	b->len += n;
	return 0;
}

struct pipe_seen {
	dev_t dev;
	ino_t ino;
	int group;
	int have_data;
};

static const char *const reopenable_devices[] = {
	"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
	NULL,
};

static int is_reopenable_device(const char *path)
{
	for (int i = 0; reopenable_devices[i]; i++)
		if (strcmp(path, reopenable_devices[i]) == 0)
			return 1;
	return 0;
}

/* Counter and semaphore flag of an eventfd, from its fdinfo. */
static int eventfd_state(int fd, uint64_t *count, uint8_t *sem)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	int found = 0;
	*sem = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long long v;
		int s;
		if (sscanf(line, "eventfd-count: %llx", &v) == 1) {
			*count = v;
			found = 1;
		} else if (sscanf(line, "eventfd-semaphore: %d", &s) == 1) {
			*sem = s != 0;
		}
	}
	fclose(f);
	return found ? 0 : -1;
}

/* The bytes waiting in the pipe whose read end is fd, without consuming
 * them: tee(2) into a scratch pipe, read that.  Returns a malloc'd copy
 * (NULL with *len 0 when empty). */
static int pipe_contents(int fd, char **out, size_t *len)
{
	int n = 0;
	*out = NULL;
	*len = 0;
	if (ioctl(fd, FIONREAD, &n) < 0 || n <= 0)
		return 0;
	int tp[2];
	if (pipe2(tp, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	if (fcntl(tp[1], F_GETPIPE_SZ) < n && fcntl(tp[1], F_SETPIPE_SZ, n) < 0)
		goto fail;
	char *data = malloc((size_t)n);
	if (!data)
		goto fail;
	ssize_t t = tee(fd, tp[1], (size_t)n, SPLICE_F_NONBLOCK);
	size_t got = 0;
	while (t > 0 && got < (size_t)t) {
		ssize_t r = read(tp[0], data + got, (size_t)t - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(tp[0]);
	close(tp[1]);
	if (t < 0 || got != (size_t)t) {
		free(data);
		errno = t < 0 ? errno : EIO;
		return -1;
	}
	*out = data;
	*len = got;
	return 0;
fail:
	close(tp[0]);
	close(tp[1]);
	return -1;
}

static int capture_fd(struct buf *b, int fd, struct pipe_seen **seen,
		      size_t *nseen, char *err, size_t errlen)
{
	struct blob_fd r;
	struct stat st;
	char link[PATH_MAX] = "", *data = NULL;
	size_t datalen = 0;

	memset(&r, 0, sizeof r);
	if (fstat(fd, &st) < 0)
		return 0;   /* closed meanwhile (the directory stream's own) */
	char lp[64];
	snprintf(lp, sizeof lp, "/proc/self/fd/%d", fd);
	ssize_t ln = readlink(lp, link, sizeof link - 1);
	link[ln > 0 ? ln : 0] = 0;
	r.fd = fd;
	r.flags = fcntl(fd, F_GETFL);
	r.cloexec = (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
	r.group = -1;
	r.kind = FK_OTHER;

	if (S_ISFIFO(st.st_mode)) {
		r.kind = FK_PIPE;
		r.pipe_size = fcntl(fd, F_GETPIPE_SZ);
		struct pipe_seen *p = NULL;
		for (size_t i = 0; i < *nseen; i++)
			if ((*seen)[i].dev == st.st_dev && (*seen)[i].ino == st.st_ino)
				p = &(*seen)[i];
		if (!p) {
			struct pipe_seen *ns = realloc(*seen, (*nseen + 1) * sizeof *ns);
			if (!ns)
				goto nomem;
			*seen = ns;
			p = &ns[(*nseen)++];
			p->dev = st.st_dev;
			p->ino = st.st_ino;
			p->group = fd;
			p->have_data = 0;
		}
		r.group = p->group;
		if (!p->have_data && (r.flags & O_ACCMODE) != O_WRONLY) {
			if (pipe_contents(fd, &data, &datalen) < 0) {
				snprintf(err, errlen, "pipe at descriptor %d: cannot "
					 "copy its contents: %s", fd, strerror(errno));
				return -1;
			}
			p->have_data = 1;
		}
	} else if (S_ISSOCK(st.st_mode)) {
		socklen_t sl = sizeof r.socktype;
		r.kind = FK_SOCKET;
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &r.socktype, &sl) < 0)
			r.socktype = SOCK_STREAM;
	} else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
		size_t l = strlen(link);
		if (link[0] == '/' && !(l > 10 && strcmp(link + l - 10, " (deleted)") == 0)) {
			r.kind = FK_FILE;
			off_t off = lseek(fd, 0, SEEK_CUR);
			r.value = off > 0 ? (uint64_t)off : 0;
		}
	} else if (S_ISCHR(st.st_mode) && is_reopenable_device(link)) {
		r.kind = FK_DEVICE;
	} else if (strcmp(link, "anon_inode:[eventfd]") == 0) {
		if (eventfd_state(fd, &r.value, &r.semaphore) == 0)
			r.kind = FK_EVENTFD;
	} else if (strcmp(link, "anon_inode:[eventpoll]") == 0) {
		r.kind = FK_EPOLL;
	}
	if (r.kind == FK_FILE || r.kind == FK_DEVICE)
		r.pathlen = (uint32_t)strlen(link);
	r.datalen = (uint32_t)datalen;
	if (buf_add(b, &r, sizeof r) < 0 || buf_add(b, link, r.pathlen) < 0 ||
	    buf_add(b, data, datalen) < 0) {
		free(data);
		goto nomem;
	}
	free(data);
	return 1;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

void *rf_host_capture(size_t *len, char *err, size_t errlen)
{
	struct buf b = {0};
	struct blob_head h = {BLOB_MAGIC, BLOB_VERSION, 0, 0};
	struct pipe_seen *seen = NULL;
	size_t nseen = 0;

	if (!kx_current()) {
		snprintf(err, errlen, "must be called from a task (the child "
			 "resumes inside it)");
		return NULL;
	}
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		snprintf(err, errlen, "/proc/self/fd: %s", strerror(errno));
		return NULL;
	}
	if (buf_add(&b, &h, sizeof h) < 0)
		goto nomem;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);
		if (*end || end == e->d_name || fd <= 2 || fd == dirfd(d))
			continue;
		int r = capture_fd(&b, (int)fd, &seen, &nseen, err, errlen);
		if (r < 0)
			goto fail;
		h.nfds += (uint32_t)r;
	}
	closedir(d);
	free(seen);
	h.size = (uint32_t)b.len;
	memcpy(b.p, &h, sizeof h);
	*len = b.len;
	return b.p;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	closedir(d);
	free(seen);
	free(b.p);
	return NULL;
}

/* ---- re-creating descriptors ------------------------------------------------- */

struct rec {
	struct blob_fd r;
	const char *path;   /* not terminated: r.pathlen bytes */
	const char *data;
	int absent;         /* free in the child: to be given a descriptor */
};

static int parse_blob(const void *blob, size_t len, struct rec **out,
		      size_t *n, char *err, size_t errlen)
{
	struct blob_head h;
	const char *p = blob, *end = p + len;

	if (!blob || len < sizeof h) {
		snprintf(err, errlen, "resume blob is missing or truncated");
		return -1;
	}
	memcpy(&h, p, sizeof h);
	if (h.magic != BLOB_MAGIC || h.version != BLOB_VERSION || h.size != len) {
		snprintf(err, errlen, "resume blob is not one of this kxrun "
			 "(magic, version or size differ)");
		return -1;
	}
	p += sizeof h;
	struct rec *recs = calloc(h.nfds ? h.nfds : 1, sizeof *recs);
	if (!recs) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < h.nfds; i++) {
		if ((size_t)(end - p) < sizeof recs[i].r)
			goto bad;
		memcpy(&recs[i].r, p, sizeof recs[i].r);
		p += sizeof recs[i].r;
		if ((size_t)(end - p) < (size_t)recs[i].r.pathlen + recs[i].r.datalen ||
		    recs[i].r.kind > FK_OTHER || recs[i].r.fd <= 2)
			goto bad;
		recs[i].path = p;
		p += recs[i].r.pathlen;
		recs[i].data = p;
		p += recs[i].r.datalen;
	}
	*out = recs;
	*n = h.nfds;
	return 0;
bad:
	free(recs);
	snprintf(err, errlen, "resume blob is corrupt");
	return -1;
}

/* Moves a new descriptor above every captured number, so that creating the
 * next one never lands on a number still to be filled. */
static int lift(int fd, int base)
{
	if (fd < 0)
		return -1;
	int up = fcntl(fd, F_DUPFD_CLOEXEC, base);
	int e = errno;
	close(fd);
	errno = e;
	return up;
}

/* The record's status flags on its number: a new descriptor has neither
 * O_NONBLOCK nor O_APPEND unless it was opened with the record's own. */
static void set_flags(const struct rec *x)
{
	if (x->r.flags & (O_NONBLOCK | O_APPEND))
		fcntl(x->r.fd, F_SETFL, x->r.flags & (O_NONBLOCK | O_APPEND));
}

/* Puts a duplicate of fd at the record's number with its flags. */
static int place(int fd, const struct rec *x)
{
	if (dup3(fd, x->r.fd, x->r.cloexec ? O_CLOEXEC : 0) < 0)
		return -1;
	set_flags(x);
	return 0;
}

/* fd, new and close-on-exec, becomes the record's: kept where it already
 * has the record's number (numbers are given lowest first, so usually),
 * else lifted above base and duplicated there.  0, or -1 (fd closed). */
static int settle(int fd, const struct rec *x, int base)
{
	if (fd >= 0 && fd == x->r.fd) {
		if (!x->r.cloexec)
			fcntl(fd, F_SETFD, 0);
		set_flags(x);
		return 0;
	}
	fd = lift(fd, base);   /* off any number another record wants */
	if (fd < 0)
		return -1;
	int r = place(fd, x);
	close(fd);
	return r;
}

static int open_stand_in(void)
{
	return open("/dev/null", O_RDWR | O_CLOEXEC);
}

static int open_path(const struct rec *x, int device)
{
	char path[PATH_MAX];
	if (x->r.pathlen >= sizeof path)
		return -1;
	memcpy(path, x->path, x->r.pathlen);
	path[x->r.pathlen] = 0;
	int keep = device ? (O_ACCMODE | O_NONBLOCK | O_APPEND) :
			    ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
	int fd = open(path, (x->r.flags & keep) | O_CLOEXEC);
	if (fd >= 0 && !device && x->r.value)
		lseek(fd, (off_t)x->r.value, SEEK_SET);
	return fd;
}

/* The pipe's size and the bytes the parent's held, written into wfd. */
static int fill_pipe(const struct rec *recs, size_t n, size_t lead, int wfd)
{
	if (recs[lead].r.pipe_size > 0)
		fcntl(wfd, F_SETPIPE_SZ, recs[lead].r.pipe_size);
	for (size_t i = lead; i < n; i++) {
		const struct rec *x = &recs[i];
		for (size_t off = 0; x->r.group == recs[lead].r.group && off < x->r.datalen;) {
			ssize_t w = write(wfd, x->data + off, x->r.datalen - off);
			if (w <= 0)
				return -1;
			off += (size_t)w;
		}
	}
	return 0;
}

/* One pipe for every record of the group led by recs[lead]. */
static int recreate_pipe(struct rec *recs, size_t n, size_t lead, int base)
{
	int p[2], any = 0;
	for (size_t i = lead; i < n; i++)
		any |= recs[i].r.group == recs[lead].r.group && recs[i].absent;
	if (!any)
		return 0;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	/* the common case, a reader and a writer whose numbers the pipe got
	 * (numbers are given lowest first): nothing to move */
	size_t members = 0, in_place = 0;
	for (size_t i = lead; i < n; i++) {
		const struct rec *x = &recs[i];
		if (x->r.group != recs[lead].r.group)
			continue;
		members++;
		int acc = x->r.flags & O_ACCMODE;
		in_place += x->absent && ((acc == O_RDONLY && x->r.fd == p[0]) ||
		                          (acc == O_WRONLY && x->r.fd == p[1]));
	}
	if (members == 2 && in_place == 2) {
		for (size_t i = lead; i < n; i++)
			if (recs[i].r.group == recs[lead].r.group)
				settle(recs[i].r.fd, &recs[i], base);
		return fill_pipe(recs, n, lead, p[1]);
	}
	p[0] = lift(p[0], base);
	p[1] = lift(p[1], base);
	if (p[0] < 0 || p[1] < 0 || fill_pipe(recs, n, lead, p[1]) < 0)
		goto fail;
	for (size_t i = lead; i < n; i++) {
		struct rec *x = &recs[i];
		if (x->r.group != recs[lead].r.group || !x->absent)
			continue;
		int acc = x->r.flags & O_ACCMODE, fd = -1;
		if (acc == O_WRONLY) {
			fd = p[1];
		} else if (acc == O_RDWR) {
			char lp[64];
			snprintf(lp, sizeof lp, "/proc/self/fd/%d", p[0]);
			fd = lift(open(lp, O_RDWR | O_CLOEXEC), base);
		} else {
			fd = p[0];
		}
		int r = fd < 0 ? -1 : place(fd, x);
		if (fd >= 0 && fd != p[0] && fd != p[1])
			close(fd);
		if (r < 0)
			goto fail;
	}
	close(p[0]);
	close(p[1]);
	return 0;
fail:
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	return -1;
}

static int recreate_one(struct rec *x, int base)
{
	int fd = -1;
	switch (x->r.kind) {
	case FK_EVENTFD:
		fd = eventfd(0, EFD_CLOEXEC | (x->r.semaphore ? EFD_SEMAPHORE : 0));
		if (fd >= 0 && x->r.value &&
		    write(fd, &x->r.value, sizeof x->r.value) != sizeof x->r.value) {
			close(fd);
			return -1;
		}
		break;
	case FK_EPOLL:
		fd = epoll_create1(EPOLL_CLOEXEC);
		break;
	case FK_SOCKET: {
		int sp[2], t = x->r.socktype;
		if (t != SOCK_DGRAM && t != SOCK_SEQPACKET)
			t = SOCK_STREAM;
		if (socketpair(AF_UNIX, t | SOCK_CLOEXEC, 0, sp) < 0)
			return -1;
		close(sp[1]);
		fd = sp[0];
		break;
	}
	case FK_FILE:
	case FK_DEVICE:
		fd = open_path(x, x->r.kind == FK_DEVICE);
		if (fd < 0)
			fd = open_stand_in();
		break;
	default:
		fd = open_stand_in();
		break;
	}
	return settle(fd, x, base);
}

static int recreate_fds(struct rec *recs, size_t n, char *err, size_t errlen)
{
	int base = 3;
	for (size_t i = 0; i < n; i++) {
		struct rec *x = &recs[i];
		if (x->r.fd >= base)
			base = x->r.fd + 1;
		x->absent = fcntl(x->r.fd, F_GETFD) < 0 && errno == EBADF;
		if (!x->absent && (x->r.kind == FK_PIPE || x->r.kind == FK_EVENTFD ||
				   x->r.kind == FK_EPOLL)) {
			snprintf(err, errlen, "descriptor %d is taken in the child, "
				 "but the parent's memory uses it as a %s (the "
				 "resume must keep its own descriptors off the "
				 "parent's numbers)", x->r.fd, kind_names[x->r.kind]);
			return -1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct rec *x = &recs[i];
		int r = 0;
		if (x->r.kind == FK_PIPE) {
			if (x->r.group == x->r.fd)
				r = recreate_pipe(recs, n, i, base);
		} else if (x->absent) {
			r = recreate_one(x, base);
		}
		if (r < 0) {
			snprintf(err, errlen, "cannot re-create descriptor %d (%s): %s",
				 x->r.fd, kind_names[x->r.kind], strerror(errno));
			return -1;
		}
	}
	return 0;
}

int rf_host_fds(const void *blob, size_t len, char *err, size_t errlen)
{
	struct rec *recs;
	size_t n;
	if (parse_blob(blob, len, &recs, &n, err, errlen) < 0)
		return -1;
	int r = recreate_fds(recs, n, err, errlen);
	free(recs);
	return r;
}
