/*-------------------------------------------------------------------------
 *
 * settle.c
 *      The drain's follow-up between batches: settle drained deductions by
 *      their transaction's fate, and apply committed refunds the queue
 *      never got.
 *
 * Owns three passes, each in transactions of its own, run by the drain
 * worker (drain.c) when it is not busy with a batch:
 *
 *  - hotstock_settle_deductions(): ledger rows whose xid is set (the
 *    deduction's transaction was not known committed when drained):
 *    clear it once committed, compensate once it did not commit.
 *  - hotstock_apply_refund_requests(): rows of hotstock.refund_requests
 *    (refunds committed in their caller's transaction) whose REFUND record
 *    never reached the queue.
 *  - hotstock_apply_ledger_refunds(): ledger rows marked refunded by a
 *    database-first refund of an evicted order whose units never went back.
 *
 * What it shares: the daemon's segment, through libhotstock only (every
 * change there is a CAS on an order's state: at most once, whoever
 * retries); the ledger and the requests, through ledger.c's statements.
 * Every pass may crash anywhere and run again: it repeats a look-up, never
 * a refund.
 *
 * Must not read the queue or write stock and drain_state (drain.c and the
 * batch own those).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "hotstock_ext.h"

/* Settle at most this many rows a pass; wait this long for the
 * compensations' records to be on disk. */
#define SETTLE_LIMIT 1000
#define SETTLE_SYNC_MS 2000

/* Apply committed refunds missing from the queue when older than this, at
 * most REFUND_LIMIT of each kind a pass. */
#define REFUND_GRACE_S 2
#define REFUND_LIMIT 100

static SPIPlanPtr sweep_plan = NULL;

/* Where the next settling pass starts (an LSN of the ledger; 0: the start). */
static hs_lsn settle_cursor = 0;
static SPIPlanPtr unsettled_plan = NULL;
static SPIPlanPtr requests_plan = NULL;
static SPIPlanPtr request_refunded_plan = NULL;

/*
 * Settle the ledger rows whose deduction's transaction was not known to
 * have committed when the drain wrote them (ledger.xid is set).  For each,
 * ask what became of that transaction (fate.c):
 *
 *   committed (or unknown)  settle: clear xid
 *   running, or prepared    leave it; look again on a later pass
 *   aborted, or crashed     compensate, then settle:
 *       - in the daemon's index: hs_compensate() (REFUND record flagged
 *         HS_REC_FLAG_COMPENSATION, then the counter), at most once per
 *         order by the index's CAS; HS_ALREADY_REFUNDED when the
 *         transaction's own undo (or a refund) came first.  The row is
 *         settled only once that record is on disk: a power loss in
 *         between brings the order back DEDUCTED and the next pass
 *         compensates again.
 *       - evicted (drained order_retention ago, or before a restart): database
 *         first, as a refund of an evicted order: mark the row refunded in
 *         this transaction (row lock), and once it committed return the
 *         units with hs_refund_evicted() (at most once per order: the
 *         index, and the evicted LSN read before the mark, which refuses
 *         a second application after the first was evicted again;
 *         hotstock_apply_ledger_refunds() retries it).
 *
 * A crash anywhere repeats a pass, never a compensation: the index (or
 * the row's refunded_at) says it was done.  So the units of a transaction
 * that never committed come back exactly once, whatever killed it.
 */
