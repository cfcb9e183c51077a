/* Units of kx.rfork's holder: the learned working set (learn.c) and the
 * holder serving every connection at once (holder.c): a client stalled
 * mid-hello or not reading a large answer delays nobody else, pipelined
 * requests are answered in order, and what earlier children were served
 * comes back, in order, with a later child's descriptor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../bindings/rfork/internal.h"

#define P RF_PAGE

static void log_keeps_ranges_inside_a_mapping(void **state)
{
	(void)state;
	struct rf_page_req log[4];
	uint32_t n = 0;
	assert_int_equal(rf_log_add(log, &n, 4, 0x10000, 0x10000, 2), 0);
	assert_int_equal(rf_log_add(log, &n, 4, 0x10000, 0x12000, 3), 0);   /* continues it */
	assert_int_equal(n, 1);
	assert_int_equal(log[0].npages, 5);
	/* the next mapping starts right there: a range of its own */
	assert_int_equal(rf_log_add(log, &n, 4, 0x15000, 0x15000, 1), 0);
	assert_int_equal(n, 2);
	/* not contiguous; then a plain request's size is the limit */
	assert_int_equal(rf_log_add(log, &n, 4, 0x15000, 0x40000, RF_MAX_PAGES), 0);
	assert_int_equal(rf_log_add(log, &n, 4, 0x15000, 0x40000 + RF_MAX_PAGES * P, 1), 0);
	assert_int_equal(n, 4);
	assert_int_equal(rf_log_add(log, &n, 4, 0, 0x90000, 1), -1);   /* full */
}

static void merge_adds_what_is_new_in_order(void **state)
{
	(void)state;
	struct rf_learned *l = calloc(1, sizeof *l);
	struct rf_page_req a[] = {{0x50000, 2, 0}, {0x10000, 4, 0}};
	rf_learn_merge(l, a, 2);
	assert_int_equal(l->n, 2);
	assert_int_equal(l->pages, 6);
	assert_true(l->r[0].addr == 0x50000 && l->r[1].addr == 0x10000);
	/* overlapping both, and a page repeated in the same log: only the new
	 * pages, after what was there */
	struct rf_page_req b[] = {{0x0f000, 3, 0}, {0x51000, 3, 0}, {0x53000, 1, 0}};
	rf_learn_merge(l, b, 3);
	assert_int_equal(l->n, 4);
	assert_true(l->r[2].addr == 0x0f000 && l->r[2].npages == 1);
	assert_true(l->r[3].addr == 0x52000 && l->r[3].npages == 2);
	assert_int_equal(l->pages, 9);
	assert_true(rf_ranges_have(l->r, l->n, 0x13000));
	assert_false(rf_ranges_have(l->r, l->n, 0x14000));
	/* the page limit cuts a range short */
	struct rf_page_req big[] = {{0x1000000, RF_MAX_PAGES, 0}, {0x2000000, RF_MAX_PAGES, 0},
	                            {0x3000000, RF_MAX_PAGES, 0}, {0x4000000, RF_MAX_PAGES, 0},
	                            {0x5000000, RF_MAX_PAGES, 0}};
	rf_learn_merge(l, big, 5);
	assert_int_equal(l->pages, RF_LEARN_PAGES);
	assert_int_equal(l->r[l->n - 1].npages, RF_LEARN_PAGES - 9 - 3 * RF_MAX_PAGES);
	free(l);
}

/* ---- the holder -------------------------------------------------------------- */

