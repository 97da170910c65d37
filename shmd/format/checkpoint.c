/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *      Shadow counters (the exact fold of the queue up to an LSN) and the
 *      durable checkpoint file that saves them.
 *
 * What it shares: nothing in memory.  An hs_shadow is private to the one
 * thread that folds into it (the spiller, or recovery before the spiller
 * starts); a caller that checkpoints from another thread hands over a copy
 * or stops folding meanwhile.  DIR/checkpoint is written only by the daemon
 * holding DIR's lock file, and replaced atomically: temp file, fsync,
 * rename, fsync of the directory.  A crash at any point leaves either the
 * old or the new checkpoint whole, never a mix.
 *
 * The file format is described at the top of checkpoint_write.c, its
 * one writer; this file folds and loads (versions 1 to 3).
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

#define SHADOW_MIN_CAPACITY 16

/*-------------------------------------------------------------------------
 * Shadow table: open addressing by hs_hash of the SKU, linear probing,
 * doubled when 3/4 full.  sku_len 0 marks an empty slot.
 *-------------------------------------------------------------------------
 */

static uint32_t
round_pow2(uint32_t x)
{
    uint32_t c = SHADOW_MIN_CAPACITY;

    while (c < x && c < (UINT32_C(1) << 31))
        c <<= 1;
    return c;
}

/* Initialise s empty with room for capacity SKUs before it grows (rounded
 * up to a power of two).  0, or -1 with hs_last_error() (out of memory). */
int
hs_shadow_init(hs_shadow *s, uint32_t capacity)
{
    memset(s, 0, sizeof(*s));
    s->capacity = round_pow2(capacity);
    s->slots = calloc(s->capacity, sizeof(hs_shadow_sku));
    if (s->slots == NULL) {
        hs_set_error("out of memory for %u shadow counters", s->capacity);
        s->capacity = 0;
        return -1;
    }
    return 0;
}

/* Free s's table; s may be initialised again. */
void
hs_shadow_free(hs_shadow *s)
{
    free(s->slots);
    s->slots = NULL;
    s->capacity = 0;
    s->count = 0;
    free(s->buyers);
    s->buyers = NULL;
    s->buyer_capacity = 0;
    s->buyer_count = 0;
}

static hs_shadow_sku *
shadow_probe(hs_shadow_sku *slots, uint32_t capacity, const char *sku, size_t len)
{
    uint32_t mask = capacity - 1;
    uint32_t i = (uint32_t)hs_hash(sku, len) & mask;

    for (;;) {
        hs_shadow_sku *e = &slots[i];
        if (e->sku_len == 0 || (e->sku_len == len && memcmp(e->sku, sku, len) == 0))
            return e;
        i = (i + 1) & mask;
    }
}

static int
shadow_grow(hs_shadow *s)
{
    uint32_t cap = s->capacity * 2;
    hs_shadow_sku *slots;

    if (cap == 0 || cap > (UINT32_C(1) << 31)) {
        hs_set_error("shadow counter table cannot grow past %u SKUs", s->capacity);
        return -1;
    }
    slots = calloc(cap, sizeof(*slots));
    if (slots == NULL) {
        hs_set_error("out of memory growing the shadow counters to %u", cap);
        return -1;
    }
    for (uint32_t i = 0; i < s->capacity; i++) {
        hs_shadow_sku *e = &s->slots[i];
        if (e->sku_len != 0)
            *shadow_probe(slots, cap, e->sku, e->sku_len) = *e;
    }
    free(s->slots);
    s->slots = slots;
    s->capacity = cap;
    return 0;
}

/*
 * Find sku (1..HS_SKU_MAX bytes); with create, add it with available 0 when
 * absent.  NULL when absent (without create), for a bad length, or when
 * the table cannot grow (hs_last_error() set).  A pointer returned stays
 * valid until the next call that creates a SKU (the table may move).
 */
hs_shadow_sku *
hs_shadow_get(hs_shadow *s, const char *sku, size_t sku_len, bool create)
{
    hs_shadow_sku *e;

    if (sku_len == 0 || sku_len > HS_SKU_MAX) {
        hs_set_error("shadow counter for a SKU of %zu bytes (1..%d)", sku_len, HS_SKU_MAX);
        return NULL;
    }
    e = shadow_probe(s->slots, s->capacity, sku, sku_len);
    if (e->sku_len != 0)
        return e;
    if (!create)
        return NULL;
    if ((uint64_t)(s->count + 1) * 4 > (uint64_t)s->capacity * 3) {
        if (shadow_grow(s) != 0)
            return NULL;
        e = shadow_probe(s->slots, s->capacity, sku, sku_len);
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->sku, sku, sku_len);
    e->sku_len = (uint8_t)sku_len;
    s->count++;
    return e;
}

