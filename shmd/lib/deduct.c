/*-------------------------------------------------------------------------
 *
 * deduct.c
 *      Taking units for an order: hs_deduct(), hs_reserve() (a hold) and
 *      hs_hold_retake() (a late confirm that takes anew): claim the order
 *      id, take the units, append the DEDUCT or RESERVE.
 *
 * Order of effects: claim (CAS into PENDING), the evicted filter, xid and
 * deadline, the buyer's count (buyer.c), counter (CAS, acq_rel), records
 * (ring.c: the BUYER and the DEDUCT or RESERVE, one group), then DEDUCTED
 * or RESERVED (release).  A death between the counter and the record holds
 * units back (undersell), never sells them twice.
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

typedef enum take_kind {
    TAKE_DEDUCT,  /* hs_deduct_checked */
    TAKE_RESERVE, /* hs_reserve */
    TAKE_RETAKE   /* hs_hold_retake: an EXPIRED or CANCELLED hold takes anew */
} take_kind;

/* Give up our PENDING claim: FAILED, or a retake's slot back as it was
 * (its hold's xid too: a compensation of the hold's transaction still
 * finds it). */
static void
take_undo(hs_order_slot *o, take_kind kind, unsigned prev, uint64_t prev_xid)
{
    if (kind != TAKE_RETAKE) {
        order_fail(o);
        return;
    }
    atomic_store_explicit(&o->xid, prev_xid, memory_order_relaxed);
    order_set(o, prev);
}

/* What a retry finds in a settled slot (read as state w of version ver):
 * the answer, or HS_OK to go on (only for a retake of an ended hold). */
static hs_result
take_settled(hs_order_slot *o, uint32_t ver, take_kind kind, unsigned state, uint32_t si,
             int32_t qty, const char *order_id, size_t order_len, uint64_t *expires_at_ms)
{
    /* Relaxed: published with the state, which the caller acquired. */
    uint64_t deadline = atomic_load_explicit(&o->deadline_ms, memory_order_relaxed);
    bool same = o->sku_index == si && o->qty == qty;
    int32_t had = o->qty;

    if (!order_still(o, ver))
        return HS_NOT_FOUND; /* evicted meanwhile: look again */
    if (expires_at_ms != NULL)
        *expires_at_ms = deadline;
    switch (state) {
    case HS_INDEX_DEDUCTED:
    case HS_INDEX_REFUNDING:
    case HS_INDEX_RESERVED:
        if (!same) {
            hs_set_error("order %.*s was taken with another sku or qty (%d)", (int)order_len,
                         order_id, (int)had);
            return HS_ORDER_MISMATCH;
        }
        if (kind == TAKE_RESERVE && deadline == 0) {
            hs_set_error("order %.*s is a deduction, not a hold", (int)order_len, order_id);
            return HS_ORDER_MISMATCH;
        }
        if (kind == TAKE_DEDUCT && state == HS_INDEX_RESERVED) {
            hs_set_error("order %.*s is a hold: confirm it", (int)order_len, order_id);
            return HS_ORDER_MISMATCH;
        }
        if (kind == TAKE_RETAKE && state == HS_INDEX_RESERVED) {
            hs_set_error("order %.*s is a live hold: confirm it", (int)order_len, order_id);
            return HS_HELD;
        }
        return HS_DUPLICATE;
    case HS_INDEX_REFUNDED:
        return HS_ALREADY_REFUNDED;
    case HS_INDEX_CANCELLED:
    case HS_INDEX_EXPIRED:
        if (kind == TAKE_RETAKE)
            return HS_OK;
        return state == HS_INDEX_CANCELLED ? HS_HOLD_CANCELLED : HS_HOLD_EXPIRED;
    }
    return HS_OK;
}

