/*-------------------------------------------------------------------------
 *
 * xact.c
 *      Transaction callbacks: what a deduct, refund, reserve, confirm or
 *      cancel must finish at commit or undo at abort.
 *
 * Owns:
 *
 *  - Per-transaction state: pending_actions, a list in TopTransactionContext
 *    of what this transaction did to the segment that must be finished at
 *    commit or undone at abort.  Only this backend touches it; it is
 *    emptied at every transaction end.  Each entry carries the
 *    subtransaction that created it, so ROLLBACK TO SAVEPOINT undoes exactly
 *    the entries of the aborted subtransactions.
 *
 *        kind            at (sub)abort        at commit          at PREPARE
 *        deduct          hs_refund (undo)     -                  left to the drain
 *        reserve         hs_compensate (xid): -                  left to the drain
 *                        the hold is cancelled
 *        refund claim    hs_refund_release    hs_refund_commit   refused
 *        evicted refund  (its ledger update   hs_refund_evicted  refused
 *                         rolls back)
 *        confirm claim   hs_hold_release;     hs_hold_commit at  hs_hold_commit
 *                        hs_refund once       PRE_COMMIT (may    (left to the drain)
 *                        committed            raise: aborts)
 *        cancel claim    hs_hold_release      hs_hold_commit     refused
 *
 *    A claim on a basket of holds (confirm or cancel of a basket id, lines
 *    set) is one entry under the basket's id, applied or released with
 *    hs_basket_commit / hs_basket_release (every line, or none) in place
 *    of hs_hold_*; a confirmed basket is refunded line by line at abort.
 *    A reserve_basket() adds one reserve entry per line (each line a hold
 *    of its own: cancelled line by line), a deduct_basket() one deduct
 *    entry per line.
 *
 *    A deduct entry also stands for a confirm done at once (autocommit)
 *    and for a retake (confirm(..., retake => true)): each is a sale, undone
 *    by a refund.  A confirm in a transaction block is claimed at the call
 *    (the hold cannot expire or be cancelled meanwhile) and made at
 *    XACT_EVENT_PRE_COMMIT, so a confirm that fails there (the daemon
 *    down, the claim lost with a daemon restart and the hold expired)
 *    fails the COMMIT: the caller's transaction and the sale stand or fall
 *    together.  Its CONFIRM record carries the xid, so a transaction that
 *    still fails after that (or dies) is compensated like a deduction.  A
 *    cancel gives units back, so like a refund it happens only once the
 *    transaction has committed; if the daemon cannot take it then, the
 *    claim is released and the hold expires at its deadline.
 *
 *    The undo at abort is the fast path; the safety net is the drain: a
 *    deduction made in a transaction block carries its (sub)transaction's
 *    xid, and the drain compensates every one whose transaction did not
 *    commit (fate.c, drain.c) -- also when this backend was killed before
 *    it could undo anything, or its undo failed.
 *
 *    A refund gives units back only once its transaction has committed
 *    (XACT_EVENT_COMMIT, after the commit record is durable), whether the
 *    call ran in a transaction block or in autocommit: if the caller's
 *    transaction dies in any way before that, the order stays deducted and
 *    no unit the caller still counts as sold goes back on sale.  The refund
 *    itself is durable before that: its row in hotstock.refund_requests (or
 *    the ledger mark of an evicted order) commits with the transaction, and
 *    the drain applies, exactly once, whatever the commit callback could
 *    not (daemon down, disk full, a kill between commit and callback).
 *
 *    Claims are released before deductions are compensated: compensating
 *    an order this transaction claimed would otherwise wait on our own
 *    claim.  An autocommit deduct adds one small entry, and the commit
 *    callback only walks past it: no call into the segment at commit.
 *
 * Must not raise at commit or abort (it warns; it raises only at
 * PRE_COMMIT and PRE_PREPARE, where an error aborts the transaction), and
 * must not run SQL.
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

/* newest first; lives in TopTransactionContext, NULL between transactions */
static PendingAction *pending_actions = NULL;

/* The highest LSN of this transaction's takes whose durability is waited
 * for at PRE_COMMIT / PRE_PREPARE (session.c, hotstock_wait_durable_take);
 * 0: none.  Reset at every transaction end. */
static hs_lsn commit_wait_lsn = 0;