/*
 * Fold one record, of any type: DEDUCT and RESERVE subtract qty, REFUND,
 * CANCEL and EXPIRE add it, PUT_SKU and ADD_STOCK add their signed delta,
 * CONFIRM, NOOP, SALE and BUYER change no counter (a BUYER changes a
 * buyer's count: checkpoint_buyer.c); a SALE replaces its SKU's sale
 * configuration with the record's (qty = starts_at, xid = ends_at, ttl_ms =
 * per-buyer limit, flag HS_REC_FLAG_PAUSED).
 * Every type but NOOP creates its SKU when absent.  The fold judges no
 * record (that is the daemon's work when it makes them); it fails, leaving
 * s unchanged, only when rec->lsn != s->lsn + 1, for a record without a
 * SKU, on an overflow (of a counter, or a SALE whose starts_at or limit
 * hs_sale cannot hold: a queue record never has them), or when the table
 * cannot grow.
 */
int
hs_shadow_fold(hs_shadow *s, const hs_record *rec)
{
    hs_shadow_sku *e;
    int64_t delta, sum;

    if (rec->lsn != s->lsn + 1) {
        hs_set_error("shadow fold of LSN %" PRIu64 " after LSN %" PRIu64 " (must be the next)",
                     rec->lsn, s->lsn);
        return -1;
    }
    switch (rec->type) {
    case HS_REC_DEDUCT:
    case HS_REC_RESERVE:
        if (rec->qty == INT64_MIN)
            goto overflow;
        delta = -rec->qty;
        break;
    case HS_REC_CONFIRM: /* a hold's units were taken by its RESERVE */
        delta = 0;
        break;
    case HS_REC_REFUND:
    case HS_REC_CANCEL:
    case HS_REC_EXPIRE:
    case HS_REC_PUT_SKU:
    case HS_REC_ADD_STOCK:
        delta = rec->qty;
        break;
    case HS_REC_SALE:
        if (rec->qty < 0 || rec->ttl_ms > INT32_MAX) {
            hs_set_error("shadow fold of LSN %" PRIu64 ": SALE of SKU %.*s with starts_at %" PRId64
                         " or per-buyer limit %u out of range",
                         rec->lsn, (int)rec->sku_len, rec->sku, rec->qty, rec->ttl_ms);
            return -1;
        }
        delta = 0;
        break;
    case HS_REC_BUYER:
        delta = 0;
        break;
    case HS_REC_NOOP:
        s->lsn = rec->lsn;
        return 0;
    default:
        hs_set_error("shadow fold of LSN %" PRIu64 ": unknown record type %u", rec->lsn, rec->type);
        return -1;
    }
    e = hs_shadow_get(s, rec->sku, rec->sku_len, true);
    if (e == NULL) {
        char why[256];
        snprintf(why, sizeof(why), "%s", hs_last_error());
        hs_set_error("shadow fold of LSN %" PRIu64 ": %s", rec->lsn, why);
        return -1;
    }
    if (__builtin_add_overflow(e->available, delta, &sum))
        goto overflow;
    e->available = sum;
    if (rec->type == HS_REC_SALE) {
        e->sale.starts_at_ms = (uint64_t)rec->qty;
        e->sale.ends_at_ms = rec->xid;
        e->sale.per_buyer_limit = (int32_t)rec->ttl_ms;
        e->sale.paused = (rec->flags & HS_REC_FLAG_PAUSED) != 0;
    }
    if (rec->type == HS_REC_BUYER && hs_shadow_buyer_fold(s, e, rec) != 0)
        return -1;
    s->lsn = rec->lsn;
    return 0;

overflow:
    hs_set_error("shadow fold of LSN %" PRIu64 ": qty %" PRId64 " overflows SKU %.*s", rec->lsn,
                 rec->qty, (int)rec->sku_len, rec->sku);
    return -1;
}

