/*-------------------------------------------------------------------------
 *
 * basket.c
 *      The SQL functions that take baskets, every line or none:
 *      deduct_basket, and reserve_basket (a basket of holds).
 *
 * Owns their argument checks and answers; the take is libhotstock's
 * (hs_deduct_basket(), hs_reserve_basket(), shmd/lib/basket.c: the
 * basket's SKUs locked together against other buyers, its records one
 * group in the queue against a crash), the follow-up at commit or abort
 * xact.c's, the evicted-basket look-ups ledger.c's.  Both functions are
 * one code path (basket_take()), told apart by one flag.
 *
 * Shares nothing of its own.  A basket B of n lines is n orders in the
 * daemon's index and in hotstock.ledger, line i named B 0x1f "iinn"
 * (hs_basket_line_id()); B itself is no order.  So everything after the
 * take is what a deduct (or a reserve) of each line would get: a rollback
 * undoes each line (one PENDING_DEDUCT entry per line, hs_refund at abort;
 * for a basket of holds one PENDING_RESERVE per line, hs_compensate: each
 * line cancelled), each line's record carries the transaction's xid (the
 * drain compensates a line whose transaction did not commit, after a
 * crash too), a retry settles each line as a deduct (or reserve) retry
 * does (api.c, hold.c), and refund(B) and order_status(B) act on the
 * lines (api.c).  confirm(B) and cancel(B) settle a basket of holds whole
 * (hold.c, hs_basket_settle()).
 *
 * Must not keep state across calls, nor touch the segment but through
 * libhotstock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "hotstock_ext.h"

/* A basket's lines, checked. */
typedef struct BasketLines {
    int n;
    const char *skus[HS_BASKET_MAX];
    size_t sku_lens[HS_BASKET_MAX];
    int32_t qtys[HS_BASKET_MAX];
} BasketLines;

/* field4 of the advisory lock tag that serialises the callers of one
 * basket id: not 1 or 2, the values of pg_advisory_lock()'s keys, so it
 * never meets an application's advisory lock. */
#define BASKET_LOCK_SPACE 0x4853

PG_FUNCTION_INFO_V1(hotstock_deduct_basket);
PG_FUNCTION_INFO_V1(hotstock_reserve_basket);

/*
 * Deconstruct array argument argno (named argname) of element type elemtype:
 * NULL raises 22023, more than one dimension 22023; an empty array gives
 * no elements.  *elems and *nulls are palloc'd.
 */
static int
array_arg(FunctionCallInfo fcinfo, int argno, const char *argname, Oid elemtype, Datum **elems,
          bool **nulls)
{
    ArrayType *a;
    int16 typlen;
    bool typbyval;
    char typalign;
    int n = 0;

    if (PG_ARGISNULL(argno))
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s must not be null", argname)));
    a = PG_GETARG_ARRAYTYPE_P(argno);
    if (ARR_NDIM(a) > 1)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("%s must be a one-dimensional array", argname),
                        errdetail("It has %d dimensions.", ARR_NDIM(a))));
    get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
    deconstruct_array(a, elemtype, typlen, typbyval, typalign, elems, nulls, &n);
    return n;
}

/*
 * Check the lines of a basket (skus, qtys: arguments 1 and 2) into *lines.
 * Raises 22023 for NULL arrays or elements, arrays of more than one
 * dimension or of different lengths, no line, a qty out of 1..HS_QTY_MAX
 * or a SKU named twice; 22001 for a SKU too long; HS012 for more than
 * HS_BASKET_MAX lines.
 */
