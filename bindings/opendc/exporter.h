/*
 * exporter.h - the OpenDC exporter's inside, shared by export.c (owners of
 * pids, fragments, the output files) and cts.c (reading the CTS files).
 * opendc.h is the module's interface.
 */
#ifndef KX_OD_EXPORTER_H
#define KX_OD_EXPORTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../parquet/parquet.h"
#include "opendc.h"

struct node {
	char *dir;		/* directory name (for several nodes) */
	char *node_id;
	int64_t cores, mem_mb;
	double freq_mhz;
};

struct task {
	char *trace_id;
	int node;		/* index into nodes */
	int64_t pid, ts_enqueue, ts_start, ts_end;
	/* fragment state */
	int64_t cursor, nfrag;
	bool in_tick;
	int64_t tick_ts, tick_dt, tick_rss;
	int64_t tick_seq;	/* which tick it is (struct owner's) */
	double tick_cores, last_usage, max_cores;
	int64_t peak_rss_kib;
	/* the largest peak_rss_kb of one of its processes at its end (the
	 * kernel's figure): a task shorter than a tick has no sample */
	int64_t exit_peak_kib;
};

/* pid -> task over a time window; chained per pid. */
struct owner {
	int64_t pid, from, to;
	int task, next;
	int64_t tick_seq;	/* its task's tick of its last row */
};

struct exporter {
	struct node *nodes;
	int nnodes;
	struct task *tasks;
	int ntasks, taskcap;
	struct owner *owners;
	int nowners, ownercap;
	int *heads;		/* hash of pid -> first owner, -1 empty */
	int nheads;
	pq_writer *frags;
	struct od_summary *sum;
	char *err;
	size_t errlen;
};

/* pid -> task over (from, to]: 0, or -1 out of memory. */
int od_add_owner(struct exporter *x, int64_t pid, int task, int64_t from,
		 int64_t to);

/* The task owning pid for a sample covering (ts - dt, ts], or -1. */
int od_owner_of(struct exporter *x, int64_t pid, int64_t ts, int64_t dt);
/* The same owner's index in x->owners, or -1. */
int od_owner_index(struct exporter *x, int64_t pid, int64_t ts, int64_t dt);

/* Forgets every owner (pids are per node). */
void od_reset_owners(struct exporter *x);

/* A sample of the process of owner (an index in x->owners): it joins its
 * task's tick or starts the next one (the current one becoming a
 * fragment).  A tick holds one row per process: a second row of the same
 * process starts the next tick, whatever the times say. */
int od_add_sample(struct exporter *x, int owner, int64_t ts, int64_t dt,
		  double cpu_ms, int64_t rss_kib);

/* After the node's last sample: closes every task from first on. */
int od_finish_tasks(struct exporter *x, int first);

/* One node directory: DIR/CTS/{nodes.json, invocations.jsonl, ...}. */
int od_export_node(struct exporter *x, const char *dir, const char *dirname);

/* DIR itself (".") when it has CTS/, else its subdirectories that have
 * one, in name order; NULL with err when none. */
char **od_node_dirs(const char *in, int *n, char *err, size_t errlen);

#endif
