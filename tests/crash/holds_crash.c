/*-------------------------------------------------------------------------
 *
 * holds_crash.c
 *      The crash suite's reservation fault mix: buyers that reserve,
 *      confirm, cancel, abandon and retake holds on scarce stock while the
 *      daemon or a buyer is SIGKILLed; then every acknowledged answer, the
 *      queue and the counters are checked.
 *
 * Design note: libhotstock clients (forked buyer processes) against a
 * private hotstockd this program starts (tests/daemon_ctl.h) in a fresh
 * directory; no PostgreSQL.  Every call that changes something waits for
 * its record to be durable (hs_wait_durable, "synchronous on") before the
 * buyer logs the answer, so an acknowledged answer must survive any kill.
 * The log is one line per acknowledged answer, appended with one write(2)
 * to an O_APPEND file after the call returned:
 *
 *     R  id sku qty deadline_ms    a hold (reserve answered HS_OK)
 *     C  id                        confirmed (HS_OK)
 *     X  id                        a confirm answered HS_HOLD_EXPIRED
 *     K  id                        cancelled (HS_OK)
 *     T  id                        a late confirm took units anew (retake)
 *
 * One iteration: new SKUs (SKUS of STOCK units each, scarce: the buyers
 * sell them out and expired holds put units back), BUYERS processes for a
 * while, one fault (by iteration: SIGKILL the daemon and start it again,
 * SIGKILL a buyer in mid-run, or both), the buyers stopped (SIGKILL: an
 * answer not logged yet is simply unknown), a smart stop and start of the
 * daemon (counters rebuilt from the queue), and the checks:
 *   - the queue read back, order by order, follows the protocol: RESERVE,
 *     then at most one of CONFIRM / CANCEL / EXPIRE, then (after CANCEL or
 *     EXPIRE) at most one DEDUCT (a retake); no EXPIRE before the deadline
 *     written in the RESERVE;
 *   - never oversold: per SKU, units held + units sold <= stock, and
 *     after the restart hs_available() is stock - held - sold (plus the
 *     units of holds that expire while it looks), and exactly stock -
 *     sold once every hold ended;
 *   - every acknowledged answer is in the queue: a hold with the deadline
 *     it was told, a confirm as a CONFIRM (never followed by a give-back),
 *     a cancel as a CANCEL, an expired confirm as an EXPIRE, a retake as a
 *     DEDUCT;
 *   - every hold still live comes back with its deadline, and expires:
 *     within 1 s of its deadline, or of the restart for one that came due
 *     while the daemon was down; then every unit not sold is available.
 * Each iteration prints one line, "iteration N (fault): ok" or "...:
 * FAILED: what", and the run ends with `N passed, N failed` (iterations).
 *
 *   holds_crash ITERATIONS
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
#define STOCK 20
#define BUYERS 6
#define MAX_ORDERS (1 << 17)
#define S(str) (str), strlen(str)

/*-------------------------------------------------------------------------
 * Buyers
 *-------------------------------------------------------------------------
 */

/* Every record so far durable (an EXPIRE this call may have written). */
static bool
all_durable(hs_client *c)
{
    hs_status st;

    return hs_get_status(c, &st) == HS_OK && durable(c, st.next_lsn - 1);
}