static void
basket_lines_arg(FunctionCallInfo fcinfo, BasketLines *lines)
{
    Datum *sku_elems;
    Datum *qty_elems;
    bool *sku_nulls;
    bool *qty_nulls;
    int n_skus = array_arg(fcinfo, 1, "skus", TEXTOID, &sku_elems, &sku_nulls);
    int n_qtys = array_arg(fcinfo, 2, "qtys", INT4OID, &qty_elems, &qty_nulls);
    int n = n_skus;

    if (n_skus != n_qtys)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("skus and qtys must have the same length"),
                        errdetail("skus has %d elements, qtys %d.", n_skus, n_qtys)));
    if (n == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("a basket must have at least one line")));
    if (n > HS_BASKET_MAX)
        ereport(ERROR,
                (errcode(ERRCODE_HOTSTOCK_BASKET_TOO_LARGE),
                 errmsg("basket has %d lines, the limit is %d", n, HS_BASKET_MAX),
                 errhint("Split the order into baskets of at most %d lines; each basket is "
                         "taken whole or not at all on its own.",
                         HS_BASKET_MAX)));

    lines->n = n;
    for (int i = 0; i < n; i++) {
        text *t;

        /* positions as SQL counts them, from 1 */
        if (sku_nulls[i])
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("skus[%d] must not be null", i + 1)));
        if (qty_nulls[i])
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("qtys[%d] must not be null", i + 1)));
        t = DatumGetTextPP(sku_elems[i]);
        lines->skus[i] = VARDATA_ANY(t);
        lines->sku_lens[i] = VARSIZE_ANY_EXHDR(t);
        if (lines->sku_lens[i] == 0)
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("skus[%d] must not be empty", i + 1)));
        if (lines->sku_lens[i] > HS_SKU_MAX)
            ereport(ERROR, (errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
                            errmsg("skus[%d] is too long", i + 1),
                            errdetail("It is %zu bytes; the limit is %d bytes.",
                                      lines->sku_lens[i], HS_SKU_MAX)));
        lines->qtys[i] = DatumGetInt32(qty_elems[i]);
        if (lines->qtys[i] < 1 || lines->qtys[i] > HS_QTY_MAX)
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("qtys[%d] must be between 1 and %d", i + 1, HS_QTY_MAX),
                            errdetail("qtys[%d] is %d.", i + 1, lines->qtys[i])));
        for (int j = 0; j < i; j++)
            if (lines->sku_lens[j] == lines->sku_lens[i] &&
                memcmp(lines->skus[j], lines->skus[i], lines->sku_lens[i]) == 0)
                ereport(ERROR,
                        (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                         errmsg("sku \"%s\" is in the basket twice",
                                pnstrdup(lines->skus[i], lines->sku_lens[i])),
                         errdetail("Lines %d and %d name it.", j + 1, i + 1),
                         errhint("Put all its units on one line.")));
    }
}

/*
 * Is order_id known to the daemon (as a line id too): deducted, refunded,
 * pending, or a hold?  A slot of an attempt that failed (sold out) is not.
 */
static bool
order_known(hs_client *c, const char *order_id, size_t order_len)
{
    hs_order_status_code st = HS_ORDER_STATUS_UNKNOWN;
    hs_result r = hs_order_status(c, order_id, order_len, &st, NULL, NULL);

    if (r != HS_OK && r != HS_NOT_FOUND)
        hotstock_raise(r, pnstrdup(order_id, order_len));
    return r == HS_OK && st != HS_ORDER_STATUS_UNKNOWN;
}

/*
 * One basket id names one basket: refuse (HS004) a basket id that is an
 * order of its own, or a basket of another line count (its lines have other
 * ids, so the daemon would take it as a new basket).  Same line count,
 * other lines: the daemon answers HS004 itself.  The callers of one basket
 * id are serialised by a lock held to the end of the caller's transaction,
 * so two of them cannot both pass this check and take two baskets.
 */
static void
basket_check_id(hs_client *c, const char *order_id, size_t order_len, int n)
{
    LOCKTAG tag;
    uint64 key = hash_bytes_extended((const unsigned char *)order_id, (int)order_len, 0);
    const char *other = NULL;

    SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32)(key >> 32), (uint32)key, BASKET_LOCK_SPACE);
    (void)LockAcquire(&tag, ExclusiveLock, false, false);

    if (order_known(c, order_id, order_len))
        other = "It is an order of its own (hotstock.deduct()).";
    for (int k = 1; other == NULL && k <= HS_BASKET_MAX; k++) {
        char line[HS_ORDER_ID_MAX + 1];
        size_t line_len = hs_basket_line_id(order_id, order_len, 0, k, line);

        if (k != n && order_known(c, line, line_len))
            other = psprintf("It is a basket of %d lines.", k);
    }
    if (other == NULL && hs_evicted_lsn(c) > 0) {
        LedgerRow rows[HS_LEDGER_ROWS_MAX];
        int k = hotstock_ledger_basket_lines(order_id, order_len);

        if (hotstock_ledger_lookup(order_id, order_len, rows) > 0)
            other = "It is an order of its own (hotstock.deduct()).";
        else if (k > 0 && k != n)
            other = psprintf("It is a basket of %d lines.", k);
    }
    if (other != NULL)
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_ORDER_MISMATCH),
                        errmsg("order id \"%s\" was taken with another sku, qty or kind",
                               pnstrdup(order_id, order_len)),
                        errdetail("%s", other), errhint("Use a new order id.")));
}

