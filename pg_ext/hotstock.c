/*-------------------------------------------------------------------------
 *
 * hotstock.c
 *      The hotstock extension: GUCs, the SQL functions (deduct, refund,
 *      available, order_status, put_sku, add_stock, status_info), the write
 *      guard trigger, and the transaction callbacks that make a deduction
 *      follow its caller's transaction.
 *
 * What this file shares, who writes it, which ordering protects it:
 *
 *  - The daemon's segment, through libhotstock only (shmd/hotstock.h).  Each
 *    backend attaches once, lazily, at its first call, and keeps the handle;
 *    libhotstock checks on every call that the segment is still served and
 *    re-attaches after a daemon restart.  All ordering inside the segment
 *    is libhotstock's (see shmd/segment.h).
 *
 *  - Per-transaction state: pending_actions, a list in TopTransactionContext
 *    of what this transaction did to the segment that must be finished at
 *    commit or undone at abort.  Only this backend touches it; it is
 *    emptied at every transaction end.  Each entry carries the
 *    subtransaction that created it, so ROLLBACK TO SAVEPOINT undoes exactly
 *    the entries of the aborted subtransactions.
 *
 *        kind            at (sub)abort            at commit
 *        deduct          hs_refund (compensate)   -
 *        refund claim    hs_refund_release        hs_refund_commit
 *        evicted refund  (its ledger update       hs_refund_evicted
 *                         rolls back by itself)
 *
 *    A refund gives units back only once its transaction has committed
 *    (XACT_EVENT_COMMIT, after the commit record is durable), whether the
 *    call ran in a transaction block or in autocommit: if the caller's
 *    transaction dies in any way before that, the order stays deducted and
 *    no unit the caller still counts as sold goes back on sale.  The price
 *    is that a refund failing at that point cannot fail the transaction: it
 *    warns, and the units stay held back (undersold) until refunded again.
 *
 *    Claims are released before deductions are compensated: compensating
 *    an order this transaction claimed would otherwise wait on our own
 *    claim.  An autocommit deduct adds one small entry, and the commit
 *    callback only walks past it: no call into the segment at commit.
 *
 *  - PostgreSQL shared memory: HotstockDrainShared (see hotstock.h), written
 *    by the drain under its spinlock; status_info() reads it.
 *
 *  - hotstock_writer: process-local flag the guard trigger checks; set only
 *    around this extension's own SPI statements (PG_FINALLY resets it).
 *
 * Orders evicted from the daemon's order index (drained before the daemon
 * last restarted: hs_evicted_lsn() > 0) live on only in hotstock.ledger.  A
 * deduct of an order id the index does not know therefore consults the
 * ledger (a retry of a drained order answers true, no new deduction), and a
 * refund of such an order goes database-first: mark the ledger row
 * refunded in the caller's transaction, then hand the units back with
 * hs_refund_evicted() once that transaction has committed.  See README.md.
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

PG_MODULE_MAGIC;

/* How long one hs_wait_durable() call may sleep before we look at
 * interrupts (query cancel, statement_timeout, termination). */
#define HS_WAIT_SLICE_MS 100

/* How long order_status() waits for a deduction in flight to settle. */
#define HS_PENDING_WAIT_MS 200

/* Most ledger rows one order id can have (one per SKU). */
#define HS_LEDGER_ROWS_MAX 16

/*---- types ----*/

typedef enum PendingKind {
    PENDING_DEDUCT,        /* abort: compensate with hs_refund */
    PENDING_REFUND_CLAIM,  /* pre-commit: hs_refund_commit; abort: release */
    PENDING_REFUND_EVICTED /* commit: hs_refund_evicted */
} PendingKind;

typedef struct PendingAction {
    struct PendingAction *next;
    PendingKind kind;
    SubTransactionId subid; /* subtransaction that did it */
    bool committed;         /* claim: hs_refund_commit succeeded */
    int32 qty;              /* evicted refund */
    uint8 sku_len;          /* evicted refund */
    uint8 order_len;
    char sku[HS_SKU_MAX + 1];
    char order_id[HS_ORDER_ID_MAX + 1];
} PendingAction;

/* A ledger row as the evicted-order paths need it. */
typedef struct LedgerRow {
    char sku[HS_SKU_MAX + 1];
    int32 qty;
    bool refunded;
} LedgerRow;

/*---- local state ----*/

static hs_client *client = NULL; /* this backend's handle, attached once */
static bool database_checked = false;

/* newest first; lives in TopTransactionContext, NULL between transactions */
static PendingAction *pending_actions = NULL;

static SPIPlanPtr ledger_lookup_plan = NULL;
static SPIPlanPtr ledger_refund_plan = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

