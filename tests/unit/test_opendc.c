/* Units for the OpenDC exporter and verifier (bindings/opendc): a hand-made
 * CTS fixture exported, read back with the Parquet reader and compared with
 * fragments worked out by hand; malformed input; files the verifier must
 * refuse.  tests/cli/opendc_*.sh read exports with hyparquet. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../bindings/opendc/opendc.h"
#include "../../bindings/opendc/samples.h"
#include "../../bindings/parquet/parquet.h"
#include "tmpdir.h"

static char root[512];

static void put(const char *rel, const char *text)
{
	char path[512], dir[512];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	snprintf(dir, sizeof(dir), "%s", path);
	for (char *p = dir + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		mkdir(dir, 0755);
		*p = '/';
	}
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	assert_int_equal(kx_test_tmpdir(root, sizeof(root), "opendc"), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(kx_test_rmtree(root), 0);
	return 0;
}

static const char *NODES =
    "{\"node_id\":\"n1\",\"stage\":\"cloud\",\"cpu_cores\":4,\"mem_mb\":15872,"
    "\"cpu_model\":\"x\",\"cpu_freq_mhz\":3000.5}\n";
static const char *INVOCATIONS =
    "{\"trace_id\":\"t1\",\"pid\":100,\"node_id\":\"n1\",\"ts_enqueue\":1000,\"ts_start\":1100,\"ts_end\":2150,\"exit_code\":0}\n"
    "{\"trace_id\":\"t2\",\"pid\":200,\"ts_enqueue\":1400,\"ts_start\":1500,\"ts_end\":1500}\n"
    "\n"
    "{\"trace_id\":\"t3\",\"pid\":300,\"ts_start\":2000.4,\"ts_end\":3000}\n";
/* t1: ticks every 200 ms; the last one runs past ts_end (clipped).
 * t3: its child 301 (ppid in the rows) sampled with it; no sample at the
 * end (tail). */
static const char *SAMPLES_PPID =
    "{\"ts_ms\":1300,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":100,\"rss_kb\":5000}\n"
    "{\"ts_ms\":1500,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":200,\"rss_kb\":5000}\n"
    "{\"ts_ms\":1700,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":400,\"rss_kb\":5000}\n"
    "{\"ts_ms\":1750,\"pid\":999,\"dt_ms\":200,\"cpu_ms\":400,\"rss_kb\":5000}\n"
    "{\"ts_ms\":1900,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":0,\"rss_kb\":5000}\n"
    "{\"ts_ms\":2100,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":100,\"rss_kb\":5000}\n"
    "{\"ts_ms\":2200,\"pid\":300,\"dt_ms\":200,\"cpu_ms\":100,\"rss_kb\":1000}\n"
    "{\"ts_ms\":2201,\"pid\":301,\"ppid\":300,\"dt_ms\":200,\"cpu_ms\":150,\"rss_kb\":2000}\n"
    "{\"ts_ms\":2300,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":200,\"rss_kb\":5000}\n"
    "{\"ts_ms\":2400,\"pid\":300,\"dt_ms\":200,\"cpu_ms\":100,\"rss_kb\":1000}\n"
    "{\"ts_ms\":2400,\"pid\":301,\"dt_ms\":200,\"cpu_ms\":200,\"rss_kb\":3000}\n";

struct frag {
	int64_t id, duration;
	double usage;
};

static const double F = 3000.5;
static const struct frag want_frags[] = {
	{ 0, 200, 0.5 * F }, { 0, 200, 1.0 * F }, { 0, 200, 2.0 * F },
	{ 0, 200, 0 }, { 0, 200, 0.5 * F }, { 0, 50, 1.0 * F },
	{ 1, 0, 0 },
	{ 2, 200, 1.25 * F }, { 2, 200, 1.5 * F }, { 2, 600, 1.5 * F },
};

