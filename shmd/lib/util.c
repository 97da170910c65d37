/*-------------------------------------------------------------------------
 *
 * util.c
 *      The small helpers every part of hotstock uses: error text, clocks,
 *      CRC32C, futexes, whole writes, pid checks.
 *
 * Shares nothing between processes; the error text is thread-local, the
 * CRC table is built once (pthread_once).  Everything here may be called
 * from any thread.  Must not know the segment layout or any file format.
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

#include "util.h"

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
    [HS_HOLD_EXPIRED] = "hold_expired",
    [HS_HOLD_CANCELLED] = "hold_cancelled",
    [HS_NOT_HELD] = "not_held",
    [HS_HELD] = "held",
    [HS_SALE_NOT_OPEN] = "sale_not_open",
    [HS_SALE_CLOSED] = "sale_closed",
    [HS_SALE_PAUSED] = "sale_paused",
    [HS_BUYER_LIMIT] = "buyer_limit",
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

uint64_t
hs_now_monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
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
    return hs_futex_wait_bits(word, expected, FUTEX_BITSET_MATCH_ANY, timeout_ms);
}

/* Wake every process sleeping on word (whatever bits it sleeps with). */
void
hs_futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * hs_futex_wait, sleeping with `bits` (non-zero): only a hs_futex_wake_bits
 * whose bits share one of them wakes it (or hs_futex_wake_all; plain
 * hs_futex_wait sleeps with every bit).  Same returns.  FUTEX_WAIT_BITSET
 * takes an absolute CLOCK_MONOTONIC deadline.
 */
int
hs_futex_wait_bits(_Atomic uint32_t *word, uint32_t expected, uint32_t bits, int timeout_ms)
{
    struct timespec ts, *tsp = NULL;

    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        tsp = &ts;
    }
    if (syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET, expected, tsp, NULL, bits) == 0)
        return 0;
    if (errno == EAGAIN || errno == ETIMEDOUT || errno == EINTR)
        return 0;
    hs_set_error("futex wait failed: %s", strerror(errno));
    return -1;
}

/* Wake the processes sleeping on word with any of `bits` (and those
 * sleeping in plain hs_futex_wait). */
void
hs_futex_wake_bits(_Atomic uint32_t *word, uint32_t bits)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_BITSET, INT_MAX, NULL, NULL, bits);
}

/* write(2) (at_end) or pwrite(2) at off all len bytes of buf, retrying
 * short writes and EINTR.  0, or -1 with errno set. */
static int
write_all(int fd, const void *buf, size_t len, bool at_end, uint64_t off)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = at_end ? write(fd, p, len) : pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* See util.h. */
int
hs_write_all(int fd, const void *buf, size_t len)
{
    return write_all(fd, buf, len, true, 0);
}

/* See util.h. */
int
hs_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    return write_all(fd, buf, len, false, off);
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
