/*
 * resume.c - rf_resume: a process becomes a child of a prepared parent.
 *
 * Everything that can fail with an explanation happens before the point of
 * no return (descriptor, file identity, userfaultfd, free range, pager
 * connected); then signals are blocked, rseq is unregistered and the
 * restorer takes over on its own stack.
 */
#include "rfork.h"
#include "rdma.h"

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HIGH_END 0x7ffffffff000ULL   /* 47-bit user address space */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
#define STACK_SIZE (256 * 1024)

struct own_map {
	uint64_t start, end;
	char name[16];
};

/* procfs counts a process's threads in its task directory's links (two
 * of its own): one stat instead of reading /proc/self/status, whose text
 * costs ~60 us to make. */
static int single_threaded(void)
{
	struct stat st;
	return stat("/proc/self/task", &st) == 0 && st.st_nlink == 3;
}

/* Opens every file the child maps again from disk (executable and library
 * code, read-only data, shared file mappings), once each, and checks it is
 * the parent's: by build-id for ELF files, else by size and mtime.  (What
 * comes from the holder does not depend on local files.)  fds[i] for
 * identity i, -1 when unused; the restorer maps these descriptors, so a
 * container's root need not have the files. */
static int open_files(const struct rf_desc *d, int *fds, char *err, size_t errlen)
{
	const struct rf_ident *ids = rf_desc_idents(d);
	const struct rf_map *m = rf_desc_maps(d);
	for (uint32_t i = 0; i < d->nident; i++) {
		fds[i] = -1;
		const char *path = rf_desc_str(d, ids[i].path);
		int mapped = 0, writable = 0;
		for (uint32_t k = 0; k < d->nmaps; k++)
			if (m[k].kind == RF_MAP_FILE && m[k].path == ids[i].path) {
				mapped = 1;
				writable |= m[k].shared && (m[k].prot & PROT_WRITE);
			}
		if (!mapped)
			continue;
		struct rf_ident here;
		fds[i] = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (fds[i] < 0 || rf_file_ident_fd(fds[i], &here) < 0) {
			snprintf(err, errlen, "the parent's file %s does not exist here: %s",
			         path, strerror(errno));
			return -1;
		}
		int same = ids[i].idlen ? here.idlen == ids[i].idlen &&
		                              !memcmp(here.id, ids[i].id, here.idlen)
		                        : here.size == ids[i].size && here.mtime == ids[i].mtime;
		if (!same) {
			snprintf(err, errlen, "%s differs from the parent's (%s): a child must "
			         "run the same binary and libraries", path,
			         ids[i].idlen ? "build-id" : "size or mtime");
			return -1;
		}
	}
	return 0;
}

static void close_files(const struct rf_desc *d, int *fds)
{
	for (uint32_t i = 0; fds && i < d->nident; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* A userfaultfd with the events the pager follows; *minor: 1 when it can
 * also serve a mapping of the cache's memfd (UFFD_FEATURE_MINOR_SHMEM,
 * Linux 5.14; else a second one without it). */
static int open_uffd(int *minor, char *err, size_t errlen)
{
	const uint64_t events = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
	                        UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
	for (*minor = 1;; *minor = 0) {
		int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (fd < 0) {
			if (errno == EPERM)
				snprintf(err, errlen, "userfaultfd not permitted: run as root (or with "
				         "CAP_SYS_PTRACE) or set vm.unprivileged_userfaultfd=1");
			else
				snprintf(err, errlen, "userfaultfd: %s (kernel without "
				         "CONFIG_USERFAULTFD?)", strerror(errno));
			return -1;
		}
		struct uffdio_api api = {.api = UFFD_API,
		                         .features = events | (*minor ? UFFD_FEATURE_MINOR_SHMEM : 0)};
		if (ioctl(fd, UFFDIO_API, &api) == 0)
			return fd;
		close(fd);
		if (!*minor) {
			snprintf(err, errlen, "userfaultfd API handshake: %s", strerror(errno));
			return -1;
		}
	}
}

static int own_maps(struct own_map **out, int *n)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return -1;
	char line[4096];
	int cap = 0;
	*out = NULL;
	*n = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long long a, b;
		int pos = 0;
		if (sscanf(line, "%llx-%llx %*s %*s %*s %*s%n", &a, &b, &pos) < 2)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 256;
			struct own_map *m = realloc(*out, cap * sizeof *m);
			if (!m)
				break;
			*out = m;
		}
		char *name = line + pos;
		while (*name == ' ')
			name++;
		name[strcspn(name, "\n")] = 0;
		struct own_map *m = &(*out)[(*n)++];
		m->start = a, m->end = b;
		snprintf(m->name, sizeof m->name, "%s", name[0] == '[' ? name : "");
	}
	fclose(f);
	return 0;
}

