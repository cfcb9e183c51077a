/*
 * pager.c - serves a resumed child's missing pages from the holder.
 *
 * It holds the child's userfaultfd and its own connection to the holder.
 * First it installs the prefetch batch (prefetch.c) at the child's first
 * fault, range by range in the order the ranges were touched by earlier
 * children, so the child goes on as soon as its page is there.  A fault
 * outside it fetches a window of the mapping from that page on: 16 pages
 * (KXRUN_RFORK_READAHEAD), doubling while the child runs on sequentially
 * (a fault right past the last window) up to 1024 pages.  A sequential
 * window keeps its middle page back (the marker, as Linux's readahead
 * does): when the child touches it, the pager asks for the next window at
 * once, so the next pages stream in while the child reads on; a child that
 * stops reading stops the stream.
 *
 * Over TCP requests are pipelined: the pager asks without waiting and
 * reads answers in order, a chunk at a time, installing each chunk
 * (UFFDIO_COPY wakes whoever waits on its pages) and reading the
 * userfaultfd between chunks.  Over RDMA (one-sided READs) each fetch is
 * read when asked for.
 *
 * The child's own mremap/munmap/madvise(DONTNEED) arrive as events and
 * keep the map "child address -> parent address" true; answers asked for
 * before such an event are read and dropped (their addresses may mean
 * something else now).  A fork() in the child hands over a userfaultfd for
 * the new process (UFFD_EVENT_FORK): its missing pages are served the same
 * way until its memory goes away (exec or exit).  If the holder does not
 * answer, the child is killed with a message: it must never hang or run on
 * wrong memory.
 *
 * Shared (TCP, the default): the pager also listens for later children of
 * the same parent (pjoin.c) and serves each as a family of its own (the
 * child, what it forks, its batch, its stats, its stderr), keeping the
 * pages it fetched in a cache (pcache.c) from which later children's
 * batches and faults are installed without asking the holder.  It learns,
 * as the holder does, the pages its first children faulted on, and gives
 * later ones what of them it has at their first fault.  A child that ends
 * is forgotten (its pidfd); the pager ends when the holder's connection
 * does (killing its children) or when it has had no child for
 * KXRUN_RFORK_PAGER_IDLE ms (250).
 */
#include "pager.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct client clients[MAX_CLIENTS];
int nclients;
uint32_t client_ids;
struct fam *fams[MAX_FAMS];
int nfams;
uint32_t fam_ids;
const struct rf_desc *desc;
const struct rf_transport *T = &rf_tcp;
struct rf_conn *conn;
char *buf;
struct rf_learned learned_here;
long children_served;
struct flight fl[MAX_FLIGHT];
int fl_head, fl_n;

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct fam *fam_by_id(uint32_t id)
{
	for (int i = 0; i < nfams; i++)
		if (fams[i]->id == id)
			return fams[i];
	return NULL;
}

struct client *client_by_id(uint32_t id)
{
	for (int i = 0; i < nclients; i++)
		if (clients[i].id == id)
			return &clients[i];
	return NULL;
}

/* Kills one child saying why on its stderr; it is forgotten when its
 * pidfd says it has ended. */
void kill_fam(struct fam *f, const char *why)
{
	if (f->killed)
		return;
	f->killed = 1;
	dprintf(f->errfd, "kxrun rfork: resumed child %d: %s; the parent's image cannot be "
	        "reached, killing the child\n", f->pid, why);
	kill(f->pid, SIGKILL);
}

/* The image cannot be reached any more: every child goes. */
void fatal(const char *why)
{
	for (int i = 0; i < nfams; i++)
		kill_fam(fams[i], why);
	_exit(1);
}

/* ---- the child's layout -------------------------------------------------------- */

