/* verify.c - checks an OpenDC export the way OpenDC reads it (opendc.h). */
#include "opendc.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../parquet/parquet.h"
#include "odutil.h"

struct want {
	const char *name;
	int type;
	bool required;
};

/* OpenDC's TaskSchemas.kt / FragmentSchemas.kt (v2.4f .. master).  Its
 * ReadSupport requests these columns and parquet-java (strict type
 * checking) then fails on a file column of another physical type, or one
 * less restrictive than requested (OPTIONAL where REQUIRED is asked); a
 * REQUIRED column where OPTIONAL is asked reads fine, and file columns not
 * requested are skipped.  A requested column absent from the file reads as
 * null, which the loader then dereferences: so all of them must be there. */
static const struct want task_cols[] = {
	{ "id", PQ_PT_INT32, true },
	{ "name", PQ_PT_BYTE_ARRAY, false },
	{ "submission_time", PQ_PT_INT64, true },
	{ "duration", PQ_PT_INT64, true },
	{ "cpu_count", PQ_PT_INT32, true },
	{ "cpu_capacity", PQ_PT_DOUBLE, true },
	{ "mem_capacity", PQ_PT_INT64, true },
};
static const struct want frag_cols[] = {
	{ "id", PQ_PT_INT32, true },
	{ "duration", PQ_PT_INT64, true },
	{ "cpu_usage", PQ_PT_DOUBLE, true },
};

static const char *type_name(int t)
{
	static const char *n[] = { "BOOLEAN", "INT32", "INT64", "INT96",
				   "FLOAT", "DOUBLE", "BYTE_ARRAY",
				   "FIXED_LEN_BYTE_ARRAY" };
	return t >= 0 && t < 8 ? n[t] : "a group";
}

/* Column index of each wanted column, checked; -1 on the first problem. */
static int check_schema(const struct pq_file *f, const char *file,
			const struct want *w, int nw, int *idx, char *err,
			size_t errlen)
{
	for (int k = 0; k < nw; k++) {
		idx[k] = -1;
		for (int c = 0; c < pq_ncolumns(f); c++)
			if (!strcmp(f->schema[c + 1].name, w[k].name))
				idx[k] = c;
		if (idx[k] < 0)
			return od_err(err, errlen, "%s: column '%s' missing",
				      file, w[k].name);
		const struct pq_schema_elem *s = &f->schema[idx[k] + 1];
		if (s->type != w[k].type)
			return od_err(err, errlen, "%s: column '%s' is %s, "
				      "OpenDC reads %s", file, w[k].name,
				      type_name(s->type), type_name(w[k].type));
		if (w[k].required && s->repetition != PQ_REQUIRED)
			return od_err(err, errlen, "%s: column '%s' is not "
				      "REQUIRED, OpenDC reads it REQUIRED",
				      file, w[k].name);
		if (s->repetition == PQ_REPEATED)
			return od_err(err, errlen, "%s: column '%s' is "
				      "REPEATED", file, w[k].name);
		if (w[k].type == PQ_PT_BYTE_ARRAY && !s->logical_string &&
		    s->converted_type != 0)
			return od_err(err, errlen, "%s: column '%s' is not "
				      "annotated STRING", file, w[k].name);
	}
	return 0;
}

struct vtask {
	int64_t id, duration, sum, nfrag;
};

static int by_id(const void *a, const void *b)
{
	const struct vtask *p = a, *q = b;
	return p->id < q->id ? -1 : p->id > q->id;
}

static struct vtask *find(struct vtask *t, int64_t n, int64_t id)
{
	struct vtask key = { .id = id };
	return bsearch(&key, t, n, sizeof(*t), by_id);
}

