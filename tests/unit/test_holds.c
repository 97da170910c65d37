/*-------------------------------------------------------------------------
 *
 * test_holds.c
 *      Holds (reservations with a time-to-live) against a real hotstockd:
 *      reserve, confirm, cancel, expiry by the daemon, two-phase claims,
 *      retake, compensation, a dead settler (and one killed between its
 *      last two stores), and holds across a clean
 *      restart and a SIGKILL (deadlines kept; a hold due while no daemon
 *      ran expires at once).
 *
 * Each check asserts units (hs_available) as well as states: a hold takes
 * its units at once, and gives them back exactly once, or never when
 * confirmed.  Expiry is polled with a bound, and the measured delay after
 * the deadline is checked (goal: under one second).
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <signal.h>
#include <sys/wait.h>

#include "daemon_ctl.h"
#include "forge.h"
#include "client_check.h"
#include "hotstock.h"
#include "segment.h"

static hs_order_status_code
status_of(hs_client *c, const char *order)
{
    hs_order_status_code st = HS_ORDER_STATUS_UNKNOWN;

    (void)hs_order_status(c, S(order), &st, NULL, NULL);
    return st;
}

static uint64_t
now_ms(void)
{
    return hs_now_unix_us() / 1000;
}

/* Poll until order's status is want (bound: timeout_s); the ms past
 * deadline_ms at which it was first seen, or -1. */
static int64_t
wait_status(hs_client *c, const char *order, hs_order_status_code want, uint64_t deadline_ms,
            double timeout_s)
{
    double t0 = hs_test_seconds();

    while (hs_test_seconds() - t0 < timeout_s) {
        if (status_of(c, order) == want)
            return (int64_t)(now_ms() - deadline_ms);
        usleep(2000);
    }
    return -1;
}