/* A zygote's layout, read once (rf_resume_warm): its forks have the same
 * but for what they mapped since, which build_region's
 * MAP_FIXED_NOREPLACE notices (rf_resume then reads its maps).  Its
 * signal dispositions, all the defaults: the restorer sets only those of
 * the parent that differ (else every one, 62 system calls).  And the
 * identities of its executable and libraries (identity.c). */
static struct own_map *g_own;
static int g_nown, g_signals_default;

static int remember_object(struct dl_phdr_info *info, size_t size, void *ud)
{
	(void)size, (void)ud;
	rf_ident_remember(info->dlpi_name[0] ? info->dlpi_name : "/proc/self/exe");
	return 0;
}

void rf_resume_warm(void)
{
	dl_iterate_phdr(remember_object, NULL);   /* the parent maps the same, usually */
	rf_signals_default();
	g_signals_default = 1;
	if (!g_own && own_maps(&g_own, &g_nown) < 0)
		g_own = NULL;
}

/* The parent's dispositions the restorer sets here. */
static uint64_t signals_to_set(const struct rf_desc *d)
{
	uint64_t set = 0;
	for (int i = 0; i < 64; i++) {
		const struct rf_ksigaction *sa = &d->sa[i];
		if (!(d->sa_valid & (1ULL << i)))
			continue;
		if (!g_signals_default || sa->handler != (uint64_t)(uintptr_t)SIG_DFL ||
		    (sa->flags & (SA_NOCLDSTOP | SA_NOCLDWAIT)))
			set |= 1ULL << i;
	}
	return set;
}

