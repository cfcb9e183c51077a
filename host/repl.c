/*
 * repl.c - the live prompt.
 *
 * The REPL owns standard input: bytes are read from the loop into a buffer
 * of its own, and lines are taken from that buffer, so a paste is never cut
 * and a line may be as long as memory allows.  On a terminal, libedit edits
 * the line (el_gets) and takes its characters from that buffer through
 * EL_GETCFN; whenever the buffer is empty the loop runs, so tasks, timers,
 * rounds and workers go on while the user types.  (libedit's readline
 * callback interface, used before, wrote into freed memory on lines over
 * 1 KB and lost pasted lines.)
 *
 * Each statement runs as a task (kx._repl.run prints its values or its
 * error); the prompt comes back when it ends or Ctrl-C cancels it.  An
 * incomplete statement continues on ">> ", as in lua.c.  This file holds
 * the input and the statements; the terminal's editor, history and tab
 * completion are lineedit.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include "host.h"

#define EOF_MARK "<eof>"

static struct {
	lua_State *L;
	int tty;
	/* standard input, read ahead of the editor */
	uv_poll_t input;
	uv_idle_t file_input; /* stdin is a regular file: epoll refuses it */
	int use_idle;
	char *in;
	size_t inpos, inlen, incap;
	int got_input;        /* the watcher read something (or EOF) */
	int eof;
	int interrupt;        /* Ctrl-C at the prompt: drop the input */
	int detached;         /* a resumed child: the prompt is the parent's */
	/* the statement being typed, and the one running */
	int more;             /* continuing an incomplete statement */
	char *pending;
	size_t len;
	kx_task *line;
	int line_ref;
} R;

/* ---- standard input ------------------------------------------------------- */

static void input_stop(void);

static void read_input(void)
{
	if (R.incap - R.inlen < 4096) {
		if (R.inpos > 0) {
			memmove(R.in, R.in + R.inpos, R.inlen - R.inpos);
			R.inlen -= R.inpos;
			R.inpos = 0;
		}
		if (R.incap - R.inlen < 4096) {
			size_t cap = R.incap ? R.incap * 2 : 65536;
			char *p = realloc(R.in, cap);
			if (!p)
				abort();
			R.in = p;
			R.incap = cap;
		}
	}
	ssize_t n = read(0, R.in + R.inlen, R.incap - R.inlen);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		R.eof = 1;
	else
		R.inlen += (size_t)n;
	R.got_input = 1;
	input_stop();
}

static void on_input(uv_poll_t *h, int status, int events)
{
	(void)h;
	(void)events;
	if (status < 0) {
		R.eof = 1;
		R.got_input = 1;
		input_stop();
		return;
	}
	read_input();
}

static void on_file_input(uv_idle_t *h)
{
	(void)h;
	read_input();
}

static void input_start(void)
{
	if (R.use_idle)
		uv_idle_start(&R.file_input, on_file_input);
	else
		uv_poll_start(&R.input, UV_READABLE, on_input);
}

static void input_stop(void)
{
	if (R.use_idle)
		uv_idle_stop(&R.file_input);
	else
		uv_poll_stop(&R.input);
}

/* Runs the loop once; a resumed child (kx.rfork from a line) leaves the
 * prompt to its parent.  0 when nothing is left that could ever run. */
static int run_loop_once(void)
{
	uv_loop_t *ran = kx_host.loop;
	int alive = uv_run(ran, UV_RUN_ONCE);
	if (ran != kx_host.loop)
		R.detached = 1;
	return alive;
}

/* Runs the loop until more input came, the input ended, or Ctrl-C. */
static void wait_input(void)
{
	R.got_input = 0;
	input_start();
	while (!R.got_input && !R.interrupt && !R.detached)
		run_loop_once();
	input_stop();
}

/* The next line of non-terminal input, without its newline (malloc'd), or
 * NULL at the end of the input. */
static char *plain_line(size_t *len)
{
	for (;;) {
		if (R.interrupt || R.detached)
			return NULL;
		char *s = R.in + R.inpos;
		size_t avail = R.inlen - R.inpos;
		char *nl = avail ? memchr(s, '\n', avail) : NULL;
		if (nl || (R.eof && avail > 0)) {
			size_t l = nl ? (size_t)(nl - s) : avail;
			char *line = malloc(l + 1);
			if (!line)
				abort();
			memcpy(line, s, l);
			line[l] = 0;
			R.inpos += nl ? l + 1 : l;
			*len = l;
			return line;
		}
		if (R.eof)
			return NULL;
		wait_input();
	}
}

/* libedit's source of characters: the buffer, UTF-8 decoded; the loop runs
 * while it is empty.  -1 ends el_gets for Ctrl-C, 0 for the end. */
static int tty_getc(struct editline *el, wchar_t *wc)
{
	(void)el;
	for (;;) {
		if (R.interrupt) {
			errno = EINTR;
			return -1;
		}
		if (R.detached)
			return 0;
		size_t avail = R.inlen - R.inpos;
		if (avail > 0) {
			mbstate_t st;
			memset(&st, 0, sizeof st);
			size_t n = mbrtowc(wc, R.in + R.inpos, avail, &st);
			if (n == (size_t)-2 && !R.eof) {
				wait_input();   /* the rest of the character */
				continue;
			}
			if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
				/* not UTF-8 (or NUL): the byte as it is */
				*wc = (wchar_t)(unsigned char)R.in[R.inpos];
				n = 1;
			}
			R.inpos += n;
			return 1;
		}
		if (R.eof)
			return 0;
		wait_input();
	}
}

