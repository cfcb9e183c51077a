/*
 * spawn.c - kx_spawn: the one way kxrun starts a program (kx.spawn and the
 * bindings alike); see kx.h for the contract.
 *
 * Between fork and exec the child runs with a copy of kxrun's memory but
 * only the forking thread: another thread may have held malloc's or stdio's
 * lock at the fork.  So everything that allocates (the PATH search, argv
 * for /bin/sh, the environment) is done before the fork, all signals are
 * blocked around it (kxrun's SIGINT handler must never run in the child),
 * and the child calls only async-signal-safe functions.  What fails in the
 * child is written to a close-on-exec pipe as {step, errno}; end of file on
 * it means the exec happened.  A child with run (no exec) is a real fork:
 * it closes the pipe once set up and may then allocate.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kx.h"

extern char **environ;

enum step { STEP_GROUP = 1, STEP_STDIO, STEP_CWD, STEP_HOOK, STEP_EXEC };

struct report {
	int step;
	int err;
	int fd;   /* STEP_STDIO: which of 0, 1, 2 */
};

/* What the child needs, made before the fork. */
struct prep {
	char path[PATH_MAX];
	char *const *argv;
	char *const *envp;
	char **sh_argv;   /* /bin/sh path args..., for ENOEXEC as execvp does */
	int nullfd;
	int wfd;          /* the report pipe's write end */
};

static const char *path_of(const char *const *envp)
{
	if (!envp) {
		const char *p = getenv("PATH");
		return p ? p : "/bin:/usr/bin";
	}
	for (; *envp; envp++)
		if (strncmp(*envp, "PATH=", 5) == 0)
			return *envp + 5;
	return "/bin:/usr/bin";
}

static int executable(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return errno;
	if (!S_ISREG(st.st_mode))
		return EACCES;
	return access(path, X_OK) < 0 ? errno : 0;
}

/* The program's path as execvp would find it (searching the PATH the child
 * will have); 0 or an errno. */
static int find_program(const char *name, const char *const *envp,
			const char *cwd, char *out, size_t n)
{
	if (!*name)
		return ENOENT;
	if (strchr(name, '/')) {
		if ((size_t)snprintf(out, n, "%s", name) >= n)
			return ENAMETOOLONG;
		/* relative to a cwd the child has not entered yet: exec says */
		if (cwd && name[0] != '/')
			return 0;
		return executable(out);
	}
	int seen = ENOENT;
	for (const char *p = path_of(envp);; ) {
		const char *c = strchr(p, ':');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if ((size_t)snprintf(out, n, "%.*s%s%s", (int)l, p, l ? "/" : "",
				     name) < n) {
			int e = executable(out);
			if (e == 0)
				return 0;
			if (e == EACCES)
				seen = EACCES;   /* as execvp: go on, report it last */
		}
		if (!c)
			break;
		p = c + 1;
	}
	return seen;
}

static int lift(int fd)
{
	if (fd < 0 || fd > 2)
		return fd;
	int up = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return up;
}

static void report(const struct prep *p, int step, int err, int fd)
{
	struct report r = {step, err, fd};
	/* after a stop the parent no longer reads: say it on stderr */
	if (p->wfd < 0) {
		static const char pre[] = "kxrun: cannot run '";
		const char *msg = strerrordesc_np(err);   /* no locale, no malloc */
		if (!msg)
			msg = "unknown error";
		kx_write_all(2, pre, sizeof pre - 1);
		kx_write_all(2, p->path, strlen(p->path));
		kx_write_all(2, "': ", 3);
		kx_write_all(2, msg, strlen(msg));
		kx_write_all(2, "\n", 1);
	} else {
		kx_write_all(p->wfd, &r, sizeof r);
	}
	_exit(127);
}

