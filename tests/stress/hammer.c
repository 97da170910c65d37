/*-------------------------------------------------------------------------
 *
 * hammer.c
 *      Many processes and threads deduct from ONE hot SKU at once, with
 *      retries of the same order id (also across processes) and refunds,
 *      against a real hotstockd; then the exact accounting is checked, and
 *      checked again after a clean restart (replay of the queue files).
 *
 *   hammer [--dir DIR] [--procs P] [--threads T] [--stock S] [--attempts A]
 *          [--sync | --async] [--kill K] [--seed N] [--ring-capacity N] [--keep]
 *
 * First a burst phase: all threads of all processes meet at a barrier (in
 * shared memory) before each round, then all deduct the same new order id
 * "n<j>" at once (exactly one HS_OK, the rest HS_DUPLICATE), meet again,
 * and all refund the same order "b<j>" the parent deducted before (exactly
 * one HS_OK, the rest HS_ALREADY_REFUNDED).
 *
 * Then each worker thread runs A operations on SKU "hot" (stock S):
 *   65%  deduct a unique order id "u<p>.<t>.<n>", and for a quarter of
 *        the successes retry the same id at once (must be HS_DUPLICATE)
 *   20%  deduct one of a few shared ids "s<k>" that every process also
 *        tries: exactly one deduction each, the rest HS_DUPLICATE
 *   15%  refund one of its own successful orders, a third of them twice
 *        (the second must be HS_ALREADY_REFUNDED)
 * and logs every acknowledged outcome to DIR/hammer.<p>.log as
 * "D|R <order id> <result> <acked>"; acked is 1 when the outcome is final
 * (with --sync: after hs_wait_durable() returned HS_OK).
 *
 * --sync   wait for durability after each success (a duplicate waits for
 *          every LSN reserved so far: it carries no LSN of its own).
 * --kill K SIGKILL the daemon K times in the middle of the load (at even
 *          steps of the progress) and restart it; implies --sync unless
 *          --async is given (then an acknowledgement is a record published
 *          in the ring, which a daemon crash must not lose either: the next
 *          daemon salvages the ring).  Clients
 *          retry the SAME operation on HS_DAEMON_DOWN until the daemon is
 *          back (bounded).  Checks then: no acknowledged deduction or
 *          refund is lost, and after a clean restart S - available equals
 *          the deducted orders in the index (held-back units came back).
 *
 * Exit status 0 when every check passed; the last line is exactly
 * "N passed, N failed".
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "daemon_ctl.h"
#include "hotstock.h"

#define SKU "hot"
#define OP_DEADLINE_S 45.0 /* one operation, retries included */

typedef struct options {
    char dir[512];
    bool own_dir;
    int procs, threads, attempts, kills;
    int64_t stock;
    bool sync, async, keep;
    uint64_t seed;
    int ring_capacity;
} options;

static options opt = {.procs = 4, .threads = 2, .attempts = 1500, .stock = -1, .seed = 1};

#define BURST_ROUNDS 100

/* Shared with the workers (MAP_SHARED before fork). */
typedef struct shared_state {
    _Atomic uint64_t progress; /* main-phase operations done */
    _Atomic uint32_t arrived;  /* barrier: threads arrived in this round */
    _Atomic uint32_t round;    /* barrier: round number */
    _Atomic uint32_t kills;    /* kills done by the parent */
} shared_state;

static shared_state *shared;
static _Atomic uint64_t *progress;

/* Wait until all procs x threads threads arrived.  The last one to arrive
 * opens the next round (release; waiters acquire). */
static void
barrier_wait(void)
{
    uint32_t parties = (uint32_t)(opt.procs * opt.threads);
    uint32_t round = atomic_load_explicit(&shared->round, memory_order_acquire);

    if (atomic_fetch_add_explicit(&shared->arrived, 1, memory_order_acq_rel) + 1 == parties) {
        atomic_store_explicit(&shared->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&shared->round, round + 1, memory_order_release);
        return;
    }
    while (atomic_load_explicit(&shared->round, memory_order_acquire) == round)
        sched_yield();
}

/*-------------------------------------------------------------------------
 * Workers
 *-------------------------------------------------------------------------
 */