/* ---- statements ------------------------------------------------------------- */

static void reset_pending(void)
{
	free(R.pending);
	R.pending = NULL;
	R.len = 0;
	R.more = 0;
}

static void append_pending(const char *line, size_t l)
{
	char *p = realloc(R.pending, R.len + l + 2);
	if (!p)
		abort();
	R.pending = p;
	if (R.len)
		R.pending[R.len++] = '\n';
	memcpy(R.pending + R.len, line, l);
	R.len += l;
	R.pending[R.len] = 0;
}

/* Compiles the pending statement: "return " .. it first, as lua.c does. */
static int compile_pending(lua_State *L)
{
	const char *ret = lua_pushfstring(L, "return %s;", R.pending);
	if (luaL_loadbuffer(L, ret, strlen(ret), "=stdin") == LUA_OK) {
		lua_remove(L, -2);
		return LUA_OK;
	}
	lua_pop(L, 2);
	return luaL_loadbuffer(L, R.pending, R.len, "=stdin");
}

/* As lua.c does when the input ends inside a statement: its syntax error. */
static void report_incomplete(void)
{
	lua_State *L = R.L;
	if (compile_pending(L) != LUA_OK) {
		fflush(stdout);
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
	}
	lua_pop(L, 1);
	reset_pending();
}

static int push_runner(lua_State *L)
{
	lua_getglobal(L, "require");
	lua_pushliteral(L, "kx._repl");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "run");
	return 1;
}

/* Starts the pending statement as a task, or keeps it for more lines. */
static void start_pending(void)
{
	lua_State *L = R.L;
	int st = compile_pending(L);
	if (st == LUA_ERRSYNTAX) {
		size_t ml;
		const char *msg = lua_tolstring(L, -1, &ml);
		if (ml >= sizeof EOF_MARK - 1 &&
		    strcmp(msg + ml - (sizeof EOF_MARK - 1), EOF_MARK) == 0) {
			lua_pop(L, 1);
			R.more = 1;
			return;
		}
	}
	reset_pending();
	if (st != LUA_OK) {
		fflush(stdout);
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
		lua_pop(L, 1);
		return;
	}
	lua_pushcfunction(L, push_runner);
	if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
		kx_report(lua_tostring(L, -1));
		lua_pop(L, 2);
		return;
	}
	lua_insert(L, -2);
	R.line = kx_go(L, 1, 1);
	R.line_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void release_line(void)
{
	R.line = NULL;
	luaL_unref(R.L, LUA_REGISTRYINDEX, R.line_ref);
	R.line_ref = LUA_NOREF;
}

/* Runs the loop until the running statement ends or is cancelled. */
static void wait_line(void)
{
	while (R.line && !kx_task_finished(R.line) && !R.detached) {
		if (!run_loop_once() && !R.detached && R.line &&
		    !kx_task_finished(R.line)) {
			fflush(stdout);
			fprintf(stderr, "the line waits for something that can "
				"no longer happen: cancelled\n");
			kx_task_cancel(R.line);
		}
	}
	if (R.line)
		release_line();
}

/* Ctrl-C: cancels the running line, or drops the statement being typed. */
void kx_repl_interrupt(void)
{
	if (R.line) {
		kx_task *t = R.line;
		release_line();
		kx_task_cancel(t);
		fflush(stdout);
		fprintf(stderr, "interrupted\n");
		return;
	}
	R.interrupt = 1;
}

/* A child resumed from a REPL line runs that line to its end, as a script
 * runs its main chunk; it reads no input (stdin is its own, the prompt's
 * handles were the parent's loop's). */
void kx_repl_after_resume(void)
{
	R.detached = 1;
}

int kx_repl(lua_State *L)
{
	R.L = L;
	R.line_ref = LUA_NOREF;
	R.tty = isatty(0);
	kx_host.repl = 1;
	if (uv_poll_init(kx_host.loop, &R.input, 0) < 0) {
		R.use_idle = 1;
		uv_idle_init(kx_host.loop, &R.file_input);
	}
	if (R.tty) {
		printf("kxrun %s (%s): Ctrl-D leaves, Ctrl-C cancels a line\n",
		       KX_VERSION, LUA_RELEASE);
		kx_edit_open(L, tty_getc);
	}
	kx_host.in_repl = 1;
	while (!R.detached) {
		size_t len = 0;
		fflush(stdout);
		char *line = R.tty ? kx_edit_line(R.more ? ">> " : "> ", &len) :
			plain_line(&len);
		if (R.interrupt) {   /* Ctrl-C: a fresh prompt, input dropped */
			R.interrupt = 0;
			R.inpos = R.inlen;
			free(line);
			reset_pending();
			if (R.tty)
				fputc('\n', stdout);
			continue;
		}
		if (!line) {
			if (R.len)   /* the input ended inside a statement */
				report_incomplete();
			break;
		}
		if (R.tty)
			kx_edit_add_history(line);
		append_pending(line, len);
		free(line);
		start_pending();
		wait_line();
	}
	if (R.tty && !R.detached)
		fputc('\n', stdout);
	if (R.detached) {   /* a resumed child: its line runs to the end */
		kx_run_loops();
		return kx_host.exit_code;
	}
	kx_edit_close();
	return kx_host.exit_code;
}
