/*-------------------------------------------------------------------------
 *
 * session.c
 *      This backend's handle on the daemon: attach once, wait for durability.
 *
 * Owns hotstock_backend_client, attached lazily at the first call and kept
 * for the life of the backend (libhotstock re-attaches after a daemon
 * restart and checks on every call that the segment is served; all
 * ordering inside the segment is libhotstock's: shmd/lib/segment.h).
 * Only this backend touches it.
 *
 * Must not keep per-transaction state (xact.c does) or run SQL.
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

/* How long one hs_wait_durable() call may sleep before we look at
 * interrupts (query cancel, statement_timeout, termination). */
#define HS_WAIT_SLICE_MS 100

hs_client *hotstock_backend_client = NULL; /* attached once */
static bool database_checked = false;

/*
 * Refuse to serve from a database other than hotstock.drain_database: the
 * ledger that backs evicted orders lives there only.  Checked once.
 */
void
hotstock_check_database(void)
{
    char *dbname;

    if (likely(database_checked))
        return;
    dbname = get_database_name(MyDatabaseId);
    if (dbname == NULL || strcmp(dbname, hotstock_drain_database) != 0)
        ereport(ERROR,
                (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                 errmsg("hotstock is served in database \"%s\" only", hotstock_drain_database),
                 errdetail("The drain keeps hotstock's tables in that database; this is \"%s\".",
                           dbname ? dbname : "?"),
                 errhint("Connect to database \"%s\", or change hotstock.drain_database.",
                         hotstock_drain_database)));
    database_checked = true;
}

/* Attach once if not attached yet; never raises.  HS_OK or why not. */
hs_result
hotstock_try_attach(void)
{
    hs_result r;

    if (hotstock_backend_client != NULL)
        return HS_OK;
    if (hotstock_data_directory == NULL || hotstock_data_directory[0] == '\0')
        return HS_DAEMON_DOWN;
    r = hs_attach(hotstock_data_directory, &hotstock_backend_client);
    if (r != HS_OK)
        hotstock_backend_client = NULL;
    return r;
}

/*
 * This backend's client handle: attached at the first call, kept for the
 * life of the backend (libhotstock re-attaches after a daemon restart).
 * Raises HS001 while no daemon serves hotstock.data_directory, 55000 in a
 * database other than hotstock.drain_database.
 */
hs_client *
hotstock_client(void)
{
    hs_result r;

    if (likely(hotstock_backend_client != NULL))
        return hotstock_backend_client;
    hotstock_check_database();
    if (hotstock_data_directory == NULL || hotstock_data_directory[0] == '\0')
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                        errmsg("hotstock.data_directory is not set"),
                        errhint("Set hotstock.data_directory to the directory hotstockd serves, "
                                "and restart the server.")));
    r = hotstock_try_attach();
    if (r != HS_OK)
        hotstock_raise(r, NULL);
    return hotstock_backend_client;
}

/* Error context while a caller waits on the durability of its record. */
static void
wait_durable_context(void *arg)
{
    errcontext("while waiting for hotstock record %llu to reach disk",
               (unsigned long long)*(hs_lsn *)arg);
}

/*
 * Block until the record at lsn is fdatasync'ed.  Sleeps in slices of
 * HS_WAIT_SLICE_MS; between slices it honours query cancel and
 * termination when interruptible.  Returns HS_OK, or HS_DAEMON_DOWN when
 * the daemon died or the segment was fenced first.
 */
hs_result
hotstock_wait_durable_core(hs_client *c, hs_lsn lsn, bool interruptible)
{
    hs_status st;
    uint64 generation;

    if (hs_get_status(c, &st) != HS_OK)
        return HS_DAEMON_DOWN;
    generation = st.generation;
    for (;;) {
        hs_result r = hs_wait_durable(c, lsn, HS_WAIT_SLICE_MS);

        if (r == HS_OK)
            return HS_OK;

        /*
         * A timed-out slice and a dead daemon look alike: ask which.  After
         * a daemon restart the new segment's durable_lsn covers every
         * record the old one published (salvaged before it serves), so it
         * still answers for our LSN; if it does not cover it, we stop
         * rather than wait on an LSN the new generation may reuse.
         */
        if (hs_get_status(c, &st) != HS_OK || st.state != HS_SEGMENT_READY)
            return HS_DAEMON_DOWN;
        if (st.durable_lsn >= lsn)
            return HS_OK;
        if (st.generation != generation)
            return HS_DAEMON_DOWN;
        if (interruptible)
            CHECK_FOR_INTERRUPTS();
    }
}

/*
 * hotstock_wait_durable_core() for a SQL call (hotstock.synchronous).  Raises HS001
 * when the daemon dies first: the outcome is then unknown (the record may
 * still reach disk), and the error says how to learn it.
 */
void
hotstock_wait_durable(hs_client *c, hs_lsn lsn)
{
    ErrorContextCallback errcallback;

    errcallback.callback = wait_durable_context;
    errcallback.arg = &lsn;
    errcallback.previous = error_context_stack;
    error_context_stack = &errcallback;

    if (hotstock_wait_durable_core(c, lsn, true) != HS_OK)
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                        errmsg("hotstock daemon stopped before the record reached disk"),
                        errdetail("The outcome is unknown: the record may still become durable."),
                        errhint("An order: retry with the same order id, or call "
                                "hotstock.order_status().  A stock or sale change: read "
                                "hotstock.stock or hotstock.sales, and call again.")));

    error_context_stack = errcallback.previous;
}

/* The last LSN reserved so far when it is not durable yet, else 0 (what
 * a retry waits for: its original record is among them). */
hs_lsn
hotstock_last_undurable_lsn(hs_client *c)
{
    hs_status st;
    hs_result r = hs_get_status(c, &st);

    if (r != HS_OK)
        hotstock_raise(r, NULL);
    return st.next_lsn > 1 && st.durable_lsn < st.next_lsn - 1 ? st.next_lsn - 1 : 0;
}

/* Wait until everything reserved so far is durable. */
void
hotstock_wait_durable_now(hs_client *c)
{
    hs_lsn lsn = hotstock_last_undurable_lsn(c);

    if (lsn != 0)
        hotstock_wait_durable(c, lsn);
}

/*
 * What a database-first refund's hs_refund_evicted() checks against
 * (hotstock.h), read before the ledger row is marked: the daemon's durable
 * LSN.  Any other application of the same mark (the drain's sweep) appends
 * its REFUND after the mark, so above this LSN, and LSNs up to it are never
 * reused; an order refunded and evicted again since shows as an evicted
 * LSN past it.  0 when the daemon cannot say: then the call refuses and the
 * sweep returns the units.
 */
hs_lsn
hotstock_mark_lsn(hs_client *c)
{
    hs_status st;

    return c != NULL && hs_get_status(c, &st) == HS_OK ? st.durable_lsn : 0;
}
