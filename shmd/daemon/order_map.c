/*-------------------------------------------------------------------------
 *
 * order_map.c
 *      Recovery's order map (order_map.h): open addressing over compact
 *      entries, strings in one arena.
 *
 * Shares nothing: recovery's alone, before any thread runs.  A record
 * moves its order to the state the record gives it: DEDUCT (also a retake
 * of an ended hold) and CONFIRM to DEDUCTED, RESERVE to RESERVED (with its
 * deadline), REFUND to REFUNDED, CANCEL to CANCELLED, EXPIRE to EXPIRED.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "order_map.h"


void
hsd_order_map_free(hsd_order_map *m)
{
    free(m->entries);
    free(m->index);
    free(m->arena);
    memset(m, 0, sizeof(*m));
}

static int
hsd_order_map_rehash(hsd_order_map *m, uint32_t cap)
{
    uint32_t *index = calloc(cap, sizeof(uint32_t));

    if (index == NULL)
        return -1;
    for (uint32_t e = 0; e < m->count; e++) {
        uint32_t i = (uint32_t)m->entries[e].hash & (cap - 1);
        while (index[i] != 0)
            i = (i + 1) & (cap - 1);
        index[i] = e + 1;
    }
    free(m->index);
    m->index = index;
    m->index_cap = cap;
    return 0;
}

/* Copy len bytes into the arena; returns the offset, or UINT32_MAX. */
static uint32_t
hsd_arena_put(hsd_order_map *m, const char *s, size_t len)
{
    uint32_t off;

    if (m->arena_len + len > m->arena_cap) {
        size_t cap = m->arena_cap ? m->arena_cap * 2 : 1 << 20;
        char *grown;

        while (cap < m->arena_len + len)
            cap *= 2;
        if (cap > UINT32_MAX)
            return UINT32_MAX;
        grown = realloc(m->arena, cap);
        if (grown == NULL)
            return UINT32_MAX;
        m->arena = grown;
        m->arena_cap = cap;
    }
    off = (uint32_t)m->arena_len;
    memcpy(m->arena + off, s, len);
    m->arena_len += len;
    return off;
}

/*
 * Size the map up front for at most `orders` orders (an estimate), so a
 * big replay does not copy it while it grows.  Memory reserved but never
 * touched costs nothing: only what is filled is faulted in.  0, or -1.
 */
int
hsd_order_map_reserve(hsd_order_map *m, uint64_t orders)
{
    uint32_t index_cap = 4096;

    if (orders < 4096)
        return 0;
    while (index_cap < orders * 2 && index_cap < (UINT32_C(1) << 31))
        index_cap <<= 1;
    m->entries = malloc((size_t)orders * sizeof(hsd_order_entry));
    m->arena = malloc((size_t)orders * 32);
    if (m->entries == NULL || m->arena == NULL)
        return -1;
    m->entries_cap = (uint32_t)orders;
    m->arena_cap = (size_t)orders * 32;
    return hsd_order_map_rehash(m, index_cap);
}

/* Record that rec (a record with an order id) is the latest record of its
 * order.  0, or -1 out of memory. */
int
hsd_order_map_put(hsd_order_map *m, const hs_record *rec, const hs_record *buyer)
{
    uint64_t hash = hs_hash(rec->order_id, rec->order_len);
    hsd_order_entry *e = NULL;
    uint32_t i;

    if ((uint64_t)(m->count + 1) * 2 > m->index_cap &&
        hsd_order_map_rehash(m, m->index_cap ? m->index_cap * 2 : 4096) != 0)
        return -1;
    i = (uint32_t)hash & (m->index_cap - 1);
    while (m->index[i] != 0) {
        hsd_order_entry *c = &m->entries[m->index[i] - 1];
        if (c->hash == hash && c->id_len == rec->order_len &&
            memcmp(m->arena + c->id_off, rec->order_id, rec->order_len) == 0) {
            e = c;
            break;
        }
        i = (i + 1) & (m->index_cap - 1);
    }
    if (e == NULL) {
        if (m->count == m->entries_cap) {
            uint32_t cap = m->entries_cap ? m->entries_cap * 2 : 4096;
            hsd_order_entry *grown = realloc(m->entries, (size_t)cap * sizeof(*grown));
            if (grown == NULL)
                return -1;
            m->entries = grown;
            m->entries_cap = cap;
        }
        e = &m->entries[m->count];
        memset(e, 0, sizeof(*e));
        e->hash = hash;
        e->id_len = rec->order_len;
        e->id_off = hsd_arena_put(m, rec->order_id, rec->order_len);
        if (e->id_off == UINT32_MAX)
            return -1;
        m->index[i] = ++m->count;
    }
    /* the SKU of the latest record (a deduct and its refund name the same) */
    if (e->sku_len != rec->sku_len || e->lsn == 0 ||
        memcmp(m->arena + e->sku_off, rec->sku, rec->sku_len) != 0) {
        e->sku_off = hsd_arena_put(m, rec->sku, rec->sku_len);
        if (e->sku_off == UINT32_MAX)
            return -1;
        e->sku_len = rec->sku_len;
    }
    e->lsn = rec->lsn;
    e->qty = rec->qty;
    /* the state by the rule a dead owner's slot is settled by */
    e->state = (uint8_t)hs_state_of_record(rec->type);
    if (rec->type == HS_REC_DEDUCT || rec->type == HS_REC_RESERVE) {
        /* the buyer counted for this take, if any (deduct.c) */
        e->buyer_len = 0;
        if (buyer != NULL) {
            e->buyer_off = hsd_arena_put(m, buyer->order_id, buyer->order_len);
            if (e->buyer_off == UINT32_MAX)
                return -1;
            e->buyer_len = buyer->order_len;
            e->buyer_lsn = buyer->lsn;
        }
    }
    switch (rec->type) {
    case HS_REC_DEDUCT: /* a deduction, or a retake of an ended hold */
        e->xid = rec->xid;
        break;
    case HS_REC_RESERVE:
        e->xid = rec->xid;
        e->deadline_ms = rec->timestamp_us / 1000 + rec->ttl_ms;
        break;
    case HS_REC_CONFIRM:
        e->xid = rec->xid; /* the sale is the confirm's (hold.c) */
        break;
    default: /* CANCEL, EXPIRE, REFUND: the xid stays the taker's */
        break;
    }
    /* a hold whose RESERVE is before F (settled long ago): still a hold */
    if (e->deadline_ms == 0 && rec->type >= HS_REC_RESERVE)
        e->deadline_ms = 1;
    return 0;
}

