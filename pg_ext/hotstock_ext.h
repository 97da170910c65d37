/*-------------------------------------------------------------------------
 *
 * hotstock_ext.h
 *      Internal interface between the files of the hotstock extension,
 *      one job each:
 *
 *        module.c    _PG_init, shared-memory hooks          (top: calls the rest)
 *        sale.c      the SQL functions of sales: configure_sale, pause,
 *                    resume, sale_info (behind hotstock.sales)
 *        basket.c    the SQL functions that take baskets: deduct_basket,
 *                    reserve_basket
 *        hold.c      the SQL functions of holds: reserve, confirm, cancel
 *                    (of a basket of holds too)
 *        api.c       the other SQL-callable functions, the guard trigger
 *        xact.c      transaction callbacks: pre-commit, commit, abort,
 *                    subtransactions
 *        drain.c     the "hotstock drain" background worker
 *        settle.c    the drain's follow-up: settling deductions, late refunds
 *        apply.c     the drain's batch into the tables
 *        ledger.c    the ledger's statements (refund marks, lookups, settling)
 *        session.c   this backend's client handle, durability waits
 *        fate.c      what became of a deduction's transaction
 *        starts.c    the server's starts and the xid counter each began
 *                    with (bottom)
 *        guc.c       GUCs, error codes, process-wide shared state (bottom)
 *
 * Calls point down that list (sale.c -> api.c, basket.c -> hold.c -> api.c ->
 * xact.c -> session.c -> guc.c, drain.c -> settle.c -> ledger.c -> fate.c ->
 * starts.c, drain.c -> apply.c -> ledger.c, module.c -> starts.c); tests/layout/check.sh fails on a cycle.
 *
 * Shared between them, per process:
 *  - the GUC variables (defined in guc.c);
 *  - hotstock_writer, the flag the write guard trigger checks.  Only C code
 *    of this extension sets it, around its own SPI statements, and resets it
 *    in PG_FINALLY; SQL cannot reach it.
 *
 * Shared between processes (PostgreSQL shared memory, allocated through
 * shmem_request_hook / shmem_startup_hook in module.c):
 *  - HotstockDrainShared: what the drain last did, for hotstock.status.
 *    Written by the drain only, read by any backend; every field is read and
 *    written under its spinlock (a few loads and stores, never a call).
 *
 * The client API of the daemon's segment is shmd/include/hotstock.h (libhotstock);
 * nothing in pg_ext/ knows the segment layout.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_EXT_HOTSTOCK_H
#define PG_EXT_HOTSTOCK_H

#include "access/xact.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/spin.h"

#include "hotstock.h"

/*
 * SQLSTATEs of our own, class "HS" (documented in pg_ext/README.md).
 * Standard codes are used where one fits: 22023, 22001, 42704, 42501,
 * 55000, 58030, 0A000.
 */
#define ERRCODE_HOTSTOCK_DAEMON_DOWN MAKE_SQLSTATE('H', 'S', '0', '0', '1')
#define ERRCODE_HOTSTOCK_QUEUE_FULL MAKE_SQLSTATE('H', 'S', '0', '0', '2')
#define ERRCODE_HOTSTOCK_TABLE_FULL MAKE_SQLSTATE('H', 'S', '0', '0', '3')
#define ERRCODE_HOTSTOCK_ORDER_MISMATCH MAKE_SQLSTATE('H', 'S', '0', '0', '4')
#define ERRCODE_HOTSTOCK_ORDER_REFUNDED MAKE_SQLSTATE('H', 'S', '0', '0', '5')
#define ERRCODE_HOTSTOCK_VERSION_MISMATCH MAKE_SQLSTATE('H', 'S', '0', '0', '6')
#define ERRCODE_HOTSTOCK_QUEUE_CORRUPT MAKE_SQLSTATE('H', 'S', '0', '0', '7')
#define ERRCODE_HOTSTOCK_HOLD_EXPIRED MAKE_SQLSTATE('H', 'S', '0', '0', '8')
#define ERRCODE_HOTSTOCK_HOLD_CANCELLED MAKE_SQLSTATE('H', 'S', '0', '0', '9')
#define ERRCODE_HOTSTOCK_NOT_HELD MAKE_SQLSTATE('H', 'S', '0', '1', '0')
#define ERRCODE_HOTSTOCK_HELD MAKE_SQLSTATE('H', 'S', '0', '1', '1')
#define ERRCODE_HOTSTOCK_BASKET_TOO_LARGE MAKE_SQLSTATE('H', 'S', '0', '1', '2')
#define ERRCODE_HOTSTOCK_SALE_NOT_OPEN MAKE_SQLSTATE('H', 'S', '0', '1', '3')
#define ERRCODE_HOTSTOCK_SALE_CLOSED MAKE_SQLSTATE('H', 'S', '0', '1', '4')
#define ERRCODE_HOTSTOCK_SALE_PAUSED MAKE_SQLSTATE('H', 'S', '0', '1', '5')
#define ERRCODE_HOTSTOCK_BUYER_LIMIT MAKE_SQLSTATE('H', 'S', '0', '1', '6')

