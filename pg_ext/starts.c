/*-------------------------------------------------------------------------
 *
 * starts.c
 *      PostgreSQL's server starts, numbered, and the xid counter each of
 *      them began with: what tells a deduction's xid from the same xid
 *      handed out again after a crash.
 *
 * The problem.  A deduction made in a transaction block carries its xid
 * (fate.c), and its units belong to the buyer only if that xid commits.
 * Crash recovery restarts PostgreSQL's xid counter just past the last xid
 * it finds in the WAL.  An xid whose transaction had written nothing that
 * reached the WAL when the server died is handed out again after the
 * restart, and the fate of its new transaction is not the deduction's.
 * An xid that committed is in the WAL (its commit record), so only xids
 * of transactions that died are handed out again.
 *
 * The answer.  Each server start gets a number N, assigned by the
 * postmaster while it sets up shared memory (before any backend runs, and
 * again at each crash restart), durable in $PGDATA/hotstock_starts before
 * anything uses it.  A deduction's xid carries N in its bits 48 to 62
 * (hotstock_xid_encode; the full xid's epoch stays below 2^16, 2.8e14
 * xids).  Start N+1 records the xid counter it began with, V(N+1): every
 * xid in the WAL when it began is below V(N+1), so an xid of start N at
 * or above V(N+1) never committed (hotstock_xid_decode: "never
 * committed").  Below V(N+1) the xid was never handed out again (the
 * counter only moves forward from there), and the commit log answers.
 *
 * V is the xid counter of the checkpoint in pg_control when that
 * checkpoint was written after WAL replay ended (the end-of-recovery
 * checkpoint after a crash; the shutdown checkpoint after a clean stop,
 * when nothing was replayed): exactly the counter the start began with.
 * Otherwise (a promoted standby, say) the counter now, which is above it.
 * The drain worker takes it as it starts, else the first backend that
 * needs it; it is written to the file before anything uses it, and never
 * changes after, so every judgement of an xid is the same wherever and
 * whenever it is made.  A V above the exact one, or a start whose V was
 * never taken (it died first), only lets fewer xids read as never
 * committed: a dead deduction whose xid was handed out again and committed
 * then stays taken (units held back), never the reverse.
 *
 * The file: one line "N V" per start (V 0 until taken), the last
 * HS_START_FIELDS starts only (an older one's number can no longer be
 * told from a newer one's), replaced whole (temporary file, fsync,
 * rename, fsync of the directory).  Written by the postmaster at each
 * start, and under StartsShared.lock once per start; read by anyone.
 *
 * Shares StartsShared (PostgreSQL shared memory): `start` set by the
 * postmaster before any other process runs; `next_xid_taken`/`next_xid`
 * written once under the lock.  Calls nothing of this extension (the
 * bottom room, under fate.c, beside guc.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/transam.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_control.h"
#include "common/controldata_utils.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "hotstock_ext.h"

#define STARTS_FILE "hotstock_starts"
#define STARTS_TEMP "hotstock_starts.tmp"

/* The start number's bits in an encoded xid: 48 to 62 (bit 63 stays clear:
 * the ledger keeps xids in a bigint, and negative values mean something). */
#define XID_START_SHIFT 48
#define XID_FXID_MASK ((UINT64CONST(1) << XID_START_SHIFT) - 1)

typedef struct StartsShared {
    LWLock *lock;
    uint64 start;        /* this start's number; set by the postmaster */
    bool next_xid_taken; /* next_xid holds V of this start, durable in the file */
    uint64 next_xid;     /* V: the full xid counter this start began with */
} StartsShared;

/* One line of the file. */
typedef struct StartEntry {
    uint64 start;
    uint64 next_xid; /* 0: not taken */
} StartEntry;

static StartsShared *starts_shared = NULL;

/* This backend's copy of the file's earlier starts (they never change). */
static StartEntry *known = NULL;
static int known_count = -1; /* -1: not read yet */
/* This backend's copy of this start's V once taken (0: not yet). */
static uint64 this_start_next_xid = 0;

/* The field a start number takes in an xid: 1 .. HS_START_FIELDS. */
static uint32
start_field(uint64 start)
{
    return (uint32)((start - 1) % HS_START_FIELDS) + 1;
}

/*
 * Read the file: its entries in *out (palloc'd, in the current memory
 * context), their number returned; 0 when there is no file.  A line that
 * is not "N V" with N rising is reported at elevel (naming the file and
 * line), and -1 returned if elevel lets us go on.
 */
