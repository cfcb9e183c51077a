/* Units of what host/kx.h offers bindings: kx_spawn (errors named, stdio,
 * cwd, environment, hook, stop before exec, signals reset), kx_env_new,
 * whole reads/writes, atomic files, classes with getters and field checks,
 * cancel hooks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "host.h"
#include "host_fixture.h"
#include "tmpdir.h"

static lua_State *L;
static char dir[256];

static int setup(void **state)
{
	(void)state;
	L = kx_test_host();
	if (kx_test_tmpdir(dir, sizeof dir, "unit") < 0)
		return -1;
	return L ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return kx_test_rmtree(dir);
}

static int wait_code(pid_t pid)
{
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	kx_untrack_pgid(pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs argv with stdout into a file; returns its exit code, output in out. */
static int run_capture(struct kx_spawn *o, char *out, size_t n)
{
	char path[512], err[256];
	snprintf(path, sizeof path, "%s/out", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	o->io[1] = KX_IO_FD;
	o->fd[1] = fd;
	pid_t pid = kx_spawn(o, err, sizeof err);
	if (pid < 0)
		fail_msg("kx_spawn: %s", err);
	int code = wait_code(pid);
	ssize_t got = kx_pread_all(fd, out, n - 1, 0);
	assert_true(got >= 0);
	out[got] = 0;
	close(fd);
	return code;
}

static void test_spawn_names_what_failed(void **state)
{
	(void)state;
	char err[256];
	const char *missing[] = {"no-such-program-kx", NULL};
	struct kx_spawn o = {.argv = missing};
	assert_int_equal(kx_spawn(&o, err, sizeof err), -ENOENT);
	assert_string_equal(err, "cannot run 'no-such-program-kx': No such file or directory");

	const char *t[] = {"true", NULL};
	struct kx_spawn c = {.argv = t, .cwd = "/nonexistent"};
	assert_int_equal(kx_spawn(&c, err, sizeof err), -ENOENT);
	assert_string_equal(err, "cwd '/nonexistent': No such file or directory");

	const char *d[] = {"/etc", NULL};
	struct kx_spawn e = {.argv = d};
	assert_int_equal(kx_spawn(&e, err, sizeof err), -EACCES);
	assert_non_null(strstr(err, "cannot run '/etc'"));
}

static void test_spawn_stdio_cwd_env(void **state)
{
	(void)state;
	char out[256];
	const char *changes[] = {"KX_UNIT_A=1", "HOME", NULL};
	char **env = kx_env_new(changes);
	assert_non_null(env);
	const char *argv[] = {"sh", "-c", "echo \"$KX_UNIT_A ${HOME-none} $(pwd)\"; "
			      "cat; echo err >&2", NULL};
	struct kx_spawn o = {.argv = argv, .cwd = "/", .envp = (const char *const *)env};
	o.io[0] = KX_IO_NULL;
	o.io[2] = KX_IO_NULL;
	assert_int_equal(run_capture(&o, out, sizeof out), 0);
	assert_string_equal(out, "1 none /\n");
	free(env);
}

/* A program that is a script without #!: run by /bin/sh, as execvp does. */
static void test_spawn_script_without_interpreter(void **state)
{
	(void)state;
	char path[512], out[64];
	snprintf(path, sizeof path, "%s/script", dir);
	FILE *f = fopen(path, "w");
	fputs("echo from-sh\n", f);
	fclose(f);
	chmod(path, 0755);
	const char *argv[] = {path, NULL};
	struct kx_spawn o = {.argv = argv};
	assert_int_equal(run_capture(&o, out, sizeof out), 0);
	assert_string_equal(out, "from-sh\n");
}

/* kxrun ignores SIGPIPE and has handlers: a child gets every signal back
 * at its default, and an empty mask. */
static void test_spawn_resets_signals(void **state)
{
	(void)state;
	char out[512];
	sigset_t block, saved;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &saved);
	signal(SIGUSR2, SIG_IGN);
	const char *argv[] = {"sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status", NULL};
	struct kx_spawn o = {.argv = argv};
	assert_int_equal(run_capture(&o, out, sizeof out), 0);
	sigprocmask(SIG_SETMASK, &saved, NULL);
	signal(SIGUSR2, SIG_DFL);
	assert_non_null(strstr(out, "SigBlk:\t0000000000000000"));
	/* sh itself may ignore nothing; SIGPIPE (bit 13), SIGUSR2 (bit 12)
	 * must not be ignored */
	char *ign = strstr(out, "SigIgn:\t");
	assert_non_null(ign);
	unsigned long long mask = strtoull(ign + 8, NULL, 16);
	assert_false(mask & (1ULL << (SIGPIPE - 1)));
	assert_false(mask & (1ULL << (SIGUSR2 - 1)));
}

