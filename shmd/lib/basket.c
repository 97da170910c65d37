/*-------------------------------------------------------------------------
 *
 * basket.c
 *      Baskets: hs_deduct_basket() takes every line or none.
 *
 * Against other buyers: the basket's SKUs are locked together (the lock
 * bit of `available` and the slot's locker word, see counter.c) while the
 * lines are checked and taken.  Against a crash: the lines go to the
 * queue as one group of consecutive LSNs (ring.c, append_group()), which
 * the spiller and a recovering daemon write whole or as NOOPs only.
 *
 * Line i of an n-line basket B is the order "B" 0x1f "iinn" in the index,
 * with its own state machine (deduct.c's); line 0 is claimed first and
 * serialises two callers of the same basket.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

/* See hotstock.h. */
size_t
hs_basket_line_id(const char *order_id, size_t order_len, int i, int n, char *out)
{
    if (order_len > HS_BASKET_ID_MAX)
        order_len = HS_BASKET_ID_MAX;
    memcpy(out, order_id, order_len);
    out[order_len] = HS_BASKET_SEP;
    out[order_len + 1] = (char)('0' + (i / 10) % 10);
    out[order_len + 2] = (char)('0' + i % 10);
    out[order_len + 3] = (char)('0' + (n / 10) % 10);
    out[order_len + 4] = (char)('0' + n % 10);
    out[order_len + 5] = '\0';
    return order_len + 5;
}

/* See hotstock.h. */
hs_result
hs_basket_find(hs_client *c, const char *order_id, size_t order_len, int *n)
{
    char id[HS_ORDER_ID_MAX + 1];

    *n = 0;
    if (c == NULL || !valid_len(order_id, order_len, HS_BASKET_ID_MAX)) {
        hs_set_error("hs_basket_find: the basket id must be 1..%d bytes", HS_BASKET_ID_MAX);
        return HS_BAD_ARGUMENT;
    }
    for (int k = 1; k <= HS_BASKET_MAX; k++) {
        hs_order_status_code st;
        size_t len = hs_basket_line_id(order_id, order_len, 0, k, id);
        hs_result r = hs_order_status(c, id, len, &st, NULL, NULL);

        if (r == HS_OK) {
            *n = k;
            return HS_OK;
        }
        if (r != HS_NOT_FOUND)
            return r;
    }
    hs_set_error("no basket %.*s in the order index", (int)order_len, order_id);
    return HS_NOT_FOUND;
}

/* One line of a basket being taken. */
typedef struct basket_line {
    uint32_t si; /* its SKU's slot */
    int32_t qty;
    char id[HS_ORDER_ID_MAX + 1];
    size_t id_len;
    uint64_t hash;
    hs_order_slot *o; /* its order slot once claimed (PENDING, ours) */
    uint64_t bref;    /* its buyer's count (buyer.c), 0: not counted */
} basket_line;

/* Give up our PENDING claims of lines [0, n): nothing was taken. */
static void
lines_fail(basket_line *lines, int n)
{
    for (int i = 0; i < n; i++)
        if (lines[i].o != NULL) {
            order_fail(lines[i].o);
            lines[i].o = NULL;
        }
}

/*
 * Claim line l: absent or FAILED -> PENDING(me) (HS_OK, l->o set), or the
 * settled state the line is in (*settled, l->o NULL; *slot its slot and
 * *ver its version).  A live owner is waited for, a dead one settled
 * first (order_resolve_dead).  HS_NOT_FOUND: evicted meanwhile, look again.
 */
