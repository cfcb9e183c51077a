/*
 * need.h - the only way a cmocka unit skips: NEED("feature") probes the
 * feature with tests/features.sh (the machine, not kxrun); when it is
 * absent the skip is recorded for tests/run.sh (which fails the run if the
 * feature is present after all) and the test is skipped.
 */
#ifndef KX_TEST_NEED_H
#define KX_TEST_NEED_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline int kx_test_feature_absent(const char *feature, char *why,
					 size_t len)
{
	const char *root = getenv("ROOT");
	char cmd[512];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof cmd, "'%s/tests/features.sh' '%s' 2>&1",
		 root ? root : ".", feature);
	p = popen(cmd, "r");
	if (!p) {
		snprintf(why, len, "cannot run tests/features.sh");
		return 1;
	}
	n = fread(why, 1, len - 1, p);
	why[n] = 0;
	why[strcspn(why, "\n")] = 0;
	return pclose(p) != 0;
}

static inline void kx_test_record_skip(const char *feature, const char *why)
{
	const char *file = getenv("KXRUN_TEST_SKIPS");
	const char *test = getenv("KXRUN_TEST_NAME");
	FILE *f;

	fprintf(stderr, "skipped: %s absent: %s\n", feature, why);
	if (!file || !(f = fopen(file, "a")))
		return;
	fprintf(f, "%s\t%s\t%s\n", test ? test : "unit", feature, why);
	fclose(f);
}

#define NEED(feature)                                                     \
	do {                                                              \
		char why_[256];                                           \
		if (kx_test_feature_absent(feature, why_, sizeof why_)) { \
			kx_test_record_skip(feature, why_);               \
			skip();                                           \
		}                                                         \
	} while (0)

#endif
