/*-------------------------------------------------------------------------
 *
 * test_basket.c
 *      Baskets against a real hotstockd: every line or none.
 *
 *   - basics: a basket taken whole, a retry, another basket under the
 *     same id, a short line (nothing taken), bad arguments, refunds;
 *   - stress: buyer processes take overlapping baskets over few SKUs with
 *     scarce stock, while others take single units of the same SKUs;
 *     every basket is whole or absent (its lines' states, and in the
 *     queue), and units add up exactly, in memory and after a restart;
 *   - kill: a buyer SIGKILLed at random points many times, then the
 *     daemon SIGKILLed: the queue read back holds every basket whole or
 *     not at all, every group whole, and the rebuilt counters match it.
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "client_check.h"
#include "daemon_ctl.h"
#include "hotstock.h"
#include "segment.h"

#define NSKU 4
#define STOCK 300
#define BUYERS 4
#define BASKETS 300 /* per buyer */
#define SINGLES 300 /* per single buyer */
#define KILL_BASKETS 20000

static const char *const sku_names[NSKU] = {"bk-a", "bk-b", "bk-c", "bk-d"};

/* Take basket id with lines (sku index, qty). */
static hs_result
basket(hs_client *c, const char *id, int n, const int *sku, const int32_t *qty, hs_lsn *lsn)
{
    const char *names[HS_BASKET_MAX];
    size_t lens[HS_BASKET_MAX];

    for (int i = 0; i < n; i++) {
        names[i] = sku_names[sku[i]];
        lens[i] = strlen(names[i]);
    }
    return hs_deduct_basket(c, S(id), n, names, lens, qty, 0, UINT64_MAX, lsn);
}

/* Status of line i of an n-line basket. */
static hs_order_status_code
line_status(hs_client *c, const char *id, int i, int n)
{
    char line[HS_ORDER_ID_MAX + 1];
    size_t len = hs_basket_line_id(S(id), i, n, line);
    hs_order_status_code st = HS_ORDER_STATUS_UNKNOWN;

    (void)hs_order_status(c, line, len, &st, NULL, NULL);
    return st;
}

