/*
 * fileio.c - whole reads and writes, and files replaced atomically.  Plain
 * C: no Lua, no loop, no static state, so thread-pool workers, helper
 * programs and preload libraries can link it too.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kx.h"

/* One loop for the four: off < 0 at the descriptor's offset (read, write),
 * else at off (pread, pwrite). */
static ssize_t read_loop(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;
	while (got < len) {
		char *p = (char *)buf + got;
		ssize_t n = off < 0 ? read(fd, p, len - got) :
			pread(fd, p, len - got, off + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int write_loop(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;
	while (done < len) {
		const char *p = (const char *)buf + done;
		ssize_t n = off < 0 ? write(fd, p, len - done) :
			pwrite(fd, p, len - done, off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

ssize_t kx_read_all(int fd, void *buf, size_t len)
{
	return read_loop(fd, buf, len, -1);
}

int kx_write_all(int fd, const void *buf, size_t len)
{
	return write_loop(fd, buf, len, -1);
}

ssize_t kx_pread_all(int fd, void *buf, size_t len, off_t off)
{
	if (off < 0) {
		errno = EINVAL;
		return -1;
	}
	return read_loop(fd, buf, len, off);
}

int kx_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	if (off < 0) {
		errno = EINVAL;
		return -1;
	}
	return write_loop(fd, buf, len, off);
}

/* ---- atomic files --------------------------------------------------------- */

static int fail(char *err, size_t errlen, int e, const char *what,
		const char *path)
{
	if (err && errlen)
		snprintf(err, errlen, "%s%s%s: %s", path, what ? ": " : "",
			 what ? what : "", strerror(e));
	return -e;
}

/* mkdir -p (kx.h) */
int kx_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof buf)
		return fail(err, errlen, len ? ENAMETOOLONG : ENOENT, NULL, path);
	memcpy(buf, path, len + 1);
	/* each prefix ending before a '/', then the whole */
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != 0)
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return fail(err, errlen, errno, "cannot create directory", buf);
		*p = c;
		if (!c)
			break;
	}
	struct stat st;
	if (stat(path, &st) < 0)
		return fail(err, errlen, errno, NULL, path);
	if (!S_ISDIR(st.st_mode))
		return fail(err, errlen, ENOTDIR, NULL, path);
	return 0;
}

/* fsync of the directory holding path: the rename itself must survive a
 * crash.  File systems that cannot sync a directory (EINVAL) are fine. */
static int sync_dir(const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	const char *d = dirname(dir);
	int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, errno, "open", d);
	int r = fsync(fd);
	int e = errno;
	close(fd);
	if (r < 0 && e != EINVAL && e != EROFS)
		return fail(err, errlen, e, "fsync", d);
	return 0;
}

int kx_atomic_begin(struct kx_atomic *a, const char *path, mode_t mode,
		    char *err, size_t errlen)
{
	a->fd = -1;
	a->tmp[0] = 0;
	size_t pl = strlen(path);
	if (pl == 0 || pl >= sizeof a->path)
		return fail(err, errlen, ENAMETOOLONG, NULL, path);
	memcpy(a->path, path, pl + 1);
	/* path.tmp.XXXXXX, shortening the name part when it would pass
	 * NAME_MAX */
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t bl = strlen(base), keep = pl;
	if (bl + 11 > NAME_MAX)
		keep = pl - (bl + 11 - NAME_MAX);
	if (snprintf(a->tmp, sizeof a->tmp, "%.*s.tmp.XXXXXX", (int)keep, path) >=
	    (int)sizeof a->tmp)
		return fail(err, errlen, ENAMETOOLONG, NULL, path);
	a->fd = mkostemp(a->tmp, O_CLOEXEC);
	if (a->fd < 0) {
		int e = errno;
		a->tmp[0] = 0;
		return fail(err, errlen, e, "cannot create a temporary file "
			    "beside it", path);
	}
	if (fchmod(a->fd, mode) < 0) {
		int e = errno;
		kx_atomic_abort(a);
		return fail(err, errlen, e, "chmod", path);
	}
	return 0;
}

int kx_atomic_commit(struct kx_atomic *a, char *err, size_t errlen)
{
	if (a->fd >= 0) {
		if (fsync(a->fd) < 0) {
			int e = errno;
			kx_atomic_abort(a);
			return fail(err, errlen, e, "fsync", a->path);
		}
		int r = close(a->fd);
		a->fd = -1;
		if (r < 0) {
			int e = errno;
			kx_atomic_abort(a);
			return fail(err, errlen, e, "close", a->path);
		}
	}
	if (rename(a->tmp, a->path) < 0) {
		int e = errno;
		kx_atomic_abort(a);
		return fail(err, errlen, e, "rename", a->path);
	}
	a->tmp[0] = 0;
	return sync_dir(a->path, err, errlen);
}

void kx_atomic_abort(struct kx_atomic *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	if (a->tmp[0])
		unlink(a->tmp);
	a->tmp[0] = 0;
}

int kx_write_file_atomic(const char *path, const void *buf, size_t len,
			 char *err, size_t errlen)
{
	struct kx_atomic a;
	int r = kx_atomic_begin(&a, path, 0644, err, errlen);
	if (r < 0)
		return r;
	if (kx_write_all(a.fd, buf, len) < 0) {
		int e = errno;
		kx_atomic_abort(&a);
		return fail(err, errlen, e, "write", path);
	}
	return kx_atomic_commit(&a, err, errlen);
}
