/*
 * tcp.c - the TCP transport: a hello with id and key, the descriptor, then
 * page requests answered with page bytes on the same connection.
 *
 * A child on the holder's host says the same over a unix socket when it
 * can (the holder's user, its network namespace: rf_local_hello_name),
 * sparing both sides a TCP connection's set-up and teardown; else TCP.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

struct rf_conn {
	int fd;
	int timeout_ms;
	char *buf;        /* buffer() */
	size_t buflen;
};

static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* n bytes from exactly 2n hex digits (a snapshot's id or key); 0 or -1.
 * (Not sscanf: a resume parses 24 bytes, and sscanf's set-up per call
 * was a measurable part of it.) */
int rf_parse_hex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int rf_parse_address(const char *address, char *host, size_t hostlen, char *port,
                     size_t portlen, char *err, size_t errlen)
{
	const char *colon = strrchr(address, ':');
	if (!colon || colon == address || !colon[1]) {
		snprintf(err, errlen, "address '%s' is not HOST:PORT", address);
		return -1;
	}
	const char *h = address, *he = colon;
	if (*h == '[' && he[-1] == ']') { /* [v6]:port */
		h++;
		he--;
	}
	if ((size_t)(he - h) >= hostlen || strlen(colon + 1) >= portlen) {
		snprintf(err, errlen, "address '%s' is too long", address);
		return -1;
	}
	memcpy(host, h, he - h);
	host[he - h] = 0;
	strcpy(port, colon + 1);
	char *end;
	long p = strtol(port, &end, 10);
	if (*end || p < 0 || p > 65535) {
		snprintf(err, errlen, "address '%s': bad port", address);
		return -1;
	}
	return 0;
}

int rf_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Reads exactly len bytes within timeout_ms (< 0: no limit); -1 with errno
 * ETIMEDOUT, ECONNRESET (peer closed) or the read error. */
int rf_read_all(int fd, void *buf, size_t len, int timeout_ms)
{
	char *p = buf;
	long long end = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;
	while (len) {
		if (timeout_ms >= 0) {
			long long left = end - now_ms();
			struct pollfd pf = {fd, POLLIN, 0};
			int r = left > 0 ? poll(&pf, 1, (int)left) : 0;
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			if (r < 0)
				return -1;
		}
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = ECONNRESET;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static const char *status_text(uint32_t s)
{
	switch (s) {
	case RF_EAUTH: return "wrong key (the holder refused it)";
	case RF_EID: return "no such snapshot id at that address";
	case RF_EVERSION: return "protocol version differs (different kxrun build?)";
	case RF_ERANGE: return "page range outside the parent's image";
	case RF_EFULL: return "the holder serves too many connections";
	default: return "unknown error from the holder";
	}
}

static int connect_to(const char *address, int timeout_ms, char *err, size_t errlen)
{
	char host[256], port[16];
	if (rf_parse_address(address, host, sizeof host, port, sizeof port, err, errlen) < 0)
		return -1;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "%s: %s", address, gai_strerror(rc));
		return -1;
	}
	int fd = -1, saved = 0;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
			struct pollfd pf = {fd, POLLOUT, 0};
			int so = 0;
			socklen_t sl = sizeof so;
			if (poll(&pf, 1, timeout_ms) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so == 0)
				break;
			saved = so ? so : ETIMEDOUT;
		} else {
			saved = errno;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s (is the parent's holder "
		         "still there?)", address, strerror(saved));
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	/* blocking from here; reads are bounded by rf_read_all's poll */
	int flags = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	return fd;
}

void rf_local_hello_name(char *out, size_t len, uint64_t id)
{
	snprintf(out, len, "kxrun-rfork-holder/%u/%016llx", (unsigned)getuid(),
	         (unsigned long long)id);
}

static struct rf_conn *tcp_connect(const char *address, uint64_t id, const uint8_t key[16],
                                   int timeout_ms, struct rf_desc **desc, uint32_t *index,
                                   struct rf_page_req **learned, uint32_t *nlearned,
                                   char *err, size_t errlen)
{
	char local[64];
	rf_local_hello_name(local, sizeof local, id);
	int fd = rf_local_connect(local, SOCK_STREAM);
	if (fd < 0)
		fd = connect_to(address, timeout_ms, err, errlen);
	if (fd < 0)
		return NULL;
	struct rf_hello h = {.magic = RF_MAGIC, .version = RF_VERSION, .id = id};
	memcpy(h.key, key, 16);
	struct rf_reply rep;
	if (rf_write_all(fd, &h, sizeof h) < 0 ||
	    rf_read_all(fd, &rep, sizeof rep, timeout_ms) < 0) {
		snprintf(err, errlen, "%s: no answer from the holder: %s", address,
		         errno == ECONNRESET ? "connection closed" : strerror(errno));
		close(fd);
		return NULL;
	}
	if (rep.status != RF_OK) {
		snprintf(err, errlen, "%s: %s", address, status_text(rep.status));
		close(fd);
		return NULL;
	}
	if (rep.len < sizeof(struct rf_desc) || rep.len > (1u << 30) ||
	    rep.nlearned > RF_LEARN_RANGES) {
		snprintf(err, errlen, "%s: bad descriptor size %llu or learned set %u", address,
		         (unsigned long long)rep.len, rep.nlearned);
		close(fd);
		return NULL;
	}
	size_t llen = rep.nlearned * sizeof(struct rf_page_req);
	struct rf_desc *d = malloc(rep.len);
	struct rf_page_req *l = malloc(llen + 1);
	struct rf_conn *c = malloc(sizeof *c);
	if (!d || !l || !c || rf_read_all(fd, d, rep.len, timeout_ms) < 0 ||
	    rf_read_all(fd, l, llen, timeout_ms) < 0) {
		snprintf(err, errlen, "%s: descriptor: %s", address,
		         d && l && c ? strerror(errno) : "out of memory");
		free(d);
		free(l);
		free(c);
		close(fd);
		return NULL;
	}
	*desc = d;
	*index = rep.index;
	if (learned) {
		*learned = l;
		*nlearned = rep.nlearned;
	} else {
		free(l);
	}
	*c = (struct rf_conn){.fd = fd, .timeout_ms = timeout_ms};
	return c;
}

static int io_error(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s: %s", what, errno == ECONNRESET ? "the holder closed the connection"
	         : errno == ETIMEDOUT ? "no answer from the holder in time"
	         : errno == EPIPE ? "the holder closed the connection" : strerror(errno));
	return -1;
}

