/* odutil.h - small helpers shared by the OpenDC exporter and verifier. */
#ifndef KX_ODUTIL_H
#define KX_ODUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../parquet/parquet.h"

/* Formats into err; returns -1. */
int od_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A number field (integer, or real rounded to the nearest integer): 0, or
 * -1 when missing or not a number, -2 when a real is beyond +-9e15 (no
 * integer holds it exactly). */
int od_get_int(json_t *o, const char *key, int64_t *v);
int od_get_num(json_t *o, const char *key, double *v);

/* The same, within [lo, hi]: -2 when outside. */
int od_get_range(json_t *o, const char *key, int64_t lo, int64_t hi,
		 int64_t *v);

/* The line of the nth (from 0) occurrence of "key" in the file at path,
 * or 0 when there are not exactly `count` of them (then no line can be
 * told for sure). */
int od_key_line(const char *path, const char *key, size_t nth, size_t count);

int64_t od_file_size(const char *path);

/* snprintf into a path buffer: -1 when it does not fit. */
int od_path(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Calls fn for each non-blank line of a file as text (n bytes, its newline
 * included); `where` is "path:line".  Stops at the first non-zero return
 * and returns it; adds the file's size to *bytes. */
int od_each_text_line(const char *path,
		      int (*fn)(void *ud, const char *line, size_t n,
				const char *where),
		      void *ud, int64_t *bytes, char *err, size_t errlen);

/* The line parsed as a JSON object; NULL with err naming where ("invalid
 * JSON: ...", "not a JSON object"). */
json_t *od_parse_object(const char *line, size_t n, const char *where,
			char *err, size_t errlen);

/* Calls fn for each non-blank line of a JSON-lines file, parsed as an
 * object; `where` is "path:line".  Stops at the first failure; a line that
 * is not a JSON object is reported as path:line.  Adds the file's size to
 * *bytes. */
int od_each_line(const char *path,
		 int (*fn)(void *ud, json_t *o, const char *where), void *ud,
		 int64_t *bytes, char *err, size_t errlen);

/* Parquet settings of the export: SNAPPY (OpenDC's own traces use it and
 * parquet-java always has it), data pages v1, CRCs. */
struct pq_options od_parquet_options(void);

#endif
