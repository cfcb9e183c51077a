/* Units of kx.rfork's RDMA transport that need no RDMA hardware: the
 * ranges the holder's agent builds from /proc/PID/pagemap, the child's
 * check of the ranges it is sent against the descriptor, the split of a
 * read into RDMA / zero / TCP pieces, and the holder handing rkeys and
 * ranges only to a connection that presented the key (this test plays the
 * agent on the holder's socketpair; the real agent and device are tested
 * in the VM bed: tests/vm/rfork_rdma.sh). */
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../bindings/rfork/rdma.h"

#define P RF_PAGE
#define PRESENT (1ULL << 63)
#define SWAPPED (1ULL << 62)

static void ranges_from_pagemap(void **state)
{
	(void)state;
	struct rf_rdma_range r[8];
	uint64_t copied = 0, base = 0x700000000000;
	/* present, present, absent, absent, present, swapped, absent */
	uint64_t pm[7] = {PRESENT | 5, PRESENT | 9, 0, 0, PRESENT | 1, SWAPPED, 0};
	int n = rf_rdma_ranges_add(0x10000, 7, pm, 0, base, &copied, r, 0, 8);
	assert_int_equal(n, 4);
	assert_int_equal(copied, 4 * P);
	assert_true(r[0].start == 0x10000 && r[0].end == 0x10000 + 2 * P && r[0].raddr == base);
	assert_true(r[1].start == 0x10000 + 2 * P && r[1].end == 0x10000 + 4 * P && r[1].raddr == 0);
	assert_true(r[2].end == 0x10000 + 6 * P && r[2].raddr == base + 2 * P);
	assert_true(r[3].end == 0x10000 + 7 * P && r[3].raddr == 0);
	/* the next chunk of the same mapping continues the last range */
	uint64_t pm2[2] = {0, PRESENT};
	n = rf_rdma_ranges_add(0x10000 + 7 * P, 2, pm2, 1, base, &copied, r, n, 8);
	assert_int_equal(n, 5);
	assert_true(r[3].end == 0x10000 + 8 * P);
	assert_true(r[4].raddr == base + 4 * P && r[4].end == 0x10000 + 9 * P);
	/* another mapping right after it starts a range of its own */
	n = rf_rdma_ranges_add(0x10000 + 9 * P, 3, NULL, 0, base, &copied, r, n, 8);
	assert_int_equal(n, 6);
	assert_true(r[5].start == 0x10000 + 9 * P && r[5].raddr == base + 5 * P);
	assert_int_equal(copied, 8 * P);
	/* no room: -1 */
	assert_int_equal(rf_rdma_ranges_add(0x900000, 7, pm, 0, base, &copied, r, 6, 8), -1);
}

/* A descriptor with three mappings: served, code from a file, served. */
static struct rf_desc *make_desc(void)
{
	size_t size = sizeof(struct rf_desc) + 64 + 3 * sizeof(struct rf_map);
	struct rf_desc *d = calloc(1, size);
	d->magic = RF_MAGIC;
	d->version = RF_VERSION;
	d->size = size;
	d->nmaps = 3;
	d->maps_off = (sizeof *d + 15) & ~15u;
	d->strings_off = d->maps_off + 3 * sizeof(struct rf_map);
	struct rf_map *m = (struct rf_map *)((char *)d + d->maps_off);
	m[0] = (struct rf_map){.start = 0x10000, .end = 0x20000, .kind = RF_MAP_SERVE};
	m[1] = (struct rf_map){.start = 0x20000, .end = 0x30000, .kind = RF_MAP_FILE};
	m[2] = (struct rf_map){.start = 0x30000, .end = 0x40000, .kind = RF_MAP_SERVE};
	return d;
}

static void ranges_checked_against_the_descriptor(void **state)
{
	(void)state;
	struct rf_desc *d = make_desc();
	char err[256];
	struct rf_rdma_info info = {.status = RF_RDMA_OK, .nranges = 2};
	struct rf_rdma_range ok[2] = {{0x10000, 0x14000, 0x7000}, {0x30000, 0x40000, 0}};
	assert_int_equal(rf_rdma_info_check(&info, ok, d, err, sizeof err), 0);
	struct rf_rdma_range bad[][2] = {
		{{0x30000, 0x34000, 0x7000}, {0x10000, 0x14000, 0}},       /* not sorted */
		{{0x10000, 0x21000, 0x7000}, {0x30000, 0x31000, 0}},       /* into file code */
		{{0x20000, 0x21000, 0x7000}, {0x30000, 0x31000, 0}},       /* not served */
		{{0x10000, 0x14000, 0x7001}, {0x30000, 0x31000, 0}},       /* not aligned */
		{{0x10000, 0x10000, 0x7000}, {0x30000, 0x31000, 0}},       /* empty */
		{{0x10000, 0x14000, 0x7000}, {0x13000, 0x15000, 0}},       /* overlapping */
		{{0x10000, 0x14000, -(uint64_t)P}, {0x30000, 0x31000, 0}}, /* raddr wraps */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(rf_rdma_info_check(&info, bad[i], d, err, sizeof err), -1);
		assert_non_null(strstr(err, "bad RDMA range"));
	}
	info.status = RF_RDMA_FAILED;
	assert_int_equal(rf_rdma_info_check(&info, ok, d, err, sizeof err), -1);
	free(d);
}

