/*-------------------------------------------------------------------------
 *
 * queue_test_util.h
 *      Helpers of the queue-format unit tests (test_queue_file.c and
 *      test_queue_reader.c): deterministic records, queues written with the
 *      real writer, scans and reads that check every record.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOTSTOCK_QUEUE_TEST_UTIL_H
#define HOTSTOCK_QUEUE_TEST_UTIL_H

#include "test.h"

#include "queue_file.h"
#include "segment.h"

/* the table-driven CRC32C of util.c, exported for this comparison */
uint32_t hs_crc32c_portable(uint32_t crc, const void *data, size_t len);

/*-------------------------------------------------------------------------
 * Helpers
 *-------------------------------------------------------------------------
 */

/* The deterministic record at lsn: every type in turn, varied lengths. */
static __attribute__((unused)) void
gen_rec(hs_lsn lsn, hs_record *r)
{
    memset(r, 0, sizeof(*r));
    r->lsn = lsn;
    r->type = (uint8_t)(1 + lsn % 5);
    /* varied flags, but never HS_REC_FLAG_GROUP_MORE: these are single
     * records (group cases set the flag themselves) */
    r->flags = (uint8_t)(lsn * 7) & (uint8_t)~HS_REC_FLAG_GROUP_MORE;
    r->xid = lsn * 3;
    r->timestamp_us = UINT64_C(1700000000000000) + lsn;
    switch (r->type) {
    case HS_REC_DEDUCT:
    case HS_REC_REFUND:
        r->qty = 1 + (int64_t)(lsn % 7);
        snprintf(r->order_id, sizeof(r->order_id), "order-%09" PRIu64, lsn);
        break;
    case HS_REC_PUT_SKU:
        r->qty = (int64_t)(lsn % 1000);
        break;
    case HS_REC_ADD_STOCK:
        r->qty = (lsn % 2 ? -1 : 1) * (int64_t)(lsn % 50);
        break;
    case HS_REC_NOOP:
        break;
    }
    if (r->type != HS_REC_NOOP)
        snprintf(r->sku, sizeof(r->sku), "sku-%" PRIu64, lsn % 97);
    r->sku_len = (uint8_t)strlen(r->sku);
    r->order_len = (uint8_t)strlen(r->order_id);
}

/* A SALE record at lsn for sku: qty = starts_at, xid = ends_at, ttl_ms =
 * the per-buyer limit, flag HS_REC_FLAG_PAUSED when paused. */
static __attribute__((unused)) void
sale_rec(hs_lsn lsn, const char *sku, uint64_t starts_at_ms, uint64_t ends_at_ms,
         uint32_t per_buyer_limit, bool paused, hs_record *r)
{
    memset(r, 0, sizeof(*r));
    r->lsn = lsn;
    r->type = HS_REC_SALE;
    r->flags = paused ? HS_REC_FLAG_PAUSED : 0;
    r->qty = (int64_t)starts_at_ms;
    r->xid = ends_at_ms;
    r->ttl_ms = per_buyer_limit;
    r->timestamp_us = UINT64_C(1700000000000000) + lsn;
    snprintf(r->sku, sizeof(r->sku), "%s", sku);
    r->sku_len = (uint8_t)strlen(r->sku);
}

static __attribute__((unused)) bool
rec_eq(const hs_record *a, const hs_record *b)
{
    return a->lsn == b->lsn && a->type == b->type && a->flags == b->flags &&
           a->sku_len == b->sku_len && a->order_len == b->order_len && a->qty == b->qty &&
           a->xid == b->xid && a->timestamp_us == b->timestamp_us && a->ttl_ms == b->ttl_ms &&
           strcmp(a->sku, b->sku) == 0 &&
           strcmp(a->order_id, b->order_id) == 0 && strlen(a->sku) == a->sku_len &&
           strlen(a->order_id) == a->order_len;
}

static __attribute__((unused)) size_t
rec_len(hs_lsn lsn)
{
    uint8_t buf[HS_QF_RECORD_MAX];
    hs_record r;
    gen_rec(lsn, &r);
    return hs_qf_encode(&r, buf);
}

/* Offset of record lsn in a file whose first record is first. */
static __attribute__((unused)) long long
rec_offset(hs_lsn first, hs_lsn lsn)
{
    long long off = HS_QF_HEADER_SIZE;
    for (hs_lsn l = first; l < lsn; l++)
        off += (long long)rec_len(l);
    return off;
}

/* Append gen_rec(last + 1 .. upto) with the real writer, then sync. */
static __attribute__((unused)) bool
write_records(const char *dir, hs_lsn last, hs_lsn upto, uint64_t segment_bytes)
{
    hs_qf_writer *w = hs_qf_writer_open(dir, last, segment_bytes);
    bool ok = w != NULL;
    hs_record r;

    if (!ok)
        fprintf(stderr, "writer_open: %s\n", hs_last_error());
    for (hs_lsn l = last + 1; ok && l <= upto; l++) {
        gen_rec(l, &r);
        ok = hs_qf_writer_append(w, &r) == 0;
    }
    ok = ok && hs_qf_writer_sync(w) == 0 && hs_qf_writer_last_lsn(w) == upto;
    hs_qf_writer_close(w);
    return ok;
}

