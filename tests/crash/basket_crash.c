/*-------------------------------------------------------------------------
 *
 * basket_crash.c
 *      The crash suite's basket fault mix: buyers that take baskets
 *      (deduct_basket), and hold baskets (reserve_basket) that they
 *      confirm, cancel or abandon, on scarce stock of few SKUs, while the
 *      daemon or a buyer is SIGKILLed; then every acknowledged answer, the
 *      queue and the counters are checked.
 *
 * Design note: as holds_crash.c (libhotstock clients forked against a
 * private hotstockd in a fresh directory, no PostgreSQL; an answer is
 * logged only after its records are durable, one write(2) per line to an
 * O_APPEND file):
 *
 *     D  id n               a basket of n lines taken (HS_OK)
 *     R  id n deadline_ms   a basket of n lines held
 *     C  id                 its confirm answered HS_OK
 *     K  id                 its cancel answered HS_OK
 *
 * One iteration: new SKUs (SKUS of STOCK units), BUYERS processes for a
 * while, one fault (by iteration: SIGKILL the daemon and start it again,
 * SIGKILL a buyer in mid-run, or both), the buyers SIGKILLed, a smart stop
 * and start (counters rebuilt from the queue), a wait until every hold is
 * due and expired, and the checks, basket by basket, from the queue read
 * back (a line id is "id" 0x1f "iinn"):
 *   - whole: a basket has DEDUCT or RESERVE on all n of its lines or on
 *     none; CONFIRM on all or none, CANCEL on all or none; a held basket
 *     ends with exactly one of CONFIRM, CANCEL, EXPIRE on every line (a
 *     line never CONFIRMed while another EXPIREs);
 *   - acknowledged answers are there: D as n DEDUCTs, R as n RESERVEs
 *     with the deadline told, C as CONFIRMs, K as CANCELs;
 *   - never oversold: per SKU, the units sold (DEDUCT + CONFIRM) <= stock,
 *     and hs_available() after the restart is what the queue says.
 * Each iteration prints "iteration N (fault): ok" or "...: FAILED: what";
 * the run ends with `N passed, N failed` (iterations).
 *
 *   basket_crash ITERATIONS
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>

#include "crash_prog.h"
#include "daemon_ctl.h"
#include "hotstock.h"
#include "util.h"

#define SKUS 4
#define STOCK 40
#define BUYERS 5
#define MAX_BASKETS (1 << 16)
#define S(str) (str), strlen(str)

static _Noreturn void
buyer(const char *dir, int iter, int b, int logfd)
{
    hs_client *c = NULL;
    unsigned seed = (unsigned)(iter * 7919 + b * 104729 + getpid());

    for (uint32_t seq = 0;; seq++) {
        char id[48], names[3][32];
        const char *skus[3];
        size_t lens[3];
        int32_t qty[3];
        int n = 2 + rand_r(&seed) % 2, used = 0, pick = rand_r(&seed) % 10;
        uint32_t ttl = 150 + rand_r(&seed) % 1000;
        uint64_t deadline = 0;
        hs_lsn lsn = 0;
        hs_result r;

        if (c == NULL && hs_attach(dir, &c) != HS_OK) {
            c = NULL;
            usleep(20000);
            continue;
        }
        for (int i = 0; i < n; i++) {
            int s;

            do
                s = rand_r(&seed) % SKUS;
            while (used & (1 << s));
            used |= 1 << s;
            snprintf(names[i], sizeof(names[i]), "b%d.%d", iter, s);
            skus[i] = names[i];
            lens[i] = strlen(names[i]);
            qty[i] = 1 + rand_r(&seed) % 2;
        }
        snprintf(id, sizeof(id), "i%d.b%d.%u", iter, b, seq);
        if (pick < 4) {
            r = hs_deduct_basket(c, S(id), n, skus, lens, qty, 0, UINT64_MAX, &lsn);
            if (r == HS_OK && durable(c, lsn))
                logline(logfd, "D %s %d\n", id, n);
            else if (r != HS_OK && r != HS_SOLD_OUT)
                usleep(20000); /* daemon down, or restarting: unknown */
            continue;
        }
        r = hs_reserve_basket(c, S(id), n, skus, lens, qty, 0, ttl, UINT64_MAX, &lsn, &deadline);
        if (r != HS_OK || !durable(c, lsn)) {
            if (r != HS_SOLD_OUT)
                usleep(20000);
            continue;
        }
        logline(logfd, "R %s %d %" PRIu64 "\n", id, n, deadline);
        pick = rand_r(&seed) % 10;
        if (pick < 5) { /* pay: at once, or around the deadline */
            if (rand_r(&seed) % 2 == 0)
                usleep((useconds_t)(rand_r(&seed) % (ttl * 1200)));
            r = hs_basket_settle(c, HS_HOLD_CONFIRM, S(id), 0, &lsn);
            if (r == HS_OK && durable(c, lsn))
                logline(logfd, "C %s\n", id);
        } else if (pick < 7) {
            usleep((useconds_t)(rand_r(&seed) % (ttl * 500)));
            r = hs_basket_settle(c, HS_HOLD_CANCEL, S(id), 0, &lsn);
            if (r == HS_OK && durable(c, lsn))
                logline(logfd, "K %s\n", id);
        } /* else: never comes back */
    }
}