/* The hint of HS008/HS009 for an order the daemon no longer knows. */
#define HOTSTOCK_HINT_EVICTED_HOLD                                                                 \
    "The order was drained and evicted from hotstockd's order index, so its units cannot be "      \
    "taken anew with retake: reserve under a new order id."

/* GUC variables (guc.c) */
extern char *hotstock_data_directory;
extern bool hotstock_synchronous;
extern int hotstock_drain_batch_size;
extern int hotstock_drain_naptime;
extern char *hotstock_drain_database;

/*
 * Who may write the extension's tables right now in this process.  The
 * guard trigger (hotstock_guard) refuses every write while this is
 * HS_WRITER_NONE; HS_WRITER_REFUND allows only UPDATE of hotstock.ledger
 * (the database-first refund of an evicted order) and INSERT into
 * hotstock.refund_requests (a refund's request, in the caller's
 * transaction).
 */
typedef enum HotstockWriter {
    HS_WRITER_NONE = 0,
    HS_WRITER_DRAIN,
    HS_WRITER_REFUND
} HotstockWriter;

extern HotstockWriter hotstock_writer;

/*
 * The drain's report, in PostgreSQL shared memory.  Written by the drain
 * (one process), read by hotstock.status_info(); all under mutex.
 */
typedef struct HotstockDrainShared {
    slock_t mutex;
    int pid;                   /* drain's pid, 0 when not running */
    hs_lsn applied_lsn;        /* last LSN committed by the drain */
    TimestampTz caught_up_at;  /* last time nothing durable was left */
    TimestampTz last_batch_at; /* commit time of the last batch */
    uint64 records_applied;    /* since the drain started */
    double last_rate;          /* records/s of the last full batch */
    char last_error[256];      /* last problem logged, "" if none */
} HotstockDrainShared;

extern HotstockDrainShared *hotstock_drain_shared;

/* Most ledger rows one order id can have (one per SKU). */
#define HS_LEDGER_ROWS_MAX 16

/* hotstock.ledger.hold: what became of a reservation (none: a deduction). */
typedef enum LedgerHold {
    LEDGER_NO_HOLD = 0, /* null: a plain deduction */
    LEDGER_RESERVED,
    LEDGER_CONFIRMED, /* a sale, like a deduction (also a hold taken anew) */
    LEDGER_CANCELLED,
    LEDGER_EXPIRED
} LedgerHold;

/* A ledger row as the evicted-order paths need it. */
typedef struct LedgerRow {
    char sku[HS_SKU_MAX + 1];
    int32 qty;
    bool refunded;
    uint64 xid; /* its deduction's transaction while not known committed, else 0 */
    LedgerHold hold;
} LedgerRow;

/* Does the row hold units sold (a deduction or a confirmed hold), which a
 * refund gives back? */
#define LEDGER_ROW_SOLD(row) ((row)->hold == LEDGER_NO_HOLD || (row)->hold == LEDGER_CONFIRMED)

/* What became of a deduction's transaction (fate.c). */
typedef enum HotstockXidFate {
    HS_FATE_NONE,        /* xid 0: an autocommit deduction, final when it returned */
    HS_FATE_MINE,        /* this backend's transaction or one of its subtransactions */
    HS_FATE_IN_PROGRESS, /* running, or prepared */
    HS_FATE_COMMITTED,
    HS_FATE_ABORTED,     /* rolled back, or died in a crash */
    HS_FATE_UNKNOWN      /* too old or not of this cluster: treated as committed */
} HotstockXidFate;

