/*-------------------------------------------------------------------------
 *
 * index.c
 *      The SKU table and the order index: probing, inserting, dead owners.
 *
 * One probing scheme (open addressing, linear probe), shared by every
 * call; the daemon's build installs recovered orders with its own loop
 * (shmd/daemon/segment_build.c) and its evictor empties order slots
 * (shmd/daemon/evictor.c), both by the rules of segment.h (EVICTION).  A
 * slot is claimed EMPTY -> INSERTING(pid) -> PENDING(pid) by CAS under the
 * id's stripe lock; only the owner moves an owned slot on while its pid
 * lives; a waiter that finds the owner dead takes the slot over and
 * decides from `recorded` once the spiller passed every reserved LSN.
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
 * SKU table
 *-------------------------------------------------------------------------
 */

/* One step of waiting for a slot whose state word is w (owner pid inside).
 * Returns 1 when the owner is gone (the caller resolves the slot), 0 to
 * look again, or -1 with *res when the wait is over (budget spent,
 * daemon down).  h may be NULL (no daemon check: the daemon's build). */
int
owner_wait_step(const hs_client *c, hs_header *h, owner_wait *ow, uint64_t w, hs_result *res)
{
    pid_t owner = HS_PID_OF(w);

    if (ow->round < HS_SPIN_ROUNDS) {
        backoff(&ow->round);
        return 0;
    }
    if (owner != self_pid() && hs_pid_gone(owner))
        return 1;
    if (ow->since_ms == 0)
        ow->since_ms = hs_now_monotonic_ms();
    else if (hs_now_monotonic_ms() - ow->since_ms > HS_OWNER_WAIT_MS) {
        hs_set_error("a slot is held by live process %d for more than %d ms", (int)owner,
                     HS_OWNER_WAIT_MS);
        *res = HS_QUEUE_FULL;
        return -1;
    }
    if (c != NULL && h != NULL && (ow->round & 7) == 0 && !daemon_alive(c, h, res))
        return -1;
    backoff(&ow->round);
    return 0;
}

/* See segment.h.  Lock-free lookup; with create, inserts by CAS
 * EMPTY -> INSERTING(pid) -> READY (release).  A slot stuck in INSERTING
 * by a live process for HS_OWNER_WAIT_MS gives HS_QUEUE_FULL ("busy"). */
hs_result
hs_sku_find(hs_header *h, const char *sku, size_t len, bool create, uint32_t *index)
{
    const uint64_t hash = hs_hash(sku, len);
    const uint32_t mask = h->sku_capacity - 1;
    hs_sku_slot *table = hs_sku_table(h);
    const pid_t me = self_pid();
    hs_result r;

    for (uint32_t i = 0; i <= mask; i++) {
        uint32_t k = (uint32_t)(hash + i) & mask;
        hs_sku_slot *s = &table[k];
        owner_wait ow = {0, 0};

        for (;;) {
            /* Acquire: pairs with the release store of READY below, which
             * publishes hash and name. */
            uint64_t w = atomic_load_explicit(&s->state, memory_order_acquire);
            unsigned state = HS_STATE_OF(w);

            if (state == HS_SKU_READY) {
                if (s->hash == hash && s->sku_len == len && memcmp(s->sku, sku, len) == 0) {
                    *index = k;
                    return HS_OK;
                }
                break;
            }
            if (state == HS_SKU_EMPTY) {
                if (!create)
                    return HS_UNKNOWN_SKU;
                /* acq_rel on success: we own the slot; on failure we look
                 * at the winner's word again (acquire). */
                if (!atomic_compare_exchange_strong_explicit(
                        &s->state, &w, HS_STATE_WORD(HS_SKU_INSERTING, me), memory_order_acq_rel,
                        memory_order_acquire))
                    continue;
                s->hash = hash;
                s->sku_len = (uint8_t)len;
                memcpy(s->sku, sku, len);
                s->sku[len] = '\0';
                /* Relaxed: published by the release store of READY. */
                atomic_store_explicit(&s->available, 0, memory_order_relaxed);
                /* Release: publishes hash, name and counter; pairs with the
                 * acquire load above in every prober. */
                atomic_store_explicit(&s->state, HS_STATE_WORD(HS_SKU_READY, 0),
                                      memory_order_release);
                /* Relaxed: a statistic. */
                atomic_fetch_add_explicit(&h->sku_count, 1, memory_order_relaxed);
                *index = k;
                return HS_OK;
            }
            if (state == HS_SKU_INSERTING) {
                /* It may be our name being inserted: wait for it. */
                int step = owner_wait_step(NULL, NULL, &ow, w, &r);
                if (step < 0)
                    return r;
                if (step > 0)
                    /* acq_rel: the dead owner's partial writes are never
                     * read; probes pass over DEAD. */
                    atomic_compare_exchange_strong_explicit(
                        &s->state, &w, HS_STATE_WORD(HS_SKU_DEAD, 0), memory_order_acq_rel,
                        memory_order_acquire);
                continue;
            }
            break; /* DEAD (or unknown): never matches */
        }
    }
    return create ? HS_TABLE_FULL : HS_UNKNOWN_SKU;
}

