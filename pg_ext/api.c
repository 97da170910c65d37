/*-------------------------------------------------------------------------
 *
 * api.c
 *      The SQL-callable API: deduct, refund, available, order_status, put_sku,
 *      add_stock, status_info, the guard trigger; and the argument checks the
 *      hold functions (hold.c) share.
 *
 * Owns the argument checks and the answers of each SQL function; the
 * work is libhotstock's (through session.c), the follow-up at commit or
 * abort xact.c's, the evicted-order paths ledger.c's.
 *
 * Shares nothing of its own.  Orders the daemon evicted from its order
 * index (drained order_retention seconds ago or more: hs_evicted_lsn() >
 * 0) live on only in hotstock.ledger: a deduct of an order id the index
 * does not know and the daemon's filter names consults the ledger (a retry
 * of a drained order answers true), and a refund of such an order goes
 * database-first (mark the ledger row in the caller's transaction, return
 * the units once it commits).
 *
 * Baskets (deduct_basket(), basket.c) are orders of their lines only: line
 * i of an n-line basket B is the order B 0x1f "iinn" (hs_basket_line_id()).
 * refund(B) and order_status(B) of an id that names no order look for a
 * basket B (the index, then the ledger) and act on its lines.  Ids holding
 * 0x1f are the lines' alone: every function here refuses them (22023).
 *
 * Must not keep state across calls, nor touch the segment but through
 * libhotstock.
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

/* How long order_status() waits for a deduction in flight to settle. */
#define HS_PENDING_WAIT_MS 200

PG_FUNCTION_INFO_V1(hotstock_put_sku);
PG_FUNCTION_INFO_V1(hotstock_add_stock);
PG_FUNCTION_INFO_V1(hotstock_deduct);
PG_FUNCTION_INFO_V1(hotstock_refund);
PG_FUNCTION_INFO_V1(hotstock_available);
PG_FUNCTION_INFO_V1(hotstock_order_status);
PG_FUNCTION_INFO_V1(hotstock_status_info);
PG_FUNCTION_INFO_V1(hotstock_guard);

/*
 * Fetch text argument argno (a SKU or an order id: 1..63 bytes) without
 * copying.  NULL or empty raises 22023, too long 22001.
 */
void
hotstock_name_arg(FunctionCallInfo fcinfo, int argno, const char *argname, const char **data,
                  size_t *len)
{
    text *t;
    size_t max = HS_SKU_MAX < HS_ORDER_ID_MAX ? HS_SKU_MAX : HS_ORDER_ID_MAX;

    if (PG_ARGISNULL(argno))
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s must not be null", argname)));
    t = PG_GETARG_TEXT_PP(argno);
    *data = VARDATA_ANY(t);
    *len = VARSIZE_ANY_EXHDR(t);
    if (*len == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("%s must not be empty", argname)));
    if (*len > max)
        ereport(ERROR,
                (errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION), errmsg("%s is too long", argname),
                 errdetail("It is %zu bytes; the limit is %zu bytes.", *len, max)));
}

/*
 * Fetch order id argument argno as hotstock_name_arg() does, and refuse
 * (22023) an id holding the byte 0x1f (HS_BASKET_SEP): such ids name the
 * lines of baskets, which only deduct_basket() makes and only a refund of
 * the whole basket gives back.
 */
void
hotstock_order_id_arg(FunctionCallInfo fcinfo, int argno, const char **data, size_t *len)
{
    hotstock_name_arg(fcinfo, argno, "order_id", data, len);
    if (memchr(*data, HS_BASKET_SEP, *len) != NULL)
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                 errmsg("order_id must not contain the byte 0x1f"),
                 errdetail("Order ids holding 0x1f are reserved for the lines of baskets."),
                 errhint("Use hotstock.refund() or hotstock.order_status() on the basket's own "
                         "id.")));
}

/*
 * Fetch the optional buyer argument argno (absent or NULL: *data NULL,
 * *len 0): 1..HS_BUYER_MAX bytes, else 22023 or 22001.
 */