static void reads_split_into_pieces(void **state)
{
	(void)state;
	/* copied [0x10000, 0x12000) at 0x7000, zeros [0x12000, 0x13000),
	 * copied [0x13000, 0x14000) at 0x9000 (contiguous with the first in
	 * the copy only by accident: not merged, it is not contiguous here),
	 * nothing (TCP) from 0x14000 */
	struct rf_rdma_range r[3] = {{0x10000, 0x12000, 0x7000}, {0x12000, 0x13000, 0},
	                             {0x13000, 0x14000, 0x9000}};
	struct rf_piece pc[8];
	int n = rf_rdma_plan(r, 3, 0x11000, 5, pc, 8);
	assert_int_equal(n, 4);
	assert_true(pc[0].kind == RF_PIECE_RDMA && pc[0].addr == 0x11000 && pc[0].raddr == 0x8000 &&
	            pc[0].npages == 1);
	assert_true(pc[1].kind == RF_PIECE_ZERO && pc[1].npages == 1);
	assert_true(pc[2].kind == RF_PIECE_RDMA && pc[2].raddr == 0x9000 && pc[2].npages == 1);
	assert_true(pc[3].kind == RF_PIECE_TCP && pc[3].addr == 0x14000 && pc[3].npages == 2);
	/* before every range: TCP, then into the first */
	n = rf_rdma_plan(r, 3, 0xe000, 3, pc, 8);
	assert_int_equal(n, 2);
	assert_true(pc[0].kind == RF_PIECE_TCP && pc[0].npages == 2);
	assert_true(pc[1].kind == RF_PIECE_RDMA && pc[1].raddr == 0x7000);
	/* adjacent ranges contiguous in the copy read as one piece */
	struct rf_rdma_range c[2] = {{0x10000, 0x12000, 0x7000}, {0x12000, 0x13000, 0x9000}};
	n = rf_rdma_plan(c, 2, 0x10000, 3, pc, 8);
	assert_int_equal(n, 1);
	assert_int_equal(pc[0].npages, 3);
	/* too many pieces for the room given */
	assert_int_equal(rf_rdma_plan(r, 3, 0x11000, 5, pc, 3), -1);
	/* no ranges at all: everything over TCP */
	n = rf_rdma_plan(r, 0, 0x11000, 4, pc, 8);
	assert_true(n == 1 && pc[0].kind == RF_PIECE_TCP && pc[0].npages == 4);
}

/* ---- the holder, with this test as its agent ------------------------------ */

