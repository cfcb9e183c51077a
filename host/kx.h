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
 * Nothing here is thread-safe: call it from the loop thread only, except
 * the file helpers (kx_read_all ... kx_discard_dir), which are plain C.
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
 * runs from the loop (never inside the caller).  Only a waiting task: a
 * wake after the cancel function ran (or a second wake) is a bug, which
 * `make asan` builds abort on; other builds drop the values. */
void kx_wake(kx_task *t, int nvalues);

/* Starts the function at stack index -(nargs+1) with nargs arguments as a new
 * task; pops them.  Returns the task (also pushed as a userdata if push). */
kx_task *kx_go(lua_State *L, int nargs, int push);

/* fn(ud, 1) runs if t is cancelled (task:cancel(), Ctrl-C on a REPL line,
 * the end of kxrun), fn(ud, 0) when t ends any other way (a timeout is not
 * an end): exactly once, unless removed before.  For what a task started
 * and must not outlive its cancellation: kx.spawn terminates the process
 * group of a child the task spawned (unless detached).  fn must not run
 * Lua.  Returns a handle for kx_cancel_hook_remove (only before fn ran), or
 * NULL (no memory). */
typedef struct kx_cancel_hook kx_cancel_hook;
kx_cancel_hook *kx_on_cancel(kx_task *t, void (*fn)(void *ud, int cancelled),
			     void *ud);
void kx_cancel_hook_remove(kx_task *t, kx_cancel_hook *h);

/* ---- processes ---------------------------------------------------------- */

/* Every program kxrun runs starts through kx_spawn: fork, then in the child
 * a new process group (or session, or the group pgid), every signal's
 * disposition back to default and the mask cleared, stdio put in place,
 * cwd, an optional hook, an optional stop, exec.  Everything that needs
 * memory is done before the fork (PATH search, the environment, argv for
 * /bin/sh), so the child makes async-signal-safe calls only.  Errors in the
 * child come back through a close-on-exec pipe, so the caller gets errno
 * and a message naming what failed:
 *
 *     cannot run 'foo': No such file or directory
 *     cwd '/nonexistent': No such file or directory
 *
 *     struct kx_spawn o = {.argv = argv, .cwd = dir};
 *     o.io[1] = KX_IO_FD, o.fd[1] = out_fd;      // stdout to out_fd
 *     o.io[2] = KX_IO_NULL;                      // stderr to /dev/null
 *     pid_t pid = kx_spawn(&o, err, sizeof err); // < 0: -errno, err says why
 *     kx_child_watch(pid, on_exit, ud);          // reap it from the loop
 *
 * A zeroed struct is the default everywhere: inherit stdio, kxrun's
 * environment and directory, a new process group, tracked. */
enum kx_io {
	KX_IO_INHERIT = 0, /* kxrun's own descriptor 0, 1 or 2 */
	KX_IO_NULL,        /* /dev/null */
	KX_IO_FD,          /* fd[i] (the caller keeps it: close it after) */
};

enum {
	/* Not tracked (kx_track_pgid): survives kxrun's end, Ctrl-C and the
	 * cancellation of the task that started it. */
	KX_SPAWN_DETACH = 1 << 0,
	/* setsid(): a session of its own (no controlling terminal, so it
	 * never stops on terminal input), rather than a process group in
	 * kxrun's session.  Ignores pgid. */
	KX_SPAWN_SESSION = 1 << 1,
	/* The child stops itself (SIGSTOP) right before exec, and kx_spawn
	 * returns once it has stopped: attach, account or move it into a
	 * cgroup, then kill(pid, SIGCONT) lets it exec.  An exec that fails
	 * after the stop is reported by the child on its stderr ("kxrun:
	 * cannot run 'x': ...") and exit status 127; the PATH search before
	 * the fork catches the usual cases (not found, not executable). */
	KX_SPAWN_STOPPED = 1 << 2,
	/* The child is the caller's sibling (clone with CLONE_PARENT): a
	 * zygote starts children of its own parent.  The caller cannot reap
	 * it; with run only (no exec), and best with DETACH. */
	KX_SPAWN_SIBLING = 1 << 3,
	/* The child keeps the caller's signal dispositions instead of having
	 * every one reset to the default (62 system calls): for a caller
	 * whose dispositions are all the defaults already (a zygote). */
	KX_SPAWN_KEEP_SIGNALS = 1 << 4,
	/* No program: kx_spawn returns 0 in the child once it is set up
	 * (stdio, session, cwd, child_hook; its signal mask empty), as fork
	 * does, and the child goes on in the caller's code; the caller gets
	 * the pid then.  As with run, a real fork, argv only a name.  A
	 * template of a resumed snapshot forks its children so. */
	KX_SPAWN_FORK = 1 << 5,
};

