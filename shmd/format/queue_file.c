/*-------------------------------------------------------------------------
 *
 * queue_file.c
 *      The on-disk write-ahead queue: record codec, the spiller's writer,
 *      the recovery scan, recycling, and the drain's reader.
 *
 * WHAT IT SHARES AND WHO WRITES IT
 *
 * The files in DIR/queue/ are written by exactly one thread: the spiller of
 * the hotstockd that holds DIR's lock file (hs_qf_writer).  They are read by
 * the same daemon at start (hs_qf_scan, before the writer opens) and by the
 * PostgreSQL drain at any time, also while the daemon appends or is down
 * (hs_queue_*).  Nothing is shared in memory; the ordering that protects a
 * reader is the order of system calls in the writer:
 *
 *   - a record is appended with write(2) only after every record before it;
 *   - a file is created (O_EXCL) only after the whole of the previous file
 *     was written, so "file k+1 exists" implies "file k is complete";
 *   - durable_lsn (segment.h) is published only after fdatasync, so every
 *     LSN <= durable_lsn lies whole in the files.
 *
 * A reader therefore treats an invalid or partial record as "not written
 * yet" while it is at the end of the newest file and beyond what it was
 * promised durable, and as corruption otherwise.  Only the daemon's scan
 * ever removes bytes (a torn tail at start, before the writer opens) and
 * only the daemon recycles files (those the drain has applied).
 *
 *
 * THE FORMAT (version 1)
 *
 * Directory.  DIR/queue/ holds the queue files, each named by the LSN of
 * its first record as 16 lower-case hex digits: "%016llx.hsq".  The files
 * hold consecutive LSNs: file k+1 starts at the LSN right after the last
 * record of file k.  LSNs start at 1 and are dense (an abandoned ring slot
 * is written as a NOOP record).  Other names in the directory are ignored.
 *
 * All integers are little-endian, written and read byte by byte (never by
 * casting a struct), so the format does not depend on the host.
 *
 * File header, 64 bytes at offset 0:
 *
 *      offset  size  field
 *           0     8  magic           HS_QF_MAGIC, "HSTKQUE1"
 *           8     4  format version  HS_QF_FORMAT_VERSION (1)
 *          12     4  header size     64
 *          16     8  first_lsn       LSN of the file's first record (= its name)
 *          24     8  created         unix microseconds, informational
 *          32    28  reserved        zeros
 *          60     4  header CRC32C   over bytes [0, 60)
 *
 * Records follow from offset 64, back to back, each starting on an 8-byte
 * boundary.  A record is a 48-byte header, the SKU bytes, the order id
 * bytes and zero padding to the next multiple of 8:
 *
 *      offset  size  field
 *           0     4  crc             CRC32C over bytes [4, total_len)
 *           4     4  total_len       whole record incl. padding; multiple of 8
 *           8     8  lsn
 *          16     1  type            1 deduct, 2 refund, 3 put_sku,
 *                                    4 add_stock, 5 noop (segment.h)
 *          17     1  sku_len         0..63
 *          18     1  order_len       0..63 (0 for stock records)
 *          19     1  flags
 *          20     4  reserved        zero
 *          24     8  qty             signed: qty or delta (two's complement)
 *          32     8  xid             caller's full transaction id, 0 if none
 *          40     8  timestamp_us    unix microseconds
 *          48     *  sku, order_id, zero padding
 *
 * A typical deduction (sku "sku-42", order id "order-000123456") takes
 * 48 + 6 + 15 = 69 bytes, padded to 72; the largest record is 176 bytes.
 * CRC32C is Castagnoli (hs_crc32c(0, ...), the check value of "123456789"
 * is 0xE3069283).
 *
 * VALIDITY.  A record at offset `off` of a file is valid exactly when:
 *
 *   1. at least 48 bytes exist at off, and total_len is a multiple of 8
 *      in [48, 176] and total_len bytes exist at off;
 *   2. sku_len <= 63, order_len <= 63, and total_len equals
 *      48 + sku_len + order_len rounded up to 8;
 *   3. crc equals CRC32C of bytes [off + 4, off + total_len);
 *   4. type is 1..5, reserved is zero and the padding bytes are zero;
 *   5. lsn is the previous record's lsn + 1, and the first record's lsn
 *      is the file header's first_lsn (which equals the file's name).
 *
 * A file header is valid when magic, format version, header size and its
 * CRC match, the reserved bytes are zero and first_lsn >= 1 equals the
 * name.
 *
 * TORN TAIL.  A crash (or power loss) while the spiller writes leaves at
 * most the end of the NEWEST file incomplete.  In the newest file only, the
 * first record that fails rules 1-4 is a torn tail when no valid record
 * (rules 1-4) starts at any 8-byte-aligned offset after it in that file.
 * The recovery scan cuts a torn tail with ftruncate at its offset and fsync,
 * and reports the file, offset and byte count it removed.  Likewise a newest
 * file whose header is short or all zeros with no valid record after it (a
 * crash right after the file was created) is removed whole.
 *
 * Everything else is corruption and is refused, never skipped: an invalid
 * record with a valid record somewhere after it; any invalid record or
 * trailing bytes in a file that is not the newest; a record that fails
 * rule 5 (a CRC-valid record cannot be torn); a missing, garbage or
 * other-version file header; a gap or overlap in LSNs between files.  The
 * message names the file, the byte offset and the LSN expected there.  (So
 * should a power loss keep a later page of never-synced data but lose an
 * earlier one, the scan refuses rather than guess: an operator decides.)
 * The writer refuses to open on a newest file with an uncut torn tail, or
 * one that does not end at the LSN it is told to continue after.
 *
 * ROTATION AND RECYCLING.  Before it appends a record, the writer starts a
 * new file (named by that record's LSN, created with O_EXCL, header written
 * at once) when the current one has reached segment_bytes; the old file
 * is written completely first and fdatasync'ed at the next sync, together
 * with the directory.  hs_qf_recycle() removes a file once the drain has
 * applied every record in it, i.e. when (first_lsn of the next file) - 1
 * <= applied LSN.  The newest file is never removed, so the directory
 * always tells where the LSN sequence continues.
 *
 *-------------------------------------------------------------------------
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue_file.h"
#include "segment.h"

#define QF_WRITE_BUF_SIZE (256 * 1024)                /* the writer's buffer */
#define QF_READ_BUF_SIZE (1024 * 1024)                /* a reader's window */
#define QF_NAME_LEN 20                                /* "%016llx.hsq" */
#define QF_DEFAULT_SEGMENT_BYTES (UINT64_C(64) << 20) /* segment_bytes 0 */
#define QF_RECORD_LEN(sku_len, order_len)                                                          \
    ((size_t)(HS_QF_RECORD_HEADER_SIZE + (sku_len) + (order_len) + 7) & ~(size_t)7)
#define QF_RECORD_LEN_MAX QF_RECORD_LEN(HS_SKU_MAX, HS_ORDER_ID_MAX)

_Static_assert(QF_RECORD_LEN_MAX <= HS_QF_RECORD_MAX, "HS_QF_RECORD_MAX too small");

/*-------------------------------------------------------------------------
 * Helpers
 *-------------------------------------------------------------------------
 */
static bool
all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/*-------------------------------------------------------------------------
 * Record and header codec
 *-------------------------------------------------------------------------
 */

/* Encode rec (sku_len and order_len within their maxima: asserted) into
 * buf; returns the record's total length. */