/*
 * A retry found line i (line_len bytes of id in line) taken: it answers
 * only if what it repeats stands, as a retry of a deduct (reserve: of a
 * reserve) does.  Errors name the basket.
 */
static void
line_retry_settle(hs_client *c, const char *order_id, size_t order_len, const BasketLines *lines,
                  int i, const char *line, size_t line_len, bool reserve)
{
    char *what = pnstrdup(order_id, order_len);

    if (reserve)
        hotstock_hold_retry_settle(c, lines->skus[i], lines->sku_lens[i], lines->qtys[i], line,
                                   line_len, what);
    else
        hotstock_deduct_retry_settle(c, lines->skus[i], lines->sku_lens[i], lines->qtys[i], line,
                                     line_len, what);
}

/*
 * hs_deduct_basket() (hs_reserve_basket(): reserve) said
 * HS_EVICTED_CHANGED: line 0 may be an evicted, drained order.  True when
 * the ledger holds this basket, line for line (a retry of a drained
 * basket); false when it does not know line 0 (a new basket: call again).
 * Raises as a deduct (reserve) retry of a drained order does: HS005 when
 * refunded, HS004 when a line differs, HS008/HS009 for an ended hold.
 */
static bool
basket_is_drained_retry(hs_client *c, const char *order_id, size_t order_len,
                        const BasketLines *lines, bool reserve)
{
    for (int i = 0; i < lines->n; i++) {
        char line[HS_ORDER_ID_MAX + 1];
        size_t line_len = hs_basket_line_id(order_id, order_len, i, lines->n, line);
        hs_order_info info;
        hs_result r;

        if (hotstock_take_is_drained_retry(lines->skus[i], lines->sku_lens[i], lines->qtys[i], line,
                                           line_len, reserve))
            continue;
        if (i == 0)
            return false;
        /* line 0 drained, this one not yet (or not here at all): the index
         * answers for it */
        r = hs_order_lookup(c, line, line_len, &info);
        if (r == HS_NOT_FOUND || (r == HS_OK && (info.qty != lines->qtys[i] ||
                                                 strlen(info.sku) != lines->sku_lens[i] ||
                                                 memcmp(info.sku, lines->skus[i],
                                                        lines->sku_lens[i]) != 0)))
            hotstock_raise(HS_ORDER_MISMATCH, pnstrdup(order_id, order_len));
        if (r != HS_OK)
            hotstock_raise(r, pnstrdup(order_id, order_len));
        line_retry_settle(c, order_id, order_len, lines, i, line, line_len, reserve);
    }
    return true;
}

/*
 * reserve_basket() of basket order_id, which this transaction confirms or
 * cancels at its end (claim: its pending entry): answer as the index will
 * (our own claims would keep it waiting).  True for the same lines being
 * confirmed (a retry); HS004 for other lines (or a deduct_basket()), HS009
 * when this transaction cancels it.
 */
static bool
basket_claimed_retry(hs_client *c, const char *order_id, size_t order_len, const BasketLines *lines,
                     const PendingAction *claim, bool reserve)
{
    if (!reserve || claim->lines != lines->n)
        hotstock_raise(HS_ORDER_MISMATCH, pnstrdup(order_id, order_len));
    for (int i = 0; i < lines->n; i++) {
        char line[HS_ORDER_ID_MAX + 1];
        size_t line_len = hs_basket_line_id(order_id, order_len, i, lines->n, line);
        hs_order_info info;
        hs_result r = hs_order_lookup(c, line, line_len, &info);

        if (r != HS_OK)
            hotstock_raise(r, pnstrdup(order_id, order_len));
        if (info.qty != lines->qtys[i] || strlen(info.sku) != lines->sku_lens[i] ||
            memcmp(info.sku, lines->skus[i], lines->sku_lens[i]) != 0)
            hotstock_raise(HS_ORDER_MISMATCH, pnstrdup(order_id, order_len));
    }
    if (claim->action == HS_HOLD_CANCEL)
        hotstock_raise_hint(HS_HOLD_CANCELLED, pnstrdup(order_id, order_len),
                            "This transaction cancels it: roll back to before "
                            "hotstock.cancel() to keep it.");
    return true;
}

