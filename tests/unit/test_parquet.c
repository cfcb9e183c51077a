/* Units for the Parquet writer (bindings/parquet): every value written is
 * read back with the module's reader; tests/cli/opendc_parquet_hyparquet.sh
 * reads the same kinds of files with an independent reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>

#include <cmocka.h>

#include "../../bindings/parquet/parquet.h"
#include "../../bindings/parquet/rle.h"
#include "tmpdir.h"

static char dir[512];
static char path[512];

static int setup(void **state)
{
	(void)state;
	assert_int_equal(kx_test_tmpdir(dir, sizeof(dir), "parquet"), 0);
	snprintf(path, sizeof(path), "%s/t.parquet", dir);
	return 0;
}

/* The directory holds exactly `want` entries (no temporary left). */
static int count_entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Not a tree removal: a temporary file the writer left keeps the directory,
 * which the test runner reports. */
static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

static const struct pq_column four[] = {
	{ "i32", PQ_INT32, false, false },
	{ "i64", PQ_INT64, false, false },
	{ "f64", PQ_DOUBLE, false, false },
	{ "str", PQ_STRING, false, false },
};

static void str_of(int64_t i, char *buf, size_t n)
{
	snprintf(buf, n, "value-%lld", (long long)(i % 13));
}

/* Writes n rows of the four columns, optional/dictionary as given. */
static void write_four(int64_t n, bool optional, bool dictionary,
		       struct pq_options o)
{
	struct pq_column cols[4];
	char err[256], s[32];
	memcpy(cols, four, sizeof(cols));
	for (int c = 0; c < 4; c++) {
		cols[c].optional = optional;
		cols[c].dictionary = dictionary;
	}
	pq_writer *w = pq_open(path, "m", cols, 4, &o, err, sizeof(err));
	assert_non_null(w);
	for (int64_t i = 0; i < n; i++) {
		bool null = optional && i % 3 == 1;
		str_of(i, s, sizeof(s));
		assert_int_equal(null ? pq_null(w, 0) : pq_int32(w, 0, (int32_t)(i * 7 - 50)), 0);
		assert_int_equal(null ? pq_null(w, 1) : pq_int64(w, 1, i * 1000000007LL), 0);
		assert_int_equal(null ? pq_null(w, 2) : pq_double(w, 2, i * 0.25 - 3), 0);
		assert_int_equal(null ? pq_null(w, 3) : pq_string(w, 3, s, strlen(s)), 0);
		assert_int_equal(pq_end_row(w), 0);
	}
	assert_int_equal(pq_close(w, err, sizeof(err)), 0);
	assert_int_equal(count_entries(), 1);
}

/* Reads the file back and compares every value with write_four's. */
static void check_four(int64_t n, bool optional, int want_groups)
{
	char err[256], s[32];
	struct pq_file *f = pq_read_open(path, err, sizeof(err));
	if (!f)
		fail_msg("%s", err);
	assert_int_equal(f->num_rows, n);
	assert_int_equal(pq_ncolumns(f), 4);
	if (want_groups >= 0)
		assert_int_equal(f->nrow_groups, want_groups);
	for (int c = 0; c < 4; c++) {
		assert_string_equal(f->schema[c + 1].name, four[c].name);
		assert_int_equal(f->schema[c + 1].repetition,
				 optional ? PQ_OPTIONAL : PQ_REQUIRED);
	}
	assert_int_equal(f->schema[4].type, PQ_PT_BYTE_ARRAY);
	assert_true(f->schema[4].logical_string);
	assert_int_equal(f->schema[4].converted_type, 0);
	int64_t row = 0;
	for (int g = 0; g < f->nrow_groups; g++) {
		struct pq_values v[4];
		int64_t rows = f->row_groups[g].num_rows;
		for (int c = 0; c < 4; c++) {
			if (pq_read_column(f, g, c, &v[c], err, sizeof(err)))
				fail_msg("%s", err);
			assert_int_equal(v[c].n, rows);
		}
		for (int64_t k = 0; k < rows; k++, row++) {
			bool null = optional && row % 3 == 1;
			for (int c = 0; c < 4; c++)
				assert_int_equal(v[c].null[k], null);
			if (null)
				continue;
			str_of(row, s, sizeof(s));
			assert_int_equal(v[0].i64[k], row * 7 - 50);
			assert_int_equal(v[1].i64[k], row * 1000000007LL);
			assert_true(v[2].f64[k] == row * 0.25 - 3);
			assert_int_equal(v[3].len[k], strlen(s));
			assert_memory_equal(v[3].str[k], s, strlen(s));
		}
		for (int c = 0; c < 4; c++)
			pq_values_free(&v[c]);
	}
	assert_int_equal(row, n);
	pq_read_close(f);
}

