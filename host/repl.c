/*
 * repl.c - the live prompt.  Input is read from the loop (libedit's callback
 * interface on a terminal, plain lines otherwise), so tasks, timers, rounds
 * and workers go on while the user types.  Each line runs as a task; an
 * expression prints its values; an incomplete statement continues on ">> ".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

#include "host.h"

#define EOF_MARK "<eof>"

static struct {
	lua_State *L;
	int tty;
	uv_poll_t input;
	uv_idle_t file_input; /* stdin is a regular file: epoll refuses it */
	int use_idle;
	char *pending;        /* the statement so far */
	size_t len;
	kx_task *line;        /* the running line, or NULL */
	int line_ref;
	int eof;
	int detached;         /* a resumed child: the prompt stays the parent's */
	char history[4096];
	/* non-terminal input */
	char *inbuf;
	size_t inlen, incap;
	/* completion */
	int comp_ref;
	lua_Integer comp_i, comp_n;
} R;

static void prompt(int more);
static void feed_lines(void);
static void input_stop(void);
static void input_start(void);

static void reset_pending(void)
{
	free(R.pending);
	R.pending = NULL;
	R.len = 0;
}

static void append_pending(const char *line)
{
	size_t l = strlen(line);
	char *p = realloc(R.pending, R.len + l + 2);
	if (!p)
		abort();
	R.pending = p;
	if (R.len)
		R.pending[R.len++] = '\n';
	memcpy(R.pending + R.len, line, l + 1);
	R.len += l;
}

/* Called by the line's task when it has printed its outcome. */
static int l_line_done(lua_State *L)
{
	(void)L;
	R.line = NULL;
	luaL_unref(R.L, LUA_REGISTRYINDEX, R.line_ref);
	R.line_ref = LUA_NOREF;
	if (!R.detached)
		prompt(0);
	return 0;
}

/* A child resumed from a REPL line runs that line to its end, as a script
 * runs its main chunk; it reads no input (stdin is its own, the prompt's
 * handles were the parent's loop's). */
void kx_repl_after_resume(void)
{
	R.detached = 1;
}

static const char line_driver[] =
	"local f, done = ...\n"
	"local show = require('kx._repl').show\n"
	"local r = table.pack(xpcall(f, debug.traceback))\n"
	"if r[1] then\n"
	"  if r.n > 1 then show(table.unpack(r, 2, r.n)) end\n"
	"else\n"
	"  io.stdout:flush()\n"
	"  io.stderr:write(tostring(r[2]), '\\n')\n"
	"end\n"
	"done()\n";

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

static void run_line(void)
{
	lua_State *L = R.L;
	int st = compile_pending(L);
	if (st == LUA_ERRSYNTAX) {
		size_t ml;
		const char *msg = lua_tolstring(L, -1, &ml);
		if (ml >= sizeof EOF_MARK - 1 &&
		    strcmp(msg + ml - (sizeof EOF_MARK - 1), EOF_MARK) == 0) {
			lua_pop(L, 1);
			prompt(1);
			return;
		}
	}
	reset_pending();
	if (st != LUA_OK) {
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
		lua_pop(L, 1);
		prompt(0);
		return;
	}
	if (luaL_loadbuffer(L, line_driver, sizeof line_driver - 1,
			    "=[repl]") != LUA_OK)
		abort();
	lua_insert(L, -2);
	lua_pushcfunction(L, l_line_done);
	R.line = kx_go(L, 2, 1);
	R.line_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void on_line(char *line)
{
	if (!line) {
		R.eof = 1;
		if (R.tty) {
			rl_callback_handler_remove();
			fputc('\n', stdout);
		}
		input_stop();
		if (!R.line)
			uv_stop(kx_host.loop);
		return;
	}
	if (R.tty && *line)
		add_history(line);
	append_pending(line);
	free(line);
	if (R.tty)
		rl_callback_handler_remove();
	input_stop();
	run_line();
}

static void read_input(void)
{
	if (R.tty) {
		rl_callback_read_char();
		return;
	}
	if (R.incap - R.inlen < 4096) {
		R.incap = R.incap ? R.incap * 2 : 8192;
		R.inbuf = realloc(R.inbuf, R.incap);
		if (!R.inbuf)
			abort();
	}
	ssize_t n = read(0, R.inbuf + R.inlen, R.incap - R.inlen - 1);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (R.inlen) {   /* a last line without its newline */
			R.inbuf[R.inlen] = 0;
			R.inlen = 0;
			on_line(strdup(R.inbuf));
			if (R.line)
				return;
		}
		on_line(NULL);
		return;
	}
	R.inlen += (size_t)n;
	feed_lines();
}

