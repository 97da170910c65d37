/*-------------------------------------------------------------------------
 *
 * recovery.c
 *      Start-up recovery: fence and salvage an old segment, load the
 *      checkpoint, replay the queue, and build the new segment.
 *
 * Runs once, single-threaded, while the daemon holds DIR's lock file and
 * before it starts any thread.  What it shares:
 *
 *  - the OLD segment, still mapped by clients of the previous daemon (dead:
 *    we hold the lock it held).  Clients may still be reserving, filling
 *    and publishing ring slots in it.  We stop them with the fence
 *    (fetch_or HS_LSN_FENCED into next_lsn, seq_cst): once it is set no CAS
 *    on next_lsn succeeds, so every LSN that will ever exist in the old
 *    segment is below the value we fenced.  Each slot in (last LSN on
 *    disk, fenced next_lsn) is then settled on its seq word: either the
 *    writer's claim won, and we wait until it publishes (release store;
 *    we read the record after an acquire load) or its pid is gone, or our
 *    CAS to L | HS_SEQ_ABANDONED won and the writer's claim fails and it
 *    undoes (segment.h).  Exactly one of claim and abandonment wins.
 *    At the fence we also store state STOPPING (release), so that clients
 *    stop treating the old segment as served even while its dead daemon's
 *    heartbeat still looks fresh.  Once the salvage is durable we store
 *    DEAD (release): clients that load it (acquire) re-attach to the new
 *    segment.
 *  - the NEW segment: built here in state STARTING, which clients treat as
 *    "daemon down"; its magic is published by hs_segment_create() and every
 *    field written here is published by lifecycle.c's release store of
 *    READY.
 *
 * Order of the steps, and why:
 *   1. fence the old segment          nothing new may enter its ring
 *   2. load the checkpoint            counters up to C; its applied LSN A;
 *      open DIR/evicted.filter         its watermark F (evictor.c)
 *   3. scan the queue from min(C, A, F) + 1, cut a torn tail, fold records
 *      > C into the shadow, collect every order with a record > F (orders
 *      whose records are all <= F were evicted online and are in the
 *      filter)
 *   4. salvage the old ring after the on-disk tail: published records
 *      keep their LSNs, abandoned or damaged slots become NOOPs
 *   5. fdatasync the salvaged records AND every queue file (the old daemon
 *      may have died with written but unsynced data in the page cache)
 *   6. mark the old segment DEAD and unlink its name; only now may it go,
 *      since until step 5 its ring held the only copy of those records
 *   7. checkpoint (counters at the last LSN, new generation) and recycle
 *   8. create the new segment: counters, order index (but the orders the
 *      filter file says were evicted: filter_file.h), filter, positions;
 *      its evicted_lsn is the file's `evicted`
 *
 * Any failure refuses the start with one ERROR line naming the file,
 * offset and LSN where that is known; nothing damaged is skipped.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "order_map.h"

/*-------------------------------------------------------------------------
 * Replay
 *-------------------------------------------------------------------------
 */
typedef struct hsd_replay {
    hs_shadow *shadow;
    hs_lsn ckpt_lsn;  /* C: records after it are folded */
    hs_lsn index_lsn; /* F: orders with a record after it are indexed */
    hsd_order_map orders;
    uint64_t folded;
    hs_record buyer; /* the last record, when it was a take's BUYER (lsn 0: not) */
    char error[1024];
} hsd_replay;

/* Fold rec into the counters when it is after the checkpoint, and into the
 * order map when it names an order.  0, or 1 with rp->error set. */
static int
hsd_replay_record(hsd_replay *rp, const hs_record *rec)
{
    if (rec->lsn > rp->ckpt_lsn) {
        if (hs_shadow_fold(rp->shadow, rec) != 0) {
            snprintf(rp->error, sizeof(rp->error), "cannot replay LSN %" PRIu64 ": %s", rec->lsn,
                     hs_last_error());
            return 1;
        }
        rp->folded++;
    }
    if (rec->type == HS_REC_BUYER) {
        /* a take's count: its DEDUCT or RESERVE is the next record */
        if (rec->qty > 0 && (rec->flags & HS_REC_FLAG_GROUP_MORE))
            rp->buyer = *rec;
        return 0;
    }
    if (rec->type != HS_REC_NOOP && rec->type != HS_REC_PUT_SKU &&
        rec->type != HS_REC_ADD_STOCK && rec->order_len > 0 && rec->lsn > rp->index_lsn &&
        hsd_order_map_put(&rp->orders, rec,
                          rp->buyer.lsn != 0 && rp->buyer.lsn + 1 == rec->lsn ? &rp->buyer
                                                                               : NULL) != 0) {
        snprintf(rp->error, sizeof(rp->error), "out of memory indexing orders at LSN %" PRIu64,
                 rec->lsn);
        return 1;
    }
    rp->buyer.lsn = 0;
    return 0;
}

