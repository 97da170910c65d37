/*-------------------------------------------------------------------------
 *
 * crash_prog.h
 *      What the crash suite's own-daemon programs share (holds_crash.c,
 *      basket_crash.c, buyer_crash.c): the buyers' answer log, the
 *      durability wait that decides whether an answer is logged, FAIL(),
 *      the fault names, the index of what the queue names by id, and
 *      main's loop over the iterations (one line each, then `N passed, N
 *      failed`; tests/crash/harness.py parses them).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_TESTS_CRASH_PROG_H
#define HOTSTOCK_TESTS_CRASH_PROG_H

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon_ctl.h"
#include "hotstock.h"
#include "test.h"
#include "util.h"

/* Append one line to the buyers' log with one write(2) (O_APPEND). */
static void
logline(int fd, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (write(fd, line, (size_t)n) != n)
        _exit(3);
}

/* Durable, or the answer stays unknown (not logged). */
static bool
durable(hs_client *c, hs_lsn lsn)
{
    return lsn == 0 || hs_wait_durable(c, lsn, 10000) == HS_OK;
}

/*
 * An index by id of what the queue names (orders, baskets): items of
 * item_size bytes whose first field is their NUL-terminated id (id_size
 * bytes), in an array of max; slots (2 * max, a power of two, zeroed
 * for a new iteration) hold index + 1.  The item, created zeroed with
 * its id when absent and create; NULL when absent, or full.
 */
static void *
crash_find(void *items, size_t item_size, size_t id_size, uint32_t *slots, uint32_t max,
           uint32_t *count, const char *id, bool create)
{
    uint64_t h = hs_hash(id, strlen(id));

    for (uint32_t i = 0;; i++) {
        uint32_t k = (uint32_t)(h + i) & (2 * max - 1);
        char *item;

        if (slots[k] == 0) {
            if (!create || *count == max)
                return NULL;
            slots[k] = ++*count;
            item = (char *)items + (size_t)(*count - 1) * item_size;
            memset(item, 0, item_size);
            snprintf(item, id_size, "%s", id);
            return item;
        }
        item = (char *)items + (size_t)(slots[k] - 1) * item_size;
        if (strcmp(item, id) == 0)
            return item;
    }
}

/* Why the iteration failed, for its line. */
static char why[1024];

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(why, sizeof(why), __VA_ARGS__);                                                   \
        return false;                                                                              \
    } while (0)

/* By iteration number % 3. */
static const char *const fault_names[] = {"daemon_kill", "buyer_kill", "both"};

/* One iteration's run under a fault, the same for every program. */
typedef struct crash_run {
    const char *sku_prefix; /* SKUs "<prefix><iter>.<n>" */
    int skus;
    int64_t stock;
    int buyers; /* at most 16 */
    void (*buyer)(const char *dir, int iter, int b, int logfd); /* never returns */
    int run_ms, run_jitter_ms; /* before the fault */
    int down_jitter_ms;        /* the daemon stays down up to this */
    int after_start_ms;        /* the buyers go on after the start */
} crash_run;

/*
 * New SKUs, the buyers (forked, their answers logged to logpath), the
 * fault of iteration iter (iter % 3: SIGKILL the daemon and start it
 * again, SIGKILL a buyer in mid-run, or both), every buyer SIGKILLed (an
 * answer not logged yet is unknown), then a smart stop and a start
 * (counters rebuilt from the queue).  true, or false with why set.
 */
static bool
crash_run_faults(hsd_ctl *d, hs_client *c, int iter, unsigned *seed, const crash_run *run,
                 char *logpath, size_t logpath_len)
{
    char sku[32];
    pid_t pids[16];
    int logfd, fault = iter % 3;

    snprintf(logpath, logpath_len, "%s/buyers-%d.log", d->dir, iter);
    logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600);
    if (logfd < 0)
        FAIL("cannot create %s", logpath);
    for (int s = 0; s < run->skus; s++) {
        snprintf(sku, sizeof(sku), "%s%d.%d", run->sku_prefix, iter, s);
        if (hs_put_sku(c, sku, strlen(sku), run->stock, NULL) != HS_OK) {
            close(logfd);
            FAIL("put_sku %s: %s", sku, hs_last_error());
        }
    }
    for (int b = 0; b < run->buyers; b++) {
        pids[b] = fork();
        if (pids[b] == 0)
            run->buyer(d->dir, iter, b, logfd); /* exits */
    }
    close(logfd);
    hsd_ctl_nap_ms(run->run_ms + (int)(rand_r(seed) % (unsigned)run->run_jitter_ms));
    if (fault != 0) { /* a buyer, in mid-run */
        kill(pids[rand_r(seed) % (unsigned)run->buyers], SIGKILL);
        hsd_ctl_nap_ms(200);
    }
    if (fault != 1) { /* the daemon */
        hsd_ctl_kill(d);
        hsd_ctl_nap_ms((int)(rand_r(seed) % (unsigned)run->down_jitter_ms));
        if (hsd_ctl_start(d, NULL) != 0)
            FAIL("daemon did not start again after SIGKILL");
        hsd_ctl_nap_ms(run->after_start_ms);
    }
    for (int b = 0; b < run->buyers; b++) {
        kill(pids[b], SIGKILL);
        waitpid(pids[b], NULL, 0);
    }
    /* counters rebuilt from the queue: a smart stop and a start */
    if (hsd_ctl_stop(d) != 0 || hsd_ctl_start(d, NULL) != 0)
        FAIL("daemon did not stop and start cleanly");
    return true;
}

typedef bool (*crash_iteration_fn)(hsd_ctl *d, hs_client **c, int iter, unsigned *seed);

/*
 * Run `iterations` iterations against a daemon of our own in a fresh
 * directory (tag: its name).  After each, `what` and *count name what the
 * queue held ("orders", "baskets").  Exit status: 0 when all passed.
 */
static int
crash_prog_main(const char *prog, const char *tag, int iterations, crash_iteration_fn iteration,
                const char *what, const uint32_t *count)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;
    unsigned seed = (unsigned)time(NULL);
    int passed = 0, failed = 0;

    signal(SIGPIPE, SIG_IGN);
    hs_test_tmpdir(tag, d.dir);
    hsd_ctl_flag(&d, "--flush-interval-ms", "5");
    if (hsd_ctl_start(&d, &c) != 0) {
        fprintf(stderr, "%s: cannot start hotstockd in %s\n", prog, d.dir);
        hsd_ctl_kill(&d);
        return 1;
    }
    printf("%s: %d iterations, seed %u, data in %s\n", prog, iterations, seed, d.dir);
    for (int i = 1; i <= iterations; i++) {
        double t0 = hs_test_seconds();
        bool ok;

        why[0] = '\0';
        ok = iteration(&d, &c, i, &seed);
        printf("iteration %d (%s): %s%s (%.1fs, %u %s in the queue)\n", i, fault_names[i % 3],
               ok ? "ok" : "FAILED: ", ok ? "" : why, hs_test_seconds() - t0, *count, what);
        fflush(stdout);
        if (ok)
            passed++;
        else
            failed++;
        if (d.pid == 0 && hsd_ctl_start(&d, NULL) != 0)
            break;
    }
    hs_detach(c);
    hsd_ctl_stop(&d);
    if (failed == 0)
        hs_test_rmrf(d.dir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

#endif /* HOTSTOCK_TESTS_CRASH_PROG_H */
