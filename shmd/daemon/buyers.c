/*-------------------------------------------------------------------------
 *
 * buyers.c
 *      Forgetting the buyers of a sale that has ended (hotstock.h,
 *      "Per-buyer limits"): the evictor thread's sweep of the buyer table.
 *
 * What it shares: the buyer table and the SKU slots' sale fields, read
 * only; every change goes through hs_buyers_forget() (lib/buyer.c), which
 * appends the FORGET record before it makes any entry GONE, so a restart
 * forgets exactly what the live daemon forgot (the checkpoint drops those
 * counts, and a give-back of a take before the FORGET counts nothing).
 * Runs on the evictor thread, with a client handle of its own.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

/* Has the sale of SKU slot si ended retention_ms ago or more at now_ms? */
static bool
sale_long_ended(hs_sku_slot *s, uint64_t now_ms, uint64_t retention_ms)
{
    /* Relaxed: the configuration is only read; a change racing the sweep
     * is seen at the next one (a reopened window stops the forgetting). */
    uint64_t end = atomic_load_explicit(&s->sale_end_ms, memory_order_relaxed);

    return end != 0 && now_ms >= end && now_ms - end >= retention_ms;
}

/* See daemon.h. */
void
hsd_buyers_sweep(hsd_daemon *d, hsd_buyer_sweep *sw)
{
    hs_header *h = d->seg;
    const uint64_t now = hs_now_unix_us() / 1000;
    const uint64_t retention = (uint64_t)d->settings.buyer_retention_s * 1000;
    uint32_t nskus = 0;

    if (atomic_load_explicit(&h->buyer_count, memory_order_relaxed) == 0)
        return;
    if (sw->client == NULL) {
        hs_result r = hs_attach(d->dir, &sw->client);
        if (r != HS_OK) {
            hsd_log(HSD_WARNING, "cannot attach to forget the buyers of ended sales: %s (%s)",
                    hs_result_name(r), hs_last_error());
            sw->client = NULL;
            return;
        }
    }
    if (sw->skus == NULL) {
        sw->skus = malloc((size_t)h->sku_capacity * sizeof(uint32_t));
        sw->seen = calloc((h->sku_capacity + 7) / 8, 1);
        if (sw->skus == NULL || sw->seen == NULL) {
            hsd_log(HSD_WARNING, "out of memory forgetting the buyers of ended sales");
            return;
        }
    }
    for (uint32_t k = 0; k < h->buyer_capacity; k++) {
        hs_buyer_slot *b = &hs_buyer_table(h)[k];
        /* Acquire: pairs with the release store of LIVE (the key). */
        uint64_t w = atomic_load_explicit(&b->state, memory_order_acquire);
        uint32_t si = b->sku_index;

        if (HS_STATE_OF(w) != HS_BUYER_LIVE || si >= h->sku_capacity ||
            (sw->seen[si / 8] & (1u << (si % 8))) ||
            !sale_long_ended(&hs_sku_table(h)[si], now, retention))
            continue;
        sw->seen[si / 8] |= (uint8_t)(1u << (si % 8));
        sw->skus[nskus++] = si;
    }
    for (uint32_t i = 0; i < nskus; i++) {
        uint32_t si = sw->skus[i], n = 0;
        hs_lsn lsn = 0;
        hs_result r;

        sw->seen[si / 8] = 0;
        r = hs_buyers_forget(sw->client, si, now - retention, &lsn, &n);
        if (r == HS_DUPLICATE)
            continue; /* reopened since the scan: nothing to forget */
        if (r != HS_OK) {
            hsd_log(HSD_WARNING, "cannot forget the buyers of SKU %s: %s (%s); next sweep",
                    hs_sku_table(h)[si].sku, hs_result_name(r), hs_last_error());
            continue;
        }
        hsd_log(HSD_LOG,
                "forgot %u buyers of SKU %s: its sale ended %u s or more ago (LSN %" PRIu64 ")",
                n, hs_sku_table(h)[si].sku, d->settings.buyer_retention_s, lsn);
    }
}

/* See daemon.h. */
void
hsd_buyers_sweep_end(hsd_buyer_sweep *sw)
{
    if (sw->client != NULL)
        hs_detach(sw->client);
    free(sw->skus);
    free(sw->seen);
    memset(sw, 0, sizeof(*sw));
}