static int
hsd_replay_visit(const hs_record *rec, void *arg)
{
    return hsd_replay_record(arg, rec);
}

/*-------------------------------------------------------------------------
 * The old segment
 *-------------------------------------------------------------------------
 */
typedef struct hsd_old_segment {
    hs_header *h; /* NULL: none */
    uint64_t generation;
    hs_lsn next;    /* first LSN never reserved (fence bit cleared) */
    hs_lsn spilled; /* its spiller's position: handed to write(2) */
    hs_lsn applied;
    uint32_t state;
    pid_t pid;
} hsd_old_segment;

/* Map the old segment of d->dir, if any, and fence it.  0 (old->h NULL when
 * there is none), or -1 after an ERROR line. */
static int
hsd_fence_old(hsd_daemon *d, hsd_old_segment *old)
{
    char name[128];
    hs_result r;
    hs_lsn prev;

    memset(old, 0, sizeof(*old));
    hs_segment_name(d->dir, name, sizeof(name));
    r = hs_segment_map(d->dir, &old->h);
    if (r == HS_DAEMON_DOWN) {
        /* none, or one whose creator died before it published the magic:
         * nothing in it was ever served.  Remove the name (we own DIR). */
        if (hs_segment_unlink(d->dir) != 0) {
            hsd_log(HSD_ERROR, "%s", hs_last_error());
            return -1;
        }
        return 0;
    }
    if (r == HS_VERSION_MISMATCH) {
        hsd_log(HSD_ERROR,
                "refusing to start: %s; stop every client and daemon of that version, then "
                "remove it (rm /dev/shm%s) and start again",
                hs_last_error(), name);
        return -1;
    }
    if (r != HS_OK) {
        hsd_log(HSD_ERROR, "refusing to start: %s", hs_last_error());
        return -1;
    }

    /* The fence: from here on no client reserves an LSN in the old ring.
     * seq_cst so that it is ordered before every slot load below. */
    prev = atomic_fetch_or_explicit(&old->h->next_lsn, HS_LSN_FENCED, memory_order_seq_cst);
    old->next = prev & ~HS_LSN_FENCED;
    old->generation = old->h->generation;
    old->state = atomic_load_explicit(&old->h->state, memory_order_acquire);
    /* Not serving any more: a client that attaches or checks liveness now
     * (its dead daemon's heartbeat may look fresh for a few seconds) waits
     * for the new segment instead of reading a frozen one.  Pairs with the
     * clients' acquire load of state; DEAD follows once salvaged. */
    if (old->state == HS_SEGMENT_READY || old->state == HS_SEGMENT_STARTING)
        atomic_store_explicit(&old->h->state, HS_SEGMENT_STOPPING, memory_order_release);
    old->spilled = atomic_load_explicit(&old->h->spilled_lsn, memory_order_acquire);
    /* pairs with the drain's release store after its commit */
    old->applied = atomic_load_explicit(&old->h->applied_lsn, memory_order_acquire);
    old->pid = old->h->daemon_pid;
    hsd_log(HSD_LOG,
            "fenced the old segment %s: generation %" PRIu64 ", state %s, daemon pid %d, "
            "next LSN %" PRIu64 ", spilled LSN %" PRIu64 ", applied LSN %" PRIu64,
            name, old->generation, hs_segment_state_name(old->state), (int)old->pid, old->next,
            old->spilled, old->applied);
    return 0;
}

/* A NOOP record for an LSN whose ring slot holds no record to keep. */
static void
hsd_noop_record(hs_lsn lsn, hs_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->lsn = lsn;
    rec->type = HS_REC_NOOP;
    rec->timestamp_us = hs_now_unix_us();
}

/*
 * Settle every ring slot of the fenced old segment with LSN in (disk_last,
 * old->next) and return one record per LSN in *out (malloc'd, *nout of
 * them, LSNs disk_last + 1 onwards, dense): the published record when its
 * CRC verifies, else a NOOP.  Every slot not published is CASed to
 * abandoned first.  0, or -1 after an ERROR line: a slot the old spiller
 * had handed to write(2) that is neither on disk nor in the ring any more.
 *
 * The records keep their LSNs (abandoned and damaged slots become NOOPs,
 * as the spiller writes them), so salvage is idempotent: a start that dies
 * half-way through appending them leaves a queue that ends at some LSN L,
 * and the next start resumes at L + 1 in the same ring.
 */
