/*-------------------------------------------------------------------------
 *
 * hotstock.h
 *      libhotstock: the client API of a hotstockd segment.
 *
 * A client attaches to the daemon that owns one data directory and runs
 * deductions, refunds and reads directly on its shared memory.  Every call
 * is thread-safe and lock-free on the fast path; a client handle may be
 * shared by the threads of one process.  Every call first checks that the
 * segment it maps is still served (state and heartbeat) and re-attaches
 * transparently when a restarted daemon replaced it; it never acts on a
 * segment nobody spills.
 *
 * Strings are (pointer, length) pairs, not NUL-terminated; a SKU is 1 to
 * HS_SKU_MAX bytes, an order id 1 to HS_ORDER_ID_MAX bytes.
 *
 * "Error means unknown": HS_DAEMON_DOWN from hs_wait_durable() means the
 * record may or may not become durable.  Retry with the same order id (a
 * retry of a done deduction returns HS_DUPLICATE) or ask hs_order_status().
 *
 * The queue reader at the bottom reads the durable write-ahead queue files
 * directly; the PostgreSQL drain uses it, also while the daemon is down.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_H
#define HOTSTOCK_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HS_SKU_MAX 63
#define HS_ORDER_ID_MAX 63
#define HS_BUYER_MAX 63
#define HS_QTY_MAX 1000000                  /* largest qty of one deduction */
#define HS_STOCK_MAX INT64_C(1000000000000) /* largest stock of one SKU */

typedef uint64_t hs_lsn;

/*-------------------------------------------------------------------------
 * Every state, record type and result, named once
 *
 * The values are part of the shared-memory layout or of the queue format
 * (which say so); the structures they live in, and the protocol that
 * moves them (who writes each word, in which memory order), are in
 * shmd/lib/segment.h, beside those structures.  In short:
 *
 *   hs_segment_state     header.state: written by the daemon only, with
 *                        release order (READY publishes the built tables);
 *                        every client call loads it with acquire order.
 *   hs_order_slot_state  the low byte of an order slot's state word in the
 *                        order index: changed only by CAS (acq_rel); the
 *                        owner pid sits in the same word.
 *   hs_sku_slot_state    the same for a SKU slot.
 *   hs_record_type       a record in the ring (written by its client before
 *                        the seq_cst store that publishes the slot) and in
 *                        the queue files (written by the spiller).
 *   hs_order_status_code what hs_order_status() answers (and the SQL
 *                        function order_status()): never stored anywhere.
 *-------------------------------------------------------------------------
 */

/* The segment's life: header.state. */
typedef enum hs_segment_state {
    HS_SEGMENT_STARTING = 1, /* being built by the daemon */
    HS_SEGMENT_READY = 2,    /* serving */
    HS_SEGMENT_STOPPING = 3, /* clean stop in progress: no new work */
    HS_SEGMENT_DEAD = 4      /* fenced by a newer daemon: re-attach */
} hs_segment_state;

/* Record types, in the ring and in the queue files alike (a format value:
 * never renumber). */
typedef enum hs_record_type {
    HS_REC_DEDUCT = 1,    /* qty > 0 units of sku taken by order_id */
    HS_REC_REFUND = 2,    /* qty > 0 units of sku given back by order_id */
    HS_REC_PUT_SKU = 3,   /* sku created or reset: qty = delta applied */
    HS_REC_ADD_STOCK = 4, /* restock/withdraw: qty = delta applied */
    HS_REC_NOOP = 5,      /* an abandoned LSN: keeps the LSN sequence dense */
    HS_REC_RESERVE = 6,   /* qty units of sku held for order_id until timestamp + ttl_ms */
    HS_REC_CONFIRM = 7,   /* order_id's hold became a sale (no counter change) */
    HS_REC_CANCEL = 8,    /* order_id's hold given back by cancel or compensation */
    HS_REC_EXPIRE = 9,    /* order_id's hold given back by the daemon at its deadline */
    HS_REC_SALE = 10,     /* sku's sale session set (hs_sale_configure): qty = starts_at
                             (unix ms, 0: none), xid = ends_at (unix ms, 0: none), ttl_ms =
                             the per-buyer limit (0: none), flag HS_REC_FLAG_PAUSED */
    HS_REC_BUYER = 11     /* a buyer's units under sku's per-buyer limit change by qty:
                             order_id = the buyer; qty > 0 for a take (the record before
                             its DEDUCT or RESERVE, in one group), < 0 for a give-back
                             (before its REFUND, CANCEL or EXPIRE, in one group; xid =
                             the LSN of the take's BUYER record); qty = 0 with no buyer:
                             the daemon forgets every buyer of sku (the sale ended) */
} hs_record_type;

/* The longest time-to-live of a hold (the queue record keeps it in 32 bits
 * of milliseconds): 30 days. */
#define HS_TTL_MAX_MS UINT32_C(2592000000)

