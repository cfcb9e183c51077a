/* Units for the GPU partition ledger (bindings/gpu/ledger.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../bindings/gpu/ledger.h"
#include "../../bindings/gpu/usage.h"
#include "need.h"

#define GIB (1024ull * 1024 * 1024)

struct fixture {
	char top[64];
	char dir[128];
	kxgpu_ledger *l;
};

static char err[KXGPU_ERRLEN];

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct kxgpu_device devs[2] = {
		{ .index = 0, .memory = 10 * GIB, .name = "Test GPU 0",
		  .type = "GPU", .vendor = "Test", .version = "OpenCL 3.0" },
		{ .index = 1, .memory = 1000003, .name = "Odd GPU",
		  .type = "GPU", .vendor = "Test", .version = "OpenCL 1.2" },
	};

	snprintf(f->top, sizeof f->top, "/tmp/kxrun-gpu-unit.XXXXXX");
	assert_non_null(mkdtemp(f->top));
	chmod(f->top, 0755);  /* like /var/lib/kxrun: others may enter */
	snprintf(f->dir, sizeof f->dir, "%s/gpu", f->top);
	assert_int_equal(kxgpu_ledger_open(&f->l, f->dir, err, sizeof err), 0);
	assert_int_equal(kxgpu_ledger_set_devices(f->l, devs, 2, err,
	                                          sizeof err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[200];

	kxgpu_ledger_close(f->l);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->top);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static int create(kxgpu_ledger *l, uint32_t dev, const char *frac,
                  int64_t ms, uid_t caller, uid_t owner,
                  struct kxgpu_partition *out)
{
	struct kxgpu_request r = { .device = dev, .duration_ms = ms,
	                           .caller = caller, .owner = owner,
	                           .pid = getpid() };

	assert_int_equal(kxgpu_parse_fraction(frac, &r.ppm), 0);
	return kxgpu_ledger_create(l, &r, out, err, sizeof err);
}

static void test_parse(void **state)
{
	uint32_t ppm;
	int64_t ms;
	char buf[16];

	(void)state;
	assert_int_equal(kxgpu_parse_fraction("0.5", &ppm), 0);
	assert_int_equal(ppm, 500000);
	assert_int_equal(kxgpu_parse_fraction(".25", &ppm), 0);
	assert_int_equal(ppm, 250000);
	assert_int_equal(kxgpu_parse_fraction("1", &ppm), 0);
	assert_int_equal(ppm, 1000000);
	assert_int_equal(kxgpu_parse_fraction("0.000001", &ppm), 0);
	assert_int_equal(ppm, 1);
	assert_int_equal(kxgpu_parse_fraction("0.30000000", &ppm), 0);
	assert_int_equal(ppm, 300000);
	assert_int_equal(kxgpu_parse_fraction("0", &ppm), KXGPU_EINVAL);
	assert_int_equal(kxgpu_parse_fraction("1.000001", &ppm), KXGPU_EINVAL);
	assert_int_equal(kxgpu_parse_fraction("-0.5", &ppm), KXGPU_EINVAL);
	assert_int_equal(kxgpu_parse_fraction("0.5x", &ppm), KXGPU_EINVAL);
	assert_int_equal(kxgpu_parse_fraction("", &ppm), KXGPU_EINVAL);
	assert_int_equal(kxgpu_parse_fraction(".", &ppm), KXGPU_EINVAL);
	assert_int_equal(kxgpu_parse_fraction("0.0000001", &ppm), KXGPU_EINVAL);
	assert_int_equal(kxgpu_parse_duration("3600", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(kxgpu_parse_duration("0.25", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(kxgpu_parse_duration("0", &ms), KXGPU_EINVAL);
	assert_int_equal(kxgpu_parse_duration("-5", &ms), KXGPU_EINVAL);
	assert_int_equal(kxgpu_parse_duration("99999999999", &ms), KXGPU_EINVAL);
	assert_int_equal(kxgpu_parse_duration("1e3", &ms), KXGPU_EINVAL);
	kxgpu_format_percent(750000, buf, sizeof buf);
	assert_string_equal(buf, "75.00");
	kxgpu_format_percent(1, buf, sizeof buf);
	assert_string_equal(buf, "0.00");
	kxgpu_format_percent(123456, buf, sizeof buf);
	assert_string_equal(buf, "12.34");
}

static void test_create_list_release(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_partition p, q;
	struct kxgpu_snapshot s;
	uint32_t ppm;

	assert_int_equal(create(f->l, 0, "0.5", 3600000, getuid(), getuid(), &p), 0);
	assert_string_equal(p.id, "partition_0001");
	assert_int_equal(p.bytes, 5 * GIB);
	assert_int_equal(p.pid, getpid());
	assert_int_equal(p.expires_ms - p.created_ms, 3600000);
	assert_int_equal(create(f->l, 1, "0.333333", 60000, getuid(), getuid(), &q), 0);
	assert_string_equal(q.id, "partition_0002");
	/* 1000003 * 333333 / 10^6 = 333333.999999 -> rounded down, exactly */
	assert_int_equal(q.bytes, 333333);
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.ndevices, 2);
	assert_string_equal(s.devices[0].name, "Test GPU 0");
	assert_string_equal(s.parts[0].id, "partition_0001");
	kxgpu_snapshot_free(&s);
	assert_int_equal(kxgpu_ledger_available(f->l, 0, &ppm, err, sizeof err), 0);
	assert_int_equal(ppm, 500000);
	assert_int_equal(kxgpu_ledger_release(f->l, "partition_0001", getuid(),
	                                      NULL, err, sizeof err), 0);
	assert_int_equal(kxgpu_ledger_release(f->l, "partition_0001", getuid(),
	                                      NULL, err, sizeof err), KXGPU_ENOENT);
	assert_string_equal(err, "Partition not found: partition_0001");
	assert_int_equal(kxgpu_ledger_available(f->l, 0, &ppm, err, sizeof err), 0);
	assert_int_equal(ppm, 1000000);
	/* ids are never reused */
	assert_int_equal(create(f->l, 0, "0.1", 60000, getuid(), getuid(), &p), 0);
	assert_string_equal(p.id, "partition_0003");
}

static void test_bad_requests(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_request r = { .device = 0, .ppm = 0, .duration_ms = 1000 };
	uint32_t ppm;

	assert_int_equal(kxgpu_ledger_create(f->l, &r, NULL, err, sizeof err),
	                 KXGPU_EINVAL);
	r.ppm = KXGPU_PPM + 1;
	assert_int_equal(kxgpu_ledger_create(f->l, &r, NULL, err, sizeof err),
	                 KXGPU_EINVAL);
	r.ppm = 1000;
	r.duration_ms = 0;
	assert_int_equal(kxgpu_ledger_create(f->l, &r, NULL, err, sizeof err),
	                 KXGPU_EINVAL);
	r.duration_ms = KXGPU_MAX_DURATION_MS + 1;
	assert_int_equal(kxgpu_ledger_create(f->l, &r, NULL, err, sizeof err),
	                 KXGPU_EINVAL);
	r.duration_ms = 1000;
	r.device = 2;
	assert_int_equal(kxgpu_ledger_create(f->l, &r, NULL, err, sizeof err),
	                 KXGPU_ENODEV);
	assert_string_equal(err, "Invalid device index: 2 (2 devices known)");
	assert_int_equal(kxgpu_ledger_available(f->l, 7, &ppm, err, sizeof err),
	                 KXGPU_ENODEV);
}

static void test_oversubscription(void **state)
{
	struct fixture *f = *state;
	uint32_t ppm;

	assert_int_equal(create(f->l, 0, "0.6", 60000, getuid(), getuid(), NULL), 0);
	assert_int_equal(create(f->l, 0, "0.400001", 60000, getuid(), getuid(), NULL),
	                 KXGPU_ENOSPACE);
	assert_non_null(strstr(err, "Not enough available memory"));
	assert_int_equal(create(f->l, 0, "0.4", 60000, getuid(), getuid(), NULL), 0);
	assert_int_equal(kxgpu_ledger_available(f->l, 0, &ppm, err, sizeof err), 0);
	assert_int_equal(ppm, 0);
	assert_int_equal(create(f->l, 0, "0.000001", 60000, getuid(), getuid(), NULL),
	                 KXGPU_ENOSPACE);
	/* the other device is untouched */
	assert_int_equal(create(f->l, 1, "1", 60000, getuid(), getuid(), NULL), 0);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void test_expiry_outlives_creator(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_snapshot s;
	char usage[300];
	uint32_t ppm;
	pid_t pid;
	int st;

	/* a creator that is killed: its partition stays until it expires */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kxgpu_ledger *l;
		if (kxgpu_ledger_open(&l, f->dir, err, sizeof err) != 0 ||
		    create(l, 0, "0.25", 400, getuid(), getuid(), NULL) != 0)
			_exit(1);
		raise(SIGKILL);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(create(f->l, 0, "0.5", 60000, getuid(), getuid(), NULL), 0);
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.parts[0].pid, pid);
	kxgpu_usage_path(f->l, s.parts[0].id, usage, sizeof usage);
	kxgpu_snapshot_free(&s);
	close(open(usage, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(kxgpu_ledger_available(f->l, 0, &ppm, err, sizeof err), 0);
	assert_int_equal(ppm, 250000);
	sleep_ms(600);
	/* expired: dropped on the next read, its usage file with it */
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.parts[0].id, "partition_0002");
	kxgpu_snapshot_free(&s);
	assert_int_equal(access(usage, F_OK), -1);
	assert_int_equal(kxgpu_ledger_available(f->l, 0, &ppm, err, sizeof err), 0);
	assert_int_equal(ppm, 500000);
}

/* 20 processes ask for 10% each at once: exactly 10 get it. */
static void test_concurrent_creators(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_snapshot s;
	pid_t pids[20];
	int ok = 0, full = 0, go[2];
	uint64_t sum = 0;

	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < 20; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			kxgpu_ledger *l;
			char c;
			int rc;
			close(go[1]);
			if (kxgpu_ledger_open(&l, f->dir, err, sizeof err) != 0)
				_exit(3);
			if (read(go[0], &c, 1) != 0)  /* all start together */
				_exit(3);
			rc = create(l, 0, "0.1", 60000, getuid(), getuid(), NULL);
			_exit(rc == 0 ? 0 : rc == KXGPU_ENOSPACE ? 2 : 3);
		}
	}
	close(go[0]);
	close(go[1]);
	for (int i = 0; i < 20; i++) {
		int st;
		assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
		assert_true(WIFEXITED(st));
		if (WEXITSTATUS(st) == 0)
			ok++;
		else if (WEXITSTATUS(st) == 2)
			full++;
	}
	assert_int_equal(ok, 10);
	assert_int_equal(full, 10);
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err), 0);
	assert_int_equal(s.n, 10);
	for (uint32_t i = 0; i < s.n; i++) {
		sum += s.parts[i].ppm;
		for (uint32_t j = 0; j < i; j++)
			assert_string_not_equal(s.parts[i].id, s.parts[j].id);
	}
	assert_int_equal(sum, KXGPU_PPM);
	kxgpu_snapshot_free(&s);
}

static void test_permissions(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_partition p;

	assert_int_equal(create(f->l, 0, "0.2", 60000, 1000, 1001, NULL),
	                 KXGPU_EPERM);
	assert_string_equal(err, "Permission denied: only administrators can "
	                    "create partitions for other users");
	assert_int_equal(create(f->l, 0, "0.2", 60000, 0, 0, &p), 0);
	assert_string_equal(p.owner, "root");
	assert_int_equal(kxgpu_ledger_release(f->l, p.id, 1000, NULL, err,
	                                      sizeof err), KXGPU_EPERM);
	assert_string_equal(err, "Permission denied: partition owned by root");
	/* root creates for someone else and may release it */
	assert_int_equal(create(f->l, 0, "0.2", 60000, 0, 65534, &p), 0);
	assert_int_equal(p.uid, 65534);
	assert_int_equal(p.creator_uid, 0);
	assert_int_equal(kxgpu_ledger_release(f->l, p.id, 1000, NULL, err,
	                                      sizeof err), KXGPU_EPERM);
	assert_int_equal(kxgpu_ledger_release(f->l, p.id, 65534, NULL, err,
	                                      sizeof err), 0);
}

/* A second, unprivileged user works in the directory root made. */
static void test_second_user(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_snapshot s;
	pid_t pid;
	int st;

	NEED("root");
	assert_int_equal(create(f->l, 0, "0.3", 60000, 0, 0, NULL), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kxgpu_ledger *l;
		struct kxgpu_partition p;
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		if (kxgpu_ledger_open(&l, f->dir, err, sizeof err) != 0)
			_exit(11);
		if (create(l, 0, "0.3", 60000, 65534, 65534, &p) != 0)
			_exit(12);
		if (kxgpu_ledger_release(l, "partition_0001", 65534, NULL, err,
		                         sizeof err) != KXGPU_EPERM)
			_exit(13);
		if (create(l, 0, "0.3", 60000, 65534, 0, NULL) != KXGPU_EPERM)
			_exit(14);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.parts[1].uid, 65534);
	kxgpu_snapshot_free(&s);
	/* and root, in turn, updates the file that user wrote */
	assert_int_equal(kxgpu_ledger_release(f->l, "partition_0002", 0, NULL,
	                                      err, sizeof err), 0);
}

static void corrupt_at(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	unsigned char c;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x5a;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static void test_corruption_detected(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_snapshot s;
	struct stat before, after;
	char path[200];

	assert_int_equal(create(f->l, 0, "0.3", 60000, getuid(), getuid(), NULL), 0);
	snprintf(path, sizeof path, "%s/ledger", f->dir);
	assert_int_equal(stat(path, &before), 0);
	corrupt_at(path, before.st_size - 40);  /* inside the record */
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err),
	                 KXGPU_ECORRUPT);
	assert_non_null(strstr(err, "ledger corrupted"));
	assert_non_null(strstr(err, "checksum"));
	assert_int_equal(create(f->l, 0, "0.3", 60000, getuid(), getuid(), NULL),
	                 KXGPU_ECORRUPT);
	/* never silently reset: the damaged file is still there, unchanged */
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_size, before.st_size);
	corrupt_at(path, before.st_size - 40);  /* undo */
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err), 0);
	assert_int_equal(s.n, 1);
	kxgpu_snapshot_free(&s);
	assert_int_equal(truncate(path, before.st_size - 7), 0);
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err),
	                 KXGPU_ECORRUPT);
	assert_non_null(strstr(err, "size"));
	assert_int_equal(truncate(path, 10), 0);
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err),
	                 KXGPU_ECORRUPT);
}

