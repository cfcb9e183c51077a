/*
 * zygote.c - where rfork.spawn's children are forked from.
 *
 * A fork copies the caller's page tables, and the resuming child's pager
 * (a clone of it) copies them again: for a kxrun holding 200 MiB of small
 * Lua strings that is ~13 ms a resume.  So the children come from a small
 * process instead: `kxrun rfork _zygote`, started by the first
 * rfork.spawn (exec'd, taken by the early main: no Lua, no loop), which
 * gets each request on a SOCK_SEQPACKET socket (its stdin) with the
 * child's stdio and report pipe as SCM_RIGHTS, and starts the child
 * through kx_spawn with KX_SPAWN_SIBLING: a clone with CLONE_PARENT, so
 * the child is the caller's own, which waits for it, signals it and reaps
 * it as kx.spawn's.  It answers the pid once the child has its session and
 * stdio (kx_spawn's report pipe), or why not.  The child changes to cwd and
 * runs rf_resume; what fails before the switch it writes to the report
 * pipe and exits 1.  Where it can, the zygote hands the request to a
 * template of the snapshot instead (template.c: resumed once, it forks
 * each child, also with CLONE_PARENT), and answers what it answers.  The
 * zygote ends with its caller (end of file, PR_SET_PDEATHSIG); a caller
 * whose zygote died starts another.
 */
#include "rfork.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fdpass.h"
#include "hostside.h"
#include "internal.h"

struct zreq {
	int io[3];          /* enum kx_io: KX_IO_FD ones come as descriptors */
	int has_ct, ct_pid, ct_net;
	double ct_cpus;
	uint64_t ct_memory, ct_pids;
	char address[256], id[24], key[40], transport[8], cwd[PATH_MAX];
	char rootfs[PATH_MAX], netns[256], hostname[256];
};

struct zreply {
	int pid;            /* > 0, or -errno with err */
	int tmpl;           /* a template started for it (the caller reaps it), or 0 */
	char err[512];
};

/* ---- the child: rf_resume (kx_spawn's run) -------------------------------- */

struct zchild {
	const struct zreq *q;
	struct rf_container ct;
	int report;
	int *gate;
};

/* A child forked for a request goes on only once the caller has its pid:
 * a zygote or template killed in between leaves no child the caller does
 * not know of while it asks another (a task run twice).  The forker's
 * side: the gate's write end, written once the answer went out. */
int rf_gate_pass(int gate[2])
{
	char go;
	close(gate[1]);
	ssize_t n;
	while ((n = read(gate[0], &go, 1)) < 0 && errno == EINTR)
		;
	close(gate[0]);
	return n == 1;
}

static void gate_open(int *w, int sent)
{
	if (*w >= 0 && sent)
		kx_write_all(*w, "g", 1);
	if (*w >= 0)
		close(*w);
	*w = -1;
}

int rf_child_cwd(const char *cwd, int report)
{
	if (!cwd[0] || chdir(cwd) == 0)
		return 0;
	char err[PATH_MAX + 64];
	snprintf(err, sizeof err, "cwd '%s': %s", cwd, strerror(errno));
	kx_write_all(report, err, strlen(err));
	return -1;
}

static int run_resume(void *ud)
{
	struct zchild *c = ud;
	const struct zreq *q = c->q;
	char err[512];
	if (!rf_gate_pass(c->gate))
		return 1;   /* nobody knows of it: says nothing */
	if (rf_child_cwd(q->cwd, c->report) < 0)
		return 1;
	rf_resume(q->address, q->id, q->key, q->transport, q->has_ct ? &c->ct : NULL, err,
	          sizeof err);
	kx_write_all(c->report, err, strlen(err));
	return 1;
}

/* ---- templates (template.c) ---------------------------------------------------
 * A child of a snapshot is forked from its template where one can run
 * (TCP, the shared pager, no container; KXRUN_RFORK_TEMPLATE=0 says
 * never): started by the first such request that finds the shared pager
 * running, ended by its own idleness or death, replaced by the next
 * request.  A request the template cannot serve is served as before. */