bool
hotstock_settle_deductions(hs_client *drain_client, int *delay_ms)
{
    typedef struct {
        char order_id[HS_ORDER_ID_MAX + 1];
        char sku[HS_SKU_MAX + 1];
        int32 qty;
        uint64 xid;
        HotstockXidFate fate;
        bool settle; /* clear xid in this pass */
        bool evicted_marked; /* return the units after the commit */
        hs_lsn evicted_checked; /* hotstock_mark_lsn() before the mark */
    } Unsettled;
    Unsettled *rows = NULL;
    int n = 0;
    int left = 0;
    hs_lsn wait_lsn = 0;
    hs_lsn last_lsn = 0;
    bool daemon_problem = false;

    *delay_ms = 0;
    if (!hotstock_drain_begin()) {
        hotstock_drain_finish();
        return true;
    }
    {
        Oid types[2] = {INT4OID, INT8OID};
        Datum values[2] = {Int32GetDatum(SETTLE_LIMIT), Int64GetDatum((int64)settle_cursor)};
        SPIPlanPtr plan = hotstock_prepare(&unsettled_plan,
                                           "SELECT order_id, sku, qty, xid, lsn FROM hotstock.ledger "
                                           "WHERE xid IS NOT NULL AND lsn > $2 ORDER BY lsn LIMIT $1",
                                           2, types);

        if (SPI_execute_plan(plan, values, NULL, true, 0) == SPI_OK_SELECT && SPI_processed > 0) {
            n = (int)SPI_processed;
            rows = MemoryContextAllocZero(TopMemoryContext, n * sizeof(Unsettled));
            for (int i = 0; i < n; i++) {
                HeapTuple tup = SPI_tuptable->vals[i];
                TupleDesc desc = SPI_tuptable->tupdesc;
                bool isnull;

                strlcpy(rows[i].order_id,
                        TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull)),
                        sizeof(rows[i].order_id));
                strlcpy(rows[i].sku, TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull)),
                        sizeof(rows[i].sku));
                rows[i].qty = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
                rows[i].xid = (uint64)DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
                if (i == n - 1)
                    last_lsn = (hs_lsn)DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
            }
        }
    }

    for (int i = 0; i < n; i++) {
        Unsettled *u = &rows[i];
        hs_result r;
        hs_lsn lsn = 0;
        int32 qty;

        u->fate = hotstock_xid_fate(u->xid, NULL);
        if (u->fate == HS_FATE_IN_PROGRESS || u->fate == HS_FATE_MINE) {
            left++;
            continue;
        }
        if (u->fate != HS_FATE_ABORTED) {
            u->settle = true;
            continue;
        }
        if (drain_client == NULL) {
            daemon_problem = true;
            left++;
            continue;
        }
        r = hs_compensate(drain_client, u->order_id, strlen(u->order_id), u->xid, &lsn, &qty,
                          NULL);
        switch (r) {
        case HS_OK:
            ereport(LOG, (errmsg("hotstock drain returned the %d units of order \"%s\": its "
                                 "transaction %llu did not commit",
                                 qty, u->order_id, (unsigned long long)hotstock_xid_full(u->xid))));
            wait_lsn = Max(wait_lsn, lsn);
            u->settle = true;
            break;
        case HS_ALREADY_REFUNDED:
            /* by the transaction's own undo, a refund, or an earlier pass
             * whose record may not be on disk yet: wait for all of them */
            {
                hs_status st;

                if (hs_get_status(drain_client, &st) == HS_OK && st.next_lsn > 1)
                    wait_lsn = Max(wait_lsn, st.next_lsn - 1);
            }
            u->settle = true;
            break;
        case HS_NOT_FOUND:
            /* evicted: database first (settles the row too) */
            u->evicted_checked = hotstock_mark_lsn(drain_client);
            u->evicted_marked = hotstock_ledger_compensate_evicted(u->order_id, u->sku, u->xid);
            break;
        case HS_QUEUE_FULL:
            /* a refund in flight holds it (or the ring is full): next pass */
            left++;
            break;
        case HS_ORDER_MISMATCH:
            /* the index holds a later deduction of this order id, by
             * another transaction: this row's is not in the index any
             * more; leave its units held back rather than guess */
            hotstock_drain_problem(ERRCODE_HOTSTOCK_ORDER_MISMATCH, hs_last_error(),
                          "hotstock drain cannot compensate order \"%s\" of aborted transaction "
                          "%llu: the daemon holds another deduction of it",
                          u->order_id, (unsigned long long)hotstock_xid_full(u->xid));
            u->settle = true;
            break;
        default:
            hotstock_drain_problem(ERRCODE_HOTSTOCK_DAEMON_DOWN, hs_last_error(),
                          "hotstock drain could not compensate order \"%s\" of aborted "
                          "transaction %llu: %s",
                          u->order_id, (unsigned long long)hotstock_xid_full(u->xid), hs_result_name(r));
            daemon_problem = true;
            left++;
            break;
        }
    }

    /* The compensations' records on disk before their rows are settled: a
     * power loss in between brings the order back DEDUCTED with its row
     * still unsettled, and a later pass compensates it again.  Bounded: a
     * silent daemon must not keep the drain from noticing a postmaster
     * death for long. */
    if (wait_lsn != 0 && hs_wait_durable(drain_client, wait_lsn, SETTLE_SYNC_MS) != HS_OK) {
        hotstock_drain_problem(ERRCODE_HOTSTOCK_DAEMON_DOWN, hs_last_error(),
                      "hotstock drain could not sync compensations up to LSN %llu",
                      (unsigned long long)wait_lsn);
        for (int i = 0; i < n; i++)
            if (rows[i].settle && rows[i].fate == HS_FATE_ABORTED) {
                rows[i].settle = false;
                left++;
            }
        daemon_problem = true;
    }

    {
        Datum *d_order = palloc(Max(n, 1) * sizeof(Datum));
        Datum *d_sku = palloc(Max(n, 1) * sizeof(Datum));
        Datum *d_xid = palloc(Max(n, 1) * sizeof(Datum));
        int k = 0;

        for (int i = 0; i < n; i++) {
            if (!rows[i].settle)
                continue;
            d_order[k] = CStringGetTextDatum(rows[i].order_id);
            d_sku[k] = CStringGetTextDatum(rows[i].sku);
            d_xid[k] = Int64GetDatum((int64)rows[i].xid);
            k++;
        }
        if (k > 0)
            hotstock_ledger_settle(hotstock_array(d_order, k, TEXTOID),
                                   hotstock_array(d_sku, k, TEXTOID),
                                   hotstock_array(d_xid, k, INT8OID));
    }
    hotstock_drain_finish();

    /* committed: the evicted ones' units go back now */
    for (int i = 0; i < n; i++) {
        hs_lsn lsn;
        hs_result r;

        if (!rows[i].evicted_marked)
            continue;
        r = drain_client == NULL
                ? HS_DAEMON_DOWN
                : hs_refund_evicted(drain_client, rows[i].sku, strlen(rows[i].sku), rows[i].qty,
                                    rows[i].order_id, strlen(rows[i].order_id),
                                    rows[i].evicted_checked, &lsn);
        if (r == HS_OK)
            ereport(LOG, (errmsg("hotstock drain returned the %d units of evicted order \"%s\": "
                                 "its transaction %llu did not commit",
                                 rows[i].qty, rows[i].order_id, (unsigned long long)hotstock_xid_full(rows[i].xid))));
        else if (r != HS_ALREADY_REFUNDED)
            hotstock_drain_problem(ERRCODE_HOTSTOCK_DAEMON_DOWN, hs_last_error(),
                          "hotstock drain could not return the units of order \"%s\" (marked "
                          "refunded in hotstock.ledger; retried): %s",
                          rows[i].order_id, hs_result_name(r));
    }

    /* A full page goes on after it next time (rows of transactions still
     * running must not hide the ones behind them); a short one starts over. */
    settle_cursor = n == SETTLE_LIMIT ? last_lsn : 0;
    /* Only transactions still running (a long one, a prepared one held
     * for hours): look again, but not 20 times a second. */
    if (daemon_problem || (n > 0 && left == n))
        *delay_ms = HOTSTOCK_DRAIN_RETRY_MS;
    if (rows != NULL)
        pfree(rows);
    return left > 0 || n == SETTLE_LIMIT;
}

