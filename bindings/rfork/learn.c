/*
 * learn.c - the working set children have in common, learned by the holder
 * (internal.h: struct rf_learned).  Plain functions on fixed arrays: the
 * holder allocates nothing.
 */
#include "internal.h"

int rf_ranges_have(const struct rf_page_req *r, uint32_t n, uint64_t addr)
{
	for (uint32_t i = 0; i < n; i++)
		if (addr >= r[i].addr && addr - r[i].addr < (uint64_t)r[i].npages * RF_PAGE)
			return 1;
	return 0;
}

int rf_log_add(struct rf_page_req *log, uint32_t *n, uint32_t max, uint64_t lo,
               uint64_t addr, uint32_t npages)
{
	if (*n) {
		struct rf_page_req *last = &log[*n - 1];
		/* a range stays inside one mapping (from lo) and a plain
		 * request's size: the set is asked for as such */
		if (last->addr >= lo && last->addr + (uint64_t)last->npages * RF_PAGE == addr &&
		    last->npages + npages <= RF_MAX_PAGES) {
			last->npages += npages;
			return 0;
		}
	}
	if (*n == max)
		return -1;
	log[(*n)++] = (struct rf_page_req){.addr = addr, .npages = npages};
	return 0;
}

/* The first address in [a, b) that a range of l starts at, or b. */
static uint64_t next_start(const struct rf_learned *l, uint64_t a, uint64_t b)
{
	for (uint32_t i = 0; i < l->n; i++)
		if (l->r[i].addr > a && l->r[i].addr < b)
			b = l->r[i].addr;
	return b;
}

/* The end of the range of l holding a, or 0. */
static uint64_t covered_to(const struct rf_learned *l, uint64_t a)
{
	for (uint32_t i = 0; i < l->n; i++) {
		uint64_t end = l->r[i].addr + (uint64_t)l->r[i].npages * RF_PAGE;
		if (a >= l->r[i].addr && a < end)
			return end;
	}
	return 0;
}

void rf_learn_merge(struct rf_learned *l, const struct rf_page_req *log, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		uint64_t a = log[i].addr, b = a + (uint64_t)log[i].npages * RF_PAGE;
		while (a < b) {
			uint64_t end = covered_to(l, a);
			if (end) {   /* known already */
				a = end;
				continue;
			}
			uint64_t stop = next_start(l, a, b), pages = (stop - a) / RF_PAGE;
			if (l->n == RF_LEARN_RANGES || l->pages == RF_LEARN_PAGES)
				return;
			if (pages > RF_LEARN_PAGES - l->pages)
				pages = RF_LEARN_PAGES - l->pages;
			l->r[l->n++] = (struct rf_page_req){.addr = a, .npages = (uint32_t)pages};
			l->pages += pages;
			a = stop;
		}
	}
}
