/*-------------------------------------------------------------------------
 *
 * sale.c
 *      Sale sessions: a SKU's window, pause switch and per-buyer limit
 *      (hotstock.h, "Sale sessions"), set by hs_sale_configure /
 *      hs_sale_pause and checked by every take (sale_check).
 *
 * What it shares: the SKU slot's sale_* fields (segment.h).  Takes read
 * them relaxed, on the cache line of `available` they touch anyway: a
 * take that read "open" just before a pause may still finish (a pause
 * stops every take that starts after it returned).  Changes are
 * serialised per SKU by sale_locker (a pid by CAS, taken over from a dead
 * holder) and are recorded by a SALE record with the whole configuration,
 * so the record order is the order of the changes and a restart rebuilds
 * the last one.  A pause is stored before its record (it stops sales at
 * once; a failed append undoes it), everything else after its record
 * (nothing opens before it is in the queue).
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

/* Is the sale of s open at now_ms?  HS_OK, or why not. */
hs_result
sale_check(hs_sku_slot *s, uint64_t now_ms)
{
    /* Relaxed: see the header. */
    uint64_t start = atomic_load_explicit(&s->sale_start_ms, memory_order_relaxed);
    uint64_t end = atomic_load_explicit(&s->sale_end_ms, memory_order_relaxed);

    if (atomic_load_explicit(&s->sale_paused, memory_order_relaxed) != 0)
        return HS_SALE_PAUSED;
    if (start != 0 && now_ms < start)
        return HS_SALE_NOT_OPEN;
    if (end != 0 && now_ms >= end)
        return HS_SALE_CLOSED;
    return HS_OK;
}

/* Take s's sale_locker (bounded wait; a dead holder's is taken over). */
static hs_result
sale_lock(hs_client *c, hs_sku_slot *s)
{
    uint32_t me = (uint32_t)self_pid();
    unsigned round = 0;
    uint64_t since = 0;

    for (;;) {
        uint32_t holder = atomic_load_explicit(&s->sale_locker, memory_order_relaxed);

        if ((holder == 0 || (holder != me && hs_pid_gone((pid_t)holder))) &&
            atomic_compare_exchange_strong_explicit(&s->sale_locker, &holder, me,
                                                    memory_order_acquire, memory_order_relaxed))
            return HS_OK;
        if (round >= HS_SPIN_ROUNDS) {
            uint64_t now = hs_now_monotonic_ms();

            if (since == 0)
                since = now;
            else if (now - since >= HS_OWNER_WAIT_MS) {
                hs_set_error("the sale of sku %.*s is being changed by process %u for %d ms",
                             (int)s->sku_len, s->sku, holder, HS_OWNER_WAIT_MS);
                return HS_QUEUE_FULL;
            }
        }
        backoff(&round);
    }
}

static void
sale_unlock(hs_sku_slot *s)
{
    atomic_store_explicit(&s->sale_locker, 0, memory_order_release);
}

/* Append the SALE record of this configuration for SKU slot si. */
static hs_result
sale_record(hs_client *c, hs_header *h, uint32_t si, const hs_sale *sale, hs_lsn *lsn)
{
    hs_ring_record rec;

    record_init(&rec, HS_REC_SALE, si, (int64_t)sale->starts_at_ms);
    rec.xid = sale->ends_at_ms;
    rec.ttl_ms = (uint32_t)sale->per_buyer_limit;
    rec.flags = sale->paused ? HS_REC_FLAG_PAUSED : 0;
    return append_record(c, h, &rec, lsn);
}

static void
sale_read(hs_sku_slot *s, hs_sale *out)
{
    out->starts_at_ms = atomic_load_explicit(&s->sale_start_ms, memory_order_relaxed);
    out->ends_at_ms = atomic_load_explicit(&s->sale_end_ms, memory_order_relaxed);
    out->per_buyer_limit = atomic_load_explicit(&s->sale_limit, memory_order_relaxed);
    out->paused = atomic_load_explicit(&s->sale_paused, memory_order_relaxed) != 0;
}

