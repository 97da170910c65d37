/*-------------------------------------------------------------------------
 *
 * refund.c
 *      Refunds: immediate, two-phase (claim, commit, release), evicted, and
 *      compensations of deductions whose transaction did not commit.
 *
 * An order moves DEDUCTED -> REFUNDING(pid) -> REFUNDED by CAS only; the
 * REFUND record is published before the counter is raised (release), so
 * the queue never shows units sold before they were given back.
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
 * Refund
 *-------------------------------------------------------------------------
 */

/* Copy the name of SKU slot si into out (HS_SKU_MAX + 1 bytes), or "". */
void
copy_sku_name(hs_header *h, uint32_t si, char *out)
{
    hs_sku_slot *s;

    if (out == NULL)
        return;
    out[0] = '\0';
    if (si >= h->sku_capacity)
        return;
    s = &hs_sku_table(h)[si];
    /* Acquire: pairs with the release store of READY. */
    if (HS_STATE_OF(atomic_load_explicit(&s->state, memory_order_acquire)) != HS_SKU_READY)
        return;
    memcpy(out, s->sku, s->sku_len);
    out[s->sku_len] = '\0';
}

/*
 * We own o as REFUNDING (type REFUND), or as CANCELLING / EXPIRING (type
 * CANCEL / EXPIRE): append the record, raise the counter, and make it
 * REFUNDED (CANCELLED, EXPIRED).  On failure before the record is
 * published the claim is released (DEDUCTED, RESERVED, or FAILED for an
 * hs_refund_evicted entry).
 */
hs_result
refund_apply(hs_client *c, hs_header *h, uint32_t oi, hs_record_type type, uint16_t flags,
             hs_lsn *lsn, int32_t *qty, char *sku_out)
{
    hs_order_slot *o = &hs_order_table(h)[oi];
    uint32_t si = o->sku_index;
    int32_t q = o->qty;
    /* written by the order's taker before its record, published with the
     * state the caller acquired */
    uint64_t bref = order_buyer_ref(h, oi);
    hs_ring_record recs[2];
    uint32_t nrec;
    hs_lsn at;
    hs_result r;

    const unsigned final = type == HS_REC_REFUND   ? HS_INDEX_REFUNDED
                           : type == HS_REC_CANCEL ? HS_INDEX_CANCELLED
                                                   : HS_INDEX_EXPIRED;

    if (si >= h->sku_capacity || q < 1) {
        order_unclaim(o);
        hs_set_error("order slot %u of %s is damaged (sku slot %u, qty %d)", oi, c->dir, si,
                     (int)q);
        return HS_IO_ERROR;
    }
    /* The buyer's BUYER record first (buyer.c), in one group with ours:
     * a CONFIRM's refund gives back the units its RESERVE counted. */
    nrec = bref != 0 && buyer_record(h, si, bref, -q,
                                     order_buyer_take_lsn(h, oi),
                                     &recs[0])
               ? 1
               : 0;
    record_init(&recs[nrec], type, si, q);
    recs[nrec].flags = flags;
    recs[nrec].order_len = o->order_len;
    recs[nrec].order_index = oi;
    memcpy(recs[nrec].order_id, o->order_id, o->order_len);
    r = append_group(c, h, recs, nrec + 1, &at);
    if (r != HS_OK) {
        order_unclaim(o);
        return r;
    }
    at += nrec;
    /* The records are published: now the units may be sold again, and
     * the buyer may take them again. */
    counter_give(&hs_sku_table(h)[si], q);
    if (nrec == 1)
        buyer_give(h, bref, q);
    /* A hold's CANCEL or EXPIRE settles its state: deducted_lsn names it
     * (segment.h), published with the state below. */
    if (type != HS_REC_REFUND)
        atomic_store_explicit(&o->deducted_lsn, at, memory_order_relaxed);
    /* Release (in order_set): pairs with the acquire load of waiters and
     * retries. */
    order_set(o, final);
    if (lsn != NULL)
        *lsn = at;
    if (qty != NULL)
        *qty = q;
    copy_sku_name(h, si, sku_out);
    return HS_OK;
}

