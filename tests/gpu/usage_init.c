/*
 * usage_init - makes a partition usage file without kxrun, for checking
 * libkxgpu.so on machines where kxrun is not built (tests/gpu/nvidia_check.sh).
 *
 *   usage_init PATH LIMIT_BYTES SECONDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../../bindings/gpu/usage.h"

int main(int argc, char **argv)
{
	struct timespec ts;
	char err[256];

	if (argc != 4) {
		fprintf(stderr, "usage: usage_init PATH LIMIT_BYTES SECONDS\n");
		return 1;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	if (kxgpu_usage_init(argv[1], strtoull(argv[2], NULL, 10),
	                     (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
	                     atoll(argv[3]) * 1000, getuid(), err, sizeof err) != 0) {
		fprintf(stderr, "usage_init: %s\n", err);
		return 1;
	}
	return 0;
}