static hs_result
line_claim(hs_client *c, hs_header *h, basket_line *l, unsigned *settled, hs_order_slot **slot,
           uint32_t *ver)
{
    order_insert ins = {HS_INDEX_PENDING, l->si, l->qty};
    owner_wait ow = {0, 0};
    uint32_t oi;
    bool inserted;
    hs_order_slot *o;
    hs_result r;

    *settled = 0;
    r = order_probe(c, h, l->id, l->id_len, &ins, &oi, ver, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    *slot = o;
    if (inserted) {
        l->o = o;
        return HS_OK;
    }
    for (;;) {
        /* seq_cst (an acquire): pairs with the release of whoever set it */
        uint64_t w = atomic_load(&o->state);
        unsigned state = HS_STATE_OF(w);

        if (HS_VER_OF(w) != *ver || state == HS_INDEX_EVICTING)
            return HS_NOT_FOUND;
        if (state == HS_INDEX_FAILED) {
            /* acq_rel: ours now (a CAS from another version fails) */
            if (atomic_compare_exchange_strong_explicit(
                    &o->state, &w, HS_ORDER_NEXT(w, HS_INDEX_PENDING, self_pid()),
                    memory_order_acq_rel, memory_order_relaxed)) {
                o->sku_index = l->si;
                o->qty = l->qty;
                l->o = o;
                return HS_OK;
            }
            continue;
        }
        if (!order_owned_state(state) || state == HS_INDEX_REFUNDING) {
            *settled = state;
            return HS_OK;
        }
        r = order_wait_owner(c, h, &ow, o, w);
        if (r != HS_OK)
            return r;
    }
}

/* The answer for a basket whose line 0 is settled in `state`: a retry of
 * the same lines, or another basket under the same id. */
static hs_result
basket_settled(hs_client *c, hs_header *h, const char *order_id, size_t order_len,
               basket_line *lines, int n, unsigned state, hs_order_slot *o0, uint32_t ver0,
               bool reserve, uint64_t *expires_at_ms)
{
    bool held;

    for (int i = 0; i < n; i++) {
        hs_order_slot *o = o0;
        uint32_t oi, ver = ver0;
        bool inserted;

        if (i > 0) {
            hs_result r = order_probe(c, h, lines[i].id, lines[i].id_len, NULL, &oi, &ver,
                                      &inserted);
            if (r != HS_OK && r != HS_NOT_FOUND)
                return r;
            if (r == HS_NOT_FOUND)
                continue; /* evicted: line 0 speaks for the basket */
            o = &hs_order_table(h)[oi];
        }
        if ((o->sku_index != lines[i].si || o->qty != lines[i].qty) && order_still(o, ver)) {
            hs_set_error("basket %.*s was taken with other lines (line %d: qty %d)",
                         (int)order_len, order_id, i, (int)o->qty);
            return HS_ORDER_MISMATCH;
        }
    }
    /* Relaxed: published with the state the caller acquired. */
    held = atomic_load_explicit(&o0->deadline_ms, memory_order_relaxed) != 0;
    if (expires_at_ms != NULL)
        *expires_at_ms = atomic_load_explicit(&o0->deadline_ms, memory_order_relaxed);
    switch (state) {
    case HS_INDEX_DEDUCTED:
    case HS_INDEX_REFUNDING:
    case HS_INDEX_RESERVED:
        if (held != reserve) {
            hs_set_error(held ? "basket %.*s is a hold: confirm it"
                              : "basket %.*s is a deduction, not a hold",
                         (int)order_len, order_id);
            return HS_ORDER_MISMATCH;
        }
        return HS_DUPLICATE;
    case HS_INDEX_REFUNDED:
        return HS_ALREADY_REFUNDED;
    case HS_INDEX_CANCELLED:
        return HS_HOLD_CANCELLED;
    case HS_INDEX_EXPIRED:
        return HS_HOLD_EXPIRED;
    }
    hs_set_error("basket %.*s: line 0 is in state %u", (int)order_len, order_id, state);
    return HS_ORDER_MISMATCH;
}

/* Lines in the order their SKUs are locked: slot order (no cycles). */
static void
lock_order(const basket_line *lines, int n, int *order)
{
    for (int i = 0; i < n; i++) {
        int j = i;

        while (j > 0 && lines[order[j - 1]].si > lines[i].si) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* Give back the buyers' counts of lines [0, n). */
static void
lines_uncount(hs_header *h, basket_line *lines, int n)
{
    for (int i = 0; i < n; i++)
        if (lines[i].bref != 0)
            buyer_give(h, lines[i].bref, lines[i].qty);
}

/* Take a basket: deduct (ttl_ms 0) or hold its lines for ttl_ms, for
 * `buyer` (NULL: none) on the lines whose SKU has a per-buyer limit. */
static hs_result
basket_take(hs_client *c, const char *order_id, size_t order_len, int n, const char *const skus[],
            const size_t sku_lens[], const int32_t qtys[], const char *buyer, size_t buyer_len,
            uint64_t xid, uint32_t ttl_ms, hs_lsn evicted_checked, hs_lsn *lsn,
            uint64_t *expires_at_ms)
{
    const bool reserve = ttl_ms != 0;
    uint64_t deadline = 0;
    basket_line lines[HS_BASKET_MAX];
    hs_ring_record recs[HS_GROUP_MAX];
    int order[HS_BASKET_MAX];
    hs_header *h;
    hs_lsn first, at;
    uint32_t nrec = 0;
    uint64_t now_us;
    int locked = 0;
    hs_result r = HS_OK, closed = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (expires_at_ms != NULL)
        *expires_at_ms = 0;
    if (ttl_ms > HS_TTL_MAX_MS) {
        hs_set_error("hs_reserve_basket: ttl 1..%" PRIu32 " ms", HS_TTL_MAX_MS);
        return HS_BAD_ARGUMENT;
    }
    if (c == NULL || !valid_len(order_id, order_len, HS_BASKET_ID_MAX) ||
        memchr(order_id, HS_BASKET_SEP, order_len) != NULL || n < 1 || n > HS_BASKET_MAX ||
        skus == NULL || sku_lens == NULL || qtys == NULL || buyer_len > HS_BUYER_MAX ||
        (buyer == NULL && buyer_len != 0)) {
        hs_set_error("hs_deduct_basket: the basket id must be 1..%d bytes without byte 0x1f, "
                     "the basket 1..%d lines, the buyer 0..%d bytes",
                     HS_BASKET_ID_MAX, HS_BASKET_MAX, HS_BUYER_MAX);
        return HS_BAD_ARGUMENT;
    }
    for (int i = 0; i < n; i++) {
        if (!valid_len(skus[i], sku_lens[i], HS_SKU_MAX) || qtys[i] < 1 || qtys[i] > HS_QTY_MAX) {
            hs_set_error("hs_deduct_basket: line %d: sku must be 1..%d bytes, qty 1..%d", i,
                         HS_SKU_MAX, HS_QTY_MAX);
            return HS_BAD_ARGUMENT;
        }
        for (int j = 0; j < i; j++)
            if (sku_lens[j] == sku_lens[i] && memcmp(skus[j], skus[i], sku_lens[i]) == 0) {
                hs_set_error("hs_deduct_basket: sku %.*s is on lines %d and %d (one line per "
                             "sku)",
                             (int)sku_lens[i], skus[i], j, i);
                return HS_BAD_ARGUMENT;
            }
    }

again:
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    if ((uint32_t)(2 * n) >= h->ring_capacity) {
        hs_set_error("a basket of %d lines (up to %d records) does not fit the queue ring of %s "
                     "(%u slots)",
                     n, 2 * n, c->dir, h->ring_capacity);
        return HS_BAD_ARGUMENT;
    }
    for (int i = 0; i < n; i++) {
        basket_line *l = &lines[i];

        r = sku_lookup(c, h, skus[i], sku_lens[i], false, &l->si);
        if (r != HS_OK)
            return r;
        l->qty = qtys[i];
        l->id_len = hs_basket_line_id(order_id, order_len, i, n, l->id);
        l->hash = hs_hash(l->id, l->id_len);
        l->o = NULL;
    }

    /* 0. The sale sessions: a line outside its window or paused takes
     * nothing and claims nothing; a basket taken before still gets its
     * answer (a retry). */
    now_us = hs_now_unix_us();
    for (int i = 0; i < n && closed == HS_OK; i++)
        closed = sale_check(&hs_sku_table(h)[lines[i].si], now_us / 1000);
    if (closed != HS_OK) {
        uint32_t oi, ver;
        bool inserted;
        owner_wait ow = {0, 0};
        hs_order_slot *o;

        r = order_probe(c, h, lines[0].id, lines[0].id_len, NULL, &oi, &ver, &inserted);
        if (r == HS_NOT_FOUND) {
            /* maybe evicted: the caller's ledger answers a retry */
            if (evicted_checked != UINT64_MAX && hs_filter_maybe(h, lines[0].hash) &&
                atomic_load(&h->evicted_lsn) > evicted_checked) {
                hs_set_error("basket %.*s may have been evicted, the caller checked up to LSN "
                             "%" PRIu64,
                             (int)order_len, order_id, evicted_checked);
                return HS_EVICTED_CHANGED;
            }
            return closed;
        }
        if (r != HS_OK)
            return r;
        o = &hs_order_table(h)[oi];
        for (;;) {
            /* seq_cst (an acquire): pairs with the release of the last change */
            uint64_t w = atomic_load(&o->state);
            unsigned state = HS_STATE_OF(w);

            if (HS_VER_OF(w) != ver || state == HS_INDEX_EVICTING)
                goto again;
            if (state == HS_INDEX_FAILED)
                return closed;
            if (!order_owned_state(state) || state == HS_INDEX_REFUNDING)
                return basket_settled(c, h, order_id, order_len, lines, n, state, o, ver, reserve,
                                      expires_at_ms);
            /* a take in flight: its outcome answers a retry */
            r = order_wait_owner(c, h, &ow, o, w);
            if (r != HS_OK)
                return r;
        }
    }

    /* 1. Sold out and the basket unknown: answer without claiming slots
     * (as a lone deduction does, deduct.c step 1a). */
    for (int i = 0; i < n; i++) {
        hs_sku_slot *s = &hs_sku_table(h)[lines[i].si];

        if (counter_read(s) < lines[i].qty) {
            uint32_t oi, ver;
            bool inserted;

            r = order_probe(c, h, lines[0].id, lines[0].id_len, NULL, &oi, &ver, &inserted);
            if (r == HS_NOT_FOUND && !hs_filter_maybe(h, lines[0].hash)) {
                hs_stats_note(h, lines[i].si, HS_STAT_SOLD_OUT, 1);
                return HS_SOLD_OUT;
            }
            if (r != HS_OK && r != HS_NOT_FOUND)
                return r;
            break;
        }
    }

    /* 2. Claim the lines in line order; line 0 first serialises two
     * callers of one basket, and answers a retry. */
    for (int i = 0; i < n; i++) {
        hs_order_slot *o = NULL;
        uint32_t ver = 0;
        unsigned settled;

        r = line_claim(c, h, &lines[i], &settled, &o, &ver);
        if (r == HS_NOT_FOUND) {
            lines_fail(lines, i);
            goto again;
        }
        if (r != HS_OK) {
            lines_fail(lines, i);
            return r;
        }
        if (settled != 0 && i == 0)
            return basket_settled(c, h, order_id, order_len, lines, n, settled, o, ver, reserve,
                                  expires_at_ms);
        if (settled != 0) {
            lines_fail(lines, i);
            /* line 0 claimed anew while a later line is settled: line 0
             * was most likely evicted (its slot emptied first) */
            if (evicted_checked != UINT64_MAX && hs_filter_maybe(h, lines[0].hash) &&
                atomic_load(&h->evicted_lsn) > evicted_checked) {
                hs_set_error("basket %.*s may have been evicted, the caller checked up to LSN "
                             "%" PRIu64,
                             (int)order_len, order_id, evicted_checked);
                return HS_EVICTED_CHANGED;
            }
            hs_set_error("basket %.*s is partly known: line %d is settled (state %u) while "
                         "line 0 is not",
                         (int)order_len, order_id, i, settled);
            return HS_ORDER_MISMATCH;
        }
    }

    /* 2a. Ours now.  Was any line evicted (a retry of an old basket)?
     * seq_cst, after the claims: see segment.h, EVICTION. */
    if (evicted_checked != UINT64_MAX) {
        hs_lsn evicted = atomic_load(&h->evicted_lsn);

        for (int i = 0; i < n && evicted > evicted_checked; i++)
            if (hs_filter_maybe(h, lines[i].hash)) {
                lines_fail(lines, n);
                hs_set_error("basket %.*s may have been evicted (orders up to LSN %" PRIu64
                             "), the caller checked up to LSN %" PRIu64,
                             (int)order_len, order_id, evicted, evicted_checked);
                return HS_EVICTED_CHANGED;
            }
    }

    /* 2b. xid and the deadline (0: no hold) before the records (deduct.c,
     * step 2b): one deadline for every line. */
    if (reserve)
        deadline = now_us / 1000 + ttl_ms;
    for (int i = 0; i < n; i++) {
        atomic_store_explicit(&lines[i].o->xid, xid, memory_order_relaxed);
        atomic_store_explicit(&lines[i].o->deadline_ms, deadline, memory_order_relaxed);
    }

    /* 2c. The buyer's count on every line whose SKU has a per-buyer
     * limit (deduct.c, 2c), before the counters; any line over its limit
     * refuses the whole basket. */
    for (int i = 0; i < n; i++) {
        r = buyer_count(c, h, &hs_sku_table(h)[lines[i].si], lines[i].si, false, buyer,
                        buyer_len, lines[i].qty, &lines[i].bref);
        if (r != HS_OK) {
            lines_uncount(h, lines, i);
            lines_fail(lines, n);
            return r;
        }
        order_buyer_set(h, (uint32_t)(lines[i].o - hs_order_table(h)), lines[i].bref, 0);
    }

    /* 3. Lock every SKU (slot order), check every line, take all or none. */
    lock_order(lines, n, order);
    for (; locked < n; locked++)
        if (!counter_lock(&hs_sku_table(h)[lines[order[locked]].si]))
            break;
    if (locked == n) {
        for (int i = 0; i < n; i++) {
            hs_sku_slot *s = &hs_sku_table(h)[lines[i].si];
            /* Relaxed: we hold the lock; decrements wait for it, and
             * increments only make more. */
            int64_t units = atomic_load_explicit(&s->available, memory_order_relaxed) &
                            ~HS_AVAILABLE_LOCKED;

            if (units < lines[i].qty) {
                hs_stats_note(h, lines[i].si, HS_STAT_SOLD_OUT, 1);
                r = HS_SOLD_OUT;
                break;
            }
        }
        /* The sales again, under the locks: a pause (or a window's end)
         * that came while we waited for them stops us too. */
        {
            uint64_t again_ms = hs_now_unix_us() / 1000;

            for (int i = 0; i < n && r == HS_OK; i++)
                r = sale_check(&hs_sku_table(h)[lines[i].si], again_ms);
        }
    } else {
        hs_set_error("basket %.*s: a sku is locked by a basket of a live process that has not "
                     "let go for %d ms",
                     (int)order_len, order_id, HS_OWNER_WAIT_MS);
        r = HS_QUEUE_FULL;
    }
    for (int k = 0; k < locked; k++) {
        const basket_line *l = &lines[order[k]];

        counter_unlock(&hs_sku_table(h)[l->si], r == HS_OK ? l->qty : 0);
    }
    if (r != HS_OK) {
        lines_uncount(h, lines, n);
        lines_fail(lines, n);
        return r;
    }

    /* 4. The records, one group: each line after its buyer's BUYER. */
    for (int i = 0; i < n; i++) {
        hs_ring_record *rec;

        if (lines[i].bref != 0 &&
            !buyer_record(h, lines[i].si, lines[i].bref, lines[i].qty, 0, &recs[nrec++])) {
            nrec--;
            lines[i].bref = 0; /* forgotten meanwhile: nothing counted */
        }
        rec = &recs[nrec++];
        record_init(rec, reserve ? HS_REC_RESERVE : HS_REC_DEDUCT, lines[i].si, lines[i].qty);
        rec->timestamp_us = now_us;
        rec->ttl_ms = ttl_ms;
        rec->order_len = (uint8_t)lines[i].id_len;
        rec->order_index = (uint32_t)(lines[i].o - hs_order_table(h));
        rec->xid = xid;
        memcpy(rec->order_id, lines[i].id, lines[i].id_len);
    }
    r = append_group(c, h, recs, nrec, &first);
    if (r != HS_OK) {
        for (int i = 0; i < n; i++)
            counter_give(&hs_sku_table(h)[lines[i].si], lines[i].qty);
        lines_uncount(h, lines, n);
        lines_fail(lines, n);
        return r;
    }

    /* 5. Done: every line DEDUCTED or RESERVED (release, in order_set). */
    at = first;
    for (int i = 0; i < n; i++) {
        if (lines[i].bref != 0)
            order_buyer_set(h, (uint32_t)(lines[i].o - hs_order_table(h)), lines[i].bref, at++);
        atomic_store_explicit(&lines[i].o->deducted_lsn, at++, memory_order_relaxed);
        order_set(lines[i].o, reserve ? HS_INDEX_RESERVED : HS_INDEX_DEDUCTED);
    }
    if (lsn != NULL)
        *lsn = at - 1;
    if (expires_at_ms != NULL)
        *expires_at_ms = deadline;
    return HS_OK;
}

/* See hotstock.h. */
hs_result
hs_deduct_basket(hs_client *c, const char *order_id, size_t order_len, int n,
                 const char *const skus[], const size_t sku_lens[], const int32_t qtys[],
                 uint64_t xid, hs_lsn evicted_checked, hs_lsn *lsn)
{
    return basket_take(c, order_id, order_len, n, skus, sku_lens, qtys, NULL, 0, xid, 0,
                       evicted_checked, lsn, NULL);
}

/* See hotstock.h. */
hs_result
hs_deduct_basket_for(hs_client *c, const char *order_id, size_t order_len, int n,
                     const char *const skus[], const size_t sku_lens[], const int32_t qtys[],
                     const char *buyer, size_t buyer_len, uint64_t xid, hs_lsn evicted_checked,
                     hs_lsn *lsn)
{
    return basket_take(c, order_id, order_len, n, skus, sku_lens, qtys, buyer, buyer_len, xid, 0,
                       evicted_checked, lsn, NULL);
}

/* See hotstock.h. */
hs_result
hs_reserve_basket(hs_client *c, const char *order_id, size_t order_len, int n,
                  const char *const skus[], const size_t sku_lens[], const int32_t qtys[],
                  uint64_t xid, uint32_t ttl_ms, hs_lsn evicted_checked, hs_lsn *lsn,
                  uint64_t *expires_at_ms)
{
    if (ttl_ms < 1) {
        hs_set_error("hs_reserve_basket: ttl 1..%" PRIu32 " ms", HS_TTL_MAX_MS);
        return HS_BAD_ARGUMENT;
    }
    return basket_take(c, order_id, order_len, n, skus, sku_lens, qtys, NULL, 0, xid, ttl_ms,
                       evicted_checked, lsn, expires_at_ms);
}

/* See hotstock.h. */
hs_result
hs_reserve_basket_for(hs_client *c, const char *order_id, size_t order_len, int n,
                      const char *const skus[], const size_t sku_lens[], const int32_t qtys[],
                      const char *buyer, size_t buyer_len, uint64_t xid, uint32_t ttl_ms,
                      hs_lsn evicted_checked, hs_lsn *lsn, uint64_t *expires_at_ms)
{
    if (ttl_ms < 1) {
        hs_set_error("hs_reserve_basket: ttl 1..%" PRIu32 " ms", HS_TTL_MAX_MS);
        return HS_BAD_ARGUMENT;
    }
    return basket_take(c, order_id, order_len, n, skus, sku_lens, qtys, buyer, buyer_len, xid,
                       ttl_ms, evicted_checked, lsn, expires_at_ms);
}
