/*-------------------------------------------------------------------------
 *
 * crash_load.c
 *      Load generator of the crash suite: deductions, refunds and restocks
 *      through libhotstock, with a log of every acknowledged outcome.
 *
 * Each thread is one buyer application: it deducts with unique order ids,
 * retries some of them on purpose (a repeated order id must come back as a
 * duplicate, never as a second sale), refunds orders it was told were
 * deducted, refunds some twice (the second must be refused) and restocks.
 * Most deductions hit one hot SKU.  Half the threads wait for durability
 * (hs_wait_durable, "synchronous on"), the other half do not.
 *
 * An error means "unknown", never "no": a deduction or refund that failed
 * (daemon down, queue full, I/O error) is retried later with the same order
 * id until it gets a definite answer; what is still unknown at the end is
 * logged as such.
 *
 * THE LOG (what the invariant checker reads; tests/crash/harness.py)
 *
 * One line per event, tab-separated, appended with one write(2) to an
 * O_APPEND file AFTER the call returned (fsync-free: it has to survive the
 * death of the daemon and of PostgreSQL, not of the machine):
 *
 *     kind  unix_us  order_id  sku  qty  sync  result
 *
 *     D   deduction acknowledged (result ok or duplicate)
 *     S   deduction refused: sold out (nothing taken)
 *     TR  refund about to be attempted (written before the call)
 *     R   refund acknowledged
 *     RF  refund refused (result names why)
 *     TA  restock about to be attempted (qty = delta, before the call)
 *     A   restock acknowledged
 *     U   deduction left unknown at the end (never answered)
 *     V   protocol violation seen by the client (result names it)
 *
 * An order id is "c<client>.<thread>.<seq>.<sku index>.<qty>": the SKU and
 * quantity of every order are written in its id, so the checker can tell a
 * ledger row that no client asked for (a phantom) from one whose answer was
 * lost.
 *
 * Nothing here is shared between threads except the client handle (which
 * libhotstock makes thread-safe) and the log descriptor (O_APPEND writes of
 * one line each are atomic with respect to each other).
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hotstock.h"

#define MAX_SKUS 16
#define MAX_THREADS 64
#define ATTACH_BACKOFF_MAX_US 200000
#define FINAL_RETRY_SECONDS 8
#define WAIT_DURABLE_MS 10000

typedef struct order {
    char id[HS_ORDER_ID_MAX + 1];
    int sku;
    int qty;
    hs_lsn lsn; /* LSN of its last record we know of; 0: not known */
} order;

/* A growable array of orders, private to one thread. */
typedef struct order_list {
    order *items;
    size_t count, cap;
} order_list;

/* The answer an application got. */
typedef enum outcome {
    OUT_ACK,    /* acknowledged: done (and durable when synchronous) */
    OUT_NO,     /* a definite no: nothing changed */
    OUT_UNKNOWN /* an error: it may or may not have happened; retry */
} outcome;

typedef struct worker {
    int thread;
    bool sync;
    uint64_t rng;
    hs_client *client;
    order_list acked;    /* deducted and acknowledged, not refunded */
    order_list refunded; /* refund acknowledged */
    order_list unknown;  /* deduction answered with an error: retry */
    order_list unknown_refunds;
    uint64_t seq;
    uint64_t counts[HS_RESULT_COUNT_];
    uint64_t acks, violations;
} worker;

/* configuration, read-only once the threads run */
static const char *opt_dir;
static const char *opt_log;
static const char *opt_stop;
static int opt_client = 1;
static int opt_threads = 4;
static double opt_rate = 500; /* operations per second per thread */
static double opt_seconds = 3600;
static const char *opt_sync = "mix"; /* on | off | mix */
static char skus[MAX_SKUS][HS_SKU_MAX + 1];
static int sku_count;

static int log_fd = -1;
/* Set by the main thread (clock, stop file) or the signal handler; workers
 * read it relaxed: a plain flag, nothing is published with it. */
static _Atomic bool stopping;

static uint64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t
mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* xorshift64*: per-thread, no locking */
static uint64_t
rnd(worker *w)
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * UINT64_C(2685821657736338717);
}

static int
rnd_below(worker *w, int n)
{
    return (int)(rnd(w) % (uint64_t)n);
}

