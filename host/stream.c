/*
 * stream.c - pipes to and from children as Lua objects: read("a"|"l"|"L"|n),
 * lines(), write(s), close().  Reading starts at once and buffers up to
 * STREAM_BOUND bytes that nobody asked for yet; past that, the stream stops
 * reading until the script reads, so the child blocks on a full pipe as it
 * would on a real one (a script that forgets a pipe does not grow without
 * limit).  A waiting read is always fed, however much it takes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"

#define STREAM_MT "kx.stream"
#define STREAM_BOUND (1 << 20)

enum read_mode { RM_ALL, RM_LINE, RM_LINE_NL, RM_COUNT };

struct kx_stream {
	uv_pipe_t pipe;
	int ref;          /* registry ref while the pipe is open */
	int open, eof, closing;
	int paused;       /* reading stopped at STREAM_BOUND */
	int err;          /* a libuv error, or 0 */
	char *buf;
	size_t len, cap;
	kx_task *reader;
	enum read_mode mode;
	size_t want;
	kx_task *writer;
	uv_write_t wreq;
	int wref;         /* the string being written */
};

static const char parent_stream[] =
	"pipe of the parent of this resumed process: not carried by rfork";

static struct kx_stream *checkstream(lua_State *L, int i)
{
	return luaL_checkudata(L, i, STREAM_MT);
}

/* As liolib: using a stream the script closed is a mistake, and raises. */
static struct kx_stream *checkopen(lua_State *L, int i)
{
	struct kx_stream *s = checkstream(L, i);
	if (!s->open || s->closing)
		luaL_error(L, "attempt to use a closed stream");
	return s;
}

/* Pushes what a pending read asked for, if it can be had now; returns the
 * number of values pushed onto T, or -1 when the read must go on waiting. */
static int stream_take(struct kx_stream *s, lua_State *T, enum read_mode mode,
		       size_t want)
{
	size_t n = 0, skip = 0;

	switch (mode) {
	case RM_ALL:
		if (!s->eof)
			return -1;
		n = s->len;
		break;
	case RM_LINE:
	case RM_LINE_NL: {
		char *nl = s->len ? memchr(s->buf, '\n', s->len) : NULL;
		if (nl) {
			n = (size_t)(nl - s->buf) + 1;
			skip = mode == RM_LINE ? 1 : 0;
		} else if (s->eof) {
			n = s->len;
		} else {
			return -1;
		}
		if (n == 0) {
			lua_pushnil(T);
			return 1;
		}
		break;
	}
	case RM_COUNT:
		if (s->len < want && !s->eof)
			return -1;
		n = s->len < want ? s->len : want;
		if (n == 0 && want > 0) {
			lua_pushnil(T);
			return 1;
		}
		break;
	}
	if (s->err && s->len == 0 && mode != RM_ALL) {
		lua_pushnil(T);
		lua_pushstring(T, uv_strerror(s->err));
		return 2;
	}
	lua_pushlstring(T, s->len ? s->buf : "", n - skip);
	if (n)
		memmove(s->buf, s->buf + n, s->len - n);
	s->len -= n;
	if (s->len == 0 && s->cap > 4 * STREAM_BOUND) {
		free(s->buf);   /* a big read's room: not kept for nothing */
		s->buf = NULL;
		s->cap = 0;
	}
	return 1;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf);

/* Reading goes on below the bound, or while someone waits for data. */
static void stream_flow(struct kx_stream *s)
{
	if (s->eof || !s->open || s->closing || s->pipe.loop != kx_host.loop)
		return;
	int want = s->reader || s->len < STREAM_BOUND;
	if (s->paused && want) {
		s->paused = 0;
		uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
	} else if (!s->paused && !want) {
		s->paused = 1;
		uv_read_stop((uv_stream_t *)&s->pipe);
	}
}

static void stream_feed_reader(struct kx_stream *s)
{
	if (!s->reader)
		return;
	int n = stream_take(s, kx_task_state(s->reader), s->mode, s->want);
	if (n < 0)
		return;
	kx_task *t = s->reader;
	s->reader = NULL;
	kx_wake(t, n);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct kx_stream *s = h->data;
	(void)suggested;
	if (s->cap - s->len < 65536) {
		size_t cap = s->cap ? s->cap * 2 : 65536;
		while (cap - s->len < 65536)
			cap *= 2;
		char *nb = realloc(s->buf, cap);
		if (!nb) {
			*buf = uv_buf_init(NULL, 0);
			return;
		}
		s->buf = nb;
		s->cap = cap;
	}
	*buf = uv_buf_init(s->buf + s->len, (unsigned)(s->cap - s->len));
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
	struct kx_stream *s = h->data;
	(void)buf;
	if (n > 0) {
		s->len += (size_t)n;
	} else if (n < 0) {
		if (n != UV_EOF)
			s->err = (int)n;
		s->eof = 1;
		uv_read_stop(h);
	}
	stream_feed_reader(s);
	stream_flow(s);
}

static void on_stream_closed(uv_handle_t *h)
{
	struct kx_stream *s = h->data;
	s->open = 0;
	luaL_unref(kx_host.L, LUA_REGISTRYINDEX, s->ref);
	s->ref = LUA_NOREF;
}