/* Record flags (a bit set in the record's flags byte; a format value). */
typedef enum hs_record_flag {
    /* A REFUND (or CANCEL) that returns the units of a DEDUCT, CONFIRM or
     * RESERVE whose transaction did not commit (hs_compensate(): a crash, a ROLLBACK PREPARED, an abort whose
     * own undo failed), not a refund anybody asked for. */
    HS_REC_FLAG_COMPENSATION = 0x01,
    /* The record at the next LSN belongs to the same group (a basket's
     * lines, hs_deduct_basket()): a group is all-or-nothing in the queue.
     * Its members have consecutive LSNs and lie in one queue file; the
     * last member has the flag clear.  A reader takes a group only whole:
     * a group cut by the end of the written bytes is "not written yet"
     * (and cut with the torn tail at the daemon's start). */
    HS_REC_FLAG_GROUP_MORE = 0x02, /* (at most HS_GROUP_MAX records in a group) */
    /* A SALE record: the sale is paused (hs_sale_pause). */
    HS_REC_FLAG_PAUSED = 0x04
} hs_record_flag;

/* State of a SKU slot in the segment's SKU table. */
typedef enum hs_sku_slot_state {
    HS_SKU_EMPTY = 0,
    HS_SKU_INSERTING = 1, /* being inserted (owner pid) */
    HS_SKU_READY = 2,
    HS_SKU_DEAD = 3 /* insert abandoned by a dead process; never matches */
} hs_sku_slot_state;

/* State of an order slot in the segment's order index (HS_INDEX_*).  Not
 * what hs_order_status() answers: see hs_order_status_code. */
typedef enum hs_order_slot_state {
    HS_INDEX_EMPTY = 0,
    HS_INDEX_INSERTING = 1,
    HS_INDEX_PENDING = 2,   /* a deduct is in flight (owner pid) */
    HS_INDEX_DEDUCTED = 3,  /* deducted; counter and record done */
    HS_INDEX_FAILED = 4,    /* last deduct failed (sold out, ...); retryable */
    HS_INDEX_REFUNDING = 5, /* a refund is in flight or claimed (owner pid) */
    HS_INDEX_REFUNDED = 6,
    HS_INDEX_DEAD = 7, /* insert abandoned by a dead process; never matches */
    HS_INDEX_EVICTING = 8, /* being evicted by the daemon; never matches */
    HS_INDEX_RESERVED = 9,   /* held until deadline_ms; counter and RESERVE done */
    HS_INDEX_CONFIRMING = 10, /* a confirm is in flight or claimed (owner pid) */
    HS_INDEX_CANCELLING = 11, /* a cancel is in flight or claimed (owner pid) */
    HS_INDEX_EXPIRING = 12,   /* the daemon (or a late confirm) is expiring it (owner pid) */
    HS_INDEX_CANCELLED = 13,  /* hold given back by cancel or compensation */
    HS_INDEX_EXPIRED = 14     /* hold given back at its deadline */
} hs_order_slot_state;

/* The answer of hs_order_status() (HS_ORDER_STATUS_*), folded from the
 * index state: REFUNDING counts as DEDUCTED until its refund commits. */
typedef enum hs_order_status_code {
    HS_ORDER_STATUS_UNKNOWN = 0,
    HS_ORDER_STATUS_DEDUCTED = 1, /* includes a refund claimed but not committed */
    HS_ORDER_STATUS_REFUNDED = 2,
    HS_ORDER_STATUS_PENDING = 3, /* a deduction is in flight right now */
    HS_ORDER_STATUS_RESERVED = 4, /* held (includes a confirm or cancel claimed, not committed) */
    HS_ORDER_STATUS_EXPIRED = 5,
    HS_ORDER_STATUS_CANCELLED = 6
} hs_order_status_code;

typedef enum hs_result {
    HS_OK = 0,           /* done */
    HS_DUPLICATE,        /* deduct: this order id was deducted already (a retry) */
    HS_SOLD_OUT,         /* deduct: not enough available */
    HS_UNKNOWN_SKU,      /* no such SKU in the segment */
    HS_NOT_FOUND,        /* refund/status: order id not in the order index */
    HS_ALREADY_REFUNDED, /* refund: refunded before; deduct: order id was refunded */
    HS_ORDER_MISMATCH,   /* deduct retry with another SKU or qty than the original */
    HS_QUEUE_FULL,       /* ring full: the spiller is behind; retry */
    HS_TABLE_FULL,       /* SKU table or order index full */
    HS_BAD_ARGUMENT,     /* empty/oversized string, qty out of range */
    HS_DAEMON_DOWN,      /* no daemon serves the segment (or it died mid-call) */
    HS_VERSION_MISMATCH, /* segment of another layout version or magic */
    HS_IO_ERROR,         /* a system call failed; see hs_last_error() */
    HS_EVICTED_CHANGED,  /* hs_deduct_checked: the id may be evicted; check up to hs_evicted_lsn() */
    HS_HOLD_EXPIRED,     /* the order's hold expired: its units went back */
    HS_HOLD_CANCELLED,   /* the order's hold was cancelled: its units went back */
    HS_NOT_HELD,         /* confirm/cancel: the order is a plain deduction, not a hold */
    HS_HELD,             /* refund: the order is a live hold (confirm or cancel it) */
    HS_SALE_NOT_OPEN,    /* deduct/reserve: the SKU's sale has not started (hs_sale) */
    HS_SALE_CLOSED,      /* deduct/reserve: the SKU's sale has ended */
    HS_SALE_PAUSED,      /* deduct/reserve: the SKU's sale is paused */
    HS_BUYER_LIMIT,      /* deduct/reserve: the buyer would pass the SKU's per-buyer limit
                            (or no buyer was named for a SKU that has one) */
    HS_RESULT_COUNT_
} hs_result;

