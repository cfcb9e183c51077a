/*
 * pager.c - serves a resumed child's missing pages from the holder.
 *
 * It holds the child's userfaultfd and its own connection to the holder.
 * A fault fetches the page and up to KXRUN_RFORK_READAHEAD - 1 following
 * pages of the same mapping in one request, installs them with UFFDIO_COPY
 * and wakes the child.  The child's own mremap/munmap/madvise(DONTNEED)
 * arrive as events and keep the map of "child address -> parent address"
 * true.  If the holder does not answer, the child is killed with a message:
 * it must never hang or run on wrong memory.
 */
#include "internal.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* [cstart, cend) of the child holds the parent's pages from pstart on, or
 * zeros (pstart == 0: discarded since). */
struct seg {
	uint64_t cstart, cend, pstart;
};

/* KXRUN_RFORK_STATS=1: a line on stderr when the child ends. */
static struct {
	int on;
	long faults, pages, zero;
	double fetch_s;
} st;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct seg *segs;
static int nsegs, capsegs;
static pid_t child_pid;

static __attribute__((noreturn)) void kill_child(const char *why)
{
	fprintf(stderr, "kxrun rfork: resumed child %d: %s; the parent's image cannot be "
	        "reached, killing the child\n", child_pid, why);
	kill(child_pid, SIGKILL);
	_exit(1);
}

static void add_seg(uint64_t cs, uint64_t ce, uint64_t ps)
{
	if (nsegs == capsegs) {
		capsegs = capsegs ? capsegs * 2 : 256;
		segs = realloc(segs, capsegs * sizeof *segs);
		if (!segs)
			kill_child("pager out of memory");
	}
	segs[nsegs++] = (struct seg){cs, ce, ps};
}

/* Cuts [a, b) out of every segment; the pieces inside go to *out (when
 * not NULL, with their parent addresses), the rest stays. */
static void carve(uint64_t a, uint64_t b, struct seg **out, int *nout)
{
	int n = nsegs;
	for (int i = 0; i < n; i++) {
		struct seg s = segs[i];
		if (s.cend <= a || s.cstart >= b)
			continue;
		uint64_t lo = s.cstart > a ? s.cstart : a, hi = s.cend < b ? s.cend : b;
		if (out) {
			*out = realloc(*out, (*nout + 1) * sizeof **out);
			if (!*out)
				kill_child("pager out of memory");
			(*out)[(*nout)++] = (struct seg){lo, hi, s.pstart ? s.pstart + (lo - s.cstart) : 0};
		}
		/* keep the parts outside [a, b) */
		segs[i].cend = lo;   /* left part, maybe empty */
		if (hi < s.cend)
			add_seg(hi, s.cend, s.pstart ? s.pstart + (hi - s.cstart) : 0);
	}
	int k = 0;
	for (int i = 0; i < nsegs; i++)
		if (segs[i].cend > segs[i].cstart)
			segs[k++] = segs[i];
	nsegs = k;
}

static struct seg *find(uint64_t addr)
{
	for (int i = 0; i < nsegs; i++)
		if (addr >= segs[i].cstart && addr < segs[i].cend)
			return &segs[i];
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
	if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0 && errno != EEXIST)
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
		int rc = ioctl(uffd, UFFDIO_COPY, &c);
		if (rc == 0) {
			done = n;
			break;
		}
		if (c.copy > 0)
			done += c.copy / RF_PAGE;
		else if (c.copy == -EEXIST || errno == EEXIST)
			done++, raced = 1;   /* present already: skip it */
		else if (errno == EAGAIN)
			continue;            /* the layout is changing: retry */
		else if (errno == ENOENT || errno == ESRCH)
			return;              /* unmapped meanwhile or child gone */
		else
			kill_child("UFFDIO_COPY failed");
	}
	if (raced)
		wake(uffd, addr);
}

static void on_fault(int uffd, struct rf_conn *conn, uint64_t addr, uint32_t ra, char *buf)
{
	addr &= ~(RF_PAGE - 1);
	struct seg *s = find(addr);
	st.faults++;
	if (!s || !s->pstart) {
		st.zero++;
		zero_page(uffd, addr);
		return;
	}
	uint64_t n = (s->cend - addr) / RF_PAGE;
	if (n > ra)
		n = ra;
	char err[256];
	double t0 = st.on ? now_s() : 0;
	if (rf_tcp.read_pages(conn, s->pstart + (addr - s->cstart), buf, n, err, sizeof err) < 0)
		kill_child(err);
	if (st.on)
		st.fetch_s += now_s() - t0;
	st.pages += n;
	install(uffd, addr, buf, n);
}

void rf_pager_main(int uffd, pid_t child, const struct rf_desc *d, struct rf_conn *conn,
                   int ready_fd)
{
	child_pid = child;
	const struct rf_map *m = rf_desc_maps(d);
	for (uint32_t i = 0; i < d->nmaps; i++)
		if (m[i].kind == RF_MAP_SERVE)
			add_seg(m[i].start, m[i].end, m[i].start);
	st.on = getenv("KXRUN_RFORK_STATS") != NULL;
	const char *e = getenv("KXRUN_RFORK_READAHEAD");
	int ra = e ? atoi(e) : 16;
	if (ra < 1 || ra > RF_MAX_PAGES)
		ra = 16;
	char *buf = malloc(RF_MAX_PAGES * RF_PAGE);
	int pidfd = syscall(SYS_pidfd_open, child, 0);
	char ok = 0;
	if (!buf || pidfd < 0 || write(ready_fd, &ok, 1) != 1)
		_exit(1);
	close(ready_fd);
	struct uffd_msg msgs[16];
	for (;;) {
		struct pollfd pf[2] = {{uffd, POLLIN, 0}, {pidfd, POLLIN, 0}};
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			kill_child("poll failed");
		}
		if (pf[1].revents) {   /* the child has ended */
			if (st.on)
				fprintf(stderr, "kxrun rfork: pager of child %d: %ld faults, %ld pages "
				        "fetched (%.1f ms waiting on the holder), %ld zero pages\n",
				        child_pid, st.faults, st.pages, st.fetch_s * 1e3, st.zero);
			_exit(0);
		}
		ssize_t got = read(uffd, msgs, sizeof msgs);
		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			kill_child("reading the userfaultfd failed");
		}
		for (ssize_t i = 0; i < got / (ssize_t)sizeof msgs[0]; i++) {
			struct uffd_msg *u = &msgs[i];
			switch (u->event) {
			case UFFD_EVENT_PAGEFAULT:
				on_fault(uffd, conn, u->arg.pagefault.address, ra, buf);
				break;
			case UFFD_EVENT_REMAP: {
				uint64_t from = u->arg.remap.from, to = u->arg.remap.to,
				         len = u->arg.remap.len;
				struct seg *moved = NULL;
				int nmoved = 0;
				carve(to, to + len, NULL, NULL);
				carve(from, from + len, &moved, &nmoved);
				for (int k = 0; k < nmoved; k++)
					add_seg(moved[k].cstart - from + to, moved[k].cend - from + to,
					        moved[k].pstart);
				free(moved);
				break;
			}
			case UFFD_EVENT_REMOVE:
				carve(u->arg.remove.start, u->arg.remove.end, NULL, NULL);
				add_seg(u->arg.remove.start, u->arg.remove.end, 0);
				break;
			case UFFD_EVENT_UNMAP:
				carve(u->arg.remove.start, u->arg.remove.end, NULL, NULL);
				break;
			}
		}
	}
}
