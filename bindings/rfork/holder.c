/*
 * holder.c - the process that keeps the parent's memory as it was at
 * prepare (it is a fork of the parent: copy-on-write) and serves it.
 *
 * It must not change that memory: no malloc, no stdio, nothing but
 * syscalls on its own stack and on private mappings made after the fork
 * (errno in the parent's thread-local block is the one exception).
 *
 * Every connection is served at once, none waits for another: sockets are
 * non-blocking, each connection reads its request as its bytes come and
 * sends its answer as the socket takes it (one epoll loop, level
 * triggered, one step per connection and turn).  A child that stalls
 * mid-request or stops reading its pages holds up nobody but itself; it is
 * dropped after HELLO_TIMEOUT_S (hello) or IO_TIMEOUT_S (no progress).
 * Answers go out of the image itself (sendmsg from its pages: no copy
 * here).  The holder logs the first page of each range it serves a child
 * (the page it faulted on) and merges the logs of the first
 * RF_LEARN_CHILDREN into the learned working set (learn.c) that every
 * later child gets with its descriptor.
 */
#include "holder.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HELLO_TIMEOUT_S 5
#define IO_TIMEOUT_S 10
#define EV_LISTEN 0
#define EV_AGENT 1
#define EV_LOCAL 2   /* the local hello's listener (tcp.c) */
#define EV_CONN 3    /* + the connection's slot */