static void
list_push(order_list *l, const order *o)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->items = realloc(l->items, l->cap * sizeof(order));
        if (!l->items) {
            fprintf(stderr, "crash_load: out of memory\n");
            exit(2);
        }
    }
    l->items[l->count++] = *o;
}

/* Remove and return the element at i (order not kept). */
static order
list_take(order_list *l, size_t i)
{
    order o = l->items[i];
    l->items[i] = l->items[--l->count];
    return o;
}

/* Append one event line to the log: one write(2), after the outcome. */
static void
log_event(const char *kind, const char *order_id, int sku, long long qty, bool sync,
          const char *result)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s\t%llu\t%s\t%s\t%lld\t%d\t%s\n", kind,
                     (unsigned long long)now_us(), order_id ? order_id : "-",
                     sku >= 0 ? skus[sku] : "-", qty, sync ? 1 : 0, result);
    if (n <= 0 || (size_t)n >= sizeof(line))
        return;
    for (;;) {
        ssize_t w = write(log_fd, line, (size_t)n);
        if (w == n)
            return;
        if (w < 0 && errno == EINTR)
            continue;
        fprintf(stderr, "crash_load: write %s: %s\n", opt_log, strerror(errno));
        exit(2);
    }
}

static bool
should_stop(void)
{
    return atomic_load_explicit(&stopping, memory_order_relaxed);
}

/* Attach (again) to the daemon; false when asked to stop first. */
static bool
ensure_attached(worker *w)
{
    unsigned backoff = 5000;
    while (!w->client) {
        hs_result r = hs_attach(opt_dir, &w->client);
        if (r == HS_OK)
            return true;
        w->client = NULL;
        if (should_stop())
            return false;
        usleep(backoff);
        if (backoff < ATTACH_BACKOFF_MAX_US)
            backoff *= 2;
    }
    return true;
}

/* After an error that may mean "the daemon is gone": drop the handle so the
 * next operation re-attaches. */
static void
after_error(worker *w, hs_result r)
{
    if (r == HS_DAEMON_DOWN || r == HS_VERSION_MISMATCH) {
        hs_detach(w->client);
        w->client = NULL;
    } else if (r == HS_QUEUE_FULL || r == HS_IO_ERROR || r == HS_TABLE_FULL) {
        usleep(2000);
    }
}

/*
 * A duplicate answer carries no LSN.  For a synchronous caller, wait until
 * everything reserved so far is durable: the original record is among it.
 */
static hs_result
wait_all_durable(worker *w)
{
    hs_status st;
    hs_result r = hs_get_status(w->client, &st);
    if (r != HS_OK)
        return r;
    if (st.next_lsn <= 1)
        return HS_OK;
    return hs_wait_durable(w->client, st.next_lsn - 1, WAIT_DURABLE_MS);
}

/*
 * One deduction attempt of o, logged.  `repeat`: o was acknowledged before,
 * the answer must be a duplicate; `after_refund`: o was refunded, the answer
 * must be "already refunded".
 */
