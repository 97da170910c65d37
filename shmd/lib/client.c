/*-------------------------------------------------------------------------
 *
 * client.c
 *      libhotstock: deductions, refunds and reads run directly on the
 *      shared-memory segment of a hotstockd, plus the table operations
 *      (probe, insert) the daemon's segment build shares with it.
 *
 * What it shares: everything in segment.h.  The protocol is written at the
 * top of segment.h; this file is its client half, and every atomic below
 * names the operation it pairs with.  In short:
 *
 *   - Liveness: every call loads header.state (acquire, pairs with the
 *     daemon's release store of READY after the build) and heartbeat_ms
 *     (relaxed), and reads a vDSO clock.  Anything but a READY, fresh
 *     segment sends the call to re-attach: map the name again, and switch
 *     to it if it is a newer generation that is READY and fresh; otherwise
 *     HS_DAEMON_DOWN.  A replaced mapping is retired, not unmapped, until
 *     hs_detach(): other threads of the process may still be reading it.
 *
 *   - Decrements (deduct, withdraw, put_sku lowering a counter) change the
 *     counter first and append their record after: a death in between holds
 *     units back (undersell) until the next daemon rebuilds the counters.
 *     Increments (refund, restock, put_sku raising a counter) reserve and
 *     publish their record first and raise the counter after (release): a
 *     deduction that consumes the new units does so with a CAS that
 *     acquires that raise, so its own reservation comes later in next_lsn's
 *     order.  Every prefix of the queue therefore holds the increment
 *     before any deduction of its units, and a record that is abandoned
 *     (never published) never leaves units that were sold.
 *
 *   - Orders: a slot is claimed EMPTY -> INSERTING(pid) -> PENDING(pid) by
 *     CAS; only the owner moves a PENDING(pid)/REFUNDING(pid) slot on while
 *     pid lives.  A waiter that finds the owner dead takes the slot over and
 *     decides from `recorded` once the spiller has passed every LSN reserved
 *     so far.
 *
 * Waiting: spin, then sched_yield(), then short sleeps; every wait is
 * bounded and re-checks that the daemon lives.
 *
 * Thread safety: a client handle may be shared by the threads of one
 * process; re-attachment is serialised by a mutex, the fast path takes no
 * lock.  The owner pid of claims is the process id, refreshed after fork().
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

#include "segment.h"

/* Spins before yielding, then yields before sleeping, in every wait. */
#define HS_SPIN_ROUNDS 64
#define HS_YIELD_ROUNDS 32
/* How long a reservation waits for ring space before HS_QUEUE_FULL. */
#define HS_QUEUE_WAIT_MS 100
/* How long a call waits for a live process to finish with an order or SKU
 * slot (a PENDING deduction, a claimed refund) before giving up with
 * HS_QUEUE_FULL ("busy, retry"): never hang on a stopped process. */
#define HS_OWNER_WAIT_MS 10000
/* How long a dead owner's slot waits for the spiller to pass every reserved
 * LSN: a stuck slot is abandoned after HS_STALL_ABANDON_MS, so this is
 * that plus room for a slow disk. */
#define HS_RESOLVE_WAIT_MS (HS_STALL_ABANDON_MS + 8000)
/* Longest single sleep of a durability waiter between liveness checks. */
#define HS_DURABLE_POLL_MS 10

struct hs_client {
    /* Current mapping.  Acquire loads pair with the release store in
     * client_reattach(), which publishes a fully mapped segment. */
    _Atomic(hs_header *) seg;
    pthread_mutex_t lock; /* serialises re-attachment and `retired` */
    hs_header **retired;  /* replaced mappings, unmapped by hs_detach() */
    size_t retired_count;
    char dir[PATH_MAX]; /* realpath of the data directory */
};

/*-------------------------------------------------------------------------
 * Small helpers
 *-------------------------------------------------------------------------
 */

/* The process id put into claims.  Cached (getpid() is a system call) and
 * refreshed in the child after fork(), so a child never claims with its
 * parent's pid.  Relaxed: each process only reads its own value. */
static _Atomic pid_t hs_self_pid;
static pthread_once_t hs_self_pid_once = PTHREAD_ONCE_INIT;

static void
hs_self_pid_refresh(void)
{
    atomic_store_explicit(&hs_self_pid, getpid(), memory_order_relaxed);
}

static void
hs_self_pid_init(void)
{
    hs_self_pid_refresh();
    pthread_atfork(NULL, NULL, hs_self_pid_refresh);
}