/* Fragments of the export, per id in file order. */
static int read_frags(const char *out, struct frag *f, int max)
{
	char path[512], err[256];
	int n = 0;
	snprintf(path, sizeof(path), "%s/fragments.parquet", out);
	struct pq_file *p = pq_read_open(path, err, sizeof(err));
	if (!p)
		fail_msg("%s", err);
	for (int g = 0; g < p->nrow_groups; g++) {
		struct pq_values v[3];
		for (int c = 0; c < 3; c++)
			assert_int_equal(pq_read_column(p, g, c, &v[c], err, sizeof(err)), 0);
		for (int64_t i = 0; i < v[0].n && n < max; i++)
			f[n++] = (struct frag){ v[0].i64[i], v[1].i64[i], v[2].f64[i] };
		for (int c = 0; c < 3; c++)
			pq_values_free(&v[c]);
	}
	pq_read_close(p);
	/* stable sort by id keeps each task's file order */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && f[j - 1].id > f[j].id; j--) {
			struct frag t = f[j];
			f[j] = f[j - 1];
			f[j - 1] = t;
		}
	return n;
}

static void check_fixture_export(const char *out)
{
	struct frag got[64];
	int n = read_frags(out, got, 64);
	assert_int_equal(n, sizeof(want_frags) / sizeof(want_frags[0]));
	for (int i = 0; i < n; i++) {
		assert_int_equal(got[i].id, want_frags[i].id);
		assert_int_equal(got[i].duration, want_frags[i].duration);
		assert_true(got[i].usage == want_frags[i].usage);
	}

	char path[512], err[256];
	snprintf(path, sizeof(path), "%s/tasks.parquet", out);
	struct pq_file *p = pq_read_open(path, err, sizeof(err));
	assert_non_null(p);
	assert_string_equal(p->schema[0].name, "resource");
	assert_true(p->schema[3].logical_timestamp);	/* as OpenDC's schema */
	assert_int_equal(p->num_rows, 3);
	struct pq_values v[7];
	for (int c = 0; c < 7; c++)
		assert_int_equal(pq_read_column(p, 0, c, &v[c], err, sizeof(err)), 0);
	const char *names[] = { "t1", "t2", "t3" };
	int64_t sub[] = { 1000, 1400, 2000 }, dur[] = { 1050, 0, 1000 };
	int64_t count[] = { 2, 1, 2 }, mem[] = { 5120, 0, 4096 };
	for (int i = 0; i < 3; i++) {
		assert_int_equal(v[0].i64[i], i);
		assert_string_equal(v[1].str[i], names[i]);
		assert_int_equal(v[2].i64[i], sub[i]);
		assert_int_equal(v[3].i64[i], dur[i]);
		assert_int_equal(v[4].i64[i], count[i]);
		assert_true(v[5].f64[i] == count[i] * F);
		assert_int_equal(v[6].i64[i], mem[i]);
	}
	for (int c = 0; c < 7; c++)
		pq_values_free(&v[c]);
	pq_read_close(p);
}