static outcome
try_deduct(worker *w, order *o, bool repeat, bool after_refund)
{
    hs_lsn lsn = 0;
    hs_result r;

    if (!ensure_attached(w))
        return OUT_UNKNOWN;
    if (o->lsn && o->lsn <= hs_evicted_lsn(w->client)) {
        /* its record was drained and the order may be gone from the index:
         * only PostgreSQL's ledger knows now (the SQL path asks it).  A
         * deduct here could sell it a second time, so give up on it. */
        log_event("U", o->id, o->sku, o->qty, w->sync, "evicted");
        return OUT_NO;
    }
    r = hs_deduct(w->client, skus[o->sku], strlen(skus[o->sku]), o->qty, o->id, strlen(o->id), 0,
                  &lsn);
    w->counts[r]++;
    if (r == HS_OK)
        o->lsn = lsn;
    switch (r) {
    case HS_OK:
    case HS_DUPLICATE:
        if (w->sync) {
            hs_result d =
                r == HS_OK ? hs_wait_durable(w->client, lsn, WAIT_DURABLE_MS) : wait_all_durable(w);
            if (d != HS_OK) {
                after_error(w, d);
                return OUT_UNKNOWN; /* the retry gets the truth */
            }
        }
        if (after_refund || (repeat && r == HS_OK)) {
            /* a refunded order sold again, or a repeat that took stock twice */
            log_event("V", o->id, o->sku, o->qty, w->sync,
                      after_refund ? "deduct_after_refund" : "repeat_deducted_again");
            w->violations++;
        }
        log_event("D", o->id, o->sku, o->qty, w->sync, hs_result_name(r));
        w->acks++;
        return after_refund ? OUT_NO : OUT_ACK;
    case HS_SOLD_OUT:
        if (repeat) {
            log_event("V", o->id, o->sku, o->qty, w->sync, "repeat_sold_out");
            w->violations++;
        }
        log_event("S", o->id, o->sku, o->qty, w->sync, hs_result_name(r));
        return OUT_NO;
    case HS_ALREADY_REFUNDED:
        if (!after_refund) {
            log_event("V", o->id, o->sku, o->qty, w->sync, "refunded_without_refund");
            w->violations++;
        }
        return OUT_NO;
    case HS_ORDER_MISMATCH:
    case HS_UNKNOWN_SKU:
    case HS_BAD_ARGUMENT:
        log_event("V", o->id, o->sku, o->qty, w->sync, hs_result_name(r));
        w->violations++;
        return OUT_NO;
    default: /* DAEMON_DOWN, QUEUE_FULL, TABLE_FULL, IO_ERROR: unknown */
        after_error(w, r);
        return OUT_UNKNOWN;
    }
}

/* One refund attempt of o, logged.  `again`: refunded (or tried) before. */
static outcome
try_refund(worker *w, order *o, bool again)
{
    hs_lsn lsn = 0;
    int32_t qty = 0;
    char sku[HS_SKU_MAX + 1];
    hs_result r;

    if (!ensure_attached(w))
        return OUT_UNKNOWN;
    log_event("TR", o->id, o->sku, o->qty, w->sync, again ? "again" : "first");
    r = hs_refund(w->client, o->id, strlen(o->id), &lsn, &qty, sku);
    w->counts[r]++;
    switch (r) {
    case HS_OK:
        o->lsn = lsn;
        if (w->sync) {
            hs_result d = hs_wait_durable(w->client, lsn, WAIT_DURABLE_MS);
            if (d != HS_OK) {
                after_error(w, d);
                return OUT_UNKNOWN;
            }
        }
        if (qty != o->qty || strcmp(sku, skus[o->sku]) != 0) {
            log_event("V", o->id, o->sku, o->qty, w->sync, "refund_wrong_units");
            w->violations++;
        }
        log_event("R", o->id, o->sku, o->qty, w->sync, hs_result_name(r));
        w->acks++;
        return OUT_ACK;
    case HS_ALREADY_REFUNDED:
    case HS_NOT_FOUND: /* evicted after the drain: the SQL path refunds those */
        log_event("RF", o->id, o->sku, o->qty, w->sync, hs_result_name(r));
        return OUT_NO;
    default:
        after_error(w, r);
        return OUT_UNKNOWN;
    }
}

static void
do_restock(worker *w)
{
    int sku = rnd_below(w, sku_count);
    int64_t delta = 1 + rnd_below(w, 20), available = 0;
    hs_lsn lsn = 0;
    hs_result r;

    if (!ensure_attached(w))
        return;
    log_event("TA", NULL, sku, delta, w->sync, "try");
    r = hs_add_stock(w->client, skus[sku], strlen(skus[sku]), delta, &available, &lsn);
    w->counts[r]++;
    if (r != HS_OK) {
        after_error(w, r);
        return;
    }
    if (w->sync && hs_wait_durable(w->client, lsn, WAIT_DURABLE_MS) != HS_OK)
        return; /* unknown: bounded by the TA line */
    log_event("A", NULL, sku, delta, w->sync, "ok");
}

static void
new_order(worker *w, order *o)
{
    /* 60% of the orders go to the hot SKU (index 0) */
    o->sku = rnd_below(w, 100) < 60 ? 0 : 1 + rnd_below(w, sku_count - 1 > 0 ? sku_count - 1 : 1);
    if (o->sku >= sku_count)
        o->sku = 0;
    o->qty = 1 + rnd_below(w, 3);
    snprintf(o->id, sizeof(o->id), "c%d.%d.%llu.%d.%d", opt_client, w->thread,
             (unsigned long long)++w->seq, o->sku, o->qty);
}

