/*-------------------------------------------------------------------------
 *
 * libbench.c
 *      In-process deductions per second on ONE hot SKU through libhotstock,
 *      with 1 and 2 threads, waiting for durability (hs_wait_durable after
 *      each deduction) and not.
 *
 *   libbench [-D DIR] [-t THREADS] [-s SECONDS]
 *
 * With -D it uses the daemon already serving DIR; without, it starts one
 * ($HOTSTOCKD or ./shmd/hotstockd) in a temporary directory with an order
 * index large enough, and stops it at the end.  -t runs only that thread
 * count (default: 1 and 2).  Each cell runs SECONDS (default 3) or until
 * it has used its share of the free order index slots, whichever comes
 * first: every deduction takes a fresh order id.  An unreported warm-up
 * cell runs first, so that every cell measures the steady state (the first
 * touch of each order-index page through a mapping is a page fault).
 * HS_QUEUE_FULL (the spiller is behind) is retried with the same order id
 * and counted.  The segment's pages are pre-allocated before measuring.
 *
 * Prints a table (deducts/s by wall clock, and CPU microseconds per
 * deduction of the deducting threads: the figure that stays meaningful on
 * a busy machine), then one summary line (the bench harness keeps it).
 * Build: cc -std=gnu11 -O2 -pthread -D_GNU_SOURCE -Ishmd \
 *            -o tests/bench/libbench tests/bench/libbench.c shmd/libhotstock.a
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sys/mman.h>

#include "segment.h"

typedef struct cell {
    int threads;
    bool sync;
    uint64_t budget; /* order ids this cell may use */
    double seconds;
    /* results */
    uint64_t ops, queue_full, failures;
    double elapsed;
    double cpu; /* CPU seconds of the deducting threads */
} cell;