static int read_cols(struct pq_file *f, int g, const int *idx, int n,
		     struct pq_values *v, const char *file, char *err,
		     size_t errlen)
{
	char e[256];
	for (int k = 0; k < n; k++) {
		if (pq_read_column(f, g, idx[k], &v[k], e, sizeof(e)) < 0) {
			for (int j = 0; j < k; j++)
				pq_values_free(&v[j]);
			return od_err(err, errlen, "%s: row group %d: %s", file,
				      g, e);
		}
		if (v[k].n != f->row_groups[g].num_rows) {
			for (int j = 0; j <= k; j++)
				pq_values_free(&v[j]);
			return od_err(err, errlen, "%s: row group %d: column "
				      "lengths differ", file, g);
		}
	}
	return 0;
}

static void free_cols(struct pq_values *v, int n)
{
	for (int k = 0; k < n; k++)
		pq_values_free(&v[k]);
}

static int check_tasks(const char *dir, struct vtask **out, int64_t *nout,
		       char *err, size_t errlen)
{
	char path[4096];
	struct pq_file *f;
	int idx[7], rc = -1;
	int64_t n = 0, row = 0;
	struct vtask *t = NULL;

	if (od_path(path, sizeof(path), "%s/tasks.parquet", dir) < 0)
		return od_err(err, errlen, "%s: path too long", dir);
	f = pq_read_open(path, err, errlen);
	if (!f)
		return -1;
	if (check_schema(f, "tasks.parquet", task_cols, 7, idx, err,
			 errlen) < 0)
		goto out;
	t = calloc(f->num_rows > 0 ? f->num_rows : 1, sizeof(*t));
	if (!t || f->num_rows < 0) {
		od_err(err, errlen, "tasks.parquet: out of memory");
		goto out;
	}
	for (int g = 0; g < f->nrow_groups; g++) {
		struct pq_values v[7];
		if (read_cols(f, g, idx, 7, v, "tasks.parquet", err, errlen) < 0)
			goto out;
		for (int64_t i = 0; i < v[0].n; i++, row++) {
			const char *bad = NULL;
			if (row >= f->num_rows)
				bad = "more rows than the footer says";
			else if (v[0].null[i] || v[0].i64[i] < 0)
				bad = "id negative";
			else if (v[2].i64[i] < 0)
				bad = "submission_time negative";
			else if (v[3].i64[i] < 0)
				bad = "duration negative";
			else if (v[4].i64[i] < 1)
				bad = "cpu_count below 1";
			else if (!(v[5].f64[i] >= 0) || isinf(v[5].f64[i]))
				bad = "cpu_capacity negative or not finite";
			else if (v[6].i64[i] < 0)
				bad = "mem_capacity negative";
			if (bad) {
				od_err(err, errlen, "tasks.parquet: row %lld: %s",
				       (long long)row, bad);
				free_cols(v, 7);
				goto out;
			}
			t[n++] = (struct vtask){ .id = v[0].i64[i],
						 .duration = v[3].i64[i] };
		}
		free_cols(v, 7);
	}
	if (n != f->num_rows) {
		od_err(err, errlen, "tasks.parquet: %lld rows, footer says %lld",
		       (long long)n, (long long)f->num_rows);
		goto out;
	}
	qsort(t, n, sizeof(*t), by_id);
	for (int64_t i = 1; i < n; i++)
		if (t[i].id == t[i - 1].id) {
			od_err(err, errlen, "tasks.parquet: id %lld appears "
			       "twice", (long long)t[i].id);
			goto out;
		}
	*out = t;
	*nout = n;
	t = NULL;
	rc = 0;
out:
	free(t);
	pq_read_close(f);
	return rc;
}