static hs_result
take_common(hs_client *c, take_kind kind, const char *sku, size_t sku_len, int32_t qty,
            const char *order_id, size_t order_len, const char *buyer, size_t buyer_len,
            uint64_t xid, uint32_t ttl_ms, hs_lsn evicted_checked, hs_lsn *lsn,
            uint64_t *expires_at_ms)
{
    const order_insert ins = {HS_INDEX_PENDING, 0, qty};
    const uint64_t hash = hs_hash(order_id, order_len);
    order_insert mine;
    hs_header *h;
    hs_sku_slot *s;
    hs_order_slot *o;
    hs_ring_record recs[2];
    uint32_t si, oi, ver, nrec;
    uint64_t bref = 0, prev_ref, prev_take;
    unsigned prev = HS_INDEX_FAILED;
    uint64_t prev_xid = 0;
    bool inserted;
    uint64_t now_us, deadline = 0;
    hs_lsn at;
    hs_result r = HS_OK, closed;

    if (lsn != NULL)
        *lsn = 0;
    if (expires_at_ms != NULL)
        *expires_at_ms = 0;
    if (c == NULL || !valid_len(sku, sku_len, HS_SKU_MAX) ||
        !valid_len(order_id, order_len, HS_ORDER_ID_MAX) || qty < 1 || qty > HS_QTY_MAX ||
        (kind == TAKE_RESERVE && (ttl_ms < 1 || ttl_ms > HS_TTL_MAX_MS)) ||
        buyer_len > HS_BUYER_MAX || (buyer == NULL && buyer_len != 0)) {
        hs_set_error("%s: sku and order id must be 1..%d bytes, buyer 0..%d, qty 1..%d, ttl "
                     "1..%" PRIu32 " ms",
                     kind == TAKE_RESERVE ? "hs_reserve" : "hs_deduct", HS_SKU_MAX, HS_BUYER_MAX,
                     HS_QTY_MAX, HS_TTL_MAX_MS);
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

    /* 1'. The sale session: outside its window or paused, nothing new is
     * taken and no slot claimed; an order taken before still gets its
     * answer (a retry), looked up below without a claim. */
    closed = sale_check(s, hs_now_unix_us() / 1000);

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
    if (kind != TAKE_RETAKE && closed == HS_OK &&
        (atomic_load_explicit(&s->available, memory_order_acquire) & ~HS_AVAILABLE_LOCKED) < qty) {
        r = order_probe(c, h, order_id, order_len, NULL, &oi, &ver, &inserted);
        if (r == HS_NOT_FOUND && !hs_filter_maybe(h, hash)) {
            hs_stats_note(h, si, HS_STAT_SOLD_OUT, 1);
            return HS_SOLD_OUT;
        }
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

    /* 2. Claim the order id: absent -> PENDING(me), under its stripe lock.
     * A retake claims only an existing ended hold. */
    mine = ins;
    mine.sku_index = si;
    r = order_probe(c, h, order_id, order_len,
                    kind == TAKE_RETAKE || closed != HS_OK ? NULL : &mine, &oi, &ver, &inserted);
    if (r == HS_NOT_FOUND && closed != HS_OK)
        return closed;
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    if (!inserted) {
        owner_wait ow = {0, 0};

        for (;;) {
            /* seq_cst (an acquire): pairs with the release store of whoever
             * set the state (sku_index, qty, deadline_ms and deducted_lsn
             * come with it). */
            uint64_t w = atomic_load(&o->state);
            unsigned state = HS_STATE_OF(w);

            if (HS_VER_OF(w) != ver || state == HS_INDEX_EVICTING)
                goto again; /* evicted since we found it: look again */
            if (state == HS_INDEX_FAILED && kind != TAKE_RETAKE && closed != HS_OK)
                return closed; /* a retry after a failed attempt: nothing new now */
            if (state == HS_INDEX_FAILED && kind != TAKE_RETAKE) {
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
            if (state == HS_INDEX_FAILED) {
                hs_set_error("order %.*s is not a hold", (int)order_len, order_id);
                return HS_NOT_FOUND;
            }
            if (!order_owned_state(state) || state == HS_INDEX_REFUNDING) {
                r = take_settled(o, ver, kind, state, si, qty, order_id, order_len,
                                 expires_at_ms);
                if (r == HS_NOT_FOUND)
                    goto again;
                if (r != HS_OK)
                    return r;
                if (closed != HS_OK)
                    return closed; /* a retake takes anew: not now */
                /* A retake of an ended hold.  acq_rel: we own it now.  A
                 * waiter that settles us after our death reads our DEDUCT,
                 * or else the CANCEL or EXPIRE we started from, as the
                 * last record (segment.h). */
                prev = state;
                if (atomic_compare_exchange_strong_explicit(
                        &o->state, &w, HS_ORDER_NEXT(w, HS_INDEX_PENDING, self_pid()),
                        memory_order_acq_rel, memory_order_relaxed)) {
                    prev_xid = atomic_load_explicit(&o->xid, memory_order_relaxed);
                    break;
                }
                continue;
            }
            /* PENDING, REFUNDING, or a hold being settled, of a live
             * process: wait; of a dead one: settle it and look again. */
            r = order_wait_owner(c, h, &ow, o, w);
            if (r != HS_OK)
                return r;
        }
    }

    /* 2a. Ours now (absent, or FAILED before).  Was it evicted?  seq_cst,
     * after the claim: see segment.h, EVICTION.  A caller that keeps the
     * evicted orders must look there first. */
    if (kind != TAKE_RETAKE && evicted_checked != UINT64_MAX && hs_filter_maybe(h, hash)) {
        hs_lsn evicted = atomic_load(&h->evicted_lsn);

        if (evicted > evicted_checked) {
            order_fail(o);
            hs_set_error("order %.*s may have been evicted (orders up to LSN %" PRIu64
                         "), the caller checked up to LSN %" PRIu64,
                         (int)order_len, order_id, evicted, evicted_checked);
            return HS_EVICTED_CHANGED;
        }
    }

    /* 2b. The xid and a hold's deadline before the record: whoever settles
     * this slot after our death from `recorded` must read the xid of the
     * record it found, and whether it was a hold (see segment.h).  Relaxed:
     * ordered by the record's publication.  A retake keeps the deadline
     * (it tells a confirmed hold from a deduction). */
    now_us = hs_now_unix_us();
    atomic_store_explicit(&o->xid, xid, memory_order_relaxed);
    if (kind == TAKE_RESERVE) {
        deadline = now_us / 1000 + ttl_ms;
        atomic_store_explicit(&o->deadline_ms, deadline, memory_order_relaxed);
    } else if (kind == TAKE_DEDUCT) {
        atomic_store_explicit(&o->deadline_ms, 0, memory_order_relaxed);
    }

    /* 2c. The buyer's count, under the SKU's per-buyer limit (buyer.c):
     * counted before the counter, like the counter before the record.
     * Its reference goes with the order (written like xid, before the
     * record); a retake counts for its hold's buyer. */
    prev_ref = order_buyer_ref(h, oi);
    prev_take = order_buyer_take_lsn(h, oi);
    if (kind == TAKE_RETAKE)
        bref = prev_ref;
    r = buyer_count(c, h, s, si, kind == TAKE_RETAKE, buyer, buyer_len, qty, &bref);
    if (r != HS_OK) {
        take_undo(o, kind, prev, prev_xid);
        return r;
    }
    order_buyer_set(h, oi, bref, 0);

    /* 3. The counter, only if enough is left (waiting while a basket
     * holds the SKU). */
    switch (counter_take(s, qty)) {
    case 1:
        /* The sale again, now that the units are ours: a pause (or the
         * end of the window) that came while we waited for a slot or a
         * basket's lock stops us too. */
        closed = sale_check(s, hs_now_unix_us() / 1000);
        if (closed != HS_OK) {
            counter_give(s, qty);
            r = closed;
            goto undo_buyer;
        }
        break;
    case 0:
        hs_stats_note(h, si, HS_STAT_SOLD_OUT, 1);
        r = HS_SOLD_OUT;
        goto undo_buyer;
    default:
        hs_set_error("sku %.*s is locked by a basket of a live process that has not let go "
                     "for %d ms",
                     (int)sku_len, sku, HS_OWNER_WAIT_MS);
        r = HS_QUEUE_FULL;
        goto undo_buyer;
    }

    /* 4. The records: the buyer's BUYER (when counted) and the DEDUCT or
     * RESERVE, one group. */
    nrec = bref != 0 && buyer_record(h, si, bref, qty, 0, &recs[0]) ? 1 : 0;
    record_init(&recs[nrec], kind == TAKE_RESERVE ? HS_REC_RESERVE : HS_REC_DEDUCT, si, qty);
    recs[nrec].timestamp_us = now_us;
    recs[nrec].ttl_ms = kind == TAKE_RESERVE ? ttl_ms : 0;
    recs[nrec].order_len = (uint8_t)order_len;
    recs[nrec].order_index = oi;
    recs[nrec].xid = xid;
    memcpy(recs[nrec].order_id, order_id, order_len);
    r = append_group(c, h, recs, nrec + 1, &at);
    if (r != HS_OK) {
        counter_give(s, qty);
        goto undo_buyer;
    }
    if (nrec == 1)
        order_buyer_set(h, oi, bref, at++);

    /* 5. Done: only we move our PENDING slot on while we live. */
    atomic_store_explicit(&o->deducted_lsn, at, memory_order_relaxed);
    /* Release (in order_set): publishes deducted_lsn with the state; pairs
     * with the acquire load of retries, refunds, settlers and waiters. */
    order_set(o, kind == TAKE_RESERVE ? HS_INDEX_RESERVED : HS_INDEX_DEDUCTED);
    if (lsn != NULL)
        *lsn = at;
    if (expires_at_ms != NULL)
        *expires_at_ms = deadline;
    return HS_OK;

undo_buyer:
    if (bref != 0)
        buyer_give(h, bref, qty);
    /* a retake's hold keeps the buyer it had (for the next retake) */
    order_buyer_set(h, oi, prev_ref, prev_take);
    take_undo(o, kind, prev, prev_xid);
    return r;
}

hs_result
hs_deduct(hs_client *c, const char *sku, size_t sku_len, int32_t qty, const char *order_id,
          size_t order_len, uint64_t xid, hs_lsn *lsn)
{
    return take_common(c, TAKE_DEDUCT, sku, sku_len, qty, order_id, order_len, NULL, 0, xid, 0,
                       UINT64_MAX, lsn, NULL);
}

/* See hotstock.h. */
hs_result
hs_deduct_checked(hs_client *c, const char *sku, size_t sku_len, int32_t qty, const char *order_id,
                  size_t order_len, uint64_t xid, hs_lsn evicted_checked, hs_lsn *lsn)
{
    return take_common(c, TAKE_DEDUCT, sku, sku_len, qty, order_id, order_len, NULL, 0, xid, 0,
                       evicted_checked, lsn, NULL);
}

/* See hotstock.h. */
hs_result
hs_deduct_for(hs_client *c, const char *sku, size_t sku_len, int32_t qty, const char *order_id,
              size_t order_len, const char *buyer, size_t buyer_len, uint64_t xid,
              hs_lsn evicted_checked, hs_lsn *lsn)
{
    return take_common(c, TAKE_DEDUCT, sku, sku_len, qty, order_id, order_len, buyer, buyer_len,
                       xid, 0, evicted_checked, lsn, NULL);
}

/* See hotstock.h. */
hs_result
hs_reserve_for(hs_client *c, const char *sku, size_t sku_len, int32_t qty, const char *order_id,
               size_t order_len, const char *buyer, size_t buyer_len, uint64_t xid,
               uint32_t ttl_ms, hs_lsn evicted_checked, hs_lsn *lsn, uint64_t *expires_at_ms)
{
    return take_common(c, TAKE_RESERVE, sku, sku_len, qty, order_id, order_len, buyer, buyer_len,
                       xid, ttl_ms, evicted_checked, lsn, expires_at_ms);
}

/* See hotstock.h. */
hs_result
hs_reserve(hs_client *c, const char *sku, size_t sku_len, int32_t qty, const char *order_id,
           size_t order_len, uint64_t xid, uint32_t ttl_ms, hs_lsn evicted_checked, hs_lsn *lsn,
           uint64_t *expires_at_ms)
{
    return take_common(c, TAKE_RESERVE, sku, sku_len, qty, order_id, order_len, NULL, 0, xid,
                       ttl_ms, evicted_checked, lsn, expires_at_ms);
}

/* See hotstock.h.  The order's own SKU and qty, read from the index. */
hs_result
hs_hold_retake(hs_client *c, const char *order_id, size_t order_len, uint64_t xid,
               hs_lsn evicted_checked, hs_lsn *lsn)
{
    hs_order_info info;
    hs_result r;

    if (lsn != NULL)
        *lsn = 0;
    r = hs_order_lookup(c, order_id, order_len, &info);
    if (r != HS_OK)
        return r;
    if (info.expires_at_ms == 0) {
        hs_set_error("order %.*s never was a hold", (int)order_len, order_id);
        return HS_NOT_HELD;
    }
    return take_common(c, TAKE_RETAKE, info.sku, strlen(info.sku), info.qty, order_id, order_len,
                       NULL, 0, xid, 0, evicted_checked, lsn, NULL);
}
