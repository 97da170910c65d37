/*-------------------------------------------------------------------------
 *
 * client_internal.h
 *      What the files of libhotstock share: the client handle, wait
 *      budgets, the liveness check every call starts with, and the
 *      internal calls between attach.c, ring.c, index.c, deduct.c,
 *      refund.c and stock.c.
 *
 * Internal to shmd/lib.  Every function here is hidden: hotstock.so and
 * programs see only hotstock.h.  The protocol these functions follow is
 * written in segment.h, beside the structures.
 *
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
#ifndef HOTSTOCK_CLIENT_INTERNAL_H
#define HOTSTOCK_CLIENT_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "segment.h"

#define HS_INTERNAL __attribute__((visibility("hidden")))

/* Spins before yielding, then yields before sleeping, in every wait. */
#define HS_SPIN_ROUNDS 64
#define HS_YIELD_ROUNDS 32
/* How long a reservation waits for ring space before HS_QUEUE_FULL. */
#define HS_QUEUE_WAIT_MS 100
/* How long a call waits for a live process to finish with an order or SKU
 * slot (a PENDING deduction, a claimed refund) before giving up with
 * HS_QUEUE_FULL ("busy, retry"): never hang on a stopped process. */
#define HS_OWNER_WAIT_MS 10000
/* How long an insert into a full order index waits for the evictor to
 * empty a slot before HS_TABLE_FULL: a burst faster than the drain fills
 * the index, and the evictor frees it as the drain catches up (the
 * waiting clients give it the CPU), so the burst is slowed, not refused. */
#define HS_INDEX_WAIT_MS 5000
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

/* Wait budget bookkeeping for a slot held by a live owner. */
typedef struct owner_wait {
    unsigned round;
    uint64_t since_ms;
} owner_wait;

/* What to insert when the order id is absent. */
typedef struct order_insert {
    enum hs_order_slot_state state; /* HS_INDEX_PENDING or HS_INDEX_REFUNDING */
    uint32_t sku_index;
    int32_t qty;
} order_insert;

HS_INTERNAL void backoff(unsigned *round);
HS_INTERNAL bool valid_len(const char *s, size_t len, size_t max);
HS_INTERNAL void report_not_serving(const hs_client *c, hs_header *h);
HS_INTERNAL hs_header *client_reattach(hs_client *c, hs_header *seen, hs_result *res);
HS_INTERNAL bool daemon_check(const hs_client *c, hs_header *h, bool check_pid, hs_result *res);
HS_INTERNAL bool daemon_alive(const hs_client *c, hs_header *h, hs_result *res);
HS_INTERNAL void spiller_wake(hs_header *h, bool force);
HS_INTERNAL void record_init(hs_ring_record *rec, hs_record_type type, uint32_t sku_index,
                             int64_t qty);
HS_INTERNAL hs_result append_record(hs_client *c, hs_header *h, hs_ring_record *rec, hs_lsn *lsn);
HS_INTERNAL hs_result append_group(hs_client *c, hs_header *h, hs_ring_record *recs, uint32_t n,
                                  hs_lsn *first);
HS_INTERNAL hs_result sale_check(hs_sku_slot *s, uint64_t now_ms);
HS_INTERNAL hs_result hold_settled(hs_order_slot *o, hs_hold_action action, unsigned state,
                                   const char *noun, const char *order_id, size_t order_len);
HS_INTERNAL int counter_take(hs_sku_slot *s, int64_t qty);
HS_INTERNAL int64_t counter_give(hs_sku_slot *s, int64_t qty);
HS_INTERNAL int64_t counter_read(hs_sku_slot *s);
HS_INTERNAL bool counter_wait_unlocked(hs_sku_slot *s, int64_t *cur);
HS_INTERNAL bool counter_lock(hs_sku_slot *s);
HS_INTERNAL void counter_unlock(hs_sku_slot *s, int64_t qty);
HS_INTERNAL int owner_wait_step(const hs_client *c, hs_header *h, owner_wait *ow, uint64_t w,
                                hs_result *res);
HS_INTERNAL hs_result sku_lookup(hs_client *c, hs_header *h, const char *sku, size_t len,
                                 bool create, uint32_t *index);
HS_INTERNAL hs_result order_probe(const hs_client *c, hs_header *h, const char *order_id,
                                  size_t len, const order_insert *ins, uint32_t *index,
                                  uint32_t *ver, bool *inserted);
HS_INTERNAL hs_result stripe_lock(const hs_client *c, hs_header *h, uint64_t hash,
                                  hs_stripe **out);
HS_INTERNAL void stripe_unlock(hs_stripe *s);
HS_INTERNAL bool order_still(hs_order_slot *o, uint32_t ver);
HS_INTERNAL bool order_owned_state(unsigned state);
HS_INTERNAL void order_set(hs_order_slot *o, unsigned state);
HS_INTERNAL hs_result order_resolve_dead(hs_client *c, hs_header *h, hs_order_slot *o, uint64_t w);
HS_INTERNAL hs_result order_wait_owner(hs_client *c, hs_header *h, owner_wait *ow,
                                       hs_order_slot *o, uint64_t w);