/* What a transaction did to the segment that must be finished at commit
 * or undone at abort (xact.c). */
typedef enum PendingKind {
    PENDING_DEDUCT,         /* abort: undo with hs_refund (also a retake, a confirm done now) */
    PENDING_RESERVE,        /* abort: undo with hs_compensate(xid): the hold is cancelled */
    PENDING_REFUND_CLAIM,   /* commit: hs_refund_commit; abort: release */
    PENDING_REFUND_EVICTED, /* commit: hs_refund_evicted */
    PENDING_HOLD_CLAIM      /* confirm: hs_hold_commit at pre-commit, hs_refund at abort after
                               it; cancel: hs_hold_commit at commit; abort: release */
} PendingKind;

typedef struct PendingAction {
    struct PendingAction *next;
    PendingKind kind;
    SubTransactionId subid; /* subtransaction that did it */
    bool committed;         /* claim: hs_refund_commit (hs_hold_commit) succeeded */
    hs_hold_action action;  /* hold claim: confirm or cancel */
    bool retake;            /* hold claim: confirm(retake => true) */
    uint64 xid;             /* reserve, hold claim: the xid its record carries */
    int lines;              /* hold claim: 0 for an order; a basket's line count (order_id
                               the basket's id: hs_basket_commit / hs_basket_release) */
    int32 qty;              /* evicted refund */
    uint64 evicted_checked; /* evicted refund: hotstock_mark_lsn() before the mark */
    uint8 sku_len;          /* evicted refund */
    uint8 order_len;
    char sku[HS_SKU_MAX + 1];
    char order_id[HS_ORDER_ID_MAX + 1];
} PendingAction;

/* The extension version (hotstock.control) this build's SQL statements
 * are written for. */
#define HOTSTOCK_EXT_VERSION "1.5"

/* The drain sleeps this long after a problem, or while the extension is
 * missing; settles deductions at most every HOTSTOCK_SETTLE_MS; applies
 * committed refunds missing from the queue every HOTSTOCK_REFUND_SWEEP_MS. */
#define HOTSTOCK_DRAIN_RETRY_MS 1000
#define HOTSTOCK_SETTLE_MS 50
#define HOTSTOCK_REFUND_SWEEP_MS 1000

/* guc.c */
extern void hotstock_define_gucs(void);
extern void hotstock_drain_problem(int sqlstate, const char *detail, const char *fmt, ...)
    pg_attribute_printf(3, 4);
extern void hotstock_raise(hs_result r, const char *what) pg_attribute_noreturn();
extern void hotstock_raise_hint(hs_result r, const char *what, const char *hint)
    pg_attribute_noreturn();
extern void hotstock_raise_held(const char *what, const char *hint) pg_attribute_noreturn();
extern TimestampTz hotstock_unix_us_to_timestamptz(uint64 unix_us);
extern uint64 hotstock_now_ms(void);
extern hs_result hotstock_sale_state(const hs_sale *sale, uint64 now_ms);
extern void hotstock_raise_sale(hs_result r, const char *what, const hs_sale *sale)
    pg_attribute_noreturn();

/* session.c */
extern hs_client *hotstock_backend_client; /* NULL until attached */
extern void hotstock_check_database(void);
extern hs_result hotstock_try_attach(void);
extern hs_client *hotstock_client(void);
extern hs_lsn hotstock_mark_lsn(hs_client *c);
extern hs_result hotstock_wait_durable_core(hs_client *c, hs_lsn lsn, bool interruptible);
extern void hotstock_wait_durable(hs_client *c, hs_lsn lsn);
extern void hotstock_wait_durable_now(hs_client *c);
extern hs_lsn hotstock_last_undurable_lsn(hs_client *c);
extern void hotstock_wait_durable_take(hs_client *c, hs_lsn lsn);
extern void hotstock_wait_durable_take_now(hs_client *c);

/* api.c */
extern void hotstock_name_arg(FunctionCallInfo fcinfo, int argno, const char *argname,
                              const char **data, size_t *len);
extern void hotstock_order_id_arg(FunctionCallInfo fcinfo, int argno, const char **data,
                                  size_t *len);
extern int32 hotstock_qty_arg(FunctionCallInfo fcinfo, int argno);
extern void hotstock_raise_take(hs_client *c, hs_result r, const char *sku, size_t sku_len,
                                const char *order_id, size_t order_len) pg_attribute_noreturn();