/* Find a SKU for a call: HS_OK and the slot, or the failure with a message. */
hs_result
sku_lookup(hs_client *c, hs_header *h, const char *sku, size_t len, bool create, uint32_t *index)
{
    hs_result r = hs_sku_find(h, sku, len, create, index);

    if (r == HS_UNKNOWN_SKU)
        hs_set_error("unknown sku \"%.*s\" in %s", (int)len, sku, c->dir);
    else if (r == HS_TABLE_FULL)
        hs_set_error("sku table of %s is full (%u slots): raise --sku-capacity", c->dir,
                     h->sku_capacity);
    return r;
}

/*-------------------------------------------------------------------------
 * Order index
 *-------------------------------------------------------------------------
 */

bool
order_owned_state(unsigned state)
{
    return state == HS_INDEX_PENDING || state == HS_INDEX_REFUNDING ||
           state == HS_INDEX_CONFIRMING || state == HS_INDEX_CANCELLING ||
           state == HS_INDEX_EXPIRING;
}

/* States whose slot holds a key (written while INSERTING, immutable until
 * the slot is evicted). */
static inline bool
order_keyed_state(unsigned state)
{
    return (state >= HS_INDEX_PENDING && state <= HS_INDEX_REFUNDED) ||
           (state >= HS_INDEX_RESERVED && state <= HS_INDEX_EXPIRED);
}

/* Does slot o still hold the entry of version ver, with a key?  For readers
 * of key fields and of sku_index/qty: the acquire fence keeps those reads
 * before this load, so a slot evicted and reused while they were read is
 * noticed (its version moved on). */
bool
order_still(hs_order_slot *o, uint32_t ver)
{
    uint64_t w;

    atomic_thread_fence(memory_order_acquire);
    w = atomic_load_explicit(&o->state, memory_order_relaxed);
    return HS_VER_OF(w) == ver && order_keyed_state(HS_STATE_OF(w));
}

/*
 * Look order_id up (see segment.h, EVICTION): walk from its home slot,
 * stop at the first slot that does not hold it and has passed == 0.
 * HS_OK with *index and *ver (the version of the slot that holds it),
 * HS_NOT_FOUND, or HS_QUEUE_FULL / HS_DAEMON_DOWN when a slot being
 * inserted by a live process stays so (see owner_wait_step).
 */