/* A run child that exits 1 when SIGUSR2 is ignored in it, else 0. */
static int usr2_ignored(void *ud)
{
	(void)ud;
	struct sigaction sa;
	sigaction(SIGUSR2, NULL, &sa);
	return sa.sa_handler == SIG_IGN;
}

/* KX_SPAWN_KEEP_SIGNALS (a zygote's children): the caller's dispositions
 * stay; without it they are reset, run children too. */
static void test_spawn_keep_signals(void **state)
{
	(void)state;
	char err[256];
	const char *argv[] = {"keep", NULL};
	signal(SIGUSR2, SIG_IGN);
	struct kx_spawn keep = {.argv = argv, .run = usr2_ignored, .flags = KX_SPAWN_KEEP_SIGNALS};
	struct kx_spawn reset = {.argv = argv, .run = usr2_ignored};
	pid_t a = kx_spawn(&keep, err, sizeof err), b = kx_spawn(&reset, err, sizeof err);
	signal(SIGUSR2, SIG_DFL);
	assert_true(a > 0 && b > 0);
	assert_int_equal(wait_code(a), 1);
	assert_int_equal(wait_code(b), 0);
}

static int hook_marks(void *ud)
{
	*(int *)ud = 7;   /* the child's copy: seen after kx_spawn returns 0 */
	return 0;
}

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

/* As fork: 0 in the child, set up (its stdout, a session, the hook run),
 * which goes on in this code with the caller's descriptors and no other;
 * the pid in the caller. */
static void test_spawn_fork_returns_in_the_child(void **state)
{
	(void)state;
	char err[256];
	const char *argv[] = {"forked", NULL};
	int out[2], mark = 0;
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	int fds = open_fds();
	struct kx_spawn o = {.argv = argv, .flags = KX_SPAWN_FORK | KX_SPAWN_SESSION,
	                     .child_hook = hook_marks, .ud = &mark};
	o.io[1] = KX_IO_FD, o.fd[1] = out[1];
	pid_t pid = kx_spawn(&o, err, sizeof err);
	if (pid == 0) {
		char line[64];
		int n = snprintf(line, sizeof line, "%d %d %d\n", mark, getsid(0) == getpid(),
		                 open_fds() - fds);
		_exit(write(1, line, n) == n ? 3 : 4);
	}
	close(out[1]);
	assert_true(pid > 0);
	assert_int_equal(mark, 0);
	char got[64] = {0};
	assert_true(read(out[0], got, sizeof got - 1) > 0);
	close(out[0]);
	assert_string_equal(got, "7 1 0\n");
	assert_int_equal(wait_code(pid), 3);
}

static int failing_hook(void *ud)
{
	(void)ud;
	return EPERM;
}

static void test_spawn_hook_failure_is_reported(void **state)
{
	(void)state;
	char err[256];
	const char *argv[] = {"true", NULL};
	struct kx_spawn o = {.argv = argv, .child_hook = failing_hook};
	assert_int_equal(kx_spawn(&o, err, sizeof err), -EPERM);
	assert_non_null(strstr(err, "Operation not permitted"));
}

/* Stopped before exec, in its own group, tracked; SIGCONT lets it run. */
static void test_spawn_stopped(void **state)
{
	(void)state;
	char err[256];
	const char *argv[] = {"true", NULL};
	struct kx_spawn o = {.argv = argv, .flags = KX_SPAWN_STOPPED};
	pid_t pid = kx_spawn(&o, err, sizeof err);
	assert_true(pid > 0);
	assert_int_equal(getpgid(pid), pid);
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY);
	ssize_t n = kx_read_all(fd, buf, sizeof buf - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = 0;
	assert_non_null(strstr(buf, ") T "));
	kill(pid, SIGCONT);
	assert_int_equal(wait_code(pid), 0);
}