/* Stable lower-case name of a result ("ok", "sold_out", ...). */
const char *hs_result_name(hs_result r);

/* Text of the last error of the calling thread (errno text, file, ...);
 * valid until that thread's next call. */
const char *hs_last_error(void);

typedef struct hs_client hs_client;

/*
 * Attach to the daemon of data directory `dir`.  On HS_OK *out owns a handle
 * to free with hs_detach().  Fails with HS_DAEMON_DOWN (no segment, not
 * READY, stale heartbeat), HS_VERSION_MISMATCH (magic or layout version;
 * hs_last_error() says which), HS_IO_ERROR.
 */
hs_result hs_attach(const char *dir, hs_client **out);
void hs_detach(hs_client *c);

/*
 * Deduct qty (1..HS_QTY_MAX) units of sku for order_id.
 *   HS_OK        deducted now; *lsn = its record's LSN (wait on it for durability)
 *   HS_DUPLICATE this order id was deducted before, same sku and qty; *lsn = 0
 *   HS_SOLD_OUT  available < qty; nothing changed (a later retry may succeed).
 *                An order id the index does not know yet is not added to it
 *                when the SKU is already sold out at the call.
 *   HS_ALREADY_REFUNDED, HS_ORDER_MISMATCH, HS_UNKNOWN_SKU, HS_BAD_ARGUMENT,
 *   HS_QUEUE_FULL, HS_TABLE_FULL, HS_DAEMON_DOWN: nothing changed.
 * xid: the caller's transaction id carried in the record, 0 for none.
 */
hs_result hs_deduct(hs_client *c, const char *sku, size_t sku_len, int32_t qty,
                    const char *order_id, size_t order_len, uint64_t xid, hs_lsn *lsn);

/*
 * hs_deduct for a caller that keeps evicted orders elsewhere (the SQL
 * layer's ledger).  The daemon evicts drained orders from the index online
 * and remembers their ids in a filter; when the index does not know
 * order_id but the filter says it may have been evicted (a retry of an old
 * order, or a false positive), and the caller has not checked its ledger up
 * to the segment's evicted LSN (evicted_checked, a value of
 * hs_evicted_lsn() read BEFORE the ledger was read), nothing is done and
 * HS_EVICTED_CHANGED asks the caller to look in its ledger and call again
 * with evicted_checked = the hs_evicted_lsn() it read first.  hs_deduct()
 * checks nothing (it would deduct an evicted order id anew).
 */
hs_result hs_deduct_checked(hs_client *c, const char *sku, size_t sku_len, int32_t qty,
                            const char *order_id, size_t order_len, uint64_t xid,
                            hs_lsn evicted_checked, hs_lsn *lsn);

typedef enum hs_hold_action {
    HS_HOLD_CONFIRM = 1, /* the hold becomes a sale */
    HS_HOLD_CANCEL = 2   /* the hold's units go back now */
} hs_hold_action;

/*
 * Baskets: every line or none.
 *
 * hs_deduct_basket takes qtys[i] units of skus[i] for every line i < n
 * (1 <= n <= HS_BASKET_MAX, no SKU twice) for basket order_id, or nothing:
 * against every other buyer (the basket's SKUs are locked together while
 * it checks and takes, so no other buyer ever sees one line taken and
 * another refused), and against a crash (the lines reach the queue as one
 * group, HS_REC_FLAG_GROUP_MORE).  Line i is an order of its own in the
 * index, named by hs_basket_line_id(); order_id itself is not.
 * Results as for hs_deduct_checked (evicted_checked: UINT64_MAX checks
 * nothing), about the whole basket: HS_OK (all taken now; *lsn the last
 * line's LSN), HS_DUPLICATE (taken before with the same lines),
 * HS_ORDER_MISMATCH (taken before with other lines), HS_ALREADY_REFUNDED,
 * HS_SOLD_OUT (some line short: nothing taken), HS_UNKNOWN_SKU,
 * HS_BAD_ARGUMENT (n, a qty, a SKU given twice, an id longer than
 * HS_BASKET_ID_MAX or holding HS_BASKET_SEP), HS_EVICTED_CHANGED (line 0
 * may have been evicted: look up hs_basket_line_id(order_id, 0, n) in the
 * ledger), HS_QUEUE_FULL, HS_TABLE_FULL, HS_DAEMON_DOWN: nothing taken.
 *
 * hs_basket_line_id writes the id of line i of an n-line basket into out
 * (HS_ORDER_ID_MAX + 1 bytes, NUL-terminated): order_id, HS_BASKET_SEP,
 * then i and n as two decimal digits each.  Returns its length.
 *
 * hs_basket_find: the line count of basket order_id as the index knows it
 * (the n whose line 0 is there): HS_OK and *n, or HS_NOT_FOUND.
 */