static void export_fixture_with_ppid(void **state)
{
	(void)state;
	char out[512], err[512];
	struct od_summary s;
	struct od_verify v;
	put("run/CTS/nodes.json", NODES);
	put("run/CTS/invocations.jsonl", INVOCATIONS);
	put("run/CTS/proc_metrics.jsonl", SAMPLES_PPID);
	snprintf(out, sizeof(out), "%s/out", root);
	char in[512];
	snprintf(in, sizeof(in), "%s/run", root);
	if (od_export(in, out, &s, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	assert_int_equal(s.tasks, 3);
	assert_int_equal(s.samples, 11);
	assert_int_equal(s.samples_used, 10);	/* not pid 999 */
	assert_int_equal(s.fragments, 10);
	check_fixture_export(out);
	if (od_verify(out, &v, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	assert_int_equal(v.tasks, 3);
	assert_int_equal(v.fragments, 10);

	/* topology.json with units, ids.json with the mapping */
	char path[512];
	snprintf(path, sizeof(path), "%s/topology.json", out);
	FILE *f = fopen(path, "r");
	char buf[2048] = { 0 };
	assert_true(fread(buf, 1, sizeof(buf) - 1, f) > 0);
	fclose(f);
	assert_non_null(strstr(buf, "\"coreSpeed\": \"3000 MHz\""));
	assert_non_null(strstr(buf, "\"memorySize\": \"15872 MiB\""));
	assert_non_null(strstr(buf, "\"coreCount\": 4"));
	snprintf(path, sizeof(path), "%s/ids.json", out);
	f = fopen(path, "r");
	memset(buf, 0, sizeof(buf));
	assert_true(fread(buf, 1, sizeof(buf) - 1, f) > 0);
	fclose(f);
	assert_non_null(strstr(buf, "\"trace_id\": \"t3\""));
}

static void export_fixture_with_procs_file(void **state)
{
	(void)state;
	char in[512], out[512], err[512];
	struct od_summary s;
	/* the same samples without ppid, the tree in procs.jsonl instead */
	char *samples = strdup(SAMPLES_PPID), *p = strstr(samples, "\"ppid\":300,");
	memmove(p, p + strlen("\"ppid\":300,"), strlen(p + strlen("\"ppid\":300,")) + 1);
	put("run/CTS/nodes.json", NODES);
	put("run/CTS/invocations.jsonl", INVOCATIONS);
	put("run/CTS/proc_metrics.jsonl", samples);
	put("run/CTS/procs.jsonl",
	    "{\"pid\":300,\"ppid\":1,\"start\":2000,\"end\":3000}\n"
	    "{\"pid\":301,\"ppid\":300,\"start\":2005,\"end\":2900}\n");
	snprintf(in, sizeof(in), "%s/run", root);
	snprintf(out, sizeof(out), "%s/out", root);
	if (od_export(in, out, &s, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	check_fixture_export(out);

	/* neither procs.jsonl nor ppid: by pid only, 301 is not t3's */
	snprintf(out, sizeof(out), "%s/run/CTS/procs.jsonl", root);
	unlink(out);
	snprintf(out, sizeof(out), "%s/out2", root);
	assert_int_equal(od_export(in, out, &s, err, sizeof(err)), 0);
	assert_int_equal(s.samples_used, 8);
	struct frag got[64];
	int n = read_frags(out, got, 64);
	assert_int_equal(n, 10);
	assert_true(got[7].usage == 0.5 * F);
	assert_true(got[8].usage == 0.5 * F);
	free(samples);
}

/* One process counted once per tick: t1's parent 100 idles (a row a
 * second, dt 1000), its child 101 burns one core (a row every 50 ms, 20
 * MiB).  The parent's row stretches its tick over 500 ms, which took in
 * all three of the child's rows: 3 cores and 61 MiB for one core and 21. */
static void a_process_counts_once_per_tick(void **state)
{
	(void)state;
	char in[512], out[512], err[512];
	struct od_summary s;
	put("run/CTS/nodes.json", NODES);
	put("run/CTS/invocations.jsonl",
	    "{\"trace_id\":\"t1\",\"pid\":100,\"ts_start\":0,\"ts_end\":1200}\n");
	put("run/CTS/proc_metrics.jsonl",
	    "{\"ts_ms\":1000,\"pid\":100,\"dt_ms\":1000,\"cpu_ms\":0,\"rss_kb\":1024}\n"
	    "{\"ts_ms\":1050,\"pid\":101,\"ppid\":100,\"dt_ms\":50,\"cpu_ms\":50,\"rss_kb\":20480}\n"
	    "{\"ts_ms\":1100,\"pid\":101,\"ppid\":100,\"dt_ms\":50,\"cpu_ms\":50,\"rss_kb\":20480}\n"
	    "{\"ts_ms\":1150,\"pid\":101,\"ppid\":100,\"dt_ms\":50,\"cpu_ms\":50,\"rss_kb\":20480}\n");
	snprintf(in, sizeof(in), "%s/run", root);
	snprintf(out, sizeof(out), "%s/out", root);
	if (od_export(in, out, &s, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	struct frag got[64];
	int n = read_frags(out, got, 64);
	assert_true(n >= 3);
	for (int i = 0; i < n; i++)
		assert_true(got[i].usage <= 1.0 * F);
	char path[512];
	snprintf(path, sizeof(path), "%s/tasks.parquet", out);
	struct pq_file *p = pq_read_open(path, err, sizeof(err));
	assert_non_null(p);
	struct pq_values mem;
	assert_int_equal(pq_read_column(p, 0, 6, &mem, err, sizeof(err)), 0);
	assert_int_equal(mem.i64[0], 22020);	/* KB: 20 MiB + the parent's 1 MiB */
	pq_values_free(&mem);
	pq_read_close(p);
}

static void several_nodes_get_stable_unique_ids(void **state)
{
	(void)state;
	char in[512], out[512], err[512];
	struct od_summary s;
	struct od_verify v;
	put("run/b/CTS/nodes.json",
	    "[{\"node_id\":\"nb\",\"cpu_cores\":2,\"mem_mb\":1024,\"cpu_freq_mhz\":2000}]");
	put("run/b/CTS/invocations.jsonl",
	    "{\"trace_id\":\"b1\",\"pid\":100,\"ts_start\":0,\"ts_end\":100}\n");
	put("run/b/CTS/proc_metrics.jsonl",
	    "{\"ts_ms\":50,\"pid\":100,\"dt_ms\":50,\"cpu_ms\":50,\"rss_kb\":10}\n");
	put("run/a/CTS/nodes.json", NODES);
	put("run/a/CTS/invocations.jsonl", INVOCATIONS);
	put("run/a/CTS/proc_metrics.jsonl", SAMPLES_PPID);
	put("run/notanode/readme.txt", "x");
	snprintf(in, sizeof(in), "%s/run", root);
	snprintf(out, sizeof(out), "%s/out", root);
	if (od_export(in, out, &s, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	assert_int_equal(s.nodes, 2);
	assert_int_equal(s.tasks, 4);
	if (od_verify(out, &v, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	struct frag got[64];
	int n = read_frags(out, got, 64);
	assert_int_equal(n, 12);
	/* a's tasks first (0..2, as alone), then b's: pid 100 again, id 3 */
	for (int i = 0; i < 10; i++)
		assert_true(got[i].id == want_frags[i].id &&
			    got[i].duration == want_frags[i].duration);
	assert_int_equal(got[10].id, 3);
	assert_int_equal(got[10].duration, 50);
	assert_true(got[10].usage == 2000);
	assert_int_equal(got[11].duration, 50);
	char path[512], buf[4096] = { 0 };
	snprintf(path, sizeof(path), "%s/ids.json", out);
	FILE *f = fopen(path, "r");
	assert_true(fread(buf, 1, sizeof(buf) - 1, f) > 0);
	fclose(f);
	char *b1 = strstr(buf, "\"b1\"");
	assert_non_null(b1);
	assert_non_null(strstr(buf, "\"node_dir\": \"b\""));
}

/* Malformed input: the first problem as FILE:LINE, and no file written. */
static void expect_malformed(const char *rel, const char *text,
			     const char *want)
{
	char in[512], out[512], err[512], cmd[512];
	struct od_summary s;
	put("run/CTS/nodes.json", NODES);
	put("run/CTS/invocations.jsonl", INVOCATIONS);
	put("run/CTS/proc_metrics.jsonl", SAMPLES_PPID);
	put(rel, text);
	snprintf(in, sizeof(in), "%s/run", root);
	snprintf(out, sizeof(out), "%s/out", root);
	assert_int_equal(od_export(in, out, &s, err, sizeof(err)), -1);
	if (!strstr(err, want))
		fail_msg("error '%s' does not say '%s'", err, want);
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s' 2>/dev/null)\"", out);
	assert_int_equal(system(cmd), 0);
}

static void malformed_input_is_reported(void **state)
{
	(void)state;
	expect_malformed("run/CTS/invocations.jsonl",
			 "{\"trace_id\":\"t1\",\"pid\":100,\"ts_start\":1,\"ts_end\":2}\n"
			 "{\"trace_id\":\"t2\",\"pid\":101,\"ts_start\":1}\n",
			 "invocations.jsonl:2: ts_end missing");
	expect_malformed("run/CTS/proc_metrics.jsonl",
			 "{\"ts_ms\":1300,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":100,\"rss_kb\":5000}\n"
			 "\n{\"ts_ms\":1500,\"pid\":100,\n",
			 "proc_metrics.jsonl:3: invalid JSON");
	expect_malformed("run/CTS/proc_metrics.jsonl",
			 "{\"ts_ms\":1300,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":-1,\"rss_kb\":5000}\n",
			 "proc_metrics.jsonl:1: negative");
	expect_malformed("run/CTS/invocations.jsonl",
			 "{\"trace_id\":\"t1\",\"pid\":100,\"ts_start\":5,\"ts_end\":2}\n",
			 "invocations.jsonl:1: ts_end is before ts_start");
	expect_malformed("run/CTS/invocations.jsonl", "[1,2]\n",
			 "invocations.jsonl:1: not a JSON object");
	expect_malformed("run/CTS/nodes.json",
			 "{\"node_id\":\"n1\",\"cpu_cores\":4,\"mem_mb\":1}",
			 "cpu_freq_mhz missing");
	expect_malformed("run/CTS/nodes.json", "{\"node_id\":", "nodes.json:1");
	char path[512], out[512], err[512];
	struct od_summary s;
	put("run/CTS/nodes.json", NODES);
	snprintf(path, sizeof(path), "%s/run/CTS/proc_metrics.jsonl", root);
	unlink(path);
	snprintf(path, sizeof(path), "%s/run", root);
	snprintf(out, sizeof(out), "%s/out", root);
	assert_int_equal(od_export(path, out, &s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "proc_metrics.jsonl: No such file"));
	snprintf(path, sizeof(path), "%s/nothing", root);
	mkdir(path, 0755);
	assert_int_equal(od_export(path, out, &s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no CTS/ directory"));
}

/* Figures no trace can hold (they used to overflow into 0 or be written
 * as they were): FILE:LINE and the field, as for other malformed input. */
static void out_of_range_input_is_reported(void **state)
{
	(void)state;
	expect_malformed("run/CTS/proc_metrics.jsonl",
			 "{\"ts_ms\":1300,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":100,\"rss_kb\":5000}\n"
			 "{\"ts_ms\":1500,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":100,\"rss_kb\":9223372036854775807}\n",
			 "proc_metrics.jsonl:2: rss_kb out of range");
	expect_malformed("run/CTS/proc_metrics.jsonl",
			 "{\"ts_ms\":1300,\"pid\":100,\"dt_ms\":200,\"cpu_ms\":1e300,\"rss_kb\":5000}\n",
			 "proc_metrics.jsonl:1: cpu_ms out of range");
	expect_malformed("run/CTS/proc_metrics.jsonl",
			 "{\"ts_ms\":1300,\"pid\":100,\"dt_ms\":1e17,\"cpu_ms\":1,\"rss_kb\":5000}\n",
			 "proc_metrics.jsonl:1: dt_ms out of range");
	expect_malformed("run/CTS/invocations.jsonl",
			 "{\"trace_id\":\"t1\",\"pid\":100,\"ts_start\":1,\"ts_end\":2}\n"
			 "{\"trace_id\":\"t2\",\"pid\":101,\"ts_start\":1,\"ts_end\":9000000000000000000}\n",
			 "invocations.jsonl:2: ts_end out of range");
	expect_malformed("run/CTS/invocations.jsonl",
			 "{\"trace_id\":\"t1\",\"pid\":99999999999,\"ts_start\":1,\"ts_end\":2}\n",
			 "invocations.jsonl:1: pid");
	expect_malformed("run/CTS/nodes.json",
			 "[\n {\"node_id\":\"n0\",\"cpu_cores\":4,\"mem_mb\":1,\"cpu_freq_mhz\":2000},\n"
			 " {\"node_id\":\"n1\",\n  \"cpu_cores\":99999999999,\"mem_mb\":1,\"cpu_freq_mhz\":2000}\n]\n",
			 "nodes.json:4: node n1: cpu_cores out of range");
	expect_malformed("run/CTS/nodes.json",
			 "{\"node_id\":\"n1\",\"cpu_cores\":4,\"mem_mb\":1e30,\"cpu_freq_mhz\":2000}\n",
			 "nodes.json:1: node n1: mem_mb out of range");
	expect_malformed("run/CTS/nodes.json",
			 "{\"node_id\":\"n1\",\"cpu_cores\":4,\"mem_mb\":1,\"cpu_freq_mhz\":1e300}\n",
			 "nodes.json:1: node n1: cpu_freq_mhz out of range");
}

/* Writes tasks.parquet and fragments.parquet by hand into root/v. */
static void write_pair(enum pq_type dur_type, bool id_optional,
		       const int64_t *frag_ids, const int64_t *frag_durs, int nf)
{
	struct pq_column tc[] = {
		{ "id", PQ_INT32, id_optional, false },
		{ "name", PQ_STRING, true, false },
		{ "submission_time", PQ_INT64, false, false },
		{ "duration", dur_type, false, false },
		{ "cpu_count", PQ_INT32, false, false },
		{ "cpu_capacity", PQ_DOUBLE, false, false },
		{ "mem_capacity", PQ_INT64, false, false },
	};
	struct pq_column fc[] = {
		{ "id", PQ_INT32, false, false },
		{ "duration", PQ_INT64, false, false },
		{ "cpu_usage", PQ_DOUBLE, false, false },
	};
	char path[512], err[256];
	snprintf(path, sizeof(path), "%s/v", root);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/v/tasks.parquet", root);
	pq_writer *w = pq_open(path, "resource", tc, 7, NULL, err, sizeof(err));
	for (int id = 0; id < 2; id++) {
		pq_int32(w, 0, id);
		pq_string(w, 1, "x", 1);
		pq_int64(w, 2, 5);
		if (dur_type == PQ_INT32)
			pq_int32(w, 3, 100);
		else
			pq_int64(w, 3, 100);
		pq_int32(w, 4, 1);
		pq_double(w, 5, 2400);
		pq_int64(w, 6, 1000);
		assert_int_equal(pq_end_row(w), 0);
	}
	assert_int_equal(pq_close(w, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/v/fragments.parquet", root);
	w = pq_open(path, "resource_state", fc, 3, NULL, err, sizeof(err));
	for (int i = 0; i < nf; i++) {
		pq_int32(w, 0, (int32_t)frag_ids[i]);
		pq_int64(w, 1, frag_durs[i]);
		pq_double(w, 2, 100);
		assert_int_equal(pq_end_row(w), 0);
	}
	assert_int_equal(pq_close(w, err, sizeof(err)), 0);
}

static void expect_verify(const char *want)
{
	char dir[512], err[512];
	struct od_verify v;
	snprintf(dir, sizeof(dir), "%s/v", root);
	int rc = od_verify(dir, &v, err, sizeof(err));
	if (!want) {
		if (rc < 0)
			fail_msg("%s", err);
		return;
	}
	assert_int_equal(rc, -1);
	if (!strstr(err, want))
		fail_msg("error '%s' does not say '%s'", err, want);
}

static void verify_names_the_first_problem(void **state)
{
	(void)state;
	int64_t ids[] = { 0, 1, 0, 1 }, durs[] = { 60, 30, 40, 70 };
	write_pair(PQ_INT64, false, ids, durs, 4);
	expect_verify(NULL);
	write_pair(PQ_INT32, false, ids, durs, 4);
	expect_verify("column 'duration' is INT32, OpenDC reads INT64");
	write_pair(PQ_INT64, true, ids, durs, 4);
	expect_verify("column 'id' is not REQUIRED");
	int64_t short_durs[] = { 60, 30, 30, 70 };
	write_pair(PQ_INT64, false, ids, short_durs, 4);
	expect_verify("task 0: fragments add up to 90 ms, its duration is 100 ms");
	int64_t only0[] = { 0 }, d100[] = { 100 };
	write_pair(PQ_INT64, false, only0, d100, 1);
	expect_verify("task 1 has no fragments");
	int64_t stray[] = { 0, 1, 7 }, d3[] = { 100, 100, 1 };
	write_pair(PQ_INT64, false, stray, d3, 3);
	expect_verify("row 2 (id 7): its id has no task");
	int64_t neg[] = { 0, 1, 1 }, dn[] = { 100, 110, -10 };
	write_pair(PQ_INT64, false, neg, dn, 3);
	expect_verify("row 2 (id 1): duration negative");
	char path[512];
	snprintf(path, sizeof(path), "%s/v/tasks.parquet", root);
	unlink(path);
	expect_verify("tasks.parquet: No such file");
}

/* The fast sample scanner agrees with jansson wherever it answers, and
 * leaves every line jansson would reject (or it cannot read) to jansson. */
static void fast_sample_scanner_agrees_with_jansson(void **state)
{
	(void)state;
	static const char *fast[] = {
		"{\"ts_ms\":1700000000123,\"pid\":42,\"ppid\":1,\"dt_ms\":200,\"cpu_ms\":12.5,\"rss_kb\":2048}\n",
		" { \"pid\" : -7 , \"cpu_ms\" : 1e3 , \"x\" : 0.25E-2 , \"ts_ms\" : -0 }\r\n",
		"{\"ppid\":null,\"pid\":3,\"pid\":4,\"dt_ms\":199.5,\"rss_kb\":123456789012345678}",
		"{}",
		"{\"cpu_ms\":0.000001,\"dt_ms\":1E+2,\"unknown\":-0.0}",
	};
	static const char *slow[] = {
		"{\"ts_ms\":01}", "{\"a\":1,}", "{\"a\":1} x", "{\"a\" 1}", "{\"a\":-}",
		"{\"a\":1.}", "{\"a\":.5}", "{\"a\":1e}", "{'a':1}", "{\"a\":nul}",
		"{\"pid\":\"12\"}", "{\"p\\u0069d\":12}", "{\"a\":[1,2]}", "{\"a\":{}}",
		"{\"pid\":1234567890123456789}", "{\"a\":true}", "[1]", "{\"pid\":1e400}",
		"{\"\xc3\xa9\":1}", "{\"a\":1", "", "{\"x\":1e999,\"pid\":1}",
		"{\"x\":12345678901234567890}",
	};
	struct od_sample f, j;
	for (size_t i = 0; i < sizeof(fast) / sizeof(fast[0]); i++) {
		json_error_t je;
		json_t *o = json_loads(fast[i], 0, &je);
		assert_non_null(o);
		if (!od_sample_fast(fast[i], strlen(fast[i]), &f))
			fail_msg("fast path refused: %s", fast[i]);
		od_sample_from_json(o, &j);
		json_decref(o);
		for (int k = 0; k < OD_NFIELDS; k++) {
			assert_int_equal(f.num_ok[k], j.num_ok[k]);
			assert_int_equal(f.int_ok[k], j.int_ok[k]);
			if (f.num_ok[k])
				assert_true(f.num[k] == j.num[k]);
			if (f.int_ok[k])
				assert_int_equal(f.i[k], j.i[k]);
		}
	}
	assert_true(f.num_ok[OD_CPU] && f.int_ok[OD_DT] && f.i[OD_DT] == 100);
	for (size_t i = 0; i < sizeof(slow) / sizeof(slow[0]); i++)
		if (od_sample_fast(slow[i], strlen(slow[i]), &f))
			fail_msg("fast path accepted: %s", slow[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(export_fixture_with_ppid, setup, teardown),
		cmocka_unit_test_setup_teardown(export_fixture_with_procs_file, setup, teardown),
		cmocka_unit_test_setup_teardown(a_process_counts_once_per_tick, setup, teardown),
		cmocka_unit_test_setup_teardown(several_nodes_get_stable_unique_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(malformed_input_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(out_of_range_input_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(verify_names_the_first_problem, setup, teardown),
		cmocka_unit_test(fast_sample_scanner_agrees_with_jansson),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
