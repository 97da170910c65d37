/*-------------------------------------------------------------------------
 *
 * hot.c
 *      The hot thread: every second it reads the HeavyKeeper sketch of
 *      take attempts (fed by the clients, shmd/lib/stats.c), ages it,
 *      ranks the SKUs it names, and publishes the top hot_k with their
 *      rates in the segment's hot table.
 *
 * What it shares (segment_stats.h has the protocol):
 *  - the sketch: clients CAS its words (sampled, relaxed); this thread
 *    loads them (relaxed) and ages each by CAS to count * 3/4, so a SKU
 *    that stops selling fades out within seconds (a bucket CASed by a
 *    client meanwhile is aged on the next tick);
 *  - the per-SKU statistics: loaded (relaxed) for the exact counts behind
 *    the rates;
 *  - the hot table: written by this thread only, under its seqlock.
 * Its own: the candidates of the last tick (SKU slot, exact attempts and
 * deductions then), sorted by slot, to turn exact counts into rates.
 *
 * Ranking.  The sketch finds the heavy hitters in O(rows x width) per
 * tick, whatever the number of SKUs, and ranks them by its estimate (an
 * exponentially aged count of sampled attempts).  Rates come from the
 * exact counters: (attempts now - attempts at the last tick) / elapsed,
 * attempts = deducts + reserves + sold-out attempts + limit refusals; a
 * SKU that was no candidate last tick gets the sketch's own estimate
 * (it was not in the sketch then: count * HS_HK_SAMPLE came since) and
 * no sold rate yet.
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

#define HSD_HOT_TICK_MS 1000

typedef struct hot_cand {
    uint32_t si;
    uint64_t count;    /* the sketch's, max over the rows */
    uint64_t attempts; /* exact, now */
    uint64_t sold;     /* exact deducts, now */
    uint64_t attempts_mps, sold_mps;
} hot_cand;

struct hsd_hot {
    hsd_daemon *d;
    hs_header *h;
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;    /* with cv: wakes the thread to exit */
    pthread_cond_t cv;     /* CLOCK_MONOTONIC */
    bool exit;             /* under mu */
    hot_cand *cand, *prev; /* this tick's and the last one's, HS_HK_ROWS * width each */
    size_t nprev;
    uint64_t prev_ms; /* monotonic ms of the last tick */
};

static int
by_slot(const void *a, const void *b)
{
    const hot_cand *x = a, *y = b;

    if (x->si != y->si)
        return x->si < y->si ? -1 : 1;
    return x->count > y->count ? -1 : x->count < y->count;
}

static int
by_heat(const void *a, const void *b)
{
    const hot_cand *x = a, *y = b;

    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    if (x->attempts_mps != y->attempts_mps)
        return x->attempts_mps > y->attempts_mps ? -1 : 1;
    return x->si < y->si ? -1 : x->si > y->si;
}

/* Read every bucket and age it; the candidates, one per SKU, sorted by
 * slot.  Returns their number. */
static size_t
hot_collect(hsd_hot *hot)
{
    hs_header *h = hot->h;
    _Atomic uint64_t *sketch = hs_sketch(h);
    const size_t buckets = (size_t)HS_HK_ROWS * h->sketch_width;
    size_t n = 0, out = 0;

    for (size_t i = 0; i < buckets; i++) {
        uint64_t w = atomic_load_explicit(&sketch[i], memory_order_relaxed);

        for (;;) {
            uint64_t cnt = HS_HK_COUNT(w), aged = cnt * 3 / 4;

            if (HS_HK_FP(w) == 0 || cnt == 0)
                break;
            /* Relaxed: the word is the whole state (segment_stats.h). */
            if (atomic_compare_exchange_weak_explicit(&sketch[i], &w,
                                                      aged == 0 ? 0 : HS_HK_WORD(HS_HK_FP(w), aged),
                                                      memory_order_relaxed, memory_order_relaxed)) {
                if (HS_HK_FP(w) - 1 < h->sku_capacity) {
                    hot->cand[n].si = HS_HK_FP(w) - 1;
                    hot->cand[n].count = cnt;
                    n++;
                }
                break;
            }
        }
    }
    qsort(hot->cand, n, sizeof(hot_cand), by_slot);
    /* one per SKU: the first of a run has the highest count */
    for (size_t i = 0; i < n; i++)
        if (out == 0 || hot->cand[out - 1].si != hot->cand[i].si)
            hot->cand[out++] = hot->cand[i];
    return out;
}

/* Rates of the candidates from the exact counters and the last tick's. */
static void
hot_rates(hsd_hot *hot, size_t n, uint64_t elapsed_ms)
{
    hs_sku_stats_slot *stats = hs_sku_stats_table(hot->h);
    size_t j = 0;

    for (size_t i = 0; i < n; i++) {
        hot_cand *c = &hot->cand[i];
        hs_sku_stats_slot *st = &stats[c->si];

        /* Relaxed: statistics. */
        c->sold = atomic_load_explicit(&st->count[HS_STAT_DEDUCT], memory_order_relaxed);
        c->attempts = c->sold +
                      atomic_load_explicit(&st->count[HS_STAT_RESERVE], memory_order_relaxed) +
                      atomic_load_explicit(&st->count[HS_STAT_SOLD_OUT], memory_order_relaxed) +
                      atomic_load_explicit(&st->count[HS_STAT_LIMIT_REFUSAL], memory_order_relaxed);
        while (j < hot->nprev && hot->prev[j].si < c->si)
            j++;
        if (j < hot->nprev && hot->prev[j].si == c->si && elapsed_ms > 0) {
            const hot_cand *p = &hot->prev[j];

            /* a reset in between: counted from zero */
            c->attempts_mps =
                (c->attempts >= p->attempts ? c->attempts - p->attempts : c->attempts) * 1000000 /
                elapsed_ms;
            c->sold_mps = (c->sold >= p->sold ? c->sold - p->sold : c->sold) * 1000000 / elapsed_ms;
        } else if (elapsed_ms > 0) {
            /* not in the sketch at the last tick: its count (before this
             * tick's aging) is what it gathered since, sampled */
            c->attempts_mps = c->count * HS_HK_SAMPLE * 1000000 / elapsed_ms;
            c->sold_mps = 0;
        }
    }
}