/*
 * hs_reserve_basket: hs_deduct_basket's lines held for ttl_ms (1 ..
 * HS_TTL_MAX_MS) instead, every line with one deadline (*expires_at_ms,
 * unix ms; also on a retry).  Each line is a hold of its own to the
 * daemon's expiry, which gives a line back at the deadline.
 *
 * hs_basket_settle: confirm or cancel every line of basket order_id, or
 * none: the lines are claimed in line order (RESERVED -> CONFIRMING or
 * CANCELLING; a confirm only before the deadline), then their CONFIRMs or
 * CANCELs go to the queue as one group.  A confirm that finds a line
 * expired (or too late) releases what it claimed: the basket then expires
 * whole (every line has the same deadline).  Results as hs_hold_settle():
 * HS_OK, HS_DUPLICATE (settled so before), HS_HOLD_EXPIRED,
 * HS_HOLD_CANCELLED, HS_NOT_HELD, HS_ALREADY_REFUNDED, HS_NOT_FOUND (no
 * such basket in the index).  hs_basket_claim / hs_basket_commit /
 * hs_basket_release: the two phases, as hs_hold_claim / commit / release.
 */
hs_result hs_reserve_basket(hs_client *c, const char *order_id, size_t order_len, int n,
                            const char *const skus[], const size_t sku_lens[],
                            const int32_t qtys[], uint64_t xid, uint32_t ttl_ms,
                            hs_lsn evicted_checked, hs_lsn *lsn, uint64_t *expires_at_ms);
hs_result hs_basket_settle(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len,
                           uint64_t xid, hs_lsn *lsn);
hs_result hs_basket_claim(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len);
hs_result hs_basket_commit(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len,
                           uint64_t xid, hs_lsn *lsn);
hs_result hs_basket_release(hs_client *c, hs_hold_action action, const char *order_id, size_t order_len);

#define HS_BASKET_MAX 64
/* The most records of one group: a basket's lines, each after its
 * buyer's BUYER record (per-buyer limits). */
#define HS_GROUP_MAX (2 * HS_BASKET_MAX)
#define HS_BASKET_SEP '\x1f'
#define HS_BASKET_ID_MAX (HS_ORDER_ID_MAX - 5)
hs_result hs_deduct_basket(hs_client *c, const char *order_id, size_t order_len, int n,
                           const char *const skus[], const size_t sku_lens[],
                           const int32_t qtys[], uint64_t xid, hs_lsn evicted_checked,
                           hs_lsn *lsn);
/* The basket calls for a buyer (hotstock.h, "Per-buyer limits"): every
 * line whose SKU has a limit counts for `buyer`; a line over its limit
 * refuses the whole basket (HS_BUYER_LIMIT, nothing taken). */
hs_result hs_deduct_basket_for(hs_client *c, const char *order_id, size_t order_len, int n,
                               const char *const skus[], const size_t sku_lens[],
                               const int32_t qtys[], const char *buyer, size_t buyer_len,
                               uint64_t xid, hs_lsn evicted_checked, hs_lsn *lsn);
hs_result hs_reserve_basket_for(hs_client *c, const char *order_id, size_t order_len, int n,
                                const char *const skus[], const size_t sku_lens[],
                                const int32_t qtys[], const char *buyer, size_t buyer_len,
                                uint64_t xid, uint32_t ttl_ms, hs_lsn evicted_checked,
                                hs_lsn *lsn, uint64_t *expires_at_ms);
size_t hs_basket_line_id(const char *order_id, size_t order_len, int i, int n, char *out);
hs_result hs_basket_find(hs_client *c, const char *order_id, size_t order_len, int *n);

/*
 * Sale sessions.  A SKU's sale has a window [starts_at, ends_at) (unix ms;
 * 0: open on that side), a pause switch, and a per-buyer limit (0: none;
 * see "Per-buyer limits" below).  While the clock (the host's
 * realtime clock, read by the calling process at the call: one clock for
 * every backend) is before starts_at, at or after ends_at, or the sale is
 * paused, hs_deduct, hs_reserve and the basket calls answer
 * HS_SALE_NOT_OPEN, HS_SALE_CLOSED or HS_SALE_PAUSED (in that order of
 * precedence: paused first) and touch no counter and no order slot.
 * Refunds, confirms, cancels, expiry, stock changes and retries of orders
 * already taken are not affected.  A SKU never configured is always open.
 *
 * hs_sale_configure sets the window and the limit (keeps the pause
 * switch); hs_sale_pause sets the switch.  Each appends a SALE record
 * (the whole configuration: durable like every change, rebuilt at
 * start); concurrent changes of one SKU are serialised.  The SKU must
 * exist (HS_UNKNOWN_SKU).  A pause takes effect before its record is
 * appended (a deduction starting after the call returns sees it); a
 * resume after.  hs_sale_get reads the configuration (all zero for a SKU
 * never configured).  *lsn may be NULL.  The clock is the host's
 * CLOCK_REALTIME: stepped backwards, it reopens a window that had closed.
 */
/* The latest time a sale's window may name (ms; its microseconds fit an
 * int64). */
#define HS_SALE_TIME_MAX_MS (INT64_MAX / 1000)

