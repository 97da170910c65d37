/*-------------------------------------------------------------------------
 *
 * evict_stress.c
 *      Online eviction of the order index under load: many processes
 *      deduct, retry, refund (at once, two-phase, database-first) and read
 *      while the evictor empties drained entries all the time, against a
 *      real hotstockd with a small order index; then exact accounting and
 *      an audit of the index itself.
 *
 *   evict_stress [--dir DIR] [--procs P] [--seconds S] [--capacity N]
 *                [--stock S] [--restock U] [--filter-size BYTES]
 *                [--pause MS] [--kill-workers MS] [--kill-daemon K]
 *                [--seed N] [--keep]
 *
 * The daemon runs with --order-capacity N (4096) and --order-retention 0,
 * and a small evicted-order filter (128K: once it holds ~100k ids a good
 * share of new ids are false positives, so the "ledger checked up to E"
 * path runs too).  The test plays PostgreSQL's part:
 *
 *  - a drain thread (in the parent) reads the queue files up to the
 *    durable LSN, applies every record to a ledger in shared memory (per
 *    order id: its DEDUCT's LSN, how many DEDUCT and REFUND records, the
 *    database-first refund mark), and only then publishes the applied LSN
 *    with hs_publish_applied(); with retention 0 the evictor then evicts
 *    every drained final entry within a pass.  Between batches it sweeps
 *    ledger marks whose hs_refund_evicted() never ran (a killed worker),
 *    like settle.c's hotstock_apply_ledger_refunds();
 *  - P worker processes (single-threaded, like backends: refund claims
 *    belong to a pid) loop over
 *      30%  deduct a new order id ("o<n>", n from a shared counter)
 *      10%  deduct one of the 8 newest ids (inserts of one id race)
 *      10%  retry an id the drain just applied (the evictor's next ones)
 *      15%  retry an old id: half of them among the last N/2, half
 *           uniform over every id used so far (most evicted long ago)
 *      20%  refund a random id: hs_refund, or hs_refund_claim followed by
 *           hs_refund_commit (3/4) or hs_refund_release (1/4); an id the
 *           index does not know is refunded database-first exactly as
 *           hotstock.refund() does (ledger row lock, mark, then
 *           hs_refund_evicted)
 *      15%  hs_order_status of a random id
 *    A deduct is hotstock.deduct()'s loop: hs_deduct_checked with
 *    evicted_checked 0; on HS_EVICTED_CHANGED read hs_evicted_lsn(), look
 *    in the ledger (a drained, unrefunded row answers "true" and deducts
 *    nothing), else call again with that LSN.  New ids are only handed out
 *    while the index is at most 5/8 full, so HS_TABLE_FULL can only come
 *    from entries that are never evicted: the run fails when the index
 *    stays fuller than that for 10 s.  The parent restocks every 100 ms,
 *    less than is sold: the SKUs sell out and come back, again and again;
 *  - a pauser thread SIGSTOPs a random worker for 1..pause ms (20), over
 *    and over: a process stopped anywhere stretches every window of the
 *    protocol (a look-up and the load of the slot it found, a claim and
 *    the filter check, a held stripe lock) to milliseconds.
 *
 * Checked while it runs (each breach is a violation, printed):
 *  - an order id gets HS_OK from a deduct at most once, ever, and the
 *    drain sees at most one DEDUCT record per id (a second one is a double
 *    sale) and at most one REFUND record, never without a DEDUCT;
 *  - a retry of an id that had HS_OK before never answers HS_SOLD_OUT or
 *    HS_OK, and hs_refund_evicted never says the index holds an order
 *    marked refunded in the ledger as deducted (HS_DUPLICATE);
 *  - a refund answers "refunded now" at most once per id, whatever path;
 *  - no call answers HS_TABLE_FULL;
 *  - hs_order_status reports deducted/refunded/pending only for ids some
 *    worker tried to deduct (refund), with their sku and qty.
 * At the end, everything drained and evicted: per SKU, stock put - available
 * == units of the DEDUCT records - units of the REFUND records (exact
 * without kills; at least that with kills, which may hold units back); the
 * OK answers equal the records (without kills); the segment audit
 * (audit_segment: no id twice, `passed` exact, order_count, every deducted
 * id in the index or the filter); every id's retry answers what its ledger
 * says.  The same after a clean restart (the filter from
 * DIR/evicted.filter), where the counters are exact again.
 *
 * --kill-workers MS  SIGKILL a random worker every MS ms and start a new
 *                    one: claims, stripe locks, PENDING slots and ledger
 *                    row locks of dead processes are left behind.
 * --kill-daemon K    SIGKILL hotstockd K times during the load and start
 *                    it again (workers retry on HS_DAEMON_DOWN).  Every
 *                    restart must fit the orders it indexes into N slots:
 *                    before 4b26147 (the filter durable before an order
 *                    leaves) it re-indexed every order evicted within the
 *                    last second and refused to start.
 *
 * Exit status 0 when every check passed; the last line is exactly
 * "N passed, N failed".
 *
 *-------------------------------------------------------------------------
 */