double rf_holder_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int key_equal(const uint8_t *a, const uint8_t *b)
{
	uint8_t diff = 0;   /* constant time: no early exit */
	for (int i = 0; i < 16; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/* The map holding [addr, addr + len) whole, served from here, or NULL. */
static const struct rf_map *served_map(const struct rf_desc *d, uint64_t addr, uint64_t len)
{
	const struct rf_map *m = rf_desc_maps(d);
	uint32_t lo = 0, hi = d->nmaps;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (m[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < d->nmaps && m[lo].start <= addr && addr + len <= m[lo].end &&
	    addr + len > addr && m[lo].kind == RF_MAP_SERVE)
		return &m[lo];
	return NULL;
}

/* ---- output ------------------------------------------------------------------ */

static void watch(struct holder *H, struct hconn *c)
{
	struct epoll_event ev = {.events = c->iovpos < c->niov || c->gone == 1 ? EPOLLOUT : EPOLLIN,
	                         .data.u64 = (uint64_t)c->slot + EV_CONN};
	epoll_ctl(H->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

void rf_hconn_send(struct holder *H, struct hconn *c, int n)
{
	c->iov = c->iovs;
	c->niov = n;
	c->iovpos = 0;
	c->since = rf_holder_now();
	watch(H, c);
}

/* Sends what the socket takes now; 0 (done or more later) or -1. */
static int flush(struct holder *H, struct hconn *c)
{
	while (c->iovpos < c->niov) {
		int n = c->niov - c->iovpos;
		struct msghdr mh = {.msg_iov = c->iov + c->iovpos, .msg_iovlen = n < IOV_MAX ? n : IOV_MAX};
		/* raw: a sanitizer's interceptor would inspect (and object to)
		 * the parent's memory, redzones and all */
		ssize_t k = syscall(SYS_sendmsg, c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (k <= 0)
			return -1;
		c->since = rf_holder_now();
		while (k > 0 || (c->iovpos < c->niov && !c->iov[c->iovpos].iov_len)) {
			struct iovec *v = &c->iov[c->iovpos];
			size_t m = (size_t)k < v->iov_len ? (size_t)k : v->iov_len;
			v->iov_base = (char *)v->iov_base + m;
			v->iov_len -= m;
			k -= m;
			if (!v->iov_len)
				c->iovpos++;
		}
	}
	if (c->gone == 1) {   /* the RDMA agent's death, after the answer in flight */
		uint8_t b = RF_RDMA_GONE;
		ssize_t k = send(c->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		c->gone = 2;
	}
	if (c->closing)
		return -1;
	watch(H, c);
	return 0;
}

/* ---- connections ------------------------------------------------------------- */

static void expect(struct hconn *c, uint32_t len)
{
	c->have = 0;
	c->need = len;
}

static void conn_close(struct holder *H, struct hconn *c)
{
	if (c->learning && c->nlog && H->learned->children < RF_LEARN_CHILDREN) {
		rf_learn_merge(H->learned, c->log, c->nlog);
		H->learned->children++;
	}
	rf_holder_rdma_closed(H, c);
	close(c->fd);
	H->cs[c->slot] = NULL;
	H->n--;
	munmap(c, sizeof *c);
}

static void accept_one(struct holder *H, int listen_fd)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	int slot = 0;
	while (slot < MAX_CONNS && H->cs[slot])
		slot++;
	struct hconn *c = slot < MAX_CONNS ? mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE,
	                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
	                                   : MAP_FAILED;
	if (c == MAP_FAILED) {
		struct rf_reply rep = {.status = RF_EFULL};
		send(fd, &rep, sizeof rep, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	c->slot = slot;
	c->id = ++H->next_id;
	c->since = rf_holder_now();
	expect(c, sizeof c->in.hello);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)slot + EV_CONN};
	if (epoll_ctl(H->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		munmap(c, sizeof *c);
		return;
	}
	H->cs[slot] = c;
	H->n++;
}

/* A whole hello: the descriptor and the learned set, or an error and the
 * end of the connection. */
static int on_hello(struct holder *H, struct hconn *c)
{
	const struct rf_holder_cfg *cfg = H->cfg;
	struct rf_hello *h = &c->in.hello;
	struct rf_reply *rep = &c->hdr.rep;
	if (h->magic != RF_MAGIC)
		return -1;
	*rep = (struct rf_reply){0};
	if (h->version != RF_VERSION)
		rep->status = RF_EVERSION;
	else if (!key_equal(h->key, cfg->key))
		rep->status = RF_EAUTH;
	else if (h->id != cfg->id)
		rep->status = RF_EID;
	c->iovs[0] = (struct iovec){rep, sizeof *rep};
	if (rep->status != RF_OK) {
		c->closing = 1;
		rf_hconn_send(H, c, 1);
		return 0;
	}
	rep->index = (uint32_t)__atomic_add_fetch(&cfg->shared->children, 1, __ATOMIC_SEQ_CST);
	rep->len = cfg->desc->size;
	/* the set as it is now: a merge may change it while this goes out */
	const struct rf_learned *L = H->learned;
	rep->nlearned = L->n;
	rep->learned_pages = L->pages;
	memcpy(c->learned, L->r, L->n * sizeof L->r[0]);
	c->iovs[1] = (struct iovec){(void *)cfg->desc, cfg->desc->size};
	c->iovs[2] = (struct iovec){c->learned, L->n * sizeof L->r[0]};
	c->state = C_SERVING;
	c->learning = cfg->learn && L->children < RF_LEARN_CHILDREN;
	expect(c, sizeof c->in.req.head);
	rf_hconn_send(H, c, 3);
	return 0;
}

/* A served range (page aligned, one mapping, a plain request's size), its
 * pages at iov; its first page (the one the child faulted on, or a
 * window's start) logged for the learned set: logging whole read-ahead
 * windows made a lookup child's set ~1000 pages instead of ~150 for the
 * same faults. */
static int serve_range(struct holder *H, struct hconn *c, const struct rf_page_req *q,
                       struct iovec *iov)
{
	const struct rf_map *m = q->npages && q->npages <= RF_MAX_PAGES && !(q->addr & (RF_PAGE - 1))
	                         ? served_map(H->cfg->desc, q->addr, (uint64_t)q->npages * RF_PAGE)
	                         : NULL;
	if (!m)
		return -1;
	*iov = (struct iovec){(void *)(uintptr_t)q->addr, (size_t)q->npages * RF_PAGE};
	if (c->learning && rf_log_add(c->log, &c->nlog, RF_LEARN_RANGES, m->start, q->addr,
	                              1) < 0)
		c->learning = 0;   /* a log that overflows says little of a start */
	return 0;
}

/* A whole request (its ranges or endpoint included): its answer queued. */
static int on_request(struct holder *H, struct hconn *c)
{
	struct rf_page_req *head = &c->in.req.head;
	struct rf_page_reply *a = &c->hdr.page;
	c->iovs[0] = (struct iovec){a, sizeof *a};
	*a = (struct rf_page_reply){RF_OK, 0};
	if (head->flags == RF_REQ_RDMA) {
		expect(c, sizeof *head);
		return rf_holder_rdma_request(H, c, head->npages != 0);
	}
	if (head->flags == RF_REQ_COUNT) {
		a->npages = (uint32_t)__atomic_add_fetch(&H->cfg->shared->children, 1,
		                                         __ATOMIC_SEQ_CST);
		rf_hconn_send(H, c, 1);
	} else if (head->flags == RF_REQ_BATCH) {
		uint32_t n = head->npages;
		for (uint32_t i = 0; i < n && a->status == RF_OK; i++) {
			if (serve_range(H, c, &c->in.req.q[i], &c->iovs[i + 1]) < 0 ||
			    a->npages + c->in.req.q[i].npages > RF_BATCH_PAGES)
				a->status = RF_ERANGE;
			a->npages += c->in.req.q[i].npages;
		}
		if (a->status != RF_OK)
			a->npages = 0;
		rf_hconn_send(H, c, a->status == RF_OK ? (int)n + 1 : 1);
	} else if (head->flags || serve_range(H, c, head, &c->iovs[1]) < 0) {
		a->status = RF_ERANGE;
		rf_hconn_send(H, c, 1);
	} else {
		a->npages = head->npages;
		rf_hconn_send(H, c, 2);
	}
	expect(c, sizeof *head);
	return 0;
}

/* Reads what has come of the current message; handles it once whole.
 * 0, or -1 to drop the connection. */
static int on_input(struct holder *H, struct hconn *c)
{
	ssize_t k = read(c->fd, (char *)&c->in + c->have, c->need - c->have);
	if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (k <= 0)
		return -1;
	if (!c->have && c->state == C_SERVING)
		c->since = rf_holder_now();   /* a request has begun */
	c->have += k;
	if (c->have < c->need)
		return 0;
	if (c->state == C_HELLO)
		return on_hello(H, c);
	struct rf_page_req *head = &c->in.req.head;
	if (c->need == sizeof *head && head->flags == RF_REQ_BATCH) {
		if (head->npages == 0 || head->npages > RF_BATCH_RANGES)
			return -1;   /* the ranges cannot be skipped reliably */
		c->need += head->npages * sizeof c->in.req.q[0];
		return 0;
	}
	if (c->need == sizeof *head && head->flags == RF_REQ_RDMA) {
		c->need += sizeof c->in.req.ep;
		return 0;
	}
	return on_request(H, c);
}

static void on_conn(struct holder *H, struct hconn *c, uint32_t events)
{
	int r = 0;
	if (c->iovpos < c->niov || c->gone == 1)
		r = flush(H, c);
	else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		r = on_input(H, c);
	if (r == 0 && c->iovpos < c->niov && !(events & EPOLLOUT))
		r = flush(H, c);   /* an answer just queued: most go out at once */
	if (r < 0)
		conn_close(H, c);
}

/* Connections that stopped: a hello never finished, a request or an
 * answer that made no progress. */
static void expire(struct holder *H, double t)
{
	for (int i = 0; i < MAX_CONNS; i++) {
		struct hconn *c = H->cs[i];
		if (!c)
			continue;
		int busy = c->iovpos < c->niov || c->have > 0;
		if ((c->state == C_HELLO && t - c->since > HELLO_TIMEOUT_S) ||
		    (c->state == C_SERVING && busy && t - c->since > IO_TIMEOUT_S))
			conn_close(H, c);
	}
}

void rf_holder_main(const struct rf_holder_cfg *cfg)
{
	struct holder *H = mmap(NULL, sizeof *H + sizeof *H->learned, PROT_READ | PROT_WRITE,
	                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (H == MAP_FAILED)
		_exit(1);
	H->cfg = cfg;
	H->learned = (struct rf_learned *)(H + 1);
	H->agent_fd = -1;
	H->ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_LISTEN};
	if (H->ep < 0 || epoll_ctl(H->ep, EPOLL_CTL_ADD, cfg->listen_fd, &ev) < 0)
		_exit(1);
	ev.data.u64 = EV_LOCAL;
	if (cfg->local_fd >= 0)
		epoll_ctl(H->ep, EPOLL_CTL_ADD, cfg->local_fd, &ev);
	rf_holder_rdma_start(H);
	double idle_s = cfg->idle_s > 0 ? cfg->idle_s : 600, last = rf_holder_now(), checked = last;
	struct epoll_event evs[64];
	for (;;) {
		int r = epoll_wait(H->ep, evs, 64, 1000);
		if (r < 0 && errno != EINTR)
			_exit(1);
		double t = rf_holder_now();
		if (r > 0)
			last = t;
		for (int i = 0; i < r; i++) {
			uint64_t tag = evs[i].data.u64;
			if (tag == EV_LISTEN)
				accept_one(H, cfg->listen_fd);
			else if (tag == EV_AGENT)
				rf_holder_rdma_agent(H);
			else if (tag == EV_LOCAL)
				accept_one(H, cfg->local_fd);
			else if (H->cs[tag - EV_CONN])
				on_conn(H, H->cs[tag - EV_CONN], evs[i].events);
		}
		if (t - checked >= 1) {
			expire(H, t);
			checked = t;
		}
		if (H->n == 0 && t - last > idle_s)
			_exit(0);
	}
}