static const uint8_t KEY[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

/* hello with key; returns the reply's status (the descriptor is read) */
static uint32_t hello(int fd, const uint8_t *key)
{
	struct rf_hello h = {.magic = RF_MAGIC, .version = RF_VERSION, .id = 42};
	memcpy(h.key, key, 16);
	struct rf_reply rep;
	assert_int_equal(rf_write_all(fd, &h, sizeof h), 0);
	assert_int_equal(rf_read_all(fd, &rep, sizeof rep, 5000), 0);
	if (rep.status == RF_OK) {
		char *d = malloc(rep.len);
		assert_int_equal(rf_read_all(fd, d, rep.len, 5000), 0);
		free(d);
	}
	return rep.status;
}

static void ask_rdma(int fd, uint32_t qpn)
{
	struct {
		struct rf_page_req q;
		struct rf_rdma_ep ep;
	} m = {{.flags = RF_REQ_RDMA, .npages = 1}, {.qpn = qpn, .psn = 7}};
	assert_int_equal(rf_write_all(fd, &m, sizeof m), 0);
}

static void holder_gives_rkeys_only_with_the_key(void **state)
{
	(void)state;
	struct rf_desc *d = make_desc();
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(lfd, 8), 0);
	getsockname(lfd, (struct sockaddr *)&a, &al);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	static struct rf_shared shared;
	struct rf_holder_cfg cfg = {.listen_fd = lfd, .local_fd = -1, .id = 42,
	                            .desc = d, .shared = &shared,
	                            .idle_s = 30, .rdma = 1, .agent_fd = sv[1]};
	memcpy(cfg.key, KEY, 16);
	pid_t holder = fork();
	if (holder == 0) {
		close(sv[0]);
		rf_holder_main(&cfg);
	}
	close(sv[1]);
	int ag = sv[0], port = ntohs(a.sin_port);

	/* the agent is ready: rkey 0x1234, two ranges */
	struct rf_rdma_range r[2] = {{0x10000, 0x14000, 0x7000}, {0x30000, 0x40000, 0}};
	struct rf_rdma_info ready = {.status = RF_RDMA_OK, .nranges = 2, .rkey = 0x1234};
	struct rf_agent_msg h = {RF_AG_READY, sizeof ready + sizeof r, 0, 0};
	assert_int_equal(rf_write_all(ag, &h, sizeof h), 0);
	assert_int_equal(rf_write_all(ag, &ready, sizeof ready), 0);
	assert_int_equal(rf_write_all(ag, r, sizeof r), 0);

	/* a wrong key: refused, and an RDMA request then gets nothing */
	uint8_t wrong[16] = {0};
	int bad = connect_to(port);
	assert_int_equal(hello(bad, wrong), RF_EAUTH);
	struct {
		struct rf_page_req q;
		struct rf_rdma_ep ep;
	} m = {{.flags = RF_REQ_RDMA, .npages = 1}, {.qpn = 99}};
	rf_write_all(bad, &m, sizeof m);   /* may fail: the holder closed it */
	char b;
	assert_int_equal(rf_read_all(bad, &b, 1, 5000), -1);
	close(bad);

	/* an RDMA request before any hello: not a hello, dropped */
	bad = connect_to(port);
	rf_write_all(bad, &m, sizeof m);
	assert_int_equal(rf_read_all(bad, &b, 1, 5000), -1);
	close(bad);

	/* with the key: the child's endpoint reaches the agent, the agent's
	 * answer comes back with the rkey and the ranges */
	int good = connect_to(port);
	assert_int_equal(hello(good, KEY), RF_OK);
	ask_rdma(good, 77);
	struct rf_rdma_ep ep;
	assert_int_equal(rf_read_all(ag, &h, sizeof h, 5000), 0);
	assert_int_equal(h.type, RF_AG_CONNECT);
	assert_int_equal(h.len, sizeof ep);
	assert_int_equal(rf_read_all(ag, &ep, sizeof ep, 5000), 0);
	assert_int_equal(ep.qpn, 77);
	struct rf_rdma_info conn = {.status = RF_RDMA_OK, .rkey = 0x1234, .ep = {.qpn = 555}};
	struct rf_agent_msg ch = {RF_AG_CONNECTED, sizeof conn, h.conn, 0};
	assert_int_equal(rf_write_all(ag, &ch, sizeof ch), 0);
	assert_int_equal(rf_write_all(ag, &conn, sizeof conn), 0);
	struct rf_rdma_info got;
	struct rf_rdma_range gr[2];
	assert_int_equal(rf_read_all(good, &got, sizeof got, 5000), 0);
	assert_int_equal(got.status, RF_RDMA_OK);
	assert_int_equal(got.rkey, 0x1234);
	assert_int_equal(got.ep.qpn, 555);
	assert_int_equal(got.nranges, 2);
	assert_int_equal(rf_read_all(good, gr, sizeof gr, 5000), 0);
	assert_memory_equal(gr, r, sizeof r);
	/* the child goes: the agent is told to drop its queue pair */
	uint32_t id = h.conn;
	close(good);
	assert_int_equal(rf_read_all(ag, &h, sizeof h, 5000), 0);
	assert_int_equal(h.type, RF_AG_RELEASE);
	assert_int_equal(h.conn, id);

	/* a child connected over RDMA when the agent fails is told at once */
	int live = connect_to(port);
	assert_int_equal(hello(live, KEY), RF_OK);
	ask_rdma(live, 79);
	assert_int_equal(rf_read_all(ag, &h, sizeof h, 5000), 0);
	assert_int_equal(h.type, RF_AG_CONNECT);
	assert_int_equal(rf_read_all(ag, &ep, sizeof ep, 5000), 0);
	ch.conn = h.conn;
	assert_int_equal(rf_write_all(ag, &ch, sizeof ch), 0);
	assert_int_equal(rf_write_all(ag, &conn, sizeof conn), 0);
	assert_int_equal(rf_read_all(live, &got, sizeof got, 5000), 0);
	assert_int_equal(got.status, RF_RDMA_OK);
	assert_int_equal(rf_read_all(live, gr, sizeof gr, 5000), 0);

	/* the agent fails: children asking later are told why, with no rkey */
	const char why[] = "the holder's agent cannot register 1 MiB on rxe0";
	h = (struct rf_agent_msg){RF_AG_FAILED, sizeof why, 0, 0};
	assert_int_equal(rf_write_all(ag, &h, sizeof h), 0);
	assert_int_equal(rf_write_all(ag, why, sizeof why), 0);
	uint8_t notice = 0;
	assert_int_equal(rf_read_all(live, &notice, 1, 5000), 0);
	assert_int_equal(notice, RF_RDMA_GONE);
	close(live);
	good = connect_to(port);
	assert_int_equal(hello(good, KEY), RF_OK);
	ask_rdma(good, 78);
	assert_int_equal(rf_read_all(good, &got, sizeof got, 5000), 0);
	assert_int_equal(got.status, RF_RDMA_FAILED);
	assert_int_equal(got.rkey, 0);
	assert_string_equal(got.msg, why);
	close(good);

	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	close(ag);
	close(lfd);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ranges_from_pagemap),
		cmocka_unit_test(ranges_checked_against_the_descriptor),
		cmocka_unit_test(reads_split_into_pieces),
		cmocka_unit_test(holder_gives_rkeys_only_with_the_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
