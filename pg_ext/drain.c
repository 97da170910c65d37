/*-------------------------------------------------------------------------
 *
 * drain.c
 *      The "hotstock drain" background worker: applies the daemon's durable
 *      queue to hotstock.ledger, hotstock.stock and hotstock.drain_state,
 *      exactly once.
 *
 * What it shares, who writes it, which ordering protects it:
 *
 *  - The queue files under hotstock.data_directory: written by hotstockd's
 *    spiller only, read here through libhotstock's queue reader.  Only
 *    records known to be on disk are applied: up to the segment's
 *    durable_lsn while the daemon is up, up to hs_queue_sync()'s bound
 *    while it is down (the drain goes on draining from the files then).
 *
 *  - hotstock.drain_state.applied_lsn: the position, written only here, in
 *    the SAME transaction as the effects of the records up to it.  Each
 *    batch reads it (FOR UPDATE), reads the records after it, and commits
 *    ledger rows + stock deltas + the new position together.  A crash
 *    before that commit loses the whole batch (it is read again from the
 *    files); a crash after it loses nothing, and the next batch starts
 *    after the committed position.  So every record is applied once: none
 *    twice, none skipped.  The LSNs are dense: a record whose LSN is not
 *    the one expected stops the drain (reported, never skipped).
 *
 *  - The segment's applied_lsn (hs_publish_applied): written here only,
 *    after the commit, so the daemon never recycles a file or evicts an
 *    order the tables do not hold yet.  Publishing late is harmless.
 *
 *  - HotstockDrainShared in PostgreSQL shared memory: this process writes
 *    its report there under the spinlock; hotstock.status_info() reads it.
 *
 *  - hotstock_writer = HS_WRITER_DRAIN around the batch's statements (run by
 *    apply.c inside the drain's transaction): the
 *    guard trigger lets only this process write hotstock.stock and
 *    hotstock.drain_state.
 *
 * Each batch is one transaction with a few set-oriented statements (unnest
 * of arrays), whatever its size, run by apply.c: INSERT the RESERVE
 * records, UPDATE the holds their CONFIRM, CANCEL and EXPIRE records
 * settle, INSERT the DEDUCT records, UPDATE the ledger rows of the REFUND
 * records, one INSERT .. ON CONFLICT for the per-SKU sums of all deltas,
 * UPDATE drain_state (only the statements the batch needs).
 *
 * Between batches the drain also applies committed refunds that the queue
 * never received: rows of hotstock.refund_requests (a refund whose
 * hs_refund_commit() failed at its caller's commit, or never ran: daemon
 * down, disk full, a kill between commit and callback, a REFUND record
 * lost with a power loss) through hs_refund(), and ledger rows marked
 * refunded by a database-first refund of an evicted order whose
 * hs_refund_evicted() failed, through hs_refund_evicted().  Both are at
 * most once per order: the daemon's index, and for hs_refund_evicted()
 * the evicted LSN read before the ledger (an order refunded and evicted
 * again since is refused), so a retry cannot refund twice; a request row
 * goes when its REFUND record is drained.  And it
 * settles deductions by their transaction's fate (settle.c runs both).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/resowner.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "hotstock_ext.h"

/* drain_once() result when the loop should back off */
#define DRAIN_BACK_OFF (-1)

/*---- local state (this process only) ----*/

static hs_client *drain_client = NULL; /* NULL while the daemon is down */
static hs_queue_reader *reader = NULL;
static hs_lsn reader_next = 0;   /* LSN the open reader returns next */
static hs_lsn known_applied = 0; /* last applied_lsn committed */
static bool known_applied_valid = false;
static hs_record *records = NULL; /* one batch */
static int records_size = 0;
static MemoryContext batch_context = NULL;
static TimestampTz last_sweep_at = 0;

static SPIPlanPtr read_applied_plan = NULL;

/* Ledger rows may wait to be settled (settle.c): at start, after a batch
 * wrote some, and while a pass leaves some behind. */
static bool settle_due = true;
static TimestampTz last_settle_at = 0;

static int drain_once(void);

/*
 * Register the worker (from _PG_init, while preloading).
 */