typedef struct hs_sale {
    uint64_t starts_at_ms; /* 0: open from the start */
    uint64_t ends_at_ms;   /* 0: never closes */
    int32_t per_buyer_limit; /* 0: none */
    bool paused;
} hs_sale;

hs_result hs_sale_configure(hs_client *c, const char *sku, size_t sku_len, uint64_t starts_at_ms,
                            uint64_t ends_at_ms, int32_t per_buyer_limit, hs_lsn *lsn);
hs_result hs_sale_pause(hs_client *c, const char *sku, size_t sku_len, bool paused, hs_lsn *lsn);
hs_result hs_sale_get(hs_client *c, const char *sku, size_t sku_len, hs_sale *out);

/*
 * Per-buyer limits.  While a SKU's sale has a per-buyer limit L, every
 * take of it names a buyer (1..HS_BUYER_MAX bytes), and a buyer's units
 * of that SKU -- taken by deductions and holds, less what went back by a
 * refund, a cancel, an expiry or a compensation -- never pass L: the take
 * that would pass it answers HS_BUYER_LIMIT and changes nothing, and so
 * does a take without a buyer.  The check and the count are one CAS on
 * the (SKU, buyer) entry, done before the counter, so concurrent takes of
 * one buyer never pass L together; the count is durable (a BUYER record in
 * the same group as the take or the give-back, folded into the
 * checkpoint), so a crash or a restart never forgets a unit.  A take that
 * dies half-way may keep its units counted (undersell) until the next
 * start.  Takes are counted only while the SKU has a limit.  Once the
 * sale has ended for `buyer_retention` seconds (a daemon setting), the
 * daemon forgets its buyers (a BUYER record with no buyer); a sale opened
 * again after that counts from zero.
 *
 * hs_deduct_for / hs_reserve_for: hs_deduct_checked / hs_reserve for a
 * buyer (buyer NULL or buyer_len 0: none).  hs_buyer_units: the buyer's
 * counted units of sku now (0 when none are counted).
 */
hs_result hs_deduct_for(hs_client *c, const char *sku, size_t sku_len, int32_t qty,
                        const char *order_id, size_t order_len, const char *buyer,
                        size_t buyer_len, uint64_t xid, hs_lsn evicted_checked, hs_lsn *lsn);
hs_result hs_reserve_for(hs_client *c, const char *sku, size_t sku_len, int32_t qty,
                         const char *order_id, size_t order_len, const char *buyer,
                         size_t buyer_len, uint64_t xid, uint32_t ttl_ms, hs_lsn evicted_checked,
                         hs_lsn *lsn, uint64_t *expires_at_ms);
hs_result hs_buyer_units(hs_client *c, const char *sku, size_t sku_len, const char *buyer,
                         size_t buyer_len, int32_t *units);

/*
 * Refund order_id: the units of its deduction go back, at most once.
 *   HS_OK               refunded now; *lsn, *qty and the SKU (into sku_out,
 *                       HS_SKU_MAX + 1 bytes, NUL-terminated; may be NULL)
 *   HS_ALREADY_REFUNDED refunded before (or a hold that was cancelled or expired)
 *   HS_HELD             a live hold: nothing to refund (confirm or cancel it)
 *   HS_NOT_FOUND        not in the order index: never deducted here, or
 *                       evicted after it was drained (see hs_evicted_lsn())
 *   HS_QUEUE_FULL, HS_DAEMON_DOWN: nothing changed.
 * The REFUND record is appended before the counter is raised.
 */
hs_result hs_refund(hs_client *c, const char *order_id, size_t order_len, hs_lsn *lsn, int32_t *qty,
                    char *sku_out);

/*
 * Two-phase refund for a refund inside a transaction: claim now (the order
 * goes DEDUCTED -> REFUNDING; other refunds wait, deduct retries see a
 * duplicate), then hs_refund_commit() at commit (record, counter) or
 * hs_refund_release() at abort (back to DEDUCTED).  Claim results as for
 * hs_refund().  A claim whose owner process dies is released by whoever
 * next waits on it.
 */
hs_result hs_refund_claim(hs_client *c, const char *order_id, size_t order_len);
hs_result hs_refund_commit(hs_client *c, const char *order_id, size_t order_len, hs_lsn *lsn,
                           int32_t *qty, char *sku_out);
hs_result hs_refund_release(hs_client *c, const char *order_id, size_t order_len);

/*
 * Refund an order that is no longer in the order index (evicted after its
 * deduction was drained) once the caller has marked it refunded in its own
 * durable ledger: appends REFUND(sku, qty), raises the counter, and records
 * the order as REFUNDED in the index.  HS_ALREADY_REFUNDED if the index
 * already knows it as refunded; HS_DUPLICATE if the index knows it as
 * deducted (use hs_refund() then).  evicted_checked: an LSN below every
 * REFUND record another application of the same mark could have appended
 * -- the durable LSN read before the caller marked its ledger, or, for a
 * caller that did not mark it, hs_evicted_lsn() read before it saw in its
 * ledger that the refund was not applied yet.  If the index no longer knows
 * the order and the daemon evicted past it (that other application may
 * have been indexed and evicted again meanwhile), nothing is done and
 * HS_EVICTED_CHANGED asks the caller to look again.
 */
