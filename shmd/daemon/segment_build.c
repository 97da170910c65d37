/*-------------------------------------------------------------------------
 *
 * segment_build.c
 *      The daemon's half of the segment: create it, install recovered
 *      orders into it while it is STARTING, unlink it.
 *
 * What it shares: the new segment, which no client trusts before the
 * magic is stored (release, last) and state becomes READY (release, in
 * lifecycle.c): everything written here before that is published by
 * those stores.  One thread (recovery) runs all of it.  Must not be
 * linked into libhotstock or hotstock.so.
 *
 *-------------------------------------------------------------------------
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define HS_HAVE_X86_CRC 1
#endif

#include "daemon.h"

#ifdef MADV_POPULATE_WRITE
#define HS_MADV_POPULATE_WRITE MADV_POPULATE_WRITE
#else
#define HS_MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* See segment.h.  The new segment is all zeros but for the header; the
 * returned mapping is the caller's (hs_segment_unmap). */
hs_header *
hs_segment_create(const char *real_dir, const hs_segment_sizes *sizes, uint64_t generation,
                  hs_lsn evicted_lsn, bool filter_legacy)
{
    char name[128];
    hs_header layout;
    hs_header *h;
    int fd;

    memset(&layout, 0, sizeof(layout));
    hs_segment_layout(sizes, &layout);
    hs_segment_name(real_dir, name, sizeof(name));

    fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        hs_set_error("cannot create segment %s for %s: %s", name, real_dir, strerror(errno));
        return NULL;
    }
    if (ftruncate(fd, (off_t)layout.total_size) != 0) {
        hs_set_error("cannot size segment %s to %" PRIu64 " bytes: %s", name, layout.total_size,
                     strerror(errno));
        goto fail;
    }
    h = mmap(NULL, layout.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        hs_set_error("cannot map segment %s (%" PRIu64 " bytes): %s", name, layout.total_size,
                     strerror(errno));
        goto fail;
    }
    close(fd);
    /* Huge pages where /dev/shm allows them (mounted huge=advise or
     * within_size; see README).  Every attached process needs its own
     * translation of each page it touches, and a new order id lands on a
     * random page of the order index: with 4 kB pages and tens of backends
     * that is a TLB (on a VM, a shadow page table) miss per deduction, up
     * to half of a deduct's CPU time at 32 clients.  A shmem page is
     * allocated huge only through a mapping that asked for it, so the
     * daemon populates the whole segment now; the clients' MAP_POPULATE
     * then maps those pages 2 MB at a time.  Either call may fail (older
     * kernel, a mount without huge=): the segment then lives on 4 kB pages.
     * Populating also takes all of the segment's memory now, so a full
     * /dev/shm shows at start rather than as a SIGBUS later. */
    (void)madvise(h, layout.total_size, MADV_HUGEPAGE);
    (void)madvise(h, layout.total_size, HS_MADV_POPULATE_WRITE);

    h->layout_version = layout.layout_version;
    h->header_size = layout.header_size;
    h->generation = generation;
    h->total_size = layout.total_size;
    h->sku_capacity = layout.sku_capacity;
    h->order_capacity = layout.order_capacity;
    h->ring_capacity = layout.ring_capacity;
    h->daemon_pid = (int32_t)getpid();
    h->sku_offset = layout.sku_offset;
    h->order_offset = layout.order_offset;
    h->ring_offset = layout.ring_offset;
    h->stripe_offset = layout.stripe_offset;
    h->filter_offset = layout.filter_offset;
    h->filter_blocks = layout.filter_blocks;
    h->buyer_capacity = layout.buyer_capacity;
    h->buyer_offset = layout.buyer_offset;
    h->order_buyer_offset = layout.order_buyer_offset;
    h->filter_legacy = filter_legacy ? 1 : 0;
    h->stats_offset = layout.stats_offset;
    h->sketch_offset = layout.sketch_offset;
    h->hot_offset = layout.hot_offset;
    h->sketch_width = layout.sketch_width;
    h->hot_k = layout.hot_k;
    atomic_store_explicit(&h->evicted_lsn, evicted_lsn, memory_order_relaxed);
    h->created_unix_ms = hs_now_unix_us() / 1000;
    snprintf(h->data_dir, sizeof(h->data_dir), "%s", real_dir);
    atomic_store_explicit(&h->heartbeat_ms, hs_now_monotonic_ms(), memory_order_relaxed);
    atomic_store_explicit(&h->state, HS_SEGMENT_STARTING, memory_order_relaxed);
    /* Publishes every field above; pairs with the acquire load of the magic
     * in hs_segment_map(). */
    __atomic_store_n(&h->magic, HS_SEGMENT_MAGIC, __ATOMIC_RELEASE);
    return h;

