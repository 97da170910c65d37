/*-------------------------------------------------------------------------
 *
 * test_recovery.c
 *      hotstockd's recovery against a real daemon: checkpoint + replay
 *      rebuilds the live state exactly; the ring of a killed daemon is
 *      salvaged; a million queue records recover in bounded time.
 *
 *   1. replay: load through libhotstock (put, deduct, refund, restock),
 *      checkpoint half-way, load more, snapshot every counter and order;
 *      stop immediate, restart, compare; SIGKILL, restart, compare.  The
 *      counters must also equal an independent fold of the whole queue
 *      read with hs_queue_open/next.
 *   2. ring salvage: SIGSTOP the daemon so nothing is spilled, deduct and
 *      refund with synchronous off (records only in the ring), SIGKILL,
 *      restart: every acknowledged record is in the queue, every order in
 *      its state, every counter exact.
 *   3. 1,000,000 queue records written with the queue writer, no
 *      checkpoint: time the daemon's recovery (perf: line) and check the
 *      counters and the order index.
 *   4. spill throughput: asynchronous deductions as fast as one client
 *      goes, then one durability wait (perf: line).
 *
 * The daemon is a child of this test (tests/daemon_ctl.h), in a fresh
 * temporary directory per group.  Every wait polls with a bound.
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <limits.h>
#include <signal.h>

#include "daemon_ctl.h"
#include "hotstock.h"
#include "queue_file.h"
#include "checkpoint.h"
#include "filter_file.h"
#include "segment.h"

#define S(str) (str), strlen(str)

#define NSKU 16
#define STOCK 400

/* Everything a client can see of one directory's state. */
typedef struct snapshot {
    int64_t available[NSKU];
    int norders;
    hs_order_status_code *state; /* per order */
    hs_result *found;
} snapshot;

static void
sku_name(int i, char *out)
{
    snprintf(out, 32, "sku-%02d", i);
}

static void
order_name(const char *tag, int j, char *out)
{
    snprintf(out, 64, "%s-%06d", tag, j);
}

static void
snapshot_take(hs_client *c, const char *tag, int norders, snapshot *s)
{
    char name[64];

    s->norders = norders;
    s->state = calloc((size_t)norders, sizeof(*s->state));
    s->found = calloc((size_t)norders, sizeof(*s->found));
    for (int i = 0; i < NSKU; i++) {
        sku_name(i, name);
        s->available[i] = INT64_MIN;
        hs_available(c, S(name), &s->available[i]);
    }
    for (int j = 0; j < norders; j++) {
        order_name(tag, j, name);
        s->found[j] = hs_order_status(c, S(name), &s->state[j], NULL, NULL);
    }
}

static void
snapshot_free(snapshot *s)
{
    free(s->state);
    free(s->found);
}

/* Every counter and every order equal; one CHECK each for counters and
 * orders so that the counts stay meaningful. */
static void
snapshot_compare(const snapshot *a, const snapshot *b, const char *what)
{
    int bad_counters = 0, bad_orders = 0;

    for (int i = 0; i < NSKU; i++)
        if (a->available[i] != b->available[i]) {
            if (bad_counters++ < 5)
                fprintf(stderr, "%s: sku-%02d available %" PRId64 " before, %" PRId64 " after\n",
                        what, i, a->available[i], b->available[i]);
        }
    for (int j = 0; j < a->norders; j++)
        if (a->found[j] != b->found[j] || a->state[j] != b->state[j]) {
            if (bad_orders++ < 5)
                fprintf(stderr, "%s: order %d: %s/%d before, %s/%d after\n", what, j,
                        hs_result_name(a->found[j]), a->state[j], hs_result_name(b->found[j]),
                        b->state[j]);
        }
    CHECK_EQ(bad_counters, 0);
    CHECK_EQ(bad_orders, 0);
}

/* Fold the whole queue of dir independently of the daemon: per SKU, the
 * sum of put/add deltas and refunds minus deductions.  Returns the last
 * LSN read, or 0 on a read error. */
