/*-------------------------------------------------------------------------
 *
 * test_buyer.c
 *      Per-buyer limits against a real hotstockd: the rules (no buyer, the
 *      limit, retries, every give-back: refund, cancel, expiry,
 *      compensation, a retake); 64 processes of one buyer on a limit of 2
 *      (exactly 2 sold, every round); 1,000 buyers with a limit of 1 on 500
 *      units (500 sold, no buyer twice); buyer processes SIGKILLed while
 *      they take and refund, then the daemon SIGKILLed: what the queue
 *      says a buyer holds never passes the limit and never exceeds the
 *      count, before and after the restart; the counts across a SIGKILL
 *      and a clean restart; baskets for a buyer; and the forgetting of an
 *      ended sale's buyers.
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <signal.h>
#include <stdatomic.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "client_check.h"
#include "daemon_ctl.h"
#include "hotstock.h"
#include "segment.h"
#include "util.h"

static uint64_t
now_ms(void)
{
    return hs_now_unix_us() / 1000;
}

static int32_t
units(hs_client *c, const char *sku, const char *buyer)
{
    int32_t u = -1;
    hs_result r = hs_buyer_units(c, S(sku), S(buyer), &u);

    if (r != HS_OK)
        fprintf(stderr, "hs_buyer_units(%s, %s): %s (%s)\n", sku, buyer, hs_result_name(r),
                hs_last_error());
    return u;
}

static hs_result
take(hs_client *c, const char *sku, int32_t qty, const char *order, const char *buyer)
{
    hs_lsn lsn;

    return hs_deduct_for(c, S(sku), qty, S(order), buyer, buyer ? strlen(buyer) : 0, 0,
                         UINT64_MAX, &lsn);
}

static void
test_rules(hsd_ctl *d, hs_client *c)
{
    hs_lsn lsn;
    uint64_t exp;
    int32_t q;

    CHECK_R(hs_put_sku(c, S("lim"), 100, NULL), HS_OK);
    /* no limit: a buyer is not counted */
    CHECK_R(take(c, "lim", 5, "n-1", "ann"), HS_OK);
    CHECK_EQ(units(c, "lim", "ann"), 0);
    CHECK_R(hs_sale_configure(c, S("lim"), 0, 0, 2, &lsn), HS_OK);
    /* a limit: no buyer named is refused, nothing taken or claimed */
    CHECK_R(take(c, "lim", 1, "r-0", NULL), HS_BUYER_LIMIT);
    CHECK_R(hs_order_status(c, S("r-0"), &(hs_order_status_code){0}, NULL, NULL), HS_NOT_FOUND);
    CHECK_EQ(avail(c, "lim"), 95);
    CHECK_R(take(c, "lim", 1, "r-1", "ann"), HS_OK);
    CHECK_R(take(c, "lim", 2, "r-2", "ann"), HS_BUYER_LIMIT);
    CHECK_R(take(c, "lim", 1, "r-3", "ann"), HS_OK);
    CHECK_R(take(c, "lim", 1, "r-4", "ann"), HS_BUYER_LIMIT);
    CHECK_R(take(c, "lim", 1, "r-1", "ann"), HS_DUPLICATE); /* a retry counts nothing */
    CHECK_EQ(units(c, "lim", "ann"), 2);
    CHECK_R(take(c, "lim", 2, "r-5", "bob"), HS_OK); /* another buyer has its own count */
    CHECK_R(take(c, "lim", 3, "r-6", "cy"), HS_BUYER_LIMIT);
    CHECK_EQ(avail(c, "lim"), 91);
    /* a refund gives the count back */
    CHECK_R(hs_refund(c, S("r-1"), &lsn, &q, NULL), HS_OK);
    CHECK_EQ(units(c, "lim", "ann"), 1);
    CHECK_R(take(c, "lim", 1, "r-4", "ann"), HS_OK); /* r-4 failed before: retried */
    CHECK_EQ(units(c, "lim", "ann"), 2);
    /* holds count; a cancel and an expiry give back */
    CHECK_R(hs_reserve_for(c, S("lim"), 2, S("h-1"), S("dee"), 0, 60000, UINT64_MAX, &lsn, &exp),
            HS_OK);
    CHECK_R(take(c, "lim", 1, "h-x", "dee"), HS_BUYER_LIMIT);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CANCEL, S("h-1"), 0, &lsn), HS_OK);
    CHECK_EQ(units(c, "lim", "dee"), 0);
    CHECK_R(hs_reserve_for(c, S("lim"), 2, S("h-2"), S("dee"), 0, 300, UINT64_MAX, &lsn, &exp),
            HS_OK);
    CHECK_EQ(units(c, "lim", "dee"), 2);
    for (int i = 0; i < 400 && units(c, "lim", "dee") != 0; i++)
        hsd_ctl_nap_ms(10);
    CHECK_EQ(units(c, "lim", "dee"), 0);
    /* a retake of the expired hold counts for its buyer again */
    CHECK_R(take(c, "lim", 1, "h-3", "dee"), HS_OK);
    CHECK_R(hs_hold_retake(c, S("h-2"), 0, UINT64_MAX, &lsn), HS_BUYER_LIMIT);
    CHECK_R(hs_refund(c, S("h-3"), &lsn, &q, NULL), HS_OK);
    CHECK_R(hs_hold_retake(c, S("h-2"), 0, UINT64_MAX, &lsn), HS_OK);
    CHECK_EQ(units(c, "lim", "dee"), 2);
    /* a confirmed hold stays counted; its refund gives back */
    CHECK_R(hs_reserve_for(c, S("lim"), 1, S("h-4"), S("eve"), 0, 60000, UINT64_MAX, &lsn, &exp),
            HS_OK);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("h-4"), 0, &lsn), HS_OK);
    CHECK_EQ(units(c, "lim", "eve"), 1);
    CHECK_R(hs_refund(c, S("h-4"), &lsn, &q, NULL), HS_OK);
    CHECK_EQ(units(c, "lim", "eve"), 0);
    /* a compensation (the taker's transaction did not commit) gives back */
    CHECK_R(hs_deduct_for(c, S("lim"), 2, S("x-1"), S("fay"), 77, UINT64_MAX, &lsn), HS_OK);
    CHECK_R(hs_compensate(c, S("x-1"), 77, &lsn, &q, NULL), HS_OK);
    CHECK_EQ(units(c, "lim", "fay"), 0);
    /* a lower limit refuses at once; stock is untouched by refusals */
    CHECK_R(hs_sale_configure(c, S("lim"), 0, 0, 1, &lsn), HS_OK);
    CHECK_R(take(c, "lim", 1, "r-7", "bob"), HS_BUYER_LIMIT);
    /* bad arguments */
    CHECK_R(hs_deduct_for(c, S("lim"), 1, S("r-8"), NULL, 3, 0, UINT64_MAX, &lsn),
            HS_BAD_ARGUMENT);
    CHECK_R(hs_deduct_for(c, S("lim"), 1, S("r-8"), "b", 64, 0, UINT64_MAX, &lsn),
            HS_BAD_ARGUMENT);
    (void)d;
}

