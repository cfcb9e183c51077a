/*
 * prepare.c - the parent's side of a remote fork (rf_prepare), and what a
 * resumed child does when it comes back out of it.
 */
#include "rfork.h"
#include "rdma.h"

#include <asm/prctl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/rseq.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A regular file open at prepare, reopened in the child. */
struct rf_file {
	int fd, flags;
	off_t pos;
	char *path;
};

/* What a resumed child needs once it is back in the parent's image. */
struct rf_snap {
	struct rf_ctx ctx;
	struct rf_file *files;
	int nfiles;
	void *blob;
	size_t bloblen;
	uint64_t sigmask;
	struct rf_holder *handle;  /* the parent's: becomes the child's */
};

struct rf_holder {
	int child;
	long index;
	pid_t pid;
	struct rf_shared *shared;  /* written by the holder */
	struct rf_snap *snap;
	char id[17], key[33], address[300];
	char transport[8];         /* "tcp" or "rdma": parent: what the holder
	                              offers; child: what brought its pages */
	char transport_info[240];  /* the device, or why not RDMA */
};

/* 1 in a process that was resumed: its absent pages are not zeros. */
static int g_resumed;

/* The snapshot being prepared: the one global a resumed child reads (its
 * locals are whatever the parent's frame held at the fork). */
static struct rf_snap *volatile g_snap;

/* ---- capture ---------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (!buf)
			break;
		ssize_t r = read(fd, buf + n, cap - n);
		if (r <= 0)
			break;
		n += r;
		if (n == cap) {
			char *b = realloc(buf, cap * 2 + 1);
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
			cap *= 2;
		}
	}
	close(fd);
	if (buf) {
		buf[n] = 0;
		*len = n;
	}
	return buf;
}

/* Reads a file into buf (cap bytes) without allocating; -1 if it does not fit. */
static ssize_t read_into(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = 0;
	ssize_t r;
	while (n < cap && (r = read(fd, buf + n, cap - n)) > 0)
		n += r;
	close(fd);
	if (n >= cap)
		return -1;
	buf[n] = 0;
	return n;
}

static int capture_files(struct rf_snap *s, int skip_fd)
{
	DIR *dir = opendir("/proc/self/fd");
	if (!dir)
		return -1;
	struct dirent *de;
	int cap = 0;
	while ((de = readdir(dir))) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		if (*end || fd < 3 || fd == dirfd(dir) || fd == skip_fd)
			continue;
		struct stat st;
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		char lp[64], path[4096], info[512];
		snprintf(lp, sizeof lp, "/proc/self/fd/%ld", fd);
		ssize_t pl = readlink(lp, path, sizeof path - 1);
		if (pl <= 0)
			continue;
		path[pl] = 0;
		if (pl > 10 && !strcmp(path + pl - 10, " (deleted)"))
			continue;   /* cannot be reopened by name */
		snprintf(lp, sizeof lp, "/proc/self/fdinfo/%ld", fd);
		if (read_into(lp, info, sizeof info) < 0)
			continue;
		char *p = strstr(info, "pos:"), *f = strstr(info, "flags:");
		if (!p || !f)
			continue;
		if (s->nfiles == cap) {
			cap = cap ? cap * 2 : 8;
			struct rf_file *nf = realloc(s->files, cap * sizeof *nf);
			if (!nf)
				break;
			s->files = nf;
		}
		struct rf_file *rf = &s->files[s->nfiles];
		rf->fd = fd;
		rf->pos = strtoll(p + 4, NULL, 10);
		rf->flags = strtol(f + 6, NULL, 8);
		rf->path = strdup(path);
		if (rf->path)
			s->nfiles++;
	}
	closedir(dir);
	return 0;
}

/* Fields of /proc/self/stat (1-based numbers as in proc(5)). */
static void capture_mm(struct rf_desc *d)
{
	char buf[1024];
	if (read_into("/proc/self/stat", buf, sizeof buf) < 0)
		return;
	char *p = strrchr(buf, ')');
	if (!p)
		return;
	unsigned long long v[64] = {0};
	int field = 3;   /* p + 2 is field 3 (state) */
	for (char *tok = strtok(p + 2, " "); tok && field < 64; tok = strtok(NULL, " "), field++)
		v[field] = strtoull(tok, NULL, 10);
	if (field < 52)
		return;
	struct rf_mm *m = &d->mm;
	m->start_code = v[26], m->end_code = v[27], m->start_stack = v[28];
	m->start_data = v[45], m->end_data = v[46], m->start_brk = v[47];
	m->arg_start = v[48], m->arg_end = v[49], m->env_start = v[50], m->env_end = v[51];
	m->brk = (uint64_t)(uintptr_t)sbrk(0);
	m->exe_fd = (uint32_t)-1;
	d->have_mm = 1;
}

