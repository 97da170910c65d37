/*-------------------------------------------------------------------------
 *
 * segment.h
 *      The shared-memory layout of hotstock, defined once.
 *
 * hotstockd creates one POSIX shared-memory object per data directory
 * (name from hs_segment_name(), mode 0600) and is its only owner.  Clients
 * (libhotstock: PostgreSQL backends, tests, tools) map it read-write and run
 * the fast path on it directly.  Nothing else may know these structs.
 *
 * Layout (offsets are stored in the header; every table starts on a
 * 64-byte boundary):
 *
 *     hs_header           positions, capacities, liveness
 *     hs_sku_slot[]       sku_capacity slots, open addressing, linear probe
 *     hs_order_slot[]     order_capacity slots, open addressing, linear probe
 *     hs_ring_slot[]      ring_capacity slots, the write-ahead queue ring
 *     hs_stripe[]         HS_ORDER_STRIPES insert locks of the order index
 *     filter              filter_blocks 64-byte blocks: the evicted-order
 *                         filter (a blocked Bloom filter, see below)
 *     statistics          per-SKU counters, the hot-SKU sketch and table
 *                         (segment_stats.h: their own protocol essay)
 *
 * All capacities are powers of two.  SKU slots are never deleted while a
 * segment lives; order slots are, online, by the daemon's evictor (see
 * "Eviction" below); a restarted daemon builds a fresh segment (a new
 * generation) from the files on disk.
 *
 * WHO WRITES WHAT, AND WHICH ORDERING PROTECTS IT
 *
 *  header.state       daemon: STARTING -> READY -> (STOPPING | DEAD).  A
 *                     client checks it (acquire) at the start of every call;
 *                     anything but READY means "re-attach or fail".  DEAD is
 *                     stored (release) by the next daemon after it fenced the
 *                     segment; the name then points at a new segment.
 *  header.heartbeat_ms daemon main thread, relaxed, every 100 ms
 *                     (CLOCK_MONOTONIC).  A client that finds it older than
 *                     HS_HEARTBEAT_DEAD_MS reports the daemon down.
 *  header.next_lsn    clients, by CAS (acq_rel), to reserve one ring slot:
 *                     allowed only while next_lsn - spilled_lsn < ring
 *                     capacity and HS_LSN_FENCED is clear.  The daemon sets
 *                     HS_LSN_FENCED (fetch_or, seq_cst) to stop all
 *                     reservations before it salvages the ring.
 *  header.spilled_lsn spiller (release) after the records up to it were
 *                     handed to write(2): their ring slots are free again.
 *                     Pairs with the acquire load in the reserving CAS loop.
 *  header.durable_lsn spiller (release) after fdatasync; then it bumps
 *                     durable_seq and wakes the waiters of the LSNs it made
 *                     durable (FUTEX_WAKE_BITSET, hs_durable_bits).  Waiters
 *                     load durable_seq, then durable_lsn (acquire), then
 *                     sleep on durable_seq with their LSN's bit (so no
 *                     wake-up is lost: a flush that covers the LSN after
 *                     the load either changed the word first, or wakes the
 *                     bit).  A stop, and the next daemon's recovery after a
 *                     crash, wake every bit.
 *  header.flush_wanted clients, a seq_cst max: a durability waiter raises it
 *                     to its LSN (hs_wait_durable), a caller that will wait
 *                     later too (hs_flush_soon).  The spiller flushes at
 *                     once while it is above the synced LSN (group
 *                     commit); it needs no lowering, so a client that dies
 *                     inside a wait leaves nothing behind.
 *  header.sync_waiters clients, fetch_add/sub around a durability wait: a
 *                     hint only, for a lone waiter's spin (ring.c).  A
 *                     client killed inside a wait leaves it raised, and
 *                     lone waiters then sleep at once until the next
 *                     segment; nothing else reads it.
 *  header.spiller_seq clients bump it and FUTEX_WAKE when spiller_sleeping
 *                     is set, after publishing a record that leaves at
 *                     least ring_capacity / 8 records unspilled, when they
 *                     start a durability wait, and when the ring is full.
 *                     Below that the spiller's own timed sleep (at most
 *                     flush_interval_ms) picks the records up: a wake-up
 *                     per record would cost every deduction a system call.
 *  header.applied_lsn drain worker (release), after its transaction
 *                     committed; the daemon reads it for recycling and
 *                     persists it in the checkpoint.
 *  header.checkpoint_lsn daemon (release) after a checkpoint is durable.
 *  header.evicted_lsn the evictor (seq_cst), BEFORE it evicts anything with
 *                     it: every order id the evictor put into the filter
 *                     had all its records at or below it (they are in
 *                     PostgreSQL's ledger).  0: nothing was ever evicted.
 *                     Only grows while a segment lives.
 *
 *  hs_sku_slot.state  EMPTY -> INSERTING(pid) -> READY, by CAS (acq_rel);
 *                     the name is written between the two and published by
 *                     the release store of READY.  Readers that meet
 *                     INSERTING spin until READY, or until the owner pid is
 *                     gone, then CAS it to DEAD (a slot probes pass over).
 *  hs_sku_slot.available  clients only: CAS (acq_rel) decrement if
 *                     available >= qty; fetch_add for increments.  The daemon
 *                     writes it only while building a segment (state
 *                     STARTING).  Bit 62 (HS_AVAILABLE_LOCKED) is the basket
 *                     lock: a basket takes `locker` by CAS 0 -> its pid
 *                     (acquire; from a dead pid too), then fetch_or's the
 *                     bit, on every SKU of the basket in slot order; checks
 *                     its lines; and leaves each SKU with one fetch_sub(qty +
 *                     LOCKED) or fetch_and(~LOCKED) (release), then stores
 *                     locker 0.  Every decrement (a take, a withdrawal, a
 *                     put_sku lowering) CASes only from a value without the
 *                     bit, so it waits while a basket decides; an increment
 *                     (fetch_add) commutes with the lock and never waits.
 *                     A waiter that finds the bit set and `locker` dead
 *                     breaks the lock: CAS locker dead -> its pid,
 *                     fetch_and(~LOCKED), locker 0 (counter.c).  Readers
 *                     mask the bit.
 *
 *  hs_order_slot.state (version << 32 | owner pid << 8 | HS_INDEX_*), by
 *                     CAS (acq_rel; seq_cst where eviction is involved).
 *                     The version is bumped only by the evictor when it
 *                     empties the slot, and every transition keeps it: a
 *                     CAS from a word read before an eviction fails, so a
 *                     slot evicted and reused by another id (ABA) is never
 *                     mistaken for the one that was found.  Readers of the
 *                     key fields re-check the version after reading them.
 *                     EMPTY -> INSERTING -> PENDING -> DEDUCTED | FAILED;
 *                     FAILED -> PENDING (a retry after sold out);
 *                     DEDUCTED -> REFUNDING -> REFUNDED | DEDUCTED (released);
 *                     a waiter that finds an owner (PENDING, REFUNDING, or
 *                     a hold's claim) dead waits until the spiller has
 *                     passed every reserved LSN and then decides from
 *                     `recorded`: the spiller marks each order slot whose
 *                     record it folded with that record's LSN and type
 *                     (release), so a record that reached the queue is never
 *                     denied.  The waiter first takes the slot over (CAS to
 *                     its own pid), then settles it in the state the last
 *                     folded record gives (hs_state_of_record: none ->
 *                     FAILED, DEDUCT or CONFIRM -> DEDUCTED, RESERVE ->
 *                     RESERVED, CANCEL, EXPIRE, REFUND -> CANCELLED,
 *                     EXPIRED, REFUNDED).  Nothing the dead owner wrote
 *                     itself is read for that: an owner stores deducted_lsn
 *                     and then its state, and a death between the two
 *                     stores must not change the verdict.  deducted_lsn:
 *                     the LSN of the record that settled the current state
 *                     (DEDUCT, RESERVE, CONFIRM, CANCEL, EXPIRE; a REFUND
 *                     keeps its DEDUCT's), written by the owner before its
 *                     release of the settled state; 0 when the entry was
 *                     inserted by hs_refund_evicted().
 *                     xid: the PENDING owner stores it (relaxed) before it
 *                     appends the DEDUCT, so whoever settles a dead owner's
 *                     slot from `recorded` (acquire, after the spiller's
 *                     acquire of the record's seq_cst publication) reads
 *                     the xid of the record it found; everyone else reads
 *                     it after the acquire of DEDUCTED.
 *                     hs_refund_evicted() inserts an entry as REFUNDING, or
 *                     takes a FAILED one FAILED -> PENDING -> REFUNDING (its
 *                     fields written in between); such an entry
 *                     (deducted_lsn == 0) is released to FAILED, not DEDUCTED.
 *                     Holds (shmd/lib/hold.c): PENDING -> RESERVED (a reserve:
 *                     deadline_ms written, like xid, before the RESERVE);
 *                     RESERVED -> CONFIRMING(pid) -> DEDUCTED | RESERVED
 *                     (released); RESERVED -> CANCELLING(pid) -> CANCELLED |
 *                     RESERVED; RESERVED -> EXPIRING(pid) -> EXPIRED, only
 *                     once the realtime clock read before the CAS is at or
 *                     past deadline_ms (a confirm claims only before it);
 *                     EXPIRED | CANCELLED -> PENDING (a retake) -> DEDUCTED |
 *                     back.  A dead claimer of a hold is settled by the
 *                     same rule: its CONFIRM, CANCEL or EXPIRE folded, or
 *                     else the RESERVE (or the CANCEL / EXPIRE a retake
 *                     started from) is the last record.  A settled hold
 *                     keeps deadline_ms (it tells a confirmed hold from a
 *                     plain deduction).
 *                     DEDUCTED | REFUNDED | FAILED | DEAD | CANCELLED |
 *                     EXPIRED -> EVICTING -> EMPTY(version + 1): the evictor
 *                     only (see below); RESERVED and the claimed states
 *                     never leave.
 *  hs_order_slot.passed how many ids stored beyond this slot passed over it
 *                     when they were inserted (seq_cst fetch_add by the
 *                     inserter before it claims its slot; fetch_sub by the
 *                     evictor after it emptied that id's slot).
 *
 * EVICTION (order index).  Deletion that lock-free probes survive, without
 * tombstones:
 *   - a lookup of id K walks from K's home slot and stops at the first slot
 *     that does not hold K and has passed == 0 (whatever its state): every
 *     slot between K's home and K's slot counts K in `passed`, so K is found
 *     while it is stored, and a slot may become EMPTY again mid-chain;
 *   - an insert of K holds the stripe lock of K's hash (hs_stripe: the pid
 *     in the word, taken by CAS, stolen from a dead holder), looks K up, and
 *     only if absent walks again, adding 1 to `passed` of every slot it
 *     cannot claim, until it claims an EMPTY one.  The lock makes the look-up
 *     and the claim one step for that id: two inserters of one id can no
 *     longer claim two slots once EMPTY slots reappear mid-chain.  Look-ups
 *     never take it;
 *   - the evictor (shmd/daemon/evictor.c) publishes evicted_lsn = W, then
 *     for an entry whose every record is <= W: puts its id into the filter
 *     (seq_cst), makes the filter file durable (so a restart never brings
 *     the entry back), CASes the state to EVICTING (the id is gone from here on:
 *     probes pass over EVICTING), clears the slot, stores EMPTY(version+1)
 *     (seq_cst), and takes 1 from `passed` of the slots between the id's
 *     home and its slot (seq_cst).  FAILED entries (no record, no units)
 *     leave without entering the filter; DEAD ones without the decrements
 *     (their key may be half written: the counts stay one too high, which
 *     only lengthens probes);
 *   - a deduct that claims an absent id (or a FAILED entry) reads the filter
 *     AFTER its claim (seq_cst).  A look-up that found the id absent read
 *     the evictor's EMPTY, EVICTING or decrement, all after the filter bit:
 *     an id cannot be missed by both.  A hit means "maybe evicted": the SQL
 *     layer looks in the ledger (hs_deduct_checked, HS_EVICTED_CHANGED).
 *
 * THE FILTER.  filter_blocks blocks of 512 bits; an id (its 64-bit hash)
 * sets HS_FILTER_BITS bits in one block (one cache line per probe).  Only
 * the evictor sets bits (fetch_or, seq_cst); nothing clears them while the
 * segment lives.  filter_legacy: the data directory has orders evicted
 * before it had a filter (every absent id is "maybe evicted").  The
 * daemon persists the filter in DIR/evicted.filter (shmd/format/filter_file.c).
 *  hs_ring_slot.seq   the publication word.  For LSN L (slot L & mask) it
 *                     moves, by CAS only, through
 *                       (an earlier lap's L' or L'|ABANDONED, L' < L)
 *                         -> CLAIMED(L, pid) -> L          published
 *                         -> L | HS_SEQ_ABANDONED          abandoned
 *                     The writer claims the slot BEFORE it fills it: CAS
 *                     (acquire) from the earlier lap's value to
 *                     hs_seq_claim(L, its pid), failing if it finds L or a
 *                     later lap (abandoned meanwhile); only then does it
 *                     copy the record in and store L (seq_cst, a release:
 *                     publishes the record).  The spiller loads seq
 *                     (acquire) and consumes the slot iff seq == L.
 *                     The spiller (slot unpublished for HS_STALL_ABANDON_MS)
 *                     and a recovering daemon (fencing) CAS seq to
 *                     L | HS_SEQ_ABANDONED, from an UNCLAIMED value at any
 *                     time, from CLAIMED(L, pid) only once pid is gone; a
 *                     live claimer is waited for.  A writer whose claim
 *                     fails undoes its counter change and reports
 *                     HS_DAEMON_DOWN.  So a record is either in the queue or
 *                     undone, and a stalled writer never writes into a slot
 *                     after it was abandoned and reused by L + capacity
 *                     (checking before filling cannot give that; owning
 *                     the slot does).  The pid is in the CASed word itself:
 *                     a pid stored after the claim would be lost if the
 *                     claimer died in between.
 *                     A group (a basket's records, group_size > 1 in each
 *                     member, group_pos its place) has consecutive LSNs
 *                     reserved by one CAS; its writer claims every member
 *                     before it fills any, and abandons the slots it holds
 *                     when a claim fails.  The spiller and the salvage take
 *                     a group only whole: one abandoned member makes every
 *                     member a NOOP (shmd/README.md, Baskets).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_SEGMENT_H
#define HOTSTOCK_SEGMENT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hotstock.h"
#include "util.h"

#define HS_CACHE_LINE 64

/* "HSTKSEG1" little-endian; the layout version changes with any struct here. */
#define HS_SEGMENT_MAGIC UINT64_C(0x3147455354534B48)
#define HS_SEGMENT_LAYOUT_VERSION 9