size_t
hs_qf_encode(const hs_record *rec, uint8_t *buf)
{
    size_t strings = (size_t)rec->sku_len + rec->order_len;
    size_t len = QF_RECORD_LEN(rec->sku_len, rec->order_len);

    assert(rec->sku_len <= HS_SKU_MAX && rec->order_len <= HS_ORDER_ID_MAX);
    hs_put_u32(buf + 4, (uint32_t)len);
    hs_put_u64(buf + 8, rec->lsn);
    buf[16] = rec->type;
    buf[17] = rec->sku_len;
    buf[18] = rec->order_len;
    buf[19] = rec->flags;
    hs_put_u32(buf + 20, 0);
    hs_put_u64(buf + 24, (uint64_t)rec->qty);
    hs_put_u64(buf + 32, rec->xid);
    hs_put_u64(buf + 40, rec->timestamp_us);
    memcpy(buf + HS_QF_RECORD_HEADER_SIZE, rec->sku, rec->sku_len);
    memcpy(buf + HS_QF_RECORD_HEADER_SIZE + rec->sku_len, rec->order_id, rec->order_len);
    memset(buf + HS_QF_RECORD_HEADER_SIZE + strings, 0, len - HS_QF_RECORD_HEADER_SIZE - strings);
    hs_put_u32(buf, hs_crc32c(0, buf + 4, len - 4));
    return len;
}

/* Rules 1-4 of the validity rule (the caller checks rule 5, the LSN).  On
 * HS_QF_OK *rec is filled (strings NUL-terminated) and *len is the record's
 * length; otherwise *rec is unspecified. */
hs_qf_decode_result
hs_qf_decode(const uint8_t *buf, size_t avail, hs_record *rec, size_t *len)
{
    uint32_t total, crc;
    unsigned sku_len, order_len;
    size_t strings;

    if (avail < HS_QF_RECORD_HEADER_SIZE)
        return HS_QF_SHORT;
    total = hs_get_u32(buf + 4);
    if (total == 0 && all_zero(buf, HS_QF_RECORD_HEADER_SIZE))
        return HS_QF_ZERO;
    if (total < HS_QF_RECORD_HEADER_SIZE || total > QF_RECORD_LEN_MAX || (total & 7) != 0)
        return HS_QF_BAD_LEN;
    sku_len = buf[17];
    order_len = buf[18];
    if (sku_len > HS_SKU_MAX || order_len > HS_ORDER_ID_MAX ||
        QF_RECORD_LEN(sku_len, order_len) != total)
        return HS_QF_BAD_LEN;
    if (total > avail)
        return HS_QF_SHORT;
    crc = hs_get_u32(buf);
    if (crc != hs_crc32c(0, buf + 4, total - 4))
        return HS_QF_BAD_CRC;
    strings = sku_len + order_len;
    if (buf[16] < HS_REC_DEDUCT || buf[16] > HS_REC_NOOP || hs_get_u32(buf + 20) != 0 ||
        !all_zero(buf + HS_QF_RECORD_HEADER_SIZE + strings,
                  total - HS_QF_RECORD_HEADER_SIZE - strings))
        return HS_QF_BAD_TYPE;

    rec->lsn = hs_get_u64(buf + 8);
    rec->type = buf[16];
    rec->sku_len = (uint8_t)sku_len;
    rec->order_len = (uint8_t)order_len;
    rec->flags = buf[19];
    rec->qty = (int64_t)hs_get_u64(buf + 24);
    rec->xid = hs_get_u64(buf + 32);
    rec->timestamp_us = hs_get_u64(buf + 40);
    memcpy(rec->sku, buf + HS_QF_RECORD_HEADER_SIZE, sku_len);
    rec->sku[sku_len] = '\0';
    memcpy(rec->order_id, buf + HS_QF_RECORD_HEADER_SIZE + sku_len, order_len);
    rec->order_id[order_len] = '\0';
    *len = total;
    return HS_QF_OK;
}

/* A phrase for messages ("... at offset 128: checksum mismatch"). */
const char *
hs_qf_decode_result_name(hs_qf_decode_result r)
{
    switch (r) {
    case HS_QF_OK:
        return "ok";
    case HS_QF_SHORT:
        return "partial record";
    case HS_QF_ZERO:
        return "zeroed bytes";
    case HS_QF_BAD_LEN:
        return "bad length";
    case HS_QF_BAD_CRC:
        return "checksum mismatch";
    case HS_QF_BAD_TYPE:
        return "bad type or non-zero reserved bytes";
    }
    return "unknown";
}

/* Encode a file header for a file whose first record will be first_lsn. */
void
hs_qf_encode_header(uint8_t *buf, hs_lsn first_lsn)
{
    memset(buf, 0, HS_QF_HEADER_SIZE);
    hs_put_u64(buf, HS_QF_MAGIC);
    hs_put_u32(buf + 8, HS_QF_FORMAT_VERSION);
    hs_put_u32(buf + 12, HS_QF_HEADER_SIZE);
    hs_put_u64(buf + 16, first_lsn);
    hs_put_u64(buf + 24, hs_now_unix_us());
    hs_put_u32(buf + 60, hs_crc32c(0, buf, 60));
}

/* Check a file header; false with a phrase in why[] when it is not valid
 * (the file name check is the caller's). */
bool
hs_qf_check_header(const uint8_t *buf, size_t avail, hs_lsn *first_lsn, char *why, size_t whylen)
{
    uint64_t magic;
    uint32_t version, size, crc;

    if (avail < HS_QF_HEADER_SIZE) {
        snprintf(why, whylen, "short header (%zu of %d bytes)", avail, HS_QF_HEADER_SIZE);
        return false;
    }
    magic = hs_get_u64(buf);
    if (magic != HS_QF_MAGIC) {
        snprintf(why, whylen, "bad magic 0x%016" PRIx64 " (a queue file has 0x%016" PRIx64 ")",
                 magic, HS_QF_MAGIC);
        return false;
    }
    version = hs_get_u32(buf + 8);
    if (version != HS_QF_FORMAT_VERSION) {
        snprintf(why, whylen, "format version %u, this build reads version %d", version,
                 HS_QF_FORMAT_VERSION);
        return false;
    }
    size = hs_get_u32(buf + 12);
    if (size != HS_QF_HEADER_SIZE) {
        snprintf(why, whylen, "header size %u, expected %d", size, HS_QF_HEADER_SIZE);
        return false;
    }
    crc = hs_get_u32(buf + 60);
    if (crc != hs_crc32c(0, buf, 60)) {
        snprintf(why, whylen, "header checksum mismatch");
        return false;
    }
    if (!all_zero(buf + 32, 28)) {
        snprintf(why, whylen, "non-zero reserved header bytes");
        return false;
    }
    *first_lsn = hs_get_u64(buf + 16);
    if (*first_lsn == 0) {
        snprintf(why, whylen, "first LSN 0 in header");
        return false;
    }
    return true;
}

/*-------------------------------------------------------------------------
 * Paths and listing
 *-------------------------------------------------------------------------
 */

/* DIR/queue into out; -1 with an error if it does not fit. */
static int
qf_queue_dir(const char *dir, char *out, size_t outlen)
{
    if ((size_t)snprintf(out, outlen, "%s/%s", dir, HS_QF_SUBDIR) >= outlen - QF_NAME_LEN - 1) {
        hs_set_error("data directory path too long: %s", dir);
        return -1;
    }
    return 0;
}

