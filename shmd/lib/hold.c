/*-------------------------------------------------------------------------
 *
 * hold.c
 *      Settling holds: confirm and cancel (now, or claimed and committed
 *      later), and the daemon's expiry.  Taking a hold is in deduct.c.
 *
 * What it shares: order slots (segment.h).  A RESERVED slot is settled by
 * exactly one CAS out of RESERVED, into CONFIRMING, CANCELLING or EXPIRING
 * (acq_rel), owned by the caller's pid; the owner then appends the record
 * (CONFIRM, CANCEL or EXPIRE), raises the counter for the last two (after
 * the record: ring.c's rule for increments), stores deducted_lsn and the
 * final state (release).  A claim is released by storing RESERVED again.
 * So a confirm and an expiry never both win, and the units of a hold go
 * back at most once.
 *
 * The deadline: deadline_ms is written before the RESERVE and published
 * with RESERVED; it never changes.  A confirm reads CLOCK_REALTIME before
 * its CAS and claims only when the clock is still before the deadline;
 * expiry CASes only when its clock read is at or past it.  A confirm whose
 * clock read is late therefore never wins over units it might not have (it
 * expires the hold itself and says so), and one that read the clock in
 * time wins its CAS or finds the hold settled.  Both sides read the same
 * host clock; a clock stepped backwards only delays expiry.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

typedef enum hold_mode {
    HOLD_NOW,    /* hs_hold_settle: claim and apply */
    HOLD_CLAIM,  /* hs_hold_claim: claim only */
    HOLD_COMMIT, /* hs_hold_commit: apply our claim (or claim and apply) */
} hold_mode;

static unsigned
claimed_state(hs_hold_action action)
{
    return action == HS_HOLD_CONFIRM ? HS_INDEX_CONFIRMING : HS_INDEX_CANCELLING;
}

/* We own o as CONFIRMING: append the CONFIRM (with xid), make it DEDUCTED.
 * On failure before the record is published the claim is released. */
static hs_result
confirm_apply(hs_client *c, hs_header *h, uint32_t oi, uint64_t xid, hs_lsn *lsn)
{
    hs_order_slot *o = &hs_order_table(h)[oi];
    uint32_t si = o->sku_index;
    int32_t q = o->qty;
    /* Relaxed: ours while we own the slot. */
    uint64_t had_xid = atomic_load_explicit(&o->xid, memory_order_relaxed);
    hs_ring_record rec;
    hs_lsn at;
    hs_result r;

    if (si >= h->sku_capacity || q < 1) {
        order_unclaim(o);
        hs_set_error("order slot %u of %s is damaged (sku slot %u, qty %d)", oi, c->dir, si,
                     (int)q);
        return HS_IO_ERROR;
    }
    /* The xid before the record, as a deduction's (see deduct.c, 2b): a
     * CONFIRM whose transaction does not commit is compensated by xid (a
     * REFUND).  Its own xid, also 0: the sale is the confirm's, and a
     * compensation of the reserve's transaction must not undo it. */
    atomic_store_explicit(&o->xid, xid, memory_order_relaxed);
    record_init(&rec, HS_REC_CONFIRM, si, q);
    rec.order_len = o->order_len;
    rec.order_index = oi;
    rec.xid = xid;
    memcpy(rec.order_id, o->order_id, o->order_len);
    r = append_record(c, h, &rec, &at);
    if (r != HS_OK) {
        atomic_store_explicit(&o->xid, had_xid, memory_order_relaxed);
        order_unclaim(o);
        return r;
    }
    atomic_store_explicit(&o->deducted_lsn, at, memory_order_relaxed);
    /* Release (in order_set): publishes deducted_lsn and xid with DEDUCTED. */
    order_set(o, HS_INDEX_DEDUCTED);
    if (lsn != NULL)
        *lsn = at;
    return HS_OK;
}

/* Apply our claim of o for action. */
static hs_result
hold_apply(hs_client *c, hs_header *h, uint32_t oi, hs_hold_action action, uint64_t xid,
           hs_lsn *lsn)
{
    if (action == HS_HOLD_CONFIRM)
        return confirm_apply(c, h, oi, xid, lsn);
    return refund_apply(c, h, oi, HS_REC_CANCEL, 0, lsn, NULL, NULL);
}