/* Processes racing on one SKU; each attempt's result lands in a board. */
typedef struct board {
    _Atomic int ok[1000];      /* per buyer: units sold */
    _Atomic int sold, limited, sold_out, other;
    _Atomic int stop;
} board;

static board *
board_new(void)
{
    board *b = mmap(NULL, sizeof(board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                    -1, 0);
    return b == MAP_FAILED ? NULL : b;
}

static void
board_note(board *b, int buyer, hs_result r, int qty)
{
    if (r == HS_OK) {
        atomic_fetch_add(&b->ok[buyer], qty);
        atomic_fetch_add(&b->sold, qty);
    } else if (r == HS_BUYER_LIMIT) {
        atomic_fetch_add(&b->limited, 1);
    } else if (r == HS_SOLD_OUT) {
        atomic_fetch_add(&b->sold_out, 1);
    } else {
        atomic_fetch_add(&b->other, 1);
    }
}

static bool
reap(pid_t *pids, int n)
{
    bool ok = true;

    for (int i = 0; i < n; i++) {
        int status;
        ok = CHECK_EQ(waitpid(pids[i], &status, 0), pids[i]) && ok;
        ok = CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0) && ok;
    }
    return ok;
}

/* 64 sessions of one buyer, limit 2: exactly 2 units sold, every round. */
#define SESSIONS 64
static void
test_one_buyer(hsd_ctl *d, hs_client *c)
{
    board *b = board_new();
    pid_t pids[SESSIONS];
    hs_lsn lsn;

    if (!CHECK(b != NULL))
        return;
    for (int round = 0; round < 5; round++) {
        char sku[32];

        memset(b, 0, sizeof(*b));
        snprintf(sku, sizeof(sku), "one-%d", round);
        CHECK_R(hs_put_sku(c, S(sku), 1000, NULL), HS_OK);
        CHECK_R(hs_sale_configure(c, S(sku), 0, 0, 2, &lsn), HS_OK);
        for (int p = 0; p < SESSIONS; p++) {
            pids[p] = fork();
            if (pids[p] == 0) {
                hs_client *cc = NULL;

                if (hs_attach(d->dir, &cc) != HS_OK)
                    _exit(3);
                for (int k = 0; k < 20; k++) {
                    char id[40];
                    int qty = 1 + (p + k) % 2;

                    snprintf(id, sizeof(id), "o%d-%d-%d", round, p, k);
                    board_note(b, 0, take(cc, sku, qty, id, "the-buyer"), qty);
                }
                hs_detach(cc);
                _exit(0);
            }
        }
        reap(pids, SESSIONS);
        CHECK_EQ(atomic_load(&b->sold), 2);
        CHECK_EQ(atomic_load(&b->other), 0);
        CHECK_EQ(avail(c, sku), 998);
        CHECK_EQ(units(c, sku, "the-buyer"), 2);
    }
    fprintf(stderr, "# one buyer, %d sessions, limit 2: 2 sold in each of 5 rounds, %d refused in "
                    "the last\n",
            SESSIONS, atomic_load(&b->limited));
    munmap(b, sizeof(*b));
}

