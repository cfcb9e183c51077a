/*
 * workpool.c - uv_queue_work in a resumed child (kx.rfork).
 *
 * libuv's threadpool keeps its state in hidden statics: a once-flag, the
 * worker count, a mutex and a condition variable.  A resumed child has the
 * parent's memory but not its threads, and no pthread_atfork handler ran
 * (that is how a fork() child gets a fresh pool): work posted there would
 * wait forever for workers that do not exist, behind a condition variable
 * whose waiters are ghosts.
 *
 * So kxrun defines uv_queue_work and uv_cancel itself (the executable's
 * definitions win over libuv's for every caller in kxrun and its bindings).
 * In a process that was never resumed they call libuv's own, found with
 * dlsym(RTLD_NEXT).  In a resumed child they use the small pool below:
 * workers started on demand (up to $UV_THREADPOOL_SIZE, default 4), results
 * handed to the loop through an async handle that keeps the loop alive
 * while work is pending, queued work cancellable (after_work_cb gets
 * UV_ECANCELED), running work not (UV_EBUSY), as in libuv.
 *
 * Not covered: libuv's internal users of its pool (uv_fs_* with a
 * callback, uv_getaddrinfo, uv_random with a callback) never complete in a
 * resumed child; kxrun and its bindings use none of them.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "hostside.h"

#define DEFAULT_WORKERS 4
#define MAX_WORKERS 128

struct item {
	uv_work_t *req;
	int status;
	struct item *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct item *todo, *todo_tail; /* FIFO */
	struct item *done;             /* LIFO, reversed when delivered */
	unsigned workers, idle, pending;
	uv_async_t async;
	uv_loop_t *loop;               /* the loop async belongs to */
} pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wake = PTHREAD_COND_INITIALIZER,
};

static int resumed;   /* this process is a resumed child */

static void *libuv_symbol(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

static unsigned max_workers(void)
{
	const char *v = getenv("UV_THREADPOOL_SIZE");
	long n = v ? strtol(v, NULL, 10) : DEFAULT_WORKERS;
	if (n < 1)
		n = 1;
	if (n > MAX_WORKERS)
		n = MAX_WORKERS;
	return (unsigned)n;
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pool.lock);
	for (;;) {
		while (!pool.todo) {
			pool.idle++;
			pthread_cond_wait(&pool.wake, &pool.lock);
			pool.idle--;
		}
		struct item *it = pool.todo;
		pool.todo = it->next;
		if (!pool.todo)
			pool.todo_tail = NULL;
		pthread_mutex_unlock(&pool.lock);
		it->req->work_cb(it->req);
		pthread_mutex_lock(&pool.lock);
		it->next = pool.done;
		pool.done = it;
		uv_async_send(&pool.async);
	}
	return NULL;
}

/* On the loop: after_work_cb of everything finished, in order. */
static void on_done(uv_async_t *h)
{
	(void)h;
	pthread_mutex_lock(&pool.lock);
	struct item *list = pool.done, *fifo = NULL;
	pool.done = NULL;
	pthread_mutex_unlock(&pool.lock);
	while (list) {
		struct item *next = list->next;
		list->next = fifo;
		fifo = list;
		list = next;
	}
	while (fifo) {
		struct item *it = fifo;
		fifo = it->next;
		uv_work_t *req = it->req;
		int status = it->status;
		free(it);
		if (--pool.pending == 0)
			uv_unref((uv_handle_t *)&pool.async);
		if (req->after_work_cb)
			req->after_work_cb(req, status);
	}
}

/* Called with the lock held. */
static int start_worker(void)
{
	pthread_t th;
	pthread_attr_t attr;
	sigset_t all, saved;

	sigfillset(&all);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_sigmask(SIG_BLOCK, &all, &saved);   /* workers take none */
	int r = pthread_create(&th, &attr, worker, NULL);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	pthread_attr_destroy(&attr);
	if (r == 0)
		pool.workers++;
	return r;
}

int uv_queue_work(uv_loop_t *loop, uv_work_t *req, uv_work_cb work_cb,
		  uv_after_work_cb after_work_cb)
{
	if (!resumed) {
		static int (*libuv_queue_work)(uv_loop_t *, uv_work_t *,
					       uv_work_cb, uv_after_work_cb);
		if (!libuv_queue_work)
			*(void **)&libuv_queue_work = libuv_symbol("uv_queue_work");
		if (!libuv_queue_work)
			return UV_ENOSYS;
		return libuv_queue_work(loop, req, work_cb, after_work_cb);
	}
	if (!work_cb)
		return UV_EINVAL;
	if (loop != kx_loop())
		return UV_ENOTSUP;   /* the resumed child's pool serves kxrun's loop */
	if (pool.loop != loop) {
		memset(&pool.async, 0, sizeof pool.async);
		int r = uv_async_init(loop, &pool.async, on_done);
		if (r < 0)
			return r;
		uv_unref((uv_handle_t *)&pool.async);
		pool.loop = loop;
	}
	struct item *it = calloc(1, sizeof *it);
	if (!it)
		return UV_ENOMEM;
	memset(&req->work_req, 0, sizeof req->work_req);
	req->type = UV_WORK;
	req->loop = loop;
	req->work_cb = work_cb;
	req->after_work_cb = after_work_cb;
	it->req = req;

	pthread_mutex_lock(&pool.lock);
	if (pool.idle == 0 && pool.workers < max_workers() &&
	    start_worker() != 0 && pool.workers == 0) {
		pthread_mutex_unlock(&pool.lock);
		free(it);
		return UV_EAGAIN;
	}
	if (pool.todo_tail)
		pool.todo_tail->next = it;
	else
		pool.todo = it;
	pool.todo_tail = it;
	pthread_cond_signal(&pool.wake);
	pthread_mutex_unlock(&pool.lock);
	if (pool.pending++ == 0)
		uv_ref((uv_handle_t *)&pool.async);
	return 0;
}

int uv_cancel(uv_req_t *req)
{
	if (!resumed || req->type != UV_WORK) {
		static int (*libuv_cancel)(uv_req_t *);
		if (!libuv_cancel)
			*(void **)&libuv_cancel = libuv_symbol("uv_cancel");
		if (!libuv_cancel)
			return UV_ENOSYS;
		return libuv_cancel(req);
	}
	struct item *it, *prev = NULL;
	pthread_mutex_lock(&pool.lock);
	for (it = pool.todo; it && it->req != (uv_work_t *)req; it = it->next)
		prev = it;
	if (it) {
		if (prev)
			prev->next = it->next;
		else
			pool.todo = it->next;
		if (pool.todo_tail == it)
			pool.todo_tail = prev;
		it->status = UV_ECANCELED;
		it->next = pool.done;
		pool.done = it;
		uv_async_send(&pool.async);
	}
	pthread_mutex_unlock(&pool.lock);
	/* not queued here: running, done, or the parent's (its workers are
	 * gone with it) */
	return it ? 0 : UV_EBUSY;
}

/* A resumed child (again, maybe): the workers of the process it was
 * resumed from are gone, and so is the work they had; their tasks are
 * cancelled. */
void rf_workpool_reset(void)
{
	resumed = 1;
	pthread_mutex_init(&pool.lock, NULL);
	pthread_cond_init(&pool.wake, NULL);
	while (pool.todo) {
		struct item *it = pool.todo;
		pool.todo = it->next;
		free(it);
	}
	while (pool.done) {
		struct item *it = pool.done;
		pool.done = it->next;
		free(it);
	}
	pool.todo_tail = NULL;
	pool.workers = pool.idle = pool.pending = 0;
	pool.loop = NULL;
}