/*
 * Retry the orders whose answer is unknown, oldest first, while answers
 * come; stop at the first that stays unknown (the daemon is probably away).
 */
static void
retry_unknown(worker *w)
{
    while (w->unknown.count) {
        order o = w->unknown.items[0];
        outcome out = try_deduct(w, &o, false, false);
        if (out == OUT_UNKNOWN)
            return;
        list_take(&w->unknown, 0);
        if (out == OUT_ACK)
            list_push(&w->acked, &o);
    }
    while (w->unknown_refunds.count) {
        order o = w->unknown_refunds.items[0];
        outcome out = try_refund(w, &o, true);
        if (out == OUT_UNKNOWN)
            return;
        list_take(&w->unknown_refunds, 0);
        if (out == OUT_ACK)
            list_push(&w->refunded, &o);
    }
}

/* Could the order index have dropped o (drained, then a daemon restart)? */
static bool
may_be_evicted(worker *w, const order *o)
{
    if (!ensure_attached(w))
        return true;
    return o->lsn == 0 || o->lsn <= hs_evicted_lsn(w->client);
}

static void
one_operation(worker *w)
{
    int r = rnd_below(w, 100);
    order o;

    if (w->unknown.count || w->unknown_refunds.count) {
        retry_unknown(w);
        if (w->unknown.count + w->unknown_refunds.count > 64)
            return; /* do not pile up new work while the daemon is away */
    }
    if (r < 70 || (r < 95 && w->acked.count == 0)) {
        new_order(w, &o);
        outcome out = try_deduct(w, &o, false, false);
        if (out == OUT_ACK)
            list_push(&w->acked, &o);
        else if (out == OUT_UNKNOWN)
            list_push(&w->unknown, &o);
    } else if (r < 78) {
        size_t i = (size_t)rnd_below(w, (int)w->acked.count);
        if (may_be_evicted(w, &w->acked.items[i]))
            return; /* only the ledger knows it now */
        (void)try_deduct(w, &w->acked.items[i], true, false);
    } else if (r < 90) {
        o = list_take(&w->acked, (size_t)rnd_below(w, (int)w->acked.count));
        outcome out = try_refund(w, &o, false);
        if (out == OUT_UNKNOWN)
            list_push(&w->unknown_refunds, &o);
        else if (out == OUT_ACK)
            list_push(&w->refunded, &o);
    } else if (r < 93 && w->refunded.count) {
        size_t i = (size_t)rnd_below(w, (int)w->refunded.count);
        if (may_be_evicted(w, &w->refunded.items[i]))
            return;
        (void)try_refund(w, &w->refunded.items[i], true);
    } else if (r < 95 && w->refunded.count) {
        size_t i = (size_t)rnd_below(w, (int)w->refunded.count);
        if (may_be_evicted(w, &w->refunded.items[i]))
            return;
        (void)try_deduct(w, &w->refunded.items[i], true, true);
    } else {
        do_restock(w);
    }
}

static void *
worker_main(void *arg)
{
    worker *w = arg;
    uint64_t next = mono_us();
    uint64_t period = opt_rate > 0 ? (uint64_t)(1e6 / opt_rate) : 0;

    while (!should_stop()) {
        one_operation(w);
        if (period) {
            next += period;
            uint64_t now = mono_us();
            if (next > now)
                usleep((useconds_t)(next - now));
            else if (now - next > 1000000)
                next = now; /* fell far behind (daemon away): do not burst */
        }
    }

    /* The application is told to stop: it still wants the truth about every
     * order it got an error for.  Retry them for a bounded time. */
    uint64_t limit = mono_us() + FINAL_RETRY_SECONDS * 1000000ULL;
    while ((w->unknown.count || w->unknown_refunds.count) && mono_us() < limit) {
        if (!w->client && hs_attach(opt_dir, &w->client) != HS_OK) {
            w->client = NULL;
            usleep(50000);
            continue;
        }
        size_t before = w->unknown.count + w->unknown_refunds.count;
        retry_unknown(w);
        if (w->unknown.count + w->unknown_refunds.count == before)
            usleep(50000);
    }
    for (size_t i = 0; i < w->unknown.count; i++)
        log_event("U", w->unknown.items[i].id, w->unknown.items[i].sku, w->unknown.items[i].qty,
                  w->sync, "unknown");
    for (size_t i = 0; i < w->unknown_refunds.count; i++)
        log_event("U", w->unknown_refunds.items[i].id, w->unknown_refunds.items[i].sku,
                  w->unknown_refunds.items[i].qty, w->sync, "unknown_refund");
    return NULL;
}

