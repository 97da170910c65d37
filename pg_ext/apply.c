/*-------------------------------------------------------------------------
 *
 * apply.c
 *      The drain's batch: one transaction's queue records into
 *      hotstock.ledger, hotstock.stock and hotstock.drain_state.
 *
 * What it shares: the three tables, written here in the drain's
 * transaction (drain.c opens and commits it), while hotstock_writer says
 * HS_WRITER_DRAIN, so the guard trigger lets the statements through; the
 * position (applied_lsn) moves in the same transaction as the effects of
 * every record up to it, which is what makes the drain exactly once.  Only
 * the drain process runs this file.
 *
 * A batch is a few set-oriented statements (unnest of arrays), whatever
 * its size, in this order:
 *
 *   1. INSERT the RESERVE records into the ledger (hold 'reserved',
 *      expires_at = the record's time + its ttl).
 *   2. UPDATE the rows of the holds that CONFIRM, CANCEL and EXPIRE records
 *      settle (hold, settle_lsn, settled_at; the xid: see below).
 *   3. INSERT the DEDUCT records.  A DEDUCT of an order whose row is a
 *      cancelled or expired hold is a retake (hotstock.confirm(..., retake
 *      => true)): that row becomes a confirmed hold with the DEDUCT's lsn,
 *      time and xid.
 *   4. UPDATE the rows of the REFUND records.
 *   5. One INSERT .. ON CONFLICT into stock with each SKU's sums.
 *   6. UPDATE drain_state.
 *
 * The records of one order only ever come in the order RESERVE, then one
 * of CONFIRM / CANCEL / EXPIRE, then (after CANCEL or EXPIRE) a retake's
 * DEDUCT, then REFUNDs; a plain order DEDUCT then REFUND.  So the statement
 * order above applies any batch as the records' order would, one by one.
 *
 * Stock per SKU: DEDUCT available -= qty, sold += qty; REFUND the reverse;
 * RESERVE available -= qty, reserved += qty; CONFIRM reserved -= qty,
 * sold += qty; CANCEL and EXPIRE reserved -= qty, available += qty;
 * PUT_SKU and ADD_STOCK available += delta; NOOP and SALE (a sale's
 * window or pause switch: the daemon's alone) nothing.  So available +
 * reserved + sold is the stock put in.
 *
 * The xid of a row (settled by settle.c once its transaction's fate is
 * known): a DEDUCT, RESERVE or CONFIRM of a transaction not known to have
 * committed writes its xid; a CONFIRM of a committed one settles the row
 * (the sale stands, whatever the reservation's transaction does); a
 * CONFIRM without an xid leaves the reservation's; a CANCEL flagged
 * HS_REC_FLAG_COMPENSATION settles it (it is the compensation).
 *
 * Must not call the daemon nor choose the records (drain.c does).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "hotstock_ext.h"

/* A row's xid in the settle statement: keep the row's, or set (0: null). */
#define XID_KEEP INT64CONST(-1)

/* Per-SKU sum of one batch's deltas. */
typedef struct SkuDelta {
    char sku[HS_SKU_MAX + 1]; /* hash key */
    int64 available;          /* sum of deltas to available */
    int64 reserved;           /* reserved - settled */
    int64 sold;               /* deducted + confirmed - refunded */
    int64 last_lsn;
    TimestampTz at; /* time of its last record */
} SkuDelta;

/* One statement's columns, one Datum array each, filled record by record. */
#define MAX_COLUMNS 7
typedef struct Columns {
    int n;                   /* rows so far */
    Datum *col[MAX_COLUMNS]; /* each sized for the whole batch */
} Columns;

static SPIPlanPtr insert_deduct_plan = NULL;
static SPIPlanPtr insert_deduct_safe_plan = NULL;
static SPIPlanPtr retake_plan = NULL;
static SPIPlanPtr insert_reserve_plan = NULL;
static SPIPlanPtr insert_reserve_safe_plan = NULL;
static SPIPlanPtr settle_hold_plan = NULL;
static SPIPlanPtr refund_ledger_plan = NULL;
static SPIPlanPtr requests_done_plan = NULL;
static SPIPlanPtr upsert_stock_plan = NULL;
static SPIPlanPtr write_applied_plan = NULL;

