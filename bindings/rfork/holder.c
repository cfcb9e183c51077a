/*
 * holder.c - the process that keeps the parent's memory as it was at
 * prepare (it is a fork of the parent: copy-on-write) and serves it.
 *
 * It must not change that memory: no malloc, no stdio, nothing but
 * syscalls on its own stack and on a private mapping made after the fork
 * (errno in the parent's thread-local block is the one exception).
 */
#include "rdma.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define HELLO_TIMEOUT_MS 5000
#define IO_TIMEOUT_MS 10000

struct hconn {
	int fd;
	int serving;   /* 0: hello not yet read; 1: page requests */
	uint32_t id;   /* its number for the RDMA agent */
	int rdma;      /* 1: asked the agent; 2: connected there */
};

/* The RDMA agent (agent.c), as the holder sees it. */
struct hagent {
	int fd;                       /* -1: none (or gone) */
	struct rf_rdma_info ready;    /* status, rkey, ranges count */
	struct rf_rdma_range *ranges; /* mapped when READY came */
	uint64_t ranges_len;
};

static double now_s(void)
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

/* One hello, answered with the descriptor; 1 to go on serving pages, 0 to
 * drop the connection. */
static int on_hello(const struct rf_holder_cfg *cfg, int fd)
{
	struct rf_hello h;
	struct rf_reply rep = {0};
	if (rf_read_all(fd, &h, sizeof h, HELLO_TIMEOUT_MS) < 0 || h.magic != RF_MAGIC)
		return 0;
	if (h.version != RF_VERSION)
		rep.status = RF_EVERSION;
	else if (!key_equal(h.key, cfg->key))
		rep.status = RF_EAUTH;
	else if (h.id != cfg->id)
		rep.status = RF_EID;
	if (rep.status != RF_OK) {
		rf_write_all(fd, &rep, sizeof rep);
		return 0;
	}
	rep.index = (uint32_t)__atomic_add_fetch(&cfg->shared->children, 1, __ATOMIC_SEQ_CST);
	rep.len = cfg->desc->size;
	if (rf_write_all(fd, &rep, sizeof rep) < 0 ||
	    rf_write_all(fd, cfg->desc, cfg->desc->size) < 0)
		return 0;
	return 1;   /* the child's pager goes on with this connection */
}

/* Scratch space for batches, mapped after the fork (not the parent's). */
struct hscratch {
	struct rf_page_req q[RF_BATCH_RANGES];
	struct iovec iov[RF_BATCH_RANGES + 1];
};

/* Sends the iovecs whole (they are modified). */
static int send_all(int fd, struct iovec *iov, int n)
{
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n};
	while (mh.msg_iovlen) {
		/* raw: a sanitizer's interceptor would inspect (and object to)
		 * the parent's memory, redzones and all */
		ssize_t k = syscall(SYS_sendmsg, fd, &mh, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		while (k > 0 || (mh.msg_iovlen && !mh.msg_iov->iov_len)) {   /* skip what went out */
			size_t m = (size_t)k < mh.msg_iov->iov_len ? (size_t)k : mh.msg_iov->iov_len;
			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + m;
			mh.msg_iov->iov_len -= m;
			k -= m;
			if (!mh.msg_iov->iov_len)
				mh.msg_iov++, mh.msg_iovlen--;
		}
	}
	return 0;
}

static int valid_range(const struct rf_holder_cfg *cfg, const struct rf_page_req *q)
{
	return q->npages && q->npages <= RF_MAX_PAGES && !(q->addr & (RF_PAGE - 1)) &&
	       served_map(cfg->desc, q->addr, (uint64_t)q->npages * RF_PAGE);
}

/* A batch: n ranges follow the request; all of their pages in one answer. */
static int on_batch(const struct rf_holder_cfg *cfg, int fd, uint32_t n, struct hscratch *sc)
{
	struct rf_page_reply a = {RF_OK, 0};
	if (n == 0 || n > RF_BATCH_RANGES)
		return -1;   /* the ranges cannot be skipped reliably: drop the connection */
	if (rf_read_all(fd, sc->q, n * sizeof sc->q[0], IO_TIMEOUT_MS) < 0)
		return -1;
	sc->iov[0] = (struct iovec){&a, sizeof a};
	for (uint32_t i = 0; i < n && a.status == RF_OK; i++) {
		if (!valid_range(cfg, &sc->q[i]) || a.npages + sc->q[i].npages > RF_BATCH_PAGES)
			a.status = RF_ERANGE;
		a.npages += sc->q[i].npages;
		sc->iov[i + 1] = (struct iovec){(void *)(uintptr_t)sc->q[i].addr,
		                                (size_t)sc->q[i].npages * RF_PAGE};
	}
	if (a.status != RF_OK) {
		a.npages = 0;
		return rf_write_all(fd, &a, sizeof a);
	}
	return send_all(fd, sc->iov, n + 1);
}

/* ---- RDMA: requests forwarded to the agent --------------------------------- */

