/*
 * internal.h - what the parts of kx.rfork share: the saved context, the
 * descriptor a child fetches, the restorer's argument block, the page
 * protocol and the transport interface.
 */
#ifndef KX_RFORK_INTERNAL_H
#define KX_RFORK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rfork.h"

#define RF_PAGE 4096UL

/* Registers of the thread that called rf_prepare, as rf_ctx_save left them.
 * The restorer writes region/index into the parent's copy before jumping
 * back (offsets are used by the assembly in ctx.c and restorer.c). */
struct rf_ctx {
	uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip; /* 0 .. 56 */
	uint32_t mxcsr;                                  /* 64 */
	uint16_t fcw, pad0;                              /* 68 */
	uint64_t region, region_len;                     /* 72, 80: restorer's range */
};

/* Saves the context; returns 0 now and the child's index (>= 1) when a
 * resumed child jumps back into it. */
long rf_ctx_save(struct rf_ctx *c) __attribute__((returns_twice));

/* The kernel's struct sigaction (not glibc's). */
struct rf_ksigaction {
	uint64_t handler, flags, restorer, mask;
};

/* What a parent mapping becomes in the child. */
enum rf_map_kind {
	RF_MAP_FILE = 1,   /* mmap'd again from the same file and offset */
	RF_MAP_SERVE,      /* anonymous, registered, pages from the holder */
	RF_MAP_NONE,       /* PROT_NONE reservation: anonymous, no content */
	RF_MAP_SPECIAL,    /* [vdso]/[vvar]/[vvar_vclock]: moved there */
	RF_MAP_SKIP,       /* [vsyscall]: same everywhere */
};

struct rf_map {
	uint64_t start, end, offset;
	uint32_t prot;     /* PROT_* */
	uint32_t kind;     /* enum rf_map_kind */
	uint32_t shared;   /* MAP_SHARED file mapping */
	uint32_t growsdown;
	uint32_t path;     /* offset of the path (or [name]) in strings, 0: none */
	uint32_t pad;
};

/* A mapped file as the parent saw it: build-id for ELF files, else size
 * and mtime. */
struct rf_ident {
	uint32_t path;
	uint32_t idlen;    /* 0: no build-id, size/mtime compared */
	uint32_t regular, pad;
	uint8_t id[32];
	uint64_t size;
	int64_t mtime;
};

/* prctl(PR_SET_MM_MAP) fields of the parent (linux/prctl.h layout). */
struct rf_mm {
	uint64_t start_code, end_code, start_data, end_data;
	uint64_t start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size, exe_fd;
};

#define RF_MAGIC 0x4b585246u   /* "KXRF" */
#define RF_VERSION 4   /* 2: batch requests; 3: RDMA; 4: learned working set */

/* The descriptor: one flat block, offsets from its start. */
struct rf_desc {
	uint32_t magic, version, size;
	uint32_t nmaps, maps_off;
	uint32_t nident, ident_off;
	uint32_t strings_off, strings_len;
	uint32_t rseq_len, rseq_sig, have_mm;
	uint32_t resumed;                  /* the parent is a resumed child */
	uint32_t rdma;                     /* its holder has an RDMA agent */
	uint64_t ctx_addr;                 /* parent's struct rf_ctx */
	struct rf_ctx ctx;
	uint64_t fs_base, rseq_addr;
	uint64_t robust_head, robust_len;
	struct rf_ksigaction sa[64];       /* sa[i] for signal i + 1 */
	uint64_t sa_valid;                 /* bit i: sa[i] captured */
	struct rf_mm mm;
};

static inline __attribute__((always_inline)) const struct rf_map *rf_desc_maps(const struct rf_desc *d)
{
	return (const struct rf_map *)((const char *)d + d->maps_off);
}
static inline __attribute__((always_inline)) const struct rf_ident *rf_desc_idents(const struct rf_desc *d)
{
	return (const struct rf_ident *)((const char *)d + d->ident_off);
}
static inline __attribute__((always_inline)) const char *rf_desc_str(const struct rf_desc *d, uint32_t off)
{
	return (const char *)d + d->strings_off + off;
}

/* ---- restorer ------------------------------------------------------------ */

/* Messages the restorer prints before exit_group(127) (it has no string
 * constants of its own: they would live outside its section). */
enum { RF_MSG_MUNMAP, RF_MSG_SPECIAL, RF_MSG_MMAP, RF_MSG_REGISTER, RF_MSG_FS, RF_MSG_N };

struct rf_special_move {
	uint64_t cur, len, scratch, dest;
};

