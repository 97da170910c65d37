/*-------------------------------------------------------------------------
 *
 * crash_sqlload.c
 *      Load generator of the crash suite that goes through SQL: the
 *      hotstock extension's deduct, refund and add_stock, from several
 *      connections, with a log of every acknowledged outcome.
 *
 * Built by tests/crash/run.sh (it links libpq, which the top Makefile's
 * test rule does not).  Each thread owns one connection and behaves like
 * one shop front-end: it deducts with new order ids, repeats some (must
 * answer true again), deducts inside transactions that roll back (must
 * leave nothing sold), refunds acknowledged orders, refunds some twice (the
 * second must answer false), and restocks.  Half the connections run with
 * hotstock.synchronous = on, half with off.
 *
 * Any error, including a lost connection, means "unknown": the order id is
 * retried (after reconnecting) until a definite answer comes or the final
 * retry time runs out.  The log format is the one of crash_load.c (same
 * kinds, same columns), plus
 *
 *     X   deduction inside a transaction that was rolled back (the ROLLBACK
 *         was acknowledged, also after the deduct failed): the order must
 *         end up not sold, unless the server warned that it could not undo
 *         it (result "..._warned")
 *     TX  such a transaction began (before the deduct); TX without X: the
 *         connection died inside it
 *
 * A refund answered true with the WARNING "its units will be returned by
 * the drain" (the daemon could not take it at commit) is acknowledged like
 * any other, with result "true_deferred": it is committed, and the drain
 * must apply it.
 *
 * Order ids are "q<client>.<thread>.<seq>.<sku index>.<qty>".
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

#include <libpq-fe.h>

#define MAX_SKUS 16
#define MAX_THREADS 64
#define ID_MAX 64
#define FINAL_RETRY_SECONDS 10
#define MAX_STATES 32

typedef enum outcome { OUT_ACK, OUT_NO, OUT_UNKNOWN } outcome;

typedef struct order {
    char id[ID_MAX];
    int sku;
    int qty;
} order;

typedef struct order_list {
    order *items;
    size_t count, cap;
} order_list;

typedef struct worker {
    int thread;
    bool sync;
    uint64_t rng;
    PGconn *conn;
    order_list acked, refunded, unknown, unknown_refunds;
    uint64_t seq;
    uint64_t acks, violations, errors, reconnects;
    char states[MAX_STATES][6]; /* SQLSTATEs seen, with counts */
    uint64_t state_counts[MAX_STATES];
    /* WARNINGs seen by the notice receiver since the flags were cleared */
    bool undo_warned;        /* "could not undo the deduction" (rollback) */
    bool refund_deferred; /* "units will be returned by the drain" (refund at commit) */
} worker;

static const char *opt_log;
static const char *opt_stop;
static int opt_client = 1;
static int opt_threads = 4;
static double opt_rate = 100;
static double opt_seconds = 3600;
static const char *opt_sync = "mix";
static char skus[MAX_SKUS][64];
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
    return n > 0 ? (int)(rnd(w) % (uint64_t)n) : 0;
}

static void
list_push(order_list *l, const order *o)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->items = realloc(l->items, l->cap * sizeof(order));
        if (!l->items) {
            fprintf(stderr, "crash_sqlload: out of memory\n");
            exit(2);
        }
    }
    l->items[l->count++] = *o;
}

static order
list_take(order_list *l, size_t i)
{
    order o = l->items[i];
    l->items[i] = l->items[--l->count];
    return o;
}

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
    while (write(log_fd, line, (size_t)n) != n) {
        if (errno != EINTR) {
            fprintf(stderr, "crash_sqlload: write %s: %s\n", opt_log, strerror(errno));
            exit(2);
        }
    }
}

static bool
should_stop(void)
{
    return atomic_load_explicit(&stopping, memory_order_relaxed);
}

static void
count_state(worker *w, const char *state)
{
    if (!state)
        state = "conn";
    for (int i = 0; i < MAX_STATES; i++) {
        if (w->states[i][0] == 0) {
            snprintf(w->states[i], sizeof(w->states[i]), "%s", state);
            w->state_counts[i] = 1;
            return;
        }
        if (strcmp(w->states[i], state) == 0) {
            w->state_counts[i]++;
            return;
        }
    }
}

/* Notice receiver: remember the compensation warning of an abort. */
static void
on_notice(void *arg, const PGresult *res)
{
    worker *w = arg;
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (msg && strstr(msg, "could not undo"))
        w->undo_warned = true;
    if (msg && strstr(msg, "will be returned by the drain"))
        w->refund_deferred = true;
}

