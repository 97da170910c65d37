/*-------------------------------------------------------------------------
 *
 * ledger.c
 *      The ledger writer: the drain's batch into hotstock.ledger and hotstock.stock, and the
 *backends' evicted-order reads and refund marks.
 *
 * Owns every SQL statement on hotstock.ledger, hotstock.stock and
 * hotstock.drain_state that applies effects (prepared once per process).
 * Shares the tables with every session; the guard trigger lets them be
 * written only while hotstock_writer says so, which this file sets around
 * its own statements and resets in PG_FINALLY.  The drain's batch runs in
 * the drain's transaction; the refund mark in the caller's, as the
 * ledger's owner, with the latest snapshot.
 *
 * Must not call the daemon (its callers do) nor decide what to apply:
 * drain.c chooses the records, api.c the orders.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "hotstock_ext.h"

/* Per-SKU sum of one batch's deltas. */
typedef struct SkuDelta {
    char sku[HS_SKU_MAX + 1]; /* hash key */
    int64 available;          /* sum of deltas to available */
    int64 sold;               /* deducted - refunded */
    int64 last_lsn;
    TimestampTz at; /* time of its last record */
} SkuDelta;

static SPIPlanPtr ledger_lookup_plan = NULL;
static SPIPlanPtr ledger_refund_plan = NULL;
static SPIPlanPtr insert_ledger_plan = NULL;
static SPIPlanPtr insert_ledger_safe_plan = NULL;
static SPIPlanPtr refund_ledger_plan = NULL;
static SPIPlanPtr upsert_stock_plan = NULL;
static SPIPlanPtr write_applied_plan = NULL;
static SPIPlanPtr compensate_lock_plan = NULL;
static SPIPlanPtr request_refund_plan = NULL;
static SPIPlanPtr extversion_plan = NULL;
static bool extension_version_ok = false; /* the drain checked it once */
static SPIPlanPtr refund_requested_plan = NULL;
static SPIPlanPtr requests_done_plan = NULL;
static SPIPlanPtr requests_forget_plan = NULL;
static SPIPlanPtr compensate_mark_plan = NULL;
static SPIPlanPtr settle_plan = NULL;

static uint64 drain_execute(SPIPlanPtr plan, Datum *values, int expected);
static uint64 drain_write(SPIPlanPtr plan, Datum *values, int expected);

/*
 * Owner of hotstock.ledger: the evicted-order paths read and update it as
 * that role, so hotstock_app needs no privilege on the table.
 */
static Oid
ledger_owner(void)
{
    Oid nsp = get_namespace_oid("hotstock", true);
    Oid relid = OidIsValid(nsp) ? get_relname_relid("ledger", nsp) : InvalidOid;
    HeapTuple tp;
    Oid owner;

    if (!OidIsValid(relid))
        ereport(
            ERROR,
            (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("extension hotstock is not created in this database"),
             errhint("Run CREATE EXTENSION hotstock in database \"%s\" (hotstock.drain_database).",
                     hotstock_drain_database)));
    tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
    if (!HeapTupleIsValid(tp))
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("hotstock.ledger disappeared while in use")));
    owner = ((Form_pg_class)GETSTRUCT(tp))->relowner;
    ReleaseSysCache(tp);
    return owner;
}

/* Copy up to HS_LEDGER_ROWS_MAX rows (sku, qty[, refunded]) out of SPI. */
static int
copy_ledger_rows(LedgerRow *rows, bool with_refunded)
{
    int n = SPI_tuptable == NULL ? 0 : (int)Min(SPI_processed, (uint64)HS_LEDGER_ROWS_MAX);

    for (int i = 0; i < n; i++) {
        HeapTuple tup = SPI_tuptable->vals[i];
        TupleDesc desc = SPI_tuptable->tupdesc;
        bool isnull;
        char *sku = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));

        strlcpy(rows[i].sku, sku, sizeof(rows[i].sku));
        rows[i].qty = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
        rows[i].refunded =
            with_refunded ? DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)) : false;
        rows[i].xid =
            with_refunded ? (uint64)DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull)) : 0;
    }
    return n;
}

/*
 * Run one of the ledger statements below as the ledger's owner, with the
 * latest snapshot (a row the drain committed after this transaction's
 * snapshot must count: the daemon evicted the order because that row
 * exists), and copy up to HS_LEDGER_ROWS_MAX result rows (sku, qty[,
 * refunded]) into rows.  *plan is prepared on first use.  writer is what
 * the guard trigger sees while the statement runs.  Returns the rows copied.
 */