static void test_env_new_sets_and_removes(void **state)
{
	(void)state;
	setenv("KX_UNIT_B", "old", 1);
	const char *changes[] = {"KX_UNIT_B=new", "KX_UNIT_C=c", "KX_UNIT_C", "PATH", NULL};
	char **env = kx_env_new(changes);
	int b = 0, c = 0, path = 0;
	for (char **e = env; *e; e++) {
		b += strcmp(*e, "KX_UNIT_B=new") == 0;
		c += strncmp(*e, "KX_UNIT_C=", 10) == 0;
		path += strncmp(*e, "PATH=", 5) == 0;
	}
	assert_int_equal(b, 1);
	assert_int_equal(c, 0);
	assert_int_equal(path, 0);
	free(env);
	unsetenv("KX_UNIT_B");
}

static void test_atomic_replace_and_abort(void **state)
{
	(void)state;
	char path[512], err[256], buf[16];
	snprintf(path, sizeof path, "%s/data", dir);
	assert_int_equal(kx_write_file_atomic(path, "first", 5, err, sizeof err), 0);
	struct kx_atomic a;
	assert_int_equal(kx_atomic_begin(&a, path, 0600, err, sizeof err), 0);
	assert_int_equal(kx_write_all(a.fd, "half", 4), 0);
	kx_atomic_abort(&a);
	int fd = open(path, O_RDONLY);
	assert_int_equal(kx_read_all(fd, buf, sizeof buf), 5);
	close(fd);
	assert_memory_equal(buf, "first", 5);
	assert_int_equal(kx_atomic_begin(&a, path, 0600, err, sizeof err), 0);
	assert_int_equal(kx_write_all(a.fd, "second", 6), 0);
	assert_int_equal(kx_atomic_commit(&a, err, sizeof err), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 6);
	/* nothing left beside it */
	char cmd[600];
	snprintf(cmd, sizeof cmd, "test $(ls %s | grep -c tmp) = 0", dir);
	assert_int_equal(system(cmd), 0);
	/* a directory that cannot be written: the error names the path */
	snprintf(path, sizeof path, "/proc/kx-unit/x");
	assert_true(kx_write_file_atomic(path, "x", 1, err, sizeof err) < 0);
	assert_non_null(strstr(err, "/proc/kx-unit/x"));
}

static void test_write_all_through_a_pipe(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	static char big[200000], back[200000];
	memset(big, 'k', sizeof big);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		_exit(kx_write_all(p[1], big, sizeof big) == 0 ? 0 : 1);
	}
	close(p[1]);
	assert_int_equal(kx_read_all(p[0], back, sizeof back), (ssize_t)sizeof back);
	assert_int_equal(kx_read_all(p[0], back, 1), 0);   /* end of file */
	close(p[0]);
	assert_int_equal(wait_code(pid), 0);
	assert_memory_equal(big, back, sizeof big);
}

/* ---- classes -------------------------------------------------------------- */

static int obj_name(lua_State *T)
{
	luaL_checkudata(T, 1, "kx.unit.obj");
	lua_pushliteral(T, "unit");
	return 1;
}

static int obj_take(lua_State *T)
{
	luaL_checkudata(T, 1, "kx.unit.obj");
	lua_pushinteger(T, luaL_checkinteger(T, 2));
	return 1;
}

static int obj_opts(lua_State *T)
{
	luaL_checkudata(T, 1, "kx.unit.obj");
	lua_pushnumber(T, kx_optnumberfield(T, 2, "speed", 1.0));
	return 1;
}

static int obj_fallback(lua_State *T)
{
	lua_pushfstring(T, "dyn:%s", luaL_checkstring(T, 2));
	return 1;
}

static int obj_gc_calls;
static int obj_gc(lua_State *T)
{
	(void)T;
	obj_gc_calls++;
	return 0;
}

static int obj_new(lua_State *T)
{
	lua_newuserdatauv(T, 1, 0);
	luaL_setmetatable(T, "kx.unit.obj");
	return 1;
}

