/*-------------------------------------------------------------------------
 *
 * hold.c
 *      The SQL functions of holds (reservations with a time-to-live):
 *      reserve, confirm, cancel.
 *
 * Owns their argument checks and answers; the work is libhotstock's
 * (shmd/lib/hold.c, through session.c's handle), the follow-up at commit
 * or abort xact.c's, the evicted-order look-ups ledger.c's.
 *
 * Shares nothing of its own.  A hold lives in the daemon's order index
 * (RESERVED until confirmed, cancelled or expired: confirm, cancel and the
 * daemon's expiry race only by CAS on the order's state, so exactly one
 * settles it) and, once drained, in hotstock.ledger (hold column).  The
 * daemon never evicts a live hold; a settled one it evicts like any
 * drained order, and then the ledger answers for it.
 *
 * In a transaction block, confirm and cancel claim the hold at the call
 * and settle it at the end of the transaction (xact.c): a confirm at
 * PRE_COMMIT (it may still fail the commit), a cancel after the commit
 * (units go back only once the caller's transaction is durable).  Outside
 * a block they settle at once.  A reserve acts at once, like a deduct, and
 * is cancelled if its transaction (or savepoint) rolls back.
 *
 * A basket of holds (reserve_basket(), basket.c) is n holds, its lines,
 * with one deadline.  confirm and cancel of an id that the index does not
 * know as an order look for a basket of that id and settle it the same
 * way, whole: hs_basket_claim / commit / release / settle in place of
 * hs_hold_* (libhotstock claims every line, in line order, before the
 * deadline, or none; a confirm too late leaves the basket to expire
 * whole).  Its claim is one pending entry under the basket's id (lines
 * set).  A basket is never taken anew (retake): its lines go together.
 *
 * Must not keep state across calls, nor touch the segment but through
 * libhotstock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/int.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "hotstock_ext.h"

/* The hint of HS010 when a cancel meets a deduction or a confirmed hold. */
#define HINT_CANCEL_NOT_HELD                                                                       \
    "Use hotstock.refund() to give back a deduction or a confirmed reservation."
/* ... and when a confirm meets a plain deduction. */
#define HINT_CONFIRM_NOT_HELD "A deduction is a sale already: there is nothing to confirm."

PG_FUNCTION_INFO_V1(hotstock_reserve);
PG_FUNCTION_INFO_V1(hotstock_confirm);
PG_FUNCTION_INFO_V1(hotstock_cancel);

/*
 * Fetch the ttl argument (an interval, a month counted as 30 days) as
 * milliseconds, rounded up: more than 0 and at most 30 days
 * (HS_TTL_MAX_MS), else 22023.
 */
uint32
hotstock_ttl_arg(FunctionCallInfo fcinfo, int argno)
{
    Interval *ttl;
    int64 us = 0;
    bool ok;

    if (PG_ARGISNULL(argno))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("ttl must not be null")));
    ttl = PG_GETARG_INTERVAL_P(argno);
    /* bounded parts first: the sum below cannot overflow then */
    ok = ttl->month >= -12 && ttl->month <= 12 && ttl->day >= -36500 && ttl->day <= 36500 &&
         !pg_add_s64_overflow(
             ttl->time, ((int64)ttl->month * DAYS_PER_MONTH + ttl->day) * USECS_PER_DAY, &us) &&
         us > 0 && us <= (int64)HS_TTL_MAX_MS * 1000;
    if (!ok)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("ttl must be greater than 0 and at most 30 days"),
                        errdetail("ttl is %s.", DatumGetCString(DirectFunctionCall1(
                                                    interval_out, IntervalPGetDatum(ttl))))));
    return (uint32)((us + 999) / 1000);
}

/*
 * A retry found order_id holding (or confirmed, or retaken): it answers
 * true only if the hold (or sale) it repeats stands, i.e. the transaction
 * that made it committed (or had none, or is this very transaction).  While
 * that transaction runs, the retry waits for it; if it did not commit, the
 * hold is compensated here and now (cancelled; a confirmed one refunded)
 * and the retry raises what a retry of a rolled-back order raises.  A hold
 * that ended meanwhile raises HS008 / HS009.  Returns when the retry may
 * answer true.  sku is NULL for a confirm's retry (the order's own).  Also
 * for each line of a basket of holds (basket.c, and confirm of a basket
 * below); errors name `what` (the order id, the basket's id).
 */