/* A creator that dies after writing its record but before the counter: the
 * next create must not hand out the same id again. */
static void test_counter_behind_repaired(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_partition p;
	unsigned char counter[16];
	char path[200];
	int fd;

	snprintf(path, sizeof path, "%s/ledger", f->dir);
	assert_int_equal(create(f->l, 0, "0.1", 60000, getuid(), getuid(), &p), 0);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	/* the counter block sits at 4608 (ledger.c COUNTER_OFF) */
	assert_int_equal(pread(fd, counter, sizeof counter, 4608), 16);
	assert_int_equal(create(f->l, 0, "0.1", 60000, getuid(), getuid(), &p), 0);
	assert_string_equal(p.id, "partition_0002");
	assert_int_equal(pwrite(fd, counter, sizeof counter, 4608), 16);
	close(fd);
	assert_int_equal(create(f->l, 0, "0.1", 60000, getuid(), getuid(), &p), 0);
	assert_string_equal(p.id, "partition_0003");
}

/* The file gives back the slots freed at its end. */
static void test_file_shrinks(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_partition p;
	struct stat st1, st2;
	char path[200];

	snprintf(path, sizeof path, "%s/ledger", f->dir);
	for (int i = 0; i < 5; i++)
		assert_int_equal(create(f->l, 0, "0.1", 60000, getuid(), getuid(), &p), 0);
	assert_int_equal(stat(path, &st1), 0);
	for (int i = 5; i >= 3; i--) {
		char id[32];
		snprintf(id, sizeof id, "partition_%04d", i);
		assert_int_equal(kxgpu_ledger_release(f->l, id, getuid(), NULL, err,
		                                      sizeof err), 0);
	}
	assert_int_equal(stat(path, &st2), 0);
	assert_int_equal(st1.st_size - st2.st_size, 3 * 128);
	/* freed slots in the middle are reused */
	assert_int_equal(kxgpu_ledger_release(f->l, "partition_0001", getuid(),
	                                      NULL, err, sizeof err), 0);
	assert_int_equal(create(f->l, 0, "0.1", 60000, getuid(), getuid(), &p), 0);
	assert_int_equal(stat(path, &st1), 0);
	assert_int_equal(st1.st_size, st2.st_size);
}