#define HS_HEARTBEAT_INTERVAL_MS 100
#define HS_HEARTBEAT_DEAD_MS 3000
#define HS_STALL_ABANDON_MS 2000

/* "STARTING", "READY", ... for messages; "UNKNOWN" for any other value. */
static inline const char *
hs_segment_state_name(uint32_t state)
{
    switch (state) {
    case HS_SEGMENT_STARTING:
        return "STARTING";
    case HS_SEGMENT_READY:
        return "READY";
    case HS_SEGMENT_STOPPING:
        return "STOPPING";
    case HS_SEGMENT_DEAD:
        return "DEAD";
    }
    return "UNKNOWN";
}

/* top bit of next_lsn: no more reservations in this segment */
#define HS_LSN_FENCED (UINT64_C(1) << 63)

/* The futex bit a durability waiter for lsn sleeps with on durable_seq
 * (FUTEX_WAIT_BITSET): a flush wakes only the bits of the LSNs it made
 * durable, so a waiter whose record came after the flush started sleeps
 * on (one LSN in 32 shares its bit). */
static inline uint32_t
hs_durable_bit(uint64_t lsn)
{
    return UINT32_C(1) << (lsn & 31);
}

/* The bits of the LSNs after `from` up to `upto` (every bit from 32 on). */
static inline uint32_t
hs_durable_bits(uint64_t from, uint64_t upto)
{
    uint32_t bits = 0;

    if (upto <= from)
        return 0;
    if (upto - from >= 32)
        return UINT32_MAX;
    for (uint64_t l = from + 1; l <= upto; l++)
        bits |= hs_durable_bit(l);
    return bits;
}
/* top bit of ring seq: the slot for (seq & ~bit) was abandoned */
#define HS_SEQ_ABANDONED (UINT64_C(1) << 63)
/* bit 62 of ring seq: claimed by a writer that is filling it; bits 32-61
 * are its pid (Linux pid_max <= 2^22), bits 0-31 the low half of its LSN
 * (laps of one slot differ by the ring capacity, far below 2^32). */
