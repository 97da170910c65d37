/*-------------------------------------------------------------------------
 *
 * buyer.c
 *      Per-buyer limits (hotstock.h, "Per-buyer limits"): the table of
 *      (SKU, buyer) entries, the check-and-count every take makes, the
 *      give-back, the BUYER records, and the daemon's forgetting of a
 *      sale's buyers once it has ended.
 *
 * What it shares: the buyer table and the order slots' hs_order_buyer
 * (segment.h).  In short:
 *
 *   - Probes are lock-free: a probe passes every slot that does not hold
 *     its key and stops at the first EMPTY one.  Inserts of one key are
 *     serialised by the order index's stripe lock of the key's hash
 *     (index.c), and an insert looks at the whole chain up to its EMPTY
 *     end before it fills a slot; no slot ever becomes EMPTY again while
 *     the segment lives (a forgotten entry is GONE, which probes pass and
 *     inserts reuse), so a key is never in the table twice.
 *   - A slot's key is written only while it is INSERTING(pid) and read
 *     between two loads of `state` that must agree (the version changes
 *     with every reuse).
 *   - The count is `units` = HS_BUYER_WORD(version, units), changed only by
 *     CAS: a take adds its qty if the sum stays within the limit (the
 *     check and the count are one step, so two takes of one buyer never
 *     pass the limit together), a give-back subtracts.  Both name the
 *     version they found: once the daemon forgets the entry (units'
 *     version first, then the state's), neither changes the next buyer of
 *     the slot.
 *   - Order of effects, as for the counters (client_internal.h): a take
 *     counts before its counter and its record (a death in between keeps
 *     the units counted: undersell); a give-back appends its records
 *     first and counts down after.  The records of the count (BUYER, in
 *     the same group as the DEDUCT, RESERVE, REFUND, CANCEL or EXPIRE) are
 *     what a restart rebuilds it from (checkpoint.c).
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

static uint64_t
buyer_hash(uint32_t si, const char *buyer, size_t len)
{
    return hs_hash(buyer, len) ^ ((uint64_t)(si + 1) * UINT64_C(0x9e3779b97f4a7c15));
}

/* Does slot b hold (si, buyer) as LIVE?  *w: the state word it was read
 * with (acquire: pairs with the release store of LIVE, which published
 * the key). */
static bool
buyer_match(hs_buyer_slot *b, uint64_t hash, uint32_t si, const char *buyer, size_t len,
            uint64_t *w)
{
    bool same;

    *w = atomic_load_explicit(&b->state, memory_order_acquire);
    if (HS_STATE_OF(*w) != HS_BUYER_LIVE)
        return false;
    same = b->hash == hash && b->sku_index == si && b->buyer_len == len &&
           memcmp(b->buyer, buyer, len) == 0;
    /* the key loads stay before the second load of state */
    atomic_thread_fence(memory_order_acquire);
    return same && atomic_load_explicit(&b->state, memory_order_relaxed) == *w;
}

/* Probe for (si, buyer): HS_OK and *out, or HS_NOT_FOUND.  With `reuse`
 * (under the key's stripe lock), also the first slot an insert may take:
 * a GONE slot, an abandoned insert, or the EMPTY end of the chain
 * (UINT32_MAX when the table has none). */
static hs_result
buyer_probe(hs_header *h, uint64_t hash, uint32_t si, const char *buyer, size_t len,
            buyer_ref *out, uint32_t *reuse)
{
    const uint32_t mask = h->buyer_capacity - 1;
    hs_buyer_slot *table = hs_buyer_table(h);

    if (reuse != NULL)
        *reuse = UINT32_MAX;
    for (uint32_t i = 0; i <= mask; i++) {
        uint32_t k = (uint32_t)(hash + i) & mask;
        hs_buyer_slot *b = &table[k];
        uint64_t w;

        if (buyer_match(b, hash, si, buyer, len, &w)) {
            out->index = k;
            out->ver = HS_VER_OF(w);
            return HS_OK;
        }
        if (reuse != NULL && *reuse == UINT32_MAX &&
            (HS_STATE_OF(w) == HS_BUYER_EMPTY || HS_STATE_OF(w) == HS_BUYER_GONE ||
             (HS_STATE_OF(w) == HS_BUYER_INSERTING && hs_pid_gone(HS_PID_OF(w)))))
            *reuse = k;
        if (HS_STATE_OF(w) == HS_BUYER_EMPTY)
            break;
    }
    return HS_NOT_FOUND;
}

