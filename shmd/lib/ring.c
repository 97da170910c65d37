/*-------------------------------------------------------------------------
 *
 * ring.c
 *      Appending records (one, or a group) to the shared ring; durability waits.
 *
 * Shares the ring and the header positions with the spiller (protocol in
 * segment.h): a writer reserves next_lsn by CAS (acq_rel), claims the slot
 * by CAS (acquire) with its pid, fills it and publishes L (seq_cst).
 * Decrements change the counter first and append after; increments
 * append first and raise the counter after (release): counter.c.  Durability
 * waiters sleep on durable_seq (futex).  Must not write a queue file.
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

/*
 * Wake the spiller if it sleeps (or always, with force).  Callers have just
 * done a seq_cst RMW (publishing a record, or raising flush_wanted); the
 * seq_cst load of spiller_sleeping pairs with the spiller's seq_cst store of
 * spiller_sleeping before it re-checks the ring and flush_wanted: one of the
 * two sides sees the other, so no wake-up is lost.
 */
void
spiller_wake(hs_header *h, bool force)
{
    if (force || atomic_load_explicit(&h->spiller_sleeping, memory_order_seq_cst) != 0) {
        /* Release: the futex word carries no data; the ring slots do. */
        atomic_fetch_add_explicit(&h->spiller_seq, 1, memory_order_release);
        hs_futex_wake_all(&h->spiller_seq);
    }
}

/* Ask the spiller to flush up to lsn at once: a max of flush_wanted.
 * seq_cst, for spiller_wake() after it. */
static void
flush_wanted_raise(hs_header *h, hs_lsn lsn)
{
    uint64_t cur = atomic_load(&h->flush_wanted);

    while (cur < lsn && !atomic_compare_exchange_weak(&h->flush_wanted, &cur, lsn))
        ;
}

/*
 * Reserve n consecutive LSNs (ring slots; n is 1, or a group's size) by one
 * CAS: HS_OK and *lsn the first.  HS_DAEMON_DOWN when the
 * segment is fenced or dies; HS_IO_ERROR while the spiller cannot write;
 * HS_QUEUE_FULL when no slot frees up within HS_QUEUE_WAIT_MS.  Nothing is
 * reserved on failure.
 */
static hs_result
ring_reserve(hs_client *c, hs_header *h, uint32_t n, hs_lsn *lsn)
{
    const uint64_t capacity = h->ring_capacity;
    uint64_t next, spilled, deadline = 0;
    unsigned round = 0;
    int32_t err;
    hs_result r;

    /* Acquire: pairs with the spiller's release store of spill_errno. */
    err = atomic_load_explicit(&h->spill_errno, memory_order_acquire);
    if (err != 0) {
        hs_set_error("hotstockd of %s cannot write its queue: %s", c->dir, strerror(err));
        return HS_IO_ERROR;
    }
    /* Relaxed: only a first guess; the CAS below validates it. */
    next = atomic_load_explicit(&h->next_lsn, memory_order_relaxed);
    for (;;) {
        if (next & HS_LSN_FENCED) {
            hs_set_error("hotstockd of %s is down: segment generation %" PRIu64
                         " was fenced by a restarting daemon",
                         c->dir, h->generation);
            return HS_DAEMON_DOWN;
        }
        /* Acquire: pairs with the spiller's release store of spilled_lsn,
         * made after it read the slots up to it; our writes to the slot we
         * reserve come after its reads.  A spilled_lsn at or past a stale
         * `next` means next moved on: the CAS fails and reloads it. */
        spilled = atomic_load_explicit(&h->spilled_lsn, memory_order_acquire);
        if (spilled < next && next - spilled + (n - 1) >= capacity) {
            uint64_t now = hs_now_monotonic_ms();
            if (deadline == 0) {
                deadline = now + HS_QUEUE_WAIT_MS;
                spiller_wake(h, true);
            } else if (now >= deadline) {
                hs_set_error("queue ring of %s is full: %" PRIu64 " records not spilled yet",
                             c->dir, next - spilled);
                return HS_QUEUE_FULL;
            }
            if (round >= HS_SPIN_ROUNDS && !daemon_alive(c, h, &r))
                return r;
            backoff(&round);
            next = atomic_load_explicit(&h->next_lsn, memory_order_relaxed);
            continue;
        }
        /* acq_rel: the reservation orders after whatever this thread did to
         * a counter before (a decrement that must precede its record, an
         * acquired increment that must stay before it); pairs with every
         * other reserver's CAS and with the daemon's fetch_or of the fence. */
        if (atomic_compare_exchange_weak_explicit(&h->next_lsn, &next, next + n,
                                                  memory_order_acq_rel, memory_order_relaxed)) {
            *lsn = next;
            return HS_OK;
        }
    }
}

