/*-------------------------------------------------------------------------
 *
 * sale.c
 *      Sale sessions: a SKU's window, pause switch and per-buyer limit
 *      (hotstock.h, "Sale sessions"), set by hs_sale_configure /
 *      hs_sale_pause and checked by every take (sale_check).
 *
 * What it shares: the SKU slot's sale_* fields (segment.h), under the
 * seqlock sale_seq: a writer (holding sale_locker) makes it odd, stores
 * the fields, makes it even again (release; seq_cst for the last store);
 * a take reads it (acquire), the fields, and it again, and uses the
 * fields only when both reads are the same even value, so it never mixes
 * an old start with a new end.  A take that keeps finding it odd (a
 * writer killed between its stores) is refused as paused (undersell)
 * until the next change repairs it.  The take checks once before it
 * claims anything and again after its counter change (deduct.c,
 * basket.c), so no take changes a counter after a pause returned.
 * Changes are serialised per SKU by sale_locker (a pid by CAS, taken over
 * from a dead holder) and recorded by a SALE record with the whole
 * configuration, so the record order is the order of the changes and a
 * restart rebuilds the last one.  A pause is stored before its record (it
 * stops sales at once; a failed append undoes it), everything else after
 * its record (nothing opens before it is in the queue).
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

/* Is the sale of s open at now_ms?  HS_OK, or why not. */
hs_result
sale_check(hs_sku_slot *s, uint64_t now_ms)
{
    for (int tries = 0; tries < 64; tries++) {
        /* seq_cst (an acquire at least): pairs with the writer's last
         * store; the fields read after it are the ones it published. */
        uint32_t seq = atomic_load(&s->sale_seq);
        uint64_t start, end;
        uint32_t paused;

        if (seq & 1) {
            sched_yield();
            continue;
        }
        start = atomic_load_explicit(&s->sale_start_ms, memory_order_relaxed);
        end = atomic_load_explicit(&s->sale_end_ms, memory_order_relaxed);
        paused = atomic_load_explicit(&s->sale_paused, memory_order_relaxed);
        /* the field loads stay before the second read of seq */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->sale_seq, memory_order_relaxed) != seq)
            continue;
        if (paused != 0)
            return HS_SALE_PAUSED;
        if (start != 0 && now_ms < start)
            return HS_SALE_NOT_OPEN;
        if (end != 0 && now_ms >= end)
            return HS_SALE_CLOSED;
        return HS_OK;
    }
    /* a change that never finished (its writer died between two stores):
     * sell nothing until the next change */
    return HS_SALE_PAUSED;
}

/* Store a configuration into s under the seqlock (we hold sale_locker). */
static void
sale_store(hs_sku_slot *s, const hs_sale *sale)
{
    uint32_t seq = atomic_load_explicit(&s->sale_seq, memory_order_relaxed) | 1;

    atomic_store_explicit(&s->sale_seq, seq, memory_order_relaxed);
    /* the field stores stay after the odd value */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->sale_start_ms, sale->starts_at_ms, memory_order_relaxed);
    atomic_store_explicit(&s->sale_end_ms, sale->ends_at_ms, memory_order_relaxed);
    atomic_store_explicit(&s->sale_limit, sale->per_buyer_limit, memory_order_relaxed);
    atomic_store_explicit(&s->sale_paused, sale->paused ? 1 : 0, memory_order_relaxed);
    /* seq_cst (a release): publishes the fields; a take that starts after
     * we return reads this value or a later one */
    atomic_store(&s->sale_seq, seq + 1);
}

/* Take s's sale_locker (bounded wait; a dead holder's is taken over). */
hs_result
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

void
sale_unlock(hs_sku_slot *s)
{
    atomic_store_explicit(&s->sale_locker, 0, memory_order_release);
}

/* Append the SALE record of this configuration for SKU slot si. */
static hs_result
sale_record(hs_client *c, hs_header *h, uint32_t si, const hs_sale *sale, hs_lsn *lsn)
{
    hs_ring_record rec;
    hs_lsn at = 0;
    hs_result r;

    record_init(&rec, HS_REC_SALE, si, (int64_t)sale->starts_at_ms);
    rec.xid = sale->ends_at_ms;
    rec.ttl_ms = (uint32_t)sale->per_buyer_limit;
    rec.flags = sale->paused ? HS_REC_FLAG_PAUSED : 0;
    r = append_record(c, h, &rec, &at);
    if (r == HS_OK && lsn != NULL)
        *lsn = at;
    return r;
}

/* The configuration in s (we hold sale_locker, or a snapshot for
 * hs_sale_get); false when a writer died half-way through storing it. */
bool
sale_read(hs_sku_slot *s, hs_sale *out)
{
    bool whole = (atomic_load(&s->sale_seq) & 1) == 0;

    out->starts_at_ms = atomic_load_explicit(&s->sale_start_ms, memory_order_relaxed);
    out->ends_at_ms = atomic_load_explicit(&s->sale_end_ms, memory_order_relaxed);
    out->per_buyer_limit = atomic_load_explicit(&s->sale_limit, memory_order_relaxed);
    out->paused = atomic_load_explicit(&s->sale_paused, memory_order_relaxed) != 0;
    return whole;
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
        starts_at_ms > HS_SALE_TIME_MAX_MS || ends_at_ms > HS_SALE_TIME_MAX_MS ||
        per_buyer_limit < 0) {
        hs_set_error("hs_sale_configure: starts_at must be before ends_at, both at most %" PRIu64
                     " ms, the limit >= 0",
                     (uint64_t)HS_SALE_TIME_MAX_MS);
        return HS_BAD_ARGUMENT;
    }
    r = sale_sku(c, sku, sku_len, &h, &s);
    if (r != HS_OK)
        return r;
    r = sale_lock(c, s);
    if (r != HS_OK)
        return r;
    /* a switch left half-stored by a dead writer is one word: kept */
    (void)sale_read(s, &sale);
    sale.starts_at_ms = starts_at_ms;
    sale.ends_at_ms = ends_at_ms;
    sale.per_buyer_limit = per_buyer_limit;
    r = sale_record(c, h, (uint32_t)(s - hs_sku_table(h)), &sale, lsn);
    if (r == HS_OK)
        sale_store(s, &sale);
    sale_unlock(s);
    return r;
}

/* See hotstock.h. */
hs_result
hs_sale_pause(hs_client *c, const char *sku, size_t sku_len, bool paused, hs_lsn *lsn)
{
    hs_header *h;
    hs_sku_slot *s;
    hs_sale sale, was;
    hs_result r;

    if (lsn != NULL)
        *lsn = 0;
    r = sale_sku(c, sku, sku_len, &h, &s);
    if (r != HS_OK)
        return r;
    r = sale_lock(c, s);
    if (r != HS_OK)
        return r;
    if (!sale_read(s, &sale)) {
        sale_unlock(s);
        hs_set_error("the sale of sku %.*s was left half-changed by a process that died: "
                     "configure it again (hs_sale_configure)",
                     (int)sku_len, sku);
        return HS_BAD_ARGUMENT;
    }
    was = sale;
    sale.paused = paused;
    /* a pause before its record: a take that starts after this store
     * sees it */
    if (paused)
        sale_store(s, &sale);
    r = sale_record(c, h, (uint32_t)(s - hs_sku_table(h)), &sale, lsn);
    if (r != HS_OK)
        sale_store(s, &was);
    else if (!paused)
        sale_store(s, &sale);
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
