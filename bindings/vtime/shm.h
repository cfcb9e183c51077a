/*
 * shm.h - the clock shared between the vtime controller (writer) and
 * libkxvtime.so in every dilated process (readers, read-only mapping).
 *
 * Seqlock: the writer makes seq odd, writes vns, makes seq even again, then
 * FUTEX_WAKEs every waiter on seq (a shared, non-private futex).  Readers
 * retry while seq is odd or changed under them.  No system call to read.
 */
#ifndef KXVT_SHM_H
#define KXVT_SHM_H
#include <stdint.h>

#define KXVT_MAGIC 0x4b585654u /* "KXVT" */

struct kxvt_shm {
	uint32_t magic;
	uint32_t version;          /* 1 */
	uint32_t seq;              /* seqlock counter and futex word */
	uint32_t pad;
	int64_t vns;               /* virtual ns since the experiment started */
	int64_t start_real_ns;     /* CLOCK_REALTIME at the experiment's start */
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
#endif
