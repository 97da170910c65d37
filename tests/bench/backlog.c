/*-------------------------------------------------------------------------
 *
 * backlog.c
 *      Put N deduction records into a hotstockd queue as fast as one
 *      thread can, for the benchmark's drain and recovery measurements.
 *
 * Design note: an ordinary libhotstock client.  It shares the segment with
 * the daemon and every other client and uses only the public API
 * (hs_deduct without a durability wait per record, hs_kick, and one
 * hs_wait_durable on the last LSN), so the queue it leaves behind is what
 * synchronous-off buyers would leave.  It must run as the daemon's OS user
 * (the segment's name carries that user's uid).
 *
 *   backlog DIR N NSKUS SKU_PREFIX ORDER_PREFIX
 *
 * Deduction i (0 <= i < N) takes 1 unit of SKU "<SKU_PREFIX><i % NSKUS + 1>"
 * (NSKUS = 1: the SKU is SKU_PREFIX itself) for order "<ORDER_PREFIX><i>".
 * The SKUs must exist with enough stock.  A full ring (the spiller is
 * behind) is waited out; anything else but HS_OK stops the run with exit
 * code 1.  On success it prints key=value lines: records, first_lsn,
 * last_lsn, seconds, records_per_s.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hotstock.h"

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: backlog DIR N NSKUS SKU_PREFIX ORDER_PREFIX\n");
        return 2;
    }
    const char *dir = argv[1];
    uint64_t n = strtoull(argv[2], NULL, 10);
    uint64_t nskus = strtoull(argv[3], NULL, 10);
    const char *sku_prefix = argv[4];
    const char *order_prefix = argv[5];
    if (n == 0 || nskus == 0) {
        fprintf(stderr, "backlog: N and NSKUS must be positive\n");
        return 2;
    }

    hs_client *c;
    hs_result r = hs_attach(dir, &c);
    if (r != HS_OK) {
        fprintf(stderr, "backlog: attach %s: %s (%s)\n", dir, hs_result_name(r), hs_last_error());
        return 1;
    }

    double start = now_s();
    hs_lsn first = 0, last = 0;
    uint64_t full_waits = 0;
    for (uint64_t i = 0; i < n; i++) {
        char sku[HS_SKU_MAX + 1], order_id[HS_ORDER_ID_MAX + 1];
        int sku_len = nskus == 1
                          ? snprintf(sku, sizeof sku, "%s", sku_prefix)
                          : snprintf(sku, sizeof sku, "%s%" PRIu64, sku_prefix, i % nskus + 1);
        int order_len = snprintf(order_id, sizeof order_id, "%s%" PRIu64, order_prefix, i);
        hs_lsn lsn = 0;
        for (;;) {
            r = hs_deduct(c, sku, (size_t)sku_len, 1, order_id, (size_t)order_len, 0, &lsn);
            if (r != HS_QUEUE_FULL)
                break;
            /* the spiller is behind: let it run */
            full_waits++;
            hs_kick(c);
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        if (r != HS_OK) {
            fprintf(stderr,
                    "backlog: deduct %d of %.*s for order %.*s (record %" PRIu64 "): %s (%s)\n", 1,
                    sku_len, sku, order_len, order_id, i, hs_result_name(r), hs_last_error());
            hs_detach(c);
            return 1;
        }
        if (first == 0)
            first = lsn;
        last = lsn;
    }
    hs_kick(c);
    r = hs_wait_durable(c, last, 120000);
    double secs = now_s() - start;
    hs_detach(c);
    if (r != HS_OK) {
        fprintf(stderr, "backlog: waiting for LSN %" PRIu64 " to be durable: %s (%s)\n", last,
                hs_result_name(r), hs_last_error());
        return 1;
    }
    printf("records=%" PRIu64 "\nfirst_lsn=%" PRIu64 "\nlast_lsn=%" PRIu64
           "\nseconds=%.3f\nrecords_per_s=%.0f\nring_full_waits=%" PRIu64 "\n",
           n, first, last, secs, (double)n / secs, full_waits);
    return 0;
}
