/*-------------------------------------------------------------------------
 *
 * guc.c
 *      The extension's GUCs, its error codes, and its process-wide shared state.
 *
 * Owns: the hotstock.* GUC variables (defined here, registered by
 * _PG_init through hotstock_define_gucs()); hotstock_raise(), the one map
 * from a libhotstock result to an SQLSTATE and message (with
 * hotstock_raise_sale() for a sale's refusal, and what a sale answers
 * now: hotstock_sale_state()); hotstock_writer;
 * the pointer to HotstockDrainShared (allocated by module.c's shmem hook).
 *
 * Shares: hotstock_writer is process-local, set only around this
 * extension's own SPI statements (ledger.c, reset in PG_FINALLY).
 * HotstockDrainShared is PostgreSQL shared memory, written by the drain
 * under its spinlock, read by status_info() under it.
 *
 * Must not call the daemon or run SQL: every other file of the extension
 * calls down into this one, and it calls none of them.
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

HotstockWriter hotstock_writer = HS_WRITER_NONE;
HotstockDrainShared *hotstock_drain_shared = NULL;

/*---- GUC variables ----*/

char *hotstock_data_directory = NULL;
bool hotstock_synchronous = true;
int hotstock_drain_batch_size = 100000;
int hotstock_drain_naptime = 100;
char *hotstock_drain_database = NULL;

/*
 * Define the hotstock.* GUCs and reserve the prefix (from _PG_init, while
 * preloading).
 */
