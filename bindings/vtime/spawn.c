/*
 * spawn.c - starting a dilated process (vtime.h): the program check, the
 * fork stopped before exec with the clock library preloaded, its task-clock
 * counter, its CPU (timelines) and its cgroup.
 */
#include "vtime.h"

#include "kx.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int vt_check_program(const char *prog, char *resolved, size_t rlen,
                     int allow_static, char *err, size_t errlen)
{
	if (!prog || !*prog) {
		vt_seterr(err, errlen, "empty program name");
		return -1;
	}
	if (strchr(prog, '/')) {
		snprintf(resolved, rlen, "%s", prog);
	} else {
		const char *path = getenv("PATH");
		if (!path)
			path = "/usr/local/bin:/usr/bin:/bin";
		int found = 0;
		while (*path && !found) {
			const char *c = strchr(path, ':');
			size_t l = c ? (size_t)(c - path) : strlen(path);
			snprintf(resolved, rlen, "%.*s/%s", (int)l, l ? path : ".", prog);
			if (access(resolved, X_OK) == 0)
				found = 1;
			path += l + (c ? 1 : 0);
		}
		if (!found) {
			vt_seterr(err, errlen, "%s: program not found in PATH", prog);
			return -1;
		}
	}
	if (access(resolved, X_OK) < 0) {
		vt_seterr(err, errlen, "%s: %s", resolved, strerror(errno));
		return -1;
	}
	int fd = open(resolved, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		vt_seterr(err, errlen, "%s: %s", resolved, strerror(errno));
		return -1;
	}
	Elf64_Ehdr eh;
	ssize_t k = pread(fd, &eh, sizeof eh, 0);
	int rc = 0;
	if (k >= 2 && ((char *)&eh)[0] == '#' && ((char *)&eh)[1] == '!') {
		rc = 0; /* a script: its interpreter is checked by nobody; README */
	} else if (k == (ssize_t)sizeof eh && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	           eh.e_ident[EI_CLASS] == ELFCLASS64) {
		int interp = 0;
		for (int i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;
			if (pread(fd, &ph, sizeof ph, eh.e_phoff + (off_t)i * eh.e_phentsize) !=
			    (ssize_t)sizeof ph)
				break;
			if (ph.p_type == PT_INTERP)
				interp = 1;
		}
		if (!interp && !allow_static) {
			vt_seterr(err, errlen, "%s is statically linked: it cannot see virtual "
			       "time through libkxvtime.so (LD_PRELOAD); refusing to dilate it",
			       resolved);
			rc = -1;
		}
	} else {
		vt_seterr(err, errlen, "%s: not a 64-bit ELF executable or script", resolved);
		rc = -1;
	}
	close(fd);
	return rc;
}

/* stdout or stderr for kx_spawn: "inherit" (NULL), "null", or a file
 * (opened here, before the fork).  0, or -1 and a message. */