static void test_class_with_getters_and_errors(void **state)
{
	(void)state;
	static const luaL_Reg methods[] = {{"take", obj_take}, {"opts", obj_opts},
					   {NULL, NULL}};
	static const luaL_Reg getters[] = {{"name", obj_name}, {NULL, NULL}};
	static const luaL_Reg meta[] = {{"__gc", obj_gc}, {"__index", obj_fallback},
					{NULL, NULL}};
	kx_defclass(L, &(struct kx_class){"kx.unit.obj", methods, getters, meta});
	lua_getfield(L, -1, "__close");
	assert_true(lua_iscfunction(L, -1));   /* __close defaults to __gc */
	lua_pop(L, 2);
	lua_register(L, "new_obj", obj_new);
	const char *code =
		"local o <close> = new_obj()\n"
		"assert(o.name == 'unit' and o.other == 'dyn:other')\n"
		"assert(o:take(3) == 3 and o:opts{speed = 2} == 2 and o:opts() == 1)\n"
		"local ok, e1 = pcall(function() return o:take('x') end)\n"
		"local ok2, e2 = pcall(function() return o:opts{speed = 'fast'} end)\n"
		"assert(tostring(o):match('^kx.unit.obj: 0x'))\n"
		"return e1, e2";
	assert_int_equal(luaL_dostring(L, code), LUA_OK);
	assert_non_null(strstr(lua_tostring(L, -2),
			       "bad argument #1 to 'take' (number expected, got string)"));
	assert_non_null(strstr(lua_tostring(L, -1),
			       "bad argument #1 to 'opts' (field 'speed': number expected, got string)"));
	lua_pop(L, 2);
	assert_int_equal(obj_gc_calls, 1);
}

/* ---- cancel hooks ------------------------------------------------------------ */

static int hook_seen[2];
static void on_end(void *ud, int cancelled)
{
	(void)ud;
	hook_seen[cancelled]++;
}

static int add_hook(lua_State *T)
{
	kx_on_cancel(kx_current(), on_end, NULL);
	(void)T;
	return 0;
}

static void test_cancel_hooks_run_once(void **state)
{
	(void)state;
	lua_register(L, "add_hook", add_hook);
	assert_int_equal(luaL_loadstring(L,
		"add_hook()\n"
		"local t = kx.go(function() add_hook() kx.sleep(10) end)\n"
		"local u = kx.go(function() add_hook() kx.sleep(0.2) end)\n"
		"assert(not u:wait(0.01))   -- a timeout is no end\n"
		"kx.sleep(0)\n"
		"t:cancel()\n"
		"u:cancel()\n"), LUA_OK);
	kx_task *t = kx_test_run_main(L, 0);
	assert_false(kx_task_failed(t, NULL));
	assert_int_equal(hook_seen[1], 2);   /* t and u cancelled */
	assert_int_equal(hook_seen[0], 1);   /* the main one ended */
}

/* kx_wake on a task that is not waiting: an abort in `make asan` builds
 * (KX_CHECKS), the values dropped otherwise. */
static void test_wake_of_a_task_not_waiting(void **state)
{
	(void)state;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		assert_int_equal(luaL_loadstring(L, "return 1"), LUA_OK);
		kx_task *t = kx_go(L, 0, 0);   /* ready, not waiting */
		lua_pushinteger(kx_task_state(t), 7);
		kx_wake(t, 1);
		_exit(lua_gettop(kx_task_state(t)) == 1 ? 0 : 3);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
#ifdef KX_CHECKS
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
#else
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spawn_names_what_failed),
		cmocka_unit_test(test_spawn_stdio_cwd_env),
		cmocka_unit_test(test_spawn_script_without_interpreter),
		cmocka_unit_test(test_spawn_resets_signals),
		cmocka_unit_test(test_spawn_keep_signals),
		cmocka_unit_test(test_spawn_hook_failure_is_reported),
		cmocka_unit_test(test_spawn_fork_returns_in_the_child),
		cmocka_unit_test(test_spawn_stopped),
		cmocka_unit_test(test_env_new_sets_and_removes),
		cmocka_unit_test(test_atomic_replace_and_abort),
		cmocka_unit_test(test_write_all_through_a_pipe),
		cmocka_unit_test(test_class_with_getters_and_errors),
		cmocka_unit_test(test_cancel_hooks_run_once),
		cmocka_unit_test(test_wake_of_a_task_not_waiting),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
