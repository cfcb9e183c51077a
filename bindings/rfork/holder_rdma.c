/*
 * holder_rdma.c - the holder's side of the RDMA transport: its agent
 * (agent.c) started and watched, children's RF_REQ_RDMA forwarded to it
 * and its answers sent back with the rkey and the ranges (rdma.h).  The
 * agent is local and answers at once: its socketpair is read and written
 * blocking; the children's sockets go through the holder's queue.
 */
#include "holder.h"

#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define AGENT_TIMEOUT_MS 10000

static void copy_msg(char *to, size_t cap, const char *from)
{
	size_t i = 0;   /* no stdio here */
	for (; i + 1 < cap && from[i]; i++)
		to[i] = from[i];
	to[i] = 0;
}

static void decline(struct holder *H, struct hconn *c, uint32_t status, const char *msg)
{
	c->hdr.info = (struct rf_rdma_info){.status = status};
	copy_msg(c->hdr.info.msg, sizeof c->hdr.info.msg, msg);
	c->iovs[0] = (struct iovec){&c->hdr.info, sizeof c->hdr.info};
	rf_hconn_send(H, c, 1);
}

static void agent_gone(struct holder *H, const char *why)
{
	struct rf_shared *sh = H->cfg->shared;
	copy_msg(sh->rdma_msg, sizeof sh->rdma_msg, why);
	__atomic_store_n(&sh->rdma, RF_AGENT_FAILED, __ATOMIC_SEQ_CST);
	if (H->agent_fd >= 0) {
		epoll_ctl(H->ep, EPOLL_CTL_DEL, H->agent_fd, NULL);
		close(H->agent_fd);
	}
	H->agent_fd = -1;
	waitpid(-1, NULL, WNOHANG);
	for (int i = 0; i < MAX_CONNS; i++) {
		struct hconn *c = H->cs[i];
		if (!c)
			continue;
		if (c->rdma == 1)
			decline(H, c, RF_RDMA_FAILED, why);
		if (c->rdma == 2) {   /* their next READ would wait in vain */
			c->gone = 1;
			if (c->iovpos >= c->niov)
				rf_hconn_send(H, c, 0);
		}
		c->rdma = 0;
	}
}

void rf_holder_rdma_start(struct holder *H)
{
	const struct rf_holder_cfg *cfg = H->cfg;
	if (!cfg->rdma)
		return;
	H->agent_fd = cfg->agent_fd > 0 ? cfg->agent_fd : rf_agent_start(cfg);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
	if (H->agent_fd < 0 || epoll_ctl(H->ep, EPOLL_CTL_ADD, H->agent_fd, &ev) < 0)
		agent_gone(H, "the holder cannot start its RDMA agent");
}

int rf_holder_rdma_request(struct holder *H, struct hconn *c, int required)
{
	if (c->rdma)
		return -1;
	struct rf_shared *sh = H->cfg->shared;
	int st = __atomic_load_n(&sh->rdma, __ATOMIC_SEQ_CST);
	if (st == RF_AGENT_NONE)
		decline(H, c, RF_RDMA_NONE, "the parent prepared for TCP only (transport = \"tcp\")");
	else if (st == RF_AGENT_FAILED || H->agent_fd < 0)
		decline(H, c, RF_RDMA_FAILED, sh->rdma_msg);
	else if (st == RF_AGENT_STARTING && !required)
		decline(H, c, RF_RDMA_BUSY, "the holder's RDMA agent is still copying the image");
	else {
		struct rf_agent_msg h = {RF_AG_CONNECT, sizeof c->in.req.ep, c->id, 0};
		if (rf_write_all(H->agent_fd, &h, sizeof h) < 0 ||
		    rf_write_all(H->agent_fd, &c->in.req.ep, sizeof c->in.req.ep) < 0)
			decline(H, c, RF_RDMA_FAILED, "the holder's RDMA agent is gone");
		else
			c->rdma = 1;
	}
	return 0;
}

static void on_connected(struct holder *H, uint32_t conn, struct rf_rdma_info *info)
{
	struct hconn *c = NULL;
	for (int i = 0; i < MAX_CONNS && !c; i++)
		if (H->cs[i] && H->cs[i]->id == conn)
			c = H->cs[i];
	if (!c || c->rdma != 1) {   /* gone meanwhile */
		struct rf_agent_msg rel = {RF_AG_RELEASE, 0, conn, 0};
		if (info->status == RF_RDMA_OK)
			rf_write_all(H->agent_fd, &rel, sizeof rel);
		return;
	}
	c->rdma = info->status == RF_RDMA_OK ? 2 : 0;
	c->hdr.info = *info;
	c->iovs[0] = (struct iovec){&c->hdr.info, sizeof c->hdr.info};
	if (info->status != RF_RDMA_OK) {
		rf_hconn_send(H, c, 1);
		return;
	}
	c->hdr.info.nranges = H->ready.nranges;
	c->iovs[1] = (struct iovec){H->ranges, H->ranges_len};
	rf_hconn_send(H, c, 2);
}

void rf_holder_rdma_agent(struct holder *H)
{
	struct rf_agent_msg h;
	struct rf_rdma_info info;
	char why[sizeof H->cfg->shared->rdma_msg];
	int fd = H->agent_fd;
	if (rf_read_all(fd, &h, sizeof h, AGENT_TIMEOUT_MS) < 0) {
		agent_gone(H, "the holder's RDMA agent exited");
	} else if (h.type == RF_AG_FAILED && h.len <= sizeof why &&
	           rf_read_all(fd, why, h.len, AGENT_TIMEOUT_MS) == 0) {
		why[sizeof why - 1] = 0;
		agent_gone(H, why);
	} else if (h.type == RF_AG_READY && h.len >= sizeof info && !H->ranges &&
	           rf_read_all(fd, &info, sizeof info, AGENT_TIMEOUT_MS) == 0 &&
	           h.len - sizeof info == (uint64_t)info.nranges * sizeof *H->ranges) {
		H->ranges_len = h.len - sizeof info;
		H->ranges = mmap(NULL, H->ranges_len + 1, PROT_READ | PROT_WRITE,
		                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (H->ranges == MAP_FAILED ||
		    rf_read_all(fd, H->ranges, H->ranges_len, AGENT_TIMEOUT_MS) < 0) {
			H->ranges = NULL;
			agent_gone(H, "the holder cannot keep the RDMA agent's ranges");
			return;
		}
		H->ready = info;
		struct rf_shared *sh = H->cfg->shared;
		copy_msg(sh->rdma_msg, sizeof sh->rdma_msg, info.msg);
		__atomic_store_n(&sh->rdma, RF_AGENT_READY, __ATOMIC_SEQ_CST);
	} else if (h.type == RF_AG_CONNECTED && h.len == sizeof info &&
	           rf_read_all(fd, &info, sizeof info, AGENT_TIMEOUT_MS) == 0) {
		on_connected(H, h.conn, &info);
	} else {
		agent_gone(H, "the holder's RDMA agent sent nonsense");
	}
}

void rf_holder_rdma_closed(struct holder *H, struct hconn *c)
{
	struct rf_agent_msg rel = {RF_AG_RELEASE, 0, c->id, 0};
	if (c->rdma && H->agent_fd >= 0)
		rf_write_all(H->agent_fd, &rel, sizeof rel);
}