#define HS_SEQ_CLAIMED (UINT64_C(1) << 62)

static inline uint64_t
hs_seq_claim(uint64_t lsn, pid_t pid)
{
    return HS_SEQ_CLAIMED | ((uint64_t)((uint32_t)pid & 0x3fffffffu) << 32) | (uint32_t)lsn;
}

/* Is seq a claim (by anyone, for any lap)? */
static inline bool
hs_seq_is_claim(uint64_t seq)
{
    return (seq & (HS_SEQ_CLAIMED | HS_SEQ_ABANDONED)) == HS_SEQ_CLAIMED;
}

/* The claimer's pid of a claim. */
static inline pid_t
hs_seq_claimer(uint64_t seq)
{
    return (pid_t)((seq >> 32) & 0x3fffffffu);
}

/* order.recorded: the LSN of the last record of the order the spiller
 * folded, with that record's type (HS_REC_*) in the top byte; 0 when none.
 * One word, so a reader never pairs one record's LSN with another's type. */
#define HS_RECORDED_TYPE_SHIFT 56
#define HS_RECORDED_WORD(lsn, type) \
    (((uint64_t)(type) << HS_RECORDED_TYPE_SHIFT) | (uint64_t)(lsn))
#define HS_RECORDED_LSN(r) ((hs_lsn)((r) & ((UINT64_C(1) << HS_RECORDED_TYPE_SHIFT) - 1)))
#define HS_RECORDED_TYPE(r) ((unsigned)((r) >> HS_RECORDED_TYPE_SHIFT))

