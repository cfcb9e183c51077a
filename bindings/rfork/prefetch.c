/*
 * prefetch.c - the batch a resumed child gets before its first fault.
 *
 * First the learned working set (the ranges the holder sent with the
 * descriptor: what earlier children of this parent were served, in the
 * order they faulted), then what a resumed kxrun touches first that the
 * set lacks: the stack around the saved stack pointer, the TLS page, the
 * saved context's page and every served mapping of up to 16 KiB whole
 * (data, RELRO and .bss of the executable and libraries).  The first child
 * of a parent has only that guess; with the set a child faults a few
 * times instead of ~35 before its first Lua statement.
 *
 * The resuming process asks for it right after the descriptor
 * (rf_prefetch_request), so the holder answers while the identity checks
 * run and the pager starts; the pager installs it at the child's first
 * fault.  KXRUN_RFORK_PREFETCH: "static" (the guess alone), "0" (none).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATIC_MAP_MAX (16UL << 10)   /* mappings up to 16 KiB are taken whole */
#define STACK_BELOW 8                 /* pages below the saved rsp */
#define STACK_ABOVE 32                /* pages above it: the callers' frames */

static struct rf_prefetch plan;

const struct rf_prefetch *rf_prefetch_plan(void)
{
	return &plan;
}

/* The served mapping holding addr, or NULL. */
static const struct rf_map *served(const struct rf_desc *d, uint64_t addr)
{
	const struct rf_map *m = rf_desc_maps(d);
	for (uint32_t i = 0; i < d->nmaps; i++)
		if (m[i].kind == RF_MAP_SERVE && addr >= m[i].start && addr < m[i].end)
			return &m[i];
	return NULL;
}

/* Appends the pages of [a, b) (one served mapping) not asked for yet. */
static void add(const struct rf_map *m, uint64_t a, uint64_t b)
{
	for (uint64_t p = a; p < b && plan.pages < RF_BATCH_PAGES; p += RF_PAGE) {
		if (rf_ranges_have(plan.q, plan.n, p))
			continue;
		struct rf_page_req *last = plan.n ? &plan.q[plan.n - 1] : NULL;
		if (last && last->addr + last->npages * RF_PAGE == p && last->addr >= m->start &&
		    last->npages < RF_MAX_PAGES) {
			last->npages++;
		} else {
			if (plan.n == RF_BATCH_RANGES)
				return;
			plan.q[plan.n++] = (struct rf_page_req){.addr = p, .npages = 1};
		}
		plan.pages++;
	}
}

static void add_around(const struct rf_desc *d, uint64_t addr, uint64_t below, uint64_t above)
{
	const struct rf_map *m = served(d, addr);
	if (!m)
		return;
	uint64_t p = addr & ~(RF_PAGE - 1);
	uint64_t a = p - m->start > below * RF_PAGE ? p - below * RF_PAGE : m->start;
	uint64_t b = m->end - p > above * RF_PAGE ? p + above * RF_PAGE : m->end;
	add(m, a, b);
}

static int learned_ok(const struct rf_desc *d, const struct rf_page_req *q)
{
	const struct rf_map *m = served(d, q->addr);
	return m && q->npages && q->npages <= RF_MAX_PAGES && !(q->addr & (RF_PAGE - 1)) &&
	       q->addr + (uint64_t)q->npages * RF_PAGE <= m->end;
}

int rf_prefetch_request(const struct rf_desc *d, struct rf_conn *conn,
                        const struct rf_page_req *learned, uint32_t nlearned, int send,
                        char *err, size_t errlen)
{
	const char *how = getenv("KXRUN_RFORK_PREFETCH");
	int none = how && !strcmp(how, "0"), guess_only = how && !strcmp(how, "static");
	plan.q = malloc(RF_BATCH_RANGES * sizeof *plan.q);
	if (!plan.q) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	plan.n = 0;
	plan.pages = 0;
	for (uint32_t i = 0; i < nlearned && !none && !guess_only; i++) {
		if (!learned_ok(d, &learned[i]) || plan.n == RF_BATCH_RANGES ||
		    plan.pages + learned[i].npages > RF_BATCH_PAGES)
			continue;
		plan.q[plan.n++] = learned[i];
		plan.pages += learned[i].npages;
	}
	plan.learned = plan.n;
	if (!none) {
		add_around(d, d->ctx.rsp, STACK_BELOW, STACK_ABOVE);
		add_around(d, d->fs_base, 1, 1);
		add_around(d, d->ctx_addr, 0, 1);
		/* the smaller the mapping, the likelier each of its pages is needed */
		const struct rf_map *m = rf_desc_maps(d);
		for (uint64_t lim = 4 * RF_PAGE; lim <= STATIC_MAP_MAX; lim *= 4)
			for (uint32_t i = 0; i < d->nmaps; i++)
				if (m[i].kind == RF_MAP_SERVE && m[i].end - m[i].start <= lim)
					add(&m[i], m[i].start, m[i].end);
	}
	if (!send || !plan.n)
		return 0;
	plan.sent = 1;
	return rf_tcp.send_batch(conn, plan.q, plan.n, err, errlen);
}