static int
hsd_salvage_ring(hsd_old_segment *old, hs_lsn disk_last, hs_record **out, uint32_t *nout)
{
    hs_header *h = old->h;
    hs_ring_slot *ring = hs_ring(h);
    uint32_t mask = h->ring_capacity - 1;
    uint64_t published = 0, abandoned = 0, was_abandoned = 0, bad = 0, cut = 0;
    uint8_t *group; /* per record: its group's size and its place, 0 0 for none */
    hs_record *recs;
    uint32_t n = 0;

    *out = NULL;
    *nout = 0;
    if (old->next <= disk_last + 1)
        return 0;
    if (old->next - disk_last - 1 > h->ring_capacity) {
        hsd_log(HSD_ERROR,
                "refusing to start: the old segment reserved up to LSN %" PRIu64
                " but the queue ends at LSN %" PRIu64 ", more than its ring of %u slots holds",
                old->next - 1, disk_last, h->ring_capacity);
        return -1;
    }
    recs = malloc((size_t)(old->next - disk_last - 1) * sizeof(hs_record));
    group = calloc((size_t)(old->next - disk_last - 1), 2);
    if (recs == NULL || group == NULL) {
        hsd_log(HSD_ERROR, "out of memory salvaging the old ring");
        free(recs);
        free(group);
        return -1;
    }

    for (hs_lsn lsn = disk_last + 1; lsn < old->next; lsn++, n++) {
        hs_ring_slot *slot = &ring[lsn & mask];
        /* pairs with the writer's publishing store (release) */
        uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
        uint64_t waited_since = 0, logged = 0;

        for (;;) {
            if (seq == lsn) {
                hs_ring_record rr;
                uint32_t crc;
                char why[256];

                memcpy(&rr, &slot->rec, sizeof(rr));
                crc = slot->crc;
                if (hs_ring_record_crc(&rr) != crc) {
                    hsd_log(HSD_WARNING,
                            "old ring slot for LSN %" PRIu64 " fails its CRC (stored 0x%08x, "
                            "computed 0x%08x): written as a NOOP; it was never acknowledged "
                            "as durable (a synchronous-off client may have been told it was "
                            "taken)",
                            lsn, crc, hs_ring_record_crc(&rr));
                    hsd_noop_record(lsn, &recs[n]);
                    bad++;
                } else if (hsd_ring_to_record(h, &rr, lsn, &recs[n], why, sizeof(why)) != 0) {
                    hsd_log(HSD_WARNING,
                            "old ring slot for LSN %" PRIu64 " is not a valid record (%s): "
                            "written as a NOOP; it was never acknowledged as durable",
                            lsn, why);
                    hsd_noop_record(lsn, &recs[n]);
                    bad++;
                } else {
                    published++;
                    if (rr.group_size > 1) {
                        group[2 * n] = rr.group_size;
                        group[2 * n + 1] = rr.group_pos;
                    }
                }
                break;
            }
            if (seq == (lsn | HS_SEQ_ABANDONED)) {
                hsd_noop_record(lsn, &recs[n]);
                was_abandoned++;
                break;
            }
            if (lsn <= old->spilled) {
                hsd_log(HSD_ERROR,
                        "refusing to start: LSN %" PRIu64 " was written by the old daemon "
                        "(spilled up to LSN %" PRIu64 ") but the queue ends at LSN %" PRIu64
                        " and the ring slot holds %" PRIu64 " now: queue files lost data",
                        lsn, old->spilled, disk_last, seq);
                free(recs);
                free(group);
                return -1;
            }
            /* claimed by a live writer: it is filling the slot and will
             * publish (the fence stops only reservations); wait for it */
            if (hs_seq_is_claim(seq) && !hs_pid_gone(hs_seq_claimer(seq))) {
                uint64_t now = hs_now_monotonic_ms();

                if (waited_since == 0)
                    waited_since = now;
                else if (now - waited_since >= 10000 && now - logged >= 10000) {
                    logged = now;
                    hsd_log(HSD_WARNING,
                            "salvaging the old ring: the slot for LSN %" PRIu64
                            " has been claimed by live process %d for %" PRIu64
                            " ms without being published; waiting for it",
                            lsn, (int)hs_seq_claimer(seq), now - waited_since);
                }
                usleep(1000);
                seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
                continue;
            }
            /* reserved and unclaimed, or claimed by a dead writer: take the
             * slot.  On failure seq holds the new value (maybe just claimed
             * or published). */
            if (atomic_compare_exchange_strong_explicit(&slot->seq, &seq, lsn | HS_SEQ_ABANDONED,
                                                        memory_order_seq_cst,
                                                        memory_order_acquire)) {
                hsd_noop_record(lsn, &recs[n]);
                abandoned++;
                break;
            }
        }
    }
    /* Groups (baskets) go to the queue whole or as NOOPs, as the spiller
     * writes them: a group with a member lost above, or a member whose
     * group start was lost, becomes NOOPs.  The disk ends on a group
     * boundary (the recovery scan cuts a partial group), and a group's
     * LSNs were reserved together, so every group lies in disk_last + 1 ..
     * old->next - 1 whole. */
    for (uint32_t i = 0; i < n;) {
        uint32_t size = group[2 * i], k = 1;

        if (size == 0) {
            i++;
            continue;
        }
        if (group[2 * i + 1] == 0)
            while (k < size && i + k < n && group[2 * (i + k)] == size &&
                   group[2 * (i + k) + 1] == k)
                k++;
        if (group[2 * i + 1] != 0 || k < size) {
            uint32_t span = group[2 * i + 1] != 0 ? 1 : size;

            for (uint32_t j = i; j < i + span && j < n; j++) {
                hsd_noop_record(recs[j].lsn, &recs[j]);
                cut++;
            }
            hsd_log(HSD_WARNING,
                    "old ring: the group at LSN %" PRIu64 " is not whole: %u records "
                    "written as NOOPs (its writer held its units back)",
                    recs[i].lsn, span);
            i += span;
            continue;
        }
        i += size;
    }
    free(group);
    hsd_log(HSD_LOG,
            "salvaged the old ring, LSN %" PRIu64 "..%" PRIu64 ": %" PRIu64
            " published records, %" PRIu64 " reservations abandoned now, %" PRIu64
            " abandoned before, %" PRIu64 " damaged (NOOPs), %" PRIu64
            " of partial groups (NOOPs)",
            disk_last + 1, old->next - 1, published, abandoned, was_abandoned, bad, cut);
    *out = recs;
    *nout = n;
    return 0;
}

