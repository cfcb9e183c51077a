/*
 * pager.h - what the pager's two halves share: pager.c serves processes
 * (layout, fetching, installing, faults and events), pagerloop.c keeps the
 * children it serves and runs the loop.  Private to them.
 */
#ifndef KX_RFORK_PAGER_H
#define KX_RFORK_PAGER_H

#include "rdma.h"

#include <linux/userfaultfd.h>

/* nothing here is seen outside kxrun's pager (kxrun links -rdynamic) */
#pragma GCC visibility push(hidden)

/* [cstart, cend) of a process holds the parent's pages from pstart on, or
 * zeros (pstart == 0: discarded since). */
struct seg {
	uint64_t cstart, cend, pstart;
};

#define NSTREAMS 8
struct fam;
/* One process served: a resumed child (root) or one it forked. */
struct client {
	int uffd;
	uint32_t id;            /* flights name their client by it */
	struct fam *fam;
	int root;
	uint32_t seq;           /* a fork: its place among its family's forks */
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

/* A resumed child and what it forks: its batch, knobs, stats, stderr. */
struct fam {
	uint32_t id, root;      /* its id, its root client's */
	pid_t pid;
	int pidfd, errfd, killed;
	int watch;              /* the pager's end of its watch: closed with it */
	struct rf_page_req *plan;   /* the prefetch batch it brought (a copy) */
	int nplan, plan_learned, learned_used;
	long plan_pages;
	int started;            /* it faulted: its ranges are registered */
	int mapped;             /* it maps the cache's memfd: cached pages by UFFDIO_CONTINUE */
	int pending;            /* batch answers asked for, not dropped, not all in */
	uint32_t flags, ra_base, ra_max;
	struct rf_page_req *log;    /* the pages it faulted on (for learned_here) */
	uint32_t nlog;
	int logging;
	long faults, pages, cached, zero, forks, requests, markers, maxwin, dropped, prefetched;
	long continued;         /* of the cached pages, those mapped, not copied */
	double wait_s, batch_s, t0;
};

#define MAX_CLIENTS 512
#define MAX_FAMS 256
#define MAX_JOINS 16
#define CHUNK 64            /* pages read and installed at a time */

/* Answers asked for and not read yet, in order (TCP). */
struct flight {
	uint32_t client, fam;   /* client id (0: a batch), its family's */
	uint64_t caddr, paddr;  /* child and parent address of its first page */
	uint32_t npages, done;  /* pages asked for, pages read */
	int header, seq, dropped;
	int stream;             /* the sequential run of its client it extends */
	struct rf_page_req *q;  /* a batch: its ranges (malloc'd, parent addresses), */
	int nq, range;          /* how many, the one being read */
	uint32_t off;           /* pages of that one read */
};
#define MAX_FLIGHT 64

extern struct client clients[MAX_CLIENTS];
extern int nclients;
extern uint32_t client_ids;
extern struct fam *fams[MAX_FAMS];
extern int nfams;
extern uint32_t fam_ids;
extern const struct rf_desc *desc;
extern const struct rf_transport *T; /* or rf_rdma */
extern struct rf_conn *conn;
extern char *buf; /* CHUNK pages (TCP); the landing buffer (RDMA) */
extern struct rf_learned learned_here; /* what this pager's first children faulted on */
extern long children_served;
extern struct flight fl[MAX_FLIGHT];
extern int fl_head, fl_n;

double now_s(void);
struct fam *fam_by_id(uint32_t id);
struct client *client_by_id(uint32_t id);
/* Kills one child saying why on its stderr; it is forgotten when its
 * pidfd says it has ended. */
void kill_fam(struct fam *f, const char *why);
/* The image cannot be reached any more: every child goes. */
void fatal(const char *why) __attribute__((noreturn));
void add_seg(struct client *c, uint64_t cs, uint64_t ce, uint64_t ps);
void drop_client(int i);
/* Asks for f's answer after those in flight (reading the oldest first
 * when they are as many as can be). */
void push_flight(struct flight f);
/* One step of the answer at the head: its header, or a chunk of its pages
 * read, kept in the cache and installed. */
void read_answer(void);
void on_event(struct client *c, struct uffd_msg *u);
/* Forgets forked processes whose memory is gone (exec, exit). */
void reap_forks(void);

#pragma GCC visibility pop

#endif /* KX_RFORK_PAGER_H */