static void
columns_init(Columns *c, int ncols, int n)
{
    c->n = 0;
    for (int i = 0; i < ncols; i++)
        c->col[i] = palloc(Max(n, 1) * sizeof(Datum));
}

/* The columns' arrays as statement arguments, of the given element types. */
static void
columns_values(const Columns *c, const Oid *types, int ncols, Datum *values)
{
    for (int i = 0; i < ncols; i++)
        values[i] = hotstock_array(c->col[i], c->n, types[i]);
}

/*
 * The xid a row written now keeps until the drain settles it: the
 * record's, while its transaction is not known to have committed (running,
 * prepared, aborted, or this very drain's); else 0 (settled at once).
 */
static int64
unsettled_xid(uint64 xid, HotstockApplyReport *report)
{
    switch (hotstock_xid_fate(xid, NULL)) {
    case HS_FATE_IN_PROGRESS:
    case HS_FATE_ABORTED:
    case HS_FATE_MINE:
        report->unsettled++;
        return (int64)xid;
    default:
        return 0;
    }
}

/*
 * Run the fast INSERT of new ledger rows (values: its arguments), and if an
 * order is in the ledger already, the safe one instead: `fast` runs in a
 * subtransaction, and only a unique violation (an order the daemon had
 * evicted, taken anew: see README.md; or a retake, whose row `before`
 * updates first) makes `before` (if any) and `safe` (ON CONFLICT DO
 * NOTHING, slower: speculative insertion) run.  Returns the rows inserted
 * or updated.
 */
