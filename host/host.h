/*
 * host.h - the host's internals shared between its own files (not for
 * bindings: they use kx.h).
 */
#ifndef KX_HOST_H
#define KX_HOST_H

#include <signal.h>
#include <wchar.h>

#include "kx.h"

#define KX_VERSION "0.1.0"

/* How the loop ends: a script's main task done and no task left, a fatal
 * task error, a signal, or the REPL's end. */
struct kx_host {
	lua_State *L;
	uv_loop_t *loop;
	int repl;              /* tasks' errors are reported, never fatal */
	int in_repl;           /* the prompt is up: the loop runs until EOF */
	int exit_code;         /* status to exit with once the loop stops */
	int stopping;          /* set once the loop is asked to stop */
	kx_task *main;         /* the script's main chunk, or NULL */
	int main_is_tool;      /* its first result is the exit status */
	int live_tasks;        /* tasks not yet finished */
	volatile sig_atomic_t interrupted; /* SIGINT/SIGTERM number, or 0 */
	pid_t pid;             /* to tell forked children from the host */
	void (*on_interrupt)(void); /* Ctrl-C while kx_host.repl: the front
				     * end's (main.c sets the REPL's) */
	unsigned loop_gen;     /* 0, +1 each time a resume replaced the loop
				* (kx_resumed): this process is a resumed one */
};

extern struct kx_host kx_host;

/* task.c (the scheduler; task.h lists the task files) */
void kx_tasks_init(lua_State *L);
int kx_task_finished(kx_task *t); /* done, failed or cancelled */
int kx_task_failed(kx_task *t, const char **msg);
void kx_task_cancel_all(void);
void kx_task_cancel(kx_task *t);
/* taskclose.c */
void kx_task_interrupted(kx_task *t); /* Ctrl-C in it: its cancel hooks run */
/* tasklib.c */
void kx_tasklib_init(lua_State *L);   /* the kx.task class */
int kx_open_task(lua_State *L);   /* kx.go, kx.sleep, kx.current into the kx table at -1 */
int kx_main_status(void);
/* t (a live task) becomes the main task, kept for the host's life */
void kx_set_main(kx_task *t);
lua_State *kx_running_thread(void); /* for the signal handler */

/* nested.c: coroutine.resume/wrap for blocking calls in coroutines inside
 * tasks (await_marker is what kx_await yields) */
void kx_nested_init(lua_State *L, void *await_marker);
lua_State *kx_nested_innermost(void);

/* stream.c: pipes of child processes */
struct kx_stream;
/* A stream owning the pipe end fd; pushes it.  NULL (fd closed, nothing
 * pushed, errno set) when libuv refuses the descriptor. */
struct kx_stream *kx_stream_new(lua_State *L, int fd);
void kx_stream_start_reading(struct kx_stream *s);
void kx_stream_close(struct kx_stream *s);
void kx_open_stream(lua_State *L);

/* proc.c */
int kx_open_proc(lua_State *L);

/* children.c */
void kx_terminate_children(int sig, double grace_s);
void kx_kill_groups_now(void);        /* async-signal-safe */
int kx_group_alive(pid_t pgid);
void kx_children_after_resume(void *ud); /* parent's groups forgotten */

/* signals.c */
int kx_checksignal(lua_State *L, int arg, int def); /* number, "TERM", "SIGTERM" */
const char *kx_signame(int sig);
void kx_signals_init(lua_State *L);
int kx_open_signal(lua_State *L);
void kx_signals_close(void);

/* json.c, event.c */
int kx_open_json(lua_State *L);
int kx_open_event(lua_State *L);
int kx_open_log(lua_State *L);

/* kxlib.c: the `kx` module */
int luaopen_kx(lua_State *L);

/* searcher.c */
void kx_setup_package(lua_State *L, const char *script);
int kx_has_tool(lua_State *L, const char *name);

/* lineedit.c: the REPL's terminal (libedit, history, completion); source
 * is where its characters come from */
struct editline;
void kx_edit_open(lua_State *L, int (*source)(struct editline *, wchar_t *));
char *kx_edit_line(const char *prompt, size_t *len); /* malloc'd; NULL at the end */
void kx_edit_add_history(const char *line);
void kx_edit_close(void);

/* repl.c */
int kx_repl(lua_State *L);
void kx_repl_interrupt(void);
void kx_repl_after_resume(void);  /* the prompt stays the parent's */

/* host.c: the state (the caller then sets up package paths and kx) */
lua_State *kx_host_init(void);

/* util.c: print an error (with traceback) the way the command line does */
void kx_report(const char *msg);
void kx_run_atexit(void);

/* exit.c: the end (children's groups, exit hooks, outputs); kx_exit_init
 * makes os.exit() and exit() end the same way */
void kx_shutdown(int code);
void kx_exit_init(void);

/* util.c: hooks of a resumed process */
void kx_run_resume_hooks(void);   /* kx_on_resume's, in order */
void kx_forget_atexit(void *ud);  /* the parent's exit hooks dropped */

/* The host's only uv_run: runs whichever loop is current until the one
 * that returned is still the current one (a resume replaces it). */
void kx_run_loops(void);

/* tasklib.c, after a resume's hooks: others cancelled, the caller is main */
void kx_tasks_after_resume(void);

#endif