void kx_stream_close(struct kx_stream *s)
{
	if (!s->open || s->closing)
		return;
	if (s->pipe.loop != kx_host.loop) {
		/* the parent's, in a resumed child: its loop is retired */
		on_stream_closed((uv_handle_t *)&s->pipe);
		return;
	}
	s->closing = 1;
	s->eof = 1;
	uv_close((uv_handle_t *)&s->pipe, on_stream_closed);
}

static void reader_cancel(void *ud)
{
	struct kx_stream *s = ud;
	s->reader = NULL;
	stream_flow(s);
}

/* stream:read([fmt]): "a" all (default), "l" line, "L" line with its
 * newline, n bytes; nil at the end. */
static int l_stream_read(lua_State *L)
{
	struct kx_stream *s = checkopen(L, 1);
	enum read_mode mode = RM_ALL;
	size_t want = 0;

	if (lua_type(L, 2) == LUA_TNUMBER) {
		lua_Integer n = luaL_checkinteger(L, 2);
		luaL_argcheck(L, n >= 0, 2, "negative count");
		mode = RM_COUNT;
		want = (size_t)n;
	} else {
		const char *f = luaL_optstring(L, 2, "a");
		if (*f == '*')
			f++;
		switch (*f) {
		case 'a': mode = RM_ALL; break;
		case 'l': mode = RM_LINE; break;
		case 'L': mode = RM_LINE_NL; break;
		default: return luaL_argerror(L, 2, "invalid format");
		}
	}
	if (s->reader)
		return luaL_error(L, "stream already has a reader");
	if (s->pipe.loop != kx_host.loop)
		return kx_fail(L, "%s", parent_stream);
	int n = stream_take(s, L, mode, want);
	if (n >= 0) {
		stream_flow(s);
		return n;
	}
	kx_task *t = kx_checktask(L, "read");
	s->reader = t;
	s->mode = mode;
	s->want = want;
	stream_flow(s);
	return kx_await(L, t, -1, reader_cancel, s);
}

static int lines_iter(lua_State *L)
{
	lua_settop(L, 0);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushliteral(L, "l");
	return l_stream_read(L);
}

static int l_stream_lines(lua_State *L)
{
	checkopen(L, 1);
	lua_settop(L, 1);
	lua_pushcclosure(L, lines_iter, 1);
	return 1;
}

static void on_written(uv_write_t *req, int status)
{
	struct kx_stream *s = req->data;
	luaL_unref(kx_host.L, LUA_REGISTRYINDEX, s->wref);
	s->wref = LUA_NOREF;
	kx_task *t = s->writer;
	s->writer = NULL;
	if (!t)
		return;
	lua_State *T = kx_task_state(t);
	if (status < 0) {
		lua_pushnil(T);
		lua_pushstring(T, uv_strerror(status));
		kx_wake(t, 2);
	} else {
		lua_pushboolean(T, 1);
		kx_wake(t, 1);
	}
}

static void writer_cancel(void *ud)
{
	((struct kx_stream *)ud)->writer = NULL;
}

/* stream:write(s) -> true | nil, err; waits until the data is handed over. */
static int l_stream_write(lua_State *L)
{
	struct kx_stream *s = checkopen(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);

	if (s->pipe.loop != kx_host.loop)
		return kx_fail(L, "%s", parent_stream);
	if (s->writer || s->wref != LUA_NOREF)
		return luaL_error(L, "stream already has a writer");
	kx_task *t = kx_checktask(L, "write");
	lua_pushvalue(L, 2);
	s->wref = luaL_ref(L, LUA_REGISTRYINDEX);
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	s->wreq.data = s;
	int r = uv_write(&s->wreq, (uv_stream_t *)&s->pipe, &b, 1, on_written);
	if (r < 0) {
		luaL_unref(L, LUA_REGISTRYINDEX, s->wref);
		s->wref = LUA_NOREF;
		return kx_fail(L, "%s", uv_strerror(r));
	}
	s->writer = t;
	return kx_await(L, t, -1, writer_cancel, s);
}

static int l_stream_close(lua_State *L)
{
	kx_stream_close(checkstream(L, 1));
	return 0;
}

static int l_stream_gc(lua_State *L)
{
	struct kx_stream *s = checkstream(L, 1);
	free(s->buf);
	s->buf = NULL;
	s->len = s->cap = 0;
	return 0;
}

struct kx_stream *kx_stream_new(lua_State *L, int fd)
{
	struct kx_stream *s = lua_newuserdatauv(L, sizeof *s, 0);
	memset(s, 0, sizeof *s);
	luaL_setmetatable(L, STREAM_MT);
	uv_pipe_init(kx_host.loop, &s->pipe, 0);
	s->pipe.data = s;
	s->open = 1;
	s->wref = LUA_NOREF;
	lua_pushvalue(L, -1);
	s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	int r = uv_pipe_open(&s->pipe, fd);
	if (r < 0) {
		close(fd);
		kx_stream_close(s);   /* the registry keeps it until closed */
		lua_pop(L, 1);
		errno = -r;
		return NULL;
	}
	return s;
}

void kx_stream_start_reading(struct kx_stream *s)
{
	uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
}

void kx_open_stream(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"read", l_stream_read},
		{"lines", l_stream_lines},
		{"write", l_stream_write},
		{"close", l_stream_close},
		{NULL, NULL},
	};
	static const luaL_Reg meta[] = {
		{"__gc", l_stream_gc},
		{"__close", l_stream_close},
		{NULL, NULL},
	};
	kx_defclass(L, &(struct kx_class){STREAM_MT, methods, NULL, meta});
	lua_pop(L, 1);
}