typedef struct worker {
    int p, t;
    hs_client *c;
    uint64_t rng;
    char *log;
    size_t log_len;
    FILE *logf;
    char (*own)[24]; /* own successful unique ids not refunded yet */
    int own_count;
    int shared_ids;
} worker;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *proc_log;

static double
now_s(void)
{
    return hs_test_seconds();
}

/* Wait for everything reserved so far to be durable (for a duplicate or an
 * already-refunded answer: the original record's LSN is not returned). */
static hs_result
wait_all_durable(hs_client *c)
{
    hs_status st;
    hs_result r = hs_get_status(c, &st);

    if (r != HS_OK)
        return r;
    return hs_wait_durable(c, st.next_lsn > 0 ? st.next_lsn - 1 : 0, 10000);
}

/* Run one deduct (or refund) to a final answer; log it. */
static hs_result
run_op(worker *w, bool refund, const char *id)
{
    double deadline = now_s() + OP_DEADLINE_S;
    hs_result r, wr;
    hs_lsn lsn;
    int acked;

    for (;;) {
        lsn = 0;
        if (refund)
            r = hs_refund(w->c, id, strlen(id), &lsn, NULL, NULL);
        else
            r = hs_deduct(w->c, SKU, strlen(SKU), 1, id, strlen(id), 0, &lsn);
        if ((r == HS_QUEUE_FULL || (r == HS_DAEMON_DOWN && opt.kills > 0)) && now_s() < deadline) {
            hsd_ctl_nap_ms(r == HS_QUEUE_FULL ? 1 : 20);
            continue;
        }
        acked = 1;
        if (opt.sync && (r == HS_OK || r == HS_DUPLICATE || (refund && r == HS_ALREADY_REFUNDED))) {
            wr = r == HS_OK ? hs_wait_durable(w->c, lsn, 10000) : wait_all_durable(w->c);
            if (wr != HS_OK) {
                /* Unknown: retry the same id; a deduction that made it
                 * answers HS_DUPLICATE, a refund HS_ALREADY_REFUNDED. */
                if (opt.kills > 0 && now_s() < deadline) {
                    hsd_ctl_nap_ms(20);
                    continue;
                }
                acked = 0;
            }
        }
        break;
    }
    fprintf(w->logf, "%c %s %s %d\n", refund ? 'R' : 'D', id, hs_result_name(r), acked);
    return r;
}

/* Progress at which the parent kills the daemon the k-th time (1..K). */
static uint64_t
kill_point(int k)
{
    uint64_t total = (uint64_t)opt.procs * opt.threads * opt.attempts;
    return total * (uint64_t)k / (uint64_t)(opt.kills + 1);
}

/* Kill mode: do not run more than a small window past the next kill point
 * before the parent has killed, so every kill lands in the middle of the
 * load whatever the speed of either side. */
static void
kill_gate(void)
{
    uint64_t total = (uint64_t)opt.procs * opt.threads * opt.attempts;
    uint64_t window = total / (uint64_t)(2 * (opt.kills + 1)) + 1;
    double end = now_s() + 60;

    for (;;) {
        /* Acquire/relaxed: a schedule, not data. */
        uint32_t done = atomic_load_explicit(&shared->kills, memory_order_acquire);
        if ((int)done >= opt.kills || now_s() > end)
            return;
        if (atomic_load_explicit(progress, memory_order_relaxed) <
            kill_point((int)done + 1) + window)
            return;
        hsd_ctl_nap_ms(1);
    }
}