/* 1,000 buyers with a limit of 1 each try 3 times from 16 processes
 * racing on 500 units: 500 sold, none to a buyer twice. */
#define PROCS 16
static void
test_many_buyers(hsd_ctl *d, hs_client *c)
{
    board *b = board_new();
    pid_t pids[PROCS];
    int twice = 0, sold = 0;
    hs_lsn lsn;

    if (!CHECK(b != NULL))
        return;
    CHECK_R(hs_put_sku(c, S("many"), 500, NULL), HS_OK);
    CHECK_R(hs_sale_configure(c, S("many"), 0, 0, 1, &lsn), HS_OK);
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            hs_client *cc = NULL;

            if (hs_attach(d->dir, &cc) != HS_OK)
                _exit(3);
            /* every process walks all buyers from its own start, 3 times */
            for (int k = 0; k < 3 * 1000 / PROCS * 2; k++) {
                int buyer = (p * 61 + k * 7) % 1000;
                char id[32], who[16];

                snprintf(id, sizeof(id), "m%d-%d", p, k);
                snprintf(who, sizeof(who), "buyer-%d", buyer);
                board_note(b, buyer, take(cc, "many", 1, id, who), 1);
            }
            hs_detach(cc);
            _exit(0);
        }
    }
    reap(pids, PROCS);
    for (int i = 0; i < 1000; i++) {
        sold += atomic_load(&b->ok[i]);
        twice += atomic_load(&b->ok[i]) > 1;
    }
    CHECK_EQ(sold, 500);
    CHECK_EQ(twice, 0);
    CHECK_EQ(atomic_load(&b->other), 0);
    CHECK_EQ(avail(c, "many"), 0);
    fprintf(stderr, "# 1000 buyers, limit 1, 500 units: %d sold, %d buyers twice, %d refused by "
                    "the limit, %d sold out\n",
            sold, twice, atomic_load(&b->limited), atomic_load(&b->sold_out));
    munmap(b, sizeof(*b));
}

/* What the queue says buyer `who` holds of sku (its orders' last records:
 * DEDUCT, RESERVE or CONFIRM held; REFUND, CANCEL or EXPIRE given back),
 * and the sum of its BUYER records. */
static void
queue_holdings(const char *dir, const char *sku, const char *prefix, int *held, int *counted)
{
    static char last[4096][8];
    hs_queue_reader *r = NULL;
    hs_record rec;

    memset(last, 0, sizeof(last));
    *held = 0;
    *counted = 0;
    if (!CHECK_R(hs_queue_open(dir, 1, &r), HS_OK))
        return;
    while (hs_queue_next(r, HS_LSN_MAX, &rec) == 1) {
        int k;

        if (strcmp(rec.sku, sku) != 0)
            continue;
        if (rec.type == HS_REC_BUYER) {
            *counted += (int)rec.qty;
            continue;
        }
        if (strncmp(rec.order_id, prefix, strlen(prefix)) != 0)
            continue;
        k = atoi(rec.order_id + strlen(prefix));
        if (k >= 0 && k < 4096)
            last[k][0] = (char)rec.type, last[k][1] = (char)rec.qty;
    }
    hs_queue_close(r);
    for (int k = 0; k < 4096; k++)
        if (last[k][0] == HS_REC_DEDUCT)
            *held += last[k][1];
}

