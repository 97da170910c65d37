/*-------------------------------------------------------------------------
 *
 * ledger.c
 *      The ledger's statements outside the drain's batch: the backends'
 *      evicted-order reads and refund marks, refund requests, and the
 *      drain's settling and compensation marks; the drain's transactions.
 *
 * Owns every SQL statement on hotstock.ledger and hotstock.refund_requests
 * but the batch's (apply.c), prepared once per process, and the helpers
 * both use to run them (hotstock_drain_execute, hotstock_drain_write).
 * Shares the tables with every session; the guard trigger lets them be
 * written only while hotstock_writer says so, which this file sets around
 * its own statements and resets in PG_FINALLY.  The drain's statements run
 * in the drain's transactions; the refund mark in the caller's, as the
 * ledger's owner, with the latest snapshot.
 *
 * A row of a hold (hotstock.ledger.hold set) holds units sold only once
 * confirmed: a refund marks, and a compensation of an evicted order
 * refunds, only rows of deductions and confirmed holds; a cancelled or
 * expired hold gave its units back already (its CANCEL or EXPIRE record).
 *
 * Must not call the daemon (its callers do) nor decide what to apply:
 * drain.c chooses the records, api.c and hold.c the orders.
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

static SPIPlanPtr ledger_lookup_plan = NULL;
static SPIPlanPtr basket_lines_plan = NULL;
static SPIPlanPtr ledger_refund_plan = NULL;
static SPIPlanPtr compensate_lock_plan = NULL;
static SPIPlanPtr request_refund_plan = NULL;
static SPIPlanPtr extversion_plan = NULL;
static bool extension_version_ok = false; /* the drain checked it once */
static SPIPlanPtr refund_requested_plan = NULL;
static SPIPlanPtr requests_forget_plan = NULL;
static SPIPlanPtr compensate_mark_plan = NULL;
static SPIPlanPtr settle_plan = NULL;

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

/* hotstock.ledger.hold as text (null: a deduction) to LedgerHold. */
static LedgerHold
ledger_hold(Datum d, bool isnull)
{
    char *hold;

    if (isnull)
        return LEDGER_NO_HOLD;
    hold = TextDatumGetCString(d);
    if (strcmp(hold, "reserved") == 0)
        return LEDGER_RESERVED;
    if (strcmp(hold, "confirmed") == 0)
        return LEDGER_CONFIRMED;
    if (strcmp(hold, "cancelled") == 0)
        return LEDGER_CANCELLED;
    return LEDGER_EXPIRED; /* the table's CHECK allows no other value */
}

/* Copy up to HS_LEDGER_ROWS_MAX rows (sku, qty[, refunded, xid, hold]) out
 * of SPI. */
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
        rows[i].hold = LEDGER_NO_HOLD;
        if (with_refunded) {
            Datum hold = SPI_getbinval(tup, desc, 5, &isnull);

            rows[i].hold = ledger_hold(hold, isnull);
        }
    }
    return n;
}

/*
 * Run one of the ledger statements below as the ledger's owner, with the
 * latest snapshot (a row the drain committed after this transaction's
 * snapshot must count: the daemon evicted the order because that row
 * exists), and copy up to HS_LEDGER_ROWS_MAX result rows (sku, qty[,
 * refunded, xid, hold]) into rows.  *plan is prepared on first use.  writer is what
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
                      "SELECT sku, qty, refunded_at IS NOT NULL, coalesce(xid, 0), hold "
                      "FROM hotstock.ledger "
                      "WHERE order_id OPERATOR(pg_catalog.=) $1",
                      1, types, values, true, HS_WRITER_NONE, SPI_OK_SELECT, rows, true);
}

/*
 * The line count of basket order_id as hotstock.ledger knows it: n when
 * the ledger holds line 0 of an n-line basket (hs_basket_line_id()), else
 * 0.  One index probe for the 64 possible ids of line 0; for a basket the
 * daemon evicted (the index answers for one it still holds).
 */
int
hotstock_ledger_basket_lines(const char *order_id, size_t order_len)
{
    Oid types[1] = {TEXTARRAYOID};
    Datum values[1];
    Datum ids[HS_BASKET_MAX];
    LedgerRow rows[HS_LEDGER_ROWS_MAX];
    size_t len;

    if (order_len < 1 || order_len > HS_BASKET_ID_MAX)
        return 0;
    for (int n = 1; n <= HS_BASKET_MAX; n++) {
        char id[HS_ORDER_ID_MAX + 1];

        len = hs_basket_line_id(order_id, order_len, 0, n, id);
        ids[n - 1] = PointerGetDatum(cstring_to_text_with_len(id, (int)len));
    }
    values[0] = hotstock_array(ids, HS_BASKET_MAX, TEXTOID);
    if (ledger_run(&basket_lines_plan,
                   "SELECT order_id AS sku, 0 AS qty FROM hotstock.ledger "
                   "WHERE order_id OPERATOR(pg_catalog.=) ANY ($1) LIMIT 1",
                   1, types, values, true, HS_WRITER_NONE, SPI_OK_SELECT, rows, false) == 0)
        return 0;
    /* the id ends in "iinn": the line count is its last two digits */
    len = strlen(rows[0].sku);
    if (len < 2)
        return 0;
    return (rows[0].sku[len - 2] - '0') * 10 + (rows[0].sku[len - 1] - '0');
}