static inline pid_t
self_pid(void)
{
    pid_t p = atomic_load_explicit(&hs_self_pid, memory_order_relaxed);
    if (__builtin_expect(p == 0, 0)) {
        pthread_once(&hs_self_pid_once, hs_self_pid_init);
        p = atomic_load_explicit(&hs_self_pid, memory_order_relaxed);
    }
    return p;
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* CLOCK_MONOTONIC at tick resolution: the heartbeat's clock, read through
 * the vDSO without a system call.  It may lag the precise clock by a tick,
 * which only makes a heartbeat look younger by that much. */
static inline uint64_t
coarse_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One step of a wait: spin, then yield, then sleep 50 us .. 1 ms. */
static void
backoff(unsigned *round)
{
    unsigned n = (*round)++;

    if (n < HS_SPIN_ROUNDS) {
        cpu_relax();
    } else if (n < HS_SPIN_ROUNDS + HS_YIELD_ROUNDS) {
        sched_yield();
    } else {
        unsigned k = n - HS_SPIN_ROUNDS - HS_YIELD_ROUNDS;
        struct timespec ts = {0, (long)(k < 20 ? 50 + k * 50 : 1000) * 1000L};
        nanosleep(&ts, NULL);
    }
}

static bool
valid_len(const char *s, size_t len, size_t max)
{
    return s != NULL && len >= 1 && len <= max;
}

static const char *
segment_state_name(uint32_t state)
{
    switch (state) {
    case HS_SEGMENT_STARTING:
        return "starting";
    case HS_SEGMENT_READY:
        return "ready";
    case HS_SEGMENT_STOPPING:
        return "stopping";
    case HS_SEGMENT_DEAD:
        return "dead (replaced by a newer daemon)";
    default:
        return "unknown";
    }
}

/*-------------------------------------------------------------------------
 * Liveness and re-attachment
 *-------------------------------------------------------------------------
 */

/* A heartbeat this late makes the liveness check ask the kernel too. */
#define HS_HEARTBEAT_LATE_MS (3 * HS_HEARTBEAT_INTERVAL_MS)

/* Is h READY with a heartbeat younger than HS_HEARTBEAT_DEAD_MS?  The
 * acquire load of state pairs with the daemon's release store of READY,
 * which publishes the tables it built.  A heartbeat that is late but not
 * yet dead costs one kill(pid, 0): a SIGKILLed daemon is noticed within
 * HS_HEARTBEAT_LATE_MS instead of HS_HEARTBEAT_DEAD_MS, a stopped or busy
 * one (its pid still there) is waited for until the latter. */
static inline bool
segment_serving(hs_header *h)
{
    uint64_t beat, now, age;

    if (atomic_load_explicit(&h->state, memory_order_acquire) != HS_SEGMENT_READY)
        return false;
    /* Relaxed: a lone timestamp, ordered with nothing else. */
    beat = atomic_load_explicit(&h->heartbeat_ms, memory_order_relaxed);
    now = coarse_now_ms();
    age = now > beat ? now - beat : 0;
    if (__builtin_expect(age < HS_HEARTBEAT_LATE_MS, 1))
        return true;
    return age < HS_HEARTBEAT_DEAD_MS && !hs_pid_gone(h->daemon_pid);
}

/* Set the error text for a segment that does not serve. */
static void
report_not_serving(const hs_client *c, hs_header *h)
{
    uint32_t state = atomic_load_explicit(&h->state, memory_order_acquire);
    uint64_t beat = atomic_load_explicit(&h->heartbeat_ms, memory_order_relaxed);
    uint64_t now = coarse_now_ms();

    if (state != HS_SEGMENT_READY)
        hs_set_error("hotstockd of %s is down: segment generation %" PRIu64 " is %s", c->dir,
                     h->generation, segment_state_name(state));
    else if (now <= beat || now - beat < HS_HEARTBEAT_DEAD_MS)
        hs_set_error("hotstockd of %s is down: process %d is gone", c->dir, (int)h->daemon_pid);
    else
        hs_set_error("hotstockd of %s is down: no heartbeat for %" PRIu64 " ms (pid %d)", c->dir,
                     now > beat ? now - beat : 0, (int)h->daemon_pid);
}

/* Slow path of client_segment(): the mapping `seen` does not serve.  Map the
 * name again; switch to it when it serves. */
static hs_header *
client_reattach(hs_client *c, hs_header *seen, hs_result *res)
{
    hs_header *cur, *fresh;
    hs_result r;

    (void)seen;
    pthread_mutex_lock(&c->lock);
    /* Relaxed: the mutex orders this with the store below in other threads. */
    cur = atomic_load_explicit(&c->seg, memory_order_relaxed);
    if (segment_serving(cur)) {
        /* Another thread switched already, or the daemon came back to life
         * (a heartbeat late after SIGSTOP/SIGCONT). */
        pthread_mutex_unlock(&c->lock);
        return cur;
    }
    r = hs_segment_map(c->dir, &fresh);
    if (r != HS_OK) {
        pthread_mutex_unlock(&c->lock);
        *res = r;
        return NULL;
    }
    /* Serving while cur does not: another segment (a newer generation, or
     * a directory made anew).  Were it cur's object come back to life in
     * between, a second mapping of it would do no harm either.  The pid
     * check refuses a killed daemon's segment whose heartbeat is not stale
     * yet (one system call, on this slow path only). */
    if (!segment_serving(fresh) || hs_pid_gone(fresh->daemon_pid)) {
        report_not_serving(c, fresh);
        hs_segment_unmap(fresh);
        pthread_mutex_unlock(&c->lock);
        *res = HS_DAEMON_DOWN;
        return NULL;
    }
    {
        hs_header **grown = realloc(c->retired, (c->retired_count + 1) * sizeof(*grown));
        /* Out of memory: the old mapping is leaked rather than unmapped
         * under a thread that may still read it. */
        if (grown != NULL) {
            c->retired = grown;
            c->retired[c->retired_count++] = cur;
        }
    }
    /* Release: publishes the new mapping; pairs with the acquire load in
     * client_segment(). */
    atomic_store_explicit(&c->seg, fresh, memory_order_release);
    pthread_mutex_unlock(&c->lock);
    return fresh;
}

/* The segment to work on: the current mapping when it serves (two loads
 * and a vDSO clock read), else whatever client_reattach() finds.  NULL with
 * *res (HS_DAEMON_DOWN, HS_VERSION_MISMATCH, HS_IO_ERROR) when none serves. */
static inline hs_header *
client_segment(hs_client *c, hs_result *res)
{
    hs_header *h = atomic_load_explicit(&c->seg, memory_order_acquire);

    if (__builtin_expect(segment_serving(h), 1))
        return h;
    return client_reattach(c, h, res);
}

/* Is the daemon behind h still there?  For wait loops only: with
 * check_pid, a system call (kill(pid, 0)) notices a killed daemon before
 * its heartbeat goes stale. */
static bool
daemon_check(const hs_client *c, hs_header *h, bool check_pid, hs_result *res)
{
    int32_t err;

    if (!segment_serving(h)) {
        report_not_serving(c, h);
        *res = HS_DAEMON_DOWN;
        return false;
    }
    if (check_pid && hs_pid_gone(h->daemon_pid)) {
        hs_set_error("hotstockd of %s is down: process %d is gone", c->dir, (int)h->daemon_pid);
        *res = HS_DAEMON_DOWN;
        return false;
    }
    /* Acquire: pairs with the spiller's release store of spill_errno. */
    err = atomic_load_explicit(&h->spill_errno, memory_order_acquire);
    if (err != 0) {
        hs_set_error("hotstockd of %s cannot write its queue: %s", c->dir, strerror(err));
        *res = HS_IO_ERROR;
        return false;
    }
    return true;
}

static bool
daemon_alive(const hs_client *c, hs_header *h, hs_result *res)
{
    return daemon_check(c, h, true, res);
}

/*-------------------------------------------------------------------------
 * The spiller, the ring
 *-------------------------------------------------------------------------
 */

/*
 * Wake the spiller if it sleeps (or always, with force).  Callers have just
 * done a seq_cst RMW (publishing a record, or raising sync_waiters); the
 * seq_cst load of spiller_sleeping pairs with the spiller's seq_cst store of
 * spiller_sleeping before it re-checks the ring and sync_waiters: one of the
 * two sides sees the other, so no wake-up is lost.
 */
static void
spiller_wake(hs_header *h, bool force)
{
    if (force || atomic_load_explicit(&h->spiller_sleeping, memory_order_seq_cst) != 0) {
        /* Release: the futex word carries no data; the ring slots do. */
        atomic_fetch_add_explicit(&h->spiller_seq, 1, memory_order_release);
        hs_futex_wake_all(&h->spiller_seq);
    }
}

/*
 * Reserve one LSN (one ring slot).  HS_OK and *lsn; HS_DAEMON_DOWN when the
 * segment is fenced or dies; HS_IO_ERROR while the spiller cannot write;
 * HS_QUEUE_FULL when no slot frees up within HS_QUEUE_WAIT_MS.  Nothing is
 * reserved on failure.
 */
static hs_result
ring_reserve(hs_client *c, hs_header *h, hs_lsn *lsn)
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
        if (spilled < next && next - spilled >= capacity) {
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
        if (atomic_compare_exchange_weak_explicit(&h->next_lsn, &next, next + 1,
                                                  memory_order_acq_rel, memory_order_relaxed)) {
            *lsn = next;
            return HS_OK;
        }
    }
}