/* qdir/%016llx.hsq; qdir was checked to leave room by qf_queue_dir(). */
static void
qf_file_path(char *out, size_t outlen, const char *qdir, hs_lsn first_lsn)
{
    int n = snprintf(out, outlen, "%s/%016" PRIx64 ".hsq", qdir, first_lsn);
    assert(n > 0 && (size_t)n < outlen);
    (void)n;
}

/* Is name a queue file name ("%016llx.hsq", lower-case hex)?  Sets *lsn. */
static bool
qf_parse_name(const char *name, hs_lsn *lsn)
{
    uint64_t v = 0;

    if (strlen(name) != QF_NAME_LEN || strcmp(name + 16, ".hsq") != 0)
        return false;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        if (c >= '0' && c <= '9')
            v = v << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (uint64_t)(c - 'a' + 10);
        else
            return false;
    }
    *lsn = v;
    return true;
}

static int
qf_file_cmp(const void *a, const void *b)
{
    hs_lsn x = ((const hs_qf_file *)a)->first_lsn, y = ((const hs_qf_file *)b)->first_lsn;
    return x < y ? -1 : x > y;
}

/* See queue_file.h.  A missing DIR/queue is an empty queue (0, *files
 * NULL). */
int
hs_qf_list(const char *dir, hs_qf_file **files)
{
    char qdir[PATH_MAX];
    hs_qf_file *out = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    DIR *d;

    *files = NULL;
    if (qf_queue_dir(dir, qdir, sizeof(qdir)) != 0)
        return -1;
    d = opendir(qdir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        hs_set_error("cannot open queue directory %s: %s", qdir, strerror(errno));
        return -1;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        hs_lsn lsn;
        if (!qf_parse_name(de->d_name, &lsn))
            continue;
        if (n == cap) {
            hs_qf_file *grown;
            cap = cap ? cap * 2 : 16;
            grown = realloc(out, (size_t)cap * sizeof(*out));
            if (grown == NULL) {
                hs_set_error("out of memory listing %s", qdir);
                free(out);
                closedir(d);
                return -1;
            }
            out = grown;
        }
        out[n].first_lsn = lsn;
        qf_file_path(out[n].path, sizeof(out[n].path), qdir, lsn);
        n++;
    }
    if (errno != 0) {
        hs_set_error("cannot read queue directory %s: %s", qdir, strerror(errno));
        free(out);
        closedir(d);
        return -1;
    }
    closedir(d);
    if (n > 1)
        qsort(out, (size_t)n, sizeof(*out), qf_file_cmp);
    *files = out;
    return n;
}

