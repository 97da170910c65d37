/*-------------------------------------------------------------------------
 *
 * buyer_crash.c
 *      The crash suite's per-buyer limit mix: buyer processes that deduct,
 *      refund, and hold then confirm, cancel or abandon, for a few buyers
 *      shared between them, on SKUs with a per-buyer limit, while the
 *      daemon or a process is SIGKILLed; then the queue, every
 *      acknowledged answer and the counts are checked.
 *
 * Design note: as holds_crash.c and basket_crash.c (crash_prog.h: forked
 * libhotstock clients against a private hotstockd, an answer logged only
 * once its records are durable):
 *
 *     D  id   a deduction or a hold answered HS_OK (durable)
 *
 * One iteration: SKUS SKUs of STOCK units with a limit of LIMIT per buyer,
 * BUYERS processes taking for NAMES buyer names (every name from several
 * processes at once), one fault (by iteration: the daemon SIGKILLed and
 * started again, a process SIGKILLed, or both), every process SIGKILLed,
 * a smart stop and start, a wait until every hold is due and expired,
 * then the checks, from the queue read back in LSN order:
 *   - every take is counted: each DEDUCT or RESERVE of these SKUs is the
 *     second member of a group whose first is a BUYER record of the same
 *     SKU and qty;
 *   - never over the limit: replaying the queue, a buyer's units of a SKU
 *     held at any point (taken by DEDUCT or RESERVE, given back by REFUND,
 *     CANCEL or EXPIRE of the same order) never pass LIMIT;
 *   - the count never forgets: after the restart, hs_buyer_units() of each
 *     buyer is at least what the queue says the buyer holds, and at most
 *     LIMIT (above what it holds only by takes that died half-way);
 *   - acknowledged takes are in the queue; never oversold: per SKU the
 *     units sold <= STOCK, and hs_available() is what the queue says.
 * Each iteration prints "iteration N (fault): ok" or "...: FAILED: what";
 * the run ends with `N passed, N failed` (iterations).
 *
 *   buyer_crash ITERATIONS
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

#define SKUS 3
#define STOCK 200
#define LIMIT 3
#define NAMES 6
#define BUYERS 6
#define MAX_ORDERS (1 << 17)
#define S(str) (str), strlen(str)

static _Noreturn void
buyer(const char *dir, int iter, int b, int logfd)
{
    hs_client *c = NULL;
    unsigned seed = (unsigned)(iter * 7919 + b * 104729 + getpid());

    for (uint32_t seq = 0;; seq++) {
        char id[48], sku[32], who[16];
        int32_t qty = 1 + rand_r(&seed) % 2, q;
        int pick = rand_r(&seed) % 10;
        uint64_t deadline = 0;
        hs_lsn lsn = 0;
        hs_result r;

        if (c == NULL && hs_attach(dir, &c) != HS_OK) {
            c = NULL;
            usleep(20000);
            continue;
        }
        snprintf(sku, sizeof(sku), "u%d.%d", iter, rand_r(&seed) % SKUS);
        snprintf(who, sizeof(who), "w%d", rand_r(&seed) % NAMES);
        snprintf(id, sizeof(id), "i%d.u%d.%u", iter, b, seq);
        if (pick < 5)
            r = hs_deduct_for(c, S(sku), qty, S(id), S(who), 0, UINT64_MAX, &lsn);
        else
            r = hs_reserve_for(c, S(sku), qty, S(id), S(who), 0, 100 + rand_r(&seed) % 800,
                               UINT64_MAX, &lsn, &deadline);
        if (r != HS_OK) {
            if (r != HS_SOLD_OUT && r != HS_BUYER_LIMIT)
                usleep(20000); /* daemon down, or restarting: unknown */
            continue;
        }
        if (durable(c, lsn))
            logline(logfd, "D %s\n", id);
        pick = rand_r(&seed) % 10;
        usleep((useconds_t)(rand_r(&seed) % 3000));
        if (deadline == 0 && pick < 6)
            r = hs_refund(c, S(id), &lsn, &q, NULL); /* room for the buyer again */
        else if (deadline != 0 && pick < 4)
            r = hs_hold_settle(c, HS_HOLD_CONFIRM, S(id), 0, &lsn);
        else if (deadline != 0 && pick < 7)
            r = hs_hold_settle(c, HS_HOLD_CANCEL, S(id), 0, &lsn);
        /* else: kept, or left to expire */
    }
}