/* ---- programs in a partition ------------------------------------------- */

/* Starts `sleep 30` as a program of partition p (KXGPU_USAGE in its
 * environment, a process group of its own), recorded as a run whose
 * runner is this process, or a runner that is gone already (dead_runner). */
static pid_t start_member(struct fixture *f, const struct kxgpu_partition *p,
                          int dead_runner, uint32_t grace_ms)
{
	char path[300], env[320], exe[64], buf[64];
	kxgpu_usage u;
	pid_t pid, runner;
	int st;

	snprintf(path, sizeof path, "%s/%s.mem", f->dir, p->id);
	assert_int_equal(kxgpu_usage_init(path, p->bytes, p->expires_ms,
	                                  getuid(), err, sizeof err), 0);
	snprintf(env, sizeof env, "KXGPU_USAGE=%s", path);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *envp[] = { env, NULL };
		setpgid(0, 0);
		execle("/bin/sleep", "sleep", "30", (char *)NULL, envp);
		_exit(127);
	}
	setpgid(pid, pid);
	/* the run recorded by its runner: this process, or one that exits */
	runner = dead_runner ? fork() : 0;
	if (runner == 0) {
		int ok = kxgpu_usage_attach(&u, path, err, sizeof err) == 0 &&
		         kxgpu_usage_add_run(&u, pid, grace_ms) >= 0;
		kxgpu_usage_detach(&u);
		if (dead_runner)
			_exit(ok ? 0 : 1);  /* no cmocka in a child */
		assert_true(ok);
	} else {
		assert_int_equal(waitpid(runner, &st, 0), runner);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	/* it is a member once sleep runs with that environment */
	snprintf(exe, sizeof exe, "/proc/%d/exe", (int)pid);
	for (int i = 0; i < 500; i++) {
		ssize_t n = readlink(exe, buf, sizeof buf - 1);
		if (n > 0 && (buf[n] = 0, strstr(buf, "sleep")))
			return pid;
		usleep(10000);
	}
	fail_msg("sleep did not start");
	return -1;
}

