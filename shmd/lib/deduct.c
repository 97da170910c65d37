/*-------------------------------------------------------------------------
 *
 * deduct.c
 *      hs_deduct(): claim the order id, take the units, append the DEDUCT.
 *
 * Order of effects: claim (CAS into PENDING), the evicted filter, counter
 * (CAS, acq_rel), record (ring.c), then DEDUCTED (release).  A death between the counter
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
    const uint64_t hash = hs_hash(order_id, order_len);
    order_insert mine;
    hs_header *h;
    hs_sku_slot *s;
    hs_order_slot *o;
    hs_ring_record rec;
    uint32_t si, oi, ver;
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
again:
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    /* The order slot is a cache (and TLB) miss in a large table: start it
     * now so it overlaps the SKU lookup. */
    __builtin_prefetch(&hs_order_table(h)[hs_order_home(h, hash)], 1);

    /* 1. The SKU (lock-free probe). */
    r = sku_lookup(c, h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    s = &hs_sku_table(h)[si];

    /* 1a. Sold out and the order id unknown: answer without claiming an
     * order slot, so a flash sale's sold-out attempts (most of them) do not
     * fill the order index.  The order is looked up AFTER the counter: an
     * id absent now and not in the evicted filter (read after the look-up)
     * was absent at the load, where the answer takes effect (available <
     * qty, order unknown); an evicted id is in the filter before it leaves
     * the index (segment.h, EVICTION).  A known or maybe evicted order id
     * goes the full way (a retry of a done deduction must answer
     * HS_DUPLICATE even when sold out).  Acquire: the look-up's loads stay
     * after this one. */
    if (atomic_load_explicit(&s->available, memory_order_acquire) < qty) {
        r = order_probe(c, h, order_id, order_len, NULL, &oi, &ver, &inserted);
        if (r == HS_NOT_FOUND && !hs_filter_maybe(h, hash))
            return HS_SOLD_OUT;
        if (r != HS_OK && r != HS_NOT_FOUND)
            return r;
    }

    /* 1b. An id the filter names, when the caller has not checked its
     * ledger that far: if the index does not hold it, say so before any
     * claim (a claim would park a FAILED entry until the evictor's next
     * pass; a storm of retries of evicted ids could fill the index).  An
     * id absent here and named by the filter only after our claim is
     * caught by the check after the claim (2a). */
    if (evicted_checked != UINT64_MAX && hs_filter_maybe(h, hash) &&
        atomic_load(&h->evicted_lsn) > evicted_checked) {
        r = order_probe(c, h, order_id, order_len, NULL, &oi, &ver, &inserted);
        if (r == HS_NOT_FOUND) {
            hs_set_error("order %.*s may have been evicted, the caller checked up to LSN %" PRIu64,
                         (int)order_len, order_id, evicted_checked);
            return HS_EVICTED_CHANGED;
        }
        if (r != HS_OK)
            return r;
    }

    /* 2. Claim the order id: absent -> PENDING(me), under its stripe lock. */
    mine = ins;
    mine.sku_index = si;
    r = order_probe(c, h, order_id, order_len, &mine, &oi, &ver, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    if (!inserted) {
        owner_wait ow = {0, 0};

        for (;;) {
            /* seq_cst (an acquire): pairs with the release store of whoever
             * set the state (sku_index, qty and deducted_lsn come with it). */
            uint64_t w = atomic_load(&o->state);
            unsigned state = HS_STATE_OF(w);
            int step;

            if (HS_VER_OF(w) != ver || state == HS_INDEX_EVICTING)
                goto again; /* evicted since we found it: look again */
            if (state == HS_INDEX_DEDUCTED || state == HS_INDEX_REFUNDING) {
                bool same = o->sku_index == si && o->qty == qty;
                int32_t had = o->qty;

                if (!order_still(o, ver))
                    goto again;
                if (!same) {
                    hs_set_error("order %.*s was deducted with another sku or qty (%d)",
                                 (int)order_len, order_id, (int)had);
                    return HS_ORDER_MISMATCH;
                }
                return HS_DUPLICATE;
            }
            if (state == HS_INDEX_REFUNDED)
                return HS_ALREADY_REFUNDED;
            if (state == HS_INDEX_FAILED) {
                /* A retry after a failed attempt.  acq_rel: we own it now
                 * (a CAS from a word of another version fails). */
                if (atomic_compare_exchange_strong_explicit(
                        &o->state, &w, HS_ORDER_NEXT(w, HS_INDEX_PENDING, self_pid()),
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
    }

    /* 2a. Ours now (absent, or FAILED before).  Was it evicted?  seq_cst,
     * after the claim: see segment.h, EVICTION.  A caller that keeps the
     * evicted orders must look there first. */
    if (evicted_checked != UINT64_MAX && hs_filter_maybe(h, hash)) {
        hs_lsn evicted = atomic_load(&h->evicted_lsn);

        if (evicted > evicted_checked) {
            order_fail(o);
            hs_set_error("order %.*s may have been evicted (orders up to LSN %" PRIu64
                         "), the caller checked up to LSN %" PRIu64,
                         (int)order_len, order_id, evicted, evicted_checked);
            return HS_EVICTED_CHANGED;
        }
    }

    /* 2b. The xid before the record: whoever settles this slot after our
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
    /* Release (in order_set): publishes deducted_lsn with DEDUCTED; pairs
     * with the acquire load of retries, refunds and waiters. */
    order_set(o, HS_INDEX_DEDUCTED);
    if (lsn != NULL)
        *lsn = at;
    return HS_OK;
}