static int
ledger_run(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values, bool read_only,
           HotstockWriter writer, int expected, LedgerRow *rows, bool with_refunded)
{
    Oid owner = ledger_owner();
    Oid save_userid;
    int save_sec;
    int ret = 0;
    int n;

    if (SPI_connect() != SPI_OK_CONNECT)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("could not connect to SPI to use hotstock.ledger")));
    if (*plan == NULL) {
        SPIPlanPtr p = SPI_prepare(sql, nargs, types);

        if (p == NULL)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("could not prepare a hotstock.ledger statement: %s",
                                   SPI_result_code_string(SPI_result))));
        SPI_keepplan(p);
        *plan = p;
    }

    GetUserIdAndSecContext(&save_userid, &save_sec);
    SetUserIdAndSecContext(owner,
                           save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
    hotstock_writer = writer;
    PG_TRY();
    {
        ret = SPI_execute_snapshot(*plan, values, NULL, GetLatestSnapshot(), InvalidSnapshot,
                                   read_only, true, read_only ? HS_LEDGER_ROWS_MAX : 0);
    }
    PG_FINALLY();
    {
        hotstock_writer = HS_WRITER_NONE;
    }
    PG_END_TRY();
    SetUserIdAndSecContext(save_userid, save_sec);
    if (ret != expected)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("could not use hotstock.ledger: %s", SPI_result_code_string(ret))));
    n = copy_ledger_rows(rows, with_refunded);
    SPI_finish();
    return n;
}

/* Rows of hotstock.ledger for order_id (see ledger_run). */
int
hotstock_ledger_lookup(const char *order_id, size_t order_len, LedgerRow *rows)
{
    Oid types[1] = {TEXTOID};
    Datum values[1];

    values[0] = PointerGetDatum(cstring_to_text_with_len(order_id, (int)order_len));
    return ledger_run(&ledger_lookup_plan,
                      "SELECT sku, qty, refunded_at IS NOT NULL, coalesce(xid, 0) "
                      "FROM hotstock.ledger "
                      "WHERE order_id OPERATOR(pg_catalog.=) $1",
                      1, types, values, true, HS_WRITER_NONE, SPI_OK_SELECT, rows, true);
}

/*
 * Database-first refund of an evicted order: mark its unrefunded ledger
 * rows refunded in the caller's transaction (the row lock serialises
 * concurrent refunds; a waiter re-checks refunded_at and finds it set).
 * Only rows at or below evicted_lsn (read before the index look-up that
 * did not find the order) count: a row after it belongs to an order the
 * index still holds, which must be refunded through the index (else both
 * paths could succeed).
 * Returns the rows it marked.
 */
int
hotstock_ledger_refund(const char *order_id, size_t order_len, hs_lsn evicted_lsn, LedgerRow *rows)
{
    Oid types[2] = {TEXTOID, INT8OID};
    Datum values[2];

    values[0] = PointerGetDatum(cstring_to_text_with_len(order_id, (int)order_len));
    values[1] = Int64GetDatum((int64)evicted_lsn);
    return ledger_run(&ledger_refund_plan,
                      "UPDATE hotstock.ledger "
                      "SET refunded_at = pg_catalog.clock_timestamp() "
                      "WHERE order_id OPERATOR(pg_catalog.=) $1 "
                      "AND lsn OPERATOR(pg_catalog.<=) $2 "
                      "AND refunded_at IS NULL "
                      "RETURNING sku, qty",
                      2, types, values, false, HS_WRITER_REFUND, SPI_OK_UPDATE_RETURNING, rows,
                      false);
}

/*
 * Record a refund of order_id in hotstock.refund_requests, in the caller's
 * transaction: once that commits, the refund is durable in PostgreSQL
 * whatever happens to the daemon, and the drain applies it if the queue
 * never gets its REFUND record (settle.c).  False when a refund of this
 * order is recorded already and committed (the daemon could not take it
 * yet: it is refunded, pending): then this one must answer false.  A
 * request of a transaction still in progress is waited for (the unique
 * index's insertion wait), as a second refund waits for the first.
 */