void add_seg(struct client *c, uint64_t cs, uint64_t ce, uint64_t ps)
{
	if (c->nsegs == c->capsegs) {
		c->capsegs = c->capsegs ? c->capsegs * 2 : 256;
		c->segs = realloc(c->segs, c->capsegs * sizeof *c->segs);
		if (!c->segs)
			fatal("pager out of memory");
	}
	c->segs[c->nsegs++] = (struct seg){cs, ce, ps};
}

/* Cuts [a, b) out of every segment; the pieces inside go to *out (when
 * not NULL, with their parent addresses), the rest stays. */
static void carve(struct client *c, uint64_t a, uint64_t b, struct seg **out, int *nout)
{
	int n = c->nsegs;
	for (int i = 0; i < n; i++) {
		struct seg s = c->segs[i];
		if (s.cend <= a || s.cstart >= b)
			continue;
		uint64_t lo = s.cstart > a ? s.cstart : a, hi = s.cend < b ? s.cend : b;
		if (out) {
			*out = realloc(*out, (*nout + 1) * sizeof **out);
			if (!*out)
				fatal("pager out of memory");
			(*out)[(*nout)++] = (struct seg){lo, hi, s.pstart ? s.pstart + (lo - s.cstart) : 0};
		}
		c->segs[i].cend = lo;   /* the left part, maybe empty */
		if (hi < s.cend)
			add_seg(c, hi, s.cend, s.pstart ? s.pstart + (hi - s.cstart) : 0);
	}
	int k = 0;
	for (int i = 0; i < c->nsegs; i++)
		if (c->segs[i].cend > c->segs[i].cstart)
			c->segs[k++] = c->segs[i];
	c->nsegs = k;
}

static struct seg *find(struct client *c, uint64_t addr)
{
	for (int i = 0; i < c->nsegs; i++)
		if (addr >= c->segs[i].cstart && addr < c->segs[i].cend)
			return &c->segs[i];
	return NULL;
}

/* ---- installing ------------------------------------------------------------------ */

/* Whoever waits on n pages from addr goes on (and faults again if they
 * are still missing). */
static void wake(int uffd, uint64_t addr, uint64_t n)
{
	struct uffdio_range r = {addr, n * RF_PAGE};
	ioctl(uffd, UFFDIO_WAKE, &r);
}

static void zero_page(struct client *c, uint64_t addr)
{
	struct uffdio_zeropage z = {.range = {addr, RF_PAGE}};
	if (ioctl(c->uffd, UFFDIO_ZEROPAGE, &z) < 0 && errno != EEXIST && errno != EAGAIN &&
	    errno != ENOENT && errno != ESRCH)
		kill_fam(c->fam, "UFFDIO_ZEROPAGE failed");
	if (z.zeropage < 0)
		wake(c->uffd, addr, 1);
}

/* Installs n pages at addr; pages already there are skipped. */
static void install(struct client *cl, uint64_t addr, const char *src, uint32_t n)
{
	uint32_t done = 0;
	int raced = 0;
	while (done < n) {
		struct uffdio_copy c = {.dst = addr + done * RF_PAGE,
		                        .src = (uintptr_t)(src + done * RF_PAGE),
		                        .len = (n - done) * RF_PAGE};
		if (ioctl(cl->uffd, UFFDIO_COPY, &c) == 0)
			break;
		if (c.copy > 0)
			done += c.copy / RF_PAGE;
		else if (errno == EEXIST)
			done++, raced = 1;   /* present already: skip it */
		else if (errno == EAGAIN) {
			/* The layout is changing: an event (unmap, remap, fork) waits
			 * to be read, and its process waits for us.  Wake whoever
			 * waits on these pages: they fault again after the event. */
			wake(cl->uffd, addr + done * RF_PAGE, n - done);
			return;
		}
		else if (errno == ENOENT || errno == ESRCH)
			return;              /* unmapped meanwhile, or the process is gone */
		else {
			kill_fam(cl->fam, "UFFDIO_COPY failed");
			return;
		}
	}
	if (raced)
		wake(cl->uffd, addr, 1);
}

