/*-------------------------------------------------------------------------
 *
 * sale.c
 *      The SQL functions of sales: configure_sale, pause, resume,
 *      sale_info (behind the view hotstock.sales) and buyer_units.
 *
 * Owns their argument checks and answers; the work is libhotstock's
 * (hs_sale_configure(), hs_sale_pause(), hs_sale_get()).  A SKU's sale is
 * a window [starts_at, ends_at) kept in the daemon's SKU slot in unix
 * milliseconds (0: open on that side), a pause switch, and a per-buyer
 * limit (each buyer's units counted by libhotstock: deduct and reserve
 * name the buyer, HS016 refuses).  libhotstock checks it in every take
 * (deduct, reserve, the baskets) against the host's realtime clock, read
 * by the calling process at the call: one clock for every backend.  A
 * refused take touches no counter and no order slot; the take's function
 * raises HS013 / HS014 / HS015 naming the SKU (guc.c,
 * hotstock_raise_sale()).
 *
 * Shares nothing of its own.  Each change appends a SALE record to the
 * queue (durable like put_sku's: waited for when hotstock.synchronous is
 * on; rebuilt at the daemon's start); the drain passes over it, it changes
 * no counter.  Like put_sku and add_stock, the changes are not
 * transactional: they take effect at once, whatever the caller's
 * transaction does later.
 *
 * Must not keep state across calls, nor touch the segment but through
 * libhotstock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "hotstock_ext.h"

PG_FUNCTION_INFO_V1(hotstock_configure_sale);
PG_FUNCTION_INFO_V1(hotstock_pause);
PG_FUNCTION_INFO_V1(hotstock_resume);
PG_FUNCTION_INFO_V1(hotstock_sale_info);
PG_FUNCTION_INFO_V1(hotstock_buyer_units);

/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define UNIX_TO_PG_EPOCH_US ((int64)(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/*
 * Fetch timestamptz argument argno (named argname) as unix milliseconds,
 * rounded up for a start and down for an end (round_up), so the window in
 * milliseconds lies inside the one given: it never opens before starts_at
 * nor sells at or after ends_at.  NULL gives 0 (open on that side).
 * Infinite values, times not after 1970-01-01 00:00:00+00 (0 means "none"
 * to the daemon) and times past HS_SALE_TIME_MAX_MS raise 22023.
 */
static uint64
time_arg_ms(FunctionCallInfo fcinfo, int argno, const char *argname, bool round_up)
{
    TimestampTz t;
    int64 unix_us;

    if (PG_ARGISNULL(argno))
        return 0;
    t = PG_GETARG_TIMESTAMPTZ(argno);
    if (TIMESTAMP_NOT_FINITE(t))
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s must be finite", argname),
                 errhint("Pass NULL for a sale open on that side.")));
    if (t > (int64)HS_SALE_TIME_MAX_MS * 1000 - UNIX_TO_PG_EPOCH_US - 999)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("%s is too far in the future", argname),
                        errdetail("%s is %s.", argname, timestamptz_to_str(t))));
    unix_us = t + UNIX_TO_PG_EPOCH_US; /* no overflow: checked above */
    if (unix_us <= 0 || (!round_up && unix_us < 1000))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("%s must be later than 1970-01-01 00:00:00+00", argname),
                        errdetail("%s is %s.", argname, timestamptz_to_str(t))));
    return round_up ? (uint64)(unix_us + 999) / 1000 : (uint64)unix_us / 1000;
}

/*
 * hotstock.configure_sale(sku text, starts_at timestamptz DEFAULT NULL,
 * ends_at timestamptz DEFAULT NULL, per_buyer_limit integer DEFAULT NULL)
 * returns void
 *
 * Set sku's sale: deduct, reserve and the baskets take its units only from
 * starts_at (NULL: from now on) until before ends_at (NULL: without end),
 * to the millisecond.  per_buyer_limit (NULL: none, else at least 1) is
 * recorded, not yet enforced.  The pause switch is kept (a paused sale
 * stays paused).  Refunds, confirms, cancels, expiry, stock changes and
 * retries of orders already taken go on at any time.  Raises 22023 for
 * starts_at not before ends_at, an infinite time, a limit below 1; 42704
 * for an unknown sku.  Not transactional.
 */
Datum
hotstock_configure_sale(PG_FUNCTION_ARGS)
{
    const char *sku;
    size_t sku_len;
    uint64 starts_at_ms;
    uint64 ends_at_ms;
    int32 limit = 0;
    hs_client *c;
    hs_lsn lsn = 0;
    hs_result r;

    hotstock_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    starts_at_ms = time_arg_ms(fcinfo, 1, "starts_at", true);
    ends_at_ms = time_arg_ms(fcinfo, 2, "ends_at", false);
    if (starts_at_ms != 0 && ends_at_ms != 0 && starts_at_ms >= ends_at_ms)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("starts_at must be earlier than ends_at"),
                        errdetail("starts_at is %s, ends_at %s (to the millisecond).",
                                  timestamptz_to_str(PG_GETARG_TIMESTAMPTZ(1)),
                                  timestamptz_to_str(PG_GETARG_TIMESTAMPTZ(2)))));
    if (!PG_ARGISNULL(3)) {
        limit = PG_GETARG_INT32(3);
        if (limit < 1)
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("per_buyer_limit must be at least 1"),
                            errdetail("per_buyer_limit is %d.", limit),
                            errhint("Pass NULL for no limit.")));
    }

    c = hotstock_client();
    r = hs_sale_configure(c, sku, sku_len, starts_at_ms, ends_at_ms, limit, &lsn);
    if (r != HS_OK)
        hotstock_raise(r, pnstrdup(sku, sku_len));
    if (hotstock_synchronous && lsn != 0)
        hotstock_wait_durable(c, lsn);
    PG_RETURN_VOID();
}