HotstockWriter hotstock_writer = HS_WRITER_NONE;
HotstockDrainShared *hotstock_drain_shared = NULL;

/*---- GUC variables ----*/

char *hotstock_data_directory = NULL;
bool hotstock_synchronous = true;
int hotstock_drain_batch_size = 10000;
int hotstock_drain_naptime = 100;
char *hotstock_drain_database = NULL;

/*---- function declarations ----*/

void _PG_init(void);

PG_FUNCTION_INFO_V1(hotstock_put_sku);
PG_FUNCTION_INFO_V1(hotstock_add_stock);
PG_FUNCTION_INFO_V1(hotstock_deduct);
PG_FUNCTION_INFO_V1(hotstock_refund);
PG_FUNCTION_INFO_V1(hotstock_available);
PG_FUNCTION_INFO_V1(hotstock_order_status);
PG_FUNCTION_INFO_V1(hotstock_status_info);
PG_FUNCTION_INFO_V1(hotstock_guard);

static void hotstock_shmem_request(void);
static void hotstock_shmem_startup(void);
static void hotstock_xact_callback(XactEvent event, void *arg);
static void hotstock_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
                                      SubTransactionId parentSubid, void *arg);
static hs_client *hotstock_client(void);
static void get_name_arg(FunctionCallInfo fcinfo, int argno, const char *argname, const char **data,
                         size_t *len);
static int32 get_qty_arg(FunctionCallInfo fcinfo, int argno);
static void wait_durable(hs_client *c, hs_lsn lsn);
static void wait_durable_now(hs_client *c);
static PendingAction *remember(PendingKind kind, const char *order_id, size_t order_len);
static PendingAction *find_pending(PendingKind kind, const char *order_id, size_t order_len);
static void undo_actions(SubTransactionId subid);
static int ledger_lookup(const char *order_id, size_t order_len, LedgerRow *rows);
static int ledger_refund(const char *order_id, size_t order_len, hs_lsn evicted_lsn,
                         LedgerRow *rows);

/*
 * Module load callback.  Refuses unless preloaded: the drain worker and
 * the shared memory can only be set up by the postmaster.
 */
void
_PG_init(void)
{
    if (!process_shared_preload_libraries_in_progress)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("hotstock must be loaded via shared_preload_libraries"),
                        errhint("Add hotstock to shared_preload_libraries in postgresql.conf and "
                                "restart the server.")));

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
        NULL, &hotstock_drain_batch_size, 10000, 1, 1000000, PGC_SIGHUP, 0, NULL, NULL, NULL);

    DefineCustomIntVariable(
        "hotstock.drain_naptime", "Time the drain sleeps when it has caught up.", NULL,
        &hotstock_drain_naptime, 100, 1, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

    DefineCustomStringVariable(
        "hotstock.drain_database",
        "Database the drain connects to; CREATE EXTENSION hotstock runs there.", NULL,
        &hotstock_drain_database, "postgres", PGC_POSTMASTER, 0, NULL, NULL, NULL);

    MarkGUCPrefixReserved("hotstock");

    prev_shmem_request_hook = shmem_request_hook;
    shmem_request_hook = hotstock_shmem_request;
    prev_shmem_startup_hook = shmem_startup_hook;
    shmem_startup_hook = hotstock_shmem_startup;

    RegisterXactCallback(hotstock_xact_callback, NULL);
    RegisterSubXactCallback(hotstock_subxact_callback, NULL);

    hotstock_drain_register();
}

/* Ask for the drain's report struct. */
static void
hotstock_shmem_request(void)
{
    if (prev_shmem_request_hook)
        prev_shmem_request_hook();
    RequestAddinShmemSpace(MAXALIGN(sizeof(HotstockDrainShared)));
}

/* Create or attach the drain's report struct. */
static void
hotstock_shmem_startup(void)
{
    bool found;

    if (prev_shmem_startup_hook)
        prev_shmem_startup_hook();

    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    hotstock_drain_shared = ShmemInitStruct("hotstock drain", sizeof(HotstockDrainShared), &found);
    if (!found) {
        memset(hotstock_drain_shared, 0, sizeof(HotstockDrainShared));
        SpinLockInit(&hotstock_drain_shared->mutex);
    }
    LWLockRelease(AddinShmemInitLock);
}

/*
 * Raise the ERROR that matches a libhotstock result.  `what` is the SKU or
 * order id the call was about (NUL-terminated), or NULL.  Never returns.
 */