/* fsync a directory; -1 with an error naming it. */
static int
qf_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) != 0) {
        hs_set_error("cannot fsync directory %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/*-------------------------------------------------------------------------
 * A read window over one file
 *
 * pread(2) into a private buffer, never mmap: a reader may run while the
 * daemon cuts a torn tail, and a mapping read past a truncation would
 * SIGBUS the reading process (a PostgreSQL backend).
 *-------------------------------------------------------------------------
 */
typedef struct qf_window {
    int fd;
    uint8_t *buf;
    size_t cap;
    uint64_t off; /* file offset of buf[0] */
    size_t len;   /* bytes valid in buf */
} qf_window;

static int
qf_window_init(qf_window *w, size_t cap)
{
    w->fd = -1;
    w->cap = cap;
    w->off = 0;
    w->len = 0;
    w->buf = malloc(cap);
    if (w->buf == NULL) {
        hs_set_error("out of memory for a %zu-byte read buffer", cap);
        return -1;
    }
    return 0;
}

static void
qf_window_reset(qf_window *w, int fd)
{
    w->fd = fd;
    w->off = 0;
    w->len = 0;
}

/*
 * Point *p at file offset pos and return how many bytes from there are in
 * the window (all the file has, up to the window's size); reads from the
 * file when fewer than `need` bytes are cached.  0 at end of file; -1 on a
 * read error (errno set).
 */
static ssize_t
qf_window_get(qf_window *w, uint64_t pos, size_t need, const uint8_t **p)
{
    size_t got = 0;

    if (pos >= w->off && pos + need <= w->off + w->len) {
        *p = w->buf + (pos - w->off);
        return (ssize_t)(w->off + w->len - pos);
    }
    while (got < w->cap) {
        ssize_t n = pread(w->fd, w->buf + got, w->cap - got, (off_t)(pos + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            w->len = 0;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    w->off = pos;
    w->len = got;
    *p = w->buf;
    return (ssize_t)got;
}

/*
 * Is there a record passing rules 1-4 at an 8-byte-aligned offset >= from?
 * 1 (its offset in *found), 0, -1 on a read error.
 */
static int
qf_find_valid(qf_window *w, uint64_t from, uint64_t *found)
{
    hs_record rec;
    size_t len;

    for (uint64_t off = (from + 7) & ~UINT64_C(7);; off += 8) {
        const uint8_t *p;
        ssize_t avail = qf_window_get(w, off, HS_QF_RECORD_MAX, &p);
        if (avail < 0)
            return -1;
        if (avail < HS_QF_RECORD_HEADER_SIZE)
            return 0;
        if (hs_qf_decode(p, (size_t)avail, &rec, &len) == HS_QF_OK) {
            *found = off;
            return 1;
        }
    }
}

/*-------------------------------------------------------------------------
 * Scanning one file (the recovery scan and the writer's open)
 *-------------------------------------------------------------------------
 */
typedef enum qf_file_end {
    QF_END_CLEAN,       /* every byte after the header is a valid record */
    QF_END_TORN,        /* invalid record at st.bad_off, no valid record after it */
    QF_END_TORN_HEADER, /* short or zeroed header, no valid record after it */
    QF_END_ERROR,       /* corruption or I/O error, hs_last_error() set */
    QF_END_STOPPED      /* visit() returned st.visit_rc != 0 */
} qf_file_end;

typedef struct qf_file_state {
    uint64_t size;           /* file size at the scan */
    uint64_t bad_off;        /* QF_END_TORN: offset of the torn record */
    hs_lsn next_lsn;         /* LSN expected after the last valid record */
    hs_lsn first_seen;       /* first record's LSN, 0 if none */
    uint64_t records;        /* records visited */
    hs_qf_decode_result why; /* QF_END_TORN: what was wrong */
    int visit_rc;
} qf_file_state;

/*
 * Scan the file at path (open as fd), which must start at first_lsn, and
 * call visit() for every record with LSN >= from_lsn.  Classifies its end;
 * the caller decides what a torn end means (only the newest file may have
 * one).
 */
static qf_file_end
qf_scan_file(qf_window *w, int fd, const char *path, hs_lsn first_lsn, hs_lsn from_lsn,
             hs_qf_visit visit, void *arg, qf_file_state *st)
{
    char why[160];
    struct stat sb;
    const uint8_t *p;
    ssize_t avail;
    hs_record rec;
    hs_lsn hdr_lsn;
    uint64_t pos, found;
    int v;

    memset(st, 0, sizeof(*st));
    st->next_lsn = first_lsn;
    qf_window_reset(w, fd);
    if (fstat(fd, &sb) != 0) {
        hs_set_error("cannot stat queue file %s: %s", path, strerror(errno));
        return QF_END_ERROR;
    }
    st->size = (uint64_t)sb.st_size;

    avail = qf_window_get(w, 0, HS_QF_HEADER_SIZE, &p);
    if (avail < 0)
        goto read_error;
    if (!hs_qf_check_header(p, (size_t)avail, &hdr_lsn, why, sizeof(why))) {
        if (avail < HS_QF_HEADER_SIZE || all_zero(p, HS_QF_HEADER_SIZE)) {
            v = qf_find_valid(w, HS_QF_HEADER_SIZE, &found);
            if (v < 0)
                goto read_error;
            if (v == 0)
                return QF_END_TORN_HEADER;
        }
        hs_set_error("queue file %s: %s at offset 0, expected LSN %" PRIu64, path, why, first_lsn);
        return QF_END_ERROR;
    }
    if (hdr_lsn != first_lsn) {
        hs_set_error("queue file %s: header says first LSN %" PRIu64 " but the name says %" PRIu64
                     " (offset 0, expected LSN %" PRIu64 ")",
                     path, hdr_lsn, first_lsn, first_lsn);
        return QF_END_ERROR;
    }

    pos = HS_QF_HEADER_SIZE;
    for (;;) {
        hs_qf_decode_result d;
        size_t len;

        avail = qf_window_get(w, pos, HS_QF_RECORD_MAX, &p);
        if (avail < 0)
            goto read_error;
        if (avail == 0)
            return QF_END_CLEAN;
        d = hs_qf_decode(p, (size_t)avail, &rec, &len);
        if (d != HS_QF_OK) {
            v = qf_find_valid(w, pos + 8, &found);
            if (v < 0)
                goto read_error;
            if (v == 1) {
                hs_set_error("queue file %s: %s at offset %" PRIu64 ", expected LSN %" PRIu64
                             ", with a valid record after it at offset %" PRIu64,
                             path, hs_qf_decode_result_name(d), pos, st->next_lsn, found);
                return QF_END_ERROR;
            }
            st->bad_off = pos;
            st->why = d;
            return QF_END_TORN;
        }
        if (rec.lsn != st->next_lsn) {
            hs_set_error("queue file %s: record at offset %" PRIu64 " has LSN %" PRIu64
                         ", expected LSN %" PRIu64,
                         path, pos, rec.lsn, st->next_lsn);
            return QF_END_ERROR;
        }
        if (st->first_seen == 0)
            st->first_seen = rec.lsn;
        if (rec.lsn >= from_lsn && visit != NULL) {
            st->records++;
            st->visit_rc = visit(&rec, arg);
            if (st->visit_rc != 0) {
                st->next_lsn++;
                return QF_END_STOPPED;
            }
        }
        pos += len;
        st->next_lsn++;
    }

read_error:
    hs_set_error("cannot read queue file %s: %s", path, strerror(errno));
    return QF_END_ERROR;
}

/*-------------------------------------------------------------------------
 * Recovery scan and recycling
 *-------------------------------------------------------------------------
 */

/* See queue_file.h.  When a torn tail is found with cut_tail false, res
 * still describes it (tail_path, tail_offset, tail_bytes) with tail_cut
 * false, and the scan ends there.  res->last_lsn is the LSN before the
 * queue's continuation point even when the queue holds no record (e.g. a
 * lone file named 101 with no record: 100). */
int
hs_qf_scan(const char *dir, hs_lsn from_lsn, bool cut_tail, hs_qf_visit visit, void *arg,
           hs_qf_scan_result *res)
{
    char qdir[PATH_MAX];
    hs_qf_file *files = NULL;
    qf_window w = {.buf = NULL};
    qf_file_state st;
    hs_lsn expected;
    int n, rc = -1;

    memset(res, 0, sizeof(*res));
    if (qf_queue_dir(dir, qdir, sizeof(qdir)) != 0)
        return -1;
    n = hs_qf_list(dir, &files);
    if (n <= 0)
        return n;
    if (qf_window_init(&w, QF_READ_BUF_SIZE) != 0)
        goto done;

    expected = files[0].first_lsn;
    for (int i = 0; i < n; i++) {
        const char *path = files[i].path;
        bool newest = i == n - 1;
        qf_file_end end;
        int fd;

        if (files[i].first_lsn != expected) {
            hs_set_error("queue file %s: starts at LSN %" PRIu64 " but LSN %" PRIu64
                         " was expected at offset 0 (previous file %s)",
                         path, files[i].first_lsn, expected, files[i - 1].path);
            goto done;
        }
        fd = open(path, (newest && cut_tail ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        if (fd < 0) {
            hs_set_error("cannot open queue file %s: %s", path, strerror(errno));
            goto done;
        }
        end = qf_scan_file(&w, fd, path, files[i].first_lsn, from_lsn, visit, arg, &st);
        res->records += st.records;
        if (res->first_lsn == 0)
            res->first_lsn = st.first_seen;
        res->last_lsn = st.next_lsn - 1;

        if ((end == QF_END_TORN || end == QF_END_TORN_HEADER) && !newest) {
            if (end == QF_END_TORN)
                hs_set_error("queue file %s: %s at offset %" PRIu64 ", expected LSN %" PRIu64
                             ", in a file that is not the newest",
                             path, hs_qf_decode_result_name(st.why), st.bad_off, st.next_lsn);
            else
                hs_set_error("queue file %s: missing header at offset 0, expected LSN %" PRIu64
                             ", in a file that is not the newest",
                             path, expected);
            end = QF_END_ERROR;
        }
        if (end == QF_END_TORN) {
            snprintf(res->tail_path, sizeof(res->tail_path), "%s", path);
            res->tail_offset = st.bad_off;
            res->tail_bytes = st.size - st.bad_off;
            if (cut_tail) {
                if (ftruncate(fd, (off_t)st.bad_off) != 0 || fsync(fd) != 0) {
                    hs_set_error("cannot cut the torn tail of queue file %s at offset %" PRIu64
                                 ": %s",
                                 path, st.bad_off, strerror(errno));
                    end = QF_END_ERROR;
                } else {
                    res->tail_cut = true;
                }
            }
        } else if (end == QF_END_TORN_HEADER) {
            snprintf(res->tail_path, sizeof(res->tail_path), "%s", path);
            res->tail_offset = 0;
            res->tail_bytes = st.size;
            if (cut_tail) {
                if (unlink(path) != 0) {
                    hs_set_error("cannot remove queue file %s with a torn header: %s", path,
                                 strerror(errno));
                    end = QF_END_ERROR;
                } else if (qf_fsync_dir(qdir) != 0) {
                    end = QF_END_ERROR;
                } else {
                    res->tail_cut = true;
                }
            }
        }
        close(fd);
        if (end == QF_END_ERROR)
            goto done;
        if (end == QF_END_STOPPED) {
            rc = st.visit_rc;
            goto done;
        }
        expected = st.next_lsn;
    }
    rc = 0;

done:
    free(w.buf);
    free(files);
    return rc;
}

/* See queue_file.h.  Files are removed oldest first, and the directory is
 * fsync'ed when any was. */
int
hs_qf_recycle(const char *dir, hs_lsn upto)
{
    char qdir[PATH_MAX];
    hs_qf_file *files;
    int n, removed = 0;

    if (qf_queue_dir(dir, qdir, sizeof(qdir)) != 0)
        return -1;
    n = hs_qf_list(dir, &files);
    if (n < 0)
        return -1;
    for (int i = 0; i + 1 < n; i++) {
        if (files[i + 1].first_lsn == 0 || files[i + 1].first_lsn - 1 > upto)
            break;
        if (unlink(files[i].path) != 0 && errno != ENOENT) {
            hs_set_error("cannot remove queue file %s: %s", files[i].path, strerror(errno));
            free(files);
            return -1;
        }
        removed++;
    }
    free(files);
    if (removed > 0 && qf_fsync_dir(qdir) != 0)
        return -1;
    return removed;
}

/*-------------------------------------------------------------------------
 * Writer
 *-------------------------------------------------------------------------
 */
struct hs_qf_writer {
    char qdir[PATH_MAX];
    char path[PATH_MAX]; /* current file */
    int fd;              /* current file, O_APPEND */
    uint64_t file_bytes; /* its size including what is buffered */
    uint64_t segment_bytes;
    hs_lsn last_lsn; /* last LSN appended (buffered or written) */
    bool dirty;      /* current file written since the last sync */
    bool dir_dirty;  /* a file was created since the last sync */
    bool failed;     /* a write or sync failed: the writer refuses work */
    int *pending;    /* older files written since the last sync */
    int npending, cap_pending;
    uint8_t *buf;
    size_t len;
};

/* Create the file whose first record is first_lsn and write its header;
 * it becomes the current file. */
static int
qf_writer_create(hs_qf_writer *w, hs_lsn first_lsn)
{
    uint8_t hdr[HS_QF_HEADER_SIZE];

    qf_file_path(w->path, sizeof(w->path), w->qdir, first_lsn);
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        hs_set_error("cannot create queue file %s: %s", w->path, strerror(errno));
        return -1;
    }
    w->dir_dirty = true;
    hs_qf_encode_header(hdr, first_lsn);
    if (hs_write_all(w->fd, hdr, sizeof(hdr)) != 0) {
        hs_set_error("cannot write the header of queue file %s: %s", w->path, strerror(errno));
        return -1;
    }
    w->dirty = true;
    w->file_bytes = HS_QF_HEADER_SIZE;
    return 0;
}

/* See queue_file.h.  Creates DIR/queue (0700) when missing.  Refuses to
 * append where the result would break the format: after a torn tail that
 * hs_qf_scan() has not cut yet, or when the newest file does not end at
 * last_lsn (a gap or an overlap the scan would refuse later). */
hs_qf_writer *
hs_qf_writer_open(const char *dir, hs_lsn last_lsn, uint64_t segment_bytes)
{
    hs_qf_writer *w;
    hs_qf_file *files = NULL;
    qf_window win = {.buf = NULL};
    qf_file_state st;
    int n;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        hs_set_error("out of memory opening the queue writer");
        return NULL;
    }
    w->fd = -1;
    w->segment_bytes = segment_bytes ? segment_bytes : QF_DEFAULT_SEGMENT_BYTES;
    w->last_lsn = last_lsn;
    w->buf = malloc(QF_WRITE_BUF_SIZE);
    if (w->buf == NULL) {
        hs_set_error("out of memory for the queue write buffer");
        goto fail;
    }
    if (qf_queue_dir(dir, w->qdir, sizeof(w->qdir)) != 0)
        goto fail;
    if (mkdir(w->qdir, 0700) == 0) {
        if (qf_fsync_dir(dir) != 0)
            goto fail;
    } else if (errno != EEXIST) {
        hs_set_error("cannot create queue directory %s: %s", w->qdir, strerror(errno));
        goto fail;
    }

    n = hs_qf_list(dir, &files);
    if (n < 0)
        goto fail;
    if (n == 0) {
        if (qf_writer_create(w, last_lsn + 1) != 0)
            goto fail;
    } else {
        const hs_qf_file *f = &files[n - 1];
        qf_file_end end;

        snprintf(w->path, sizeof(w->path), "%s", f->path);
        w->fd = open(f->path, O_RDWR | O_APPEND | O_CLOEXEC);
        if (w->fd < 0) {
            hs_set_error("cannot open queue file %s: %s", f->path, strerror(errno));
            goto fail;
        }
        if (qf_window_init(&win, QF_READ_BUF_SIZE) != 0)
            goto fail;
        end = qf_scan_file(&win, w->fd, f->path, f->first_lsn, HS_LSN_MAX, NULL, NULL, &st);
        if (end == QF_END_ERROR)
            goto fail;
        if (end != QF_END_CLEAN) {
            hs_set_error("queue file %s: torn tail at offset %" PRIu64 ", expected LSN %" PRIu64
                         ": run the recovery scan (hs_qf_scan with cut_tail) before writing",
                         f->path, end == QF_END_TORN ? st.bad_off : 0, st.next_lsn);
            goto fail;
        }
        if (st.next_lsn - 1 != last_lsn) {
            hs_set_error("queue file %s ends at LSN %" PRIu64 " (offset %" PRIu64
                         "), but the writer was asked to continue after LSN %" PRIu64,
                         f->path, st.next_lsn - 1, st.size, last_lsn);
            goto fail;
        }
        w->file_bytes = st.size;
    }
    free(win.buf);
    free(files);
    return w;

fail:
    free(win.buf);
    free(files);
    if (w->fd >= 0)
        close(w->fd);
    free(w->buf);
    free(w);
    return NULL;
}

/* See queue_file.h.  The writer's own failure is sticky: after any -1 it
 * refuses every further call, as the file may end in a partial write. */
int
hs_qf_writer_write(hs_qf_writer *w)
{
    if (w->failed) {
        hs_set_error("queue writer failed before; it must be reopened after recovery");
        return -1;
    }
    if (w->len == 0)
        return 0;
    if (hs_write_all(w->fd, w->buf, w->len) != 0) {
        hs_set_error("cannot write %zu bytes to queue file %s: %s", w->len, w->path,
                     strerror(errno));
        w->failed = true;
        return -1;
    }
    w->len = 0;
    w->dirty = true;
    return 0;
}

/* Close the current file after writing its buffer; it stays on the pending
 * list until the next sync when it has unsynced data. */
static int
qf_writer_rotate(hs_qf_writer *w, hs_lsn next_lsn)
{
    if (hs_qf_writer_write(w) != 0)
        return -1;
    if (w->dirty) {
        if (w->npending == w->cap_pending) {
            int cap = w->cap_pending ? w->cap_pending * 2 : 8;
            int *grown = realloc(w->pending, (size_t)cap * sizeof(int));
            if (grown == NULL) {
                hs_set_error("out of memory rotating queue file %s", w->path);
                w->failed = true;
                return -1;
            }
            w->pending = grown;
            w->cap_pending = cap;
        }
        w->pending[w->npending++] = w->fd;
    } else {
        close(w->fd);
    }
    w->fd = -1;
    w->dirty = false;
    if (qf_writer_create(w, next_lsn) != 0) {
        w->failed = true;
        return -1;
    }
    return 0;
}

/* See queue_file.h.  Also -1 (nothing appended) for a record that cannot
 * be encoded: unknown type or oversized strings. */
int
hs_qf_writer_append(hs_qf_writer *w, const hs_record *rec)
{
    size_t n;

    if (w->failed) {
        hs_set_error("queue writer failed before; it must be reopened after recovery");
        return -1;
    }
    if (rec->lsn != w->last_lsn + 1) {
        hs_set_error("queue append of LSN %" PRIu64 " after LSN %" PRIu64 " (must be dense)",
                     rec->lsn, w->last_lsn);
        return -1;
    }
    if (rec->type < HS_REC_DEDUCT || rec->type > HS_REC_NOOP || rec->sku_len > HS_SKU_MAX ||
        rec->order_len > HS_ORDER_ID_MAX) {
        hs_set_error("queue append of LSN %" PRIu64 ": bad record (type %u, sku_len %u, "
                     "order_len %u)",
                     rec->lsn, rec->type, rec->sku_len, rec->order_len);
        return -1;
    }
    if (w->file_bytes >= w->segment_bytes && qf_writer_rotate(w, rec->lsn) != 0)
        return -1;
    if (w->len + HS_QF_RECORD_MAX > QF_WRITE_BUF_SIZE && hs_qf_writer_write(w) != 0)
        return -1;
    n = hs_qf_encode(rec, w->buf + w->len);
    w->len += n;
    w->file_bytes += n;
    w->last_lsn = rec->lsn;
    return 0;
}

/* See queue_file.h.  Writes the buffer first, so on 0 every record
 * appended so far is durable. */
int
hs_qf_writer_sync(hs_qf_writer *w)
{
    if (hs_qf_writer_write(w) != 0)
        return -1;
    for (int i = 0; i < w->npending; i++) {
        if (fdatasync(w->pending[i]) != 0) {
            hs_set_error("cannot fdatasync a queue file before %s: %s", w->path, strerror(errno));
            w->failed = true;
            return -1;
        }
        close(w->pending[i]);
        w->pending[i] = -1;
    }
    w->npending = 0;
    if (w->dirty) {
        if (fdatasync(w->fd) != 0) {
            hs_set_error("cannot fdatasync queue file %s: %s", w->path, strerror(errno));
            w->failed = true;
            return -1;
        }
        w->dirty = false;
    }
    if (w->dir_dirty) {
        if (qf_fsync_dir(w->qdir) != 0) {
            w->failed = true;
            return -1;
        }
        w->dir_dirty = false;
    }
    return 0;
}

hs_lsn
hs_qf_writer_last_lsn(const hs_qf_writer *w)
{
    return w->last_lsn;
}

/* Write what is buffered (best effort, no sync: call hs_qf_writer_sync()
 * first for durability) and free the writer.  NULL is allowed. */
void
hs_qf_writer_close(hs_qf_writer *w)
{
    if (w == NULL)
        return;
    if (!w->failed)
        (void)hs_qf_writer_write(w);
    for (int i = 0; i < w->npending; i++)
        close(w->pending[i]);
    if (w->fd >= 0)
        close(w->fd);
    free(w->pending);
    free(w->buf);
    free(w);
}

/*-------------------------------------------------------------------------
 * Reader (hotstock.h), for the drain
 *
 * The reader judges the bytes at its position only after it has looked at
 * the directory (the survey): if a newer file existed before it read, the
 * current file was complete when read, so an invalid record is corruption.
 * An invalid record at the end of the newest file is "not written yet"
 * unless the caller promised it durable through `upto`: a finite upto says
 * every LSN <= upto was fdatasync'ed (durable_lsn, or hs_queue_sync()), so
 * an invalid record there is corruption; HS_LSN_MAX promises nothing.
 *
 * The reader never probes past an invalid record the way the recovery scan
 * does: while the spiller appends, a pread(2) may see a later page of a
 * write before an earlier one, so "invalid, then valid" is normal for a
 * moment.  An invalid record that stays is judged by the daemon's scan.
 * Cached bytes are dropped whenever the reader finds nothing valid, so it
 * never judges stale bytes twice (the daemon may cut them and write anew).
 *
 * Between files the reader holds the scan's rule (no gap, no overlap),
 * from the file before the one it opens in onwards; nothing is skipped:
 *
 *   - at open, that previous file must be whole and end right before the
 *     opened file's first LSN (qf_reader_check_previous);
 *   - every survey refuses a file that starts after the current file's
 *     first LSN but at or before the last LSN read from it (an overlap: a
 *     copy of a file renamed, or a file left over from elsewhere), and at
 *     the clean end of a file, a newer file that does not start at the next
 *     LSN (a gap).
 *
 * Both name the two files and the LSN.  Neither can refuse a healthy
 * directory: the writer names a file after the LSN that follows the last
 * one written, recycling removes only files wholly before the reader's
 * (hs_qf_recycle), and the one file the daemon removes without recycling
 * (an empty newest file after a crash, before it appends to the file
 * before again) is gone before any LSN it would overlap is written.
 * Files before the previous one are the recovery scan's to judge.
 *-------------------------------------------------------------------------
 */
struct hs_queue_reader {
    char dir[PATH_MAX]; /* the data directory */
    char qdir[PATH_MAX];
    char path[PATH_MAX]; /* current file */
    int fd;
    hs_lsn file_first; /* its first LSN (its name) */
    bool header_ok;    /* its header was checked */
    uint64_t pos;      /* offset of the next record */
    hs_lsn expected;   /* LSN of the next record */
    hs_lsn from_lsn;
    qf_window win;
};

/* What the directory holds beyond the reader's current file. */
typedef struct qf_survey {
    bool newer;        /* a file newer than the current one exists */
    bool next_exists;  /* a file starts at `expected` */
    hs_lsn next_first; /* lowest first LSN above the current file's; 0: none */
    hs_lsn inside;     /* lowest first LSN in (file_first, expected); 0: none */
} qf_survey;

/*
 * Look at the directory (see the note above the reader).  A file that
 * starts after the current file's first LSN but before `expected` starts
 * inside LSNs the reader has already read from the current file: an
 * overlap, which sv->inside reports for the caller to refuse.  0 / -1.
 */
static int
qf_reader_survey(hs_queue_reader *r, qf_survey *sv)
{
    struct dirent *de;
    DIR *d;

    memset(sv, 0, sizeof(*sv));
    d = opendir(r->qdir);
    if (d == NULL) {
        hs_set_error("cannot open queue directory %s: %s", r->qdir, strerror(errno));
        return -1;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        hs_lsn lsn;
        if (!qf_parse_name(de->d_name, &lsn) || lsn <= r->file_first)
            continue;
        sv->newer = true;
        if (sv->next_first == 0 || lsn < sv->next_first)
            sv->next_first = lsn;
        if (lsn == r->expected)
            sv->next_exists = true;
        else if (lsn < r->expected && (sv->inside == 0 || lsn < sv->inside))
            sv->inside = lsn;
    }
    if (errno != 0) {
        hs_set_error("cannot read queue directory %s: %s", r->qdir, strerror(errno));
        closedir(d);
        return -1;
    }
    closedir(d);
    return 0;
}

static int
qf_reader_open_file(hs_queue_reader *r, hs_lsn first_lsn)
{
    int fd;

    qf_file_path(r->path, sizeof(r->path), r->qdir, first_lsn);
    fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        hs_set_error("cannot open queue file %s: %s", r->path, strerror(errno));
        return -1;
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = fd;
    r->file_first = first_lsn;
    r->header_ok = false;
    r->pos = 0;
    qf_window_reset(&r->win, fd);
    return 0;
}

/*
 * The daemon's recovery removes a newest file that holds no record (a crash
 * right after its creation) and then appends to the file before it; a
 * reader that had already entered the removed file would wait in it for
 * ever.  So when the current file is gone (no link left), find the file
 * that holds `expected` now and read on from there, skipping what was
 * read.  1 moved, 0 not removed, -1 (recycled past the reader, I/O error).
 */
static int
qf_reader_relocate_if_removed(hs_queue_reader *r)
{
    hs_qf_file *files;
    struct stat sb;
    int n, i, rc = -1;

    if (fstat(r->fd, &sb) != 0) {
        hs_set_error("cannot stat queue file %s: %s", r->path, strerror(errno));
        return -1;
    }
    if (sb.st_nlink > 0)
        return 0;
    n = hs_qf_list(r->dir, &files);
    if (n < 0)
        return -1;
    for (i = n - 1; i >= 0 && files[i].first_lsn > r->expected; i--)
        ;
    if (i < 0) {
        hs_set_error("queue file %s was removed and no file holds LSN %" PRIu64
                     " any more: it was recycled",
                     r->path, r->expected);
    } else if (qf_reader_open_file(r, files[i].first_lsn) == 0) {
        if (r->from_lsn < r->expected)
            r->from_lsn = r->expected;
        r->expected = files[i].first_lsn;
        rc = 1;
    }
    free(files);
    return rc;
}

/*
 * At open: the file before the one the reader opens in (prev) must be
 * whole and end exactly at the LSN before the opened file's first, as the
 * recovery scan requires of a file that is not the newest.  Otherwise the
 * opened file lies inside prev's LSNs (an overlap: a copied or left-over
 * file) or after a gap, and reading on from it would skip what the scan
 * refuses.  Called with r->fd open on the opened file; borrows r->win.
 * 0 (also when prev was recycled since the listing), -1 with an error
 * naming both files.
 */
static int
qf_reader_check_previous(hs_queue_reader *r, const hs_qf_file *prev)
{
    qf_file_state st;
    qf_file_end end;
    struct stat sb;
    int fd;

    fd = open(prev->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0; /* recycled: wholly before the opened file */
        hs_set_error("cannot open queue file %s: %s", prev->path, strerror(errno));
        return -1;
    }
    end = qf_scan_file(&r->win, fd, prev->path, prev->first_lsn, HS_LSN_MAX, NULL, NULL, &st);
    close(fd);
    qf_window_reset(&r->win, r->fd);
    if (end == QF_END_CLEAN && st.next_lsn == r->file_first)
        return 0;

    /* The one legitimate exception: after a crash right after a rotation
     * the daemon removes the empty newest file (the opened one) and then
     * appends to prev again.  It removes before it appends, so a file
     * still linked now was there during the whole scan of prev. */
    if (fstat(r->fd, &sb) != 0) {
        hs_set_error("cannot stat queue file %s: %s", r->path, strerror(errno));
        return -1;
    }
    if (sb.st_nlink == 0)
        return 0; /* hs_queue_next() relocates */

    if (end == QF_END_CLEAN && st.next_lsn > r->file_first)
        hs_set_error("queue file %s starts at LSN %" PRIu64 ", inside LSNs %" PRIu64 "..%" PRIu64
                     " of queue file %s: the files overlap at LSN %" PRIu64,
                     r->path, r->file_first, prev->first_lsn, st.next_lsn - 1, prev->path,
                     r->file_first);
    else if (end == QF_END_CLEAN)
        hs_set_error("queue file %s ends at offset %" PRIu64 " after LSN %" PRIu64
                     ", but the next queue file %s starts at LSN %" PRIu64 ": LSNs %" PRIu64
                     "..%" PRIu64 " are missing (a gap)",
                     prev->path, st.size, st.next_lsn - 1, r->path, r->file_first, st.next_lsn,
                     r->file_first - 1);
    else if (end == QF_END_TORN)
        hs_set_error("queue file %s: %s at offset %" PRIu64 ", expected LSN %" PRIu64
                     ", in the file before queue file %s, where the reader starts",
                     prev->path, hs_qf_decode_result_name(st.why), st.bad_off, st.next_lsn,
                     r->path);
    else if (end == QF_END_TORN_HEADER)
        hs_set_error("queue file %s: missing header at offset 0, expected LSN %" PRIu64
                     ", in the file before queue file %s, where the reader starts",
                     prev->path, prev->first_lsn, r->path);
    else {
        /* qf_scan_file() named prev, the offset and the LSN (an error
         * text is at most 1024 bytes, segment.c) */
        char detail[1024];
        snprintf(detail, sizeof(detail), "%s", hs_last_error());
        hs_set_error("%s, in the file before queue file %s, where the reader starts", detail,
                     r->path);
    }
    return -1;
}

/* See hotstock.h.  from_lsn 0 reads from LSN 1.  HS_NOT_FOUND only when
 * there is no queue file at all: a from_lsn past the end of the queue opens
 * in the newest file, and hs_queue_next() returns 0 until it is written.
 * HS_IO_ERROR also when the file before the one holding from_lsn does not
 * end right before it (qf_reader_check_previous): continuity is checked
 * from that file on, files before it are the recovery scan's to judge. */
hs_result
hs_queue_open(const char *dir, hs_lsn from_lsn, hs_queue_reader **out)
{
    hs_queue_reader *r;
    hs_qf_file *files;
    int n, i;

    *out = NULL;
    if (from_lsn == 0)
        from_lsn = 1;
    n = hs_qf_list(dir, &files);
    if (n < 0)
        return HS_IO_ERROR;
    if (n == 0) {
        hs_set_error("no queue file in %s/%s yet", dir, HS_QF_SUBDIR);
        return HS_NOT_FOUND;
    }
    if (from_lsn < files[0].first_lsn) {
        hs_set_error("LSN %" PRIu64
                     " was recycled: the oldest queue file %s starts at LSN %" PRIu64,
                     from_lsn, files[0].path, files[0].first_lsn);
        free(files);
        return HS_IO_ERROR;
    }
    for (i = n - 1; files[i].first_lsn > from_lsn; i--)
        ;
    r = calloc(1, sizeof(*r));
    if (r == NULL || qf_window_init(&r->win, QF_READ_BUF_SIZE) != 0) {
        hs_set_error("out of memory opening the queue reader");
        free(r);
        free(files);
        return HS_IO_ERROR;
    }
    r->fd = -1;
    r->from_lsn = from_lsn;
    r->expected = files[i].first_lsn;
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    if (qf_queue_dir(dir, r->qdir, sizeof(r->qdir)) != 0 ||
        qf_reader_open_file(r, files[i].first_lsn) != 0 ||
        (i > 0 && qf_reader_check_previous(r, &files[i - 1]) != 0)) {
        free(files);
        hs_queue_close(r);
        return HS_IO_ERROR;
    }
    free(files);
    *out = r;
    return HS_OK;
}

/* See hotstock.h and the note above the reader. */
int
hs_queue_next(hs_queue_reader *r, hs_lsn upto, hs_record *rec)
{
    bool surveyed = false;
    qf_survey sv = {.newer = false};
    char why[160] = "";

    for (;;) {
        const uint8_t *p;
        ssize_t avail;
        size_t len;
        hs_qf_decode_result d = HS_QF_OK;
        bool promised;

        if (r->header_ok && r->expected >= r->from_lsn && r->expected > upto)
            return 0;
        avail =
            qf_window_get(&r->win, r->pos, r->header_ok ? HS_QF_RECORD_MAX : HS_QF_HEADER_SIZE, &p);
        if (avail < 0) {
            hs_set_error("cannot read queue file %s at offset %" PRIu64 ": %s", r->path, r->pos,
                         strerror(errno));
            return -1;
        }
        if (!r->header_ok) {
            hs_lsn hdr_lsn;
            if (hs_qf_check_header(p, (size_t)avail, &hdr_lsn, why, sizeof(why))) {
                if (hdr_lsn != r->file_first) {
                    hs_set_error("queue file %s: header says first LSN %" PRIu64
                                 " but the name says %" PRIu64 " (offset 0, expected LSN %" PRIu64
                                 ")",
                                 r->path, hdr_lsn, r->file_first, r->expected);
                    return -1;
                }
                r->header_ok = true;
                r->pos = HS_QF_HEADER_SIZE;
                continue;
            }
        } else if (avail > 0) {
            d = hs_qf_decode(p, (size_t)avail, rec, &len);
            if (d == HS_QF_OK) {
                if (rec->lsn != r->expected) {
                    hs_set_error("queue file %s: record at offset %" PRIu64 " has LSN %" PRIu64
                                 ", expected LSN %" PRIu64,
                                 r->path, r->pos, rec->lsn, r->expected);
                    return -1;
                }
                r->pos += len;
                r->expected++;
                if (rec->lsn < r->from_lsn)
                    continue;
                return 1;
            }
        }

        /* No valid header or record at pos (maybe not written yet).  Judge
         * only bytes read after a survey of the directory. */
        if (!surveyed) {
            int moved = qf_reader_relocate_if_removed(r);
            if (moved < 0)
                return -1;
            if (moved > 0)
                continue;
            if (qf_reader_survey(r, &sv) != 0)
                return -1;
            if (sv.inside != 0) {
                /* Every LSN before `expected` was read from the current
                 * file before the survey, so the other file cannot be one
                 * the daemon is about to remove (it removes before it
                 * writes those LSNs anew): a copied or left-over file. */
                char other[PATH_MAX];
                qf_file_path(other, sizeof(other), r->qdir, sv.inside);
                hs_set_error("queue file %s starts at LSN %" PRIu64 ", inside LSNs %" PRIu64
                             "..%" PRIu64 " of queue file %s: the files overlap at LSN %" PRIu64,
                             other, sv.inside, r->file_first, r->expected - 1, r->path, sv.inside);
                return -1;
            }
            surveyed = true;
            r->win.len = 0; /* re-read from the file */
            continue;
        }
        r->win.len = 0; /* the next call re-reads too */
        if (r->header_ok && avail == 0 && sv.next_exists) {
            /* clean end of a complete file: follow into the next one */
            if (qf_reader_open_file(r, r->expected) != 0)
                return -1;
            surveyed = false;
            continue;
        }
        promised = upto != HS_LSN_MAX && r->expected <= upto;
        if (!sv.newer && !promised)
            return 0;
        if (!r->header_ok) {
            hs_set_error("queue file %s: %s at offset 0, expected LSN %" PRIu64 " (%s)", r->path,
                         why, r->expected,
                         sv.newer ? "a newer file exists" : "the LSN was reported durable");
        } else if (avail == 0 && sv.newer) {
            /* no overlap and no file at `expected`: next_first > expected */
            char other[PATH_MAX];
            qf_file_path(other, sizeof(other), r->qdir, sv.next_first);
            hs_set_error("queue file %s ends at offset %" PRIu64 " after LSN %" PRIu64
                         ", but the next queue file %s starts at LSN %" PRIu64 ": LSNs %" PRIu64
                         "..%" PRIu64 " are missing (a gap)",
                         r->path, r->pos, r->expected - 1, other, sv.next_first, r->expected,
                         sv.next_first - 1);
        } else if (avail == 0) {
            hs_set_error("queue file %s: ends at offset %" PRIu64 " but LSN %" PRIu64
                         " is not there nor in a file of its own (the LSN was reported durable)",
                         r->path, r->pos, r->expected);
        } else {
            hs_set_error("queue file %s: %s at offset %" PRIu64 ", expected LSN %" PRIu64 " (%s)",
                         r->path, hs_qf_decode_result_name(d), r->pos, r->expected,
                         sv.newer ? "a newer file exists" : "the LSN was reported durable");
        }
        return -1;
    }
}

/*
 * See hotstock.h.  Sizes are taken before each fdatasync, so every byte
 * counted was synced; durable_upto is then the last LSN of the valid,
 * consecutive records found in those bytes from the reader's position on
 * (the reader's last LSN when there are none).  Damage stops the count
 * there and is reported by hs_queue_next(), not here.
 */
hs_result
hs_queue_sync(hs_queue_reader *r, hs_lsn *durable_upto)
{
    hs_qf_file *files = NULL;
    uint64_t *sizes = NULL;
    hs_lsn expected = r->expected;
    hs_result res = HS_IO_ERROR;
    qf_window w;
    int n, first = -1;

    *durable_upto = r->expected - 1;
    n = hs_qf_list(r->dir, &files);
    if (n < 0)
        return HS_IO_ERROR;
    sizes = calloc((size_t)(n > 0 ? n : 1), sizeof(*sizes));
    if (sizes == NULL) {
        hs_set_error("out of memory syncing the queue");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        struct stat sb;
        int fd;

        if (files[i].first_lsn < r->file_first)
            continue;
        if (first < 0)
            first = i;
        fd = open(files[i].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            hs_set_error("cannot open queue file %s: %s", files[i].path, strerror(errno));
            goto done;
        }
        if (fstat(fd, &sb) != 0 || fdatasync(fd) != 0) {
            hs_set_error("cannot fdatasync queue file %s: %s", files[i].path, strerror(errno));
            close(fd);
            goto done;
        }
        close(fd);
        sizes[i] = (uint64_t)sb.st_size;
    }
    if (qf_fsync_dir(r->qdir) != 0)
        goto done;
    res = HS_OK;
    if (first < 0 || files[first].first_lsn != r->file_first)
        goto done;

    /* Count the valid records in the synced bytes, the reader's window
     * borrowed (it is invalidated after). */
    w = r->win;
    for (int i = first; i < n; i++) {
        uint64_t pos;
        hs_lsn hdr_lsn;
        char why[160];
        const uint8_t *p;
        ssize_t avail;
        int fd;

        if (i > first && files[i].first_lsn != expected)
            break;
        if (i == first && r->header_ok) {
            fd = r->fd;
            pos = r->pos;
        } else {
            fd = open(files[i].path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                break;
            pos = 0;
        }
        qf_window_reset(&w, fd);
        if (pos == 0) {
            avail = qf_window_get(&w, 0, HS_QF_HEADER_SIZE, &p);
            if (avail < HS_QF_HEADER_SIZE || sizes[i] < HS_QF_HEADER_SIZE ||
                !hs_qf_check_header(p, (size_t)avail, &hdr_lsn, why, sizeof(why)) ||
                hdr_lsn != files[i].first_lsn) {
                if (fd != r->fd)
                    close(fd);
                break;
            }
            pos = HS_QF_HEADER_SIZE;
        }
        for (;;) {
            hs_record rec;
            size_t len;
            if (pos >= sizes[i])
                break;
            avail = qf_window_get(&w, pos, HS_QF_RECORD_MAX, &p);
            if (avail <= 0)
                break;
            if ((uint64_t)avail > sizes[i] - pos)
                avail = (ssize_t)(sizes[i] - pos);
            if (hs_qf_decode(p, (size_t)avail, &rec, &len) != HS_QF_OK || rec.lsn != expected)
                break;
            *durable_upto = expected;
            expected++;
            pos += len;
        }
        if (fd != r->fd)
            close(fd);
        if (pos != sizes[i])
            break; /* not a clean end: nothing after it counts */
    }
    r->win.len = 0;

done:
    free(sizes);
    free(files);
    return res;
}

/* Free the reader.  NULL is allowed. */
void
hs_queue_close(hs_queue_reader *r)
{
    if (r == NULL)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->win.buf);
    free(r);
}
