/*-------------------------------------------------------------------------
 *
 * evictor.c
 *      Online eviction of the order index, and DIR/evicted.filter.
 *
 * The order index would only grow while a daemon lives: every order a
 * sale takes stays in it.  The evictor thread empties, while clients keep
 * deducting, the entries whose every record the drain has applied (and
 * committed) at least `order_retention` seconds ago, and remembers their
 * ids in the segment's filter, which it persists.  The slot protocol it
 * follows is segment.h's (EVICTION); what it shares:
 *
 *  - the segment: order slots (CAS final -> EVICTING, store EMPTY of the
 *    next version, decrements of `passed`: seq_cst), the filter (the only
 *    writer: fetch_or, seq_cst), header.evicted_lsn (store, seq_cst,
 *    before a pass uses it), order_count, evictions, filter_ids (relaxed);
 *  - d->applied_lsn (acquire): the main thread's copy of the drain's
 *    position, clamped to the durable LSN;
 *  - d->filter_lsn (release): the durable watermark of the filter file;
 *    the checkpointer keeps queue files back to it, and recovery indexes
 *    the orders with a record after it;
 *  - d->filter_file and d->filter_dirty: its own once it runs.
 *
 * A pass picks W: the applied LSN of order_retention seconds ago (from
 * samples it takes each pass), or the applied LSN now while the index is
 * more than 3/4 full (retention is then given up rather than refuse
 * orders).  It publishes evicted_lsn = max(W, evicted_lsn), then, in
 * three phases:
 *   mark    visit every slot once, in steps of HSD_EVICT_STEP slots between
 *           which it yields; an entry may go when its state is final and
 *           its last record is <= W: the record that settled it (DEDUCT or
 *           CONFIRM, REFUND, CANCEL, EXPIRE) is the one the spiller marked
 *           in `recorded` (by its type, segment.h).  A live hold
 *           never goes: it holds F below its RESERVE, so a restart finds it
 *           in the queue with its deadline.  Its id goes into the
 *           filter and it becomes a candidate.  FAILED entries (no record,
 *           no units) and DEAD slots go at once, without the filter;
 *   commit  the filter's new bits and then its header (F, and E = W) are
 *           made durable (filter_file_write.c);
 *   evict   each candidate still of its version and evictable leaves.
 * Never a stop-the-world scan, and no client ever waits for it (probes are
 * lock-free; the one thing a client may meet is an EVICTING slot, which
 * probes pass over).  Because an order leaves only once its id and E are
 * durable, a restart never brings an evicted order back into the index
 * (recovery skips the orders at or below E that the filter holds), even
 * when F lags: F = min(W, last record - 1 of every entry skipped with a
 * record <= W), so every order with all records at or below F is in the
 * filter.  A commit without candidates (F or E moved) waits a second.  A
 * failed fdatasync is fatal, as for the queue: the next start reads the
 * last durable header.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"

#define HSD_EVICT_STEP 1024      /* slots visited between yields */
#define HSD_EVICT_SAMPLES 4096   /* applied-LSN history */
#define HSD_FILTER_COMMIT_MS 1000
#define HSD_EVICT_IDLE_MS 10000 /* a pass at least this often at low fill */
#define HSD_PAGE 4096

typedef struct hsd_sample {
    uint64_t ms; /* CLOCK_MONOTONIC */
    hs_lsn applied;
} hsd_sample;

typedef struct hsd_evictor {
    hsd_daemon *d;
    hs_header *h;
    hsd_sample samples[HSD_EVICT_SAMPLES];
    uint32_t head, count;
    uint64_t last_sample_ms, last_pass_ms, last_commit_ms;
    hs_lsn keep;       /* this pass: min(last record - 1) of entries skipped */
    bool dirty;        /* filter bits set since the last commit */
    bool under_pressure;
    /* this pass's candidates: slot << 32 | version, in the filter already */
    uint64_t *cand;
    uint32_t ncand;
} hsd_evictor;

