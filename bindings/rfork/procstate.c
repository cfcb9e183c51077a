/*
 * procstate.c - what the processes kx.rfork starts set up alike: the
 * holder and its agent (raw clones: no malloc, no stdio, no locks here),
 * the pager and the zygote.
 */
#include "internal.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

void rf_close_except(int *keep, int n)
{
	for (int i = 1; i < n; i++)   /* a handful: insertion sort */
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];
			keep[j] = keep[j - 1], keep[j - 1] = t;
		}
	unsigned from = 0;
	for (int i = 0; i < n; i++) {
		if (keep[i] < 0)
			continue;   /* none */
		if ((unsigned)keep[i] > from)
			syscall(SYS_close_range, from, keep[i] - 1, 0);
		from = keep[i] + 1;
	}
	syscall(SYS_close_range, from, ~0U, 0);
}

void rf_signals_default(void)
{
	struct rf_ksigaction dfl = {0};
	for (int s = 1; s <= 64; s++)
		if (s != SIGKILL && s != SIGSTOP)
			syscall(SYS_rt_sigaction, s, &dfl, NULL, 8);   /* glibc's own two too */
}