#include "test.h"

#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "daemon_ctl.h"
#include "hotstock.h"
#include "segment.h"

#define MAX_PROCS 32
#define MAX_SKUS 4
#define OP_DEADLINE_S 30.0  /* one operation, retries included */
#define FULL_STALL_S 10.0   /* the index may stay 5/8 full this long */
#define SWEEP_GRACE_MS 3000 /* a ledger mark older than this is swept */
#define MAX_PRINTED 25      /* violations printed (all are counted) */

typedef struct options {
    char dir[512];
    bool own_dir, keep;
    int procs, seconds, capacity, kill_workers_ms, kill_daemon, pause_ms;
    int64_t stock, restock;
    const char *filter_size;
    uint64_t seed;
    uint32_t max_ids;
} options;

static options opt = {.procs = 6,
                      .seconds = 20,
                      .capacity = 4096,
                      .stock = 5000,
                      .restock = 300,
                      .filter_size = "128K",
                      .seed = 1,
                      .pause_ms = 20,
                      .max_ids = 1u << 21};

static const char *const skus[MAX_SKUS] = {"evict-a", "evict-b", "evict-c", "evict-d"};
#define NSKUS 2

/*
 * One order id, shared by every process (MAP_SHARED before fork).  The
 * answer counters are the workers'; the ledger fields are the drain
 * thread's (stored before it publishes the applied LSN, so a worker that
 * read an evicted LSN after the eviction sees them: seq_cst everywhere).
 */
typedef struct id_state {
    _Atomic uint32_t deduct_begun; /* deduct calls started */
    _Atomic uint32_t deduct_ok;    /* HS_OK answers */
    _Atomic uint32_t refund_begun; /* refund calls started */
    _Atomic uint32_t refund_ok;    /* refunds that answered "refunded now" */
    _Atomic uint32_t row_lock;     /* the ledger row lock: 0 or the holder's pid */
    _Atomic uint32_t led_deducts;  /* DEDUCT records drained */
    _Atomic uint32_t led_refunds;  /* REFUND records drained */
    _Atomic uint32_t led_marked;   /* database-first refund committed */
    _Atomic uint64_t led_deduct_lsn;
    _Atomic uint64_t marked_ms; /* when it was marked (CLOCK_MONOTONIC) */
} id_state;

typedef struct shared_state {
    _Atomic bool stop;
    _Atomic uint32_t next_id; /* ids handed out: 0 .. next_id - 1 */
    _Atomic uint64_t violations;
    _Atomic uint64_t ops, deduct_new, deduct_retry, refunds, statuses;
    _Atomic uint64_t ok_new, sold_out, duplicate, evicted_changed, ledger_true, ledger_refunded;
    _Atomic uint64_t second_call_ok; /* deducted after a ledger check (filter hit) */
    _Atomic uint64_t refund_now, refund_2pc, refund_released, refund_evicted, refund_swept;
    _Atomic uint64_t busy, full_waits, daemon_down, table_full;
    _Atomic uint64_t drained_records, drain_batches;
    _Atomic uint64_t incarnation;
    _Atomic uint64_t pauses;
    /* ids whose DEDUCT the drain applied last: the evictor's next ones */
    _Atomic uint64_t drained_seq;
    _Atomic uint32_t drained_ring[256];
    id_state ids[];
} shared_state;

static shared_state *sh;

/* The parent's: worker pids (the pauser thread reads them). */
static _Atomic pid_t workers[MAX_PROCS];

/*-------------------------------------------------------------------------
 * Small helpers
 *-------------------------------------------------------------------------
 */

static double
now_s(void)
{
    return hs_test_seconds();
}