/* 2000 rows in several 512-byte pages, each codec and page version, read
 * back; with dict, every column dictionary-encoded. */
static void each_codec_and_page_version(bool dict)
{
	enum pq_codec codecs[] = { PQ_UNCOMPRESSED, PQ_SNAPPY, PQ_ZSTD };
	for (int c = 0; c < 3; c++)
		for (int v = 1; v <= 2; v++) {
			struct pq_options o = pq_defaults();
			o.codec = codecs[c];
			o.page_version = v;
			o.page_bytes = 512;	/* several pages */
			write_four(2000, false, dict, o);
			check_four(2000, false, 1);
			if (!dict)
				continue;
			struct pq_file *f = pq_read_open(path, NULL, 0);
			assert_non_null(f);
			for (int k = 0; k < 4; k++) {
				const struct pq_chunk_meta *m = &f->row_groups[0].chunks[k];
				assert_true(m->dictionary_page_offset >= 4);
				assert_int_equal(m->encodings[2], PQ_ENC_RLE_DICTIONARY);
			}
			pq_read_close(f);
		}
}

static void plain_each_codec_and_page_version(void **state)
{
	(void)state;
	each_codec_and_page_version(false);
}

static void dictionary_each_codec_and_page_version(void **state)
{
	(void)state;
	each_codec_and_page_version(true);
}

static void optional_with_nulls(void **state)
{
	(void)state;
	struct pq_options o = pq_defaults();
	o.page_bytes = 300;
	for (int dict = 0; dict <= 1; dict++)
		for (int v = 1; v <= 2; v++) {
			o.page_version = v;
			write_four(1000, true, dict, o);
			check_four(1000, true, 1);
			/* null_count statistics: rows 1, 4, 7, ... */
			struct pq_file *f = pq_read_open(path, NULL, 0);
			assert_non_null(f);
			assert_int_equal(f->row_groups[0].chunks[0].stats.null_count, 333);
			pq_read_close(f);
		}
}

static void all_null_column(void **state)
{
	(void)state;
	struct pq_column col = { "name", PQ_STRING, true, true };
	char err[256];
	pq_writer *w = pq_open(path, "m", &col, 1, NULL, err, sizeof(err));
	assert_non_null(w);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(pq_null(w, 0), 0);
		assert_int_equal(pq_end_row(w), 0);
	}
	assert_int_equal(pq_close(w, err, sizeof(err)), 0);
	struct pq_file *f = pq_read_open(path, err, sizeof(err));
	assert_non_null(f);
	struct pq_values v;
	if (pq_read_column(f, 0, 0, &v, err, sizeof(err))) fail_msg("%s", err);
	assert_int_equal(v.n, 50);
	for (int i = 0; i < 50; i++)
		assert_true(v.null[i]);
	assert_false(f->row_groups[0].chunks[0].stats.has_min);
	assert_int_equal(f->row_groups[0].chunks[0].stats.null_count, 50);
	pq_values_free(&v);
	pq_read_close(f);
}

static void empty_file(void **state)
{
	(void)state;
	write_four(0, false, true, pq_defaults());
	check_four(0, false, 0);
}

static void one_row(void **state)
{
	(void)state;
	write_four(1, false, false, pq_defaults());
	check_four(1, false, 1);
	write_four(1, true, true, pq_defaults());
	check_four(1, true, 1);
}

