/*-------------------------------------------------------------------------
 *
 * deduct.c
 *      hs_deduct(): claim the order id, take the units, append the DEDUCT.
 *
 * Order of effects: claim (CAS into PENDING), counter (CAS, acq_rel),
 * record (ring.c), then DEDUCTED (release).  A death between the counter
 * and the record holds units back (undersell), never sells them twice.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"

/*-------------------------------------------------------------------------
 * Deduct
 *-------------------------------------------------------------------------
 */

hs_result
hs_deduct(hs_client *c, const char *sku, size_t sku_len, int32_t qty, const char *order_id,
          size_t order_len, uint64_t xid, hs_lsn *lsn)
{
    return hs_deduct_checked(c, sku, sku_len, qty, order_id, order_len, xid, UINT64_MAX, lsn);
}

/* See hotstock.h. */
hs_result
hs_deduct_checked(hs_client *c, const char *sku, size_t sku_len, int32_t qty, const char *order_id,
                  size_t order_len, uint64_t xid, hs_lsn evicted_checked, hs_lsn *lsn)
{
    const order_insert ins = {HS_INDEX_PENDING, 0, qty};
    order_insert mine;
    hs_header *h;
    hs_sku_slot *s;
    hs_order_slot *o;
    hs_ring_record rec;
    uint32_t si, oi;
    owner_wait ow = {0, 0};
    bool inserted;
    hs_lsn at;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (c == NULL || !valid_len(sku, sku_len, HS_SKU_MAX) ||
        !valid_len(order_id, order_len, HS_ORDER_ID_MAX) || qty < 1 || qty > HS_QTY_MAX) {
        hs_set_error("hs_deduct: sku and order id must be 1..%d bytes, qty 1..%d", HS_SKU_MAX,
                     HS_QTY_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    /* Plain load: evicted_lsn is written while the segment is built and
     * published by the release store of READY, which client_segment()
     * acquired.  It never changes in a live segment, so this check holds
     * for the claim below, which happens in this same segment. */
    if (h->evicted_lsn > evicted_checked) {
        hs_set_error("orders up to LSN %" PRIu64
                     " were evicted, the caller checked up to LSN %" PRIu64,
                     h->evicted_lsn, evicted_checked);
        return HS_EVICTED_CHANGED;
    }
    /* The order slot is a cache (and TLB) miss in a large table: start it
     * now so it overlaps the SKU lookup. */
    __builtin_prefetch(&hs_order_table(h)[hs_hash(order_id, order_len) & (h->order_capacity - 1)],
                       1);

    /* 1. The SKU (lock-free probe). */
    r = sku_lookup(c, h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    s = &hs_sku_table(h)[si];

    /* 1a. Sold out and the order id unknown: answer without claiming an
     * order slot, so a flash sale's sold-out attempts (most of them) do not
     * fill the order index.  The order is looked up AFTER the counter:
     * entries never leave the index while the segment lives, so absent now
     * means absent at the load, where the answer takes effect (available <
     * qty, order unknown).  A known order id goes the full way (a retry of
     * a done deduction must answer HS_DUPLICATE even when sold out).
     * Acquire: the lookup's loads stay after this one. */
    if (atomic_load_explicit(&s->available, memory_order_acquire) < qty) {
        r = order_probe(c, h, order_id, order_len, NULL, &oi, &inserted);
        if (r == HS_NOT_FOUND)
            return HS_SOLD_OUT;
        if (r != HS_OK)
            return r;
    }

    /* 2. Claim the order id: absent -> PENDING(me). */
    mine = ins;
    mine.sku_index = si;
    r = order_probe(c, h, order_id, order_len, &mine, &oi, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    while (!inserted) {
        /* Acquire: pairs with the release store of whoever set the state
         * (the key, sku_index, qty and deducted_lsn come with it). */
        uint64_t w = atomic_load_explicit(&o->state, memory_order_acquire);
        unsigned state = HS_STATE_OF(w);
        int step;

        if (state == HS_INDEX_DEDUCTED || state == HS_INDEX_REFUNDING) {
            if (o->sku_index != si || o->qty != qty) {
                hs_set_error("order %.*s was deducted with another sku or qty (%d)", (int)order_len,
                             order_id, (int)o->qty);
                return HS_ORDER_MISMATCH;
            }
            return HS_DUPLICATE;
        }
        if (state == HS_INDEX_REFUNDED)
            return HS_ALREADY_REFUNDED;
        if (state == HS_INDEX_FAILED) {
            /* A retry after a failed attempt.  acq_rel: we own it now. */
            if (atomic_compare_exchange_strong_explicit(
                    &o->state, &w, HS_STATE_WORD(HS_INDEX_PENDING, self_pid()),
                    memory_order_acq_rel, memory_order_relaxed)) {
                o->sku_index = si;
                o->qty = qty;
                break;
            }
            continue;
        }
        /* PENDING or REFUNDING of a live process: wait; of a dead one:
         * settle it and look again. */
        step = owner_wait_step(c, h, &ow, w, &r);
        if (step < 0)
            return r;
        if (step > 0) {
            r = order_resolve_dead(c, h, o, w);
            if (r != HS_OK)
                return r;
        }
    }

    /* 2a. The xid before the record: whoever settles this slot after our
     * death from `recorded` must read the xid of the record it found (see
     * segment.h).  Relaxed: ordered by the record's publication. */
    atomic_store_explicit(&o->xid, xid, memory_order_relaxed);

    /* 3. The counter, only if enough is left. */
    if (!counter_take(s, qty)) {
        order_fail(o);
        return HS_SOLD_OUT;
    }

    /* 4. The record. */
    record_init(&rec, HS_REC_DEDUCT, si, qty);
    rec.order_len = (uint8_t)order_len;
    rec.order_index = oi;
    rec.xid = xid;
    memcpy(rec.order_id, order_id, order_len);
    r = append_record(c, h, &rec, &at);
    if (r != HS_OK) {
        counter_give(s, qty);
        order_fail(o);
        return r;
    }

    /* 5. Done: only we move our PENDING slot on while we live. */
    atomic_store_explicit(&o->deducted_lsn, at, memory_order_relaxed);
    /* Release: publishes deducted_lsn with DEDUCTED; pairs with the
     * acquire load of retries, refunds and waiters. */
    atomic_store_explicit(&o->state, HS_STATE_WORD(HS_INDEX_DEDUCTED, 0), memory_order_release);
    if (lsn != NULL)
        *lsn = at;
    return HS_OK;
}