/*-------------------------------------------------------------------------
 * The queue, basket by basket
 *-------------------------------------------------------------------------
 */

typedef struct bk {
    char id[48];
    int n;                 /* lines, from the line ids */
    int d, r, c, k, e;     /* lines with DEDUCT, RESERVE, CONFIRM, CANCEL, EXPIRE */
    int first_end;         /* 'C', 'K' or 'E': the first settling record seen */
    bool mixed;            /* lines settled in different ways */
    uint64_t deadline;     /* from the RESERVEs (all equal) */
    bool deadline_differs;
} bk;

static bk *baskets;
static uint32_t *slots; /* index + 1 into baskets, 2 * MAX_BASKETS of them */
static uint32_t nbaskets;
static int64_t sold[SKUS], net[SKUS]; /* units sold; queue's counter per SKU */
static bk *
find(const char *id, bool create)
{
    return crash_find(baskets, sizeof(bk), sizeof(baskets[0].id), slots, MAX_BASKETS, &nbaskets, id,
                      create);
}

static int
read_queue(const char *dir, int iter)
{
    char prefix[32];
    hs_queue_reader *qr = NULL;
    hs_record rec;
    int got;

    snprintf(prefix, sizeof(prefix), "b%d.", iter);
    memset(slots, 0, sizeof(uint32_t) * 2 * MAX_BASKETS);
    memset(baskets, 0, sizeof(bk) * MAX_BASKETS);
    nbaskets = 0;
    memset(sold, 0, sizeof(sold));
    memset(net, 0, sizeof(net));
    if (hs_queue_open(dir, 1, &qr) != HS_OK)
        return -1;
    while ((got = hs_queue_next(qr, HS_LSN_MAX, &rec)) == 1) {
        char *sep;
        bk *o;
        int s;
        char t = 0;

        if (strncmp(rec.sku, prefix, strlen(prefix)) != 0)
            continue;
        s = atoi(rec.sku + strlen(prefix));
        switch (rec.type) {
        case HS_REC_PUT_SKU:
        case HS_REC_ADD_STOCK:
            net[s] += rec.qty;
            continue;
        case HS_REC_DEDUCT:
        case HS_REC_RESERVE:
            net[s] -= rec.qty;
            break;
        case HS_REC_CANCEL:
        case HS_REC_EXPIRE:
        case HS_REC_REFUND:
            net[s] += rec.qty;
            break;
        }
        if (rec.type == HS_REC_DEDUCT || rec.type == HS_REC_CONFIRM)
            sold[s] += rec.qty;
        sep = strchr(rec.order_id, HS_BASKET_SEP);
        if (sep == NULL || strlen(sep) != 5)
            continue;
        *sep = '\0';
        o = find(rec.order_id, true);
        if (o == NULL)
            break;
        o->n = atoi(sep + 3);
        switch (rec.type) {
        case HS_REC_DEDUCT:
            o->d++;
            break;
        case HS_REC_RESERVE:
            o->r++;
            if (o->deadline != 0 && o->deadline != rec.timestamp_us / 1000 + rec.ttl_ms)
                o->deadline_differs = true;
            o->deadline = rec.timestamp_us / 1000 + rec.ttl_ms;
            break;
        case HS_REC_CONFIRM:
            o->c++;
            t = 'C';
            break;
        case HS_REC_CANCEL:
            o->k++;
            t = 'K';
            break;
        case HS_REC_EXPIRE:
            o->e++;
            t = 'E';
            break;
        }
        if (t != 0) {
            if (o->first_end == 0)
                o->first_end = t;
            else if (o->first_end != t)
                o->mixed = true;
        }
    }
    hs_queue_close(qr);
    return got < 0 ? -1 : 0;
}