void
hotstock_buyer_arg(FunctionCallInfo fcinfo, int argno, const char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
        return;
    hotstock_name_arg(fcinfo, argno, "buyer", data, len);
}

/*
 * Raise the error of a take of sku for order_id (deduct, reserve) that
 * libhotstock refused with r: an unknown SKU (named), a sale not open,
 * closed or paused (with when it opens, read now), else hotstock_raise()
 * about the order.  Never returns.
 */
void
hotstock_raise_take(hs_client *c, hs_result r, const char *sku, size_t sku_len,
                    const char *order_id, size_t order_len)
{
    hs_sale sale; /* for the message: when it opens, or closed */

    switch (r) {
    case HS_UNKNOWN_SKU:
        hotstock_raise(r, pnstrdup(sku, sku_len));
        break;
    case HS_SALE_NOT_OPEN:
    case HS_SALE_CLOSED:
    case HS_SALE_PAUSED:
        hotstock_raise_sale(r, pnstrdup(sku, sku_len),
                            hs_sale_get(c, sku, sku_len, &sale) == HS_OK ? &sale : NULL);
        break;
    default:
        hotstock_raise(r, pnstrdup(order_id, order_len));
        break;
    }
    pg_unreachable();
}

/* Fetch the qty argument: 1..HS_QTY_MAX, else 22023. */
int32
hotstock_qty_arg(FunctionCallInfo fcinfo, int argno)
{
    int32 qty;

    if (PG_ARGISNULL(argno))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("qty must not be null")));
    qty = PG_GETARG_INT32(argno);
    if (qty < 1 || qty > HS_QTY_MAX)
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                 errmsg("qty must be between 1 and %d", HS_QTY_MAX), errdetail("qty is %d.", qty)));
    return qty;
}

/*---- SQL functions ----*/

/*
 * hotstock.put_sku(sku text, stock bigint) returns void
 * Create sku, or reset it to `stock` units available.  Not transactional:
 * it takes effect at once, whatever the caller's transaction does later.
 */
Datum
hotstock_put_sku(PG_FUNCTION_ARGS)
{
    const char *sku;
    size_t sku_len;
    int64 stock;
    hs_client *c;
    hs_lsn lsn = 0;
    hs_result r;

    hotstock_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    if (PG_ARGISNULL(1))
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("stock must not be null")));
    stock = PG_GETARG_INT64(1);
    if (stock < 0 || stock > HS_STOCK_MAX)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("stock must be between 0 and " INT64_FORMAT, (int64)HS_STOCK_MAX),
                        errdetail("stock is " INT64_FORMAT ".", stock)));

    c = hotstock_client();
    r = hs_put_sku(c, sku, sku_len, stock, &lsn);
    if (r != HS_OK)
        hotstock_raise(r, pnstrdup(sku, sku_len));
    if (hotstock_synchronous && lsn != 0)
        hotstock_wait_durable(c, lsn);
    PG_RETURN_VOID();
}

/*
 * hotstock.add_stock(sku text, delta bigint) returns bigint
 * Restock (delta > 0) or withdraw (delta < 0; available never goes below
 * zero).  Returns the units available right after.  Not transactional.
 */
Datum
hotstock_add_stock(PG_FUNCTION_ARGS)
{
    const char *sku;
    size_t sku_len;
    int64 delta;
    int64 available = 0;
    hs_client *c;
    hs_lsn lsn = 0;
    hs_result r;

    hotstock_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    if (PG_ARGISNULL(1))
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("delta must not be null")));
    delta = PG_GETARG_INT64(1);
    if (delta < -HS_STOCK_MAX || delta > HS_STOCK_MAX)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("delta must be between -" INT64_FORMAT " and " INT64_FORMAT,
                               (int64)HS_STOCK_MAX, (int64)HS_STOCK_MAX),
                        errdetail("delta is " INT64_FORMAT ".", delta)));

    c = hotstock_client();
    r = hs_add_stock(c, sku, sku_len, delta, &available, &lsn);
    if (r != HS_OK)
        hotstock_raise(r, pnstrdup(sku, sku_len));
    if (hotstock_synchronous && lsn != 0)
        hotstock_wait_durable(c, lsn);
    PG_RETURN_INT64(available);
}

