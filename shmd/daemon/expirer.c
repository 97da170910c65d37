/*-------------------------------------------------------------------------
 *
 * expirer.c
 *      The expiry of holds: a min-heap of deadlines and the thread that
 *      expires each hold when its deadline passes.
 *
 * A hold (shmd/lib/hold.c) gives its units back by itself at its
 * deadline.  This thread is the "by itself": it keeps every live hold in a
 * binary min-heap ordered by deadline (unix ms, CLOCK_REALTIME: the clock
 * the holds' deadlines are written in), sleeps until the earliest one, and
 * expires it through libhotstock like any client (hs_hold_expire: CAS
 * RESERVED -> EXPIRING, EXPIRE record, counter raise, EXPIRED).  Nothing
 * scans the index: a pass costs O(log n) per hold, so a million live holds
 * expire on time.
 *
 * What it shares, and who writes it:
 *  - the heap, under ex->mu: the spiller adds a batch of entries after it
 *    folded their RESERVE records (hsd_expirer_add, from hsd_write_batch),
 *    recovery adds the holds it installed (before any thread runs), and
 *    this thread pops and re-adds.  It is made before recovery
 *    (hsd_expirer_init) and freed only after the spiller is joined
 *    (hsd_expirer_free), so every thread that adds finds it; a smart stop
 *    stops this thread first (no EXPIRE after the fence) and the spiller's
 *    last additions stay unread, as a restart rebuilds them.  ex->cv wakes this thread when an entry
 *    earlier than the one it sleeps for arrives, or at stop;
 *  - the order slots, only through hs_hold_expire() (segment.h's protocol):
 *    an entry names a slot and its version, so a slot evicted and reused
 *    is never expired by mistake (hs_hold_expire answers HS_NOT_FOUND).
 * An entry whose hold is being confirmed or cancelled by a live process
 * comes back in HSD_EXPIRE_RETRY_MS; one whose hold was settled is
 * dropped.  A hold whose deadline passed while no daemon ran is installed
 * by recovery and expires as soon as this thread starts.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"

#define HSD_EXPIRE_RETRY_MS 50 /* a claimed hold: look again after this */
#define HSD_EXPIRE_IDLE_MS 1000

typedef struct hsd_hold_entry {
    uint64_t deadline_ms;
    uint32_t slot;
    uint32_t version;
} hsd_hold_entry;

struct hsd_expirer {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    hsd_hold_entry *heap;
    size_t count, cap;
    bool exit;
    uint64_t sleeping_for; /* deadline this thread sleeps until; 0 when not */
};

/*-------------------------------------------------------------------------
 * The heap (under mu)
 *-------------------------------------------------------------------------
 */

static void
heap_up(hsd_hold_entry *a, size_t i)
{
    hsd_hold_entry e = a[i];

    while (i > 0 && a[(i - 1) / 2].deadline_ms > e.deadline_ms) {
        a[i] = a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    a[i] = e;
}

static void
heap_down(hsd_hold_entry *a, size_t n, size_t i)
{
    hsd_hold_entry e = a[i];

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= n)
            break;
        if (c + 1 < n && a[c + 1].deadline_ms < a[c].deadline_ms)
            c++;
        if (a[c].deadline_ms >= e.deadline_ms)
            break;
        a[i] = a[c];
        i = c;
    }
    a[i] = e;
}

static int
heap_push(hsd_expirer *ex, hsd_hold_entry e)
{
    if (ex->count == ex->cap) {
        size_t cap = ex->cap ? ex->cap * 2 : 4096;
        hsd_hold_entry *grown = realloc(ex->heap, cap * sizeof(*grown));

        if (grown == NULL)
            return -1;
        ex->heap = grown;
        ex->cap = cap;
    }
    ex->heap[ex->count++] = e;
    heap_up(ex->heap, ex->count - 1);
    return 0;
}

static hsd_hold_entry
heap_pop(hsd_expirer *ex)
{
    hsd_hold_entry top = ex->heap[0];

    ex->heap[0] = ex->heap[--ex->count];
    if (ex->count > 0)
        heap_down(ex->heap, ex->count, 0);
    return top;
}

/*-------------------------------------------------------------------------
 * Adding holds
 *-------------------------------------------------------------------------
 */

/* The empty heap, before recovery adds to it and before any thread runs:
 * it lives as long as the daemon (hsd_expirer_free, after the spiller,
 * which adds to it, is joined).  0, or -1 out of memory. */
int
hsd_expirer_init(hsd_daemon *d)
{
    hsd_expirer *ex = calloc(1, sizeof(*ex));
    pthread_condattr_t attr;

    if (ex == NULL) {
        hsd_log(HSD_ERROR, "expirer: out of memory");
        return -1;
    }
    pthread_mutex_init(&ex->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ex->cv, &attr);
    pthread_condattr_destroy(&attr);
    d->expirer = ex;
    return 0;
}

void
hsd_expirer_add(hsd_daemon *d, uint64_t deadline_ms, uint32_t slot, uint32_t version)
{
    hsd_expirer *ex = d->expirer;
    bool wake;

    pthread_mutex_lock(&ex->mu);
    if (heap_push(ex, (hsd_hold_entry){deadline_ms, slot, version}) != 0)
        hsd_fatal("expirer: out of memory for %zu holds", ex->count + 1);
    wake = ex->sleeping_for != 0 && deadline_ms < ex->sleeping_for;
    pthread_mutex_unlock(&ex->mu);
    if (wake)
        pthread_cond_signal(&ex->cv);
}

