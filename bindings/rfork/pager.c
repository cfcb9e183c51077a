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
 */
#include "rdma.h"

#include <errno.h>
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

/* [cstart, cend) of a process holds the parent's pages from pstart on, or
 * zeros (pstart == 0: discarded since). */
struct seg {
	uint64_t cstart, cend, pstart;
};

#define NSTREAMS 8
/* One process served: the resumed child (clients[0]) or one it forked. */
struct client {
	int uffd;
	uint32_t id;            /* flights name their client by it */
	struct seg *segs;
	int nsegs, capsegs;
	/* Sequential runs read at once (a program reading two arrays, or
	 * ASan's shadow beside the data), each on its own: next is right
	 * after its last window (a fault there is sequential), win the pages
	 * of that window; a new run takes the place of the oldest. */
	struct stream {
		uint64_t next;
		uint32_t win;
	} streams[NSTREAMS];
	int oldest;
	uint64_t marker;        /* the page of a sequential window held back (0: none) */
	int marker_stream;      /* the run it belongs to */
	char *marker_page;      /* its contents */
};

#define MAX_CLIENTS 256
#define CHUNK 64            /* pages read and installed at a time */
static struct client clients[MAX_CLIENTS];
static int nclients;
static uint32_t client_ids;
static pid_t child_pid;
static const struct rf_transport *T = &rf_tcp;   /* or rf_rdma */
static struct rf_conn *conn;
static char *buf;           /* CHUNK pages (TCP); the landing buffer (RDMA) */
static uint32_t ra_base, ra_max;

/* Answers asked for and not read yet, in order (TCP). */
struct flight {
	uint32_t client;        /* its id; 0: the prefetch batch (clients[0]) */
	uint64_t caddr;         /* child address of its first page */
	uint32_t npages, done;  /* pages asked for, pages read */
	int header, seq, dropped;
	int stream;             /* the sequential run of its client it extends */
};
#define MAX_FLIGHT 64
static struct flight fl[MAX_FLIGHT];
static int fl_head, fl_n;

/* The prefetch batch: installed from the child's first fault on. */
static struct {
	const struct rf_prefetch *p;
	int pending;            /* asked for, not all installed */
	int started;            /* the child faulted: it may be installed */
	int range;              /* ranges before this one are in */
	uint32_t off;           /* pages of this one in */
	double t0;
} pre;

/* KXRUN_RFORK_STATS=1: a line on stderr when the child ends. */
static struct {
	int on;
	long faults, pages, zero, forks, requests, markers, maxwin, dropped;
	double wait_s, batch_s;
} st;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static __attribute__((noreturn)) void kill_child(const char *why)
{
	fprintf(stderr, "kxrun rfork: resumed child %d: %s; the parent's image cannot be "
	        "reached, killing the child\n", child_pid, why);
	kill(child_pid, SIGKILL);
	_exit(1);
}

/* ---- the child's layout -------------------------------------------------------- */

