/*-------------------------------------------------------------------------
 *
 * filter_file_write.c
 *      DIR/evicted.filter: the evicted-order filter, durably.
 *
 * What it shares: the file, read and written only by the daemon holding
 * DIR's lock (the evictor thread writes, recovery reads before any thread
 * runs).  Linked by hotstockd and test tools only.
 *
 *
 * THE FILTER FILE (DIR/evicted.filter, format version 1)
 *
 * Little-endian integers.  Two header copies, at offsets 0 and 512, each
 *
 *      offset  size  field
 *           0     8  magic          HS_FILTER_MAGIC, "HSTKFLT1"
 *           8     4  format version 1
 *          12     4  header size    80
 *          16     8  seq            +1 per header written; copy seq & 1
 *          24     8  bytes          size of the bits
 *          32     8  lsn            the watermark (filter_file.h)
 *          40     8  legacy         orders up to it evicted with no filter
 *          48     8  ids            ids added (informational)
 *          56     8  evicted        every id evicted so far had its records
 *                                   at or below it (filter_file.h)
 *          64    12  reserved       zeros
 *          76     4  CRC32C over bytes [0, 76) of the copy
 *
 * then the bits from offset 4096: `bytes` bytes, the segment's filter
 * blocks as they are in memory.  The file is exactly 4096 + bytes long.
 *
 * Crash rules.  Bits are only ever set, never cleared, so the file's bits
 * at any moment hold every id of the durable watermark whatever mix of old
 * and new pages a crash leaves.  A commit makes the bits durable before it
 * writes the header copy that names the new watermark, into the copy the
 * previous header did not use: a torn header write leaves the other copy
 * valid, and the loader takes the valid copy with the larger seq.
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

#include "filter_file.h"
#include "util.h"

#define FILTER_COPY_SIZE 80
#define FILTER_COPY_STRIDE 512
#define FILTER_TMP_SUFFIX ".tmp"

struct hs_filter_file {
    int fd;
    char path[PATH_MAX];
    hs_filter_meta meta;
};

static void
encode_copy(uint8_t *b, const hs_filter_meta *m)
{
    memset(b, 0, FILTER_COPY_SIZE);
    hs_put_u64(b, HS_FILTER_MAGIC);
    hs_put_u32(b + 8, HS_FILTER_FORMAT_VERSION);
    hs_put_u32(b + 12, FILTER_COPY_SIZE);
    hs_put_u64(b + 16, m->seq);
    hs_put_u64(b + 24, m->bytes);
    hs_put_u64(b + 32, m->lsn);
    hs_put_u64(b + 40, m->legacy);
    hs_put_u64(b + 48, m->ids);
    hs_put_u64(b + 56, m->evicted);
    hs_put_u32(b + 76, hs_crc32c(0, b, 76));
}

/* 1 valid (into *m), 0 not. */
static int
decode_copy(const uint8_t *b, hs_filter_meta *m)
{
    if (hs_get_u64(b) != HS_FILTER_MAGIC || hs_get_u32(b + 8) != HS_FILTER_FORMAT_VERSION ||
        hs_get_u32(b + 12) != FILTER_COPY_SIZE || hs_get_u32(b + 76) != hs_crc32c(0, b, 76))
        return 0;
    m->seq = hs_get_u64(b + 16);
    m->bytes = hs_get_u64(b + 24);
    m->lsn = hs_get_u64(b + 32);
    m->legacy = hs_get_u64(b + 40);
    m->ids = hs_get_u64(b + 48);
    m->evicted = hs_get_u64(b + 56);
    return 1;
}

static int
pread_all(int fd, void *buf, size_t len, off_t off)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO; /* short: the size check below names it */
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

static int
pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

static int
filter_path(const char *dir, const char *suffix, char *out)
{
    if ((size_t)snprintf(out, PATH_MAX, "%s/%s%s", dir, HS_FILTER_FILE, suffix) >= PATH_MAX) {
        hs_set_error("data directory path too long: %s", dir);
        return -1;
    }
    return 0;
}

int
hs_filter_file_open(const char *dir, hs_filter_file **out, hs_filter_meta *meta)
{
    uint8_t head[FILTER_COPY_STRIDE + FILTER_COPY_SIZE];
    hs_filter_meta a, b;
    int va, vb;
    struct stat st;
    hs_filter_file *f;

    *out = NULL;
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        hs_set_error("out of memory");
        return -1;
    }
    if (filter_path(dir, "", f->path) != 0)
        goto fail;
    f->fd = open(f->path, O_RDWR | O_CLOEXEC);
    if (f->fd < 0) {
        if (errno == ENOENT) {
            free(f);
            return 0;
        }
        hs_set_error("cannot open %s: %s", f->path, strerror(errno));
        goto fail;
    }
    if (fstat(f->fd, &st) != 0 || st.st_size < HS_FILTER_DATA_OFFSET ||
        pread_all(f->fd, head, sizeof(head), 0) != 0) {
        hs_set_error("cannot read the header of %s (offset 0, %zu bytes, file size %lld)",
                     f->path, sizeof(head), (long long)st.st_size);
        goto fail_fd;
    }
    va = decode_copy(head, &a);
    vb = decode_copy(head + FILTER_COPY_STRIDE, &b);
    if (!va && !vb) {
        hs_set_error("%s is damaged: no valid header at offset 0 or %d (magic, version or "
                     "checksum)",
                     f->path, FILTER_COPY_STRIDE);
        goto fail_fd;
    }
    f->meta = (va && (!vb || a.seq > b.seq)) ? a : b;
    if (f->meta.bytes == 0 || (f->meta.bytes & (f->meta.bytes - 1)) != 0 ||
        f->meta.bytes % 4096 != 0 ||
        (uint64_t)st.st_size != HS_FILTER_DATA_OFFSET + f->meta.bytes) {
        hs_set_error("%s is damaged: its header (offset %d) says %" PRIu64
                     " bytes of bits, the file has %lld bytes",
                     f->path, f->meta.seq & 1 ? FILTER_COPY_STRIDE : 0, f->meta.bytes,
                     (long long)st.st_size);
        goto fail_fd;
    }
    *meta = f->meta;
    *out = f;
    return 1;

