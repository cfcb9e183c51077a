/*
 * policy.h - Tracekit's scheduling policy as pure C: strict FIFO (only the
 * head of the pending queue is considered, so head-of-line blocking is
 * real), feasibility by slots and capacity, first-fit over nodes in node-id
 * order or a weigher among the feasible nodes.  Both backends (embedded and
 * Redis) decide through this code.
 */
#ifndef KX_SCHED_POLICY_H
#define KX_SCHED_POLICY_H

struct sched_node {
	const char *id;
	int capacity;   /* cpu units the node exposes */
	int parallel;   /* slots; 0 = capacity only */
	int running;    /* tasks running */
	int used;       /* cpu units of the running tasks */
	int alive;      /* 0: not considered (heartbeat lost, draining) */
};

enum sched_weigher {
	SCHED_FIRST_FIT,
	SCHED_INSTANCES,  /* by running tasks */
	SCHED_VCPU,       /* by used capacity */
};

/* capacity if > 0, else floor(allocation_ratio x cores) (at least 1). */
int sched_capacity(int capacity, double allocation_ratio, int cores);

/* A free slot (when parallel > 0) and remaining capacity >= units. */
int sched_feasible(const struct sched_node *n, int units);

/* The node for the head task of `units`: the first feasible node in id
 * order, or with a weigher the feasible node of least (order_max: most)
 * running tasks or used units, ties to the smaller id.  -1 when none. */
int sched_pick(const struct sched_node *nodes, int n, int units,
	       enum sched_weigher w, int order_max);

/* Whether any node could ever take `units` (its capacity is enough): a
 * head that no node can hold blocks the queue for good. */
int sched_ever_feasible(const struct sched_node *nodes, int n, int units);

/* "instances", "vcpu", "" or NULL (first fit); -1 when unknown. */
int sched_weigher_parse(const char *name);

#endif