/* Fill slot k (claimed: INSERTING(me) of word w) with the key and publish
 * it LIVE with no units. */
static void
buyer_fill(hs_header *h, uint32_t k, uint64_t w, uint64_t hash, uint32_t si, const char *buyer,
           size_t len)
{
    hs_buyer_slot *b = &hs_buyer_table(h)[k];

    b->hash = hash;
    b->sku_index = si;
    b->buyer_len = (uint8_t)len;
    memcpy(b->buyer, buyer, len);
    memset(b->buyer + len, 0, sizeof(b->buyer) - len);
    atomic_store_explicit(&b->units, HS_BUYER_WORD(HS_VER_OF(w), 0), memory_order_relaxed);
    /* Release: publishes the key and units; pairs with buyer_match(). */
    atomic_store_explicit(&b->state, HS_ORDER_NEXT(w, HS_BUYER_LIVE, 0), memory_order_release);
    /* Relaxed: a statistic. */
    atomic_fetch_add_explicit(&h->buyer_count, 1, memory_order_relaxed);
}

/* See client_internal.h.  Find (si, buyer); with create, insert it with no
 * units when absent.  HS_OK and *out, HS_NOT_FOUND (without create),
 * HS_TABLE_FULL (3/4 of the slots used and no GONE one on the way), or a
 * stripe lock failure. */
hs_result
buyer_find(const hs_client *c, hs_header *h, uint32_t si, const char *buyer, size_t len,
           bool create, buyer_ref *out)
{
    const uint64_t hash = buyer_hash(si, buyer, len);
    hs_stripe *lock;
    uint32_t k;
    hs_result r;

    r = buyer_probe(h, hash, si, buyer, len, out, NULL);
    if (r != HS_NOT_FOUND || !create)
        return r;
    r = stripe_lock(c, h, hash, &lock);
    if (r != HS_OK)
        return r;
    for (;;) {
        hs_buyer_slot *b;
        uint64_t w;

        r = buyer_probe(h, hash, si, buyer, len, out, &k);
        if (r == HS_OK)
            break;
        b = &hs_buyer_table(h)[k == UINT32_MAX ? 0 : k];
        w = atomic_load_explicit(&b->state, memory_order_acquire);
        if (k == UINT32_MAX ||
            (HS_STATE_OF(w) == HS_BUYER_EMPTY &&
             atomic_load_explicit(&h->buyer_used, memory_order_relaxed) >=
                 h->buyer_capacity / 4 * 3)) {
            hs_set_error("the buyer table is full (%u slots, %u counted): raise buyer_capacity",
                         h->buyer_capacity, atomic_load(&h->buyer_count));
            r = HS_TABLE_FULL;
            break;
        }
        if (HS_STATE_OF(w) == HS_BUYER_LIVE ||
            (HS_STATE_OF(w) == HS_BUYER_INSERTING && !hs_pid_gone(HS_PID_OF(w))))
            continue; /* taken by another key's insert meanwhile: look again */
        /* acq_rel: ours now (another key's inserter may race us for it) */
        if (!atomic_compare_exchange_strong_explicit(
                &b->state, &w, HS_ORDER_NEXT(w, HS_BUYER_INSERTING, self_pid()),
                memory_order_acq_rel, memory_order_relaxed))
            continue;
        if (HS_STATE_OF(w) == HS_BUYER_EMPTY)
            atomic_fetch_add_explicit(&h->buyer_used, 1, memory_order_relaxed);
        /* the key's stores stay after the claim (probes re-check state) */
        atomic_thread_fence(memory_order_release);
        w = HS_ORDER_NEXT(w, HS_BUYER_INSERTING, self_pid());
        buyer_fill(h, k, w, hash, si, buyer, len);
        out->index = k;
        out->ver = HS_VER_OF(w);
        r = HS_OK;
        break;
    }
    stripe_unlock(lock);
    return r;
}

