/*-------------------------------------------------------------------------
 *
 * segment.c
 *      The shared-memory segment's lifecycle, and the small shared helpers
 *      every part of hotstock uses: clocks, CRC32C, futexes, error text.
 *
 * What it shares: the POSIX shared-memory object of one data directory
 * (layout and protocol in segment.h).  Only hotstockd creates, sizes and
 * unlinks it; clients map it read-write.
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

#define HS_ERROR_MAX 1024

/* hs_last_error() text of this thread. */
static _Thread_local char hs_error_text[HS_ERROR_MAX];

static const char *const hs_result_names[HS_RESULT_COUNT_] = {
    [HS_OK] = "ok",
    [HS_DUPLICATE] = "duplicate",
    [HS_SOLD_OUT] = "sold_out",
    [HS_UNKNOWN_SKU] = "unknown_sku",
    [HS_NOT_FOUND] = "not_found",
    [HS_ALREADY_REFUNDED] = "already_refunded",
    [HS_ORDER_MISMATCH] = "order_mismatch",
    [HS_QUEUE_FULL] = "queue_full",
    [HS_TABLE_FULL] = "table_full",
    [HS_BAD_ARGUMENT] = "bad_argument",
    [HS_DAEMON_DOWN] = "daemon_down",
    [HS_VERSION_MISMATCH] = "version_mismatch",
    [HS_IO_ERROR] = "io_error",
    [HS_EVICTED_CHANGED] = "evicted_changed",
};

/* Exported for the unit tests, which compare it with the hardware path. */
uint32_t hs_crc32c_portable(uint32_t crc, const void *data, size_t len);

/*-------------------------------------------------------------------------
 * Errors
 *-------------------------------------------------------------------------
 */

/* Set the calling thread's error text; errno is preserved so callers may
 * still inspect it after reporting. */
void
hs_set_error(const char *fmt, ...)
{
    int saved = errno;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(hs_error_text, sizeof(hs_error_text), fmt, ap);
    va_end(ap);
    errno = saved;
}

/* The calling thread's last error text ("" if none yet); the buffer is the
 * thread's own and is overwritten by its next failing call. */
const char *
hs_last_error(void)
{
    return hs_error_text;
}

/* Stable lower-case name of r; "unknown" for a value out of range. */
const char *
hs_result_name(hs_result r)
{
    if ((unsigned)r >= HS_RESULT_COUNT_ || hs_result_names[r] == NULL)
        return "unknown";
    return hs_result_names[r];
}

/*-------------------------------------------------------------------------
 * Clocks
 *-------------------------------------------------------------------------
 */

/* CLOCK_MONOTONIC in milliseconds: the heartbeat clock, comparable across
 * processes of one boot. */
uint64_t
hs_now_monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* CLOCK_REALTIME in microseconds since the epoch: record timestamps. */
uint64_t
hs_now_unix_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/*-------------------------------------------------------------------------
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78)
 *
 * zlib convention: crc is the value returned by a previous call (0 to
 * start); the register is inverted on entry and on exit, so
 * hs_crc32c(hs_crc32c(0, a), b) == hs_crc32c(0, a || b).  Check value:
 * hs_crc32c(0, "123456789", 9) == 0xE3069283.
 *-------------------------------------------------------------------------
 */

static uint32_t hs_crc32c_table[256];
static pthread_once_t hs_crc32c_table_once = PTHREAD_ONCE_INIT;

static void
hs_crc32c_table_build(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ UINT32_C(0x82F63B78) : c >> 1;
        hs_crc32c_table[i] = c;
    }
}

/* Table-driven CRC32C, one byte per step: for CPUs without SSE4.2. */
uint32_t
hs_crc32c_portable(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;

    pthread_once(&hs_crc32c_table_once, hs_crc32c_table_build);
    crc = ~crc;
    while (len--)
        crc = hs_crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#ifdef HS_HAVE_X86_CRC
/* SSE4.2 crc32 instruction, 8 bytes per step once aligned. */
__attribute__((target("sse4.2"))) static uint32_t
hs_crc32c_sse42(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t c = ~crc;

    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
#if defined(__x86_64__)
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
#endif
    while (len > 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    return ~(uint32_t)c;
}

/* -1 unknown yet, 0 no, 1 yes.  Relaxed: every thread computes the same
 * value, so a racing first call only repeats the probe. */
static _Atomic int hs_crc32c_hw = -1;
#endif

uint32_t
hs_crc32c(uint32_t crc, const void *data, size_t len)
{
#ifdef HS_HAVE_X86_CRC
    int hw = atomic_load_explicit(&hs_crc32c_hw, memory_order_relaxed);
    if (hw < 0) {
        __builtin_cpu_init();
        hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        atomic_store_explicit(&hs_crc32c_hw, hw, memory_order_relaxed);
    }
    if (hw)
        return hs_crc32c_sse42(crc, data, len);
#endif
    return hs_crc32c_portable(crc, data, len);
}

/*-------------------------------------------------------------------------
 * Futexes and processes
 *-------------------------------------------------------------------------
 */

/*
 * Sleep while *word == expected, at most timeout_ms (< 0: no limit).  The
 * word lives in shared memory mapped by several processes, so these are the
 * shared (not _PRIVATE) futex operations.  Returns 0 when woken, when *word
 * already differed (EAGAIN), on timeout and on a signal: callers always
 * re-check their condition.  -1 with hs_last_error() only for a misuse
 * (EFAULT, EINVAL, ...).
 */
int
hs_futex_wait(_Atomic uint32_t *word, uint32_t expected, int timeout_ms)
{
    struct timespec ts, *tsp = NULL;

    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    if (syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tsp, NULL, 0) == 0)
        return 0;
    if (errno == EAGAIN || errno == ETIMEDOUT || errno == EINTR)
        return 0;
    hs_set_error("futex wait failed: %s", strerror(errno));
    return -1;
}

/* Wake every process sleeping on word. */
void
hs_futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* See segment.h. */
int
hs_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* 1 when no process pid exists (kill(pid, 0) fails with ESRCH), else 0.  A
 * pid <= 0 names no owner at all and counts as gone.  EPERM (a process of
 * another user) counts as alive. */
int
hs_pid_gone(pid_t pid)
{
    if (pid <= 0)
        return 1;
    return kill(pid, 0) == -1 && errno == ESRCH;
}

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
    hdr->total_size = HS_ALIGN_UP(off, HS_CACHE_LINE);
}

#ifdef MADV_POPULATE_WRITE
#define HS_MADV_POPULATE_WRITE MADV_POPULATE_WRITE
#else
#define HS_MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* See segment.h.  The new segment is all zeros but for the header; the
 * returned mapping is the caller's (hs_segment_unmap). */
hs_header *
hs_segment_create(const char *real_dir, const hs_segment_sizes *sizes, uint64_t generation,
                  hs_lsn evicted_lsn)
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
    h->evicted_lsn = evicted_lsn;
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
