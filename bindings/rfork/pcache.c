/*
 * pcache.c - the shared pager's copy of the pages it fetched (internal.h).
 *
 * The parent's image never changes after prepare, so a page fetched once
 * is right for every later child.  The copy lives in a memfd at the
 * page's parent address (a sparse file as large as the address space),
 * which the pager writes through a window per served mapping.  Children
 * that map the memfd themselves (restorer.c: MAP_PRIVATE at offset = their
 * address, userfaultfd MINOR mode) get a cached page by UFFDIO_CONTINUE:
 * mapped, not copied, shared until they write it (fork's copy-on-write);
 * others get it copied from the window.  When the budget is spent nothing
 * more is kept (no eviction: what the first children touched is what the
 * next ones touch).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U   /* linux/memfd.h (6.3); glibc 2.36 lacks it */
#endif

static struct {
	int fd;                     /* the memfd (-1: no cache) */
	uint64_t budget, used;      /* pages */
	struct win {
		uint64_t start, end;    /* parent addresses */
		char *at;               /* its pages in this process */
		uint64_t *have;         /* a bit a page */
		int mapped;             /* children map it from the memfd */
	} *w;
	int nw;
} C = {.fd = -1};

int rf_cache_memfd(void)
{
	/* executable: the parent's JIT code may be served from it; where
	 * vm.memfd_noexec forbids that (EACCES) children stay anonymous */
	int fd = memfd_create("kxrun-rfork-cache", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
	if (fd < 0 && errno == EINVAL)   /* a kernel older than MFD_EXEC (6.3) */
		fd = memfd_create("kxrun-rfork-cache", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd >= 0 && ftruncate(fd, RF_CACHE_FILE_SIZE) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

int rf_cache_init(uint64_t bytes, int memfd, const struct rf_desc *d)
{
	C.budget = bytes / RF_PAGE;
	if (!C.budget || memfd < 0)
		return -1;
	const struct rf_map *m = rf_desc_maps(d);
	C.w = calloc(d->nmaps, sizeof *C.w);
	if (!C.w)
		return -1;
	for (uint32_t i = 0; i < d->nmaps; i++) {
		if (m[i].kind != RF_MAP_SERVE)
			continue;
		uint64_t len = m[i].end - m[i].start, pages = len / RF_PAGE;
		struct win *w = &C.w[C.nw];
		w->at = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd,
		             (off_t)m[i].start);
		w->have = calloc((pages + 63) / 64, sizeof *w->have);
		if (w->at == MAP_FAILED || !w->have) {
			if (w->at != MAP_FAILED)
				munmap(w->at, len);
			free(w->have);
			continue;   /* that mapping is not kept */
		}
		w->start = m[i].start;
		w->end = m[i].end;
		w->mapped = !m[i].growsdown;   /* restorer.c: the stack stays anonymous */
		C.nw++;
	}
	/* From here on only these windows write it: a child (which maps it
	 * privately) cannot change what the others get. */
	if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE |
	                              F_SEAL_SEAL) < 0) {
		for (int i = 0; i < C.nw; i++) {
			munmap(C.w[i].at, C.w[i].end - C.w[i].start);
			free(C.w[i].have);
		}
		free(C.w);
		C.nw = 0;
		return -1;
	}
	C.fd = memfd;
	return 0;
}

int rf_cache_on(void)
{
	return C.fd >= 0;
}

int rf_cache_fd(void)
{
	return C.fd;
}

static struct win *win_of(uint64_t addr)
{
	for (int i = 0; i < C.nw; i++)
		if (addr >= C.w[i].start && addr < C.w[i].end)
			return &C.w[i];
	return NULL;
}

static int has(const struct win *w, uint64_t page)
{
	return (w->have[page / 64] >> (page % 64)) & 1;
}

void rf_cache_put(uint64_t addr, const char *src, uint32_t n)
{
	struct win *w = NULL;
	for (uint32_t k = 0; C.fd >= 0 && k < n && C.used < C.budget; k++, addr += RF_PAGE) {
		if (!w || addr >= w->end)
			w = win_of(addr);
		if (!w)
			continue;
		uint64_t p = (addr - w->start) / RF_PAGE;
		if (has(w, p))
			continue;
		memcpy(w->at + p * RF_PAGE, src + (uint64_t)k * RF_PAGE, RF_PAGE);
		w->have[p / 64] |= 1ULL << (p % 64);
		C.used++;
	}
}

uint32_t rf_cache_run(uint64_t addr, uint32_t max, const char **src, int *mapped)
{
	struct win *w = C.fd >= 0 ? win_of(addr) : NULL;
	if (!w)
		return 0;
	uint64_t p = (addr - w->start) / RF_PAGE, last = (w->end - w->start) / RF_PAGE;
	uint32_t n = 0;
	while (n < max && p + n < last && has(w, p + n))
		n++;
	*src = w->at + p * RF_PAGE;
	*mapped = w->mapped;
	return n;
}

uint64_t rf_cache_pages(void)
{
	return C.used;
}