/*
 * Database-first refund of an evicted order: mark its unrefunded ledger
 * rows refunded in the caller's transaction (the row lock serialises
 * concurrent refunds; a waiter re-checks refunded_at and finds it set).
 * Only rows at or below evicted_lsn (read before the index look-up that
 * did not find the order) count: a row after it belongs to an order the
 * index still holds, which must be refunded through the index (else both
 * paths could succeed).  Rows of holds count only once confirmed (a
 * reservation's units are not sold; a cancelled or expired one's are back).
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
                      "AND (hold IS NULL OR hold OPERATOR(pg_catalog.=) 'confirmed') "
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
 * retry of a deduction (reserve: of a reservation) already drained?  True
 * when the ledger holds it with this sku and qty, as a deduction or a
 * confirmed hold (reserve: as a live or confirmed hold); the caller answers
 * true and takes nothing.  False when the ledger does not know the order
 * (a new one).  Raises HS005 when it was refunded, HS004 when it was for
 * another sku or qty or of the other kind, HS008 / HS009 when it was a
 * hold that expired or was cancelled (as the index answers).
 */
bool
hotstock_take_is_drained_retry(const char *sku, size_t sku_len, int32 qty, const char *order_id,
                               size_t order_len, bool reserve)
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
        switch (rows[i].hold) {
        case LEDGER_EXPIRED:
            hotstock_raise_hint(HS_HOLD_EXPIRED, order_str, HOTSTOCK_HINT_EVICTED_HOLD);
            break;
        case LEDGER_CANCELLED:
            hotstock_raise_hint(HS_HOLD_CANCELLED, order_str, HOTSTOCK_HINT_EVICTED_HOLD);
            break;
        case LEDGER_NO_HOLD:
            if (reserve)
                hotstock_raise(HS_ORDER_MISMATCH, order_str);
            break;
        case LEDGER_RESERVED:
            if (!reserve)
                hotstock_raise(HS_ORDER_MISMATCH, order_str);
            break;
        case LEDGER_CONFIRMED:
            break;
        }
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
                /* the drain compensates it (settle.c): it is rolled back */
                if (rows[i].hold == LEDGER_RESERVED)
                    hotstock_raise_hint(HS_HOLD_CANCELLED, order_str, HOTSTOCK_HINT_EVICTED_HOLD);
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
 * already, or is a hold that holds no units sold (cancelled or expired:
 * its units are back; reserved: the index never evicts a live hold, so
 * this cannot happen, and nothing is given back), then it is only
 * settled; or false when it is not pending with this xid.
 */
bool
hotstock_ledger_compensate_evicted(const char *order_id, const char *sku, uint64 xid)
{
    Oid types[3] = {TEXTOID, TEXTOID, INT8OID};
    Datum values[3];
    SPIPlanPtr lock = hotstock_prepare(&compensate_lock_plan,
                                       "SELECT refunded_at IS NULL AND (hold IS NULL OR "
                                       "hold = 'confirmed') FROM hotstock.ledger "
                                       "WHERE order_id OPERATOR(pg_catalog.=) $1 "
                                       "AND sku OPERATOR(pg_catalog.=) $2 "
                                       "AND xid OPERATOR(pg_catalog.=) $3 FOR UPDATE",
                                       3, types);
    SPIPlanPtr mark = hotstock_prepare(&compensate_mark_plan,
                                       "UPDATE hotstock.ledger "
                                       "SET refunded_at = CASE WHEN hold IS NULL OR "
                                       "hold = 'confirmed' THEN coalesce(refunded_at, "
                                       "pg_catalog.clock_timestamp()) ELSE refunded_at END, "
                                       "xid = NULL "
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
    if (hotstock_drain_execute(lock, values, SPI_OK_SELECT) != 1)
        return false;
    open = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
    (void)hotstock_drain_write(mark, values, SPI_OK_UPDATE);
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

    (void)hotstock_drain_write(plan, values, SPI_OK_DELETE);
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

    (void)hotstock_drain_write(plan, values, SPI_OK_UPDATE);
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

/* Run a prepared statement of the drain's; returns rows processed.  Raises
 * unless SPI answers `expected`. */
uint64
hotstock_drain_execute(SPIPlanPtr plan, Datum *values, int expected)
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
uint64
hotstock_drain_write(SPIPlanPtr plan, Datum *values, int expected)
{
    uint64 done = 0;

    hotstock_writer = HS_WRITER_DRAIN;
    PG_TRY();
    {
        done = hotstock_drain_execute(plan, values, expected);
    }
    PG_FINALLY();
    {
        hotstock_writer = HS_WRITER_NONE;
    }
    PG_END_TRY();
    return done;
}