/* Read all of path into a malloc'd buffer. 1 loaded, 0 no such file, -1. */
static int
read_file(const char *path, uint8_t **out, size_t *outlen)
{
    struct stat sb;
    uint8_t *buf;
    size_t got = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        hs_set_error("cannot open checkpoint %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0) {
        hs_set_error("cannot stat checkpoint %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (buf == NULL) {
        hs_set_error("out of memory reading checkpoint %s (%lld bytes)", path,
                     (long long)sb.st_size);
        close(fd);
        return -1;
    }
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            hs_set_error("cannot read checkpoint %s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *outlen = got;
    return 1;
}

static bool
all_bytes_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/*
 * Decode one entry of a version-`version` file at p (CKPT_ENTRY_SIZE_V1 or
 * _V2 bytes, checkpoint_write.c) into *len, *available and *sale (the SKU
 * is at p + 16; a version-1 entry has every sale field zero).  NULL when
 * valid, else a phrase for the message: what is wrong with it.
 */
static const char *
ckpt_decode_entry(const uint8_t *p, uint32_t version, unsigned *len, int64_t *available,
                  hs_sale *sale, hs_lsn *buyers_since)
{
    uint32_t limit;

    *buyers_since = version >= 3 ? hs_get_u64(p + 96) : 0;

    *len = p[8];
    if (*len == 0 || *len > HS_SKU_MAX)
        return "a SKU length out of 1..63";
    if (!all_bytes_zero(p + 16 + *len, 64 - *len))
        return "non-zero bytes after its SKU";
    *available = (int64_t)hs_get_u64(p);
    memset(sale, 0, sizeof(*sale));
    if (version == 1)
        return all_bytes_zero(p + 9, 7) ? NULL : "non-zero reserved bytes";
    if ((p[9] & ~0x01) != 0 || p[10] != 0 || p[11] != 0)
        return "non-zero reserved bytes or sale flag bits";
    limit = hs_get_u32(p + 12);
    sale->starts_at_ms = hs_get_u64(p + 80);
    sale->ends_at_ms = hs_get_u64(p + 88);
    if (limit > INT32_MAX || sale->starts_at_ms > INT64_MAX)
        return "a per-buyer limit or starts_at out of range";
    sale->per_buyer_limit = (int32_t)limit;
    sale->paused = (p[9] & 0x01) != 0;
    return NULL;
}

/* See checkpoint.h.  s's counters are replaced by the file's; on -1 s is
 * left empty (count 0) with its positions untouched. */
int
hs_checkpoint_load(const char *dir, hs_shadow *s)
{
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    size_t size;
    uint64_t count, buyers, magic;
    uint32_t version, hsize, crc;
    size_t entry_size;
    int rc;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, HS_CKPT_FILE) >= sizeof(path)) {
        hs_set_error("data directory path too long: %s", dir);
        return -1;
    }
    rc = read_file(path, &buf, &size);
    if (rc <= 0)
        return rc;
    rc = -1;
    if (size < CKPT_HEADER_SIZE + CKPT_TRAILER_SIZE) {
        hs_set_error("checkpoint %s is short: %zu bytes, at least %d expected", path, size,
                     CKPT_HEADER_SIZE + CKPT_TRAILER_SIZE);
        goto done;
    }
    magic = hs_get_u64(buf);
    if (magic != HS_CKPT_MAGIC) {
        hs_set_error("checkpoint %s has bad magic 0x%016" PRIx64 " (a checkpoint has 0x%016" PRIx64
                     ")",
                     path, magic, HS_CKPT_MAGIC);
        goto done;
    }
    version = hs_get_u32(buf + 8);
    if (version < HS_CKPT_FORMAT_VERSION_MIN || version > HS_CKPT_FORMAT_VERSION) {
        hs_set_error("checkpoint %s has format version %u, this build reads versions %d to %d",
                     path, version, HS_CKPT_FORMAT_VERSION_MIN, HS_CKPT_FORMAT_VERSION);
        goto done;
    }
    entry_size = version == 1 ? CKPT_ENTRY_SIZE_V1
                 : version == 2 ? CKPT_ENTRY_SIZE_V2
                                : CKPT_ENTRY_SIZE_V3;
    hsize = hs_get_u32(buf + 12);
    count = hs_get_u64(buf + 40);
    buyers = hs_get_u64(buf + 56);
    if (hsize != CKPT_HEADER_SIZE || count > (size - CKPT_HEADER_SIZE) / entry_size ||
        (version < 3 && buyers != 0) ||
        buyers > (size - CKPT_HEADER_SIZE - count * entry_size) / CKPT_BUYER_SIZE ||
        size != CKPT_HEADER_SIZE + count * entry_size + buyers * CKPT_BUYER_SIZE +
                    CKPT_TRAILER_SIZE) {
        hs_set_error("checkpoint %s is %zu bytes but its header (size %u) says %" PRIu64
                     " entries and %" PRIu64 " buyers: torn or truncated",
                     path, size, hsize, count, buyers);
        goto done;
    }
    crc = hs_get_u32(buf + size - CKPT_TRAILER_SIZE);
    if (crc != hs_crc32c(0, buf, size - CKPT_TRAILER_SIZE)) {
        hs_set_error("checkpoint %s: checksum mismatch (stored 0x%08x, computed 0x%08x)", path, crc,
                     hs_crc32c(0, buf, size - CKPT_TRAILER_SIZE));
        goto done;
    }

    memset(s->slots, 0, (size_t)s->capacity * sizeof(hs_shadow_sku));
    s->count = 0;
    free(s->buyers);
    s->buyers = NULL;
    s->buyer_capacity = 0;
    s->buyer_count = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t off = CKPT_HEADER_SIZE + i * entry_size;
        const uint8_t *p = buf + off;
        const char *why;
        unsigned len;
        int64_t available;
        hs_sale sale;
        hs_lsn since;
        hs_shadow_sku *e;

        why = ckpt_decode_entry(p, version, &len, &available, &sale, &since);
        if (why != NULL) {
            hs_set_error("checkpoint %s (format version %u): entry %" PRIu64 " at offset %" PRIu64
                         " (SKU length %u) has %s",
                         path, version, i, off, len, why);
            goto reset;
        }
        if (hs_shadow_get(s, (const char *)p + 16, len, false) != NULL) {
            hs_set_error("checkpoint %s: entry %" PRIu64 " at offset %" PRIu64
                         " names SKU %.*s a second time",
                         path, i, off, (int)len, (const char *)p + 16);
            goto reset;
        }
        e = hs_shadow_get(s, (const char *)p + 16, len, true);
        if (e == NULL)
            goto reset;
        e->available = available;
        e->sale = sale;
        e->buyers_since = since;
    }
    for (uint64_t i = 0; i < buyers; i++) {
        uint64_t off = CKPT_HEADER_SIZE + count * entry_size + i * CKPT_BUYER_SIZE;
        const uint8_t *p = buf + off;
        unsigned sku_len = p[8], buyer_len = p[9];
        uint64_t units = hs_get_u64(p);
        hs_shadow_buyer *b;

        if (sku_len == 0 || sku_len > HS_SKU_MAX || buyer_len == 0 || buyer_len > HS_BUYER_MAX ||
            units > INT32_MAX || !all_bytes_zero(p + 10, 6) ||
            !all_bytes_zero(p + 16 + sku_len, 64 - sku_len) ||
            !all_bytes_zero(p + 80 + buyer_len, 64 - buyer_len) ||
            hs_shadow_get(s, (const char *)p + 16, sku_len, false) == NULL ||
            hs_shadow_buyer_get(s, (const char *)p + 16, sku_len, (const char *)p + 80, buyer_len,
                                false) != NULL) {
            hs_set_error("checkpoint %s: buyer entry %" PRIu64 " at offset %" PRIu64
                         " is bad (lengths %u and %u, units %" PRIu64
                         ", reserved bytes, a SKU with no entry, or named twice)",
                         path, i, off, sku_len, buyer_len, units);
            goto reset;
        }
        b = hs_shadow_buyer_get(s, (const char *)p + 16, sku_len, (const char *)p + 80, buyer_len,
                                true);
        if (b == NULL)
            goto reset;
        b->units = (int64_t)units;
    }
    s->lsn = hs_get_u64(buf + 16);
    s->applied_lsn = hs_get_u64(buf + 24);
    s->generation = hs_get_u64(buf + 32);
    rc = 1;
    goto done;

reset:
    memset(s->slots, 0, (size_t)s->capacity * sizeof(hs_shadow_sku));
    s->count = 0;
    free(s->buyers);
    s->buyers = NULL;
    s->buyer_capacity = 0;
    s->buyer_count = 0;
done:
    free(buf);
    return rc;
}
