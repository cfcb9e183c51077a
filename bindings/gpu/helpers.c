/*
 * helpers.c - shared by the ledger's backends, the binding and the CLI
 * (declared in ledger.h and ledger_ops.h): decimals without floats, user
 * names, paths, time, error messages.
 */
#include "ledger_ops.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int kxgpu_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

int64_t kxgpu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kxgpu_partition_ending(const struct kxgpu_partition *p, int64_t now)
{
	return p->released_ms != 0 || p->expires_ms <= now;
}

void kxgpu_usage_path(const kxgpu_ledger *l, const char *id, char *buf,
                      size_t len)
{
	snprintf(buf, len, "%s/%s.mem", l->dir, id);
}


/* "I[.F]" with at most maxdec decimals into an integer scaled by 10^maxdec. */
static int parse_decimal(const char *s, int maxdec, uint64_t *out)
{
	uint64_t whole = 0, frac = 0;
	int digits = 0, dec = 0;

	if (!s || !*s)
		return -1;
	for (; *s >= '0' && *s <= '9'; s++, digits++) {
		whole = whole * 10 + (uint64_t)(*s - '0');
		if (whole > 1000000000000ull)
			return -1;
	}
	if (*s == '.') {
		for (s++; *s >= '0' && *s <= '9'; s++, dec++, digits++) {
			if (dec >= maxdec) {
				if (*s != '0')  /* more precision than kept */
					return -1;
				continue;
			}
			frac = frac * 10 + (uint64_t)(*s - '0');
		}
	}
	if (*s || digits == 0)
		return -1;
	for (; dec < maxdec; dec++)
		frac *= 10;
	for (int i = 0; i < maxdec; i++)
		whole *= 10;
	*out = whole + frac;
	return 0;
}

int kxgpu_parse_fraction(const char *s, uint32_t *ppm)
{
	uint64_t v;

	if (parse_decimal(s, 6, &v) != 0 || v == 0 || v > KXGPU_PPM)
		return KXGPU_EINVAL;
	*ppm = (uint32_t)v;
	return 0;
}

int kxgpu_parse_duration(const char *s, int64_t *ms)
{
	uint64_t v;

	if (parse_decimal(s, 3, &v) != 0 || v == 0 ||
	    v > (uint64_t)KXGPU_MAX_DURATION_MS)
		return KXGPU_EINVAL;
	*ms = (int64_t)v;
	return 0;
}

void kxgpu_format_percent(uint32_t ppm, char *buf, size_t len)
{
	snprintf(buf, len, "%u.%02u", ppm / 10000, ppm % 10000 / 100);
}

uint64_t kxgpu_share_bytes(uint64_t memory, uint32_t ppm)
{
	return (uint64_t)((unsigned __int128)memory * ppm / KXGPU_PPM);
}

void kxgpu_user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];

	if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &res) == 0 && res)
		snprintf(buf, len, "%s", pw.pw_name);
	else
		snprintf(buf, len, "uid%u", (unsigned)uid);
}

int kxgpu_user_uid(const char *name, uid_t *uid)
{
	struct passwd pw, *res = NULL;
	char tmp[1024], *end;
	unsigned long v;

	if (getpwnam_r(name, &pw, tmp, sizeof tmp, &res) == 0 && res) {
		*uid = pw.pw_uid;
		return 0;
	}
	errno = 0;
	v = strtoul(name, &end, 10);
	if (*name && !*end && errno == 0 && v < 0xffffffffu) {
		*uid = (uid_t)v;
		return 0;
	}
	return -1;
}