/* Mark the old segment DEAD, wake its waiters so they see it, unmap it and
 * remove its name. */
static int
hsd_retire_old(hsd_daemon *d, hsd_old_segment *old)
{
    if (old->h == NULL)
        return 0;
    /* pairs with the clients' acquire load of state on every call */
    atomic_store_explicit(&old->h->state, HS_SEGMENT_DEAD, memory_order_release);
    /* durability waiters sleep on durable_seq: wake them to see DEAD */
    atomic_fetch_add_explicit(&old->h->durable_seq, 1, memory_order_release);
    hs_futex_wake_all(&old->h->durable_seq);
    hs_segment_unmap(old->h);
    old->h = NULL;
    if (hs_segment_unlink(d->dir) != 0) {
        hsd_log(HSD_ERROR, "%s", hs_last_error());
        return -1;
    }
    return 0;
}

/*-------------------------------------------------------------------------
 * The new segment
 *-------------------------------------------------------------------------
 */

/* Refuse early, with a clear line, when /dev/shm cannot hold the segment
 * (a tmpfs that runs out while clients touch pages kills them with SIGBUS). */
static int
hsd_check_shm_space(const hs_segment_sizes *sizes)
{
    hs_header layout;
    struct statvfs vfs;
    uint64_t avail;

    memset(&layout, 0, sizeof(layout));
    hs_segment_layout(sizes, &layout);
    if (statvfs("/dev/shm", &vfs) != 0)
        return 0; /* no /dev/shm to ask: let shm_open speak */
    avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (avail < layout.total_size) {
        hsd_log(HSD_ERROR,
                "the segment needs %" PRIu64 " MiB (sku_capacity %u, order_capacity %u, "
                "ring_capacity %u) but /dev/shm has %" PRIu64 " MiB free: lower the capacities "
                "or enlarge /dev/shm",
                layout.total_size >> 20, sizes->sku_capacity, sizes->order_capacity,
                sizes->ring_capacity, avail >> 20);
        return -1;
    }
    return 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

typedef struct hsd_prefault {
    char *start;
    size_t len;
} hsd_prefault;

/* Fault in a range of the new segment (writable, contents untouched) while
 * the main thread installs orders into it: on a machine where first-touch
 * page faults are slow this halves the build of a big order index.  Only
 * page tables change, no byte of the segment: safe alongside the install.
 * Failure (an older kernel) only loses the speed-up. */
static void *
hsd_prefault_main(void *arg)
{
    hsd_prefault *p = arg;

    (void)madvise(p->start, p->len, MADV_POPULATE_WRITE);
    return NULL;
}

/* A SKU slot's sale session from the last SALE record (published by the
 * release store of READY). */
static void
hsd_build_sale(hs_sku_slot *slot, const hs_sale *sale)
{
    atomic_store_explicit(&slot->sale_start_ms, sale->starts_at_ms, memory_order_relaxed);
    atomic_store_explicit(&slot->sale_end_ms, sale->ends_at_ms, memory_order_relaxed);
    atomic_store_explicit(&slot->sale_limit, sale->per_buyer_limit, memory_order_relaxed);
    atomic_store_explicit(&slot->sale_paused, sale->paused ? 1 : 0, memory_order_relaxed);
}

/* The buyer table from the shadow's buyers' counts (per-buyer limits). */
static int
hsd_build_buyers(hsd_daemon *d, hs_header *h)
{
    for (uint32_t i = 0; i < d->shadow.buyer_capacity; i++) {
        const hs_shadow_buyer *b = &d->shadow.buyers[i];
        uint64_t ref;
        uint32_t si;
        hs_result r;

        if (b->buyer_len == 0)
            continue;
        r = hs_sku_find(h, b->sku, b->sku_len, true, &si);
        if (r == HS_OK)
            r = hs_buyer_install(h, si, b->buyer, b->buyer_len, (int32_t)b->units, &ref);
        if (r != HS_OK) {
            hsd_log(HSD_ERROR, "cannot rebuild the count of buyer %.*s of SKU %.*s: %s (%s)",
                    (int)b->buyer_len, b->buyer, (int)b->sku_len, b->sku, hs_result_name(r),
                    hs_last_error());
            return -1;
        }
    }
    return 0;
}

/* An indexed order's buyer: the entry its take counted for, unless its
 * SKU's buyers were forgotten since (a give-back then counts nothing). */
static hs_result
hsd_build_order_buyer(hsd_daemon *d, hs_header *h, const hsd_order_entry *o, const char *arena,
                      uint32_t si, uint32_t idx)
{
    const hs_shadow_sku *s = hs_shadow_get(&d->shadow, arena + o->sku_off, o->sku_len, false);
    uint64_t ref;
    hs_result r;

    if (s == NULL || o->buyer_lsn <= s->buyers_since)
        return HS_OK;
    r = hs_buyer_install(h, si, arena + o->buyer_off, o->buyer_len, 0, &ref);
    if (r != HS_OK && r != HS_DUPLICATE)
        return r;
    atomic_store_explicit(&hs_order_buyers(h)[idx].ref, ref, memory_order_relaxed);
    atomic_store_explicit(&hs_order_buyers(h)[idx].take_lsn, o->buyer_lsn, memory_order_relaxed);
    hs_order_table(h)[idx].buyer_counted = 1;
    return HS_OK;
}

static int
hsd_build_segment(hsd_daemon *d, hsd_replay *rp, hs_lsn last, const hs_filter_meta *filter,
                  hs_lsn applied, hs_lsn ckpt)
{
    hs_segment_sizes sizes = {
        .sku_capacity = hsd_pow2_ceil(d->settings.sku_capacity),
        .order_capacity = hsd_pow2_ceil(d->settings.order_capacity),
        .ring_capacity = hsd_pow2_ceil(d->settings.ring_capacity),
        .filter_blocks = (uint32_t)(filter->bytes / sizeof(hs_filter_block)),
        .buyer_capacity = hsd_pow2_ceil(d->settings.buyer_capacity),
        .hot_k = d->settings.hot_k,
    };
    const hs_lsn evicted = filter->evicted;
    hs_header *h;
    uint32_t skus = 0, orders = 0, not_indexed = 0;
    hsd_prefault prefault;
    pthread_t prefaulter;
    bool prefaulting = false;
    int rc = -1;

    if (hsd_check_shm_space(&sizes) != 0)
        return -1;
    h = hs_segment_create(d->dir, &sizes, d->generation, evicted, filter->legacy > 0);
    if (h == NULL) {
        hsd_log(HSD_ERROR, "%s", hs_last_error());
        return -1;
    }
    d->seg = h;
    /* immutable once READY, like the layout (segment.h) */
    h->waiter_spin_us = d->settings.waiter_spin_us;

    if (rp->orders.count > 65536) {
        /* the order table and the ring; each page is faulted once, by
         * whichever of the two threads gets there first */
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        uintptr_t start = ((uintptr_t)hs_order_table(h) + page - 1) & ~(uintptr_t)(page - 1);
        uintptr_t end = ((uintptr_t)h + h->total_size) & ~(uintptr_t)(page - 1);

        prefault.start = (char *)start;
        prefault.len = end > start ? end - start : 0;
        prefaulting = prefault.len > 0 &&
                      pthread_create(&prefaulter, NULL, hsd_prefault_main, &prefault) == 0;
    }

    for (uint32_t i = 0; i < d->shadow.capacity; i++) {
        const hs_shadow_sku *s = &d->shadow.slots[i];
        uint32_t idx;
        hs_result r;

        if (s->sku_len == 0)
            continue;
        r = hs_sku_find(h, s->sku, s->sku_len, true, &idx);
        if (r != HS_OK) {
            hsd_log(HSD_ERROR,
                    "cannot rebuild SKU %.*s: %s (%u SKUs, sku_capacity %u: raise sku_capacity)",
                    (int)s->sku_len, s->sku, hs_result_name(r), d->shadow.count,
                    sizes.sku_capacity);
            goto done;
        }
        /* published by the release store of READY */
        atomic_store_explicit(&hs_sku_table(h)[idx].available, s->available, memory_order_relaxed);
        hsd_build_sale(&hs_sku_table(h)[idx], &s->sale);
        skus++;
    }

    if (hsd_build_buyers(d, h) != 0)
        goto done;

    for (uint32_t e = 0; e < rp->orders.count; e++) {
        const hsd_order_entry *o = &rp->orders.entries[e];
        uint32_t sku_idx, idx;
        hs_result r;

        /* Evicted before: it stays evicted.  Never a live hold: the
         * evictor keeps those, so a filter hit is a false positive, and
         * skipping it would keep its units taken with nothing to expire
         * it. */
        if (o->state != HS_INDEX_RESERVED && hsd_filter_evicted(d, o->hash, o->lsn)) {
            not_indexed++;
            continue;
        }
        r = hs_sku_find(h, rp->orders.arena + o->sku_off, o->sku_len, true, &sku_idx);
        if (r == HS_OK)
            r = hs_order_install(h, rp->orders.arena + o->id_off, o->id_len, sku_idx,
                                 (int32_t)o->qty, (enum hs_order_slot_state)o->state, o->lsn, o->xid,
                                 o->deadline_ms, &idx);
        if (r == HS_OK && o->state == HS_INDEX_RESERVED)
            hsd_expirer_add(d, o->deadline_ms, idx, 0); /* a new slot: version 0 */
        if (r == HS_OK && o->buyer_len > 0)
            r = hsd_build_order_buyer(d, h, o, rp->orders.arena, sku_idx, idx);
        if (r != HS_OK) {
            hsd_log(HSD_ERROR,
                    "cannot rebuild the order index: %s after %u of %u orders with records "
                    "after LSN %" PRIu64 " (order_capacity %u): raise order_capacity",
                    hs_result_name(r), orders, rp->orders.count, evicted, sizes.order_capacity);
            goto done;
        }
        orders++;
    }

    /* after the orders: they were sorted with the file's bits */
    if (hsd_filter_load(d, h) != 0)
        goto done;
    atomic_store_explicit(&h->next_lsn, last + 1, memory_order_relaxed);
    atomic_store_explicit(&h->spilled_lsn, last, memory_order_relaxed);
    atomic_store_explicit(&h->durable_lsn, last, memory_order_relaxed);
    atomic_store_explicit(&h->applied_lsn, applied, memory_order_relaxed);
    atomic_store_explicit(&h->checkpoint_lsn, ckpt, memory_order_relaxed);
    atomic_store_explicit(&h->last_flush_unix_ms, hs_now_unix_us() / 1000, memory_order_relaxed);
    hsd_log(HSD_LOG,
            "built segment generation %" PRIu64 ": %u SKUs, %u orders indexed, %u evicted "
            "(evicted LSN %" PRIu64 ", filter LSN %" PRIu64 "), next LSN %" PRIu64 ", %" PRIu64
            " MiB",
            d->generation, skus, orders, not_indexed, evicted, filter->lsn, last + 1,
            h->total_size >> 20);
    rc = 0;
done:
    if (prefaulting)
        pthread_join(prefaulter, NULL);
    return rc;
}

/*-------------------------------------------------------------------------
 * The whole sequence
 *-------------------------------------------------------------------------
 */
/* CPU time of the whole process (every thread), in ms. */
static uint64_t
hsd_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
hsd_recover(hsd_daemon *d)
{
    uint64_t t0 = hs_now_monotonic_ms(), cpu0 = hsd_cpu_ms();
    hsd_old_segment old;
    hsd_replay rp;
    hs_filter_meta filter;
    hs_qf_scan_result res;
    hs_record *salvage = NULL;
    uint32_t nsalvage = 0;
    hs_lsn ckpt, applied, from, last, start;
    char error[1024];
    int loaded, nfiles;
    hs_qf_file *files;

    memset(&rp, 0, sizeof(rp));

    /* 1. fence */
    if (hsd_fence_old(d, &old) != 0)
        return -1;

    /* 2. checkpoint.  The shadow starts small and grows with the SKUs. */
    if (hs_shadow_init(&d->shadow, 1024) != 0) {
        hsd_log(HSD_ERROR, "%s", hs_last_error());
        goto fail;
    }
    loaded = hs_checkpoint_load(d->dir, &d->shadow);
    if (loaded < 0) {
        hsd_log(HSD_ERROR, "refusing to start: %s", hs_last_error());
        goto fail;
    }
    ckpt = d->shadow.lsn;
    applied = d->shadow.applied_lsn;
    if (old.h != NULL && old.applied > applied)
        applied = old.applied;
    if (hsd_filter_open(d, loaded > 0, applied, &filter) != 0)
        goto fail;
    from = (ckpt < applied ? ckpt : applied);
    if (filter.lsn < from)
        from = filter.lsn;
    from++;
    if (loaded)
        hsd_log(HSD_LOG,
                "loaded checkpoint: LSN %" PRIu64 ", applied LSN %" PRIu64 ", generation %" PRIu64
                ", %u SKUs",
                ckpt, d->shadow.applied_lsn, d->shadow.generation, d->shadow.count);
    else
        hsd_log(HSD_LOG, "no checkpoint in %s: starting from an empty state", d->dir);
    d->generation =
        (d->shadow.generation > old.generation ? d->shadow.generation : old.generation) + 1;

    /* 3. replay */
    nfiles = hs_qf_list(d->dir, &files);
    if (nfiles < 0) {
        hsd_log(HSD_ERROR, "refusing to start: %s", hs_last_error());
        goto fail;
    }
    {
        /* at most one order per record of >= 56 bytes, and never more
         * than the order index can take */
        uint64_t bytes = 0, estimate;
        struct stat st;

        for (int i = 0; i < nfiles; i++)
            if (stat(files[i].path, &st) == 0)
                bytes += (uint64_t)st.st_size;
        estimate = bytes / 56;
        if (estimate > hsd_pow2_ceil(d->settings.order_capacity))
            estimate = hsd_pow2_ceil(d->settings.order_capacity);
        if (hsd_order_map_reserve(&rp.orders, estimate) != 0) {
            hsd_log(HSD_ERROR, "out of memory reserving the order map for %" PRIu64 " orders",
                    estimate);
            free(files);
            goto fail;
        }
    }
    free(files);
    rp.shadow = &d->shadow;
    rp.ckpt_lsn = ckpt;
    rp.index_lsn = filter.lsn;
    if (hs_qf_scan(d->dir, from, true, hsd_replay_visit, &rp, &res) != 0) {
        if (rp.error[0] != '\0')
            hsd_log(HSD_ERROR, "refusing to start: %s", rp.error);
        else
            hsd_log(HSD_ERROR, "refusing to start: queue damaged: %s", hs_last_error());
        goto fail;
    }
    if (res.tail_cut)
        hsd_log(HSD_LOG,
                "cut a torn tail from queue file %s at offset %" PRIu64 ": %" PRIu64
                " bytes removed (a write the previous daemon did not finish)",
                res.tail_path, res.tail_offset, res.tail_bytes);
    last = res.last_lsn;
    if (nfiles == 0 && ckpt > 0) {
        hsd_log(HSD_ERROR,
                "refusing to start: the checkpoint is at LSN %" PRIu64 " but %s/%s holds no "
                "queue file",
                ckpt, d->dir, HS_QF_SUBDIR);
        goto fail;
    }
    start = res.first_lsn ? res.first_lsn : last + 1;
    if (nfiles > 0 && start > from) {
        hsd_log(HSD_ERROR,
                "refusing to start: recovery needs the queue from LSN %" PRIu64
                " (checkpoint LSN %" PRIu64 ", applied LSN %" PRIu64 ", filter LSN %" PRIu64
                ") but it starts at LSN %" PRIu64,
                from, ckpt, applied, filter.lsn, start);
        goto fail;
    }
    if (last < ckpt) {
        hsd_log(HSD_ERROR,
                "refusing to start: the checkpoint is at LSN %" PRIu64
                " but the queue ends at LSN %" PRIu64 ": queue files lost data",
                ckpt, last);
        goto fail;
    }
    d->recovered_records = rp.folded;
    hsd_log(HSD_LOG,
            "replayed the queue: %" PRIu64 " records after checkpoint LSN %" PRIu64
            " folded, %" PRIu64 " records read from LSN %" PRIu64 ", last LSN %" PRIu64,
            rp.folded, ckpt, res.records, from, last);

    /* 4-5. salvage, then make everything durable */
    if (old.h != NULL && hsd_salvage_ring(&old, last, &salvage, &nsalvage) != 0)
        goto fail;
    d->writer = hs_qf_writer_open(d->dir, last, d->settings.queue_file_size);
    if (d->writer == NULL) {
        hsd_log(HSD_ERROR, "refusing to start: %s", hs_last_error());
        goto fail;
    }
    for (uint32_t i = 0; i < nsalvage; i++) {
        last = salvage[i].lsn;
        if (hsd_replay_record(&rp, &salvage[i]) != 0) {
            hsd_log(HSD_ERROR, "refusing to start: %s", rp.error);
            goto fail;
        }
        if (hs_qf_writer_append(d->writer, &salvage[i]) != 0) {
            hsd_log(HSD_ERROR, "refusing to start: %s", hs_last_error());
            goto fail;
        }
    }
    if (hs_qf_writer_sync(d->writer) != 0) {
        hsd_log(HSD_ERROR, "refusing to start: %s", hs_last_error());
        goto fail;
    }
    if (hsd_sync_queue_files(d->dir) != 0)
        goto fail;
    for (uint32_t i = 0; i < nsalvage; i++)
        if (salvage[i].type != HS_REC_NOOP)
            d->salvaged_records++;
    if (nsalvage > 0)
        hsd_log(HSD_LOG,
                "appended LSN %" PRIu64 "..%" PRIu64 " from the old ring (%" PRIu64
                " records, the rest NOOPs) and synced them",
                last - nsalvage + 1, last, d->salvaged_records);
    free(salvage);
    salvage = NULL;

    /* 6. the old segment may go now */
    if (hsd_retire_old(d, &old) != 0)
        goto fail;

    /* 7. checkpoint the recovered state under the new generation */
    if (applied > last)
        applied = last;
    atomic_store_explicit(&d->applied_lsn, applied, memory_order_relaxed);
    d->shadow.applied_lsn = applied;
    d->shadow.generation = d->generation;
    if (hsd_checkpoint_now(d, &d->shadow, error, sizeof(error)) != 0) {
        hsd_log(HSD_ERROR, "refusing to start: %s", error);
        goto fail;
    }

    /* 8. the new segment (state STARTING) */
    /* orders whose every record is <= F are in the filter and were not
     * collected; evicted_lsn = the file's `evicted` */
    if (hsd_build_segment(d, &rp, last, &filter, applied, last) != 0)
        goto fail;

    hsd_order_map_free(&rp.orders);
    d->recovery_ms = hs_now_monotonic_ms() - t0;
    d->recovery_cpu_ms = hsd_cpu_ms() - cpu0;
    hsd_log(HSD_LOG,
            "recovery done in %" PRIu64 " ms (%" PRIu64 " ms of CPU): %" PRIu64
            " queue records replayed, %" PRIu64 " ring records salvaged, generation %" PRIu64
            ", last LSN %" PRIu64,
            d->recovery_ms, d->recovery_cpu_ms, d->recovered_records, d->salvaged_records,
            d->generation, last);
    return 0;

fail:
    free(salvage);
    hsd_order_map_free(&rp.orders);
    if (d->seg != NULL) {
        hs_segment_unmap(d->seg);
        d->seg = NULL;
        hs_segment_unlink(d->dir);
    }
    if (old.h != NULL)
        hs_segment_unmap(old.h); /* fenced, still named: the next start salvages it */
    return -1;
}