/* Every basket whole in the queue. */
static bool
check_baskets(void)
{
    for (uint32_t i = 0; i < nbaskets; i++) {
        const bk *o = &baskets[i];

        if ((o->d != 0 && o->d != o->n) || (o->r != 0 && o->r != o->n) || (o->d && o->r))
            FAIL("basket %s of %d lines: %d DEDUCT, %d RESERVE in the queue", o->id, o->n, o->d,
                 o->r);
        if (o->r != 0 && (o->mixed || o->c + o->k + o->e != o->n))
            FAIL("held basket %s of %d lines ends with %d CONFIRM, %d CANCEL, %d EXPIRE", o->id,
                 o->n, o->c, o->k, o->e);
        if (o->r == 0 && o->c + o->k + o->e != 0)
            FAIL("basket %s settles lines it never held", o->id);
        if (o->deadline_differs)
            FAIL("held basket %s has lines with different deadlines", o->id);
    }
    return true;
}

/* Every acknowledged answer in the queue. */
static bool
check_log(const char *logpath)
{
    char line[256];
    FILE *f = fopen(logpath, "r");

    if (f == NULL)
        FAIL("cannot read %s", logpath);
    while (fgets(line, sizeof(line), f) != NULL) {
        char kind, id[64];
        int n = 0;
        uint64_t deadline = 0;
        const bk *o;

        if (sscanf(line, "%c %63s %d %" SCNu64, &kind, id, &n, &deadline) < 2)
            continue;
        o = find(id, false);
        if (o == NULL) {
            fclose(f);
            FAIL("acknowledged %c of basket %s is not in the queue", kind, id);
        }
        if ((kind == 'D' && o->d != n) || (kind == 'R' && (o->r != n || o->deadline != deadline)) ||
            (kind == 'C' && o->c != o->n) || (kind == 'K' && o->k != o->n)) {
            fclose(f);
            FAIL("acknowledged %c of basket %s: the queue has %d DEDUCT %d RESERVE (deadline "
                 "%" PRIu64 ", told %" PRIu64 ") %d CONFIRM %d CANCEL",
                 kind, id, o->d, o->r, o->deadline, deadline, o->c, o->k);
        }
    }
    fclose(f);
    return true;
}

static bool
check_iteration(hsd_ctl *d, hs_client *c, int iter, const char *logpath)
{
    /* every hold due (ttl < 1.2 s) and expired by the daemon */
    hsd_ctl_nap_ms(2500);
    if (hsd_ctl_stop(d) != 0)
        FAIL("daemon did not stop cleanly");
    if (read_queue(d->dir, iter) != 0)
        FAIL("cannot read the queue: %s", hs_last_error());
    if (!check_baskets() || !check_log(logpath))
        return false;
    for (int s = 0; s < SKUS; s++)
        if (sold[s] > STOCK)
            FAIL("OVERSOLD: sku b%d.%d sold %" PRId64 " of %d", iter, s, sold[s], STOCK);
    if (hsd_ctl_start(d, NULL) != 0)
        FAIL("daemon did not start again");
    for (int s = 0; s < SKUS; s++) {
        char sku[32];
        int64_t a = -1;

        snprintf(sku, sizeof(sku), "b%d.%d", iter, s);
        if (hs_available(c, S(sku), &a) != HS_OK || a != net[s] || a != STOCK - sold[s])
            FAIL("sku %s: available %" PRId64 ", the queue says %" PRId64 " (stock %d, sold %" PRId64
                 ")",
                 sku, a, net[s], STOCK, sold[s]);
    }
    return true;
}

static bool
iteration(hsd_ctl *d, hs_client **c, int iter, unsigned *seed)
{
    static const crash_run run = {"b", SKUS, STOCK, BUYERS, buyer, 300, 1000, 600, 400};
    char logpath[600];

    if (!crash_run_faults(d, *c, iter, seed, &run, logpath, sizeof(logpath)))
        return false;
    return check_iteration(d, *c, iter, logpath);
}

int
main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : 3;

    baskets = calloc(MAX_BASKETS, sizeof(*baskets));
    slots = calloc(2 * MAX_BASKETS, sizeof(*slots));
    if (baskets == NULL || slots == NULL || iterations < 1) {
        fprintf(stderr, "usage: basket_crash ITERATIONS\n");
        return 2;
    }
    return crash_prog_main("basket_crash", "basket-crash", iterations, iteration, "baskets", &nbaskets);
}
