/*-------------------------------------------------------------------------
 *
 * test_sale.c
 *      Sale sessions against a real hotstockd: a window that opens later
 *      (an hour away for the checks before it, then moved close),
 *      a pause and a resume, a window that has closed; nothing taken and
 *      no order slot claimed while not open, orders taken before still
 *      answered and settled; the configuration across a SIGKILL and a
 *      clean restart; and a pause racing buyer processes: no deduction
 *      that starts after hs_sale_pause returned succeeds.
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

static bool
known(hs_client *c, const char *order)
{
    hs_order_status_code st;

    return hs_order_status(c, S(order), &st, NULL, NULL) == HS_OK;
}

static void
test_window(hs_client *c)
{
    const char *names[] = {"sale-a", "sale-b"};
    const size_t lens[] = {6, 6};
    const int32_t qtys[] = {1, 1};
    uint64_t start = now_ms() + 3600000, exp = 0;
    hs_sale sale;
    hs_lsn lsn;

    CHECK_R(hs_put_sku(c, S("sale-a"), 10, NULL), HS_OK);
    CHECK_R(hs_put_sku(c, S("sale-b"), 10, NULL), HS_OK);
    CHECK_R(hs_sale_get(c, S("sale-a"), &sale), HS_OK);
    CHECK(sale.starts_at_ms == 0 && sale.ends_at_ms == 0 && !sale.paused);
    CHECK_R(hs_sale_configure(c, S("no-such"), 0, 0, 0, &lsn), HS_UNKNOWN_SKU);
    CHECK_R(hs_sale_configure(c, S("sale-a"), 10, 5, 0, &lsn), HS_BAD_ARGUMENT);
    CHECK_R(hs_sale_configure(c, S("sale-a"), 0, 0, -1, &lsn), HS_BAD_ARGUMENT);

    /* not open yet: nothing taken, no order slot claimed */
    CHECK_R(hs_sale_configure(c, S("sale-a"), start, 0, 2, &lsn), HS_OK);
    CHECK(lsn > 0);
    CHECK_R(hs_sale_get(c, S("sale-a"), &sale), HS_OK);
    CHECK(sale.starts_at_ms == start && sale.ends_at_ms == 0 && sale.per_buyer_limit == 2);
    CHECK_R(hs_deduct(c, S("sale-a"), 1, S("w-1"), 0, &lsn), HS_SALE_NOT_OPEN);
    CHECK_R(hs_reserve(c, S("sale-a"), 1, S("w-2"), 0, 60000, UINT64_MAX, &lsn, &exp),
            HS_SALE_NOT_OPEN);
    CHECK_R(hs_deduct_basket(c, S("w-3"), 2, names, lens, qtys, 0, UINT64_MAX, &lsn),
            HS_SALE_NOT_OPEN);
    CHECK_EQ(avail(c, "sale-a"), 10);
    CHECK_EQ(avail(c, "sale-b"), 10);
    CHECK(!known(c, "w-1") && !known(c, "w-2"));
    CHECK_R(hs_basket_find(c, S("w-3"), &(int){0}), HS_NOT_FOUND);
    /* another SKU is not affected */
    CHECK_R(hs_deduct(c, S("sale-b"), 1, S("w-4"), 0, &lsn), HS_OK);

    /* moved to 300 ms from now, and waited for: sales flow from its start */
    start = now_ms() + 300;
    CHECK_R(hs_sale_configure(c, S("sale-a"), start, 0, 0, &lsn), HS_OK);
    while (now_ms() < start)
        usleep(5000);
    CHECK_R(hs_deduct(c, S("sale-a"), 1, S("w-1"), 0, &lsn), HS_OK);
    CHECK_R(hs_deduct_basket(c, S("w-3"), 2, names, lens, qtys, 0, UINT64_MAX, &lsn), HS_OK);
    CHECK_R(hs_reserve(c, S("sale-a"), 1, S("w-2"), 0, 60000, UINT64_MAX, &lsn, &exp), HS_OK);
    CHECK_EQ(avail(c, "sale-a"), 7);

    /* paused: nothing new; orders taken before are answered and settled */
    CHECK_R(hs_sale_pause(c, S("sale-a"), true, &lsn), HS_OK);
    CHECK_R(hs_deduct(c, S("sale-a"), 1, S("w-5"), 0, &lsn), HS_SALE_PAUSED);
    CHECK(!known(c, "w-5"));
    CHECK_R(hs_deduct(c, S("sale-a"), 1, S("w-1"), 0, &lsn), HS_DUPLICATE);
    CHECK_R(hs_deduct_basket(c, S("w-3"), 2, names, lens, qtys, 0, UINT64_MAX, &lsn),
            HS_DUPLICATE);
    CHECK_R(hs_refund(c, S("w-1"), &lsn, NULL, NULL), HS_OK);
    CHECK_R(hs_hold_settle(c, HS_HOLD_CONFIRM, S("w-2"), 0, &lsn), HS_OK);
    CHECK_EQ(avail(c, "sale-a"), 8);
    CHECK_R(hs_sale_get(c, S("sale-a"), &sale), HS_OK);
    CHECK(sale.paused && sale.starts_at_ms == start);
    /* configure keeps the switch */
    CHECK_R(hs_sale_configure(c, S("sale-a"), 0, 0, 0, &lsn), HS_OK);
    CHECK_R(hs_deduct(c, S("sale-a"), 1, S("w-5"), 0, &lsn), HS_SALE_PAUSED);
    CHECK_R(hs_sale_pause(c, S("sale-a"), false, &lsn), HS_OK);
    CHECK_R(hs_deduct(c, S("sale-a"), 1, S("w-5"), 0, &lsn), HS_OK);
    CHECK_EQ(avail(c, "sale-a"), 7);

    /* closed */
    CHECK_R(hs_sale_configure(c, S("sale-a"), 0, now_ms() - 1, 0, &lsn), HS_OK);
    CHECK_R(hs_deduct(c, S("sale-a"), 1, S("w-6"), 0, &lsn), HS_SALE_CLOSED);
    CHECK_EQ(avail(c, "sale-a"), 7);
}