/* See client_internal.h.  Count qty more units for the buyer if that keeps
 * it within limit: 1 counted, 0 over the limit (nothing changed), -1 the
 * entry was forgotten since it was found (look it up again). */
int
buyer_take(hs_header *h, buyer_ref ref, int32_t qty, int32_t limit)
{
    hs_buyer_slot *b = &hs_buyer_table(h)[ref.index];
    uint64_t w = atomic_load_explicit(&b->units, memory_order_relaxed);

    for (;;) {
        int64_t units = HS_BUYER_UNITS(w);

        if (HS_VER_OF(w) != ref.ver)
            return -1;
        if (units + qty > limit)
            return 0;
        /* acq_rel: one total order of the counts of this entry */
        if (atomic_compare_exchange_weak_explicit(&b->units, &w,
                                                  HS_BUYER_WORD(ref.ver, units + qty),
                                                  memory_order_acq_rel, memory_order_relaxed))
            return 1;
    }
}

/* The slot and version of an hs_order_buyer ref word. */
static buyer_ref
ref_of(uint64_t ref_word)
{
    buyer_ref ref = {(uint32_t)ref_word - 1, (uint32_t)(ref_word >> 32)};
    return ref;
}

/* See client_internal.h.  Count qty units back for the buyer of ref_word
 * (an hs_order_buyer ref, not 0), unless the entry was forgotten. */
void
buyer_give(hs_header *h, uint64_t ref_word, int32_t qty)
{
    buyer_ref ref = ref_of(ref_word);
    hs_buyer_slot *b;
    uint64_t w;

    if (ref.index >= h->buyer_capacity)
        return;
    b = &hs_buyer_table(h)[ref.index];
    w = atomic_load_explicit(&b->units, memory_order_relaxed);
    for (;;) {
        int64_t units = HS_BUYER_UNITS(w) - qty;

        if (HS_VER_OF(w) != ref.ver)
            return;
        if (atomic_compare_exchange_weak_explicit(&b->units, &w,
                                                  HS_BUYER_WORD(ref.ver, units < 0 ? 0 : units),
                                                  memory_order_acq_rel, memory_order_relaxed))
            return;
    }
}

/* See client_internal.h.  Fill *rec with the BUYER record that changes the
 * count of ref_word's buyer by delta (take_lsn: a give-back's take, 0 for a
 * take).  false when the entry was forgotten (no record then). */
bool
buyer_record(hs_header *h, uint32_t si, uint64_t ref_word, int32_t delta, hs_lsn take_lsn,
             hs_ring_record *rec)
{
    buyer_ref ref = ref_of(ref_word);
    hs_buyer_slot *b;
    uint64_t w;

    if (ref_word == 0 || ref.index >= h->buyer_capacity)
        return false;
    b = &hs_buyer_table(h)[ref.index];
    /* Acquire: pairs with the release store of LIVE (the key). */
    w = atomic_load_explicit(&b->state, memory_order_acquire);
    if (HS_STATE_OF(w) != HS_BUYER_LIVE || HS_VER_OF(w) != ref.ver || b->sku_index != si ||
        b->buyer_len < 1 || b->buyer_len > HS_BUYER_MAX)
        return false;
    record_init(rec, HS_REC_BUYER, si, delta);
    rec->order_len = b->buyer_len;
    memcpy(rec->order_id, b->buyer, b->buyer_len);
    rec->xid = take_lsn;
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&b->state, memory_order_relaxed) == w;
}

/* See client_internal.h.  Count qty units of SKU slot si (s) for a take
 * under the SKU's per-buyer limit: for `buyer`, or with retake for the
 * buyer *ref_word names (an ended hold's).  HS_OK and *ref_word (0 when
 * the SKU has no limit: nothing counted), HS_BUYER_LIMIT, or a failure
 * to insert the buyer (HS_TABLE_FULL, ...). */