/* Buyer processes take and refund for one buyer while they are SIGKILLed
 * at random; then the daemon is SIGKILLed.  The queue never shows the
 * buyer holding more than the limit, nor more than its count. */
#define KPROCS 8
static void
test_kills(hsd_ctl *d, hs_client *c)
{
    _Atomic int *next = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t pids[KPROCS];
    uint64_t seed = 99;
    int held, counted, kills = 0;
    hs_lsn lsn;

    if (!CHECK(next != MAP_FAILED))
        return;
    atomic_store(next, 0);
    CHECK_R(hs_put_sku(c, S("kill"), 100000, NULL), HS_OK);
    CHECK_R(hs_sale_configure(c, S("kill"), 0, 0, 3, &lsn), HS_OK);
    for (int p = 0; p < KPROCS; p++)
        pids[p] = 0;
    for (double until = hs_test_seconds() + 2.0; hs_test_seconds() < until;) {
        for (int p = 0; p < KPROCS; p++) {
            if (pids[p] != 0)
                continue;
            pids[p] = fork();
            if (pids[p] == 0) {
                hs_client *cc = NULL;
                int32_t q;

                if (hs_attach(d->dir, &cc) != HS_OK)
                    _exit(3);
                for (;;) {
                    int k = atomic_fetch_add(next, 1);
                    char id[32];

                    if (k >= 4000)
                        _exit(0);
                    snprintf(id, sizeof(id), "k-%d", k);
                    if (take(cc, "kill", 1 + k % 2, id, "kim") == HS_OK && k % 3 != 0)
                        hs_refund(cc, S(id), &lsn, &q, NULL);
                }
            }
        }
        hsd_ctl_nap_ms(5 + (int)(hs_test_rand(&seed) % 20));
        {
            int p = (int)(hs_test_rand(&seed) % KPROCS);
            int status;

            if (pids[p] != 0 && kill(pids[p], SIGKILL) == 0) {
                CHECK_EQ(waitpid(pids[p], &status, 0), pids[p]);
                pids[p] = 0;
                kills++;
            }
        }
    }
    for (int p = 0; p < KPROCS; p++) {
        int status;

        if (pids[p] != 0) {
            CHECK_EQ(kill(pids[p], SIGKILL), 0);
            CHECK_EQ(waitpid(pids[p], &status, 0), pids[p]);
        }
    }
    /* every record published so far is durable once the flush passes it */
    hsd_ctl_nap_ms(200);
    queue_holdings(d->dir, "kill", "k-", &held, &counted);
    CHECK(held <= 3);
    CHECK(held <= units(c, "kill", "kim"));
    CHECK(counted >= held);
    fprintf(stderr, "# kills: %d buyer processes SIGKILLed; the buyer holds %d, counted %d "
                    "(queue) and %d (memory)\n",
            kills, held, counted, units(c, "kill", "kim"));
    hsd_ctl_kill(d);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    queue_holdings(d->dir, "kill", "k-", &held, &counted);
    CHECK(held <= 3);
    CHECK(held <= units(c, "kill", "kim"));
    CHECK(units(c, "kill", "kim") <= 3);
    munmap(next, sizeof(int));
}

/* The counts after a SIGKILL (the queue) and a clean stop (the
 * checkpoint); a refund after the restart still gives back. */
static void
test_restart(hsd_ctl *d, hs_client *c)
{
    hs_lsn lsn;
    int32_t q;

    CHECK_R(hs_put_sku(c, S("rst"), 50, NULL), HS_OK);
    CHECK_R(hs_sale_configure(c, S("rst"), 0, 0, 4, &lsn), HS_OK);
    CHECK_R(take(c, "rst", 3, "s-1", "gus"), HS_OK);
    CHECK_R(take(c, "rst", 1, "s-2", "gus"), HS_OK);
    CHECK_R(take(c, "rst", 2, "s-3", "hal"), HS_OK);
    CHECK_R(hs_deduct_for(c, S("rst"), 1, S("s-4"), S("hal"), 0, UINT64_MAX, &lsn), HS_OK);
    CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    hsd_ctl_kill(d);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    CHECK_EQ(units(c, "rst", "gus"), 4);
    CHECK_EQ(units(c, "rst", "hal"), 3);
    CHECK_R(take(c, "rst", 1, "s-5", "gus"), HS_BUYER_LIMIT);
    CHECK_R(hs_refund(c, S("s-1"), &lsn, &q, NULL), HS_OK);
    CHECK_EQ(units(c, "rst", "gus"), 1);
    CHECK_EQ(hsd_ctl_command(d, "checkpoint", 10), 0);
    CHECK_R(hs_refund(c, S("s-4"), &lsn, &q, NULL), HS_OK);
    CHECK_EQ(hsd_ctl_stop(d), 0);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    CHECK_EQ(units(c, "rst", "gus"), 1);
    CHECK_EQ(units(c, "rst", "hal"), 2);
    CHECK_R(hs_refund(c, S("s-2"), &lsn, &q, NULL), HS_OK);
    CHECK_EQ(units(c, "rst", "gus"), 0);
    CHECK_EQ(avail(c, "rst"), 50 - 2);
}

