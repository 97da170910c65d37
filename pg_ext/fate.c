/*-------------------------------------------------------------------------
 *
 * fate.c
 *      What became of the transaction that made a deduction: committed,
 *      aborted (or died in a crash), still running (or prepared), or ours.
 *
 * A DEDUCT made inside a transaction block or a subtransaction carries the
 * full xid of the (sub)transaction that ran it (api.c).  Its units belong
 * to the buyer only if that transaction commits; the drain and a deduct
 * retry ask here, and compensate a deduction whose transaction did not.
 *
 * The answer comes from PostgreSQL's own commit log, asked in the order
 * heapam's visibility checks use: TransactionIdIsInProgress() before
 * TransactionIdDidCommit(), because a committing transaction marks the
 * commit log before it leaves the proc array; asked the other way round, a
 * commit landing between the two calls would read as an abort.  A
 * transaction neither running nor committed aborted, explicitly or by a
 * crash (a backend killed, a postmaster crash, a power loss): PostgreSQL
 * never commits it later.  Prepared transactions are in the proc array
 * until COMMIT PREPARED or ROLLBACK PREPARED, across restarts, so they read
 * as running.  A subtransaction's xid reads as running while its parent
 * runs (if it was released) and as aborted once it was rolled back.
 *
 * An xid at or past the xid counter never reached the WAL (a commit
 * record would have moved recovery past it): its transaction died in a
 * crash, aborted.  Such an xid may be handed out again after that crash;
 * the deduction's xid carries the number of the server start it was taken
 * in, and an xid of an earlier start at or above the counter the next
 * start began with reads as aborted whatever its new transaction does
 * (starts.c).  An xid whose commit-log page may have been truncated
 * (older than the oldest xid the commit log keeps, or from an earlier
 * epoch) has no answer: HS_FATE_UNKNOWN, which every caller treats as
 * committed.  So
 * the doubt costs at worst units held back, never a sale undone.  The
 * truncation horizon is read under XactTruncationLock, held over the
 * commit-log look-up, as pg_xact_status() does.
 *
 * Shares nothing; reads PostgreSQL's transaction state only.  Calls
 * starts.c only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "tcop/pquery.h"
#include "utils/portal.h"

#include "hotstock_ext.h"

/*
 * Is fxid (below next, the xid counter) one whose commit-log entry still
 * exists?  The caller holds XactTruncationLock.  Sets *xid to its 32-bit
 * form.
 */
static bool
xid_in_recent_past(FullTransactionId fxid, FullTransactionId next, TransactionId *xid)
{
    uint32 epoch = EpochFromFullTransactionId(fxid);
    uint32 now_epoch = EpochFromFullTransactionId(next);

    *xid = XidFromFullTransactionId(fxid);
    if (!TransactionIdIsNormal(*xid) || !FullTransactionIdPrecedes(fxid, next))
        return false;
    if (epoch + 1 < now_epoch || (epoch + 1 == now_epoch && *xid < XidFromFullTransactionId(next)))
        return false;
    return !TransactionIdPrecedes(*xid, ShmemVariableCache->oldestClogXid);
}

/* See the file header.  fxid_u64: as hotstock_deduct_xid() made it. */
HotstockXidFate
hotstock_xid_fate(uint64 fxid_u64, TransactionId *xid_out)
{
    FullTransactionId fxid;
    FullTransactionId next;
    TransactionId xid = InvalidTransactionId;
    HotstockXidFate fate;
    bool died;

    if (xid_out != NULL)
        *xid_out = InvalidTransactionId;
    if (fxid_u64 == 0)
        return HS_FATE_NONE;
    died = hotstock_xid_decode(fxid_u64, &fxid);

    LWLockAcquire(XactTruncationLock, LW_SHARED);
    next = ReadNextFullTransactionId();
    if (died)
        fate = HS_FATE_ABORTED; /* of an earlier start, never in the WAL (maybe handed out
                                 * again since) */
    else if (!FullTransactionIdPrecedes(fxid, next))
        fate = HS_FATE_ABORTED; /* past the counter: it never reached the WAL, so never
                                 * committed (a crash lost it) */
    else if (!xid_in_recent_past(fxid, next, &xid))
        fate = HS_FATE_UNKNOWN;
    else if (TransactionIdIsCurrentTransactionId(xid))
        fate = HS_FATE_MINE;
    else if (TransactionIdIsInProgress(xid))
        fate = HS_FATE_IN_PROGRESS;
    else if (TransactionIdDidCommit(xid))
        fate = HS_FATE_COMMITTED;
    else
        fate = HS_FATE_ABORTED;
    LWLockRelease(XactTruncationLock);

    if (xid_out != NULL)
        *xid_out = xid;
    return fate;
}

/* "committed", "aborted", ... for messages. */
const char *
hotstock_xid_fate_name(HotstockXidFate fate)
{
    switch (fate) {
    case HS_FATE_NONE:
        return "none";
    case HS_FATE_MINE:
        return "this transaction";
    case HS_FATE_IN_PROGRESS:
        return "in progress";
    case HS_FATE_COMMITTED:
        return "committed";
    case HS_FATE_ABORTED:
        return "aborted";
    case HS_FATE_UNKNOWN:
        return "unknown";
    }
    return "unknown";
}

/*
 * The xid a deduction made now carries: the current (sub)transaction's,
 * assigned now if need be, when the call runs inside a transaction block,
 * a subtransaction, a transaction that has an xid already, or a top-level
 * statement other than a SELECT (INSERT ... WHERE hotstock.deduct(...),
 * CALL, DO: it writes, so it would get an xid anyway).  0 for a deduct in a
 * plain autocommit SELECT, which has nothing else to commit: its deduction
 * is final when the call returns (a failing statement is undone by the
 * abort callback; a kill after the return leaves an acknowledged or an
 * "unknown" deduction, which a retry with the same order id settles).  A
 * SELECT of a function that deducts and then writes is such a statement
 * too: call it in a transaction block to tie the deduction to it.
 *
 * The xid carries the number of this server start (starts.c): if the
 * server dies before the xid reaches the WAL, recovery may hand it out
 * again, and the number tells the deduction's xid from the new one.  So
 * nothing is written to the WAL here, and the queue's flush is the only
 * one a deduct adds to its transaction's commit.  Assigning an xid makes
 * the commit write a commit record: a transaction block that deducts pays
 * one WAL flush at COMMIT, which an order transaction (deduct + INSERT)
 * pays anyway.
 */
uint64
hotstock_deduct_xid(void)
{
    if (!IsTransactionBlock() && !IsSubTransaction() &&
        !FullTransactionIdIsValid(GetTopFullTransactionIdIfAny()) &&
        (ActivePortal == NULL || ActivePortal->commandTag == CMDTAG_SELECT))
        return 0;
    return hotstock_xid_encode(GetCurrentFullTransactionId());
}