void
hotstock_hold_retry_settle(hs_client *c, const char *sku, size_t sku_len, int32 qty,
                           const char *order_id, size_t order_len, const char *what)
{
    for (;;) {
        hs_order_info info;
        TransactionId xid;
        hs_result r = hs_order_lookup(c, order_id, order_len, &info);

        if (r == HS_NOT_FOUND) {
            /* evicted since it was found: the ledger answers, with the
             * xid's fate */
            if (sku != NULL)
                (void)hotstock_take_is_drained_retry(sku, sku_len, qty, order_id, order_len, true);
            return;
        }
        if (r != HS_OK)
            hotstock_raise(r, what);
        switch (info.status) {
        case HS_ORDER_STATUS_REFUNDED:
            hotstock_raise(HS_ALREADY_REFUNDED, what);
            break;
        case HS_ORDER_STATUS_EXPIRED:
            hotstock_raise(HS_HOLD_EXPIRED, what);
            break;
        case HS_ORDER_STATUS_CANCELLED:
            hotstock_raise(HS_HOLD_CANCELLED, what);
            break;
        case HS_ORDER_STATUS_RESERVED:
            break;
        case HS_ORDER_STATUS_DEDUCTED:
            /* confirmed; refunded, and the refund waits for the drain */
            if (hotstock_refund_pending(order_id, order_len))
                hotstock_raise(HS_ALREADY_REFUNDED, what);
            break;
        default:
            return;
        }
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
            int32 got;

            r = hs_compensate(c, order_id, order_len, info.xid, &lsn, &got, NULL);
            if (r == HS_OK && hotstock_synchronous)
                hotstock_wait_durable(c, lsn);
            if (r == HS_OK || r == HS_ALREADY_REFUNDED || r == HS_ORDER_MISMATCH ||
                r == HS_NOT_FOUND) {
                CHECK_FOR_INTERRUPTS();
                continue; /* look again: now cancelled, refunded, or evicted */
            }
            hotstock_raise(r, what);
        }
        }
    }
}

/*
 * hotstock.reserve(sku text, qty integer, order_id text, ttl interval)
 * returns boolean
 *
 * Hold qty units of sku for order_id until now + ttl: true when held now,
 * or before (a retry with the same order id, sku and qty: nothing more is
 * held; also once confirmed); false when fewer than qty are available.
 * The units leave `available` at once, as for a deduct, and come back by
 * themselves at the deadline unless confirm() or cancel() came first.
 * With hotstock.synchronous on, true is returned only once the RESERVE
 * record is on disk.  If the calling transaction (or the subtransaction
 * that ran it) rolls back, the hold is cancelled.
 */