void
hotstock_define_gucs(void)
{
    DefineCustomStringVariable("hotstock.data_directory",
                               "Data directory of the hotstockd daemon this server uses.", NULL,
                               &hotstock_data_directory, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);

    DefineCustomBoolVariable(
        "hotstock.synchronous",
        "Wait until a deduction's queue record is on disk before returning true.",
        "Off returns once the record is in the daemon's shared ring: it survives a "
        "process crash, but a power loss may lose the last few milliseconds.",
        &hotstock_synchronous, true, PGC_USERSET, 0, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "hotstock.drain_batch_size", "Most queue records the drain applies in one transaction.",
        NULL, &hotstock_drain_batch_size, 100000, 1, 1000000, PGC_SIGHUP, 0, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "hotstock.drain_naptime", "Time the drain sleeps when it has caught up.", NULL,
        &hotstock_drain_naptime, 100, 1, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

    DefineCustomStringVariable(
        "hotstock.drain_database",
        "Database the drain connects to; CREATE EXTENSION hotstock runs there.", NULL,
        &hotstock_drain_database, "postgres", PGC_POSTMASTER, 0, NULL, NULL, NULL);

    MarkGUCPrefixReserved("hotstock");
}

/*
 * Raise the ERROR that matches a libhotstock result.  `what` is the SKU or
 * order id the call was about (NUL-terminated), or NULL.  Never returns.
 */
void
hotstock_raise(hs_result r, const char *what)
{
    hotstock_raise_hint(r, what, NULL);
}

/*
 * hotstock_raise() with the hint replaced by `hint` (a full sentence) when
 * it is not NULL: for a caller that knows better what to do next (an
 * evicted order cannot be taken anew, a cancel of a deduction wants a
 * refund).
 */
void
hotstock_raise_hint(hs_result r, const char *what, const char *hint)
{
    const char *detail = hs_last_error();
    bool has_detail = detail != NULL && detail[0] != '\0';

#define HINT(text) errhint("%s", hint != NULL ? hint : (text))
    switch (r) {
    case HS_UNKNOWN_SKU:
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("sku \"%s\" does not exist", what ? what : ""),
                        HINT("Create it with hotstock.put_sku().")));
        break;
    case HS_BAD_ARGUMENT:
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid argument for hotstock"),
                 has_detail ? errdetail("%s", detail) : 0, hint ? errhint("%s", hint) : 0));
        break;
    case HS_DAEMON_DOWN:
        ereport(
            ERROR,
            (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN), errmsg("hotstock daemon is not running"),
             has_detail ? errdetail("%s", detail) : 0,
             errhint("Start it with \"hotstockd start -D %s\", or check hotstock.data_directory.",
                     hotstock_data_directory)));
        break;
    case HS_QUEUE_FULL:
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_QUEUE_FULL),
                        errmsg("hotstock queue is full or the order is busy"),
                        has_detail ? errdetail("%s", detail) : 0,
                        HINT("Nothing was changed; retry the call.")));
        break;
    case HS_TABLE_FULL:
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_TABLE_FULL),
                        errmsg("hotstock sku table or order index is full"),
                        has_detail ? errdetail("%s", detail) : 0,
                        HINT("The order index holds the orders in flight and those drained "
                             "less than order_retention ago: check hotstock.status for a "
                             "drain that is behind, or restart hotstockd with a larger "
                             "order_capacity (or sku_capacity).")));
        break;
    case HS_ORDER_MISMATCH:
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_ORDER_MISMATCH),
                        errmsg("order id \"%s\" was taken with another sku, qty or kind",
                               what ? what : ""),
                        errdetail("An order id is one deduction or one reservation, of one sku and "
                                  "qty."),
                        HINT("Use a new order id for a different deduction or reservation.")));
        break;
    case HS_ALREADY_REFUNDED:
        ereport(ERROR,
                (errcode(ERRCODE_HOTSTOCK_ORDER_REFUNDED),
                 errmsg("order id \"%s\" was refunded", what ? what : ""),
                 errdetail("A refunded order cannot be deducted again; this includes a deduction "
                           "undone because its transaction rolled back."),
                 HINT("Use a new order id for a new deduction.")));
        break;
    case HS_HOLD_EXPIRED:
        ereport(ERROR,
                (errcode(ERRCODE_HOTSTOCK_HOLD_EXPIRED), errmsg("reservation expired"),
                 errdetail("The hold of order \"%s\" reached its deadline before it was "
                           "confirmed; its units went back on sale.",
                           what ? what : ""),
                 HINT("hotstock.confirm(order_id, retake => true) takes the units anew while "
                      "they last; or reserve under a new order id.")));
        break;
    case HS_HOLD_CANCELLED:
        ereport(ERROR,
                (errcode(ERRCODE_HOTSTOCK_HOLD_CANCELLED), errmsg("reservation cancelled"),
                 errdetail("The hold of order \"%s\" was cancelled (by hotstock.cancel(), or "
                           "because the transaction that reserved it rolled back); its units "
                           "went back on sale.",
                           what ? what : ""),
                 HINT("hotstock.confirm(order_id, retake => true) takes the units anew while "
                      "they last; or reserve under a new order id.")));
        break;
    case HS_NOT_HELD:
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_NOT_HELD),
                        errmsg("order \"%s\" is not a reservation", what ? what : ""),
                        errdetail("It is a deduction, or a reservation confirmed already."),
                        HINT("Only an order made by hotstock.reserve() can be confirmed or "
                             "cancelled; a deduction is final, hotstock.refund() gives it "
                             "back.")));
        break;
    case HS_HELD:
        hotstock_raise_held(what, hint);
        break;
    case HS_SALE_NOT_OPEN:
    case HS_SALE_CLOSED:
    case HS_SALE_PAUSED:
        hotstock_raise_sale(r, what, NULL);
        break;
    case HS_BUYER_LIMIT:
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_BUYER_LIMIT), errmsg("buyer limit reached"),
                        has_detail ? errdetail("%s; nothing was taken for \"%s\".", detail,
                                               what ? what : "")
                                   : 0,
                        HINT("Each buyer may take at most the per_buyer_limit that "
                             "hotstock.configure_sale() set; a refund or cancel gives units "
                             "back to the buyer's count.")));
        break;
    case HS_VERSION_MISMATCH:
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_VERSION_MISMATCH),
                        errmsg("hotstock daemon segment has an unsupported version"),
                        has_detail ? errdetail("%s", detail) : 0,
                        errhint("Run hotstockd and the hotstock extension from the same build.")));
        break;
    case HS_IO_ERROR:
        ereport(ERROR, (errcode(ERRCODE_IO_ERROR), errmsg("hotstock i/o error"),
                        has_detail ? errdetail("%s", detail) : 0));
        break;
    default:
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("unexpected hotstock result \"%s\"", hs_result_name(r))));
        break;
    }
#undef HINT
    pg_unreachable();
}

/*
 * Raise HS011: order `what` is a live reservation, which a refund cannot
 * give back (hint: NULL for the default, which names cancel and confirm).
 */
void
hotstock_raise_held(const char *what, const char *hint)
{
    ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_HELD),
                    errmsg("order \"%s\" is a live reservation", what ? what : ""),
                    errdetail("A reservation's units are not sold until it is confirmed."),
                    errhint("%s", hint != NULL ? hint
                                               : "Use hotstock.cancel() to give its units back, or "
                                                 "hotstock.confirm() to make it a sale first.")));
    pg_unreachable();
}

/* The host's realtime clock in unix milliseconds: the clock libhotstock
 * reads, at the call, to decide whether a sale is open (one clock for
 * every backend). */
uint64
hotstock_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64)ts.tv_sec * 1000 + (uint64)ts.tv_nsec / 1000000;
}

/*
 * What the sale `sale` (hs_sale_get()) answers a take at unix time now_ms:
 * HS_OK while open, else HS_SALE_PAUSED, HS_SALE_NOT_OPEN (before
 * starts_at_ms) or HS_SALE_CLOSED (at or after ends_at_ms), in
 * libhotstock's order of precedence: paused first.
 */