struct kx_spawn {
	const char *const *argv;  /* NULL-terminated; argv[0] is searched in
				   * the PATH of envp (else kxrun's) unless
				   * it has a '/' */
	const char *file;         /* or run this file, argv[0] only its name */
	const char *const *envp;  /* NULL: kxrun's environ (see kx_env_new) */
	const char *cwd;          /* NULL: kxrun's */
	enum kx_io io[3];         /* stdin, stdout, stderr */
	int fd[3];                /* with KX_IO_FD */
	pid_t pgid;               /* 0: a new group led by the child */
	int flags;                /* KX_SPAWN_* */
	/* In the child, after stdio, cwd and signals, before the stop and
	 * exec: async-signal-safe calls only (no malloc, no stdio, no locks,
	 * no Lua).  A non-zero return is an errno: the spawn fails with it. */
	int (*child_hook)(void *ud);
	void *ud;
	/* Instead of exec, the child calls run(ud) and _exits with what it
	 * returns: a copy of kxrun that does not exec (rfork.spawn resumes a
	 * snapshot in it).  Always a real fork (never shared memory), so run
	 * may allocate (glibc's fork resets its locks; a raw clone, with
	 * KX_SPAWN_SIBLING, does not: call that from a single-threaded
	 * process only); kxrun's stdio is flushed before the fork so that no
	 * buffered output is written twice.  argv is then only a name for
	 * messages (argv[0]), envp unused; kx_spawn returns once the set-up
	 * above succeeded, and what run does after is its own business. */
	int (*run)(void *ud);
};

/* Starts the program; returns its pid (> 0), or -errno with a message in
 * err.  Not detached: its process group is tracked (kx_track_pgid) and, when
 * called from a task, terminated if that task is cancelled.  The caller
 * reaps it (kx_child_watch, or waitpid). */
pid_t kx_spawn(const struct kx_spawn *o, char *err, size_t errlen);

/* kx.spawn's Lua side for a binding: reads the options table at index 1
 * (cwd, stdin, stdout, stderr, detach; argv and env only without start),
 * starts the child with start(o, ud, err, errlen) (NULL: kx_spawn, exec
 * argv, as kx.spawn; else a function with kx_spawn's contract, tracking
 * included, that starts a child of this process its own way: o->argv is
 * {name}) and pushes the process handle kx.spawn returns (p:wait(),
 * p:kill(), p.pid, p.stdout, ...), or nil and a message: kx.spawn's
 * ("cannot run 'x': ...", "spawn x: stdout '/f': ..."), or with start
 * "NAME: " and what failed (start's message, a stdio file).  Other fields
 * of the table are the binding's.  Returns the number of values pushed. */
typedef pid_t (*kx_spawn_fn)(const struct kx_spawn *o, void *ud, char *err,
			     size_t errlen);
int kx_spawn_lua(lua_State *L, const char *name, kx_spawn_fn start, void *ud);

/* A new environment for kx_spawn, built before the fork: kxrun's environ
 * with `changes` applied in order ("NAME=VALUE" sets, "NAME" removes; NULL
 * ends).  One malloc'd block holding the strings too: free() it after
 * kx_spawn.  NULL when out of memory. */