static void copy_msg(char *to, size_t cap, const char *from)
{
	size_t i = 0;   /* no stdio here */
	for (; i + 1 < cap && from[i]; i++)
		to[i] = from[i];
	to[i] = 0;
}

static int decline(int fd, uint32_t status, const char *msg)
{
	struct rf_rdma_info a = {.status = status};
	copy_msg(a.msg, sizeof a.msg, msg);
	return rf_write_all(fd, &a, sizeof a);
}

static void agent_gone(const struct rf_holder_cfg *cfg, struct hagent *ag, struct hconn *cs,
                       int n, const char *why)
{
	copy_msg(cfg->shared->rdma_msg, sizeof cfg->shared->rdma_msg, why);
	__atomic_store_n(&cfg->shared->rdma, RF_AGENT_FAILED, __ATOMIC_SEQ_CST);
	if (ag->fd >= 0)
		close(ag->fd);
	ag->fd = -1;
	waitpid(-1, NULL, WNOHANG);
	for (int i = 0; i < n; i++) {
		if (cs[i].rdma == 1)
			decline(cs[i].fd, RF_RDMA_FAILED, why);
		if (cs[i].rdma == 2) {   /* their next READ would wait in vain */
			uint8_t gone = RF_RDMA_GONE;
			rf_write_all(cs[i].fd, &gone, 1);
		}
		cs[i].rdma = 0;
	}
}

/* RF_REQ_RDMA on an authenticated connection: the child's endpoint goes to
 * the agent, whose answer (on_agent) goes back with the rkey and ranges. */
static int on_rdma_request(const struct rf_holder_cfg *cfg, struct hconn *c, int required,
                           struct hagent *ag)
{
	struct rf_rdma_ep ep;
	if (rf_read_all(c->fd, &ep, sizeof ep, IO_TIMEOUT_MS) < 0 || c->rdma)
		return -1;
	int st = __atomic_load_n(&cfg->shared->rdma, __ATOMIC_SEQ_CST);
	if (st == RF_AGENT_NONE)
		return decline(c->fd, RF_RDMA_NONE, "the parent prepared for TCP only "
		               "(transport = \"tcp\")");
	if (st == RF_AGENT_FAILED || ag->fd < 0)
		return decline(c->fd, RF_RDMA_FAILED, cfg->shared->rdma_msg);
	if (st == RF_AGENT_STARTING && !required)
		return decline(c->fd, RF_RDMA_BUSY, "the holder's RDMA agent is still copying "
		               "the image");
	struct rf_agent_msg h = {RF_AG_CONNECT, sizeof ep, c->id, 0};
	if (rf_write_all(ag->fd, &h, sizeof h) < 0 || rf_write_all(ag->fd, &ep, sizeof ep) < 0)
		return decline(c->fd, RF_RDMA_FAILED, "the holder's RDMA agent is gone");
	c->rdma = 1;
	return 0;
}

static void on_agent(const struct rf_holder_cfg *cfg, struct hagent *ag, struct hconn *cs, int n)
{
	struct rf_agent_msg h;
	struct rf_rdma_info info;
	char why[sizeof cfg->shared->rdma_msg];
	if (rf_read_all(ag->fd, &h, sizeof h, IO_TIMEOUT_MS) < 0) {
		agent_gone(cfg, ag, cs, n, "the holder's RDMA agent exited");
		return;
	}
	if (h.type == RF_AG_FAILED && h.len <= sizeof why &&
	    rf_read_all(ag->fd, why, h.len, IO_TIMEOUT_MS) == 0) {
		why[sizeof why - 1] = 0;
		agent_gone(cfg, ag, cs, n, why);
	} else if (h.type == RF_AG_READY && h.len >= sizeof info && !ag->ranges &&
	           rf_read_all(ag->fd, &info, sizeof info, IO_TIMEOUT_MS) == 0 &&
	           h.len - sizeof info == (uint64_t)info.nranges * sizeof *ag->ranges) {
		ag->ranges_len = h.len - sizeof info;
		ag->ranges = mmap(NULL, ag->ranges_len + 1, PROT_READ | PROT_WRITE,
		                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ag->ranges == MAP_FAILED || rf_read_all(ag->fd, ag->ranges, ag->ranges_len,
		                                            IO_TIMEOUT_MS) < 0) {
			ag->ranges = NULL;
			agent_gone(cfg, ag, cs, n, "the holder cannot keep the RDMA agent's ranges");
			return;
		}
		ag->ready = info;
		copy_msg(cfg->shared->rdma_msg, sizeof cfg->shared->rdma_msg, info.msg);
		__atomic_store_n(&cfg->shared->rdma, RF_AGENT_READY, __ATOMIC_SEQ_CST);
	} else if (h.type == RF_AG_CONNECTED && h.len == sizeof info &&
	           rf_read_all(ag->fd, &info, sizeof info, IO_TIMEOUT_MS) == 0) {
		int i = 0;
		while (i < n && cs[i].id != h.conn)
			i++;
		if (i == n || cs[i].rdma != 1) {   /* gone meanwhile */
			struct rf_agent_msg rel = {RF_AG_RELEASE, 0, h.conn, 0};
			if (info.status == RF_RDMA_OK)
				rf_write_all(ag->fd, &rel, sizeof rel);
			return;
		}
		cs[i].rdma = info.status == RF_RDMA_OK ? 2 : 0;
		if (info.status != RF_RDMA_OK) {
			rf_write_all(cs[i].fd, &info, sizeof info);
			return;
		}
		info.nranges = ag->ready.nranges;
		struct iovec iov[2] = {{&info, sizeof info}, {ag->ranges, ag->ranges_len}};
		send_all(cs[i].fd, iov, 2);   /* a failure shows at its next poll */
	} else {
		agent_gone(cfg, ag, cs, n, "the holder's RDMA agent sent nonsense");
	}
}

