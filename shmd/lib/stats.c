/*-------------------------------------------------------------------------
 *
 * stats.c
 *      Reading and resetting per-SKU statistics, and reading the hot-SKU
 *      table: hs_sku_stats_next, hs_sku_stats_reset, hs_hot_skus.
 *
 * What it shares: the statistics regions of the segment (segment_stats.h
 * gives the protocol; stats_count.c counts): per-SKU lines (relaxed
 * loads; a reset stores zeros, then its time with release), and the
 * daemon's hot table, read under its seqlock.  Snapshots for people and
 * tools, never a decision.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

/* See hotstock.h. */
hs_result
hs_sku_stats_next(hs_client *c, uint32_t *cursor, hs_sku_stats *out)
{
    hs_header *h;
    hs_result r = HS_OK;

    if (c == NULL || cursor == NULL || out == NULL) {
        hs_set_error("hs_sku_stats_next: no client, cursor or output");
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    for (uint32_t si = *cursor; si < h->sku_capacity; si++) {
        hs_sku_stats_slot *st = &hs_sku_stats_table(h)[si];
        uint64_t reset;

        copy_sku_name(h, si, out->sku); /* "" unless READY (acquire) */
        if (out->sku[0] == '\0')
            continue;
        /* Relaxed: statistics; the reset time with acquire, so counts
         * zeroed before it are not read from before the reset. */
        reset = atomic_load_explicit(&st->reset_us, memory_order_acquire);
        out->deducts = atomic_load_explicit(&st->count[HS_STAT_DEDUCT], memory_order_relaxed);
        out->sold_out_attempts =
            atomic_load_explicit(&st->count[HS_STAT_SOLD_OUT], memory_order_relaxed);
        out->refunds = atomic_load_explicit(&st->count[HS_STAT_REFUND], memory_order_relaxed);
        out->reserves = atomic_load_explicit(&st->count[HS_STAT_RESERVE], memory_order_relaxed);
        out->expiries = atomic_load_explicit(&st->count[HS_STAT_EXPIRY], memory_order_relaxed);
        out->limit_refusals =
            atomic_load_explicit(&st->count[HS_STAT_LIMIT_REFUSAL], memory_order_relaxed);
        out->last_deduct_unix_us = atomic_load_explicit(&st->last_deduct_us, memory_order_relaxed);
        out->reset_unix_us = reset != 0 ? reset : h->created_unix_ms * 1000;
        *cursor = si + 1;
        return HS_OK;
    }
    *cursor = h->sku_capacity;
    return HS_NOT_FOUND;
}

/* Zero one SKU's line and stamp it (see segment_stats.h). */
static void
stats_reset_one(hs_sku_stats_slot *st, uint64_t now_us)
{
    for (int k = 0; k < HS_STAT_KINDS; k++)
        atomic_store_explicit(&st->count[k], 0, memory_order_relaxed);
    atomic_store_explicit(&st->last_deduct_us, 0, memory_order_relaxed);
    /* Release: pairs with the reader's acquire of reset_us. */
    atomic_store_explicit(&st->reset_us, now_us, memory_order_release);
}

/* See hotstock.h. */
hs_result
hs_sku_stats_reset(hs_client *c, const char *sku, size_t sku_len, uint64_t *reset)
{
    const uint64_t now_us = hs_now_unix_us();
    hs_header *h;
    hs_result r = HS_OK;
    uint64_t n = 0;
    uint32_t si;

    if (reset != NULL)
        *reset = 0;
    if (c == NULL || (sku != NULL && !valid_len(sku, sku_len, HS_SKU_MAX))) {
        hs_set_error("hs_sku_stats_reset: sku must be 1..%d bytes", HS_SKU_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    if (sku != NULL) {
        r = sku_lookup(c, h, sku, sku_len, false, &si);
        if (r != HS_OK)
            return r;
        stats_reset_one(&hs_sku_stats_table(h)[si], now_us);
        n = 1;
    } else {
        for (si = 0; si < h->sku_capacity; si++) {
            uint64_t w = atomic_load_explicit(&hs_sku_table(h)[si].state, memory_order_acquire);

            if (HS_STATE_OF(w) != HS_SKU_READY)
                continue;
            stats_reset_one(&hs_sku_stats_table(h)[si], now_us);
            n++;
        }
    }
    if (reset != NULL)
        *reset = n;
    return HS_OK;
}

/* See hotstock.h.  Copies the table under its seqlock (segment_stats.h),
 * then names the SKUs. */
hs_result
hs_hot_skus(hs_client *c, hs_hot_sku *out, uint32_t max, uint32_t *n, uint64_t *published_unix_ms)
{
    hs_header *h;
    hs_hot_table *t;
    hs_result r = HS_OK;
    uint32_t got = 0, idx[HS_HOT_K_MAX];
    uint64_t published = 0;

    if (n != NULL)
        *n = 0;
    if (published_unix_ms != NULL)
        *published_unix_ms = 0;
    if (c == NULL || n == NULL || (out == NULL && max > 0)) {
        hs_set_error("hs_hot_skus: no client or no output");
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    if (h->hot_k == 0)
        return HS_OK;
    t = hs_hot(h);
    for (int tries = 0;; tries++) {
        uint32_t seq = atomic_load_explicit(&t->seq, memory_order_acquire);

        if ((seq & 1) == 0) {
            got = atomic_load_explicit(&t->count, memory_order_relaxed);
            if (got > h->hot_k)
                got = h->hot_k;
            if (got > max)
                got = max;
            published = atomic_load_explicit(&t->published_unix_ms, memory_order_relaxed);
            for (uint32_t i = 0; i < got; i++) {
                hs_hot_entry *e = &t->entry[i];

                idx[i] = atomic_load_explicit(&e->sku_index, memory_order_relaxed);
                out[i].rank = i + 1;
                out[i].sketch_count = atomic_load_explicit(&e->count, memory_order_relaxed);
                out[i].attempts_per_s =
                    (double)atomic_load_explicit(&e->attempts_mps, memory_order_relaxed) / 1000.0;
                out[i].sold_per_s =
                    (double)atomic_load_explicit(&e->sold_mps, memory_order_relaxed) / 1000.0;
            }
            /* the loads above stay before the second read of seq */
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&t->seq, memory_order_relaxed) == seq)
                break;
        }
        if (tries > 1000) {
            hs_set_error("hs_hot_skus: the hot table keeps changing");
            return HS_QUEUE_FULL;
        }
        sched_yield();
    }
    for (uint32_t i = 0; i < got; i++)
        copy_sku_name(h, idx[i], out[i].sku);
    *n = got;
    if (published_unix_ms != NULL)
        *published_unix_ms = published;
    return HS_OK;
}