/*
 * Is order_id refunded although the daemon's index says deducted: a refund
 * committed by another transaction, waiting for the drain (the daemon
 * could not take it at its commit)?  This transaction's own refund counts
 * only once it commits.
 */
bool
hotstock_refund_pending(const char *order_id, size_t order_len)
{
    return hotstock_find_pending(PENDING_REFUND_CLAIM, order_id, order_len) == NULL &&
           hotstock_ledger_refund_requested(order_id, order_len);
}

/*
 * A deduct retry found order_id DEDUCTED: the retry answers true only if
 * the deduction it repeats stands, i.e. its transaction committed (or it
 * had none, or it is this very transaction).  While that transaction runs
 * (or is prepared) the retry waits for it, as an UPDATE waits for a row
 * lock.  If it did not commit (rolled back with an undo that failed, or
 * killed before COMMIT), the deduction is compensated here and now, and
 * the retry gets what a retry of a rolled-back order gets: HS005.  Without
 * this a retry after a crash would be told "true" for units the drain is
 * about to hand back.  Returns when the retry may answer true.  Also for
 * each line of a basket's retry (basket.c); errors name `what` (the order
 * id, the basket's id).
 */
void
hotstock_deduct_retry_settle(hs_client *c, const char *sku, size_t sku_len, int32 qty,
                             const char *order_id, size_t order_len, const char *what)
{
    for (;;) {
        hs_order_info info;
        TransactionId xid;
        hs_result r = hs_order_lookup(c, order_id, order_len, &info);

        if (r == HS_NOT_FOUND) {
            /* evicted since it was found (drained, its retention over, or
             * the index 3/4 full): the ledger answers, with the xid's fate */
            (void)hotstock_take_is_drained_retry(sku, sku_len, qty, order_id, order_len, false);
            return;
        }
        if (r != HS_OK)
            hotstock_raise(r, what);
        if (info.status == HS_ORDER_STATUS_REFUNDED)
            hotstock_raise(HS_ALREADY_REFUNDED, what);
        if (info.status != HS_ORDER_STATUS_DEDUCTED)
            return;
        /* refunded, and the refund waits for the drain (daemon down or
         * disk full at its commit) */
        if (hotstock_refund_pending(order_id, order_len))
            hotstock_raise(HS_ALREADY_REFUNDED, what);
        switch (hotstock_xid_fate(info.xid, &xid)) {
        case HS_FATE_NONE:
        case HS_FATE_MINE:
        case HS_FATE_COMMITTED:
        case HS_FATE_UNKNOWN:
            return;
        case HS_FATE_IN_PROGRESS:
            XactLockTableWait(xid, NULL, NULL, XLTW_None);
            CHECK_FOR_INTERRUPTS();
            continue;
        case HS_FATE_ABORTED: {
            hs_lsn lsn = 0;
            int32 qty;

            r = hs_compensate(c, order_id, order_len, info.xid, &lsn, &qty, NULL);
            if (r == HS_OK && hotstock_synchronous)
                hotstock_wait_durable(c, lsn);
            if (r == HS_OK || r == HS_ALREADY_REFUNDED)
                hotstock_raise(HS_ALREADY_REFUNDED, what);
            if (r == HS_ORDER_MISMATCH || r == HS_NOT_FOUND)
                continue; /* deducted anew, or evicted, meanwhile: look again */
            hotstock_raise(r, what);
        }
        }
    }
}

/*
 * hotstock.deduct(sku text, qty integer, order_id text [, buyer text])
 * returns boolean
 *
 * True when qty units were deducted for order_id now, or had been before
 * (a retry with the same order id: nothing more is deducted); false when
 * fewer than qty are available.  With hotstock.synchronous on, true is
 * returned only once the record is on disk.  If the calling transaction
 * (or the subtransaction that ran it) rolls back, the deduction is undone
 * and the order id ends refunded.  A SKU whose sale is not open
 * (configure_sale(), pause(): sale.c) raises HS013 / HS014 / HS015 and
 * nothing is taken; a retry of an order taken before still answers.  A
 * SKU with a per-buyer limit counts the units for `buyer` and raises
 * HS016 when the buyer would pass it (or no buyer is named).
 */