/* HS_UNKNOWN_SKU names no SKU: find one of the basket's the daemon does
 * not know, and raise 42704 for it. */
static void
raise_unknown_sku(hs_client *c, const char *order_id, size_t order_len, const BasketLines *lines)
{
    for (int i = 0; i < lines->n; i++) {
        int64 available;

        if (hs_available(c, lines->skus[i], lines->sku_lens[i], &available) == HS_UNKNOWN_SKU)
            hotstock_raise(HS_UNKNOWN_SKU, pnstrdup(lines->skus[i], lines->sku_lens[i]));
    }
    /* created since: name the basket */
    hotstock_raise(HS_UNKNOWN_SKU, pnstrdup(order_id, order_len));
}

/*
 * The daemon refused the basket for a sale that is not open (r:
 * HS_SALE_NOT_OPEN, HS_SALE_CLOSED, HS_SALE_PAUSED) and took nothing:
 * raise r for the first line whose SKU's sale answers r now; if none does
 * (its sale changed since), name the basket.
 */
static void
raise_sale_refusal(hs_client *c, hs_result r, const char *order_id, size_t order_len,
                   const BasketLines *lines)
{
    uint64 now_ms = hotstock_now_ms();

    for (int i = 0; i < lines->n; i++) {
        hs_sale sale;

        if (hs_sale_get(c, lines->skus[i], lines->sku_lens[i], &sale) == HS_OK &&
            hotstock_sale_state(&sale, now_ms) == r)
            hotstock_raise_sale(r, pnstrdup(lines->skus[i], lines->sku_lens[i]), &sale);
    }
    hotstock_raise_sale(r, pnstrdup(order_id, order_len), NULL);
}

/*
 * Take basket order_id (arguments: order_id, skus, qtys, and with reserve
 * ttl): deduct every line, or with reserve hold every line until one
 * deadline.  See the two SQL functions below.
 */
