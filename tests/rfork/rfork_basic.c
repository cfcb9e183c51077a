/*
 * rfork_basic - the mechanism of kx.rfork without Lua or the host.
 *
 *   rfork_basic parent MB FILE   builds state (a static counter, MB MiB of
 *                                heap in a pattern, FILE open at offset 5),
 *                                prepares, prints "ADDRESS ID KEY", changes
 *                                all of it, then waits for stdin to close
 *   rfork_basic resume ADDRESS ID KEY
 *                                becomes a child: checks it sees the
 *                                prepare-time state, prints "child N ok"
 *                                and exits 0 (1 on a wrong state)
 *   rfork_basic join NAME KEY    hands the shared pager at NAME a child
 *                                with KEY (/dev/null for its userfaultfd):
 *                                "refused: WHY" (exit 0) or "taken, " and
 *                                whether the cache it got can be changed (1)
 *   rfork_basic exit-after-prepare MB
 *                                prepares, prints the line, exits at once
 *   rfork_basic hold MB          prepares MB MiB of heap and changes nothing
 *                                after it (a benchmark's parent: "holder PID"
 *                                on stderr); its child reads a percentage P
 *                                on its stdin, reads the first P% of the
 *                                heap's pages (checking them) and prints
 *                                "touched N pages in S s"; "P R": in R
 *                                sequential runs read at once, a page of
 *                                each in turn; with RFORK_DISCARD set it
 *                                then discards and moves pages it read
 *
 * RFORK_TRANSPORT (tcp, rdma, auto) is prepare's and resume's transport; a
 * child says on stderr which one brought its pages.  RFORK_LISTEN: the
 * holder's address (127.0.0.1:0).
 *                                (a child resumed then must fail cleanly)
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile long counter = 41;
static unsigned char *heap;
static size_t heap_len;
static char tag[64] = "prepare-time";
static int hold;   /* "hold" mode: the child touches what it is told */
/* touched first by a process the child forks: served through the fork's
 * own userfaultfd */
static unsigned char forkdata[64 * 4096];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The heap's first whole pages, read already, as anonymous memory
 * behaves (however the pager installed them): one discarded reads zeros,
 * three moved elsewhere keep their contents; the number wrong. */