/* Maps n cached pages at addr of a child that maps the cache's memfd
 * (read-only until it writes them: then the kernel copies): the pages
 * mapped, or -1 when they must be copied instead. */
static int map_cached(struct client *cl, uint64_t addr, uint32_t n, int quiet)
{
	uint32_t done = 0;
	while (done < n) {
		struct uffdio_continue c = {.range = {addr + done * RF_PAGE, (n - done) * RF_PAGE},
		                            .mode = quiet ? UFFDIO_CONTINUE_MODE_DONTWAKE : 0};
		if (ioctl(cl->uffd, UFFDIO_CONTINUE, &c) == 0)
			return n;
		if (c.mapped > 0) {
			done += c.mapped / RF_PAGE;
		} else if (errno == EEXIST) {
			/* a page mapped already: the rest of its run most likely
			 * too (a batch, a window); what is not faults again */
			wake(cl->uffd, addr + done * RF_PAGE, 1);
			break;
		} else if (errno == EAGAIN) {   /* as in install() */
			wake(cl->uffd, addr + done * RF_PAGE, n - done);
			break;
		} else if (errno == ENOENT || errno == ESRCH) {
			break;
		} else if (!done && errno == EINVAL) {
			return -1;   /* not a mapping of the memfd after all */
		} else {
			kill_fam(cl->fam, "UFFDIO_CONTINUE failed");
			break;
		}
	}
	return done;
}

/* Installs what the cache has of n pages at addr (inside segment s) from
 * addr on; the pages it had.  The first is copied when the child writes
 * it (mapped, it would fault again to be copied).  quiet: mapped without
 * waking the child (a batch: it goes on once its own page is in, instead
 * of faulting on the batch's next pages while they go in). */
static uint32_t from_cache(struct client *c, const struct seg *s, uint64_t addr, uint32_t n,
                           int write, int quiet)
{
	uint32_t done = 0, k;
	const char *src;
	int mapped, m;
	if (c->fam->flags & RF_JOIN_NOCACHE)
		return 0;
	while (done < n && (k = rf_cache_run(s->pstart + (addr - s->cstart) + done * RF_PAGE,
	                                     n - done, &src, &mapped))) {
		int copy = write && !done;
		if (copy)
			k = 1;
		/* a page moved since (mremap) is where the kernel moved its
		 * file offset too: mapping it brings the right one */
		if (copy || !mapped || !c->fam->mapped ||
		    (m = map_cached(c, addr + done * RF_PAGE, k, quiet)) < 0)
			install(c, addr + done * RF_PAGE, src, k);
		else
			c->fam->continued += m;
		done += k;
	}
	c->fam->cached += done;
	return done;
}

/* The page a sequential window holds back, or 0. */
static uint64_t marker_of(const struct flight *f)
{
	return f->seq && f->npages >= 8 ? f->caddr + (uint64_t)(f->npages / 2) * RF_PAGE : 0;
}

/* Installs n pages of a window at addr, holding back its marker page. */
static void install_window(struct client *c, const struct flight *f, uint64_t addr,
                           const char *src, uint32_t n)
{
	uint64_t m = marker_of(f);
	if (!m || m < addr || m >= addr + (uint64_t)n * RF_PAGE) {
		install(c, addr, src, n);
		return;
	}
	if (!c->marker_page) {
		c->marker_page = mmap(NULL, RF_PAGE, PROT_READ | PROT_WRITE,
		                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c->marker_page == MAP_FAILED)
			fatal("pager out of memory");
	}
	if (c->marker)   /* the last one was never touched: it goes in as it is */
		install(c, c->marker, c->marker_page, 1);
	uint32_t k = (m - addr) / RF_PAGE;
	install(c, addr, src, k);
	memcpy(c->marker_page, src + (uint64_t)k * RF_PAGE, RF_PAGE);
	c->marker = m;
	c->marker_stream = f->stream;
	install(c, m + RF_PAGE, src + (uint64_t)(k + 1) * RF_PAGE, n - k - 1);
}

