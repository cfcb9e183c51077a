/* cts.c - the OpenDC exporter's input: a node directory's CTS files read
 * into tasks, owners and samples (see exporter.h). */
#include "exporter.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "odutil.h"
#include "samples.h"


static int parse_nodes(struct exporter *x, const char *path,
		       const char *dirname)
{
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je), *arr;
	int rc = -1;

	if (!root)
		return od_err(x->err, x->errlen, "%s:%d: %s", path, je.line,
			      je.text);
	x->sum->input_bytes += od_file_size(path);
	arr = root;
	if (json_is_object(root) && json_is_array(json_object_get(root, "nodes")))
		arr = json_object_get(root, "nodes");
	size_t n = json_is_array(arr) ? json_array_size(arr) : 1;
	if (n == 0) {
		od_err(x->err, x->errlen, "%s: no node", path);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_is_array(arr) ? json_array_get(arr, i) : arr;
		struct node nd = { 0 };
		const char *id = json_string_value(json_object_get(o, "node_id"));
		const char *bad = NULL;
		if (!json_is_object(o) || !id) {
			od_err(x->err, x->errlen, "%s: node %zu: no node_id",
			       path, i);
			goto out;
		}
		if (od_get_num(o, "cpu_freq_mhz", &nd.freq_mhz) < 0 ||
		    !(nd.freq_mhz > 0)) {
			od_err(x->err, x->errlen, "%s: node %s: cpu_freq_mhz "
			       "missing or not positive", path, id);
			goto out;
		}
		int r = 0;
		char range[64];
		if (nd.freq_mhz > OD_MAX_FREQ_MHZ) {
			bad = "cpu_freq_mhz", r = -2;
			snprintf(range, sizeof(range), "up to %.0f MHz",
				 OD_MAX_FREQ_MHZ);
		} else if ((r = od_get_range(o, "cpu_cores", 1, OD_MAX_CORES,
					     &nd.cores)) < 0) {
			bad = "cpu_cores";
			snprintf(range, sizeof(range), "1..%lld", OD_MAX_CORES);
		} else if ((r = od_get_range(o, "mem_mb", 0, OD_MAX_MEM_MB,
					     &nd.mem_mb)) < 0) {
			bad = "mem_mb";
			snprintf(range, sizeof(range), "0..%lld MiB",
				 OD_MAX_MEM_MB);
		}
		if (bad) {
			int line = od_key_line(path, bad, i, n);
			char at[32] = "";
			if (line)
				snprintf(at, sizeof(at), ":%d", line);
			if (r == -2)
				od_err(x->err, x->errlen, "%s%s: node %s: %s out "
				       "of range (%s)", path, at, id, bad, range);
			else
				od_err(x->err, x->errlen, "%s: node %s: %s "
				       "missing or not a number", path, id, bad);
			goto out;
		}
		struct node *nn = realloc(x->nodes, (x->nnodes + 1) * sizeof(*nn));
		if (!nn) {
			od_err(x->err, x->errlen, "out of memory");
			goto out;
		}
		x->nodes = nn;
		nd.node_id = strdup(id);
		nd.dir = strdup(dirname);
		x->nodes[x->nnodes++] = nd;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* Node index for an invocation of the directory whose nodes start at
 * first: the one named by node_id, else the directory's first. */
static int node_for(struct exporter *x, int first, const char *node_id)
{
	for (int i = first; node_id && i < x->nnodes; i++)
		if (!strcmp(x->nodes[i].node_id, node_id))
			return i;
	return first;
}

struct inv_ctx {
	struct exporter *x;
	int first_node;
};

static int on_invocation(void *ud, json_t *o, const char *where)
{
	struct inv_ctx *c = ud;
	struct exporter *x = c->x;
	struct task t = { 0 };
	const char *trace_id = json_string_value(json_object_get(o, "trace_id"));

	if (!trace_id)
		return od_err(x->err, x->errlen, "%s: trace_id missing or "
			      "not a string", where);
	if (od_get_range(o, "pid", 1, OD_MAX_PID, &t.pid) < 0)
		return od_err(x->err, x->errlen, "%s: pid missing or not a "
			      "positive integer up to %d", where, OD_MAX_PID);
	if (od_get_range(o, "ts_start", 0, OD_MAX_MS, &t.ts_start) < 0)
		return od_err(x->err, x->errlen, "%s: ts_start missing, "
			      "negative or out of range", where);
	int r = od_get_range(o, "ts_end", 0, OD_MAX_MS, &t.ts_end);
	if (r == -2)
		return od_err(x->err, x->errlen, "%s: ts_end out of range "
			      "(0..%lld ms)", where, OD_MAX_MS);
	if (r < 0)
		return od_err(x->err, x->errlen, "%s: ts_end missing (task "
			      "still running?)", where);
	if (t.ts_end < t.ts_start)
		return od_err(x->err, x->errlen, "%s: ts_end is before "
			      "ts_start", where);
	r = od_get_int(o, "ts_enqueue", &t.ts_enqueue);
	if (r == -1)
		t.ts_enqueue = t.ts_start;
	if (r == -2 || t.ts_enqueue > OD_MAX_MS)
		return od_err(x->err, x->errlen, "%s: ts_enqueue out of range "
			      "(0..%lld ms)", where, OD_MAX_MS);
	if (t.ts_enqueue < 0)
		return od_err(x->err, x->errlen, "%s: ts_enqueue negative",
			      where);
	r = od_get_range(o, "peak_rss_kb", 0, OD_MAX_RSS_KB, &t.exit_peak_kib);
	if (r == -2 || (r == -1 && json_object_get(o, "peak_rss_kb")))
		return od_err(x->err, x->errlen, "%s: peak_rss_kb not a number "
			      "in 0..2^40 KiB", where);
	if (x->ntasks >= INT32_MAX)
		return od_err(x->err, x->errlen, "%s: too many tasks", where);
	if (x->ntasks + 1 > x->taskcap) {
		int cap = x->taskcap ? x->taskcap * 2 : 256;
		struct task *n = realloc(x->tasks, cap * sizeof(*n));
		if (!n)
			return od_err(x->err, x->errlen, "out of memory");
		x->tasks = n;
		x->taskcap = cap;
	}
	t.trace_id = strdup(trace_id);
	t.node = node_for(x, c->first_node,
			  json_string_value(json_object_get(o, "node_id")));
	t.cursor = t.ts_start;
	x->tasks[x->ntasks++] = t;
	if (!t.trace_id ||
	    od_add_owner(x, t.pid, x->ntasks - 1, t.ts_start, t.ts_end) < 0)
		return od_err(x->err, x->errlen, "out of memory");
	return 0;
}

struct proc {
	int64_t pid, ppid, start, end, peak_kib;
};

struct procs {
	struct exporter *x;
	struct proc *v;
	size_t n, cap;
};

static int on_proc(void *ud, json_t *o, const char *where)
{
	struct procs *p = ud;
	struct proc r = { .end = INT64_MAX };

	if (od_get_range(o, "pid", 1, OD_MAX_PID, &r.pid) < 0 ||
	    od_get_range(o, "ppid", 0, OD_MAX_PID, &r.ppid) < 0 ||
	    od_get_range(o, "start", 0, OD_MAX_MS, &r.start) < 0)
		return od_err(p->x->err, p->x->errlen, "%s: pid, ppid or "
			      "start missing, not integers or out of range",
			      where);
	if (od_get_range(o, "end", 0, OD_MAX_MS, &r.end) == -2)
		return od_err(p->x->err, p->x->errlen, "%s: end out of range "
			      "(0..%lld ms)", where, OD_MAX_MS);
	int k = od_get_range(o, "peak_rss_kb", 0, OD_MAX_RSS_KB, &r.peak_kib);
	if (k == -2 || (k == -1 && json_object_get(o, "peak_rss_kb")))
		return od_err(p->x->err, p->x->errlen, "%s: peak_rss_kb not a "
			      "number in 0..2^40 KiB", where);
	if (r.end < r.start)
		return od_err(p->x->err, p->x->errlen, "%s: end is before "
			      "start", where);
	if (p->n + 1 > p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 256;
		struct proc *v = realloc(p->v, cap * sizeof(*v));
		if (!v)
			return od_err(p->x->err, p->x->errlen, "out of memory");
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = r;
	return 0;
}

static void raise_exit_peak(struct task *t, int64_t kib)
{
	if (kib > t->exit_peak_kib)
		t->exit_peak_kib = kib;
}

static int by_start(const void *a, const void *b)
{
	const struct proc *p = a, *q = b;
	return p->start < q->start ? -1 : p->start > q->start;
}

/* Descendants of the tasks' pids, parents first (by start time). */
static int load_procs(struct exporter *x, const char *path)
{
	struct procs p = { .x = x };
	int rc;

	if (access(path, F_OK) != 0)
		return 0;
	rc = od_each_line(path, on_proc, &p, &x->sum->input_bytes, x->err,
			  x->errlen);
	if (rc == 0)
		qsort(p.v, p.n, sizeof(*p.v), by_start);
	for (size_t i = 0; rc == 0 && i < p.n; i++) {
		const struct proc *r = &p.v[i];
		int t = od_owner_of(x, r->pid, r->start + 1, 1);
		if (t >= 0) {		/* a task's own pid */
			raise_exit_peak(&x->tasks[t], r->peak_kib);
			continue;
		}
		t = od_owner_of(x, r->ppid, r->start + 1, 1);
		if (t < 0)
			continue;
		raise_exit_peak(&x->tasks[t], r->peak_kib);
		int64_t end = r->end < x->tasks[t].ts_end ? r->end
							   : x->tasks[t].ts_end;
		rc = od_add_owner(x, r->pid, t, r->start, end);
	}
	free(p.v);
	return rc;
}

static int on_sample(void *ud, const struct od_sample *s, const char *where)
{
	struct exporter *x = ud;
	int64_t ts = s->i[OD_TS], pid = s->i[OD_PID], dt = s->i[OD_DT];
	int64_t rss = s->i[OD_RSS];
	double cpu = s->num[OD_CPU];
	int t;

	x->sum->samples++;
	if (!s->num_ok[OD_TS] || !s->num_ok[OD_PID] || !s->num_ok[OD_DT] ||
	    !s->num_ok[OD_CPU] || !s->num_ok[OD_RSS])
		return od_err(x->err, x->errlen, "%s: ts_ms, pid, dt_ms, "
			      "cpu_ms or rss_kb missing or not numbers", where);
	/* a number no integer holds exactly (beyond 9e15) */
	static const struct { int k; const char *name; } ints[] = {
		{ OD_TS, "ts_ms" }, { OD_PID, "pid" }, { OD_DT, "dt_ms" },
		{ OD_RSS, "rss_kb" },
	};
	for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++)
		if (!s->int_ok[ints[k].k])
			return od_err(x->err, x->errlen, "%s: %s out of range",
				      where, ints[k].name);
	if (dt < 0 || !(cpu >= 0) || isinf(cpu) || rss < 0 || pid <= 0)
		return od_err(x->err, x->errlen, "%s: negative pid, dt_ms, "
			      "cpu_ms or rss_kb", where);
	if (ts < 0 || ts > OD_MAX_MS)
		return od_err(x->err, x->errlen, "%s: ts_ms out of range "
			      "(0..%lld ms)", where, OD_MAX_MS);
	if (dt > OD_MAX_MS)
		return od_err(x->err, x->errlen, "%s: dt_ms out of range "
			      "(0..%lld ms)", where, OD_MAX_MS);
	if (cpu > (double)OD_MAX_MS)
		return od_err(x->err, x->errlen, "%s: cpu_ms out of range "
			      "(0..%lld ms)", where, OD_MAX_MS);
	if (rss > OD_MAX_RSS_KB || pid > OD_MAX_PID)
		return od_err(x->err, x->errlen, "%s: %s out of range (%s)",
			      where, pid > OD_MAX_PID ? "pid" : "rss_kb",
			      pid > OD_MAX_PID ? "1..2147483647" :
			      "0..2^40 KiB");
	int o = od_owner_index(x, pid, ts, dt);
	if (o < 0 && s->int_ok[OD_PPID]) {
		t = od_owner_of(x, s->i[OD_PPID], ts, dt);
		if (t >= 0) {
			if (od_add_owner(x, pid, t, ts - dt - 1,
					 x->tasks[t].ts_end) < 0)
				return -1;
			o = x->nowners - 1;
		}
	}
	if (o < 0)
		return 0;
	return od_add_sample(x, o, ts, dt, cpu, rss);
}

/* One node directory: DIR/CTS/{nodes.json,invocations.jsonl,...}. */
int od_export_node(struct exporter *x, const char *dir, const char *dirname)
{
	char path[4096];
	struct inv_ctx ic = { x, x->nnodes };
	int first_task = x->ntasks;

	if (od_path(path, sizeof(path), "%s/CTS/nodes.json", dir) < 0)
		return od_err(x->err, x->errlen, "%s: path too long", dir);
	if (parse_nodes(x, path, dirname) < 0)
		return -1;
	if (od_path(path, sizeof(path), "%s/CTS/invocations.jsonl", dir) < 0)
		return od_err(x->err, x->errlen, "%s: path too long", dir);
	if (od_each_line(path, on_invocation, &ic, &x->sum->input_bytes,
			 x->err, x->errlen) < 0)
		return -1;
	if (od_path(path, sizeof(path), "%s/CTS/procs.jsonl", dir) < 0)
		return od_err(x->err, x->errlen, "%s: path too long", dir);
	if (load_procs(x, path) < 0)
		return -1;
	if (od_path(path, sizeof(path), "%s/CTS/proc_metrics.jsonl", dir) < 0)
		return od_err(x->err, x->errlen, "%s: path too long", dir);
	if (od_each_sample(path, on_sample, x, &x->sum->input_bytes, x->err,
			   x->errlen) < 0)
		return -1;
	if (od_finish_tasks(x, first_task) < 0)
		return -1;
	od_reset_owners(x);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* DIR itself when it has CTS/, else its subdirectories that have one. */
char **od_node_dirs(const char *in, int *n, char *err, size_t errlen)
{
	char path[4096], **v = NULL;
	struct stat st;
	DIR *d;
	struct dirent *e;

	*n = 0;
	if (od_path(path, sizeof(path), "%s/CTS", in) < 0) {
		od_err(err, errlen, "%s: path too long", in);
		return NULL;
	}
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		v = calloc(1, sizeof(*v));
		if (v && (v[0] = strdup("."))) {
			*n = 1;
			return v;
		}
		free(v);
		od_err(err, errlen, "out of memory");
		return NULL;
	}
	d = opendir(in);
	if (!d) {
		od_err(err, errlen, "%s: %s", in, strerror(errno));
		return NULL;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (od_path(path, sizeof(path), "%s/%s/CTS", in, e->d_name) < 0 ||
		    stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
			continue;
		char **nv = realloc(v, (*n + 1) * sizeof(*v));
		if (!nv || !(nv[*n] = strdup(e->d_name))) {
			v = nv ? nv : v;
			break;
		}
		v = nv;
		(*n)++;
	}
	closedir(d);
	if (*n == 0) {
		od_err(err, errlen, "%s: no CTS/ directory in it or in its "
		       "subdirectories", in);
		free(v);
		return NULL;
	}
	qsort(v, *n, sizeof(*v), by_name);
	return v;
}