static int tcp_send_req(struct rf_conn *c, uint64_t addr, uint32_t npages, char *err,
                        size_t errlen)
{
	struct rf_page_req q = {.addr = addr, .npages = npages};
	if (rf_write_all(c->fd, &q, sizeof q) < 0)
		return io_error(err, errlen, "page request");
	return 0;
}

static int tcp_recv_reply(struct rf_conn *c, uint32_t npages, char *err, size_t errlen)
{
	struct rf_page_reply a;
	if (rf_read_all(c->fd, &a, sizeof a, c->timeout_ms) < 0)
		return io_error(err, errlen, "page answer");
	if (a.status != RF_OK || a.npages != npages) {
		snprintf(err, errlen, "page answer: %s", status_text(a.status ? a.status : RF_ERANGE));
		return -1;
	}
	return 0;
}

static int tcp_recv_data(struct rf_conn *c, void *buf, size_t len, char *err, size_t errlen)
{
	if (rf_read_all(c->fd, buf, len, c->timeout_ms) < 0)
		return io_error(err, errlen, "page data");
	return 0;
}

static int tcp_read_pages(struct rf_conn *c, uint64_t addr, void *buf, uint32_t npages,
                          char *err, size_t errlen)
{
	struct rf_page_req q = {.addr = addr, .npages = npages};
	struct rf_page_reply a;
	/* header and the first pages in one read when they are there */
	struct iovec iov[2] = {{&a, sizeof a}, {buf, (size_t)npages * RF_PAGE}};
	ssize_t got = -1;
	if (rf_write_all(c->fd, &q, sizeof q) == 0) {
		struct pollfd pf = {c->fd, POLLIN, 0};
		int pr = poll(&pf, 1, c->timeout_ms);
		if (pr == 1)
			got = readv(c->fd, iov, 2);
		else if (pr == 0)
			errno = ETIMEDOUT;
	}
	size_t have = got > 0 ? (size_t)got : 0;
	if (got == 0)
		errno = ECONNRESET;
	if (have < sizeof a &&
	    (got <= 0 || rf_read_all(c->fd, (char *)&a + have, sizeof a - have, c->timeout_ms) < 0)) {
		snprintf(err, errlen, "page request at 0x%llx: %s", (unsigned long long)addr,
		         errno == ECONNRESET ? "the holder closed the connection"
		         : errno == ETIMEDOUT ? "no answer from the holder in time"
		         : strerror(errno));
		return -1;
	}
	if (a.status != RF_OK || a.npages != npages) {
		snprintf(err, errlen, "page request at 0x%llx: %s", (unsigned long long)addr,
		         status_text(a.status ? a.status : RF_ERANGE));
		return -1;
	}
	size_t data = have > sizeof a ? have - sizeof a : 0;
	if (rf_read_all(c->fd, (char *)buf + data, (size_t)npages * RF_PAGE - data,
	                c->timeout_ms) < 0) {
		snprintf(err, errlen, "page data at 0x%llx: %s", (unsigned long long)addr,
		         errno == ECONNRESET ? "the holder closed the connection"
		         : strerror(errno));
		return -1;
	}
	return 0;
}