/* pause() and resume(): set sku's pause switch (argument 0). */
static void
set_paused(FunctionCallInfo fcinfo, bool paused)
{
    const char *sku;
    size_t sku_len;
    hs_client *c;
    hs_lsn lsn = 0;
    hs_result r;

    hotstock_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    c = hotstock_client();
    r = hs_sale_pause(c, sku, sku_len, paused, &lsn);
    if (r != HS_OK)
        hotstock_raise(r, pnstrdup(sku, sku_len));
    if (hotstock_synchronous && lsn != 0)
        hotstock_wait_durable(c, lsn);
}

/*
 * hotstock.pause(sku text) returns void
 * Stop sku's sale now: a take that starts after this returns is refused
 * (HS015) until resume(); the window and the limit are kept.  Settling
 * orders taken before (refund, confirm, cancel) goes on.  Pausing a paused
 * sale changes nothing.  42704 for an unknown sku.  Not transactional.
 */
Datum
hotstock_pause(PG_FUNCTION_ARGS)
{
    set_paused(fcinfo, true);
    PG_RETURN_VOID();
}

/*
 * hotstock.resume(sku text) returns void
 * Lift pause(): sku sells again, within its window.  Resuming a sale that
 * is not paused changes nothing.  42704 for an unknown sku.
 */
Datum
hotstock_resume(PG_FUNCTION_ARGS)
{
    set_paused(fcinfo, false);
    PG_RETURN_VOID();
}

/*
 * hotstock.sale_info(sku text, OUT starts_at timestamptz, OUT ends_at
 * timestamptz, OUT per_buyer_limit integer, OUT paused boolean, OUT state
 * text, OUT configured boolean) returns record
 *
 * sku's sale as the daemon holds it now, behind the view hotstock.sales:
 * NULL for a time or limit that is not set; state 'paused', 'not open',
 * 'closed' or 'open' at the host's clock now (libhotstock's precedence:
 * paused first); configured false for a sale with no window, no limit and
 * no pause (a SKU never configured: always open).  A SKU the daemon does
 * not know gives NULL (the view lists the SKUs of hotstock.stock, which
 * may name one a fresh daemon never had).
 */
Datum
hotstock_sale_info(PG_FUNCTION_ARGS)
{
    TupleDesc tupdesc;
    Datum values[6];
    bool nulls[6];
    const char *sku;
    size_t sku_len;
    hs_sale sale;
    hs_result r;
    const char *state;

    if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("hotstock.sale_info() must return a composite type")));
    tupdesc = BlessTupleDesc(tupdesc);
    if (tupdesc->natts != lengthof(values))
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("hotstock.sale_info() returns %d columns, the library expects %d",
                               tupdesc->natts, (int)lengthof(values)),
                        errhint("Update the extension with ALTER EXTENSION hotstock UPDATE.")));

    hotstock_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    r = hs_sale_get(hotstock_client(), sku, sku_len, &sale);
    if (r == HS_UNKNOWN_SKU)
        PG_RETURN_NULL();
    if (r != HS_OK)
        hotstock_raise(r, pnstrdup(sku, sku_len));

    switch (hotstock_sale_state(&sale, hotstock_now_ms())) {
    case HS_SALE_PAUSED:
        state = "paused";
        break;
    case HS_SALE_NOT_OPEN:
        state = "not open";
        break;
    case HS_SALE_CLOSED:
        state = "closed";
        break;
    default:
        state = "open";
        break;
    }

    memset(nulls, 0, sizeof(nulls));
    values[0] = TimestampTzGetDatum(hotstock_unix_us_to_timestamptz(sale.starts_at_ms * 1000));
    nulls[0] = sale.starts_at_ms == 0;
    values[1] = TimestampTzGetDatum(hotstock_unix_us_to_timestamptz(sale.ends_at_ms * 1000));
    nulls[1] = sale.ends_at_ms == 0;
    values[2] = Int32GetDatum(sale.per_buyer_limit);
    nulls[2] = sale.per_buyer_limit == 0;
    values[3] = BoolGetDatum(sale.paused);
    values[4] = CStringGetTextDatum(state);
    values[5] = BoolGetDatum(sale.starts_at_ms != 0 || sale.ends_at_ms != 0 ||
                             sale.per_buyer_limit != 0 || sale.paused);

    PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * hotstock.buyer_units(sku text, buyer text) returns integer
 *
 * The units buyer holds of sku under its per-buyer limit, as the daemon
 * counts them now: taken by deduct and reserve while the SKU had a limit,
 * less what refunds, cancels, expiries and compensations gave back.  0 for
 * a buyer not counted (or forgotten after the sale ended).  42704 for an
 * unknown sku.
 */
Datum
hotstock_buyer_units(PG_FUNCTION_ARGS)
{
    const char *sku, *buyer;
    size_t sku_len, buyer_len;
    int32_t units = 0;
    hs_result r;

    hotstock_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    hotstock_name_arg(fcinfo, 1, "buyer", &buyer, &buyer_len);
    r = hs_buyer_units(hotstock_client(), sku, sku_len, buyer, buyer_len, &units);
    if (r != HS_OK)
        hotstock_raise(r, pnstrdup(sku, sku_len));
    PG_RETURN_INT32(units);
}
