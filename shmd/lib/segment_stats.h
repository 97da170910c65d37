/*-------------------------------------------------------------------------
 *
 * segment_stats.h
 *      The statistics regions of the shared-memory layout: per-SKU
 *      counters, the HeavyKeeper sketch of take attempts, and the table of
 *      hot SKUs the daemon publishes.  Part of segment.h (included at its
 *      end), kept in its own file because nothing in it is on the
 *      correctness path: a lost or doubled increment here sells nothing
 *      twice and holds nothing back.
 *
 * Layout (offsets in the header, after the filter, each 64-byte aligned):
 *
 *     hs_sku_stats_slot[]  sku_capacity lines, index = the SKU's slot index
 *     sketch               HS_HK_ROWS * sketch_width 64-bit buckets
 *     hs_hot_table         a seqlock, then hot_k hs_hot_entry
 *
 * WHO WRITES WHAT, AND WHICH ORDERING PROTECTS IT
 *
 *  hs_sku_stats_slot.count[kind]  any process that does the counted thing
 *                     (shmd/lib/stats.c, hs_stats_note): fetch_add,
 *                     relaxed.  Statistics order nothing and are ordered
 *                     by nothing: a reader may see a deduct counted before
 *                     the order it made is DEDUCTED, or the other way
 *                     round.  One line per SKU, apart from hs_sku_slot (full
 *                     at 128 bytes, and its line is the one every take
 *                     CASes: counters there would add to that line's
 *                     traffic from readers too).
 *  .last_deduct_us    the deducting process, relaxed store of its record's
 *                     timestamp (unix us); two deductions racing may leave
 *                     the earlier one's time.
 *  .reset_us          hs_sku_stats_reset (admins): stores 0 into every
 *                     count (relaxed), then the time (release).  An
 *                     increment racing a reset may be kept or lost.  0: never
 *                     reset, the segment's creation (created_unix_ms) counts.
 *
 *  sketch             a HeavyKeeper (Yang et al., 2018) of take attempts:
 *                     HS_HK_ROWS rows of sketch_width words, each word
 *                     HS_HK_WORD(fingerprint, count) with fingerprint = SKU
 *                     slot index + 1 (0: empty bucket).  Clients update a
 *                     sampled 1 in HS_HK_SAMPLE of their attempts, by CAS
 *                     (relaxed: the word is the whole state); the daemon's
 *                     hot thread ages every word by CAS (count * 3/4 each
 *                     tick) and reads them (relaxed).  Lost updates under
 *                     contention (a CAS given up after a few tries) only
 *                     lower an estimate.
 *
 *  hs_hot_table       the daemon's hot thread only, under the seqlock
 *                     `seq`: odd (relaxed store, then a release fence),
 *                     the entries and count (relaxed stores), even again
 *                     (release).  Readers (hs_hot_skus) load seq (acquire),
 *                     the fields (relaxed), an acquire fence, seq again,
 *                     and retry unless both are the same even value.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_SEGMENT_STATS_H
#define HOTSTOCK_SEGMENT_STATS_H

/* What a SKU's statistics count (an index of hs_sku_stats_slot.count). */
typedef enum hs_stat_kind {
    HS_STAT_DEDUCT = 0,        /* a DEDUCT record: a deduction, a basket line, a retake */
    HS_STAT_SOLD_OUT = 1,      /* a take answered HS_SOLD_OUT (a basket: its first short line) */
    HS_STAT_REFUND = 2,        /* a REFUND record: refunds and compensations */
    HS_STAT_RESERVE = 3,       /* a RESERVE record: a hold, a line of a basket hold */
    HS_STAT_EXPIRY = 4,        /* an EXPIRE record: a hold expired */
    HS_STAT_LIMIT_REFUSAL = 5, /* a take refused by the per-buyer limit */
    HS_STAT_KINDS = 6
} hs_stat_kind;

/* One SKU's statistics: one cache line, so two SKUs never share one. */
typedef struct hs_sku_stats_slot {
    alignas(HS_CACHE_LINE) _Atomic uint64_t count[HS_STAT_KINDS];
    _Atomic uint64_t last_deduct_us; /* unix us of the latest DEDUCT, 0: none */
    _Atomic uint64_t reset_us;       /* unix us of the last reset, 0: the segment's creation */
} hs_sku_stats_slot;

_Static_assert(sizeof(hs_sku_stats_slot) == HS_CACHE_LINE, "hs_sku_stats_slot must be one line");