/* Wait for lsn at PRE_COMMIT (hotstock_wait_durable_take()). */
static void
wait_at_commit(hs_lsn lsn)
{
    if (lsn > commit_wait_lsn)
        commit_wait_lsn = lsn;
}
/*
 * A take's durability (deduct, reserve, the baskets; hotstock.synchronous
 * on): outside a transaction block, waited for now, as
 * hotstock_wait_durable(); inside one, only asked for now (the flush runs
 * while the transaction goes on) and waited for at PRE_COMMIT or
 * PRE_PREPARE (below), where a daemon that died first fails the COMMIT:
 * the transaction and its takes stand or fall together, and the commit
 * pays for about one flush of each side, not one per call.
 */
void
hotstock_wait_durable_take(hs_client *c, hs_lsn lsn)
{
    if (!IsTransactionBlock()) {
        hotstock_wait_durable(c, lsn);
        return;
    }
    wait_at_commit(lsn);
    hs_flush_soon(c, lsn);
}

/* hotstock_wait_durable_take() of everything reserved so far (a retry's
 * original record is among it). */
void
hotstock_wait_durable_take_now(hs_client *c)
{
    hs_lsn lsn = hotstock_last_undurable_lsn(c);

    if (lsn != 0)
        hotstock_wait_durable_take(c, lsn);
}



/* At PRE_COMMIT or PRE_PREPARE: the takes' records durable, or raise
 * (HS001: the transaction aborts, its takes are undone). */
static void
wait_takes_durable(void)
{
    if (commit_wait_lsn != 0 && hotstock_backend_client != NULL)
        hotstock_wait_durable(hotstock_backend_client, commit_wait_lsn);
    commit_wait_lsn = 0;
}