static _Noreturn void
buyer(const char *dir, int iter, int b, int logfd)
{
    hs_client *c = NULL;
    unsigned seed = (unsigned)(iter * 7919 + b * 104729 + getpid());

    for (uint32_t seq = 0;; seq++) {
        char id[64], sku[32];
        int s = rand_r(&seed) % SKUS, qty = 1 + rand_r(&seed) % 2, pick = rand_r(&seed) % 10;
        uint32_t ttl = pick < 3 ? 150 + rand_r(&seed) % 450 : 600 + rand_r(&seed) % 2400;
        uint64_t deadline = 0;
        hs_lsn lsn = 0;
        hs_result r;

        if (c == NULL && hs_attach(dir, &c) != HS_OK) {
            c = NULL;
            usleep(20000);
            continue;
        }
        snprintf(id, sizeof(id), "i%d.b%d.%u", iter, b, seq);
        snprintf(sku, sizeof(sku), "s%d.%d", iter, s);
        r = hs_reserve(c, S(sku), qty, S(id), 0, ttl, UINT64_MAX, &lsn, &deadline);
        if (r == HS_SOLD_OUT) {
            usleep(2000);
            continue;
        }
        if (r != HS_OK || !durable(c, lsn)) {
            usleep(20000); /* daemon down, or restarting: unknown */
            continue;
        }
        logline(logfd, "R %s %s %d %" PRIu64 "\n", id, sku, qty, deadline);
        pick = rand_r(&seed) % 10;
        if (pick < 5) { /* pay: at once, or late (around the deadline) */
            if (rand_r(&seed) % 2 == 0)
                usleep((useconds_t)(rand_r(&seed) % (ttl * 1200)));
            r = hs_hold_settle(c, HS_HOLD_CONFIRM, S(id), 0, &lsn);
            if (r == HS_OK && durable(c, lsn))
                logline(logfd, "C %s\n", id);
            else if (r == HS_HOLD_EXPIRED && all_durable(c)) {
                logline(logfd, "X %s\n", id);
                if (rand_r(&seed) % 2 == 0 &&
                    hs_hold_retake(c, S(id), 0, UINT64_MAX, &lsn) == HS_OK && durable(c, lsn))
                    logline(logfd, "T %s\n", id);
            }
        } else if (pick < 7) { /* change of mind */
            usleep((useconds_t)(rand_r(&seed) % (ttl * 500)));
            r = hs_hold_settle(c, HS_HOLD_CANCEL, S(id), 0, &lsn);
            if (r == HS_OK && durable(c, lsn))
                logline(logfd, "K %s\n", id);
        } /* else: never comes back */
    }
}

/*-------------------------------------------------------------------------
 * The queue, order by order
 *-------------------------------------------------------------------------
 */

typedef struct ord {
    char id[48];
    int sku, qty;
    uint64_t deadline;      /* from the RESERVE */
    char seq[8];            /* record types in LSN order: R C K E D */
    int nseq;
    bool early_expire;      /* an EXPIRE timestamped before the deadline */
    uint64_t expired_at_ms; /* the EXPIRE's timestamp */
} ord;

static ord *orders;
static uint32_t *slots; /* index + 1 into orders; MAX_ORDERS * 2 of them */
static uint32_t norders;

static ord *
find(const char *id, bool create)
{
    return crash_find(orders, sizeof(ord), sizeof(orders[0].id), slots, MAX_ORDERS, &norders, id,
                      create);
}

/* Read the whole queue of dir into orders; 0, or -1. */
static int
read_queue(const char *dir)
{
    hs_queue_reader *qr = NULL;
    hs_record rec;
    int got;

    memset(slots, 0, sizeof(uint32_t) * 2 * MAX_ORDERS);
    norders = 0;
    if (hs_queue_open(dir, 1, &qr) != HS_OK)
        return -1;
    while ((got = hs_queue_next(qr, HS_LSN_MAX, &rec)) == 1) {
        char id[HS_ORDER_ID_MAX + 1];
        ord *o;
        char t;

        if (rec.order_len == 0 || rec.order_id[0] != 'i')
            continue;
        memcpy(id, rec.order_id, rec.order_len);
        id[rec.order_len] = '\0';
        o = find(id, true);
        if (o == NULL)
            break;
        switch (rec.type) {
        case HS_REC_RESERVE:
            t = 'R';
            o->qty = rec.qty;
            o->sku = atoi(strchr(rec.sku, '.') + 1);
            o->deadline = rec.timestamp_us / 1000 + rec.ttl_ms;
            break;
        case HS_REC_CONFIRM:
            t = 'C';
            break;
        case HS_REC_CANCEL:
            t = 'K';
            break;
        case HS_REC_EXPIRE:
            t = 'E';
            o->expired_at_ms = rec.timestamp_us / 1000;
            o->early_expire |= o->expired_at_ms < o->deadline;
            break;
        case HS_REC_DEDUCT:
            t = 'D';
            break;
        default:
            t = '?';
            break;
        }
        if (o->nseq < (int)sizeof(o->seq) - 1)
            o->seq[o->nseq++] = t;
    }
    hs_queue_close(qr);
    return got < 0 ? -1 : 0;
}

