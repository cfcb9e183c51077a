/*
 * rdma.c - the child's side of the RDMA RC transport: one queue pair to the
 * holder's agent, pages read with one-sided RDMA READs into a registered
 * landing buffer (see rdma.h for the design).  The TCP connection that
 * fetched the descriptor stays: pages outside the agent's ranges come over
 * it, and its closing tells the pager at once that the holder is gone.
 */
#include "rdma.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PIECES RF_MAX_PAGES   /* a piece is at least a page */
#define QP_DEPTH 512
#define MAX_RANGES (1u << 24)

struct rdma_conn {
	struct rf_conn *tcp;
	int timeout_ms, dead;
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_comp_channel *chan;
	struct ibv_cq *cq;
	struct ibv_qp *qp;
	struct ibv_mr *mr;
	char *buf;
	size_t buflen;
	struct rf_rdma_range *ranges;
	uint32_t nranges, rkey;
	uint64_t next_id;
	int batch_n;   /* ranges of the batch asked for (send_batch) */
	uint64_t pages[3];   /* read so far, by RF_PIECE_* */
	char device[64];
};

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* ---- ranges (pure: tests/unit/test_rfork_rdma.c) -------------------------- */

static const struct rf_map *served_map(const struct rf_desc *d, uint64_t a, uint64_t b)
{
	const struct rf_map *m = rf_desc_maps(d);
	uint32_t lo = 0, hi = d->nmaps;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (m[mid].end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < d->nmaps && m[lo].start <= a && b <= m[lo].end && m[lo].kind == RF_MAP_SERVE
	       ? &m[lo] : NULL;
}

int rf_rdma_info_check(const struct rf_rdma_info *info, const struct rf_rdma_range *r,
                       const struct rf_desc *d, char *err, size_t errlen)
{
	if (info->status != RF_RDMA_OK || info->nranges > MAX_RANGES) {
		snprintf(err, errlen, "bad RDMA answer (status %u, %u ranges)", info->status,
		         info->nranges);
		return -1;
	}
	uint64_t prev = 0;
	for (uint32_t i = 0; i < info->nranges; i++) {
		const struct rf_rdma_range *x = &r[i];
		if (x->start >= x->end || x->start < prev || ((x->start | x->end | x->raddr) &
		    (RF_PAGE - 1)) || x->raddr + (x->end - x->start) < x->raddr ||
		    !served_map(d, x->start, x->end)) {
			snprintf(err, errlen, "bad RDMA range %u: 0x%llx-0x%llx (not sorted, not page "
			         "aligned or outside the parent's served memory)", i,
			         (unsigned long long)x->start, (unsigned long long)x->end);
			return -1;
		}
		prev = x->end;
	}
	return 0;
}

static int add_piece(struct rf_piece *out, int n, int max, uint64_t addr, uint64_t raddr,
                     uint32_t npages, uint32_t kind)
{
	if (n > 0) {
		struct rf_piece *l = &out[n - 1];
		uint64_t lend = l->addr + (uint64_t)l->npages * RF_PAGE;
		if (l->kind == kind && lend == addr &&
		    (kind != RF_PIECE_RDMA || l->raddr + (uint64_t)l->npages * RF_PAGE == raddr)) {
			l->npages += npages;
			return n;
		}
	}
	if (n == max)
		return -1;
	out[n] = (struct rf_piece){addr, kind == RF_PIECE_RDMA ? raddr : 0, npages, kind};
	return n + 1;
}

int rf_rdma_plan(const struct rf_rdma_range *r, uint32_t nranges, uint64_t addr,
                 uint32_t npages, struct rf_piece *out, int max)
{
	uint32_t lo = 0, hi = nranges;
	while (lo < hi) {   /* first range ending after addr */
		uint32_t mid = (lo + hi) / 2;
		if (r[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	uint64_t cur = addr, end = addr + (uint64_t)npages * RF_PAGE;
	int n = 0;
	while (cur < end && n >= 0) {
		if (lo < nranges && r[lo].start <= cur) {
			uint64_t upto = r[lo].end < end ? r[lo].end : end;
			n = add_piece(out, n, max, cur, r[lo].raddr ? r[lo].raddr + (cur - r[lo].start) : 0,
			              (upto - cur) / RF_PAGE, r[lo].raddr ? RF_PIECE_RDMA : RF_PIECE_ZERO);
			if (upto == r[lo].end)
				lo++;
			cur = upto;
		} else {
			uint64_t upto = lo < nranges && r[lo].start < end ? r[lo].start : end;
			n = add_piece(out, n, max, cur, 0, (upto - cur) / RF_PAGE, RF_PIECE_TCP);
			cur = upto;
		}
	}
	return n;
}

/* ---- completions ----------------------------------------------------------- */

static int failed(struct rdma_conn *c, char *err, size_t errlen, const char *fmt, const char *what)
{
	c->dead = 1;
	snprintf(err, errlen, fmt, what);
	return -1;
}

/* Waits for the completion of work request id (earlier unsignaled ones
 * complete before it), with the connection's timeout.  The TCP connection
 * closing means the holder is gone. */
static int wait_for(struct rdma_conn *c, uint64_t id, char *err, size_t errlen)
{
	long long start = now_us(), end = start + (long long)c->timeout_ms * 1000;
	int armed = 0;
	for (;;) {
		struct ibv_wc wc[16];
		int n = ibv_poll_cq(c->cq, 16, wc);
		if (n < 0)
			return failed(c, err, errlen, "RDMA: polling the completion queue failed%s", "");
		int done = 0;
		for (int i = 0; i < n; i++) {
			if (wc[i].status != IBV_WC_SUCCESS)
				return failed(c, err, errlen, "RDMA READ failed: %s (the holder's queue "
				              "pair, its device or the link is gone)",
				              rf_ibv.wc_status_str(wc[i].status));
			done |= wc[i].wr_id == id;
		}
		if (done)
			return 0;
		if (n > 0)
			continue;
		long long t = now_us();
		if (t - start < 30)
			continue;   /* a completion usually comes within microseconds */
		if (!armed) {
			if (ibv_req_notify_cq(c->cq, 0))
				return failed(c, err, errlen, "RDMA: cannot arm the completion queue%s", "");
			armed = 1;
			continue;   /* poll once more: it may have come before arming */
		}
		if (t >= end)
			return failed(c, err, errlen, "no RDMA completion in time%s", " (the holder's "
			              "agent, its device or the link does not answer)");
		struct pollfd pf[2] = {{c->chan->fd, POLLIN, 0}, {rf_tcp.fd(c->tcp), POLLIN, 0}};
		int left = (int)((end - t + 999) / 1000);
		if (poll(pf, 2, left) < 0 && errno != EINTR)
			return failed(c, err, errlen, "RDMA: poll: %s", strerror(errno));
		if (pf[1].revents) {   /* nothing is expected there meanwhile */
			uint8_t b;
			ssize_t k = recv(pf[1].fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
			if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
				return failed(c, err, errlen, "%s", "the holder closed the connection");
			if (k == 1)
				return failed(c, err, errlen, "%s", b == RF_RDMA_GONE
				              ? "the holder's RDMA agent is gone (its queue pairs with it)"
				              : "the holder sent something unasked");
		}
		if (pf[0].revents) {
			struct ibv_cq *cq;
			void *ctx;
			if (rf_ibv.get_cq_event(c->chan, &cq, &ctx) == 0)
				rf_ibv.ack_cq_events(cq, 1);
			armed = 0;
		}
	}
}

/* ---- reads ------------------------------------------------------------------- */

/* Reads n ranges of the image one after the other into buf (inside the
 * landing buffer): RDMA READs posted first, zeros and TCP pieces filled
 * while they fly, then one wait per QP_DEPTH requests. */
static int fetch(struct rdma_conn *c, const struct rf_page_req *q, int n, char *buf,
                 char *err, size_t errlen)
{
	if (c->dead)
		return failed(c, err, errlen, "%s", "the RDMA connection failed earlier");
	struct rf_piece pc[MAX_PIECES];
	struct ibv_send_wr wr[QP_DEPTH];
	struct ibv_sge sge[QP_DEPTH];
	int nwr = 0;
	char *at = buf;
	for (int i = 0; i < n; i++) {
		int np = rf_rdma_plan(c->ranges, c->nranges, q[i].addr, q[i].npages, pc, MAX_PIECES);
		if (np < 0)
			return failed(c, err, errlen, "%s", "RDMA: request split too finely");
		for (int k = 0; k < np; k++) {
			size_t len = (size_t)pc[k].npages * RF_PAGE;
			c->pages[pc[k].kind] += pc[k].npages;
			if (pc[k].kind == RF_PIECE_ZERO) {
				memset(at, 0, len);
			} else if (pc[k].kind == RF_PIECE_TCP) {
				if (rf_tcp.read_pages(c->tcp, pc[k].addr, at, pc[k].npages, err, errlen) < 0)
					return -1;
			} else {
				if (nwr == QP_DEPTH) {   /* the queue is full: drain it */
					struct ibv_send_wr *bad;
					wr[nwr - 1].send_flags = IBV_SEND_SIGNALED;
					if (ibv_post_send(c->qp, wr, &bad))
						return failed(c, err, errlen, "RDMA: cannot post a READ%s", "");
					if (wait_for(c, wr[nwr - 1].wr_id, err, errlen) < 0)
						return -1;
					nwr = 0;
				}
				sge[nwr] = (struct ibv_sge){(uintptr_t)at, (uint32_t)len, c->mr->lkey};
				wr[nwr] = (struct ibv_send_wr){
					.wr_id = ++c->next_id, .sg_list = &sge[nwr], .num_sge = 1,
					.opcode = IBV_WR_RDMA_READ, .next = NULL,
					.wr.rdma = {.remote_addr = pc[k].raddr, .rkey = c->rkey}};
				if (nwr)
					wr[nwr - 1].next = &wr[nwr];
				nwr++;
			}
			at += len;
		}
	}
	if (!nwr)
		return 0;
	struct ibv_send_wr *bad;
	wr[nwr - 1].send_flags = IBV_SEND_SIGNALED;
	if (ibv_post_send(c->qp, wr, &bad))
		return failed(c, err, errlen, "RDMA: cannot post a READ%s", "");
	return wait_for(c, wr[nwr - 1].wr_id, err, errlen);
}

static int in_landing(struct rdma_conn *c, const void *buf, uint64_t npages)
{
	return c->buf && (const char *)buf >= c->buf &&
	       (const char *)buf + npages * RF_PAGE <= c->buf + c->buflen;
}

static int rdma_read_pages(struct rf_conn *cc, uint64_t addr, void *buf, uint32_t npages,
                           char *err, size_t errlen)
{
	struct rdma_conn *c = (struct rdma_conn *)cc;
	if (!in_landing(c, buf, npages))
		return failed(c, err, errlen, "%s", "RDMA: read outside the landing buffer");
	struct rf_page_req q = {.addr = addr, .npages = npages};
	return fetch(c, &q, 1, buf, err, errlen);
}

/* A batch is read when it is read: there is no holder CPU to overlap
 * with, and the pager asks right before it reads. */
static int rdma_send_batch(struct rf_conn *cc, const struct rf_page_req *q, int n, char *err,
                           size_t errlen)
{
	(void)q, (void)err, (void)errlen;
	((struct rdma_conn *)cc)->batch_n = n;
	return 0;
}

static int rdma_read_batch(struct rf_conn *cc, const struct rf_page_req *q, int n, void *buf,
                           char *err, size_t errlen)
{
	struct rdma_conn *c = (struct rdma_conn *)cc;
	uint64_t total = 0;
	for (int i = 0; i < n; i++)
		total += q[i].npages;
	if (n != c->batch_n || !in_landing(c, buf, total))
		return failed(c, err, errlen, "%s", "RDMA: batch read without its request");
	return fetch(c, q, n, buf, err, errlen);
}

/* The landing buffer: registered, populated, at least npages pages. */
static void *rdma_buffer(struct rf_conn *cc, uint64_t npages, char *err, size_t errlen)
{
	struct rdma_conn *c = (struct rdma_conn *)cc;
	size_t len = npages * RF_PAGE;
	if (c->buflen >= len)
		return c->buf;
	if (c->mr)
		rf_ibv.dereg_mr(c->mr);
	if (c->buf)
		munmap(c->buf, c->buflen);
	c->mr = NULL;
	c->buflen = 0;
	c->buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
	              -1, 0);
	if (c->buf == MAP_FAILED) {
		c->buf = NULL;
		snprintf(err, errlen, "RDMA landing buffer: %s", strerror(errno));
		return NULL;
	}
	c->mr = rf_ibv.reg_mr(c->pd, c->buf, len, IBV_ACCESS_LOCAL_WRITE);
	if (!c->mr) {
		snprintf(err, errlen, "RDMA: cannot register the landing buffer (%zu KiB): %s%s",
		         len >> 10, strerror(errno), errno == ENOMEM || errno == EPERM
		         ? " (raise the locked-memory limit: ulimit -l)" : "");
		munmap(c->buf, len);
		c->buf = NULL;
		return NULL;
	}
	c->buflen = len;
	return c->buf;
}

static void rdma_close(struct rf_conn *cc)
{
	struct rdma_conn *c = (struct rdma_conn *)cc;
	if (!c)
		return;
	if (c->qp)
		rf_ibv.destroy_qp(c->qp);
	if (c->cq)
		rf_ibv.destroy_cq(c->cq);
	if (c->chan)
		rf_ibv.destroy_comp_channel(c->chan);
	if (c->mr)
		rf_ibv.dereg_mr(c->mr);
	if (c->buf)
		munmap(c->buf, c->buflen);
	if (c->pd)
		rf_ibv.dealloc_pd(c->pd);
	if (c->ctx)
		rf_ibv.close_device(c->ctx);
	rf_tcp.close(c->tcp);
	free(c->ranges);
	free(c);
}

static int rdma_fd(const struct rf_conn *cc)
{
	return rf_tcp.fd(((const struct rdma_conn *)cc)->tcp);
}

static const char *rdma_name(const struct rf_conn *cc)
{
	return ((const struct rdma_conn *)cc)->device;
}

static void rdma_stats(const struct rf_conn *cc, char *buf, size_t len)
{
	const struct rdma_conn *c = (const struct rdma_conn *)cc;
	snprintf(buf, len, "; over %s: %llu pages by RDMA READ, %llu zeros, %llu over TCP",
	         c->device, (unsigned long long)c->pages[RF_PIECE_RDMA],
	         (unsigned long long)c->pages[RF_PIECE_ZERO],
	         (unsigned long long)c->pages[RF_PIECE_TCP]);
}

const struct rf_transport rf_rdma = {
	.name = "rdma",
	.read_pages = rdma_read_pages,
	.send_batch = rdma_send_batch,
	.read_batch = rdma_read_batch,
	.buffer = rdma_buffer,
	.close = rdma_close,
	.fd = rdma_fd,
	.device = rdma_name,
	.stats = rdma_stats,
};

/* ---- connection ------------------------------------------------------------- */

static int to_rts(struct rdma_conn *c, const struct rf_rdma_port *p, const struct rf_rdma_ep *me,
                  const struct rf_rdma_ep *peer, char *err, size_t errlen)
{
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_RTR,
	                        .path_mtu = peer->mtu < me->mtu ? peer->mtu : me->mtu,
	                        .dest_qp_num = peer->qpn, .rq_psn = peer->psn,
	                        .max_dest_rd_atomic = 1, .min_rnr_timer = 12};
	a.ah_attr.port_num = p->port;
	a.ah_attr.dlid = peer->lid;
	if (!p->ib || peer->gid[0] || peer->gid[10]) {   /* RoCE, or routed IB */
		a.ah_attr.is_global = 1;
		memcpy(a.ah_attr.grh.dgid.raw, peer->gid, 16);
		a.ah_attr.grh.sgid_index = p->gid_index;
		a.ah_attr.grh.hop_limit = 64;
	}
	int r = rf_ibv.modify_qp(c->qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
	                         IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
	                         IBV_QP_MIN_RNR_TIMER);
	if (!r) {
		/* local ACK timeout 4.096 us * 2^15 = 134 ms, 7 retries: a peer
		 * gone shows as an error completion in about a second (a slow
		 * answer only costs a retransmission) */
		a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS, .timeout = 15, .retry_cnt = 7,
		                         .rnr_retry = 7, .sq_psn = me->psn,
		                         .max_rd_atomic = peer->rd_atomic < me->rd_atomic
		                                          ? peer->rd_atomic : me->rd_atomic};
		r = rf_ibv.modify_qp(c->qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
		                     IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
	}
	if (r) {
		snprintf(err, errlen, "RDMA: cannot connect the queue pair on %s port %d: %s", p->name,
		         p->port, strerror(r));
		return -1;
	}
	return 0;
}

/* Asks the holder for its agent's endpoint and ranges on the TCP
 * connection.  1: got them; 0: declined (why in err); -1: error. */
static int exchange(struct rdma_conn *c, const struct rf_rdma_ep *me, int required,
                    struct rf_rdma_info *info, char *err, size_t errlen)
{
	int fd = rf_tcp.fd(c->tcp);
	struct rf_page_req q = {.npages = required ? 1 : 0, .flags = RF_REQ_RDMA};
	char msg[sizeof q + sizeof *me];
	memcpy(msg, &q, sizeof q);
	memcpy(msg + sizeof q, me, sizeof *me);
	if (rf_write_all(fd, msg, sizeof msg) < 0 ||
	    rf_read_all(fd, info, sizeof *info, c->timeout_ms) < 0) {
		snprintf(err, errlen, "RDMA set-up with the holder: %s", errno == ETIMEDOUT
		         ? "no answer in time" : errno == ECONNRESET
		         ? "the holder closed the connection" : strerror(errno));
		return -1;
	}
	info->msg[sizeof info->msg - 1] = 0;
	if (info->status != RF_RDMA_OK) {
		snprintf(err, errlen, "the holder offers no RDMA: %s", info->msg[0] ? info->msg
		         : "no reason given");
		return 0;
	}
	if (info->nranges > MAX_RANGES) {
		snprintf(err, errlen, "RDMA: %u ranges from the holder", info->nranges);
		return -1;
	}
	c->ranges = malloc((info->nranges + 1) * sizeof *c->ranges);
	if (!c->ranges || rf_read_all(fd, c->ranges, info->nranges * sizeof *c->ranges,
	                              c->timeout_ms) < 0) {
		snprintf(err, errlen, "RDMA ranges: %s", c->ranges ? strerror(errno) : "out of memory");
		return -1;
	}
	c->nranges = info->nranges;
	c->rkey = info->rkey;
	return 1;
}

struct rf_conn *rf_rdma_upgrade(struct rf_conn *tcp, const struct rf_desc *d, const char *host,
                                int required, int timeout_ms, uint32_t buf_pages,
                                int *declined, char *err, size_t errlen)
{
	*declined = 0;
	struct rf_rdma_port p;
	struct ibv_context *ctx = NULL;
	if (rf_rdma_pick(host, &p, &ctx, err, errlen) < 0) {
		*declined = 1;   /* nothing was said to the holder */
		return NULL;
	}
	struct rdma_conn *c = calloc(1, sizeof *c);
	if (!c) {
		rf_ibv.close_device(ctx);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->ctx = ctx;
	c->tcp = tcp;
	c->timeout_ms = timeout_ms;
	snprintf(c->device, sizeof c->device, "%s", p.name);
	struct rf_rdma_ep me = p.ep;
	struct rf_rdma_info info;
	c->pd = rf_ibv.alloc_pd(ctx);
	c->chan = c->pd ? rf_ibv.create_comp_channel(ctx) : NULL;
	c->cq = c->chan ? rf_ibv.create_cq(ctx, QP_DEPTH * 2, NULL, c->chan, 0) : NULL;
	struct ibv_qp_init_attr qa = {.send_cq = c->cq, .recv_cq = c->cq, .qp_type = IBV_QPT_RC,
	                              .cap = {.max_send_wr = QP_DEPTH, .max_recv_wr = 1,
	                                      .max_send_sge = 1, .max_recv_sge = 1}};
	c->qp = c->cq ? rf_ibv.create_qp(c->pd, &qa) : NULL;
	if (!c->qp) {
		snprintf(err, errlen, "RDMA: cannot create a queue pair on %s: %s", p.name,
		         strerror(errno));
		goto fail;
	}
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .port_num = p.port};
	if (rf_ibv.modify_qp(c->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
	                     IBV_QP_ACCESS_FLAGS)) {
		snprintf(err, errlen, "RDMA: queue pair to INIT on %s failed", p.name);
		goto fail;
	}
	me.qpn = c->qp->qp_num;
	if (getrandom(&me.psn, sizeof me.psn, 0) != sizeof me.psn)
		me.psn = (uint32_t)now_us();
	me.psn &= 0xffffff;
	int r = exchange(c, &me, required, &info, err, errlen);
	if (r <= 0 || rf_rdma_info_check(&info, c->ranges, d, err, errlen) < 0) {
		*declined = r == 0;
		goto fail;
	}
	/* From here the TCP connection is in step again: a failure to reach
	 * the agent leaves it usable (declined). */
	*declined = 1;
	if (to_rts(c, &p, &me, &info.ep, err, errlen) < 0 ||
	    !rdma_buffer((struct rf_conn *)c, buf_pages ? buf_pages : 1, err, errlen))
		goto fail;
	/* one page as a test: the device must reach the agent */
	for (uint32_t i = 0; i < c->nranges; i++)
		if (c->ranges[i].raddr) {
			struct rf_page_req q = {.addr = c->ranges[i].start, .npages = 1};
			if (fetch(c, &q, 1, c->buf, err, errlen) < 0)
				goto fail;
			break;
		}
	*declined = 0;
	return (struct rf_conn *)c;
fail:
	c->tcp = NULL;   /* the caller's still */
	rdma_close((struct rf_conn *)c);
	return NULL;
}