static hs_result
order_lookup(const hs_client *c, hs_header *h, const char *order_id, size_t len, uint64_t hash,
             uint32_t *index, uint32_t *ver)
{
    const uint32_t mask = h->order_capacity - 1;
    hs_order_slot *table = hs_order_table(h);
    hs_result r;

    for (uint32_t i = 0; i <= mask; i++) {
        uint32_t k = (uint32_t)(hash + i) & mask;
        hs_order_slot *o = &table[k];
        owner_wait ow = {0, 0};

        for (;;) {
            /* seq_cst (an acquire, and in the total order with the
             * evictor's stores): pairs with the release that published the
             * key.  See segment.h, EVICTION. */
            uint64_t w = atomic_load(&o->state);
            unsigned state = HS_STATE_OF(w);

            if (state == HS_INDEX_INSERTING) {
                /* The key is not written yet and may be ours: wait. */
                int step = owner_wait_step(c, h, &ow, w, &r);
                if (step < 0)
                    return r;
                if (step > 0)
                    /* acq_rel; see hs_sku_find(). */
                    atomic_compare_exchange_strong_explicit(
                        &o->state, &w, HS_ORDER_NEXT(w, HS_INDEX_DEAD, 0), memory_order_acq_rel,
                        memory_order_acquire);
                continue;
            }
            if (order_keyed_state(state) && o->hash == hash && o->order_len == len &&
                memcmp(o->order_id, order_id, len) == 0) {
                if (!order_still(o, HS_VER_OF(w)))
                    continue; /* evicted while we read the key: look again */
                *index = k;
                *ver = HS_VER_OF(w);
                return HS_OK;
            }
            break;
        }
        /* seq_cst: see segment.h, EVICTION. */
        if (atomic_load(&o->passed) == 0)
            return HS_NOT_FOUND;
    }
    return HS_NOT_FOUND;
}

/* Take the insert lock of hash's stripe (see segment.h, EVICTION); a dead
 * holder's lock is taken over.  HS_OK, or the owner_wait_step failure. */
hs_result
stripe_lock(const hs_client *c, hs_header *h, uint64_t hash, hs_stripe **out)
{
    hs_stripe *s = &hs_stripes(h)[(uint32_t)(hash >> 24) & (HS_ORDER_STRIPES - 1)];
    const pid_t me = self_pid();
    owner_wait ow = {0, 0};
    hs_result r;

    for (;;) {
        uint32_t holder = 0;
        int step;

        /* Acquire: the holder's slot writes (released by its unlock) are
         * visible to our look-up. */
        if (atomic_compare_exchange_weak_explicit(&s->holder, &holder, (uint32_t)me,
                                                  memory_order_acquire, memory_order_relaxed)) {
            *out = s;
            return HS_OK;
        }
        if (holder == 0)
            continue;
        step = owner_wait_step(c, h, &ow, HS_STATE_WORD(0, holder), &r);
        if (step < 0)
            return r;
        if (step > 0 && atomic_compare_exchange_strong_explicit(&s->holder, &holder, (uint32_t)me,
                                                                memory_order_acquire,
                                                                memory_order_relaxed)) {
            *out = s;
            return HS_OK;
        }
    }
}

void
stripe_unlock(hs_stripe *s)
{
    /* Release: pairs with the next holder's acquire. */
    atomic_store_explicit(&s->holder, 0, memory_order_release);
}

/* Insert order_id, absent (we hold its stripe lock), as ins->state owned
 * by us: add 1 to `passed` of every slot we cannot claim, claim the first
 * EMPTY one.  HS_OK (*index, *ver) or HS_TABLE_FULL (increments undone). */