static void *
worker_thread(void *arg)
{
    worker *w = arg;
    char id[24];

    w->logf = open_memstream(&w->log, &w->log_len);
    w->own = calloc((size_t)opt.attempts, sizeof(*w->own));
    /* Bursts: everybody on one order id at the same moment. */
    for (int j = 0; j < BURST_ROUNDS; j++) {
        barrier_wait();
        snprintf(id, sizeof(id), "n%d", j);
        run_op(w, false, id);
        barrier_wait();
        snprintf(id, sizeof(id), "b%d", j);
        run_op(w, true, id);
    }
    for (int n = 0; n < opt.attempts; n++) {
        unsigned roll = (unsigned)(hs_test_rand(&w->rng) % 100);

        if (roll < 65) {
            snprintf(id, sizeof(id), "u%d.%d.%d", w->p, w->t, n);
            if (run_op(w, false, id) == HS_OK) {
                memcpy(w->own[w->own_count++], id, sizeof(id));
                if (hs_test_rand(&w->rng) % 4 == 0)
                    run_op(w, false, id);
            }
        } else if (roll < 85) {
            snprintf(id, sizeof(id), "s%d", (int)(hs_test_rand(&w->rng) % (uint64_t)w->shared_ids));
            run_op(w, false, id);
        } else if (w->own_count > 0) {
            int j = (int)(hs_test_rand(&w->rng) % (uint64_t)w->own_count);
            memcpy(id, w->own[j], sizeof(id));
            memcpy(w->own[j], w->own[--w->own_count], sizeof(id));
            if (run_op(w, true, id) == HS_OK && hs_test_rand(&w->rng) % 3 == 0)
                run_op(w, true, id);
        }
        /* Relaxed: a progress meter for the parent's kill schedule. */
        atomic_fetch_add_explicit(progress, 1, memory_order_relaxed);
        if (opt.kills > 0)
            kill_gate();
    }
    fclose(w->logf);
    pthread_mutex_lock(&log_mu);
    fwrite(w->log, 1, w->log_len, proc_log);
    pthread_mutex_unlock(&log_mu);
    free(w->log);
    free(w->own);
    return NULL;
}

static int
worker_main(int p, const char *dir, int shared_ids)
{
    char path[600];
    hs_client *c = NULL;
    pthread_t tids[64];
    worker ws[64];
    double end = now_s() + 30;
    hs_result r;

    snprintf(path, sizeof(path), "%s/hammer.%d.log", dir, p);
    proc_log = fopen(path, "w");
    if (proc_log == NULL)
        return 2;
    while ((r = hs_attach(dir, &c)) != HS_OK) {
        if (now_s() > end) {
            fprintf(stderr, "worker %d: attach: %s (%s)\n", p, hs_result_name(r), hs_last_error());
            return 2;
        }
        hsd_ctl_nap_ms(20);
    }
    for (int t = 0; t < opt.threads; t++) {
        ws[t] = (worker){.p = p, .t = t, .c = c, .shared_ids = shared_ids};
        ws[t].rng = opt.seed * 1000003u + (uint64_t)p * 7919u + (uint64_t)t * 104729u + 1;
        pthread_create(&tids[t], NULL, worker_thread, &ws[t]);
    }
    for (int t = 0; t < opt.threads; t++)
        pthread_join(tids[t], NULL);
    fclose(proc_log);
    hs_detach(c);
    return 0;
}

/*-------------------------------------------------------------------------
 * Verification
 *-------------------------------------------------------------------------
 */

typedef struct order_tally {
    char id[24];
    bool used;
    int d_ok, d_dup, d_sold, d_other;
    int d_acked_success; /* OK or DUPLICATE, acked */
    int r_ok, r_already, r_other;
    int r_acked_success; /* OK or ALREADY_REFUNDED, acked */
} order_tally;

static order_tally *tally;
static size_t tally_cap;

static order_tally *
tally_get(const char *id)
{
    size_t len = strlen(id);
    uint64_t h = UINT64_C(1469598103934665603);

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)id[i]) * UINT64_C(1099511628211);
    for (size_t i = 0; i < tally_cap; i++) {
        order_tally *t = &tally[(h + i) & (tally_cap - 1)];
        if (!t->used) {
            t->used = true;
            snprintf(t->id, sizeof(t->id), "%s", id);
            return t;
        }
        if (strcmp(t->id, id) == 0)
            return t;
    }
    return NULL;
}

/* Read every worker log into the tally.  Returns the number of lines, -1
 * on a malformed log. */