/* ---- fetching ------------------------------------------------------------------- */

/* The answer in flight that brings c's page at addr, or NULL. */
static struct flight *in_flight(const struct client *c, uint64_t addr)
{
	for (int i = 0; i < fl_n; i++) {
		struct flight *f = &fl[(fl_head + i) % MAX_FLIGHT];
		if (f->client == c->id && !f->dropped &&
		    addr >= f->caddr + (uint64_t)f->done * RF_PAGE &&
		    addr < f->caddr + (uint64_t)f->npages * RF_PAGE)
			return f;
	}
	return NULL;
}

/* The first address at or after addr that c has in flight, or end. */
static uint64_t flight_after(const struct client *c, uint64_t addr, uint64_t end)
{
	for (int i = 0; i < fl_n; i++) {
		const struct flight *f = &fl[(fl_head + i) % MAX_FLIGHT];
		if (f->client == c->id && !f->dropped && f->caddr >= addr && f->caddr < end)
			end = f->caddr;
	}
	return end;
}

void push_flight(struct flight f)
{
	while (fl_n == MAX_FLIGHT)
		read_answer();   /* room first: a fault is never left unanswered */
	fl[(fl_head + fl_n++) % MAX_FLIGHT] = f;
}

/* n pages of c at addr (inside segment s): asked for (TCP), or read and
 * installed at once (RDMA). */
static void fetch(struct client *c, struct seg *s, uint64_t addr, uint32_t n, int seq,
                  int stream)
{
	char err[256];
	struct fam *F = c->fam;
	uint64_t paddr = s->pstart + (addr - s->cstart);
	F->requests++;
	F->pages += n;
	if (n > F->maxwin)
		F->maxwin = n;
	if (!T->send_req) {
		double t0 = now_s();
		if (T->read_pages(conn, paddr, buf, n, err, sizeof err) < 0)
			fatal(err);
		F->wait_s += now_s() - t0;
		install(c, addr, buf, n);
		return;
	}
	if (T->send_req(conn, paddr, n, err, sizeof err) < 0)
		fatal(err);
	push_flight((struct flight){.client = c->id, .fam = F->id, .caddr = addr, .paddr = paddr,
	                            .npages = n, .seq = seq, .stream = stream});
}

/* The next sequential window of run i of c, twice the last. */
static void fetch_next(struct client *c, int i)
{
	struct stream *r = &c->streams[i];
	struct seg *s = find(c, r->next);
	if (!s || !s->pstart || in_flight(c, r->next))
		return;
	uint32_t n = r->win * 2 < c->fam->ra_max ? r->win * 2 : c->fam->ra_max;
	uint64_t end = flight_after(c, r->next, s->cend);
	if ((end - r->next) / RF_PAGE < n)
		n = (end - r->next) / RF_PAGE;
	if (!n)
		return;
	r->win = n;
	fetch(c, s, r->next, n, 1, i);
	r->next += (uint64_t)n * RF_PAGE;
}

/* One step of the answer at the head: its header, or a chunk of its pages
 * read, kept in the cache and installed. */
