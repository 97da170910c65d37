/*-------------------------------------------------------------------------
 *
 * checkpoint_write.c
 *      The checkpoint file's one writer: the daemon saves its shadow
 *      counters here, durably.
 *
 * What it shares: DIR/checkpoint, written only by the daemon holding
 * DIR's lock file and replaced atomically: temp file, fsync, rename, fsync
 * of the directory.  A crash at any point leaves either the old or the new
 * checkpoint whole, never a mix.  Linked by hotstockd and test tools only.
 *
 *
 * THE CHECKPOINT FILE (DIR/checkpoint, format version 3)
 *
 * Little-endian integers, written and read byte by byte.  One entry per
 * SKU the queue named: its counter, its sale configuration (the last
 * SALE record's, hotstock.h "Sale sessions"; all zero for none) and the
 * LSN of its last FORGET; then one entry per buyer counted under a
 * per-buyer limit (hotstock.h, "Per-buyer limits").
 *
 *      offset  size  field
 *           0     8  magic          HS_CKPT_MAGIC, "HSTKCKP1"
 *           8     4  format version HS_CKPT_FORMAT_VERSION (3)
 *          12     4  header size    64
 *          16     8  lsn            every queue record <= lsn is folded in
 *          24     8  applied_lsn    the drain's position known when saved
 *          32     8  generation     of the segment live when saved
 *          40     8  count          number of SKU entries (n)
 *          48     8  created        unix microseconds, informational
 *          56     8  buyers         number of buyer entries (m)
 *          64 104*n  SKU entries, each:
 *                      +0   8  available        signed
 *                      +8   1  sku_len          1..63
 *                      +9   1  sale flags       bit 0x01 paused; others zero
 *                      +10  2  reserved         zeros
 *                      +12  4  per_buyer_limit  0..2147483647 (0: none)
 *                      +16 64  sku              sku_len bytes, zero padded
 *                      +80  8  starts_at        unix ms, 0..2^63-1 (0: none)
 *                      +88  8  ends_at          unix ms (0: none)
 *                      +96  8  buyers_since     LSN of its last FORGET (0: none)
 *          then 144*m buyer entries, each:
 *                      +0   8  units            0..2147483647
 *                      +8   1  sku_len          1..63
 *                      +9   1  buyer_len        1..63
 *                      +10  6  reserved         zeros
 *                      +16 64  sku              zero padded
 *                      +80 64  buyer            zero padded
 *          then 4  CRC32C over every byte before it
 *
 * The file is exactly 64 + 104 * n + 144 * m + 4 bytes.  Loading refuses
 * a bad magic, a format version it does not read, a size that does not
 * match the counts (a torn or truncated file), a bad checksum, and entries
 * with a bad length, non-zero reserved bytes or flag bits, a per-buyer
 * limit or a starts_at no SALE record can carry, a SKU named twice, a
 * buyer named twice for one SKU, or a buyer of a SKU with no entry.
 *
 * VERSIONS.  Version 1 (before sale sessions) has 80-byte SKU entries: +0
 * available, +8 sku_len, +9..+15 reserved zeros, +16 sku[64].  Version 2
 * (before per-buyer limits) has 96-byte SKU entries (no buyers_since).
 * Neither has buyer entries, and bytes 56..63 of their header are zeros.
 * This build loads versions 1 to 3 (missing fields are zero: no SALE or
 * BUYER record existed then) and writes version 3; an older build refuses
 * a newer file by its version, naming the file.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "util.h"

/*-------------------------------------------------------------------------
 * Checkpoint file
 *-------------------------------------------------------------------------
 */
/* See checkpoint.h.  Also -1 for a sale configuration the format cannot
 * hold (a negative per-buyer limit, starts_at over 2^63-1: no SALE record
 * carries them).  On failure DIR/checkpoint is the old one, untouched
 * (a DIR/checkpoint.tmp may be left behind; the next write replaces it). */