Datum
hotstock_deduct(PG_FUNCTION_ARGS)
{
    const char *sku;
    size_t sku_len;
    const char *order_id;
    size_t order_len;
    const char *buyer;
    size_t buyer_len;
    int32 qty;
    hs_client *c;
    hs_lsn lsn = 0;
    hs_result r;
    uint64 xid;

    hotstock_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    qty = hotstock_qty_arg(fcinfo, 1);
    hotstock_order_id_arg(fcinfo, 2, &order_id, &order_len);
    hotstock_buyer_arg(fcinfo, 3, &buyer, &buyer_len);

    c = hotstock_client();
    /* a hold this transaction claimed: a deduct of a hold's order id is
     * refused (and our own claim would keep the index waiting) */
    if (hotstock_find_pending(PENDING_HOLD_CLAIM, order_id, order_len) != NULL)
        hotstock_raise(HS_ORDER_MISMATCH, pnstrdup(order_id, order_len));
    xid = hotstock_deduct_xid();

    /*
     * An order id the index does not know may be an evicted, drained one:
     * when the daemon's filter says so, hs_deduct_checked() claims nothing
     * and says HS_EVICTED_CHANGED, and the ledger answers for it (a retry
     * of a drained order: true, or HS004/HS005).  Else the claim happens
     * with the ledger checked up to the evicted LSN read before it; a
     * daemon that evicted more since asks again.
     */
    for (hs_lsn checked = 0;;) {
        r = hs_deduct_for(c, sku, sku_len, qty, order_id, order_len, buyer, buyer_len, xid,
                          checked, &lsn);
        if (r != HS_EVICTED_CHANGED)
            break;
        checked = hs_evicted_lsn(c);
        if (hotstock_take_is_drained_retry(sku, sku_len, qty, order_id, order_len, false))
            PG_RETURN_BOOL(true);
        CHECK_FOR_INTERRUPTS();
    }
    switch (r) {
    case HS_OK:

        /*
         * Remember it first: whatever happens from here on (a failed
         * wait raises), a rollback of this transaction gives it back.
         */
        hotstock_remember(PENDING_DEDUCT, order_id, order_len);
        if (hotstock_synchronous)
            hotstock_wait_durable_take(c, lsn);
        PG_RETURN_BOOL(true);
    case HS_DUPLICATE:
        /* a retry: true only if the deduction it repeats stands */
        hotstock_deduct_retry_settle(c, sku, sku_len, qty, order_id, order_len,
                                     pnstrdup(order_id, order_len));
        if (hotstock_synchronous)
            hotstock_wait_durable_take_now(c);
        PG_RETURN_BOOL(true);
    case HS_SOLD_OUT:
        PG_RETURN_BOOL(false);
    default:
        hotstock_raise_take(c, r, sku, sku_len, order_id, order_len);
        break;
    }
    PG_RETURN_BOOL(false); /* not reached */
}

/* What refund_order() found. */
typedef enum RefundAnswer {
    REFUND_DONE,    /* refunded by this call (at commit) */
    REFUND_NOTHING, /* an order with nothing left to refund */
    REFUND_UNKNOWN  /* no such order, in the index or the ledger */
} RefundAnswer;

/* Does the ledger hold an unrefunded row of order_id that a refund gives
 * back (a deduction, a confirmed hold)?  *known: does it hold any row? */
static bool
ledger_has_unrefunded(const char *order_id, size_t order_len, bool *known)
{
    LedgerRow rows[HS_LEDGER_ROWS_MAX];
    int n = hotstock_ledger_lookup(order_id, order_len, rows);

    *known = n > 0;
    for (int i = 0; i < n; i++)
        if (!rows[i].refunded && LEDGER_ROW_SOLD(&rows[i]))
            return true;
    return false;
}