void read_answer(void)
{
	char err[256];
	struct flight *f = &fl[fl_head];
	struct fam *F = fam_by_id(f->fam);
	const struct rf_page_req *q = f->q ? &f->q[f->range] : NULL;
	double t0 = now_s();
	if (!f->header) {
		if (T->recv_reply(conn, f->npages, err, sizeof err) < 0)
			fatal(err);
		f->header = 1;
	}
	/* the batch a range at a time: ranges are not contiguous */
	uint64_t addr = q ? q->addr + (uint64_t)f->off * RF_PAGE
	                  : f->caddr + (uint64_t)f->done * RF_PAGE;
	uint32_t n = q ? q->npages - f->off : f->npages - f->done;
	if (n > CHUNK)
		n = CHUNK;
	if (T->recv_data(conn, buf, (size_t)n * RF_PAGE, err, sizeof err) < 0)
		fatal(err);
	rf_cache_put(q ? addr : f->paddr + (uint64_t)f->done * RF_PAGE, buf, n);
	struct client *c = !F ? NULL : q ? client_by_id(F->root) : client_by_id(f->client);
	if (F)
		F->wait_s += now_s() - t0;
	if (f->dropped || !c) {
		if (F)
			F->dropped += n;
	} else if (q) {
		if (F->started)   /* else its ranges may not be registered yet: from
		                   * the cache (or asked again) at its first fault */
			install(c, addr, buf, n);
	} else {
		install_window(c, f, addr, buf, n);
	}
	f->done += n;
	if (q && (f->off += n) == q->npages) {
		f->range++;
		f->off = 0;
	}
	if (f->done < f->npages)
		return;
	if (q) {
		if (F && !f->dropped) {
			F->pending--;
			F->batch_s = now_s() - F->t0;
		}
		free(f->q);
	}
	fl_head = (fl_head + 1) % MAX_FLIGHT;
	fl_n--;
}

/* ---- the batch ---------------------------------------------------------------- */

/* 1 when the page at addr of F comes with a batch (asked for, not in yet). */
static int batch_brings(const struct fam *F, uint64_t addr)
{
	for (int k = 0; F->pending && k < fl_n; k++) {
		const struct flight *f = &fl[(fl_head + k) % MAX_FLIGHT];
		if (f->fam != F->id || !f->q || f->dropped)
			continue;
		for (int i = f->range; i < f->nq; i++) {
			uint64_t from = f->q[i].addr + (i == f->range ? (uint64_t)f->off * RF_PAGE : 0);
			if (addr >= from && addr < f->q[i].addr + (uint64_t)f->q[i].npages * RF_PAGE)
				return 1;
		}
	}
	return 0;
}

/* Appends page a, of the mapping from lo on, to the ranges q (n of them,
 * *pages in all; a range stays in one mapping, as the holder wants it);
 * 0, or -1 when full. */
static int add_page(struct rf_page_req *q, int *n, long *pages, uint64_t lo, uint64_t a)
{
	struct rf_page_req *last = *n ? &q[*n - 1] : NULL;
	if (*pages == RF_BATCH_PAGES)
		return -1;
	if (last && last->addr >= lo && last->addr + last->npages * RF_PAGE == a &&
	    last->npages < RF_MAX_PAGES)
		last->npages++;
	else if (*n == RF_BATCH_RANGES)
		return -1;
	else
		q[(*n)++] = (struct rf_page_req){.addr = a, .npages = 1};
	++*pages;
	return 0;
}

/* From a (below end), in a's segment (*sp; NULL when none serves a: the
 * next page then): what the cache has, installed; the first address it
 * did not have, or where the segment or end stops. */
static uint64_t map_span(struct fam *F, struct client *c, uint64_t a, uint64_t end,
                         struct seg **sp)
{
	struct seg *s = *sp = find(c, a);
	if (!s || !s->pstart) {
		*sp = NULL;
		return a + RF_PAGE;
	}
	uint64_t to = end < s->cend ? end : s->cend;
	uint32_t k = from_cache(c, s, a, (to - a) / RF_PAGE, 0, 1);
	F->prefetched += k;
	return a + (uint64_t)k * RF_PAGE;
}