struct rf_restore {
	uint64_t region, region_len;  /* kept mapped throughout */
	uint64_t low, high;           /* everything else in [low, high) goes */
	int32_t uffd;
	int32_t watch;                /* kept open in the child (resume.c: watch_pager) */
	int32_t memfd;                /* the pager's cache: served maps map it (-1: anonymous) */
	uint32_t nspecial;
	struct rf_special_move special[4];
	uint64_t index;               /* returned by rf_ctx_save in the child */
	uint64_t signals;             /* bit i: set the parent's sa[i] here */
	char transport[8];            /* read back by the child: "tcp", "rdma" */
	char transport_info[240];     /* the device, or why not RDMA */
	/* a template (template.c): the zygote's socket and the holder's
	 * connection, kept open at watch + 1 and watch + 2 (-1: not one);
	 * what its children join the pager with */
	int32_t tmpl_order, tmpl_holder;
	uint8_t key[16];
	char join_name[160];
	const struct rf_desc *desc;   /* copy inside the region */
	const int32_t *fds;           /* per map: the open file an RF_MAP_FILE maps */
	uint64_t stack_top;           /* the restorer's stack, in the region */
	char msg[RF_MSG_N][80];
};

/* resume.c: a resumed process's watch on its pager, made of `end` (its
 * end of a socket pair whose other end only the pager holds): SIGKILL
 * when the pager's end closes.  The descriptor, or -1 + err. */
int rf_watch_pager(int end, char *err, size_t errlen);
/* template.c: a template's life, in the parent's image (prepare.c); returns
 * in each child it forks, with the child's index.  kxrun's side (it forks
 * with kx_spawn): weak, absent from programs of the core alone. */
long rf_template_serve(const struct rf_restore *r, long index) __attribute__((weak));

/* Entry of the position-independent restorer (restorer.c), copied into the
 * region and entered on the region's stack; never returns. */
void rf_restorer(struct rf_restore *r) __attribute__((noreturn, visibility("hidden")));
extern const char __start_rfork_restorer[], __stop_rfork_restorer[];

/* Where the argument block starts in the restorer's range: after the
 * code, page aligned. */
static inline size_t rf_restorer_code_len(void)
{
	return (__stop_rfork_restorer - __start_rfork_restorer + RF_PAGE - 1) & ~(RF_PAGE - 1);
}

/* ---- protocol ------------------------------------------------------------
 * A child connects once: hello -> reply + descriptor + the learned working
 * set's ranges, then page requests on the same connection, from its pager,
 * until it closes.  Requests may be pipelined: answers come in order. */

enum { RF_OK = 0, RF_EAUTH = 1, RF_EID = 2, RF_EVERSION = 3, RF_ERANGE = 4,
       RF_EFULL = 5 };

struct rf_hello {
	uint32_t magic, version;
	uint64_t id;
	uint8_t key[16];
};

struct rf_reply {          /* answer to a hello */
	uint32_t status;
	uint32_t index;        /* the child's number */
	uint64_t len;          /* descriptor bytes that follow */
	uint32_t nlearned;     /* then this many rf_page_req: the learned set */
	uint32_t learned_pages;
};

struct rf_page_req {
	uint64_t addr;
	uint32_t npages, flags;
};

/* flags RF_REQ_BATCH: npages (<= RF_BATCH_RANGES) ranges follow, each an
 * rf_page_req; the answer is one rf_page_reply for their total (at most
 * RF_BATCH_PAGES) and all their pages in order: one round trip. */
#define RF_REQ_BATCH 1u
/* flags RF_REQ_COUNT (a template's, for each child it forks): counted as
 * a child; the answer's npages is its index, nothing follows. */
#define RF_REQ_COUNT 3u
#define RF_BATCH_RANGES 2048
#define RF_BATCH_PAGES 8192

struct rf_page_reply {
	uint32_t status, npages; /* npages * RF_PAGE bytes follow on RF_OK */
};

#define RF_MAX_PAGES 1024   /* pages of one plain request (4 MiB) */

/* ---- the learned working set (learn.c) -------------------------------------
 * The holder logs what it serves each child (its pager's requests, in the
 * order the child faulted) and merges the logs of the first children into
 * one ordered working set; later children fetch it in one batch before
 * their first fault (as REAP does for snapshots). */
#define RF_LEARN_RANGES 1024
#define RF_LEARN_PAGES 4096     /* 16 MiB */
#define RF_LEARN_CHILDREN 8     /* children whose logs are merged */