/*
 * Claim the ring slot of lsn (reserved by ring_reserve), fill it with rec
 * and publish it.  rec must have been zeroed before it was filled: the CRC
 * covers the padding.  true when published: the record will reach the
 * queue whatever happens to this process.  false when the spiller or a
 * restarting daemon abandoned the slot before we claimed it: we wrote
 * nothing into it, the record will never be in the queue, and the caller
 * undoes what it did (HS_DAEMON_DOWN).
 *
 * Claim first, fill second (segment.h, hs_ring_slot.seq): once the slot
 * is abandoned it may be reused by lsn + capacity at once, so no check
 * made before a copy could keep a descheduled writer from copying over
 * the next lap's record; owning the slot does, because an abandoner takes
 * a claimed slot only once its claimer is dead.
 */
static bool
ring_publish(hs_header *h, hs_lsn lsn, const hs_ring_record *rec)
{
    hs_ring_slot *slot = &hs_ring(h)[lsn & (h->ring_capacity - 1)];
    uint32_t crc = hs_ring_record_crc(rec);
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
            break;
    }
    memcpy(&slot->rec, rec, sizeof(*rec));
    slot->crc = crc;
    /* seq_cst (a release at least): publishes rec and crc to the spiller's
     * acquire load of seq, and to a salvaging daemon.  Nobody else moves a
     * claimed slot while we live.  seq_cst also orders it before the load
     * of spiller_sleeping in spiller_wake(). */
    atomic_store_explicit(&slot->seq, lsn, memory_order_seq_cst);
    return true;
}

/* A zeroed record of type for a SKU slot (order fields left empty). */
static void
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
static hs_result
append_record(hs_client *c, hs_header *h, hs_ring_record *rec, hs_lsn *lsn)
{
    hs_result r = ring_reserve(c, h, lsn);
    uint64_t spilled;

    if (r != HS_OK)
        return r;
    if (!ring_publish(h, *lsn, rec)) {
        hs_set_error("hotstockd of %s is down: the ring slot of lsn %" PRIu64
                     " was abandoned before this writer claimed it",
                     c->dir, *lsn);
        return HS_DAEMON_DOWN;
    }
    /* Relaxed: only a hint of how far behind the spiller is. */
    spilled = atomic_load_explicit(&h->spilled_lsn, memory_order_relaxed);
    if (*lsn > spilled && *lsn - spilled >= (h->ring_capacity >> 3))
        spiller_wake(h, false);
    return HS_OK;
}

/*-------------------------------------------------------------------------
 * Counters
 *-------------------------------------------------------------------------
 */

/* Take qty units if at least qty are available.  acq_rel: the acquire half
 * pairs with the release of increments (their records are reserved before
 * them, so ours comes after); the release half keeps our later reservation
 * after this decrement.  Single-location RMWs: never below zero. */
static bool
counter_take(hs_sku_slot *s, int64_t qty)
{
    int64_t cur = atomic_load_explicit(&s->available, memory_order_relaxed);

    while (cur >= qty) {
        if (atomic_compare_exchange_weak_explicit(&s->available, &cur, cur - qty,
                                                  memory_order_acq_rel, memory_order_relaxed))
            return true;
    }
    return false;
}

/* Raise the counter after the record of the raise was published (or undo a
 * decrement whose record failed).  Release: pairs with counter_take's
 * acquire.  Returns the value after. */
static int64_t
counter_give(hs_sku_slot *s, int64_t qty)
{
    return atomic_fetch_add_explicit(&s->available, qty, memory_order_release) + qty;
}

/*-------------------------------------------------------------------------
 * SKU table
 *-------------------------------------------------------------------------
 */

/* Wait budget bookkeeping for a slot held by a live owner. */
typedef struct owner_wait {
    unsigned round;
    uint64_t since_ms;
} owner_wait;

/* One step of waiting for a slot whose state word is w (owner pid inside).
 * Returns 1 when the owner is gone (the caller resolves the slot), 0 to
 * look again, or -1 with *res when the wait is over (budget spent,
 * daemon down).  h may be NULL (no daemon check: the daemon's build). */
static int
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
static hs_result
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
    return state == HS_ORDER_PENDING || state == HS_ORDER_REFUNDING;
}

/* What to insert when the order id is absent. */
typedef struct order_insert {
    enum hs_order_slot_state state; /* HS_ORDER_PENDING or HS_ORDER_REFUNDING */
    uint32_t sku_index;
    int32_t qty;
} order_insert;

/*
 * Probe the order index for order_id.  Found: HS_OK, *index, *inserted
 * false.  Absent: with ins, inserted as ins->state owned by this process
 * (HS_OK, *inserted true); without, HS_NOT_FOUND.  HS_TABLE_FULL when
 * absent and no slot is free; HS_QUEUE_FULL / HS_DAEMON_DOWN when a slot
 * being inserted by a live process stays so (see owner_wait_step).
 */