static int
starts_read(StartEntry **out, int elevel)
{
    FILE *f = AllocateFile(STARTS_FILE, "r");
    char line[64];
    int n = 0, cap = 64, lineno = 0;
    StartEntry *e;

    *out = NULL;
    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        ereport(elevel, (errcode_for_file_access(),
                         errmsg("hotstock cannot read \"%s/%s\": %m", DataDir, STARTS_FILE)));
        return -1;
    }
    e = palloc(cap * sizeof(StartEntry));
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long s, v;
        char end;

        lineno++;
        if (sscanf(line, "%llu %llu%c", &s, &v, &end) != 3 || end != '\n' || s == 0 ||
            (n > 0 && s <= e[n - 1].start)) {
            FreeFile(f);
            ereport(elevel,
                    (errcode(ERRCODE_DATA_CORRUPTED),
                     errmsg("hotstock: line %d of \"%s/%s\" is not \"<start> <next xid>\" after "
                            "the starts before it",
                            lineno, DataDir, STARTS_FILE),
                     errhint("The file numbers this server's starts.  Removing it is safe: "
                             "deductions of transactions that died in a crash before then may "
                             "then stay taken (units held back, never sold twice).")));
            pfree(e);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            e = repalloc(e, cap * sizeof(StartEntry));
        }
        e[n].start = s;
        e[n].next_xid = v;
        n++;
    }
    FreeFile(f);
    *out = e;
    return n;
}

/* Replace the file with entries (the last HS_START_FIELDS of them),
 * durably; any failure is reported at elevel. */
static void
starts_write(const StartEntry *e, int n, int elevel)
{
    int first = n > HS_START_FIELDS ? n - HS_START_FIELDS : 0;
    StringInfoData buf;
    int fd;

    initStringInfo(&buf);
    for (int i = first; i < n; i++)
        appendStringInfo(&buf, UINT64_FORMAT " " UINT64_FORMAT "\n", e[i].start, e[i].next_xid);

    fd = OpenTransientFile(STARTS_TEMP, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
    if (fd < 0) {
        ereport(elevel, (errcode_for_file_access(),
                         errmsg("hotstock cannot create \"%s/%s\": %m", DataDir, STARTS_TEMP)));
        return;
    }
    errno = 0;
    if (write(fd, buf.data, buf.len) != buf.len) {
        if (errno == 0)
            errno = ENOSPC;
        ereport(elevel, (errcode_for_file_access(),
                         errmsg("hotstock cannot write \"%s/%s\": %m", DataDir, STARTS_TEMP)));
        CloseTransientFile(fd);
        return;
    }
    if (pg_fsync(fd) != 0) {
        ereport(elevel, (errcode_for_file_access(),
                         errmsg("hotstock cannot fsync \"%s/%s\": %m", DataDir, STARTS_TEMP)));
        CloseTransientFile(fd);
        return;
    }
    CloseTransientFile(fd);
    pfree(buf.data);
    /* rename, with fsync of the file and of the data directory */
    (void)durable_rename(STARTS_TEMP, STARTS_FILE, elevel);
}

/* Ask for the shared struct and its lock (shmem_request_hook). */
void
hotstock_starts_request(void)
{
    RequestAddinShmemSpace(MAXALIGN(sizeof(StartsShared)));
    RequestNamedLWLockTranche("hotstock starts", 1);
}

/*
 * Create or attach the shared struct (shmem_startup_hook).  In the
 * postmaster, at each start and crash restart: number this start, durably.
 * A file that cannot be read or written stops the server (FATAL, naming
 * it): a deduction must never carry a number that is not on disk.
 */
void
hotstock_starts_startup(void)
{
    bool found;
    StartEntry *e;
    int n;

    starts_shared = ShmemInitStruct("hotstock starts", sizeof(StartsShared), &found);
    if (found)
        return;
    memset(starts_shared, 0, sizeof(StartsShared));
    starts_shared->lock = &(GetNamedLWLockTranche("hotstock starts"))->lock;

    n = starts_read(&e, FATAL);
    e = n == 0 ? palloc(sizeof(StartEntry)) : repalloc(e, (n + 1) * sizeof(StartEntry));
    e[n].start = n == 0 ? 1 : e[n - 1].start + 1;
    e[n].next_xid = 0;
    starts_write(e, n + 1, FATAL);
    starts_shared->start = e[n].start;
    pfree(e);
}

/*
 * V of this start: the exact counter when pg_control's checkpoint was
 * written after replay ended, else the counter now (see the file header).
 */
static FullTransactionId
start_next_xid_now(void)
{
    FullTransactionId next = ReadNextFullTransactionId();
    XLogRecPtr replayed = GetXLogReplayRecPtr(NULL);
    ControlFileData *ctl;
    bool crc_ok;
    FullTransactionId v = next;

    LWLockAcquire(ControlFileLock, LW_SHARED);
    ctl = get_controlfile(DataDir, &crc_ok);
    LWLockRelease(ControlFileLock);
    if (crc_ok && ctl->checkPoint >= replayed &&
        FullTransactionIdPrecedesOrEquals(ctl->checkPointCopy.nextXid, next))
        v = ctl->checkPointCopy.nextXid;
    pfree(ctl);
    return v;
}

/*
 * Take V of this start now if nobody has (the drain worker calls this as
 * it starts): into the file, then into shared memory.  Returns it (0
 * while WAL is still replayed).
 */
uint64
hotstock_starts_take_next_xid(void)
{
    uint64 v;

    /* Not while WAL is replayed (a hot standby, archive recovery): the
     * counter is not the one this start will hand out xids from, and
     * xids of the start before may still come in with commit records.
     * 0: nobody has an answer from this file yet (the plain one holds,
     * and nothing is written that a later judgement would contradict). */
    if (RecoveryInProgress())
        return 0;
    LWLockAcquire(starts_shared->lock, LW_EXCLUSIVE);
    if (!starts_shared->next_xid_taken) {
        StartEntry *e;
        int n = starts_read(&e, ERROR);

        v = U64FromFullTransactionId(start_next_xid_now());
        if (n == 0 || e[n - 1].start != starts_shared->start)
            ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
                            errmsg("hotstock: \"%s/%s\" does not end with this start (" UINT64_FORMAT
                                   ")",
                                   DataDir, STARTS_FILE, starts_shared->start)));
        e[n - 1].next_xid = v;
        /* fails the server, not the call: a V some process may have used
         * must be on disk, and the next start numbers itself anew */
        starts_write(e, n, PANIC);
        pfree(e);
        starts_shared->next_xid = v;
        starts_shared->next_xid_taken = true;
        elog(LOG, "hotstock: server start " UINT64_FORMAT " began at xid " UINT64_FORMAT,
             starts_shared->start, v);
    }
    v = starts_shared->next_xid;
    LWLockRelease(starts_shared->lock);
    return v;
}