/*-------------------------------------------------------------------------
 * The filter file at start (recovery's)
 *-------------------------------------------------------------------------
 */

static uint64_t
pow2_ceil64(uint64_t v)
{
    uint64_t p = 1;

    while (p < v)
        p <<= 1;
    return p;
}

int
hsd_filter_open(hsd_daemon *d, bool had_history, hs_lsn applied, hs_filter_meta *meta)
{
    uint64_t want = pow2_ceil64(d->settings.evicted_filter_size);
    int rc = hs_filter_file_open(d->dir, &d->filter_file, meta);

    if (rc < 0) {
        hsd_log(HSD_ERROR, "refusing to start: %s", hs_last_error());
        return -1;
    }
    if (rc == 0) {
        memset(meta, 0, sizeof(*meta));
        meta->bytes = want;
        if (had_history && applied > 0) {
            /* Restarts evicted every order drained up to `applied` before
             * this directory had a filter: any id may be one of them. */
            meta->lsn = applied;
            meta->evicted = applied;
            meta->legacy = applied;
        }
        if (hs_filter_file_create(d->dir, meta, &d->filter_file) != 0) {
            hsd_log(HSD_ERROR, "refusing to start: %s", hs_last_error());
            return -1;
        }
        if (meta->legacy > 0)
            hsd_log(HSD_WARNING,
                    "created %s/%s for a data directory whose orders up to LSN %" PRIu64
                    " were evicted before it had one: every order id the index does not know "
                    "is looked up in PostgreSQL's ledger (slower new orders)",
                    d->dir, HS_FILTER_FILE, applied);
        else
            hsd_log(HSD_LOG, "created %s/%s (%" PRIu64 " MiB)", d->dir, HS_FILTER_FILE,
                    want >> 20);
    } else {
        hsd_log(HSD_LOG,
                "loaded %s/%s: %" PRIu64 " MiB, %" PRIu64 " ids, every order drained up to "
                "LSN %" PRIu64 " is in it%s",
                d->dir, HS_FILTER_FILE, meta->bytes >> 20, meta->ids, meta->lsn,
                meta->legacy ? " (legacy: evictions without a filter before it)" : "");
        if (meta->bytes != want)
            hsd_log(HSD_LOG,
                    "evicted_filter_size %" PRIu64 " differs from the file's %" PRIu64
                    " bytes: the file's size stays (it applies to a new data directory)",
                    want, meta->bytes);
    }
    d->filter_dirty = calloc(meta->bytes / HSD_PAGE / 64 + 1, sizeof(uint64_t));
    d->filter_bits = aligned_alloc(HSD_PAGE, meta->bytes);
    if (d->filter_dirty == NULL || d->filter_bits == NULL) {
        hsd_log(HSD_ERROR, "refusing to start: out of memory for the %" PRIu64 "-byte filter",
                meta->bytes);
        return -1;
    }
    if (hs_filter_file_read(d->filter_file, d->filter_bits, meta->bytes) != 0) {
        hsd_log(HSD_ERROR, "refusing to start: %s", hs_last_error());
        return -1;
    }
    atomic_store_explicit(&d->filter_lsn, meta->lsn, memory_order_release);
    return 0;
}

bool
hsd_filter_evicted(hsd_daemon *d, uint64_t hash, hs_lsn last)
{
    const hs_filter_meta *m = hs_filter_file_meta(d->filter_file);

    return last <= m->evicted &&
           hs_filter_holds(d->filter_bits, (uint32_t)(m->bytes / sizeof(hs_filter_block)), hash);
}

int
hsd_filter_load(hsd_daemon *d, hs_header *h)
{
    const hs_filter_meta *m = hs_filter_file_meta(d->filter_file);

    if ((uint64_t)h->filter_blocks * sizeof(hs_filter_block) != m->bytes) {
        hsd_log(HSD_ERROR, "refusing to start: the segment's filter has %" PRIu64
                           " bytes, %s/%s %" PRIu64,
                (uint64_t)h->filter_blocks * sizeof(hs_filter_block), d->dir, HS_FILTER_FILE,
                m->bytes);
        return -1;
    }
    /* The segment is STARTING: nobody reads the filter yet. */
    memcpy(hs_filter(h), d->filter_bits, m->bytes);
    free(d->filter_bits);
    d->filter_bits = NULL;
    atomic_store_explicit(&h->filter_ids, m->ids, memory_order_relaxed);
    return 0;
}