static int cmp_range(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* A range of len bytes free in both layouts, above 4 GiB. */
static uint64_t free_range(const struct rf_desc *d, const struct own_map *own, int nown,
                           uint64_t len)
{
	size_t n = d->nmaps + nown;
	uint64_t (*r)[2] = malloc(n * sizeof *r);
	if (!r)
		return 0;
	const struct rf_map *m = rf_desc_maps(d);
	for (uint32_t i = 0; i < d->nmaps; i++)
		r[i][0] = m[i].start, r[i][1] = m[i].end;
	for (int i = 0; i < nown; i++)
		r[d->nmaps + i][0] = own[i].start, r[d->nmaps + i][1] = own[i].end;
	qsort(r, n, sizeof *r, cmp_range);
	uint64_t at = 1ULL << 32, gap = 1ULL << 20;   /* keep off others' growth */
	for (size_t i = 0; i < n && at + len + gap <= HIGH_END; i++) {
		if (r[i][0] >= at + len + gap)
			break;
		if (r[i][1] + gap > at)
			at = r[i][1] + gap;
	}
	free(r);
	return at + len + gap <= HIGH_END ? at : 0;
}

/* The pager: a child in its own session (terminal signals are for the
 * child), taking over the connection that fetched the descriptor.  It is
 * running before the point of no return.  A raw clone whose exit signal
 * is none: no atfork handler runs, and the resumed child's waitpid(-1)
 * (which waits only for children that signal SIGCHLD) never sees it. */
static int start_pager(struct rf_conn *c, int uffd, const struct rf_desc *d,
                       const struct rf_pager_opts *po, struct rf_restore *r, pid_t *pager,
                       char *err, size_t errlen)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	pid_t child = getpid();
	*pager = syscall(SYS_clone, 0, 0, NULL, NULL, 0);
	if (*pager < 0) {
		snprintf(err, errlen, "clone: %s", strerror(errno));
		close(p[0]), close(p[1]);
		return -1;
	}
	if (*pager == 0) {
		close(p[0]);
		/* nothing of the old process stays open here (a pipe the child's
		 * reader waits on, the old loop's descriptors) but stderr */
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0)
			dup2(null, 0), dup2(null, 1);
		int keep[8] = {0, 1, 2, po->memfd, uffd, p[1], rf_tcp.fd(c), po->watch};
		rf_close_except(keep, 8);   /* (no memfd: -1) */
	setsid();
		prctl(PR_SET_NAME, "kxrun-pager");   /* what ps and top show */
		signal(SIGINT, SIG_DFL), signal(SIGTERM, SIG_DFL), signal(SIGHUP, SIG_DFL);
		signal(SIGPIPE, SIG_IGN);
		rf_pager_main(uffd, child, d, c, p[1], po);
	}
	close(p[1]);
	if (!po->rdma) {
		/* Over TCP nothing it does can change the switch: it gets ready
		 * while the restorer runs (a fault waits for it), and if it cannot
		 * it kills the child saying why. */
		close(p[0]);
		snprintf(r->transport, sizeof r->transport, "tcp");
		return 0;
	}
	/* the pager's first word: 0 and "TRANSPORT\tINFO", or 1 and why not */
	char msg[512];
	struct pollfd pf = {p[0], POLLIN, 0};
	ssize_t n = poll(&pf, 1, 2 * po->timeout_ms + 1000) == 1 ? read(p[0], msg, sizeof msg - 1)
	                                                          : -1;
	close(p[0]);
	msg[n > 0 ? n : 0] = 0;
	char *tab = n > 1 ? memchr(msg + 1, '\t', n - 1) : NULL;
	if (n > 1 && msg[0] == 0 && tab) {
		*tab = 0;
		snprintf(r->transport, sizeof r->transport, "%s", msg + 1);
		if (tab[1])
			snprintf(r->transport_info, sizeof r->transport_info, "%s", tab + 1);
		return 0;
	}
	snprintf(err, errlen, "%s", n > 1 && tab ? tab + 1 : "the pager did not start");
	return -1;
}

/* The transport asked for (NULL: "auto") against what the parent offers;
 * fills po (and r->transport_info with why not RDMA).  0 or -1 + err. */
static int choose_transport(const char *t, const char *address, const struct rf_desc *d,
                            struct rf_pager_opts *po, char *host, size_t hostlen,
                            struct rf_restore *r, char *err, size_t errlen)
{
	t = t ? t : "auto";
	int rdma = !strcmp(t, "rdma"), autom = !strcmp(t, "auto");
	if (!rdma && !autom && strcmp(t, "tcp")) {
		snprintf(err, errlen, "transport must be \"auto\", \"rdma\" or \"tcp\", not \"%s\"", t);
		return -1;
	}
	char port[16], why[240];
	if (rf_parse_address(address, host, hostlen, port, sizeof port, err, errlen) < 0)
		return -1;
	po->host = host;
	if (!rdma && !(autom && d->rdma)) {
		if (autom)
			snprintf(r->transport_info, sizeof r->transport_info, "the parent prepared for "
			         "TCP only");
		return 0;
	}
	struct rf_rdma_port p;
	if (!d->rdma)
		snprintf(why, sizeof why, "the parent prepared for TCP only (rfork.prepare's "
		         "transport = \"tcp\")");
	if (!d->rdma || rf_rdma_pick(host, &p, NULL, why, sizeof why) < 0) {
		if (rdma) {
			snprintf(err, errlen, "transport rdma: %s", why);
			return -1;
		}
		snprintf(r->transport_info, sizeof r->transport_info, "%s", why);
		return 0;
	}
	po->rdma = 1;
	po->required = rdma;
	return 0;
}