/*
 * The settled state an order's last record gives it.  The one rule by
 * which a dead owner's slot is settled (order_resolve_dead: from the type
 * in `recorded`) and an order rebuilt from the queue (recovery): the last
 * record says what the order is, whoever wrote which field before dying.
 * No record: FAILED (nothing taken).
 */
static inline unsigned
hs_state_of_record(unsigned type)
{
    switch (type) {
    case HS_REC_DEDUCT:  /* a deduction, or a retake of an ended hold */
    case HS_REC_CONFIRM: /* a hold made a sale */
        return HS_INDEX_DEDUCTED;
    case HS_REC_RESERVE:
        return HS_INDEX_RESERVED;
    case HS_REC_CANCEL:
        return HS_INDEX_CANCELLED;
    case HS_REC_EXPIRE:
        return HS_INDEX_EXPIRED;
    case HS_REC_REFUND:
        return HS_INDEX_REFUNDED;
    default:
        return HS_INDEX_FAILED;
    }
}

/* A record type that gives a settled state (its inverse, for an install);
 * 0 (none) for FAILED. */
static inline unsigned
hs_record_of_state(unsigned state)
{
    switch (state) {
    case HS_INDEX_DEDUCTED:
        return HS_REC_DEDUCT;
    case HS_INDEX_RESERVED:
        return HS_REC_RESERVE;
    case HS_INDEX_CANCELLED:
        return HS_REC_CANCEL;
    case HS_INDEX_EXPIRED:
        return HS_REC_EXPIRE;
    case HS_INDEX_REFUNDED:
        return HS_REC_REFUND;
    default:
        return 0;
    }
}

/* slot state words: low 8 bits state, bits 8..31 the owner's pid (Linux
 * pid_max <= 2^22), bits 32..63 the slot's version (order slots only) */
#define HS_STATE_MASK UINT64_C(0xff)
#define HS_STATE_OF(w) ((unsigned)((w)&HS_STATE_MASK))
#define HS_PID_OF(w) ((pid_t)(((w) >> 8) & 0xffffffu))
#define HS_STATE_WORD(state, pid) ((((uint64_t)(uint32_t)(pid)&0xffffffu) << 8) | (uint64_t)(state))
#define HS_VER_OF(w) ((uint32_t)((w) >> 32))
/* w's version with a new state and owner: every order-slot transition but
 * the evictor's keeps the version. */
