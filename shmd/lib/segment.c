/*-------------------------------------------------------------------------
 *
 * segment.c
 *      The shared-memory segment as a client sees it: its name, layout,
 *      mapping and unmapping.
 *
 * What it shares: the POSIX shared-memory object of one data directory
 * (layout and protocol in segment.h).  Only hotstockd creates, sizes and
 * unlinks it (shmd/daemon/segment_build.c); clients map it read-write.
 *
 *
 * Creation order.  shm_open(O_EXCL) makes an object of size 0; ftruncate
 * sizes it (zero-filled: every slot EMPTY); the daemon then writes the
 * immutable header fields, stores state STARTING, and stores the magic last
 * with release order.  hs_segment_map() loads the magic with acquire order
 * before it trusts any other header field, so a client that maps a segment
 * still being built sees either magic 0 ("being created": daemon down) or a
 * complete layout, never a half-written one.  Everything after that
 * (state, positions, slots) follows the protocol written in segment.h.
 *
 * Thread safety: everything here may be called from any thread.  The error
 * text is thread-local.
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

#include "segment.h"

/*-------------------------------------------------------------------------
 * Segment lifecycle
 *-------------------------------------------------------------------------
 */

#define HS_ALIGN_UP(x, a) (((x) + (a)-1) / (a) * (a))

/* "/hotstock.<euid>.<16 hex of hs_hash(real_dir)>", truncated to outlen. */
void
hs_segment_name(const char *real_dir, char *out, size_t outlen)
{
    snprintf(out, outlen, "/hotstock.%u.%016" PRIx64, (unsigned)geteuid(),
             hs_hash(real_dir, strlen(real_dir)));
}