int vt_stdio_spec(const char *spec, const char *name, enum kx_io *io, int *fd,
                  char *err, size_t errlen)
{
	*fd = -1;
	*io = KX_IO_INHERIT;
	if (!spec || !strcmp(spec, "inherit"))
		return 0;
	if (!strcmp(spec, "null")) {
		*io = KX_IO_NULL;
		return 0;
	}
	*fd = open(spec, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (*fd < 0) {
		vt_seterr(err, errlen, "%s '%s': %s", name, spec, strerror(errno));
		return -1;
	}
	*io = KX_IO_FD;
	return 0;
}

/* A member's process, stopped before its exec and detached from the host:
 * the environment (fixed, then the caller's variables), stdout/stderr as
 * o says, hook run in the child. */
pid_t vt_spawn_member(const char *prog, char *const argv[], const char *const fixed[],
                      char *const env_extra[], const struct vt_spawn_opts *o,
                      int (*hook)(void *), void *ud, char *err, size_t errlen)
{
	int nfixed = 0, nextra = 0;
	while (fixed[nfixed])
		nfixed++;
	while (env_extra && env_extra[nextra])
		nextra++;
	const char **changes = calloc(nfixed + nextra + 1, sizeof *changes);
	char **envp = NULL;
	if (changes) {
		memcpy(changes, fixed, nfixed * sizeof *changes);
		for (int i = 0; i < nextra; i++)
			changes[nfixed + i] = env_extra[i];
		envp = kx_env_new(changes);
		free(changes);
	}
	if (!envp) {
		vt_seterr(err, errlen, "out of memory");
		return -1;
	}
	struct kx_spawn so = {
		.file = prog, .argv = (const char *const *)argv,
		.envp = (const char *const *)envp,
		/* a session of its own: its group, stopped by the rounds, is
		 * never one that becomes orphaned when its leader exits (its
		 * parent, kxrun, is in another session), which the kernel
		 * answers with SIGHUP to every process left in it */
		.flags = KX_SPAWN_STOPPED | KX_SPAWN_DETACH | KX_SPAWN_SESSION,
		.child_hook = hook, .ud = ud,
	};
	pid_t pid = -1;
	if (vt_stdio_spec(o->out, "stdout", &so.io[1], &so.fd[1], err, errlen) == 0 &&
	    vt_stdio_spec(o->err, "stderr", &so.io[2], &so.fd[2], err, errlen) == 0)
		pid = kx_spawn(&so, err, errlen);
	for (int i = 1; i <= 2; i++)
		if (so.fd[i] >= 0)
			close(so.fd[i]);
	free(envp);
	return pid;
}

/* In the child (async-signal-safe): it dies with its controller, even
 * before the supervisor could find it (stopped before exec, its
 * environment not yet its own). */
static int die_with_parent(void *ud)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	return getppid() != *(pid_t *)ud ? ESRCH : 0;
}

/* A task-clock counter on pid and everything it will start; its overflow
 * (every `period` CPU ns of the main thread) sends SIGSTOP to the process
 * group.  -1 and a message when the kernel refuses. */
int vt_open_counter(pid_t pid, char *err, size_t errlen)
{
	struct perf_event_attr a;
	memset(&a, 0, sizeof a);
	a.size = sizeof a;
	a.type = PERF_TYPE_SOFTWARE;
	a.config = PERF_COUNT_SW_TASK_CLOCK;
	a.sample_period = 1000000000;
	a.inherit = 1;
	a.wakeup_events = 1;
	int fd = (int)syscall(SYS_perf_event_open, &a, pid, -1, -1,
	                      PERF_FLAG_FD_CLOEXEC);
	if (fd < 0) {
		vt_seterr(err, errlen, "perf_event_open(task-clock) for pid %d: %s "
		       "(kx.vtime needs software perf events; see "
		       "/proc/sys/kernel/perf_event_paranoid)", (int)pid, strerror(errno));
		return -1;
	}
	struct f_owner_ex o = {F_OWNER_PGRP, pid};
	if (fcntl(fd, F_SETOWN_EX, &o) < 0 || fcntl(fd, F_SETSIG, SIGSTOP) < 0 ||
	    fcntl(fd, F_SETFL, O_ASYNC) < 0) {
		vt_seterr(err, errlen, "perf counter overflow signal: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Explicit timelines get a CPU each, in order of first use, while there are
 * CPUs this process may use; later ones and own timelines float. */
static int timeline_cpu(struct vt_exp *e, int timeline)
{
	if (timeline < 0)
		return -1;
	int idx = -1;
	for (int i = 0; i < e->ntimelines_pinned; i++)
		if (e->pin_timeline[i] == timeline)
			idx = i;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) < 0)
		return -1;
	if (idx < 0) {
		if (e->ntimelines_pinned >= CPU_COUNT(&set) ||
		    e->ntimelines_pinned >= (int)(sizeof e->pin_timeline / sizeof(int)))
			return -1;
		idx = e->ntimelines_pinned;
		e->pin_timeline[e->ntimelines_pinned++] = timeline;
	}
	for (int c = 0, k = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set) && k++ == idx)
			return c;
	return -1;
}

int vt_procs_reserve(struct vt_exp *e, char *err, size_t errlen)
{
	if (e->nprocs < e->cap)
		return 0;
	int cap = e->cap ? e->cap * 2 : 8;
	void *p = realloc(e->procs, cap * sizeof *e->procs);
	if (!p) {
		vt_seterr(err, errlen, "out of memory");
		return -1;
	}
	e->procs = p;
	e->cap = cap;
	return 0;
}