fail_fd:
    close(f->fd);
fail:
    free(f);
    return -1;
}

int
hs_filter_file_read(hs_filter_file *f, void *buf, uint64_t bytes)
{
    if (bytes != f->meta.bytes ||
        pread_all(f->fd, buf, (size_t)bytes, HS_FILTER_DATA_OFFSET) != 0) {
        hs_set_error("cannot read %" PRIu64 " bytes of bits from %s at offset %d: %s", bytes,
                     f->path, HS_FILTER_DATA_OFFSET, strerror(errno));
        return -1;
    }
    return 0;
}

int
hs_filter_file_create(const char *dir, const hs_filter_meta *meta, hs_filter_file **out)
{
    char tmp[PATH_MAX];
    uint8_t head[HS_FILTER_DATA_OFFSET];
    hs_filter_file *f;
    int dfd, rc;

    *out = NULL;
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        hs_set_error("out of memory");
        return -1;
    }
    f->fd = -1;
    f->meta = *meta;
    f->meta.seq = 0;
    if (filter_path(dir, "", f->path) != 0 || filter_path(dir, FILTER_TMP_SUFFIX, tmp) != 0)
        goto fail;
    f->fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        hs_set_error("cannot create %s: %s", tmp, strerror(errno));
        goto fail;
    }
    /* All the space now: committing bits later needs none (a full disk
     * shows at start, not in the middle of a sale). */
    rc = posix_fallocate(f->fd, 0, (off_t)(HS_FILTER_DATA_OFFSET + meta->bytes));
    if (rc != 0) {
        hs_set_error("cannot allocate %" PRIu64 " bytes for %s: %s",
                     (uint64_t)HS_FILTER_DATA_OFFSET + meta->bytes, tmp, strerror(rc));
        goto fail;
    }
    memset(head, 0, sizeof(head));
    encode_copy(head, &f->meta);
    if (pwrite_all(f->fd, head, sizeof(head), 0) != 0 || fsync(f->fd) != 0) {
        hs_set_error("cannot write %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, f->path) != 0) {
        hs_set_error("cannot rename %s to %s: %s", tmp, f->path, strerror(errno));
        goto fail;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        hs_set_error("cannot fsync directory %s: %s", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        goto fail;
    }
    close(dfd);
    *out = f;
    return 0;

fail:
    if (f->fd >= 0) {
        close(f->fd);
        unlink(tmp);
    }
    free(f);
    return -1;
}

int
hs_filter_file_write(hs_filter_file *f, const void *bits, uint64_t off, uint64_t len)
{
    if (off + len > f->meta.bytes ||
        pwrite_all(f->fd, bits, (size_t)len, (off_t)(HS_FILTER_DATA_OFFSET + off)) != 0) {
        hs_set_error("cannot write %" PRIu64 " bytes of %s at offset %" PRIu64 ": %s", len,
                     f->path, (uint64_t)HS_FILTER_DATA_OFFSET + off,
                     off + len > f->meta.bytes ? "past its end" : strerror(errno));
        return -1;
    }
    return 0;
}

int
hs_filter_file_commit(hs_filter_file *f, hs_lsn lsn, hs_lsn evicted, uint64_t ids)
{
    hs_filter_meta next = f->meta;
    uint8_t copy[FILTER_COPY_SIZE];
    off_t at;

    if (fdatasync(f->fd) != 0) {
        hs_set_error("fdatasync of %s failed: %s (not retried: the written bits may be lost)",
                     f->path, strerror(errno));
        return -1;
    }
    next.seq++;
    next.lsn = lsn;
    next.evicted = evicted;
    next.ids = ids;
    encode_copy(copy, &next);
    at = (next.seq & 1) ? FILTER_COPY_STRIDE : 0;
    if (pwrite_all(f->fd, copy, sizeof(copy), at) != 0) {
        hs_set_error("cannot write the header of %s at offset %lld: %s", f->path, (long long)at,
                     strerror(errno));
        return -1;
    }
    if (fdatasync(f->fd) != 0) {
        hs_set_error("fdatasync of %s failed: %s (not retried: the header at offset %lld may be "
                     "lost)",
                     f->path, strerror(errno), (long long)at);
        return -1;
    }
    f->meta = next;
    return 0;
}

const hs_filter_meta *
hs_filter_file_meta(const hs_filter_file *f)
{
    return &f->meta;
}

void
hs_filter_file_close(hs_filter_file *f)
{
    if (f == NULL)
        return;
    close(f->fd);
    free(f);
}
