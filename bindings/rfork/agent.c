/*
 * agent.c - the holder's RDMA agent (see rdma.h): a copy of the holder
 * that copies the image's populated pages into a buffer of its own while
 * it has changed nothing yet, then registers that buffer for remote READ
 * and connects one responder queue pair per child.  The holder forwards
 * the children's requests (only those of connections that presented the
 * key) over a socketpair.
 */
#include "rdma.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define MAX_RANGES (1 << 20)
#define PM_CHUNK 65536              /* pagemap entries read at a time */
#define SETUP_TIMEOUT_S 60          /* device, registration (a lock held by
                                       another thread of the parent at the
                                       fork would block forever) */

int rf_rdma_ranges_add(uint64_t addr, uint64_t npages, const uint64_t *pagemap, int cont,
                       uint64_t base, uint64_t *copied, struct rf_rdma_range *out, int n,
                       int max)
{
	for (uint64_t i = 0; i < npages;) {
		int have = !pagemap || (pagemap[i] & (PM_PRESENT | PM_SWAPPED));
		uint64_t k = i + 1;
		while (k < npages && pagemap &&
		       !!(pagemap[k] & (PM_PRESENT | PM_SWAPPED)) == have)
			k++;
		uint64_t a = addr + i * RF_PAGE, len = (k - i) * RF_PAGE;
		struct rf_rdma_range *l = n ? &out[n - 1] : NULL;
		if ((i > 0 || cont) && l && l->end == a &&
		    (have ? l->raddr && l->raddr + (l->end - l->start) == base + *copied : !l->raddr)) {
			l->end += len;
		} else {
			if (n == max)
				return -1;
			out[n++] = (struct rf_rdma_range){a, a + len, have ? base + *copied : 0};
		}
		if (have)
			*copied += len;
		i = k;
	}
	return n;
}

/* ---- phase 1: the copy, before anything is allocated -------------------- */

/* Private anonymous memory: a page absent from the page table is a zero
 * page.  Not in a resumed child, whose missing pages are its parent's. */
static int anonymous(const struct rf_desc *d, const struct rf_map *m)
{
	if (m->shared || d->resumed)
		return 0;
	const char *p = m->path ? rf_desc_str(d, m->path) : "";
	return !*p || !strcmp(p, "[heap]") || !strcmp(p, "[stack]") || !strncmp(p, "[anon", 5);
}

struct image {
	struct rf_rdma_range *r;
	int n;
	char *copy;
	uint64_t len;
};

/* Ranges with base RF_PAGE (raddr 0 means zeros), then the copy; a range
 * that cannot be read whole (a file mapping past its end) keeps what was
 * read and leaves the rest to TCP.  0 or -1. */