bool
hotstock_ledger_request_refund(const char *order_id, size_t order_len)
{
    Oid types[1] = {TEXTOID};
    Datum values[1];
    LedgerRow rows[1];

    values[0] = PointerGetDatum(cstring_to_text_with_len(order_id, (int)order_len));
    return ledger_run(&request_refund_plan,
                      "INSERT INTO hotstock.refund_requests (order_id) VALUES ($1) "
                      "ON CONFLICT (order_id) DO NOTHING RETURNING order_id AS sku, 0 AS qty",
                      1, types, values, false, HS_WRITER_REFUND, SPI_OK_INSERT_RETURNING, rows,
                      false) == 1;
}

/*
 * Is a committed refund of order_id waiting in hotstock.refund_requests
 * for the drain (the daemon could not take it at commit)?  Then the order
 * is refunded although the daemon's index still says deducted: a deduct
 * retry must not answer true, order_status must say refunded.
 */
bool
hotstock_ledger_refund_requested(const char *order_id, size_t order_len)
{
    Oid types[1] = {TEXTOID};
    Datum values[1];
    LedgerRow rows[1];

    values[0] = PointerGetDatum(cstring_to_text_with_len(order_id, (int)order_len));
    return ledger_run(&refund_requested_plan,
                      "SELECT order_id AS sku, 0 AS qty FROM hotstock.refund_requests "
                      "WHERE order_id OPERATOR(pg_catalog.=) $1",
                      1, types, values, true, HS_WRITER_NONE, SPI_OK_SELECT, rows, false) > 0;
}

/*
 * The order index does not know order_id and orders were evicted: is it a
 * retry of a deduction already drained?  True when the ledger holds it with
 * this sku and qty (the caller answers true, deducts nothing); false when
 * the ledger does not know the order (a new one).  Raises HS005 when it
 * was refunded, HS004 when it was for another sku or qty.
 */
bool
hotstock_deduct_is_drained_retry(const char *sku, size_t sku_len, int32 qty, const char *order_id,
                                 size_t order_len)
{
    LedgerRow rows[HS_LEDGER_ROWS_MAX];
    char *order_str = pnstrdup(order_id, order_len);

    for (;;) {
        int n = hotstock_ledger_lookup(order_id, order_len, rows);
        int i;

        for (i = 0; i < n; i++)
            if (strlen(rows[i].sku) == sku_len && memcmp(rows[i].sku, sku, sku_len) == 0)
                break;
        if (i == n) {
            if (n > 0)
                hotstock_raise(HS_ORDER_MISMATCH, order_str);
            return false;
        }
        if (rows[i].refunded || hotstock_ledger_refund_requested(order_id, order_len))
            hotstock_raise(HS_ALREADY_REFUNDED, order_str);
        if (rows[i].qty != qty)
            hotstock_raise(HS_ORDER_MISMATCH, order_str);
        if (rows[i].xid != 0) {
            /* its transaction was not known committed when it was drained:
             * as for a retry of an order still in the index (api.c) */
            TransactionId xid;

            switch (hotstock_xid_fate(rows[i].xid, &xid)) {
            case HS_FATE_IN_PROGRESS:
                XactLockTableWait(xid, NULL, NULL, XLTW_None);
                CHECK_FOR_INTERRUPTS();
                continue;
            case HS_FATE_ABORTED:
                /* the drain compensates it (drain.c): it is rolled back */
                hotstock_raise(HS_ALREADY_REFUNDED, order_str);
                break;
            default:
                break;
            }
        }
        return true;
    }
}

/*
 * The drain's compensation of an evicted order (drain.c): mark the ledger
 * row of the deduction made by xid refunded, and settled, in the drain's
 * transaction; the row lock serialises it with a database-first refund.
 * True when this call marked it (the caller returns the units once the
 * transaction committed: hs_refund_evicted); false when it was refunded
 * already (then it is only settled) or is not pending with this xid.
 */