/* Returns only with KX_SPAWN_FORK, set up. */
static void child(const struct kx_spawn *o, struct prep *p)
{
	if (o->flags & KX_SPAWN_SESSION) {
		if (setsid() < 0)
			report(p, STEP_GROUP, errno, 0);
	} else if (setpgid(0, o->pgid) < 0) {
		report(p, STEP_GROUP, errno, 0);
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (int s = 1; s < NSIG && !(o->flags & KX_SPAWN_KEEP_SIGNALS); s++)
		if (s != SIGKILL && s != SIGSTOP)
			sigaction(s, &sa, NULL);   /* glibc's own ones refuse */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	/* sources first moved above 2, so no dup2 overwrites another's */
	int src[3];
	for (int i = 0; i < 3; i++) {
		src[i] = o->io[i] == KX_IO_NULL ? p->nullfd :
			 o->io[i] == KX_IO_FD ? o->fd[i] : i;
		if (src[i] != i && (src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 3)) < 0)
			report(p, STEP_STDIO, errno, i);
	}
	for (int i = 0; i < 3; i++) {
		if (src[i] != i) {
			if (dup2(src[i], i) < 0)
				report(p, STEP_STDIO, errno, i);
			if (o->flags & KX_SPAWN_FORK)
				close(src[i]);   /* no exec closes it */
		} else {
			fcntl(i, F_SETFD, 0);   /* inherited: must stay open */
		}
	}
	if (o->cwd && chdir(o->cwd) < 0)
		report(p, STEP_CWD, errno, 0);
	if (o->child_hook) {
		int e = o->child_hook(o->ud);
		if (e)
			report(p, STEP_HOOK, e, 0);
	}
	if (o->flags & KX_SPAWN_FORK) {
		close(p->wfd);   /* set up: kx_spawn returns, here too */
		return;
	}
	if (o->run) {
		close(p->wfd);   /* set up: kx_spawn returns */
		_exit(o->run(o->ud));
	}
	if (o->flags & KX_SPAWN_STOPPED) {
		close(p->wfd);
		p->wfd = -1;
		raise(SIGSTOP);
	}
	execve(p->path, p->argv, p->envp);
	if (errno == ENOEXEC)
		execve("/bin/sh", p->sh_argv, p->envp);
	report(p, STEP_EXEC, errno, 0);
	_exit(127);
}

struct child_args {
	const struct kx_spawn *o;
	struct prep *p;
};

static int child_entry(void *arg)
{
	struct child_args *a = arg;
	child(a->o, a->p);   /* never KX_SPAWN_FORK here: does not return */
	_exit(127);
}

#define CHILD_STACK (64 * 1024)

/* Under AddressSanitizer a child sharing the memory would share its shadow
 * too, and ASan takes the child's stack for a wild one: such builds fork. */
#ifdef __SANITIZE_ADDRESS__
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* The child of a spawn without a hook or a stop: kxrun's memory shared, the
 * caller suspended until the child's exec or exit. */
