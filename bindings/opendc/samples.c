/* samples.c - fast reading of proc_metrics.jsonl (see samples.h). */
#include "samples.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "odutil.h"

static const char *const names[OD_NFIELDS] = {
	[OD_TS] = "ts_ms", [OD_PID] = "pid", [OD_PPID] = "ppid",
	[OD_DT] = "dt_ms", [OD_CPU] = "cpu_ms", [OD_RSS] = "rss_kb",
};

/* The same rule as od_get_int: reals round to the nearest integer. */
static void set_num(struct od_sample *s, int k, double v, bool is_int,
		    int64_t iv)
{
	s->num_ok[k] = true;
	s->num[k] = v;
	if (is_int) {
		s->int_ok[k] = true;
		s->i[k] = iv;
	} else {
		s->int_ok[k] = isfinite(v) && fabs(v) <= 9e15;
		s->i[k] = s->int_ok[k] ? llround(v) : 0;
	}
}

static int field_of(const char *key, size_t n)
{
	for (int k = 0; k < OD_NFIELDS; k++)
		if (strlen(names[k]) == n && memcmp(names[k], key, n) == 0)
			return k;
	return -1;
}

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static bool digit(const char *p, const char *end)
{
	return p < end && *p >= '0' && *p <= '9';
}

/* A JSON number at p: its end, or NULL when it is not one. */
static const char *scan_number(const char *p, const char *end, bool *is_int)
{
	*is_int = true;
	if (p < end && *p == '-')
		p++;
	if (!digit(p, end))
		return NULL;
	if (*p == '0')
		p++;
	else
		while (digit(p, end))
			p++;
	if (p < end && *p == '.') {
		*is_int = false;
		p++;
		if (!digit(p, end))
			return NULL;
		while (digit(p, end))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		*is_int = false;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!digit(p, end))
			return NULL;
		while (digit(p, end))
			p++;
	}
	return p;
}

/* The value of the JSON number [num, end): false when jansson must judge
 * it (an integer beyond 18 digits, a real that overflows). */
static bool convert(const char *num, const char *end, bool is_int, double *d,
		    int64_t *iv)
{
	bool neg = *num == '-';
	char buf[64];

	if (is_int) {
		if (end - num - neg > 18)	/* 18 digits cannot overflow */
			return false;
		*iv = 0;
		for (const char *q = num + neg; q < end; q++)
			*iv = *iv * 10 + (*q - '0');
		if (neg)
			*iv = -*iv;
		*d = (double)*iv;
		return true;
	}
	if ((size_t)(end - num) >= sizeof(buf))
		return false;
	memcpy(buf, num, end - num);
	buf[end - num] = 0;
	*d = strtod(buf, NULL);
	*iv = 0;
	return isfinite(*d);
}

int od_sample_fast(const char *line, size_t n, struct od_sample *s)
{
	const char *p = line, *end = line + n;

	memset(s, 0, sizeof(*s));
	p = skip_ws(p, end);
	if (p >= end || *p++ != '{')
		return 0;
	p = skip_ws(p, end);
	if (p < end && *p == '}') {
		p++;
		goto done;
	}
	for (;;) {
		const char *key, *num;
		bool is_int;
		double d;
		int64_t iv;
		int k;

		if (p >= end || *p++ != '"')
			return 0;
		key = p;
		while (p < end && *p != '"') {
			if (*p == '\\' || (unsigned char)*p < 0x20 ||
			    (unsigned char)*p >= 0x80)
				return 0;	/* escapes, UTF-8: jansson's */
			p++;
		}
		if (p >= end)
			return 0;
		k = field_of(key, p - key);
		p = skip_ws(p + 1, end);
		if (p >= end || *p++ != ':')
			return 0;
		p = skip_ws(p, end);
		if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
			p += 4;
			if (k >= 0)
				s->num_ok[k] = s->int_ok[k] = false;
		} else {
			num = p;
			p = scan_number(p, end, &is_int);
			if (!p)
				return 0;	/* strings, objects, errors */
			/* Unknown keys too: jansson refuses what overflows. */
			if (!convert(num, p, is_int, &d, &iv))
				return 0;
			if (k >= 0)
				set_num(s, k, d, is_int, iv);
		}
		p = skip_ws(p, end);
		if (p < end && *p == ',') {
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}') {
			p++;
			break;
		}
		return 0;
	}
done:
	p = skip_ws(p, end);
	return p == end;
}

void od_sample_from_json(json_t *o, struct od_sample *s)
{
	memset(s, 0, sizeof(*s));
	for (int k = 0; k < OD_NFIELDS; k++) {
		json_t *j = json_object_get(o, names[k]);
		if (json_is_integer(j))
			set_num(s, k, (double)json_integer_value(j), true,
				json_integer_value(j));
		else if (json_is_real(j))
			set_num(s, k, json_real_value(j), false, 0);
	}
}

struct each_sample {
	int (*fn)(void *ud, const struct od_sample *s, const char *where);
	void *ud;
	char *err;
	size_t errlen;
};

static int on_sample_line(void *ud, const char *line, size_t n,
			  const char *where)
{
	struct each_sample *e = ud;
	struct od_sample s;
	if (od_sample_fast(line, n, &s))
		return e->fn(e->ud, &s, where);
	json_t *o = od_parse_object(line, n, where, e->err, e->errlen);
	if (!o)
		return -1;
	od_sample_from_json(o, &s);
	int rc = e->fn(e->ud, &s, where);
	json_decref(o);
	return rc;
}

int od_each_sample(const char *path,
		   int (*fn)(void *ud, const struct od_sample *s,
			     const char *where),
		   void *ud, int64_t *bytes, char *err, size_t errlen)
{
	struct each_sample e = { fn, ud, err, errlen };
	return od_each_text_line(path, on_sample_line, &e, bytes, err, errlen);
}