bool
hotstock_ledger_compensate_evicted(const char *order_id, const char *sku, uint64 xid)
{
    Oid types[3] = {TEXTOID, TEXTOID, INT8OID};
    Datum values[3];
    SPIPlanPtr lock = hotstock_prepare(&compensate_lock_plan,
                                       "SELECT refunded_at IS NULL FROM hotstock.ledger "
                                       "WHERE order_id OPERATOR(pg_catalog.=) $1 "
                                       "AND sku OPERATOR(pg_catalog.=) $2 "
                                       "AND xid OPERATOR(pg_catalog.=) $3 FOR UPDATE",
                                       3, types);
    SPIPlanPtr mark = hotstock_prepare(&compensate_mark_plan,
                                       "UPDATE hotstock.ledger "
                                       "SET refunded_at = coalesce(refunded_at, "
                                       "pg_catalog.clock_timestamp()), xid = NULL "
                                       "WHERE order_id OPERATOR(pg_catalog.=) $1 "
                                       "AND sku OPERATOR(pg_catalog.=) $2 "
                                       "AND xid OPERATOR(pg_catalog.=) $3",
                                       3, types);
    bool open = false;
    bool isnull;

    values[0] = CStringGetTextDatum(order_id);
    values[1] = CStringGetTextDatum(sku);
    values[2] = Int64GetDatum((int64)xid);
    /* the row lock first: a database-first refund holding it commits or
     * rolls back before we read whether it is refunded */
    if (drain_execute(lock, values, SPI_OK_SELECT) != 1)
        return false;
    open = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
    (void)drain_write(mark, values, SPI_OK_UPDATE);
    return open;
}

/*
 * Forget refund requests (order_ids: a text array) the drain found nothing
 * left to do for: refunded and drained already, or no deduction to refund
 * (its DEDUCT was lost with unsynchronized records).  In the drain's
 * transaction.
 */
void
hotstock_ledger_forget_requests(Datum order_ids)
{
    Oid types[1] = {TEXTARRAYOID};
    Datum values[1] = {order_ids};
    SPIPlanPtr plan = hotstock_prepare(
        &requests_forget_plan, "DELETE FROM hotstock.refund_requests WHERE order_id = ANY ($1)",
        1, types);

    (void)drain_write(plan, values, SPI_OK_DELETE);
}

/*
 * Settle ledger rows (order_ids, skus, xids: arrays of the same length):
 * their deduction's transaction committed, or its compensation is on
 * disk.  In the drain's transaction.
 */
void
hotstock_ledger_settle(Datum order_ids, Datum skus, Datum xids)
{
    Oid types[3] = {TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
    Datum values[3] = {order_ids, skus, xids};
    SPIPlanPtr plan = hotstock_prepare(&settle_plan,
                                       "UPDATE hotstock.ledger AS l SET xid = NULL "
                                       "FROM unnest($1, $2, $3) AS u(order_id, sku, xid) "
                                       "WHERE l.order_id = u.order_id AND l.sku = u.sku "
                                       "AND l.xid = u.xid",
                                       3, types);

    (void)drain_write(plan, values, SPI_OK_UPDATE);
}

/*
 * Start one of the drain's transactions: a snapshot and an SPI connection.
 * False when the extension does not exist (yet) in this database, or is
 * at another version than this build's SQL (reported: ALTER EXTENSION
 * hotstock UPDATE): then only hotstock_drain_finish() may follow.
 */
bool
hotstock_drain_begin(void)
{
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    if (SPI_connect() != SPI_OK_CONNECT)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("hotstock drain could not connect to SPI")));
    PushActiveSnapshot(GetTransactionSnapshot());
    if (!OidIsValid(get_extension_oid("hotstock", true)))
        return false;
    if (!extension_version_ok) {
        SPIPlanPtr plan = hotstock_prepare(
            &extversion_plan, "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'hotstock'",
            0, NULL);
        bool isnull;
        char *version = NULL;

        if (SPI_execute_plan(plan, NULL, NULL, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
            version = TextDatumGetCString(
                SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
        if (version == NULL || strcmp(version, HOTSTOCK_EXT_VERSION) != 0) {
            hotstock_drain_problem(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                                   "Run ALTER EXTENSION hotstock UPDATE in this database.",
                                   "hotstock extension is at version %s; this build's drain needs "
                                   "version %s",
                                   version ? version : "?", HOTSTOCK_EXT_VERSION);
            return false;
        }
        extension_version_ok = true;
    }
    return true;
}

/* Commit the drain's transaction (nothing was written if nothing ran). */
void
hotstock_drain_finish(void)
{
    SPI_finish();
    PopActiveSnapshot();
    CommitTransactionCommand();
}

/* Prepare and keep one statement of the drain. */
SPIPlanPtr
hotstock_prepare(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
    if (*slot == NULL) {
        SPIPlanPtr plan = SPI_prepare(sql, nargs, argtypes);

        if (plan == NULL)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("hotstock drain could not prepare a statement: %s",
                                   SPI_result_code_string(SPI_result)),
                            errdetail_internal("%s", sql)));
        SPI_keepplan(plan);
        *slot = plan;
    }
    return *slot;
}

