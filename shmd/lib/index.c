/*-------------------------------------------------------------------------
 *
 * index.c
 *      The SKU table and the order index: probing, inserting, dead owners.
 *
 * One probing scheme (open addressing, linear probe), shared by every
 * call; the daemon's build installs recovered orders with its own loop
 * (shmd/daemon/segment_build.c).  A slot is claimed EMPTY -> INSERTING(pid)
 * -> PENDING(pid) by CAS; only the owner moves an owned slot on while its
 * pid lives; a waiter that finds the owner dead takes the slot over and
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

static inline bool
order_owned_state(unsigned state)
{
    return state == HS_INDEX_PENDING || state == HS_INDEX_REFUNDING;
}

/*
 * Probe the order index for order_id.  Found: HS_OK, *index, *inserted
 * false.  Absent: with ins, inserted as ins->state owned by this process
 * (HS_OK, *inserted true); without, HS_NOT_FOUND.  HS_TABLE_FULL when
 * absent and no slot is free; HS_QUEUE_FULL / HS_DAEMON_DOWN when a slot
 * being inserted by a live process stays so (see owner_wait_step).
 */
hs_result
order_probe(const hs_client *c, hs_header *h, const char *order_id, size_t len,
            const order_insert *ins, uint32_t *index, bool *inserted)
{
    const uint64_t hash = hs_hash(order_id, len);
    const uint32_t mask = h->order_capacity - 1;
    hs_order_slot *table = hs_order_table(h);
    const pid_t me = self_pid();
    hs_result r;

    *inserted = false;
    for (uint32_t i = 0; i <= mask; i++) {
        uint32_t k = (uint32_t)(hash + i) & mask;
        hs_order_slot *o = &table[k];
        owner_wait ow = {0, 0};

        for (;;) {
            /* Acquire: pairs with the release store that ended INSERTING,
             * which publishes the key. */
            uint64_t w = atomic_load_explicit(&o->state, memory_order_acquire);
            unsigned state = HS_STATE_OF(w);

            if (state == HS_INDEX_EMPTY) {
                if (ins == NULL)
                    return HS_NOT_FOUND;
                /* acq_rel: we own the slot from here; on failure we look at
                 * the winner's word (acquire). */
                if (!atomic_compare_exchange_strong_explicit(
                        &o->state, &w, HS_STATE_WORD(HS_INDEX_INSERTING, me), memory_order_acq_rel,
                        memory_order_acquire))
                    continue;
                o->hash = hash;
                o->order_len = (uint8_t)len;
                memcpy(o->order_id, order_id, len);
                o->order_id[len] = '\0';
                o->sku_index = ins->sku_index;
                o->qty = ins->qty;
                /* Relaxed: published by the release store below. */
                atomic_store_explicit(&o->deducted_lsn, 0, memory_order_relaxed);
                atomic_store_explicit(&o->xid, 0, memory_order_relaxed);
                /* Release: publishes key, sku and qty; pairs with the acquire
                 * load of every prober and waiter. */
                atomic_store_explicit(&o->state, HS_STATE_WORD(ins->state, me),
                                      memory_order_release);
                /* Relaxed: a statistic. */
                atomic_fetch_add_explicit(&h->order_count, 1, memory_order_relaxed);
                *index = k;
                *inserted = true;
                return HS_OK;
            }
            if (state == HS_INDEX_INSERTING) {
                /* The key is not written yet and may be ours: wait. */
                int step = owner_wait_step(c, h, &ow, w, &r);
                if (step < 0)
                    return r;
                if (step > 0)
                    /* acq_rel; see hs_sku_find(). */
                    atomic_compare_exchange_strong_explicit(
                        &o->state, &w, HS_STATE_WORD(HS_INDEX_DEAD, 0), memory_order_acq_rel,
                        memory_order_acquire);
                continue;
            }
            if (state == HS_INDEX_DEAD || state > HS_INDEX_DEAD)
                break;
            /* A state with the key written (immutable from now on). */
            if (o->hash == hash && o->order_len == len && memcmp(o->order_id, order_id, len) == 0) {
                *index = k;
                return HS_OK;
            }
            break;
        }
    }
    if (ins == NULL)
        return HS_NOT_FOUND;
    hs_set_error("order index of %s is full (%u slots): raise --order-capacity", c->dir,
                 h->order_capacity);
    return HS_TABLE_FULL;
}