/*
 * Refund one order (an order id of the caller's, or a line of a basket):
 * see hotstock.refund() below.  Raises what the daemon raises; a hold this
 * transaction confirms or cancels raises HS011.  Errors name `what` (the
 * order id, the basket's id).
 */
static RefundAnswer
refund_order(hs_client *c, const char *order_id, size_t order_len, const char *what)
{
    hs_result r;
    LedgerRow rows[HS_LEDGER_ROWS_MAX];
    hs_lsn evicted_lsn;
    hs_lsn mark_lsn = 0;
    bool known = false;
    int n;

    /* refunded in this transaction already: nothing left to refund */
    if (hotstock_find_pending(PENDING_REFUND_CLAIM, order_id, order_len) != NULL ||
        hotstock_find_pending(PENDING_REFUND_EVICTED, order_id, order_len) != NULL)
        return REFUND_NOTHING;
    /* a hold this transaction confirms or cancels (at its end): still a
     * hold now (and our own claim would keep the index waiting) */
    if (hotstock_find_pending(PENDING_HOLD_CLAIM, order_id, order_len) != NULL)
        hotstock_raise_held(what, "This transaction confirms or cancels it at its end: refund a "
                                  "confirmed reservation after that has committed.");

    for (int attempt = 1;; attempt++) {
        /* Read before the claim: an order absent from the index then, with
         * a ledger row at or below this, was evicted before we looked (one
         * read after could be published before its eviction, while the
         * index still holds the order). */
        evicted_lsn = hs_evicted_lsn(c);
        r = hs_refund_claim(c, order_id, order_len);
        if (r == HS_OK) {
            bool recorded = false;

            /* The refund, durable with the caller's commit: the drain
             * applies it if the queue does not get it at commit.  An error
             * here releases the claim; a committed refund already waiting
             * for the drain makes this one a no. */
            PG_TRY();
            {
                recorded = hotstock_ledger_request_refund(order_id, order_len);
            }
            PG_CATCH();
            {
                (void)hs_refund_release(c, order_id, order_len);
                PG_RE_THROW();
            }
            PG_END_TRY();
            if (!recorded) {
                (void)hs_refund_release(c, order_id, order_len);
                return REFUND_NOTHING;
            }
            hotstock_remember(PENDING_REFUND_CLAIM, order_id, order_len);
            return REFUND_DONE;
        }
        if (r == HS_ALREADY_REFUNDED)
            return REFUND_NOTHING;
        if (r != HS_NOT_FOUND)
            hotstock_raise(r, what);
        if (evicted_lsn == 0)
            return REFUND_UNKNOWN; /* never deducted here */

        /* evicted with a refund committed and waiting for the drain (the
         * daemon could not take it, then evicted the order): refunded.  Its
         * request row is committed before its claim is released, so it is
         * visible here whenever the order could be evicted. */
        if (hotstock_refund_pending(order_id, order_len))
            return REFUND_NOTHING;
        /* evicted: database first, units at commit */
        mark_lsn = hotstock_mark_lsn(c);
        n = hotstock_ledger_refund(order_id, order_len, evicted_lsn, rows);
        if (n > 0 || !ledger_has_unrefunded(order_id, order_len, &known))
            break;
        /* An unrefunded ledger row after evicted_lsn: the order was drained
         * after we looked in the index and is still indexed (or is being
         * evicted now, under a larger evicted LSN): look again. */
        if (attempt >= 100)
            ereport(ERROR,
                    (errcode(ERRCODE_INTERNAL_ERROR),
                     errmsg("order \"%s\" has a ledger row after evicted LSN " UINT64_FORMAT
                            " that the daemon's order index does not know",
                            pnstrdup(order_id, order_len), (uint64)evicted_lsn)));
        CHECK_FOR_INTERRUPTS();
    }
    for (int i = 0; i < n; i++) {
        PendingAction *a = hotstock_remember(PENDING_REFUND_EVICTED, order_id, order_len);

        a->evicted_checked = mark_lsn;
        a->sku_len = (uint8)strlen(rows[i].sku);
        memcpy(a->sku, rows[i].sku, a->sku_len + 1);
        a->qty = rows[i].qty;
    }
    if (n > 0)
        return REFUND_DONE;
    return known ? REFUND_NOTHING : REFUND_UNKNOWN;
}