#define HS_ORDER_NEXT(w, state, pid) (((w) & ~UINT64_C(0xffffffff)) | HS_STATE_WORD(state, pid))

/* Insert locks of the order index (a power of two). */
#define HS_ORDER_STRIPES 1024
/* Bits an id sets in its filter block (9 bits of a mixed hash each). */
#define HS_FILTER_BITS 7

/*
 * Header.  Fields written at different rates by different parties sit on
 * their own cache lines so that, e.g., the spiller publishing durable_lsn
 * does not invalidate the line every client reads next_lsn from.
 */
typedef struct hs_header {
    /* immutable after creation (written before state = READY) */
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;
    uint64_t generation; /* +1 per segment built for this directory */
    uint64_t total_size;
    uint32_t sku_capacity;
    uint32_t order_capacity;
    uint32_t ring_capacity;
    int32_t daemon_pid;
    uint64_t sku_offset;
    uint64_t order_offset;
    uint64_t ring_offset;
    uint64_t stripe_offset;
    uint64_t filter_offset;
    uint32_t filter_blocks; /* 64-byte blocks, a power of two */
    uint32_t filter_legacy; /* 1: ids evicted before the filter existed (see above) */
    uint64_t created_unix_ms;
    uint32_t buyer_capacity;  /* slots of the buyer table, a power of two */
    /* hotstockd's waiter_spin_us: how long a lone durability waiter spins
     * before it sleeps (ring.c); 0 (also from a daemon of before this
     * field, which left it zero) sleeps at once */
    uint32_t waiter_spin_us;
    uint64_t buyer_offset;    /* the buyer table (hs_buyer_slot) */
    uint64_t order_buyer_offset; /* one hs_order_buyer per order slot */
    char data_dir[256]; /* realpath of the data directory, for status */
    /* the statistics regions (segment_stats.h) */
    uint64_t stats_offset;
    uint64_t sketch_offset;
    uint64_t hot_offset;
    uint32_t sketch_width; /* buckets per sketch row, a power of two */
    uint32_t hot_k;        /* entries of the hot table; 0: no hot-SKU tracking */

    alignas(HS_CACHE_LINE) _Atomic uint32_t state;
    _Atomic uint64_t heartbeat_ms; /* CLOCK_MONOTONIC milliseconds */

    alignas(HS_CACHE_LINE) _Atomic uint64_t next_lsn; /* next LSN to reserve */

    alignas(HS_CACHE_LINE) _Atomic uint64_t spilled_lsn; /* last LSN handed to write(2) */

    alignas(HS_CACHE_LINE) _Atomic uint64_t durable_lsn; /* last LSN fdatasync'ed */
    _Atomic uint32_t durable_seq;                        /* futex word, bumped per flush */
    _Atomic uint32_t sync_waiters;                       /* the lone waiter's spin hint (above) */
    /* clients (seq_cst max: hs_wait_durable, hs_flush_soon): flush at once
     * up to here */
    _Atomic uint64_t flush_wanted;

    alignas(HS_CACHE_LINE) _Atomic uint32_t spiller_seq; /* futex word: work arrived */
    _Atomic uint32_t spiller_sleeping;

    alignas(HS_CACHE_LINE) _Atomic uint64_t applied_lsn; /* published by the drain */
    _Atomic uint64_t checkpoint_lsn;
    _Atomic uint32_t sku_count;   /* READY sku slots */
    _Atomic uint32_t order_count; /* claimed order slots */
    _Atomic uint64_t abandoned_records;
    _Atomic uint64_t last_flush_unix_ms;
    /* spiller (release): errno of a write(2) that is failing (ENOSPC, EIO)
     * while it keeps retrying; 0 once writing works again.  While non-zero,
     * clients refuse new records with HS_IO_ERROR ("disk full" and the like)
     * and durability waiters return HS_IO_ERROR; nothing already published
     * is dropped.  (An fdatasync failure is fatal instead.) */
    _Atomic int32_t spill_errno;

    /* the evictor's (see EVICTION above) */
    alignas(HS_CACHE_LINE) _Atomic uint64_t evicted_lsn;
    _Atomic uint64_t evictions;    /* entries emptied since creation */
    _Atomic uint64_t filter_ids;   /* ids put into the filter (with the persisted ones) */
    _Atomic uint64_t evict_passes; /* completed passes over the index */
    alignas(HS_CACHE_LINE) _Atomic uint32_t buyer_count; /* LIVE buyer slots */
    _Atomic uint32_t buyer_used;        /* slots not EMPTY (LIVE, GONE, INSERTING) */
    _Atomic uint64_t buyers_forgotten;  /* buyer slots made GONE by the evictor */
} hs_header;

/*
 * One SKU.  128 bytes, cache-line aligned: a hot SKU's counter is CASed by
 * every buyer, and padding keeps that line from also holding a neighbour.
 */