void
hotstock_raise(hs_result r, const char *what)
{
    const char *detail = hs_last_error();
    bool has_detail = detail != NULL && detail[0] != '\0';

    switch (r) {
    case HS_UNKNOWN_SKU:
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("sku \"%s\" does not exist", what ? what : ""),
                        errhint("Create it with hotstock.put_sku().")));
        break;
    case HS_BAD_ARGUMENT:
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid argument for hotstock"),
                 has_detail ? errdetail("%s", detail) : 0));
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
                        errhint("Nothing was changed; retry the call.")));
        break;
    case HS_TABLE_FULL:
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_TABLE_FULL),
                        errmsg("hotstock sku table or order index is full"),
                        has_detail ? errdetail("%s", detail) : 0,
                        errhint("Restart hotstockd with larger capacities; orders already drained "
                                "leave the index at a restart.")));
        break;
    case HS_ORDER_MISMATCH:
        ereport(ERROR,
                (errcode(ERRCODE_HOTSTOCK_ORDER_MISMATCH),
                 errmsg("order id \"%s\" was deducted with another sku or qty", what ? what : ""),
                 errhint("Use a new order id for a different deduction.")));
        break;
    case HS_ALREADY_REFUNDED:
        ereport(ERROR,
                (errcode(ERRCODE_HOTSTOCK_ORDER_REFUNDED),
                 errmsg("order id \"%s\" was refunded", what ? what : ""),
                 errdetail("A refunded order cannot be deducted again; this includes a deduction "
                           "undone because its transaction rolled back."),
                 errhint("Use a new order id for a new deduction.")));
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
    pg_unreachable();
}

/* Unix microseconds (the queue's timestamps) to timestamptz. */
TimestampTz
hotstock_unix_us_to_timestamptz(uint64 unix_us)
{
    return (TimestampTz)unix_us -
           ((TimestampTz)(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
}

/*
 * Refuse to serve from a database other than hotstock.drain_database: the
 * ledger that backs evicted orders lives there only.  Checked once.
 */
static void
check_database(void)
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
static hs_result
try_attach(void)
{
    hs_result r;

    if (client != NULL)
        return HS_OK;
    if (hotstock_data_directory == NULL || hotstock_data_directory[0] == '\0')
        return HS_DAEMON_DOWN;
    r = hs_attach(hotstock_data_directory, &client);
    if (r != HS_OK)
        client = NULL;
    return r;
}

/*
 * This backend's client handle: attached at the first call, kept for the
 * life of the backend (libhotstock re-attaches after a daemon restart).
 * Raises HS001 while no daemon serves hotstock.data_directory, 55000 in a
 * database other than hotstock.drain_database.
 */
static hs_client *
hotstock_client(void)
{
    hs_result r;

    if (likely(client != NULL))
        return client;
    check_database();
    if (hotstock_data_directory == NULL || hotstock_data_directory[0] == '\0')
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                        errmsg("hotstock.data_directory is not set"),
                        errhint("Set hotstock.data_directory to the directory hotstockd serves, "
                                "and restart the server.")));
    r = try_attach();
    if (r != HS_OK)
        hotstock_raise(r, NULL);
    return client;
}

/*
 * Fetch text argument argno (a SKU or an order id: 1..63 bytes) without
 * copying.  NULL or empty raises 22023, too long 22001.
 */