static int copy_image(const struct rf_desc *d, struct image *im)
{
	im->r = mmap(NULL, MAX_RANGES * sizeof *im->r, PROT_READ | PROT_WRITE,
	             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint64_t *pm = mmap(NULL, PM_CHUNK * sizeof *pm, PROT_READ | PROT_WRITE,
	                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int pmfd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	if (im->r == MAP_FAILED || pm == MAP_FAILED || pmfd < 0 || memfd < 0)
		return -1;
	const struct rf_map *m = rf_desc_maps(d);
	im->n = 0;
	im->len = 0;
	for (uint32_t i = 0; i < d->nmaps; i++) {
		if (m[i].kind != RF_MAP_SERVE || m[i].end - m[i].start > RF_RDMA_MAP_MAX)
			continue;
		int anon = anonymous(d, &m[i]);
		for (uint64_t a = m[i].start; a < m[i].end;) {
			uint64_t np = (m[i].end - a) / RF_PAGE;
			if (np > PM_CHUNK)
				np = PM_CHUNK;
			if (anon && pread(pmfd, pm, np * 8, (a / RF_PAGE) * 8) != (ssize_t)(np * 8))
				return -1;
			im->n = rf_rdma_ranges_add(a, np, anon ? pm : NULL, a > m[i].start, RF_PAGE,
			                           &im->len, im->r, im->n, MAX_RANGES);
			if (im->n < 0) {
				errno = E2BIG;   /* over a million ranges: a very fragmented image */
				return -1;
			}
			a += np * RF_PAGE;
		}
	}
	close(pmfd);
	munmap(pm, PM_CHUNK * sizeof *pm);
	im->copy = im->len ? mmap(NULL, im->len, PROT_READ | PROT_WRITE,
	                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
	if (im->copy == MAP_FAILED)
		return -1;
	/* /proc/self/mem: a page that cannot be read is an error, not a signal */
	int k = 0;
	for (int i = 0; i < im->n; i++) {
		struct rf_rdma_range x = im->r[i];
		if (x.raddr) {
			uint64_t len = x.end - x.start, done = 0;
			char *to = im->copy + (x.raddr - RF_PAGE);
			while (done < len) {
				ssize_t got = syscall(SYS_pread64, memfd, to + done, len - done,
				                      x.start + done);
				if (got <= 0)
					break;
				done += got;
			}
			x.end = x.start + (done & ~(RF_PAGE - 1));
			x.raddr += (uintptr_t)im->copy - RF_PAGE;
		}
		if (x.end > x.start)
			im->r[k++] = x;
	}
	im->n = k;
	close(memfd);
	return 0;
}

/* ---- phase 2: the device ---------------------------------------------------- */

struct agent {
	int fd;
	struct rf_rdma_port port;
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_mr *mr;
	struct { uint32_t conn; struct ibv_qp *qp; } *qps;
	int nqps, capqps;
};

static void send_msg(int fd, uint32_t type, uint32_t conn, const void *a, size_t alen,
                     const void *b, size_t blen)
{
	struct rf_agent_msg h = {type, (uint32_t)(alen + blen), conn, 0};
	if (rf_write_all(fd, &h, sizeof h) < 0 || (alen && rf_write_all(fd, a, alen) < 0) ||
	    (blen && rf_write_all(fd, b, blen) < 0))
		_exit(1);   /* the holder is gone */
}

static __attribute__((noreturn)) void fail(int fd, const char *why)
{
	send_msg(fd, RF_AG_FAILED, 0, why, strlen(why) + 1, NULL, 0);
	_exit(1);
}

/* A responder QP for the child's endpoint; RTR is all a READ target needs. */
static void on_connect(struct agent *ag, uint32_t conn, const struct rf_rdma_ep *peer)
{
	struct rf_rdma_info info = {.status = RF_RDMA_FAILED};
	struct ibv_qp_init_attr qa = {.send_cq = ag->cq, .recv_cq = ag->cq, .qp_type = IBV_QPT_RC,
	                              .cap = {.max_send_wr = 1, .max_recv_wr = 1,
	                                      .max_send_sge = 1, .max_recv_sge = 1}};
	struct ibv_qp *qp = rf_ibv.create_qp(ag->pd, &qa);
	struct rf_rdma_ep me = ag->port.ep;
	if (getrandom(&me.psn, sizeof me.psn, 0) != sizeof me.psn)
		me.psn = conn * 2654435761u;
	me.psn &= 0xffffff;
	if (!qp) {
		snprintf(info.msg, sizeof info.msg, "the holder's agent cannot create a queue pair: %s",
		         strerror(errno));
		goto answer;
	}
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .port_num = ag->port.port,
	                        .qp_access_flags = IBV_ACCESS_REMOTE_READ};
	int r = rf_ibv.modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
	                         IBV_QP_ACCESS_FLAGS);
	if (!r) {
		a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTR,
		                         .path_mtu = peer->mtu < me.mtu ? peer->mtu : me.mtu,
		                         .dest_qp_num = peer->qpn, .rq_psn = peer->psn,
		                         .max_dest_rd_atomic = me.rd_atomic, .min_rnr_timer = 12};
		a.ah_attr.port_num = ag->port.port;
		a.ah_attr.dlid = peer->lid;
		if (!ag->port.ib || peer->gid[0] || peer->gid[10]) {
			a.ah_attr.is_global = 1;
			memcpy(a.ah_attr.grh.dgid.raw, peer->gid, 16);
			a.ah_attr.grh.sgid_index = ag->port.gid_index;
			a.ah_attr.grh.hop_limit = 64;
		}
		r = rf_ibv.modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
		                     IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
		                     IBV_QP_MIN_RNR_TIMER);
	}
	if (r) {
		snprintf(info.msg, sizeof info.msg, "the holder's agent cannot connect a queue pair "
		         "to the child's (%s)", strerror(r));
		rf_ibv.destroy_qp(qp);
		goto answer;
	}
	if (ag->nqps == ag->capqps) {
		ag->capqps = ag->capqps ? ag->capqps * 2 : 64;
		ag->qps = realloc(ag->qps, ag->capqps * sizeof *ag->qps);
		if (!ag->qps)
			fail(ag->fd, "the holder's agent is out of memory");
	}
	ag->qps[ag->nqps].conn = conn;
	ag->qps[ag->nqps++].qp = qp;
	me.qpn = qp->qp_num;
	info.status = RF_RDMA_OK;
	info.ep = me;
	info.rkey = ag->mr->rkey;