/*-------------------------------------------------------------------------
 * One eviction
 *-------------------------------------------------------------------------
 */

static void
filter_add(hsd_evictor *ev, uint64_t hash)
{
    hs_header *h = ev->h;
    uint64_t mask[8];
    uint32_t b = hs_filter_pattern(h->filter_blocks, hash, mask);
    hs_filter_block *blk = &hs_filter(h)[b];
    uint64_t page = (uint64_t)b * sizeof(hs_filter_block) / HSD_PAGE;

    for (int i = 0; i < 8; i++) {
        /* Relaxed load: we are the only writer.  seq_cst fetch_or: before
         * the slot leaves the index (segment.h, EVICTION). */
        if (mask[i] != 0 &&
            (atomic_load_explicit(&blk->word[i], memory_order_relaxed) & mask[i]) != mask[i]) {
            atomic_fetch_or(&blk->word[i], mask[i]);
            ev->d->filter_dirty[page / 64] |= UINT64_C(1) << (page % 64);
            ev->dirty = true;
        }
    }
    /* Relaxed: a statistic. */
    atomic_fetch_add_explicit(&h->filter_ids, 1, memory_order_relaxed);
}

/* Skipped an entry whose last record is `last`: the watermark stays below. */
static void
keep_below(hsd_evictor *ev, hs_lsn last, hs_lsn w)
{
    if (last != 0 && last <= w && last - 1 < ev->keep)
        ev->keep = last - 1;
}

/* Evict slot k, read as w (its id is in the durable filter already, or
 * needs none).  counted: its insert counted itself in `passed` and in
 * order_count (not a DEAD slot).  False when a client moved it first. */