typedef struct runner {
    hs_client *c;
    const cell *cl;
    int t;
    char sku[HS_SKU_MAX + 1];
    char tag[32];
    _Atomic bool *stop;
    _Atomic int *finished;
    uint64_t ops, queue_full, failures;
    double cpu;
    char error[256];
} runner;

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
run_thread(void *arg)
{
    runner *r = arg;
    uint64_t limit = r->cl->budget / (uint64_t)r->cl->threads;
    size_t sku_len = strlen(r->sku);
    char id[64];

    for (uint64_t n = 0; n < limit; n++) {
        int len = snprintf(id, sizeof(id), "%s.%d.%" PRIu64, r->tag, r->t, n);
        hs_lsn lsn = 0;
        hs_result res;

        /* Relaxed: a stop request, checked every round. */
        if (atomic_load_explicit(r->stop, memory_order_relaxed))
            break;
        for (;;) {
            res = hs_deduct(r->c, r->sku, sku_len, 1, id, (size_t)len, 0, &lsn);
            if (res != HS_QUEUE_FULL)
                break;
            r->queue_full++;
        }
        if (res != HS_OK) {
            snprintf(r->error, sizeof(r->error), "deduct: %s (%s)", hs_result_name(res),
                     hs_last_error());
            r->failures++;
            break;
        }
        if (r->cl->sync && (res = hs_wait_durable(r->c, lsn, 10000)) != HS_OK) {
            snprintf(r->error, sizeof(r->error), "wait_durable: %s (%s)", hs_result_name(res),
                     hs_last_error());
            r->failures++;
            break;
        }
        r->ops++;
    }
    {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        r->cpu = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    /* Release: the counts above are read after the join anyway. */
    atomic_fetch_add_explicit(r->finished, 1, memory_order_release);
    return NULL;
}

/* Run one cell on a fresh SKU. */
static int
run_cell(hs_client *c, cell *cl, int index)
{
    pthread_t tids[2];
    runner rs[2];
    _Atomic bool stop = false;
    _Atomic int finished = 0;
    char sku[HS_SKU_MAX + 1];
    double t0, end;
    hs_result r;

    snprintf(sku, sizeof(sku), "libbench.%d.%d", (int)getpid(), index);
    r = hs_put_sku(c, sku, strlen(sku), HS_STOCK_MAX, NULL);
    if (r != HS_OK) {
        fprintf(stderr, "libbench: put_sku: %s (%s)\n", hs_result_name(r), hs_last_error());
        return -1;
    }
    t0 = now_s();
    for (int t = 0; t < cl->threads; t++) {
        rs[t] = (runner){.c = c, .cl = cl, .t = t, .stop = &stop, .finished = &finished};
        snprintf(rs[t].sku, sizeof(rs[t].sku), "%s", sku);
        snprintf(rs[t].tag, sizeof(rs[t].tag), "lb%d.%d", (int)getpid(), index);
        pthread_create(&tids[t], NULL, run_thread, &rs[t]);
    }
    end = t0 + cl->seconds;
    /* Poll for the end of the time slot (threads also stop on their own
     * when their share of order ids is used up). */
    while (atomic_load_explicit(&finished, memory_order_acquire) < cl->threads && now_s() < end) {
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store_explicit(&stop, true, memory_order_relaxed);
    cl->elapsed = now_s() - t0;
    for (int t = 0; t < cl->threads; t++) {
        pthread_join(tids[t], NULL);
        cl->ops += rs[t].ops;
        cl->queue_full += rs[t].queue_full;
        cl->failures += rs[t].failures;
        cl->cpu += rs[t].cpu;
        if (rs[t].failures)
            fprintf(stderr, "libbench: thread %d: %s\n", t, rs[t].error);
    }
    return cl->failures ? -1 : 0;
}

/*-------------------------------------------------------------------------
 * A private daemon when no -D is given
 *-------------------------------------------------------------------------
 */

static char own_dir[256];
static pid_t own_pid;

static const char *
daemon_binary(void)
{
    const char *b = getenv("HOTSTOCKD");
    return b && *b ? b : "./shmd/hotstockd";
}

static int
own_daemon_start(hs_client **out)
{
    double end;
    hs_result r = HS_DAEMON_DOWN;

    snprintf(own_dir, sizeof(own_dir), "/tmp/hs-libbench-XXXXXX");
    if (mkdtemp(own_dir) == NULL)
        return -1;
    own_pid = fork();
    if (own_pid == 0) {
        char log[300];
        snprintf(log, sizeof(log), "%s/daemon.out", own_dir);
        if (freopen(log, "a", stdout) == NULL || freopen(log, "a", stderr) == NULL)
            _exit(127);
        execl(daemon_binary(), daemon_binary(), "start", "-D", own_dir, "--foreground",
              "--order-capacity", "1048576", "--ring-capacity", "65536", (char *)NULL);
        _exit(127);
    }
    end = now_s() + 30;
    while (now_s() < end) {
        struct timespec ts = {0, 20 * 1000000L};
        r = hs_attach(own_dir, out);
        if (r == HS_OK)
            return 0;
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "libbench: daemon in %s not ready: %s (%s)\n", own_dir, hs_result_name(r),
            hs_last_error());
    return -1;
}

static void
own_daemon_stop(void)
{
    char cmd[600];

    if (own_pid <= 0)
        return;
    snprintf(cmd, sizeof(cmd), "'%s' stop -D '%s' >/dev/null 2>&1; rm -rf '%s'", daemon_binary(),
             own_dir, own_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "libbench: stopping the daemon of %s failed\n", own_dir);
    waitpid(own_pid, NULL, 0);
}

/*
 * Allocate every page of the segment before measuring, through a mapping of
 * our own (MADV_POPULATE_WRITE writes nothing).  Otherwise the first touch
 * of each order-index page (a random page per new order id) allocates and
 * clears it in the kernel, and the figures measure page faults of a fresh
 * segment instead of the steady state.  Best effort.
 */
static void
prefault(const char *dir)
{
    char real[4096];
    hs_header *h;
    double t0 = now_s();

    if (realpath(dir, real) == NULL || hs_segment_map(real, &h) != HS_OK)
        return;
#ifdef MADV_POPULATE_WRITE
    if (madvise(h, h->total_size, MADV_POPULATE_WRITE) != 0)
        fprintf(stderr, "libbench: MADV_POPULATE_WRITE: %s\n", strerror(errno));
#endif
    printf("libbench: %.0f MB segment pre-allocated in %.2f s\n", (double)h->total_size / 1048576.0,
           now_s() - t0);
    hs_segment_unmap(h);
}

int
main(int argc, char **argv)
{
    const char *dir = NULL;
    int only_threads = 0, ch, ncells = 0, rc = 0;
    double seconds = 3;
    cell cells[4];
    hs_client *c = NULL;
    hs_status st;
    hs_result r;
    uint64_t free_slots;
    double async_rate = 0, sync_rate = 0;

    while ((ch = getopt(argc, argv, "D:t:s:")) != -1) {
        switch (ch) {
        case 'D':
            dir = optarg;
            break;
        case 't':
            only_threads = atoi(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        default:
            fprintf(stderr, "usage: libbench [-D DIR] [-t 1|2] [-s SECONDS]\n");
            return 2;
        }
    }
    if (only_threads < 0 || only_threads > 2 || seconds <= 0) {
        fprintf(stderr, "libbench: -t must be 1 or 2, -s positive\n");
        return 2;
    }
    if (dir != NULL) {
        r = hs_attach(dir, &c);
        if (r != HS_OK) {
            fprintf(stderr, "libbench: attach %s: %s (%s)\n", dir, hs_result_name(r),
                    hs_last_error());
            return 1;
        }
    } else if (own_daemon_start(&c) != 0) {
        own_daemon_stop();
        return 1;
    }
    for (int t = 1; t <= 2; t++) {
        if (only_threads && t != only_threads)
            continue;
        cells[ncells++] = (cell){.threads = t, .sync = false, .seconds = seconds};
        cells[ncells++] = (cell){.threads = t, .sync = true, .seconds = seconds};
    }
    prefault(dir != NULL ? dir : own_dir);
    r = hs_get_status(c, &st);
    if (r != HS_OK) {
        fprintf(stderr, "libbench: status: %s\n", hs_result_name(r));
        rc = 1;
        goto out;
    }
    free_slots = st.order_capacity > st.order_count ? st.order_capacity - st.order_count : 0;
    /* Leave a quarter free (probing, other users), split the rest evenly
     * between the cells and a warm-up. */
    for (int i = 0; i < ncells; i++)
        cells[i].budget = free_slots * 3 / 4 / (uint64_t)(ncells + 1);

    printf("libbench: one hot SKU, %s, up to %.1f s per cell, order index %u slots\n",
           dir ? dir : "private daemon", seconds, st.order_capacity);
    {
        /* Warm-up, not reported: the first touch of each order-index page
         * through this process's mapping is a page fault; a real client
         * pays it once per page, early in its life. */
        cell warm = {.threads = 1,
                     .sync = false,
                     .seconds = seconds,
                     .budget = free_slots * 3 / 4 / (uint64_t)(ncells + 1)};
        if (run_cell(c, &warm, 9) != 0)
            rc = 1;
        printf("libbench: warm-up: %" PRIu64 " deducts in %.2f s\n", warm.ops, warm.elapsed);
    }
    printf("%-8s %-12s %14s %10s %12s %14s\n", "threads", "durability", "deducts/s", "seconds",
           "queue_full", "cpu us/deduct");
    for (int i = 0; i < ncells; i++) {
        double rate;
        if (run_cell(c, &cells[i], i) != 0)
            rc = 1;
        rate = cells[i].elapsed > 0 ? (double)cells[i].ops / cells[i].elapsed : 0;
        printf("%-8d %-12s %14.0f %10.2f %12" PRIu64 " %14.2f\n", cells[i].threads,
               cells[i].sync ? "wait" : "no wait", rate, cells[i].elapsed, cells[i].queue_full,
               cells[i].ops ? cells[i].cpu * 1e6 / (double)cells[i].ops : 0.0);
        fflush(stdout);
        if (cells[i].sync)
            sync_rate = rate;
        else
            async_rate = rate;
    }
    if (only_threads)
        printf("%d thread(s): %.0f deducts/s without waiting, %.0f deducts/s waiting for "
               "durability\n",
               only_threads, async_rate, sync_rate);
    else
        printf("done: %d cells%s\n", ncells, rc ? " (with failures)" : "");
out:
    hs_detach(c);
    if (dir == NULL)
        own_daemon_stop();
    return rc;
}