static void add_seg(struct client *c, uint64_t cs, uint64_t ce, uint64_t ps)
{
	if (c->nsegs == c->capsegs) {
		c->capsegs = c->capsegs ? c->capsegs * 2 : 256;
		c->segs = realloc(c->segs, c->capsegs * sizeof *c->segs);
		if (!c->segs)
			kill_child("pager out of memory");
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
				kill_child("pager out of memory");
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

static struct client *client_by_id(uint32_t id)
{
	for (int i = 0; i < nclients; i++)
		if (clients[i].id == id)
			return &clients[i];
	return NULL;
}

/* ---- installing ------------------------------------------------------------------ */

static void wake(int uffd, uint64_t addr)
{
	struct uffdio_range r = {addr, RF_PAGE};
	ioctl(uffd, UFFDIO_WAKE, &r);
}

static void zero_page(int uffd, uint64_t addr)
{
	struct uffdio_zeropage z = {.range = {addr, RF_PAGE}};
	if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0 && errno != EEXIST && errno != EAGAIN &&
	    errno != ENOENT && errno != ESRCH)
		kill_child("UFFDIO_ZEROPAGE failed");
	if (z.zeropage < 0)
		wake(uffd, addr);
}

/* Installs n pages at addr; pages already there are skipped. */
static void install(int uffd, uint64_t addr, const char *src, uint32_t n)
{
	uint32_t done = 0;
	int raced = 0;
	while (done < n) {
		struct uffdio_copy c = {.dst = addr + done * RF_PAGE,
		                        .src = (uintptr_t)(src + done * RF_PAGE),
		                        .len = (n - done) * RF_PAGE};
		if (ioctl(uffd, UFFDIO_COPY, &c) == 0)
			break;
		if (c.copy > 0)
			done += c.copy / RF_PAGE;
		else if (errno == EEXIST)
			done++, raced = 1;   /* present already: skip it */
		else if (errno == EAGAIN) {
			/* The layout is changing: an event (unmap, remap, fork) waits
			 * to be read, and its process waits for us.  Wake whoever
			 * waits on these pages: they fault again after the event. */
			struct uffdio_range r = {addr + done * RF_PAGE, (n - done) * RF_PAGE};
			ioctl(uffd, UFFDIO_WAKE, &r);
			return;
		}
		else if (errno == ENOENT || errno == ESRCH)
			return;              /* unmapped meanwhile, or the process is gone */
		else
			kill_child("UFFDIO_COPY failed");
	}
	if (raced)
		wake(uffd, addr);
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
		install(c->uffd, addr, src, n);
		return;
	}
	if (!c->marker_page) {
		c->marker_page = mmap(NULL, RF_PAGE, PROT_READ | PROT_WRITE,
		                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c->marker_page == MAP_FAILED)
			kill_child("pager out of memory");
	}
	if (c->marker)   /* the last one was never touched: it goes in as it is */
		install(c->uffd, c->marker, c->marker_page, 1);
	uint32_t k = (m - addr) / RF_PAGE;
	install(c->uffd, addr, src, k);
	memcpy(c->marker_page, src + (uint64_t)k * RF_PAGE, RF_PAGE);
	c->marker = m;
	c->marker_stream = f->stream;
	install(c->uffd, m + RF_PAGE, src + (uint64_t)(k + 1) * RF_PAGE, n - k - 1);
}

/* ---- fetching ------------------------------------------------------------------- */

static void read_answer(void);

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

/* n pages of c at addr (inside segment s): asked for (TCP), or read and
 * installed at once (RDMA). */
static void fetch(struct client *c, struct seg *s, uint64_t addr, uint32_t n, int seq,
                  int stream)
{
	char err[256];
	uint64_t paddr = s->pstart + (addr - s->cstart);
	st.requests++;
	st.pages += n;
	if (n > st.maxwin)
		st.maxwin = n;
	if (!T->send_req) {
		double t0 = now_s();
		if (T->read_pages(conn, paddr, buf, n, err, sizeof err) < 0)
			kill_child(err);
		st.wait_s += now_s() - t0;
		install(c->uffd, addr, buf, n);
		return;
	}
	while (fl_n == MAX_FLIGHT)
		read_answer();   /* room first: a fault is never left unanswered */
	if (T->send_req(conn, paddr, n, err, sizeof err) < 0)
		kill_child(err);
	fl[(fl_head + fl_n++) % MAX_FLIGHT] = (struct flight){
		.client = c->id, .caddr = addr, .npages = n, .seq = seq, .stream = stream};
}