void
hotstock_drain_register(void)
{
    BackgroundWorker worker;

    memset(&worker, 0, sizeof(worker));
    worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
    worker.bgw_restart_time = 1;
    strlcpy(worker.bgw_library_name, "hotstock", BGW_MAXLEN);
    strlcpy(worker.bgw_function_name, "hotstock_drain_main", BGW_MAXLEN);
    strlcpy(worker.bgw_name, "hotstock drain", BGW_MAXLEN);
    strlcpy(worker.bgw_type, "hotstock drain", BGW_MAXLEN);
    worker.bgw_main_arg = (Datum)0;
    worker.bgw_notify_pid = 0;
    RegisterBackgroundWorker(&worker);
}

/* Close the reader; the next batch reopens it at its position. */
static void
drain_close_reader(void)
{
    if (reader != NULL)
        hs_queue_close(reader);
    reader = NULL;
    reader_next = 0;
}

/* At exit: say so in shared memory, let go of the files and the segment. */
static void
drain_exit(int code, Datum arg)
{
    drain_close_reader();
    if (drain_client != NULL)
        hs_detach(drain_client);
    drain_client = NULL;
    SpinLockAcquire(&hotstock_drain_shared->mutex);
    hotstock_drain_shared->pid = 0;
    SpinLockRelease(&hotstock_drain_shared->mutex);
}

/*
 * Entry point of the worker.  Signals: SIGHUP rereads the configuration;
 * SIGTERM ends the worker at the next CHECK_FOR_INTERRUPTS (die()), which
 * also interrupts a running batch: its transaction rolls back and the
 * next start reads it again.
 */
void
hotstock_drain_main(Datum main_arg)
{
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();

    /* the xid counter this server start began with, first of all: exact
     * while pg_control holds the checkpoint written as the start began
     * (starts.c) */
    (void)hotstock_starts_take_next_xid();

    BackgroundWorkerInitializeConnection(hotstock_drain_database, NULL, 0);
    pgstat_report_appname("hotstock drain");
    /* every name in our statements resolves in pg_catalog or is qualified */
    SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
    /* a position published to the daemon must be durable here first */
    SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

    batch_context =
        AllocSetContextCreate(TopMemoryContext, "hotstock drain batch", ALLOCSET_DEFAULT_SIZES);

    SpinLockAcquire(&hotstock_drain_shared->mutex);
    hotstock_drain_shared->pid = MyProcPid;
    hotstock_drain_shared->records_applied = 0;
    hotstock_drain_shared->last_error[0] = '\0';
    SpinLockRelease(&hotstock_drain_shared->mutex);
    before_shmem_exit(drain_exit, (Datum)0);

    ereport(LOG, (errmsg("hotstock drain started in database \"%s\" for data directory \"%s\"",
                         hotstock_drain_database, hotstock_data_directory)));

    for (;;) {
        int n;
        long sleep_ms;

        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
        }

        n = drain_once();
        pgstat_report_stat(false);

        if (n >= hotstock_drain_batch_size)
            continue; /* a full batch: more is likely waiting */

        if (settle_due && n != DRAIN_BACK_OFF &&
            TimestampDifferenceExceeds(last_settle_at, GetCurrentTimestamp(),
                                       HOTSTOCK_SETTLE_MS)) {
            int delay_ms = 0;

            settle_due = hotstock_settle_deductions(drain_client, &delay_ms);
            last_settle_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
        }

        if (n == 0 && drain_client != NULL &&
            TimestampDifferenceExceeds(last_sweep_at, GetCurrentTimestamp(),
                                       HOTSTOCK_REFUND_SWEEP_MS)) {
            last_sweep_at = GetCurrentTimestamp();
            hotstock_apply_refund_requests(drain_client);
            hotstock_apply_ledger_refunds(drain_client);
        }

        sleep_ms = n == DRAIN_BACK_OFF ? Max(HOTSTOCK_DRAIN_RETRY_MS, hotstock_drain_naptime)
                                       : hotstock_drain_naptime;
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, sleep_ms,
                        PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
    }
}

/*
 * Daemon status, attaching when needed.  True while a daemon serves the
 * segment (then *st is filled).
 */
static bool
drain_daemon_status(hs_status *st)
{
    if (drain_client == NULL) {
        if (hotstock_data_directory == NULL || hotstock_data_directory[0] == '\0')
            return false;
        if (hs_attach(hotstock_data_directory, &drain_client) != HS_OK) {
            drain_client = NULL;
            return false;
        }
    }
    return hs_get_status(drain_client, st) == HS_OK && st->state == HS_SEGMENT_READY;
}

