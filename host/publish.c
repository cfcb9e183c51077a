/*
 * publish.c - a directory of files made whole beside its place, then put
 * there at once (see kx.h: kx_tmpdir_beside, kx_publish_dir,
 * kx_discard_dir).  Plain C: callable from libuv's worker threads.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kx.h"

/* path's parent directory and last component, trailing slashes ignored */
static int split(const char *path, char *parent, char *base, size_t len)
{
	char a[4096], b[4096];
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n == 0 || n >= sizeof a)
		return -1;
	memcpy(a, path, n);
	a[n] = 0;
	memcpy(b, a, n + 1);
	if (snprintf(parent, len, "%s", dirname(a)) >= (int)len ||
	    snprintf(base, len, "%s", basename(b)) >= (int)len)
		return -1;
	return 0;
}

/* The process's umask, read without changing it (umask(2) would, for
 * every thread at once). */
static mode_t current_umask(void)
{
	char line[128];
	unsigned mask = 022;
	FILE *f = fopen("/proc/self/status", "re");
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "Umask: %o", &mask) == 1)
			break;
	if (f)
		fclose(f);
	return (mode_t)mask;
}

int kx_tmpdir_beside(const char *path, char *tmp, size_t len, char *err,
		     size_t errlen)
{
	char parent[4096], base[4096];
	if (split(path, parent, base, sizeof parent) < 0 ||
	    snprintf(tmp, len, "%s/.%s.tmp.XXXXXX", parent, base) >= (int)len) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	if (!mkdtemp(tmp)) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", parent, strerror(e));
		return -e;
	}
	/* it becomes the directory itself: the mode mkdir would give */
	chmod(tmp, 0777 & ~current_umask());
	return 0;
}

void kx_discard_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (d) {
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(dir);
}

static int sync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

static int listed(const char *name, const char *const *names)
{
	for (; *names; names++)
		if (!strcmp(name, *names))
			return 1;
	return 0;
}

/* Whether dir holds nothing but entries named in names. */
static int only_names(const char *dir, const char *const *names)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int only = 1;
	if (!d)
		return 0;
	while (only && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			only = listed(e->d_name, names);
	closedir(d);
	return only;
}

int kx_publish_dir(const char *tmp, const char *dir, const char *const *names,
		   char *err, size_t errlen)
{
	char a[4096], b[4096], parent[4096], base[4096];
	int e;

	/* the files' data first, then the entries that name them */
	for (const char *const *n = names; *n; n++) {
		snprintf(a, sizeof a, "%s/%s", tmp, *n);
		if (sync_path(a, 0) < 0 && errno != ENOENT)
			goto fail_at_a;
	}
	if (sync_path(tmp, O_DIRECTORY) < 0) {
		snprintf(a, sizeof a, "%s", tmp);
		goto fail_at_a;
	}
	if (split(dir, parent, base, sizeof parent) < 0) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -ENAMETOOLONG;
	}
	/* new, or an empty directory: one rename */
	if (rename(tmp, dir) == 0)
		goto done;
	if (errno != ENOTEMPTY && errno != EEXIST) {
		snprintf(a, sizeof a, "%s", dir);
		goto fail_at_a;
	}
	/* a directory of an earlier run of ours: swapped with the new one in
	 * one step, then the old one removed */
	if (only_names(dir, names) &&
	    renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
		kx_discard_dir(tmp);
		goto done;
	}
	/* other files live there too (or the file system cannot swap): the
	 * new files, all written and synced, renamed in one by one */
	for (const char *const *n = names; *n; n++) {
		snprintf(a, sizeof a, "%s/%s", tmp, *n);
		snprintf(b, sizeof b, "%s/%s", dir, *n);
		if (rename(a, b) < 0 && errno != ENOENT) {
			snprintf(a, sizeof a, "%s", b);
			goto fail_at_a;
		}
	}
	rmdir(tmp);
	sync_path(dir, O_DIRECTORY);
done:
	sync_path(parent, O_DIRECTORY);
	return 0;
fail_at_a:
	e = errno;
	snprintf(err, errlen, "%s: %s", a, strerror(e));
	return -e;
}