uint64_t
hsd_expirer_holds(hsd_daemon *d)
{
    hsd_expirer *ex = d->expirer;
    uint64_t n;

    if (ex == NULL)
        return 0;
    pthread_mutex_lock(&ex->mu);
    n = ex->count;
    pthread_mutex_unlock(&ex->mu);
    return n;
}

/*-------------------------------------------------------------------------
 * The thread
 *-------------------------------------------------------------------------
 */

/* Sleep on cv (mu held) for at most ms. */
static void
expirer_sleep(hsd_expirer *ex, uint64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&ex->cv, &ex->mu, &ts);
}

/* Expire one due entry (mu not held); re-add it when it must come back. */
static void
expire_one(hsd_daemon *d, hs_client *c, hsd_hold_entry e, uint64_t now_ms)
{
    uint64_t deadline = e.deadline_ms;
    hs_lsn lsn;
    hs_result r = hs_hold_expire(c, e.slot, e.version, now_ms, &lsn, &deadline);

    switch (r) {
    case HS_OK:
        atomic_fetch_add_explicit(&d->stats.holds_expired, 1, memory_order_relaxed);
        /* Relaxed: a statistic. */
        atomic_fetch_add_explicit(&d->stats.expiry_delay_ms_sum, now_ms - e.deadline_ms,
                                  memory_order_relaxed);
        return;
    case HS_NOT_FOUND: /* confirmed, cancelled, evicted: nothing to do */
        return;
    case HS_DUPLICATE: /* not due by the slot's own deadline */
        hsd_expirer_add(d, deadline, e.slot, e.version);
        return;
    case HS_QUEUE_FULL: /* claimed by a live process, or the ring is full */
        hsd_expirer_add(d, now_ms + HSD_EXPIRE_RETRY_MS, e.slot, e.version);
        return;
    default:
        /* HS_DAEMON_DOWN while stopping, HS_IO_ERROR on a full disk: the
         * hold stays; try again in a while (a restart re-adds it anyway) */
        hsd_log(HSD_WARNING, "expirer: cannot expire the hold in order slot %u: %s (%s)", e.slot,
                hs_result_name(r), hs_last_error());
        hsd_expirer_add(d, now_ms + HSD_EXPIRE_IDLE_MS, e.slot, e.version);
        return;
    }
}

static void *
hsd_expirer_main(void *arg)
{
    hsd_daemon *d = arg;
    hsd_expirer *ex = d->expirer;
    hs_client *c = NULL;
    hs_result r;

    /* Signals stay blocked: inherited from the main thread. */
    r = hs_attach(d->dir, &c);
    if (r != HS_OK)
        hsd_fatal("expirer: cannot attach to the segment of %s: %s (%s)", d->dir,
                  hs_result_name(r), hs_last_error());
    pthread_mutex_lock(&ex->mu);
    while (!ex->exit) {
        uint64_t now = hs_now_unix_us() / 1000;
        hsd_hold_entry e;

        if (ex->count == 0 || ex->heap[0].deadline_ms > now) {
            uint64_t wait = HSD_EXPIRE_IDLE_MS;

            if (ex->count > 0 && ex->heap[0].deadline_ms - now < wait)
                wait = ex->heap[0].deadline_ms - now;
            ex->sleeping_for = ex->count > 0 ? ex->heap[0].deadline_ms : UINT64_MAX;
            expirer_sleep(ex, wait);
            ex->sleeping_for = 0;
            continue;
        }
        e = heap_pop(ex);
        pthread_mutex_unlock(&ex->mu);
        expire_one(d, c, e, now);
        pthread_mutex_lock(&ex->mu);
    }
    pthread_mutex_unlock(&ex->mu);
    hs_detach(c);
    return NULL;
}

int
hsd_expirer_start(hsd_daemon *d)
{
    hsd_expirer *ex = d->expirer;
    int rc;

    if (ex->count > 0)
        hsd_log(HSD_LOG, "expirer: %zu live holds, the earliest due at unix ms %" PRIu64,
                ex->count, ex->heap[0].deadline_ms);
    rc = pthread_create(&d->expirer_thread, NULL, hsd_expirer_main, d);
    if (rc != 0) {
        hsd_log(HSD_ERROR, "cannot start the expirer thread: %s", strerror(rc));
        return -1;
    }
    d->expirer_running = true;
    return 0;
}

/* Stop the thread; the heap stays (the spiller may still add to it). */
void
hsd_expirer_stop(hsd_daemon *d)
{
    hsd_expirer *ex = d->expirer;

    if (ex == NULL || !d->expirer_running)
        return;
    pthread_mutex_lock(&ex->mu);
    ex->exit = true;
    pthread_mutex_unlock(&ex->mu);
    pthread_cond_signal(&ex->cv);
    pthread_join(d->expirer_thread, NULL);
    d->expirer_running = false;
}

/* Free the heap: no thread may add to it any more (spiller joined, the
 * control thread that reads its size stopped). */
void
hsd_expirer_free(hsd_daemon *d)
{
    hsd_expirer *ex = d->expirer;

    if (ex == NULL)
        return;
    free(ex->heap);
    pthread_cond_destroy(&ex->cv);
    pthread_mutex_destroy(&ex->mu);
    free(ex);
    d->expirer = NULL;
}