/* Add an entry to this transaction's pending list. */
PendingAction *
hotstock_remember(PendingKind kind, const char *order_id, size_t order_len)
{
    PendingAction *a = MemoryContextAlloc(TopTransactionContext, sizeof(PendingAction));

    a->kind = kind;
    a->subid = GetCurrentSubTransactionId();
    a->committed = false;
    a->action = HS_HOLD_CONFIRM;
    a->retake = false;
    a->xid = 0;
    a->lines = 0;
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

PendingAction *
hotstock_find_pending(PendingKind kind, const char *order_id, size_t order_len)
{
    for (PendingAction *a = pending_actions; a != NULL; a = a->next)
        if (a->kind == kind && a->order_len == order_len &&
            memcmp(a->order_id, order_id, order_len) == 0)
            return a;
    return NULL;
}

/* Apply a hold claim: hs_hold_commit, or for a basket's claim (lines set)
 * hs_basket_commit, which settles every line. */
static hs_result
claim_commit(PendingAction *a, hs_lsn *lsn)
{
    if (a->lines > 0)
        return hs_basket_commit(hotstock_backend_client, a->action, a->order_id, a->order_len,
                                a->xid, lsn);
    return hs_hold_commit(hotstock_backend_client, a->action, a->order_id, a->order_len, a->xid,
                          lsn);
}

/* Give up a hold claim: hs_hold_release, or hs_basket_release (every line). */
static hs_result
claim_release(PendingAction *a)
{
    if (a->lines > 0)
        return hs_basket_release(hotstock_backend_client, a->action, a->order_id, a->order_len);
    return hs_hold_release(hotstock_backend_client, a->action, a->order_id, a->order_len);
}

/*
 * Undo the sale of order_id (a deduction, a confirm, a retake; a line of
 * a confirmed basket) after its (sub)transaction aborted: hs_refund.  Never
 * raises, only warns.
 */
static void
undo_sale(const char *order_id, size_t order_len)
{
    hs_lsn lsn;
    int32 qty;
    hs_result r = hs_refund(hotstock_backend_client, order_id, order_len, &lsn, &qty, NULL);

    /*
     * hotstock.synchronous covers the undo too: a ROLLBACK returns only
     * once the compensating REFUND record is on disk, so a power loss
     * cannot keep the deduct and drop its undo.
     */
    if (r == HS_OK && hotstock_synchronous &&
        hotstock_wait_durable_core(hotstock_backend_client, lsn, false) != HS_OK)
        ereport(WARNING,
                (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                 errmsg("could not undo the deduction of order \"%s\" durably", order_id),
                 errdetail("The undo is applied, but hotstockd stopped before its record was "
                           "synced: a crash may lose it, and the units then stay held back "
                           "until hotstock.refund('%s') succeeds.",
                           order_id)));
    if (r != HS_OK && r != HS_ALREADY_REFUNDED)
        ereport(WARNING,
                (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                 errmsg("could not undo the deduction of order \"%s\" after rollback: %s", order_id,
                        hs_result_name(r)),
                 errdetail("Its transaction did not commit: the drain returns its units once it "
                           "sees that (or hotstock.refund('%s') does).",
                           order_id)));
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

    /* first release our claims: a compensating refund would wait on them */
    for (a = pending_actions; a != NULL; a = a->next) {
        if (MATCHES(a) && a->kind == PENDING_REFUND_CLAIM && !a->committed) {
            hs_result r = hs_refund_release(hotstock_backend_client, a->order_id, a->order_len);

            if (r != HS_OK && r != HS_ALREADY_REFUNDED && r != HS_NOT_FOUND)
                ereport(WARNING, (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                                  errmsg("could not release the refund claim of order \"%s\": %s",
                                         a->order_id, hs_result_name(r)),
                                  errdetail("The next refund of this order releases it.")));
        }
        if (MATCHES(a) && a->kind == PENDING_HOLD_CLAIM && !a->committed) {
            hs_result r = claim_release(a);

            if (r != HS_OK)
                ereport(WARNING, (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                                  errmsg("could not release the %s claim of order \"%s\": %s",
                                         a->action == HS_HOLD_CONFIRM ? "confirm" : "cancel",
                                         a->order_id, hs_result_name(r)),
                                  errdetail("A restarted hotstockd has no claim left; else "
                                            "whoever next confirms, cancels or expires the "
                                            "hold releases it once this session ends.")));
        }
    }

    /* then the sales: deductions, confirms (of a basket: every line), retakes */
    for (a = pending_actions; a != NULL; a = a->next) {
        if (!MATCHES(a))
            continue;
        if (a->kind == PENDING_DEDUCT || (a->kind == PENDING_HOLD_CLAIM && a->committed &&
                                          a->action == HS_HOLD_CONFIRM && a->lines == 0))
            undo_sale(a->order_id, a->order_len);
        else if (a->kind == PENDING_HOLD_CLAIM && a->committed && a->action == HS_HOLD_CONFIRM) {
            for (int i = 0; i < a->lines; i++) {
                char line[HS_ORDER_ID_MAX + 1];

                undo_sale(line, hs_basket_line_id(a->order_id, a->order_len, i, a->lines, line));
            }
        }
    }

    /* last the reservations (one confirmed in this transaction is refunded
     * above already): cancelled, as the drain would (by their xid) */
    for (a = pending_actions; a != NULL; a = a->next) {
        if (MATCHES(a) && a->kind == PENDING_RESERVE) {
            hs_lsn lsn = 0;
            int32 qty;
            hs_result r = hs_compensate(hotstock_backend_client, a->order_id, a->order_len, a->xid,
                                        &lsn, &qty, NULL);

            if (r == HS_OK && hotstock_synchronous &&
                hotstock_wait_durable_core(hotstock_backend_client, lsn, false) != HS_OK)
                ereport(
                    WARNING,
                    (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                     errmsg("could not undo the reservation of order \"%s\" durably", a->order_id),
                     errdetail("The undo is applied, but hotstockd stopped before its record "
                               "was synced: a crash may lose it; the hold then expires at "
                               "its deadline, or the drain cancels it.")));
            /* HS_ALREADY_REFUNDED: cancelled, expired (or confirmed and
             * refunded) already; HS_ORDER_MISMATCH: another transaction
             * confirmed it, and its sale stands */
            if (r != HS_OK && r != HS_ALREADY_REFUNDED && r != HS_ORDER_MISMATCH)
                ereport(WARNING,
                        (errcode(ERRCODE_HOTSTOCK_DAEMON_DOWN),
                         errmsg("could not undo the reservation of order \"%s\" after "
                                "rollback: %s",
                                a->order_id, hs_result_name(r)),
                         errdetail("Its transaction did not commit: the drain cancels it once "
                                   "it sees that, or it expires at its deadline.")));
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
 * At commit: apply this transaction's claim on a.  Never raises.  The
 * refund is already durable: its row in hotstock.refund_requests committed
 * with the transaction.  So nothing waits for the REFUND record's fsync
 * (if a crash loses it, the order comes back DEDUCTED and the drain
 * refunds it again from the row), and a record the daemon cannot take now
 * (down, disk full) is left to the drain: the claim is released and a
 * WARNING says the units come back later.
 */
static void
refund_claimed_order(PendingAction *a)
{
    hs_lsn lsn = 0;
    int32 qty;
    hs_result r =
        hs_refund_commit(hotstock_backend_client, a->order_id, a->order_len, &lsn, &qty, NULL);

    if (r == HS_OK) {
        a->committed = true;
        return;
    }
    if (r == HS_ALREADY_REFUNDED)
        return;
    (void)hs_refund_release(hotstock_backend_client, a->order_id, a->order_len);
    ereport(WARNING,
            (errcode(r == HS_DAEMON_DOWN ? ERRCODE_HOTSTOCK_DAEMON_DOWN
                                         : ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("refund of order \"%s\" is committed; its units will be returned by the drain",
                    a->order_id),
             errdetail("hotstockd could not take the refund now (%s); the committed refund "
                       "request is applied, once, as soon as it can.",
                       hs_result_name(r)),
             errhint("hotstock.status shows pending_refunds.")));
}

/*
 * At commit: the ledger says refunded now (database-first refund of an
 * evicted order): hand the units back.  Never raises.
 */
static void
refund_evicted_order(PendingAction *a)
{
    hs_lsn lsn;
    hs_result r = hs_refund_evicted(hotstock_backend_client, a->sku, a->sku_len, a->qty,
                                    a->order_id, a->order_len, a->evicted_checked, &lsn);

    if (r != HS_OK && r != HS_ALREADY_REFUNDED)
        ereport(WARNING, (errcode(r == HS_DAEMON_DOWN ? ERRCODE_HOTSTOCK_DAEMON_DOWN
                                                      : ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                          errmsg("refund of order \"%s\" is committed; its units will be returned "
                                 "by the drain",
                                 a->order_id),
                          errdetail("It is marked refunded in hotstock.ledger; hotstockd could not "
                                    "take its %d units now (%s): the drain returns them, once, as "
                                    "soon as it can.",
                                    a->qty, hs_result_name(r))));
}

/*
 * At PRE_COMMIT (or PRE_PREPARE): make this transaction's confirm claim on
 * a a sale: the CONFIRM record, carrying the xid of the (sub)transaction
 * that called confirm(), and with hotstock.synchronous its fsync.  Raises
 * when it cannot, which aborts the transaction: the hold then stays
 * reserved (released at abort) or has ended.  A claim lost with a daemon
 * restart is claimed anew by hs_hold_commit(), and may find the hold
 * expired; with retake the units are then taken anew if there are enough.
 */
static void
confirm_claimed_hold(PendingAction *a)
{
    hs_client *c = hotstock_backend_client;
    hs_lsn lsn = 0;
    hs_result r = claim_commit(a, &lsn);

    if ((r == HS_HOLD_EXPIRED || r == HS_HOLD_CANCELLED) && a->retake) {
        hs_result ended = r;

        r = hs_hold_retake(c, a->order_id, a->order_len, a->xid, hs_evicted_lsn(c), &lsn);
        if (r == HS_SOLD_OUT)
            ereport(ERROR, (errcode(ended == HS_HOLD_EXPIRED ? ERRCODE_HOTSTOCK_HOLD_EXPIRED
                                                             : ERRCODE_HOTSTOCK_HOLD_CANCELLED),
                            errmsg(ended == HS_HOLD_EXPIRED ? "reservation expired"
                                                            : "reservation cancelled"),
                            errdetail("The hold of order \"%s\" ended before the commit could "
                                      "confirm it, and too few units are left to take it anew.",
                                      a->order_id)));
    }
    if (r == HS_OK)
        a->committed = true; /* a sale now: an abort from here on refunds it */
    else if (r == HS_DUPLICATE)
        return; /* confirmed (or taken anew) before */
    else
        hotstock_raise(r, a->order_id);
    if (hotstock_synchronous)
        hotstock_wait_durable(c, lsn);
}

/*
 * At commit: apply this transaction's cancel claim on a.  Never raises.  If
 * the daemon cannot take the CANCEL now, the claim is released and the
 * hold expires at its deadline (the units come back then, not now).
 */
static void
cancel_claimed_hold(PendingAction *a)
{
    hs_lsn lsn = 0;
    hs_result r = claim_commit(a, &lsn);

    if (r == HS_OK) {
        a->committed = true;
        return;
    }
    /* cancelled before, or expired: nothing left to give back */
    if (r == HS_DUPLICATE || r == HS_HOLD_CANCELLED || r == HS_HOLD_EXPIRED)
        return;
    (void)claim_release(a);
    ereport(WARNING,
            (errcode(r == HS_DAEMON_DOWN ? ERRCODE_HOTSTOCK_DAEMON_DOWN
                                         : ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("cancel of order \"%s\" is committed; its units come back when the hold "
                    "expires",
                    a->order_id),
             errdetail("hotstockd could not take the cancel now (%s); the hold stays until its "
                       "deadline, when the daemon expires it.",
                       hs_result_name(r)),
             errhint("Call hotstock.cancel('%s') again to return the units sooner.", a->order_id)));
}

/*
 * Transaction callback.  Cheap when the transaction did nothing here (one
 * NULL test); an autocommit deduct costs one list walk at commit.
 */
void
hotstock_xact_callback(XactEvent event, void *arg)
{
    PendingAction *a;

    if (pending_actions == NULL && commit_wait_lsn == 0)
        return;

    switch (event) {
    case XACT_EVENT_PRE_COMMIT:
        wait_takes_durable();

        /*
         * Still able to fail the commit: confirms become sales here, so
         * that a confirm that cannot be made aborts its transaction.
         */
        for (a = pending_actions; a != NULL; a = a->next)
            if (a->kind == PENDING_HOLD_CLAIM && a->action == HS_HOLD_CONFIRM && !a->committed)
                confirm_claimed_hold(a);
        break;

    case XACT_EVENT_COMMIT:

        /*
         * The transaction is committed and durable: only now do refunds
         * and cancels give their units back.  Nothing may raise here; a
         * refund that fails leaves its units held back (undersold), never
         * sold twice, and says so; a cancel that fails leaves the hold to
         * expire.
         */
        for (a = pending_actions; a != NULL; a = a->next) {
            if (a->kind == PENDING_REFUND_CLAIM)
                refund_claimed_order(a);
            else if (a->kind == PENDING_REFUND_EVICTED)
                refund_evicted_order(a);
            else if (a->kind == PENDING_HOLD_CLAIM && a->action == HS_HOLD_CANCEL)
                cancel_claimed_hold(a);
        }
        pending_actions = NULL;
        commit_wait_lsn = 0;
        break;

    case XACT_EVENT_ABORT:
        undo_actions(InvalidSubTransactionId);
        pending_actions = NULL;
        commit_wait_lsn = 0;
        break;

    case XACT_EVENT_PRE_PREPARE:

        /*
         * A prepared transaction outlives this session: its deductions,
         * reservations and confirms carry its xid, and the drain settles
         * them by its fate (fate.c) -- units stay out until COMMIT
         * PREPARED, and come back after ROLLBACK PREPARED, across
         * restarts.  So a confirm is made now, like at PRE_COMMIT.  A
         * refund's or a cancel's claim lives in this session only, and
         * gives units back, which must wait for the commit: refuse.
         */
        for (a = pending_actions; a != NULL; a = a->next) {
            if (a->kind == PENDING_REFUND_CLAIM || a->kind == PENDING_REFUND_EVICTED)
                ereport(ERROR,
                        (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                         errmsg("cannot prepare a transaction that called hotstock.refund()"),
                         errdetail("A refund is applied by the session that commits it."),
                         errhint("Refund in a transaction that is not prepared.")));
            if (a->kind == PENDING_HOLD_CLAIM && a->action == HS_HOLD_CANCEL)
                ereport(ERROR,
                        (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                         errmsg("cannot prepare a transaction that called hotstock.cancel()"),
                         errdetail("A cancel is applied by the session that commits it."),
                         errhint("Cancel in a transaction that is not prepared.")));
        }
        for (a = pending_actions; a != NULL; a = a->next)
            if (a->kind == PENDING_HOLD_CLAIM && a->action == HS_HOLD_CONFIRM && !a->committed)
                confirm_claimed_hold(a);
        wait_takes_durable();
        break;

    case XACT_EVENT_PREPARE:
        /* the drain owns the deductions' (and holds') fate from here on */
        pending_actions = NULL;
        commit_wait_lsn = 0;
        break;

    default:
        break;
    }
}

/* Subtransaction callback: hand entries up at commit, undo them at abort. */
void
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
