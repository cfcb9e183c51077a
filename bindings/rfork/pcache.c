/*
 * pcache.c - the shared pager's copy of the pages it fetched (internal.h).
 *
 * The parent's image never changes after prepare, so a page fetched once
 * is right for every later child.  Pages live in blocks of BLOCK pages of
 * the parent's address space (a run inside a block is contiguous here too,
 * so it goes in with one UFFDIO_COPY), found by an open-addressing table
 * keyed by the block's address.  The arena is reserved once (no memory
 * until written); when every block is taken, nothing more is kept (no
 * eviction: what the first children touched is what the next ones touch).
 */
#include "internal.h"

#include <string.h>
#include <sys/mman.h>

#define BLOCK 16   /* pages */

static struct {
	char *arena;
	uint32_t nblocks, used;     /* blocks in the arena, taken */
	uint32_t nslots;            /* table slots: a power of two > 2 * nblocks */
	uint64_t *key;              /* block address + 1 (0: empty) */
	uint32_t *block;            /* its block in the arena */
	uint16_t *have;             /* pages of the block present */
} C;

int rf_cache_init(uint64_t bytes)
{
	memset(&C, 0, sizeof C);
	uint64_t n = bytes / (BLOCK * RF_PAGE);
	if (!n)
		return 0;
	if (n > (1u << 24))
		n = 1u << 24;
	C.nblocks = n;
	C.nslots = 1;
	while (C.nslots <= 2 * n)
		C.nslots <<= 1;
	size_t meta = C.nslots * (sizeof *C.key + sizeof *C.block) + n * sizeof *C.have;
	char *m = mmap(NULL, n * BLOCK * RF_PAGE + meta, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED) {
		C.nblocks = 0;
		return -1;
	}
	C.arena = m;
	C.key = (uint64_t *)(m + n * BLOCK * RF_PAGE);
	C.block = (uint32_t *)(C.key + C.nslots);
	C.have = (uint16_t *)(C.block + C.nslots);
	return 0;
}

int rf_cache_on(void)
{
	return C.nblocks > 0;
}

/* The slot of the block holding page addr: its key's, or the empty one
 * where it would go. */
static uint32_t slot(uint64_t b)
{
	uint32_t i = (uint32_t)((b / (BLOCK * RF_PAGE)) * 0x9E3779B97F4A7C15ULL >> 40) & (C.nslots - 1);
	while (C.key[i] && C.key[i] != b + 1)
		i = (i + 1) & (C.nslots - 1);
	return i;
}

void rf_cache_put(uint64_t addr, const char *src, uint32_t n)
{
	for (uint32_t k = 0; C.nblocks && k < n; k++, addr += RF_PAGE) {
		uint64_t b = addr & ~(uint64_t)(BLOCK * RF_PAGE - 1);
		uint32_t i = slot(b), page = (addr - b) / RF_PAGE;
		if (!C.key[i]) {
			if (C.used == C.nblocks)
				continue;   /* full */
			C.key[i] = b + 1;
			C.block[i] = C.used++;
		}
		uint32_t blk = C.block[i];
		if (C.have[blk] & (1u << page))
			continue;
		memcpy(C.arena + ((uint64_t)blk * BLOCK + page) * RF_PAGE, src + (uint64_t)k * RF_PAGE,
		       RF_PAGE);
		C.have[blk] |= 1u << page;
	}
}

uint32_t rf_cache_run(uint64_t addr, uint32_t max, const char **src)
{
	if (!C.nblocks || !max)
		return 0;
	uint64_t b = addr & ~(uint64_t)(BLOCK * RF_PAGE - 1);
	uint32_t i = slot(b), page = (addr - b) / RF_PAGE, n = 0;
	if (!C.key[i])
		return 0;
	uint32_t blk = C.block[i];
	while (page + n < BLOCK && n < max && (C.have[blk] & (1u << (page + n))))
		n++;
	*src = C.arena + ((uint64_t)blk * BLOCK + page) * RF_PAGE;
	return n;
}

uint64_t rf_cache_pages(void)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < C.used; i++)
		n += __builtin_popcount(C.have[i]);
	return n;
}
