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
 *   - a record is written (pwrite(2), at the end of the records) only after
 *     every record before it;
 *   - a file is created (O_EXCL) only after the whole of the previous file
 *     was written (and, if space was allocated past its records, cut to
 *     them and synced), so "file k+1 exists" implies "file k is complete";
 *   - durable_lsn (segment.h) is published only after fdatasync, so every
 *     LSN <= durable_lsn lies whole in the files.
 *
 * A reader therefore treats an invalid or partial record, or a group cut
 * short (GROUPS below), as "not written yet" while it is at the end of the
 * newest file and beyond what it was promised durable, and as corruption
 * otherwise.  Only the daemon's scan ever removes bytes (a torn tail at
 * start, before the writer opens) and only the daemon recycles files
 * (those the drain has applied).
 *
 *
 * THE FORMAT (version 2)
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
 *           8     4  format version  HS_QF_FORMAT_VERSION (2; 1 is read too)
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
 *                                    4 add_stock, 5 noop, 6 reserve,
 *                                    7 confirm, 8 cancel, 9 expire,
 *                                    10 sale, 11 buyer (hotstock.h)
 *          17     1  sku_len         0..63
 *          18     1  order_len       0..63 (0 for stock and sale records;
 *                                    the buyer for a buyer record)
 *          19     1  flags           bit 0x01 compensation, bit 0x02
 *                                    group-more (GROUPS below), bit 0x04
 *                                    paused (sale only); for types 1-9
 *                                    the other bits are kept, not judged
 *          20     4  ttl_ms          see below; zero for types 1-5, 7-9, 11
 *          24     8  qty             see below (two's complement)
 *          32     8  xid             see below
 *          40     8  timestamp_us    unix microseconds
 *          48     *  sku, order_id, zero padding
 *
 * What ttl_ms, qty and xid mean depends on the type:
 *
 *      type          ttl_ms                  qty                 xid
 *      6 reserve     the hold's time-to-live units held          the caller's
 *                    in ms, 1..2592000000                        full transac-
 *                    (its deadline is                            tion id, 0 if
 *                    timestamp_us / 1000 +                       none
 *                    ttl_ms)
 *      1, 2, 7-9     0                       units               as for 6
 *      3, 4          0                       signed delta        as for 6
 *      5 noop        0                       0 (not judged)      0 (not judged)
 *      10 sale       per-buyer limit,        starts_at: unix     ends_at: unix
 *                    0..2147483647           ms, >= 0 (0: open   ms (0: never
 *                    (0: none)               from the start)     closes)
 *      11 buyer      0                       the buyer's units   a give-back:
 *                                            change, -1000000..  the LSN of
 *                                            1000000; 0 (with    its take's
 *                                            no buyer): forget   buyer record;
 *                                            every buyer of the  0 otherwise
 *                                            SKU
 *
 * A sale record carries a SKU's whole sale configuration (hs_sale_configure,
 * hs_sale_pause: the last one per SKU wins) and changes no counter.  It has
 * no order id, flags 0x04 (paused) or nothing, and is never part of a group.
 *
 * A buyer record (per-buyer limits, hotstock.h) changes no counter either:
 * it carries the change of one buyer's count of a SKU and is the first
 * record of a group with the DEDUCT or RESERVE that took the units (qty >
 * 0) or the REFUND, CANCEL or EXPIRE that gave them back (qty < 0).  With
 * qty 0 and no buyer it stands alone: every buyer of the SKU is forgotten.
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
 *   4. type is 1..11; for types 1..9 ttl_ms is non-zero exactly for type
 *      6 and at most 2592000000; a type 10 (sale) has sku_len >= 1,
 *      order_len 0, qty >= 0, ttl_ms <= 2147483647 and no flag but 0x04;
 *      a type 11 (buyer) has sku_len >= 1, ttl_ms 0, qty in
 *      -1000000..1000000, order_len 0 exactly when qty is 0, and no flag
 *      but 0x02; and the padding bytes are zero;
 *   5. lsn is the previous record's lsn + 1, and the first record's lsn
 *      is the file header's first_lsn (which equals the file's name).
 *
 * GROUPS.  A group is a run of records with consecutive LSNs that is
 * all-or-nothing in the queue (a basket's lines, hs_deduct_basket()).
 * Every member but the last has flag bit 0x02 (HS_REC_FLAG_GROUP_MORE,
 * "the record at the next LSN belongs to this group"); the last has it
 * clear, and a record without the bit that follows one without it is a
 * group of one.  A group has at most QF_GROUP_MAX (128) records: a valid
 * record that would be a group's 129th is corruption.  A group never spans
 * files: the writer starts a new file only after a group's last record.
 *
 * The validity rules above judge records one at a time; a group is whole
 * when all its records are valid and its last record is in the same file.
 * Readers take only whole groups: the recovery scan visits a group's
 * records once its last record was read, hs_queue_next() returns a
 * group's records only when the whole group is in the file, and the
 * durable point hs_queue_sync() reports is always a group's last record.
 *
 * VERSIONS.  Version 2 added types 6-9 and ttl_ms (bytes 20-23 were a
 * zero "reserved" field in version 1).  A version-1 file holds none of
 * them, so both are read by the rules above; the writer never appends to
 * a version-1 file (it starts a new file at its open), so a file's header
 * tells the oldest build that can read it.  Groups need no new version:
 * the flags byte was always there and no older writer set bit 0x02, so an
 * older file holds groups of one only (an older build reading a file with
 * groups sees single records and would not hold a cut group back).
 * Type 10 (sale) needs no new version either: an older build refuses a
 * record of type 10 cleanly (rule 4: corruption, named with its file,
 * offset and LSN; never misread), so a queue with a SALE record needs
 * this build or later, and that is all.  The same holds for type 11
 * (buyer) and for groups of 66 to 128 records (an older build refuses
 * them as a group over its 65).
 *
 * A file header is valid when magic, format version, header size and its
 * CRC match, the reserved bytes are zero and first_lsn >= 1 equals the
 * name.
 *
 * PREALLOCATED SPACE.  The newest file may end in zero bytes after its
 * last record: the writer allocates the file ahead of its records
 * (posix_fallocate, QF_PREALLOC_BYTES = 1 MiB at a time, never past
 * queue_file_size, where it rotates), so that a record's write and
 * fdatasync overwrite blocks the file already has instead of growing it.
 * An fdatasync that grows a file must also make its new size durable (a
 * journal commit on ext4); one that does not flushes data only, tens of
 * microseconds sooner (tests/bench/syncprobe.c measures both; figures in
 * shmd/README.md), and that flush is most of what a single synchronous
 * deduct waits for.  So a file's records end at the first 8-byte-aligned
 * offset from which every byte to the end of the file is zero (or at the
 * end of the file): that is the clean end, not a torn tail, and the
 * writer writes its next record there.  When the writer rotates it first
 * cuts the file to its records (ftruncate) and fdatasyncs it, and a clean
 * close cuts the newest file too; so zero bytes after the records of a
 * file that is not the newest are corruption.  Where the file system
 * cannot allocate (no space left), records extend the file as they are
 * written.  Older builds read such a file too: their recovery scan cuts
 * the zeros as a torn tail.
 *
 * TORN TAIL.  A crash (or power loss) while the spiller writes leaves at
 * most the end of the NEWEST file incomplete.  In the newest file only, the
 * first record that fails rules 1-4, where the bytes from it to the end
 * of the file are not all zero (PREALLOCATED SPACE), is a torn tail when
 * no valid record (rules 1-4) starts at any 8-byte-aligned offset after
 * it in that file.  When that record, or the end of the newest file's
 * records, falls inside a group, the torn tail starts at the group's
 * FIRST record instead: the whole partial group is cut, and the queue
 * continues at its first LSN.
 * The recovery scan cuts a torn tail with ftruncate at its offset and fsync,
 * and reports the file, offset and byte count it removed.  Likewise a newest
 * file whose header is short or all zeros with no valid record after it (a
 * crash right after the file was created) is removed whole.
 *
 * Everything else is corruption and is refused, never skipped: an invalid
 * record with a valid record somewhere after it; any invalid record or
 * trailing bytes in a file that is not the newest; a group cut by the end
 * of a file that is not the newest; a group longer than 128 records; a
 * record that fails rule 5 (a CRC-valid record cannot be torn); zero
 * bytes after the records of a file that is not the newest; a
 * missing, garbage or
 * other-version file header; a gap or overlap in LSNs between files.  The
 * message names the file, the byte offset and the LSN expected there.  (So
 * should a power loss keep a later page of never-synced data but lose an
 * earlier one, the scan refuses rather than guess: an operator decides.)
 * The writer refuses to open on a newest file with an uncut torn tail, or
 * one that does not end at the LSN it is told to continue after.
 *
 * ROTATION AND RECYCLING.  Before it appends a record that starts a group
 * (or is a group of one), the writer starts a new file (named by that
 * record's LSN, created with O_EXCL, header written at once) when the
 * current one has reached segment_bytes, so a file may exceed it by up to
 * one group; the old file is written completely first, cut to its records
 * and fdatasync'ed when it had space allocated past them (otherwise
 * fdatasync'ed at the next sync), and the directory at the next sync.  A
 * newest file of an older format version is cut the same way before the
 * writer starts the next file (VERSIONS).  hs_qf_recycle() removes a file
 * once the drain has applied every record in it, i.e. when (first_lsn of
 * the next file) - 1 <= applied LSN.  The newest file is never removed, so the directory
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
#include "util.h"
#include "queue_internal.h"

/*-------------------------------------------------------------------------
 * Helpers
 *-------------------------------------------------------------------------
 */
bool
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

/* Rule 4's judgement of a record's type-dependent fields (without the
 * padding): the decoder's, and the writer's before it appends. */
bool
qf_fields_ok(uint8_t type, unsigned sku_len, unsigned order_len, uint8_t flags, uint32_t ttl_ms,
             int64_t qty)
{
    if (type == HS_REC_SALE)
        return sku_len >= 1 && order_len == 0 && qty >= 0 && ttl_ms <= INT32_MAX &&
               (flags & ~HS_REC_FLAG_PAUSED) == 0;
    if (type == HS_REC_BUYER)
        return sku_len >= 1 && ttl_ms == 0 && qty >= -HS_QTY_MAX && qty <= HS_QTY_MAX &&
               (order_len == 0) == (qty == 0) && (flags & ~HS_REC_FLAG_GROUP_MORE) == 0;
    return type >= HS_REC_DEDUCT && type <= HS_REC_EXPIRE &&
           (type == HS_REC_RESERVE) == (ttl_ms != 0) && ttl_ms <= HS_TTL_MAX_MS;
}

/* Encode rec (sku_len and order_len within their maxima: asserted) into
 * buf; returns the record's total length.  ttl_ms is written for RESERVE
 * and SALE only (zero otherwise). */
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
    hs_put_u32(buf + 20, rec->type == HS_REC_RESERVE || rec->type == HS_REC_SALE ? rec->ttl_ms : 0);
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
    if (!qf_fields_ok(buf[16], sku_len, order_len, buf[19], hs_get_u32(buf + 20),
                      (int64_t)hs_get_u64(buf + 24)) ||
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
    rec->ttl_ms = hs_get_u32(buf + 20);
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
        return "bad type, fields for its type or non-zero padding";
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
    if (version < HS_QF_FORMAT_VERSION_MIN || version > HS_QF_FORMAT_VERSION) {
        snprintf(why, whylen, "format version %u, this build reads versions %d to %d", version,
                 HS_QF_FORMAT_VERSION_MIN, HS_QF_FORMAT_VERSION);
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
int
qf_queue_dir(const char *dir, char *out, size_t outlen)
{
    if ((size_t)snprintf(out, outlen, "%s/%s", dir, HS_QF_SUBDIR) >= outlen - QF_NAME_LEN - 1) {
        hs_set_error("data directory path too long: %s", dir);
        return -1;
    }
    return 0;
}

/* qdir/%016llx.hsq; qdir was checked to leave room by qf_queue_dir(). */
void
qf_file_path(char *out, size_t outlen, const char *qdir, hs_lsn first_lsn)
{
    int n = snprintf(out, outlen, "%s/%016" PRIx64 ".hsq", qdir, first_lsn);
    assert(n > 0 && (size_t)n < outlen);
    (void)n;
}

/* Is name a queue file name ("%016llx.hsq", lower-case hex)?  Sets *lsn. */
bool
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
int
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
