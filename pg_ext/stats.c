/*-------------------------------------------------------------------------
 *
 * stats.c
 *      The SQL functions of statistics: sku_stats_info (behind the view
 *      hotstock.sku_stats), sku_stats_reset, and hot_skus_info (behind
 *      hotstock.hot_skus).
 *
 * Owns their argument checks and result rows; the counting and the hot
 * SKUs are libhotstock's and the daemon's (hs_sku_stats_next,
 * hs_sku_stats_reset, hs_hot_skus; shmd/lib/segment_stats.h).  The
 * statistics live in the daemon's segment only: a daemon restart starts
 * them from zero, as a crash resets pg_stat counters, and stats_reset
 * then says when.  They are read one counter at a time, not as a
 * consistent cut, and are not transactional: a reset takes effect at
 * once, whatever the caller's transaction does later.
 *
 * Shares nothing of its own.  Must not keep state across calls, nor touch
 * the segment but through libhotstock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "hotstock_ext.h"

PG_FUNCTION_INFO_V1(hotstock_sku_stats_info);
PG_FUNCTION_INFO_V1(hotstock_sku_stats_reset);
PG_FUNCTION_INFO_V1(hotstock_hot_skus_info);

#define SKU_STATS_COLS 9
#define HOT_SKUS_COLS 4

/* Refuse a result type of another shape than this library returns (an
 * extension not updated after the library was). */
static void
check_columns(FunctionCallInfo fcinfo, const char *fn, int want)
{
    ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;

    if (rsinfo->setDesc->natts != want)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("%s returns %d columns, the library expects %d", fn,
                               rsinfo->setDesc->natts, want),
                        errhint("Update the extension with ALTER EXTENSION hotstock UPDATE.")));
}

/*
 * hotstock.sku_stats_info() returns setof (sku, deducts, sold_out_attempts,
 * refunds, reserves, expiries, limit_refusals, last_deduct_at, stats_reset)
 *
 * One row per SKU of the daemon's segment.  Raises HS001 when no daemon
 * runs.
 */
Datum
hotstock_sku_stats_info(PG_FUNCTION_ARGS)
{
    ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
    hs_client *c;
    hs_sku_stats st;
    uint32 cursor = 0;
    hs_result r;

    InitMaterializedSRF(fcinfo, 0);
    check_columns(fcinfo, "hotstock.sku_stats_info()", SKU_STATS_COLS);
    c = hotstock_client();
    while ((r = hs_sku_stats_next(c, &cursor, &st)) == HS_OK) {
        Datum values[SKU_STATS_COLS];
        bool nulls[SKU_STATS_COLS];

        memset(nulls, 0, sizeof(nulls));
        values[0] = CStringGetTextDatum(st.sku);
        values[1] = Int64GetDatum((int64)st.deducts);
        values[2] = Int64GetDatum((int64)st.sold_out_attempts);
        values[3] = Int64GetDatum((int64)st.refunds);
        values[4] = Int64GetDatum((int64)st.reserves);
        values[5] = Int64GetDatum((int64)st.expiries);
        values[6] = Int64GetDatum((int64)st.limit_refusals);
        if (st.last_deduct_unix_us != 0)
            values[7] =
                TimestampTzGetDatum(hotstock_unix_us_to_timestamptz(st.last_deduct_unix_us));
        else
            nulls[7] = true;
        values[8] = TimestampTzGetDatum(hotstock_unix_us_to_timestamptz(st.reset_unix_us));
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    if (r != HS_NOT_FOUND)
        hotstock_raise(r, NULL);
    return (Datum)0;
}

/*
 * hotstock.sku_stats_reset(sku text DEFAULT NULL) returns bigint
 *
 * Zero the statistics of sku (NULL: of every SKU), stamp their
 * stats_reset, return how many SKUs were reset.  Raises 42704 for an
 * unknown sku, 22023 / 22001 for an empty or too long one.  Not
 * transactional.
 */
Datum
hotstock_sku_stats_reset(PG_FUNCTION_ARGS)
{
    const char *sku = NULL;
    size_t sku_len = 0;
    uint64 reset = 0;
    hs_result r;

    if (!PG_ARGISNULL(0))
        hotstock_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    r = hs_sku_stats_reset(hotstock_client(), sku, sku_len, &reset);
    if (r != HS_OK)
        hotstock_raise(r, sku != NULL ? pnstrdup(sku, sku_len) : NULL);
    PG_RETURN_INT64((int64)reset);
}

/*
 * hotstock.hot_skus_info() returns setof (sku, rank, est_attempts_per_s,
 * est_sold_per_s)
 *
 * The daemon's last published top-k, hottest first; no rows when the
 * daemon runs with hot_k = 0 or has not ticked yet.
 */
Datum
hotstock_hot_skus_info(PG_FUNCTION_ARGS)
{
    ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
    hs_hot_sku *hot;
    uint32 n = 0;
    hs_result r;

    InitMaterializedSRF(fcinfo, 0);
    check_columns(fcinfo, "hotstock.hot_skus_info()", HOT_SKUS_COLS);
    hot = palloc(sizeof(hs_hot_sku) * HS_HOT_K_MAX);
    r = hs_hot_skus(hotstock_client(), hot, HS_HOT_K_MAX, &n, NULL);
    if (r != HS_OK)
        hotstock_raise(r, NULL);
    for (uint32 i = 0; i < n; i++) {
        Datum values[HOT_SKUS_COLS];
        bool nulls[HOT_SKUS_COLS];

        memset(nulls, 0, sizeof(nulls));
        values[0] = CStringGetTextDatum(hot[i].sku);
        values[1] = Int32GetDatum((int32)hot[i].rank);
        values[2] = Float8GetDatum(hot[i].attempts_per_s);
        values[3] = Float8GetDatum(hot[i].sold_per_s);
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    pfree(hot);
    return (Datum)0;
}
