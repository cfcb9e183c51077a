/*
 * restorer.c - the code that swaps a resuming process's memory for the
 * parent's.  It is copied into a range free in both layouts and runs there
 * on its own stack, so it must be position independent and self-contained:
 * everything lives in the section "rfork_restorer" (copied whole), only raw
 * syscalls, no string constants, no calls out (module.mk compiles this file
 * with -ffreestanding -fno-builtin and no instrumentation, and fails the
 * build when the section has relocations).
 */
#include "internal.h"

#include <asm/prctl.h>
#include <linux/prctl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define RESTORER __attribute__((section("rfork_restorer")))
#define INL static inline __attribute__((always_inline))

INL long sc(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
	                 : "=a"(ret)
	                 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
	                 : "rcx", "r11", "memory");
	return ret;
}

INL __attribute__((noreturn)) void die(const struct rf_restore *r, int msg, long rc)
{
	const char *m = r->msg[msg];
	long n = 0;
	while (m[n])
		n++;
	sc(SYS_write, 2, (long)m, n, 0, 0, 0);
	/* the errno as " -N\n": no printf here */
	char num[24];
	int k = sizeof num;
	num[--k] = '\n';
	unsigned long v = rc < 0 ? (unsigned long)-rc : (unsigned long)rc;
	do {
		num[--k] = (char)('0' + v % 10);
		v /= 10;
	} while (v && k > 2);
	num[--k] = '-';
	num[--k] = ' ';
	sc(SYS_write, 2, (long)(num + k), sizeof num - k, 0, 0, 0);
	sc(SYS_exit_group, 127, 0, 0, 0, 0, 0);
	for (;;)
		;
}

RESTORER __attribute__((noreturn, used)) void rf_restorer(struct rf_restore *r)
{
	const struct rf_desc *d = r->desc;
	const struct rf_map *maps = rf_desc_maps(d);
	long rc;

	/* vdso/vvar out of the way first: into scratch space of the region. */
	for (uint32_t i = 0; i < r->nspecial; i++) {
		const struct rf_special_move *s = &r->special[i];
		rc = sc(SYS_mremap, s->cur, s->len, s->len, MREMAP_MAYMOVE | MREMAP_FIXED,
		        s->scratch, 0);
		if (rc < 0)
			die(r, RF_MSG_SPECIAL, rc);
	}
	if (r->region > r->low && (rc = sc(SYS_munmap, r->low, r->region - r->low, 0, 0, 0, 0)) < 0)
		die(r, RF_MSG_MUNMAP, rc);
	uint64_t rend = r->region + r->region_len;
	if (r->high > rend && (rc = sc(SYS_munmap, rend, r->high - rend, 0, 0, 0, 0)) < 0)
		die(r, RF_MSG_MUNMAP, rc);
	for (uint32_t i = 0; i < r->nspecial; i++) {
		const struct rf_special_move *s = &r->special[i];
		rc = sc(SYS_mremap, s->scratch, s->len, s->len, MREMAP_MAYMOVE | MREMAP_FIXED,
		        s->dest, 0);
		if (rc < 0)
			die(r, RF_MSG_SPECIAL, rc);
	}

	for (uint32_t i = 0; i < d->nmaps; i++) {
		const struct rf_map *m = &maps[i];
		uint64_t len = m->end - m->start;
		if (m->kind == RF_MAP_FILE) {   /* opened (and checked) before */
			rc = sc(SYS_mmap, m->start, len, m->prot,
			        MAP_FIXED | (m->shared ? MAP_SHARED : MAP_PRIVATE), r->fds[i], m->offset);
			if (rc < 0)
				die(r, RF_MSG_MMAP, rc);
		} else if (m->kind == RF_MAP_SERVE || m->kind == RF_MAP_NONE) {
			/* served pages come from the pager's cache where it has
			 * them: a private mapping of its memfd at the parent's
			 * address, every first touch still asked (MINOR), so a
			 * discarded page reads zeros as anonymous memory does */
			int cache = m->kind == RF_MAP_SERVE && !m->growsdown && r->memfd >= 0;
			long flags = MAP_FIXED | MAP_PRIVATE | MAP_NORESERVE;
			if (!cache)
				flags |= MAP_ANONYMOUS;
			if (m->growsdown)
				flags |= MAP_GROWSDOWN;
			rc = sc(SYS_mmap, m->start, len, m->prot, flags, cache ? r->memfd : -1,
			        cache ? (long)m->start : 0);
			if (rc < 0)
				die(r, RF_MSG_MMAP, rc);
			if (m->kind == RF_MAP_SERVE) {
				struct uffdio_register reg;
				reg.range.start = m->start;
				reg.range.len = len;
				reg.mode = UFFDIO_REGISTER_MODE_MISSING |
				           (cache ? UFFDIO_REGISTER_MODE_MINOR : 0);
				reg.ioctls = 0;
				rc = sc(SYS_ioctl, r->uffd, UFFDIO_REGISTER, (long)&reg, 0, 0, 0);
				if (rc < 0)
					die(r, RF_MSG_REGISTER, rc);
			}
		}
	}

	/* brk and friends where the parent had them (needs CAP_SYS_RESOURCE;
	 * without it malloc's heap grows by mmap instead of brk). */
	if (d->have_mm)
		sc(SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, (long)&d->mm, sizeof d->mm, 0, 0);

	for (int s = 0; s < 64; s++)
		if (r->signals & (1ULL << s))
			sc(SYS_rt_sigaction, s + 1, (long)&d->sa[s], 0, 8, 0, 0);
	if (d->robust_len)
		sc(SYS_set_robust_list, d->robust_head, d->robust_len, 0, 0, 0, 0);
	/* The parent's clear_child_tid is unknown; no stale pointer into the
	 * old layout either. */
	sc(SYS_set_tid_address, 0, 0, 0, 0, 0, 0);
	rc = sc(SYS_arch_prctl, ARCH_SET_FS, d->fs_base, 0, 0, 0, 0);
	if (rc < 0)
		die(r, RF_MSG_FS, rc);
	if (d->rseq_len)
		sc(SYS_rseq, d->rseq_addr, d->rseq_len, 0, d->rseq_sig, 0, 0);

	/* Tell the resumed C code where this region is (a write into the
	 * parent's image: the pager fills the page first). */
	struct rf_ctx *pc = (struct rf_ctx *)d->ctx_addr;
	pc->region = r->region;
	pc->region_len = r->region_len;

	/* everything of the resuming process but the watch on the pager (and a
	 * template's two right above it) */
	if (r->watch > 3)
		sc(SYS_close_range, 3, r->watch - 1, 0, 0, 0, 0);
	long kept = r->tmpl_order >= 0 ? 3 : 1;
	sc(SYS_close_range, r->watch >= 3 ? r->watch + kept : 3, ~0U, 0, 0, 0, 0);

	__asm__ volatile(
		"movq 0(%%rdi), %%rbx\n"
		"movq 8(%%rdi), %%rbp\n"
		"movq 16(%%rdi), %%r12\n"
		"movq 24(%%rdi), %%r13\n"
		"movq 32(%%rdi), %%r14\n"
		"movq 40(%%rdi), %%r15\n"
		"ldmxcsr 64(%%rdi)\n"
		"fldcw 68(%%rdi)\n"
		"movq 48(%%rdi), %%rsp\n"
		"movq %%rsi, %%rax\n"
		"jmpq *56(%%rdi)\n"
		:
		: "D"(&d->ctx), "S"(r->index)
		: "memory");
	__builtin_unreachable();
}
