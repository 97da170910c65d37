/*-------------------------------------------------------------------------
 *
 * counter.c
 *      The SKU counters: taking and giving units, and the basket lock.
 *
 * Shares hs_sku_slot.available and .locker with every client (protocol in
 * segment.h): decrements CAS (acq_rel) from a value without
 * HS_AVAILABLE_LOCKED, increments fetch_add (release), a basket holds the
 * lock bit over all its SKUs while it checks and takes its lines.  The
 * daemon writes the counters only while it builds a segment.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>

#include "client_internal.h"

/*
 * Wait until the lock bit of s is clear, breaking the lock of a dead
 * locker; *cur is the value seen without the bit.  false when a live
 * locker kept it for HS_OWNER_WAIT_MS (a stopped process: "busy").  A
 * basket holds the lock for a few hundred instructions (no system call),
 * so the wait is nearly always a few spins.
 */
bool
counter_wait_unlocked(hs_sku_slot *s, int64_t *cur)
{
    unsigned round = 0;
    uint64_t since = 0;

    /* Acquire: pairs with the release that cleared the bit. */
    *cur = atomic_load_explicit(&s->available, memory_order_acquire);
    while (*cur & HS_AVAILABLE_LOCKED) {
        uint32_t locker = atomic_load_explicit(&s->locker, memory_order_acquire);

        if (locker != 0 && (pid_t)locker != self_pid() && hs_pid_gone((pid_t)locker)) {
            /* Break a dead basket's lock: own the locker word first, so a
             * new basket cannot set the bit between our CAS and our clear
             * (it needs the word).  acq_rel: after its writes. */
            if (atomic_compare_exchange_strong_explicit(&s->locker, &locker,
                                                        (uint32_t)self_pid(),
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed)) {
                atomic_fetch_and_explicit(&s->available, ~HS_AVAILABLE_LOCKED,
                                          memory_order_acq_rel);
                atomic_store_explicit(&s->locker, 0, memory_order_release);
            }
        } else if (round >= HS_SPIN_ROUNDS) {
            uint64_t now = hs_now_monotonic_ms();

            if (since == 0)
                since = now;
            else if (now - since >= HS_OWNER_WAIT_MS)
                return false;
        }
        backoff(&round);
        *cur = atomic_load_explicit(&s->available, memory_order_acquire);
    }
    return true;
}

/* Take qty units if at least qty are available: 1 taken, 0 not enough,
 * -1 a basket's lock held by a live process for HS_OWNER_WAIT_MS.
 * acq_rel: the acquire half pairs with the release of increments (their
 * records are reserved before them, so ours comes after); the release half
 * keeps our later reservation after this decrement.  Single-location RMWs
 * from a value without the lock bit: never below zero, never while a
 * basket decides. */
int
counter_take(hs_sku_slot *s, int64_t qty)
{
    int64_t cur = atomic_load_explicit(&s->available, memory_order_relaxed);

    for (;;) {
        if ((cur & HS_AVAILABLE_LOCKED) && !counter_wait_unlocked(s, &cur))
            return -1;
        if (cur < qty)
            return 0;
        if (atomic_compare_exchange_weak_explicit(&s->available, &cur, cur - qty,
                                                  memory_order_acq_rel, memory_order_relaxed))
            return 1;
    }
}

/* Raise the counter after the record of the raise was published (or undo a
 * decrement whose record failed).  Release: pairs with counter_take's
 * acquire.  Never waits for the lock: it commutes with a basket's check
 * (more units only).  Returns the value after, without the lock bit. */
int64_t
counter_give(hs_sku_slot *s, int64_t qty)
{
    return (atomic_fetch_add_explicit(&s->available, qty, memory_order_release) + qty) &
           ~HS_AVAILABLE_LOCKED;
}

/* The counter's units now (relaxed snapshot, lock bit masked). */
int64_t
counter_read(hs_sku_slot *s)
{
    return atomic_load_explicit(&s->available, memory_order_relaxed) & ~HS_AVAILABLE_LOCKED;
}

/*
 * Lock s for a basket: the locker word (CAS 0 or a dead pid -> ours), then
 * the bit.  false when a live process held it for HS_OWNER_WAIT_MS.
 * Baskets lock their SKUs in slot order, so two baskets never wait for
 * each other in a cycle.
 */
bool
counter_lock(hs_sku_slot *s)
{
    unsigned round = 0;
    uint64_t since = 0;
    uint32_t me = (uint32_t)self_pid();

    for (;;) {
        uint32_t locker = atomic_load_explicit(&s->locker, memory_order_relaxed);

        if ((locker == 0 || (locker != me && hs_pid_gone((pid_t)locker))) &&
            atomic_compare_exchange_strong_explicit(&s->locker, &locker, me,
                                                    memory_order_acquire, memory_order_relaxed))
            break;
        if (round >= HS_SPIN_ROUNDS) {
            uint64_t now = hs_now_monotonic_ms();

            if (since == 0)
                since = now;
            else if (now - since >= HS_OWNER_WAIT_MS)
                return false;
        }
        backoff(&round);
    }
    /* acq_rel: decrements that CAS from a value without the bit fail from
     * here on; we see every change before it.  (A dead locker may have
     * left the bit set: setting it again is harmless.) */
    atomic_fetch_or_explicit(&s->available, HS_AVAILABLE_LOCKED, memory_order_acq_rel);
    return true;
}

/* Leave a locked SKU: take qty units (0: take none) and clear the bit in
 * one RMW (release: the take precedes our record's reservation, as in
 * counter_take), then free the locker word. */
void
counter_unlock(hs_sku_slot *s, int64_t qty)
{
    atomic_fetch_sub_explicit(&s->available, qty + HS_AVAILABLE_LOCKED, memory_order_acq_rel);
    atomic_store_explicit(&s->locker, 0, memory_order_release);
}