static void
get_name_arg(FunctionCallInfo fcinfo, int argno, const char *argname, const char **data,
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

/* Fetch the qty argument: 1..HS_QTY_MAX, else 22023. */
static int32
get_qty_arg(FunctionCallInfo fcinfo, int argno)
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
static hs_result
wait_durable_core(hs_client *c, hs_lsn lsn, bool interruptible)
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
        if (hs_get_status(c, &st) != HS_OK || st.state != 2 /* HS_SEGMENT_READY */)
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
 * wait_durable_core() for a SQL call (hotstock.synchronous).  Raises HS001
 * when the daemon dies first: the outcome is then unknown (the record may
 * still reach disk), and the error says how to learn it.
 */
static void
wait_durable(hs_client *c, hs_lsn lsn)
{
    ErrorContextCallback errcallback;

    errcallback.callback = wait_durable_context;
    errcallback.arg = &lsn;
    errcallback.previous = error_context_stack;
    error_context_stack = &errcallback;

    if (wait_durable_core(c, lsn, true) != HS_OK)
        ereport(ERROR, (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                        errmsg("hotstock daemon stopped before the record reached disk"),
                        errdetail("The outcome is unknown: the record may still become durable."),
                        errhint("Retry with the same order id, or call hotstock.order_status().")));

    error_context_stack = errcallback.previous;
}

/* Wait until everything reserved so far is durable (a retry's original
 * record is among it). */
static void
wait_durable_now(hs_client *c)
{
    hs_status st;
    hs_result r = hs_get_status(c, &st);

    if (r != HS_OK)
        hotstock_raise(r, NULL);
    if (st.next_lsn > 1 && st.durable_lsn < st.next_lsn - 1)
        wait_durable(c, st.next_lsn - 1);
}

/* Add an entry to this transaction's pending list. */
static PendingAction *
remember(PendingKind kind, const char *order_id, size_t order_len)
{
    PendingAction *a = MemoryContextAlloc(TopTransactionContext, sizeof(PendingAction));

    a->kind = kind;
    a->subid = GetCurrentSubTransactionId();
    a->committed = false;
    a->qty = 0;
    a->sku_len = 0;
    a->sku[0] = '\0';
    a->order_len = (uint8)order_len;
    memcpy(a->order_id, order_id, order_len);
    a->order_id[order_len] = '\0';
    a->next = pending_actions;
    pending_actions = a;
    return a;
}

static PendingAction *
find_pending(PendingKind kind, const char *order_id, size_t order_len)
{
    for (PendingAction *a = pending_actions; a != NULL; a = a->next)
        if (a->kind == kind && a->order_len == order_len &&
            memcmp(a->order_id, order_id, order_len) == 0)
            return a;
    return NULL;
}

/*
 * Undo what the aborted (sub)transaction subid did, or the whole
 * transaction when subid is InvalidSubTransactionId, and drop those
 * entries.  Runs inside abort processing: never raises, only warns.  A
 * compensation that fails leaves units held back (undersell), never sold
 * twice.
 */
static void
undo_actions(SubTransactionId subid)
{
    PendingAction **link;
    PendingAction *a;

#define MATCHES(a) (subid == InvalidSubTransactionId || (a)->subid == subid)

    /* first release our refund claims: a compensating refund would wait on them */
    for (a = pending_actions; a != NULL; a = a->next) {
        if (MATCHES(a) && a->kind == PENDING_REFUND_CLAIM && !a->committed) {
            hs_result r = hs_refund_release(client, a->order_id, a->order_len);

            if (r != HS_OK && r != HS_ALREADY_REFUNDED && r != HS_NOT_FOUND)
                ereport(WARNING, (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                                  errmsg("could not release the refund claim of order \"%s\": %s",
                                         a->order_id, hs_result_name(r)),
                                  errdetail("The next refund of this order releases it.")));
        }
    }

    for (a = pending_actions; a != NULL; a = a->next) {
        if (MATCHES(a) && a->kind == PENDING_DEDUCT) {
            hs_lsn lsn;
            int32 qty;
            hs_result r = hs_refund(client, a->order_id, a->order_len, &lsn, &qty, NULL);

            /*
             * hotstock.synchronous covers the undo too: a ROLLBACK returns
             * only once the compensating REFUND record is on disk, so a
             * power loss cannot keep the deduct and drop its undo.
             */
            if (r == HS_OK && hotstock_synchronous && wait_durable_core(client, lsn, false) != HS_OK)
                ereport(WARNING,
                        (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                         errmsg("could not undo the deduction of order \"%s\" durably", a->order_id),
                         errdetail("The undo is applied, but hotstockd stopped before its record was "
                                   "synced: a crash may lose it, and the units then stay held back "
                                   "until hotstock.refund('%s') succeeds.",
                                   a->order_id)));
            if (r != HS_OK && r != HS_ALREADY_REFUNDED)
                ereport(WARNING,
                        (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                         errmsg("could not undo the deduction of order \"%s\" after rollback: %s",
                                a->order_id, hs_result_name(r)),
                         errdetail("Its units stay held back until hotstock.refund('%s') succeeds.",
                                   a->order_id)));
        }
    }

    /* unlink the entries handled (memory goes with TopTransactionContext) */
    link = &pending_actions;
    while (*link != NULL) {
        if (MATCHES(*link))
            *link = (*link)->next;
        else
            link = &(*link)->next;
    }
#undef MATCHES
}

/*
 * At commit: apply this transaction's claim on a.  Never raises.  On
 * failure the claim is released (the order stays deducted, its units held
 * back) and a WARNING tells the caller to refund again.
 */
static void
refund_claimed_order(PendingAction *a)
{
    hs_lsn lsn = 0;
    int32 qty;
    hs_result r = hs_refund_commit(client, a->order_id, a->order_len, &lsn, &qty, NULL);

    if (r == HS_OK) {
        a->committed = true;
        if (hotstock_synchronous && wait_durable_core(client, lsn, false) != HS_OK)
            ereport(WARNING,
                    (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                     errmsg("refund of order \"%s\" is done but may not be on disk", a->order_id),
                     errdetail("hotstockd stopped before the record was synced; a crash may lose "
                               "the refund, and its units then stay held back.")));
        return;
    }
    if (r == HS_ALREADY_REFUNDED)
        return;
    (void)hs_refund_release(client, a->order_id, a->order_len);
    ereport(WARNING,
            (errcode(r == HS_DAEMON_DOWN ? ERRCODE_HOTSTOCK_DAEMON_DOWN
                                         : ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("refund of order \"%s\" was committed but its units were not returned: %s",
                    a->order_id, hs_result_name(r)),
             errdetail("The order stays deducted and its units held back."),
             errhint("Call hotstock.refund('%s') again.", a->order_id)));
}

/*
 * At commit: the ledger says refunded now (database-first refund of an
 * evicted order): hand the units back.  Never raises.
 */
static void
refund_evicted_order(PendingAction *a)
{
    hs_lsn lsn;
    hs_result r =
        hs_refund_evicted(client, a->sku, a->sku_len, a->qty, a->order_id, a->order_len, &lsn);

    if (r != HS_OK && r != HS_ALREADY_REFUNDED)
        ereport(WARNING, (errcode(r == HS_DAEMON_DOWN ? ERRCODE_HOTSTOCK_DAEMON_DOWN
                                                      : ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                          errmsg("refund of order \"%s\" is recorded in hotstock.ledger but "
                                 "its %d units were not returned: %s",
                                 a->order_id, a->qty, hs_result_name(r)),
                          errdetail("The units stay held back (undersold) until the drain retries "
                                    "ledger refunds that never reached the queue.")));
}

/*
 * Transaction callback.  Cheap when the transaction did nothing here (one
 * NULL test); an autocommit deduct costs one list walk at commit.
 */
static void
hotstock_xact_callback(XactEvent event, void *arg)
{
    PendingAction *a;

    if (pending_actions == NULL)
        return;

    switch (event) {
    case XACT_EVENT_COMMIT:

        /*
         * The transaction is committed and durable: only now do refunds
         * give their units back.  Nothing may raise here; a refund that
         * fails leaves its units held back (undersold), never sold
         * twice, and says so.
         */
        for (a = pending_actions; a != NULL; a = a->next) {
            if (a->kind == PENDING_REFUND_CLAIM)
                refund_claimed_order(a);
            else if (a->kind == PENDING_REFUND_EVICTED)
                refund_evicted_order(a);
        }
        pending_actions = NULL;
        break;

    case XACT_EVENT_ABORT:
        undo_actions(InvalidSubTransactionId);
        pending_actions = NULL;
        break;

    case XACT_EVENT_PRE_PREPARE:
        ereport(
            ERROR,
            (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
             errmsg(
                 "cannot prepare a transaction that called hotstock.deduct() or hotstock.refund()"),
             errdetail("Their commit and rollback actions live in this session.")));
        break;

    case XACT_EVENT_PREPARE:
        pending_actions = NULL;
        break;

    default:
        break;
    }
}

/* Subtransaction callback: hand entries up at commit, undo them at abort. */
static void
hotstock_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
                          SubTransactionId parentSubid, void *arg)
{
    if (pending_actions == NULL)
        return;

    if (event == SUBXACT_EVENT_COMMIT_SUB) {
        for (PendingAction *a = pending_actions; a != NULL; a = a->next)
            if (a->subid == mySubid)
                a->subid = parentSubid;
    } else if (event == SUBXACT_EVENT_ABORT_SUB)
        undo_actions(mySubid);
}

/*
 * Owner of hotstock.ledger: the evicted-order paths read and update it as
 * that role, so hotstock_app needs no privilege on the table.
 */
static Oid
ledger_owner(void)
{
    Oid nsp = get_namespace_oid("hotstock", true);
    Oid relid = OidIsValid(nsp) ? get_relname_relid("ledger", nsp) : InvalidOid;
    HeapTuple tp;
    Oid owner;

    if (!OidIsValid(relid))
        ereport(
            ERROR,
            (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("extension hotstock is not created in this database"),
             errhint("Run CREATE EXTENSION hotstock in database \"%s\" (hotstock.drain_database).",
                     hotstock_drain_database)));
    tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
    if (!HeapTupleIsValid(tp))
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("hotstock.ledger disappeared while in use")));
    owner = ((Form_pg_class)GETSTRUCT(tp))->relowner;
    ReleaseSysCache(tp);
    return owner;
}