static void
test_basics(hs_client *c)
{
    hs_lsn lsn;
    uint64_t exp = 0, exp2 = 0;
    int64_t a0;

    CHECK_R(hs_put_sku(c, S("tv"), 10, NULL), HS_OK);
    a0 = avail(c, "tv");
    CHECK_EQ(a0, 10);

    /* argument checks */
    CHECK_R(hs_reserve(c, S("tv"), 1, S("r-0"), 0, 0, UINT64_MAX, &lsn, NULL), HS_BAD_ARGUMENT);
    CHECK_R(hs_reserve(c, S("tv"), 1, S("r-0"), 0, HS_TTL_MAX_MS + 1, UINT64_MAX, &lsn, NULL),
            HS_BAD_ARGUMENT);
    CHECK_R(hs_hold_settle(c, 3, S("r-0"), 0, &lsn), HS_BAD_ARGUMENT);

    /* reserve: units leave at once; a retry is a duplicate with the same deadline */
    CHECK_R(hs_reserve(c, S("tv"), 2, S("r-1"), 0, 60000, UINT64_MAX, &lsn, &exp), HS_OK);
    CHECK(lsn > 0);
    CHECK(exp >= now_ms() + 59000 && exp <= now_ms() + 60000);
    CHECK_EQ(avail(c, "tv"), 8);
    CHECK_EQ(status_of(c, "r-1"), HS_ORDER_STATUS_RESERVED);
    CHECK_R(hs_reserve(c, S("tv"), 2, S("r-1"), 0, 60000, UINT64_MAX, &lsn, &exp2), HS_DUPLICATE);
    CHECK_EQ(exp2, exp);
    CHECK_R(hs_reserve(c, S("tv"), 3, S("r-1"), 0, 60000, UINT64_MAX, &lsn, NULL),
            HS_ORDER_MISMATCH);
    CHECK_R(hs_deduct(c, S("tv"), 2, S("r-1"), 0, &lsn), HS_ORDER_MISMATCH);
    CHECK_R(hs_refund(c, S("r-1"), &lsn, NULL, NULL), HS_HELD);
    CHECK_EQ(avail(c, "tv"), 8);

    /* confirm: a sale; retries are duplicates; cancel refuses; refund works */
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("r-1"), 0, &lsn), HS_OK);
    CHECK(lsn > 0);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("r-1"), 0, &lsn), HS_DUPLICATE);
    CHECK_R(hs_reserve(c, S("tv"), 2, S("r-1"), 0, 60000, UINT64_MAX, &lsn, NULL), HS_DUPLICATE);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CANCEL, S("r-1"), 0, &lsn), HS_NOT_HELD);
    CHECK_EQ(status_of(c, "r-1"), HS_ORDER_STATUS_DEDUCTED);
    CHECK_EQ(avail(c, "tv"), 8);
    CHECK_R(hs_refund(c, S("r-1"), &lsn, NULL, NULL), HS_OK);
    CHECK_EQ(avail(c, "tv"), 10);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("r-1"), 0, &lsn), HS_ALREADY_REFUNDED);

    /* cancel: units back once; confirm then says cancelled; retake takes anew */
    CHECK_R(hs_reserve(c, S("tv"), 3, S("r-2"), 0, 60000, UINT64_MAX, &lsn, NULL), HS_OK);
    CHECK_EQ(avail(c, "tv"), 7);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CANCEL, S("r-2"), 0, &lsn), HS_OK);
    CHECK_EQ(avail(c, "tv"), 10);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CANCEL, S("r-2"), 0, &lsn), HS_DUPLICATE);
    CHECK_EQ(avail(c, "tv"), 10);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("r-2"), 0, &lsn), HS_HOLD_CANCELLED);
    CHECK_R(hs_reserve(c, S("tv"), 3, S("r-2"), 0, 60000, UINT64_MAX, &lsn, NULL),
            HS_HOLD_CANCELLED);
    CHECK_R(hs_deduct(c, S("tv"), 3, S("r-2"), 0, &lsn), HS_HOLD_CANCELLED);
    CHECK_EQ(status_of(c, "r-2"), HS_ORDER_STATUS_CANCELLED);
    CHECK_R(hs_hold_retake(c, S("r-2"), 0, UINT64_MAX, &lsn), HS_OK);
    CHECK_EQ(avail(c, "tv"), 7);
    CHECK_EQ(status_of(c, "r-2"), HS_ORDER_STATUS_DEDUCTED);
    CHECK_R(hs_hold_retake(c, S("r-2"), 0, UINT64_MAX, &lsn), HS_DUPLICATE);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("r-2"), 0, &lsn), HS_DUPLICATE);
    CHECK_EQ(avail(c, "tv"), 7);
    CHECK_R(hs_hold_retake(c, S("nope"), 0, UINT64_MAX, &lsn), HS_NOT_FOUND);
    CHECK_R(hs_deduct(c, S("tv"), 1, S("plain"), 0, &lsn), HS_OK);
    CHECK_R(hs_hold_retake(c, S("plain"), 0, UINT64_MAX, &lsn), HS_NOT_HELD);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("plain"), 0, &lsn), HS_NOT_HELD);
    CHECK_R(hs_reserve(c, S("tv"), 1, S("plain"), 0, 60000, UINT64_MAX, &lsn, NULL),
            HS_ORDER_MISMATCH);
    CHECK_EQ(avail(c, "tv"), 6);

    /* sold out: a hold never takes more than is available */
    CHECK_R(hs_reserve(c, S("tv"), 7, S("r-3"), 0, 60000, UINT64_MAX, &lsn, NULL), HS_SOLD_OUT);
    CHECK_R(hs_reserve(c, S("tv"), 6, S("r-3"), 0, 60000, UINT64_MAX, &lsn, NULL), HS_OK);
    CHECK_EQ(avail(c, "tv"), 0);
    CHECK_R(hs_deduct(c, S("tv"), 1, S("r-4"), 0, &lsn), HS_SOLD_OUT);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CANCEL, S("r-3"), 0, &lsn), HS_OK);
    CHECK_EQ(avail(c, "tv"), 6);
    CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
}

/* The daemon expires holds at their deadline; a confirm after the deadline
 * never wins; a claimed hold is not expired until its claim is released. */
