/*-------------------------------------------------------------------------
 *
 * filter_file.h
 *      The evicted-order filter's file, DIR/evicted.filter: the daemon's
 *      durable copy of the segment's filter (segment.h, EVICTION).
 *
 * The daemon alone reads and writes it (format and crash rules in
 * filter_file_write.c).  Its watermark `lsn` says: every order whose
 * records all have LSN <= lsn is in the filter on disk, so recovery needs
 * to index only the orders with a record after it, and the queue is kept
 * back to it.  `evicted` says: every order the daemon evicted had all its
 * records at or below it, and the daemon evicts an order only once its id
 * is in the file (and this header durable); so recovery does not index an
 * order whose records are all <= evicted and whose id the filter holds
 * (such an order was evicted, or is drained and answered from the ledger
 * just as well), and an evicted order never comes back after a restart.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_FILTER_FILE_H
#define HOTSTOCK_FILTER_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "hotstock.h"

#define HS_FILTER_FILE "evicted.filter"
/* "HSTKFLT1" little-endian; own format version. */
#define HS_FILTER_MAGIC UINT64_C(0x31544C464B545348)
#define HS_FILTER_FORMAT_VERSION 1
/* the bits start here; the two header copies sit at 0 and 512 */
#define HS_FILTER_DATA_OFFSET 4096

typedef struct hs_filter_meta {
    uint64_t bytes;  /* size of the bits: a power of two, a multiple of 4096 */
    hs_lsn lsn;      /* the watermark (see above) */
    hs_lsn evicted;  /* no evicted order had a record after it (see above) */
    hs_lsn legacy;   /* > 0: orders up to it were evicted before the filter existed */
    uint64_t ids;    /* ids put into it so far (informational) */
    uint64_t seq;    /* header generation: the valid copy with the larger wins */
} hs_filter_meta;

typedef struct hs_filter_file hs_filter_file;

/*
 * Open DIR/evicted.filter and read its header.  1 (*out, *meta), 0 when
 * there is none, -1 with hs_last_error() naming the file and offset when
 * it is damaged (no valid header copy, a size that does not match).
 */
int hs_filter_file_open(const char *dir, hs_filter_file **out, hs_filter_meta *meta);

/* Read the bits (meta.bytes of them) into buf.  0 / -1. */
int hs_filter_file_read(hs_filter_file *f, void *buf, uint64_t bytes);

/*
 * Create DIR/evicted.filter with meta (bits all zero, space allocated so
 * that later writes need none): temp file, fsync, rename, fsync of DIR.
 * 0 (*out) / -1.
 */
int hs_filter_file_create(const char *dir, const hs_filter_meta *meta, hs_filter_file **out);

/* Write len bytes of bits at offset off (page multiples).  0 / -1. */
int hs_filter_file_write(hs_filter_file *f, const void *bits, uint64_t off, uint64_t len);

/*
 * Make the bits written so far durable (fdatasync), then the next header
 * copy with these watermarks and id count (pwrite, fdatasync).  0, or -1: an
 * fdatasync that failed is never retried as if the data were safe; the
 * caller gives up on the file (the daemon exits; the next start reads the
 * last durable header).
 */
int hs_filter_file_commit(hs_filter_file *f, hs_lsn lsn, hs_lsn evicted, uint64_t ids);

/* The header as last written or read. */
const hs_filter_meta *hs_filter_file_meta(const hs_filter_file *f);

void hs_filter_file_close(hs_filter_file *f);

#endif /* HOTSTOCK_FILTER_FILE_H */