hs_result hs_refund_evicted(hs_client *c, const char *sku, size_t sku_len, int32_t qty,
                            const char *order_id, size_t order_len, hs_lsn evicted_checked,
                            hs_lsn *lsn);

/*-------------------------------------------------------------------------
 * Holds (reservations with a time-to-live).  shmd/lib/hold.c.
 *
 * A hold takes its units out of `available` at once, like a deduction, and
 * gives them back by itself at its deadline (the daemon expires it, within
 * a second) unless it was confirmed (a sale) or cancelled first.  Every
 * change travels through the queue: RESERVE, CONFIRM, CANCEL, EXPIRE.
 * Confirm, cancel and expiry race only by CAS on the order's state, so
 * exactly one of them settles a hold; a confirm at or after the deadline
 * (the daemon's clock, CLOCK_REALTIME) never succeeds: it expires the hold
 * itself and answers HS_HOLD_EXPIRED.
 *-------------------------------------------------------------------------
 */

/*
 * Hold qty units of sku for order_id for ttl_ms (1..HS_TTL_MAX_MS).  As
 * hs_deduct_checked(), and:
 *   HS_DUPLICATE      the order holds (or held and confirmed) the same sku
 *                     and qty: a retry; *lsn = 0
 *   HS_HOLD_EXPIRED, HS_HOLD_CANCELLED  the order's hold ended before
 *   HS_ORDER_MISMATCH another sku or qty, or the order is a plain deduction
 * *expires_at_ms (may be NULL) = the hold's deadline, unix ms (also on a retry).
 */
hs_result hs_reserve(hs_client *c, const char *sku, size_t sku_len, int32_t qty,
                     const char *order_id, size_t order_len, uint64_t xid, uint32_t ttl_ms,
                     hs_lsn evicted_checked, hs_lsn *lsn, uint64_t *expires_at_ms);


/*
 * Settle order_id's hold now: confirm or cancel it.
 *   HS_OK             done now; *lsn its record (CONFIRM or CANCEL)
 *   HS_DUPLICATE      done before by the same action (a retry)
 *   HS_HOLD_EXPIRED   expired (by the daemon, or by this call: its deadline
 *                     had passed); for a cancel also "nothing to cancel"
 *   HS_HOLD_CANCELLED cancelled before
 *   HS_ALREADY_REFUNDED confirmed, then refunded
 *   HS_NOT_HELD       the order is a plain deduction (never a hold), or
 *                     confirmed (for a cancel: refund it instead)
 *   HS_NOT_FOUND      not in the index (unknown, or evicted)
 *   HS_QUEUE_FULL, HS_DAEMON_DOWN: nothing changed.
 * xid: the caller's transaction, carried in a CONFIRM record (0 for none):
 * a CONFIRM whose transaction does not commit is compensated like a
 * deduction (hs_compensate()).
 */
hs_result hs_hold_settle(hs_client *c, hs_hold_action action, const char *order_id,
                         size_t order_len, uint64_t xid, hs_lsn *lsn);

/*
 * Two-phase settling, for a confirm or cancel inside a transaction: claim
 * now (RESERVED -> CONFIRMING or CANCELLING, owned by this process: expiry
 * waits, other settlers wait), then hs_hold_commit() (the record) or
 * hs_hold_release() (back to RESERVED; a hold whose deadline passed
 * meanwhile then expires).  A claim whose owner dies is released by
 * whoever next waits on it (the daemon's expiry included).  Claim results
 * as hs_hold_settle(), with HS_OK for "claimed".  hs_hold_commit() of a
 * claim lost with a restarted daemon claims anew (and may then find the
 * hold expired).
 */
hs_result hs_hold_claim(hs_client *c, hs_hold_action action, const char *order_id,
                        size_t order_len);
hs_result hs_hold_commit(hs_client *c, hs_hold_action action, const char *order_id,
                         size_t order_len, uint64_t xid, hs_lsn *lsn);
hs_result hs_hold_release(hs_client *c, hs_hold_action action, const char *order_id,
                          size_t order_len);

/*
 * A late confirm that takes units anew: order_id's hold expired or was
 * cancelled; deduct qty units of its SKU again if still available (a
 * DEDUCT record; the order becomes a plain deduction).  Results as
 * hs_deduct_checked() for the order's own sku and qty; HS_DUPLICATE when
 * the hold was confirmed (or retaken) before; HS_NOT_HELD for a plain
 * deduction that never was a hold.
 */
hs_result hs_hold_retake(hs_client *c, const char *order_id, size_t order_len, uint64_t xid,
                         hs_lsn evicted_checked, hs_lsn *lsn);

/* Block until the record at lsn is fdatasync'ed (group commit).  HS_OK, or
 * HS_DAEMON_DOWN when the daemon died or the segment was fenced first
 * ("unknown": see the top of this file).  timeout_ms < 0 waits forever
 * (while the daemon lives). */
hs_result hs_wait_durable(hs_client *c, hs_lsn lsn, int timeout_ms);