int vt_spawn(struct vt_exp *e, char *const argv[], char *const env_extra[],
             const char *libdir, const struct vt_spawn_opts *o, char *err,
             size_t errlen)
{
	char prog[PATH_MAX];
	if (e->stopped) {
		vt_seterr(err, errlen, "experiment stopped");
		return -1;
	}
	if (e->in_round) {
		vt_seterr(err, errlen, "spawn during a round: wait for advance to return");
		return -1;
	}
	if (o->speed <= 0) {
		vt_seterr(err, errlen, "speed must be > 0 (got %g)", o->speed);
		return -1;
	}
	if (e->backend == VT_KMOD) /* no clock slots: up to KXVT_MAX_MEMBERS */
		return vt_kmod_spawn(e, argv, env_extra, o, err, errlen);
	if (e->nprocs >= KXVT_SLOTS) {
		vt_seterr(err, errlen, "at most %d processes per experiment", KXVT_SLOTS);
		return -1;
	}
	if (vt_check_program(argv[0], prog, sizeof prog, 0, err, errlen) < 0)
		return -1;
	char lib[PATH_MAX];
	snprintf(lib, sizeof lib, "%s/libkxvtime.so", libdir);
	if (access(lib, R_OK) < 0) {
		vt_seterr(err, errlen, "%s: %s (build it with make)", lib, strerror(errno));
		return -1;
	}
	if (vt_procs_reserve(e, err, errlen) < 0)
		return -1;
	int slot = e->nprocs;
	int cpu = timeline_cpu(e, o->timeline);
	/* the environment, made before the fork: the clock library first in
	 * LD_PRELOAD, the clock file and slot, then the caller's variables */
	char pre[PATH_MAX * 2 + 16], shm[160], sl[32];
	const char *old = getenv("LD_PRELOAD");
	snprintf(pre, sizeof pre, "LD_PRELOAD=%s%s%s", lib, old && *old ? ":" : "",
	         old && *old ? old : "");
	snprintf(shm, sizeof shm, "KXRUN_VTIME_SHM=%s", e->shm_path);
	snprintf(sl, sizeof sl, "KXRUN_VTIME_SLOT=%d", slot);
	pid_t parent = getpid();
	/* stopped before exec: it starts in its first round; not the host's
	 * to terminate (the experiment ends it, README) */
	const char *fixed[] = {pre, shm, sl, NULL};
	pid_t pid = vt_spawn_member(prog, argv, fixed, env_extra, o, die_with_parent,
	                            &parent, err, errlen);
	if (pid < 0)
		return -1;
	int st;
	int fd = vt_open_counter(pid, err, errlen);
	if (fd < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		return -1;
	}
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(pid, sizeof set, &set); /* inherited by all it starts */
	}
	/* Joined by the parent once stopped (a child writing itself into a
	 * frozen cgroup would freeze before it stops); it stays stopped too
	 * until its first round resumes it. */
	if (e->backend == VT_FREEZER && vt_cg_join(e, pid, err, errlen) < 0) {
		close(fd);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		return -1;
	}
	struct kxvt_slot *s = &e->shm->slot[slot];
	memset(s, 0, sizeof *s);
	s->pid = pid;
	s->speed = o->speed;
	s->wake_at = INT64_MAX;
	int64_t now = vt_now(e);
	vt_slot_write(e, slot, now, now, 0);
	struct vt_proc *p = &e->procs[e->nprocs];
	memset(p, 0, sizeof *p);
	p->pid = pid;
	p->speed = o->speed;
	p->timeline = o->timeline >= 0 ? o->timeline : -1 - slot;
	p->cpu = cpu;
	p->alive = 1;
	p->slot = slot;
	p->perf_fd = fd;
	char status[64];
	snprintf(status, sizeof status, "/proc/%d/status", (int)pid);
	p->status_fd = open(status, O_RDONLY | O_CLOEXEC);
	p->run = VT_DONE;
	return e->nprocs++;
}