static uint64_t
now_ms(void)
{
    return (uint64_t)(hs_test_seconds() * 1000.0);
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
violation(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int len;
    uint64_t n = atomic_fetch_add(&sh->violations, 1);

    if (n >= MAX_PRINTED)
        return;
    len = snprintf(line, sizeof(line), "VIOLATION (pid %d): ", (int)getpid());
    va_start(ap, fmt);
    len += vsnprintf(line + len, sizeof(line) - (size_t)len - 1, fmt, ap);
    va_end(ap);
    if (len > (int)sizeof(line) - 2)
        len = (int)sizeof(line) - 2;
    line[len++] = '\n';
    /* one write: lines of several processes do not interleave */
    if (write(2, line, (size_t)len) < 0)
        return;
}

/* An order id's name, sku and qty: fixed functions of its number. */
static size_t
id_name(uint32_t n, char *out)
{
    return (size_t)snprintf(out, 24, "o%u", n);
}

static const char *
id_sku(uint32_t n)
{
    return skus[n % NSKUS];
}

static int
id_sku_index(uint32_t n)
{
    return (int)(n % NSKUS);
}

static int32_t
id_qty(uint32_t n)
{
    return 1 + (int32_t)((n / NSKUS) % 3);
}

/* "o<n>" -> n, or UINT32_MAX. */
static uint32_t
id_parse(const char *s)
{
    char *end;
    unsigned long v;

    if (s[0] != 'o')
        return UINT32_MAX;
    v = strtoul(s + 1, &end, 10);
    if (*end != '\0' || v >= opt.max_ids)
        return UINT32_MAX;
    return (uint32_t)v;
}

static bool
retryable(hs_result r)
{
    return r == HS_QUEUE_FULL || r == HS_DAEMON_DOWN;
}

static void
count_retry(hs_result r)
{
    if (r == HS_QUEUE_FULL)
        atomic_fetch_add_explicit(&sh->busy, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&sh->daemon_down, 1, memory_order_relaxed);
    hsd_ctl_nap_ms(r == HS_QUEUE_FULL ? 1 : 20);
}

/* The ledger row lock of id (PostgreSQL's row lock); a dead holder's
 * transaction is gone, and its lock with it. */
static void
row_lock(id_state *s)
{
    uint32_t me = (uint32_t)getpid();

    for (;;) {
        uint32_t holder = 0;

        if (atomic_compare_exchange_weak(&s->row_lock, &holder, me))
            return;
        if (holder != 0 && kill((pid_t)holder, 0) == -1 && errno == ESRCH &&
            atomic_compare_exchange_strong(&s->row_lock, &holder, me))
            return;
        sched_yield();
    }
}

static void
row_unlock(id_state *s)
{
    atomic_store(&s->row_lock, 0);
}

/*-------------------------------------------------------------------------
 * The SQL layer's calls, over the shared ledger
 *-------------------------------------------------------------------------
 */

typedef enum answer {
    ANS_TRUE_NEW,   /* deducted now */
    ANS_TRUE_RETRY, /* a retry of a standing deduction (index or ledger) */
    ANS_FALSE,      /* sold out, or nothing to refund */
    ANS_ALREADY_REFUNDED,
    ANS_REFUNDED, /* refunded now */
    ANS_ERROR     /* unexpected, or out of time */
} answer;

/*
 * hotstock.deduct(): see api.c hotstock_deduct() and ledger.c
 * hotstock_deduct_is_drained_retry().
 */
static answer
sql_deduct(hs_client *c, uint32_t n, bool is_new)
{
    id_state *s = &sh->ids[n];
    char id[24];
    size_t len = id_name(n, id);
    const char *sku = id_sku(n);
    int32_t qty = id_qty(n);
    bool known = atomic_load(&s->deduct_ok) > 0; /* answered HS_OK before this call */
    double deadline = now_s() + OP_DEADLINE_S;
    hs_lsn checked = 0, lsn;
    int rounds = 0;

    atomic_fetch_add(&s->deduct_begun, 1);
    for (;;) {
        hs_result r = hs_deduct_checked(c, sku, strlen(sku), qty, id, len, 0, checked, &lsn);

        switch (r) {
        case HS_OK:
            if (atomic_fetch_add(&s->deduct_ok, 1) != 0)
                violation("order %s: a second HS_OK from a deduct (double sale)", id);
            if (known)
                violation("order %s: HS_OK for a retry of a done deduction", id);
            if (checked != 0)
                atomic_fetch_add_explicit(&sh->second_call_ok, 1, memory_order_relaxed);
            if (is_new)
                atomic_fetch_add_explicit(&sh->ok_new, 1, memory_order_relaxed);
            return ANS_TRUE_NEW;
        case HS_DUPLICATE:
            atomic_fetch_add_explicit(&sh->duplicate, 1, memory_order_relaxed);
            return ANS_TRUE_RETRY;
        case HS_SOLD_OUT:
            if (known)
                violation("order %s: HS_SOLD_OUT for a retry of a done deduction", id);
            atomic_fetch_add_explicit(&sh->sold_out, 1, memory_order_relaxed);
            return ANS_FALSE;
        case HS_ALREADY_REFUNDED:
            if (atomic_load(&s->refund_begun) == 0)
                violation("order %s: HS_ALREADY_REFUNDED, but nobody refunded it", id);
            return ANS_ALREADY_REFUNDED;
        case HS_EVICTED_CHANGED: {
            uint32_t deducts, refunds, marked;

            atomic_fetch_add_explicit(&sh->evicted_changed, 1, memory_order_relaxed);
            /* The evicted LSN BEFORE the ledger (api.c). */
            checked = hs_evicted_lsn(c);
            deducts = atomic_load(&s->led_deducts);
            refunds = atomic_load(&s->led_refunds);
            marked = atomic_load(&s->led_marked);
            if (deducts > 0) {
                if (refunds > 0 || marked) {
                    atomic_fetch_add_explicit(&sh->ledger_refunded, 1, memory_order_relaxed);
                    return ANS_ALREADY_REFUNDED;
                }
                atomic_fetch_add_explicit(&sh->ledger_true, 1, memory_order_relaxed);
                return ANS_TRUE_RETRY;
            }
            if (++rounds > 1000) {
                violation("order %s: HS_EVICTED_CHANGED 1000 times in a row", id);
                return ANS_ERROR;
            }
            continue;
        }
        case HS_TABLE_FULL:
            atomic_fetch_add(&sh->table_full, 1);
            violation("order %s: HS_TABLE_FULL (%s)", id, hs_last_error());
            return ANS_ERROR;
        default:
            if (retryable(r) && now_s() < deadline) {
                count_retry(r);
                continue;
            }
            violation("order %s: deduct answered %s (%s)", id, hs_result_name(r), hs_last_error());
            return ANS_ERROR;
        }
    }
}

static void
refunded_now(id_state *s, const char *id, const char *how)
{
    if (atomic_fetch_add(&s->refund_ok, 1) != 0)
        violation("order %s: refunded a second time (%s)", id, how);
    if (atomic_load(&s->deduct_begun) == 0)
        violation("order %s: refunded (%s) but never deducted", id, how);
}

/*
 * Database-first refund of an order the index does not know, as
 * hotstock.refund() and its commit callback: mark the ledger row (lsn <=
 * evicted, not refunded) under the row lock, "commit", then
 * hs_refund_evicted.  ANS_FALSE when there is nothing to mark,
 * ANS_ERROR + *again when a row after the evicted LSN says "look again".
 */
static answer
refund_database_first(hs_client *c, uint32_t n, bool *again)
{
    id_state *s = &sh->ids[n];
    char id[24];
    size_t len = id_name(n, id);
    const char *sku = id_sku(n);
    hs_lsn evicted = hs_evicted_lsn(c), lsn;
    bool mark = false, unrefunded;
    double deadline = now_s() + OP_DEADLINE_S;
    hs_result r;

    *again = false;
    if (evicted == 0)
        return ANS_FALSE;
    row_lock(s);
    unrefunded = atomic_load(&s->led_deducts) > 0 && atomic_load(&s->led_refunds) == 0 &&
                 !atomic_load(&s->led_marked);
    if (unrefunded && atomic_load(&s->led_deduct_lsn) <= evicted) {
        atomic_store(&s->marked_ms, now_ms());
        atomic_store(&s->led_marked, 1); /* committed */
        mark = true;
    }
    row_unlock(s);
    if (!mark) {
        *again = unrefunded;
        return ANS_FALSE;
    }
    for (;;) {
        r = hs_refund_evicted(c, sku, strlen(sku), id_qty(n), id, len, evicted, &lsn);
        if (retryable(r) && now_s() < deadline) {
            count_retry(r);
            continue;
        }
        break;
    }
    switch (r) {
    case HS_OK:
        atomic_fetch_add_explicit(&sh->refund_evicted, 1, memory_order_relaxed);
        refunded_now(s, id, "hs_refund_evicted");
        return ANS_REFUNDED;
    case HS_ALREADY_REFUNDED:
        return ANS_REFUNDED; /* the sweep came first: refunded by this mark */
    case HS_DUPLICATE:
        violation("order %s: marked refunded in the ledger (lsn <= evicted %llu) but the index "
                  "holds it as deducted",
                  id, (unsigned long long)evicted);
        return ANS_ERROR;
    default:
        /* left to the sweep, like a commit callback that failed */
        return ANS_REFUNDED;
    }
}

/* hotstock.refund(), and for a quarter of the two-phase ones a rollback. */
static answer
sql_refund(hs_client *c, uint32_t n, uint64_t *rng)
{
    id_state *s = &sh->ids[n];
    char id[24];
    size_t len = id_name(n, id);
    bool two_phase = hs_test_rand(rng) % 2 == 0;
    bool rollback = two_phase && hs_test_rand(rng) % 4 == 0;
    double deadline = now_s() + OP_DEADLINE_S;
    hs_result r;

    atomic_fetch_add(&s->refund_begun, 1);
    for (int attempt = 1;; attempt++) {
        hs_lsn lsn;
        int32_t qty;
        char sku[HS_SKU_MAX + 1];

        if (two_phase) {
            r = hs_refund_claim(c, id, len);
            if (r == HS_OK) {
                if (rollback) {
                    atomic_fetch_add_explicit(&sh->refund_released, 1, memory_order_relaxed);
                    r = hs_refund_release(c, id, len);
                    if (r != HS_OK)
                        violation("order %s: releasing our claim answered %s", id,
                                  hs_result_name(r));
                    return ANS_FALSE;
                }
                for (;;) {
                    r = hs_refund_commit(c, id, len, &lsn, &qty, sku);
                    if (!retryable(r) || now_s() >= deadline)
                        break;
                    count_retry(r);
                }
                if (r != HS_OK) {
                    violation("order %s: committing our claim answered %s (%s)", id,
                              hs_result_name(r), hs_last_error());
                    return ANS_ERROR;
                }
                atomic_fetch_add_explicit(&sh->refund_2pc, 1, memory_order_relaxed);
            }
        } else {
            r = hs_refund(c, id, len, &lsn, &qty, sku);
            if (r == HS_OK)
                atomic_fetch_add_explicit(&sh->refund_now, 1, memory_order_relaxed);
        }
        switch (r) {
        case HS_OK:
            if (qty != id_qty(n) || strcmp(sku, id_sku(n)) != 0)
                violation("order %s: refunded %d of %s, deducted %d of %s", id, (int)qty, sku,
                          (int)id_qty(n), id_sku(n));
            refunded_now(s, id, two_phase ? "claim+commit" : "hs_refund");
            return ANS_REFUNDED;
        case HS_ALREADY_REFUNDED:
            return ANS_ALREADY_REFUNDED;
        case HS_NOT_FOUND: {
            bool again;
            answer a = refund_database_first(c, n, &again);

            if (!again)
                return a;
            if (attempt >= 100) {
                violation("order %s: an unrefunded ledger row the index does not know", id);
                return ANS_ERROR;
            }
            sched_yield();
            continue;
        }
        case HS_TABLE_FULL:
            atomic_fetch_add(&sh->table_full, 1);
            violation("order %s: refund answered HS_TABLE_FULL", id);
            return ANS_ERROR;
        default:
            if (retryable(r) && now_s() < deadline) {
                count_retry(r);
                continue;
            }
            violation("order %s: refund answered %s (%s)", id, hs_result_name(r), hs_last_error());
            return ANS_ERROR;
        }
    }
}

/* hs_order_status of an id: only what some worker tried to do to it. */
static void
check_status(hs_client *c, uint32_t n)
{
    id_state *s = &sh->ids[n];
    char id[24], sku[HS_SKU_MAX + 1];
    size_t len = id_name(n, id);
    hs_order_status_code st = HS_ORDER_STATUS_UNKNOWN;
    int32_t qty = 0;
    hs_result r = hs_order_status(c, id, len, &st, sku, &qty);

    if (r == HS_NOT_FOUND || retryable(r))
        return;
    if (r != HS_OK) {
        violation("order %s: status answered %s", id, hs_result_name(r));
        return;
    }
    if (st == HS_ORDER_STATUS_DEDUCTED || st == HS_ORDER_STATUS_REFUNDED) {
        if (atomic_load(&s->deduct_begun) == 0)
            violation("order %s: status %d, but nobody ever deducted it", id, (int)st);
        if (qty != id_qty(n) || strcmp(sku, id_sku(n)) != 0)
            violation("order %s: status says %d of %s, deducted %d of %s", id, (int)qty, sku,
                      (int)id_qty(n), id_sku(n));
    }
    if (st == HS_ORDER_STATUS_REFUNDED && atomic_load(&s->refund_begun) == 0)
        violation("order %s: status refunded, but nobody refunded it", id);
    if (st == HS_ORDER_STATUS_PENDING && atomic_load(&s->deduct_begun) == 0 &&
        atomic_load(&s->refund_begun) == 0)
        violation("order %s: status pending, but nobody touched it", id);
}

#include "evict_roles.h"

int
main(int argc, char **argv)
{
    hsd_ctl d = {0};
    hs_client *c = NULL;
    drain dr = {0};
    pthread_t drain_thread;
    pthread_t pauser_thread;
    char cap_flag[32];
    size_t shared_size;
    double t0, load_s;
    uint64_t killed = 0, evictions = 0, last_kill_ms = 0, last_restock_ms = 0;
    int64_t added[MAX_SKUS] = {0};
    int daemon_kills = 0;
    bool daemon_lost = false; /* it did not start again after a kill */
    hs_status st;

    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (opt.dir[0] == '\0') {
        hs_test_tmpdir("evict", opt.dir);
        opt.own_dir = true;
    } else if (mkdir(opt.dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "mkdir %s: %s\n", opt.dir, strerror(errno));
        return 2;
    }
    shared_size = sizeof(shared_state) + (size_t)opt.max_ids * sizeof(id_state);
    sh = mmap(NULL, shared_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 2;

    snprintf(d.dir, sizeof(d.dir), "%s", opt.dir);
    snprintf(cap_flag, sizeof(cap_flag), "%d", opt.capacity);
    hsd_ctl_flag(&d, "--order-capacity", cap_flag);
    hsd_ctl_flag(&d, "--order-retention", "0");
    hsd_ctl_flag(&d, "--evicted-filter-size", opt.filter_size);
    printf("evict_stress: %d procs, %d s, order capacity %d, filter %s, stock %lld per sku%s%s, "
           "dir %s\n",
           opt.procs, opt.seconds, opt.capacity, opt.filter_size, (long long)opt.stock,
           opt.kill_workers_ms ? ", killing workers" : "",
           opt.kill_daemon ? ", killing the daemon" : "", opt.dir);
    if (!CHECK_EQ(hsd_ctl_start(&d, &c), 0)) {
        hsd_ctl_kill(&d);
        return hs_test_done();
    }
    for (int si = 0; si < NSKUS; si++)
        CHECK_EQ(hs_put_sku(c, skus[si], strlen(skus[si]), opt.stock, NULL), HS_OK);

    dr.c = c;
    pthread_create(&drain_thread, NULL, drain_main, &dr);
    t0 = now_s();
    for (int p = 0; p < opt.procs; p++)
        workers[p] = spawn_worker(p);
    if (opt.pause_ms > 0)
        pthread_create(&pauser_thread, NULL, pauser_main, NULL);

    /* The load: kills on schedule, respawns, a progress line now and then. */
    while (now_s() - t0 < opt.seconds && !atomic_load(&sh->stop)) {
        uint64_t now = now_ms();
        double el = now_s() - t0;

        if (opt.restock > 0 && now - last_restock_ms >= 100) {
            for (int si = 0; si < NSKUS; si++) {
                hs_result r = hs_add_stock(c, skus[si], strlen(skus[si]), opt.restock, NULL, NULL);
                if (r == HS_OK)
                    added[si] += opt.restock;
                else if (!retryable(r))
                    CHECK_EQ(r, HS_OK);
            }
            last_restock_ms = now;
        }
        if (opt.kill_workers_ms > 0 && now - last_kill_ms >= (uint64_t)opt.kill_workers_ms) {
            int p = (int)(now % (uint64_t)opt.procs);
            kill(workers[p], SIGKILL);
            waitpid(workers[p], NULL, 0);
            workers[p] = spawn_worker(p);
            killed++;
            last_kill_ms = now;
        }
        if (daemon_kills < opt.kill_daemon &&
            el >= (double)opt.seconds * (daemon_kills + 1) / (opt.kill_daemon + 1)) {
            hsd_ctl_kill(&d);
            daemon_kills++;
            printf("  killed the daemon at %.1f s\n", el);
            if (!CHECK_EQ(hsd_ctl_start(&d, NULL), 0)) {
                daemon_lost = true;
                break;
            }
        }
        for (int p = 0; p < opt.procs; p++) {
            int status;
            if (waitpid(workers[p], &status, WNOHANG) == workers[p]) {
                if (!atomic_load(&sh->stop))
                    fprintf(stderr, "worker %d exited early (status %d)\n", p, status);
                workers[p] = spawn_worker(p);
            }
        }
        hsd_ctl_nap_ms(5);
    }
    atomic_store(&sh->stop, true);
    if (opt.pause_ms > 0) {
        atomic_store(&pauser_exit, true);
        pthread_join(pauser_thread, NULL);
    }
    for (int p = 0; p < opt.procs; p++) {
        int status = 0;
        double end = now_s() + 60;
        pid_t got;

        while ((got = waitpid(workers[p], &status, WNOHANG)) == 0 && now_s() < end)
            hsd_ctl_nap_ms(5);
        if (got != workers[p]) {
            fprintf(stderr, "worker %d did not stop: killing it\n", p);
            kill(workers[p], SIGKILL);
            waitpid(workers[p], &status, 0);
        }
        CHECK(WIFEXITED(status) || WIFSIGNALED(status));
    }
    load_s = now_s() - t0;
    if (daemon_lost) {
        hsd_ctl_show_output(&d);
        atomic_store(&dr.exit, true);
        pthread_join(drain_thread, NULL);
        printf("  hotstockd did not start again after kill %d (%.1f s into the load); "
               "%llu violations\n",
               daemon_kills, load_s, (unsigned long long)atomic_load(&sh->violations));
        hsd_ctl_kill(&d);
        printf("  kept %s\n", opt.dir);
        return hs_test_done();
    }

    /* Drain everything, sweep every mark, drain the sweep's records. */
    CHECK(drain_catch_up(&dr, 30));
    atomic_store(&dr.exit, true);
    pthread_join(drain_thread, NULL);
    drain_sweep(&dr, true);
    atomic_store(&dr.exit, false);
    pthread_create(&drain_thread, NULL, drain_main, &dr);
    CHECK(drain_catch_up(&dr, 30));

    if (CHECK_EQ(hs_get_status(c, &st), HS_OK))
        evictions = st.evictions;
    {
        uint64_t ops = atomic_load(&sh->ops);
        printf("  load: %llu ops in %.1f s (%.0f ops/s), %u ids for %d slots, %llu evictions "
               "(this segment), %llu workers killed, %llu pauses, %d daemon kills\n",
               (unsigned long long)ops, load_s, (double)ops / load_s, atomic_load(&sh->next_id),
               opt.capacity, (unsigned long long)evictions, (unsigned long long)killed,
               (unsigned long long)atomic_load(&sh->pauses), daemon_kills);
        printf("  deducts: %llu new (%llu ok, %llu after a ledger check), %llu retries; "
               "%llu duplicate, %llu sold out, %llu evicted_changed -> ledger %llu true, "
               "%llu refunded\n",
               (unsigned long long)atomic_load(&sh->deduct_new),
               (unsigned long long)atomic_load(&sh->ok_new),
               (unsigned long long)atomic_load(&sh->second_call_ok),
               (unsigned long long)atomic_load(&sh->deduct_retry),
               (unsigned long long)atomic_load(&sh->duplicate),
               (unsigned long long)atomic_load(&sh->sold_out),
               (unsigned long long)atomic_load(&sh->evicted_changed),
               (unsigned long long)atomic_load(&sh->ledger_true),
               (unsigned long long)atomic_load(&sh->ledger_refunded));
        printf("  refunds: %llu tried; %llu hs_refund, %llu claim+commit, %llu released, "
               "%llu database-first, %llu swept; %llu statuses; %llu busy, %llu full waits, "
               "%llu daemon down, %llu table full; drained %llu records in %llu batches, filter "
               "%llu ids\n",
               (unsigned long long)atomic_load(&sh->refunds),
               (unsigned long long)atomic_load(&sh->refund_now),
               (unsigned long long)atomic_load(&sh->refund_2pc),
               (unsigned long long)atomic_load(&sh->refund_released),
               (unsigned long long)atomic_load(&sh->refund_evicted),
               (unsigned long long)atomic_load(&sh->refund_swept),
               (unsigned long long)atomic_load(&sh->statuses),
               (unsigned long long)atomic_load(&sh->busy),
               (unsigned long long)atomic_load(&sh->full_waits),
               (unsigned long long)atomic_load(&sh->daemon_down),
               (unsigned long long)atomic_load(&sh->table_full),
               (unsigned long long)atomic_load(&sh->drained_records),
               (unsigned long long)atomic_load(&sh->drain_batches),
               (unsigned long long)st.filter_ids);
    }
    /* The run must have made the evictor work: ids many times the index. */
    CHECK(atomic_load(&sh->next_id) > (uint32_t)opt.capacity * 4);
    CHECK(daemon_kills > 0 || evictions > (uint64_t)opt.capacity * 2);

    /* Per id: answers against records. */
    {
        long bad_ids = 0;
        uint32_t used = atomic_load(&sh->next_id);
        bool exact = opt.kill_workers_ms == 0 && opt.kill_daemon == 0;

        if (used > opt.max_ids)
            used = opt.max_ids;
        for (uint32_t n = 0; n < used; n++) {
            id_state *s = &sh->ids[n];
            uint32_t dok = atomic_load(&s->deduct_ok), rok = atomic_load(&s->refund_ok);
            uint32_t ld = atomic_load(&s->led_deducts), lr = atomic_load(&s->led_refunds);
            bool fine = dok <= 1 && rok <= 1 && ld <= 1 && lr <= ld && dok <= ld && rok <= lr;

            if (exact)
                fine = fine && dok == ld && rok == lr;
            if (atomic_load(&s->led_marked) && lr == 0)
                fine = false; /* a committed mark whose units never came back */
            if (!fine && bad_ids++ < MAX_PRINTED)
                fprintf(stderr,
                        "o%u: %u deduct ok, %u refund ok; records: %u DEDUCT, %u REFUND, "
                        "marked %u\n",
                        n, dok, rok, ld, lr, atomic_load(&s->led_marked));
        }
        CHECK_EQ(bad_ids, 0);
    }

    /* Per SKU: the counters against the records. */
    for (int si = 0; si < NSKUS; si++) {
        int64_t live = available_of(c, si);

        printf("  %s: available %lld, put %lld, sold %lld (records)\n", skus[si], (long long)live,
               (long long)dr.put[si], (long long)dr.sold[si]);
        /* a restock answered "daemon down" may have made it */
        if (opt.kill_daemon == 0)
            CHECK_EQ(dr.put[si], opt.stock + added[si]);
        else
            CHECK(dr.put[si] >= opt.stock + added[si]);
        if (opt.kill_workers_ms == 0 && opt.kill_daemon == 0)
            CHECK_EQ(dr.put[si] - live, dr.sold[si]);
        else
            CHECK(live >= 0 && dr.put[si] - live >= dr.sold[si]); /* held back, never oversold */
    }
    CHECK(wait_quiet(c));
    CHECK_EQ(audit_segment("live", opt.kill_workers_ms == 0 && opt.kill_daemon == 0), 0);
    CHECK_EQ(verify_retries(c, "live"), 0);

    /* Clean restart: the filter comes from DIR/evicted.filter, the index
     * from the records after its watermark, the counters exact. */
    atomic_store(&dr.exit, true);
    pthread_join(drain_thread, NULL);
    if (CHECK_EQ(hsd_ctl_stop(&d), 0) && CHECK_EQ(hsd_ctl_start(&d, NULL), 0)) {
        for (int si = 0; si < NSKUS; si++)
            CHECK_EQ(dr.put[si] - available_of(c, si), dr.sold[si]);
        CHECK(wait_quiet(c));
        CHECK_EQ(audit_segment("after restart", true), 0);
        CHECK_EQ(verify_retries(c, "after restart"), 0);
    }
    printf("  %llu violations\n", (unsigned long long)atomic_load(&sh->violations));
    CHECK_EQ(atomic_load(&sh->violations), 0);
    if (dr.reader != NULL)
        hs_queue_close(dr.reader);
    hs_detach(c);
    hsd_ctl_stop(&d);
    if (opt.own_dir && !opt.keep && hs_test_failed_ == 0)
        hs_test_rmrf(opt.dir);
    else
        printf("  kept %s\n", opt.dir);
    return hs_test_done();
}
