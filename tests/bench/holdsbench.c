/*-------------------------------------------------------------------------
 *
 * holdsbench.c
 *      A million live holds: how late the daemon expires them, and whether
 *      they slow down deductions on other SKUs.  A benchmark: it reports
 *      figures (`make bench-holds`), and exits non-zero only when the run
 *      itself went wrong (a hold not expired, units not back).
 *
 * Design note: an ordinary libhotstock client against a private hotstockd
 * it starts (tests/daemon_ctl.h), in a fresh directory under /tmp.  Three
 * phases:
 *   baseline  after a warm-up, PROCS processes make DEDUCTS deductions of
 *             1 unit of their own SKU, each with a new order id, without a durability wait per call
 *             (as synchronous-off buyers do): deductions per second;
 *   reserve   one process makes HOLDS holds of 1 unit over 64 SKUs, each
 *             with a random ttl, uniform in [TTL_MIN_MS, TTL_MAX_MS]:
 *             reserves per second;
 *   live      the same deduct load with every hold live and none due yet:
 *             what holds cost by being there;
 *   expiry    once the first deadline is due, the same deduct load runs
 *             while the daemon's expirer gives the holds back:
 *             deductions per second again, and the ratio to the baseline.
 * Then it waits (bounded) until every hold is EXPIRED, and reads the whole
 * queue back: the delay of each hold is its EXPIRE record's timestamp (the
 * expirer's clock when it expired it) minus its deadline (the RESERVE's
 * timestamp + ttl), so p50 / p99 / max are over every hold, not a sample.
 * It checks that every hold has exactly one EXPIRE and that the hold SKUs'
 * units are all back.
 *
 *   holdsbench [HOLDS [DEDUCTS [PROCS [TTL_MIN_MS TTL_MAX_MS]]]]
 *   (defaults 1000000 2000000 2 15000 45000; the order index has room for
 *   all of them: no drain runs, so nothing is evicted)
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <inttypes.h>
#include <sys/mman.h>

#include "daemon_ctl.h"
#include "hotstock.h"
#include "util.h"

#define HOLD_SKUS 64
#define HOLD_STOCK 1000000000LL

static double
mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Deduct 1 unit of "d-<p>" `count` times, order ids "<tag>-<p>-<i>"; 0,
 * or -1. */
static int
deduct_load(const char *dir, int p, const char *tag, int64_t count)
{
    hs_client *c = NULL;
    char sku[32], id[64];
    hs_lsn lsn = 0;

    if (hs_attach(dir, &c) != HS_OK)
        return -1;
    snprintf(sku, sizeof(sku), "d-%d", p);
    for (int64_t n = 0; n < count;) {
        int len = snprintf(id, sizeof(id), "%s-%d-%" PRId64, tag, p, n);
        hs_result r = hs_deduct(c, sku, strlen(sku), 1, id, (size_t)len, 0, &lsn);

        if (r == HS_QUEUE_FULL)
            continue; /* the spiller is behind: the call waited; again */
        if (r != HS_OK) {
            fprintf(stderr, "holdsbench: deduct %s: %s (%s)\n", id, hs_result_name(r),
                    hs_last_error());
            hs_detach(c);
            return -1;
        }
        n++;
    }
    hs_detach(c);
    return 0;
}

/* PROCS processes of deduct_load at once, `total` deductions in all;
 * deductions per second, or -1. */
static double
deduct_phase(const char *dir, int procs, const char *tag, int64_t total)
{
    pid_t pids[64];
    bool ok = true;
    double t0 = mono_s();

    for (int p = 0; p < procs; p++) {
        pids[p] = fork();
        if (pids[p] == 0)
            _exit(deduct_load(dir, p, tag, total / procs) == 0 ? 0 : 1);
    }
    for (int p = 0; p < procs; p++) {
        int status = 0;

        ok &= pids[p] > 0 && waitpid(pids[p], &status, 0) == pids[p] && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0;
    }
    return ok ? (double)(total / procs * procs) / (mono_s() - t0) : -1;
}

