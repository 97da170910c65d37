/*-------------------------------------------------------------------------
 *
 * basket_hold.c
 *      Settling a basket of holds: confirm or cancel every line or none
 *      (hs_basket_settle, and its two phases).  Taking one is basket.c's.
 *
 * What it shares: the lines' order slots, as hold.c settles one hold (see
 * its header and segment.h): each line is claimed out of RESERVED by one
 * CAS (acq_rel), in line order, so two settlers of one basket meet at line
 * 0 and the second waits for the first.  A confirm claims only before the
 * deadline; the daemon's expiry CASes a line out of RESERVED only at or
 * past it, and every line has the same deadline: so either a confirm
 * claims every line, or it finds one expired (or reads the clock late),
 * releases its claims, and the basket expires whole.  The claimed lines'
 * records go to the queue as one group (ring.c, append_group): a dead
 * settler's lines are settled by the typed rule alike, whole.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

typedef enum bh_mode {
    BH_NOW,    /* hs_basket_settle: claim and apply */
    BH_CLAIM,  /* hs_basket_claim: claim only */
    BH_COMMIT, /* hs_basket_commit: apply our claims (claiming what is not ours) */
} bh_mode;

static unsigned
claimed_state(hs_hold_action action)
{
    return action == HS_HOLD_CONFIRM ? HS_INDEX_CONFIRMING : HS_INDEX_CANCELLING;
}

/*
 * Claim the line with this id for action: HS_OK with *oi and *mine (true:
 * claimed now; false: it was ours already, from hs_basket_claim), or the
 * line's answer (nothing claimed).  A confirm past the deadline claims
 * nothing: HS_HOLD_EXPIRED (the daemon expires the line).
 */
static hs_result
line_claim(hs_client *c, hs_header *h, const char *id, size_t id_len, hs_hold_action action,
           const char *order_id, size_t order_len, uint32_t *oi, bool *mine)
{
    const unsigned claimed = claimed_state(action);
    hs_order_slot *o;
    uint32_t ver;
    owner_wait ow = {0, 0};
    bool inserted;
    hs_result r;

again:
    r = order_probe(c, h, id, id_len, NULL, oi, &ver, &inserted);
    if (r == HS_NOT_FOUND) {
        hs_set_error("basket %.*s: line %.*s is not in the order index", (int)order_len,
                     order_id, (int)id_len, id);
        return HS_NOT_FOUND;
    }
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[*oi];
    for (;;) {
        /* seq_cst (an acquire): pairs with the release of the last state
         * change (deadline_ms comes with it). */
        uint64_t w = atomic_load(&o->state);
        unsigned state = HS_STATE_OF(w);

        if (HS_VER_OF(w) != ver || state == HS_INDEX_EVICTING)
            goto again;
        if (state == HS_INDEX_RESERVED) {
            if (action == HS_HOLD_CONFIRM &&
                hs_now_unix_us() / 1000 >=
                    atomic_load_explicit(&o->deadline_ms, memory_order_relaxed))
                return HS_HOLD_EXPIRED;
            /* acq_rel: the claim */
            if (atomic_compare_exchange_strong_explicit(&o->state, &w,
                                                        HS_ORDER_NEXT(w, claimed, self_pid()),
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed)) {
                *mine = true;
                return HS_OK;
            }
            continue;
        }
        if ((state == HS_INDEX_CONFIRMING || state == HS_INDEX_CANCELLING) &&
            HS_PID_OF(w) == self_pid()) {
            if (state != claimed) {
                hs_set_error("basket %.*s is claimed by this process for a %s", (int)order_len,
                             order_id, state == HS_INDEX_CONFIRMING ? "confirm" : "cancel");
                return HS_ORDER_MISMATCH;
            }
            *mine = false;
            return HS_OK;
        }
        if (!order_owned_state(state)) {
            r = hold_settled(o, action, state, "basket", order_id, order_len);
            if (!order_still(o, ver))
                goto again;
            return r;
        }
        r = order_wait_owner(c, h, &ow, o, w);
        if (r != HS_OK)
            return r;
    }
}

/* Apply our claims of the n lines in ois: one group of CONFIRMs (xid) or
 * CANCELs, then the states (and a cancel's units, after its records).  On
 * failure every claim is released. */