/* Copy up to HS_LEDGER_ROWS_MAX rows (sku, qty[, refunded]) out of SPI. */
static int
copy_ledger_rows(LedgerRow *rows, bool with_refunded)
{
    int n = (int)Min(SPI_processed, (uint64)HS_LEDGER_ROWS_MAX);

    for (int i = 0; i < n; i++) {
        HeapTuple tup = SPI_tuptable->vals[i];
        TupleDesc desc = SPI_tuptable->tupdesc;
        bool isnull;
        char *sku = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));

        strlcpy(rows[i].sku, sku, sizeof(rows[i].sku));
        rows[i].qty = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
        rows[i].refunded =
            with_refunded ? DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)) : false;
    }
    return n;
}

/*
 * Run one of the ledger statements below as the ledger's owner, with the
 * latest snapshot (a row the drain committed after this transaction's
 * snapshot must count: the daemon evicted the order because that row
 * exists), and copy up to HS_LEDGER_ROWS_MAX result rows (sku, qty[,
 * refunded]) into rows.  *plan is prepared on first use.  writer is what
 * the guard trigger sees while the statement runs.  Returns the rows copied.
 */
static int
ledger_run(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values, bool read_only,
           HotstockWriter writer, int expected, LedgerRow *rows, bool with_refunded)
{
    Oid owner = ledger_owner();
    Oid save_userid;
    int save_sec;
    int ret = 0;
    int n;

    if (SPI_connect() != SPI_OK_CONNECT)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("could not connect to SPI to use hotstock.ledger")));
    if (*plan == NULL) {
        SPIPlanPtr p = SPI_prepare(sql, nargs, types);

        if (p == NULL)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("could not prepare a hotstock.ledger statement: %s",
                                   SPI_result_code_string(SPI_result))));
        SPI_keepplan(p);
        *plan = p;
    }

    GetUserIdAndSecContext(&save_userid, &save_sec);
    SetUserIdAndSecContext(owner,
                           save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
    hotstock_writer = writer;
    PG_TRY();
    {
        ret = SPI_execute_snapshot(*plan, values, NULL, GetLatestSnapshot(), InvalidSnapshot,
                                   read_only, true, read_only ? HS_LEDGER_ROWS_MAX : 0);
    }
    PG_FINALLY();
    {
        hotstock_writer = HS_WRITER_NONE;
    }
    PG_END_TRY();
    SetUserIdAndSecContext(save_userid, save_sec);
    if (ret != expected)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("could not use hotstock.ledger: %s", SPI_result_code_string(ret))));
    n = copy_ledger_rows(rows, with_refunded);
    SPI_finish();
    return n;
}