/* A settled slot's answer to a settler (state acquired by the caller);
 * noun names what order_id is in messages ("order", "basket"). */
hs_result
hold_settled(hs_order_slot *o, hs_hold_action action, unsigned state, const char *noun,
             const char *order_id, size_t order_len)
{
    /* Relaxed: published with the state. */
    bool was_hold = atomic_load_explicit(&o->deadline_ms, memory_order_relaxed) != 0;

    switch (state) {
    case HS_INDEX_DEDUCTED:
    case HS_INDEX_REFUNDING:
        if (was_hold && action == HS_HOLD_CONFIRM)
            return HS_DUPLICATE;
        hs_set_error(was_hold ? "%s %.*s was confirmed: refund it instead"
                              : "%s %.*s is a deduction, not a hold",
                     noun, (int)order_len, order_id);
        return HS_NOT_HELD;
    case HS_INDEX_REFUNDED:
        return HS_ALREADY_REFUNDED;
    case HS_INDEX_CANCELLED:
        return action == HS_HOLD_CANCEL ? HS_DUPLICATE : HS_HOLD_CANCELLED;
    case HS_INDEX_EXPIRED:
        return HS_HOLD_EXPIRED;
    }
    hs_set_error("%s %.*s has no hold", noun, (int)order_len, order_id);
    return HS_NOT_FOUND; /* FAILED */
}

static hs_result
hold_common(hs_client *c, hold_mode mode, hs_hold_action action, const char *order_id,
            size_t order_len, uint64_t xid, hs_lsn *lsn)
{
    const unsigned claimed = action == HS_HOLD_CONFIRM || action == HS_HOLD_CANCEL
                                 ? claimed_state(action)
                                 : 0;
    hs_header *h;
    hs_order_slot *o;
    uint32_t oi, ver;
    owner_wait ow = {0, 0};
    bool inserted;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (c == NULL || claimed == 0 || !valid_len(order_id, order_len, HS_ORDER_ID_MAX)) {
        hs_set_error("hs_hold: order id must be 1..%d bytes, action confirm or cancel",
                     HS_ORDER_ID_MAX);
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
         * state change (deadline_ms, sku_index, qty come with it). */
        uint64_t w = atomic_load(&o->state);
        unsigned state = HS_STATE_OF(w);
        pid_t owner = HS_PID_OF(w);

        if (HS_VER_OF(w) != ver || state == HS_INDEX_EVICTING)
            goto again; /* evicted since we found it: look again */
        if (state == HS_INDEX_RESERVED) {
            unsigned next = claimed;
            hs_result done = HS_OK;

            if (action == HS_HOLD_CONFIRM) {
                /* Relaxed: published with RESERVED, which we acquired. */
                uint64_t deadline = atomic_load_explicit(&o->deadline_ms, memory_order_relaxed);

                if (hs_now_unix_us() / 1000 >= deadline) {
                    next = HS_INDEX_EXPIRING; /* too late: expire it ourselves */
                    done = HS_HOLD_EXPIRED;
                }
            }
            /* acq_rel: the claim; its acquire half makes the slot's fields
             * ours to read. */
            if (!atomic_compare_exchange_strong_explicit(&o->state, &w,
                                                         HS_ORDER_NEXT(w, next, self_pid()),
                                                         memory_order_acq_rel,
                                                         memory_order_relaxed))
                continue;
            if (next == HS_INDEX_EXPIRING) {
                r = refund_apply(c, h, oi, HS_REC_EXPIRE, 0, NULL, NULL, NULL);
                return r == HS_OK ? done : r;
            }
            if (mode == HOLD_CLAIM)
                return HS_OK;
            return hold_apply(c, h, oi, action, xid, lsn);
        }
        if (state == HS_INDEX_CONFIRMING || state == HS_INDEX_CANCELLING) {
            if (owner == self_pid()) {
                if (state != claimed) {
                    hs_set_error("order %.*s is claimed by this process for a %s", (int)order_len,
                                 order_id, state == HS_INDEX_CONFIRMING ? "confirm" : "cancel");
                    return HS_ORDER_MISMATCH;
                }
                if (mode == HOLD_CLAIM)
                    return HS_DUPLICATE; /* claimed by this process already */
                return hold_apply(c, h, oi, action, xid, lsn);
            }
        } else if (!order_owned_state(state)) {
            r = hold_settled(o, action, state, "order", order_id, order_len);
            if (!order_still(o, ver))
                goto again;
            return r;
        }
        /* owned by another process (or PENDING, REFUNDING, EXPIRING) */
        r = order_wait_owner(c, h, &ow, o, w);
        if (r != HS_OK)
            return r;
    }
}

