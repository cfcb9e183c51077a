/*
 * pagerloop.c - the children a pager serves and its loop (pager.c's
 * header comment says what it does; pager.h what the halves share).
 */
#include "pager.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- children ------------------------------------------------------------------ */

/* What a child asks for through its environment: flags RF_JOIN_*, its
 * read-ahead window's first and largest size. */
void rf_pager_knobs(uint32_t *flags, uint32_t *ra_base, uint32_t *ra_max)
{
	const char *e = getenv("KXRUN_RFORK_CACHE");
	*flags = (getenv("KXRUN_RFORK_STATS") ? RF_JOIN_STATS : 0) |
	         (e && !strcmp(e, "0") ? RF_JOIN_NOCACHE : 0) |
	         (getenv("KXRUN_RFORK_PREFETCH") ? RF_JOIN_NOLEARN : 0);
	e = getenv("KXRUN_RFORK_READAHEAD");
	*ra_base = e && atoi(e) >= 1 && atoi(e) <= RF_MAX_PAGES ? (uint32_t)atoi(e) : 16;
	e = getenv("KXRUN_RFORK_READAHEAD_MAX");
	*ra_max = e && atoi(e) >= 1 && atoi(e) <= RF_MAX_PAGES ? (uint32_t)atoi(e) : RF_MAX_PAGES;
	if (*ra_max < *ra_base)
		*ra_max = *ra_base;
}

/* A child to serve (its batch: nplan ranges, the first `learned` the
 * holder's), or NULL when it cannot be.  Its process is served on uffd,
 * or is `forked`, a template's fork served already. */
static struct fam *new_fam(pid_t pid, int uffd, struct client *forked, int errfd, int watch,
                           const struct rf_page_req *plan,
                           int nplan, int learned, long pages, uint32_t flags,
                           uint32_t ra_base, uint32_t ra_max, int mapped)
{
	if (nfams == MAX_FAMS || (!forked && nclients == MAX_CLIENTS))
		return NULL;
	int pidfd = syscall(SYS_pidfd_open, pid, 0);
	struct fam *F = calloc(1, sizeof *F);
	if (pidfd < 0 || !F || !(F->plan = malloc((nplan + 1) * sizeof *plan))) {
		if (pidfd >= 0)
			close(pidfd);
		free(F);
		return NULL;
	}
	memcpy(F->plan, plan, nplan * sizeof *plan);
	F->id = ++fam_ids;
	F->pid = pid;
	F->pidfd = pidfd;
	F->errfd = errfd;
	F->watch = watch;
	F->nplan = nplan;
	F->plan_learned = learned;
	F->plan_pages = pages;
	F->flags = flags;
	F->ra_base = ra_base;
	F->ra_max = ra_max;
	F->mapped = mapped;
	F->t0 = now_s();
	if (learned_here.children < RF_LEARN_CHILDREN)
		F->logging = (F->log = malloc(RF_LEARN_RANGES * sizeof *F->log)) != NULL;
	if (forked) {
		/* its ranges are registered and what its template had mapped it
		 * has: no batch; what is asked for it is its own from now on */
		forked->fam = F;
		forked->root = 1;
		F->root = forked->id;
		F->started = 1;
		for (int i = 0; i < fl_n; i++)
			if (fl[(fl_head + i) % MAX_FLIGHT].client == forked->id)
				fl[(fl_head + i) % MAX_FLIGHT].fam = F->id;
	} else {
		struct client *c = &clients[nclients++];
		*c = (struct client){.uffd = uffd, .id = ++client_ids, .fam = F, .root = 1};
		F->root = c->id;
		const struct rf_map *m = rf_desc_maps(desc);
		for (uint32_t i = 0; i < desc->nmaps; i++)
			if (m[i].kind == RF_MAP_SERVE)
				add_seg(c, m[i].start, m[i].end, m[i].start);
	}
	fams[nfams++] = F;
	children_served++;
	return F;
}

static void print_stats(const struct fam *F)
{
	char how[160];
	T->stats(conn, how, sizeof how);
	dprintf(F->errfd, "kxrun rfork: pager of child %d: %ld faults, %ld pages fetched in %ld "
	        "requests (largest %ld; %ld read-ahead markers hit; %.1f ms reading answers), "
	        "%ld zero pages, %ld forks, %ld pages dropped; %ld pages prefetched (%d ranges, "
	        "%d learned) in %.1f ms%s; %ld pages from the cache (pager %d, %ld children, "
	        "%llu pages kept), %ld mapped\n", F->pid, F->faults, F->pages, F->requests,
	        F->maxwin, F->markers, F->wait_s * 1e3, F->zero, F->forks, F->dropped,
	        F->plan_pages, F->nplan + F->learned_used, F->plan_learned + F->learned_used,
	        F->batch_s * 1e3, how, F->cached, getpid(), children_served,
	        (unsigned long long)rf_cache_pages(), F->continued);
}