/* Build a one-dimensional array of datums of a built-in type. */
Datum
hotstock_array(Datum *elems, int n, Oid type)
{
    int16 typlen;
    bool typbyval;
    char typalign;

    get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
    return PointerGetDatum(construct_array(elems, n, type, typlen, typbyval, typalign));
}

/* Run a prepared write statement; returns rows processed. */
static uint64
drain_execute(SPIPlanPtr plan, Datum *values, int expected)
{
    int ret = SPI_execute_plan(plan, values, NULL, false, 0);

    if (ret != expected)
        ereport(ERROR,
                (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                 errmsg("hotstock drain statement failed: %s", SPI_result_code_string(ret))));
    return SPI_processed;
}

/* Run a prepared write statement as the drain (the guard trigger lets it
 * through); returns rows processed. */
static uint64
drain_write(SPIPlanPtr plan, Datum *values, int expected)
{
    uint64 done = 0;

    hotstock_writer = HS_WRITER_DRAIN;
    PG_TRY();
    {
        done = drain_execute(plan, values, expected);
    }
    PG_FINALLY();
    {
        hotstock_writer = HS_WRITER_NONE;
    }
    PG_END_TRY();
    return done;
}

/*
 * INSERT the DEDUCT records (values: order ids, skus, qtys, LSNs, times,
 * xids still to settle or 0)
 * into hotstock.ledger; returns the rows inserted.  The plain INSERT runs
 * in a subtransaction: an order already in the ledger (a deduction of an
 * order the daemon had evicted, deducted anew: see README.md) raises a
 * unique violation, and only then the batch is inserted again with ON
 * CONFLICT DO NOTHING, which is slower (speculative insertion).
 */
static uint64
drain_insert_ledger(Datum *values)
{
    Oid types[6] = {TEXTARRAYOID, TEXTARRAYOID,        INT4ARRAYOID,
                    INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID};
    SPIPlanPtr fast = hotstock_prepare(&insert_ledger_plan,
                                       "INSERT INTO hotstock.ledger "
                                       "(order_id, sku, qty, lsn, deducted_at, xid) "
                                       "SELECT unnest($1), unnest($2), unnest($3), unnest($4), "
                                       "unnest($5), NULLIF(unnest($6), 0)",
                                       6, types);
    SPIPlanPtr safe = hotstock_prepare(&insert_ledger_safe_plan,
                                       "INSERT INTO hotstock.ledger "
                                       "(order_id, sku, qty, lsn, deducted_at, xid) "
                                       "SELECT unnest($1), unnest($2), unnest($3), unnest($4), "
                                       "unnest($5), NULLIF(unnest($6), 0) "
                                       "ON CONFLICT (order_id, sku) DO NOTHING",
                                       6, types);
    MemoryContext oldcxt = CurrentMemoryContext;
    ResourceOwner oldowner = CurrentResourceOwner;
    uint64 done = 0;
    bool conflict = false;

    BeginInternalSubTransaction(NULL);
    MemoryContextSwitchTo(oldcxt);
    PG_TRY();
    {
        done = drain_execute(fast, values, SPI_OK_INSERT);
        ReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(oldcxt);
        CurrentResourceOwner = oldowner;
    }
    PG_CATCH();
    {
        ErrorData *edata;

        MemoryContextSwitchTo(oldcxt);
        edata = CopyErrorData();
        FlushErrorState();
        RollbackAndReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(oldcxt);
        CurrentResourceOwner = oldowner;
        if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
            ReThrowError(edata);
        FreeErrorData(edata);
        conflict = true;
    }
    PG_END_TRY();

    if (conflict)
        done = drain_execute(safe, values, SPI_OK_INSERT);
    return done;
}

/*
 * Apply records[0..n) and set applied_lsn to the last one's LSN, inside
 * the caller's transaction, allocating in batch_context.  The records are
 * dense and start right after the committed applied_lsn (the caller
 * checked).  *dup_deducts and *missing_refunds count DEDUCT records of
 * orders already in the ledger and REFUND records of orders missing from
 * it, for the caller to report; *unsettled the deductions written with
 * their xid still to settle.
 */