#define MAX_TEMPLATES 4
#define TEMPLATE_TRIES 3   /* starts failed in a row: that snapshot gets none */
static struct tmpl {
	char address[256], id[24], key[40];
	int sock;           /* -1: none running */
	pid_t pid;          /* its process */
	int failed;
	int started, forks; /* templates started, children its current one forked */
} Tm[MAX_TEMPLATES] = {{.sock = -1}, {.sock = -1}, {.sock = -1}, {.sock = -1}};

static int templates_wanted(const struct zreq *q)
{
	const char *t = getenv("KXRUN_RFORK_TEMPLATE"), *p = getenv("KXRUN_RFORK_PAGER");
	return !q->has_ct && !(t && !strcmp(t, "0")) && !(p && !strcmp(p, "private")) &&
	       strcmp(q->transport, "rdma");
}

struct tchild {
	const struct zreq *q;
	int order;
};

static int run_template(void *ud)
{
	const struct tchild *c = ud;
	struct rf_order_reply a = {0};
	rf_resume_template(c->q->address, c->q->id, c->q->key, c->q->transport, c->order, a.err,
	                   sizeof a.err);
	a.pid = -1;
	send(c->order, &a, sizeof a, MSG_NOSIGNAL);
	return 1;
}

/* Starts t's template; 0 once it said it is ready, else -1.  *pid: the
 * process started (the caller reaps it), or 0. */
static int start_template(struct tmpl *t, const struct zreq *q, pid_t *pid)
{
	int sv[2];
	*pid = 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	static const char *const argv[] = {"rfork.spawn", NULL};
	struct tchild c = {q, sv[1]};
	struct kx_spawn o = {.argv = argv, .run = run_template, .ud = &c,
	                     .flags = KX_SPAWN_SESSION | KX_SPAWN_DETACH | KX_SPAWN_SIBLING |
	                              KX_SPAWN_KEEP_SIGNALS};
	o.io[0] = o.io[1] = KX_IO_NULL;   /* stderr: the zygote's (the caller's) */
	char err[256];
	pid_t p = kx_spawn(&o, err, sizeof err);
	close(sv[1]);
	struct rf_order_reply a;
	struct pollfd pf = {sv[0], POLLIN, 0};
	if (p > 0)
		*pid = p;
	/* it resumes as a child does (the holder's timeout is 10 s) */
	if (p > 0 && poll(&pf, 1, 15000) == 1 && recv(sv[0], &a, sizeof a, 0) == sizeof a &&
	    a.pid == p) {
		struct timeval tv = {10, 0};   /* a template that stops answering is dropped */
		setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		t->sock = sv[0];
		t->pid = p;
		t->failed = 0;
		t->started++;
		t->forks = 0;
		return 0;
	}
	if (p > 0)
		kill(p, SIGKILL);
	close(sv[0]);
	t->failed++;
	return -1;
}

/* A template joins the shared pager, which the first child of a snapshot
 * here starts: asked before a template is started for nothing. */
