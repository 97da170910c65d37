/*-------------------------------------------------------------------------
 *
 * ring_record.c
 *      A ring record, published by a client, as a queue record.
 *
 * Reads the SKU table of the segment (the name of the record's SKU slot,
 * after an acquire load of its READY state) and nothing else.  Used by
 * the spiller for every record and by recovery for the ring it salvages;
 * calls neither of them.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"

/*-------------------------------------------------------------------------
 * Ring record -> queue record
 *-------------------------------------------------------------------------
 */
int
hsd_ring_to_record(hs_header *h, const hs_ring_record *rr, hs_lsn lsn, hs_record *out, char *why,
                   size_t whylen)
{
    memset(out, 0, sizeof(*out));
    out->lsn = lsn;
    out->type = rr->type;
    out->xid = rr->xid;
    out->timestamp_us = rr->timestamp_us;
    out->qty = rr->qty;
    out->ttl_ms = rr->ttl_ms;
    if (rr->type < HS_REC_DEDUCT || rr->type > HS_REC_BUYER) {
        snprintf(why, whylen, "record type %u", rr->type);
        return -1;
    }
    if (rr->group_size > HS_GROUP_MAX ||
        (rr->group_size > 1 ? rr->group_pos >= rr->group_size ||
                                  !(rr->flags & HS_REC_FLAG_GROUP_MORE) !=
                                      (rr->group_pos + 1 == rr->group_size)
                            : rr->group_pos != 0 || (rr->flags & HS_REC_FLAG_GROUP_MORE))) {
        snprintf(why, whylen, "group place %u of %u with flags 0x%x", rr->group_pos,
                 rr->group_size, rr->flags);
        return -1;
    }
    out->flags = rr->flags;
    if (rr->order_len > HS_ORDER_ID_MAX) {
        snprintf(why, whylen, "order id length %u", rr->order_len);
        return -1;
    }
    out->order_len = rr->order_len;
    memcpy(out->order_id, rr->order_id, rr->order_len);
    out->order_id[rr->order_len] = '\0';
    if (rr->type == HS_REC_NOOP)
        return 0;

    if (rr->sku_index >= h->sku_capacity) {
        snprintf(why, whylen, "SKU slot %u out of range (capacity %u)", rr->sku_index,
                 h->sku_capacity);
        return -1;
    }
    {
        hs_sku_slot *s = &hs_sku_table(h)[rr->sku_index];
        /* pairs with the release store of READY that published the name */
        uint64_t state = atomic_load_explicit(&s->state, memory_order_acquire);

        if (HS_STATE_OF(state) != HS_SKU_READY || s->sku_len == 0 || s->sku_len > HS_SKU_MAX) {
            snprintf(why, whylen, "SKU slot %u is not a ready SKU (state %u)", rr->sku_index,
                     HS_STATE_OF(state));
            return -1;
        }
        out->sku_len = s->sku_len;
        memcpy(out->sku, s->sku, s->sku_len);
        out->sku[s->sku_len] = '\0';
    }
    if (rr->type == HS_REC_SALE) {
        if (rr->qty < 0 || rr->ttl_ms > INT32_MAX || rr->order_len != 0 ||
            (rr->flags & ~HS_REC_FLAG_PAUSED) != 0) {
            snprintf(why, whylen, "sale record: starts %" PRId64 ", limit %" PRIu32
                     ", order id length %u, flags 0x%x",
                     rr->qty, rr->ttl_ms, rr->order_len, rr->flags);
            return -1;
        }
        return 0;
    }
    if (rr->type == HS_REC_BUYER) {
        if (rr->qty < -HS_QTY_MAX || rr->qty > HS_QTY_MAX || rr->ttl_ms != 0 ||
            (rr->order_len == 0) != (rr->qty == 0) || rr->order_index != UINT32_MAX) {
            snprintf(why, whylen, "buyer record: qty %" PRId64 ", ttl %" PRIu32
                     ", buyer length %u, order slot %u",
                     rr->qty, rr->ttl_ms, rr->order_len, rr->order_index);
            return -1;
        }
        return 0;
    }
    if (rr->type != HS_REC_PUT_SKU && rr->type != HS_REC_ADD_STOCK &&
        (rr->qty <= 0 || rr->qty > HS_QTY_MAX)) {
        snprintf(why, whylen, "qty %" PRId64 " for a record of type %u", rr->qty, rr->type);
        return -1;
    }
    if ((rr->type == HS_REC_RESERVE) != (rr->ttl_ms != 0) || rr->ttl_ms > HS_TTL_MAX_MS) {
        snprintf(why, whylen, "ttl %" PRIu32 " ms for a record of type %u", rr->ttl_ms, rr->type);
        return -1;
    }
    return 0;
}