typedef struct hs_sku_slot {
    alignas(HS_CACHE_LINE) _Atomic uint64_t state; /* HS_STATE_WORD(hs_sku_slot_state, pid) */
    _Atomic int64_t available; /* units, | HS_AVAILABLE_LOCKED while a basket holds it */
    uint64_t hash;
    _Atomic uint32_t locker; /* pid of the basket that holds (or takes) the lock, 0 for none */
    /* The sale session (hotstock.h, "Sale sessions"; sale.c): read by
     * every take under the seqlock sale_seq (the same cache line as
     * `available`), written under sale_locker by hs_sale_configure /
     * hs_sale_pause and by the daemon's build. */
    _Atomic uint32_t sale_paused;   /* 1: paused */
    _Atomic uint64_t sale_start_ms; /* unix ms, 0: open from the start */
    _Atomic uint64_t sale_end_ms;   /* unix ms, 0: never closes */
    _Atomic int32_t sale_limit;     /* per-buyer limit, 0: none */
    _Atomic uint32_t sale_locker;   /* pid changing the configuration, 0: none */
    _Atomic uint32_t sale_seq;      /* seqlock of the four fields above: odd while they change */
    uint8_t sku_len;
    char sku[HS_SKU_MAX + 1];
    char pad_[128 - 8 - 8 - 8 - 4 - 4 - 8 - 8 - 4 - 4 - 4 - 1 - (HS_SKU_MAX + 1)];
} hs_sku_slot;

/* The basket lock bit of hs_sku_slot.available (counter.c): far above
 * HS_STOCK_MAX, so a counter never reaches it, and a counter is never
 * negative, so no borrow reaches it either.  Readers mask it. */
#define HS_AVAILABLE_LOCKED (INT64_C(1) << 62)

/* One order id.  128 bytes, aligned like the SKU slots for the same reason. */
typedef struct hs_order_slot {
    alignas(HS_CACHE_LINE) _Atomic uint64_t state; /* HS_STATE_WORD(hs_order_slot_state, pid) */
    uint64_t hash;
    _Atomic uint64_t recorded;     /* HS_RECORDED_WORD of the last record of this order the
                                      spiller folded (release), 0 for none */
    _Atomic uint64_t deducted_lsn; /* LSN of its DEDUCT (PENDING owner, relaxed, before the
                                      release of DEDUCTED); 0 if never deducted here */
    _Atomic uint64_t xid;          /* full xid of the (sub)transaction its DEDUCT carries, 0
                                      for none (PENDING owner, relaxed, BEFORE the record) */
    _Atomic uint64_t deadline_ms;  /* a hold's deadline, unix ms; 0 for a deduction (PENDING
                                      owner, relaxed, BEFORE the record, like xid) */
    uint32_t sku_index;            /* slot of its SKU in this segment */
    int32_t qty;
    _Atomic uint32_t passed; /* ids beyond this slot whose insert passed over it */
    uint8_t order_len;
    uint8_t buyer_counted; /* 1: its take counted for a buyer, hs_order_buyers() has the
                              reference (PENDING owner, before the record, like qty) */
    char order_id[HS_ORDER_ID_MAX + 1];
    char pad_[128 - 8 - 8 - 8 - 8 - 8 - 8 - 4 - 4 - 4 - 1 - 1 - (HS_ORDER_ID_MAX + 1)];
} hs_order_slot;

/*
 * One (SKU, buyer) entry of the per-buyer limits (buyer.c; hotstock.h,
 * "Per-buyer limits").  128 bytes.  `state` is HS_STATE_WORD(
 * hs_buyer_slot_state, pid) with a version in bits 32..63 that only the
 * evictor bumps (LIVE -> GONE) and an insert into a GONE slot keeps;
 * `units` is HS_BUYER_WORD(version, units): every change of the count is
 * a CAS on it that also checks the version, so a reference taken from a
 * LIVE slot never changes the count of the slot's next buyer.  The key
 * (hash, sku_index, buyer) is written only while INSERTING and read by
 * probes between two loads of `state` (a seqlock).
 */
typedef struct hs_buyer_slot {
    alignas(HS_CACHE_LINE) _Atomic uint64_t state;
    _Atomic uint64_t units;
    uint64_t hash;
    uint32_t sku_index;
    uint8_t buyer_len;
    char buyer[HS_BUYER_MAX + 1];
    char pad_[128 - 8 - 8 - 8 - 4 - 1 - (HS_BUYER_MAX + 1)];
} hs_buyer_slot;

typedef enum hs_buyer_slot_state {
    HS_BUYER_EMPTY = 0,     /* never used since the segment was built: ends a probe */
    HS_BUYER_INSERTING = 1, /* being inserted (owner pid) */
    HS_BUYER_LIVE = 2,
    HS_BUYER_GONE = 3       /* forgotten (or an abandoned insert): probes pass, inserts reuse */
} hs_buyer_slot_state;

#define HS_BUYER_WORD(ver, units) (((uint64_t)(ver) << 32) | (uint32_t)(units))
#define HS_BUYER_UNITS(w) ((int32_t)(uint32_t)(w))

/* An order's buyer, valid while the order slot's buyer_counted is 1 (the
 * slot's PENDING owner writes both, relaxed, before its record, like
 * xid; an order not counted never touches this line): ref =
 * HS_BUYER_WORD(version, slot + 1); take_lsn = the LSN of the take's
 * BUYER record (0 while not known: a give-back then is not folded into
 * the checkpoint, undersell). */