static hs_result
order_insert_new(const hs_client *c, hs_header *h, const char *order_id, size_t len,
                 uint64_t hash, const order_insert *ins, uint32_t *index, uint32_t *ver)
{
    const uint32_t mask = h->order_capacity - 1;
    hs_order_slot *table = hs_order_table(h);
    const pid_t me = self_pid();

    for (uint32_t i = 0; i <= mask; i++) {
        uint32_t k = (uint32_t)(hash + i) & mask;
        hs_order_slot *o = &table[k];
        uint64_t w = atomic_load(&o->state);

        /* seq_cst: we own the slot from here on; see segment.h, EVICTION. */
        if (HS_STATE_OF(w) == HS_INDEX_EMPTY &&
            atomic_compare_exchange_strong(&o->state, &w,
                                           HS_ORDER_NEXT(w, HS_INDEX_INSERTING, me))) {
            o->hash = hash;
            o->order_len = (uint8_t)len;
            memcpy(o->order_id, order_id, len);
            o->order_id[len] = '\0';
            o->sku_index = ins->sku_index;
            o->qty = ins->qty;
            /* Relaxed: published by the release store below.  A reused
             * slot starts with no record of its own. */
            atomic_store_explicit(&o->recorded, 0, memory_order_relaxed);
            atomic_store_explicit(&o->deducted_lsn, 0, memory_order_relaxed);
            atomic_store_explicit(&o->xid, 0, memory_order_relaxed);
            atomic_store_explicit(&o->deadline_ms, 0, memory_order_relaxed);
            o->buyer_counted = 0;
            /* Release: publishes key, sku and qty; pairs with the acquire
             * load of every prober and waiter. */
            atomic_store_explicit(&o->state, HS_ORDER_NEXT(w, ins->state, me),
                                  memory_order_release);
            /* Relaxed: a statistic. */
            atomic_fetch_add_explicit(&h->order_count, 1, memory_order_relaxed);
            *index = k;
            *ver = HS_VER_OF(w);
            return HS_OK;
        }
        /* seq_cst: before our claim beyond it; see segment.h, EVICTION. */
        atomic_fetch_add(&o->passed, 1);
    }
    for (uint32_t i = 0; i <= mask; i++)
        atomic_fetch_sub(&table[(uint32_t)(hash + i) & mask].passed, 1);
    hs_set_error("order index of %s is full (%u slots): raise --order-capacity, or lower "
                 "order_retention",
                 c != NULL ? c->dir : "?", h->order_capacity);
    return HS_TABLE_FULL;
}

/*
 * Probe the order index for order_id.  Found: HS_OK, *index, *ver (the
 * slot's version: a later state with another version is another entry),
 * *inserted false.  Absent: with ins, inserted as ins->state owned by this
 * process under the id's stripe lock (HS_OK, *inserted true); without,
 * HS_NOT_FOUND.  HS_TABLE_FULL when absent and no slot frees up within
 * HS_INDEX_WAIT_MS (the stripe lock is not held while it waits; the
 * evictor's pass under pressure empties the drained entries); HS_QUEUE_FULL
 * / HS_DAEMON_DOWN when a slot being inserted by a live process stays so
 * (see owner_wait_step).
 */
hs_result
order_probe(const hs_client *c, hs_header *h, const char *order_id, size_t len,
            const order_insert *ins, uint32_t *index, uint32_t *ver, bool *inserted)
{
    const uint64_t hash = hs_hash(order_id, len);
    uint64_t deadline = 0;
    unsigned round = HS_SPIN_ROUNDS + HS_YIELD_ROUNDS; /* sleep at once */
    hs_stripe *lock;
    hs_result r;

    *inserted = false;
    if (ins == NULL)
        return order_lookup(c, h, order_id, len, hash, index, ver);
    for (;;) {
        /* Relaxed: a hint (see the wait below); read before the scan, so
         * an eviction during it sends us scanning again. */
        uint64_t evicted = atomic_load_explicit(&h->evictions, memory_order_relaxed);
        uint64_t now;

        r = stripe_lock(c, h, hash, &lock);
        if (r != HS_OK)
            return r;
        r = order_lookup(c, h, order_id, len, hash, index, ver);
        if (r == HS_NOT_FOUND) {
            r = order_insert_new(c, h, order_id, len, hash, ins, index, ver);
            *inserted = r == HS_OK;
        }
        stripe_unlock(lock);
        if (r != HS_TABLE_FULL || c == NULL)
            return r;
        now = hs_now_monotonic_ms();
        if (deadline == 0) {
            deadline = now + HS_INDEX_WAIT_MS;
        } else if (now >= deadline) {
            hs_set_error("order index of %s is full (%u slots) and the evictor freed no slot "
                         "within %d ms (it empties only orders the drain has applied): is the "
                         "drain running?  Else raise order_capacity, or lower order_retention",
                         c->dir, h->order_capacity, HS_INDEX_WAIT_MS);
            return r;
        }
        /* Scan again only once the evictor emptied something: a scan of a
         * full index touches every slot.  The evictor's count of emptied
         * slots only grows (order_count is no guide: an inserter killed
         * between its claim and its increment leaves it low for good).
         * Relaxed: a hint; the scan decides. */
        do {
            if (!daemon_alive(c, h, &r))
                return r;
            backoff(&round);
        } while (atomic_load_explicit(&h->evictions, memory_order_relaxed) == evicted &&
                 hs_now_monotonic_ms() < deadline);
    }
}

