/*
 * children.c - the book of every process group kxrun started, so none
 * outlives it by accident, and reaping of children from the loop.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "host.h"

/* ---- process groups to terminate ------------------------------------------ */

/* Plain arrays: the signal handler's last-resort path reads them. */
#define MAX_GROUPS 4096
static volatile pid_t groups[MAX_GROUPS];
static volatile int ngroups;

void kx_track_pgid(pid_t pgid)
{
	if (pgid <= 0)
		return;
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == pgid)
			return;
	for (int i = 0; i < ngroups; i++) {
		if (groups[i] == 0) {
			groups[i] = pgid;
			return;
		}
	}
	if (ngroups < MAX_GROUPS)
		groups[ngroups++] = pgid;
}

void kx_untrack_pgid(pid_t pgid)
{
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == pgid)
			groups[i] = 0;
	while (ngroups > 0 && groups[ngroups - 1] == 0)
		ngroups--;
}

/* Async-signal-safe: the second Ctrl-C's path. */
void kx_kill_groups_now(void)
{
	for (int i = 0; i < ngroups; i++)
		if (groups[i] > 0)
			kill(-groups[i], SIGKILL);
}

int kx_group_alive(pid_t pgid)
{
	return kill(-pgid, 0) == 0 || errno == EPERM;
}

/* SIGTERM (or sig) to every group, up to grace_s for them to go, then
 * SIGKILL.  Reaps what it can meanwhile, since zombie leaders keep their
 * group alive. */
void kx_terminate_children(int sig, double grace_s)
{
	int any = 0;
	for (int i = 0; i < ngroups; i++) {
		if (groups[i] > 0 && kx_group_alive(groups[i])) {
			kill(-groups[i], sig);
			kill(-groups[i], SIGCONT); /* stopped ones must see it */
			any = 1;
		}
	}
	if (!any)
		return;
	struct timespec tick = {0, 5 * 1000 * 1000};
	for (double waited = 0; waited < grace_s; waited += 0.005) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		int alive = 0;
		for (int i = 0; i < ngroups; i++)
			if (groups[i] > 0 && kx_group_alive(groups[i]))
				alive = 1;
		if (!alive)
			return;
		nanosleep(&tick, NULL);
	}
	kx_kill_groups_now();
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/* A resumed child's groups are its own; the parent's are not its business. */
void kx_children_after_resume(void *ud)
{
	(void)ud;
	for (int i = 0; i < ngroups; i++)
		groups[i] = 0;
	ngroups = 0;
}

/* ---- children forked by bindings ------------------------------------------ */

struct child_watch {
	uv_poll_t poll;
	int fd;
	pid_t pid;
	kx_child_cb cb;
	void *ud;
};

static void child_watch_free(uv_handle_t *h)
{
	struct child_watch *w = h->data;
	close(w->fd);
	free(w);
}

static void on_child_ready(uv_poll_t *h, int status, int events)
{
	struct child_watch *w = h->data;
	int ws = 0;
	(void)status;
	(void)events;
	pid_t r = waitpid(w->pid, &ws, WNOHANG);
	if (r == 0)
		return;
	if (r < 0)
		ws = 0;   /* reaped elsewhere: report a plain exit */
	uv_poll_stop(h);
	uv_close((uv_handle_t *)h, child_watch_free);
	w->cb(w->pid, ws, w->ud);
}

int kx_child_watch(pid_t pid, kx_child_cb cb, void *ud)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return -errno;
	struct child_watch *w = calloc(1, sizeof *w);
	if (!w) {
		close(fd);
		return -ENOMEM;
	}
	w->fd = fd;
	w->pid = pid;
	w->cb = cb;
	w->ud = ud;
	int r = uv_poll_init(kx_host.loop, &w->poll, fd);
	if (r < 0) {
		close(fd);
		free(w);
		return r;
	}
	w->poll.data = w;
	uv_poll_start(&w->poll, UV_READABLE, on_child_ready);
	return 0;
}