/* A child has ended: its log joins the learned set, it is forgotten. */
static void end_fam(struct fam *F)
{
	if (F->flags & RF_JOIN_STATS)
		print_stats(F);
	if (F->logging && F->nlog && learned_here.children < RF_LEARN_CHILDREN) {
		rf_learn_merge(&learned_here, F->log, F->nlog);
		learned_here.children++;
	}
	for (int i = nclients - 1; i >= 0; i--)
		if (clients[i].fam == F)
			drop_client(i);
	for (int i = 0; i < fl_n; i++) {
		struct flight *f = &fl[(fl_head + i) % MAX_FLIGHT];
		if (f->fam == F->id)
			f->dropped = 1;
	}
	close(F->pidfd);
	if (F->errfd != 2)
		close(F->errfd);
	if (F->watch >= 0)
		close(F->watch);
	free(F->plan);
	free(F->log);
	int i = 0;
	while (fams[i] != F)
		i++;
	fams[i] = fams[--nfams];
	free(F);
}

static int key_equal(const uint8_t *a, const uint8_t *b)
{
	uint8_t diff = 0;   /* constant time: no early exit */
	for (int i = 0; i < 16; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/* The fork j names: the seq-th of the template with pid j->tmpl, not
 * served as a child of its own yet. */
static struct client *template_fork(const struct rf_join *j)
{
	for (int i = 0; i < nclients; i++) {
		const struct fam *T = clients[i].fam;
		if (!clients[i].root && clients[i].seq == j->seq && T->pid == j->tmpl &&
		    (T->flags & RF_JOIN_TEMPLATE))
			return &clients[i];
	}
	return NULL;
}

/* A joining child's message, when it has come: served, or refused. */
static int take_join(int fd, const uint8_t *key)
{
	static struct rf_page_req plan[RF_BATCH_RANGES];
	struct rf_join j;
	int uffd, errfd, watch;
	pid_t pid;
	int r = rf_join_recv(fd, &j, plan, &uffd, &errfd, &watch, &pid);
	if (r == 0)
		return 0;
	struct fam *F = NULL;
	uint8_t status = r < 0 || !key_equal(j.key, key) ? RF_EAUTH : RF_EFULL;
	struct client *forked = NULL;
	if (status == RF_EFULL && (j.flags & RF_JOIN_ADOPT)) {
		if ((forked = template_fork(&j))) {   /* served as its template is */
			const struct fam *T = forked->fam;
			j.flags = T->flags & ~(RF_JOIN_TEMPLATE | RF_JOIN_CANMAP);
			j.ra_base = T->ra_base, j.ra_max = T->ra_max;
			j.nplan = j.learned = 0, j.pages = 0;
		} else {
			status = RF_EID;
		}
	}
	/* a child that can map the cache's memfd gets it with the answer (a
	 * template's fork maps it already) */
	int memfd = j.flags & RF_JOIN_CANMAP && !forked ? rf_cache_fd() : -1;
	int mapped = forked ? forked->fam->mapped : memfd >= 0;
	if (status == RF_EFULL && j.ra_base >= 1 && j.ra_base <= j.ra_max &&
	    j.ra_max <= RF_MAX_PAGES)
		F = new_fam(pid, uffd, forked, errfd, watch, plan, j.nplan, j.learned, j.pages, j.flags,
		            j.ra_base, j.ra_max, mapped);
	if (F) {
		status = RF_OK;
	} else if (r > 0) {
		if (uffd >= 0)
			close(uffd);
		close(errfd);
		close(watch);
	}
	rf_join_answer(fd, status, F ? memfd : -1);
	return 1;
}

/* ---- start and loop ------------------------------------------------------------ */

/* RDMA instead of TCP when asked for; 0, or -1 + err when it must not go
 * on over TCP. */
static int choose_transport(const struct rf_desc *d, const struct rf_pager_opts *o,
                            uint32_t buf_pages, char *info, size_t infolen)
{
	if (!o->rdma)
		return 0;
	int declined;
	struct rf_conn *r = rf_rdma_upgrade(conn, d, o->host, o->required, o->timeout_ms,
	                                    buf_pages, &declined, info, infolen);
	if (r) {
		conn = r;
		T = &rf_rdma;
		snprintf(info, infolen, "%s", T->device(r));
		return 0;
	}
	return o->required || !declined ? -1 : 0;   /* else TCP, info says why */
}

/* KXRUN_RFORK_CACHE: SIZE with an optional K, M or G. */
static uint64_t cache_bytes(void)
{
	const char *e = getenv("KXRUN_RFORK_CACHE");
	char *end;
	uint64_t n = e ? strtoull(e, &end, 10) : 256;
	if (!e)
		return n << 20;
	switch (*end) {
	case 'k': case 'K': return n << 10;
	case 'm': case 'M': return n << 20;
	case 'g': case 'G': return n << 30;
	default: return n;
	}
}

void rf_pager_main(int uffd, pid_t child, const struct rf_desc *d, struct rf_conn *c,
                   int ready_fd, const struct rf_pager_opts *o)
{
	desc = d;
	conn = c;
	uint32_t flags, ra_base, ra_max;
	rf_pager_knobs(&flags, &ra_base, &ra_max);
	if (o->rdma && !getenv("KXRUN_RFORK_READAHEAD_MAX"))
		ra_max = 256;   /* RDMA lands whole windows in registered (locked) memory */
	if (ra_max < ra_base)
		ra_max = ra_base;
	const struct rf_prefetch *p = rf_prefetch_plan();
	/* the answer to the resuming process: 0 and "TRANSPORT\tINFO", or
	 * 1 and why it cannot go on */
	char msg[320], info[256] = "";
	uint32_t need = p->pages > ra_max ? (uint32_t)p->pages : ra_max;
	int bad = choose_transport(d, o, need, info, sizeof info) < 0;
	/* TCP reads a chunk at a time; RDMA lands whole fetches */
	buf = bad ? NULL : T->buffer(conn, T->send_req ? CHUNK : need, info, sizeof info);
	struct fam *F = bad || !buf ? NULL : new_fam(child, uffd, NULL, 2, o->watch, p->q, p->n, p->learned,
	                                              p->pages, flags, ra_base, ra_max,
	                                              o->memfd >= 0);
	if (!bad && !F) {
		bad = 1;
		snprintf(info, sizeof info, "%s", buf ? "pidfd_open failed" : info);
	}
	if (!o->rdma) {   /* nobody waits for the word: the child is on its way */
		if (bad) {
			fprintf(stderr, "kxrun rfork: resumed child %d: %s; the parent's image cannot "
			        "be reached, killing the child\n", child, info);
			kill(child, SIGKILL);
			_exit(1);
		}
	} else {
		int len = snprintf(msg, sizeof msg, "%c%s\t%s", bad, bad ? "" : T->name, info);
		if (write(ready_fd, msg, len) != len || bad)
			_exit(1);
	}
	close(ready_fd);
	/* shared: later children come through the socket; this one's
	 * messages go to its stderr, which nothing here keeps open after it */
	int lfd = o->share && T->send_req ? rf_local_listen(o->share, SOCK_SEQPACKET) : -1;
	int null = lfd >= 0 ? open("/dev/null", O_WRONLY | O_CLOEXEC) : -1;
	if (null >= 0 && (F->errfd = fcntl(2, F_DUPFD_CLOEXEC, 3)) >= 0)
		dup2(null, 2);
	else if (lfd >= 0)
		F->errfd = 2;
	if (null >= 0)
		close(null);
	/* the cache: in the memfd the first child maps, else one of its own
	 * (children then get copies) */
	int memfd = lfd < 0 ? -1 : o->memfd >= 0 ? o->memfd : rf_cache_memfd();
	if (memfd >= 0 && rf_cache_init(cache_bytes(), memfd, d) < 0)
		close(memfd);
	else if (memfd < 0 && o->memfd >= 0)
		close(o->memfd);   /* serving this child alone: nothing kept */
	const char *e = getenv("KXRUN_RFORK_PAGER_IDLE");
	double idle_s = (e && atoi(e) >= 0 ? atoi(e) : 250) / 1e3;
	if (p->n && T->send_req) {
		char err[256];
		if (!p->sent && T->send_batch(conn, p->q, p->n, err, sizeof err) < 0)
			fatal(err);
		F->pending = 1;
		push_flight((struct flight){.fam = F->id, .npages = (uint32_t)p->pages, .q = p->q,
		                            .nq = p->n});
	}
	struct {
		int fd;
		double since;
	} joins[MAX_JOINS];
	int njoins = 0;
	struct uffd_msg msgs[16];
	static struct pollfd pf[1 + 1 + MAX_JOINS + MAX_FAMS + MAX_CLIENTS];
	static uint32_t who[MAX_FAMS + MAX_CLIENTS];   /* the fam/client id of each */
	double last_reap = now_s(), waiting = 0, idle_since = now_s();
	for (;;) {
		/* a batch not installed before its child's first fault waits
		 * there when there is no cache to keep it in */
		const struct flight *h = &fl[fl_head];
		const struct fam *hf = fl_n && h->q && !h->dropped ? fam_by_id(h->fam) : NULL;
		int can_read = fl_n && !(hf && !hf->started && !rf_cache_on());
		if (!can_read)
			waiting = 0;
		else if (!waiting)
			waiting = now_s();
		int np = 0, forks = 0;
		/* with nothing asked, the holder's connection says only that it closed */
		pf[np++] = (struct pollfd){T->send_req ? T->fd(conn) : -1,
		                           can_read || !fl_n ? POLLIN : 0, 0};
		pf[np++] = (struct pollfd){lfd, POLLIN, 0};
		for (int i = 0; i < njoins; i++)
			pf[np++] = (struct pollfd){joins[i].fd, POLLIN, 0};
		int fam_at = np, nf = nfams;
		for (int i = 0; i < nf; i++) {
			who[np - fam_at] = fams[i]->id;
			pf[np++] = (struct pollfd){fams[i]->pidfd, POLLIN, 0};
		}
		int cl_at = np, nc = nclients;
		for (int i = 0; i < nc; i++) {
			who[np - fam_at] = clients[i].id;
			forks += !clients[i].root;
			pf[np++] = (struct pollfd){clients[i].uffd, POLLIN, 0};
		}
		double t = now_s();
		int timeout = can_read ? o->timeout_ms : forks || njoins ? 1000 : -1;
		if (!nfams && lfd >= 0) {
			int left = (int)((idle_since + idle_s - t) * 1e3) + 1;
			timeout = timeout < 0 || left < timeout ? (left > 0 ? left : 0) : timeout;
		}
		int r = poll(pf, np, timeout);
		if (r < 0 && errno != EINTR)
			fatal("poll failed");
		for (int i = 0; r > 0 && i < nf; i++) {
			struct fam *ended = pf[fam_at + i].revents ? fam_by_id(who[i]) : NULL;
			if (ended) {   /* the child has ended */
				end_fam(ended);
				idle_since = now_s();
			}
		}
		if (!nfams && lfd < 0)
			_exit(0);   /* it served one child */
		if (can_read && now_s() - waiting > o->timeout_ms / 1e3)
			fatal("no answer from the holder in time");
		for (int i = 0; r > 0 && i < nc; i++) {
			if (!pf[cl_at + i].revents)
				continue;
			uint32_t id = who[cl_at - fam_at + i];
			struct client *cl = client_by_id(id);
			ssize_t got = cl ? read(cl->uffd, msgs, sizeof msgs) : 0;
			if (got < 0 && errno != EAGAIN && errno != EINTR && cl->root)
				kill_fam(cl->fam, "reading the userfaultfd failed");
			for (ssize_t k = 0; k < got / (ssize_t)sizeof msgs[0]; k++)
				if ((cl = client_by_id(id)))
					on_event(cl, &msgs[k]);
		}
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			char err[256] = "the holder closed the connection";
			if (fl_n) {
				read_answer();
				waiting = now_s();
			} else {
				if (T->recv_reply(conn, 0, err, sizeof err) == 0)
					snprintf(err, sizeof err, "unexpected data from the holder");
				fatal(err);
			}
		}
		for (int i = 0; i < njoins; i++) {
			if (pf[2 + i].revents && take_join(joins[i].fd, o->key)) {
				joins[i].fd = -1;
			} else if (now_s() - joins[i].since > 2) {
				close(joins[i].fd);   /* connected and silent */
				joins[i].fd = -1;
			}
		}
		int k = 0;
		for (int i = 0; i < njoins; i++)
			if (joins[i].fd >= 0)
				joins[k++] = joins[i];
		njoins = k;
		int fd;
		if ((pf[1].revents & POLLIN) && njoins < MAX_JOINS && (fd = rf_join_accept(lfd)) >= 0)
			joins[njoins++] = (typeof(joins[0])){fd, now_s()};
		if (!nfams && !njoins && lfd >= 0 && now_s() - idle_since >= idle_s)
			_exit(0);   /* nobody came for a while */
		if (forks && now_s() - last_reap > 1) {
			reap_forks();
			last_reap = now_s();
		}
	}
}