static Datum
basket_take(FunctionCallInfo fcinfo, bool reserve)
{
    const char *order_id;
    size_t order_len;
    const char *buyer;
    size_t buyer_len;
    BasketLines lines;
    uint32 ttl_ms = 0;
    hs_client *c;
    hs_lsn lsn = 0;
    hs_result r;
    uint64 xid;
    PendingAction *claim;

    hotstock_order_id_arg(fcinfo, 0, &order_id, &order_len);
    if (order_len > HS_BASKET_ID_MAX)
        ereport(ERROR, (errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
                        errmsg("basket order_id is too long"),
                        errdetail("It is %zu bytes; the limit for a basket is %d bytes.",
                                  order_len, HS_BASKET_ID_MAX)));
    basket_lines_arg(fcinfo, &lines);
    if (reserve)
        ttl_ms = hotstock_ttl_arg(fcinfo, 3);
    hotstock_buyer_arg(fcinfo, reserve ? 4 : 3, &buyer, &buyer_len);

    c = hotstock_client();
    /* a basket of holds this transaction confirms or cancels at its end */
    claim = hotstock_find_pending(PENDING_HOLD_CLAIM, order_id, order_len);
    if (claim != NULL)
        PG_RETURN_BOOL(basket_claimed_retry(c, order_id, order_len, &lines, claim, reserve));
    basket_check_id(c, order_id, order_len, lines.n);
    xid = hotstock_deduct_xid();

    /* as deduct (api.c): when the daemon's filter names line 0, the basket
     * may be an evicted, drained one, and the ledger answers for it */
    for (hs_lsn checked = 0;;) {
        if (reserve)
            r = hs_reserve_basket_for(c, order_id, order_len, lines.n, lines.skus,
                                      lines.sku_lens, lines.qtys, buyer, buyer_len, xid, ttl_ms,
                                      checked, &lsn, NULL);
        else
            r = hs_deduct_basket_for(c, order_id, order_len, lines.n, lines.skus, lines.sku_lens,
                                     lines.qtys, buyer, buyer_len, xid, checked, &lsn);
        if (r != HS_EVICTED_CHANGED)
            break;
        checked = hs_evicted_lsn(c);
        if (basket_is_drained_retry(c, order_id, order_len, &lines, reserve))
            PG_RETURN_BOOL(true);
        CHECK_FOR_INTERRUPTS();
    }
    switch (r) {
    case HS_OK:
        /* every line remembered first: a rollback from here on gives each
         * back (a hold: cancels each, by the xid its record carries), as
         * for a deduct or a reserve */
        for (int i = 0; i < lines.n; i++) {
            char line[HS_ORDER_ID_MAX + 1];
            size_t line_len = hs_basket_line_id(order_id, order_len, i, lines.n, line);

            hotstock_remember(reserve ? PENDING_RESERVE : PENDING_DEDUCT, line, line_len)->xid =
                xid;
        }
        if (hotstock_synchronous)
            hotstock_wait_durable_take(c, lsn);
        PG_RETURN_BOOL(true);
    case HS_DUPLICATE:
        /* a retry: true only if every line it repeats stands */
        for (int i = 0; i < lines.n; i++) {
            char line[HS_ORDER_ID_MAX + 1];
            size_t line_len = hs_basket_line_id(order_id, order_len, i, lines.n, line);

            line_retry_settle(c, order_id, order_len, &lines, i, line, line_len, reserve);
        }
        if (hotstock_synchronous)
            hotstock_wait_durable_take_now(c);
        PG_RETURN_BOOL(true);
    case HS_SOLD_OUT:
        PG_RETURN_BOOL(false);
    case HS_UNKNOWN_SKU:
        raise_unknown_sku(c, order_id, order_len, &lines);
        break;
    case HS_SALE_NOT_OPEN:
    case HS_SALE_CLOSED:
    case HS_SALE_PAUSED:
        raise_sale_refusal(c, r, order_id, order_len, &lines);
        break;
    default:
        hotstock_raise(r, pnstrdup(order_id, order_len));
        break;
    }
    PG_RETURN_BOOL(false); /* not reached */
}

/*
 * hotstock.deduct_basket(order_id text, skus text[], qtys integer[]
 * [, buyer text]) returns boolean
 *
 * Take qtys[i] units of skus[i] for every line of basket order_id, or
 * nothing.  True when every line was taken now, or had been before (a
 * retry with the same lines: nothing more is taken); false when some line
 * is short (sold out): then no line is taken.  With hotstock.synchronous
 * on, true is returned only once the basket's records are on disk.  If the
 * calling transaction (or the subtransaction that ran it) rolls back, every
 * line is undone and the basket ends refunded.  Errors as deduct's: the
 * lines of SKUs with a per-buyer limit count for buyer, and one over its
 * limit raises HS016 for the whole basket.
 */
Datum
hotstock_deduct_basket(PG_FUNCTION_ARGS)
{
    return basket_take(fcinfo, false);
}

/*
 * hotstock.reserve_basket(order_id text, skus text[], qtys integer[],
 * ttl interval [, buyer text]) returns boolean
 *
 * Hold qtys[i] units of skus[i] for every line of basket order_id until
 * one deadline, now + ttl, or nothing: true when every line is held now,
 * or was before (a retry with the same lines; also once confirmed); false
 * when some line is short: then no line is held.  The units leave
 * `available` at once and every line comes back by itself at the deadline
 * unless confirm(order_id) or cancel(order_id) settled the basket first
 * (hold.c: every line or none).  If the calling transaction (or the
 * subtransaction that ran it) rolls back, every line is cancelled.  ttl as
 * reserve's, the arrays as deduct_basket's; an ended basket raises
 * HS008 / HS009 as reserve does.
 */
Datum
hotstock_reserve_basket(PG_FUNCTION_ARGS)
{
    return basket_take(fcinfo, true);
}