hs_result
hotstock_sale_state(const hs_sale *sale, uint64 now_ms)
{
    if (sale->paused)
        return HS_SALE_PAUSED;
    if (sale->starts_at_ms != 0 && now_ms < sale->starts_at_ms)
        return HS_SALE_NOT_OPEN;
    if (sale->ends_at_ms != 0 && now_ms >= sale->ends_at_ms)
        return HS_SALE_CLOSED;
    return HS_OK;
}

/*
 * Raise r (HS_SALE_NOT_OPEN: HS013, HS_SALE_CLOSED: HS014, HS_SALE_PAUSED:
 * HS015), the daemon's refusal of a take (deduct, reserve, a basket) that
 * took nothing.  what: the SKU whose sale refused it, and sale its sale as
 * read after the refusal (for the time it opens or closed); or sale NULL
 * and what the order id or basket id.  Never returns.
 */
void
hotstock_raise_sale(hs_result r, const char *what, const hs_sale *sale)
{
    int code = r == HS_SALE_NOT_OPEN ? ERRCODE_HOTSTOCK_SALE_NOT_OPEN
               : r == HS_SALE_CLOSED ? ERRCODE_HOTSTOCK_SALE_CLOSED
                                     : ERRCODE_HOTSTOCK_SALE_PAUSED;
    const char *msg = r == HS_SALE_NOT_OPEN ? "sale not open"
                      : r == HS_SALE_CLOSED ? "sale closed"
                                            : "sale paused";
    const char *hint = r == HS_SALE_NOT_OPEN ? "Call again once the sale is open."
                       : r == HS_SALE_CLOSED ? "hotstock.configure_sale() sets a new window."
                                             : "hotstock.resume() reopens it.";
    char *detail;

    Assert(r == HS_SALE_NOT_OPEN || r == HS_SALE_CLOSED || r == HS_SALE_PAUSED);
    if (sale == NULL)
        detail = psprintf("Nothing was taken for \"%s\".", what ? what : "");
    else if (r == HS_SALE_NOT_OPEN && sale->starts_at_ms != 0)
        detail = psprintf(
            "The sale of sku \"%s\" opens at %s; nothing was taken.", what,
            timestamptz_to_str(hotstock_unix_us_to_timestamptz(sale->starts_at_ms * 1000)));
    else if (r == HS_SALE_CLOSED && sale->ends_at_ms != 0)
        detail =
            psprintf("The sale of sku \"%s\" ended at %s; nothing was taken.", what,
                     timestamptz_to_str(hotstock_unix_us_to_timestamptz(sale->ends_at_ms * 1000)));
    else
        detail = psprintf("The sale of sku \"%s\" is %s; nothing was taken.", what,
                          r == HS_SALE_PAUSED ? "paused" : "not open");
    ereport(ERROR,
            (errcode(code), errmsg("%s", msg), errdetail("%s", detail), errhint("%s", hint)));
    pg_unreachable();
}

/* The drain's last problem, for hotstock_drain_problem() (drain process). */
static char last_problem[256];
static TimestampTz last_problem_at = 0;

/* Log the same problem again at most this often. */
#define DRAIN_LOG_INTERVAL_MS 10000

/*
 * Report a problem: to the server log (the same text at most every
 * DRAIN_LOG_INTERVAL_MS) and to hotstock.status.  The text follows the
 * errmsg style: lower case, no final period.
 */
void
hotstock_drain_problem(int sqlstate, const char *detail, const char *fmt, ...)
{
    char buf[sizeof(last_problem)];
    va_list ap;
    TimestampTz now = GetCurrentTimestamp();

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);

    if (strcmp(buf, last_problem) != 0 ||
        TimestampDifferenceExceeds(last_problem_at, now, DRAIN_LOG_INTERVAL_MS)) {
        ereport(WARNING, (errcode(sqlstate), errmsg_internal("%s", buf),
                          detail && detail[0] ? errdetail_internal("%s", detail) : 0,
                          errhint("The drain retries every %d ms and never skips a record.",
                                  HOTSTOCK_DRAIN_RETRY_MS)));
        strlcpy(last_problem, buf, sizeof(last_problem));
        last_problem_at = now;
    }

    SpinLockAcquire(&hotstock_drain_shared->mutex);
    strlcpy(hotstock_drain_shared->last_error, buf, sizeof(hotstock_drain_shared->last_error));
    SpinLockRelease(&hotstock_drain_shared->mutex);
}

/* Unix microseconds (the queue's timestamps) to timestamptz. */
TimestampTz
hotstock_unix_us_to_timestamptz(uint64 unix_us)
{
    return (TimestampTz)unix_us -
           ((TimestampTz)(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
}