static bool
evict_slot(hsd_evictor *ev, uint32_t k, uint64_t w, bool counted)
{
    hs_header *h = ev->h;
    const uint32_t mask = h->order_capacity - 1;
    hs_order_slot *table = hs_order_table(h);
    hs_order_slot *o = &table[k];
    /* The key is published by the state we loaded (seq_cst) and immutable
     * while the version is w's. */
    uint64_t hash = o->hash;

    /* seq_cst: after the filter bit; from here on the id is gone. */
    if (!atomic_compare_exchange_strong(&o->state, &w, HS_ORDER_NEXT(w, HS_INDEX_EVICTING, 0)))
        return false;
    /* seq_cst: the slot may be claimed again, as a new version. */
    atomic_store(&o->state, ((uint64_t)(HS_VER_OF(w) + 1) << 32) | HS_INDEX_EMPTY);
    if (counted) {
        for (uint32_t i = hs_order_home(h, hash); i != k; i = (i + 1) & mask)
            /* seq_cst: after the slot is empty (segment.h, EVICTION). */
            atomic_fetch_sub(&table[i].passed, 1);
        /* Relaxed: statistics. */
        atomic_fetch_sub_explicit(&h->order_count, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&h->evictions, 1, memory_order_relaxed);
    return true;
}

/* May the entry in o, read as sw, leave the index under watermark w?  Its
 * last record LSN goes to *last. */
static bool
evictable(hs_order_slot *o, uint64_t sw, hs_lsn w, hs_lsn *last)
{
    /* Acquire: pairs with the spiller's release store of recorded.  The
     * state (seq_cst, an acquire) published deducted_lsn. */
    uint64_t rw = atomic_load_explicit(&o->recorded, memory_order_acquire);
    hs_lsn recorded = HS_RECORDED_LSN(rw);
    hs_lsn deducted = atomic_load_explicit(&o->deducted_lsn, memory_order_relaxed);
    unsigned state = HS_STATE_OF(sw);

    *last = recorded > deducted ? recorded : deducted;
    switch (state) {
    case HS_INDEX_DEDUCTED:
    case HS_INDEX_REFUNDED:
    case HS_INDEX_CANCELLED:
    case HS_INDEX_EXPIRED:
        /* the record that settled it folded (the spiller marked it with
         * its type: a hold just confirmed may still show its RESERVE),
         * and applied */
        if (hs_state_of_record(HS_RECORDED_TYPE(rw)) == state && recorded <= w)
            return true;
        if (state == HS_INDEX_REFUNDED)
            *last = deducted; /* its REFUND comes after w */
        return false;
    default: /* PENDING, REFUNDING, a live hold or one being settled */
        return false;
    }
}

/* Mark phase, slot k: an entry that may leave goes into the filter and the
 * candidates (evicted after the filter is durable); FAILED entries (no
 * record, no units) and DEAD slots leave now, without the filter. */
static void
mark(hsd_evictor *ev, uint32_t k, hs_lsn w)
{
    hs_order_slot *o = &hs_order_table(ev->h)[k];
    /* seq_cst (an acquire): pairs with the release store of the state,
     * which published the key. */
    uint64_t sw = atomic_load(&o->state);
    hs_lsn last;

    switch (HS_STATE_OF(sw)) {
    case HS_INDEX_EMPTY:
    case HS_INDEX_INSERTING:
    case HS_INDEX_EVICTING:
        return;
    case HS_INDEX_DEAD:
        (void)evict_slot(ev, k, sw, false);
        return;
    case HS_INDEX_FAILED:
        (void)evict_slot(ev, k, sw, true);
        return;
    default:
        break;
    }
    if (evictable(o, sw, w, &last)) {
        filter_add(ev, o->hash);
        ev->cand[ev->ncand++] = (uint64_t)k << 32 | HS_VER_OF(sw);
    } else {
        keep_below(ev, last, w);
    }
}

/* Evict phase: a candidate still of its version and evictable leaves; one
 * a client moved on stays (in the filter: see filter_file.h, `evicted`). */
static void
evict_candidates(hsd_evictor *ev, hs_lsn w)
{
    for (uint32_t i = 0; i < ev->ncand; i++) {
        uint32_t k = (uint32_t)(ev->cand[i] >> 32);
        hs_order_slot *o = &hs_order_table(ev->h)[k];
        uint64_t sw = atomic_load(&o->state);
        hs_lsn last;

        if (HS_VER_OF(sw) == (uint32_t)ev->cand[i] && evictable(o, sw, w, &last))
            (void)evict_slot(ev, k, sw, true);
        if ((i + 1) % HSD_EVICT_STEP == 0)
            sched_yield();
    }
    ev->ncand = 0;
}

/*-------------------------------------------------------------------------
 * Passes
 *-------------------------------------------------------------------------
 */

static uint64_t
retention_ms(const hsd_evictor *ev)
{
    return (uint64_t)ev->d->settings.order_retention_s * 1000;
}

/* The applied LSN of retention ago: the newest sample at least that old. */
static hs_lsn
watermark(hsd_evictor *ev, uint64_t now, hs_lsn applied)
{
    uint64_t ret = retention_ms(ev);
    uint64_t every = ret / 2048 > 10 ? ret / 2048 : 10;

    if (ret == 0)
        return applied;
    if (ev->count == 0 || now - ev->last_sample_ms >= every) {
        ev->samples[ev->head] = (hsd_sample){now, applied};
        ev->head = (ev->head + 1) % HSD_EVICT_SAMPLES;
        if (ev->count < HSD_EVICT_SAMPLES)
            ev->count++;
        ev->last_sample_ms = now;
    }
    for (uint32_t i = 1; i <= ev->count; i++) {
        const hsd_sample *s = &ev->samples[(ev->head + HSD_EVICT_SAMPLES - i) % HSD_EVICT_SAMPLES];
        if (s->ms + ret <= now)
            return s->applied;
    }
    return 0;
}

/* Write the dirty pages and the watermarks.  Fatal on failure. */
static void
commit_filter(hsd_evictor *ev, hs_lsn lsn, hs_lsn evicted)
{
    hsd_daemon *d = ev->d;
    const hs_filter_meta *m = hs_filter_file_meta(d->filter_file);
    uint64_t pages = m->bytes / HSD_PAGE;
    const char *bits = (const char *)hs_filter(ev->h);

    for (uint64_t p = 0; p < pages;) {
        uint64_t q;

        if ((d->filter_dirty[p / 64] & (UINT64_C(1) << (p % 64))) == 0) {
            p++;
            continue;
        }
        for (q = p; q < pages && (d->filter_dirty[q / 64] & (UINT64_C(1) << (q % 64))); q++)
            d->filter_dirty[q / 64] &= ~(UINT64_C(1) << (q % 64));
        /* Bits only get set: a page copied while we set more is still a
         * superset of what this watermark needs. */
        if (hs_filter_file_write(d->filter_file, bits + p * HSD_PAGE, p * HSD_PAGE,
                                 (q - p) * HSD_PAGE) != 0)
            hsd_fatal("evictor: %s", hs_last_error());
        p = q;
    }
    if (hs_filter_file_commit(d->filter_file, lsn, evicted,
                              atomic_load_explicit(&ev->h->filter_ids, memory_order_relaxed)) !=
        0)
        hsd_fatal("evictor: %s", hs_last_error());
    ev->dirty = false;
    ev->last_commit_ms = hs_now_monotonic_ms();
    /* Release: the checkpointer may recycle queue files up to it now. */
    atomic_store_explicit(&d->filter_lsn, lsn, memory_order_release);
    atomic_fetch_add_explicit(&d->stats.filter_commits, 1, memory_order_relaxed);
}

/* Commit when something changed: before candidates leave the index
 * (now), else at most once a second, and at stop (now). */
static void
maybe_commit(hsd_evictor *ev, hs_lsn lsn, hs_lsn evicted, bool now)
{
    const hs_filter_meta *m = hs_filter_file_meta(ev->d->filter_file);

    if (lsn < m->lsn)
        lsn = m->lsn; /* see the header: it only moves up */
    if (evicted < m->evicted)
        evicted = m->evicted;
    if (!ev->dirty && lsn == m->lsn && evicted == m->evicted)
        return;
    if (!now && hs_now_monotonic_ms() - ev->last_commit_ms < HSD_FILTER_COMMIT_MS)
        return;
    commit_filter(ev, lsn, evicted);
}

static bool
should_exit(hsd_daemon *d, uint64_t wait_ms)
{
    struct timespec ts;
    bool exit;

    pthread_mutex_lock(&d->evict_mu);
    if (wait_ms > 0 && !d->evict_exit) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(wait_ms / 1000);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&d->evict_cv, &d->evict_mu, &ts);
    }
    exit = d->evict_exit;
    pthread_mutex_unlock(&d->evict_mu);
    return exit;
}

