/*
 * ctx.c - rf_ctx_save: a setjmp that a resumed child returns through.
 *
 * Prepare is a function call at a safe point, so only what the ABI says a
 * callee keeps needs saving: rbx, rbp, r12-r15, the stack pointer after the
 * return, the return address, MXCSR and the x87 control word.  The restorer
 * (restorer.c) loads them back with rax = the child's index.
 */
#include "internal.h"

#include <stddef.h>

_Static_assert(offsetof(struct rf_ctx, rsp) == 48, "rf_ctx layout");
_Static_assert(offsetof(struct rf_ctx, rip) == 56, "rf_ctx layout");
_Static_assert(offsetof(struct rf_ctx, mxcsr) == 64, "rf_ctx layout");
_Static_assert(offsetof(struct rf_ctx, fcw) == 68, "rf_ctx layout");

__asm__(
	".text\n"
	".globl rf_ctx_save\n"
	".type rf_ctx_save,@function\n"
	"rf_ctx_save:\n"
	"	movq %rbx, 0(%rdi)\n"
	"	movq %rbp, 8(%rdi)\n"
	"	movq %r12, 16(%rdi)\n"
	"	movq %r13, 24(%rdi)\n"
	"	movq %r14, 32(%rdi)\n"
	"	movq %r15, 40(%rdi)\n"
	"	leaq 8(%rsp), %rdx\n"
	"	movq %rdx, 48(%rdi)\n"
	"	movq (%rsp), %rdx\n"
	"	movq %rdx, 56(%rdi)\n"
	"	stmxcsr 64(%rdi)\n"
	"	fnstcw 68(%rdi)\n"
	"	xorl %eax, %eax\n"
	"	ret\n"
	".size rf_ctx_save, .-rf_ctx_save\n");