static void on_input(uv_poll_t *h, int status, int events)
{
	(void)h;
	(void)status;
	(void)events;
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

/* Hands complete lines of non-terminal input over, one statement at a time. */
static void feed_lines(void)
{
	while (!R.line && !R.eof) {
		char *nl = memchr(R.inbuf, '\n', R.inlen);
		if (!nl)
			break;
		*nl = 0;
		char *line = strdup(R.inbuf);
		size_t used = (size_t)(nl - R.inbuf) + 1;
		memmove(R.inbuf, R.inbuf + used, R.inlen - used);
		R.inlen -= used;
		on_line(line);
	}
}

static void prompt(int more)
{
	if (R.eof) {
		if (!R.line)
			uv_stop(kx_host.loop);
		return;
	}
	fflush(stdout);
	if (R.tty)
		rl_callback_handler_install(more ? ">> " : "> ", on_line);
	input_start();
	if (!R.tty)
		feed_lines();
}

/* Ctrl-C: cancels the running line, or drops the statement being typed. */
void kx_repl_interrupt(void)
{
	if (R.line) {
		kx_task *t = R.line;
		R.line = NULL;
		kx_task_cancel(t);
		luaL_unref(R.L, LUA_REGISTRYINDEX, R.line_ref);
		R.line_ref = LUA_NOREF;
		fprintf(stderr, "interrupted\n");
		prompt(0);
		return;
	}
	reset_pending();
	if (R.tty) {
		rl_callback_handler_remove();
		fputc('\n', stdout);
	}
	prompt(0);
}

/* ---- tab completion (candidates come from kx._repl.complete) -------------- */

static char *next_candidate(const char *text, int state)
{
	lua_State *L = R.L;
	if (state == 0) {
		luaL_unref(L, LUA_REGISTRYINDEX, R.comp_ref);
		R.comp_ref = LUA_NOREF;
		R.comp_i = 0;
		R.comp_n = 0;
		lua_getglobal(L, "require");
		lua_pushliteral(L, "kx._repl");
		if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
			lua_pop(L, 1);
			return NULL;
		}
		lua_getfield(L, -1, "complete");
		lua_remove(L, -2);
		lua_pushstring(L, text);
		if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
			lua_pop(L, 1);
			return NULL;
		}
		R.comp_n = (lua_Integer)lua_rawlen(L, -1);
		R.comp_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	if (R.comp_i >= R.comp_n)
		return NULL;
	lua_rawgeti(L, LUA_REGISTRYINDEX, R.comp_ref);
	lua_rawgeti(L, -1, ++R.comp_i);
	char *s = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
	lua_pop(L, 2);
	return s;
}

static char **complete(const char *text, int start, int end)
{
	(void)start;
	(void)end;
	rl_attempted_completion_over = 1;
	rl_completion_append_character = '\0';
	return rl_completion_matches(text, next_candidate);
}

int kx_repl(lua_State *L)
{
	const char *hist = getenv("KXRUN_HISTORY");
	const char *home = getenv("HOME");

	R.L = L;
	R.line_ref = R.comp_ref = LUA_NOREF;
	R.tty = isatty(0);
	kx_host.repl = 1;
	if (hist && *hist)
		snprintf(R.history, sizeof R.history, "%s", hist);
	else if (home)
		snprintf(R.history, sizeof R.history, "%s/.kxrun_history", home);
	if (R.tty) {
		printf("kxrun %s (%s): Ctrl-D leaves, Ctrl-C cancels a line\n",
		       KX_VERSION, LUA_RELEASE);
		rl_catch_signals = 0;
		rl_readline_name = "kxrun";
		rl_completer_word_break_characters =
			" \t\n\"\\'`@$><=;|&{(,+-*/%^#~[]";
		rl_attempted_completion_function = complete;
		using_history();
		if (R.history[0])
			read_history(R.history);
	}
	kx_host.in_repl = 1;
	if (uv_poll_init(kx_host.loop, &R.input, 0) < 0) {
		R.use_idle = 1;
		uv_idle_init(kx_host.loop, &R.file_input);
	}
	prompt(0);
	kx_run_loops();
	if (R.detached)
		return kx_host.exit_code;
	if (R.tty && R.history[0]) {
		write_history(R.history);
		history_truncate_file(R.history, 1000);
	}
	return kx_host.exit_code;
}
