/*
 * hugealloc.c - Lua's large blocks in transparent huge pages, so that a
 * prepare copies few page tables.
 *
 * The holder is a fork of its parent, and fork copies the page-table
 * entry of every populated private page: 4 GiB in 4 KiB pages is a
 * million entries (40-280 ms here); in 2 MiB pages it is 2048 (a few ms).
 * With THP in "madvise" mode (Debian's default) memory gets huge pages
 * only where madvise(MADV_HUGEPAGE) asked before it was touched.  So once
 * kx.rfork is loaded, every Lua block of HUGE_MIN or more (long strings,
 * the array and hash parts of big tables) lives in a mapping of its own,
 * 2 MiB aligned and advised MADV_HUGEPAGE; smaller blocks go to the
 * allocator the state had, as before.  (C libraries' malloc'd memory is
 * not concerned: GLIBC_TUNABLES=glibc.malloc.hugetlb=1 does the same for
 * it.)  Children are not concerned either: pages reach them 4 KiB at a
 * time.
 *
 * KXRUN_RFORK_HUGEPAGES=0 (when kx.rfork is loaded) leaves the allocator
 * alone.
 *
 * Which blocks are ours: a small table of their addresses (blocks of the
 * old allocator may exist from before, with any address and size).  Lua
 * allocates from one thread: no lock.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE (2UL << 20)
#define HUGE_MIN HUGE_PAGE

/* LeakSanitizer scans the heap, not mappings of our own: a Lua object
 * whose only pointer is in one of our blocks (the collector's list runs
 * through them) would look leaked.  So they are roots for it. */
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#define lsan_root(p, len) __lsan_register_root_region(p, len)
#define lsan_unroot(p, len) __lsan_unregister_root_region(p, len)
#else
#define lsan_root(p, len) ((void)(p), (void)(len))
#define lsan_unroot(p, len) ((void)(p), (void)(len))
#endif

static lua_Alloc old_alloc;
static void *old_ud;

/* Open addressing, linear probing; keys are block addresses, 1: deleted. */
static uintptr_t *table;
static size_t cap, used;   /* slots; live + deleted */

static size_t slot_of(uintptr_t p)
{
	return (p >> 21) * 0x9E3779B97F4A7C15ULL >> 7 & (cap - 1);
}

static int owned(const void *p)
{
	if (!cap || ((uintptr_t)p & (HUGE_PAGE - 1)))
		return 0;
	for (size_t i = slot_of((uintptr_t)p);; i = (i + 1) & (cap - 1)) {
		if (table[i] == (uintptr_t)p)
			return 1;
		if (!table[i])
			return 0;
	}
}

static void forget(const void *p)
{
	for (size_t i = slot_of((uintptr_t)p);; i = (i + 1) & (cap - 1))
		if (table[i] == (uintptr_t)p) {
			table[i] = 1;
			return;
		}
}

static int remember(void *p)
{
	if ((used + 1) * 2 > cap) {   /* grow (and drop the deleted) */
		size_t ocap = cap, ncap = cap ? cap * 2 : 256;
		uintptr_t *old = table, *t = mmap(NULL, ncap * sizeof *t, PROT_READ | PROT_WRITE,
		                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (t == MAP_FAILED)
			return -1;
		table = t, cap = ncap, used = 0;
		for (size_t i = 0; i < ocap; i++)
			if (old[i] > 1)
				remember((void *)old[i]);
		if (old)
			munmap(old, ocap * sizeof *old);
	}
	size_t i = slot_of((uintptr_t)p);
	while (table[i] > 1)
		i = (i + 1) & (cap - 1);
	if (!table[i])
		used++;
	table[i] = (uintptr_t)p;
	return 0;
}

static size_t span(size_t n)
{
	return (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
}

/* A new block of n bytes (>= HUGE_MIN), or NULL. */
static void *huge_new(size_t n)
{
	size_t len = span(n);
	char *m = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	               -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	char *p = (char *)span((uintptr_t)m);
	if (p > m)
		munmap(m, p - m);
	munmap(p + len, m + HUGE_PAGE - p);
	madvise(p, len, MADV_HUGEPAGE);
	if (remember(p) < 0) {
		munmap(p, len);
		return NULL;
	}
	lsan_root(p, len);
	return p;
}

static void *huge_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	int ours = ptr && osize >= HUGE_MIN && owned(ptr);
	if (!ours && nsize < HUGE_MIN)
		return old_alloc(old_ud, ptr, osize, nsize);
	if (ours && nsize >= HUGE_MIN) {   /* grows or shrinks: the kernel moves pages */
		void *q = mremap(ptr, span(osize), span(nsize), MREMAP_MAYMOVE);
		if (q == MAP_FAILED)
			return NULL;
		lsan_unroot(ptr, span(osize));
		if (q != ptr) {
			forget(ptr);
			if (remember(q) < 0) {
				munmap(q, span(nsize));
				return NULL;
			}
		}
		lsan_root(q, span(nsize));
		return q;
	}
	void *q = nsize ? (nsize >= HUGE_MIN ? huge_new(nsize) : old_alloc(old_ud, NULL, 0, nsize))
	                : NULL;
	if (nsize && !q)
		return NULL;   /* Lua keeps the old block */
	if (ptr) {
		if (q)
			memcpy(q, ptr, osize < nsize ? osize : nsize);
		if (ours) {
			forget(ptr);
			lsan_unroot(ptr, span(osize));
			munmap(ptr, span(osize));
		} else {
			old_alloc(old_ud, ptr, osize, 0);
		}
	}
	return q;
}

void rf_huge_alloc(lua_State *L)
{
	const char *e = getenv("KXRUN_RFORK_HUGEPAGES");
	if (e && !strcmp(e, "0"))
		return;
	void *ud;
	lua_Alloc f = lua_getallocf(L, &ud);
	if (f == huge_alloc)
		return;
	old_alloc = f;
	old_ud = ud;
	lua_setallocf(L, huge_alloc, NULL);
}