Datum
hotstock_reserve(PG_FUNCTION_ARGS)
{
    const char *sku;
    size_t sku_len;
    const char *order_id;
    size_t order_len;
    const char *buyer;
    size_t buyer_len;
    int32 qty;
    uint32 ttl_ms;
    hs_client *c;
    hs_lsn lsn = 0;
    hs_result r;
    uint64 xid;
    PendingAction *mine;

    hotstock_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    qty = hotstock_qty_arg(fcinfo, 1);
    hotstock_order_id_arg(fcinfo, 2, &order_id, &order_len);
    ttl_ms = hotstock_ttl_arg(fcinfo, 3);
    hotstock_buyer_arg(fcinfo, 4, &buyer, &buyer_len);

    c = hotstock_client();

    /* a hold this transaction confirms or cancels at its end: answer as
     * the index will (our own claim would keep it waiting) */
    mine = hotstock_find_pending(PENDING_HOLD_CLAIM, order_id, order_len);
    if (mine != NULL && mine->lines > 0)
        hotstock_raise(HS_ORDER_MISMATCH, pnstrdup(order_id, order_len)); /* a basket's id */
    if (mine != NULL) {
        hs_order_info info;

        r = hs_order_lookup(c, order_id, order_len, &info);
        if (r != HS_OK)
            hotstock_raise(r, pnstrdup(order_id, order_len));
        if (info.qty != qty || strlen(info.sku) != sku_len || memcmp(info.sku, sku, sku_len) != 0)
            hotstock_raise(HS_ORDER_MISMATCH, pnstrdup(order_id, order_len));
        if (mine->action == HS_HOLD_CANCEL)
            hotstock_raise_hint(HS_HOLD_CANCELLED, pnstrdup(order_id, order_len),
                                "This transaction cancels it: roll back to before "
                                "hotstock.cancel() to keep it.");
        PG_RETURN_BOOL(true); /* a retry of a hold being confirmed */
    }

    xid = hotstock_deduct_xid();

    /* as deduct (api.c): an order id the daemon's filter names may be an
     * evicted, drained one, and the ledger answers for it */
    for (hs_lsn checked = 0;;) {
        r = hs_reserve_for(c, sku, sku_len, qty, order_id, order_len, buyer, buyer_len, xid, ttl_ms,
                           checked, &lsn, NULL);
        if (r != HS_EVICTED_CHANGED)
            break;
        checked = hs_evicted_lsn(c);
        if (hotstock_take_is_drained_retry(sku, sku_len, qty, order_id, order_len, true))
            PG_RETURN_BOOL(true);
        CHECK_FOR_INTERRUPTS();
    }
    switch (r) {
    case HS_OK:
        /* remembered first: a rollback from here on cancels it */
        hotstock_remember(PENDING_RESERVE, order_id, order_len)->xid = xid;
        if (hotstock_synchronous)
            hotstock_wait_durable_take(c, lsn);
        PG_RETURN_BOOL(true);
    case HS_DUPLICATE:
        hotstock_hold_retry_settle(c, sku, sku_len, qty, order_id, order_len,
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

/*
 * confirm of an order the index does not know: evicted after it was
 * drained (or never here).  The ledger answers: a confirmed hold (or a
 * retaken one) true; an expired or cancelled one raises HS008 / HS009 (it
 * cannot be taken anew: the daemon no longer knows it); a deduction
 * HS010; nothing false.  For an evicted basket, line 0 answers (its lines
 * were settled together); errors name `what` (the order id, the basket's
 * id).
 */
static bool
confirm_evicted(hs_client *c, const char *order_id, size_t order_len, const char *what)
{
    LedgerRow rows[HS_LEDGER_ROWS_MAX];
    const char *order_str = what;
    int n;

    if (hs_evicted_lsn(c) == 0)
        return false; /* nothing evicted: never reserved here */
    for (;;) {
        n = hotstock_ledger_lookup(order_id, order_len, rows);
        if (n == 0)
            return false;
        switch (rows[0].hold) {
        case LEDGER_EXPIRED:
            hotstock_raise_hint(HS_HOLD_EXPIRED, order_str, HOTSTOCK_HINT_EVICTED_HOLD);
            break;
        case LEDGER_CANCELLED:
            hotstock_raise_hint(HS_HOLD_CANCELLED, order_str, HOTSTOCK_HINT_EVICTED_HOLD);
            break;
        case LEDGER_NO_HOLD:
            hotstock_raise_hint(HS_NOT_HELD, order_str, HINT_CONFIRM_NOT_HELD);
            break;
        case LEDGER_RESERVED:
            return false; /* a live hold is never evicted: not this order */
        case LEDGER_CONFIRMED:
            break;
        }
        if (rows[0].refunded || hotstock_refund_pending(order_id, order_len))
            hotstock_raise(HS_ALREADY_REFUNDED, order_str);
        if (rows[0].xid != 0) {
            TransactionId xid;

            switch (hotstock_xid_fate(rows[0].xid, &xid)) {
            case HS_FATE_IN_PROGRESS:
                XactLockTableWait(xid, NULL, NULL, XLTW_None);
                CHECK_FOR_INTERRUPTS();
                continue;
            case HS_FATE_ABORTED:
                /* the drain compensates it (settle.c): it is refunded */
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
 * confirm(..., retake => true) of a hold that ended (expired, cancelled):
 * take its units anew, as a deduction (a DEDUCT record carrying xid, undone
 * like one if the transaction rolls back).  True when taken now or before,
 * false when too few are left.
 */
static bool
confirm_retake(hs_client *c, const char *order_id, size_t order_len, uint64 xid)
{
    hs_lsn lsn = 0;
    hs_result r = hs_hold_retake(c, order_id, order_len, xid, hs_evicted_lsn(c), &lsn);

    switch (r) {
    case HS_OK:
        hotstock_remember(PENDING_DEDUCT, order_id, order_len);
        if (hotstock_synchronous)
            hotstock_wait_durable(c, lsn);
        return true;
    case HS_DUPLICATE:
        hotstock_hold_retry_settle(c, NULL, 0, 0, order_id, order_len,
                                   pnstrdup(order_id, order_len));
        if (hotstock_synchronous)
            hotstock_wait_durable_now(c);
        return true;
    case HS_SOLD_OUT:
        return false;
    case HS_NOT_FOUND:
        /* evicted since: no longer possible */
        if (confirm_evicted(c, order_id, order_len, pnstrdup(order_id, order_len)))
            return true;
        hotstock_raise(HS_NOT_FOUND, pnstrdup(order_id, order_len));
        break;
    case HS_NOT_HELD:
        hotstock_raise_hint(r, pnstrdup(order_id, order_len), HINT_CONFIRM_NOT_HELD);
        break;
    default:
        hotstock_raise(r, pnstrdup(order_id, order_len));
        break;
    }
    return false; /* not reached */
}

/*
 * Baskets of holds (reserve_basket(), basket.c) are settled whole: an id
 * the index does not know as an order may name one, and confirm and cancel
 * then act on it exactly as on one hold, through hs_basket_* instead of
 * hs_hold_*.  lines: 0 for an order, else the basket's line count.
 */
static hs_result
hold_claim(hs_client *c, hs_hold_action action, const char *id, size_t id_len, int lines)
{
    return lines > 0 ? hs_basket_claim(c, action, id, id_len)
                     : hs_hold_claim(c, action, id, id_len);
}

static hs_result
hold_settle(hs_client *c, hs_hold_action action, const char *id, size_t id_len, int lines,
            uint64 xid, hs_lsn *lsn)
{
    return lines > 0 ? hs_basket_settle(c, action, id, id_len, xid, lsn)
                     : hs_hold_settle(c, action, id, id_len, xid, lsn);
}

/* The i-th order a settle of id covers into out (HS_ORDER_ID_MAX + 1
 * bytes): the order itself (lines 0, i 0), or line i of the basket. */
static size_t
settled_id(const char *id, size_t id_len, int lines, int i, char *out)
{
    if (lines > 0)
        return hs_basket_line_id(id, id_len, i, lines, out);
    memcpy(out, id, id_len);
    out[id_len] = '\0';
    return id_len;
}

/*
 * An id whose hold the index does not know: the line count of the basket
 * it names (0: none).  Raises for a basket this transaction refunds (line
 * 0 says it: refund() claims every line): HS005 for a confirm, HS010 for a
 * cancel, as for an order refunded in this transaction.
 */
static int
basket_of(hs_client *c, const char *id, size_t id_len, hs_hold_action action)
{
    int lines = hotstock_basket_lines(c, id, id_len);
    char line[HS_ORDER_ID_MAX + 1];
    size_t line_len;

    if (lines == 0)
        return 0;
    line_len = hs_basket_line_id(id, id_len, 0, lines, line);
    if (hotstock_find_pending(PENDING_REFUND_CLAIM, line, line_len) != NULL ||
        hotstock_find_pending(PENDING_REFUND_EVICTED, line, line_len) != NULL) {
        if (action == HS_HOLD_CONFIRM)
            hotstock_raise(HS_ALREADY_REFUNDED, pnstrdup(id, id_len));
        hotstock_raise_hint(HS_NOT_HELD, pnstrdup(id, id_len),
                            "This transaction refunds it already.");
    }
    return lines;
}

/*
 * confirm(basket, retake => true) of a basket whose hold ended (r: expired
 * or cancelled): refused, 0A000.  A basket's lines are taken together
 * only by reserve_basket() or deduct_basket(); taking them anew one line
 * at a time could leave part of the basket sold.
 */
static void
basket_retake_refused(hs_result r, const char *what)
{
    ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                    errmsg("confirm with retake is not supported for a basket"),
                    errdetail("The hold of basket \"%s\" %s; a basket's lines are not taken anew.",
                              what, r == HS_HOLD_EXPIRED ? "expired" : "was cancelled"),
                    errhint("Take the basket again with hotstock.reserve_basket() or "
                            "hotstock.deduct_basket() under a new order id.")));
}

/*
 * hotstock.confirm(order_id text, retake boolean DEFAULT false) returns
 * boolean
 *
 * Make order_id's hold a sale.  True when confirmed now (in a transaction
 * block: claimed now, confirmed at its commit) or before (a retry); false
 * when the order is unknown.  A hold that expired or was cancelled raises
 * HS008 / HS009, or with retake takes its units anew (true; false when
 * fewer are left than it held).  A deduction raises HS010; a confirmed
 * hold refunded since, HS005.  The sale is undone (refunded) if the
 * transaction rolls back after the confirm, as a deduction would be.
 *
 * A basket of holds (reserve_basket()) is confirmed the same way, every
 * line or none (hs_basket_settle(): claimed before the deadline, or the
 * basket expires whole); retake of one that ended raises 0A000, and of one
 * still held (or confirmed) is a plain confirm.
 */
Datum
hotstock_confirm(PG_FUNCTION_ARGS)
{
    const char *order_id;
    size_t order_len;
    char *what;
    bool retake;
    hs_client *c;
    hs_lsn lsn = 0;
    hs_result r;
    uint64 xid;
    bool in_block;
    int lines = 0;
    PendingAction *mine;

    hotstock_order_id_arg(fcinfo, 0, &order_id, &order_len);
    what = pnstrdup(order_id, order_len);
    if (PG_ARGISNULL(1))
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("retake must not be null")));
    retake = PG_GETARG_BOOL(1);
    c = hotstock_client();

    /* refunded in this transaction (a confirmed hold: our own claim would
     * keep the index waiting) */
    if (hotstock_find_pending(PENDING_REFUND_CLAIM, order_id, order_len) != NULL ||
        hotstock_find_pending(PENDING_REFUND_EVICTED, order_id, order_len) != NULL)
        hotstock_raise(HS_ALREADY_REFUNDED, what);
    /* claimed in this transaction already (an order or a basket) */
    mine = hotstock_find_pending(PENDING_HOLD_CLAIM, order_id, order_len);
    if (mine != NULL && mine->action == HS_HOLD_CONFIRM)
        PG_RETURN_BOOL(true);
    if (mine != NULL)
        ereport(ERROR,
                (errcode(ERRCODE_HOTSTOCK_HOLD_CANCELLED), errmsg("reservation cancelled"),
                 errdetail("This transaction cancelled the hold of order \"%s\".", mine->order_id),
                 errhint("Roll back to before hotstock.cancel() to confirm it instead.")));

    xid = hotstock_deduct_xid();
    in_block = IsTransactionBlock();
    /* the order; if the index has no such order, the basket of that id */
    for (;;) {
        if (in_block) {
            r = hold_claim(c, HS_HOLD_CONFIRM, order_id, order_len, lines);
            if (r == HS_OK) {
                mine = hotstock_remember(PENDING_HOLD_CLAIM, order_id, order_len);
                mine->action = HS_HOLD_CONFIRM;
                mine->retake = retake && lines == 0; /* a basket is not taken anew */
                mine->xid = xid;
                mine->lines = lines;
                PG_RETURN_BOOL(true);
            }
        } else {
            r = hold_settle(c, HS_HOLD_CONFIRM, order_id, order_len, lines, xid, &lsn);
            if (r == HS_OK) {
                /* a sale now: a failing statement refunds it (each line) */
                for (int i = 0; i < Max(lines, 1); i++) {
                    char id[HS_ORDER_ID_MAX + 1];
                    size_t id_len = settled_id(order_id, order_len, lines, i, id);

                    hotstock_remember(PENDING_DEDUCT, id, id_len);
                }
                if (hotstock_synchronous)
                    hotstock_wait_durable(c, lsn);
                PG_RETURN_BOOL(true);
            }
        }
        if (r != HS_NOT_FOUND || lines > 0 ||
            (lines = basket_of(c, order_id, order_len, HS_HOLD_CONFIRM)) == 0)
            break;
    }
    switch (r) {
    case HS_DUPLICATE:
        /* confirmed before: true if that confirm stands (every line) */
        for (int i = 0; i < Max(lines, 1); i++) {
            char id[HS_ORDER_ID_MAX + 1];
            size_t id_len = settled_id(order_id, order_len, lines, i, id);

            hotstock_hold_retry_settle(c, NULL, 0, 0, id, id_len, what);
        }
        if (hotstock_synchronous)
            hotstock_wait_durable_now(c);
        PG_RETURN_BOOL(true);
    case HS_HOLD_EXPIRED:
    case HS_HOLD_CANCELLED:
        if (retake && lines > 0)
            basket_retake_refused(r, what);
        if (retake)
            PG_RETURN_BOOL(confirm_retake(c, order_id, order_len, xid));
        hotstock_raise_hint(r, what,
                            lines > 0 ? "Take the basket again with hotstock.reserve_basket() "
                                        "under a new order id."
                                      : NULL);
        break;
    case HS_NOT_HELD:
        hotstock_raise_hint(r, what, HINT_CONFIRM_NOT_HELD);
        break;
    case HS_NOT_FOUND:
        if (lines == 0)
            PG_RETURN_BOOL(confirm_evicted(c, order_id, order_len, what));
        {
            /* an evicted basket (drained, settled): line 0's ledger row
             * answers for it */
            char line[HS_ORDER_ID_MAX + 1];
            size_t line_len = hs_basket_line_id(order_id, order_len, 0, lines, line);
            LedgerRow rows[HS_LEDGER_ROWS_MAX];

            if (retake && hotstock_ledger_lookup(line, line_len, rows) > 0 &&
                (rows[0].hold == LEDGER_EXPIRED || rows[0].hold == LEDGER_CANCELLED))
                basket_retake_refused(
                    rows[0].hold == LEDGER_EXPIRED ? HS_HOLD_EXPIRED : HS_HOLD_CANCELLED, what);
            PG_RETURN_BOOL(confirm_evicted(c, line, line_len, what));
        }
    default:
        hotstock_raise(r, what);
        break;
    }
    PG_RETURN_BOOL(false); /* not reached */
}

/*
 * hotstock.cancel(order_id text) returns boolean
 *
 * Give order_id's hold back: true when this call cancelled it (in a
 * transaction block: claimed now, the units back after its commit; a
 * rollback releases the claim); false when there is nothing to cancel
 * (unknown order, cancelled or expired already, or cancelled earlier in
 * this transaction).  A deduction or a confirmed hold raises HS010: refund
 * it instead.  Outside a transaction block the units are back when it
 * returns, whatever the statement does next.  A basket of holds
 * (reserve_basket()) is cancelled the same way, every line.
 */
Datum
hotstock_cancel(PG_FUNCTION_ARGS)
{
    const char *order_id;
    size_t order_len;
    hs_client *c;
    hs_lsn lsn = 0;
    hs_result r;
    int lines = 0;
    PendingAction *mine;

    hotstock_order_id_arg(fcinfo, 0, &order_id, &order_len);
    c = hotstock_client();

    /* refunded in this transaction: a confirmed hold (as the index says) */
    if (hotstock_find_pending(PENDING_REFUND_CLAIM, order_id, order_len) != NULL ||
        hotstock_find_pending(PENDING_REFUND_EVICTED, order_id, order_len) != NULL)
        hotstock_raise_hint(HS_NOT_HELD, pnstrdup(order_id, order_len),
                            "This transaction refunds it already.");
    /* claimed in this transaction already (an order or a basket) */
    mine = hotstock_find_pending(PENDING_HOLD_CLAIM, order_id, order_len);
    if (mine != NULL && mine->action == HS_HOLD_CANCEL)
        PG_RETURN_BOOL(false);
    if (mine != NULL)
        hotstock_raise_hint(HS_NOT_HELD, mine->order_id,
                            "This transaction confirms it; once that commits, hotstock.refund() "
                            "gives it back.");

    /* the order; if the index has no such order, the basket of that id */
    for (;;) {
        if (IsTransactionBlock()) {
            r = hold_claim(c, HS_HOLD_CANCEL, order_id, order_len, lines);
            if (r == HS_OK) {
                mine = hotstock_remember(PENDING_HOLD_CLAIM, order_id, order_len);
                mine->action = HS_HOLD_CANCEL;
                mine->lines = lines;
                PG_RETURN_BOOL(true);
            }
        } else {
            r = hold_settle(c, HS_HOLD_CANCEL, order_id, order_len, lines, 0, &lsn);
            if (r == HS_OK)
                PG_RETURN_BOOL(true);
        }
        if (r != HS_NOT_FOUND || lines > 0 ||
            (lines = basket_of(c, order_id, order_len, HS_HOLD_CANCEL)) == 0)
            break;
    }
    switch (r) {
    case HS_DUPLICATE:
    case HS_HOLD_CANCELLED:
    case HS_HOLD_EXPIRED:
    case HS_ALREADY_REFUNDED:
    case HS_NOT_FOUND:
        PG_RETURN_BOOL(false);
    case HS_NOT_HELD:
        hotstock_raise_hint(r, pnstrdup(order_id, order_len), HINT_CANCEL_NOT_HELD);
        break;
    default:
        hotstock_raise(r, pnstrdup(order_id, order_len));
        break;
    }
    PG_RETURN_BOOL(false); /* not reached */
}