static int pager_running(const struct zreq *q)
{
	char name[160];
	rf_join_name(name, sizeof name, q->address, strtoull(q->id, NULL, 16));
	int fd = rf_local_connect(name, SOCK_SEQPACKET);
	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

/* The running template of q's snapshot, started if need be, or NULL. */
static struct tmpl *template_for(const struct zreq *q, pid_t *started)
{
	static int next;
	struct tmpl *t = NULL;
	*started = 0;
	for (int i = 0; i < MAX_TEMPLATES && !t; i++)
		if (!strcmp(Tm[i].address, q->address) && !strcmp(Tm[i].id, q->id) &&
		    !strcmp(Tm[i].key, q->key))
			t = &Tm[i];
	if (!t) {   /* a slot: a free one, else the next in turn */
		for (int i = 0; i < MAX_TEMPLATES && !t; i++)
			if (!Tm[i].address[0])
				t = &Tm[i];
		if (!t) {
			t = &Tm[next++ % MAX_TEMPLATES];
			if (t->sock >= 0)
				close(t->sock);   /* its template ends */
		}
		*t = (struct tmpl){.sock = -1};
		snprintf(t->address, sizeof t->address, "%s", q->address);
		snprintf(t->id, sizeof t->id, "%s", q->id);
		snprintf(t->key, sizeof t->key, "%s", q->key);
	}
	if (t->sock < 0 && (t->failed >= TEMPLATE_TRIES || !pager_running(q) ||
	                    start_template(t, q, started) < 0))
		return NULL;
	return t;
}

/* The request forked by t's template: 0 with *pid and *gate (the child's,
 * to open once the caller has the pid), or -1 (the template is gone or
 * failed: it is dropped). */
static int fork_from(struct tmpl *t, const struct zreq *q, const int *fds, int nfds, pid_t *pid,
                     int *gate)
{
	struct rf_order o = {{q->io[0], q->io[1], q->io[2]}, ""};
	snprintf(o.cwd, sizeof o.cwd, "%s", q->cwd);
	struct iovec iov = {&o, sizeof o};
	struct rf_order_reply a;
	struct iovec aiov = {&a, sizeof a};
	int ngate = 0;
	ssize_t n = kx_sendfds(t->sock, &iov, 1, fds, nfds, MSG_NOSIGNAL);
	if (n == (ssize_t)sizeof o)
		while ((n = kx_recvfds(t->sock, &aiov, 1, gate, 1, &ngate, 0)) == -EINTR)
			;
	if (n == (ssize_t)sizeof a && a.pid > 0 && ngate == 1) {
		*pid = a.pid;
		/* The pager learns the pages its first children touch; what it
		 * has learned when a template starts is mapped in the template
		 * and so in every fork of it.  The first template of a snapshot
		 * starts before that: it is replaced once the pager has seen as
		 * many children as it learns from. */
		if (++t->forks == RF_LEARN_CHILDREN && t->started == 1) {
			close(t->sock);
			t->sock = -1;
		}
		return 0;
	}
	if (ngate == 1)
		close(*gate);   /* (a child it forked never goes on) */
	*gate = -1;
	close(t->sock);
	t->sock = -1;
	kill(t->pid, SIGKILL);   /* it has failed, or is stuck (the caller reaps it) */
	return -1;
}

/* ---- the zygote ------------------------------------------------------------- */

static const char *opt(const char *s)
{
	return s[0] ? s : NULL;
}

static void serve(int sock, const struct zreq *q, const int *fds, int nfds)
{
	struct zreply r = {0};
	int gate[2] = {-1, -1};
	struct tmpl *t = templates_wanted(q) ? template_for(q, &r.tmpl) : NULL;
	if (t && fork_from(t, q, fds, nfds, &r.pid, &gate[1]) == 0) {
		gate_open(&gate[1], send(sock, &r, sizeof r, MSG_NOSIGNAL) == sizeof r);
		return;
	}
	if (pipe2(gate, O_CLOEXEC) < 0) {
		r.pid = -errno;
		snprintf(r.err, sizeof r.err, "pipe: %s", strerror(errno));
		send(sock, &r, sizeof r, MSG_NOSIGNAL);
		return;
	}
	static const char *const argv[] = {"rfork.spawn", NULL};
	struct kx_spawn o = {.argv = argv, .run = run_resume,
	                     .flags = KX_SPAWN_SESSION | KX_SPAWN_DETACH | KX_SPAWN_SIBLING |
	                              KX_SPAWN_KEEP_SIGNALS};   /* rf_resume_warm's */
	struct zchild c = {.q = q, .report = fds[0], .gate = gate};
	int at = 1;
	for (int i = 0; i < 3; i++) {
		o.io[i] = q->io[i] == KX_IO_FD && at < nfds ? KX_IO_FD : KX_IO_NULL;
		if (o.io[i] == KX_IO_FD)
			o.fd[i] = fds[at++];
	}
	if (q->has_ct)
		c.ct = (struct rf_container){opt(q->rootfs), q->ct_pid, q->ct_net, opt(q->netns),
		                             opt(q->hostname), q->ct_memory, q->ct_cpus, q->ct_pids};
	o.ud = &c;
	r.pid = kx_spawn(&o, r.err, sizeof r.err);
	close(gate[0]);
	gate_open(&gate[1], send(sock, &r, sizeof r, MSG_NOSIGNAL) == sizeof r);
}

int rf_zygote_main(int sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	prctl(PR_SET_NAME, "kxrun-zygote");
	if (getppid() == 1)
		return 0;   /* the caller is gone already */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0 && (sock = fcntl(sock, F_DUPFD_CLOEXEC, 3)) >= 0)
		dup2(null, 0);   /* its stdin is for no one */
	rf_resume_warm();   /* its children keep its (default) dispositions */
	for (;;) {
		struct zreq q;
		int fds[4], nfds;
		struct iovec iov = {&q, sizeof q};
		ssize_t n = kx_recvfds(sock, &iov, 1, fds, 4, &nfds, 0);
		if (n == -EMSGSIZE)
			continue;   /* not a request (its descriptors closed) */
		if (n <= 0)
			return 0;   /* the caller closed it: done */
		if (n == sizeof q && nfds >= 1)
			serve(sock, &q, fds, nfds);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	}
}