/* Ask the spiller to flush now without waiting (used by asynchronous callers
 * at a clean point, e.g. end of a batch). */
void hs_kick(hs_client *c);

/* Ask for the record at lsn to be fdatasync'ed at once, as if someone
 * waited for it, without waiting: for a caller that waits later
 * (hs_wait_durable), so the flush overlaps its own work meanwhile. */
void hs_flush_soon(hs_client *c, hs_lsn lsn);

/* Real-time available units of sku. */
hs_result hs_available(hs_client *c, const char *sku, size_t sku_len, int64_t *available);

/* State of order_id in the index; HS_NOT_FOUND when absent.  sku_out and
 * qty may be NULL. */
hs_result hs_order_status(hs_client *c, const char *order_id, size_t order_len,
                          hs_order_status_code *state, char *sku_out, int32_t *qty);

/* What the order index holds for one order (hs_order_lookup). */
typedef struct hs_order_info {
    hs_order_status_code status; /* any but UNKNOWN */
    int32_t qty;
    uint64_t xid;         /* the caller's transaction id its DEDUCT carries (opaque here), 0 for none */
    hs_lsn deducted_lsn;  /* the record that settled its state (DEDUCT, RESERVE, CONFIRM);
                             0 when it was not deducted in this segment */
    uint64_t expires_at_ms; /* a hold's deadline (unix ms), also once settled; 0 for a deduction */
    char sku[HS_SKU_MAX + 1]; /* NUL-terminated */
} hs_order_info;

/* As hs_order_status(), with the xid and LSN of the deduction.  HS_OK and
 * *out, or HS_NOT_FOUND (absent, or only a failed attempt). */
hs_result hs_order_lookup(hs_client *c, const char *order_id, size_t order_len,
                          hs_order_info *out);

/*
 * Compensate: give back the units of order_id's deduction because the
 * transaction xid that made it did not commit (it aborted, or died in a
 * crash; the caller knows).  Acts only while the order is DEDUCTED (by a
 * DEDUCT or a CONFIRM) or RESERVED by exactly that xid: the REFUND record
 * (for a hold: CANCEL; flag HS_REC_FLAG_COMPENSATION) is appended before
 * the counter is raised, at most once per order, like hs_refund().
 *   HS_OK               compensated now; *lsn, *qty and the SKU as hs_refund()
 *   HS_ALREADY_REFUNDED refunded (or the hold cancelled or expired) before
 *                       (by the aborted transaction's own undo, a refund,
 *                       or an earlier compensation)
 *   HS_NOT_FOUND        not in the index (evicted: the ledger's turn)
 *   HS_ORDER_MISMATCH   deducted by another xid: not this deduction
 *   HS_QUEUE_FULL       a live process holds a refund claim on it (it does
 *                       not wait: look again later), or the ring is full
 *   HS_DAEMON_DOWN, HS_IO_ERROR: nothing changed.
 */
hs_result hs_compensate(hs_client *c, const char *order_id, size_t order_len, uint64_t xid,
                        hs_lsn *lsn, int32_t *qty, char *sku_out);

/* Admin: create sku, or reset it to `stock` units available (0..HS_STOCK_MAX).
 * The change travels through the queue as a delta.  *lsn may be NULL. */
hs_result hs_put_sku(hs_client *c, const char *sku, size_t sku_len, int64_t stock, hs_lsn *lsn);

/* Admin: restock (delta > 0) or withdraw (delta < 0, clamped so available
 * never goes below zero).  *available = units available right after. */
hs_result hs_add_stock(hs_client *c, const char *sku, size_t sku_len, int64_t delta,
                       int64_t *available, hs_lsn *lsn);

/* Orders the daemon evicted from the index had every record at or below
 * this LSN (it only grows while a daemon runs; 0: none evicted): an order
 * the index does not know may be one of them, in the durable ledger. */
hs_lsn hs_evicted_lsn(hs_client *c);

/* Drain: publish the last LSN applied durably by the consumer. */
hs_result hs_publish_applied(hs_client *c, hs_lsn applied);

typedef struct hs_status {
    uint64_t generation;
    int32_t daemon_pid;
    uint32_t state; /* hs_segment_state (HS_SEGMENT_READY while served) */
    hs_lsn next_lsn, spilled_lsn, durable_lsn, applied_lsn, checkpoint_lsn, evicted_lsn;
    uint32_t sku_count, sku_capacity;
    uint32_t order_count, order_capacity;
    uint32_t ring_used, ring_capacity;
    uint64_t heartbeat_age_ms;
    uint64_t abandoned_records;
    uint64_t last_flush_unix_ms;
    uint64_t evictions;    /* order entries evicted online since the segment was built */
    uint64_t filter_ids;   /* ids in the evicted-order filter */
    uint64_t filter_bytes; /* its size */
    uint32_t buyer_count, buyer_capacity; /* (SKU, buyer) entries counted, and room */
    uint64_t buyers_forgotten; /* entries forgotten after their sale ended */
} hs_status;

hs_result hs_get_status(hs_client *c, hs_status *out);

/*-------------------------------------------------------------------------
 * Statistics and hot SKUs (shmd/lib/stats.c).  In memory only: a daemon
 * restart builds a new segment and starts them from zero.
 *-------------------------------------------------------------------------
 */