static void
test_expiry(hs_client *c)
{
    hs_lsn lsn;
    uint64_t exp = 0;
    int64_t late;

    CHECK_R(hs_put_sku(c, S("cam"), 5, NULL), HS_OK);
    CHECK_R(hs_reserve(c, S("cam"), 2, S("e-1"), 0, 300, UINT64_MAX, &lsn, &exp), HS_OK);
    CHECK_EQ(avail(c, "cam"), 3);
    late = wait_status(c, "e-1", HS_ORDER_STATUS_EXPIRED, exp, 5);
    CHECK(late >= 0 && late < 1000);
    printf("# expiry seen %" PRId64 " ms after the deadline\n", late);
    CHECK_EQ(avail(c, "cam"), 5);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("e-1"), 0, &lsn), HS_HOLD_EXPIRED);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CANCEL, S("e-1"), 0, &lsn), HS_HOLD_EXPIRED);
    CHECK_R(hs_reserve(c, S("cam"), 2, S("e-1"), 0, 300, UINT64_MAX, &lsn, NULL), HS_HOLD_EXPIRED);
    CHECK_EQ(avail(c, "cam"), 5);

    /* a confirm at or after the deadline expires the hold itself */
    CHECK_R(hs_reserve(c, S("cam"), 1, S("e-2"), 0, 1, UINT64_MAX, &lsn, &exp), HS_OK);
    while (now_ms() < exp)
        usleep(100);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("e-2"), 0, &lsn), HS_HOLD_EXPIRED);
    CHECK_EQ(status_of(c, "e-2"), HS_ORDER_STATUS_EXPIRED);
    CHECK_EQ(avail(c, "cam"), 5);

    /* a claimed confirm outlives the deadline and commits */
    CHECK_R(hs_reserve(c, S("cam"), 1, S("e-3"), 0, 200, UINT64_MAX, &lsn, &exp), HS_OK);
    CHECK_R(hs_hold_claim(c, HS_HOLD_CONFIRM, S("e-3")), HS_OK);
    CHECK_R(hs_hold_claim(c, HS_HOLD_CONFIRM, S("e-3")), HS_DUPLICATE);
    CHECK_R(hs_hold_claim(c, HS_HOLD_CANCEL, S("e-3")), HS_ORDER_MISMATCH);
    usleep(600 * 1000);
    CHECK_EQ(status_of(c, "e-3"), HS_ORDER_STATUS_RESERVED);
    CHECK_R(hs_hold_commit(c, HS_HOLD_CONFIRM, S("e-3"), 42, &lsn), HS_OK);
    CHECK_EQ(status_of(c, "e-3"), HS_ORDER_STATUS_DEDUCTED);
    CHECK_EQ(avail(c, "cam"), 4);

    /* a released claim past the deadline: the daemon expires it */
    CHECK_R(hs_reserve(c, S("cam"), 1, S("e-4"), 0, 200, UINT64_MAX, &lsn, &exp), HS_OK);
    CHECK_R(hs_hold_claim(c, HS_HOLD_CANCEL, S("e-4")), HS_OK);
    usleep(400 * 1000);
    CHECK_EQ(status_of(c, "e-4"), HS_ORDER_STATUS_RESERVED);
    CHECK_R(hs_hold_release(c, HS_HOLD_CANCEL, S("e-4")), HS_OK);
    CHECK(wait_status(c, "e-4", HS_ORDER_STATUS_EXPIRED, exp, 5) >= 0);
    CHECK_EQ(avail(c, "cam"), 4);
}

/* Compensation cancels a hold of the xid given, once. */
static void
test_compensate(hs_client *c)
{
    hs_lsn lsn;
    int32_t q = 0;

    CHECK_R(hs_put_sku(c, S("mug"), 4, NULL), HS_OK);
    CHECK_R(hs_reserve(c, S("mug"), 3, S("x-1"), 77, 60000, UINT64_MAX, &lsn, NULL), HS_OK);
    CHECK_R(hs_compensate(c, S("x-1"), 78, &lsn, &q, NULL), HS_ORDER_MISMATCH);
    CHECK_R(hs_compensate(c, S("x-1"), 77, &lsn, &q, NULL), HS_OK);
    CHECK_EQ(q, 3);
    CHECK_EQ(status_of(c, "x-1"), HS_ORDER_STATUS_CANCELLED);
    CHECK_EQ(avail(c, "mug"), 4);
    CHECK_R(hs_compensate(c, S("x-1"), 77, &lsn, &q, NULL), HS_ALREADY_REFUNDED);
    CHECK_EQ(avail(c, "mug"), 4);
    /* a CONFIRM carries its transaction: compensating that xid refunds it */
    CHECK_R(hs_reserve(c, S("mug"), 1, S("x-2"), 0, 60000, UINT64_MAX, &lsn, NULL), HS_OK);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("x-2"), 99, &lsn), HS_OK);
    CHECK_R(hs_compensate(c, S("x-2"), 99, &lsn, &q, NULL), HS_OK);
    CHECK_EQ(status_of(c, "x-2"), HS_ORDER_STATUS_REFUNDED);
    CHECK_EQ(avail(c, "mug"), 4);
}

