/*
 * lineedit.c - the REPL's terminal: libedit edits the line, with a history
 * file (written whole after each line, mode 0600) and tab completion of Lua
 * names (candidates from kx._repl.complete), and follows the window's
 * size.  Characters come from the REPL's own input buffer (repl.c hands its
 * reader over), so the loop runs while the user types.
 */
#include <errno.h>
#include <histedit.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"

#define HISTORY_SIZE 1000

static struct {
	lua_State *L;
	EditLine *el;
	History *hist;
	char history[4096];   /* its file, or "" */
	const char *prompt;
	int editing;          /* inside el_gets */
} E;

/* ---- history ------------------------------------------------------------ */

/* Written whole after each line (kx_atomic_*), so that whatever ends the
 * session (Ctrl-D, os.exit, a signal, a crash) finds it complete; mode 0600:
 * a history may hold passwords. */
static void save_history(void)
{
	HistEvent ev;
	struct kx_atomic a;
	char err[512];
	if (!E.hist || !E.history[0])
		return;
	if (kx_atomic_begin(&a, E.history, 0600, err, sizeof err) == 0) {
		FILE *f = fdopen(a.fd, "w");
		int ok = f && history(E.hist, &ev, H_SAVE_FP, f) >= 0 &&
			 fflush(f) == 0 && fsync(a.fd) == 0;
		if (f) {
			fclose(f);
			a.fd = -1;
		}
		if (ok && kx_atomic_commit(&a, err, sizeof err) == 0)
			return;
		if (!ok) {
			snprintf(err, sizeof err, "%s: %s", E.history,
				 strerror(errno ? errno : EIO));
			kx_atomic_abort(&a);
		}
	}
	static int warned;
	if (!warned++)
		fprintf(stderr, "kxrun: history not saved: %s\n", err);
}

void kx_edit_add_history(const char *line)
{
	HistEvent ev;
	if (!E.hist || !*line)
		return;
	history(E.hist, &ev, H_ENTER, line);
	save_history();
}

/* ---- tab completion (candidates come from kx._repl.complete) -------------- */

static int is_word_char(char c)
{
	return c == '_' || c == '.' || c == ':' || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int call_complete(lua_State *L)
{
	lua_getglobal(L, "require");
	lua_pushliteral(L, "kx._repl");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "complete");
	lua_pushvalue(L, 1);
	lua_call(L, 1, 1);
	luaL_checktype(L, -1, LUA_TTABLE);
	return 1;
}

/* Prints the candidates in columns under the line. */
static void list_candidates(lua_State *L, int list, lua_Integer n)
{
	size_t width = 0;
	int cols = 80;
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, list, i);
		size_t l = lua_rawlen(L, -1);
		if (l > width)
			width = l;
		lua_pop(L, 1);
	}
	el_get(E.el, EL_GETTC, "co", &cols, NULL);
	width += 2;
	size_t per_row = width < (size_t)cols ? (size_t)cols / width : 1;
	fputc('\n', stdout);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, list, i);
		const char *s = lua_tostring(L, -1);
		if (i == n || (size_t)i % per_row == 0)
			fprintf(stdout, "%s\n", s ? s : "");
		else
			fprintf(stdout, "%-*s", (int)width, s ? s : "");
		lua_pop(L, 1);
	}
	fflush(stdout);
}

/* Tab: completes the word before the cursor as far as it is unique, and
 * lists the candidates when it is not. */