void
hotstock_ledger_apply(const hs_record *records, int n, MemoryContext batch_context,
                      uint64 *dup_deducts, uint64 *missing_refunds, uint64 *unsettled)
{
    MemoryContext oldcxt = MemoryContextSwitchTo(batch_context);
    HASHCTL ctl;
    HTAB *skus;
    HASH_SEQ_STATUS seq;
    SkuDelta *delta;
    Datum *d_order = palloc(n * sizeof(Datum));
    Datum *d_sku = palloc(n * sizeof(Datum));
    Datum *d_qty = palloc(n * sizeof(Datum));
    Datum *d_lsn = palloc(n * sizeof(Datum));
    Datum *d_at = palloc(n * sizeof(Datum));
    Datum *d_xid = palloc(n * sizeof(Datum));
    Datum *r_order = palloc(n * sizeof(Datum));
    Datum *r_sku = palloc(n * sizeof(Datum));
    Datum *r_lsn = palloc(n * sizeof(Datum));
    Datum *r_at = palloc(n * sizeof(Datum));
    int nd = 0;
    int nr = 0;
    int ns;
    Datum values[6];
    uint64 done;

    *dup_deducts = 0;
    *missing_refunds = 0;
    *unsettled = 0;
    memset(&ctl, 0, sizeof(ctl));
    ctl.keysize = HS_SKU_MAX + 1;
    ctl.entrysize = sizeof(SkuDelta);
    ctl.hcxt = batch_context;
    skus = hash_create("hotstock drain skus", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

    for (int i = 0; i < n; i++) {
        const hs_record *rec = &records[i];
        TimestampTz at = hotstock_unix_us_to_timestamptz(rec->timestamp_us);
        bool found;

        if (rec->type == HS_REC_NOOP)
            continue;

        delta = hash_search(skus, rec->sku, HASH_ENTER, &found);
        if (!found) {
            delta->available = 0;
            delta->sold = 0;
        }
        delta->last_lsn = (int64)rec->lsn;
        delta->at = at;

        switch (rec->type) {
        case HS_REC_DEDUCT:
            delta->available -= rec->qty;
            delta->sold += rec->qty;
            d_order[nd] = CStringGetTextDatum(rec->order_id);
            d_sku[nd] = CStringGetTextDatum(rec->sku);
            d_qty[nd] = Int32GetDatum((int32)rec->qty);
            d_lsn[nd] = Int64GetDatum((int64)rec->lsn);
            d_at[nd] = TimestampTzGetDatum(at);
            /* A deduction of a transaction not known committed yet keeps
             * its xid in the ledger until the drain settles it (drain.c):
             * committed, or compensated. */
            switch (hotstock_xid_fate(rec->xid, NULL)) {
            case HS_FATE_IN_PROGRESS:
            case HS_FATE_ABORTED:
            case HS_FATE_MINE:
                d_xid[nd] = Int64GetDatum((int64)rec->xid);
                (*unsettled)++;
                break;
            default:
                d_xid[nd] = Int64GetDatum(0);
                break;
            }
            nd++;
            break;
        case HS_REC_REFUND:
            delta->available += rec->qty;
            delta->sold -= rec->qty;
            r_order[nr] = CStringGetTextDatum(rec->order_id);
            r_sku[nr] = CStringGetTextDatum(rec->sku);
            r_lsn[nr] = Int64GetDatum((int64)rec->lsn);
            r_at[nr] = TimestampTzGetDatum(at);
            nr++;
            break;
        case HS_REC_PUT_SKU:
        case HS_REC_ADD_STOCK:
            delta->available += rec->qty;
            break;
        default:
            ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_QUEUE_CORRUPT),
                            errmsg("hotstock queue record %llu has unknown type %u",
                                   (unsigned long long)rec->lsn, rec->type)));
        }
    }

    hotstock_writer = HS_WRITER_DRAIN;
    PG_TRY();
    {
        if (nd > 0) {
            values[0] = hotstock_array(d_order, nd, TEXTOID);
            values[1] = hotstock_array(d_sku, nd, TEXTOID);
            values[2] = hotstock_array(d_qty, nd, INT4OID);
            values[3] = hotstock_array(d_lsn, nd, INT8OID);
            values[4] = hotstock_array(d_at, nd, TIMESTAMPTZOID);
            values[5] = hotstock_array(d_xid, nd, INT8OID);
            done = drain_insert_ledger(values);
            *dup_deducts = (uint64)nd - done;
        }
        if (nr > 0) {
            Oid types[4] = {TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID};
            SPIPlanPtr plan =
                hotstock_prepare(&refund_ledger_plan,
                                 "UPDATE hotstock.ledger AS l "
                                 "SET refunded_at = coalesce(l.refunded_at, u.at), "
                                 "refund_lsn = u.lsn "
                                 "FROM unnest($1, $2, $3, $4) AS u(order_id, sku, lsn, at) "
                                 "WHERE l.order_id = u.order_id AND l.sku = u.sku "
                                 "AND l.refund_lsn IS NULL",
                                 4, types);

            values[0] = hotstock_array(r_order, nr, TEXTOID);
            values[1] = hotstock_array(r_sku, nr, TEXTOID);
            values[2] = hotstock_array(r_lsn, nr, INT8OID);
            values[3] = hotstock_array(r_at, nr, TIMESTAMPTZOID);
            done = drain_execute(plan, values, SPI_OK_UPDATE);
            *missing_refunds = (uint64)nr - done;
            /* these refunds reached the queue: their requests are done */
            {
                Oid rtypes[1] = {TEXTARRAYOID};
                SPIPlanPtr del = hotstock_prepare(
                    &requests_done_plan,
                    "DELETE FROM hotstock.refund_requests WHERE order_id = ANY ($1)", 1, rtypes);

                (void)drain_execute(del, values, SPI_OK_DELETE);
            }
        }

        ns = (int)hash_get_num_entries(skus);
        if (ns > 0) {
            Oid types[5] = {TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
                            TIMESTAMPTZARRAYOID};
            SPIPlanPtr plan = hotstock_prepare(
                &upsert_stock_plan,
                "INSERT INTO hotstock.stock AS s "
                "(sku, available, sold, last_lsn, updated_at) "
                "SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5) "
                "ON CONFLICT (sku) DO UPDATE SET "
                "available = s.available + excluded.available, "
                "sold = s.sold + excluded.sold, "
                "last_lsn = excluded.last_lsn, "
                "updated_at = excluded.updated_at",
                5, types);
            Datum *s_sku = palloc(ns * sizeof(Datum));
            Datum *s_available = palloc(ns * sizeof(Datum));
            Datum *s_sold = palloc(ns * sizeof(Datum));
            Datum *s_lsn = palloc(ns * sizeof(Datum));
            Datum *s_at = palloc(ns * sizeof(Datum));
            int k = 0;

            hash_seq_init(&seq, skus);
            while ((delta = hash_seq_search(&seq)) != NULL) {
                s_sku[k] = CStringGetTextDatum(delta->sku);
                s_available[k] = Int64GetDatum(delta->available);
                s_sold[k] = Int64GetDatum(delta->sold);
                s_lsn[k] = Int64GetDatum(delta->last_lsn);
                s_at[k] = TimestampTzGetDatum(delta->at);
                k++;
            }
            values[0] = hotstock_array(s_sku, ns, TEXTOID);
            values[1] = hotstock_array(s_available, ns, INT8OID);
            values[2] = hotstock_array(s_sold, ns, INT8OID);
            values[3] = hotstock_array(s_lsn, ns, INT8OID);
            values[4] = hotstock_array(s_at, ns, TIMESTAMPTZOID);
            (void)drain_execute(plan, values, SPI_OK_INSERT);
        }

        {
            Oid types[1] = {INT8OID};
            SPIPlanPtr plan =
                hotstock_prepare(&write_applied_plan,
                                 "UPDATE hotstock.drain_state "
                                 "SET applied_lsn = $1, updated_at = clock_timestamp()",
                                 1, types);

            values[0] = Int64GetDatum((int64)records[n - 1].lsn);
            if (drain_execute(plan, values, SPI_OK_UPDATE) != 1)
                ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                                errmsg("hotstock.drain_state must hold exactly one row")));
        }
    }
    PG_FINALLY();
    {
        hotstock_writer = HS_WRITER_NONE;
    }
    PG_END_TRY();

    MemoryContextSwitchTo(oldcxt);
}
