/*
 * holder.h - the holder's state, shared by its loop (holder.c) and its
 * RDMA glue (holder_rdma.c).  Everything here lives in mappings the holder
 * makes after the fork, never in the image it serves.
 */
#ifndef KX_RFORK_HOLDER_H
#define KX_RFORK_HOLDER_H

#include "rdma.h"

#include <sys/uio.h>

#define MAX_CONNS 1024

enum { C_HELLO, C_SERVING };

/* One child's connection (a mapping of its own, mostly untouched). */
struct hconn {
	int fd, slot, state;
	uint32_t id;           /* its number for the RDMA agent */
	int rdma;              /* 1: asked the agent; 2: connected there */
	int gone;              /* 1: RF_RDMA_GONE due after the output; 2: sent */
	int closing;           /* drop it once the output is out */
	int learning;          /* its requests are logged */
	double since;          /* accepted (hello); the request's or answer's last progress */
	uint32_t have, need;   /* input: bytes of the current message read, its length */
	struct iovec *iov;     /* output not yet sent: iov[iovpos .. niov) */
	int niov, iovpos;
	uint32_t nlog;
	union {
		struct rf_reply rep;
		struct rf_page_reply page;
		struct rf_rdma_info info;
	} hdr;
	union {
		struct rf_hello hello;
		struct {
			struct rf_page_req head;
			union {
				struct rf_page_req q[RF_BATCH_RANGES];
				struct rf_rdma_ep ep;
			};
		} req;
	} in;
	struct iovec iovs[RF_BATCH_RANGES + 2];
	struct rf_page_req learned[RF_LEARN_RANGES];   /* the set as sent to it */
	struct rf_page_req log[RF_LEARN_RANGES];       /* what it was served */
};

struct holder {
	const struct rf_holder_cfg *cfg;
	int ep;                        /* epoll */
	struct hconn *cs[MAX_CONNS];
	int n;
	uint32_t next_id;
	struct rf_learned *learned;
	/* the RDMA agent (holder_rdma.c) */
	int agent_fd;                  /* -1: none, or gone */
	struct rf_rdma_info ready;     /* status, rkey, ranges count */
	struct rf_rdma_range *ranges;  /* mapped when READY came */
	uint64_t ranges_len;
};

double rf_holder_now(void);
/* Queues c->iovs[0 .. n) as c's answer and watches for the socket taking it. */
void rf_hconn_send(struct holder *H, struct hconn *c, int n);

/* holder_rdma.c: the agent started (cfg->rdma) and watched; RF_REQ_RDMA
 * (c->in.req.ep read) forwarded to it, 0 or -1 to drop c; the agent's
 * messages; c about to close. */
void rf_holder_rdma_start(struct holder *H);
int rf_holder_rdma_request(struct holder *H, struct hconn *c, int required);
void rf_holder_rdma_agent(struct holder *H);
void rf_holder_rdma_closed(struct holder *H, struct hconn *c);

#endif