/*
 * The line count of basket order_id (deduct_basket(), reserve_basket()):
 * from the daemon's index, else, once it evicted orders, from the ledger;
 * 0 when it is no basket.  An id longer than a basket id can be is none.
 * Also for confirm and cancel of a basket (hold.c).
 */
int
hotstock_basket_lines(hs_client *c, const char *order_id, size_t order_len)
{
    int n = 0;
    hs_result r;

    if (order_len > HS_BASKET_ID_MAX)
        return 0;
    r = hs_basket_find(c, order_id, order_len, &n);
    if (r == HS_OK)
        return n;
    if (r != HS_NOT_FOUND)
        hotstock_raise(r, pnstrdup(order_id, order_len));
    /* the basket's lines are evicted only once drained: then the ledger
     * has line 0 (read with the latest snapshot) */
    return hs_evicted_lsn(c) > 0 ? hotstock_ledger_basket_lines(order_id, order_len) : 0;
}

/*
 * hotstock.refund(order_id text) returns boolean
 *
 * True when this call refunded the order; false when there is nothing to
 * refund (unknown order id, refunded already, or refunded earlier in this
 * transaction).  The order is claimed now (other refunds of it wait; a
 * deduct retry still answers true), a row of hotstock.refund_requests
 * records the refund in the caller's transaction, and the units go back
 * when that transaction commits -- by the commit callback, or, if the
 * daemon cannot take the record then, by the drain later (exactly once);
 * a rollback releases the claim and the row with it.  An order evicted
 * from the daemon's index is refunded database-first (see the file header).
 *
 * An id that names no order but a basket (deduct_basket()) refunds every
 * line of the basket the same way, each line an order of its own: true
 * when this call refunded them, false when they were refunded before.  A
 * line that fails raises, and the transaction's abort releases the claims
 * on the lines before it: the basket's lines are refunded together or not
 * at all.
 */
Datum
hotstock_refund(PG_FUNCTION_ARGS)
{
    const char *order_id;
    size_t order_len;
    hs_client *c;
    RefundAnswer answer;
    bool any = false;
    int n;

    hotstock_order_id_arg(fcinfo, 0, &order_id, &order_len);
    c = hotstock_client();

    answer = refund_order(c, order_id, order_len, pnstrdup(order_id, order_len));
    if (answer != REFUND_UNKNOWN)
        PG_RETURN_BOOL(answer == REFUND_DONE);

    n = hotstock_basket_lines(c, order_id, order_len);
    for (int i = 0; i < n; i++) {
        char line[HS_ORDER_ID_MAX + 1];
        size_t line_len = hs_basket_line_id(order_id, order_len, i, n, line);

        if (refund_order(c, line, line_len, pnstrdup(order_id, order_len)) == REFUND_DONE)
            any = true;
    }
    PG_RETURN_BOOL(any);
}

/*
 * hotstock.available(sku text) returns bigint
 * Units available right now, from the daemon's shared memory.
 */
Datum
hotstock_available(PG_FUNCTION_ARGS)
{
    const char *sku;
    size_t sku_len;
    int64 available = 0;
    hs_result r;

    hotstock_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    r = hs_available(hotstock_client(), sku, sku_len, &available);
    if (r != HS_OK)
        hotstock_raise(r, pnstrdup(sku, sku_len));
    PG_RETURN_INT64(available);
}

/* What order_status() says of a ledger row of an evicted order. */
static const char *
ledger_row_status(const LedgerRow *row, const char *order_id, size_t order_len)
{
    switch (row->hold) {
    case LEDGER_RESERVED:
        return "reserved";
    case LEDGER_CANCELLED:
        return "cancelled";
    case LEDGER_EXPIRED:
        return "expired";
    case LEDGER_NO_HOLD:
    case LEDGER_CONFIRMED:
        break;
    }
    return row->refunded || hotstock_refund_pending(order_id, order_len) ? "refunded" : "deducted";
}

