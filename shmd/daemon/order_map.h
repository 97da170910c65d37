/*-------------------------------------------------------------------------
 *
 * order_map.h
 *      Recovery's order map: every order with a record after the filter's
 *      watermark, by order id, with the state its last record gives it.
 *
 * Private to recovery (one thread, before any other runs).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_ORDER_MAP_H
#define HOTSTOCK_ORDER_MAP_H

#include "daemon.h"

/*
 * The order map: every order with a record after min(C, A), by order id,
 * with the state its last record gives it.  Private to recovery; entries
 * are compact (strings in an arena) because a big queue may hold a million
 * orders.
 */
typedef struct hsd_order_entry {
    uint64_t hash;
    hs_lsn lsn; /* its last record */
    int64_t qty;
    uint64_t xid; /* the xid its DEDUCT (RESERVE, CONFIRM) carried */
    uint64_t deadline_ms; /* a hold's; 1 when its RESERVE is not replayed */
    uint32_t id_off; /* order id in the arena */
    uint32_t sku_off;
    uint32_t buyer_off; /* its take's buyer (per-buyer limits), buyer_len 0: none */
    hs_lsn buyer_lsn;   /* the LSN of its take's BUYER record */
    uint8_t id_len;
    uint8_t sku_len;
    uint8_t buyer_len;
    uint8_t state; /* the settled state its last record gives it */
} hsd_order_entry;

typedef struct hsd_order_map {
    hsd_order_entry *entries;
    uint32_t count, entries_cap;
    uint32_t *index; /* entry + 1, 0 empty; power-of-two size */
    uint32_t index_cap;
    char *arena;
    size_t arena_len, arena_cap;
} hsd_order_map;

void hsd_order_map_free(hsd_order_map *m);
/* Room for about `orders` orders.  0, or -1 out of memory. */
int hsd_order_map_reserve(hsd_order_map *m, uint64_t orders);
/* Record that rec (a record with an order id) is the latest record of its
 * order; buyer: the BUYER record of rec's group that counted a take for
 * a buyer (a DEDUCT's or RESERVE's), or NULL.  0, or -1 out of memory. */
int hsd_order_map_put(hsd_order_map *m, const hs_record *rec, const hs_record *buyer);

#endif /* HOTSTOCK_ORDER_MAP_H */