static unsigned char complete(EditLine *el, int ch)
{
	(void)ch;
	lua_State *L = E.L;
	const LineInfo *li = el_line(el);
	const char *start = li->cursor;
	while (start > li->buffer && is_word_char(start[-1]))
		start--;
	int top = lua_gettop(L);
	lua_pushcfunction(L, call_complete);
	lua_pushlstring(L, start, (size_t)(li->cursor - start));
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		lua_settop(L, top);
		return CC_REFRESH_BEEP;
	}
	int list = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, list);
	size_t wlen = (size_t)(li->cursor - start);
	unsigned char r = CC_REFRESH;
	if (n == 0) {
		r = CC_REFRESH_BEEP;
	} else {
		/* the longest prefix common to every candidate */
		lua_rawgeti(L, list, 1);
		size_t common;
		const char *first = lua_tolstring(L, -1, &common);
		for (lua_Integer i = 2; i <= n && first; i++) {
			lua_rawgeti(L, list, i);
			size_t l;
			const char *s = lua_tolstring(L, -1, &l);
			size_t k = 0;
			while (s && k < common && k < l && s[k] == first[k])
				k++;
			common = k;
			lua_pop(L, 1);
		}
		if (first && common > wlen) {
			char *add = strndup(first + wlen, common - wlen);
			if (add && el_insertstr(el, add) != 0)
				r = CC_REFRESH_BEEP;
			free(add);
		} else if (n > 1) {
			list_candidates(L, list, n);
			r = CC_REDISPLAY;
		}
	}
	lua_settop(L, top);
	return r;
}

/* ---- the editor --------------------------------------------------------- */

static char *prompt_text(EditLine *el)
{
	(void)el;
	return (char *)E.prompt;
}

static void on_winch(uv_signal_t *h, int sig)
{
	(void)h;
	(void)sig;
	if (E.el)
		el_resize(E.el);
}

static void end_terminal(void *ud)
{
	(void)ud;
	if (E.el) {
		if (E.editing)   /* leaving from the prompt (a signal) */
			fputc('\n', stdout);
		el_end(E.el);   /* the terminal back as it was */
		E.el = NULL;
	}
	if (E.hist) {
		history_end(E.hist);
		E.hist = NULL;
	}
}

void kx_edit_open(lua_State *L, int (*source)(struct editline *, wchar_t *))
{
	HistEvent ev;
	static uv_signal_t winch;
	const char *hist = getenv("KXRUN_HISTORY");
	const char *home = getenv("HOME");

	E.L = L;
	if (hist && *hist)
		snprintf(E.history, sizeof E.history, "%s", hist);
	else if (home)
		snprintf(E.history, sizeof E.history, "%s/.kxrun_history", home);

	/* characters are decoded as UTF-8 unless the locale says otherwise */
	if (!setlocale(LC_CTYPE, "") || MB_CUR_MAX == 1)
		setlocale(LC_CTYPE, "C.UTF-8");
	E.hist = history_init();
	history(E.hist, &ev, H_SETSIZE, HISTORY_SIZE);
	if (E.history[0])
		history(E.hist, &ev, H_LOAD, E.history);
	E.el = el_init("kxrun", stdin, stdout, stderr);
	el_set(E.el, EL_EDITOR, "emacs");
	el_set(E.el, EL_PROMPT, prompt_text);
	el_set(E.el, EL_HIST, history, E.hist);
	el_set(E.el, EL_GETCFN, source);
	/* the wide form keeps our strings (the narrow one copies and leaks) */
	el_wset(E.el, EL_ADDFN, L"kx-complete", L"complete a Lua name", complete);
	el_set(E.el, EL_BIND, "^I", "kx-complete", NULL);
	el_source(E.el, NULL);   /* ~/.editrc */
	kx_atexit(end_terminal, NULL);
	uv_signal_init(kx_host.loop, &winch);
	uv_signal_start(&winch, on_winch, SIGWINCH);
	uv_unref((uv_handle_t *)&winch);
}

char *kx_edit_line(const char *prompt, size_t *len)
{
	int n;
	E.prompt = prompt;
	E.editing = 1;
	const char *s = el_gets(E.el, &n);
	E.editing = 0;
	if (!s || n <= 0)
		return NULL;
	size_t l = (size_t)n;
	while (l > 0 && (s[l - 1] == '\n' || s[l - 1] == '\r'))
		l--;
	char *line = strndup(s, l);
	if (!line)
		abort();
	*len = strlen(line);
	return line;
}

void kx_edit_close(void)
{
	end_terminal(NULL);
}
