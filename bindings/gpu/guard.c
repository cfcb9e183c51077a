/*
 * guard.c - kxgpu-guard: the leader of a partition program's process group,
 * so that the program dies with the kxrun that runs it.
 *
 *   kxgpu-guard RUNNER_PID STATUS_FD PROGRAM [ARGS...]
 *
 * `kxrun gpu run` / partition:exec (lexec.c) start it in a new process group
 * instead of the program.  It starts PROGRAM (searched in PATH) as its child,
 * in the same group, with every signal back to default and none blocked, and
 * waits:
 *
 *   - the program ends: the guard ends the same way (its exit status, or
 *     killed by the same signal), so the runner sees the program's status;
 *   - the runner (RUNNER_PID, its parent) dies, even by SIGKILL: the kernel
 *     tells the guard (PR_SET_PDEATHSIG) and it kills its whole group, the
 *     program and whatever the program started there;
 *   - the guard itself is killed: the program gets SIGKILL from the kernel
 *     (its own PR_SET_PDEATHSIG).
 *
 * Signals sent to the group (SIGTERM at the partition's expiry, Ctrl-C
 * through kxrun) reach the program; the guard blocks them all and is only
 * ended by SIGKILL.  What leaves the group (setsid) is found by the ledger
 * instead (members.h).
 *
 * If the program cannot be started, the guard writes its errno (an int) to
 * STATUS_FD and exits 127; on success STATUS_FD is closed unread (it is
 * close-on-exec in the program).  Statically linked: LD_PRELOAD (the
 * enforcement library, meant for the program) does not load into it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

/* The signal the kernel sends when the runner dies. */
#define PARENT_DIED SIGHUP

static void start_program(pid_t guard, int status_fd, char **argv)
{
	sigset_t none;
	int e;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != guard)  /* the guard died before the line above */
		_exit(127);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvp(argv[0], argv);
	e = errno;
	if (write(status_fd, &e, sizeof e) != (ssize_t)sizeof e)
		_exit(126);
	_exit(127);
}

/* Ends the guard as the program ended. */
static void end_like(int wstatus)
{
	struct rlimit no_core = { 0, 0 };
	sigset_t one;
	int sig;

	if (!WIFSIGNALED(wstatus))
		_exit(WEXITSTATUS(wstatus));
	sig = WTERMSIG(wstatus);
	setrlimit(RLIMIT_CORE, &no_core);  /* the program dumped, if at all */
	signal(sig, SIG_DFL);
	sigemptyset(&one);
	sigaddset(&one, sig);
	sigprocmask(SIG_UNBLOCK, &one, NULL);
	raise(sig);
	_exit(128 + sig);
}

int main(int argc, char **argv)
{
	sigset_t all;
	pid_t runner, self = getpid(), prog;
	int status_fd, wstatus;

	if (argc < 4) {
		fprintf(stderr, "usage: kxgpu-guard RUNNER_PID STATUS_FD PROGRAM "
		        "[ARGS...] (started by kxrun gpu run)\n");
		return 2;
	}
	runner = (pid_t)atoi(argv[1]);
	status_fd = atoi(argv[2]);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	prctl(PR_SET_PDEATHSIG, PARENT_DIED);
	if (getppid() != runner)  /* the runner died before the line above */
		return 125;
	fcntl(status_fd, F_SETFD, FD_CLOEXEC);
	prog = fork();
	if (prog < 0) {
		int e = errno;
		if (write(status_fd, &e, sizeof e) != (ssize_t)sizeof e)
			return 126;
		return 127;
	}
	if (prog == 0)
		start_program(self, status_fd, argv + 3);
	close(status_fd);
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);

		if (sig == SIGCHLD || sig < 0) {
			pid_t r = waitpid(prog, &wstatus, WNOHANG);
			if (r == prog)
				end_like(wstatus);
			if (r < 0 && errno == ECHILD)
				_exit(127);
		} else if (getppid() != runner) {
			kill(0, SIGKILL);  /* the whole group, the guard too */
		}
	}
}