static void many_row_groups(void **state)
{
	(void)state;
	struct pq_options o = pq_defaults();
	o.row_group_rows = 100;
	o.page_bytes = 256;
	write_four(10050, true, true, o);
	check_four(10050, true, 101);
	/* bounded by bytes as well */
	o = pq_defaults();
	o.row_group_bytes = 4096;
	o.codec = PQ_UNCOMPRESSED;
	o.page_bytes = 1024;
	write_four(20000, false, false, o);
	struct pq_file *f = pq_read_open(path, NULL, 0);
	assert_non_null(f);
	assert_true(f->nrow_groups > 20);
	for (int g = 0; g < f->nrow_groups; g++)
		assert_true(f->row_groups[g].chunks[0].total_compressed_size < 8192);
	pq_read_close(f);
	check_four(20000, false, -1);
}

/* A dictionary that outgrows dict_bytes ends the row group: memory stays
 * bounded even for a column of all-distinct strings. */
static void dictionary_limit_ends_row_group(void **state)
{
	(void)state;
	struct pq_column col = { "s", PQ_STRING, false, true };
	struct pq_options o = pq_defaults();
	char err[256], s[32];
	o.dict_bytes = 4096;
	pq_writer *w = pq_open(path, "m", &col, 1, &o, err, sizeof(err));
	assert_non_null(w);
	for (int i = 0; i < 5000; i++) {
		snprintf(s, sizeof(s), "distinct-%06d", i);
		assert_int_equal(pq_string(w, 0, s, strlen(s)), 0);
		assert_int_equal(pq_end_row(w), 0);
	}
	assert_int_equal(pq_close(w, err, sizeof(err)), 0);
	struct pq_file *f = pq_read_open(path, err, sizeof(err));
	assert_non_null(f);
	assert_true(f->nrow_groups >= 5000 * 20 / 4096);
	int row = 0;
	for (int g = 0; g < f->nrow_groups; g++) {
		struct pq_values v;
		assert_int_equal(pq_read_column(f, g, 0, &v, err, sizeof(err)), 0);
		for (int64_t k = 0; k < v.n; k++, row++) {
			snprintf(s, sizeof(s), "distinct-%06d", row);
			assert_string_equal(v.str[k], s);
		}
		pq_values_free(&v);
	}
	assert_int_equal(row, 5000);
	pq_read_close(f);
}

static void statistics(void **state)
{
	(void)state;
	write_four(100, false, false, pq_defaults());
	struct pq_file *f = pq_read_open(path, NULL, 0);
	assert_non_null(f);
	const struct pq_stats *s = &f->row_groups[0].chunks[0].stats;
	int32_t i32;
	assert_true(s->has_min && s->has_max && s->has_null_count);
	memcpy(&i32, s->min, 4);
	assert_int_equal(i32, -50);
	memcpy(&i32, s->max, 4);
	assert_int_equal(i32, 99 * 7 - 50);
	double d;
	s = &f->row_groups[0].chunks[2].stats;
	memcpy(&d, s->min, 8);
	assert_true(d == -3);
	memcpy(&d, s->max, 8);
	assert_true(d == 99 * 0.25 - 3);
	s = &f->row_groups[0].chunks[3].stats;
	assert_int_equal(s->min_len, 7);
	assert_memory_equal(s->min, "value-0", 7);
	assert_memory_equal(s->max, "value-9", 7);
	pq_read_close(f);
}

static void crc_detects_corruption(void **state)
{
	(void)state;
	struct pq_options o = pq_defaults();
	o.codec = PQ_UNCOMPRESSED;
	write_four(100, false, false, o);
	struct pq_file *f = pq_read_open(path, NULL, 0);
	int64_t at = f->row_groups[0].chunks[1].data_page_offset;
	pq_read_close(f);
	/* flip a byte of the second column's values (past its page header) */
	FILE *fp = fopen(path, "r+b");
	fseek(fp, at + 40, SEEK_SET);
	int ch = fgetc(fp);
	fseek(fp, at + 40, SEEK_SET);
	fputc(ch ^ 0x55, fp);
	fclose(fp);
	char err[256];
	struct pq_values v;
	f = pq_read_open(path, err, sizeof(err));
	assert_non_null(f);
	assert_int_equal(pq_read_column(f, 0, 0, &v, err, sizeof(err)), 0);
	pq_values_free(&v);
	assert_int_equal(pq_read_column(f, 0, 1, &v, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "CRC mismatch"));
	pq_read_close(f);
}

