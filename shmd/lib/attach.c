/*-------------------------------------------------------------------------
 *
 * attach.c
 *      Attach, liveness and re-attachment, status: the first step of every call.
 *
 * Every call starts with client_segment() (client_internal.h): state
 * (acquire, pairs with the daemon's release store of READY) and
 * heartbeat_ms (relaxed).  Anything but a READY, fresh segment sends the
 * call here to re-attach: map the name again, and switch to it if it is a
 * newer generation that is READY and fresh; otherwise HS_DAEMON_DOWN.  A
 * replaced mapping is retired, not unmapped, until hs_detach(): other
 * threads may still read it (a DEAD one keeps only a private copy of its
 * header: segment_release_pages()).  Re-attachment is serialised by c->lock; the
 * fast path takes no lock.  Must not create or unlink a segment.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <sys/mman.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"

_Atomic pid_t hs_self_pid;
static pthread_once_t hs_self_pid_once = PTHREAD_ONCE_INIT;

static void
hs_self_pid_refresh(void)
{
    atomic_store_explicit(&hs_self_pid, getpid(), memory_order_relaxed);
}

static void
hs_self_pid_init(void)
{
    hs_self_pid_refresh();
    pthread_atfork(NULL, NULL, hs_self_pid_refresh);
}

pid_t
hs_self_pid_first(void)
{
    pthread_once(&hs_self_pid_once, hs_self_pid_init);
    return atomic_load_explicit(&hs_self_pid, memory_order_relaxed);
}

/*-------------------------------------------------------------------------
 * Small helpers
 *-------------------------------------------------------------------------
 */

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One step of a wait: spin, then yield, then sleep 50 us .. 1 ms. */
void
backoff(unsigned *round)
{
    unsigned n = (*round)++;

    if (n < HS_SPIN_ROUNDS) {
        cpu_relax();
    } else if (n < HS_SPIN_ROUNDS + HS_YIELD_ROUNDS) {
        sched_yield();
    } else {
        unsigned k = n - HS_SPIN_ROUNDS - HS_YIELD_ROUNDS;
        struct timespec ts = {0, (long)(k < 20 ? 50 + k * 50 : 1000) * 1000L};
        nanosleep(&ts, NULL);
    }
}

bool
valid_len(const char *s, size_t len, size_t max)
{
    return s != NULL && len >= 1 && len <= max;
}

static const char *
segment_state_name(uint32_t state)
{
    switch (state) {
    case HS_SEGMENT_STARTING:
        return "starting";
    case HS_SEGMENT_READY:
        return "ready";
    case HS_SEGMENT_STOPPING:
        return "stopping";
    case HS_SEGMENT_DEAD:
        return "dead (replaced by a newer daemon)";
    default:
        return "unknown";
    }
}

/*-------------------------------------------------------------------------
 * Liveness and re-attachment
 *-------------------------------------------------------------------------
 */

/* Set the error text for a segment that does not serve. */
void
report_not_serving(const hs_client *c, hs_header *h)
{
    uint32_t state = atomic_load_explicit(&h->state, memory_order_acquire);
    uint64_t beat = atomic_load_explicit(&h->heartbeat_ms, memory_order_relaxed);
    uint64_t now = coarse_now_ms();

    if (state != HS_SEGMENT_READY)
        hs_set_error("hotstockd of %s is down: segment generation %" PRIu64 " is %s", c->dir,
                     h->generation, segment_state_name(state));
    else if (now <= beat || now - beat < HS_HEARTBEAT_DEAD_MS)
        hs_set_error("hotstockd of %s is down: process %d is gone", c->dir, (int)h->daemon_pid);
    else
        hs_set_error("hotstockd of %s is down: no heartbeat for %" PRIu64 " ms (pid %d)", c->dir,
                     now > beat ? now - beat : 0, (int)h->daemon_pid);
}

/*
 * A retired segment that its daemon's successor marked DEAD is never read
 * for its content again, but its mapping would pin the whole (unlinked)
 * shared-memory object until hs_detach(): a process that outlives many
 * daemon restarts, like the drain, would hold a segment per restart.  So
 * its pages are swapped, in one mremap() (atomic for the other threads of
 * this process), for private anonymous memory that holds a copy of the
 * header and zeros elsewhere: a thread still inside a call on it reads the
 * same capacities and offsets, state DEAD, empty tables and a fenced ring,
 * answers "daemon down" and re-attaches; whatever it writes is private.
 * On any failure the mapping stays as it was.
 */
static void
segment_release_pages(hs_header *h)
{
    size_t size = h->total_size;
    void *fresh;

    if (atomic_load_explicit(&h->state, memory_order_acquire) != HS_SEGMENT_DEAD)
        return;
    fresh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
    if (fresh == MAP_FAILED)
        return;
    memcpy(fresh, h, h->header_size);
    if (mremap(fresh, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, h) == MAP_FAILED)
        munmap(fresh, size);
}