static int by_addr(const void *a, const void *b)
{
	const struct rf_page_req *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* The batch's and the learned set's ranges sorted and joined where they
 * touch or overlap, mapped from the cache: one UFFDIO_CONTINUE a run, not
 * one a range (a 64 MiB parent's warm child: 37 ranges, 15 runs).  1 when
 * the cache had every page of them (else start_batch's own pass, which
 * knows what to ask the holder for, goes over them again). */
static int map_joined(struct fam *F, struct client *c, int nlearned)
{
	int n = F->nplan + nlearned, m = 0, all = 1;
	struct rf_page_req *r = malloc((n + 1) * sizeof *r);
	if (!r)
		return 0;
	memcpy(r, F->plan, F->nplan * sizeof *r);
	memcpy(r + F->nplan, learned_here.r, nlearned * sizeof *r);
	qsort(r, n, sizeof *r, by_addr);
	for (int i = 0; i < n; i++) {
		uint64_t end = r[i].addr + (uint64_t)r[i].npages * RF_PAGE;
		uint64_t mend = m ? r[m - 1].addr + (uint64_t)r[m - 1].npages * RF_PAGE : 0;
		if (m && r[i].addr <= mend) {
			if (end > mend)
				r[m - 1].npages = (uint32_t)((end - r[m - 1].addr) / RF_PAGE);
		} else {
			r[m++] = r[i];
		}
	}
	for (int i = 0; i < m && all; i++) {
		uint64_t end = r[i].addr + (uint64_t)r[i].npages * RF_PAGE;
		for (uint64_t a = r[i].addr; a < end && all;) {
			struct seg *s;
			a = map_span(F, c, a, end, &s);   /* nobody's pages: skipped, as below */
			all = !s || a >= (end < s->cend ? end : s->cend);
		}
	}
	free(r);
	return all;
}

/* The child's first fault: its ranges are registered now.  What the cache
 * has of its batch and of the set this pager learned goes in at once; the
 * rest of its batch not on its way already is asked for. */
static void start_batch(struct fam *F, struct client *c)
{
	char err[256];
	F->started = 1;
	struct rf_page_req *miss = NULL;
	int nmiss = 0;
	long mpages = 0;
	/* the batch the resuming process asked for, when it still comes */
	const struct flight *sent = NULL;
	for (int k = 0; F->pending && k < fl_n; k++)
		if (fl[(fl_head + k) % MAX_FLIGHT].fam == F->id && fl[(fl_head + k) % MAX_FLIGHT].q)
			sent = &fl[(fl_head + k) % MAX_FLIGHT];
	int nlearned = F->flags & RF_JOIN_NOLEARN ? 0 : (int)learned_here.n;
	F->learned_used = nlearned;
	long before[3] = {F->prefetched, F->cached, F->continued};
	if (map_joined(F, c, nlearned))
		return;
	F->prefetched = before[0], F->cached = before[1], F->continued = before[2];
	for (int i = 0; i < F->nplan + nlearned; i++) {
		const struct rf_page_req *r = i < F->nplan ? &F->plan[i] : &learned_here.r[i - F->nplan];
		uint64_t end = r->addr + (uint64_t)r->npages * RF_PAGE;
		for (uint64_t a = r->addr; a < end;) {
			struct seg *s;
			uint64_t next = map_span(F, c, a, end, &s);
			if (!s || next > a || next >= (end < s->cend ? end : s->cend)) {
				a = next;
				continue;
			}
			int coming = sent && !sent->dropped && i < F->nplan &&
			             (i > sent->range ||
			              (i == sent->range && a >= r->addr + (uint64_t)sent->off * RF_PAGE));
			/* a batch's child and parent addresses are one: a page
			 * moved since faults as any other */
			if (!coming && i < F->nplan && s->pstart == s->cstart) {
				if (!miss && !(miss = malloc(RF_BATCH_RANGES * sizeof *miss)))
					fatal("pager out of memory");
				add_page(miss, &nmiss, &mpages, s->cstart, a);
			}
			a += RF_PAGE;
		}
	}
	if (!nmiss) {
		free(miss);
		return;
	}
	F->prefetched += mpages;
	if (!T->send_req) {   /* RDMA: read (one-sided) and installed at once */
		if (T->send_batch(conn, miss, nmiss, err, sizeof err) < 0 ||
		    T->read_batch(conn, miss, nmiss, buf, err, sizeof err) < 0)
			fatal(err);
		const char *at = buf;
		for (int i = 0; i < nmiss; i++) {
			install(c, miss[i].addr, at, miss[i].npages);
			at += (uint64_t)miss[i].npages * RF_PAGE;
		}
		free(miss);
		F->batch_s = now_s() - F->t0;
		return;
	}
	if (T->send_batch(conn, miss, nmiss, err, sizeof err) < 0)
		fatal(err);
	F->pending++;
	push_flight((struct flight){.fam = F->id, .npages = (uint32_t)mpages, .q = miss,
	                            .nq = nmiss});
}

/* ---- faults and events ------------------------------------------------------- */

static void on_fault(struct client *c, uint64_t addr, int write)
{
	struct fam *F = c->fam;
	addr &= ~(RF_PAGE - 1);
	F->faults++;
	if (c->root && !F->started)
		start_batch(F, c);
	struct seg *s = find(c, addr);
	if (!s || !s->pstart) {
		F->zero++;
		zero_page(c, addr);
		return;
	}
	if (addr == c->marker) {   /* the child reads on: the next window now */
		install(c, addr, c->marker_page, 1);
		c->marker = 0;
		F->markers++;
		fetch_next(c, c->marker_stream);
		return;
	}
	if (c->root && batch_brings(F, addr))
		return;   /* on its way: installing it wakes the child */
	struct flight *f = in_flight(c, addr);
	if (f) {
		uint64_t m = marker_of(f);
		if (m && addr >= m) {   /* past the marker already: no page held back, */
			f->seq = 0;         /* the next window asked for now */
			fetch_next(c, f->stream);
		}
		return;
	}
	int i = 0;
	while (i < NSTREAMS && c->streams[i].next != addr)
		i++;
	int seq = i < NSTREAMS;
	if (!seq) {   /* a new run, in place of the oldest */
		i = c->oldest;
		c->oldest = (c->oldest + 1) % NSTREAMS;
	}
	struct stream *r = &c->streams[i];
	uint32_t n = !seq ? F->ra_base : r->win * 2 < F->ra_max ? r->win * 2 : F->ra_max;
	uint64_t end = flight_after(c, addr, s->cend);
	if ((end - addr) / RF_PAGE < n)
		n = (end - addr) / RF_PAGE;
	r->win = n;
	/* learned: the page with the first window's read-ahead (a later
	 * child gets them mapped at once instead of faulting for them) */
	uint64_t paddr = s->pstart + (addr - s->cstart);
	if (F->logging && rf_log_add(F->log, &F->nlog, RF_LEARN_RANGES, s->pstart, paddr,
	                             n < F->ra_base ? n : F->ra_base) < 0)
		F->logging = 0;   /* a log that overflows says little of a start */
	uint32_t k = from_cache(c, s, addr, n, write, 0);
	r->next = addr + (uint64_t)(k ? k : n) * RF_PAGE;
	if (!k)
		fetch(c, s, addr, n, seq, i);
}

static int overlaps(uint64_t a, uint64_t n, uint64_t lo, uint64_t hi)
{
	return a < hi && a + n * RF_PAGE > lo;
}

/* [lo, hi) of c changed (unmapped, discarded, moved away or over): what
 * was asked for there is dropped, whoever waits there faults again. */
static void forget_asked(struct client *c, uint64_t lo, uint64_t hi)
{
	for (int i = 0; i < fl_n; i++) {
		struct flight *f = &fl[(fl_head + i) % MAX_FLIGHT];
		if (f->dropped)
			continue;
		if (!f->q && f->client == c->id && overlaps(f->caddr, f->npages, lo, hi)) {
			f->dropped = 1;
			wake(c->uffd, f->caddr, f->npages);
		}
		if (!f->q || !c->root || f->fam != c->fam->id)
			continue;
		int hit = 0;
		for (int k = f->range; k < f->nq && !hit; k++)
			hit = overlaps(f->q[k].addr, f->q[k].npages, lo, hi);
		if (!hit)
			continue;
		for (int k = f->range; k < f->nq; k++)   /* the rest of the batch goes */
			wake(c->uffd, f->q[k].addr, f->q[k].npages);
		f->dropped = 1;
		c->fam->pending--;
	}
	if (c->marker >= lo && c->marker < hi)
		c->marker = 0;
	for (int i = 0; i < NSTREAMS; i++)
		if (c->streams[i].next > lo && c->streams[i].next <= hi)
			c->streams[i].next = 0;
}

void drop_client(int i)
{
	close(clients[i].uffd);
	free(clients[i].segs);
	if (clients[i].marker_page)
		munmap(clients[i].marker_page, RF_PAGE);
	clients[i] = clients[--nclients];
}

static void on_fork(struct client *c, int ufd)
{
	struct fam *F = c->fam;
	F->forks++;
	if (nclients == MAX_CLIENTS) {   /* the oldest fork: most likely exec'd long ago */
		int i = 0;
		while (i < nclients && (clients[i].root || clients[i].id == c->id))
			i++;
		if (i == nclients) {
			close(ufd);
			kill_fam(F, "too many processes for one pager");
			return;
		}
		uint32_t id = c->id;
		drop_client(i);
		c = client_by_id(id);
	}
	struct client *n = &clients[nclients++];
	*n = (struct client){.uffd = ufd, .id = ++client_ids, .fam = F, .seq = (uint32_t)F->forks};
	for (int i = 0; i < c->nsegs; i++)
		add_seg(n, c->segs[i].cstart, c->segs[i].cend, c->segs[i].pstart);
}

/* A forked process whose memory is gone (exec, exit) leaves its
 * userfaultfd silent forever; ioctls on it then fail with ENOMEM. */
void reap_forks(void)
{
	for (int i = nclients - 1; i >= 0; i--) {
		struct uffdio_range r = {0x10000, RF_PAGE};
		if (!clients[i].root && ioctl(clients[i].uffd, UFFDIO_UNREGISTER, &r) < 0 &&
		    errno == ENOMEM)
			drop_client(i);
	}
}

void on_event(struct client *c, struct uffd_msg *u)
{
	switch (u->event) {
	case UFFD_EVENT_PAGEFAULT:
		on_fault(c, u->arg.pagefault.address,
		         !!(u->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE));
		break;
	case UFFD_EVENT_FORK:
		on_fork(c, (int)u->arg.fork.ufd);
		break;
	case UFFD_EVENT_REMAP: {
		uint64_t from = u->arg.remap.from, to = u->arg.remap.to, len = u->arg.remap.len;
		struct seg *moved = NULL;
		forget_asked(c, from, from + len);
		forget_asked(c, to, to + len);
		int nmoved = 0;
		carve(c, to, to + len, NULL, NULL);
		carve(c, from, from + len, &moved, &nmoved);
		for (int k = 0; k < nmoved; k++)
			add_seg(c, moved[k].cstart - from + to, moved[k].cend - from + to,
			        moved[k].pstart);
		free(moved);
		break;
	}
	case UFFD_EVENT_REMOVE:
		forget_asked(c, u->arg.remove.start, u->arg.remove.end);
		carve(c, u->arg.remove.start, u->arg.remove.end, NULL, NULL);
		add_seg(c, u->arg.remove.start, u->arg.remove.end, 0);
		break;
	case UFFD_EVENT_UNMAP:
		forget_asked(c, u->arg.remove.start, u->arg.remove.end);
		carve(c, u->arg.remove.start, u->arg.remove.end, NULL, NULL);
		break;
	}
}

