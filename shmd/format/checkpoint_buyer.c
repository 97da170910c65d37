/*-------------------------------------------------------------------------
 *
 * checkpoint_buyer.c
 *      The shadow's buyers: each buyer's count of a SKU under its
 *      per-buyer limit (hotstock.h, "Per-buyer limits"), folded from the
 *      BUYER records like the counters from the others.
 *
 * What it shares: nothing in memory (an hs_shadow is its folder's alone,
 * checkpoint.c).  A take's BUYER record adds its units; a give-back's
 * subtracts them unless its take came before the SKU's last FORGET (the
 * record's xid is the take's LSN: the count it belonged to was
 * forgotten); a FORGET drops every buyer of its SKU.  A count never goes
 * below zero.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "util.h"

#define SHADOW_BUYERS_MIN 64

static uint64_t
shadow_buyer_hash(const char *sku, size_t sku_len, const char *buyer, size_t buyer_len)
{
    return hs_hash(buyer, buyer_len) ^ (hs_hash(sku, sku_len) * UINT64_C(0x9e3779b97f4a7c15));
}

static hs_shadow_buyer *
shadow_buyer_probe(hs_shadow_buyer *slots, uint32_t capacity, const char *sku, size_t sku_len,
                   const char *buyer, size_t buyer_len)
{
    uint32_t mask = capacity - 1;
    uint32_t i = (uint32_t)shadow_buyer_hash(sku, sku_len, buyer, buyer_len) & mask;

    for (;;) {
        hs_shadow_buyer *e = &slots[i];
        if (e->buyer_len == 0 ||
            (e->buyer_len == buyer_len && e->sku_len == sku_len &&
             memcmp(e->buyer, buyer, buyer_len) == 0 && memcmp(e->sku, sku, sku_len) == 0))
            return e;
        i = (i + 1) & mask;
    }
}

/* Rebuild s's buyer table with `capacity` slots, without the buyers of
 * `drop` (drop_len 0: keep all).  0, or -1 out of memory (s unchanged). */
static int
shadow_buyers_rebuild(hs_shadow *s, uint32_t capacity, const char *drop, size_t drop_len)
{
    hs_shadow_buyer *slots = calloc(capacity, sizeof(*slots));
    uint32_t count = 0;

    if (slots == NULL) {
        hs_set_error("out of memory for %u shadow buyer counts", capacity);
        return -1;
    }
    for (uint32_t i = 0; i < s->buyer_capacity; i++) {
        const hs_shadow_buyer *e = &s->buyers[i];
        if (e->buyer_len == 0 ||
            (drop_len != 0 && e->sku_len == drop_len && memcmp(e->sku, drop, drop_len) == 0))
            continue;
        *shadow_buyer_probe(slots, capacity, e->sku, e->sku_len, e->buyer, e->buyer_len) = *e;
        count++;
    }
    free(s->buyers);
    s->buyers = slots;
    s->buyer_capacity = capacity;
    s->buyer_count = count;
    return 0;
}

/* See checkpoint.h.  A pointer returned stays valid until the next call
 * that creates a buyer or forgets some (the table may move). */
hs_shadow_buyer *
hs_shadow_buyer_get(hs_shadow *s, const char *sku, size_t sku_len, const char *buyer,
                    size_t buyer_len, bool create)
{
    hs_shadow_buyer *e;

    if (sku_len == 0 || sku_len > HS_SKU_MAX || buyer_len == 0 || buyer_len > HS_BUYER_MAX) {
        hs_set_error("shadow buyer count for a SKU of %zu bytes and a buyer of %zu bytes",
                     sku_len, buyer_len);
        return NULL;
    }
    if (s->buyer_capacity != 0) {
        e = shadow_buyer_probe(s->buyers, s->buyer_capacity, sku, sku_len, buyer, buyer_len);
        if (e->buyer_len != 0)
            return e;
    }
    if (!create)
        return NULL;
    if ((uint64_t)(s->buyer_count + 1) * 4 > (uint64_t)s->buyer_capacity * 3) {
        uint32_t cap = s->buyer_capacity ? s->buyer_capacity * 2 : SHADOW_BUYERS_MIN;
        if (cap == 0 || cap > (UINT32_C(1) << 30)) {
            hs_set_error("shadow buyer counts cannot grow past %u", s->buyer_capacity);
            return NULL;
        }
        if (shadow_buyers_rebuild(s, cap, NULL, 0) != 0)
            return NULL;
    }
    e = shadow_buyer_probe(s->buyers, s->buyer_capacity, sku, sku_len, buyer, buyer_len);
    memset(e, 0, sizeof(*e));
    memcpy(e->sku, sku, sku_len);
    e->sku_len = (uint8_t)sku_len;
    memcpy(e->buyer, buyer, buyer_len);
    e->buyer_len = (uint8_t)buyer_len;
    s->buyer_count++;
    return e;
}

/* See checkpoint.h.  e: the record's SKU in s.  0, or -1 (out of memory,
 * or a count past what a BUYER record can make). */
int
hs_shadow_buyer_fold(hs_shadow *s, hs_shadow_sku *e, const hs_record *rec)
{
    hs_shadow_buyer *b;

    if (rec->order_len == 0) { /* FORGET */
        e->buyers_since = rec->lsn;
        if (s->buyer_count == 0)
            return 0;
        return shadow_buyers_rebuild(s, s->buyer_capacity, rec->sku, rec->sku_len);
    }
    if (rec->qty < 0 && (rec->xid == 0 || rec->xid <= e->buyers_since))
        return 0; /* its take's count was forgotten (or is unknown): keep */
    b = hs_shadow_buyer_get(s, rec->sku, rec->sku_len, rec->order_id, rec->order_len,
                            rec->qty > 0);
    if (b == NULL)
        return rec->qty > 0 ? -1 : 0;
    b->units += rec->qty;
    if (b->units < 0)
        b->units = 0;
    if (b->units > INT32_MAX) {
        hs_set_error("shadow fold of LSN %" PRIu64 ": buyer %.*s of SKU %.*s counts %" PRId64
                     " units",
                     rec->lsn, (int)rec->order_len, rec->order_id, (int)rec->sku_len, rec->sku,
                     b->units);
        return -1;
    }
    return 0;
}

/* See checkpoint.h. */
int
hs_shadow_copy(const hs_shadow *s, hs_shadow *copy)
{
    *copy = *s;
    copy->buyers = NULL;
    copy->slots = malloc((size_t)s->capacity * sizeof(hs_shadow_sku));
    if (copy->slots == NULL)
        return -1;
    memcpy(copy->slots, s->slots, (size_t)s->capacity * sizeof(hs_shadow_sku));
    if (s->buyer_capacity != 0) {
        copy->buyers = malloc((size_t)s->buyer_capacity * sizeof(hs_shadow_buyer));
        if (copy->buyers == NULL) {
            free(copy->slots);
            copy->slots = NULL;
            return -1;
        }
        memcpy(copy->buyers, s->buyers, (size_t)s->buyer_capacity * sizeof(hs_shadow_buyer));
    }
    return 0;
}