/*
 * What order_status() says of one order (an order id of the caller's, or a
 * line of a basket); NULL when neither the index nor the ledger knows it.
 */
static const char *
order_status_of(hs_client *c, const char *order_id, size_t order_len)
{
    hs_order_status_code state = HS_ORDER_STATUS_UNKNOWN;
    hs_result r;
    const char *answer = NULL;

    for (int waited = 0;; waited++) {
        r = hs_order_status(c, order_id, order_len, &state, NULL, NULL);
        if (r != HS_OK || state != HS_ORDER_STATUS_PENDING || waited >= HS_PENDING_WAIT_MS)
            break;
        CHECK_FOR_INTERRUPTS();
        pg_usleep(1000L);
    }

    if (r == HS_NOT_FOUND) {
        LedgerRow rows[HS_LEDGER_ROWS_MAX];
        int n = hs_evicted_lsn(c) > 0 ? hotstock_ledger_lookup(order_id, order_len, rows) : 0;

        for (int i = 0; i < n; i++)
            answer = ledger_row_status(&rows[i], order_id, order_len);
        return answer;
    }
    if (r != HS_OK)
        hotstock_raise(r, pnstrdup(order_id, order_len));
    switch (state) {
    case HS_ORDER_STATUS_DEDUCTED:
        return hotstock_refund_pending(order_id, order_len) ? "refunded" : "deducted";
    case HS_ORDER_STATUS_REFUNDED:
        return "refunded";
    case HS_ORDER_STATUS_PENDING:
        return "pending";
    case HS_ORDER_STATUS_RESERVED:
        return "reserved";
    case HS_ORDER_STATUS_EXPIRED:
        return "expired";
    case HS_ORDER_STATUS_CANCELLED:
        return "cancelled";
    default:
        return "unknown";
    }
}

/*
 * hotstock.order_status(order_id text) returns text
 * 'deducted' (also a confirmed reservation), 'refunded', 'reserved',
 * 'expired', 'cancelled' or 'unknown'.  A refund claimed by an open
 * transaction still counts as deducted, a confirm or cancel claimed by one
 * as reserved.  A deduction in flight in another session is waited for
 * briefly; if it has not settled by then the answer is 'pending'.  An id
 * that names no order but a basket answers for the basket: its lines are
 * taken, and refunded, together, so line 0's status is the basket's.
 */
Datum
hotstock_order_status(PG_FUNCTION_ARGS)
{
    const char *order_id;
    size_t order_len;
    hs_client *c;
    const char *answer;
    int n;

    hotstock_order_id_arg(fcinfo, 0, &order_id, &order_len);
    c = hotstock_client();

    answer = order_status_of(c, order_id, order_len);
    if (answer == NULL && (n = hotstock_basket_lines(c, order_id, order_len)) > 0) {
        char line[HS_ORDER_ID_MAX + 1];
        size_t line_len = hs_basket_line_id(order_id, order_len, 0, n, line);

        answer = order_status_of(c, line, line_len);
    }
    PG_RETURN_TEXT_P(cstring_to_text(answer != NULL ? answer : "unknown"));
}

/*
 * hotstock.status_info() returns record
 * The daemon's segment status and the drain's report, behind the
 * hotstock.status view.  Never raises for a stopped daemon: daemon_up is
 * false then and the segment's columns are NULL.
 */
Datum
hotstock_status_info(PG_FUNCTION_ARGS)
{
    TupleDesc tupdesc;
    Datum values[19];
    bool nulls[19];
    hs_status st;
    bool up = false;
    HotstockDrainShared drain;
    int i = 0;

    if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("hotstock.status_info() must return a composite type")));
    tupdesc = BlessTupleDesc(tupdesc);
    if (tupdesc->natts != lengthof(values))
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("hotstock.status_info() returns %d columns, the library expects %d",
                               tupdesc->natts, (int)lengthof(values)),
                        errhint("Update the extension with ALTER EXTENSION hotstock UPDATE.")));

    memset(nulls, 0, sizeof(nulls));

    hotstock_check_database();
    (void)hotstock_try_attach();
    if (hotstock_backend_client != NULL && hs_get_status(hotstock_backend_client, &st) == HS_OK &&
        st.state == HS_SEGMENT_READY)
        up = true;

    SpinLockAcquire(&hotstock_drain_shared->mutex);
    drain = *hotstock_drain_shared;
    SpinLockRelease(&hotstock_drain_shared->mutex);

    values[i++] = BoolGetDatum(up);