/* The next sequential window of run i of c, twice the last. */
static void fetch_next(struct client *c, int i)
{
	struct stream *r = &c->streams[i];
	struct seg *s = find(c, r->next);
	if (!s || !s->pstart || in_flight(c, r->next))
		return;
	uint32_t n = r->win * 2 < ra_max ? r->win * 2 : ra_max;
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
 * read and installed. */
static void read_answer(void)
{
	char err[256];
	struct flight *f = &fl[fl_head];
	const struct rf_page_req *q = f->client == 0 ? &pre.p->q[pre.range] : NULL;
	double t0 = now_s();
	if (!f->header) {
		if (T->recv_reply(conn, f->npages, err, sizeof err) < 0)
			kill_child(err);
		f->header = 1;
	}
	/* the batch a range at a time: ranges are not contiguous */
	uint64_t addr = q ? q->addr + (uint64_t)pre.off * RF_PAGE
	                  : f->caddr + (uint64_t)f->done * RF_PAGE;
	uint32_t n = q ? q->npages - pre.off : f->npages - f->done;
	if (n > CHUNK)
		n = CHUNK;
	if (T->recv_data(conn, buf, (size_t)n * RF_PAGE, err, sizeof err) < 0)
		kill_child(err);
	st.wait_s += now_s() - t0;
	struct client *c = q ? &clients[0] : client_by_id(f->client);
	if (f->dropped || !c)
		st.dropped += n;
	else if (q)
		install(c->uffd, addr, buf, n);
	else
		install_window(c, f, addr, buf, n);
	f->done += n;
	if (q && (pre.off += n) == q->npages) {
		pre.range++;
		pre.off = 0;
	}
	if (f->done < f->npages)
		return;
	if (q) {
		pre.pending = 0;
		st.batch_s = now_s() - pre.t0;
	}
	fl_head = (fl_head + 1) % MAX_FLIGHT;
	fl_n--;
}

/* ---- faults and events ------------------------------------------------------- */

/* 1 when the page at addr of clients[0] comes with the batch (asked for,
 * not in yet). */
static int batch_brings(uint64_t addr)
{
	if (!pre.pending)
		return 0;
	const struct rf_page_req *q = pre.p->q;
	for (int i = pre.range; i < pre.p->n; i++) {
		uint64_t from = q[i].addr + (i == pre.range ? (uint64_t)pre.off * RF_PAGE : 0);
		if (addr >= from && addr < q[i].addr + (uint64_t)q[i].npages * RF_PAGE)
			return 1;
	}
	return 0;
}

/* RDMA: the whole batch read (one-sided) and installed at once. */
static void batch_now(void)
{
	char err[256];
	const struct rf_prefetch *p = pre.p;
	if (T->read_batch(conn, p->q, p->n, buf, err, sizeof err) < 0)
		kill_child(err);
	const char *at = buf;
	for (int i = 0; i < p->n; i++) {
		install(clients[0].uffd, p->q[i].addr, at, p->q[i].npages);
		at += (uint64_t)p->q[i].npages * RF_PAGE;
	}
	pre.pending = 0;
	st.batch_s = now_s() - pre.t0;
}

static void on_fault(struct client *c, uint64_t addr)
{
	addr &= ~(RF_PAGE - 1);
	st.faults++;
	if (c == &clients[0] && pre.pending && !pre.started) {
		pre.started = 1;   /* its ranges are registered now */
		if (!T->send_req)
			batch_now();
	}
	struct seg *s = find(c, addr);
	if (!s || !s->pstart) {
		st.zero++;
		zero_page(c->uffd, addr);
		return;
	}
	if (addr == c->marker) {   /* the child reads on: the next window now */
		install(c->uffd, addr, c->marker_page, 1);
		c->marker = 0;
		st.markers++;
		fetch_next(c, c->marker_stream);
		return;
	}
	if (c == &clients[0] && batch_brings(addr))
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
	uint32_t n = !seq ? ra_base : r->win * 2 < ra_max ? r->win * 2 : ra_max;
	uint64_t end = flight_after(c, addr, s->cend);
	if ((end - addr) / RF_PAGE < n)
		n = (end - addr) / RF_PAGE;
	r->win = n;
	r->next = addr + (uint64_t)n * RF_PAGE;
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
		if (f->client != c->id || f->dropped || !overlaps(f->caddr, f->npages, lo, hi))
			continue;
		f->dropped = 1;
		struct uffdio_range r = {f->caddr, (uint64_t)f->npages * RF_PAGE};
		ioctl(c->uffd, UFFDIO_WAKE, &r);
	}
	int hit = 0;
	for (int i = pre.range; c == &clients[0] && pre.pending && i < pre.p->n && !hit; i++)
		hit = overlaps(pre.p->q[i].addr, pre.p->q[i].npages, lo, hi);
	if (hit) {   /* the rest of the batch goes */
		for (int i = pre.range; i < pre.p->n; i++) {
			struct uffdio_range r = {pre.p->q[i].addr, (uint64_t)pre.p->q[i].npages * RF_PAGE};
			ioctl(c->uffd, UFFDIO_WAKE, &r);
		}
		pre.pending = 0;
		if (fl_n && fl[fl_head].client == 0)
			fl[fl_head].dropped = 1;
	}
	if (c->marker >= lo && c->marker < hi)
		c->marker = 0;
	for (int i = 0; i < NSTREAMS; i++)
		if (c->streams[i].next > lo && c->streams[i].next <= hi)
			c->streams[i].next = 0;
}