/* See segment.h: HS_OK (*index) or HS_NOT_FOUND.  Waits for a slot being
 * inserted (it may hold this very id). */
hs_result
hs_order_find(hs_header *h, const char *order_id, size_t len, uint32_t *index)
{
    uint32_t ver;
    bool inserted;

    return order_probe(NULL, h, order_id, len, NULL, index, &ver, &inserted);
}

/*
 * Wait until the spiller has passed every LSN reserved so far, i.e. decided
 * each of them (folded into the queue, or abandoned as a NOOP).  HS_OK, or
 * HS_DAEMON_DOWN / HS_IO_ERROR when the daemon stops first (or takes longer
 * than HS_RESOLVE_WAIT_MS).
 */
static hs_result
wait_spilled_all(hs_client *c, hs_header *h)
{
    /* Acquire: pairs with reservers' CAS; every LSN a dead process
     * reserved is below this. */
    uint64_t target = atomic_load_explicit(&h->next_lsn, memory_order_acquire) & ~HS_LSN_FENCED;
    uint64_t start = hs_now_monotonic_ms();
    unsigned round = HS_SPIN_ROUNDS + HS_YIELD_ROUNDS; /* sleep at once */
    hs_result r;

    if (target == 0)
        return HS_OK;
    spiller_wake(h, true);
    for (;;) {
        /* Acquire: pairs with the spiller's release store of spilled_lsn,
         * made after it stored `recorded` for every record up to it. */
        if (atomic_load_explicit(&h->spilled_lsn, memory_order_acquire) >= target - 1)
            return HS_OK;
        if (!daemon_alive(c, h, &r))
            return r;
        if (hs_now_monotonic_ms() - start > HS_RESOLVE_WAIT_MS) {
            hs_set_error("hotstockd of %s did not spill up to lsn %" PRIu64 " within %d ms", c->dir,
                         target - 1, HS_RESOLVE_WAIT_MS);
            return HS_DAEMON_DOWN;
        }
        backoff(&round);
    }
}

/*
 * The owner of order slot o (state word w, an owned state) is dead.  Take
 * the slot over, wait for the spiller, and settle it in the state its last
 * folded record gives (segment.h, hs_state_of_record): the claim's own
 * record if it was folded (DEDUCT, RESERVE, CONFIRM, CANCEL, EXPIRE,
 * REFUND), else the record the claim started from (none: FAILED).
 * deducted_lsn, which the owner stores just before its state, is not read:
 * a death between the two stores changes nothing.  When the claim's record
 * settled the order, deducted_lsn names it (a REFUND keeps its DEDUCT's).
 * A counter change the dead process made without a record stays held back
 * (undersell) until the next daemon rebuilds the counters; a counter raise
 * that may be missing after a folded REFUND, CANCEL or EXPIRE is not redone
 * (it might not be missing).  HS_OK when settled (or someone else moved
 * the slot first).
 */