/* Slow path of client_segment(): the mapping `seen` does not serve.  Map the
 * name again; switch to it when it serves. */
hs_header *
client_reattach(hs_client *c, hs_header *seen, hs_result *res)
{
    hs_header *cur, *fresh;
    hs_result r;

    (void)seen;
    pthread_mutex_lock(&c->lock);
    /* Relaxed: the mutex orders this with the store below in other threads. */
    cur = atomic_load_explicit(&c->seg, memory_order_relaxed);
    if (segment_serving(cur)) {
        /* Another thread switched already, or the daemon came back to life
         * (a heartbeat late after SIGSTOP/SIGCONT). */
        pthread_mutex_unlock(&c->lock);
        return cur;
    }
    r = hs_segment_map(c->dir, &fresh);
    if (r != HS_OK) {
        pthread_mutex_unlock(&c->lock);
        *res = r;
        return NULL;
    }
    /* Serving while cur does not: another segment (a newer generation, or
     * a directory made anew).  Were it cur's object come back to life in
     * between, a second mapping of it would do no harm either.  The pid
     * check refuses a killed daemon's segment whose heartbeat is not stale
     * yet (one system call, on this slow path only). */
    if (!segment_serving(fresh) || hs_pid_gone(fresh->daemon_pid)) {
        report_not_serving(c, fresh);
        hs_segment_unmap(fresh);
        pthread_mutex_unlock(&c->lock);
        *res = HS_DAEMON_DOWN;
        return NULL;
    }
    {
        hs_header **grown = realloc(c->retired, (c->retired_count + 1) * sizeof(*grown));
        /* Out of memory: the old mapping is leaked rather than unmapped
         * under a thread that may still read it. */
        if (grown != NULL) {
            c->retired = grown;
            c->retired[c->retired_count++] = cur;
        }
    }
    segment_release_pages(cur);
    /* Release: publishes the new mapping; pairs with the acquire load in
     * client_segment(). */
    atomic_store_explicit(&c->seg, fresh, memory_order_release);
    pthread_mutex_unlock(&c->lock);
    return fresh;
}

/* Is the daemon behind h still there?  For wait loops only: with
 * check_pid, a system call (kill(pid, 0)) notices a killed daemon before
 * its heartbeat goes stale. */
bool
daemon_check(const hs_client *c, hs_header *h, bool check_pid, hs_result *res)
{
    int32_t err;

    if (!segment_serving(h)) {
        report_not_serving(c, h);
        *res = HS_DAEMON_DOWN;
        return false;
    }
    if (check_pid && hs_pid_gone(h->daemon_pid)) {
        hs_set_error("hotstockd of %s is down: process %d is gone", c->dir, (int)h->daemon_pid);
        *res = HS_DAEMON_DOWN;
        return false;
    }
    /* Acquire: pairs with the spiller's release store of spill_errno. */
    err = atomic_load_explicit(&h->spill_errno, memory_order_acquire);
    if (err != 0) {
        hs_set_error("hotstockd of %s cannot write its queue: %s", c->dir, strerror(err));
        *res = HS_IO_ERROR;
        return false;
    }
    return true;
}

bool
daemon_alive(const hs_client *c, hs_header *h, hs_result *res)
{
    return daemon_check(c, h, true, res);
}

/*-------------------------------------------------------------------------
 * The spiller, the ring
 *-------------------------------------------------------------------------
 */

/*-------------------------------------------------------------------------
 * Attach
 *-------------------------------------------------------------------------
 */

hs_result
hs_attach(const char *dir, hs_client **out)
{
    char real[PATH_MAX];
    hs_header *h;
    hs_client *c;
    hs_result r;

    if (out == NULL || dir == NULL || dir[0] == '\0') {
        hs_set_error("hs_attach: no data directory given");
        return HS_BAD_ARGUMENT;
    }
    *out = NULL;
    if (realpath(dir, real) == NULL) {
        hs_set_error("cannot resolve data directory %s: %s", dir, strerror(errno));
        return HS_IO_ERROR;
    }
    r = hs_segment_map(real, &h);
    if (r != HS_OK)
        return r;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        hs_segment_unmap(h);
        hs_set_error("out of memory attaching to %s", real);
        return HS_IO_ERROR;
    }
    snprintf(c->dir, sizeof(c->dir), "%s", real);
    /* As in client_reattach(): a killed daemon's heartbeat stays fresh for
     * a while, its process does not. */
    if (!segment_serving(h) || hs_pid_gone(h->daemon_pid)) {
        report_not_serving(c, h);
        hs_segment_unmap(h);
        free(c);
        return HS_DAEMON_DOWN;
    }
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->seg, h);
    (void)self_pid();
    *out = c;
    return HS_OK;
}