static void drop_client(int i)
{
	close(clients[i].uffd);
	free(clients[i].segs);
	if (clients[i].marker_page)
		munmap(clients[i].marker_page, RF_PAGE);
	clients[i] = clients[--nclients];
}

static void on_fork(struct client *c, int ufd)
{
	st.forks++;
	if (nclients == MAX_CLIENTS)
		drop_client(1);   /* the oldest fork: most likely exec'd long ago */
	struct client *n = &clients[nclients++];
	*n = (struct client){.uffd = ufd, .id = ++client_ids};
	for (int i = 0; i < c->nsegs; i++)
		add_seg(n, c->segs[i].cstart, c->segs[i].cend, c->segs[i].pstart);
}

/* A forked process whose memory is gone (exec, exit) leaves its
 * userfaultfd silent forever; ioctls on it then fail with ENOMEM. */
static void reap_forks(void)
{
	for (int i = nclients - 1; i >= 1; i--) {
		struct uffdio_range r = {0x10000, RF_PAGE};
		if (ioctl(clients[i].uffd, UFFDIO_UNREGISTER, &r) < 0 && errno == ENOMEM)
			drop_client(i);
	}
}

static void on_event(struct client *c, struct uffd_msg *u)
{
	switch (u->event) {
	case UFFD_EVENT_PAGEFAULT:
		on_fault(c, u->arg.pagefault.address);
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

/* ---- start and loop ------------------------------------------------------------ */

/* RDMA instead of TCP when asked for; 0, or -1 + err when it must not go
 * on over TCP. */
static int choose_transport(const struct rf_desc *d, const struct rf_pager_opts *o,
                            uint32_t buf_pages, char *info, size_t infolen)
{
	if (!o->rdma)
		return 0;
	int declined;
	struct rf_conn *r = rf_rdma_upgrade(conn, d, o->host, o->required, o->timeout_ms,
	                                    buf_pages, &declined, info, infolen);
	if (r) {
		conn = r;
		T = &rf_rdma;
		snprintf(info, infolen, "%s", T->device(r));
		return 0;
	}
	return o->required || !declined ? -1 : 0;   /* else TCP, info says why */
}

static void print_stats(void)
{
	char how[160];
	T->stats(conn, how, sizeof how);
	fprintf(stderr, "kxrun rfork: pager of child %d: %ld faults, %ld pages fetched in %ld "
	        "requests (largest %ld; %ld read-ahead markers hit; %.1f ms reading answers), "
	        "%ld zero pages, %ld forks, %ld pages dropped; %ld pages prefetched (%d ranges, "
	        "%d learned) in %.1f ms%s\n", child_pid, st.faults, st.pages, st.requests,
	        st.maxwin, st.markers, st.wait_s * 1e3, st.zero, st.forks, st.dropped,
	        pre.p->pages, pre.p->n, pre.p->learned, st.batch_s * 1e3, how);
}

void rf_pager_main(int uffd, pid_t child, const struct rf_desc *d, struct rf_conn *c,
                   int ready_fd, const struct rf_pager_opts *o)
{
	child_pid = child;
	conn = c;
	clients[0] = (struct client){.uffd = uffd, .id = ++client_ids};
	nclients = 1;
	const struct rf_map *m = rf_desc_maps(d);
	for (uint32_t i = 0; i < d->nmaps; i++)
		if (m[i].kind == RF_MAP_SERVE)
			add_seg(&clients[0], m[i].start, m[i].end, m[i].start);
	st.on = getenv("KXRUN_RFORK_STATS") != NULL;
	const char *e = getenv("KXRUN_RFORK_READAHEAD");
	ra_base = e && atoi(e) >= 1 && atoi(e) <= RF_MAX_PAGES ? (uint32_t)atoi(e) : 16;
	e = getenv("KXRUN_RFORK_READAHEAD_MAX");
	ra_max = e && atoi(e) >= 1 && atoi(e) <= RF_MAX_PAGES ? (uint32_t)atoi(e) : RF_MAX_PAGES;
	if (o->rdma && !e)
		ra_max = 256;   /* RDMA lands whole windows in registered (locked) memory */
	if (ra_max < ra_base)
		ra_max = ra_base;
	pre.p = rf_prefetch_plan();
	pre.t0 = now_s();
	/* the answer to the resuming process: 0 and "TRANSPORT\tINFO", or
	 * 1 and why it cannot go on */
	char msg[320], info[256] = "";
	uint32_t need = pre.p->pages > ra_max ? (uint32_t)pre.p->pages : ra_max;
	int bad = choose_transport(d, o, need, info, sizeof info) < 0;
	/* TCP reads a chunk at a time; RDMA lands whole fetches */
	buf = bad ? NULL : T->buffer(conn, T->send_req ? CHUNK : need, info, sizeof info);
	int pidfd = syscall(SYS_pidfd_open, child, 0);
	if (!bad && (!buf || pidfd < 0)) {
		bad = 1;
		if (pidfd < 0)
			snprintf(info, sizeof info, "pidfd_open: %s", strerror(errno));
	}
	if (!o->rdma) {   /* nobody waits for the word: the child is on its way */
		if (bad)
			kill_child(info);
	} else {
		int len = snprintf(msg, sizeof msg, "%c%s\t%s", bad, bad ? "" : T->name, info);
		if (write(ready_fd, msg, len) != len || bad)
			_exit(1);
	}
	close(ready_fd);
	if (pre.p->n) {
		char err[256];
		if (!pre.p->sent && T->send_batch(conn, pre.p->q, pre.p->n, err, sizeof err) < 0)
			kill_child(err);
		pre.pending = 1;
		if (T->send_req)
			fl[fl_n++] = (struct flight){.client = 0, .npages = (uint32_t)pre.p->pages};
	}
	struct uffd_msg msgs[16];
	struct pollfd pf[MAX_CLIENTS + 2];
	double last_reap = now_s(), waiting = 0;
	int timeout_ms = o->timeout_ms;
	for (;;) {
		int can_read = fl_n && (fl[fl_head].client || pre.started || fl[fl_head].dropped);
		if (!can_read)
			waiting = 0;
		else if (!waiting)
			waiting = now_s();
		pf[0] = (struct pollfd){pidfd, POLLIN, 0};
		pf[1] = (struct pollfd){can_read ? T->fd(conn) : -1, POLLIN, 0};
		for (int i = 0; i < nclients; i++)
			pf[i + 2] = (struct pollfd){clients[i].uffd, POLLIN, 0};
		int r = poll(pf, nclients + 2, can_read ? timeout_ms : nclients > 1 ? 1000 : -1);
		if (r < 0 && errno != EINTR)
			kill_child("poll failed");
		if (pf[0].revents) {   /* the child has ended */
			if (st.on)
				print_stats();
			_exit(0);
		}
		if (can_read && now_s() - waiting > timeout_ms / 1e3)
			kill_child("no answer from the holder in time");
		int n = nclients;   /* forks add clients at the end */
		for (int i = 0; r > 0 && i < n; i++) {
			if (!pf[i + 2].revents)
				continue;
			ssize_t got = read(clients[i].uffd, msgs, sizeof msgs);
			if (got < 0 && errno != EAGAIN && errno != EINTR) {
				if (i == 0)
					kill_child("reading the userfaultfd failed");
				continue;
			}
			for (ssize_t k = 0; k < got / (ssize_t)sizeof msgs[0]; k++)
				on_event(&clients[i], &msgs[k]);
		}
		if (can_read && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			read_answer();
			waiting = now_s();
		}
		if (nclients > 1 && now_s() - last_reap > 1) {
			reap_forks();
			last_reap = now_s();
		}
	}
}
