/* pqgen OUT CODEC PAGEV DICT OPTIONAL ROWS RGROWS - writes a Parquet file of
 * known content with kxrun's writer, for tests/cli/opendc_parquet_*.sh to
 * read back with hyparquet.  Row i: i32 = i*7-50, i64 = i*1000000007,
 * f64 = i*0.25-3, str = "välue-" (i % 13); every column null when OPTIONAL
 * and i % 3 == 1.  CODEC: none|snappy|zstd. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../bindings/parquet/parquet.h"

int main(int argc, char **argv)
{
	struct pq_column cols[] = {
		{ "i32", PQ_INT32, false, false },
		{ "i64", PQ_INT64, false, false },
		{ "f64", PQ_DOUBLE, false, false },
		{ "str", PQ_STRING, false, false },
	};
	struct pq_options o = pq_defaults();
	char err[256], s[32];

	if (argc != 8) {
		fprintf(stderr, "usage: pqgen OUT CODEC PAGEV DICT OPTIONAL ROWS RGROWS\n");
		return 2;
	}
	o.codec = !strcmp(argv[2], "snappy") ? PQ_SNAPPY
		  : !strcmp(argv[2], "zstd") ? PQ_ZSTD : PQ_UNCOMPRESSED;
	o.page_version = atoi(argv[3]);
	o.page_bytes = 1000;
	o.row_group_rows = strtoul(argv[7], NULL, 10);
	for (int c = 0; c < 4; c++) {
		cols[c].dictionary = atoi(argv[4]);
		cols[c].optional = atoi(argv[5]);
	}
	long rows = atol(argv[6]);
	pq_writer *w = pq_open(argv[1], "m", cols, 4, &o, err, sizeof(err));
	if (!w) {
		fprintf(stderr, "pqgen: %s\n", err);
		return 1;
	}
	for (long i = 0; i < rows; i++) {
		bool null = cols[0].optional && i % 3 == 1;
		snprintf(s, sizeof(s), "v\xc3\xa4lue-%ld", i % 13);
		if (null) {
			for (int c = 0; c < 4; c++)
				pq_null(w, c);
		} else {
			pq_int32(w, 0, (int32_t)(i * 7 - 50));
			pq_int64(w, 1, i * 1000000007LL);
			pq_double(w, 2, i * 0.25 - 3);
			pq_string(w, 3, s, strlen(s));
		}
		if (pq_end_row(w) < 0) {
			fprintf(stderr, "pqgen: %s\n", pq_error(w));
			pq_abort(w);
			return 1;
		}
	}
	if (pq_close(w, err, sizeof(err)) < 0) {
		fprintf(stderr, "pqgen: %s\n", err);
		return 1;
	}
	return 0;
}