/* Publish the first k candidates (ranked) under the seqlock. */
static void
hot_publish(hsd_hot *hot, size_t n)
{
    hs_hot_table *t = hs_hot(hot->h);
    uint32_t k = n < hot->h->hot_k ? (uint32_t)n : hot->h->hot_k;
    uint32_t seq = atomic_load_explicit(&t->seq, memory_order_relaxed);

    /* odd, then (release fence) the fields: a reader that sees a field
     * stored below also sees seq odd or changed */
    atomic_store_explicit(&t->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (uint32_t i = 0; i < k; i++) {
        hs_hot_entry *e = &t->entry[i];

        atomic_store_explicit(&e->sku_index, hot->cand[i].si, memory_order_relaxed);
        atomic_store_explicit(&e->count, hot->cand[i].count, memory_order_relaxed);
        atomic_store_explicit(&e->attempts_mps, hot->cand[i].attempts_mps, memory_order_relaxed);
        atomic_store_explicit(&e->sold_mps, hot->cand[i].sold_mps, memory_order_relaxed);
    }
    atomic_store_explicit(&t->count, k, memory_order_relaxed);
    atomic_store_explicit(&t->published_unix_ms, hs_now_unix_us() / 1000, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->ticks, 1, memory_order_relaxed);
    /* Release: pairs with the reader's acquire of seq. */
    atomic_store_explicit(&t->seq, seq + 2, memory_order_release);
}

/* One tick: collect and age, rate, rank, publish; keep the candidates
 * (by slot) for the next tick's rates. */
static void
hot_tick(hsd_hot *hot)
{
    uint64_t now = hs_now_monotonic_ms();
    size_t n = hot_collect(hot);
    hot_cand *swap;

    hot_rates(hot, n, now - hot->prev_ms);
    swap = hot->prev;
    hot->prev = hot->cand;
    hot->cand = swap;
    hot->nprev = n;
    hot->prev_ms = now;
    /* rank a copy: prev stays sorted by slot */
    memcpy(hot->cand, hot->prev, n * sizeof(hot_cand));
    qsort(hot->cand, n, sizeof(hot_cand), by_heat);
    hot_publish(hot, n);
}

static void *
hsd_hot_main(void *arg)
{
    hsd_hot *hot = arg;
    struct timespec until;

    pthread_mutex_lock(&hot->mu);
    while (!hot->exit) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += HSD_HOT_TICK_MS / 1000;
        while (!hot->exit && pthread_cond_timedwait(&hot->cv, &hot->mu, &until) != ETIMEDOUT)
            ;
        if (hot->exit)
            break;
        pthread_mutex_unlock(&hot->mu);
        hot_tick(hot);
        pthread_mutex_lock(&hot->mu);
    }
    pthread_mutex_unlock(&hot->mu);
    return NULL;
}

/* Start the hot thread (segment READY); nothing when hot_k is 0.  0 / -1. */
int
hsd_hot_start(hsd_daemon *d)
{
    hsd_hot *hot;
    size_t buckets;
    pthread_condattr_t attr;
    int rc;

    if (d->seg->hot_k == 0)
        return 0;
    buckets = (size_t)HS_HK_ROWS * d->seg->sketch_width;
    hot = calloc(1, sizeof(*hot));
    if (hot != NULL) {
        hot->cand = calloc(buckets, sizeof(hot_cand));
        hot->prev = calloc(buckets, sizeof(hot_cand));
    }
    if (hot == NULL || hot->cand == NULL || hot->prev == NULL) {
        if (hot != NULL) {
            free(hot->cand);
            free(hot->prev);
        }
        free(hot);
        hsd_log(HSD_ERROR, "cannot start the hot thread: out of memory");
        return -1;
    }
    hot->d = d;
    hot->h = d->seg;
    hot->prev_ms = hs_now_monotonic_ms();
    pthread_mutex_init(&hot->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&hot->cv, &attr);
    pthread_condattr_destroy(&attr);
    rc = pthread_create(&hot->thread, NULL, hsd_hot_main, hot);
    if (rc != 0) {
        hsd_log(HSD_ERROR, "cannot start the hot thread: %s", strerror(rc));
        free(hot->cand);
        free(hot->prev);
        free(hot);
        return -1;
    }
    hot->running = true;
    d->hot = hot;
    return 0;
}

/* Stop and free it (any time; nothing when it never ran). */
void
hsd_hot_stop(hsd_daemon *d)
{
    hsd_hot *hot = d->hot;

    if (hot == NULL)
        return;
    pthread_mutex_lock(&hot->mu);
    hot->exit = true;
    pthread_cond_signal(&hot->cv);
    pthread_mutex_unlock(&hot->mu);
    pthread_join(hot->thread, NULL);
    pthread_cond_destroy(&hot->cv);
    pthread_mutex_destroy(&hot->mu);
    free(hot->cand);
    free(hot->prev);
    free(hot);
    d->hot = NULL;
}