hs_result
hs_hold_settle(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len,
               uint64_t xid, hs_lsn *lsn)
{
    return hold_common(c, HOLD_NOW, action, order_id, order_len, xid, lsn);
}

hs_result
hs_hold_claim(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len)
{
    return hold_common(c, HOLD_CLAIM, action, order_id, order_len, 0, NULL);
}

hs_result
hs_hold_commit(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len,
               uint64_t xid, hs_lsn *lsn)
{
    return hold_common(c, HOLD_COMMIT, action, order_id, order_len, xid, lsn);
}

/* Releases this process's claim: HS_OK also when there is none (released
 * already, lost with a restart). */
hs_result
hs_hold_release(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len)
{
    hs_header *h;
    hs_order_slot *o;
    uint32_t oi, ver;
    bool inserted;
    uint64_t w;
    hs_result r = HS_OK;

    if (c == NULL || !valid_len(order_id, order_len, HS_ORDER_ID_MAX) ||
        (action != HS_HOLD_CONFIRM && action != HS_HOLD_CANCEL)) {
        hs_set_error("hs_hold_release: order id must be 1..%d bytes", HS_ORDER_ID_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = order_probe(c, h, order_id, order_len, NULL, &oi, &ver, &inserted);
    if (r == HS_NOT_FOUND)
        return HS_OK;
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    /* Acquire: pairs with the release store of the last state change.  An
     * entry of another version is not ours (an owned one is never evicted). */
    w = atomic_load_explicit(&o->state, memory_order_acquire);
    if (HS_VER_OF(w) == ver && HS_STATE_OF(w) == claimed_state(action) &&
        HS_PID_OF(w) == self_pid())
        order_unclaim(o);
    return HS_OK;
}

/* See segment.h.  The daemon's expiry: a client of its own segment. */
hs_result
hs_hold_expire(hs_client *c, uint32_t index, uint32_t version, uint64_t now_ms, hs_lsn *lsn,
               uint64_t *deadline_ms)
{
    hs_header *h;
    hs_order_slot *o;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    if (index >= h->order_capacity)
        return HS_NOT_FOUND;
    o = &hs_order_table(h)[index];
    for (;;) {
        /* seq_cst (an acquire): pairs with the release store of RESERVED,
         * which published deadline_ms. */
        uint64_t w = atomic_load(&o->state);
        unsigned state = HS_STATE_OF(w);
        uint64_t deadline;

        if (HS_VER_OF(w) != version)
            return HS_NOT_FOUND;
        if (state == HS_INDEX_RESERVED) {
            /* Relaxed: published with RESERVED. */
            deadline = atomic_load_explicit(&o->deadline_ms, memory_order_relaxed);
            if (deadline_ms != NULL)
                *deadline_ms = deadline;
            if (now_ms < deadline)
                return HS_DUPLICATE;
            if (!atomic_compare_exchange_strong_explicit(
                    &o->state, &w, HS_ORDER_NEXT(w, HS_INDEX_EXPIRING, self_pid()),
                    memory_order_acq_rel, memory_order_relaxed))
                continue;
            return refund_apply(c, h, index, HS_REC_EXPIRE, 0, lsn, NULL, NULL);
        }
        if (state == HS_INDEX_PENDING || state == HS_INDEX_CONFIRMING ||
            state == HS_INDEX_CANCELLING || state == HS_INDEX_EXPIRING) {
            pid_t owner = HS_PID_OF(w);

            if (owner == self_pid() || !hs_pid_gone(owner))
                return HS_QUEUE_FULL; /* a live claim: its outcome decides; look later */
            r = order_resolve_dead(c, h, o, w);
            if (r != HS_OK)
                return r;
            continue;
        }
        return HS_NOT_FOUND; /* settled, or not a hold */
    }
}
