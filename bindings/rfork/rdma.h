/*
 * rdma.h - kx.rfork's RDMA RC transport (internal): what verbs.c, rdma.c,
 * agent.c and holder.c share.
 *
 * Holder side: the holder forks an *agent* (agent.c).  The holder itself
 * must not change the image it keeps, and libibverbs allocates; so the
 * agent, a copy of the holder, first copies the image's populated pages
 * into one buffer of its own (before it allocates anything), then opens the
 * device and registers that buffer for remote READ.  On kernels without
 * on-demand paging, pinning copy-on-write pages copies them anyway (GUP
 * "unshare", Linux 5.19+), so registering the image in place would cost the
 * same memory.  The agent tells the holder the registered ranges and the
 * rkey once; per child it connects one RC queue pair.  It does nothing per
 * page.
 *
 * Child side (rdma.c): after the descriptor (TCP, authenticated by the
 * key), the pager creates a QP and sends RF_REQ_RDMA with its endpoint on
 * the same connection; the holder forwards it to the agent and answers
 * with the agent's endpoint, the rkey and the ranges (only on a connection
 * that presented the key).  Pages are then RDMA READs into a registered
 * landing buffer; pages of ranges the agent did not copy come over TCP.
 */
#ifndef KX_RFORK_RDMA_H
#define KX_RFORK_RDMA_H

#include "internal.h"

#include <infiniband/verbs.h>

/* ---- protocol (TCP connection and holder <-> agent) ---------------------- */

/* rf_page_req.flags: the child's endpoint (struct rf_rdma_ep) follows;
 * npages: 1 when the child requires RDMA (wait for the agent), 0 when it
 * would rather fall back to TCP than wait.  Answer: struct rf_rdma_info
 * and info.nranges struct rf_rdma_range. */
#define RF_REQ_RDMA 2u

/* One side of an RC connection. */
struct rf_rdma_ep {
	uint8_t gid[16];
	uint32_t qpn, psn;
	uint16_t lid;
	uint8_t mtu;          /* enum ibv_mtu: the port's active MTU */
	uint8_t rd_atomic;    /* READs in flight it can issue / answer */
	uint32_t pad;
};

/* Parent addresses [start, end): at raddr in the agent's registered
 * buffer, or zeros (raddr == 0: anonymous pages never populated).  Pages
 * of served mappings outside every range come over TCP. */
struct rf_rdma_range {
	uint64_t start, end, raddr;
};

enum { RF_RDMA_OK = 0, RF_RDMA_NONE = 1, RF_RDMA_BUSY = 2, RF_RDMA_FAILED = 3 };

/* The byte the holder sends, unasked, to its RDMA children when its agent
 * is gone: their queue pairs have no peer any more. */
#define RF_RDMA_GONE 0xA6

struct rf_rdma_info {
	uint32_t status;      /* RF_RDMA_* */
	uint32_t nranges;
	struct rf_rdma_ep ep; /* the agent's */
	uint32_t rkey, pad;
	char msg[160];        /* why not, when status != RF_RDMA_OK */
};

/* Holder <-> agent messages on their socketpair: a header, then len bytes. */
enum { RF_AG_READY = 1, RF_AG_FAILED, RF_AG_CONNECT, RF_AG_CONNECTED, RF_AG_RELEASE };
struct rf_agent_msg {
	uint32_t type, len;
	uint32_t conn, pad;   /* the holder's connection number (CONNECT/CONNECTED/RELEASE) */
};
/* READY: struct rf_rdma_info (status OK, ep without qpn/psn) + ranges.
 * FAILED: a message.  CONNECT: the child's rf_rdma_ep.  CONNECTED:
 * struct rf_rdma_info with the agent's qpn/psn, no ranges.  RELEASE: none. */

/* Checks an answer to RF_REQ_RDMA against the descriptor: ranges sorted,
 * page aligned, disjoint, each inside one served mapping.  0 or -1 + err. */
int rf_rdma_info_check(const struct rf_rdma_info *info, const struct rf_rdma_range *r,
                       const struct rf_desc *d, char *err, size_t errlen);

/* Where the npages pages at addr come from: up to max pieces, in order. */
enum { RF_PIECE_RDMA, RF_PIECE_ZERO, RF_PIECE_TCP };
struct rf_piece {
	uint64_t addr, raddr;   /* raddr: RF_PIECE_RDMA only */
	uint32_t npages, kind;
};
/* Returns the number of pieces, or -1 when more than max are needed. */
int rf_rdma_plan(const struct rf_rdma_range *r, uint32_t nranges, uint64_t addr,
                 uint32_t npages, struct rf_piece *out, int max);

/* ---- libibverbs, loaded at run time (verbs.c) ----------------------------- */