/* A sale that ended buyer_retention ago: its buyers are forgotten (the
 * FORGET record first); reopened, it counts from zero, and a refund of an
 * order taken before changes nothing; the same after a SIGKILL. */
static void
test_forget(hsd_ctl *d, hs_client *c)
{
    hs_status st;
    hs_lsn lsn;
    int32_t q;
    uint64_t end;

    CHECK_R(hs_put_sku(c, S("fgt"), 50, NULL), HS_OK);
    end = now_ms() + 300;
    CHECK_R(hs_sale_configure(c, S("fgt"), 0, end, 1, &lsn), HS_OK);
    CHECK_R(take(c, "fgt", 1, "f-1", "ivy"), HS_OK);
    CHECK_R(take(c, "fgt", 1, "f-2", "ivy"), HS_BUYER_LIMIT);
    {
        /* the daemon's forget re-checks the sale under its lock: a sale
         * not ended by then (here: reopened) forgets nothing */
        char real[PATH_MAX];
        hs_header *h = NULL;
        uint32_t si = 0, n = 99;

        if (CHECK(realpath(d->dir, real) != NULL) && CHECK_R(hs_segment_map(real, &h), HS_OK) &&
            CHECK_R(hs_sku_find(h, S("fgt"), false, &si), HS_OK)) {
            CHECK_R(hs_buyers_forget(c, si, end - 1, &lsn, &n), HS_DUPLICATE);
            CHECK_EQ(n, 0);
            CHECK_EQ(units(c, "fgt", "ivy"), 1);
        }
        if (h != NULL)
            hs_segment_unmap(h);
    }
    for (int i = 0; i < 600; i++) {
        if (hs_get_status(c, &st) == HS_OK && st.buyers_forgotten > 0)
            break;
        hsd_ctl_nap_ms(10);
    }
    CHECK_R(hs_get_status(c, &st), HS_OK);
    CHECK(st.buyers_forgotten >= 1);
    CHECK_EQ(units(c, "fgt", "ivy"), 0);
    CHECK(now_ms() >= end + 1000); /* not before buyer_retention (1 s) */
    /* reopened: a new count */
    CHECK_R(hs_sale_configure(c, S("fgt"), 0, 0, 1, &lsn), HS_OK);
    CHECK_R(take(c, "fgt", 1, "f-3", "ivy"), HS_OK);
    CHECK_R(hs_refund(c, S("f-1"), &lsn, &q, NULL), HS_OK); /* before the forgetting */
    CHECK_EQ(units(c, "fgt", "ivy"), 1);
    CHECK_R(take(c, "fgt", 1, "f-4", "ivy"), HS_BUYER_LIMIT);
    CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    hsd_ctl_kill(d);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    CHECK_EQ(units(c, "fgt", "ivy"), 1);
    CHECK_R(take(c, "fgt", 1, "f-4", "ivy"), HS_BUYER_LIMIT);
    CHECK_R(hs_refund(c, S("f-3"), &lsn, &q, NULL), HS_OK);
    CHECK_EQ(units(c, "fgt", "ivy"), 0);
}


/* Baskets for a buyer: the lines of limited SKUs count, one over its
 * limit refuses the whole basket; a cancel of a basket of holds and a
 * line's refund give back; 64 limited lines (a group of 128 records)
 * survive a SIGKILL. */