typedef enum refund_mode {
    REFUND_NOW,    /* hs_refund: claim and apply */
    REFUND_CLAIM,  /* hs_refund_claim: claim only */
    REFUND_COMMIT, /* hs_refund_commit: apply our claim (or claim and apply) */
    REFUND_COMPENSATE, /* hs_compensate: claim and apply, only if deducted by xid */
} refund_mode;

static hs_result
refund_common(hs_client *c, const char *order_id, size_t order_len, refund_mode mode, uint64_t xid,
              hs_lsn *lsn, int32_t *qty, char *sku_out)
{
    hs_header *h;
    hs_order_slot *o;
    uint32_t oi, ver;
    owner_wait ow = {0, 0};
    bool inserted;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (qty != NULL)
        *qty = 0;
    if (sku_out != NULL)
        sku_out[0] = '\0';
    if (c == NULL || !valid_len(order_id, order_len, HS_ORDER_ID_MAX)) {
        hs_set_error("refund: order id must be 1..%d bytes", HS_ORDER_ID_MAX);
        return HS_BAD_ARGUMENT;
    }
again:
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = order_probe(c, h, order_id, order_len, NULL, &oi, &ver, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    for (;;) {
        /* seq_cst (an acquire): pairs with the release store of the last
         * state change. */
        uint64_t w = atomic_load(&o->state);
        unsigned state = HS_STATE_OF(w);
        pid_t owner = HS_PID_OF(w);

        if (HS_VER_OF(w) != ver || state == HS_INDEX_EVICTING)
            goto again; /* evicted since we found it: look again */
        if (state == HS_INDEX_DEDUCTED) {
            /* Relaxed: published with DEDUCTED, which the load above
             * acquired; it never changes while the order is DEDUCTED. */
            if (mode == REFUND_COMPENSATE &&
                atomic_load_explicit(&o->xid, memory_order_relaxed) != xid) {
                if (!order_still(o, ver))
                    goto again; /* evicted and reused while we read the xid */
                hs_set_error("order %.*s was deducted by another transaction than %" PRIu64,
                             (int)order_len, order_id, xid);
                return HS_ORDER_MISMATCH;
            }
            /* acq_rel: the claim; its acquire half makes deducted_lsn,
             * sku_index and qty ours to read. */
            if (!atomic_compare_exchange_strong_explicit(
                    &o->state, &w, HS_ORDER_NEXT(w, HS_INDEX_REFUNDING, self_pid()),
                    memory_order_acq_rel, memory_order_relaxed))
                continue;
            if (mode == REFUND_CLAIM)
                return HS_OK;
            return refund_apply(c, h, oi, HS_REC_REFUND,
                                mode == REFUND_COMPENSATE ? HS_REC_FLAG_COMPENSATION : 0, lsn, qty,
                                sku_out);
        }
        if (state == HS_INDEX_RESERVED) {
            if (mode == REFUND_COMPENSATE) {
                /* A hold whose transaction did not commit: cancel it. */
                if (atomic_load_explicit(&o->xid, memory_order_relaxed) != xid) {
                    if (!order_still(o, ver))
                        goto again;
                    hs_set_error("order %.*s was reserved by another transaction than %" PRIu64,
                                 (int)order_len, order_id, xid);
                    return HS_ORDER_MISMATCH;
                }
                if (!atomic_compare_exchange_strong_explicit(
                        &o->state, &w, HS_ORDER_NEXT(w, HS_INDEX_CANCELLING, self_pid()),
                        memory_order_acq_rel, memory_order_relaxed))
                    continue;
                return refund_apply(c, h, oi, HS_REC_CANCEL, HS_REC_FLAG_COMPENSATION, lsn, qty,
                                    sku_out);
            }
            hs_set_error("order %.*s is a hold: confirm or cancel it", (int)order_len, order_id);
            return HS_HELD;
        }
        if (state == HS_INDEX_REFUNDED || state == HS_INDEX_CANCELLED ||
            state == HS_INDEX_EXPIRED)
            return HS_ALREADY_REFUNDED;
        if (state == HS_INDEX_FAILED) {
            hs_set_error("order %.*s has no deduction to refund", (int)order_len, order_id);
            return HS_NOT_FOUND;
        }
        if (mode == REFUND_COMPENSATE && order_owned_state(state) &&
            state != HS_INDEX_REFUNDING && owner != self_pid() && !hs_pid_gone(owner)) {
            /* a live confirm, cancel or expiry holds it: look again later */
            hs_set_error("order %.*s is being settled by process %d", (int)order_len, order_id,
                         (int)owner);
            return HS_QUEUE_FULL;
        }
        if (mode == REFUND_COMPENSATE && state == HS_INDEX_REFUNDING && owner != self_pid() &&
            !hs_pid_gone(owner)) {
            /* a live refund holds it: its outcome settles it either way;
             * the caller (the drain) looks again later, it does not wait */
            hs_set_error("order %.*s is being refunded by process %d", (int)order_len, order_id,
                         (int)owner);
            return HS_QUEUE_FULL;
        }
        if (state == HS_INDEX_REFUNDING && owner == self_pid()) {
            if (mode == REFUND_COMMIT)
                return refund_apply(c, h, oi, HS_REC_REFUND, 0, lsn, qty, sku_out);
            if (mode == REFUND_CLAIM)
                return HS_ALREADY_REFUNDED; /* claimed by this process already */
        }
        r = order_wait_owner(c, h, &ow, o, w);
        if (r != HS_OK)
            return r;
    }
}

hs_result
hs_refund(hs_client *c, const char *order_id, size_t order_len, hs_lsn *lsn, int32_t *qty,
          char *sku_out)
{
    return refund_common(c, order_id, order_len, REFUND_NOW, 0, lsn, qty, sku_out);
}

hs_result
hs_refund_claim(hs_client *c, const char *order_id, size_t order_len)
{
    return refund_common(c, order_id, order_len, REFUND_CLAIM, 0, NULL, NULL, NULL);
}

/* Applies this process's claim; a claim lost with a restarted daemon (the
 * order is DEDUCTED again in the new segment) is claimed anew. */
hs_result
hs_refund_commit(hs_client *c, const char *order_id, size_t order_len, hs_lsn *lsn, int32_t *qty,
                 char *sku_out)
{
    return refund_common(c, order_id, order_len, REFUND_COMMIT, 0, lsn, qty, sku_out);
}

/* See hotstock.h. */
hs_result
hs_compensate(hs_client *c, const char *order_id, size_t order_len, uint64_t xid, hs_lsn *lsn,
              int32_t *qty, char *sku_out)
{
    return refund_common(c, order_id, order_len, REFUND_COMPENSATE, xid, lsn, qty, sku_out);
}

/* Releases this process's claim.  HS_OK also when there is no claim of
 * this process to release (released already, lost with a restart);
 * HS_ALREADY_REFUNDED, HS_NOT_FOUND as for hs_refund(). */
hs_result
hs_refund_release(hs_client *c, const char *order_id, size_t order_len)
{
    hs_header *h;
    hs_order_slot *o;
    uint32_t oi, ver;
    bool inserted;
    hs_result r = HS_OK;
    uint64_t w;

    if (c == NULL || !valid_len(order_id, order_len, HS_ORDER_ID_MAX)) {
        hs_set_error("hs_refund_release: order id must be 1..%d bytes", HS_ORDER_ID_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = order_probe(c, h, order_id, order_len, NULL, &oi, &ver, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    /* Acquire: pairs with the release store of the last state change.  An
     * entry of another version is not ours (an owned one is never evicted). */
    w = atomic_load_explicit(&o->state, memory_order_acquire);
    if (HS_VER_OF(w) != ver)
        return HS_OK;
    if (HS_STATE_OF(w) == HS_INDEX_REFUNDED)
        return HS_ALREADY_REFUNDED;
    if (HS_STATE_OF(w) == HS_INDEX_REFUNDING && HS_PID_OF(w) == self_pid())
        order_unclaim(o);
    return HS_OK;
}

hs_result
hs_refund_evicted(hs_client *c, const char *sku, size_t sku_len, int32_t qty, const char *order_id,
                  size_t order_len, hs_lsn evicted_checked, hs_lsn *lsn)
{
    order_insert ins = {HS_INDEX_REFUNDING, 0, qty};
    hs_header *h;
    hs_order_slot *o;
    uint32_t si, oi, ver;
    owner_wait ow = {0, 0};
    bool inserted;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (c == NULL || !valid_len(sku, sku_len, HS_SKU_MAX) ||
        !valid_len(order_id, order_len, HS_ORDER_ID_MAX) || qty < 1 || qty > HS_QTY_MAX) {
        hs_set_error("hs_refund_evicted: sku and order id must be 1..%d bytes, qty 1..%d",
                     HS_SKU_MAX, HS_QTY_MAX);
        return HS_BAD_ARGUMENT;
    }
again:
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = sku_lookup(c, h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    ins.sku_index = si;
    r = order_probe(c, h, order_id, order_len, &ins, &oi, &ver, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    while (!inserted) {
        /* seq_cst (an acquire): pairs with the release store of the last
         * state change. */
        uint64_t w = atomic_load(&o->state);
        unsigned state = HS_STATE_OF(w);

        if (HS_VER_OF(w) != ver || state == HS_INDEX_EVICTING)
            goto again; /* evicted since we found it: look again */
        if (state == HS_INDEX_REFUNDED)
            return HS_ALREADY_REFUNDED;
        if (state == HS_INDEX_DEDUCTED) {
            hs_set_error("order %.*s is deducted in the index: use hs_refund()", (int)order_len,
                         order_id);
            return HS_DUPLICATE;
        }
        if (state == HS_INDEX_FAILED) {
            /* acq_rel: we own it now.  Through PENDING first: a deduct
             * retry reads sku_index and qty of a REFUNDING slot, so they
             * are written before REFUNDING is released. */
            if (atomic_compare_exchange_strong_explicit(
                    &o->state, &w, HS_ORDER_NEXT(w, HS_INDEX_PENDING, self_pid()),
                    memory_order_acq_rel, memory_order_relaxed)) {
                o->sku_index = si;
                o->qty = qty;
                o->buyer_counted = 0; /* a FAILED take counted nothing that stays */
                atomic_store_explicit(&o->deducted_lsn, 0, memory_order_relaxed);
                atomic_store_explicit(&o->xid, 0, memory_order_relaxed);
                /* Release: publishes the fields with the state. */
                atomic_store_explicit(&o->state, HS_ORDER_NEXT(w, HS_INDEX_REFUNDING, self_pid()),
                                      memory_order_release);
                break;
            }
            continue;
        }
        r = order_wait_owner(c, h, &ow, o, w);
        if (r != HS_OK)
            return r;
    }
    /* Ours now (absent, or FAILED before): was it evicted again since the
     * caller looked?  seq_cst, after the claim, as in hs_deduct_checked(). */
    if (hs_filter_maybe(h, hs_hash(order_id, order_len)) &&
        atomic_load(&h->evicted_lsn) > evicted_checked) {
        order_unclaim(o);
        hs_set_error("order %.*s may have been refunded and evicted again since the caller "
                     "checked (evicted LSN %" PRIu64 " > %" PRIu64 ")",
                     (int)order_len, order_id, atomic_load(&h->evicted_lsn), evicted_checked);
        return HS_EVICTED_CHANGED;
    }
    return refund_apply(c, h, oi, HS_REC_REFUND, 0, lsn, NULL, NULL);
}
