/*
 * samples.h - reading proc_metrics.jsonl fast.
 *
 * A sample row is a flat JSON object of numbers; parsing a million of them
 * with jansson dominates an export.  od_each_sample reads such lines with a
 * strict little scanner and hands every line it does not fully understand
 * (strings, escapes, nesting, huge numbers, syntax errors) to jansson, so
 * the result and the error messages are the same either way.
 */
#ifndef KX_OD_SAMPLES_H
#define KX_OD_SAMPLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum { OD_TS, OD_PID, OD_PPID, OD_DT, OD_CPU, OD_RSS, OD_NFIELDS };

struct od_sample {
	bool num_ok[OD_NFIELDS];	/* present and a number */
	bool int_ok[OD_NFIELDS];	/* ... and an integer (reals rounded) */
	double num[OD_NFIELDS];
	int64_t i[OD_NFIELDS];
};

/* 1 when the line was parsed into s, 0 when jansson must decide. */
int od_sample_fast(const char *line, size_t n, struct od_sample *s);
void od_sample_from_json(json_t *o, struct od_sample *s);

/* Like od_each_line, for sample rows. */
int od_each_sample(const char *path,
		   int (*fn)(void *ud, const struct od_sample *s,
			     const char *where),
		   void *ud, int64_t *bytes, char *err, size_t errlen);

#endif
