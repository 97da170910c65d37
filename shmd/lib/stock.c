/*-------------------------------------------------------------------------
 *
 * stock.c
 *      Reads and stock administration: available, order status, put_sku, add_stock.
 *
 * Reads are single acquire loads of shared words; put_sku and add_stock
 * follow the counter rules of ring.c (decrements first, increments after
 * their record).
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
 * Reads
 *-------------------------------------------------------------------------
 */

hs_result
hs_available(hs_client *c, const char *sku, size_t sku_len, int64_t *available)
{
    hs_header *h;
    uint32_t si;
    hs_result r = HS_OK;

    if (c == NULL || available == NULL || !valid_len(sku, sku_len, HS_SKU_MAX)) {
        hs_set_error("hs_available: sku must be 1..%d bytes", HS_SKU_MAX);
        return HS_BAD_ARGUMENT;
    }
    *available = 0;
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = sku_lookup(c, h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    /* Relaxed: a snapshot of one counter. */
    *available = counter_read(&hs_sku_table(h)[si]);
    return HS_OK;
}

hs_result
hs_order_lookup(hs_client *c, const char *order_id, size_t order_len, hs_order_info *out)
{
    hs_header *h;
    hs_order_slot *o;
    uint32_t oi, ver;
    uint64_t w;
    bool inserted;
    hs_result r = HS_OK;

    if (c == NULL || !valid_len(order_id, order_len, HS_ORDER_ID_MAX)) {
        memset(out, 0, sizeof(*out));
        hs_set_error("hs_order_lookup: order id must be 1..%d bytes", HS_ORDER_ID_MAX);
        return HS_BAD_ARGUMENT;
    }
again:
    memset(out, 0, sizeof(*out));
    out->status = HS_ORDER_STATUS_UNKNOWN;
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = order_probe(c, h, order_id, order_len, NULL, &oi, &ver, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    /* Acquire: pairs with the release store of the last state change, so
     * sku_index, qty, xid and deducted_lsn of a deducted order are the
     * final ones. */
    w = atomic_load_explicit(&o->state, memory_order_acquire);
    if (HS_VER_OF(w) != ver)
        goto again; /* evicted since we found it */
    switch (HS_STATE_OF(w)) {
    case HS_INDEX_DEDUCTED:
    case HS_INDEX_REFUNDING:
        out->status = HS_ORDER_STATUS_DEDUCTED;
        break;
    case HS_INDEX_REFUNDED:
        out->status = HS_ORDER_STATUS_REFUNDED;
        break;
    case HS_INDEX_PENDING:
        out->status = HS_ORDER_STATUS_PENDING;
        return HS_OK;
    case HS_INDEX_RESERVED:
    case HS_INDEX_CONFIRMING:
    case HS_INDEX_CANCELLING:
    case HS_INDEX_EXPIRING:
        out->status = HS_ORDER_STATUS_RESERVED;
        break;
    case HS_INDEX_CANCELLED:
        out->status = HS_ORDER_STATUS_CANCELLED;
        break;
    case HS_INDEX_EXPIRED:
        out->status = HS_ORDER_STATUS_EXPIRED;
        break;
    default: /* FAILED: nothing deducted */
        return HS_NOT_FOUND;
    }
    out->qty = o->qty;
    /* Relaxed: published with the state acquired above. */
    out->xid = atomic_load_explicit(&o->xid, memory_order_relaxed);
    out->deducted_lsn = atomic_load_explicit(&o->deducted_lsn, memory_order_relaxed);
    out->expires_at_ms = atomic_load_explicit(&o->deadline_ms, memory_order_relaxed);
    copy_sku_name(h, o->sku_index, out->sku);
    if (!order_still(o, ver))
        goto again;
    return HS_OK;
}

hs_result
hs_order_status(hs_client *c, const char *order_id, size_t order_len, hs_order_status_code *state,
                char *sku_out, int32_t *qty)
{
    hs_order_info info;
    hs_result r = hs_order_lookup(c, order_id, order_len, &info);

    if (state != NULL)
        *state = info.status;
    if (sku_out != NULL)
        strcpy(sku_out, info.sku);
    if (qty != NULL)
        *qty = info.qty;
    return r;
}

/*-------------------------------------------------------------------------
 * Admin: stock
 *-------------------------------------------------------------------------
 */

/*
 * Set a counter to `stock`.  Lowering (or keeping) it is a decrement: CAS
 * the counter to stock, then append PUT_SKU(delta <= 0); a failed append
 * gives the units back.  Raising it is an increment: append PUT_SKU(delta =
 * stock - old) first, then add delta; deductions that ran meanwhile stay
 * deducted (as if they came right after the reset), so the counter always
 * equals the fold of its records.
 */
hs_result
hs_put_sku(hs_client *c, const char *sku, size_t sku_len, int64_t stock, hs_lsn *lsn)
{
    hs_header *h;
    hs_sku_slot *s;
    hs_ring_record rec;
    uint32_t si;
    int64_t old;
    hs_lsn at;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (c == NULL || !valid_len(sku, sku_len, HS_SKU_MAX) || stock < 0 || stock > HS_STOCK_MAX) {
        hs_set_error("hs_put_sku: sku must be 1..%d bytes, stock 0..%" PRId64, HS_SKU_MAX,
                     HS_STOCK_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = sku_lookup(c, h, sku, sku_len, true, &si);
    if (r != HS_OK)
        return r;
    s = &hs_sku_table(h)[si];
    /* Relaxed: validated by the CAS, or (raising) only the base of delta. */
    old = atomic_load_explicit(&s->available, memory_order_relaxed);
    for (;;) {
        /* A lowering CASes only from a value without the basket lock; a
         * raising one needs the units without the bit as its base. */
        if ((old & HS_AVAILABLE_LOCKED) && !counter_wait_unlocked(s, &old)) {
            hs_set_error("sku %.*s is locked by a basket of a live process", (int)sku_len, sku);
            return HS_QUEUE_FULL;
        }
        if (stock <= old) {
            /* acq_rel: as counter_take(). */
            if (!atomic_compare_exchange_weak_explicit(&s->available, &old, stock,
                                                       memory_order_acq_rel, memory_order_relaxed))
                continue;
            record_init(&rec, HS_REC_PUT_SKU, si, stock - old);
            r = append_record(c, h, &rec, &at);
            if (r != HS_OK) {
                counter_give(s, old - stock);
                return r;
            }
            break;
        }
        record_init(&rec, HS_REC_PUT_SKU, si, stock - old);
        r = append_record(c, h, &rec, &at);
        if (r != HS_OK)
            return r;
        counter_give(s, stock - old);
        break;
    }
    if (lsn != NULL)
        *lsn = at;
    return HS_OK;
}

/*
 * Restock (delta > 0: record first, then the counter) or withdraw (delta <
 * 0: clamp so the counter stays >= 0, CAS it, then record what was taken;
 * a failed append gives it back).  delta 0, or a withdrawal from an empty
 * counter, changes nothing and appends nothing (*lsn = 0).
 */
hs_result
hs_add_stock(hs_client *c, const char *sku, size_t sku_len, int64_t delta, int64_t *available,
             hs_lsn *lsn)
{
    hs_header *h;
    hs_sku_slot *s;
    hs_ring_record rec;
    uint32_t si;
    int64_t old, applied, after;
    hs_lsn at = 0;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (available != NULL)
        *available = 0;
    if (c == NULL || !valid_len(sku, sku_len, HS_SKU_MAX) || delta < -HS_STOCK_MAX ||
        delta > HS_STOCK_MAX) {
        hs_set_error("hs_add_stock: sku must be 1..%d bytes, |delta| <= %" PRId64, HS_SKU_MAX,
                     HS_STOCK_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = sku_lookup(c, h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    s = &hs_sku_table(h)[si];
    /* Relaxed: validated by the CAS below, or a bound check only. */
    old = counter_read(s);
    if (delta > 0) {
        if (old + delta > HS_STOCK_MAX) {
            hs_set_error("hs_add_stock: %" PRId64 " + %" PRId64 " would exceed %" PRId64, old,
                         delta, HS_STOCK_MAX);
            return HS_BAD_ARGUMENT;
        }
        record_init(&rec, HS_REC_ADD_STOCK, si, delta);
        r = append_record(c, h, &rec, &at);
        if (r != HS_OK)
            return r;
        after = counter_give(s, delta);
    } else {
        old = atomic_load_explicit(&s->available, memory_order_relaxed);
        for (;;) {
            /* CAS only from a value without the basket lock */
            if ((old & HS_AVAILABLE_LOCKED) && !counter_wait_unlocked(s, &old)) {
                hs_set_error("sku %.*s is locked by a basket of a live process", (int)sku_len,
                             sku);
                return HS_QUEUE_FULL;
            }
            applied = -old > delta ? -old : delta; /* max(delta, -old): never below 0 */
            if (applied == 0) {
                after = old;
                break;
            }
            /* acq_rel: as counter_take(). */
            if (atomic_compare_exchange_weak_explicit(&s->available, &old, old + applied,
                                                      memory_order_acq_rel, memory_order_relaxed)) {
                after = old + applied;
                record_init(&rec, HS_REC_ADD_STOCK, si, applied);
                r = append_record(c, h, &rec, &at);
                if (r != HS_OK) {
                    counter_give(s, -applied);
                    return r;
                }
                break;
            }
        }
    }
    if (available != NULL)
        *available = after;
    if (lsn != NULL)
        *lsn = at;
    return HS_OK;
}
