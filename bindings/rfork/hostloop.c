/*
 * hostloop.c - kxrun goes on in a resumed child: a fresh loop, the
 * parent's retired, the host told (kx_resumed).
 *
 * The child resumes inside a Lua call, inside a task resumed by the host's
 * ready queue, an idle callback inside uv_run(old loop).  The old loop is
 * retired so that uv_run returns at the end of the current iteration
 * without touching a descriptor or calling anything of the parent: its
 * signal handles are stopped (taking them out of libuv's global signal
 * tree, whose handler would write to their loops' pipes), its queues are
 * emptied and their nodes unlinked, idle callbacks still due in this
 * iteration become no-ops, and a prepare handle retires it once more right
 * before its last poll (nfds 0: no epoll_wait), for whatever cancelled tasks
 * did to it meanwhile.  The host's kx_run_loops() then runs the new loop.
 *
 * Host state: kx_resumed() runs every kx_on_resume hook (the host's ready
 * queue and signal async on the new loop; the parent's process groups, exit
 * hooks, signal handlers and REPL forgotten), then cancels every task but
 * the calling one, which becomes the main task.  Host objects of the parent
 * (processes, pipes, kx.every timers, kx.signal handles) fail clearly when
 * used in the child: they compare their handle's loop with kx_loop().
 *
 * Handles that bindings set up on the parent's loop (tracers' timers,
 * servers' pipes, ...) stay with it: their tasks are cancelled, but a
 * binding object of the parent used again in the child may wait for a
 * callback that never comes, unless the binding checks
 * handle->loop != kx_loop() and fails, as the host's objects do, or
 * forgets it in a kx_on_resume hook.
 *
 * libuv's threadpool has no threads in the child and its state is hidden;
 * workpool.c serves uv_queue_work there instead.
 *
 * Tested without the core: kx._resume_test (tests/rfork/resume_test.c, a
 * module only the tests load) makes a child in the state a resumed one is
 * in (raw fork, descriptors above 2 closed) and tests/spec/resume_spec.lua
 * checks what works there.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "hostside.h"

static void noop_idle(uv_idle_t *h)
{
	(void)h;
}

/* Unlinks every node of a libuv queue (void *[2]: next, prev) from the
 * others, so that a stale QUEUE_REMOVE on one writes only to itself. */
static void unlink_queue(void **head)
{
	void **q = head[0];
	while (q && q != head) {
		void **next = q[0];
		q[0] = q[1] = q;
		q = next;
	}
	head[0] = head[1] = head;
}

/* Empties a loop that must never call anything again; see the top of the
 * file.  Safe to repeat. */
static void retire_loop(uv_loop_t *old)
{
	unlink_queue(old->watcher_queue);
	unlink_queue(old->pending_queue);
	unlink_queue(old->prepare_handles);
	unlink_queue(old->check_handles);
	unlink_queue(old->async_handles);
	unlink_queue(old->process_handles);
	unlink_queue(old->wq);
	/* the idle queue is being walked by uv__run_idle through a head on
	 * its stack: its remaining nodes are left linked (with no-op
	 * callbacks), the ones already run are unlinked */
	unlink_queue(old->idle_handles);
	for (unsigned i = 0; old->watchers && i < old->nwatchers; i++)
		old->watchers[i] = NULL;
	old->nfds = 0;
	old->timer_heap.min = NULL;
	old->timer_heap.nelts = 0;
	old->closing_handles = NULL;
	old->active_handles = 0;
	old->active_reqs.count = 0;
	uv_stop(old);
}

/* The old loop's prepare phase: the last chance before its poll.  The
 * handle stays with the retired loop (a child resumed again before that
 * loop got here retires the next one with a handle of its own). */
static void on_retire_prepare(uv_prepare_t *h)
{
	retire_loop(h->loop);
}

/* Silences every handle of the old loop, stops its signal handles, then
 * empties it, leaving one prepare handle to retire it again. */
static void abandon_loop(uv_loop_t *old, uv_prepare_t *retire)
{
	void **head = old->handle_queue;
	for (void **q = head[0]; q && q != head; q = q[0]) {
		uv_handle_t *h = (uv_handle_t *)((char *)q -
						 offsetof(uv_handle_t, handle_queue));
		switch (h->type) {
		case UV_IDLE:
			((uv_idle_t *)h)->idle_cb = noop_idle;
			break;
		case UV_ASYNC:
			((uv_async_t *)h)->async_cb = NULL;
			break;
		case UV_SIGNAL:
			/* takes it out of libuv's global tree; needs the lock
			 * pipe, re-created above (a closing one is out already) */
			if (!uv_is_closing(h))
				uv_signal_stop((uv_signal_t *)h);
			break;
		default:
			break;
		}
	}
	unlink_queue(old->handle_queue);
	retire_loop(old);
	uv_prepare_init(old, retire);
	uv_prepare_start(retire, on_retire_prepare);
}

int rf_host_reset(const void *blob, size_t len, char *err, size_t errlen)
{
	sigset_t all, saved;

	if (!kx_current()) {
		snprintf(err, errlen, "not inside a task: the parent did not "
			 "prepare from one");
		return -1;
	}
	uv_loop_t *fresh = malloc(sizeof *fresh);
	uv_prepare_t *retire = malloc(sizeof *retire);
	if (!fresh || !retire) {
		free(fresh);
		free(retire);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* no handler may run half-way: ours and libuv's use what is rebuilt */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	int r = rf_host_fds(blob, len, err, errlen);
	if (r == 0 && (r = uv_loop_init(fresh)) < 0)
		snprintf(err, errlen, "cannot start a fresh loop: %s",
			 uv_strerror(r));
	if (r < 0) {
		free(fresh);
		free(retire);
		pthread_sigmask(SIG_SETMASK, &saved, NULL);
		return -1;
	}
	uv_loop_t *old = kx_loop();
	abandon_loop(old, retire);
	/* stale handles point into the old loop (and it holds the retiring
	 * handle): it is kept, never freed, reachable from the new one */
	fresh->data = old;
	rf_workpool_reset();
	kx_resumed(fresh);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	return 0;
}
