/*
 * pqreader.h - the Parquet reader's inside, shared by its two halves:
 * pqread.c (the footer: schema, row groups, statistics) and pqcolumn.c
 * (pages and column values).  parquet.h is the module's interface.
 */
#ifndef KX_PQREADER_H
#define KX_PQREADER_H

#include <stddef.h>
#include <stdint.h>

#include "parquet.h"

#define FOOTER_MAX (64u << 20)
#define PAGE_MAX (1u << 30)

/* Formats into err; -1. */
int pq_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* n bytes at off, all of them: 0, or -1 on an error or at the end of the
 * file. */
int pq_read_at(int fd, void *buf, size_t n, int64_t off);

#endif