static hs_result
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

            if (state == HS_ORDER_EMPTY) {
                if (ins == NULL)
                    return HS_NOT_FOUND;
                /* acq_rel: we own the slot from here; on failure we look at
                 * the winner's word (acquire). */
                if (!atomic_compare_exchange_strong_explicit(
                        &o->state, &w, HS_STATE_WORD(HS_ORDER_INSERTING, me), memory_order_acq_rel,
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
            if (state == HS_ORDER_INSERTING) {
                /* The key is not written yet and may be ours: wait. */
                int step = owner_wait_step(c, h, &ow, w, &r);
                if (step < 0)
                    return r;
                if (step > 0)
                    /* acq_rel; see hs_sku_find(). */
                    atomic_compare_exchange_strong_explicit(
                        &o->state, &w, HS_STATE_WORD(HS_ORDER_DEAD, 0), memory_order_acq_rel,
                        memory_order_acquire);
                continue;
            }
            if (state == HS_ORDER_DEAD || state > HS_ORDER_DEAD)
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

/* See segment.h.  Daemon build only (state STARTING, one thread): inserts
 * with a final state (DEDUCTED, FAILED or REFUNDED) and no owner.  HS_OK,
 * HS_DUPLICATE (*index: the id is there already), HS_TABLE_FULL,
 * HS_BAD_ARGUMENT (bad length or a non-final state). */
hs_result
hs_order_install(hs_header *h, const char *order_id, size_t len, uint32_t sku_index, int32_t qty,
                 enum hs_order_slot_state state, hs_lsn recorded, uint32_t *index)
{
    const uint64_t hash = hs_hash(order_id, len);
    const uint32_t mask = h->order_capacity - 1;
    hs_order_slot *table = hs_order_table(h);

    if (!valid_len(order_id, len, HS_ORDER_ID_MAX) ||
        (state != HS_ORDER_DEDUCTED && state != HS_ORDER_FAILED && state != HS_ORDER_REFUNDED)) {
        hs_set_error("cannot install order: bad id length %zu or state %d", len, (int)state);
        return HS_BAD_ARGUMENT;
    }
    for (uint32_t i = 0; i <= mask; i++) {
        uint32_t k = (uint32_t)(hash + i) & mask;
        hs_order_slot *o = &table[k];
        uint64_t w = atomic_load_explicit(&o->state, memory_order_relaxed);

        if (HS_STATE_OF(w) == HS_ORDER_EMPTY) {
            o->hash = hash;
            o->order_len = (uint8_t)len;
            memcpy(o->order_id, order_id, len);
            o->order_id[len] = '\0';
            o->sku_index = sku_index;
            o->qty = qty;
            /* Relaxed: the segment is published as a whole by the release
             * store of READY in the header. */
            atomic_store_explicit(&o->recorded, recorded, memory_order_relaxed);
            atomic_store_explicit(&o->deducted_lsn, state == HS_ORDER_DEDUCTED ? recorded : 0,
                                  memory_order_relaxed);
            atomic_store_explicit(&o->state, HS_STATE_WORD(state, 0), memory_order_relaxed);
            atomic_fetch_add_explicit(&h->order_count, 1, memory_order_relaxed);
            *index = k;
            return HS_OK;
        }
        if (HS_STATE_OF(w) != HS_ORDER_DEAD && o->hash == hash && o->order_len == len &&
            memcmp(o->order_id, order_id, len) == 0) {
            *index = k;
            return HS_DUPLICATE;
        }
    }
    hs_set_error("order index is full (%u slots) while building the segment", h->order_capacity);
    return HS_TABLE_FULL;
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
static hs_result
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
    if (state == HS_ORDER_PENDING) {
        if (recorded != 0) {
            atomic_store_explicit(&o->deducted_lsn, recorded, memory_order_relaxed);
            final = HS_STATE_WORD(HS_ORDER_DEDUCTED, 0);
        } else {
            final = HS_STATE_WORD(HS_ORDER_FAILED, 0);
        }
    } else {
        if (recorded > deducted)
            final = HS_STATE_WORD(HS_ORDER_REFUNDED, 0);
        else
            final = HS_STATE_WORD(deducted != 0 ? HS_ORDER_DEDUCTED : HS_ORDER_FAILED, 0);
    }
    /* Release: publishes deducted_lsn with the settled state; we own it. */
    atomic_store_explicit(&o->state, final, memory_order_release);
    return HS_OK;
}

/* Give up a PENDING claim that deducted nothing.  We own it: a store. */
static void
order_fail(hs_order_slot *o)
{
    /* Release: pairs with the acquire load of waiters. */
    atomic_store_explicit(&o->state, HS_STATE_WORD(HS_ORDER_FAILED, 0), memory_order_release);
}

/* Release our REFUNDING claim without a refund. */
static void
order_unclaim(hs_order_slot *o)
{
    /* Relaxed: written by the PENDING owner before DEDUCTED was released,
     * which our claim acquired. */
    uint64_t deducted = atomic_load_explicit(&o->deducted_lsn, memory_order_relaxed);

    /* Release: pairs with the acquire load of waiters. */
    atomic_store_explicit(&o->state,
                          HS_STATE_WORD(deducted != 0 ? HS_ORDER_DEDUCTED : HS_ORDER_FAILED, 0),
                          memory_order_release);
}

/*-------------------------------------------------------------------------
 * Attach
 *-------------------------------------------------------------------------
 */

hs_result
hs_attach(const char *dir, hs_client **out)
{
    char real[PATH_MAX];
    hs_header *h;
    hs_client *c;
    hs_result r;

    if (out == NULL || dir == NULL || dir[0] == '\0') {
        hs_set_error("hs_attach: no data directory given");
        return HS_BAD_ARGUMENT;
    }
    *out = NULL;
    if (realpath(dir, real) == NULL) {
        hs_set_error("cannot resolve data directory %s: %s", dir, strerror(errno));
        return HS_IO_ERROR;
    }
    r = hs_segment_map(real, &h);
    if (r != HS_OK)
        return r;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        hs_segment_unmap(h);
        hs_set_error("out of memory attaching to %s", real);
        return HS_IO_ERROR;
    }
    snprintf(c->dir, sizeof(c->dir), "%s", real);
    /* As in client_reattach(): a killed daemon's heartbeat stays fresh for
     * a while, its process does not. */
    if (!segment_serving(h) || hs_pid_gone(h->daemon_pid)) {
        report_not_serving(c, h);
        hs_segment_unmap(h);
        free(c);
        return HS_DAEMON_DOWN;
    }
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->seg, h);
    (void)self_pid();
    *out = c;
    return HS_OK;
}

/* Unmaps every mapping of c and frees it.  No call on c may be running. */
void
hs_detach(hs_client *c)
{
    if (c == NULL)
        return;
    hs_segment_unmap(atomic_load_explicit(&c->seg, memory_order_relaxed));
    for (size_t i = 0; i < c->retired_count; i++)
        hs_segment_unmap(c->retired[i]);
    free(c->retired);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/*-------------------------------------------------------------------------
 * Deduct
 *-------------------------------------------------------------------------
 */

hs_result
hs_deduct(hs_client *c, const char *sku, size_t sku_len, int32_t qty, const char *order_id,
          size_t order_len, uint64_t xid, hs_lsn *lsn)
{
    return hs_deduct_checked(c, sku, sku_len, qty, order_id, order_len, xid, UINT64_MAX, lsn);
}

/* See hotstock.h. */
hs_result
hs_deduct_checked(hs_client *c, const char *sku, size_t sku_len, int32_t qty,
                  const char *order_id, size_t order_len, uint64_t xid, hs_lsn evicted_checked,
                  hs_lsn *lsn)
{
    const order_insert ins = {HS_ORDER_PENDING, 0, qty};
    order_insert mine;
    hs_header *h;
    hs_sku_slot *s;
    hs_order_slot *o;
    hs_ring_record rec;
    uint32_t si, oi;
    owner_wait ow = {0, 0};
    bool inserted;
    hs_lsn at;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (c == NULL || !valid_len(sku, sku_len, HS_SKU_MAX) ||
        !valid_len(order_id, order_len, HS_ORDER_ID_MAX) || qty < 1 || qty > HS_QTY_MAX) {
        hs_set_error("hs_deduct: sku and order id must be 1..%d bytes, qty 1..%d", HS_SKU_MAX,
                     HS_QTY_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    /* Plain load: evicted_lsn is written while the segment is built and
     * published by the release store of READY, which client_segment()
     * acquired.  It never changes in a live segment, so this check holds
     * for the claim below, which happens in this same segment. */
    if (h->evicted_lsn > evicted_checked) {
        hs_set_error("orders up to LSN %" PRIu64 " were evicted, the caller checked up to LSN %" PRIu64,
                     h->evicted_lsn, evicted_checked);
        return HS_EVICTED_CHANGED;
    }
    /* The order slot is a cache (and TLB) miss in a large table: start it
     * now so it overlaps the SKU lookup. */
    __builtin_prefetch(&hs_order_table(h)[hs_hash(order_id, order_len) & (h->order_capacity - 1)],
                       1);

    /* 1. The SKU (lock-free probe). */
    r = sku_lookup(c, h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    s = &hs_sku_table(h)[si];

    /* 1a. Sold out and the order id unknown: answer without claiming an
     * order slot, so a flash sale's sold-out attempts (most of them) do not
     * fill the order index.  The order is looked up AFTER the counter:
     * entries never leave the index while the segment lives, so absent now
     * means absent at the load, where the answer takes effect (available <
     * qty, order unknown).  A known order id goes the full way (a retry of
     * a done deduction must answer HS_DUPLICATE even when sold out).
     * Acquire: the lookup's loads stay after this one. */
    if (atomic_load_explicit(&s->available, memory_order_acquire) < qty) {
        r = order_probe(c, h, order_id, order_len, NULL, &oi, &inserted);
        if (r == HS_NOT_FOUND)
            return HS_SOLD_OUT;
        if (r != HS_OK)
            return r;
    }

    /* 2. Claim the order id: absent -> PENDING(me). */
    mine = ins;
    mine.sku_index = si;
    r = order_probe(c, h, order_id, order_len, &mine, &oi, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    while (!inserted) {
        /* Acquire: pairs with the release store of whoever set the state
         * (the key, sku_index, qty and deducted_lsn come with it). */
        uint64_t w = atomic_load_explicit(&o->state, memory_order_acquire);
        unsigned state = HS_STATE_OF(w);
        int step;

        if (state == HS_ORDER_DEDUCTED || state == HS_ORDER_REFUNDING) {
            if (o->sku_index != si || o->qty != qty) {
                hs_set_error("order %.*s was deducted with another sku or qty (%d)", (int)order_len,
                             order_id, (int)o->qty);
                return HS_ORDER_MISMATCH;
            }
            return HS_DUPLICATE;
        }
        if (state == HS_ORDER_REFUNDED)
            return HS_ALREADY_REFUNDED;
        if (state == HS_ORDER_FAILED) {
            /* A retry after a failed attempt.  acq_rel: we own it now. */
            if (atomic_compare_exchange_strong_explicit(
                    &o->state, &w, HS_STATE_WORD(HS_ORDER_PENDING, self_pid()),
                    memory_order_acq_rel, memory_order_relaxed)) {
                o->sku_index = si;
                o->qty = qty;
                break;
            }
            continue;
        }
        /* PENDING or REFUNDING of a live process: wait; of a dead one:
         * settle it and look again. */
        step = owner_wait_step(c, h, &ow, w, &r);
        if (step < 0)
            return r;
        if (step > 0) {
            r = order_resolve_dead(c, h, o, w);
            if (r != HS_OK)
                return r;
        }
    }

    /* 3. The counter, only if enough is left. */
    if (!counter_take(s, qty)) {
        order_fail(o);
        return HS_SOLD_OUT;
    }

    /* 4. The record. */
    record_init(&rec, HS_REC_DEDUCT, si, qty);
    rec.order_len = (uint8_t)order_len;
    rec.order_index = oi;
    rec.xid = xid;
    memcpy(rec.order_id, order_id, order_len);
    r = append_record(c, h, &rec, &at);
    if (r != HS_OK) {
        counter_give(s, qty);
        order_fail(o);
        return r;
    }

    /* 5. Done: only we move our PENDING slot on while we live. */
    atomic_store_explicit(&o->deducted_lsn, at, memory_order_relaxed);
    /* Release: publishes deducted_lsn with DEDUCTED; pairs with the
     * acquire load of retries, refunds and waiters. */
    atomic_store_explicit(&o->state, HS_STATE_WORD(HS_ORDER_DEDUCTED, 0), memory_order_release);
    if (lsn != NULL)
        *lsn = at;
    return HS_OK;
}

/*-------------------------------------------------------------------------
 * Refund
 *-------------------------------------------------------------------------
 */

/* Copy the name of SKU slot si into out (HS_SKU_MAX + 1 bytes), or "". */
static void
copy_sku_name(hs_header *h, uint32_t si, char *out)
{
    hs_sku_slot *s;

    if (out == NULL)
        return;
    out[0] = '\0';
    if (si >= h->sku_capacity)
        return;
    s = &hs_sku_table(h)[si];
    /* Acquire: pairs with the release store of READY. */
    if (HS_STATE_OF(atomic_load_explicit(&s->state, memory_order_acquire)) != HS_SKU_READY)
        return;
    memcpy(out, s->sku, s->sku_len);
    out[s->sku_len] = '\0';
}

/*
 * We own o as REFUNDING: append the REFUND record, raise the counter, and
 * make it REFUNDED.  On failure before the record is published the claim
 * is released (DEDUCTED, or FAILED for an hs_refund_evicted entry).
 */
static hs_result
refund_apply(hs_client *c, hs_header *h, uint32_t oi, hs_lsn *lsn, int32_t *qty, char *sku_out)
{
    hs_order_slot *o = &hs_order_table(h)[oi];
    uint32_t si = o->sku_index;
    int32_t q = o->qty;
    hs_ring_record rec;
    hs_lsn at;
    hs_result r;

    if (si >= h->sku_capacity || q < 1) {
        order_unclaim(o);
        hs_set_error("order slot %u of %s is damaged (sku slot %u, qty %d)", oi, c->dir, si,
                     (int)q);
        return HS_IO_ERROR;
    }
    record_init(&rec, HS_REC_REFUND, si, q);
    rec.order_len = o->order_len;
    rec.order_index = oi;
    memcpy(rec.order_id, o->order_id, o->order_len);
    r = append_record(c, h, &rec, &at);
    if (r != HS_OK) {
        order_unclaim(o);
        return r;
    }
    /* The record is published: now the units may be sold again. */
    counter_give(&hs_sku_table(h)[si], q);
    /* Release: pairs with the acquire load of waiters and retries. */
    atomic_store_explicit(&o->state, HS_STATE_WORD(HS_ORDER_REFUNDED, 0), memory_order_release);
    if (lsn != NULL)
        *lsn = at;
    if (qty != NULL)
        *qty = q;
    copy_sku_name(h, si, sku_out);
    return HS_OK;
}

typedef enum refund_mode {
    REFUND_NOW,    /* hs_refund: claim and apply */
    REFUND_CLAIM,  /* hs_refund_claim: claim only */
    REFUND_COMMIT, /* hs_refund_commit: apply our claim (or claim and apply) */
} refund_mode;

static hs_result
refund_common(hs_client *c, const char *order_id, size_t order_len, refund_mode mode, hs_lsn *lsn,
              int32_t *qty, char *sku_out)
{
    hs_header *h;
    hs_order_slot *o;
    uint32_t oi;
    owner_wait ow = {0, 0};
    bool inserted;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (qty != NULL)
        *qty = 0;
    if (sku_out != NULL)
        sku_out[0] = '\0';
    if (c == NULL || !valid_len(order_id, order_len, HS_ORDER_ID_MAX)) {
        hs_set_error("refund: order id must be 1..%d bytes", HS_ORDER_ID_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = order_probe(c, h, order_id, order_len, NULL, &oi, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    for (;;) {
        /* Acquire: pairs with the release store of the last state change. */
        uint64_t w = atomic_load_explicit(&o->state, memory_order_acquire);
        unsigned state = HS_STATE_OF(w);
        pid_t owner = HS_PID_OF(w);
        int step;

        if (state == HS_ORDER_DEDUCTED) {
            /* acq_rel: the claim; its acquire half makes deducted_lsn,
             * sku_index and qty ours to read. */
            if (!atomic_compare_exchange_strong_explicit(
                    &o->state, &w, HS_STATE_WORD(HS_ORDER_REFUNDING, self_pid()),
                    memory_order_acq_rel, memory_order_relaxed))
                continue;
            if (mode == REFUND_CLAIM)
                return HS_OK;
            return refund_apply(c, h, oi, lsn, qty, sku_out);
        }
        if (state == HS_ORDER_REFUNDED)
            return HS_ALREADY_REFUNDED;
        if (state == HS_ORDER_FAILED) {
            hs_set_error("order %.*s has no deduction to refund", (int)order_len, order_id);
            return HS_NOT_FOUND;
        }
        if (state == HS_ORDER_REFUNDING && owner == self_pid()) {
            if (mode == REFUND_COMMIT)
                return refund_apply(c, h, oi, lsn, qty, sku_out);
            if (mode == REFUND_CLAIM)
                return HS_ALREADY_REFUNDED; /* claimed by this process already */
        }
        step = owner_wait_step(c, h, &ow, w, &r);
        if (step < 0)
            return r;
        if (step > 0) {
            r = order_resolve_dead(c, h, o, w);
            if (r != HS_OK)
                return r;
        }
    }
}

hs_result
hs_refund(hs_client *c, const char *order_id, size_t order_len, hs_lsn *lsn, int32_t *qty,
          char *sku_out)
{
    return refund_common(c, order_id, order_len, REFUND_NOW, lsn, qty, sku_out);
}

hs_result
hs_refund_claim(hs_client *c, const char *order_id, size_t order_len)
{
    return refund_common(c, order_id, order_len, REFUND_CLAIM, NULL, NULL, NULL);
}

/* Applies this process's claim; a claim lost with a restarted daemon (the
 * order is DEDUCTED again in the new segment) is claimed anew. */
hs_result
hs_refund_commit(hs_client *c, const char *order_id, size_t order_len, hs_lsn *lsn, int32_t *qty,
                 char *sku_out)
{
    return refund_common(c, order_id, order_len, REFUND_COMMIT, lsn, qty, sku_out);
}

/* Releases this process's claim.  HS_OK also when there is no claim of
 * this process to release (released already, lost with a restart);
 * HS_ALREADY_REFUNDED, HS_NOT_FOUND as for hs_refund(). */
hs_result
hs_refund_release(hs_client *c, const char *order_id, size_t order_len)
{
    hs_header *h;
    hs_order_slot *o;
    uint32_t oi;
    bool inserted;
    hs_result r = HS_OK;
    uint64_t w;

    if (c == NULL || !valid_len(order_id, order_len, HS_ORDER_ID_MAX)) {
        hs_set_error("hs_refund_release: order id must be 1..%d bytes", HS_ORDER_ID_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = order_probe(c, h, order_id, order_len, NULL, &oi, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    /* Acquire: pairs with the release store of the last state change. */
    w = atomic_load_explicit(&o->state, memory_order_acquire);
    if (HS_STATE_OF(w) == HS_ORDER_REFUNDED)
        return HS_ALREADY_REFUNDED;
    if (HS_STATE_OF(w) == HS_ORDER_REFUNDING && HS_PID_OF(w) == self_pid())
        order_unclaim(o);
    return HS_OK;
}

hs_result
hs_refund_evicted(hs_client *c, const char *sku, size_t sku_len, int32_t qty, const char *order_id,
                  size_t order_len, hs_lsn *lsn)
{
    order_insert ins = {HS_ORDER_REFUNDING, 0, qty};
    hs_header *h;
    hs_order_slot *o;
    uint32_t si, oi;
    owner_wait ow = {0, 0};
    bool inserted;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (c == NULL || !valid_len(sku, sku_len, HS_SKU_MAX) ||
        !valid_len(order_id, order_len, HS_ORDER_ID_MAX) || qty < 1 || qty > HS_QTY_MAX) {
        hs_set_error("hs_refund_evicted: sku and order id must be 1..%d bytes, qty 1..%d",
                     HS_SKU_MAX, HS_QTY_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = sku_lookup(c, h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    ins.sku_index = si;
    r = order_probe(c, h, order_id, order_len, &ins, &oi, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    while (!inserted) {
        /* Acquire: pairs with the release store of the last state change. */
        uint64_t w = atomic_load_explicit(&o->state, memory_order_acquire);
        unsigned state = HS_STATE_OF(w);
        int step;

        if (state == HS_ORDER_REFUNDED)
            return HS_ALREADY_REFUNDED;
        if (state == HS_ORDER_DEDUCTED) {
            hs_set_error("order %.*s is deducted in the index: use hs_refund()", (int)order_len,
                         order_id);
            return HS_DUPLICATE;
        }
        if (state == HS_ORDER_FAILED) {
            /* acq_rel: we own it now.  Through PENDING first: a deduct
             * retry reads sku_index and qty of a REFUNDING slot, so they
             * are written before REFUNDING is released. */
            if (atomic_compare_exchange_strong_explicit(
                    &o->state, &w, HS_STATE_WORD(HS_ORDER_PENDING, self_pid()),
                    memory_order_acq_rel, memory_order_relaxed)) {
                o->sku_index = si;
                o->qty = qty;
                atomic_store_explicit(&o->deducted_lsn, 0, memory_order_relaxed);
                /* Release: publishes the fields with the state. */
                atomic_store_explicit(&o->state, HS_STATE_WORD(HS_ORDER_REFUNDING, self_pid()),
                                      memory_order_release);
                break;
            }
            continue;
        }
        step = owner_wait_step(c, h, &ow, w, &r);
        if (step < 0)
            return r;
        if (step > 0) {
            r = order_resolve_dead(c, h, o, w);
            if (r != HS_OK)
                return r;
        }
    }
    return refund_apply(c, h, oi, lsn, NULL, NULL);
}

/*-------------------------------------------------------------------------
 * Durability
 *-------------------------------------------------------------------------
 */

hs_result
hs_wait_durable(hs_client *c, hs_lsn lsn, int timeout_ms)
{
    hs_header *h;
    uint64_t start, waited;
    hs_result r = HS_OK;
    bool done = false, idle = false;

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
    /* seq_cst: the spiller flushes at once while sync_waiters > 0; pairs
     * with its seq_cst load of it after setting spiller_sleeping. */
    atomic_fetch_add_explicit(&h->sync_waiters, 1, memory_order_seq_cst);
    spiller_wake(h, false);
    start = hs_now_monotonic_ms();
    for (;;) {
        /* Load the futex word before the LSN (both acquire; the spiller
         * stores durable_lsn, then bumps durable_seq): if the LSN we read is
         * old, the bump is still ahead and the futex wait below returns at
         * once or is woken by it. */
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
        if (hs_futex_wait(&h->durable_seq, seq, nap) != 0) {
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

/*-------------------------------------------------------------------------
 * Reads
 *-------------------------------------------------------------------------
 */

hs_result
hs_available(hs_client *c, const char *sku, size_t sku_len, int64_t *available)
{
    hs_header *h;
    uint32_t si;
    hs_result r = HS_OK;

    if (c == NULL || available == NULL || !valid_len(sku, sku_len, HS_SKU_MAX)) {
        hs_set_error("hs_available: sku must be 1..%d bytes", HS_SKU_MAX);
        return HS_BAD_ARGUMENT;
    }
    *available = 0;
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = sku_lookup(c, h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    /* Relaxed: a snapshot of one counter. */
    *available = atomic_load_explicit(&hs_sku_table(h)[si].available, memory_order_relaxed);
    return HS_OK;
}

hs_result
hs_order_status(hs_client *c, const char *order_id, size_t order_len, hs_order_state *state,
                char *sku_out, int32_t *qty)
{
    hs_header *h;
    hs_order_slot *o;
    uint32_t oi;
    uint64_t w;
    bool inserted;
    hs_result r = HS_OK;
    hs_order_state st;

    if (state != NULL)
        *state = HS_ORDER_STATE_UNKNOWN;
    if (sku_out != NULL)
        sku_out[0] = '\0';
    if (qty != NULL)
        *qty = 0;
    if (c == NULL || !valid_len(order_id, order_len, HS_ORDER_ID_MAX)) {
        hs_set_error("hs_order_status: order id must be 1..%d bytes", HS_ORDER_ID_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = order_probe(c, h, order_id, order_len, NULL, &oi, &inserted);
    if (r != HS_OK)
        return r;
    o = &hs_order_table(h)[oi];
    /* Acquire: pairs with the release store of the last state change, so
     * sku_index and qty of a deducted order are the final ones. */
    w = atomic_load_explicit(&o->state, memory_order_acquire);
    switch (HS_STATE_OF(w)) {
    case HS_ORDER_DEDUCTED:
    case HS_ORDER_REFUNDING:
        st = HS_ORDER_STATE_DEDUCTED;
        break;
    case HS_ORDER_REFUNDED:
        st = HS_ORDER_STATE_REFUNDED;
        break;
    case HS_ORDER_PENDING:
        if (state != NULL)
            *state = HS_ORDER_STATE_PENDING;
        return HS_OK;
    default: /* FAILED: nothing deducted */
        return HS_NOT_FOUND;
    }
    if (state != NULL)
        *state = st;
    if (qty != NULL)
        *qty = o->qty;
    copy_sku_name(h, o->sku_index, sku_out);
    return HS_OK;
}

/*-------------------------------------------------------------------------
 * Admin: stock
 *-------------------------------------------------------------------------
 */

/*
 * Set a counter to `stock`.  Lowering (or keeping) it is a decrement: CAS
 * the counter to stock, then append PUT_SKU(delta <= 0); a failed append
 * gives the units back.  Raising it is an increment: append PUT_SKU(delta =
 * stock - old) first, then add delta; deductions that ran meanwhile stay
 * deducted (as if they came right after the reset), so the counter always
 * equals the fold of its records.
 */
hs_result
hs_put_sku(hs_client *c, const char *sku, size_t sku_len, int64_t stock, hs_lsn *lsn)
{
    hs_header *h;
    hs_sku_slot *s;
    hs_ring_record rec;
    uint32_t si;
    int64_t old;
    hs_lsn at;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (c == NULL || !valid_len(sku, sku_len, HS_SKU_MAX) || stock < 0 || stock > HS_STOCK_MAX) {
        hs_set_error("hs_put_sku: sku must be 1..%d bytes, stock 0..%" PRId64, HS_SKU_MAX,
                     HS_STOCK_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = sku_lookup(c, h, sku, sku_len, true, &si);
    if (r != HS_OK)
        return r;
    s = &hs_sku_table(h)[si];
    /* Relaxed: validated by the CAS, or (raising) only the base of delta. */
    old = atomic_load_explicit(&s->available, memory_order_relaxed);
    for (;;) {
        if (stock <= old) {
            /* acq_rel: as counter_take(). */
            if (!atomic_compare_exchange_weak_explicit(&s->available, &old, stock,
                                                       memory_order_acq_rel, memory_order_relaxed))
                continue;
            record_init(&rec, HS_REC_PUT_SKU, si, stock - old);
            r = append_record(c, h, &rec, &at);
            if (r != HS_OK) {
                counter_give(s, old - stock);
                return r;
            }
            break;
        }
        record_init(&rec, HS_REC_PUT_SKU, si, stock - old);
        r = append_record(c, h, &rec, &at);
        if (r != HS_OK)
            return r;
        counter_give(s, stock - old);
        break;
    }
    if (lsn != NULL)
        *lsn = at;
    return HS_OK;
}

/*
 * Restock (delta > 0: record first, then the counter) or withdraw (delta <
 * 0: clamp so the counter stays >= 0, CAS it, then record what was taken;
 * a failed append gives it back).  delta 0, or a withdrawal from an empty
 * counter, changes nothing and appends nothing (*lsn = 0).
 */
hs_result
hs_add_stock(hs_client *c, const char *sku, size_t sku_len, int64_t delta, int64_t *available,
             hs_lsn *lsn)
{
    hs_header *h;
    hs_sku_slot *s;
    hs_ring_record rec;
    uint32_t si;
    int64_t old, applied, after;
    hs_lsn at = 0;
    hs_result r = HS_OK;

    if (lsn != NULL)
        *lsn = 0;
    if (available != NULL)
        *available = 0;
    if (c == NULL || !valid_len(sku, sku_len, HS_SKU_MAX) || delta < -HS_STOCK_MAX ||
        delta > HS_STOCK_MAX) {
        hs_set_error("hs_add_stock: sku must be 1..%d bytes, |delta| <= %" PRId64, HS_SKU_MAX,
                     HS_STOCK_MAX);
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    r = sku_lookup(c, h, sku, sku_len, false, &si);
    if (r != HS_OK)
        return r;
    s = &hs_sku_table(h)[si];
    /* Relaxed: validated by the CAS below, or a bound check only. */
    old = atomic_load_explicit(&s->available, memory_order_relaxed);
    if (delta > 0) {
        if (old + delta > HS_STOCK_MAX) {
            hs_set_error("hs_add_stock: %" PRId64 " + %" PRId64 " would exceed %" PRId64, old,
                         delta, HS_STOCK_MAX);
            return HS_BAD_ARGUMENT;
        }
        record_init(&rec, HS_REC_ADD_STOCK, si, delta);
        r = append_record(c, h, &rec, &at);
        if (r != HS_OK)
            return r;
        after = counter_give(s, delta);
    } else {
        for (;;) {
            applied = -old > delta ? -old : delta; /* max(delta, -old): never below 0 */
            if (applied == 0) {
                after = old;
                break;
            }
            /* acq_rel: as counter_take(). */
            if (atomic_compare_exchange_weak_explicit(&s->available, &old, old + applied,
                                                      memory_order_acq_rel, memory_order_relaxed)) {
                after = old + applied;
                record_init(&rec, HS_REC_ADD_STOCK, si, applied);
                r = append_record(c, h, &rec, &at);
                if (r != HS_OK) {
                    counter_give(s, -applied);
                    return r;
                }
                break;
            }
        }
    }
    if (available != NULL)
        *available = after;
    if (lsn != NULL)
        *lsn = at;
    return HS_OK;
}

/*-------------------------------------------------------------------------
 * Positions and status
 *-------------------------------------------------------------------------
 */

hs_lsn
hs_evicted_lsn(hs_client *c)
{
    hs_result r;
    hs_header *h;

    if (c == NULL)
        return 0;
    h = client_segment(c, &r);
    if (h == NULL) /* the last known value; immutable per generation */
        h = atomic_load_explicit(&c->seg, memory_order_acquire);
    return h->evicted_lsn;
}

hs_result
hs_publish_applied(hs_client *c, hs_lsn applied)
{
    hs_header *h;
    hs_result r = HS_OK;
    uint64_t cur;

    if (c == NULL) {
        hs_set_error("hs_publish_applied: no client");
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    /* Relaxed first guess; the CAS keeps applied_lsn from going back. */
    cur = atomic_load_explicit(&h->applied_lsn, memory_order_relaxed);
    while (cur < applied) {
        /* Release: pairs with the daemon's acquire load before it recycles
         * files or persists the position. */
        if (atomic_compare_exchange_weak_explicit(&h->applied_lsn, &cur, applied,
                                                  memory_order_release, memory_order_relaxed))
            break;
    }
    return HS_OK;
}

/* Fills out from the current mapping; when no daemon serves, it is still
 * filled from the last mapping and the failure is returned. */
hs_result
hs_get_status(hs_client *c, hs_status *out)
{
    hs_header *h;
    hs_result r = HS_OK;
    uint64_t next, spilled, beat, now;

    if (c == NULL || out == NULL) {
        hs_set_error("hs_get_status: no client or no output");
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        h = atomic_load_explicit(&c->seg, memory_order_acquire);
    memset(out, 0, sizeof(*out));
    /* Relaxed everywhere: a snapshot for people and tools, not a decision. */
    out->generation = h->generation;
    out->daemon_pid = h->daemon_pid;
    out->state = atomic_load_explicit(&h->state, memory_order_acquire);
    next = atomic_load_explicit(&h->next_lsn, memory_order_relaxed) & ~HS_LSN_FENCED;
    spilled = atomic_load_explicit(&h->spilled_lsn, memory_order_relaxed);
    out->next_lsn = next;
    out->spilled_lsn = spilled;
    out->durable_lsn = atomic_load_explicit(&h->durable_lsn, memory_order_relaxed);
    out->applied_lsn = atomic_load_explicit(&h->applied_lsn, memory_order_relaxed);
    out->checkpoint_lsn = atomic_load_explicit(&h->checkpoint_lsn, memory_order_relaxed);
    out->evicted_lsn = h->evicted_lsn;
    out->sku_count = atomic_load_explicit(&h->sku_count, memory_order_relaxed);
    out->sku_capacity = h->sku_capacity;
    out->order_count = atomic_load_explicit(&h->order_count, memory_order_relaxed);
    out->order_capacity = h->order_capacity;
    out->ring_used = next > spilled + 1 ? (uint32_t)(next - spilled - 1) : 0;
    out->ring_capacity = h->ring_capacity;
    beat = atomic_load_explicit(&h->heartbeat_ms, memory_order_relaxed);
    now = hs_now_monotonic_ms();
    out->heartbeat_age_ms = now > beat ? now - beat : 0;
    out->abandoned_records = atomic_load_explicit(&h->abandoned_records, memory_order_relaxed);
    out->last_flush_unix_ms = atomic_load_explicit(&h->last_flush_unix_ms, memory_order_relaxed);
    return r;
}