/* Write gen_rec(last + 1 .. upto) and sync in a child that then exits
 * without closing its writer, as a killed daemon would. */
static __attribute__((unused)) bool
write_records_and_die(const char *dir, hs_lsn last, hs_lsn upto, uint64_t segment_bytes)
{
    int status;
    pid_t pid = fork();

    if (pid == 0) {
        hs_qf_writer *w = hs_qf_writer_open(dir, last, segment_bytes);
        hs_record r;
        bool ok = w != NULL;
        for (hs_lsn l = last + 1; ok && l <= upto; l++) {
            gen_rec(l, &r);
            ok = hs_qf_writer_append(w, &r) == 0;
        }
        _exit(ok && hs_qf_writer_sync(w) == 0 ? 0 : 1);
    }
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

static __attribute__((unused)) void
queue_path(const char *dir, hs_lsn first, char *out)
{
    snprintf(out, 4200, "%s/queue/%016" PRIx64 ".hsq", dir, first);
}

typedef struct seq_check {
    hs_lsn next;
    uint64_t seen;
    bool ok;
} seq_check;

/* visit(): records must come in LSN order and equal gen_rec(). */
static __attribute__((unused)) int
visit_seq(const hs_record *rec, void *arg)
{
    seq_check *c = arg;
    hs_record want;

    gen_rec(rec->lsn, &want);
    if (rec->lsn != c->next || !rec_eq(rec, &want))
        c->ok = false;
    c->next = rec->lsn + 1;
    c->seen++;
    return 0;
}

/* Scan dir from from_lsn; true when the scan succeeds and visits exactly
 * from_lsn..last, all equal to gen_rec(). */
static __attribute__((unused)) bool
scan_ok(const char *dir, hs_lsn from_lsn, hs_lsn last, hs_qf_scan_result *res)
{
    seq_check c = {.next = from_lsn, .ok = true};
    hs_qf_scan_result local;
    int rc;

    if (res == NULL)
        res = &local;
    rc = hs_qf_scan(dir, from_lsn, true, visit_seq, &c, res);
    if (rc != 0)
        fprintf(stderr, "scan: %s\n", hs_last_error());
    return rc == 0 && c.ok && res->last_lsn == last && c.seen == last - from_lsn + 1 &&
           res->records == c.seen;
}

/* Read with hs_queue_* from from_lsn; true when exactly from_lsn..last
 * come back equal to gen_rec(), then 0. */
static __attribute__((unused)) bool
read_ok(const char *dir, hs_lsn from_lsn, hs_lsn last)
{
    hs_queue_reader *r;
    hs_record rec, want;
    bool ok = true;
    int rc = 0;

    if (hs_queue_open(dir, from_lsn, &r) != HS_OK) {
        fprintf(stderr, "queue_open: %s\n", hs_last_error());
        return false;
    }
    for (hs_lsn l = from_lsn ? from_lsn : 1; ok && l <= last; l++) {
        rc = hs_queue_next(r, HS_LSN_MAX, &rec);
        gen_rec(l, &want);
        ok = rc == 1 && rec_eq(&rec, &want);
    }
    if (!ok)
        fprintf(stderr, "read_ok: rc %d: %s\n", rc, hs_last_error());
    ok = ok && hs_queue_next(r, HS_LSN_MAX, &rec) == 0;
    hs_queue_close(r);
    return ok;
}

/* visit(): stops the scan at LSN 3 with the value 7. */
static __attribute__((unused)) int
stop_at_3(const hs_record *rec, void *arg)
{
    (void)arg;
    return rec->lsn == 3 ? 7 : 0;
}

static __attribute__((unused)) bool
under_valgrind(void)
{
    const char *v = getenv("HS_UNDER_VALGRIND");
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

/*-------------------------------------------------------------------------
 * CRC32C
 *-------------------------------------------------------------------------
 */
static __attribute__((unused)) uint32_t
crc32c_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = ~UINT32_C(0);
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (UINT32_C(0x82F63B78) & (0u - (c & 1)));
    }
    return ~c;
}

/*-------------------------------------------------------------------------
 * Corruption: refused with file, offset and LSN; nothing is cut
 *-------------------------------------------------------------------------
 */
static __attribute__((unused)) void
expect_refused(const char *dir, const char *path, long long offset, hs_lsn lsn, const char *what)
{
    char part[300];
    hs_qf_scan_result res;
    long long before = hs_test_file_size(path);

    CHECK_EQ(hs_qf_scan(dir, 1, true, NULL, NULL, &res), -1);
    CHECK_CONTAINS(hs_last_error(), path);
    snprintf(part, sizeof(part), "offset %lld", offset);
    CHECK_CONTAINS(hs_last_error(), part);
    snprintf(part, sizeof(part), "LSN %" PRIu64, lsn);
    CHECK_CONTAINS(hs_last_error(), part);
    if (what != NULL)
        CHECK_CONTAINS(hs_last_error(), what);
    CHECK(!res.tail_cut);
    CHECK_EQ(hs_test_file_size(path), before);
}

#endif /* HOTSTOCK_QUEUE_TEST_UTIL_H */