static void misuse_is_refused_and_leaves_no_file(void **state)
{
	(void)state;
	char err[256];
	pq_writer *w = pq_open(path, "m", four, 4, NULL, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(pq_null(w, 0), -1);	/* REQUIRED */
	assert_non_null(strstr(pq_error(w), "REQUIRED"));
	assert_int_equal(pq_close(w, err, sizeof(err)), -1);
	assert_int_equal(count_entries(), 0);

	w = pq_open(path, "m", four, 4, NULL, err, sizeof(err));
	assert_int_equal(pq_int64(w, 0, 1), -1);	/* wrong type */
	assert_non_null(strstr(pq_error(w), "INT32"));
	pq_abort(w);
	assert_int_equal(count_entries(), 0);

	w = pq_open(path, "m", four, 4, NULL, err, sizeof(err));
	assert_int_equal(pq_int32(w, 0, 1), 0);
	assert_int_equal(pq_int32(w, 0, 1), -1);	/* twice */
	pq_abort(w);

	w = pq_open(path, "m", four, 4, NULL, err, sizeof(err));
	assert_int_equal(pq_int32(w, 0, 1), 0);
	assert_int_equal(pq_end_row(w), -1);	/* missing values */
	assert_non_null(strstr(pq_error(w), "i64"));
	pq_abort(w);

	w = pq_open(path, "m", four, 4, NULL, err, sizeof(err));
	assert_int_equal(pq_int32(w, 0, 1), 0);
	assert_int_equal(pq_close(w, err, sizeof(err)), -1);	/* open row */
	assert_non_null(strstr(err, "not ended"));
	assert_int_equal(count_entries(), 0);

	assert_null(pq_open("/nonexistent-dir/x.parquet", "m", four, 4, NULL,
			    err, sizeof(err)));
	assert_non_null(strstr(err, "No such file"));
}

static void reader_rejects_garbage(void **state)
{
	(void)state;
	char err[256];
	FILE *fp = fopen(path, "wb");
	fputs("PAR1 this is not a parquet footer \x10\0\0\0PAR1", fp);
	fclose(fp);
	assert_null(pq_read_open(path, err, sizeof(err)));
	fp = fopen(path, "wb");
	fputs("hello", fp);
	fclose(fp);
	assert_null(pq_read_open(path, err, sizeof(err)));
	assert_non_null(strstr(err, "not a Parquet file"));
}

static void rle_hybrid_round_trip(void **state)
{
	(void)state;
	uint32_t v[3000], back[3000];
	srand(7);
	for (int width = 1; width <= 20; width++) {
		uint32_t lim = width >= 32 ? 0xffffffffu : (1u << width);
		for (int i = 0; i < 3000; i++) {
			/* runs and noise mixed */
			v[i] = (i / 50) % 2 ? (uint32_t)(i / 50) % lim
					    : (uint32_t)rand() % lim;
		}
		struct tc_buf b = { 0 };
		pq_rle_encode(&b, v, 3000, width);
		assert_int_equal(pq_rle_decode(b.data, b.len, width, back, 3000, lim),
				 (long)b.len);
		assert_memory_equal(v, back, sizeof(v));
		tc_buf_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(plain_each_codec_and_page_version, setup, teardown),
		cmocka_unit_test_setup_teardown(dictionary_each_codec_and_page_version, setup, teardown),
		cmocka_unit_test_setup_teardown(optional_with_nulls, setup, teardown),
		cmocka_unit_test_setup_teardown(all_null_column, setup, teardown),
		cmocka_unit_test_setup_teardown(empty_file, setup, teardown),
		cmocka_unit_test_setup_teardown(one_row, setup, teardown),
		cmocka_unit_test_setup_teardown(many_row_groups, setup, teardown),
		cmocka_unit_test_setup_teardown(dictionary_limit_ends_row_group, setup, teardown),
		cmocka_unit_test_setup_teardown(statistics, setup, teardown),
		cmocka_unit_test_setup_teardown(crc_detects_corruption, setup, teardown),
		cmocka_unit_test_setup_teardown(misuse_is_refused_and_leaves_no_file, setup, teardown),
		cmocka_unit_test_setup_teardown(reader_rejects_garbage, setup, teardown),
		cmocka_unit_test(rle_hybrid_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
