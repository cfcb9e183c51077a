/* export.c - CTS traces to OpenDC tasks/fragments (see opendc.h): owners
 * of pids, fragments, the output files (the CTS files are read in cts.c). */
#include "exporter.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kx.h"
#include "odutil.h"

int od_add_owner(struct exporter *x, int64_t pid, int task, int64_t from,
		 int64_t to)
{
	if (x->nowners + 1 > x->ownercap) {
		int cap = x->ownercap ? x->ownercap * 2 : 256;
		struct owner *o = realloc(x->owners, cap * sizeof(*o));
		if (!o)
			return od_err(x->err, x->errlen, "out of memory");
		x->owners = o;
		x->ownercap = cap;
	}
	if (x->nowners * 2 >= x->nheads) {
		int n = x->nheads ? x->nheads * 2 : 1024;
		int *h = malloc(n * sizeof(*h));
		if (!h)
			return od_err(x->err, x->errlen, "out of memory");
		for (int i = 0; i < n; i++)
			h[i] = -1;
		free(x->heads);
		x->heads = h;
		x->nheads = n;
		for (int i = 0; i < x->nowners; i++) {
			int b = (int)((uint64_t)x->owners[i].pid % n);
			x->owners[i].next = h[b];
			h[b] = i;
		}
	}
	int b = (int)((uint64_t)pid % x->nheads);
	x->owners[x->nowners] = (struct owner){ pid, from, to, task, x->heads[b], 0 };
	x->heads[b] = x->nowners++;
	return 0;
}

int od_owner_index(struct exporter *x, int64_t pid, int64_t ts, int64_t dt)
{
	if (!x->nheads)
		return -1;
	for (int i = x->heads[(uint64_t)pid % x->nheads]; i >= 0;
	     i = x->owners[i].next) {
		const struct owner *o = &x->owners[i];
		if (o->pid == pid && ts > o->from && ts - dt < o->to)
			return i;
	}
	return -1;
}

int od_owner_of(struct exporter *x, int64_t pid, int64_t ts, int64_t dt)
{
	int i = od_owner_index(x, pid, ts, dt);
	return i < 0 ? -1 : x->owners[i].task;
}

void od_reset_owners(struct exporter *x)
{
	x->nowners = 0;
	for (int i = 0; i < x->nheads; i++)
		x->heads[i] = -1;
}

/* ---- fragments ---------------------------------------------------------- */

static int emit(struct exporter *x, int id, int64_t duration, double usage)
{
	if (pq_int32(x->frags, 0, id) < 0 ||
	    pq_int64(x->frags, 1, duration) < 0 ||
	    pq_double(x->frags, 2, usage) < 0 || pq_end_row(x->frags) < 0)
		return od_err(x->err, x->errlen, "fragments.parquet: %s",
			      pq_error(x->frags));
	x->tasks[id].nfrag++;
	x->sum->fragments++;
	return 0;
}

/* Ends the task's current tick: one fragment from the cursor to its ts. */
static int end_tick(struct exporter *x, int id)
{
	struct task *t = &x->tasks[id];
	double usage = t->tick_cores * x->nodes[t->node].freq_mhz;
	int64_t end = t->tick_ts < t->ts_end ? t->tick_ts : t->ts_end;

	if (!t->in_tick)
		return 0;
	t->in_tick = false;
	t->last_usage = usage;
	if (t->tick_cores > t->max_cores)
		t->max_cores = t->tick_cores;
	if (t->tick_rss > t->peak_rss_kib)
		t->peak_rss_kib = t->tick_rss;
	if (end <= t->cursor)
		return 0;
	if (emit(x, id, end - t->cursor, usage) < 0)
		return -1;
	t->cursor = end;
	return 0;
}

int od_add_sample(struct exporter *x, int owner, int64_t ts, int64_t dt,
		  double cpu_ms, int64_t rss_kib)
{
	struct owner *o = &x->owners[owner];
	int id = o->task;
	struct task *t = &x->tasks[id];
	double cores = dt > 0 ? cpu_ms / (double)dt : 0;

	/* a tick stretches over the interval of the row that began it: an
	 * idle parent's row a second apart, its busy child's rows 50 ms
	 * apart; the child's next row begins the next tick (each was added
	 * to the parent's tick: three cores for one) */
	if (t->in_tick && (ts > t->tick_ts + t->tick_dt / 2 || o->tick_seq == t->tick_seq) &&
	    end_tick(x, id) < 0)
		return -1;
	if (!t->in_tick) {
		t->in_tick = true;
		t->tick_ts = ts;
		t->tick_dt = dt;
		t->tick_seq++;
		t->tick_cores = 0;
		t->tick_rss = 0;
	} else if (ts < t->tick_ts - t->tick_dt / 2) {
		x->sum->samples_late++;
	}
	o->tick_seq = t->tick_seq;
	t->tick_cores += cores;
	t->tick_rss += rss_kib;
	x->sum->samples_used++;
	return 0;
}