/* applied_lsn from hotstock.drain_state, its row locked till commit. */
static hs_lsn
drain_read_applied(void)
{
    SPIPlanPtr plan = hotstock_prepare(
        &read_applied_plan, "SELECT applied_lsn FROM hotstock.drain_state FOR UPDATE", 0, NULL);
    bool isnull;
    Datum d;
    int ret = SPI_execute_plan(plan, NULL, NULL, false, 0);

    if (ret != SPI_OK_SELECT || SPI_processed != 1)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("hotstock.drain_state must hold exactly one row"),
                        errhint("Recreate the extension, or restore the row from a backup.")));
    d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
    if (isnull || DatumGetInt64(d) < 0)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("hotstock.drain_state.applied_lsn is null or negative")));
    return (hs_lsn)DatumGetInt64(d);
}

/* Make room for one batch of records. */
static void
drain_reserve_records(void)
{
    /* room for a batch and the rest of a group (a basket) it ends in */
    int want = hotstock_drain_batch_size + HS_GROUP_MAX;

    if (records_size < want) {
        if (records != NULL)
            pfree(records);
        records = MemoryContextAllocHuge(TopMemoryContext, (Size)want * sizeof(hs_record));
        records_size = want;
    }
}

/*
 * One batch.  Returns the number of records applied (0 when caught up),
 * or DRAIN_BACK_OFF after a problem or while the extension is missing.
 */
