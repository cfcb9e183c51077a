/*
 * pingpong server: accepts one TCP connection on 127.0.0.1:PORT and echoes
 * every message back until the client closes.  Used by
 * experiments/vtime_pingpong.lua (dilated, or plain as the peer).
 *
 *   pingpong_server PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)atoi(argv[1])),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1) < 0) {
		perror("pingpong_server: bind");
		return 1;
	}
	printf("server: listening on 127.0.0.1:%s\n", argv[1]);
	fflush(stdout);
	int c = accept(ls, NULL, NULL);
	if (c < 0) {
		perror("pingpong_server: accept");
		return 1;
	}
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	char buf[65536];
	long msgs = 0;
	ssize_t n;
	while ((n = read(c, buf, sizeof buf)) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(c, buf + off, (size_t)(n - off));
			if (w <= 0) {
				perror("pingpong_server: write");
				return 1;
			}
			off += w;
		}
		msgs++;
	}
	printf("server: client closed after %ld reads\n", msgs);
	return 0;
}