static hs_result
basket_apply(hs_client *c, hs_header *h, const uint32_t *ois, int n, hs_hold_action action,
             uint64_t xid, hs_lsn *lsn)
{
    hs_ring_record recs[HS_GROUP_MAX];
    uint64_t had_xid[HS_BASKET_MAX];
    uint64_t bref[HS_BASKET_MAX]; /* a cancel's give-back of each line's buyer count */
    uint32_t nrec = 0;
    hs_lsn first, at;
    hs_result r;

    for (int i = 0; i < n; i++) {
        hs_order_slot *o = &hs_order_table(h)[ois[i]];
        hs_ring_record *rec;

        if (o->sku_index >= h->sku_capacity || o->qty < 1) {
            for (int j = 0; j < n; j++)
                order_unclaim(&hs_order_table(h)[ois[j]]);
            hs_set_error("order slot %u of %s is damaged (sku slot %u, qty %d)", ois[i], c->dir,
                         o->sku_index, (int)o->qty);
            return HS_IO_ERROR;
        }
        /* a cancel gives the line's buyer count back (refund.c does the
         * same for one order): its BUYER record before its CANCEL */
        bref[i] = action == HS_HOLD_CANCEL ? order_buyer_ref(h, ois[i]) : 0;
        if (bref[i] != 0 &&
            !buyer_record(h, o->sku_index, bref[i], -o->qty,
                          order_buyer_take_lsn(h, ois[i]),
                          &recs[nrec++])) {
            nrec--;
            bref[i] = 0;
        }
        rec = &recs[nrec++];
        record_init(rec, action == HS_HOLD_CONFIRM ? HS_REC_CONFIRM : HS_REC_CANCEL,
                    o->sku_index, o->qty);
        rec->order_len = o->order_len;
        rec->order_index = ois[i];
        memcpy(rec->order_id, o->order_id, o->order_len);
        /* Relaxed: ours while we own the slot.  A confirm's xid before its
         * record, as a deduction's (hold.c, confirm_apply). */
        had_xid[i] = atomic_load_explicit(&o->xid, memory_order_relaxed);
        if (action == HS_HOLD_CONFIRM) {
            rec->xid = xid;
            atomic_store_explicit(&o->xid, xid, memory_order_relaxed);
        }
    }
    r = append_group(c, h, recs, nrec, &first);
    if (r != HS_OK) {
        for (int i = 0; i < n; i++) {
            hs_order_slot *o = &hs_order_table(h)[ois[i]];

            atomic_store_explicit(&o->xid, had_xid[i], memory_order_relaxed);
            order_unclaim(o);
        }
        return r;
    }
    at = first;
    for (int i = 0; i < n; i++) {
        hs_order_slot *o = &hs_order_table(h)[ois[i]];

        /* the records are published: a cancel's units may be sold again,
         * and taken again by the buyer */
        if (action == HS_HOLD_CANCEL)
            counter_give(&hs_sku_table(h)[o->sku_index], o->qty);
        if (bref[i] != 0) {
            buyer_give(h, bref[i], o->qty);
            at++;
        }
        atomic_store_explicit(&o->deducted_lsn, at++, memory_order_relaxed);
        /* Release (in order_set): with deducted_lsn and xid. */
        order_set(o, action == HS_HOLD_CONFIRM ? HS_INDEX_DEDUCTED : HS_INDEX_CANCELLED);
    }
    if (lsn != NULL)
        *lsn = at - 1;
    return HS_OK;
}

static hs_result
basket_hold_common(hs_client *c, bh_mode mode, hs_hold_action action, const char *order_id,
                   size_t order_len, uint64_t xid, hs_lsn *lsn)
{
    uint32_t ois[HS_BASKET_MAX];
    bool fresh[HS_BASKET_MAX];
    char id[HS_ORDER_ID_MAX + 1];
    hs_header *h;
    int n = 0, claimed = 0;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (action != HS_HOLD_CONFIRM && action != HS_HOLD_CANCEL) {
        hs_set_error("hs_basket_settle: action confirm or cancel");
        return HS_BAD_ARGUMENT;
    }
    r = hs_basket_find(c, order_id, order_len, &n);
    if (r != HS_OK)
        return r;
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    for (; claimed < n; claimed++) {
        size_t len = hs_basket_line_id(order_id, order_len, claimed, n, id);

        r = line_claim(c, h, id, len, action, order_id, order_len, &ois[claimed],
                       &fresh[claimed]);
        if (r != HS_OK)
            break;
    }
    if (r != HS_OK) {
        /* Release what this call claimed; claims of an earlier
         * hs_basket_claim stay (its caller releases or commits them). */
        for (int i = 0; i < claimed; i++)
            if (fresh[i])
                order_unclaim(&hs_order_table(h)[ois[i]]);
        /* A line settled when line 0 was: the basket was settled before
         * (every line alike) or is being settled by its expiry. */
        return r;
    }
    if (mode == BH_CLAIM)
        return HS_OK;
    return basket_apply(c, h, ois, n, action, xid, lsn);
}

/* See hotstock.h. */
hs_result
hs_basket_settle(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len,
                 uint64_t xid, hs_lsn *lsn)
{
    return basket_hold_common(c, BH_NOW, action, order_id, order_len, xid, lsn);
}

/* See hotstock.h. */
hs_result
hs_basket_claim(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len)
{
    return basket_hold_common(c, BH_CLAIM, action, order_id, order_len, 0, NULL);
}

/* See hotstock.h. */
hs_result
hs_basket_commit(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len,
                 uint64_t xid, hs_lsn *lsn)
{
    return basket_hold_common(c, BH_COMMIT, action, order_id, order_len, xid, lsn);
}

/* See hotstock.h.  HS_OK also when nothing is claimed by this process. */
hs_result
hs_basket_release(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len)
{
    char id[HS_ORDER_ID_MAX + 1];
    hs_header *h;
    int n = 0;
    hs_result r;

    r = hs_basket_find(c, order_id, order_len, &n);
    if (r == HS_NOT_FOUND)
        return HS_OK;
    if (r != HS_OK)
        return r;
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    for (int i = 0; i < n; i++) {
        size_t len = hs_basket_line_id(order_id, order_len, i, n, id);
        uint32_t oi, ver;
        bool inserted;
        uint64_t w;

        if (order_probe(c, h, id, len, NULL, &oi, &ver, &inserted) != HS_OK)
            continue;
        /* Acquire: pairs with the release of the last state change; an
         * owned entry is never evicted. */
        w = atomic_load_explicit(&hs_order_table(h)[oi].state, memory_order_acquire);
        if (HS_VER_OF(w) == ver && HS_STATE_OF(w) == claimed_state(action) &&
            HS_PID_OF(w) == self_pid())
            order_unclaim(&hs_order_table(h)[oi]);
    }
    return HS_OK;
}