/*
 * Apply committed refunds whose REFUND record the queue never got (rows of
 * hotstock.refund_requests older than REFUND_GRACE_S; see the file
 * header).  For each order, hs_refund():
 *   HS_OK                the units are back; the REFUND record, once
 *                        drained, deletes the row
 *   HS_ALREADY_REFUNDED  the record exists: the row goes when it is
 *                        drained, or now if it was drained already
 *   HS_NOT_FOUND         not in the index: evicted since (refund it
 *                        database-first, as hotstock.refund() does), or
 *                        nothing to refund (its DEDUCT was lost with an
 *                        unsynchronized tail): the row goes
 *   anything else        left for the next sweep
 */
void
hotstock_apply_refund_requests(hs_client *drain_client)
{
    typedef struct {
        char order_id[HS_ORDER_ID_MAX + 1];
        bool forget;
        int nmarked; /* ledger rows marked refunded database-first */
        hs_lsn evicted_checked; /* hotstock_mark_lsn() before the mark */
        LedgerRow marked[HS_LEDGER_ROWS_MAX];
    } Request;
    Request *rows = NULL;
    int n = 0;

    if (!hotstock_drain_begin()) {
        hotstock_drain_finish();
        return;
    }
    {
        Oid types[2] = {INT4OID, INT4OID};
        Datum values[2] = {Int32GetDatum(REFUND_GRACE_S), Int32GetDatum(REFUND_LIMIT)};
        SPIPlanPtr plan = hotstock_prepare(
            &requests_plan,
            "SELECT order_id FROM hotstock.refund_requests "
            "WHERE requested_at < clock_timestamp() - make_interval(secs => $1) "
            "ORDER BY requested_at LIMIT $2",
            2, types);

        if (SPI_execute_plan(plan, values, NULL, true, 0) == SPI_OK_SELECT && SPI_processed > 0) {
            n = (int)SPI_processed;
            rows = MemoryContextAllocZero(TopMemoryContext, n * sizeof(Request));
            for (int i = 0; i < n; i++) {
                bool isnull;

                strlcpy(rows[i].order_id,
                        TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[i],
                                                          SPI_tuptable->tupdesc, 1, &isnull)),
                        sizeof(rows[i].order_id));
            }
        }
    }

    for (int i = 0; i < n && drain_client != NULL; i++) {
        Request *q = &rows[i];
        hs_lsn lsn;
        int32 qty;
        hs_result r = hs_refund(drain_client, q->order_id, strlen(q->order_id), &lsn, &qty, NULL);

        if (r == HS_OK) {
            ereport(LOG, (errmsg("hotstock drain returned the %d units of order \"%s\", whose "
                                 "refund committed without reaching the queue",
                                 qty, q->order_id)));
        } else if (r == HS_ALREADY_REFUNDED) {
            /* drained already? then nothing will delete the row but us */
            Oid types[1] = {TEXTOID};
            Datum values[1] = {CStringGetTextDatum(q->order_id)};
            SPIPlanPtr plan = hotstock_prepare(
                &request_refunded_plan,
                "SELECT 1 FROM hotstock.ledger WHERE order_id = $1 AND refund_lsn IS NOT NULL",
                1, types);

            q->forget = SPI_execute_plan(plan, values, NULL, true, 1) == SPI_OK_SELECT &&
                        SPI_processed > 0;
        } else if (r == HS_NOT_FOUND) {
            /* evicted: database first, like hotstock.refund(); its units
             * go back after this commit.  Its request row proves the order
             * was claimed in the index before our look-up, so rows up to an
             * evicted LSN read now are the evicted ones. */
            LedgerRow rows_now[HS_LEDGER_ROWS_MAX];
            int k;

            q->evicted_checked = hotstock_mark_lsn(drain_client);
            q->nmarked = hotstock_ledger_refund(q->order_id, strlen(q->order_id),
                                                hs_evicted_lsn(drain_client), q->marked);
            /* done unless a row is left unrefunded (drained after the
             * segment was built: the index should hold it; look again) */
            k = hotstock_ledger_lookup(q->order_id, strlen(q->order_id), rows_now);
            q->forget = true;
            for (int j = 0; j < k; j++)
                if (!rows_now[j].refunded)
                    q->forget = false;
        } else {
            hotstock_drain_problem(ERRCODE_HOTSTOCK_DAEMON_DOWN, hs_last_error(),
                          "hotstock drain could not apply the committed refund of order \"%s\": %s",
                          q->order_id, hs_result_name(r));
            break;
        }
    }
    {
        Datum *d = palloc(Max(n, 1) * sizeof(Datum));
        int k = 0;

        for (int i = 0; i < n; i++)
            if (rows[i].forget)
                d[k++] = CStringGetTextDatum(rows[i].order_id);
        if (k > 0)
            hotstock_ledger_forget_requests(hotstock_array(d, k, TEXTOID));
    }
    hotstock_drain_finish();

    /* committed: the evicted orders' units go back (retried by the ledger
     * sweep if this fails) */
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < rows[i].nmarked; j++) {
            LedgerRow *m = &rows[i].marked[j];
            hs_lsn lsn;
            hs_result r = hs_refund_evicted(drain_client, m->sku, strlen(m->sku), m->qty,
                                            rows[i].order_id, strlen(rows[i].order_id),
                                            rows[i].evicted_checked, &lsn);

            if (r == HS_OK)
                ereport(LOG, (errmsg("hotstock drain returned the %d units of evicted order "
                                     "\"%s\", whose refund committed without reaching the queue",
                                     m->qty, rows[i].order_id)));
        }
    }
    if (rows != NULL)
        pfree(rows);
}
/*
 * Retry database-first refunds that never reached the queue (see the file
 * header).  Each row found is handed to hs_refund_evicted(), which gives
 * the units back at most once per order; the drain then records the REFUND
 * record's LSN in the ledger like any other.
 */