static int tcp_send_batch(struct rf_conn *c, const struct rf_page_req *q, int n, char *err,
                          size_t errlen)
{
	struct rf_page_req head = {.npages = n, .flags = RF_REQ_BATCH};
	struct iovec iov[2] = {{&head, sizeof head}, {(void *)q, n * sizeof *q}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	/* a few KiB: the holder reads them all before it answers */
	ssize_t sent = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
	if (sent != (ssize_t)(sizeof head + n * sizeof *q)) {
		if (sent >= 0)
			errno = EMSGSIZE;
		snprintf(err, errlen, "page batch: %s", errno == EPIPE || errno == ECONNRESET
		         ? "the holder closed the connection" : strerror(errno));
		return -1;
	}
	return 0;
}

static int tcp_read_batch(struct rf_conn *c, const struct rf_page_req *q, int n, void *buf,
                          char *err, size_t errlen)
{
	uint64_t total = 0;
	for (int i = 0; i < n; i++)
		total += q[i].npages;
	struct rf_page_reply a;
	if (rf_read_all(c->fd, &a, sizeof a, c->timeout_ms) < 0 ||
	    (a.status == RF_OK && a.npages == total &&
	     rf_read_all(c->fd, buf, total * RF_PAGE, c->timeout_ms) < 0)) {
		snprintf(err, errlen, "page batch: %s",
		         errno == ECONNRESET ? "the holder closed the connection"
		         : errno == ETIMEDOUT ? "no answer from the holder in time"
		         : strerror(errno));
		return -1;
	}
	if (a.status != RF_OK || a.npages != total) {
		snprintf(err, errlen, "page batch: %s", status_text(a.status ? a.status : RF_ERANGE));
		return -1;
	}
	return 0;
}

/* Populated in one go: a first touch per page costs ~15 us on a VM. */
static void *tcp_buffer(struct rf_conn *c, uint64_t npages, char *err, size_t errlen)
{
	size_t len = npages * RF_PAGE;
	if (c->buflen >= len)
		return c->buf;
	if (c->buf)
		munmap(c->buf, c->buflen);
	c->buflen = 0;
	c->buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
	              -1, 0);
	if (c->buf == MAP_FAILED) {
		c->buf = NULL;
		snprintf(err, errlen, "page buffer: %s", strerror(errno));
		return NULL;
	}
	c->buflen = len;
	return c->buf;
}

static void tcp_close(struct rf_conn *c)
{
	if (!c)
		return;
	if (c->buf)
		munmap(c->buf, c->buflen);
	close(c->fd);
	free(c);
}

static int tcp_fd(const struct rf_conn *c)
{
	return c->fd;
}

static const char *tcp_device(const struct rf_conn *c)
{
	(void)c;
	return "tcp";
}

static void tcp_stats(const struct rf_conn *c, char *buf, size_t len)
{
	(void)c;
	if (len)
		buf[0] = 0;
}

const struct rf_transport rf_tcp = {
	.name = "tcp",
	.connect = tcp_connect,
	.read_pages = tcp_read_pages,
	.send_batch = tcp_send_batch,
	.read_batch = tcp_read_batch,
	.send_req = tcp_send_req,
	.recv_reply = tcp_recv_reply,
	.recv_data = tcp_recv_data,
	.buffer = tcp_buffer,
	.close = tcp_close,
	.fd = tcp_fd,
	.device = tcp_device,
	.stats = tcp_stats,
};
