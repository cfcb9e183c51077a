/*
 * opendc.h - export Tracekit-style CTS traces to OpenDC's workload format,
 * and verify such an export.
 *
 * Input: DIR/CTS/ (one node), or DIR/<node>/CTS/ for several nodes (their
 * directories taken in name order).  Each CTS/ holds
 *   invocations.jsonl  trace_id, pid, ts_enqueue, ts_start, ts_end (ms epoch)
 *   proc_metrics.jsonl ts_ms, pid, dt_ms, cpu_ms, rss_kb [, ppid]
 *   nodes.json         node_id, cpu_cores, mem_mb, cpu_freq_mhz (an object,
 *                      an array of them, or {"nodes": [...]})
 *   procs.jsonl        optional: pid, ppid, start, end, peak_rss_kb
 *                      (process tree, each process's peak memory)
 *
 * Output, in OUT/ (created when missing):
 *   tasks.parquet      message resource: id INT32, name STRING OPTIONAL
 *                      (trace_id), submission_time INT64 (ms epoch),
 *                      duration INT64 (ms), cpu_count INT32, cpu_capacity
 *                      DOUBLE (MHz, whole task), mem_capacity INT64 (KB);
 *                      all REQUIRED but name
 *   fragments.parquet  message resource_state: id INT32, duration INT64
 *                      (ms), cpu_usage DOUBLE (MHz summed over cores)
 *   topology.json      one cluster, one host per node, with units
 *   ids.json           the id of every task: node directory, node_id,
 *                      trace_id, pid, ts_start, ts_end
 * The schema is OpenDC's reader (opendc-trace TaskSchemas.kt and
 * FragmentSchemas.kt, v2.4f through master): parquet-java, strict types.
 *
 * Task ids: 0, 1, 2, ... in the order of node directories (by name) and,
 * within a node, of invocations.jsonl lines.  The same input gives the same
 * ids; ids.json maps them back.
 *
 * Fragments: a task's samples are those of its pid and of its descendants
 * (from procs.jsonl or the samples' ppid; by pid alone without either),
 * within its [ts_start, ts_end].  Samples of one tick (ts within dt/2) are
 * summed into one fragment; a fragment runs from the end of the previous one
 * to its sample's ts (so a gap, the head included, takes the rate of the
 * sample that follows it) and the tail, from the last sample to ts_end,
 * keeps the last rate.  A task's fragments are chronological, never overlap,
 * and their durations add up to ts_end - ts_start exactly; a task without
 * samples gets one fragment of usage 0.  cpu_usage = cores busy x the node's
 * cpu_freq_mhz (no cap).  cpu_count = the most cores busy in one tick,
 * rounded up (1 at least, the node's cores at most); mem_capacity = the
 * larger of the largest RSS summed over the task's processes in one tick
 * and the largest peak_rss_kb of one of them (procs.jsonl, or the
 * invocation's own), KiB -> KB.
 *
 * Memory: samples are streamed; invocations, process records and one small
 * state per task are held.  Malformed input is reported as FILE:LINE: what,
 * and then nothing is written (files appear only when all is well).
 */
#ifndef KX_OPENDC_H
#define KX_OPENDC_H

#include <stddef.h>
#include <stdint.h>

/* What a trace can hold.  A figure beyond is an error (FILE:LINE), never
 * written: it would overflow the arithmetic of the export or OpenDC's own
 * types (coreCount is an Int). */
#define OD_MAX_MS	10000000000000LL	/* times, durations, CPU time:
						 * up to the year 2286 */
#define OD_MAX_PID	INT32_MAX
#define OD_MAX_RSS_KB	(1LL << 40)		/* 1 PiB a process */
#define OD_MAX_CORES	(1LL << 20)
#define OD_MAX_MEM_MB	(1LL << 40)
#define OD_MAX_FREQ_MHZ	1e6

struct od_summary {
	int64_t nodes, tasks, fragments;
	int64_t samples;		/* rows of proc_metrics.jsonl */
	int64_t samples_used;		/* attributed to a task */
	int64_t samples_late;		/* behind their task's tick, folded in */
	int64_t input_bytes;		/* of the files read */
};

/* 0, or -1 with the first problem in err (nothing written then). */
int od_export(const char *in_dir, const char *out_dir, struct od_summary *s,
	      char *err, size_t errlen);

struct od_verify {
	int64_t tasks, fragments;
};

/* Reads OUT/tasks.parquet and OUT/fragments.parquet back with its own
 * footer and page decoder and checks: column names, physical types and
 * REQUIRED-ness as OpenDC reads them; ids unique; values non-negative
 * (cpu_count >= 1); every task has fragments and every fragment a task;
 * per task the fragment durations add up to its duration; and, when
 * ids.json is there, that its tasks match (ts_end - ts_start = duration).
 * 0, or -1 with the first problem in err. */
int od_verify(const char *out_dir, struct od_verify *v, char *err,
	      size_t errlen);

#endif