/* 1 when no page of [a, b) differs from the file it maps: none is a
 * private copy (present or swapped, not a file page: pagemap bits 63/62
 * and 61).  Code is never written, read-only data of libraries neither;
 * RELRO is (relocations before its mprotect), and so is code a debugger
 * put a breakpoint in. */
static int unmodified(int pagemap, uint64_t a, uint64_t b)
{
	uint64_t e[512];
	while (a < b) {
		uint64_t n = (b - a) / RF_PAGE < 512 ? (b - a) / RF_PAGE : 512;
		if (pread(pagemap, e, n * 8, (off_t)(a / RF_PAGE * 8)) != (ssize_t)(n * 8))
			return 0;
		for (uint64_t i = 0; i < n; i++)
			if ((e[i] >> 62 & 3) && !(e[i] >> 61 & 1))
				return 0;
		a += n * RF_PAGE;
	}
	return 1;
}

static uint32_t kind_of(const char *path, const char *perms, const struct rf_ident *id,
                        int pagemap, uint64_t a, uint64_t b)
{
	int prot_none = perms[0] != 'r' && perms[1] != 'w' && perms[2] != 'x';
	int readable = perms[0] == 'r', shared = perms[3] == 's';
	if (!strcmp(path, "[vsyscall]"))
		return RF_MAP_SKIP;
	if (!strcmp(path, "[vdso]") || !strcmp(path, "[vvar]") || !strcmp(path, "[vvar_vclock]"))
		return RF_MAP_SPECIAL;
	if (prot_none)
		return RF_MAP_NONE;
	if (path[0] == '/' && id && !id->regular)
		return RF_MAP_NONE;   /* a device: neither its file nor its memory carries over */
	if (path[0] == '/' && id) {
		size_t l = strlen(path);
		int deleted = l > 10 && !strcmp(path + l - 10, " (deleted)");
		if (!deleted && shared)
			return RF_MAP_FILE;
		/* Private read-only pages the parent never wrote are the file's
		 * (code, read-only data): mapped from it, nothing to serve.
		 * Written ones (RELRO, .data) come from the holder. */
		if (!deleted && perms[1] != 'w' && unmodified(pagemap, a, b))
			return RF_MAP_FILE;
	}
	return readable ? RF_MAP_SERVE : RF_MAP_NONE;
}

/* Builds the descriptor from /proc/self/maps into d (capacity cap bytes)
 * without allocating: the maps read must stay the maps at the fork. */
static int capture_maps(struct rf_desc *d, size_t cap, char *text, size_t textcap,
                        char *err, size_t errlen)
{
	ssize_t tl = read_into("/proc/self/maps", text, textcap);
	if (tl < 0) {
		snprintf(err, errlen, "cannot read /proc/self/maps");
		return -1;
	}
	uint32_t nlines = 0;
	for (ssize_t i = 0; i < tl; i++)
		nlines += text[i] == '\n';
	d->maps_off = (sizeof *d + 15) & ~15u;
	d->ident_off = d->maps_off + nlines * sizeof(struct rf_map);
	d->strings_off = d->ident_off + nlines * sizeof(struct rf_ident);
	d->strings_len = 1;   /* offset 0: no path */
	if (d->strings_off + 1 > cap) {
		snprintf(err, errlen, "descriptor buffer too small");
		return -1;
	}
	char *strings = (char *)d + d->strings_off;
	strings[0] = 0;
	int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	struct rf_map *maps = (struct rf_map *)((char *)d + d->maps_off);
	struct rf_ident *ids = (struct rf_ident *)((char *)d + d->ident_off);
	d->nmaps = d->nident = 0;
	for (char *line = text, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = 0;
		unsigned long long a, b, off;
		char perms[5];
		int pos = 0;
		if (sscanf(line, "%llx-%llx %4s %llx %*s %*s%n", &a, &b, perms, &off, &pos) < 4)
			continue;
		char *path = line + pos;
		while (*path == ' ')
			path++;
		struct rf_ident *id = NULL;
		uint32_t poff = 0;
		if (*path) {
			/* strings and identities are shared by a file's mappings */
			for (uint32_t k = 0; k < d->nident; k++)
				if (!strcmp(strings + ids[k].path, path))
					id = &ids[k], poff = ids[k].path;
			if (!poff) {
				size_t pl = strlen(path) + 1;
				if (d->strings_off + d->strings_len + pl > cap) {
					snprintf(err, errlen, "descriptor buffer too small");
					close(pagemap);
					return -1;
				}
				poff = d->strings_len;
				memcpy(strings + poff, path, pl);
				d->strings_len += pl;
				struct rf_ident tmp;
				if (path[0] == '/' && rf_file_ident(path, &tmp) == 0) {
					tmp.path = poff;
					ids[d->nident] = tmp;
					id = &ids[d->nident++];
				}
			}
		}
		struct rf_map *m = &maps[d->nmaps++];
		memset(m, 0, sizeof *m);
		m->start = a, m->end = b, m->offset = off, m->path = poff;
		m->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		          (perms[2] == 'x' ? PROT_EXEC : 0);
		m->shared = perms[3] == 's';
		m->growsdown = !strcmp(path, "[stack]");
		m->kind = kind_of(path, perms, id, pagemap, a, b);
	}
	close(pagemap);
	d->size = d->strings_off + d->strings_len;
	return 0;
}