static long
read_logs(void)
{
    long lines = 0;

    for (int p = -1; p < opt.procs; p++) {
        char path[600], kind, id[64], res[64];
        int acked;
        FILE *f;

        if (p < 0)
            snprintf(path, sizeof(path), "%s/hammer.parent.log", opt.dir);
        else
            snprintf(path, sizeof(path), "%s/hammer.%d.log", opt.dir, p);
        f = fopen(path, "r");
        if (f == NULL) {
            fprintf(stderr, "missing %s\n", path);
            return -1;
        }
        while (fscanf(f, " %c %63s %63s %d", &kind, id, res, &acked) == 4) {
            order_tally *t = tally_get(id);
            bool success;

            if (t == NULL)
                return -1;
            lines++;
            if (kind == 'D') {
                success = !strcmp(res, "ok") || !strcmp(res, "duplicate");
                t->d_ok += !strcmp(res, "ok");
                t->d_dup += !strcmp(res, "duplicate");
                t->d_sold += !strcmp(res, "sold_out");
                t->d_other += !success && strcmp(res, "sold_out") != 0;
                t->d_acked_success += success && acked;
                if (strcmp(res, "ok") && strcmp(res, "duplicate") && strcmp(res, "sold_out"))
                    fprintf(stderr, "unexpected deduct result %s for %s\n", res, id);
            } else {
                success = !strcmp(res, "ok") || !strcmp(res, "already_refunded");
                t->r_ok += !strcmp(res, "ok");
                t->r_already += !strcmp(res, "already_refunded");
                t->r_other += !success;
                t->r_acked_success += success && acked;
                if (!success)
                    fprintf(stderr, "unexpected refund result %s for %s\n", res, id);
            }
        }
        fclose(f);
    }
    return lines;
}

/* Count index states of every tallied id on c.  Returns false when a
 * status call fails. */
static bool
index_states(hs_client *c, long *deducted, long *refunded, long *lost_acked_deduct,
             long *lost_acked_refund, long *refund_mismatch, long *held_acked)
{
    *deducted = *refunded = *lost_acked_deduct = *lost_acked_refund = *refund_mismatch = 0;
    *held_acked = 0;
    for (size_t i = 0; i < tally_cap; i++) {
        order_tally *t = &tally[i];
        hs_order_status_code st = HS_ORDER_STATUS_UNKNOWN;
        hs_result r;

        if (!t->used)
            continue;
        r = hs_order_status(c, t->id, strlen(t->id), &st, NULL, NULL);
        if (r != HS_OK && r != HS_NOT_FOUND) {
            fprintf(stderr, "status %s: %s (%s)\n", t->id, hs_result_name(r), hs_last_error());
            return false;
        }
        if (r == HS_NOT_FOUND)
            st = HS_ORDER_STATUS_UNKNOWN;
        *deducted += st == HS_ORDER_STATUS_DEDUCTED;
        *refunded += st == HS_ORDER_STATUS_REFUNDED;
        /* a unit a client was told is its own, and still is */
        *held_acked += t->d_ok > 0 && st == HS_ORDER_STATUS_DEDUCTED;
        if (t->d_acked_success > 0 && st != HS_ORDER_STATUS_DEDUCTED &&
            st != HS_ORDER_STATUS_REFUNDED) {
            fprintf(stderr, "acknowledged deduction of %s lost (state %d)\n", t->id, (int)st);
            (*lost_acked_deduct)++;
        }
        if (t->r_acked_success > 0 && st != HS_ORDER_STATUS_REFUNDED) {
            fprintf(stderr, "acknowledged refund of %s lost (state %d)\n", t->id, (int)st);
            (*lost_acked_refund)++;
        }
        if (opt.kills == 0 && (st == HS_ORDER_STATUS_REFUNDED) != (t->r_ok == 1)) {
            fprintf(stderr, "order %s: state %d but %d refunds acknowledged\n", t->id, (int)st,
                    t->r_ok);
            (*refund_mismatch)++;
        }
    }
    return true;
}

static int64_t
available(hs_client *c)
{
    int64_t a = -1;
    hs_result r = hs_available(c, SKU, strlen(SKU), &a);

    if (r != HS_OK)
        fprintf(stderr, "available: %s (%s)\n", hs_result_name(r), hs_last_error());
    return a;
}

/*-------------------------------------------------------------------------
 * Main
 *-------------------------------------------------------------------------
 */