static void conn_closed(struct hagent *ag, const struct hconn *c)
{
	struct rf_agent_msg rel = {RF_AG_RELEASE, 0, c->id, 0};
	if (c->rdma && ag->fd >= 0)
		rf_write_all(ag->fd, &rel, sizeof rel);
	close(c->fd);
}

/* ---- the loop ------------------------------------------------------------------ */

static int on_page_request(const struct rf_holder_cfg *cfg, struct hconn *c, struct hscratch *sc,
                           struct hagent *ag)
{
	int fd = c->fd;
	struct rf_page_req q;
	if (rf_read_all(fd, &q, sizeof q, IO_TIMEOUT_MS) < 0)
		return -1;
	if (q.flags == RF_REQ_BATCH)
		return on_batch(cfg, fd, q.npages, sc);
	if (q.flags == RF_REQ_RDMA)
		return on_rdma_request(cfg, c, q.npages != 0, ag);
	struct rf_page_reply a = {RF_OK, q.npages};
	if (q.flags || !valid_range(cfg, &q)) {
		a.status = RF_ERANGE;
		return rf_write_all(fd, &a, sizeof a);
	}
	/* The pages go out of this process's own (copy-on-write) memory;
	 * header and pages in one go: one wakeup of the pager, not two. */
	struct iovec iov[2] = {{&a, sizeof a}, {(void *)(uintptr_t)q.addr,
	                                        (size_t)q.npages * RF_PAGE}};
	return send_all(fd, iov, 2);
}

void rf_holder_main(const struct rf_holder_cfg *cfg)
{
	struct hconn *cs = mmap(NULL, MAX_CONNS * sizeof *cs, PROT_READ | PROT_WRITE,
	                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct hscratch *sc = mmap(NULL, sizeof *sc, PROT_READ | PROT_WRITE,
	                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (cs == MAP_FAILED || sc == MAP_FAILED)
		_exit(1);
	struct hagent ag = {.fd = -1};
	if (cfg->rdma) {
		ag.fd = cfg->agent_fd > 0 ? cfg->agent_fd : rf_agent_start(cfg);
		if (ag.fd < 0)
			agent_gone(cfg, &ag, cs, 0, "the holder cannot start its RDMA agent");
	}
	struct pollfd pf[MAX_CONNS + 2];
	int n = 0;
	uint32_t next_id = 0;
	double idle_s = cfg->idle_s > 0 ? cfg->idle_s : 600, last = now_s();
	struct timeval tv = {IO_TIMEOUT_MS / 1000, 0};
	for (;;) {
		pf[0] = (struct pollfd){cfg->listen_fd, POLLIN, 0};
		for (int i = 0; i < n; i++)
			pf[i + 1] = (struct pollfd){cs[i].fd, POLLIN, 0};
		pf[n + 1] = (struct pollfd){ag.fd, POLLIN, 0};   /* -1: ignored */
		int r = poll(pf, n + 2, 1000);
		if (r < 0 && errno != EINTR)
			_exit(1);
		double t = now_s();
		if (r <= 0) {
			if (n == 0 && t - last > idle_s)
				_exit(0);
			continue;
		}
		last = t;
		if (ag.fd >= 0 && pf[n + 1].revents)
			on_agent(cfg, &ag, cs, n);
		for (int i = n - 1; i >= 0; i--) {
			if (!pf[i + 1].revents)
				continue;
			int keep;
			if (!cs[i].serving)
				keep = cs[i].serving = on_hello(cfg, cs[i].fd);
			else
				keep = on_page_request(cfg, &cs[i], sc, &ag) == 0;
			if (!keep) {
				conn_closed(&ag, &cs[i]);
				cs[i] = cs[--n];
			}
		}
		if (pf[0].revents & POLLIN) {
			int fd = accept4(cfg->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0 && n == MAX_CONNS) {
				struct rf_reply rep = {.status = RF_EFULL};
				rf_write_all(fd, &rep, sizeof rep);
				close(fd);
			} else if (fd >= 0) {
				int one = 1;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
				setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
				cs[n++] = (struct hconn){.fd = fd, .id = ++next_id};
			}
		}
	}
}