/* The configuration comes back after a SIGKILL and after a clean stop
 * (from the queue, then from the checkpoint). */
static void
test_restart(hsd_ctl *d, hs_client *c)
{
    uint64_t start = now_ms() + 3600000, end = start + 60000;
    hs_sale sale;
    hs_lsn lsn;

    CHECK_R(hs_put_sku(c, S("sale-r"), 5, NULL), HS_OK);
    CHECK_R(hs_sale_configure(c, S("sale-r"), start, end, 3, &lsn), HS_OK);
    CHECK_R(hs_sale_pause(c, S("sale-r"), true, &lsn), HS_OK);
    CHECK_R(hs_wait_durable(c, lsn, 5000), HS_OK);
    hsd_ctl_kill(d);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    CHECK_R(hs_sale_get(c, S("sale-r"), &sale), HS_OK);
    CHECK(sale.starts_at_ms == start && sale.ends_at_ms == end && sale.per_buyer_limit == 3 &&
          sale.paused);
    CHECK_R(hs_deduct(c, S("sale-r"), 1, S("r-1"), 0, &lsn), HS_SALE_PAUSED);
    CHECK_R(hs_sale_pause(c, S("sale-r"), false, &lsn), HS_OK);
    CHECK_EQ(hsd_ctl_command(d, "checkpoint", 10), 0);
    CHECK_EQ(hsd_ctl_stop(d), 0);
    if (!CHECK_EQ(hsd_ctl_start(d, NULL), 0))
        return;
    CHECK_R(hs_sale_get(c, S("sale-r"), &sale), HS_OK);
    CHECK(sale.starts_at_ms == start && sale.ends_at_ms == end && sale.per_buyer_limit == 3 &&
          !sale.paused);
    CHECK_R(hs_deduct(c, S("sale-r"), 1, S("r-1"), 0, &lsn), HS_SALE_NOT_OPEN);
    CHECK_EQ(avail(c, "sale-r"), 5);
}

/* Buyers hammer a SKU; a pause returns at T: no deduction that started
 * after T succeeds. */
#define BUYERS 4
#define TRIES 200000

typedef struct attempt {
    _Atomic double started;
    _Atomic int result;
} attempt;