char **kx_env_new(const char *const *changes);

/* Children forked by a binding itself (not through kx_spawn) register their
 * process group so that kxrun terminates it on SIGINT/SIGTERM, on a fatal
 * script error and at exit.  pgid is a process group id (> 0). */
void kx_track_pgid(pid_t pgid);
void kx_untrack_pgid(pid_t pgid);

/* Reaps a child: cb runs from the loop with the raw wait status once pid
 * has exited.  Returns 0 or -errno. */
typedef void (*kx_child_cb)(pid_t pid, int wstatus, void *ud);
int kx_child_watch(pid_t pid, kx_child_cb cb, void *ud);

/* ---- life cycle --------------------------------------------------------- */

/* Called once, in reverse order of registration, before the host exits
 * (normal end, script error, SIGINT/SIGTERM, os.exit). */
void kx_atexit(void (*fn)(void *ud), void *ud);

/* Called, in order of registration, in a process that goes on from the
 * memory of another one (a child kx.rfork resumed), right after the host
 * switched it to a fresh loop (kx_loop()) and before the calling task goes
 * on; the other tasks are cancelled after the hooks.  Whatever the module
 * keeps that belongs to the process it came from (threads, handles of the
 * old loop, pids, exit hooks) is forgotten or made again here.  Hooks stay
 * registered for the next resume.  From the loop thread, with every signal
 * blocked; no Lua. */
void kx_on_resume(void (*fn)(void *ud), void *ud);

/* For the binding that makes such a process (kx.rfork, bindings/rfork/
 * hostloop.c): fresh becomes the host's loop, the kx_on_resume hooks run,
 * then every task but the calling one is cancelled and the calling one
 * becomes the main task.  With every signal blocked. */
void kx_resumed(uv_loop_t *fresh);

/* A module's early main (module.mk: EARLY_MAINS += fn): main() calls each
 * with its argc/argv before the host builds anything (no Lua state, no
 * loop, no module opened), so that a command that must start fast (a
 * process that becomes another one: `kxrun rfork resume`) pays for none of
 * it.  Returns an exit status when it took the command line, -1 when it
 * leaves it to the host. */
extern int (*const kx_early_mains[])(int argc, char **argv);

/* Directory holding kxrun's helper libraries (libkxvtime.so, libkxgpu.so):
 * $KXRUN_LIBDIR, else <exe dir>/build/lib, else <exe dir>/../lib/kxrun. */
const char *kx_libdir(void);

/* Absolute path of the running kxrun binary. */
const char *kx_exe(void);

/* ---- classes ------------------------------------------------------------- */

/* One way to make a userdata class.  Methods are called obj:name(...);
 * getters are fields computed on access (obj.pid), called with the object
 * at 1 and the key at 2, returning one value; meta holds metamethods
 * (__gc, __close, __tostring, __len, __eq, __call, ...), and an __index
 * there is asked last, for keys that are neither a method nor a getter.
 * Defaults: __close = __gc when only __gc is given, __tostring prints
 * "name: 0x...".  Leaves the metatable on the stack (pop it).
 *
 *     static const luaL_Reg methods[] = {{"wait", l_wait}, {NULL, NULL}};
 *     static const luaL_Reg getters[] = {{"pid", l_pid}, {NULL, NULL}};
 *     static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
 *     kx_defclass(L, &(struct kx_class){"kx.process", methods, getters, meta});
 *     lua_pop(L, 1);
 *
 * Argument errors in methods go through luaL_argerror / luaL_check* as in
 * functions: "bad argument #1 to 'kill' (...)" names the method and counts
 * the user's arguments (self not counted).  Fields of an options table are
 * checked with kx_opt*field below, never luaL_check*(L, -1). */
