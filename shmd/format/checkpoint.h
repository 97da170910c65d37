/*-------------------------------------------------------------------------
 *
 * checkpoint.h
 *      Shadow counters (the exact fold of the queue up to an LSN) and their
 *      durable checkpoint file.
 *
 * The spiller folds every record it writes into an hs_shadow; a checkpoint
 * writes that shadow with its LSN to DIR/checkpoint durably (temp file,
 * fsync, rename, fsync dir).  Recovery loads it and folds the queue after
 * it.  Counters, sale configurations and the buyers' counts under
 * per-buyer limits only: order state is rebuilt from
 * the queue records after min(checkpoint LSN, applied LSN), which the
 * daemon retains for that.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_CHECKPOINT_H
#define HOTSTOCK_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "hotstock.h"

/* "HSTKCKP1" little-endian; own format version: the writer writes
 * HS_CKPT_FORMAT_VERSION, the loader reads HS_CKPT_FORMAT_VERSION_MIN to
 * HS_CKPT_FORMAT_VERSION (checkpoint_write.c, VERSIONS). */
#define HS_CKPT_MAGIC UINT64_C(0x31504B434B545348)
#define HS_CKPT_FORMAT_VERSION 3
#define HS_CKPT_FORMAT_VERSION_MIN 1
#define HS_CKPT_FILE "checkpoint"
/* sizes of the file's parts (see checkpoint_write.c); an entry's size
 * depends on the format version */
#define CKPT_ENTRY_SIZE_V1 80
#define CKPT_ENTRY_SIZE_V2 96
#define CKPT_ENTRY_SIZE_V3 104
#define CKPT_BUYER_SIZE 144
#define CKPT_TRAILER_SIZE 4
#define CKPT_TMP_SUFFIX ".tmp"
#define CKPT_HEADER_SIZE 64

typedef struct hs_shadow_sku {
    char sku[HS_SKU_MAX + 1];
    uint8_t sku_len;
    int64_t available;
    hs_sale sale; /* the last SALE record's configuration; all zero for none */
    hs_lsn buyers_since; /* the LSN of its last FORGET (a BUYER record with no buyer), 0 */
} hs_shadow_sku;

/* One buyer's count of one SKU (per-buyer limits). */
typedef struct hs_shadow_buyer {
    char sku[HS_SKU_MAX + 1];
    char buyer[HS_BUYER_MAX + 1];
    uint8_t sku_len;
    uint8_t buyer_len; /* 0: an empty slot */
    int64_t units;
} hs_shadow_buyer;

/* Counters by SKU name: a private open-addressing table (jemalloc). */
typedef struct hs_shadow {
    hs_shadow_sku *slots;
    uint32_t capacity; /* power of two */
    uint32_t count;
    hs_shadow_buyer *buyers; /* open addressing like slots; NULL until the first */
    uint32_t buyer_capacity; /* power of two, or 0 */
    uint32_t buyer_count;
    hs_lsn lsn;          /* every record <= lsn is folded, none after */
    hs_lsn applied_lsn;  /* the drain's position known when saved */
    uint64_t generation; /* of the segment that was live when saved */
} hs_shadow;

int hs_shadow_init(hs_shadow *s, uint32_t capacity);
void hs_shadow_free(hs_shadow *s);
/* Find or add; NULL when full. */
hs_shadow_sku *hs_shadow_get(hs_shadow *s, const char *sku, size_t sku_len, bool create);
/* Fold one record (all types; counters and sale configurations); sets
 * s->lsn = rec->lsn.  Returns -1 (hs_last_error()) if rec->lsn != s->lsn + 1,
 * the table is full, or the record cannot be folded (checkpoint.c). */
int hs_shadow_fold(hs_shadow *s, const hs_record *rec);

/* The buyers' counts (checkpoint_buyer.c).  hs_shadow_buyer_get: find
 * (sku, buyer); with create, add it with 0 units.  NULL when absent, or
 * the table cannot grow (hs_last_error()).  hs_shadow_buyer_fold: fold a
 * BUYER record (hs_shadow_fold calls it).  hs_shadow_copy: a private deep
 * copy (0, or -1 out of memory). */
hs_shadow_buyer *hs_shadow_buyer_get(hs_shadow *s, const char *sku, size_t sku_len,
                                     const char *buyer, size_t buyer_len, bool create);
int hs_shadow_buyer_fold(hs_shadow *s, hs_shadow_sku *e, const hs_record *rec);
int hs_shadow_copy(const hs_shadow *s, hs_shadow *copy);

/* Write s durably to DIR/checkpoint.  0, or -1 with hs_last_error(). */
int hs_checkpoint_write(const char *dir, const hs_shadow *s);

/*
 * Load DIR/checkpoint into s (initialised by the caller).  Returns 1 when
 * loaded, 0 when there is no checkpoint file (a new directory), -1 with
 * hs_last_error() on a bad magic, a format version this build does not
 * read, a bad checksum, a short file or a bad entry: the daemon refuses to
 * start then.  A version-1 file loads with every sale configuration zero.
 */
int hs_checkpoint_load(const char *dir, hs_shadow *s);

#endif /* HOTSTOCK_CHECKPOINT_H */
