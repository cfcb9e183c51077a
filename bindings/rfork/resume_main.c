/*
 * resume_main.c - `kxrun rfork resume` before the host starts.
 *
 * A resume replaces the process with the parent's image, which already
 * holds its Lua state, loop and modules: building kxrun's own first (Lua,
 * the stdlib, libuv, the tool's flag parser) would be paid for and thrown
 * away.  main() asks this early main (host/kx.h: kx_early_mains) first; it
 * takes the plain command line `kxrun rfork resume [-t T | --transport T |
 * --transport=T] ADDRESS ID KEY` and leaves everything else (--help, a bad
 * flag, a missing argument) to the Lua tool (stdlib/kx/tools/rfork.lua),
 * whose messages and exit statuses stay the reference.  Its own messages
 * are the tool's: "kxrun rfork: rfork.resume: ...", exit 1.
 */
#include "rfork.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int transport_name(const char *t)
{
	return t && (!strcmp(t, "auto") || !strcmp(t, "rdma") || !strcmp(t, "tcp"));
}

int rf_early_main(int argc, char **argv)
{
	if (argc < 3 || strcmp(argv[1], "rfork") || strcmp(argv[2], "resume"))
		return -1;
	const char *transport = getenv("KXRUN_RFORK_TRANSPORT"), *pos[3];
	if (transport && !transport_name(transport))
		return -1;
	int npos = 0;
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-t") || !strcmp(a, "--transport")) {
			if (++i == argc || !transport_name(argv[i]))
				return -1;
			transport = argv[i];
		} else if (!strncmp(a, "--transport=", 12) && transport_name(a + 12)) {
			transport = a + 12;
		} else if (a[0] == '-' || npos == 3) {
			return -1;   /* the tool says what is wrong */
		} else {
			pos[npos++] = a;
		}
	}
	if (npos != 3)
		return -1;
	char err[512];
	rf_resume(pos[0], pos[1], pos[2], transport ? transport : "auto", err, sizeof err);
	fprintf(stderr, "kxrun rfork: rfork.resume: %s\n", err);
	return 1;
}