/* V of start `start` (earlier than this one): 0 when it was never taken or
 * is not in the file. */
static uint64
start_next_xid(uint64 start)
{
    int lo = 0, hi;

    if (start == starts_shared->start) {
        /* taken once per start, never changed after: kept here, so that a
         * drain judging many records of the start before takes the
         * exclusive lock once, not once a record */
        if (this_start_next_xid == 0)
            this_start_next_xid = hotstock_starts_take_next_xid();
        return this_start_next_xid;
    }
    if (known_count < 0) {
        MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

        known_count = Max(starts_read(&known, ERROR), 0);
        MemoryContextSwitchTo(old);
    }
    hi = known_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;

        if (known[mid].start == start)
            return known[mid].next_xid;
        if (known[mid].start < start)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

/* See the file header.  An xid of epoch 2^16 or more (2.8e14 xids into
 * the cluster's life) cannot carry the number: refused. */
uint64
hotstock_xid_encode(FullTransactionId fxid)
{
    uint64 v = U64FromFullTransactionId(fxid);

    if ((v & ~XID_FXID_MASK) != 0)
        ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                        errmsg("hotstock cannot tie a deduction to transaction " UINT64_FORMAT
                               ": its xid epoch %u is past 65535",
                               v, EpochFromFullTransactionId(fxid)),
                        errhint("Deduct in autocommit SELECT statements (no xid).")));
    return v | ((uint64)start_field(starts_shared->start) << XID_START_SHIFT);
}

/* The full xid in an encoded one, for messages. */
uint64
hotstock_xid_full(uint64 encoded)
{
    return encoded & XID_FXID_MASK;
}

/*
 * The full xid of an encoded xid, in *fxid; true when it is an xid of an
 * earlier start at or above the counter the start after it began with:
 * one that never committed (whatever the commit log now says of it).
 */
bool
hotstock_xid_decode(uint64 encoded, FullTransactionId *fxid)
{
    uint32 field = (uint32)(encoded >> XID_START_SHIFT) & 0x7FFF;
    uint32 now = start_field(starts_shared->start);
    uint64 back, v;

    *fxid = FullTransactionIdFromU64(encoded & XID_FXID_MASK);
    if (field == 0 || field == now)
        return false; /* no start (made durable in the WAL), or this one */
    /* the latest start at or before this one that has this field */
    back = (now + HS_START_FIELDS - field) % HS_START_FIELDS;
    if (back >= starts_shared->start)
        return false; /* no such start: older than the file (plain answer) */
    v = start_next_xid(starts_shared->start - back + 1);
    return v != 0 && U64FromFullTransactionId(*fxid) >= v;
}