/*-------------------------------------------------------------------------
 * The queue in LSN order
 *-------------------------------------------------------------------------
 */

typedef struct order {
    char id[40];
    int sku, who; /* -1: not counted */
    int32_t qty;
    bool holds;   /* its units are out (DEDUCT or RESERVE not given back) */
} order;

static order *orders;
static uint32_t *slots; /* index + 1 into orders, 2 * MAX_ORDERS of them */
static uint32_t norders;
static int held[SKUS][NAMES];
static int64_t sold[SKUS], net[SKUS];

static order *
find(const char *id, bool create)
{
    return crash_find(orders, sizeof(order), sizeof(orders[0].id), slots, MAX_ORDERS, &norders, id,
                      create);
}

/* Replay the queue: the counts and holdings, checked at every record. */
static bool
read_queue(const char *dir, int iter)
{
    char prefix[32];
    hs_queue_reader *qr = NULL;
    hs_record rec, prev;
    int got;

    snprintf(prefix, sizeof(prefix), "u%d.", iter);
    memset(slots, 0, sizeof(uint32_t) * 2 * MAX_ORDERS);
    norders = 0;
    memset(held, 0, sizeof(held));
    memset(sold, 0, sizeof(sold));
    memset(net, 0, sizeof(net));
    memset(&prev, 0, sizeof(prev));
    if (hs_queue_open(dir, 1, &qr) != HS_OK)
        FAIL("cannot open the queue: %s", hs_last_error());
    while ((got = hs_queue_next(qr, HS_LSN_MAX, &rec)) == 1) {
        bool counted = prev.type == HS_REC_BUYER && prev.lsn + 1 == rec.lsn &&
                       (prev.flags & HS_REC_FLAG_GROUP_MORE) && prev.qty > 0;
        int s;
        order *o;

        if (strncmp(rec.sku, prefix, strlen(prefix)) != 0) {
            prev = rec;
            continue;
        }
        s = atoi(rec.sku + strlen(prefix));
        switch (rec.type) {
        case HS_REC_PUT_SKU:
        case HS_REC_ADD_STOCK:
            net[s] += rec.qty;
            break;
        case HS_REC_DEDUCT:
        case HS_REC_RESERVE:
            net[s] -= rec.qty;
            if (rec.type == HS_REC_DEDUCT)
                sold[s] += rec.qty;
            if (!counted || prev.qty != rec.qty || strcmp(prev.sku, rec.sku) != 0) {
                hs_queue_close(qr);
                FAIL("LSN %" PRIu64 ": take %s of %s not counted (record before: type %u, qty "
                     "%" PRId64 ")",
                     rec.lsn, rec.order_id, rec.sku, prev.type, prev.qty);
            }
            o = find(rec.order_id, true);
            if (o == NULL) {
                hs_queue_close(qr);
                FAIL("more than %d orders", MAX_ORDERS);
            }
            o->sku = s;
            o->who = atoi(prev.order_id + 1);
            o->qty = (int32_t)rec.qty;
            o->holds = true;
            held[s][o->who] += o->qty;
            if (held[s][o->who] > LIMIT) {
                hs_queue_close(qr);
                FAIL("OVER THE LIMIT at LSN %" PRIu64 ": buyer %s holds %d of %s (limit %d)",
                     rec.lsn, prev.order_id, held[s][o->who], rec.sku, LIMIT);
            }
            break;
        case HS_REC_CONFIRM:
            sold[s] += rec.qty;
            break;
        case HS_REC_REFUND:
        case HS_REC_CANCEL:
        case HS_REC_EXPIRE:
            net[s] += rec.qty;
            if (rec.type == HS_REC_REFUND)
                sold[s] -= rec.qty;
            o = find(rec.order_id, false);
            if (o != NULL && o->holds) {
                o->holds = false;
                held[s][o->who] -= o->qty;
            }
            break;
        }
        prev = rec;
    }
    hs_queue_close(qr);
    if (got < 0)
        FAIL("cannot read the queue: %s", hs_last_error());
    return true;
}