fail:
    close(fd);
    shm_unlink(name);
    return NULL;
}
int
hs_segment_unlink(const char *real_dir)
{
    char name[128];

    hs_segment_name(real_dir, name, sizeof(name));
    if (shm_unlink(name) != 0 && errno != ENOENT) {
        hs_set_error("cannot unlink segment %s: %s", name, strerror(errno));
        return -1;
    }
    return 0;
}

static bool
valid_len(const char *s, size_t len, size_t max)
{
    return s != NULL && len >= 1 && len <= max;
}

/* See segment.h.  Daemon build only (state STARTING, one thread): inserts
 * with a settled state and no owner (recorded: the LSN of the record that
 * settled it, stored with that record's type; deducted_lsn = recorded, but
 * 0 for REFUNDED and FAILED), counting
 * itself in `passed` of the slots it passes (segment.h, EVICTION).  HS_OK,
 * HS_DUPLICATE (*index: the id is there already), HS_TABLE_FULL,
 * HS_BAD_ARGUMENT (bad length or a non-final state). */
hs_result
hs_order_install(hs_header *h, const char *order_id, size_t len, uint32_t sku_index, int32_t qty,
                 enum hs_order_slot_state state, hs_lsn recorded, uint64_t xid,
                 uint64_t deadline_ms, uint32_t *index)
{
    const uint64_t hash = hs_hash(order_id, len);
    const uint32_t mask = h->order_capacity - 1;
    hs_order_slot *table = hs_order_table(h);

    if (!valid_len(order_id, len, HS_ORDER_ID_MAX) ||
        (state != HS_INDEX_DEDUCTED && state != HS_INDEX_FAILED && state != HS_INDEX_REFUNDED &&
         state != HS_INDEX_RESERVED && state != HS_INDEX_CANCELLED &&
         state != HS_INDEX_EXPIRED)) {
        hs_set_error("cannot install order: bad id length %zu or state %d", len, (int)state);
        return HS_BAD_ARGUMENT;
    }
    for (uint32_t i = 0; i <= mask; i++) {
        uint32_t k = (uint32_t)(hash + i) & mask;
        hs_order_slot *o = &table[k];
        uint64_t w = atomic_load_explicit(&o->state, memory_order_relaxed);

        if (HS_STATE_OF(w) == HS_INDEX_EMPTY) {
            o->hash = hash;
            o->order_len = (uint8_t)len;
            memcpy(o->order_id, order_id, len);
            o->order_id[len] = '\0';
            o->sku_index = sku_index;
            o->qty = qty;
            /* Relaxed: the segment is published as a whole by the release
             * store of READY in the header. */
            atomic_store_explicit(&o->recorded,
                                  recorded != 0 ? HS_RECORDED_WORD(recorded,
                                                                   hs_record_of_state(state))
                                                : 0,
                                  memory_order_relaxed);
            atomic_store_explicit(&o->deducted_lsn,
                                  state == HS_INDEX_REFUNDED || state == HS_INDEX_FAILED ? 0
                                                                                         : recorded,
                                  memory_order_relaxed);
            atomic_store_explicit(&o->xid, xid, memory_order_relaxed);
            atomic_store_explicit(&o->deadline_ms, deadline_ms, memory_order_relaxed);
            o->buyer_counted = 0;
            atomic_store_explicit(&o->state, HS_STATE_WORD(state, 0), memory_order_relaxed);
            atomic_fetch_add_explicit(&h->order_count, 1, memory_order_relaxed);
            for (uint32_t j = 0; j < i; j++)
                atomic_fetch_add_explicit(&table[(uint32_t)(hash + j) & mask].passed, 1,
                                          memory_order_relaxed);
            *index = k;
            return HS_OK;
        }
        if (HS_STATE_OF(w) != HS_INDEX_DEAD && o->hash == hash && o->order_len == len &&
            memcmp(o->order_id, order_id, len) == 0) {
            *index = k;
            return HS_DUPLICATE;
        }
    }
    hs_set_error("order index is full (%u slots) while building the segment", h->order_capacity);
    return HS_TABLE_FULL;
}