/* Look the SKU up for a change or a read. */
static hs_result
sale_sku(hs_client *c, const char *sku, size_t sku_len, hs_header **h, hs_sku_slot **s)
{
    uint32_t si;
    hs_result r = HS_OK;

    if (c == NULL || !valid_len(sku, sku_len, HS_SKU_MAX)) {
        hs_set_error("hs_sale: sku must be 1..%d bytes", HS_SKU_MAX);
        return HS_BAD_ARGUMENT;
    }
    *h = client_segment(c, &r);
    if (*h == NULL)
        return r;
    r = sku_lookup(c, *h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    *s = &hs_sku_table(*h)[si];
    return HS_OK;
}

/* See hotstock.h. */
hs_result
hs_sale_configure(hs_client *c, const char *sku, size_t sku_len, uint64_t starts_at_ms,
                  uint64_t ends_at_ms, int32_t per_buyer_limit, hs_lsn *lsn)
{
    hs_header *h;
    hs_sku_slot *s;
    hs_sale sale;
    hs_result r;

    if (lsn != NULL)
        *lsn = 0;
    if ((starts_at_ms != 0 && ends_at_ms != 0 && starts_at_ms >= ends_at_ms) ||
        starts_at_ms > INT64_MAX || per_buyer_limit < 0) {
        hs_set_error("hs_sale_configure: starts_at must be before ends_at, the limit >= 0");
        return HS_BAD_ARGUMENT;
    }
    r = sale_sku(c, sku, sku_len, &h, &s);
    if (r != HS_OK)
        return r;
    r = sale_lock(c, s);
    if (r != HS_OK)
        return r;
    sale_read(s, &sale);
    sale.starts_at_ms = starts_at_ms;
    sale.ends_at_ms = ends_at_ms;
    sale.per_buyer_limit = per_buyer_limit;
    r = sale_record(c, h, (uint32_t)(s - hs_sku_table(h)), &sale, lsn);
    if (r == HS_OK) {
        atomic_store_explicit(&s->sale_limit, per_buyer_limit, memory_order_relaxed);
        atomic_store_explicit(&s->sale_start_ms, starts_at_ms, memory_order_relaxed);
        /* seq_cst: a take that starts after we return sees the window */
        atomic_store(&s->sale_end_ms, ends_at_ms);
    }
    sale_unlock(s);
    return r;
}

/* See hotstock.h. */
hs_result
hs_sale_pause(hs_client *c, const char *sku, size_t sku_len, bool paused, hs_lsn *lsn)
{
    hs_header *h;
    hs_sku_slot *s;
    hs_sale sale;
    hs_result r;
    uint32_t was;

    if (lsn != NULL)
        *lsn = 0;
    r = sale_sku(c, sku, sku_len, &h, &s);
    if (r != HS_OK)
        return r;
    r = sale_lock(c, s);
    if (r != HS_OK)
        return r;
    sale_read(s, &sale);
    was = sale.paused ? 1 : 0;
    sale.paused = paused;
    /* seq_cst: a take that starts after this store sees the pause */
    if (paused)
        atomic_store(&s->sale_paused, 1);
    r = sale_record(c, h, (uint32_t)(s - hs_sku_table(h)), &sale, lsn);
    if (r != HS_OK)
        atomic_store(&s->sale_paused, was);
    else if (!paused)
        atomic_store(&s->sale_paused, 0);
    sale_unlock(s);
    return r;
}

/* See hotstock.h. */
hs_result
hs_sale_get(hs_client *c, const char *sku, size_t sku_len, hs_sale *out)
{
    hs_header *h;
    hs_sku_slot *s;
    hs_result r;

    memset(out, 0, sizeof(*out));
    r = sale_sku(c, sku, sku_len, &h, &s);
    if (r == HS_OK)
        sale_read(s, out);
    return r;
}