struct rf_learned {
	uint32_t n, pages;      /* ranges, pages in them */
	uint32_t children;      /* logs merged so far */
	uint32_t pad;
	struct rf_page_req r[RF_LEARN_RANGES];
};

/* Appends [addr, addr + npages pages), inside the mapping that starts at
 * lo, to a log of at most max ranges (the last range grows when it
 * continues it in the same mapping); 0, or -1 when the log is full. */
int rf_log_add(struct rf_page_req *log, uint32_t *n, uint32_t max, uint64_t lo,
               uint64_t addr, uint32_t npages);
/* Adds what a child's log has and the set has not, in the log's order,
 * within RF_LEARN_RANGES and RF_LEARN_PAGES. */
void rf_learn_merge(struct rf_learned *l, const struct rf_page_req *log, uint32_t n);
/* 1 when the page at addr is in one of the n ranges. */
int rf_ranges_have(const struct rf_page_req *r, uint32_t n, uint64_t addr);

/* ---- transport ------------------------------------------------------------ */

/* A connection to a holder: TCP (tcp.c), or RDMA RC (rdma.c: a TCP
 * connection that fetched the descriptor, upgraded; pages by one-sided
 * READs of the holder's registered image). */
struct rf_conn;
struct rf_transport {
	const char *name;
	/* Connects, authenticates and receives the descriptor (malloc'd,
	 * *desc), the child's index and the learned set (malloc'd, *learned,
	 * *nlearned ranges; NULL: read and dropped). */
	struct rf_conn *(*connect)(const char *address, uint64_t id,
	                           const uint8_t key[16], int timeout_ms,
	                           struct rf_desc **desc, uint32_t *index,
	                           struct rf_page_req **learned, uint32_t *nlearned,
	                           char *err, size_t errlen);
	/* A connection that fetched the descriptor serves pages afterwards
	 * (the pager takes it over).  Reads npages pages of the image at addr
	 * into buf; 0 or -1 + err. */
	int (*read_pages)(struct rf_conn *c, uint64_t addr, void *buf,
	                  uint32_t npages, char *err, size_t errlen);
	/* n ranges (addr, npages; n <= RF_BATCH_RANGES, RF_BATCH_PAGES pages
	 * in all) asked for in one request; read_batch later reads their pages
	 * one after the other into buf (nothing else may be asked between).
	 * 0 or -1 + err. */
	int (*send_batch)(struct rf_conn *c, const struct rf_page_req *q, int n,
	                  char *err, size_t errlen);
	int (*read_batch)(struct rf_conn *c, const struct rf_page_req *q, int n,
	                  void *buf, char *err, size_t errlen);
	/* Pipelined requests (TCP; NULL for RDMA, whose reads are one-sided):
	 * send_req asks for npages at addr without waiting; answers come in
	 * the order asked, each an rf_page_reply (recv_reply: checked against
	 * the pages asked for) then the pages (recv_data, in as many pieces as wanted).
	 * 0 or -1 + err (the holder gone, silent past the timeout, a refusal). */
	int (*send_req)(struct rf_conn *c, uint64_t addr, uint32_t npages, char *err,
	                size_t errlen);
	int (*recv_reply)(struct rf_conn *c, uint32_t npages, char *err, size_t errlen);
	int (*recv_data)(struct rf_conn *c, void *buf, size_t len, char *err, size_t errlen);
	/* A buffer of at least npages pages for read_pages/read_batch (RDMA:
	 * registered memory); the same one until a larger one is asked for. */
	void *(*buffer)(struct rf_conn *c, uint64_t npages, char *err, size_t errlen);
	void (*close)(struct rf_conn *c);
	/* The descriptor a forked process must keep open to use c. */
	int (*fd)(const struct rf_conn *c);
	/* What carries the pages: "tcp", or the RDMA device's name. */
	const char *(*device)(const struct rf_conn *c);
	/* How the pages read so far came, for KXRUN_RFORK_STATS ("" for TCP). */
	void (*stats)(const struct rf_conn *c, char *buf, size_t len);
};
extern const struct rf_transport rf_tcp;

/* Helpers shared by prepare.c, resume.c, bench.c and the transport (tcp.c). */
int rf_parse_hex(const char *s, uint8_t *out, size_t n);
int rf_parse_address(const char *address, char *host, size_t hostlen,
                     char *port, size_t portlen, char *err, size_t errlen);
int rf_write_all(int fd, const void *buf, size_t len);
int rf_read_all(int fd, void *buf, size_t len, int timeout_ms);