/* The functions kx.rfork calls, from libibverbs.so.1 (dlopen: kxrun runs
 * and starts without it; the device is found at run time).  post_send,
 * poll_cq and req_notify_cq are the header's inline calls into the
 * provider. */
struct rf_ibv {
	__typeof__(ibv_get_device_list) *get_device_list;
	__typeof__(ibv_free_device_list) *free_device_list;
	__typeof__(ibv_get_device_name) *get_device_name;
	__typeof__(ibv_open_device) *open_device;
	__typeof__(ibv_close_device) *close_device;
	__typeof__(ibv_query_device) *query_device;
	__typeof__(ibv_query_port) *query_port_compat;
	__typeof__(ibv_query_gid) *query_gid;
	__typeof__(ibv_alloc_pd) *alloc_pd;
	__typeof__(ibv_dealloc_pd) *dealloc_pd;
	__typeof__(ibv_reg_mr) *reg_mr;
	__typeof__(ibv_dereg_mr) *dereg_mr;
	__typeof__(ibv_create_comp_channel) *create_comp_channel;
	__typeof__(ibv_destroy_comp_channel) *destroy_comp_channel;
	__typeof__(ibv_create_cq) *create_cq;
	__typeof__(ibv_destroy_cq) *destroy_cq;
	__typeof__(ibv_get_cq_event) *get_cq_event;
	__typeof__(ibv_ack_cq_events) *ack_cq_events;
	__typeof__(ibv_create_qp) *create_qp;
	__typeof__(ibv_modify_qp) *modify_qp;
	__typeof__(ibv_destroy_qp) *destroy_qp;
	__typeof__(ibv_wc_status_str) *wc_status_str;
};
extern struct rf_ibv rf_ibv;
int rf_ibv_query_port(struct ibv_context *c, uint8_t port, struct ibv_port_attr *a);

/* A device port chosen to reach a peer. */
struct rf_rdma_port {
	char name[64];        /* device name, e.g. rxe0 */
	int port;             /* 1.. */
	int gid_index;
	int ib;               /* InfiniBand link layer (LID routed) */
	struct rf_rdma_ep ep; /* gid, lid, mtu, rd_atomic; no qpn/psn yet */
};

/* Loads libibverbs.so.1 (once); 0 or -1 + err. */
int rf_verbs_load(char *err, size_t errlen);

/* Picks the device, port and GID that reach host (numeric IPv4/IPv6; NULL
 * or a wildcard: the first active port with an IPv4 GID or an IB port).
 * KXRUN_RFORK_RDMA_DEVICE=NAME[:PORT[:GID_INDEX]] forces one.  Fills *p
 * and, when ctx is not NULL, opens it (*ctx).  0 or -1 + err: no
 * libibverbs, no device, every port down, no GID for that address. */
int rf_rdma_pick(const char *host, struct rf_rdma_port *p, struct ibv_context **ctx,
                 char *err, size_t errlen);

/* ---- child side (rdma.c) -------------------------------------------------- */

/* Upgrades an authenticated TCP connection (the descriptor was read) to
 * RDMA: opens the port, connects a QP with the holder's agent, checks the
 * ranges, registers a landing buffer of buf_pages pages and reads one page
 * as a test.  required: wait for the agent (up to timeout) instead of
 * declining.  Returns the RDMA connection (it owns tcp from then on), or
 * NULL + err; *declined = 1 when the holder has no RDMA to offer or the
 * port does not reach its agent (the caller may go on over TCP). */
struct rf_conn *rf_rdma_upgrade(struct rf_conn *tcp, const struct rf_desc *d,
                                const char *host, int required, int timeout_ms,
                                uint32_t buf_pages, int *declined, char *err,
                                size_t errlen);
extern const struct rf_transport rf_rdma;

/* ---- holder side (agent.c) ------------------------------------------------- */

/* Starts the agent from the holder (a raw clone of it); returns the
 * holder's end of their socketpair, or -1. */
int rf_agent_start(const struct rf_holder_cfg *cfg);

/* Ranges of the image the agent copies, one mapping at a time, npages
 * pages at addr: by their populated pages when pagemap is given (its
 * /proc/PID/pagemap entries: private anonymous memory; absent pages are
 * zeros), else whole.  cont: the pages continue the previous call's (same
 * mapping), whose last range may grow.  Ranges go to out[n..max); raddr =
 * base + the offset in the copy, which *copied counts.  Returns the new
 * number of ranges, -1 when max is too small. */
int rf_rdma_ranges_add(uint64_t addr, uint64_t npages, const uint64_t *pagemap, int cont,
                       uint64_t base, uint64_t *copied, struct rf_rdma_range *out, int n,
                       int max);
/* Mappings larger than this are left to TCP (scanning and copying them
 * would take too long: e.g. a sanitizer's shadow memory). */
#define RF_RDMA_MAP_MAX (16ULL << 30)

#endif /* KX_RFORK_RDMA_H */