/* Rows of hotstock.ledger for order_id (see ledger_run). */
static int
ledger_lookup(const char *order_id, size_t order_len, LedgerRow *rows)
{
    Oid types[1] = {TEXTOID};
    Datum values[1];

    values[0] = PointerGetDatum(cstring_to_text_with_len(order_id, (int)order_len));
    return ledger_run(&ledger_lookup_plan,
                      "SELECT sku, qty, refunded_at IS NOT NULL "
                      "FROM hotstock.ledger "
                      "WHERE order_id OPERATOR(pg_catalog.=) $1",
                      1, types, values, true, HS_WRITER_NONE, SPI_OK_SELECT, rows, true);
}

/*
 * Database-first refund of an evicted order: mark its unrefunded ledger
 * rows refunded in the caller's transaction (the row lock serialises
 * concurrent refunds; a waiter re-checks refunded_at and finds it set).
 * Only rows at or below evicted_lsn count: a row drained after the
 * segment was built belongs to an order the index still holds, which
 * must be refunded through the index (else both paths could succeed).
 * Returns the rows it marked.
 */
static int
ledger_refund(const char *order_id, size_t order_len, hs_lsn evicted_lsn, LedgerRow *rows)
{
    Oid types[2] = {TEXTOID, INT8OID};
    Datum values[2];

    values[0] = PointerGetDatum(cstring_to_text_with_len(order_id, (int)order_len));
    values[1] = Int64GetDatum((int64)evicted_lsn);
    return ledger_run(&ledger_refund_plan,
                      "UPDATE hotstock.ledger "
                      "SET refunded_at = pg_catalog.clock_timestamp() "
                      "WHERE order_id OPERATOR(pg_catalog.=) $1 "
                      "AND lsn OPERATOR(pg_catalog.<=) $2 "
                      "AND refunded_at IS NULL "
                      "RETURNING sku, qty",
                      2, types, values, false, HS_WRITER_REFUND, SPI_OK_UPDATE_RETURNING, rows,
                      false);
}

/*
 * The order index does not know order_id and orders were evicted: is it a
 * retry of a deduction already drained?  True when the ledger holds it with
 * this sku and qty (the caller answers true, deducts nothing); false when
 * the ledger does not know the order (a new one).  Raises HS005 when it
 * was refunded, HS004 when it was for another sku or qty.
 */