#define SEG(expr)                                                                                  \
    do {                                                                                           \
        if (up)                                                                                    \
            values[i] = (expr);                                                                    \
        else                                                                                       \
            nulls[i] = true;                                                                       \
        i++;                                                                                       \
    } while (0)
    SEG(Int32GetDatum(st.daemon_pid));
    SEG(Int64GetDatum((int64)st.generation));
    SEG(Int64GetDatum((int64)(st.next_lsn > 0 ? st.next_lsn - 1 : 0)));
    SEG(Int64GetDatum((int64)st.durable_lsn));
    SEG(Int64GetDatum((int64)st.checkpoint_lsn));
    SEG(Int64GetDatum((int64)st.evicted_lsn));
    SEG(Float8GetDatum(st.ring_capacity ? (double)st.ring_used / st.ring_capacity : 0.0));
    SEG(Float8GetDatum(st.order_capacity ? (double)st.order_count / st.order_capacity : 0.0));
    SEG(Int32GetDatum((int32)st.sku_count));
    SEG(Int32GetDatum((int32)st.order_count));
    SEG(Int64GetDatum((int64)st.heartbeat_age_ms));
#undef SEG
    if (drain.pid != 0)
        values[i] = Int32GetDatum(drain.pid);
    else
        nulls[i] = true;
    i++;
    values[i++] = Int64GetDatum((int64)drain.applied_lsn);
    if (drain.caught_up_at != 0)
        values[i] = TimestampTzGetDatum(drain.caught_up_at);
    else
        nulls[i] = true;
    i++;
    if (drain.last_batch_at != 0)
        values[i] = TimestampTzGetDatum(drain.last_batch_at);
    else
        nulls[i] = true;
    i++;
    values[i++] = Int64GetDatum((int64)drain.records_applied);
    values[i++] = Float8GetDatum(drain.last_rate);
    if (drain.last_error[0] != '\0')
        values[i] = CStringGetTextDatum(drain.last_error);
    else
        nulls[i] = true;
    i++;
    Assert(i == lengthof(values));

    PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * Guard trigger (statement level, BEFORE INSERT/UPDATE/DELETE/TRUNCATE) on
 * the tables only the drain writes.  Allows the write only while this
 * process's hotstock_writer says the extension itself is writing.  With
 * argument 'refund' it also allows UPDATE by the database-first refund.
 */
Datum
hotstock_guard(PG_FUNCTION_ARGS)
{
    TriggerData *td = (TriggerData *)fcinfo->context;
    bool allowed;

    if (!CALLED_AS_TRIGGER(fcinfo))
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("hotstock.guard() must be called as a trigger")));

    /* the refund paths may mark ledger rows ('refund': UPDATE) and record
     * refund requests ('request': INSERT); the drain may write it all */
    allowed = hotstock_writer == HS_WRITER_DRAIN ||
              (hotstock_writer == HS_WRITER_REFUND && td->tg_trigger->tgnargs > 0 &&
               ((TRIGGER_FIRED_BY_UPDATE(td->tg_event) &&
                 strcmp(td->tg_trigger->tgargs[0], "refund") == 0) ||
                (TRIGGER_FIRED_BY_INSERT(td->tg_event) &&
                 strcmp(td->tg_trigger->tgargs[0], "request") == 0)));
    if (!allowed)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("table hotstock.%s is written by the hotstock drain only",
                               RelationGetRelationName(td->tg_relation)),
                        errhint("Use hotstock.put_sku() or hotstock.add_stock() to change stock, "
                                "hotstock.refund() to refund an order.")));
    return PointerGetDatum(NULL);
}