static void
test_baskets(hsd_ctl *d, hs_client *c)
{
    const char *two[] = {"ba", "bb"};
    const size_t two_lens[] = {2, 2};
    const int32_t qtys[] = {2, 5}, ones[] = {1, 1};
    const char *many[HS_BASKET_MAX];
    size_t many_lens[HS_BASKET_MAX];
    int32_t many_qty[HS_BASKET_MAX];
    static char names[HS_BASKET_MAX][16];
    char line[HS_ORDER_ID_MAX + 1];
    hs_lsn lsn;
    uint64_t exp;
    int32_t q;

    CHECK_R(hs_put_sku(c, S("ba"), 100, NULL), HS_OK);
    CHECK_R(hs_put_sku(c, S("bb"), 100, NULL), HS_OK);
    CHECK_R(hs_sale_configure(c, S("ba"), 0, 0, 2, &lsn), HS_OK);
    CHECK_R(hs_deduct_basket(c, S("bk-0"), 2, two, two_lens, ones, 0, UINT64_MAX, &lsn),
            HS_BUYER_LIMIT);
    CHECK_R(hs_deduct_basket_for(c, S("bk-1"), 2, two, two_lens, qtys, S("joe"), 0, UINT64_MAX,
                                 &lsn),
            HS_OK);
    CHECK_EQ(units(c, "ba", "joe"), 2);
    CHECK_EQ(units(c, "bb", "joe"), 0); /* bb has no limit */
    CHECK_R(hs_deduct_basket_for(c, S("bk-2"), 2, two, two_lens, ones, S("joe"), 0, UINT64_MAX,
                                 &lsn),
            HS_BUYER_LIMIT);
    CHECK_EQ(avail(c, "ba"), 98);
    CHECK_EQ(avail(c, "bb"), 95); /* the refused basket took no line */
    hs_basket_line_id(S("bk-1"), 0, 2, line);
    CHECK_R(hs_refund(c, line, strlen(line), &lsn, &q, NULL), HS_OK);
    CHECK_EQ(units(c, "ba", "joe"), 0);
    /* a basket of holds, cancelled whole */
    CHECK_R(hs_reserve_basket_for(c, S("bk-3"), 2, two, two_lens, ones, S("joe"), 0, 60000,
                                  UINT64_MAX, &lsn, &exp),
            HS_OK);
    CHECK_EQ(units(c, "ba", "joe"), 1);
    CHECK_R(hs_basket_settle(c, HS_HOLD_CANCEL, S("bk-3"), 0, &lsn), HS_OK);
    CHECK_EQ(units(c, "ba", "joe"), 0);
    CHECK_EQ(avail(c, "ba"), 100);

    /* 64 limited lines: BUYER, line, BUYER, line, ... one group */
    for (int i = 0; i < HS_BASKET_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "bm-%d", i);
        many[i] = names[i];
        many_lens[i] = strlen(names[i]);
        many_qty[i] = 1 + i % 2;
        CHECK_R(hs_put_sku(c, S(names[i]), 10, NULL), HS_OK);
        CHECK_R(hs_sale_configure(c, S(names[i]), 0, 0, 2, &lsn), HS_OK);
    }
    CHECK_R(hs_deduct_basket_for(c, S("bk-4"), HS_BASKET_MAX, many, many_lens, many_qty,
                                 S("kay"), 0, UINT64_MAX, &lsn),
            HS_OK);
    CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    hsd_ctl_kill(d);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    CHECK_EQ(units(c, "bm-1", "kay"), 2);
    CHECK_EQ(units(c, "bm-62", "kay"), 1);
    CHECK_R(hs_deduct_basket_for(c, S("bk-5"), HS_BASKET_MAX, many, many_lens, many_qty,
                                 S("kay"), 0, UINT64_MAX, &lsn),
            HS_BUYER_LIMIT);
    hs_basket_line_id(S("bk-4"), 1, HS_BASKET_MAX, line);
    CHECK_R(hs_refund(c, line, strlen(line), &lsn, &q, NULL), HS_OK);
    CHECK_EQ(units(c, "bm-1", "kay"), 0);
    CHECK_EQ(avail(c, "bm-1"), 10);
}

int
main(void)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;
    static const char *const flags[] = {"--buyer-retention", "1", NULL};

    if (!client_test_start(&d, "buyer", &c, flags))
        return hs_test_done();
    test_rules(&d, c);
    test_one_buyer(&d, c);
    test_many_buyers(&d, c);
    test_kills(&d, c);
    test_restart(&d, c);
    test_baskets(&d, c);
    test_forget(&d, c);
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    hs_test_rmrf(d.dir);
    return hs_test_done();
}