/* The sketch: rows, the sampling of client updates (a power of two), the
 * bits of a bucket word.  The fingerprint needs 25 bits (slot index + 1,
 * sku_capacity <= 2^24). */
#define HS_HK_ROWS 2
#define HS_HK_SAMPLE 8
#define HS_HK_COUNT_BITS 39
#define HS_HK_COUNT_MASK ((UINT64_C(1) << HS_HK_COUNT_BITS) - 1)
#define HS_HK_WORD(fp, count) (((uint64_t)(fp) << HS_HK_COUNT_BITS) | (uint64_t)(count))
#define HS_HK_FP(w) ((uint32_t)((w) >> HS_HK_COUNT_BITS))
#define HS_HK_COUNT(w) ((w)&HS_HK_COUNT_MASK)
/* Default hot_k (the daemon setting; its largest, HS_HOT_K_MAX, is in
 * hotstock.h). */
#define HS_HOT_K_DEFAULT 32

/* Buckets per row for a top-k of k: 16 per entry, at least 256. */
static inline uint32_t
hs_sketch_width(uint32_t hot_k)
{
    uint32_t w = 256;

    while (w < 16 * hot_k)
        w <<= 1;
    return w;
}

/* One hot SKU as the daemon ranked it. */
typedef struct hs_hot_entry {
    _Atomic uint32_t sku_index;
    _Atomic uint32_t pad_;
    _Atomic uint64_t count;        /* the sketch's (sampled, aged) estimate it was ranked by */
    _Atomic uint64_t attempts_mps; /* take attempts per 1000 s over the last tick */
    _Atomic uint64_t sold_mps;     /* deductions per 1000 s over the last tick */
} hs_hot_entry;

typedef struct hs_hot_table {
    alignas(HS_CACHE_LINE) _Atomic uint32_t seq; /* seqlock: odd while the daemon writes */
    _Atomic uint32_t count;                      /* entries in rank order, <= hot_k */
    _Atomic uint64_t published_unix_ms;          /* 0: never published */
    _Atomic uint64_t ticks;                      /* publications since creation */
    hs_hot_entry entry[];
} hs_hot_table;

static inline hs_sku_stats_slot *
hs_sku_stats_table(hs_header *h)
{
    return (hs_sku_stats_slot *)((char *)h + h->stats_offset);
}

static inline _Atomic uint64_t *
hs_sketch(hs_header *h)
{
    return (_Atomic uint64_t *)((char *)h + h->sketch_offset);
}

static inline hs_hot_table *
hs_hot(hs_header *h)
{
    return (hs_hot_table *)((char *)h + h->hot_offset);
}

/* The bucket of SKU slot si in a row: two independent halves of a mix. */
static inline uint32_t
hs_sketch_bucket(const hs_header *h, uint32_t si, int row)
{
    uint64_t x = (uint64_t)si * UINT64_C(0x9e3779b97f4a7c15);

    x ^= x >> 29;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 32;
    return (uint32_t)row * h->sketch_width +
           ((uint32_t)(row == 0 ? x : x >> 32) & (h->sketch_width - 1));
}

/* Place the statistics regions at off (for hs_segment_layout): the
 * per-SKU lines, the sketch, the hot table; sets hdr's fields and returns
 * the offset after them. */
static inline uint64_t
hs_stats_layout(const hs_segment_sizes *sizes, hs_header *hdr, uint64_t off)
{
    uint32_t k = sizes->hot_k > HS_HOT_K_MAX ? HS_HOT_K_MAX : sizes->hot_k;

    off = (off + HS_CACHE_LINE - 1) / HS_CACHE_LINE * HS_CACHE_LINE;
    hdr->stats_offset = off;
    off += (uint64_t)sizes->sku_capacity * sizeof(hs_sku_stats_slot);
    hdr->sketch_offset = off;
    hdr->sketch_width = hs_sketch_width(k);
    off += (uint64_t)HS_HK_ROWS * hdr->sketch_width * sizeof(uint64_t);
    hdr->hot_offset = off;
    hdr->hot_k = k;
    off += sizeof(hs_hot_table) + (uint64_t)k * sizeof(hs_hot_entry);
    return (off + HS_CACHE_LINE - 1) / HS_CACHE_LINE * HS_CACHE_LINE;
}

#endif /* HOTSTOCK_SEGMENT_STATS_H */