static void set_msgs(struct rf_restore *r)
{
	static const char *const m[RF_MSG_N] = {
		[RF_MSG_MUNMAP] = "kxrun rfork: restorer: munmap of the old layout failed:",
		[RF_MSG_SPECIAL] = "kxrun rfork: restorer: cannot move vdso/vvar:",
		[RF_MSG_MMAP] = "kxrun rfork: restorer: mmap of a parent mapping failed:",
		[RF_MSG_REGISTER] = "kxrun rfork: restorer: UFFDIO_REGISTER failed:",
		[RF_MSG_FS] = "kxrun rfork: restorer: cannot set the FS base:",
	};
	for (int i = 0; i < RF_MSG_N; i++)
		snprintf(r->msg[i], sizeof r->msg[i], "%s", m[i]);
}

/* The vdso and friends: the same ones must exist here (same kernel);
 * moves[] says where each goes, *scratch_len the room they need meanwhile. */
static int plan_specials(const struct rf_desc *d, const struct own_map *own, int nown,
                         struct rf_special_move *moves, uint32_t *nspecial,
                         uint64_t *scratch_len, char *err, size_t errlen)
{
	const struct rf_map *pm = rf_desc_maps(d);
	*nspecial = 0;
	*scratch_len = 0;
	for (uint32_t i = 0; i < d->nmaps; i++) {
		if (pm[i].kind == RF_MAP_SKIP)
			continue;
		if (pm[i].end > HIGH_END) {
			snprintf(err, errlen, "parent mapping above the 47-bit address space");
			return -1;
		}
		if (pm[i].kind != RF_MAP_SPECIAL)
			continue;
		const char *name = rf_desc_str(d, pm[i].path);
		int j = 0;
		while (j < nown && strcmp(own[j].name, name))
			j++;
		if (j == nown || own[j].end - own[j].start != pm[i].end - pm[i].start ||
		    *nspecial == 4) {
			snprintf(err, errlen, "%s differs between parent and here (different "
			         "kernel?)", name);
			return -1;
		}
		moves[(*nspecial)++] = (struct rf_special_move){
			own[j].start, own[j].end - own[j].start, *scratch_len, pm[i].start};
		*scratch_len += own[j].end - own[j].start;
	}
	for (int j = 0; j < nown; j++) {
		int special = own[j].name[0] && strcmp(own[j].name, "[vsyscall]") &&
		              (!strcmp(own[j].name, "[vdso]") || !strncmp(own[j].name, "[vvar", 5));
		uint32_t k = 0;
		while (special && k < *nspecial && moves[k].cur != own[j].start)
			k++;
		if (special && k == *nspecial) {
			snprintf(err, errlen, "%s exists here but not in the parent", own[j].name);
			return -1;
		}
	}
	return 0;
}

/* The restorer's range: its code, its argument block (the descriptor and
 * the descriptors of the files it maps in it), its stack, scratch room
 * for vdso/vvar; filled in, code made executable.  NULL + err. */