static const uint8_t KEY[16] = {7, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
#define IMAGE_PAGES 12288   /* 48 MiB: more than any socket buffers */
static unsigned char *image;

static int connect_to(int port, int rcvbuf)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

/* hello; the descriptor is read, the learned set returned (*n ranges) */
static struct rf_page_req *hello(int fd, uint32_t *n)
{
	struct rf_hello h = {.magic = RF_MAGIC, .version = RF_VERSION, .id = 42};
	memcpy(h.key, KEY, 16);
	struct rf_reply rep;
	assert_int_equal(rf_write_all(fd, &h, sizeof h), 0);
	assert_int_equal(rf_read_all(fd, &rep, sizeof rep, 10000), 0);
	assert_int_equal(rep.status, RF_OK);
	char *d = malloc(rep.len);
	struct rf_page_req *l = malloc(rep.nlearned * sizeof *l + 1);
	assert_int_equal(rf_read_all(fd, d, rep.len, 10000), 0);
	assert_int_equal(rf_read_all(fd, l, rep.nlearned * sizeof *l, 10000), 0);
	free(d);
	*n = rep.nlearned;
	return l;
}

static void ask(int fd, uint64_t addr, uint32_t npages)
{
	struct rf_page_req q = {.addr = addr, .npages = npages};
	assert_int_equal(rf_write_all(fd, &q, sizeof q), 0);
}

/* an answer of npages pages that must be the image's at addr */
static void answer(int fd, uint64_t addr, uint32_t npages)
{
	struct rf_page_reply a;
	assert_int_equal(rf_read_all(fd, &a, sizeof a, 10000), 0);
	assert_int_equal(a.status, RF_OK);
	assert_int_equal(a.npages, npages);
	char *buf = malloc((size_t)npages * P);
	assert_int_equal(rf_read_all(fd, buf, (size_t)npages * P, 10000), 0);
	assert_memory_equal(buf, (void *)(uintptr_t)addr, (size_t)npages * P);
	free(buf);
}

/* 1 while the holder has neither closed fd nor sent anything on it */
static int quiet(int fd)
{
	struct pollfd pf = {fd, POLLIN, 0};
	return poll(&pf, 1, 0) == 0;
}

static void holder_serves_everyone_at_once(void **state)
{
	(void)state;
	image = mmap(NULL, IMAGE_PAGES * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	             -1, 0);
	for (size_t i = 0; i < IMAGE_PAGES * P; i += 64)
		image[i] = (unsigned char)(i / 64 * 13 + 1);
	uint64_t base = (uintptr_t)image;
	size_t size = sizeof(struct rf_desc) + 64 + sizeof(struct rf_map);
	struct rf_desc *d = calloc(1, size);
	d->magic = RF_MAGIC;
	d->version = RF_VERSION;
	d->size = size;
	d->nmaps = 1;
	d->maps_off = (sizeof *d + 15) & ~15u;
	d->strings_off = d->maps_off + sizeof(struct rf_map);
	struct rf_map *m = (struct rf_map *)((char *)d + d->maps_off);
	*m = (struct rf_map){.start = base, .end = base + IMAGE_PAGES * P, .kind = RF_MAP_SERVE};

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(lfd, 16), 0);
	getsockname(lfd, (struct sockaddr *)&a, &al);
	int port = ntohs(a.sin_port);
	struct rf_shared *shared = mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	                                -1, 0);
	struct rf_holder_cfg cfg = {.listen_fd = lfd, .local_fd = -1, .id = 42,
	                            .desc = d, .shared = shared,
	                            .idle_s = 30, .learn = 1};
	memcpy(cfg.key, KEY, 16);
	pid_t holder = fork();
	if (holder == 0)
		rf_holder_main(&cfg);
	uint32_t nl;

	/* a client stalled half-way through its hello holds up nobody */
	int stalled = connect_to(port, 0);
	struct rf_hello half = {.magic = RF_MAGIC, .version = RF_VERSION};
	assert_int_equal(rf_write_all(stalled, &half, 8), 0);
	int b = connect_to(port, 0);
	free(hello(b, &nl));
	assert_int_equal(nl, 0);
	ask(b, base + 3 * P, 2);
	answer(b, base + 3 * P, 2);
	assert_true(quiet(stalled));   /* still waiting for the rest of its hello */

	/* a client that does not read a 32 MiB answer holds up nobody either */
	int c = connect_to(port, 65536);
	free(hello(c, &nl));
	struct {
		struct rf_page_req head;
		struct rf_page_req q[8];
	} batch = {{.npages = 8, .flags = RF_REQ_BATCH}, {{0}}};
	for (int i = 0; i < 8; i++)
		batch.q[i] = (struct rf_page_req){.addr = base + (uint64_t)i * RF_MAX_PAGES * P,
		                                  .npages = RF_MAX_PAGES};
	assert_int_equal(rf_write_all(c, &batch, sizeof batch), 0);
	ask(b, base + 100 * P, 1);
	answer(b, base + 100 * P, 1);
	/* pipelined: three asked at once, answered in order */
	ask(b, base + 200 * P, 1);
	ask(b, base + 9000 * P, 16);
	ask(b, base + 7 * P, 3);
	answer(b, base + 200 * P, 1);
	answer(b, base + 9000 * P, 16);
	answer(b, base + 7 * P, 3);
	/* the batch is all there once c reads it */
	struct rf_page_reply br;
	assert_int_equal(rf_read_all(c, &br, sizeof br, 10000), 0);
	assert_int_equal(br.npages, 8 * RF_MAX_PAGES);
	char *buf = malloc(8 * RF_MAX_PAGES * P);
	assert_int_equal(rf_read_all(c, buf, 8 * RF_MAX_PAGES * P, 10000), 0);
	assert_memory_equal(buf, image, 8 * RF_MAX_PAGES * P);
	free(buf);
	assert_true(quiet(stalled));
	close(stalled);

	/* the first page of each range b asked for (the page it faulted on)
	 * comes back with the next child's descriptor, in the order b asked
	 * (its first hello got none: nothing was learned) */
	close(b);
	int e = -1;
	for (int tries = 0; tries < 500; tries++) {   /* b's close reaches the holder */
		e = connect_to(port, 0);
		struct rf_page_req *l = hello(e, &nl);
		if (nl) {
			assert_true(nl >= 4);
			assert_true(l[0].addr == base + 3 * P && l[0].npages == 1);
			assert_true(l[1].addr == base + 100 * P && l[1].npages == 1);
			assert_true(l[2].addr == base + 200 * P && l[2].npages == 1);
			assert_true(l[3].addr == base + 9000 * P && l[3].npages == 1);
			free(l);
			break;
		}
		free(l);
		close(e);
		e = -1;
		usleep(10000);
	}
	assert_true(e >= 0);
	close(e);
	close(c);

	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	close(lfd);
	munmap(shared, P);
	munmap(image, IMAGE_PAGES * P);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(log_keeps_ranges_inside_a_mapping),
		cmocka_unit_test(merge_adds_what_is_new_in_order),
		cmocka_unit_test(holder_serves_everyone_at_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
