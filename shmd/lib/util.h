/*-------------------------------------------------------------------------
 *
 * util.h
 *      Helpers shared by the client library, the formats and the daemon
 *      (util.c): clocks, CRC32C, futexes, little-endian codecs, error text.
 *
 * Nothing here knows the segment layout or a file format.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_UTIL_H
#define HOTSTOCK_UTIL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hotstock.h"

/* 64-bit FNV-1a; never 0 (0 is reserved for "no hash"). */
static inline uint64_t
hs_hash(const char *s, size_t len)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(0x100000001b3);
    }
    /* FNV-1a's low bits, which pick the slot, barely mix for ids that
     * differ only in their last characters (order-1001, order-1002, ...):
     * linear probing then walks long clusters.  Murmur3's finalizer mixes
     * every bit into the low ones. */
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h ? h : 1;
}

uint64_t hs_now_monotonic_ms(void);
/* CLOCK_MONOTONIC in nanoseconds: the deadlines of short spins. */
uint64_t hs_now_monotonic_ns(void);
uint64_t hs_now_unix_us(void);

/* CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2. */
uint32_t hs_crc32c(uint32_t crc, const void *data, size_t len);

/* Linux futex wrappers on a 32-bit shared word. */
int hs_futex_wait(_Atomic uint32_t *word, uint32_t expected, int timeout_ms);
void hs_futex_wake_all(_Atomic uint32_t *word);
int hs_futex_wait_bits(_Atomic uint32_t *word, uint32_t expected, uint32_t bits, int timeout_ms);
void hs_futex_wake_bits(_Atomic uint32_t *word, uint32_t bits);

/* write(2) all len bytes of buf, retrying short writes and EINTR.  0, or
 * -1 with errno set. */
int hs_write_all(int fd, const void *buf, size_t len);
/* pwrite(2) all len bytes of buf at offset off, the same way. */
int hs_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/* Little-endian stores and loads: the on-disk formats (queue files,
 * checkpoint) are little-endian whatever the CPU. */
static inline void
hs_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void
hs_put_u64(uint8_t *p, uint64_t v)
{
    hs_put_u32(p, (uint32_t)v);
    hs_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t
hs_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
hs_get_u64(const uint8_t *p)
{
    return (uint64_t)hs_get_u32(p) | (uint64_t)hs_get_u32(p + 4) << 32;
}

/* Is process pid gone?  (kill(pid, 0) == ESRCH) */
int hs_pid_gone(pid_t pid);

/* Set the calling thread's hs_last_error() text (printf format). */
void hs_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* HOTSTOCK_UTIL_H */