static void
test_basics(hs_client *c)
{
    const int ab[] = {0, 1}, ac[] = {0, 2}, abd[] = {0, 1, 3}, aa[] = {0, 0};
    const int32_t q21[] = {2, 1}, q12[] = {1, 2}, q111[] = {1, 1, 1};
    const char *big_names[HS_BASKET_MAX + 1];
    size_t big_lens[HS_BASKET_MAX + 1];
    int32_t big_qty[HS_BASKET_MAX + 1];
    const char *one = "bk-a";
    size_t one_len = 4;
    char id[80];
    hs_lsn lsn = 0;
    int n = 0;

    for (int i = 0; i < NSKU; i++)
        CHECK_R(hs_put_sku(c, S(sku_names[i]), i == 2 ? 1 : 5, NULL), HS_OK);

    /* whole */
    CHECK_R(basket(c, "b1", 2, ab, q21, &lsn), HS_OK);
    CHECK(lsn > 0);
    CHECK_EQ(avail(c, "bk-a"), 3);
    CHECK_EQ(avail(c, "bk-b"), 4);
    CHECK_EQ(line_status(c, "b1", 0, 2), HS_ORDER_STATUS_DEDUCTED);
    CHECK_EQ(line_status(c, "b1", 1, 2), HS_ORDER_STATUS_DEDUCTED);
    CHECK_R(hs_basket_find(c, S("b1"), &n), HS_OK);
    CHECK_EQ(n, 2);
    /* a retry changes nothing; other lines under the same id are refused */
    CHECK_R(basket(c, "b1", 2, ab, q21, &lsn), HS_DUPLICATE);
    CHECK_R(basket(c, "b1", 2, ab, q12, &lsn), HS_ORDER_MISMATCH);
    CHECK_EQ(avail(c, "bk-a"), 3);
    CHECK_EQ(avail(c, "bk-b"), 4);

    /* a short line: nothing taken, not even the lines that were there */
    CHECK_R(basket(c, "b2", 2, ac, q12, &lsn), HS_SOLD_OUT);
    CHECK_EQ(avail(c, "bk-a"), 3);
    CHECK_EQ(avail(c, "bk-c"), 1);
    CHECK(line_status(c, "b2", 0, 2) != HS_ORDER_STATUS_DEDUCTED);
    CHECK(line_status(c, "b2", 1, 2) != HS_ORDER_STATUS_DEDUCTED);
    /* ... and the same basket succeeds once restocked */
    CHECK_R(hs_add_stock(c, S("bk-c"), 1, NULL, NULL), HS_OK);
    CHECK_R(basket(c, "b2", 2, ac, q12, &lsn), HS_OK);
    CHECK_EQ(avail(c, "bk-a"), 2);
    CHECK_EQ(avail(c, "bk-c"), 0);

    /* bad arguments: nothing taken */
    CHECK_R(basket(c, "b3", 2, aa, q12, &lsn), HS_BAD_ARGUMENT);
    CHECK_R(basket(c, "b\x1f" "3", 2, ab, q12, &lsn), HS_BAD_ARGUMENT);
    memset(id, 'x', sizeof(id));
    id[HS_BASKET_ID_MAX + 1] = '\0';
    CHECK_R(basket(c, id, 2, ab, q12, &lsn), HS_BAD_ARGUMENT);
    id[HS_BASKET_ID_MAX] = '\0';
    CHECK_R(basket(c, id, 3, abd, q111, &lsn), HS_OK);
    CHECK_R(hs_deduct_basket(c, S("b4"), 0, &one, &one_len, q12, 0, UINT64_MAX, &lsn),
            HS_BAD_ARGUMENT);
    for (int i = 0; i <= HS_BASKET_MAX; i++) {
        big_names[i] = "bk-a";
        big_lens[i] = 4;
        big_qty[i] = 1;
    }
    CHECK_R(hs_deduct_basket(c, S("b4"), HS_BASKET_MAX + 1, big_names, big_lens, big_qty, 0,
                             UINT64_MAX, &lsn),
            HS_BAD_ARGUMENT);
    {
        const char *names[] = {"bk-a", "no-such-sku"};
        size_t lens[] = {4, 11};

        CHECK_R(hs_deduct_basket(c, S("b5"), 2, names, lens, q12, 0, UINT64_MAX, &lsn),
                HS_UNKNOWN_SKU);
    }
    CHECK_EQ(avail(c, "bk-a"), 1);
    CHECK_EQ(avail(c, "bk-b"), 3);
    CHECK_EQ(avail(c, "bk-d"), 4);

    /* refunds act on lines; a refunded basket is not taken again */
    for (int i = 0; i < 2; i++) {
        char line[HS_ORDER_ID_MAX + 1];
        size_t len = hs_basket_line_id(S("b1"), i, 2, line);

        CHECK_R(hs_refund(c, line, len, &lsn, NULL, NULL), HS_OK);
    }
    CHECK_EQ(avail(c, "bk-a"), 3);
    CHECK_EQ(avail(c, "bk-b"), 4);
    CHECK_R(basket(c, "b1", 2, ab, q21, &lsn), HS_ALREADY_REFUNDED);
    CHECK_EQ(avail(c, "bk-a"), 3);
}

/*-------------------------------------------------------------------------
 * Stress and kill: shared outcome board
 *-------------------------------------------------------------------------
 */

typedef struct plan {
    int n;
    int sku[3];
    int32_t qty[3];
} plan;

/* The basket a buyer takes as its k-th: a pure function of (buyer, k). */
static plan
plan_of(int buyer, int k)
{
    uint64_t seed = (uint64_t)buyer * 1000003u + (uint64_t)k * 7919u + 1;
    plan p;
    int used = 0;

    p.n = 2 + (int)(hs_test_rand(&seed) % 2);
    for (int i = 0; i < p.n; i++) {
        int s;

        do
            s = (int)(hs_test_rand(&seed) % NSKU);
        while (used & (1 << s));
        used |= 1 << s;
        p.sku[i] = s;
        p.qty[i] = 1 + (int32_t)(hs_test_rand(&seed) % 3);
    }
    return p;
}