/* Does o's record sequence follow the protocol? */
static bool
protocol_ok(const ord *o)
{
    const char *ok[] = {"R", "RC", "RK", "RE", "RKD", "RED"};

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(o->seq, ok[i]) == 0)
            return !o->early_expire;
    return false;
}

/*-------------------------------------------------------------------------
 * One iteration
 *-------------------------------------------------------------------------
 */

static bool
check_iteration(hsd_ctl *d, hs_client *c, int iter, const char *logpath, uint64_t ready_ms)
{
    char line[256], id[64], sku[32];
    int64_t held[SKUS] = {0}, sold[SKUS] = {0};
    uint64_t last_deadline = 0;
    FILE *f;

    if (read_queue(d->dir) != 0)
        FAIL("cannot read the queue back: %s", hs_last_error());
    for (uint32_t i = 0; i < norders; i++) {
        const ord *o = &orders[i];
        char last;

        if (!protocol_ok(o))
            FAIL("order %s: records %s%s", o->id, o->seq,
                 o->early_expire ? " (EXPIRE before the deadline)" : "");
        if (strncmp(o->id, "i", 1) != 0 || atoi(o->id + 1) != iter)
            continue;
        last = o->seq[o->nseq - 1];
        if (last == 'R')
            held[o->sku] += o->qty;
        else if (last == 'C' || last == 'D')
            sold[o->sku] += o->qty;
    }
    for (int s = 0; s < SKUS; s++) {
        int64_t a = -1;

        snprintf(sku, sizeof(sku), "s%d.%d", iter, s);
        if (held[s] + sold[s] > STOCK)
            FAIL("OVERSOLD %s: %" PRId64 " held + %" PRId64 " sold > %d", sku, held[s], sold[s],
                 STOCK);
        /* a live hold may expire between the read of the queue and this
         * one: at least what the queue says, at most that plus the holds */
        if (hs_available(c, S(sku), &a) != HS_OK || a < STOCK - held[s] - sold[s] ||
            a > STOCK - sold[s])
            FAIL("%s: available %" PRId64 " after the restart, the queue says %" PRId64
                 " (+ up to %" PRId64 " held)",
                 sku, a, STOCK - held[s] - sold[s], held[s]);
    }

    f = fopen(logpath, "r");
    if (f == NULL)
        FAIL("no log %s", logpath);
    while (fgets(line, sizeof(line), f) != NULL) {
        char kind;
        int qty;
        uint64_t dl;
        const ord *o;

        if (sscanf(line, "%c %63s", &kind, id) != 2)
            continue;
        o = find(id, false);
        if (o == NULL) {
            fclose(f);
            FAIL("acknowledged %c of %s is not in the queue", kind, id);
        }
        if ((kind == 'R' && (sscanf(line, "R %*s %31s %d %" SCNu64, sku, &qty, &dl) != 3 ||
                             dl != o->deadline || qty != o->qty)) ||
            (kind == 'C' && strcmp(o->seq, "RC") != 0) ||
            (kind == 'K' && strncmp(o->seq, "RK", 2) != 0) ||
            (kind == 'X' && strncmp(o->seq, "RE", 2) != 0) ||
            (kind == 'T' && (o->nseq != 3 || o->seq[2] != 'D'))) {
            fclose(f);
            FAIL("acknowledged %c of %s, the queue has %s (deadline %" PRIu64 ")", kind, id,
                 o->seq, o->deadline);
        }
    }
    fclose(f);

    /* live holds: back with their deadline, then expired on time */
    for (uint32_t i = 0; i < norders; i++) {
        const ord *o = &orders[i];
        hs_order_info info;

        if (strcmp(o->seq, "R") != 0)
            continue;
        if (hs_order_lookup(c, o->id, strlen(o->id), &info) != HS_OK ||
            (info.status != HS_ORDER_STATUS_RESERVED && info.status != HS_ORDER_STATUS_EXPIRED) ||
            info.expires_at_ms != o->deadline)
            FAIL("live hold %s: after the restart status %d, deadline %" PRIu64 " (queue: %" PRIu64
                 ")",
                 o->id, (int)info.status, info.expires_at_ms, o->deadline);
        if (o->deadline > last_deadline)
            last_deadline = o->deadline;
    }
    while (hs_now_unix_us() / 1000 < last_deadline + 1500)
        hsd_ctl_nap_ms(50);
    for (int k = 0; k < 200; k++) { /* the last EXPIREs durable */
        hs_status st;

        if (hs_get_status(c, &st) == HS_OK && st.durable_lsn + 1 >= st.next_lsn)
            break;
        hsd_ctl_nap_ms(10);
    }
    {
        uint32_t n_before = norders;
        ord *live = malloc(sizeof(ord) * (n_before ? n_before : 1));
        uint32_t nlive = 0;

        for (uint32_t i = 0; i < n_before; i++)
            if (strcmp(orders[i].seq, "R") == 0)
                live[nlive++] = orders[i];
        if (read_queue(d->dir) != 0) {
            free(live);
            FAIL("cannot read the queue back: %s", hs_last_error());
        }
        for (uint32_t i = 0; i < nlive; i++) {
            const ord *o = find(live[i].id, false);
            uint64_t due = o->deadline > ready_ms ? o->deadline : ready_ms;

            if (o == NULL || strcmp(o->seq, "RE") != 0 || o->expired_at_ms > due + 1000) {
                snprintf(why, sizeof(why),
                         "live hold %s: records %s, expired at %" PRIu64 ", due %" PRIu64,
                         live[i].id, o ? o->seq : "?", o ? o->expired_at_ms : 0, due);
                free(live);
                return false;
            }
        }
        free(live);
    }
    for (int s = 0; s < SKUS; s++) {
        int64_t a = -1;

        snprintf(sku, sizeof(sku), "s%d.%d", iter, s);
        if (hs_available(c, S(sku), &a) != HS_OK || a != STOCK - sold[s])
            FAIL("%s: available %" PRId64 " once every hold ended, want %" PRId64, sku, a,
                 STOCK - sold[s]);
    }
    return true;
}

/* One iteration; true when every check held. */
static bool
iteration(hsd_ctl *d, hs_client **c, int iter, unsigned *seed)
{
    static const crash_run run = {"s", SKUS, STOCK, BUYERS, buyer, 400, 1200, 800, 500};
    char logpath[600];
    uint64_t ready_ms;

    if (!crash_run_faults(d, *c, iter, seed, &run, logpath, sizeof(logpath)))
        return false;
    ready_ms = hs_now_unix_us() / 1000;
    return check_iteration(d, *c, iter, logpath, ready_ms);
}

int
main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : 3;

    orders = calloc(MAX_ORDERS, sizeof(*orders));
    slots = calloc(2 * MAX_ORDERS, sizeof(*slots));
    if (orders == NULL || slots == NULL || iterations < 1) {
        fprintf(stderr, "usage: holds_crash ITERATIONS\n");
        return 2;
    }
    return crash_prog_main("holds_crash", "holds-crash", iterations, iteration, "orders", &norders);
}