/* Every acknowledged take in the queue. */
static bool
check_log(const char *logpath)
{
    char line[256];
    FILE *f = fopen(logpath, "r");

    if (f == NULL)
        FAIL("cannot read %s", logpath);
    while (fgets(line, sizeof(line), f) != NULL) {
        char kind, id[64];

        if (sscanf(line, "%c %63s", &kind, id) < 2)
            continue;
        if (find(id, false) == NULL) {
            fclose(f);
            FAIL("acknowledged take %s is not in the queue", id);
        }
    }
    fclose(f);
    return true;
}

static bool
check_iteration(hsd_ctl *d, hs_client *c, int iter, const char *logpath)
{
    hsd_ctl_nap_ms(1500); /* every hold due (ttl < 0.9 s) and expired */
    if (hsd_ctl_stop(d) != 0)
        FAIL("daemon did not stop cleanly");
    if (!read_queue(d->dir, iter) || !check_log(logpath))
        return false;
    for (int s = 0; s < SKUS; s++)
        if (sold[s] > STOCK)
            FAIL("OVERSOLD: sku u%d.%d sold %" PRId64 " of %d", iter, s, sold[s], STOCK);
    if (hsd_ctl_start(d, NULL) != 0)
        FAIL("daemon did not start again");
    for (int s = 0; s < SKUS; s++) {
        char sku[32];
        int64_t a = -1;

        snprintf(sku, sizeof(sku), "u%d.%d", iter, s);
        if (hs_available(c, S(sku), &a) != HS_OK || a != net[s])
            FAIL("sku %s: available %" PRId64 ", the queue says %" PRId64, sku, a, net[s]);
        for (int w = 0; w < NAMES; w++) {
            char who[16];
            int32_t units = -1;

            snprintf(who, sizeof(who), "w%d", w);
            if (hs_buyer_units(c, S(sku), S(who), &units) != HS_OK || units < held[s][w] ||
                units > LIMIT)
                FAIL("sku %s buyer %s: counted %d, holds %d in the queue (limit %d)", sku, who,
                     (int)units, held[s][w], LIMIT);
        }
    }
    return true;
}

static bool
iteration(hsd_ctl *d, hs_client **c, int iter, unsigned *seed)
{
    static const crash_run run = {"u", SKUS, STOCK, BUYERS, buyer, 300, 1000, 600, 400};
    char logpath[600];

    for (int s = 0; s < SKUS; s++) {
        char sku[32];

        snprintf(sku, sizeof(sku), "u%d.%d", iter, s);
        if (hs_put_sku(*c, S(sku), STOCK, NULL) != HS_OK ||
            hs_sale_configure(*c, S(sku), 0, 0, LIMIT, NULL) != HS_OK)
            FAIL("put_sku or configure_sale %s: %s", sku, hs_last_error());
    }
    if (!crash_run_faults(d, *c, iter, seed, &run, logpath, sizeof(logpath)))
        return false;
    return check_iteration(d, *c, iter, logpath);
}

int
main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : 3;

    orders = calloc(MAX_ORDERS, sizeof(*orders));
    slots = calloc(2 * MAX_ORDERS, sizeof(*slots));
    if (orders == NULL || slots == NULL || iterations < 1) {
        fprintf(stderr, "usage: buyer_crash ITERATIONS\n");
        return 2;
    }
    return crash_prog_main("buyer_crash", "buyer-crash", iterations, iteration, "orders",
                           &norders);
}