typedef struct hs_order_buyer {
    _Atomic uint64_t ref;
    _Atomic uint64_t take_lsn;
} hs_order_buyer;

/* An insert lock of the order index: 0, or the holder's pid. */
typedef struct hs_stripe {
    alignas(HS_CACHE_LINE) _Atomic uint32_t holder;
    char pad_[HS_CACHE_LINE - 4];
} hs_stripe;

/* One 512-bit block of the filter. */
typedef struct hs_filter_block {
    alignas(HS_CACHE_LINE) _Atomic uint64_t word[8];
} hs_filter_block;

/* A record in the ring: the SKU travels as its slot index; the spiller
 * copies the name out of the SKU table when it writes the file. */
typedef struct hs_ring_record {
    uint8_t type; /* hs_record_type */
    uint8_t order_len;
    uint8_t flags;      /* HS_REC_FLAG_* (the writer sets GROUP_MORE from the group fields) */
    uint8_t group_size; /* records in its group (a basket), 0 or 1 for a lone record */
    uint32_t sku_index;
    uint32_t order_index; /* slot in the order index, or UINT32_MAX */
    uint32_t ttl_ms;      /* RESERVE: its time-to-live (deadline = timestamp_us / 1000 + ttl_ms) */
    int64_t qty;           /* qty or signed delta */
    uint64_t xid;          /* calling transaction's full xid, 0 if none */
    uint64_t timestamp_us; /* CLOCK_REALTIME */
    char order_id[HS_ORDER_ID_MAX + 1];
    uint8_t group_pos; /* its place in its group, 0 .. group_size - 1 */
} hs_ring_record;

typedef struct hs_ring_slot {
    alignas(HS_CACHE_LINE) _Atomic uint64_t seq;
    uint32_t crc; /* CRC32C of rec, checked when salvaged after a crash */
    uint32_t pad0_;
    hs_ring_record rec; /* 112 bytes: the slot is full */
} hs_ring_slot;

_Static_assert(sizeof(hs_sku_slot) == 128, "hs_sku_slot must be 128 bytes");
_Static_assert(sizeof(hs_order_slot) == 128, "hs_order_slot must be 128 bytes");
_Static_assert(sizeof(hs_ring_slot) == 128, "hs_ring_slot must be 128 bytes");
_Static_assert(sizeof(hs_buyer_slot) == 128, "hs_buyer_slot must be 128 bytes");

/* Capacities as the daemon was asked for them (rounded up to powers of 2). */
typedef struct hs_segment_sizes {
    uint32_t sku_capacity;
    uint32_t order_capacity;
    uint32_t ring_capacity;
    uint32_t filter_blocks;
    uint32_t buyer_capacity;
    uint32_t hot_k; /* 0 .. HS_HOT_K_MAX */
} hs_segment_sizes;

/* Name of the shm object for a data directory: "/hotstock.<uid>.<hash>". */
void hs_segment_name(const char *real_dir, char *out, size_t outlen);

/* Total bytes and table offsets for these capacities; fills hdr's layout
 * fields (magic, version, capacities, offsets, total_size). */
void hs_segment_layout(const hs_segment_sizes *sizes, hs_header *hdr);

static inline hs_sku_slot *
hs_sku_table(hs_header *h)
{
    return (hs_sku_slot *)((char *)h + h->sku_offset);
}

static inline hs_order_slot *
hs_order_table(hs_header *h)
{
    return (hs_order_slot *)((char *)h + h->order_offset);
}

static inline hs_ring_slot *
hs_ring(hs_header *h)
{
    return (hs_ring_slot *)((char *)h + h->ring_offset);
}

static inline hs_stripe *
hs_stripes(hs_header *h)
{
    return (hs_stripe *)((char *)h + h->stripe_offset);
}

static inline hs_buyer_slot *
hs_buyer_table(hs_header *h)
{
    return (hs_buyer_slot *)((char *)h + h->buyer_offset);
}

static inline hs_order_buyer *
hs_order_buyers(hs_header *h)
{
    return (hs_order_buyer *)((char *)h + h->order_buyer_offset);
}

static inline hs_filter_block *
hs_filter(hs_header *h)
{
    return (hs_filter_block *)((char *)h + h->filter_offset);
}

/* The home slot of an id's hash in the order index. */
static inline uint32_t
hs_order_home(const hs_header *h, uint64_t hash)
{
    return (uint32_t)hash & (h->order_capacity - 1);
}

/* The filter's view of an id's hash: its block and, per word of the block,
 * the bits it sets.  The block comes from the top bits (the index uses the
 * low ones), the bit positions from a mixed copy (splitmix64's finalizer). */
static inline uint32_t
hs_filter_pattern(uint32_t blocks, uint64_t hash, uint64_t mask[8])
{
    uint64_t x = hash;

    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    for (int i = 0; i < 8; i++)
        mask[i] = 0;
    for (int i = 0; i < HS_FILTER_BITS; i++) {
        unsigned bit = (unsigned)(x >> (9 * i)) & 511u;
        mask[bit >> 6] |= UINT64_C(1) << (bit & 63);
    }
    return (uint32_t)(hash >> 40) & (blocks - 1);
}