hs_result
order_resolve_dead(hs_client *c, hs_header *h, hs_order_slot *o, uint64_t w)
{
    const unsigned state = HS_STATE_OF(w);
    const uint64_t mine = HS_ORDER_NEXT(w, state, self_pid());
    uint64_t recorded;
    unsigned type, settled;
    hs_result r;

    if (!order_owned_state(state))
        return HS_OK;
    /* acq_rel: the take-over; on failure someone else changed the slot and
     * the caller looks again. */
    if (!atomic_compare_exchange_strong_explicit(&o->state, &w, mine, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return HS_OK;
    r = wait_spilled_all(c, h);
    if (r != HS_OK) {
        /* Leave the slot ours; once we are gone, the next waiter takes it
         * over again and decides.  Give it back with its dead owner's
         * state word so waiters do not wait on us. */
        atomic_store_explicit(&o->state, w, memory_order_release);
        return r;
    }
    /* Acquire: pairs with the spiller's release store of recorded; every
     * record of the order is folded by now (wait_spilled_all). */
    recorded = atomic_load_explicit(&o->recorded, memory_order_acquire);
    type = HS_RECORDED_TYPE(recorded);
    settled = hs_state_of_record(type);
    if (type != HS_REC_REFUND && settled != HS_INDEX_FAILED)
        atomic_store_explicit(&o->deducted_lsn, HS_RECORDED_LSN(recorded), memory_order_relaxed);
    /* Release: publishes deducted_lsn with the settled state; we own it. */
    atomic_store_explicit(&o->state, HS_ORDER_NEXT(w, settled, 0), memory_order_release);
    return HS_OK;
}

/* Move a slot we own to state (no owner), keeping its version.  Relaxed
 * load: only we change an owned slot. */
void
order_set(hs_order_slot *o, unsigned state)
{
    uint64_t w = atomic_load_explicit(&o->state, memory_order_relaxed);

    /* Release: pairs with the acquire load of waiters. */
    atomic_store_explicit(&o->state, HS_ORDER_NEXT(w, state, 0), memory_order_release);
}

/* One step of waiting for the owner of o (state word w): wait a little
 * for a live one, settle a dead one (order_resolve_dead).  HS_OK: look at
 * the slot again; else the caller's answer (busy, daemon down). */
hs_result
order_wait_owner(hs_client *c, hs_header *h, owner_wait *ow, hs_order_slot *o, uint64_t w)
{
    hs_result r = HS_OK;
    int step = owner_wait_step(c, h, ow, w, &r);

    if (step < 0)
        return r;
    if (step > 0)
        return order_resolve_dead(c, h, o, w);
    return HS_OK;
}

/* Give up a PENDING claim that deducted nothing. */
void
order_fail(hs_order_slot *o)
{
    o->buyer_counted = 0; /* nothing taken: nothing to give back */
    order_set(o, HS_INDEX_FAILED);
}

/* Release our REFUNDING claim without a refund (or our CONFIRMING,
 * CANCELLING, EXPIRING claim of a hold without its record). */
void
order_unclaim(hs_order_slot *o)
{
    /* Relaxed: only we change an owned slot. */
    unsigned state = HS_STATE_OF(atomic_load_explicit(&o->state, memory_order_relaxed));
    /* Relaxed: written by the PENDING owner before DEDUCTED was released,
     * which our claim acquired. */
    uint64_t deducted = atomic_load_explicit(&o->deducted_lsn, memory_order_relaxed);

    if (state == HS_INDEX_CONFIRMING || state == HS_INDEX_CANCELLING ||
        state == HS_INDEX_EXPIRING)
        order_set(o, HS_INDEX_RESERVED);
    else
        order_set(o, deducted != 0 ? HS_INDEX_DEDUCTED : HS_INDEX_FAILED);
}