static void
usage(void)
{
    fprintf(stderr, "usage: hammer [--dir DIR] [--procs P] [--threads T] [--stock S] "
                    "[--attempts A] [--sync | --async] [--kill K] [--seed N] [--ring-capacity N] "
                    "[--keep]\n");
    exit(2);
}

static void
parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {{"dir", required_argument, NULL, 'D'},
                                             {"procs", required_argument, NULL, 'p'},
                                             {"threads", required_argument, NULL, 't'},
                                             {"stock", required_argument, NULL, 's'},
                                             {"attempts", required_argument, NULL, 'a'},
                                             {"sync", no_argument, NULL, 'y'},
                                             {"kill", required_argument, NULL, 'k'},
                                             {"seed", required_argument, NULL, 'S'},
                                             {"ring-capacity", required_argument, NULL, 'r'},
                                             {"keep", no_argument, NULL, 'K'},
                                             {"async", no_argument, NULL, 'A'},
                                             {NULL, 0, NULL, 0}};
    int ch;

    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'D':
            snprintf(opt.dir, sizeof(opt.dir), "%s", optarg);
            break;
        case 'p':
            opt.procs = atoi(optarg);
            break;
        case 't':
            opt.threads = atoi(optarg);
            break;
        case 's':
            opt.stock = atoll(optarg);
            break;
        case 'a':
            opt.attempts = atoi(optarg);
            break;
        case 'y':
            opt.sync = true;
            break;
        case 'k':
            opt.kills = atoi(optarg);
            break;
        case 'S':
            opt.seed = (uint64_t)atoll(optarg);
            break;
        case 'r':
            opt.ring_capacity = atoi(optarg);
            break;
        case 'K':
            opt.keep = true;
            break;
        case 'A':
            opt.async = true;
            break;
        default:
            usage();
        }
    }
    if (opt.procs < 1 || opt.procs > 64 || opt.threads < 1 || opt.threads > 64 ||
        opt.attempts < 1 || opt.kills < 0)
        usage();
    if (opt.sync && opt.async)
        usage();
    if (opt.kills > 0 && !opt.async)
        opt.sync = true;
    if (opt.stock < 0)
        opt.stock = (int64_t)opt.procs * opt.threads * opt.attempts / 2;
    opt.stock += 2 * BURST_ROUNDS; /* the bursts never sell out */
}