/* A settler killed while it holds a claim: the next one settles it from
 * `recorded` (no record: back to RESERVED), then expiry works. */
static void
test_dead_settler(hsd_ctl *d, hs_client *c)
{
    hs_lsn lsn;
    uint64_t exp = 0;
    pid_t child;
    int status;

    CHECK_R(hs_put_sku(c, S("pen"), 3, NULL), HS_OK);
    CHECK_R(hs_reserve(c, S("pen"), 1, S("d-1"), 0, 1500, UINT64_MAX, &lsn, &exp), HS_OK);
    child = fork();
    if (child == 0) {
        hs_client *cc = NULL;

        if (hs_attach(d->dir, &cc) != HS_OK ||
            hs_hold_claim(cc, HS_HOLD_CONFIRM, S("d-1")) != HS_OK)
            _exit(1);
        raise(SIGKILL);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status));
    CHECK_EQ(status_of(c, "d-1"), HS_ORDER_STATUS_RESERVED); /* claimed, dead */
    /* the daemon's expiry resolves the dead claim and expires the hold */
    CHECK(wait_status(c, "d-1", HS_ORDER_STATUS_EXPIRED, exp, 15) >= 0);
    CHECK_EQ(avail(c, "pen"), 3);
}

/* An owner killed between its last two stores (deducted_lsn = its record,
 * then its settled state) is settled by the type of the last record the
 * spiller folded, never by what the owner wrote: forged here by putting
 * the claim's state back over a slot the owner settled. */
static void
test_dead_between_stores(hsd_ctl *d, hs_client *c)
{
    char real[4096];
    hs_header *h = NULL;
    hs_order_slot *o;
    uint32_t oi;
    hs_lsn lsn;
    pid_t gone = hs_test_gone_pid();

    if (!CHECK(realpath(d->dir, real) != NULL) || !CHECK_R(hs_segment_map(real, &h), HS_OK))
        return;
    CHECK_R(hs_put_sku(c, S("cup"), 2, NULL), HS_OK);

    /* A canceller: CANCEL folded, the unit back, killed before CANCELLED.
     * Read as "no CANCEL", the hold would be live again and a confirm
     * would sell a unit that is back in `available`. */
    CHECK_R(hs_reserve(c, S("cup"), 1, S("b-1"), 0, 600000, UINT64_MAX, &lsn, NULL), HS_OK);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CANCEL, S("b-1"), 0, &lsn), HS_OK);
    CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    CHECK_EQ(avail(c, "cup"), 2);
    CHECK_R(hs_order_find(h, S("b-1"), &oi), HS_OK);
    o = &hs_order_table(h)[oi];
    CHECK(forge(&o->state, HS_INDEX_CANCELLED, HS_STATE_WORD(HS_INDEX_CANCELLING, gone)));
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("b-1"), 0, &lsn), HS_HOLD_CANCELLED);
    CHECK_EQ(status_of(c, "b-1"), HS_ORDER_STATUS_CANCELLED);
    CHECK_EQ(avail(c, "cup"), 2);

    /* A reserver: RESERVE folded, killed before RESERVED.  Read as "a
     * retake that took nothing", it would end EXPIRED with its unit never
     * given back. */
    CHECK_R(hs_reserve(c, S("cup"), 1, S("b-2"), 0, 600000, UINT64_MAX, &lsn, NULL), HS_OK);
    CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    CHECK_EQ(avail(c, "cup"), 1);
    CHECK_R(hs_order_find(h, S("b-2"), &oi), HS_OK);
    o = &hs_order_table(h)[oi];
    CHECK(forge(&o->state, HS_INDEX_RESERVED, HS_STATE_WORD(HS_INDEX_PENDING, gone)));
    CHECK_R(hs_hold_settle(c, HS_HOLD_CANCEL, S("b-2"), 0, &lsn), HS_OK);
    CHECK_EQ(avail(c, "cup"), 2);

    /* A retake of that CANCELLED hold, killed before its record: the
     * CANCEL is still the last record, so it stays CANCELLED (not EXPIRED)
     * and nothing was taken. */
    CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    CHECK(forge(&o->state, HS_INDEX_CANCELLED, HS_STATE_WORD(HS_INDEX_PENDING, gone)));
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("b-2"), 0, &lsn), HS_HOLD_CANCELLED);
    CHECK_EQ(status_of(c, "b-2"), HS_ORDER_STATUS_CANCELLED);
    CHECK_EQ(avail(c, "cup"), 2);
    hs_segment_unmap(h);
}