static void
test_pause_race(hsd_ctl *d, hs_client *c)
{
    size_t size = sizeof(attempt) * BUYERS * TRIES + sizeof(_Atomic int);
    attempt *board = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    _Atomic int *stop = (_Atomic int *)(board + BUYERS * TRIES);
    pid_t pids[BUYERS];
    double paused_at;
    int late = 0, before = 0, refused = 0;
    hs_lsn lsn;

    if (!CHECK(board != MAP_FAILED))
        return;
    CHECK_R(hs_put_sku(c, S("sale-p"), 1000000, NULL), HS_OK);
    for (int b = 0; b < BUYERS; b++) {
        pids[b] = fork();
        if (pids[b] == 0) {
            hs_client *cc = NULL;

            if (hs_attach(d->dir, &cc) != HS_OK)
                _exit(3);
            for (int k = 0; k < TRIES && !atomic_load(stop); k++) {
                attempt *a = &board[b * TRIES + k];
                char id[32];
                hs_lsn l;

                snprintf(id, sizeof(id), "p%d-%d", b, k);
                atomic_store(&a->started, hs_test_seconds());
                atomic_store(&a->result, 1 + (int)hs_deduct(cc, S("sale-p"), 1, S(id), 0, &l));
            }
            _exit(0);
        }
    }
    hsd_ctl_nap_ms(100);
    CHECK_R(hs_sale_pause(c, S("sale-p"), true, &lsn), HS_OK);
    paused_at = hs_test_seconds();
    hsd_ctl_nap_ms(100);
    atomic_store(stop, 1);
    for (int b = 0; b < BUYERS; b++) {
        int status;

        CHECK_EQ(waitpid(pids[b], &status, 0), pids[b]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    for (int i = 0; i < BUYERS * TRIES; i++) {
        int r = atomic_load(&board[i].result) - 1;

        if (r < 0)
            continue;
        if (r == HS_OK && atomic_load(&board[i].started) > paused_at)
            late++;
        else if (r == HS_OK)
            before++;
        else if (r == HS_SALE_PAUSED)
            refused++;
    }
    CHECK_EQ(late, 0);
    CHECK(before > 0 && refused > 0);
    CHECK_EQ(avail(c, "sale-p"), 1000000 - before);
    fprintf(stderr, "# pause race: %d sold before the pause returned, %d refused, 0 after\n",
            before, refused);
    munmap(board, size);
}

/* A change left half-stored by a writer that died between its stores
 * (forged: the seqlock odd, the old start with a new end, which together
 * would be open): nothing is sold until the next change, a pause refuses
 * to record the mix, and configure repairs it. */
static void
test_half_changed(hsd_ctl *d, hs_client *c)
{
    char real[PATH_MAX];
    hs_header *h = NULL;
    hs_sku_slot *s;
    uint32_t si = 0;
    uint64_t now = now_ms();
    hs_sale sale;
    hs_lsn lsn;

    CHECK_R(hs_put_sku(c, S("sale-h"), 10, NULL), HS_OK);
    CHECK_R(hs_sale_configure(c, S("sale-h"), now - 7200000, now - 3600000, 0, &lsn), HS_OK);
    CHECK_R(hs_deduct(c, S("sale-h"), 1, S("h-0"), 0, &lsn), HS_SALE_CLOSED);
    if (!CHECK(realpath(d->dir, real) != NULL) || !CHECK_R(hs_segment_map(real, &h), HS_OK) ||
        !CHECK_R(hs_sku_find(h, S("sale-h"), false, &si), HS_OK))
        return;
    s = &hs_sku_table(h)[si];
    /* the writer of [now+1h, now+2h) died after its odd store and the end */
    atomic_store(&s->sale_seq, atomic_load(&s->sale_seq) | 1);
    atomic_store(&s->sale_end_ms, now + 7200000);
    CHECK_R(hs_deduct(c, S("sale-h"), 1, S("h-1"), 0, &lsn), HS_SALE_PAUSED);
    CHECK_R(hs_sale_pause(c, S("sale-h"), false, &lsn), HS_BAD_ARGUMENT);
    CHECK_EQ(avail(c, "sale-h"), 10);
    /* the lock of the dead writer is taken over; configure repairs */
    atomic_store(&s->sale_locker, (uint32_t)hs_test_gone_pid());
    CHECK_R(hs_sale_configure(c, S("sale-h"), 0, 0, 0, &lsn), HS_OK);
    CHECK_EQ(atomic_load(&s->sale_seq) & 1, 0);
    CHECK_R(hs_sale_get(c, S("sale-h"), &sale), HS_OK);
    CHECK(sale.starts_at_ms == 0 && sale.ends_at_ms == 0 && !sale.paused);
    CHECK_R(hs_deduct(c, S("sale-h"), 1, S("h-1"), 0, &lsn), HS_OK);
    CHECK_EQ(avail(c, "sale-h"), 9);
    hs_segment_unmap(h);
}

int
main(void)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;

    if (!client_test_start(&d, "sale", &c, NULL))
        return hs_test_done();
    test_window(c);
    test_pause_race(&d, c);
    test_half_changed(&d, c);
    test_restart(&d, c);
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    hs_test_rmrf(d.dir);
    return hs_test_done();
}