struct kx_class {
	const char *name;          /* metatable name, for luaL_checkudata */
	const luaL_Reg *methods;   /* may be NULL */
	const luaL_Reg *getters;   /* may be NULL */
	const luaL_Reg *meta;      /* may be NULL */
};
void kx_defclass(lua_State *L, const struct kx_class *c);

/* Shorthand: kx_defclass with methods, and __gc = __close = gc (if any). */
void kx_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                 lua_CFunction gc);

/* Field k of the options table at argument arg: def when nil, else it must
 * have the type, or the call raises "bad argument #arg to 'fn' (field 'k':
 * number expected, got string)".  A string stays valid while the table
 * holds it. */
lua_Number kx_optnumberfield(lua_State *L, int arg, const char *k,
			     lua_Number def);
lua_Integer kx_optintegerfield(lua_State *L, int arg, const char *k,
			       lua_Integer def);
const char *kx_optstringfield(lua_State *L, int arg, const char *k,
			      const char *def);
int kx_optbooleanfield(lua_State *L, int arg, const char *k, int def);
/* Raises "bad argument #arg to 'fn' (field 'k': msg)". */
int kx_fielderror(lua_State *L, int arg, const char *k, const char *msg);

/* Pushes nil, formatted message; returns 2.  For recoverable failures.
 * Formats as lua_pushfstring does (%s %d %I %f %p %c %U %%), not printf. */
int kx_fail(lua_State *L, const char *fmt, ...);

/* ---- files (plain C: no Lua, no loop; safe from any thread) --------------- */

/* Whole reads and writes: EINTR and short transfers retried.  read_all
 * returns the bytes read (fewer than len only at end of file) or -1;
 * write_all 0 or -1; errno says why.  The p- forms at an offset. */
ssize_t kx_read_all(int fd, void *buf, size_t len);
int kx_write_all(int fd, const void *buf, size_t len);
ssize_t kx_pread_all(int fd, void *buf, size_t len, off_t off);
int kx_pwrite_all(int fd, const void *buf, size_t len, off_t off);

/* A file replaced whole or not at all, even across a crash: written to a
 * temporary file beside it (mkstemp), fsync'd, renamed over path, and the
 * directory fsync'd.  Errors name the path that failed.  In Lua:
 * kx.write_file(path, data) -> true | nil, message.
 *
 *     struct kx_atomic a;
 *     if (kx_atomic_begin(&a, path, 0644, err, sizeof err) < 0) return ...;
 *     ... write to a.fd (or fdopen it) ...
 *     if (kx_atomic_commit(&a, err, sizeof err) < 0) return ...;
 *
 * kx_atomic_commit syncs and closes a.fd; a caller that closed it itself
 * (fflush + fsync + fclose of an fdopen'd FILE) sets a.fd = -1 first.
 * kx_atomic_abort closes and removes the temporary file.  All return 0, or
 * -errno with the message in err. */
struct kx_atomic {
	int fd;
	char path[4096];
	char tmp[4096];
};
int kx_atomic_begin(struct kx_atomic *a, const char *path, mode_t mode,
		    char *err, size_t errlen);
int kx_atomic_commit(struct kx_atomic *a, char *err, size_t errlen);
void kx_atomic_abort(struct kx_atomic *a);

/* The whole of buf as the file at path, as above, mode 0644.  (Modes are
 * set as given: the umask does not apply.) */
int kx_write_file_atomic(const char *path, const void *buf, size_t len,
                         char *err, size_t errlen);

/* mkdir -p: path and its missing parents, made with mode (less the umask);
 * 0 when path is a directory already.  -errno, with err naming the part
 * that failed ("a/b: cannot create directory: Permission denied", "a/b:
 * Not a directory"). */
int kx_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen);

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

/* ---- output -------------------------------------------------------------- */

/* Progress on a terminal (stderr is a tty, and not disabled with
 * KXRUN_PROGRESS=0): "label  done/total  pct%", redrawn at most 10 times a
 * second; done >= total ends the line. */
void kx_progress(const char *label, double done, double total);

#endif /* KX_H */