/* The daemon's resident memory, kB (0 if unknown). */
static long
daemon_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    uint32_t holds = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 1000000;
    int64_t deducts = argc > 2 ? strtoll(argv[2], NULL, 10) : 2000000;
    int procs = argc > 3 ? atoi(argv[3]) : 2;
    uint32_t ttl_min = argc > 5 ? (uint32_t)strtoul(argv[4], NULL, 10) : 15000;
    uint32_t ttl_max = argc > 5 ? (uint32_t)strtoul(argv[5], NULL, 10) : 45000;
    hsd_ctl d = {0};
    hs_client *c = NULL;
    char sku[32], id[64];
    double base, live, with, t0, reserve_rate, due_at, wait_end;
    uint64_t *deadline;
    int64_t *delay;
    uint32_t expired = 0, doubled = 0, missing = 0;
    uint64_t first_deadline = UINT64_MAX;
    hs_queue_reader *qr = NULL;
    hs_record rec;
    int64_t back = 0;
    long rss_kb;
    int rc = 0;

    if (holds == 0 || deducts < 1000 || procs < 1 || procs > 64 || ttl_min < 1000 || ttl_max < ttl_min) {
        fprintf(stderr, "usage: holdsbench [HOLDS [DEDUCTS [PROCS [TTL_MIN_MS TTL_MAX_MS]]]]"
                        " (PROCS 1..64, TTL_MIN_MS >= 1000)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    hs_test_tmpdir("holdsbench", d.dir);
    hsd_ctl_flag(&d, "--order-capacity", "8388608");
    hsd_ctl_flag(&d, "--ring-capacity", "262144");
    hsd_ctl_flag(&d, "--queue-file-size", "1G");
    if (hsd_ctl_start(&d, &c) != 0) {
        fprintf(stderr, "holdsbench: cannot start hotstockd in %s\n", d.dir);
        hsd_ctl_kill(&d);
        return 1;
    }
    for (int p = 0; p < procs; p++) {
        snprintf(sku, sizeof(sku), "d-%d", p);
        if (hs_put_sku(c, sku, strlen(sku), HOLD_STOCK, NULL) != HS_OK)
            goto fail;
    }
    for (int s = 0; s < HOLD_SKUS; s++) {
        snprintf(sku, sizeof(sku), "h-%d", s);
        if (hs_put_sku(c, sku, strlen(sku), HOLD_STOCK, NULL) != HS_OK)
            goto fail;
    }
    printf("holdsbench: %u holds (ttl %u..%u ms) over %d SKUs; deduct load %" PRId64
           " deductions by %d processes on their own SKUs; data in %s\n",
           holds, ttl_min, ttl_max, HOLD_SKUS, deducts, procs, d.dir);

    /* baseline, after a warm-up (the first touches of the index's pages
     * fault them in: not what a running sale pays) */
    if (deduct_phase(d.dir, procs, "u", deducts / 4) < 0)
        goto fail;
    base = deduct_phase(d.dir, procs, "b", deducts);
    if (base < 0)
        goto fail;
    printf("  baseline   %.0f deductions/s (no live hold)\n", base);

    /* a million holds */
    deadline = calloc(holds, sizeof(*deadline));
    delay = calloc(holds, sizeof(*delay));
    if (deadline == NULL || delay == NULL)
        goto fail;
    srand(42);
    t0 = mono_s();
    for (uint32_t i = 0; i < holds; i++) {
        uint32_t ttl = ttl_min + (uint32_t)((uint64_t)rand() * (ttl_max - ttl_min) / RAND_MAX);
        int len = snprintf(id, sizeof(id), "h-%u", i);
        hs_lsn lsn;
        hs_result r;

        snprintf(sku, sizeof(sku), "h-%u", i % HOLD_SKUS);
        do
            r = hs_reserve(c, sku, strlen(sku), 1, id, (size_t)len, 0, ttl, UINT64_MAX, &lsn,
                           &deadline[i]);
        while (r == HS_QUEUE_FULL);
        if (r != HS_OK) {
            fprintf(stderr, "holdsbench: reserve %s: %s (%s)\n", id, hs_result_name(r),
                    hs_last_error());
            goto fail;
        }
        if (deadline[i] < first_deadline)
            first_deadline = deadline[i];
    }
    reserve_rate = holds / (mono_s() - t0);
    printf("  reserve    %.0f holds/s (%u live holds, one process)\n", reserve_rate, holds);

    /* the same load with a million live holds, none due yet */
    live = deduct_phase(d.dir, procs, "l", deducts);
    if (live < 0)
        goto fail;
    printf("  live       %.0f deductions/s with %u live holds, none due (%.2fx the baseline)%s\n",
           live, holds, live / base,
           (uint64_t)(hs_now_unix_us() / 1000) >= first_deadline ? " (some came due meanwhile)"
                                                                  : "");

    /* the same load while they expire */
    while ((uint64_t)(hs_now_unix_us() / 1000) < first_deadline)
        hsd_ctl_nap_ms(10);
    with = deduct_phase(d.dir, procs, "w", deducts);
    if (with < 0)
        goto fail;
    printf("  expiring   %.0f deductions/s while the expirer gives holds back (%.2fx the baseline;"
           " about %.0f expiries/s compete for the same cores)\n",
           with, with / base, holds / ((ttl_max - ttl_min) / 1000.0));

    /* every hold expired: wait for the last deadline, then read the queue */
    due_at = 0;
    for (uint32_t i = 0; i < holds; i++)
        if ((double)deadline[i] > due_at)
            due_at = (double)deadline[i];
    wait_end = mono_s() + (due_at - (double)(hs_now_unix_us() / 1000)) / 1000.0 + 30.0;
    for (;;) {
        int64_t sum = 0, a;

        for (int s = 0; s < HOLD_SKUS; s++) {
            snprintf(sku, sizeof(sku), "h-%d", s);
            if (hs_available(c, sku, strlen(sku), &a) == HS_OK)
                sum += a;
        }
        back = sum;
        if (sum == (int64_t)HOLD_SKUS * HOLD_STOCK || mono_s() > wait_end)
            break;
        hsd_ctl_nap_ms(100);
    }
    /* every record so far on disk (the last EXPIREs), bounded */
    for (int k = 0; k < 500; k++) {
        hs_status st;

        if (hs_get_status(c, &st) == HS_OK && st.durable_lsn + 1 >= st.next_lsn)
            break;
        hsd_ctl_nap_ms(10);
    }
    rss_kb = daemon_rss_kb(d.pid);
    if (hs_queue_open(d.dir, 1, &qr) != HS_OK)
        goto fail;
    for (uint32_t i = 0; i < holds; i++)
        delay[i] = INT64_MIN;
    while (hs_queue_next(qr, HS_LSN_MAX, &rec) == 1) {
        uint32_t i;

        if (rec.type != HS_REC_EXPIRE || rec.order_len < 3 || rec.order_id[0] != 'h')
            continue;
        i = (uint32_t)strtoul(rec.order_id + 2, NULL, 10);
        if (i >= holds)
            continue;
        if (delay[i] != INT64_MIN)
            doubled++;
        delay[i] = (int64_t)(rec.timestamp_us / 1000) - (int64_t)deadline[i];
        expired++;
    }
    hs_queue_close(qr);
    for (uint32_t i = 0; i < holds; i++)
        missing += delay[i] == INT64_MIN;
    qsort(delay, holds, sizeof(*delay), cmp_i64);
    if (missing == 0 && holds > 0)
        printf("  expiry     delay after the deadline over all %u holds: p50 %" PRId64
               " ms, p99 %" PRId64 " ms, max %" PRId64 " ms (min %" PRId64 " ms)\n",
               holds, delay[holds / 2], delay[(uint64_t)holds * 99 / 100], delay[holds - 1],
               delay[0]);
    printf("  memory     hotstockd resident %.0f MiB (order index of 8388608 slots: 1 GiB mapped)\n",
           rss_kb / 1024.0);
    printf("  check      %u EXPIRE records, %u holds expired twice, %u never; hold SKUs' units "
           "back: %s\n",
           expired, doubled, missing,
           back == (int64_t)HOLD_SKUS * HOLD_STOCK ? "all" : "NOT ALL");
    if (doubled != 0 || missing != 0 || back != (int64_t)HOLD_SKUS * HOLD_STOCK)
        rc = 1;
    hs_detach(c);
    hsd_ctl_stop(&d);
    hs_test_rmrf(d.dir);
    free(deadline);
    free(delay);
    return rc;

fail:
    fprintf(stderr, "holdsbench: failed: %s\n", hs_last_error());
    if (c != NULL)
        hs_detach(c);
    hsd_ctl_kill(&d);
    return 1;
}
