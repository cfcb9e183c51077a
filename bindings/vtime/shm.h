/*
 * shm.h - the clock shared between the vtime controller and libkxvtime.so
 * in every dilated process (both map it read-write).
 *
 * Header: exp:now() (the last round boundary) behind a seqlock whose counter
 * is also the futex word virtual sleepers wait on; it changes once a round.
 *
 * Slots: one per dilated process spawned by the controller (its children
 * and threads share it: the slot index travels in KXRUN_VTIME_SLOT).  A
 * process's clock is
 *
 *     min(vend, vbase + skip + (cpu - cpu_base) / speed)
 *
 * with cpu its own CLOCK_PROCESS_CPUTIME_ID.  The controller writes vbase,
 * vend, cpu_base and speed (slot seqlock) only while the process is stopped;
 * the process itself adds to skip when a virtual sleep ends inside its
 * quantum (its clock jumps to the deadline) and counts its threads parked in
 * virtual waits (parked, wake_at; asleep: those in a sleep that nothing but
 * the clock or a signal ends) so the controller knows why it blocks, and
 * need not resume a process whose every thread sleeps past the round.
 * The shared part reads without a system call; the CPU time needs one.
 */
#ifndef KXVT_SHM_H
#define KXVT_SHM_H
#include <stdint.h>

#define KXVT_MAGIC 0x4b585654u /* "KXVT" */
#define KXVT_VERSION 3
#define KXVT_SLOTS 256

struct kxvt_slot {
	uint32_t seq;              /* seqlock of the controller's fields */
	int32_t pid;               /* the process the slot was made for */
	double speed;              /* virtual = cpu / speed */
	int64_t vbase;             /* clock when the process was last resumed */
	int64_t vend;              /* the clock never reads past this */
	int64_t cpu_base;          /* pid's CPU time (ns) at vbase */
	uint64_t skip;             /* sleeps that ended in this share (the
	                              process adds, the controller resets):
	                              kxvt_skip_pack(generation, ns) */
	int32_t parked;            /* threads in a virtual wait (process) */
	int32_t asleep;            /* of which in a sleep only the clock ends */
	int64_t wake_at;           /* earliest deadline of a parked thread */
	int64_t spare[2];
};

struct kxvt_shm {
	uint32_t magic;
	uint32_t version;          /* KXVT_VERSION */
	uint32_t seq;              /* seqlock counter and futex word */
	uint32_t nslots;
	int64_t vns;               /* virtual ns at the last round boundary */
	int64_t step;              /* virtual ns per round */
	int64_t start_real_ns;     /* CLOCK_REALTIME at the experiment's start */
	int64_t spare[4];
	struct kxvt_slot slot[KXVT_SLOTS];
};

static inline int64_t kxvt_read(const volatile struct kxvt_shm *s,
                                uint32_t *seqout)
{
	uint32_t a, b;
	int64_t v;
	do {
		a = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
		v = __atomic_load_n(&s->vns, __ATOMIC_ACQUIRE);
		b = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
	} while ((a & 1) || a != b);
	if (seqout)
		*seqout = a;
	return v;
}

struct kxvt_slot_view {
	double speed;
	int64_t vbase, vend, cpu_base;
	uint32_t seq;
};

static inline void kxvt_slot_read(const volatile struct kxvt_slot *s,
                                  struct kxvt_slot_view *v)
{
	uint32_t a, b;
	do {
		a = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
		v->speed = s->speed;
		v->vbase = __atomic_load_n(&s->vbase, __ATOMIC_RELAXED);
		v->vend = __atomic_load_n(&s->vend, __ATOMIC_RELAXED);
		v->cpu_base = __atomic_load_n(&s->cpu_base, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		b = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
	} while ((a & 1) || a != b);
	v->seq = a;
}

/* skip carries the generation of the slot it belongs to (its seqlock
 * counter / 2, low 16 bits) beside the ns, so that a jump the process
 * makes is compare-and-swapped into the share it measured, never into the
 * next one (a stop may fall between its read and its write). */
#define KXVT_SKIP_BITS 48
static inline uint64_t kxvt_gen(uint32_t seq)
{
	return (seq >> 1) & 0xffff;
}

static inline uint64_t kxvt_skip_pack(uint64_t gen, int64_t ns)
{
	return gen << KXVT_SKIP_BITS | ((uint64_t)ns & ((1ull << KXVT_SKIP_BITS) - 1));
}

static inline int64_t kxvt_skip_ns(uint64_t w)
{
	return (int64_t)(w & ((1ull << KXVT_SKIP_BITS) - 1));
}

static inline uint64_t kxvt_skip_gen(uint64_t w)
{
	return w >> KXVT_SKIP_BITS;
}

/* The clock formula above; cpu_used = cpu - cpu_base (clamped at 0). */
static inline int64_t kxvt_slot_clock(const struct kxvt_slot_view *v,
                                      int64_t skip, int64_t cpu_used)
{
	if (cpu_used < 0)
		cpu_used = 0;
	int64_t c = v->vbase + skip + (int64_t)((double)cpu_used / v->speed);
	return c > v->vend ? v->vend : c;
}
#endif