/* (Re)connect with a bounded backoff; false when asked to stop. */
static bool
ensure_connected(worker *w, bool final)
{
    unsigned backoff = 20000;
    while (!w->conn || PQstatus(w->conn) != CONNECTION_OK) {
        if (w->conn) {
            PQfinish(w->conn);
            w->conn = NULL;
        }
        w->conn = PQconnectdb("application_name=crash_sqlload connect_timeout=5");
        if (PQstatus(w->conn) == CONNECTION_OK) {
            PQsetNoticeReceiver(w->conn, on_notice, w);
            char sql[128];
            snprintf(sql, sizeof(sql),
                     "SET hotstock.synchronous = %s; SET statement_timeout = '20s'",
                     w->sync ? "on" : "off");
            PGresult *res = PQexec(w->conn, sql);
            bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
            PQclear(res);
            if (ok) {
                w->reconnects++;
                return true;
            }
        }
        if (final || should_stop())
            return false;
        usleep(backoff);
        if (backoff < 500000)
            backoff *= 2;
    }
    return true;
}

/*
 * Run one single-row, single-column query.  Returns 1 with *val set to its
 * first character ('t', 'f', ...) or copied into valbuf, 0 on error (the
 * SQLSTATE is counted; a broken connection is dropped).
 */
static int
query1(worker *w, const char *sql, int nparams, const char *const *params, char *valbuf,
       size_t vallen)
{
    PGresult *res = PQexecParams(w->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) >= 1) {
        snprintf(valbuf, vallen, "%s", PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
        PQclear(res);
        return 1;
    }
    if (st == PGRES_COMMAND_OK) {
        valbuf[0] = 0;
        PQclear(res);
        return 1;
    }
    w->errors++;
    count_state(w, PQresultErrorField(res, PG_DIAG_SQLSTATE));
    PQclear(res);
    if (PQstatus(w->conn) != CONNECTION_OK) {
        PQfinish(w->conn);
        w->conn = NULL;
    } else if (PQtransactionStatus(w->conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(w->conn, "ROLLBACK");
        PQclear(r);
    }
    return 0;
}

static outcome
sql_deduct(worker *w, const order *o, bool repeat, bool after_refund, bool final)
{
    char qty[16], val[64];
    const char *params[3] = {skus[o->sku], qty, o->id};
    if (!ensure_connected(w, final))
        return OUT_UNKNOWN;
    snprintf(qty, sizeof(qty), "%d", o->qty);
    if (!query1(w, "SELECT hotstock.deduct($1, $2::int, $3)", 3, params, val, sizeof(val)))
        return OUT_UNKNOWN;
    if (val[0] == 't') {
        if (after_refund) {
            log_event("V", o->id, o->sku, o->qty, w->sync, "deduct_after_refund_true");
            w->violations++;
        }
        log_event("D", o->id, o->sku, o->qty, w->sync, repeat ? "repeat" : "ok");
        w->acks++;
        return after_refund ? OUT_NO : OUT_ACK;
    }
    if (repeat && !after_refund) {
        log_event("V", o->id, o->sku, o->qty, w->sync, "repeat_false");
        w->violations++;
    }
    if (!after_refund)
        log_event("S", o->id, o->sku, o->qty, w->sync, "false");
    return OUT_NO;
}

/* BEGIN; deduct; ROLLBACK: once ROLLBACK is acknowledged nothing is sold. */
static void
sql_deduct_rollback(worker *w, const order *o)
{
    char qty[16], val[64];
    const char *params[3] = {skus[o->sku], qty, o->id};
    if (!ensure_connected(w, false))
        return;
    snprintf(qty, sizeof(qty), "%d", o->qty);
    if (!query1(w, "BEGIN", 0, NULL, val, sizeof(val)))
        return;
    log_event("TX", o->id, o->sku, o->qty, w->sync, "begin");
    w->undo_warned = false;
    if (!query1(w, "SELECT hotstock.deduct($1, $2::int, $3)", 3, params, val, sizeof(val))) {
        /* query1 rolled back, if the connection lives */
        if (w->conn)
            log_event("X", o->id, o->sku, o->qty, w->sync,
                      w->undo_warned ? "deduct_error_warned" : "deduct_error");
        return;
    }
    bool deducted = val[0] == 't';
    if (!query1(w, "ROLLBACK", 0, NULL, val, sizeof(val)))
        return;
    log_event("X", o->id, o->sku, o->qty, w->sync,
              !deducted        ? "false"
              : w->undo_warned ? "rolled_back_true_warned"
                               : "rolled_back_true");
}

static outcome
sql_refund(worker *w, const order *o, bool again, bool final)
{
    char val[64];
    const char *params[1] = {o->id};
    if (!ensure_connected(w, final))
        return OUT_UNKNOWN;
    log_event("TR", o->id, o->sku, o->qty, w->sync, again ? "again" : "first");
    w->refund_deferred = false;
    if (!query1(w, "SELECT hotstock.refund($1)", 1, params, val, sizeof(val)))
        return OUT_UNKNOWN;
    if (val[0] == 't') {
        log_event("R", o->id, o->sku, o->qty, w->sync,
                  w->refund_deferred ? "true_deferred" : "true");
        w->acks++;
        return OUT_ACK;
    }
    log_event("RF", o->id, o->sku, o->qty, w->sync, "false");
    return OUT_NO;
}

static void
sql_restock(worker *w)
{
    int sku = rnd_below(w, sku_count);
    int delta = 1 + rnd_below(w, 20);
    char d[16], val[64];
    const char *params[2] = {skus[sku], d};
    if (!ensure_connected(w, false))
        return;
    snprintf(d, sizeof(d), "%d", delta);
    log_event("TA", NULL, sku, delta, w->sync, "try");
    if (!query1(w, "SELECT hotstock.add_stock($1, $2::bigint)", 2, params, val, sizeof(val)))
        return;
    log_event("A", NULL, sku, delta, w->sync, val);
}

static void
new_order(worker *w, order *o)
{
    o->sku = rnd_below(w, 100) < 60 || sku_count == 1 ? 0 : 1 + rnd_below(w, sku_count - 1);
    o->qty = 1 + rnd_below(w, 3);
    snprintf(o->id, sizeof(o->id), "q%d.%d.%llu.%d.%d", opt_client, w->thread,
             (unsigned long long)++w->seq, o->sku, o->qty);
}

static void
retry_unknown(worker *w, bool final)
{
    while (w->unknown.count) {
        order o = w->unknown.items[0];
        outcome out = sql_deduct(w, &o, false, false, final);
        if (out == OUT_UNKNOWN)
            return;
        list_take(&w->unknown, 0);
        if (out == OUT_ACK)
            list_push(&w->acked, &o);
    }
    while (w->unknown_refunds.count) {
        order o = w->unknown_refunds.items[0];
        outcome out = sql_refund(w, &o, true, final);
        if (out == OUT_UNKNOWN)
            return;
        list_take(&w->unknown_refunds, 0);
        if (out == OUT_ACK)
            list_push(&w->refunded, &o);
    }
}

static void
one_operation(worker *w)
{
    int r = rnd_below(w, 100);
    order o;

    if (w->unknown.count || w->unknown_refunds.count) {
        retry_unknown(w, false);
        if (w->unknown.count + w->unknown_refunds.count > 16)
            return;
    }
    if (r < 62 || (r < 92 && w->acked.count == 0)) {
        new_order(w, &o);
        outcome out = sql_deduct(w, &o, false, false, false);
        if (out == OUT_ACK)
            list_push(&w->acked, &o);
        else if (out == OUT_UNKNOWN)
            list_push(&w->unknown, &o);
    } else if (r < 67) {
        o = w->acked.items[rnd_below(w, (int)w->acked.count)];
        (void)sql_deduct(w, &o, true, false, false);
    } else if (r < 70) {
        new_order(w, &o);
        sql_deduct_rollback(w, &o);
    } else if (r < 82) {
        o = list_take(&w->acked, (size_t)rnd_below(w, (int)w->acked.count));
        outcome out = sql_refund(w, &o, false, false);
        if (out == OUT_UNKNOWN)
            list_push(&w->unknown_refunds, &o);
        else if (out == OUT_ACK)
            list_push(&w->refunded, &o);
        else {
            log_event("V", o.id, o.sku, o.qty, w->sync, "refund_of_acked_false");
            w->violations++;
        }
    } else if (r < 86 && w->refunded.count) {
        o = w->refunded.items[rnd_below(w, (int)w->refunded.count)];
        (void)sql_refund(w, &o, true, false);
    } else if (r < 89 && w->refunded.count) {
        o = w->refunded.items[rnd_below(w, (int)w->refunded.count)];
        (void)sql_deduct(w, &o, true, true, false);
    } else if (r < 92) {
        sql_restock(w);
    } else {
        new_order(w, &o);
        outcome out = sql_deduct(w, &o, false, false, false);
        if (out == OUT_ACK)
            list_push(&w->acked, &o);
        else if (out == OUT_UNKNOWN)
            list_push(&w->unknown, &o);
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
                next = now;
        }
    }
    uint64_t limit = mono_us() + FINAL_RETRY_SECONDS * 1000000ULL;
    while ((w->unknown.count || w->unknown_refunds.count) && mono_us() < limit) {
        size_t before = w->unknown.count + w->unknown_refunds.count;
        retry_unknown(w, true);
        if (w->unknown.count + w->unknown_refunds.count == before)
            usleep(100000);
    }
    for (size_t i = 0; i < w->unknown.count; i++)
        log_event("U", w->unknown.items[i].id, w->unknown.items[i].sku, w->unknown.items[i].qty,
                  w->sync, "unknown");
    for (size_t i = 0; i < w->unknown_refunds.count; i++)
        log_event("U", w->unknown_refunds.items[i].id, w->unknown_refunds.items[i].sku,
                  w->unknown_refunds.items[i].qty, w->sync, "unknown_refund");
    if (w->conn)
        PQfinish(w->conn);
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
    fprintf(stderr, "usage: crash_sqlload -o LOG [-c CLIENT] [-t THREADS] [-r RATE] [-s SECONDS]\n"
                    "                     [-S STOPFILE] [-y on|off|mix] SKU...\n"
                    "  Connects with the PG* environment; the first SKU is the hot one.\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "o:c:t:r:s:S:y:")) != -1) {
        switch (opt) {
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
    if (!opt_log || optind >= argc || opt_threads < 1 || opt_threads > MAX_THREADS)
        usage();
    for (int i = optind; i < argc && sku_count < MAX_SKUS; i++)
        snprintf(skus[sku_count++], sizeof(skus[0]), "%s", argv[i]);
    log_fd = open(opt_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "crash_sqlload: open %s: %s\n", opt_log, strerror(errno));
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    worker *ws = calloc((size_t)opt_threads, sizeof(worker));
    pthread_t *th = calloc((size_t)opt_threads, sizeof(pthread_t));
    for (int i = 0; i < opt_threads; i++) {
        ws[i].thread = i;
        ws[i].sync = strcmp(opt_sync, "on") == 0 || (strcmp(opt_sync, "mix") == 0 && i % 2 == 0);
        ws[i].rng = now_us() * 2654435761u + (uint64_t)i * 131 + (uint64_t)opt_client * 7 + 1;
        pthread_create(&th[i], NULL, worker_main, &ws[i]);
    }
    uint64_t end = mono_us() + (uint64_t)(opt_seconds * 1e6);
    while (!atomic_load(&stopping)) {
        struct stat sb;
        if (mono_us() >= end || (opt_stop && stat(opt_stop, &sb) == 0))
            atomic_store(&stopping, true);
        else
            usleep(20000);
    }
    uint64_t acks = 0, violations = 0, errors = 0, unknown = 0;
    printf("crash_sqlload q%d:", opt_client);
    for (int i = 0; i < opt_threads; i++) {
        pthread_join(th[i], NULL);
        acks += ws[i].acks;
        violations += ws[i].violations;
        errors += ws[i].errors;
        unknown += ws[i].unknown.count + ws[i].unknown_refunds.count;
    }
    printf(" acks=%llu unknown=%llu violations=%llu errors=%llu", (unsigned long long)acks,
           (unsigned long long)unknown, (unsigned long long)violations, (unsigned long long)errors);
    /* SQLSTATEs seen, summed over threads */
    for (int i = 0; i < opt_threads; i++)
        for (int k = 0; k < MAX_STATES && ws[i].states[k][0]; k++) {
            bool seen = false;
            for (int j = 0; j < i && !seen; j++)
                for (int m = 0; m < MAX_STATES && ws[j].states[m][0]; m++)
                    if (strcmp(ws[j].states[m], ws[i].states[k]) == 0)
                        seen = true;
            if (seen)
                continue;
            uint64_t total = 0;
            for (int j = i; j < opt_threads; j++)
                for (int m = 0; m < MAX_STATES && ws[j].states[m][0]; m++)
                    if (strcmp(ws[j].states[m], ws[i].states[k]) == 0)
                        total += ws[j].state_counts[m];
            printf(" %s=%llu", ws[i].states[k], (unsigned long long)total);
        }
    printf("\n");
    return 0;
}