/* One pass with watermark w: mark, make the filter durable, evict.
 * Returns the filter watermark it allows. */
static hs_lsn
pass(hsd_evictor *ev, hs_lsn w)
{
    const uint32_t cap = ev->h->order_capacity;

    ev->keep = w;
    ev->ncand = 0;
    for (uint32_t k = 0; k < cap; k++) {
        mark(ev, k, w);
        if ((k + 1) % HSD_EVICT_STEP == 0)
            sched_yield();
    }
    if (ev->ncand > 0) {
        maybe_commit(ev, ev->keep, w, true);
        evict_candidates(ev, w);
    }
    atomic_fetch_add_explicit(&ev->h->evict_passes, 1, memory_order_relaxed);
    return ev->keep;
}

static void *
hsd_evictor_main(void *arg)
{
    hsd_evictor *ev = arg;
    hsd_daemon *d = ev->d;
    hs_header *h = ev->h;
    hsd_buyer_sweep sweep;
    uint64_t last_sweep_ms = 0;
    uint64_t period = retention_ms(ev) / 4;
    hs_lsn allowed = atomic_load_explicit(&d->filter_lsn, memory_order_relaxed);

    uint64_t idle = retention_ms(ev) < HSD_EVICT_IDLE_MS ? retention_ms(ev) : HSD_EVICT_IDLE_MS;

    if (period < 100)
        period = 100;
    if (period > 1000)
        period = 1000;
    if (idle < period)
        idle = period;
    memset(&sweep, 0, sizeof(sweep));
    for (;;) {
        uint64_t now = hs_now_monotonic_ms();
        uint32_t count = atomic_load_explicit(&h->order_count, memory_order_relaxed);
        hs_lsn applied = atomic_load_explicit(&d->applied_lsn, memory_order_acquire);
        hs_lsn w = watermark(ev, now, applied);
        hs_lsn published = atomic_load(&h->evicted_lsn);
        bool pressure = count >= h->order_capacity - h->order_capacity / 4;

        if (pressure) {
            w = applied;
            if (!ev->under_pressure)
                hsd_log(HSD_WARNING,
                        "order index %u of %u full: evicting every drained order now, "
                        "order_retention (%u s) given up until it is below 3/4",
                        count, h->order_capacity, d->settings.order_retention_s);
        } else if (ev->under_pressure) {
            hsd_log(HSD_LOG, "order index below 3/4 full again (%u of %u)", count,
                    h->order_capacity);
        }
        ev->under_pressure = pressure;
        if (w > published)
            /* seq_cst: before any eviction under it (segment.h). */
            atomic_store(&h->evicted_lsn, w);
        else
            w = published;
        if (pressure || count >= h->order_capacity / 8 || now - ev->last_pass_ms >= idle) {
            allowed = pass(ev, w);
            ev->last_pass_ms = now;
        }
        maybe_commit(ev, allowed, published > w ? published : w, false);
        if (now - last_sweep_ms >= 1000) {
            hsd_buyers_sweep(d, &sweep);
            last_sweep_ms = now;
        }
        if (should_exit(d, pressure ? 20 : period))
            break;
    }
    hsd_buyers_sweep_end(&sweep);
    maybe_commit(ev, allowed, atomic_load(&h->evicted_lsn), true);
    free(ev->cand);
    free(ev);
    return NULL;
}

