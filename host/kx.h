/*
 * kx.h - what the kxrun host offers to native modules (bindings/<name>/).
 *
 * One Lua state, one libuv loop, Lua coroutines as tasks.  A binding's
 * blocking-looking call suspends the calling task and is woken later from a
 * libuv callback:
 *
 *     static int l_thing_wait(lua_State *L) {
 *         kx_task *t = kx_checktask(L, "wait");   // raises outside a task
 *         struct op *op = start_op(...);           // keeps t
 *         return kx_await(L, t, timeout_s, op_cancel, op);
 *     }
 *     static void on_done(struct op *op) {         // a libuv callback
 *         lua_State *T = kx_task_state(op->task);
 *         lua_pushboolean(T, 1);
 *         kx_wake(op->task, 1);                    // l_thing_wait returns true
 *     }
 *
 * On timeout (timeout_s >= 0) or cancellation the host calls cancel(ud) first,
 * then the task resumes with nil, "timeout" (or is unwound); after cancel(ud)
 * the binding must never wake that task for that operation.
 *
 * Nothing here is thread-safe: call it from the loop thread only.
 */
#ifndef KX_H
#define KX_H

#include <stddef.h>
#include <sys/types.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

/* ---- loop and tasks ---------------------------------------------------- */

uv_loop_t *kx_loop(void);

typedef struct kx_task kx_task;
typedef void (*kx_cancel_fn)(void *ud);

/* The task running now, or NULL on a plain C call path (main thread). */
kx_task *kx_current(void);

/* The current task; raises "'fname' must be called from a task (...)" when
 * there is none, so a blocking call never hangs silently. */
kx_task *kx_checktask(lua_State *L, const char *fname);

/* Suspends the task until kx_wake(t, n); the n values become the results of
 * the calling C function.  Use as `return kx_await(...)`. */
int kx_await(lua_State *L, kx_task *t, double timeout_s, kx_cancel_fn cancel,
             void *ud);

/* The Lua thread of a suspended task: push wake values onto it. */
lua_State *kx_task_state(kx_task *t);

/* Makes t runnable with the n values on top of kx_task_state(t).  The task
 * runs from the loop (never inside the caller). */
void kx_wake(kx_task *t, int nvalues);

/* Starts the function at stack index -(nargs+1) with nargs arguments as a new
 * task; pops them.  Returns the task (also pushed as a userdata if push). */
kx_task *kx_go(lua_State *L, int nargs, int push);

/* ---- processes ---------------------------------------------------------- */

/* Children forked by a binding itself (not through kx.spawn) register their
 * process group so that kxrun terminates it on SIGINT/SIGTERM, on a fatal
 * script error and at exit.  pgid is a process group id (> 0). */
void kx_track_pgid(pid_t pgid);
void kx_untrack_pgid(pid_t pgid);

/* Reaps a child the binding forked itself: cb runs from the loop with the raw
 * wait status once pid has exited.  Returns 0 or -errno. */
typedef void (*kx_child_cb)(pid_t pid, int wstatus, void *ud);
int kx_child_watch(pid_t pid, kx_child_cb cb, void *ud);

/* ---- life cycle --------------------------------------------------------- */

/* Called once, in reverse order of registration, before the host exits
 * (normal end, script error, SIGINT/SIGTERM, os.exit). */
void kx_atexit(void (*fn)(void *ud), void *ud);

/* Directory holding kxrun's helper libraries (libkxvtime.so, libkxgpu.so):
 * $KXRUN_LIBDIR, else <exe dir>/build/lib, else <exe dir>/../lib/kxrun. */
const char *kx_libdir(void);

/* Absolute path of the running kxrun binary. */
const char *kx_exe(void);

/* ---- remote fork (kx.rfork) ---------------------------------------------- */

/* In the parent, at prepare, right before the snapshot: a malloc'd blob
 * describing host-level descriptors that must exist again in a resumed
 * child (libuv's global pipes/eventfds/epoll the parent's memory refers to).
 * NULL and a message on failure (also outside a task: the child resumes
 * inside the calling task). */
void *kx_resume_capture(size_t *len, char *err, size_t errlen);

/* In a resumed child right after the switch (memory = the parent's at
 * prepare, fd table = 0,1,2 plus the regular files rfork reopened at their
 * numbers): recreates the captured descriptors at their numbers, abandons
 * the parent's loop, starts a fresh one, forgets tracked process groups and
 * exit hooks, cancels every task but the calling one.  0, or -1 and a
 * message.  See host/resume.c for what survives and what does not. */
int kx_reset_after_resume(lua_State *L, const void *blob, size_t len,
			  char *err, size_t errlen);

/* ---- small helpers shared by bindings ----------------------------------- */

/* Registers a userdata class: metatable `tname` with __index = methods,
 * __gc and __close = gc (when not NULL), and __tostring "tname: 0x...";
 * leaves the metatable on the stack (pop it, or add fields first). */
void kx_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                 lua_CFunction gc);

/* Pushes nil, formatted message; returns 2.  For recoverable failures.
 * Formats as lua_pushfstring does (%s %d %I %f %p %c %U %%), not printf. */
int kx_fail(lua_State *L, const char *fmt, ...);

/* Writes a whole file through a temporary name and rename(2), so the file is
 * complete or absent.  Returns 0, or -errno with a message in err. */
int kx_write_file_atomic(const char *path, const void *buf, size_t len,
                         char *err, size_t errlen);

/* A directory made whole beside its place, then put there at once (plain
 * C: callable from worker threads).  kx_tmpdir_beside creates
 * "PARENT/.NAME.tmp.XXXXXX" for path PARENT/NAME into tmp (0, or -errno
 * with err naming the parent).  After the files listed in names (a NULL-
 * terminated list) are written there, kx_publish_dir syncs them and puts
 * them at dir: dir absent or empty, by one rename; dir holding only such
 * names (an earlier run's), by swapping the two directories in one step
 * (renameat2 RENAME_EXCHANGE) and removing the old one; dir holding other
 * files too, by renaming the new files in one by one.  0, or -errno with
 * err naming the path that failed (tmp is left for the caller).
 * kx_discard_dir removes a flat directory and its files. */
int kx_tmpdir_beside(const char *path, char *tmp, size_t len, char *err,
		     size_t errlen);
int kx_publish_dir(const char *tmp, const char *dir, const char *const *names,
		   char *err, size_t errlen);
void kx_discard_dir(const char *dir);

/* Progress on a terminal (stderr is a tty, and not disabled with
 * KXRUN_PROGRESS=0): "label  done/total  pct%", redrawn at most 10 times a
 * second; done >= total ends the line. */
void kx_progress(const char *label, double done, double total);

#endif /* KX_H */