hs_result
buyer_count(hs_client *c, hs_header *h, hs_sku_slot *s, uint32_t si, bool retake,
            const char *buyer, size_t buyer_len, int32_t qty, uint64_t *ref_word)
{
    const int32_t limit = sale_limit(s);
    buyer_ref ref;
    hs_result r;

    if (limit <= 0) {
        *ref_word = 0; /* nothing counted (a retake's hold keeps its reference) */
        return HS_OK;
    }
    for (;;) {
        int taken;

        if (retake) {
            if (*ref_word == 0) {
                hs_set_error("sku %.*s sells at most %d per buyer and the hold named no buyer "
                             "(or its sale's buyers were forgotten)",
                             (int)s->sku_len, s->sku, (int)limit);
                hs_stats_note(h, si, HS_STAT_LIMIT_REFUSAL, 1);
                return HS_BUYER_LIMIT;
            }
            ref.index = (uint32_t)*ref_word - 1;
            ref.ver = (uint32_t)(*ref_word >> 32);
        } else {
            if (buyer == NULL || buyer_len == 0) {
                hs_set_error("sku %.*s sells at most %d per buyer: name the buyer",
                             (int)s->sku_len, s->sku, (int)limit);
                hs_stats_note(h, si, HS_STAT_LIMIT_REFUSAL, 1);
                return HS_BUYER_LIMIT;
            }
            r = buyer_find(c, h, si, buyer, buyer_len, true, &ref);
            if (r != HS_OK)
                return r;
        }
        taken = buyer_take(h, ref, qty, limit);
        if (taken > 0) {
            *ref_word = HS_BUYER_WORD(ref.ver, ref.index + 1);
            return HS_OK;
        }
        if (taken == 0) {
            hs_buyer_slot *b = &hs_buyer_table(h)[ref.index];

            hs_set_error("buyer %.*s holds %d of sku %.*s and asks for %d more: the limit is %d",
                         (int)b->buyer_len, b->buyer,
                         (int)HS_BUYER_UNITS(atomic_load_explicit(&b->units,
                                                                  memory_order_relaxed)),
                         (int)s->sku_len, s->sku, (int)qty, (int)limit);
            hs_stats_note(h, si, HS_STAT_LIMIT_REFUSAL, 1);
            return HS_BUYER_LIMIT;
        }
        if (retake)
            *ref_word = 0; /* forgotten since: no buyer to count for */
    }
}

/* See client_internal.h.  The per-buyer limit of s now (0: none).
 * Relaxed: one word; a take races a change of the limit like any other
 * change of the configuration. */
int32_t
sale_limit(hs_sku_slot *s)
{
    return atomic_load_explicit(&s->sale_limit, memory_order_relaxed);
}