answer:
	send_msg(ag->fd, RF_AG_CONNECTED, conn, &info, sizeof info, NULL, 0);
}

static void on_release(struct agent *ag, uint32_t conn)
{
	for (int i = 0; i < ag->nqps; i++)
		if (ag->qps[i].conn == conn) {
			rf_ibv.destroy_qp(ag->qps[i].qp);
			ag->qps[i] = ag->qps[--ag->nqps];
			return;
		}
}

static __attribute__((noreturn)) void agent_main(const struct rf_holder_cfg *cfg, int fd,
                                                 pid_t holder)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != holder)
		_exit(0);
	rf_close_except(&fd, 1);
	struct image im;
	if (copy_image(cfg->desc, &im) < 0) {
		char m[96];
		snprintf(m, sizeof m, "the holder's agent cannot copy the image: %s", strerror(errno));
		fail(fd, m);
	}
	/* From here this process's own image is its business: libibverbs
	 * may allocate. */
	alarm(SETUP_TIMEOUT_S);
	struct agent ag = {.fd = fd};
	char err[200];
	if (rf_rdma_pick(cfg->rdma_host, &ag.port, &ag.ctx, err, sizeof err) < 0)
		fail(fd, err);
	ag.pd = rf_ibv.alloc_pd(ag.ctx);
	ag.cq = ag.pd ? rf_ibv.create_cq(ag.ctx, 16, NULL, NULL, 0) : NULL;
	if (!ag.cq)
		fail(fd, "the holder's agent cannot allocate a protection domain or queue");
	/* one region for the whole copy: never written again, read remotely */
	static char one_page[RF_PAGE];
	ag.mr = rf_ibv.reg_mr(ag.pd, im.len ? im.copy : one_page, im.len ? im.len : RF_PAGE,
	                      IBV_ACCESS_REMOTE_READ);
	if (!ag.mr) {
		snprintf(err, sizeof err, "the holder's agent cannot register %llu MiB on %s: %s%s",
		         (unsigned long long)(im.len >> 20), ag.port.name, strerror(errno),
		         errno == ENOMEM || errno == EPERM ? " (raise the locked-memory limit: "
		         "ulimit -l)" : "");
		fail(fd, err);
	}
	alarm(0);
	struct rf_rdma_info ready = {.status = RF_RDMA_OK, .nranges = im.n, .ep = ag.port.ep,
	                             .rkey = ag.mr->rkey};
	snprintf(ready.msg, sizeof ready.msg, "%s port %d, %llu MiB registered", ag.port.name,
	         ag.port.port, (unsigned long long)(im.len >> 20));
	send_msg(fd, RF_AG_READY, 0, &ready, sizeof ready, im.r, im.n * sizeof *im.r);
	for (;;) {
		struct rf_agent_msg h;
		struct rf_rdma_ep ep;
		if (rf_read_all(fd, &h, sizeof h, -1) < 0)
			_exit(0);   /* the holder is gone */
		if (h.type == RF_AG_CONNECT && h.len == sizeof ep) {
			if (rf_read_all(fd, &ep, sizeof ep, -1) < 0)
				_exit(0);
			on_connect(&ag, h.conn, &ep);
		} else if (h.type == RF_AG_RELEASE && h.len == 0) {
			on_release(&ag, h.conn);
		} else {
			_exit(1);   /* not the holder speaking */
		}
	}
}

int rf_agent_start(const struct rf_holder_cfg *cfg)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	pid_t holder = getpid();
	/* raw, as the holder itself was made: no atfork handlers */
	long pid = syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
	if (pid == 0) {
		close(sv[0]);
		agent_main(cfg, sv[1], holder);
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return -1;
	}
	return sv[0];
}