/* Holds across a clean stop and a SIGKILL: states, deadlines and units
 * come back; a hold whose deadline passed while no daemon ran expires at
 * once after the start. */
static void
test_restart(hsd_ctl *d, hs_client *c)
{
    hs_lsn lsn;
    uint64_t exp_long = 0, exp_short = 0, exp2 = 0;
    hs_order_info info;
    double t0;
    hs_result r;

    CHECK_R(hs_put_sku(c, S("bike"), 10, NULL), HS_OK);
    CHECK_R(hs_reserve(c, S("bike"), 1, S("s-long"), 0, 120000, UINT64_MAX, &lsn, &exp_long),
            HS_OK);
    CHECK_R(hs_reserve(c, S("bike"), 3, S("s-conf"), 0, 120000, UINT64_MAX, &lsn, NULL), HS_OK);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("s-conf"), 0, &lsn), HS_OK);
    CHECK_R(hs_reserve(c, S("bike"), 1, S("s-canc"), 0, 120000, UINT64_MAX, &lsn, NULL), HS_OK);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CANCEL, S("s-canc"), 0, &lsn), HS_OK);
    CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    CHECK_EQ(avail(c, "bike"), 6);

    CHECK_EQ(hsd_ctl_stop(d), 0);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    CHECK_EQ(avail(c, "bike"), 6);
    CHECK_R(hs_order_lookup(c, S("s-long"), &info), HS_OK);
    CHECK_EQ(info.status, HS_ORDER_STATUS_RESERVED);
    CHECK_EQ(info.expires_at_ms, exp_long);
    CHECK_R(hs_reserve(c, S("bike"), 1, S("s-long"), 0, 5, UINT64_MAX, &lsn, &exp2), HS_DUPLICATE);
    CHECK_EQ(exp2, exp_long);
    CHECK_EQ(status_of(c, "s-conf"), HS_ORDER_STATUS_DEDUCTED);
    CHECK_EQ(status_of(c, "s-canc"), HS_ORDER_STATUS_CANCELLED);

    /* A short hold taken only now (a ttl that could run out during the
     * clean restart above would make that leg's counts depend on the
     * machine's speed), then SIGKILL, and stay down past its deadline.
     * Should the hold expire before the kill on a stalled machine, every
     * check below still holds: it ends EXPIRED either way. */
    CHECK_R(hs_reserve(c, S("bike"), 2, S("s-short"), 0, 1500, UINT64_MAX, &lsn, &exp_short),
            HS_OK);
    CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    hsd_ctl_kill(d);
    while (now_ms() < exp_short + 300)
        usleep(10000);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    t0 = hs_test_seconds();
    CHECK(wait_status(c, "s-short", HS_ORDER_STATUS_EXPIRED, exp_short, 5) >= 0);
    CHECK(hs_test_seconds() - t0 < 1.0);
    CHECK_EQ(avail(c, "bike"), 6);
    CHECK_EQ(status_of(c, "s-long"), HS_ORDER_STATUS_RESERVED);
    CHECK_EQ(status_of(c, "s-conf"), HS_ORDER_STATUS_DEDUCTED);
    r = hs_hold_settle(c, HS_HOLD_CONFIRM, S("s-long"), 0, &lsn);
    CHECK_R(r, HS_OK);
    CHECK_EQ(avail(c, "bike"), 6);
}

int
main(void)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;

    if (!client_test_start(&d, "holds", &c, NULL))
        return hs_test_done();
    test_basics(c);
    test_expiry(c);
    test_compensate(c);
    test_dead_settler(&d, c);
    test_dead_between_stores(&d, c);
    test_restart(&d, c);
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    hs_test_rmrf(d.dir);
    return hs_test_done();
}