extern void hotstock_buyer_arg(FunctionCallInfo fcinfo, int argno, const char **data,
                               size_t *len);
extern bool hotstock_refund_pending(const char *order_id, size_t order_len);
extern int hotstock_basket_lines(hs_client *c, const char *order_id, size_t order_len);
extern void hotstock_deduct_retry_settle(hs_client *c, const char *sku, size_t sku_len, int32 qty,
                                         const char *order_id, size_t order_len,
                                         const char *what);

/* hold.c */
extern uint32 hotstock_ttl_arg(FunctionCallInfo fcinfo, int argno);
extern void hotstock_hold_retry_settle(hs_client *c, const char *sku, size_t sku_len, int32 qty,
                                       const char *order_id, size_t order_len, const char *what);

/* xact.c */
extern PendingAction *hotstock_remember(PendingKind kind, const char *order_id, size_t order_len);
extern PendingAction *hotstock_find_pending(PendingKind kind, const char *order_id,
                                            size_t order_len);
extern void hotstock_xact_callback(XactEvent event, void *arg);
extern void hotstock_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
                                      SubTransactionId parentSubid, void *arg);

/* fate.c */
extern HotstockXidFate hotstock_xid_fate(uint64 fxid, TransactionId *xid);
extern const char *hotstock_xid_fate_name(HotstockXidFate fate);
extern uint64 hotstock_deduct_xid(void);

/* starts.c: a start's number in an xid takes 1 .. HS_START_FIELDS */
#define HS_START_FIELDS 32767
extern void hotstock_starts_request(void);
extern void hotstock_starts_startup(void);
extern uint64 hotstock_starts_take_next_xid(void);
extern uint64 hotstock_xid_encode(FullTransactionId fxid);
extern bool hotstock_xid_decode(uint64 encoded, FullTransactionId *fxid);
extern uint64 hotstock_xid_full(uint64 encoded);

/* ledger.c */
extern SPIPlanPtr hotstock_prepare(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes);
extern int hotstock_ledger_lookup(const char *order_id, size_t order_len, LedgerRow *rows);
extern int hotstock_ledger_refund(const char *order_id, size_t order_len, hs_lsn evicted_lsn,
                                  LedgerRow *rows);
extern int hotstock_ledger_basket_lines(const char *order_id, size_t order_len);
extern bool hotstock_take_is_drained_retry(const char *sku, size_t sku_len, int32 qty,
                                           const char *order_id, size_t order_len, bool reserve);
extern uint64 hotstock_drain_execute(SPIPlanPtr plan, Datum *values, int expected);
extern uint64 hotstock_drain_write(SPIPlanPtr plan, Datum *values, int expected);
extern bool hotstock_ledger_request_refund(const char *order_id, size_t order_len);
extern bool hotstock_ledger_refund_requested(const char *order_id, size_t order_len);
extern void hotstock_ledger_forget_requests(Datum order_ids);
extern bool hotstock_ledger_compensate_evicted(const char *order_id, const char *sku, uint64 xid);
extern void hotstock_ledger_settle(Datum order_ids, Datum skus, Datum xids);
extern Datum hotstock_array(Datum *elems, int n, Oid type);

extern bool hotstock_drain_begin(void);
extern void hotstock_drain_finish(void);

/* apply.c */
typedef struct HotstockApplyReport {
    uint64 dup_deducts;     /* DEDUCT/RESERVE records of orders already in the ledger */
    uint64 missing_refunds; /* REFUND records of orders missing from it */
    uint64 missing_holds;   /* CONFIRM/CANCEL/EXPIRE records without a live hold's row */
    uint64 unsettled;       /* rows written with an xid still to settle */
} HotstockApplyReport;

extern void hotstock_ledger_apply(const hs_record *records, int n, MemoryContext batch_context,
                                  HotstockApplyReport *report);

/* settle.c */
extern bool hotstock_settle_deductions(hs_client *drain_client, int *delay_ms);
extern void hotstock_apply_refund_requests(hs_client *drain_client);
extern void hotstock_apply_ledger_refunds(hs_client *drain_client);

/* drain.c */
extern void hotstock_drain_register(void);
extern PGDLLEXPORT void hotstock_drain_main(Datum main_arg) pg_attribute_noreturn();

#endif /* PG_EXT_HOTSTOCK_H */
