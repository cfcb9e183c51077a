/*
 * pager.c - serves a resumed child's missing pages from the holder.
 *
 * It holds the child's userfaultfd and its own connection to the holder.
 * A fault fetches the page and up to KXRUN_RFORK_READAHEAD - 1 following
 * pages of the same mapping in one request, installs them with UFFDIO_COPY
 * and wakes the child.  The child's own mremap/munmap/madvise(DONTNEED)
 * arrive as events and keep the map "child address -> parent address"
 * true.  A fork() in the child hands over a userfaultfd for the new process
 * (UFFD_EVENT_FORK): its missing pages are served the same way until its
 * memory goes away (exec or exit).  If the holder does not answer, the
 * child is killed with a message: it must never hang or run on wrong memory.
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

/* One process served: the resumed child (clients[0]) or one it forked. */
struct client {
	int uffd;
	struct seg *segs;
	int nsegs, capsegs;
};

#define MAX_CLIENTS 256
static struct client clients[MAX_CLIENTS];
static int nclients;
static pid_t child_pid;
static const struct rf_transport *T = &rf_tcp;   /* or rf_rdma */

/* KXRUN_RFORK_STATS=1: a line on stderr when the child ends. */
static struct {
	int on;
	long faults, pages, zero, forks, prefetched;
	double fetch_s, prefetch_s;
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
static void install(int uffd, uint64_t addr, const char *buf, uint32_t n)
{
	uint32_t done = 0;
	int raced = 0;
	while (done < n) {
		struct uffdio_copy c = {.dst = addr + done * RF_PAGE,
		                        .src = (uintptr_t)(buf + done * RF_PAGE),
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
			 * faulted: the access faults again after the event. */
			wake(uffd, addr);
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

/* Prefetch: the resuming process asks for a batch right after the
 * descriptor (rf_prefetch_request); the pager reads the answer and
 * installs it at the child's first fault (its ranges are registered by
 * then).  What a resumed kxrun touches first is largely in tiny mappings
 * (data, RELRO and .bss of the executable and libraries), the TLS page
 * and the stack around the saved stack pointer: each costed a round trip
 * of its own.  Larger mappings stay lazy: on a VM where a page copied
 * through costs ~15-20 us, taking them whole (up to 1 MiB) was slower. */
#define PREFETCH_MAX_PAGES RF_BATCH_PAGES   /* 8 MiB at most */
#define PREFETCH_MAP_MAX (16UL << 10)       /* mappings up to 16 KiB are taken whole */
#define PREFETCH_STACK_BELOW 8       /* pages below the saved rsp */
#define PREFETCH_STACK_ABOVE 32      /* pages above it: the callers' frames */

static struct {
	struct rf_page_req *q;
	int n, cap;
	long pages;
	char *buf;     /* the transport's buffer, shared with faults */
	int sent;      /* asked for already (TCP, by the resuming process) */
	int pending;   /* fetched, to install at the first fault */
	double t0;     /* when it was asked for */
} pre;

static int prefetched(uint64_t addr)
{
	for (int i = 0; i < pre.n; i++)
		if (addr >= pre.q[i].addr && addr < pre.q[i].addr + pre.q[i].npages * RF_PAGE)
			return 1;
	return 0;
}

/* Adds [a, b) of a served mapping (page aligned), minus what is there. */
static void prefetch_add(uint64_t a, uint64_t b)
{
	for (uint64_t p = a; p < b && pre.pages < PREFETCH_MAX_PAGES; p += RF_PAGE) {
		if (prefetched(p))
			continue;
		struct rf_page_req *last = pre.n ? &pre.q[pre.n - 1] : NULL;
		if (last && last->addr + last->npages * RF_PAGE == p && last->npages < RF_MAX_PAGES &&
		    find(&clients[0], p) == find(&clients[0], last->addr)) {
			last->npages++;
		} else {
			if (pre.n == RF_BATCH_RANGES)
				return;
			if (pre.n == pre.cap) {
				pre.cap = pre.cap ? pre.cap * 2 : 64;
				pre.q = realloc(pre.q, pre.cap * sizeof *pre.q);
				if (!pre.q)
					kill_child("pager out of memory");
			}
			pre.q[pre.n++] = (struct rf_page_req){.addr = p, .npages = 1};
		}
		pre.pages++;
	}
}

static void prefetch_around(uint64_t addr, uint64_t below, uint64_t above)
{
	struct seg *s = find(&clients[0], addr & ~(RF_PAGE - 1));
	if (!s)
		return;
	uint64_t a = (addr & ~(RF_PAGE - 1)) - below * RF_PAGE, b = (addr & ~(RF_PAGE - 1)) +
	             above * RF_PAGE;
	prefetch_add(a > s->cstart && a < addr ? a : s->cstart, b < s->cend && b > addr ? b : s->cend);
}

static void setup_segs(const struct rf_desc *d)
{
	if (clients[0].nsegs)
		return;   /* done by rf_prefetch_request before the fork */
	const struct rf_map *m = rf_desc_maps(d);
	for (uint32_t i = 0; i < d->nmaps; i++)
		if (m[i].kind == RF_MAP_SERVE)
			add_seg(&clients[0], m[i].start, m[i].end, m[i].start);
}

int rf_prefetch_request(const struct rf_desc *d, struct rf_conn *conn, int send, char *err,
                        size_t errlen)
{
	pre.t0 = now_s();
	setup_segs(d);
	prefetch_around(d->ctx.rsp, PREFETCH_STACK_BELOW, PREFETCH_STACK_ABOVE);
	prefetch_around(d->fs_base, 1, 1);
	prefetch_around(d->ctx_addr, 0, 1);
	/* the smaller the mapping, the likelier each of its pages is needed */
	for (uint64_t lim = 4 * RF_PAGE; lim <= PREFETCH_MAP_MAX; lim *= 4)
		for (int i = 0; i < clients[0].nsegs; i++) {
			struct seg *s = &clients[0].segs[i];
			if (s->cend - s->cstart <= lim)
				prefetch_add(s->cstart, s->cend);
		}
	if (!send || !pre.n)
		return 0;
	pre.sent = 1;
	return rf_tcp.send_batch(conn, pre.q, pre.n, err, errlen);
}

/* The answer to rf_prefetch_request, in the pager, into buf. */
static void prefetch_fetch(struct rf_conn *conn, char *buf)
{
	if (!pre.n)
		return;
	char err[256];
	if (!pre.sent && T->send_batch(conn, pre.q, pre.n, err, sizeof err) < 0)
		kill_child(err);
	pre.buf = buf;
	if (T->read_batch(conn, pre.q, pre.n, pre.buf, err, sizeof err) < 0)
		kill_child(err);
	pre.pending = 1;
	st.prefetch_s = now_s() - pre.t0;
}

static void prefetch_drop(void)
{
	pre.buf = NULL;   /* the transport's buffer: faults reuse it */
	pre.pending = 0;
}

/* At the child's first fault, before anything else changed its layout. */
static void prefetch_install(void)
{
	const char *at = pre.buf;
	for (int i = 0; i < pre.n; i++) {
		install(clients[0].uffd, pre.q[i].addr, at, pre.q[i].npages);
		at += pre.q[i].npages * RF_PAGE;
	}
	st.prefetched = pre.pages;
	prefetch_drop();
}

static void on_fault(struct client *c, struct rf_conn *conn, uint64_t addr, uint32_t ra,
                     char *buf)
{
	addr &= ~(RF_PAGE - 1);
	struct seg *s = find(c, addr);
	st.faults++;
	if (c == &clients[0] && pre.pending) {
		prefetch_install();
		if (prefetched(addr)) {   /* there now; UFFDIO_COPY woke the child */
			wake(c->uffd, addr);
			return;
		}
	}
	if (!s || !s->pstart) {
		st.zero++;
		zero_page(c->uffd, addr);
		return;
	}
	uint64_t n = (s->cend - addr) / RF_PAGE;
	if (n > ra)
		n = ra;
	char err[256];
	double t0 = st.on ? now_s() : 0;
	if (T->read_pages(conn, s->pstart + (addr - s->cstart), buf, n, err, sizeof err) < 0)
		kill_child(err);
	if (st.on)
		st.fetch_s += now_s() - t0;
	st.pages += n;
	install(c->uffd, addr, buf, n);
}

static void drop_client(int i)
{
	close(clients[i].uffd);
	free(clients[i].segs);
	clients[i] = clients[--nclients];
}

static void on_fork(struct client *c, int ufd)
{
	st.forks++;
	if (nclients == MAX_CLIENTS)
		drop_client(1);   /* the oldest fork: most likely exec'd long ago */
	struct client *n = &clients[nclients++];
	*n = (struct client){.uffd = ufd};
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

static void on_event(struct client *c, struct uffd_msg *u, struct rf_conn *conn, int ra,
                     char *buf)
{
	if (u->event != UFFD_EVENT_PAGEFAULT && pre.pending)
		prefetch_drop();   /* the layout changed first: the batch may be stale */
	switch (u->event) {
	case UFFD_EVENT_PAGEFAULT:
		on_fault(c, conn, u->arg.pagefault.address, ra, buf);
		break;
	case UFFD_EVENT_FORK:
		on_fork(c, (int)u->arg.fork.ufd);
		break;
	case UFFD_EVENT_REMAP: {
		uint64_t from = u->arg.remap.from, to = u->arg.remap.to, len = u->arg.remap.len;
		struct seg *moved = NULL;
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
		carve(c, u->arg.remove.start, u->arg.remove.end, NULL, NULL);
		add_seg(c, u->arg.remove.start, u->arg.remove.end, 0);
		break;
	case UFFD_EVENT_UNMAP:
		carve(c, u->arg.remove.start, u->arg.remove.end, NULL, NULL);
		break;
	}
}

/* RDMA instead of TCP when asked for; 0, or -1 + err when it must not go
 * on over TCP. */
static int choose_transport(struct rf_conn **conn, const struct rf_desc *d,
                            const struct rf_pager_opts *o, uint32_t buf_pages, char *info,
                            size_t infolen)
{
	if (!o->rdma)
		return 0;
	int declined;
	struct rf_conn *r = rf_rdma_upgrade(*conn, d, o->host, o->required, o->timeout_ms,
	                                    buf_pages, &declined, info, infolen);
	if (r) {
		*conn = r;
		T = &rf_rdma;
		snprintf(info, infolen, "%s", T->device(r));
		return 0;
	}
	return o->required || !declined ? -1 : 0;   /* else TCP, info says why */
}

void rf_pager_main(int uffd, pid_t child, const struct rf_desc *d, struct rf_conn *conn,
                   int ready_fd, const struct rf_pager_opts *o)
{
	child_pid = child;
	clients[0].uffd = uffd;
	nclients = 1;
	setup_segs(d);
	st.on = getenv("KXRUN_RFORK_STATS") != NULL;
	const char *e = getenv("KXRUN_RFORK_READAHEAD");
	int ra = e ? atoi(e) : 16;
	if (ra < 1 || ra > RF_MAX_PAGES)
		ra = 16;
	/* the answer to the resuming process: 0 and "TRANSPORT\tINFO", or
	 * 1 and why it cannot go on */
	char msg[320], info[256] = "";
	/* one buffer for the batch and the faults' read-ahead: populated (and,
	 * for RDMA, registered) once */
	uint32_t need = pre.pages > ra ? (uint32_t)pre.pages : (uint32_t)ra;
	int bad = choose_transport(&conn, d, o, need, info, sizeof info) < 0;
	char *buf = bad ? NULL : T->buffer(conn, need, info, sizeof info);
	int pidfd = syscall(SYS_pidfd_open, child, 0);
	if (!bad && (!buf || pidfd < 0)) {
		bad = 1;
		if (pidfd < 0)
			snprintf(info, sizeof info, "pidfd_open: %s", strerror(errno));
	}
	int len = snprintf(msg, sizeof msg, "%c%s\t%s", bad, bad ? "" : T->name, info);
	if (write(ready_fd, msg, len) != len || bad)
		_exit(1);
	close(ready_fd);
	prefetch_fetch(conn, buf);
	struct uffd_msg msgs[16];
	struct pollfd pf[MAX_CLIENTS + 1];
	double last_reap = now_s();
	for (;;) {
		pf[0] = (struct pollfd){pidfd, POLLIN, 0};
		for (int i = 0; i < nclients; i++)
			pf[i + 1] = (struct pollfd){clients[i].uffd, POLLIN, 0};
		int r = poll(pf, nclients + 1, nclients > 1 ? 1000 : -1);
		if (r < 0 && errno != EINTR)
			kill_child("poll failed");
		if (pf[0].revents) {   /* the child has ended */
			char how[160];
			T->stats(conn, how, sizeof how);
			if (st.on)
				fprintf(stderr, "kxrun rfork: pager of child %d: %ld faults, %ld pages "
				        "fetched (%.1f ms waiting on the holder), %ld zero pages, "
				        "%ld forks; %ld pages prefetched (%d ranges) in %.1f ms%s\n",
				        child_pid, st.faults, st.pages, st.fetch_s * 1e3, st.zero, st.forks,
				        st.prefetched, pre.n, st.prefetch_s * 1e3, how);
			_exit(0);
		}
		int n = nclients;   /* forks add clients at the end */
		for (int i = 0; r > 0 && i < n; i++) {
			if (!pf[i + 1].revents)
				continue;
			ssize_t got = read(clients[i].uffd, msgs, sizeof msgs);
			if (got < 0 && errno != EAGAIN && errno != EINTR) {
				if (i == 0)
					kill_child("reading the userfaultfd failed");
				continue;
			}
			for (ssize_t k = 0; k < got / (ssize_t)sizeof msgs[0]; k++)
				on_event(&clients[i], &msgs[k], conn, ra, buf);
		}
		if (nclients > 1 && now_s() - last_reap > 1) {
			reap_forks();
			last_reap = now_s();
		}
	}
}
