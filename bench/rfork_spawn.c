/*
 * rfork_spawn - runs a command N times, C at once, as whole processes
 * (fork, exec, wait: no shell), for bench/rfork.lua and the README's
 * recipe; the way hyperfine -N times a command.
 *
 *   rfork_spawn N C [-i INPUT] CMD ARGS...
 *
 * Each run's standard input is INPUT's contents (or /dev/null), its
 * output goes to /dev/null.  Prints one JSON line: every run's wall time
 * (ms, in the order they ended), the total wall time (ms), the runs' own
 * CPU time (user + system of the processes waited for, ms, all runs) and
 * how many failed (a status other than 0).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: rfork_spawn N C [-i INPUT] CMD ARGS...\n");
		return 2;
	}
	int n = atoi(argv[1]), conc = atoi(argv[2]), at = 3;
	const char *input = "/dev/null";
	if (!strcmp(argv[at], "-i") && at + 2 < argc) {
		input = argv[at + 1];
		at += 2;
	}
	if (n < 1 || conc < 1) {
		fprintf(stderr, "rfork_spawn: N and C must be > 0\n");
		return 2;
	}
	double *start = calloc(n, sizeof *start), *wall = calloc(n, sizeof *wall);
	pid_t *pids = calloc(n, sizeof *pids);
	int started = 0, done = 0, running = 0, failed = 0;
	double cpu = 0, t0 = now_ms();
	while (done < n) {
		while (running < conc && started < n) {
			start[started] = now_ms();
			pid_t p = fork();
			if (p == 0) {
				int in = open(input, O_RDONLY), out = open("/dev/null", O_WRONLY);
				dup2(in, 0), dup2(out, 1);
				execvp(argv[at], argv + at);
				_exit(127);
			}
			if (p < 0) {
				perror("rfork_spawn: fork");
				return 1;
			}
			pids[started++] = p;
			running++;
		}
		int st;
		struct rusage ru;
		pid_t p = wait4(-1, &st, 0, &ru);
		if (p < 0) {
			perror("rfork_spawn: wait4");
			return 1;
		}
		double t = now_ms();
		for (int i = 0; i < started; i++)
			if (pids[i] == p)
				wall[done] = t - start[i], pids[i] = 0;
		failed += !WIFEXITED(st) || WEXITSTATUS(st);
		cpu += ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 +
		       ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
		running--;
		done++;
	}
	printf("{\"wall_ms\":[");
	for (int i = 0; i < n; i++)
		printf("%s%.4f", i ? "," : "", wall[i]);
	printf("],\"total_ms\":%.3f,\"cpu_ms\":%.3f,\"failed\":%d}\n", now_ms() - t0, cpu, failed);
	return 0;
}