/* After the node's last sample: close every task of the node. */
int od_finish_tasks(struct exporter *x, int first)
{
	for (int id = first; id < x->ntasks; id++) {
		struct task *t = &x->tasks[id];
		if (end_tick(x, id) < 0)
			return -1;
		if (t->cursor < t->ts_end || t->nfrag == 0) {
			if (emit(x, id, t->ts_end - t->cursor,
				 t->last_usage) < 0)
				return -1;
			t->cursor = t->ts_end;
		}
	}
	return 0;
}

static int write_tasks(struct exporter *x, const char *out, pq_writer **w)
{
	static const struct pq_column cols[] = {
		{ "id", PQ_INT32, false, false },
		{ "name", PQ_STRING, true, true },
		{ "submission_time", PQ_TIMESTAMP_MS, false, false },
		{ "duration", PQ_INT64, false, false },
		{ "cpu_count", PQ_INT32, false, true },
		{ "cpu_capacity", PQ_DOUBLE, false, true },
		{ "mem_capacity", PQ_INT64, false, false },
	};
	char path[4096];
	struct pq_options o = od_parquet_options();

	if (od_path(path, sizeof(path), "%s/tasks.parquet", out) < 0)
		return od_err(x->err, x->errlen, "%s: path too long", out);
	*w = pq_open(path, "resource", cols, 7, &o, x->err, x->errlen);
	if (!*w)
		return -1;
	for (int id = 0; id < x->ntasks; id++) {
		const struct task *t = &x->tasks[id];
		const struct node *nd = &x->nodes[t->node];
		int64_t count = (int64_t)ceil(t->max_cores - 1e-6);
		if (count < 1)
			count = 1;
		if (count > nd->cores)
			count = nd->cores;
		int64_t peak = t->peak_rss_kib > t->exit_peak_kib ?
			       t->peak_rss_kib : t->exit_peak_kib;
		if (pq_int32(*w, 0, id) < 0 ||
		    pq_string(*w, 1, t->trace_id, strlen(t->trace_id)) < 0 ||
		    pq_int64(*w, 2, t->ts_enqueue) < 0 ||
		    pq_int64(*w, 3, t->ts_end - t->ts_start) < 0 ||
		    pq_int32(*w, 4, (int32_t)count) < 0 ||
		    pq_double(*w, 5, (double)count * nd->freq_mhz) < 0 ||
		    pq_int64(*w, 6, (peak * 1024 + 500) / 1000) < 0 ||
		    pq_end_row(*w) < 0)
			return od_err(x->err, x->errlen, "tasks.parquet: %s",
				      pq_error(*w));
	}
	return 0;
}

static int write_json(struct exporter *x, const char *out, const char *name,
		      json_t *j)
{
	char path[4096];
	char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	int rc;

	json_decref(j);
	if (!text)
		return od_err(x->err, x->errlen, "out of memory");
	if (od_path(path, sizeof(path), "%s/%s", out, name) < 0) {
		free(text);
		return od_err(x->err, x->errlen, "%s: path too long", out);
	}
	rc = kx_write_file_atomic(path, text, strlen(text), x->err, x->errlen) < 0 ?
	     -1 : 0;
	free(text);
	return rc;
}

static json_t *topology(struct exporter *x)
{
	json_t *hosts = json_array();
	char speed[64], mem[64];

	for (int i = 0; i < x->nnodes; i++) {
		const struct node *n = &x->nodes[i];
		snprintf(speed, sizeof(speed), "%.0f MHz", n->freq_mhz);
		snprintf(mem, sizeof(mem), "%lld MiB", (long long)n->mem_mb);
		json_array_append_new(hosts, json_pack(
		    "{s:s, s:i, s:{s:I, s:s}, s:{s:s}}", "name", n->node_id,
		    "count", 1, "cpu", "coreCount", (json_int_t)n->cores,
		    "coreSpeed", speed, "memory", "memorySize", mem));
	}
	return json_pack("{s:[{s:s, s:o}]}", "clusters", "name", "kxrun",
			 "hosts", hosts);
}