int
main(int argc, char **argv)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;
    pid_t workers[64];
    int shared_ids;
    uint64_t total_ops, orders;
    long lines, deducted, refunded, lost_d, lost_r, mismatch, held;
    long d_ok = 0, r_ok = 0, bad_dup = 0, multi_ok = 0, bad_refund = 0, unexpected = 0;
    long unacked = 0, bad_burst = 0;
    int64_t live, recovered;
    char orders_flag[32], ring_flag[32];
    double t0;
    bool workers_ok = true;
    hs_result r;

    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (opt.dir[0] == '\0') {
        hs_test_tmpdir("hammer", opt.dir);
        opt.own_dir = true;
    } else if (mkdir(opt.dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "mkdir %s: %s\n", opt.dir, strerror(errno));
        return 2;
    }
    snprintf(d.dir, sizeof(d.dir), "%s", opt.dir);
    shared_ids = opt.attempts / 8 + 4;
    total_ops = (uint64_t)opt.procs * opt.threads * opt.attempts;
    orders = 1;
    while (orders < 2 * (total_ops + (uint64_t)shared_ids + 2 * BURST_ROUNDS) + 64)
        orders <<= 1;
    snprintf(orders_flag, sizeof(orders_flag), "%llu", (unsigned long long)orders);
    hsd_ctl_flag(&d, "--order-capacity", orders_flag);
    if (opt.ring_capacity > 0) {
        snprintf(ring_flag, sizeof(ring_flag), "%d", opt.ring_capacity);
        hsd_ctl_flag(&d, "--ring-capacity", ring_flag);
    }
    tally_cap = 1;
    while (tally_cap < 2 * (total_ops + (uint64_t)shared_ids + 2 * BURST_ROUNDS))
        tally_cap <<= 1;
    tally = calloc(tally_cap, sizeof(*tally));
    shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (tally == NULL || shared == MAP_FAILED)
        return 2;
    progress = &shared->progress;

    printf("hammer: %d procs x %d threads x %d ops, stock %lld, %s%s, dir %s\n", opt.procs,
           opt.threads, opt.attempts, (long long)opt.stock, opt.sync ? "sync" : "async",
           opt.kills ? ", with kills" : "", opt.dir);
    if (!CHECK_EQ(hsd_ctl_start(&d, &c), 0)) {
        hsd_ctl_kill(&d);
        return hs_test_done();
    }
    CHECK_EQ(hs_put_sku(c, SKU, strlen(SKU), opt.stock, NULL), HS_OK);
    {
        /* The orders the bursts refund, deducted here (and logged as such). */
        char path[600], id[24];
        FILE *f;
        hs_lsn lsn = 0;
        snprintf(path, sizeof(path), "%s/hammer.parent.log", opt.dir);
        f = fopen(path, "w");
        for (int j = 0; f != NULL && j < BURST_ROUNDS; j++) {
            snprintf(id, sizeof(id), "b%d", j);
            r = hs_deduct(c, SKU, strlen(SKU), 1, id, strlen(id), 0, &lsn);
            fprintf(f, "D %s %s 1\n", id, hs_result_name(r));
        }
        CHECK(f != NULL && hs_wait_durable(c, lsn, 10000) == HS_OK);
        if (f != NULL)
            fclose(f);
    }

    t0 = now_s();
    for (int p = 0; p < opt.procs; p++) {
        fflush(stdout);
        workers[p] = fork();
        if (workers[p] == 0)
            _exit(worker_main(p, opt.dir, shared_ids));
    }

    /* Kills at even steps of the progress. */
    for (int k = 1; k <= opt.kills; k++) {
        uint64_t at = kill_point(k);
        double end = now_s() + 60;
        while (atomic_load_explicit(progress, memory_order_relaxed) < at && now_s() < end)
            sched_yield();
        hsd_ctl_kill(&d);
        atomic_store_explicit(&shared->kills, (uint32_t)k, memory_order_release);
        printf("  killed the daemon at %llu/%llu ops\n",
               (unsigned long long)atomic_load_explicit(progress, memory_order_relaxed),
               (unsigned long long)total_ops);
        if (!CHECK_EQ(hsd_ctl_start(&d, NULL), 0))
            break;
    }
    for (int p = 0; p < opt.procs; p++) {
        int status = 0;
        double end = now_s() + 120;
        pid_t got;
        while ((got = waitpid(workers[p], &status, WNOHANG)) == 0 && now_s() < end)
            hsd_ctl_nap_ms(10);
        if (got != workers[p]) {
            kill(workers[p], SIGKILL);
            waitpid(workers[p], &status, 0);
            workers_ok = false;
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            workers_ok = false;
        }
    }
    CHECK(workers_ok);
    printf("  load: %llu ops in %.2f s\n", (unsigned long long)total_ops, now_s() - t0);

    /* The tally. */
    lines = read_logs();
    CHECK(lines > 0);
    for (size_t i = 0; i < tally_cap; i++) {
        order_tally *t = &tally[i];
        if (!t->used)
            continue;
        d_ok += t->d_ok;
        r_ok += t->r_ok;
        unexpected += t->d_other + t->r_other;
        multi_ok += t->d_ok > 1 || t->r_ok > 1;
        unacked += t->d_acked_success == 0 && (t->d_ok + t->d_dup) > 0;
        if (t->id[0] == 'n' || t->id[0] == 'b') {
            /* Burst ids: one success, all the others see it. */
            int tries = t->id[0] == 'n' ? t->d_ok + t->d_dup + t->d_sold + t->d_other
                                        : t->r_ok + t->r_already + t->r_other;
            bool fine = t->id[0] == 'n' ? t->d_ok == 1 && t->d_dup == tries - 1
                                        : t->r_ok == 1 && t->r_already == tries - 1;
            if (opt.kills > 0) /* a success may have been answered "unknown" */
                fine = t->id[0] == 'n' ? t->d_ok <= 1 && t->d_dup + t->d_ok == tries
                                       : t->r_ok <= 1 && t->r_already + t->r_ok == tries;
            if (!fine || tries != opt.procs * opt.threads) {
                fprintf(stderr, "burst id %s: %d ok, %d duplicate/already of %d\n", t->id,
                        t->id[0] == 'n' ? t->d_ok : t->r_ok,
                        t->id[0] == 'n' ? t->d_dup : t->r_already, tries);
                bad_burst++;
            }
        }
        if (opt.kills == 0) {
            /* Every duplicate names an id that succeeded exactly once. */
            bad_dup += t->d_dup > 0 && t->d_ok != 1;
            /* A refund only of a success; a second refund only after one. */
            bad_refund += (t->r_ok > 0 && t->d_ok != 1) || (t->r_already > 0 && t->r_ok != 1);
        }
    }
    printf("  %ld log lines: %ld deductions ok, %ld refunds ok\n", lines, d_ok, r_ok);
    CHECK_EQ(unexpected, 0);
    CHECK_EQ(multi_ok, 0);
    CHECK_EQ(bad_dup, 0);
    CHECK_EQ(bad_refund, 0);
    CHECK_EQ(bad_burst, 0);
    if (opt.sync)
        CHECK_EQ(unacked, 0);

    /* Reattach (the handle may be on a dead generation) and read. */
    live = -1;
    for (int i = 0; i < 500 && live < 0; i++) {
        live = available(c);
        if (live < 0)
            hsd_ctl_nap_ms(20);
    }
    printf("  available %lld of %lld\n", (long long)live, (long long)opt.stock);
    CHECK(live >= 0);
    if (opt.kills == 0) {
        /* Exact: what the acknowledged answers add up to. */
        CHECK_EQ(d_ok - r_ok, opt.stock - live);
        CHECK(index_states(c, &deducted, &refunded, &lost_d, &lost_r, &mismatch, &held));
        CHECK_EQ(deducted + refunded, d_ok);
        CHECK_EQ(refunded, r_ok);
        CHECK_EQ(mismatch, 0);
    } else {
        /* Never oversold by what was acknowledged: the units of the orders
         * clients were told are theirs and that are not refunded fit in
         * what left the counter.  (Not d_ok - r_ok <= stock: a kill can
         * answer a refund that happened "unknown", and its unit may then
         * be sold again, acknowledged: d_ok - r_ok overcounts by it.) */
        CHECK(index_states(c, &deducted, &refunded, &lost_d, &lost_r, &mismatch, &held));
        if (!CHECK(held <= opt.stock - live))
            fprintf(stderr, "  %ld acknowledged orders hold units, %lld left the counter\n", held,
                    (long long)(opt.stock - live));
    }

    /* Clean stop, restart: replay must give the same counter. */
    if (CHECK_EQ(hsd_ctl_stop(&d), 0) && CHECK_EQ(hsd_ctl_start(&d, NULL), 0)) {
        recovered = -1;
        for (int i = 0; i < 500 && recovered < 0; i++) {
            recovered = available(c);
            if (recovered < 0)
                hsd_ctl_nap_ms(20);
        }
        printf("  recovered available %lld\n", (long long)recovered);
        CHECK_EQ(recovered, live);
        CHECK(index_states(c, &deducted, &refunded, &lost_d, &lost_r, &mismatch, &held));
        printf("  index: %ld deducted, %ld refunded\n", deducted, refunded);
        CHECK(held <= deducted);
        CHECK_EQ(lost_d, 0);
        CHECK_EQ(lost_r, 0);
        CHECK_EQ(mismatch, 0);
        /* Every unit is either available or held by a deducted order. */
        CHECK_EQ(opt.stock - recovered, deducted);
        CHECK(recovered >= 0 && recovered <= opt.stock);
        r = hs_deduct(c, SKU, strlen(SKU), 1, "after", 5, 0, NULL);
        CHECK(r == HS_OK || (r == HS_SOLD_OUT && recovered == 0));
    }
    hs_detach(c);
    hsd_ctl_stop(&d);
    if (opt.own_dir && !opt.keep && hs_test_failed_ == 0)
        hs_test_rmrf(opt.dir);
    else
        printf("  kept %s\n", opt.dir);
    return hs_test_done();
}