/* Makes the stack reach deeper than anything until the fork will, so the
 * [stack] mapping read now is the one the holder keeps. */
static __attribute__((noinline)) void touch_stack(void)
{
	volatile char pad[128 * 1024];
	for (size_t i = 0; i < sizeof pad; i += 4096)
		pad[i] = 0;
}

static int listen_on(const char *where, char *address, size_t addrlen, char *err,
                     size_t errlen)
{
	char host[256], port[16];
	if (rf_parse_address(where, host, sizeof host, port, sizeof port, err, errlen) < 0)
		return -1;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "listen=%s: %s", where, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		snprintf(err, errlen, "listen=%s: %s", where, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char hbuf[256], pbuf[16];
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof hbuf, pbuf, sizeof pbuf,
	            NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(address, addrlen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", hbuf, pbuf);
	return fd;
}

static void hex(char *out, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

/* "tcp", "rdma" (an RDMA port must reach the listening address: else an
 * error) or "auto" (RDMA when one does, else TCP, saying why). */
static int choose_transport(const struct rf_prepare_opts *o, struct rf_holder *h,
                            struct rf_holder_cfg *cfg, char *err, size_t errlen)
{
	const char *t = o->transport ? o->transport : "tcp";
	snprintf(h->transport, sizeof h->transport, "tcp");
	if (!strcmp(t, "tcp"))
		return 0;
	if (strcmp(t, "rdma") && strcmp(t, "auto")) {
		snprintf(err, errlen, "transport must be \"tcp\", \"rdma\" or \"auto\", not \"%s\"", t);
		return -1;
	}
	char port[16], why[200];
	struct rf_rdma_port p;
	if (rf_parse_address(h->address, cfg->rdma_host, sizeof cfg->rdma_host, port, sizeof port,
	                     err, errlen) < 0)
		return -1;
	if (rf_rdma_pick(cfg->rdma_host, &p, NULL, why, sizeof why) < 0) {
		if (!strcmp(t, "rdma")) {
			snprintf(err, errlen, "transport rdma: %s", why);
			return -1;
		}
		snprintf(h->transport_info, sizeof h->transport_info, "%s", why);
		return 0;
	}
	cfg->rdma = 1;
	snprintf(h->transport, sizeof h->transport, "rdma");
	snprintf(h->transport_info, sizeof h->transport_info, "%s port %d", p.name, p.port);
	return 0;
}

/* ---- the resumed child ---------------------------------------------------- */

static long child_comes_back(long index, struct rf_holder **out)
{
	struct rf_snap *s = g_snap;
	/* what the resuming process used, in its restorer block (still mapped) */
	const struct rf_restore *r = (const struct rf_restore *)(uintptr_t)(s->ctx.region +
	                                                                   rf_restorer_code_len());
	if (r->tmpl_order >= 0 && rf_template_serve)
		index = rf_template_serve(r, index);   /* returns in each child it forks */
	for (int i = 0; i < s->nfiles; i++) {
		struct rf_file *f = &s->files[i];
		int fd = open(f->path, f->flags & ~(O_CREAT | O_EXCL | O_TRUNC));
		if (fd < 0) {
			fprintf(stderr, "kxrun rfork: child %ld: cannot reopen %s as descriptor "
			        "%d: %s\n", index, f->path, f->fd, strerror(errno));
			continue;
		}
		if (fd != f->fd) {
			dup3(fd, f->fd, f->flags & O_CLOEXEC);
			close(fd);
		}
		lseek(f->fd, f->pos, SEEK_SET);
	}
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &s->sigmask, NULL, 8);
	/* The parent's handle, in this image too, becomes the child's. */
	struct rf_holder *h = s->handle;
	if (h->shared)
		munmap(h->shared, RF_PAGE);   /* a private copy here */
	memset(h, 0, sizeof *h);
	h->child = 1;
	h->index = index;
	h->snap = s;
	snprintf(h->transport, sizeof h->transport, "%s", r->transport);
	snprintf(h->transport_info, sizeof h->transport_info, "%s", r->transport_info);
	munmap((void *)(uintptr_t)s->ctx.region, s->ctx.region_len);
	g_resumed = 1;
	*out = h;
	return index;
}

/* ---- prepare -------------------------------------------------------------- */

static void free_snap(struct rf_snap *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->nfiles; i++)
		free(s->files[i].path);
	free(s->files);
	free(s->blob);
	free(s);
}

#define HOLDER_STACK (256 * 1024)

/* The holder: a raw clone (no atfork handlers: they would write into the
 * image it keeps), cut off from the parent's descriptors and signals. */
static pid_t start_holder(struct rf_holder_cfg *cfg, pid_t parent)
{
	long pid = syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	rf_signals_default();
	uint64_t none = 0;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
	int keep[2] = {cfg->listen_fd, cfg->local_fd};   /* its listeners alone */
	rf_close_except(keep, 2);
	/* Its loop runs on a stack of its own: on the parent's, below the
	 * saved rsp, its frames (and, under ASan, their poisoned shadow) would
	 * be what children fetch there. */
	char *stack = mmap(NULL, HOLDER_STACK, PROT_READ | PROT_WRITE,
	                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		_exit(1);
	__asm__ volatile("movq %0, %%rsp\n"
	                 "xorl %%ebp, %%ebp\n"
	                 "callq *%1\n"
	                 :
	                 : "r"(stack + HOLDER_STACK), "r"(rf_holder_main), "D"(cfg)
	                 : "memory");
	__builtin_unreachable();
}

/* Reads the maps, saves the context and starts the holder, in a frame of
 * its own that stays live until the holder exists: a resumed child comes
 * back out of rf_ctx_save here.  Nothing is reassigned after the save. */
static __attribute__((noinline)) long snapshot(struct rf_desc *d, size_t dcap, char *text,
                                               size_t textcap, struct rf_holder_cfg *cfg,
                                               pid_t *holder, struct rf_holder **out,
                                               char *err, size_t errlen)
{
	touch_stack();
	if (capture_maps(d, dcap, text, textcap, err, errlen) < 0)
		return -1;
	long index = rf_ctx_save(&g_snap->ctx);
	if (index > 0)
		return child_comes_back(index, out);
	d->ctx = g_snap->ctx;   /* the descriptor carries the context just saved */
	*holder = start_holder(cfg, getpid());
	if (*holder < 0) {
		snprintf(err, errlen, "cannot start the holder: %s", strerror(errno));
		return -1;
	}
	return 0;
}

long rf_prepare(const struct rf_prepare_opts *o, struct rf_holder **out, char *err,
                size_t errlen)
{
	*out = NULL;
	struct rf_holder *h = calloc(1, sizeof *h);
	struct rf_snap *s = calloc(1, sizeof *s);
	char *text = NULL;
	struct rf_desc *d = NULL;
	size_t textcap = 0, dcap = 0;
	int lfd = -1, localfd = -1;
	if (!h || !s) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	lfd = listen_on(o->listen ? o->listen : "127.0.0.1:0", h->address, sizeof h->address,
	                err, errlen);
	if (lfd < 0)
		goto fail;
	struct rf_holder_cfg cfg = {.listen_fd = lfd, .local_fd = -1, .idle_s = o->idle_s,
	                            .learn = !o->no_learn};
	if (choose_transport(o, h, &cfg, err, errlen) < 0)
		goto fail;
	if (getrandom(&cfg.id, sizeof cfg.id, 0) != sizeof cfg.id ||
	    getrandom(cfg.key, sizeof cfg.key, 0) != sizeof cfg.key) {
		snprintf(err, errlen, "getrandom: %s", strerror(errno));
		goto fail;
	}
	snprintf(h->id, sizeof h->id, "%016llx", (unsigned long long)cfg.id);
	hex(h->key, cfg.key, 16);

	fflush(NULL);   /* nothing buffered may come out twice */
	if (o->capture && !(s->blob = o->capture(&s->bloblen, err, errlen)))
		goto fail;
	capture_files(s, lfd);
	/* opened after the capture: a resumed child has no stand-in for it */
	char local[64];
	rf_local_hello_name(local, sizeof local, cfg.id);
	cfg.local_fd = localfd = rf_local_listen(local, SOCK_STREAM);

	/* Buffers sized from a first look at the maps, with room to spare:
	 * nothing may be allocated between the final read and the fork. */
	size_t first;
	char *probe = read_file("/proc/self/maps", &first);
	if (!probe) {
		snprintf(err, errlen, "cannot read /proc/self/maps");
		goto fail;
	}
	free(probe);
	textcap = first * 2 + 65536;
	size_t lines = textcap / 40;
	dcap = sizeof *d + 16 + lines * (sizeof(struct rf_map) + sizeof(struct rf_ident)) + textcap;
	text = malloc(textcap);
	d = calloc(1, dcap);
	h->shared = mmap(NULL, RF_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!text || !d || h->shared == MAP_FAILED) {
		h->shared = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	d->magic = RF_MAGIC;
	d->version = RF_VERSION;
	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (syscall(SYS_rt_sigaction, sig, NULL, &d->sa[sig - 1], 8) == 0)
			d->sa_valid |= 1ULL << (sig - 1);
	}
	syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &s->sigmask, 8);
	syscall(SYS_arch_prctl, ARCH_GET_FS, &d->fs_base);
	if (__rseq_size) {
		d->rseq_addr = d->fs_base + __rseq_offset;
		d->rseq_len = __rseq_size < 32 ? 32 : __rseq_size;
		d->rseq_sig = RSEQ_SIG;
	}
	{
		void *head;
		size_t len;
		if (syscall(SYS_get_robust_list, 0, &head, &len) == 0) {
			d->robust_head = (uintptr_t)head;
			d->robust_len = len;
		}
	}
	capture_mm(d);
	d->ctx_addr = (uintptr_t)&s->ctx;
	cfg.desc = d;
	cfg.shared = h->shared;
	h->shared->rdma = cfg.rdma ? RF_AGENT_STARTING : RF_AGENT_NONE;
	d->rdma = cfg.rdma;
	d->resumed = g_resumed;
	h->snap = s;
	s->handle = h;
	g_snap = s;

	pid_t holder;
	long index = snapshot(d, dcap, text, textcap, &cfg, &holder, out, err, errlen);
	if (index > 0)
		return index;   /* a resumed child */
	if (index < 0)
		goto fail;
	close(lfd);
	if (localfd >= 0)
		close(localfd);
	free(text);
	free(d);
	h->pid = holder;
	*out = h;
	return 0;
fail:
	if (lfd >= 0)
		close(lfd);
	if (localfd >= 0)
		close(localfd);
	if (h && h->shared)
		munmap(h->shared, RF_PAGE);
	free(text);
	free(d);
	free(h);
	free_snap(s);
	g_snap = NULL;
	return -1;
}

const char *rf_id(const struct rf_holder *h) { return h->id; }
const char *rf_key(const struct rf_holder *h) { return h->key; }
const char *rf_address(const struct rf_holder *h) { return h->address; }
long rf_children(const struct rf_holder *h)
{
	return h->shared ? __atomic_load_n(&h->shared->children, __ATOMIC_SEQ_CST) : 0;
}
pid_t rf_holder_pid(const struct rf_holder *h) { return h->pid; }
int rf_is_child(const struct rf_holder *h) { return h->child; }
const char *rf_transport(const struct rf_holder *h) { return h->transport; }

const char *rf_transport_info(const struct rf_holder *h, int *agent)
{
	*agent = RF_AGENT_NONE;
	if (h->child || !h->shared)
		return h->transport_info;
	*agent = __atomic_load_n(&h->shared->rdma, __ATOMIC_SEQ_CST);
	return *agent == RF_AGENT_READY || *agent == RF_AGENT_FAILED ? h->shared->rdma_msg
	                                                             : h->transport_info;
}
long rf_index(const struct rf_holder *h) { return h->index; }

const void *rf_resume_blob(const struct rf_holder *h, size_t *len)
{
	*len = h->snap ? h->snap->bloblen : 0;
	return h->snap ? h->snap->blob : NULL;
}

void rf_holder_exited(struct rf_holder *h)
{
	h->pid = 0;
}

void rf_close(struct rf_holder *h)
{
	if (!h)
		return;
	if (!h->child) {
		if (h->pid > 0) {
			kill(h->pid, SIGKILL);
			waitpid(h->pid, NULL, 0);
		}
		if (h->shared)
			munmap(h->shared, RF_PAGE);
		free_snap(h->snap);
	}
	free(h);
}