/* Whether pid was reaped here within 5 s (it died). */
static int reaped(pid_t pid, int *sig)
{
	int st;

	for (int i = 0; i < 500; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			*sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
			return 1;
		}
		usleep(10000);
	}
	return 0;
}

static uint32_t available(kxgpu_ledger *l)
{
	uint32_t ppm = 0;

	assert_int_equal(kxgpu_ledger_available(l, 0, &ppm, err, sizeof err), 0);
	return ppm;
}

/* A release while a program runs is refused, naming it, and the share is
 * not promised again; by force it gets SIGTERM and the release completes. */
static void test_release_with_programs(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_partition p;
	char want[64];
	pid_t pid;
	int sig = 0, rc = 0;

	assert_int_equal(create(f->l, 0, "1", 60000, getuid(), getuid(), &p), 0);
	pid = start_member(f, &p, 0, 5000);
	assert_int_equal(kxgpu_ledger_release(f->l, p.id, getuid(), NULL, err,
	                                      sizeof err), KXGPU_EBUSY);
	snprintf(want, sizeof want, "sleep (pid %d)", (int)pid);
	assert_non_null(strstr(err, want));
	assert_int_equal(kill(pid, 0), 0);
	assert_int_equal(available(f->l), 0);
	assert_int_equal(create(f->l, 0, "0.1", 60000, getuid(), getuid(), NULL),
	                 KXGPU_ENOSPACE);
	/* another user may not force it */
	assert_int_equal(kxgpu_ledger_release_force(f->l, p.id, getuid() + 1, 0,
	                                            NULL, err, sizeof err),
	                 KXGPU_EPERM);
	assert_int_equal(kxgpu_ledger_release_force(f->l, p.id, getuid(), 5000,
	                                            NULL, err, sizeof err),
	                 KXGPU_EAGAIN);
	assert_true(reaped(pid, &sig));
	assert_int_equal(sig, SIGTERM);
	/* ending: no program starts in it, its share still counted */
	assert_int_equal(kxgpu_ledger_find(f->l, p.id, &p, err, sizeof err),
	                 KXGPU_ENOENT);
	assert_int_equal(available(f->l), 0);
	for (int i = 0; i < 100; i++) {
		rc = kxgpu_ledger_release_force(f->l, p.id, getuid(), 5000, NULL,
		                                err, sizeof err);
		if (rc != KXGPU_EAGAIN)
			break;
		usleep(10000);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(available(f->l), KXGPU_PPM);
}

/* Expiry ends the programs whose runner is gone at the next read; those of
 * a runner that is still there get its grace (it signals them itself). */
static void test_expiry_ends_programs(void **state)
{
	struct fixture *f = *state;
	struct kxgpu_partition p, q;
	struct kxgpu_snapshot s;
	pid_t orphan, kept;
	int sig = 0;

	assert_int_equal(create(f->l, 0, "0.5", 300, getuid(), getuid(), &p), 0);
	assert_int_equal(create(f->l, 0, "0.5", 300, getuid(), getuid(), &q), 0);
	orphan = start_member(f, &p, 1, 5000);
	kept = start_member(f, &q, 0, 0);
	while (kxgpu_now_ms() <= q.expires_ms)
		usleep(10000);
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err), 0);
	assert_true(reaped(orphan, &sig));
	assert_int_equal(sig, SIGKILL);
	/* the other one is still ending, its share still counted */
	assert_int_equal(s.n, 1);
	assert_string_equal(s.parts[0].id, q.id);
	kxgpu_snapshot_free(&s);
	assert_int_equal(kill(kept, 0), 0);
	assert_int_equal(available(f->l), 500000);
	/* past the runner's grace (and the slack for a late runner) */
	while (kxgpu_now_ms() <= q.expires_ms + 2100)
		usleep(20000);
	assert_int_equal(kxgpu_ledger_read(f->l, &s, err, sizeof err), 0);
	assert_int_equal(s.n, 0);
	kxgpu_snapshot_free(&s);
	assert_true(reaped(kept, &sig));
	assert_int_equal(sig, SIGKILL);
	assert_int_equal(available(f->l), KXGPU_PPM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test_setup_teardown(test_create_list_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversubscription, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry_outlives_creator, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_creators, setup, teardown),
		cmocka_unit_test_setup_teardown(test_permissions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corruption_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counter_behind_repaired, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_shrinks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_with_programs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry_ends_programs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