/* See segment.h: HS_OK (*index) or HS_NOT_FOUND.  Waits for a slot being
 * inserted (it may hold this very id). */
hs_result
hs_order_find(hs_header *h, const char *order_id, size_t len, uint32_t *index)
{
    bool inserted;

    return order_probe(NULL, h, order_id, len, NULL, index, &inserted);
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
 * The owner of order slot o (state word w, PENDING or REFUNDING) is dead.
 * Take the slot over, wait for the spiller, and settle it:
 *   PENDING:   its DEDUCT folded (recorded != 0)           -> DEDUCTED
 *              else                                        -> FAILED
 *   REFUNDING: its REFUND folded (recorded > deducted_lsn) -> REFUNDED
 *              else -> DEDUCTED (or FAILED for an hs_refund_evicted entry)
 * A counter change the dead process made without a record stays held back
 * (undersell) until the next daemon rebuilds the counters; a counter raise
 * that may be missing after a folded REFUND is not redone (it might not be
 * missing).  HS_OK when settled (or someone else moved the slot first).
 */
hs_result
order_resolve_dead(hs_client *c, hs_header *h, hs_order_slot *o, uint64_t w)
{
    const unsigned state = HS_STATE_OF(w);
    const uint64_t mine = HS_STATE_WORD(state, self_pid());
    uint64_t recorded, deducted, final;
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
    /* Acquire: pairs with the spiller's release store of recorded. */
    recorded = atomic_load_explicit(&o->recorded, memory_order_acquire);
    /* Relaxed: written by a PENDING owner before its release of DEDUCTED,
     * which our take-over CAS acquired. */
    deducted = atomic_load_explicit(&o->deducted_lsn, memory_order_relaxed);
    if (state == HS_INDEX_PENDING) {
        if (recorded != 0) {
            atomic_store_explicit(&o->deducted_lsn, recorded, memory_order_relaxed);
            final = HS_STATE_WORD(HS_INDEX_DEDUCTED, 0);
        } else {
            final = HS_STATE_WORD(HS_INDEX_FAILED, 0);
        }
    } else {
        if (recorded > deducted)
            final = HS_STATE_WORD(HS_INDEX_REFUNDED, 0);
        else
            final = HS_STATE_WORD(deducted != 0 ? HS_INDEX_DEDUCTED : HS_INDEX_FAILED, 0);
    }
    /* Release: publishes deducted_lsn with the settled state; we own it. */
    atomic_store_explicit(&o->state, final, memory_order_release);
    return HS_OK;
}

/* Give up a PENDING claim that deducted nothing.  We own it: a store. */
void
order_fail(hs_order_slot *o)
{
    /* Release: pairs with the acquire load of waiters. */
    atomic_store_explicit(&o->state, HS_STATE_WORD(HS_INDEX_FAILED, 0), memory_order_release);
}

/* Release our REFUNDING claim without a refund. */
void
order_unclaim(hs_order_slot *o)
{
    /* Relaxed: written by the PENDING owner before DEDUCTED was released,
     * which our claim acquired. */
    uint64_t deducted = atomic_load_explicit(&o->deducted_lsn, memory_order_relaxed);

    /* Release: pairs with the acquire load of waiters. */
    atomic_store_explicit(&o->state,
                          HS_STATE_WORD(deducted != 0 ? HS_INDEX_DEDUCTED : HS_INDEX_FAILED, 0),
                          memory_order_release);
}