void
hotstock_apply_ledger_refunds(hs_client *drain_client)
{
    typedef struct {
        char order_id[HS_ORDER_ID_MAX + 1];
        char sku[HS_SKU_MAX + 1];
        int32 qty;
    } Pending;
    Pending *rows = NULL;
    int n = 0;
    /* read before the rows (not marked by us: someone else may have
     * applied a mark already, whose REFUND is not drained yet, so above
     * this): see hs_refund_evicted() */
    hs_lsn checked = drain_client != NULL ? hs_evicted_lsn(drain_client) : 0;

    if (hotstock_drain_begin()) {
        Oid types[2] = {INT4OID, INT4OID};
        SPIPlanPtr plan =
            hotstock_prepare(&sweep_plan,
                             "SELECT order_id, sku, qty FROM hotstock.ledger "
                             "WHERE refunded_at IS NOT NULL AND refund_lsn IS NULL "
                             "AND refunded_at < clock_timestamp() - make_interval(secs => $1) "
                             "LIMIT $2",
                             2, types);
        Datum values[2] = {Int32GetDatum(REFUND_GRACE_S), Int32GetDatum(REFUND_LIMIT)};

        if (SPI_execute_plan(plan, values, NULL, true, 0) == SPI_OK_SELECT && SPI_processed > 0) {
            n = (int)SPI_processed;
            rows = MemoryContextAlloc(TopMemoryContext, n * sizeof(Pending));
            for (int i = 0; i < n; i++) {
                HeapTuple tup = SPI_tuptable->vals[i];
                TupleDesc desc = SPI_tuptable->tupdesc;
                bool isnull;

                strlcpy(rows[i].order_id, TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull)),
                        sizeof(rows[i].order_id));
                strlcpy(rows[i].sku, TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull)),
                        sizeof(rows[i].sku));
                rows[i].qty = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
            }
        }
    }
    hotstock_drain_finish();

    for (int i = 0; i < n; i++) {
        hs_lsn lsn;
        hs_result r = hs_refund_evicted(drain_client, rows[i].sku, strlen(rows[i].sku), rows[i].qty,
                                        rows[i].order_id, strlen(rows[i].order_id), checked, &lsn);

        if (r == HS_EVICTED_CHANGED)
            continue; /* maybe applied meanwhile: the next sweep looks again */
        if (r == HS_OK)
            ereport(LOG, (errmsg("hotstock drain returned the %d units of order \"%s\" refunded in "
                                 "hotstock.ledger",
                                 rows[i].qty, rows[i].order_id)));
        else if (r != HS_ALREADY_REFUNDED)
            hotstock_drain_problem(ERRCODE_HOTSTOCK_DAEMON_DOWN, hs_last_error(),
                          "hotstock drain could not return the units of refunded order \"%s\": %s",
                          rows[i].order_id, hs_result_name(r));
    }
    if (rows != NULL)
        pfree(rows);
}

