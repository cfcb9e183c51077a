/*
 * cgroup.c - the freezer backends' cgroups (vtime.h): which interface runs
 * here, an experiment's cgroup, freezing it, emptying and removing it.
 *
 * Roots: the v1 freezer hierarchy ($KXRUN_VTIME_FREEZER_ROOT, else
 * /sys/fs/cgroup/freezer) and the first cgroup2 mount ($KXRUN_VTIME_CGROUP2_ROOT,
 * else /proc/self/mounts).  The variables let tests point the module at a
 * root that lacks what a freezer needs.
 */
#include "vtime.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *vt_v1_root(void)
{
	const char *r = getenv("KXRUN_VTIME_FREEZER_ROOT");
	return r && *r ? r : "/sys/fs/cgroup/freezer";
}

int vt_v2_root(char *out, size_t n)
{
	const char *r = getenv("KXRUN_VTIME_CGROUP2_ROOT");
	if (r && *r) {
		snprintf(out, n, "%s", r);
		return 1;
	}
	FILE *f = fopen("/proc/self/mounts", "re");
	char dev[256], mnt[256], type[64];
	int found = 0;
	while (f && !found && fscanf(f, "%255s %255s %63s %*[^\n]", dev, mnt, type) == 3)
		if (!strcmp(type, "cgroup2")) {
			snprintf(out, n, "%s", mnt);
			found = 1;
		}
	if (f)
		fclose(f);
	return found;
}

static int v1_ok(char *why, size_t n)
{
	char path[300];
	snprintf(path, sizeof path, "%s/cgroup.procs", vt_v1_root());
	if (access(path, W_OK) == 0)
		return 1;
	snprintf(why, n, "%s is not a writable cgroup v1 freezer hierarchy (%s)",
	         vt_v1_root(), strerror(errno));
	return 0;
}

static int v2_ok(char *why, size_t n)
{
	char root[256], path[300];
	if (!vt_v2_root(root, sizeof root)) {
		snprintf(why, n, "no cgroup2 hierarchy is mounted");
		return 0;
	}
	snprintf(path, sizeof path, "%s/cgroup.procs", root);
	if (access(path, W_OK) < 0) {
		snprintf(why, n, "%s is not writable (%s)", path, strerror(errno));
		return 0;
	}
	return 1; /* cgroup.freeze itself is checked in the experiment's cgroup */
}

int vt_backend_known(const char *name)
{
	static const char *const names[] = {"signal", "freezer", "freezer-v1",
	                                     "freezer-v2", "kmod", "auto", NULL};
	for (int i = 0; names[i]; i++)
		if (!strcmp(name, names[i]))
			return 1;
	return 0;
}

int vt_backend_parse(const char *name, enum vt_backend *out,
                     enum vt_cgver *cgver, char *err, size_t errlen)
{
	char why1[400] = "", why2[400] = "";
	*cgver = 0;
	if (!strcmp(name, "kmod") || (!strcmp(name, "auto") && vt_kmod_usable(NULL, 0))) {
		*out = VT_KMOD;
		if (vt_kmod_usable(why1, sizeof why1))
			return 1;
		vt_seterr(err, errlen, "vtime backend 'kmod' cannot run here: %s", why1);
		return 0;
	}
	if (!strcmp(name, "signal")) {
		*out = VT_SIGNAL;
		return 1;
	}
	int want_v1 = !strcmp(name, "freezer") || !strcmp(name, "freezer-v1");
	int want_v2 = !strcmp(name, "freezer") || !strcmp(name, "freezer-v2");
	int any = !strcmp(name, "auto");
	if (!want_v1 && !want_v2 && !any) {
		vt_seterr(err, errlen, "unknown vtime backend '%s' (%s)", name,
		          VT_BACKEND_NAMES);
		return 0;
	}
	*out = VT_FREEZER;
	if ((want_v1 || any) && v1_ok(why1, sizeof why1)) {
		*cgver = VT_CGV1;
		return 1;
	}
	if ((want_v2 || any) && v2_ok(why2, sizeof why2)) {
		*cgver = VT_CGV2;
		return 1;
	}
	if (any) {
		*out = VT_SIGNAL;
		return 1;
	}
	vt_seterr(err, errlen, "vtime backend '%s' cannot run here: %s%s%s%s", name,
	          want_v1 ? why1 : "", want_v1 && want_v2 ? "; cgroup v2: " : "",
	          want_v2 ? why2 : "", geteuid() ? " (not root)" : "");
	return 0;
}