static bool
hs_is_pow2(uint32_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

/*
 * Fill hdr's layout fields for these capacities (each a power of two; the
 * caller rounds them up first).  Tables follow the header in the order SKU,
 * order, ring, each on a 64-byte boundary.
 */
void
hs_segment_layout(const hs_segment_sizes *sizes, hs_header *hdr)
{
    uint64_t off;

    assert(hs_is_pow2(sizes->sku_capacity));
    assert(hs_is_pow2(sizes->order_capacity));
    assert(hs_is_pow2(sizes->ring_capacity));
    assert(hs_is_pow2(sizes->filter_blocks));
    assert(hs_is_pow2(sizes->buyer_capacity));

    hdr->magic = HS_SEGMENT_MAGIC;
    hdr->layout_version = HS_SEGMENT_LAYOUT_VERSION;
    hdr->header_size = sizeof(hs_header);
    hdr->sku_capacity = sizes->sku_capacity;
    hdr->order_capacity = sizes->order_capacity;
    hdr->ring_capacity = sizes->ring_capacity;

    off = HS_ALIGN_UP(sizeof(hs_header), HS_CACHE_LINE);
    hdr->sku_offset = off;
    off += (uint64_t)sizes->sku_capacity * sizeof(hs_sku_slot);
    off = HS_ALIGN_UP(off, HS_CACHE_LINE);
    hdr->order_offset = off;
    off += (uint64_t)sizes->order_capacity * sizeof(hs_order_slot);
    off = HS_ALIGN_UP(off, HS_CACHE_LINE);
    hdr->ring_offset = off;
    off += (uint64_t)sizes->ring_capacity * sizeof(hs_ring_slot);
    off = HS_ALIGN_UP(off, HS_CACHE_LINE);
    hdr->stripe_offset = off;
    off += (uint64_t)HS_ORDER_STRIPES * sizeof(hs_stripe);
    off = HS_ALIGN_UP(off, HS_CACHE_LINE);
    hdr->buyer_capacity = sizes->buyer_capacity;
    hdr->buyer_offset = off;
    off += (uint64_t)sizes->buyer_capacity * sizeof(hs_buyer_slot);
    off = HS_ALIGN_UP(off, HS_CACHE_LINE);
    hdr->order_buyer_offset = off;
    off += (uint64_t)sizes->order_capacity * sizeof(hs_order_buyer);
    /* page-aligned: the daemon writes the filter to its file by pages */
    off = HS_ALIGN_UP(off, 4096);
    hdr->filter_offset = off;
    hdr->filter_blocks = sizes->filter_blocks;
    off += (uint64_t)sizes->filter_blocks * sizeof(hs_filter_block);
    off = hs_stats_layout(sizes, hdr, off);
    hdr->total_size = HS_ALIGN_UP(off, 4096);
}

/* See segment.h.  On HS_OK *hdr is a mapping of the whole segment that the
 * caller releases with hs_segment_unmap(); on failure nothing stays mapped. */
hs_result
hs_segment_map(const char *real_dir, hs_header **hdr)
{
    char name[128];
    struct stat st;
    hs_header *h;
    uint64_t magic;
    uint32_t version;
    size_t size;
    int fd;

    *hdr = NULL;
    hs_segment_name(real_dir, name, sizeof(name));
    fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == ENOENT) {
            hs_set_error("no hotstock segment %s for %s: is hotstockd running?", name, real_dir);
            return HS_DAEMON_DOWN;
        }
        hs_set_error("cannot open segment %s for %s: %s", name, real_dir, strerror(errno));
        return HS_IO_ERROR;
    }
    if (fstat(fd, &st) != 0) {
        hs_set_error("cannot stat segment %s: %s", name, strerror(errno));
        close(fd);
        return HS_IO_ERROR;
    }
    size = (size_t)st.st_size;
    if (size < sizeof(uint64_t) + sizeof(uint32_t)) {
        close(fd);
        if (size == 0) {
            hs_set_error("segment %s is being created by hotstockd", name);
            return HS_DAEMON_DOWN;
        }
        hs_set_error("segment %s is %zu bytes: not a hotstock segment", name, size);
        return HS_VERSION_MISMATCH;
    }
    /* MAP_POPULATE: build the whole mapping's page tables now, once per
     * attaching process, instead of one minor fault per page on the fast
     * path (every new order id lands on a random page of the order index:
     * without it, first touches cost a backend up to a fifth of its CPU
     * time in a deduct-heavy load). */
    h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (h == MAP_FAILED) {
        hs_set_error("cannot map segment %s (%zu bytes): %s", name, size, strerror(errno));
        return HS_IO_ERROR;
    }

    /* Pairs with the release store of the magic in hs_segment_create(). */
    magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
    if (magic == 0) {
        munmap(h, size);
        hs_set_error("segment %s is being created by hotstockd", name);
        return HS_DAEMON_DOWN;
    }
    if (magic != HS_SEGMENT_MAGIC) {
        munmap(h, size);
        hs_set_error("segment %s has magic 0x%016" PRIx64 ", not a hotstock segment (0x%016" PRIx64
                     ")",
                     name, magic, HS_SEGMENT_MAGIC);
        return HS_VERSION_MISMATCH;
    }
    version = h->layout_version;
    if (version != HS_SEGMENT_LAYOUT_VERSION) {
        munmap(h, size);
        hs_set_error("segment %s has layout version %u, this build speaks %d", name, version,
                     HS_SEGMENT_LAYOUT_VERSION);
        return HS_VERSION_MISMATCH;
    }
    if (size < sizeof(hs_header) || h->header_size != sizeof(hs_header) || h->total_size != size) {
        hs_set_error("segment %s is %zu bytes, its header says %" PRIu64
                     " bytes and a %u-byte header (this build: %zu)",
                     name, size, size >= sizeof(hs_header) ? h->total_size : 0,
                     size >= sizeof(hs_header) ? h->header_size : 0, sizeof(hs_header));
        munmap(h, size);
        return HS_VERSION_MISMATCH;
    }
    *hdr = h;
    return HS_OK;
}

/* Unmap a segment mapped by hs_segment_create() or hs_segment_map().  NULL
 * is allowed. */
void
hs_segment_unmap(hs_header *h)
{
    if (h != NULL)
        munmap(h, h->total_size);
}

/* Remove the segment's name (existing mappings stay valid).  0 when removed
 * or when there was none; -1 with hs_last_error() otherwise. */