static uint64
insert_ledger(SPIPlanPtr fast, SPIPlanPtr before, SPIPlanPtr safe, Datum *values)
{
    MemoryContext oldcxt = CurrentMemoryContext;
    ResourceOwner oldowner = CurrentResourceOwner;
    volatile uint64 done = 0;
    volatile bool conflict = false;

    BeginInternalSubTransaction(NULL);
    MemoryContextSwitchTo(oldcxt);
    PG_TRY();
    {
        done = hotstock_drain_execute(fast, values, SPI_OK_INSERT);
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

    if (conflict) {
        done = before != NULL ? hotstock_drain_execute(before, values, SPI_OK_UPDATE) : 0;
        done += hotstock_drain_execute(safe, values, SPI_OK_INSERT);
    }
    return done;
}

/* Statement 1: the RESERVE records (order, sku, qty, lsn, time, xid,
 * expires_at).  Returns the rows inserted. */
static uint64
apply_reserves(const Columns *c)
{
    static const Oid elem[7] = {TEXTOID,        TEXTOID, INT4OID,       INT8OID,
                                TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID};
    Oid types[7] = {TEXTARRAYOID,        TEXTARRAYOID, INT4ARRAYOID,       INT8ARRAYOID,
                    TIMESTAMPTZARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID};
#define RESERVE_INSERT                                                                             \
    "INSERT INTO hotstock.ledger "                                                                 \
    "(order_id, sku, qty, lsn, deducted_at, xid, expires_at, hold) "                               \
    "SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5), "                          \
    "NULLIF(unnest($6), 0), unnest($7), 'reserved'"
    SPIPlanPtr fast = hotstock_prepare(&insert_reserve_plan, RESERVE_INSERT, 7, types);
    SPIPlanPtr safe =
        hotstock_prepare(&insert_reserve_safe_plan,
                         RESERVE_INSERT " ON CONFLICT (order_id, sku) DO NOTHING", 7, types);
#undef RESERVE_INSERT
    Datum values[7];

    columns_values(c, elem, 7, values);
    return insert_ledger(fast, NULL, safe, values);
}

/* Statement 2: the CONFIRM, CANCEL and EXPIRE records (order, sku, lsn,
 * time, hold, xid or XID_KEEP) settle their live hold's row.  Returns the
 * rows updated. */
static uint64
apply_hold_settlements(const Columns *c)
{
    static const Oid elem[6] = {TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, TEXTOID, INT8OID};
    Oid types[6] = {TEXTARRAYOID,        TEXTARRAYOID, INT8ARRAYOID,
                    TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
    SPIPlanPtr plan = hotstock_prepare(
        &settle_hold_plan,
        "UPDATE hotstock.ledger AS l "
        "SET hold = u.hold, settle_lsn = u.lsn, settled_at = u.at, "
        "xid = CASE WHEN u.xid < 0 THEN l.xid ELSE NULLIF(u.xid, 0) END "
        "FROM unnest($1, $2, $3, $4, $5, $6) AS u(order_id, sku, lsn, at, hold, xid) "
        "WHERE l.order_id = u.order_id AND l.sku = u.sku AND l.hold = 'reserved'",
        6, types);
    Datum values[6];

    columns_values(c, elem, 6, values);
    return hotstock_drain_execute(plan, values, SPI_OK_UPDATE);
}

/* Statement 3: the DEDUCT records (order, sku, qty, lsn, time, xid), and
 * the retakes among them.  Returns the rows inserted or updated. */
static uint64
apply_deducts(const Columns *c)
{
    static const Oid elem[6] = {TEXTOID, TEXTOID, INT4OID, INT8OID, TIMESTAMPTZOID, INT8OID};
    Oid types[6] = {TEXTARRAYOID, TEXTARRAYOID,        INT4ARRAYOID,
                    INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID};
#define DEDUCT_INSERT                                                                              \
    "INSERT INTO hotstock.ledger "                                                                 \
    "(order_id, sku, qty, lsn, deducted_at, xid) "                                                 \
    "SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5), NULLIF(unnest($6), 0)"
    SPIPlanPtr fast = hotstock_prepare(&insert_deduct_plan, DEDUCT_INSERT, 6, types);
    SPIPlanPtr safe =
        hotstock_prepare(&insert_deduct_safe_plan,
                         DEDUCT_INSERT " ON CONFLICT (order_id, sku) DO NOTHING", 6, types);
#undef DEDUCT_INSERT
    /* A retake: the hold's row is the order's row; it keeps expires_at and
     * the CANCEL or EXPIRE in settle_lsn, and is a sale now. */
    SPIPlanPtr retake = hotstock_prepare(
        &retake_plan,
        "UPDATE hotstock.ledger AS l "
        "SET lsn = u.lsn, deducted_at = u.at, xid = NULLIF(u.xid, 0), hold = 'confirmed' "
        "FROM unnest($1, $2, $3, $4, $5, $6) AS u(order_id, sku, qty, lsn, at, xid) "
        "WHERE l.order_id = u.order_id AND l.sku = u.sku "
        "AND l.hold IN ('cancelled', 'expired')",
        6, types);
    Datum values[6];

    columns_values(c, elem, 6, values);
    return insert_ledger(fast, retake, safe, values);
}

/* Statement 4: the REFUND records (order, sku, lsn, time); their refund
 * requests are done.  Returns the rows updated. */
static uint64
apply_refunds(const Columns *c)
{
    static const Oid elem[4] = {TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID};
    Oid types[4] = {TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID};
    Oid rtypes[1] = {TEXTARRAYOID};
    SPIPlanPtr plan = hotstock_prepare(&refund_ledger_plan,
                                       "UPDATE hotstock.ledger AS l "
                                       "SET refunded_at = coalesce(l.refunded_at, u.at), "
                                       "refund_lsn = u.lsn "
                                       "FROM unnest($1, $2, $3, $4) AS u(order_id, sku, lsn, at) "
                                       "WHERE l.order_id = u.order_id AND l.sku = u.sku "
                                       "AND l.refund_lsn IS NULL",
                                       4, types);
    SPIPlanPtr del = hotstock_prepare(
        &requests_done_plan, "DELETE FROM hotstock.refund_requests WHERE order_id = ANY ($1)", 1,
        rtypes);
    Datum values[4];
    uint64 done;

    columns_values(c, elem, 4, values);
    done = hotstock_drain_execute(plan, values, SPI_OK_UPDATE);
    /* these refunds reached the queue: their requests are done */
    (void)hotstock_drain_execute(del, values, SPI_OK_DELETE);
    return done;
}

/* qsort: SkuDelta pointers by SKU, in byte order. */
static int
sku_delta_cmp(const void *a, const void *b)
{
    return strcmp((*(SkuDelta *const *)a)->sku, (*(SkuDelta *const *)b)->sku);
}

/* Statement 5: each SKU's sums into hotstock.stock, in SKU order (the
 * primary key's leaf pages one after the other, not at random). */
static void
apply_stock(HTAB *skus)
{
    Oid types[6] = {TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
                    INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID};
    static const Oid elem[6] = {TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID};
    SPIPlanPtr plan = hotstock_prepare(&upsert_stock_plan,
                                       "INSERT INTO hotstock.stock AS s "
                                       "(sku, available, reserved, sold, last_lsn, updated_at) "
                                       "SELECT unnest($1), unnest($2), unnest($3), unnest($4), "
                                       "unnest($5), unnest($6) "
                                       "ON CONFLICT (sku) DO UPDATE SET "
                                       "available = s.available + excluded.available, "
                                       "reserved = s.reserved + excluded.reserved, "
                                       "sold = s.sold + excluded.sold, "
                                       "last_lsn = excluded.last_lsn, "
                                       "updated_at = excluded.updated_at",
                                       6, types);
    int ns = (int)hash_get_num_entries(skus);
    HASH_SEQ_STATUS seq;
    SkuDelta *delta;
    SkuDelta **sorted;
    Columns c;
    Datum values[6];
    int k = 0;

    if (ns == 0)
        return;
    sorted = palloc(ns * sizeof(SkuDelta *));
    hash_seq_init(&seq, skus);
    while ((delta = hash_seq_search(&seq)) != NULL)
        sorted[k++] = delta;
    qsort(sorted, ns, sizeof(SkuDelta *), sku_delta_cmp);
    columns_init(&c, 6, ns);
    for (k = 0; k < ns; k++) {
        delta = sorted[k];
        c.col[0][c.n] = CStringGetTextDatum(delta->sku);
        c.col[1][c.n] = Int64GetDatum(delta->available);
        c.col[2][c.n] = Int64GetDatum(delta->reserved);
        c.col[3][c.n] = Int64GetDatum(delta->sold);
        c.col[4][c.n] = Int64GetDatum(delta->last_lsn);
        c.col[5][c.n] = TimestampTzGetDatum(delta->at);
        c.n++;
    }
    columns_values(&c, elem, 6, values);
    (void)hotstock_drain_execute(plan, values, SPI_OK_INSERT);
}

/* Statement 6: the position. */
static void
apply_position(hs_lsn applied)
{
    Oid types[1] = {INT8OID};
    SPIPlanPtr plan = hotstock_prepare(&write_applied_plan,
                                       "UPDATE hotstock.drain_state "
                                       "SET applied_lsn = $1, updated_at = clock_timestamp()",
                                       1, types);
    Datum values[1] = {Int64GetDatum((int64)applied)};

    if (hotstock_drain_execute(plan, values, SPI_OK_UPDATE) != 1)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("hotstock.drain_state must hold exactly one row")));
}

