/* odutil.c - helpers of the OpenDC exporter (see odutil.h). */
#include "odutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int od_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int od_get_num(json_t *o, const char *key, double *v)
{
	json_t *j = json_object_get(o, key);
	if (!json_is_number(j))
		return -1;
	*v = json_number_value(j);
	return isfinite(*v) ? 0 : -1;
}

int od_get_int(json_t *o, const char *key, int64_t *v)
{
	json_t *j = json_object_get(o, key);
	if (json_is_integer(j)) {
		*v = json_integer_value(j);
		return 0;
	}
	if (json_is_real(j)) {
		double d = json_real_value(j);
		if (!isfinite(d) || fabs(d) > 9e15)
			return -2;
		*v = llround(d);
		return 0;
	}
	return -1;
}

int od_get_range(json_t *o, const char *key, int64_t lo, int64_t hi,
		 int64_t *v)
{
	int r = od_get_int(o, key, v);
	if (r == 0 && (*v < lo || *v > hi))
		return -2;
	return r;
}

int od_key_line(const char *path, const char *key, size_t nth, size_t count)
{
	FILE *fp = fopen(path, "re");
	char *line = NULL, quoted[128];
	size_t cap = 0, seen = 0;
	int lineno = 0, at = 0;

	if (!fp)
		return 0;
	snprintf(quoted, sizeof(quoted), "\"%s\"", key);
	while (getline(&line, &cap, fp) >= 0) {
		lineno++;
		for (char *p = line; (p = strstr(p, quoted)); p += strlen(quoted))
			if (seen++ == nth)
				at = lineno;
	}
	free(line);
	fclose(fp);
	return seen == count ? at : 0;
}

int64_t od_file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : 0;
}

int od_each_text_line(const char *path,
		      int (*fn)(void *ud, const char *line, size_t n,
				const char *where),
		      void *ud, int64_t *bytes, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "re");
	char *line = NULL, where[4200];
	size_t cap = 0;
	ssize_t n;
	long lineno = 0;
	int rc = 0;

	if (!fp)
		return od_err(err, errlen, "%s: %s", path, strerror(errno));
	*bytes += od_file_size(path);
	while (rc == 0 && (n = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		snprintf(where, sizeof(where), "%s:%ld", path, lineno);
		if (strspn(line, " \t\r\n") == (size_t)n)
			continue;
		rc = fn(ud, line, (size_t)n, where);
	}
	if (rc == 0 && ferror(fp))
		rc = od_err(err, errlen, "%s: %s", path, strerror(errno));
	free(line);
	fclose(fp);
	return rc;
}

json_t *od_parse_object(const char *line, size_t n, const char *where,
			char *err, size_t errlen)
{
	json_error_t je;
	json_t *o = json_loadb(line, n, 0, &je);
	if (!o) {
		od_err(err, errlen, "%s: invalid JSON: %s", where, je.text);
		return NULL;
	}
	if (!json_is_object(o)) {
		json_decref(o);
		od_err(err, errlen, "%s: not a JSON object", where);
		return NULL;
	}
	return o;
}

struct each_object {
	int (*fn)(void *ud, json_t *o, const char *where);
	void *ud;
	char *err;
	size_t errlen;
};

static int on_object_line(void *ud, const char *line, size_t n,
			  const char *where)
{
	struct each_object *e = ud;
	json_t *o = od_parse_object(line, n, where, e->err, e->errlen);
	if (!o)
		return -1;
	int rc = e->fn(e->ud, o, where);
	json_decref(o);
	return rc;
}

int od_each_line(const char *path,
		 int (*fn)(void *ud, json_t *o, const char *where), void *ud,
		 int64_t *bytes, char *err, size_t errlen)
{
	struct each_object e = { fn, ud, err, errlen };
	return od_each_text_line(path, on_object_line, &e, bytes, err, errlen);
}

struct pq_options od_parquet_options(void)
{
	struct pq_options o = pq_defaults();
	o.codec = PQ_SNAPPY;
	o.page_version = 1;
	o.crc = true;
	o.created_by = "kxrun opendc export";
	return o;
}

int od_path(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	int r;
	va_start(ap, fmt);
	r = vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return r < 0 || (size_t)r >= n ? -1 : 0;
}