/* The page the parent shares with its holder (written by the holder). */
struct rf_shared {
	long children;       /* children resumed (atomic) */
	int rdma;            /* RF_AGENT_*: the holder's RDMA agent */
	char rdma_msg[240];  /* its device when ready, why when it failed */
};

/* What the holder serves; its loop (holder.c) never returns. */
struct rf_holder_cfg {
	int listen_fd;
	int local_fd;              /* the local hello's listener (tcp.c), or -1 */
	uint64_t id;
	uint8_t key[16];
	const struct rf_desc *desc;
	struct rf_shared *shared;  /* the page shared with the parent */
	double idle_s;
	int learn;                 /* learn the children's working set */
	int rdma;                  /* start the RDMA agent (rdma.h) */
	int agent_fd;              /* rdma: > 0, the agent's socket is given
	                              (tests/unit/test_rfork_rdma.c plays it) */
	char rdma_host[64];        /* the listening address: the agent's port
	                              must reach it */
};
void rf_holder_main(const struct rf_holder_cfg *cfg) __attribute__((noreturn));

/* The prefetch batch (prefetch.c): rf_prefetch_request plans it from the
 * learned set the holder sent and the static guess and, with send, asks
 * for it on the TCP connection the pager will take over (called by the
 * resuming process right after the descriptor, so the holder answers while
 * the pager starts); else the pager asks.  0 or -1 + err. */
struct rf_prefetch {
	struct rf_page_req *q;  /* ranges, in the order they are installed */
	int n, learned;         /* ranges, of which the first `learned` were learned */
	int sent;
	long pages;
};
int rf_prefetch_request(const struct rf_desc *d, struct rf_conn *conn,
                        const struct rf_page_req *learned, uint32_t nlearned, int send,
                        char *err, size_t errlen);
const struct rf_prefetch *rf_prefetch_plan(void);

/* Pager (pager.c): serves the child's faults.  With o->rdma it first
 * upgrades the connection and writes to ready_fd a status byte (0: going
 * on) and "TRANSPORT\tINFO" or why not, which the resuming process waits
 * for; over TCP nobody waits (a fault waits for the pager instead) and a
 * pager that cannot start kills the child, saying why.  Never returns. */
struct rf_pager_opts {
	int rdma, required;   /* try RDMA; fail rather than use TCP */
	const char *host;     /* the holder's */
	int timeout_ms;
	/* shared (TCP): the socket name it listens on for later children
	 * (pjoin.c; NULL: it serves this child alone), the key they must know */
	const char *share;
	const uint8_t *key;
	/* the pager's end of the child's watch (resume.c: watch_pager): held
	 * while it serves the child, so that its death kills the child */
	int watch;
	/* the cache's memfd, which the child maps (-1: none) */
	int memfd;
};

/* ---- the shared pager (pjoin.c, pcache.c) ----------------------------------
 * One pager serves every child resumed on this host from one parent: the
 * first resume starts it, later ones hand it their userfaultfd over an
 * abstract unix socket (same user, and the key).  It keeps the pages it
 * fetched (the image never changes) and serves later children from them. */
#define RF_JOIN_STATS 1u      /* KXRUN_RFORK_STATS: the pager's line */
#define RF_JOIN_NOCACHE 2u    /* KXRUN_RFORK_CACHE=0: every page from the holder */
#define RF_JOIN_NOLEARN 4u    /* KXRUN_RFORK_PREFETCH set: no set learned by the pager */
#define RF_JOIN_CANMAP 8u     /* it maps the cache's memfd when it gets it */
/* A template (template.c): the pager notes the order of its forks, whose
 * userfaultfds it gets by UFFD_EVENT_FORK ... */
#define RF_JOIN_TEMPLATE 16u
/* ... and each fork then asks to be served as a child of its own: its
 * template's pid and its place among the template's forks (1, 2, ...);
 * no userfaultfd comes with it (the pager has it). */
#define RF_JOIN_ADOPT 32u
struct rf_join {              /* then nplan rf_page_req: the prefetch batch */
	uint32_t magic, version;
	uint8_t key[16];
	uint32_t nplan, learned;  /* ranges, the first `learned` from the holder */
	uint32_t flags, ra_base, ra_max, seq;
	uint64_t pages;
	int32_t tmpl;             /* RF_JOIN_ADOPT: the template's pid, seq its fork */
	uint32_t pad;
};
/* "kxrun-rfork-pager/UID/ID/CGROUPS/ADDRESS": one pager per user, parent,
 * set of cgroups (a hash of /proc/self/cgroup) and holder address. */