HS_INTERNAL void order_fail(hs_order_slot *o);
HS_INTERNAL void order_unclaim(hs_order_slot *o);
HS_INTERNAL void copy_sku_name(hs_header *h, uint32_t si, char *out);
/* buyer.c: the per-buyer limits */
typedef struct buyer_ref {
    uint32_t index; /* slot in the buyer table */
    uint32_t ver;   /* its version when found */
} buyer_ref;
HS_INTERNAL hs_result buyer_find(const hs_client *c, hs_header *h, uint32_t si, const char *buyer,
                                 size_t len, bool create, buyer_ref *out);
HS_INTERNAL int buyer_take(hs_header *h, buyer_ref ref, int32_t qty, int32_t limit);
HS_INTERNAL void buyer_give(hs_header *h, uint64_t ref_word, int32_t qty);
HS_INTERNAL bool buyer_record(hs_header *h, uint32_t si, uint64_t ref_word, int32_t delta,
                              hs_lsn take_lsn, hs_ring_record *rec);
HS_INTERNAL int32_t sale_limit(hs_sku_slot *s);
HS_INTERNAL hs_result sale_lock(hs_client *c, hs_sku_slot *s);
HS_INTERNAL void sale_unlock(hs_sku_slot *s);
HS_INTERNAL bool sale_read(hs_sku_slot *s, hs_sale *out);

/* Order slot oi's buyer reference (0: its take was not counted) and the
 * LSN of its take's BUYER record; set by the slot's owner (segment.h,
 * hs_order_buyer).  Relaxed: published with the order's state. */
static inline uint64_t
order_buyer_ref(hs_header *h, uint32_t oi)
{
    return hs_order_table(h)[oi].buyer_counted
               ? atomic_load_explicit(&hs_order_buyers(h)[oi].ref, memory_order_relaxed)
               : 0;
}

static inline hs_lsn
order_buyer_take_lsn(hs_header *h, uint32_t oi)
{
    return hs_order_table(h)[oi].buyer_counted
               ? atomic_load_explicit(&hs_order_buyers(h)[oi].take_lsn, memory_order_relaxed)
               : 0;
}

static inline void
order_buyer_set(hs_header *h, uint32_t oi, uint64_t ref, hs_lsn take_lsn)
{
    if (ref != 0) {
        atomic_store_explicit(&hs_order_buyers(h)[oi].ref, ref, memory_order_relaxed);
        atomic_store_explicit(&hs_order_buyers(h)[oi].take_lsn, take_lsn, memory_order_relaxed);
    }
    hs_order_table(h)[oi].buyer_counted = ref != 0;
}
HS_INTERNAL hs_result buyer_count(hs_client *c, hs_header *h, hs_sku_slot *s, uint32_t si,
                                  bool retake, const char *buyer, size_t buyer_len, int32_t qty,
                                  uint64_t *ref_word);
/* Statistics (stats.c, segment_stats.h).  hs_stats_note: count n of kind
 * for SKU slot si of segment h (relaxed; a take attempt also feeds the
 * hot-SKU sketch, sampled).  Call it where the counted thing happened:
 * HS_STAT_SOLD_OUT where a take answers sold out, HS_STAT_LIMIT_REFUSAL
 * where the per-buyer limit refuses one.  The kinds that are records
 * (DEDUCT, REFUND, RESERVE, EXPIRY) are counted by hs_stats_records, which
 * append_group() calls once its records are published. */
HS_INTERNAL void hs_stats_note(hs_header *h, uint32_t si, hs_stat_kind kind, int64_t n);
HS_INTERNAL void hs_stats_records(hs_header *h, const hs_ring_record *recs, uint32_t n);
HS_INTERNAL hs_result refund_apply(hs_client *c, hs_header *h, uint32_t oi, hs_record_type type,
                                   uint16_t flags, hs_lsn *lsn, int32_t *qty, char *sku_out);

/* The process id put into claims.  Cached (getpid() is a system call) and
 * refreshed in the child after fork(), so a child never claims with its
 * parent's pid.  Relaxed: each process only reads its own value.
 * hs_self_pid_first() runs the one-time set-up (attach.c). */
HS_INTERNAL extern _Atomic pid_t hs_self_pid;
HS_INTERNAL pid_t hs_self_pid_first(void);

static inline pid_t
self_pid(void)
{
    pid_t p = atomic_load_explicit(&hs_self_pid, memory_order_relaxed);
    if (__builtin_expect(p == 0, 0))
        p = hs_self_pid_first();
    return p;
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

#endif /* HOTSTOCK_CLIENT_INTERNAL_H */
