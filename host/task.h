/*
 * task.h - the task record, shared by the three files that make tasks
 * (nothing else in host/ looks inside one: the rest goes through kx.h and
 * host.h):
 *
 *   taskclose.c  what a task's end runs besides Lua: its cancel hooks, the
 *                <close> handlers of its thread, error values as text
 *   task.c       the scheduler: the ready queue, running, waiting and
 *                waking (kx_await, kx_wake, timers), a task's end (done,
 *                failed, cancelled) and the tasks waiting for it
 *   tasklib.c    the Lua face: the kx.task class, kx.go, kx.sleep,
 *                kx.current, the main task's exit status
 *
 * Each calls only the ones above it in this list.
 */
#ifndef KX_TASK_H
#define KX_TASK_H

#include "host.h"

#define KX_TASK_MT "kx.task"

enum kx_task_state {
	T_READY,
	T_RUNNING,
	T_WAITING,
	T_DONE,
	T_FAILED,
	T_CANCELLED,
};

/* A task blocked in task:wait() on another. */
struct kx_waiter {
	kx_task *task;   /* the task blocked in wait() */
	kx_task *target; /* the task it waits for */
	struct kx_waiter *next;
};

enum kx_timer_mode { TM_NONE, TM_TIMEOUT, TM_SLEEP };

struct kx_task {
	lua_State *co;
	int co_ref;  /* registry ref to the thread while the task is live */
	int ref;     /* registry ref to the task's userdata while live */
	enum kx_task_state state;
	int nargs;   /* values on co's stack for the next resume */
	int queued;  /* in the ready queue */
	int collected; /* the userdata is gone: free when dequeued */
	kx_cancel_fn cancel;
	void *cancel_ud;
	uv_timer_t *timer;
	enum kx_timer_mode timer_mode;
	kx_task *next_ready;
	struct kx_waiter *waiters;
	int result_ref; /* table {n=, ...} of results, or the error value */
	int trace_ref;  /* traceback of a failed task */
	struct kx_cancel_hook *on_cancel;
};

/* taskclose.c */
/* The task's end: each cancel hook is told whether it was cancelled. */
void kx_task_end_hooks(kx_task *t, int cancelled);
/* Pushes the message of the error value at idx as lua.c shows one; never
 * raises. */
const char *kx_push_error_message(lua_State *L, int idx);
/* Runs the pending <close> handlers of t's thread; an error one of them
 * raises that is not the one the thread ended with (was_marker, or the
 * value at registry ref was_ref) is reported, "while <while_doing>". */
void kx_task_close_thread(kx_task *t, const void *was_marker, int was_ref,
			  const char *while_doing);

/* task.c */
const char *kx_task_status(kx_task *t);  /* "ready", ..., "cancelled" */
/* kx.sleep in t: 0 gives the other ready tasks a turn; math.huge sleeps
 * until the task is cancelled. */
int kx_task_sleep(lua_State *L, kx_task *t, double seconds);
/* Frees a finished task once its userdata is collected. */
void kx_task_collect(kx_task *t);

/* tasklib.c: the kx.task class (before the first kx_go) */
void kx_tasklib_init(lua_State *L);

#endif