static int discard_and_move(void)
{
	unsigned char *b = (unsigned char *)(((uintptr_t)heap + 4095) & ~(uintptr_t)4095);
	size_t off = b - heap;
	int bad = 0;
	if (madvise(b, 4096, MADV_DONTNEED) < 0 || b[0] != 0 || b[4095] != 0)
		fprintf(stderr, "touch: a discarded page reads %d\n", b[0]), bad++;
	unsigned char *to = mmap(NULL, 3 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *m = to == MAP_FAILED ? MAP_FAILED
	                   : mremap(b + 4096, 3 * 4096, 3 * 4096, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	for (size_t i = 0; m != MAP_FAILED && i < 3 * 4096; i += 511)
		if (m[i] != (unsigned char)((off + 4096 + i) * 31 + 7)) {
			fprintf(stderr, "touch: a moved page reads %d\n", m[i]), bad++;
			break;
		}
	if (m == MAP_FAILED)
		perror("touch: mremap"), bad++;
	return bad;
}

/* A "hold" parent's child: the first P% of the heap's pages. */
static int touch_child(void)
{
	double pct = 0;
	int runs = 1;
	if (scanf("%lf %d", &pct, &runs) < 1 || pct < 0 || pct > 100 || runs < 1) {
		fprintf(stderr, "touch: no percentage on stdin\n");
		return 2;
	}
	size_t pages = (size_t)(heap_len / 4096 * pct / 100), bad = 0;
	size_t per = (pages + runs - 1) / runs;
	double t0 = now();
	for (size_t k = 0; k < per; k++)   /* page k of each run in turn */
		for (size_t p = k; p < pages; p += per)
			bad += heap[p * 4096] != (unsigned char)(p * 4096 * 31 + 7);
	double t = now() - t0;
	if (pages >= 8 && getenv("RFORK_DISCARD"))
		bad += discard_and_move();
	printf("touched %zu pages in %.6f s\n", pages, t);
	fflush(stdout);
	return bad != 0;
}

static void on_usr1(int sig)
{
	(void)sig;
}

/* The parent's dispositions, whatever the resuming process had. */
static int check_signals(void)
{
	struct sigaction usr1, usr2, hup;
	sigaction(SIGUSR1, NULL, &usr1);
	sigaction(SIGUSR2, NULL, &usr2);
	sigaction(SIGHUP, NULL, &hup);
	if (usr1.sa_handler == on_usr1 && usr2.sa_handler == SIG_IGN && hup.sa_handler == SIG_DFL)
		return 0;
	fprintf(stderr, "child: SIGUSR1 %s, SIGUSR2 %s, SIGHUP %s\n",
	        usr1.sa_handler == on_usr1 ? "caught" : "not caught",
	        usr2.sa_handler == SIG_IGN ? "ignored" : "not ignored",
	        hup.sa_handler == SIG_DFL ? "default" : "not default");
	return 1;
}

static int check_child(long index, int fd)
{
	fprintf(stderr, "child arrived %.6f\n", now());
	int bad = check_signals();
	if (counter != 42)
		fprintf(stderr, "child: counter %ld, want 42\n", counter), bad = 1;
	if (strcmp(tag, "prepare-time"))
		fprintf(stderr, "child: tag '%s'\n", tag), bad = 1;
	for (size_t i = 0; i < heap_len; i += 4096 + 7)
		if (heap[i] != (unsigned char)(i * 31 + 7)) {
			fprintf(stderr, "child: heap[%zu] = %d\n", i, heap[i]);
			bad = 1;
			break;
		}
	if (fd >= 0) {
		char b[4] = {0};
		if (read(fd, b, 3) != 3 || memcmp(b, "567", 3))
			fprintf(stderr, "child: file read '%s', want '567'\n", b), bad = 1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		for (size_t i = 0; i < sizeof forkdata; i++)
			if (forkdata[i] != (unsigned char)(i * 7 + 3))
				_exit(1);
		_exit(0);
	}
	int ws = -1;
	waitpid(pid, &ws, 0);
	if (ws != 0)
		fprintf(stderr, "child: a forked process saw wrong data (status %d)\n", ws), bad = 1;
	pid = fork();
	if (pid == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(3);
	}
	waitpid(pid, &ws, 0);
	if (ws != 0)
		fprintf(stderr, "child: fork + exec of /bin/true: status %d\n", ws), bad = 1;
	/* the child's memory is its own: writing works */
	counter = 1000 + index;
	snprintf(tag, sizeof tag, "child %ld", index);
	if (!bad)
		printf("child %ld ok\n", index);
	fflush(stdout);
	return bad;
}

/* "join NAME KEY": asks the shared pager listening at NAME to take a
 * child with KEY, handing it /dev/null for a userfaultfd and a watch (the way a
 * resuming process joins, but without checking the listener's user);
 * prints "refused: WHY" and exits 0 when it is refused, 1 when taken. */
static int join_pager(const char *name, const char *key_hex)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "%s", name);
	socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a.sun_path + 1);
	struct rf_join j = {.magic = RF_MAGIC, .version = RF_VERSION, .ra_base = 16,
	                    .ra_max = 16};
	char err[256];
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0), null = open("/dev/null", O_RDWR);
	if (rf_parse_hex(key_hex, j.key, 16) < 0 || fd < 0 || null < 0)
		return 2;
	if (connect(fd, (struct sockaddr *)&a, len) < 0) {
		printf("refused: connect: %s\n", strerror(errno));
		return 0;
	}
	int memfd;
	j.flags = RF_JOIN_CANMAP;
	if (rf_join_send(fd, &j, NULL, null, null, 5000, &memfd, err, sizeof err) < 0) {
		printf("refused: %s\n", err);
		return 0;
	}
	/* the pager's cache, which the child maps: changing it must fail */
	char *w = memfd < 0 ? MAP_FAILED
	                    : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (memfd < 0)
		printf("taken, no cache\n");
	else if (pwrite(memfd, "x", 1, 0) == 1 || w != MAP_FAILED || ftruncate(memfd, 0) == 0)
		printf("taken, the cache writable\n");
	else
		printf("taken, the cache read-only\n");
	return 1;
}

static void *sleeper(void *arg)
{
	(void)arg;
	pause();
	return NULL;
}