int
hsd_evictor_start(hsd_daemon *d)
{
    hsd_evictor *ev = calloc(1, sizeof(*ev));
    int rc;

    if (ev == NULL) {
        hsd_log(HSD_ERROR, "cannot start the evictor thread: out of memory");
        return -1;
    }
    ev->d = d;
    ev->h = d->seg;
    ev->last_commit_ms = hs_now_monotonic_ms();
    ev->cand = malloc((size_t)d->seg->order_capacity * sizeof(uint64_t));
    if (ev->cand == NULL) {
        free(ev);
        hsd_log(HSD_ERROR, "cannot start the evictor thread: out of memory");
        return -1;
    }
    pthread_mutex_init(&d->evict_mu, NULL);
    {
        pthread_condattr_t attr;

        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&d->evict_cv, &attr);
        pthread_condattr_destroy(&attr);
    }
    d->evict_exit = false;
    rc = pthread_create(&d->evictor_thread, NULL, hsd_evictor_main, ev);
    if (rc != 0) {
        free(ev->cand);
        free(ev);
        hsd_log(HSD_ERROR, "cannot start the evictor thread: %s", strerror(rc));
        return -1;
    }
    d->evictor_running = true;
    return 0;
}

void
hsd_evictor_stop(hsd_daemon *d)
{
    if (!d->evictor_running)
        return;
    pthread_mutex_lock(&d->evict_mu);
    d->evict_exit = true;
    pthread_cond_signal(&d->evict_cv);
    pthread_mutex_unlock(&d->evict_mu);
    pthread_join(d->evictor_thread, NULL);
    d->evictor_running = false;
}