static int
drain_once(void)
{
    hs_status st;
    bool up = drain_daemon_status(&st);
    hs_lsn applied;
    hs_lsn upto;
    hs_result r;
    int n = 0;
    int k = 0;
    TimestampTz started;

    /* nothing durable past what we committed: no transaction needed */
    if (up && known_applied_valid && st.durable_lsn <= known_applied) {
        if (st.applied_lsn < known_applied)
            (void)hs_publish_applied(drain_client, known_applied);
        SpinLockAcquire(&hotstock_drain_shared->mutex);
        hotstock_drain_shared->caught_up_at = GetCurrentTimestamp();
        hotstock_drain_shared->applied_lsn = known_applied;
        SpinLockRelease(&hotstock_drain_shared->mutex);
        return 0;
    }

    started = GetCurrentTimestamp();
    if (!hotstock_drain_begin()) {
        hotstock_drain_finish();
        pgstat_report_activity(STATE_IDLE, "waiting for CREATE EXTENSION hotstock");
        known_applied_valid = false;
        return DRAIN_BACK_OFF;
    }

    applied = drain_read_applied();
    known_applied = applied;
    known_applied_valid = true;

    /* a reader that is not exactly at applied + 1 is reopened there */
    if (reader != NULL && reader_next != applied + 1)
        drain_close_reader();
    if (reader == NULL) {
        r = hs_queue_open(hotstock_data_directory, applied + 1, &reader);
        if (r == HS_NOT_FOUND) {
            reader = NULL;
            hotstock_drain_finish();
            SpinLockAcquire(&hotstock_drain_shared->mutex);
            hotstock_drain_shared->caught_up_at = GetCurrentTimestamp();
            hotstock_drain_shared->applied_lsn = applied;
            SpinLockRelease(&hotstock_drain_shared->mutex);
            return 0;
        }
        if (r != HS_OK) {
            reader = NULL;
            hotstock_drain_finish();
            hotstock_drain_problem(
                r == HS_IO_ERROR ? ERRCODE_IO_ERROR : ERRCODE_HOTSTOCK_QUEUE_CORRUPT,
                hs_last_error(), "hotstock drain cannot open the queue of \"%s\" at LSN %llu: %s",
                hotstock_data_directory, (unsigned long long)(applied + 1), hs_result_name(r));
            return DRAIN_BACK_OFF;
        }
        reader_next = applied + 1;
    }

    if (up)
        upto = st.durable_lsn;
    else {
        r = hs_queue_sync(reader, &upto);
        if (r != HS_OK) {
            hotstock_drain_finish();
            drain_close_reader();
            hotstock_drain_problem(
                ERRCODE_IO_ERROR, hs_last_error(),
                "hotstock drain cannot sync the queue of \"%s\" while hotstockd is down: %s",
                hotstock_data_directory, hs_result_name(r));
            return DRAIN_BACK_OFF;
        }
    }

    drain_reserve_records();
    /* A batch never ends inside a group (a basket's lines: the reader
     * returns a group only whole): its ledger rows commit together. */
    while ((n < hotstock_drain_batch_size ||
            (n > 0 && (records[n - 1].flags & HS_REC_FLAG_GROUP_MORE))) &&
           upto > applied + n) {
        k = hs_queue_next(reader, upto, &records[n]);
        if (k != 1)
            break;
        if (records[n].lsn != applied + n + 1) {
            hotstock_drain_finish();
            drain_close_reader();
            hotstock_drain_problem(ERRCODE_HOTSTOCK_QUEUE_CORRUPT, NULL,
                          "hotstock queue of \"%s\" has LSN %llu where %llu was expected",
                          hotstock_data_directory, (unsigned long long)records[n].lsn,
                          (unsigned long long)(applied + n + 1));
            return DRAIN_BACK_OFF;
        }
        n++;
    }
    if (k == -1) {
        /* apply the valid records before the damage, then stop there */
        hotstock_drain_problem(ERRCODE_HOTSTOCK_QUEUE_CORRUPT, hs_last_error(),
                      "hotstock queue of \"%s\" is damaged after LSN %llu", hotstock_data_directory,
                      (unsigned long long)(applied + n));
    }

    if (n == 0) {
        hotstock_drain_finish();
        if (k == -1) {
            drain_close_reader();
            return DRAIN_BACK_OFF;
        }
        SpinLockAcquire(&hotstock_drain_shared->mutex);
        hotstock_drain_shared->caught_up_at = GetCurrentTimestamp();
        hotstock_drain_shared->applied_lsn = applied;
        SpinLockRelease(&hotstock_drain_shared->mutex);
        if (up && st.applied_lsn < applied)
            (void)hs_publish_applied(drain_client, applied);
        return 0;
    }

    {
        char activity[128];

        snprintf(activity, sizeof(activity), "draining %d records after LSN %llu", n,
                 (unsigned long long)applied);
        pgstat_report_activity(STATE_RUNNING, activity);
    }

    MemoryContextReset(batch_context);
    {
        HotstockApplyReport report;

        hotstock_ledger_apply(records, n, batch_context, &report);
        if (report.unsettled > 0) {
            settle_due = true;
            last_settle_at = 0; /* new rows to settle: soon, whatever the back-off */
        }
        if (report.dup_deducts > 0)
            hotstock_drain_problem(ERRCODE_HOTSTOCK_ORDER_MISMATCH, NULL,
                                   "hotstock drain found %llu deductions or reservations of "
                                   "orders already in hotstock.ledger",
                                   (unsigned long long)report.dup_deducts);
        if (report.missing_refunds > 0)
            hotstock_drain_problem(
                ERRCODE_HOTSTOCK_ORDER_MISMATCH, NULL,
                "hotstock drain found %llu refunds of orders missing from hotstock.ledger",
                (unsigned long long)report.missing_refunds);
        if (report.missing_holds > 0)
            hotstock_drain_problem(ERRCODE_HOTSTOCK_ORDER_MISMATCH, NULL,
                                   "hotstock drain found %llu confirms, cancels or expiries of "
                                   "holds missing from hotstock.ledger",
                                   (unsigned long long)report.missing_holds);
    }
    hotstock_drain_finish();
    MemoryContextReset(batch_context);

    /* committed: the position moved with the effects */
    applied += n;
    known_applied = applied;
    reader_next = applied + 1;
    if (k == -1)
        drain_close_reader();
    if (drain_client != NULL)
        (void)hs_publish_applied(drain_client, applied);

    {
        TimestampTz now = GetCurrentTimestamp();
        long secs;
        int usecs;
        double elapsed;

        TimestampDifference(started, now, &secs, &usecs);
        elapsed = secs + usecs / 1e6;
        SpinLockAcquire(&hotstock_drain_shared->mutex);
        hotstock_drain_shared->applied_lsn = applied;
        hotstock_drain_shared->last_batch_at = now;
        hotstock_drain_shared->records_applied += n;
        if (n >= 1000 && elapsed > 0)
            hotstock_drain_shared->last_rate = n / elapsed;
        if (applied >= upto)
            hotstock_drain_shared->caught_up_at = now;
        if (k != -1)
            hotstock_drain_shared->last_error[0] = '\0';
        SpinLockRelease(&hotstock_drain_shared->mutex);
        elog(DEBUG1, "hotstock drain applied %d records up to LSN %llu in %.3f s", n,
             (unsigned long long)applied, elapsed);
    }
    pgstat_report_activity(STATE_IDLE, NULL);

    return k == -1 ? DRAIN_BACK_OFF : n;
}