int main(int argc, char **argv)
{
	char err[512];
	if (argc == 4 && !strcmp(argv[1], "join"))
		return join_pager(argv[2], argv[3]);
	if (argc == 5 && !strcmp(argv[1], "resume")) {
		pthread_t extra;
		if (getenv("RFORK_THREAD"))   /* a second thread: must be refused */
			pthread_create(&extra, NULL, sleeper, NULL);
		if (getenv("RFORK_IGNORE_HUP"))   /* not the parent's: must not stay */
			signal(SIGHUP, SIG_IGN);
		if (getenv("RFORK_WARM"))   /* as a zygote */
			rf_resume_warm();
		if (getenv("RFORK_STALE_LAYOUT")) {
			/* after the zygote's cached layout, a mapping it does not
			 * know where the restorer's range would go first */
			mmap((void *)(1UL << 32), 64 << 20, PROT_NONE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		}
		double t0 = now();
		/* the child's memory is the parent's: the start time goes by stderr */
		fprintf(stderr, "resume start %.6f\n", t0);
		rf_resume(argv[2], argv[3], argv[4], getenv("RFORK_TRANSPORT"), NULL, err, sizeof err);
		fprintf(stderr, "rfork_basic: resume: %s (%.3f s)\n", err, now() - t0);
		return 2;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: rfork_basic parent MB FILE | resume ADDRESS ID KEY | "
		        "exit-after-prepare MB | hold MB\n");
		return 2;
	}
	hold = !strcmp(argv[1], "hold");
	heap_len = (size_t)atol(argv[2]) << 20;
	heap = malloc(heap_len ? heap_len : 1);
	for (size_t i = 0; i < heap_len; i++)
		heap[i] = (unsigned char)(i * 31 + 7);
	int fd = -1;
	if (argc > 3) {
		fd = open(argv[3], O_RDONLY);
		if (fd < 0 || lseek(fd, 5, SEEK_SET) != 5) {
			perror(argv[3]);
			return 2;
		}
	}
	for (size_t i = 0; i < sizeof forkdata; i++)
		forkdata[i] = (unsigned char)(i * 7 + 3);
	counter++;
	signal(SIGUSR1, on_usr1);   /* dispositions a child must have */
	signal(SIGUSR2, SIG_IGN);
	struct rf_holder *h;
	const char *listen = getenv("RFORK_LISTEN");
	struct rf_prepare_opts o = {.listen = listen ? listen : "127.0.0.1:0", .idle_s = 120,
	                            .transport = getenv("RFORK_TRANSPORT")};
	double t0 = now();
	long r = rf_prepare(&o, &h, err, sizeof err);
	double t1 = now();
	if (r < 0) {
		fprintf(stderr, "prepare: %s\n", err);
		return 2;
	}
	if (r > 0) {
		int agent;
		const char *info = rf_transport_info(h, &agent);
		fprintf(stderr, "child %ld over %s%s%s\n", r, rf_transport(h), *info ? ": " : "", info);
		int bad = hold ? touch_child() : check_child(r, fd);
		rf_close(h);
		free(heap);
		return bad;
	}
	/* RFORK_TRANSPORT=rdma: children come once the holder's agent is ready */
	int agent;
	const char *info = rf_transport_info(h, &agent);
	while (agent == RF_AGENT_STARTING) {
		usleep(10000);
		info = rf_transport_info(h, &agent);
	}
	if (agent == RF_AGENT_FAILED)
		fprintf(stderr, "rfork_basic: the RDMA agent failed: %s\n", info);
	printf("%s %s %s\n", rf_address(h), rf_id(h), rf_key(h));
	fprintf(stderr, "prepare of %zu MiB: %.3f ms\n", heap_len >> 20, (t1 - t0) * 1e3);
	fflush(stdout);
	if (!strcmp(argv[1], "exit-after-prepare"))
		return 0;
	if (hold) {
		fprintf(stderr, "holder %d\n", (int)rf_holder_pid(h));
		char c;
		while (read(0, &c, 1) > 0)
			;
		rf_close(h);
		return 0;
	}
	/* the parent goes on changing everything; children must not see it */
	counter = -1;
	strcpy(tag, "changed");
	memset(heap, 0xEE, heap_len);
	memset(forkdata, 0xEE, sizeof forkdata);
	if (fd >= 0)
		lseek(fd, 0, SEEK_SET);
	char c;
	while (read(0, &c, 1) > 0)
		;
	printf("parent: %ld children\n", rf_children(h));
	rf_close(h);
	return 0;
}