static struct rf_restore *build_region(const struct rf_desc *d, const int *fds,
                                       const struct own_map *own, int nown, char *err,
                                       size_t errlen)
{
	struct rf_special_move moves[4];
	uint32_t nspecial;
	uint64_t scratch_len;
	if (plan_specials(d, own, nown, moves, &nspecial, &scratch_len, err, errlen) < 0)
		return NULL;
	size_t code_len = rf_restorer_code_len();
	size_t desc_at = (sizeof(struct rf_restore) + 63) & ~63UL;
	size_t fds_at = (desc_at + d->size + 7) & ~7UL;
	size_t args_len = (fds_at + d->nmaps * sizeof(int32_t) + RF_PAGE - 1) & ~(RF_PAGE - 1);
	uint64_t region_len = code_len + args_len + STACK_SIZE + scratch_len;
	uint64_t region = free_range(d, own, nown, region_len);
	if (!region) {
		snprintf(err, errlen, "no address range free in both layouts");
		return NULL;
	}
	char *base = mmap((void *)(uintptr_t)region, region_len, PROT_READ | PROT_WRITE,
	                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (base == MAP_FAILED || (uintptr_t)base != region) {
		snprintf(err, errlen, "cannot map the restorer at 0x%llx: %s",
		         (unsigned long long)region, strerror(errno));
		return NULL;
	}
	memcpy(base, __start_rfork_restorer, __stop_rfork_restorer - __start_rfork_restorer);
	struct rf_restore *r = (struct rf_restore *)(base + code_len);
	struct rf_desc *dcopy = (struct rf_desc *)((char *)r + desc_at);
	memcpy(dcopy, d, d->size);
	int32_t *mapfds = (int32_t *)((char *)r + fds_at);
	const struct rf_map *m = rf_desc_maps(d);
	const struct rf_ident *ids = rf_desc_idents(d);
	for (uint32_t i = 0; i < d->nmaps; i++) {
		mapfds[i] = -1;
		for (uint32_t k = 0; m[i].kind == RF_MAP_FILE && k < d->nident; k++)
			if (ids[k].path == m[i].path)
				mapfds[i] = fds[k];
	}
	r->region = region;
	r->region_len = region_len;
	r->low = RF_PAGE;
	r->high = HIGH_END;
	r->nspecial = nspecial;
	uint64_t scratch = region + code_len + args_len + STACK_SIZE;
	for (uint32_t i = 0; i < nspecial; i++) {
		r->special[i] = moves[i];
		r->special[i].scratch += scratch;
	}
	r->desc = dcopy;
	r->fds = mapfds;
	r->stack_top = region + code_len + args_len + STACK_SIZE;
	set_msgs(r);
	if (mprotect(base, code_len, PROT_READ | PROT_EXEC) < 0) {
		snprintf(err, errlen, "mprotect: %s", strerror(errno));
		munmap(base, region_len);
		return NULL;
	}
	return r;
}

static void print_stages(const struct rf_restore *r, uint32_t index, const double *t,
                         const char *pager)
{
	fprintf(stderr, "kxrun rfork: resume of child %u: descriptor %.1f ms, files %.1f ms, "
	        "%suserfaultfd and layout %.1f ms, pager %.1f ms (%s, over %s%s%s); switching at "
	        "%.3f ms (CLOCK_MONOTONIC)\n", index, t[1] - t[0], t[2] - t[1],
	        t[3] > t[2] ? "container " : "", t[4] - t[2], t[5] - t[4], pager, r->transport,
	        r->transport_info[0] ? ": " : "", r->transport_info, t[5]);
}

/* A child whose pager has died must not run on: the kernel would give it
 * zero pages for every page not yet fetched (its userfaultfd is gone).  So
 * the child keeps one end of a socket pair whose other end only its pager
 * holds, set to send the child SIGKILL when that end closes (O_ASYNC with
 * F_SETSIG): a pager killed, by anyone, takes its children with it.  The
 * end goes high in the table, above the numbers the resumed host gives
 * the parent's descriptors again (hostfds.c), close-on-exec (after an exec
 * nothing is paged).  Returns the descriptor, or -1 + err: the pager is
 * gone already. */
int rf_watch_pager(int end, char *err, size_t errlen)
{
	struct rlimit rl;
	int base = 512;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur <= (rlim_t)base)
		base = rl.rlim_cur > 4 ? (int)rl.rlim_cur - 1 : 3;
	int fd = fcntl(end, F_DUPFD_CLOEXEC, base);
	if (fd < 0)
		fd = end;
	else
		close(end);
	struct pollfd pf = {fd, POLLIN, 0};
	if (fcntl(fd, F_SETOWN, getpid()) < 0 || fcntl(fd, F_SETSIG, SIGKILL) < 0 ||
	    fcntl(fd, F_SETFL, O_ASYNC) < 0) {
		snprintf(err, errlen, "cannot watch the pager: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (poll(&pf, 1, 0) != 0) {   /* set before this look: no death missed */
		snprintf(err, errlen, "the pager ended before the child started");
		close(fd);
		return -1;
	}
	return fd;
}

/* The shared pager of this parent, when it is running and takes the
 * child: 1, or 0 (*why says why not) and the caller starts its own. */
static int join_pager(int fd, const uint8_t key[16], int uffd, int watch, uint32_t flags,
                      int timeout_ms, struct rf_restore *r, char *why, size_t whylen)
{
	const struct rf_prefetch *p = rf_prefetch_plan();
	struct rf_join j = {.magic = RF_MAGIC, .version = RF_VERSION, .nplan = p->n,
	                    .learned = p->learned, .pages = p->pages};
	memcpy(j.key, key, 16);
	rf_pager_knobs(&j.flags, &j.ra_base, &j.ra_max);
	j.flags |= flags;
	int ok = rf_join_send(fd, &j, p->q, uffd, watch, timeout_ms, &r->memfd, why, whylen) == 0;
	close(fd);
	if (ok)
		snprintf(r->transport, sizeof r->transport, "tcp");
	return ok;
}

/* Two descriptors kept open past the switch for a template, right above
 * the watch: 0, or -1 + err. */
static int keep_for_template(struct rf_restore *r, int order, int holder, char *err,
                             size_t errlen)
{
	int at[2] = {r->watch + 1, r->watch + 2}, from[2] = {order, holder};
	for (int i = 0; i < 2; i++)
		if (fcntl(at[i], F_GETFD) >= 0 && at[i] != from[i]) {
			snprintf(err, errlen, "template: descriptor %d is taken", at[i]);
			return -1;
		}
	for (int i = 0; i < 2; i++)
		if (dup3(from[i], at[i], O_CLOEXEC) < 0) {
			snprintf(err, errlen, "template: dup3: %s", strerror(errno));
			return -1;
		}
	r->tmpl_order = at[0], r->tmpl_holder = at[1];
	return 0;
}

/* rf_resume, or with order >= 0 rf_resume_template. */
static int resume_as(const char *address, const char *id_hex, const char *key_hex,
                     const char *transport, const struct rf_container *ct, int order,
                     char *err, size_t errlen)
{
	uint8_t key[16], idb[8];
	if (rf_parse_hex(key_hex, key, 16) < 0) {
		snprintf(err, errlen, "key must be 32 hex digits");
		return -1;
	}
	if (rf_parse_hex(id_hex, idb, 8) < 0) {
		snprintf(err, errlen, "id must be 16 hex digits");
		return -1;
	}
	uint64_t id = strtoull(id_hex, NULL, 16);
	if (!single_threaded()) {
		snprintf(err, errlen, "the resuming process must be single-threaded");
		return -1;
	}
	const char *e = getenv("KXRUN_RFORK_TIMEOUT_MS");
	int timeout_ms = e && atoi(e) > 0 ? atoi(e) : 10000;

	int stats = getenv("KXRUN_RFORK_STATS") != NULL;
	double t[6] = {now_ms()};   /* stages, for KXRUN_RFORK_STATS */
	struct rf_desc *d = NULL;
	struct rf_page_req *learned = NULL;
	uint32_t index = 0, nlearned = 0;
	/* a template joins the shared pager or is none: asked before the
	 * hello, which counts a child */
	char share[160];
	rf_join_name(share, sizeof share, address, id);
	int tmpl_join = order >= 0 ? rf_local_connect(share, SOCK_SEQPACKET) : -1;
	if (order >= 0 && tmpl_join < 0) {
		snprintf(err, errlen, "a template needs the shared pager running (none is)");
		return -1;
	}
	struct rf_conn *c = rf_tcp.connect(address, id, key, timeout_ms, &d, &index, &learned,
	                                   &nlearned, err, errlen);
	if (!c) {
		if (tmpl_join >= 0)
			close(tmpl_join);
		return -1;
	}
	int uffd = -1, *fds = NULL, in_container = 0, joinfd = tmpl_join, watch[2] = {-1, -1};
	int minor = 0;
	int holder = -1;   /* a template's connection to the holder */
	pid_t pager = 0;
	struct own_map *own = NULL;
	int nown = 0;
	struct rf_restore *r = NULL;
	struct rf_ctrun run;
	if (d->magic != RF_MAGIC || d->version != RF_VERSION || d->maps_off < sizeof *d ||
	    d->strings_off > d->size ||
	    d->maps_off + (uint64_t)d->nmaps * sizeof(struct rf_map) > d->size ||
	    d->ident_off + (uint64_t)d->nident * sizeof(struct rf_ident) > d->size) {
		snprintf(err, errlen, "%s: malformed descriptor", address);
		goto fail;
	}
	/* what is chosen and said here goes to the restorer block, for the child */
	struct rf_restore chosen = {0};
	struct rf_pager_opts po = {.timeout_ms = timeout_ms, .memfd = -1};
	char host[256];
	if (choose_transport(transport, address, d, &po, host, sizeof host, &chosen, err,
	                     errlen) < 0)
		goto fail;
	/* One pager serves every child of this parent here (TCP, no container,
	 * not KXRUN_RFORK_PAGER=private): the first one starts it, the next
	 * ones join it; a child that cannot join starts its own. */
	const char *pe = getenv("KXRUN_RFORK_PAGER");
	if (pe && strcmp(pe, "shared") && strcmp(pe, "private")) {
		snprintf(err, errlen, "KXRUN_RFORK_PAGER must be \"shared\" or \"private\", not "
		         "\"%s\"", pe);
		goto fail;
	}
	char pager_how[200] = "own pager";
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, watch) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		goto fail;
	}
	po.watch = watch[1];
	int shared = !po.rdma && !ct && !(pe && !strcmp(pe, "private"));
	if (order < 0)
		joinfd = shared ? rf_local_connect(share, SOCK_SEQPACKET) : -1;
	po.share = shared ? share : NULL;
	if (order >= 0 && !shared) {
		snprintf(err, errlen, "a template is served over TCP by the shared pager only");
		goto fail;
	}
	po.key = key;
	/* over TCP asked for now, answered while the rest is checked and the
	 * pager starts (a child joining the shared pager hands it over);
	 * over RDMA the pager reads it */
	if (rf_prefetch_request(d, c, learned, nlearned, !po.rdma && joinfd < 0, err, errlen) < 0)
		goto fail;
	t[1] = now_ms();
	fds = malloc((d->nident + 1) * sizeof *fds);
	if (!fds || open_files(d, fds, err, errlen) < 0)
		goto fail;
	t[2] = t[3] = now_ms();
	if (ct) {
		if (rf_container_start(ct, &run, err, errlen) < 0)
			goto fail;   /* R, with C's error: C is gone */
		in_container = 1;   /* C: what fails from here is said to R */
		t[3] = now_ms();
	}
	if ((uffd = open_uffd(&minor, err, errlen)) < 0)
		goto fail;
	if (g_own)
		r = build_region(d, fds, g_own, g_nown, err, errlen);
	if (!r && own_maps(&own, &nown) < 0) {
		snprintf(err, errlen, "cannot read /proc/self/maps");
		goto fail;
	}
	if (!r && !(r = build_region(d, fds, own, nown, err, errlen)))
		goto fail;
	r->uffd = uffd;
	r->memfd = -1;
	r->index = index;
	r->signals = signals_to_set(d);
	r->tmpl_order = r->tmpl_holder = -1;
	memcpy(r->key, key, 16);
	snprintf(r->join_name, sizeof r->join_name, "%s", share);
	memcpy(r->transport_info, chosen.transport_info, sizeof r->transport_info);
	t[4] = now_ms();
	char why[160];
	/* the shared pager's cache is mapped, not copied, where the kernel can
	 * (KXRUN_RFORK_CACHE=0: every page copied from the holder) */
	const char *ce = getenv("KXRUN_RFORK_CACHE");
	int canmap = shared && minor && !(ce && !strcmp(ce, "0"));
	uint32_t jflags = (canmap ? RF_JOIN_CANMAP : 0) | (order >= 0 ? RF_JOIN_TEMPLATE : 0);
	if (joinfd >= 0 &&
	    join_pager(joinfd, key, uffd, watch[1], jflags, timeout_ms, r, why, sizeof why)) {
		snprintf(pager_how, sizeof pager_how, "joined the shared pager");
		/* a template counts its children on the hello's connection */
		if (order >= 0 && (holder = fcntl(rf_tcp.fd(c), F_DUPFD_CLOEXEC, 3)) < 0) {
			snprintf(err, errlen, "template: %s", strerror(errno));
			goto fail;
		}
	} else if (order >= 0) {
		joinfd = -1;
		snprintf(err, errlen, "template: %s", why);
		goto fail;
	} else {
		if (joinfd >= 0)
			snprintf(pager_how, sizeof pager_how, "own pager: %s", why);
		po.memfd = r->memfd = canmap ? rf_cache_memfd() : -1;
		if (start_pager(c, uffd, d, &po, r, &pager, err, errlen) < 0)
			goto fail;
	}
	joinfd = -1;
	rf_tcp.close(c);   /* the pager's now, or the holder's log of it ends */
	c = NULL;
	close(watch[1]);   /* the pager's alone now */
	watch[1] = -1;
	if (ct && rf_container_finish(ct, &run, err, errlen) < 0)
		goto fail;
	if ((r->watch = rf_watch_pager(watch[0], err, errlen)) < 0) {
		watch[0] = -1;
		goto fail;
	}
	watch[0] = -1;
	if (order >= 0 && keep_for_template(r, order, holder, err, errlen) < 0)
		goto fail;
	t[5] = now_ms();
	if (stats)
		print_stages(r, index, t, pager_how);

	/* Point of no return. */
	fflush(NULL);
	uint64_t all = ~0ULL;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8);
	if (__rseq_size) {
		uint64_t tp;
		__asm__("movq %%fs:0, %0" : "=r"(tp));
		void *area = (char *)tp + __rseq_offset;
		if (syscall(SYS_rseq, area, __rseq_size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) < 0)
			syscall(SYS_rseq, area, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
	}
	uint64_t entry = r->region + ((const char *)rf_restorer - __start_rfork_restorer);
	__asm__ volatile("movq %0, %%rsp\n"
	                 "xorl %%ebp, %%ebp\n"
	                 "callq *%1\n"
	                 :
	                 : "r"(r->stack_top), "r"(entry), "D"(r)
	                 : "memory");
	__builtin_unreachable();
fail:
	if (pager > 0) {
		kill(pager, SIGKILL);
		waitpid(pager, NULL, __WALL);
	}
	if (in_container)
		rf_container_failed(&run, err);   /* C: R says it */
	if (r && r->memfd >= 0)
		close(r->memfd);
	if (r)
		munmap((void *)(uintptr_t)r->region, r->region_len);
	rf_tcp.close(c);
	if (uffd >= 0)
		close(uffd);
	if (joinfd >= 0)
		close(joinfd);
	if (holder >= 0)
		close(holder);
	for (int i = 0; i < 2; i++)
		if (watch[i] >= 0)
			close(watch[i]);
	close_files(d, fds);
	free(fds);
	free(own);
	free(d);
	free(learned);
	return -1;
}

int rf_resume(const char *address, const char *id_hex, const char *key_hex,
              const char *transport, const struct rf_container *ct, char *err, size_t errlen)
{
	return resume_as(address, id_hex, key_hex, transport, ct, -1, err, errlen);
}

int rf_resume_template(const char *address, const char *id_hex, const char *key_hex,
                       const char *transport, int order, char *err, size_t errlen)
{
	return resume_as(address, id_hex, key_hex, transport, NULL, order, err, errlen);
}