/* One SKU's statistics since its last reset (or the segment's creation). */
typedef struct hs_sku_stats {
    char sku[HS_SKU_MAX + 1];     /* NUL-terminated */
    uint64_t deducts;             /* DEDUCT records: deductions, basket lines, retakes */
    uint64_t sold_out_attempts;   /* takes answered HS_SOLD_OUT */
    uint64_t refunds;             /* REFUND records: refunds and compensations */
    uint64_t reserves;            /* RESERVE records: holds, lines of basket holds */
    uint64_t expiries;            /* EXPIRE records: holds the daemon expired */
    uint64_t limit_refusals;      /* takes refused by the per-buyer limit */
    uint64_t last_deduct_unix_us; /* 0: none since the reset */
    uint64_t reset_unix_us;       /* the last reset, or the segment's creation */
} hs_sku_stats;

/*
 * The statistics of the next SKU at or after slot *cursor (start at 0):
 * HS_OK, *out filled and *cursor moved past it; HS_NOT_FOUND past the
 * last SKU.  A snapshot of counters read one by one, not a consistent cut.
 */
hs_result hs_sku_stats_next(hs_client *c, uint32_t *cursor, hs_sku_stats *out);

/* Admin: zero the statistics of sku (sku NULL: of every SKU) and stamp the
 * reset time.  *reset (may be NULL) = SKUs reset.  HS_UNKNOWN_SKU. */
hs_result hs_sku_stats_reset(hs_client *c, const char *sku, size_t sku_len, uint64_t *reset);

/* The most hot SKUs a daemon keeps (its setting hot_k: 0 .. this). */
#define HS_HOT_K_MAX 1024

/* One entry of the daemon's top-k of SKUs by recent take attempts. */
typedef struct hs_hot_sku {
    char sku[HS_SKU_MAX + 1]; /* NUL-terminated */
    uint32_t rank;            /* 1 = hottest */
    double attempts_per_s;    /* take attempts per second over the daemon's last tick */
    double sold_per_s;        /* deductions per second, likewise */
    uint64_t sketch_count;    /* the sketch's estimate it was ranked by (sampled, aged) */
} hs_hot_sku;

/*
 * The hot SKUs as the daemon last published them (about every second),
 * hottest first: up to max into out, *n of them; *published_unix_ms (may
 * be NULL) when (0: not yet).  The daemon setting hot_k bounds the count
 * (0: tracking off, *n = 0).
 */
hs_result hs_hot_skus(hs_client *c, hs_hot_sku *out, uint32_t max, uint32_t *n,
                      uint64_t *published_unix_ms);

/*-------------------------------------------------------------------------
 * Queue files (read side).  Format: see shmd/format/queue_file.c.
 *-------------------------------------------------------------------------
 */

/* One decoded queue record. */
typedef struct hs_record {
    hs_lsn lsn;
    uint8_t type; /* hs_record_type */
    uint8_t flags;
    uint8_t sku_len;
    uint8_t order_len;
    int64_t qty; /* qty (deduct, refund) or signed delta (put_sku, add_stock) */
    uint64_t xid;
    uint64_t timestamp_us;              /* unix microseconds */
    uint32_t ttl_ms;                    /* RESERVE: deadline = timestamp_us / 1000 + ttl_ms */
    char sku[HS_SKU_MAX + 1];           /* NUL-terminated */
    char order_id[HS_ORDER_ID_MAX + 1]; /* NUL-terminated; empty for stock records */
} hs_record;

typedef struct hs_queue_reader hs_queue_reader;

/*
 * Open the queue of data directory `dir` for reading records with LSN >=
 * from_lsn.  HS_NOT_FOUND when no file holds from_lsn yet (nothing written
 * past it); HS_IO_ERROR with hs_last_error() naming the file when a file
 * holding it is unreadable, or from_lsn was recycled already (a gap).
 */
hs_result hs_queue_open(const char *dir, hs_lsn from_lsn, hs_queue_reader **out);

/*
 * Next record, if its LSN <= upto (HS_LSN_MAX for no bound).
 *   1   *rec filled
 *   0   no further complete, valid record for now (end of what is written,
 *       or a partial tail being written); call again later
 *  -1   corruption before the end of the queue: hs_last_error() gives file,
 *       offset and LSN.  The reader does not move past it.
 * The reader follows into the next file by itself.
 */
int hs_queue_next(hs_queue_reader *r, hs_lsn upto, hs_record *rec);

/*
 * For a reader running while the daemon is down: fdatasync every queue file
 * from the reader's current one on, and set *durable_upto to the last LSN
 * that lies whole in the bytes synced (what existed when the call started).
 * Records past it may be in flight from a daemon that just started and must
 * not be applied yet: pass durable_upto as `upto` to hs_queue_next().
 */
hs_result hs_queue_sync(hs_queue_reader *r, hs_lsn *durable_upto);

void hs_queue_close(hs_queue_reader *r);

#define HS_LSN_MAX UINT64_MAX

#ifdef __cplusplus
}
#endif

#endif /* HOTSTOCK_H */