/* ---- the caller's side -------------------------------------------------------- */

static struct {
	pid_t pid;
	int sock;
} Z = {0, -1};

static void on_zygote_exit(pid_t pid, int wstatus, void *ud)
{
	(void)wstatus, (void)ud;
	kx_untrack_pgid(pid);
	if (Z.pid == pid) {
		close(Z.sock);
		Z.pid = 0, Z.sock = -1;
	}
}

static void on_template_exit(pid_t pid, int wstatus, void *ud)
{
	(void)pid, (void)wstatus, (void)ud;
}

static void forget_zygote(void *ud)
{
	(void)ud;
	if (Z.sock >= 0)
		close(Z.sock);   /* the parent's: a stand-in here */
	Z.pid = 0, Z.sock = -1;
}

static int start_zygote(char *err, size_t errlen)
{
	static int hooked;
	if (!hooked++)
		kx_on_resume(forget_zygote, NULL);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, errlen, "zygote: socketpair: %s", strerror(errno));
		return -1;
	}
	static const char *const argv[] = {"kxrun", "rfork", "_zygote", NULL};
	/* its symbols bound at its start, not lazily in each child (the
	 * dynamic linker's lookups were ~3% of a spawn's CPU) */
	static const char *const bind_now[] = {"LD_BIND_NOW=1", NULL};
	char **env = kx_env_new(bind_now);
	struct kx_spawn o = {.argv = argv, .file = "/proc/self/exe", .envp = (const char *const *)env,
	                     .flags = KX_SPAWN_SESSION};
	o.io[0] = KX_IO_FD, o.fd[0] = sv[1];
	o.io[1] = KX_IO_NULL;
	pid_t pid = kx_spawn(&o, err, errlen);
	free(env);
	close(sv[1]);
	if (pid < 0 || kx_child_watch(pid, on_zygote_exit, NULL) < 0) {
		if (pid > 0) {
			kill(pid, SIGKILL);
			snprintf(err, errlen, "zygote: cannot watch it");
		}
		close(sv[0]);
		return -1;
	}
	/* it answers at once (a clone and the child's set-up): one that does
	 * not in 10 s (stopped?) is replaced */
	struct timeval tv = {10, 0};
	setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	Z.pid = pid, Z.sock = sv[0];
	return 0;
}

