/*
 * pingpong client: connects to 127.0.0.1:PORT (retrying while the server
 * starts), sends COUNT messages of SIZE bytes, each after INTERVAL_US of
 * sleep, waits for each echo, and prints each round-trip time as its own
 * clock (CLOCK_MONOTONIC; virtual time when dilated) measured it:
 *
 *   rtt SEQ NANOSECONDS
 *   summary COUNT min MIN_NS median MED_NS max MAX_NS
 *
 *   pingpong_client PORT COUNT SIZE INTERVAL_US
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s PORT COUNT SIZE INTERVAL_US\n", argv[0]);
		return 2;
	}
	int count = atoi(argv[2]);
	size_t size = (size_t)atol(argv[3]);
	useconds_t interval = (useconds_t)atol(argv[4]);
	if (count <= 0 || size == 0 || size > 65536) {
		fprintf(stderr, "pingpong_client: COUNT > 0, 0 < SIZE <= 65536\n");
		return 2;
	}
	struct sockaddr_in a = { .sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)atoi(argv[1])),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = -1;
	for (int tries = 0; tries < 5000; tries++) { /* the server may start later */
		s = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
			break;
		int e = errno;
		close(s);
		s = -1;
		if (e != ECONNREFUSED) {
			fprintf(stderr, "pingpong_client: connect: %s\n", strerror(e));
			return 1;
		}
		usleep(1000);
	}
	if (s < 0) {
		fprintf(stderr, "pingpong_client: no server on port %s\n", argv[1]);
		return 1;
	}
	int one = 1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	char *buf = malloc(size);
	int64_t *rtt = malloc(sizeof *rtt * (size_t)count);
	memset(buf, 'x', size);
	for (int i = 0; i < count; i++) {
		if (interval)
			usleep(interval);
		int64_t t0 = now_ns();
		if (write(s, buf, size) != (ssize_t)size) {
			perror("pingpong_client: write");
			return 1;
		}
		for (size_t got = 0; got < size;) {
			ssize_t n = read(s, buf + got, size - got);
			if (n <= 0) {
				fprintf(stderr, "pingpong_client: server closed\n");
				return 1;
			}
			got += (size_t)n;
		}
		rtt[i] = now_ns() - t0;
		printf("rtt %d %lld\n", i + 1, (long long)rtt[i]);
	}
	close(s);
	qsort(rtt, (size_t)count, sizeof *rtt, cmp64);
	printf("summary %d min %lld median %lld max %lld\n", count, (long long)rtt[0],
	       (long long)rtt[count / 2], (long long)rtt[count - 1]);
	free(rtt);
	free(buf);
	return 0;
}