static json_t *ids(struct exporter *x)
{
	json_t *a = json_array();
	for (int id = 0; id < x->ntasks; id++) {
		const struct task *t = &x->tasks[id];
		const struct node *n = &x->nodes[t->node];
		json_array_append_new(a, json_pack(
		    "{s:i, s:s, s:s, s:s, s:I, s:I, s:I}", "id", id,
		    "trace_id", t->trace_id, "node_dir", n->dir, "node_id",
		    n->node_id, "pid", (json_int_t)t->pid, "ts_start",
		    (json_int_t)t->ts_start, "ts_end", (json_int_t)t->ts_end));
	}
	return a;
}

/* err names a path inside tmp: name it at its place in out instead. */
static void rebase_err(char *err, size_t errlen, const char *tmp,
		       const char *out)
{
	char *at = strstr(err, tmp), buf[1024];
	if (!at)
		return;
	snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - err), err, out,
		 at + strlen(tmp));
	snprintf(err, errlen, "%s", buf);
}

int od_export(const char *in_dir, const char *out_dir, struct od_summary *s,
	      char *err, size_t errlen)
{
	struct exporter x = { .sum = s, .err = err, .errlen = errlen };
	static const struct pq_column fcols[] = {
		{ "id", PQ_INT32, false, true },
		{ "duration", PQ_INT64, false, false },
		{ "cpu_usage", PQ_DOUBLE, false, false },
	};
	static const char *const outputs[] = { "tasks.parquet",
		"fragments.parquet", "topology.json", "ids.json", NULL };
	struct pq_options o = od_parquet_options();
	pq_writer *tasks = NULL;
	char path[4096], tmp[4096] = "", **dirs;
	int ndirs, rc = -1;

	memset(s, 0, sizeof(*s));
	dirs = od_node_dirs(in_dir, &ndirs, err, errlen);
	if (!dirs)
		return -1;
	/* every file is written into a directory beside out, which takes
	 * out's place once all are whole: all of them or none */
	if (kx_tmpdir_beside(out_dir, tmp, sizeof(tmp), err, errlen) < 0) {
		tmp[0] = 0;
		goto out;
	}
	if (od_path(path, sizeof(path), "%s/fragments.parquet", tmp) < 0) {
		od_err(err, errlen, "%s: path too long", out_dir);
		goto out;
	}
	x.frags = pq_open(path, "resource_state", fcols, 3, &o, err, errlen);
	if (!x.frags)
		goto out;
	for (int i = 0; i < ndirs; i++) {
		if (od_path(path, sizeof(path), "%s/%s", in_dir, dirs[i]) < 0) {
			od_err(err, errlen, "%s: path too long", in_dir);
			goto out;
		}
		if (od_export_node(&x, path, dirs[i]) < 0)
			goto out;
	}
	if (write_tasks(&x, tmp, &tasks) < 0)
		goto out;
	s->nodes = x.nnodes;
	s->tasks = x.ntasks;
	rc = pq_close(x.frags, err, errlen);
	x.frags = NULL;
	if (rc == 0)
		rc = pq_close(tasks, err, errlen);
	tasks = NULL;
	if (rc == 0)
		rc = write_json(&x, tmp, "topology.json", topology(&x));
	if (rc == 0)
		rc = write_json(&x, tmp, "ids.json", ids(&x));
	if (rc == 0)
		rc = kx_publish_dir(tmp, out_dir, outputs, err, errlen) < 0 ? -1 : 0;
out:
	pq_abort(x.frags);
	pq_abort(tasks);
	if (rc < 0 && tmp[0]) {
		rebase_err(err, errlen, tmp, out_dir);
		kx_discard_dir(tmp);
	}
	for (int i = 0; i < ndirs; i++)
		free(dirs[i]);
	free(dirs);
	for (int i = 0; i < x.ntasks; i++)
		free(x.tasks[i].trace_id);
	free(x.tasks);
	for (int i = 0; i < x.nnodes; i++) {
		free(x.nodes[i].node_id);
		free(x.nodes[i].dir);
	}
	free(x.nodes);
	free(x.owners);
	free(x.heads);
	return rc;
}