static int check_fragments(const char *dir, struct vtask *t, int64_t nt,
			   int64_t *nfrag, char *err, size_t errlen)
{
	char path[4096];
	struct pq_file *f;
	int idx[3], rc = -1;
	int64_t row = 0;

	if (od_path(path, sizeof(path), "%s/fragments.parquet", dir) < 0)
		return od_err(err, errlen, "%s: path too long", dir);
	f = pq_read_open(path, err, errlen);
	if (!f)
		return -1;
	if (check_schema(f, "fragments.parquet", frag_cols, 3, idx, err,
			 errlen) < 0)
		goto out;
	for (int g = 0; g < f->nrow_groups; g++) {
		struct pq_values v[3];
		if (read_cols(f, g, idx, 3, v, "fragments.parquet", err,
			      errlen) < 0)
			goto out;
		for (int64_t i = 0; i < v[0].n; i++, row++) {
			struct vtask *task = find(t, nt, v[0].i64[i]);
			const char *bad = NULL;
			if (!task)
				bad = "its id has no task in tasks.parquet";
			else if (v[1].i64[i] < 0)
				bad = "duration negative";
			else if (!(v[2].f64[i] >= 0) || isinf(v[2].f64[i]))
				bad = "cpu_usage negative or not finite";
			if (bad) {
				od_err(err, errlen, "fragments.parquet: row %lld "
				       "(id %lld): %s", (long long)row,
				       (long long)v[0].i64[i], bad);
				free_cols(v, 3);
				goto out;
			}
			task->sum += v[1].i64[i];
			task->nfrag++;
		}
		free_cols(v, 3);
	}
	*nfrag = row;
	rc = 0;
out:
	pq_read_close(f);
	return rc;
}

/* ids.json, when present: every task named there exists and its window
 * matches its duration. */
static int check_ids(const char *dir, struct vtask *t, int64_t nt, char *err,
		     size_t errlen)
{
	char path[4096];
	json_error_t je;
	json_t *a;
	size_t i;
	json_t *o;
	int rc = 0;

	if (od_path(path, sizeof(path), "%s/ids.json", dir) < 0)
		return od_err(err, errlen, "%s: path too long", dir);
	if (access(path, F_OK) != 0)
		return 0;
	a = json_load_file(path, 0, &je);
	if (!json_is_array(a)) {
		json_decref(a);
		return od_err(err, errlen, "ids.json:%d: not a JSON array%s%s",
			      je.line, *je.text ? ": " : "", je.text);
	}
	if ((int64_t)json_array_size(a) != nt)
		rc = od_err(err, errlen, "ids.json: %zu tasks, tasks.parquet "
			    "has %lld", json_array_size(a), (long long)nt);
	json_array_foreach(a, i, o) {
		int64_t id, s, e;
		struct vtask *task;
		if (rc)
			break;
		if (od_get_int(o, "id", &id) < 0 ||
		    od_get_int(o, "ts_start", &s) < 0 ||
		    od_get_int(o, "ts_end", &e) < 0)
			rc = od_err(err, errlen, "ids.json: entry %zu: id, "
				    "ts_start or ts_end missing", i);
		else if (!(task = find(t, nt, id)))
			rc = od_err(err, errlen, "ids.json: id %lld is not in "
				    "tasks.parquet", (long long)id);
		else if (task->duration != e - s)
			rc = od_err(err, errlen, "task %lld: duration %lld, but "
				    "ts_end - ts_start = %lld", (long long)id,
				    (long long)task->duration,
				    (long long)(e - s));
	}
	json_decref(a);
	return rc;
}

int od_verify(const char *out_dir, struct od_verify *v, char *err,
	      size_t errlen)
{
	struct vtask *t = NULL;
	int64_t nt = 0;
	int rc = -1;

	memset(v, 0, sizeof(*v));
	if (check_tasks(out_dir, &t, &nt, err, errlen) < 0)
		return -1;
	if (check_fragments(out_dir, t, nt, &v->fragments, err, errlen) < 0)
		goto out;
	for (int64_t i = 0; i < nt; i++) {
		if (t[i].nfrag == 0) {
			od_err(err, errlen, "task %lld has no fragments (OpenDC "
			       "would drop it)", (long long)t[i].id);
			goto out;
		}
		if (t[i].sum != t[i].duration) {
			od_err(err, errlen, "task %lld: fragments add up to %lld "
			       "ms, its duration is %lld ms", (long long)t[i].id,
			       (long long)t[i].sum, (long long)t[i].duration);
			goto out;
		}
	}
	if (check_ids(out_dir, t, nt, err, errlen) < 0)
		goto out;
	v->tasks = nt;
	rc = 0;
out:
	free(t);
	return rc;
}