/*
 * Claim the ring slot of lsn (reserved by ring_reserve) for this process.
 * true when ours: nobody else moves it while we live, and we must fill and
 * publish it (ring_fill) or give it up (ring_abandon_own).  false when the
 * spiller or a restarting daemon abandoned the slot before we claimed it:
 * the record will never be in the queue, and the caller undoes what it did
 * (HS_DAEMON_DOWN).
 *
 * Claim first, fill second (segment.h, hs_ring_slot.seq): once the slot
 * is abandoned it may be reused by lsn + capacity at once, so no check
 * made before a copy could keep a descheduled writer from copying over
 * the next lap's record; owning the slot does, because an abandoner takes
 * a claimed slot only once its claimer is dead.
 */
static bool
ring_claim(hs_header *h, hs_lsn lsn)
{
    hs_ring_slot *slot = &hs_ring(h)[lsn & (h->ring_capacity - 1)];
    /* Relaxed: the CAS below only succeeds if this value is still current. */
    uint64_t old = atomic_load_explicit(&slot->seq, memory_order_relaxed);

    for (;;) {
        /* L or a later lap (published or abandoned), or anyone's claim:
         * not an earlier lap, so our LSN was abandoned already (a claim
         * here would be a later lap's writer, after our abandonment). */
        if (hs_seq_is_claim(old) || (old & ~HS_SEQ_ABANDONED) >= lsn)
            return false;
        /* Acquire: our writes to the slot stay after the claim, and after
         * the spiller's reads of the earlier lap (it read the slot before
         * its release of spilled_lsn, which our reservation acquired).
         * Exactly one of this CAS and an abandoning CAS from `old` wins. */
        if (atomic_compare_exchange_weak_explicit(&slot->seq, &old, hs_seq_claim(lsn, self_pid()),
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    }
}

/* Fill our claimed slot of lsn with rec (zeroed before it was filled: the
 * CRC covers the padding) and publish it. */
static void
ring_fill(hs_header *h, hs_lsn lsn, const hs_ring_record *rec)
{
    hs_ring_slot *slot = &hs_ring(h)[lsn & (h->ring_capacity - 1)];

    memcpy(&slot->rec, rec, sizeof(*rec));
    slot->crc = hs_ring_record_crc(rec);
    /* seq_cst (a release at least): publishes rec and crc to the spiller's
     * acquire load of seq, and to a salvaging daemon.  Nobody else moves a
     * claimed slot while we live.  seq_cst also orders it before the load
     * of spiller_sleeping in spiller_wake(). */
    atomic_store_explicit(&slot->seq, lsn, memory_order_seq_cst);
}

/* Give up a reserved LSN of ours: our claim (we own it), or a slot we
 * never claimed (CAS from the earlier lap, as the spiller would after a
 * stall; losing that CAS means someone abandoned it first).  The spiller
 * writes a NOOP for it. */
static void
ring_abandon_own(hs_header *h, hs_lsn lsn, bool claimed)
{
    hs_ring_slot *slot = &hs_ring(h)[lsn & (h->ring_capacity - 1)];
    uint64_t old;

    if (claimed) {
        atomic_store_explicit(&slot->seq, lsn | HS_SEQ_ABANDONED, memory_order_seq_cst);
        return;
    }
    old = atomic_load_explicit(&slot->seq, memory_order_relaxed);
    while (!hs_seq_is_claim(old) && (old & ~HS_SEQ_ABANDONED) < lsn &&
           !atomic_compare_exchange_weak_explicit(&slot->seq, &old, lsn | HS_SEQ_ABANDONED,
                                                  memory_order_seq_cst, memory_order_relaxed))
        ;
}

/* A zeroed record of type for a SKU slot (order fields left empty). */
void
record_init(hs_ring_record *rec, hs_record_type type, uint32_t sku_index, int64_t qty)
{
    memset(rec, 0, sizeof(*rec));
    rec->type = (uint8_t)type;
    rec->sku_index = sku_index;
    rec->order_index = UINT32_MAX;
    rec->qty = qty;
    rec->timestamp_us = hs_now_unix_us();
}

/* Reserve, fill and publish one record.  On HS_OK *lsn is published; on
 * failure nothing is in the queue (see ring_reserve, ring_publish).
 *
 * The spiller is woken only once an eighth of the ring waits for it: it
 * sleeps at most flush_interval_ms anyway, and a futex wake per record
 * would cost every deduction a system call and a context switch.
 * Durability waiters and a full ring wake it at once. */
hs_result
append_record(hs_client *c, hs_header *h, hs_ring_record *rec, hs_lsn *lsn)
{
    return append_group(c, h, rec, 1, lsn);
}

/*
 * Append n records (1..HS_GROUP_MAX) as one group at consecutive
 * LSNs, *first the first: all of them reach the queue, or none (the
 * spiller and a salvaging daemon turn a group with an abandoned member
 * into NOOPs).  Every slot is claimed before any is filled, so while we
 * live no member can be abandoned once the first is published; a death
 * between two publications leaves the rest claimed by a dead pid, which
 * abandons the whole group.  On failure nothing of it will be in the
 * queue: the slots we claimed or reserved are abandoned here.
 */
hs_result
append_group(hs_client *c, hs_header *h, hs_ring_record *recs, uint32_t n, hs_lsn *first)
{
    hs_result r = ring_reserve(c, h, n, first);
    hs_lsn last;
    uint64_t spilled;
    uint32_t claimed = 0;

    if (r != HS_OK)
        return r;
    last = *first + n - 1;
    while (claimed < n && ring_claim(h, *first + claimed))
        claimed++;
    if (claimed < n) {
        for (uint32_t i = 0; i < n; i++)
            if (i != claimed)
                ring_abandon_own(h, *first + i, i < claimed);
        hs_set_error("hotstockd of %s is down: the ring slot of lsn %" PRIu64
                     " was abandoned before this writer claimed it",
                     c->dir, *first + claimed);
        return HS_DAEMON_DOWN;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (n > 1) {
            recs[i].group_size = (uint8_t)n;
            recs[i].group_pos = (uint8_t)i;
            if (i + 1 < n)
                recs[i].flags |= HS_REC_FLAG_GROUP_MORE;
        }
        ring_fill(h, *first + i, &recs[i]);
    }
    hs_stats_records(h, recs, n);
    /* Relaxed: only a hint of how far behind the spiller is. */
    spilled = atomic_load_explicit(&h->spilled_lsn, memory_order_relaxed);
    if (last > spilled && last - spilled >= (h->ring_capacity >> 3))
        spiller_wake(h, false);
    return HS_OK;
}

/*-------------------------------------------------------------------------
 * Durability
 *-------------------------------------------------------------------------
 */

/* Spin up to the daemon's waiter_spin_us (and no longer than timeout_ms,
 * when it is >= 0) for durable_lsn >= lsn, while no other waiter comes.
 * A lone waiter's flush is about one fdatasync away, and a futex wake-up
 * costs tens of microseconds on a virtual machine, as much as a fast
 * disk's fdatasync; with other waiters it sleeps at once, so spinners
 * never take the CPU the others need.  True when it came; false (nothing
 * changed) when the caller must sleep for it.  Each round yields the CPU
 * to any thread that wants it (the spiller itself, on a machine of few
 * cores); with none, sched_yield returns at once. */
static bool
durable_spin(hs_header *h, hs_lsn lsn, int timeout_ms)
{
    uint64_t spin_ns = (uint64_t)h->waiter_spin_us * 1000;
    uint64_t deadline;

    if (spin_ns == 0)
        return false;
    if (timeout_ms >= 0 && (uint64_t)timeout_ms * 1000000 < spin_ns)
        spin_ns = (uint64_t)timeout_ms * 1000000;
    deadline = hs_now_monotonic_ns() + spin_ns;

    for (unsigned i = 1;; i++) {
        /* Acquire: pairs with the spiller's release store after fdatasync. */
        if (atomic_load_explicit(&h->durable_lsn, memory_order_acquire) >= lsn)
            return true;
        /* Relaxed: company is only a hint to stop spinning. */
        if (i % 16 == 0 && (hs_now_monotonic_ns() >= deadline ||
                            atomic_load_explicit(&h->sync_waiters, memory_order_relaxed) > 1))
            return false;
        sched_yield();
    }
}

hs_result
hs_wait_durable(hs_client *c, hs_lsn lsn, int timeout_ms)
{
    hs_header *h;
    uint64_t start, waited;
    hs_result r = HS_OK;
    bool done = false, idle = false, alone;

    if (c == NULL) {
        hs_set_error("hs_wait_durable: no client");
        return HS_BAD_ARGUMENT;
    }
    if (lsn == 0)
        return HS_OK;
    /* Acquire: pairs with the release store in client_reattach().  The
     * current mapping, not a new one: a durability wait never re-attaches
     * (LSNs carry on across generations, and a published record of a dead
     * segment is salvaged into the queue before the next one serves). */
    h = atomic_load_explicit(&c->seg, memory_order_acquire);
    /* Acquire: pairs with the spiller's release store after fdatasync. */
    if (atomic_load_explicit(&h->durable_lsn, memory_order_acquire) >= lsn)
        return HS_OK;
    if (!segment_serving(h)) {
        report_not_serving(c, h);
        return HS_DAEMON_DOWN;
    }
    /* The spiller flushes at once while flush_wanted is above what it
     * synced: raised here, it ends by itself once lsn is durable, also
     * when this process dies inside the wait.  sync_waiters is only the
     * spin's hint (a dead waiter leaves it raised: segment.h). */
    alone = atomic_fetch_add_explicit(&h->sync_waiters, 1, memory_order_relaxed) == 0;
    flush_wanted_raise(h, lsn);
    spiller_wake(h, false);
    if (alone && durable_spin(h, lsn, timeout_ms)) {
        atomic_fetch_sub_explicit(&h->sync_waiters, 1, memory_order_release);
        return HS_OK;
    }
    start = hs_now_monotonic_ms();
    for (;;) {
        /* Load the futex word before the LSN (both acquire; the spiller
         * stores durable_lsn, then bumps durable_seq, then wakes the bits of
         * the LSNs it made durable): if the LSN we read is old, the bump is
         * still ahead, and the futex wait below returns at once, or is woken
         * by the flush that covers lsn (its bit), or sleeps on through a
         * flush that does not. */
        uint32_t seq = atomic_load_explicit(&h->durable_seq, memory_order_acquire);
        int nap = HS_DURABLE_POLL_MS;

        if (atomic_load_explicit(&h->durable_lsn, memory_order_acquire) >= lsn) {
            done = true;
            break;
        }
        /* The daemon's pid only after a wait that saw no flush at all. */
        if (!daemon_check(c, h, idle, &r))
            break;
        waited = hs_now_monotonic_ms() - start;
        if (timeout_ms >= 0) {
            if (waited >= (uint64_t)timeout_ms) {
                hs_set_error("lsn %" PRIu64 " of %s not durable after %d ms (durable_lsn %" PRIu64
                             ")",
                             lsn, c->dir, timeout_ms,
                             atomic_load_explicit(&h->durable_lsn, memory_order_relaxed));
                r = HS_DAEMON_DOWN;
                break;
            }
            if ((uint64_t)timeout_ms - waited < (uint64_t)nap)
                nap = (int)((uint64_t)timeout_ms - waited);
        }
        if (hs_futex_wait_bits(&h->durable_seq, seq, hs_durable_bit(lsn), nap) != 0) {
            r = HS_IO_ERROR;
            break;
        }
        /* Relaxed: only "did any flush happen meanwhile". */
        idle = atomic_load_explicit(&h->durable_seq, memory_order_relaxed) == seq;
    }
    /* Release: nothing to publish; the count is only a flush hint. */
    atomic_fetch_sub_explicit(&h->sync_waiters, 1, memory_order_release);
    return done ? HS_OK : r;
}

/* See hotstock.h.  The raise, then the wake (spiller_wake). */
void
hs_flush_soon(hs_client *c, hs_lsn lsn)
{
    hs_result r;
    hs_header *h;

    if (c == NULL || lsn == 0)
        return;
    h = client_segment(c, &r);
    if (h == NULL)
        return;
    flush_wanted_raise(h, lsn);
    spiller_wake(h, false);
}

/* Wake the spiller: it writes out what is published (fdatasync follows at
 * its flush interval, or at once if anyone waits for durability). */
void
hs_kick(hs_client *c)
{
    hs_result r;
    hs_header *h;

    if (c == NULL)
        return;
    h = client_segment(c, &r);
    if (h != NULL)
        spiller_wake(h, true);
}