static pid_t spawn_shared(const struct kx_spawn *o, struct prep *p)
{
	char *stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		return -1;
	struct child_args a = {o, p};
	pid_t pid = clone(child_entry, stack + CHILD_STACK,
			  CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
	int e = errno;
	munmap(stack, CHILD_STACK);
	errno = e;
	return pid;
}

static pid_t failure(char *err, size_t errlen, int e, const char *fmt,
		     const char *what)
{
	char head[PATH_MAX + 64];
	snprintf(head, sizeof head, fmt, what);
	snprintf(err, errlen, "%s: %s", head, strerror(e));
	return -e;
}

static pid_t failed_report(const struct kx_spawn *o, const char *name,
			   const struct report *r, char *err, size_t errlen)
{
	static const char *const stdio_names[3] = {"stdin", "stdout", "stderr"};
	switch (r->step) {
	case STEP_GROUP:
		return failure(err, errlen, r->err, "%s",
			       o->flags & KX_SPAWN_SESSION ? "setsid" : "setpgid");
	case STEP_STDIO:
		return failure(err, errlen, r->err, "cannot set up %s",
			       stdio_names[r->fd >= 0 && r->fd < 3 ? r->fd : 0]);
	case STEP_CWD:
		return failure(err, errlen, r->err, "cwd '%s'", o->cwd);
	case STEP_HOOK:
		return failure(err, errlen, r->err,
			       "cannot run '%s' (set-up in the child)", name);
	default:
		return failure(err, errlen, r->err, "cannot run '%s'", name);
	}
}

pid_t kx_spawn(const struct kx_spawn *o, char *err, size_t errlen)
{
	struct prep p;
	struct report r;
	int rfd = -1;

	if (!o->argv || !o->argv[0]) {
		snprintf(err, errlen, "cannot run a program: argv is empty");
		return -EINVAL;
	}
	const char *name = o->file ? o->file : o->argv[0];
	int e;
	p.argv = (char *const *)o->argv;
	p.envp = o->envp ? (char *const *)o->envp : environ;
	p.nullfd = -1;
	p.wfd = -1;
	p.sh_argv = NULL;
	int no_exec = o->run || (o->flags & KX_SPAWN_FORK);
	if (no_exec) {
		snprintf(p.path, sizeof p.path, "%s", name);
		fflush(NULL);
	} else {
		e = find_program(name, o->envp, o->cwd, p.path, sizeof p.path);
		if (e)
			return failure(err, errlen, e, "cannot run '%s'", name);
		size_t argc = 0;
		while (o->argv[argc])
			argc++;
		p.sh_argv = malloc((argc + 2) * sizeof *p.sh_argv);
		if (!p.sh_argv)
			return failure(err, errlen, ENOMEM, "cannot run '%s'", name);
		p.sh_argv[0] = "/bin/sh";
		p.sh_argv[1] = p.path;
		for (size_t i = 1; i <= argc; i++)
			p.sh_argv[i + 1] = (char *)o->argv[i];
	}

	int fds[2];
	if (o->io[0] == KX_IO_NULL || o->io[1] == KX_IO_NULL ||
	    o->io[2] == KX_IO_NULL) {
		p.nullfd = lift(open("/dev/null", O_RDWR | O_CLOEXEC));
		if (p.nullfd < 0) {
			e = errno;
			goto out;
		}
	}
	if (pipe2(fds, O_CLOEXEC) < 0) {
		e = errno;
		goto out;
	}
	rfd = lift(fds[0]);
	p.wfd = lift(fds[1]);
	if (rfd < 0 || p.wfd < 0) {
		e = errno;
		goto out;
	}

	sigset_t all, saved;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	pid_t pid;
	if (o->child_hook || no_exec || (o->flags & KX_SPAWN_STOPPED) || SANITIZED) {
		/* raw clone: the sibling's glibc keeps the caller's cached tid,
		 * which only raise() and pthread calls read (not run's) */
		pid = o->flags & KX_SPAWN_SIBLING ?
			syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0) : fork();
		if (pid == 0) {
			child(o, &p);
			close(rfd);   /* KX_SPAWN_FORK: the caller's code goes on */
			if (p.nullfd >= 0)
				close(p.nullfd);
			return 0;
		}
	} else {
		pid = spawn_shared(o, &p);
	}
	e = errno;
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	close(p.wfd);
	p.wfd = -1;
	if (pid < 0)
		goto out;

	pid_t pgid = o->pgid ? o->pgid : pid;
	if (!(o->flags & (KX_SPAWN_SESSION | KX_SPAWN_SIBLING)))
		setpgid(pid, pgid);   /* also here: no race with an early killpg */
	memset(&r, 0, sizeof r);
	ssize_t n;
	if (o->flags & KX_SPAWN_STOPPED) {
		int st = 0;
		while (waitpid(pid, &st, WUNTRACED) < 0 && errno == EINTR)
			;
		n = WIFSTOPPED(st) ? 0 : kx_read_all(rfd, &r, sizeof r);
		if (!WIFSTOPPED(st) && n != (ssize_t)sizeof r) {
			r.step = STEP_HOOK;   /* died without a word */
			r.err = ECHILD;
			n = sizeof r;
		}
	} else {
		n = kx_read_all(rfd, &r, sizeof r);
		if (n == (ssize_t)sizeof r)
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
	}
	close(rfd);
	rfd = -1;
	free(p.sh_argv);
	if (p.nullfd >= 0)
		close(p.nullfd);
	if (n == (ssize_t)sizeof r)
		return failed_report(o, name, &r, err, errlen);
	if (!(o->flags & KX_SPAWN_DETACH))
		kx_track_pgid((o->flags & KX_SPAWN_SESSION) ? pid : pgid);
	return pid;
out:
	if (rfd >= 0)
		close(rfd);
	if (p.wfd >= 0)
		close(p.wfd);
	if (p.nullfd >= 0)
		close(p.nullfd);
	free(p.sh_argv);
	return failure(err, errlen, e, "cannot run '%s'", name);
}

/* ---- environments ------------------------------------------------------------ */

static size_t name_len(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? (size_t)(eq - kv) : strlen(kv);
}

char **kx_env_new(const char *const *changes)
{
	size_t n = 0, m = 0;
	while (environ[n])
		n++;
	while (changes && changes[m])
		m++;
	const char **list = malloc((n + m + 1) * sizeof *list);
	if (!list)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strchr(environ[i], '='))
			list[k++] = environ[i];
	for (size_t j = 0; j < m; j++) {
		const char *c = changes[j];
		size_t nl = name_len(c);
		size_t w = 0;
		for (size_t i = 0; i < k; i++)   /* drop the old value(s) */
			if (!(name_len(list[i]) == nl && !strncmp(list[i], c, nl)))
				list[w++] = list[i];
		k = w;
		if (c[nl] == '=')
			list[k++] = c;
	}
	size_t bytes = (k + 1) * sizeof(char *);
	for (size_t i = 0; i < k; i++)
		bytes += strlen(list[i]) + 1;
	char **env = malloc(bytes);
	if (env) {
		char *s = (char *)(env + k + 1);
		for (size_t i = 0; i < k; i++) {
			size_t l = strlen(list[i]) + 1;
			memcpy(s, list[i], l);
			env[i] = s;
			s += l;
		}
		env[k] = NULL;
	}
	free(list);
	return env;
}
