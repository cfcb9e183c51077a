/*
 * host.h - the host's internals shared between its own files (not for
 * bindings: they use kx.h).
 */
#ifndef KX_HOST_H
#define KX_HOST_H

#include <signal.h>

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
	unsigned loop_gen;     /* 0, +1 each time a resume replaced the loop */
};

extern struct kx_host kx_host;

/* task.c */
void kx_tasks_init(lua_State *L);
int kx_task_finished(kx_task *t); /* done, failed or cancelled */
int kx_task_failed(kx_task *t, const char **msg);
void kx_task_cancel_all(void);
void kx_task_cancel(kx_task *t);
int kx_main_status(void);
lua_State *kx_running_thread(void); /* for the signal handler */
int kx_open_task(lua_State *L);   /* task methods into the kx table at -1 */

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

/* repl.c */
int kx_repl(lua_State *L);
void kx_repl_interrupt(void);

/* host.c: the state (the caller then sets up package paths and kx) */
lua_State *kx_host_init(void);

/* print an error (with traceback) the way the command line does */
void kx_report(const char *msg);
void kx_shutdown(int code);
void kx_run_atexit(void);
void kx_run_resume_hooks(void);   /* kx_on_resume's, in order */

/* resume.c: the old loop returns from uv_run once a resume replaced it;
 * this runs whichever loop is current until that one returns. */
void kx_run_loops(void);

/* After a resume (resume.c calls them in this order): */
void kx_signals_after_resume(void);  /* fresh async; parent's handlers gone */
void kx_children_after_resume(void); /* parent's process groups forgotten */
void kx_repl_after_resume(void);     /* the prompt belongs to the parent */
void kx_forget_atexit(void);         /* parent's exit hooks dropped */
void kx_workpool_after_resume(void); /* workers of the parent are gone */
void kx_tasks_after_resume(void);    /* others cancelled; caller is main */

#endif