static void
on_signal(int sig)
{
    (void)sig;
    atomic_store(&stopping, true);
}

static void
usage(void)
{
    fprintf(
        stderr,
        "usage: crash_load -D DIR -o LOG [-c CLIENT] [-t THREADS] [-r RATE] [-s SECONDS]\n"
        "                  [-S STOPFILE] [-y on|off|mix] SKU...\n"
        "  Runs until SECONDS pass, STOPFILE exists or SIGTERM; the first SKU is the hot one.\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "D:o:c:t:r:s:S:y:")) != -1) {
        switch (opt) {
        case 'D':
            opt_dir = optarg;
            break;
        case 'o':
            opt_log = optarg;
            break;
        case 'c':
            opt_client = atoi(optarg);
            break;
        case 't':
            opt_threads = atoi(optarg);
            break;
        case 'r':
            opt_rate = atof(optarg);
            break;
        case 's':
            opt_seconds = atof(optarg);
            break;
        case 'S':
            opt_stop = optarg;
            break;
        case 'y':
            opt_sync = optarg;
            break;
        default:
            usage();
        }
    }
    if (!opt_dir || !opt_log || optind >= argc || opt_threads < 1 || opt_threads > MAX_THREADS)
        usage();
    for (int i = optind; i < argc && sku_count < MAX_SKUS; i++) {
        if (strlen(argv[i]) == 0 || strlen(argv[i]) > HS_SKU_MAX)
            usage();
        strcpy(skus[sku_count++], argv[i]);
    }

    log_fd = open(opt_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "crash_load: open %s: %s\n", opt_log, strerror(errno));
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    worker *ws = calloc((size_t)opt_threads, sizeof(worker));
    pthread_t *th = calloc((size_t)opt_threads, sizeof(pthread_t));
    for (int i = 0; i < opt_threads; i++) {
        ws[i].thread = i;
        ws[i].sync = strcmp(opt_sync, "on") == 0 || (strcmp(opt_sync, "mix") == 0 && i % 2 == 0);
        ws[i].rng = (uint64_t)now_us() * 2654435761u + (uint64_t)i * 97 + (uint64_t)opt_client + 1;
        pthread_create(&th[i], NULL, worker_main, &ws[i]);
    }

    /* the main thread watches the clock and the stop file */
    uint64_t end = mono_us() + (uint64_t)(opt_seconds * 1e6);
    while (!atomic_load(&stopping)) {
        struct stat sb;
        if (mono_us() >= end || (opt_stop && stat(opt_stop, &sb) == 0))
            atomic_store(&stopping, true);
        else
            usleep(20000);
    }
    uint64_t acks = 0, violations = 0, unknown = 0;
    uint64_t counts[HS_RESULT_COUNT_] = {0};
    for (int i = 0; i < opt_threads; i++) {
        pthread_join(th[i], NULL);
        acks += ws[i].acks;
        violations += ws[i].violations;
        unknown += ws[i].unknown.count + ws[i].unknown_refunds.count;
        for (int k = 0; k < HS_RESULT_COUNT_; k++)
            counts[k] += ws[i].counts[k];
        if (ws[i].client)
            hs_detach(ws[i].client);
    }
    printf("crash_load c%d: acks=%llu unknown=%llu violations=%llu", opt_client,
           (unsigned long long)acks, (unsigned long long)unknown, (unsigned long long)violations);
    for (int k = 0; k < HS_RESULT_COUNT_; k++)
        if (counts[k])
            printf(" %s=%llu", hs_result_name((hs_result)k), (unsigned long long)counts[k]);
    printf("\n");
    return 0;
}