void rf_join_name(char *out, size_t len, const char *address, uint64_t id);
/* procstate.c, safe in a raw clone: closes every descriptor but keep[]
 * (sorted in place; -1s ignored); sets every signal disposition to the
 * default. */
void rf_close_except(int *keep, int n);
void rf_signals_default(void);

/* "kxrun-rfork-holder/UID/ID": where a holder also takes hellos from its
 * own user's children in its network namespace (tcp.c), cheaper than TCP. */
void rf_local_hello_name(char *out, size_t len, uint64_t id);
/* Abstract unix sockets: listening (-1: the name is taken), and connected
 * to a listener of this user (-1: none, or another user's: nothing of
 * ours goes to it).  type: SOCK_SEQPACKET (the join), SOCK_STREAM (the
 * holder's local hello). */
int rf_local_listen(const char *name, int type);
int rf_local_connect(const char *name, int type);
/* Resuming side, on rf_local_connect(name, SOCK_SEQPACKET): the join (with
 * uffd, none for RF_JOIN_ADOPT: -1, stderr and the pager's end of the
 * child's watch): 0 once the pager took the child (*memfd: its cache's, or
 * -1), -1 + err. */
int rf_join_send(int fd, const struct rf_join *j, const struct rf_page_req *plan, int uffd,
                 int watch, int timeout_ms, int *memfd, char *err, size_t errlen);
/* Pager side, on rf_local_listen(name, SOCK_SEQPACKET): an accepted one
 * (-1: none, or another user's, refused); its join: 1 read (the sender's
 * pid), 0 not yet, -1 malformed; the one-byte answer (with memfd when >=
 * 0), which closes fd. */
int rf_join_accept(int listen_fd);
int rf_join_recv(int fd, struct rf_join *j, struct rf_page_req *plan, int *uffd, int *errfd,
                 int *watch, pid_t *pid);
void rf_join_answer(int fd, uint8_t status, int memfd);
/* The page cache (pcache.c) in a memfd at the parent's addresses: a new
 * one (-1: none), RF_CACHE_FILE_SIZE long; kept in for bytes (0 or no
 * memfd: off, -1); runs of pages by parent address. */
#define RF_CACHE_FILE_SIZE (1ULL << 47)   /* every user address */
int rf_cache_memfd(void);
int rf_cache_init(uint64_t bytes, int memfd, const struct rf_desc *d);
int rf_cache_on(void);
int rf_cache_fd(void);
void rf_cache_put(uint64_t addr, const char *src, uint32_t n);
/* Pages from addr on (at most max) present and contiguous in the cache,
 * *src their copy, *mapped 1 when a child that maps the memfd has them
 * there (UFFDIO_CONTINUE); 0 when addr is not there. */
uint32_t rf_cache_run(uint64_t addr, uint32_t max, const char **src, int *mapped);
uint64_t rf_cache_pages(void);
/* What a child asks of its pager through its environment: RF_JOIN_*
 * flags, the first and the largest read-ahead window. */
void rf_pager_knobs(uint32_t *flags, uint32_t *ra_base, uint32_t *ra_max);
void rf_pager_main(int uffd, pid_t child, const struct rf_desc *d, struct rf_conn *conn,
                   int ready_fd, const struct rf_pager_opts *o) __attribute__((noreturn));

/* A container being entered (container.c): R makes the cgroups and
 * namespaces and forks; rf_container_start returns 0 in C (the child to
 * be), and in R only with an error (C's, before its switch; R exits as C
 * did otherwise).  C calls rf_container_finish right before the switch
 * (lo, host name, mounts, cgroups) and rf_container_failed on an error. */
struct rf_ctrun {
	int pipe;              /* C: where an error goes */
	int ngroups;
	char groups[3][256];   /* cgroup directories */
	int procs[3];          /* their cgroup.procs, open */
};
int rf_container_start(const struct rf_container *ct, struct rf_ctrun *run, char *err,
                       size_t errlen);
int rf_container_finish(const struct rf_container *ct, struct rf_ctrun *run, char *err,
                        size_t errlen);
void rf_container_failed(struct rf_ctrun *run, const char *err) __attribute__((noreturn));

/* Identity of a file (identity.c), by path or of an open descriptor: 0,
 * or -1 when it cannot be read. */
int rf_file_ident(const char *path, struct rf_ident *id);
int rf_file_ident_fd(int fd, struct rf_ident *id);
/* Reads path's identity once, for rf_file_ident_fd to give without reading
 * while the file stays unchanged (a zygote's forks: its own libraries). */
void rf_ident_remember(const char *path);

#endif /* KX_RFORK_INTERNAL_H */