/* Does the filter of `blocks` blocks hold the id with this hash (or a
 * false positive)?  seq_cst loads: see EVICTION above. */
static inline bool
hs_filter_holds(hs_filter_block *filter, uint32_t blocks, uint64_t hash)
{
    uint64_t mask[8];
    hs_filter_block *b = &filter[hs_filter_pattern(blocks, hash, mask)];

    for (int i = 0; i < 8; i++)
        if (mask[i] != 0 && (atomic_load(&b->word[i]) & mask[i]) != mask[i])
            return false;
    return true;
}

/* May the id with this hash have been evicted?  Read after the claim (see
 * EVICTION above). */
static inline bool
hs_filter_maybe(hs_header *h, uint64_t hash)
{
    return h->filter_legacy || hs_filter_holds(hs_filter(h), h->filter_blocks, hash);
}

/*
 * Segment lifecycle (segment.c).
 *
 * hs_segment_create: the daemon's.  Creates the shm object for real_dir
 * (O_CREAT|O_EXCL, mode 0600; fails if one exists: unlink it first), sizes
 * and maps it, writes the layout, generation, evicted_lsn, daemon_pid, and
 * leaves state STARTING.  NULL with hs_last_error() on failure.
 *
 * hs_segment_map: map the existing segment of real_dir read-write and check
 * magic and layout version: HS_DAEMON_DOWN when there is none,
 * HS_VERSION_MISMATCH with a message naming both versions, HS_IO_ERROR.
 * It does not look at state: callers do.
 */
hs_header *hs_segment_create(const char *real_dir, const hs_segment_sizes *sizes,
                             uint64_t generation, hs_lsn evicted_lsn, bool filter_legacy);
hs_result hs_segment_map(const char *real_dir, hs_header **hdr);
void hs_segment_unmap(hs_header *h);
int hs_segment_unlink(const char *real_dir);

/*
 * Table operations shared by the client fast path and the daemon's segment
 * build (implemented in client.c: one probing scheme, one place).
 *
 * hs_sku_find: find sku; with create, insert it (available 0) if absent.
 *   HS_OK (*index set), HS_UNKNOWN_SKU, HS_TABLE_FULL.
 * hs_order_find: HS_OK (*index set) or HS_NOT_FOUND.
 * hs_order_install: daemon build only (state STARTING, one thread): insert
 *   an order with its final state (DEDUCTED, FAILED, REFUNDED, RESERVED,
 *   CANCELLED, EXPIRED), the LSN of its last record, the xid its DEDUCT
 *   (or RESERVE, CONFIRM) carried and a hold's deadline (0 for none).
 * hs_hold_expire: the daemon's expiry (shmd/daemon/expirer.c): expire the
 *   hold in slot `index` if it is still of `version`, RESERVED and due at
 *   now_ms (unix ms).  HS_OK (expired now, *lsn its EXPIRE); HS_NOT_FOUND
 *   (no longer a hold of that version: forget it); HS_QUEUE_FULL (a live
 *   process claims it, or the ring is full: try again later); HS_DUPLICATE
 *   (not due: *deadline_ms says when); HS_DAEMON_DOWN.
 */
hs_result hs_sku_find(hs_header *h, const char *sku, size_t len, bool create, uint32_t *index);
hs_result hs_order_find(hs_header *h, const char *order_id, size_t len, uint32_t *index);
hs_result hs_order_install(hs_header *h, const char *order_id, size_t len, uint32_t sku_index,
                           int32_t qty, enum hs_order_slot_state state, hs_lsn recorded,
                           uint64_t xid, uint64_t deadline_ms, uint32_t *index);
hs_result hs_hold_expire(hs_client *c, uint32_t index, uint32_t version, uint64_t now_ms,
                         hs_lsn *lsn, uint64_t *deadline_ms);

/*
 * The buyer table's daemon half (buyer.c).
 * hs_buyer_install: daemon build only: insert (SKU slot si, buyer) with
 *   its units; HS_OK or HS_DUPLICATE with *ref_word (an hs_order_buyer
 *   ref), HS_TABLE_FULL, HS_BAD_ARGUMENT.
 * hs_buyers_forget: under the SKU's sale_locker, if its sale ended at or
 *   before ended_by_ms (unix ms): append the FORGET record of SKU slot si
 *   (a BUYER record with qty 0 and no buyer), then make every LIVE entry
 *   of si GONE; *forgotten = how many.  HS_DUPLICATE: the sale has not
 *   ended by then (reopened meanwhile), nothing forgotten.  The evictor
 *   calls it once a sale has ended for buyer_retention.
 */
hs_result hs_buyer_install(hs_header *h, uint32_t si, const char *buyer, size_t len, int32_t units,
                           uint64_t *ref_word);
hs_result hs_buyers_forget(hs_client *c, uint32_t si, uint64_t ended_by_ms, hs_lsn *lsn,
                           uint32_t *forgotten);

/* CRC of a ring record as the client computes it before publishing. */
static inline uint32_t
hs_ring_record_crc(const hs_ring_record *rec)
{
    return hs_crc32c(0, rec, sizeof(*rec));
}

#include "segment_stats.h"

#endif /* HOTSTOCK_SEGMENT_H */