static bool
deduct_is_drained_retry(const char *sku, size_t sku_len, int32 qty, const char *order_id,
                        size_t order_len)
{
    LedgerRow rows[HS_LEDGER_ROWS_MAX];
    int n = ledger_lookup(order_id, order_len, rows);
    char *order_str = pnstrdup(order_id, order_len);

    for (int i = 0; i < n; i++) {
        if (strlen(rows[i].sku) != sku_len || memcmp(rows[i].sku, sku, sku_len) != 0)
            continue;
        if (rows[i].refunded)
            hotstock_raise(HS_ALREADY_REFUNDED, order_str);
        if (rows[i].qty != qty)
            hotstock_raise(HS_ORDER_MISMATCH, order_str);
        return true;
    }
    if (n > 0)
        hotstock_raise(HS_ORDER_MISMATCH, order_str);
    return false;
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

    get_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
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
        wait_durable(c, lsn);
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

    get_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
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
        wait_durable(c, lsn);
    PG_RETURN_INT64(available);
}

/*
 * hotstock.deduct(sku text, qty integer, order_id text) returns boolean
 *
 * True when qty units were deducted for order_id now, or had been before
 * (a retry with the same order id: nothing more is deducted); false when
 * fewer than qty are available.  With hotstock.synchronous on, true is
 * returned only once the record is on disk.  If the calling transaction
 * (or the subtransaction that ran it) rolls back, the deduction is undone
 * and the order id ends refunded.
 */
Datum
hotstock_deduct(PG_FUNCTION_ARGS)
{
    const char *sku;
    size_t sku_len;
    const char *order_id;
    size_t order_len;
    int32 qty;
    hs_client *c;
    hs_lsn lsn = 0;
    hs_result r;
    uint64 xid;

    get_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    qty = get_qty_arg(fcinfo, 1);
    get_name_arg(fcinfo, 2, "order_id", &order_id, &order_len);

    c = hotstock_client();
    xid = U64FromFullTransactionId(GetTopFullTransactionIdIfAny());

    /*
     * An order id the index does not know may be an evicted, drained one:
     * the ledger answers for it.  The claim must then happen in a segment
     * that evicted no more than was checked: hs_deduct_checked() says
     * HS_EVICTED_CHANGED when the handle re-attached to a restarted daemon
     * in between, and we check again.
     */
    for (;;) {
        hs_lsn evicted_lsn = hs_evicted_lsn(c);

        if (evicted_lsn > 0) {
            hs_order_state state;

            r = hs_order_status(c, order_id, order_len, &state, NULL, NULL);
            if (r == HS_NOT_FOUND) {
                if (deduct_is_drained_retry(sku, sku_len, qty, order_id, order_len))
                    PG_RETURN_BOOL(true);
            } else if (r != HS_OK)
                hotstock_raise(r, pnstrdup(order_id, order_len));
        }
        r = hs_deduct_checked(c, sku, sku_len, qty, order_id, order_len, xid, evicted_lsn, &lsn);
        if (r != HS_EVICTED_CHANGED)
            break;
        CHECK_FOR_INTERRUPTS();
    }
    switch (r) {
    case HS_OK:

        /*
         * Remember it first: whatever happens from here on (a failed
         * wait raises), a rollback of this transaction gives it back.
         */
        remember(PENDING_DEDUCT, order_id, order_len);
        if (hotstock_synchronous)
            wait_durable(c, lsn);
        PG_RETURN_BOOL(true);
    case HS_DUPLICATE:
        if (hotstock_synchronous)
            wait_durable_now(c);
        PG_RETURN_BOOL(true);
    case HS_SOLD_OUT:
        PG_RETURN_BOOL(false);
    case HS_UNKNOWN_SKU:
        hotstock_raise(r, pnstrdup(sku, sku_len));
        break;
    default:
        hotstock_raise(r, pnstrdup(order_id, order_len));
        break;
    }
    PG_RETURN_BOOL(false); /* not reached */
}

/*
 * hotstock.refund(order_id text) returns boolean
 *
 * True when this call refunded the order; false when there is nothing to
 * refund (unknown order id, refunded already, or refunded earlier in this
 * transaction).  The order is claimed now (other refunds of it wait; a
 * deduct retry still answers true) and its units go back when the calling
 * transaction commits; a rollback releases the claim.  An order evicted
 * from the daemon's index is refunded database-first (see the file header).
 */
