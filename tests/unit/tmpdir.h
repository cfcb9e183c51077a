/*
 * tmpdir.h - a cmocka unit's scratch directory: made under $TMPDIR (the
 * test runner gives each run its own and fails the run if anything is left
 * there) or /tmp, and removed with all it holds.
 */
#ifndef KX_TEST_TMPDIR_H
#define KX_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

/* dir = TMPDIR/kxrun-NAME.XXXXXX, created; 0, or -1. */
static inline int kx_test_tmpdir(char *dir, size_t size, const char *name)
{
	const char *t = getenv("TMPDIR");
	if (snprintf(dir, size, "%s/kxrun-%s.XXXXXX", t && *t ? t : "/tmp",
		     name) >= (int)size)
		return -1;
	return mkdtemp(dir) ? 0 : -1;
}

static inline int kx_test_remove_entry(const char *path, const struct stat *st,
				       int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* dir and everything under it, links not followed; 0, or -1. */
static inline int kx_test_rmtree(const char *dir)
{
	return nftw(dir, kx_test_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
