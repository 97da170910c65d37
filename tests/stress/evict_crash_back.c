/*-------------------------------------------------------------------------
 *
 * evict_crash_back.c
 *      An order evicted online must not come back into the index after a
 *      daemon crash.  If it did (3a139f7: the filter file lagged the
 *      evicted LSN by up to a second), a database-first refund made in
 *      between would be refused by the index (HS_DUPLICATE) and the order
 *      could be refunded a second time through it.
 *
 *   evict_crash_back [--keep]
 *
 * Steps (order_retention 0): deduct "first", drain it, wait until it is
 * evicted (that pass commits the filter file: its last commit was more
 * than a second ago).  At once deduct "x", drain it, wait until it is
 * evicted (a pass within the second: the filter file is not committed).
 * Read hs_evicted_lsn() = E >= x's LSN: hotstock.refund('x') would now
 * mark x's ledger row (lsn <= E) refunded and call hs_refund_evicted at
 * commit.  SIGKILL the daemon before that call (or the call fails: the
 * daemon is down), start it again.
 *
 * Expected: x stays evicted (hs_order_status HS_NOT_FOUND), the new
 * evicted LSN is >= E, and hs_refund_evicted("x") gives the units back.
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include "daemon_ctl.h"
#include "hotstock.h"

#define SKU "back"

static hs_result
status_of(hs_client *c, const char *id, hs_order_status_code *st)
{
    return hs_order_status(c, id, strlen(id), st, NULL, NULL);
}

/* Deduct id, make it durable and drained, wait until it is evicted. */
static bool
deduct_drain_evict(hs_client *c, const char *id, hs_lsn *lsn)
{
    hs_order_status_code st;
    double end = hs_test_seconds() + 10;

    if (!CHECK_EQ(hs_deduct(c, SKU, strlen(SKU), 1, id, strlen(id), 0, lsn), HS_OK) ||
        !CHECK_EQ(hs_wait_durable(c, *lsn, 5000), HS_OK) ||
        !CHECK_EQ(hs_publish_applied(c, *lsn), HS_OK))
        return false;
    while (status_of(c, id, &st) == HS_OK && hs_test_seconds() < end)
        hsd_ctl_nap_ms(2);
    return CHECK_EQ(status_of(c, id, &st), HS_NOT_FOUND);
}

int
main(int argc, char **argv)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;
    hs_lsn first, x, e_before, e_after, lsn;
    hs_order_status_code st;
    hs_result r;
    bool keep = argc > 1 && strcmp(argv[1], "--keep") == 0;

    hs_test_tmpdir("back", d.dir);
    hsd_ctl_flag(&d, "--order-retention", "0");
    hsd_ctl_flag(&d, "--evicted-filter-size", "1M");
    if (!CHECK_EQ(hsd_ctl_start(&d, &c), 0))
        return hs_test_done();
    CHECK_EQ(hs_put_sku(c, SKU, strlen(SKU), 100, NULL), HS_OK);
    hsd_ctl_nap_ms(1100); /* the evictor's next commit is due at its next pass */

    if (!deduct_drain_evict(c, "first", &first) || !deduct_drain_evict(c, "x", &x))
        return hs_test_done();
    e_before = hs_evicted_lsn(c);
    printf("evict_crash_back: x deducted at LSN %llu and evicted, evicted LSN %llu\n",
           (unsigned long long)x, (unsigned long long)e_before);
    CHECK(e_before >= x);
    /* hotstock.refund('x') would mark the ledger row (lsn <= e_before)
     * refunded here, in its transaction, and commit. */
    hsd_ctl_kill(&d);
    if (!CHECK_EQ(hsd_ctl_start(&d, NULL), 0))
        return hs_test_done();

    r = status_of(c, "x", &st); /* re-attaches to the new segment */
    e_after = hs_evicted_lsn(c);
    printf("  after the crash: evicted LSN %llu, x: %s (status %d)\n", (unsigned long long)e_after,
           hs_result_name(r), (int)st);
    CHECK(e_after >= e_before);
    CHECK_EQ(r, HS_NOT_FOUND);
    /* the commit callback (or the drain's sweep) returns the units */
    r = hs_refund_evicted(c, SKU, strlen(SKU), 1, "x", 1, e_after, &lsn);
    printf("  hs_refund_evicted(x): %s\n", hs_result_name(r));
    CHECK_EQ(r, HS_OK);
    /* and a second refund through the index must find nothing to do */
    r = hs_refund(c, "x", 1, &lsn, NULL, NULL);
    printf("  hs_refund(x): %s\n", hs_result_name(r));
    CHECK(r == HS_ALREADY_REFUNDED || r == HS_NOT_FOUND);

    hs_detach(c);
    hsd_ctl_stop(&d);
    if (!keep && hs_test_failed_ == 0)
        hs_test_rmrf(d.dir);
    else
        printf("  kept %s\n", d.dir);
    return hs_test_done();
}