int
hs_checkpoint_write(const char *dir, const hs_shadow *s)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    size_t size = CKPT_HEADER_SIZE + (size_t)s->count * CKPT_ENTRY_SIZE_V3 +
                  (size_t)s->buyer_count * CKPT_BUYER_SIZE + CKPT_TRAILER_SIZE;
    uint32_t nb = 0;
    uint8_t *buf, *p;
    uint32_t n = 0;
    int fd, dfd;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, HS_CKPT_FILE) >= sizeof(path) ||
        (size_t)snprintf(tmp, sizeof(tmp), "%s%s", path, CKPT_TMP_SUFFIX) >= sizeof(tmp)) {
        hs_set_error("data directory path too long: %s", dir);
        return -1;
    }
    buf = calloc(1, size);
    if (buf == NULL) {
        hs_set_error("out of memory for a %zu-byte checkpoint", size);
        return -1;
    }
    hs_put_u64(buf, HS_CKPT_MAGIC);
    hs_put_u32(buf + 8, HS_CKPT_FORMAT_VERSION);
    hs_put_u32(buf + 12, CKPT_HEADER_SIZE);
    hs_put_u64(buf + 16, s->lsn);
    hs_put_u64(buf + 24, s->applied_lsn);
    hs_put_u64(buf + 32, s->generation);
    hs_put_u64(buf + 40, s->count);
    hs_put_u64(buf + 48, hs_now_unix_us());
    hs_put_u64(buf + 56, s->buyer_count);
    p = buf + CKPT_HEADER_SIZE;
    for (uint32_t i = 0; i < s->capacity; i++) {
        const hs_shadow_sku *e = &s->slots[i];
        if (e->sku_len == 0)
            continue;
        if (e->sale.per_buyer_limit < 0 || e->sale.starts_at_ms > INT64_MAX) {
            hs_set_error("shadow sale configuration of SKU %.*s cannot be saved: per-buyer limit "
                         "%d, starts_at %" PRIu64,
                         (int)e->sku_len, e->sku, e->sale.per_buyer_limit, e->sale.starts_at_ms);
            free(buf);
            return -1;
        }
        hs_put_u64(p, (uint64_t)e->available);
        p[8] = e->sku_len;
        p[9] = e->sale.paused ? 0x01 : 0;
        hs_put_u32(p + 12, (uint32_t)e->sale.per_buyer_limit);
        memcpy(p + 16, e->sku, e->sku_len);
        hs_put_u64(p + 80, e->sale.starts_at_ms);
        hs_put_u64(p + 88, e->sale.ends_at_ms);
        hs_put_u64(p + 96, e->buyers_since);
        p += CKPT_ENTRY_SIZE_V3;
        n++;
    }
    for (uint32_t i = 0; i < s->buyer_capacity; i++) {
        const hs_shadow_buyer *b = &s->buyers[i];
        if (b->buyer_len == 0)
            continue;
        hs_put_u64(p, (uint64_t)b->units);
        p[8] = b->sku_len;
        p[9] = b->buyer_len;
        memcpy(p + 16, b->sku, b->sku_len);
        memcpy(p + 80, b->buyer, b->buyer_len);
        p += CKPT_BUYER_SIZE;
        nb++;
    }
    if (n != s->count || nb != s->buyer_count) {
        hs_set_error("shadow counters inconsistent: %u entries, count %u; %u buyers, count %u", n,
                     s->count, nb, s->buyer_count);
        free(buf);
        return -1;
    }
    hs_put_u32(p, hs_crc32c(0, buf, size - CKPT_TRAILER_SIZE));

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        hs_set_error("cannot create %s: %s", tmp, strerror(errno));
        free(buf);
        return -1;
    }
    if (hs_write_all(fd, buf, size) != 0 || fsync(fd) != 0) {
        hs_set_error("cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        free(buf);
        return -1;
    }
    free(buf);
    if (close(fd) != 0) {
        hs_set_error("cannot close %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (rename(tmp, path) != 0) {
        hs_set_error("cannot rename %s to %s: %s", tmp, path, strerror(errno));
        return -1;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        hs_set_error("cannot fsync directory %s: %s", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    close(dfd);
    return 0;
}