/* See hotstock.h. */
hs_result
hs_buyer_units(hs_client *c, const char *sku, size_t sku_len, const char *buyer, size_t buyer_len,
               int32_t *units)
{
    hs_header *h;
    buyer_ref ref;
    uint32_t si;
    uint64_t w;
    hs_result r = HS_OK;

    if (units != NULL)
        *units = 0;
    if (c == NULL || units == NULL || !valid_len(sku, sku_len, HS_SKU_MAX) ||
        !valid_len(buyer, buyer_len, HS_BUYER_MAX)) {
        hs_set_error("hs_buyer_units: sku 1..%d bytes, buyer 1..%d bytes", HS_SKU_MAX,
                     HS_BUYER_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = sku_lookup(c, h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    if (buyer_find(c, h, si, buyer, buyer_len, false, &ref) != HS_OK)
        return HS_OK;
    w = atomic_load_explicit(&hs_buyer_table(h)[ref.index].units, memory_order_relaxed);
    if (HS_VER_OF(w) == ref.ver)
        *units = HS_BUYER_UNITS(w);
    return HS_OK;
}

/*-------------------------------------------------------------------------
 * The daemon's side
 *-------------------------------------------------------------------------
 */

/* See segment.h.  Daemon build only (one thread, state STARTING). */
hs_result
hs_buyer_install(hs_header *h, uint32_t si, const char *buyer, size_t len, int32_t units,
                 uint64_t *ref_word)
{
    const uint64_t hash = buyer_hash(si, buyer, len);
    buyer_ref ref;
    uint32_t k;

    if (!valid_len(buyer, len, HS_BUYER_MAX) || units < 0) {
        hs_set_error("cannot install buyer: length %zu, units %d", len, (int)units);
        return HS_BAD_ARGUMENT;
    }
    if (buyer_probe(h, hash, si, buyer, len, &ref, &k) == HS_OK) {
        *ref_word = HS_BUYER_WORD(ref.ver, ref.index + 1);
        return HS_DUPLICATE;
    }
    if (k == UINT32_MAX || atomic_load(&h->buyer_used) >= h->buyer_capacity / 4 * 3) {
        hs_set_error("the buyer table is full (%u slots) while building the segment: raise "
                     "buyer_capacity",
                     h->buyer_capacity);
        return HS_TABLE_FULL;
    }
    atomic_fetch_add_explicit(&h->buyer_used, 1, memory_order_relaxed);
    buyer_fill(h, k, HS_STATE_WORD(HS_BUYER_INSERTING, 0), hash, si, buyer, len);
    atomic_store_explicit(&hs_buyer_table(h)[k].units, HS_BUYER_WORD(0, units),
                          memory_order_relaxed);
    *ref_word = HS_BUYER_WORD(0, k + 1);
    return HS_OK;
}

/* See segment.h.  The daemon's forgetting of sku slot si's buyers, under
 * the SKU's sale_locker (no hs_sale_configure reopens the sale meanwhile,
 * and takes are refused while it is closed), once its sale ended at or
 * before ended_by_ms: the FORGET record first (a restart then forgets
 * them too), then every LIVE entry of si becomes GONE: its units' version
 * moves first (no take or give-back of a reference found before changes
 * it after), then its state's.  *forgotten: how many.  HS_DUPLICATE when
 * the sale has not ended by then (reopened): nothing forgotten. */
hs_result
hs_buyers_forget(hs_client *c, uint32_t si, uint64_t ended_by_ms, hs_lsn *lsn,
                 uint32_t *forgotten)
{
    hs_ring_record rec;
    hs_header *h;
    hs_sku_slot *s;
    hs_sale sale;
    hs_result r = HS_OK;
    uint32_t n = 0;

    *forgotten = 0;
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    if (si >= h->sku_capacity)
        return HS_BAD_ARGUMENT;
    s = &hs_sku_table(h)[si];
    r = sale_lock(c, s);
    if (r != HS_OK)
        return r;
    if (!sale_read(s, &sale) || sale.ends_at_ms == 0 || sale.ends_at_ms > ended_by_ms) {
        sale_unlock(s);
        return HS_DUPLICATE;
    }
    record_init(&rec, HS_REC_BUYER, si, 0);
    r = append_record(c, h, &rec, lsn);
    if (r != HS_OK) {
        sale_unlock(s);
        return r;
    }
    for (uint32_t k = 0; k < h->buyer_capacity; k++) {
        hs_buyer_slot *b = &hs_buyer_table(h)[k];
        uint64_t w = atomic_load_explicit(&b->state, memory_order_acquire);
        uint64_t u;

        if (HS_STATE_OF(w) != HS_BUYER_LIVE || b->sku_index != si)
            continue;
        u = atomic_load_explicit(&b->units, memory_order_relaxed);
        while (HS_VER_OF(u) == HS_VER_OF(w) &&
               !atomic_compare_exchange_weak_explicit(
                   &b->units, &u, HS_BUYER_WORD(HS_VER_OF(w) + 1, 0), memory_order_acq_rel,
                   memory_order_relaxed))
            ;
        /* acq_rel; only the daemon moves a LIVE slot on */
        if (atomic_compare_exchange_strong_explicit(
                &b->state, &w,
                ((uint64_t)(HS_VER_OF(w) + 1) << 32) | HS_STATE_WORD(HS_BUYER_GONE, 0),
                memory_order_acq_rel, memory_order_relaxed)) {
            atomic_fetch_sub_explicit(&h->buyer_count, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&h->buyers_forgotten, 1, memory_order_relaxed);
            n++;
        }
    }
    sale_unlock(s);
    *forgotten = n;
    return HS_OK;
}