/* Unmaps every mapping of c and frees it.  No call on c may be running. */
void
hs_detach(hs_client *c)
{
    if (c == NULL)
        return;
    hs_segment_unmap(atomic_load_explicit(&c->seg, memory_order_relaxed));
    for (size_t i = 0; i < c->retired_count; i++)
        hs_segment_unmap(c->retired[i]);
    free(c->retired);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/*-------------------------------------------------------------------------
 * Positions and status
 *-------------------------------------------------------------------------
 */

hs_lsn
hs_evicted_lsn(hs_client *c)
{
    hs_result r;
    hs_header *h;

    if (c == NULL)
        return 0;
    h = client_segment(c, &r);
    if (h == NULL) /* the last known value; immutable per generation */
        h = atomic_load_explicit(&c->seg, memory_order_acquire);
    /* seq_cst: see segment.h, EVICTION. */
    return atomic_load(&h->evicted_lsn);
}

hs_result
hs_publish_applied(hs_client *c, hs_lsn applied)
{
    hs_header *h;
    hs_result r = HS_OK;
    uint64_t cur;

    if (c == NULL) {
        hs_set_error("hs_publish_applied: no client");
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        return r;
    /* Relaxed first guess; the CAS keeps applied_lsn from going back. */
    cur = atomic_load_explicit(&h->applied_lsn, memory_order_relaxed);
    while (cur < applied) {
        /* Release: pairs with the daemon's acquire load before it recycles
         * files or persists the position. */
        if (atomic_compare_exchange_weak_explicit(&h->applied_lsn, &cur, applied,
                                                  memory_order_release, memory_order_relaxed))
            break;
    }
    return HS_OK;
}

/* Fills out from the current mapping; when no daemon serves, it is still
 * filled from the last mapping and the failure is returned. */
hs_result
hs_get_status(hs_client *c, hs_status *out)
{
    hs_header *h;
    hs_result r = HS_OK;
    uint64_t next, spilled, beat, now;

    if (c == NULL || out == NULL) {
        hs_set_error("hs_get_status: no client or no output");
        return HS_BAD_ARGUMENT;
    }
    h = client_segment(c, &r);
    if (h == NULL)
        h = atomic_load_explicit(&c->seg, memory_order_acquire);
    memset(out, 0, sizeof(*out));
    /* Relaxed everywhere: a snapshot for people and tools, not a decision. */
    out->generation = h->generation;
    out->daemon_pid = h->daemon_pid;
    out->state = atomic_load_explicit(&h->state, memory_order_acquire);
    next = atomic_load_explicit(&h->next_lsn, memory_order_relaxed) & ~HS_LSN_FENCED;
    spilled = atomic_load_explicit(&h->spilled_lsn, memory_order_relaxed);
    out->next_lsn = next;
    out->spilled_lsn = spilled;
    out->durable_lsn = atomic_load_explicit(&h->durable_lsn, memory_order_relaxed);
    out->applied_lsn = atomic_load_explicit(&h->applied_lsn, memory_order_relaxed);
    out->checkpoint_lsn = atomic_load_explicit(&h->checkpoint_lsn, memory_order_relaxed);
    out->evicted_lsn = atomic_load(&h->evicted_lsn);
    out->sku_count = atomic_load_explicit(&h->sku_count, memory_order_relaxed);
    out->sku_capacity = h->sku_capacity;
    out->order_count = atomic_load_explicit(&h->order_count, memory_order_relaxed);
    out->order_capacity = h->order_capacity;
    out->ring_used = next > spilled + 1 ? (uint32_t)(next - spilled - 1) : 0;
    out->ring_capacity = h->ring_capacity;
    beat = atomic_load_explicit(&h->heartbeat_ms, memory_order_relaxed);
    now = hs_now_monotonic_ms();
    out->heartbeat_age_ms = now > beat ? now - beat : 0;
    out->abandoned_records = atomic_load_explicit(&h->abandoned_records, memory_order_relaxed);
    /* Relaxed: statistics. */
    out->evictions = atomic_load_explicit(&h->evictions, memory_order_relaxed);
    out->filter_ids = atomic_load_explicit(&h->filter_ids, memory_order_relaxed);
    out->filter_bytes = (uint64_t)h->filter_blocks * sizeof(hs_filter_block);
    out->last_flush_unix_ms = atomic_load_explicit(&h->last_flush_unix_ms, memory_order_relaxed);
    out->buyer_count = atomic_load_explicit(&h->buyer_count, memory_order_relaxed);
    out->buyer_capacity = h->buyer_capacity;
    out->buyers_forgotten = atomic_load_explicit(&h->buyers_forgotten, memory_order_relaxed);
    return r;
}