static void
basket_id(char *out, size_t len, int buyer, int k)
{
    snprintf(out, len, "u%d-%d", buyer, k);
}

/* A buyer process: BASKETS baskets, outcomes into board[k]. */
static void
buyer_main(const char *dir, int buyer, int count, _Atomic int *board)
{
    hs_client *c = NULL;

    if (hs_attach(dir, &c) != HS_OK)
        _exit(3);
    for (int k = 0; k < count; k++) {
        plan p = plan_of(buyer, k);
        char id[32];
        hs_lsn lsn;
        hs_result r;

        basket_id(id, sizeof(id), buyer, k);
        atomic_store(&board[k], -1); /* started */
        r = basket(c, id, p.n, p.sku, p.qty, &lsn);
        atomic_store(&board[k], (int)r);
        if (r != HS_OK && r != HS_SOLD_OUT)
            _exit(4);
    }
    hs_detach(c);
    _exit(0);
}

/* A single-unit buyer on the same SKUs. */
static void
single_main(const char *dir, int who, _Atomic int *taken)
{
    hs_client *c = NULL;

    if (hs_attach(dir, &c) != HS_OK)
        _exit(3);
    for (int k = 0; k < SINGLES; k++) {
        char id[32];
        int s = k % NSKU;
        hs_lsn lsn;
        hs_result r;

        snprintf(id, sizeof(id), "s%d-%d", who, k);
        r = hs_deduct(c, S(sku_names[s]), 1, S(id), 0, &lsn);
        if (r == HS_OK)
            atomic_fetch_add(&taken[s], 1);
        else if (r != HS_SOLD_OUT)
            _exit(4);
    }
    hs_detach(c);
    _exit(0);
}

/* Read the whole queue: per SKU the units taken by deductions minus
 * refunds (*net), per basket id the lines found, and whether every group
 * is whole.  false on a read error or a broken group. */
typedef struct queue_view {
    int64_t put[NSKU];   /* put/add deltas */
    int64_t taken[NSKU]; /* deducted minus refunded */
    int lines[BUYERS][BASKETS];
    int kill_lines[KILL_BASKETS];
    uint64_t groups;
    int forged; /* records of forged-* orders (test_partial_group) */
} queue_view;

static bool
read_queue(const char *dir, queue_view *v)
{
    hs_queue_reader *r;
    hs_record rec;
    int rc, in_group = 0;
    hs_lsn expect = 0;
    bool ok = true;

    memset(v, 0, sizeof(*v));
    if (hs_queue_open(dir, 1, &r) != HS_OK) {
        fprintf(stderr, "hs_queue_open %s: %s\n", dir, hs_last_error());
        return false;
    }
    while ((rc = hs_queue_next(r, HS_LSN_MAX, &rec)) == 1) {
        int s = -1, b, k;

        if (in_group && rec.lsn != expect)
            ok = false;
        if (rec.flags & HS_REC_FLAG_GROUP_MORE) {
            if (!in_group)
                v->groups++;
            in_group = 1;
            expect = rec.lsn + 1;
        } else {
            in_group = 0;
        }
        if (rec.type == HS_REC_NOOP)
            continue;
        if (strncmp(rec.order_id, "forged-", 7) == 0)
            v->forged++;
        for (int i = 0; i < NSKU; i++)
            if (strcmp(rec.sku, sku_names[i]) == 0)
                s = i;
        if (s < 0)
            continue;
        if (rec.type == HS_REC_PUT_SKU || rec.type == HS_REC_ADD_STOCK)
            v->put[s] += rec.qty;
        else if (rec.type == HS_REC_DEDUCT)
            v->taken[s] += rec.qty;
        else if (rec.type == HS_REC_REFUND)
            v->taken[s] -= rec.qty;
        if (rec.type == HS_REC_DEDUCT && sscanf(rec.order_id, "u%d-%d", &b, &k) == 2 &&
            b >= 0 && b < BUYERS && k >= 0 && k < BASKETS)
            v->lines[b][k]++;
        if (rec.type == HS_REC_DEDUCT && sscanf(rec.order_id, "u%d-%d", &b, &k) == 2 &&
            b == BUYERS && k >= 0 && k < KILL_BASKETS)
            v->kill_lines[k]++;
    }
    hs_queue_close(r);
    if (rc < 0) {
        fprintf(stderr, "hs_queue_next %s: %s\n", dir, hs_last_error());
        return false;
    }
    if (in_group) {
        fprintf(stderr, "the queue ends inside a group\n");
        ok = false;
    }
    return ok;
}

