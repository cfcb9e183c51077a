/* Units for the tracer registration channel (bindings/vtime/registry.c):
 * message building and reading, socket path rules, live/stale sockets,
 * descriptors passed with a message, and a tracer with nobody listening. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../bindings/vtime/registry.h"
#include "tmpdir.h"

static char dir[80], sock[108], err[512];

static int setup(void **state)
{
	(void)state;
	assert_int_equal(kx_test_tmpdir(dir, sizeof dir, "vtreg"), 0);
	snprintf(sock, sizeof sock, "%s/sub/vtime.sock", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(kx_test_rmtree(dir), 0);
	return 0;
}

static void messages_round_trip(void **state)
{
	(void)state;
	static struct vtreg_msg m;
	m.len = 0;
	assert_int_equal(vtreg_put(&m, "register"), 0);
	assert_int_equal(vtreg_putf(&m, "%d", 42), 0);
	assert_int_equal(vtreg_put(&m, ""), 0);
	size_t off = 0;
	assert_string_equal(vtreg_next(m.buf, m.len, &off), "register");
	assert_string_equal(vtreg_next(m.buf, m.len, &off), "42");
	assert_string_equal(vtreg_next(m.buf, m.len, &off), "");
	assert_null(vtreg_next(m.buf, m.len, &off));
	/* not NUL-terminated at the end: refused, not read past */
	off = 0;
	assert_null(vtreg_next("abc", 3, &off));
	/* the size limit */
	char big[4096];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	m.len = 0;
	int rc = 0;
	for (int i = 0; i < VTREG_MAX_MSG / 4096 + 1 && rc == 0; i++)
		rc = vtreg_put(&m, big);
	assert_int_equal(rc, -1);
	assert_true(m.len <= VTREG_MAX_MSG);
}

static void default_path_rules(void **state)
{
	(void)state;
	char p[108];
	setenv("KXRUN_VTIME_SOCK", "/x/y.sock", 1);
	assert_int_equal(vtreg_default_path(p, sizeof p), 0);
	assert_string_equal(p, "/x/y.sock");
	char longp[200];
	memset(longp, 'a', sizeof longp - 1);
	longp[0] = '/';
	longp[sizeof longp - 1] = 0;
	setenv("KXRUN_VTIME_SOCK", longp, 1);
	assert_int_equal(vtreg_default_path(p, sizeof p), -1);
	unsetenv("KXRUN_VTIME_SOCK");
	assert_int_equal(vtreg_default_path(p, sizeof p), 0);
	if (geteuid() == 0)
		assert_string_equal(p, "/run/kxrun/vtime.sock");
}

static void live_socket_refused_stale_replaced(void **state)
{
	(void)state;
	int fd = vtreg_listen(sock, err, sizeof err);
	assert_true(fd >= 0);
	assert_int_equal(vtreg_listen(sock, err, sizeof err), -1);
	assert_non_null(strstr(err, "another experiment"));
	close(fd); /* the file stays: stale */
	struct stat st;
	assert_int_equal(stat(sock, &st), 0);
	fd = vtreg_listen(sock, err, sizeof err);
	assert_true(fd >= 0);
	close(fd);
	/* a plain file in the way is not removed */
	char file[160];
	snprintf(file, sizeof file, "%s/file", dir);
	fclose(fopen(file, "w"));
	assert_int_equal(vtreg_listen(file, err, sizeof err), -1);
	assert_non_null(strstr(err, "not a socket"));
}

static void descriptors_travel(void **state)
{
	(void)state;
	int sv[2], p[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	assert_int_equal(pipe(p), 0);
	int fds[2] = { p[1], p[1] };
	assert_int_equal(vtreg_send(sv[0], "hi", 3, fds, 2), 0);
	char buf[16];
	int got[VTREG_NFDS], n = 0;
	assert_int_equal(vtreg_recv(sv[1], buf, sizeof buf, got, &n, 1), 3);
	assert_int_equal(n, 2);
	assert_string_equal(buf, "hi");
	assert_int_equal(write(got[0], "z", 1), 1);
	char c = 0;
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(c, 'z');
	close(got[0]), close(got[1]);
	/* too large for the buffer: -EMSGSIZE, descriptors closed */
	assert_int_equal(vtreg_send(sv[0], "0123456789abcdef0123", 21, fds, 1), 0);
	assert_int_equal(vtreg_recv(sv[1], buf, sizeof buf, got, &n, 1), -EMSGSIZE);
	/* nothing there, non-blocking */
	assert_int_equal(vtreg_recv(sv[1], buf, sizeof buf, got, &n, 1), -EAGAIN);
	close(sv[0]);
	assert_int_equal(vtreg_recv(sv[1], buf, sizeof buf, got, &n, 1), 0);
	close(sv[1]), close(p[0]), close(p[1]);
}

static void tracer_without_experiment(void **state)
{
	(void)state;
	char *argv[] = { "true", NULL };
	char *const *cmds[] = { argv, NULL };
	char *env[] = { NULL };
	struct vtreg_request rq = { .id = "1", .speed = 1, .cwd = "/", .env = env,
	                            .cmds = cmds };
	assert_int_equal(vtreg_tracer(sock, 0.1, &rq, err, sizeof err), -1);
	assert_non_null(strstr(err, "no experiment is listening"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(messages_round_trip),
		cmocka_unit_test(default_path_rules),
		cmocka_unit_test_setup_teardown(live_socket_refused_stale_replaced, setup, teardown),
		cmocka_unit_test(descriptors_travel),
		cmocka_unit_test_setup_teardown(tracer_without_experiment, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