Datum
hotstock_refund(PG_FUNCTION_ARGS)
{
    const char *order_id;
    size_t order_len;
    hs_client *c;
    hs_result r;
    LedgerRow rows[HS_LEDGER_ROWS_MAX];
    hs_lsn evicted_lsn;
    int n;

    get_name_arg(fcinfo, 0, "order_id", &order_id, &order_len);
    c = hotstock_client();

    /* refunded in this transaction already: nothing left to refund */
    if (find_pending(PENDING_REFUND_CLAIM, order_id, order_len) != NULL ||
        find_pending(PENDING_REFUND_EVICTED, order_id, order_len) != NULL)
        PG_RETURN_BOOL(false);

    for (int attempt = 0;; attempt++) {
        r = hs_refund_claim(c, order_id, order_len);
        if (r == HS_OK) {
            remember(PENDING_REFUND_CLAIM, order_id, order_len);
            PG_RETURN_BOOL(true);
        }
        if (r == HS_ALREADY_REFUNDED)
            PG_RETURN_BOOL(false);
        if (r != HS_NOT_FOUND)
            hotstock_raise(r, pnstrdup(order_id, order_len));
        evicted_lsn = hs_evicted_lsn(c);
        if (evicted_lsn == 0)
            PG_RETURN_BOOL(false); /* never deducted here */

        /* evicted: database first, units at commit */
        n = ledger_refund(order_id, order_len, evicted_lsn, rows);
        if (n > 0 || attempt > 0 || ledger_lookup(order_id, order_len, rows) == 0)
            break;
        /* A ledger row after evicted_lsn: the order was deducted and
         * drained after we looked in the index, so the index has it now. */
    }
    for (int i = 0; i < n; i++) {
        PendingAction *a = remember(PENDING_REFUND_EVICTED, order_id, order_len);

        a->sku_len = (uint8)strlen(rows[i].sku);
        memcpy(a->sku, rows[i].sku, a->sku_len + 1);
        a->qty = rows[i].qty;
    }
    PG_RETURN_BOOL(n > 0);
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

    get_name_arg(fcinfo, 0, "sku", &sku, &sku_len);
    r = hs_available(hotstock_client(), sku, sku_len, &available);
    if (r != HS_OK)
        hotstock_raise(r, pnstrdup(sku, sku_len));
    PG_RETURN_INT64(available);
}

/*
 * hotstock.order_status(order_id text) returns text
 * 'deducted', 'refunded' or 'unknown'.  A refund claimed by an open
 * transaction still counts as deducted.  A deduction in flight in another
 * session is waited for briefly; if it has not settled by then the answer
 * is 'pending'.
 */
Datum
hotstock_order_status(PG_FUNCTION_ARGS)
{
    const char *order_id;
    size_t order_len;
    hs_client *c;
    hs_order_state state = HS_ORDER_STATE_UNKNOWN;
    hs_result r;
    const char *answer;

    get_name_arg(fcinfo, 0, "order_id", &order_id, &order_len);
    c = hotstock_client();

    for (int waited = 0;; waited++) {
        r = hs_order_status(c, order_id, order_len, &state, NULL, NULL);
        if (r != HS_OK || state != HS_ORDER_STATE_PENDING || waited >= HS_PENDING_WAIT_MS)
            break;
        CHECK_FOR_INTERRUPTS();
        pg_usleep(1000L);
    }

    if (r == HS_NOT_FOUND) {
        LedgerRow rows[HS_LEDGER_ROWS_MAX];
        int n = hs_evicted_lsn(c) > 0 ? ledger_lookup(order_id, order_len, rows) : 0;

        answer = "unknown";
        for (int i = 0; i < n; i++)
            answer = rows[i].refunded ? "refunded" : "deducted";
    } else if (r != HS_OK)
        hotstock_raise(r, pnstrdup(order_id, order_len));
    else {
        switch (state) {
        case HS_ORDER_STATE_DEDUCTED:
            answer = "deducted";
            break;
        case HS_ORDER_STATE_REFUNDED:
            answer = "refunded";
            break;
        case HS_ORDER_STATE_PENDING:
            answer = "pending";
            break;
        default:
            answer = "unknown";
            break;
        }
    }
    PG_RETURN_TEXT_P(cstring_to_text(answer));
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

    check_database();
    (void)try_attach();
    if (client != NULL && hs_get_status(client, &st) == HS_OK && st.state == 2)
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

    allowed = hotstock_writer == HS_WRITER_DRAIN ||
              (hotstock_writer == HS_WRITER_REFUND && TRIGGER_FIRED_BY_UPDATE(td->tg_event) &&
               td->tg_trigger->tgnargs > 0 && strcmp(td->tg_trigger->tgargs[0], "refund") == 0);
    if (!allowed)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("table hotstock.%s is written by the hotstock drain only",
                               RelationGetRelationName(td->tg_relation)),
                        errhint("Use hotstock.put_sku() or hotstock.add_stock() to change stock, "
                                "hotstock.refund() to refund an order.")));
    return PointerGetDatum(NULL);
}