static void
test_stress(hsd_ctl *d, hs_client *c)
{
    size_t board_size = sizeof(_Atomic int) * (BUYERS * BASKETS + NSKU);
    _Atomic int *board = mmap(NULL, board_size, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    _Atomic int *single_taken = board + BUYERS * BASKETS;
    pid_t pids[BUYERS + 2];
    int64_t basket_taken[NSKU] = {0};
    int whole = 0, refused = 0, partial = 0;
    queue_view v, base;
    double t0 = hs_test_seconds();

    if (!CHECK(board != MAP_FAILED))
        return;
    for (int i = 0; i < NSKU; i++)
        CHECK_R(hs_put_sku(c, S(sku_names[i]), STOCK, NULL), HS_OK);
    /* what the queue holds before */
    CHECK_EQ(hsd_ctl_stop(d), 0);
    CHECK(read_queue(d->dir, &base));
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    for (int b = 0; b < BUYERS; b++) {
        pids[b] = fork();
        if (pids[b] == 0)
            buyer_main(d->dir, b, BASKETS, board + b * BASKETS);
    }
    for (int w = 0; w < 2; w++) {
        pids[BUYERS + w] = fork();
        if (pids[BUYERS + w] == 0)
            single_main(d->dir, w, single_taken);
    }
    for (int i = 0; i < BUYERS + 2; i++) {
        int status = -1;

        CHECK_EQ(waitpid(pids[i], &status, 0), pids[i]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    /* every basket whole (all lines DEDUCTED, units counted) or absent */
    for (int b = 0; b < BUYERS; b++)
        for (int k = 0; k < BASKETS; k++) {
            plan p = plan_of(b, k);
            char id[32];
            int deducted = 0;

            basket_id(id, sizeof(id), b, k);
            for (int i = 0; i < p.n; i++)
                deducted += line_status(c, id, i, p.n) == HS_ORDER_STATUS_DEDUCTED;
            if (board[b * BASKETS + k] == HS_OK && deducted == p.n) {
                whole++;
                for (int i = 0; i < p.n; i++)
                    basket_taken[p.sku[i]] += p.qty[i];
            } else if (board[b * BASKETS + k] == HS_SOLD_OUT && deducted == 0) {
                refused++;
            } else {
                partial++;
                fprintf(stderr, "basket %s: answer %d, %d of %d lines deducted\n", id,
                        board[b * BASKETS + k], deducted, p.n);
            }
        }
    CHECK_EQ(partial, 0);
    CHECK(whole > 0 && refused > 0); /* the stock was scarce: both happened */
    for (int i = 0; i < NSKU; i++) {
        int64_t a = avail(c, sku_names[i]);

        /* never oversold, and every unit accounted for */
        CHECK(a >= 0);
        CHECK_EQ(a + basket_taken[i] + single_taken[i], STOCK);
    }
    fprintf(stderr, "# stress: %d baskets whole, %d refused, 0 partial; singles %d %d %d %d; "
                    "%.1f s\n",
            whole, refused, single_taken[0], single_taken[1], single_taken[2], single_taken[3],
            hs_test_seconds() - t0);

    /* the queue says the same, and a restart rebuilds it */
    CHECK_EQ(hsd_ctl_stop(d), 0);
    if (CHECK(read_queue(d->dir, &v))) {
        for (int b = 0; b < BUYERS; b++)
            for (int k = 0; k < BASKETS; k++) {
                plan p = plan_of(b, k);
                int want = board[b * BASKETS + k] == HS_OK ? p.n : 0;

                if (!CHECK_EQ(v.lines[b][k], want))
                    fprintf(stderr, "    basket u%d-%d\n", b, k);
            }
        CHECK_EQ(v.groups - base.groups, (uint64_t)whole);
        for (int i = 0; i < NSKU; i++)
            CHECK_EQ(v.taken[i] - base.taken[i], basket_taken[i] + single_taken[i]);
    }
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    for (int i = 0; i < NSKU; i++)
        CHECK_EQ(avail(c, sku_names[i]) + basket_taken[i] + single_taken[i], STOCK);
    munmap((void *)board, board_size);
}

/* A buyer SIGKILLed at random points, over and over; then the daemon. */
static void
test_kill(hsd_ctl *d, hs_client *c)
{
    size_t board_size = sizeof(_Atomic int) * (KILL_BASKETS + 1);
    _Atomic int *board = mmap(NULL, board_size, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    _Atomic int *cursor = board + KILL_BASKETS; /* next basket to take */
    queue_view *v = calloc(1, sizeof(*v));
    uint64_t seed = 12345;
    int whole = 0, kills = 0, started;

    if (!CHECK(board != MAP_FAILED && v != NULL))
        return;
    for (int i = 0; i < NSKU; i++)
        CHECK_R(hs_add_stock(c, S(sku_names[i]), 100000, NULL, NULL), HS_OK);
    /* one buyer (id BUYERS), started again after each kill where it was:
     * the basket it was in is retried first (a retry after a kill) */
    for (int round = 0; round < 12; round++) {
        pid_t pid = fork();
        int status;

        if (pid == 0) {
            hs_client *cc = NULL;

            if (hs_attach(d->dir, &cc) != HS_OK)
                _exit(3);
            for (int k = atomic_load(cursor); k < KILL_BASKETS; k = atomic_load(cursor)) {
                plan p = plan_of(BUYERS, k);
                char id[32];
                hs_lsn lsn;
                hs_result r;

                basket_id(id, sizeof(id), BUYERS, k);
                r = basket(cc, id, p.n, p.sku, p.qty, &lsn);
                if (r != HS_OK && r != HS_DUPLICATE)
                    _exit(4);
                atomic_store(&board[k], 1); /* answered: must be in the queue */
                atomic_store(cursor, k + 1);
            }
            _exit(0);
        }
        hsd_ctl_nap_ms(2 + (int)(hs_test_rand(&seed) % 15));
        if (kill(pid, SIGKILL) == 0)
            kills++;
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        CHECK(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    }
    started = atomic_load(cursor) + 1;
    if (started > KILL_BASKETS)
        started = KILL_BASKETS;
    /* the daemon too, with whatever the last buyer left in its ring */
    hsd_ctl_kill(d);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    CHECK_EQ(hsd_ctl_stop(d), 0);
    if (CHECK(read_queue(d->dir, v))) {
        int broken = 0;

        for (int k = 0; k < KILL_BASKETS; k++) {
            plan p = plan_of(BUYERS, k);

            if (v->kill_lines[k] == p.n)
                whole++;
            else if (v->kill_lines[k] != 0 || (k < started - 1 && v->kill_lines[k] == 0))
                broken++; /* partial, or an answered basket missing */
            if (atomic_load(&board[k]) > 0 && v->kill_lines[k] != p.n)
                broken++;
        }
        CHECK_EQ(broken, 0);
        CHECK(whole >= started - 1);
        fprintf(stderr, "# kill: %d buyer kills over %d baskets, all whole in the queue\n",
                kills, whole);
    }
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    /* the rebuilt counters are the queue's */
    for (int i = 0; i < NSKU; i++)
        CHECK_EQ(avail(c, sku_names[i]), v->put[i] - v->taken[i]);
    free(v);
    munmap((void *)board, board_size);
}

/*
 * A group whose writer died between its two publications, forged in the
 * ring: member 0 published, member 1 still claimed by a dead pid.  The
 * spiller (after its stall limit) and, with the daemon stopped and
 * killed, the salvage of the next start must write both as NOOPs: the
 * queue never holds member 0 alone.
 */
static void
forge_partial_group(hsd_ctl *d, const char *tag, unsigned n)
{
    char real[PATH_MAX];
    hs_header *h = NULL;
    uint32_t si = 0;
    hs_lsn at;
    pid_t dead = hs_test_gone_pid();

    if (!CHECK(realpath(d->dir, real) != NULL) || !CHECK_R(hs_segment_map(real, &h), HS_OK))
        return;
    CHECK_R(hs_sku_find(h, S("bk-a"), false, &si), HS_OK);
    at = atomic_fetch_add(&h->next_lsn, n);
    for (unsigned i = 0; i < n; i++) {
        hs_ring_slot *slot = &hs_ring(h)[(at + i) & (h->ring_capacity - 1)];
        hs_ring_record rec;

        atomic_store(&slot->seq, hs_seq_claim(at + i, dead));
        if (i >= 1)
            continue; /* "died" before publishing member 1 */
        memset(&rec, 0, sizeof(rec));
        rec.type = HS_REC_DEDUCT;
        rec.sku_index = si;
        rec.order_index = UINT32_MAX;
        rec.qty = 1;
        rec.timestamp_us = hs_now_unix_us();
        rec.order_len = (uint8_t)snprintf(rec.order_id, sizeof(rec.order_id), "forged-%s", tag);
        rec.group_size = (uint8_t)n;
        rec.group_pos = 0;
        rec.flags = HS_REC_FLAG_GROUP_MORE;
        memcpy(&slot->rec, &rec, sizeof(rec));
        slot->crc = hs_ring_record_crc(&rec);
        atomic_store(&slot->seq, at);
    }
    hs_segment_unmap(h);
}

static void
test_partial_group(hsd_ctl *d, hs_client *c)
{
    queue_view *v = calloc(1, sizeof(*v));
    int64_t a0 = avail(c, "bk-a");

    if (!CHECK(v != NULL))
        return;
    /* the live spiller: a writer that died after publishing member 0 of
     * 8 holds nothing up for long (its claims are abandoned as soon as it
     * is seen gone), and the queue goes on after it */
    forge_partial_group(d, "spill", 8);
    {
        double t0 = hs_test_seconds();
        hs_lsn lsn = 0;

        CHECK_R(hs_deduct(c, S("bk-d"), 1, S("after-forged"), 0, &lsn), HS_OK);
        CHECK_R(hs_wait_durable(c, lsn, 10000), HS_OK);
        CHECK(hs_test_seconds() - t0 < 1.0);
        fprintf(stderr, "# a dead writer's group of 8 passed in %.0f ms\n",
                1000 * (hs_test_seconds() - t0));
    }
    CHECK_EQ(avail(c, "bk-a"), a0);
    /* the salvage of a killed daemon's ring */
    if (CHECK_EQ(hsd_ctl_pause(d), 0)) {
        forge_partial_group(d, "salvage", 3);
        hsd_ctl_kill(d);
    }
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    CHECK_EQ(hsd_ctl_stop(d), 0);
    if (CHECK(read_queue(d->dir, v)))
        CHECK_EQ(v->forged, 0);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    CHECK_EQ(avail(c, "bk-a"), a0);
    CHECK_EQ(avail(c, "bk-a"), v->put[0] - v->taken[0]);
    free(v);
}

/*-------------------------------------------------------------------------
 * Baskets of holds
 *-------------------------------------------------------------------------
 */

static hs_result
reserve(hs_client *c, const char *id, int n, const int *sku, const int32_t *qty, uint32_t ttl_ms,
        uint64_t *expires)
{
    const char *names[HS_BASKET_MAX];
    size_t lens[HS_BASKET_MAX];
    hs_lsn lsn;

    for (int i = 0; i < n; i++) {
        names[i] = sku_names[sku[i]];
        lens[i] = strlen(names[i]);
    }
    return hs_reserve_basket(c, S(id), n, names, lens, qty, 0, ttl_ms, UINT64_MAX, &lsn,
                             expires);
}

/* Every line of basket id in status want. */
static bool
all_lines(hs_client *c, const char *id, int n, hs_order_status_code want)
{
    for (int i = 0; i < n; i++)
        if (line_status(c, id, i, n) != want)
            return false;
    return true;
}

static bool
wait_lines(hs_client *c, const char *id, int n, hs_order_status_code want, double timeout_s)
{
    double t0 = hs_test_seconds();

    while (hs_test_seconds() - t0 < timeout_s) {
        if (all_lines(c, id, n, want))
            return true;
        usleep(2000);
    }
    return false;
}

static void
test_holds(hsd_ctl *d, hs_client *c)
{
    const int ab[] = {0, 1};
    const int32_t q11[] = {1, 1}, q12[] = {1, 2};
    uint64_t exp1 = 0, exp2 = 0;
    int64_t a0, b0;
    hs_lsn lsn;
    int confirmed = 0, expired = 0;

    for (int i = 0; i < NSKU; i++)
        CHECK_R(hs_put_sku(c, S(sku_names[i]), 100, NULL), HS_OK);
    a0 = avail(c, "bk-a");
    b0 = avail(c, "bk-b");

    /* reserve, retry, confirm */
    CHECK_R(reserve(c, "h1", 2, ab, q12, 60000, &exp1), HS_OK);
    CHECK(exp1 > 0);
    CHECK_EQ(avail(c, "bk-a"), a0 - 1);
    CHECK_EQ(avail(c, "bk-b"), b0 - 2);
    CHECK(all_lines(c, "h1", 2, HS_ORDER_STATUS_RESERVED));
    CHECK_R(reserve(c, "h1", 2, ab, q12, 5, &exp2), HS_DUPLICATE);
    CHECK_EQ(exp2, exp1);
    CHECK_R(basket(c, "h1", 2, ab, q12, &lsn), HS_ORDER_MISMATCH);
    CHECK_R(hs_basket_settle(c, HS_HOLD_CONFIRM, S("h1"), 0, &lsn), HS_OK);
    CHECK(all_lines(c, "h1", 2, HS_ORDER_STATUS_DEDUCTED));
    CHECK_R(hs_basket_settle(c, HS_HOLD_CONFIRM, S("h1"), 0, &lsn), HS_DUPLICATE);
    CHECK_R(hs_basket_settle(c, HS_HOLD_CANCEL, S("h1"), 0, &lsn), HS_NOT_HELD);
    CHECK_EQ(avail(c, "bk-a"), a0 - 1);
    CHECK_EQ(avail(c, "bk-b"), b0 - 2);

    /* cancel: units back once */
    CHECK_R(reserve(c, "h2", 2, ab, q11, 60000, NULL), HS_OK);
    CHECK_R(hs_basket_settle(c, HS_HOLD_CANCEL, S("h2"), 0, &lsn), HS_OK);
    CHECK(all_lines(c, "h2", 2, HS_ORDER_STATUS_CANCELLED));
    CHECK_R(hs_basket_settle(c, HS_HOLD_CANCEL, S("h2"), 0, &lsn), HS_DUPLICATE);
    CHECK_R(hs_basket_settle(c, HS_HOLD_CONFIRM, S("h2"), 0, &lsn), HS_HOLD_CANCELLED);
    CHECK_R(reserve(c, "h2", 2, ab, q11, 60000, NULL), HS_HOLD_CANCELLED);
    CHECK_EQ(avail(c, "bk-a"), a0 - 1);
    CHECK_EQ(avail(c, "bk-b"), b0 - 2);

    /* two phases: a released claim leaves the hold; a committed one confirms */
    CHECK_R(reserve(c, "h3", 2, ab, q11, 60000, NULL), HS_OK);
    CHECK_R(hs_basket_claim(c, HS_HOLD_CONFIRM, S("h3")), HS_OK);
    CHECK_R(hs_basket_release(c, HS_HOLD_CONFIRM, S("h3")), HS_OK);
    CHECK(all_lines(c, "h3", 2, HS_ORDER_STATUS_RESERVED));
    CHECK_R(hs_basket_claim(c, HS_HOLD_CONFIRM, S("h3")), HS_OK);
    CHECK_R(hs_basket_commit(c, HS_HOLD_CONFIRM, S("h3"), 0, &lsn), HS_OK);
    CHECK(all_lines(c, "h3", 2, HS_ORDER_STATUS_DEDUCTED));

    /* a settler killed holding its claims: the next confirm settles them */
    CHECK_R(reserve(c, "h4", 2, ab, q11, 60000, NULL), HS_OK);
    {
        pid_t pid = fork();
        int status;

        if (pid == 0) {
            hs_client *cc = NULL;

            if (hs_attach(d->dir, &cc) != HS_OK ||
                hs_basket_claim(cc, HS_HOLD_CANCEL, S("h4")) != HS_OK)
                _exit(3);
            raise(SIGKILL);
        }
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        CHECK(WIFSIGNALED(status));
    }
    CHECK_R(hs_basket_settle(c, HS_HOLD_CONFIRM, S("h4"), 0, &lsn), HS_OK);
    CHECK(all_lines(c, "h4", 2, HS_ORDER_STATUS_DEDUCTED));
    CHECK_EQ(avail(c, "bk-a"), a0 - 3);
    CHECK_EQ(avail(c, "bk-b"), b0 - 4);

    /* expiry: every line back, a late confirm refused */
    CHECK_R(reserve(c, "h5", 2, ab, q12, 200, NULL), HS_OK);
    CHECK(wait_lines(c, "h5", 2, HS_ORDER_STATUS_EXPIRED, 5));
    CHECK_R(hs_basket_settle(c, HS_HOLD_CONFIRM, S("h5"), 0, &lsn), HS_HOLD_EXPIRED);
    CHECK_EQ(avail(c, "bk-a"), a0 - 3);
    CHECK_EQ(avail(c, "bk-b"), b0 - 4);

    /* confirms racing the expiry at the deadline: whole either way */
    for (int k = 0; k < 40; k++) {
        char id[32];
        uint64_t exp = 0;
        hs_result r;

        snprintf(id, sizeof(id), "hr-%d", k);
        if (!CHECK_R(reserve(c, id, 2, ab, q11, 20, &exp), HS_OK))
            break;
        while (hs_now_unix_us() / 1000 + 1 < exp + (uint64_t)(k % 3))
            usleep(200);
        r = hs_basket_settle(c, HS_HOLD_CONFIRM, S(id), 0, &lsn);
        if (r == HS_OK) {
            confirmed++;
            CHECK(all_lines(c, id, 2, HS_ORDER_STATUS_DEDUCTED));
        } else {
            CHECK_R(r, HS_HOLD_EXPIRED);
            expired++;
            CHECK(wait_lines(c, id, 2, HS_ORDER_STATUS_EXPIRED, 5));
        }
    }
    CHECK_EQ(avail(c, "bk-a"), a0 - 3 - confirmed);
    CHECK_EQ(avail(c, "bk-b"), b0 - 4 - confirmed);
    fprintf(stderr, "# holds at the deadline: %d confirmed whole, %d expired whole\n", confirmed,
            expired);
}

int
main(void)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;

    if (!client_test_start(&d, "basket", &c, NULL))
        return hs_test_done();
    test_basics(c);
    test_stress(&d, c);
    test_kill(&d, c);
    test_partial_group(&d, c);
    test_holds(&d, c);
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    hs_test_rmrf(d.dir);
    return hs_test_done();
}
