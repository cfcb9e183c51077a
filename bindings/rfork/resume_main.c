/*
 * resume_main.c - `kxrun rfork resume` before the host starts.
 *
 * A resume replaces the process with the parent's image, which already
 * holds its Lua state, loop and modules: building kxrun's own first (Lua,
 * the stdlib, libuv, the tool's flag parser) would be paid for and thrown
 * away.  main() asks this early main (host/kx.h: kx_early_mains) first; it
 * takes the plain command line `kxrun rfork resume [FLAGS] ADDRESS ID KEY`
 * with the tool's flags (stdlib/kx/tools/rfork.lua) as FLAG VALUE or
 * --FLAG=VALUE, and leaves everything else (--help, an unknown flag or
 * value, a missing argument) to the Lua tool, whose messages and exit
 * statuses stay the reference.  Its own messages are the tool's: "kxrun
 * rfork: rfork.resume: ...", exit 1.
 */
#include "rfork.h"
#include "hostside.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int transport_name(const char *t)
{
	return t && (!strcmp(t, "auto") || !strcmp(t, "rdma") || !strcmp(t, "tcp"));
}

/* One flag and its value (v: NULL for --pid); 0, or -1 when the tool
 * should say what is wrong. */
static int take(const char *name, const char *v, const char **transport,
                struct rf_container *ct, int *in_ct)
{
	char *end;
	if (!strcmp(name, "transport") || !strcmp(name, "t")) {
		if (!transport_name(v))
			return -1;
		*transport = v;
		return 0;
	}
	*in_ct = 1;
	if (!strcmp(name, "pid"))
		ct->pid = 1;
	else if (!strcmp(name, "rootfs") && v && *v)
		ct->rootfs = v;
	else if (!strcmp(name, "hostname") && v && *v)
		ct->hostname = v;
	else if (!strcmp(name, "net") && v && *v) {
		ct->net = strcmp(v, "new") ? RF_NET_NAMED : RF_NET_NEW;
		ct->netns = v;
	} else if (!strcmp(name, "memory") && v && rf_parse_size(v, &ct->memory) == 0 && ct->memory)
		;
	else if (!strcmp(name, "cpus") && v && (ct->cpus = strtod(v, &end)) > 0 && !*end)
		;
	else if (!strcmp(name, "pids") && v && (ct->pids = strtoull(v, &end, 10)) > 0 && !*end)
		;
	else
		return -1;
	return 0;
}

int rf_early_main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "rfork") && !strcmp(argv[2], "_zygote"))
		return rf_zygote_main(0);   /* rfork.spawn's (zygote.c) */
	if (argc < 3 || strcmp(argv[1], "rfork") || strcmp(argv[2], "resume"))
		return -1;
	const char *transport = getenv("KXRUN_RFORK_TRANSPORT"), *pos[3];
	if (transport && !transport_name(transport))
		return -1;
	struct rf_container ct = {0};
	int npos = 0, in_ct = 0;
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-') {
			if (npos == 3)
				return -1;
			pos[npos++] = a;
			continue;
		}
		const char *name = a[1] == '-' ? a + 2 : a + 1, *eq = strchr(name, '=');
		char flag[32];
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		if (!len || len >= sizeof flag || (a[1] != '-' && len != 1))
			return -1;   /* "-", "--", bundled short flags: the tool's */
		memcpy(flag, name, len);
		flag[len] = 0;
		const char *v = eq ? eq + 1 : NULL;
		if (!v && strcmp(flag, "pid")) {
			if (++i == argc)
				return -1;
			v = argv[i];
		}
		if (take(flag, v, &transport, &ct, &in_ct) < 0)
			return -1;
	}
	if (npos != 3)
		return -1;
	char err[512];
	rf_resume(pos[0], pos[1], pos[2], transport ? transport : "auto", in_ct ? &ct : NULL,
	          err, sizeof err);
	fprintf(stderr, "kxrun rfork: rfork.resume: %s\n", err);
	return 1;
}