/*
 * Apply records[0..n) and set applied_lsn to the last one's LSN, inside
 * the caller's transaction, allocating in batch_context.  The records are
 * dense and start right after the committed applied_lsn (the caller
 * checked).  *report counts what the caller reports: DEDUCT and RESERVE
 * records of orders already in the ledger, REFUND records of orders
 * missing from it, hold settlements without a live hold's row, and rows
 * written with their xid still to settle.  Raises on a record of an
 * unknown type (nothing of the batch is applied then).
 */
void
hotstock_ledger_apply(const hs_record *records, int n, MemoryContext batch_context,
                      HotstockApplyReport *report)
{
    MemoryContext oldcxt = MemoryContextSwitchTo(batch_context);
    HASHCTL ctl;
    HTAB *skus;
    Columns deducts, reserves, settles, refunds;

    memset(report, 0, sizeof(*report));
    memset(&ctl, 0, sizeof(ctl));
    ctl.keysize = HS_SKU_MAX + 1;
    ctl.entrysize = sizeof(SkuDelta);
    ctl.hcxt = batch_context;
    skus = hash_create("hotstock drain skus", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
    columns_init(&deducts, 6, n);
    columns_init(&reserves, 7, n);
    columns_init(&settles, 6, n);
    columns_init(&refunds, 4, n);

    for (int i = 0; i < n; i++) {
        const hs_record *rec = &records[i];
        TimestampTz at = hotstock_unix_us_to_timestamptz(rec->timestamp_us);
        SkuDelta *delta;
        bool found;
        Columns *c;

        /* an abandoned LSN; a sale's configuration (hs_sale_configure(),
         * hs_sale_pause()) or a buyer's count under its per-buyer limit,
         * which change no counter and no order: nothing to apply but the
         * position */
        if (rec->type == HS_REC_NOOP || rec->type == HS_REC_SALE || rec->type == HS_REC_BUYER)
            continue;

        delta = hash_search(skus, rec->sku, HASH_ENTER, &found);
        if (!found) {
            delta->available = 0;
            delta->reserved = 0;
            delta->sold = 0;
        }
        delta->last_lsn = (int64)rec->lsn;
        delta->at = at;

        switch (rec->type) {
        case HS_REC_DEDUCT:
        case HS_REC_RESERVE:
            delta->available -= rec->qty;
            if (rec->type == HS_REC_DEDUCT)
                delta->sold += rec->qty;
            else
                delta->reserved += rec->qty;
            c = rec->type == HS_REC_DEDUCT ? &deducts : &reserves;
            c->col[0][c->n] = CStringGetTextDatum(rec->order_id);
            c->col[1][c->n] = CStringGetTextDatum(rec->sku);
            c->col[2][c->n] = Int32GetDatum((int32)rec->qty);
            c->col[3][c->n] = Int64GetDatum((int64)rec->lsn);
            c->col[4][c->n] = TimestampTzGetDatum(at);
            /* A deduction or hold of a transaction not known committed yet
             * keeps its xid in the ledger until the drain settles it
             * (settle.c): committed, or compensated. */
            c->col[5][c->n] = Int64GetDatum(unsettled_xid(rec->xid, report));
            if (rec->type == HS_REC_RESERVE)
                c->col[6][c->n] = TimestampTzGetDatum(hotstock_unix_us_to_timestamptz(
                    (rec->timestamp_us / 1000 + rec->ttl_ms) * 1000));
            c->n++;
            break;
        case HS_REC_CONFIRM:
        case HS_REC_CANCEL:
        case HS_REC_EXPIRE: {
            int64 xid = XID_KEEP;

            delta->reserved -= rec->qty;
            if (rec->type == HS_REC_CONFIRM) {
                delta->sold += rec->qty;
                if (rec->xid != 0)
                    xid = unsettled_xid(rec->xid, report);
            } else {
                delta->available += rec->qty;
                if (rec->flags & HS_REC_FLAG_COMPENSATION)
                    xid = 0; /* the compensation of its transaction: settled */
            }
            settles.col[0][settles.n] = CStringGetTextDatum(rec->order_id);
            settles.col[1][settles.n] = CStringGetTextDatum(rec->sku);
            settles.col[2][settles.n] = Int64GetDatum((int64)rec->lsn);
            settles.col[3][settles.n] = TimestampTzGetDatum(at);
            settles.col[4][settles.n] =
                CStringGetTextDatum(rec->type == HS_REC_CONFIRM  ? "confirmed"
                                    : rec->type == HS_REC_CANCEL ? "cancelled"
                                                                 : "expired");
            settles.col[5][settles.n] = Int64GetDatum(xid);
            settles.n++;
            break;
        }
        case HS_REC_REFUND:
            delta->available += rec->qty;
            delta->sold -= rec->qty;
            refunds.col[0][refunds.n] = CStringGetTextDatum(rec->order_id);
            refunds.col[1][refunds.n] = CStringGetTextDatum(rec->sku);
            refunds.col[2][refunds.n] = Int64GetDatum((int64)rec->lsn);
            refunds.col[3][refunds.n] = TimestampTzGetDatum(at);
            refunds.n++;
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
        if (reserves.n > 0)
            report->dup_deducts += (uint64)reserves.n - apply_reserves(&reserves);
        if (settles.n > 0)
            report->missing_holds = (uint64)settles.n - apply_hold_settlements(&settles);
        if (deducts.n > 0)
            report->dup_deducts += (uint64)deducts.n - apply_deducts(&deducts);
        if (refunds.n > 0)
            report->missing_refunds = (uint64)refunds.n - apply_refunds(&refunds);
        apply_stock(skus);
        apply_position(records[n - 1].lsn);
    }
    PG_FINALLY();
    {
        hotstock_writer = HS_WRITER_NONE;
    }
    PG_END_TRY();

    MemoryContextSwitchTo(oldcxt);
}
