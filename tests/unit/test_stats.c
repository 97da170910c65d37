/*-------------------------------------------------------------------------
 *
 * test_stats.c
 *      Per-SKU statistics and the hot-SKU sketch against a real hotstockd:
 *      exact counts while four buyer processes race (deducts, sold-out
 *      attempts, refunds, holds and their expiry, a basket's short line,
 *      the limit-refusal hook), a reset of one SKU and of all, the counts
 *      gone with a daemon restart; and the accuracy of hot SKUs: 10,000
 *      SKUs under a Zipf load, the daemon's top names the true top 10
 *      (counted exactly by the buyers); hot_k 0 turns the sketch and the
 *      hot table off, not the counts.
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "client_check.h"
#include "client_internal.h"
#include "daemon_ctl.h"
#include "hotstock.h"
#include "segment.h"
#include "util.h"

#define BUYERS 4
#define TRIES 300  /* deducts of st-a per buyer: 1200 for 1000 units */
#define EMPTY 100  /* attempts on the sold-out st-b per buyer */
#define HOLDS 5    /* holds of st-c per buyer, each expiring */
#define REFUNDS 10 /* orders of st-a each buyer refunds */

#define ZIPF_SKUS 10000
#define ZIPF_S 1.2        /* weight(n) = n^-1.2 = 1 / (n * fifth root of n) */
#define ZIPF_TRIES 400000 /* per buyer */

/* The statistics of one SKU (found by scanning, as the SQL view does). */
static bool
stats_of(hs_client *c, const char *sku, hs_sku_stats *out)
{
    uint32_t cursor = 0;

    while (hs_sku_stats_next(c, &cursor, out) == HS_OK)
        if (strcmp(out->sku, sku) == 0)
            return true;
    return false;
}

static int
count_skus(hs_client *c)
{
    hs_sku_stats st;
    uint32_t cursor = 0;
    int n = 0;

    while (hs_sku_stats_next(c, &cursor, &st) == HS_OK)
        n++;
    return n;
}

/* A buyer: deducts, sold-out attempts, refunds, holds.  Counts its own
 * answers into board[0] (ok) and board[1] (sold out). */
static void
buyer(const char *dir, int b, _Atomic int *board)
{
    hs_client *cc = NULL;
    int oks = 0;
    hs_lsn l;

    if (hs_attach(dir, &cc) != HS_OK)
        _exit(3);
    for (int k = 0; k < TRIES; k++) {
        char id[32];
        hs_result r;

        snprintf(id, sizeof(id), "a%d-%d", b, k);
        r = hs_deduct(cc, S("st-a"), 1, S(id), 0, &l);
        if (r == HS_OK)
            oks++;
        atomic_fetch_add(&board[r == HS_OK ? 0 : r == HS_SOLD_OUT ? 1 : 2], 1);
    }
    for (int k = 0; k < EMPTY; k++) {
        char id[32];

        snprintf(id, sizeof(id), "b%d-%d", b, k);
        if (hs_deduct(cc, S("st-b"), 1, S(id), 0, &l) != HS_SOLD_OUT)
            _exit(4);
    }
    for (int k = 0; k < HOLDS; k++) {
        char id[32];

        snprintf(id, sizeof(id), "c%d-%d", b, k);
        if (hs_reserve(cc, S("st-c"), 1, S(id), 0, 200, UINT64_MAX, &l, NULL) != HS_OK)
            _exit(5);
    }
    /* refund REFUNDS of our own successful orders */
    for (int k = 0, done = 0; k < TRIES && done < REFUNDS && done < oks; k++) {
        char id[32];

        snprintf(id, sizeof(id), "a%d-%d", b, k);
        if (hs_refund(cc, S(id), &l, NULL, NULL) == HS_OK) {
            done++;
            atomic_fetch_add(&board[3], 1);
        }
    }
    hs_detach(cc);
    _exit(0);
}