static hs_lsn
fold_queue(const char *dir, int64_t *available, uint64_t *records)
{
    hs_queue_reader *r;
    hs_record rec;
    hs_lsn last = 0;
    int rc;

    for (int i = 0; i < NSKU; i++)
        available[i] = 0;
    *records = 0;
    if (hs_queue_open(dir, 1, &r) != HS_OK) {
        fprintf(stderr, "hs_queue_open %s: %s\n", dir, hs_last_error());
        return 0;
    }
    while ((rc = hs_queue_next(r, HS_LSN_MAX, &rec)) == 1) {
        int i;

        last = rec.lsn;
        (*records)++;
        if (rec.type == HS_REC_NOOP || sscanf(rec.sku, "sku-%d", &i) != 1 || i < 0 || i >= NSKU)
            continue;
        if (rec.type == HS_REC_DEDUCT)
            available[i] -= rec.qty;
        else
            available[i] += rec.qty;
    }
    hs_queue_close(r);
    if (rc < 0) {
        fprintf(stderr, "hs_queue_next %s: %s\n", dir, hs_last_error());
        return 0;
    }
    return last;
}

/* Run `hotstockd args... -D dir`, output to DIR/daemon.out; exit status. */
static int
run_cli(hsd_ctl *d, const char *cmd, const char *opt, const char *val)
{
    char out[600];
    int status;
    pid_t pid;

    snprintf(out, sizeof(out), "%s/daemon.out", d->dir);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(hsd_ctl_binary(), hsd_ctl_binary(), cmd, "-D", d->dir, opt, val, (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The daemon's `status json` value of key (an integer), or -1. */
static long long
status_value(hsd_ctl *d, const char *key)
{
    char cmd[700], line[8192], pat[64];
    long long v = -1;
    FILE *p;
    char *at;

    snprintf(cmd, sizeof(cmd), "%s status -D %s --json 2>/dev/null", hsd_ctl_binary(), d->dir);
    p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    if (fgets(line, sizeof(line), p) != NULL) {
        snprintf(pat, sizeof(pat), "\"%s\": ", key);
        at = strstr(line, pat);
        if (at != NULL)
            v = strtoll(at + strlen(pat), NULL, 10);
    }
    pclose(p);
    return v;
}

/* Does DIR/daemon.out contain text? */
static bool
output_contains(hsd_ctl *d, const char *text)
{
    char path[600];
    long long size;
    char *buf;
    bool found;

    snprintf(path, sizeof(path), "%s/daemon.out", d->dir);
    size = hs_test_file_size(path);
    if (size <= 0)
        return false;
    buf = calloc(1, (size_t)size + 1);
    found =
        buf != NULL && hs_test_pread(path, 0, buf, (size_t)size) == 0 && strstr(buf, text) != NULL;
    free(buf);
    return found;
}

/* Kill what is left of the daemon, remove its segment (a killed daemon
 * leaves it) and its directory. */
static void
cleanup(hsd_ctl *d)
{
    char real[PATH_MAX];

    hsd_ctl_kill(d);
    if (realpath(d->dir, real) != NULL)
        hs_segment_unlink(real);
    if (getenv("HS_KEEP_TMP") == NULL)
        hs_test_rmrf(d->dir);
}

/*
 * Start the daemon and wait until generation `gen` serves (its control
 * socket answers only once it is READY): right after a SIGKILL the dead
 * daemon's segment can look alive to hs_attach() for a moment.  Then a
 * fresh client in *c.  0, or -1.
 */
static int
start_generation(hsd_ctl *d, long long gen, hs_client **c)
{
    double end = hs_test_seconds() + 60;

    if (hsd_ctl_start(d, NULL) != 0)
        return -1;
    while (status_value(d, "generation") < gen) {
        if (hs_test_seconds() > end || hsd_ctl_exited(d)) {
            fprintf(stderr, "generation %lld of %s not ready\n", gen, d->dir);
            hsd_ctl_show_output(d);
            return -1;
        }
        hsd_ctl_nap_ms(20);
    }
    return hs_attach(d->dir, c) == HS_OK ? 0 : -1;
}

static void
small_flags(hsd_ctl *d)
{
    hsd_ctl_flag(d, "--sku-capacity", "256");
    hsd_ctl_flag(d, "--order-capacity", "65536");
    hsd_ctl_flag(d, "--ring-capacity", "8192");
    hsd_ctl_flag(d, "--queue-file-size", "256K"); /* several queue files */
    hsd_ctl_flag(d, "--checkpoint-interval-s", "0");
}

/*
 * Random load: deductions (qty 1..3, sometimes sold out), refunds of
 * earlier orders, retries of done ones (duplicates), restocks.  Every
 * record is waited durable when sync, else only the last one.
 */
static int
drive_load(hs_client *c, const char *tag, int first, int count, uint64_t *seed, bool sync)
{
    char sku[32], order[64];
    hs_lsn lsn, last = 0;
    int errors = 0;

    for (int j = first; j < first + count; j++) {
        uint64_t x = hs_test_rand(seed);
        int qty = 1 + (int)(x % 3);
        hs_result r;

        sku_name((int)((x >> 8) % NSKU), sku);
        order_name(tag, j, order);
        r = hs_deduct(c, S(sku), qty, S(order), 0, &lsn);
        if (r == HS_OK)
            last = lsn;
        else if (r != HS_SOLD_OUT)
            errors++;
        if (r == HS_OK && sync && hs_wait_durable(c, lsn, 10000) != HS_OK)
            errors++;
        if ((x >> 20) % 5 == 0 && j > first) {
            int32_t q;
            order_name(tag, first + (int)((x >> 24) % (uint64_t)(j - first)), order);
            r = hs_refund(c, S(order), &lsn, &q, NULL);
            if (r == HS_OK)
                last = lsn;
            else if (r != HS_ALREADY_REFUNDED && r != HS_NOT_FOUND)
                errors++;
        }
        if ((x >> 32) % 50 == 0) {
            int64_t now;
            r = hs_add_stock(c, S(sku), 5, &now, &lsn);
            if (r == HS_OK)
                last = lsn;
            else
                errors++;
        }
    }
    if (last != 0 && hs_wait_durable(c, last, 10000) != HS_OK)
        errors++;
    return errors;
}

static int
put_skus(hs_client *c, int64_t stock)
{
    char sku[32];
    hs_lsn lsn = 0;
    int errors = 0;

    for (int i = 0; i < NSKU; i++) {
        sku_name(i, sku);
        if (hs_put_sku(c, S(sku), stock, &lsn) != HS_OK)
            errors++;
    }
    if (hs_wait_durable(c, lsn, 10000) != HS_OK)
        errors++;
    return errors;
}

/*-------------------------------------------------------------------------
 * 1. checkpoint + replay == live state
 *-------------------------------------------------------------------------
 */
static void
test_replay(void)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;
    uint64_t seed = 42, records;
    int64_t folded[NSKU];
    snapshot live, after;
    const int norders = getenv("HS_UNDER_VALGRIND") ? 600 : 6000;

    hs_test_tmpdir("recovery-replay", d.dir);
    small_flags(&d);
    if (!CHECK_EQ(hsd_ctl_start(&d, &c), 0))
        return;
    CHECK_EQ(put_skus(c, STOCK), 0);
    CHECK_EQ(drive_load(c, "r", 0, norders / 2, &seed, true), 0);
    CHECK_EQ(run_cli(&d, "checkpoint", NULL, NULL), 0);
    CHECK(status_value(&d, "checkpoint_lsn") > 0);
    /* the rest asynchronously: durable by the last wait only */
    CHECK_EQ(drive_load(c, "r", norders / 2, norders / 2, &seed, false), 0);
    snapshot_take(c, "r", norders, &live);
    hs_detach(c);

    /* the live counters are the fold of the queue */
    CHECK(fold_queue(d.dir, folded, &records) > 0);
    {
        int bad = 0;
        for (int i = 0; i < NSKU; i++)
            bad += folded[i] != live.available[i];
        CHECK_EQ(bad, 0);
    }

    /* immediate stop: no final checkpoint; the restart replays */
    CHECK_EQ(run_cli(&d, "stop", "--mode", "immediate"), 0);
    CHECK_EQ(hsd_ctl_reap(&d, 30), 0);
    if (!CHECK_EQ(start_generation(&d, 2, &c), 0))
        goto out;
    CHECK(status_value(&d, "recovered_records") > 0);
    snapshot_take(c, "r", norders, &after);
    snapshot_compare(&live, &after, "after stop immediate");
    snapshot_free(&after);
    hs_detach(c);

    /* SIGKILL: the same again (the restart checkpointed, so it replays
     * nothing now; still identical) */
    hsd_ctl_kill(&d);
    if (!CHECK_EQ(start_generation(&d, 3, &c), 0))
        goto out;
    snapshot_take(c, "r", norders, &after);
    snapshot_compare(&live, &after, "after SIGKILL");
    snapshot_free(&after);
    hs_detach(c);

    /* smart stop and start: identical, and the generation moved on */
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    if (!CHECK_EQ(start_generation(&d, 4, &c), 0))
        goto out;
    CHECK_EQ(status_value(&d, "generation"), 4);
    snapshot_take(c, "r", norders, &after);
    snapshot_compare(&live, &after, "after stop smart");
    snapshot_free(&after);
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
out:
    snapshot_free(&live);
    cleanup(&d);
}

/*-------------------------------------------------------------------------
 * 2. the ring of a SIGKILLed daemon
 *-------------------------------------------------------------------------
 */
static void
test_ring_salvage(void)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;
    char sku[32], order[64];
    int64_t expect[NSKU], folded[NSKU];
    hs_lsn lsn, max_lsn = 0;
    uint64_t records;
    int acked = 0, refunded = 0, errors = 0;
    const int n = getenv("HS_UNDER_VALGRIND") ? 200 : 1500;
    bool *deducted = calloc(n, sizeof(bool));
    bool *was_refunded = calloc(n, sizeof(bool));
    snapshot after;
    double t0, t_claim = 0;
    char real[4096];
    hs_header *h = NULL;
    pid_t writer = -1;

    hs_test_tmpdir("recovery-salvage", d.dir);
    small_flags(&d);
    if (!CHECK_EQ(hsd_ctl_start(&d, &c), 0))
        goto out;
    CHECK_EQ(put_skus(c, STOCK), 0);
    for (int i = 0; i < NSKU; i++)
        expect[i] = STOCK;

    /* nothing spills from here on: SIGSTOP is delivered asynchronously, so
     * wait until every thread of the daemon has stopped (on a loaded
     * machine the spiller could otherwise spill the whole loop below, and
     * nothing would be left for the salvage) */
    CHECK_EQ(hsd_ctl_pause(&d), 0);
    t0 = hs_test_seconds();
    for (int j = 0; j < n; j++) {
        int i = j % NSKU, qty = 1 + j % 2;
        int32_t q;
        hs_result r;

        sku_name(i, sku);
        order_name("s", j, order);
        r = hs_deduct(c, S(sku), qty, S(order), 0, &lsn);
        if (r == HS_OK) {
            deducted[j] = true;
            expect[i] -= qty;
            acked++;
            if (lsn > max_lsn)
                max_lsn = lsn;
            if (j % 10 == 0) {
                r = hs_refund(c, S(order), &lsn, &q, NULL);
                if (r == HS_OK) {
                    was_refunded[j] = true;
                    expect[i] += q;
                    refunded++;
                } else {
                    errors++;
                }
            }
        } else if (r != HS_SOLD_OUT) {
            errors++;
        }
    }
    /* all of it inside the heartbeat's grace: the daemon still looked alive */
    CHECK(hs_test_seconds() - t0 < HS_HEARTBEAT_DEAD_MS / 1000.0);
    CHECK_EQ(errors, 0);
    CHECK(acked > n * 2 / 3);
    hs_detach(c);

    /* Two reservations more for the next daemon to settle: one claimed by
     * a writer that died filling it (abandoned: a NOOP), one claimed by a
     * live writer that publishes only 1.5 s later (waited for). */
    if (CHECK(realpath(d.dir, real) != NULL) && CHECK_EQ(hs_segment_map(real, &h), HS_OK)) {
        uint32_t mask = h->ring_capacity - 1;
        hs_lsn dead_lsn = atomic_fetch_add(&h->next_lsn, 1);
        hs_lsn live_lsn = atomic_fetch_add(&h->next_lsn, 1);
        hs_ring_slot *ds = &hs_ring(h)[dead_lsn & mask];
        hs_ring_slot *ls = &hs_ring(h)[live_lsn & mask];
        uint64_t seq = atomic_load(&ds->seq);
        int pfd[2];
        char ch = 0;

        CHECK(atomic_compare_exchange_strong(&ds->seq, &seq, hs_seq_claim(dead_lsn, hs_test_gone_pid())));
        memset(&ds->rec, 0x5A, sizeof(ds->rec));
        CHECK_EQ(pipe(pfd), 0);
        writer = fork();
        if (writer == 0) {
            hs_ring_record rec;

            seq = atomic_load(&ls->seq);
            if (!atomic_compare_exchange_strong(&ls->seq, &seq, hs_seq_claim(live_lsn, getpid())))
                _exit(2);
            if (write(pfd[1], "c", 1) != 1)
                _exit(3);
            hsd_ctl_nap_ms(1500);
            memset(&rec, 0, sizeof(rec));
            rec.type = HS_REC_NOOP;
            rec.order_index = UINT32_MAX;
            memcpy(&ls->rec, &rec, sizeof(rec));
            ls->crc = hs_ring_record_crc(&rec);
            atomic_store(&ls->seq, live_lsn);
            _exit(0);
        }
        CHECK(writer > 0 && read(pfd[0], &ch, 1) == 1 && ch == 'c');
        t_claim = hs_test_seconds();
        close(pfd[0]);
        close(pfd[1]);
        hs_segment_unmap(h);
    }

    hsd_ctl_kill(&d);
    if (!CHECK_EQ(start_generation(&d, 2, &c), 0))
        goto out;
    /* the salvage waited for the live claimer, and abandoned the dead one */
    CHECK(hs_test_seconds() - t_claim >= 1.4);
    if (writer > 0) {
        int wst = -1;
        CHECK_EQ(waitpid(writer, &wst, 0), writer);
        CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    }
    CHECK(output_contains(&d, " 1 reservations abandoned now"));
    CHECK(output_contains(&d, "salvaged the old ring"));
    CHECK_EQ(status_value(&d, "salvaged_records"), acked + refunded);

    snapshot_take(c, "s", n, &after);
    {
        int bad_counters = 0, bad_orders = 0;
        for (int i = 0; i < NSKU; i++)
            bad_counters += after.available[i] != expect[i];
        for (int j = 0; j < n; j++) {
            hs_order_status_code want = was_refunded[j] ? HS_ORDER_STATUS_REFUNDED
                                  : deducted[j]   ? HS_ORDER_STATUS_DEDUCTED
                                                  : HS_ORDER_STATUS_UNKNOWN;
            if (deducted[j] && (after.found[j] != HS_OK || after.state[j] != want))
                bad_orders++;
        }
        CHECK_EQ(bad_counters, 0);
        CHECK_EQ(bad_orders, 0);
    }
    snapshot_free(&after);

    /* every published record is in the queue: the fold matches */
    CHECK(fold_queue(d.dir, folded, &records) >= max_lsn);
    {
        int bad = 0;
        for (int i = 0; i < NSKU; i++)
            bad += folded[i] != expect[i];
        CHECK_EQ(bad, 0);
    }
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
out:
    free(deducted);
    free(was_refunded);
    cleanup(&d);
}

/*-------------------------------------------------------------------------
 * 3. a million records
 *-------------------------------------------------------------------------
 */
/* Start on the prepared directory, time the recovery, check what a client
 * sees.  drained: every order was evicted (online, or before the directory
 * had a filter: legacy); else every order is indexed. */
static void
million_round(hsd_ctl *d, uint64_t n, hs_lsn last, const int64_t *expect, bool drained,
              bool legacy, hs_lsn next_lsn, long long indexed)
{
    hs_client *c = NULL;
    double t0, t_ready;
    long long recovery_ms, cpu_ms;
    char sku[32], order[64];
    int wrong = 0;
    hs_order_status_code st;
    int32_t qty;
    hs_lsn lsn;

    t0 = hs_test_seconds();
    if (!CHECK_EQ(start_generation(d, 1, &c), 0))
        return;
    t_ready = hs_test_seconds() - t0;
    recovery_ms = status_value(d, "recovery_ms");
    cpu_ms = status_value(d, "recovery_cpu_ms");
    if (!drained)
        CHECK_EQ(status_value(d, "recovered_records"), (long long)last);
    CHECK_EQ(status_value(d, "order_count"), indexed);
    CHECK_EQ(status_value(d, "evicted_lsn"), drained ? (long long)last : 0);
    CHECK_EQ(status_value(d, "next_lsn"), (long long)next_lsn);
    printf("perf: recovery of %" PRIu64 " queue records, %s: %lld ms in the daemon (%lld ms of "
           "CPU), %.0f ms from exec to ready\n",
           last,
           !drained ? "none drained (every order rebuilt into the index)"
           : legacy ? "all drained, no filter file (counters only, legacy filter)"
                    : "all evicted online (counters and the filter, no order rebuilt)",
           recovery_ms, cpu_ms, t_ready * 1000);

    for (int i = 0; i < NSKU; i++) {
        int64_t a = -1;
        sku_name(i, sku);
        hs_available(c, S(sku), &a);
        wrong += a != expect[i];
    }
    CHECK_EQ(wrong, 0);
    /* a sample of orders: indexed, or evicted */
    wrong = 0;
    for (uint64_t j = 0; j < n; j += n / 1000) {
        hs_result r;
        order_name("m", (int)j, order);
        r = hs_order_status(c, S(order), &st, NULL, &qty);
        if (drained ? r != HS_NOT_FOUND
                    : r != HS_OK || st != HS_ORDER_STATUS_DEDUCTED || qty != 1 + (int32_t)(j % 3))
            wrong++;
    }
    CHECK_EQ(wrong, 0);
    if (drained) {
        CHECK(hs_evicted_lsn(c) == last);
        /* an evicted order is in the filter: refused until checked */
        order_name("m", 7, order);
        sku_name(7, sku);
        CHECK_EQ(hs_deduct_checked(c, S(sku), 1 + 7 % 3, S(order), 0, 0, &lsn),
                 HS_EVICTED_CHANGED);
        /* a new one is not, unless every id may be evicted (legacy) */
        CHECK_EQ(hs_deduct_checked(c, S(sku), 1, S(legacy ? "never-seen-2" : "never-seen"), 0, 0,
                                   &lsn),
                 legacy ? HS_EVICTED_CHANGED : HS_OK);
    } else {
        /* a retry of an indexed order is a duplicate */
        order_name("m", 7, order);
        sku_name(7, sku);
        CHECK_EQ(hs_deduct(c, S(sku), 1 + 7 % 3, S(order), 0, &lsn), HS_DUPLICATE);
    }
    hs_detach(c);
}

/*
 * A million DEDUCT records (a million orders) written with the queue
 * writer.  Round 1: no checkpoint, nothing drained: the counters replay
 * everything and every order is rebuilt into the index.  Round 2: the
 * drain applied everything and the evictor (order_retention 0) evicted
 * every order online; a smart stop made the filter durable: the next start
 * rebuilds no order (each is in the filter and in PostgreSQL's ledger),
 * evicted_lsn says so.  Round 3: the same directory without its filter
 * file, as a directory from before filters: every order id is "maybe
 * evicted" (legacy).
 */
static void
test_million(void)
{
    const uint64_t n = getenv("HS_UNDER_VALGRIND") ? 20000 : 1000000;
    const int64_t stock = 10000000;
    hsd_ctl d = {0};
    hs_qf_writer *w;
    hs_record rec;
    hs_shadow shadow;
    hs_lsn lsn = 0;
    int64_t expect[NSKU];
    int bad = 0;

    hs_test_tmpdir("recovery-million", d.dir);
    w = hs_qf_writer_open(d.dir, 0, 0);
    if (!CHECK(w != NULL))
        return;
    memset(&rec, 0, sizeof(rec));
    for (int i = 0; i < NSKU; i++) {
        rec.lsn = ++lsn;
        rec.type = HS_REC_PUT_SKU;
        sku_name(i, rec.sku);
        rec.sku_len = (uint8_t)strlen(rec.sku);
        rec.qty = stock;
        rec.timestamp_us = hs_now_unix_us();
        CHECK(hs_qf_writer_append(w, &rec) == 0);
        expect[i] = stock;
    }
    for (uint64_t j = 0; j < n; j++) {
        int i = (int)(j % NSKU);
        rec.lsn = ++lsn;
        rec.type = HS_REC_DEDUCT;
        sku_name(i, rec.sku);
        rec.sku_len = (uint8_t)strlen(rec.sku);
        order_name("m", (int)j, rec.order_id);
        rec.order_len = (uint8_t)strlen(rec.order_id);
        rec.qty = 1 + (int64_t)(j % 3);
        expect[i] -= rec.qty;
        if (hs_qf_writer_append(w, &rec) != 0) {
            bad++;
            break;
        }
    }
    CHECK_EQ(bad, 0);
    CHECK(hs_qf_writer_sync(w) == 0);
    hs_qf_writer_close(w);

    hsd_ctl_flag(&d, "--sku-capacity", "1024");
    hsd_ctl_flag(&d, "--order-capacity", n > 100000 ? "2097152" : "65536");
    million_round(&d, n, lsn, expect, false, false, lsn + 1, (long long)n);
    CHECK_EQ(hsd_ctl_stop(&d), 0);

    /* round 2: everything drained, evicted online */
    hsd_ctl_flag(&d, "--order-retention", "0");
    {
        hs_client *c = NULL;
        double t0 = hs_test_seconds();

        if (CHECK_EQ(hsd_ctl_start(&d, &c), 0)) {
            CHECK_EQ(hs_publish_applied(c, lsn), HS_OK);
            while (status_value(&d, "order_count") > 0 && hs_test_seconds() - t0 < 60)
                usleep(50000);
            CHECK_EQ(status_value(&d, "order_count"), 0);
            CHECK_EQ(status_value(&d, "evictions"), (long long)n);
            printf("perf: evicted %" PRIu64 " drained orders online in %.0f ms\n", n,
                   (hs_test_seconds() - t0) * 1000);
            hs_detach(c);
        }
        CHECK_EQ(hsd_ctl_stop(&d), 0);
    }
    million_round(&d, n, lsn, expect, true, false, lsn + 1, 0);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    /* that round deducted one unit of sku 7 for "never-seen" */
    expect[7] -= 1;

    /* round 3: no filter file, everything applied (the checkpoint says) */
    {
        char path[PATH_MAX + 32];

        snprintf(path, sizeof(path), "%s/%s", d.dir, HS_FILTER_FILE);
        CHECK_EQ(unlink(path), 0);
    }
    (void)shadow;
    million_round(&d, n, lsn, expect, true, true, lsn + 2, 1);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
    cleanup(&d);
}

/*-------------------------------------------------------------------------
 * 4. spill throughput
 *-------------------------------------------------------------------------
 */
static void
test_spill_throughput(void)
{
    const int n = getenv("HS_UNDER_VALGRIND") ? 5000 : 200000;
    const int backlog = getenv("HS_UNDER_VALGRIND") ? 2000 : 60000;
    hsd_ctl d = {0};
    hs_client *c = NULL;
    char sku[32], order[64];
    hs_lsn lsn = 0, last = 0;
    int errors = 0, full = 0;
    double t0, secs;

    hs_test_tmpdir("recovery-spill", d.dir);
    hsd_ctl_flag(&d, "--sku-capacity", "256");
    hsd_ctl_flag(&d, "--order-capacity", "524288");
    if (!CHECK_EQ(hsd_ctl_start(&d, &c), 0))
        goto out;
    CHECK_EQ(put_skus(c, 100000000), 0);

    /* end to end: one client deducting as fast as it can, one wait */
    t0 = hs_test_seconds();
    for (int j = 0; j < n; j++) {
        hs_result r;

        sku_name(j % NSKU, sku);
        order_name("t", j, order);
        while ((r = hs_deduct(c, S(sku), 1, S(order), 0, &lsn)) == HS_QUEUE_FULL)
            full++;
        if (r == HS_OK)
            last = lsn;
        else
            errors++;
    }
    CHECK_EQ(errors, 0);
    CHECK_EQ(hs_wait_durable(c, last, 30000), HS_OK);
    secs = hs_test_seconds() - t0;
    printf("perf: spill: %d asynchronous deductions from one client made durable in %.0f ms "
           "(%.0f records/s end to end; ring full %d times)\n",
           n, secs * 1000, n / secs, full);

    /* the spiller alone: a backlog published while it is stopped */
    CHECK_EQ(hsd_ctl_pause(&d), 0);
    for (int j = 0; j < backlog; j++) {
        sku_name(j % NSKU, sku);
        order_name("b", j, order);
        if (hs_deduct(c, S(sku), 1, S(order), 0, &lsn) == HS_OK)
            last = lsn;
        else
            errors++;
    }
    t0 = hs_test_seconds();
    hsd_ctl_resume(&d);
    CHECK_EQ(errors, 0);
    CHECK_EQ(hs_wait_durable(c, last, 30000), HS_OK);
    secs = hs_test_seconds() - t0;
    printf("perf: spill: a backlog of %d ring records written and fdatasync'ed in %.0f ms "
           "(%.0f records/s for the spiller alone)\n",
           backlog, secs * 1000, backlog / secs);
    hs_detach(c);
    CHECK_EQ(hsd_ctl_stop(&d), 0);
out:
    cleanup(&d);
}

int
main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";

    signal(SIGPIPE, SIG_IGN);
    if (!*only || strcmp(only, "replay") == 0)
        test_replay();
    if (!*only || strcmp(only, "salvage") == 0)
        test_ring_salvage();
    if (!*only || strcmp(only, "million") == 0)
        test_million();
    if (!*only || strcmp(only, "spill") == 0)
        test_spill_throughput();
    return hs_test_done();
}