static int copy(char *to, size_t n, const char *from, const char *what, char *err,
                size_t errlen)
{
	if (from && snprintf(to, n, "%s", from) >= (int)n) {
		snprintf(err, errlen, "%s is too long", what);
		return -1;
	}
	return 0;
}

/* One request and its answer: 0 with *pid; -1 and err (the zygote's
 * kx_spawn failed: *pid = -errno); -2 and err when the zygote is gone
 * (another may be tried). */
static int ask(const struct zreq *q, const int *fds, int nfds, pid_t *pid, char *err,
               size_t errlen)
{
	struct iovec iov = {(void *)q, sizeof *q};
	ssize_t n = kx_sendfds(Z.sock, &iov, 1, fds, nfds, MSG_NOSIGNAL);
	struct zreply r;
	if (n == (ssize_t)sizeof *q)
		while ((n = recv(Z.sock, &r, sizeof r, 0)) < 0 && errno == EINTR)
			;
	if (n != (ssize_t)sizeof r) {   /* gone or stuck: the next try starts another */
		snprintf(err, errlen, "the zygote is gone: %s", n < 0 ? strerror(errno) : "end of file");
		kill(Z.pid, SIGKILL);
		close(Z.sock);
		Z.pid = 0, Z.sock = -1;   /* on_zygote_exit reaps it */
		*pid = -ECHILD;
		return -2;
	}
	*pid = r.pid;
	if (r.tmpl > 0)
		kx_child_watch(r.tmpl, on_template_exit, NULL);   /* ours to reap */
	if (r.pid < 0) {
		snprintf(err, errlen, "%s", r.err);
		return -1;
	}
	return 0;
}

pid_t rf_zygote_spawn(const struct kx_spawn *o, void *ud, char *err, size_t errlen)
{
	const struct rf_spawn_args *a = ud;
	struct zreq *q = calloc(1, sizeof *q);
	if (!q) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int fds[4] = {a->report}, nfds = 1;
	for (int i = 0; i < 3; i++) {
		q->io[i] = o->io[i] == KX_IO_NULL ? KX_IO_NULL : KX_IO_FD;
		if (q->io[i] == KX_IO_FD)
			fds[nfds++] = o->io[i] == KX_IO_FD ? o->fd[i] : i;
	}
	const struct rf_container *ct = a->ct;
	q->has_ct = ct != NULL;
	if (ct) {
		q->ct_pid = ct->pid, q->ct_net = ct->net, q->ct_cpus = ct->cpus;
		q->ct_memory = ct->memory, q->ct_pids = ct->pids;
	}
	pid_t pid = -EINVAL;
	if (copy(q->address, sizeof q->address, a->address, "address", err, errlen) < 0 ||
	    copy(q->id, sizeof q->id, a->id, "id", err, errlen) < 0 ||
	    copy(q->key, sizeof q->key, a->key, "key", err, errlen) < 0 ||
	    copy(q->transport, sizeof q->transport, a->transport, "transport", err, errlen) < 0 ||
	    copy(q->cwd, sizeof q->cwd, o->cwd, "cwd", err, errlen) < 0 ||
	    (ct && (copy(q->rootfs, sizeof q->rootfs, ct->rootfs, "rootfs", err, errlen) < 0 ||
	            copy(q->netns, sizeof q->netns, ct->netns, "net", err, errlen) < 0 ||
	            copy(q->hostname, sizeof q->hostname, ct->hostname, "hostname", err,
	                 errlen) < 0)))
		goto out;
	for (int tries = 0; tries < 2; tries++) {
		if (Z.sock < 0 && start_zygote(err, errlen) < 0) {
			pid = -EAGAIN;
			break;
		}
		if (ask(q, fds, nfds, &pid, err, errlen) != -2)
			break;
	}
	if (pid > 0 && !(o->flags & KX_SPAWN_DETACH))
		kx_track_pgid(pid);   /* the child's session: kx_spawn's contract */
out:
	free(q);
	return pid;
}