static void
test_exact(hsd_ctl *d, hs_client *c)
{
    _Atomic int *board =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    const char *names[] = {"st-a", "st-b"};
    const size_t lens[] = {4, 4};
    const int32_t qtys[] = {1, 1};
    uint64_t t0 = hs_now_unix_us(), reset = 0, created;
    pid_t pids[BUYERS];
    hs_sku_stats st;
    hs_lsn lsn;
    int oks;

    if (!CHECK(board != MAP_FAILED))
        return;
    CHECK_R(hs_put_sku(c, S("st-a"), 1000, NULL), HS_OK);
    CHECK_R(hs_put_sku(c, S("st-b"), 0, NULL), HS_OK);
    CHECK_R(hs_put_sku(c, S("st-c"), 100, NULL), HS_OK);
    CHECK(stats_of(c, "st-a", &st));
    CHECK(st.deducts == 0 && st.sold_out_attempts == 0 && st.last_deduct_unix_us == 0);
    created = st.reset_unix_us; /* the segment's creation */
    CHECK(created > 0 && created <= t0);

    for (int b = 0; b < BUYERS; b++) {
        pids[b] = fork();
        if (pids[b] == 0)
            buyer(d->dir, b, board);
    }
    for (int b = 0; b < BUYERS; b++) {
        int status;

        CHECK_EQ(waitpid(pids[b], &status, 0), pids[b]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* a buyer that refunds while others still buy gives them more units */
    oks = atomic_load(&board[0]);
    CHECK(oks >= 1000 && oks <= 1000 + BUYERS * REFUNDS);
    CHECK_EQ(atomic_load(&board[1]), BUYERS * TRIES - oks);
    CHECK_EQ(atomic_load(&board[2]), 0);
    CHECK_EQ(atomic_load(&board[3]), BUYERS * REFUNDS);

    /* a basket short on st-b: one sold-out attempt of st-b, none of st-a */
    CHECK_R(hs_deduct_basket(c, S("bk-1"), 2, names, lens, qtys, 0, UINT64_MAX, &lsn), HS_SOLD_OUT);
    /* the per-buyer limit's hook (its caller comes with the limits) */
    {
        hs_header *h = atomic_load(&c->seg);
        uint32_t si;

        CHECK_R(hs_sku_find(h, S("st-b"), false, &si), HS_OK);
        hs_stats_note(h, si, HS_STAT_LIMIT_REFUSAL, 3);
    }

    CHECK(stats_of(c, "st-a", &st));
    CHECK_EQ(st.deducts, oks);
    CHECK_EQ(st.sold_out_attempts, BUYERS * TRIES - oks);
    CHECK_EQ(st.refunds, BUYERS * REFUNDS);
    CHECK(st.last_deduct_unix_us >= t0 && st.last_deduct_unix_us <= hs_now_unix_us());
    CHECK_EQ(st.reset_unix_us, created);
    CHECK(stats_of(c, "st-b", &st));
    CHECK_EQ(st.deducts, 0);
    CHECK_EQ(st.sold_out_attempts, BUYERS * EMPTY + 1);
    CHECK_EQ(st.limit_refusals, 3);
    /* the holds expire (200 ms): the daemon's expirer counts them */
    {
        double until = hs_test_seconds() + 10;

        while (stats_of(c, "st-c", &st) && st.expiries < BUYERS * HOLDS &&
               hs_test_seconds() < until)
            hsd_ctl_nap_ms(20);
    }
    CHECK_EQ(st.reserves, BUYERS * HOLDS);
    CHECK_EQ(st.expiries, BUYERS * HOLDS);
    CHECK_EQ(st.deducts, 0);

    /* reset one: st-a only, stamped now */
    t0 = hs_now_unix_us();
    CHECK_R(hs_sku_stats_reset(c, S("st-a"), &reset), HS_OK);
    CHECK_EQ(reset, 1);
    CHECK(stats_of(c, "st-a", &st));
    CHECK(st.deducts == 0 && st.sold_out_attempts == 0 && st.refunds == 0 &&
          st.last_deduct_unix_us == 0);
    CHECK(st.reset_unix_us >= t0);
    CHECK(stats_of(c, "st-b", &st));
    CHECK_EQ(st.sold_out_attempts, BUYERS * EMPTY + 1);
    CHECK_EQ(st.reset_unix_us, created);
    CHECK_R(hs_sku_stats_reset(c, S("no-such"), &reset), HS_UNKNOWN_SKU);
    /* counting goes on after a reset */
    CHECK_R(hs_deduct(c, S("st-a"), 1, S("after-reset"), 0, &lsn), HS_OK);
    CHECK(stats_of(c, "st-a", &st));
    CHECK_EQ(st.deducts, 1);
    /* reset all */
    CHECK_R(hs_sku_stats_reset(c, NULL, 0, &reset), HS_OK);
    CHECK_EQ(reset, (uint64_t)count_skus(c));
    CHECK(stats_of(c, "st-b", &st));
    CHECK(st.sold_out_attempts == 0 && st.limit_refusals == 0 && st.reset_unix_us >= t0);
    munmap((void *)board, 4096);
}

/* n^-1.2 without libm: the fifth root by Newton's method. */
static double
zipf_weight(int n)
{
    double r = n > 1 ? 1.0 + (n - 1) / 5.0 : 1.0;

    for (int i = 0; i < 60; i++)
        r -= (r * r * r * r * r - n) / (5 * r * r * r * r);
    return 1.0 / (n * r);
}

/* Zipf(ZIPF_S) over ZIPF_SKUS: the cumulative distribution. */
static double *
zipf_cdf(void)
{
    double *cdf = malloc(sizeof(double) * ZIPF_SKUS), sum = 0;

    for (int i = 0; i < ZIPF_SKUS; i++)
        sum += zipf_weight(i + 1);
    for (int i = 0; i < ZIPF_SKUS; i++)
        cdf[i] = (i > 0 ? cdf[i - 1] : 0) + zipf_weight(i + 1) / sum;
    return cdf;
}

/* The rank of a draw (0: hottest) scattered over the SKU names, so the
 * hottest SKUs are not the first created. */
static int
zipf_draw(const double *cdf, uint64_t *rng)
{
    double u;
    int lo = 0, hi = ZIPF_SKUS - 1;

    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    u = (double)(*rng >> 11) / (double)(UINT64_C(1) << 53);
    while (lo < hi) {
        int mid = (lo + hi) / 2;

        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int
sku_of_rank(int rank)
{
    return (int)(((int64_t)rank * 7919) % ZIPF_SKUS) + 1;
}

static void
test_hot_accuracy(hsd_ctl *d, hs_client *c)
{
    _Atomic uint64_t *exact = mmap(NULL, sizeof(uint64_t) * (ZIPF_SKUS + 1), PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    double *cdf = zipf_cdf();
    pid_t pids[BUYERS];
    hs_hot_sku hot[HS_HOT_K_DEFAULT];
    int top[10], found = 0;
    uint32_t n = 0;
    uint64_t published = 0, end_ms;
    double t0;

    if (!CHECK(exact != MAP_FAILED))
        return;
    for (int i = 1; i <= ZIPF_SKUS; i++) {
        char name[16];

        snprintf(name, sizeof(name), "z%d", i);
        if (!CHECK_R(hs_put_sku(c, S(name), 0, NULL), HS_OK))
            return;
    }
    t0 = hs_test_seconds();
    for (int b = 0; b < BUYERS; b++) {
        pids[b] = fork();
        if (pids[b] == 0) {
            hs_client *cc = NULL;
            uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(b + 1);
            hs_lsn l;

            if (hs_attach(d->dir, &cc) != HS_OK)
                _exit(3);
            for (int k = 0; k < ZIPF_TRIES; k++) {
                int sku = sku_of_rank(zipf_draw(cdf, &rng));
                char name[16], id[32];

                snprintf(name, sizeof(name), "z%d", sku);
                snprintf(id, sizeof(id), "z%d-%d", b, k);
                if (hs_deduct(cc, S(name), 1, S(id), 0, &l) != HS_SOLD_OUT)
                    _exit(4);
                atomic_fetch_add_explicit(&exact[sku], 1, memory_order_relaxed);
            }
            hs_detach(cc);
            _exit(0);
        }
    }
    for (int b = 0; b < BUYERS; b++) {
        int status;

        CHECK_EQ(waitpid(pids[b], &status, 0), pids[b]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    end_ms = hs_now_unix_us() / 1000;
    fprintf(stderr, "# zipf: %d attempts in %.2f s\n", BUYERS * ZIPF_TRIES, hs_test_seconds() - t0);
    /* the true top 10, from the buyers' exact counts */
    for (int t = 0; t < 10; t++) {
        int best = 0;

        for (int i = 1; i <= ZIPF_SKUS; i++) {
            bool taken = false;

            for (int u = 0; u < t; u++)
                taken |= top[u] == i;
            if (!taken && (best == 0 || exact[i] > exact[best]))
                best = i;
        }
        top[t] = best;
    }
    /* the first publication after the load ended (the daemon ticks every
     * second) */
    for (double until = hs_test_seconds() + 10; hs_test_seconds() < until;) {
        CHECK_R(hs_hot_skus(c, hot, HS_HOT_K_DEFAULT, &n, &published), HS_OK);
        if (published > end_ms)
            break;
        hsd_ctl_nap_ms(50);
    }
    CHECK(published > end_ms);
    CHECK_EQ(n, HS_HOT_K_DEFAULT);
    for (int t = 0; t < 10; t++) {
        char name[16];
        bool in = false;

        snprintf(name, sizeof(name), "z%d", top[t]);
        for (uint32_t i = 0; i < n && i < 10; i++)
            in |= strcmp(hot[i].sku, name) == 0;
        found += in;
        fprintf(stderr,
                "# true #%d %s (%" PRIu64 " attempts)%s; hot #%d %s (sketch %" PRIu64 ", %.0f/s)\n",
                t + 1, name, (uint64_t)exact[top[t]], in ? "" : " MISSING", t + 1,
                t < (int)n ? hot[t].sku : "-", t < (int)n ? hot[t].sketch_count : 0,
                t < (int)n ? hot[t].attempts_per_s : 0.0);
    }
    CHECK_EQ(found, 10);
    printf("perf: hot_skus named %d of the true top 10 (10,000 SKUs, Zipf %.1f, %d attempts)\n",
           found, ZIPF_S, BUYERS * ZIPF_TRIES);
    free(cdf);
    munmap((void *)exact, sizeof(uint64_t) * (ZIPF_SKUS + 1));
}

/* hot_k 0: no hot table, no sketch updates; the statistics still count. */
static void
test_hot_off(void)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;
    hs_hot_sku hot[4];
    hs_sku_stats st;
    uint32_t n = 1;
    uint64_t published = 1;
    double until;

    hs_test_tmpdir("stats-off", d.dir);
    hsd_ctl_flag(&d, "--hot-k", "0");
    hsd_ctl_flag(&d, "--order-capacity", "4096");
    if (!CHECK_EQ(hsd_ctl_start(&d, &c), 0)) {
        hsd_ctl_kill(&d);
        return;
    }
    CHECK_R(hs_put_sku(c, S("off"), 0, NULL), HS_OK);
    for (int k = 0; k < 2000; k++) {
        char id[32];
        hs_lsn l;

        snprintf(id, sizeof(id), "off-%d", k);
        CHECK_R(hs_deduct(c, S("off"), 1, S(id), 0, &l), HS_SOLD_OUT);
    }
    {
        hs_header *h = atomic_load(&c->seg);
        _Atomic uint64_t *sketch = hs_sketch(h);
        int used = 0;

        CHECK_EQ(h->hot_k, 0);
        for (uint32_t i = 0; i < HS_HK_ROWS * h->sketch_width; i++)
            used += atomic_load(&sketch[i]) != 0;
        CHECK_EQ(used, 0);
    }
    /* past the tick a hot thread would have made */
    until = hs_test_seconds() + 1.2;
    while (hs_test_seconds() < until)
        hsd_ctl_nap_ms(50);
    CHECK_R(hs_hot_skus(c, hot, 4, &n, &published), HS_OK);
    CHECK(n == 0 && published == 0);
    CHECK(stats_of(c, "off", &st) && st.sold_out_attempts == 2000);
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    hs_test_rmrf(d.dir);
}

/* Statistics live in the segment: a restart starts them from zero. */
static void
test_restart(hsd_ctl *d, hs_client **c)
{
    hs_sku_stats st;
    hs_lsn lsn;

    CHECK_R(hs_deduct(*c, S("st-a"), 1, S("before-restart"), 0, &lsn), HS_OK);
    CHECK(stats_of(*c, "st-a", &st) && st.deducts == 1);
    hs_detach(*c);
    *c = NULL;
    CHECK_EQ(hsd_ctl_stop(d), 0);
    if (!CHECK_EQ(hsd_ctl_start(d, c), 0))
        return;
    CHECK(stats_of(*c, "st-a", &st));
    CHECK_EQ(st.deducts, 0);
}

int
main(void)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;
    static const char *const flags[] = {"--sku-capacity", "16384", "--order-capacity", "65536",
                                        NULL};

    if (!client_test_start(&d, "stats", &c, flags))
        return hs_test_done();
    test_exact(&d, c);
    test_hot_accuracy(&d, c);
    test_restart(&d, &c);
    test_hot_off();
    if (c != NULL)
        hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    hs_test_rmrf(d.dir);
    return hs_test_done();
}