int vt_cg_create(struct vt_exp *e, int n, char *err, size_t errlen)
{
	char root[256], probe[300];
	if (e->cgver == VT_CGV2)
		vt_v2_root(root, sizeof root);
	else
		snprintf(root, sizeof root, "%s", vt_v1_root());
	snprintf(e->cg_path, sizeof e->cg_path, "%s/kxrun-vtime-%d-%d", root,
	         (int)getpid(), n);
	const char *why = NULL;
	if (mkdir(e->cg_path, 0755) < 0 && errno != EEXIST)
		why = strerror(errno);
	snprintf(probe, sizeof probe, "%s/%s", e->cg_path,
	         e->cgver == VT_CGV2 ? "cgroup.freeze" : "freezer.state");
	if (!why && access(probe, W_OK) < 0) {
		why = e->cgver == VT_CGV2 ?
		      "no cgroup.freeze (kernel without the cgroup v2 freezer)" :
		      "no freezer.state (not a freezer hierarchy)";
		rmdir(e->cg_path);
	}
	if (why) {
		vt_seterr(err, errlen, "vtime freezer cgroup %s: %s", e->cg_path, why);
		e->cg_path[0] = 0;
		return -1;
	}
	return 0;
}

int vt_cg_join(struct vt_exp *e, pid_t pid, char *err, size_t errlen)
{
	char procs[240], pidbuf[24];
	snprintf(procs, sizeof procs, "%s/cgroup.procs", e->cg_path);
	snprintf(pidbuf, sizeof pidbuf, "%d", (int)pid);
	int rc = vt_write_file(procs, pidbuf);
	if (rc < 0)
		vt_seterr(err, errlen, "%s: %s", procs, strerror(-rc));
	return rc;
}

void vt_cg_freeze(struct vt_exp *e, int frozen)
{
	char path[240], ev[240], buf[512];
	if (!e->cg_path[0] || e->cg_frozen == frozen)
		return;
	e->cg_frozen = frozen;
	struct timespec t = {0, 20 * 1000};
	if (e->cgver == VT_CGV2) {
		snprintf(path, sizeof path, "%s/cgroup.freeze", e->cg_path);
		snprintf(ev, sizeof ev, "%s/cgroup.events", e->cg_path);
		vt_write_file(path, frozen ? "1" : "0");
		const char *want = frozen ? "frozen 1" : "frozen 0";
		for (int i = 0; i < 25000; i++) { /* ~0.5 s at most */
			if (vt_read_file(ev, buf, sizeof buf) < 0 || strstr(buf, want))
				return;
			nanosleep(&t, NULL);
		}
		return;
	}
	const char *want = frozen ? "FROZEN" : "THAWED";
	snprintf(path, sizeof path, "%s/freezer.state", e->cg_path);
	vt_write_file(path, want);
	for (int i = 0; i < 25000; i++) {
		if (vt_read_file(path, buf, sizeof buf) < 0 ||
		    !strncmp(buf, want, strlen(want)))
			return;
		vt_write_file(path, want);
		nanosleep(&t, NULL);
	}
}

/* Kills every process in cgroup dir (v2: also cgroup.kill where the kernel
 * has it, which takes what forks meanwhile), thaws it, and removes it once
 * empty (up to ~0.5 s).  Each process killed is named to n (once:
 * seen; n may be NULL).  1 when
 * removed, else 0 and a message. */
int vt_cg_destroy(const char *dir, int v2, struct vt_seen *seen,
                  const struct vt_noter *n, char *err, size_t errlen)
{
	char path[340], buf[8192];
	struct timespec t = {0, 1000 * 1000};
	for (int i = 0; i < 500; i++) {
		snprintf(path, sizeof path, "%s/cgroup.procs", dir);
		int len = vt_read_file(path, buf, sizeof buf);
		for (char *s = len > 0 ? strtok(buf, "\n") : NULL; s; s = strtok(NULL, "\n"))
			vt_kill_noted(atoi(s), seen, n);
		if (v2) {
			snprintf(path, sizeof path, "%s/cgroup.kill", dir);
			vt_write_file(path, "1");
		}
		snprintf(path, sizeof path, "%s/%s", dir,
		         v2 ? "cgroup.freeze" : "freezer.state");
		vt_write_file(path, v2 ? "0" : "THAWED");
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 1;
		nanosleep(&t, NULL);
	}
	vt_seterr(err, errlen, "could not remove %s: %s", dir, strerror(errno));
	return 0;
}
